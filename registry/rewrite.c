/*
 * rewrite.c - the metadata the registry gateway serves, rewritten so that
 * every artifact link points back at the gateway (see rewrite.h).
 *
 * A link survives only if, resolved as a package manager would resolve it,
 * it names a file under the operator's upstream and the path it becomes
 * on the gateway is one regpath_parse() accepts for that kind of artifact:
 * what the box is shown is exactly what the gateway will serve. Links are
 * matched by origin (host and port; http and https on their default ports
 * count as one origin, since the gateway fetches from its own upstream base
 * whatever scheme a link names) and then by path prefix.
 *
 * JSON goes through jansson. HTML is not parsed as a document: a small
 * strict scanner finds start tags, reads the attributes of <a> and <base>
 * as the HTML tokenizer does, skips comments, declarations and the raw text
 * of <script> and <style>, and the page is rebuilt from the anchors alone.
 */
#include "registry/rewrite.h"

#include "common/buf.h"
#include "common/cgerr.h"
#include "common/utf8.h"
#include "registry/regpath.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URL_MAX 4096        /* bytes of a link, as found and as resolved */
#define ATTR_MAX 2048       /* bytes of a kept attribute's value, decoded */
#define HASH_NAME_MAX 32    /* "sha256" in "#sha256=..." */
#define HASH_VALUE_MAX 256  /* hex digits of a hash fragment */

/* A URI reference (RFC 3986) split in place; absent parts have length 0. */
struct ref {
    const char *scheme, *auth, *path, *query, *frag;
    size_t scheme_len, auth_len, path_len, query_len, frag_len;
    bool has_scheme, has_auth, has_query, has_frag;
};

/* A reference resolved against a base: an absolute URL. */
struct target {
    const char *scheme, *auth, *frag;   /* into the reference or the base */
    size_t scheme_len, auth_len, frag_len;
    bool has_query, has_frag;
    char path[URL_MAX + 1];             /* dot segments removed */
    size_t path_len;
};

/* An http(s) base URL the links are matched against. */
struct base {
    struct ref r;
    char host[256];         /* lowercase */
    unsigned port;          /* effective: the scheme's default when not given */
    bool https;
    size_t prefix_len;      /* r.path without trailing slashes */
};

/* ---- URLs -------------------------------------------------------------------- */

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits the reference s[0..n) into its five parts (RFC 3986, appendix B). */
static void
ref_split(const char *s, size_t n, struct ref *r)
{
    size_t i = 0;

    memset(r, 0, sizeof *r);
    if (n > 0 && is_alpha(s[0])) {
        size_t k = 1;
        while (k < n && (is_alpha(s[k]) || is_digit(s[k]) || s[k] == '+' || s[k] == '-'
                         || s[k] == '.'))
            k++;
        if (k < n && s[k] == ':') {
            r->scheme = s;
            r->scheme_len = k;
            r->has_scheme = true;
            i = k + 1;
        }
    }
    if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        size_t k = i + 2;
        while (k < n && s[k] != '/' && s[k] != '?' && s[k] != '#')
            k++;
        r->auth = s + i + 2;
        r->auth_len = k - i - 2;
        r->has_auth = true;
        i = k;
    }
    r->path = s + i;
    while (i < n && s[i] != '?' && s[i] != '#')
        i++;
    r->path_len = (size_t)(s + i - r->path);
    if (i < n && s[i] == '?') {
        r->query = s + ++i;
        while (i < n && s[i] != '#')
            i++;
        r->query_len = (size_t)(s + i - r->query);
        r->has_query = true;
    }
    if (i < n && s[i] == '#') {
        r->frag = s + i + 1;
        r->frag_len = n - i - 1;
        r->has_frag = true;
    }
}

/* Appends s[0..n) to out[*o], keeping room for a NUL; false if it does not fit. */
static bool
put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (n >= cap - *o)
        return false;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
    return true;
}

/*
 * RFC 3986 remove_dot_segments for a path that is empty or starts with
 * "/", into out. false if it does not fit or is not such a path.
 */
