/*
 * channels.c - WebSocket clients tied to kernels (see channels.h).
 */
#include "gateway/channels.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"
#include "gateway/ws.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct conn {
    struct channels *ch;
    struct kernel *k;             /* NULL once the kernel went away */
    struct ws *ws;
    enum convert_form form;
    char session[64];             /* the session of the client's last message */
    char session_id[64];          /* ?session_id= of the upgrade, or "" */
    struct MHD_UpgradeResponseHandle *urh;
    bool dead;                    /* to be freed at the next channels_handle() */
    double linger_until;          /* dead but writing what was queued until then (or 0) */
    size_t linger_queued;         /* bytes queued when linger_until was last set */
    struct conn *next;
};

/* One message kept for a session that is away. */
struct kept {
    char channel[CONVERT_CHANNEL_MAX];
    wire_msg_t *m;                /* header, parent, metadata, content shared */
    size_t bytes;                 /* counted against the bound */
    struct kept *next;
};

/* What a kernel sent while its last session was away. */
struct backlog {
    struct kernel *k;
    char session_id[64];
    struct kept *head, *tail;
    size_t count, bytes, dropped;
    struct backlog *next;
};

struct channels {
    struct conn *head;
    struct backlog *backlogs;     /* at most one per kernel */
    double pinged_at;             /* clock_now() of the last ping round */
    size_t max_message, max_queued; /* each connection's bounds (0: ws.h's) */
};

static void mark_dead(struct channels *ch, struct conn *c);

struct channels *
channels_new(void)
{
    return calloc(1, sizeof(struct channels));
}

void
channels_set_limits(struct channels *ch, size_t max_message, size_t max_queued)
{
    ch->max_message = max_message;
    ch->max_queued = max_queued;
}

/* Ends c with 1008 (policy violation) once what was queued for it is
 * written; it gets nothing more (its session's output is kept as when it
 * goes). why: a string literal. 1013 (try again later) would say it better
 * but websocket-client 1.2 refuses it as a protocol error. */
static void
close_later(struct conn *c, const char *why)
{
    if (c->dead)
        return;
    log_warn("kernel %s: a client closed (1008): %s", c->k ? kernel_id(c->k) : "-", why);
    ws_close_when_sent(c->ws, 1008, why);
    mark_dead(c->ch, c);
    c->linger_until = clock_now() + CHANNELS_LINGER_S;
    c->linger_queued = ws_queued(c->ws);
}

/* A frame from a client: to its kernel. */
static void
on_client_message(void *ctx, const unsigned char *data, size_t len, bool binary)
{
    struct conn *c = ctx;
    char channel[CONVERT_CHANNEL_MAX], err[256];
    wire_msg_t *m = NULL;

    if (!c->k || c->dead)
        return;
    if (convert_from_frame(data, len, binary, c->form, &m, channel, err, sizeof err) != CG_OK) {
        log_warn("kernel %s: a client's frame dropped: %s", kernel_id(c->k), err);
        return;
    }
    const char *session = json_string_value(json_object_get(m->header, "session"));
    if (session && strlen(session) < sizeof c->session)
        memcpy(c->session, session, strlen(session) + 1);
    errno = 0;
    if (kernel_send(c->k, channel, m) != CG_OK) {
        if (errno == EAGAIN)
            close_later(c, "the kernel is not taking messages");
        else
            log_warn("kernel %s: cannot send on %s", kernel_id(c->k), channel);
    }
    wire_msg_destroy(&m);
}

static void
kept_free(struct kept *e)
{
    wire_msg_destroy(&e->m);
    free(e);
}

static struct backlog *
backlog_of(struct channels *ch, const struct kernel *k)
{
    for (struct backlog *b = ch->backlogs; b; b = b->next)
        if (b->k == k)
            return b;
    return NULL;
}

/* Frees k's backlog, if any. */
static void
backlog_drop(struct channels *ch, const struct kernel *k)
{
    for (struct backlog **pp = &ch->backlogs; *pp; pp = &(*pp)->next)
        if ((*pp)->k == k) {
            struct backlog *b = *pp;
            *pp = b->next;
            for (struct kept *e = b->head, *next; e; e = next) {
                next = e->next;
                kept_free(e);
            }
            free(b);
            return;
        }
}

/* A copy of m that shares its JSON parts (nobody changes them). */
static wire_msg_t *
share(const wire_msg_t *m)
{
    wire_msg_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->header = json_incref(m->header);
    c->parent = json_incref(m->parent);
    c->metadata = json_incref(m->metadata);
    c->content = json_incref(m->content);
    if (m->n_buffers && !(c->buffers = calloc(m->n_buffers, sizeof *c->buffers))) {
        wire_msg_destroy(&c);
        return NULL;
    }
    for (size_t i = 0; i < m->n_buffers; i++, c->n_buffers++) {
        c->buffers[i].data = malloc(m->buffers[i].len ? m->buffers[i].len : 1);
        if (!c->buffers[i].data) {
            wire_msg_destroy(&c);
            return NULL;
        }
        memcpy(c->buffers[i].data, m->buffers[i].data, m->buffers[i].len);
        c->buffers[i].len = m->buffers[i].len;
    }
    return c;
}

