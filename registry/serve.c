/*
 * serve.c - the registry gateway's HTTP side (see serve.h). One handler
 * per request kind, each a short straight line: build the upstream URL
 * from the operator's base and the parsed request (never from the raw
 * path), fetch, rewrite or cache, answer. Bodies of errors name what
 * happened; for paths under /npm/ they are npm's JSON error form
 * ({"error": "..."}), which npm prints after the status, else plain text.
 */
#include "registry/serve.h"

#include "registry/regpath.h"
#include "registry/rewrite.h"

#include "common/buf.h"
#include "common/cgerr.h"
#include "common/log.h"

#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_NPM_ABBREVIATED "application/vnd.npm.install-v1+json"
#define ACCEPT_NPM_ABBREVIATED_FWD \
    "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
#define PEP691_JSON "application/vnd.pypi.simple.v1+json"
#define PEP691_HTML "application/vnd.pypi.simple.v1+html"
#define ACCEPT_PYPI_JSON_FWD \
    PEP691_JSON ", " PEP691_HTML ";q=0.2, text/html;q=0.01"
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"
#define CT_ARTIFACT "application/octet-stream"
#define CC_METADATA "no-cache"
#define CC_ARTIFACT "public, max-age=31536000, immutable"
#define CC_ERROR "no-store"
#define MSG_MAX 1536
#define META_MAGIC "cellgate-meta 1"   /* first line of a cached metadata record */

struct serve {
    struct serve_cfg cfg;
    struct MHD_Daemon *d;
};

/* ---- answers --------------------------------------------------------------- */

/* Queues resp (destroyed here) with a Content-Type and Cache-Control. */
static enum MHD_Result
queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *resp,
      const char *ctype, const char *cache_control)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/*
 * Answers status with msg as the body: {"error": msg} for npm, else text.
 * Bytes that are not printable ASCII (the message may quote a path from
 * the box) become '?', so nothing reaches a terminal that could steer it.
 */
static enum MHD_Result
answer_error(struct MHD_Connection *conn, bool npm, unsigned status, const char *msg)
{
    char clean[MSG_MAX];
    size_t n = 0;

    for (; msg[n] && n < sizeof clean - 2; n++) {
        unsigned char c = (unsigned char)msg[n];
        clean[n] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    clean[n] = '\0';
    if (npm) {
        json_t *j = json_pack("{s:s}", "error", clean);
        char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (body)
            return queue(conn, status,
                         MHD_create_response_from_buffer(strlen(body), body,
                                                         MHD_RESPMEM_MUST_FREE),
                         "application/json", CC_ERROR);
    }
    clean[n++] = '\n';
    return queue(conn, status, MHD_create_response_from_buffer(n, clean, MHD_RESPMEM_MUST_COPY),
                 CT_TEXT, CC_ERROR);
}

/* Answers an error formatted like printf. */
static enum MHD_Result
answer_errorf(struct MHD_Connection *conn, bool npm, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum MHD_Result
answer_errorf(struct MHD_Connection *conn, bool npm, unsigned status, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return answer_error(conn, npm, status, msg);
}

/*
 * Answers an upstream failure rc (upstream_fetch's codes) for what
 * ("npm packument \"left-pad\""), and logs it with the upstream URL for
 * the operator: not found 404, timeout 504, everything else 502.
 */
static enum MHD_Result
answer_upstream_error(const struct serve *s, struct MHD_Connection *conn, const struct reg_req *rq,
                      const char *what, bool artifact, int rc, const char *err,
                      const struct upstream_res *res)
{
    bool npm = rq->eco == REG_NPM;

    log_warn("registry: kernel=%s %s: %s (%s)", s->cfg.kernel, what, err, res->url);
    switch (rc) {
    case CG_ENOTFOUND:
        return answer_errorf(conn, npm, MHD_HTTP_NOT_FOUND, "cellgate registry: %s: not found "
                             "upstream (%s)", what, err);
    case CG_ETIMEDOUT:
        return answer_errorf(conn, npm, MHD_HTTP_GATEWAY_TIMEOUT, "cellgate registry: %s: %s",
                             what, err);
    case CG_ETOOBIG:
        return answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: %s "
                             "larger than CELLGATE_REGISTRY_MAX_BYTES (%" PRIu64 " bytes)", what,
                             artifact ? "artifact" : "metadata", s->cfg.policy->max_bytes);
    default:
        return answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: %s", what,
                             err);
    }
}

