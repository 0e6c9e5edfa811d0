/*
 * main.c - cellgate-gateway, what `cellgate serve` runs: a Jupyter Kernel
 * Gateway compatible HTTP + WebSocket server that starts cellgate kernels
 * (the sibling `cellgate` program) and relays their channels. A separate
 * program so the kernel never maps the HTTP libraries.
 */
#include "common/cgerr.h"
#include "common/statedir.h"
#include "common/log.h"
#include "common/sibling.h"
#include "common/version.h"
#include "common/wire.h"
#include "gateway/channels.h"
#include "gateway/http.h"
#include "gateway/kernels.h"
#include "gateway/loop.h"
#include "gateway/specs.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static volatile int stop;

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void
usage(FILE *f)
{
    fputs("usage: cellgate serve [--ip ADDR] [--port N] [--token T]\n"
          "\n"
          "A Jupyter Kernel Gateway: REST (/api/kernelspecs, /api/kernels, ...) and the\n"
          "/api/kernels/{id}/channels WebSocket, for jupyter_server --gateway-url and agents.\n"
          "Kernels are every kernelspec `cellgate install` writes, each in its own box.\n"
          "\n"
          "options:\n"
          "      --ip ADDR     address to listen on (env CELLGATE_IP; default 127.0.0.1)\n"
          "      --port N      port (env CELLGATE_PORT; default 8888)\n"
          "      --token T     the token every request carries, as Authorization: token T\n"
          "                    or ?token=T (env CELLGATE_TOKEN; default: a random one,\n"
          "                    printed at start-up)\n"
          "      --max-kernels N           the most kernels at once; POST /api/kernels\n"
          "                    answers 403 beyond (env CELLGATE_MAX_KERNELS; 0: no limit)\n"
          "      --cull-idle-timeout S     delete a kernel idle S seconds (no message\n"
          "                    either way; env CELLGATE_CULL_IDLE_TIMEOUT; 0: never)\n"
          "      --cull-connected          cull idle kernels even with clients connected\n"
          "                    (env CELLGATE_CULL_CONNECTED=1)\n"
          "      --pool NAME=N             keep N kernels of kernelspec NAME started, for\n"
          "                    POST /api/kernels to hand out at once (repeatable; env\n"
          "                    CELLGATE_POOL=NAME=N,NAME=N)\n"
          "      --base-url /PREFIX        serve every route under /PREFIX\n"
          "                    (env CELLGATE_BASE_URL)\n"
          "      --allow-origin ORIGIN     CORS: pages of ORIGIN (or *) may call the API\n"
          "                    and open WebSockets (env CELLGATE_ALLOW_ORIGIN; default:\n"
          "                    WebSockets from pages of the same host only)\n"
          "      --certfile PEM --keyfile PEM  serve HTTPS and wss:// (env CELLGATE_CERTFILE,\n"
          "                    CELLGATE_KEYFILE; behind an ingress, TLS ends there)\n"
          "      --ping-interval S         ping WebSocket clients every S seconds\n"
          "                    (env CELLGATE_PING_INTERVAL; default 30; 0: never)\n"
          "      --kernel-env-in-box       the KERNEL_* variables of a POST's env reach\n"
          "                    the code in the box too, not only the kernel process\n"
          "                    (env CELLGATE_KERNEL_ENV_IN_BOX=1, read by each kernel)\n"
          "\n"
          "recovery:\n"
          "      --restart-limit N         a kernel whose process dies is restarted under\n"
          "                    its id, at most N times in a row (each within 10 s of the\n"
          "                    last), then it is dead (env CELLGATE_RESTART_LIMIT; default 5;\n"
          "                    0: never)\n"
          "      --state-dir DIR           where the gateway keeps its kernels' models, so\n"
          "                    one started again (same --ip, --port and DIR) re-adopts the\n"
          "                    kernels still running, and the kernels' /mnt/data (env\n"
          "                    CELLGATE_STATE_DIR; default /var/lib/cellgate for root, else\n"
          "                    $XDG_STATE_HOME/cellgate or ~/.local/state/cellgate)\n"
          "      --keep-kernels            SIGTERM or SIGINT leave the kernels running for\n"
          "                    the next start to re-adopt (env CELLGATE_KEEP_KERNELS=1;\n"
          "                    default: they are shut down)\n"
          "\n"
          "bounds on clients (a value of 0 takes the default):\n"
          "      --request-timeout S       a request's headers and body must arrive within\n"
          "                    S seconds, else 408 and closed (env CELLGATE_REQUEST_TIMEOUT;\n"
          "                    default 30)\n"
          "      --max-connections N       open connections, WebSockets included; one more\n"
          "                    is answered 503 (env CELLGATE_MAX_CONNECTIONS; default 1000)\n"
          "      --max-connections-per-ip N   ... from one address (env\n"
          "                    CELLGATE_MAX_CONNECTIONS_PER_IP; default 0: no limit)\n"
          "      --max-header-size BYTES   a request's line and headers; beyond: 431\n"
          "                    (env CELLGATE_MAX_HEADER_SIZE; default 32768)\n"
          "      --max-body-size BYTES     a request's body; beyond: 413\n"
          "                    (env CELLGATE_MAX_BODY_SIZE; default 1048576)\n"
          "      --max-message-size BYTES  a WebSocket message from a client; beyond: closed\n"
          "                    with 1009 (env CELLGATE_MAX_MESSAGE_SIZE; default 67108864)\n"
          "      --max-send-queue BYTES    output queued for a WebSocket client that does\n"
          "                    not read; beyond: closed with 1008, the rest kept for its\n"
          "                    session_id (env CELLGATE_MAX_SEND_QUEUE; default 16777216)\n"
          "  -h, --help        this help\n"
          "\n"
          "One line per request on stderr; more with CELLGATE_LOG=info.\n",
          f);
}

