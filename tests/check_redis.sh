#!/usr/bin/env bash
# tests/check_redis.sh MINI_REDIS - examples/mini_redis against a real
# redis-server, both driven by Debian's redis-cli (redis-tools).
#
# A shell script rather than a C test: the clients are other people's
# programs, and what is compared is what they print. Both servers start on
# private ports (and Unix sockets); every command in COMMANDS runs against
# each through redis-cli, and the two transcripts must match line by line
# (KEYS replies sorted: the two hash tables order keys differently). Then
# the same for expiry (PX, polled with TTL until -2), a pipelined batch of
# raw RESP in one write, `redis-cli --pipe`, and the Unix sockets. Last,
# mini_redis alone gets bad input: an endless bulk string, an endless
# line, a pipeline whose replies are never read; each gets its error reply
# and EOF, memory stays bounded, and the server keeps serving.
#
# Prints `ok redis ...` / `FAIL redis ...` lines and a summary; skips (exit
# 0, with the reason) when redis-cli or redis-server is missing. $RUNNER,
# if set, goes in front of mini_redis (valgrind: leaks fail the check).
set -u
bin=${1:?usage: tests/check_redis.sh path/to/mini_redis}
for tool in redis-cli redis-server python3; do
    if ! command -v $tool >/dev/null; then
        echo "skip redis: $tool not found (apt-get install redis-tools redis-server)"
        exit 0
    fi
done

tmp=$(mktemp -d) || exit 2
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' HUP INT TERM

passed=0 failed=0
ok() { echo "ok   redis $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL redis $1"
    shift
    printf '    %s\n' "$@"
    failed=$((failed + 1))
}

s_redis=$tmp/redis.sock s_mini=$tmp/mini.sock