/* ---- upstream URLs --------------------------------------------------------- */

/* Builds the upstream URL for rq into url; false if it does not fit. The
 * parts come from the policy and from regpath's validated request. */
static bool
upstream_url(const struct regpolicy *p, const struct reg_req *rq, char *url, size_t len)
{
    const char *slash = rq->name[0] == '@' ? strchr(rq->name, '/') : NULL;
    int n = -1;

    switch (rq->kind) {
    case REG_NPM_PACKUMENT:
        if (slash)
            n = snprintf(url, len, "%s/%.*s%%2f%s", p->npm, (int)(slash - rq->name), rq->name,
                         slash + 1);
        else
            n = snprintf(url, len, "%s/%s", p->npm, rq->name);
        break;
    case REG_NPM_TARBALL:
        n = snprintf(url, len, "%s/%s/-/%s", p->npm, rq->name, rq->file);
        break;
    case REG_PYPI_PROJECT:
        n = snprintf(url, len, "%s/%s/", p->pypi, rq->name);
        break;
    case REG_PYPI_FILE:
        n = snprintf(url, len, "%s/%s", p->pypi_files, rq->file);
        break;
    }
    return n > 0 && (size_t)n < len;
}

/* Whether the request's Accept header names type. */
static bool
accepts(struct MHD_Connection *conn, const char *type)
{
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    return a && strcasestr(a, type) != NULL;
}

/* ---- the request kinds ----------------------------------------------------- */

/* ---- cached metadata ------------------------------------------------------- */

/*
 * Metadata changes (a new version is published), so it is kept only
 * metadata_ttl_s seconds, in the shared cache beside the artifacts: a
 * record "cellgate-meta 1 <unix time>\n<content type>\n<final URL>\n"
 * followed by the upstream's body as it came (rewriting is cheap and is
 * done for every answer). The key is the upstream URL with the Accept
 * form asked for, so the full and the abbreviated packument, or PEP 691
 * JSON and HTML, are kept apart.
 */
static void
meta_key(const char *url, const char *accept, char *key, size_t len)
{
    snprintf(key, len, "metadata\n%s\n%s", accept, url);
}

/* Copies rec's first line (to the newline) into out; returns what follows it, or
 * NULL when there is no newline or the line does not fit. */
static const char *
meta_line(const char *rec, const char *end, char *out, size_t len)
{
    const char *nl = memchr(rec, '\n', (size_t)(end - rec));
    if (!nl || (size_t)(nl - rec) >= len)
        return NULL;
    memcpy(out, rec, (size_t)(nl - rec));
    out[nl - rec] = '\0';
    return nl + 1;
}

/* Fresh metadata for key from the cache: true with body and res filled
 * (content type, final URL), false when absent, stale or unreadable. */
