/*
 * regpolicy.c - the operator's settings for the registry gateway, read
 * from the environment (see regpolicy.h), and the package allow/deny check.
 *
 * Everything is checked when read, so the gateway refuses to start rather
 * than run with a setting it would have to guess at: upstream URLs are
 * http(s) with a host and nothing a URL could smuggle (userinfo, query,
 * fragment, dot segments), rules name a known ecosystem and a glob of the
 * characters names use. Globs are fnmatch(3) patterns matched without
 * FNM_PATHNAME: "*" also matches the "/" of a scoped npm name, so "npm:*"
 * matches "@types/node", as does "npm:@types/" followed by a star.
 */
#include "registry/regpolicy.h"

#include "common/cgerr.h"
#include "common/size.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENV_REGISTRIES "CELLGATE_REGISTRIES"
#define ENV_NPM "CELLGATE_REGISTRY_NPM"
#define ENV_PYPI "CELLGATE_REGISTRY_PYPI"
#define ENV_PYPI_FILES "CELLGATE_REGISTRY_PYPI_FILES"
#define ENV_ALLOW "CELLGATE_REGISTRY_ALLOW"
#define ENV_DENY "CELLGATE_REGISTRY_DENY"
#define ENV_MAX_BYTES "CELLGATE_REGISTRY_MAX_BYTES"
#define ENV_CA_FILE "CELLGATE_REGISTRY_CA_FILE"
#define ENV_TIMEOUT "CELLGATE_REGISTRY_TIMEOUT"
#define ENV_METADATA_TTL "CELLGATE_REGISTRY_METADATA_TTL"

#define DEFAULT_NPM "https://registry.npmjs.org"
#define DEFAULT_PYPI "https://pypi.org/simple"
#define DEFAULT_PYPI_FILES "https://files.pythonhosted.org"
#define DEFAULT_MAX_BYTES (256ull << 20)
#define DEFAULT_TIMEOUT 60
#define TIMEOUT_MAX 86400
#define DEFAULT_METADATA_TTL 300 /* as npm's own cache keeps a packument */

static const char *const eco_names[REG_ECO_COUNT] = { "npm", "pypi" };

const char *
regpolicy_eco_name(enum reg_eco eco)
{
    return (unsigned)eco < REG_ECO_COUNT ? eco_names[eco] : "unknown";
}

/* The ecosystem named s[0..n), or -1. */
static int
eco_lookup(const char *s, size_t n)
{
    for (int e = 0; e < REG_ECO_COUNT; e++)
        if (strlen(eco_names[e]) == n && memcmp(s, eco_names[e], n) == 0)
            return e;
    return -1;
}

/* Trims ASCII spaces and tabs around s[0..*n). */
static const char *
trim(const char *s, size_t *n)
{
    while (*n > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        (*n)--;
    }
    while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

/* ---- CELLGATE_REGISTRIES ----------------------------------------------------------- */

static int
load_registries(struct regpolicy *p, const char *v, char *err, size_t errlen)
{
    if (!v || !*v) {
        for (int e = 0; e < REG_ECO_COUNT; e++)
            p->on[e] = true;
        return CG_OK;
    }
    size_t vn = strlen(v);
    const char *t = trim(v, &vn);
    if (vn == 4 && memcmp(t, "none", 4) == 0)
        return CG_OK;
    for (const char *s = v; *s;) {
        size_t n = strcspn(s, ",");
        const char *item = trim(s, &n);
        int e = eco_lookup(item, n);
        if (n == 0)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s has an empty item in \"%.64s\" (a list like \"npm,pypi\", or "
                           "\"none\")", ENV_REGISTRIES, v);
        if (e < 0)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s names an unknown ecosystem \"%.*s\" (known: npm, pypi; or "
                           "\"none\" alone)", ENV_REGISTRIES, (int)(n < 32 ? n : 32), item);
        p->on[e] = true;
        s += strcspn(s, ",");
        if (*s == ',' && *++s == '\0')
            return cg_fail(err, errlen, CG_EINVAL, "%s ends with a comma", ENV_REGISTRIES);
    }
    return CG_OK;
}

/* ---- URLs --------------------------------------------------------------------------- */

/* True if seg[0..n) is "." or "..", plain or percent-encoded. */
static bool
dot_segment(const char *seg, size_t n)
{
    size_t dots = 0;

    for (size_t i = 0; i < n; dots++) {
        if (seg[i] == '.')
            i++;
        else if (n - i >= 3 && strncasecmp(seg + i, "%2e", 3) == 0)
            i += 3;
        else
            return false;
    }
    return dots == 1 || dots == 2;
}

