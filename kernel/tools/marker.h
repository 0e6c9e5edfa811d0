/*
 * marker.h - finds the end-of-command markers in what an exec session's
 * shell prints (session.c). The shell's prompt is the marker
 * "ESC ] 777 ; cg-NONCE ; STATUS BEL"; everything else is the programs'
 * output, untrusted bytes that may contain anything, markers cut across
 * reads included.
 */
#ifndef CG_MARKER_H
#define CG_MARKER_H

#include <stddef.h>

#define MARKER_DIGITS 8   /* at most this many bytes between ';' and BEL */

struct marker {
    char text[48];        /* "\033]777;cg-NONCE;" */
    size_t len;
    char hold[48 + MARKER_DIGITS]; /* a marker's start, waiting for the rest */
    size_t hold_len;
};

/* Output text (len > 0) and marker status callbacks. */
typedef void (*marker_text_fn)(void *ctx, const char *text, size_t len);
typedef void (*marker_end_fn)(void *ctx, int status);

/* Sets m up for markers with nonce (at most 32 characters). */
void marker_init(struct marker *m, const char *nonce);

/*
 * Scans len bytes of output: text goes to on_text in order, each complete
 * marker to on_end (its status; a malformed one is text). A tail that may
 * be the start of a marker is held back for the next call. Returns 0, or
 * -1 when out of memory (nothing was delivered; the data is lost).
 */
int marker_scan(struct marker *m, const char *data, size_t len, marker_text_fn on_text,
                marker_end_fn on_end, void *ctx);

/* Lets out a held tail as text. */
void marker_flush(struct marker *m, marker_text_fn on_text, void *ctx);

#endif
