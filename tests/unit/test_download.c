/*
 * test_download.c - unit tests of download: URL forms, the allow patterns
 * and the seen file, the address table, and real fetches from a small HTTP
 * server this test runs in a thread on 127.0.0.1. Nothing here connects
 * anywhere else: refusals of other addresses are proven by the address
 * function, or by a name resolved (CURLOPT_RESOLVE) to an address the
 * socket callback refuses before any socket exists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sandbox/boxfs.h"
#include "common/cgerr.h"
#include "fetch/download.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HELLO "hello, world\n"
#define CAP (1u << 20) /* the size cap the server tests run under */

/* ---- URL forms ----------------------------------------------------------- */

static void
test_url_canon(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        const char *out_or_err; /* canonical URL, or a piece of the error */
    } cases[] = {
        { "https://files.example.com/a.csv", CG_OK, "https://files.example.com/a.csv" },
        { "HTTPS://Files.Example.COM/A/../b?x=1#frag", CG_OK, "https://files.example.com/b?x=1" },
        { "http://example.com:80/x", CG_OK, "http://example.com/x" },
        { "https://example.com:443", CG_OK, "https://example.com/" },
        { "http://example.com:8080/x", CG_OK, "http://example.com:8080/x" },
        { "http://0x7f.1/", CG_OK, "http://127.0.0.1/" },
        { "http://[::1]:8000/x", CG_OK, "http://[::1]:8000/x" },
        { "ftp://example.com/x", CG_EUNSUPP, "only http:// and https://" },
        { "file:///etc/passwd", CG_EUNSUPP, "only http:// and https://" },
        { "gopher://example.com/", CG_EUNSUPP, "not gopher://" },
        { "http://user:pw@example.com/", CG_EREFUSED, "user name or password" },
        { "http://user@example.com/", CG_EREFUSED, "user name or password" },
        { "http://example.com/a b", CG_EREFUSED, "space" },
        { "http://example.com/a\tb", CG_EREFUSED, "control character" },
        { "http://example.com/a\r\nHost: x", CG_EREFUSED, "control character" },
        { "http://example.com\\@evil.test/", CG_EREFUSED, "backslash" },
        { "http://example.com/caf\xc3\xa9", CG_EREFUSED, "non-ASCII" },
        { "http://example.com/pub/%2e%2e/private", CG_EREFUSED, "percent-encoded" },
        { "http://example.com/pub/.%2E/private", CG_EREFUSED, "percent-encoded" },
        { "http://example.com/%2e", CG_EREFUSED, "percent-encoded" },
        { "http://example.com/%2e%2e%2e/ok", CG_OK, "http://example.com/%2e%2e%2e/ok" },
        { "http://example.com/a%2eb", CG_OK, "http://example.com/a%2eb" },
        { "", CG_EINVAL, "empty" },
        { "example.com/x", CG_EINVAL, "URL" },
        { "http://", CG_EINVAL, "" },
        { "http://example.com:99999/", CG_EINVAL, "" },
    };
    char canon[DOWNLOAD_URL_MAX + 1], err[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = canon[0] = '\0';
        int rc = download_url_canon(cases[i].in, canon, sizeof canon, err, sizeof err);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d, expected %d (%s)", cases[i].in, rc, cases[i].rc, err);
        if (rc == CG_OK)
            assert_string_equal(canon, cases[i].out_or_err);
        else if (!strstr(err, cases[i].out_or_err))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].in, err, cases[i].out_or_err);
    }

    /* The length limit, counted on the URL as sent. */
    char *longurl = malloc(DOWNLOAD_URL_MAX + 64);
    assert_non_null(longurl);
    memcpy(longurl, "http://example.com/", 19);
    memset(longurl + 19, 'a', DOWNLOAD_URL_MAX + 40);
    longurl[DOWNLOAD_URL_MAX + 1] = '\0';
    assert_int_equal(download_url_canon(longurl, canon, sizeof canon, err, sizeof err),
                     CG_EREFUSED);
    assert_non_null(strstr(err, "longer than"));
    longurl[DOWNLOAD_URL_MAX] = '\0';
    assert_int_equal(download_url_canon(longurl, canon, sizeof canon, err, sizeof err), CG_OK);
    free(longurl);
}

/* ---- patterns ------------------------------------------------------------ */

static bool
match(const char *pattern, const char *url)
{
    return download_glob_match(pattern, strlen(pattern), url);
}

