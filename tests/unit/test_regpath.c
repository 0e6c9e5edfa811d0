/*
 * test_regpath.c - unit tests of regpath: the requests the registry gateway
 * serves (npm packuments and tarballs, PyPI project pages and files, plain
 * and scoped, encoded and not) and the refusals, each with its status and
 * a reason naming what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "registry/regpath.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
test_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *method, *target;
        enum reg_eco eco;
        enum reg_kind kind;
        const char *name, *version, *file;
    } cases[] = {
        { "GET", "/npm/left-pad", REG_NPM, REG_NPM_PACKUMENT, "left-pad", "", "" },
        { "HEAD", "/npm/left-pad", REG_NPM, REG_NPM_PACKUMENT, "left-pad", "", "" },
        { "GET", "/npm/left-pad?write=true", REG_NPM, REG_NPM_PACKUMENT, "left-pad", "", "" },
        { "GET", "/npm/lodash.merge", REG_NPM, REG_NPM_PACKUMENT, "lodash.merge", "", "" },
        { "GET", "/npm/@types%2fnode", REG_NPM, REG_NPM_PACKUMENT, "@types/node", "", "" },
        { "GET", "/npm/@types%2Fnode", REG_NPM, REG_NPM_PACKUMENT, "@types/node", "", "" },
        { "GET", "/npm/%40types%2fnode", REG_NPM, REG_NPM_PACKUMENT, "@types/node", "", "" },
        { "GET", "/npm/@types/node", REG_NPM, REG_NPM_PACKUMENT, "@types/node", "", "" },
        { "GET", "/npm/@babel/core?x=%2f..", REG_NPM, REG_NPM_PACKUMENT, "@babel/core", "", "" },
        /* a name with dots is a name: the upstream host is the operator's */
        { "GET", "/npm/registry.npmjs.org", REG_NPM, REG_NPM_PACKUMENT, "registry.npmjs.org", "",
          "" },
        { "GET", "/npm/left-pad/-/left-pad-1.3.0.tgz", REG_NPM, REG_NPM_TARBALL, "left-pad",
          "1.3.0", "left-pad-1.3.0.tgz" },
        { "GET", "/npm/@s/n/-/n-1.0.0.tgz", REG_NPM, REG_NPM_TARBALL, "@s/n", "1.0.0",
          "n-1.0.0.tgz" },
        { "GET", "/npm/@s%2fn/-/n-1.0.0-beta.1.tgz", REG_NPM, REG_NPM_TARBALL, "@s/n",
          "1.0.0-beta.1", "n-1.0.0-beta.1.tgz" },
        { "HEAD", "/npm/a-b-c/-/a-b-c-10.0.0-rc.1+build.5.tgz", REG_NPM, REG_NPM_TARBALL, "a-b-c",
          "10.0.0-rc.1+build.5", "a-b-c-10.0.0-rc.1+build.5.tgz" },
        { "GET", "/pypi/simple/Foo_Bar/", REG_PYPI, REG_PYPI_PROJECT, "foo-bar", "", "" },
        { "GET", "/pypi/simple/foo.bar", REG_PYPI, REG_PYPI_PROJECT, "foo-bar", "", "" },
        { "GET", "/pypi/simple/Foo__-.Bar/?format=json", REG_PYPI, REG_PYPI_PROJECT, "foo-bar",
          "", "" },
        { "GET", "/pypi/simple/numpy/", REG_PYPI, REG_PYPI_PROJECT, "numpy", "", "" },
        { "GET", "/pypi/simple/a/", REG_PYPI, REG_PYPI_PROJECT, "a", "", "" },
        { "GET", "/pypi/files/packages/ab/cd/x-1.0-py3-none-any.whl", REG_PYPI, REG_PYPI_FILE, "x",
          "1.0", "packages/ab/cd/x-1.0-py3-none-any.whl" },
        { "GET", "/pypi/files/packages/ab/cd/x-1.0-py3-none-any.whl.metadata", REG_PYPI,
          REG_PYPI_FILE, "x", "1.0", "packages/ab/cd/x-1.0-py3-none-any.whl.metadata" },
        { "GET", "/pypi/files/packages/ab/cd/x-1.0-py3-none-any.whl?x=1", REG_PYPI, REG_PYPI_FILE,
          "x", "1.0", "packages/ab/cd/x-1.0-py3-none-any.whl" },
        { "GET",
          "/pypi/files/packages/0d/5f/0123abcd/foo_bar-2.0.1-1-cp311-cp311-"
          "manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
          REG_PYPI, REG_PYPI_FILE, "foo-bar", "2.0.1",
          "packages/0d/5f/0123abcd/foo_bar-2.0.1-1-cp311-cp311-manylinux_2_17_x86_64."
          "manylinux2014_x86_64.whl" },
        { "GET", "/pypi/files/packages/source/D/Django/Django-4.2.tar.gz", REG_PYPI, REG_PYPI_FILE,
          "django", "4.2", "packages/source/D/Django/Django-4.2.tar.gz" },
        { "GET", "/pypi/files/packages/aa/bb/zope.interface-6.0.zip", REG_PYPI, REG_PYPI_FILE,
          "zope-interface", "6.0", "packages/aa/bb/zope.interface-6.0.zip" },
        { "GET", "/pypi/files/packages/aa/bb/python-dateutil-2.8.2.tar.gz", REG_PYPI,
          REG_PYPI_FILE, "python-dateutil", "2.8.2",
          "packages/aa/bb/python-dateutil-2.8.2.tar.gz" },
        /* an encoded '+' is decoded: the file path is canonical */
        { "GET", "/pypi/files/packages/aa/bb/x-1.0%2Blocal.tar.gz", REG_PYPI, REG_PYPI_FILE, "x",
          "1.0+local", "packages/aa/bb/x-1.0+local.tar.gz" },
        /* another index's layout (devpi) */
        { "GET", "/pypi/files/root/pypi/+f/ab1/foo_bar-1.0.tar.gz", REG_PYPI, REG_PYPI_FILE,
          "foo-bar", "1.0", "root/pypi/+f/ab1/foo_bar-1.0.tar.gz" },
    };
    char err[256];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct reg_req r;
        memset(&r, 0x55, sizeof r);
        err[0] = 'x';
        enum regpath_status st = regpath_parse(cases[i].method, cases[i].target, &r, err,
                                               sizeof err);
        if (st != REGPATH_OK)
            fail_msg("%s %s: %d %s", cases[i].method, cases[i].target, st, err);
        assert_string_equal(err, "");
        assert_int_equal(r.eco, cases[i].eco);
        assert_int_equal(r.kind, cases[i].kind);
        assert_int_equal(r.head, strcmp(cases[i].method, "HEAD") == 0);
        assert_string_equal(r.name, cases[i].name);
        assert_string_equal(r.version, cases[i].version);
        assert_string_equal(r.file, cases[i].file);
    }
}

