/*
 * regpath.c - reads a registry gateway request (method and request target)
 * into a struct reg_req, refusing everything that is not a well-formed read
 * of npm or PyPI (see regpath.h for the URL layout).
 *
 * The target is checked as received first (only printable ASCII, origin
 * form, no fragment, no backslash), then split into segments, each
 * percent-decoded and checked again (no dot segments, no encoded control
 * bytes, backslashes or non-ASCII, an encoded slash only where npm puts
 * one: in "@scope%2fname"). Only then are the segments read as the layout
 * of one ecosystem, names validated by that ecosystem's rules. What comes
 * out is canonical: the server builds upstream URLs from it without
 * re-encoding anything.
 */
#include "registry/regpath.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TARGET_PATH_MAX 4096   /* bytes of the path part of a target */
#define SEGMENTS_MAX 32        /* path segments, the ecosystem's prefix included */
#define FILE_SEGMENTS_MAX 16   /* segments of a files-host path */
#define QUOTE_MAX 64           /* bytes of an offending part shown in err */

/* One path segment: as received, and percent-decoded into struct path's dec. */
struct seg {
    const char *raw;    /* into the target, not NUL-terminated */
    size_t rawlen;
    const char *dec;    /* NUL-terminated, into path.dec */
    size_t declen;
    unsigned slashes;   /* decoded "/" (from %2f) in dec */
};

struct path {
    struct seg seg[SEGMENTS_MAX];
    size_t n;
    bool trailing_slash;            /* the path ended in "/" (dropped from seg) */
    char dec[TARGET_PATH_MAX + 1];  /* the decoded segments, each NUL-terminated */
};

/*
 * Copies at most QUOTE_MAX bytes of s[0..n) into dst for an error message,
 * escaping anything but printable ASCII (and '"', '\\') as \xNN, with "..."
 * when cut.
 */