static void
test_glob(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *url;
        bool match;
    } cases[] = {
        { "https://files.example.com/*", "https://files.example.com/a/b.csv", true },
        { "https://files.example.com/*", "https://files.example.com/", true },
        { "https://files.example.com/*", "http://files.example.com/a", false },
        { "https://files.example.com/*", "https://files.example.com.evil.test/a", false },
        { "https://files.example.com/*", "https://files.example.com:8443/a", false },
        { "https://files.example.com/*", "https://evil.test/https://files.example.com/", false },
        { "https://FILES.Example.com/*", "https://files.example.com/x", true },
        { "HTTPS://files.example.com/*", "https://files.example.com/x", true },
        { "https://files.example.com/Data/*", "https://files.example.com/data/x", false },
        { "https://*.example.com/*", "https://a.b.example.com/x", true },
        { "https://*.example.com/*", "https://example.com/x", false },
        { "https://*.example.com/*", "https://evil.test/?.example.com/", false },
        { "https://*.example.com/*", "https://evil.test/.example.com/", false },
        { "https://*.example.com/*", "https://evil.test#.example.com/", false },
        { "https://*.example.com/*", "https://evil.test@x.example.com/", false },
        { "https://*/*", "https://anything.test:9/x", true },
        { "https://*", "https://anything.test/x", false },
        { "http*://*.example.com/pub/*", "http://a.example.com/pub/f", true },
        { "http*://*.example.com/pub/*", "https://a.example.com/pub/f", true },
        { "http*://*.example.com/pub/*", "https://a.example.com/pri/f", false },
        { "http*://example.com/*", "http://evil.test/?://example.com/", false },
        { "*", "https://anything.test/at/all", true },
        { "*.csv", "https://anything.test/x.csv", true },
        { "https://h.test/?", "https://h.test/a", true },
        { "https://h.test/?", "https://h.test/ab", false },
        { "https://h.test/a\\*b", "https://h.test/a*b", true },
        { "https://h.test/a\\*b", "https://h.test/axxb", false },
        { "https://h.test/a\\?", "https://h.test/a?", true },
        { "https://h.test/a\\?", "https://h.test/ab", false },
        { "https://h.test/*/x/*", "https://h.test/1/2/x/3", true },
        { "https://h.test/x", "https://h.test/x", true },
        { "https://h.test/x", "https://h.test/xy", false },
        { "https://h.test/xy", "https://h.test/x", false },
        { "", "https://h.test/", false },
        { "**", "", true },
        { "http://127.0.0.1:*/*", "http://127.0.0.1:8000/x", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (match(cases[i].pattern, cases[i].url) != cases[i].match)
            fail_msg("pattern %s, url %s: expected %s", cases[i].pattern, cases[i].url,
                     cases[i].match ? "a match" : "no match");

    /* Stars against a long URL stay cheap (no exponential backtracking). */
    char *url = malloc(DOWNLOAD_URL_MAX + 1);
    assert_non_null(url);
    memcpy(url, "https://h.test/", 15);
    memset(url + 15, 'a', DOWNLOAD_URL_MAX - 15);
    url[DOWNLOAD_URL_MAX] = '\0';
    assert_false(match("https://h.test/*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", url));
    assert_true(match("https://h.test/*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", url));
    free(url);
}

/* ---- the seen file and the policy ------------------------------------------ */

static int
memfd_with(const char *text, size_t n)
{
    int fd = memfd_create("seen", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static bool
seen(const char *text, const char *url, const char *alt)
{
    int fd = memfd_with(text, strlen(text));
    bool found = download_seen_fd_contains(fd, url, alt);
    close(fd);
    return found;
}

static void
test_seen_parsing(void **state)
{
    (void)state;
    const char *u = "https://h.test/a";

    assert_true(seen("https://h.test/a\n", u, NULL));
    assert_true(seen("https://h.test/a", u, NULL)); /* no newline at the end */
    assert_true(seen("\n\n  https://h.test/b\r\n\t https://h.test/a \r\n", u, NULL));
    assert_true(seen("x\nhttps://h.test/A\n", "https://h.test/A", NULL));
    assert_true(seen("https://h.test/canon\n", u, "https://h.test/canon"));
    assert_false(seen("https://h.test/ab\n", u, NULL));
    assert_false(seen("https://h.test/\n", u, NULL));
    assert_false(seen("xhttps://h.test/a\n", u, NULL));
    assert_false(seen("https://h.test/a x\n", u, NULL));
    assert_false(seen("https://h.test/A\n", u, NULL)); /* exact: paths keep their case */
    assert_false(seen("", u, NULL));
    assert_false(seen("\n\n\n", "", NULL));

    /* A line longer than a URL may be is skipped as a whole: its tail is
     * no line of its own. */
    size_t n = DOWNLOAD_URL_MAX + 1024;
    char *big = malloc(n + 64);
    assert_non_null(big);
    memset(big, 'x', n);
    snprintf(big + n, 64, "%s\n", u);
    assert_false(seen(big, u, NULL));
    snprintf(big + n, 64, "\n%s\n", u);
    assert_true(seen(big, u, NULL));
    free(big);

    /* Only the first DOWNLOAD_SEEN_MAX bytes count; a line cut there is no line. */
    int fd = memfd_create("seen", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DOWNLOAD_SEEN_MAX - 4), 0);
    lseek(fd, 0, SEEK_END);
    assert_int_equal(write(fd, "\nhttps://h.test/a\n", 18), 18);
    lseek(fd, 0, SEEK_SET);
    assert_false(download_seen_fd_contains(fd, "https://h.test/a", NULL));
    assert_false(download_seen_fd_contains(fd, "htt", NULL)); /* "htt" is a cut line */
    close(fd);
}

static void
unset_policy_env(void)
{
    unsetenv("CELLGATE_DOWNLOAD_ALLOW");
    unsetenv("CELLGATE_DOWNLOAD_SEEN");
    unsetenv("CELLGATE_DOWNLOAD_ALLOW_PRIVATE");
    unsetenv("CELLGATE_DOWNLOAD_MAX_BYTES");
    unsetenv("CELLGATE_DOWNLOAD_TIMEOUT");
    unsetenv("CELLGATE_DOWNLOAD_CA_FILE");
}

static int
check_env(const char *url, char *err, size_t errlen)
{
    char canon[DOWNLOAD_URL_MAX + 1];
    struct download_policy *p = download_policy_from_env(err, errlen);
    assert_non_null(p);
    int rc = download_policy_check(p, url, canon, sizeof canon, err, errlen);
    download_policy_destroy(&p);
    assert_null(p);
    download_policy_destroy(&p); /* idempotent */
    return rc;
}

static void
test_policy_default_deny(void **state)
{
    (void)state;
    char err[1024];

    unset_policy_env();
    assert_int_equal(check_env("https://files.example.com/a", err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "downloads are off"));
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_ALLOW"));
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_SEEN"));

    setenv("CELLGATE_DOWNLOAD_ALLOW", "", 1); /* empty is unset */
    assert_int_equal(check_env("https://files.example.com/a", err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "downloads are off"));

    /* The form is checked before the policy, whatever it allows. */
    setenv("CELLGATE_DOWNLOAD_ALLOW", "*", 1);
    assert_int_equal(check_env("ftp://files.example.com/a", err, sizeof err), CG_EUNSUPP);
    assert_int_equal(check_env("https://u@files.example.com/a", err, sizeof err), CG_EREFUSED);
    assert_int_equal(check_env("https://files.example.com/a", err, sizeof err), CG_OK);
    unset_policy_env();
}

static void
test_policy_allow_list(void **state)
{
    (void)state;
    char err[1024];

    unset_policy_env();
    setenv("CELLGATE_DOWNLOAD_ALLOW",
           " https://files.example.com/* ,, http*://*.data.test/pub/*,https://x.test/exact ", 1);
    assert_int_equal(check_env("https://files.example.com/a.csv", err, sizeof err), CG_OK);
    assert_int_equal(check_env("HTTPS://FILES.example.com/a.csv", err, sizeof err), CG_OK);
    assert_int_equal(check_env("http://a.data.test/pub/x", err, sizeof err), CG_OK);
    assert_int_equal(check_env("https://x.test/exact", err, sizeof err), CG_OK);
    assert_int_equal(check_env("https://x.test/exact#frag", err, sizeof err), CG_OK);
    assert_int_equal(check_env("https://x.test/exact2", err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "https://x.test/exact2 is not allowed"));
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_ALLOW"));
    /* Dot segments are resolved before matching: no climbing out of /pub/. */
    assert_int_equal(check_env("http://a.data.test/pub/../secret", err, sizeof err),
                     CG_EREFUSED);
    assert_int_equal(check_env("http://a.data.test/pub/%2e%2e/secret", err, sizeof err),
                     CG_EREFUSED);
    unset_policy_env();
}

static void
test_policy_seen_file(void **state)
{
    (void)state;
    char path[] = "/tmp/cg-seen-XXXXXX", err[1024], canon[DOWNLOAD_URL_MAX + 1];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    unset_policy_env();
    setenv("CELLGATE_DOWNLOAD_SEEN", path, 1);
    FILE *f = fopen(path, "w");
    fputs("https://seen.test/one\n  https://seen.test/Two?q=1  \n\nhttps://Seen.test:443/three\n",
          f);
    fclose(f);
    /* One policy object: the file is re-read on every check. */
    struct download_policy *p = download_policy_from_env(err, sizeof err);
    assert_non_null(p);
    assert_int_equal(download_policy_check(p, "https://seen.test/one", canon, sizeof canon, err,
                                           sizeof err), CG_OK);
    assert_int_equal(download_policy_check(p, "https://seen.test/Two?q=1", canon, sizeof canon,
                                           err, sizeof err), CG_OK);
    /* As written, or canonical: both are lines of the file. */
    assert_int_equal(download_policy_check(p, "https://Seen.test:443/three", canon,
                                           sizeof canon, err, sizeof err), CG_OK);
    assert_int_equal(download_policy_check(p, "https://SEEN.test/one", canon, sizeof canon, err,
                                           sizeof err), CG_OK);
    assert_int_equal(download_policy_check(p, "https://seen.test/one/more", canon, sizeof canon,
                                           err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_SEEN"));

    f = fopen(path, "w");
    fputs("https://seen.test/four\n", f);
    fclose(f);
    assert_int_equal(download_policy_check(p, "https://seen.test/one", canon, sizeof canon, err,
                                           sizeof err), CG_EREFUSED);
    assert_int_equal(download_policy_check(p, "https://seen.test/four", canon, sizeof canon, err,
                                           sizeof err), CG_OK);

    /* A seen file that went away: refused, saying why. */
    unlink(path);
    assert_int_equal(download_policy_check(p, "https://seen.test/four", canon, sizeof canon, err,
                                           sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "cannot be read"));
    download_policy_destroy(&p);

    /* Not a regular file (a FIFO would block a reader). */
    setenv("CELLGATE_DOWNLOAD_SEEN", "/tmp", 1);
    assert_int_equal(check_env("https://seen.test/four", err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "not a regular file"));
    unset_policy_env();
}

static void
test_policy_env_errors(void **state)
{
    (void)state;
    char err[512];
    static const struct {
        const char *name, *value;
    } bad[] = {
        { "CELLGATE_DOWNLOAD_ALLOW_PRIVATE", "yes" },
        { "CELLGATE_DOWNLOAD_MAX_BYTES", "-5" },
        { "CELLGATE_DOWNLOAD_MAX_BYTES", "0" },
        { "CELLGATE_DOWNLOAD_MAX_BYTES", "10x" },
        { "CELLGATE_DOWNLOAD_MAX_BYTES", "99999999999999999999" },
        { "CELLGATE_DOWNLOAD_TIMEOUT", "0" },
        { "CELLGATE_DOWNLOAD_TIMEOUT", "1e3" },
        { "CELLGATE_DOWNLOAD_TIMEOUT", "100000" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unset_policy_env();
        setenv(bad[i].name, bad[i].value, 1);
        struct download_policy *p = download_policy_from_env(err, sizeof err);
        if (p)
            fail_msg("%s=%s was accepted", bad[i].name, bad[i].value);
        assert_non_null(strstr(err, bad[i].name));
    }
    unset_policy_env();
    setenv("CELLGATE_DOWNLOAD_MAX_BYTES", "64m", 1);
    setenv("CELLGATE_DOWNLOAD_TIMEOUT", "30", 1);
    struct download_policy *p = download_policy_from_env(err, sizeof err);
    assert_non_null(p);
    download_policy_destroy(&p);

    /* A pattern longer than allowed is the operator's error, said at once. */
    char *allow = malloc(DOWNLOAD_PATTERN_MAX + 16);
    assert_non_null(allow);
    memset(allow, 'a', DOWNLOAD_PATTERN_MAX + 1);
    allow[DOWNLOAD_PATTERN_MAX + 1] = '\0';
    struct download_config cfg = { .allow = allow };
    assert_null(download_policy_new(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "longer than"));
    free(allow);

    struct download_request rq = { .url = "https://x.test/", .out_fd = -1 };
    struct download_result res;
    setenv("CELLGATE_DOWNLOAD_TIMEOUT", "never", 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EINVAL);
    assert_string_equal(res.ename, DOWNLOAD_E_CONFIG);
    unset_policy_env();
}

/* ---- addresses ------------------------------------------------------------ */

static bool
refused(const char *text, bool allow_private, char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    why[0] = '\0';
    return download_addr_refused((const struct sockaddr *)&ss, allow_private, why, whylen);
}

static void
test_addresses(void **state)
{
    (void)state;
    enum { OK, PRIV, META };
    static const struct {
        const char *addr;
        int kind;
        const char *why; /* a piece of the reason, for refused ones */
    } cases[] = {
        { "93.184.216.34", OK, NULL },
        { "8.8.8.8", OK, NULL },
        { "1.1.1.1", OK, NULL },
        { "172.32.0.1", OK, NULL },
        { "172.15.255.255", OK, NULL },
        { "100.128.0.1", OK, NULL },
        { "100.63.255.255", OK, NULL },
        { "192.169.0.1", OK, NULL },
        { "11.0.0.1", OK, NULL },
        { "223.255.255.255", OK, NULL },
        { "127.0.0.1", PRIV, "127.0.0.1 is a loopback address" },
        { "127.255.0.9", PRIV, "loopback" },
        { "10.0.0.1", PRIV, "10.0.0.1 is a private address" },
        { "172.16.0.1", PRIV, "private" },
        { "172.31.255.255", PRIV, "private" },
        { "192.168.1.1", PRIV, "private" },
        { "100.64.0.1", PRIV, "carrier-grade NAT" },
        { "100.127.255.255", PRIV, "carrier-grade NAT" },
        { "169.254.1.1", PRIV, "link-local" },
        { "0.0.0.0", PRIV, "unspecified" },
        { "0.1.2.3", PRIV, "unspecified" },
        { "224.0.0.1", PRIV, "multicast" },
        { "239.255.255.250", PRIV, "multicast" },
        { "255.255.255.255", PRIV, "broadcast" },
        { "240.0.0.1", PRIV, "reserved" },
        { "192.0.2.1", PRIV, "documentation" },
        { "198.18.0.1", PRIV, "benchmarking" },
        { "169.254.169.254", META, "169.254.169.254 is a cloud metadata address" },
        { "169.254.170.2", META, "metadata" },
        { "100.100.100.200", META, "metadata" },
        { "2606:2800:220:1:248:1893:25c8:1946", OK, NULL },
        { "2001:4860:4860::8888", OK, NULL },
        { "::1", PRIV, "::1 is a loopback address" },
        { "::", PRIV, "unspecified" },
        { "fc00::1", PRIV, "unique local" },
        { "fdff:ffff::1", PRIV, "unique local" },
        { "fe80::1", PRIV, "link-local" },
        { "febf::1", PRIV, "link-local" },
        { "fec0::1", PRIV, "site-local" },
        { "ff02::1", PRIV, "multicast" },
        { "2001:db8::1", PRIV, "documentation" },
        { "2001:0:4136:e378:8000:63bf:3fff:fdd2", PRIV, "Teredo" },
        { "100::1", PRIV, "discard" },
        { "fd00:ec2::254", META, "fd00:ec2::254 is a cloud metadata address" },
        { "fd20:ce::254", META, "metadata" },
        { "::ffff:127.0.0.1", PRIV, "::ffff:127.0.0.1 is an IPv4-mapped address for 127.0.0.1, a loopback" },
        { "::ffff:10.1.2.3", PRIV, "10.1.2.3, a private address" },
        { "::ffff:169.254.169.254", META, "metadata" },
        { "::ffff:0.0.0.0", PRIV, "unspecified" },
        { "::ffff:8.8.8.8", OK, NULL },
        { "::127.0.0.1", PRIV, "loopback" },
        { "::8.8.8.8", PRIV, "IPv4-compatible" },
        { "64:ff9b::7f00:1", PRIV, "NAT64 address for 127.0.0.1" },
        { "64:ff9b::a9fe:a9fe", META, "metadata" },
        { "64:ff9b::808:808", OK, NULL },
        { "64:ff9b:1::1", PRIV, "local-use NAT64" },
        { "2002:7f00:1::1", PRIV, "6to4 address for 127.0.0.1" },
        { "2002:c0a8:101::1", PRIV, "192.168.1.1" },
        { "2002:808:808::1", OK, NULL },
    };
    char why[256];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool strict = refused(cases[i].addr, false, why, sizeof why);
        bool lax = refused(cases[i].addr, true, why, sizeof why);
        if (strict != (cases[i].kind != OK) || lax != (cases[i].kind == META))
            fail_msg("%s: refused %d (allow_private: %d), expected kind %d", cases[i].addr,
                     strict, lax, cases[i].kind);
        if (cases[i].why && !strstr(why, cases[i].why))
            fail_msg("%s: reason \"%s\" lacks \"%s\"", cases[i].addr, why, cases[i].why);
    }

    struct sockaddr unix_addr = { .sa_family = AF_UNIX };
    assert_true(download_addr_refused(&unix_addr, true, why, sizeof why));
    assert_non_null(strstr(why, "not IPv4 or IPv6"));
}

/* ---- a small HTTP server on 127.0.0.1 ---------------------------------------- */

struct server {
    int lfd;                 /* listening socket */
    int port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int requests;     /* requests answered */
    atomic_int secret_hits;  /* requests for /secret, which no policy allows */
    atomic_int conns_open;   /* connections being served */
};

static struct server srv;

static void
send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void
respond(int fd, int status, const char *extra_headers, const char *body)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     status, strlen(body), extra_headers);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

/* Sends n bytes of 'z' in chunks; stops when the peer goes away. */
static void
send_zeros(int fd, size_t n)
{
    char buf[16384];
    memset(buf, 'z', sizeof buf);
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        ssize_t w = send(fd, buf, k, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        n -= (size_t)w;
    }
}

/* Waits until the peer closes (or 10 s): the stalled server. */
static void
stall(int fd)
{
    char buf[256];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    for (int i = 0; i < 100 && !atomic_load(&srv.stop); i++)
        if (poll(&p, 1, 100) > 0 && recv(fd, buf, sizeof buf, 0) <= 0)
            return;
}

static void *
serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192] = "", path[1024], hdr[2048];
    size_t got = 0;

    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
    }
    req[got] = '\0';
    if (sscanf(req, "GET %1023s HTTP/1.1", path) != 1) {
        close(fd);
        atomic_fetch_sub(&srv.conns_open, 1);
        return NULL;
    }
    atomic_fetch_add(&srv.requests, 1);
    if (strcmp(path, "/ok/hello") == 0) {
        respond(fd, 200, "Content-Type: text/plain; charset=utf-8\r\n", HELLO);
    } else if (strcmp(path, "/ok/empty") == 0) {
        respond(fd, 200, "", "");
    } else if (strcmp(path, "/ok/redir-rel") == 0) {
        respond(fd, 302, "Location: hello\r\n", "moved");
    } else if (strcmp(path, "/ok/redir-abs") == 0) {
        snprintf(hdr, sizeof hdr, "Location: http://127.0.0.1:%d/ok/redir-rel\r\n", srv.port);
        respond(fd, 301, hdr, "");
    } else if (strcmp(path, "/ok/redir-out") == 0) {
        snprintf(hdr, sizeof hdr, "Location: http://127.0.0.1:%d/secret\r\n", srv.port);
        respond(fd, 302, hdr, "");
    } else if (strcmp(path, "/ok/redir-up") == 0) {
        respond(fd, 307, "Location: ../secret\r\n", "");
    } else if (strcmp(path, "/ok/redir-ftp") == 0) {
        respond(fd, 302, "Location: ftp://127.0.0.1/x\r\n", "");
    } else if (strcmp(path, "/ok/redir-nowhere") == 0) {
        respond(fd, 302, "", "");
    } else if (strcmp(path, "/ok/loop") == 0) {
        respond(fd, 302, "Location: /ok/loop\r\n", "");
    } else if (strcmp(path, "/ok/404") == 0) {
        respond(fd, 404, "", "not here");
    } else if (strcmp(path, "/ok/500-big") == 0) {
        /* An error page larger than the cap: it is an HTTP error, not too large. */
        snprintf(hdr, sizeof hdr, "HTTP/1.1 500 X\r\nContent-Length: %u\r\n\r\n", 4 * CAP);
        send_all(fd, hdr, strlen(hdr));
        send_zeros(fd, 4 * CAP);
    } else if (strcmp(path, "/ok/big") == 0) {
        /* Announced larger than the cap. */
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 X\r\nContent-Length: %u\r\n\r\n", 10 * CAP);
        send_all(fd, hdr, strlen(hdr));
        send_zeros(fd, 10 * CAP);
    } else if (strcmp(path, "/ok/stream") == 0) {
        /* No length: found too large while streaming. */
        const char *h = "HTTP/1.1 200 X\r\nConnection: close\r\n\r\n";
        send_all(fd, h, strlen(h));
        send_zeros(fd, 3 * CAP);
    } else if (strcmp(path, "/ok/exact") == 0) {
        /* Exactly the cap: allowed. */
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 X\r\nContent-Length: %u\r\n\r\n", CAP);
        send_all(fd, hdr, strlen(hdr));
        send_zeros(fd, CAP);
    } else if (strcmp(path, "/ok/slow") == 0) {
        const char *h = "HTTP/1.1 200 X\r\nContent-Length: 100000\r\n\r\nstarted";
        send_all(fd, h, strlen(h));
        stall(fd);
    } else if (strcmp(path, "/secret") == 0) {
        atomic_fetch_add(&srv.secret_hits, 1);
        respond(fd, 200, "", "the secret");
    } else {
        respond(fd, 404, "", "no such page");
    }
    close(fd);
    atomic_fetch_sub(&srv.conns_open, 1);
    return NULL;
}

