/*
 * handlers.c - the allowlist: the request types the kernel answers, on
 * which channel, and their handlers; plus serving shell, control, stdin and
 * IOPub subscriptions (see kernel_impl.h). Unknown requests are refused.
 */
#include "kernel/kernel_impl.h"
#include "kernel/tools/tools.h"

/* ---- handlers ----------------------------------------------------------- */

enum { H_DONE, H_PENDING };          /* handler results */
enum { ON_SHELL = 1, ON_CONTROL = 2 }; /* where a request type is accepted */

typedef int (*handler_fn)(struct kernel *k, void *sock, wire_msg_t *req);

static int
h_kernel_info(struct kernel *k, void *sock, wire_msg_t *req)
{
    const struct lang *l = k->primary;
    struct runtime *rt = k->rts[langs_index(l)];
    const char *version = rt && runtime_version(rt) ? runtime_version(rt)
                                                    : getenv("CELLGATE_LANGUAGE_VERSION");

    kernel_reply(k, sock, req,
          json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:[],"
                    " s:b}",
                    "status", "ok", "protocol_version", WIRE_PROTOCOL_VERSION, "implementation",
                    "cellgate", "implementation_version", CELLGATE_VERSION, "language_info",
                    "name", l->language, "version", version ? version : "", "mimetype",
                    l->mimetype, "file_extension", l->file_extension, "pygments_lexer",
                    l->pygments_lexer, "codemirror_mode", l->codemirror_mode,
                    "nbconvert_exporter", l->nbconvert_exporter, "banner", l->banner,
                    "help_links", "debugger", 0));
    return H_DONE;
}

/* Starts a pending request on the runtime for the cell's language. Returns
 * the runtime, or NULL after answering the request with an error. */
static struct runtime *
begin_pending(struct kernel *k, void *sock, wire_msg_t *req, enum pending_kind kind,
              const char *code, const char **body)
{
    char unknown[64], err[512];
    size_t shift;
    const struct lang *l = cell_language(k, code, body, &shift, unknown);
    struct runtime *rt;

    if (!l) {
        snprintf(err, sizeof err, "no language named \"%s\" in %%%%%s", unknown, unknown);
        rt = NULL;
    } else {
        rt = cell_runtime(k, l, err, sizeof err);
    }
    if (!rt) {
        json_t *c = kernel_error_content(l ? "RuntimeUnavailable" : "UnknownLanguage", err);
        if (kind == PR_EXECUTE) {
            kernel_publish(k, req, "error", json_pack("{s:O, s:O, s:O}", "ename",
                                               json_object_get(c, "ename"), "evalue",
                                               json_object_get(c, "evalue"), "traceback",
                                               json_object_get(c, "traceback")));
            json_object_set_new(c, "execution_count", json_integer(k->p.count));
            if (k->p.stop_on_error)
                cell_backlog_fill(k);
        }
        kernel_reply(k, sock, req, c);
        return NULL;
    }
    if (k->state_lost[langs_index(l)] && kind == PR_EXECUTE)
        cell_note_fresh_runtime(k, req, l);
    k->p.kind = kind;
    k->p.rt = rt;
    k->p.shift = shift;
    return rt;
}

