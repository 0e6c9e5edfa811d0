/*
 * kernels.h - the kernels a gateway runs: each a `cellgate kernel -f FILE`
 * process started from a kernelspec's argv with a connection file the
 * gateway writes (ipc sockets in the gateway's private directory, a fresh
 * random key per process), and the ZeroMQ sockets the gateway speaks to
 * it through common/wire.h, like any Jupyter client. Messages from a
 * kernel leave this module through the sink it was handed, never by a
 * call upward.
 */
#ifndef CG_GW_KERNELS_H
#define CG_GW_KERNELS_H

#include "common/wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

struct kernels;
struct kernel;

/* Where messages from kernels go (the channels module). */
struct kernels_sink {
    /* A message from kernel k on channel ("iopub", "shell", "stdin",
     * "control"); m is borrowed for the call. Must not start or delete
     * kernels. */
    void (*on_msg)(void *ctx, struct kernel *k, const char *channel, const wire_msg_t *m);
    /* Kernel k was re-adopted from the state directory (kernels_persist),
     * before anything it sends is passed on. May be NULL. */
    void (*on_adopted)(void *ctx, struct kernel *k);
    void *ctx;
};

/* Seconds a kernel has to exit after its shutdown_request before SIGKILL. */
#define KERNELS_GRACE_S 3.0
/* Automatic restarts of a kernel whose process died (the default of
 * kernels_set_restart_limit), as jupyter_client's KernelRestarter: each
 * restart within KERNELS_STABLE_S of the previous one counts towards it. */
#define KERNELS_RESTART_LIMIT 5
#define KERNELS_STABLE_S 10.0
/* Most sockets kernels_pollitems() fills per kernel. */
#define KERNELS_ITEMS_PER_KERNEL 4

/*
 * A kernel table. zctx: the ZeroMQ context; rundir: a private directory
 * (0700) for connection files and ipc sockets, under 80 characters (ipc
 * paths must fit a socket address). Returns NULL on no memory or a longer
 * rundir.
 */
struct kernels *kernels_new(void *zctx, const char *rundir, struct kernels_sink sink);

/* Shuts every kernel down (shutdown_request, then SIGKILL after the
 * grace), waits for them, removes their models from the state directory,
 * frees the table and nulls *ks. Idempotent. */
void kernels_destroy(struct kernels **ks);

/* Frees the table and nulls *ks but leaves the kernels running, their
 * models kept for the next gateway's kernels_persist() (pooled ones are
 * shut down). Idempotent. */
void kernels_release(struct kernels **ks);

/*
 * Keeps each kernel's model in statedir (a private directory): one file
 * <id>.json (0600, written whole and renamed) with its id, kernelspec,
 * kernel.json, env, connection (with its key), pid and the process's start
 * time, saved when a process starts, removed when the kernel is deleted.
 * First re-adopts the kernels whose models are there and whose process is
 * still the one saved (same pid and start time): their sockets are
 * connected again and they are asked kernel_info; models of processes
 * gone are removed. Kernels started by the gateway outlive it (kernel.c
 * parent_gone: CELLGATE_OUTLIVE_PARENT=1 in their environment); adopted
 * ones are not its children, /proc tells when one dies. Returns how many
 * were re-adopted.
 */
size_t kernels_persist(struct kernels *ks, const char *statedir);

/* Sets how many times in a row a kernel whose process died is restarted
 * (0: never; a dead kernel's clients get status "dead" with a reason). */
void kernels_set_restart_limit(struct kernels *ks, unsigned limit);

/*
 * Starts a kernel of kernelspec name whose kernel.json is spec (borrowed;
 * its argv and env are used). env (borrowed, may be NULL): the request's
 * variables; only KERNEL_* ones reach the process. On CG_OK *out is the new
 * kernel (owned by the table), starting. Otherwise err says why.
 */
int kernels_start(struct kernels *ks, const char *name, const json_t *spec, const json_t *env,
                  struct kernel **out, char *err, size_t errlen);

