/*
 * boxinit.h - the box's init process (boxinit.c), entered by box.c in the
 * child of the namespace-creating clone.
 */
#ifndef CG_BOXINIT_H
#define CG_BOXINIT_H

#include "sandbox/boxlimits.h"

#include <stdbool.h>
#include <stdint.h>

struct boxinit_args {
    int ctl;                  /* SOCK_SEQPACKET to the kernel */
    int sync;                 /* read end: a byte once the id maps are written */
    const char *data_dir;     /* host path bound at /mnt/data */
    uint64_t tmp_bytes;       /* size of /tmp and /dev/shm */
    struct box_limits limits; /* rlimits for every process started (how memory
                               * and pids are limited comes as BOXMSG_LIMITS) */
    bool registry;            /* listen at BOX_REGISTRY_PORT for the registry gateway */
};

/* Runs init: builds the box, reports ready, serves. Never returns. */
void boxinit_main(const struct boxinit_args *a) __attribute__((noreturn));

#endif
