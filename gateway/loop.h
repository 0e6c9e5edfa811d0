/*
 * loop.h - the gateway's one poll loop: libmicrohttpd's epoll fd, every
 * kernel's ZeroMQ sockets and every WebSocket, in one zmq_poll. It polls
 * and dispatches; nothing calls it but main.
 */
#ifndef CG_GW_LOOP_H
#define CG_GW_LOOP_H

#include "gateway/channels.h"
#include "gateway/http.h"
#include "gateway/kernels.h"

#include <stdbool.h>

/* The loop's periodic work. */
struct loop_opts {
    double ping_s;                /* ping WebSockets this often (0: never) */
    double cull_idle_s;           /* delete kernels idle this long (0: never) */
    bool cull_connected;          /* ... even with clients connected */
};

/* Runs until *stop becomes non-zero (a signal handler sets it). Returns
 * CG_OK, or CG_ESYS when polling fails. */
int loop_run(struct http *h, struct kernels *ks, struct channels *ch,
             const struct loop_opts *o, volatile int *stop);

#endif
