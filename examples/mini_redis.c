/* mini_redis: a Redis-protocol (RESP2) key-value store on cio streams.
 *
 *   mini_redis --port P [--unix PATH] [--threads N]
 *                                       serve until SIGTERM or Ctrl-C
 *   mini_redis                          a short self-demo (its own client)
 *
 * Commands: PING ECHO GET SET (EX PX NX XX KEEPTTL) DEL EXISTS INCR DECR
 * INCRBY MGET MSET EXPIRE TTL PTTL KEYS DBSIZE FLUSHALL QUIT, and CONFIG
 * GET (answering nothing, for redis-benchmark). Requests come as RESP
 * arrays (what redis-cli sends) or as inline lines of words.
 *
 * Design notes.
 *  - A task per connection, written as if it were the only client:
 *    readline for the `*N` and `$len` lines, readexactly for each bulk
 *    string. One loop thread owns the store, so nothing is locked.
 *  - Pipelining: replies go into the connection's own buffer, and that
 *    goes to the stream only when no more input is buffered
 *    (cio_stream_buffered() == 0: the next read would wait) or it passed
 *    64 KiB. A client sending 16 requests at once gets 16 replies in one
 *    write, in order, and the server makes one write per read.
 *  - Bounded memory, per connection: a line (inline request, `*N`, `$len`)
 *    is at most the stream's 64 KiB limit (Redis's inline limit too); a
 *    bulk string at most MAX_BULK (16 MiB, where Redis's proto-max-bulk-len
 *    is 512 MiB); a request's arguments together at most MAX_REQUEST.
 *    Like Redis, the server never stops reading a client that does not
 *    read its replies; once more than MAX_UNREAD bytes of replies wait for
 *    it (Redis's client-output-buffer-limit), it is cut off. A client cut
 *    off gets "-ERR ..." after the replies it had coming, then EOF; its
 *    further input is read and dropped (for at most DISCARD_SECONDS) so
 *    that closing does not reset the connection under those replies.
 *  - Every core (--threads N, 0: one per CPU): N loops (cio_run_loops),
 *    each with its own listening socket on the port (SO_REUSEPORT), share
 *    the one store under a lock, held while a command runs (commands
 *    never wait, so a lock is all it takes; with one loop it is never
 *    taken). The expiry timer below then lives on loop 0 as a sweep every
 *    SWEEP_SECONDS, Redis's own active expiry (hz 10), since another
 *    loop's thread may not arm a timer of loop 0's.
 *  - Keys: a chained hash table that doubles when full. Expiry: keys with
 *    a deadline sit in a binary min-heap, and one cio_call_at timer fires
 *    at the earliest deadline, deletes what is due and re-arms itself;
 *    every access also checks the deadline (lazy expiry), so a key is
 *    never seen after it expired even before the timer ran.
 */
#define _POSIX_C_SOURCE 200809L
#include <cio.h>

#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    MAX_BULK = 16 << 20,      /* bytes in one bulk string */
    MAX_REQUEST = 64 << 20,   /* bytes of one request's arguments */
    MAX_ARGS = 1 << 20,       /* arguments in one request */
    MAX_UNREAD = 8 << 20,     /* reply bytes a client has not read */
    FLUSH_AT = 64 << 10,      /* write our replies out past this */
    DISCARD_SECONDS = 10,     /* reading a cut-off client's leftovers */
    EXPIRE_BATCH = 1000,      /* keys the timer deletes per callback */
};
#define SWEEP_SECONDS 0.1 /* --threads: loop 0's expiry sweep */

/* ------------------------------------------------------------ the store */

/* A key and its value. An entry with a deadline is in the heap, at
 * heap_at; expires == 0 means none (loop time is never 0 there). */
typedef struct entry {
    struct entry *next; /* the bucket's chain */
    double expires;     /* loop time it expires at, or 0 */
    size_t heap_at;     /* its index in the store's heap, if expires */
    char *val;          /* owned; vlen bytes plus a NUL */
    size_t vlen, klen;
    char key[];         /* klen bytes plus a NUL */
} entry;

typedef struct store {
    entry **buckets; /* nbuckets chains; nbuckets a power of two */
    size_t nbuckets, count;
    entry **heap;    /* the entries with a deadline, earliest at 0 */
    size_t nheap, heapcap;
    cio_handle timer; /* fires at timer_at, heap[0]'s deadline */
    double timer_at;  /* 0: no timer pending */
    cio_loop *loop;
} store;

static store db;       /* one loop, or several under db_lock */
static bool shared;    /* --threads: more than one loop uses db */
static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;

static void store_lock(void)
{
    if (shared)
        pthread_mutex_lock(&db_lock);
}

static void store_unlock(void)
{
    if (shared)
        pthread_mutex_unlock(&db_lock);
}

/* Every loop's clock is CLOCK_MONOTONIC: one loop's deadline is another's. */
static double now(void) { return cio_loop_time(cio_get_running_loop()); }

static uint64_t hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    while (n--)
        h = (h ^ (unsigned char)*p++) * 1099511628211u;
    return h;
}

