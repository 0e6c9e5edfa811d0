/*
 * chan.c - the kernel's channels to its clients (see chan.h).
 *
 * The heartbeat echoes in a thread of its own (zmq_proxy on its socket), so
 * a kernel busy in a long cell never looks dead; everything else is the
 * loop thread's.
 */
#include "kernel/chan.h"

#include "common/cgerr.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/utf8.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define TRIM_AFTER_BYTES (1u << 20) /* give freed buffers back after this much output */

/* One message published while IOPub had no subscriber. */
struct held {
    wire_msg_t *m;              /* as built, signed when sent */
    size_t bytes;               /* counted against CHAN_HELD_BYTES */
    struct held *next;
};

struct chan {
    wire_t *wire;               /* signing and framing */
    void *zctx;
    void *sock[CH_COUNT];
    int early_fd[CH_COUNT];     /* listening before ZeroMQ starts, or -1 */
    pthread_t hb_thread;
    bool hb_started;
    wire_msg_t *current;        /* the shell request in service, owned */
    wire_msg_t *last;           /* the parent of late output, owned */
    size_t output_limit;        /* bytes per request, 0: none */
    size_t out_bytes;           /* charged to the current request */
    bool limit_hit;             /* ... which passed the limit */
    wire_msg_t **backlog;       /* shell requests taken off the socket */
    bool *backlog_abort;        /* ... and whether each is aborted */
    size_t backlog_len, backlog_cap;
    bool subscribed;            /* IOPub has a subscriber (see chan.h) */
    struct held *held, *held_tail; /* published while it had none, oldest first */
    size_t held_count, held_bytes, held_dropped;
};

/* ---- set-up and tear-down ----------------------------------------------- */

struct chan *
chan_new(const connfile_t *conn, size_t output_limit, char *err, size_t errlen)
{
    struct chan *c = calloc(1, sizeof *c);

    if (!c) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    c->output_limit = output_limit;
    for (int ch = 0; ch < CH_COUNT; ch++)
        c->early_fd[ch] = -1;
    c->wire = wire_new(conn->scheme, conn->key, 0, err, errlen);
    if (!c->wire) {
        free(c);
        return NULL;
    }
    return c;
}

void
chan_listen_early(struct chan *c, const connfile_t *conn)
{
    listen_take(conn, c->early_fd); /* what `cellgate kernel` opened before its exec */
    listen_open(conn, c->early_fd);
}

static void *
heartbeat_main(void *sock)
{
    /* Echo every ping back to its sender until the context terminates. */
    zmq_proxy(sock, sock, NULL);
    zmq_close(sock);
    return NULL;
}

int
chan_open(struct chan *c, const connfile_t *conn, char *err, size_t errlen)
{
    char eps[CH_COUNT][320];
    const char *ep[CH_COUNT];

    for (int ch = 0; ch < CH_COUNT; ch++) {
        if (connfile_endpoint(conn, (enum channel)ch, eps[ch], sizeof eps[ch]) != CG_OK)
            return cg_fail(err, errlen, CG_ETOOBIG, "endpoint too long");
        ep[ch] = eps[ch];
    }
    return chan_open_at(c, ep, err, errlen);
}

