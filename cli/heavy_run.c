/*
 * heavy_run.c - `cellgate kernel` and `cellgate doctor` where they run, in
 * the cellgate-kernel program (heavy.h): the options of a kernel (limits
 * from the table, flags and CELLGATE_* variables), then kernel_run().
 */
#include "cli/heavy.h"

#include "cli/doctor.h"
#include "cli/kernel_args.h"
#include "common/cgerr.h"
#include "common/langs.h"
#include "common/size.h"
#include "common/statedir.h"
#include "common/version.h"
#include "kernel/kernel.h"
#include "sandbox/boxlimits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
print_version(void)
{
    printf("cellgate %s\n", CELLGATE_VERSION);
    return 0;
}

static void
kernel_usage(FILE *f)
{
    size_t n;
    const struct limit_info *t = limits_table(&n);
    struct box_limits d;

    limits_defaults(&d);
    fputs("usage: cellgate kernel -f CONNECTION_FILE [OPTIONS]\n"
          "\n"
          "Runs a Jupyter kernel (started by a Jupyter client through a kernelspec). Code runs\n"
          "in the kernel's box: its own namespaces, uid 1000 without capabilities, seccomp,\n"
          "a read-only system, a writable /mnt/data, no network but its own loopback.\n"
          "\n"
          "options:\n"
          "  -f, --connection-file FILE  the connection file written by the client\n"
          "  -l, --language L            main language (default python; see `cellgate doctor`)\n"
          "      --output-limit BYTES    per-cell output limit, with optional K, M or G suffix\n"
          "                              (default 32M, 0 for none; env CELLGATE_OUTPUT_LIMIT)\n"
          "      --color                 ANSI colour in tracebacks (env CELLGATE_COLOR=1)\n"
          "      --state-dir DIR         where each kernel's /mnt/data lives on the host\n"
          "                              (env CELLGATE_STATE_DIR; default below)\n"
          "      --keep-data             keep /mnt/data's host directory after shutdown\n"
          "                              (env CELLGATE_KEEP_DATA=1)\n"
          "      --no-sandbox            run code WITHOUT the box, as the kernel's user\n"
          "                              (env CELLGATE_SANDBOX=0); never done unasked\n",
          f);
    for (size_t i = 0; i < n; i++) {
        char flag[64], var[64];
        snprintf(flag, sizeof flag, "--%s %s", t[i].name, t[i].is_size ? "SIZE" : "N");
        limits_env_name(t[i].name, var, sizeof var);
        fprintf(f, "      %-22s%s (env %s, default %llu)\n", flag, t[i].help, var,
                (unsigned long long)*(const uint64_t *)((const char *)&d + t[i].offset));
    }
    fputs("  -h, --help                  this help\n"
          "\n"
          "Sizes take K, M or G suffixes. A cell whose first line is %%LANG (%%bash,\n"
          "%%python, ...) runs in that language, in the same box. Logging:\n"
          "CELLGATE_LOG=error|warn|info|debug (stderr).\n",
          f);
}

/* Parses "123", "4K", "32M", "1G" (common/size.h). Returns 0 on success. */
static int
parse_size(const char *s, size_t *out)
{
    uint64_t v;

    if (size_parse(s, true, &v) != CG_OK || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

int
heavy_kernel(int argc, char **argv)
{
    size_t n_limits;
    const struct limit_info *lt = limits_table(&n_limits);
    struct option opts[KERNEL_OPTS_MAX];
    struct kernel_opts ko = { .output_limit = KERNEL_DEFAULT_OUTPUT_LIMIT };
    const char *lang = "python", *env;
    char state_dir[4096], err[256];
    int c;

    kernel_args_table(opts);
    limits_defaults(&ko.limits);
    if (limits_from_env(&ko.limits, err, sizeof err) != 0) {
        fprintf(stderr, "cellgate: %s\n", err);
        return 2;
    }
    statedir_default(state_dir, sizeof state_dir);
    ko.state_dir = (env = getenv("CELLGATE_STATE_DIR")) && *env ? env : state_dir;
    ko.keep_data = (env = getenv("CELLGATE_KEEP_DATA")) && strcmp(env, "1") == 0;
    ko.no_sandbox = (env = getenv("CELLGATE_SANDBOX")) && strcmp(env, "0") == 0;

    if ((env = getenv("CELLGATE_OUTPUT_LIMIT")) && parse_size(env, &ko.output_limit) != 0) {
        fprintf(stderr, "cellgate: CELLGATE_OUTPUT_LIMIT=%s is not a size\n", env);
        return 2;
    }
    ko.color = (env = getenv("CELLGATE_COLOR")) && strcmp(env, "1") == 0;
    while ((c = getopt_long(argc, argv, KERNEL_SHORT_OPTS, opts, NULL)) != -1) {
        switch (c) {
        case 'f': ko.connection_file = optarg; break;
        case 'l': lang = optarg; break;
        case KOPT_COLOR: ko.color = true; break;
        case KOPT_OUTPUT_LIMIT:
            if (parse_size(optarg, &ko.output_limit) != 0) {
                fprintf(stderr, "cellgate: --output-limit %s is not a size\n", optarg);
                return 2;
            }
            break;
        case 'h': kernel_usage(stdout); return 0;
        case KOPT_VERSION: return print_version();
        case KOPT_STATE_DIR: ko.state_dir = optarg; break;
        case KOPT_KEEP_DATA: ko.keep_data = true; break;
        case KOPT_NO_SANDBOX: ko.no_sandbox = true; break;
        default:
            if (c >= KOPT_LIMIT && c < KOPT_LIMIT + (int)n_limits) {
                if (limits_set(&ko.limits, lt[c - KOPT_LIMIT].name, optarg, err, sizeof err) != 0) {
                    fprintf(stderr, "cellgate: %s\n", err);
                    return 2;
                }
                break;
            }
            kernel_usage(stderr);
            return 2;
        }
    }
    if (!ko.connection_file) {
        fprintf(stderr, "cellgate kernel: -f CONNECTION_FILE is required\n");
        kernel_usage(stderr);
        return 2;
    }
    ko.primary = langs_find(lang);
    if (!ko.primary) {
        fprintf(stderr, "cellgate kernel: unknown language \"%s\" (known:", lang);
        for (size_t i = 0; i < langs_count(); i++)
            fprintf(stderr, " %s", langs_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    return kernel_run(&ko);
}

int
heavy_doctor(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: cellgate doctor\n\nShows which languages this machine has (with "
               "versions), its sandbox features and library versions.\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0)
        return print_version();
    if (argc > 1) {
        fprintf(stderr, "cellgate doctor: unexpected argument \"%s\"\n", argv[1]);
        return 2;
    }
    return doctor_run();
}