/* A number setting: its environment variable, option letter and value. */
struct number {
    const char *var;
    int opt;
    double *to;
};

/* The value of option opt in the table, or NULL if it is not a number. */
static double *
number_of(const struct number *t, size_t n, int opt)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].opt == opt)
            return t[i].to;
    return NULL;
}

/* Lets the process open what max_connections connections need beside the
 * kernels' descriptors, within the hard limit. */
static void
raise_fd_limit(double max_connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)(max_connections ? max_connections : HTTP_MAX_CONNECTIONS) + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("cannot raise the open file limit to %llu", (unsigned long long)want);
}

/* Parses a whole number in [0, max] into *out; false if it is not one. */
static bool
parse_count(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= max))
        return false;
    *out = v;
    return true;
}

/* Adds the pools of a list "NAME=N[,NAME=N...]" (what may be NULL or "").
 * Returns false with a message on stderr for a bad entry or name. */
static bool
add_pools(struct kernels *ks, const struct specs *specs, const char *what)
{
    char buf[1024], *save = NULL;
    if (!what || !*what)
        return true;
    if (snprintf(buf, sizeof buf, "%s", what) >= (int)sizeof buf) {
        fprintf(stderr, "cellgate serve: --pool: too long\n");
        return false;
    }
    for (char *e = strtok_r(buf, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(e, '=');
        double n;
        const json_t *spec;
        if (!eq || !parse_count(eq + 1, 64, &n)) {
            fprintf(stderr, "cellgate serve: --pool %s: give NAME=N (N up to 64)\n", e);
            return false;
        }
        *eq = '\0';
        if (!(spec = specs_spec(specs, e))) {
            fprintf(stderr, "cellgate serve: --pool: no kernelspec %s\n", e);
            return false;
        }
        if (kernels_pool(ks, e, spec, (size_t)n) != CG_OK) {
            fprintf(stderr, "cellgate serve: --pool %s: too many pools\n", e);
            return false;
        }
    }
    return true;
}

/* Reads a whole PEM file (at most 1 MiB) into a new string, or NULL with a
 * message on stderr. */
static char *
read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = f ? calloc(1, (1u << 20) + 1) : NULL;
    size_t n = text ? fread(text, 1, 1u << 20, f) : 0;
    bool whole = f && feof(f) && !ferror(f);
    if (f)
        fclose(f);
    if (!text || !whole || n == 0) {
        fprintf(stderr, "cellgate serve: cannot read %s: %s\n", path,
                f && !whole ? "not a PEM file under 1 MiB" : strerror(errno));
        free(text);
        return NULL;
    }
    return text;
}

/* Parses a port number; -1 if it is not one. */
static int
parse_port(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 0 || v > 65535 ? -1 : (int)v;
}

/* Makes directory path and its missing parents (0700). CG_OK or CG_ESYS. */
static int
make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return CG_ESYS;
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return CG_ESYS;
            *p = '/';
        }
    return mkdir(buf, 0700) == 0 || errno == EEXIST ? CG_OK : CG_ESYS;
}

