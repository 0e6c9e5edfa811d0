/*
 * egress.c - packages-only egress for a kernel's box (see egress.h).
 */
#include "kernel/egress.h"

#include "common/cgerr.h"
#include "common/log.h"
#include "common/sibling.h"
#include "sandbox/spawn.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS_MAX 4         /* starts of the program; then the port is closed */

extern char **environ;

struct egress {
    char kernel_id[96];
    char cache_dir[4096];
    int listen_fd;            /* the box's registry port, -1 before egress_start */
    pid_t pid;                /* cellgate-registry, 0 when not running */
    bool started;             /* egress_start ran (once): the box's processes
                                 are pointed at the port */
    unsigned runs;            /* times the program was started */
};

/* What package managers in the box read. pip installs into the user site
 * under /mnt/data (Debian's Python is externally managed and /usr is
 * read-only in the box); npm's caches stay in /tmp; audit and fund ask
 * with POSTs, which a read-only mirror answers 405. */
static const char *const box_env[] = {
    "PIP_INDEX_URL=" BOX_REGISTRY_URL "/pypi/simple/",
    "UV_INDEX_URL=" BOX_REGISTRY_URL "/pypi/simple/",
    "UV_DEFAULT_INDEX=" BOX_REGISTRY_URL "/pypi/simple/",
    "PIP_USER=1",
    "PIP_BREAK_SYSTEM_PACKAGES=1",
    "PIP_DISABLE_PIP_VERSION_CHECK=1",
    "PIP_NO_INPUT=1",
    "NPM_CONFIG_REGISTRY=" BOX_REGISTRY_URL "/npm/",
    "NPM_CONFIG_CACHE=/tmp/.npm",
    "NPM_CONFIG_AUDIT=false",
    "NPM_CONFIG_FUND=false",
    "NPM_CONFIG_UPDATE_NOTIFIER=false",
    "NODE_PATH=" BOX_HOME "/node_modules",
    NULL,
};

bool
egress_wanted(void)
{
    const char *on = getenv("CELLGATE_REGISTRIES");

    return !on || strcmp(on, "none") != 0;
}

struct egress *
egress_new(const char *kernel_id, const char *cache_dir)
{
    struct egress *e = calloc(1, sizeof *e);

    if (!e)
        return NULL;
    snprintf(e->kernel_id, sizeof e->kernel_id, "%s", kernel_id);
    snprintf(e->cache_dir, sizeof e->cache_dir, "%s", cache_dir);
    e->listen_fd = -1;
    return e;
}

void
egress_destroy(struct egress **ep)
{
    if (!ep || !*ep)
        return;
    struct egress *e = *ep;
    if (e->pid > 0)
        kill(e->pid, SIGKILL); /* reaped by the kernel */
    if (e->listen_fd >= 0)
        close(e->listen_fd);
    free(e);
    *ep = NULL;
}

/* Starts cellgate-registry on the box's port: fd 3 the listening socket,
 * stderr the kernel's (its audit lines join the kernel's log). */
static int
run_gateway(struct egress *e, char *err, size_t errlen)
{
    char prog[4200], fd_arg[16];

    if (sibling_find("cellgate-registry", prog, sizeof prog) != CG_OK)
        return cg_fail(err, errlen, CG_ENOTFOUND, "cellgate-registry is missing beside the "
                       "kernel's binary (%s)", prog);
    snprintf(fd_arg, sizeof fd_arg, "%d", 3);
    const char *argv[] = { prog, "--listen-fd", fd_arg, "--base", BOX_REGISTRY_URL,
                           "--cache", e->cache_dir, "--kernel", e->kernel_id, NULL };
    struct spawn_fd fds[] = { { 3, e->listen_fd }, { 2, STDERR_FILENO } };
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)environ,
                               .fds = fds, .n_fds = 2 };
    return spawn_plain()->start(spawn_plain(), &spec, &e->pid, err, errlen);
}

/* No gateway will serve the port: close it, so that package managers get
 * "connection refused" at once instead of waiting on a socket nobody
 * accepts on. */
static void
give_up(struct egress *e)
{
    if (e->listen_fd >= 0)
        close(e->listen_fd);
    e->listen_fd = -1;
}

int
egress_start(struct egress *e, struct box *box, char *err, size_t errlen)
{
    if (e->started)
        return CG_OK;
    e->started = true;
    /* The kernel keeps the socket too: the port stays taken even if the
     * program dies, and it can be started again on it. */
    e->listen_fd = box_take_registry_fd(box);
    if (e->listen_fd < 0)
        return cg_fail(err, errlen, CG_ENOTFOUND, "the box has no registry port");
    char prog[4200];
    if (sibling_find("cellgate-registry", prog, sizeof prog) != CG_OK) {
        give_up(e);
        return cg_fail(err, errlen, CG_ENOTFOUND, "cellgate-registry is missing beside the "
                       "kernel's binary (%s)", prog);
    }
    return CG_OK;
}

int
egress_poll_fd(const struct egress *e)
{
    return e && e->started && e->pid <= 0 ? e->listen_fd : -1;
}

void
egress_wake(struct egress *e)
{
    char err[512];

    if (egress_poll_fd(e) < 0)
        return;
    if (e->runs >= RUNS_MAX) {
        log_error("the registry gateway ended %u times: not started again; package installs "
                  "in the box fail from now on", e->runs);
        give_up(e);
        return;
    }
    e->runs++;
    if (run_gateway(e, err, sizeof err) != CG_OK) {
        log_error("%s: package installs in the box will fail", err);
        give_up(e);
        return;
    }
    log_info("registry gateway at %s in the box (pid %ld)", BOX_REGISTRY_URL, (long)e->pid);
}

const char *const *
egress_env(const struct egress *e)
{
    return e && e->started ? box_env : NULL;
}

bool
egress_exited(struct egress *e, pid_t pid, int status)
{
    if (!e || pid != e->pid || pid <= 0)
        return false;
    e->pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
        log_error("the registry gateway refused its settings (see above): package installs "
                  "in the box will fail");
        give_up(e);
        return true;
    }
    log_warn("the registry gateway ended (status %d): the next connection starts it again",
             status);
    return true;
}
