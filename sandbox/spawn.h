/*
 * spawn.h - how the kernel starts runtime processes.
 *
 * A spawner is an interface with two implementations: plain child
 * processes (spawn_plain(), for --no-sandbox) and the box (sandbox/box.h),
 * whose init starts processes inside its namespaces. Callers describe what
 * the child gets (argv, environment, working directory, which of their fds
 * become which child fds) and get back a pid, valid for signalling through
 * the same spawner; the child leads its own process group.
 */
#ifndef CG_SPAWN_H
#define CG_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#define SPAWN_MAX_FDS 16

/* Make parent_fd the child's child_fd. */
struct spawn_fd {
    int child_fd;
    int parent_fd;
};

struct spawn_spec {
    const char *const *argv;      /* argv[0] is an absolute path */
    const char *const *envp;      /* the whole environment */
    const char *cwd;              /* working directory, or NULL to keep the spawner's */
    const struct spawn_fd *fds;   /* every other fd is closed in the child */
    size_t n_fds;                 /* at most SPAWN_MAX_FDS */
    int tty;                      /* 1: child fd 0 is a terminal that becomes the
                                     controlling terminal of its new session */
};

struct spawner {
    /* Starts the child; CG_OK and *pid, or an error with err filled. */
    int (*start)(struct spawner *sp, const struct spawn_spec *spec, pid_t *pid, char *err,
                 size_t errlen);
    /* Sends sig to the process group pid leads. 0 or -1 with errno. */
    int (*signal)(struct spawner *sp, pid_t pid, int sig);
};

/* Plain child processes of the kernel: each dies with it (SIGKILL on the
 * kernel's death), the kernel reaps them (SIGCHLD). A static object. */
struct spawner *spawn_plain(void);

/* What a child does between placing its fds and exec, e.g. rlimits and
 * seccomp in the box. Returns 0 or -1 with errno (reported as stage). */
struct spawn_hook {
    int (*fn)(void *arg);
    void *arg;
    const char *stage;   /* names the step in error messages */
};

/*
 * In a freshly forked child: places spec's fds, closes every other fd but
 * report_fd (close-on-exec, must be >= SPAWN_REPORT_FD_MIN), resets signal
 * dispositions and mask, takes fd 0 as controlling terminal if spec->tty
 * (the caller made the child a session leader), changes directory, runs
 * hook (may be NULL) and execs. On failure writes {stage, errno} (two
 * ints) to report_fd and exits 127. Never returns. Async-signal-safe.
 */
#define SPAWN_REPORT_FD_MIN 200
void spawn_exec_child(const struct spawn_spec *spec, int report_fd, const struct spawn_hook *hook)
    __attribute__((noreturn));

/*
 * Starts a child that runs spawn_exec_child(spec, report_fd, hook), first
 * making itself a session leader when session is true. Like posix_spawn,
 * the child shares the caller's memory until it execs (no page tables are
 * copied, which is most of what a fork costs) and the caller waits until
 * it has exec'd or exited; signals are blocked meanwhile. For a
 * single-threaded caller (it has one stack for its children). Returns the
 * child's pid, or -1 with errno.
 */
pid_t spawn_vfork(const struct spawn_spec *spec, int report_fd, const struct spawn_hook *hook,
                  int session);

/*
 * In the parent: waits for the report of a child started with
 * spawn_exec_child (reading report_fd until EOF, then closing it). Returns
 * CG_OK once the exec succeeded, or an error naming the failed step.
 */
int spawn_wait_exec(int report_fd, const struct spawn_spec *spec, const struct spawn_hook *hook,
                    char *err, size_t errlen);

/* Closes every descriptor of this process but 0, 1, 2, a and b (a != b,
 * both > 2): what a process forked without exec (a box's init, a volume's
 * keeper) does first, so nothing its creator had open (a kernel's listening
 * sockets, other boxes' sockets) stays reachable in it. */
void spawn_close_all_but(int a, int b);

/* Creates a close-on-exec pipe whose write end is >= SPAWN_REPORT_FD_MIN. */
int spawn_report_pipe(int fds[2]);

/*
 * SIGKILLs every descendant of this process, whoever its parent is now,
 * and repeats (every 5 ms) until a pass finds none left alive or max_ms
 * passed. Zombies are left for the caller to reap. The caller should be a
 * child subreaper, so a process whose parent died in between comes back
 * to it and is found by the next pass.
 */
void spawn_kill_descendants(int max_ms);

#endif
