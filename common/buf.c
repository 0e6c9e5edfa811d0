/*
 * buf.c - a growable byte buffer (see buf.h).
 */
#include "common/buf.h"
#include "common/cgerr.h"

#include <stdlib.h>
#include <string.h>

int
buf_reserve(struct buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return CG_OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return CG_ENOMEM;
    b->data = d;
    b->cap = cap;
    return CG_OK;
}

int
buf_add(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != CG_OK)
        return CG_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CG_OK;
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n == 0)
        return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void
buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){ 0 };
}
