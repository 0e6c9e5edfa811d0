/*
 * test_chan.c - unit tests of the channel module (kernel/chan.c) alone, on
 * inproc:// sockets: busy and idle around a shell request in service, the
 * output budget, the shell backlog, and what IOPub holds while it has no
 * subscriber. The client's sockets live in the
 * channel's ZeroMQ context; a client-side wire_t signs what it sends and
 * verifies what comes back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "common/wire.h"
#include "kernel/chan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define WAIT_MS 5000  /* for what must arrive */
#define QUIET_MS 50   /* for what must not */

static char key[] = "test-chan-key";

struct fix {
    struct chan *chan;
    wire_t *wire;   /* the client's codec */
    void *shell;    /* the client's DEALER on shell */
    void *iopub;    /* the client's SUB on IOPub */
};

/* A client socket of type in the channel's context, connected to ep. */
static void *
client_socket(struct fix *f, int type, const char *ep)
{
    void *s = zmq_socket(chan_context(f->chan), type);
    int linger = 0;

    assert_non_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (type == ZMQ_DEALER)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, "client", 6);
    else
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

/* The next message on a client socket within ms (the caller's), or NULL. */
static wire_msg_t *
next_msg(struct fix *f, void *sock, long ms)
{
    zmq_pollitem_t it = { .socket = sock, .events = ZMQ_POLLIN };
    wire_msg_t *m = NULL;
    char err[256];

    if (zmq_poll(&it, 1, ms) <= 0)
        return NULL;
    assert_int_equal(wire_recv(f->wire, sock, ZMQ_DONTWAIT, &m, err, sizeof err), CG_OK);
    return m;
}

static const char *
parent_id(const wire_msg_t *m)
{
    const char *id = json_string_value(json_object_get(m->parent, "msg_id"));
    return id ? id : "";
}

static const char *
msg_id(const wire_msg_t *m)
{
    return json_string_value(json_object_get(m->header, "msg_id"));
}

static const char *
content_str(const wire_msg_t *m, const char *name)
{
    const char *s = json_string_value(json_object_get(m->content, name));
    return s ? s : "";
}

/* A channel with output_limit on fresh inproc:// endpoints, a client
 * connected, and its IOPub subscription greeted (idle). */
static int
fix_open(void **state, size_t output_limit)
{
    static int seq;
    connfile_t conn = { .scheme = "hmac-sha256", .key = key };
    char eps[CH_COUNT][64], err[256];
    const char *ep[CH_COUNT];
    struct fix *f = calloc(1, sizeof *f);
    wire_msg_t *m = NULL;

    assert_non_null(f);
    seq++;
    for (int ch = 0; ch < CH_COUNT; ch++) {
        snprintf(eps[ch], sizeof eps[ch], "inproc://test-chan-%d-%s", seq,
                 connfile_port_name((enum channel)ch));
        ep[ch] = eps[ch];
    }
    f->chan = chan_new(&conn, output_limit, err, sizeof err);
    assert_non_null(f->chan);
    assert_int_equal(chan_open_at(f->chan, ep, err, sizeof err), CG_OK);
    f->wire = wire_new(conn.scheme, key, 0, err, sizeof err);
    assert_non_null(f->wire);
    f->shell = client_socket(f, ZMQ_DEALER, ep[CH_SHELL]);
    f->iopub = client_socket(f, ZMQ_SUB, ep[CH_IOPUB]);
    /* The subscription arrives when it arrives: greet until it has. */
    for (int i = 0; i < WAIT_MS / 20 && !m; i++) {
        chan_greet_subscribers(f->chan);
        m = next_msg(f, f->iopub, 20);
    }
    /* "starting", published before anyone subscribed, was held for it */
    assert_non_null(m);
    assert_string_equal(content_str(m, "execution_state"), "starting");
    wire_msg_destroy(&m);
    m = next_msg(f, f->iopub, WAIT_MS);
    assert_non_null(m);
    assert_string_equal(wire_msg_type(m), "status");
    assert_string_equal(content_str(m, "execution_state"), "idle");
    wire_msg_destroy(&m);
    *state = f;
    return 0;
}

