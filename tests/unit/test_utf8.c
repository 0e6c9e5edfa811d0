/*
 * test_utf8.c - unit tests of UTF-8 cleaning and code-point offsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "common/utf8.h"

#include <string.h>

static void
test_sanitize(void **state)
{
    (void)state;
    char out[64];

    assert_int_equal(utf8_sanitize("h\xc3\xa9!", 4, out), 4);
    assert_string_equal(out, "h\xc3\xa9!");
    utf8_sanitize("a\xff" "b", 3, out);
    assert_string_equal(out, "a\xef\xbf\xbd" "b");
    utf8_sanitize("a\0b", 3, out); /* NUL becomes U+FFFD */
    assert_string_equal(out, "a\xef\xbf\xbd" "b");
    utf8_sanitize("\xc0\xaf", 2, out); /* overlong */
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd");
    utf8_sanitize("\xed\xa0\x80", 3, out); /* surrogate */
    assert_int_equal(strlen(out), 9);
    utf8_sanitize("\xf0\x9f\x98\x80", 4, out); /* emoji stays */
    assert_string_equal(out, "\xf0\x9f\x98\x80");
}

static void
test_complete_prefix(void **state)
{
    (void)state;
    assert_int_equal(utf8_complete_prefix("abc", 3), 3);
    assert_int_equal(utf8_complete_prefix("ab\xc3", 3), 2);
    assert_int_equal(utf8_complete_prefix("a\xf0\x9f\x98", 4), 1);
    assert_int_equal(utf8_complete_prefix("a\xf0\x9f\x98\x80", 5), 5);
    assert_int_equal(utf8_complete_prefix("a\xff", 2), 2); /* invalid, not cut */
}

static void
test_valid(void **state)
{
    (void)state;
    char buf[64];

    memset(buf, 'x', sizeof buf);
    assert_true(utf8_valid(buf, sizeof buf));
    for (size_t pos = 0; pos < 20; pos++) { /* before, inside and after a word */
        memset(buf, 'x', sizeof buf);
        buf[pos] = '\0';
        assert_false(utf8_valid(buf, 24));
        buf[pos] = (char)0xff;
        assert_false(utf8_valid(buf, 24));
        buf[pos] = '\n';
        assert_true(utf8_valid(buf, 24));
    }
    const char *mixed = "h\xc3\xa9llo w\xc3\xb6rld, \xf0\x9f\x98\x80!";
    assert_true(utf8_valid(mixed, strlen(mixed)));
    assert_false(utf8_valid("abcdefg\xc3", 8)); /* cut at the end */
}

static void
test_clean(void **state)
{
    (void)state;
    const char good[] = "caf\xc3\xa9", bad[] = "a\xff" "b";
    size_t n;
    const char *c = utf8_clean(good, 5, &n);

    assert_ptr_equal(c, good); /* valid text is not copied */
    assert_int_equal(n, 5);
    c = utf8_clean(bad, 3, &n);
    assert_ptr_not_equal(c, bad);
    assert_int_equal(n, 5);
    assert_memory_equal(c, "a\xef\xbf\xbd" "b", 5);
    free((char *)c);
}

static void
test_offsets(void **state)
{
    (void)state;
    const char *s = "h\xc3\xa9llo\xf0\x9f\x98\x80!";
    size_t n = strlen(s);

    assert_int_equal(utf8_count(s, n), 7);
    assert_int_equal(utf8_offset(s, n, 2), 3);
    assert_int_equal(utf8_offset(s, n, 6), 10);
    assert_int_equal(utf8_offset(s, n, 99), n);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_complete_prefix),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_clean),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
