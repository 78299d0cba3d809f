/* A chat server: every line a client sends goes to all the others.
 *
 * Each connection is a task (cio_start_server) that reads its client's
 * lines and writes them to every other member of the room. The room is a
 * plain linked list, shared by all the tasks without a lock: only one
 * task runs at a time, and a task is only ever suspended inside a cio
 * call that waits - never in the middle of the list code.
 *
 * Three clients, alice, bob and carol, join one after another, say a
 * line each and leave. Each client reacts to what it hears (alice speaks
 * once carol has joined, bob answers alice, ...), so everything happens
 * in the same order on every run. At the end each client's transcript is
 * printed: what it heard, and what it said ("me").
 */
#include <cio.h>

#include <stdio.h>
#include <string.h>

/* ---- the server */

typedef struct member {
    char name[32];
    cio_stream *s;
    struct member *next;
} member;

static member *room; /* everyone who has joined and not left */
static int room_size;

/* Sends one line to everyone in the room except `from`. */
static void broadcast(const member *from, const struct iovec *iov, int n)
{
    for (member *m = room; m; m = m->next)
        if (m != from)
            /* Never waits. A member who stops reading makes its buffer
             * grow: a real server would drain it with a timeout and drop
             * it when it falls behind (chapter 9, bad peers). An error
             * means that member is already leaving: nothing to do. */
            (void)cio_stream_writelines(m->s, iov, n);
}

/* Tells everyone in the room except `from` what happened. */
static void announce(const member *from, const char *what)
{
    char text[80];
    int len = snprintf(text, sizeof text, "* %s %s\n", from->name, what);
    struct iovec iov = {text, (size_t)len};
    broadcast(from, &iov, 1);
}

static int handle_member(cio_stream *s, void *arg)
{
    (void)arg;
    member me = {.s = s};
    /* The first line is the client's name. */
    const char *line;
    ssize_t n = cio_stream_readline(s, &line);
    if (n <= 1 || line[n - 1] != '\n' || (size_t)n > sizeof me.name)
        return n < 0 ? (int)n : 0; /* left early, or no proper name */
    memcpy(me.name, line, (size_t)n - 1); /* without the '\n' */

    me.next = room;
    room = &me;
    room_size++;
    printf("server: %s joined (%d here)\n", me.name, room_size);
    announce(&me, "joined");
    char welcome[64];
    int len = snprintf(welcome, sizeof welcome, "* welcome, %s\n", me.name);
    int err = cio_stream_write(s, welcome, (size_t)len);

    while (!err) {
        n = cio_stream_readline(s, &line);
        if (n <= 0) {
            err = (int)n; /* 0: EOF, the client left */
            break;
        }
        printf("server: %s says %.*s", me.name, (int)n, line);
        struct iovec iov[] = {
            {me.name, strlen(me.name)}, {": ", 2}, {(void *)line, (size_t)n}};
        broadcast(&me, iov, 3); /* one gathered write per member */
    }
    if (err)
        printf("server: %s: %s\n", me.name, cio_strerror(err));

    for (member **p = &room; *p; p = &(*p)->next) /* leave the room */
        if (*p == &me) {
            *p = me.next;
            break;
        }
    room_size--;
    printf("server: %s left (%d here)\n", me.name, room_size);
    announce(&me, "left");
    return err; /* `me` lived on this task's stack: it is gone with it */
}

/* ---- the clients */

typedef struct client {
    const char *name;
    cio_event *join_after; /* wait for this before joining (or NULL) */
    cio_event joined;      /* set when the server welcomes us */
    const char *speak_on;  /* say our line on hearing a line starting so */
    const char *says;
    const char *leave_on;  /* leave on hearing a line starting so */
    char transcript[512];
    size_t len;
} client;

static char port[16];

static void note(client *c, const char *prefix, const char *text, size_t n)
{
    int len = snprintf(c->transcript + c->len, sizeof c->transcript - c->len,
                       "  %s%.*s", prefix, (int)n, text);
    if (len > 0 && (size_t)len < sizeof c->transcript - c->len)
        c->len += (size_t)len;
}

static int starts(const char *line, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(line, prefix, k) == 0;
}

static int chat_client(void *arg)
{
    client *c = arg;
    int err = c->join_after ? cio_event_wait(c->join_after) : 0;
    cio_stream *s = NULL;
    if (!err)
        err = cio_open_connection("127.0.0.1", port, NULL, &s);
    if (!err)
        err = cio_stream_write(s, c->name, strlen(c->name));
    if (!err)
        err = cio_stream_write(s, "\n", 1);
    while (!err) {
        const char *line;
        ssize_t n = cio_stream_readline(s, &line);
        if (n <= 0) {
            err = (int)n; /* 0: the server closed after we left */
            break;
        }
        note(c, "", line, (size_t)n);
        if (starts(line, (size_t)n, "* welcome"))
            cio_event_set(&c->joined); /* the next one may come */
        if (starts(line, (size_t)n, c->speak_on)) {
            note(c, "me: ", c->says, strlen(c->says));
            err = cio_stream_write(s, c->says, strlen(c->says));
        }
        if (!err && starts(line, (size_t)n, c->leave_on))
            err = cio_stream_write_eof(s); /* the server sees EOF */
    }
    cio_stream_free(s); /* NULL is fine */
    cio_event_set(&c->joined); /* never leave the next one waiting */
    return err;
}

static client alice = {.name = "alice",
                       .speak_on = "* carol joined",
                       .says = "hello everyone\n",
                       .leave_on = "carol:"};
static client bob = {.name = "bob",
                     .join_after = &alice.joined,
                     .speak_on = "alice:",
                     .says = "hi alice\n",
                     .leave_on = "* alice left"};
static client carol = {.name = "carol",
                       .join_after = &bob.joined,
                       .speak_on = "bob:",
                       .says = "hey, both of you\n",
                       .leave_on = "* bob left"};

static int main_task(void *arg)
{
    (void)arg;
    cio_server *server;
    int err = cio_start_server(handle_member, NULL, "127.0.0.1", "0", NULL,
                               NULL, &server);
    if (err) {
        fprintf(stderr, "cannot listen: %s\n", cio_strerror(err));
        return err;
    }
    snprintf(port, sizeof port, "%d", cio_server_port(server));

    client *clients[] = {&alice, &bob, &carol};
    cio_call calls[3];
    for (size_t i = 0; i < 3; i++)
        calls[i] = (cio_call){chat_client, clients[i]};
    cio_result results[3];
    err = cio_gather_calls(calls, 3, 1, results); /* 1: wait for all */
    for (size_t i = 0; i < 3 && !err; i++)
        if (results[i].status < 0)
            err = results[i].status;

    cio_server_close(server);
    int closed = cio_server_wait_closed(server);
    cio_server_free(server);
    if (err || closed) {
        fprintf(stderr, "chat failed: %s\n", cio_strerror(err ? err : closed));
        return err ? err : closed;
    }
    for (size_t i = 0; i < 3; i++)
        printf("%s's transcript:\n%.*s", clients[i]->name,
               (int)clients[i]->len, clients[i]->transcript);
    return 0;
}

int main(void)
{
    return cio_run(main_task, NULL) == 0 ? 0 : 1;
}
