/*
 * channels.c - WebSocket clients tied to kernels (see channels.h).
 */
#include "gateway/channels.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"
#include "gateway/ws.h"

#include <microhttpd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct conn {
    struct channels *ch;
    struct kernel *k;             /* NULL once the kernel went away */
    struct ws *ws;
    enum convert_form form;
    char session[64];             /* the session of the client's last message */
    struct MHD_UpgradeResponseHandle *urh;
    bool dead;                    /* to be freed at the next channels_handle() */
    struct conn *next;
};

struct channels {
    struct conn *head;
    double pinged_at;             /* clock_now() of the last ping round */
};

struct channels *
channels_new(void)
{
    return calloc(1, sizeof(struct channels));
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
    if (kernel_send(c->k, channel, m) != CG_OK)
        log_warn("kernel %s: cannot send on %s", kernel_id(c->k), channel);
    wire_msg_destroy(&m);
}

/* Sends one message to one connection in its form. */
static void
deliver(struct conn *c, const char *channel, const wire_msg_t *m)
{
    unsigned char *frame;
    size_t len;
    bool binary;

    if (convert_to_frame(m, channel, c->form, &frame, &len, &binary) != CG_OK)
        return;
    if (ws_send(c->ws, frame, len, binary) != CG_OK)
        c->dead = true;
    free(frame);
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
            if (c->k == k && !c->dead && strcmp(c->session, session) == 0) {
                deliver(c, channel, m);
                matched = true;
            }
    if (matched)
        return;
    for (struct conn *c = ch->head; c; c = c->next)
        if (c->k == k && !c->dead)
            deliver(c, channel, m);
}

struct kernels_sink
channels_sink(struct channels *ch)
{
    return (struct kernels_sink){ .on_msg = on_kernel_message, .ctx = ch };
}

int
channels_attach(struct channels *ch, struct kernel *k, int fd, const char *extra, size_t n,
                enum convert_form form, void *urh)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return CG_ENOMEM;
    c->ws = ws_new(fd, extra, n, (struct ws_sink){ .on_message = on_client_message, .ctx = c });
    if (!c->ws) {
        free(c);
        return CG_ENOMEM;
    }
    c->ch = ch;
    c->k = k;
    c->form = form;
    c->urh = urh;
    c->next = ch->head;
    ch->head = c;
    kernel_add_connection(k, 1);
    log_info("kernel %s: client connected", kernel_id(k));
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
    for (struct conn *c = ch->head; c; c = c->next)
        if (c->k == k) {
            ws_close(c->ws, 1001, "kernel deleted");
            kernel_add_connection(k, -1);
            c->k = NULL;
            c->dead = true;
        }
}

size_t
channels_pollitems(const struct channels *ch, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;
    for (const struct conn *c = ch->head; c && n < max; c = c->next)
        items[n++] = (zmq_pollitem_t){ .fd = ws_fd(c->ws),
                                       .events = (short)(c->dead ? 0 : ws_events(c->ws)) };
    return n;
}

void
channels_handle(struct channels *ch, const zmq_pollitem_t *items, size_t n)
{
    size_t i = 0;
    for (struct conn *c = ch->head; c && i < n; c = c->next, i++) {
        if (c->dead || items[i].fd != ws_fd(c->ws))
            continue;
        short re = items[i].revents;
        if ((re & (ZMQ_POLLIN | ZMQ_POLLOUT | ZMQ_POLLERR))
            && !ws_handle(c->ws, re & (ZMQ_POLLIN | ZMQ_POLLERR), re & ZMQ_POLLOUT))
            c->dead = true;
    }
    for (struct conn **pp = &ch->head; *pp;) {
        struct conn *c = *pp;
        if (!c->dead) {
            pp = &c->next;
            continue;
        }
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
    free(*chp);
    *chp = NULL;
}
