/* cio internals shared across the source files: never installed, never exported
 * from libcio.so (everything here is cio__ and hidden). */
#ifndef CIO_INTERNAL_H
#define CIO_INTERNAL_H

/* The library calls its own create functions, not the header's macros
 * that record the program's call site. */
#define CIO_NO_SITE_MACROS
#include "cio.h"
#include "ctx.h"
#include "list.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define CIO_HIDDEN __attribute__((visibility("hidden")))
#define cio__likely(x) __builtin_expect(!!(x), 1)
#define cio__unlikely(x) __builtin_expect(!!(x), 0)

/* Always on: a broken invariant aborts with file:line. Never used for what
 * the world can cause (ENOMEM, a peer reset, a short write). */
#define cio__assert(cond)                                                      \
    ((cond) ? (void)0 : cio__assert_fail(#cond, __FILE__, __LINE__))
CIO_HIDDEN _Noreturn void cio__assert_fail(const char *expr, const char *file,
                                           int line);

/* ------------------------------------------------ allocation and syscalls
 * Every allocation and system call the library makes goes through these,
 * so a test can make the N-th one fail (sys.c). The cio__sys_* calls
 * return -errno on failure instead of -1 and errno. */
CIO_HIDDEN void *cio__malloc(size_t n);
CIO_HIDDEN void *cio__calloc(size_t n, size_t size);
CIO_HIDDEN void *cio__realloc(void *p, size_t n);
CIO_HIDDEN char *cio__strdup(const char *s);
CIO_HIDDEN void *cio__grow(void *arr, size_t *cap, size_t need, size_t size,
                           size_t first);
CIO_HIDDEN void cio__free(void *p);
/* Large buffers that must go back to the kernel when freed (a malloc'd
 * block in the middle of the heap stays resident): their own mapping, n
 * bytes (a page multiple), counted and failed as allocations are. */
CIO_HIDDEN void *cio__big_alloc(size_t n);
CIO_HIDDEN void cio__big_free(void *p, size_t n);

CIO_HIDDEN int cio__sys_epoll_create1(int flags);
CIO_HIDDEN int cio__sys_epoll_ctl(int epfd, int op, int fd, void *event);
CIO_HIDDEN int cio__sys_epoll_wait(int epfd, void *events, int max,
                                   int timeout_ms);
CIO_HIDDEN int cio__sys_poll(void *fds, unsigned long n, int timeout_ms);
CIO_HIDDEN int cio__sys_eventfd(unsigned initval, int flags);
CIO_HIDDEN ssize_t cio__sys_read(int fd, void *buf, size_t n);
CIO_HIDDEN ssize_t cio__sys_write(int fd, const void *buf, size_t n);
CIO_HIDDEN int cio__sys_close(int fd);
CIO_HIDDEN int cio__sys_fstat_mode(int fd, unsigned *mode);
CIO_HIDDEN int cio__sys_socket(int domain, int type, int protocol);
CIO_HIDDEN int cio__sys_bind(int fd, const void *addr, unsigned len);
CIO_HIDDEN int cio__sys_listen(int fd, int backlog);
CIO_HIDDEN int cio__sys_accept(int fd, void *addr, unsigned *len);
CIO_HIDDEN int cio__sys_connect(int fd, const void *addr, unsigned len);
CIO_HIDDEN ssize_t cio__sys_recv(int fd, void *buf, size_t n);
CIO_HIDDEN ssize_t cio__sys_send(int fd, const void *buf, size_t n);
CIO_HIDDEN ssize_t cio__sys_sendv(int fd, const struct iovec *iov, int n);
/* recvfrom through recvmsg: *out_flags gets msg_flags (MSG_TRUNC: the
 * datagram did not fit); flags are recvmsg's. */
CIO_HIDDEN ssize_t cio__sys_recvfrom(int fd, void *buf, size_t n, void *addr,
                                     unsigned *len, int flags, int *out_flags);
CIO_HIDDEN ssize_t cio__sys_sendto(int fd, const void *buf, size_t n,
                                   const void *addr, unsigned len);
CIO_HIDDEN int cio__sys_shutdown(int fd, int how);
CIO_HIDDEN int cio__sys_setsockopt(int fd, int level, int name, int value);
CIO_HIDDEN int cio__sys_socket_error(int fd);
/* Makes the close of socket fd send RST (SO_LINGER 0); -ENOTSOCK, ... */
CIO_HIDDEN int cio__sys_reset_on_close(int fd);
CIO_HIDDEN ssize_t cio__sys_writev_pipe(int fd, const struct iovec *iov, int n);
/* sendfile(2) from `in` at offset, never raising SIGPIPE (-EPIPE instead);
 * the call named for cio__fault_arm_call is "sendfile". */
CIO_HIDDEN ssize_t cio__sys_sendfile(int out, int in, int64_t offset,
                                     size_t n);
CIO_HIDDEN ssize_t cio__sys_pread(int fd, void *buf, size_t n, int64_t offset);
/* A socket's SO_TYPE (SOCK_STREAM, ...), or -errno (-ENOTSOCK). */
CIO_HIDDEN int cio__sys_socket_type(int fd);
CIO_HIDDEN int cio__sys_thread_create(pthread_t *t, void *(*fn)(void *),
                                      void *arg);
CIO_HIDDEN void *cio__sys_mmap(size_t len, int *err);
CIO_HIDDEN int cio__sys_munmap(void *addr, size_t len);
CIO_HIDDEN int cio__sys_madvise(void *addr, size_t len, int advice);
CIO_HIDDEN int cio__sys_mincore(void *addr, size_t len, unsigned char *vec);
CIO_HIDDEN int cio__sys_mprotect(void *addr, size_t len, int prot);

/* Failure injection, for tests: the nth counted call (1-based) of the
 * given kinds fails once (with CIO__FAULT_PERSIST: it and every later
 * one, until disarmed), allocations with NULL, syscalls with -err.
 * _call restricts system call faults to one call, named as in its
 * cio__sys_ wrapper ("epoll_wait", "pthread_create", ...). */
enum { CIO__FAULT_ALLOC = 1, CIO__FAULT_SYS = 2, CIO__FAULT_PERSIST = 4 };
CIO_HIDDEN void cio__fault_arm(unsigned kinds, long nth, int err);
CIO_HIDDEN void cio__fault_arm_call(unsigned kinds, long nth, int err,
                                    const char *call);
CIO_HIDDEN int cio__fault_check_call(unsigned kind, const char *expr);
CIO_HIDDEN void cio__fault_disarm(void);
CIO_HIDDEN int cio__fault_fired(void);   /* did the armed failure happen */
CIO_HIDDEN long cio__alloc_live(void);   /* allocations not yet freed */
CIO_HIDDEN int cio__fault_check(unsigned kind); /* 0, or the error to fail */

/* ---------------------------------------------------------------- handles
 * A callback waiting to run: on the ready list, in the timer heap, or
 * neither (free in the pool, or an embedded handle at rest). Pool handles
 * are carved from slabs that live as long as the loop, so a cio_handle
 * value held by the user never points at freed memory; `id` tells whether
 * it still names the same scheduling. Embedded handles (a task's wake-up,
 * an fd watcher's) live inside their owner and never enter the pool. */
enum {
    CIO__H_IDLE = 0,  /* not scheduled */
    CIO__H_READY = 1, /* on loop->ready or the batch being run */
    CIO__H_TIMER = 2  /* in loop->heap */
};

typedef struct cio__handle {
    cio__list link;      /* ready list / pool free list */
    cio_callback cb;
    cio_callback drop;   /* embedded: frees arg if the loop closes first */
    void *arg;
    cio_loop *loop;
    uint64_t id;         /* this scheduling's id; 0 while free */
    uint64_t cancelled_id; /* pool: the last scheduling cancelled here */
    double when;         /* timers: the deadline */
    uint64_t seq;        /* timers: scheduling order, the tie-break */
    size_t heap_index;   /* timers: position in loop->heap */
    uint8_t state;       /* CIO__H_* */
    uint8_t embedded;    /* owned by another object, not the pool */
} cio__handle;

/* cio__handle.embedded: from the loop's pool, or owned by an object. */
enum { CIO__HANDLE_POOLED = 0, CIO__HANDLE_EMBEDDED = 1 };

/* Embedded handles: scheduled by their owner, no allocation, no id
 * (cio__handle_init, cio__handle_schedule: inline, below struct cio_loop). */
CIO_HIDDEN int cio__handle_schedule_at(cio__handle *h, double when);
CIO_HIDDEN void cio__handle_unschedule(cio__handle *h); /* from anywhere */

/* ---------------------------------------------------------------- backend
 * The poller contract, as Redis's ae: the backend only reports which fds
 * fired (through the loop's `fired` function); the loop alone runs
 * callbacks. */
enum { CIO__READ = 1, CIO__WRITE = 2 };

typedef void (*cio__fired_fn)(cio_loop *loop, int fd, unsigned events);

typedef struct cio__backend {
    const char *name;
    int (*init)(cio_loop *loop);
    void (*fini)(cio_loop *loop);
    /* fd's interest changes from `old` to `events` (0: unwatch). */
    int (*watch)(cio_loop *loop, int fd, unsigned old, unsigned events);
    /* Waits up to timeout_ms (-1: forever) and tells `fired` each fd
     * that is ready (CIO__READ|CIO__WRITE); returns events seen or -err.
     * The loop passes `fired` in, so the backend calls nothing above it. */
    int (*wait)(cio_loop *loop, int timeout_ms, cio__fired_fn fired);
} cio__backend;

CIO_HIDDEN extern const cio__backend cio__backend_epoll;
CIO_HIDDEN extern const cio__backend cio__backend_poll;

/* One fd's watchers: an embedded handle per direction. */
typedef struct cio__watcher {
    cio__handle io[2]; /* [0] reader, [1] writer; cb NULL when unset */
    unsigned events;   /* CIO__READ|CIO__WRITE as told to the backend */
} cio__watcher;

/* One call_soon_threadsafe request; drop (may be NULL) frees arg if the
 * loop closes before cb ran. */
typedef struct cio__post {
    cio_callback cb, drop;
    void *arg;
} cio__post;

/* A bridge: one result carried from another thread to the loop (the
 * executor's results, a process watcher thread's exit news). Embedded in
 * its owner; the protocol is wholly in loop.c (see cio__bridge_open). */
enum { CIO__BRIDGE_FLYING = 0, CIO__BRIDGE_LANDING, CIO__BRIDGE_ORPHANED };

typedef struct cio__bridge {
    cio__list link;          /* loop->bridges, then loop->arrived */
    atomic_int state;        /* CIO__BRIDGE_*: who got it first, the
                              * other thread (landing) or the closing loop */
    atomic_int refs;         /* its owner's business */
    cio__handle deliver;     /* scheduled once the result arrived */
    void (*orphaned)(struct cio__bridge *b); /* loop closed first: its
                                              * thread never lands */
} cio__bridge;

typedef struct cio__slab cio__slab;
typedef struct cio__stack_pool cio__stack_pool;

/* ------------------------------------------------------- the trace
 * trace.c: a loop's timeline, recorded on its thread. Rows: 0 the loop's
 * callbacks, a task's id, CIO__TRACE_WORKER + n an executor worker. */
typedef struct cio__trace cio__trace;
#define CIO__TRACE_WORKER (UINT64_C(1) << 40)
CIO_HIDDEN double cio__trace_clock(void); /* CLOCK_MONOTONIC, seconds */
CIO_HIDDEN void cio__trace_slice(cio__trace *tr, uint64_t row,
                                 const char *name, double from, double to);
CIO_HIDDEN void cio__trace_instant(cio__trace *tr, uint64_t row,
                                   const char *name, int fd);
CIO_HIDDEN void cio__trace_name_row(cio__trace *tr, uint64_t row,
                                    const char *name);
/* Writes s (NULL: "") to f as a JSON string, quoted and escaped: the
 * trace's and the task dump's. */
CIO_HIDDEN void cio__json_string(FILE *f, const char *s);
/* Begins loop's trace into path (numbered: $CIO_TRACE's, path.N for the
 * process's N-th traced loop); ends it, writing the file. */
CIO_HIDDEN int cio__trace_begin(cio_loop *loop, const char *path,
                                bool numbered);
CIO_HIDDEN int cio__trace_end(cio_loop *loop);

struct cio_loop {
    const cio__backend *backend;
    void *backend_data;          /* the backend's own state */
    int wakefd;                  /* eventfd for threadsafe wake-ups */

    cio__list ready;             /* handles for the next batch */
    cio__list batch;             /* handles of the batch being run */
    cio__handle **heap;          /* timers, min-heap on (when, seq) */
    size_t heap_len, heap_cap;
    uint64_t next_id;            /* handle ids and timer seqs */
    cio__list free_handles;      /* the pool */
    cio__slab *slabs;            /* the pool's memory */

    cio__watcher **watchers;     /* indexed by fd; NULL when unwatched */
    size_t watchers_cap;
    int nwatched;                /* user fds with a watcher */

    double now;                  /* cached loop time; with virtual_clock
                                  * the clock itself, moved only by the
                                  * poll phase and cio_loop_advance */
    bool now_valid;              /* false: next cio_loop_time() reads */
    bool virtual_clock;          /* cio_loop_set_virtual_clock was called */
    unsigned long blocking_waits; /* backend waits with a timeout (tests) */
    unsigned ran_since_poll;     /* callbacks run since the last poll */
    unsigned ran;                /* callbacks run in this ready phase */

    bool running, stopping, closed, debug;
    double slow_callback_duration;
    pthread_t owner;             /* the thread running it */
    /* 1 while a thread runs the loop: taken atomically by run_forever /
     * run_once, so a second thread's call fails instead of racing. */
    atomic_int claimed;

    cio_exception_handler handler;
    void *handler_arg;

    /* Other threads' way in (call_soon_threadsafe, bridges): posters
     * append to `posted` under `lock`; each iteration swaps it with
     * `torun` and runs that in order. */
    struct cio__loop_posts {
        pthread_mutex_t lock;
        cio__post *posted, *torun;
        size_t nposted, posted_cap, ntorun, torun_cap;
        atomic_size_t count;     /* nposted, readable without the lock */
        cio__handle batch;       /* runs `torun` from the ready queue */
        atomic_int sleeping;     /* the loop is in a blocking poll */
        atomic_int wake_sent;    /* an eventfd write is outstanding */
        cio__list bridges;       /* cio__bridge in flight, under lock */
        cio__list arrived;       /* cio__bridge with results, under lock */
    } posts;
    /* Networking's (transport.c, server.c). */
    struct cio__loop_net {
        cio__list transports;    /* not owned by a server */
        cio__list servers;       /* not yet freed */
        char *read_buf;          /* shared by every reader */
    } net;
    struct cio__signals *signals; /* signal.c: NULL until a handler */
    cio__list processes;         /* process.c: children being watched */
    struct cio_executor *default_executor; /* owned; NULL until first use */

    /* Debug mode's (debug.c). Only debug loops fill them. */
    struct cio__loop_debug {
        cio__list live;          /* futures and tasks with references */
        struct cio__graves *graves; /* freed objects kept: NULL until one */
        bool step_timed;         /* a task step warned of itself (task.c) */
    } dbg;

    /* The task layer's (task.c, stack.c). */
    struct cio__loop_tasks {
        cio__list all;           /* every unfinished task */
        size_t n;
        uint64_t counter;        /* for "Task-N" names */
        cio__stack_pool *stacks; /* reusable task stacks */
        uint64_t dump_gen;       /* inspect.c: the last tree dump's mark */
    } tasks;
    cio__trace *trace;           /* trace.c: NULL unless recording */
    /* inspect.c's cio_loop_dump_on_signal: where (owned; NULL: never). */
    struct dump_request *dump_request;
};

/* Embedded handles: scheduled by their owner, no allocation, no id. */
static inline void cio__handle_init(cio__handle *h, cio_loop *loop,
                                    cio_callback cb, void *arg)
{
    memset(h, 0, sizeof *h);
    cio__list_init(&h->link);
    h->cb = cb;
    h->arg = arg;
    h->loop = loop;
    h->embedded = CIO__HANDLE_EMBEDDED;
}

/* To the ready queue, once (a handle already scheduled stays put). */
static inline void cio__handle_schedule(cio__handle *h)
{
    if (h->state != CIO__H_IDLE)
        return;
    h->state = CIO__H_READY;
    cio__list_push_back(&h->loop->ready, &h->link);
}

CIO_HIDDEN extern _Thread_local cio_loop *cio__running_loop;
CIO_HIDDEN void cio__report(cio_loop *loop, const char *message, int error,
                            const char *what, const char *name, void *obj);
/* The loop's own teardown, called last by cio_loop_close / cio_loop_free
 * (runner.c) once every subsystem has closed. */
CIO_HIDDEN void cio__loop_close_core(cio_loop *loop);
CIO_HIDDEN void cio__loop_free_core(cio_loop *loop);
/* The loop's posts phase and its closing of the door (posts.c). */
CIO_HIDDEN void cio__posts_take(cio_loop *loop);
CIO_HIDDEN void cio__posts_close(cio_loop *loop);
/* Loop checks shared by every scheduling entry point. */
CIO_HIDDEN int cio__loop_check(cio_loop *loop);
/* call_soon_threadsafe with a drop (may be NULL: frees arg if the loop
 * closes before cb ran). Returns -ESHUTDOWN once closed, -ENOMEM. */
CIO_HIDDEN int cio__post_threadsafe(cio_loop *loop, cio_callback cb,
                                    cio_callback drop, void *arg);
/* Bridges (loop.c): open and unopen on the loop's thread; land from the
 * other thread, once: false if the loop closed first (touch nothing of it
 * then). Landing needs no memory, so it cannot fail. */
CIO_HIDDEN void cio__bridge_open(cio_loop *loop, cio__bridge *b,
                                 cio_callback deliver, cio_callback dropped,
                                 void (*orphaned)(cio__bridge *b), void *arg);
CIO_HIDDEN void cio__bridge_unopen(cio__bridge *b);
CIO_HIDDEN bool cio__bridge_land(cio__bridge *b);
/* The executor's part of closing a loop: its default executor. */
CIO_HIDDEN void cio__executor_loop_close(cio_loop *loop);
CIO_HIDDEN void cio__executor_shutdown_default(cio_loop *loop, double timeout);
CIO_HIDDEN extern double cio__executor_idle_timeout;

/* ------------------------------------------------------------ debug mode
 * Misuse that frees an object twice (debug.c). A debug object that is
 * freed is not given back at once: it is marked dead and kept in a
 * quarantine, its loop's (freed with the loop) or, for objects of no loop
 * (executor, queue), the process's; a second free then finds the mark in
 * memory that is still there, reports it and touches nothing else. The
 * quarantine holds the most recent frees only: `release` really frees the
 * oldest when it is full, and must clear the mark first. */
CIO_HIDDEN void cio__quarantine(cio_loop *loop, void *obj,
                                void (*release)(void *obj));
/* Releases what loop's quarantine (NULL: the process's) holds. */
CIO_HIDDEN void cio__quarantine_flush(cio_loop *loop);
/* For objects of no loop, at creation: is the running loop in debug mode,
 * or else $CIO_DEBUG set? */
CIO_HIDDEN bool cio__debug_wanted(void);
/* Reports misuse through loop's handler (NULL: the running loop's, else
 * the default handler's). */
CIO_HIDDEN void cio__misuse(cio_loop *loop, const char *message,
                            const char *what, const char *name, void *obj);
/* cio_loop_free in debug mode: each future and task the program still
 * holds a reference on, with its name and where it was created. */
CIO_HIDDEN void cio__debug_report_live(cio_loop *loop);

/* --------------------------------------------------------------- futures */
/* CIO__F_FREED: a debug loop's future whose last reference went, kept in
 * the quarantine (refs 0) so that one more unref is caught. */
enum { CIO__F_PENDING = 0, CIO__F_DONE, CIO__F_CANCELLED, CIO__F_FREED };

/* Someone waiting for a future. A task parked in cio_await is woken
 * directly (`wake` set, by the task layer); anyone else gets `h`
 * scheduled on completion. A waiter is linked in fut->waiters until the
 * future completes or its owner detaches it. */
typedef struct cio__waiter {
    cio__list link;          /* in fut->waiters */
    cio__handle h;           /* callbacks: scheduled on completion */
    void (*wake)(struct cio__waiter *w); /* an awaiting task's, or NULL */
    cio_future *fut;         /* what it waits for */
    void (*drop)(struct cio__waiter *w); /* frees it if fut dies pending */
    bool ref_fut;            /* hold a reference on fut while scheduled */
} cio__waiter;

/* What a future of another kind (a task) does differently; the kind
 * fills it in, so future.c never needs to know the kinds above it. */
typedef struct cio__future_ops {
    const char *what;        /* "task": for reports */
    const char *(*name)(const cio_future *f);
    int (*cancel)(cio_future *f);   /* cio_future_cancel of one */
    void (*free)(cio_future *f);    /* its last reference went */
    /* Debug: gives back all but its memory and name, which the
     * quarantine keeps; free comes later. */
    void (*retire)(cio_future *f);
} cio__future_ops;

struct cio_future {
    cio_loop *loop;
    const cio__future_ops *ops; /* NULL: a plain future, completed by
                                 * set_result/set_error/cancel */
    unsigned refs;
    uint8_t state;           /* CIO__F_* */
    bool retrieved;          /* its outcome was read: no "never retrieved" */
    /* Made on a debug loop, which tracks it (live, quarantine) while the
     * loop lives: the loop, freed, clears it, so that a future released
     * after its loop (allowed) never looks at the loop again. */
    bool debug;
    int status;              /* >= 0 result, < 0 error */
    void *value;             /* borrowed, carried for the user */
    cio__list waiters;       /* cio__waiter, in registration order */
    /* Where the program created it (the header's create macros), or
     * NULL: made inside cio. Static strings, never owned. */
    const char *site_file;
    int site_line;
    /* What cio made it for ("executor job", "process exit"), as the task
     * dump tells it, or NULL. A static string. */
    const char *label;
    cio__list live;          /* debug loops: in loop->dbg.live until freed */
};

CIO_HIDDEN void cio__future_init(cio_future *f, cio_loop *loop,
                                 const cio__future_ops *ops);
/* Completes f and hands it to every waiter, in order. */
CIO_HIDDEN void cio__future_complete(cio_future *f, int state, int status,
                                     void *value);
CIO_HIDDEN void cio__waiter_add(cio_future *f, cio__waiter *w);
CIO_HIDDEN void cio__waiter_detach(cio__waiter *w);
/* Adds a callback whose arg is released by `release` exactly once: after
 * it ran, when it is removed, or when f dies pending. */
CIO_HIDDEN int cio__future_add_callback(cio_future *f, cio_done_callback cb,
                                        void *arg, void (*release)(void *));

/* ------------------------------------------------------------------ tasks
 * Invariants: a task is on loop->tasks from creation until it finishes.
 * While it waits it is `parked` and its wake handle is idle; cio__wake
 * unparks it and schedules the wake handle, which resumes it. A task's
 * interrupt hook runs when it is cancelled or a scope expires while it is
 * parked; the hook must eventually wake it.
 *
 * Teardown: once the task layer has closed (cio__tasks_close, the one
 * place this is enforced), no loop structure points into any task's
 * stack: the stacks go back to the pool and may be zeroed. So the timers
 * the loop holds for a task are the task's own (`timer`, `scope_timer`),
 * never in a frame, and a frame that links a node of its own into
 * something the loop or a library object keeps (a wait-queue node, a
 * multi-future watch, a connect's attempts), or holds what only it would
 * free, pushes a cleanup for as long as it waits: the teardown runs them,
 * innermost first. Debug loops check the invariant before each stack is
 * released. */
/* An open timeout scope, as its task keeps it (flow.c). The user's
 * cio_timeout_scope names it by id; nothing the loop runs ever touches
 * the user's memory, so a scope whose frame an early return took away
 * can corrupt nothing. */
typedef struct cio__scope_rec {
    double when;         /* its deadline; INFINITY: none */
    uint64_t id;         /* matches its cio_timeout_scope's */
    const void *frame;   /* where its cio_timeout_scope is */
    bool expired;
} cio__scope_rec;

/* A frame's cleanup: it lives in the frame, from push to pop. */
typedef struct cio__cleanup {
    struct cio__cleanup *next; /* the enclosing frame's, or NULL */
    void (*fn)(void *arg);     /* unlinks, frees, cancels; never blocks */
    /* NULL, or waits for what fn could not stop (work running on the
     * frame in another thread); runs once every task's fn has run, so
     * that work queued behind it was cancelled first. */
    void (*finish)(void *arg);
    void *arg;
    /* NULL, or the object the wait is linked into (a wait queue), and
     * how to forget it without touching it. Debug loops check it when a
     * task's stack goes: a lock, event, condition, semaphore or barrier in
     * a frame of that stack would leave this wait linked into memory that
     * is already being reused. */
    const void *on;
    void (*forget)(void *arg);
} cio__cleanup;

/* The wake result of a wait whose object went away (the debug check
 * above): forgotten by the waker, it returns at once, touching nothing of
 * the object. */
enum { CIO__GONE = -ESHUTDOWN };

/* What a parked task waits on, as the task dump tells it (inspect.c):
 * one static descriptor per kind of wait, in the file that parks. */
typedef struct cio__wait_kind {
    const char *what;        /* "lock", "queue get", "read", ... */
    /* NULL, or the futures the wait is for (cio_await's one, gather's,
     * a task group's children): up to cap of them into out; returns how
     * many there are. Only called while the task is parked. */
    size_t (*futures)(const void *on, cio_future **out, size_t cap);
} cio__wait_kind;

typedef struct cio__task {
    cio_future fut;          /* first: a task is a future */
    cio__fiber fiber;        /* its stack and saved registers */
    cio_task_fn fn;
    void *arg;
    char *name;              /* owned; NULL: "Task-<id>" */
    uint64_t id;
    cio__list all;           /* in loop->tasks while unfinished */
    cio__handle wake;        /* resumes it */
    /* The timer of the one wait it is parked in (sleep, a connect's
     * happy-eyeballs delay): a task waits at one place at a time. */
    cio__handle timer;
    /* Due at the earliest deadline of its open timeout scopes (flow.c):
     * the scopes themselves live in the user's frames, which the loop
     * never sees. */
    cio__handle scope_timer;
    int wake_result;         /* what the waker said */
    bool parked, started;
    bool interrupting;       /* its interrupt hook is running */
    int cancel_requests;     /* asyncio's cancelling() */
    int expired_scopes;      /* active timeout scopes past their deadline */
    cio__scope_rec *scopes;  /* its open timeout scopes, innermost last */
    size_t nscopes, scopes_cap;
    uint64_t scope_ids;      /* the last id given to one of them */
    void (*interrupt)(struct cio__task *t, void *arg); /* while parked */
    void *interrupt_arg;
    void *result_value;      /* cio_task_set_value */
    cio__waiter await;       /* cio_await's waiter */
    cio_future *awaiting;    /* what cio_await holds a reference on */
    /* The cleanups of the frames now waiting, innermost first: if the
     * loop closes meanwhile they unlink what those frames linked and free
     * what they, which will never run again, would have freed. */
    cio__cleanup *cleanups;
    /* What it is parked on (the task dump): set just before it parks;
     * read only while it is parked (stale once it runs again). */
    const cio__wait_kind *wait_kind;
    const void *wait_on;     /* the object waited on */
    int wait_fd;             /* the fd of an I/O wait, else -1 */
    double created;          /* loop time at creation: the dump's age */
    uint64_t dump_mark;      /* inspect.c: printed by tree dump number */
    uint64_t dump_awaited;   /* inspect.c: awaited, as of dump number */
    size_t stack_used;       /* debug: its high-water mark, once done */
    /* Traced: since when it waits (0: it does not), and on what. */
    double trace_wait_from;
    const char *trace_wait;
} cio__task;

/* Says what t is about to park on (see cio__task.wait_kind). */
static inline void cio__task_waits(cio__task *t, const cio__wait_kind *kind,
                                   const void *on, int fd)
{
    t->wait_kind = kind;
    t->wait_on = on;
    t->wait_fd = fd;
}

/* Pushes c (in the caller's frame) for the wait that follows: fn(arg)
 * runs if the loop closes before the matching pop. */
static inline void cio__cleanup_push(cio__task *t, cio__cleanup *c,
                                     void (*fn)(void *arg), void *arg)
{
    c->fn = fn;
    c->finish = NULL;
    c->arg = arg;
    c->on = NULL;
    c->forget = NULL;
    c->next = t->cleanups;
    t->cleanups = c;
}

static inline void cio__cleanup_pop(cio__task *t, cio__cleanup *c)
{
    cio__assert(t->cleanups == c);
    t->cleanups = c->next;
}

CIO_HIDDEN extern _Thread_local cio__task *cio__current;
/* f as a task, or NULL if it is a plain future. */
CIO_HIDDEN cio__task *cio__task_of(const cio_future *f);
/* What parked t waits on ("lock", "executor job", ...), or NULL. */
CIO_HIDDEN const char *cio__task_wait_what(const cio__task *t);
/* The trace begins: the tasks already running get their rows' names. It
 * ends: the waits still open are recorded as they stand. */
CIO_HIDDEN void cio__tasks_trace_begin(cio_loop *loop);
CIO_HIDDEN void cio__tasks_trace_end(cio_loop *loop);
/* Returns CIO_ENOTASK for `call` (a public function's name) made outside a
 * task; a debug loop running in this thread reports it. */
CIO_HIDDEN int cio__no_task(const char *call);
/* -ECANCELED if t has cancellation requests, else -ETIMEDOUT if one of its
 * scopes expired, else 0: what every suspension point returns first. */
CIO_HIDDEN int cio__interrupted(const cio__task *t);
/* Parks the current task until cio__wake; returns the wake result.
 * interrupt (NULL: just wake) runs if it is cancelled meanwhile. */
CIO_HIDDEN int cio__park(void (*interrupt)(cio__task *t, void *arg),
                         void *arg);
/* Parks and returns cio__interrupted() if set, else the wake result. */
CIO_HIDDEN int cio__park_checked(void (*interrupt)(cio__task *t, void *arg),
                                 void *arg);
CIO_HIDDEN void cio__wake(cio__task *t, int result);
CIO_HIDDEN void cio__interrupt(cio__task *t);
/* Drops t's innermost scopes that were left open by a return: those
 * whose cio_timeout_scope lies on t's stack below `fp` (the frame of a
 * cio call made from the user's running function: what is below it is
 * gone), and one whose memory is `reused` for a new scope. Debug loops
 * report them. */
CIO_HIDDEN void cio__scopes_drop_dead(cio__task *t, const void *fp,
                                      const void *reused);
/* Drops scope record i and every one inside it (i = 0: all). */
CIO_HIDDEN void cio__scopes_truncate(cio__task *t, size_t i);
/* Arms t's wait timer: cb(t) runs at `when` unless unscheduled first. */
CIO_HIDDEN int cio__task_timer_at(cio__task *t, double when, cio_callback cb);
/* cio_await that takes over the caller's reference on f: released when
 * the await returns, or by the teardown if the loop closes first. */
CIO_HIDDEN int cio__await_owned(cio_future *f, void **value);
/* Tasks hook into the loop's teardown. */
CIO_HIDDEN void cio__tasks_close(cio_loop *loop);

/* ------------------------------------------------------------- processes */
CIO_HIDDEN extern bool cio__process_force_thread_watcher;
CIO_HIDDEN void cio__processes_close(cio_loop *loop);

/* --------------------------------------------------------------- signals */
CIO_HIDDEN void cio__signals_close(cio_loop *loop);
/* Whether this is the process's main thread (signals are handled there). */
CIO_HIDDEN bool cio__main_thread(void);

/* ------------------------------------------------------------ networking
 * What the rest of cio needs of sock.c, transport.c, connect.c, server.c;
 * what those share among themselves is in net.h. */
CIO_HIDDEN extern double cio__accept_retry_delay; /* tests lower it */
/* The most a datagram transport reads per datagram (transport.c): 64 KiB,
 * which holds the largest UDP payload (65527 bytes); tests lower it to see
 * what happens to a datagram that does not fit. */
CIO_HIDDEN extern size_t cio__dgram_read_size;
/* Bytes readuntil and readline have searched for separators (stream.c),
 * for the tests that check a long line is scanned once, not per chunk. */
CIO_HIDDEN extern _Thread_local size_t cio__stream_scanned;
/* Seconds a freed stream may go on flushing before it is aborted
 * (stream.c); tests lower it. */
CIO_HIDDEN extern double cio__stream_free_linger;
/* Seconds a stream's drained large read buffer is kept before it goes
 * back (stream.c); tests lower it. */
CIO_HIDDEN extern double cio__stream_shrink_delay;
CIO_HIDDEN void cio__net_close(cio_loop *loop);
/* Pipe transports (process.c's and cio_connect_*_pipe). */
CIO_HIDDEN int cio__pipe_transport(cio_loop *loop, int fd, bool write_side,
                                   const cio_protocol *proto, void *ctx,
                                   cio_transport **t);
/* A stream over a pipe (for a child's stdin, stdout, stderr). */
CIO_HIDDEN int cio__stream_pipe(cio_loop *loop, int fd, bool write_side,
                                size_t limit, cio_stream **s);
/* cio_transport_start_tls with bytes read before TLS began (a stream's
 * unread buffer) handed to the handshake first (transport.c). */
CIO_HIDDEN int cio__transport_start_tls(cio_transport *t,
                                        const cio_tls_options *o, bool server,
                                        const void *prefix, size_t n);
/* cio_create_unix_connection with TLS (connect.c; tls NULL: none). */
CIO_HIDDEN int cio__create_unix_connection(const char *path,
                                           const cio_protocol *proto,
                                           void *ctx,
                                           const cio_tls_options *tls,
                                           cio_transport **out);
/* The bytes the transport's write buffer holds room for (tests). */
CIO_HIDDEN size_t cio__transport_wbuf_capacity(const cio_transport *t);
/* The bytes the stream's read buffer holds room for (tests). */
CIO_HIDDEN size_t cio__stream_buffer_capacity(const cio_stream *s);
/* stream.c's state for a server, freed by free_hook with the server. */
CIO_HIDDEN void cio__server_set_owner(cio_server *s, void *owner,
                                      void (*free_hook)(void *));

/* ------------------------------------------------------------------ stacks */
CIO_HIDDEN extern bool cio__stack_force_mprotect;
/* Zero every stack given back to the pool (also on in debug loops), so a
 * pointer left into a finished or destroyed task's stack shows at once. */
CIO_HIDDEN extern bool cio__stack_poison_released;
CIO_HIDDEN int cio__stack_reserve(cio_loop *loop, size_t size);
CIO_HIDDEN void cio__stack_unreserve(cio_loop *loop, size_t size);
CIO_HIDDEN int cio__stack_take(cio_loop *loop, size_t size, char **lo);
CIO_HIDDEN void cio__stack_put(cio_loop *loop, char *lo, size_t size);
CIO_HIDDEN void cio__stack_pool_free(cio_loop *loop);
/* The most used stacks the pool keeps warm; beyond them a stack given
 * back has its pages dropped. 0 or -ENOMEM. */
CIO_HIDDEN int cio__stack_pool_set_max(cio_loop *loop, size_t max);
/* How many used stacks the pool keeps warm now (tests). */
CIO_HIDDEN size_t cio__stack_pool_idle(cio_loop *loop);
/* How many regions (REGION_STACKS stacks' address space each) the pool
 * keeps: one allocation each, kept for the loop's life (tests). */
CIO_HIDDEN size_t cio__stack_pool_regions(cio_loop *loop);
CIO_HIDDEN size_t cio__stack_round(size_t size);
/* Debug mode's high-water marks. paint fills the pages of a free stack
 * that are resident with a pattern (pages not yet touched stay so: no
 * memory is spent on them); used returns how many bytes from the top of
 * the stack were ever used since: exact where the pattern was, rounded
 * up to the page where a page was first touched since. 0 if unknown. */
CIO_HIDDEN void cio__stack_paint(char *lo, size_t size);
CIO_HIDDEN size_t cio__stack_used(const char *lo, size_t size);
/* Debug: a finished task used this much; the overflow report tells the
 * deepest so far. */
CIO_HIDDEN void cio__stack_note_use(size_t used);
/* Fills the running stack's bounds and its owner's name (from a signal
 * handler: no allocation, no locks); 0 if no task's stack runs. */
typedef int (*cio__stack_running_fn)(char **lo, size_t *size, char *name,
                                     size_t cap);
CIO_HIDDEN void cio__stack_watch_overflow(cio__stack_running_fn running);

#endif
