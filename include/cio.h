/** @file
 * cio: asyncio for C.
 *
 * One event loop per thread, callbacks and timers on it, and tasks: plain C
 * functions running on their own stacks, where any cio call may suspend the
 * task exactly where Python would write `await`.
 *
 * Conventions, everywhere below:
 *  - A call that can fail returns int: 0 (or a count) on success, a negative
 *    errno on failure; cio_strerror() names every code.
 *  - A call that fails never runs its callback; a call that succeeds runs it
 *    (or completes its future) exactly once.
 *  - A call that may wait ("from a task") returns CIO_ENOTASK when made
 *    outside a task, whatever else it lists.
 *  - Delays and timeouts follow one rule (durations, below): <= 0 is
 *    already due, CIO_NO_TIMEOUT never, NaN -EINVAL.
 *  - Objects are opaque. `_new` / `_free` are library memory; `_ref` /
 *    `_unref` are shared; `_close` is asynchronous teardown.
 *  - asyncio's names keep their names with a cio_ prefix.
 */
#ifndef CIO_H
#define CIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <math.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netdb.h>

/** Declared here too: strict C11 builds see <netdb.h> without it. */
struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CIO_API __attribute__((visibility("default")))
#else
#define CIO_API
#endif

/* --------------------------------------------------------------- version
 * Semantic versioning: the shared library's soname changes with MAJOR.
 * The macros are the header's version; the calls, the library's (they
 * differ when a program runs against another build than it compiled). */
#define CIO_VERSION_MAJOR 0
#define CIO_VERSION_MINOR 2
#define CIO_VERSION_PATCH 0
#define CIO_VERSION_STRING "0.2.0"
/** MAJOR << 16 | MINOR << 8 | PATCH: comparable with < and >. */
#define CIO_VERSION_HEX                                                        \
    ((CIO_VERSION_MAJOR << 16) | (CIO_VERSION_MINOR << 8) | CIO_VERSION_PATCH)

/** Returns the library's CIO_VERSION_HEX. */
CIO_API unsigned cio_version(void);
/** Returns the library's CIO_VERSION_STRING (static, never NULL). */
CIO_API const char *cio_version_string(void);

/* ------------------------------------------------------------- durations
 * The rule for every delay, timeout and deadline in this header (seconds
 * as a double; deadlines in cio_loop_time()'s clock), asyncio's:
 *  - a delay or timeout <= 0, or a deadline at or before the loop's time,
 *    is already due: a callback runs soon (in the next iteration), a sleep
 *    yields once, a wait that is not satisfied at once times out, a
 *    timeout scope expires soon (its next suspension point sees it);
 *  - CIO_NO_TIMEOUT (+INFINITY, asyncio's None) never expires: wait as
 *    long as needed;
 *  - NaN is -EINVAL.
 * So a computed `deadline - now` that went negative means "too late",
 * never "no limit".
 */
/** The timeout that never expires: +INFINITY, asyncio's None. */
#define CIO_NO_TIMEOUT INFINITY

/* ---------------------------------------------------------------- errors
 * asyncio's exceptions map to errno codes: CancelledError -ECANCELED,
 * TimeoutError -ETIMEDOUT, QueueShutDown -ESHUTDOWN, QueueEmpty/QueueFull
 * -EAGAIN. InvalidStateError has no one code: reading the result of a
 * future not yet done is -EAGAIN (cio_future_result), completing one
 * already done is -EINVAL (cio_future_set_result, _set_error). asyncio's
 * RuntimeErrors are what each call lists: a call that must wait made
 * outside a task is CIO_ENOTASK, releasing a lock not held -EINVAL,
 * notifying a condition whose lock is not held -EPERM. Codes with no
 * errno sit far outside errno's range, and a range is the program's own.
 */
#define CIO_EINCOMPLETE (-30001) /**< IncompleteReadError: EOF before the end */
#define CIO_ELIMIT (-30002)      /**< LimitOverrunError: buffer limit reached */
#define CIO_EBROKEN (-30003)     /**< BrokenBarrierError */
#define CIO_ETLS (-30010)    /**< ssl.SSLError: cio_tls_error_string says why */
#define CIO_ETLSEOF (-30011) /**< SSLEOFError: the peer ended without close_notify */
/** A call that can only run in a task (it may wait) was made outside one:
 * asyncio's "no running event loop" / "no current task" RuntimeError. */
#define CIO_ENOTASK (-30004)
/** getaddrinfo's EAI_* code e (negative in glibc) is CIO_EAI_BASE + e. */
#define CIO_EAI_BASE (-30100)
#define CIO_EAI(e) (CIO_EAI_BASE + (e))
/** The program's own error codes: CIO_EUSER(n) for n from 0 to
 * CIO_EUSER_COUNT - 1, that is CIO_EUSER_BASE down to CIO_EUSER_BASE -
 * CIO_EUSER_COUNT + 1. cio never returns them on its own; a task may
 * return one as its status and it travels like any error (await, gather,
 * the "never retrieved" report). cio_strerror names them "user error N",
 * or as cio_set_user_strerror's function says; CIO_EUSER_NUM gives n
 * back (-1 for a code outside the range). */
#define CIO_EUSER_BASE (-40000)
#define CIO_EUSER_COUNT 10000
#define CIO_EUSER(n) (CIO_EUSER_BASE - (int)(n))
#define CIO_EUSER_NUM(err)                                                     \
    ((err) <= CIO_EUSER_BASE && (err) > CIO_EUSER_BASE - CIO_EUSER_COUNT        \
         ? CIO_EUSER_BASE - (err)                                              \
         : -1)

/** Returns the name of an error code (0, a negative errno, CIO_E*): a
 * static string, never NULL ("unknown error" for codes it does not know).
 * A user code the program's function does not name gets "user error N",
 * written into a buffer of the calling thread's that the next
 * cio_strerror call in that thread may overwrite. */
CIO_API const char *cio_strerror(int err);

/** A name for user error n, or NULL (see cio_set_user_strerror). */
typedef const char *(*cio_user_strerror_fn)(int n);

/** Names the program's error codes: fn(n) (n as in CIO_EUSER(n)) returns
 * a string that stays valid for the program's life, or NULL for "user
 * error N". Called from any thread that calls cio_strerror, so it must be
 * thread-safe; set it once, before the threads start. NULL restores the
 * default. */
CIO_API void cio_set_user_strerror(cio_user_strerror_fn fn);

/* ------------------------------------------------------------------ loop
 * The event loop: a queue of ready callbacks, a heap of timers and a set
 * of watched file descriptors. A loop belongs to the thread that runs it;
 * only cio_call_soon_threadsafe() may be called from other threads.
 *
 * Ordering (asyncio's, kept exactly): ready callbacks run in FIFO order; a
 * callback scheduled while the ready queue runs waits for the next
 * iteration; stop() lets the current iteration finish. Timers with equal
 * deadlines run in the order they were scheduled (asyncio leaves this
 * undefined; cio defines it).
 */
typedef struct cio_loop cio_loop;
typedef void (*cio_callback)(void *arg);

typedef struct cio_loop_options {
    const char *backend; /**< "epoll", "poll", or NULL: $CIO_BACKEND, else epoll */
    int debug;           /**< 1 on, -1 off, 0: on when $CIO_DEBUG is set and not "0" */
    double slow_callback_duration; /**< debug: warn above this (s); 0 = 0.1 */
} cio_loop_options;

/** Creates a loop; opts may be NULL. *loop is the caller's until
 * cio_loop_free(). Returns 0, -ENOMEM, -EMFILE, -EINVAL (unknown backend). */
CIO_API int cio_loop_new(cio_loop **loop, const cio_loop_options *opts);

/** Closes the loop: drops pending callbacks, timers and watchers, reports
 * objects still alive. Returns 0 (also when already closed), -EBUSY when
 * running. The memory stays until cio_loop_free(). */
CIO_API int cio_loop_close(cio_loop *loop);

/** Closes (if needed) and frees the loop. NULL is a no-op. Must not be
 * called while the loop runs. It does not resume tasks still parked (use
 * cio_run, or cancel them and run the loop, to let them unwind): their
 * stacks go, and what their frames held (references, memory of the
 * program's) is never released; debug mode names the futures and tasks
 * left referenced (see cio_loop_set_debug). */
CIO_API void cio_loop_free(cio_loop *loop);

/** Runs until cio_loop_stop(). Returns 0, -EBUSY (already running, here or
 * in another thread: a loop is claimed atomically, so of two threads only
 * one runs it; or this thread runs another loop), -ESHUTDOWN (closed). */
CIO_API int cio_loop_run_forever(cio_loop *loop);

/** Runs one iteration, waiting at most `timeout` seconds for I/O or timers
 * (the duration rule: <= 0 not at all, CIO_NO_TIMEOUT as long as needed)
 * - for embedding cio in another loop. Returns the number of callbacks
 * run, -EINVAL (NaN), or as run_forever. */
CIO_API int cio_loop_run_once(cio_loop *loop, double timeout);

/** Asks the running loop to stop after the current iteration; called while
 * not running, the next run_forever runs one iteration and stops.
 * Returns 0 or -EINVAL (NULL). */
CIO_API int cio_loop_stop(cio_loop *loop);

CIO_API int cio_loop_is_running(const cio_loop *loop); /**< 1 or 0 */
CIO_API int cio_loop_is_closed(const cio_loop *loop);  /**< 1 or 0 */

/** The loop's monotonic clock in seconds, read at most once per iteration
 * (the first call in an iteration reads it, later ones return the same);
 * on a virtual clock (below), the virtual time. */
CIO_API double cio_loop_time(cio_loop *loop);

/** A virtual clock, for tests (Trio's MockClock with autojump): from this
 * call on, cio_loop_time() reads `start` and time moves only when the loop
 * has nothing to do. An iteration that would sleep (no ready callbacks, no
 * posts from other threads) instead polls the fds without waiting, so I/O
 * that is already there still arrives first, and if nothing came sets the
 * clock to the deadline it would have slept until: the earliest timer, or
 * run_once's timeout. A test of a 30 s timeout takes microseconds and runs
 * the same way every time; timers keep the order they have on the real
 * clock.
 *  - With no timer at all it blocks in the backend as usual: real I/O and
 *    other threads are then the only things that can happen.
 *  - While work handed to another thread is in flight (executor jobs, a
 *    process watcher thread) the loop waits for real, as long as the jump,
 *    before jumping: a worker quicker (in real time) than a timeout lands
 *    before it, one slower times out. cio_call_soon_threadsafe() from
 *    threads of your own is not known to the loop: the clock may jump past
 *    a deadline before their post arrives, so tests that race such threads
 *    against timeouts should not use the virtual clock.
 * Call it before scheduling timers (they keep the deadlines they have in
 * the old clock's terms), or pass cio_loop_time(loop) to keep them where
 * they are; it may be called while the loop runs (from cio_run's main
 * task). There is no way back to the real clock. Returns 0, -EINVAL (NULL,
 * start not finite, or earlier than the virtual clock already reads),
 * -ESHUTDOWN, -EPERM (debug mode, wrong thread). */
CIO_API int cio_loop_set_virtual_clock(cio_loop *loop, double start);

/** Moves the virtual clock forward by `seconds` (>= 0) at once; the timers
 * that became due go to the ready queue in deadline order, ahead of what
 * is scheduled after this call, and run in the loop's next iteration:
 * from a task, at its next suspension (cio_sleep(0) is enough). Returns 0,
 * -EINVAL (NULL, a bad `seconds`, no virtual clock), -ESHUTDOWN, -EPERM. */
CIO_API int cio_loop_advance(cio_loop *loop, double seconds);

/** Returns the loop running in this thread (borrowed), or NULL. */
CIO_API cio_loop *cio_get_running_loop(void);

/** Debug mode: warns about slow callbacks and catches calls from a thread
 * that does not own the loop (they then return -EPERM). It also reports,
 * through the exception handler, with the object's kind and a task's name:
 *  - a second cio_future_unref of a freed future or task, and a second
 *    cio_stream_free, cio_server_free, cio_executor_free, cio_queue_free
 *    (executors and queues are in debug mode when made while a debug loop
 *    runs, or with $CIO_DEBUG; they report to the running loop). Freed
 *    objects are kept, marked dead, in a quarantine (per loop, freed with
 *    it; the process's for objects that may outlive their loop), so the
 *    second call touches nothing else. Only the most recent frees are
 *    kept (1024 per loop, 256 for the process): an older double free is
 *    undefined behaviour, as it always is outside debug mode;
 *  - a second thread's run_forever / run_once (-EBUSY in any mode);
 *  - when cio_loop_free runs, each future and task the program created
 *    (cio_future_new, cio_create_task, cio_task_new: their macros record
 *    file and line) and still holds a reference on, with that site;
 *    futures cio made for its own objects are not listed;
 *  - a lock, event, condition, semaphore or barrier in a frame of a task
 *    that returns while other tasks wait on it: each waiter is named and
 *    returns -ESHUTDOWN at once (a woken one too, even if it was handed
 *    the lock), touching nothing of the object. Not seen: a primitive in a
 *    frame that returns while its task goes on, or in memory the program
 *    frees itself; outside debug mode these stay undefined behaviour.
 * Always, in any mode: dropping a running task's last reference (the
 * loop's) is reported and refused; cio_cfuture_result on the loop that
 * must complete it is -EDEADLK. set returns 0 or -EINVAL (NULL loop); get
 * returns 1 or 0 (0 for NULL). */
/** @{ */
CIO_API int cio_loop_set_debug(cio_loop *loop, int enabled);
CIO_API int cio_loop_get_debug(const cio_loop *loop);
/** @} */

/** A scheduled callback, returned by value: cancelling it after it ran (or
 * after it was cancelled) is a harmless no-op, while the loop lives. */
typedef struct cio_handle {
    void *slot;
    uint64_t id;
} cio_handle;

/** Schedules cb(arg) for the next iteration. *handle (may be NULL) can cancel
 * it. Returns 0, -EINVAL (NULL loop or cb), -ESHUTDOWN (closed), -ENOMEM,
 * -EPERM (debug mode, wrong thread). */
CIO_API int cio_call_soon(cio_loop *loop, cio_callback cb, void *arg,
                          cio_handle *handle);