static void
quote(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t o = 0, i;

    if (dstlen == 0)
        return;
    for (i = 0; i < n && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        size_t k;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            tmp[0] = (char)c;
            k = 1;
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            k = 4;
        }
        if (o + k + 4 > dstlen)
            break;
        memcpy(dst + o, tmp, k);
        o += k;
    }
    if (i < n && o + 4 <= dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* Formats err and returns status. */
static enum regpath_status refuse(char *err, size_t errlen, enum regpath_status status,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum regpath_status
refuse(char *err, size_t errlen, enum regpath_status status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- names ----------------------------------------------------------------- */

/*
 * True if one part of an npm name (the scope without "@", or the package)
 * is well-formed; else false with why saying what is wrong. what is
 * "scope" or "name".
 */
static bool
npm_part_ok(const char *s, size_t n, const char *what, bool legacy, char *why, size_t whylen)
{
    if (n == 0) {
        snprintf(why, whylen, "has an empty %s", what);
        return false;
    }
    if (s[0] == '.' || s[0] == '_') {
        snprintf(why, whylen, "has a %s starting with '%c'", what, s[0]);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || (legacy && c >= 'A' && c <= 'Z'))
            continue;
        if (c >= 'A' && c <= 'Z')
            snprintf(why, whylen, "has uppercase letters (npm names are lowercase)");
        else if (c == ' ')
            snprintf(why, whylen, "has a space");
        else if (c > 0x20 && c < 0x7f)
            snprintf(why, whylen, "has '%c' (npm names use only a-z 0-9 - . _)", c);
        else
            snprintf(why, whylen, "has the byte 0x%02x (npm names use only a-z 0-9 - . _)", c);
        return false;
    }
    return true;
}

/* True if name is a valid npm name; else false with why filled. */
static bool
npm_name_check(const char *name, char *why, size_t whylen)
{
    size_t n = strlen(name);

    if (n == 0) {
        snprintf(why, whylen, "is empty");
        return false;
    }
    if (n > REGPATH_NAME_MAX) {
        snprintf(why, whylen, "is longer than %d bytes", REGPATH_NAME_MAX);
        return false;
    }
    const char *pkg = name;
    if (name[0] == '@') {
        const char *slash = strchr(name, '/');
        if (!slash) {
            snprintf(why, whylen, "is a scope without a package (@SCOPE/NAME)");
            return false;
        }
        if (!npm_part_ok(name + 1, (size_t)(slash - name - 1), "scope", false, why, whylen))
            return false;
        pkg = slash + 1;
    }
    /* Names published before npm required lowercase (JSONStream) are
     * still installed; scoped names were always lowercase. */
    if (!npm_part_ok(pkg, strlen(pkg), "name", pkg == name, why, whylen))
        return false;
    if (pkg == name && (strcmp(name, "node_modules") == 0 || strcmp(name, "favicon.ico") == 0)) {
        snprintf(why, whylen, "is a reserved name");
        return false;
    }
    return true;
}

bool
regpath_npm_name_ok(const char *name)
{
    char why[128];
    return name && npm_name_check(name, why, sizeof why);
}

static bool
pypi_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Normalises name[0..n) as PEP 503 does; see regpath_pypi_normalize. */
static bool
pypi_normalize_n(const char *name, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    /* PEP 508: ^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$, ignoring case */
    if (n == 0 || !pypi_alnum(name[0]) || !pypi_alnum(name[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == '-' || c == '_' || c == '.') {
            if (out[o - 1] == '-')  /* o > 0: name[0] is alphanumeric */
                continue;
            c = '-';
        } else if (!pypi_alnum(c)) {
            return false;
        }
        if (o + 1 >= outlen)
            return false;
        out[o++] = (char)tolower((unsigned char)c);
    }
    out[o] = '\0';
    return true;
}

bool
regpath_pypi_normalize(const char *name, char *out, size_t outlen)
{
    if (!name || !out || outlen == 0)
        return false;
    return pypi_normalize_n(name, strlen(name), out, outlen);
}

/* ---- splitting the target ---------------------------------------------------- */

/*
 * Checks the target as received and splits its path into decoded segments.
 * REGPATH_OK, or the status with err filled.
 */
static enum regpath_status
split(const char *target, struct path *p, char *err, size_t errlen)
{
    char q[QUOTE_MAX * 4 + 8];
    size_t tlen = strlen(target), plen, o = 0;

    if (tlen == 0)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "empty request target");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c < 0x20 || c == 0x7f)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "control character 0x%02x at offset %zu of the target", c, i);
        if (c == ' ')
            return refuse(err, errlen, REGPATH_BAD_REQUEST, "space at offset %zu of the target",
                          i);
        if (c >= 0x80)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "non-ASCII byte 0x%02x at offset %zu of the target", c, i);
    }
    if (target[0] != '/') {
        quote(q, sizeof q, target, tlen);
        if (strcmp(target, "*") == 0)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "asterisk-form target \"*\": only paths are served");
        if (strstr(target, "://"))
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "absolute-form target \"%s\": the gateway is a mirror, not a proxy", q);
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "target \"%s\" is not a path (authority form?): the gateway is a mirror, "
                      "not a proxy", q);
    }
    plen = strcspn(target, "?");
    quote(q, sizeof q, target, plen);
    if (memchr(target, '#', plen))
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "fragment ('#') in the target \"%s\"", q);
    if (memchr(target, '\\', plen))
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "backslash in the path \"%s\"", q);
    if (plen > TARGET_PATH_MAX)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "path longer than %d bytes",
                      TARGET_PATH_MAX);

    p->n = 0;
    p->trailing_slash = false;
    size_t i = 1;
    while (i <= plen) {
        size_t start = i, end = i;
        while (end < plen && target[end] != '/')
            end++;
        if (end == start) {
            if (end == plen) {          /* "/" at the very end */
                p->trailing_slash = plen > 1;
                break;
            }
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "empty segment (double slash) in the path \"%s\"", q);
        }
        if (p->n == SEGMENTS_MAX)
            return refuse(err, errlen, REGPATH_BAD_REQUEST, "more than %d segments in the path",
                          SEGMENTS_MAX);
        struct seg *s = &p->seg[p->n++];
        s->raw = target + start;
        s->rawlen = end - start;
        s->dec = p->dec + o;
        s->slashes = 0;
        char sq[QUOTE_MAX * 4 + 8];
        quote(sq, sizeof sq, s->raw, s->rawlen);
        for (size_t k = start; k < end; k++) {
            unsigned char c = (unsigned char)target[k];
            if (c == '%') {
                int hi = k + 2 < end ? hexval(target[k + 1]) : -1;
                int lo = hi >= 0 ? hexval(target[k + 2]) : -1;
                if (hi < 0 || lo < 0)
                    return refuse(err, errlen, REGPATH_BAD_REQUEST,
                                  "malformed percent-escape in the path segment \"%s\"", sq);
                c = (unsigned char)(hi << 4 | lo);
                k += 2;
                if (c < 0x20 || c == 0x7f)
                    return refuse(err, errlen, REGPATH_BAD_REQUEST,
                                  "encoded control character in the path segment \"%s\"", sq);
                if (c >= 0x80)
                    return refuse(err, errlen, REGPATH_BAD_REQUEST,
                                  "encoded non-ASCII byte in the path segment \"%s\"", sq);
                if (c == '\\')
                    return refuse(err, errlen, REGPATH_BAD_REQUEST,
                                  "encoded backslash in the path segment \"%s\"", sq);
                if (c == '/')
                    s->slashes++;
            }
            p->dec[o++] = (char)c;
        }
        p->dec[o++] = '\0';
        s->declen = (size_t)(p->dec + o - 1 - s->dec);
        if (strcmp(s->dec, ".") == 0 || strcmp(s->dec, "..") == 0)
            return refuse(err, errlen, REGPATH_BAD_REQUEST, "dot segment \"%s\" in the path", sq);
        i = end + 1;
    }
    return REGPATH_OK;
}

