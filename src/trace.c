/* The timeline trace: what a loop did, when, as Chrome's Trace Event
 * Format (JSON), which Perfetto (ui.perfetto.dev) and chrome://tracing
 * show as one row per task, one for the loop's own callbacks, one per
 * executor worker; tools/trace_svg.py draws it as a picture.
 *
 * Cheap when off: every hook is one test of loop->trace. Cheap when on:
 * an event is a fixed-size record appended to the loop's array (a clock
 * read, a store); the JSON is written only when the trace ends. Every
 * record is made on the loop's thread (executor jobs are timed by their
 * worker and recorded when their result reaches the loop), so the array
 * needs no lock.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One event, 48 bytes. dur < 0: an instant. name is a static string; a
 * row's name is owned (tasks rename themselves, and die). */
typedef struct trace_ev {
    double ts, dur;          /* seconds on CLOCK_MONOTONIC */
    uint64_t row;            /* 0 the loop, a task's id, or a worker's */
    const char *name;
    char *row_name;          /* set: this event names its row (owned) */
    int fd;                  /* an instant's "fd" argument, or -1 */
} trace_ev;
_Static_assert(sizeof(void *) != 8 || sizeof(trace_ev) == 48,
               "the documented cost of an event");

struct cio__trace {
    char *path;              /* owned */
    unsigned number;         /* the "process" a loop shows as */
    double t0;               /* when it started: ts 0 */
    trace_ev *ev;
    size_t n, cap;
    bool failed;             /* an event was lost for want of memory */
};

double cio__trace_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static trace_ev *append(cio__trace *tr)
{
    if (tr->n == tr->cap) {
        trace_ev *v = cio__grow(tr->ev, &tr->cap, tr->n + 1, sizeof *v, 4096);
        if (!v) {
            tr->failed = true;
            return NULL;
        }
        tr->ev = v;
    }
    return &tr->ev[tr->n++];
}

void cio__trace_slice(cio__trace *tr, uint64_t row, const char *name,
                      double from, double to)
{
    trace_ev *e = append(tr);
    if (from < tr->t0) /* it began before the trace did */
        from = tr->t0;
    if (e)
        *e = (trace_ev){from, to - from, row, name, NULL, -1};
}

void cio__trace_instant(cio__trace *tr, uint64_t row, const char *name,
                        int fd)
{
    trace_ev *e = append(tr);
    if (e)
        *e = (trace_ev){cio__trace_clock(), -1, row, name, NULL, fd};
}

void cio__trace_name_row(cio__trace *tr, uint64_t row, const char *name)
{
    char *copy = cio__strdup(name);
    trace_ev *e = copy ? append(tr) : NULL;
    if (!e) {
        cio__free(copy);
        tr->failed = true;
        return;
    }
    *e = (trace_ev){cio__trace_clock(), -1, row, NULL, copy, -1};
}

/* --------------------------------------------------------------- writing */

void cio__json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void put_event(FILE *f, const cio__trace *tr, const trace_ev *e)
{
    double us = (e->ts - tr->t0) * 1e6;
    if (e->row_name) {
        fprintf(f, "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%u,"
                   "\"tid\":%llu,\"args\":{\"name\":",
                tr->number, (unsigned long long)e->row);
        cio__json_string(f, e->row_name);
        fprintf(f, "}},\n{\"ph\":\"M\",\"name\":\"thread_sort_index\","
                   "\"pid\":%u,\"tid\":%llu,\"args\":{\"sort_index\":%llu}}",
                tr->number, (unsigned long long)e->row,
                (unsigned long long)e->row);
        return;
    }
    fprintf(f, "{\"ph\":\"%s\",\"name\":", e->dur < 0 ? "i" : "X");
    cio__json_string(f, e->name);
    fprintf(f, ",\"pid\":%u,\"tid\":%llu,\"ts\":%.3f", tr->number,
            (unsigned long long)e->row, us);
    if (e->dur < 0)
        fputs(",\"s\":\"t\"", f);
    else
        fprintf(f, ",\"dur\":%.3f", e->dur * 1e6);
    if (e->fd >= 0)
        fprintf(f, ",\"args\":{\"fd\":%d}", e->fd);
    fputc('}', f);
}

/* The executor workers' rows are named as the file is written: once
 * each, after the events (a trace has a handful of workers). */
static void name_workers(FILE *f, const cio__trace *tr)
{
    uint64_t seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < tr->n; i++) {
        uint64_t row = tr->ev[i].row;
        if (row < CIO__TRACE_WORKER)
            continue;
        size_t k = 0;
        while (k < nseen && seen[k] != row)
            k++;
        if (k < nseen || nseen == 64)
            continue;
        seen[nseen++] = row;
        fprintf(f, ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%u,"
                   "\"tid\":%llu,\"args\":{\"name\":\"executor worker %llu\"}}",
                tr->number, (unsigned long long)row,
                (unsigned long long)(row - CIO__TRACE_WORKER));
    }
}

/* Writes the whole trace to its file: a JSON object, its events in the
 * order they were recorded (a slice when it ended). */
static int write_trace(const cio__trace *tr)
{
    FILE *f = fopen(tr->path, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"lost_events\":"
               "%s},\n\"traceEvents\":[\n{\"ph\":\"M\",\"name\":"
               "\"process_name\",\"pid\":%u,\"args\":{\"name\":\"cio loop "
               "%u\"}},\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%u,"
               "\"tid\":0,\"args\":{\"name\":\"loop callbacks\"}}",
            tr->failed ? "true" : "false", tr->number, tr->number,
            tr->number);
    for (size_t i = 0; i < tr->n; i++) {
        fputs(",\n", f);
        put_event(f, tr, &tr->ev[i]);
    }
    name_workers(f, tr);
    fputs("\n]}\n", f);
    int err = ferror(f) ? -EIO : 0;
    if (fclose(f) && !err)
        err = -errno;
    return err;
}

static void trace_free(cio__trace *tr)
{
    for (size_t i = 0; i < tr->n; i++)
        cio__free(tr->ev[i].row_name);
    cio__free(tr->ev);
    cio__free(tr->path);
    cio__free(tr);
}

int cio__trace_end(cio_loop *loop)
{
    cio__trace *tr = loop->trace;
    if (!tr)
        return 0;
    loop->trace = NULL;
    int err = write_trace(tr);
    trace_free(tr);
    return err;
}

/* $CIO_TRACE: the second and later loops of the process trace to
 * path.2, path.3, ... */
static atomic_uint loops_traced;

int cio__trace_begin(cio_loop *loop, const char *path, bool numbered)
{
    unsigned number = atomic_fetch_add(&loops_traced, 1) + 1;
    cio__trace *tr = cio__calloc(1, sizeof *tr);
    if (!tr)
        return -ENOMEM;
    size_t len = strlen(path) + 16;
    tr->path = cio__malloc(len);
    if (!tr->path) {
        cio__free(tr);
        return -ENOMEM;
    }
    if (numbered && number > 1)
        snprintf(tr->path, len, "%s.%u", path, number);
    else
        snprintf(tr->path, len, "%s", path);
    /* The file must be writable now, not only when the trace ends. */
    FILE *f = fopen(tr->path, "w");
    if (!f) {
        int err = -errno;
        trace_free(tr);
        return err;
    }
    fclose(f);
    tr->number = number;
    tr->t0 = cio__trace_clock();
    loop->trace = tr;
    return 0;
}
