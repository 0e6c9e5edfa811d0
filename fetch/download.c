/*
 * download.c - one download for cellgate.download (see download.h): the
 * operator's URL policy, the address check every connection passes
 * through, and a libcurl easy transfer per hop, redirects followed here so
 * that each hop is checked like the first.
 */
#include "fetch/download.h"

#include "common/cgerr.h"
#include "common/size.h"
#include "common/clock.h"
#include "common/version.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nettle/sha2.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENV_ALLOW "CELLGATE_DOWNLOAD_ALLOW"
#define ENV_SEEN "CELLGATE_DOWNLOAD_SEEN"
#define ENV_PRIVATE "CELLGATE_DOWNLOAD_ALLOW_PRIVATE"
#define ENV_MAX_BYTES "CELLGATE_DOWNLOAD_MAX_BYTES"
#define ENV_TIMEOUT "CELLGATE_DOWNLOAD_TIMEOUT"
#define ENV_CA_FILE "CELLGATE_DOWNLOAD_CA_FILE"
#define TIMEOUT_MAX 86400

struct download_policy {
    char *allow;          /* comma-separated patterns, or NULL */
    char *seen_file;      /* path of the seen-URLs file, or NULL */
    bool allow_private;   /* private addresses may be reached */
    uint64_t max_bytes;   /* size cap */
    unsigned timeout_s;   /* time cap, whole download */
    char *ca_file;        /* PEM CA bundle trusted instead of the system's, or NULL */
};

int
download_global_init(char *err, size_t errlen)
{
    if (sodium_init() < 0)
        return cg_fail(err, errlen, CG_ESYS, "libsodium failed to initialise");
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return cg_fail(err, errlen, CG_ESYS, "libcurl failed to initialise: %s",
                       curl_easy_strerror(rc));
    return CG_OK;
}

/* ---- policy ------------------------------------------------------------ */

static char *
dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

/*
 * Opens path, the file the variable var names, for reading. Returns the fd,
 * or -1 with why saying (naming var) that it cannot be read or is not a
 * regular file.
 */
