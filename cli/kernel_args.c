/*
 * kernel_args.c - the options of `cellgate kernel` (kernel_args.h).
 */
#include "cli/kernel_args.h"

#include "sandbox/boxlimits.h"

#include <stdlib.h>
#include <string.h>

/* The options with a fixed meaning; the box limits follow them. */
static const struct option fixed_opts[] = {
    { "connection-file", required_argument, NULL, 'f' },
    { "language", required_argument, NULL, 'l' },
    { "output-limit", required_argument, NULL, KOPT_OUTPUT_LIMIT },
    { "color", no_argument, NULL, KOPT_COLOR },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, KOPT_VERSION },
    { "state-dir", required_argument, NULL, KOPT_STATE_DIR },
    { "keep-data", no_argument, NULL, KOPT_KEEP_DATA },
    { "no-sandbox", no_argument, NULL, KOPT_NO_SANDBOX },
};
#define N_FIXED (sizeof fixed_opts / sizeof fixed_opts[0])

void
kernel_args_table(struct option opts[KERNEL_OPTS_MAX])
{
    size_t n_limits, n = 0;
    const struct limit_info *lt = limits_table(&n_limits);

    for (size_t i = 0; i < N_FIXED; i++)
        opts[n++] = fixed_opts[i];
    for (size_t i = 0; i < n_limits && n < KERNEL_OPTS_MAX - 1; i++)
        opts[n++] = (struct option){ lt[i].name, required_argument, NULL, KOPT_LIMIT + (int)i };
    opts[n] = (struct option){ 0 };
}

const char *
kernel_args_connection_file(int argc, char **argv)
{
    struct option opts[KERNEL_OPTS_MAX];
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    const char *path = NULL;
    int saved_opterr = opterr, c;

    if (!copy || argc < 1)
        goto out;
    memcpy(copy, argv, (size_t)argc * sizeof *copy);
    kernel_args_table(opts);
    opterr = 0;
    optind = 0; /* GNU getopt: start afresh */
    while ((c = getopt_long(argc, copy, KERNEL_SHORT_OPTS, opts, NULL)) != -1) {
        if (c == '?' || c == ':') {
            path = NULL; /* cellgate-kernel will refuse these arguments */
            break;
        }
        if (c == 'f')
            path = optarg; /* the last one counts, as in heavy_run.c */
    }
out:
    free(copy);
    opterr = saved_opterr;
    optind = 0;
    return path;
}