static int
setup(void **state)
{
    return fix_open(state, 0);
}

static int
setup_limit10(void **state)
{
    return fix_open(state, 10);
}

static int
teardown(void **state)
{
    struct fix *f = *state;

    zmq_close(f->shell);
    if (f->iopub)
        zmq_close(f->iopub);
    chan_destroy(&f->chan);
    assert_null(f->chan);
    chan_destroy(&f->chan); /* idempotent */
    wire_destroy(&f->wire);
    free(f);
    return 0;
}

/* Sends a request of type on shell; its msg_id into id. */
static void
send_request(struct fix *f, const char *type, char id[64])
{
    wire_msg_t *m = wire_msg_new(f->wire, type, NULL);

    assert_non_null(m);
    json_object_set_new(m->content, "code", json_string("1"));
    snprintf(id, 64, "%s", msg_id(m));
    assert_int_equal(wire_send(f->wire, f->shell, m), CG_OK);
    wire_msg_destroy(&m);
}

/* The request the channel received on shell (the caller's). */
static wire_msg_t *
kernel_recv(struct fix *f)
{
    zmq_pollitem_t it = { .socket = chan_socket(f->chan, CH_SHELL), .events = ZMQ_POLLIN };
    wire_msg_t *m = NULL;

    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
    assert_int_equal(chan_recv(f->chan, CH_SHELL, &m), CG_OK);
    return m;
}

/* The next IOPub message is of type, parented by parent; it is returned
 * (the caller's) for more checks. */
static wire_msg_t *
expect_iopub(struct fix *f, const char *type, const char *parent)
{
    wire_msg_t *m = next_msg(f, f->iopub, WAIT_MS);

    assert_non_null(m);
    assert_string_equal(wire_msg_type(m), type);
    assert_string_equal(parent_id(m), parent);
    return m;
}

static void
expect_status(struct fix *f, const char *state, const char *parent)
{
    wire_msg_t *m = expect_iopub(f, "status", parent);

    assert_string_equal(content_str(m, "execution_state"), state);
    wire_msg_destroy(&m);
}

/* A request of type sent and taken into service: busy for it. Returns it
 * (the channel's) with its msg_id in id. */
static const wire_msg_t *
begin(struct fix *f, const char *type, char id[64])
{
    send_request(f, type, id);
    chan_begin(f->chan, kernel_recv(f));
    expect_status(f, "busy", id);
    return chan_current(f->chan);
}

static void
expect_stream(struct fix *f, const char *name, const char *text, const char *parent)
{
    wire_msg_t *m = expect_iopub(f, "stream", parent);

    assert_string_equal(content_str(m, "name"), name);
    assert_string_equal(content_str(m, "text"), text);
    wire_msg_destroy(&m);
}

/* The notice that the request's output passed the limit of 10 bytes. */
static void
expect_notice(struct fix *f, const char *parent)
{
    wire_msg_t *m = expect_iopub(f, "stream", parent);

    assert_string_equal(content_str(m, "name"), "stderr");
    assert_non_null(strstr(content_str(m, "text"), "passed the limit of 10 bytes"));
    wire_msg_destroy(&m);
}

/* Nothing more on IOPub for now. */
static void
expect_quiet(struct fix *f)
{
    wire_msg_t *m = next_msg(f, f->iopub, QUIET_MS);

    if (m)
        fail_msg("unexpected %s on IOPub", wire_msg_type(m));
}

/* A request served with chan_begin / chan_reply / chan_end: busy, then the
 * reply, then idle, each parented by the request; keep decides whether it
 * stays chan_last. */