static int
open_regular(const char *var, const char *path, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;

    if (fd < 0) {
        snprintf(why, whylen, "%s names %s, which cannot be read: %s", var, path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s names %s, which is not a regular file", var, path);
        close(fd);
        return -1;
    }
    return fd;
}

struct download_policy *
download_policy_new(const struct download_config *cfg, char *err, size_t errlen)
{
    if (cfg->allow) {
        size_t n = strlen(cfg->allow), run = 0;
        if (n > DOWNLOAD_ALLOW_MAX) {
            cg_fail(err, errlen, CG_ETOOBIG, "%s is longer than %u bytes", ENV_ALLOW,
                    DOWNLOAD_ALLOW_MAX);
            return NULL;
        }
        for (size_t i = 0; i <= n; i++) {
            if (i == n || cfg->allow[i] == ',') {
                if (run > DOWNLOAD_PATTERN_MAX) {
                    cg_fail(err, errlen, CG_ETOOBIG, "%s has a pattern longer than %d bytes",
                            ENV_ALLOW, DOWNLOAD_PATTERN_MAX);
                    return NULL;
                }
                run = 0;
            } else {
                run++;
            }
        }
    }
    if (cfg->ca_file && *cfg->ca_file) {
        /* Refused now, so that no download goes ahead without the CAs the
         * operator meant (libcurl would refuse https only, later). */
        char why[512];
        int fd = open_regular(ENV_CA_FILE, cfg->ca_file, why, sizeof why);
        if (fd < 0) {
            cg_fail(err, errlen, CG_EINVAL, "%s; no download is made without it", why);
            return NULL;
        }
        close(fd);
    }
    struct download_policy *p = calloc(1, sizeof *p);
    if (!p) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    p->allow = dup_or_null(cfg->allow);
    p->seen_file = dup_or_null(cfg->seen_file);
    p->ca_file = dup_or_null(cfg->ca_file);
    if ((cfg->allow && *cfg->allow && !p->allow)
        || (cfg->seen_file && *cfg->seen_file && !p->seen_file)
        || (cfg->ca_file && *cfg->ca_file && !p->ca_file)) {
        download_policy_destroy(&p);
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    p->allow_private = cfg->allow_private;
    p->max_bytes = cfg->max_bytes ? cfg->max_bytes : DOWNLOAD_MAX_BYTES_DEFAULT;
    p->timeout_s = cfg->timeout_s ? cfg->timeout_s : DOWNLOAD_TIMEOUT_DEFAULT;
    return p;
}

struct download_policy *
download_policy_from_env(char *err, size_t errlen)
{
    struct download_config cfg = { .allow = getenv(ENV_ALLOW), .seen_file = getenv(ENV_SEEN),
                                   .ca_file = getenv(ENV_CA_FILE) };
    const char *priv = getenv(ENV_PRIVATE);
    const char *max = getenv(ENV_MAX_BYTES);
    const char *timeout = getenv(ENV_TIMEOUT);

    if (priv && *priv && strcmp(priv, "0") != 0 && strcmp(priv, "1") != 0) {
        cg_fail(err, errlen, CG_EINVAL, "%s must be 0 or 1, not \"%.64s\"", ENV_PRIVATE, priv);
        return NULL;
    }
    cfg.allow_private = priv && strcmp(priv, "1") == 0;
    if (max && *max && !size_parse_positive(max, &cfg.max_bytes)) {
        cg_fail(err, errlen, CG_EINVAL,
                "%s must be a positive number of bytes (suffix k, m or g allowed), not \"%.64s\"",
                ENV_MAX_BYTES, max);
        return NULL;
    }
    if (timeout && *timeout) {
        char *end;
        errno = 0;
        long t = strtol(timeout, &end, 10);
        if (errno || *end || end == timeout || t < 1 || t > TIMEOUT_MAX) {
            cg_fail(err, errlen, CG_EINVAL, "%s must be a number of seconds from 1 to %d, "
                    "not \"%.64s\"", ENV_TIMEOUT, TIMEOUT_MAX, timeout);
            return NULL;
        }
        cfg.timeout_s = (unsigned)t;
    }
    return download_policy_new(&cfg, err, errlen);
}

void
download_policy_destroy(struct download_policy **pp)
{
    if (!pp || !*pp)
        return;
    free((*pp)->allow);
    free((*pp)->seen_file);
    free((*pp)->ca_file);
    free(*pp);
    *pp = NULL;
}

/* ---- URLs ---------------------------------------------------------------- */

/* True when the path has a segment that is "." or ".." written with %2e. */
static bool
has_encoded_dot_segment(const char *path)
{
    const char *seg = path;
    for (;;) {
        size_t n = strcspn(seg, "/?#");
        size_t dots = 0;
        bool encoded = false, other = false;
        for (size_t i = 0; i < n && !other; i++) {
            if (seg[i] == '.') {
                dots++;
            } else if (seg[i] == '%' && i + 2 < n && seg[i + 1] == '2'
                       && (seg[i + 2] == 'e' || seg[i + 2] == 'E')) {
                dots++;
                encoded = true;
                i += 2;
            } else {
                other = true;
            }
        }
        if (!other && encoded && (dots == 1 || dots == 2))
            return true;
        if (seg[n] != '/')
            return false;
        seg += n + 1;
    }
}

/* One pass of download_url_canon(). */
static int
canon_once(const char *url, char *canon, size_t canonlen, char *err, size_t errlen)
{
    size_t len = strnlen(url, DOWNLOAD_URL_MAX + 1);
    int rc = CG_OK;
    char *s = NULL;

    if (len > DOWNLOAD_URL_MAX)
        return cg_fail(err, errlen, CG_EREFUSED, "the URL is longer than %d bytes",
                       DOWNLOAD_URL_MAX);
    if (len == 0)
        return cg_fail(err, errlen, CG_EINVAL, "the URL is empty");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c < 0x20 || c == 0x7f)
            return cg_fail(err, errlen, CG_EREFUSED,
                           "the URL has a control character (byte %zu)", i);
        if (c == ' ')
            return cg_fail(err, errlen, CG_EREFUSED,
                           "the URL has a space (byte %zu): percent-encode it as %%20", i);
        if (c == '\\')
            return cg_fail(err, errlen, CG_EREFUSED,
                           "the URL has a backslash (byte %zu): percent-encode it as %%5C", i);
        if (c >= 0x80)
            return cg_fail(err, errlen, CG_EREFUSED, "the URL has a non-ASCII byte (byte %zu): "
                           "percent-encode it (and write the host name in punycode)", i);
    }

    CURLU *u = curl_url();
    if (!u)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url,
                                CURLU_DISALLOW_USER | CURLU_NON_SUPPORT_SCHEME);
    if (uc == CURLUE_USER_NOT_ALLOWED || uc == CURLUE_BAD_LOGIN || uc == CURLUE_BAD_USER
        || uc == CURLUE_BAD_PASSWORD) {
        rc = cg_fail(err, errlen, CG_EREFUSED,
                     "the URL has a user name or password (\"user@\"): not allowed");
        goto out;
    }
    if (uc != CURLUE_OK) {
        rc = cg_fail(err, errlen, CG_EINVAL, "not a URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &s, 0) != CURLUE_OK || !s) {
        rc = cg_fail(err, errlen, CG_EINVAL, "not an absolute URL (no scheme)");
        goto out;
    }
    if (strcasecmp(s, "http") != 0 && strcasecmp(s, "https") != 0) {
        rc = cg_fail(err, errlen, CG_EUNSUPP,
                     "only http:// and https:// URLs can be downloaded, not %.32s://", s);
        goto out;
    }
    curl_free(s);
    s = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &s, 0) != CURLUE_OK || !s || !*s) {
        rc = cg_fail(err, errlen, CG_EINVAL, "the URL has no host");
        goto out;
    }
    for (char *c = s; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (curl_url_set(u, CURLUPART_HOST, s, 0) != CURLUE_OK
        || curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK) {
        rc = cg_fail(err, errlen, CG_EINVAL, "not a URL: the host cannot be set");
        goto out;
    }
    curl_free(s);
    s = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &s, 0) == CURLUE_OK && s
        && has_encoded_dot_segment(s)) {
        rc = cg_fail(err, errlen, CG_EREFUSED,
                     "the URL's path has a percent-encoded \".\" or \"..\" segment");
        goto out;
    }
    curl_free(s);
    s = NULL;
    if (curl_url_get(u, CURLUPART_URL, &s, CURLU_NO_DEFAULT_PORT) != CURLUE_OK || !s) {
        rc = cg_fail(err, errlen, CG_EINVAL, "not a URL");
        goto out;
    }
    size_t n = strlen(s);
    if (n > DOWNLOAD_URL_MAX || n >= canonlen) {
        rc = cg_fail(err, errlen, CG_EREFUSED, "the URL is longer than %d bytes",
                     DOWNLOAD_URL_MAX);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '\\') {
            rc = cg_fail(err, errlen, CG_EREFUSED, "the URL has a character not allowed");
            goto out;
        }
    memcpy(canon, s, n + 1);
