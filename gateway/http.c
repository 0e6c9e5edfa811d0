/*
 * http.c - the REST routes and the WebSocket upgrade on libmicrohttpd (see
 * http.h). Requests are dispatched by a table of routes; a POST that starts
 * or restarts a kernel is suspended until the kernel answers its
 * kernel_info_request, so the loop never blocks on a kernel.
 *
 * Slow clients: libmicrohttpd's own timeout closes a connection only when
 * no byte came for a while, so a client sending a byte a second would hold
 * it forever. Every connection is therefore tracked (struct peer) and the
 * one whose request has not arrived whole within the request timeout is
 * shut down from http_run(). Connections beyond the limit are answered 503
 * and closed: libmicrohttpd's own limit is set a little higher
 * (REFUSE_ROOM) so that it goes on accepting them, where at its limit it
 * would leave them waiting in the listen queue.
 */
#include "gateway/http.h"

#include "common/buf.h"
#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/version.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_V1 "v1.kernel.websocket.jupyter.org"
#define MAX_SEGS 6
#define SWEEP_S 0.25 /* how often slow connections are looked for */
#define REFUSE_ROOM 64 /* connections beyond the limit being answered 503 */

/* One TCP connection (libmicrohttpd's socket context), from accept to close. */
struct peer {
    struct MHD_Connection *conn;
    double since;                 /* accepted, or its last request answered */
    bool busy;                    /* a whole request is being answered */
    bool served;                  /* a request was answered before */
    bool upgraded;                /* a WebSocket now: channels.h owns it */
    bool ended;                   /* shut down: too slow, or one too many */
    struct peer *prev, *next;     /* in http->peers */
};

/* One request's state, from its first call to its completion. */
struct req {
    struct http *h;
    struct MHD_Connection *conn;
    char method[8];
    char url[256];                /* the path, for the log line (no query) */
    struct buf body;              /* the upload so far */
    unsigned status;              /* what was answered, for the log line */
    bool too_large;               /* the body passed the bound: the rest is discarded */
    bool waiting;                 /* suspended until a kernel is ready */
    bool resumed;                 /* answer now with the kernel's model */
    unsigned ok_status;           /* 201 (start) or 200 (restart) */
    char kernel[KERNEL_ID_MAX];   /* the kernel waited for / upgraded to */
    double deadline;              /* answer anyway after this */
    double started;               /* clock_now() at the first call, for the log */
    enum convert_form form;       /* for an upgrade */
    char session_id[64];          /* ?session_id= of an upgrade, or "" */
    struct req *next;             /* in h->waiting */
};

struct http {
    struct MHD_Daemon *d;
    struct http_opts o;           /* bounds resolved: no 0 left for a default */
    struct req *waiting;          /* suspended requests */
    struct peer *peers;           /* every open connection */
    size_t n_peers;
    double swept_at;              /* clock_now() of the last look for slow ones */
};

/* ---- origins --------------------------------------------------------------- */

/* May a page of the request's Origin (if any) use the answer? With an
 * allowed origin set: "*" or that origin; without: only the same host. */
static bool
origin_allowed(const struct http *h, struct MHD_Connection *conn)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return true;
    const char *allow = h->o.allow_origin;
    if (allow && *allow)
        return strcmp(allow, "*") == 0 || strcmp(allow, origin) == 0;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *sep = strstr(origin, "://");
    return host && sep && strcmp(sep + 3, host) == 0;
}

/* Adds the CORS headers an allowed cross-origin request needs. */
static void
add_cors(const struct http *h, struct MHD_Connection *conn, struct MHD_Response *resp)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *allow = h->o.allow_origin;
    if (!origin || !allow || !*allow || !origin_allowed(h, conn))
        return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin",
                            strcmp(allow, "*") == 0 ? "*" : origin);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            "GET, POST, DELETE, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type");
    if (strcmp(allow, "*") != 0)
        MHD_add_response_header(resp, "Vary", "Origin");
}

/* ---- answers ------------------------------------------------------------- */

static enum MHD_Result
answer(struct req *r, unsigned status, const char *ctype, void *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_cors(r->h, r->conn, resp);
    r->status = status;
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Answers with JSON j (stolen); NULL j answers 500. */
static enum MHD_Result
answer_json(struct req *r, unsigned status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        s = strdup("{\"reason\":\"Internal Server Error\",\"message\":\"no memory\"}");
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (!s)
            return MHD_NO;
    }
    return answer(r, status, "application/json", s, strlen(s));
}

