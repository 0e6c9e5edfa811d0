/*
 * serve.h - the registry gateway's HTTP side: libmicrohttpd on the
 * listening socket the kernel made inside the box's network namespace, a
 * thread per connection. Each request is read (regpath), checked against
 * the operator's policy (regpolicy), and answered from the cache or the
 * upstream (cache, upstream), metadata rewritten so artifact links point
 * back here (rewrite). Everything refused is answered locally and never
 * forwarded; every failure is answered with a status and a short body that
 * says what happened, and the server goes on serving.
 */
#ifndef CG_SERVE_H
#define CG_SERVE_H

#include "registry/cache.h"
#include "registry/regpolicy.h"
#include "registry/upstream.h"

#include <stddef.h>

#define SERVE_CONNECTIONS_MAX 64
#define SERVE_IDLE_TIMEOUT_S 60

/* What the server needs; all of it must outlive the server. */
struct serve_cfg {
    const struct regpolicy *policy;   /* the operator's settings */
    struct upstream *up;              /* fetches */
    struct cache *cache;              /* artifacts */
    const char *base;                 /* the gateway's URL as the box sees it, no
                                         trailing slash ("http://127.0.0.1:3141") */
    const char *kernel;               /* the kernel's id, for audit lines */
};

struct serve;

/*
 * Starts serving on listen_fd (a listening TCP socket; the server owns it
 * from now on). Returns the server, or NULL with err filled. Stop it with
 * serve_stop().
 */
struct serve *serve_start(int listen_fd, const struct serve_cfg *cfg, char *err,
                          size_t errlen);

/* Stops the server (waits for its threads), frees *s, sets it to NULL. */
void serve_stop(struct serve **s);

#endif