out:
    curl_free(s);
    curl_url_cleanup(u);
    return rc;
}

/* libcurl normalizes a numeric host only when it parses a whole URL:
 * "http:///%30" gives the host "0", which parses again as 0.0.0.0. The
 * canonical form is what a second pass leaves, so that the policy and the
 * fetch see one URL (found by fuzz_download). */
int
download_url_canon(const char *url, char *canon, size_t canonlen, char *err, size_t errlen)
{
    char first[DOWNLOAD_URL_MAX + 1];
    int rc = canon_once(url, first, sizeof first, err, errlen);

    return rc == CG_OK ? canon_once(first, canon, canonlen, err, errlen) : rc;
}

/* ---- patterns ------------------------------------------------------------ */

enum zone { Z_SCHEME, Z_SEP, Z_HOST, Z_REST };
enum tok_kind { T_LIT, T_STAR, T_ONE };

struct tok {
    unsigned char c;      /* the character, for T_LIT */
    unsigned char kind;   /* enum tok_kind */
    unsigned char zone;   /* enum zone */
};

/*
 * Splits into zones: what comes before the first "://", the "://", the host
 * (up to the next "/"), the rest. lit(i) says whether position i is a plain
 * character (in a pattern, an escaped "/" is no separator either). Returns
 * false (all Z_REST) when there is no "://".
 */
static bool
zones_of(size_t n, const unsigned char *chars, const bool *lit, unsigned char *zone)
{
    size_t sep = n;
    for (size_t i = 0; i + 2 < n; i++)
        if (chars[i] == ':' && chars[i + 1] == '/' && chars[i + 2] == '/' && lit[i] && lit[i + 1]
            && lit[i + 2]) {
            sep = i;
            break;
        }
    if (sep == n) {
        memset(zone, Z_REST, n);
        return false;
    }
    size_t i = 0;
    for (; i < sep; i++)
        zone[i] = Z_SCHEME;
    for (; i < sep + 3; i++)
        zone[i] = Z_SEP;
    for (; i < n && !(lit[i] && (chars[i] == '/' || chars[i] == '?' || chars[i] == '#')); i++)
        zone[i] = Z_HOST;
    for (; i < n; i++)
        zone[i] = Z_REST;
    return true;
}

/* Whether pattern token t may stand for url character c in zone uz. */
static bool
tok_matches(const struct tok *t, bool zoned, unsigned char c, unsigned char uz)
{
    if (zoned && t->zone != uz)
        return false;
    if (t->kind != T_LIT)
        return !(t->zone == Z_HOST && zoned && c == '@');
    if (zoned && t->zone != Z_REST)
        return tolower(t->c) == tolower(c);
    return t->c == c;
}

bool
download_glob_match(const char *pattern, size_t patlen, const char *url)
{
    size_t n = strnlen(url, DOWNLOAD_URL_MAX + 1);
    bool ok = false;

    if (patlen > DOWNLOAD_PATTERN_MAX || n > DOWNLOAD_URL_MAX)
        return false;
    struct tok *toks = calloc(patlen + 1, sizeof *toks);
    unsigned char *pc = calloc(patlen + 1, 1), *pz = calloc(patlen + 1, 1), *uz = calloc(n + 1, 1);
    bool *plit = calloc(patlen + 1, sizeof *plit), *ulit = calloc(n + 1, sizeof *ulit);
    bool *row = calloc(patlen + 1, sizeof *row), *next = calloc(patlen + 1, sizeof *next);
    size_t m = 0;
    if (!toks || !pc || !pz || !uz || !plit || !ulit || !row || !next)
        goto out;

    for (size_t i = 0; i < patlen; i++) {
        unsigned char c = (unsigned char)pattern[i];
        if (c == '\\' && i + 1 < patlen) {
            toks[m] = (struct tok){ .c = (unsigned char)pattern[++i], .kind = T_LIT };
            plit[m] = false; /* an escaped character never separates zones */
        } else {
            toks[m] = (struct tok){ .c = c, .kind = c == '*' ? T_STAR : c == '?' ? T_ONE : T_LIT };
            plit[m] = toks[m].kind == T_LIT;
        }
        pc[m] = toks[m].c;
        m++;
    }
    bool zoned = zones_of(m, pc, plit, pz);
    for (size_t j = 0; j < m; j++)
        toks[j].zone = pz[j];
    for (size_t i = 0; i < n; i++)
        ulit[i] = true;
    zones_of(n, (const unsigned char *)url, ulit, uz);

    /* row[j]: the first j tokens match the URL's first i characters. */
    row[0] = true;
    for (size_t j = 0; j < m; j++)
        row[j + 1] = row[j] && toks[j].kind == T_STAR;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        bool any = false;
        next[0] = false;
        for (size_t j = 0; j < m; j++) {
            const struct tok *t = &toks[j];
            bool fits = tok_matches(t, zoned, c, uz[i]);
            if (t->kind == T_STAR)
                next[j + 1] = next[j] || (row[j + 1] && fits);
            else
                next[j + 1] = row[j] && fits;
            any |= next[j + 1];
        }
        if (!any)
            goto out;
        bool *tmp = row;
        row = next;
        next = tmp;
    }
    ok = row[m];
