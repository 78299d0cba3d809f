/* http_server: an HTTP/1.1 server on cio streams.
 *
 *   http_server --port P [--host H] [--root DIR] [--threads N] [--idle S]
 *                       serve until SIGTERM or Ctrl-C (graceful: below)
 *   http_server         a short self-demo (its own client)
 *
 * Routes: GET and HEAD /hello (a dynamic "Hello, world!"), POST /echo
 * (the request body back), GET /wait (answered once shutdown begins: the
 * graceful-shutdown check's in-flight request), and GET and HEAD of any
 * other path: the file under --root, sent with sendfile.
 *
 * Design notes.
 *  - A task per connection, written as if it were the only client: read
 *    a request head with readuntil("\r\n\r\n"), parse it, read the body,
 *    answer, repeat while the connection is kept alive. Requests that
 *    arrive together (pipelining) are answered in order; the answers go
 *    into the connection's buffer and out in one write once no more input
 *    is buffered (cio_stream_buffered() == 0), as mini_redis does.
 *  - Our own parser, not a packaged one: Debian's libhttp-parser (Node's
 *    http-parser 2.9.4) is archived upstream, and a request head is small
 *    enough to parse whole once readuntil has it. parse_head and
 *    parse_chunk_size take bytes and return a status, with no cio in
 *    them; tests/fuzz/fuzz_http.c fuzzes both. The parser is strict where
 *    leniency lets two parties read one message two ways (RFC 9112's
 *    request smuggling): a bare CR or LF, a space before a header's colon,
 *    a folded header line, Content-Length beside Transfer-Encoding, two
 *    different Content-Lengths or two Hosts are all 400.
 *  - Limits, each with its answer: a head over MAX_HEAD bytes (the
 *    stream's buffer limit) or with over MAX_HEADERS lines is 431, a body
 *    over MAX_BODY 413, an unknown transfer coding 501, a version other
 *    than 1.x 505. A request that must not be answered in the connection's
 *    rhythm (400, 413, 431, ...) closes it after the answer: the server
 *    stops writing, then reads and drops what the client still sends (a
 *    lingering close), so that closing does not reset the connection
 *    under its answer.
 *  - Idle timeout (--idle, 10 s): a timeout scope around reading each
 *    request (head and body), so a client that sends nothing, or a byte
 *    every few seconds (slowloris), is cut off after that long (408 if it
 *    had started a request); the same bound on each answer's writing
 *    bounds a client that never reads.
 *  - Graceful shutdown: cio_loops_wait_stop returns in each loop's main
 *    task (SIGTERM or SIGINT, through cio_run_loops' stop_signals). The
 *    server stops accepting, cancels the connections that sit idle
 *    between requests, and lets the others finish the request they are in
 *    (answered with "Connection: close"); then the loop ends.
 *  - Every core: --threads N runs N loops (cio_run_loops), each with its
 *    own listening socket on the same port (SO_REUSEPORT) and its own fd
 *    of the root directory: the loops share nothing but the options.
 */
#define _GNU_SOURCE
#include <cio.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <math.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_HEAD = 8 << 10,     /* request line and headers, in bytes */
    MAX_HEADERS = 64,       /* header lines in one head */
    MAX_BODY = 1 << 20,     /* bytes of one request's body */
    FLUSH_AT = 64 << 10,    /* write our answers out past this */
    LINGER_BYTES = 1 << 20, /* read and dropped after a closing answer */
    LINGER_SECONDS = 2,     /* at most, waiting for the client's close */
};

/* -------------------------------------------------------------- parsing */

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct http_request {
    span method, target;
    int minor;              /* HTTP/1.minor */
    int64_t content_length; /* -1: none */
    bool chunked, keep_alive, expect_continue;
} http_request;

