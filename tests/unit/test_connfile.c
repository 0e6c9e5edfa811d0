/*
 * test_connfile.c - unit tests of connection file parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "common/connfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOOD "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4," \
             " \"hb_port\": 5, \"ip\": \"127.0.0.1\", \"key\": \"abc\", \"transport\": \"tcp\"," \
             " \"signature_scheme\": \"hmac-sha256\", \"kernel_name\": \"cellgate\"}"

static void
test_good(void **state)
{
    (void)state;
    connfile_t c;
    char ep[64];

    assert_int_equal(connfile_parse(GOOD, strlen(GOOD), &c, NULL, 0), CG_OK);
    assert_string_equal(c.key, "abc");
    assert_string_equal(c.scheme, "hmac-sha256");
    assert_int_equal(c.ports[CH_CONTROL], 4);
    assert_int_equal(connfile_endpoint(&c, CH_HB, ep, sizeof ep), CG_OK);
    assert_string_equal(ep, "tcp://127.0.0.1:5");
    memcpy(c.transport, "ipc", 4);
    snprintf(c.ip, sizeof c.ip, "/tmp/k");
    assert_int_equal(connfile_endpoint(&c, CH_SHELL, ep, sizeof ep), CG_OK);
    assert_string_equal(ep, "ipc:///tmp/k-1");
    assert_int_equal(connfile_endpoint(&c, CH_SHELL, ep, 4), CG_ETOOBIG);
    connfile_clear(&c);
    connfile_clear(&c); /* idempotent */
}

static void
test_bad(void **state)
{
    (void)state;
    connfile_t c;
    char err[256];
    const char *no_port = "{\"shell_port\": 1}";
    const char *bad_port = "{\"shell_port\": 70000, \"iopub_port\": 2, \"stdin_port\": 3,"
                           " \"control_port\": 4, \"hb_port\": 5}";
    const char *bad_tr = "{\"transport\": \"udp\"}";
    const char *bad_key = "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3,"
                          " \"control_port\": 4, \"hb_port\": 5, \"key\": 7}";

    assert_int_equal(connfile_parse("not json", 8, &c, err, sizeof err), CG_EINVAL);
    assert_int_equal(connfile_parse("[]", 2, &c, err, sizeof err), CG_EINVAL);
    assert_int_equal(connfile_parse(no_port, strlen(no_port), &c, err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "iopub_port"));
    assert_int_equal(connfile_parse(bad_port, strlen(bad_port), &c, err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "shell_port"));
    assert_int_equal(connfile_parse(bad_tr, strlen(bad_tr), &c, err, sizeof err), CG_EUNSUPP);
    assert_non_null(strstr(err, "udp"));
    assert_int_equal(connfile_parse(bad_key, strlen(bad_key), &c, err, sizeof err), CG_EINVAL);
    assert_null(c.key);
}

static void
test_load(void **state)
{
    (void)state;
    char path[] = "/tmp/cg-connfile-XXXXXX";
    int fd = mkstemp(path);
    connfile_t c;
    char err[256];

    assert_true(fd >= 0);
    assert_int_equal(write(fd, GOOD, strlen(GOOD)), (ssize_t)strlen(GOOD));
    close(fd);
    assert_int_equal(connfile_load(path, &c, err, sizeof err), CG_OK);
    assert_int_equal(c.ports[CH_STDIN], 3);
    connfile_clear(&c);
    unlink(path);
    assert_int_equal(connfile_load(path, &c, err, sizeof err), CG_ENOTFOUND);
    assert_non_null(strstr(err, path));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests_name("connfile", tests, NULL, NULL);
}
