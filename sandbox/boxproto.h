/*
 * boxproto.h - messages between the kernel and the box's init, on a
 * SOCK_SEQPACKET socketpair (one message per datagram, fds as SCM_RIGHTS).
 * Init trusts the kernel; the kernel bounds and checks what init sends.
 * The kernel's first message is LIMITS. A successful READY carries the listening socket of cellgate-display
 * (BOX_DISPLAY_SOCKET), served by the kernel, then, when the box was asked
 * for one, the registry gateway's listening socket (BOX_REGISTRY_PORT on
 * the box's loopback).
 */
#ifndef CG_BOXPROTO_H
#define CG_BOXPROTO_H

#include "sandbox/spawn.h"

#include <stdint.h>

#define BOXMSG_MAX (256 * 1024) /* a spawn request's strings must fit */

enum boxmsg_type {
    BOXMSG_READY = 1,   /* init -> kernel: set-up done (or `error` says why not) */
    BOXMSG_SPAWN,       /* kernel -> init: start a process; fds attached */
    BOXMSG_SPAWNED,     /* init -> kernel: pid, or error/stage */
    BOXMSG_SIGNAL,      /* kernel -> init: sig to the process group of pid */
    BOXMSG_EXITED,      /* init -> kernel: pid ended with status */
    BOXMSG_LIMITS,      /* kernel -> init, first of all: struct boxmsg_limits */
};

/* How the box's limits are enforced, which the kernel knows once it has
 * made the box's cgroups (while init sets up): what each process started
 * must make up for with rlimits. Init reports READY only once it has it. */
struct boxmsg_limits {
    int32_t mem;              /* enum mem_mechanism */
    uint32_t pids_by_cgroup;  /* 1: a pids cgroup counts the box's processes */
};

struct boxmsg {
    uint32_t type;
    int32_t pid;
    int32_t status;           /* EXITED: wait status; SIGNAL: the signal */
    int32_t error;            /* errno of a failure, 0 if none */
    uint32_t n_fds;           /* SPAWN: fds attached, in child_fds order */
    int32_t child_fds[SPAWN_MAX_FDS];
    uint32_t argc, envc;      /* SPAWN: then argv, envp, cwd as NUL-ended strings */
    uint32_t tty;             /* SPAWN: spawn_spec's tty */
    char text[];              /* SPAWN: the strings; READY/SPAWNED: an error message */
};

#endif