/** Schedules cb(arg) in `delay` seconds, or at loop time `when`; by the
 * duration rule a delay <= 0 (a `when` already passed) runs in the next
 * iteration, with the timers due then, and CIO_NO_TIMEOUT never. Returns
 * as cio_call_soon, plus -EINVAL for a NaN delay or when. */
/** @{ */
CIO_API int cio_call_later(cio_loop *loop, double delay, cio_callback cb,
                           void *arg, cio_handle *handle);
CIO_API int cio_call_at(cio_loop *loop, double when, cio_callback cb,
                        void *arg, cio_handle *handle);
/** @} */

/** From any thread: schedules cb(arg) and wakes the loop. Returns 0,
 * -EINVAL, -ESHUTDOWN, -ENOMEM. */
CIO_API int cio_call_soon_threadsafe(cio_loop *loop, cio_callback cb,
                                     void *arg);

/** Cancels a scheduled callback. Returns 1 if it was pending and will not
 * run, 0 if it already ran or was cancelled. */
CIO_API int cio_handle_cancel(cio_handle handle);

/** asyncio's Handle.cancelled(): returns 1 if cio_handle_cancel cancelled
 * this scheduling, 0 while it is pending, once it ran (asyncio's cancel()
 * after the run marks it; cio's is then a no-op), or for a zeroed handle.
 * The handle's slot remembers its last cancellation only: once the slot
 * has served a later scheduling that was cancelled too, an older handle
 * reads 0. */
CIO_API int cio_handle_cancelled(cio_handle handle);

/** Watches fd (level-triggered): cb(arg) runs each iteration the fd is
 * readable / writable. One callback per fd and direction; adding again
 * replaces it. Returns 0, -EBADF (fd not open), -EINVAL, -ESHUTDOWN,
 * -ENOMEM, -EPERM (a regular file: epoll cannot watch it). */
/** @{ */
CIO_API int cio_add_reader(cio_loop *loop, int fd, cio_callback cb,
                           void *arg);
CIO_API int cio_add_writer(cio_loop *loop, int fd, cio_callback cb,
                           void *arg);
/** @} */

/** Stops watching. Returns 1 if a watcher was removed, 0 if none, or
 * -EINVAL. The fd is the caller's: remove watchers before closing it. */
/** @{ */
CIO_API int cio_remove_reader(cio_loop *loop, int fd);
CIO_API int cio_remove_writer(cio_loop *loop, int fd);
/** @} */

/** What an error the library cannot return concerned: asyncio's context
 * dict. All pointers are borrowed for the duration of the handler call. */
typedef struct cio_error_context {
    const char *message; /**< what happened, never NULL */
    int error;           /**< negative code, or 0 */
    const char *what;    /**< "task", "future", "handle", ... or NULL */
    const char *name;    /**< the object's name (a task's), or NULL */
    void *object;        /**< the object concerned, or NULL */
} cio_error_context;

typedef void (*cio_exception_handler)(cio_loop *loop,
                                      const cio_error_context *ctx,
                                      void *arg);

/** Installs handler (NULL restores the default, which prints to stderr).
 * Returns 0 or -EINVAL. */
CIO_API int cio_loop_set_exception_handler(cio_loop *loop,
                                           cio_exception_handler handler,
                                           void *arg);

/** Reports ctx through the loop's handler; library and user code use it for
 * errors they cannot return. Returns 0 or -EINVAL. */
CIO_API int cio_loop_call_exception_handler(cio_loop *loop,
                                            const cio_error_context *ctx);

/** The default handler: one line on stderr, "cio: <message>" and details. */
CIO_API void cio_loop_default_exception_handler(cio_loop *loop,
                                                const cio_error_context *ctx);

/* --------------------------------------------------------------- futures
 * A future is a result that is not there yet: a status (0 or a count on
 * success, a negative code on failure) and a void * value. Done-callbacks
 * run through call_soon, in registration order. Futures are reference
 * counted; the creator holds the first reference.
 *
 * A task is a future (cio_task is the same type): everything that takes a
 * future takes a task.
 */
typedef struct cio_future cio_future;
typedef struct cio_future cio_task;
typedef void (*cio_done_callback)(cio_future *fut, void *arg);

/** Creates a pending future on loop (NULL: the running loop). The caller
 * owns the one reference. Returns 0, -EINVAL (no loop), -ENOMEM. */
CIO_API int cio_future_new(cio_loop *loop, cio_future **fut);

/** Adds a reference (returns fut) / drops one (frees at zero; NULL ok).
 * One unref too many is a double free: debug mode reports it (see
 * cio_loop_set_debug). */
/** @{ */
CIO_API cio_future *cio_future_ref(cio_future *fut);
CIO_API void cio_future_unref(cio_future *fut);
/** @} */

/** cio_future_new, recording where the program created the future (file
 * and line: static strings, kept, not copied) for debug mode's report of
 * references still held when the loop is freed. The macro cio_future_new
 * calls it with the caller's __FILE__ and __LINE__; (cio_future_new)(...)
 * calls the plain function. Returns as cio_future_new. */
CIO_API int cio_future_new_at(cio_loop *loop, cio_future **fut,
                              const char *file, int line);

/** Completes the future with status 0 and value (a borrowed pointer the
 * future only carries). Returns 0, or -EINVAL when already done (asyncio's
 * InvalidStateError). */
CIO_API int cio_future_set_result(cio_future *fut, void *value);

/** Completes the future with error err (< 0, not -ECANCELED: use cancel).
 * Returns 0, or -EINVAL when already done (InvalidStateError) or err is
 * not an error. */
CIO_API int cio_future_set_error(cio_future *fut, int err);

/** Cancels the future (for a task: requests cancellation). Returns 1 if
 * it was pending, 0 if already done. */
CIO_API int cio_future_cancel(cio_future *fut);

CIO_API int cio_future_done(const cio_future *fut);      /**< 1 or 0 */
CIO_API int cio_future_cancelled(const cio_future *fut); /**< 1 or 0 */

/** The result: returns the status (>= 0) and sets *value (may be NULL), or
 * the error, -ECANCELED if cancelled, -EAGAIN if not done yet (asyncio's
 * InvalidStateError; nothing is marked retrieved then). Marks the error
 * retrieved. */
CIO_API int cio_future_result(cio_future *fut, void **value);

/** Adds cb(fut, arg), scheduled when the future completes (at once if it is
 * done). Returns 0, -EINVAL, -ENOMEM. */
CIO_API int cio_future_add_done_callback(cio_future *fut,
                                         cio_done_callback cb, void *arg);

/** Removes every registration of (cb, arg); returns how many, or -EINVAL
 * for a NULL fut. */
CIO_API int cio_future_remove_done_callback(cio_future *fut,
                                            cio_done_callback cb, void *arg);

/** Returns the loop fut belongs to (borrowed, valid while the loop lives),
 * or NULL for a NULL fut. */
CIO_API cio_loop *cio_future_get_loop(const cio_future *fut);

/* ----------------------------------------------------------------- tasks
 * A task runs fn(arg) on its own stack. Any suspension point (cio_await,
 * cio_sleep, ...) parks the task and lets the loop run others. fn's return
 * value is the task's status: >= 0 success, < 0 error, -ECANCELED makes
 * the task cancelled.
 *
 * Cancellation is level-triggered: once cio_task_cancel(t) is called, the
 * suspension point t is parked in, and every later one, returns
 * -ECANCELED until fn returns or calls cio_task_uncancel(). Cancelling a
 * task that awaits a future cancels that future too.
 *
 * The loop holds a reference to every task until it finishes. A task that
 * failed and whose error nobody retrieved is reported through the
 * exception handler when its last reference goes.
 */
typedef int (*cio_task_fn)(void *arg);

typedef struct cio_task_options {
    const char *name;  /**< copied; NULL: "Task-N" */
    size_t stack_size; /**< bytes of address space; 0: 256 KiB */
} cio_task_options;

/** Starts fn(arg) as a task on the running loop. *task (may be NULL) gets a
 * reference the caller must drop. Returns 0, -EINVAL (no running loop),
 * -ENOMEM. */
CIO_API int cio_create_task(cio_task_fn fn, void *arg, cio_task **task);

/** The extended form: a given loop (NULL: the running one) and options (may
 * be NULL). Returns 0, -EINVAL (no loop, NULL fn), -ESHUTDOWN (closed
 * loop), -EPERM (debug mode, wrong thread), -ENOMEM (memory, or no stack
 * of that size could be reserved). */
CIO_API int cio_task_new(cio_loop *loop, cio_task_fn fn, void *arg,
                         const cio_task_options *opts, cio_task **task);

/** cio_create_task and cio_task_new, recording the caller's file and line
 * as cio_future_new_at does; the macros of the same names call them.
 * Return as cio_create_task and cio_task_new. */
/** @{ */
CIO_API int cio_create_task_at(cio_task_fn fn, void *arg, cio_task **task,
                               const char *file, int line);
CIO_API int cio_task_new_at(cio_loop *loop, cio_task_fn fn, void *arg,
                            const cio_task_options *opts, cio_task **task,
                            const char *file, int line);
/** @} */

/* Creation sites for debug mode: the create calls record where the
 * program made each future and task (a pointer and an int, kept always,
 * read only by debug reports). Define CIO_NO_SITE_MACROS before including
 * cio.h to call the plain functions. */
#ifndef CIO_NO_SITE_MACROS
/* Variadic, so that an argument with commas of its own (a compound
 * literal's designators) passes through whole. */
#define cio_future_new(...) cio_future_new_at(__VA_ARGS__, __FILE__, __LINE__)
#define cio_create_task(...)                                                   \
    cio_create_task_at(__VA_ARGS__, __FILE__, __LINE__)
#define cio_task_new(...) cio_task_new_at(__VA_ARGS__, __FILE__, __LINE__)
#endif

/** Returns the task running in this thread (borrowed), or NULL. */
CIO_API cio_task *cio_current_task(void);

/** How many finished tasks' stacks the loop keeps warm for new tasks
 * (128 unless set): a stack given back beyond that many has its memory
 * returned to the kernel (its address space stays reserved, so reusing it
 * costs no system call, only fresh pages). Lowering it trims the pool at
 * once; 0 keeps none warm. Returns 0, -EINVAL (NULL), -ESHUTDOWN (closed
 * loop), -EPERM (debug mode, wrong thread), -ENOMEM. */
CIO_API int cio_loop_set_stack_pool_max(cio_loop *loop, size_t max);

/** Stores up to cap unfinished tasks of loop (NULL: running) in out
 * (borrowed until the caller next suspends); returns how many there are,
 * or -EINVAL (no loop). */
CIO_API int cio_all_tasks(cio_loop *loop, cio_task **out, size_t cap);

/** get returns the task's name (valid while the task lives; "Task-N" if
 * none was given), or NULL if task is not a task. set copies name and
 * returns 0, -EINVAL (not a task, NULL name), -ENOMEM. */
/** @{ */
CIO_API const char *cio_task_get_name(const cio_task *task);
CIO_API int cio_task_set_name(cio_task *task, const char *name);
/** @} */

/** Requests cancellation. Returns 1 if the task was not done, 0 if it was,
 * -EINVAL if not a task. */
CIO_API int cio_task_cancel(cio_task *task);

/** Returns how many cancellation requests are pending (asyncio's
 * cancelling()), or -EINVAL if task is not a task. */
CIO_API int cio_task_cancelling(const cio_task *task);

/** Withdraws one request; returns how many remain, or -EINVAL if task is
 * not a task. At zero, suspension points work again (for cleanup that must
 * await). */
CIO_API int cio_task_uncancel(cio_task *task);

/** Sets the current task's result value (a borrowed pointer carried as its
 * future's value). Returns 0, or CIO_ENOTASK outside a task. */
CIO_API int cio_task_set_value(void *value);

/** Suspends the current task until fut is done. Returns fut's status (value
 * in *value, which may be NULL), fut's error, -ECANCELED if this task is
 * cancelled (then fut is cancelled too), -ETIMEDOUT if an enclosing
 * timeout scope expired, -EINVAL (NULL), CIO_ENOTASK, -EDEADLK
 * (a task awaiting itself). */
CIO_API int cio_await(cio_future *fut, void **value);

/* ------------------------------------------------------------------ flow
 * Many tasks at once, asyncio's high-level API; every wait here is a
 * suspension point, so it is called from a task. gather awaits all its
 * futures and collects their results; wait and as_completed hand futures
 * back as they finish (all, the first, the first failure; or one at a
 * time) and cancel nothing. wait_for and timeout scopes put a deadline on
 * waiting; shield keeps a cancellation from reaching a future others still
 * need; a task group ties children to their parent task, so none outlives
 * the group and the first failure cancels the rest.
 */

/** asyncio.run: a new loop, fn(arg) as its main task until it finishes,
 * then cancels and finishes the tasks left, closes and frees the loop.
 * The main task is the loop's first, named "Task-1" as asyncio's is in a
 * fresh program, with a 256 KiB stack (cio_run_with chooses both).
 * In the main thread, with SIGINT at its default, the first Ctrl-C cancels
 * the main task (which may clean up) and a second one interrupts for real,
 * as Python 3.11's. Returns fn's status (-ECANCELED after a Ctrl-C), or
 * -EBUSY if this thread already runs a loop. */
CIO_API int cio_run(cio_task_fn fn, void *arg);

/** cio_run's choices; all zero is cio_run's own. */
typedef struct cio_run_options {
    cio_loop_options loop; /**< as cio_loop_new's (asyncio.run's debug=) */
    cio_task_options main; /**< the main task's name and stack_size */
} cio_run_options;

/** cio_run with options (opts may be NULL: cio_run). Returns as cio_run,
 * -EINVAL (NULL fn, a bad loop option), -ENOMEM (no stack of that size),
 * or as cio_loop_new / cio_task_new. */
CIO_API int cio_run_with(cio_task_fn fn, void *arg,
                         const cio_run_options *opts);

/** cio_run_loops' choices; all zero: a loop per CPU, no signals taken. */
typedef struct cio_loops_options {
    int nloops;          /**< 0: one per CPU this process may run on */
    /** 1: loop 0 (the calling thread, which must be the main thread)
     * takes SIGTERM and SIGINT: the first stops the group
     * (cio_loops_stop), a second one acts as if cio had not handled it.
     * The other loops' threads start with both blocked. */
    int stop_signals;
    cio_run_options run; /**< each loop's, as cio_run_with's */
} cio_loops_options;

