/*
 * kernels.c - kernel processes and the gateway's ZeroMQ sockets to them
 * (see kernels.h).
 */
#include "gateway/kernels.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/connfile.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define RECV_BURST 64          /* messages taken from one socket per round */
#define ENV_MAX 512            /* environment entries of a kernel process */
#define ALIVE_CHECK_S 0.25     /* how often an adopted process is looked at */

/* The sockets the gateway holds per kernel, in pollitem order. */
enum { S_SHELL, S_IOPUB, S_STDIN, S_CONTROL, S_COUNT };
static const char *const sock_names[S_COUNT] = { "shell", "iopub", "stdin", "control" };
static const enum channel sock_channel[S_COUNT] = { CH_SHELL, CH_IOPUB, CH_STDIN, CH_CONTROL };

struct kernel {
    struct kernels *ks;           /* the table it belongs to */
    char id[37];                  /* the model's id: a uuid4 with dashes */
    char name[128];               /* its kernelspec */
    json_t *spec;                 /* kernel.json (a reference), for restarts */
    json_t *env;                  /* the request's env (a reference or NULL) */
    pid_t pid;                    /* the process, -1 once it exited */
    unsigned long long starttime; /* its /proc/PID/stat start time (pid reuse) */
    bool adopted;                 /* started by an earlier gateway: not our child */
    double checked_at;            /* clock_now() of its last liveness check */
    json_t *conn;                 /* its connection file's content (with the key) */
    bool ever_ready;              /* some process of it answered: restart on death */
    unsigned restarts;            /* automatic restarts in a row (see kernels.h) */
    double restarted_at;          /* clock_now() of the last one */
    char reason[200];             /* why it is dead, or "" */
    unsigned gen;                 /* processes started so far (restarts + 1) */
    char connfile[300];           /* this process's connection file */
    wire_t *wire;                 /* signing with this process's key */
    void *sock[S_COUNT];          /* DEALERs and the iopub SUB */
    char last_activity[40];       /* ISO time of the last message either way */
    double active_at;             /* the same on the monotonic clock, for culling */
    char state[16];               /* execution_state from iopub status */
    int connections;              /* open WebSocket connections */
    bool replied;                 /* our kernel_info_reply came */
    bool heard;                   /* something came on iopub: subscribed */
    bool stdin_up;                /* the stdin connection finished its handshake */
    void *stdin_mon;              /* PAIR receiving the stdin socket's monitor events */
    bool ready;                   /* both: what it publishes reaches us */
    double nudged_at;             /* clock_now() of our last kernel_info_request */
    bool pooled;                  /* pre-started, not handed out: no API sees it */
    char info_id[33];             /* msg_id of our kernel_info_request */
    struct kernel *next;
};

/* A process shut down, waiting to exit or to be killed. */
struct retired {
    pid_t pid;
    bool adopted;                 /* not our child: /proc tells when it is gone */
    unsigned long long starttime;
    double deadline;              /* SIGKILL at this clock_now() */
    char connfile[300];           /* removed once it exited */
    struct retired *next;
};

/* Kernels kept pre-started for one kernelspec. */
struct pool {
    char name[128];
    json_t *spec;                 /* kernel.json (a reference) */
    size_t size;                  /* how many to keep ready */
};

#define POOLS_MAX 16
#define POOL_WAIT_S 30.0       /* a kernel starting longer holds no refill back */
#define NUDGE_S 0.2            /* kernel_info again while iopub is silent */

struct kernels {
    struct pool pools[POOLS_MAX];
    size_t n_pools;
    void *zctx;
    char rundir[160];             /* short: ipc paths must fit sun_path */
    struct kernels_sink sink;
    struct kernel *head;
    struct retired *retired;
    char statedir[4096];          /* where models are kept, or "" */
    unsigned restart_limit;       /* automatic restarts before giving up */
};

/* Notes activity now: a message either way, a start. */
static void
touch(struct kernel *k)
{
    wire_now_iso(k->last_activity);
    k->active_at = clock_now();
}

/* The start time of process pid (field 22 of /proc/PID/stat, clock ticks
 * since boot), or 0 when there is no such live process (gone, a zombie). */
static unsigned long long
proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long t = 0;
    char state = 0;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces and ")" */
    /* after the name: state (3), then fields 4..21, then starttime (22) */
    if (!p || sscanf(p + 1, " %c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
                            "%*s %*s %*s %llu", &state, &t) != 2)
        return 0;
    return state == 'Z' || state == 'X' ? 0 : t;
}

/* The file of k's model in the state directory. */
static void
state_path(const struct kernel *k, char *out, size_t len)
{
    snprintf(out, len, "%.4000s/%s.json", k->ks->statedir, k->id);
}