/* Refuses an encoded slash in segments [from, p->n). */
static enum regpath_status
no_encoded_slash(const struct path *p, size_t from, char *err, size_t errlen)
{
    for (size_t i = from; i < p->n; i++) {
        if (p->seg[i].slashes) {
            char q[QUOTE_MAX * 4 + 8];
            quote(q, sizeof q, p->seg[i].raw, p->seg[i].rawlen);
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "encoded slash in the path segment \"%s\" (only npm's "
                          "\"@scope%%2fname\" may have one)", q);
        }
    }
    return REGPATH_OK;
}

/* ---- npm ------------------------------------------------------------------- */

/*
 * A version as npm writes it in a tarball's name: semver's shape (dot-
 * separated identifiers of [0-9A-Za-z-], a "-prerelease" and a "+build"),
 * starting with a digit; checked loosely, but no empty identifier.
 */
static bool
semver_ok(const char *v, size_t n)
{
    bool plus = false;

    if (n == 0 || !(v[0] >= '0' && v[0] <= '9') || !pypi_alnum(v[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == '.' || c == '+') {
            if (!pypi_alnum(v[i - 1]) && v[i - 1] != '-')
                return false;   /* "..", ".+", "+." */
            if (c == '+' && plus)
                return false;
            plus |= c == '+';
        } else if (!pypi_alnum(c) && c != '-') {
            return false;
        }
    }
    return true;
}

/*
 * A tarball file name: "BASE-VERSION.tgz", BASE the name without its scope.
 * Fills r->file and r->version.
 */
static enum regpath_status
npm_tarball(const struct seg *f, struct reg_req *r, char *err, size_t errlen)
{
    char q[QUOTE_MAX * 4 + 8], nq[QUOTE_MAX * 4 + 8];
    const char *base = r->name[0] == '@' ? strchr(r->name, '/') + 1 : r->name;
    size_t blen = strlen(base), n = f->declen;

    quote(q, sizeof q, f->raw, f->rawlen);
    quote(nq, sizeof nq, r->name, strlen(r->name));
    if (n < 4 || memcmp(f->dec + n - 4, ".tgz", 4) != 0)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "npm tarball \"%s\" does not end in .tgz",
                      q);
    if (n <= blen + 5 || memcmp(f->dec, base, blen) != 0 || f->dec[blen] != '-')
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "npm tarball \"%s\" is not NAME-VERSION.tgz of package \"%s\"", q, nq);
    const char *v = f->dec + blen + 1;
    size_t vlen = n - blen - 1 - 4;
    if (vlen >= sizeof r->version || !semver_ok(v, vlen))
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "npm tarball \"%s\" has no version (NAME-VERSION.tgz, VERSION as semver) "
                      "after the package name", q);
    if (n > REGPATH_FILE_MAX)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "npm tarball name longer than %d bytes",
                      REGPATH_FILE_MAX);
    memcpy(r->file, f->dec, n + 1);
    memcpy(r->version, v, vlen);
    r->version[vlen] = '\0';
    return REGPATH_OK;
}