static bool
meta_get(const struct serve *s, const char *key, struct buf *body, struct upstream_res *res)
{
    const struct regpolicy *p = s->cfg.policy;
    uint64_t size = 0;
    char head[64];
    struct buf rec = { 0 };
    bool fresh = false;
    int fd = p->metadata_ttl_s ? cache_get(s->cfg.cache, key, &size) : -1;

    if (fd < 0)
        return false;
    if (size > p->max_bytes || size > (64u << 20) || buf_reserve(&rec, (size_t)size) != CG_OK)
        goto out;
    ssize_t n = pread(fd, rec.data, (size_t)size, 0);
    if (n != (ssize_t)size)
        goto out;
    const char *at = rec.data, *end = rec.data + size;
    long long when;
    if (!(at = meta_line(at, end, head, sizeof head))
        || sscanf(head, META_MAGIC " %lld", &when) != 1
        || (long long)time(NULL) - when > (long long)p->metadata_ttl_s
        || (long long)time(NULL) < when
        || !(at = meta_line(at, end, res->content_type, sizeof res->content_type))
        || !(at = meta_line(at, end, res->url, sizeof res->url)))
        goto out;
    fresh = buf_add(body, at, (size_t)(end - at)) == CG_OK;
out:
    close(fd);
    buf_free(&rec);
    return fresh;
}

/* Keeps metadata fetched now (body as it came, res's type and URL). A
 * record that cannot be written is only logged: the answer goes out. */
static void
meta_put(const struct serve *s, const char *key, const struct buf *body,
         const struct upstream_res *res)
{
    struct cache_tmp t;
    char head[UPSTREAM_URL_MAX + 256], err[512];
    uint64_t size;

    if (!s->cfg.policy->metadata_ttl_s || cache_begin(s->cfg.cache, key, &t, err, sizeof err)
                                              != CG_OK)
        return;
    int n = snprintf(head, sizeof head, META_MAGIC " %lld\n%s\n%s\n", (long long)time(NULL),
                     res->content_type, res->url);
    if (n < 0 || (size_t)n >= sizeof head || write(t.fd, head, (size_t)n) != n
        || (body->len && write(t.fd, body->data, body->len) != (ssize_t)body->len)) {
        cache_abort(s->cfg.cache, &t);
        return;
    }
    int fd = cache_commit(s->cfg.cache, &t, &size, err, sizeof err);
    if (fd < 0)
        log_warn("registry: keeping metadata: %s", err);
    else
        close(fd);
}

