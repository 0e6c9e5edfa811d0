/*
 * test_history.c - unit tests of history_request answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernel/history.h"

static json_t *
query(struct history *h, const char *req_json)
{
    json_t *req = json_loads(req_json, 0, NULL);
    json_t *r = history_query(h, req);
    json_decref(req);
    return r;
}

static void
test_queries(void **state)
{
    (void)state;
    struct history *h = history_new();
    json_t *r;

    history_add(h, 1, "a = 1", NULL);
    history_add(h, 2, "1+1", "2");
    history_add(h, 3, "print(a)", NULL);
    history_add(h, 4, "1+1", "2");

    r = query(h, "{\"hist_access_type\":\"tail\",\"n\":2,\"output\":false}");
    assert_int_equal(json_array_size(r), 2);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 1)), 3);
    json_decref(r);

    r = query(h, "{\"hist_access_type\":\"tail\",\"n\":1,\"output\":true}");
    json_t *pair = json_array_get(json_array_get(r, 0), 2);
    assert_string_equal(json_string_value(json_array_get(pair, 1)), "2");
    json_decref(r);

    r = query(h, "{\"hist_access_type\":\"range\",\"session\":1,\"start\":2,\"stop\":3}");
    assert_int_equal(json_array_size(r), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(r, 0), 2)), "1+1");
    json_decref(r);

    r = query(h, "{\"hist_access_type\":\"range\",\"session\":7,\"start\":1,\"stop\":9}");
    assert_int_equal(json_array_size(r), 0); /* an unknown session */
    json_decref(r);

    r = query(h, "{\"hist_access_type\":\"search\",\"pattern\":\"1?1\"}");
    assert_int_equal(json_array_size(r), 2);
    json_decref(r);
    r = query(h, "{\"hist_access_type\":\"search\",\"pattern\":\"1?1\",\"unique\":true}");
    assert_int_equal(json_array_size(r), 1);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 1)), 4);
    json_decref(r);
    r = query(h, "{\"hist_access_type\":\"search\",\"pattern\":\"*\",\"n\":3}");
    assert_int_equal(json_array_size(r), 3);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 2), 1)), 4);
    json_decref(r);

    r = query(h, "{\"hist_access_type\":\"bogus\"}");
    assert_int_equal(json_array_size(r), 0);
    json_decref(r);
    history_destroy(&h);
    assert_null(h);
}

static void
test_bounded(void **state)
{
    (void)state;
    struct history *h = history_new();
    for (int i = 1; i <= HISTORY_MAX + 5; i++)
        history_add(h, i, "x", NULL);
    json_t *r = query(h, "{\"hist_access_type\":\"tail\",\"n\":0}");
    assert_int_equal(json_array_size(r), HISTORY_MAX);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 1)), 6);
    json_decref(r);
    history_destroy(&h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests_name("history", tests, NULL, NULL);
}