/* The link pointing at key's entry, or at the NULL ending its chain. */
static entry **find_link(const char *key, size_t n)
{
    entry **l = &db.buckets[hash(key, n) & (db.nbuckets - 1)];
    while (*l && ((*l)->klen != n || memcmp((*l)->key, key, n)))
        l = &(*l)->next;
    return l;
}

/* ---- the expiry heap: parent i is earlier than its children 2i+1, 2i+2 */

static void heap_put(size_t i, entry *e)
{
    db.heap[i] = e;
    e->heap_at = i;
}

static void sift_up(size_t i)
{
    entry *e = db.heap[i];
    while (i > 0 && db.heap[(i - 1) / 2]->expires > e->expires) {
        heap_put(i, db.heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(i, e);
}

static void sift_down(size_t i)
{
    entry *e = db.heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= db.nheap)
            break;
        if (c + 1 < db.nheap && db.heap[c + 1]->expires < db.heap[c]->expires)
            c++;
        if (db.heap[c]->expires >= e->expires)
            break;
        heap_put(i, db.heap[c]);
        i = c;
    }
    heap_put(i, e);
}

static void heap_remove(entry *e)
{
    size_t i = e->heap_at;
    entry *last = db.heap[--db.nheap];
    if (last == e)
        return;
    heap_put(i, last);
    sift_up(i);
    sift_down(last->heap_at);
}

static int heap_push(entry *e)
{
    if (db.nheap == db.heapcap) {
        size_t cap = db.heapcap ? 2 * db.heapcap : 64;
        entry **h = realloc(db.heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        db.heap = h;
        db.heapcap = cap;
    }
    heap_put(db.nheap++, e);
    sift_up(e->heap_at);
    return 0;
}

static void expire_due(void *arg);

/* One timer for the whole heap, at its earliest deadline; moved only when
 * that deadline changed, so a SET EX that is not the earliest costs none. */
static void arm_timer(void)
{
    if (shared)
        return; /* loop 0's sweep expires keys instead */
    double at = db.nheap ? db.heap[0]->expires : 0;
    if (at == db.timer_at)
        return;
    if (db.timer_at)
        cio_handle_cancel(db.timer);
    db.timer_at = 0;
    if (at && !cio_call_at(db.loop, at, expire_due, NULL, &db.timer))
        db.timer_at = at; /* on -ENOMEM lazy expiry still holds */
}

/* ---- entries */

static void unlink_entry(entry **link)
{
    entry *e = *link;
    *link = e->next;
    if (e->expires)
        heap_remove(e);
    free(e->val);
    free(e);
    db.count--;
}

static void delete_entry(entry **link)
{
    unlink_entry(link);
    arm_timer();
}

/* The live entry for key, or NULL; one past its deadline is deleted. */
static entry *lookup(const char *key, size_t n)
{
    entry **l = find_link(key, n);
    if (*l && (*l)->expires && (*l)->expires <= now()) {
        delete_entry(l);
        return NULL;
    }
    return *l;
}

/* The timer: deletes a batch of due keys, then waits for the next one. A
 * big batch goes on at the next iteration, so clients are not held up. */
static void expire_batch(void)
{
    double t = now();
    for (int i = 0; i < EXPIRE_BATCH && db.nheap; i++) {
        entry *e = db.heap[0];
        if (e->expires > t)
            break;
        unlink_entry(find_link(e->key, e->klen));
    }
}

static void expire_due(void *arg)
{
    (void)arg;
    db.timer_at = 0;
    expire_batch();
    arm_timer();
}

/* --threads: loop 0's sweep, every SWEEP_SECONDS while it serves. */
static void sweep(void *arg)
{
    (void)arg;
    store_lock();
    expire_batch();
    store_unlock();
    /* timer_at: 1 while a sweep is pending; on -ENOMEM lazy expiry holds */
    db.timer_at = !cio_call_later(cio_get_running_loop(), SWEEP_SECONDS,
                                  sweep, NULL, &db.timer);
}

/* Sets e's deadline (0: none), keeping the heap and the timer in step. */
static int set_expiry(entry *e, double when)
{
    if (e->expires)
        heap_remove(e);
    e->expires = when;
    int err = when ? heap_push(e) : 0;
    if (err)
        e->expires = 0;
    arm_timer();
    return err;
}

static int grow_table(void)
{
    size_t n = db.nbuckets ? 2 * db.nbuckets : 64;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < db.nbuckets; i++)
        for (entry *e = db.buckets[i], *next; e; e = next) {
            next = e->next;
            entry **l = &b[hash(e->key, e->klen) & (n - 1)];
            e->next = *l;
            *l = e;
        }
    free(db.buckets);
    db.buckets = b;
    db.nbuckets = n;
    return 0;
}

static int set_value(entry *e, const char *val, size_t n)
{
    if (e->val && n == e->vlen) { /* the same size: overwrite in place */
        memcpy(e->val, val, n);
        return 0;
    }
    char *v = malloc(n + 1);
    if (!v)
        return -ENOMEM;
    memcpy(v, val, n);
    v[n] = 0;
    free(e->val);
    e->val = v;
    e->vlen = n;
    return 0;
}

