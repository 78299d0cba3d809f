#!/bin/sh
# make cancel: the cancellation harness on the real build (0 bad wanted),
# then on each build with a planted lost hand-off (each must be caught);
# prints both tables and puts them into docs/trust.md.
# usage: cancel.sh BIN RANDOM_RUNS "plant=bin ..."
set -u
bin=$1 runs=$2 plants=$3
mkdir -p build/trust
table=build/trust/cancel.md
status=0
"$bin" "$runs" >"$table" 2>build/trust/cancel.err || status=1
grep -v "destroyed but it is pending" build/trust/cancel.err | head -20
{
    echo
    echo "Each planted lost hand-off (\`-DCIO_PLANT_BUG_NAME\`) must be caught:"
    echo
    echo "| planted bug | bad runs | caught |"
    echo "| --- | ---: | --- |"
} >>"$table"
for pb in $plants; do
    name=${pb%%=*} pbin=${pb#*=}
    out=$("$pbin" "$runs" 2>/dev/null)
    if [ $? -ne 0 ]; then
        caught=yes
    else
        caught="NO"
        status=1
    fi
    bad=$(echo "$out" | sed -n 's/^| \*\*total\*\* .*| \*\*\([0-9]*\)\*\* |$/\1/p')
    echo "| $name | ${bad:-?} | $caught |" >>"$table"
done
cat "$table"
sh tests/trust/update.sh cancel "$table"
exit $status