static void
test_busy_idle_order(void **state)
{
    struct fix *f = *state;
    char id[64], id2[64];

    assert_null(chan_current(f->chan));
    assert_null(chan_last(f->chan));
    const wire_msg_t *req = begin(f, "execute_request", id);
    assert_non_null(req);
    assert_string_equal(msg_id(req), id);
    assert_ptr_equal(chan_output_parent(f->chan), req);

    chan_reply(f->chan, CH_SHELL, req, json_pack("{s:s}", "status", "ok"));
    wire_msg_t *rep = next_msg(f, f->shell, WAIT_MS);
    assert_non_null(rep);
    assert_string_equal(wire_msg_type(rep), "execute_reply");
    assert_string_equal(parent_id(rep), id);
    assert_string_equal(content_str(rep, "status"), "ok");
    wire_msg_destroy(&rep);
    expect_quiet(f); /* idle waits for chan_end */

    chan_end(f->chan, true);
    expect_status(f, "idle", id);
    expect_quiet(f);
    assert_null(chan_current(f->chan));
    assert_non_null(chan_last(f->chan));
    assert_string_equal(msg_id(chan_last(f->chan)), id);
    assert_ptr_equal(chan_output_parent(f->chan), chan_last(f->chan));

    /* Ended without keep: freed, and the last kept request stays last. */
    begin(f, "kernel_info_request", id2);
    assert_string_equal(msg_id(chan_output_parent(f->chan)), id2);
    chan_end(f->chan, false);
    expect_status(f, "idle", id2);
    assert_null(chan_current(f->chan));
    assert_string_equal(msg_id(chan_last(f->chan)), id);
    chan_end(f->chan, false); /* nothing in service: nothing published */
    expect_quiet(f);
}

/* A limit of 10 bytes: the first 6 pass, the next 6 are cut to the 4 that
 * fit plus a notice, then nothing passes until the next request. A cut
 * never splits a UTF-8 character. */
static void
test_output_budget(void **state)
{
    struct fix *f = *state;
    char id[64];

    /* No request in service: nothing is charged. */
    assert_int_equal(chan_output_room(f->chan, "stdout", "0123456789abcdef", 16), 16);
    assert_true(chan_output_allowed(f->chan, 100));

    begin(f, "execute_request", id);
    assert_int_equal(chan_output_room(f->chan, "stdout", "abcdef", 6), 6);
    expect_quiet(f); /* the caller publishes what it may */
    assert_int_equal(chan_output_room(f->chan, "stdout", "ghijkl", 6), 0);
    expect_stream(f, "stdout", "ghij", id);
    expect_notice(f, id);
    assert_int_equal(chan_output_room(f->chan, "stdout", "m", 1), 0);
    assert_int_equal(chan_output_room(f->chan, "stderr", "n", 1), 0);
    assert_false(chan_output_allowed(f->chan, 1));
    expect_quiet(f); /* one notice only */
    chan_end(f->chan, true);
    expect_status(f, "idle", id);

    /* A new request starts with a fresh budget; "x\u20ac" is 4 bytes and 3
     * fit, but only "x" is whole. */
    begin(f, "execute_request", id);
    assert_int_equal(chan_output_room(f->chan, "stdout", "1234567", 7), 7);
    assert_int_equal(chan_output_room(f->chan, "stdout", "x\xe2\x82\xac", 4), 0);
    expect_stream(f, "stdout", "x", id);
    expect_notice(f, id);
    expect_quiet(f);
    chan_end(f->chan, true);
    expect_status(f, "idle", id);

    /* Whole-or-nothing output (a display): 10 bytes go, 1 more does not. */
    begin(f, "execute_request", id);
    assert_true(chan_output_allowed(f->chan, 10));
    assert_false(chan_output_allowed(f->chan, 1));
    expect_notice(f, id);
    chan_end(f->chan, false);
    expect_status(f, "idle", id);
    expect_quiet(f);
}

/* Requests waiting on shell go to the backlog, oldest first, marked to be
 * aborted. */
