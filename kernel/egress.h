/*
 * egress.h - packages-only egress for a kernel's box (DESIGN.md, "Package
 * egress"). The box has no route out; its init takes a port on the box's
 * own loopback (BOX_REGISTRY_PORT) before any code runs, and the kernel
 * hands that listening socket to cellgate-registry, the read-only registry
 * mirror beside the kernel's binary (registry/), which runs on the host
 * with the operator's settings (CELLGATE_REGISTRY_*). Package managers in
 * the box find it through their usual variables (PIP_INDEX_URL,
 * NPM_CONFIG_REGISTRY, ...), which egress_env gives for every process.
 */
#ifndef CG_EGRESS_H
#define CG_EGRESS_H

#include "sandbox/box.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct egress;

/* True unless the operator turned package egress off
 * (CELLGATE_REGISTRIES=none): the box should then take the port. */
bool egress_wanted(void);

/*
 * Egress for the kernel named kernel_id (for the audit log), caching
 * artifacts under cache_dir (shared by the kernels of a host). Nothing
 * runs until egress_start. NULL when out of memory.
 */
struct egress *egress_new(const char *kernel_id, const char *cache_dir);

/* Stops the gateway program (SIGKILL), closes the port; frees and nulls
 * *e. Idempotent. */
void egress_destroy(struct egress **e);

/*
 * Once the box is ready (the caller made sure): takes its registry socket.
 * The gateway program starts when the first connection arrives on it
 * (egress_poll_fd), so a kernel that installs nothing never pays for it.
 * Only the first call does something (later ones return CG_OK). CG_OK, or
 * an error with err filled (the program is missing, or the box has no
 * socket): code still runs, but package managers then fail to connect.
 */
int egress_start(struct egress *e, struct box *box, char *err, size_t errlen);

/* The fd the loop polls for POLLIN while no gateway program runs (a
 * connection waiting means: start it, egress_wake), or -1. */
int egress_poll_fd(const struct egress *e);

/* A connection is waiting on the box's port: starts cellgate-registry on
 * it (it accepts that connection and every later one). */
void egress_wake(struct egress *e);

/* The environment every process in the box gets while egress runs:
 * a NULL-terminated list of "NAME=value" (static storage), or NULL. */
const char *const *egress_env(const struct egress *e);

/* A child of the kernel ended: if it was the gateway program, it is
 * started again by the next connection (a few times at most; the log
 * says so). True if pid was the gateway's. */
bool egress_exited(struct egress *e, pid_t pid, int status);

#endif