/* The entry for key, made (with an empty value) if there is none. */
static entry *upsert(const char *key, size_t n)
{
    entry *e = lookup(key, n);
    if (e)
        return e;
    if (db.count >= db.nbuckets && grow_table())
        return NULL;
    if (!(e = calloc(1, sizeof *e + n + 1)) || set_value(e, "", 0)) {
        free(e);
        return NULL;
    }
    memcpy(e->key, key, n);
    e->klen = n;
    entry **l = find_link(key, n);
    *l = e;
    db.count++;
    return e;
}

static void flush_all(void)
{
    for (size_t i = 0; i < db.nbuckets; i++)
        while (db.buckets[i])
            unlink_entry(&db.buckets[i]);
    arm_timer();
}

static int store_init(void)
{
    db.loop = cio_get_running_loop(); /* NULL when shared: no timer */
    return grow_table();
}

static void store_fini(void)
{
    flush_all();
    free(db.buckets);
    free(db.heap);
    db = (store){0};
}

/* ---------------------------------------------------- a client's state */

typedef struct argument {
    size_t off, n; /* where it is in abuf while reading */
    char *p;       /* then: a pointer to it, NUL-terminated */
} argument;

typedef struct client {
    cio_stream *s;
    argument *argv; /* the request being served */
    size_t argc, argcap;
    char *abuf; /* its argument bytes */
    size_t alen, acap;
    char *out;  /* replies not written to the stream yet */
    size_t olen, ocap;
    int failed; /* a reply could not be buffered (-ENOMEM) */
    int quit;   /* QUIT: close once the reply is out */
    char why[96]; /* how the client broke the protocol */
} client;

/* Makes room for n more bytes in *buf (of *cap, *len used). */
static int room(char **buf, size_t *cap, size_t len, size_t n)
{
    if (len + n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < len + n)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = c;
    return 0;
}

/* ---- replies, in RESP2: +simple, -error, :integer, $bulk, *array */

static void out_bytes(client *c, const void *p, size_t n)
{
    if (c->failed || room(&c->out, &c->ocap, c->olen, n)) {
        c->failed = 1;
        return;
    }
    memcpy(c->out + c->olen, p, n);
    c->olen += n;
}

static void out_str(client *c, const char *s) { out_bytes(c, s, strlen(s)); }

/* A type byte, a number, CRLF: ":42", "$5", "*3". Formatted by hand:
 * snprintf showed in profiles, once per reply. */
static void out_num(client *c, char type, long long v)
{
    char b[32], *p = b + sizeof b;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v
                                 : (unsigned long long)v;
    *--p = '\n';
    *--p = '\r';
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    *--p = type;
    out_bytes(c, p, (size_t)(b + sizeof b - p));
}

static void reply_int(client *c, long long v) { out_num(c, ':', v); }
static void reply_ok(client *c) { out_str(c, "+OK\r\n"); }
static void reply_nil(client *c) { out_str(c, "$-1\r\n"); }

static void reply_bulk(client *c, const char *p, size_t n)
{
    out_num(c, '$', (long long)n);
    out_bytes(c, p, n);
    out_str(c, "\r\n");
}

/* "-ERR " and a message formatted like printf (no CR or LF in it). */
__attribute__((format(printf, 2, 3)))
static void reply_error(client *c, const char *fmt, ...)
{
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    out_str(c, "-ERR ");
    out_str(c, b);
    out_str(c, "\r\n");
}

static void reply_not_integer(client *c)
{
    reply_error(c, "value is not an integer or out of range");
}

/* ------------------------------------------------------------- commands */

/* Redis's strict integers: an optional '-', digits, no leading zeros, no
 * spaces, in range. Returns 1 with *v set, 0 if p is not one. */
static int parse_ll(const char *p, size_t n, long long *v)
{
    size_t i = n && p[0] == '-';
    if (i == n || n > 20 || (p[i] == '0' && n > i + 1) ||
        (i && p[i] == '0'))
        return 0;
    unsigned long long u = 0, max = i ? (unsigned long long)LLONG_MAX + 1
                                      : (unsigned long long)LLONG_MAX;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || u > (max - (unsigned)(p[i] - '0')) / 10)
            return 0;
        u = u * 10 + (unsigned)(p[i] - '0');
    }
    *v = p[0] == '-' ? (long long)(0 - u) : (long long)u;
    return 1;
}

static int arg_ll(client *c, size_t i, long long *v)
{
    if (parse_ll(c->argv[i].p, c->argv[i].n, v))
        return 1;
    reply_not_integer(c);
    return 0;
}

/* A relative expiry in ms as a loop-time deadline; 0 (after an error
 * reply) when Redis would call it invalid: not positive, or too far. */
static double deadline(client *c, long long ms, const char *cmd)
{
    if (ms <= 0 || ms > LLONG_MAX / 2) {
        reply_error(c, "invalid expire time in '%s' command", cmd);
        return 0;
    }
    return now() + (double)ms / 1000;
}

