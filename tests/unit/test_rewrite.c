/*
 * test_rewrite.c - unit tests of rewrite: npm packuments (full and
 * abbreviated, scoped) whose tarballs come back through the gateway and
 * whose foreign tarballs are removed; PyPI HTML pages rebuilt from their
 * anchors (absolute, relative, <base>, entities, quoting, hostile links);
 * PEP 691 JSON pages; malformed input refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "registry/rewrite.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPM "https://registry.npmjs.org"
#define GW "http://127.0.0.1:3141"
#define FILES "https://files.pythonhosted.org"
#define PAGE "https://pypi.org/simple/foo-bar/"

/* ---- npm -------------------------------------------------------------------------- */

static const char full_packument[] =
    "{\"_id\":\"left-pad\",\"_rev\":\"52-abc\",\"name\":\"left-pad\","
    "\"description\":\"String left pad\","
    "\"dist-tags\":{\"latest\":\"1.3.0\",\"beta\":\"0.9.0\",\"old\":\"1.0.0\"},"
    "\"versions\":{"
    "\"1.0.0\":{\"name\":\"left-pad\",\"version\":\"1.0.0\",\"main\":\"index.js\","
    "\"dist\":{\"shasum\":\"b3a2b5b9a7d0e37e5cd1b2dbd1f0e8a3c0e5c2a1\","
    "\"tarball\":\"https://registry.npmjs.org/left-pad/-/left-pad-1.0.0.tgz\"}},"
    "\"1.3.0\":{\"name\":\"left-pad\",\"version\":\"1.3.0\","
    "\"dist\":{\"integrity\":\"sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEY8n5QG2rwh"
    "O9dL8Sj0CSEDwdR0YDOkOpkDz5Vv7Ew8Q/A==\","
    "\"shasum\":\"5b8a3a7765dfe001261dde915589e782f8c94d1e\","
    "\"tarball\":\"https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz\","
    "\"fileCount\":9,\"unpackedSize\":11935,"
    "\"signatures\":[{\"keyid\":\"SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA\","
    "\"sig\":\"MEUCIQ/+x==\"}]}},"
    "\"0.9.0\":{\"name\":\"left-pad\",\"version\":\"0.9.0\","
    "\"dist\":{\"shasum\":\"00\","
    "\"tarball\":\"https://evil.example/left-pad/-/left-pad-0.9.0.tgz\"}}"
    "},"
    "\"time\":{\"modified\":\"2022-06-17T02:02:34.000Z\",\"1.0.0\":\"2014-03-19T00:00:00.000Z\"},"
    "\"maintainers\":[{\"name\":\"stevemao\",\"email\":\"maochenyan@gmail.com\"}],"
    "\"license\":\"WTFPL\",\"readme\":\"# left-pad\\n\\u00e9\"}";

static json_t *
npm_ok(const char *body, const char *upstream, char *err, size_t errlen)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = rewrite_npm_packument(body, strlen(body), upstream, GW, &out, &outlen, err, errlen);
    if (rc != CG_OK)
        fail_msg("rewrite_npm_packument: %d %s", rc, err);
    assert_int_equal(strlen(out), outlen);
    json_t *j = json_loadb(out, outlen, 0, NULL);
    assert_non_null(j);
    free(out);
    return j;
}

static const char *
tarball(json_t *j, const char *version)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(json_object_get(j, "versions"), version), "dist"),
        "tarball"));
}

