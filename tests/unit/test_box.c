/*
 * test_box.c - boxes built one after another and side by side in one
 * process, as a kernel that rebuilds its box does: the seccomp filter is
 * built once per process and handed to each box's init, so every process
 * in every box must still run under it (Seccomp 2, new user namespaces
 * refused), with no_new_privs, no capabilities, an empty bounding set, in
 * a session of its own; a command that cannot be started says why.
 * Skipped, saying why, where this machine cannot build a box.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "sandbox/box.h"
#include "sandbox/boxlimits.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the probe prints: the status lines that matter, its process group
 * and session against its pid, and whether a new user namespace was
 * refused (only the filter refuses it: a user namespace may nest). */
static const char probe[] =
    "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status;"
    "read pid comm state ppid pgrp session rest < /proc/self/stat;"
    "[ \"$pid\" = \"$pgrp\" ] && [ \"$pid\" = \"$session\" ] && echo own-session;"
    "if [ -x /usr/bin/unshare ]; then /usr/bin/unshare -U /bin/true 2>/dev/null "
    "&& echo userns-allowed || echo userns-refused; else echo userns-refused; fi";

struct fixture {
    char dir[64];      /* mkdtemp: the boxes' data directories live below */
    struct box_opts o;
    char data[2][96];
    char name[2][48];
};

static void
exited(void *ctx, pid_t pid, int status)
{
    (void)pid;
    *(int *)ctx = status;
}

/* Runs argv in b with stdout into a pipe; returns what it printed (static
 * buffer) and sets *status, or NULL with err when it could not start. */
static const char *
run_in(struct box *b, const char *const *argv, int *status, char *err, size_t errlen)
{
    static char out[4096];
    static const char *const env[] = { "PATH=/usr/bin:/bin", NULL };
    int p[2];
    pid_t pid;
    size_t got = 0;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct spawn_fd fds[] = { { 0, devnull }, { 1, p[1] }, { 2, devnull } };
    struct spawn_spec spec = { .argv = argv, .envp = env, .fds = fds, .n_fds = 3 };
    struct spawner *sp = box_spawner(b);
    int rc = sp->start(sp, &spec, &pid, err, errlen);
    close(p[1]);
    close(devnull);
    for (ssize_t n; rc == CG_OK && got + 1 < sizeof out
                    && (n = read(p[0], out + got, sizeof out - 1 - got)) > 0;)
        got += (size_t)n;
    close(p[0]);
    out[got] = '\0';
    *status = -1;
    for (int i = 0; rc == CG_OK && *status < 0 && i < 100; i++) {
        struct pollfd pf = { box_fd(b), POLLIN, 0 };
        poll(&pf, 1, 100);
        if (box_events(b, exited, status) != CG_OK)
            break;
    }
    return rc == CG_OK ? out : NULL;
}

static int
setup(void **state)
{
    static struct fixture f;
    char err[512];

    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "/tmp/cellgate-test-box-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    limits_defaults(&f.o.limits);
    f.o.limits.data_size = 0; /* test_data_size.py covers the volume */
    for (int i = 0; i < 2; i++) {
        snprintf(f.data[i], sizeof f.data[i], "%s/data%d", f.dir, i);
        snprintf(f.name[i], sizeof f.name[i], "test-box-%ld-%d", (long)getpid(), i);
    }
    /* Can this machine build a box at all? */
    f.o.data_dir = f.data[0];
    f.o.name = f.name[0];
    struct box *b = box_new(&f.o, err, sizeof err);
    int rc = b ? box_ready(b, err, sizeof err) : CG_ESYS;
    box_destroy(&b);
    if (rc != CG_OK) {
        fprintf(stderr, "test_box: no box on this machine: %s\n", err);
        rmdir(f.dir);
        return -1; /* cmocka skips the group's tests */
    }
    *state = &f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rmdir(f->dir), 0); /* the boxes removed their data directories */
    return 0;
}

/* The probe's output in box b says every wall is up. */
static void
check_walls(struct box *b)
{
    const char *const argv[] = { "/bin/sh", "-c", probe, NULL };
    char err[512];
    int status;
    const char *out = run_in(b, argv, &status, err, sizeof err);

    assert_non_null(out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "Seccomp:\t2\n"));
    assert_non_null(strstr(out, "NoNewPrivs:\t1\n"));
    assert_non_null(strstr(out, "CapEff:\t0000000000000000\n"));
    assert_non_null(strstr(out, "CapBnd:\t0000000000000000\n"));
    assert_non_null(strstr(out, "own-session\n"));
    assert_non_null(strstr(out, "userns-refused\n"));
}

static struct box *
new_box(struct fixture *f, int i)
{
    char err[512];

    f->o.data_dir = f->data[i];
    f->o.name = f->name[i];
    struct box *b = box_new(&f->o, err, sizeof err);
    if (!b || box_ready(b, err, sizeof err) != CG_OK)
        fail_msg("box %d: %s", i, err);
    return b;
}

static void
test_every_box_of_a_process_is_filtered(void **state)
{
    struct fixture *f = *state;

    for (int round = 0; round < 3; round++) { /* one after another */
        struct box *b = new_box(f, 0);
        check_walls(b);
        check_walls(b); /* a second process in the same box */
        box_destroy(&b);
        assert_null(b);
        assert_int_equal(access(f->data[0], F_OK), -1);
    }
}

static void
test_boxes_side_by_side(void **state)
{
    struct fixture *f = *state;
    struct box *a = new_box(f, 0), *b = new_box(f, 1);

    check_walls(b);
    check_walls(a);
    box_destroy(&a);
    check_walls(b); /* b does not depend on a */
    box_destroy(&b);
}

static void
test_start_failure_is_reported(void **state)
{
    struct fixture *f = *state;
    struct box *b = new_box(f, 0);
    const char *const missing[] = { "/nonexistent/program", NULL };
    const char *const ok[] = { "/bin/true", NULL };
    char err[512] = "";
    int status;

    assert_null(run_in(b, missing, &status, err, sizeof err));
    assert_non_null(strstr(err, "exec failed: No such file or directory"));
    assert_non_null(run_in(b, ok, &status, err, sizeof err)); /* init serves on */
    assert_int_equal(status, 0);
    box_destroy(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_box_of_a_process_is_filtered),
        cmocka_unit_test(test_boxes_side_by_side),
        cmocka_unit_test(test_start_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