int
chan_open_at(struct chan *c, const char *const ep[CH_COUNT], char *err, size_t errlen)
{
    static const int types[CH_COUNT] = {
        [CH_SHELL] = ZMQ_ROUTER, [CH_IOPUB] = ZMQ_XPUB, [CH_STDIN] = ZMQ_ROUTER,
        [CH_CONTROL] = ZMQ_ROUTER, [CH_HB] = ZMQ_ROUTER,
    };

    c->zctx = zmq_ctx_new();
    if (!c->zctx)
        return cg_fail(err, errlen, CG_ESYS, "zmq_ctx_new: %s", zmq_strerror(errno));
    for (int ch = 0; ch < CH_COUNT; ch++) {
        int linger = ch == CH_HB ? 0 : 1000;
        int64_t maxsize = (int64_t)WIRE_DEFAULT_MAX_BYTES;
        c->sock[ch] = zmq_socket(c->zctx, types[ch]);
        if (!c->sock[ch])
            return cg_fail(err, errlen, CG_ESYS, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(c->sock[ch], ZMQ_LINGER, &linger, sizeof linger);
        /* A frame larger than a whole message may be is refused by ZeroMQ
         * itself, before it costs us memory. */
        zmq_setsockopt(c->sock[ch], ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
        if (ch == CH_IOPUB) {
            /* See every subscription, so each new subscriber is greeted. */
            int verbose = 1, hwm = CHAN_HELD_MSGS + 1000;
            zmq_setsockopt(c->sock[ch], ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose);
            /* Room for what was held, sent at once when a subscriber comes
             * (beyond its high-water mark a PUB drops what it sends). */
            zmq_setsockopt(c->sock[ch], ZMQ_SNDHWM, &hwm, sizeof hwm);
        }
        if (c->early_fd[ch] >= 0) { /* ZeroMQ listens on it and closes it */
            zmq_setsockopt(c->sock[ch], ZMQ_USE_FD, &c->early_fd[ch], sizeof c->early_fd[ch]);
            c->early_fd[ch] = -1;
        }
        if (zmq_bind(c->sock[ch], ep[ch]) != 0)
            return cg_fail(err, errlen, CG_ESYS, "cannot bind %s (%s): %s",
                           connfile_port_name((enum channel)ch), ep[ch], zmq_strerror(errno));
    }
    if (pthread_create(&c->hb_thread, NULL, heartbeat_main, c->sock[CH_HB]) != 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot start the heartbeat thread");
    c->hb_started = true;
    chan_status(c, NULL, "starting");
    return CG_OK;
}

void
chan_destroy(struct chan **cp)
{
    if (!cp || !*cp)
        return;
    struct chan *c = *cp;
    wire_msg_destroy(&c->current);
    wire_msg_destroy(&c->last);
    for (size_t i = 0; i < c->backlog_len; i++)
        wire_msg_destroy(&c->backlog[i]);
    free(c->backlog);
    free(c->backlog_abort);
    while (c->held) {
        struct held *h = c->held;
        c->held = h->next;
        wire_msg_destroy(&h->m);
        free(h);
    }
    if (c->zctx) {
        zmq_ctx_shutdown(c->zctx); /* ends the heartbeat's proxy */
        if (c->hb_started)
            pthread_join(c->hb_thread, NULL);
        else if (c->sock[CH_HB])
            zmq_close(c->sock[CH_HB]);
        for (int ch = 0; ch < CH_COUNT; ch++)
            if (ch != CH_HB && c->sock[ch])
                zmq_close(c->sock[ch]);
        zmq_ctx_term(c->zctx);
    }
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (c->early_fd[ch] >= 0)
            close(c->early_fd[ch]);
    wire_destroy(&c->wire);
    free(c);
    *cp = NULL;
}

void *
chan_context(struct chan *c)
{
    return c->zctx;
}

const char *
chan_session(const struct chan *c)
{
    return wire_session(c->wire);
}

void *
chan_socket(struct chan *c, enum channel ch)
{
    return c->sock[ch];
}

int
chan_recv(struct chan *c, enum channel ch, wire_msg_t **m)
{
    char err[256];
    int rc = wire_recv(c->wire, c->sock[ch], ZMQ_DONTWAIT, m, err, sizeof err);

    if (rc != CG_OK && rc != CG_ESYS)
        log_warn("dropped a message on %s: %s", connfile_port_name(ch), err);
    return rc;
}

/* ---- sending ------------------------------------------------------------ */

static void read_subscriptions(struct chan *c);

/* Keeps m (ownership passes), published while IOPub has no subscriber; the
 * oldest go beyond the bounds. */
static void
hold(struct chan *c, wire_msg_t *m)
{
    struct held *h = calloc(1, sizeof *h);
    if (!h) {
        wire_msg_destroy(&m);
        c->held_dropped++;
        return;
    }
    h->m = m;
    h->bytes = 256 + (m->content_json ? strlen(m->content_json)
                                      : json_dumpb(m->content, NULL, 0, JSON_COMPACT));
    for (size_t i = 0; i < m->n_buffers; i++)
        h->bytes += m->buffers[i].len;
    if (c->held_tail)
        c->held_tail->next = h;
    else
        c->held = h;
    c->held_tail = h;
    c->held_count++;
    c->held_bytes += h->bytes;
    while (c->held && (c->held_count > CHAN_HELD_MSGS || c->held_bytes > CHAN_HELD_BYTES)) {
        struct held *old = c->held;
        c->held = old->next;
        if (!c->held)
            c->held_tail = NULL;
        c->held_count--;
        c->held_bytes -= old->bytes;
        c->held_dropped++;
        wire_msg_destroy(&old->m);
        free(old);
    }
}

/* Sends a built message on ch and frees it. */
static void
send_built(struct chan *c, enum channel ch, wire_msg_t *m)
{
    if (ch == CH_IOPUB) {
        /* IOPub carries no routing identities. */
        for (size_t i = 0; i < m->n_idents; i++)
            free(m->idents[i].data);
        free(m->idents);
        m->idents = NULL;
        m->n_idents = 0;
        read_subscriptions(c); /* a subscriber that just went is noticed */
        if (!c->subscribed) {
            hold(c, m);
            return;
        }
    }
    if (wire_send(c->wire, c->sock[ch], m) != CG_OK)
        log_warn("sending %s: %s", wire_msg_type(m), zmq_strerror(errno));
    wire_msg_destroy(&m);
}

void
chan_send(struct chan *c, enum channel ch, const wire_msg_t *parent, const char *type,
          json_t *content)
{
    wire_msg_t *m = wire_msg_new(c->wire, type, parent);

    if (!m || !content) {
        log_error("out of memory building %s", type);
        json_decref(content);
        wire_msg_destroy(&m);
        return;
    }
    json_decref(m->content);
    m->content = content;
    send_built(c, ch, m);
}

void
chan_reply(struct chan *c, enum channel ch, const wire_msg_t *req, json_t *content)
{
    char type[96];

    msg_reply_type(wire_msg_type(req), type, sizeof type);
    chan_send(c, ch, req, type, content);
}

void
chan_publish(struct chan *c, const wire_msg_t *parent, const char *type, json_t *content)
{
    chan_send(c, CH_IOPUB, parent, type, content);
}

void
chan_stream(struct chan *c, const wire_msg_t *parent, const char *name, const char *text,
            size_t len)
{
    wire_msg_t *m = wire_msg_new(c->wire, "stream", parent);
    size_t cap = 6 * len + 64; /* the longest escape of a byte is \u00XX */
    char *j = m ? malloc(cap) : NULL;

    if (!j) {
        log_error("out of memory publishing output");
        wire_msg_destroy(&m);
        return;
    }
    int n = snprintf(j, cap, "{\"name\":\"%s\",\"text\":\"", name);
    size_t used = (size_t)n + wire_json_escape(text, len, j + n);
    memcpy(j + used, "\"}", 3);
    m->content_json = j;
    send_built(c, CH_IOPUB, m);
}

void
chan_status(struct chan *c, const wire_msg_t *parent, const char *state)
{
    chan_publish(c, parent, "status", json_pack("{s:s}", "execution_state", state));
}

/* ---- the shell request in service --------------------------------------- */

void
chan_begin(struct chan *c, wire_msg_t *req)
{
    if (c->current) {
        log_error("%s began while %s was in service", wire_msg_type(req),
                  wire_msg_type(c->current));
        chan_end(c, false);
    }
    c->current = req;
    c->out_bytes = 0;
    c->limit_hit = false;
    chan_status(c, req, "busy");
}

const wire_msg_t *
chan_current(const struct chan *c)
{
    return c->current;
}

void
chan_end(struct chan *c, bool keep)
{
    if (!c->current)
        return;
    chan_status(c, c->current, "idle");
    /* After a request with a lot of output, give the freed buffers back:
     * an idle kernel should be small again. */
    if (c->out_bytes > TRIM_AFTER_BYTES)
        malloc_trim(0);
    if (keep) {
        wire_msg_destroy(&c->last);
        c->last = c->current;
        c->current = NULL;
    }
    wire_msg_destroy(&c->current);
}

const wire_msg_t *
chan_last(const struct chan *c)
{
    return c->last;
}

const wire_msg_t *
chan_output_parent(const struct chan *c)
{
    return c->current ? c->current : c->last;
}

/* ---- the output budget -------------------------------------------------- */

/* Charges len bytes; text (of stream name) is published up to the limit,
 * NULL text goes out whole or not at all. Returns the bytes that may go. */
static size_t
charge(struct chan *c, const char *name, const char *text, size_t len)
{
    char note[256];

    if (!c->current || c->output_limit == 0)
        return len;
    if (c->limit_hit)
        return 0;
    if (c->out_bytes + len <= c->output_limit) {
        c->out_bytes += len;
        return len;
    }
    size_t room = text ? utf8_complete_prefix(text, c->output_limit - c->out_bytes) : 0;
    c->out_bytes = c->output_limit;
    c->limit_hit = true;
    if (room)
        chan_stream(c, c->current, name, text, room);
    const char *what = strcmp(wire_msg_type(c->current), "execute_request") == 0 ? "cell"
                                                                                 : "tool";
    snprintf(note, sizeof note, "\n[cellgate: this %s's output passed the limit of %zu bytes; "
             "the rest of its output is discarded. The limit is set with --output-limit or "
             "CELLGATE_OUTPUT_LIMIT.]\n", what, c->output_limit);
    chan_stream(c, c->current, "stderr", note, strlen(note));
    return 0;
}

size_t
chan_output_room(struct chan *c, const char *name, const char *text, size_t len)
{
    return charge(c, name, text, len);
}

bool
chan_output_allowed(struct chan *c, size_t len)
{
    return charge(c, "stdout", NULL, len) != 0 || !c->limit_hit;
}

/* ---- the shell backlog -------------------------------------------------- */

/* Appends m to the backlog; false (m freed) when out of memory. */
static bool
backlog_push(struct chan *c, wire_msg_t *m, bool abort)
{
    if (c->backlog_len == c->backlog_cap) {
        size_t cap = c->backlog_cap ? 2 * c->backlog_cap : 16;
        wire_msg_t **b = realloc(c->backlog, cap * sizeof *b);
        if (b)
            c->backlog = b;
        bool *a = b ? realloc(c->backlog_abort, cap * sizeof *a) : NULL;
        if (!a) {
            log_error("out of memory queueing a request: dropped");
            wire_msg_destroy(&m);
            return false;
        }
        c->backlog_abort = a;
        c->backlog_cap = cap;
    }
    c->backlog[c->backlog_len] = m;
    c->backlog_abort[c->backlog_len++] = abort;
    return true;
}

void
chan_backlog_fill(struct chan *c)
{
    wire_msg_t *m;
    int rc;

    while ((rc = chan_recv(c, CH_SHELL, &m)) != CG_ESYS)
        if (rc == CG_OK && !backlog_push(c, m, true))
            return;
}

size_t
chan_backlog_len(const struct chan *c)
{
    return c->backlog_len;
}

wire_msg_t *
chan_backlog_take(struct chan *c, bool *abort)
{
    if (!c->backlog_len)
        return NULL;
    wire_msg_t *m = c->backlog[0];
    *abort = c->backlog_abort[0];
    c->backlog_len--;
    memmove(c->backlog, c->backlog + 1, c->backlog_len * sizeof *c->backlog);
    memmove(c->backlog_abort, c->backlog_abort + 1, c->backlog_len * sizeof *c->backlog_abort);
    return m;
}

/* ---- IOPub subscribers -------------------------------------------------- */

/* Sends what was held while IOPub had no subscriber, in order, after a
 * stderr notice when some of it was dropped. */
static void
send_held(struct chan *c)
{
    if (c->held_dropped) {
        char text[200];
        int n = snprintf(text, sizeof text,
                         "[cellgate: %zu earlier messages were dropped while no client was "
                         "connected (at most %u messages or %u MiB are kept)]\n",
                         c->held_dropped, CHAN_HELD_MSGS, CHAN_HELD_BYTES >> 20);
        c->held_dropped = 0;
        wire_msg_t *m = wire_msg_new(c->wire, "stream", chan_output_parent(c));
        if (m) {
            json_object_set_new(m->content, "name", json_string("stderr"));
            json_object_set_new(m->content, "text", json_stringn(text, (size_t)n));
            if (wire_send(c->wire, c->sock[CH_IOPUB], m) != CG_OK)
                log_warn("sending stream: %s", zmq_strerror(errno));
            wire_msg_destroy(&m);
        }
    }
    while (c->held) {
        struct held *h = c->held;
        c->held = h->next;
        if (wire_send(c->wire, c->sock[CH_IOPUB], h->m) != CG_OK)
            log_warn("sending %s: %s", wire_msg_type(h->m), zmq_strerror(errno));
        wire_msg_destroy(&h->m);
        free(h);
    }
    c->held_tail = NULL;
    c->held_count = c->held_bytes = 0;
}

/* Reads the subscription messages waiting on IOPub: a subscribe (first
 * byte 1) means a subscriber is there, an unsubscribe (0) that the last one
 * went (ZMQ_XPUB_VERBOSE passes every subscribe, only the last
 * unsubscribe). True if a subscribe came. */
static bool
subscriptions(struct chan *c)
{
    zmq_msg_t m;
    bool came = false;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, c->sock[CH_IOPUB], ZMQ_DONTWAIT) >= 0) {
        if (zmq_msg_size(&m) < 1)
            continue;
        bool sub = ((const unsigned char *)zmq_msg_data(&m))[0] == 1;
        came |= sub;
        c->subscribed = sub;
    }
    zmq_msg_close(&m);
    return came;
}

/* Notes subscribers come and gone; what was held goes to one that came. */
static void
read_subscriptions(struct chan *c)
{
    if (subscriptions(c) && c->subscribed)
        send_held(c);
}

void
chan_greet_subscribers(struct chan *c)
{
    if (!subscriptions(c) || !c->subscribed)
        return;
    send_held(c);
    chan_status(c, c->current, c->current ? "busy" : "idle");
}
