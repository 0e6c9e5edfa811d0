/*
 * heavy_exec.c - `cellgate kernel` and `cellgate doctor` in the cellgate
 * program: exec cellgate-kernel beside it, which runs them (heavy.h).
 * The process (its pid, what Jupyter signals) stays the same.
 */
#include "cli/heavy.h"

#include "common/sibling.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Execs `cellgate-kernel cmd argv[1..]`; returns only on failure. */
static int
forward(const char *cmd, int argc, char **argv)
{
    char **args = calloc((size_t)argc + 2, sizeof *args);

    if (!args) {
        fprintf(stderr, "cellgate %s: out of memory\n", cmd);
        return 1;
    }
    args[1] = (char *)cmd;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    sibling_exec("cellgate-kernel", args);
    fprintf(stderr, "cellgate %s: cannot run cellgate-kernel (installed beside cellgate?): "
            "%s\n", cmd, strerror(errno));
    free(args);
    return 1;
}

int
heavy_kernel(int argc, char **argv)
{
    return forward("kernel", argc, argv);
}

int
heavy_doctor(int argc, char **argv)
{
    return forward("doctor", argc, argv);
}