/*
 * Checks the upstream URL in (from var) and writes its canonical form to
 * out: scheme and host lowercased, the port dropped when it is the
 * scheme's default, the path without trailing slashes. CG_EINVAL with err naming var and the fault.
 */
static int
url_canon(const char *var, const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
    size_t n = strlen(in), o = 0, i;
    bool https;

    if (n >= outlen)
        return cg_fail(err, errlen, CG_EINVAL, "%s is longer than %zu bytes", var, outlen - 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c >= 0x7f)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s has a space, control or non-ASCII byte (0x%02x at offset %zu)",
                           var, c, i);
        if (c == '\\')
            return cg_fail(err, errlen, CG_EINVAL, "%s has a backslash", var);
    }
    if (strncasecmp(in, "https://", 8) == 0) {
        https = true;
        i = 8;
    } else if (strncasecmp(in, "http://", 7) == 0) {
        https = false;
        i = 7;
    } else {
        return cg_fail(err, errlen, CG_EINVAL,
                       "%s must be an http:// or https:// URL, not \"%.100s\"", var, in);
    }
    if (strchr(in, '?'))
        return cg_fail(err, errlen, CG_EINVAL, "%s must not have a query (\"?\"): \"%.100s\"",
                       var, in);
    if (strchr(in, '#'))
        return cg_fail(err, errlen, CG_EINVAL, "%s must not have a fragment (\"#\"): \"%.100s\"",
                       var, in);
    size_t auth = i, auth_end = i + strcspn(in + i, "/");
    if (memchr(in + auth, '@', auth_end - auth))
        return cg_fail(err, errlen, CG_EINVAL,
                       "%s must not carry a user name or password (\"user@\"): \"%.100s\"", var,
                       in);
    memcpy(out, https ? "https://" : "http://", https ? 8 : 7);
    o = https ? 8 : 7;
    size_t h = auth;
    if (in[h] == '[') {
        const char *close = memchr(in + h, ']', auth_end - h);
        if (!close || close == in + h + 1)
            return cg_fail(err, errlen, CG_EINVAL, "%s has a malformed IPv6 address: \"%.100s\"",
                           var, in);
        for (const char *c = in + h + 1; c < close; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
                return cg_fail(err, errlen, CG_EINVAL,
                               "%s has a malformed IPv6 address: \"%.100s\"", var, in);
        h = (size_t)(close - in) + 1;
    } else {
        while (h < auth_end && in[h] != ':') {
            char c = in[h];
            if (!isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_')
                return cg_fail(err, errlen, CG_EINVAL, "%s has '%c' in its host: \"%.100s\"",
                               var, c, in);
            h++;
        }
    }
    if (h == auth)
        return cg_fail(err, errlen, CG_EINVAL, "%s has no host: \"%.100s\"", var, in);
    for (size_t k = auth; k < h; k++)
        out[o++] = (char)tolower((unsigned char)in[k]);
    if (h < auth_end) {
        if (in[h] != ':' || h + 1 == auth_end)
            return cg_fail(err, errlen, CG_EINVAL, "%s has a malformed port: \"%.100s\"", var, in);
        unsigned long port = 0;
        for (size_t k = h + 1; k < auth_end; k++) {
            if (!isdigit((unsigned char)in[k]) || k - h > 5)
                return cg_fail(err, errlen, CG_EINVAL, "%s has a malformed port: \"%.100s\"",
                               var, in);
            port = port * 10 + (unsigned long)(in[k] - '0');
        }
        if (port == 0 || port > 65535)
            return cg_fail(err, errlen, CG_EINVAL, "%s has a port out of range: \"%.100s\"",
                           var, in);
        if (port != (https ? 443u : 80u))
            o += (size_t)snprintf(out + o, outlen - o, ":%lu", port);
    }
    /* the path: no empty or dot segments (plain or percent-encoded) */
    size_t end = n;
    while (end > auth_end && in[end - 1] == '/')
        end--;
    for (size_t s = auth_end; s < end;) {
        size_t e = s + 1;
        while (e < end && in[e] != '/')
            e++;
        const char *seg = in + s + 1;
        size_t sl = e - s - 1;
        if (sl == 0 || dot_segment(seg, sl))
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s has an empty or dot segment in its path: \"%.100s\"", var, in);
        for (size_t k = 0; k < sl; k++)
            if (seg[k] == '%' && (k + 2 >= sl || !isxdigit((unsigned char)seg[k + 1])
                                  || !isxdigit((unsigned char)seg[k + 2])))
                return cg_fail(err, errlen, CG_EINVAL,
                               "%s has a malformed percent-escape: \"%.100s\"", var, in);
        s = e;
    }
    memcpy(out + o, in + auth_end, end - auth_end);
    o += end - auth_end;
    out[o] = '\0';
    return CG_OK;
}

