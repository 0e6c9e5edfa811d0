/*
 * box.h - the box: one sandbox per kernel, in which all of its runtimes run.
 *
 * The kernel creates the box's init process in new user, pid, mount,
 * network, IPC and UTS namespaces. Init builds the box's filesystem (a
 * read-only view of the system's toolchains, a writable /mnt/data, a
 * private /tmp, a minimal /dev, its own /proc), brings up loopback, then
 * serves the kernel over one socketpair: start a process (with fds passed
 * along), signal a process group, and report exits. Code in the box runs
 * as uid 1000 without capabilities, with no_new_privs, the seccomp policy
 * and the limits. When init goes, the pid namespace goes with everything
 * in it.
 */
#ifndef CG_BOX_H
#define CG_BOX_H

#include "sandbox/boxlimits.h"
#include "sandbox/boxpaths.h"
#include "sandbox/spawn.h"

#include <stdbool.h>
#include <sys/types.h>


struct boxfs_volume;

struct box_opts {
    const char *data_dir;      /* host directory seen as /mnt/data (created if missing) */
    struct boxfs_volume *volume; /* what bounded data_dir for a box that ended
                                  * (box_take_volume), taken over by box_new even
                                  * when it fails; NULL: a new one */
    bool keep_data;            /* keep data_dir after the box is destroyed */
    const char *name;          /* for the cgroup and logs, e.g. "kernel-<id>" */
    bool registry;             /* init listens at BOX_REGISTRY_PORT (box_take_registry_fd) */
    struct box_limits limits;
};

struct box;

/*
 * Starts a box: its init is cloned into the new namespaces and builds the
 * box while the caller goes on (box_ready() waits for it; the first spawn
 * does too). Init is forked without exec: it runs with only the calling
 * thread, and uses nothing another thread of the caller may hold locked
 * (glibc makes malloc and stdio safe across fork), so a kernel that
 * already runs threads may build a fresh box. Returns NULL with err saying what the machine
 * refused (user namespaces disabled, EPERM, ENOSPC, ...).
 */
struct box *box_new(const struct box_opts *opts, char *err, size_t errlen);

/*
 * Finishes what box_new() started: puts init in the box's cgroup and waits
 * (bounded) until it reports its set-up done. Returns CG_OK, or an error
 * saying which step of the set-up failed (a mount, the filter, ...).
 */
int box_ready(struct box *b, char *err, size_t errlen);

/* Takes what bounds b's /mnt/data out of b (NULL when nothing does), for
 * box_opts.volume of the box built after b ended; b's data directory is
 * then kept when b is destroyed. */
struct boxfs_volume *box_take_volume(struct box *b);

/* Kills everything in the box, reaps init, removes the cgroup and (unless
 * keep_data) the data directory; frees and nulls *b. Idempotent. */
void box_destroy(struct box **b);

/* The box as a spawner: pids it returns are pids inside the box. */
struct spawner *box_spawner(struct box *b);

/* An fd to poll for box events (process exits, init's death). */
int box_fd(const struct box *b);

/*
 * Handles pending events: calls exited(ctx, pid, status) for each process
 * started in the box that ended (status as from waitpid). Returns CG_OK,
 * or CG_ESYS once init is gone (every process in the box is dead then).
 */
int box_events(struct box *b, void (*exited)(void *ctx, pid_t pid, int status), void *ctx);

/*
 * The listening socket (AF_UNIX, SOCK_SEQPACKET, close-on-exec) bound at
 * BOX_DISPLAY_SOCKET inside, which init hands over once its set-up is done:
 * returns it, the caller owns it from then on; -1 before that (or when
 * taken already).
 */
int box_take_display_fd(struct box *b);

/*
 * The listening TCP socket (close-on-exec) init bound at
 * 127.0.0.1:BOX_REGISTRY_PORT inside the box's network namespace, before
 * any code ran, when box_opts.registry asked for it: handed over once
 * its set-up is done; the caller owns it from then on. -1 before that,
 * without one, or when taken already.
 */
int box_take_registry_fd(struct box *b);

/* The host pid of the box's init (a child of the caller). */
pid_t box_init_pid(const struct box *b);

/* The memory-limit mechanism in force, and OOM kills so far. */
enum mem_mechanism box_mem_mechanism(const struct box *b);
uint64_t box_oom_kills(const struct box *b);

/* Forks refused at the box's pids limit so far, and whether that count
 * exists (a pids cgroup; with RLIMIT_NPROC it does not). */
uint64_t box_pids_hits(const struct box *b);
bool box_pids_counted(const struct box *b);

/* Keeps the data directory when the box is destroyed (its init died and a
 * fresh box will take the same /mnt/data). */
void box_keep_data(struct box *b);

/* The box's limits (as given). */
const struct box_limits *box_limits(const struct box *b);

#endif
