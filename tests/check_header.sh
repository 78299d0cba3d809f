#!/bin/sh
# Checks that every public function in include/cio.h is documented: each
# CIO_API declaration needs a comment block directly above it (one block may
# cover a run of consecutive declarations with no blank line or comment
# between them) or a trailing comment on its own line, and a non-void
# function's documentation must say what it returns.
#
#   sh tests/check_header.sh [header]      exit 0 if clean, 1 with offenders
#   sh tests/check_header.sh --groups      list each comment and what it covers
#
# What counts as saying what it returns: the word Return / returns / Returns
# in the covering block, or a trailing comment on the declaration itself
# (`/* 1 or 0 */`), which by the header's convention describes the result.
# A void function needs no return line.
set -eu
groups=0
if [ "${1:-}" = "--groups" ]; then
    groups=1
    shift
fi
header=${1:-include/cio.h}
[ -r "$header" ] || { echo "check_header: cannot read $header" >&2; exit 2; }

exec python3 - "$header" "$groups" <<'EOF'
import re, sys

path, show_groups = sys.argv[1], sys.argv[2] == "1"
lines = open(path).read().split("\n")

RETURNS = re.compile(r"\b[Rr]eturns?\b")
SECTION = re.compile(r"^/\* -{3,}")  # a section header covers nothing

# Walk the file once: a block comment that ends on the line just before a
# declaration covers it; the run of declarations that follow each other
# line after line shares it. Anything else (a blank line, a typedef, another
# comment) ends the run.
offenders = []
cover = None         # (first line, text) of the comment covering the run
prev_end = -2        # index of the line the last comment or declaration ended
prev_kind = None     # "comment" or "decl"
i = 0
while i < len(lines):
    line = lines[i]
    if line.startswith("/*"):
        start = i
        while "*/" not in lines[i]:
            i += 1
        text = "\n".join(lines[start:i + 1])
        prev_kind, prev_end = "comment", i
        cover = None if SECTION.match(line) else (start + 1, text)
        i += 1
        continue
    if not line.startswith("CIO_API"):
        if line.strip():
            prev_kind = None
        else:
            prev_end = -2
        i += 1
        continue
    start = i
    while ";" not in lines[i]:
        i += 1
    decl = " ".join(l.strip() for l in lines[start:i + 1])
    adjacent = prev_end == start - 1
    if not (adjacent and prev_kind in ("comment", "decl")):
        cover = None
    m = re.search(r"([A-Za-z_]\w*)\s*\(", decl)
    name = m.group(1) if m else "?"
    head = decl[:m.start()] if m else decl
    is_void = re.search(r"\bvoid\s*$", head.strip()) is not None
    body = decl.split(";", 1)
    trailing = "/*" in body[1] if len(body) > 1 else False
    if show_groups:
        where = "line %d" % cover[0] if cover else "-"
        print("%5d %-40s covered by %s%s" % (start + 1, name, where,
                                              " +trailing" if trailing else ""))
    if cover is None and not trailing:
        offenders.append((start + 1, name, "no comment block above it"))
    elif not is_void and not trailing and not RETURNS.search(cover[1]):
        offenders.append((start + 1, name,
                          "its comment (line %d) says nothing of what it "
                          "returns" % cover[0]))
    prev_kind, prev_end = "decl", i
    i += 1

for line, name, why in offenders:
    print("%s:%d: %s: %s" % (path, line, name, why))
if offenders:
    print("check_header: %d undocumented declaration(s)" % len(offenders))
    sys.exit(1)
print("check_header: every CIO_API function in %s is documented" % path)
EOF
