/*
 * test_buf.c - unit tests of the growable byte buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/buf.h"
#include "common/cgerr.h"

static void
test_add_keeps_a_c_string(void **state)
{
    (void)state;
    struct buf b = { 0 };

    assert_int_equal(buf_add(&b, "ab", 2), CG_OK);
    assert_int_equal(buf_add(&b, "", 0), CG_OK);
    assert_int_equal(buf_add(&b, "cd", 2), CG_OK);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "abcd");
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len + b.cap, 0);
}

static void
test_grows_past_its_first_size(void **state)
{
    (void)state;
    struct buf b = { 0 };
    char big[10000];

    memset(big, 'x', sizeof big);
    assert_int_equal(buf_add(&b, "y", 1), CG_OK);
    assert_int_equal(buf_add(&b, big, sizeof big), CG_OK);
    assert_true(b.cap >= sizeof big + 2);
    assert_int_equal(b.len, sizeof big + 1);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[b.len - 1], 'x');
    size_t cap = b.cap;
    assert_int_equal(buf_reserve(&b, 1), CG_OK); /* room already there: no growth */
    assert_int_equal(b.cap, cap);
    buf_free(&b);
}

static void
test_consume_drops_the_front(void **state)
{
    (void)state;
    struct buf b = { 0 };

    buf_consume(&b, 0); /* on an empty buffer: nothing happens */
    assert_int_equal(buf_add(&b, "hello world", 11), CG_OK);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "world");
    buf_consume(&b, 5);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_keeps_a_c_string),
        cmocka_unit_test(test_grows_past_its_first_size),
        cmocka_unit_test(test_consume_drops_the_front),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
