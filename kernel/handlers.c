/*
 * handlers.c - the allowlist of requests the kernel answers (see
 * handlers.h). A handler answers at once (H_DONE), or leaves the request
 * in service on the channel while a runtime or a tool works on it
 * (H_PENDING): the one that finishes it ends it there.
 */
#include "kernel/handlers.h"

#include "common/cgerr.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/version.h"

#include <stdlib.h>
#include <string.h>

enum { H_DONE, H_PENDING };            /* handler results */
enum { ON_SHELL = 1, ON_CONTROL = 2 }; /* where a request type is accepted */

typedef int (*handler_fn)(struct handlers *h, enum channel ch, const wire_msg_t *req);

static int
h_kernel_info(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    const struct lang *l = h->primary;
    const char *version = cell_language_version(h->cells);

    if (!version)
        version = getenv("CELLGATE_LANGUAGE_VERSION");
    chan_reply(h->chan, ch, req,
               json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:s, "
                         "s:[], s:b}",
                         "status", "ok", "protocol_version", WIRE_PROTOCOL_VERSION,
                         "implementation", "cellgate", "implementation_version",
                         CELLGATE_VERSION, "language_info", "name", l->language, "version",
                         version ? version : "", "mimetype", l->mimetype, "file_extension",
                         l->file_extension, "pygments_lexer", l->pygments_lexer,
                         "codemirror_mode", l->codemirror_mode, "nbconvert_exporter",
                         l->nbconvert_exporter, "banner", l->banner, "help_links", "debugger",
                         0));
    return H_DONE;
}

static int
h_execute(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    if (h->aborting) {
        /* Queued behind a failed cell: not run, and no execution_count,
         * as ipykernel answers (a notebook then shows the cell unrun). */
        chan_reply(h->chan, ch, req, json_pack("{s:s}", "status", "aborted"));
        return H_DONE;
    }
    return cell_execute(h->cells, req) ? H_PENDING : H_DONE;
}

/* complete / inspect / is_complete: forwarded to the cell's runtime. */
static int
h_runtime_request(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    (void)ch;
    return cell_request(h->cells, req) ? H_PENDING : H_DONE;
}

static int
h_history(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    chan_reply(h->chan, ch, req, json_pack("{s:s, s:o}", "status", "ok", "history",
                                           history_query(h->hist, req->content)));
    return H_DONE;
}

static int
h_comm_info(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    chan_reply(h->chan, ch, req,
               json_pack("{s:s, s:o}", "status", "ok", "comms",
                         tools_comm_info(h->tools, msg_str(req, "target_name"))));
    return H_DONE;
}

static int
h_comm_open(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    const char *id = msg_str(req, "comm_id");
    const char *target = msg_str(req, "target_name");

    (void)ch;
    enum tool_state ts = tools_comm_open(h->tools, req);
    if (ts != TOOL_UNKNOWN)
        return ts == TOOL_PENDING ? H_PENDING : H_DONE;
    if (cell_comm(h->cells, req)) /* a target of the Python code's (ipywidgets) */
        return H_DONE;
    log_warn("comm_open for unknown target \"%s\": closing it", target ? target : "");
    if (id)
        chan_publish(h->chan, req, "comm_close", json_pack("{s:s, s:{}}", "comm_id", id, "data"));
    return H_DONE;
}

static int
h_comm_msg(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    (void)ch;
    if (tools_has_comm(h->tools, msg_str(req, "comm_id")))
        return tools_comm_msg(h->tools, req) == TOOL_PENDING ? H_PENDING : H_DONE;
    cell_comm(h->cells, req);
    return H_DONE;
}

static int
h_comm_close(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    (void)ch;
    if (tools_has_comm(h->tools, msg_str(req, "comm_id")))
        tools_comm_close(h->tools, req);
    else
        cell_comm(h->cells, req);
    return H_DONE;
}