# Waits (at most ~20 s: valgrind is slow to start) until a server answers.
await_server() {
    local i
    for ((i = 0; i < 400; i++)); do
        [[ $(redis-cli -p "$1" PING 2>/dev/null) == PONG ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1 # it exited: port taken, say
        sleep 0.05
    done
    return 1
}

# redis-server cannot take port 0, so it gets a port the kernel found free
# (bound, then released); another program may take that port meanwhile,
# so a server that could not listen is started again on a new one.
start_redis() {
    local try
    for ((try = 0; try < 5; try++)); do
        p_redis=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        redis-server --port "$p_redis" --bind 127.0.0.1 --save '' \
            --appendonly no --unixsocket "$s_redis" --io-threads 1 \
            --daemonize no >"$tmp/redis.log" 2>&1 &
        pids+=($!)
        await_server "$p_redis" $! && return 0
    done
    return 1
}

# mini_redis listens on port 0 and says which port the kernel gave it.
# Arguments: more options (the default: the Unix socket too).
start_mini() {
    local i
    (($#)) || set -- --unix "$s_mini"
    p_mini=
    # shellcheck disable=SC2086 # RUNNER is a command with its arguments
    ${RUNNER:-} "$bin" --port 0 "$@" >"$tmp/mini.log" 2>&1 &
    mini_pid=$!
    pids+=($mini_pid)
    for ((i = 0; i < 400; i++)); do
        p_mini=$(sed -n 's/^mini_redis: serving on port \([0-9]*\).*/\1/p' \
            "$tmp/mini.log")
        [[ $p_mini ]] && break
        sleep 0.05
    done
    [[ $p_mini ]] && await_server "$p_mini" $mini_pid
}
p_mini=
if ! start_redis || ! start_mini; then
    fail "servers start" "$(cat "$tmp/redis.log" "$tmp/mini.log")"
    exit 1
fi

# One command a line, as redis-cli's arguments (quotes as in a shell).
COMMANDS=$(cat <<'EOF'
FLUSHALL
PING
PING "hello there"
PING a b
ECHO "some words"
ECHO
GET missing
SET greeting hello
GET greeting
GET
GET a b
SET k
SET k v extra
SET k v NX
SET k other NX
GET k
SET k v2 XX
GET k
SET nokey v XX
GET nokey
SET k v NX XX
SET k v EX 0
SET k v EX -5
SET k v EX abc
SET k v EX
SET k v PX 99999999999999999999
SET k v EX 99999999999999999
SET k v EX 100 PX 100
SET k v EX 1000
TTL k
SET k v KEEPTTL
TTL k
SET k v
TTL k
TTL missing
PTTL missing
EXPIRE k 500
TTL k
EXPIRE k abc
EXPIRE missing 10
EXPIRE k 99999999999999999
EXPIRE k 0
EXISTS k
DEL k
DEL k
SET a 1
SET b 2
EXISTS a b c a
DEL a b c
EXISTS a b
INCR counter
INCR counter
DECR counter
INCRBY counter 40
INCRBY counter -100
INCRBY counter abc
INCRBY counter 1.5
INCRBY counter
INCR counter extra
SET text hello
INCR text
DECR text
SET spaced " 12"
INCR spaced
SET zero 007
INCR zero
SET big 9223372036854775807
INCR big
SET small -9223372036854775808
DECR small
INCRBY new 9223372036854775807
INCRBY new 1
MSET m1 v1 m2 v2 m3 v3
MGET m1 m2 missing m3
MSET m1
MSET m1 v1 m2
MGET
KEYS m*
KEYS m?
KEYS *1
KEYS [mg]*
KEYS nothing*
KEYS *
KEYS
FLUSHALL
KEYS *
DBSIZE
NOSUCHCOMMAND a b
nosuch
get greeting
SeT MixedCase yes
gEt MixedCase
QUIT
EOF
)

# Runs COMMANDS against one server (redis-cli's arguments: $@), printing
# "> command" and the reply for each.
transcript() {
    local line
    while IFS= read -r line; do
        echo "> $line"
        if [[ $line == KEYS* ]]; then
            eval "redis-cli $* $line" 2>&1 | sort
        else
            eval "redis-cli $* $line" 2>&1
        fi
    done <<<"$COMMANDS"
}

# compare NAME FILE-REDIS FILE-MINI : the two outputs, line by line.
compare() {
    if cmp -s "$2" "$3"; then
        ok "$1"
    else
        fail "$1" "redis-server (-) and mini_redis (+) differ:" \
            "$(diff -u "$2" "$3" | sed 1,2d | head -40)"
    fi
}

n=$(grep -c . <<<"$COMMANDS")
transcript -p "$p_redis" >"$tmp/t.redis"
transcript -p "$p_mini" >"$tmp/t.mini"
compare "$n commands through redis-cli" "$tmp/t.redis" "$tmp/t.mini"

# Expiry: a key set with PX disappears; TTL is polled (bounded) until -2.
expiry() {
    local i ttl
    redis-cli "$@" SET shortlived v PX 100
    redis-cli "$@" EXISTS shortlived
    for ((i = 0; i < 200; i++)); do
        ttl=$(redis-cli "$@" TTL shortlived)
        [[ $ttl == -2 ]] && break
        sleep 0.02
    done
    echo "TTL reached $ttl"
    redis-cli "$@" GET shortlived
    redis-cli "$@" EXISTS shortlived
    redis-cli "$@" SET lived v EX 100
    redis-cli "$@" EXPIRE lived 1
    redis-cli "$@" DEL lived
}
expiry -p "$p_redis" >"$tmp/e.redis"
expiry -p "$p_mini" >"$tmp/e.mini"
compare "expiry with PX, TTL polled until -2" "$tmp/e.redis" "$tmp/e.mini"

# Pipelining: RESP arrays and inline commands in one write; the replies
# come back in order (the raw bytes are compared), QUIT closes.
batch() {
    printf '*3\r\n$3\r\nSET\r\n$1\r\np\r\n$3\r\n100\r\n'
    printf 'INCR p\r\nINCRBY p 5\r\n*2\r\n$3\r\nGET\r\n$1\r\np\r\n'
    printf '*3\r\n$4\r\nMGET\r\n$1\r\np\r\n$1\r\nq\r\nPING\r\n'
    printf '*2\r\n$4\r\nECHO\r\n$12\r\nbin\0ary\r\nok!\r\n'
    printf 'GET\r\nSET p 1 NX\r\nDEL p q\r\nEXISTS p\r\n\r\nPING x\r\nQUIT\r\n'
}
raw() { # raw PORT < input : the bytes the server sent back, to EOF
    python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
sys.stdout.buffer.write(out)' "$1"
}
batch | raw "$p_redis" | od -c >"$tmp/p.redis"
batch | raw "$p_mini" | od -c >"$tmp/p.mini"
compare "a pipelined batch of 15 requests in one write" "$tmp/p.redis" "$tmp/p.mini"

# redis-cli --pipe: 20000 commands streamed while replies are read.
pipe() {
    local i
    for ((i = 0; i < 20000; i++)); do
        printf '*3\r\n$3\r\nSET\r\n$%d\r\nkey:%d\r\n$1\r\nv\r\n' $((${#i} + 4)) "$i"
    done | redis-cli "$@" --pipe | tail -n 1
    redis-cli "$@" DBSIZE
    redis-cli "$@" GET key:19999
    redis-cli "$@" FLUSHALL
}
pipe -p "$p_redis" >"$tmp/pp.redis"
pipe -p "$p_mini" >"$tmp/pp.mini"
compare "redis-cli --pipe of 20000 SETs" "$tmp/pp.redis" "$tmp/pp.mini"

unix_socket() {
    redis-cli -s "$1" SET over unix
    redis-cli -s "$1" GET over
    redis-cli -s "$1" DEL over
}
unix_socket "$s_redis" >"$tmp/u.redis"
unix_socket "$s_mini" >"$tmp/u.mini"
compare "Unix sockets" "$tmp/u.redis" "$tmp/u.mini"

# ---- bad input, mini_redis alone
# attack PORT MODE: sends MODE's bytes without reading, half-closes, then
# reads to EOF; prints the last reply line and how many replies came.
attack() {
    python3 - "$@" <<'EOF'
import socket, sys
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
if mode == "bulk":      # declares a 99 GB string, then sends 4 MiB of it
    data = b"*2\r\n$3\r\nSET\r\n$99999999999\r\n" + b"x" * (4 << 20)
elif mode == "line":    # a line that never ends
    data = b"x" * (4 << 20)
else:                   # 200000 GETs of 1000 bytes, never reading
    s.sendall(b"SET big " + b"v" * 1000 + b"\r\n")
    data = b"GET big\r\n" * 200000
s.sendall(data)
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = s.recv(1 << 20)
    if not b: break
    out += b
lines = out.split(b"\r\n")
print(lines[-2].decode(), out.count(b"\r\n$1000\r\n") + out.startswith(b"$1000"))
EOF
}
check_attack() { # NAME MODE EXPECTED-ERROR
    got=$(attack "$p_mini" "$2" 2>&1)
    if [[ ${got% *} == "$3" ]]; then
        ok "$1: '$3'"
    else
        fail "$1" "expected: $3" "got: $got"
    fi
}
check_attack "an endless bulk string is cut off" bulk \
    "-ERR Protocol error: invalid bulk length"
check_attack "an endless line is cut off" line \
    "-ERR Protocol error: too big inline request"
check_attack "200000 pipelined GETs never read are cut off" pipeline \
    "-ERR over 8 MiB of replies unread: closing"
if ((${got##* } < 200000)); then
    ok "the pipeline was cut short (${got##* } of 200000 replies sent)"
else
    fail "the pipeline was not cut short" "$got"
fi
# The peak memory: well under the 200 MB those replies would take.
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$mini_pid/status" 2>/dev/null)
if [[ -z ${RUNNER:-} && -n $hwm ]]; then
    if ((hwm < 100 * 1024)); then
        ok "peak memory ${hwm} KiB (bounded)"
    else
        fail "peak memory ${hwm} KiB: not bounded"
    fi
fi
if [[ $(redis-cli -p "$p_mini" PING) == PONG ]]; then
    ok "still serving other clients"
else
    fail "no longer serving after the bad input"
fi

# SIGTERM: a clean exit (under valgrind: no leak either).
kill -TERM "$mini_pid"
if wait "$mini_pid"; then
    ok "SIGTERM: exit status 0"
else
    fail "SIGTERM: exit status $?" "$(cat "$tmp/mini.log")"
fi
pids=("${pids[0]}")
[[ -e $s_mini ]] && fail "the Unix socket file was left behind"

# Two loops (--threads 2) share one store: what one connection sets every
# other sees, whichever loop the kernel gave it; 20 clients' 20000 INCRs
# of one key, spread over both loops, lose none (the store's lock).
if ! start_mini --threads 2; then
    fail "--threads 2 starts" "$(cat "$tmp/mini.log")"
else
    redis-cli -p "$p_mini" SET shared value >/dev/null
    seen=0
    for ((i = 0; i < 10; i++)); do
        [[ $(redis-cli -p "$p_mini" GET shared) == value ]] && seen=$((seen + 1))
    done
    if ((seen == 10)); then ok "--threads 2: every connection sees one store"; else
        fail "--threads 2: $seen of 10 connections saw the key"; fi
    if command -v redis-benchmark >/dev/null; then
        redis-benchmark -p "$p_mini" -t incr -n 20000 -c 20 -q >/dev/null 2>&1
        got=$(redis-cli -p "$p_mini" GET 'counter:__rand_int__')
        if [[ $got == 20000 ]]; then ok "--threads 2: 20000 INCRs from 20 clients, none lost"; else
            fail "--threads 2: 20000 INCRs left $got"; fi
    fi
    redis-cli -p "$p_mini" SET brief x PX 50 >/dev/null
    for ((i = 0; i < 400; i++)); do # the sweep or a lookup: at most ~20 s
        [[ $(redis-cli -p "$p_mini" TTL brief) == -2 ]] && break
        sleep 0.05
    done
    if [[ $(redis-cli -p "$p_mini" EXISTS brief) == 0 ]]; then ok "--threads 2: keys expire"; else
        fail "--threads 2: the key did not expire"; fi
    kill -TERM "$mini_pid"
    if wait "$mini_pid"; then ok "--threads 2: SIGTERM stops both loops, exit 0"; else
        fail "--threads 2: SIGTERM: exit status $?" "$(cat "$tmp/mini.log")"; fi
fi

echo "redis: $passed passed, $failed failed"
((failed == 0))