/* Metadata: from the cache while fresh, else fetched; rewritten, answered. */
static enum MHD_Result
serve_metadata(const struct serve *s, struct MHD_Connection *conn, const struct reg_req *rq)
{
    const struct regpolicy *p = s->cfg.policy;
    bool npm = rq->eco == REG_NPM;
    char url[UPSTREAM_URL_MAX], what[REGPATH_NAME_MAX + 64], err[1024];
    struct upstream_res res;
    struct buf body = { 0 };
    char *out = NULL;
    size_t outlen = 0;
    const char *ctype;
    enum MHD_Result r;
    int rc;

    snprintf(what, sizeof what, "%s \"%s\"", npm ? "npm packument" : "pypi project page",
             rq->name);
    if (!upstream_url(p, rq, url, sizeof url))
        return answer_errorf(conn, npm, MHD_HTTP_BAD_REQUEST, "cellgate registry: %s: the "
                             "upstream URL would be too long", what);
    bool want_json = npm ? accepts(conn, ACCEPT_NPM_ABBREVIATED) : accepts(conn, PEP691_JSON);
    const char *accept = npm ? (want_json ? ACCEPT_NPM_ABBREVIATED_FWD : "application/json")
                             : (want_json ? ACCEPT_PYPI_JSON_FWD : "text/html");
    struct upstream_req ur = { .eco = rq->eco, .url = url, .accept = accept, .compressed = true,
                               .out_fd = -1, .out_mem = &body };
    char key[UPSTREAM_URL_MAX + 256];
    meta_key(url, accept, key, sizeof key);
    memset(&res, 0, sizeof res);
    bool cached = meta_get(s, key, &body, &res);
    if (!cached) {
        buf_free(&body);
        rc = upstream_fetch(s->cfg.up, &ur, &res, err, sizeof err);
        if (rc != CG_OK) {
            r = answer_upstream_error(s, conn, rq, what, false, rc, err, &res);
            goto out;
        }
    }
    const char *data = body.data ? body.data : "";
    if (npm) {
        rc = rewrite_npm_packument(data, body.len, p->npm, s->cfg.base, &out, &outlen, err,
                                   sizeof err);
        ctype = strncasecmp(res.content_type, ACCEPT_NPM_ABBREVIATED,
                            strlen(ACCEPT_NPM_ABBREVIATED)) == 0
                    ? ACCEPT_NPM_ABBREVIATED : "application/json";
    } else if (strcasestr(res.content_type, "+json")
               || strncasecmp(res.content_type, "application/json", 16) == 0) {
        rc = rewrite_pypi_json(data, body.len, res.url, p->pypi_files, s->cfg.base, &out,
                               &outlen, err, sizeof err);
        ctype = PEP691_JSON;
    } else {
        rc = rewrite_pypi_html(data, body.len, res.url, p->pypi_files, s->cfg.base, &out,
                               &outlen, err, sizeof err);
        ctype = accepts(conn, PEP691_HTML) ? PEP691_HTML : CT_HTML;
    }
    if (rc != CG_OK) {
        log_warn("registry: kernel=%s %s: the upstream's answer was refused: %s (%s)",
                 s->cfg.kernel, what, err, res.url);
        r = answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: the upstream "
                          "answered something that is not a %s: %s", what,
                          npm ? "packument" : "project page", err);
        goto out;
    }
    if (!cached)
        meta_put(s, key, &body, &res);
    log_debug("registry: kernel=%s %s: %zu bytes %s, %zu served", s->cfg.kernel, what,
              body.len, cached ? "cached" : "upstream", outlen);
    struct MHD_Response *resp = MHD_create_response_from_buffer(outlen, out,
                                                                MHD_RESPMEM_MUST_FREE);
    if (resp) {
        out = NULL; /* the response owns it now */
        MHD_add_response_header(resp, "Vary", "Accept");
    }
    r = queue(conn, MHD_HTTP_OK, resp, ctype, CC_METADATA);
out:
    free(out);
    buf_free(&body);
    return r;
}

/* An artifact: from the cache, or fetched into it; bytes never changed. */
static enum MHD_Result
serve_artifact(const struct serve *s, struct MHD_Connection *conn, const struct reg_req *rq)
{
    const struct regpolicy *p = s->cfg.policy;
    bool npm = rq->eco == REG_NPM;
    char url[UPSTREAM_URL_MAX], what[REGPATH_NAME_MAX + REGPATH_FILE_MAX + 64], err[1024];
    const char *how = "hit";
    uint64_t size = 0;
    int fd;

    snprintf(what, sizeof what, "%s \"%s\"", npm ? "npm tarball" : "pypi file", rq->file);
    if (!upstream_url(p, rq, url, sizeof url))
        return answer_errorf(conn, npm, MHD_HTTP_BAD_REQUEST, "cellgate registry: %s: the "
                             "upstream URL would be too long", what);
    fd = cache_get(s->cfg.cache, url, &size);
    if (fd >= 0 && size > p->max_bytes) {
        /* stored by a gateway with a larger bound: this one's still holds */
        close(fd);
        return answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: artifact "
                             "larger than CELLGATE_REGISTRY_MAX_BYTES (%" PRIu64 " bytes)", what,
                             p->max_bytes);
    }
    if (fd < 0) {
        struct cache_tmp t;
        struct upstream_res res;
        how = "miss";
        if (cache_begin(s->cfg.cache, url, &t, err, sizeof err) != CG_OK) {
            log_error("registry: %s", err);
            return answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: %s",
                                 what, err);
        }
        struct upstream_req ur = { .eco = rq->eco, .url = url, .out_fd = t.fd };
        int rc = upstream_fetch(s->cfg.up, &ur, &res, err, sizeof err);
        if (rc != CG_OK) {
            cache_abort(s->cfg.cache, &t);
            return answer_upstream_error(s, conn, rq, what, true, rc, err, &res);
        }
        fd = cache_commit(s->cfg.cache, &t, &size, err, sizeof err);
        if (fd < 0) {
            log_error("registry: %s", err);
            return answer_errorf(conn, npm, MHD_HTTP_BAD_GATEWAY, "cellgate registry: %s: %s",
                                 what, err);
        }
    }
    log_info("registry: kernel=%s eco=%s name=%s version=%s bytes=%" PRIu64 " cache=%s",
             s->cfg.kernel, regpolicy_eco_name(rq->eco), rq->name[0] ? rq->name : "-",
             rq->version[0] ? rq->version : "-", size, how);
    struct MHD_Response *resp;
    if (size == 0) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_fd64(size, fd); /* owns fd from here */
        if (!resp)
            close(fd);
    }
    return queue(conn, MHD_HTTP_OK, resp, CT_ARTIFACT, CC_ARTIFACT);
}

