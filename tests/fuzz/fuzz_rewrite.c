/*
 * fuzz_rewrite.c - libFuzzer target for the metadata rewriters, which read
 * every npm packument and PyPI project page the gateway serves.
 *
 * Input: byte 0 picks the rewriter (bits 0-1: 0 npm packument, 1 and 3
 * PyPI HTML, 2 PyPI JSON; bit 2: PyPI pages are on another index, devpi
 * style, whose files are relative links on the index's own origin); the
 * rest is the body. What comes out must be well-formed, link only to the
 * gateway, and be a fixed point: rewritten again as if the gateway were
 * the upstream, it comes out byte for byte the same.
 */
#include "common/cgerr.h"
#include "registry/regpath.h"
#include "registry/rewrite.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GW "http://127.0.0.1:3141"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* url must be the gateway's, and a path it serves as kind. */
static void
check_gateway_url(const char *url, enum reg_kind kind)
{
    struct reg_req r;
    char path[8192];
    size_t n = strlen(GW);

    if (!url || strncmp(url, GW "/", n + 1) != 0 || strlen(url + n) >= sizeof path)
        abort();
    memcpy(path, url + n, strlen(url + n) + 1);
    char *hash = strchr(path, '#');
    if (hash)
        *hash = '\0';
    if (regpath_parse("GET", path, &r, NULL, 0) != REGPATH_OK || r.kind != kind)
        abort();
}

/* Every <a href="..."> of a rebuilt page (attribute values have no '<'). */
static void
check_html(const char *page)
{
    const char *p = page;
    while ((p = strstr(p, "<a href=\""))) {
        p += 9;
        const char *end = strchr(p, '"');
        char url[8192];
        if (!end || (size_t)(end - p) >= sizeof url)
            abort();
        memcpy(url, p, (size_t)(end - p));
        url[end - p] = '\0';
        if (strchr(url, '&') || strchr(url, '<'))
            abort();    /* gateway URLs need no escaping */
        check_gateway_url(url, REG_PYPI_FILE);
        p = end;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256], err2[256], *out = NULL, *again = NULL;
    size_t outlen = 0, againlen = 0;
    int rc, which;
    bool devpi;
    const char *page, *files;

    if (size < 1)
        return 0;
    which = data[0] & 3;
    devpi = data[0] & 4;
    page = devpi ? "https://devpi.example:3141/root/pypi/+simple/foo/"
                 : "https://pypi.org/simple/foo/";
    files = devpi ? "https://devpi.example:3141" : "https://files.pythonhosted.org";
    const char *body = (const char *)data + 1;
    size--;

    if (which == 0)
        rc = rewrite_npm_packument(body, size, "https://registry.npmjs.org", GW, &out, &outlen,
                                   err, sizeof err);
    else if (which == 2)
        rc = rewrite_pypi_json(body, size, page, files, GW, &out, &outlen, err, sizeof err);
    else
        rc = rewrite_pypi_html(body, size, page, files, GW, &out, &outlen, err, sizeof err);
    if (rc != CG_OK) {
        if (out || outlen || (rc != CG_EINVAL && rc != CG_ENOMEM) || !err[0])
            abort();
        return 0;
    }
    if (!out || strlen(out) != outlen)
        abort();

    if (which == 0 || which == 2) {
        json_t *j = json_loadb(out, outlen, 0, NULL), *v;
        const char *key;
        size_t i;
        if (!j)
            abort();
        if (which == 0) {
            json_object_foreach(json_object_get(j, "versions"), key, v)
                check_gateway_url(json_string_value(json_object_get(json_object_get(v, "dist"),
                                                                    "tarball")),
                                  REG_NPM_TARBALL);
        } else {
            json_array_foreach(json_object_get(j, "files"), i, v)
                check_gateway_url(json_string_value(json_object_get(v, "url")), REG_PYPI_FILE);
        }
        json_decref(j);
    } else {
        check_html(out);
    }

    /* a fixed point: the gateway's links are under the gateway */
    if (which == 0)
        rc = rewrite_npm_packument(out, outlen, GW "/npm", GW, &again, &againlen, err2,
                                   sizeof err2);
    else if (which == 2)
        rc = rewrite_pypi_json(out, outlen, GW "/pypi/simple/foo/", GW "/pypi/files", GW, &again,
                               &againlen, err2, sizeof err2);
    else
        rc = rewrite_pypi_html(out, outlen, GW "/pypi/simple/foo/", GW "/pypi/files", GW, &again,
                               &againlen, err2, sizeof err2);
    if (rc != CG_OK || againlen != outlen || memcmp(again, out, outlen) != 0)
        abort();
    free(again);
    free(out);
    return 0;
}