out:
    free(toks);
    free(pc);
    free(pz);
    free(uz);
    free(plit);
    free(ulit);
    free(row);
    free(next);
    return ok;
}

/* ---- the seen file ---------------------------------------------------------- */

static bool
is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Compares one line (without its newline) to url and alt. */
static bool
line_is(const char *line, size_t n, const char *url, size_t ulen, const char *alt, size_t alen)
{
    while (n && is_blank((unsigned char)line[0])) {
        line++;
        n--;
    }
    while (n && is_blank((unsigned char)line[n - 1]))
        n--;
    return n && ((n == ulen && memcmp(line, url, n) == 0)
                 || (alt && n == alen && memcmp(line, alt, n) == 0));
}

bool
download_seen_fd_contains(int fd, const char *url, const char *alt)
{
    enum { LINE_MAX_ = DOWNLOAD_URL_MAX + 256 };
    char *line = malloc(LINE_MAX_), chunk[16384];
    size_t used = 0, total = 0, ulen = strlen(url), alen = alt ? strlen(alt) : 0;
    bool overlong = false, found = false;

    if (!line)
        return false;
    while (!found && total < DOWNLOAD_SEEN_MAX) {
        size_t want = sizeof chunk;
        if (want > DOWNLOAD_SEEN_MAX - total)
            want = DOWNLOAD_SEEN_MAX - total;
        ssize_t got = read(fd, chunk, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            /* The end of the file ends its last line; an error ends nothing. */
            if (got == 0 && !overlong)
                found = line_is(line, used, url, ulen, alt, alen);
            break;
        }
        total += (size_t)got;
        for (ssize_t i = 0; i < got && !found; i++) {
            if (chunk[i] == '\n') {
                if (!overlong)
                    found = line_is(line, used, url, ulen, alt, alen);
                used = 0;
                overlong = false;
            } else if (overlong) {
                continue;
            } else if (used == LINE_MAX_) {
                overlong = true;
            } else if (used > 0 || !is_blank((unsigned char)chunk[i])) {
                line[used++] = chunk[i];
            }
        }
    }
    free(line);
    return found;
}

/* Whether the seen file holds url or canon; *why says why it was not read. */
static bool
seen_contains(const char *path, const char *url, const char *canon, char *why, size_t whylen)
{
    char reason[480];
    int fd = open_regular(ENV_SEEN, path, reason, sizeof reason);

    if (fd < 0) {
        snprintf(why, whylen, "; %s", reason);
        return false;
    }
    bool found = download_seen_fd_contains(fd, url, canon);
    close(fd);
    return found;
}

int
download_policy_check(const struct download_policy *p, const char *url, char *canon,
                      size_t canonlen, char *err, size_t errlen)
{
    int rc = download_url_canon(url, canon, canonlen, err, errlen);
    char why[512] = "";

    if (rc != CG_OK)
        return rc;
    if (!p->allow && !p->seen_file)
        return cg_fail(err, errlen, CG_EREFUSED,
                       "downloads are off: the operator has allowed no URL (set %s to "
                       "comma-separated URL patterns such as https://files.example.com/*, "
                       "or %s to a file of allowed URLs, one a line)", ENV_ALLOW, ENV_SEEN);
    for (const char *s = p->allow; s && *s;) {
        const char *end = s + strcspn(s, ","), *e = end;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s && download_glob_match(s, (size_t)(e - s), canon))
            return CG_OK;
        s = *end ? end + 1 : end;
    }
    if (p->seen_file && seen_contains(p->seen_file, url, canon, why, sizeof why))
        return CG_OK;
    if (p->allow && p->seen_file)
        return cg_fail(err, errlen, CG_EREFUSED, "%s is not allowed: it matches no pattern of "
                       "%s and is no line of the %s file%s", canon, ENV_ALLOW, ENV_SEEN, why);
    if (p->allow)
        return cg_fail(err, errlen, CG_EREFUSED, "%s is not allowed: it matches no pattern of "
                       "%s (and %s names no file of allowed URLs)", canon, ENV_ALLOW, ENV_SEEN);
    return cg_fail(err, errlen, CG_EREFUSED, "%s is not allowed: it is no line of the %s "
                   "file%s (and %s has no URL patterns)", canon, ENV_SEEN, why, ENV_ALLOW);
}

/* ---- addresses ----------------------------------------------------------- */

