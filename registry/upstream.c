/*
 * upstream.c - fetches from the upstream registries (see upstream.h): one
 * libcurl easy transfer per hop, redirects followed here so that each is
 * checked against the ecosystem's hosts, the body streamed into an fd or a
 * buffer under the size bound. Finished easy handles go back to a small
 * pool, with their open connections: a package manager's many small
 * requests do not each pay a connection and a TLS handshake. (A handle is
 * used by one thread at a time; libcurl does not support one connection
 * cache shared by concurrent threads, so connections are not put in the
 * share.) DNS answers and TLS sessions are shared through a locked curl
 * share.
 */
#include "registry/upstream.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/version.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_S 15
#define LOW_SPEED_TIME_S 30
/* A non-200 answer's body is read and dropped, up to this much. */
#define DROP_MAX (1024 * 1024)
#define HOST_MAX 256
#define ORIGINS_MAX 2
/* Idle easy handles kept, with their connections. */
#define POOL_MAX 16

/* Where a redirect may lead: a scheme, host and port of an upstream base. */
struct origin {
    bool https;              /* the base is https: no redirect down to http */
    char host[HOST_MAX];     /* lower case */
    long port;               /* explicit or the scheme's default */
};

struct upstream {
    struct origin origins[REG_ECO_COUNT][ORIGINS_MAX]; /* allowed per ecosystem */
    size_t n_origins[REG_ECO_COUNT];
    char ca_file[sizeof ((struct regpolicy *)0)->ca_file]; /* "" for the system's */
    uint64_t max_bytes;      /* the body bound */
    unsigned timeout_s;      /* the whole fetch, redirects included */
    CURLSH *share;           /* DNS answers, TLS sessions */
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST]; /* one per kind of shared data */
    pthread_mutex_t pool_lock;   /* guards the pool */
    CURL *pool[POOL_MAX];        /* idle handles, their connections open */
    size_t n_pool;
};

/* The state of one transfer, for the write callback. */
struct xfer {
    const struct upstream *up;
    const struct upstream_req *rq;
    CURL *h;
    uint64_t bytes;          /* body bytes of a 200 delivered */
    uint64_t dropped;        /* bytes of other answers read and dropped */
    bool too_big;            /* stopped: the body passed max_bytes */
    int write_errno;         /* stopped: writing out_fd failed with this */
    bool no_memory;          /* stopped: out_mem could not grow */
};

int
upstream_global_init(char *err, size_t errlen)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return cg_fail(err, errlen, CG_ESYS, "libcurl failed to initialise: %s",
                       curl_easy_strerror(rc));
    return CG_OK;
}

/* ---- origins --------------------------------------------------------------- */

/*
 * Splits an absolute http(s) URL into *o. Returns CG_OK, CG_EINVAL (not a
 * URL, another scheme, user info, no host), CG_ENOMEM.
 */
static int
origin_of(const char *url, struct origin *o)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
    int rc = CG_EINVAL;

    if (!u)
        return CG_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || !scheme
        || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host
        || strlen(host) >= sizeof o->host)
        goto out;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK || !port)
        goto out;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || *end || p < 1 || p > 65535)
        goto out;
    o->https = strcasecmp(scheme, "https") == 0;
    size_t n = strlen(host);
    for (size_t i = 0; i <= n; i++)
        o->host[i] = (char)tolower((unsigned char)host[i]);
    o->port = p;
    rc = CG_OK;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

