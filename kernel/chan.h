/*
 * chan.h - the kernel's channels to its clients. Everything the kernel
 * sends to a client goes through here, as in curl everything for the
 * application passes Curl_client_write(): the five ZeroMQ sockets and the
 * heartbeat thread, signing (common/wire.c), the shell request in service
 * (busy/idle, the parent of what it prints), its output budget, and the
 * backlog of shell requests queued behind a failed cell.
 *
 * The modules above (cell, handlers, tools, the display service) publish
 * with a parent and a channel; none of them touches a socket.
 */
#ifndef CG_CHAN_H
#define CG_CHAN_H

#include "common/connfile.h"
#include "common/wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct chan;

/*
 * A channel set for conn: signing is ready, no socket is open and no
 * thread runs yet (the box must be forked while the process has one
 * thread). output_limit bounds the output of each request in service in
 * bytes (0: none). Returns NULL with err filled.
 */
struct chan *chan_new(const connfile_t *conn, size_t output_limit, char *err, size_t errlen);

/*
 * Takes conn's TCP ports now, before the kernel builds its box: the system
 * queues a client that connects meanwhile, where ZeroMQ (not started yet)
 * would refuse it and the client would try again only after its reconnect
 * interval (100 ms). chan_open hands these sockets to ZeroMQ. Best effort:
 * a port that cannot be taken now, or an address that is not a numeric
 * IPv4 one (ipc, IPv6, interface names), is bound by chan_open as before,
 * which reports any error.
 */
void chan_listen_early(struct chan *c, const connfile_t *conn);

/*
 * Binds the five sockets at conn's endpoints and starts the heartbeat's
 * echo thread; publishes status "starting". CG_OK or an error with err
 * filled (a port already taken, ...).
 */
int chan_open(struct chan *c, const connfile_t *conn, char *err, size_t errlen);

/* chan_open at the given ZeroMQ endpoints, one per channel (inproc://
 * ones for tests, whose clients live in chan_context). */
int chan_open_at(struct chan *c, const char *const endpoints[CH_COUNT], char *err,
                 size_t errlen);

/* The ZeroMQ context the sockets live in (NULL before chan_open). Sockets
 * a caller makes in it must be closed before chan_destroy. */
void *chan_context(struct chan *c);

/* Closes the sockets, ends the heartbeat, frees queued requests and the
 * request in service; frees and nulls *c. Idempotent. */
void chan_destroy(struct chan **c);

/* The session id this kernel signs with (its header.session). */
const char *chan_session(const struct chan *c);

/* The socket of ch, for zmq_poll only (NULL before chan_open). */
void *chan_socket(struct chan *c, enum channel ch);

/*
 * Receives one message waiting on ch, without blocking: CG_OK and *m
 * (the caller's), CG_ESYS when nothing is waiting. A message that fails
 * verification or parsing is dropped and logged (its code returned).
 */
int chan_recv(struct chan *c, enum channel ch, wire_msg_t **m);

/* ---- sending: content is stolen, NULL content means out of memory ----- */

/* Sends type with content on ch, parented by parent (may be NULL). On
 * shell, control and stdin the message is routed back to parent's sender. */
void chan_send(struct chan *c, enum channel ch, const wire_msg_t *parent, const char *type,
               json_t *content);

/* Replies to req on ch: the type is req's with "_reply". */
void chan_reply(struct chan *c, enum channel ch, const wire_msg_t *req, json_t *content);

/* Publishes type with content on IOPub, parented by parent. */
void chan_publish(struct chan *c, const wire_msg_t *parent, const char *type, json_t *content);

/* Publishes a stream message: len bytes of valid UTF-8 text of stream name
 * ("stdout" / "stderr"), serialised directly (the hot path). Not charged
 * to any budget: see chan_output_room. */
void chan_stream(struct chan *c, const wire_msg_t *parent, const char *name, const char *text,
                 size_t len);

/* Publishes status execution_state state ("busy", "idle", ...). */
void chan_status(struct chan *c, const wire_msg_t *parent, const char *state);

/* ---- the shell request in service --------------------------------------- */

/*
 * Takes req (ownership passes) as the shell request in service, publishes
 * busy for it and starts its output budget. A request already in service
 * is ended first (programmer error, logged).
 */
void chan_begin(struct chan *c, wire_msg_t *req);

/* The shell request in service, or NULL. Borrowed until chan_end. */
const wire_msg_t *chan_current(const struct chan *c);

/*
 * Ends the request in service: publishes idle for it. With keep, it stays
 * the parent of output that arrives later (chan_last: what an execute's
 * background threads print after its reply); otherwise it is freed.
 */
void chan_end(struct chan *c, bool keep);

/* The last request ended with keep (an execute), or NULL. */
const wire_msg_t *chan_last(const struct chan *c);

/* The parent of output nobody asked for right now: the request in
 * service, else chan_last. */
const wire_msg_t *chan_output_parent(const struct chan *c);

/* ---- the output budget of the request in service ------------------------ */

/*
 * Charges len bytes of text of stream name to the request in service and
 * returns how many may be published (all of them while it is under the
 * limit, or without a request or a limit). At the limit the fitting part
 * (on a character boundary) and a stderr notice are published here and 0
 * is returned, as for everything after. The caller publishes what it may.
 */
size_t chan_output_room(struct chan *c, const char *name, const char *text, size_t len);

/* Charges output that goes out whole or not at all (a display of len
 * bytes): true if it may go out; false once the limit is passed (the
 * notice was published). */
bool chan_output_allowed(struct chan *c, size_t len);

/* ---- the shell backlog --------------------------------------------------- */

/*
 * Moves every request waiting on the shell socket into the backlog, each
 * marked "abort": a cell failed under stop_on_error, and what the client
 * queued behind it is served with that mark (handlers.c answers an
 * execute_request so marked "aborted" without running it; other requests
 * are served as usual). Taken before the failed cell's reply goes out, so
 * a request sent after the client saw the error is never caught.
 */
void chan_backlog_fill(struct chan *c);

/* Requests in the backlog. */
size_t chan_backlog_len(const struct chan *c);

/* The oldest request of the backlog (the caller's), with *abort set as
 * marked; NULL when empty. */
wire_msg_t *chan_backlog_take(struct chan *c, bool *abort);

/* ---- IOPub subscribers -------------------------------------------------- */

/*
 * Reads IOPub subscriptions and greets each new subscriber with the
 * current status (busy for the request in service, else idle): messages
 * published before a subscription arrived are lost to it (ZeroMQ's slow
 * joiner), and jupyter_client waits for one before calling a kernel ready.
 *
 * While IOPub has no subscriber at all (no client yet, or the gateway that
 * started the kernel is gone and a new one has not re-adopted it), what is
 * published is held, at most CHAN_HELD_MSGS messages and CHAN_HELD_BYTES
 * (the oldest dropped first), and sent in order to the next subscriber
 * before its greeting, after a stderr stream saying how many were dropped.
 */
void chan_greet_subscribers(struct chan *c);

/* Bounds of what IOPub holds while it has no subscriber. */
#define CHAN_HELD_MSGS 4096
#define CHAN_HELD_BYTES (32u << 20)

#endif
