/* The one indirection under every allocation and system call, so a test
 * can make the N-th one fail (SQLite's and neco's approach), and a count of
 * live allocations, so a test can prove nothing leaked. */
#define _GNU_SOURCE
/* off_t is 64-bit everywhere here, so sendfile and pread reach past 4 GiB
 * on 32-bit builds too; offsets leave this file as int64_t. */
#define _FILE_OFFSET_BITS 64
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(off_t) == 8, "sendfile offsets must reach past 4 GiB");

static atomic_long live_allocs;
static atomic_uint fault_kinds; /* 0: disarmed (the fast path) */
static atomic_long fault_countdown;
static atomic_int fault_err;
static atomic_int fault_hit;
static const char *_Atomic fault_call; /* NULL: every system call counts */

void cio__fault_arm(unsigned kinds, long nth, int err)
{
    cio__fault_arm_call(kinds, nth, err, NULL);
}

void cio__fault_arm_call(unsigned kinds, long nth, int err, const char *call)
{
    atomic_store(&fault_hit, 0);
    atomic_store(&fault_err, err > 0 ? err : -err);
    atomic_store(&fault_countdown, nth);
    atomic_store(&fault_call, call);
    atomic_store(&fault_kinds, kinds);
}

void cio__fault_disarm(void) { atomic_store(&fault_kinds, 0); }
int cio__fault_fired(void) { return atomic_load(&fault_hit); }
long cio__alloc_live(void) { return atomic_load(&live_allocs); }

/* Whether the system call written as `expr` ("epoll_wait(epfd, ...)") is
 * the one the armed fault is restricted to. A call without a name (NULL
 * expr) counts only when the fault names none. */
static bool call_matches(const char *expr)
{
    const char *call = atomic_load(&fault_call);
    if (!call)
        return true;
    if (!expr)
        return false;
    size_t n = strlen(call);
    return strncmp(expr, call, n) == 0 && expr[n] == '(';
}

/* Returns 0 to go ahead, or the (negative) error this call must fail with.
 * Disarmed, it is one relaxed load. Once the countdown reaches the armed
 * call, that call fails, and with CIO__FAULT_PERSIST every later one too,
 * until disarmed. */
int cio__fault_check_call(unsigned kind, const char *expr)
{
    unsigned kinds =
        atomic_load_explicit(&fault_kinds, memory_order_relaxed);
    if (cio__likely(!(kinds & kind)))
        return 0;
    if (kind == CIO__FAULT_SYS && !call_matches(expr))
        return 0;
    long left = atomic_fetch_sub(&fault_countdown, 1);
    if (left > 1 || (left < 1 && !(kinds & CIO__FAULT_PERSIST)))
        return 0;
    if (!(kinds & CIO__FAULT_PERSIST))
        atomic_store(&fault_kinds, 0);
    atomic_store(&fault_hit, 1);
    return kind == CIO__FAULT_ALLOC ? -ENOMEM : -atomic_load(&fault_err);
}

int cio__fault_check(unsigned kind) { return cio__fault_check_call(kind, NULL); }

void *cio__malloc(size_t n)
{
    if (cio__fault_check(CIO__FAULT_ALLOC))
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
    return p;
}

void *cio__calloc(size_t n, size_t size)
{
    if (cio__fault_check(CIO__FAULT_ALLOC))
        return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p)
        atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
    return p;
}

/* Like realloc, but on failure the old block stays valid and counted. */
void *cio__realloc(void *p, size_t n)
{
    if (!p)
        return cio__malloc(n);
    if (cio__fault_check(CIO__FAULT_ALLOC))
        return NULL;
    return realloc(p, n ? n : 1);
}

/* The one way cio grows an array: returns arr resized to hold at least
 * `need` elements of `size` bytes (doubling from *cap, or from `first`
 * when empty) and updates *cap; NULL on overflow or ENOMEM, with arr and
 * *cap left as they were. New elements are uninitialised. */
void *cio__grow(void *arr, size_t *cap, size_t need, size_t size,
                size_t first)
{
    if (need <= *cap)
        return arr;
    size_t n = *cap ? *cap : first;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return NULL;
        n *= 2;
    }
    if (n > SIZE_MAX / size)
        return NULL;
    void *p = cio__realloc(arr, n * size);
    if (p)
        *cap = n;
    return p;
}

char *cio__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = cio__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void cio__free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&live_allocs, 1, memory_order_relaxed);
    free(p);
}