/* Saves k's model (all a new gateway needs to re-adopt its process) in
 * the state directory: 0600, written whole then renamed over the old. */
static void
save_state(const struct kernel *k)
{
    char path[4200], tmp[4300];

    if (!k->ks->statedir[0] || k->pid <= 0)
        return;
    state_path(k, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *j = json_pack("{s:s, s:s, s:O, s:O?, s:i, s:I, s:i, s:s, s:O, s:b}", "id", k->id,
                          "name", k->name, "spec", k->spec, "env", k->env, "pid", (int)k->pid,
                          "starttime", (json_int_t)k->starttime, "gen", (int)k->gen,
                          "connection_file", k->connfile, "connection", k->conn, "pooled",
                          k->pooled);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = j && fd >= 0 && json_dumpfd(j, fd, JSON_COMPACT) == 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    json_decref(j);
    if (!ok || rename(tmp, path) != 0) {
        log_warn("kernel %s: cannot save its model in %s: %s", k->id, k->ks->statedir,
                 strerror(errno));
        unlink(tmp);
    }
}

/* Removes k's model from the state directory. */
static void
drop_state(const struct kernel *k)
{
    char path[4200];
    if (!k->ks->statedir[0])
        return;
    state_path(k, path, sizeof path);
    unlink(path);
}

struct kernels *
kernels_new(void *zctx, const char *rundir, struct kernels_sink sink)
{
    struct kernels *ks = calloc(1, sizeof *ks);
    if (!ks || strlen(rundir) >= 80) { /* ipc paths must fit in sun_path */
        free(ks);
        return NULL;
    }
    ks->zctx = zctx;
    ks->restart_limit = KERNELS_RESTART_LIMIT;
    snprintf(ks->rundir, sizeof ks->rundir, "%s", rundir);
    ks->sink = sink;
    return ks;
}

const char *
kernel_id(const struct kernel *k)
{
    return k->id;
}

bool
kernel_ready(const struct kernel *k)
{
    return k->ready;
}

bool
kernel_dead(const struct kernel *k)
{
    return k->pid < 0 && strcmp(k->state, "dead") == 0;
}

void
kernel_add_connection(struct kernel *k, int delta)
{
    k->connections += delta;
}

json_t *
kernel_model_json(const struct kernel *k)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", k->id, "name", k->name,
                          "last_activity", k->last_activity, "execution_state", k->state,
                          "connections", k->connections);
    if (j && k->reason[0] && kernel_dead(k))
        json_object_set_new(j, "reason", json_string(k->reason));
    return j;
}

json_t *
kernels_list_json(const struct kernels *ks)
{
    json_t *a = json_array();
    for (const struct kernel *k = ks->head; a && k; k = k->next)
        if (!k->pooled)
            json_array_append_new(a, kernel_model_json(k));
    return a;
}

struct kernel *
kernels_idle(struct kernels *ks, double idle_s, bool connected)
{
    double now = clock_now();
    for (struct kernel *k = ks->head; k; k = k->next)
        if (!k->pooled && strcmp(k->state, "busy") != 0 && now - k->active_at > idle_s
            && (connected || k->connections == 0))
            return k;
    return NULL;
}

size_t
kernels_count(const struct kernels *ks)
{
    size_t n = 0;
    for (const struct kernel *k = ks->head; k; k = k->next)
        n += !k->pooled;
    return n;
}

struct kernel *
kernels_find(struct kernels *ks, const char *id)
{
    for (struct kernel *k = ks->head; k; k = k->next)
        if (!k->pooled && strcmp(k->id, id) == 0)
            return k;
    return NULL;
}

/* Writes the connection file of the next process of k and fills cf. */
static int
write_connfile(struct kernel *k, connfile_t *cf, char *key, char *err, size_t errlen)
{
    char a[33], b[33];

    wire_new_id(a);
    wire_new_id(b);
    snprintf(key, 65, "%s%s", a, b);
    memset(cf, 0, sizeof *cf);
    snprintf(cf->transport, sizeof cf->transport, "ipc");
    snprintf(cf->ip, sizeof cf->ip, "%.80s/k%.12s-%u", k->ks->rundir, k->id, k->gen);
    snprintf(cf->scheme, sizeof cf->scheme, "hmac-sha256");
    cf->key = key;
    for (int ch = 0; ch < CH_COUNT; ch++)
        cf->ports[ch] = ch + 1;
    snprintf(k->connfile, sizeof k->connfile, "%.80s/kernel-%s-%u.json", k->ks->rundir, k->id,
             k->gen);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "transport", "ipc", "ip", cf->ip, "key",
                          key, "signature_scheme", cf->scheme, "kernel_name", k->name);
    for (int ch = 0; j && ch < CH_COUNT; ch++)
        json_object_set_new(j, connfile_port_name((enum channel)ch), json_integer(cf->ports[ch]));
    json_decref(k->conn);
    k->conn = j; /* kept for the model saved in the state directory */
    int fd = open(k->connfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = j && fd >= 0 && json_dumpfd(j, fd, JSON_INDENT(2)) == 0 ? CG_OK : CG_ESYS;
    if (fd >= 0)
        close(fd);
    if (rc != CG_OK)
        return cg_fail(err, errlen, rc, "cannot write %s: %s", k->connfile, strerror(errno));
    return CG_OK;
}