static enum MHD_Result
answer_error(struct req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result
answer_error(struct req *r, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *reason = MHD_get_reason_phrase_for(status);
    return answer_json(r, status, json_pack("{s:s, s:s}", "reason", reason ? reason : "",
                                            "message", msg));
}

static enum MHD_Result
answer_empty(struct req *r, unsigned status)
{
    return answer(r, status, NULL, NULL, 0);
}

static enum MHD_Result answer_waited(struct req *r);

/* ---- auth ---------------------------------------------------------------- */

static bool
token_equal(const char *given, const char *want)
{
    size_t n = strlen(want);
    return given && strlen(given) == n && sodium_memcmp(given, want, n) == 0;
}

/* Authorization: token T (or Bearer T), or ?token=T. */
static bool
authorized(const struct http *h, struct MHD_Connection *conn)
{
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (a) {
        if (strncasecmp(a, "token ", 6) == 0 && token_equal(a + 6, h->o.token))
            return true;
        if (strncasecmp(a, "bearer ", 7) == 0 && token_equal(a + 7, h->o.token))
            return true;
    }
    return token_equal(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token"),
                       h->o.token);
}

/* ---- routes -------------------------------------------------------------- */

static enum MHD_Result
get_api(struct req *r, char **seg)
{
    (void)seg;
    return answer_json(r, MHD_HTTP_OK, json_pack("{s:s}", "version", CELLGATE_VERSION));
}

static enum MHD_Result
get_kernelspecs(struct req *r, char **seg)
{
    (void)seg;
    return answer_json(r, MHD_HTTP_OK, specs_all_json(r->h->o.specs, r->h->o.base_url));
}

static enum MHD_Result
get_kernelspec(struct req *r, char **seg)
{
    json_t *m = specs_model_json(r->h->o.specs, seg[2], r->h->o.base_url);
    if (!m)
        return answer_error(r, MHD_HTTP_NOT_FOUND, "Kernel spec %s not found", seg[2]);
    return answer_json(r, MHD_HTTP_OK, m);
}

static enum MHD_Result
get_resource(struct req *r, char **seg)
{
    unsigned char *data;
    size_t len;
    const char *ctype;
    if (specs_resource(r->h->o.specs, seg[1], seg[2], &data, &len, &ctype) != CG_OK)
        return answer_error(r, MHD_HTTP_NOT_FOUND, "No resource %s for kernel spec %s",
                            seg[2], seg[1]);
    return answer(r, MHD_HTTP_OK, ctype, data, len);
}

static enum MHD_Result
get_kernels(struct req *r, char **seg)
{
    (void)seg;
    return answer_json(r, MHD_HTTP_OK, kernels_list_json(r->h->o.kernels));
}

/* Suspends r until kernel k answers, then kernel_answer() replies. */
static enum MHD_Result
wait_ready(struct req *r, struct kernel *k, unsigned ok_status)
{
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel_id(k));
    r->ok_status = ok_status;
    r->deadline = clock_now() + HTTP_READY_WAIT_S;
    r->waiting = true;
    r->next = r->h->waiting;
    r->h->waiting = r;
    MHD_suspend_connection(r->conn);
    return MHD_YES;
}

