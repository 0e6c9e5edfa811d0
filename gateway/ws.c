/*
 * ws.c - a WebSocket connection over libwslay's event API (see ws.h).
 */
#include "gateway/ws.h"

#include "common/cgerr.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

struct ws {
    int fd;
    wslay_event_context_ptr ctx;
    struct ws_sink sink;
    unsigned char *extra;         /* bytes read before the upgrade, served first */
    size_t extra_len, extra_at;
    size_t max_queued;            /* ws_send() refuses beyond */
    unsigned short close_code;    /* ws_close_when_sent(): to send once drained */
    const char *close_reason;
    bool closing;                 /* no more messages are queued */
    bool failed;                  /* the socket failed or closed */
};

static ssize_t
recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws *w = user;
    (void)flags;
    if (w->extra_at < w->extra_len) {
        size_t n = w->extra_len - w->extra_at < len ? w->extra_len - w->extra_at : len;
        memcpy(buf, w->extra + w->extra_at, n);
        w->extra_at += n;
        return (ssize_t)n;
    }
    ssize_t r;
    while ((r = recv(w->fd, buf, len, 0)) < 0 && errno == EINTR)
        ;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r <= 0) {
        w->failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static ssize_t
send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    struct ws *w = user;
    ssize_t r;
    /* wslay writes a frame's header and payload apart: MSG_MORE holds the
     * header back so the frame leaves as one segment. */
    int f = MSG_NOSIGNAL | (flags & WSLAY_MSG_MORE ? MSG_MORE : 0);
    while ((r = send(w->fd, data, len, f)) < 0 && errno == EINTR)
        ;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r < 0) {
        w->failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static void
msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct ws *w = user;
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        w->sink.on_message(w->sink.ctx, arg->msg, arg->msg_length,
                           arg->opcode == WSLAY_BINARY_FRAME);
}

struct ws *
ws_new(int fd, const char *extra, size_t n, struct ws_sink sink)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb, .send_callback = send_cb, .on_msg_recv_callback = msg_cb,
    };
    struct ws *w = calloc(1, sizeof *w);

    if (!w)
        return NULL;
    w->fd = fd;
    w->sink = sink;
    if (n) {
        w->extra = malloc(n);
        if (!w->extra) {
            free(w);
            return NULL;
        }
        memcpy(w->extra, extra, n);
        w->extra_len = n;
    }
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0) {
        free(w->extra);
        free(w);
        return NULL;
    }
    ws_set_limits(w, WS_MAX_MESSAGE, WS_MAX_QUEUED);
    /* Messages are small and answered at once: without this, Nagle's
     * algorithm and the client's delayed ACK add ~40 ms to each one. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return w;
}

void
ws_set_limits(struct ws *w, size_t max_message, size_t max_queued)
{
    if (max_message)
        wslay_event_config_set_max_recv_msg_length(w->ctx, max_message);
    if (max_queued)
        w->max_queued = max_queued;
}

void
ws_destroy(struct ws **wp)
{
    if (!wp || !*wp)
        return;
    wslay_event_context_free((*wp)->ctx);
    free((*wp)->extra);
    free(*wp);
    *wp = NULL;
}

int
ws_fd(const struct ws *w)
{
    return w->fd;
}

short
ws_events(const struct ws *w)
{
    short ev = 0;
    if (wslay_event_want_read(w->ctx))
        ev |= POLLIN;
    if (wslay_event_want_write(w->ctx))
        ev |= POLLOUT;
    return ev;
}

/* True while there is something to do or the peer may still speak. */
static bool
alive(const struct ws *w)
{
    return !w->failed && (wslay_event_want_read(w->ctx) || wslay_event_want_write(w->ctx));
}

/* Queues the close of ws_close_when_sent() once nothing else is queued. */
static void
close_if_drained(struct ws *w)
{
    if (w->close_code && wslay_event_get_queued_msg_count(w->ctx) == 0) {
        wslay_event_queue_close(w->ctx, w->close_code, (const uint8_t *)w->close_reason,
                                strlen(w->close_reason));
        w->close_code = 0;
    }
}

bool
ws_handle(struct ws *w, bool readable, bool writable)
{
    /* Bytes that came with the upgrade are read as if the socket had them. */
    if ((readable || w->extra_at < w->extra_len) && wslay_event_want_read(w->ctx)
        && wslay_event_recv(w->ctx) != 0)
        return false;
    if ((writable || wslay_event_want_write(w->ctx)) && wslay_event_send(w->ctx) != 0)
        return false;
    if (w->close_code) {
        close_if_drained(w);
        if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0)
            return false;
    }
    return alive(w);
}

int
ws_send(struct ws *w, const void *data, size_t len, bool binary)
{
    struct wslay_event_msg m = { binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len };
    size_t queued = ws_queued(w);
    if (w->failed || w->closing)
        return CG_ESYS;
    if (queued && queued + len > w->max_queued)
        return CG_ETOOBIG;
    if (wslay_event_queue_msg(w->ctx, &m) != 0)
        return CG_ESYS;
    if (wslay_event_send(w->ctx) != 0) {
        w->failed = true;
        return CG_ESYS;
    }
    return CG_OK;
}

void
ws_ping(struct ws *w)
{
    struct wslay_event_msg m = { WSLAY_PING, (const uint8_t *)"", 0 };
    if (!w->failed && wslay_event_queue_msg(w->ctx, &m) == 0 && wslay_event_send(w->ctx) != 0)
        w->failed = true;
}

void
ws_close(struct ws *w, unsigned short code, const char *reason)
{
    w->closing = true;
    w->close_code = 0;
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    wslay_event_send(w->ctx);
}

void
ws_close_when_sent(struct ws *w, unsigned short code, const char *reason)
{
    if (w->closing)
        return;
    w->closing = true;
    w->close_code = code;
    w->close_reason = reason ? reason : "";
    close_if_drained(w);
    if (!w->failed && wslay_event_send(w->ctx) != 0)
        w->failed = true;
}

size_t
ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}
