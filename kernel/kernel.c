/*
 * kernel.c - the Jupyter kernel: sockets, the event loop, and the message
 * handlers (see kernel.h).
 *
 * One thread serves everything except the heartbeat, which echoes in its
 * own thread so a busy kernel never looks dead. The loop polls control
 * first, then the runtimes' fds, then shell. A shell request that needs a
 * runtime (execute, complete, inspect, is_complete) stays "pending" until
 * the driver answers; meanwhile shell is not read (Jupyter serialises
 * shell requests) but control is, so interrupt and shutdown always work.
 */
#include "kernel.h"

#include "../common/cgerr.h"
#include "../common/connfile.h"
#include "../common/log.h"
#include "../common/wire.h"
#include "../sandbox/box.h"
#include "history.h"
#include "runtime.h"
#include "utf8.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_LANGS 16
#define PARENT_CHECK_MS 1000

enum pending_kind { PR_NONE, PR_EXECUTE, PR_COMPLETE, PR_INSPECT, PR_IS_COMPLETE };

/* The shell request a runtime is working on. */
struct pending {
    enum pending_kind kind;
    wire_msg_t *req;            /* owned */
    struct runtime *rt;
    size_t shift;               /* code points of a %%magic line removed */
    char *code;                 /* the whole cell, for history */
    json_t *error;              /* the cell's error record, owned */
    json_t *payload;            /* execute_reply payload list, owned */
    char *result_text;          /* text/plain of the result, for history */
    int count;                  /* execution_count of this cell */
    bool silent, store_history, stop_on_error, allow_stdin;
    bool input_waiting;         /* an input_request is out */
    size_t out_bytes;           /* output published so far */
    bool limit_hit;             /* output past the limit is dropped */
    double deadline;            /* monotonic seconds when the cell times out, 0: never */
    int timeouts;               /* 1: interrupted for the time limit; 2: killed */
    uint64_t oom_before;        /* the box's OOM kills when the cell started */
};

struct kernel {
    connfile_t conn;
    wire_t *wire;
    void *zctx;
    void *sock[CH_COUNT];
    pthread_t hb_thread;
    bool hb_started;
    int sigfd;
    pid_t ppid;                         /* the parent we die with */
    const struct lang *primary;
    struct runtime *rts[MAX_LANGS];     /* by language index, started lazily */
    bool state_lost[MAX_LANGS];         /* a runtime died: tell the next cell */
    struct pending p;
    wire_msg_t *last_exec;              /* parent for output after a cell ended */
    int execution_count;
    struct history *hist;
    wire_msg_t **backlog;               /* shell requests queued behind an error */
    bool *backlog_abort;                /* ... and whether to abort each */
    size_t backlog_len, backlog_cap;
    bool aborting;                      /* the request being served is aborted */
    bool prestart;                      /* start the main runtime once the loop runs */
    bool quit;
    size_t output_limit;
    bool color;
    struct box *box;                    /* NULL without the sandbox */
    char box_error[512];                /* why there is no box, if it was wanted */
    struct box_limits limits;
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- sending ------------------------------------------------------------ */

/* Sends a built message on sock and frees it. */
static void
send_built(struct kernel *k, void *sock, wire_msg_t *m)
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
static void
send_msg(struct kernel *k, void *sock, const wire_msg_t *req, const char *type, json_t *content)
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
    send_built(k, sock, m);
}

/* Publishes stream output: len bytes of valid UTF-8. The content is
 * serialised directly, the hot path for large output. */
static void
publish_stream(struct kernel *k, const wire_msg_t *parent, const char *name, const char *text,
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
    send_built(k, k->sock[CH_IOPUB], m);
}

static void
publish(struct kernel *k, const wire_msg_t *parent, const char *type, json_t *content)
{
    send_msg(k, k->sock[CH_IOPUB], parent, type, content);
}

static void
publish_status(struct kernel *k, const wire_msg_t *parent, const char *state)
{
    publish(k, parent, "status", json_pack("{s:s}", "execution_state", state));
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

static void
reply(struct kernel *k, void *sock, const wire_msg_t *req, json_t *content)
{
    char type[96];

    reply_type(wire_msg_type(req), type, sizeof type);
    send_msg(k, sock, req, type, content);
}

static json_t *
error_content(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s, s:[s]}", "status", "error", "ename", ename, "evalue",
                     evalue, "traceback", evalue);
}