static int
h_execute(struct kernel *k, void *sock, wire_msg_t *req)
{
    struct pending *p = &k->p;
    const char *code = kernel_str_field(req, "code"), *body;

    if (k->aborting) {
        kernel_reply(k, sock, req, json_pack("{s:s, s:i}", "status", "aborted", "execution_count",
                                      k->execution_count));
        return H_DONE;
    }
    if (!code) {
        kernel_reply(k, sock, req, kernel_error_content("BadRequest", "execute_request without \"code\""));
        return H_DONE;
    }
    *p = (struct pending){ .kind = PR_NONE };
    p->silent = kernel_bool_field(req, "silent", false);
    p->store_history = kernel_bool_field(req, "store_history", !p->silent) && !p->silent;
    p->allow_stdin = kernel_bool_field(req, "allow_stdin", true);
    p->stop_on_error = kernel_bool_field(req, "stop_on_error", true);
    p->count = p->store_history ? ++k->execution_count : k->execution_count;
    if (!p->silent)
        kernel_publish(k, req, "execute_input",
                json_pack("{s:s, s:i}", "code", code, "execution_count", p->count));

    struct runtime *rt = begin_pending(k, sock, req, PR_EXECUTE, code, &body);
    if (!rt)
        return H_DONE;
    p->req = req;
    p->code = strdup(code);
    p->payload = json_array();
    p->deadline = k->limits.timeout ? kernel_now() + (double)k->limits.timeout : 0;
    p->oom_before = k->box ? box_oom_kills(k->box) : 0;
    (void)body;
    int rc = cell_send_execute(k, rt);
    if (!p->code || !p->payload || rc != CG_OK) {
        p->req = NULL; /* the caller still owns req */
        cell_clear(k);
        kernel_reply(k, sock, req, kernel_error_content("MemoryError", "out of memory"));
        return H_DONE;
    }
    return H_PENDING;
}

/* complete / inspect / is_complete: all forwarded to the cell's runtime. */
static int
forward_request(struct kernel *k, void *sock, wire_msg_t *req, enum pending_kind kind,
                const char *type)
{
    const char *code = kernel_str_field(req, "code"), *body;
    json_t *cp = json_object_get(req->content, "cursor_pos");
    size_t cursor = json_is_integer(cp) && json_integer_value(cp) >= 0
                        ? (size_t)json_integer_value(cp)
                        : (code ? utf8_count(code, strlen(code)) : 0);
    json_t *dl = json_object_get(req->content, "detail_level");

    if (!code) {
        kernel_reply(k, sock, req, kernel_error_content("BadRequest", "request without \"code\""));
        return H_DONE;
    }
    k->p = (struct pending){ .kind = PR_NONE };
    struct runtime *rt = begin_pending(k, sock, req, kind, code, &body);
    if (!rt)
        return H_DONE;
    if (kind != PR_IS_COMPLETE && cursor < k->p.shift) {
        /* The cursor is on the %%magic line: nothing to offer there. */
        json_t *c = kind == PR_COMPLETE
                        ? json_pack("{s:s, s:[], s:I, s:I, s:{}}", "status", "ok", "matches",
                                    "cursor_start", (json_int_t)cursor, "cursor_end",
                                    (json_int_t)cursor, "metadata")
                        : json_pack("{s:s, s:b, s:{}, s:{}}", "status", "ok", "found", 0, "data",
                                    "metadata");
        k->p.kind = PR_NONE;
        kernel_reply(k, sock, req, c);
        return H_DONE;
    }
    if (kind == PR_IS_COMPLETE && body == code + strlen(code) && k->p.shift) {
        k->p.kind = PR_NONE; /* only "%%lang" so far: more is to come */
        kernel_reply(k, sock, req, json_pack("{s:s, s:s}", "status", "incomplete", "indent", ""));
        return H_DONE;
    }
    if (runtime_request(rt, type, body, cursor - (kind == PR_IS_COMPLETE ? 0 : k->p.shift),
                        json_is_integer(dl) ? (int)json_integer_value(dl) : 0) != CG_OK) {
        k->p.kind = PR_NONE;
        kernel_reply(k, sock, req, kernel_error_content("MemoryError", "out of memory"));
        return H_DONE;
    }
    if (kind == PR_IS_COMPLETE)
        k->p.shift = 0;
    k->p.req = req;
    return H_PENDING;
}

static int
h_complete(struct kernel *k, void *sock, wire_msg_t *req)
{
    return forward_request(k, sock, req, PR_COMPLETE, "complete");
}

static int
h_inspect(struct kernel *k, void *sock, wire_msg_t *req)
{
    return forward_request(k, sock, req, PR_INSPECT, "inspect");
}

