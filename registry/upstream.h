/*
 * upstream.h - the registry gateway's fetches from the operator's upstream
 * registries, with libcurl. Only http and https; TLS always verified (peer
 * and host name) against the system's CAs or the operator's
 * CELLGATE_REGISTRY_CA_FILE; no proxy from the environment. Redirects are
 * followed here, at most UPSTREAM_REDIRECTS_MAX, and only to a host of the
 * ecosystem the request is for (npm: the npm upstream's host; pypi: the
 * index's and the files base's hosts): the box cannot steer the gateway
 * anywhere else. Every fetch is bounded in time (the policy's timeout for
 * the whole fetch, redirects included, a connect timeout and a low-speed
 * limit so a hanging upstream ends) and in size (the policy's max_bytes,
 * enforced while the body streams in).
 *
 * Safe to use from many threads at once: the upstream object's settings
 * are read-only after upstream_new(), and what it keeps between fetches
 * (idle handles with their open connections, DNS answers, TLS sessions)
 * is locked.
 */
#ifndef CG_UPSTREAM_H
#define CG_UPSTREAM_H

#include "registry/regpolicy.h"

#include "common/buf.h"

#include <stdint.h>

#define UPSTREAM_URL_MAX 2048
#define UPSTREAM_REDIRECTS_MAX 5

struct upstream;

/* One fetch. The body of the final 200 answer goes to out_fd when it is
 * >= 0 (an artifact, written from the fd's current offset), else is
 * appended to out_mem (metadata). */
struct upstream_req {
    enum reg_eco eco;           /* whose hosts redirects may go to */
    const char *url;            /* the first URL (built from the policy's bases) */
    const char *accept;         /* the Accept header to send, or NULL */
    bool compressed;            /* offer gzip/deflate (metadata; curl decodes, and
                                   the size bound counts decoded bytes) */
    int out_fd;                 /* >= 0: write the body here */
    struct buf *out_mem;        /* out_fd < 0: append the body here */
};

/* What came back; filled as far as the fetch got, on error too. */
struct upstream_res {
    long status;                     /* the last HTTP status, 0 if none */
    uint64_t bytes;                  /* body bytes delivered */
    char content_type[128];          /* of the final answer, "" if none */
    char url[UPSTREAM_URL_MAX];      /* the final URL, after redirects */
};

/* Sets up libcurl once per process, before any thread fetches. CG_OK or
 * CG_ESYS with err filled. */
int upstream_global_init(char *err, size_t errlen);

/*
 * Reads what fetches need from policy p (the bases' hosts, CA file,
 * timeout, max_bytes; copied, p may go away). Returns the object, or NULL
 * with err filled (a base that is not an http(s) URL, no memory).
 * Destroy with upstream_destroy().
 */
struct upstream *upstream_new(const struct regpolicy *p, char *err, size_t errlen);

/* Frees *up and sets it to NULL; NULL or *up NULL is fine. No fetch may be
 * running. */
void upstream_destroy(struct upstream **up);

/*
 * Fetches rq->url, following allowed redirects. Returns CG_OK when the
 * final answer was 200 and its whole body was delivered, else:
 *   CG_ENOTFOUND  the upstream answered 404 or 410
 *   CG_ETIMEDOUT  the time limit passed, or the upstream stopped sending
 *   CG_ETOOBIG    the body is larger than the policy's max_bytes (known
 *                 from Content-Length, or counted while streaming)
 *   CG_EREFUSED   a redirect to a host, scheme or port not allowed, or
 *                 more than UPSTREAM_REDIRECTS_MAX of them
 *   CG_EREMOTE    any other HTTP status, or a transfer error (TLS,
 *                 connection refused, DNS, a truncated body)
 *   CG_ESYS       writing out_fd failed
 *   CG_ENOMEM     out of memory
 * with err saying what happened for humans. err never holds an upstream
 * URL (a base may carry credentials, and err is meant for the box);
 * res->url says where the fetch ended, for the operator's log.
 * Bytes already written to out_fd / out_mem stay there on error; the
 * caller discards them.
 */
int upstream_fetch(struct upstream *up, const struct upstream_req *rq,
                   struct upstream_res *res, char *err, size_t errlen);

#endif
