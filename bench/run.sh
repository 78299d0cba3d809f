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
# The network benchmarks (echo_protocol, echo_streams, idle_conns) run each
# system's echo server (cio's bench/build/cio_echo_protocol and
# cio_echo_streams, then the peers) pinned to CPU 0 on a free 127.0.0.1
# port, and drive it with bench/loadgen pinned to CPU 1:
#   echo_protocol, echo_streams   1 KiB x 100 connections; suffixed _1k_1,
#                  _1k_10 (1 KiB x 1, x 10) and _64k_10 (64 KiB x 10):
#                  msgs/s, then _p50 and _p99 round-trip latency in us
#   readline       (cio only) a 16 MiB line in 1 KiB writes read with
#                  cio_stream_readline: its time over one memchr of 16 MiB
#   idle_conns     10,000 idle connections: the server's VmRSS growth per
#                  connection (cio's streams server: idle_conns_streams)
#   sendfile       a 1 GiB file on tmpfs (fallocate'd: real pages, not a
#                  sparse file) served whole to bench/loadgen --sink (which
#                  drops the bytes with MSG_TRUNC, so the reader costs
#                  little): cio_stream_sendfile against a hand-written
#                  sendfile(2) loop with epoll and a blocking one. Every
#                  server runs at once on its own port (pinned to CPU 0,
#                  idle unless read), and the reader (CPU 1) takes them in
#                  turn for BENCH_SENDFILE_ROUNDS rounds (default 7), so a
#                  load that comes and goes hits all alike: MiB/s, the
#                  median of each system's rounds
#   rss            (cio only) VmRSS before, at the peak of and after a burst:
#                  10,000 streams each reading 64 KiB once (rss_streams_*),
#                  10,000 tasks each with 64 KiB of stack in use (rss_tasks_*)
#   redis          examples/mini_redis (built as bench/build/mini_redis)
#                  and redis-server (persistence off, io-threads 1), both
#                  pinned to CPU 0 and running at once, driven by
#                  redis-benchmark on CPU 1: -c 50, each of -t ping_inline,
#                  ping_mbulk, set, get (what -t ping,set,get runs) at -P 1
#                  (-n BENCH_REDIS_N1, default 400000) and -P 16 (-n
#                  BENCH_REDIS_N16, default 6000000), about 3 s a test
#                  here, one system then the other for each test, so a
#                  load that comes and goes hits both alike;
#                  BENCH_REDIS_ROUNDS rounds (default 3), the median of
#                  each: redis_<test>_P<n> in req/s, _p99 in ms
#   http           examples/http_server (bench/build/http_server, one loop),
#                  nginx (one worker; sendfile, tcp_nopush, access log off,
#                  keepalive_requests raised so wrk's connections stay
#                  open) and go_http (net/http, GOMAXPROCS=1), serving one
#                  root directory, all pinned to CPU 0 and running at once;
#                  wrk on CPU 1 (-t 1 -c 50 --latency, BENCH_SECONDS a run)
#                  takes them in turn for each test: http_small (a 1 KiB
#                  file), http_64k (a 64 KiB file), http_hello (the dynamic
#                  /hello; nginx answers it with `return 200`, a constant of
#                  its configuration: a reference, not a like-for-like
#                  handler); then http_loops (/hello from the server with
#                  one loop, cio_1, and with --threads 2, cio_2, unpinned,
#                  wrk -t 2 unpinned: the two cores shared by server and
#                  load, so not a scaling figure, only that 2 loops are not
#                  slower); BENCH_HTTP_ROUNDS rounds (default 3), the
#                  median of each: req/s, and _p99 in ms
#
# The TLS benchmarks run each system's TLS echo server (cio's
# bench/build/cio_echo_tls, the peers given a P-256 certificate made in
# bench/build/tls) and drive it with bench/tls_loadgen (OpenSSL, epoll; TLS
# 1.3 with TLS_AES_128_GCM_SHA256 for every server), same pinning:
#   tls_echo       1 KiB x 100 and _64k_10 (64 KiB x 10): msgs/s, and the
#                  server's CPU per message (_cpu, us/msg: what the
#                  machine's other load does not move)
#   tls_handshake  new connections per second, each a full handshake then
#                  closed: _1 one at a time, _10 ten at a time (bench/
#                  tls_loadgen, with _cpu: the server's us per handshake),
#                  and _s_time: `openssl s_time -new`, one at a time; the
#                  peers include `openssl s_server`
#
# Environment:
#   BENCH_N        count passed to every program (quick smoke runs), e.g. 10000
#   BENCH_SECONDS  measured seconds per echo run (default 5; after a warm-up
#                  of BENCH_WARMUP seconds, default 1, not counted)
#   BENCH_IDLE_CONNS  connections of idle_conns (default 10000)
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
BENCHES=(callsoon timers threadsafe spawn switch sleepers queue_pingpong queue_throughput executor
    spawn_process echo_protocol echo_streams idle_conns readline sendfile tls_echo tls_handshake rss redis http)