static bool
remove_dots(const char *in, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0, i = 0;

    out[0] = '\0';
    if (n > 0 && in[0] != '/')
        return false;
    while (i < n) {
        size_t s = i + 1, e = s;
        while (e < n && in[e] != '/')
            e++;
        bool last = e == n;
        if (e - s == 1 && in[s] == '.') {
            if (last && !put(out, cap, &o, "/", 1))
                return false;
        } else if (e - s == 2 && in[s] == '.' && in[s + 1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            out[o] = '\0';
            if (last && !put(out, cap, &o, "/", 1))
                return false;
        } else if (!put(out, cap, &o, in + i, e - i)) {
            return false;
        }
        i = e;
    }
    *outlen = o;
    return true;
}

/* Resolves r against the base b (RFC 3986, 5.2.2). false: not a usable URL. */
static bool
resolve(const struct ref *b, const struct ref *r, struct target *t)
{
    char merged[URL_MAX + 1];
    const char *path = r->path;
    size_t plen = r->path_len, m = 0;

    memset(t, 0, sizeof *t);
    if (r->has_scheme) {
        t->scheme = r->scheme;
        t->scheme_len = r->scheme_len;
    } else {
        t->scheme = b->scheme;
        t->scheme_len = b->scheme_len;
    }
    if (r->has_scheme || r->has_auth) {
        if (!r->has_auth)
            return false;   /* "mailto:x", "javascript:...", "https:x": no host */
        t->auth = r->auth;
        t->auth_len = r->auth_len;
    } else {
        t->auth = b->auth;
        t->auth_len = b->auth_len;
        if (plen == 0)
            return false;   /* this very page (or a query of it): not a file */
        if (path[0] != '/') {
            size_t dir = b->path_len;
            while (dir > 0 && b->path[dir - 1] != '/')
                dir--;
            if (dir == 0 && !put(merged, sizeof merged, &m, "/", 1))
                return false;
            if (!put(merged, sizeof merged, &m, b->path, dir)
                || !put(merged, sizeof merged, &m, path, plen))
                return false;
            path = merged;
            plen = m;
        }
    }
    t->has_query = r->has_query;
    t->has_frag = r->has_frag;
    t->frag = r->frag;
    t->frag_len = r->frag_len;
    return remove_dots(path, plen, t->path, sizeof t->path, &t->path_len);
}

/*
 * Reads an authority: host (a name or a bracketed IPv6 address, lowercased
 * into host) and port (0 when absent). No userinfo. false if malformed.
 */
static bool
auth_split(const char *a, size_t n, char *host, size_t hostcap, unsigned *port)
{
    size_t i = 0, h = 0;

    *port = 0;
    if (n == 0 || memchr(a, '@', n))
        return false;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close || close == a + 1)
            return false;
        for (const char *c = a + 1; c < close; c++)
            if (!is_digit(*c) && !strchr("abcdefABCDEF:.", *c))
                return false;
        i = (size_t)(close - a) + 1;
    } else {
        while (i < n && a[i] != ':') {
            if (!is_alpha(a[i]) && !is_digit(a[i]) && a[i] != '.' && a[i] != '-' && a[i] != '_')
                return false;
            i++;
        }
        if (i == 0)
            return false;
    }
    if (i >= hostcap)
        return false;
    for (h = 0; h < i; h++) {
        char c = a[h];
        host[h] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    host[h] = '\0';
    if (i < n) {
        if (a[i] != ':')
            return false;
        unsigned long p = 0;
        size_t digits = n - i - 1;
        if (digits > 5)
            return false;
        for (size_t k = i + 1; k < n; k++) {
            if (!is_digit(a[k]))
                return false;
            p = p * 10 + (unsigned long)(a[k] - '0');
        }
        if (p > 65535 || (digits > 0 && p == 0))
            return false;
        *port = (unsigned)p;
    }
    return true;
}

/* 1 for https, 0 for http, -1 for any other scheme. */
static int
scheme_https(const char *s, size_t n)
{
    if (n == 5 && strncasecmp(s, "https", 5) == 0)
        return 1;
    if (n == 4 && strncasecmp(s, "http", 4) == 0)
        return 0;
    return -1;
}