/* Reads var into out (canonical), or dflt when it is unset or empty. */
static int
load_url(const char *var, const char *dflt, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *v = getenv(var);
    return url_canon(var, v && *v ? v : dflt, out, outlen, err, errlen);
}

/* ---- rules -------------------------------------------------------------------------- */

/*
 * Reads a glob for eco from s[0..n) into out: npm globs as written (npm
 * names are lowercase, so uppercase is refused), PyPI globs normalised as
 * names are (lowercase; runs of - _ . outside brackets become "-").
 */
static bool
glob_read(enum reg_eco eco, const char *s, size_t n, char *out, const char **why)
{
    size_t o = 0;
    bool bracket = false;

    if (n == 0) {
        *why = "an empty glob";
        return false;
    }
    if (n > REGPATH_NAME_MAX) {
        *why = "a glob longer than a name may be";
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!isalnum((unsigned char)c) && !strchr("-_.@/*?[]!^~", c)) {
            *why = "a character names and globs do not use (a-z 0-9 - _ . @ / * ? [ ] ! ^ ~)";
            return false;
        }
        if (eco == REG_NPM && isupper((unsigned char)c)) {
            *why = "uppercase letters (npm names are lowercase)";
            return false;
        }
        if (c == '[')
            bracket = true;
        else if (c == ']')
            bracket = false;
        if (eco == REG_PYPI && !bracket && (c == '-' || c == '_' || c == '.')) {
            if (o > 0 && out[o - 1] == '-' && i > 0 && strchr("-_.", s[i - 1]))
                continue;
            c = '-';
        }
        out[o++] = eco == REG_PYPI ? (char)tolower((unsigned char)c) : c;
    }
    out[o] = '\0';
    return true;
}

/* Reads "eco:glob,..." from var into rules (at most REGPOLICY_RULES_MAX). */
static int
load_rules(const char *var, struct regrule *rules, size_t *count, char *err, size_t errlen)
{
    const char *v = getenv(var);

    *count = 0;
    if (!v || !*v)
        return CG_OK;
    for (const char *s = v;;) {
        size_t n = strcspn(s, ",");
        const char *item = trim(s, &n);
        const char *colon = memchr(item, ':', n);
        const char *why = NULL;
        int shown = (int)(n < 64 ? n : 64);
        if (n == 0)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s has an empty rule (rules are \"eco:glob\", comma-separated)", var);
        if (!colon)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s rule \"%.*s\" is not \"eco:glob\" (e.g. \"npm:left-*\")", var,
                           shown, item);
        int e = eco_lookup(item, (size_t)(colon - item));
        if (e < 0)
            return cg_fail(err, errlen, CG_EINVAL,
                           "%s rule \"%.*s\" names an unknown ecosystem (known: npm, pypi)", var,
                           shown, item);
        if (*count == REGPOLICY_RULES_MAX)
            return cg_fail(err, errlen, CG_EINVAL, "%s has more than %d rules", var,
                           REGPOLICY_RULES_MAX);
        struct regrule *r = &rules[*count];
        size_t gl = n - (size_t)(colon + 1 - item);
        const char *g = trim(colon + 1, &gl);
        if (!glob_read((enum reg_eco)e, g, gl, r->glob, &why))
            return cg_fail(err, errlen, CG_EINVAL, "%s rule \"%.*s\" has %s", var, shown, item,
                           why);
        r->eco = (enum reg_eco)e;
        (*count)++;
        s += strcspn(s, ",");
        if (*s == '\0')
            break;
        s++;
    }
    return CG_OK;
}

/* ---- numbers ------------------------------------------------------------------------ */

/* A number of seconds from min to TIMEOUT_MAX in variable name, or dflt
 * when unset; CG_OK or CG_EINVAL with err naming the variable. */
static int
parse_seconds(const char *name, unsigned dflt, long min, unsigned *out, char *err,
              size_t errlen)
{
    const char *v = getenv(name);
    char *end;

    *out = dflt;
    if (!v || !*v)
        return CG_OK;
    errno = 0;
    long t = strtol(v, &end, 10);
    if (errno || *end || end == v || !isdigit((unsigned char)*v) || t < min || t > TIMEOUT_MAX)
        return cg_fail(err, errlen, CG_EINVAL, "%s must be a number of seconds from %ld to %d, "
                       "not \"%.64s\"", name, min, TIMEOUT_MAX, v);
    *out = (unsigned)t;
    return CG_OK;
}