static void
test_npm_full(void **state)
{
    (void)state;
    char err[256];
    json_t *in = json_loads(full_packument, 0, NULL);
    json_t *j = npm_ok(full_packument, NPM, err, sizeof err);

    assert_string_equal(err, "2 versions kept, 1 removed");
    assert_string_equal(tarball(j, "1.0.0"), GW "/npm/left-pad/-/left-pad-1.0.0.tgz");
    assert_string_equal(tarball(j, "1.3.0"), GW "/npm/left-pad/-/left-pad-1.3.0.tgz");
    /* the version on another host is gone, and its dist-tag with it */
    json_t *versions = json_object_get(j, "versions"), *tags = json_object_get(j, "dist-tags");
    assert_int_equal(json_object_size(versions), 2);
    assert_null(json_object_get(versions, "0.9.0"));
    assert_int_equal(json_object_size(tags), 2);
    assert_string_equal(json_string_value(json_object_get(tags, "latest")), "1.3.0");
    assert_string_equal(json_string_value(json_object_get(tags, "old")), "1.0.0");
    assert_null(json_object_get(tags, "beta"));
    /* integrity, shasum, signatures and all the rest: as they were */
    json_t *v_in = json_object_get(json_object_get(in, "versions"), "1.3.0");
    json_t *d_in = json_object_get(v_in, "dist");
    json_t *d_out = json_object_get(json_object_get(versions, "1.3.0"), "dist");
    static const char *const same[] = { "integrity", "shasum", "signatures", "fileCount",
                                        "unpackedSize" };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        assert_true(json_equal(json_object_get(d_in, same[i]), json_object_get(d_out, same[i])));
    assert_string_equal(json_string_value(json_object_get(d_out, "integrity")),
                        "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEY8n5QG2rwhO9dL8Sj0CSEDwdR"
                        "0YDOkOpkDz5Vv7Ew8Q/A==");
    static const char *const kept[] = { "_id", "_rev", "description", "time", "maintainers",
                                        "license", "readme" };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        assert_true(json_equal(json_object_get(in, kept[i]), json_object_get(j, kept[i])));
    json_decref(in);
    json_decref(j);
}

static void
test_npm_abbreviated_scoped(void **state)
{
    (void)state;
    static const char body[] =
        "{\"name\":\"@types/node\",\"modified\":\"2024-01-01T00:00:00.000Z\","
        "\"dist-tags\":{\"latest\":\"20.1.0\",\"ts4.8\":\"18.0.0\",\"x\":\"19.0.0\"},"
        "\"versions\":{"
        "\"20.1.0\":{\"name\":\"@types/node\",\"version\":\"20.1.0\",\"dist\":{"
        "\"integrity\":\"sha512-AAAA/+==\",\"tarball\":"
        "\"https://registry.npmjs.org/@types/node/-/node-20.1.0.tgz\"}},"
        "\"18.0.0\":{\"name\":\"@types/node\",\"version\":\"18.0.0\",\"dist\":{"
        "\"tarball\":\"https://registry.npmjs.org/@types%2fnode/-/node-18.0.0.tgz\"}},"
        /* another package's tarball, even on the right host: removed */
        "\"19.0.0\":{\"dist\":{\"tarball\":"
        "\"https://registry.npmjs.org/@types/other/-/other-19.0.0.tgz\"}},"
        "\"17.0.0\":{\"dist\":{\"tarball\":"
        "\"https://registry.npmjs.org/@types/node/-/node-17.0.0.tgz?x=1\"}},"
        "\"16.0.0\":{\"dist\":{\"tarball\":"
        "\"https://user@registry.npmjs.org/@types/node/-/node-16.0.0.tgz\"}},"
        "\"15.0.0\":{\"dist\":{\"tarball\":"
        "\"https://registry.npmjs.org:8443/@types/node/-/node-15.0.0.tgz\"}},"
        "\"14.0.0\":{\"dist\":{\"tarball\":"
        "\"https://registry.npmjs.org/@types/node/-/../../evil/-/evil-1.0.0.tgz\"}},"
        "\"13.0.0\":{\"dist\":{\"tarball\":"
        "\"https://registry.npmjs.org/@types/node/-/node-13.0.0.tgz#x\"}},"
        "\"12.0.0\":{\"dist\":{\"tarball\":\"/@types/node/-/node-12.0.0.tgz\"}},"
        "\"11.0.0\":{\"dist\":{\"tarball\":42}},"
        "\"10.0.0\":{\"dist\":\"x\"},"
        "\"9.0.0\":[],"
        /* the same host over http: the gateway fetches from its own upstream anyway */
        "\"8.0.0\":{\"dist\":{\"tarball\":"
        "\"http://REGISTRY.npmjs.org/@types/node/-/node-8.0.0.tgz\"}}"
        "}}";
    char err[256];
    json_t *j = npm_ok(body, NPM, err, sizeof err);

    assert_string_equal(err, "3 versions kept, 10 removed");
    assert_string_equal(tarball(j, "20.1.0"), GW "/npm/@types/node/-/node-20.1.0.tgz");
    assert_string_equal(tarball(j, "18.0.0"), GW "/npm/@types/node/-/node-18.0.0.tgz");
    assert_string_equal(tarball(j, "8.0.0"), GW "/npm/@types/node/-/node-8.0.0.tgz");
    assert_int_equal(json_object_size(json_object_get(j, "versions")), 3);
    json_t *tags = json_object_get(j, "dist-tags");
    assert_int_equal(json_object_size(tags), 2);
    assert_null(json_object_get(tags, "x"));
    assert_string_equal(json_string_value(json_object_get(j, "modified")),
                        "2024-01-01T00:00:00.000Z");
    json_decref(j);
}

