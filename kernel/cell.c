/*
 * cell.c - shell requests on a runtime (see cell.h): starting the runtime
 * a request needs, handing it the request, turning what the driver sends
 * back into Jupyter messages, and finishing the request - or failing it
 * when the runtime dies.
 */
#include "kernel/cell.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/utf8.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PIDS_CHECK_S 0.25 /* how often a running cell looks at the process limit */
#define SWEEPS 8          /* sweeps of a cell's processes after an interrupt at the limit */
#define SWEEP_GAP_S 0.25  /* between them: what the cell forks meanwhile goes too */

enum pending_kind { PR_NONE, PR_EXECUTE, PR_COMPLETE, PR_INSPECT, PR_IS_COMPLETE };

/* The shell request a runtime is working on; the request itself is the
 * channel's request in service. */
struct pending {
    enum pending_kind kind;
    struct runtime *rt;
    size_t shift;               /* code points of a %%magic line removed */
    char *code;                 /* the whole cell, for history */
    json_t *error;              /* the cell's error record, owned */
    json_t *payload;            /* execute_reply payload list, owned */
    char *result_text;          /* text/plain of the result, for history */
    int count;                  /* execution_count of this cell */
    bool silent, store_history, stop_on_error, allow_stdin;
    bool input_waiting;         /* an input_request is out */
    double deadline;            /* monotonic seconds when the cell times out, 0: never */
    int timeouts;               /* 1: interrupted for the time limit; 2: killed */
    double interrupted_at;      /* monotonic seconds of the client's first interrupt, 0: none */
    bool interrupt_noted;       /* the "interrupt again" notice went out */
    bool force_killed;          /* a second interrupt ended the runtime */
    uint64_t oom_before;        /* the box's OOM kills when the cell started */
    struct site_mark mark;      /* the box's process limit when the cell started */
    bool pids_full;             /* the cell reached the process limit (said once) */
    double pids_check_at;       /* when to look at the limit next (monotonic s) */
    bool swept;                 /* an interrupt at the limit ended the cell's processes */
    int sweeps;                 /* sweeps of the cell's processes left after an interrupt */
    double sweep_at;            /* when the next sweep is due, 0: none */
    bool started;               /* the driver acknowledged the execute ("started") */
    bool interrupt_held;        /* an interrupt came before "started": sent with it */
    bool resent;                /* already resent once to a fresh runtime */
};

struct cells {
    struct cells_opts o;
    struct runtime *rts[CELL_MAX_LANGS]; /* by language index, started lazily */
    bool state_lost[CELL_MAX_LANGS];     /* a runtime died: tell the next cell */
    size_t rt_n[CELL_MAX_LANGS];         /* poll items each filled this turn */
    struct pending p;
    int execution_count;
};

static void end_sweeps(struct cells *cs);
static void on_stream(void *ctx, struct runtime *rt, const char *name, const char *text,
                      size_t len);
static void on_record(void *ctx, struct runtime *rt, json_t *rec);
static void runtime_ended(struct cells *cs, struct runtime *rt, int status);

/* The sink through which runtimes hand their output to the cells. */
static struct rt_sink
sink_of(struct cells *cs)
{
    return (struct rt_sink){ .ctx = cs, .stream = on_stream, .record = on_record };
}

/* ---- set-up and tear-down ----------------------------------------------- */

struct cells *
cells_new(const struct cells_opts *opts)
{
    struct cells *cs = langs_count() <= CELL_MAX_LANGS ? calloc(1, sizeof *cs) : NULL;

    if (!langs_count() || langs_count() > CELL_MAX_LANGS)
        log_error("%zu languages: cells hold at most %d", langs_count(), CELL_MAX_LANGS);
    if (cs)
        cs->o = *opts;
    return cs;
}

void
cells_kill(struct cells *cs)
{
    for (size_t i = 0; i < CELL_MAX_LANGS; i++)
        if (cs->rts[i])
            runtime_kill(cs->rts[i]);
}

/* Frees what the pending request holds; no request is pending after. */
static void
pending_free(struct pending *p)
{
    json_decref(p->error);
    json_decref(p->payload);
    free(p->code);
    free(p->result_text);
    *p = (struct pending){ .kind = PR_NONE };
}

/* Forgets the pending request, which ends on the channel (idle); with
 * keep it stays the parent of late output. */
static void
pending_clear(struct cells *cs, bool keep)
{
    pending_free(&cs->p);
    chan_end(cs->o.chan, keep);
}