/* ---- the handler ----------------------------------------------------------- */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size,
           void **con_cls)
{
    const struct serve *s = cls;
    const struct regpolicy *p = s->cfg.policy;
    struct reg_req rq;
    char err[1024], why[1024];

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    /* Answered on the first call, before any request body: nothing here
     * reads one, and a request that has one is refused (405). */
    bool npm = strncmp(url, "/npm/", 5) == 0 || strcmp(url, "/npm") == 0;
    enum regpath_status st = regpath_parse(method, url, &rq, err, sizeof err);
    if (st != REGPATH_OK) {
        log_debug("registry: kernel=%s %.16s %.256s: %d %s", s->cfg.kernel, method, url, (int)st,
                  err);
        return answer_errorf(conn, npm, (unsigned)st, "cellgate registry: %s", err);
    }
    npm = rq.eco == REG_NPM;
    if (!p->on[rq.eco])
        return answer_errorf(conn, npm, MHD_HTTP_NOT_FOUND, "cellgate registry: the %s registry "
                             "is off: the operator's CELLGATE_REGISTRIES does not name it",
                             regpolicy_eco_name(rq.eco));
    if (!regpolicy_allows(p, rq.eco, rq.name, why, sizeof why)) {
        log_info("registry: kernel=%s refused %s %s: %s", s->cfg.kernel,
                 regpolicy_eco_name(rq.eco), rq.name, why);
        return answer_errorf(conn, npm, MHD_HTTP_FORBIDDEN, "cellgate registry: %s", why);
    }
    switch (rq.kind) {
    case REG_NPM_PACKUMENT:
    case REG_PYPI_PROJECT:
        return serve_metadata(s, conn, &rq);
    case REG_NPM_TARBALL:
    case REG_PYPI_FILE:
        return serve_artifact(s, conn, &rq);
    }
    return answer_error(conn, npm, MHD_HTTP_NOT_FOUND, "cellgate registry: nothing is served "
                        "here");
}

/* The target exactly as received: regpath reads "%2f" and "%2e" itself. */
static size_t
no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

struct serve *
serve_start(int listen_fd, const struct serve_cfg *cfg, char *err, size_t errlen)
{
    struct serve *s = calloc(1, sizeof *s);

    if (!s) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        close(listen_fd);
        return NULL;
    }
    s->cfg = *cfg;
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL
            | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, log_library, "registry: http", /* first, to catch what the rest say */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SERVE_CONNECTIONS_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)SERVE_IDLE_TIMEOUT_S,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_END);
    if (!s->d) {
        cg_fail(err, errlen, CG_ESYS, "libmicrohttpd cannot serve on fd %d", listen_fd);
        close(listen_fd);
        free(s);
        return NULL;
    }
    return s;
}

void
serve_stop(struct serve **sp)
{
    if (!sp || !*sp)
        return;
    MHD_stop_daemon((*sp)->d);
    free(*sp);
    *sp = NULL;
}