/** Every core in use: runs fn(arg) as the main task of nloops loops, each
 * in a thread of its own (the calling thread runs loop 0), as cio_run_with
 * would, and returns once every one has returned. A server listens on each
 * loop with reuse_port (SO_REUSEPORT: the kernel spreads connections over
 * the listeners), then waits in cio_loops_wait_stop and drains. The first
 * main task to fail (in time), or a loop that cannot start, stops the
 * others. Nothing is shared between the loops but what fn shares itself.
 * Returns 0, the first failure, -EBUSY (this thread runs a loop), -EINVAL
 * (NULL fn, nloops < 0), -ENOMEM, -EAGAIN (no thread), -EPERM
 * (stop_signals off the main thread). There is no asyncio counterpart:
 * Python runs one loop per process. */
CIO_API int cio_run_loops(cio_task_fn fn, void *arg,
                          const cio_loops_options *opts);
/** Returns which loop of its cio_run_loops group the running loop is,
 * 0 .. count - 1, or -1 outside any. */
CIO_API int cio_loops_index(void);
/** Returns the number of loops in the running loop's group, 0 outside. */
CIO_API int cio_loops_count(void);
/** From a task on a group's loop: waits until the group is told to stop
 * (at once if it was). Returns 0, -ECANCELED, -ETIMEDOUT (a scope),
 * CIO_ENOTASK, -EINVAL (the running loop is in no group). */
CIO_API int cio_loops_wait_stop(void);
/** From a group's loop: tells every loop of the group to stop (each one's
 * cio_loops_wait_stop returns); idempotent. Returns 0, or -EINVAL (the
 * running loop is in no group). */
CIO_API int cio_loops_stop(void);

/** Runs loop until fut is done. Returns fut's status or error, -EAGAIN if
 * the loop was stopped before fut was done, -EINVAL (NULL, or fut of
 * another loop), or as cio_loop_run_forever (-EBUSY, -ESHUTDOWN). */
CIO_API int cio_loop_run_until_complete(cio_loop *loop, cio_future *fut);

/** Suspends the current task for `seconds` (the duration rule: <= 0
 * yields once, as asyncio.sleep(0); CIO_NO_TIMEOUT until cancelled).
 * Returns 0, -ECANCELED, -ETIMEDOUT (scope), -EINVAL (NaN), CIO_ENOTASK. */
CIO_API int cio_sleep(double seconds);

/** One future's outcome, as gather and friends report it. */
typedef struct cio_result {
    int status;  /**< >= 0 or an error */
    void *value; /**< borrowed */
} cio_result;

/** Waits for all n futures; results[i] is future i's (may be NULL). Returns
 * 0 when all succeeded, else the first error to happen (the others keep
 * running, as in asyncio). With return_exceptions, waits for all and
 * returns 0, each slot holding its own status. If the calling task is
 * cancelled, every future is cancelled and -ECANCELED returned. */
CIO_API int cio_gather(cio_future *const *futs, size_t n,
                       int return_exceptions, cio_result *results);

/** One function call for cio_gather_calls: fn(arg) runs as a task. */
typedef struct cio_call {
    cio_task_fn fn;
    void *arg; /* borrowed: it must stay valid until gather_calls returns */
} cio_call;

/** asyncio's gather(f(a), g(b)) with nothing to unref: runs each call as
 * a task (in a task group of its own) and waits; results[i] (may be NULL)
 * gets call i's status and value (set with cio_task_set_value). Without
 * return_exceptions, the first call to fail cancels the others (they are
 * waited for) and its error is returned. With return_exceptions, every
 * call runs to its end and 0 is returned, each slot holding its own
 * status. If the calling task is cancelled (or its timeout scope
 * expires), every call is cancelled and waited for, and -ECANCELED
 * (-ETIMEDOUT) returned. A call that could not start (-ENOMEM, a NULL fn:
 * -EINVAL) cancels the ones started and that error is returned; the calls
 * after it never ran (their slots say -ECANCELED).
 * Unlike asyncio.gather, nothing outlives the call: the other calls are
 * cancelled, not left running, when one fails, since their arguments and
 * results are the caller's. Returns 0, an error as above, -EINVAL (NULL
 * calls with n > 0), CIO_ENOTASK, -ENOMEM. */
CIO_API int cio_gather_calls(const cio_call *calls, size_t n,
                             int return_exceptions, cio_result *results);

typedef enum cio_wait_mode {
    CIO_ALL_COMPLETED = 0,
    CIO_FIRST_COMPLETED,
    CIO_FIRST_EXCEPTION
} cio_wait_mode;

/** Waits until `mode` holds or `timeout` passes (the duration rule: <= 0
 * returns at once what is done by then, CIO_NO_TIMEOUT none); the futures
 * are not cancelled on timeout. done and pending (each room for n, may be NULL)
 * receive the two sets in argument order; *ndone / *npending their sizes.
 * Returns 0 (also on timeout), -ECANCELED, -ETIMEDOUT (an enclosing scope
 * expired), -EINVAL (n == 0, a NULL future or one of another loop, bad
 * mode, NaN timeout), CIO_ENOTASK, -EDEADLK (the calling task among
 * them), -ENOMEM. */
CIO_API int cio_wait(cio_future *const *futs, size_t n, cio_wait_mode mode,
                     double timeout, cio_future **done, size_t *ndone,
                     cio_future **pending, size_t *npending);

/** Awaits fut for at most timeout seconds (the duration rule;
 * CIO_NO_TIMEOUT: as cio_await). On timeout, cancels fut, waits for it to
 * finish and returns -ETIMEDOUT (or the result fut still produced). With
 * timeout <= 0, as asyncio: a fut already done gives its outcome, one not
 * done is cancelled at once (a task that has not started never runs).
 * Otherwise returns as cio_await; -EINVAL for a NaN timeout. */
CIO_API int cio_wait_for(cio_future *fut, double timeout, void **value);

/** asyncio.as_completed: an iterator yielding futures as they finish. */
typedef struct cio_as_completed cio_as_completed;

/** Starts iterating n futures with a timeout on the whole (the duration
 * rule: <= 0 yields those already done, then -ETIMEDOUT; CIO_NO_TIMEOUT
 * none); *it is the caller's until cio_as_completed_free, and futs must
 * outlive it. Returns 0, -EINVAL (NULL it, NaN timeout, a NULL future or
 * one of another loop), CIO_ENOTASK, -EDEADLK (the calling task among them), -ENOMEM. */
CIO_API int cio_as_completed_new(cio_future *const *futs, size_t n,
                                 double timeout, cio_as_completed **it);
/** Suspends for the next finished future (*fut borrowed from the caller's
 * array). Returns 1 with *fut set, 0 when all were returned, -ETIMEDOUT,
 * -ECANCELED, -EINVAL (NULL), CIO_ENOTASK. free: NULL is a no-op. */
/** @{ */
CIO_API int cio_as_completed_next(cio_as_completed *it, cio_future **fut);
CIO_API void cio_as_completed_free(cio_as_completed *it);
/** @} */

/** asyncio.shield: *out (the caller's reference) completes as fut does, but
 * cancelling *out does not cancel fut. Returns 0, -EINVAL, -ENOMEM. */
CIO_API int cio_shield(cio_future *fut, cio_future **out);

/** A timeout scope, in the caller's memory (usually the task's stack).
 * Inside it, once the deadline passes, every suspension point returns
 * -ETIMEDOUT; cio_timeout_end() returns -ETIMEDOUT if this scope expired.
 * Scopes nest and must end in reverse order of their start.
 *
 * A scope never ended (an early `return` past it) is safe: the task keeps
 * the scope's state in its own memory and cio never writes into the
 * scope's, so nothing is corrupted when its frame is gone. Its deadline
 * still applies until the task next waits from a shallower frame, an
 * enclosing scope ends, or the task returns; then it is dropped (debug
 * mode reports it). Better: CIO_TIMEOUT_SCOPE ends it on every path. */
typedef struct cio_timeout_scope {
    void *priv[16]; /**< opaque: the scope's name, no allocation */
} cio_timeout_scope;

/** GCC and Clang: declares a scope that ends itself when the block that
 * declares it is left by any path (return, break, goto), as Python's
 * `async with asyncio.timeout()`. Open it with cio_timeout as usual; an
 * explicit cio_timeout_end still reads its result:
 *     CIO_TIMEOUT_SCOPE(s);
 *     if ((err = cio_timeout(&s, 2.0)))
 *         return err;
 *     if ((err = cio_open_connection(host, port, NULL, &st)))
 *         return err;                    // s ends here by itself
 *     ...
 *     return cio_timeout_end(&s); */
#if defined(__GNUC__)
#define CIO_TIMEOUT_SCOPE(name)                                                \
    cio_timeout_scope name __attribute__((cleanup(cio_timeout_leave))) = {{0}}
#endif

/** Opens a scope with a deadline `delay` seconds from now or at loop time
 * `when`, by the duration rule: a deadline already passed expires the
 * scope soon (in the next iteration, as asyncio's: its next suspension
 * point returns -ETIMEDOUT), CIO_NO_TIMEOUT is none. Returns 0, -EINVAL
 * (NULL scope, NaN), CIO_ENOTASK, -ENOMEM. */
/** @{ */
CIO_API int cio_timeout(cio_timeout_scope *scope, double delay);
CIO_API int cio_timeout_at(cio_timeout_scope *scope, double when);
/** @} */
/** Moves the deadline (the duration rule: CIO_NO_TIMEOUT for none, one
 * already passed expires it soon). Returns 0, -EINVAL (expired, ended or
 * never opened, NaN), -ENOMEM. */
CIO_API int cio_timeout_reschedule(cio_timeout_scope *scope, double when);
/** Returns the deadline in loop time, INFINITY for none, NaN for a scope
 * never opened. */
CIO_API double cio_timeout_when(const cio_timeout_scope *scope);
CIO_API int cio_timeout_expired(const cio_timeout_scope *scope); /**< 1 or 0 */
/** Closes the scope. Returns 0, -ETIMEDOUT if it expired, -EINVAL if it is
 * not the calling task's innermost open scope. */
CIO_API int cio_timeout_end(cio_timeout_scope *scope);
/** Ends the scope if it is still open (with any scope opened inside it and
 * left open), ignoring its result; a scope never opened (zeroed, as
 * CIO_TIMEOUT_SCOPE declares it) or already ended is left alone. No
 * return value: CIO_TIMEOUT_SCOPE's cleanup. */
CIO_API void cio_timeout_leave(cio_timeout_scope *scope);

/** asyncio.TaskGroup: tasks spawned into a group are joined together; the
 * first child to fail cancels the others (and the parent task, until it
 * joins). Create it, spawn, join, free: all from one parent task.
 *
 * What asyncio's `async with TaskGroup()` does, and cio's forms of it:
 *  - The body raises: children cancelled, waited for, the exception
 *    raised (in an ExceptionGroup). cio: cio_task_group_abort(g, err),
 *    then join returns err.
 *  - A child fails: the others and the parent are cancelled; the exit
 *    raises every child's error. cio: join returns the first; all of them
 *    are readable, in order, with cio_task_group_error.
 *  - The parent is cancelled: children cancelled, waited for,
 *    CancelledError raised. cio: join returns -ECANCELED.
 *  - `return` or `break` out of the body: the exit waits for the children
 *    (it does not cancel them). cio: CIO_TASK_GROUP_SCOPE joins when the
 *    block is left without join; what join would have returned has
 *    nowhere to go there, so each child's error is reported through the
 *    loop's exception handler. Call join yourself to read the result, and
 *    abort before an early error return to cancel the children.
 * Kept apart from asyncio: the group's own error is join's result even
 * when children failed too (asyncio raises them together; C returns one
 * int); BaseException (KeyboardInterrupt, SystemExit) has no C
 * counterpart. */
typedef struct cio_task_group cio_task_group;

/** Creates a group whose parent is the calling task; *group is the caller's
 * until cio_task_group_free. Returns 0, -EINVAL (NULL group), CIO_ENOTASK,
 * -ENOMEM. */
CIO_API int cio_task_group_new(cio_task_group **group);
/** Starts fn(arg) in the group; *task (may be NULL) is borrowed until the
 * group is freed. Returns 0, -EINVAL (NULL group or fn), -ESHUTDOWN
 * (joined or aborted), -ENOMEM, or as cio_task_new. */
CIO_API int cio_task_group_spawn(cio_task_group *group, cio_task_fn fn,
                                 void *arg, const cio_task_options *opts,
                                 cio_task **task);
/** cio_task_group_spawn recording the caller's file and line, as
 * cio_task_new_at does (the macro of the same name calls it, unless
 * CIO_NO_SITE_MACROS). Returns as cio_task_group_spawn. */
CIO_API int cio_task_group_spawn_at(cio_task_group *group, cio_task_fn fn,
                                    void *arg, const cio_task_options *opts,
                                    cio_task **task, const char *file,
                                    int line);
#ifndef CIO_NO_SITE_MACROS
#define cio_task_group_spawn(...)                                              \
    cio_task_group_spawn_at(__VA_ARGS__, __FILE__, __LINE__)
#endif
/** Fails the group with its own error err (< 0), as an exception raised
 * in asyncio's `async with` body: the children are cancelled, no more can
 * be spawned, and join (after waiting for them) returns err. The first
 * such error is kept. -ECANCELED is no error: as a CancelledError raised
 * in the body, it cancels the children and join returns -ECANCELED unless
 * a child failed. Any task or callback may call it; when it is not the
 * parent, the parent is cancelled too until it joins (as by a failing
 * child). Returns err, so `return cio_task_group_abort(g, err);` reads as
 * a raise; -EINVAL (NULL, err >= 0, already joined). */
CIO_API int cio_task_group_abort(cio_task_group *group, int err);
/** Waits for every child. Returns the group's own error (abort), else the
 * first child's error, else -ECANCELED if the parent was cancelled from
 * outside (-ETIMEDOUT: its scope expired) or aborted with -ECANCELED,
 * else 0; -EINVAL (NULL, not the parent, already joined). */
CIO_API int cio_task_group_join(cio_task_group *group);
/** Children, in spawn order: each one's status stays readable, with
 * nothing to unref (cio_future_result(cio_task_group_task(g, i), &v)).
 * size returns how many were spawned (0 for NULL); task returns child i
 * (borrowed until the group is freed), NULL if i is out of range. */