void
cells_destroy(struct cells **csp)
{
    if (!csp || !*csp)
        return;
    struct cells *cs = *csp;
    pending_free(&cs->p);
    for (size_t i = 0; i < CELL_MAX_LANGS; i++)
        runtime_destroy(&cs->rts[i]);
    free(cs);
    *csp = NULL;
}

/* ---- runtimes ----------------------------------------------------------- */

/*
 * A runtime whose control socket hung up is dead or dying, though its exit
 * may not be reported yet (e.g. `kill -9 -1` in the box killed it between
 * cells): wait for the report (bounded), so the next cell goes to a fresh
 * runtime instead of a dead one.
 */
static void
settle_death(struct cells *cs, struct runtime *rt)
{
    for (int i = 0; i < 100 && runtime_alive(rt); i++) {
        if (cs->o.reap)
            cs->o.reap(cs->o.reap_ctx);
        if (runtime_alive(rt))
            usleep(10000);
    }
    if (runtime_alive(rt)) {
        runtime_kill(rt);
        runtime_ended(cs, rt, SIGKILL);
    }
}

/* A running runtime for lang, started if needed; NULL with err filled. */
static struct runtime *
runtime_for(struct cells *cs, const struct lang *lang, char *err, size_t errlen)
{
    size_t i = langs_index(lang);
    struct runtime *rt = cs->rts[i];
    struct rt_place where;

    if (rt && runtime_alive(rt) && runtime_hung_up(rt))
        settle_death(cs, rt);
    if (rt && runtime_alive(rt))
        return rt;
    runtime_destroy(&cs->rts[i]);
    if (!lang_available(lang)) {
        cg_fail(err, errlen, CG_ENOTFOUND, "%s is not installed on this machine (%s is missing)",
                lang->name, lang->program);
        return NULL;
    }
    if (site_place(cs->o.site, &where, err, errlen) != CG_OK)
        return NULL;
    rt = runtime_new(lang);
    if (!rt) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    if (runtime_start(rt, &where, err, errlen) != CG_OK) {
        runtime_destroy(&rt);
        return NULL;
    }
    log_debug("started %s runtime, pid %ld", lang->name, (long)runtime_pid(rt));
    cs->rts[i] = rt;
    return rt;
}

void
cell_prestart(struct cells *cs)
{
    char err[512];

    if (cs->p.kind == PR_NONE && !runtime_for(cs, cs->o.primary, err, sizeof err))
        log_warn("%s", err);
}

const char *
cell_language_version(const struct cells *cs)
{
    const struct runtime *rt = cs->rts[langs_index(cs->o.primary)];

    return rt ? runtime_version(rt) : NULL;
}

/* Splits a leading "%%name" line off code. Returns the language (primary
 * when there is no magic) and sets *body and *shift (code points removed).
 * A name that is no language's is left in the code for a primary language
 * whose driver has cell magics of its own (Python's %%time); otherwise the
 * result is NULL with *unknown set to the name. */
static const struct lang *
cell_language(struct cells *cs, const char *code, const char **body, size_t *shift,
              char unknown[64])
{
    const char *p = code;

    *body = code;
    *shift = 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (strncmp(p, "%%", 2) != 0)
        return cs->o.primary;
    size_t n = strcspn(p + 2, " \t\r\n");
    snprintf(unknown, 64, "%.*s", (int)(n < 63 ? n : 63), p + 2);
    const struct lang *l = n < 63 ? langs_find(unknown) : NULL;
    if (!l)
        return cs->o.primary->cell_magics ? cs->o.primary : NULL;
    const char *nl = strchr(p, '\n');
    *body = nl ? nl + 1 : p + strlen(p);
    *shift = utf8_count(code, (size_t)(*body - code));
    return l;
}

/* Tells the cell (stderr) that l's runtime is fresh: earlier state is gone. */
static void
note_fresh_runtime(struct cells *cs, const wire_msg_t *req, const struct lang *l)
{
    char note[256];

    snprintf(note, sizeof note, "[cellgate: the %s runtime had ended; this cell runs in a "
             "fresh one, so earlier variables and imports are gone]\n", l->name);
    chan_stream(cs->o.chan, req, "stderr", note, strlen(note));
    cs->state_lost[langs_index(l)] = false;
}

/* Tells the cell (stderr) that the box is fresh: its init had died with
 * every process in it. */
static void
note_fresh_box(struct cells *cs, const wire_msg_t *req, const char *why)
{
    char note[512];

    snprintf(note, sizeof note, "[cellgate: the box had ended (%s); this cell runs in a fresh "
             "box, so the earlier state was lost: variables, imports, background processes "
             "and /tmp (/mnt/data is kept)]\n", why);
    chan_stream(cs->o.chan, req, "stderr", note, strlen(note));
    memset(cs->state_lost, 0, sizeof cs->state_lost);
}