/* An upstream with a path (a Nexus or Verdaccio proxy), written with a slash. */
static void
test_npm_upstream_path(void **state)
{
    (void)state;
    static const char body[] =
        "{\"name\":\"a\",\"versions\":{"
        "\"1.0.0\":{\"dist\":{\"tarball\":"
        "\"https://nexus.example/repository/npm/a/-/a-1.0.0.tgz\"}},"
        "\"2.0.0\":{\"dist\":{\"tarball\":\"https://nexus.example/repository/a/-/a-2.0.0.tgz\"}},"
        "\"3.0.0\":{\"dist\":{\"tarball\":"
        "\"https://nexus.example/repository/npmx/a/-/a-3.0.0.tgz\"}}"
        "}}";
    char err[256];
    json_t *j = npm_ok(body, "https://nexus.example/repository/npm/", err, sizeof err);

    assert_string_equal(tarball(j, "1.0.0"), GW "/npm/a/-/a-1.0.0.tgz");
    assert_int_equal(json_object_size(json_object_get(j, "versions")), 1);
    json_decref(j);

    /* an unpublished package: no versions, kept as it is */
    j = npm_ok("{\"name\":\"gone\",\"time\":{\"unpublished\":{}}}", NPM, err, sizeof err);
    assert_non_null(json_object_get(json_object_get(j, "time"), "unpublished"));
    json_decref(j);
}

static void
test_npm_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *body, *why;
    } cases[] = {
        { "", "not JSON" },
        { "{\"name\":\"a\",", "not JSON" },
        { "<html>502</html>", "not JSON" },
        { "[]", "not a JSON object" },
        { "\"left-pad\"", "not JSON" },
        { "{\"error\":\"Not found\"}", "no valid npm \"name\"" },
        { "{\"name\":\"a b\",\"versions\":{}}", "no valid npm \"name\"" },
        { "{\"name\":1}", "no valid npm \"name\"" },
        { "{\"name\":\"a\",\"versions\":[]}", "not an object" },
        { "{\"name\":\"a\",\"dist-tags\":\"latest\"}", "not an object" },
        { "{\"name\":\"a\",\"name\":\"b\"}", "duplicate" },
    };
    char err[256], *out = (char *)"sentinel";
    size_t outlen = 99;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = rewrite_npm_packument(cases[i].body, strlen(cases[i].body), NPM, GW, &out,
                                       &outlen, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, cases[i].why))
            fail_msg("%s: %d \"%s\"", cases[i].body, rc, err);
        assert_null(out);
        assert_int_equal(outlen, 0);
    }
    /* a NUL inside the body is not JSON either */
    assert_int_equal(rewrite_npm_packument("{\"name\":\"a\"}\0x", 14, NPM, GW, &out, &outlen, err,
                                           sizeof err), CG_EINVAL);
    assert_int_equal(rewrite_npm_packument("{\"name\":\"a\"}", 12, "ftp://x", GW, &out, &outlen,
                                           err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "upstream"));
}

