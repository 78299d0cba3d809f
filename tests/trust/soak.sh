#!/bin/sh
# make soak: runs tests/trust/soak.c and puts its table into docs/trust.md.
# usage: soak.sh BIN SECS CONNS CYCLES
set -u
mkdir -p build/trust
table=build/trust/soak.md
echo "soak: $3 connections for $2 s, $4 connect/close cycles"
"$1" "$2" "$3" "$4" >"$table.rows"
status=$?
{
    echo "$3 clients ping-ponging for $2 s; $4 connect/close cycles."
    echo
    cat "$table.rows"
} >"$table"
cat "$table"
sh tests/trust/update.sh soak "$table"
[ $status -eq 0 ] || echo "soak: FAILED (a BAD row above)"
exit $status