/** @{ */
CIO_API size_t cio_task_group_size(const cio_task_group *group);
CIO_API cio_task *cio_task_group_task(const cio_task_group *group, size_t i);
/** @} */
/** asyncio's ExceptionGroup: the group's errors in the order they
 * happened, each child that failed (not by cancellation) as it finished,
 * then the group's own error from cio_task_group_abort last (asyncio adds
 * the body's exception at exit). error_count returns how many (0 for
 * NULL); error returns error i and sets *child (may be NULL) to the child
 * (borrowed until the group is freed; NULL for the group's own), or
 * returns 0 if i is out of range. */
/** @{ */
CIO_API size_t cio_task_group_error_count(const cio_task_group *group);
CIO_API int cio_task_group_error(const cio_task_group *group, size_t i,
                                 cio_task **child);
/** @} */
/** Frees the group (joining first if the parent did not). */
CIO_API void cio_task_group_free(cio_task_group *group);

/** GCC and Clang: a group pointer that is joined (if the parent did not)
 * and freed when the block that declares it is left by any path, as
 * `async with asyncio.TaskGroup() as g`. Create it with
 * cio_task_group_new as usual (its error is the caller's to return); do
 * not free it yourself:
 *     CIO_TASK_GROUP_SCOPE(g);
 *     if ((err = cio_task_group_new(&g)))
 *         return err;
 *     if ((err = cio_task_group_spawn(g, fetch, url, NULL, NULL)))
 *         return cio_task_group_abort(g, err); // children cancelled
 *     ...
 *     return cio_task_group_join(g);           // freed on the way out */
#if defined(__GNUC__)
#define CIO_TASK_GROUP_SCOPE(name)                                             \
    cio_task_group *name __attribute__((cleanup(cio_task_group_leave))) = NULL
#endif
/** CIO_TASK_GROUP_SCOPE's cleanup: joins *group unless it was joined (each
 * child's error is then reported through the exception handler, as
 * nobody can read it), frees it and sets *group to NULL. NULL *group is a
 * no-op. */
CIO_API void cio_task_group_leave(cio_task_group **group);

/* -------------------------------------------------------------- threads
 * Blocking code runs in other threads; results come back to the loop.
 * A cio_cfuture is asyncio's concurrent.futures.Future: a result any
 * thread can wait for. An executor is a pool of worker threads, started
 * lazily up to its maximum; idle workers exit after a few seconds.
 */
typedef struct cio_cfuture cio_cfuture;
typedef struct cio_executor cio_executor;
/** Work for a thread: returns a status (>= 0) or an error (< 0). */
typedef int (*cio_work_fn)(void *arg);

/** Waits up to timeout seconds for the result (the duration rule: <= 0
 * does not wait, CIO_NO_TIMEOUT as long as needed), from any thread but a
 * loop's own (it would block the loop). Returns the status, the error,
 * -ECANCELED, -ETIMEDOUT (still pending), -EINVAL (NULL, NaN), or -EDEADLK
 * at once when fut is pending and only the loop this thread is running
 * could complete it (cio_run_coroutine_threadsafe's on this loop). */
CIO_API int cio_cfuture_result(cio_cfuture *fut, double timeout);
/** Cancels: work not started never runs; a coroutine's task is cancelled.
 * Returns 1 if it was pending, 0 if it was done or already running. */
CIO_API int cio_cfuture_cancel(cio_cfuture *fut);
CIO_API int cio_cfuture_done(cio_cfuture *fut);      /**< 1 or 0 */
CIO_API int cio_cfuture_cancelled(cio_cfuture *fut); /**< 1 or 0 */
/** Drops the caller's reference (NULL ok); any thread. */
CIO_API void cio_cfuture_unref(cio_cfuture *fut);

/** Creates a thread pool of at most max_workers threads (<= 0: asyncio's
 * min(32, CPUs + 4)). *ex is the caller's until cio_executor_free().
 * Returns 0, -EINVAL, -ENOMEM. */
CIO_API int cio_executor_new(cio_executor **ex, int max_workers);

/** Runs fn(arg) in a worker; *fut (may be NULL) gets a reference the
 * caller must drop. Any thread. Returns 0, -ESHUTDOWN, -ENOMEM, -EAGAIN
 * (no thread could be started). */
CIO_API int cio_executor_submit(cio_executor *ex, cio_work_fn fn, void *arg,
                                cio_cfuture **fut);

/** Stops accepting work. cancel_futures: queued work is cancelled, not run.
 * wait: returns once every worker has finished. Returns 0 or -EINVAL. */
CIO_API int cio_executor_shutdown(cio_executor *ex, int wait,
                                  int cancel_futures);

/** Shuts down (waiting) and frees. NULL is a no-op. */
CIO_API void cio_executor_free(cio_executor *ex);

/** Makes ex the loop's default executor; the loop owns it from then on and
 * shuts it down when it closes (a previous default is shut down, waiting,
 * and freed). Returns 0, -EINVAL, -ESHUTDOWN. */
CIO_API int cio_loop_set_default_executor(cio_loop *loop, cio_executor *ex);

/** asyncio's loop.run_in_executor: runs fn(arg) in ex (NULL: the loop's
 * default executor, created on first use). *fut (the caller's reference)
 * completes on the loop's thread with fn's status. Cancelling *fut does
 * not stop a running thread: its result is then dropped. Loop thread only.
 * Returns 0, -EINVAL, -ESHUTDOWN, -ENOMEM, -EAGAIN. */
CIO_API int cio_run_in_executor(cio_loop *loop, cio_executor *ex,
                                cio_work_fn fn, void *arg, cio_future **fut);

/** asyncio.to_thread: from a task, runs fn(arg) in the default executor
 * and awaits it. Returns fn's status, or as cio_await. */
CIO_API int cio_to_thread(cio_work_fn fn, void *arg);

/** From any other thread: starts fn(arg) as a task on loop (run by another
 * thread). *fut (the caller's reference) completes with the task's status;
 * cancelling it cancels the task. Returns 0, -EINVAL, -ESHUTDOWN, -ENOMEM. */
CIO_API int cio_run_coroutine_threadsafe(cio_loop *loop, cio_task_fn fn,
                                         void *arg, cio_cfuture **fut);

/* ------------------------------------------------------------------ sync
 * asyncio's synchronization primitives, for the tasks of one loop (not for
 * threads). Every call that may wait is a suspension point like any other:
 * a task that is cancelled, or whose timeout scope has expired, gets
 * -ECANCELED / -ETIMEDOUT from it at once or while it waits, and outside a
 * task it returns CIO_ENOTASK. Waiters are served in FIFO order.
 *
 * Nothing is lost to cancellation. A release hands the lock (a unit, a
 * notification) straight to the first waiter; if that waiter is cancelled
 * before it runs, it passes what it was handed on to the next waiter and
 * returns -ECANCELED. So no waiter starves and no lock stays held by
 * nobody, however wait, cancel and timeouts interleave.
 *
 * The primitives live in the caller's memory (a struct member, a static,
 * a task's stack): that is where they are wanted, and it makes them free
 * of allocation, so nothing can fail and nothing needs freeing. The types
 * are opaque blobs. Lock, event and condition start from their _INIT
 * initialiser (all zero) or _init; semaphore from CIO_SEMAPHORE_INIT(n)
 * or _init; barrier from _init. There
 * is no _fini: the memory must stay valid while a task waits on it, and is
 * plain memory again once none does. (Debug mode catches one in a task's
 * frame that returns with waiters: they get -ESHUTDOWN; see
 * cio_loop_set_debug.) A NULL object gets -EINVAL (0 from
 * the 1-or-0 queries).
 */
typedef struct cio_lock {
    void *priv[4]; /**< opaque */
} cio_lock;
#define CIO_LOCK_INIT {{0}}

/** Initialises an unlocked lock in the caller's memory. Returns 0. */
CIO_API int cio_lock_init(cio_lock *lock);
/** Waits until the lock is free and takes it. Returns 0, or -ECANCELED /
 * -ETIMEDOUT without it. A release hands the lock straight to the first
 * waiter, so locked() stays 1 and newcomers queue behind (asyncio's
 * fairness: they also queue behind a woken waiter). */
CIO_API int cio_lock_acquire(cio_lock *lock);
/** Releases the lock; any task or callback may (a lock has no owner).
 * Returns 0, or -EINVAL if it was not locked (asyncio's RuntimeError). */
CIO_API int cio_lock_release(cio_lock *lock);
CIO_API int cio_lock_locked(const cio_lock *lock); /**< 1 or 0 */

/** GCC and Clang: `async with lock`. Declares `cio_lock *name`, NULL
 * until cio_lock_enter takes the lock; whatever it holds is released
 * when the block is left by any path (return, break, goto). The acquire's
 * error is enter's, the caller's to return:
 *     CIO_LOCK_SCOPE(held);
 *     if ((err = cio_lock_enter(&held, &lock)))
 *         return err;                   // -ECANCELED: nothing held
 *     if ((err = update(state)))
 *         return err;                   // released here
 *     ...
 * Inside the block, release early with cio_lock_leave(&held), never
 * cio_lock_release (the cleanup would release it a second time). The
 * same shape serves a semaphore and a condition's lock below. */
#if defined(__GNUC__)
#define CIO_LOCK_SCOPE(name)                                                   \
    cio_lock *name __attribute__((cleanup(cio_lock_leave))) = NULL
#endif
/** Acquires lock (as cio_lock_acquire) and on success sets *held to it.
 * Returns 0, -ECANCELED / -ETIMEDOUT (*held stays NULL), -EINVAL (NULL,
 * or *held already holds something). */
CIO_API int cio_lock_enter(cio_lock **held, cio_lock *lock);
/** Releases the lock in *held, if any, and sets *held to NULL (the scoped
 * form's cleanup; callable early). */
CIO_API void cio_lock_leave(cio_lock **held);

/** An event: a flag tasks can wait for. */
typedef struct cio_event {
    void *priv[4]; /**< opaque */
} cio_event;
#define CIO_EVENT_INIT {{0}}

/** Initialises a cleared event in the caller's memory. Returns 0. */
CIO_API int cio_event_init(cio_event *ev);
/** Sets the flag and wakes every waiter. Returns 0. */
CIO_API int cio_event_set(cio_event *ev);
/** Clears the flag; waiters already woken still return 0. Returns 0. */
CIO_API int cio_event_clear(cio_event *ev);
CIO_API int cio_event_is_set(const cio_event *ev); /**< 1 or 0 */
/** Waits until the flag is set (returns at once if it is). Returns 0,
 * -ECANCELED, -ETIMEDOUT. */
CIO_API int cio_event_wait(cio_event *ev);

/** A condition variable: a lock and a queue of tasks waiting for a notify.
 * Several conditions may share one lock. */
typedef struct cio_condition {
    void *priv[8]; /**< opaque */
} cio_condition;
#define CIO_CONDITION_INIT {{0}} /**< with a lock of its own */

/** Initialises a condition on lock (the caller's; it must outlive the
 * condition), or on a lock of its own if lock is NULL. Returns 0. */
CIO_API int cio_condition_init(cio_condition *cond, cio_lock *lock);
/** The condition's lock: returns as cio_lock_acquire / _release / _locked
 * (-EINVAL for a NULL cond; locked: 1 or 0). */
/** @{ */
CIO_API int cio_condition_acquire(cio_condition *cond);
CIO_API int cio_condition_release(cio_condition *cond);
CIO_API int cio_condition_locked(const cio_condition *cond);
/** @} */

/** GCC and Clang: `async with cond`, the condition's lock held for the
 * block, as CIO_LOCK_SCOPE (wait and notify inside it as usual: wait
 * always returns with the lock held):
 *     CIO_CONDITION_SCOPE(held);
 *     if ((err = cio_condition_enter(&held, &cond)))
 *         return err;
 *     if ((err = cio_condition_wait_for(&cond, ready, q)))
 *         return err;                   // released here */
#if defined(__GNUC__)
#define CIO_CONDITION_SCOPE(name)                                              \
    cio_condition *name __attribute__((cleanup(cio_condition_leave))) = NULL
#endif
/** Acquires the condition's lock and on success sets *held to cond.
 * Returns as cio_lock_enter. */
CIO_API int cio_condition_enter(cio_condition **held, cio_condition *cond);
/** Releases the lock of the condition in *held, if any; *held = NULL. */
CIO_API void cio_condition_leave(cio_condition **held);
/** Releases the lock, waits to be notified, and takes the lock again before
 * returning, even when cancelled or timed out (as asyncio: the caller
 * always holds the lock afterwards). Returns 0, -ECANCELED / -ETIMEDOUT
 * (lock held; a notification it had received goes to the next waiter), or
 * -EPERM if the lock is not locked (asyncio's RuntimeError; it cannot tell
 * by whom: as asyncio, cio only checks that it is locked), CIO_ENOTASK. */
CIO_API int cio_condition_wait(cio_condition *cond);
/** A predicate for wait_for: non-zero when the awaited state holds. */
typedef int (*cio_predicate)(void *arg);
/** Waits until pred(arg) is true, calling it (lock held) first and after
 * every wake-up. Returns 0 (lock held), or as cio_condition_wait. */
CIO_API int cio_condition_wait_for(cio_condition *cond, cio_predicate pred,
                                   void *arg);
/** Wakes up to n waiters, oldest first; they return once they get the lock
 * back, so release it. Returns how many, or -EPERM if the lock is not
 * locked (asyncio's RuntimeError; as there, by whom is not checked). */
CIO_API int cio_condition_notify(cio_condition *cond, int n);
/** Wakes every waiter. Returns how many, or -EPERM if the lock is not
 * locked (asyncio's RuntimeError). */
CIO_API int cio_condition_notify_all(cio_condition *cond);

/** A semaphore: a counter of units; acquire takes one, release gives one.
 * A zeroed one has 0 units (asyncio's Semaphore(0)); asyncio's default of
 * 1 is CIO_SEMAPHORE_INIT(1). */
typedef struct cio_semaphore {
    void *priv[4]; /**< opaque */
} cio_semaphore;
/** Static initialisers, as cio_semaphore_init(sem, n) and
 * cio_bounded_semaphore_init(sem, n) (n an integer constant from 0
 * to INT_MAX): `static cio_semaphore slots = CIO_SEMAPHORE_INIT(4);` */
#define CIO_SEMAPHORE_INIT(n) {{0, 0, (void *)(intptr_t)(n), 0}}
#define CIO_BOUNDED_SEMAPHORE_INIT(n)                                          \
    {{0, 0, (void *)(intptr_t)(n), (void *)((intptr_t)(n) + 1)}}