/* Reads an http(s) base URL (a page URL, an upstream, the files host). */
static bool
base_parse(const char *url, struct base *b)
{
    size_t n;
    int https;

    if (!url || (n = strlen(url)) == 0 || n > URL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return false;
    ref_split(url, n, &b->r);
    if (!b->r.has_scheme || !b->r.has_auth
        || (https = scheme_https(b->r.scheme, b->r.scheme_len)) < 0
        || !auth_split(b->r.auth, b->r.auth_len, b->host, sizeof b->host, &b->port))
        return false;
    if (b->r.path_len > 0 && b->r.path[0] != '/')
        return false;
    b->https = https == 1;
    if (b->port == 0)
        b->port = b->https ? 443 : 80;
    b->prefix_len = b->r.path_len;
    while (b->prefix_len > 0 && b->r.path[b->prefix_len - 1] == '/')
        b->prefix_len--;
    return true;
}

/*
 * If t is under b (same host; same port, or each on its scheme's default
 * port) as b's path + "/" + TAIL, points *tail at TAIL. No query allowed.
 */
static bool
under(const struct target *t, const struct base *b, const char **tail, size_t *tail_len)
{
    char host[256];
    unsigned port;
    int https = scheme_https(t->scheme, t->scheme_len);

    if (https < 0 || t->has_query || !auth_split(t->auth, t->auth_len, host, sizeof host, &port))
        return false;
    if (strcmp(host, b->host) != 0)
        return false;
    unsigned dflt = https ? 443 : 80;
    if (port == 0)
        port = dflt;
    if (port != b->port && !(port == dflt && b->port == (b->https ? 443u : 80u)))
        return false;
    if (t->path_len <= b->prefix_len + 1 || memcmp(t->path, b->r.path, b->prefix_len) != 0
        || t->path[b->prefix_len] != '/')
        return false;
    *tail = t->path + b->prefix_len + 1;
    *tail_len = t->path_len - b->prefix_len - 1;
    return true;
}

/* "#name=hexdigest", as PEP 503 puts a file's hash (the "#" not included). */
static bool
hash_fragment_ok(const char *f, size_t n)
{
    size_t i = 0;

    while (i < n && i <= HASH_NAME_MAX
           && ((f[i] >= 'a' && f[i] <= 'z') || is_digit(f[i]) || f[i] == '_'))
        i++;
    if (i == 0 || i > HASH_NAME_MAX || i >= n || f[i] != '=')
        return false;
    size_t v = ++i;
    while (i < n
           && (is_digit(f[i]) || (f[i] >= 'a' && f[i] <= 'f') || (f[i] >= 'A' && f[i] <= 'F')))
        i++;
    return i == n && i > v && i - v <= HASH_VALUE_MAX;
}

/* The gateway's base without trailing slashes: its length. */
static size_t
gateway_len(const char *gateway)
{
    size_t n = strlen(gateway);
    while (n > 0 && gateway[n - 1] == '/')
        n--;
    return n;
}

/* ---- npm ----------------------------------------------------------------------- */

/*
 * The gateway's URL for tarball URL url of package name, into out; false
 * if the tarball is not under up as up/NAME/-/FILE.tgz of this package.
 */
static bool
npm_link(const struct base *up, const char *name, const char *gateway, const char *url,
         char *out, size_t outlen)
{
    struct ref r;
    struct target t;
    struct reg_req req;
    char cand[URL_MAX + 8];
    const char *tail;
    size_t n = strlen(url), tail_len, o = 0;

    if (n == 0 || n > URL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return false;
    ref_split(url, n, &r);
    if (!r.has_scheme || r.has_frag || !resolve(&up->r, &r, &t) || !under(&t, up, &tail, &tail_len))
        return false;
    if (!put(cand, sizeof cand, &o, "/npm/", 5) || !put(cand, sizeof cand, &o, tail, tail_len))
        return false;
    if (regpath_parse("GET", cand, &req, NULL, 0) != REGPATH_OK || req.kind != REG_NPM_TARBALL
        || strcmp(req.name, name) != 0)
        return false;
    int k = snprintf(out, outlen, "%.*s/npm/%s/-/%s", (int)gateway_len(gateway), gateway,
                     req.name, req.file);
    return k > 0 && (size_t)k < outlen;
}

int
rewrite_npm_packument(const char *body, size_t len, const char *upstream, const char *gateway,
                      char **out, size_t *outlen, char *err, size_t errlen)
{
    struct base up;
    json_error_t jerr;
    json_t *root = NULL, *versions, *tags, *v, *t;
    const char *key, *name;
    void *tmp;
    size_t kept = 0, dropped = 0;
    int rc = CG_OK;

    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!body || !out || !outlen || !gateway)
        return cg_fail(err, errlen, CG_EINVAL, "rewrite_npm_packument: missing argument");
    if (!base_parse(upstream, &up))
        return cg_fail(err, errlen, CG_EINVAL, "npm upstream \"%.200s\" is not an http(s) URL",
                       upstream ? upstream : "(null)");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return cg_fail(err, errlen, CG_ENOMEM, "out of memory reading a packument");
        return cg_fail(err, errlen, CG_EINVAL, "packument is not JSON: %s (line %d, column %d)",
                       jerr.text, jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        rc = cg_fail(err, errlen, CG_EINVAL, "packument is not a JSON object");
        goto out;
    }
    name = json_string_value(json_object_get(root, "name"));
    if (!name || !regpath_npm_name_ok(name)) {
        rc = cg_fail(err, errlen, CG_EINVAL, "packument has no valid npm \"name\"");
        goto out;
    }
    versions = json_object_get(root, "versions");
    tags = json_object_get(root, "dist-tags");
    if ((versions && !json_is_object(versions)) || (tags && !json_is_object(tags))) {
        rc = cg_fail(err, errlen, CG_EINVAL,
                     "packument of \"%.100s\": \"versions\" or \"dist-tags\" is not an object",
                     name);
        goto out;
    }
    json_object_foreach_safe(versions, tmp, key, v) {
        char url[URL_MAX * 2];
        json_t *dist = json_object_get(v, "dist");
        const char *tb = json_string_value(json_object_get(dist, "tarball"));
        if (tb && json_is_object(dist) && npm_link(&up, name, gateway, tb, url, sizeof url)) {
            if (json_object_set_new(dist, "tarball", json_string(url)) != 0) {
                rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory rewriting a packument");
                goto out;
            }
            kept++;
        } else {
            json_object_del(versions, key);
            dropped++;
        }
    }
    /* A tag naming a version that is not (or no longer) there goes too. */
    json_object_foreach_safe(tags, tmp, key, t) {
        if (json_is_string(t) && !json_object_get(versions, json_string_value(t)))
            json_object_del(tags, key);
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (!*out) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory writing a packument");
        goto out;
    }
    *outlen = strlen(*out);
    if (err && errlen)
        snprintf(err, errlen, "%zu versions kept, %zu removed", kept, dropped);
out:
    json_decref(root);
    return rc;
}

/* ---- PyPI links ----------------------------------------------------------------- */

/* Where PyPI links are resolved from and matched against. */
struct pylinks {
    struct base page;       /* the page, or its <base href> */
    struct base files;      /* the files host */
    const char *gateway;
    size_t gateway_len;
    char base_url[URL_MAX + 1]; /* a <base href>, resolved (page points into it) */
    size_t kept, dropped;   /* links, for the summary in err */
};

/*
 * The gateway's URL for link href[0..n) (already entity-decoded), into
 * out; *name_off is where its file name starts in out. false: the link is
 * dropped (not under the files host, not a file the gateway serves, a
 * query, an unreadable fragment, a non-http(s) scheme).
 */
static bool
pypi_link(const struct pylinks *L, const char *href, size_t n, char *out, size_t outlen,
          size_t *name_off)
{
    struct ref r;
    struct target t;
    struct reg_req req;
    char cand[URL_MAX + 16];
    const char *tail;
    size_t tail_len, o = 0;

    /* HTML strips leading and trailing ASCII whitespace from URLs */
    while (n > 0 && strchr(" \t\n\f\r", href[0]) && href[0] != '\0') {
        href++;
        n--;
    }
    while (n > 0 && strchr(" \t\n\f\r", href[n - 1]) && href[n - 1] != '\0')
        n--;
    if (n == 0 || n > URL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)href[i] <= 0x20 || (unsigned char)href[i] >= 0x7f)
            return false;
    ref_split(href, n, &r);
    if (!resolve(&L->page.r, &r, &t) || !under(&t, &L->files, &tail, &tail_len))
        return false;
    if (t.has_frag && !hash_fragment_ok(t.frag, t.frag_len))
        return false;
    if (!put(cand, sizeof cand, &o, "/pypi/files/", 12)
        || !put(cand, sizeof cand, &o, tail, tail_len))
        return false;
    if (regpath_parse("GET", cand, &req, NULL, 0) != REGPATH_OK || req.kind != REG_PYPI_FILE)
        return false;
    int k = snprintf(out, outlen, "%.*s/pypi/files/%s%s%.*s", (int)L->gateway_len, L->gateway,
                     req.file, t.has_frag ? "#" : "", (int)t.frag_len, t.has_frag ? t.frag : "");
    if (k <= 0 || (size_t)k >= outlen)
        return false;
    const char *slash = strrchr(req.file, '/');
    *name_off = L->gateway_len + strlen("/pypi/files/")
                + (slash ? (size_t)(slash - req.file) + 1 : 0);
    return true;
}

