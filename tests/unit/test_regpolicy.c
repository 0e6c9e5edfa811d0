/*
 * test_regpolicy.c - unit tests of regpolicy: the defaults, each
 * CELLGATE_REGISTRY* variable read or refused with a reason naming it, and
 * the allow/deny check on package names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "registry/regpolicy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const vars[] = {
    "CELLGATE_REGISTRIES",        "CELLGATE_REGISTRY_NPM",     "CELLGATE_REGISTRY_PYPI",
    "CELLGATE_REGISTRY_PYPI_FILES", "CELLGATE_REGISTRY_ALLOW", "CELLGATE_REGISTRY_DENY",
    "CELLGATE_REGISTRY_MAX_BYTES", "CELLGATE_REGISTRY_CA_FILE", "CELLGATE_REGISTRY_TIMEOUT",
    "CELLGATE_REGISTRY_METADATA_TTL",
};

static int
clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

/* Loads with var=value (the others unset); the result code. */
static int
load_with(const char *var, const char *value, struct regpolicy *p, char *err, size_t errlen)
{
    clear_env(NULL);
    if (var)
        setenv(var, value, 1);
    err[0] = '\0';
    return regpolicy_load(p, err, errlen);
}

static void
test_defaults(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256];

    memset(&p, 0x5a, sizeof p);
    assert_int_equal(load_with(NULL, NULL, &p, err, sizeof err), CG_OK);
    assert_true(p.on[REG_NPM]);
    assert_true(p.on[REG_PYPI]);
    assert_string_equal(p.npm, "https://registry.npmjs.org");
    assert_string_equal(p.pypi, "https://pypi.org/simple");
    assert_string_equal(p.pypi_files, "https://files.pythonhosted.org");
    assert_string_equal(p.ca_file, "");
    assert_int_equal(p.max_bytes, 256u << 20);
    assert_int_equal(p.timeout_s, 60);
    assert_int_equal(p.n_allow, 0);
    assert_int_equal(p.n_deny, 0);
    assert_true(regpolicy_allows(&p, REG_NPM, "left-pad", err, sizeof err));
    assert_true(regpolicy_allows(&p, REG_PYPI, "foo-bar", err, sizeof err));
    assert_string_equal(regpolicy_eco_name(REG_NPM), "npm");
    assert_string_equal(regpolicy_eco_name(REG_PYPI), "pypi");
    assert_string_equal(regpolicy_eco_name(REG_ECO_COUNT), "unknown");

    /* empty is unset */
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        setenv(vars[i], "", 1);
    assert_int_equal(regpolicy_load(&p, err, sizeof err), CG_OK);
    assert_true(p.on[REG_NPM] && p.on[REG_PYPI]);
    assert_string_equal(p.pypi_files, "https://files.pythonhosted.org");
}

static void
test_registries(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256];

    assert_int_equal(load_with("CELLGATE_REGISTRIES", "none", &p, err, sizeof err), CG_OK);
    assert_false(p.on[REG_NPM]);
    assert_false(p.on[REG_PYPI]);
    assert_false(regpolicy_allows(&p, REG_NPM, "left-pad", err, sizeof err));
    assert_string_equal(err, "npm packages are not served (CELLGATE_REGISTRIES)");

    assert_int_equal(load_with("CELLGATE_REGISTRIES", "npm", &p, err, sizeof err), CG_OK);
    assert_true(p.on[REG_NPM]);
    assert_false(p.on[REG_PYPI]);
    assert_false(regpolicy_allows(&p, REG_PYPI, "numpy", err, sizeof err));
    assert_non_null(strstr(err, "pypi packages are not served"));

    assert_int_equal(load_with("CELLGATE_REGISTRIES", " pypi , npm,npm ", &p, err, sizeof err),
                     CG_OK);
    assert_true(p.on[REG_NPM] && p.on[REG_PYPI]);

    static const struct {
        const char *value, *why;
    } bad[] = {
        { "go", "unknown ecosystem \"go\"" }, { "npm,cargo", "unknown ecosystem \"cargo\"" },
        { "NPM", "unknown ecosystem" },       { "none,npm", "unknown ecosystem \"none\"" },
        { "npm,,pypi", "empty item" },        { ",npm", "empty item" },
        { "npm,", "ends with a comma" },      { "all", "unknown ecosystem" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_with("CELLGATE_REGISTRIES", bad[i].value, &p, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, bad[i].why) || !strstr(err, "CELLGATE_REGISTRIES"))
            fail_msg("%s: %d \"%s\"", bad[i].value, rc, err);
    }
}