enum addr_kind { ADDR_OK, ADDR_PRIVATE, ADDR_METADATA };

struct v4_range {
    uint32_t net;          /* host byte order */
    unsigned bits;         /* prefix length */
    enum addr_kind kind;
    const char *what;      /* "a loopback address" */
};

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

/* First match wins: the single addresses come before their networks. */
static const struct v4_range v4_ranges[] = {
    { V4(169, 254, 169, 254), 32, ADDR_METADATA, "a cloud metadata address" },
    { V4(169, 254, 170, 2), 32, ADDR_METADATA, "a cloud (container) metadata address" },
    { V4(100, 100, 100, 200), 32, ADDR_METADATA, "a cloud metadata address" },
    { V4(0, 0, 0, 0), 8, ADDR_PRIVATE, "an unspecified (\"this network\") address" },
    { V4(127, 0, 0, 0), 8, ADDR_PRIVATE, "a loopback address" },
    { V4(10, 0, 0, 0), 8, ADDR_PRIVATE, "a private address" },
    { V4(172, 16, 0, 0), 12, ADDR_PRIVATE, "a private address" },
    { V4(192, 168, 0, 0), 16, ADDR_PRIVATE, "a private address" },
    { V4(100, 64, 0, 0), 10, ADDR_PRIVATE, "a carrier-grade NAT (shared) address" },
    { V4(169, 254, 0, 0), 16, ADDR_PRIVATE, "a link-local address" },
    { V4(192, 0, 0, 0), 24, ADDR_PRIVATE, "an IETF protocol assignment address" },
    { V4(192, 0, 2, 0), 24, ADDR_PRIVATE, "a documentation address" },
    { V4(198, 51, 100, 0), 24, ADDR_PRIVATE, "a documentation address" },
    { V4(203, 0, 113, 0), 24, ADDR_PRIVATE, "a documentation address" },
    { V4(198, 18, 0, 0), 15, ADDR_PRIVATE, "a benchmarking address" },
    { V4(224, 0, 0, 0), 4, ADDR_PRIVATE, "a multicast address" },
    { V4(255, 255, 255, 255), 32, ADDR_PRIVATE, "the broadcast address" },
    { V4(240, 0, 0, 0), 4, ADDR_PRIVATE, "a reserved address" },
};

static enum addr_kind
v4_kind(uint32_t a, const char **what)
{
    for (size_t i = 0; i < sizeof v4_ranges / sizeof v4_ranges[0]; i++) {
        const struct v4_range *r = &v4_ranges[i];
        uint32_t mask = r->bits ? ~(uint32_t)0 << (32 - r->bits) : 0;
        if ((a & mask) == r->net) {
            *what = r->what;
            return r->kind;
        }
    }
    *what = "a public address";
    return ADDR_OK;
}

struct v6_range {
    uint8_t net[16];
    unsigned bits;
    enum addr_kind kind;
    const char *what;
    int v4_at;             /* >= 0: an IPv4 address sits at this byte; judge it too */
};

/* First match wins. */
static const struct v6_range v6_ranges[] = {
    { { 0 }, 128, ADDR_PRIVATE, "the unspecified address", -1 },
    { { [15] = 1 }, 128, ADDR_PRIVATE, "a loopback address", -1 },
    { { [10] = 0xff, [11] = 0xff }, 96, ADDR_OK, "an IPv4-mapped address", 12 },
    { { 0 }, 96, ADDR_PRIVATE, "an IPv4-compatible address (deprecated)", 12 },
    { { 0, 0x64, 0xff, 0x9b }, 96, ADDR_OK, "a NAT64 address", 12 },
    { { 0, 0x64, 0xff, 0x9b, 0, 1 }, 48, ADDR_PRIVATE, "a local-use NAT64 address", -1 },
    { { 0x20, 0x02 }, 16, ADDR_OK, "a 6to4 address", 2 },
    { { 0x20, 0x01, 0, 0 }, 32, ADDR_PRIVATE, "a Teredo tunnel address", -1 },
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, ADDR_PRIVATE, "a documentation address", -1 },
    { { 0x01 }, 64, ADDR_PRIVATE, "a discard-only address", -1 },
    { { 0xfd, 0, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 }, 128, ADDR_METADATA,
      "a cloud metadata address", -1 }, /* fd00:ec2::254, AWS */
    { { 0xfd, 0x20, 0, 0xce, [14] = 0x02, [15] = 0x54 }, 128, ADDR_METADATA,
      "a cloud metadata address", -1 }, /* fd20:ce::254, Google Cloud */
    { { 0xfc }, 7, ADDR_PRIVATE, "a unique local (private) address", -1 },
    { { 0xfe, 0x80 }, 10, ADDR_PRIVATE, "a link-local address", -1 },
    { { 0xfe, 0xc0 }, 10, ADDR_PRIVATE, "a site-local address (deprecated)", -1 },
    { { 0xff }, 8, ADDR_PRIVATE, "a multicast address", -1 },
};