/* ---- PyPI HTML --------------------------------------------------------------------- */

static char *
html_ok(const char *body, const char *page, const char *files, char *err, size_t errlen)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = rewrite_pypi_html(body, strlen(body), page, files, GW, &out, &outlen, err, errlen);
    if (rc != CG_OK)
        fail_msg("rewrite_pypi_html: %d %s", rc, err);
    assert_int_equal(strlen(out), outlen);
    return out;
}

/* The anchors of a rebuilt page, one a line, without the page around them. */
static void
assert_anchors(const char *page, const char *want)
{
    static const char head[] = "<!DOCTYPE html>\n<html>\n  <head>\n"
                               "    <meta name=\"pypi:repository-version\" content=\"1.0\">\n"
                               "    <title>Links</title>\n  </head>\n  <body>\n";
    static const char tail[] = "  </body>\n</html>\n";
    size_t n = strlen(page);

    assert_true(n >= strlen(head) + strlen(tail));
    assert_memory_equal(page, head, strlen(head));
    assert_string_equal(page + n - strlen(tail), tail);
    size_t mid = n - strlen(head) - strlen(tail);
    if (mid != strlen(want) || memcmp(page + strlen(head), want, mid) != 0)
        fail_msg("anchors:\n%.*s\nwanted:\n%s", (int)mid, page + strlen(head), want);
}

static void
test_html_pypi(void **state)
{
    (void)state;
    static const char body[] =
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        "    <meta name=\"pypi:repository-version\" content=\"1.1\">\n"
        "    <title>Links for foo-bar</title>\n  </head>\n  <body>\n"
        "    <h1>Links for foo-bar</h1>\n"
        "    <a href=\"https://files.pythonhosted.org/packages/ab/cd/0123/foo_bar-1.0-py3-none-any"
        ".whl#sha256=0a1b2c3d\" data-requires-python=\"&gt;=3.7,&lt;4\" "
        "data-dist-info-metadata=\"sha256=ffee\" data-core-metadata=\"sha256=ffee\">"
        "foo_bar-1.0-py3-none-any.whl</a><br />\n"
        "    <a href=\"https://evil.example/packages/x/foo_bar-1.1.tar.gz#sha256=00\">"
        "foo_bar-1.1.tar.gz</a><br />\n"
        "    <a href='javascript:alert(1)'>x</a>\n"
        "    <a href=\"data:text/html,&lt;script&gt;\">y</a>\n"
        "    <a href=\"JavaScript:files.pythonhosted.org/packages/a/x-1.0.tar.gz\">z</a>\n"
        "    <a href=\"https://files.pythonhosted.org/packages/ef/01/foo_bar-0.9.tar.gz"
        "#sha256=aa\" "
        "data-yanked=\"bad &quot;release&quot; &amp; more\">foo_bar-0.9.tar.gz</a><br />\n"
        "    <a href=\"https://files.pythonhosted.org/packages/ef/02/foo_bar-0.8.tar.gz\" "
        "data-yanked>foo_bar-0.8.tar.gz</a>\n"
        "  </body>\n</html>\n<!--SERIAL 123-->\n";
    char err[256];
    char *out = html_ok(body, PAGE, FILES, err, sizeof err);

    assert_anchors(out,
        "    <a href=\"" GW "/pypi/files/packages/ab/cd/0123/foo_bar-1.0-py3-none-any.whl"
        "#sha256=0a1b2c3d\" data-requires-python=\"&gt;=3.7,&lt;4\" "
        "data-dist-info-metadata=\"sha256=ffee\" data-core-metadata=\"sha256=ffee\">"
        "foo_bar-1.0-py3-none-any.whl</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/ef/01/foo_bar-0.9.tar.gz#sha256=aa\" "
        "data-yanked=\"bad &quot;release&quot; &amp; more\">foo_bar-0.9.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/ef/02/foo_bar-0.8.tar.gz\" data-yanked=\"\">"
        "foo_bar-0.8.tar.gz</a><br>\n");
    assert_string_equal(err, "3 files kept, 4 anchors dropped");
    assert_null(strstr(out, "evil"));
    assert_null(strstr(out, "script"));
    free(out);
}