static enum MHD_Result
post_kernels(struct req *r, char **seg)
{
    json_error_t je;
    json_t *body = r->body.len ? json_loadb(r->body.data, r->body.len, 0, &je) : json_object();
    char err[512];
    struct kernel *k;
    enum MHD_Result rc;

    (void)seg;
    if (!json_is_object(body)) {
        json_decref(body);
        return answer_error(r, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object");
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !*name)
        name = specs_default(r->h->o.specs);
    const json_t *spec = specs_spec(r->h->o.specs, name);
    json_t *env = json_object_get(body, "env");
    size_t max = r->h->o.max_kernels;
    if (!spec)
        rc = answer_error(r, MHD_HTTP_NOT_FOUND, "No such kernel spec %s", name);
    else if (max && kernels_count(r->h->o.kernels) >= max)
        rc = answer_error(r, MHD_HTTP_FORBIDDEN, "the most kernels at once (%zu) are running",
                          max);
    else if (env && !json_is_object(env))
        rc = answer_error(r, MHD_HTTP_BAD_REQUEST, "env must be an object");
    else if ((k = kernels_take(r->h->o.kernels, name, env))) {
        snprintf(r->kernel, sizeof r->kernel, "%s", kernel_id(k));
        r->ok_status = MHD_HTTP_CREATED;
        rc = answer_waited(r); /* a pooled kernel is ready: no wait */
    } else if (kernels_start(r->h->o.kernels, name, spec, env, &k, err, sizeof err) != CG_OK)
        rc = answer_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot start %s: %s", name, err);
    else
        rc = wait_ready(r, k, MHD_HTTP_CREATED);
    json_decref(body);
    return rc;
}

static struct kernel *
kernel_of(struct req *r, char **seg)
{
    return kernels_find(r->h->o.kernels, seg[2]);
}

static enum MHD_Result
no_kernel(struct req *r, char **seg)
{
    return answer_error(r, MHD_HTTP_NOT_FOUND, "Kernel does not exist: %s", seg[2]);
}

static enum MHD_Result
get_kernel(struct req *r, char **seg)
{
    struct kernel *k = kernel_of(r, seg);
    return k ? answer_json(r, MHD_HTTP_OK, kernel_model_json(k)) : no_kernel(r, seg);
}

static enum MHD_Result
delete_kernel(struct req *r, char **seg)
{
    struct kernel *k = kernel_of(r, seg);
    if (!k)
        return no_kernel(r, seg);
    channels_kernel_gone(r->h->o.channels, k);
    kernels_delete(r->h->o.kernels, &k);
    return answer_empty(r, MHD_HTTP_NO_CONTENT);
}

static enum MHD_Result
post_interrupt(struct req *r, char **seg)
{
    struct kernel *k = kernel_of(r, seg);
    if (!k)
        return no_kernel(r, seg);
    if (kernel_dead(k))
        return answer_error(r, MHD_HTTP_CONFLICT, "Kernel %s is dead: restart it", seg[2]);
    if (kernel_interrupt(k) != CG_OK)
        return answer_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot interrupt");
    return answer_empty(r, MHD_HTTP_NO_CONTENT);
}

static enum MHD_Result
post_restart(struct req *r, char **seg)
{
    struct kernel *k = kernel_of(r, seg);
    char err[512];
    if (!k)
        return no_kernel(r, seg);
    if (kernel_restart(k, err, sizeof err) != CG_OK)
        return answer_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot restart: %s", err);
    return wait_ready(r, k, MHD_HTTP_OK);
}

/* The upgraded socket: from now on a WebSocket of the channels module. */
static void
upgraded(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
         size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct http *h = cls;
    struct req *r = req_cls;
    struct kernel *k = kernels_find(h->o.kernels, r->kernel);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        ((struct peer *)ci->socket_context)->upgraded = true;
    if (!k || channels_attach(h->o.channels, k, sock, extra_in, extra_in_size, r->form,
                              r->session_id, urh) != CG_OK)
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* Does a comma-separated header value list hold token (case-insensitive)? */
static bool
header_has(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *end = p + strcspn(p, ",");
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == n && strncasecmp(p, token, n) == 0)
            return true;
        p = end;
    }
    return false;
}

static enum MHD_Result
get_channels(struct req *r, char **seg)
{
    struct MHD_Connection *c = r->conn;
    const char *upgrade = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    const char *version = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                      "Sec-WebSocket-Version");
    const char *protos = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     "Sec-WebSocket-Protocol");
    struct kernel *k = kernel_of(r, seg);

    if (!k)
        return no_kernel(r, seg);
    if (!origin_allowed(r->h, c))
        return answer_error(r, MHD_HTTP_FORBIDDEN, "WebSocket from origin %s refused",
                            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"));
    if (!header_has(upgrade, "websocket") || !key || !version || strcmp(version, "13") != 0
        || strlen(key) > 64)
        return answer_error(r, MHD_HTTP_BAD_REQUEST, "a WebSocket upgrade (version 13) is "
                            "required");
    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)), RFC 6455 4.2.2. */
    struct sha1_ctx sc;
    uint8_t digest[SHA1_DIGEST_SIZE];
    char accept[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    sha1_init(&sc);
    sha1_update(&sc, strlen(key), (const uint8_t *)key);
    sha1_update(&sc, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sc, SHA1_DIGEST_SIZE, digest);
    base64_encode_raw(accept, SHA1_DIGEST_SIZE, digest);
    accept[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE)] = '\0';

    snprintf(r->kernel, sizeof r->kernel, "%s", kernel_id(k));
    r->form = header_has(protos, WS_V1) ? CONVERT_V1 : CONVERT_JSON;
    const char *sid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "session_id");
    if (sid && strlen(sid) < sizeof r->session_id)
        memcpy(r->session_id, sid, strlen(sid) + 1);
    struct MHD_Response *resp = MHD_create_response_for_upgrade(upgraded, r->h);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    if (r->form == CONVERT_V1)
        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", WS_V1);
    r->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* A route: a method and a path pattern of literal segments and "*". */
