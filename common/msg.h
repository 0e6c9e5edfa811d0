/*
 * msg.h - reading and answering Jupyter messages, for every program that
 * speaks the protocol (the kernel serving requests, the gateway relaying
 * them): typed access to a message's content, the reply type of a request
 * and the standard error content.
 */
#ifndef CG_MSG_H
#define CG_MSG_H

#include "common/wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The string member name of m's content, or NULL when absent or not a
 * string. Borrowed from m. */
const char *msg_str(const wire_msg_t *m, const char *name);

/* The boolean member name of m's content, or dflt when absent or not a
 * boolean. */
bool msg_bool(const wire_msg_t *m, const char *name, bool dflt);

/* True if m's type ends in "_request" (it expects a reply). */
bool msg_is_request(const wire_msg_t *m);

/* The reply type of a request type into buf: "execute_request" ->
 * "execute_reply"; a type without "_request" gets "_reply" appended.
 * Truncated to len - 1 bytes. */
void msg_reply_type(const char *req_type, char *buf, size_t len);

/* A new reply content {status: "error", ename, evalue, traceback:
 * [evalue]}, or NULL when out of memory. */
json_t *msg_error_content(const char *ename, const char *evalue);

#endif
