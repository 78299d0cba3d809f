/* Fuzz target: the stream reader against a reference model.
 *
 * The input is a script: a buffer limit, then events - a chunk of data
 * arriving, EOF, a read call (read, readexactly, readline, readuntil with
 * one or two separators), a cancellation of the read call in progress.
 * Data goes straight into the stream's protocol callbacks, so the
 * chunking is exactly the script's. Each read call runs as its own task;
 * after every event the loop runs until nothing is ready, and then the
 * call has either finished, with what the model says, or is parked where
 * the model says it must wait. Checked besides: a parked reader always
 * has its transport reading (else it would wait forever), data handed out
 * by readline/readuntil (lines, and readuntil's partial bytes at EOF)
 * stays intact until the next read call, at_eof, and nothing leaks. */
#define _GNU_SOURCE
#include "../../src/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

enum { MAX_INPUT = 4096, MAX_N = 40 };

/* --------------------------------------------------------- the script */

typedef struct script {
    const unsigned char *data;
    size_t size, pos;
} script;

static unsigned next(script *s) { return s->pos < s->size ? s->data[s->pos++] : 0; }
static bool more(const script *s) { return s->pos < s->size; }

/* A data byte: mostly from a small alphabet, so separators match often;
 * bytes with the top bit set go through as they are (NULs, binary). */
static char data_byte(unsigned b) { return b & 0x80 ? (char)b : "ab\n\0"[b & 3]; }

/* ----------------------------------------------------------- the calls */

enum kind { READ, EXACTLY, LINE, UNTIL };

typedef struct call {
    enum kind kind;
    size_t n;                  /* read, readexactly */
    char seps[2][3];           /* readuntil's separators */
    size_t nseps;
    bool done;
    ssize_t r;
    char out[MAX_N];           /* what read and readexactly copied */
    size_t partial;            /* readexactly at EOF */
    size_t npartial;           /* cio_stream_partial after the call */
    const char *line;          /* readline / readuntil: into the buffer */
} call;

typedef struct fuzz {
    cio_loop *loop;
    cio_stream *st;
    cio_transport *t;
} fuzz;

static fuzz F;

static int run_call(void *arg)
{
    call *c = arg;
    const char *seps[2] = {c->seps[0], c->seps[1]};
    switch (c->kind) {
    case READ: c->r = cio_stream_read(F.st, c->out, c->n); break;
    case EXACTLY:
        c->r = cio_stream_readexactly(F.st, c->out, c->n, &c->partial);
        break;
    case LINE: c->r = cio_stream_readline(F.st, &c->line); break;
    case UNTIL: c->r = cio_stream_readuntil(F.st, seps, c->nseps, &c->line); break;
    }
    c->npartial = cio_stream_partial(F.st);
    c->done = true;
    return 0;
}

static void parse_call(script *s, unsigned op, call *c)
{
    memset(c, 0, sizeof *c);
    c->kind = (enum kind)(op - 2);
    if (c->kind == READ || c->kind == EXACTLY)
        c->n = next(s) % MAX_N;
    if (c->kind != UNTIL)
        return;
    unsigned b = next(s);
    c->nseps = 1 + (b & 1);
    for (size_t i = 0; i < c->nseps; i++) {
        size_t len = 1 + ((b >> (1 + i)) & 1);
        for (size_t k = 0; k < len; k++) {
            char ch = data_byte(next(s) & 0x7f);
            c->seps[i][k] = ch ? ch : 'c'; /* a C string: no NUL inside */
        }
    }
}

/* ----------------------------------------------------------- the model */

typedef struct model {
    char buf[MAX_INPUT];
    size_t head, len, limit;
    bool eof;
} model;

static model M;

/* What a call returns once it no longer waits. */
typedef struct outcome {
    ssize_t r;
    const char *bytes;         /* what it hands out (copied or pointed to) */
    size_t nbytes, consume;
} outcome;

static size_t avail(void) { return M.len - M.head; }

