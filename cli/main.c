/*
 * main.c - the `cellgate` command: kernel, install, doctor, box, display;
 * run as `cellgate-display` (its name in the box), it is the display command.
 * Both programs, cellgate and cellgate-kernel, are built from it: kernel
 * and doctor are cli/heavy.h's (cellgate execs cellgate-kernel for them).
 */
#include "common/cgerr.h"
#include "common/log.h"
#include "sandbox/box.h"
#include "sandbox/boxfs.h"
#include "sandbox/boxlimits.h"
#include "cli/display_cmd.h"
#include "cli/heavy.h"
#include "cli/kernelspec.h"
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
    (void)argc;
    sibling_exec("cellgate-gateway", argv);
    if (errno == ENOENT)
        fprintf(stderr, "cellgate serve: cellgate-gateway is not installed beside cellgate\n");
    else
        fprintf(stderr, "cellgate serve: cannot run cellgate-gateway: %s\n", strerror(errno));
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
        return heavy_kernel(argc - 1, argv + 1);
    if (strcmp(cmd, "install") == 0)
        return cmd_install(argc - 1, argv + 1);
    if (strcmp(cmd, "box") == 0)
        return cmd_box(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "display") == 0)
        return display_cmd_main(argc - 1, argv + 1, "cellgate display");
    if (strcmp(cmd, "doctor") == 0)
        return heavy_doctor(argc - 1, argv + 1);
    if (strcmp(cmd, "volume-keeper") == 0) /* the box's, not in usage() */
        return boxfs_keeper_main(argc - 1, argv + 1);
    fprintf(stderr, "cellgate: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