static bool is_tchar(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static bool span_is(span s, const char *lit)
{
    return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

/* The next line, CRLF stripped. A CR must come right before the LF and
 * nowhere else, and a line never holds a NUL. Returns 0 or 400. */
static int take_line(const char **p, const char *end, span *line)
{
    const char *lf = memchr(*p, '\n', (size_t)(end - *p));
    if (!lf || lf == *p || lf[-1] != '\r')
        return 400;
    *line = (span){*p, (size_t)(lf - 1 - *p)};
    *p = lf + 1;
    for (size_t i = 0; i < line->n; i++)
        if (line->p[i] == '\r' || line->p[i] == '\0')
            return 400;
    return 0;
}

/* "GET /path HTTP/1.1": one space between the parts, as RFC 9112. */
static int parse_request_line(span l, http_request *r)
{
    const char *sp1 = memchr(l.p, ' ', l.n);
    if (!sp1 || sp1 == l.p)
        return 400;
    r->method = (span){l.p, (size_t)(sp1 - l.p)};
    for (size_t i = 0; i < r->method.n; i++)
        if (!is_tchar((unsigned char)r->method.p[i]))
            return 400;
    const char *t = sp1 + 1, *end = l.p + l.n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t)
        return 400;
    r->target = (span){t, (size_t)(sp2 - t)};
    for (size_t i = 0; i < r->target.n; i++)
        if ((unsigned char)t[i] <= 32 || (unsigned char)t[i] >= 127)
            return 400;
    const char *v = sp2 + 1;
    if (end - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !isdigit(v[5]) ||
        v[6] != '.' || !isdigit(v[7]))
        return 400;
    if (v[5] != '1')
        return 505;
    r->minor = v[7] - '0';
    return 0;
}

/* Content-Length: decimal digits only; a second one must agree. */
static int parse_length(span v, http_request *r)
{
    if (v.n == 0 || v.n > 18)
        return 400;
    int64_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (!isdigit((unsigned char)v.p[i]))
            return 400;
        n = n * 10 + (v.p[i] - '0');
    }
    if (r->content_length >= 0 && r->content_length != n)
        return 400;
    r->content_length = n;
    return 0;
}

/* Connection: a comma-separated list of options. */
static void parse_connection(span v, bool *close, bool *keep)
{
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        span opt = {p, (size_t)(stop - p)};
        while (opt.n && (*opt.p == ' ' || *opt.p == '\t'))
            opt.p++, opt.n--;
        while (opt.n && (opt.p[opt.n - 1] == ' ' || opt.p[opt.n - 1] == '\t'))
            opt.n--;
        *close |= span_is(opt, "close");
        *keep |= span_is(opt, "keep-alive");
        p = stop + 1;
    }
}

/* One "Name: value" line; counts Host lines in *hosts. */
static int parse_header(span l, http_request *r, int *hosts, bool *close,
                        bool *keep)
{
    const char *colon = memchr(l.p, ':', l.n);
    if (!colon || colon == l.p)
        return 400; /* a folded line (leading space) fails here too */
    span name = {l.p, (size_t)(colon - l.p)}, v = {colon + 1, 0};
    for (size_t i = 0; i < name.n; i++)
        if (!is_tchar((unsigned char)name.p[i]))
            return 400;
    v.n = (size_t)(l.p + l.n - v.p);
    while (v.n && (*v.p == ' ' || *v.p == '\t'))
        v.p++, v.n--;
    while (v.n && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t'))
        v.n--;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if ((c < 32 && c != '\t') || c == 127)
            return 400;
    }
    if (span_is(name, "content-length"))
        return parse_length(v, r);
    if (span_is(name, "transfer-encoding")) {
        if (r->chunked)
            return 400; /* chunked twice */
        if (!span_is(v, "chunked"))
            return 501;
        r->chunked = true;
    } else if (span_is(name, "host")) {
        ++*hosts;
    } else if (span_is(name, "connection")) {
        parse_connection(v, close, keep);
    } else if (span_is(name, "expect")) {
        r->expect_continue = span_is(v, "100-continue");
    }
    return 0;
}

/* Parses a request head: len bytes ending with the empty line, as
 * readuntil hands them over (the spans in *r point into buf). Returns 0,
 * or the status to answer: 400 (malformed), 431 (over MAX_HEADERS
 * lines), 501 (a transfer coding other than chunked), 505 (not 1.x). */
static int parse_head(const char *buf, size_t len, http_request *r)
{
    const char *p = buf, *end = buf + len;
    *r = (http_request){.content_length = -1};
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2; /* RFC 9112 2.2: empty lines before a request line */
    span line;
    int err = take_line(&p, end, &line);
    if (!err)
        err = parse_request_line(line, r);
    int hosts = 0, lines = 0;
    bool close = false, keep = false;
    while (!err && !(err = take_line(&p, end, &line)) && line.n > 0)
        err = ++lines > MAX_HEADERS ? 431
                                    : parse_header(line, r, &hosts, &close,
                                                   &keep);
    if (err)
        return err == 400 && lines > MAX_HEADERS ? 431 : err;
    if (p != end)
        return 400; /* bytes after the empty line: not one head */
    if ((r->chunked && r->content_length >= 0) || hosts > 1 ||
        (r->minor >= 1 && hosts == 0) || (r->minor == 0 && r->chunked))
        return 400;
    r->keep_alive = r->minor >= 1 ? !close : keep && !close;
    return 0;
}

