/*
 * channels.h - the /api/kernels/{id}/channels connections: each WebSocket
 * tied to one kernel. Frames from a client are converted (convert.h) and
 * sent to the kernel signed; messages from the kernel (handed here through
 * the kernels module's sink) are converted and sent to the kernel's
 * clients: iopub to all of them, replies on shell, control and stdin to
 * the client whose session asked (to all when none matches).
 *
 * Nothing lost on reconnect: when the last client of a kernel that named a
 * session_id (?session_id= on the upgrade) goes, what the kernel sends until
 * the next client connects is kept (bounded: the oldest dropped first) and
 * replayed in order to the next connection with the same session_id.
 * A kernel re-adopted after a gateway restart has no session yet: what it
 * sends before its first client connects (with what its IOPub held while
 * no gateway listened) is kept the same way for that first client,
 * whatever its session_id.
 *
 * Slow clients: a client that does not read what is queued for it (beyond
 * the bound of channels_set_limits()) is treated as gone from that message
 * on (what follows is kept for its session as above); what was queued
 * before is still written, then the connection is closed with 1008 (policy
 * violation) - or cut once it has read nothing for CHANNELS_LINGER_S (a
 * client that reads slowly gets all of it; one that stopped is cut).
 * A client whose kernel does not take its messages (ZeroMQ's high-water
 * mark reached) is closed with 1008 too: its message is not sent.
 */
#ifndef CG_GW_CHANNELS_H
#define CG_GW_CHANNELS_H

#include "gateway/convert.h"
#include "gateway/kernels.h"

#include <stddef.h>
#include <zmq.h>

struct channels;

/* An empty set of connections. NULL on no memory. */
struct channels *channels_new(void);

/* Sets the bounds of each connection from now on: the largest message
 * taken from a client and the most bytes queued for it (0 keeps the
 * defaults, WS_MAX_MESSAGE and WS_MAX_QUEUED of ws.h). */
void channels_set_limits(struct channels *ch, size_t max_message, size_t max_queued);

/* Seconds a slow client's connection lingers to write what was queued,
 * counted again whenever the client takes some of it. */
#define CHANNELS_LINGER_S 10.0

/* Closes every connection, frees the set and nulls *ch. Idempotent. */
void channels_destroy(struct channels **ch);

/* The sink to hand to kernels_new(): messages from kernels land here. */
struct kernels_sink channels_sink(struct channels *ch);

/* Bounds of what is kept for a session while no client is connected. */
#define CHANNELS_BACKLOG_MSGS 4096
#define CHANNELS_BACKLOG_BYTES (32u << 20)

/*
 * Ties a WebSocket on fd (an upgraded HTTP connection; urh is libmicrohttpd's
 * upgrade handle, closed through it when the connection ends; extra/n:
 * bytes read past the request) to kernel k, speaking form. session_id: the
 * client's (the upgrade's query), or NULL/"". What was kept for that
 * session is sent first. Returns CG_OK or CG_ENOMEM (then the caller
 * closes urh).
 */
int channels_attach(struct channels *ch, struct kernel *k, int fd, const char *extra, size_t n,
                    enum convert_form form, const char *session_id, void *urh);

/* Closes the connections of k (going away): call before kernels_delete(). */
void channels_kernel_gone(struct channels *ch, struct kernel *k);

/* Pings every connection when interval_s passed since the last round
 * (0: never). Call often; cheap. */
void channels_tick(struct channels *ch, double interval_s);

/* Fills items with the sockets to poll (at most max); returns how many. */
size_t channels_pollitems(const struct channels *ch, zmq_pollitem_t *items, size_t max);

/* Handles the n items channels_pollitems() filled, after zmq_poll, and
 * frees connections that ended. */
void channels_handle(struct channels *ch, const zmq_pollitem_t *items, size_t n);

#endif
