/*
 * main.c - cellgate-registry, the package registry gateway of one kernel:
 * a read-only mirror of the operator's npm and PyPI upstreams that
 * package managers in the box reach on the box's own loopback (DESIGN.md,
 * "Package egress"). The kernel makes the listening socket inside the
 * box's network namespace and starts this program beside its own binary:
 *
 *   cellgate-registry --listen-fd N --base URL --cache DIR [--kernel ID]
 *
 *   --listen-fd N  the listening TCP socket to serve on (usually 3)
 *   --base URL     the gateway as the box sees it ("http://127.0.0.1:3141"):
 *                  artifact links in metadata are rewritten to it
 *   --cache DIR    the host directory of cached artifacts, shared by
 *                  kernels (CELLGATE_REGISTRY_CACHE_BYTES bounds it,
 *                  default 2 GiB)
 *   --kernel ID    the kernel's id, named in every audit line (characters
 *                  other than letters, digits, '.', '_', '-' become '_')
 *
 * The operator's policy comes from the CELLGATE_REGISTRY_* environment
 * (regpolicy.h). A bad setting, or CELLGATE_REGISTRIES=none, ends the
 * program at once with exit status 2 and a message on stderr. Otherwise
 * it serves until SIGTERM or SIGINT (exit 0), or until its parent dies
 * (PR_SET_PDEATHSIG: SIGKILL). It runs as the user it was started as,
 * with no_new_privs and a seccomp filter that refuses, with EPERM, the
 * calls a registry mirror never needs (execve, ptrace, mount, namespaces,
 * bpf, keys, modules, ...).
 */
#include "registry/cache.h"
#include "registry/regpolicy.h"
#include "registry/serve.h"
#include "registry/upstream.h"

#include "common/cgerr.h"
#include "common/size.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ENV_CACHE_BYTES "CELLGATE_REGISTRY_CACHE_BYTES"
#define KERNEL_ID_MAX 128
#define BASE_MAX 256
#define ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

/* clone's flags argument: the first everywhere but s390. */
#if defined(__s390__) || defined(__s390x__)
#define CLONE_FLAGS_ARG 1
#else
#define CLONE_FLAGS_ARG 0
#endif

/* LeakSanitizer stops the threads with ptrace to scan them: a build with
 * -fsanitize=address leaves ptrace allowed, and only that. */
#if defined(__SANITIZE_ADDRESS__)
#define REFUSE_PTRACE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REFUSE_PTRACE 0
#endif
#endif
#ifndef REFUSE_PTRACE
#define REFUSE_PTRACE 1
#endif

/* What the command line says. */
struct args {
    int listen_fd;                 /* -1 until given */
    char base[BASE_MAX];           /* no trailing slash */
    const char *cache_dir;
    char kernel[KERNEL_ID_MAX + 1];
};

static void
usage(void)
{
    fprintf(stderr, "usage: cellgate-registry --listen-fd N --base URL --cache DIR "
                    "[--kernel ID]\n"
                    "       cellgate-registry --check\n"
                    "  the package registry gateway of a cellgate kernel, which starts it; "
                    "settings from CELLGATE_REGISTRY_*\n");
}

/* Prints "cellgate-registry: msg" on stderr and returns 2, the exit status
 * of a refusal to start. */
static int
refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
refuse(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cellgate-registry: %s\n", msg);
    return 2;
}

/* Reads the command line into *a; false (after a message) if it is wrong. */
static bool
parse_args(int argc, char **argv, struct args *a)
{
    *a = (struct args){ .listen_fd = -1 };
    snprintf(a->kernel, sizeof a->kernel, "-");
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "cellgate-registry: %s needs a value\n", opt);
            return false;
        }
        i++;
        if (strcmp(opt, "--listen-fd") == 0) {
            char *end;
            errno = 0;
            long fd = strtol(val, &end, 10);
            if (errno || *end || end == val || fd < 0 || fd > INT_MAX) {
                fprintf(stderr, "cellgate-registry: --listen-fd wants a descriptor number, "
                                "not \"%.32s\"\n", val);
                return false;
            }
            a->listen_fd = (int)fd;
        } else if (strcmp(opt, "--base") == 0) {
            size_t n = strlen(val);
            while (n > 0 && val[n - 1] == '/')
                n--;
            if ((strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0)
                || n >= sizeof a->base || n <= 8 || strcspn(val, " \t\r\n\"'<>\\") < n) {
                fprintf(stderr, "cellgate-registry: --base wants the gateway's http URL as the "
                                "box sees it (http://127.0.0.1:3141), not \"%.64s\"\n", val);
                return false;
            }
            memcpy(a->base, val, n);
            a->base[n] = '\0';
        } else if (strcmp(opt, "--cache") == 0) {
            a->cache_dir = val;
        } else if (strcmp(opt, "--kernel") == 0) {
            /* Only named in log lines: anything but a plain id becomes '_'. */
            size_t n = 0;
            for (; val[n] && n < KERNEL_ID_MAX; n++)
                a->kernel[n] = strchr(ID_CHARS, val[n]) ? val[n] : '_';
            a->kernel[n] = '\0';
            if (n == 0)
                snprintf(a->kernel, sizeof a->kernel, "-");
        } else {
            fprintf(stderr, "cellgate-registry: unknown option %.64s\n", opt);
            return false;
        }
    }
    if (a->listen_fd < 0 || !a->base[0] || !a->cache_dir) {
        usage();
        return false;
    }
    return true;
}