/* Sets up the bases; CG_EINVAL with err when one is not an http(s) URL. */
static int
pylinks_init(struct pylinks *L, const char *page_url, const char *files, const char *gateway,
             char *err, size_t errlen)
{
    memset(L, 0, sizeof *L);
    if (!gateway)
        return cg_fail(err, errlen, CG_EINVAL, "no gateway URL");
    if (!base_parse(page_url, &L->page))
        return cg_fail(err, errlen, CG_EINVAL, "page URL \"%.200s\" is not an http(s) URL",
                       page_url ? page_url : "(null)");
    if (!base_parse(files, &L->files))
        return cg_fail(err, errlen, CG_EINVAL, "files host \"%.200s\" is not an http(s) URL",
                       files ? files : "(null)");
    L->gateway = gateway;
    L->gateway_len = gateway_len(gateway);
    return CG_OK;
}

/* ---- HTML ----------------------------------------------------------------------- */

/* The attributes read from a tag; the first occurrence of a name wins. */
enum { A_HREF, A_REQUIRES_PYTHON, A_DIST_INFO_METADATA, A_CORE_METADATA, A_YANKED, A_COUNT };
static const char *const attr_names[A_COUNT] = {
    "href", "data-requires-python", "data-dist-info-metadata", "data-core-metadata",
    "data-yanked",
};

