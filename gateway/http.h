/*
 * http.h - the gateway's HTTP side: libmicrohttpd in external-poll mode
 * (its epoll fd is polled by the gateway's one loop), token auth on every
 * route, and the Jupyter Kernel Gateway REST API: /api, /api/kernelspecs,
 * /kernelspecs/{name}/{file}, /api/kernels and each kernel's interrupt,
 * restart and channels (the WebSocket upgrade, handed to channels.h).
 * Errors are JSON {"reason", "message"} with their status. CORS: answers
 * carry Access-Control-Allow-Origin for the allowed origin, preflights
 * (OPTIONS) are answered without a token, and a WebSocket upgrade from a
 * page of another origin is refused (403).
 */
#ifndef CG_GW_HTTP_H
#define CG_GW_HTTP_H

#include "gateway/channels.h"
#include "gateway/kernels.h"
#include "gateway/specs.h"

#include <stdbool.h>
#include <stddef.h>

struct http;

/* What the HTTP side serves and how. All borrowed; they outlive it. */
struct http_opts {
    const char *ip;               /* address to listen on */
    int port;
    const char *token;            /* every request must carry it */
    struct specs *specs;
    struct kernels *kernels;
    struct channels *channels;
    size_t max_kernels;           /* POST /api/kernels answers 403 beyond (0: no limit) */
    const char *base_url;         /* every path starts with it: "" or "/prefix" */
    const char *allow_origin;     /* CORS: an origin, "*", or NULL (same host only) */
    const char *tls_cert;         /* PEM certificate chain (text), or NULL: plain HTTP */
    const char *tls_key;          /* its PEM private key (text) */
    bool no_listen;               /* no socket of its own (ip, port unused): connections
                                   * come from http_add_connection() (the fuzz target) */
    /* Bounds on clients; 0 takes the default below. */
    double request_timeout_s;     /* a request's headers and body must arrive within it */
    unsigned max_connections;     /* open connections (WebSockets included) at once */
    unsigned max_per_ip;          /* ... from one address (0: no limit, the default) */
    size_t max_header;            /* a request's line and headers, in bytes */
    size_t max_body;              /* a request's body, in bytes */
};

/* Seconds POST /api/kernels and restart wait for a kernel to answer. */
#define HTTP_READY_WAIT_S 60.0
/* Defaults of the bounds in struct http_opts. A request that does not
 * arrive whole in time is answered 408 (when it is the connection's first)
 * and closed; connections beyond the limits are closed as soon as they are
 * accepted; headers beyond their bound are answered 431 (414 for the URL)
 * by libmicrohttpd; a body beyond its bound 413. */
#define HTTP_REQUEST_TIMEOUT_S 30.0
#define HTTP_MAX_CONNECTIONS 1000u
#define HTTP_MAX_HEADER (32u << 10)
#define HTTP_MAX_BODY (1u << 20)

/* Listens and returns the server, or NULL with err filled. */
struct http *http_new(const struct http_opts *o, char *err, size_t errlen);

/* Serves a connected socket as if it had been accepted: fd is taken over
 * (libmicrohttpd closes it when the connection ends, or at once on error).
 * Returns CG_OK, or CG_ESYS with errno set. */
int http_add_connection(struct http *h, int fd);

/* Stops listening, frees and nulls *h. Idempotent. */
void http_destroy(struct http **h);

/* The fd the loop polls for readability (libmicrohttpd's epoll fd). */
int http_fd(const struct http *h);

/* Most milliseconds the loop may wait before http_run() (-1: no limit). */
long http_timeout_ms(const struct http *h);

/* Does the HTTP work that is ready, then answers requests that were
 * waiting for a kernel that is now ready (or waited long enough). */
void http_run(struct http *h);

#endif