/* Links relative to the page (another index, such as devpi), and to <base>. */
static void
test_html_relative(void **state)
{
    (void)state;
    static const char body[] =
        "<html><body>"
        "<a href=\"../../+f/ab1/foo_bar-1.0.tar.gz#sha256=aabb\">foo_bar-1.0.tar.gz</a>\n"
        "<a href=\"/root/pypi/+f/cd2/foo_bar-1.1.tar.gz\">x</a>\n"
        "<a href=\"//devpi.example:3141/root/pypi/+f/ef3/foo_bar-1.2.tar.gz\">x</a>\n"
        "<a href=\"foo_bar-1.3.tar.gz\">in the page's own folder</a>\n"
        "<a href=\"../../../../../../etc/x-1.0.tar.gz\">dots stop at the root</a>\n"
        "<a href=\"//devpi.example/root/x-1.0.tar.gz\">another port</a>\n"
        "<a href=\"#sha256=00\">this page</a><a href=\"\">this page</a>\n"
        "<a href=\"?x-1.0.tar.gz\">a query</a>\n"
        "</body></html>";
    char err[256];
    char *out = html_ok(body, "https://devpi.example:3141/root/pypi/+simple/foo-bar/",
                        "https://devpi.example:3141", err, sizeof err);

    assert_anchors(out,
        "    <a href=\"" GW "/pypi/files/root/pypi/+f/ab1/foo_bar-1.0.tar.gz#sha256=aabb\">"
        "foo_bar-1.0.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/root/pypi/+f/cd2/foo_bar-1.1.tar.gz\">"
        "foo_bar-1.1.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/root/pypi/+f/ef3/foo_bar-1.2.tar.gz\">"
        "foo_bar-1.2.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/root/pypi/+simple/foo-bar/foo_bar-1.3.tar.gz\">"
        "foo_bar-1.3.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/etc/x-1.0.tar.gz\">x-1.0.tar.gz</a><br>\n");
    free(out);

    /* the first <base href> counts, for links before it too; a <base>
     * without href is no base */
    static const char based[] =
        "<a href=\"zz/x-0.9.tar.gz\">x</a><base target=_top>"
        "<head><base href=\"https://files.pythonhosted.org/packages/\"></head>"
        "<a href=\"ab/x-1.0.tar.gz\">x</a><base href=\"https://evil.example/\">"
        "<a href=\"cd/x-1.1.tar.gz\">x</a>";
    out = html_ok(based, PAGE, FILES, err, sizeof err);
    assert_anchors(out,
        "    <a href=\"" GW "/pypi/files/packages/zz/x-0.9.tar.gz\">x-0.9.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/ab/x-1.0.tar.gz\">x-1.0.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/cd/x-1.1.tar.gz\">x-1.1.tar.gz</a><br>\n");
    free(out);
    /* a relative <base href> resolves against the page */
    out = html_ok("<base href=\"../../../\"><a href=\"x-1.0.tar.gz\">x</a>", PAGE,
                  "https://pypi.org", err, sizeof err);
    assert_anchors(out, "    <a href=\"" GW "/pypi/files/x-1.0.tar.gz\">x-1.0.tar.gz</a><br>\n");
    free(out);
}

