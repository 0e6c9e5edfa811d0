/*
 * main.c - the `cellgate` command: kernel, install, doctor, box, display;
 * run as `cellgate-display` (its name in the box), it is the display command.
 */
#include "common/cgerr.h"
#include "common/statedir.h"
#include "common/log.h"
#include "common/size.h"
#include "sandbox/box.h"
#include "sandbox/boxlimits.h"
#include "cli/display_cmd.h"
#include "cli/doctor.h"
#include "kernel/kernel.h"
#include "cli/kernelspec.h"
#include "common/langs.h"
#include "common/sibling.h"
#include "common/version.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void
usage(FILE *f)
{
    fputs("usage: cellgate COMMAND [OPTIONS]\n"
          "\n"
          "A Jupyter kernel written in C that runs Python, Bash and more.\n"
          "\n"
          "commands:\n"
          "  kernel -f FILE [--language L]   run a kernel for a connection file\n"
          "  install [--user | --sys-prefix | --prefix DIR]\n"
          "                                  write the kernelspecs\n"
          "  doctor                          show languages and features of this machine\n"
          "  box [--keep-data] -- CMD [ARG...]\n"
          "                                  run one command in a fresh box (try the sandbox)\n"
          "  serve [--ip ADDR] [--port N] [--token T]\n"
          "                                  a Jupyter kernel gateway (REST + WebSocket)\n"
          "  display FILE [--mime TYPE]      in a kernel's code: show an image or HTML file\n"
          "                                  (in the box also as cellgate-display)\n"
          "\n"
          "Run `cellgate COMMAND --help` for a command's options.\n",
          f);
}

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

enum { OPT_LIMIT = 1000 }; /* getopt values OPT_LIMIT + i: the i-th limit */