/** Initialises a semaphore with `value` units (>= 0). Returns 0, -EINVAL. */
CIO_API int cio_semaphore_init(cio_semaphore *sem, int value);
/** The same, bounded: releasing it above `value` units is an error.
 * Returns 0, -EINVAL. */
CIO_API int cio_bounded_semaphore_init(cio_semaphore *sem, int value);
/** Takes a unit, waiting while there is none. Returns 0, or -ECANCELED /
 * -ETIMEDOUT without one. */
CIO_API int cio_semaphore_acquire(cio_semaphore *sem);
/** Gives a unit back (straight to the first waiter, if any). Returns 0,
 * -EINVAL (a bounded semaphore released too often: asyncio's ValueError),
 * -EOVERFLOW (INT_MAX units). */
CIO_API int cio_semaphore_release(cio_semaphore *sem);
CIO_API int cio_semaphore_locked(const cio_semaphore *sem); /**< 1: would wait */

/** GCC and Clang: `async with sem`, one unit held for the block, as
 * CIO_LOCK_SCOPE:
 *     CIO_SEMAPHORE_SCOPE(unit);
 *     if ((err = cio_semaphore_enter(&unit, &sem)))
 *         return err; */
#if defined(__GNUC__)
#define CIO_SEMAPHORE_SCOPE(name)                                              \
    cio_semaphore *name __attribute__((cleanup(cio_semaphore_leave))) = NULL
#endif
/** Takes a unit (as cio_semaphore_acquire) and on success sets *held to
 * sem. Returns as cio_lock_enter. */
CIO_API int cio_semaphore_enter(cio_semaphore **held, cio_semaphore *sem);
/** Gives back the unit in *held, if any; *held = NULL. */
CIO_API void cio_semaphore_leave(cio_semaphore **held);

/** A barrier: `parties` tasks wait until all of them have arrived. */
typedef struct cio_barrier {
    void *priv[4]; /**< opaque */
} cio_barrier;

/** Initialises a barrier for `parties` (>= 1) tasks. Returns 0, -EINVAL. */
CIO_API int cio_barrier_init(cio_barrier *b, int parties);
/** Waits until `parties` tasks wait, then all go on; while they leave,
 * newcomers wait for the next round. Returns this task's arrival index
 * (0 .. parties-1), CIO_EBROKEN (aborted or reset while waiting, or
 * broken), -ECANCELED / -ETIMEDOUT (it leaves; as asyncio, the barrier is
 * not broken). */
CIO_API int cio_barrier_wait(cio_barrier *b);
/** Back to empty; tasks waiting get CIO_EBROKEN. Does not wait (asyncio's
 * is a coroutine only to take an internal lock). Returns 0. */
CIO_API int cio_barrier_reset(cio_barrier *b);
/** Breaks the barrier: waiters, and all later ones until a reset, get
 * CIO_EBROKEN. Does not wait. Returns 0. */
CIO_API int cio_barrier_abort(cio_barrier *b);
CIO_API int cio_barrier_parties(const cio_barrier *b);   /**< as initialised */
CIO_API int cio_barrier_n_waiting(const cio_barrier *b); /**< while filling */
CIO_API int cio_barrier_broken(const cio_barrier *b);    /**< 1 or 0 */

/* ----------------------------------------------------------------- queue
 * asyncio's queues, for the tasks of one loop: FIFO, priority (smallest
 * first, by a comparison function) and LIFO. Items are fixed-size values,
 * copied in and out; the size is chosen at creation. A queue of pointers
 * is a queue of sizeof(void *) items; what they point to stays the
 * caller's. A queue is library memory (_new / _free): a bounded one
 * allocates its maxsize * item_size bytes at creation and never again, an
 * unbounded one (maxsize 0) grows as needed.
 *
 * Waiting getters and putters are served in FIFO order. An item put while
 * getters wait is promised to the first of them, and a slot freed while
 * putters wait to the first of them: newcomers never take what a woken
 * waiter was promised. A waiter cancelled (or timed out) before it ran
 * passes its promise on to the next one: no item is lost, a putter that
 * returns an error inserted nothing, nobody starves. qsize() does not count
 * items promised to woken getters and full() counts slots promised to
 * woken putters, so empty() / full() say exactly whether get_nowait /
 * put_nowait would succeed.
 */
typedef struct cio_queue cio_queue;
/** Orders a priority queue: < 0 if a comes out before b. Items comparing
 * equal come out in insertion order (asyncio's heapq promises none). It
 * must not call into the queue. */
typedef int (*cio_queue_cmp)(const void *a, const void *b, void *arg);

/** Creates a FIFO queue of item_size-byte items, at most maxsize of them
 * (0: unbounded). *q is the caller's until cio_queue_free(). Returns 0,
 * -EINVAL (item_size 0), -ENOMEM. */
CIO_API int cio_queue_new(cio_queue **q, size_t item_size, size_t maxsize);
/** The same, smallest first by cmp(a, b, arg); arg is borrowed for the
 * queue's life. Returns as cio_queue_new, plus -EINVAL for a NULL cmp. */
CIO_API int cio_priority_queue_new(cio_queue **q, size_t item_size,
                                   size_t maxsize, cio_queue_cmp cmp,
                                   void *arg);
/** The same, newest first. Returns as cio_queue_new. */
CIO_API int cio_lifo_queue_new(cio_queue **q, size_t item_size,
                               size_t maxsize);
/** Frees q; NULL is a no-op. Tasks still waiting on it are woken with
 * -ESHUTDOWN (as by shutdown(immediate), and join too); the memory goes
 * once the last of them has returned. */
CIO_API void cio_queue_free(cio_queue *q);

/** Copies item_size bytes from item into the queue, waiting while it is
 * full. Returns 0, -ESHUTDOWN, -ECANCELED / -ETIMEDOUT (nothing inserted),
 * -ENOMEM (an unbounded queue could not grow). */
CIO_API int cio_queue_put(cio_queue *q, const void *item);
/** Moves the next item into item (item_size bytes; NULL drops it), waiting
 * while there is none. Returns 0, -ESHUTDOWN (shut down and empty, or shut
 * down immediately), -ECANCELED / -ETIMEDOUT (nothing taken). */
CIO_API int cio_queue_get(cio_queue *q, void *item);
/** put without waiting, from anywhere (callbacks too). Returns 0, -EAGAIN
 * (full: asyncio's QueueFull), -ESHUTDOWN, -ENOMEM. */
CIO_API int cio_queue_put_nowait(cio_queue *q, const void *item);
/** get without waiting, from anywhere. Returns 0, -EAGAIN (empty:
 * QueueEmpty), -ESHUTDOWN. */
CIO_API int cio_queue_get_nowait(cio_queue *q, void *item);
CIO_API size_t cio_queue_qsize(const cio_queue *q);   /**< items get can take */
CIO_API size_t cio_queue_maxsize(const cio_queue *q); /**< 0: unbounded */
CIO_API int cio_queue_empty(const cio_queue *q);      /**< 1 or 0 */
CIO_API int cio_queue_full(const cio_queue *q);       /**< 1 or 0 */
/** Tells the queue an item got earlier is dealt with (for join). Returns 0,
 * or -EINVAL if called more times than items were put (ValueError). */
CIO_API int cio_queue_task_done(cio_queue *q);
/** Waits until every item put has been got and task_done. Returns 0,
 * -ECANCELED, -ETIMEDOUT, -ESHUTDOWN (the queue was freed). */
CIO_API int cio_queue_join(cio_queue *q);
/** Shuts the queue down (Python 3.13): put returns -ESHUTDOWN from now on,
 * get once the queue is empty; waiting putters wake with -ESHUTDOWN, and
 * waiting getters once it is empty. immediate: the items are dropped now,
 * each counting as task_done (which may release join), and get returns
 * -ESHUTDOWN at once. Returns 0. */
CIO_API int cio_queue_shutdown(cio_queue *q, int immediate);

/* ------------------------------------------------------------- sockets
 * Coroutine forms of the socket calls, for tasks, on non-blocking fds:
 * each waits (a suspension point) while the fd is not ready. Every fd cio
 * creates is non-blocking and close-on-exec; no cio call raises SIGPIPE.
 * Each returns CIO_ENOTASK outside a task, -ECANCELED / -ETIMEDOUT when
 * interrupted, and the system call's own -errno (-EBADF, ...).
 */

/** Receives up to n bytes. Returns the count, 0 at EOF, or an error. */
CIO_API ssize_t cio_sock_recv(int fd, void *buf, size_t n);
/** The same: asyncio's sock_recv and sock_recv_into are one call in C.
 * Returns as cio_sock_recv. */
CIO_API ssize_t cio_sock_recv_into(int fd, void *buf, size_t n);
/** Sends all n bytes. Returns 0 or an error (-EPIPE, -ECONNRESET, ...). */
CIO_API int cio_sock_sendall(int fd, const void *buf, size_t n);
/** Connects. Returns 0, -ECONNREFUSED, -ETIMEDOUT, ... */
CIO_API int cio_sock_connect(int fd, const struct sockaddr *addr,
                             socklen_t len);
/** Accepts a connection: returns the new fd (non-blocking, close-on-exec,
 * the caller's) and fills addr/len (both may be NULL), or an error. */
CIO_API int cio_sock_accept(int fd, struct sockaddr *addr, socklen_t *len);
/** Receives one datagram; addr/len (may be NULL) get the sender's address.
 * Returns its length, -EMSGSIZE if it was longer than n (buf holds its
 * first n bytes, the rest is gone: a cut datagram is never passed off as
 * whole), or an error. On a stream socket it reads like cio_sock_recv. */
CIO_API ssize_t cio_sock_recvfrom(int fd, void *buf, size_t n,
                                  struct sockaddr *addr, socklen_t *len);
/** Sends one datagram to addr (NULL: the connected peer). Returns the bytes
 * sent or an error. */
CIO_API ssize_t cio_sock_sendto(int fd, const void *buf, size_t n,
                                const struct sockaddr *addr, socklen_t len);

/** asyncio's sock_sendfile: sends count bytes (0: up to EOF) of the file
 * file_fd, starting at offset, over the connected stream socket sock, with
 * sendfile(2) (the bytes never pass through user space), waiting while
 * the socket is full. Where the kernel cannot (file_fd is a pipe, a
 * socket, or a file without splice support such as most of /proc), it
 * reads chunks and sends them if fallback is non-zero, else returns
 * -ENOTSUP having sent nothing. A source without offsets (a pipe) is read
 * from where it is, waiting until it is readable, and only offset 0 is
 * possible there (-ESPIPE). A count past EOF stops at EOF. *sent (may be
 * NULL) gets the bytes the socket took, on success and on every error
 * (-ECANCELED included), so a caller knows where to resume. Unlike
 * asyncio, file_fd's position never moves (offsets are explicit: one fd
 * can feed many sockets at once), and the count goes to *sent, not the
 * return value. Both fds stay the caller's. Returns 0, CIO_ENOTASK,
 * -EINVAL (offset < 0, sock not SOCK_STREAM), -ENOTSOCK, -ENOTSUP, -ESPIPE,
 * -EPIPE / -ECONNRESET (the peer went away), -ENOMEM (fallback), or a
 * read error of file_fd (-EBADF, -EISDIR, ...). */
CIO_API int cio_sock_sendfile(int sock, int file_fd, int64_t offset,
                              size_t count, int fallback, size_t *sent);

/** getaddrinfo in the default executor, as asyncio. *res is the caller's:
 * release it with freeaddrinfo(). Returns 0, CIO_EAI(EAI_*), CIO_ENOTASK,
 * or -EINVAL (NULL res, or a bad port: one that starts with a digit, sign
 * or space, is empty, or has AI_NUMERICSERV, must be all decimal
 * digits within 0..65535, so "65616" never wraps to port 80). Every call
 * below that takes a port string goes through it and returns the same. */
CIO_API int cio_getaddrinfo(const char *host, const char *port,
                            const struct addrinfo *hints,
                            struct addrinfo **res);
/** getnameinfo in the default executor. Returns 0, CIO_EAI(EAI_*),
 * -EINVAL (NULL addr), CIO_ENOTASK. */
CIO_API int cio_getnameinfo(const struct sockaddr *addr, socklen_t len,
                            char *host, size_t hostlen, char *serv,
                            size_t servlen, int flags);

/* ------------------------------------------------ transports, protocols
 * The callback layer: a transport moves bytes, a protocol (a struct of
 * callbacks and its context pointer) reacts to them. No task is needed.
 * Callbacks a protocol leaves NULL are skipped. A transport is freed by
 * cio right after connection_lost returns.
 */
typedef struct cio_transport cio_transport;
typedef struct cio_server cio_server;

typedef struct cio_protocol {
    void (*connection_made)(cio_transport *t, void *ctx);
    void (*data_received)(cio_transport *t, const char *data, size_t n,
                          void *ctx);
    /** The peer sent EOF: return 1 to keep the transport open for writing
     * (a half-close), 0 to close it. NULL: close. */
    int (*eof_received)(cio_transport *t, void *ctx);
    /** The last call: error is 0 for a plain close. */
    void (*connection_lost)(cio_transport *t, int error, void *ctx);
    /** The write buffer went above the high-water mark / back below the
     * low-water mark. */
    void (*pause_writing)(cio_transport *t, void *ctx);
    void (*resume_writing)(cio_transport *t, void *ctx);
    /** asyncio.BufferedProtocol: when get_buffer is set, data is read
     * straight into the buffer it returns (at least 1 byte, *size set),
     * then buffer_updated says how many bytes arrived. */
    void *(*get_buffer)(cio_transport *t, size_t sizehint, size_t *size,
                        void *ctx);
    void (*buffer_updated)(cio_transport *t, size_t n, void *ctx);
    /** Datagram endpoints: datagram_received gets each datagram whole
     * (up to 64 KiB, more than any UDP payload); one longer than that is
     * dropped and reported as error_received(-EMSGSIZE). */
    void (*datagram_received)(cio_transport *t, const char *data, size_t n,
                              const struct sockaddr *addr, socklen_t len,
                              void *ctx);
    void (*error_received)(cio_transport *t, int error, void *ctx);
} cio_protocol;

/** A server's per-connection context: factory(arg) is called for each
 * new connection (NULL factory: every connection gets arg). */
