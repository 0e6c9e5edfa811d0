/*
 * spawn.h - the one way the kernel starts a runtime process.
 *
 * Today a runtime is an ordinary child in its own process group; the box
 * (sandbox/) will slot in behind this interface without the protocol code
 * changing: callers describe what the child gets (argv, environment,
 * working directory, which of their fds become which child fds) and get
 * back a pid whose process group they may signal.
 */
#ifndef CG_SPAWN_H
#define CG_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Make parent_fd the child's child_fd. */
struct spawn_fd {
    int child_fd;
    int parent_fd;
};

struct spawn_spec {
    const char *const *argv;      /* argv[0] is an absolute path */
    const char *const *envp;      /* the whole environment */
    const char *cwd;              /* working directory, or NULL to keep ours */
    const struct spawn_fd *fds;   /* every other fd is closed in the child */
    size_t n_fds;
};

/*
 * Starts the child described by spec as the leader of a new process group
 * that dies with the kernel (SIGKILL on the kernel's death). Returns CG_OK
 * and sets *pid, or an error with err saying why (including an exec
 * failure in the child, reported back through a close-on-exec pipe).
 */
int spawn_start(const struct spawn_spec *spec, pid_t *pid, char *err, size_t errlen);

/* Sends sig to the child's whole process group. Returns 0 or -1/errno. */
int spawn_signal(pid_t pid, int sig);

#endif