/* Whether fd is a listening stream socket. */
static bool
is_listening(int fd)
{
    struct stat st;
    int on = 0, type = 0;
    socklen_t len = sizeof on;

    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || !on)
        return false;
    len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

/*
 * no_new_privs, then the filter: everything allowed but the calls below,
 * which fail with EPERM (never a kill, so a library probing for one
 * carries on). clone3 answers ENOSYS, so that threads are made with clone,
 * whose flags the filter can read: new namespaces are refused there too.
 */
static int
confine(char *err, size_t errlen)
{
    static const char *const refused[] = {
        "execve", "execveat", "ptrace", "process_vm_writev", "mount", "umount", "umount2",
        "pivot_root", "chroot", "unshare", "setns", "bpf", "keyctl", "add_key", "request_key",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "userfaultfd", "perf_event_open", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "open_by_handle_at", "name_to_handle_at", "fsopen", "fsmount",
        "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr", "reboot", "swapon",
        "swapoff", "iopl", "ioperm", "acct", "quotactl", "settimeofday", "clock_settime",
        "adjtimex", "clock_adjtime", "sethostname", "setdomainname",
    };
    static const uint64_t ns_flags[] = {
        CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC,
        CLONE_NEWCGROUP,
    };
    scmp_filter_ctx ctx = NULL;
    int rc = CG_OK, r = 0;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return cg_fail(err, errlen, CG_ESYS, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return cg_fail(err, errlen, CG_ENOMEM, "seccomp_init failed");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0] && r == 0; i++) {
        if (!REFUSE_PTRACE && strcmp(refused[i], "ptrace") == 0)
            continue;
        int nr = seccomp_syscall_resolve_name(refused[i]);
        if (nr != __NR_SCMP_ERROR)
            r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0] && r == 0; i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_CMP(CLONE_FLAGS_ARG, SCMP_CMP_MASKED_EQ, ns_flags[i],
                                      ns_flags[i]));
    if (r != 0) {
        rc = cg_fail(err, errlen, CG_ESYS, "building the seccomp filter: %s", strerror(-r));
        goto out;
    }
    r = seccomp_load(ctx);
    if (r != 0)
        rc = cg_fail(err, errlen, CG_ESYS, "loading the seccomp filter: %s", strerror(-r));
out:
    seccomp_release(ctx);
    return rc;
}

/* What an upstream is asked to see whether it answers: npm's ping, and
 * the project page of pip (every PyPI index has it). */
static void
probe_url(const struct regpolicy *p, enum reg_eco eco, char *url, size_t len)
{
    if (eco == REG_NPM)
        snprintf(url, len, "%s/-/ping", p->npm);
    else
        snprintf(url, len, "%s/pip/", p->pypi);
}

/*
 * --check, for `cellgate doctor`: the settings as read, and whether each
 * ecosystem's upstream answers. Returns 0 when every ecosystem that is on
 * answers, 1 otherwise (the settings are then wrong or an upstream is
 * down), and prints why.
 */
