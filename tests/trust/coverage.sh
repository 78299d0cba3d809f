#!/bin/sh
# make coverage: builds with gcov into build/coverage, runs what make check
# runs (tests on both backends, examples, fuzz corpora) and the
# cancellation harness, and reports src/'s
# line and branch coverage with gcovr: a table per file (worst first) and
# the totals against the targets (lines >= 95%, branches >= 85%), HTML in
# build/coverage/html/. A failing test is reported but still measured.
# usage: coverage.sh MAKE
set -u
make=$1
dir=build/coverage
mkdir -p build/trust "$dir/html"
find "$dir" -name '*.gcda' -delete 2>/dev/null
$make --no-print-directory COVERAGE=1 BUILD_DIR=$dir check-once \
    >"$dir/check.log" 2>&1 || echo "coverage: make check failed (see $dir/check.log)"
grep -E '^(e?poll: [0-9]+ passed|FAIL )' "$dir/check.log"
# The cancellation harness counts too (it reaches waits make check rarely
# cancels); the soak and libFuzzer runs do not (load, not paths).
$make --no-print-directory COVERAGE=1 BUILD_DIR=$dir cancel-bin >/dev/null 2>&1 &&
    "$dir/cancel" 200 >/dev/null 2>&1 || echo "coverage: cancel harness failed"
gcovr --root . --filter 'src/' --object-directory "$dir/obj" \
    --json-summary "$dir/summary.json" \
    --html-details "$dir/html/index.html" >/dev/null 2>"$dir/gcovr.err" ||
    { cat "$dir/gcovr.err"; exit 1; }
python3 - "$dir/summary.json" build/trust/coverage.md <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def pct(c, t): return 100.0 * c / t if t else 100.0
rows = sorted(d["files"], key=lambda f: pct(f["line_covered"], f["line_total"]))
out = ["| src/ file | lines | line % | branches | branch % |",
       "| --- | ---: | ---: | ---: | ---: |"]
for f in rows:
    out.append("| %s | %d/%d | %.1f | %d/%d | %.1f |" % (
        f["filename"], f["line_covered"], f["line_total"],
        pct(f["line_covered"], f["line_total"]), f["branch_covered"],
        f["branch_total"], pct(f["branch_covered"], f["branch_total"])))
lp = pct(d["line_covered"], d["line_total"])
bp = pct(d["branch_covered"], d["branch_total"])
out.append("| **total** | %d/%d | **%.1f** (target 95) | %d/%d | **%.1f** (target 85) |" % (
    d["line_covered"], d["line_total"], lp, d["branch_covered"],
    d["branch_total"], bp))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
cat build/trust/coverage.md
sh tests/trust/update.sh coverage build/trust/coverage.md
