#!/usr/bin/env python3
"""check-api-docs.py DOXYGEN DOXYFILE XMLDIR HEADERDIR: build the API
reference, then fail for every function the headers export (VMM_EXPORT)
that has no documentation in it, and for any Doxygen warning."""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

doxygen, doxyfile, xmldir, hdr_dir = sys.argv[1:5]
subprocess.run([doxygen, doxyfile], check=True)
warnings = os.path.join(os.path.dirname(xmldir), 'warnings.log')
problems = []
if os.path.exists(warnings):
    problems += ['doxygen: ' + l for l in open(warnings).read().splitlines() if l.strip()]

# What the headers export (as tests/abi/check-exports.py reads them).
exported = set()
for name in sorted(os.listdir(hdr_dir)):
    if not name.endswith('.h'):
        continue
    text = open(os.path.join(hdr_dir, name), encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'^\s*#\s*define[^\n]*(\\\n[^\n]*)*', ' ', text, flags=re.M)
    for decl in re.findall(r'VMM_EXPORT\b([^;{]*)', text):
        m = re.search(r'\b(vmm_\w+)\s*\(', decl)
        if m:
            exported.add(m.group(1))

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