/* Adds the origin of base to eco's list unless it is there already. */
static int
add_origin(struct upstream *up, enum reg_eco eco, const char *base, char *err, size_t errlen)
{
    struct origin o;
    int rc = origin_of(base, &o);

    if (rc == CG_ENOMEM)
        return cg_fail(err, errlen, rc, "out of memory");
    if (rc != CG_OK)
        return cg_fail(err, errlen, rc, "the %s upstream \"%.200s\" is not an http(s) URL",
                       regpolicy_eco_name(eco), base);
    for (size_t i = 0; i < up->n_origins[eco]; i++) {
        const struct origin *h = &up->origins[eco][i];
        if (h->https == o.https && h->port == o.port && strcmp(h->host, o.host) == 0)
            return CG_OK;
    }
    if (up->n_origins[eco] == ORIGINS_MAX)
        return cg_fail(err, errlen, CG_ETOOBIG, "too many upstream hosts");
    up->origins[eco][up->n_origins[eco]++] = o;
    return CG_OK;
}

/*
 * May a redirect from a URL whose scheme is https (from_https) go to
 * target? Only to a host of eco, on that base's port (or 443 for an
 * upgrade to https), never down from https to http. why says why not.
 */
static bool
redirect_allowed(const struct upstream *up, enum reg_eco eco, bool from_https,
                 const char *target, char *why, size_t whylen)
{
    struct origin t;

    if (origin_of(target, &t) != CG_OK) {
        snprintf(why, whylen, "it is not an http(s) URL without user name");
        return false;
    }
    if (from_https && !t.https) {
        snprintf(why, whylen, "it goes from https down to http");
        return false;
    }
    for (size_t i = 0; i < up->n_origins[eco]; i++) {
        const struct origin *o = &up->origins[eco][i];
        if (strcmp(o->host, t.host) != 0)
            continue;
        if (o->https && !t.https)
            continue;
        if (t.port == o->port || (t.https && t.port == 443))
            return true;
    }
    snprintf(why, whylen, "%.255s:%ld is not a host of the %s upstream (redirects are "
             "followed only to the hosts of CELLGATE_REGISTRY_%s)", t.host, t.port,
             regpolicy_eco_name(eco), eco == REG_NPM ? "NPM" : "PYPI and _PYPI_FILES");
    return false;
}

/* ---- the object ------------------------------------------------------------ */

static void
share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *cls)
{
    struct upstream *up = cls;
    (void)h;
    (void)access;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&up->locks[data]);
}

static void
share_unlock(CURL *h, curl_lock_data data, void *cls)
{
    struct upstream *up = cls;
    (void)h;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&up->locks[data]);
}

struct upstream *
upstream_new(const struct regpolicy *p, char *err, size_t errlen)
{
    struct upstream *up = calloc(1, sizeof *up);

    if (!up) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&up->locks[i], NULL);
    pthread_mutex_init(&up->pool_lock, NULL);
    if (add_origin(up, REG_NPM, p->npm, err, errlen) != CG_OK
        || add_origin(up, REG_PYPI, p->pypi, err, errlen) != CG_OK
        || add_origin(up, REG_PYPI, p->pypi_files, err, errlen) != CG_OK)
        goto fail;
    snprintf(up->ca_file, sizeof up->ca_file, "%s", p->ca_file);
    up->max_bytes = p->max_bytes;
    up->timeout_s = p->timeout_s ? p->timeout_s : 60;
    up->share = curl_share_init();
    if (!up->share) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        goto fail;
    }
    if (curl_share_setopt(up->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK
        || curl_share_setopt(up->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK
        || curl_share_setopt(up->share, CURLSHOPT_USERDATA, up) != CURLSHE_OK
        || curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK
        || curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)
               != CURLSHE_OK) {
        cg_fail(err, errlen, CG_ESYS, "libcurl cannot share DNS and TLS sessions");
        goto fail;
    }
    return up;
fail:
    upstream_destroy(&up);
    return NULL;
}

void
upstream_destroy(struct upstream **upp)
{
    if (!upp || !*upp)
        return;
    struct upstream *up = *upp;
    for (size_t i = 0; i < up->n_pool; i++)
        curl_easy_cleanup(up->pool[i]);
    if (up->share)
        curl_share_cleanup(up->share);
    for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&up->locks[i]);
    pthread_mutex_destroy(&up->pool_lock);
    free(up);
    *upp = NULL;
}

