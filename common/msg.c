/*
 * msg.c - reading and answering Jupyter messages (see msg.h).
 */
#include "common/msg.h"

#include <stdio.h>
#include <string.h>

#define REQUEST_SUFFIX "_request"

const char *
msg_str(const wire_msg_t *m, const char *name)
{
    return json_string_value(json_object_get(m->content, name));
}

bool
msg_bool(const wire_msg_t *m, const char *name, bool dflt)
{
    json_t *v = json_object_get(m->content, name);

    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Length of type without a trailing "_request", or 0 if it has none. */
static size_t
request_stem(const char *type)
{
    size_t n = strlen(type), s = strlen(REQUEST_SUFFIX);

    return n > s && strcmp(type + n - s, REQUEST_SUFFIX) == 0 ? n - s : 0;
}

bool
msg_is_request(const wire_msg_t *m)
{
    return request_stem(wire_msg_type(m)) != 0;
}

void
msg_reply_type(const char *req_type, char *buf, size_t len)
{
    size_t n = request_stem(req_type);

    snprintf(buf, len, "%.*s_reply", (int)(n ? n : strlen(req_type)), req_type);
}

json_t *
msg_error_content(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s, s:[s]}", "status", "error", "ename", ename, "evalue",
                     evalue, "traceback", evalue);
}
