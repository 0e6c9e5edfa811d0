/*
 * kernel.c - the Jupyter kernel: sockets, signals, the event loop, the box
 * and sending messages (see kernel.h; cell.c and handlers.c hold the rest,
 * kernel_impl.h what they share).
 *
 * One thread serves everything except the heartbeat, which echoes in its
 * own thread so a busy kernel never looks dead. The loop polls control
 * first, then the runtimes' fds, then shell. A shell request that needs a
 * runtime (execute, complete, inspect, is_complete) stays "pending" until
 * the driver answers; meanwhile shell is not read (Jupyter serialises
 * shell requests) but control is, so interrupt and shutdown always work.
 */
#include "kernel/kernel_impl.h"
#include "kernel/tools/tools.h"

#include "kernel/displayd.h"

double
kernel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- sending ------------------------------------------------------------ */

/* Sends a built message on sock and frees it. */
void
kernel_send_built(struct kernel *k, void *sock, wire_msg_t *m)
{
    if (sock == k->sock[CH_IOPUB]) {
        /* IOPub carries no routing identities. */
        for (size_t i = 0; i < m->n_idents; i++)
            free(m->idents[i].data);
        free(m->idents);
        m->idents = NULL;
        m->n_idents = 0;
    }
    if (wire_send(k->wire, sock, m) != CG_OK)
        log_warn("sending %s: %s", wire_msg_type(m), zmq_strerror(errno));
    wire_msg_destroy(&m);
}

/* Sends a message of type with content (stolen) to sock, parented by req. */
void
kernel_send(struct kernel *k, void *sock, const wire_msg_t *req, const char *type, json_t *content)
{
    wire_msg_t *m = wire_msg_new(k->wire, type, req);

    if (!m || !content) {
        log_error("out of memory building %s", type);
        json_decref(content);
        wire_msg_destroy(&m);
        return;
    }
    json_decref(m->content);
    m->content = content;
    kernel_send_built(k, sock, m);
}

/* Publishes stream output: len bytes of valid UTF-8. The content is
 * serialised directly, the hot path for large output. */
void
kernel_publish_stream(struct kernel *k, const wire_msg_t *parent, const char *name, const char *text,
               size_t len)
{
    wire_msg_t *m = wire_msg_new(k->wire, "stream", parent);
    size_t cap = 6 * len + 64;
    char *j = m ? malloc(cap) : NULL;

    if (!j) {
        log_error("out of memory publishing output");
        wire_msg_destroy(&m);
        return;
    }
    int n = snprintf(j, cap, "{\"name\":\"%s\",\"text\":\"", name);
    size_t used = (size_t)n + wire_json_escape(text, len, j + n);
    memcpy(j + used, "\"}", 3);
    m->content_json = j;
    kernel_send_built(k, k->sock[CH_IOPUB], m);
}

void
kernel_publish(struct kernel *k, const wire_msg_t *parent, const char *type, json_t *content)
{
    kernel_send(k, k->sock[CH_IOPUB], parent, type, content);
}

void
kernel_publish_status(struct kernel *k, const wire_msg_t *parent, const char *state)
{
    kernel_publish(k, parent, "status", json_pack("{s:s}", "execution_state", state));
}

/* A reply type for a request type: "execute_request" -> "execute_reply". */
static void
reply_type(const char *req_type, char *buf, size_t len)
{
    size_t n = strlen(req_type);
    if (n > 8 && strcmp(req_type + n - 8, "_request") == 0)
        n -= 8;
    snprintf(buf, len, "%.*s_reply", (int)n, req_type);
}

void
kernel_reply(struct kernel *k, void *sock, const wire_msg_t *req, json_t *content)
{
    char type[96];

    reply_type(wire_msg_type(req), type, sizeof type);
    kernel_send(k, sock, req, type, content);
}

json_t *
kernel_error_content(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s, s:[s]}", "status", "error", "ename", ename, "evalue",
                     evalue, "traceback", evalue);
}