declare -A SYSTEMS=(
    [callsoon]="libuv asyncio uvloop"
    [timers]="libuv asyncio uvloop"
    [threadsafe]="libuv asyncio uvloop"
    [spawn]="asyncio uvloop go"
    [switch]="asyncio uvloop go"
    [sleepers]="asyncio uvloop go"
    [queue_pingpong]="asyncio uvloop go"
    [queue_throughput]="asyncio uvloop go"
    [executor]="asyncio uvloop"
    [spawn_process]="asyncio uvloop"
    [echo_protocol]="epoll libuv asyncio uvloop go"
    [echo_streams]="epoll asyncio uvloop go" # the Python peers as streams servers
    [idle_conns]="epoll"                     # for reference
    [readline]=""                            # cio alone: a ratio to memchr
    [sendfile]="epoll blocking"              # bench/peers/sendfile_loop.c
    [tls_echo]="uvloop go"                   # uvloop: protocols, ssl=
    [tls_handshake]="s_server uvloop go"
    [rss]=""                                 # cio alone: before, peak, after
    [redis]="redis-server"                   # Debian's, driven by redis-benchmark
    [http]="nginx go"                        # driven by wrk
)
LOOP_BENCHES=" callsoon timers threadsafe " # py_loop.py + uv_<name>
NET_BENCHES=" echo_protocol echo_streams idle_conns " # servers + bench/loadgen
TLS_BENCHES=" tls_echo tls_handshake "               # servers + bench/tls_loadgen
# The rest: py_tasks.py + go_tasks.
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-1}
IDLE_N=${BENCH_IDLE_CONNS:-10000}

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
need_libuv=0 need_py=0 need_go=0 need_net=0 need_tasks=0 need_tls=0
for b in "${selected[@]}"; do
    if [[ $TLS_BENCHES == *" $b "* ]]; then
        need_net=1 need_tls=1
    elif [[ $NET_BENCHES == *" $b "* || $b == sendfile || $b == redis || $b == http ]]; then
        need_net=1
    elif [[ $LOOP_BENCHES != *" $b "* ]]; then
        need_tasks=1
    fi
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
((need_tls)) && ! have_pkg libssl-dev && missing+=(libssl-dev)
((need_tls)) && ! have_pkg openssl && missing+=(openssl)
[[ " ${selected[*]} " == *" redis "* ]] && ! command -v redis-benchmark >/dev/null &&
    missing+=(redis-tools redis-server)
if [[ " ${selected[*]} " == *" http "* ]]; then
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v curl >/dev/null || missing+=(curl)
fi
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
declare -A WHY   # system -> why it cannot (printed when it is skipped)

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
    for b in $LOOP_BENCHES echo; do
        out=$BUILD/uv_$b
        if needs_build "$out" "$PEERS/uv_$b.c" "$PEERS/uv_common.h"; then
            gcc -O2 -Wall -Wextra -o "$out" "$PEERS/uv_$b.c" -luv -lpthread >&2 ||
                { log "building uv_$b failed"; AVAIL[libuv]=0; }
        fi
    done
fi
if ((need_net)); then
    # The load generator and the epoll peer: plain C, no dependencies.
    for src in "$BENCH_DIR/loadgen.c" "$PEERS/epoll_echo.c" "$PEERS/sendfile_loop.c"; do
        out=$BUILD/$(basename "$src" .c)
        if needs_build "$out" "$src"; then
            gcc -O2 -Wall -Wextra -o "$out" "$src" >&2 || log "building $(basename "$src") failed"
        fi
    done
    [[ -x $BUILD/epoll_echo ]] && AVAIL[epoll]=1
    [[ -x $BUILD/sendfile_loop ]] && AVAIL[blocking]=1
