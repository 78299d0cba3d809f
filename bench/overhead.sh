#!/bin/bash
# What a change costs cio's own fast paths: callsoon and switch built
# against the library at commit BASE and at the work tree, run in turn
# (old, new, old, new: RUNS of each, pinned to one core), their medians;
# then callgrind's instruction counts per operation (load-independent:
# the difference of a 300,000 and a 100,000 run over 200,000); then the
# work tree's figures with the timeline trace on (CIO_TRACE).
#
# usage: bash bench/overhead.sh BASE [RUNS]   (docs/benchmarks.md has a run)
set -eu
base=${1:?usage: bash bench/overhead.sh BASE [RUNS]}
runs=${2:-7}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git worktree add -q "$tmp/old" "$base"
libs=$(pkg-config --libs openssl 2>/dev/null || true)
build() { # tree name
    make -s -C "$1" build/gcc-asm/libcio.a >/dev/null
    for b in callsoon switch; do
        gcc -O2 -std=c11 -I"$1/include" -Ibench "bench/cio_$b.c" \
            "$1/build/gcc-asm/libcio.a" -o "$tmp/$2_$b" -lm -pthread $libs
    done
}
build "$tmp/old" old
build . new
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for b in callsoon switch; do
    for v in old new; do : >"$tmp/$v.$b"; done
    for ((i = 0; i < runs; i++)); do
        for v in old new; do
            taskset -c 0 "$tmp/${v}_$b" 1000000 | awk '{print $4}' >>"$tmp/$v.$b"
        done
    done
    echo "$b ns/op: before $(median <"$tmp/old.$b"), after $(median <"$tmp/new.$b")"
done
per_op() { # binary
    local a c
    a=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 100000 2>&1 |
        sed -n 's/.*Collected : //p')
    c=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 300000 2>&1 |
        sed -n 's/.*Collected : //p')
    echo $(((c - a) / 200000))
}
if command -v valgrind >/dev/null; then
    for b in callsoon switch; do
        echo "$b instructions/op: before $(per_op "$tmp/old_$b"), after $(per_op "$tmp/new_$b")"
    done
fi
for b in callsoon switch; do
    : >"$tmp/traced.$b"
    for ((i = 0; i < runs; i++)); do
        CIO_TRACE=$tmp/t.json taskset -c 0 "$tmp/new_$b" 500000 |
            awk '{print $4}' >>"$tmp/traced.$b"
    done
    echo "$b ns/op traced: $(median <"$tmp/traced.$b")"
done