/* seg[0] is "npm". */
static enum regpath_status
parse_npm(const struct path *p, struct reg_req *r, char *err, size_t errlen)
{
    char q[QUOTE_MAX * 4 + 8], why[128];
    size_t rest;
    enum regpath_status st;

    r->eco = REG_NPM;
    if (p->n == 1)
        return refuse(err, errlen, REGPATH_NOT_FOUND,
                      "no npm package named: /npm/NAME is a packument");
    const struct seg *first = &p->seg[1];
    if (strcmp(first->dec, "-") == 0)
        return refuse(err, errlen, REGPATH_NOT_FOUND,
                      "npm's /-/ endpoints (search, audit, ping, ...) are not served");
    if (p->trailing_slash)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "an npm path does not end in a slash");
    if (first->dec[0] == '@' && first->slashes == 1) {
        /* /npm/@scope%2fname: the one place an encoded slash belongs */
        if (first->declen > REGPATH_NAME_MAX)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "npm package name longer than %d bytes", REGPATH_NAME_MAX);
        memcpy(r->name, first->dec, first->declen + 1);
        rest = 2;
    } else if (first->dec[0] == '@' && first->slashes == 0) {
        if (p->n < 3) {
            quote(q, sizeof q, first->raw, first->rawlen);
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "npm scope \"%s\" without a package (@SCOPE/NAME)", q);
        }
        const struct seg *pkg = &p->seg[2];
        if (first->declen + 1 + pkg->declen > REGPATH_NAME_MAX)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "npm package name longer than %d bytes", REGPATH_NAME_MAX);
        memcpy(r->name, first->dec, first->declen);
        r->name[first->declen] = '/';
        memcpy(r->name + first->declen + 1, pkg->dec, pkg->declen + 1);
        rest = 3;
        if ((st = no_encoded_slash(p, 1, err, errlen)) != REGPATH_OK)
            return st;
    } else {
        if ((st = no_encoded_slash(p, 1, err, errlen)) != REGPATH_OK)
            return st;
        if (first->declen > REGPATH_NAME_MAX)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "npm package name longer than %d bytes", REGPATH_NAME_MAX);
        memcpy(r->name, first->dec, first->declen + 1);
        rest = 2;
    }
    if ((st = no_encoded_slash(p, rest, err, errlen)) != REGPATH_OK)
        return st;
    if (!npm_name_check(r->name, why, sizeof why)) {
        quote(q, sizeof q, r->name, strlen(r->name));
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "npm package name \"%s\" %s", q, why);
    }
    if (p->n == rest) {
        r->kind = REG_NPM_PACKUMENT;
        return REGPATH_OK;
    }
    if (strcmp(p->seg[rest].dec, "-") != 0)
        return refuse(err, errlen, REGPATH_NOT_FOUND,
                      "only npm packuments (/npm/NAME) and tarballs (/npm/NAME/-/FILE.tgz) are "
                      "served");
    if (p->n != rest + 2)
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "malformed npm tarball path: /npm/NAME/-/FILE.tgz");
    r->kind = REG_NPM_TARBALL;
    return npm_tarball(&p->seg[rest + 1], r, err, errlen);
}

/* ---- PyPI ------------------------------------------------------------------ */

/* Characters of a files-host path segment; all URL-safe as they are. */
static bool
file_char(char c)
{
    return pypi_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '!';
}

static bool
ends_with_ci(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && strncasecmp(s + n - k, suffix, k) == 0;
}

/*
 * Reads project name and version out of a distribution's file name (a
 * wheel, an egg or an sdist; optionally its ".metadata"), into r->name
 * (normalised) and r->version.
 */
