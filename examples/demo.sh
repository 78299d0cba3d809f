#!/bin/sh
# The guided tour: runs the examples in the guide's order, each after one
# line saying what it shows.  Usage: sh examples/demo.sh DIR
# (DIR holds the built examples; examples not built yet are skipped.)
#
# The tour, in order: one line per example, "name|what it shows|the guide
# chapter that teaches it" (docs/guide/CHAPTER.md, printed after the run
# so a newcomer knows where to read next). Adding an example is adding its
# line here.
TOUR='
cake|Synchronous vs asynchronous: mix the ingredients while the oven preheats|01-sync-vs-async
callbacks|The event loop: callbacks run in the order they were scheduled|02-core-concepts
protocol_basics|Transports and protocols: connection_made, data_received, eof_received, connection_lost|02-core-concepts
threadsafe|Threads: a worker hands its results to the loop with call_soon_threadsafe|02-core-concepts
futures|Futures: a promised result, awaited by two tasks, filled by a callback|02-core-concepts
many_tasks|Many tasks: gather, as_completed, wait, wait_for, shield, timeout scopes, task groups|03-running-many-tasks
blocking|Blocking code: run_in_executor runs it in a thread while the loop keeps going|04-blocking-code
loop_per_thread|One loop per thread, and the two safe ways between them|04-blocking-code
running|Running the loop: cio_run, run_until_complete, run_forever and stop; one thread per loop|05-running-the-loop
subprocess|Subprocesses: run commands three at a time, capture their output, feed a pipeline|06-subprocesses
pipes|Pipes of your own: connect_write_pipe and connect_read_pipe to a child|06-subprocesses
ctrl_c|Ctrl-C: cio_run cancels the main task; a second Ctrl-C interrupts the cleanup|07-signals
graceful_shutdown|Signals: on SIGTERM a server stops accepting, lets requests finish, exits 0|07-signals
echo_client|Streams: open_connection, write and drain, write_eof, readline until EOF|08-streams
echo_server|Streams: a server runs a task per client, and serves many at once|08-streams
echo_protocol|Protocols: the echo server as callbacks, with no task per connection|09-servers
chat_server|A chat server: each line goes to every other client|09-servers
udp_echo|UDP: datagram endpoints, datagram_received and sendto|09-servers
fetch_http|HTTP: a plain GET of a page from a tiny local server|09-servers
errors|Errors: codes passed up, errors nobody retrieved, cancellation, scopes left by a return|10-errors
other_styles|Other styles: callbacks (promises, Deferreds), async/await, all at once|11-other-styles
lessons|Pragmatic lessons: stop, threads, no policies, gather before wait, groups, low level, deadlines|12-pragmatic-lessons
producer_consumer|Queues: producers and consumers over a bounded queue, then shutdown|13-sync-and-queues
rate_limit|A semaphore limits how many downloads run at once|13-sync-and-queues
tls_echo|TLS: an echo server and its clients over TLS, then https from openssl s_server|14-tls
seeing_inside|Seeing inside: every task, what it waits on and who waits for it|15-seeing-inside
http_server|An HTTP/1.1 server: keep-alive, pipelining, sendfile, bad requests refused|16-http-server
mini_redis|A Redis-protocol key-value store: RESP, pipelining, expiry on a timer heap|17-redis-capstone
'

dir=${1:?usage: sh examples/demo.sh DIR}
status=0
first=1

# The here-document feeds the read loop; each example reads /dev/null.
while IFS='|' read -r name what chapter; do
    [ -n "$name" ] || continue
    [ -x "$dir/$name" ] || continue
    [ $first = 1 ] || echo
    first=0
    echo "== $what (examples/$name.c)"
    "$dir/$name" </dev/null || status=1
    echo "-- read: docs/guide/$chapter.md"
done <<EOF
$TOUR
EOF
exit $status
