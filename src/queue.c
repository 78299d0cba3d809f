/* Queues: FIFO, LIFO and priority, of fixed-size items copied in and out.
 *
 * Getters wait while the queue has nothing for them, putters while it has
 * no room. Whoever changes that hands it to the first waiter as a promise:
 * put promises the item it stored to the first waiting getter, get
 * promises the slot it freed to the first waiting putter, and wakes it.
 * The promised task does the actual take or store when it runs, so the
 * item never leaves the queue in between (no copy to lose) and the ring
 * can never overflow; a promised task that was cancelled before it ran
 * passes the promise on. Counters keep promised items and slots out of
 * everyone else's reach:
 *
 *   items a get may take now   count - promised_items
 *   room a put may fill now    maxsize - count - promised_slots
 *
 * and two invariants follow: getters wait only while the first is zero,
 * putters only while the second is.
 *
 * A queue can be freed while tasks wait on it: they are woken as by an
 * immediate shutdown, and `users` (tasks inside put, get or join) keeps
 * the memory until the last of them is out.
 */
#define _GNU_SOURCE
#include "waitq.h"

#include <stddef.h>
#include <string.h>

/* The waits of this file, as the task dump tells them. */
static const cio__wait_kind put_wait = {"queue put", NULL};
static const cio__wait_kind get_wait = {"queue get", NULL};
static const cio__wait_kind join_wait = {"queue join", NULL};

enum { FIFO = 0, LIFO, PRIORITY };
/* The hand-off path is a few dozen instructions: keep it in one piece. */
#define HOT static inline __attribute__((always_inline))
enum { FIRST_CAP = 16 }; /* slots of a new unbounded queue */

struct cio_queue {
    cio__waitq getters;     /* in get, nothing to take */
    cio__waitq putters;     /* in put, no room */
    cio__waitq joiners;     /* in join */
    char *buf;              /* cap slots (owned) */
    size_t item_size;
    size_t slot;            /* bytes per slot: the item, and for a priority
                               queue its insertion number after it */
    size_t seq_at;          /* priority: offset of that number in a slot */
    size_t maxsize;         /* 0: unbounded */
    size_t cap;             /* slots allocated; bounded: maxsize */
    size_t head;            /* FIFO: slot of the oldest item */
    size_t count;           /* items stored, promised ones included */
    size_t promised_items;  /* stored items promised to woken getters */
    size_t promised_slots;  /* free slots promised to woken putters */
    size_t unfinished;      /* put and not yet task_done */
    size_t users;           /* tasks in put/get/join, parked or woken */
    uint64_t seq;           /* priority: insertions so far, the tie-break */
    cio_queue_cmp cmp;      /* priority: the order */
    void *cmp_arg;          /* borrowed */
    uint8_t kind;
    bool shutdown, immediate, freed;
    bool debug;             /* made under a debug loop or $CIO_DEBUG */
    bool dead;              /* debug: freed, kept in the quarantine */
    /* priority: one slot, for sifting; aligned as malloc aligns buf, so
     * cmp may read any item type from it */
    _Alignas(max_align_t) char tmp[];
};

/* ------------------------------------------------------------ storage */

static char *slot_at(const cio_queue *q, size_t i)
{
    return q->buf + i * q->slot;
}

/* memcpy of an item, without the library call for the usual sizes. */
static inline void copy_item(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4:
        memcpy(dst, src, 4);
        break;
    case 8:
        memcpy(dst, src, 8);
        break;
    case 16:
        memcpy(dst, src, 16);
        break;
    default:
        memcpy(dst, src, n);
    }
}

/* A priority queue orders by cmp, then by insertion. */
static bool before(const cio_queue *q, const char *a, const char *b)
{
    int c = q->cmp(a, b, q->cmp_arg);
    if (c)
        return c < 0;
    uint64_t sa, sb;
    memcpy(&sa, a + q->seq_at, sizeof sa);
    memcpy(&sb, b + q->seq_at, sizeof sb);
    return sa < sb;
}

/* The slot in tmp goes to position i or above it. */
static void sift_up(cio_queue *q, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(q, q->tmp, slot_at(q, parent)))
            break;
        memcpy(slot_at(q, i), slot_at(q, parent), q->slot);
        i = parent;
    }
    memcpy(slot_at(q, i), q->tmp, q->slot);
}