/* Builds the process environment: ours, the kernelspec's env, then the
 * request's KERNEL_* variables. Entries are malloc'd into strs. */
static size_t
build_env(const struct kernel *k, char **envp, size_t max)
{
    size_t n = 0;
    const char *key;
    json_t *v;

    for (char **e = environ; *e && n + 1 < max; e++)
        envp[n++] = strdup(*e);
    /* It outlives the gateway, which re-adopts it (kernel.c parent_gone). */
    if (n + 1 < max)
        envp[n++] = strdup("CELLGATE_OUTLIVE_PARENT=1");
    json_t *specenv = json_object_get(k->spec, "env");
    json_object_foreach(specenv, key, v)
        if (json_is_string(v) && n + 1 < max && asprintf(&envp[n], "%s=%s", key,
                                                          json_string_value(v)) >= 0)
            n++;
    json_object_foreach(k->env, key, v)
        if (strncmp(key, "KERNEL_", 7) == 0 && !strchr(key, '=') && json_is_string(v)
            && n + 1 < max && asprintf(&envp[n], "%s=%s", key, json_string_value(v)) >= 0)
            n++;
    envp[n] = NULL;
    return n;
}

/* Starts the process for the current connection file. */
static int
spawn(struct kernel *k, char *err, size_t errlen)
{
    json_t *argvj = json_object_get(k->spec, "argv");
    size_t argc = json_array_size(argvj);
    char *argv[64], *envp[ENV_MAX];
    int rc = CG_OK;

    if (argc == 0 || argc >= 64)
        return cg_fail(err, errlen, CG_EINVAL, "kernelspec %s: bad argv", k->name);
    for (size_t i = 0; i < argc; i++) {
        const char *a = json_string_value(json_array_get(argvj, i));
        argv[i] = (char *)(a && strcmp(a, "{connection_file}") == 0 ? k->connfile : a ? a : "");
    }
    argv[argc] = NULL;
    size_t n = build_env(k, envp, ENV_MAX);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* a ^C at the gateway's terminal is not the kernel's */
        close_range(3, ~0U, 0);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    if (pid < 0)
        rc = cg_fail(err, errlen, CG_ESYS, "fork: %s", strerror(errno));
    for (size_t i = 0; i < n; i++)
        free(envp[i]);
    k->pid = pid;
    return rc;
}

/* Has the stdin socket (not yet connected) report its handshakes to
 * k->stdin_mon. */
