#!/bin/sh
# Checks that every public function in include/cio.h is documented: each
# CIO_API declaration needs a comment block directly above it (one block may
# cover a run of consecutive declarations with no blank line or comment
# between them) or a trailing comment on its own line, and a non-void
# function's documentation must say what it returns.
#
#   sh tests/check_header.sh [header]      exit 0 if clean, 1 with offenders
#   sh tests/check_header.sh --groups      list each comment and what it covers
#   sh tests/check_header.sh --doxygen XML [header]
#       the same, and every declaration's documentation must be what Doxygen
#       read for it (XML: Doxygen's XML output for the header, cio_8h.xml),
#       word for word: the reference says what the header says (make docs)
#
# What counts as saying what it returns: the word Return / returns / Returns
# in the covering block, or a trailing comment on the declaration itself
# (`/* 1 or 0 */`), which by the header's convention describes the result.
# A void function needs no return line.
#
# The comments must be in the form Doxygen reads (docs/Doxyfile): a block
# opens with `/**`, a trailing comment with `/**<`, and a run of
# declarations sharing one block sits in `/** @{ */` ... `/** @} */`
# (Doxygen's member group: with DISTRIBUTE_GROUP_DOC it gives the block to
# each declaration of the run, as this check does; without it, only the
# first would be documented). The markers cover nothing themselves.
set -eu
groups=0
xml=
if [ "${1:-}" = "--groups" ]; then
    groups=1
    shift
fi
if [ "${1:-}" = "--doxygen" ]; then
    xml=$2
    shift 2
    [ -r "$xml" ] || { echo "check_header: cannot read $xml" >&2; exit 2; }
fi
header=${1:-include/cio.h}
[ -r "$header" ] || { echo "check_header: cannot read $header" >&2; exit 2; }

exec python3 - "$header" "$groups" "$xml" <<'EOF'
import re, sys

path, show_groups, xml = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
lines = open(path).read().split("\n")

RETURNS = re.compile(r"\b[Rr]eturns?\b")
SECTION = re.compile(r"^/\* -{3,}")  # a section header covers nothing
GROUP_OPEN, GROUP_CLOSE = "/** @{ */", "/** @} */"

# Walk the file once: a block comment that ends on the line just before a
# declaration covers it; the run of declarations that follow each other
# line after line shares it. Anything else (a blank line, a typedef, another
# comment) ends the run.
offenders = []
documented = []      # (line, name, the comment's text) for --doxygen
cover = None         # (first line, text) of the comment covering the run
prev_end = -2        # index of the line the last comment or declaration ended
prev_kind = None     # "comment" or "decl"
in_group = False     # between /** @{ */ and /** @} */
i = 0
while i < len(lines):
    line = lines[i]
    if line == GROUP_OPEN:      # between a comment and its run: invisible
        prev_end = i if prev_end == i - 1 else prev_end
        in_group = True
        i += 1
        continue
    if line == GROUP_CLOSE:     # ends the run
        prev_end, cover, in_group = -2, None, False
        i += 1
        continue
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
    follower = adjacent and prev_kind == "decl"  # not the run's first
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
    elif trailing and not body[1].strip().startswith("/**<"):
        offenders.append((start + 1, name, "its trailing comment opens with "
                          "/*: Doxygen reads /**< only"))
    elif not trailing and not cover[1].startswith("/**"):
        offenders.append((start + 1, name, "its comment (line %d) opens with "
                          "/*: Doxygen reads /** only" % cover[0]))
    elif not trailing and follower and not in_group:
        offenders.append((start + 1, name, "shares the comment at line %d "
                          "outside /** @{ */ ... /** @} */: Doxygen gives it "
                          "to the first declaration only" % cover[0]))
    else:
        documented.append((start + 1, name, body[1] if trailing else cover[1]))
    prev_kind, prev_end = "decl", i
    i += 1

def words(text):
    return re.findall(r"[A-Za-z0-9]+", text)

# Doxygen's reading of each function: brief and detailed description.
def doxygen_docs(xml_path):
    import xml.etree.ElementTree as ET
    docs = {}
    for m in ET.parse(xml_path).iter("memberdef"):
        if m.get("kind") == "function":
            docs[m.findtext("name")] = " ".join(
                "".join(m.find(part).itertext())
                for part in ("briefdescription", "detaileddescription"))
    return docs

if xml:
    seen = doxygen_docs(xml)
    for line, name, text in documented:
        got = seen.get(name)
        if got is None:
            offenders.append((line, name, "absent from Doxygen's output"))
        elif not words(got):
            offenders.append((line, name, "Doxygen found no documentation "
                              "for it (a comment form it does not read)"))
        elif words(got) != words(text):
            offenders.append((line, name, "Doxygen read other words than "
                              "its comment's: %r" % " ".join(words(got))[:160]))

for line, name, why in offenders:
    print("%s:%d: %s: %s" % (path, line, name, why))
if offenders:
    print("check_header: %d undocumented declaration(s)" % len(offenders))
    sys.exit(1)
print("check_header: every CIO_API function in %s is documented%s"
      % (path, ", as Doxygen reads it" if xml else ""))
EOF