/* The slot in tmp goes to position i or below it, for a heap of n. */
static void sift_down(cio_queue *q, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(q, slot_at(q, c + 1), slot_at(q, c)))
            c++;
        if (!before(q, slot_at(q, c), q->tmp))
            break;
        memcpy(slot_at(q, i), slot_at(q, c), q->slot);
        i = c;
    }
    memcpy(slot_at(q, i), q->tmp, q->slot);
}

/* An unbounded queue doubles its ring; a wrapped FIFO ring moves its
 * wrapped part to the new space right after the old end. */
static int grow(cio_queue *q)
{
    cio__assert(q->maxsize == 0);
    size_t old = q->cap;
    char *buf = cio__grow(q->buf, &q->cap, old + 1, q->slot, 1);
    if (!buf)
        return -ENOMEM;
    if (q->kind == FIFO && q->head + q->count > old)
        memcpy(buf + old * q->slot, buf, (q->head + q->count - old) * q->slot);
    q->buf = buf;
    return 0;
}

HOT int store(cio_queue *q, const void *item)
{
    if (q->count == q->cap) {
        int err = grow(q);
        if (err)
            return err;
    }
    switch (q->kind) {
    case FIFO: {
        size_t i = q->head + q->count;
        copy_item(slot_at(q, i < q->cap ? i : i - q->cap), item, q->item_size);
        break;
    }
    case LIFO:
        copy_item(slot_at(q, q->count), item, q->item_size);
        break;
    default:
        memcpy(q->tmp, item, q->item_size);
        memcpy(q->tmp + q->seq_at, &q->seq, sizeof q->seq);
        q->seq++;
        sift_up(q, q->count);
    }
    q->count++;
    return 0;
}

/* Takes the next item into out (NULL: drops it). */
HOT void load(cio_queue *q, void *out)
{
    switch (q->kind) {
    case FIFO:
        if (out)
            copy_item(out, slot_at(q, q->head), q->item_size);
        if (++q->head == q->cap)
            q->head = 0;
        q->count--;
        break;
    case LIFO:
        q->count--;
        if (out)
            copy_item(out, slot_at(q, q->count), q->item_size);
        break;
    default:
        if (out)
            memcpy(out, slot_at(q, 0), q->item_size);
        q->count--;
        if (q->count > 0) {
            memcpy(q->tmp, slot_at(q, q->count), q->slot);
            sift_down(q, 0, q->count);
        }
    }
}

/* ---------------------------------------------------------- the protocol */

static bool has_item(const cio_queue *q)
{
    return q->count > q->promised_items;
}

static bool has_room(const cio_queue *q)
{
    return q->maxsize == 0 || q->count + q->promised_slots < q->maxsize;
}

/* Stores item, and promises it to the first waiting getter. */
HOT int insert(cio_queue *q, const void *item)
{
    int err = store(q, item);
    if (err)
        return err;
    q->unfinished++;
    if (cio__waitq_wake_one(&q->getters, CIO__HANDED))
        q->promised_items++;
    return 0;
}

/* Takes an item, and promises its slot to the first waiting putter. The
 * last item of a shut-down queue sends the waiting getters away. */
HOT void take(cio_queue *q, void *out)
{
    load(q, out);
    if (cio__waitq_wake_one(&q->putters, CIO__HANDED))
        q->promised_slots++;
    if (q->shutdown && q->count == 0)
        cio__waitq_wake_all(&q->getters, -ESHUTDOWN);
}

/* A getter was promised an item and now runs. An immediate shutdown since
 * dropped the item. Cancelled (or timed out) meanwhile, it passes the
 * promise to the next getter, or leaves the item to whoever comes. */
HOT int getter_woken(cio_queue *q, void *out, int interrupted)
{
    if (q->immediate)
        return interrupted ? interrupted : -ESHUTDOWN;
    q->promised_items--;
    if (interrupted) {
#ifndef CIO_PLANT_BUG_QUEUE /* make cancel plants the lost promise */
        if (cio__waitq_wake_one(&q->getters, CIO__HANDED))
            q->promised_items++;
#endif
        return interrupted;
    }
    take(q, out);
    return 0;
}

/* A putter was promised a slot and now runs. A shutdown since voided the
 * promise. Cancelled meanwhile, it inserts nothing and passes the slot to
 * the next putter (or leaves it free). */