/* Sends the pending execute (its code and options are in cs->p) to rt. */
static int
send_execute(struct cells *cs, struct runtime *rt)
{
    struct pending *p = &cs->p;
    const wire_msg_t *req = chan_current(cs->o.chan);
    json_t *ue = json_object_get(req->content, "user_expressions");
    json_t *empty = json_object();

    if (!p->code || !empty) {
        json_decref(empty);
        return CG_ENOMEM;
    }
    struct rt_exec x = {
        .code = p->code + utf8_offset(p->code, strlen(p->code), p->shift),
        .silent = p->silent, .store_history = p->store_history, .allow_stdin = p->allow_stdin,
        .color = cs->o.color, .user_expressions = json_is_object(ue) ? ue : empty,
        .execution_count = p->count,
    };
    int rc = runtime_execute(rt, &x);
    json_decref(empty);
    return rc;
}

/* ---- starting requests -------------------------------------------------- */

/* Starts a pending request of kind on the runtime for the cell's language.
 * Returns the runtime, or NULL after answering the request with an error. */
static struct runtime *
begin_pending(struct cells *cs, const wire_msg_t *req, enum pending_kind kind, const char *code,
              const char **body)
{
    char unknown[64], err[512];
    size_t shift;
    const struct lang *l = cell_language(cs, code, body, &shift, unknown);
    struct runtime *rt;

    if (!l) {
        snprintf(err, sizeof err, "no language named \"%s\" in %%%%%s", unknown, unknown);
        rt = NULL;
    } else {
        rt = runtime_for(cs, l, err, sizeof err);
    }
    if (!rt) {
        json_t *c = msg_error_content(l ? "RuntimeUnavailable" : "UnknownLanguage", err);
        if (kind == PR_EXECUTE) {
            chan_publish(cs->o.chan, req, "error",
                         json_pack("{s:O, s:O, s:O}", "ename", json_object_get(c, "ename"),
                                   "evalue", json_object_get(c, "evalue"), "traceback",
                                   json_object_get(c, "traceback")));
            json_object_set_new(c, "execution_count", json_integer(cs->p.count));
            if (cs->p.stop_on_error)
                chan_backlog_fill(cs->o.chan);
        }
        chan_reply(cs->o.chan, CH_SHELL, req, c);
        return NULL;
    }
    char why[256];
    if (kind == PR_EXECUTE && site_take_rebuilt(cs->o.site, why, sizeof why))
        note_fresh_box(cs, req, why);
    else if (cs->state_lost[langs_index(l)] && kind == PR_EXECUTE)
        note_fresh_runtime(cs, req, l);
    cs->p.kind = kind;
    cs->p.rt = rt;
    cs->p.shift = shift;
    return rt;
}

bool
cell_execute(struct cells *cs, const wire_msg_t *req)
{
    struct pending *p = &cs->p;
    const char *code = msg_str(req, "code"), *body;

    if (!code) {
        chan_reply(cs->o.chan, CH_SHELL, req,
                   msg_error_content("BadRequest", "execute_request without \"code\""));
        return false;
    }
    *p = (struct pending){ .kind = PR_NONE };
    p->silent = msg_bool(req, "silent", false);
    p->store_history = msg_bool(req, "store_history", !p->silent) && !p->silent;
    p->allow_stdin = msg_bool(req, "allow_stdin", true);
    p->stop_on_error = msg_bool(req, "stop_on_error", true);
    p->count = p->store_history ? ++cs->execution_count : cs->execution_count;
    if (!p->silent)
        chan_publish(cs->o.chan, req, "execute_input",
                     json_pack("{s:s, s:i}", "code", code, "execution_count", p->count));

    struct runtime *rt = begin_pending(cs, req, PR_EXECUTE, code, &body);
    if (!rt)
        return false;
    p->code = strdup(code);
    p->payload = json_array();
    p->deadline = cs->o.site->limits.timeout
                      ? clock_now() + (double)cs->o.site->limits.timeout : 0;
    p->oom_before = site_oom_kills(cs->o.site);
    site_mark(cs->o.site, &p->mark);
    p->pids_check_at = clock_now() + PIDS_CHECK_S;
    int rc = send_execute(cs, rt);
    if (!p->code || !p->payload || rc != CG_OK) {
        pending_free(p);
        chan_reply(cs->o.chan, CH_SHELL, req, msg_error_content("MemoryError", "out of memory"));
        return false;
    }
    return true;
}