static enum regpath_status
pypi_file_name(const char *fname, struct reg_req *r, char *err, size_t errlen)
{
    static const char *const exts[] = { ".whl", ".tar.gz", ".tar.bz2", ".tar.xz", ".tgz",
                                        ".tar", ".zip", ".egg" };
    char q[QUOTE_MAX * 4 + 8];
    size_t n = strlen(fname), ext = 0;
    const char *name, *ver;
    size_t nlen, vlen;

    quote(q, sizeof q, fname, n);
    if (ends_with_ci(fname, n, ".metadata"))
        n -= strlen(".metadata");
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (ends_with_ci(fname, n, exts[i])) {
            ext = strlen(exts[i]);
            break;
        }
    }
    if (ext == 0)
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "\"%s\" is not a distribution file (.whl, .tar.gz, .zip, .tar.bz2, "
                      ".tar.xz, .tgz, .tar, .egg, or one of these plus .metadata)", q);
    n -= ext;
    bool wheel = ends_with_ci(fname, n + ext, ".whl");
    if (wheel || ends_with_ci(fname, n + ext, ".egg")) {
        /* NAME-VERSION-...: the name has no '-' (it is escaped as '_') */
        const char *d1 = memchr(fname, '-', n);
        const char *d2 = d1 ? memchr(d1 + 1, '-', (size_t)(fname + n - d1 - 1)) : NULL;
        if (!d1)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "\"%s\" is not NAME-VERSION-...: cannot tell its project", q);
        size_t dashes = 0;
        for (size_t i = 0; i < n; i++)
            dashes += fname[i] == '-';
        if (wheel && dashes != 4 && dashes != 5)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "\"%s\" is not a wheel name (NAME-VERSION-[BUILD-]PY-ABI-PLATFORM.whl)",
                          q);
        name = fname;
        nlen = (size_t)(d1 - fname);
        ver = d1 + 1;
        vlen = d2 ? (size_t)(d2 - ver) : (size_t)(fname + n - ver);
    } else {
        /* an sdist: NAME-VERSION, split at the last '-' before a digit */
        size_t i = n;
        while (i > 0 && !(fname[i - 1] == '-' && i < n && fname[i] >= '0' && fname[i] <= '9'))
            i--;
        if (i == 0)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "\"%s\" is not NAME-VERSION: cannot tell its project", q);
        name = fname;
        nlen = i - 1;
        ver = fname + i;
        vlen = n - i;
    }
    if (!pypi_normalize_n(name, nlen, r->name, sizeof r->name))
        return refuse(err, errlen, REGPATH_BAD_REQUEST,
                      "\"%s\" does not start with a valid project name", q);
    bool vok = vlen > 0 && vlen < sizeof r->version && pypi_alnum(ver[0]);
    for (size_t i = 0; vok && i < vlen; i++)    /* PEP 440's characters, '-' as '_' too */
        vok = pypi_alnum(ver[i]) || strchr(".+!_-", ver[i]);
    if (!vok)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "\"%s\" has no readable version", q);
    memcpy(r->version, ver, vlen);
    r->version[vlen] = '\0';
    return REGPATH_OK;
}