static int
cmd_kernel(int argc, char **argv)
{
    size_t n_limits;
    const struct limit_info *lt = limits_table(&n_limits);
    struct option opts[32] = {
        { "connection-file", required_argument, NULL, 'f' },
        { "language", required_argument, NULL, 'l' },
        { "output-limit", required_argument, NULL, 'o' },
        { "color", no_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "state-dir", required_argument, NULL, 's' },
        { "keep-data", no_argument, NULL, 'k' },
        { "no-sandbox", no_argument, NULL, 'n' },
    };
    size_t n_opts = 9;
    struct kernel_opts ko = { .output_limit = KERNEL_DEFAULT_OUTPUT_LIMIT };
    const char *lang = "python", *env;
    char state_dir[4096], err[256];
    int c;

    for (size_t i = 0; i < n_limits && n_opts < 31; i++)
        opts[n_opts++] = (struct option){ lt[i].name, required_argument, NULL,
                                          OPT_LIMIT + (int)i };
    opts[n_opts] = (struct option){ 0 };
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
    while ((c = getopt_long(argc, argv, "f:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': ko.connection_file = optarg; break;
        case 'l': lang = optarg; break;
        case 'c': ko.color = true; break;
        case 'o':
            if (parse_size(optarg, &ko.output_limit) != 0) {
                fprintf(stderr, "cellgate: --output-limit %s is not a size\n", optarg);
                return 2;
            }
            break;
        case 'h': kernel_usage(stdout); return 0;
        case 'V': return print_version();
        case 's': ko.state_dir = optarg; break;
        case 'k': ko.keep_data = true; break;
        case 'n': ko.no_sandbox = true; break;
        default:
            if (c >= OPT_LIMIT && c < OPT_LIMIT + (int)n_limits) {
                if (limits_set(&ko.limits, lt[c - OPT_LIMIT].name, optarg, err, sizeof err) != 0) {
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

/* Jupyter's user data directory: JUPYTER_DATA_DIR, XDG_DATA_HOME/jupyter,
 * or ~/.local/share/jupyter. */
static int
user_kernels_dir(char *out, size_t len)
{
    const char *v;

    if ((v = getenv("JUPYTER_DATA_DIR")) && *v)
        return snprintf(out, len, "%s/kernels", v) >= (int)len ? -1 : 0;
    if ((v = getenv("XDG_DATA_HOME")) && *v)
        return snprintf(out, len, "%s/jupyter/kernels", v) >= (int)len ? -1 : 0;
    if ((v = getenv("HOME")) && *v)
        return snprintf(out, len, "%s/.local/share/jupyter/kernels", v) >= (int)len ? -1 : 0;
    return -1;
}

static int
cmd_install(int argc, char **argv)
{
    static const struct option opts[] = {
        { "user", no_argument, NULL, 'u' },
        { "sys-prefix", no_argument, NULL, 's' },
        { "prefix", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    char dir[PATH_MAX], exe[PATH_MAX], err[512];
    const char *prefix = NULL;
    int c, where = 'u';

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u': case 's': where = c; break;
        case 'p': where = 'p'; prefix = optarg; break;
        case 'V': return print_version();
        case 'h':
            printf("usage: cellgate install [--user | --sys-prefix | --prefix DIR]\n\n"
                   "Writes the kernelspecs cellgate-<language> for each language this machine\n"
                   "has, and cellgate (Python with %%%%bash and other cell magics), into:\n"
                   "  --user        Jupyter's user data dir (default): $JUPYTER_DATA_DIR,\n"
                   "                $XDG_DATA_HOME/jupyter or ~/.local/share/jupyter\n"
                   "  --sys-prefix  $VIRTUAL_ENV, $CONDA_PREFIX or /usr, + /share/jupyter\n"
                   "  --prefix DIR  DIR/share/jupyter (point JUPYTER_PATH at DIR/share/jupyter)\n");
            return 0;
        default:
            fprintf(stderr, "usage: cellgate install [--user | --sys-prefix | --prefix DIR]\n");
            return 2;
        }
    }
    if (where == 's') {
        prefix = getenv("VIRTUAL_ENV");
        if (!prefix || !*prefix)
            prefix = getenv("CONDA_PREFIX");
        if (!prefix || !*prefix)
            prefix = "/usr";
    }
    if (where == 'u') {
        if (user_kernels_dir(dir, sizeof dir) != 0) {
            fprintf(stderr, "cellgate install: cannot find the user data directory (HOME unset)\n");
            return 1;
        }
    } else if (snprintf(dir, sizeof dir, "%s/share/jupyter/kernels", prefix) >= (int)sizeof dir) {
        fprintf(stderr, "cellgate install: prefix too long\n");
        return 1;
    }
    if (!realpath("/proc/self/exe", exe)) {
        fprintf(stderr, "cellgate install: cannot find my own path: %s\n", strerror(errno));
        return 1;
    }
    if (kernelspec_install(dir, exe, err, sizeof err) != 0) {
        fprintf(stderr, "cellgate install: %s\n", err);
        return 1;
    }
    return 0;
}

/* A process in the box ended: remember its status. */
static void
box_cmd_exited(void *ctx, pid_t pid, int status)
{
    int *st = ctx;
    (void)pid;
    *st = status;
}

/* `cellgate box -- CMD...`: a fresh box with the kernel's defaults and a
 * throw-away /mnt/data, CMD run in it with our stdin/stdout/stderr, its
 * exit status returned (128 + signal when killed). */
static int
cmd_box(int argc, char **argv)
{
    char dir[] = "/tmp/cellgate-box-XXXXXX", data[64], err[512];
    struct box_opts o = { .name = NULL };
    int i = 1, status = -1;

    if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
        printf("usage: cellgate box [--keep-data] -- CMD [ARG...]\n\nRuns CMD in a fresh box, "
               "as a kernel's code runs: its own namespaces, uid 1000,\nno capabilities, "
               "seccomp, the default limits (CELLGATE_MEMORY, ...), a\nthrow-away /mnt/data. "
               "CMD must be an absolute path inside the box.\n");
        return 0;
    }
    if (i < argc && strcmp(argv[i], "--version") == 0)
        return print_version();
    if (i < argc && strcmp(argv[i], "--keep-data") == 0) {
        o.keep_data = true;
        i++;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc || argv[i][0] != '/') {
        fprintf(stderr, "cellgate box: give an absolute command: cellgate box -- /bin/sh -c ...\n");
        return 2;
    }
    limits_defaults(&o.limits);
    if (limits_from_env(&o.limits, err, sizeof err) != 0 || !mkdtemp(dir)) {
        fprintf(stderr, "cellgate box: %s\n", err[0] ? err : strerror(errno));
        return 2;
    }
    snprintf(data, sizeof data, "%s/data", dir);
    o.data_dir = data;
    char name[40];
    snprintf(name, sizeof name, "box-%ld", (long)getpid());
    o.name = name;
    struct box *b = box_new(&o, err, sizeof err);
    if (!b) {
        fprintf(stderr, "cellgate box: %s\n", err);
        rmdir(dir);
        return 1;
    }
    static const char *const env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/mnt/data",
                                       "LANG=C.UTF-8", "USER=user", "TERM=dumb", NULL };
    struct spawn_fd fds[] = { { 0, 0 }, { 1, 1 }, { 2, 2 } };
    struct spawn_spec spec = { .argv = (const char *const *)argv + i, .envp = env,
                               .fds = fds, .n_fds = 3 };
    struct spawner *sp = box_spawner(b);
    pid_t pid;
    if (sp->start(sp, &spec, &pid, err, sizeof err) != 0) {
        fprintf(stderr, "cellgate box: %s\n", err);
    } else {
        /* No kernel serves cellgate-display here: refuse its connections. */
        int display = box_take_display_fd(b);
        if (display >= 0)
            close(display);
        while (status < 0) {
            struct pollfd p = { box_fd(b), POLLIN, 0 };
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                break;
            if (box_events(b, box_cmd_exited, &status) != 0 && status < 0)
                break;
        }
    }
    box_destroy(&b);
    if (!o.keep_data)
        rmdir(dir);
    else
        fprintf(stderr, "cellgate box: /mnt/data kept in %s\n", data);
    if (status < 0)
        return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* `cellgate serve ...`: the gateway is its own program beside this one
 * (cellgate-gateway), so the kernel never maps the HTTP libraries; it gets
 * the same arguments. */
static int
cmd_serve(int argc, char **argv)
{
    char prog[PATH_MAX];

    if (sibling_path("cellgate-gateway", prog, sizeof prog) != 0 || access(prog, X_OK) != 0) {
        fprintf(stderr, "cellgate serve: cellgate-gateway is not installed beside cellgate\n");
        return 1;
    }
    argv[0] = prog;
    execv(prog, argv);
    fprintf(stderr, "cellgate serve: cannot run %s: %s\n", prog, strerror(errno));
    (void)argc;
    return 1;
}

int
main(int argc, char **argv)
{
    const char *self = argc > 0 ? strrchr(argv[0], '/') : NULL;
    if (argc > 0 && strcmp(self ? self + 1 : argv[0], "cellgate-display") == 0)
        return display_cmd_main(argc, argv, "cellgate-display");
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0)
        return print_version();
    argv[1] = argv[0]; /* getopt sees the command's own options */
    if (strcmp(cmd, "kernel") == 0)
        return cmd_kernel(argc - 1, argv + 1);
    if (strcmp(cmd, "install") == 0)
        return cmd_install(argc - 1, argv + 1);
    if (strcmp(cmd, "box") == 0)
        return cmd_box(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "display") == 0)
        return display_cmd_main(argc - 1, argv + 1, "cellgate display");
    if (strcmp(cmd, "doctor") == 0) {
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            printf("usage: cellgate doctor\n\nShows which languages this machine has (with "
                   "versions), its sandbox features and library versions.\n");
            return 0;
        }
        if (argc > 2 && strcmp(argv[2], "--version") == 0)
            return print_version();
        if (argc > 2) {
            fprintf(stderr, "cellgate doctor: unexpected argument \"%s\"\n", argv[2]);
            return 2;
        }
        return doctor_run();
    }
    fprintf(stderr, "cellgate: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