void *cio__big_alloc(size_t n)
{
    if (cio__fault_check(CIO__FAULT_ALLOC))
        return NULL;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
    return p;
}

void cio__big_free(void *p, size_t n)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&live_allocs, 1, memory_order_relaxed);
    munmap(p, n);
}

/* Wraps a -1/errno call into a -errno return, after the fault check. */
#define SYSCALL(expr)                                                          \
    do {                                                                       \
        int fault_ = cio__fault_check_call(CIO__FAULT_SYS, #expr);             \
        if (fault_)                                                            \
            return fault_;                                                     \
        long r_ = (long)(expr);                                                \
        return r_ < 0 ? -errno : r_;                                           \
    } while (0)

int cio__sys_epoll_create1(int flags) { SYSCALL(epoll_create1(flags)); }
int cio__sys_epoll_ctl(int epfd, int op, int fd, void *event)
{
    SYSCALL(epoll_ctl(epfd, op, fd, event));
}
int cio__sys_epoll_wait(int epfd, void *events, int max, int timeout_ms)
{
    SYSCALL(epoll_wait(epfd, events, max, timeout_ms));
}
int cio__sys_poll(void *fds, unsigned long n, int timeout_ms)
{
    SYSCALL(poll(fds, n, timeout_ms));
}
int cio__sys_eventfd(unsigned initval, int flags)
{
    SYSCALL(eventfd(initval, flags));
}
ssize_t cio__sys_read(int fd, void *buf, size_t n) { SYSCALL(read(fd, buf, n)); }
ssize_t cio__sys_write(int fd, const void *buf, size_t n)
{
    SYSCALL(write(fd, buf, n));
}
int cio__sys_madvise(void *addr, size_t len, int advice)
{
    SYSCALL(madvise(addr, len, advice));
}
int cio__sys_mincore(void *addr, size_t len, unsigned char *vec)
{
    SYSCALL(mincore(addr, len, vec));
}
int cio__sys_mprotect(void *addr, size_t len, int prot)
{
    SYSCALL(mprotect(addr, len, prot));
}
int cio__sys_munmap(void *addr, size_t len) { SYSCALL(munmap(addr, len)); }

int cio__sys_socket(int domain, int type, int protocol)
{
    SYSCALL(socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
}
int cio__sys_bind(int fd, const void *addr, unsigned len)
{
    SYSCALL(bind(fd, addr, len));
}
int cio__sys_listen(int fd, int backlog) { SYSCALL(listen(fd, backlog)); }
int cio__sys_accept(int fd, void *addr, unsigned *len)
{
    SYSCALL(accept4(fd, addr, (socklen_t *)len, SOCK_NONBLOCK | SOCK_CLOEXEC));
}
int cio__sys_connect(int fd, const void *addr, unsigned len)
{
    SYSCALL(connect(fd, addr, len));
}
ssize_t cio__sys_recv(int fd, void *buf, size_t n) { SYSCALL(recv(fd, buf, n, 0)); }
/* MSG_NOSIGNAL: a peer that went away is -EPIPE, never SIGPIPE. */
ssize_t cio__sys_send(int fd, const void *buf, size_t n)
{
    SYSCALL(send(fd, buf, n, MSG_NOSIGNAL));
}
ssize_t cio__sys_sendv(int fd, const struct iovec *iov, int n)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    SYSCALL(sendmsg(fd, &msg, MSG_NOSIGNAL));
}
/* recvmsg, so the kernel's MSG_TRUNC (the datagram was longer than n)
 * reaches *out_flags. With MSG_TRUNC in flags (datagram sockets only: TCP
 * reads it as "discard") the result is the datagram's full length. */
static ssize_t recvmsg_from(int fd, void *buf, size_t n, void *addr,
                            unsigned *len, int flags, int *out_flags)
{
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    struct msghdr msg = {.msg_name = addr, .msg_namelen = addr ? *len : 0,
                         .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t r = recvmsg(fd, &msg, flags);
    if (r >= 0 && addr)
        *len = msg.msg_namelen;
    *out_flags = r >= 0 ? msg.msg_flags : 0;
    return r;
}
ssize_t cio__sys_recvfrom(int fd, void *buf, size_t n, void *addr,
                          unsigned *len, int flags, int *out_flags)
{
    *out_flags = 0;
    SYSCALL(recvmsg_from(fd, buf, n, addr, len, flags, out_flags));
}
ssize_t cio__sys_sendto(int fd, const void *buf, size_t n, const void *addr,
                        unsigned len)
{
    SYSCALL(sendto(fd, buf, n, MSG_NOSIGNAL, addr, len));
}
int cio__sys_shutdown(int fd, int how) { SYSCALL(shutdown(fd, how)); }
int cio__sys_setsockopt(int fd, int level, int name, int value)
{
    SYSCALL(setsockopt(fd, level, name, &value, sizeof value));
}
/* SO_LINGER on with a zero timeout: closing fd resets the connection. */
static int linger_zero(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}
int cio__sys_reset_on_close(int fd) { SYSCALL(linger_zero(fd)); }
/* Reads and clears a socket's pending error (0 or -errno). */
int cio__sys_socket_error(int fd)
{
    int fault = cio__fault_check(CIO__FAULT_SYS);
    if (fault)
        return fault;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* write() and sendfile() have no MSG_NOSIGNAL: a write to a pipe whose
 * reader is gone, or a sendfile to a socket whose peer is, raises SIGPIPE.
 * So the signal is blocked around the call, and the one the call raised
 * (if it was not already pending) is taken, so the caller sees -EPIPE.
 * A program that ignores SIGPIPE (servers do: nginx, Python, Go) needs
 * none of it, and one look at the disposition costs one system call
 * where the guard costs three. It is looked at each time: the program
 * may change it whenever it likes. */
typedef struct sigpipe_guard {
    sigset_t pipe_only, old;
    bool was_pending, unguarded;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t pending;
    struct sigaction now;
    g->unguarded = sigaction(SIGPIPE, NULL, &now) == 0 &&
                   now.sa_handler == SIG_IGN && !(now.sa_flags & SA_SIGINFO);
    if (g->unguarded)
        return;
    sigemptyset(&g->pipe_only);
    sigaddset(&g->pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &g->pipe_only, &g->old);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

/* r and err: the call's result and errno. */
static void sigpipe_unblock(sigpipe_guard *g, ssize_t r, int err)
{
    if (g->unguarded)
        return;
    if (r < 0 && err == EPIPE && !g->was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&g->pipe_only, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

ssize_t cio__sys_writev_pipe(int fd, const struct iovec *iov, int n)
{
    int fault = cio__fault_check(CIO__FAULT_SYS);
    if (fault)
        return fault;
    sigpipe_guard g;
    sigpipe_block(&g);
    ssize_t r = writev(fd, iov, n);
    int err = errno;
    sigpipe_unblock(&g, r, err);
    return r < 0 ? -err : r;
}

ssize_t cio__sys_sendfile(int out, int in, int64_t offset, size_t n)
{
    int fault = cio__fault_check_call(CIO__FAULT_SYS, "sendfile()");
    if (fault)
        return fault;
    off_t off = offset;
    sigpipe_guard g;
    sigpipe_block(&g);
    ssize_t r = sendfile(out, in, &off, n);
    int err = errno;
    sigpipe_unblock(&g, r, err);
    return r < 0 ? -err : r;
}

ssize_t cio__sys_pread(int fd, void *buf, size_t n, int64_t offset)
{
    SYSCALL(pread(fd, buf, n, offset));
}

static int socket_type(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ? -1 : type;
}
int cio__sys_socket_type(int fd) { SYSCALL(socket_type(fd)); }

/* close is never failed by injection: a failed close cannot be retried
 * (the fd is gone either way), so there is no error path to test. */
int cio__sys_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int cio__sys_fstat_mode(int fd, unsigned *mode)
{
    struct stat st;
    int fault = cio__fault_check(CIO__FAULT_SYS);
    if (fault)
        return fault;
    if (fstat(fd, &st) < 0)
        return -errno;
    *mode = st.st_mode;
    return 0;
}

/* Starts a thread with every signal blocked: signals belong to the
 * loop's thread, never to cio's workers. */
int cio__sys_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int fault = cio__fault_check_call(CIO__FAULT_SYS, "pthread_create()");
    if (fault)
        return fault;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -err;
}

void *cio__sys_mmap(size_t len, int *err)
{
    *err = cio__fault_check_call(CIO__FAULT_SYS, "mmap()");
    if (*err)
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        *err = -errno;
        return NULL;
    }
    return p;
}

_Noreturn void cio__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "cio: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