static void
test_urls(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256];
    static const struct {
        const char *in, *out;
    } good[] = {
        { "https://registry.example.com/", "https://registry.example.com" },
        { "https://registry.example.com///", "https://registry.example.com" },
        { "HTTPS://Registry.Example.COM:443/NPM/", "https://registry.example.com/NPM" },
        { "http://10.0.0.5:4873", "http://10.0.0.5:4873" },
        { "http://localhost:80/x", "http://localhost/x" },
        { "https://[::1]:8443/repo/npm-proxy", "https://[::1]:8443/repo/npm-proxy" },
        { "https://nexus.example/repository/npm%2Dgroup",
          "https://nexus.example/repository/npm%2Dgroup" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (load_with("CELLGATE_REGISTRY_NPM", good[i].in, &p, err, sizeof err) != CG_OK)
            fail_msg("%s: %s", good[i].in, err);
        assert_string_equal(p.npm, good[i].out);
    }

    static const struct {
        const char *in, *why;
    } bad[] = {
        { "ftp://registry.example.com", "http:// or https://" },
        { "registry.example.com", "http:// or https://" },
        { "file:///etc/passwd", "http:// or https://" },
        { "https://user:pw@registry.example.com", "user name or password" },
        { "https://token@registry.example.com/", "user name or password" },
        { "https://registry.example.com/?a=1", "query" },
        { "https://registry.example.com/#x", "fragment" },
        { "https://", "no host" },
        { "https:///npm", "no host" },
        { "https://:443/", "no host" },
        { "https://x:0/", "port out of range" },
        { "https://x:65536/", "port out of range" },
        { "https://x:/", "malformed port" },
        { "https://x:8a/", "malformed port" },
        { "https://x:123456/", "malformed port" },
        { "https://[::1/", "IPv6" },
        { "https://[]/", "IPv6" },
        { "https://x y/", "space" },
        { "https://x/\n", "control" },
        { "https://caf\xc3\xa9.example/", "non-ASCII" },
        { "https://x\\@y/", "backslash" },
        { "https://x!y/", "'!' in its host" },
        { "https://x/a/../b", "dot segment" },
        { "https://x/a/./b", "dot segment" },
        { "https://x/a/%2e%2E/b", "dot segment" },
        { "https://x/a/.%2e", "dot segment" },
        { "https://x//a", "empty or dot segment" },
        { "https://x/a%zz", "percent-escape" },
        { "https://x/a%2", "percent-escape" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_with("CELLGATE_REGISTRY_PYPI", bad[i].in, &p, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, bad[i].why) || !strstr(err, "CELLGATE_REGISTRY_PYPI"))
            fail_msg("%s: %d \"%s\"", bad[i].in, rc, err);
    }
    char longurl[REGPOLICY_URL_MAX + 16] = "https://x/";
    memset(longurl + 10, 'a', REGPOLICY_URL_MAX);
    longurl[REGPOLICY_URL_MAX + 10] = '\0';
    assert_int_equal(load_with("CELLGATE_REGISTRY_PYPI_FILES", longurl, &p, err, sizeof err),
                     CG_EINVAL);
    assert_non_null(strstr(err, "CELLGATE_REGISTRY_PYPI_FILES is longer than"));
}

/* The files host defaults to the index's own origin, except for PyPI's. */
static void
test_pypi_files_default(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256];

    assert_int_equal(load_with("CELLGATE_REGISTRY_PYPI",
                               "https://devpi.example:3141/root/pypi/+simple/", &p, err,
                               sizeof err), CG_OK);
    assert_string_equal(p.pypi, "https://devpi.example:3141/root/pypi/+simple");
    assert_string_equal(p.pypi_files, "https://devpi.example:3141");

    assert_int_equal(load_with("CELLGATE_REGISTRY_PYPI", "HTTPS://PyPI.org:443/simple/", &p, err,
                               sizeof err), CG_OK);
    assert_string_equal(p.pypi, "https://pypi.org/simple");
    assert_string_equal(p.pypi_files, "https://files.pythonhosted.org");

    assert_int_equal(load_with("CELLGATE_REGISTRY_PYPI", "http://[fd00::1]/simple", &p, err,
                               sizeof err), CG_OK);
    assert_string_equal(p.pypi_files, "http://[fd00::1]");

    clear_env(NULL);
    setenv("CELLGATE_REGISTRY_PYPI", "https://mirror.example/pypi/simple", 1);
    setenv("CELLGATE_REGISTRY_PYPI_FILES", "https://mirror.example/pypi/files/", 1);
    assert_int_equal(regpolicy_load(&p, err, sizeof err), CG_OK);
    assert_string_equal(p.pypi_files, "https://mirror.example/pypi/files");
}

