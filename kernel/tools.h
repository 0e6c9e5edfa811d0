/*
 * tools.h - the client's privileged tools, offered as Jupyter comms whose
 * target names start with "cellgate." (DESIGN.md). The kernel, not the box,
 * carries them out, so everything a request names is checked here: paths
 * are resolved inside the box's root and never become host paths.
 */
#ifndef CG_TOOLS_H
#define CG_TOOLS_H

#include "kernel_impl.h"

/*
 * comm_open: for a tool's target, runs the request in the open's data
 * (if any) and answers with one comm_msg and a comm_close; an open with
 * empty data stays open for requests sent as comm_msg. Other targets get
 * comm_close at once. Returns false if the target is not a tool.
 */
bool tools_comm_open(struct kernel *k, const wire_msg_t *req);

/* comm_msg on an open tool comm: one request, one result comm_msg. */
void tools_comm_msg(struct kernel *k, const wire_msg_t *req);

/* comm_close from the client: forget the comm. */
void tools_comm_close(struct kernel *k, const wire_msg_t *req);

/* comm_info_reply's "comms": the open tool comms, of target (or all if NULL). */
json_t *tools_comm_info(const struct kernel *k, const char *target);

#endif