struct route {
    const char *method;
    const char *pattern[MAX_SEGS];
    enum MHD_Result (*fn)(struct req *r, char **seg);
};

static const struct route routes[] = {
    { "GET", { "api" }, get_api },
    { "GET", { "api", "kernelspecs" }, get_kernelspecs },
    { "GET", { "api", "kernelspecs", "*" }, get_kernelspec },
    { "GET", { "kernelspecs", "*", "*" }, get_resource },
    { "GET", { "api", "kernels" }, get_kernels },
    { "POST", { "api", "kernels" }, post_kernels },
    { "GET", { "api", "kernels", "*" }, get_kernel },
    { "DELETE", { "api", "kernels", "*" }, delete_kernel },
    { "POST", { "api", "kernels", "*", "interrupt" }, post_interrupt },
    { "POST", { "api", "kernels", "*", "restart" }, post_restart },
    { "GET", { "api", "kernels", "*", "channels" }, get_channels },
};

/* Splits path into at most MAX_SEGS non-empty segments (in place). Returns
 * the count, or -1 with more segments or an empty one inside. */
static int
split(char *path, char **seg)
{
    int n = 0;
    char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        if (n == MAX_SEGS)
            return -1;
        seg[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
        if (*p == '/')
            return -1;
    }
    return n;
}

static enum MHD_Result
route(struct req *r, const char *url)
{
    char path[1024], *seg[MAX_SEGS];
    bool path_known = false;

    size_t base = strlen(r->h->o.base_url);
    if (strncmp(url, r->h->o.base_url, base) != 0 || (url[base] != '/' && url[base] != '\0'))
        return answer_error(r, MHD_HTTP_NOT_FOUND, "no such path: %s", url);
    url += base;
    if (strlen(url) >= sizeof path)
        return answer_error(r, MHD_HTTP_NOT_FOUND, "no such path");
    memcpy(path, url, strlen(url) + 1);
    int n = split(path, seg);
    for (size_t i = 0; n >= 0 && i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *rt = &routes[i];
        int m = 0;
        while (m < MAX_SEGS && rt->pattern[m])
            m++;
        if (m != n)
            continue;
        bool match = true;
        for (int j = 0; j < n && match; j++)
            match = strcmp(rt->pattern[j], "*") == 0 || strcmp(rt->pattern[j], seg[j]) == 0;
        if (!match)
            continue;
        path_known = true;
        if (strcmp(rt->method, r->method) == 0)
            return rt->fn(r, seg);
    }
    if (path_known)
        return answer_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s is not allowed here",
                            r->method);
    return answer_error(r, MHD_HTTP_NOT_FOUND, "no such path: %s", url);
}

/* ---- libmicrohttpd callbacks --------------------------------------------- */

