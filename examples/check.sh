#!/bin/sh
# Runs every example that has an examples/NAME.expected file and checks its
# output.  Usage: sh examples/check.sh DIR   (DIR holds the built examples)
#
# Each line of NAME.expected is a shell glob pattern matched against the
# same line of the example's stdout, so `total: * s` matches any time.
# $RUNNER, if set, goes in front of each run (e.g. a valgrind command).
# Prints `ok example NAME` or `FAIL example NAME` with a report (or `skip
# example NAME: why` for an example that exits 77 because the build lacks
# what it shows), then `examples: N passed, N failed`; exits non-zero if
# any failed.

dir=${1:?usage: sh examples/check.sh DIR}
here=$(dirname "$0")
limit=60

out=$(mktemp) && err=$(mktemp) && report=$(mktemp) || exit 2
trap 'rm -f "$out" "$err" "$report"' EXIT
trap 'exit 2' HUP INT TERM

# Compares $out with the patterns in $1; writes a diff-like report of the
# first 20 differing lines into $report; returns non-zero on any mismatch.
note() {
    bad=$((bad + 1))
    [ $bad -le 20 ] && printf '    %s\n' "$@" >>"$report"
    [ $bad = 21 ] && echo "    (more differences not shown)" >>"$report"
    return 0
}

compare() {
    : >"$report"
    bad=0
    n=0
    exec 3<"$1" 4<"$out"
    while :; do
        got_exp=0
        got_act=0
        # A last line without a newline still counts.
        if IFS= read -r exp <&3 || [ -n "$exp" ]; then got_exp=1; fi
        if IFS= read -r act <&4 || [ -n "$act" ]; then got_act=1; fi
        [ $got_exp = 0 ] && [ $got_act = 0 ] && break
        n=$((n + 1))
        if [ $got_exp = 0 ]; then
            note "line $n: unexpected" "+$act"
        elif [ $got_act = 0 ]; then
            note "line $n: missing" "-$exp"
        else
            # $exp unquoted: the expected line is a glob pattern.
            # shellcheck disable=SC2254
            case $act in
            $exp) ;;
            *)
                note "line $n:" "-$exp" "+$act"
                ;;
            esac
        fi
        exp=
        act=
    done
    exec 3<&- 4<&-
    [ $bad = 0 ]
}

passed=0
failed=0
skipped=0
for expected in "$here"/*.expected; do
    [ -e "$expected" ] || continue
    name=$(basename "$expected" .expected)
    bin=$dir/$name
    if [ ! -x "$bin" ]; then
        echo "FAIL example $name"
        echo "    $bin: not built"
        failed=$((failed + 1))
        continue
    fi
    # $RUNNER unquoted: it is a command with its arguments.
    # shellcheck disable=SC2086
    timeout $limit $RUNNER "$bin" </dev/null >"$out" 2>"$err"
    status=$?
    # 77: the build lacks what the example shows (TLS without OpenSSL);
    # its first line says what.
    if [ $status = 77 ]; then
        echo "skip example $name: $(head -n 1 "$out")"
        skipped=$((skipped + 1))
        continue
    fi
    if compare "$expected" && [ $status = 0 ]; then
        echo "ok   example $name"
        passed=$((passed + 1))
        continue
    fi
    echo "FAIL example $name"
    if [ $status = 124 ]; then
        echo "    timed out after $limit s"
    elif [ $status != 0 ]; then
        echo "    exited with status $status"
    fi
    [ -s "$report" ] && echo "    output differs (-expected +actual):" &&
        cat "$report"
    if [ -s "$err" ]; then
        echo "    stderr:"
        sed 's/^/    | /' "$err"
    fi
    failed=$((failed + 1))
done

echo "examples: $passed passed, $failed failed$([ $skipped = 0 ] || echo ", $skipped skipped")"
[ $failed = 0 ]