static int
h_is_complete(struct kernel *k, void *sock, wire_msg_t *req)
{
    return forward_request(k, sock, req, PR_IS_COMPLETE, "is_complete");
}

static int
h_history(struct kernel *k, void *sock, wire_msg_t *req)
{
    kernel_reply(k, sock, req, json_pack("{s:s, s:o}", "status", "ok", "history",
                                  history_query(k->hist, req->content)));
    return H_DONE;
}

static int
h_comm_info(struct kernel *k, void *sock, wire_msg_t *req)
{
    kernel_reply(k, sock, req, json_pack("{s:s, s:o}", "status", "ok", "comms",
                                         tools_comm_info(k, kernel_str_field(req, "target_name"))));
    return H_DONE;
}

static int
h_comm_open(struct kernel *k, void *sock, wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");
    const char *target = kernel_str_field(req, "target_name");

    (void)sock;
    enum tool_state ts = tools_comm_open(k, req);
    if (ts != TOOL_UNKNOWN)
        return ts == TOOL_PENDING ? H_PENDING : H_DONE;
    log_warn("comm_open for unknown target \"%s\": closing it", target ? target : "");
    if (id)
        kernel_publish(k, req, "comm_close", json_pack("{s:s, s:{}}", "comm_id", id, "data"));
    return H_DONE;
}

static int
h_comm_msg(struct kernel *k, void *sock, wire_msg_t *req)
{
    (void)sock;
    return tools_comm_msg(k, req) == TOOL_PENDING ? H_PENDING : H_DONE;
}

static int
h_comm_close(struct kernel *k, void *sock, wire_msg_t *req)
{
    (void)sock;
    tools_comm_close(k, req);
    return H_DONE;
}

/* Interrupts the cell in flight: SIGINT to its runtime's process group. */
void
handlers_interrupt(struct kernel *k)
{
    if (k->p.kind == PR_TOOL)
        tools_interrupt(k);
    if (k->p.kind == PR_NONE || !k->p.rt)
        return;
    cell_interrupt(k);
}

static int
h_interrupt(struct kernel *k, void *sock, wire_msg_t *req)
{
    handlers_interrupt(k);
    kernel_reply(k, sock, req, json_pack("{s:s}", "status", "ok"));
    return H_DONE;
}

