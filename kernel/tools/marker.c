/*
 * marker.c - end-of-command markers in a session's output (see marker.h).
 */
#include "kernel/tools/marker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
marker_init(struct marker *m, const char *nonce)
{
    m->len = (size_t)snprintf(m->text, sizeof m->text, "\033]777;cg-%.32s;", nonce);
    m->hold_len = 0;
}

int
marker_scan(struct marker *m, const char *data, size_t len, marker_text_fn on_text,
            marker_end_fn on_end, void *ctx)
{
    size_t end = m->hold_len + len, at = 0;
    char *joined = NULL;
    const char *buf = data;

    /* Joined in a buffer only behind a held tail: a read is otherwise
     * scanned where it is. */
    if (m->hold_len) {
        if (!(joined = malloc(end)))
            return -1;
        memcpy(joined, m->hold, m->hold_len);
        if (len)
            memcpy(joined + m->hold_len, data, len);
        buf = joined;
    }
    m->hold_len = 0;
    while (at < end) {
        const char *hit = memmem(buf + at, end - at, m->text, m->len);
        if (!hit) {
            /* Hold the longest tail that is the start of a marker. */
            size_t keep = end - at < m->len ? end - at : m->len - 1;
            while (keep && memcmp(buf + end - keep, m->text, keep) != 0)
                keep--;
            if (end - at - keep)
                on_text(ctx, buf + at, end - at - keep);
            memcpy(m->hold, buf + end - keep, keep);
            m->hold_len = keep;
            break;
        }
        size_t mat = (size_t)(hit - buf), digits = mat + m->len, room = end - digits;
        if (mat > at)
            on_text(ctx, buf + at, mat - at);
        const char *bel = memchr(buf + digits, '\a', room < MARKER_DIGITS ? room : MARKER_DIGITS);
        if (!bel && room < MARKER_DIGITS) {
            memcpy(m->hold, buf + mat, end - mat); /* the rest is still coming */
            m->hold_len = end - mat;
            break;
        }
        char num[MARKER_DIGITS + 1] = { 0 }, *stop;
        if (bel)
            memcpy(num, buf + digits, (size_t)(bel - buf) - digits);
        long status = bel ? strtol(num, &stop, 10) : 0;
        if (!bel || num[0] < '0' || num[0] > '9' || *stop || status > 255) {
            on_text(ctx, buf + mat, 1); /* not one of ours after all */
            at = mat + 1;
            continue;
        }
        on_end(ctx, (int)status);
        at = (size_t)(bel - buf) + 1;
    }
    free(joined);
    return 0;
}

void
marker_flush(struct marker *m, marker_text_fn on_text, void *ctx)
{
    size_t n = m->hold_len;

    m->hold_len = 0;
    if (n)
        on_text(ctx, m->hold, n);
}