static bool
v6_in(const uint8_t *a, const struct v6_range *r)
{
    unsigned full = r->bits / 8, rest = r->bits % 8;
    if (memcmp(a, r->net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (r->net[full] & mask);
}

bool
download_addr_refused(const struct sockaddr *sa, bool allow_private, char *why, size_t whylen)
{
    char text[INET6_ADDRSTRLEN], inner[INET_ADDRSTRLEN];
    enum addr_kind kind;
    const char *what;

    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        kind = v4_kind(ntohl(in.sin_addr.s_addr), &what);
        inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
        if (kind == ADDR_OK)
            return false;
        snprintf(why, whylen, "%s is %s", text, what);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        const uint8_t *a = in6.sin6_addr.s6_addr;
        const struct v6_range *r = NULL;
        inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
        for (size_t i = 0; i < sizeof v6_ranges / sizeof v6_ranges[0] && !r; i++)
            if (v6_in(a, &v6_ranges[i]))
                r = &v6_ranges[i];
        if (!r)
            return false;
        kind = r->kind;
        what = r->what;
        snprintf(why, whylen, "%s is %s", text, what);
        if (r->v4_at >= 0) {
            uint32_t v4;
            const char *inner_what;
            memcpy(&v4, a + r->v4_at, 4);
            enum addr_kind k4 = v4_kind(ntohl(v4), &inner_what);
            inet_ntop(AF_INET, &v4, inner, sizeof inner);
            if (k4 != ADDR_OK && k4 >= kind) {
                kind = k4;
                snprintf(why, whylen, "%s is %s for %s, %s", text, what, inner, inner_what);
            }
        }
        if (kind == ADDR_OK)
            return false;
    } else {
        snprintf(why, whylen, "an address of family %d is not IPv4 or IPv6", sa->sa_family);
        return true;
    }
    if (kind == ADDR_METADATA)
        return true;
    return !allow_private;
}

/* ---- the transfer ---------------------------------------------------------- */

enum stop { STOP_NONE, STOP_NOT_BODY, STOP_TOO_BIG, STOP_WRITE, STOP_CANCEL };

/* One download in progress: what the callbacks share. */
struct fetch {
    const struct download_policy *p;
    const struct download_request *rq;
    CURL *curl;
    struct sha256_ctx sha;    /* of the body (Nettle: uses the CPU's SHA instructions) */
    uint64_t size;            /* body bytes written */
    bool body_seen;           /* this hop's first body bytes were looked at */
    enum stop stop;           /* why a callback stopped the transfer */
    int write_errno;          /* for STOP_WRITE */
    uint64_t announced;       /* Content-Length that passed the cap, for the message */
    unsigned attempts;        /* sockets asked for, this hop */
    unsigned refused;         /* of which refused */
    bool allowable;           /* the first refusal would go with ALLOW_PRIVATE=1 */
    char refusal[256];        /* the first refusal's reason */
};

static bool
status_ok(long status)
{
    return status >= 200 && status <= 299;
}

/* Refuses Content-Length over the cap, once the response is a 2xx. */
static bool
announced_too_big(struct fetch *f)
{
    long status = 0;
    curl_off_t cl = -1;
    curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);
    if (!status_ok(status))
        return false;
    if (curl_easy_getinfo(f->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK
        && cl > 0 && (uint64_t)cl > f->p->max_bytes) {
        f->announced = (uint64_t)cl;
        return true;
    }
    return false;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct fetch *f = ctx;
    size_t n = size * nmemb;

    if (!f->body_seen) {
        long status = 0;
        f->body_seen = true;
        curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &status);
        if (!status_ok(status)) {
            /* A redirect's or an error's body: not wanted, stop reading. */
            f->stop = STOP_NOT_BODY;
            return n ? 0 : 1;
        }
        if (announced_too_big(f)) {
            f->stop = STOP_TOO_BIG;
            return n ? 0 : 1;
        }
    }
    if (n > f->p->max_bytes - f->size) {
        f->stop = STOP_TOO_BIG;
        return n ? 0 : 1;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(f->rq->out_fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            f->write_errno = w < 0 ? errno : ENOSPC;
            f->stop = STOP_WRITE;
            return 0;
        }
        done += (size_t)w;
    }
    sha256_update(&f->sha, n, (const uint8_t *)data);
    f->size += n;
    return n;
}

static int
on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct fetch *f = ctx;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;

    if (f->rq->cancel && atomic_load(f->rq->cancel)) {
        f->stop = STOP_CANCEL;
        return 1;
    }
    if (dltotal > 0 && (uint64_t)dltotal > f->p->max_bytes && announced_too_big(f)) {
        f->stop = STOP_TOO_BIG;
        return 1;
    }
    return 0;
}

/* Every connection's address passes through here before connect(). */
static curl_socket_t
on_open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct fetch *f = ctx;
    struct sockaddr_storage ss;
    char why[sizeof f->refusal];
    size_t need = a->family == AF_INET ? sizeof(struct sockaddr_in)
                : a->family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr);

    f->attempts++;
    memset(&ss, 0, sizeof ss);
    if (purpose != CURLSOCKTYPE_IPCXN || a->addrlen < need || a->addrlen > sizeof ss) {
        snprintf(why, sizeof why, "an unexpected kind of connection");
        goto refuse;
    }
    memcpy(&ss, &a->addr, a->addrlen);
    if (download_addr_refused((const struct sockaddr *)&ss, f->p->allow_private, why,
                              sizeof why))
        goto refuse;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