/* Keeps m for b's session, the oldest dropped beyond the bounds. */
static void
backlog_add(struct backlog *b, const char *channel, const wire_msg_t *m)
{
    struct kept *e = calloc(1, sizeof *e);
    if (!e || !(e->m = share(m))) {
        free(e);
        b->dropped++;
        return;
    }
    snprintf(e->channel, sizeof e->channel, "%s", channel);
    e->bytes = 256 + json_dumpb(m->content, NULL, 0, JSON_COMPACT);
    for (size_t i = 0; i < m->n_buffers; i++)
        e->bytes += m->buffers[i].len;
    if (b->tail)
        b->tail->next = e;
    else
        b->head = e;
    b->tail = e;
    b->count++;
    b->bytes += e->bytes;
    while (b->head && (b->count > CHANNELS_BACKLOG_MSGS || b->bytes > CHANNELS_BACKLOG_BYTES)) {
        struct kept *old = b->head;
        b->head = old->next;
        if (!b->head)
            b->tail = NULL;
        b->count--;
        b->bytes -= old->bytes;
        b->dropped++;
        kept_free(old);
    }
}

/* c, which named a session, is going: if it was its kernel's last client,
 * what the kernel sends from now on is kept for that session. */
static void
keep_for(struct channels *ch, const struct conn *c)
{
    if (!c->k || !c->session_id[0])
        return;
    for (const struct conn *o = ch->head; o; o = o->next)
        if (o != c && o->k == c->k && !o->dead)
            return;
    struct backlog *b = backlog_of(ch, c->k);
    if (b && strcmp(b->session_id, c->session_id) == 0)
        return;
    backlog_drop(ch, c->k);
    if (!(b = calloc(1, sizeof *b)))
        return;
    b->k = c->k;
    memcpy(b->session_id, c->session_id, sizeof b->session_id);
    b->next = ch->backlogs;
    ch->backlogs = b;
}

/* c ended (closed, failed): freed at the next channels_handle(). */
static void
mark_dead(struct channels *ch, struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    keep_for(ch, c);
}

/* Sends one message to one connection in its form; false if it could not
 * be handed to the socket. */
static bool
deliver(struct conn *c, const char *channel, const wire_msg_t *m)
{
    unsigned char *frame;
    size_t len;
    bool binary, ok;

    if (convert_to_frame(m, channel, c->form, &frame, &len, &binary) != CG_OK)
        return false;
    int rc = ws_send(c->ws, frame, len, binary);
    ok = rc == CG_OK;
    if (rc == CG_ETOOBIG)
        close_later(c, "the client is not reading; reconnect with its session_id");
    else if (!ok)
        mark_dead(c->ch, c);
    free(frame);
    return ok;
}

/* A message from kernel k: to its clients. */
static void
on_kernel_message(void *ctx, struct kernel *k, const char *channel, const wire_msg_t *m)
{
    struct channels *ch = ctx;
    bool to_all = strcmp(channel, "iopub") == 0, matched = false;
    const char *session = json_string_value(json_object_get(m->parent, "session"));

    if (!to_all && session)
        for (struct conn *c = ch->head; c; c = c->next)
            if (c->k == k && !c->dead && strcmp(c->session, session) == 0)
                matched |= deliver(c, channel, m);
    if (matched)
        return;
    bool any = false;
    for (struct conn *c = ch->head; c; c = c->next)
        if (c->k == k && !c->dead)
            any |= deliver(c, channel, m);
    struct backlog *b;
    if (!any && (b = backlog_of(ch, k)))
        backlog_add(b, channel, m);
}

/* A kernel re-adopted after a gateway restart has no client yet: what it
 * sends (what it held while no gateway listened, then on) is kept for the
 * first client that connects, whatever its session. */
static void
on_kernel_adopted(void *ctx, struct kernel *k)
{
    struct channels *ch = ctx;
    struct backlog *b;

    backlog_drop(ch, k);
    if (!(b = calloc(1, sizeof *b)))
        return;
    b->k = k;
    b->next = ch->backlogs;
    ch->backlogs = b;
}

struct kernels_sink
channels_sink(struct channels *ch)
{
    return (struct kernels_sink){ .on_msg = on_kernel_message,
                                  .on_adopted = on_kernel_adopted, .ctx = ch };
}