/* How attributes are read: quoting, entities, case, duplicates. */
static void
test_html_attributes(void **state)
{
    (void)state;
    static const char body[] =
        /* unquoted, uppercase tag and names */
        "<A HREF=https://files.pythonhosted.org/packages/aa/x-1.0.tar.gz#sha256=ab "
        "DATA-REQUIRES-PYTHON=&gt;=3.8>a</A>\n"
        /* single quotes around a value with double quotes, '>' inside quotes */
        "<a data-yanked='say \"no\" > yes' href='https://files.pythonhosted.org/packages/bb/"
        "x-1.1.tar.gz'>b</a>\n"
        /* entities in the href are decoded before it is resolved */
        "<a href=\"https&#58;//files.pythonhosted.org/packages&#x2F;cc/x-1.2.tar.gz"
        "#sha256=ab&#x63;d\">"
        "c</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/dd/x-1.3.tar.gz?a=1&amp;b=2\">"
        "query</a>\n"
        /* the first href wins; whitespace around it is not part of the URL */
        "<a\n  href = \"  https://files.pythonhosted.org/packages/ee/x-1.4.tar.gz \"\n"
        "  href=\"https://evil.example/x-1.4.tar.gz\" >e</a>\n"
        /* a fragment that is not a hash, a yank reason that is not text */
        "<a href=\"https://files.pythonhosted.org/packages/ff/x-1.5.tar.gz#egg=x\">f</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/ff/x-1.6.tar.gz\" data-yanked=\"a&#1;\">"
        "g</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/ff/x-1.7.tar.gz\" "
        "data-yanked=\"caf\xc3\xa9 &#x263A; &unknown; &#0;\">h</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/ff/x-1.8.tar.gz\" data-yanked=\"\xff\">"
        "i</a>\n"
        /* not a file the gateway serves, on the right host */
        "<a href=\"https://files.pythonhosted.org/admin/\">j</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/%2e%2e/x-1.0.tar.gz\">k</a>\n"
        "<a href=\"https://files.pythonhosted.org/packages/a%2fb/x-1.0.tar.gz\">l</a>\n"
        "<a href=\"http://files.pythonhosted.org/packages/gg/x-1.9.tar.gz\">http, same host</a>\n"
        "<a href=\"https://files.pythonhosted.org.evil.example/packages/x-1.0.tar.gz\">m</a>\n"
        "<a href=\"https://user@files.pythonhosted.org/packages/x-1.0.tar.gz\">n</a>\n"
        "<abbr href=\"https://files.pythonhosted.org/packages/hh/x-2.0.tar.gz\">not an a</abbr>\n"
        "<a name=x>no href</a><a href>bare</a>\n";
    char err[256];
    char *out = html_ok(body, PAGE, FILES, err, sizeof err);

    assert_anchors(out,
        "    <a href=\"" GW "/pypi/files/packages/aa/x-1.0.tar.gz#sha256=ab\" "
        "data-requires-python=\"&gt;=3.8\">x-1.0.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/bb/x-1.1.tar.gz\" "
        "data-yanked=\"say &quot;no&quot; &gt; yes\">x-1.1.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/cc/x-1.2.tar.gz#sha256=abcd\">x-1.2.tar.gz</a>"
        "<br>\n"
        "    <a href=\"" GW "/pypi/files/packages/ee/x-1.4.tar.gz\">x-1.4.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/ff/x-1.7.tar.gz\" "
        "data-yanked=\"caf\xc3\xa9 \xe2\x98\xba &amp;unknown; &amp;#0;\">x-1.7.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/gg/x-1.9.tar.gz\">x-1.9.tar.gz</a><br>\n");
    free(out);
}