refuse:
    if (f->refused++ == 0) {
        char ignored[sizeof why];
        memcpy(f->refusal, why, sizeof why);
        f->allowable = purpose == CURLSOCKTYPE_IPCXN && a->addrlen >= need
                       && !download_addr_refused((const struct sockaddr *)&ss, true, ignored,
                                                 sizeof ignored);
    }
    return CURL_SOCKET_BAD;
}

/* Milliseconds until deadline (monotonic seconds); negative once past. */
static long
ms_left(double deadline)
{
    return (long)((deadline - clock_now()) * 1000);
}

static bool
is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The URL a redirect points to, resolved against the current one, or NULL. */
static char *
redirect_target(CURL *curl, const char *current)
{
    struct curl_header *h = NULL;
    char *target = NULL;

    if (curl_easy_header(curl, "Location", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h->value)
        return NULL;
    CURLU *u = curl_url();
    if (u && curl_url_set(u, CURLUPART_URL, current, 0) == CURLUE_OK
        && curl_url_set(u, CURLUPART_URL, h->value, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK)
        curl_url_get(u, CURLUPART_URL, &target, 0);
    curl_url_cleanup(u);
    return target;
}

static int
fail(struct download_result *res, const char *ename, char *err, size_t errlen, int code,
     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Records an error in res (dropping any promise about the body) and err. */
static int
fail(struct download_result *res, const char *ename, char *err, size_t errlen, int code,
     const char *fmt, ...)
{
    res->ename = ename;
    res->size = 0;
    res->sha256[0] = '\0';
    res->content_type[0] = '\0';
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Sets the options every hop shares. */
static int
setup(struct fetch *f, struct curl_slist **resolve, char *curl_err)
{
    CURL *c = f->curl;
    CURLcode rc = CURLE_OK;

    if (f->rq->resolve) {
        *resolve = curl_slist_append(NULL, f->rq->resolve);
        if (!*resolve)
            return -1;
        rc |= curl_easy_setopt(c, CURLOPT_RESOLVE, *resolve);
    }
    rc |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(c, CURLOPT_PROXY, "");
    rc |= curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    rc |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    rc |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (f->p->ca_file) {
        /* The operator's CAs replace the system's: the bundle, and no
         * directory of hashed certificates beside it. */
        rc |= curl_easy_setopt(c, CURLOPT_CAINFO, f->p->ca_file);
        rc |= curl_easy_setopt(c, CURLOPT_CAPATH, (char *)NULL);
    }
    rc |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    rc |= curl_easy_setopt(c, CURLOPT_USERAGENT, "cellgate/" CELLGATE_VERSION);
    rc |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    rc |= curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    rc |= curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, f);
    rc |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    rc |= curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    rc |= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    rc |= curl_easy_setopt(c, CURLOPT_XFERINFODATA, f);
    rc |= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    return rc == CURLE_OK ? 0 : -1;
}

/*
 * One hop: fetches url; returns CG_OK when the answer is a 2xx (the body is
 * in the fd), 1 with *next set when it is a redirect, or an error.
 */
static int
hop(struct fetch *f, const char *url, double deadline, char **next,
    struct download_result *res, char *curl_err, char *err, size_t errlen)
{
    long left = ms_left(deadline), status = 0;
    CURL *c = f->curl;

    if (f->rq->cancel && atomic_load(f->rq->cancel))
        return fail(res, DOWNLOAD_E_INTERRUPTED, err, errlen, CG_ECANCELED,
                    "the download of %s was interrupted", url);
    if (left <= 0)
        return fail(res, DOWNLOAD_E_TIMEOUT, err, errlen, CG_ETIMEDOUT,
                    "the download took longer than %u s (%s)", f->p->timeout_s, ENV_TIMEOUT);
    f->body_seen = false;
    f->stop = STOP_NONE;
    f->attempts = f->refused = 0;
    f->refusal[0] = curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, left);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     left < DOWNLOAD_CONNECT_TIMEOUT * 1000L ? left : DOWNLOAD_CONNECT_TIMEOUT * 1000L);

    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    res->http_status = (int)status;
    switch (f->stop) {
    case STOP_CANCEL:
        return fail(res, DOWNLOAD_E_INTERRUPTED, err, errlen, CG_ECANCELED,
                    "the download of %s was interrupted", url);
    case STOP_TOO_BIG:
        if (f->announced)
            return fail(res, DOWNLOAD_E_TOO_LARGE, err, errlen, CG_ETOOBIG,
                        "%s is %llu bytes, more than the %llu allowed (%s)", url,
                        (unsigned long long)f->announced, (unsigned long long)f->p->max_bytes,
                        ENV_MAX_BYTES);
        return fail(res, DOWNLOAD_E_TOO_LARGE, err, errlen, CG_ETOOBIG,
                    "%s is larger than the %llu bytes allowed (%s)", url,
                    (unsigned long long)f->p->max_bytes, ENV_MAX_BYTES);
    case STOP_WRITE:
        return fail(res, DOWNLOAD_E_FAILED, err, errlen, CG_ESYS, "writing the download failed: %s",
                    strerror(f->write_errno));
    case STOP_NONE:
    case STOP_NOT_BODY:
        break;
    }
    if (rc != CURLE_OK && f->stop != STOP_NOT_BODY) {
        if (f->refused && f->refused == f->attempts)
            return fail(res, DOWNLOAD_E_REFUSED, err, errlen, CG_EREFUSED,
                        "%s refused: %s%s", url, f->refusal,
                        f->allowable ? "; set " ENV_PRIVATE "=1 to allow" : "");
        if (rc == CURLE_SSL_CACERT_BADFILE && f->p->ca_file)
            return fail(res, DOWNLOAD_E_CONFIG, err, errlen, CG_EINVAL,
                        "%s: %s names %s, which holds no CA certificate libcurl could "
                        "load (PEM): %s", url, ENV_CA_FILE, f->p->ca_file,
                        curl_err[0] ? curl_err : curl_easy_strerror(rc));
        if (rc == CURLE_OPERATION_TIMEDOUT)
            return fail(res, DOWNLOAD_E_TIMEOUT, err, errlen, CG_ETIMEDOUT,
                        "%s: no complete answer within the time allowed (%u s, %s): %s", url,
                        f->p->timeout_s, ENV_TIMEOUT,
                        curl_err[0] ? curl_err : curl_easy_strerror(rc));
        return fail(res, DOWNLOAD_E_FAILED, err, errlen, CG_ESYS, "%s: %s", url,
                    curl_err[0] ? curl_err : curl_easy_strerror(rc));
    }
    if (status_ok(status))
        return CG_OK;
    if (is_redirect(status)) {
        *next = redirect_target(c, url);
        if (!*next)
            return fail(res, DOWNLOAD_E_HTTP, err, errlen, CG_EREMOTE,
                        "HTTP %ld from %s without a usable Location", status, url);
        return 1;
    }
    return fail(res, DOWNLOAD_E_HTTP, err, errlen, CG_EREMOTE, "HTTP %ld from %s", status, url);
}

int
download_fetch(const struct download_policy *p, const struct download_request *rq,
               struct download_result *res, char *err, size_t errlen)
{
    struct fetch f = { .p = p, .rq = rq };
    struct curl_slist *resolve = NULL;
    char *url = malloc(DOWNLOAD_URL_MAX + 1), *next = NULL;
    char curl_err[CURL_ERROR_SIZE], why[1024];
    double deadline;
    int rc;

    memset(res, 0, sizeof *res);
    if (!url)
        return fail(res, DOWNLOAD_E_FAILED, err, errlen, CG_ENOMEM, "out of memory");
    rc = download_policy_check(p, rq->url ? rq->url : "", url, DOWNLOAD_URL_MAX + 1, err, errlen);
    if (rc != CG_OK) {
        res->ename = DOWNLOAD_E_REFUSED;
        goto out;
    }
    memcpy(res->url, url, strlen(url) + 1);
    deadline = clock_now() + (double)p->timeout_s;
    sha256_init(&f.sha);
    curl_err[0] = '\0';
    f.curl = curl_easy_init();
    if (!f.curl || setup(&f, &resolve, curl_err) != 0) {
        rc = fail(res, DOWNLOAD_E_FAILED, err, errlen, CG_ENOMEM, "libcurl could not be set up");
        goto out;
    }
    for (int hops = 0;; hops++) {
        rc = hop(&f, url, deadline, &next, res, curl_err, err, errlen);
        if (rc != 1)
            break;
        if (hops == DOWNLOAD_MAX_HOPS) {
            rc = fail(res, DOWNLOAD_E_HTTP, err, errlen, CG_EREMOTE,
                      "more than %d redirects, the last from %s", DOWNLOAD_MAX_HOPS, url);
            break;
        }
        rc = download_policy_check(p, next, url, DOWNLOAD_URL_MAX + 1, why, sizeof why);
        if (rc != CG_OK) {
            rc = fail(res, DOWNLOAD_E_REFUSED, err, errlen, CG_EREFUSED,
                      "the redirect from %s is refused: %s", res->url, why);
            break;
        }
        memcpy(res->url, url, strlen(url) + 1);
        curl_free(next);
        next = NULL;
    }
    if (rc == CG_OK) {
        unsigned char digest[SHA256_DIGEST_SIZE];
        const char *ct = NULL;
        sha256_digest(&f.sha, sizeof digest, digest);
        sodium_bin2hex(res->sha256, sizeof res->sha256, digest, sizeof digest);
        res->size = f.size;
        if (curl_easy_getinfo(f.curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            snprintf(res->content_type, sizeof res->content_type, "%s", ct);
        res->ename = NULL;
    }
out:
    curl_free(next);
    curl_easy_cleanup(f.curl);
    curl_slist_free_all(resolve);
    free(url);
    return rc;
}

int
download_run(const struct download_request *rq, struct download_result *res, char *err,
             size_t errlen)
{
    struct download_policy *p = download_policy_from_env(err, errlen);

    if (!p) {
        memset(res, 0, sizeof *res);
        res->ename = DOWNLOAD_E_CONFIG;
        return CG_EINVAL;
    }
    int rc = download_fetch(p, rq, res, err, errlen);
    download_policy_destroy(&p);
    return rc;
}
