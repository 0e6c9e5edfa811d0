/*
 * kernel.h - the kernel process: the monitor that speaks Jupyter on five
 * ZeroMQ sockets and drives one runtime per language.
 */
#ifndef CG_KERNEL_H
#define CG_KERNEL_H

#include "common/langs.h"
#include "sandbox/boxlimits.h"

#include <stdbool.h>
#include <stddef.h>

#define KERNEL_DEFAULT_OUTPUT_LIMIT (32u << 20) /* bytes of output per cell */

struct kernel_opts {
    const char *connection_file;
    const struct lang *primary;  /* the kernelspec's language */
    size_t output_limit;         /* per-cell output bound in bytes */
    bool color;                  /* ANSI colour in tracebacks */
    bool no_sandbox;             /* run code without the box (operator's choice) */
    const char *state_dir;       /* parent of each kernel's /mnt/data on the host */
    bool keep_data;              /* keep /mnt/data's host directory after shutdown */
    struct box_limits limits;
};

/*
 * Runs a kernel until it is shut down, its parent dies or it gets SIGTERM.
 * Returns a process exit status (0 on a requested shutdown); start-up
 * errors are printed to stderr.
 */
int kernel_run(const struct kernel_opts *opts);

#endif