/* ---- one fetch --------------------------------------------------------------- */

/* An easy handle for one fetch: an idle one from the pool (options reset,
 * connections kept) or a new one. NULL when out of memory. */
static CURL *
handle_get(struct upstream *up)
{
    CURL *h = NULL;

    pthread_mutex_lock(&up->pool_lock);
    if (up->n_pool > 0)
        h = up->pool[--up->n_pool];
    pthread_mutex_unlock(&up->pool_lock);
    if (h) {
        curl_easy_reset(h);
        return h;
    }
    return curl_easy_init();
}

/* Gives h back to the pool, or cleans it up when the pool is full or the
 * fetch failed (its connection may be in any state). */
static void
handle_put(struct upstream *up, CURL *h, bool ok)
{
    if (!h)
        return;
    if (ok) {
        pthread_mutex_lock(&up->pool_lock);
        if (up->n_pool < POOL_MAX) {
            up->pool[up->n_pool++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&up->pool_lock);
    }
    if (h)
        curl_easy_cleanup(h);
}

/* Writes all of p to fd; 0 or an errno. */
static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *cls)
{
    struct xfer *x = cls;
    size_t n = size * nmemb;
    long code = 0;

    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        x->dropped += n;
        return x->dropped > DROP_MAX ? 0 : n;
    }
    if (n > x->up->max_bytes - x->bytes) {
        x->too_big = true;
        return 0;
    }
    if (x->rq->out_fd >= 0) {
        x->write_errno = write_all(x->rq->out_fd, data, n);
        if (x->write_errno)
            return 0;
    } else if (buf_add(x->rq->out_mem, data, n) != CG_OK) {
        x->no_memory = true;
        return 0;
    }
    x->bytes += n;
    return n;
}

/* Sets the options every hop shares; false if libcurl refuses one. */
static bool
setup_handle(const struct upstream *up, const struct upstream_req *rq, CURL *h,
             struct curl_slist *headers, struct xfer *x, char *curl_err)
{
    bool ok = true;

    ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
    if (up->ca_file[0]) {
        ok &= curl_easy_setopt(h, CURLOPT_CAINFO, up->ca_file) == CURLE_OK;
        ok &= curl_easy_setopt(h, CURLOPT_CAPATH, NULL) == CURLE_OK;
    }
    ok &= curl_easy_setopt(h, CURLOPT_SHARE, up->share) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_USERAGENT, "cellgate-registry/" CELLGATE_VERSION)
          == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
    if (rq->compressed)
        ok &= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)up->max_bytes) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                           (long)(up->timeout_s < LOW_SPEED_TIME_S ? up->timeout_s
                                                                   : LOW_SPEED_TIME_S))
          == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err) == CURLE_OK;
    return ok;
}

