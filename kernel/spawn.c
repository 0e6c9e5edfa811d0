/*
 * spawn.c - start a runtime process (see spawn.h).
 */
#include "spawn.h"

#include "../common/cgerr.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define HIGH_FD 100  /* staging area for dup2 so sources and targets never clash */
#define MAX_FDS 64   /* fds a spec may place */

/* In the child: report errno to the parent and exit. Async-signal-safe. */
static void __attribute__((noreturn))
child_fail(int report_fd, int stage)
{
    int msg[2] = { stage, errno };
    ssize_t w = write(report_fd, msg, sizeof msg);
    (void)w;
    _exit(127);
}

enum { STAGE_PGID = 1, STAGE_FDS, STAGE_CWD, STAGE_EXEC };

static void __attribute__((noreturn))
child_main(const struct spawn_spec *spec, pid_t kernel_pid, int report_fd)
{
    sigset_t none;
    int maxfd = 2;

    if (setpgid(0, 0) < 0)
        child_fail(report_fd, STAGE_PGID);
    /* Die with the kernel, and catch the race where it already died. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != kernel_pid)
        _exit(127);

    /* The kernel blocks signals for its signalfd; the child starts clean. */
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Stage every source above the targets, then place it. The report
     * pipe sits above the staging area (see spawn_start). */
    for (size_t i = 0; i < spec->n_fds; i++)
        if (fcntl(spec->fds[i].parent_fd, F_DUPFD, HIGH_FD + (int)i) != HIGH_FD + (int)i)
            child_fail(report_fd, STAGE_FDS);
    for (size_t i = 0; i < spec->n_fds; i++) {
        if (dup2(HIGH_FD + (int)i, spec->fds[i].child_fd) < 0)
            child_fail(report_fd, STAGE_FDS);
        if (spec->fds[i].child_fd > maxfd)
            maxfd = spec->fds[i].child_fd;
    }
    /* Close every fd that is not a target, except the report pipe. */
    for (int fd = 0; fd <= maxfd; fd++) {
        bool target = false;
        for (size_t i = 0; i < spec->n_fds; i++)
            target = target || spec->fds[i].child_fd == fd;
        if (!target)
            close(fd);
    }
    close_range((unsigned)maxfd + 1, (unsigned)report_fd - 1, 0);
    close_range((unsigned)report_fd + 1, ~0U, 0);

    if (spec->cwd && chdir(spec->cwd) < 0)
        child_fail(report_fd, STAGE_CWD);
    execve(spec->argv[0], (char *const *)spec->argv, (char *const *)spec->envp);
    child_fail(report_fd, STAGE_EXEC);
}

int
spawn_start(const struct spawn_spec *spec, pid_t *pidp, char *err, size_t errlen)
{
    static const char *stages[] = { "", "setpgid", "setting up file descriptors",
                                    "chdir", "exec" };
    int report[2], msg[2];
    pid_t kernel_pid = getpid(), pid;
    ssize_t n;

    if (spec->n_fds > MAX_FDS)
        return cg_fail(err, errlen, CG_ETOOBIG, "too many fds to place");
    if (pipe2(report, O_CLOEXEC) < 0)
        return cg_fail(err, errlen, CG_ESYS, "pipe: %s", strerror(errno));
    /* Keep the report pipe clear of the fds the child needs placed. */
    if (report[1] < HIGH_FD + MAX_FDS) {
        int hi = fcntl(report[1], F_DUPFD_CLOEXEC, HIGH_FD + MAX_FDS);
        if (hi < 0) {
            close(report[0]);
            close(report[1]);
            return cg_fail(err, errlen, CG_ESYS, "fcntl: %s", strerror(errno));
        }
        close(report[1]);
        report[1] = hi;
    }
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        return cg_fail(err, errlen, CG_ESYS, "fork: %s", strerror(e));
    }
    if (pid == 0)
        child_main(spec, kernel_pid, report[1]);

    close(report[1]);
    setpgid(pid, pid); /* also from here, so killpg works before exec */
    do
        n = read(report[0], msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof msg) {
        waitpid(pid, NULL, 0);
        int stage = msg[0] >= 1 && msg[0] <= STAGE_EXEC ? msg[0] : 0;
        return cg_fail(err, errlen, CG_ESYS, "starting %s: %s failed: %s", spec->argv[0],
                       stages[stage], strerror(msg[1]));
    }
    *pidp = pid;
    return CG_OK;
}

int
spawn_signal(pid_t pid, int sig)
{
    return killpg(pid, sig);
}
