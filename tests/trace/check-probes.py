#!/usr/bin/env python3
"""check-probes.py DOC LIB HAVE_USDT: the library's stapsdt notes (provider
vmmkit) name exactly the probes docs/tracing.md lists in its table.  With
HAVE_USDT 0 (built without sys/sdt.h) it checks there are none, and skips."""
import re
import subprocess
import sys

doc, lib, have_usdt = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
listed = set(re.findall(r'^\| `([a-z_0-9]+)` \|', open(doc, encoding='utf-8').read(), re.M))
if not listed:
    print('no probes listed in', doc)
    sys.exit(1)
out = subprocess.run(['readelf', '-n', lib], check=True, capture_output=True, text=True).stdout
found = set()
for m in re.finditer(r'Provider: (\S+)\s+Name: (\S+)', out):
    if m.group(1) == 'vmmkit':
        found.add(m.group(2))
if not have_usdt:
    if found:
        print('built without sys/sdt.h, yet the library has probes:', sorted(found))
        sys.exit(1)
    print('SKIP: built without sys/sdt.h (meson option usdt; package systemtap-sdt-dev)')
    sys.exit(77)
for p in sorted(listed - found):
    print(f'listed in {doc} but not in the library: {p}')
for p in sorted(found - listed):
    print(f'in the library but not listed in {doc}: {p}')
print(f'{len(found)} probes in the library, {len(listed)} listed')
sys.exit(1 if listed != found else 0)