/* seg[0] is "pypi". */
static enum regpath_status
parse_pypi(const struct path *p, struct reg_req *r, char *err, size_t errlen)
{
    char q[QUOTE_MAX * 4 + 8];
    enum regpath_status st;

    r->eco = REG_PYPI;
    if ((st = no_encoded_slash(p, 1, err, errlen)) != REGPATH_OK)
        return st;
    if (p->n >= 2 && strcmp(p->seg[1].dec, "simple") == 0) {
        if (p->n == 2)
            return refuse(err, errlen, REGPATH_NOT_FOUND,
                          "the /pypi/simple/ root listing is not served: ask for "
                          "/pypi/simple/NAME/");
        if (p->n > 3)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "malformed project page path: /pypi/simple/NAME/");
        const struct seg *s = &p->seg[2];
        if (!regpath_pypi_normalize(s->dec, r->name, sizeof r->name)) {
            quote(q, sizeof q, s->raw, s->rawlen);
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "\"%s\" is not a valid PyPI project name", q);
        }
        r->kind = REG_PYPI_PROJECT;
        return REGPATH_OK;
    }
    if (p->n >= 2 && strcmp(p->seg[1].dec, "files") == 0) {
        if (p->n == 2)
            return refuse(err, errlen, REGPATH_NOT_FOUND, "no file named: /pypi/files/PATH");
        if (p->trailing_slash)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "a /pypi/files/ path names a file: it does not end in a slash");
        if (p->n - 2 > FILE_SEGMENTS_MAX)
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "a /pypi/files/ path has at most %d segments", FILE_SEGMENTS_MAX);
        size_t o = 0;
        for (size_t i = 2; i < p->n; i++) {
            const struct seg *s = &p->seg[i];
            quote(q, sizeof q, s->raw, s->rawlen);
            if (s->dec[0] == '.')
                return refuse(err, errlen, REGPATH_BAD_REQUEST,
                              "path segment \"%s\" starts with a dot", q);
            for (size_t k = 0; k < s->declen; k++)
                if (!file_char(s->dec[k]))
                    return refuse(err, errlen, REGPATH_BAD_REQUEST,
                                  "path segment \"%s\" has '%c' (files-host paths use only "
                                  "A-Z a-z 0-9 - . _ ~ + !)", q, s->dec[k]);
            if (o + s->declen + 1 > REGPATH_FILE_MAX)
                return refuse(err, errlen, REGPATH_BAD_REQUEST,
                              "a /pypi/files/ path is longer than %d bytes", REGPATH_FILE_MAX);
            if (o)
                r->file[o++] = '/';
            memcpy(r->file + o, s->dec, s->declen);
            o += s->declen;
            r->file[o] = '\0';
        }
        r->kind = REG_PYPI_FILE;
        return pypi_file_name(p->seg[p->n - 1].dec, r, err, errlen);
    }
    return refuse(err, errlen, REGPATH_NOT_FOUND,
                  "only /pypi/simple/NAME/ and /pypi/files/PATH are served");
}

/* ---- the request ------------------------------------------------------------- */

enum regpath_status
regpath_parse(const char *method, const char *target, struct reg_req *req, char *err,
              size_t errlen)
{
    struct path p;
    struct reg_req r;
    char q[QUOTE_MAX * 4 + 8];
    enum regpath_status st;

    if (err && errlen)
        err[0] = '\0';
    memset(&r, 0, sizeof r);
    if (!method || !target)
        return refuse(err, errlen, REGPATH_BAD_REQUEST, "no method or no target");
    if (strcmp(method, "HEAD") == 0) {
        r.head = true;
    } else if (strcmp(method, "GET") != 0) {
        quote(q, sizeof q, method, strlen(method));
        return refuse(err, errlen, REGPATH_BAD_METHOD,
                      "method \"%s\" is not served: the registry gateway is read-only "
                      "(GET and HEAD only)", q);
    }
    if ((st = split(target, &p, err, errlen)) != REGPATH_OK)
        return st;
    if (p.n == 0)
        return refuse(err, errlen, REGPATH_NOT_FOUND,
                      "nothing is served at /: the gateway serves /npm/ and /pypi/");
    if (p.seg[0].slashes)
        return no_encoded_slash(&p, 0, err, errlen);
    if (strcmp(p.seg[0].dec, "npm") == 0) {
        st = parse_npm(&p, &r, err, errlen);
    } else if (strcmp(p.seg[0].dec, "pypi") == 0) {
        st = parse_pypi(&p, &r, err, errlen);
    } else {
        quote(q, sizeof q, p.seg[0].raw, p.seg[0].rawlen);
        if (strpbrk(p.seg[0].dec, ".:"))
            return refuse(err, errlen, REGPATH_BAD_REQUEST,
                          "\"%s\" looks like a host: the gateway is a mirror, not a proxy, "
                          "and serves only /npm/ and /pypi/", q);
        return refuse(err, errlen, REGPATH_NOT_FOUND,
                      "nothing is served at /%s: the gateway serves /npm/ and /pypi/", q);
    }
    if (st != REGPATH_OK)
        return st;
    *req = r;
    return REGPATH_OK;
}