/* ---- request fields ----------------------------------------------------- */

bool
kernel_bool_field(const wire_msg_t *m, const char *name, bool dflt)
{
    json_t *v = json_object_get(m->content, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

const char *
kernel_str_field(const wire_msg_t *m, const char *name)
{
    return json_string_value(json_object_get(m->content, name));
}

/* ---- output parents ----------------------------------------------------- */

const wire_msg_t *
kernel_output_parent(const struct kernel *k)
{
    return k->p.kind != PR_NONE ? k->p.req : k->last_exec;
}

/* ---- process housekeeping ----------------------------------------------- */

/* Reaps every exited child: drivers, and orphans that were re-parented to
 * us (we are a child subreaper, so nothing a runtime starts escapes). */
static void box_gone(struct kernel *k, const char *why);

void
kernel_reap_children(struct kernel *k)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (k->box && pid == box_init_pid(k->box)) {
            box_gone(k, "its init exited");
            continue;
        }
        for (size_t i = 0; i < langs_count() && !k->box; i++)
            if (k->rts[i] && runtime_pid(k->rts[i]) == pid)
                cell_runtime_ended(k, k->rts[i], status);
        tools_exited(k, pid, status, false);
    }
}

/* A process started in the box ended (its init told us). */
void
kernel_on_box_exit(void *ctx, pid_t pid, int status)
{
    struct kernel *k = ctx;

    for (size_t i = 0; i < langs_count(); i++)
        if (k->rts[i] && runtime_pid(k->rts[i]) == pid)
            cell_runtime_ended(k, k->rts[i], status);
    tools_exited(k, pid, status, true);
}

/* The box's init is gone, and every process in the box with it. The box
 * cannot be rebuilt in a running kernel (it is forked before any thread
 * exists): cells say so, and a restart gives a fresh box. */
static void
box_gone(struct kernel *k, const char *why)
{
    log_error("the box is gone: %s", why);
    snprintf(k->box_error, sizeof k->box_error, "the box is gone (%s): restart the kernel for "
             "a fresh one", why);
    for (size_t i = 0; i < langs_count(); i++)
        if (k->rts[i] && runtime_alive(k->rts[i]))
            cell_runtime_ended(k, k->rts[i], SIGKILL);
    tools_abort(k, "RuntimeUnavailable", k->box_error);
    tools_destroy(k); /* its processes died with the box */
    box_destroy(&k->box);
}

static void
serve_signals(struct kernel *k)
{
    struct signalfd_siginfo si;

    while (read(k->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGINT:
            handlers_interrupt(k); /* jupyter_client's interrupt_mode "signal" */
            break;
        case SIGCHLD:
            kernel_reap_children(k);
            break;
        default:
            log_info("signal %u: shutting down", si.ssi_signo);
            k->quit = true;
        }
    }
}

static void *
heartbeat_main(void *sock)
{
    /* Echo every ping back to its sender until the context terminates. */
    zmq_proxy(sock, sock, NULL);
    zmq_close(sock);
    return NULL;
}

/* ---- set-up and tear-down ----------------------------------------------- */