/* Only <a> tags count: not in comments, scripts, styles or text. */
static void
test_html_structure(void **state)
{
    (void)state;
    static const char body[] =
        "<!-- <a href=\"https://files.pythonhosted.org/packages/a/x-1.0.tar.gz\">c</a> -->"
        "<script>var s = '<a href=\"https://files.pythonhosted.org/packages/b/x-1.0.tar.gz\">';"
        "</SCRIPT >"
        "<style>a::after { content: "
        "\"<a href=https://files.pythonhosted.org/packages/c/x-1.0.tar.gz>\" }</style>"
        "1 < 2 <3 <<a href=\"https://files.pythonhosted.org/packages/d/x-1.0.tar.gz\">d</a>"
        "<?xml version=\"1.0\"?></p ><br/><img src=x alt='<a href=y>'>"
        "<a/href=\"https://files.pythonhosted.org/packages/e/x-1.0.tar.gz\"/>";
    char err[256];
    char *out = html_ok(body, PAGE, FILES, err, sizeof err);

    assert_anchors(out,
        "    <a href=\"" GW "/pypi/files/packages/d/x-1.0.tar.gz\">x-1.0.tar.gz</a><br>\n"
        "    <a href=\"" GW "/pypi/files/packages/e/x-1.0.tar.gz\">x-1.0.tar.gz</a><br>\n");
    free(out);

    out = html_ok("", PAGE, FILES, err, sizeof err);
    assert_anchors(out, "");
    free(out);
    /* a script that never ends hides the rest of the page, as in a browser */
    out = html_ok("<script><a href=\"https://files.pythonhosted.org/packages/a/x-1.0.tar.gz\">",
                  PAGE, FILES, err, sizeof err);
    assert_anchors(out, "");
    free(out);
}

static void
test_html_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *body, *why;
    } cases[] = {
        { "<a href=\"https://files.pythonhosted.org/packages/a/x-1.0.tar.gz>x</a>",
          "inside a <a> tag" },
        { "<a href='x", "inside a <a> tag" },
        { "<a href=", "inside a <a> tag" },
        { "<a", "inside a <a> tag" },
        { "<div class=\"x\"", "inside a <div> tag" },
        { "<!-- never closed <a href=x>", "inside a comment" },
        { "<!DOCTYPE html", "inside a tag" },
        { "</a", "inside a tag" },
        { "<base href=\"ftp://files.pythonhosted.org/\">", "<base href>" },
        { "<base href=\"java script:x\">", "<base href>" },
    };
    char err[256], *out = NULL;
    size_t outlen = 0;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = rewrite_pypi_html(cases[i].body, strlen(cases[i].body), PAGE, FILES, GW, &out,
                                   &outlen, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, cases[i].why))
            fail_msg("%s: %d \"%s\"", cases[i].body, rc, err);
        assert_null(out);
    }
    assert_int_equal(rewrite_pypi_html("", 0, "/simple/x/", FILES, GW, &out, &outlen, err,
                                       sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "page URL"));
    assert_int_equal(rewrite_pypi_html("", 0, PAGE, "files.pythonhosted.org", GW, &out, &outlen,
                                       err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "files host"));
}

/* ---- PEP 691 JSON -------------------------------------------------------------------- */

