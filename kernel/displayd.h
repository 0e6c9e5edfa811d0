/*
 * displayd.h - the kernel's end of cellgate-display: a listening AF_UNIX
 * SOCK_SEQPACKET socket that code in the box (any language) connects to,
 * to show a file as display_data in the running cell.
 *
 * With the box, the socket is bound inside it (box.h, BOX_DISPLAY_SOCKET)
 * and init hands the listening fd over; without it, the kernel binds one
 * in a private directory it removes at shutdown, next to a symlink
 * cellgate-display -> this program. Each client sends one request
 * ({"mime", "name"}, display.h) with the file it opened itself attached
 * (SCM_RIGHTS), so it can only show what it may read; it gets one answer,
 * "ok" or why not. Everything a client sends is bounded, and a client that
 * sends nothing is dropped after a short wait.
 */
#ifndef CG_DISPLAYD_H
#define CG_DISPLAYD_H

#include "kernel/chan.h"
#include "kernel/runtime.h"
#include "kernel/site.h"

#include <stddef.h>
#include <zmq.h>

#define DISPLAYD_MAX_CONNS 8     /* clients served at once; more wait in the backlog */
#define DISPLAYD_POLL_ITEMS (1 + DISPLAYD_MAX_CONNS)

struct displayd;

/* Called before a display is published, so that it follows what the
 * running cell printed before asking for it (cell_catch_up). */
struct displayd_hook {
    void (*catch_up)(void *ctx);
    void *ctx;
};

/*
 * A display server publishing through chan, for code running in site
 * (both borrowed): with the box, it takes the socket from the box once the
 * box is ready; without, it creates its directory, socket and symlink now.
 * Returns NULL with err filled (the kernel runs on without
 * cellgate-display).
 */
struct displayd *displayd_new(struct chan *chan, struct site *site, struct displayd_hook hook,
                              char *err, size_t errlen);

/* The box died: its clients and socket are closed; a fresh box's socket
 * is taken once it is ready. */
void displayd_box_gone(struct displayd *d);

/* Closes every connection and the socket, removes the private directory
 * (without the box); frees and nulls *d. Idempotent. */
void displayd_destroy(struct displayd **d);

/* Sets where->bin_dir and where->display_socket for a runtime about to
 * start: the box's paths, or the private directory's (none without a
 * server). */
void displayd_place(const struct displayd *d, struct rt_place *where);

/* Fills up to DISPLAYD_POLL_ITEMS poll items (revents cleared); returns
 * how many. */
size_t displayd_poll_items(struct displayd *d, zmq_pollitem_t *items);

/* Milliseconds until the next connection times out, or -1 for none. */
long displayd_wait_ms(const struct displayd *d);

/*
 * After zmq_poll (items as filled above): accepts connections, serves the
 * requests that arrived (publishing their displays after the cell's
 * earlier output, parented by chan_output_parent()) and drops clients
 * whose time is up. Call it every turn of the loop, with n = 0 when the
 * poll timed out.
 */
void displayd_service(struct displayd *d, const zmq_pollitem_t *items, size_t n);

#endif