bool
cell_request(struct cells *cs, const wire_msg_t *req)
{
    static const struct {
        const char *type, *driver;
        enum pending_kind kind;
    } kinds[] = {
        { "complete_request", "complete", PR_COMPLETE },
        { "inspect_request", "inspect", PR_INSPECT },
        { "is_complete_request", "is_complete", PR_IS_COMPLETE },
    };
    const char *code = msg_str(req, "code"), *body, *type = NULL;
    enum pending_kind kind = PR_NONE;
    json_t *cp = json_object_get(req->content, "cursor_pos");
    size_t cursor = json_is_integer(cp) && json_integer_value(cp) >= 0
                        ? (size_t)json_integer_value(cp)
                        : (code ? utf8_count(code, strlen(code)) : 0);
    json_t *dl = json_object_get(req->content, "detail_level");

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(wire_msg_type(req), kinds[i].type) == 0) {
            type = kinds[i].driver;
            kind = kinds[i].kind;
        }
    if (!code || !type) {
        chan_reply(cs->o.chan, CH_SHELL, req,
                   msg_error_content("BadRequest", type ? "request without \"code\""
                                                        : "not a request for a runtime"));
        return false;
    }
    cs->p = (struct pending){ .kind = PR_NONE };
    struct runtime *rt = begin_pending(cs, req, kind, code, &body);
    if (!rt)
        return false;
    json_t *answer = NULL;
    if (kind != PR_IS_COMPLETE && cursor < cs->p.shift) {
        /* The cursor is on the %%magic line: nothing to offer there. */
        answer = kind == PR_COMPLETE
                     ? json_pack("{s:s, s:[], s:I, s:I, s:{}}", "status", "ok", "matches",
                                 "cursor_start", (json_int_t)cursor, "cursor_end",
                                 (json_int_t)cursor, "metadata")
                     : json_pack("{s:s, s:b, s:{}, s:{}}", "status", "ok", "found", 0, "data",
                                 "metadata");
    } else if (kind == PR_IS_COMPLETE && body == code + strlen(code) && cs->p.shift) {
        /* only "%%lang" so far: more is to come */
        answer = json_pack("{s:s, s:s}", "status", "incomplete", "indent", "");
    } else if (runtime_request(rt, type, body, cursor - (kind == PR_IS_COMPLETE ? 0 : cs->p.shift),
                               json_is_integer(dl) ? (int)json_integer_value(dl) : 0) != CG_OK) {
        answer = msg_error_content("MemoryError", "out of memory");
    }
    if (answer) {
        cs->p.kind = PR_NONE;
        chan_reply(cs->o.chan, CH_SHELL, req, answer);
        return false;
    }
    if (kind == PR_IS_COMPLETE)
        cs->p.shift = 0;
    return true;
}

bool
cell_pending(const struct cells *cs)
{
    return cs->p.kind != PR_NONE;
}

bool
cell_input_waiting(const struct cells *cs)
{
    return cs->p.input_waiting;
}

void
cell_input_reply(struct cells *cs, const char *value)
{
    if (!cs->p.input_waiting || !cs->p.rt)
        return;
    cs->p.input_waiting = false;
    if (runtime_input_reply(cs->p.rt, value) != CG_OK)
        log_error("out of memory forwarding input");
}

bool
cell_comm(struct cells *cs, const wire_msg_t *req)
{
    const struct lang *py = langs_find("python");
    struct runtime *rt = py ? cs->rts[langs_index(py)] : NULL;

    if (!rt || !runtime_alive(rt) || !json_is_object(req->content))
        return false;
    return runtime_comm(rt, wire_msg_type(req), req->content) == CG_OK;
}

/* ---- finishing requests ------------------------------------------------- */

static void
finish_execute(struct cells *cs, json_t *user_expressions)
{
    struct pending *p = &cs->p;
    const wire_msg_t *req = chan_current(cs->o.chan);
    json_t *content;

    if (p->swept)
        end_sweeps(cs);
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
        chan_backlog_fill(cs->o.chan);
    chan_reply(cs->o.chan, CH_SHELL, req, content);
    if (p->store_history && history_add(cs->o.hist, p->count, p->code, p->result_text) != CG_OK)
        log_warn("out of memory recording history");
    pending_clear(cs, true); /* the parent of what its threads print later */
}