#define KEY(i) c->argv[i].p, c->argv[i].n

static void cmd_ping(client *c)
{
    if (c->argc > 2)
        reply_error(c, "wrong number of arguments for 'ping' command");
    else if (c->argc == 1)
        out_str(c, "+PONG\r\n");
    else
        reply_bulk(c, KEY(1));
}

static void cmd_echo(client *c) { reply_bulk(c, KEY(1)); }

/* key's value as a bulk string, or nil: GET's reply, and MGET's items. */
static void reply_value(client *c, const char *key, size_t n)
{
    entry *e = lookup(key, n);
    if (e)
        reply_bulk(c, e->val, e->vlen);
    else
        reply_nil(c);
}

static void cmd_get(client *c) { reply_value(c, KEY(1)); }

/* SET's options. ttl_arg: the EX or PX argument's index (0: none). */
typedef struct set_opts {
    int nx, xx, keepttl;
    size_t ttl_arg;
    long long unit; /* ms per unit of ttl_arg: 1000 (EX) or 1 (PX) */
} set_opts;

static int parse_set_opts(client *c, set_opts *o)
{
    for (size_t i = 3; i < c->argc; i++) {
        const char *a = c->argv[i].p;
        int ex = !strcasecmp(a, "EX"), px = !strcasecmp(a, "PX");
        if (!strcasecmp(a, "NX") && !o->xx)
            o->nx = 1;
        else if (!strcasecmp(a, "XX") && !o->nx)
            o->xx = 1;
        else if (!strcasecmp(a, "KEEPTTL") && !o->ttl_arg)
            o->keepttl = 1;
        else if ((ex || px) && !o->ttl_arg && !o->keepttl && i + 1 < c->argc) {
            o->ttl_arg = ++i;
            o->unit = ex ? 1000 : 1;
        } else {
            reply_error(c, "syntax error");
            return 0;
        }
    }
    return 1;
}

static void cmd_set(client *c)
{
    set_opts o = {0};
    double when = 0;
    long long t;
    if (!parse_set_opts(c, &o))
        return;
    if (o.ttl_arg) {
        if (!arg_ll(c, o.ttl_arg, &t))
            return;
        if (t < 0 || t > LLONG_MAX / o.unit)
            t = -1; /* out of range: invalid, as Redis says */
        if (!(when = deadline(c, t * o.unit, "set")))
            return;
    }
    entry *e = lookup(KEY(1));
    if ((o.nx && e) || (o.xx && !e)) {
        reply_nil(c);
        return;
    }
    if (!(e = upsert(KEY(1))) || set_value(e, KEY(2)) ||
        (!o.keepttl && set_expiry(e, when))) {
        reply_error(c, "out of memory");
        return;
    }
    reply_ok(c);
}

static void cmd_del(client *c)
{
    long long n = 0;
    for (size_t i = 1; i < c->argc; i++)
        if (lookup(KEY(i))) {
            delete_entry(find_link(KEY(i)));
            n++;
        }
    reply_int(c, n);
}

static void cmd_exists(client *c)
{
    long long n = 0;
    for (size_t i = 1; i < c->argc; i++)
        n += lookup(KEY(i)) != NULL;
    reply_int(c, n);
}

/* INCR, DECR, INCRBY: the value must be an integer; the TTL stays. */
static void incr_by(client *c, long long by)
{
    entry *e = lookup(KEY(1));
    long long v = 0;
    if (e && !parse_ll(e->val, e->vlen, &v)) {
        reply_not_integer(c);
        return;
    }
    if ((by > 0 && v > LLONG_MAX - by) || (by < 0 && v < LLONG_MIN - by)) {
        reply_error(c, "increment or decrement would overflow");
        return;
    }
    char b[32];
    int n = snprintf(b, sizeof b, "%lld", v + by);
    if (!(e = upsert(KEY(1))) || set_value(e, b, (size_t)n)) {
        reply_error(c, "out of memory");
        return;
    }
    reply_int(c, v + by);
}

static void cmd_incr(client *c) { incr_by(c, 1); }
static void cmd_decr(client *c) { incr_by(c, -1); }

static void cmd_incrby(client *c)
{
    long long by;
    if (arg_ll(c, 2, &by))
        incr_by(c, by);
}

static void cmd_mget(client *c)
{
    out_num(c, '*', (long long)c->argc - 1);
    for (size_t i = 1; i < c->argc; i++)
        reply_value(c, KEY(i));
}

static void cmd_mset(client *c)
{
    if (c->argc % 2 == 0) {
        reply_error(c, "wrong number of arguments for 'mset' command");
        return;
    }
    for (size_t i = 1; i < c->argc; i += 2) {
        entry *e = upsert(KEY(i));
        if (!e || set_value(e, KEY(i + 1)) || set_expiry(e, 0)) {
            reply_error(c, "out of memory");
            return;
        }
    }
    reply_ok(c);
}