HOT int putter_woken(cio_queue *q, const void *item, int interrupted)
{
    if (q->shutdown)
        return interrupted ? interrupted : -ESHUTDOWN;
    q->promised_slots--;
    if (interrupted) {
        if (cio__waitq_wake_one(&q->putters, CIO__HANDED))
            q->promised_slots++;
        return interrupted;
    }
    return insert(q, item); /* a bounded queue's ring has the room */
}

/* ------------------------------------------------------ creating, freeing */

static int queue_new(cio_queue **out, size_t item_size, size_t maxsize,
                     int kind, cio_queue_cmp cmp, void *arg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (item_size == 0 || (kind == PRIORITY && !cmp))
        return -EINVAL;
    size_t seq_at = (item_size + 7) & ~(size_t)7;
    if (seq_at < item_size || seq_at > SIZE_MAX - 8)
        return -ENOMEM;
    size_t slot = kind == PRIORITY ? seq_at + 8 : item_size;
    size_t cap = maxsize ? maxsize : FIRST_CAP;
    if (cap > SIZE_MAX / slot)
        return -ENOMEM;
    cio_queue *q = cio__malloc(sizeof *q + (kind == PRIORITY ? slot : 0));
    if (!q)
        return -ENOMEM;
    memset(q, 0, sizeof *q);
    q->buf = cio__malloc(cap * slot);
    if (!q->buf) {
        cio__free(q);
        return -ENOMEM;
    }
    q->debug = cio__debug_wanted();
    q->item_size = item_size;
    q->slot = slot;
    q->seq_at = seq_at;
    q->maxsize = maxsize;
    q->cap = cap;
    q->kind = (uint8_t)kind;
    q->cmp = cmp;
    q->cmp_arg = arg;
    *out = q;
    return 0;
}

int cio_queue_new(cio_queue **q, size_t item_size, size_t maxsize)
{
    return queue_new(q, item_size, maxsize, FIFO, NULL, NULL);
}

int cio_lifo_queue_new(cio_queue **q, size_t item_size, size_t maxsize)
{
    return queue_new(q, item_size, maxsize, LIFO, NULL, NULL);
}

int cio_priority_queue_new(cio_queue **q, size_t item_size, size_t maxsize,
                           cio_queue_cmp cmp, void *arg)
{
    return queue_new(q, item_size, maxsize, PRIORITY, cmp, arg);
}

/* The quarantine lets it go (its mark goes first). */
static void queue_release(void *p)
{
    cio_queue *q = p;
    q->dead = false;
    cio__free(q);
}

static void destroy(cio_queue *q)
{
    cio__free(q->buf);
    q->buf = NULL;
    if (!q->debug) {
        cio__free(q);
        return;
    }
    q->dead = true; /* a second cio_queue_free sees it */
    cio__quarantine(NULL, q, queue_release);
}

/* A task is out of put, get or join: the last one out of a freed queue
 * frees it. */
static void leave(cio_queue *q)
{
    if (--q->users == 0 && q->freed)
        destroy(q);
}

/* The loop closes with a task in put, get or join: what it was promised
 * goes on, as if it had been cancelled, and it is out. */
static void getter_dropped(void *q, int handed)
{
    if (handed)
        getter_woken(q, NULL, -ECANCELED);
    leave(q);
}

static void putter_dropped(void *q, int handed)
{
    if (handed)
        putter_woken(q, NULL, -ECANCELED);
    leave(q);
}

static void joiner_dropped(void *q, int handed)
{
    (void)handed;
    leave(q);
}

void cio_queue_free(cio_queue *q)
{
    if (!q)
        return;
    if (q->dead || q->freed) { /* dead: only ever set in debug mode */
        if (q->debug)
            cio__misuse(NULL, "cio_queue_free of a queue already freed",
                        "queue", NULL, q);
        return;
    }
    if (q->users == 0) {
        destroy(q);
        return;
    }
    q->freed = true;
    cio_queue_shutdown(q, 1);
    cio__waitq_wake_all(&q->joiners, -ESHUTDOWN);
}

/* ------------------------------------------------------------ the calls */

/* Checks for a call that may wait: a task, and its cancellation. */
static int wait_entry_(const cio_queue *q, cio__task *t, const char *call)
{
    if (!q)
        return -EINVAL;
    if (!t)
        return cio__no_task(call);
    return cio__interrupted_now(t);
}
/* `call`: the public function, for debug mode's report. */
#define wait_entry(q, t) wait_entry_((q), (t), __func__)

