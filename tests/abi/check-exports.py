#!/usr/bin/env python3
"""Check that a shared library exports exactly the functions that the public
headers declare with VMM_EXPORT: nothing missing, nothing extra."""
import os
import re
import subprocess
import sys

hdr_dir, lib = sys.argv[1], sys.argv[2]
declared = set()
for name in sorted(os.listdir(hdr_dir)):
    if not name.endswith('.h'):
        continue
    text = open(os.path.join(hdr_dir, name), encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    text = re.sub(r'^\s*#\s*define[^\n]*(\\\n[^\n]*)*', ' ', text, flags=re.M)
    for decl in re.findall(r'VMM_EXPORT\b([^;{]*)', text):
        m = re.search(r'\b(vmm_\w+)\s*\(', decl)
        if not m:
            m = re.search(r'\b(vmm_\w+)\s*(?:\[[^\]]*\])?\s*$', decl.strip())
        if m:
            declared.add(m.group(1))

out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True,
                     capture_output=True, text=True).stdout
exported = set()
for line in out.splitlines():
    parts = line.split()
    if len(parts) >= 3 and parts[1] in 'TtDdBbRrVWiu':
        sym = parts[2].split('@')[0]
        exported.add(sym)

missing = sorted(declared - exported)
extra = sorted(exported - declared)
for s in missing:
    print(f'declared but not exported: {s}')
for s in extra:
    print(f'exported but not declared: {s}')
print(f'{len(declared)} declared, {len(exported)} exported')
sys.exit(1 if missing or extra else 0)