/* EXPIRE key seconds (without 7.0's NX XX GT LT): 1 if the key exists. A
 * deadline not in the future deletes the key at once, as in Redis. */
static void cmd_expire(client *c)
{
    long long secs;
    if (c->argc > 3) {
        reply_error(c, "Unsupported option %s", c->argv[3].p);
        return;
    }
    if (!arg_ll(c, 2, &secs))
        return;
    if (secs > LLONG_MAX / 2000 || secs < LLONG_MIN / 2000) {
        reply_error(c, "invalid expire time in 'expire' command");
        return;
    }
    entry *e = lookup(KEY(1));
    if (e && secs <= 0)
        delete_entry(find_link(KEY(1)));
    else if (e && set_expiry(e, now() + (double)secs)) {
        reply_error(c, "out of memory");
        return;
    }
    reply_int(c, e != NULL);
}

/* TTL and PTTL: -2 for no key, -1 for no deadline; TTL rounds as Redis. */
static long long ttl_ms(client *c)
{
    entry *e = lookup(KEY(1));
    if (!e || !e->expires)
        return e ? -1 : -2;
    long long ms = (long long)((e->expires - now()) * 1000 + 0.5);
    return ms < 0 ? 0 : ms;
}

static void cmd_ttl(client *c)
{
    long long ms = ttl_ms(c);
    reply_int(c, ms < 0 ? ms : (ms + 500) / 1000);
}

static void cmd_pttl(client *c) { reply_int(c, ttl_ms(c)); }

static int key_matches(const entry *e, const char *pattern)
{
    return (!e->expires || e->expires > now()) &&
           fnmatch(pattern, e->key, 0) == 0;
}

/* KEYS pattern: every live key matching the glob (fnmatch's, which is
 * Redis's but for character classes), in the table's order. */
static void cmd_keys(client *c)
{
    const char *pattern = c->argv[1].p;
    long long n = 0;
    for (size_t i = 0; i < db.nbuckets; i++)
        for (entry *e = db.buckets[i]; e; e = e->next)
            n += key_matches(e, pattern);
    out_num(c, '*', n);
    for (size_t i = 0; i < db.nbuckets; i++)
        for (entry *e = db.buckets[i]; e; e = e->next)
            if (key_matches(e, pattern))
                reply_bulk(c, e->key, e->klen);
}

static void cmd_dbsize(client *c) { reply_int(c, (long long)db.count); }

static void cmd_flushall(client *c)
{
    flush_all();
    reply_ok(c);
}

static void cmd_quit(client *c)
{
    reply_ok(c);
    c->quit = 1;
}

/* redis-benchmark asks for its settings: there are none to report. */
static void cmd_config(client *c) { out_str(c, "*0\r\n"); }

typedef struct command {
    const char *name; /* lower case: errors name it so */
    int arity;        /* Redis's: n exactly, -n at least n, name included */
    void (*run)(client *c);
} command;

static const command commands[] = {
    {"get", 2, cmd_get},          {"set", -3, cmd_set},
    {"ping", -1, cmd_ping},       {"echo", 2, cmd_echo},
    {"del", -2, cmd_del},         {"exists", -2, cmd_exists},
    {"incr", 2, cmd_incr},        {"decr", 2, cmd_decr},
    {"incrby", 3, cmd_incrby},    {"mget", -2, cmd_mget},
    {"mset", -3, cmd_mset},       {"expire", -3, cmd_expire},
    {"ttl", 2, cmd_ttl},          {"pttl", 2, cmd_pttl},
    {"keys", 2, cmd_keys},        {"dbsize", 1, cmd_dbsize},
    {"flushall", -1, cmd_flushall}, {"quit", -1, cmd_quit},
    {"config", -2, cmd_config},
};

/* Redis's words: the command and its first arguments, 128 bytes or so. */
static void unknown_command(client *c)
{
    char args[512] = "";
    size_t len = 0;
    for (size_t i = 1; i < c->argc && len < 128; i++)
        len += (size_t)snprintf(args + len, sizeof args - len, "'%.*s' ",
                                (int)(128 - len), c->argv[i].p);
    reply_error(c, "unknown command '%.128s', with args beginning with: %s",
                c->argv[0].p, args);
}

static void execute(client *c)
{
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof *commands && !cmd; i++)
        if (c->argv[0].n == strlen(commands[i].name) &&
            !strcasecmp(c->argv[0].p, commands[i].name))
            cmd = &commands[i];
    if (!cmd) {
        unknown_command(c);
        return;
    }
    long long argc = (long long)c->argc;
    if (cmd->arity > 0 ? argc != cmd->arity : argc < -cmd->arity) {
        reply_error(c, "wrong number of arguments for '%s' command",
                    cmd->name);
        return;
    }
    cmd->run(c);
}

/* ------------------------------------------------- reading requests */

/* The request reader's results: 1 a request (argc 0: nothing to run), 0
 * EOF, -EPROTO for a client breaking the protocol (c->why says how), or
 * the connection's error. */
__attribute__((format(printf, 2, 3)))
static int proto_error(client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return -EPROTO;
}

