/*
 * seccomp_probe.c - shows what the box's seccomp policy does, from inside.
 *
 * It builds and loads the filter into itself, then makes every call of
 * seccomp_calls[] (seccomp_calls.h): the refused calls with harmless bad
 * arguments, and the ordinary things that must keep working (fork,
 * threads, clone, exec, files, mmap), printing one line per call:
 * `name result`, the result being an errno name (`bpf EPERM`) or `ok`. A
 * line that differs from the policy gets `(want X)`. Exits 0 if every line
 * is as expected, 1 if not.
 *
 * `make test` builds and runs it (the unit step) and fails if any line is
 * not as the policy says.
 */
#include "common/cgerr.h"
#include "sandbox/boxseccomp.h"
#include "tests/seccomp_calls.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Prints one line; returns whether it is as expected. */
static bool
report(const char *name, int got, int want)
{
    if (got == want) {
        printf("%s %s\n", name, call_result_name(got));
        return true;
    }
    printf("%s %s (want %s)\n", name, call_result_name(got), call_result_name(want));
    return false;
}

/*
 * The i386 calls run in a child: a kernel without ia32 emulation kills it
 * with SIGSEGV at the first int $0x80, and then they are skipped.
 */
static bool
probe_i386(void)
{
    struct call calls[64];
    int results[64];
    size_t n = 0, got;

    for (size_t i = 0; i < seccomp_calls_n; i++)
        if (seccomp_calls[i].abi == CALL_I386) {
            if (n == sizeof calls / sizeof calls[0])
                return false;
            calls[n++] = seccomp_calls[i];
        }
    if (n == 0)
        return true;
    int status = call_in_child(calls, n, NULL, results, &got);
    if (status == -1)
        return false;
    if (got == 0 && WIFSIGNALED(status) && WTERMSIG(status) != SIGSYS) {
        printf("i386 skipped (no ia32 emulation: %s)\n", strsignal(WTERMSIG(status)));
        return true;
    }
    if (got != n || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("i386 child failed (wait status 0x%x)\n", (unsigned)status);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= report(calls[i].name, results[i], calls[i].want);
    return ok;
}

/* A SIGSYS would mean the policy kills instead of refusing: say so. */
static void
on_sigsys(int sig)
{
    static const char msg[] = "SIGSYS: the filter killed a call instead of refusing it\n";

    (void)sig;
    (void)!write(STDOUT_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

int
main(int argc, char **argv)
{
    struct sock_fprog prog;
    char err[256];
    bool ok = true;

    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: seccomp_probe\n");
        return 2;
    }
    signal(SIGSYS, on_sigsys);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (box_seccomp_build(&prog, err, sizeof err) != CG_OK) {
        fprintf(stderr, "seccomp_probe: %s\n", err);
        return 1;
    }
    if (box_seccomp_load(&prog) < 0) {
        fprintf(stderr, "seccomp_probe: loading the filter: %s\n", strerror(errno));
        return 1;
    }
    free(prog.filter);
    /* Raw calls first, then the i386 ones (in a child), then the checks
     * that take several calls. */
    for (size_t i = 0; i < seccomp_calls_n; i++) {
        const struct call *c = &seccomp_calls[i];
        if (!c->fn && c->abi != CALL_I386)
            ok &= report(c->name, call_make(c), c->want);
    }
    ok &= probe_i386();
    for (size_t i = 0; i < seccomp_calls_n; i++) {
        const struct call *c = &seccomp_calls[i];
        if (c->fn)
            ok &= report(c->name, call_make(c), c->want);
    }
    return ok ? 0 : 1;
}
