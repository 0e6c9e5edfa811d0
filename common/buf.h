/*
 * buf.h - a growable byte buffer, kept NUL-terminated after every append
 * so text in it can be used as a C string.
 */
#ifndef CG_BUF_H
#define CG_BUF_H

#include <stddef.h>

struct buf {
    char *data;     /* NULL until the first append */
    size_t len, cap;
};

/* Makes room for n more bytes and a NUL. CG_OK or CG_ENOMEM (b unchanged). */
int buf_reserve(struct buf *b, size_t n);

/* Appends n bytes of p. CG_OK or CG_ENOMEM (b unchanged). */
int buf_add(struct buf *b, const void *p, size_t n);

/* Drops the first n (<= len) bytes. */
void buf_consume(struct buf *b, size_t n);

/* Frees the data; b is empty and may be used again. */
void buf_free(struct buf *b);

#endif