/* The earliest end of any separator (the first listed wins a tie), or 0. */
static size_t model_find(const call *c, size_t *start)
{
    size_t best = 0;
    const char *d = M.buf + M.head;
    for (size_t i = 0; i < c->nseps; i++) {
        size_t k = strlen(c->seps[i]);
        for (size_t at = 0; at + k <= avail(); at++)
            if (memcmp(d + at, c->seps[i], k) == 0) {
                if (!best || at + k < best) {
                    best = at + k;
                    *start = at;
                }
                break;
            }
    }
    return best;
}

static bool model_until(const call *c, outcome *o)
{
    size_t start = 0, end = model_find(c, &start);
    *o = (outcome){0, M.buf + M.head, 0, 0};
    if (end && start > M.limit)
        o->r = CIO_ELIMIT;
    else if (end)
        *o = (outcome){(ssize_t)end, M.buf + M.head, end, end};
    else if (avail() > M.limit)
        o->r = CIO_ELIMIT;
    else if (M.eof) /* the rest is handed over as the partial bytes */
        *o = (outcome){CIO_EINCOMPLETE, M.buf + M.head, avail(), avail()};
    else
        return false;
    return true;
}

static bool model_line(outcome *o)
{
    call nl = {.kind = UNTIL, .seps = {"\n"}, .nseps = 1};
    if (!model_until(&nl, o))
        return false;
    if (o->r == CIO_EINCOMPLETE) {
        o->r = (ssize_t)o->nbytes; /* the last line: no error for readline */
    } else if (o->r == CIO_ELIMIT) {
        size_t start, end = model_find(&nl, &start);
        o->consume = end ? end : avail();
    }
    return true;
}

/* Whether c can finish now; if so, its outcome. */
static bool model_try(const call *c, outcome *o)
{
    size_t a = avail(), take = a < c->n ? a : c->n;
    switch (c->kind) {
    case READ:
        if (c->n && !a && !M.eof)
            return false;
        *o = (outcome){(ssize_t)take, M.buf + M.head, take, take};
        return true;
    case EXACTLY:
        if (a < c->n && !M.eof)
            return false;
        *o = (outcome){take == c->n ? (ssize_t)take : CIO_EINCOMPLETE,
                       M.buf + M.head, take, take};
        return true;
    case LINE: return model_line(o);
    case UNTIL: return model_until(c, o);
    }
    return false;
}

/* ------------------------------------------------------------ checking */

static _Noreturn void mismatch(const call *c, const char *what, long got,
                               long want)
{
    fprintf(stderr, "fuzz_stream: call kind %d n %zu seps '%s' '%s' limit "
            "%zu: %s: got %ld, model %ld\n", c->kind, c->n, c->seps[0],
            c->seps[1], M.limit, what, got, want);
    abort();
}

/* A finished call against the model's outcome; the model consumes. */
static void check_outcome(const call *c, const outcome *o)
{
    if (c->r != o->r)
        mismatch(c, "result", (long)c->r, (long)o->r);
    const char *got = c->kind == LINE || c->kind == UNTIL ? c->line : c->out;
    size_t n = o->nbytes;
    if (c->r == CIO_EINCOMPLETE) {
        size_t partial = c->kind == EXACTLY ? c->partial : c->npartial;
        if (partial != o->nbytes)
            mismatch(c, "partial", (long)partial, (long)o->nbytes);
    } else if (c->r < 0) {
        n = 0;
    }
    if (n && (!got || memcmp(got, o->bytes, n) != 0))
        mismatch(c, "bytes", 0, 1);
    M.head += o->consume;
}

/* Lets every ready callback and task run until the loop is idle. */
static void settle(void)
{
    int idle = 0;
    while (idle < 2)
        idle = cio_loop_run_once(F.loop, 0) > 0 ? 0 : idle + 1;
}

/* ------------------------------------------------------------ the run */

typedef struct run {
    call c;                    /* the call in progress, or the last */
    cio_task *task;            /* its task while it waits */
    char pinned[MAX_INPUT];    /* a copy of what readline/until handed out */
    const char *pin;
    size_t npin;
} run;

static run R;

/* A waiting call finished if and only if the model says it can, and a
 * waiting reader's transport is reading. */