static int
open_sockets(struct kernel *k, char *err, size_t errlen)
{
    static const int types[CH_COUNT] = {
        [CH_SHELL] = ZMQ_ROUTER, [CH_IOPUB] = ZMQ_XPUB, [CH_STDIN] = ZMQ_ROUTER,
        [CH_CONTROL] = ZMQ_ROUTER, [CH_HB] = ZMQ_ROUTER,
    };
    char ep[320];

    k->zctx = zmq_ctx_new();
    if (!k->zctx)
        return cg_fail(err, errlen, CG_ESYS, "zmq_ctx_new: %s", zmq_strerror(errno));
    for (int ch = 0; ch < CH_COUNT; ch++) {
        int linger = ch == CH_HB ? 0 : 1000;
        int64_t maxsize = (int64_t)WIRE_DEFAULT_MAX_BYTES;
        k->sock[ch] = zmq_socket(k->zctx, types[ch]);
        if (!k->sock[ch])
            return cg_fail(err, errlen, CG_ESYS, "zmq_socket: %s", zmq_strerror(errno));
        zmq_setsockopt(k->sock[ch], ZMQ_LINGER, &linger, sizeof linger);
        /* A frame larger than a whole message may be is refused by ZeroMQ
         * itself, before it costs us memory. */
        zmq_setsockopt(k->sock[ch], ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
        if (ch == CH_IOPUB) {
            /* See every subscription, so each new subscriber is greeted. */
            int verbose = 1;
            zmq_setsockopt(k->sock[ch], ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose);
        }
        if (connfile_endpoint(&k->conn, (enum channel)ch, ep, sizeof ep) != CG_OK)
            return cg_fail(err, errlen, CG_ETOOBIG, "endpoint too long");
        if (zmq_bind(k->sock[ch], ep) != 0)
            return cg_fail(err, errlen, CG_ESYS, "cannot bind %s (%s): %s",
                           connfile_port_name((enum channel)ch), ep, zmq_strerror(errno));
    }
    return CG_OK;
}

static void
teardown(struct kernel *k)
{
    for (size_t i = 0; i < MAX_LANGS; i++)
        if (k->rts[i])
            runtime_kill(k->rts[i]);
    tools_destroy(k);
    /* Everything started under us, orphans and disowned jobs included
     * (we are their subreaper), up to a second for them to die. */
    spawn_kill_descendants(1000);
    for (size_t i = 0; i < MAX_LANGS; i++)
        runtime_destroy(&k->rts[i]);
    box_destroy(&k->box);
    displayd_destroy(&k->displayd);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    cell_clear(k);
    wire_msg_destroy(&k->last_exec);
    for (size_t i = 0; i < k->backlog_len; i++)
        wire_msg_destroy(&k->backlog[i]);
    free(k->backlog);
    free(k->backlog_abort);
    if (k->zctx) {
        zmq_ctx_shutdown(k->zctx); /* ends the heartbeat's proxy */
        if (k->hb_started)
            pthread_join(k->hb_thread, NULL);
        else if (k->sock[CH_HB])
            zmq_close(k->sock[CH_HB]);
        for (int ch = 0; ch < CH_COUNT; ch++)
            if (ch != CH_HB && k->sock[ch])
                zmq_close(k->sock[ch]);
        zmq_ctx_term(k->zctx);
    }
    if (k->sigfd >= 0)
        close(k->sigfd);
    history_destroy(&k->hist);
    wire_destroy(&k->wire);
    connfile_clear(&k->conn);
}

/* The kernel's id for the host directory of /mnt/data: the connection
 * file's name without "kernel-" and ".json" (what Jupyter calls the kernel
 * id), else this process's session id. */
static void
kernel_id(const char *connection_file, const char *session, char *out, size_t len)
{
    const char *base = strrchr(connection_file, '/');
    base = base ? base + 1 : connection_file;
    if (strncmp(base, "kernel-", 7) == 0)
        base += 7;
    size_t n = strcspn(base, ".");
    if (n == 0 || n > 64 || strchr(base, '/'))
        snprintf(out, len, "%s", session);
    else
        snprintf(out, len, "%.*s", (int)n, base);
}

/* Builds the box; on failure remembers why, so every cell can say it (a
 * kernel never falls back to running code unboxed on its own). */
static void
make_box(struct kernel *k, const struct kernel_opts *opts)
{
    char id[80], data[4096], name[96], err[512];

    kernel_id(opts->connection_file, wire_session(k->wire), id, sizeof id);
    snprintf(data, sizeof data, "%s/%s", opts->state_dir, id);
    snprintf(name, sizeof name, "kernel-%s", id);
    struct box_opts bo = { .data_dir = data, .keep_data = opts->keep_data, .name = name,
                           .limits = opts->limits };
    k->box = box_new(&bo, err, sizeof err);
    if (!k->box) {
        snprintf(k->box_error, sizeof k->box_error, "%s", err);
        log_error("%s", err);
    }
}

/* Blocks the signals we serve through a signalfd. Done before any thread
 * starts, so ZeroMQ's threads inherit the mask and never take them. */
static int
setup_signals(struct kernel *k)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    k->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return k->sigfd < 0 ? -1 : 0;
}

