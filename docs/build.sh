#!/bin/sh
# make docs: the reference manual (Doxygen, from include/cio.h alone) and
# the guide (pandoc, one page per chapter), with an index page linking both.
#
#   sh docs/build.sh OUT VERSION CAKE OUT/index.html, OUT/guide/*.html,
#                                     OUT/reference/html/cio_8h.html
#
# CAKE is the built examples/cake: its real timeline, traced as it runs,
# is chapter 1's picture.
#
# Fails when Doxygen warns (docs/Doxyfile) or when a public function is
# undocumented, says nothing of what it returns, or is documented in a form
# Doxygen does not read (tests/check_header.sh --doxygen).
set -eu
out=$1
version=$2
cake=$3
for tool in doxygen pandoc dot; do
    command -v $tool >/dev/null ||
        { echo "docs: $tool not found (Debian: apt-get install $tool; dot is graphviz)" >&2; exit 2; }
done
# Only what this script and tests/check_docs.sh write: OUT may hold more.
rm -rf "$out/index.html" "$out/guide" "$out/reference" "$out/screenshots" \
    "$out/dom" "$out/chromium.log"
mkdir -p "$out/guide"

CIO_DOCS_OUT=$out/reference CIO_VERSION=$version doxygen docs/Doxyfile
sh tests/check_header.sh --doxygen "$out/reference/xml/cio_8h.xml" include/cio.h

# The guide's figures: Graphviz sources beside the chapters, drawn as SVG
# where the chapters' pages look for them; a chapter that shows a figure
# with no source fails the build.
mkdir -p "$out/guide/figures"
for dotfile in docs/guide/figures/*.dot; do
    dot -Tsvg "$dotfile" -o "$out/guide/figures/$(basename "$dotfile" .dot).svg"
done
CIO_TRACE=$out/guide/figures/cake-trace.json "$cake" >/dev/null
python3 tests/check_trace.py --cake "$out/guide/figures/cake-trace.json" >/dev/null
python3 tools/trace_svg.py "$out/guide/figures/cake-trace.json" \
    "$out/guide/figures/cake-timeline.svg" --no-loop \
    --title "examples/cake.c, traced (CIO_TRACE=cake.json)"
for fig in $(sed -n 's/.*](figures\/\([^)]*\)).*/\1/p' docs/guide/*.md); do
    [ -s "$out/guide/figures/$fig" ] ||
        { echo "docs: figures/$fig is shown but has no source" >&2; exit 1; }
done

# A chapter's title is its first line, "# N. Title".
title() { sed -n '1s/^# //p' "$1"; }

# Every chapter leads back to the index, on to the reference, and to the
# chapters before and after it.
link() { [ -z "$1" ] || echo "&middot; $2 <a href=\"$(basename "$1" .md).html\">$(title "$1")</a>"; }
nav=$out/nav.html
set -- docs/guide/*.md
prev=
while [ $# -gt 0 ]; do
    md=$1
    shift
    {
        echo '<nav><a href="../index.html">cio</a> &middot;'
        echo '<a href="../reference/html/cio_8h.html">reference manual</a>'
        link "$prev" "previous:"
        link "${1:-}" "next:"
        echo '</nav>'
    } > "$nav"
    pandoc --standalone --from=gfm --to=html5 --toc --toc-depth=2 \
        --metadata pagetitle="cio: $(title "$md")" --include-before-body="$nav" \
        -o "$out/guide/$(basename "$md" .md).html" "$md"
    prev=$md
done
rm "$nav"

{
    echo "# cio $version: asyncio for C"
    echo
    echo "## The guide"
    echo
    for md in docs/guide/*.md; do
        echo "- [$(title "$md")](guide/$(basename "$md" .md).html)"
    done
    echo
    echo "## The reference manual"
    echo
    echo "- [cio.h](reference/html/cio_8h.html): every type and function," \
        "from the header's comments."
} | pandoc --standalone --from=gfm --to=html5 \
    --metadata pagetitle="cio $version" -o "$out/index.html"
echo "docs: $out/index.html"