/* A line, CRLF (or LF) included. One cut short by EOF counts as EOF. */
static ssize_t read_line(client *c, const char **line, const char *too_long)
{
    ssize_t n = cio_stream_readline(c->s, line);
    if (n == CIO_ELIMIT)
        return proto_error(c, "%s", too_long);
    if (n > 0 && (*line)[n - 1] != '\n')
        return 0;
    return n;
}

/* The integer after the type byte of "*3\r\n" or "$5\r\n". */
static int line_number(const char *line, ssize_t n, long long *v)
{
    size_t len = (size_t)n - 1;
    if (len > 1 && line[len - 1] == '\r')
        len--;
    return parse_ll(line + 1, len - 1, v);
}

/* Adds an n-byte argument to the request, with room for its CRLF. */
static int new_arg(client *c, size_t n)
{
    if (c->alen + n > MAX_REQUEST)
        return proto_error(c, "request over %d MiB", MAX_REQUEST >> 20);
    if (c->argc == c->argcap) {
        size_t cap = c->argcap ? 2 * c->argcap : 16;
        argument *a = realloc(c->argv, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        c->argv = a;
        c->argcap = cap;
    }
    if (room(&c->abuf, &c->acap, c->alen, n + 2))
        return -ENOMEM;
    c->argv[c->argc++] = (argument){c->alen, n, NULL};
    return 0;
}

/* The last argument is complete: NUL-terminate it (over its CR). */
static void end_arg(client *c)
{
    argument *a = &c->argv[c->argc - 1];
    c->abuf[a->off + a->n] = 0;
    c->alen += a->n + 1;
}

static int read_bulk(client *c)
{
    const char *line;
    long long len;
    ssize_t n = read_line(c, &line, "too big bulk count string");
    if (n <= 0)
        return (int)n;
    if (line[0] != '$')
        return proto_error(c, "expected '$', got '%c'", line[0]);
    if (!line_number(line, n, &len) || len < 0 || len > MAX_BULK)
        return proto_error(c, "invalid bulk length");
    int err = new_arg(c, (size_t)len);
    if (err)
        return err;
    size_t partial;
    n = cio_stream_readexactly(c->s, c->abuf + c->alen, (size_t)len + 2,
                               &partial);
    if (n < 0)
        return n == CIO_EINCOMPLETE ? 0 : (int)n;
    end_arg(c);
    return 1;
}

static int read_multibulk(client *c, const char *line, ssize_t n)
{
    long long count;
    if (!line_number(line, n, &count) || count > MAX_ARGS)
        return proto_error(c, "invalid multibulk length");
    for (long long i = 0; i < count; i++) {
        int r = read_bulk(c);
        if (r <= 0)
            return r;
    }
    return 1;
}

/* An inline request: words separated by blanks (no quoting). */
static int read_inline(client *c, const char *line, ssize_t n)
{
    const char *p = line, *end = line + n;
    for (;;) {
        while (p < end && strchr(" \t\r\n", *p))
            p++;
        const char *w = p;
        while (p < end && !strchr(" \t\r\n", *p))
            p++;
        if (w == p)
            return 1;
        int err = new_arg(c, (size_t)(p - w));
        if (err)
            return err;
        memcpy(c->abuf + c->alen, w, (size_t)(p - w));
        end_arg(c);
    }
}

static int read_request(client *c)
{
    const char *line;
    c->argc = c->alen = 0;
    ssize_t n = read_line(c, &line, "too big inline request");
    if (n <= 0)
        return (int)n;
    int r = line[0] == '*' ? read_multibulk(c, line, n)
                           : read_inline(c, line, n);
    for (size_t i = 0; r > 0 && i < c->argc; i++)
        c->argv[i].p = c->abuf + c->argv[i].off;
    return r;
}

/* ------------------------------------------------------- a connection */

/* Hands the buffered replies to the stream (which sends what it can now
 * and keeps the rest); never waits. */
static int flush(client *c)
{
    int err = c->olen ? cio_stream_write(c->s, c->out, c->olen) : 0;
    c->olen = 0;
    return err;
}

/* Input after a cut-off is dropped, until EOF or for DISCARD_SECONDS: a
 * socket closed with unread input resets the connection, and the peer
 * would lose the replies and the error it has not read yet. */
static void discard_input(cio_stream *s)
{
    CIO_TIMEOUT_SCOPE(scope);
    char b[4096];
    if (cio_timeout(&scope, DISCARD_SECONDS))
        return;
    while (cio_stream_read(s, b, sizeof b) > 0)
        ;
}

/* The replies so far, the error, EOF; then the client is done with. */
static void cut_off(client *c, const char *why)
{
    c->failed = 0; /* room for the error, if memory was the reason */
    reply_error(c, "%s", why);
    if (!flush(c) && !cio_stream_write_eof(c->s))
        discard_input(c->s);
}

/* Serves requests until EOF, QUIT or a cut-off. Returns 0 or an error. */
static int serve_requests(client *c)
{
    int r;
    while ((r = read_request(c)) > 0) {
        if (c->argc) {
            store_lock();
            execute(c);
            store_unlock();
        }
        if (c->failed)
            return -ENOMEM;
        if (c->quit || cio_stream_buffered(c->s) == 0 || c->olen >= FLUSH_AT)
            if ((r = flush(c)) || c->quit)
                return r;
        if (cio_stream_get_write_buffer_size(c->s) > MAX_UNREAD) {
            snprintf(c->why, sizeof c->why,
                     "over %d MiB of replies unread: closing",
                     MAX_UNREAD >> 20);
            return -ENOBUFS;
        }
    }
    return r;
}

/* One task per connection: cio runs it for each client that connects,
 * and closes the stream when it returns. */
static int handle_client(cio_stream *s, void *arg)
{
    (void)arg;
    client c = {.s = s};
    int err = serve_requests(&c);
    if (err == -EPROTO) {
        char why[sizeof c.why + 32];
        snprintf(why, sizeof why, "Protocol error: %s", c.why);
        cut_off(&c, why);
    } else if (err == -ENOBUFS)
        cut_off(&c, c.why[0] ? c.why : "reply too large");
    else if (err == -ENOMEM)
        cut_off(&c, "out of memory");
    free(c.argv);
    free(c.abuf);
    free(c.out);
    return 0;
}

/* ------------------------------------------------------- serving */

typedef struct serve_opts {
    const char *port;      /* TCP, on every interface; or NULL */
    const char *unix_path; /* or NULL; loop 0's alone */
    int threads;           /* loops: 0 one per CPU */
} serve_opts;

/* The listeners of one loop; only loop 0 says so and takes --unix (a Unix
 * socket has no SO_REUSEPORT). */
static int start(cio_server **srv, const serve_opts *o)
{
    int err = 0;
    bool first = cio_loops_index() == 0;
    cio_server_options so = {.reuse_port = shared};
    if (o->port)
        err = cio_start_server(handle_client, NULL, NULL, o->port, NULL,
                               &so, &srv[0]);
    if (!first)
        return err;
    if (!err && o->unix_path)
        err = cio_start_unix_server(handle_client, NULL, o->unix_path, NULL,
                                    NULL, &srv[1]);
    char port[16] = ""; /* the port bound: the kernel's choice for "0" */
    if (!err && o->port)
        snprintf(port, sizeof port, " on port %d", cio_server_port(srv[0]));
    if (err)
        fprintf(stderr, "mini_redis: cannot listen: %s\n", cio_strerror(err));
    else
        printf("mini_redis: serving%s%s%s\n", port,
               o->unix_path ? " on " : "", o->unix_path ? o->unix_path : "");
    fflush(stdout);
    return err;
}

/* Each loop's main task when serving: SIGTERM or Ctrl-C stops every
 * loop (cio_run_loops' stop_signals); then each closes its servers and
 * their connections. */
static int serve(void *arg)
{
    cio_server *srv[2] = {NULL, NULL};
    int err = shared ? 0 : store_init();
    if (shared && cio_loops_index() == 0)
        sweep(NULL);
    if (!err && !(err = start(srv, arg)))
        err = cio_loops_wait_stop();
    for (int i = 0; i < 2; i++)
        if (srv[i]) {
            cio_server_close(srv[i]);
            cio_server_close_clients(srv[i]);
            cio_server_wait_closed(srv[i]);
            cio_server_free(srv[i]);
        }
    if (shared && cio_loops_index() == 0 && db.timer_at)
        cio_handle_cancel(db.timer);
    if (!shared)
        store_fini();
    return err;
}

/* With several loops the store is made before them, and the port, if
 * "0", chosen and held (cio_hold_port) while every loop binds it. */
static int serve_all(serve_opts *o)
{
    char port[16];
    int p = 0, held = -1;
    cio_loops_options lo = {.nloops = o->threads, .stop_signals = 1};
    shared = o->threads != 1;
    if (shared && store_init())
        return 1;
    if (shared && o->port && strcmp(o->port, "0") == 0 &&
        (held = cio_hold_port(NULL, &p)) >= 0) {
        snprintf(port, sizeof port, "%d", p);
        o->port = port;
    }
    int err = cio_run_loops(serve, o, &lo);
    if (held >= 0)
        close(held);
    if (shared)
        store_fini();
    return err == 0 ? 0 : 1;
}

/* ------------------------------------------------- the self-demo */

/* Sends one command as a RESP array of bulk strings (what redis-cli
 * sends); nothing is flushed until the caller drains. */
static int send_command(cio_stream *s, int argc, const char *const *argv)
{
    char head[32];
    int err = 0;
    snprintf(head, sizeof head, "*%d\r\n", argc);
    err = cio_stream_write(s, head, strlen(head));
    for (int i = 0; i < argc && !err; i++) {
        snprintf(head, sizeof head, "$%zu\r\n", strlen(argv[i]));
        struct iovec iov[3] = {{head, strlen(head)},
                               {(void *)argv[i], strlen(argv[i])},
                               {"\r\n", 2}};
        err = cio_stream_writelines(s, iov, 3);
    }
    return err;
}

/* Reads one reply and prints it as redis-cli does. */
static int print_reply(cio_stream *s, const char *indent)
{
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n <= 2)
        return n < 0 ? (int)n : CIO_EINCOMPLETE;
    int len = (int)n - 2; /* without CRLF */
    long long v = atoll(line + 1);
    switch (line[0]) {
    case '+': printf("%s%.*s\n", indent, len - 1, line + 1); return 0;
    case '-': printf("%s(error) %.*s\n", indent, len - 1, line + 1); return 0;
    case ':': printf("%s(integer) %lld\n", indent, v); return 0;
    case '$': break;
    case '*':
        if (v == 0)
            printf("%s(empty array)\n", indent);
        for (long long i = 0; i < v; i++) {
            printf("%s%lld) ", indent, i + 1);
            int err = print_reply(s, "");
            if (err)
                return err;
        }
        return 0;
    default: return -EPROTO;
    }
    if (v < 0) {
        printf("%s(nil)\n", indent);
        return 0;
    }
    char buf[256];
    size_t partial;
    if (v > (long long)sizeof buf - 2)
        return -EMSGSIZE;
    n = cio_stream_readexactly(s, buf, (size_t)v + 2, &partial);
    if (n < 0)
        return (int)n;
    printf("%s\"%.*s\"\n", indent, (int)v, buf);
    return 0;
}

