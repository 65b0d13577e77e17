#!/usr/bin/env python3
"""check-api-docs.py DOXYGEN DOXYFILE XMLDIR LIB: build the API reference,
then fail for every function the shared library LIB exports that has no
documentation in it, and for any Doxygen warning."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

doxygen, doxyfile, xmldir, lib = sys.argv[1:5]
subprocess.run([doxygen, doxyfile], check=True)
warnings = os.path.join(os.path.dirname(xmldir), 'warnings.log')
problems = []
if os.path.exists(warnings):
    problems += ['doxygen: ' + l for l in open(warnings).read().splitlines() if l.strip()]

# What the library exports (test abi/exports checks that this is exactly
# what the headers declare).
out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True,
                     capture_output=True, text=True).stdout
exported = {l.split()[2].split('@')[0] for l in out.splitlines()
            if len(l.split()) >= 3 and l.split()[1] in 'TtWi' and l.split()[2].startswith('vmm_')}

documented = set()
seen = set()
for f in os.listdir(xmldir):
    if not f.endswith('.xml') or f == 'index.xml':
        continue
    root = ET.parse(os.path.join(xmldir, f)).getroot()
    for md in root.iter('memberdef'):
        if md.get('kind') != 'function':
            continue
        name = md.findtext('name')
        seen.add(name)
        desc = ''.join(md.find('briefdescription').itertext()) + \
               ''.join(md.find('detaileddescription').itertext())
        if len(desc.split()) >= 2:
            documented.add(name)

for fn in sorted(exported - seen):
    problems.append(f'not in the reference: {fn}')
for fn in sorted((exported & seen) - documented):
    problems.append(f'no documentation: {fn}')
for p in problems:
    print(p)
print(f'{len(exported)} exported functions, {len(exported & documented)} documented')
sys.exit(1 if problems or not exported else 0)
