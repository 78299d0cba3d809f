/* Fuzz target: address and port parsing against a model.
 *
 * The input is a flags byte, then a host, a port and a Unix path
 * separated by NUL bytes. Checked:
 *  - cio_getaddrinfo rejects with -EINVAL exactly the ports the model
 *    calls bad (what starts like a number, or any port under
 *    AI_NUMERICSERV, must be all decimal digits within 0..65535), and
 *    every address it returns for a numeric port carries that port (no
 *    "65616" wrapping to 80). Only numeric hosts are tried: a name would
 *    be looked up in a thread (and on the network).
 *  - the Unix address of a path: accepted exactly when it fits sun_path
 *    with its NUL, and then holds the path; cio_open_unix_connection
 *    answers a path too long for sun_path with -EINVAL and never reaches
 *    anything (the paths live under a directory that does not exist). */
#define _GNU_SOURCE
#include "../../src/net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

enum { MAX_PART = 256 };

typedef struct input {
    int flags;
    char host[MAX_PART], port[MAX_PART], path[MAX_PART];
    bool null_port;
} input;

/* The next NUL-terminated part of the input, cut to MAX_PART - 1. */
static void part(const unsigned char **p, const unsigned char *end, char *out)
{
    size_t n = 0;
    while (*p < end && **p && n < MAX_PART - 1)
        out[n++] = (char)*(*p)++;
    out[n] = 0;
    while (*p < end && **p) /* the rest of an overlong part */
        (*p)++;
    if (*p < end)
        (*p)++;
}

static _Noreturn void wrong(const input *in, const char *what, long got,
                            long want)
{
    fprintf(stderr, "fuzz_addr: host '%s' port '%s' flags %#x path len %zu: "
            "%s: got %ld, model %ld\n", in->host, in->null_port ? "(null)" :
            in->port, in->flags, strlen(in->path), what, got, want);
    abort();
}

/* ---------------------------------------------------------- the model */

/* All decimal digits, at least one, value within 0..65535 (leading zeros
 * allowed): the value, or -1. */
static long port_value(const char *s)
{
    if (!*s || strspn(s, "0123456789") != strlen(s))
        return -1;
    while (*s == '0' && s[1])
        s++;
    return strlen(s) <= 5 && atol(s) <= 65535 ? atol(s) : -1;
}

static bool looks_numeric(const char *s)
{
    unsigned char c = (unsigned char)*s;
    return !c || isdigit(c) || isspace(c) || c == '-' || c == '+';
}

static bool port_ok(const input *in)
{
    if (in->null_port)
        return true;
    if ((in->flags & AI_NUMERICSERV) || looks_numeric(in->port))
        return port_value(in->port) >= 0;
    return true;
}

static bool numeric_host(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return !*h || inet_pton(AF_INET, h, buf) == 1 ||
           inet_pton(AF_INET6, h, buf) == 1;
}

/* ------------------------------------------------------------ checks */

static int port_of(const struct addrinfo *a)
{
    if (a->ai_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)a->ai_addr)->sin_port);
    if (a->ai_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a->ai_addr)->sin6_port);
    return -1;
}

static void check_getaddrinfo(const input *in)
{
    struct addrinfo hints = {.ai_flags = in->flags, .ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = cio_getaddrinfo(in->host, in->null_port ? NULL : in->port,
                            &hints, &res);
    if (!port_ok(in) && r != -EINVAL)
        wrong(in, "a bad port was not refused", r, -EINVAL);
    long want = in->null_port ? -1 : port_value(in->port);
    for (struct addrinfo *a = res; a && want >= 0; a = a->ai_next)
        if (port_of(a) != want)
            wrong(in, "resolved port", port_of(a), want);
    if (res)
        freeaddrinfo(res);
}

static void check_unix_path(const input *in)
{
    struct sockaddr_un sun;
    bool fits = strlen(in->path) < sizeof sun.sun_path;
    int r = cio__unix_address(in->path, &sun);
    if (r != (fits ? 0 : -EINVAL))
        wrong(in, "unix address", r, fits ? 0 : -EINVAL);
    if (fits && (sun.sun_family != AF_UNIX || strcmp(sun.sun_path, in->path)))
        wrong(in, "unix address holds the path", 0, 1);
    char full[MAX_PART + 32];
    snprintf(full, sizeof full, "/nonexistent-cio-fuzz/%s", in->path);
    cio_stream *st = NULL;
    r = cio_open_unix_connection(full, NULL, &st);
    if (r == 0)
        wrong(in, "connected under a directory that does not exist", 0, 1);
    if ((r == -EINVAL) != (strlen(full) >= sizeof sun.sun_path))
        wrong(in, "a too-long path, and only that, is -EINVAL", r, -EINVAL);
}

static int check_all(void *arg)
{
    const input *in = arg;
    if (numeric_host(in->host))
        check_getaddrinfo(in);
    check_unix_path(in);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static cio_loop *loop;
    if (!loop && cio_loop_new(&loop, NULL))
        abort();
    input in = {0};
    const unsigned char *p = data, *end = data + size;
    unsigned f = p < end ? *p++ : 0;
    in.flags = (f & 1 ? AI_NUMERICSERV : 0) | (f & 2 ? AI_PASSIVE : 0) |
               (f & 4 ? AI_NUMERICHOST : 0);
    in.null_port = f & 8;
    part(&p, end, in.host);
    part(&p, end, in.port);
    part(&p, end, in.path);
    cio_task *t;
    if (cio_task_new(loop, check_all, &in, NULL, &t) ||
        cio_loop_run_until_complete(loop, t) != 0)
        abort();
    cio_future_unref(t);
    return 0;
}