typedef void *(*cio_protocol_factory)(void *arg);

/** Queues data (copied as needed) and sends what it can at once. Returns
 * 0, -EINVAL (NULL; a datagram or read-pipe transport), -EPIPE (closing),
 * the error it is closing for (lost), -ENOMEM, -ENOBUFS (the write buffer
 * would then hold more than its maximum, 64 MiB unless set: nothing of
 * this write is sent or buffered, and a later write may fit).
 * Never blocks, never raises SIGPIPE; errors from the peer arrive through
 * connection_lost. */
CIO_API int cio_transport_write(cio_transport *t, const void *data,
                                size_t n);
/** Writes the buffers as one gathered write (writev). Returns as
 * cio_transport_write, plus -EINVAL for iovcnt < 0. */
CIO_API int cio_transport_writelines(cio_transport *t, const struct iovec *iov,
                                     int iovcnt);
/** Closes the write side once the buffer is flushed. Returns 0, -EPIPE,
 * -ENOTSUP (cannot, e.g. datagrams). */
CIO_API int cio_transport_write_eof(cio_transport *t);
CIO_API int cio_transport_can_write_eof(cio_transport *t); /**< 1 or 0 */
/** Closes after flushing the buffer; connection_lost(0) follows. */
CIO_API void cio_transport_close(cio_transport *t);
/** Closes now, dropping the buffer; connection_lost(0) follows. A socket
 * is closed with SO_LINGER 0, so the peer sees a reset (ECONNRESET), not
 * an orderly EOF after bytes that will never come. */
CIO_API void cio_transport_abort(cio_transport *t);
CIO_API int cio_transport_is_closing(const cio_transport *t); /**< 1 or 0 */
/** asyncio's get_extra_info: "peername" and "sockname" fill a sockaddr in
 * buf (*len: its size in, the address's out); "socket" an int fd.
 * Returns 0, -ENOENT (unknown name), -EINVAL, -ENOTCONN. */
CIO_API int cio_transport_get_extra_info(cio_transport *t, const char *name,
                                         void *buf, socklen_t *len);
/** Write-buffer water marks (0, 0: 64 KiB high, a quarter of it low).
 * Returns 0 or -EINVAL (NULL, low > high). */
CIO_API int cio_transport_set_write_buffer_limits(cio_transport *t,
                                                  size_t high, size_t low);
/** The write buffer's hard maximum (0: the default, 64 MiB), for bytes and
 * queued datagrams alike: a write or sendto that would pass it returns
 * -ENOBUFS and keeps nothing. Lowering it below what is buffered drops
 * nothing; writes are refused until the buffer drains. Returns 0 or
 * -EINVAL (NULL). */
CIO_API int cio_transport_set_write_buffer_max(cio_transport *t, size_t max);
/** Returns the bytes (or datagram bytes) queued, not yet sent; 0 for NULL. */
CIO_API size_t cio_transport_get_write_buffer_size(const cio_transport *t);
/** Stops / resumes calling data_received (resume only undoes a pause).
 * Returns 0 or -EINVAL (NULL). */
/** @{ */
CIO_API int cio_transport_pause_reading(cio_transport *t);
CIO_API int cio_transport_resume_reading(cio_transport *t);
/** @} */
CIO_API int cio_transport_is_reading(const cio_transport *t); /**< 1 or 0 */
/** Returns the protocol context given at creation (or by the factory), NULL
 * for a NULL t. */
CIO_API void *cio_transport_get_context(const cio_transport *t);
/** Datagram transports: sends one datagram (addr NULL: to the connected
 * peer). Returns 0 or an error, -ENOBUFS when the kernel cannot take it
 * now and queueing it would pass the write buffer's maximum; errors of
 * earlier sends may arrive through error_received. */
CIO_API int cio_transport_sendto(cio_transport *t, const void *data,
                                 size_t n, const struct sockaddr *addr,
                                 socklen_t len);

/* ------------------------------------------------------------------- TLS
 * TLS through OpenSSL (asyncio's ssl= everywhere), when cio was built with
 * it (cio_tls_available); without it every TLS call returns -ENOTSUP.
 * A context is OpenSSL's own SSL_CTX: a program that configures one with
 * OpenSSL passes it as it is, and one that does not uses the helpers
 * below and never includes an OpenSSL header. cio takes its own reference
 * on a context for every connection, so the program may free its
 * reference once the connections are made.
 *
 * Over TLS, flow control counts plaintext bytes (the write buffer holds
 * plaintext, encrypted as the socket takes it), pause_reading stops
 * decrypting, write_eof is -ENOTSUP (TLS has no half-close), and close
 * sends close_notify once the buffer is flushed, then waits at most the
 * shutdown timeout for the peer's before closing the socket; abort sends
 * nothing and resets. A failed TLS call returns CIO_ETLS with OpenSSL's
 * reason in cio_tls_error_string(); a certificate that fails verification
 * (self-signed, expired, another host's) is CIO_ETLS too. A peer that goes
 * away before the handshake ends gives -ECONNRESET; one that never ends
 * it, -ETIMEDOUT; one that ends the connection after it without
 * close_notify (a truncation attack, or a careless peer), CIO_ETLSEOF as
 * the connection's error (connection_lost; a stream's reads once its
 * buffer is empty).
 */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

typedef struct cio_tls_options {
    struct ssl_ctx_st *ctx;      /**< NULL: no TLS */
    /** Client: the name sent as SNI and checked against the certificate;
     * NULL: the host connected to; "": none (nothing is checked by name). */
    const char *server_hostname;
    /** s; 0 (or less, a zeroed struct's): 60, as asyncio's default;
     * CIO_NO_TIMEOUT: none; NaN: -EINVAL. */
    double handshake_timeout;
    double shutdown_timeout;     /**< s; as handshake_timeout, but 30 */
} cio_tls_options;

/** Returns 1 if cio was built with OpenSSL, else 0. */
CIO_API int cio_tls_available(void);
/** A client context as Python's ssl.create_default_context(): TLS 1.2 or
 * later, the peer verified against the system's CA store, and (per
 * connection) the host name checked. *ctx is the caller's (free with
 * cio_tls_context_free or SSL_CTX_free). Returns 0, -EINVAL (NULL),
 * CIO_ETLS, -ENOTSUP. */
CIO_API int cio_tls_client_context(struct ssl_ctx_st **ctx);
/** A server context with the certificate chain and private key of the
 * PEM files certfile and keyfile. Returns 0, -EINVAL (NULL), CIO_ETLS (a
 * file missing or not matching), -ENOTSUP. */
CIO_API int cio_tls_server_context(const char *certfile, const char *keyfile,
                                   struct ssl_ctx_st **ctx);
/** Trusts the CA certificates of the PEM file cafile (besides what ctx
 * trusts already). Returns 0, -EINVAL, CIO_ETLS, -ENOTSUP. */
CIO_API int cio_tls_context_load_ca(struct ssl_ctx_st *ctx, const char *cafile);
/** Presents this certificate chain and key (a client's, for mutual TLS).
 * Returns 0, -EINVAL, CIO_ETLS, -ENOTSUP. */
CIO_API int cio_tls_context_use_certificate(struct ssl_ctx_st *ctx,
                                            const char *certfile,
                                            const char *keyfile);
/** Server: requires every client to present a certificate that cafile's
 * CAs signed (mutual TLS); a client without one fails the handshake.
 * Returns 0, -EINVAL, CIO_ETLS, -ENOTSUP. */
CIO_API int cio_tls_context_verify_clients(struct ssl_ctx_st *ctx,
                                           const char *cafile);
/** ALPN: a client offers protos (in order of preference); a server picks
 * its own first choice among the client's offers, and none if nothing is
 * common (the handshake goes on). Returns 0, -EINVAL (no protos, an empty
 * or over 255-byte name), -ENOMEM, -ENOTSUP. */
CIO_API int cio_tls_context_set_alpn(struct ssl_ctx_st *ctx,
                                     const char *const *protos, size_t n);
/** Server SNI: a client asking for `name` (compared without case) gets
 * for_name's certificate and settings; other names keep ctx's. ctx takes a
 * reference on for_name. Returns 0, -EINVAL, -ENOMEM, -ENOTSUP. */
CIO_API int cio_tls_context_add_sni(struct ssl_ctx_st *ctx, const char *name,
                                    struct ssl_ctx_st *for_name);
/** Drops the caller's reference on a context (SSL_CTX_free). NULL: no-op. */
CIO_API void cio_tls_context_free(struct ssl_ctx_st *ctx);
/** Returns OpenSSL's reason for this thread's latest CIO_ETLS (static
 * storage of the thread, "" if none yet): errno's model, since the call
 * that failed may have no object left to ask. */
CIO_API const char *cio_tls_error_string(void);
/** From a task: upgrades a connected stream transport to TLS in place
 * (asyncio's loop.start_tls, for STARTTLS protocols): waits for its write
 * buffer to flush, runs the handshake as the client (server_side 0) or
 * the server, and returns once it is done; the protocol stays the same
 * and data_received sees plaintext from then on. asyncio returns a new
 * transport; in C the same pointer serves, so nothing the program holds
 * goes stale. Returns 0, -EINVAL (NULL, no ctx, not a stream socket),
 * CIO_ENOTASK, -EALREADY (TLS already), -EPIPE (closing), -ENOTSUP, or the
 * handshake's error: then the transport is aborted. */
CIO_API int cio_transport_start_tls(cio_transport *t, const cio_tls_options *o,
                                    int server_side);

/** asyncio's loop.sendfile, from a task: sends count bytes (0: up to EOF)
 * of file_fd from offset over t. It first waits until t's write buffer
 * has flushed, so what was written before arrives before the file; until
 * it returns, t refuses other writes (-EBUSY, as asyncio's "sendfile is in
 * progress"). On a TCP or Unix stream transport the bytes go to the
 * socket as cio_sock_sendfile sends them (sendfile(2), or read-and-send
 * where it cannot and fallback is set), past the write buffer, so the
 * protocol sees no pause_writing / resume_writing, and reading pauses
 * meanwhile, as asyncio's. On a TLS transport, and on a write pipe
 * (where asyncio has no sendfile), the file is read in chunks and written
 * through the transport (encrypted, for TLS), waiting whenever it is above
 * its high-water mark: the protocol sees pause and resume as the buffer
 * really fills and drains (asyncio hides them); with fallback 0 that is
 * -ENOTSUP at once. *sent
 * (may be NULL) gets the bytes the socket or the transport took, on
 * success and on every error (-ECANCELED included); file_fd's position
 * never moves. t and file_fd stay the caller's; t stays valid until its
 * connection_lost, which ends the send with the error it is lost to.
 * Returns 0, CIO_ENOTASK, -EINVAL (NULL t, offset < 0, a datagram or
 * read-pipe transport), -EPIPE (t is closing or half-closed), -EBUSY
 * (another sendfile on t), -ENOTSUP, -ECANCELED, -ETIMEDOUT, or as
 * cio_sock_sendfile. */
CIO_API int cio_sendfile(cio_transport *t, int file_fd, int64_t offset,
                         size_t count, int fallback, size_t *sent);

typedef struct cio_connection_options {
    const char *local_host;      /**< bind to this address first, or NULL */
    const char *local_port;
    int family;                  /**< AF_INET, AF_INET6, 0: either */
    /** s between attempts; 0 (or less): 0.25, asyncio's default, since a
     * zeroed struct means defaults; CIO_NO_TIMEOUT: one address at a time
     * (asyncio's None); NaN: -EINVAL */
    double happy_eyeballs_delay;
    const cio_tls_options *tls;  /**< TLS (NULL: none) */
} cio_connection_options;

/** From a task: resolves host, connects (Happy Eyeballs across the
 * addresses: the next attempt starts after a delay, the first to connect
 * wins), makes a transport with proto/ctx and runs connection_made before
 * returning. *t is valid until connection_lost returns. opts may be NULL.
 * Returns 0, CIO_EAI(...), -ECONNREFUSED, -ETIMEDOUT, -ENOMEM, -EINVAL
 * (a bad port or local_port, as cio_getaddrinfo), ... */
/** @{ */
CIO_API int cio_create_connection(const char *host, const char *port,
                                  const cio_protocol *proto, void *ctx,
                                  const cio_connection_options *opts,
                                  cio_transport **t);
CIO_API int cio_create_unix_connection(const char *path,
                                       const cio_protocol *proto, void *ctx,
                                       cio_transport **t);
/** @} */
/** Wraps a connected socket (the transport owns fd from then on), on loop
 * (NULL: the running one); connection_made runs soon. Returns 0, -EINVAL
 * (no loop, fd < 0, NULL proto), -EBADF (fd not open), -ESHUTDOWN (closed
 * loop), -EPERM (debug mode, wrong thread), -ENOMEM; on error fd stays the
 * caller's. */
CIO_API int cio_connect_accepted_socket(cio_loop *loop, int fd,
                                        const cio_protocol *proto, void *ctx,
                                        cio_transport **t);

typedef struct cio_server_options {
    int backlog;        /**< 0: 100, as asyncio */
    int reuse_address;  /**< -1 off; 0 (default) and 1: on */
    int reuse_port;     /**< 1: SO_REUSEPORT (one loop per core) */
    int delay_serving;  /**< 1: do not accept until start_serving */
    /** TLS for every connection (NULL: none); the protocol's context is
     * made, and connection_made runs, only once a handshake succeeded: a
     * failed one closes the connection without a word to the program. */
    const cio_tls_options *tls;
} cio_server_options;

/** From a task: listens on host (NULL or "": every interface, IPv4 and
 * IPv6) and port ("0": any free port); each connection gets a transport
 * with proto and factory(arg). *server is valid until cio_server_free.
 * Returns 0, CIO_EAI(...), -EADDRINUSE, -EACCES, -ENOMEM, -EINVAL (a bad
 * port, as cio_getaddrinfo), ... */
CIO_API int cio_create_server(const char *host, const char *port,
                              const cio_protocol *proto,
                              cio_protocol_factory factory, void *arg,
                              const cio_server_options *opts,
                              cio_server **server);
/** The Unix variant: a socket file already at path is replaced, anything
 * else there is -EADDRINUSE. The server remembers the file its bind made
 * (st_dev, st_ino) and removes path when it closes only if path still
 * names that file, never a socket another server bound there since.
 * Returns as cio_create_server, -EINVAL for a NULL or too long path. */
