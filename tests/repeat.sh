#!/bin/sh
# Runs a command (make check-once ...) $REPEAT times in a row, stopping at
# the first failure; with PIN=1 pinned to one core (taskset -c 0), with
# LOAD=k while k busy loops keep the other cores loaded. Prints one line a
# run and a summary line.
set -u
n=${REPEAT:-1}
pin=${PIN:-}
load=${LOAD:-0}
busy=""
stop_load() {
    for pid in $busy; do kill "$pid" 2>/dev/null; done
}
trap stop_load EXIT INT TERM
i=0
while [ "$i" -lt "$load" ]; do
    sh -c 'while :; do :; done' &
    busy="$busy $!"
    i=$((i + 1))
done
prefix=""
[ -n "$pin" ] && [ "$pin" != 0 ] && prefix="taskset -c 0"
i=1
while [ "$i" -le "$n" ]; do
    log=$(mktemp)
    if $prefix "$@" >"$log" 2>&1; then
        echo "run $i/$n: ok ($(grep -E 'passed' "$log" | tr '\n' ' '))"
        rm -f "$log"
    else
        cat "$log"
        rm -f "$log"
        echo "run $i/$n: FAILED (pin=${pin:-0} load=$load)"
        echo "repeat: $((i - 1)) passed, 1 failed"
        exit 1
    fi
    i=$((i + 1))
done
echo "repeat: $n passed, 0 failed (pin=${pin:-0} load=$load)"
