/*
 * tools.c - comms for the client's tools (see tools.h). Each tool is one
 * row of the table below: a target name and a function from the request's
 * data to its result ({"status": "ok", ...} or an error object), or to a
 * job that runs on in the loop until it leaves a result (tool.h).
 * After every call into a job or the sessions, a result left there is
 * answered here.
 */
#include "kernel/tools/tools.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tools {
    struct tool_env env;
    struct tool_job *job;         /* the running job, or NULL */
    char comm_id[64];             /* ... its comm */
    bool close_comm;              /* ... which was opened with the request */
    size_t job_items;             /* poll items the job filled this turn */
    struct {
        char id[64];
        const char *target;       /* a tool's target name */
    } comms[TOOLS_MAX_COMMS];     /* tool comms the client keeps open */
    size_t n_comms;
};

static const struct tool {
    const char *target;
    tool_fn fn;
} tools[] = {
    { "cellgate.download", tool_download },
    { "cellgate.open_image", tool_open_image },
    { "cellgate.exec", tool_exec },
    { "cellgate.feed", tool_feed },
};

static const struct tool *
find_tool(const char *target)
{
    for (size_t i = 0; target && i < sizeof tools / sizeof tools[0]; i++)
        if (strcmp(tools[i].target, target) == 0)
            return &tools[i];
    return NULL;
}

struct tools *
tools_new(struct chan *chan, struct site *site)
{
    struct tools *ts = calloc(1, sizeof *ts);

    if (!ts)
        return NULL;
    ts->env = (struct tool_env){ .chan = chan, .site = site, .sessions = sessions_new() };
    if (!ts->env.sessions) {
        free(ts);
        return NULL;
    }
    return ts;
}

static void
end_job(struct tools *ts)
{
    if (ts->job) {
        json_decref(ts->job->result);
        ts->job->result = NULL;
        ts->job->ops->destroy(ts->job);
        ts->job = NULL;
    }
}

void
tools_destroy(struct tools **tsp)
{
    if (!tsp || !*tsp)
        return;
    struct tools *ts = *tsp;
    end_job(ts);
    sessions_destroy(&ts->env.sessions);
    free(ts);
    *tsp = NULL;
}

/* Publishes result (stolen; NULL or not an object: out of memory) as the
 * comm_msg on comm id, and comm_close if close. */
static void
answer(struct tools *ts, const wire_msg_t *req, const char *id, bool close, json_t *result)
{
    if (!json_is_object(result)) {
        json_decref(result);
        result = tool_error("MemoryError", "out of memory");
    }
    chan_publish(ts->env.chan, req, "comm_msg",
                 json_pack("{s:s, s:o}", "comm_id", id, "data", result));
    if (close)
        chan_publish(ts->env.chan, req, "comm_close",
                     json_pack("{s:s, s:{}}", "comm_id", id, "data"));
}

/* If the running job left its result: answers it on the job's comm, frees
 * the job and ends the request in service (idle). */
static void
pick_up(struct tools *ts)
{
    if (!ts->job || !ts->job->result)
        return;
    json_t *result = ts->job->result;
    ts->job->result = NULL;
    answer(ts, chan_current(ts->env.chan), ts->comm_id, ts->close_comm, result);
    end_job(ts);
    chan_end(ts->env.chan, false);
}

/* Runs one request on comm id: publishes the result as a comm_msg (and
 * comm_close if close), or leaves a job running. Returns TOOL_DONE, or
 * TOOL_PENDING when a job runs on (the request stays in service). */
static enum tool_state
run_tool(struct tools *ts, const struct tool *t, const wire_msg_t *req, const char *id,
         json_t *data, bool close)
{
    struct tool_job *job = NULL;
    json_t *result;

    if (!json_is_object(data))
        result = tool_error("ValueError", "data must be an object");
    else
        result = t->fn(&ts->env, req, data, &job);
    if (!result && job) {
        snprintf(ts->comm_id, sizeof ts->comm_id, "%s", id);
        ts->close_comm = close;
        ts->job = job;
        return TOOL_PENDING;
    }
    answer(ts, req, id, close, result);
    return TOOL_DONE;
}