/* True if dir is a directory of ours that only we can enter. */
static bool
private_dir(const char *dir)
{
    struct stat st;
    return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid()
           && (st.st_mode & 077) == 0;
}

/* The gateway's own state directory, <state>/gateway/<ip>-<port> (made
 * private), locked against a second gateway with the same settings: the
 * lock's fd in *lock. Prints why not and returns CG_ESYS. */
static int
open_state(const char *state, const char *ip, int port, char *out, size_t len, int *lock)
{
    char path[PATH_MAX + 16];
    errno = 0;
    int n = snprintf(out, len, "%s/gateway/%s-%d", state, ip, port);
    for (char *p = out + n - 1; n > 0 && *p != '/'; p--)
        if (*p == ':') /* an IPv6 address */
            *p = '_';
    if (n >= (int)len || make_dirs(out) != CG_OK || chmod(out, 0700) != 0
        || !private_dir(out)) {
        fprintf(stderr, "cellgate serve: state directory %s: %s\n", out,
                errno ? strerror(errno) : "not a private directory of mine");
        return CG_ESYS;
    }
    snprintf(path, sizeof path, "%s/lock", out);
    *lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*lock < 0 || flock(*lock, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "cellgate serve: %s: %s\n", path,
                errno == EWOULDBLOCK ? "another gateway with these settings is running"
                                     : strerror(errno));
        return CG_ESYS;
    }
    return CG_OK;
}

/* The private directory for connection files and ipc sockets of the
 * gateway whose state is in state: always the same one for it, so the
 * sockets of the kernels it leaves running are found again (short: ipc
 * paths must fit a socket address). */
static int
make_rundir(const char *state, char *out, size_t len)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    uint64_t h = 14695981039346656037ULL; /* FNV-1a of the state directory */
    for (const char *p = state; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    if (!base || !*base || strlen(base) > 40 || access(base, W_OK) != 0)
        base = "/tmp";
    snprintf(out, len, "%s/cellgate-gw-%016llx", base, (unsigned long long)h);
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return CG_ESYS;
    if (!private_dir(out)) {
        errno = EPERM; /* another user's, or opened up: not ours to trust */
        return CG_ESYS;
    }
    return CG_OK;
}

/* Removes the private directory and what is left in it (the kernelspecs
 * are a few levels deep): rm -rf, not a walk of our own. */