#define CMD(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Sends a batch of commands in one write, then reads the replies. */
static int pipeline(cio_stream *s, const char *const *const *cmds, int n)
{
    int err = 0;
    for (int i = 0; i < n && !err; i++) {
        int argc = 0;
        printf("> ");
        while (cmds[i][argc])
            printf("%s%s", argc ? " " : "", cmds[i][argc]), argc++;
        printf("\n");
        err = send_command(s, argc, cmds[i]);
    }
    if (!err)
        err = cio_stream_drain(s);
    if (n > 1)
        printf("(%d commands sent at once; the replies, in order:)\n", n);
    for (int i = 0; i < n && !err; i++)
        err = print_reply(s, "");
    return err;
}

static int one(cio_stream *s, const char *const *cmd)
{
    return pipeline(s, (const char *const *const[]){cmd}, 1);
}

static int talk(cio_stream *s)
{
    const char *const *const batch[] = {
        CMD("INCR", "visits"), CMD("INCRBY", "visits", "10"),
        CMD("MGET", "greeting", "visits", "nobody"),
    };
    int err = 0;
    const char *const *const script[] = {
        CMD("PING"), CMD("SET", "greeting", "hello"), CMD("GET", "greeting"),
        CMD("SET", "greeting", "again", "NX"), CMD("INCR", "greeting"),
        CMD("SET", "session", "alice", "EX", "100"), CMD("TTL", "session"),
        CMD("SET", "flash", "bye", "PX", "50"),
        CMD("KEYS", "g*"), CMD("NOSUCH", "thing"),
    };
    for (size_t i = 0; i < sizeof script / sizeof *script && !err; i++)
        err = one(s, script[i]);
    if (!err)
        err = pipeline(s, batch, 3);
    if (!err) {
        printf("(100 ms later)\n");
        err = cio_sleep(0.1);
    }
    if (!err)
        err = one(s, CMD("GET", "flash"));
    if (!err)
        err = one(s, CMD("QUIT"));
    return err;
}