struct attr {
    const char *v;      /* the value as found (entities not decoded) */
    size_t n;
    bool present;
    bool bare;          /* a name without "=value": the empty string */
};

static bool
html_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

/*
 * Reads the attributes of a start tag from b[*pi] (just after its name) to
 * its '>', keeping those named in attr_names; *pi is then after the '>'.
 * false if the page ends inside the tag.
 */
static bool
read_attrs(const char *b, size_t len, size_t *pi, struct attr *a)
{
    size_t i = *pi;

    memset(a, 0, sizeof *a * A_COUNT);
    for (;;) {
        while (i < len && (html_space(b[i]) || b[i] == '/'))
            i++;
        if (i >= len)
            return false;
        if (b[i] == '>') {
            *pi = i + 1;
            return true;
        }
        size_t ns = i++;    /* a name's first character may be anything, even '=' */
        while (i < len && !html_space(b[i]) && b[i] != '/' && b[i] != '>' && b[i] != '=')
            i++;
        size_t nlen = i - ns;
        while (i < len && html_space(b[i]))
            i++;
        struct attr cur = { NULL, 0, true, true };
        if (i < len && b[i] == '=') {
            i++;
            while (i < len && html_space(b[i]))
                i++;
            if (i >= len)
                return false;
            cur.bare = false;
            if (b[i] == '"' || b[i] == '\'') {
                const char *end = memchr(b + i + 1, b[i], len - i - 1);
                if (!end)
                    return false;
                cur.v = b + i + 1;
                cur.n = (size_t)(end - cur.v);
                i = (size_t)(end - b) + 1;
            } else {
                cur.v = b + i;
                while (i < len && !html_space(b[i]) && b[i] != '>')
                    i++;
                cur.n = (size_t)(b + i - cur.v);
            }
        }
        for (int k = 0; k < A_COUNT; k++) {
            if (!a[k].present && nlen == strlen(attr_names[k])
                && strncasecmp(b + ns, attr_names[k], nlen) == 0)
                a[k] = cur;
        }
    }
}