/* ---- request fields ----------------------------------------------------- */

static bool
bool_field(const wire_msg_t *m, const char *name, bool dflt)
{
    json_t *v = json_object_get(m->content, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *
str_field(const wire_msg_t *m, const char *name)
{
    return json_string_value(json_object_get(m->content, name));
}

/* ---- runtimes ----------------------------------------------------------- */

static void on_stream(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len);
static void on_record(void *ctx, struct runtime *rt, json_t *rec);

static struct rt_sink
sink_of(struct kernel *k)
{
    return (struct rt_sink){ .ctx = k, .stream = on_stream, .record = on_record };
}

static void reap_children(struct kernel *k);
static void on_box_exit(void *ctx, pid_t pid, int status);
static void runtime_ended(struct kernel *k, struct runtime *rt, int status);

/*
 * A runtime whose control socket hung up is dead or dying, though its exit
 * may not be reported yet (e.g. `kill -9 -1` in the box killed it between
 * cells): wait for the report (bounded), so the next cell goes to a fresh
 * runtime instead of a dead one.
 */
static void
settle_death(struct kernel *k, struct runtime *rt)
{
    for (int i = 0; i < 100 && runtime_alive(rt); i++) {
        if (k->box)
            box_events(k->box, on_box_exit, k);
        else
            reap_children(k);
        if (runtime_alive(rt))
            usleep(10000);
    }
    if (runtime_alive(rt)) {
        runtime_kill(rt);
        runtime_ended(k, rt, SIGKILL);
    }
}

/* Returns a running runtime for lang, starting one if needed; NULL with
 * err filled if it cannot start. */
static struct runtime *
ensure_runtime(struct kernel *k, const struct lang *lang, char *err, size_t errlen)
{
    size_t i = langs_index(lang);
    struct runtime *rt = k->rts[i];

    if (rt && runtime_alive(rt) && runtime_hung_up(rt))
        settle_death(k, rt);
    if (rt && runtime_alive(rt))
        return rt;
    runtime_destroy(&k->rts[i]);
    if (!lang_available(lang)) {
        cg_fail(err, errlen, CG_ENOTFOUND, "%s is not installed on this machine (%s is missing)",
                lang->name, lang->program);
        return NULL;
    }
    if (k->box_error[0]) {
        cg_fail(err, errlen, CG_ESYS, "%s", k->box_error);
        return NULL;
    }
    rt = runtime_new(lang);
    if (!rt) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    struct rt_place where = { .spawner = spawn_plain() };
    if (k->box)
        where = (struct rt_place){ .spawner = box_spawner(k->box), .home = BOX_HOME };
    if (runtime_start(rt, &where, err, errlen) != CG_OK) {
        runtime_destroy(&rt);
        return NULL;
    }
    log_debug("started %s runtime, pid %ld", lang->name, (long)runtime_pid(rt));
    k->rts[i] = rt;
    return rt;
}

/* Splits a leading "%%name" line off code. Returns the language (primary
 * when there is no magic) and sets *body and *shift (code points removed);
 * NULL with *unknown set to the name when no such language exists. */
static const struct lang *
cell_language(struct kernel *k, const char *code, const char **body, size_t *shift,
              char unknown[64])
{
    const char *p = code;

    *body = code;
    *shift = 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (strncmp(p, "%%", 2) != 0)
        return k->primary;
    size_t n = strcspn(p + 2, " \t\r\n");
    snprintf(unknown, 64, "%.*s", (int)(n < 63 ? n : 63), p + 2);
    const struct lang *l = n < 63 ? langs_find(unknown) : NULL;
    if (!l)
        return NULL;
    const char *nl = strchr(p, '\n');
    *body = nl ? nl + 1 : p + strlen(p);
    *shift = utf8_count(code, (size_t)(*body - code));
    return l;
}

/* ---- finishing requests ------------------------------------------------- */

static void
pending_clear(struct kernel *k)
{
    struct pending *p = &k->p;

    if (p->kind == PR_EXECUTE) {
        /* After a cell with a lot of output, give the freed buffers back:
         * an idle kernel should be small again. */
        if (p->out_bytes > (1u << 20))
            malloc_trim(0);
        wire_msg_destroy(&k->last_exec);
        k->last_exec = p->req; /* keep as parent for late output */
        p->req = NULL;
    }
    wire_msg_destroy(&p->req);
    json_decref(p->error);
    json_decref(p->payload);
    free(p->code);
    free(p->result_text);
    *p = (struct pending){ .kind = PR_NONE };
}

/* Moves every request waiting on the shell socket into the backlog, each
 * marked to be aborted if it is an execute. */
static void
backlog_fill(struct kernel *k)
{
    wire_msg_t *m;
    char err[256];
    int rc;

    while ((rc = wire_recv(k->wire, k->sock[CH_SHELL], ZMQ_DONTWAIT, &m, err, sizeof err))
           != CG_ESYS) {
        if (rc != CG_OK) {
            log_warn("dropped a message on shell: %s", err);
            continue;
        }
        if (k->backlog_len == k->backlog_cap) {
            size_t cap = k->backlog_cap ? 2 * k->backlog_cap : 16;
            wire_msg_t **b = realloc(k->backlog, cap * sizeof *b);
            bool *a = b ? realloc(k->backlog_abort, cap * sizeof *a) : NULL;
            if (b)
                k->backlog = b;
            if (!b || !a) {
                log_error("out of memory queueing a request: dropped");
                wire_msg_destroy(&m);
                return;
            }
            k->backlog_abort = a;
            k->backlog_cap = cap;
        }
        k->backlog[k->backlog_len] = m;
        k->backlog_abort[k->backlog_len++] = true;
    }
}

static void
finish_execute(struct kernel *k, json_t *user_expressions)
{
    struct pending *p = &k->p;
    json_t *content;

    if (p->error) {
        content = json_deep_copy(p->error);
        json_object_set_new(content, "status", json_string("error"));
    } else {
        content = json_pack("{s:s, s:O, s:o}", "status", "ok", "payload", p->payload,
                            "user_expressions",
                            json_is_object(user_expressions) ? json_incref(user_expressions)
                                                             : json_object());
    }
    json_object_set_new(content, "execution_count", json_integer(p->count));
    /* Executes already queued behind a failed cell are aborted; take them
     * off the socket before the reply goes out, so a request the client
     * sends after seeing the error is never caught by it. */
    if (p->error && p->stop_on_error)
        backlog_fill(k);
    reply(k, k->sock[CH_SHELL], p->req, content);
    if (p->store_history && history_add(k->hist, p->count, p->code, p->result_text) != CG_OK)
        log_warn("out of memory recording history");
    publish_status(k, p->req, "idle");
    pending_clear(k);
}

/* Answers complete / inspect / is_complete from the driver's reply record. */
static void
finish_request(struct kernel *k, json_t *rec)
{
    struct pending *p = &k->p;
    json_t *c = json_deep_copy(rec);

    json_object_del(c, "t");
    json_object_set_new(c, "status", json_string("ok"));
    if (p->kind == PR_COMPLETE) {
        json_t *m = json_object_get(c, "matches");
        if (!json_is_array(m))
            json_object_set_new(c, "matches", json_array());
        json_int_t cs = json_integer_value(json_object_get(c, "cursor_start"));
        json_int_t ce = json_integer_value(json_object_get(c, "cursor_end"));
        json_object_set_new(c, "cursor_start", json_integer(cs + (json_int_t)p->shift));
        json_object_set_new(c, "cursor_end", json_integer(ce + (json_int_t)p->shift));
        if (!json_is_object(json_object_get(c, "metadata")))
            json_object_set_new(c, "metadata", json_object());
    } else if (p->kind == PR_INSPECT) {
        if (!json_is_boolean(json_object_get(c, "found")))
            json_object_set_new(c, "found", json_false());
        if (!json_is_object(json_object_get(c, "data")))
            json_object_set_new(c, "data", json_object());
        if (!json_is_object(json_object_get(c, "metadata")))
            json_object_set_new(c, "metadata", json_object());
    } else {
        static const char *const states[] = { "complete", "incomplete", "invalid", "unknown" };
        const char *st = json_string_value(json_object_get(rec, "status"));
        const char *ok = "unknown";
        for (size_t i = 0; st && i < sizeof states / sizeof states[0]; i++)
            if (strcmp(st, states[i]) == 0)
                ok = states[i];
        json_object_set_new(c, "status", json_string(ok));
        if (!json_is_string(json_object_get(c, "indent")))
            json_object_set_new(c, "indent", json_string(""));
    }
    reply(k, k->sock[CH_SHELL], p->req, c);
    publish_status(k, p->req, "idle");
    pending_clear(k);
}

/* The pending request's runtime died or broke the protocol. */
static void
fail_pending(struct kernel *k, const char *ename, const char *why)
{
    struct pending *p = &k->p;

    if (p->kind == PR_NONE)
        return;
    if (p->kind != PR_EXECUTE) {
        reply(k, k->sock[CH_SHELL], p->req, error_content(ename, why));
        publish_status(k, p->req, "idle");
        pending_clear(k);
        return;
    }
    if (!p->error) {
        p->error = json_pack("{s:s, s:s, s:[s]}", "ename", ename, "evalue", why, "traceback", why);
        publish(k, p->req, "error", json_deep_copy(p->error));
    }
    finish_execute(k, NULL);
}

/* Called once a runtime's driver was reaped. */
static void
runtime_ended(struct kernel *k, struct runtime *rt, int status)
{
    struct rt_sink sink = sink_of(k);
    char why[512];

    runtime_exited(rt, status, &sink);
    k->state_lost[langs_index(runtime_lang(rt))] = true;
    log_info("%s runtime %s", runtime_lang(rt)->name, runtime_death(rt));
    if (k->p.kind != PR_NONE && k->p.rt == rt) {
        const char *cause = "";
        char limit[160] = "";
        if (k->p.timeouts) {
            snprintf(limit, sizeof limit, " after running past the time limit of %llu s "
                     "(--timeout)", (unsigned long long)k->limits.timeout);
            cause = limit;
        } else if (k->box && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
                   && box_oom_kills(k->box) > k->p.oom_before) {
            snprintf(limit, sizeof limit, " by the box's memory limit of %llu MiB (--memory)",
                     (unsigned long long)(k->limits.memory >> 20));
            cause = limit;
        }
        snprintf(why, sizeof why, "the %s runtime %s%s; its state (variables, imports, "
                 "working directory) was lost. The next cell starts a fresh runtime.",
                 runtime_lang(rt)->name, runtime_death(rt), cause);
        fail_pending(k, k->p.timeouts ? "CellTimeout" : "RuntimeExited", why);
    }
}

/* ---- what runtimes send ------------------------------------------------- */

/* The parent of output from rt: its pending execute, or the last one. */
static const wire_msg_t *
output_parent(struct kernel *k, struct runtime *rt)
{
    if (k->p.kind == PR_EXECUTE && k->p.rt == rt)
        return k->p.req;
    return k->last_exec;
}

/* Applies the per-cell output limit; returns how many bytes of len may go
 * out (0 once the limit was hit), publishing the notice when it is hit. */
static size_t
output_allowance(struct kernel *k, struct runtime *rt, const char *text, size_t len)
{
    struct pending *p = &k->p;
    char note[256];

    if (p->kind != PR_EXECUTE || p->rt != rt || k->output_limit == 0)
        return len;
    if (p->limit_hit)
        return 0;
    if (p->out_bytes + len <= k->output_limit) {
        p->out_bytes += len;
        return len;
    }
    size_t room = utf8_complete_prefix(text, k->output_limit - p->out_bytes);
    p->out_bytes = k->output_limit;
    p->limit_hit = true;
    if (room)
        publish_stream(k, p->req, "stdout", text, room);
    snprintf(note, sizeof note, "\n[cellgate: this cell's output passed the limit of %zu bytes; "
             "the rest of its output is discarded. The limit is set with --output-limit or "
             "CELLGATE_OUTPUT_LIMIT.]\n", k->output_limit);
    publish_stream(k, p->req, "stderr", note, strlen(note));
    return 0;
}

static void
on_stream(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len)
{
    struct kernel *k = ctx;

    if (output_allowance(k, rt, text, len) == 0 && len)
        return;
    publish_stream(k, output_parent(k, rt), name, text, len);
}

/* Copies the members of a display-like record that Jupyter defines. */
static json_t *
mime_content(json_t *rec)
{
    json_t *data = json_object_get(rec, "data");
    json_t *md = json_object_get(rec, "metadata");
    json_t *c = json_pack("{s:O, s:O}", "data", json_is_object(data) ? data : json_object(),
                          "metadata", json_is_object(md) ? md : json_object());
    json_t *tr = json_object_get(rec, "transient");
    if (c && json_is_object(tr))
        json_object_set(c, "transient", tr);
    return c;
}

static size_t
data_size(json_t *rec)
{
    char *s = json_dumps(json_object_get(rec, "data"), JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    free(s);
    return n;
}

static void
on_record(void *ctx, struct runtime *rt, json_t *rec)
{
    struct kernel *k = ctx;
    struct pending *p = &k->p;
    const char *t = json_string_value(json_object_get(rec, "t"));
    bool mine = p->kind != PR_NONE && p->rt == rt;
    bool exec = mine && p->kind == PR_EXECUTE;

    if (strcmp(t, "display") == 0 || strcmp(t, "clear") == 0) {
        const wire_msg_t *parent = output_parent(k, rt);
        if (strcmp(t, "clear") == 0) {
            publish(k, parent, "clear_output",
                    json_pack("{s:b}", "wait", json_is_true(json_object_get(rec, "wait"))));
            return;
        }
        if (exec && output_allowance(k, rt, "", data_size(rec)) == 0 && p->limit_hit)
            return;
        bool update = json_is_true(json_object_get(rec, "update"));
        publish(k, parent, update ? "update_display_data" : "display_data", mime_content(rec));
    } else if (strcmp(t, "result") == 0 && exec) {
        json_t *c = mime_content(rec);
        const char *txt = json_string_value(json_object_get(json_object_get(rec, "data"),
                                                            "text/plain"));
        if (txt && !p->result_text)
            p->result_text = strdup(txt);
        if (p->silent) {
            json_decref(c);
            return;
        }
        json_object_del(c, "transient");
        json_object_set_new(c, "execution_count", json_integer(p->count));
        publish(k, p->req, "execute_result", c);
    } else if (strcmp(t, "error") == 0 && exec) {
        if (p->error)
            return; /* one error per cell */
        const char *ename = json_string_value(json_object_get(rec, "ename"));
        const char *evalue = json_string_value(json_object_get(rec, "evalue"));
        json_t *tb = json_object_get(rec, "traceback");
        json_t *tbc = json_array();
        for (size_t i = 0; json_is_array(tb) && i < json_array_size(tb); i++)
            if (json_is_string(json_array_get(tb, i)))
                json_array_append(tbc, json_array_get(tb, i));
        if (p->timeouts) { /* the interrupt was ours: say why */
            char why[160];
            snprintf(why, sizeof why, "the cell ran past the time limit of %llu s (--timeout)",
                     (unsigned long long)k->limits.timeout);
            json_decref(tbc);
            p->error = json_pack("{s:s, s:s, s:[s]}", "ename", "CellTimeout", "evalue", why,
                                 "traceback", why);
        } else {
            p->error = json_pack("{s:s, s:s, s:o}", "ename", ename ? ename : "Error", "evalue",
                                 evalue ? evalue : "", "traceback", tbc);
        }
        publish(k, p->req, "error", json_deep_copy(p->error));
    } else if (strcmp(t, "page") == 0 && exec) {
        json_t *data = json_object_get(rec, "data");
        if (json_is_object(data))
            json_array_append_new(p->payload, json_pack("{s:s, s:O, s:i}", "source", "page",
                                                        "data", data, "start", 0));
    } else if (strcmp(t, "input") == 0 && exec && p->allow_stdin) {
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        send_msg(k, k->sock[CH_STDIN], p->req, "input_request",
                 json_pack("{s:s, s:b}", "prompt", prompt ? prompt : "", "password",
                           json_is_true(json_object_get(rec, "password"))));
        p->input_waiting = true;
    } else if (strcmp(t, "done") == 0 && exec) {
        finish_execute(k, json_object_get(rec, "user_expressions"));
    } else if (strcmp(t, "reply") == 0 && mine && !exec) {
        finish_request(k, rec);
    } else {
        log_debug("ignored \"%s\" record from the %s driver", t, runtime_lang(rt)->name);
    }
}

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

    reply(k, sock, req,
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
        rt = ensure_runtime(k, l, err, sizeof err);
    }
    if (!rt) {
        json_t *c = error_content(l ? "RuntimeUnavailable" : "UnknownLanguage", err);
        if (kind == PR_EXECUTE) {
            publish(k, req, "error", json_pack("{s:O, s:O, s:O}", "ename",
                                               json_object_get(c, "ename"), "evalue",
                                               json_object_get(c, "evalue"), "traceback",
                                               json_object_get(c, "traceback")));
            json_object_set_new(c, "execution_count", json_integer(k->p.count));
            if (k->p.stop_on_error)
                backlog_fill(k);
        }
        reply(k, sock, req, c);
        return NULL;
    }
    if (k->state_lost[langs_index(l)] && kind == PR_EXECUTE) {
        char note[256];
        snprintf(note, sizeof note, "[cellgate: the %s runtime had ended; this cell runs in a "
                 "fresh one, so earlier variables and imports are gone]\n", l->name);
        publish_stream(k, req, "stderr", note, strlen(note));
        k->state_lost[langs_index(l)] = false;
    }
    k->p.kind = kind;
    k->p.rt = rt;
    k->p.shift = shift;
    return rt;
}

static int
h_execute(struct kernel *k, void *sock, wire_msg_t *req)
{
    struct pending *p = &k->p;
    const char *code = str_field(req, "code"), *body;
    json_t *ue = json_object_get(req->content, "user_expressions");

    if (k->aborting) {
        reply(k, sock, req, json_pack("{s:s, s:i}", "status", "aborted", "execution_count",
                                      k->execution_count));
        return H_DONE;
    }
    if (!code) {
        reply(k, sock, req, error_content("BadRequest", "execute_request without \"code\""));
        return H_DONE;
    }
    *p = (struct pending){ .kind = PR_NONE };
    p->silent = bool_field(req, "silent", false);
    p->store_history = bool_field(req, "store_history", !p->silent) && !p->silent;
    p->allow_stdin = bool_field(req, "allow_stdin", true);
    p->stop_on_error = bool_field(req, "stop_on_error", true);
    p->count = p->store_history ? ++k->execution_count : k->execution_count;
    if (!p->silent)
        publish(k, req, "execute_input",
                json_pack("{s:s, s:i}", "code", code, "execution_count", p->count));

    struct runtime *rt = begin_pending(k, sock, req, PR_EXECUTE, code, &body);
    if (!rt)
        return H_DONE;
    p->req = req;
    p->code = strdup(code);
    p->payload = json_array();
    p->deadline = k->limits.timeout ? now_s() + (double)k->limits.timeout : 0;
    p->oom_before = k->box ? box_oom_kills(k->box) : 0;
    struct rt_exec x = {
        .code = body, .silent = p->silent, .store_history = p->store_history,
        .allow_stdin = p->allow_stdin, .color = k->color,
        .user_expressions = json_is_object(ue) ? ue : NULL, .execution_count = p->count,
    };
    json_t *empty = json_object();
    if (!x.user_expressions)
        x.user_expressions = empty;
    int rc = runtime_execute(rt, &x);
    json_decref(empty);
    if (!p->code || !p->payload || rc != CG_OK) {
        p->req = NULL; /* the caller still owns req */
        pending_clear(k);
        reply(k, sock, req, error_content("MemoryError", "out of memory"));
        return H_DONE;
    }
    return H_PENDING;
}

/* complete / inspect / is_complete: all forwarded to the cell's runtime. */
static int
forward_request(struct kernel *k, void *sock, wire_msg_t *req, enum pending_kind kind,
                const char *type)
{
    const char *code = str_field(req, "code"), *body;
    json_t *cp = json_object_get(req->content, "cursor_pos");
    size_t cursor = json_is_integer(cp) && json_integer_value(cp) >= 0
                        ? (size_t)json_integer_value(cp)
                        : (code ? utf8_count(code, strlen(code)) : 0);
    json_t *dl = json_object_get(req->content, "detail_level");

    if (!code) {
        reply(k, sock, req, error_content("BadRequest", "request without \"code\""));
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
        reply(k, sock, req, c);
        return H_DONE;
    }
    if (kind == PR_IS_COMPLETE && body == code + strlen(code) && k->p.shift) {
        k->p.kind = PR_NONE; /* only "%%lang" so far: more is to come */
        reply(k, sock, req, json_pack("{s:s, s:s}", "status", "incomplete", "indent", ""));
        return H_DONE;
    }
    if (runtime_request(rt, type, body, cursor - (kind == PR_IS_COMPLETE ? 0 : k->p.shift),
                        json_is_integer(dl) ? (int)json_integer_value(dl) : 0) != CG_OK) {
        k->p.kind = PR_NONE;
        reply(k, sock, req, error_content("MemoryError", "out of memory"));
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
    reply(k, sock, req, json_pack("{s:s, s:o}", "status", "ok", "history",
                                  history_query(k->hist, req->content)));
    return H_DONE;
}

static int
h_comm_info(struct kernel *k, void *sock, wire_msg_t *req)
{
    reply(k, sock, req, json_pack("{s:s, s:{}}", "status", "ok", "comms"));
    return H_DONE;
}

static int
h_comm_open(struct kernel *k, void *sock, wire_msg_t *req)
{
    const char *id = str_field(req, "comm_id");
    const char *target = str_field(req, "target_name");

    (void)sock;
    log_warn("comm_open for unknown target \"%s\": closing it", target ? target : "");
    if (id)
        publish(k, req, "comm_close", json_pack("{s:s, s:{}}", "comm_id", id, "data"));
    return H_DONE;
}

static int
h_comm_ignore(struct kernel *k, void *sock, wire_msg_t *req)
{
    (void)k;
    (void)sock;
    log_debug("%s for a comm we do not have: ignored", wire_msg_type(req));
    return H_DONE;
}

/* Interrupts the cell in flight: SIGINT to its runtime's process group. */
static void
interrupt_cell(struct kernel *k)
{
    if (k->p.kind == PR_NONE || !k->p.rt)
        return;
    k->p.input_waiting = false; /* a pending input is cancelled */
    runtime_interrupt(k->p.rt);
}

static int
h_interrupt(struct kernel *k, void *sock, wire_msg_t *req)
{
    interrupt_cell(k);
    reply(k, sock, req, json_pack("{s:s}", "status", "ok"));
    return H_DONE;
}

static int
h_shutdown(struct kernel *k, void *sock, wire_msg_t *req)
{
    bool restart = bool_field(req, "restart", false);

    reply(k, sock, req, json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    publish(k, req, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
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
    { "comm_msg", h_comm_ignore, ON_SHELL },
    { "comm_close", h_comm_ignore, ON_SHELL },
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
    publish_status(k, req, "busy");
    k->aborting = abort;
    if (!h) {
        log_warn("unknown message type \"%s\" on %s: ignored", type,
                 ch == CH_SHELL ? "shell" : "control");
        publish_status(k, req, "idle");
    } else if (h->fn(k, sock, req) == H_DONE) {
        publish_status(k, req, "idle");
    } else {
        req = NULL; /* pending: owned by k->p now */
    }
    k->aborting = false;
    wire_msg_destroy(&req);
}

/* Receives one message from a shell or control socket and serves it. */
static void
dispatch(struct kernel *k, enum channel ch)
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
static void
serve_backlog(struct kernel *k)
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
static void
serve_subscriptions(struct kernel *k)
{
    zmq_msg_t m;
    bool subscribed = false;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, k->sock[CH_IOPUB], ZMQ_DONTWAIT) >= 0)
        if (zmq_msg_size(&m) >= 1 && ((const unsigned char *)zmq_msg_data(&m))[0] == 1)
            subscribed = true;
    zmq_msg_close(&m);
    if (subscribed)
        publish_status(k, k->p.kind != PR_NONE ? k->p.req : NULL,
                       k->p.kind != PR_NONE ? "busy" : "idle");
}

/* An input_reply on stdin goes to the runtime waiting for it. */
static void
serve_stdin(struct kernel *k)
{
    wire_msg_t *m = NULL;
    char err[256];
    int rc = wire_recv(k->wire, k->sock[CH_STDIN], ZMQ_DONTWAIT, &m, err, sizeof err);

    if (rc != CG_OK) {
        if (rc != CG_ESYS)
            log_warn("dropped a message on stdin: %s", err);
        return;
    }
    const char *value = str_field(m, "value");
    if (strcmp(wire_msg_type(m), "input_reply") == 0 && k->p.input_waiting && k->p.rt) {
        k->p.input_waiting = false;
        if (runtime_input_reply(k->p.rt, value ? value : "") != CG_OK)
            log_error("out of memory forwarding input");
    } else {
        log_debug("unexpected %s on stdin: ignored", wire_msg_type(m));
    }
    wire_msg_destroy(&m);
}

/* ---- process housekeeping ----------------------------------------------- */

/* Reaps every exited child: drivers, and orphans that were re-parented to
 * us (we are a child subreaper, so nothing a runtime starts escapes). */
static void box_gone(struct kernel *k, const char *why);

static void
reap_children(struct kernel *k)
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
                runtime_ended(k, k->rts[i], status);
    }
}

/* A process started in the box ended (its init told us). */
static void
on_box_exit(void *ctx, pid_t pid, int status)
{
    struct kernel *k = ctx;

    for (size_t i = 0; i < langs_count(); i++)
        if (k->rts[i] && runtime_pid(k->rts[i]) == pid)
            runtime_ended(k, k->rts[i], status);
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
            runtime_ended(k, k->rts[i], SIGKILL);
    box_destroy(&k->box);
}

/* Enforces the per-cell wall clock: SIGINT at the limit, SIGKILL of the
 * runtime two seconds later if the cell is still running. */
static void
check_deadline(struct kernel *k)
{
    struct pending *p = &k->p;

    if (p->kind != PR_EXECUTE || !p->deadline || now_s() < p->deadline)
        return;
    if (p->timeouts == 0) {
        p->timeouts = 1;
        p->deadline = now_s() + 2.0;
        runtime_interrupt(p->rt);
    } else if (p->timeouts == 1) {
        p->timeouts = 2;
        p->deadline = 0;
        runtime_kill(p->rt);
    }
}

static void
serve_signals(struct kernel *k)
{
    struct signalfd_siginfo si;

    while (read(k->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGINT:
            interrupt_cell(k); /* jupyter_client's interrupt_mode "signal" */
            break;
        case SIGCHLD:
            reap_children(k);
            break;
        default:
            log_info("signal %u: shutting down", si.ssi_signo);
            k->quit = true;
        }
    }
}

/* Kills whatever child processes remain (orphans of runtimes included). */
static void
kill_children(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t me = getpid();

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[64], buf[512];
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* the comm may contain spaces */
        long ppid = 0;
        char state;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == me)
            kill(pid, SIGKILL);
    }
    closedir(d);
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
    kill_children();
    for (size_t i = 0; i < MAX_LANGS; i++)
        runtime_destroy(&k->rts[i]);
    box_destroy(&k->box);
    kill_children();
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    pending_clear(k);
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
    if (k->p.kind == PR_NONE && !ensure_runtime(k, k->primary, err, sizeof err))
        log_warn("%s", err);
}