static int demo(void *arg)
{
    (void)arg;
    cio_server *srv;
    cio_stream *s;
    char port[16];
    int err = store_init();
    if (!err)
        err = cio_start_server(handle_client, NULL, "127.0.0.1", "0", NULL,
                               NULL, &srv);
    if (err)
        return err;
    snprintf(port, sizeof port, "%d", cio_server_port(srv));
    printf("mini_redis: serving on 127.0.0.1 port %s\n", port);
    if (!(err = cio_open_connection("127.0.0.1", port, NULL, &s))) {
        err = talk(s);
        cio_stream_free(s);
    }
    if (err)
        fprintf(stderr, "mini_redis: demo: %s\n", cio_strerror(err));
    cio_server_close(srv);
    int closed = cio_server_wait_closed(srv);
    cio_server_free(srv);
    store_fini();
    return err ? err : closed;
}

static int usage(void)
{
    fprintf(stderr, "usage: mini_redis [--port PORT] [--unix PATH] "
                    "[--threads N]\n"
                    "       (no arguments: a short self-demo)\n");
    return 2;
}

int main(int argc, char **argv)
{
    serve_opts o = {NULL, NULL, 1};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "--port"))
            o.port = argv[i + 1];
        else if (!strcmp(argv[i], "--unix"))
            o.unix_path = argv[i + 1];
        else if (!strcmp(argv[i], "--threads") && (o.threads = atoi(argv[i + 1])) >= 0)
            continue;
        else
            return usage();
    }
    if (argc == 1)
        return cio_run(demo, NULL) == 0 ? 0 : 1;
    return serve_all(&o);
}