static void *
serve(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p = { .fd = srv.lfd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(srv.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_t t;
        atomic_fetch_add(&srv.conns_open, 1);
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            atomic_fetch_sub(&srv.conns_open, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static int
server_start(void **state)
{
    (void)state;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    char err[256];

    if (download_global_init(err, sizeof err) != CG_OK)
        return -1;
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv.lfd < 0 || bind(srv.lfd, (struct sockaddr *)&a, sizeof a) != 0
        || listen(srv.lfd, 64) != 0 || getsockname(srv.lfd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.thread, NULL, serve, NULL) == 0 ? 0 : -1;
}

static int
server_stop(void **state)
{
    (void)state;
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    close(srv.lfd);
    /* Let connection threads (a stalled one polls every 100 ms) finish. */
    for (int i = 0; i < 50 && atomic_load(&srv.conns_open) > 0; i++)
        usleep(50000);
    return 0;
}

/* ---- fetches ----------------------------------------------------------------- */

struct out {
    char path[64];
    int fd;
};

static void
out_open(struct out *o)
{
    snprintf(o->path, sizeof o->path, "/tmp/cg-dl-XXXXXX");
    o->fd = mkstemp(o->path);
    assert_true(o->fd >= 0);
}

static void
out_close(struct out *o)
{
    close(o->fd);
    unlink(o->path);
}

/* The policy the server tests run under: only /ok/ on our server. */
static struct download_policy *
local_policy(bool allow_private, unsigned timeout_s)
{
    char allow[128], err[256];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d/ok/*", srv.port);
    struct download_config cfg = { .allow = allow, .allow_private = allow_private,
                                   .max_bytes = CAP, .timeout_s = timeout_s };
    struct download_policy *p = download_policy_new(&cfg, err, sizeof err);
    assert_non_null(p);
    return p;
}

static int
fetch(const char *path, bool allow_private, struct out *o, struct download_result *res,
      char *err, size_t errlen)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.port, path);
    struct download_policy *p = local_policy(allow_private, 0);
    struct download_request rq = { .url = url, .out_fd = o->fd };
    int rc = download_fetch(p, &rq, res, err, errlen);
    download_policy_destroy(&p);
    return rc;
}

static void
test_fetch_ok(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], body[64], hex[65], url[128];
    unsigned char digest[crypto_hash_sha256_BYTES];

    out_open(&o);
    assert_int_equal(fetch("/ok/hello", true, &o, &res, err, sizeof err), CG_OK);
    assert_null(res.ename);
    assert_int_equal(res.size, strlen(HELLO));
    assert_int_equal(res.http_status, 200);
    assert_string_equal(res.content_type, "text/plain; charset=utf-8");
    crypto_hash_sha256(digest, (const unsigned char *)HELLO, strlen(HELLO));
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    assert_string_equal(res.sha256, hex);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/hello", srv.port);
    assert_string_equal(res.url, url);
    assert_int_equal(pread(o.fd, body, sizeof body, 0), (ssize_t)strlen(HELLO));
    assert_memory_equal(body, HELLO, strlen(HELLO));
    out_close(&o);

    /* An empty body is a file too (the SHA-256 of nothing). */
    out_open(&o);
    assert_int_equal(fetch("/ok/empty", true, &o, &res, err, sizeof err), CG_OK);
    assert_int_equal(res.size, 0);
    assert_string_equal(res.sha256,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(res.content_type, "");
    out_close(&o);

    /* Exactly the cap is allowed. */
    out_open(&o);
    assert_int_equal(fetch("/ok/exact", true, &o, &res, err, sizeof err), CG_OK);
    assert_int_equal(res.size, CAP);
    out_close(&o);
}

static void
test_fetch_redirects(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], url[128];

    /* Absolute, then relative: two hops, both allowed. */
    out_open(&o);
    assert_int_equal(fetch("/ok/redir-abs", true, &o, &res, err, sizeof err), CG_OK);
    assert_int_equal(res.size, strlen(HELLO));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/hello", srv.port);
    assert_string_equal(res.url, url);
    out_close(&o);

    /* To a URL the policy does not allow: refused before it is fetched. */
    const char *outs[] = { "/ok/redir-out", "/ok/redir-up" };
    for (size_t i = 0; i < 2; i++) {
        out_open(&o);
        assert_int_equal(fetch(outs[i], true, &o, &res, err, sizeof err), CG_EREFUSED);
        assert_string_equal(res.ename, DOWNLOAD_E_REFUSED);
        assert_non_null(strstr(err, "redirect from"));
        assert_non_null(strstr(err, "/secret is not allowed"));
        assert_int_equal(res.size, 0);
        assert_string_equal(res.sha256, "");
        out_close(&o);
    }
    assert_int_equal(atomic_load(&srv.secret_hits), 0);

    out_open(&o);
    assert_int_equal(fetch("/ok/redir-ftp", true, &o, &res, err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "only http:// and https://"));
    out_close(&o);

    out_open(&o);
    assert_int_equal(fetch("/ok/loop", true, &o, &res, err, sizeof err), CG_EREMOTE);
    assert_string_equal(res.ename, DOWNLOAD_E_HTTP);
    assert_non_null(strstr(err, "more than 5 redirects"));
    out_close(&o);

    out_open(&o);
    assert_int_equal(fetch("/ok/redir-nowhere", true, &o, &res, err, sizeof err), CG_EREMOTE);
    assert_non_null(strstr(err, "without a usable Location"));
    out_close(&o);
}

static void
test_fetch_http_errors(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024];
    struct stat st;

    out_open(&o);
    assert_int_equal(fetch("/ok/404", true, &o, &res, err, sizeof err), CG_EREMOTE);
    assert_string_equal(res.ename, DOWNLOAD_E_HTTP);
    assert_int_equal(res.http_status, 404);
    assert_non_null(strstr(err, "HTTP 404"));
    assert_int_equal(fstat(o.fd, &st), 0);
    assert_int_equal(st.st_size, 0); /* an error page is not the file */
    out_close(&o);

    out_open(&o);
    assert_int_equal(fetch("/ok/500-big", true, &o, &res, err, sizeof err), CG_EREMOTE);
    assert_non_null(strstr(err, "HTTP 500"));
    out_close(&o);
}

static void
test_fetch_too_large(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], root[] = "/tmp/cg-dlbox-XXXXXX", final[128];
    const char *paths[] = { "/ok/big", "/ok/stream" };

    assert_non_null(mkdtemp(root));
    for (size_t i = 0; i < 2; i++) {
        /* Through an atomic create, as the tool will do it: on failure the
         * temporary file is dropped and nothing is promised. */
        struct boxfs_file *f = NULL;
        const char *ename;
        char cwd[512];
        assert_non_null(getcwd(cwd, sizeof cwd));
        assert_int_equal(chdir(root), 0);
        int rc = boxfs_create_atomic(AT_FDCWD, "big.bin", (uid_t)-1, (gid_t)-1, &f, &ename, err,
                                     sizeof err);
        assert_int_equal(chdir(cwd), 0);
        if (rc != CG_OK && errno == ENOSYS) {
            /* No openat2 (valgrind knows no handler for it): a plain file. */
            out_open(&o);
            assert_int_equal(fetch(paths[i], true, &o, &res, err, sizeof err), CG_ETOOBIG);
            out_close(&o);
        } else {
            assert_int_equal(rc, CG_OK);
            o.fd = boxfs_fd(f);
            assert_int_equal(fetch(paths[i], true, &o, &res, err, sizeof err), CG_ETOOBIG);
            boxfs_abort(&f);
        }
        assert_string_equal(res.ename, DOWNLOAD_E_TOO_LARGE);
        assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_MAX_BYTES"));
        if (i == 0)
            assert_non_null(strstr(err, "is 10485760 bytes"));
        assert_int_equal(res.size, 0);
        assert_string_equal(res.sha256, "");
        snprintf(final, sizeof final, "%s/big.bin", root);
        assert_int_equal(access(final, F_OK), -1);
    }
    assert_int_equal(rmdir(root), 0); /* empty: no temporary file left either */
}

static void
test_fetch_refused_addresses(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], url[128], resolve[128], why[128];
    int before = atomic_load(&srv.requests);

    /* Without CELLGATE_DOWNLOAD_ALLOW_PRIVATE, 127.0.0.1 is not reached. */
    out_open(&o);
    assert_int_equal(fetch("/ok/hello", false, &o, &res, err, sizeof err), CG_EREFUSED);
    assert_string_equal(res.ename, DOWNLOAD_E_REFUSED);
    assert_non_null(strstr(err, "127.0.0.1 is a loopback address; set "
                                "CELLGATE_DOWNLOAD_ALLOW_PRIVATE=1 to allow"));
    out_close(&o);

    /* A name resolving to 10.0.0.1: refused before any socket (the address
     * function says so first, so the fetch below cannot reach it). */
    assert_true(refused("10.0.0.1", false, why, sizeof why));
    snprintf(resolve, sizeof resolve, "internal.test:%d:10.0.0.1", srv.port);
    snprintf(url, sizeof url, "http://internal.test:%d/ok/hello", srv.port);
    char allow[128];
    snprintf(allow, sizeof allow, "http://internal.test:%d/ok/*", srv.port);
    struct download_config cfg = { .allow = allow, .max_bytes = CAP };
    struct download_policy *p = download_policy_new(&cfg, err, sizeof err);
    struct download_request rq = { .url = url, .out_fd = -1, .resolve = resolve };
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "10.0.0.1 is a private address"));
    download_policy_destroy(&p);

    /* A metadata address stays refused with ALLOW_PRIVATE=1. */
    assert_true(refused("169.254.169.254", true, why, sizeof why));
    snprintf(resolve, sizeof resolve, "internal.test:%d:169.254.169.254", srv.port);
    cfg.allow_private = true;
    p = download_policy_new(&cfg, err, sizeof err);
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "169.254.169.254 is a cloud metadata address"));
    assert_null(strstr(err, "to allow"));
    download_policy_destroy(&p);

    assert_int_equal(atomic_load(&srv.requests), before);
}