/* Encodes code point cp as UTF-8 into out (4 bytes of room); the length. */
static size_t
utf8_put(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Reads a character reference at s[0] == '&': &amp; &lt; &gt; &quot;
 * &apos; &#N; &#xH; (the ';' required). Returns the bytes it spans and
 * sets *cp, or 0 if it is none of these (the '&' is then text).
 */
static size_t
char_ref(const char *s, size_t n, unsigned long *cp)
{
    static const struct { const char *name; char c; } named[] = {
        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' },
    };

    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
        size_t l = strlen(named[k].name);
        if (n >= l && memcmp(s, named[k].name, l) == 0) {
            *cp = (unsigned char)named[k].c;
            return l;
        }
    }
    if (n < 4 || s[1] != '#')
        return 0;
    bool hex = s[2] == 'x' || s[2] == 'X';
    size_t i = hex ? 3 : 2, start = i;
    unsigned long v = 0;
    while (i < n && i - start < 8) {
        int d;
        if (is_digit(s[i]))
            d = s[i] - '0';
        else if (hex && s[i] >= 'a' && s[i] <= 'f')
            d = s[i] - 'a' + 10;
        else if (hex && s[i] >= 'A' && s[i] <= 'F')
            d = s[i] - 'A' + 10;
        else
            break;
        v = v * (hex ? 16 : 10) + (unsigned long)d;
        i++;
    }
    if (i == start || i >= n || s[i] != ';' || v == 0 || v > 0x10ffff
        || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return i + 1;
}

/* Decodes the character references of s[0..n) into out (NUL-terminated). */
static bool
entity_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        char tmp[4];
        size_t k, adv = 0;
        unsigned long cp;
        if (s[i] == '&' && (adv = char_ref(s + i, n - i, &cp)) > 0) {
            k = utf8_put(cp, tmp);
            i += adv;
        } else {
            tmp[0] = s[i++];
            k = 1;
        }
        if (!put(out, cap, &o, tmp, k))
            return false;
    }
    out[o] = '\0';
    *outlen = o;
    return true;
}

/* Appends s[0..n) with & < > " ' escaped. */
static int
add_escaped(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *e = NULL;
        switch (s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        case '\'': e = "&#39;"; break;
        }
        if ((e ? buf_add(b, e, strlen(e)) : buf_add(b, s + i, 1)) != CG_OK)
            return CG_ENOMEM;
    }
    return CG_OK;
}

static int
add_str(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

/*
 * Writes the anchor for a tag's attributes a, if its href is a file the
 * gateway serves and the attributes kept are readable text; else nothing.
 * CG_OK or CG_ENOMEM.
 */
static int
emit_anchor(struct pylinks *L, const struct attr *a, struct buf *out)
{
    char vals[A_COUNT][ATTR_MAX + 1];
    char href[URL_MAX + 1], url[URL_MAX * 2];
    size_t hn, lens[A_COUNT] = { 0 }, name_off;

    L->dropped++;
    if (!a[A_HREF].present || a[A_HREF].bare
        || !entity_decode(a[A_HREF].v, a[A_HREF].n, href, sizeof href, &hn)
        || !pypi_link(L, href, hn, url, sizeof url, &name_off))
        return CG_OK;
    for (int k = A_HREF + 1; k < A_COUNT; k++) {
        if (!a[k].present)
            continue;
        if (a[k].bare) {
            vals[k][0] = '\0';
            continue;
        }
        if (!entity_decode(a[k].v, a[k].n, vals[k], sizeof vals[k], &lens[k])
            || !utf8_valid(vals[k], lens[k]))
            return CG_OK;
        for (size_t i = 0; i < lens[k]; i++)
            if ((unsigned char)vals[k][i] < 0x20 || vals[k][i] == 0x7f)
                return CG_OK;
    }
    L->dropped--;
    L->kept++;
    const char *hash = strchr(url + name_off, '#');
    size_t name_len = hash ? (size_t)(hash - url - name_off) : strlen(url + name_off);
    if (add_str(out, "    <a href=\"") || add_escaped(out, url, strlen(url)) || add_str(out, "\""))
        return CG_ENOMEM;
    for (int k = A_HREF + 1; k < A_COUNT; k++) {
        if (!a[k].present)
            continue;
        if (add_str(out, " ") || add_str(out, attr_names[k]) || add_str(out, "=\"")
            || add_escaped(out, vals[k], lens[k]) || add_str(out, "\""))
            return CG_ENOMEM;
    }
    if (add_str(out, ">") || add_escaped(out, url + name_off, name_len)
        || add_str(out, "</a><br>\n"))
        return CG_ENOMEM;
    return CG_OK;
}

/*
 * The first <base href>: every relative link of the page resolves against
 * it, even one that comes before it, as in pip and in browsers.
 */
static int
set_base(struct pylinks *L, const struct attr *a, char *err, size_t errlen)
{
    char href[URL_MAX + 1];
    struct ref r;
    struct target t;
    size_t hn;

    if (!entity_decode(a[A_HREF].v, a[A_HREF].n, href, sizeof href, &hn))
        return cg_fail(err, errlen, CG_EINVAL, "the page's <base href> is unreadable");
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char)href[i] <= 0x20 || (unsigned char)href[i] >= 0x7f)
            return cg_fail(err, errlen, CG_EINVAL,
                           "the page's <base href> has a space, control or non-ASCII byte");
    ref_split(href, hn, &r);
    int k = -1;
    if (resolve(&L->page.r, &r, &t))
        k = snprintf(L->base_url, sizeof L->base_url, "%.*s://%.*s%.*s", (int)t.scheme_len,
                     t.scheme, (int)t.auth_len, t.auth, (int)t.path_len, t.path);
    struct base nb;
    if (k <= 0 || (size_t)k >= sizeof L->base_url || !base_parse(L->base_url, &nb))
        return cg_fail(err, errlen, CG_EINVAL, "the page's <base href> is not an http(s) URL");
    L->page = nb;
    return CG_OK;
}

