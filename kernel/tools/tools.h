/*
 * tools.h - the client's privileged tools, offered as Jupyter comms whose
 * target names start with "cellgate." (DESIGN.md). The kernel, not the box,
 * carries them out, so everything a request names is checked here: paths
 * are resolved inside the box's root and never become host paths, and
 * once the box is gone no tool falls back to the host.
 */
#ifndef CG_TOOLS_H
#define CG_TOOLS_H

#include "common/wire.h"
#include "kernel/chan.h"
#include "kernel/site.h"
#include "kernel/tools/tool.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <zmq.h>

#define TOOLS_POLL_ITEMS (JOB_POLL_ITEMS + SESSIONS_MAX)
#define TOOLS_MAX_COMMS 32    /* tool comms a client may keep open */

enum tool_state {
    TOOL_UNKNOWN,   /* not a tool's target */
    TOOL_DONE,      /* answered */
    TOOL_PENDING,   /* a job runs on; the request stays in service on the channel */
};

struct tools;

/* The tools of a kernel, publishing through chan and working in site
 * (both borrowed, they outlive the tools). NULL when out of memory. */
struct tools *tools_new(struct chan *chan, struct site *site);

/* Kills every tool process (the running job's, the sessions'), frees the
 * tools and nulls *ts. Idempotent. */
void tools_destroy(struct tools **ts);

/*
 * comm_open (req is the request in service): for a tool's target, runs
 * the request in the open's data (if any) and answers with one comm_msg
 * and a comm_close; an open with empty data stays open for requests sent
 * as comm_msg.
 */
enum tool_state tools_comm_open(struct tools *ts, const wire_msg_t *req);

/* comm_msg on an open tool comm: one request, one result comm_msg. */
enum tool_state tools_comm_msg(struct tools *ts, const wire_msg_t *req);

/* True if id is a comm open on one of the tools (NULL id: false). */
bool tools_has_comm(const struct tools *ts, const char *id);

/* comm_close from the client: forget the comm. */
void tools_comm_close(struct tools *ts, const wire_msg_t *req);

/* comm_info_reply's "comms": the open tool comms, of target (or all if NULL). */
json_t *tools_comm_info(const struct tools *ts, const char *target);

/*
 * Tools that take time (exec, feed, download) run as a job in the loop,
 * the request in service meanwhile. The loop asks for the fds to poll (at
 * most TOOLS_POLL_ITEMS items: the job's and the exec sessions'), serves
 * them after polling, calls tools_tick each turn (it returns the next
 * deadline in monotonic seconds, 0 for none), routes interrupts and ended
 * processes here (boxed: a pid the box's init reported, else one the
 * kernel reaped; true if it was a tool's).
 */
size_t tools_poll_items(struct tools *ts, zmq_pollitem_t *items);
void tools_service(struct tools *ts, const zmq_pollitem_t *items, size_t n);
double tools_tick(struct tools *ts);
void tools_interrupt(struct tools *ts);
bool tools_exited(struct tools *ts, pid_t pid, int status, bool boxed);

/* The box died: the running job ends with an error result (ename, why)
 * and every session is gone with the box. */
void tools_box_gone(struct tools *ts, const char *ename, const char *why);

#endif
