/*
 * cell.c - a shell request's life on a runtime: starting the runtime it
 * needs, handing it the request, turning what the driver sends back into
 * Jupyter messages (streams under the output limit, displays, results,
 * the one error, input requests), and finishing the request - or failing
 * it when the runtime dies (see kernel_impl.h).
 */
#include "kernel/kernel_impl.h"

#include "kernel/displayd.h"

/* ---- runtimes ----------------------------------------------------------- */

static void on_stream(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len);
static void on_record(void *ctx, struct runtime *rt, json_t *rec);

struct rt_sink
cell_sink(struct kernel *k)
{
    return (struct rt_sink){ .ctx = k, .stream = on_stream, .record = on_record };
}


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
            box_events(k->box, kernel_on_box_exit, k);
        else
            kernel_reap_children(k);
        if (runtime_alive(rt))
            usleep(10000);
    }
    if (runtime_alive(rt)) {
        runtime_kill(rt);
        cell_runtime_ended(k, rt, SIGKILL);
    }
}

struct rt_place
cell_place(struct kernel *k)
{
    struct rt_place where = { .spawner = spawn_plain() };

    if (k->box)
        where = (struct rt_place){ .spawner = box_spawner(k->box), .home = BOX_HOME };
    displayd_place(k, &where);
    return where;
}

/* Returns a running runtime for lang, starting one if needed; NULL with
 * err filled if it cannot start. */
struct runtime *
cell_runtime(struct kernel *k, const struct lang *lang, char *err, size_t errlen)
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
    struct rt_place where = cell_place(k);
    if (runtime_start(rt, &where, err, errlen) != CG_OK) {
        runtime_destroy(&rt);
        return NULL;
    }
    log_debug("started %s runtime, pid %ld", lang->name, (long)runtime_pid(rt));
    k->rts[i] = rt;
    return rt;
}

/* Splits a leading "%%name" line off code. Returns the language (primary
 * when there is no magic) and sets *body and *shift (code points removed).
 * A name that is no language's is left in the code for a primary language
 * whose driver has cell magics of its own (Python's %%time); otherwise the
 * result is NULL with *unknown set to the name. */
const struct lang *
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
        return k->primary->cell_magics ? k->primary : NULL;
    const char *nl = strchr(p, '\n');
    *body = nl ? nl + 1 : p + strlen(p);
    *shift = utf8_count(code, (size_t)(*body - code));
    return l;
}

/* Tells the cell (stderr) that l's runtime is fresh: earlier state is gone. */
void
cell_note_fresh_runtime(struct kernel *k, const wire_msg_t *req, const struct lang *l)
{
    char note[256];

    snprintf(note, sizeof note, "[cellgate: the %s runtime had ended; this cell runs in a "
             "fresh one, so earlier variables and imports are gone]\n", l->name);
    kernel_publish_stream(k, req, "stderr", note, strlen(note));
    k->state_lost[langs_index(l)] = false;
}

/* Sends the pending execute (its req, code and options are in k->p) to rt. */
int
cell_send_execute(struct kernel *k, struct runtime *rt)
{
    struct pending *p = &k->p;
    json_t *ue = json_object_get(p->req->content, "user_expressions");
    json_t *empty = json_object();

    if (!p->code || !empty) {
        json_decref(empty);
        return CG_ENOMEM;
    }
    struct rt_exec x = {
        .code = p->code + utf8_offset(p->code, strlen(p->code), p->shift),
        .silent = p->silent, .store_history = p->store_history, .allow_stdin = p->allow_stdin,
        .color = k->color, .user_expressions = json_is_object(ue) ? ue : empty,
        .execution_count = p->count,
    };
    int rc = runtime_execute(rt, &x);
    json_decref(empty);
    return rc;
}

/* ---- finishing requests ------------------------------------------------- */

void
cell_clear(struct kernel *k)
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
void
cell_backlog_fill(struct kernel *k)
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
        cell_backlog_fill(k);
    kernel_reply(k, k->sock[CH_SHELL], p->req, content);
    if (p->store_history && history_add(k->hist, p->count, p->code, p->result_text) != CG_OK)
        log_warn("out of memory recording history");
    kernel_publish_status(k, p->req, "idle");
    cell_clear(k);
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
    kernel_reply(k, k->sock[CH_SHELL], p->req, c);
    kernel_publish_status(k, p->req, "idle");
    cell_clear(k);
}