static int
h_shutdown(struct kernel *k, void *sock, wire_msg_t *req)
{
    bool restart = kernel_bool_field(req, "restart", false);

    kernel_reply(k, sock, req, json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    kernel_publish(k, req, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    k->quit = true;
    return H_DONE;
}

/* The allowlist: request types we answer and where. */
static const struct handler {
    const char *type;
    handler_fn fn;
    int where;
} handlers[] = {
    { "kernel_info_request", h_kernel_info, ON_SHELL | ON_CONTROL },
    { "execute_request", h_execute, ON_SHELL },
    { "complete_request", h_complete, ON_SHELL },
    { "inspect_request", h_inspect, ON_SHELL },
    { "is_complete_request", h_is_complete, ON_SHELL },
    { "history_request", h_history, ON_SHELL },
    { "comm_info_request", h_comm_info, ON_SHELL | ON_CONTROL },
    { "comm_open", h_comm_open, ON_SHELL },
    { "comm_msg", h_comm_msg, ON_SHELL },
    { "comm_close", h_comm_close, ON_SHELL },
    { "interrupt_request", h_interrupt, ON_CONTROL },
    { "shutdown_request", h_shutdown, ON_SHELL | ON_CONTROL },
};

/* Serves one request received on a shell or control socket (req is
 * consumed). With abort set, an execute is answered "aborted". */
static void
serve(struct kernel *k, enum channel ch, wire_msg_t *req, bool abort)
{
    void *sock = k->sock[ch];
    int where = ch == CH_SHELL ? ON_SHELL : ON_CONTROL;
    const char *type = wire_msg_type(req);
    const struct handler *h = NULL;

    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (strcmp(handlers[i].type, type) == 0 && (handlers[i].where & where))
            h = &handlers[i];
    kernel_publish_status(k, req, "busy");
    k->aborting = abort;
    if (req->malformed) {
        /* Signed, so from a client that holds the key: say what is wrong. */
        log_warn("%s on %s: %s", type, ch == CH_SHELL ? "shell" : "control", req->malformed);
        size_t n = strlen(type);
        if (n > 8 && strcmp(type + n - 8, "_request") == 0)
            kernel_reply(k, sock, req, kernel_error_content("BadRequest", req->malformed));
        kernel_publish_status(k, req, "idle");
    } else if (!h) {
        log_warn("unknown message type \"%s\" on %s: ignored", type,
                 ch == CH_SHELL ? "shell" : "control");
        kernel_publish_status(k, req, "idle");
    } else if (h->fn(k, sock, req) == H_DONE) {
        kernel_publish_status(k, req, "idle");
    } else {
        req = NULL; /* pending: owned by k->p now */
    }
    k->aborting = false;
    wire_msg_destroy(&req);
}

/* Receives one message from a shell or control socket and serves it. */
void
handlers_dispatch(struct kernel *k, enum channel ch)
{
    wire_msg_t *req = NULL;
    char err[256];
    int rc = wire_recv(k->wire, k->sock[ch], ZMQ_DONTWAIT, &req, err, sizeof err);

    if (rc == CG_OK)
        serve(k, ch, req, false);
    else if (rc != CG_ESYS)
        log_warn("dropped a message on %s: %s", ch == CH_SHELL ? "shell" : "control", err);
}

/* Serves the backlog, oldest first, until a request goes pending. */
void
handlers_serve_backlog(struct kernel *k)
{
    while (k->backlog_len && k->p.kind == PR_NONE && !k->quit) {
        wire_msg_t *m = k->backlog[0];
        bool abort = k->backlog_abort[0];
        k->backlog_len--;
        memmove(k->backlog, k->backlog + 1, k->backlog_len * sizeof *k->backlog);
        memmove(k->backlog_abort, k->backlog_abort + 1, k->backlog_len * sizeof(bool));
        serve(k, CH_SHELL, m, abort);
    }
}

/*
 * A client subscribed to IOPub. Messages published before its subscription
 * arrived are lost to it (ZeroMQ's slow joiner), and jupyter_client waits
 * for some IOPub message before calling a kernel ready; so greet each new
 * subscriber with the current execution state.
 */
void
handlers_serve_subscriptions(struct kernel *k)
{
    zmq_msg_t m;
    bool subscribed = false;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, k->sock[CH_IOPUB], ZMQ_DONTWAIT) >= 0)
        if (zmq_msg_size(&m) >= 1 && ((const unsigned char *)zmq_msg_data(&m))[0] == 1)
            subscribed = true;
    zmq_msg_close(&m);
    if (subscribed)
        kernel_publish_status(k, k->p.kind != PR_NONE ? k->p.req : NULL,
                       k->p.kind != PR_NONE ? "busy" : "idle");
}

/* An input_reply on stdin goes to the runtime waiting for it. */
void
handlers_serve_stdin(struct kernel *k)
{
    wire_msg_t *m = NULL;
    char err[256];
    int rc = wire_recv(k->wire, k->sock[CH_STDIN], ZMQ_DONTWAIT, &m, err, sizeof err);

    if (rc != CG_OK) {
        if (rc != CG_ESYS)
            log_warn("dropped a message on stdin: %s", err);
        return;
    }
    const char *value = kernel_str_field(m, "value");
    if (strcmp(wire_msg_type(m), "input_reply") == 0 && k->p.input_waiting && k->p.rt) {
        k->p.input_waiting = false;
        if (runtime_input_reply(k->p.rt, value ? value : "") != CG_OK)
            log_error("out of memory forwarding input");
    } else {
        log_debug("unexpected %s on stdin: ignored", wire_msg_type(m));
    }
    wire_msg_destroy(&m);
}