/* Answers complete / inspect / is_complete from the driver's reply record. */
static void
finish_request(struct cells *cs, json_t *rec)
{
    struct pending *p = &cs->p;
    json_t *c = json_deep_copy(rec);

    json_object_del(c, "t");
    json_object_set_new(c, "status", json_string("ok"));
    if (p->kind == PR_COMPLETE) {
        json_t *m = json_object_get(c, "matches");
        if (!json_is_array(m))
            json_object_set_new(c, "matches", json_array());
        json_int_t start = json_integer_value(json_object_get(c, "cursor_start"));
        json_int_t ce = json_integer_value(json_object_get(c, "cursor_end"));
        json_object_set_new(c, "cursor_start", json_integer(start + (json_int_t)p->shift));
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
    chan_reply(cs->o.chan, CH_SHELL, chan_current(cs->o.chan), c);
    pending_clear(cs, false);
}

/* The pending request's runtime died or broke the protocol. */
static void
fail_pending(struct cells *cs, const char *ename, const char *why)
{
    struct pending *p = &cs->p;
    const wire_msg_t *req = chan_current(cs->o.chan);

    if (p->kind == PR_NONE)
        return;
    if (p->kind != PR_EXECUTE) {
        chan_reply(cs->o.chan, CH_SHELL, req, msg_error_content(ename, why));
        pending_clear(cs, false);
        return;
    }
    if (!p->error) {
        p->error = json_pack("{s:s, s:s, s:[s]}", "ename", ename, "evalue", why, "traceback", why);
        chan_publish(cs->o.chan, req, "error", json_deep_copy(p->error));
    }
    finish_execute(cs, NULL);
}

/* Why a runtime that died under its cell died, beyond its exit status:
 * the time limit, a second interrupt, the box's memory limit; or "". */
static const char *
death_cause(struct cells *cs, int status, char *buf, size_t len)
{
    const struct site *site = cs->o.site;

    if (cs->p.timeouts) {
        snprintf(buf, len, " after running past the time limit of %llu s (--timeout)",
                 (unsigned long long)site->limits.timeout);
        return buf;
    }
    if (cs->p.force_killed)
        return " by a second interrupt (it had not stopped at the first)";
    if (site->rebuilt[0]) {
        snprintf(buf, len, " with the box (%s), which the next cell builds afresh",
                 site->rebuilt);
        return buf;
    }
    if (site->box && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
        && site_oom_kills(site) > cs->p.oom_before) {
        snprintf(buf, len, " by the box's memory limit of %llu MiB (--memory)",
                 (unsigned long long)(site->limits.memory >> 20));
        return buf;
    }
    return "";
}

/* Called once a runtime's driver was reaped. */
static void
runtime_ended(struct cells *cs, struct runtime *rt, int status)
{
    struct rt_sink sink = sink_of(cs);
    char why[768], cause[320];

    runtime_exited(rt, status, &sink);
    cs->state_lost[langs_index(runtime_lang(rt))] = true;
    log_info("%s runtime %s", runtime_lang(rt)->name, runtime_death(rt));
    if (cs->p.kind == PR_EXECUTE && cs->p.rt == rt && !cs->p.started && !cs->p.resent
        && runtime_lang(rt)->acks_execute) {
        /* It died before it saw the cell (killed between cells, e.g. by
         * `kill -9 -1` in the box): the cell never ran, so it is safe to
         * give it to a fresh runtime, once. */
        char err[512];
        struct runtime *fresh = runtime_for(cs, runtime_lang(rt), err, sizeof err);
        cs->p.resent = true;
        if (fresh && send_execute(cs, fresh) == CG_OK) {
            cs->p.rt = fresh;
            note_fresh_runtime(cs, chan_current(cs->o.chan), runtime_lang(fresh));
            return;
        }
    }
    if (cs->p.kind != PR_NONE && cs->p.rt == rt) {
        snprintf(why, sizeof why, "the %s runtime %s%s; its state (variables, imports, "
                 "working directory) was lost. The next cell starts a fresh runtime.",
                 runtime_lang(rt)->name, runtime_death(rt),
                 death_cause(cs, status, cause, sizeof cause));
        fail_pending(cs, cs->p.timeouts ? "CellTimeout" : "RuntimeExited", why);
    }
}

bool
cell_exited(struct cells *cs, pid_t pid, int status)
{
    for (size_t i = 0; i < langs_count(); i++)
        if (cs->rts[i] && runtime_alive(cs->rts[i]) && runtime_pid(cs->rts[i]) == pid) {
            runtime_ended(cs, cs->rts[i], status);
            return true;
        }
    return false;
}

void
cell_box_gone(struct cells *cs)
{
    for (size_t i = 0; i < langs_count(); i++)
        if (cs->rts[i] && runtime_alive(cs->rts[i]))
            runtime_ended(cs, cs->rts[i], SIGKILL);
}

/* ---- the box's process limit ------------------------------------------ */

/* True once the running cell reached the box's process limit; the cell is
 * told so on stderr, once. */
static bool
pids_full(struct cells *cs)
{
    struct pending *p = &cs->p;

    if (!p->pids_full && site_pids_reached(cs->o.site, &p->mark)) {
        char note[320];
        p->pids_full = true;
        snprintf(note, sizeof note, "[cellgate: the box's process limit (%llu, --pids) was "
                 "reached: no new process can start. Interrupt the cell to end the processes "
                 "it started; those of earlier cells are kept]\n",
                 (unsigned long long)cs->o.site->limits.pids);
        chan_stream(cs->o.chan, chan_current(cs->o.chan), "stderr", note, strlen(note));
    }
    return p->pids_full;
}

/* Ends the processes the interrupted cell started (site_end_cell), and
 * plans the next sweep while any are left. */
static void
sweep_cell(struct cells *cs, double now)
{
    struct pending *p = &cs->p;
    pid_t spare[CELL_MAX_LANGS];
    size_t n = 0;

    for (size_t i = 0; i < langs_count(); i++)
        if (cs->rts[i] && runtime_alive(cs->rts[i]))
            spare[n++] = runtime_pid(cs->rts[i]);
    long ended = site_end_cell(cs->o.site, &p->mark, runtime_pid(p->rt), spare, n);
    if (ended > 0)
        log_info("ended %ld processes of the interrupted cell", ended);
    p->sweeps = ended < 0 ? 0 : p->sweeps - 1;
    p->sweep_at = p->sweeps > 0 ? now + SWEEP_GAP_S : 0;
}

/* The interrupted cell ends: a last sweep (what it forked since the
 * previous one), and a word on the processes that ended but still hold
 * their pids because the runtime has not collected them. */
static void
end_sweeps(struct cells *cs)
{
    struct pending *p = &cs->p;
    char note[512];

    sweep_cell(cs, clock_now());
    long z = runtime_alive(p->rt) ? site_zombies(cs->o.site, runtime_pid(p->rt)) : 0;
    if (z <= 0)
        return;
    snprintf(note, sizeof note, "[cellgate: %ld processes the cell started have ended but "
             "still count toward the process limit until the %s runtime collects them (in "
             "Python: drop the subprocess.Popen objects that hold them, or call their wait())]\n",
             z, runtime_lang(p->rt)->name);
    chan_stream(cs->o.chan, chan_current(cs->o.chan), "stderr", note, strlen(note));
}

/* After an interrupt (the client's or the time limit's): if the cell
 * reached the process limit, the SIGINT alone may not do - a shell waits
 * for the children it forked (bash, after a failed fork, for its last
 * background job), and nothing new can start while they hold the box's
 * pids - so the cell's processes are ended, now and SWEEPS times more. */
static void
start_sweeps(struct cells *cs, double now)
{
    struct pending *p = &cs->p;

    if (!pids_full(cs))
        return;
    p->sweeps = SWEEPS;
    p->swept = true;
    sweep_cell(cs, now);
}

/* The limit, looked at every PIDS_CHECK_S while the cell runs, and the
 * sweeps after an interrupt. Returns when it is next due, or 0. */
static double
pids_tick(struct cells *cs, double now)
{
    struct pending *p = &cs->p;

    if (!cs->o.site->box)
        return 0;
    if (p->sweep_at && now >= p->sweep_at)
        sweep_cell(cs, now);
    if (!p->pids_full && now >= p->pids_check_at) {
        pids_full(cs);
        p->pids_check_at = now + PIDS_CHECK_S;
    }
    double next = p->pids_full ? 0 : p->pids_check_at;
    return !next || (p->sweep_at && p->sweep_at < next) ? p->sweep_at : next;
}

/* ---- interrupts and time ------------------------------------------------ */

void
cell_interrupt(struct cells *cs)
{
    struct pending *p = &cs->p;
    double now = clock_now();

    if (p->kind == PR_NONE || !p->rt)
        return;
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
    /* A driver still starting up (or between reading the execute and
     * running it) ignores SIGINT, as ipykernel does between requests: the
     * interrupt waits for the driver to say the cell started. */
    if (p->kind == PR_EXECUTE && !p->started) {
        p->interrupt_held = true;
        return;
    }
    runtime_interrupt(p->rt);
    if (p->kind == PR_EXECUTE)
        start_sweeps(cs, now);
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
interrupt_notice_tick(struct cells *cs, double now)
{
    struct pending *p = &cs->p;

    if (!p->interrupted_at || p->interrupt_noted || p->force_killed)
        return 0;
    double due = p->interrupted_at + CELL_INTERRUPT_FORCE_S;
    if (now < due)
        return due;
    char note[256];
    snprintf(note, sizeof note, "[cellgate: the cell is still running %.0f s after the "
             "interrupt; interrupt again to end the %s runtime (its variables and imports "
             "are lost)]\n", CELL_INTERRUPT_FORCE_S, runtime_lang(p->rt)->name);
    chan_stream(cs->o.chan, chan_current(cs->o.chan), "stderr", note, strlen(note));
    p->interrupt_noted = true;
    return 0;
}

double
cell_tick(struct cells *cs)
{
    if (cs->p.kind != PR_EXECUTE)
        return 0;
    double now = clock_now();
    int timeouts = cs->p.timeouts;
    double limit = time_limit_tick(&cs->p, now);
    if (cs->p.timeouts == 1 && !timeouts)
        start_sweeps(cs, now); /* the time limit interrupted it */
    double notice = interrupt_notice_tick(cs, now);
    double next = !limit || (notice && notice < limit) ? notice : limit;
    double pids = cs->p.kind == PR_EXECUTE ? pids_tick(cs, now) : 0;
    return !next || (pids && pids < next) ? pids : next;
}

/* ---- polling ------------------------------------------------------------ */

size_t
cell_poll_items(struct cells *cs, zmq_pollitem_t *items)
{
    size_t n = 0;

    for (size_t i = 0; i < langs_count(); i++) {
        cs->rt_n[i] = cs->rts[i] ? runtime_poll_items(cs->rts[i], &items[n]) : 0;
        n += cs->rt_n[i];
    }
    return n;
}

void
cell_service(struct cells *cs, const zmq_pollitem_t *items)
{
    struct rt_sink sink = sink_of(cs);
    char err[256];
    size_t at = 0;

    for (size_t i = 0; i < langs_count(); i++) {
        struct runtime *rt = cs->rts[i];
        size_t n = cs->rt_n[i];
        if (rt && n && runtime_service(rt, &items[at], n, &sink, err, sizeof err) != CG_OK) {
            log_error("%s: killing the runtime", err);
            runtime_kill(rt); /* its death is reported when it is reaped */
        }
        at += n;
    }
}

void
cell_catch_up(void *ctx)
{
    struct cells *cs = ctx;
    struct rt_sink sink = sink_of(cs);
    struct runtime *rt = cs->p.kind != PR_NONE ? cs->p.rt : NULL;
    char err[256];

    if (rt && runtime_alive(rt) && runtime_catch_up(rt, &sink, err, sizeof err) != CG_OK) {
        log_error("%s: killing the runtime", err);
        runtime_kill(rt); /* its death is reported when it is reaped */
    }
}

/* ---- what runtimes send ------------------------------------------------- */

/* True if output of rt belongs to the running execute (and its budget). */
static bool
is_running_cell(const struct cells *cs, const struct runtime *rt)
{
    return cs->p.kind == PR_EXECUTE && cs->p.rt == rt;
}

/* The parent of output from rt: its running execute, or the last one. */
static const wire_msg_t *
output_parent(const struct cells *cs, const struct runtime *rt)
{
    return is_running_cell(cs, rt) ? chan_current(cs->o.chan) : chan_last(cs->o.chan);
}

static void
on_stream(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len)
{
    struct cells *cs = ctx;

    if (is_running_cell(cs, rt) && chan_output_room(cs->o.chan, name, text, len) == 0 && len)
        return;
    chan_stream(cs->o.chan, output_parent(cs, rt), name, text, len);
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

/* display / clear records: display_data, update_display_data, clear_output. */
static void
on_display(struct cells *cs, struct runtime *rt, json_t *rec, bool clear)
{
    const wire_msg_t *parent = output_parent(cs, rt);

    if (clear) {
        chan_publish(cs->o.chan, parent, "clear_output",
                     json_pack("{s:b}", "wait", json_is_true(json_object_get(rec, "wait"))));
        return;
    }
    if (is_running_cell(cs, rt) && !chan_output_allowed(cs->o.chan, data_size(rec)))
        return;
    bool update = json_is_true(json_object_get(rec, "update"));
    chan_publish(cs->o.chan, parent, update ? "update_display_data" : "display_data",
                 mime_content(rec));
}

/* An error record's members as Jupyter error content. */
static json_t *
error_content(json_t *rec)
{
    const char *ename = json_string_value(json_object_get(rec, "ename"));
    const char *evalue = json_string_value(json_object_get(rec, "evalue"));
    json_t *tb = json_object_get(rec, "traceback");
    json_t *tbc = json_array();
    for (size_t i = 0; json_is_array(tb) && i < json_array_size(tb); i++)
        if (json_is_string(json_array_get(tb, i)))
            json_array_append(tbc, json_array_get(tb, i));
    return json_pack("{s:s, s:s, s:o}", "ename", ename ? ename : "Error", "evalue",
                     evalue ? evalue : "", "traceback", tbc);
}

/* The cell's one error (later ones are dropped), except that a record with
 * "reply": false is only shown (IPython shows a failing post-execute hook
 * and the cell still succeeds), and one with "publish": false is only the
 * reply's (IPython printed a UsageError as text). */
static void
on_error(struct cells *cs, json_t *rec)
{
    struct pending *p = &cs->p;

    if (json_is_false(json_object_get(rec, "reply"))) {
        chan_publish(cs->o.chan, chan_current(cs->o.chan), "error", error_content(rec));
        return;
    }
    if (p->error)
        return;
    if (p->timeouts) { /* the interrupt was ours: say why */
        char why[160];
        snprintf(why, sizeof why, "the cell ran past the time limit of %llu s (--timeout)",
                 (unsigned long long)cs->o.site->limits.timeout);
        p->error = json_pack("{s:s, s:s, s:[s]}", "ename", "CellTimeout", "evalue", why,
                             "traceback", why);
    } else {
        p->error = error_content(rec);
        if (json_is_false(json_object_get(rec, "publish")))
            return;
    }
    chan_publish(cs->o.chan, chan_current(cs->o.chan), "error", json_deep_copy(p->error));
}

/* The result of the cell's last expression. */
static void
on_result(struct cells *cs, json_t *rec)
{
    struct pending *p = &cs->p;
    const char *txt = json_string_value(json_object_get(json_object_get(rec, "data"),
                                                        "text/plain"));

    if (txt && !p->result_text)
        p->result_text = strdup(txt);
    if (p->silent)
        return;
    json_t *c = mime_content(rec);
    json_object_del(c, "transient");
    json_object_set_new(c, "execution_count", json_integer(p->count));
    chan_publish(cs->o.chan, chan_current(cs->o.chan), "execute_result", c);
}

/* A comm message from the driver (ipywidgets): published as it is, for the
 * three comm message types only. */
static void
on_comm(struct cells *cs, struct runtime *rt, json_t *rec)
{
    const char *type = json_string_value(json_object_get(rec, "msg_type"));
    json_t *content = json_object_get(rec, "content");

    if (!type || !json_is_object(content) || !json_is_string(json_object_get(content, "comm_id"))
        || (strcmp(type, "comm_open") != 0 && strcmp(type, "comm_msg") != 0
            && strcmp(type, "comm_close") != 0)) {
        log_debug("ignored a malformed comm record");
        return;
    }
    chan_publish(cs->o.chan, output_parent(cs, rt), type, json_deep_copy(content));
}

static void
on_record(void *ctx, struct runtime *rt, json_t *rec)
{
    struct cells *cs = ctx;
    struct pending *p = &cs->p;
    const char *t = json_string_value(json_object_get(rec, "t"));
    bool mine = p->kind != PR_NONE && p->rt == rt;
    bool exec = mine && p->kind == PR_EXECUTE;

    if (strcmp(t, "display") == 0 || strcmp(t, "clear") == 0) {
        on_display(cs, rt, rec, strcmp(t, "clear") == 0);
    } else if (strcmp(t, "result") == 0 && exec) {
        on_result(cs, rec);
    } else if (strcmp(t, "error") == 0 && exec) {
        on_error(cs, rec);
    } else if (strcmp(t, "comm") == 0) {
        on_comm(cs, rt, rec);
    } else if (strcmp(t, "page") == 0 && exec) {
        json_t *data = json_object_get(rec, "data");
        if (json_is_object(data))
            json_array_append_new(p->payload, json_pack("{s:s, s:O, s:i}", "source", "page",
                                                        "data", data, "start", 0));
    } else if (strcmp(t, "input") == 0 && exec && p->allow_stdin) {
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        chan_send(cs->o.chan, CH_STDIN, chan_current(cs->o.chan), "input_request",
                  json_pack("{s:s, s:b}", "prompt", prompt ? prompt : "", "password",
                            json_is_true(json_object_get(rec, "password"))));
        p->input_waiting = true;
    } else if (strcmp(t, "started") == 0 && exec) {
        p->started = true;
        if (p->interrupt_held)
            runtime_interrupt(p->rt);
        p->interrupt_held = false;
    } else if (strcmp(t, "done") == 0 && exec) {
        finish_execute(cs, json_object_get(rec, "user_expressions"));
    } else if (strcmp(t, "reply") == 0 && mine && !exec) {
        finish_request(cs, rec);
    } else {
        log_debug("ignored \"%s\" record from the %s driver", t, runtime_lang(rt)->name);
    }
}