int
regpolicy_load(struct regpolicy *p, char *err, size_t errlen)
{
    const char *v;
    int rc;

    memset(p, 0, sizeof *p);
    if ((rc = load_registries(p, getenv(ENV_REGISTRIES), err, errlen)) != CG_OK
        || (rc = load_url(ENV_NPM, DEFAULT_NPM, p->npm, sizeof p->npm, err, errlen)) != CG_OK
        || (rc = load_url(ENV_PYPI, DEFAULT_PYPI, p->pypi, sizeof p->pypi, err, errlen)) != CG_OK)
        return rc;
    /* PyPI's files live on their own host; another index's next to it */
    char origin[REGPOLICY_URL_MAX];
    if (strcmp(p->pypi, DEFAULT_PYPI) == 0) {
        snprintf(origin, sizeof origin, "%s", DEFAULT_PYPI_FILES);
    } else {
        size_t scheme = strstr(p->pypi, "://") + 3 - p->pypi;
        size_t o = scheme + strcspn(p->pypi + scheme, "/");
        memcpy(origin, p->pypi, o);
        origin[o] = '\0';
    }
    if ((rc = load_url(ENV_PYPI_FILES, origin, p->pypi_files, sizeof p->pypi_files, err,
                       errlen)) != CG_OK
        || (rc = load_rules(ENV_ALLOW, p->allow, &p->n_allow, err, errlen)) != CG_OK
        || (rc = load_rules(ENV_DENY, p->deny, &p->n_deny, err, errlen)) != CG_OK)
        return rc;
    if ((v = getenv(ENV_CA_FILE)) && *v) {
        if (strlen(v) >= sizeof p->ca_file)
            return cg_fail(err, errlen, CG_EINVAL, "%s is longer than %zu bytes", ENV_CA_FILE,
                           sizeof p->ca_file - 1);
        memcpy(p->ca_file, v, strlen(v) + 1);
    }
    p->max_bytes = DEFAULT_MAX_BYTES;
    if ((v = getenv(ENV_MAX_BYTES)) && *v && !size_parse_positive(v, &p->max_bytes))
        return cg_fail(err, errlen, CG_EINVAL,
                       "%s must be a positive number of bytes (suffix K, M or G allowed), "
                       "not \"%.64s\"", ENV_MAX_BYTES, v);
    if (parse_seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT, 1, &p->timeout_s, err, errlen) != CG_OK
        || parse_seconds(ENV_METADATA_TTL, DEFAULT_METADATA_TTL, 0, &p->metadata_ttl_s, err,
                         errlen) != CG_OK)
        return CG_EINVAL;
    return CG_OK;
}

/* ---- the check ---------------------------------------------------------------------- */

bool
regpolicy_allows(const struct regpolicy *p, enum reg_eco eco, const char *name, char *why,
                 size_t whylen)
{
    const char *en = regpolicy_eco_name(eco);
    bool any_allow = false;

    if (why && whylen)
        why[0] = '\0';
    if ((unsigned)eco >= REG_ECO_COUNT || !name) {
        cg_fail(why, whylen, CG_EINVAL, "no such ecosystem or no name");
        return false;
    }
    if (!p->on[eco]) {
        cg_fail(why, whylen, CG_EREFUSED, "%s packages are not served (%s)", en, ENV_REGISTRIES);
        return false;
    }
    for (size_t i = 0; i < p->n_deny; i++) {
        if (p->deny[i].eco == eco && fnmatch(p->deny[i].glob, name, 0) == 0) {
            cg_fail(why, whylen, CG_EREFUSED, "%s package \"%.214s\" is denied by %s rule %s:%s",
                    en, name, ENV_DENY, en, p->deny[i].glob);
            return false;
        }
    }
    for (size_t i = 0; i < p->n_allow; i++) {
        if (p->allow[i].eco != eco)
            continue;
        if (fnmatch(p->allow[i].glob, name, 0) == 0)
            return true;
        any_allow = true;
    }
    if (any_allow) {
        cg_fail(why, whylen, CG_EREFUSED,
                "%s package \"%.214s\" matches no %s rule for %s", en, name, ENV_ALLOW, en);
        return false;
    }
    return true;
}
