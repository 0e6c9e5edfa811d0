/*
 * tool.c - what the tools share (see tool.h): a job's result, error
 * results, reading a request's members, and the output a tool streams to
 * the client and keeps for its reply.
 */
#include "kernel/tools/tool.h"

#include "common/cgerr.h"
#include "common/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

void
job_finish(struct tool_job *job, json_t *result)
{
    if (job->result) {
        json_decref(result);
        return;
    }
    job->result = result ? result : tool_error("MemoryError", "out of memory");
    if (!job->result)
        job->result = json_null(); /* still done: answered as out of memory */
}

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

int
tool_exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

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
tool_output_add(struct chan *chan, bool publish, struct tool_output *out, struct tool_text *cut,
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
        size_t room = publish && n ? chan_output_room(chan, name, clean, n) : 0;
        if (room)
            chan_stream(chan, chan_current(chan), name, clean, room);
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
