#!/bin/sh
# make fuzz: runs each libFuzzer target for SECS seconds, starting from its
# corpus in the tree (never written to: new inputs go to build/fuzz/work),
# and prints a table. A crash leaves its input in build/fuzz/crashes and
# fails. MERGE=1 then folds what was learnt into the tree's corpus,
# minimised by coverage (keep it small: make check replays it).
# usage: run.sh BIN_DIR SECS TARGET...
set -u
bin=$1 secs=$2
shift 2
work=build/fuzz/work crashes=build/fuzz/crashes table=build/trust/fuzz.md
mkdir -p "$crashes" build/trust
status=0
{
    echo "| fuzz target | seconds | runs | corpus in tree | new inputs | crashes |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
} >"$table"
for t in "$@"; do
    mkdir -p "$work/$t" "tests/fuzz/corpus/$t"
    log=build/fuzz/$t.log
    nice "$bin/$t" -max_total_time="$secs" -max_len=2048 -timeout=20 \
        -print_final_stats=1 -artifact_prefix="$crashes/$t-" \
        "$work/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log")
    seeds=$(ls "tests/fuzz/corpus/$t" | wc -l)
    bad=0
    if [ $rc -ne 0 ]; then
        bad=1
        status=1
        grep -m5 -E "^(fuzz_|==[0-9]+==ERROR|SUMMARY)" "$log"
        echo "$t: FAILED (log: $log; input in $crashes)"
    fi
    echo "| $t | $secs | ${runs:-0} | $seeds | ${new:-0} | $bad |" >>"$table"
    if [ "${MERGE:-}" = 1 ] && [ $rc -eq 0 ]; then
        rm -rf "$work/$t.merged" && mkdir -p "$work/$t.merged"
        "$bin/$t" -merge=1 -max_len=2048 "$work/$t.merged" \
            "tests/fuzz/corpus/$t" "$work/$t" >/dev/null 2>&1 &&
            rm -f "tests/fuzz/corpus/$t"/* &&
            cp "$work/$t.merged"/* "tests/fuzz/corpus/$t/"
    fi
done
cat "$table"
sh tests/trust/update.sh fuzz "$table"
exit $status
