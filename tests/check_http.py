#!/usr/bin/env python3
"""examples/http_server against clients we did not write: curl and
Python's http.client, plus raw sockets for what those would never send
(every bad request the server must refuse, pipelining, a slowloris).

usage: check_http.py SERVER_BINARY
$RUNNER, if set, goes in front of the server (valgrind: its errors fail
the check through the exit status). curl missing: those checks are
skipped with a line saying so; the rest still run.

One server (--idle 30, far above any pause of a loaded machine between
two requests of a keep-alive connection) serves most checks; a second
with --idle 1 takes the idle and slowloris checks (about a second each),
and a third with --threads 2 the multi-loop form. Nothing here times the
server: a bound on a wait only turns a hang into a failure.
"""
import concurrent.futures
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BOUND = 60.0  # seconds any one wait may take (valgrind is slow)
failures = []
passed = 0


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(name)
        print(f"FAIL http {name} {detail}".rstrip())


class Server:
    def __init__(self, binary, root, *extra, idle=30):
        runner = shlex.split(os.environ.get("RUNNER", ""))
        self.proc = subprocess.Popen(
            runner + [binary, "--port", "0", "--host", "127.0.0.1",
                      "--root", root, "--idle", str(idle), *extra],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "serving on port" not in line:
            raise SystemExit(f"FAIL http: the server said {line!r}")
        self.port = int(line.split("port ")[1].split()[0])

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), BOUND)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "hung"


def read_response(f):
    """One response from a socket file: (status, headers, body)."""
    status_line = f.readline()
    if not status_line:
        return None, {}, b""
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def raw(srv, data, responses=1):
    """Sends data in one write; returns the responses and whether the
    server closed the connection after them."""
    s = srv.connect()
    s.sendall(data)
    f = s.makefile("rb")
    got = [read_response(f) for _ in range(responses)]
    closed = f.read(1) == b""
    s.close()
    return got, closed


def raw_status(srv, data):
    [(status, headers, _)], closed = raw(srv, data)
    return status, headers, closed


# ------------------------------------------------------------- the checks


def check_basics(srv, root):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
    c.request("GET", "/hello")
    r = c.getresponse()
    check("get_hello", r.status == 200 and r.read() == b"Hello, world!\n")
    sock = c.sock
    c.request("HEAD", "/hello")
    r = c.getresponse()
    check("head_hello_has_length_no_body",
          r.status == 200 and r.getheader("Content-Length") == "14"
          and r.read() == b"")
    c.request("GET", "/small.txt")
    r = c.getresponse()
    check("file", r.read() == b"small\n"
          and r.getheader("Content-Type") == "text/plain")
    c.request("GET", "/")
    r = c.getresponse()
    check("index_html", r.read() == b"<p>index</p>\n"
          and r.getheader("Content-Type") == "text/html")
    c.request("GET", "/big.bin")
    r = c.getresponse()
    check("64k_file", r.read() == open(os.path.join(root, "big.bin"), "rb").read())
    check("keep_alive_one_connection", c.sock is sock and sock is not None)
    body = os.urandom(100000)
    c.request("POST", "/echo", body=body)
    r = c.getresponse()
    check("post_content_length", r.status == 200 and r.read() == body)
    c.request("POST", "/echo", body=iter([b"chunk one, ", b"chunk two"]),
              encode_chunked=True)
    r = c.getresponse()
    check("post_chunked", r.read() == b"chunk one, chunk two")
    c.request("GET", "/missing")
    r = c.getresponse()
    check("404_keeps_the_connection", r.status == 404 and r.read() != b""
          and c.sock is sock)
    c.request("DELETE", "/hello")
    r = c.getresponse()
    r.read()
    check("405_with_allow", r.status == 405
          and r.getheader("Allow") == "GET, HEAD")
    c.request("GET", "/bye", headers={"Connection": "close"})
    r = c.getresponse()
    r.read()
    check("connection_close_is_honoured",
          r.getheader("Connection") == "close" and r.will_close)
    c.close()
    c10 = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
    c10._http_vsn, c10._http_vsn_str = 10, "HTTP/1.0"
    c10.request("GET", "/hello")
    r = c10.getresponse()
    check("http_1_0_closes", r.read() == b"Hello, world!\n" and r.will_close)
    c10.close()


