/*
 * spawn.c - starting runtime processes: the code every child runs between
 * fork and exec, and the plain spawner (see spawn.h).
 */
#include "sandbox/spawn.h"

#include "common/cgerr.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STAGING_FD 100 /* sources go here first, so sources and targets never clash */

enum { STAGE_FDS = 1, STAGE_CWD, STAGE_HOOK, STAGE_EXEC, STAGE_SETUP, STAGE_TTY };

/* In the child: report {stage, errno} and exit. Async-signal-safe. */
static void __attribute__((noreturn))
child_fail(int report_fd, int stage)
{
    int msg[2] = { stage, errno };
    ssize_t w = write(report_fd, msg, sizeof msg);
    (void)w;
    _exit(127);
}

void
spawn_exec_child(const struct spawn_spec *spec, int report_fd, const struct spawn_hook *hook)
{
    sigset_t none;
    int maxfd = 2;

    /* The kernel blocks signals for its signalfd; the child starts clean. */
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (spec->n_fds > SPAWN_MAX_FDS)
        child_fail(report_fd, STAGE_FDS);
    for (size_t i = 0; i < spec->n_fds; i++)
        if (fcntl(spec->fds[i].parent_fd, F_DUPFD, STAGING_FD + (int)i) != STAGING_FD + (int)i)
            child_fail(report_fd, STAGE_FDS);
    for (size_t i = 0; i < spec->n_fds; i++) {
        if (dup2(STAGING_FD + (int)i, spec->fds[i].child_fd) < 0)
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

    if (spec->tty && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(report_fd, STAGE_TTY);
    if (spec->cwd && chdir(spec->cwd) < 0)
        child_fail(report_fd, STAGE_CWD);
    if (hook && hook->fn && hook->fn(hook->arg) < 0)
        child_fail(report_fd, STAGE_HOOK);
    execve(spec->argv[0], (char *const *)spec->argv, (char *const *)spec->envp);
    child_fail(report_fd, STAGE_EXEC);
}

/* What a child started by spawn_vfork() is to do. */
struct vfork_args {
    const struct spawn_spec *spec;
    int report_fd;
    const struct spawn_hook *hook;
    int session;
};

static int
vfork_child(void *arg)
{
    const struct vfork_args *a = arg;

    if (a->session)
        setsid();
    spawn_exec_child(a->spec, a->report_fd, a->hook);
}

pid_t
spawn_vfork(const struct spawn_spec *spec, int report_fd, const struct spawn_hook *hook,
            int session)
{
    /* The child's stack: the caller is suspended while the child uses it. */
    static char stack[64 * 1024] __attribute__((aligned(16)));
    struct vfork_args a = { spec, report_fd, hook, session };
    sigset_t all, old;

#ifdef __SANITIZE_ADDRESS__
    /* Frames of the last child, which never returned, left their poison. */
    ASAN_UNPOISON_MEMORY_REGION(stack, sizeof stack);
#endif
    /* No handler of ours may run on the child's side of the shared memory:
     * the child resets every disposition before it unblocks. */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(vfork_child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return pid;
}

void
spawn_close_all_but(int a, int b)
{
    unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);

    if (lo > 3) /* close_range refuses an empty range */
        close_range(3, lo - 1, 0);
    if (hi > lo + 1)
        close_range(lo + 1, hi - 1, 0);
    close_range(hi + 1, ~0U, 0);
}

int
spawn_report_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    int hi = fcntl(fds[1], F_DUPFD_CLOEXEC, SPAWN_REPORT_FD_MIN);
    if (hi < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    close(fds[1]);
    fds[1] = hi;
    return 0;
}

int
spawn_wait_exec(int report_fd, const struct spawn_spec *spec, const struct spawn_hook *hook,
                char *err, size_t errlen)
{
    int msg[2];
    ssize_t n;

    do
        n = read(report_fd, msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(report_fd);
    if (n != (ssize_t)sizeof msg)
        return CG_OK; /* EOF: the exec happened and closed the pipe */
    const char *stage = msg[0] == STAGE_FDS ? "setting up file descriptors"
                        : msg[0] == STAGE_CWD ? "changing to the working directory"
                        : msg[0] == STAGE_HOOK ? (hook && hook->stage ? hook->stage : "set-up")
                        : msg[0] == STAGE_EXEC ? "exec"
                        : msg[0] == STAGE_TTY ? "taking the terminal"
                                               : "set-up";
    return cg_fail(err, errlen, CG_ESYS, "starting %s: %s failed: %s", spec->argv[0], stage,
                   strerror(msg[1]));
}

/* ---- the plain spawner --------------------------------------------------- */

static int
plain_start(struct spawner *sp, const struct spawn_spec *spec, pid_t *pidp, char *err,
            size_t errlen)
{
    int report[2];
    pid_t kernel_pid = getpid(), pid;

    (void)sp;
    if (spawn_report_pipe(report) < 0)
        return cg_fail(err, errlen, CG_ESYS, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        return cg_fail(err, errlen, CG_ESYS, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        if (spec->tty)
            setsid(); /* a terminal needs a session of its own */
        else
            setpgid(0, 0);
        /* Die with the kernel, and catch the race where it already died. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != kernel_pid)
            _exit(127);
        spawn_exec_child(spec, report[1], NULL);
    }
    close(report[1]);
    if (!spec->tty)
        setpgid(pid, pid); /* also from here, so killpg works before exec */
    int rc = spawn_wait_exec(report[0], spec, NULL, err, errlen);
    if (rc != CG_OK) {
        waitpid(pid, NULL, 0);
        return rc;
    }
    *pidp = pid;
    return CG_OK;
}

static int
plain_signal(struct spawner *sp, pid_t pid, int sig)
{
    (void)sp;
    return killpg(pid, sig);
}

struct spawner *
spawn_plain(void)
{
    static struct spawner plain = { .start = plain_start, .signal = plain_signal };
    return &plain;
}

/* ---- ending every descendant -------------------------------------------- */

struct proc_entry {
    pid_t pid, ppid;
    bool doomed;
};

/* The parent of a live process, from /proc/PID/stat; 0 when pid is gone or
 * a zombie. */
static pid_t
parent_of(pid_t pid)
{
    char path[64], buf[512], state;
    long ppid;

    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *rp = strrchr(buf, ')'); /* the comm may contain spaces and ')' */
    if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2 || state == 'Z')
        return 0;
    return (pid_t)ppid;
}

/* Reads every live process's pid and parent into *out; returns how many,
 * or 0 when /proc cannot be read. */
static size_t
read_procs(struct proc_entry **out)
{
    DIR *d = opendir("/proc");
    struct proc_entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;

    *out = NULL;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10), ppid;
        if (pid <= 0 || (ppid = parent_of(pid)) == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct proc_entry *nv = realloc(v, ncap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
            cap = ncap;
        }
        v[n++] = (struct proc_entry){ .pid = pid, .ppid = ppid };
    }
    closedir(d);
    *out = v;
    return n;
}

/* SIGKILLs pid if it is still the child of parent or of root (where it
 * goes when parent dies). Through a pidfd taken before that check, so a
 * pid reused since the scan is never signalled. */
static void
kill_if_below(pid_t pid, pid_t parent, pid_t root)
{
    int fd = pidfd_open(pid, 0);

    if (fd < 0) {
        if (errno == ENOSYS) /* Linux before 5.3: the scan's word must do */
            kill(pid, SIGKILL);
        return;
    }
    pid_t now = parent_of(pid);
    if (now == parent || now == root)
        pidfd_send_signal(fd, SIGKILL, NULL, 0);
    close(fd);
}

/* Marks the descendants of root in v (parents before children need not
 * hold, so it repeats until nothing changes) and SIGKILLs them. Returns how
 * many it signalled. */
static size_t
kill_tree(struct proc_entry *v, size_t n, pid_t root)
{
    size_t killed = 0;
    bool changed = true;

    while (changed) {
        changed = false;
        for (size_t i = 0; i < n; i++) {
            if (v[i].doomed)
                continue;
            bool below = v[i].ppid == root;
            for (size_t j = 0; j < n && !below; j++)
                below = v[j].doomed && v[j].pid == v[i].ppid;
            if (below) {
                v[i].doomed = changed = true;
                kill_if_below(v[i].pid, v[i].ppid, root);
                killed++;
            }
        }
    }
    return killed;
}

void
spawn_kill_descendants(int max_ms)
{
    struct timespec pause = { 0, 5 * 1000 * 1000 };

    for (int waited = 0;; waited += 5) {
        struct proc_entry *v;
        size_t n = read_procs(&v);
        size_t killed = kill_tree(v, n, getpid());
        free(v);
        if (!killed || waited >= max_ms)
            return;
        nanosleep(&pause, NULL);
    }
}
