#!/usr/bin/env python3
"""Doxygen input filter for include/vmmkit/*.h (docs/api/Doxyfile.in).

The headers document their API in plain C comments; this filter shows them
to Doxygen as documentation comments without changing the files:
  - the file's opening comment (after the SPDX line) becomes its @file text;
  - a comment on lines of its own documents the declaration below it, and
    every further declaration that follows without a blank line (the
    headers document a family of functions once, above the family);
  - a comment after code on the same line documents that member (/**<).
Line numbers stay as in the file (a copied comment goes on the
declaration's own line), so Doxygen's warnings point at the right place.
"""
import re
import sys

ARG = re.compile(r'@(\w+)')     # "@name" names an argument in the headers
lines = open(sys.argv[1], encoding='utf-8').read().split('\n')
out = []
i = 0
file_doc_done = False
group_doc = None          # one-line copy of the comment above the current family
while i < len(lines):
    line = lines[i]
    stripped = line.strip()
    if stripped.startswith('/*') and not stripped.startswith('/**') and 'SPDX-License' not in line:
        # A comment on lines of its own: collect it.
        j = i
        while '*/' not in lines[j]:
            j += 1
        block = [ARG.sub(r'<tt>\1</tt>', l) for l in lines[i:j + 1]]
        text = ' '.join(l.strip().lstrip('/').lstrip('*').rstrip('/').rstrip('*').strip()
                        for l in block).strip()
        if text.startswith('----'):
            # A section heading inside the header: stays a plain comment.
            out.extend(lines[i:j + 1])
            group_doc = None
            i = j + 1
            continue
        if not file_doc_done:
            block[0] = block[0].replace('/*', '/** @file', 1)
            file_doc_done = True
            group_doc = None
        else:
            block[0] = block[0].replace('/*', '/**', 1)
            group_doc = text
        out.extend(block)
        i = j + 1
        continue
    if stripped == '':
        group_doc = None
    elif re.search(r'\S.*;\s*/\*[^*]', line) or re.search(r'^\s*[A-Z_]+[^/]*,\s*/\*[^*]', line):
        # A member or enumerator with its comment after it.
        line = re.sub(r'/\*(?!\*)', '/**<', line, count=1)
        line = line[:line.index('/**<')] + ARG.sub(r'<tt>\1</tt>', line[line.index('/**<'):])
    elif stripped.startswith('VMM_EXPORT') and group_doc and out and not out[-1].strip().endswith('*/'):
        # A further function of a documented family.
        line = '/** ' + group_doc.replace('*/', '') + ' */ ' + line
    if stripped.startswith('#'):
        group_doc = None
    out.append(line)
    i += 1
sys.stdout.write('\n'.join(out))