fi
TLS_DIR=$BUILD/tls TLS_OK=0 TLS_WHY=""
if ((need_tls)); then
    tls_certificate() { # a self-signed P-256 certificate, as tests/test_tls.c
        [[ -s $TLS_DIR/cert.pem && -s $TLS_DIR/key.pem ]] && return 0
        mkdir -p "$TLS_DIR" &&
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -days 365 \
                -subj /CN=localhost 2>/dev/null
    }
    if ! command -v openssl >/dev/null; then
        TLS_WHY="no openssl program (Debian package openssl)"
    elif ! pkg-config --exists openssl 2>/dev/null; then
        TLS_WHY="no OpenSSL headers (Debian package libssl-dev)"
    elif ! tls_certificate; then
        TLS_WHY="openssl req could not make a certificate"
    elif needs_build "$BUILD/tls_loadgen" "$BENCH_DIR/tls_loadgen.c" &&
        ! gcc -O2 -Wall -Wextra -o "$BUILD/tls_loadgen" "$BENCH_DIR/tls_loadgen.c" \
            $(pkg-config --cflags --libs openssl) >&2; then
        TLS_WHY="building tls_loadgen failed"
    else
        TLS_OK=1 AVAIL[s_server]=1
    fi
    ((TLS_OK)) || { log "TLS benchmarks skipped: $TLS_WHY"; WHY[s_server]=$TLS_WHY; }
fi
WHY[libuv]="libuv1-dev not installed or uv_* not built"
WHY[epoll]="epoll_echo not built"
WHY[asyncio]="no $PYTHON"
WHY[uvloop]="$PYTHON cannot import uvloop (Debian package python3-uvloop)"
WHY[go]="no go command (Debian package golang-go), or a Go peer did not build"
if ((need_py)) && [[ -x $PYTHON ]]; then
    "$PYTHON" -c 'import asyncio' 2>/dev/null && AVAIL[asyncio]=1
    "$PYTHON" -c 'import uvloop' 2>/dev/null && AVAIL[uvloop]=1