static int
watch_stdin(struct kernel *k, char *err, size_t errlen)
{
    char ep[96];

    snprintf(ep, sizeof ep, "inproc://gw-stdin-%s-%u", k->id, k->gen);
    k->stdin_up = false;
    k->stdin_mon = zmq_socket(k->ks->zctx, ZMQ_PAIR);
    if (!k->stdin_mon
        || zmq_socket_monitor(k->sock[S_STDIN], ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0
        || zmq_connect(k->stdin_mon, ep) != 0)
        return cg_fail(err, errlen, CG_ESYS, "monitoring stdin: %s", zmq_strerror(errno));
    return CG_OK;
}

/* Opens and connects the gateway's sockets to the current process. */
static int
connect_sockets(struct kernel *k, const connfile_t *cf, char *err, size_t errlen)
{
    static const int types[S_COUNT] = { ZMQ_DEALER, ZMQ_SUB, ZMQ_DEALER, ZMQ_DEALER };
    char ep[512];
    unsigned char rid[16];

    /* Shell and stdin share one routing id, as jupyter_client's sockets do:
     * a kernel sends its input_request on stdin to the shell request's
     * identity, and a ROUTER drops what is addressed to no one. */
    if (getrandom(rid, sizeof rid, 0) != (ssize_t)sizeof rid)
        return cg_fail(err, errlen, CG_ESYS, "getrandom: %s", strerror(errno));
    rid[0] = 'g'; /* a leading zero byte is reserved by ZeroMQ */

    for (int s = 0; s < S_COUNT; s++) {
        int zero = 0, ivl = 20;
        k->sock[s] = zmq_socket(k->ks->zctx, types[s]);
        if (!k->sock[s])
            return cg_fail(err, errlen, CG_ESYS, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(k->sock[s], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(k->sock[s], ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        if (s == S_SHELL || s == S_STDIN)
            zmq_setsockopt(k->sock[s], ZMQ_ROUTING_ID, rid, sizeof rid);
        if (s == S_IOPUB)
            zmq_setsockopt(k->sock[s], ZMQ_SUBSCRIBE, "", 0);
        else /* a kernel that does not read never blocks the loop: EAGAIN */
            zmq_setsockopt(k->sock[s], ZMQ_SNDTIMEO, &zero, sizeof zero);
        if (s == S_STDIN && watch_stdin(k, err, errlen) != CG_OK)
            return CG_ESYS;
        connfile_endpoint(cf, sock_channel[s], ep, sizeof ep);
        if (zmq_connect(k->sock[s], ep) != 0)
            return cg_fail(err, errlen, CG_ESYS, "connect %s: %s", ep, zmq_strerror(errno));
    }
    return CG_OK;
}

/* True once k's stdin connection is up (reading what its monitor said):
 * a kernel's input_request to a client whose stdin socket has not yet
 * connected is dropped by its ROUTER, so a kernel is not ready before. */
static bool
stdin_connected(struct kernel *k)
{
    zmq_msg_t m;

    while (!k->stdin_up && k->stdin_mon) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, k->stdin_mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        uint16_t event = 0;
        bool first = zmq_msg_size(&m) >= 6; /* u16 event, u32 value; then the endpoint */
        if (first)
            memcpy(&event, zmq_msg_data(&m), sizeof event);
        k->stdin_up = first && event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
        zmq_msg_close(&m);
    }
    return k->stdin_up;
}

/* Marks k ready once its shell, iopub and stdin are known to work. */
static void
check_ready(struct kernel *k)
{
    if (!k->ready && k->replied && k->heard && stdin_connected(k)) {
        k->ready = k->ever_ready = true;
        snprintf(k->state, sizeof k->state, "idle");
    }
}

/* Sends a message the gateway itself makes; returns its msg_id in id. */
static int
send_own(struct kernel *k, int s, const char *type, json_t *content, char id[33])
{
    wire_msg_t *m = wire_msg_new(k->wire, type, NULL);
    int rc = CG_ENOMEM;

    if (m && content) {
        json_decref(m->content);
        m->content = json_incref(content);
    }
    if (m) {
        rc = wire_send(k->wire, k->sock[s], m);
        if (id)
            snprintf(id, 33, "%s", json_string_value(json_object_get(m->header, "msg_id")));
    }
    wire_msg_destroy(&m);
    json_decref(content);
    return rc;
}

/* Asks k for its kernel_info: its reply says the shell is connected, the
 * status it publishes around it that iopub is (jupyter_client's "nudge"). */
static int
nudge(struct kernel *k)
{
    k->nudged_at = clock_now();
    return send_own(k, S_SHELL, "kernel_info_request", NULL, k->info_id);
}

/* A new process for k: connection file, process, sockets, kernel_info. */
static int
launch(struct kernel *k, char *err, size_t errlen)
{
    connfile_t cf;
    char key[65];
    int rc;

    k->gen++;
    if ((rc = write_connfile(k, &cf, key, err, errlen)) != CG_OK)
        return rc;
    k->wire = wire_new(cf.scheme, key, 0, err, errlen);
    if (!k->wire)
        return CG_ENOMEM;
    if ((rc = connect_sockets(k, &cf, err, errlen)) != CG_OK)
        return rc;
    if ((rc = spawn(k, err, errlen)) != CG_OK)
        return rc;
    k->adopted = false;
    k->starttime = proc_starttime(k->pid);
    k->reason[0] = '\0';
    save_state(k);
    k->ready = k->replied = k->heard = false;
    snprintf(k->state, sizeof k->state, "starting");
    touch(k);
    return nudge(k);
}

/* Closes the gateway's sockets to k and drops its signing. */
static void
close_sockets(struct kernel *k)
{
    if (k->sock[S_STDIN] && k->stdin_mon)
        zmq_socket_monitor(k->sock[S_STDIN], NULL, 0);
    if (k->stdin_mon)
        zmq_close(k->stdin_mon);
    k->stdin_mon = NULL;
    for (int s = 0; s < S_COUNT; s++) {
        if (k->sock[s])
            zmq_close(k->sock[s]);
        k->sock[s] = NULL;
    }
    wire_destroy(&k->wire);
}

/* Asks the current process to exit and hands it to the reaper; closes the
 * sockets (control lingers so the request still leaves). */
static void
retire(struct kernel *k)
{
    if (k->pid > 0 && k->sock[S_CONTROL]) {
        int linger = 1000;
        send_own(k, S_CONTROL, "shutdown_request", json_pack("{s:b}", "restart", 0), NULL);
        zmq_setsockopt(k->sock[S_CONTROL], ZMQ_LINGER, &linger, sizeof linger);
    }
    close_sockets(k);
    struct retired *r = calloc(1, sizeof *r);
    if (r) {
        r->pid = k->pid;
        r->adopted = k->adopted;
        r->starttime = k->starttime;
        r->deadline = clock_now() + KERNELS_GRACE_S;
        snprintf(r->connfile, sizeof r->connfile, "%s", k->connfile);
        r->next = k->ks->retired;
        k->ks->retired = r;
    } else if (k->pid > 0) {
        kill(k->pid, SIGKILL);
    }
    k->pid = -1;
}

static void
free_kernel(struct kernel *k)
{
    json_decref(k->spec);
    json_decref(k->env);
    json_decref(k->conn);
    free(k);
}

/* A new kernel in the table (pooled or not), its process launched. */
static int
start_kernel(struct kernels *ks, const char *name, const json_t *spec, const json_t *env,
             bool pooled, struct kernel **out, char *err, size_t errlen)
{
    struct kernel *k = calloc(1, sizeof *k);
    int rc;

    *out = NULL;
    if (!k)
        return cg_fail(err, errlen, CG_ENOMEM, "no memory");
    k->ks = ks;
    k->pid = -1;
    char hex[33];
    wire_new_id(hex); /* as 8-4-4-4-12: jupyter_server's routes expect dashes */
    snprintf(k->id, sizeof k->id, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    snprintf(k->name, sizeof k->name, "%s", name);
    k->spec = json_deep_copy(spec);
    k->env = json_is_object(env) ? json_deep_copy(env) : NULL;
    k->pooled = pooled;
    if ((rc = launch(k, err, errlen)) != CG_OK) {
        drop_state(k);
        retire(k);
        free_kernel(k);
        return rc;
    }
    k->next = ks->head;
    ks->head = k;
    *out = k;
    log_info("kernel %s (%s) started, pid %d", k->id, name, (int)k->pid);
    return CG_OK;
}

int
kernels_start(struct kernels *ks, const char *name, const json_t *spec, const json_t *env,
              struct kernel **out, char *err, size_t errlen)
{
    return start_kernel(ks, name, spec, env, false, out, err, errlen);
}

int
kernel_send(struct kernel *k, const char *channel, const wire_msg_t *m)
{
    int s = -1;
    for (int i = 0; i < S_COUNT; i++)
        if (i != S_IOPUB && strcmp(channel, sock_names[i]) == 0)
            s = i;
    if (s < 0)
        return CG_EINVAL;
    if (!k->sock[s])
        return CG_ESYS;
    touch(k);
    return wire_send(k->wire, k->sock[s], m);
}

int
kernel_interrupt(struct kernel *k)
{
    const char *mode = json_string_value(json_object_get(k->spec, "interrupt_mode"));
    if (mode && strcmp(mode, "message") == 0)
        return send_own(k, S_CONTROL, "interrupt_request", NULL, NULL);
    if (k->pid > 0 && kill(k->pid, SIGINT) != 0)
        return CG_ESYS;
    return CG_OK;
}

/* Tells clients about a state change: an iopub status the gateway makes,
 * with k's reason when it is dead. */
static void
publish_status(struct kernel *k, const char *state)
{
    wire_msg_t *m = k->wire ? wire_msg_new(k->wire, "status", NULL) : NULL;
    if (!m)
        return;
    json_object_set_new(m->content, "execution_state", json_string(state));
    if (strcmp(state, "dead") == 0 && k->reason[0])
        json_object_set_new(m->content, "reason", json_string(k->reason));
    k->ks->sink.on_msg(k->ks->sink.ctx, k, "iopub", m);
    wire_msg_destroy(&m);
}

/* A new process for k, clients told "restarting" first. */
static int
relaunch(struct kernel *k, char *err, size_t errlen)
{
    publish_status(k, "restarting");
    retire(k);
    int rc = launch(k, err, errlen);
    log_info("kernel %s restarted, pid %d", k->id, (int)k->pid);
    return rc;
}

int
kernel_restart(struct kernel *k, char *err, size_t errlen)
{
    k->restarts = 0; /* asked for: the automatic ones count afresh */
    return relaunch(k, err, errlen);
}

void
kernels_delete(struct kernels *ks, struct kernel **kp)
{
    struct kernel *k = *kp;
    if (!k)
        return;
    for (struct kernel **pp = &ks->head; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    drop_state(k);
    retire(k);
    log_info("kernel %s deleted", k->id);
    free_kernel(k);
    *kp = NULL;
}

size_t
kernels_pollitems(const struct kernels *ks, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;
    for (const struct kernel *k = ks->head; k; k = k->next)
        for (int s = 0; s < S_COUNT && n < max; s++)
            items[n++] = (zmq_pollitem_t){ .socket = k->sock[s], .events = ZMQ_POLLIN };
    return n;
}

/* One message from socket s of k: bookkeeping, then to the sink. */
static void
take(struct kernel *k, int s, const wire_msg_t *m)
{
    const char *type = wire_msg_type(m);

    touch(k);
    const char *parent = json_string_value(json_object_get(m->parent, "msg_id"));
    const char *psession = json_string_value(json_object_get(m->parent, "session"));
    bool own = psession && strcmp(psession, wire_session(k->wire)) == 0;
    /* The status around the gateway's own requests says nothing of a
     * client's work (and may overtake their replies); until it is ready a
     * kernel is "starting", then idle. */
    if (s == S_IOPUB && !own && k->ready && strcmp(type, "status") == 0) {
        const char *st = json_string_value(json_object_get(m->content, "execution_state"));
        if (st && strlen(st) < sizeof k->state)
            snprintf(k->state, sizeof k->state, "%s", st);
    }
    /* Ready once both ways work: a kernel_info_reply proves the shell, any
     * iopub message the subscription (a SUB socket joins late: what the
     * kernel publishes before is lost, so a client's first cell would
     * lose its output). */
    k->heard |= s == S_IOPUB;
    k->replied |= s == S_SHELL && parent && strcmp(parent, k->info_id) == 0;
    check_ready(k);
    /* A reply to a request of the gateway's own session (its
     * kernel_info_requests, the interrupt_request of POST .../interrupt): no
     * client asked, as with jupyter_server, whose KernelManager keeps its
     * control replies. */
    if (s != S_IOPUB && own)
        return;
    k->ks->sink.on_msg(k->ks->sink.ctx, k, sock_names[s], m);
}

void
kernels_handle(struct kernels *ks, const zmq_pollitem_t *items, size_t n)
{
    size_t i = 0;
    for (struct kernel *k = ks->head; k && i < n; k = k->next) {
        for (int s = 0; s < S_COUNT && i < n; s++, i++) {
            if (!(items[i].revents & ZMQ_POLLIN) || items[i].socket != k->sock[s])
                continue;
            for (int burst = 0; burst < RECV_BURST; burst++) {
                wire_msg_t *m = NULL;
                char err[256];
                int rc = wire_recv(k->wire, k->sock[s], ZMQ_DONTWAIT, &m, err, sizeof err);
                if (rc == CG_ESYS)
                    break;
                if (rc != CG_OK) {
                    log_warn("kernel %s: %s: dropped a message: %s", k->id, sock_names[s], err);
                    continue;
                }
                take(k, s, m);
                wire_msg_destroy(&m);
            }
        }
    }
}

int
kernels_pool(struct kernels *ks, const char *name, const json_t *spec, size_t size)
{
    if (ks->n_pools == POOLS_MAX || strlen(name) >= sizeof ks->pools[0].name)
        return CG_ETOOBIG;
    struct pool *p = &ks->pools[ks->n_pools];
    snprintf(p->name, sizeof p->name, "%s", name);
    if (!(p->spec = json_deep_copy(spec)))
        return CG_ENOMEM;
    p->size = size;
    ks->n_pools++;
    return CG_OK;
}

/* Does env carry a variable that must reach a new process (KERNEL_*)? */
static bool
wants_own_process(const json_t *env)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)env, key, v)
        if (strncmp(key, "KERNEL_", 7) == 0)
            return true;
    return false;
}

struct kernel *
kernels_take(struct kernels *ks, const char *name, const json_t *env)
{
    if (json_is_object(env) && wants_own_process(env))
        return NULL;
    for (struct kernel *k = ks->head; k; k = k->next)
        if (k->pooled && k->ready && k->pid > 0 && strcmp(k->name, name) == 0) {
            k->pooled = false;
            touch(k);
            save_state(k);
            log_info("kernel %s (%s) taken from the pool", k->id, name);
            return k;
        }
    return NULL;
}

/* Keeps each pool full: dead pooled kernels go, new ones start - one at a
 * time, and none while another kernel is starting (one asked for, a
 * restart), so a refill never slows the requests the pool could not serve. */
static void
fill_pools(struct kernels *ks)
{
    for (struct kernel *k = ks->head, *next; k; k = next) {
        next = k->next;
        if (k->pooled && k->pid < 0) {
            struct kernel *dead = k;
            kernels_delete(ks, &dead);
        }
    }
    double now = clock_now();
    for (const struct kernel *k = ks->head; k; k = k->next)
        if (!k->ready && k->pid > 0 && now - k->active_at < POOL_WAIT_S)
            return;
    for (size_t i = 0; i < ks->n_pools; i++) {
        struct pool *p = &ks->pools[i];
        size_t have = 0;
        for (const struct kernel *k = ks->head; k; k = k->next)
            have += k->pooled && strcmp(k->name, p->name) == 0;
        if (have < p->size) {
            struct kernel *k;
            char err[256];
            if (start_kernel(ks, p->name, p->spec, NULL, true, &k, err, sizeof err) != CG_OK)
                log_warn("pool %s: %s", p->name, err);
            return;
        }
    }
}

/* True once the process of k exited; *status its wait status (-1 when it
 * was adopted: not our child, its status is its old parent's). */
static bool
exited(struct kernel *k, double now, int *status)
{
    *status = -1;
    if (!k->adopted)
        return waitpid(k->pid, status, WNOHANG) == k->pid;
    if (now - k->checked_at < ALIVE_CHECK_S)
        return false;
    k->checked_at = now;
    return proc_starttime(k->pid) != k->starttime;
}

/* The process of k died: restarted, as jupyter_client's KernelRestarter
 * does, unless it never worked (a kernel that cannot start) or it was
 * restarted restart_limit times already, each dying within
 * KERNELS_STABLE_S; then k is dead, with the reason. */
static void
on_death(struct kernel *k, int status, double now)
{
    struct kernels *ks = k->ks;
    char err[256];

    if (now - k->restarted_at > KERNELS_STABLE_S)
        k->restarts = 0;
    if (k->ever_ready && k->restarts < ks->restart_limit) {
        k->restarts++;
        k->restarted_at = now;
        log_warn("kernel %s: restarting it (%u of at most %u in a row)", k->id, k->restarts,
                 ks->restart_limit);
        if (relaunch(k, err, sizeof err) == CG_OK)
            return;
        snprintf(k->reason, sizeof k->reason, "its process died and a new one could not "
                 "start: %.150s", err);
    } else if (k->ever_ready) {
        snprintf(k->reason, sizeof k->reason, "its process died %u times, each within %.0f s "
                 "of a restart: gave up (POST .../restart to try again)", k->restarts + 1,
                 KERNELS_STABLE_S);
    } else {
        snprintf(k->reason, sizeof k->reason, "its process exited before it answered "
                 "(status %d)", status);
    }
    snprintf(k->state, sizeof k->state, "dead");
    log_warn("kernel %s: dead: %s", k->id, k->reason);
    publish_status(k, "dead");
}

/* Reaps retired processes, SIGKILLs those past their grace. */
static void
reap_retired(struct kernels *ks, double now)
{
    int status;

    for (struct retired **pp = &ks->retired; *pp;) {
        struct retired *r = *pp;
        pid_t w = r->pid <= 0 ? r->pid
                  : r->adopted ? (proc_starttime(r->pid) == r->starttime ? 0 : r->pid)
                               : waitpid(r->pid, &status, WNOHANG);
        if (w != 0) {
            unlink(r->connfile);
            *pp = r->next;
            free(r);
            continue;
        }
        if (now > r->deadline) {
            kill(r->pid, SIGKILL);
            r->deadline = now + 60;
        }
        pp = &r->next;
    }
}

void
kernels_tick(struct kernels *ks)
{
    double now = clock_now();
    int status;

    reap_retired(ks, now);
    for (struct kernel *k = ks->head; k; k = k->next) {
        if (k->pid > 0 && k->replied && !k->heard && now - k->nudged_at > NUDGE_S)
            nudge(k); /* its iopub is not subscribed yet: a status will say so */
        check_ready(k); /* the stdin handshake may come last */
        if (k->pid > 0 && exited(k, now, &status)) {
            log_warn("kernel %s: process %d exited (status %d)", k->id, (int)k->pid, status);
            k->pid = -1;
            on_death(k, status, now);
        }
    }
    fill_pools(ks);
}

void
kernels_set_restart_limit(struct kernels *ks, unsigned limit)
{
    ks->restart_limit = limit;
}

/* Closes k's sockets and frees it; its process runs on (kernels_release). */
static void
let_go(struct kernel *k)
{
    close_sockets(k);
    free_kernel(k);
}

/* Re-adopts the kernel whose model j was read from path: its process must
 * still be the one the model names (pid and start time). Otherwise the
 * model is removed. */
static void
adopt_one(struct kernels *ks, const json_t *j, const char *path)
{
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *cfpath = json_string_value(json_object_get(j, "connection_file"));
    json_t *spec = json_object_get(j, "spec"), *env = json_object_get(j, "env");
    json_t *conn = json_object_get(j, "connection");
    json_int_t pid = json_integer_value(json_object_get(j, "pid"));
    unsigned long long st = (unsigned long long)json_integer_value(json_object_get(j,
                                                                               "starttime"));
    char err[256] = "", *text = NULL;
    connfile_t cf = { 0 };
    struct kernel *k = NULL;

    if (!id || strlen(id) != 36 || strspn(id, "0123456789abcdef-") != 36 || !name
        || strlen(name) >= sizeof k->name || !cfpath || strlen(cfpath) >= sizeof k->connfile
        || !json_is_object(spec) || !json_is_object(conn) || pid <= 1 || pid > INT32_MAX) {
        log_warn("%s: not a kernel's model: removed", path);
        goto drop;
    }
    if (!st || proc_starttime((pid_t)pid) != st) {
        log_info("kernel %s: its process %d is gone: forgotten", id, (int)pid);
        unlink(cfpath);
        goto drop;
    }
    if (!(k = calloc(1, sizeof *k)))
        goto drop;
    k->ks = ks;
    snprintf(k->id, sizeof k->id, "%s", id);
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->connfile, sizeof k->connfile, "%s", cfpath);
    k->spec = json_deep_copy(spec);
    k->env = json_is_object(env) ? json_deep_copy(env) : NULL;
    k->conn = json_deep_copy(conn);
    k->pid = (pid_t)pid;
    k->starttime = st;
    k->adopted = k->ever_ready = true;
    k->gen = (unsigned)json_integer_value(json_object_get(j, "gen"));
    text = json_dumps(conn, JSON_COMPACT);
    if (!text || connfile_parse(text, strlen(text), &cf, err, sizeof err) != CG_OK
        || !(k->wire = wire_new(cf.scheme, cf.key, 0, err, sizeof err))
        || connect_sockets(k, &cf, err, sizeof err) != CG_OK) {
        log_warn("kernel %s: cannot reconnect to process %d (%s): shut down", id, (int)pid, err);
        retire(k); /* not ours to use: SIGKILL after the grace */
        goto drop;
    }
    snprintf(k->state, sizeof k->state, "starting");
    touch(k);
    k->next = ks->head;
    ks->head = k;
    if (json_is_true(json_object_get(j, "pooled"))) {
        /* A pooled kernel holds nothing of anyone's: a fresh pool is made. */
        kernels_delete(ks, &k);
        goto out;
    }
    nudge(k);
    log_info("kernel %s (%s) re-adopted, pid %d", id, name, (int)pid);
    if (ks->sink.on_adopted)
        ks->sink.on_adopted(ks->sink.ctx, k);
    goto out;
drop:
    unlink(path);
    if (k)
        free_kernel(k);
out:
    connfile_clear(&cf);
    free(text);
}

size_t
kernels_persist(struct kernels *ks, const char *statedir)
{
    char path[4400];
    size_t before = kernels_count(ks);

    snprintf(ks->statedir, sizeof ks->statedir, "%s", statedir);
    DIR *d = opendir(statedir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", statedir, e->d_name);
        if (strcmp(e->d_name + n - 4, ".tmp") == 0) {
            unlink(path); /* a model half written when the gateway died */
            continue;
        }
        if (strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        adopt_one(ks, j, path);
        json_decref(j);
    }
    if (d)
        closedir(d);
    return kernels_count(ks) - before;
}

/* Waits for the retired processes (SIGKILL after their grace) and forgets
 * them. */
static void
finish_retired(struct kernels *ks)
{
    double until = clock_now() + KERNELS_GRACE_S + 1;
    while (ks->retired && clock_now() < until) {
        kernels_tick(ks);
        usleep(20000);
    }
    for (struct retired *r = ks->retired, *next; r; r = next) {
        next = r->next;
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            if (!r->adopted)
                waitpid(r->pid, NULL, 0);
        }
        unlink(r->connfile);
        free(r);
    }
    ks->retired = NULL;
}

void
kernels_release(struct kernels **ksp)
{
    struct kernels *ks = ksp ? *ksp : NULL;
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n_pools; i++)
        json_decref(ks->pools[i].spec);
    ks->n_pools = 0;
    while (ks->head) {
        struct kernel *k = ks->head;
        if (k->pooled) {
            kernels_delete(ks, &k);
            continue;
        }
        ks->head = k->next;
        log_info("kernel %s: left running (pid %d)", k->id, (int)k->pid);
        let_go(k);
    }
    finish_retired(ks);
    free(ks);
    *ksp = NULL;
}

void
kernels_destroy(struct kernels **ksp)
{
    struct kernels *ks = ksp ? *ksp : NULL;
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n_pools; i++)
        json_decref(ks->pools[i].spec);
    ks->n_pools = 0; /* no refills while stopping */
    while (ks->head) {
        struct kernel *k = ks->head;
        kernels_delete(ks, &k);
    }
    finish_retired(ks);
    free(ks);
    *ksp = NULL;
}