int
channels_attach(struct channels *ch, struct kernel *k, int fd, const char *extra, size_t n,
                enum convert_form form, const char *session_id, void *urh)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return CG_ENOMEM;
    c->ws = ws_new(fd, extra, n, (struct ws_sink){ .on_message = on_client_message, .ctx = c });
    if (!c->ws) {
        free(c);
        return CG_ENOMEM;
    }
    ws_set_limits(c->ws, ch->max_message, ch->max_queued);
    c->ch = ch;
    c->k = k;
    c->form = form;
    c->urh = urh;
    if (session_id && strlen(session_id) < sizeof c->session_id)
        memcpy(c->session_id, session_id, strlen(session_id) + 1);
    c->next = ch->head;
    ch->head = c;
    kernel_add_connection(k, 1);
    log_info("kernel %s: client connected", kernel_id(k));
    struct backlog *b = backlog_of(ch, k);
    /* b->session_id "": kept for whoever comes first (on_kernel_adopted) */
    if (b && (!b->session_id[0] || (c->session_id[0] && strcmp(b->session_id,
                                                               c->session_id) == 0))) {
        if (b->dropped)
            log_warn("kernel %s: %zu messages for session %s were dropped while it was away",
                     kernel_id(k), b->dropped, b->session_id);
        /* The backlog is bounded on its own: it is queued whole, and the
         * bound applies to what comes after it. */
        ws_set_limits(c->ws, 0, SIZE_MAX);
        for (struct kept *e = b->head; e && !c->dead; e = e->next)
            deliver(c, e->channel, e->m);
        size_t bound = ch->max_queued ? ch->max_queued : WS_MAX_QUEUED;
        ws_set_limits(c->ws, 0, ws_queued(c->ws) + bound);
        backlog_drop(ch, k);
    }
    /* Frames that libmicrohttpd read together with the upgrade request never
     * make the socket readable again: take them now. */
    if (n && !c->dead && !ws_handle(c->ws, false, false))
        mark_dead(ch, c);
    return CG_OK;
}

/* Ends a connection: the upgraded socket goes back to libmicrohttpd. */
static void
conn_free(struct conn *c)
{
    if (c->k)
        kernel_add_connection(c->k, -1);
    ws_destroy(&c->ws);
    MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(c);
}

void
channels_kernel_gone(struct channels *ch, struct kernel *k)
{
    backlog_drop(ch, k);
    for (struct conn *c = ch->head; c; c = c->next)
        if (c->k == k) {
            ws_close(c->ws, 1001, "kernel deleted");
            kernel_add_connection(k, -1);
            c->k = NULL;
            c->dead = true;
            c->linger_until = 0;
        }
}

size_t
channels_pollitems(const struct channels *ch, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;
    for (const struct conn *c = ch->head; c && n < max; c = c->next) {
        /* ws.h speaks poll(2)'s events, zmq_poll its own values */
        short ev = !c->dead || c->linger_until > 0 ? ws_events(c->ws) : 0;
        items[n++] = (zmq_pollitem_t){ .fd = ws_fd(c->ws),
                                       .events = (short)((ev & POLLIN ? ZMQ_POLLIN : 0)
                                                         | (ev & POLLOUT ? ZMQ_POLLOUT : 0)) };
    }
    return n;
}

void
channels_handle(struct channels *ch, const zmq_pollitem_t *items, size_t n)
{
    size_t i = 0;
    double now = clock_now();
    for (struct conn *c = ch->head; c && i < n; c = c->next, i++) {
        if ((c->dead && !c->linger_until) || items[i].fd != ws_fd(c->ws))
            continue;
        short re = items[i].revents;
        if ((re & (ZMQ_POLLIN | ZMQ_POLLOUT | ZMQ_POLLERR))
            && !ws_handle(c->ws, re & (ZMQ_POLLIN | ZMQ_POLLERR), re & ZMQ_POLLOUT)) {
            mark_dead(ch, c);
            c->linger_until = 0; /* closed: nothing left to write */
        }
        if (c->linger_until && ws_queued(c->ws) < c->linger_queued) { /* it reads: wait on */
            c->linger_until = now + CHANNELS_LINGER_S;
            c->linger_queued = ws_queued(c->ws);
        }
    }
    for (struct conn **pp = &ch->head; *pp;) {
        struct conn *c = *pp;
        if (!c->dead || (c->linger_until && now < c->linger_until)) {
            pp = &c->next;
            continue;
        }
        if (c->linger_until && ws_queued(c->ws))
            log_warn("kernel %s: a client that did not read was cut; %zu bytes queued for it "
                     "are lost", c->k ? kernel_id(c->k) : "-", ws_queued(c->ws));
        *pp = c->next;
        if (c->k)
            log_info("kernel %s: client disconnected", kernel_id(c->k));
        conn_free(c);
    }
}

void
channels_tick(struct channels *ch, double interval_s)
{
    double now = clock_now();
    if (interval_s <= 0 || now - ch->pinged_at < interval_s)
        return;
    ch->pinged_at = now;
    for (struct conn *c = ch->head; c; c = c->next)
        if (!c->dead)
            ws_ping(c->ws);
}

void
channels_destroy(struct channels **chp)
{
    if (!chp || !*chp)
        return;
    for (struct conn *c = (*chp)->head, *next; c; c = next) {
        next = c->next;
        ws_close(c->ws, 1001, "gateway stopping");
        conn_free(c);
    }
    while ((*chp)->backlogs)
        backlog_drop(*chp, (*chp)->backlogs->k);
    free(*chp);
    *chp = NULL;
}