static bool
is_redirect(long code)
{
    return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

int
upstream_fetch(struct upstream *up, const struct upstream_req *rq,
               struct upstream_res *res, char *err, size_t errlen)
{
    char curl_err[CURL_ERROR_SIZE] = "", why[512];
    char url[UPSTREAM_URL_MAX];
    struct curl_slist *headers = NULL;
    struct xfer x = { .up = up, .rq = rq };
    double deadline = clock_now() + up->timeout_s;
    int rc = CG_OK;
    CURL *h = NULL;

    *res = (struct upstream_res){ 0 };
    if (strlen(rq->url) >= sizeof url)
        return cg_fail(err, errlen, CG_EINVAL, "the upstream URL is too long");
    snprintf(url, sizeof url, "%s", rq->url);
    snprintf(res->url, sizeof res->url, "%s", url);
    h = handle_get(up);
    if (!h)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    x.h = h;
    if (rq->accept) {
        char line[256];
        snprintf(line, sizeof line, "Accept: %s", rq->accept);
        struct curl_slist *l = curl_slist_append(NULL, line);
        if (!l) {
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto out;
        }
        headers = l;
    }
    if (!setup_handle(up, rq, h, headers, &x, curl_err)) {
        rc = cg_fail(err, errlen, CG_ESYS, "libcurl refused an option (too old a libcurl?)");
        goto out;
    }

    for (int hop = 0;; hop++) {
        double left = deadline - clock_now();
        if (left <= 0) {
            rc = cg_fail(err, errlen, CG_ETIMEDOUT, "no answer within %u s "
                         "(CELLGATE_REGISTRY_TIMEOUT)", up->timeout_s);
            goto out;
        }
        long left_ms = (long)(left * 1000) + 1;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, left_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         left_ms < CONNECT_TIMEOUT_S * 1000L ? left_ms : CONNECT_TIMEOUT_S * 1000L);
        x.dropped = 0;
        curl_err[0] = '\0';
        CURLcode cc = curl_easy_perform(h);
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        res->status = code;
        res->bytes = x.bytes;
        snprintf(res->url, sizeof res->url, "%s", url);

        if (x.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = cg_fail(err, errlen, CG_ETOOBIG, "larger than CELLGATE_REGISTRY_MAX_BYTES "
                         "(%" PRIu64 " bytes)", up->max_bytes);
            goto out;
        }
        if (x.write_errno) {
            rc = cg_fail(err, errlen, CG_ESYS, "writing the body failed: %s",
                         strerror(x.write_errno));
            goto out;
        }
        if (x.no_memory) {
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto out;
        }
        if (cc == CURLE_OPERATION_TIMEDOUT) {
            rc = cg_fail(err, errlen, CG_ETIMEDOUT, "the upstream timed out: %s "
                         "(CELLGATE_REGISTRY_TIMEOUT is %u s)",
                         curl_err[0] ? curl_err : "no answer", up->timeout_s);
            goto out;
        }
        if (code == 404 || code == 410) {
            rc = cg_fail(err, errlen, CG_ENOTFOUND, "the upstream answered HTTP %ld", code);
            goto out;
        }
        if (is_redirect(code)) {
            char *loc = NULL;
            if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK || !loc) {
                rc = cg_fail(err, errlen, CG_EREMOTE, "the upstream answered HTTP %ld without "
                             "a Location", code);
                goto out;
            }
            if (hop == UPSTREAM_REDIRECTS_MAX) {
                rc = cg_fail(err, errlen, CG_EREFUSED, "the upstream redirected more than %d "
                             "times", UPSTREAM_REDIRECTS_MAX);
                goto out;
            }
            if (strlen(loc) >= sizeof url) {
                rc = cg_fail(err, errlen, CG_EREFUSED, "the upstream redirected to a URL too "
                             "long");
                goto out;
            }
            bool from_https = strncasecmp(url, "https:", 6) == 0;
            if (!redirect_allowed(up, rq->eco, from_https, loc, why, sizeof why)) {
                rc = cg_fail(err, errlen, CG_EREFUSED, "the upstream's redirect was not "
                             "followed: %s", why);
                goto out;
            }
            snprintf(url, sizeof url, "%s", loc);
            continue;
        }
        if (cc != CURLE_OK) {
            if (code && code != 200)
                rc = cg_fail(err, errlen, CG_EREMOTE, "the upstream answered HTTP %ld", code);
            else
                rc = cg_fail(err, errlen, CG_EREMOTE, "the upstream failed: %s",
                             curl_err[0] ? curl_err : curl_easy_strerror(cc));
            goto out;
        }
        if (code != 200) {
            rc = cg_fail(err, errlen, CG_EREMOTE, "the upstream answered HTTP %ld", code);
            goto out;
        }
        char *ct = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            snprintf(res->content_type, sizeof res->content_type, "%s", ct);
        break;
    }
out:
    /* The handle still points at headers and curl_err: forget them first. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    handle_put(up, h, rc == CG_OK || rc == CG_ENOTFOUND);
    curl_slist_free_all(headers);
    return rc;
}