static void
test_refused(void **state)
{
    (void)state;
    char long_name[300] = "/npm/", long_file[1200] = "/pypi/files/";
    memset(long_name + 5, 'a', 215);
    long_name[220] = '\0';
    /* eleven segments of 100 bytes, then a file name: over REGPATH_FILE_MAX */
    for (size_t i = 0; i < 11; i++) {
        memset(long_file + 12 + i * 101, 'd', 100);
        long_file[12 + i * 101 + 100] = '/';
    }
    memcpy(long_file + 12 + 1111, "x-1.0.tar.gz", 13);

    static const struct {
        const char *method, *target;
        enum regpath_status st;
        const char *why;    /* a piece of err */
    } cases[] = {
        { "PUT", "/npm/left-pad", REGPATH_BAD_METHOD, "\"PUT\" is not served" },
        { "POST", "/npm/left-pad", REGPATH_BAD_METHOD, "read-only" },
        { "DELETE", "/npm/left-pad/-rev/1", REGPATH_BAD_METHOD, "DELETE" },
        { "PATCH", "/pypi/simple/x/", REGPATH_BAD_METHOD, "PATCH" },
        { "get", "/npm/left-pad", REGPATH_BAD_METHOD, "\"get\"" },
        { "CONNECT", "evil:443", REGPATH_BAD_METHOD, "CONNECT" },
        { "GET\r\nX", "/npm/x", REGPATH_BAD_METHOD, "GET\\x0d\\x0aX" },
        { "GET", "http://evil/", REGPATH_BAD_REQUEST, "absolute-form" },
        { "GET", "https://registry.npmjs.org/left-pad", REGPATH_BAD_REQUEST, "not a proxy" },
        { "GET", "evil:443", REGPATH_BAD_REQUEST, "authority form" },
        { "GET", "*", REGPATH_BAD_REQUEST, "asterisk" },
        { "GET", "", REGPATH_BAD_REQUEST, "empty" },
        { "GET", "npm/left-pad", REGPATH_BAD_REQUEST, "not a path" },
        { "GET", "/npm/../etc/passwd", REGPATH_BAD_REQUEST, "dot segment \"..\"" },
        { "GET", "/npm/./x", REGPATH_BAD_REQUEST, "dot segment" },
        { "GET", "/npm/%2e%2e/x", REGPATH_BAD_REQUEST, "dot segment \"%2e%2e\"" },
        { "GET", "/npm/%2E%2e", REGPATH_BAD_REQUEST, "dot segment" },
        { "GET", "/pypi/files/packages/.%2e/x-1.0.tar.gz", REGPATH_BAD_REQUEST, "dot segment" },
        { "GET", "/npm/a%2fb", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm%2fleft-pad", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm/@s/n%2fx", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm/@s%2fn%2fx", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm/@s%2fn/-/n%2f1.0.0.tgz", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm/left-pad/-/..%2fleft-pad-1.0.0.tgz", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/pypi/files/packages%2fab/x-1.0.tar.gz", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/pypi/simple/a%2Fb/", REGPATH_BAD_REQUEST, "encoded slash" },
        { "GET", "/npm/a\\b", REGPATH_BAD_REQUEST, "backslash" },
        { "GET", "/npm/a%5cb", REGPATH_BAD_REQUEST, "encoded backslash" },
        { "GET", "/npm/a%00b", REGPATH_BAD_REQUEST, "encoded control" },
        { "GET", "/npm/a%0d%0aHost:x", REGPATH_BAD_REQUEST, "encoded control" },
        { "GET", "/npm/a\x01x", REGPATH_BAD_REQUEST, "control character 0x01 at offset 6" },
        { "GET", "/npm/a\r\nHost: evil", REGPATH_BAD_REQUEST, "control character 0x0d" },
        { "GET", "/npm/a?x=\x7f", REGPATH_BAD_REQUEST, "control character 0x7f" },
        { "GET", "/npm/caf\xc3\xa9", REGPATH_BAD_REQUEST, "non-ASCII byte 0xc3" },
        { "GET", "/npm/caf%C3%A9", REGPATH_BAD_REQUEST, "encoded non-ASCII" },
        { "GET", "/npm/%zz", REGPATH_BAD_REQUEST, "malformed percent-escape" },
        { "GET", "/npm/a%2", REGPATH_BAD_REQUEST, "malformed percent-escape" },
        { "GET", "/npm/a%", REGPATH_BAD_REQUEST, "malformed percent-escape" },
        { "GET", "//npm/x", REGPATH_BAD_REQUEST, "double slash" },
        { "GET", "//evil.example/x", REGPATH_BAD_REQUEST, "double slash" },
        { "GET", "/npm//x", REGPATH_BAD_REQUEST, "double slash" },
        { "GET", "/pypi/files/packages//x-1.0.tar.gz", REGPATH_BAD_REQUEST, "double slash" },
        { "GET", "/npm/a#b", REGPATH_BAD_REQUEST, "fragment" },
        { "GET", "/npm/@Types/node", REGPATH_BAD_REQUEST, "uppercase" },
        { "GET", "/npm/@types/Node", REGPATH_BAD_REQUEST, "uppercase" },
        { "GET", "/npm/left pad", REGPATH_BAD_REQUEST, "space at offset 9" },
        { "GET", "/npm/left%20pad", REGPATH_BAD_REQUEST, "has a space" },
        { "GET", "/npm/left~pad", REGPATH_BAD_REQUEST, "'~'" },
        { "GET", "/npm/left'pad", REGPATH_BAD_REQUEST, "'''" },
        { "GET", "/npm/.hidden", REGPATH_BAD_REQUEST, "starting with '.'" },
        { "GET", "/npm/_private", REGPATH_BAD_REQUEST, "starting with '_'" },
        { "GET", "/npm/@_s/n", REGPATH_BAD_REQUEST, "scope starting with '_'" },
        { "GET", "/npm/node_modules", REGPATH_BAD_REQUEST, "reserved" },
        { "GET", "/npm/@s", REGPATH_BAD_REQUEST, "without a package" },
        { "GET", "/npm/@/n", REGPATH_BAD_REQUEST, "empty scope" },
        { "GET", "/npm/left-pad/", REGPATH_BAD_REQUEST, "slash" },
        { "GET", "/npm/left-pad/-/other-1.0.0.tgz", REGPATH_BAD_REQUEST,
          "of package \"left-pad\"" },
        { "GET", "/npm/left-pad/-/left-pad-1.0.0.zip", REGPATH_BAD_REQUEST, ".tgz" },
        { "GET", "/npm/left-pad/-/left-pad-.tgz", REGPATH_BAD_REQUEST, "NAME-VERSION.tgz" },
        { "GET", "/npm/left-pad/-/left-pad-x.tgz", REGPATH_BAD_REQUEST, "no version" },
        { "GET", "/npm/left-pad/-/left-pad-1.0_0.tgz", REGPATH_BAD_REQUEST, "no version" },
        { "GET", "/npm/left-pad/-/left-pad-1..0.tgz", REGPATH_BAD_REQUEST, "no version" },
        { "GET", "/npm/left-pad/-/left-pad-1.0.0+a+b.tgz", REGPATH_BAD_REQUEST, "no version" },
        { "GET", "/npm/left-pad/-/left-pad-1.0..tgz", REGPATH_BAD_REQUEST, "no version" },
        { "GET", "/npm/left-pad/-", REGPATH_BAD_REQUEST, "tarball path" },
        { "GET", "/npm/left-pad/-/a/b", REGPATH_BAD_REQUEST, "tarball path" },
        { "GET", "/npm/@s/n/-/s-1.0.0.tgz", REGPATH_BAD_REQUEST, "of package \"@s/n\"" },
        { "GET", "/registry.npmjs.org/left-pad", REGPATH_BAD_REQUEST, "looks like a host" },
        { "GET", "/evil:443/x", REGPATH_BAD_REQUEST, "looks like a host" },
        { "GET", "/pypi/simple/-foo/", REGPATH_BAD_REQUEST, "not a valid PyPI project name" },
        { "GET", "/pypi/simple/foo%21/", REGPATH_BAD_REQUEST, "\"foo%21\"" },
        { "GET", "/pypi/simple/foo/bar", REGPATH_BAD_REQUEST, "/pypi/simple/NAME/" },
        { "GET", "/pypi/files/packages/ab/cd/evil.sh", REGPATH_BAD_REQUEST,
          "not a distribution file" },
        { "GET", "/pypi/files/packages/ab/cd/x.tar.gz", REGPATH_BAD_REQUEST,
          "cannot tell its project" },
        { "GET", "/pypi/files/packages/ab/cd/x-1.0-py3.whl", REGPATH_BAD_REQUEST, "wheel name" },
        { "GET", "/pypi/files/packages/ab/cd/x-1~0-py3-none-any.whl", REGPATH_BAD_REQUEST,
          "no readable version" },
        { "GET", "/pypi/files/packages/ab/cd/x-.1-py3-none-any.whl", REGPATH_BAD_REQUEST,
          "no readable version" },
        { "GET", "/pypi/files/packages/ab/cd/-1.0.tar.gz", REGPATH_BAD_REQUEST,
          "valid project name" },
        { "GET", "/pypi/files/packages/.x/x-1.0.tar.gz", REGPATH_BAD_REQUEST,
          "starts with a dot" },
        { "GET", "/pypi/files/packages/ab/x%3b-1.0.tar.gz", REGPATH_BAD_REQUEST, "has ';'" },
        { "GET", "/pypi/files/packages/ab/x-1.0.tar.gz/", REGPATH_BAD_REQUEST, "slash" },
        { "GET", "/pypi/files/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/x-1.0.tar.gz",
          REGPATH_BAD_REQUEST, "at most 16 segments" },
        { "GET", "/", REGPATH_NOT_FOUND, "/npm/ and /pypi/" },
        { "GET", "/npm", REGPATH_NOT_FOUND, "no npm package" },
        { "GET", "/npm/", REGPATH_NOT_FOUND, "no npm package" },
        { "GET", "/pypi", REGPATH_NOT_FOUND, "/pypi/simple/NAME/" },
        { "GET", "/pypi/simple/", REGPATH_NOT_FOUND, "root listing" },
        { "HEAD", "/pypi/simple", REGPATH_NOT_FOUND, "root listing" },
        { "GET", "/pypi/files/", REGPATH_NOT_FOUND, "no file" },
        { "GET", "/pypi/pypi/requests/json", REGPATH_NOT_FOUND, "only /pypi/simple" },
        { "GET", "/npm/-/v1/search?text=x", REGPATH_NOT_FOUND, "/-/ endpoints" },
        { "GET", "/npm/left-pad/1.3.0", REGPATH_NOT_FOUND, "only npm packuments" },
        { "GET", "/favicon", REGPATH_NOT_FOUND, "nothing is served at /favicon" },
    };
    char err[256];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct reg_req r;
        err[0] = '\0';
        enum regpath_status st = regpath_parse(cases[i].method, cases[i].target, &r, err,
                                               sizeof err);
        if (st != cases[i].st || !strstr(err, cases[i].why))
            fail_msg("%s %s: got %d \"%s\", want %d with \"%s\"", cases[i].method,
                     cases[i].target, st, err, cases[i].st, cases[i].why);
    }
    struct reg_req r;
    assert_int_equal(regpath_parse("GET", long_name, &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_non_null(strstr(err, "longer than 214"));
    assert_int_equal(regpath_parse("GET", long_file, &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_non_null(strstr(err, "longer than 1024"));
    assert_int_equal(regpath_parse(NULL, "/npm/x", &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_int_equal(regpath_parse("GET", NULL, &r, err, sizeof err), REGPATH_BAD_REQUEST);
}

/* err names the offending part, but only so much of it, and fits any buffer. */
static void
test_err_bounded(void **state)
{
    (void)state;
    char target[6000] = "/", err[512], tiny[8];
    struct reg_req r;

    memset(target + 1, 'x', 3000);
    memcpy(target + 3001, ".y/z", 5);
    assert_int_equal(regpath_parse("GET", target, &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_non_null(strstr(err, "looks like a host"));
    assert_non_null(strstr(err, "xxx...\""));
    assert_true(strlen(err) < 300);

    memset(target + 1, 'x', 5000);
    target[5001] = '\0';
    assert_int_equal(regpath_parse("GET", target, &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_non_null(strstr(err, "longer than 4096"));

    assert_int_equal(regpath_parse("PUT", "/npm/x", &r, tiny, sizeof tiny), REGPATH_BAD_METHOD);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_int_equal(regpath_parse("PUT", "/npm/x", &r, NULL, 0), REGPATH_BAD_METHOD);
    assert_int_equal(regpath_parse("GET", "/npm/x", &r, NULL, 0), REGPATH_OK);

    /* a refused request leaves *req as it was */
    memset(&r, 0, sizeof r);
    assert_int_equal(regpath_parse("GET", "/npm/a~b", &r, err, sizeof err), REGPATH_BAD_REQUEST);
    assert_string_equal(r.name, "");
}

static void
test_npm_names(void **state)
{
    (void)state;
    static const char *const good[] = { "a", "left-pad", "lodash.merge", "@types/node",
                                        "@a/b", "a_b", "a-", "9", "-a", "@s/a.b-c_d",
                                        "JSONStream", "A" };
    static const char *const bad[] = { "", "@S/n", "@s", "@s/", "@/n", ".a", "_a", "@.s/n",
                                       "@s/.n", "@s/_n", "a b", "a/b", "@s/n/x", "a@b", "a%20",
                                       "a~b", "a!b", "a(b)", "a*", "node_modules", "favicon.ico",
                                       "caf\xc3\xa9", "@s/N" };
    char longest[REGPATH_NAME_MAX + 2];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!regpath_npm_name_ok(good[i]))
            fail_msg("\"%s\" refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (regpath_npm_name_ok(bad[i]))
            fail_msg("\"%s\" accepted", bad[i]);
    assert_false(regpath_npm_name_ok(NULL));
    memset(longest, 'a', REGPATH_NAME_MAX);
    longest[REGPATH_NAME_MAX] = '\0';
    assert_true(regpath_npm_name_ok(longest));
    longest[0] = '@';
    longest[10] = '/';
    assert_true(regpath_npm_name_ok(longest));
    longest[REGPATH_NAME_MAX] = 'a';
    longest[REGPATH_NAME_MAX + 1] = '\0';
    assert_false(regpath_npm_name_ok(longest));
}

static void
test_pypi_normalize(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "Foo_Bar", "foo-bar" }, { "foo.bar", "foo-bar" }, { "FOO--__..bar", "foo-bar" },
        { "a", "a" },             { "A1", "a1" },           { "zope.interface", "zope-interface" },
        { "-a", NULL },           { "a-", NULL },           { "", NULL },
        { "a b", NULL },          { "a/b", NULL },          { "caf\xc3\xa9", NULL },
        { "a!", NULL },           { ".a", NULL },
    };
    char out[REGPATH_NAME_MAX + 1], small[4];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok = regpath_pypi_normalize(cases[i][0], out, sizeof out);
        if (ok != (cases[i][1] != NULL) || (ok && strcmp(out, cases[i][1]) != 0))
            fail_msg("\"%s\": %d \"%s\"", cases[i][0], ok, ok ? out : "");
    }
    assert_true(regpath_pypi_normalize("abc", small, sizeof small));
    assert_string_equal(small, "abc");
    assert_false(regpath_pypi_normalize("abcd", small, sizeof small));
    assert_false(regpath_pypi_normalize(NULL, out, sizeof out));
    assert_false(regpath_pypi_normalize("a", out, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_err_bounded),
        cmocka_unit_test(test_npm_names),
        cmocka_unit_test(test_pypi_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
