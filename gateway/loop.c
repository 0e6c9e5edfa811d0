/*
 * loop.c - the gateway's poll loop (see loop.h).
 */
#include "gateway/loop.h"

#include "common/cgerr.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 50 /* reaping, waiting requests: at least this often */

int
loop_run(struct http *h, struct kernels *ks, struct channels *ch, const struct loop_opts *o,
         volatile int *stop)
{
    zmq_pollitem_t *items = NULL;
    size_t cap = 0;
    int rc = CG_OK;

    while (!*stop) {
        /* Room for the HTTP fd, 4 sockets per kernel and every WebSocket,
         * grown when full. */
        size_t need = cap ? cap : 64;
        for (;;) {
            if (need > cap) {
                zmq_pollitem_t *p = realloc(items, need * sizeof *items);
                if (!p) {
                    rc = CG_ENOMEM;
                    goto out;
                }
                items = p;
                cap = need;
            }
            items[0] = (zmq_pollitem_t){ .fd = http_fd(h), .events = ZMQ_POLLIN };
            size_t nk = kernels_pollitems(ks, items + 1, cap - 1);
            size_t nc = channels_pollitems(ch, items + 1 + nk, cap - 1 - nk);
            if (1 + nk + nc < cap) {
                long t = http_timeout_ms(h);
                if (t < 0 || t > TICK_MS)
                    t = TICK_MS;
                if (zmq_poll(items, (int)(1 + nk + nc), t) < 0 && errno != EINTR) {
                    log_error("zmq_poll: %s", zmq_strerror(errno));
                    rc = CG_ESYS;
                    goto out;
                }
                kernels_handle(ks, items + 1, nk);
                channels_handle(ch, items + 1 + nk, nc);
                break;
            }
            need = cap * 2; /* full: there may be more; poll with more room */
        }
        http_run(h);
        kernels_tick(ks);
        channels_tick(ch, o->ping_s);
        struct kernel *k;
        while (o->cull_idle_s > 0 && (k = kernels_idle(ks, o->cull_idle_s, o->cull_connected))) {
            log_info("kernel %s: idle for %.0f s, culled", kernel_id(k), o->cull_idle_s);
            channels_kernel_gone(ch, k);
            kernels_delete(ks, &k);
        }
    }
out:
    free(items);
    return rc;
}