/* A chunk's size line ("1a2b;ext=1\r\n", as readline returns it): hex
 * digits (at most 15), then extensions, which we skip. Returns 0 or 400. */
static int parse_chunk_size(const char *line, size_t len, uint64_t *size)
{
    if (len < 3 || line[len - 2] != '\r' || line[len - 1] != '\n')
        return 400;
    size_t i = 0;
    uint64_t n = 0;
    for (; i < len - 2 && isxdigit((unsigned char)line[i]); i++) {
        if (i == 15)
            return 400;
        int c = tolower((unsigned char)line[i]);
        n = n * 16 + (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    if (i == 0)
        return 400;
    for (size_t j = i; j < len - 2; j++) {
        unsigned char c = (unsigned char)line[j];
        if (j == i && c != ';' && c != ' ' && c != '\t')
            return 400;
        if ((c < 32 && c != '\t') || c == 127)
            return 400;
    }
    *size = n;
    return 0;
}

#ifndef HTTP_SERVER_NO_MAIN /* the fuzz target takes only the parser */

/* ------------------------------------------------------------ answering */

typedef struct site site;

/* One connection: its stream, its task and what it is doing. */
typedef struct conn {
    cio_stream *s;
    cio_task *task;
    site *site;
    struct conn *prev, *next; /* site->conns */
    bool idle;                /* between requests: a shutdown cancels it */
    bool closing;             /* answer with Connection: close, then stop */
    int corked;               /* TCP_CORK is on */
    char *out;                /* answers not yet written */
    size_t nout, outcap;
    char *body;               /* the request body */
    size_t nbody, bodycap;
    char path[MAX_HEAD];      /* the target, copied out of the head */
    size_t npath;
} conn;

/* One loop's server (a loop per thread with --threads). */
struct site {
    cio_server *srv;
    conn *conns;
    cio_event stop; /* set once stopping: GET /wait answers then */
    int root;       /* the --root directory's fd, or -1 */
    char root_path[PATH_MAX]; /* its real path */
    double idle;    /* seconds */
};

static bool stopping(const site *st) { return cio_event_is_set(&st->stop); }

static bool out_add(conn *c, const void *p, size_t n)
{
    if (c->nout + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap * 2 : 4096;
        while (cap < c->nout + n)
            cap *= 2;
        char *b = realloc(c->out, cap);
        if (!b)
            return false;
        c->out = b;
        c->outcap = cap;
    }
    memcpy(c->out + c->nout, p, n);
    c->nout += n;
    return true;
}

/* Writes what is buffered and waits until the transport takes it, for at
 * most the idle time (a client that never reads is cut off). */
static int flush(conn *c)
{
    int err = 0;
    if (c->nout) {
        err = cio_stream_write(c->s, c->out, c->nout);
        c->nout = 0;
    }
    if (err)
        return err;
    CIO_TIMEOUT_SCOPE(scope);
    if ((err = cio_timeout(&scope, c->site->idle)))
        return err;
    err = cio_stream_drain(c->s);
    int t = cio_timeout_end(&scope);
    return t ? t : err;
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* The Date header's value, formatted once a second per thread. */
static const char *http_date(void)
{
    static _Thread_local time_t at;
    static _Thread_local char text[40];
    time_t now = time(NULL);
    if (now != at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        at = now;
    }
    return text;
}

/* Queues a status line and headers; `extra` is more header lines. */
static bool head_out(conn *c, int status, const char *type, size_t length,
                     const char *extra)
{
    char h[512];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nServer: cio\r\nDate: %s\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason(status), http_date(), type, length,
                     c->closing ? "Connection: close\r\n" : "",
                     extra ? extra : "");
    return n > 0 && (size_t)n < sizeof h && out_add(c, h, (size_t)n);
}

static bool answer(conn *c, int status, const char *type, const char *body,
                   size_t n, bool head_only, const char *extra)
{
    return head_out(c, status, type, n, extra) &&
           (head_only || out_add(c, body, n));
}

/* An error page; the ones that say the request could not be read close
 * the connection. */
static bool answer_error(conn *c, int status, const char *extra)
{
    if (status != 404 && status != 405)
        c->closing = true;
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason(status));
    return answer(c, status, "text/plain", body, (size_t)n, false, extra);
}

/* ------------------------------------------------------------ static files */

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html"}, {".txt", "text/plain"},
        {".css", "text/css"},   {".js", "text/javascript"},
        {".json", "application/json"}, {".svg", "image/svg+xml"},
        {".png", "image/png"},  {".jpg", "image/jpeg"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (!strcmp(dot, types[i][0]))
            return types[i][1];
    return "application/octet-stream";
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The target's path, %-decoded, relative to the root ("" for "/"), into
 * out; false for what no file may be named: %00, a bad escape, a ".."
 * segment. The query is dropped. */
static bool file_path(const char *t, size_t n, char *out, size_t cap)
{
    const char *q = memchr(t, '?', n);
    if (q)
        n = (size_t)(q - t);
    size_t o = 0;
    for (size_t i = 1; i < n && o + 1 < cap; i++) {
        int c = (unsigned char)t[i];
        if (c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)t[i + 1]) ||
                !isxdigit((unsigned char)t[i + 2]))
                return false;
            c = hexval(t[i + 1]) * 16 + hexval(t[i + 2]);
            i += 2;
            if (c == 0)
                return false;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    if (out[0] == '/' || strstr(out, "//"))
        return false; /* an absolute path once decoded: never the root's */
    for (char *seg = out; seg;) {
        if (seg[0] == '.' && seg[1] == '.' && (seg[2] == '/' || !seg[2]))
            return false;
        seg = strchr(seg, '/');
        seg = seg ? seg + 1 : NULL;
    }
    if (o == 0 || out[o - 1] == '/') {
        if (o + sizeof "index.html" > cap)
            return false;
        strcpy(out + o, "index.html");
    }
    return true;
}

/* Whether the open file fd is under the directory whose real path is
 * root (a path of /proc/self/fd names where the file really is). */
static bool is_beneath(int fd, const char *root)
{
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    size_t len = strlen(root);
    if (n < 0)
        return false;
    real[n] = '\0';
    return strncmp(real, root, len) == 0 && real[len] == '/';
}

/* Opens path under the root, never outside it: RESOLVE_BENEATH refuses a
 * symlink that leads out. Where the kernel (or qemu-user) lacks openat2,
 * a plain openat, and then the file must turn out to be under the root. */
static int open_beneath(const site *st, const char *path)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, st->root, path, &how, sizeof how);
    if (fd >= 0 || errno != ENOSYS)
        return fd;
    fd = openat(st->root, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0 && !is_beneath(fd, st->root_path)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* TCP_CORK on (1) or off (0): off sends what it held back. */
static void cork(conn *c, int on)
{
    int fd;
    socklen_t len = sizeof fd;
    if (c->corked != on &&
        cio_stream_get_extra_info(c->s, "socket", &fd, &len) == 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0)
        c->corked = on;
}

static int send_file(conn *c, bool head_only)
{
    char path[MAX_HEAD + 16];
    int fd = -1;
    struct stat st;
    if (c->site->root < 0 || !file_path(c->path, c->npath, path, sizeof path) ||
        (fd = open_beneath(c->site, path)) < 0 || fstat(fd, &st) < 0 ||
        !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return answer_error(c, 404, NULL) ? 0 : -ENOMEM;
    }
    int err = head_out(c, 200, content_type(path), (size_t)st.st_size, NULL)
                  ? 0 : -ENOMEM;
    if (!err && !head_only && st.st_size > 0) {
        /* The head goes first, held back (TCP_CORK, as nginx's tcp_nopush)
         * so that it leaves in one segment with the file's first bytes. */
        cork(c, 1);
        err = flush(c);
        size_t sent = 0;
        CIO_TIMEOUT_SCOPE(scope);
        if (!err && !(err = cio_timeout(&scope, c->site->idle))) {
            err = cio_stream_sendfile(c->s, fd, 0, (size_t)st.st_size, 1,
                                      &sent);
            int t = cio_timeout_end(&scope);
            err = t ? t : err;
        }
    }
    cork(c, 0);
    close(fd);
    return err;
}

/* ------------------------------------------------------ reading a request */

/* Room in c->body for more bytes: false past MAX_BODY or without memory. */
static bool body_room(conn *c, uint64_t more)
{
    if (c->nbody + more > MAX_BODY)
        return false;
    if (c->nbody + more > c->bodycap) {
        size_t cap = c->nbody + (size_t)more;
        char *b = realloc(c->body, cap);
        if (!b)
            return false;
        c->body = b;
        c->bodycap = cap;
    }
    return true;
}

static int read_bytes(conn *c, uint64_t n)
{
    if (!body_room(c, n))
        return c->nbody + n > MAX_BODY ? 413 : -ENOMEM;
    size_t partial;
    ssize_t r = cio_stream_readexactly(c->s, c->body + c->nbody, (size_t)n,
                                       &partial);
    if (r < 0)
        return (int)r;
    c->nbody += n;
    return 0;
}

static int read_chunks(conn *c)
{
    for (;;) { /* each chunk adds a byte at least: MAX_BODY bounds them */
        const char *line;
        uint64_t size = 0;
        ssize_t n = cio_stream_readline(c->s, &line);
        if (n == CIO_ELIMIT)
            return 400;
        if (n <= 0)
            return n < 0 ? (int)n : CIO_EINCOMPLETE;
        int err = parse_chunk_size(line, (size_t)n, &size);
        if (err)
            return err;
        if (size == 0)
            break;
        if ((err = read_bytes(c, size)))
            return err;
        char crlf[2];
        size_t partial;
        if ((n = cio_stream_readexactly(c->s, crlf, 2, &partial)) < 0)
            return (int)n;
        if (memcmp(crlf, "\r\n", 2) != 0)
            return 400;
    }
    /* Trailer lines, up to the empty one: read and dropped. */
    for (int lines = 0;; lines++) {
        const char *line;
        ssize_t n = cio_stream_readline(c->s, &line);
        if (n == CIO_ELIMIT || lines > MAX_HEADERS)
            return 431;
        if (n <= 0)
            return n < 0 ? (int)n : CIO_EINCOMPLETE;
        if (n == 2 && line[0] == '\r')
            return 0;
        if (n < 2 || line[n - 2] != '\r')
            return 400;
    }
}

/* Reads the body into c->body: Content-Length bytes, or chunks. Returns
 * 0, a status (400, 413, 431), or a stream error. */
static int read_body(conn *c, const http_request *r)
{
    c->nbody = 0;
    if (!r->chunked && r->content_length <= 0)
        return 0;
    if (r->content_length > MAX_BODY)
        return 413;
    if (r->expect_continue) { /* the client waits for this before sending */
        static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";
        int err = out_add(c, go, sizeof go - 1) ? flush(c) : -ENOMEM;
        if (err)
            return err;
    }
    return r->chunked ? read_chunks(c) : read_bytes(c, (uint64_t)r->content_length);
}

typedef enum route { HELLO, ECHO, WAIT, FILES } route;

/* Whether m is one of the words of list ("GET, HEAD"). */
static bool in_list(const char *list, span m)
{
    for (const char *w = list; *w;) {
        size_t n = strcspn(w, ",");
        if (n == m.n && !memcmp(w, m.p, n))
            return true;
        w += n;
        while (*w == ',' || *w == ' ')
            w++;
    }
    return false;
}

/* Which handler, and whether the method suits it: 0, or 405 (*allow
 * names the methods that would), 501 (a method we do not know) or 400 (a
 * target that is not a path). */
static int pick_route(const http_request *r, route *to, const char **allow)
{
    static const struct {
        const char *path;
        route to;
        const char *allow;
    } routes[] = {{"/hello", HELLO, "GET, HEAD"}, {"/echo", ECHO, "POST"},
                  {"/wait", WAIT, "GET"}};
    span path = r->target;
    const char *q = memchr(path.p, '?', path.n);
    if (q)
        path.n = (size_t)(q - path.p);
    if (path.n == 0 || path.p[0] != '/')
        return 400;
    *to = FILES;
    *allow = "GET, HEAD";
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (path.n == strlen(routes[i].path) &&
            !memcmp(path.p, routes[i].path, path.n)) {
            *to = routes[i].to;
            *allow = routes[i].allow;
        }
    if (in_list(*allow, r->method))
        return 0;
    return in_list("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE, "
                   "CONNECT", r->method) ? 405 : 501;
}

/* Answers one request whose body was read (its head is gone: what was
 * needed of it is in c). */
static int handle(conn *c, route to, bool head_only)
{
    static const char hello[] = "Hello, world!\n";
    switch (to) {
    case HELLO:
        return answer(c, 200, "text/plain", hello, sizeof hello - 1,
                      head_only, NULL) ? 0 : -ENOMEM;
    case ECHO:
        return answer(c, 200, "application/octet-stream", c->body, c->nbody,
                      false, NULL) ? 0 : -ENOMEM;
    case WAIT: {
        printf("http_server: GET /wait is waiting for the shutdown\n");
        fflush(stdout);
        int err = cio_event_wait(&c->site->stop);
        if (err)
            return err;
        c->closing = true;
        return answer(c, 200, "text/plain", "bye\n", 4, false, NULL)
                   ? 0 : -ENOMEM;
    }
    case FILES:
        return send_file(c, head_only);
    }
    return 0;
}

/* Reads a request head. Returns 0 with the head in *head (borrowed
 * until the next read), 431, or an error (CIO_EINCOMPLETE: the client
 * left; -ECANCELED: a shutdown found the connection idle). */
static int read_head(conn *c, const char **head, size_t *len)
{
    static const char *const end[] = {"\r\n\r\n"};
    c->idle = true;
    ssize_t n = cio_stream_readuntil(c->s, end, 1, head);
    c->idle = false;
    if (n == CIO_ELIMIT)
        return 431;
    if (n < 0)
        return (int)n;
    *len = (size_t)n;
    return 0;
}

/* One request, from its head to its answer (queued), reading within the
 * idle time. Returns 0 to go on, a status to answer and close with, or an
 * error to just close with. */
static int one_request(conn *c)
{
    http_request r;
    const char *head, *allow = NULL;
    size_t len = 0;
    route to = FILES;
    bool head_only = false;
    if (stopping(c->site) && cio_stream_buffered(c->s) == 0)
        return -ECANCELED; /* idle once its last answer went out */
    CIO_TIMEOUT_SCOPE(scope);
    int err = cio_timeout(&scope, c->site->idle), status = 0;
    bool got_head = false;
    if (!err && !(err = read_head(c, &head, &len))) {
        got_head = true;
        err = parse_head(head, len, &r);
    }
    if (!err) {
        /* The head is borrowed until the next read: keep what we need. */
        status = pick_route(&r, &to, &allow);
        head_only = r.method.n == 4 && !memcmp(r.method.p, "HEAD", 4);
        memcpy(c->path, r.target.p, r.target.n);
        c->npath = r.target.n;
        err = read_body(c, &r);
    }
    if (cio_timeout_end(&scope) == -ETIMEDOUT && err == -ETIMEDOUT)
        return got_head || cio_stream_buffered(c->s) > 0 ? 408 : -ETIMEDOUT;
    if (err)
        return err;
    if (!r.keep_alive || stopping(c->site))
        c->closing = true;
    if (status) {
        char extra[64];
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        return answer_error(c, status, status == 405 ? extra : NULL) ? 0
                                                                     : -ENOMEM;
    }
    return handle(c, to, head_only);
}

/* After an answer that closes: stop writing, then read and drop what the
 * client still sends (within the idle time), so that our close does not
 * reset the connection before the client read the answer. */
static void linger(conn *c)
{
    if (flush(c) || cio_stream_write_eof(c->s))
        return;
    CIO_TIMEOUT_SCOPE(scope);
    if (cio_timeout(&scope, fmin(c->site->idle, LINGER_SECONDS)))
        return;
    char drop[4096];
    size_t total = 0;
    ssize_t n;
    while (total < LINGER_BYTES &&
           (n = cio_stream_read(c->s, drop, sizeof drop)) > 0)
        total += (size_t)n;
}

static int serve_connection(conn *c)
{
    for (;;) {
        int err = one_request(c);
        if (err > 0) { /* a status: the request could not be served */
            if (!answer_error(c, err, NULL))
                return -ENOMEM;
            linger(c);
            return 0;
        }
        if (err)
            return err == CIO_EINCOMPLETE || err == -ETIMEDOUT ||
                           err == -ECANCELED ? 0 : err;
        if (c->closing) {
            linger(c);
            return 0;
        }
        if (cio_stream_buffered(c->s) == 0 || c->nout >= FLUSH_AT)
            if ((err = flush(c)))
                return err;
    }
}

static int handle_client(cio_stream *s, void *arg)
{
    site *st = arg;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->s = s;
    c->task = cio_current_task();
    c->site = st;
    c->next = st->conns;
    if (st->conns)
        st->conns->prev = c;
    st->conns = c;
    int err = serve_connection(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        st->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->out);
    free(c->body);
    free(c);
    /* A client that left (reset, broken pipe) is no failure of ours: only
     * running out of memory is reported (as the task's exception). */
    return err == -ENOMEM ? err : 0;
}

/* --------------------------------------------------------------- serving */

typedef struct options {
    const char *host, *port, *root;
    int threads;
    double idle;
} options;

static options opt = {NULL, NULL, NULL, 1, 10.0};

/* Shutdown: stop accepting, cancel the connections idle between
 * requests, let the others finish theirs, then wait for all to go. */
static int drain(site *st)
{
    cio_event_set(&st->stop);
    cio_server_close(st->srv);
    for (conn *c = st->conns; c; c = c->next)
        if (c->idle && cio_stream_buffered(c->s) == 0)
            cio_task_cancel(c->task);
    return cio_server_wait_closed(st->srv);
}

/* Returns 0, or -errno if --root cannot be opened. */
static int open_root(site *st)
{
    st->root = -1;
    if (!opt.root)
        return 0;
    if (!realpath(opt.root, st->root_path) ||
        (st->root = open(opt.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "http_server: %s: %s\n", opt.root, strerror(errno));
        return -errno;
    }
    return 0;
}

/* Each loop's main task. */
static int serve(void *arg)
{
    (void)arg;
    site st = {.idle = opt.idle};
    int err = open_root(&st);
    if (err)
        return err;
    cio_event_init(&st.stop);
    cio_stream_options so = {.limit = MAX_HEAD};
    cio_server_options srvo = {.reuse_port = cio_loops_count() > 1};
    err = cio_start_server(handle_client, &st, opt.host, opt.port, &so,
                           &srvo, &st.srv);
    if (err) {
        fprintf(stderr, "http_server: listening on port %s: %s\n", opt.port,
                cio_strerror(err));
    } else {
        if (cio_loops_index() == 0) {
            printf("http_server: serving on port %d with %d loop%s\n",
                   cio_server_port(st.srv), cio_loops_count(),
                   cio_loops_count() > 1 ? "s" : "");
            fflush(stdout);
        }
        err = cio_loops_wait_stop();
        int drained = drain(&st);
        err = err ? err : drained;
        cio_server_free(st.srv);
    }
    if (st.root >= 0)
        close(st.root);
    return err;
}

/* With several loops and port 0 the port is chosen once, here, and held
 * (cio_hold_port) while every loop binds it. Returns the holding socket
 * or -1, the port in port[]. */
static int hold_port(char *port, size_t cap)
{
    int p = 0, fd = -1;
    if (opt.threads != 1 && strcmp(opt.port, "0") == 0 &&
        (fd = cio_hold_port(opt.host, &p)) >= 0) {
        snprintf(port, cap, "%d", p);
        opt.port = port;
    }
    return fd;
}

/* ------------------------------------------------------------ self-demo */

/* Sends raw request bytes and prints the answers' status lines and
 * bodies (not their Date headers, which change), `count` answers. */
static int exchange(cio_stream *s, const char *req, int count)
{
    int err = cio_stream_write(s, req, strlen(req));
    for (int i = 0; i < count && !err; i++) {
        static const char *const end[] = {"\r\n\r\n"};
        const char *h;
        ssize_t n = cio_stream_readuntil(s, end, 1, &h);
        if (n < 0)
            return (int)n;
        const char *cl = strcasestr(h, "\r\ncontent-length:");
        size_t len = cl ? strtoul(cl + 17, NULL, 10) : 0;
        printf("  < %.*s\n", (int)(strchr(h, '\r') - h), h);
        char body[256] = "";
        size_t partial;
        bool head = strncmp(req, "HEAD", 4) == 0;
        if (!head && len && len < sizeof body &&
            (n = cio_stream_readexactly(s, body, len, &partial)) < 0)
            return (int)n;
        if (!head && len)
            printf("    %.*s", (int)len, body);
    }
    return err;
}

static int demo_client(const char *port)
{
    static const struct {
        const char *what, *req;
        int answers;
    } steps[] = {
        {"a dynamic page", "GET /hello HTTP/1.1\r\nHost: demo\r\n\r\n", 1},
        {"a file, sent with sendfile",
         "GET /notes.txt HTTP/1.1\r\nHost: demo\r\n\r\n", 1},
        {"two requests pipelined in one write",
         "GET /hello HTTP/1.1\r\nHost: demo\r\n\r\n"
         "POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Length: 6\r\n\r\n"
         "again\n", 2},
        {"a chunked body",
         "POST /echo HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n"
         "\r\n4\r\nchun\r\n4\r\nked\n\r\n0\r\n\r\n", 1},
        {"no such file", "GET /missing HTTP/1.1\r\nHost: demo\r\n\r\n", 1},
        {"a method the path does not take",
         "DELETE /hello HTTP/1.1\r\nHost: demo\r\n\r\n", 1},
        {"a malformed request (it closes the connection)",
         "GET /hello HTTP/1.1\r\nHost : demo\r\n\r\n", 1},
    };
    cio_stream *s;
    int err = cio_open_connection("127.0.0.1", port, NULL, &s);
    for (size_t i = 0; i < sizeof steps / sizeof *steps && !err; i++) {
        printf("> %s\n", steps[i].what);
        err = exchange(s, steps[i].req, steps[i].answers);
    }
    if (s) {
        char byte;
        printf("> then the server closed: read returned %zd\n",
               cio_stream_read(s, &byte, 1));
        cio_stream_free(s);
    }
    return err;
}

static int demo(void *arg)
{
    (void)arg;
    char dir[] = "/tmp/cio-http-XXXXXX", file[64];
    if (!mkdtemp(dir))
        return -errno;
    snprintf(file, sizeof file, "%s/notes.txt", dir);
    FILE *f = fopen(file, "w");
    if (f) {
        fputs("a file from the root directory\n", f);
        fclose(f);
    }
    opt.root = dir;
    opt.port = "0";
    opt.host = "127.0.0.1";
    site st = {.idle = opt.idle};
    cio_event_init(&st.stop);
    cio_stream_options so = {.limit = MAX_HEAD};
    int err = open_root(&st);
    if (!err)
        err = cio_start_server(handle_client, &st, opt.host, opt.port, &so,
                               NULL, &st.srv);
    if (!err) {
        char port[16];
        snprintf(port, sizeof port, "%d", cio_server_port(st.srv));
        printf("http_server: serving %s on 127.0.0.1 port %s\n", dir, port);
        err = demo_client(port);
        int drained = drain(&st);
        err = err ? err : drained;
        cio_server_free(st.srv);
    }
    if (err)
        fprintf(stderr, "http_server: demo: %s\n", cio_strerror(err));
    if (st.root >= 0)
        close(st.root);
    unlink(file);
    rmdir(dir);
    return err;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: http_server --port PORT [--host HOST] [--root DIR]\n"
            "                   [--threads N] [--idle SECONDS]\n"
            "       (no arguments: a short self-demo)\n");
    return 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port"))
            opt.port = v;
        else if (!strcmp(k, "--host"))
            opt.host = v;
        else if (!strcmp(k, "--root"))
            opt.root = v;
        else if (!strcmp(k, "--threads"))
            opt.threads = atoi(v);
        else if (!strcmp(k, "--idle"))
            opt.idle = atof(v);
        else
            return usage();
    }
    /* As every server does (nginx, Python, Go): a peer gone is an error
     * code, never a signal; and cio's sendfile then skips its own guard
     * against the signal, two system calls per file. */
    signal(SIGPIPE, SIG_IGN);
    if (argc == 1)
        return cio_run(demo, NULL) == 0 ? 0 : 1;
    if (!opt.port || opt.threads < 0 || !(opt.idle > 0))
        return usage();
    char port[16];
    int held = hold_port(port, sizeof port);
    cio_loops_options lo = {.nloops = opt.threads, .stop_signals = 1};
    int err = cio_run_loops(serve, NULL, &lo);
    if (held >= 0)
        close(held);
    return err == 0 ? 0 : 1;
}

#endif /* HTTP_SERVER_NO_MAIN */