static void check_waiting(void)
{
    outcome o;
    bool can = model_try(&R.c, &o);
    if (R.c.done != can)
        mismatch(&R.c, "finished", R.c.done, can);
    if (!can && !cio_transport_is_reading(F.t))
        mismatch(&R.c, "waits with its transport paused", 1, 0);
    if (!can)
        return;
    check_outcome(&R.c, &o);
    cio_future_unref(R.task);
    R.task = NULL;
    size_t handed = R.c.r == CIO_EINCOMPLETE ? R.c.npartial
                    : R.c.r > 0 ? (size_t)R.c.r : 0;
    if (handed && (R.c.kind == LINE || R.c.kind == UNTIL)) {
        R.pin = R.c.line;
        R.npin = handed;
        memcpy(R.pinned, R.pin, R.npin);
    }
}

/* After every event, once the loop is idle. */
static void after_event(void)
{
    settle();
    if (R.pin && memcmp(R.pin, R.pinned, R.npin) != 0)
        mismatch(&R.c, "handed-out data changed before the next read", 0, 1);
    if (R.task)
        check_waiting();
    if (cio_stream_at_eof(F.st) != (M.eof && !avail()))
        mismatch(&R.c, "at_eof", cio_stream_at_eof(F.st), M.eof && !avail());
}

static void start_call(script *s, unsigned op)
{
    call c;
    parse_call(s, op, &c);
    if (R.task)
        return; /* one reader at a time */
    R.c = c;
    R.pin = NULL; /* the next read call releases it */
    if (cio_task_new(F.loop, run_call, &R.c, NULL, &R.task))
        abort();
}

static void feed(script *s)
{
    char chunk[64];
    size_t n = 1 + next(s) % sizeof chunk;
    for (size_t i = 0; i < n; i++)
        chunk[i] = data_byte(next(s));
    /* A transport delivers nothing once paused or after EOF. */
    if (M.eof || !cio_transport_is_reading(F.t))
        return;
    memcpy(M.buf + M.len, chunk, n);
    M.len += n;
    F.t->p.data_received(F.t, chunk, n, F.t->ctx);
}

static void end_of_file(void)
{
    if (M.eof)
        return;
    M.eof = true;
    F.t->p.eof_received(F.t, F.t->ctx);
}

static void cancel_call(void)
{
    if (!R.task)
        return;
    cio_task_cancel(R.task);
    settle();
    if (!R.c.done || R.c.r != -ECANCELED)
        mismatch(&R.c, "cancelled call's result", (long)R.c.r, -ECANCELED);
    cio_future_unref(R.task);
    R.task = NULL;
}

static void event(script *s)
{
    unsigned op = next(s) % 8;
    if (op <= 1)
        feed(s);
    else if (op <= 5)
        start_call(s, op);
    else if (op == 6)
        end_of_file();
    else
        cancel_call();
    after_event();
}

/* --------------------------------------------------- setup and teardown */

static void open_stream(size_t limit, int *wfd)
{
    int p[2];
    if (pipe(p) || cio_loop_new(&F.loop, NULL) ||
        cio__stream_pipe(F.loop, p[0], false, limit, &F.st))
        abort();
    *wfd = p[1];
    F.t = cio__container_of(F.loop->net.transports.next, cio_transport, link);
    settle(); /* connection_made */
}

static void close_stream(int wfd)
{
    cio_stream_free(F.st);
    settle();
    close(wfd);
    cio_loop_free(F.loop);
    memset(&F, 0, sizeof F);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > MAX_INPUT / 2)
        return 0;
    long allocs = cio__alloc_live();
    script s = {data, size, 0};
    memset(&M, 0, sizeof M);
    memset(&R, 0, sizeof R);
    unsigned b = next(&s);
    M.limit = b & 0x80 ? 64 * 1024 : 1 + (b & 63);
    int wfd;
    open_stream(b & 0x80 ? 0 : M.limit, &wfd);
    while (more(&s))
        event(&s);
    end_of_file(); /* every call can finish now */
    after_event();
    if (R.task)
        mismatch(&R.c, "still waiting after EOF", 1, 0);
    close_stream(wfd);
    if (cio__alloc_live() != allocs) {
        fprintf(stderr, "fuzz_stream: %ld allocations leaked\n",
                cio__alloc_live() - allocs);
        abort();
    }
    return 0;
}
