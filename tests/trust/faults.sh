#!/bin/sh
# make faults: the fault matrices of tests/test_faults.c (faults_*) on each
# backend, in their short form (what make check runs) or with FULL=1 at
# every N of every scenario; prints a table of scenarios, faults injected
# and bad runs, and puts it into docs/trust.md.
# usage: faults.sh TEST_BIN "BACKENDS" FULL(1 or empty) SLOW(1 or empty)
set -u
bin=$1 backends=$2 full=${3:-} slow=${4:-}
mkdir -p build/trust
report=build/trust/faults.lines table=build/trust/faults.md
rm -f "$report"
mode=short
[ -n "$full" ] && mode=full
status=0
log=$(mktemp)
for b in $backends; do
    CIO_BACKEND=$b CIO_FAULTS=$mode CIO_FAULTS_REPORT=$PWD/$report \
        CIO_TEST_SLOW=$slow "$bin" faults_ >"$log" 2>&1 || status=1
    cat "$log"
    grep '^FAIL ' "$log" | while read -r _ name _; do
        echo "$name $b - FAIL" >>"$report"
    done
done
rm -f "$log"
{
    echo "| scenario | backend | mode | faults injected | bad |"
    echo "| --- | --- | --- | ---: | ---: |"
    while read -r name b met verdict; do
        bad=0
        [ "${verdict:-}" = FAIL ] && bad=1
        echo "| $name | $b | $mode | $met | $bad |"
    done <"$report"
    awk '$4 != "FAIL" { n += $3 } $4 == "FAIL" { bad++ }
         END { printf "| **total** | | | **%d** | **%d** |\n", n, bad }' "$report"
} >"$table"
cat "$table"
sh tests/trust/update.sh faults "$table"
exit $status
