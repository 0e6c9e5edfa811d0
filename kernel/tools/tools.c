/*
 * tools.c - comms for the client's tools (see tools.h). Each tool is one
 * row of the table below: a target name and a function from the request's
 * data to its result ({"status": "ok", ...} or an error object), or to a
 * job that runs on in the loop and ends with tools_finish() (tools_impl.h).
 * Also here: open_image, and the output handling jobs share.
 */
#include "kernel/tools/tools_impl.h"

#include "sandbox/boxfs.h"
#include "kernel/display.h"

#include <fcntl.h>
#include <stdarg.h>

json_t *
tool_error(const char *ename, const char *fmt, ...)
{
    char evalue[4400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(evalue, sizeof evalue, fmt, ap);
    va_end(ap);
    return json_pack("{s:s, s:s, s:s}", "status", "error", "ename", ename, "evalue", evalue);
}

/* cellgate.open_image {path} -> {mime, width, height} + a display_data. */
static json_t *
tool_open_image(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    const char *path = json_string_value(json_object_get(data, "path"));
    char why[4200];
    unsigned char *bytes;
    size_t len;
    json_t *c;
    struct display_shown shown;
    int root = AT_FDCWD, fd = -1, e = 0;

    (void)job;
    if (!path || !*path)
        return tool_error("ValueError", "open_image needs a \"path\"");
    if (k->box && boxfs_root_open(box_init_pid(k->box), &root, why, sizeof why) != CG_OK)
        return tool_error("OSError", "%s", why);
    if (boxfs_open_read(root, path, &fd, NULL, NULL, 0) != CG_OK)
        e = errno;
    if (root != AT_FDCWD)
        close(root);
    if (fd < 0)
        return tool_error(e == ENOENT ? "FileNotFoundError" : "OSError", "%s: %s", path,
                          strerror(e));
    int rc = display_read_fd(fd, &bytes, &len, why, sizeof why);
    close(fd);
    if (rc != CG_OK)
        return tool_error(rc == CG_ETOOBIG ? "ImageTooLarge" : rc == CG_EINVAL ? "NotAnImage"
                                                                              : "OSError",
                          "%s: %s", path, why);
    rc = display_bundle(bytes, len, path, NULL, DISPLAY_IMAGES, &c, &shown, why, sizeof why);
    free(bytes);
    if (rc != CG_OK)
        return tool_error(rc == CG_ENOMEM ? "MemoryError" : "NotAnImage", "%s", why);
    kernel_publish(k, req, "display_data", c);
    return json_pack("{s:s, s:s, s:i, s:i}", "status", "ok", "mime", shown.mime, "width",
                     shown.width, "height", shown.height);
}

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

/* The tools' state, made on first use; NULL if out of memory. */
static struct tools *
state(struct kernel *k)
{
    if (!k->tools)
        k->tools = calloc(1, sizeof *k->tools);
    return k->tools;
}

/* Publishes result (stolen; NULL: out of memory) as the comm_msg on comm
 * id, and comm_close if close. */
static void
answer(struct kernel *k, const wire_msg_t *req, const char *id, bool close, json_t *result)
{
    if (!result)
        result = tool_error("MemoryError", "out of memory");
    kernel_publish(k, req, "comm_msg", json_pack("{s:s, s:o}", "comm_id", id, "data", result));
    if (close)
        kernel_publish(k, req, "comm_close", json_pack("{s:s, s:{}}", "comm_id", id, "data"));
}

/* Runs one request on comm id: publishes the result as a comm_msg (and
 * comm_close if close), or leaves a job running. Returns TOOL_DONE, or
 * TOOL_PENDING when a job runs on (k->p owns req then). */
static enum tool_state
run_tool(struct kernel *k, const struct tool *t, wire_msg_t *req, const char *id,
         json_t *data, bool close)
{
    struct tools *ts = state(k);
    struct tool_job *job = NULL;
    json_t *result;

    if (!ts)
        result = tool_error("MemoryError", "out of memory");
    else if (!json_is_object(data))
        result = tool_error("ValueError", "data must be an object");
    else
        result = t->fn(k, req, data, &job);
    if (!result && job) {
        snprintf(ts->comm_id, sizeof ts->comm_id, "%s", id);
        ts->close_comm = close;
        ts->job = job;
        k->p = (struct pending){ .kind = PR_TOOL, .req = req };
        return TOOL_PENDING;
    }
    answer(k, req, id, close, result);
    return TOOL_DONE;
}

void
tools_finish(struct kernel *k, json_t *result)
{
    struct tools *ts = k->tools;
    const wire_msg_t *req = k->p.req;

    if (!ts || !ts->job || k->p.kind != PR_TOOL) {
        json_decref(result);
        return;
    }
    answer(k, req, ts->comm_id, ts->close_comm, result);
    ts->job->ops->destroy(ts->job);
    ts->job = NULL;
    kernel_publish_status(k, req, "idle");
    cell_clear(k);
}

enum tool_state
tools_comm_open(struct kernel *k, wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");
    const struct tool *t = find_tool(kernel_str_field(req, "target_name"));
    json_t *data = json_object_get(req->content, "data");

    if (!t || !id)
        return TOOL_UNKNOWN;
    if (json_is_object(data) && json_object_size(data) == 0
        && k->n_comms < sizeof k->comms / sizeof k->comms[0] && strlen(id) < sizeof k->comms[0].id) {
        /* No request yet: the comm stays open for comm_msg requests. */
        memcpy(k->comms[k->n_comms].id, id, strlen(id) + 1);
        k->comms[k->n_comms++].target = t->target;
        return TOOL_DONE;
    }
    return run_tool(k, t, req, id, data, true);
}

enum tool_state
tools_comm_msg(struct kernel *k, wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");

    for (size_t i = 0; id && i < k->n_comms; i++)
        if (strcmp(k->comms[i].id, id) == 0)
            return run_tool(k, find_tool(k->comms[i].target), req, id,
                            json_object_get(req->content, "data"), false);
    log_debug("comm_msg for a comm we do not have: ignored");
    return TOOL_DONE;
}

void
tools_comm_close(struct kernel *k, const wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");

    for (size_t i = 0; id && i < k->n_comms; i++)
        if (strcmp(k->comms[i].id, id) == 0) {
            k->comms[i] = k->comms[--k->n_comms];
            return;
        }
}

json_t *
tools_comm_info(const struct kernel *k, const char *target)
{
    json_t *comms = json_object();

    for (size_t i = 0; i < k->n_comms; i++)
        if (!target || strcmp(target, k->comms[i].target) == 0)
            json_object_set_new(comms, k->comms[i].id,
                                json_pack("{s:s}", "target_name", k->comms[i].target));
    return comms;
}

/* ---- jobs in the loop ------------------------------------------------------ */

size_t
tools_poll_items(struct kernel *k, zmq_pollitem_t *items)
{
    struct tools *ts = k->tools;
    size_t n = 0;

    if (!ts)
        return 0;
    ts->job_items = ts->job ? ts->job->ops->poll(ts->job, items) : 0;
    n = ts->job_items;
    return n + sessions_poll(k, items + n, TOOLS_POLL_ITEMS - n);
}

void
tools_service(struct kernel *k, const zmq_pollitem_t *items, size_t n)
{
    struct tools *ts = k->tools;
    size_t mine = ts ? ts->job_items : 0;

    if (!ts)
        return;
    /* Sessions first: a session job ends on what its terminal said. */
    sessions_service(k, items + mine, n - mine);
    if (ts->job && mine)
        ts->job->ops->service(k, ts->job, items, mine);
}

double
tools_tick(struct kernel *k)
{
    struct tools *ts = k->tools;

    return ts && ts->job ? ts->job->ops->tick(k, ts->job, kernel_now()) : 0;
}

void
tools_interrupt(struct kernel *k)
{
    struct tools *ts = k->tools;

    if (ts && ts->job)
        ts->job->ops->interrupt(k, ts->job);
}

bool
tools_exited(struct kernel *k, pid_t pid, int status, bool boxed)
{
    struct tools *ts = k->tools;

    if (!ts)
        return false;
    if (ts->job && ts->job->ops->exited(k, ts->job, pid, status, boxed))
        return true;
    return sessions_exited(k, pid, status, boxed);
}

void
tools_abort(struct kernel *k, const char *ename, const char *why)
{
    if (k->tools && k->tools->job && k->p.kind == PR_TOOL)
        tools_finish(k, tool_error(ename, "%s", why));
}

void
tools_destroy(struct kernel *k)
{
    struct tools *ts = k->tools;

    if (!ts)
        return;
    if (ts->job)
        ts->job->ops->destroy(ts->job);
    sessions_destroy(k);
    free(ts);
    k->tools = NULL;
}

/* ---- what tools share ------------------------------------------------------ */

bool
tool_text(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

const char *
tool_str_member(const json_t *data, const char *name, bool *bad)
{
    json_t *v = json_object_get(data, name);

    if (!v || json_is_null(v))
        return NULL;
    if (!tool_text(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* Drops the oldest bytes of out so that at most keep remain, starting on
 * a character. */
static void
output_drop_front(struct tool_output *out, size_t keep)
{
    struct buf *b = &out->text;

    if (b->len <= keep)
        return;
    size_t cut = b->len - keep;
    while (cut < b->len && ((unsigned char)b->data[cut] & 0xC0) == 0x80)
        cut++; /* not in the middle of a character */
    buf_consume(b, cut);
    out->dropped += cut;
}

/* Keeps len bytes of valid UTF-8 in out: up to TOOL_OUTPUT_MAX of the
 * first bytes, or with keep_tail the last TOOL_OUTPUT_MAX (compacted when
 * twice that is reached, so a flood costs one move per megabyte). */
static void
output_keep(struct tool_output *out, const char *text, size_t len)
{
    size_t max = out->keep_tail ? 2 * TOOL_OUTPUT_MAX : TOOL_OUTPUT_MAX;
    if (out->keep_tail && out->text.len + len > max)
        output_drop_front(out, len < TOOL_OUTPUT_MAX ? TOOL_OUTPUT_MAX - len : 0);
    size_t room = out->text.len < max ? max - out->text.len : 0;
    size_t n = len <= room ? len : utf8_complete_prefix(text, room);

    if (buf_add(&out->text, text, n) != CG_OK) {
        out->dropped += len;
        return;
    }
    out->dropped += len - n;
}

void
tool_output_add(struct kernel *k, bool publish, struct tool_output *out, struct tool_text *cut,
                const char *name, const char *bytes, size_t len)
{
    char stack[4096 + 4], *joined = NULL;
    const char *raw = bytes;
    size_t total = cut->carry_len + len;

    /* Joined in a buffer only behind a cut sequence: a read (up to 64 KiB)
     * is otherwise used where it is. */
    if (cut->carry_len) {
        if (!(joined = total <= sizeof stack ? stack : malloc(total))) {
            out->dropped += len;
            return;
        }
        memcpy(joined, cut->carry, cut->carry_len);
        memcpy(joined + cut->carry_len, bytes, len);
        raw = joined;
    }
    /* len 0 means the end: a cut sequence is let out as it is. */
    size_t whole = len ? utf8_complete_prefix(raw, total) : total;
    cut->carry_len = total - whole;
    memcpy(cut->carry, raw + whole, cut->carry_len);
    size_t n;
    const char *clean = utf8_clean(raw, whole, &n);
    if (clean) {
        output_keep(out, clean, n);
        size_t room = publish && n ? cell_output_room(k, name, clean, n) : 0;
        if (room)
            kernel_publish_stream(k, k->p.req, name, clean, room);
    }
    if (clean != raw)
        free((char *)clean);
    if (joined != stack)
        free(joined);
}

json_t *
tool_output_take(struct tool_output *out)
{
    json_t *s;
    char note[160];
    const char *text = out->text.data ? out->text.data : "";

    if (out->keep_tail)
        output_drop_front(out, TOOL_OUTPUT_MAX);
    if (out->dropped && out->keep_tail) {
        snprintf(note, sizeof note, "[cellgate: %zu earlier bytes of output are not in this "
                 "reply]\n", out->dropped);
        s = json_pack("s+", note, text);
    } else if (out->dropped) {
        snprintf(note, sizeof note, "\n[cellgate: %zu more bytes of output are not in this "
                 "reply]\n", out->dropped);
        s = json_pack("s+", text, note);
    } else {
        s = json_stringn(text, out->text.len);
    }
    buf_free(&out->text);
    *out = (struct tool_output){ .keep_tail = out->keep_tail };
    return s;
}