/* A kernel to cull: not busy, no message either way for idle_s seconds,
 * and no client connected unless connected is true. NULL when none. */
struct kernel *kernels_idle(struct kernels *ks, double idle_s, bool connected);

/* How many kernels the table holds (pooled ones not counted). */
size_t kernels_count(const struct kernels *ks);

/*
 * Keeps size kernels of kernelspec name (kernel.json spec, copied) started
 * and ready, unseen by the API until kernels_take() hands one out; kept
 * full by kernels_tick(). CG_OK, CG_ETOOBIG (too many pools) or CG_ENOMEM.
 */
int kernels_pool(struct kernels *ks, const char *name, const json_t *spec, size_t size);

/* A ready pooled kernel of kernelspec name, now an ordinary kernel, or NULL
 * (none ready, or env has KERNEL_* variables, which only a new process can
 * get). */
struct kernel *kernels_take(struct kernels *ks, const char *name, const json_t *env);

/* The kernel with that id, or NULL. */
struct kernel *kernels_find(struct kernels *ks, const char *id);

/* GET /api/kernels: the models of every kernel (a new reference). */
json_t *kernels_list_json(const struct kernels *ks);

/* A kernel's model {"id", "name", "last_activity", "execution_state",
 * "connections"} (a new reference, NULL on no memory). */
json_t *kernel_model_json(const struct kernel *k);

/* The kernel's id: a uuid4 as 36 characters, 8-4-4-4-12. */
#define KERNEL_ID_MAX 37 /* with the NUL */
const char *kernel_id(const struct kernel *k);

/* True once the kernel answered the gateway's kernel_info_request and
 * something it published reached the gateway (its iopub is subscribed). */
bool kernel_ready(const struct kernel *k);

/* True once the kernel's process exited on its own (state "dead"). */
bool kernel_dead(const struct kernel *k);

/* Counts a client connection opened (+1) or closed (-1) for the model. */
void kernel_add_connection(struct kernel *k, int delta);

/*
 * Sends m (borrowed) to the kernel on channel "shell", "control" or
 * "stdin", signed with the kernel's key. Never blocks. Returns CG_OK,
 * CG_EINVAL (no such channel) or CG_ESYS (errno EAGAIN: the kernel is not
 * taking messages and ZeroMQ's high-water mark is reached; nothing sent).
 */
int kernel_send(struct kernel *k, const char *channel, const wire_msg_t *m);

/* Interrupts the running cell: an interrupt_request on control (the
 * kernelspecs use interrupt_mode "message"), SIGINT otherwise. */
int kernel_interrupt(struct kernel *k);

/*
 * Restarts the kernel: the old process is shut down (in the background),
 * a new one started with the same kernelspec and env and a new connection
 * file; clients get an iopub status "restarting" through the sink. The
 * kernel keeps its id. CG_OK or an error with err filled.
 */
int kernel_restart(struct kernel *k, char *err, size_t errlen);

/* Shuts the kernel down in the background (shutdown_request on control,
 * SIGKILL after the grace) and frees it; *k is nulled. */
void kernels_delete(struct kernels *ks, struct kernel **k);

/* Fills items with the sockets to poll (at most max, which should be
 * KERNELS_ITEMS_PER_KERNEL per kernel); returns how many. */
size_t kernels_pollitems(const struct kernels *ks, zmq_pollitem_t *items, size_t max);

/* Handles the n items kernels_pollitems() filled, after zmq_poll: receives
 * and passes on what is readable. Kernels must not have been added or
 * deleted in between. */
void kernels_handle(struct kernels *ks, const zmq_pollitem_t *items, size_t n);

/*
 * Periodic work: reaps exited processes, SIGKILLs those past their grace,
 * keeps the pools full. A kernel whose process died is restarted under the
 * same id (clients get status "restarting", then its new process's
 * statuses), unless it never answered or the restart limit was reached:
 * then it is "dead" and its clients get status "dead" with a "reason"
 * (also in its model) until a kernel_restart().
 */
void kernels_tick(struct kernels *ks);

#endif