struct canceller {
    atomic_bool *flag;
    unsigned delay_ms;
};

static void *
cancel_later(void *arg)
{
    struct canceller *c = arg;
    usleep(c->delay_ms * 1000);
    atomic_store(c->flag, true);
    return NULL;
}

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
test_fetch_cancel(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], url[128];
    atomic_bool flag = false;
    struct canceller c = { .flag = &flag, .delay_ms = 300 };
    pthread_t t;

    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/slow", srv.port);
    struct download_policy *p = local_policy(true, 0);
    out_open(&o);
    struct download_request rq = { .url = url, .out_fd = o.fd, .cancel = &flag };
    double t0 = now_s();
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &c), 0);
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_ECANCELED);
    double took = now_s() - t0;
    pthread_join(t, NULL);
    assert_string_equal(res.ename, DOWNLOAD_E_INTERRUPTED);
    assert_int_equal(res.size, 0);
    if (took > 1.5)
        fail_msg("the cancel took %.2f s to stop the download", took);

    /* Set before the start: nothing is fetched. */
    int before = atomic_load(&srv.requests);
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_ECANCELED);
    assert_int_equal(atomic_load(&srv.requests), before);
    download_policy_destroy(&p);
    out_close(&o);
}

static void
test_fetch_timeout(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], url[128];

    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/slow", srv.port);
    struct download_policy *p = local_policy(true, 1);
    out_open(&o);
    struct download_request rq = { .url = url, .out_fd = o.fd };
    double t0 = now_s();
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_ETIMEDOUT);
    double took = now_s() - t0;
    assert_string_equal(res.ename, DOWNLOAD_E_TIMEOUT);
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_TIMEOUT"));
    assert_true(took >= 0.9 && took < 3.0);
    download_policy_destroy(&p);
    out_close(&o);
}