static int
check(void)
{
    static struct regpolicy policy;
    static const char *const base_of[REG_ECO_COUNT] = { "CELLGATE_REGISTRY_NPM",
                                                         "CELLGATE_REGISTRY_PYPI" };
    char err[2048], url[UPSTREAM_URL_MAX];
    int status = 0;

    if (regpolicy_load(&policy, err, sizeof err) != CG_OK) {
        printf("  settings WRONG: %s\n", err);
        return 1;
    }
    if (upstream_global_init(err, sizeof err) != CG_OK) {
        printf("  FAILS: %s\n", err);
        return 1;
    }
    if (policy.timeout_s > 10)
        policy.timeout_s = 10; /* a doctor does not wait a minute */
    struct upstream *up = upstream_new(&policy, err, sizeof err);
    for (int e = 0; e < REG_ECO_COUNT; e++) {
        const char *name = regpolicy_eco_name((enum reg_eco)e);
        if (!policy.on[e]) {
            printf("  %-5s off (CELLGATE_REGISTRIES)\n", name);
            continue;
        }
        printf("  %-5s on   %s=%s%s%s\n", name, base_of[e], e == REG_NPM ? policy.npm
                                                                       : policy.pypi,
               e == REG_PYPI ? ", files " : "", e == REG_PYPI ? policy.pypi_files : "");
        struct buf body = { 0 };
        struct upstream_res res = { 0 };
        probe_url(&policy, (enum reg_eco)e, url, sizeof url);
        struct upstream_req rq = { .eco = (enum reg_eco)e, .url = url, .out_fd = -1,
                                   .out_mem = &body };
        double t0 = clock_now();
        int rc = up ? upstream_fetch(up, &rq, &res, err, sizeof err) : CG_ENOMEM;
        if (rc == CG_OK) {
            printf("        upstream answers (%.0f ms)\n", (clock_now() - t0) * 1e3);
        } else {
            printf("        upstream DOES NOT ANSWER: %s\n", up ? err : "out of memory");
            status = 1;
        }
        buf_free(&body);
    }
    printf("  limits: artifacts up to %" PRIu64 " bytes, %u s per upstream request; "
           "%zu allow and %zu deny rules\n", policy.max_bytes, policy.timeout_s,
           policy.n_allow, policy.n_deny);
    upstream_destroy(&up);
    return status;
}

int
main(int argc, char **argv)
{
    static struct regpolicy policy;
    struct args a;
    char err[2048];
    uint64_t cache_bytes = CACHE_BYTES_DEFAULT;
    struct cache *cache = NULL;
    struct upstream *up = NULL;
    struct serve *srv = NULL;
    sigset_t stop;
    int sig = 0, status = 2;

    /* Dies with the kernel that started it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "cg-registry");
    log_init();
    if (argc == 2 && strcmp(argv[1], "--check") == 0)
        return check();
    if (!parse_args(argc, argv, &a))
        return 2;
    if (regpolicy_load(&policy, err, sizeof err) != CG_OK)
        return refuse("%s", err);
    bool any = false;
    for (int e = 0; e < REG_ECO_COUNT; e++)
        any |= policy.on[e];
    if (!any)
        return refuse("package egress is off (CELLGATE_REGISTRIES=none): there is nothing to "
                      "serve");
    const char *cb = getenv(ENV_CACHE_BYTES);
    if (cb && *cb && !size_parse_positive(cb, &cache_bytes))
        return refuse("%s must be a positive number of bytes (suffix k, m or g allowed), not "
                      "\"%.64s\"", ENV_CACHE_BYTES, cb);
    if (!is_listening(a.listen_fd))
        return refuse("--listen-fd %d is not a listening TCP socket", a.listen_fd);
    /* Nothing else the kernel had open is ours to keep. */
    if (syscall(SYS_close_range, (unsigned)a.listen_fd + 1, ~0U, 0) != 0)
        for (int fd = a.listen_fd + 1; fd < 1024; fd++)
            close(fd);
    fcntl(a.listen_fd, F_SETFD, FD_CLOEXEC);
    fcntl(a.listen_fd, F_SETFL, fcntl(a.listen_fd, F_GETFL) | O_NONBLOCK);

    cache = cache_open(a.cache_dir, cache_bytes, err, sizeof err);
    if (!cache) {
        status = refuse("%s", err);
        goto out;
    }
    if (upstream_global_init(err, sizeof err) != CG_OK
        || !(up = upstream_new(&policy, err, sizeof err))) {
        status = refuse("%s", err);
        goto out;
    }
    /* Every thread, MHD's and libcurl's, inherits the mask and the filter:
     * the stop signals are taken by sigwait below, here. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (confine(err, sizeof err) != CG_OK) {
        status = refuse("%s", err);
        goto out;
    }
    struct serve_cfg cfg = { .policy = &policy, .up = up, .cache = cache, .base = a.base,
                             .kernel = a.kernel };
    srv = serve_start(a.listen_fd, &cfg, err, sizeof err);
    if (!srv) {
        status = refuse("%s", err);
        goto out;
    }
    log_info("registry: kernel=%s serving%s%s%s%s as %s (max %" PRIu64 " bytes an artifact, "
             "%u s an upstream request, cache %s bounded to %" PRIu64 " bytes)",
             a.kernel, policy.on[REG_NPM] ? " npm from " : "",
             policy.on[REG_NPM] ? policy.npm : "", policy.on[REG_PYPI] ? " pypi from " : "",
             policy.on[REG_PYPI] ? policy.pypi : "", a.base, policy.max_bytes, policy.timeout_s,
             a.cache_dir, cache_bytes);
    while (sigwait(&stop, &sig) != 0)
        ;
    log_info("registry: kernel=%s stopping (signal %d)", a.kernel, sig);
    status = 0;
out:
    serve_stop(&srv);
    upstream_destroy(&up);
    cache_destroy(&cache);
    return status;
}