static void
loop(struct kernel *k)
{
    struct rt_sink sink = sink_of(k);
    zmq_pollitem_t items[6 + MAX_LANGS * RT_POLL_ITEMS];
    size_t rt_at[MAX_LANGS], rt_n[MAX_LANGS];
    char err[256];

    while (!k->quit) {
        size_t n = 0;
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
        bool ready = (k->backlog_len && k->p.kind == PR_NONE) || k->prestart;
        long wait_ms = ready ? 0 : PARENT_CHECK_MS;
        if (k->p.deadline) {
            double left = k->p.deadline - now_s();
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
        check_deadline(k);
        if (rc <= 0) {
            serve_backlog(k);
            prestart(k);
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN)
            for (int i = 0; i < 16 && !k->quit; i++) /* several, but bounded */
                dispatch(k, CH_CONTROL);
        if (items[1].revents & ZMQ_POLLIN)
            serve_signals(k);
        if (items[4].revents & ZMQ_POLLIN)
            serve_subscriptions(k);
        if (k->box && (items[5].revents & ZMQ_POLLIN)
            && box_events(k->box, on_box_exit, k) != CG_OK)
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
        if ((items[2].revents & ZMQ_POLLIN) && k->p.input_waiting)
            serve_stdin(k);
        serve_backlog(k);
        if ((items[3].revents & ZMQ_POLLIN) && k->p.kind == PR_NONE && !k->backlog_len
            && !k->quit)
            dispatch(k, CH_SHELL);
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
    publish_status(&k, NULL, "starting");
    /* The main language's driver starts in the loop's first turn, after
     * any kernel_info already waiting, so the first cell need not wait. */
    k.prestart = true;
    loop(&k);
    status = 0;
out:
    teardown(&k);
    return status;
}