/* Finds "</name" (any case) in b[i..len); its offset, or len. */
static size_t
find_end_tag(const char *b, size_t len, size_t i, const char *name)
{
    size_t nl = strlen(name);
    while (i < len) {
        const char *lt = memchr(b + i, '<', len - i);
        if (!lt)
            return len;
        i = (size_t)(lt - b);
        if (len - i >= nl + 2 && b[i + 1] == '/' && strncasecmp(b + i + 2, name, nl) == 0)
            return i;
        i++;
    }
    return len;
}

static bool
tag_is(const char *s, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

/*
 * Scans the page: with out NULL for its first <base> only (then stops),
 * else for its <a> tags, whose anchors kept go to out.
 */
static int
scan_html(const char *b, size_t len, struct pylinks *L, struct buf *out, char *err,
          size_t errlen)
{
    size_t i = 0;
    int rc;

    while (i < len) {
        const char *lt = memchr(b + i, '<', len - i);
        if (!lt)
            break;
        size_t at = (size_t)(lt - b);
        i = at + 1;
        if (i >= len)
            break;
        if (len - i >= 3 && memcmp(b + i, "!--", 3) == 0) {
            const char *end = memmem(b + i + 3, len - i - 3, "-->", 3);
            if (!end)
                return cg_fail(err, errlen, CG_EINVAL,
                               "the page ends inside a comment (opened at byte %zu)", at);
            i = (size_t)(end - b) + 3;
            continue;
        }
        if (b[i] == '!' || b[i] == '?' || (b[i] == '/' && i + 1 < len && is_alpha(b[i + 1]))) {
            /* a declaration, a processing instruction, an end tag */
            const char *end = memchr(b + i, '>', len - i);
            if (!end)
                return cg_fail(err, errlen, CG_EINVAL,
                               "the page ends inside a tag (opened at byte %zu)", at);
            i = (size_t)(end - b) + 1;
            continue;
        }
        if (!is_alpha(b[i]))
            continue;   /* a '<' that opens no tag is text */
        size_t ns = i;
        while (i < len && !html_space(b[i]) && b[i] != '/' && b[i] != '>')
            i++;
        size_t nl = i - ns;
        struct attr a[A_COUNT];
        if (!read_attrs(b, len, &i, a))
            return cg_fail(err, errlen, CG_EINVAL,
                           "the page ends inside a <%.*s> tag (opened at byte %zu)",
                           (int)(nl < 32 ? nl : 32), b + ns, at);
        if (out && tag_is(b + ns, nl, "a")) {
            if ((rc = emit_anchor(L, a, out)) != CG_OK)
                return cg_fail(err, errlen, rc, "out of memory rebuilding a page");
        } else if (!out && tag_is(b + ns, nl, "base") && a[A_HREF].present && !a[A_HREF].bare) {
            return set_base(L, a, err, errlen);
        } else if (tag_is(b + ns, nl, "script") || tag_is(b + ns, nl, "style")) {
            char name[8];
            memcpy(name, b + ns, nl);
            name[nl] = '\0';
            i = find_end_tag(b, len, i, name);
        }
    }
    return CG_OK;
}

int
rewrite_pypi_html(const char *body, size_t len, const char *page_url, const char *files,
                  const char *gateway, char **out, size_t *outlen, char *err, size_t errlen)
{
    static const char head[] = "<!DOCTYPE html>\n<html>\n  <head>\n"
                               "    <meta name=\"pypi:repository-version\" content=\"1.0\">\n"
                               "    <title>Links</title>\n  </head>\n  <body>\n";
    static const char tail[] = "  </body>\n</html>\n";
    struct pylinks *L;
    struct buf b = { 0 };
    int rc;

    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!body || !out || !outlen)
        return cg_fail(err, errlen, CG_EINVAL, "rewrite_pypi_html: missing argument");
    L = malloc(sizeof *L);
    if (!L)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    if ((rc = pylinks_init(L, page_url, files, gateway, err, errlen)) != CG_OK)
        goto out;
    if (buf_add(&b, head, sizeof head - 1) != CG_OK) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory rebuilding a page");
        goto out;
    }
    if ((rc = scan_html(body, len, L, NULL, err, errlen)) != CG_OK
        || (rc = scan_html(body, len, L, &b, err, errlen)) != CG_OK)
        goto out;
    if (buf_add(&b, tail, sizeof tail - 1) != CG_OK) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory rebuilding a page");
        goto out;
    }
    *out = b.data;
    *outlen = b.len;
    b = (struct buf){ 0 };
    if (err && errlen)
        snprintf(err, errlen, "%zu files kept, %zu anchors dropped", L->kept, L->dropped);