static void
test_fetch_write_error(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024];

    out_open(&o);
    int ro = open(o.path, O_RDONLY);
    int saved = o.fd;
    o.fd = ro;
    assert_int_equal(fetch("/ok/hello", true, &o, &res, err, sizeof err), CG_ESYS);
    assert_string_equal(res.ename, DOWNLOAD_E_FAILED);
    assert_non_null(strstr(err, "writing the download failed"));
    close(ro);
    o.fd = saved;
    out_close(&o);

    /* Nothing listening: a plain failure, not a refusal. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s); /* the port is free now, and nobody listens on it */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    struct download_config cfg = { .allow = "*", .allow_private = true };
    struct download_policy *p = download_policy_new(&cfg, err, sizeof err);
    struct download_request rq = { .url = url, .out_fd = -1 };
    assert_int_equal(download_fetch(p, &rq, &res, err, sizeof err), CG_ESYS);
    assert_string_equal(res.ename, DOWNLOAD_E_FAILED);
    download_policy_destroy(&p);
}

/*
 * CELLGATE_DOWNLOAD_CA_FILE. A file that cannot be read stops every
 * download before any connection; one that holds no certificate stops
 * https (libcurl reads it only for TLS), and never lets the download go
 * ahead unverified. The positive case, a server certificate signed by the
 * operator's CA, is in tests/test_download.py (it needs a TLS server).
 */