static void
test_rules(void **state)
{
    (void)state;
    static struct regpolicy p;
    char why[512];

    clear_env(NULL);
    setenv("CELLGATE_REGISTRY_ALLOW", "npm:left-*, npm:@types/*,pypi:Foo_Bar*", 1);
    setenv("CELLGATE_REGISTRY_DENY", "npm:left-pad,pypi:evil-*", 1);
    assert_int_equal(regpolicy_load(&p, why, sizeof why), CG_OK);
    assert_int_equal(p.n_allow, 3);
    assert_int_equal(p.n_deny, 2);
    assert_string_equal(p.allow[2].glob, "foo-bar*");   /* normalised as names are */

    /* deny wins, and the reason names the rule */
    assert_false(regpolicy_allows(&p, REG_NPM, "left-pad", why, sizeof why));
    assert_string_equal(why, "npm package \"left-pad\" is denied by CELLGATE_REGISTRY_DENY rule "
                             "npm:left-pad");
    assert_true(regpolicy_allows(&p, REG_NPM, "left-justify", why, sizeof why));
    assert_true(regpolicy_allows(&p, REG_NPM, "@types/node", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_NPM, "react", why, sizeof why));
    assert_string_equal(why, "npm package \"react\" matches no CELLGATE_REGISTRY_ALLOW rule for "
                             "npm");
    assert_false(regpolicy_allows(&p, REG_NPM, "@typesx/node", why, sizeof why));
    assert_true(regpolicy_allows(&p, REG_PYPI, "foo-bar", why, sizeof why));
    assert_true(regpolicy_allows(&p, REG_PYPI, "foo-bar-baz", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_PYPI, "numpy", why, sizeof why));
    assert_non_null(strstr(why, "CELLGATE_REGISTRY_ALLOW rule for pypi"));

    /* an ecosystem without allow rules is open, less its deny rules */
    clear_env(NULL);
    setenv("CELLGATE_REGISTRY_ALLOW", "npm:lodash", 1);
    setenv("CELLGATE_REGISTRY_DENY", "pypi:Evil.*", 1);
    assert_int_equal(regpolicy_load(&p, why, sizeof why), CG_OK);
    assert_true(regpolicy_allows(&p, REG_PYPI, "numpy", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_PYPI, "evil-pkg", why, sizeof why));
    assert_string_equal(why, "pypi package \"evil-pkg\" is denied by CELLGATE_REGISTRY_DENY rule "
                             "pypi:evil-*");
    assert_true(regpolicy_allows(&p, REG_NPM, "lodash", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_NPM, "lodash.merge", why, sizeof why));

    /* fnmatch: brackets, '?', and a star across the scope's slash */
    clear_env(NULL);
    setenv("CELLGATE_REGISTRY_DENY", "npm:[ab]?c,npm:*/evil,pypi:py[!t]*", 1);
    assert_int_equal(regpolicy_load(&p, why, sizeof why), CG_OK);
    assert_false(regpolicy_allows(&p, REG_NPM, "axc", why, sizeof why));
    assert_true(regpolicy_allows(&p, REG_NPM, "cxc", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_NPM, "@scope/evil", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_PYPI, "pyyaml", why, sizeof why));
    assert_true(regpolicy_allows(&p, REG_PYPI, "pytest", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_ECO_COUNT, "x", why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_NPM, NULL, why, sizeof why));
    assert_false(regpolicy_allows(&p, REG_NPM, "axc", NULL, 0));
}

static void
test_rules_invalid(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256], many[2048] = "";
    static const struct {
        const char *value, *why;
    } bad[] = {
        { "left-pad", "is not \"eco:glob\"" },
        { "go:x", "unknown ecosystem" },
        { "npm:", "an empty glob" },
        { "npm:x,,npm:y", "empty rule" },
        { "npm:x,", "empty rule" },
        { "npm:Left-*", "uppercase" },
        { "npm:a b", "a character" },
        { "npm:a;b", "a character" },
        { "pypi:a\\b", "a character" },
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_with("CELLGATE_REGISTRY_DENY", bad[i].value, &p, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, bad[i].why) || !strstr(err, "CELLGATE_REGISTRY_DENY"))
            fail_msg("%s: %d \"%s\"", bad[i].value, rc, err);
    }
    for (int i = 0; i <= REGPOLICY_RULES_MAX; i++) {
        size_t n = strlen(many);
        snprintf(many + n, sizeof many - n, "%snpm:p%d", i ? "," : "", i);
    }
    assert_int_equal(load_with("CELLGATE_REGISTRY_ALLOW", many, &p, err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "more than 64 rules"));
    *strrchr(many, ',') = '\0';
    assert_int_equal(load_with("CELLGATE_REGISTRY_ALLOW", many, &p, err, sizeof err), CG_OK);
    assert_int_equal(p.n_allow, REGPOLICY_RULES_MAX);
}