int cio_queue_put(cio_queue *q, const void *item)
{
    cio__task *t = cio__current;
    int r = item ? wait_entry(q, t) : -EINVAL;
    if (r)
        return r;
    if (q->shutdown)
        return -ESHUTDOWN;
    if (has_room(q))
        return insert(q, item);
    q->users++;
    for (;;) {
        int woke = cio__waitq_park(&q->putters, t, &put_wait, q, true,
                                    putter_dropped, q);
        r = cio__interrupted_now(t);
        if (woke == CIO__HANDED) {
            r = putter_woken(q, item, r);
            break;
        }
        if (r || woke < 0) {
            r = r ? r : woke;
            break;
        }
        if (q->shutdown) { /* woken for no reason: look again */
            r = -ESHUTDOWN;
            break;
        }
        if (has_room(q)) {
            r = insert(q, item);
            break;
        }
    }
    leave(q);
    return r;
}

int cio_queue_get(cio_queue *q, void *item)
{
    cio__task *t = cio__current;
    int r = wait_entry(q, t);
    if (r)
        return r;
    if (has_item(q)) {
        take(q, item);
        return 0;
    }
    if (q->shutdown && q->count == 0)
        return -ESHUTDOWN;
    q->users++;
    for (;;) {
        int woke = cio__waitq_park(&q->getters, t, &get_wait, q, true,
                                    getter_dropped, q);
        r = cio__interrupted_now(t);
        if (woke == CIO__HANDED) {
            r = getter_woken(q, item, r);
            break;
        }
        if (r || woke < 0) {
            r = r ? r : woke;
            break;
        }
        if (has_item(q)) { /* woken for no reason: look again */
            take(q, item);
            break;
        }
        if (q->shutdown && q->count == 0) {
            r = -ESHUTDOWN;
            break;
        }
    }
    leave(q);
    return r;
}

int cio_queue_put_nowait(cio_queue *q, const void *item)
{
    if (!q || !item)
        return -EINVAL;
    if (q->shutdown)
        return -ESHUTDOWN;
    if (!has_room(q))
        return -EAGAIN;
    return insert(q, item);
}

int cio_queue_get_nowait(cio_queue *q, void *item)
{
    if (!q)
        return -EINVAL;
    if (has_item(q)) {
        take(q, item);
        return 0;
    }
    return q->shutdown && q->count == 0 ? -ESHUTDOWN : -EAGAIN;
}

size_t cio_queue_qsize(const cio_queue *q)
{
    return q ? q->count - q->promised_items : 0;
}

size_t cio_queue_maxsize(const cio_queue *q) { return q ? q->maxsize : 0; }

int cio_queue_empty(const cio_queue *q) { return q && !has_item(q); }

int cio_queue_full(const cio_queue *q) { return q && !has_room(q); }

int cio_queue_task_done(cio_queue *q)
{
    if (!q || q->unfinished == 0)
        return -EINVAL;
    if (--q->unfinished == 0)
        cio__waitq_wake_all(&q->joiners, CIO__HANDED);
    return 0;
}

int cio_queue_join(cio_queue *q)
{
    cio__task *t = cio__current;
    int r = wait_entry(q, t);
    if (r || q->unfinished == 0)
        return r;
    q->users++;
    for (;;) {
        int woke = cio__waitq_park(&q->joiners, t, &join_wait, q, true,
                                    joiner_dropped, q);
        r = cio__interrupted_now(t);
        if (r || woke < 0) {
            r = r ? r : woke;
            break;
        }
        if (woke == CIO__HANDED || q->unfinished == 0)
            break;
    }
    leave(q);
    return r;
}

/* asyncio 3.13's Queue.shutdown. Putters' promises die at once (they would
 * store into a shut queue); getters' only if immediate, when the items
 * they were promised are dropped. */
int cio_queue_shutdown(cio_queue *q, int immediate)
{
    if (!q)
        return -EINVAL;
    q->shutdown = true;
    q->promised_slots = 0;
    cio__waitq_wake_all(&q->putters, -ESHUTDOWN);
    if (immediate && !q->immediate) {
        q->immediate = true;
        size_t dropped = q->count;
        q->count = q->head = q->promised_items = 0;
        q->unfinished -= dropped < q->unfinished ? dropped : q->unfinished;
        if (q->unfinished == 0)
            cio__waitq_wake_all(&q->joiners, CIO__HANDED);
    }
    if (q->count == 0)
        cio__waitq_wake_all(&q->getters, -ESHUTDOWN);
    return 0;
}