CIO_API int cio_create_unix_server(const char *path,
                                   const cio_protocol *proto,
                                   cio_protocol_factory factory, void *arg,
                                   const cio_server_options *opts,
                                   cio_server **server);
/** Starts accepting (a no-op if serving). Returns 0, -EINVAL (NULL),
 * -ESHUTDOWN (closed), or as cio_add_reader (-ENOMEM, ...). */
CIO_API int cio_server_start_serving(cio_server *s);
CIO_API int cio_server_is_serving(const cio_server *s); /**< 1 or 0 */
/** From a task: serves until the server is closed (returns 0) or the task
 * is cancelled (-ECANCELED; the server is closed then). Also returns
 * -EINVAL (NULL), CIO_ENOTASK, or as cio_server_start_serving. */
CIO_API int cio_server_serve_forever(cio_server *s);
/** Stops listening; connections already made go on. */
CIO_API void cio_server_close(cio_server *s);
/** Closes (close_clients) or aborts (as cio_transport_abort: the peers see
 * a reset) every connection of the server. */
/** @{ */
CIO_API void cio_server_close_clients(cio_server *s);
CIO_API void cio_server_abort_clients(cio_server *s);
/** @} */
/** From a task: waits until the server is closed and its connections are
 * gone. Returns 0, -ECANCELED, -ETIMEDOUT, -EINVAL (NULL), CIO_ENOTASK,
 * -ENOMEM. */
CIO_API int cio_server_wait_closed(cio_server *s);
/** Stores up to cap listening fds (borrowed); returns how many there are,
 * or -EINVAL (NULL s). */
CIO_API int cio_server_sockets(const cio_server *s, int *fds, size_t cap);
/** Returns the port the first listening socket is bound to (0 for Unix,
 * for NULL, or if it cannot be read). */
CIO_API int cio_server_port(const cio_server *s);
/** Closes the server if open and frees it; its connections go on. */
CIO_API void cio_server_free(cio_server *s);
/** Holds a TCP port for servers that will listen on it with reuse_port
 * (one per loop of cio_run_loops), so that they can all bind one port
 * "0" chose without any of them going first: binds a socket with
 * SO_REUSEPORT to host (a numeric IPv4 or IPv6 address; NULL: every IPv4
 * interface) and *port (0: the kernel picks; *port gets the port bound),
 * and never listens on it, so it takes no connection. Needs no loop.
 * Returns the socket (the caller's: close it once the servers listen, or
 * at the end), -EINVAL (NULL port, out of 0..65535, host not numeric),
 * -EADDRINUSE, or another -errno of socket/bind. */
CIO_API int cio_hold_port(const char *host, int *port);

/** UDP: from a task, a datagram endpoint bound to local_host/local_port
 * (may be NULL) and/or connected to remote_host/remote_port (may be NULL).
 * *t is valid until connection_lost returns, which may come before any
 * close of yours (the endpoint could not get memory to read, say): track
 * it there before touching *t again. Returns 0, CIO_EAI(...),
 * -EADDRINUSE, -EINVAL (a bad port, as cio_getaddrinfo), ... */
CIO_API int cio_create_datagram_endpoint(const char *local_host,
                                         const char *local_port,
                                         const char *remote_host,
                                         const char *remote_port,
                                         const cio_protocol *proto,
                                         void *ctx, cio_transport **t);

/* --------------------------------------------------------------- streams
 * The coroutine layer over transports: read and write with calls that
 * wait, from tasks. A stream reads into its own buffer; readline and
 * readuntil return pointers into it, borrowed until the next read call on
 * the stream. The buffer limit (64 KiB by default) bounds readline and
 * readuntil: a peer cannot make a reader use unbounded memory.
 */
typedef struct cio_stream cio_stream;

typedef struct cio_stream_options {
    size_t limit; /**< 0: 64 KiB */
    /** cio_open_connection / _unix_connection: TLS (NULL: none). For a
     * Unix socket, server_hostname must name the host to check. */
    const cio_tls_options *tls;
} cio_stream_options;

/** From a task: connects (as cio_create_connection / _unix_connection) and
 * sets *s to a stream, the caller's until cio_stream_free. opts may be
 * NULL. Returns 0, -EINVAL (NULL s), CIO_ENOTASK, -ENOMEM, or as the
 * connection call. */
/** @{ */
CIO_API int cio_open_connection(const char *host, const char *port,
                                const cio_stream_options *opts,
                                cio_stream **s);
CIO_API int cio_open_unix_connection(const char *path,
                                     const cio_stream_options *opts,
                                     cio_stream **s);
/** @} */

/** Runs as a new task for each connection; the stream is closed and freed
 * when it returns. */
typedef int (*cio_client_connected)(cio_stream *s, void *arg);

/** From a task: a server whose every connection runs cb(stream, arg) as a
 * task. Returns as cio_create_server. */
/** @{ */
CIO_API int cio_start_server(cio_client_connected cb, void *arg,
                             const char *host, const char *port,
                             const cio_stream_options *sopts,
                             const cio_server_options *opts,
                             cio_server **server);
CIO_API int cio_start_unix_server(cio_client_connected cb, void *arg,
                                  const char *path,
                                  const cio_stream_options *sopts,
                                  const cio_server_options *opts,
                                  cio_server **server);
/** @} */

/* Every read call below returns -EINVAL (NULL), CIO_ENOTASK, -EBUSY
 * (another task is reading the stream), -ECANCELED / -ETIMEDOUT, or at EOF
 * the error the connection was lost to, besides what it lists. */

/** Reads up to n bytes (waits for at least one). Returns the count, 0 at
 * EOF (or n == 0), or an error. */
CIO_API ssize_t cio_stream_read(cio_stream *s, void *buf, size_t n);
/** Reads to EOF: *data (release with cio_free) gets the bytes; returns
 * the count or an error. */
CIO_API ssize_t cio_stream_read_all(cio_stream *s, char **data);
/** Reads a line: *line (borrowed) points at it, newline included; returns
 * its length, a shorter last line at EOF, 0 at EOF, or CIO_ELIMIT (the
 * line was longer than the limit: it is consumed, as asyncio's, and
 * cio_stream_consumed says how many bytes went). */
CIO_API ssize_t cio_stream_readline(cio_stream *s, const char **line);
/** Reads exactly n bytes into buf: returns n, or CIO_EINCOMPLETE at an
 * early EOF with the *partial bytes that came copied into buf (and
 * consumed: at_eof holds then). */
CIO_API ssize_t cio_stream_readexactly(cio_stream *s, void *buf, size_t n,
                                       size_t *partial);
/** Reads through the first of the separators: *data (borrowed) points at
 * the bytes, separator included. Each arrival is searched once (plus the
 * len(sep) - 1 bytes before it, for a separator split across arrivals),
 * so a long line costs linear time, as does readline's. Returns their
 * count; CIO_ELIMIT (not found within the limit, or found starting past
 * it: the data stays buffered; cio_stream_consumed says how much of it to
 * read to get past it); CIO_EINCOMPLETE (EOF first: as asyncio, the bytes
 * that came are consumed and handed over, *data pointing at them and
 * cio_stream_partial giving their count); -EINVAL (no separators, or an
 * empty one). */
CIO_API ssize_t cio_stream_readuntil(cio_stream *s, const char *const *seps,
                                     size_t nseps, const char **data);
/** What asyncio's IncompleteReadError carries: after a read call returned
 * CIO_EINCOMPLETE, returns how many bytes came before EOF (its partial:
 * readuntil's *data points at them, readexactly copied them into buf);
 * after any other result, 0. Valid until the next read call. */
CIO_API size_t cio_stream_partial(const cio_stream *s);
/** What asyncio's LimitOverrunError carries: after CIO_ELIMIT, returns its
 * consumed count: for readuntil, the bytes before the separator that was
 * found past the limit, or (none found) the buffered bytes that cannot be
 * part of one; they are still buffered, so reading that many gets past
 * them. For readline, the bytes it dropped itself. After any other result
 * 0. Valid until the next read call. */
CIO_API size_t cio_stream_consumed(const cio_stream *s);
CIO_API int cio_stream_at_eof(const cio_stream *s); /**< 1 or 0 */
/** Returns how many bytes the stream has read from the connection that no
 * read call has handed over yet (0 for NULL): 0 means the next read waits
 * for the peer (asyncio's len(reader._buffer)). A server answering
 * pipelined requests flushes its replies when this reaches 0. */
CIO_API size_t cio_stream_buffered(const cio_stream *s);

/** Queues data (never waits; call drain to wait). Returns 0, -EINVAL,
 * -EPIPE, the connection's error once it is lost, -ENOMEM, -ENOBUFS (past
 * the write buffer's maximum: nothing of it kept): as cio_transport_write
 * / _writelines. */
/** @{ */
CIO_API int cio_stream_write(cio_stream *s, const void *data, size_t n);
CIO_API int cio_stream_writelines(cio_stream *s, const struct iovec *iov,
                                  int iovcnt);
/** @} */
/** Waits while the write buffer is above its high-water mark. Returns 0,
 * the connection's error once it is lost (-ECONNRESET if none),
 * -ECANCELED, -ETIMEDOUT, -EINVAL (NULL), CIO_ENOTASK. */
CIO_API int cio_stream_drain(cio_stream *s);
/** cio_sendfile on the stream's transport (asyncio has no such method:
 * there one calls loop.sendfile(writer.transport, ...)). Returns as
 * cio_sendfile, or the connection's error (-EPIPE) once it is lost. */
CIO_API int cio_stream_sendfile(cio_stream *s, int file_fd, int64_t offset,
                                size_t count, int fallback, size_t *sent);
/** As cio_transport_set_write_buffer_max, for the stream's transport.
 * Returns 0, -EINVAL (NULL), or the connection's error (-EPIPE) once lost. */
CIO_API int cio_stream_set_write_buffer_max(cio_stream *s, size_t max);
/** Returns how many written bytes wait in the transport for the peer to
 * take them (asyncio's transport.get_write_buffer_size()); 0 for NULL or
 * once the connection is lost. */
CIO_API size_t cio_stream_get_write_buffer_size(const cio_stream *s);
/** Closes the write side once flushed. Returns 0, -EINVAL, -EPIPE, the
 * connection's error once it is lost, -ENOTSUP (as
 * cio_transport_write_eof). */
CIO_API int cio_stream_write_eof(cio_stream *s);
CIO_API int cio_stream_can_write_eof(cio_stream *s); /**< 1 or 0 */
/** Starts closing (flushing first). */
CIO_API void cio_stream_close(cio_stream *s);
CIO_API int cio_stream_is_closing(const cio_stream *s); /**< 1 or 0 */
/** Waits until the connection is closed. Returns 0, its error, -EINVAL
 * (NULL), CIO_ENOTASK, -ECANCELED, -ETIMEDOUT, -ENOMEM. */
CIO_API int cio_stream_wait_closed(cio_stream *s);
/** As cio_transport_get_extra_info; returns -ENOTCONN once the connection
 * is gone. */
CIO_API int cio_stream_get_extra_info(cio_stream *s, const char *name,
                                      void *buf, socklen_t *len);
/** Closes (if open) and frees the stream. NULL is a no-op. Bytes still
 * buffered get 30 s to flush; a peer that has not read them by then gets
 * the connection aborted (reset), so a freed stream never lingers forever. */
CIO_API void cio_stream_free(cio_stream *s);
/** Closes now: drops what is buffered and resets the connection, as
 * cio_transport_abort; the stream stays the caller's until
 * cio_stream_free. NULL, or a stream already lost, is a no-op. */
CIO_API void cio_stream_abort(cio_stream *s);
/** From a task: upgrades the stream's connection to TLS in place
 * (asyncio's StreamWriter.start_tls), as cio_transport_start_tls; bytes
 * the stream had read but not handed over are the peer's first TLS bytes
 * and go to the handshake. Returns as cio_transport_start_tls, -EBUSY
 * (another task is reading), -ENOTCONN (the connection is gone). */
CIO_API int cio_stream_start_tls(cio_stream *s, const cio_tls_options *o,
                                 int server_side);

/** Frees memory cio handed to the caller (cio_stream_read_all,
 * cio_process_communicate). NULL is a no-op. */
CIO_API void cio_free(void *p);

/* --------------------------------------------------------------- signals
 * Unix signals delivered as ordinary loop callbacks (through signalfd), so
 * a handler may do anything a callback may. As in asyncio, only the main
 * thread's loop handles signals. The signal is blocked in the calling
 * thread (threads it starts later inherit that); cio's worker threads
 * block every signal.
 */

/** Runs cb(arg) on loop whenever signum arrives; adding again replaces.
 * Returns 0, -EINVAL (SIGKILL, SIGSTOP, not a signal), -EPERM (not the
 * main thread), -ESHUTDOWN, -ENOMEM. */
CIO_API int cio_add_signal_handler(cio_loop *loop, int signum,
                                   cio_callback cb, void *arg);
/** Stops handling signum (its default action is back). Returns 1 if a
 * handler was removed, 0 if none, -EINVAL. */
CIO_API int cio_remove_signal_handler(cio_loop *loop, int signum);

/* ---------------------------------------------------------- subprocesses
 * Child processes with their stdin, stdout and stderr as streams. A child
 * inherits only the fds it is given (0, 1, 2 as chosen below), the signal
 * dispositions are reset to their defaults in it, and it is always reaped:
 * by cio_process_wait, or in the background once its process object is
 * freed or its loop closed first.
 */
typedef struct cio_process cio_process;

typedef enum cio_stdio_kind {
    CIO_STDIO_INHERIT = 0, /**< the parent's (the default) */
    CIO_STDIO_PIPE,        /**< a pipe: a stream in the process object */
    CIO_STDIO_DEVNULL,     /**< /dev/null */
    CIO_STDIO_FD,          /**< the given fd (duplicated; still the caller's) */
    CIO_STDIO_STDOUT       /**< stderr only: wherever stdout goes */
} cio_stdio_kind;

typedef struct cio_stdio {
    cio_stdio_kind kind;
    int fd; /**< CIO_STDIO_FD */
} cio_stdio;

/** cio_process_options.process_group: a new group, led by the child
 * (asyncio's process_group=0; 0 here is the zeroed default: ours). */
#define CIO_PROCESS_GROUP_NEW (-1)

