/* Intrusive circular doubly linked list with a sentinel head. O(1) insert
 * and unlink; an unlinked node points at itself, so unlinking twice is
 * harmless. */
#ifndef CIO_LIST_H
#define CIO_LIST_H

#include <stddef.h>

typedef struct cio__list {
    struct cio__list *next, *prev;
} cio__list;

#define cio__container_of(ptr, type, member)                                   \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void cio__list_init(cio__list *l) { l->next = l->prev = l; }
static inline int cio__list_empty(const cio__list *l) { return l->next == l; }

static inline void cio__list_push_back(cio__list *head, cio__list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void cio__list_unlink(cio__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

static inline cio__list *cio__list_pop_front(cio__list *head)
{
    cio__list *n = head->next;
    if (n == head)
        return NULL;
    cio__list_unlink(n);
    return n;
}

/* Moves every node of `from` to the end of `to`; `from` becomes empty. */
static inline void cio__list_splice(cio__list *to, cio__list *from)
{
    if (cio__list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    cio__list_init(from);
}

#endif