static void
test_numbers(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256];
    static const struct {
        const char *in;
        uint64_t out;
    } sizes[] = {
        { "1000", 1000 }, { "10K", 10240 }, { "10k", 10240 }, { "5M", 5u << 20 },
        { "2g", 2ull << 30 }, { "1", 1 }, { "17179869184", 16ull << 30 },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(load_with("CELLGATE_REGISTRY_MAX_BYTES", sizes[i].in, &p, err,
                                   sizeof err), CG_OK);
        assert_int_equal(p.max_bytes, sizes[i].out);
    }
    static const char *const bad_sizes[] = { "0", "0K", "-1", "abc", "10KB", "1.5G", " 10",
                                             "10 ", "K", "99999999999999999999",
                                             "17179869184G", "1P" };
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        int rc = load_with("CELLGATE_REGISTRY_MAX_BYTES", bad_sizes[i], &p, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, "CELLGATE_REGISTRY_MAX_BYTES must be"))
            fail_msg("%s: %d \"%s\"", bad_sizes[i], rc, err);
    }
    assert_int_equal(load_with("CELLGATE_REGISTRY_TIMEOUT", "30", &p, err, sizeof err), CG_OK);
    assert_int_equal(p.timeout_s, 30);
    assert_int_equal(load_with("CELLGATE_REGISTRY_TIMEOUT", "86400", &p, err, sizeof err), CG_OK);
    static const char *const bad_timeouts[] = { "0", "86401", "x", "-5", "+5", "5s", "1e3", " 5" };
    for (size_t i = 0; i < sizeof bad_timeouts / sizeof bad_timeouts[0]; i++) {
        int rc = load_with("CELLGATE_REGISTRY_TIMEOUT", bad_timeouts[i], &p, err, sizeof err);
        if (rc != CG_EINVAL || !strstr(err, "CELLGATE_REGISTRY_TIMEOUT must be"))
            fail_msg("%s: %d \"%s\"", bad_timeouts[i], rc, err);
    }
    /* the metadata TTL: 300 s by default, 0 (always fetch) allowed */
    assert_int_equal(load_with("CELLGATE_REGISTRY_METADATA_TTL", "", &p, err, sizeof err), CG_OK);
    assert_int_equal(p.metadata_ttl_s, 300);
    assert_int_equal(load_with("CELLGATE_REGISTRY_METADATA_TTL", "0", &p, err, sizeof err), CG_OK);
    assert_int_equal(p.metadata_ttl_s, 0);
    int rc = load_with("CELLGATE_REGISTRY_METADATA_TTL", "-1", &p, err, sizeof err);
    assert_int_equal(rc, CG_EINVAL);
    assert_non_null(strstr(err, "CELLGATE_REGISTRY_METADATA_TTL must be a number of seconds "
                                "from 0"));
}

static void
test_ca_file(void **state)
{
    (void)state;
    static struct regpolicy p;
    char err[256], longpath[5000];

    assert_int_equal(load_with("CELLGATE_REGISTRY_CA_FILE", "/etc/ssl/corp.pem", &p, err,
                               sizeof err), CG_OK);
    assert_string_equal(p.ca_file, "/etc/ssl/corp.pem");
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(load_with("CELLGATE_REGISTRY_CA_FILE", longpath, &p, err, sizeof err),
                     CG_EINVAL);
    assert_non_null(strstr(err, "CELLGATE_REGISTRY_CA_FILE"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_defaults, clear_env),
        cmocka_unit_test_teardown(test_registries, clear_env),
        cmocka_unit_test_teardown(test_urls, clear_env),
        cmocka_unit_test_teardown(test_pypi_files_default, clear_env),
        cmocka_unit_test_teardown(test_rules, clear_env),
        cmocka_unit_test_teardown(test_rules_invalid, clear_env),
        cmocka_unit_test_teardown(test_numbers, clear_env),
        cmocka_unit_test_teardown(test_ca_file, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