void
handlers_interrupt(struct handlers *h)
{
    tools_interrupt(h->tools);
    cell_interrupt(h->cells);
}

static int
h_interrupt(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    handlers_interrupt(h);
    chan_reply(h->chan, ch, req, json_pack("{s:s}", "status", "ok"));
    return H_DONE;
}

static int
h_shutdown(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    bool restart = msg_bool(req, "restart", false);

    chan_reply(h->chan, ch, req, json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    chan_publish(h->chan, req, "shutdown_reply",
                 json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    h->quit = true;
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
    { "complete_request", h_runtime_request, ON_SHELL },
    { "inspect_request", h_runtime_request, ON_SHELL },
    { "is_complete_request", h_runtime_request, ON_SHELL },
    { "history_request", h_history, ON_SHELL },
    { "comm_info_request", h_comm_info, ON_SHELL | ON_CONTROL },
    { "comm_open", h_comm_open, ON_SHELL },
    { "comm_msg", h_comm_msg, ON_SHELL },
    { "comm_close", h_comm_close, ON_SHELL },
    { "interrupt_request", h_interrupt, ON_CONTROL },
    { "shutdown_request", h_shutdown, ON_SHELL | ON_CONTROL },
};

/* Runs req's handler (or refuses it); H_DONE or H_PENDING. */
static int
run_handler(struct handlers *h, enum channel ch, const wire_msg_t *req)
{
    int where = ch == CH_SHELL ? ON_SHELL : ON_CONTROL;
    const char *type = wire_msg_type(req);

    if (req->malformed) {
        /* Signed, so from a client that holds the key: say what is wrong. */
        log_warn("%s on %s: %s", type, connfile_port_name(ch), req->malformed);
        if (msg_is_request(req))
            chan_reply(h->chan, ch, req, msg_error_content("BadRequest", req->malformed));
        return H_DONE;
    }
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (strcmp(handlers[i].type, type) == 0 && (handlers[i].where & where))
            return handlers[i].fn(h, ch, req);
    log_warn("unknown message type \"%s\" on %s: ignored", type, connfile_port_name(ch));
    return H_DONE;
}

/* Serves one request received on shell or control (req is consumed). A
 * shell request is the channel's request in service until it is done;
 * one on control is served beside it. With abort, an execute is answered
 * "aborted". */
static void
serve(struct handlers *h, enum channel ch, wire_msg_t *req, bool abort)
{
    h->aborting = abort;
    if (ch == CH_SHELL) {
        chan_begin(h->chan, req); /* busy; the channel owns req now */
        if (run_handler(h, ch, req) == H_DONE)
            chan_end(h->chan, false);
    } else {
        chan_status(h->chan, req, "busy");
        run_handler(h, ch, req);
        chan_status(h->chan, req, "idle");
        wire_msg_destroy(&req);
    }
    h->aborting = false;
}

void
handlers_dispatch(struct handlers *h, enum channel ch)
{
    wire_msg_t *req = NULL;

    if (chan_recv(h->chan, ch, &req) == CG_OK)
        serve(h, ch, req, false);
}

bool
handlers_busy(const struct handlers *h)
{
    return chan_current(h->chan) != NULL;
}

void
handlers_serve_backlog(struct handlers *h)
{
    wire_msg_t *m;
    bool abort;

    while (!handlers_busy(h) && !h->quit && (m = chan_backlog_take(h->chan, &abort)))
        serve(h, CH_SHELL, m, abort);
}

void
handlers_serve_stdin(struct handlers *h)
{
    wire_msg_t *m = NULL;

    if (chan_recv(h->chan, CH_STDIN, &m) != CG_OK)
        return;
    const char *value = msg_str(m, "value");
    if (strcmp(wire_msg_type(m), "input_reply") == 0 && cell_input_waiting(h->cells))
        cell_input_reply(h->cells, value ? value : "");
    else
        log_debug("unexpected %s on stdin: ignored", wire_msg_type(m));
    wire_msg_destroy(&m);
}
