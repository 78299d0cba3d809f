#!/bin/sh
# make check-docs: the pages `make docs` built, opened as a reader opens
# them, in headless Chromium (file:// URLs, a fresh profile each run).
#
#   sh tests/check_docs.sh [OUT]     OUT: what docs/build.sh built (build/docs)
#
# Asserts, on the DOM Chromium rendered (--dump-dom):
#  - the index links every guide chapter (docs/guide/*.md) and the reference;
#  - each chapter's page shows its title and every one of its ## headings;
#  - the reference (cio.h's page) has an entry for every CIO_API function of
#    include/cio.h, and its function index lists each of them;
# and on screenshots of the index, the first chapter, the reference and its
# function index (OUT/screenshots/*.png): each is not blank (at least 1% of
# its pixels differ from its background colour).
set -eu
out=${1:-build/docs}
[ -r "$out/index.html" ] || { echo "check_docs: no $out/index.html (make docs)" >&2; exit 2; }
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$browser" ] ||
    { echo "check_docs: chromium not found (Debian: apt-get install chromium)" >&2; exit 2; }

shots=$out/screenshots
dom=$out/dom
rm -rf "$shots" "$dom"
mkdir -p "$shots" "$dom"
: > "$out/chromium.log"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT INT TERM
root=$(realpath "$out")

# The flags that work on a closed network as root; Chromium's own log goes
# to a file (it complains of the missing D-Bus at every start).
chrome() {
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu \
        --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync \
        --user-data-dir="$profile" --window-size=1280,900 "$@" \
        2>>"$out/chromium.log"
}
page() { # page NAME PATH: the DOM of OUT/PATH into dom/NAME.html
    chrome --dump-dom "file://$root/$2" > "$dom/$1.html"
}
shot() { # shot NAME PATH
    chrome --screenshot="$shots/$1.png" "file://$root/$2" > /dev/null
}

ref=reference/html/cio_8h.html
funcs=reference/html/globals_func.html
page index index.html
for md in docs/guide/*.md; do
    name=$(basename "$md" .md)
    page "$name" "guide/$name.html"
done
page reference $ref
page functions $funcs
first=$(basename "$(ls docs/guide/*.md | head -n 1)" .md)
shot index index.html
shot guide "guide/$first.html"
shot reference $ref
shot functions $funcs

sh tests/check_header.sh --groups include/cio.h | awk '$1 ~ /^[0-9]+$/ { print $2 }' \
    > "$dom/functions.txt"

exec python3 - "$dom" "$shots" docs/guide "$ref" <<'EOF'
import html, os, re, struct, sys, zlib

dom_dir, shot_dir, guide_dir, ref = sys.argv[1:5]
failures = []

def read(name):
    return open(os.path.join(dom_dir, name + ".html"), encoding="utf-8").read()

def text(fragment, sep=" "):  # what a reader sees: no tags, no entities
    return " ".join(html.unescape(re.sub(r"<[^>]+>", sep, fragment)).split())

def md_text(line):  # a markdown heading as it renders
    return " ".join(re.sub(r"[`*]", "", line.lstrip("#")).split())

# The index, and each chapter behind it.
index = read("index")
if 'href="%s"' % ref not in index:
    failures.append("index: no link to the reference (%s)" % ref)
chapters = sorted(f for f in os.listdir(guide_dir) if f.endswith(".md"))
for md in chapters:
    name = md[:-3]
    if 'href="guide/%s.html"' % name not in index:
        failures.append("index: no link to chapter %s" % name)
    lines = open(os.path.join(guide_dir, md), encoding="utf-8").read().split("\n")
    page = read(name)
    h1 = [text(h, "") for h in re.findall(r"<h1[^>]*>(.*?)</h1>", page, re.S)]
    if md_text(lines[0]) not in h1:
        failures.append("%s: title %r not shown" % (name, md_text(lines[0])))
    # Each figure the chapter shows is on its rendered page, drawn.
    for fig in re.findall(r"\]\(figures/([^)]+)\)", "\n".join(lines)):
        if 'src="figures/%s"' % fig not in page:
            failures.append("%s: figure %s not shown" % (name, fig))
        elif "<svg" not in open(os.path.join(os.path.dirname(dom_dir), "guide",
                                             "figures", fig)).read():
            failures.append("%s: figure %s is not an SVG drawing" % (name, fig))
    headings = set(text(h, "") for h in re.findall(r"<h2[^>]*>(.*?)</h2>", page, re.S))
    for line in lines:
        if line.startswith("## ") and md_text(line) not in headings:
            failures.append("%s: heading %r not shown" % (name, md_text(line)))

# The reference: an entry per function, and the function index.
reference, index_of_functions = text(read("reference")), text(read("functions"))
names = open(os.path.join(dom_dir, "functions.txt")).read().split()
for fn in names:
    if not re.search(r"\b%s\(\)" % fn, reference):
        failures.append("reference: no entry for %s()" % fn)
    if not re.search(r"\b%s\(\)" % fn, index_of_functions):
        failures.append("function index: %s() not listed" % fn)

# A PNG, decoded with zlib alone: 8-bit RGB or RGBA, unfiltered row by row.
def pixels(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    assert depth == 8 and colour in (2, 6), "PNG type %d/%d" % (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, rows = bytearray(stride), []
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(
            raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                row[x] = (row[x] + a) & 255
            elif kind == 2:
                row[x] = (row[x] + b) & 255
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else
                                    b if pb <= pc else c)) & 255
        rows.append(bytes(row))
        prev = row
    return width, height, bpp, rows

for shot in sorted(os.listdir(shot_dir)):
    path = os.path.join(shot_dir, shot)
    width, height, bpp, rows = pixels(path)
    counts = {}
    for row in rows:
        for x in range(0, len(row), bpp):
            px = row[x:x + 3]
            counts[px] = counts.get(px, 0) + 1
    background = max(counts.values())
    ink = 1 - background / (width * height)
    print("check_docs: %s %dx%d, %d colours, %.1f%% of pixels off the "
          "background" % (path, width, height, len(counts), 100 * ink))
    if ink < 0.01:
        failures.append("%s: blank (%.2f%% ink)" % (path, 100 * ink))

for f in failures:
    print("check_docs: " + f)
if failures:
    print("check_docs: %d failure(s)" % len(failures))
    sys.exit(1)
print("check_docs: %d guide chapters and %d functions shown, %d screenshots "
      "not blank" % (len(chapters), len(names), len(os.listdir(shot_dir))))
EOF