/* The answer to a request that waited for its kernel. */
static enum MHD_Result
answer_waited(struct req *r)
{
    struct kernel *k = kernels_find(r->h->o.kernels, r->kernel);
    if (!k)
        return answer_error(r, MHD_HTTP_NOT_FOUND, "Kernel does not exist: %s", r->kernel);
    if (kernel_dead(k)) {
        /* A POST's kernel nobody will know the id of goes; a restarted one
         * stays, dead, for its client to see. */
        if (r->ok_status == MHD_HTTP_CREATED) {
            channels_kernel_gone(r->h->o.channels, k);
            kernels_delete(r->h->o.kernels, &k);
        }
        return answer_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "Kernel %s died while starting "
                            "(the gateway's log says why)", r->kernel);
    }
    json_t *m = kernel_model_json(k);
    struct MHD_Response *resp;
    char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!s || !(resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE))) {
        free(s);
        return MHD_NO;
    }
    char loc[400];
    snprintf(loc, sizeof loc, "%s/api/kernels/%s", r->h->o.base_url, r->kernel);
    add_cors(r->h, r->conn, resp);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r->ok_status == MHD_HTTP_CREATED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, loc);
    r->status = r->ok_status;
    enum MHD_Result rc = MHD_queue_response(r->conn, r->ok_status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* The connection's request has arrived whole: its time is no longer
 * counted until the answer is sent. */
static void
request_whole(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        ((struct peer *)ci->socket_context)->busy = true;
}

/* Answers 413 for a body beyond the bound. */
static enum MHD_Result
too_large(struct req *r)
{
    request_whole(r->conn);
    return answer_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes "
                        "(--max-body-size)", r->h->o.max_body);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
    struct http *h = cls;
    struct req *r = *req_cls;
    (void)version;

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->h = h;
        r->conn = conn;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->url, sizeof r->url, "%s", url);
        r->started = clock_now();
        *req_cls = r;
        /* Refused before the body is read (a client that sent Expect:
         * 100-continue never sends it). */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtod(cl, NULL) > (double)h->o.max_body)
            return too_large(r);
        return MHD_YES;
    }
    if (*upload_size) {
        /* A body without Content-Length found too large midway is read to
         * its end (bounded by the request timeout) and answered 413. */
        if (r->body.len + *upload_size > h->o.max_body) {
            r->too_large = true;
            buf_free(&r->body);
        }
        if (!r->too_large && buf_add(&r->body, upload, *upload_size) != CG_OK)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        return too_large(r);
    request_whole(conn);
    if (r->resumed) {
        r->resumed = false;
        return answer_waited(r);
    }
    if (r->waiting)
        return MHD_YES;
    if (strcmp(method, "OPTIONS") == 0) /* a CORS preflight carries no token */
        return origin_allowed(h, conn) ? answer_empty(r, MHD_HTTP_NO_CONTENT)
                                       : answer_error(r, MHD_HTTP_FORBIDDEN, "origin refused");
    if (!authorized(h, conn))
        return answer_error(r, MHD_HTTP_UNAUTHORIZED, "a valid token is required "
                            "(Authorization: token T, or ?token=T)");
    return route(r, url);
}

