/*
 * heavy_exec.c - `cellgate kernel` and `cellgate doctor` in the cellgate
 * program: exec cellgate-kernel beside it, which runs them (heavy.h).
 * The process (its pid, what Jupyter signals) stays the same.
 */
#include "cli/heavy.h"

#include "cli/kernel_args.h"
#include "common/cgerr.h"
#include "common/connfile.h"
#include "common/listen.h"
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

/*
 * `cellgate kernel`: listens on the connection file's ports first (this
 * program starts in ~1 ms; cellgate-kernel maps 22 libraries before it
 * can), so a client that connects at once is queued rather than refused
 * and made to wait ZeroMQ's 100 ms reconnect interval (which one launch
 * in ~50 did); the sockets go across the exec (listen.h). Anything wrong
 * here is left for cellgate-kernel to find and report.
 */
int
heavy_kernel(int argc, char **argv)
{
    const char *path = kernel_args_connection_file(argc, argv);
    connfile_t conn;
    int fds[CH_COUNT] = { -1, -1, -1, -1, -1 };

    if (path && connfile_load(path, &conn, NULL, 0) == CG_OK) {
        listen_open(&conn, fds);
        listen_hand_down(fds);
        connfile_clear(&conn);
    }
    return forward("kernel", argc, argv);
}

int
heavy_doctor(int argc, char **argv)
{
    return forward("doctor", argc, argv);
}