enum tool_state
tools_comm_open(struct tools *ts, const wire_msg_t *req)
{
    const char *id = msg_str(req, "comm_id");
    const struct tool *t = find_tool(msg_str(req, "target_name"));
    json_t *data = json_object_get(req->content, "data");

    if (!t || !id)
        return TOOL_UNKNOWN;
    if (json_is_object(data) && json_object_size(data) == 0 && ts->n_comms < TOOLS_MAX_COMMS
        && strlen(id) < sizeof ts->comms[0].id) {
        /* No request yet: the comm stays open for comm_msg requests. */
        memcpy(ts->comms[ts->n_comms].id, id, strlen(id) + 1);
        ts->comms[ts->n_comms++].target = t->target;
        return TOOL_DONE;
    }
    return run_tool(ts, t, req, id, data, true);
}

bool
tools_has_comm(const struct tools *ts, const char *id)
{
    for (size_t i = 0; id && i < ts->n_comms; i++)
        if (strcmp(ts->comms[i].id, id) == 0)
            return true;
    return false;
}

enum tool_state
tools_comm_msg(struct tools *ts, const wire_msg_t *req)
{
    const char *id = msg_str(req, "comm_id");

    for (size_t i = 0; id && i < ts->n_comms; i++)
        if (strcmp(ts->comms[i].id, id) == 0)
            return run_tool(ts, find_tool(ts->comms[i].target), req, id,
                            json_object_get(req->content, "data"), false);
    log_debug("comm_msg for a comm we do not have: ignored");
    return TOOL_DONE;
}

void
tools_comm_close(struct tools *ts, const wire_msg_t *req)
{
    const char *id = msg_str(req, "comm_id");

    for (size_t i = 0; id && i < ts->n_comms; i++)
        if (strcmp(ts->comms[i].id, id) == 0) {
            ts->comms[i] = ts->comms[--ts->n_comms];
            return;
        }
}

json_t *
tools_comm_info(const struct tools *ts, const char *target)
{
    json_t *comms = json_object();

    for (size_t i = 0; i < ts->n_comms; i++)
        if (!target || strcmp(target, ts->comms[i].target) == 0)
            json_object_set_new(comms, ts->comms[i].id,
                                json_pack("{s:s}", "target_name", ts->comms[i].target));
    return comms;
}

/* ---- jobs in the loop ------------------------------------------------------ */

size_t
tools_poll_items(struct tools *ts, zmq_pollitem_t *items)
{
    ts->job_items = ts->job && ts->job->ops->poll ? ts->job->ops->poll(ts->job, items) : 0;
    return ts->job_items + sessions_poll(ts->env.sessions, items + ts->job_items,
                                         TOOLS_POLL_ITEMS - ts->job_items);
}

void
tools_service(struct tools *ts, const zmq_pollitem_t *items, size_t n)
{
    size_t mine = ts->job_items;

    /* Sessions first: a session job ends on what its terminal said. */
    sessions_service(&ts->env, items + mine, n - mine);
    pick_up(ts);
    if (ts->job && mine)
        ts->job->ops->service(&ts->env, ts->job, items, mine);
    pick_up(ts);
}

double
tools_tick(struct tools *ts)
{
    if (!ts->job)
        return 0;
    double next = ts->job->ops->tick(&ts->env, ts->job, clock_now());
    pick_up(ts);
    return ts->job ? next : 0;
}

void
tools_interrupt(struct tools *ts)
{
    if (ts->job)
        ts->job->ops->interrupt(&ts->env, ts->job);
    pick_up(ts);
}

bool
tools_exited(struct tools *ts, pid_t pid, int status, bool boxed)
{
    bool mine = ts->job && ts->job->ops->exited
                && ts->job->ops->exited(&ts->env, ts->job, pid, status, boxed);

    if (!mine)
        mine = sessions_exited(&ts->env, pid, status, boxed);
    pick_up(ts);
    return mine;
}

void
tools_box_gone(struct tools *ts, const char *ename, const char *why)
{
    if (ts->job)
        job_finish(ts->job, tool_error(ename, "%s", why));
    pick_up(ts);
    sessions_clear(ts->env.sessions); /* their processes died with the box */
}
