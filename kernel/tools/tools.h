/*
 * tools.h - the client's privileged tools, offered as Jupyter comms whose
 * target names start with "cellgate." (DESIGN.md). The kernel, not the box,
 * carries them out, so everything a request names is checked here: paths
 * are resolved inside the box's root and never become host paths.
 */
#ifndef CG_TOOLS_H
#define CG_TOOLS_H

#include "kernel/kernel_impl.h"

#define JOB_POLL_ITEMS 3      /* poll items the running job may use */
#define SESSIONS_MAX 8        /* cellgate.exec sessions a kernel keeps */
#define TOOLS_POLL_ITEMS (JOB_POLL_ITEMS + SESSIONS_MAX)

enum tool_state {
    TOOL_UNKNOWN,   /* not a tool's target */
    TOOL_DONE,      /* answered */
    TOOL_PENDING,   /* a job runs on; the kernel's pending request owns req */
};

/*
 * comm_open: for a tool's target, runs the request in the open's data
 * (if any) and answers with one comm_msg and a comm_close; an open with
 * empty data stays open for requests sent as comm_msg.
 */
enum tool_state tools_comm_open(struct kernel *k, wire_msg_t *req);

/* comm_msg on an open tool comm: one request, one result comm_msg. */
enum tool_state tools_comm_msg(struct kernel *k, wire_msg_t *req);

/* comm_close from the client: forget the comm. */
void tools_comm_close(struct kernel *k, const wire_msg_t *req);

/* comm_info_reply's "comms": the open tool comms, of target (or all if NULL). */
json_t *tools_comm_info(const struct kernel *k, const char *target);

/*
 * Tools that take time (exec, feed, download) run as a job in the loop,
 * the request pending (PR_TOOL) meanwhile. The loop asks for the fds to
 * poll (at most TOOLS_POLL_ITEMS items: the job's and the exec sessions'),
 * serves them after polling, calls tools_tick each turn (it returns the
 * next deadline in monotonic seconds, 0 for none), routes interrupts and
 * ended processes here (boxed: a pid the box's init reported, else one the
 * kernel reaped). tools_destroy kills every tool process, at exit.
 */
size_t tools_poll_items(struct kernel *k, zmq_pollitem_t *items);
void tools_service(struct kernel *k, const zmq_pollitem_t *items, size_t n);
double tools_tick(struct kernel *k);
void tools_interrupt(struct kernel *k);
bool tools_exited(struct kernel *k, pid_t pid, int status, bool boxed);
void tools_destroy(struct kernel *k);

/* cellgate-fetch's path (beside the running binary) into buf; 0 or -1. */
int tools_fetch_program(char *buf, size_t len);

/* Ends the running job, if any, with an error result (ename, why). */
void tools_abort(struct kernel *k, const char *ename, const char *why);

#endif
