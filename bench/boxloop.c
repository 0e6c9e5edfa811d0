/*
 * boxloop.c - the box's cost inside one process: creates a box, runs
 * /bin/true in it, waits for its exit and removes the box, ROUNDS times,
 * and prints the median of each step and of the whole. What a kernel or
 * gateway pays per box, without the start-up of a program around it
 * (bench/boxbench.py prints it beside bubblewrap's whole-process figure).
 * Limits come from the CELLGATE_* variables, as for `cellgate box`.
 *
 *   build/bench/boxloop [-r] [ROUNDS [STATE_DIR]]
 *
 * Output: one line per step, "step median_ms p90_ms", the last "total";
 * with -r first "round ms" for every round's total.
 */
#include "common/cgerr.h"
#include "common/clock.h"
#include "sandbox/box.h"
#include "sandbox/boxlimits.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ROUNDS 10000

enum { NEW, READY, SPAWN, EXIT, DESTROY, TOTAL, N_STEPS };

static const char *const step_names[N_STEPS] = {
    "box_new", "box_ready", "spawn /bin/true", "its exit", "box_destroy", "total",
};

static void
exited(void *ctx, pid_t pid, int status)
{
    (void)pid;
    *(int *)ctx = status;
}

/* One round: fills t[] with each step's seconds. Returns 0, or -1 with a
 * message on stderr. */
static int
one_round(const struct box_opts *o, int devnull, double t[N_STEPS])
{
    static const char *const argv[] = { "/bin/true", NULL };
    static const char *const env[] = { "PATH=/usr/bin:/bin", NULL };
    struct spawn_fd fds[] = { { 0, devnull }, { 1, devnull }, { 2, devnull } };
    struct spawn_spec spec = { .argv = argv, .envp = env, .fds = fds, .n_fds = 3 };
    char err[512];
    int status = -1, rc = -1;
    pid_t pid;
    double t0 = clock_now(), t1;

    struct box *b = box_new(o, err, sizeof err);
    t[NEW] = (t1 = clock_now()) - t0;
    if (!b)
        goto out;
    if (box_ready(b, err, sizeof err) != CG_OK)
        goto out;
    t[READY] = clock_now() - t1;
    t1 = clock_now();
    struct spawner *sp = box_spawner(b);
    if (sp->start(sp, &spec, &pid, err, sizeof err) != CG_OK)
        goto out;
    t[SPAWN] = clock_now() - t1;
    t1 = clock_now();
    while (status < 0) {
        struct pollfd p = { box_fd(b), POLLIN, 0 };
        if (poll(&p, 1, 10000) <= 0 || (box_events(b, exited, &status) != CG_OK && status < 0)) {
            snprintf(err, sizeof err, "no exit reported");
            goto out;
        }
    }
    t[EXIT] = clock_now() - t1;
    rc = status == 0 ? 0 : -1;
    if (rc)
        snprintf(err, sizeof err, "/bin/true ended with status %d", status);
out:
    t1 = clock_now();
    box_destroy(&b);
    t[DESTROY] = clock_now() - t1;
    t[TOTAL] = clock_now() - t0;
    if (rc)
        fprintf(stderr, "boxloop: %s\n", err);
    return rc;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    bool raw = argc > 1 && strcmp(argv[1], "-r") == 0;
    int rounds = argc > 1 + raw ? (int)strtol(argv[1 + raw], NULL, 10) : 50;
    const char *state = argc > 2 + raw ? argv[2 + raw] : "/tmp";
    static double t[N_STEPS][MAX_ROUNDS];
    char data[4096], name[64], err[512];
    struct box_opts o = { .data_dir = data, .name = name };
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (rounds < 1 || rounds > MAX_ROUNDS || devnull < 0) {
        fprintf(stderr, "usage: boxloop [-r] [ROUNDS (1..%d) [STATE_DIR]]\n", MAX_ROUNDS);
        return 2;
    }
    limits_defaults(&o.limits);
    if (limits_from_env(&o.limits, err, sizeof err) != CG_OK) {
        fprintf(stderr, "boxloop: %s\n", err);
        return 2;
    }
    for (int r = -1; r < rounds; r++) { /* round -1 warms caches */
        double one[N_STEPS] = { 0 };
        snprintf(data, sizeof data, "%s/boxloop-%ld-%d", state, (long)getpid(), r + 1);
        snprintf(name, sizeof name, "boxloop-%ld-%d", (long)getpid(), r + 1);
        if (one_round(&o, devnull, one) != 0)
            return 1;
        for (int s = 0; r >= 0 && s < N_STEPS; s++)
            t[s][r] = one[s];
    }
    for (int r = 0; raw && r < rounds; r++)
        printf("round %.3f\n", 1000 * t[TOTAL][r]);
    for (int s = 0; s < N_STEPS; s++) {
        qsort(t[s], (size_t)rounds, sizeof t[s][0], cmp_double);
        printf("%-16s %8.2f %8.2f\n", step_names[s], 1000 * t[s][rounds / 2],
               1000 * t[s][(rounds - 1) * 9 / 10]);
    }
    return 0;
}