static void
test_json_pypi(void **state)
{
    (void)state;
    static const char body[] =
        "{\"meta\":{\"api-version\":\"1.1\",\"_last-serial\":42},\"name\":\"foo-bar\","
        "\"files\":["
        "{\"filename\":\"foo_bar-1.0-py3-none-any.whl\","
        "\"url\":\"https://files.pythonhosted.org/packages/ab/cd/foo_bar-1.0-py3-none-any.whl\","
        "\"hashes\":{\"sha256\":\"0a1b\"},\"requires-python\":\">=3.7\","
        "\"core-metadata\":{\"sha256\":\"ffee\"},\"size\":1234,\"yanked\":false},"
        "{\"filename\":\"foo_bar-1.1.tar.gz\",\"url\":\"https://evil.example/foo_bar-1.1.tar.gz\","
        "\"hashes\":{}},"
        "{\"filename\":\"x\",\"url\":\"javascript:alert(1)\",\"hashes\":{}},"
        "{\"filename\":\"x\",\"url\":\"data:,x-1.0.tar.gz\",\"hashes\":{}},"
        "{\"filename\":\"foo_bar-0.9.tar.gz\",\"url\":\"../../packages/ef/foo_bar-0.9.tar.gz\"},"
        "{\"filename\":\"no url\"},"
        "{\"filename\":\"x\",\"url\":7},"
        "\"not an object\","
        "{\"filename\":\"foo_bar-0.8.tar.gz\",\"yanked\":\"broken\","
        "\"url\":\"https://files.pythonhosted.org/packages/ef/foo_bar-0.8.tar.gz#sha256=ab\"}"
        "],\"versions\":[\"0.8\",\"0.9\",\"1.0\",\"1.1\"]}";
    char err[256], *out = NULL;
    size_t outlen = 0;

    assert_int_equal(rewrite_pypi_json(body, strlen(body), PAGE, FILES, GW, &out, &outlen, err,
                                       sizeof err), CG_OK);
    assert_string_equal(err, "2 files kept, 7 removed");
    json_t *in = json_loads(body, 0, NULL), *j = json_loadb(out, outlen, 0, NULL);
    assert_non_null(j);
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 2);
    json_t *f0 = json_array_get(files, 0), *f0_in = json_array_get(json_object_get(in, "files"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "url")),
                        GW "/pypi/files/packages/ab/cd/foo_bar-1.0-py3-none-any.whl");
    json_object_del(f0, "url");
    json_object_del(f0_in, "url");
    assert_true(json_equal(f0, f0_in));     /* everything but the url, as it was */
    assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "url")),
                        GW "/pypi/files/packages/ef/foo_bar-0.8.tar.gz#sha256=ab");
    assert_true(json_equal(json_object_get(j, "meta"), json_object_get(in, "meta")));
    assert_true(json_equal(json_object_get(j, "versions"), json_object_get(in, "versions")));
    assert_string_equal(json_string_value(json_object_get(j, "name")), "foo-bar");
    json_decref(in);
    json_decref(j);
    free(out);

    /* relative to the page on another index */
    static const char rel[] = "{\"files\":[{\"url\":\"../../+f/ab1/foo_bar-1.0.tar.gz\"}]}";
    assert_int_equal(rewrite_pypi_json(rel, strlen(rel),
                                       "https://devpi.example:3141/root/pypi/+simple/foo-bar/",
                                       "https://devpi.example:3141", GW, &out, &outlen, err,
                                       sizeof err), CG_OK);
    assert_string_equal(out, "{\"files\":[{\"url\":\"" GW
                             "/pypi/files/root/pypi/+f/ab1/foo_bar-1.0.tar.gz\"}]}");
    free(out);
}

static void
test_json_invalid(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "", "<html></html>", "[]", "{}", "{\"files\":{}}", "{\"files\":null}", "{\"files\":[],",
        "{\"files\":[],\"files\":[]}",
    };
    char err[256], *out = NULL;
    size_t outlen = 0;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = rewrite_pypi_json(cases[i], strlen(cases[i]), PAGE, FILES, GW, &out, &outlen, err,
                                   sizeof err);
        if (rc != CG_EINVAL || !err[0])
            fail_msg("%s: %d \"%s\"", cases[i], rc, err);
        assert_null(out);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npm_full),
        cmocka_unit_test(test_npm_abbreviated_scoped),
        cmocka_unit_test(test_npm_upstream_path),
        cmocka_unit_test(test_npm_invalid),
        cmocka_unit_test(test_html_pypi),
        cmocka_unit_test(test_html_relative),
        cmocka_unit_test(test_html_attributes),
        cmocka_unit_test(test_html_structure),
        cmocka_unit_test(test_html_invalid),
        cmocka_unit_test(test_json_pypi),
        cmocka_unit_test(test_json_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
