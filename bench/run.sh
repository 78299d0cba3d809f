#!/usr/bin/env bash
# bench/run.sh [PATTERN] - build the peer benchmarks and run every benchmark.
#
# For each benchmark name (in order below) whose name matches PATTERN (a bash
# regular expression, e.g. `callsoon` or `queue`; empty = all), it runs first
# cio's own program bench/build/cio_<name> if it exists (the Makefile's
# `make bench B=name` builds those), then each peer system.
#
# Every program prints lines `bench <name> <system> <value> <unit>`. A peer
# whose toolchain cannot be installed or built prints
# `bench <name> <system> unavailable -`; one that crashes or times out prints
# `bench <name> <system> failed -`. Either way the run continues.
#
# Environment:
#   BENCH_N        count passed to every program (quick smoke runs), e.g. 10000
#   BENCH_TIMEOUT  seconds allowed per program (default 300)
#   BENCH_NO_INSTALL=1  never call apt-get
#   PYTHON         interpreter for the Python peers (default /usr/bin/python3:
#                  the system 3.11 that Debian's python3-uvloop belongs to)
set -u

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS=$BENCH_DIR/peers
BUILD=$BENCH_DIR/build
PATTERN=${1:-}
PYTHON=${PYTHON:-/usr/bin/python3}
TIMEOUT=${BENCH_TIMEOUT:-300}
COUNT_ARGS=()
[[ -n ${BENCH_N:-} ]] && COUNT_ARGS=("$BENCH_N")

# name -> peer systems, in the order they run.
BENCHES=(callsoon timers threadsafe spawn switch sleepers queue_pingpong queue_throughput)
declare -A SYSTEMS=(
    [callsoon]="libuv asyncio uvloop"
    [timers]="libuv asyncio uvloop"
    [threadsafe]="libuv asyncio uvloop"
    [spawn]="asyncio uvloop go"
    [switch]="asyncio uvloop go"
    [sleepers]="asyncio uvloop go"
    [queue_pingpong]="asyncio uvloop go"
    [queue_throughput]="asyncio uvloop go"
)
LOOP_BENCHES=" callsoon timers threadsafe " # py_loop.py + uv_<name>; rest: py_tasks.py + go

log() { echo "run.sh: $*" >&2; }

selected=()
for b in "${BENCHES[@]}"; do
    [[ -z $PATTERN || $b =~ $PATTERN ]] && selected+=("$b")
done
if ((${#selected[@]} == 0)); then
    log "no benchmark matches '$PATTERN' (known: ${BENCHES[*]})"
    exit 2
fi

# Which peer systems the selected benchmarks need.
need_libuv=0 need_py=0 need_go=0
for b in "${selected[@]}"; do
    for s in ${SYSTEMS[$b]}; do
        case $s in
            libuv) need_libuv=1 ;;
            asyncio | uvloop) need_py=1 ;;
            go) need_go=1 ;;
        esac
    done
done

# ---- install missing Debian packages (apt-get update once, only if needed)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
((need_libuv)) && ! have_pkg libuv1-dev && missing+=(libuv1-dev)
((need_py)) && ! have_pkg python3-uvloop && missing+=(python3-uvloop)
((need_go)) && ! have_pkg golang-go && missing+=(golang-go)
if ((${#missing[@]})) && [[ -z ${BENCH_NO_INSTALL:-} ]]; then
    SUDO=()
    ((EUID != 0)) && command -v sudo >/dev/null && SUDO=(sudo -n)
    log "installing ${missing[*]}"
    if "${SUDO[@]}" apt-get update -qq >&2; then
        # One package at a time, so one that fails does not block the others.
        for p in "${missing[@]}"; do
            DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$p" >&2 ||
                log "could not install $p"
        done
    else
        log "apt-get update failed; continuing with what is installed"
    fi
fi

# ---- build the peers into bench/build (only when a source is newer)
mkdir -p "$BUILD"
declare -A AVAIL # system -> 1 if its peer can run

# needs_build OUT SRC... : true if OUT is missing or older than any SRC.
needs_build() {
    local out=$1 src
    shift
    [[ -x $out ]] || return 0
    for src; do [[ $src -nt $out ]] && return 0; done
    return 1
}

if ((need_libuv)) && have_pkg libuv1-dev; then
    AVAIL[libuv]=1
    for b in $LOOP_BENCHES; do
        out=$BUILD/uv_$b
        if needs_build "$out" "$PEERS/uv_$b.c" "$PEERS/uv_common.h"; then
            gcc -O2 -Wall -Wextra -o "$out" "$PEERS/uv_$b.c" -luv -lpthread >&2 ||
                { log "building uv_$b failed"; AVAIL[libuv]=0; }
        fi
    done
fi
if ((need_py)) && [[ -x $PYTHON ]]; then
    "$PYTHON" -c 'import asyncio' 2>/dev/null && AVAIL[asyncio]=1
    "$PYTHON" -c 'import uvloop' 2>/dev/null && AVAIL[uvloop]=1
fi
if ((need_go)) && command -v go >/dev/null; then
    out=$BUILD/go_tasks
    if needs_build "$out" "$PEERS"/go_tasks/*; then
        # Keep Go's caches under bench/build so nothing lands in $HOME, and
        # stay offline: the program has no dependencies.
        (cd "$PEERS/go_tasks" &&
            GOPATH=$BUILD/gopath GOCACHE=$BUILD/gocache GOPROXY=off GOFLAGS=-mod=mod \
                go build -o "$out" . >&2) || log "building go_tasks failed"
    fi
    [[ -x $out ]] && AVAIL[go]=1
fi

# ---- run
# run_prog NAME SYSTEM CMD... : run one program; on failure print a `failed` line.
run_prog() {
    local name=$1 system=$2
    shift 2
    if ! timeout "$TIMEOUT" "$@"; then
        log "$system $name exited with an error"
        echo "bench $name $system failed -"
    fi
}

for b in "${selected[@]}"; do
    if [[ -x $BUILD/cio_$b ]]; then
        run_prog "$b" cio "$BUILD/cio_$b" "${COUNT_ARGS[@]}"
    fi
    for s in ${SYSTEMS[$b]}; do
        if [[ ${AVAIL[$s]:-0} != 1 ]]; then
            echo "bench $b $s unavailable -"
            continue
        fi
        if [[ $LOOP_BENCHES == *" $b "* ]]; then
            case $s in
                libuv) run_prog "$b" "$s" "$BUILD/uv_$b" "${COUNT_ARGS[@]}" ;;
                asyncio) run_prog "$b" "$s" "$PYTHON" "$PEERS/py_loop.py" "$b" "${COUNT_ARGS[@]}" ;;
                uvloop) run_prog "$b" "$s" "$PYTHON" "$PEERS/py_loop.py" "$b" "${COUNT_ARGS[@]}" --uvloop ;;
            esac
        else
            case $s in
                asyncio) run_prog "$b" "$s" "$PYTHON" "$PEERS/py_tasks.py" "$b" "${COUNT_ARGS[@]}" ;;
                uvloop) run_prog "$b" "$s" "$PYTHON" "$PEERS/py_tasks.py" "$b" "${COUNT_ARGS[@]}" --uvloop ;;
                go) run_prog "$b" "$s" "$BUILD/go_tasks" "$b" "${COUNT_ARGS[@]}" ;;
            esac
        fi
    done
done
