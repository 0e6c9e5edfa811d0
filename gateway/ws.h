/*
 * ws.h - one server-side WebSocket connection on a socket that an HTTP
 * upgrade handed over: libwslay does the framing (masking, fragments,
 * control frames, close handshake); this module moves bytes between wslay
 * and the non-blocking socket and hands whole messages to a sink. It knows
 * nothing of kernels or Jupyter.
 */
#ifndef CG_GW_WS_H
#define CG_GW_WS_H

#include <stdbool.h>
#include <stddef.h>

struct ws;

/* Where a connection's messages go. */
struct ws_sink {
    /* One whole message from the peer; data is borrowed for the call.
     * The callee may queue sends but not destroy the connection. */
    void (*on_message)(void *ctx, const unsigned char *data, size_t len, bool binary);
    void *ctx;
};

/* Largest message accepted from a peer; a larger one closes with 1009. */
#define WS_MAX_MESSAGE (64u << 20)
/* Most bytes queued for a peer and not yet written before ws_send()
 * refuses more (one message is always taken when nothing is queued). */
#define WS_MAX_QUEUED (16u << 20)

/*
 * Takes over fd (made non-blocking; not closed by this module: the
 * upgrade's owner closes it) and the bytes already read past the HTTP
 * request (extra, n: copied). Returns NULL on no memory.
 */
struct ws *ws_new(int fd, const char *extra, size_t n, struct ws_sink sink);

/* Sets the bounds (defaults WS_MAX_MESSAGE, WS_MAX_QUEUED; 0 keeps one). */
void ws_set_limits(struct ws *w, size_t max_message, size_t max_queued);

/* Frees the connection (not the fd) and nulls *w. Idempotent. */
void ws_destroy(struct ws **w);

/* The socket, and the poll events (POLLIN, POLLOUT) it is waiting for. */
int ws_fd(const struct ws *w);
short ws_events(const struct ws *w);

/*
 * Reads and writes what the socket allows, delivering whole messages to
 * the sink. Returns true while the connection lives; false once it closed
 * or failed (then destroy it).
 */
bool ws_handle(struct ws *w, bool readable, bool writable);

/* Queues one message (copied) and writes what the socket takes now.
 * Returns CG_OK, CG_ETOOBIG when the peer has not read what was queued
 * (the bound of ws_set_limits), or CG_ESYS when the connection is closing
 * or failed. */
int ws_send(struct ws *w, const void *data, size_t len, bool binary);

/* Queues a ping (the peer answers with a pong, which wslay takes). */
void ws_ping(struct ws *w);

/* Starts the close handshake with a status code and reason. */
void ws_close(struct ws *w, unsigned short code, const char *reason);

/* Starts the close handshake once every message queued so far is written
 * (ws_handle() goes on writing them); ws_send() refuses from now on.
 * reason is borrowed: a string literal. */
void ws_close_when_sent(struct ws *w, unsigned short code, const char *reason);

/* Bytes queued for the peer and not yet written. */
size_t ws_queued(const struct ws *w);

#endif
