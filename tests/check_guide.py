#!/usr/bin/env python3
"""Checks the guide's numbering and every reference into it.

  python3 tests/check_guide.py      exit 0 if clean, 1 listing each fault

- docs/guide/NN-name.md starts with "# N. Title" (N == NN), numbered
  1, 2, 3, ... with no gap;
- every "chapter N" in the guide, the README, the examples and the docs
  names a chapter that exists, and a link [..](NN-name.md) or a path
  docs/guide/NN-name.md names a file that exists;
- every example that examples/check.sh checks (it has a .expected file) is
  on examples/demo.sh's tour, in the guide's order, and each tour line
  names a chapter file that exists.
"""
import os
import re
import sys

GUIDE = "docs/guide"
faults = []

files = sorted(f for f in os.listdir(GUIDE) if re.match(r"\d\d-.*\.md$", f))
titles = {}
for i, f in enumerate(files, 1):
    first = open(os.path.join(GUIDE, f)).readline()
    m = re.match(r"# (\d+)\. (.+)", first)
    if int(f[:2]) != i:
        faults.append("%s: expected chapter number %02d (no gaps)" % (f, i))
    if not m or int(m.group(1)) != int(f[:2]):
        faults.append("%s: its title line must be '# %d. ...'" % (f, int(f[:2])))
    else:
        titles[int(f[:2])] = m.group(2)

sources = [os.path.join(GUIDE, f) for f in files] + ["README.md", "docs/design.md"]
sources += [os.path.join("examples", f) for f in sorted(os.listdir("examples"))
            if f.endswith((".c", ".sh"))]
CHAPTER = re.compile(r"\b[Cc]hapters? (\d+)((?:(?:, | and | or )\d+)*)")
LINK = re.compile(r"(?:docs/guide/|\]\()(\d\d-[\w-]+\.md)")
for path in sources:
    for n, line in enumerate(open(path), 1):
        for m in CHAPTER.finditer(line):
            nums = [m.group(1)] + re.findall(r"\d+", m.group(2))
            for k in nums:
                if int(k) not in titles:
                    faults.append("%s:%d: chapter %s does not exist" % (path, n, k))
        for m in LINK.finditer(line):
            if m.group(1) not in files:
                faults.append("%s:%d: %s does not exist" % (path, n, m.group(1)))

tour = open("examples/demo.sh").read()
toured = set(re.findall(r"^(\w+)\|", tour, re.M))
last = 0
for name, chapter in re.findall(r"^(\w+)\|[^|]*\|([\w-]+)$", tour, re.M):
    if chapter[:2].isdigit() and int(chapter[:2]) < last:
        faults.append("examples/demo.sh: %s (chapter %d) comes after chapter %d:"
                      " the tour goes in the guide's order"
                      % (name, int(chapter[:2]), last))
    last = max(last, int(chapter[:2])) if chapter[:2].isdigit() else last
    if chapter + ".md" not in files:
        faults.append("examples/demo.sh: %s's chapter %s.md does not exist"
                      % (name, chapter))
for f in sorted(os.listdir("examples")):
    if f.endswith(".expected") and f[:-9] not in toured:
        faults.append("examples/demo.sh: %s is checked but not on the tour"
                      % f[:-9])

for f in faults:
    print("check_guide: " + f)
if faults:
    sys.exit(1)
print("check_guide: %d chapters numbered, every reference resolves" % len(files))