def check_pipelining(srv):
    reqs = (b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got, closed = raw(srv, reqs, 5)
    check("pipelined_in_order", [(g[0], g[2]) for g in got] == [
        (200, b"Hello, world!\n"), (200, b"abc"), (404, b"404 Not Found\n"),
        (200, b"de"), (200, b"Hello, world!\n")] and closed, repr(got))
    # One byte at a time: the same answers, whatever the reads look like.
    s = srv.connect()
    for b in b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
        s.sendall(bytes([b]))
    status, _, body = read_response(s.makefile("rb"))
    check("request_a_byte_at_a_time", status == 200 and body.startswith(b"Hello"))
    s.close()


BAD = [
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("bare_lf_in_head", b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
    ("folded_header", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  b\r\n\r\n", 400),
    ("no_host_in_1_1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("length_and_chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
     b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two_different_lengths", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:"
     b" 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ("length_not_a_number", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:"
     b" 1x\r\n\r\n", 400),
    ("bad_request_line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("target_not_a_path", b"GET hello HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad_chunk_size", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:"
     b" chunked\r\n\r\nzz\r\n", 400),
    ("gzip_coding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip"
     b"\r\n\r\n", 501),
    ("unknown_method", b"BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ("http_2_0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("body_too_large", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
     b"2000000\r\n\r\n", 413),
    ("chunked_body_too_large", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + b"100000\r\n" + b"a" * 0x100000
     + b"\r\n1\r\na\r\n0\r\n\r\n", 413),
    ("head_too_large", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000
     + b"\r\n\r\n", 431),
    ("too_many_headers", b"GET / HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X%d: y\r\n" % i for i in range(100)) + b"\r\n", 431),
]


def check_bad_requests(srv):
    for name, req, want in BAD:
        status, headers, closed = raw_status(srv, req)
        check(f"bad_{name}_{want}", status == want and closed
              and headers.get("connection") == "close",
              f"got {status}, closed={closed}")
    for path in (b"/../secret.txt", b"/%2e%2e/secret.txt", b"/sub/../../secret.txt",
                 b"//etc/passwd", b"/%2Fetc/passwd", b"/%00", b"/escape/secret.txt"):
        status, _, _ = raw_status(srv, b"GET " + path + b" HTTP/1.1\r\n"
                                  b"Host: x\r\nConnection: close\r\n\r\n")
        check(f"outside_root_{path.decode()}_404", status == 404,
              f"got {status}")


def check_idle_and_slowloris(srv):
    s = srv.connect()
    check("idle_connection_closed_without_a_word", s.recv(100) == b"")
    s.close()
    s = srv.connect()
    s.sendall(b"GET /hello HTTP/1.1\r\n")
    f = s.makefile("rb")
    deadline = time.monotonic() + BOUND
    try:  # a header byte every 0.2 s: each well within the idle time
        while time.monotonic() < deadline:
            s.sendall(b"X")
            s.settimeout(0.2)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except socket.timeout:
                pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(BOUND)
    status, headers, _ = read_response(f)
    check("slowloris_gets_408_and_is_closed", status == 408
          and f.read(1) == b"", f"got {status}")
    s.close()


def check_curl(srv, root):
    if not shutil.which("curl"):
        print("skip http curl: curl not found (apt-get install curl)")
        return
    url = f"http://127.0.0.1:{srv.port}"
    big = os.path.join(root, "big.bin")

    def curl(*args):
        return subprocess.run(["curl", "-sS", "--max-time", str(BOUND), *args],
                              capture_output=True, timeout=BOUND + 5).stdout
    check("curl_file", curl(url + "/big.bin") == open(big, "rb").read())
    check("curl_head", b"Content-Length: 65536" in curl("-I", url + "/big.bin"))
    check("curl_post_chunked", curl("-H", "Transfer-Encoding: chunked",
                                    "--data-binary", "@" + big,
                                    url + "/echo") == open(big, "rb").read())
    check("curl_expect_100_continue",
          curl("-H", "Expect: 100-continue", "--data-binary", "@" + big,
               url + "/echo") == open(big, "rb").read())
    out = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
               url + "/../secret.txt")
    check("curl_dot_dot_404", out == b"404", repr(out))
    two = curl(url + "/hello", url + "/small.txt")  # one connection, reused
    check("curl_two_urls_one_connection", two == b"Hello, world!\nsmall\n")


def check_graceful_shutdown(srv):
    idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
    idle.request("GET", "/hello")
    idle.getresponse().read()
    waiting = srv.connect()
    waiting.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    line = srv.proc.stdout.readline()  # the server is in the request now
    check("wait_started", "waiting for the shutdown" in line, repr(line))
    srv.proc.send_signal(signal.SIGTERM)
    status, headers, body = read_response(waiting.makefile("rb"))
    check("in_flight_request_finishes", status == 200 and body == b"bye\n"
          and headers.get("connection") == "close")
    check("idle_keep_alive_closed", idle.sock.recv(1) == b"")
    try:
        socket.create_connection(("127.0.0.1", srv.port), BOUND).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    check("no_new_connections_once_stopping", refused)
    try:
        code = srv.proc.wait(BOUND)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        code = "hung"
    check("exits_0_after_sigterm", code == 0, f"exit {code}")
    waiting.close()
    idle.close()


def check_threads(binary, root):
    """Eight clients at once, each on connections of its own (the kernel
    spreads them over the two loops), so both loops serve at the same
    time: under ThreadSanitizer a race between them fails the check."""
    srv = Server(binary, root, "--threads", "2")

    def client(_):
        good = 0
        for _ in range(5):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
            for path, want in (("/hello", b"Hello, world!\n"),
                               ("/small.txt", b"small\n")):
                c.request("GET", path)
                good += c.getresponse().read() == want
            c.close()
        return good
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ok = sum(pool.map(client, range(8)))
    check("two_loops_answer_eight_clients_at_once", ok == 80, f"{ok} of 80")
    code = srv.stop()
    check("two_loops_exit_0_after_sigterm", code == 0, f"exit {code}")


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as top:
        root = os.path.join(top, "root")
        os.makedirs(os.path.join(root, "sub"))
        with open(os.path.join(top, "secret.txt"), "w") as f:
            f.write("outside the root\n")
        os.symlink(top, os.path.join(root, "escape"))
        with open(os.path.join(root, "small.txt"), "w") as f:
            f.write("small\n")
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<p>index</p>\n")
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(os.urandom(65536))
        srv = Server(binary, root)
        try:
            check_basics(srv, root)
            check_pipelining(srv)
            check_bad_requests(srv)
            check_curl(srv, root)
            check_graceful_shutdown(srv)
        finally:
            if srv.proc.poll() is None:
                srv.proc.kill()
        quick = Server(binary, root, idle=1)
        check_idle_and_slowloris(quick)
        code = quick.stop()
        check("idle_server_exits_0_after_sigterm", code == 0, f"exit {code}")
        check_threads(binary, root)
    print(f"http: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
