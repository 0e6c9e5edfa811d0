/*
 * test_kernel_args.c - unit tests of `cellgate kernel`'s option table and
 * of finding the connection file in a kernel's arguments (cli/kernel_args.c),
 * which cellgate does before it execs cellgate-kernel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/kernel_args.h"
#include "sandbox/boxlimits.h"

#include <string.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

/* The connection file found in args (NULL-terminated, args[0] the
 * command). The strings are literals: getopt_long may reorder the pointers
 * it is given but never writes to the strings. */
static const char *
found(const char **args)
{
    int argc = 0;

    while (args[argc])
        argc++;
    return kernel_args_connection_file(argc, (char **)args);
}

static void
test_every_spelling(void **state)
{
    (void)state;
    const char *a[] = { "kernel", "-f", "/tmp/a.json", NULL };
    const char *b[] = { "kernel", "-f/tmp/b.json", NULL };
    const char *c[] = { "kernel", "--connection-file", "/tmp/c.json", "--language", "c", NULL };
    const char *d[] = { "kernel", "--language=c", "--connection-file=/tmp/d.json", NULL };
    /* getopt_long takes a unique prefix of a long option */
    const char *e[] = { "kernel", "--conn=/tmp/e.json", NULL };
    const char *f[] = { "kernel", "--connection", "/tmp/f.json", NULL };

    assert_string_equal(found(a), "/tmp/a.json");
    assert_string_equal(found(b), "/tmp/b.json");
    assert_string_equal(found(c), "/tmp/c.json");
    assert_string_equal(found(d), "/tmp/d.json");
    assert_string_equal(found(e), "/tmp/e.json");
    assert_string_equal(found(f), "/tmp/f.json");
}

/* An option's value that looks like -f is that option's value, as
 * cellgate-kernel reads it, not a connection file. */
static void
test_values_are_not_options(void **state)
{
    (void)state;
    const char *a[] = { "kernel", "-l", "-f", "-f", "/tmp/real.json", NULL };
    const char *b[] = { "kernel", "--memory", "-f/tmp/no.json", "-f", "/tmp/yes.json", NULL };
    const char *c[] = { "kernel", "--state-dir", "-f", NULL };

    assert_string_equal(found(a), "/tmp/real.json");
    assert_string_equal(found(b), "/tmp/yes.json");
    assert_null(found(c));
}

static void
test_none_or_invalid(void **state)
{
    (void)state;
    const char *none[] = { "kernel", "--language", "c", NULL };
    const char *after_dashes[] = { "kernel", "--", "-f", "/tmp/x.json", NULL };
    const char *missing[] = { "kernel", "-f", NULL };
    const char *unknown[] = { "kernel", "--no-such-option", "-f", "/tmp/x.json", NULL };
    const char *ambiguous[] = { "kernel", "--co", "-f", "/tmp/x.json", NULL }; /* color? connection? */
    const char *empty[] = { "kernel", NULL };

    assert_null(found(none));
    assert_null(found(after_dashes));
    assert_null(found(missing));
    assert_null(found(unknown));
    assert_null(found(ambiguous));
    assert_null(found(empty));
}

/* The last -f counts, as in cellgate-kernel's own parsing. */
static void
test_last_one_counts(void **state)
{
    (void)state;
    const char *a[] = { "kernel", "-f", "/tmp/1.json", "--connection-file=/tmp/2.json", NULL };

    assert_string_equal(found(a), "/tmp/2.json");
}

/* argv is exec'd afterwards exactly as given: GNU getopt would move the
 * operands to the end of the array it scans. The next parser starts
 * afresh. */
static void
test_argv_kept_and_getopt_reset(void **state)
{
    (void)state;
    const char *a[] = { "kernel", "stray", "-f", "/tmp/a.json", "other", NULL };
    const char *before[ARGC(a) + 1];
    struct option opts[KERNEL_OPTS_MAX];
    int c, seen_f = 0;

    memcpy(before, a, sizeof a);
    assert_string_equal(found(a), "/tmp/a.json");
    assert_memory_equal(a, before, sizeof a);
    assert_string_equal(found(a), "/tmp/a.json");

    kernel_args_table(opts);
    while ((c = getopt_long(ARGC(a), (char **)a, KERNEL_SHORT_OPTS, opts, NULL)) != -1)
        seen_f += c == 'f';
    assert_int_equal(seen_f, 1);
    optind = 0;
}

/* Every box limit is an option, after the fixed ones, and the table ends
 * with getopt_long's zero entry. */
static void
test_table_has_every_limit(void **state)
{
    (void)state;
    struct option opts[KERNEL_OPTS_MAX];
    size_t n_limits, n = 0;
    const struct limit_info *lt = limits_table(&n_limits);

    kernel_args_table(opts);
    while (opts[n].name)
        n++;
    assert_true(n < KERNEL_OPTS_MAX);
    for (size_t i = 0; i < n_limits; i++) {
        int hits = 0;
        for (size_t j = 0; j < n; j++)
            if (strcmp(opts[j].name, lt[i].name) == 0) {
                assert_int_equal(opts[j].val, KOPT_LIMIT + (int)i);
                assert_int_equal(opts[j].has_arg, required_argument);
                hits++;
            }
        assert_int_equal(hits, 1);
    }
    assert_int_equal(opts[n].val, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_spelling),
        cmocka_unit_test(test_values_are_not_options),
        cmocka_unit_test(test_none_or_invalid),
        cmocka_unit_test(test_last_one_counts),
        cmocka_unit_test(test_argv_kept_and_getopt_reset),
        cmocka_unit_test(test_table_has_every_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