static void
test_fetch_ca_file(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], allow[128], url[128], junk[] = "/tmp/cg-ca-XXXXXX";
    int before = atomic_load(&srv.requests);

    unset_policy_env();
    snprintf(allow, sizeof allow, "http*://127.0.0.1:%d/ok/*", srv.port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/hello", srv.port);
    setenv("CELLGATE_DOWNLOAD_ALLOW", allow, 1);
    setenv("CELLGATE_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
    out_open(&o);
    struct download_request rq = { .url = url, .out_fd = o.fd };

    setenv("CELLGATE_DOWNLOAD_CA_FILE", "/nonexistent/cellgate-ca.pem", 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EINVAL);
    assert_string_equal(res.ename, DOWNLOAD_E_CONFIG);
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_CA_FILE names /nonexistent/cellgate-ca.pem"));
    assert_non_null(strstr(err, "cannot be read"));
    setenv("CELLGATE_DOWNLOAD_CA_FILE", "/tmp", 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EINVAL);
    assert_string_equal(res.ename, DOWNLOAD_E_CONFIG);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(atomic_load(&srv.requests), before); /* refused before connecting */

    setenv("CELLGATE_DOWNLOAD_CA_FILE", "", 1); /* empty is unset */
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_OK);

    /* Readable, but no certificate in it: http needs none, https fails. */
    int fd = mkstemp(junk);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    setenv("CELLGATE_DOWNLOAD_CA_FILE", junk, 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_OK);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/ok/hello", srv.port);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EINVAL);
    assert_string_equal(res.ename, DOWNLOAD_E_CONFIG);
    assert_non_null(strstr(err, "CELLGATE_DOWNLOAD_CA_FILE"));
    assert_non_null(strstr(err, junk));
    assert_int_equal(res.size, 0);

    unlink(junk);
    unset_policy_env();
    out_close(&o);
}