/* True when the process that started us is gone (we were re-parented). */
static bool
parent_gone(const struct kernel *k)
{
    return k->ppid > 1 && getppid() != k->ppid;
}

/* ---- the loop ----------------------------------------------------------- */

/* Starts the main language's runtime ahead of the first cell, once. */
static void
prestart(struct kernel *k)
{
    char err[512];

    if (!k->prestart)
        return;
    k->prestart = false;
    if (k->p.kind == PR_NONE && !cell_runtime(k, k->primary, err, sizeof err))
        log_warn("%s", err);
}

static void
loop(struct kernel *k)
{
    struct rt_sink sink = cell_sink(k);
    zmq_pollitem_t items[6 + MAX_LANGS * RT_POLL_ITEMS + DISPLAYD_POLL_ITEMS + TOOLS_POLL_ITEMS];
    size_t rt_at[MAX_LANGS], rt_n[MAX_LANGS], disp_at, disp_n, tools_at, tools_n;
    char err[256];

    while (!k->quit) {
        size_t n = 0;
        /* Tool deadlines first: a job that ends here polls nothing below. */
        double deadline = k->p.kind == PR_TOOL ? tools_tick(k) : cell_tick(k);
        items[n++] = (zmq_pollitem_t){ .socket = k->sock[CH_CONTROL], .events = ZMQ_POLLIN };
        items[n++] = (zmq_pollitem_t){ .fd = k->sigfd, .events = ZMQ_POLLIN };
        items[n++] = (zmq_pollitem_t){ .socket = k->sock[CH_STDIN],
                                       .events = k->p.input_waiting ? ZMQ_POLLIN : 0 };
        items[n++] = (zmq_pollitem_t){ .socket = k->sock[CH_SHELL],
                                       .events = k->p.kind == PR_NONE && !k->backlog_len
                                                     ? ZMQ_POLLIN : 0 };
        items[n++] = (zmq_pollitem_t){ .socket = k->sock[CH_IOPUB], .events = ZMQ_POLLIN };
        items[n++] = (zmq_pollitem_t){ .fd = k->box ? box_fd(k->box) : -1,
                                       .events = k->box ? ZMQ_POLLIN : 0 };
        for (size_t i = 0; i < langs_count(); i++) {
            rt_at[i] = n;
            rt_n[i] = k->rts[i] ? runtime_poll_items(k->rts[i], &items[n]) : 0;
            n += rt_n[i];
        }
        disp_at = n;
        disp_n = displayd_poll_items(k, &items[n]);
        n += disp_n;
        tools_at = n;
        tools_n = tools_poll_items(k, &items[n]);
        n += tools_n;
        bool ready = (k->backlog_len && k->p.kind == PR_NONE) || k->prestart;
        long wait_ms = ready ? 0 : PARENT_CHECK_MS;
        long disp_ms = displayd_wait_ms(k);
        if (disp_ms >= 0 && disp_ms < wait_ms)
            wait_ms = disp_ms;
        if (deadline) {
            double left = deadline - kernel_now();
            wait_ms = left <= 0 ? 0 : left * 1000 < wait_ms ? (long)(left * 1000) + 1 : wait_ms;
        }
        int rc = zmq_poll(items, (int)n, wait_ms);
        if (rc < 0 && errno != EINTR) {
            log_error("zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (parent_gone(k)) {
            log_info("parent process is gone: shutting down");
            break;
        }
        if (rc <= 0) {
            displayd_service(k, NULL, 0); /* drops clients whose time is up */
            handlers_serve_backlog(k);
            prestart(k);
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN)
            for (int i = 0; i < 16 && !k->quit; i++) /* several, but bounded */
                handlers_dispatch(k, CH_CONTROL);
        if (items[1].revents & ZMQ_POLLIN)
            serve_signals(k);
        if (items[4].revents & ZMQ_POLLIN)
            handlers_serve_subscriptions(k);
        if (k->box && (items[5].revents & ZMQ_POLLIN)
            && box_events(k->box, kernel_on_box_exit, k) != CG_OK)
            box_gone(k, "its init exited");
        for (size_t i = 0; i < langs_count() && !k->quit; i++) {
            struct runtime *rt = k->rts[i];
            if (!rt || !rt_n[i])
                continue;
            if (runtime_service(rt, &items[rt_at[i]], rt_n[i], &sink, err, sizeof err) != CG_OK) {
                log_error("%s: killing the runtime", err);
                runtime_kill(rt); /* its death is reported when it is reaped */
            }
        }
        /* After the runtimes: a display follows what the cell printed. */
        displayd_service(k, &items[disp_at], disp_n);
        if (tools_n && !k->quit)
            tools_service(k, &items[tools_at], tools_n);
        if ((items[2].revents & ZMQ_POLLIN) && k->p.input_waiting)
            handlers_serve_stdin(k);
        handlers_serve_backlog(k);
        if ((items[3].revents & ZMQ_POLLIN) && k->p.kind == PR_NONE && !k->backlog_len
            && !k->quit)
            handlers_dispatch(k, CH_SHELL);
        prestart(k);
    }
}

int
kernel_run(const struct kernel_opts *opts)
{
    struct kernel k = { .sigfd = -1 };
    char err[512];
    int status = 1;

    log_init();
    k.primary = opts->primary;
    k.output_limit = opts->output_limit;
    k.color = opts->color;
    k.ppid = getppid();
    const char *jpy = getenv("JPY_PARENT_PID");
    if (jpy && strtol(jpy, NULL, 10) > 1)
        k.ppid = (pid_t)strtol(jpy, NULL, 10);
    if (langs_count() > MAX_LANGS) {
        fprintf(stderr, "cellgate: too many languages\n");
        return 1;
    }
    /* Orphans of runtimes come back to us, so shutdown can end them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    if (connfile_load(opts->connection_file, &k.conn, err, sizeof err) != CG_OK) {
        fprintf(stderr, "cellgate: %s\n", err);
        goto out;
    }
    k.wire = wire_new(k.conn.scheme, k.conn.key, 0, err, sizeof err);
    k.hist = history_new();
    if (!k.wire || !k.hist) {
        fprintf(stderr, "cellgate: %s\n", k.wire ? "out of memory" : err);
        goto out;
    }
    k.limits = opts->limits;
    if (!opts->no_sandbox)
        make_box(&k, opts);
    k.displayd = displayd_new(&k, err, sizeof err);
    if (!k.displayd)
        log_warn("cellgate-display will not work: %s", err);
    if (setup_signals(&k) < 0) {
        fprintf(stderr, "cellgate: cannot set up signal handling: %s\n", strerror(errno));
        goto out;
    }
    if (open_sockets(&k, err, sizeof err) != CG_OK) {
        fprintf(stderr, "cellgate: %s\n", err);
        goto out;
    }
    if (pthread_create(&k.hb_thread, NULL, heartbeat_main, k.sock[CH_HB]) != 0) {
        fprintf(stderr, "cellgate: cannot start the heartbeat thread\n");
        goto out;
    }
    k.hb_started = true;
    kernel_publish_status(&k, NULL, "starting");
    /* The main language's driver starts in the loop's first turn, after
     * any kernel_info already waiting, so the first cell need not wait. */
    k.prestart = true;
    loop(&k);
    status = 0;
out:
    teardown(&k);
    return status;
}