out:
    buf_free(&b);
    free(L);
    return rc;
}

/* ---- PEP 691 JSON --------------------------------------------------------------- */

int
rewrite_pypi_json(const char *body, size_t len, const char *page_url, const char *files,
                  const char *gateway, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct pylinks *L = NULL;
    json_error_t jerr;
    json_t *root = NULL, *list, *kept = NULL, *f;
    size_t i;
    int rc;

    if (out)
        *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!body || !out || !outlen)
        return cg_fail(err, errlen, CG_EINVAL, "rewrite_pypi_json: missing argument");
    L = malloc(sizeof *L);
    if (!L)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    if ((rc = pylinks_init(L, page_url, files, gateway, err, errlen)) != CG_OK)
        goto out;
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory reading a project page");
        else
            rc = cg_fail(err, errlen, CG_EINVAL,
                         "project page is not JSON: %s (line %d, column %d)", jerr.text,
                         jerr.line, jerr.column);
        goto out;
    }
    list = json_object_get(root, "files");
    if (!json_is_object(root) || !json_is_array(list)) {
        rc = cg_fail(err, errlen, CG_EINVAL, "project page is not a PEP 691 object with "
                     "a \"files\" list");
        goto out;
    }
    if (!(kept = json_array())) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        goto out;
    }
    json_array_foreach(list, i, f) {
        char url[URL_MAX * 2];
        size_t name_off;
        json_t *u = json_object_get(f, "url");
        if (!json_is_object(f) || !json_is_string(u)
            || !pypi_link(L, json_string_value(u), json_string_length(u), url, sizeof url,
                          &name_off)) {
            L->dropped++;
            continue;
        }
        L->kept++;
        if (json_object_set_new(f, "url", json_string(url)) != 0
            || json_array_append(kept, f) != 0) {
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (json_object_set(root, "files", kept) != 0 || !(*out = json_dumps(root, JSON_COMPACT))) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory writing a project page");
        goto out;
    }
    *outlen = strlen(*out);
    if (err && errlen)
        snprintf(err, errlen, "%zu files kept, %zu removed", L->kept, L->dropped);
out:
    json_decref(kept);
    json_decref(root);
    free(L);
    return rc;
}