fi
if ((need_go)) && command -v go >/dev/null; then
    AVAIL[go]=1
    progs=()
    ((need_tasks)) && progs+=(go_tasks)
    ((need_net)) && progs+=(go_echo)
    [[ " ${selected[*]} " == *" http "* ]] && progs+=(go_http)
    for prog in "${progs[@]}"; do
        out=$BUILD/$prog
        if needs_build "$out" "$PEERS/$prog"/*; then
            # Keep Go's caches under bench/build so nothing lands in $HOME, and
            # stay offline: the programs have no dependencies.
            (cd "$PEERS/$prog" &&
                GOPATH=$BUILD/gopath GOCACHE=$BUILD/gocache GOPROXY=off GOFLAGS=-mod=mod \
                    go build -o "$out" . >&2) || log "building $prog failed"
        fi
        [[ -x $out ]] || AVAIL[go]=0
    done
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

# ---- network benchmarks: a server on CPU 0, bench/loadgen on CPU 1
LOADGEN=$BUILD/loadgen
PIN_SERVER=() PIN_LOAD=()
if command -v taskset >/dev/null && taskset -c 1 true 2>/dev/null; then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
elif ((need_net)); then
    log "fewer than 2 CPUs usable: server and load generator are not pinned"
fi
# Every loadgen run is bounded; a server lives at most as long as its four
# runs (killed with SIGKILL by `timeout` if this script dies first).
LG_TIMEOUT=$(awk -v s="$SECS" -v w="$WARMUP" 'BEGIN { printf "%d", s + w + 30 }')
SERVER_TIMEOUT=$((4 * LG_TIMEOUT + 60))
SERVER_WRAP="" SERVER_PID="" PORT=""
if [[ " ${selected[*]} " == *" idle_conns "* ]]; then
    # Room for the idle connections, in every server and the loadgen.
    nofile=$(ulimit -Hn)
    [[ $nofile == unlimited ]] && nofile=1048576
    ((nofile > IDLE_N + 1024)) && nofile=$((IDLE_N + 1024))
    ulimit -n "$nofile" 2>/dev/null || log "could not raise the open-file limit"
    if ((IDLE_N + 64 > $(ulimit -n))); then
        IDLE_N=$(($(ulimit -n) - 64))
        log "open-file limit $(ulimit -n): idle_conns uses $IDLE_N connections"
    fi
fi

stop_server() {
    [[ -n $SERVER_WRAP ]] || return 0
    kill "$SERVER_WRAP" 2>/dev/null # timeout passes the signal on
    wait "$SERVER_WRAP" 2>/dev/null
    SERVER_WRAP="" SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server CMD... : runs `CMD... PORT` pinned to CPU 0 on a free
# loopback port; sets PORT, SERVER_PID. Readiness is left to loadgen --wait.
start_server() {
    PORT=$("$LOADGEN" --free-port) || return 1
    timeout -s KILL "$SERVER_TIMEOUT" "${PIN_SERVER[@]}" "$@" "$PORT" &
    SERVER_WRAP=$!
    local i
    for ((i = 0; i < 200; i++)); do # timeout's child (taskset execs CMD)
        SERVER_PID=$(cat "/proc/$SERVER_WRAP/task/$SERVER_WRAP/children" 2>/dev/null)
        SERVER_PID=${SERVER_PID%% *}
        [[ -n $SERVER_PID ]] && return 0
        kill -0 "$SERVER_WRAP" 2>/dev/null || break
        sleep 0.01
    done
    log "server $* did not start"
    stop_server
    return 1
}

server_alive() { [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; }

# server_cmd BENCH SYSTEM : the echo server of SYSTEM for BENCH, in SERVER_CMD.
server_cmd() {
    case $1:$2 in
        echo_protocol:cio | idle_conns:cio) SERVER_CMD=("$BUILD/cio_echo_protocol") ;;
        echo_streams:cio | idle_conns_streams:cio) SERVER_CMD=("$BUILD/cio_echo_streams") ;;
        *:epoll) SERVER_CMD=("$BUILD/epoll_echo") ;;
        *:libuv) SERVER_CMD=("$BUILD/uv_echo") ;;
        echo_protocol:asyncio) SERVER_CMD=("$PYTHON" "$PEERS/py_echo.py") ;;
        echo_protocol:uvloop) SERVER_CMD=("$PYTHON" "$PEERS/py_echo.py" --uvloop) ;;
        echo_streams:asyncio) SERVER_CMD=("$PYTHON" "$PEERS/py_echo.py" --streams) ;;
        echo_streams:uvloop) SERVER_CMD=("$PYTHON" "$PEERS/py_echo.py" --streams --uvloop) ;;
        *:go) SERVER_CMD=("$BUILD/go_echo") ;;
        *) return 1 ;;
    esac
}

# run_echo BENCH SYSTEM : one server, the four load shapes against it.
run_echo() {
    local b=$1 s=$2 shape suffix conns size name
    server_cmd "$b" "$s" && start_server "${SERVER_CMD[@]}" || SERVER_PID=""
    # suffix:connections:message bytes; the unsuffixed line is 1 KiB x 100.
    for shape in :100:1024 _1k_1:1:1024 _1k_10:10:1024 _64k_10:10:65536; do
        IFS=: read -r suffix conns size <<<"$shape"
        name=$b$suffix
        if ! server_alive; then
            echo "bench $name $s failed -"
            continue
        fi
        if ! timeout "$LG_TIMEOUT" "${PIN_LOAD[@]}" "$LOADGEN" --name "$name" --system "$s" \
            --conns "$conns" --size "$size" --seconds "$SECS" --warmup "$WARMUP" --wait 10 127.0.0.1 "$PORT"; then
            log "$s $name: the load generator failed"
            echo "bench $name $s failed -"
        fi
    done
    stop_server
}

# run_idle NAME SERVER-BENCH SYSTEM : IDLE_N idle connections, RSS growth.
run_idle() {
    local name=$1 b=$2 s=$3
    if server_cmd "$b" "$s" && start_server "${SERVER_CMD[@]}" &&
        timeout "$((IDLE_N / 100 + 90))" "${PIN_LOAD[@]}" "$LOADGEN" --idle "$IDLE_N" \
            --pid "$SERVER_PID" --name "$name" --system "$s" --wait 10 127.0.0.1 "$PORT"; then
        :
    else
        log "$s $name failed"
        echo "bench $name $s failed -"
    fi
    stop_server
}

# sendfile_cmd SYSTEM FILE : the file server of SYSTEM, in SERVER_CMD.
sendfile_cmd() {
    case $1 in
        cio) SERVER_CMD=("$BUILD/cio_sendfile" "$2") ;;
        epoll) SERVER_CMD=("$BUILD/sendfile_loop" "$2") ;;
        blocking) SERVER_CMD=("$BUILD/sendfile_loop" --blocking "$2") ;;
    esac
    [[ -x ${SERVER_CMD[0]} ]]
}

# median NUMBERS... : the middle one (the upper of the two middle ones).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }

# run_sendfile : every system's server at once, read in turn (see above).
run_sendfile() {
    local dir=${BENCH_SENDFILE_DIR:-/dev/shm} rounds=${BENCH_SENDFILE_ROUNDS:-7}
    local file s i r line systems=() ports=() wraps=()
    declare -A vals=()
    file=$(mktemp "$dir/cio-bench-sendfile.XXXXXX") && fallocate -l 1G "$file" ||
        { log "no 1 GiB file in $dir"; rm -f "$file"; echo "bench sendfile cio failed -"; return; }
    for s in cio ${SYSTEMS[sendfile]}; do
        if [[ $s != cio && ${AVAIL[$s]:-0} != 1 ]] || ! sendfile_cmd "$s" "$file"; then
            echo "bench sendfile $s unavailable -"
            continue
        fi
        ports+=("$("$LOADGEN" --free-port)") systems+=("$s")
        timeout -s KILL "$SERVER_TIMEOUT" "${PIN_SERVER[@]}" "${SERVER_CMD[@]}" "${ports[-1]}" &
        wraps+=($!)
    done
    for ((r = 0; r < rounds; r++)); do
        for i in "${!systems[@]}"; do
            line=$(timeout "$LG_TIMEOUT" "${PIN_LOAD[@]}" "$LOADGEN" --sink 1 --name sendfile \
                --system "${systems[$i]}" --wait 10 127.0.0.1 "${ports[$i]}") &&
                vals[${systems[$i]}]+=" $(awk '{ print $4 }' <<<"$line")"
        done
    done
    for s in "${systems[@]}"; do
        if [[ -n ${vals[$s]:-} ]]; then
            # shellcheck disable=SC2086 # the values, one word each
            echo "bench sendfile $s $(median ${vals[$s]}) MiB/s"
        else
            log "$s sendfile failed"
            echo "bench sendfile $s failed -"
        fi
    done
    ((${#wraps[@]})) && kill "${wraps[@]}" 2>/dev/null
    wait "${wraps[@]}" 2>/dev/null
    rm -f "$file"
}

# ---- TLS benchmarks: as the echo ones, with bench/tls_loadgen
# tls_server_cmd SYSTEM : the TLS server of SYSTEM in SERVER_CMD (the port
# follows). s_server's stdout would print what clients send: discarded.
tls_server_cmd() {
    local c=$TLS_DIR/cert.pem k=$TLS_DIR/key.pem
    case $1 in
        cio) SERVER_CMD=("$BUILD/cio_echo_tls" "$c" "$k") ;;
        uvloop) SERVER_CMD=("$PYTHON" "$PEERS/py_echo.py" --uvloop --tls "$c" "$k") ;;
        go) SERVER_CMD=("$BUILD/go_echo" "$c" "$k") ;;
        s_server) SERVER_CMD=(sh -c 'exec openssl s_server -quiet -cert "$1" -key "$2" \
            -accept "$3" >/dev/null 2>&1' s_server "$c" "$k") ;;
        *) return 1 ;;
    esac
}

# tls_load NAME SYSTEM ARGS... : one bench/tls_loadgen run on PORT.
tls_load() {
    local name=$1 s=$2
    shift 2
    if ! server_alive; then
        echo "bench $name $s failed -"
    elif ! timeout "$LG_TIMEOUT" "${PIN_LOAD[@]}" "$BUILD/tls_loadgen" --name "$name" \
        --system "$s" --pid "$SERVER_PID" --seconds "$SECS" --warmup "$WARMUP" \
        --wait 10 "$@" 127.0.0.1 "$PORT"; then
        log "$s $name: the load generator failed"
        echo "bench $name $s failed -"
    fi
}

# s_time NAME SYSTEM : `openssl s_time -new` on PORT for SECS (whole
# seconds, its unit), its count over the wall time this script measures
# (s_time's own "real seconds" are whole seconds too).
s_time() {
    local name=$1 s=$2 t0 t1 out n secs
    secs=$(awk -v s="$SECS" 'BEGIN { printf "%d", s < 1 ? 1 : s + 0.5 }')
    t0=$(date +%s.%N)
    out=$(timeout "$LG_TIMEOUT" "${PIN_LOAD[@]}" openssl s_time -connect "127.0.0.1:$PORT" \
        -new -time "$secs" -ciphersuites TLS_AES_128_GCM_SHA256 2>&1)
    t1=$(date +%s.%N)
    n=$(sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p' <<<"$out")
    if [[ -z $n ]] || ! server_alive; then
        log "$s $name: openssl s_time failed: $(tail -n 3 <<<"$out")"
        echo "bench $name $s failed -"
        return
    fi
    awk -v n="$n" -v a="$t0" -v b="$t1" -v name="$name" -v s="$s" \
        'BEGIN { printf "bench %s %s %.0f conns/s\n", name, s, n / (b - a) }'
}

# run_tls BENCH SYSTEM : one server, every shape of BENCH against it.
run_tls() {
    local b=$1 s=$2
    tls_server_cmd "$s" && start_server "${SERVER_CMD[@]}" || SERVER_PID=""
    if [[ $b == tls_echo ]]; then
        tls_load tls_echo "$s" --conns 100 --size 1024
        tls_load tls_echo_64k_10 "$s" --conns 10 --size 65536
    else
        tls_load tls_handshake_1 "$s" --handshakes 1 --conns 1
        tls_load tls_handshake_10 "$s" --handshakes 1 --conns 10
        if server_alive; then s_time tls_handshake_s_time "$s"; else
            echo "bench tls_handshake_s_time $s failed -"; fi
    fi
    stop_server
}

# unavailable BENCH SYSTEM : the skipped line, and why (never silently).
unavailable() {
    log "$2 skipped for $1: ${WHY[$2]:-not available}"
    echo "bench $1 $2 unavailable -"
}

# print_medians : `system name value` lines on stdin (rounds of runs) ->
# a bench line per measurement and system, the median of its rounds, in
# run order; names ending in _p99 are milliseconds, the rest req/s.
print_medians() {
    awk '
    NF == 3 {
        if (!($2 in named)) { named[$2] = 1; names[nn++] = $2 }
        if (!($1 in sys)) { sys[$1] = 1; systems[ns++] = $1 }
        v[$2, $1, ++n[$2, $1]] = $3
    }
    END {
        for (i = 0; i < nn; i++) for (j = 0; j < ns; j++) {
            k = names[i]; s = systems[j]; c = n[k, s]
            if (!c) continue
            for (x = 1; x <= c; x++) w[x] = v[k, s, x] + 0
            for (x = 1; x <= c; x++) for (y = x + 1; y <= c; y++)
                if (w[y] < w[x]) { t = w[x]; w[x] = w[y]; w[y] = t }
            p99 = k ~ /_p99$/
            printf "bench %s %s " (p99 ? "%.3f ms" : "%.0f req/s") "\n", k, s, w[int(c / 2) + 1]
        }
    }'
}

# redis_cmd SYSTEM : its server, with the port to come last, in SERVER_CMD.
redis_cmd() {
    case $1 in
        cio) SERVER_CMD=("$BUILD/mini_redis" --port) ;;
        redis-server) SERVER_CMD=(redis-server --save '' --appendonly no
            --io-threads 1 --bind 127.0.0.1 --daemonize no --port) ;;
    esac
    command -v "${SERVER_CMD[0]}" >/dev/null
}

# redis_round PORT SYSTEM P N TEST : one redis-benchmark run, as
# `system name value` lines in REDIS_VALS (appended).
redis_round() {
    local csv
    csv=$(timeout "$TIMEOUT" "${PIN_LOAD[@]}" redis-benchmark -p "$1" -t "$5" \
        -c 50 -P "$3" -n "$4" --csv 2>/dev/null) || return 1
    REDIS_VALS+=$(awk -F'"' -v p="$3" -v s="$2" 'NR > 1 {
        t = tolower($2); print s, "redis_" t "_P" p, $4; print s, "redis_" t "_P" p "_p99", $14 }' <<<"$csv")
    REDIS_VALS+=$'\n'
}

# run_redis : every server at once, driven in turn (see above).
run_redis() {
    local rounds=${BENCH_REDIS_ROUNDS:-3} s i r p t systems=() ports=() wraps=()
    local n1=${BENCH_REDIS_N1:-400000} n16=${BENCH_REDIS_N16:-6000000}
    REDIS_VALS=""
    for s in cio ${SYSTEMS[redis]}; do
        if ! command -v redis-benchmark >/dev/null || ! redis_cmd "$s"; then
            echo "bench redis $s unavailable -"
            continue
        fi
        ports+=("$("$LOADGEN" --free-port)") systems+=("$s")
        # Alive for every round (8 runs of up to TIMEOUT s each).
        timeout -s KILL "$((rounds * 8 * TIMEOUT + 60))" "${PIN_SERVER[@]}" \
            "${SERVER_CMD[@]}" "${ports[-1]}" >/dev/null 2>&1 &
        wraps+=($!)
    done
    for i in "${!systems[@]}"; do
        for ((r = 0; r < 200; r++)); do
            [[ $(redis-cli -p "${ports[$i]}" PING 2>/dev/null) == PONG ]] && break
            sleep 0.05
        done
    done
    for ((r = 0; r < rounds; r++)); do
        for p in 1 16; do
            for t in ping_inline ping_mbulk set get; do
                for i in "${!systems[@]}"; do
                    redis_round "${ports[$i]}" "${systems[$i]}" "$p" \
                        "$([[ $p == 1 ]] && echo "$n1" || echo "$n16")" "$t" ||
                        log "${systems[$i]} redis $t -P $p failed"
                done
            done
        done
    done
    print_medians <<<"$REDIS_VALS"
    ((${#wraps[@]})) && kill "${wraps[@]}" 2>/dev/null
    wait "${wraps[@]}" 2>/dev/null
}

# ---- http: examples/http_server against nginx and Go (see the top)

# wrk_round SYSTEM NAME URL PIN... : one wrk run, as `system name value`
# lines (req/s, and the 99th percentile in ms) appended to HTTP_VALS.
wrk_round() {
    local sys=$1 name=$2 url=$3 out
    shift 3
    out=$(timeout "$LG_TIMEOUT" "$@" wrk -t "${WRK_THREADS:-1}" -c 50 \
        -d "${SECS}s" --latency "$url" 2>&1) || return 1
    HTTP_VALS+=$(awk -v s="$sys" -v n="$name" '
        $1 == "99%" { v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
                      if (u == "us") v /= 1000; else if (u == "s") v *= 1000
                      print s, n "_p99", v }
        $1 == "Requests/sec:" { print s, n, $2 }' <<<"$out")
    HTTP_VALS+=$'\n'
}

# nginx_conf PORT ROOT DIR : nginx's configuration for the benchmark.
nginx_conf() {
    cat <<EOF
worker_processes 1;
daemon off;
pid $3/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path $3/tmp; proxy_temp_path $3/tmp;
    fastcgi_temp_path $3/tmp; uwsgi_temp_path $3/tmp; scgi_temp_path $3/tmp;
    types { text/html html; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$1;
        root $2;
        location = /hello { default_type text/plain; return 200 "Hello, world!\n"; }
    }
}
EOF
}

# http_start SYSTEM PORT ROOT PIN... : starts SYSTEM's server in the
# background (its timeout wrapper in HTTP_WRAPS) and waits until it
# answers; false if it cannot run here.
http_start() {
    local sys=$1 port=$2 root=$3 cmd=() i
    shift 3
    case $sys in
        cio | cio_1) cmd=("$BUILD/http_server" --host 127.0.0.1 --root "$root" --port "$port") ;;
        cio_2) cmd=("$BUILD/http_server" --threads 2 --host 127.0.0.1 --root "$root" --port "$port") ;;
        go) [[ ${AVAIL[go]:-0} == 1 ]] || return 1
            cmd=(env GOMAXPROCS=1 "$BUILD/go_http" "$root" "$port") ;;
        nginx) command -v nginx >/dev/null || return 1
            mkdir -p "$BUILD/nginx/tmp"
            nginx_conf "$port" "$root" "$BUILD/nginx" >"$BUILD/nginx/nginx.conf"
            cmd=(nginx -e "$BUILD/nginx/error.log" -p "$BUILD/nginx" -c "$BUILD/nginx/nginx.conf") ;;
    esac
    [[ -x ${cmd[0]} ]] || command -v "${cmd[0]}" >/dev/null || return 1
    timeout -s KILL "$HTTP_LIFE" "$@" "${cmd[@]}" >/dev/null 2>&1 &
    HTTP_WRAPS+=($!)
    for ((i = 0; i < 200; i++)); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/hello" && return 0
        sleep 0.05
    done
    log "$sys http server did not answer"
    return 1
}

# http_tests ROOT "PIN_SERVER" "PIN_LOAD" NAME:PATH... : starts each of
# $SYSTEMS_NOW once, then runs every test against each in turn, for
# every round, so a load that comes and goes hits all alike.
http_tests() {
    local root=$1 pin_server=$2 pin_load=$3 r t i s port sys=() ports=()
    shift 3
    for s in $SYSTEMS_NOW; do
        port=$("$LOADGEN" --free-port)
        if http_start "$s" "$port" "$root" $pin_server; then
            sys+=("$s") ports+=("$port")
        else
            for t in "$@"; do echo "bench ${t%%:*} $s unavailable -"; done
        fi
    done
    for ((r = 0; r < ${BENCH_HTTP_ROUNDS:-3}; r++)); do
        for t in "$@"; do
            for i in "${!sys[@]}"; do
                wrk_round "${sys[$i]}" "${t%%:*}" "http://127.0.0.1:${ports[$i]}${t#*:}" \
                    $pin_load || log "${sys[$i]} ${t%%:*} failed"
            done
        done
    done
    ((${#HTTP_WRAPS[@]})) && kill "${HTTP_WRAPS[@]}" 2>/dev/null
    wait "${HTTP_WRAPS[@]}" 2>/dev/null
    HTTP_WRAPS=()
}

run_http() {
    local root=$BUILD/http_root s
    HTTP_VALS="" HTTP_WRAPS=()
    HTTP_LIFE=$(((${BENCH_HTTP_ROUNDS:-3} * 9 + 2) * LG_TIMEOUT))
    if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
        for s in cio ${SYSTEMS[http]}; do echo "bench http $s unavailable -"; done
        return
    fi
    mkdir -p "$root"
    head -c 1024 /dev/zero | tr '\0' x >"$root/small.html"
    head -c 65536 /dev/urandom >"$root/64k.bin"
    SYSTEMS_NOW="cio ${SYSTEMS[http]}" http_tests "$root" "${PIN_SERVER[*]}" \
        "${PIN_LOAD[*]}" http_small:/small.html http_64k:/64k.bin http_hello:/hello
    SYSTEMS_NOW="cio_1 cio_2" WRK_THREADS=2 http_tests "$root" "" "" http_loops:/hello
    print_medians <<<"$HTTP_VALS"
}

for b in "${selected[@]}"; do
    if [[ $b == http ]]; then
        run_http
        continue
    fi
    if [[ $b == redis ]]; then
        run_redis
        continue
    fi
    if [[ $b == sendfile ]]; then
        run_sendfile
        continue
    fi
    if [[ $TLS_BENCHES == *" $b "* ]]; then
        if ((!TLS_OK)); then
            for s in cio ${SYSTEMS[$b]}; do WHY[$s]=$TLS_WHY; unavailable "$b" "$s"; done
            continue
        fi
        if [[ -x $BUILD/cio_echo_tls ]]; then run_tls "$b" cio; else
            WHY[cio]="bench/build/cio_echo_tls not built (make bench)"; unavailable "$b" cio; fi
        for s in ${SYSTEMS[$b]}; do
            if [[ ${AVAIL[$s]:-0} == 1 ]]; then run_tls "$b" "$s"; else unavailable "$b" "$s"; fi
        done
        continue
    fi
    if [[ $b == idle_conns ]]; then
        [[ -x $BUILD/cio_echo_protocol ]] && run_idle idle_conns idle_conns cio
        [[ -x $BUILD/cio_echo_streams ]] && run_idle idle_conns_streams idle_conns_streams cio
    elif [[ $NET_BENCHES == *" $b "* ]]; then
        [[ -x $BUILD/cio_$b ]] && run_echo "$b" cio
    elif [[ -x $BUILD/cio_$b ]]; then
        run_prog "$b" cio "$BUILD/cio_$b" "${COUNT_ARGS[@]}"
    fi
    for s in ${SYSTEMS[$b]}; do
        if [[ ${AVAIL[$s]:-0} != 1 ]]; then
            unavailable "$b" "$s"
            continue
        fi
        if [[ $b == idle_conns ]]; then
            run_idle "$b" "$b" "$s"
        elif [[ $NET_BENCHES == *" $b "* ]]; then
            run_echo "$b" "$s"
        elif [[ $LOOP_BENCHES == *" $b "* ]]; then
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