/* The pending request's runtime died or broke the protocol. */
static void
fail_pending(struct kernel *k, const char *ename, const char *why)
{
    struct pending *p = &k->p;

    if (p->kind == PR_NONE)
        return;
    if (p->kind != PR_EXECUTE) {
        kernel_reply(k, k->sock[CH_SHELL], p->req, kernel_error_content(ename, why));
        kernel_publish_status(k, p->req, "idle");
        cell_clear(k);
        return;
    }
    if (!p->error) {
        p->error = json_pack("{s:s, s:s, s:[s]}", "ename", ename, "evalue", why, "traceback", why);
        kernel_publish(k, p->req, "error", json_deep_copy(p->error));
    }
    finish_execute(k, NULL);
}

/* Called once a runtime's driver was reaped. */
void
cell_runtime_ended(struct kernel *k, struct runtime *rt, int status)
{
    struct rt_sink sink = cell_sink(k);
    char why[512];

    runtime_exited(rt, status, &sink);
    k->state_lost[langs_index(runtime_lang(rt))] = true;
    log_info("%s runtime %s", runtime_lang(rt)->name, runtime_death(rt));
    if (k->p.kind == PR_EXECUTE && k->p.rt == rt && !k->p.started && !k->p.resent
        && runtime_lang(rt)->acks_execute) {
        /* It died before it saw the cell (killed between cells, e.g. by
         * `kill -9 -1` in the box): the cell never ran, so it is safe to
         * give it to a fresh runtime, once. */
        char err[512];
        struct runtime *fresh = cell_runtime(k, runtime_lang(rt), err, sizeof err);
        k->p.resent = true;
        if (fresh && cell_send_execute(k, fresh) == CG_OK) {
            k->p.rt = fresh;
            cell_note_fresh_runtime(k, k->p.req, runtime_lang(fresh));
            return;
        }
    }
    if (k->p.kind != PR_NONE && k->p.rt == rt) {
        const char *cause = "";
        char limit[160] = "";
        if (k->p.timeouts) {
            snprintf(limit, sizeof limit, " after running past the time limit of %llu s "
                     "(--timeout)", (unsigned long long)k->limits.timeout);
            cause = limit;
        } else if (k->p.force_killed) {
            cause = " by a second interrupt (it had not stopped at the first)";
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

void
cell_interrupt(struct kernel *k)
{
    struct pending *p = &k->p;
    double now = kernel_now();

    if (p->kind == PR_EXECUTE && p->interrupted_at
        && now - p->interrupted_at >= CELL_INTERRUPT_FORCE_S) {
        log_info("second interrupt: ending the %s runtime", runtime_lang(p->rt)->name);
        p->force_killed = true;
        runtime_kill(p->rt); /* the cell ends when it is reaped */
        return;
    }
    if (p->kind == PR_EXECUTE && !p->interrupted_at)
        p->interrupted_at = now;
    p->input_waiting = false; /* a pending input is cancelled */
    runtime_interrupt(p->rt);
}

/* The per-cell wall clock: SIGINT at the limit, SIGKILL of the runtime two
 * seconds later if the cell is still running. Returns when it is next due,
 * or 0. */
static double
time_limit_tick(struct pending *p, double now)
{
    if (!p->deadline || now < p->deadline)
        return p->deadline;
    if (p->timeouts == 0) {
        p->timeouts = 1;
        p->deadline = now + 2.0;
        runtime_interrupt(p->rt);
    } else {
        p->timeouts = 2;
        p->deadline = 0;
        runtime_kill(p->rt);
    }
    return p->deadline;
}

/* A cell still running CELL_INTERRUPT_FORCE_S after the client's interrupt
 * is told how to end it. Returns when it is next due, or 0. */
static double
interrupt_notice_tick(struct kernel *k, double now)
{
    struct pending *p = &k->p;

    if (!p->interrupted_at || p->interrupt_noted || p->force_killed)
        return 0;
    double due = p->interrupted_at + CELL_INTERRUPT_FORCE_S;
    if (now < due)
        return due;
    char note[256];
    snprintf(note, sizeof note, "[cellgate: the cell is still running %.0f s after the "
             "interrupt; interrupt again to end the %s runtime (its variables and imports "
             "are lost)]\n", CELL_INTERRUPT_FORCE_S, runtime_lang(p->rt)->name);
    kernel_publish_stream(k, p->req, "stderr", note, strlen(note));
    p->interrupt_noted = true;
    return 0;
}

double
cell_tick(struct kernel *k)
{
    if (k->p.kind != PR_EXECUTE)
        return 0;
    double now = kernel_now();
    double limit = time_limit_tick(&k->p, now);
    double notice = interrupt_notice_tick(k, now);
    return !limit || (notice && notice < limit) ? notice : limit;
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

/* Applies the output limit of the pending request (a cell, for output of
 * its runtime; or a tool, whose rt is NULL); returns how many bytes of len
 * may go out (0 once the limit was hit), publishing the notice when it is
 * hit. Other output is not limited.
 * text is the output of stream name, published up to the limit, or NULL
 * for output that is not text (a display) and goes out whole or not at
 * all. */
static size_t
output_allowance(struct kernel *k, struct runtime *rt, const char *name, const char *text,
                 size_t len)
{
    struct pending *p = &k->p;
    char note[256];

    if ((p->kind != PR_EXECUTE && p->kind != PR_TOOL) || p->rt != rt || k->output_limit == 0)
        return len;
    if (p->limit_hit)
        return 0;
    if (p->out_bytes + len <= k->output_limit) {
        p->out_bytes += len;
        return len;
    }
    size_t room = text ? utf8_complete_prefix(text, k->output_limit - p->out_bytes) : 0;
    p->out_bytes = k->output_limit;
    p->limit_hit = true;
    if (room)
        kernel_publish_stream(k, p->req, name, text, room);
    snprintf(note, sizeof note, "\n[cellgate: this %s's output passed the limit of %zu bytes; "
             "the rest of its output is discarded. The limit is set with --output-limit or "
             "CELLGATE_OUTPUT_LIMIT.]\n", p->kind == PR_TOOL ? "tool" : "cell", k->output_limit);
    kernel_publish_stream(k, p->req, "stderr", note, strlen(note));
    return 0;
}

/* Output the kernel publishes itself (cellgate-display's) counts against
 * the pending request's output limit too. */
bool
cell_output_allowed(struct kernel *k, size_t len)
{
    return output_allowance(k, k->p.rt, "stdout", NULL, len) != 0 || !k->p.limit_hit;
}

size_t
cell_output_room(struct kernel *k, const char *name, const char *text, size_t len)
{
    return output_allowance(k, NULL, name, text, len);
}

static void
on_stream(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len)
{
    struct kernel *k = ctx;

    if (output_allowance(k, rt, name, text, len) == 0 && len)
        return;
    kernel_publish_stream(k, output_parent(k, rt), name, text, len);
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
            kernel_publish(k, parent, "clear_output",
                    json_pack("{s:b}", "wait", json_is_true(json_object_get(rec, "wait"))));
            return;
        }
        if (exec && output_allowance(k, rt, "stdout", NULL, data_size(rec)) == 0 && p->limit_hit)
            return;
        bool update = json_is_true(json_object_get(rec, "update"));
        kernel_publish(k, parent, update ? "update_display_data" : "display_data", mime_content(rec));
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
        kernel_publish(k, p->req, "execute_result", c);
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
        kernel_publish(k, p->req, "error", json_deep_copy(p->error));
    } else if (strcmp(t, "page") == 0 && exec) {
        json_t *data = json_object_get(rec, "data");
        if (json_is_object(data))
            json_array_append_new(p->payload, json_pack("{s:s, s:O, s:i}", "source", "page",
                                                        "data", data, "start", 0));
    } else if (strcmp(t, "input") == 0 && exec && p->allow_stdin) {
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        kernel_send(k, k->sock[CH_STDIN], p->req, "input_request",
                 json_pack("{s:s, s:b}", "prompt", prompt ? prompt : "", "password",
                           json_is_true(json_object_get(rec, "password"))));
        p->input_waiting = true;
    } else if (strcmp(t, "started") == 0 && exec) {
        p->started = true;
    } else if (strcmp(t, "done") == 0 && exec) {
        finish_execute(k, json_object_get(rec, "user_expressions"));
    } else if (strcmp(t, "reply") == 0 && mine && !exec) {
        finish_request(k, rec);
    } else {
        log_debug("ignored \"%s\" record from the %s driver", t, runtime_lang(rt)->name);
    }
}
