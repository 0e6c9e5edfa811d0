/*
 * test_seccomp.c - unit tests of the box's seccomp policy: the filter
 * builds, and a forked child that loads it gets the promised errno from
 * every refused call (through each x86 ABI), while fork, threads, clone,
 * exec, files and memory keep working. Children report through a pipe; a
 * child killed by a signal (SIGSYS) fails the test. The calls and what each
 * must get are the tables of seccomp_calls.h, a test per group.
 *
 * Run as root (as `make` does here) these checks are conclusive: unfiltered,
 * root gets another errno from every refused call. Run as an ordinary user,
 * the kernel itself answers EPERM to many of them (mount, swapon, reboot...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "sandbox/boxseccomp.h"
#include "tests/seccomp_calls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

/* The last call the policy reviewed (Linux 6.7): what comes after is ENOSYS. */
#define NR_FUTEX_REQUEUE 456

#define N(calls) (sizeof(calls) / sizeof((calls)[0]))

/* The filter, built once for the whole group. */
static struct sock_fprog prog;

/* ---- making calls in a child ---------------------------------------------- */

/* Makes calls in a child (filtered or not): see call_in_child(). */
static int
run_in_child(const struct call *calls, size_t n, bool filtered, int *got, size_t *n_got)
{
    int status = call_in_child(calls, n, filtered ? &prog : NULL, got, n_got);

    assert_int_not_equal(status, -1);
    return status;
}

/*
 * valgrind runs system calls itself: it answers the ones it does not know
 * (x32, the new mount API, kexec_file_load...) with ENOSYS, checks pointer
 * arguments before the kernel sees them, and cannot run int $0x80. Under it
 * the filter's answers cannot be seen; its business here is
 * seccomp_build's memory.
 */
static bool
under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

/* Each call, in a filtered child, gives what it promises; the child survives. */
static void
check_calls(const struct call *calls, size_t n)
{
    int got[64];
    size_t n_got;
    int bad = 0;

    if (under_valgrind())
        skip();
    assert_true(n <= N(got));
    int status = run_in_child(calls, n, true, got, &n_got);
    if (WIFSIGNALED(status))
        fail_msg("the filtered child was killed by signal %d (%s) after %zu calls",
                 WTERMSIG(status), strsignal(WTERMSIG(status)), n_got);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(n_got, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != calls[i].want) {
            print_error("%s: got %s, want %s\n", calls[i].name, call_result_name(got[i]),
                        call_result_name(calls[i].want));
            bad++;
        }
    assert_int_equal(bad, 0);
}

/* Every call of a group, from both tables of seccomp_calls.h, in a
 * filtered child. */
static void
check_group(enum call_group group)
{
    struct call calls[64];
    size_t n = 0;

    for (size_t i = 0; i < seccomp_calls_n; i++)
        if (seccomp_calls[i].group == group) {
            assert_true(n < N(calls));
            calls[n++] = seccomp_calls[i];
        }
    for (size_t i = 0; i < seccomp_calls_more_n; i++)
        if (seccomp_calls_more[i].group == group) {
            assert_true(n < N(calls));
            calls[n++] = seccomp_calls_more[i];
        }
    assert_true(n > 0);
    check_calls(calls, n);
}

/* ---- building and loading ------------------------------------------------- */

static int
group_setup(void **state)
{
    char err[256];

    (void)state;
    if (box_seccomp_build(&prog, err, sizeof err) != CG_OK) {
        print_error("seccomp_build: %s\n", err);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    free(prog.filter);
    return 0;
}

static void
test_build(void **state)
{
    struct sock_fprog again;
    char err[256] = "";

    (void)state;
    assert_non_null(prog.filter);
    assert_true(prog.len > 0 && prog.len <= BPF_MAXINSNS);
    /* The prologue comes first and starts by reading the ABI. */
    assert_int_equal(prog.filter[0].code, BPF_LD | BPF_W | BPF_ABS);
    assert_int_equal(prog.filter[0].k, 4);
    /* Building is deterministic: the same table, the same program. */
    assert_int_equal(box_seccomp_build(&again, err, sizeof err), CG_OK);
    assert_string_equal(err, "");
    assert_int_equal(again.len, prog.len);
    assert_memory_equal(again.filter, prog.filter, prog.len * sizeof *prog.filter);
    free(again.filter);
}

/* The program built into cellgate when it was made is what libseccomp
 * makes of the table now (a libseccomp upgraded since: rebuild). */
static void
test_built_in_program_is_the_table(void **state)
{
    const struct sock_fprog *built_in = box_seccomp_prog();

    (void)state;
    assert_int_equal(built_in->len, prog.len);
    assert_memory_equal(built_in->filter, prog.filter, prog.len * sizeof *prog.filter);
}

static void
test_load_rejects_no_program(void **state)
{
    struct sock_fprog empty = { 0, NULL };
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L);

    (void)state;
    errno = 0;
    assert_int_equal(box_seccomp_load(NULL), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(box_seccomp_load(&empty), -1);
    assert_int_equal(errno, EINVAL);
    /* Refused before anything was set. */
    assert_int_equal(prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L), nnp);
}