static void
unlink_waiting(struct http *h, struct req *r)
{
    for (struct req **pp = &h->waiting; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->waiting = false;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct http *h = cls;
    struct req *r = *req_cls;
    (void)toe;
    if (!r)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct peer *p = ci ? ci->socket_context : NULL;
    if (p && !p->upgraded) { /* the next request's time starts now */
        p->busy = false;
        p->served = true;
        p->since = clock_now();
    }
    if (r->waiting)
        unlink_waiting(h, r);
    /* The access log: one line per request, whatever CELLGATE_LOG says. */
    fprintf(stderr, "cellgate-gateway: %s %s %u %.1f ms\n", r->method, r->url, r->status,
            (clock_now() - r->started) * 1e3);
    buf_free(&r->body);
    free(r);
    *req_cls = NULL;
}

/* ---- connections --------------------------------------------------------- */

/* Ends a connection with status (a status line's code and phrase, and any
 * header lines) when the client may read it: not over TLS (the bytes would
 * not be a record). shutdown() makes libmicrohttpd see the end and close
 * the connection itself. */
static void
end_peer(struct http *h, struct peer *p, const char *status, const char *why)
{
    char text[256];
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(p->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    p->ended = true;
    if (!ci)
        return;
    int n = status ? snprintf(text, sizeof text, "HTTP/1.1 %s\r\nConnection: close\r\n"
                              "Content-Length: 0\r\n\r\n", status) : 0;
    if (n > 0 && (size_t)n < sizeof text && !h->o.tls_cert
        && send(ci->connect_fd, text, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_info("http: cannot answer a connection that is ended");
    shutdown(ci->connect_fd, SHUT_RDWR);
    fprintf(stderr, "cellgate-gateway: a connection closed: %s\n", why);
}

/* Tracks each connection from accept to close. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    struct http *h = cls;
    struct peer *p = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if (!(p = calloc(1, sizeof *p)))
            return; /* untracked: libmicrohttpd's idle timeout still holds */
        p->conn = conn;
        p->since = clock_now();
        p->next = h->peers;
        if (h->peers)
            h->peers->prev = p;
        h->peers = p;
        *socket_context = p;
        if (h->n_peers++ >= h->o.max_connections)
            end_peer(h, p, "503 Service Unavailable\r\nRetry-After: 1",
                     "one connection too many (--max-connections)");
        return;
    }
    if (!p)
        return;
    h->n_peers--;
    if (p->prev)
        p->prev->next = p->next;
    else
        h->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
    *socket_context = NULL;
}

/* Shuts down the connections whose request is late (at most every SWEEP_S). */
static void
sweep(struct http *h, double now)
{
    if (now - h->swept_at < SWEEP_S)
        return;
    h->swept_at = now;
    /* A first request gets 408; a kept-alive connection between requests is
     * just closed, as an idle timeout does. */
    for (struct peer *p = h->peers; p; p = p->next)
        if (!p->busy && !p->upgraded && !p->ended && now - p->since > h->o.request_timeout_s)
            end_peer(h, p, p->served ? NULL : "408 Request Timeout",
                     "its request did not arrive in time (--request-timeout)");
}

/* ---- the server ---------------------------------------------------------- */

struct http *
http_new(const struct http_opts *o, char *err, size_t errlen)
{
    struct http *h = calloc(1, sizeof *h);
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port) };
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
    const struct sockaddr *sa;
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_UPGRADE | MHD_ALLOW_SUSPEND_RESUME
                         | MHD_USE_ERROR_LOG;

    if (!h) {
        cg_fail(err, errlen, CG_ENOMEM, "no memory");
        return NULL;
    }
    h->o = *o;
    if (!(h->o.request_timeout_s > 0))
        h->o.request_timeout_s = HTTP_REQUEST_TIMEOUT_S;
    if (!h->o.max_connections)
        h->o.max_connections = HTTP_MAX_CONNECTIONS;
    if (!h->o.max_header)
        h->o.max_header = HTTP_MAX_HEADER;
    if (!h->o.max_body)
        h->o.max_body = HTTP_MAX_BODY;
    if (o->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            free(h);
            cg_fail(err, errlen, CG_EUNSUPP, "this libmicrohttpd has no TLS");
            return NULL;
        }
        flags |= MHD_USE_TLS;
    }
    if (o->no_listen) {
        sa = NULL;
        flags |= MHD_USE_NO_LISTEN_SOCKET;
    } else if (inet_pton(AF_INET, o->ip, &a4.sin_addr) == 1) {
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, o->ip, &a6.sin6_addr) == 1) {
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        cg_fail(err, errlen, CG_EINVAL, "--ip %s is not an IPv4 or IPv6 address", o->ip);
        return NULL;
    }
    h->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, log_library, "http",
                            MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            /* no byte for this long: closed by libmicrohttpd */
                            MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned int)h->o.request_timeout_s + 1,
                            MHD_OPTION_CONNECTION_LIMIT, h->o.max_connections + REFUSE_ROOM,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->o.max_per_ip,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->o.max_header,
                            o->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
                            o->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, o->tls_key,
                            MHD_OPTION_END);
    if (!h->d) {
        free(h);
        cg_fail(err, errlen, CG_ESYS, "cannot listen on %s port %d", o->ip, o->port);
        return NULL;
    }
    return h;
}

void
http_destroy(struct http **hp)
{
    if (!hp || !*hp)
        return;
    struct http *h = *hp;
    while (h->waiting) {
        struct req *r = h->waiting;
        unlink_waiting(h, r);
        MHD_resume_connection(r->conn);
    }
    MHD_stop_daemon(h->d);
    free(h);
    *hp = NULL;
}

int
http_add_connection(struct http *h, int fd)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;

    if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0) {
        close(fd);
        return CG_ESYS;
    }
    if (MHD_add_connection(h->d, fd, (const struct sockaddr *)&peer, len) != MHD_YES)
        return CG_ESYS;
    return CG_OK;
}

int
http_fd(const struct http *h)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    return i ? i->epoll_fd : -1;
}

long
http_timeout_ms(const struct http *h)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(h->d, &t) != MHD_YES)
        return -1;
    return t > 60000 ? 60000 : (long)t;
}

void
http_run(struct http *h)
{
    double now = clock_now();
    for (struct req *r = h->waiting, *next; r; r = next) {
        next = r->next;
        struct kernel *k = kernels_find(h->o.kernels, r->kernel);
        if (k && !kernel_ready(k) && !kernel_dead(k) && now < r->deadline)
            continue;
        unlink_waiting(h, r);
        r->resumed = true;
        MHD_resume_connection(r->conn);
    }
    MHD_run(h->d);
    sweep(h, now);
}