static void
test_run_from_env(void **state)
{
    (void)state;
    struct out o;
    struct download_result res;
    char err[1024], url[128], allow[128];

    unset_policy_env();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok/hello", srv.port);
    out_open(&o);
    struct download_request rq = { .url = url, .out_fd = o.fd };
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "downloads are off"));

    snprintf(allow, sizeof allow, "http://127.0.0.1:%d/ok/*", srv.port);
    setenv("CELLGATE_DOWNLOAD_ALLOW", allow, 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_EREFUSED);
    assert_non_null(strstr(err, "loopback"));

    setenv("CELLGATE_DOWNLOAD_ALLOW_PRIVATE", "1", 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_OK);
    assert_int_equal(res.size, strlen(HELLO));

    setenv("CELLGATE_DOWNLOAD_MAX_BYTES", "4", 1);
    assert_int_equal(download_run(&rq, &res, err, sizeof err), CG_ETOOBIG);
    unset_policy_env();
    out_close(&o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_canon),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_seen_parsing),
        cmocka_unit_test(test_policy_default_deny),
        cmocka_unit_test(test_policy_allow_list),
        cmocka_unit_test(test_policy_seen_file),
        cmocka_unit_test(test_policy_env_errors),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_fetch_ok),
        cmocka_unit_test(test_fetch_redirects),
        cmocka_unit_test(test_fetch_http_errors),
        cmocka_unit_test(test_fetch_too_large),
        cmocka_unit_test(test_fetch_refused_addresses),
        cmocka_unit_test(test_fetch_cancel),
        cmocka_unit_test(test_fetch_timeout),
        cmocka_unit_test(test_fetch_write_error),
        cmocka_unit_test(test_fetch_ca_file),
        cmocka_unit_test(test_run_from_env),
    };
    return cmocka_run_group_tests_name("download", tests, server_start, server_stop);
}