/* ---- refused calls -------------------------------------------------------- */

static void
test_refuses_kernel_interfaces(void **state)
{
    (void)state;
    check_group(CALLS_KERNEL);
}

static void
test_refuses_mounts(void **state)
{
    (void)state;
    check_group(CALLS_MOUNTS);
}

static void
test_refuses_host_switches(void **state)
{
    (void)state;
    check_group(CALLS_HOST);
}

static void
test_refuses_new_user_namespaces(void **state)
{
    (void)state;
    check_group(CALLS_USERNS);
}

static void
test_io_uring_enosys(void **state)
{
    (void)state;
    check_group(CALLS_IO_URING);
}

static void
test_personality(void **state)
{
    (void)state;
    check_group(CALLS_PERSONALITY);
}

static void
test_terminal_ioctls(void **state)
{
    (void)state;
    check_group(CALLS_IOCTL);
}

static void
test_unreviewed_calls_enosys(void **state)
{
    static const struct call last_reviewed[] = {
        SC(CALLS_UNREVIEWED, "futex_requeue", NR_FUTEX_REQUEUE, 0, 0, 0, 1, 0),
    };
    int filtered, unfiltered;
    size_t n;

    (void)state;
    check_group(CALLS_UNREVIEWED);
    /* The last reviewed call gets whatever the kernel says, filter or not. */
    assert_true(WIFEXITED(run_in_child(last_reviewed, 1, false, &unfiltered, &n)));
    assert_int_equal(n, 1);
    assert_true(WIFEXITED(run_in_child(last_reviewed, 1, true, &filtered, &n)));
    assert_int_equal(n, 1);
    assert_int_equal(filtered, unfiltered);
}

/* ---- other ABIs ------------------------------------------------------------- */

static void
test_x32_abi(void **state)
{
    (void)state;
#if defined(__x86_64__)
    check_group(CALLS_X32);
#else
    skip();
#endif
}

static void
test_i386_abi(void **state)
{
#if defined(__x86_64__)
    static const struct call probe[] = {
        SC_I386("i386:getpid", 20, 0, 0),
    };
    int got;
    size_t n;

    (void)state;
    if (under_valgrind())
        skip();
    /* Without ia32 emulation, int $0x80 is a SIGSEGV: nothing to test. */
    if (!WIFEXITED(run_in_child(probe, 1, false, &got, &n)) || n != 1 || got != 0)
        skip();
    check_group(CALLS_I386);
#else
    (void)state;
    skip();
#endif
}

/* ---- what must keep working --------------------------------------------------- */

static void
test_ordinary_calls_work(void **state)
{
    (void)state;
    check_group(CALLS_ORDINARY);
}

static void
test_children_and_threads_inherit(void **state)
{
    (void)state;
    check_group(CALLS_INHERITED);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_built_in_program_is_the_table),
        cmocka_unit_test(test_load_rejects_no_program),
        cmocka_unit_test(test_refuses_kernel_interfaces),
        cmocka_unit_test(test_refuses_mounts),
        cmocka_unit_test(test_refuses_host_switches),
        cmocka_unit_test(test_refuses_new_user_namespaces),
        cmocka_unit_test(test_io_uring_enosys),
        cmocka_unit_test(test_personality),
        cmocka_unit_test(test_terminal_ioctls),
        cmocka_unit_test(test_unreviewed_calls_enosys),
        cmocka_unit_test(test_x32_abi),
        cmocka_unit_test(test_i386_abi),
        cmocka_unit_test(test_ordinary_calls_work),
        cmocka_unit_test(test_children_and_threads_inherit),
    };
    return cmocka_run_group_tests_name("seccomp", tests, group_setup, group_teardown);
}