static void
remove_tree(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "ip", required_argument, NULL, 'i' },
        { "port", required_argument, NULL, 'p' },
        { "token", required_argument, NULL, 't' },
        { "max-kernels", required_argument, NULL, 'm' },
        { "cull-idle-timeout", required_argument, NULL, 'c' },
        { "cull-connected", no_argument, NULL, 'C' },
        { "ping-interval", required_argument, NULL, 'P' },
        { "pool", required_argument, NULL, 'o' },
        { "base-url", required_argument, NULL, 'b' },
        { "certfile", required_argument, NULL, 'r' },
        { "keyfile", required_argument, NULL, 'k' },
        { "allow-origin", required_argument, NULL, 'a' },
        { "kernel-env-in-box", no_argument, NULL, 'e' },
        { "request-timeout", required_argument, NULL, 'T' },
        { "max-connections", required_argument, NULL, 'n' },
        { "max-connections-per-ip", required_argument, NULL, 'N' },
        { "max-header-size", required_argument, NULL, 'H' },
        { "max-body-size", required_argument, NULL, 'B' },
        { "max-message-size", required_argument, NULL, 'M' },
        { "max-send-queue", required_argument, NULL, 'Q' },
        { "restart-limit", required_argument, NULL, 'R' },
        { "state-dir", required_argument, NULL, 'S' },
        { "keep-kernels", no_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    const char *ip = getenv("CELLGATE_IP"), *token = getenv("CELLGATE_TOKEN"), *env;
    int port = 8888, c, status = 1;
    const char *pools[16], *base_url = getenv("CELLGATE_BASE_URL");
    const char *allow_origin = getenv("CELLGATE_ALLOW_ORIGIN");
    const char *certfile = getenv("CELLGATE_CERTFILE"), *keyfile = getenv("CELLGATE_KEYFILE");
    char *cert = NULL, *key = NULL;
    char base[256];
    size_t n_pools = 0;
    char tokbuf[33], rundir[128], bin[PATH_MAX], err[512], state[PATH_MAX], gwstate[PATH_MAX];
    const char *state_dir = getenv("CELLGATE_STATE_DIR");
    int lock = -1;
    bool keep_kernels = (env = getenv("CELLGATE_KEEP_KERNELS")) && strcmp(env, "1") == 0;
    double restart_limit = KERNELS_RESTART_LIMIT;

    double max_kernels = 0, request_timeout = 0, max_conns = 0, per_ip = 0, max_header = 0,
           max_body = 0, max_message = 0, max_queue = 0;
    struct loop_opts lo = { .ping_s = 30 };
    /* Numbers from the environment first, the command line overrides. */
    const struct number numbers[] = {
        { "CELLGATE_MAX_KERNELS", 'm', &max_kernels },
        { "CELLGATE_CULL_IDLE_TIMEOUT", 'c', &lo.cull_idle_s },
        { "CELLGATE_PING_INTERVAL", 'P', &lo.ping_s },
        { "CELLGATE_REQUEST_TIMEOUT", 'T', &request_timeout },
        { "CELLGATE_MAX_CONNECTIONS", 'n', &max_conns },
        { "CELLGATE_MAX_CONNECTIONS_PER_IP", 'N', &per_ip },
        { "CELLGATE_MAX_HEADER_SIZE", 'H', &max_header },
        { "CELLGATE_MAX_BODY_SIZE", 'B', &max_body },
        { "CELLGATE_MAX_MESSAGE_SIZE", 'M', &max_message },
        { "CELLGATE_MAX_SEND_QUEUE", 'Q', &max_queue },
        { "CELLGATE_RESTART_LIMIT", 'R', &restart_limit },
    };
    const size_t n_numbers = sizeof numbers / sizeof numbers[0];
    double *number;

    log_init();
    for (size_t i = 0; i < n_numbers; i++)
        if ((env = getenv(numbers[i].var)) && *env && !parse_count(env, 1e9, numbers[i].to)) {
            fprintf(stderr, "cellgate serve: %s=%s is not a number\n", numbers[i].var, env);
            return 2;
        }
    lo.cull_connected = (env = getenv("CELLGATE_CULL_CONNECTED")) && strcmp(env, "1") == 0;
    if (!ip || !*ip)
        ip = "127.0.0.1";
    if ((env = getenv("CELLGATE_PORT")) && *env && (port = parse_port(env)) < 0) {
        fprintf(stderr, "cellgate serve: CELLGATE_PORT=%s is not a port\n", env);
        return 2;
    }
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ip = optarg; break;
        case 'p':
            if ((port = parse_port(optarg)) < 0) {
                fprintf(stderr, "cellgate serve: --port %s is not a port\n", optarg);
                return 2;
            }
            break;
        case 't': token = optarg; break;
        case 'C': lo.cull_connected = true; break;
        case 'b': base_url = optarg; break;
        case 'r': certfile = optarg; break;
        case 'k': keyfile = optarg; break;
        case 'a': allow_origin = optarg; break;
        case 'e': setenv("CELLGATE_KERNEL_ENV_IN_BOX", "1", 1); break; /* read by kernels */
        case 'S': state_dir = optarg; break;
        case 'K': keep_kernels = true; break;
        case 'o':
            if (n_pools == sizeof pools / sizeof pools[0]) {
                fprintf(stderr, "cellgate serve: too many --pool options\n");
                return 2;
            }
            pools[n_pools++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cellgate %s\n", CELLGATE_VERSION); return 0;
        default:
            if (!(number = number_of(numbers, n_numbers, c))) {
                usage(stderr);
                return 2;
            }
            if (!parse_count(optarg, 1e9, number)) {
                fprintf(stderr, "cellgate serve: %s is not a number\n", optarg);
                return 2;
            }
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cellgate serve: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    /* The base URL as "/a/b": one leading slash, none at the end. */
    const char *b = base_url ? base_url : "";
    while (*b == '/')
        b++;
    if (snprintf(base, sizeof base, "%s%s", *b ? "/" : "", b) >= (int)sizeof base) {
        fprintf(stderr, "cellgate serve: --base-url too long\n");
        return 2;
    }
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    if (certfile && *certfile) {
        if (!keyfile || !*keyfile) {
            fprintf(stderr, "cellgate serve: --certfile needs --keyfile\n");
            return 2;
        }
        if (!(cert = read_pem(certfile)) || !(key = read_pem(keyfile))) {
            free(cert);
            return 2;
        }
    }
    bool random_token = !token || !*token;
    if (random_token) {
        wire_new_id(tokbuf);
        token = tokbuf;
    }
    if (sibling_find("cellgate", bin, sizeof bin) != CG_OK) {
        fprintf(stderr, "cellgate serve: cannot find the cellgate program beside me\n");
        return 1;
    }
    if (state_dir && *state_dir)
        setenv("CELLGATE_STATE_DIR", state_dir, 1); /* the kernels' /mnt/data go there too */
    else
        statedir_default(state, sizeof state);
    if (open_state(state_dir && *state_dir ? state_dir : state, ip, port, gwstate,
                   sizeof gwstate, &lock) != CG_OK)
        return 1;
    if (make_rundir(gwstate, rundir, sizeof rundir) != CG_OK) {
        fprintf(stderr, "cellgate serve: cannot create a private directory %s: %s\n", rundir,
                strerror(errno));
        return 1;
    }
    snprintf(state, sizeof state, "%s/specs", rundir);
    remove_tree(state); /* an earlier run's, written again below */
    struct specs *specs = specs_load(bin, rundir, err, sizeof err);
    void *zctx = zmq_ctx_new();
    struct channels *ch = channels_new();
    if (ch)
        channels_set_limits(ch, (size_t)max_message, (size_t)max_queue);
    raise_fd_limit(max_conns);
    struct kernels *ks = ch && zctx ? kernels_new(zctx, rundir, channels_sink(ch)) : NULL;
    if (ks)
        kernels_set_restart_limit(ks, (unsigned)restart_limit);
    struct http *h = NULL;
    if (!specs) {
        fprintf(stderr, "cellgate serve: kernelspecs: %s\n", err);
        goto out;
    }
    if (!ks) {
        fprintf(stderr, "cellgate serve: no memory\n");
        goto out;
    }
    if (!add_pools(ks, specs, n_pools ? NULL : getenv("CELLGATE_POOL")))
        goto out;
    for (size_t i = 0; i < n_pools; i++)
        if (!add_pools(ks, specs, pools[i]))
            goto out;
    struct http_opts ho = { .ip = ip, .port = port, .token = token, .specs = specs,
                            .kernels = ks, .channels = ch,
                            .max_kernels = (size_t)max_kernels, .base_url = base,
                            .allow_origin = allow_origin, .tls_cert = cert,
                            .tls_key = key, .request_timeout_s = request_timeout,
                            .max_connections = (unsigned)max_conns,
                            .max_per_ip = (unsigned)per_ip, .max_header = (size_t)max_header,
                            .max_body = (size_t)max_body };
    if (!(h = http_new(&ho, err, sizeof err))) {
        fprintf(stderr, "cellgate serve: %s\n", err);
        goto out;
    }
    size_t adopted = kernels_persist(ks, gwstate);
    if (adopted)
        log_warn("re-adopted %zu kernels left running by an earlier gateway", adopted);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const char *host = strchr(ip, ':') ? "[" : "";
    printf("cellgate serve: a Jupyter kernel gateway at %s://%s%s%s:%d%s/\n",
           cert ? "https" : "http", host, ip, *host ? "]" : "", port, base);
    if (random_token)
        printf("cellgate serve: use it with the token %s, e.g.\n"
               "  jupyter server --gateway-url %s://%s%s%s:%d%s "
               "--GatewayClient.auth_token=%s\n",
               token, cert ? "https" : "http", host, ip, *host ? "]" : "", port, base, token);
    fflush(stdout);
    status = loop_run(h, ks, ch, &lo, &stop) == CG_OK ? 0 : 1;
    log_info("stopping");
out:
    channels_destroy(&ch);
    http_destroy(&h);
    if (keep_kernels)
        kernels_release(&ks); /* their sockets stay in rundir, their models in gwstate */
    kernels_destroy(&ks);
    specs_destroy(&specs);
    if (zctx)
        zmq_ctx_term(zctx);
    /* The run directory holds the sockets of kernels whose models are
     * left (kept, or not re-adopted yet because the start failed): it goes
     * only with the last model. */
    snprintf(state, sizeof state, "%.4000s/lock", gwstate);
    unlink(state);
    if (rmdir(gwstate) == 0)
        remove_tree(rundir);
    close(lock);
    free(cert);
    free(key);
    return status;
}