typedef struct cio_process_options {
    cio_stdio in, out, err;
    const char *cwd;    /**< NULL: the parent's */
    char *const *env;   /**< NULL: the parent's environment */
    size_t limit;       /**< the pipe streams' buffer limit; 0: 64 KiB */
    /** asyncio's start_new_session: 1, the child calls setsid() (a new
     * session and group it leads, no controlling terminal, so a Ctrl-C at
     * the terminal does not reach it). */
    int start_new_session;
    /** asyncio's process_group: 0 ours (the default), CIO_PROCESS_GROUP_NEW
     * a new one the child leads, > 0 join that group (setpgid). Not with
     * start_new_session (-EINVAL). */
    pid_t process_group;
} cio_process_options;

/** From a task: starts argv[0] (searched in PATH) with argv (NULL-ended).
 * *p is the caller's until cio_process_free. Returns 0, -ENOENT (no such
 * program), -EACCES, -EINVAL (also a bad start_new_session /
 * process_group pair), -ENOMEM, -EMFILE, -EPERM (no such group to join). */
CIO_API int cio_create_subprocess_exec(const char *const *argv,
                                       const cio_process_options *opts,
                                       cio_process **p);
/** The same for `/bin/sh -c cmd`. Returns as cio_create_subprocess_exec. */
CIO_API int cio_create_subprocess_shell(const char *cmd,
                                        const cio_process_options *opts,
                                        cio_process **p);
/** Returns the child's pid, or -1 for a NULL p. */
CIO_API pid_t cio_process_pid(const cio_process *p);
/** Returns 1 with *code (may be NULL) set once it exited (>= 0: exit
 * status; < 0: -signal), 0 while it runs (or for a NULL p). */
CIO_API int cio_process_returncode(const cio_process *p, int *code);
/** Return its pipe streams (borrowed, valid until cio_process_free; NULL
 * unless CIO_STDIO_PIPE). */
/** @{ */
CIO_API cio_stream *cio_process_stdin(cio_process *p);
CIO_API cio_stream *cio_process_stdout(cio_process *p);
CIO_API cio_stream *cio_process_stderr(cio_process *p);
/** @} */
/** Waits for it to exit; *code as cio_process_returncode. Cancelling the
 * wait leaves the child watched. Returns 0, -ECANCELED, -ETIMEDOUT. */
CIO_API int cio_process_wait(cio_process *p, int *code);
/** Writes input (n bytes, then EOF) to its stdin while reading all of its
 * stdout and stderr (each NULL if not wanted or not a pipe; release with
 * cio_free), then waits: neither side can block on a full pipe. Returns 0
 * or an error. */
CIO_API int cio_process_communicate(cio_process *p, const void *input,
                                    size_t n, char **out, size_t *outlen,
                                    char **err, size_t *errlen);
/** Sends a signal (terminate: SIGTERM, kill: SIGKILL). Returns 0, -ESRCH
 * (it already exited), -EINVAL (NULL, not a signal), or the kernel's
 * -errno (-EPERM). */
/** @{ */
CIO_API int cio_process_send_signal(cio_process *p, int sig);
CIO_API int cio_process_terminate(cio_process *p);
CIO_API int cio_process_kill(cio_process *p);
/** @} */
/** Sends sig to the child's whole process group (killpg), grandchildren
 * included - what a `sh -c` job leaves behind - for a child started with
 * start_new_session or process_group (os.killpg(p.pid, sig) in Python).
 * Works after the child exited too, while anything of its group lives
 * (Linux never reuses a pid that still names a group; once the group is
 * empty, its id may in time name another one). Returns 0, -EINVAL (NULL,
 * not a signal, the child is in cio's own group), -ESRCH (nothing of the
 * group is left), -EPERM. */
CIO_API int cio_process_killpg(cio_process *p, int sig);
/** Frees the object and its streams (closing the pipes, so the child sees
 * EOF on its stdin and EPIPE on writes). A child still running is neither
 * killed nor signalled: it runs on and is reaped in the background when
 * it exits (asyncio's transport would kill it on close: here, kill it, or
 * its group, first if that is wanted). NULL is a no-op. */
CIO_API void cio_process_free(cio_process *p);

/** The low-level form (asyncio's loop.subprocess_exec): a subprocess
 * transport and a protocol of callbacks. connection_made comes first;
 * pipe_data_received(fd 1 or 2), pipe_connection_lost(fd) and
 * process_exited as they happen; connection_lost once the child exited
 * and every pipe closed. */
typedef struct cio_subprocess_transport cio_subprocess_transport;

typedef struct cio_subprocess_protocol {
    void (*connection_made)(cio_subprocess_transport *t, void *ctx);
    void (*pipe_data_received)(cio_subprocess_transport *t, int fd,
                               const char *data, size_t n, void *ctx);
    void (*pipe_connection_lost)(cio_subprocess_transport *t, int fd,
                                 int error, void *ctx);
    void (*process_exited)(cio_subprocess_transport *t, void *ctx);
    void (*connection_lost)(cio_subprocess_transport *t, int error,
                            void *ctx);
} cio_subprocess_protocol;

/** From a task: as cio_create_subprocess_exec / _shell, with pipes going
 * to proto. *t is the caller's until cio_subprocess_close (and freed once
 * connection_lost was called too). Returns as cio_create_subprocess_exec
 * (-EINVAL also for a NULL proto or t). */
/** @{ */
CIO_API int cio_subprocess_exec(const char *const *argv,
                                const cio_process_options *opts,
                                const cio_subprocess_protocol *proto,
                                void *ctx, cio_subprocess_transport **t);
CIO_API int cio_subprocess_shell(const char *cmd,
                                 const cio_process_options *opts,
                                 const cio_subprocess_protocol *proto,
                                 void *ctx, cio_subprocess_transport **t);
/** @} */
/** Returns the child's pid, or -1 for a NULL t. */
CIO_API pid_t cio_subprocess_get_pid(const cio_subprocess_transport *t);
/** Returns as cio_process_returncode. */
CIO_API int cio_subprocess_get_returncode(const cio_subprocess_transport *t,
                                          int *code);
/** Returns the transport of the child's fd 0, 1 or 2 (borrowed, valid
 * until its connection_lost), NULL if none. */
CIO_API cio_transport *
cio_subprocess_get_pipe_transport(cio_subprocess_transport *t, int fd);
/** Returns as cio_process_send_signal. */
CIO_API int cio_subprocess_send_signal(cio_subprocess_transport *t, int sig);
/** Closes the pipes and kills the child if it still runs. */
CIO_API void cio_subprocess_close(cio_subprocess_transport *t);

/** asyncio's connect_read_pipe / connect_write_pipe: a transport over any
 * pipe fd (owned by the transport from then on), on loop (NULL: the
 * running one). Returns as cio_connect_accepted_socket. */
/** @{ */
CIO_API int cio_connect_read_pipe(cio_loop *loop, int fd,
                                  const cio_protocol *proto, void *ctx,
                                  cio_transport **t);
CIO_API int cio_connect_write_pipe(cio_loop *loop, int fd,
                                   const cio_protocol *proto, void *ctx,
                                   cio_transport **t);
/** @} */

/* ------------------------------------------------------- seeing inside
 * What every task of a running program is doing, without a debugger:
 * asyncio's capture_call_graph / print_call_graph and `python -m asyncio
 * pstree`. A task parked in a cio call records what it waits on (the
 * kinds below); the await graph has an edge from a task to each
 * unfinished task its wait is for: cio_await of a task, cio_gather or
 * cio_wait of tasks, a task group's join. These only read, cost nothing
 * while unused, and work in and outside debug mode (creation sites are
 * known wherever the create macros were used).
 */

/** A snapshot of one task (cio_task_inspect). Strings are borrowed: valid
 * while the task lives and until it next runs. */
typedef struct cio_task_info {
    uint64_t id;             /**< its number on the loop (Task-N's N) */
    const char *name;        /**< cio_task_get_name */
    const char *state;       /**< "running", "ready", "parked" or "done" */
    /** Parked: what on, else NULL. One of "task", "future", "executor
     * job", "process exit", "sleep", "lock", "event", "condition",
     * "semaphore", "barrier", "queue get", "queue put", "queue join",
     * "gather or wait", "as_completed", "task group", "read", "write"
     * (cio_sock_* on fd), "stream read", "stream drain", "sendfile",
     * "connect", "TLS handshake", "transport flush". */
    const char *waiting_on;
    const void *object;      /**< what it waits on (the lock, queue,
                              * stream, future, ...), or NULL */
    int fd;                  /**< the fd of an I/O wait, else -1 */
    double deadline;         /**< loop time its wait ends by itself (a
                              * sleep), or INFINITY */
    double scope_deadline;   /**< the earliest deadline of its open
                              * timeout scopes, or INFINITY */
    const char *file;        /**< where it was created, or NULL */
    int line;
    double age;              /**< seconds since it was created */
    int cancelling;          /**< cio_task_cancelling */
    size_t stack_size;       /**< its stack's usable bytes; 0 once done */
    /** Debug mode: the most of its stack it has used so far (its
     * high-water mark; for a finished task, its last), exact or rounded up
     * to the page it reached; 0 outside debug mode or before it ran. A
     * debug task that finishes having used more than 75% is reported
     * (through the exception handler) with the size to give it instead. */
    size_t stack_used;
} cio_task_info;

/** Fills *info about task (any task of the loop this thread runs, or of
 * a loop no thread runs). Returns 0, or -EINVAL (not a task, NULL). */
CIO_API int cio_task_inspect(const cio_task *task, cio_task_info *info);

/** The unfinished tasks that task's wait is for (up to cap into out,
 * borrowed until the caller next suspends), and those waiting for task.
 * Return how many there are, or -EINVAL. */
/** @{ */
CIO_API int cio_task_awaits(const cio_task *task, cio_task **out,
                            size_t cap);
CIO_API int cio_task_awaited_by(const cio_task *task, cio_task **out,
                                size_t cap);
/** @} */

/** Writes task (NULL: the current one) to out on one line, then each
 * task awaiting it on its own line, indented, up to the roots: asyncio's
 * print_call_graph. Returns 0, or -EINVAL (no task, NULL out). */
CIO_API int cio_print_call_graph(const cio_task *task, FILE *out);

/** Formats of cio_loop_print_tasks. */
enum {
    CIO_DUMP_TEXT = 0, /**< a count, then an indented tree: each root
                        * task (one nothing awaits), below it what it
                        * awaits; a line per task */
    CIO_DUMP_JSON = 1  /**< one JSON object per line and task: id, name,
                        * state, waiting_on, object, fd, due_in and
                        * timeout_in (seconds from now, or null),
                        * cancelling, file, line, age, stack_size,
                        * stack_used, and the ids it awaits ("awaits":
                        * a reader inverts them for who awaits whom; the
                        * dump stays one pass over the tasks) */
};

/** Writes every unfinished task of loop (NULL: the running loop) to out
 * in format. Returns 0, or -EINVAL. */
CIO_API int cio_loop_print_tasks(cio_loop *loop, FILE *out, int format);

/** Opt-in: whenever signum arrives, loop writes its task dump in format
 * to fd (not owned; it must stay open), from the loop thread between
 * callbacks, never from a signal handler: `kill -USR1 <pid>` then asks a
 * running program what it is doing. One destination per loop: calling
 * again (for another signal too) moves it. Remove it with
 * cio_remove_signal_handler. Returns 0, -EINVAL, or what
 * cio_add_signal_handler returns (-EPERM off the main thread). */
CIO_API int cio_loop_dump_on_signal(cio_loop *loop, int signum, int fd,
                                    int format);

/** The timeline trace: from now on loop records what it does, with
 * timestamps, and writes it to path as Chrome's Trace Event Format (JSON)
 * when the trace stops: at cio_loop_trace_stop, or when the loop closes
 * (cio_run's end). Perfetto (ui.perfetto.dev) or chrome://tracing shows
 * it, one row per task (its run slices, and between them slices named
 * for what it waited on, as cio_task_info.waiting_on says), one for the
 * loop's callbacks (with instants for timers firing and fds ready) and
 * one per executor worker (run_in_executor and to_thread jobs). Setting
 * $CIO_TRACE=path traces every loop the program makes (the process's
 * second and later loops to path.2, path.3, ...). The file is created
 * (truncated) at once; the events are kept in memory until it is written:
 * each costs 48 bytes and a clock read. Loop thread only. start returns 0,
 * -EINVAL, -EBUSY (already tracing), -ESHUTDOWN, -ENOMEM, or why the file
 * cannot be made (-errno); stop returns 0 (also when not tracing), or
 * -errno / -EIO if the file could not be written. */
/** @{ */
CIO_API int cio_loop_trace_start(cio_loop *loop, const char *path);
CIO_API int cio_loop_trace_stop(cio_loop *loop);
/** @} */

/* For the next API break (inconsistencies kept for now; one per line):
 *  - 1-or-0 predicates (cio_loop_is_running, cio_future_done, ...) -> bool.
 *  - int flags (return_exceptions, immediate, wait, cancel_futures) -> bool.
 *  - out-param first (cio_loop_new, cio_queue_new) or last (cio_task_new).
 *  - cio_all_tasks, cio_server_sockets: int count from a size_t cap.
 *  - cio_task_group_size returns size_t; cio_all_tasks returns int.
 *  - iovcnt (writelines) and cio_condition_notify's n are int, not size_t.
 *  - cio_sock_sendall returns 0, cio_sock_sendto a ssize_t count.
 *  - get_ is uneven: cio_subprocess_get_pid but cio_process_pid.
 *  - cio_process_returncode vs cio_subprocess_get_returncode: same call.
 *  - Read-only queries taking non-const: cio_cfuture_done, cio_loop_time.
 *  - cio_stream_can_write_eof, cio_transport_can_write_eof: non-const too.
 *  - NULL to a query: 0, -EINVAL (cio_task_cancelling), -1 (pid), or NaN.
 *  - cio_remove_reader and friends mix a 1-or-0 answer with -EINVAL.
 *  - cio_loop_close is synchronous; `_close` elsewhere is asynchronous.
 *  - cio_create_task / cio_task_new: one call, two names, loop in one only.
 *  - cio_call_soon_threadsafe gives no cio_handle, so it cannot be cancelled.
 *  - "result if done": 1/0 + out-param (returncode) vs status (result).
 *  - cio_timeout_end closes a scope that has no _init / _fini naming.
 */

#ifdef __cplusplus
}
#endif
#endif /* CIO_H */