static void
test_backlog(void **state)
{
    struct fix *f = *state;
    char ids[3][64];
    bool abort = false;

    chan_backlog_fill(f->chan); /* nothing waiting */
    assert_int_equal(chan_backlog_len(f->chan), 0);
    assert_null(chan_backlog_take(f->chan, &abort));
    for (int i = 0; i < 3; i++)
        send_request(f, "execute_request", ids[i]);
    zmq_pollitem_t it = { .socket = chan_socket(f->chan, CH_SHELL), .events = ZMQ_POLLIN };
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);

    chan_backlog_fill(f->chan);
    assert_int_equal(chan_backlog_len(f->chan), 3);
    for (int i = 0; i < 3; i++) {
        abort = false;
        wire_msg_t *m = chan_backlog_take(f->chan, &abort);
        assert_non_null(m);
        assert_string_equal(msg_id(m), ids[i]);
        assert_string_equal(wire_msg_type(m), "execute_request");
        assert_true(abort);
        assert_int_equal(chan_backlog_len(f->chan), (size_t)(2 - i));
        wire_msg_destroy(&m);
    }
    assert_null(chan_backlog_take(f->chan, &abort));

    /* What is left in the backlog is freed by chan_destroy (valgrind). */
    send_request(f, "execute_request", ids[0]);
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
    chan_backlog_fill(f->chan);
    assert_int_equal(chan_backlog_len(f->chan), 1);
}

/* The client's IOPub goes; returns once the channel can have seen it. */
static void
unsubscribe(struct fix *f)
{
    zmq_pollitem_t it = { .socket = chan_socket(f->chan, CH_IOPUB), .events = ZMQ_POLLIN };

    zmq_close(f->iopub);
    f->iopub = NULL;
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1); /* the unsubscription is waiting */
}

/* A client IOPub again, greeted; returns its first message. */
static wire_msg_t *
resubscribe(struct fix *f)
{
    char ep[64];
    size_t len = sizeof ep;
    wire_msg_t *m = NULL;

    assert_int_equal(zmq_getsockopt(chan_socket(f->chan, CH_IOPUB), ZMQ_LAST_ENDPOINT, ep,
                                    &len), 0);
    f->iopub = client_socket(f, ZMQ_SUB, ep);
    for (int i = 0; i < WAIT_MS / 20 && !m; i++) {
        chan_greet_subscribers(f->chan);
        m = next_msg(f, f->iopub, 20);
    }
    assert_non_null(m);
    return m;
}

static void
test_held_while_unsubscribed(void **state)
{
    struct fix *f = *state;
    char text[32];

    unsubscribe(f);
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof text, "line %d\n", i);
        chan_stream(f->chan, NULL, "stdout", text, strlen(text));
    }
    wire_msg_t *m = resubscribe(f);
    for (int i = 0; i < 3; i++) {
        if (i)
            m = next_msg(f, f->iopub, WAIT_MS);
        assert_non_null(m);
        snprintf(text, sizeof text, "line %d\n", i);
        assert_string_equal(content_str(m, "text"), text);
        wire_msg_destroy(&m);
    }
    m = next_msg(f, f->iopub, WAIT_MS); /* then the greeting */
    assert_non_null(m);
    assert_string_equal(content_str(m, "execution_state"), "idle");
    wire_msg_destroy(&m);
    /* With a subscriber, nothing is held: it comes at once. */
    chan_stream(f->chan, NULL, "stdout", "now\n", 4);
    m = next_msg(f, f->iopub, WAIT_MS);
    assert_non_null(m);
    assert_string_equal(content_str(m, "text"), "now\n");
    wire_msg_destroy(&m);
}

static void
test_held_beyond_the_bound(void **state)
{
    struct fix *f = *state;
    char text[32];

    unsubscribe(f);
    for (int i = 0; i < CHAN_HELD_MSGS + 5; i++) {
        snprintf(text, sizeof text, "%d\n", i);
        chan_stream(f->chan, NULL, "stdout", text, strlen(text));
    }
    wire_msg_t *m = resubscribe(f);
    assert_string_equal(content_str(m, "name"), "stderr");
    assert_non_null(strstr(content_str(m, "text"), "5 earlier messages were dropped"));
    wire_msg_destroy(&m);
    for (int i = 5; i < CHAN_HELD_MSGS + 5; i++) { /* the newest, in order, none lost */
        m = next_msg(f, f->iopub, WAIT_MS);
        assert_non_null(m);
        snprintf(text, sizeof text, "%d\n", i);
        assert_string_equal(content_str(m, "text"), text);
        wire_msg_destroy(&m);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_busy_idle_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_budget, setup_limit10, teardown),
        cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_while_unsubscribed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_beyond_the_bound, setup, teardown),
    };
    return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
