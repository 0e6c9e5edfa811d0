/*
 * convert.c - Jupyter messages between the wire and WebSocket frames (see
 * convert.h).
 */
#include "gateway/convert.h"

#include "common/cgerr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PARTS 4 /* header, parent_header, metadata, content */

static const char *const part_names[PARTS] = { "header", "parent_header", "metadata",
                                               "content" };

/* Is name a channel a client may send to or receive from? */
static bool
known_channel(const char *name, size_t len)
{
    static const char *const names[] = { "shell", "iopub", "stdin", "control" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return true;
    return false;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t
get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The JSON object of the text form (buffers listed empty: they travel in
 * binary frames). NULL on no memory. */
static char *
dump_json_form(const wire_msg_t *m, const char *channel)
{
    const json_t *parts[PARTS] = { m->header, m->parent, m->metadata, m->content };
    json_t *o = json_object();
    char *s = NULL;

    if (!o)
        return NULL;
    for (int i = 0; i < PARTS; i++)
        if (json_object_set(o, part_names[i], parts[i] ? (json_t *)parts[i]
                                                       : json_object()) != 0)
            goto out;
    if (json_object_set_new(o, "channel", json_string(channel)) != 0
        || json_object_set_new(o, "buffers", json_array()) != 0)
        goto out;
    json_t *id = json_object_get(m->header, "msg_id"), *type = json_object_get(m->header, "msg_type");
    if ((id && json_object_set(o, "msg_id", id) != 0)
        || (type && json_object_set(o, "msg_type", type) != 0))
        goto out;
    s = json_dumps(o, JSON_COMPACT);
out:
    json_decref(o);
    return s;
}

/* The legacy binary form: u32 count, u32 offsets (big-endian), JSON, buffers. */
static int
legacy_binary(const wire_msg_t *m, const char *js, unsigned char **out, size_t *len)
{
    size_t nbufs = 1 + m->n_buffers, head = 4 * (nbufs + 1), total = head + strlen(js);
    for (size_t i = 0; i < m->n_buffers; i++)
        total += m->buffers[i].len;
    if (total > UINT32_MAX)
        return CG_ETOOBIG;
    unsigned char *b = malloc(total ? total : 1);
    if (!b)
        return CG_ENOMEM;
    size_t at = head;
    put_be32(b, (uint32_t)nbufs);
    put_be32(b + 4, (uint32_t)at);
    memcpy(b + at, js, strlen(js));
    at += strlen(js);
    for (size_t i = 0; i < m->n_buffers; i++) {
        put_be32(b + 4 * (i + 2), (uint32_t)at);
        memcpy(b + at, m->buffers[i].data, m->buffers[i].len);
        at += m->buffers[i].len;
    }
    *out = b;
    *len = total;
    return CG_OK;
}

/* The v1 form: u64 count, u64 offsets (little-endian), channel, the four
 * JSON parts, buffers. */
static int
v1_binary(const wire_msg_t *m, const char *channel, unsigned char **out, size_t *len)
{
    const json_t *parts[PARTS] = { m->header, m->parent, m->metadata, m->content };
    char *text[PARTS] = { 0 };
    size_t nparts = PARTS + m->n_buffers, noff = nparts + 2;
    size_t head = 8 * (1 + noff), total = head + strlen(channel);
    int rc = CG_ENOMEM;

    for (int i = 0; i < PARTS; i++) {
        text[i] = parts[i] ? json_dumps(parts[i], JSON_COMPACT) : strdup("{}");
        if (!text[i])
            goto out;
        total += strlen(text[i]);
    }
    for (size_t i = 0; i < m->n_buffers; i++)
        total += m->buffers[i].len;
    unsigned char *b = malloc(total);
    if (!b)
        goto out;
    size_t at = head, k = 0;
    put_le64(b, noff);
    put_le64(b + 8 * (1 + k++), at);
    memcpy(b + at, channel, strlen(channel));
    at += strlen(channel);
    put_le64(b + 8 * (1 + k++), at);
    for (size_t i = 0; i < nparts; i++) {
        const void *p = i < PARTS ? (const void *)text[i] : m->buffers[i - PARTS].data;
        size_t n = i < PARTS ? strlen(text[i]) : m->buffers[i - PARTS].len;
        memcpy(b + at, p, n);
        at += n;
        put_le64(b + 8 * (1 + k++), at);
    }
    *out = b;
    *len = total;
    rc = CG_OK;
out:
    for (int i = 0; i < PARTS; i++)
        free(text[i]);
    return rc;
}

int
convert_to_frame(const wire_msg_t *m, const char *channel, enum convert_form form,
                 unsigned char **out, size_t *len, bool *binary)
{
    *out = NULL;
    *len = 0;
    if (form == CONVERT_V1) {
        *binary = true;
        return v1_binary(m, channel, out, len);
    }
    char *js = dump_json_form(m, channel);
    if (!js)
        return CG_ENOMEM;
    if (m->n_buffers == 0) {
        *binary = false;
        *out = (unsigned char *)js;
        *len = strlen(js);
        return CG_OK;
    }
    *binary = true;
    int rc = legacy_binary(m, js, out, len);
    free(js);
    return rc;
}

/* ---- from a client ------------------------------------------------------ */

/* Takes the four parts from their JSON values (NULL: absent) into a new
 * message. Steals nothing: each value is borrowed. */
static int
build_msg(json_t *const vals[PARTS], wire_msg_t **out, char *err, size_t errlen)
{
    json_t *h = vals[0];
    if (!json_is_object(h) || !json_is_string(json_object_get(h, "msg_id"))
        || !json_is_string(json_object_get(h, "msg_type")))
        return cg_fail(err, errlen, CG_EINVAL,
                       "header must be an object with string msg_id and msg_type");
    for (int i = 1; i < PARTS; i++)
        if (vals[i] && !json_is_null(vals[i]) && !json_is_object(vals[i]))
            return cg_fail(err, errlen, CG_EINVAL, "%s must be an object", part_names[i]);
    wire_msg_t *m = calloc(1, sizeof *m);
    if (!m)
        return CG_ENOMEM;
    json_t **slots[PARTS] = { &m->header, &m->parent, &m->metadata, &m->content };
    for (int i = 0; i < PARTS; i++) {
        *slots[i] = json_is_object(vals[i]) ? json_incref(vals[i]) : json_object();
        if (!*slots[i]) {
            wire_msg_destroy(&m);
            return CG_ENOMEM;
        }
    }
    *out = m;
    return CG_OK;
}

/* Copies a channel name of len bytes, if it is one a client may send to. */
static int
take_channel(const char *name, size_t len, char channel[CONVERT_CHANNEL_MAX], char *err,
             size_t errlen)
{
    if (!name || !known_channel(name, len) || (len == 5 && memcmp(name, "iopub", 5) == 0))
        return cg_fail(err, errlen, CG_EINVAL, "channel must be shell, control or stdin");
    memcpy(channel, name, len);
    channel[len] = '\0';
    return CG_OK;
}

/* Attaches n buffers (each data/len) to m. */
static int
add_buffers(wire_msg_t *m, const unsigned char *const *data, const size_t *lens, size_t n)
{
    if (n == 0)
        return CG_OK;
    m->buffers = calloc(n, sizeof *m->buffers);
    if (!m->buffers)
        return CG_ENOMEM;
    m->n_buffers = n;
    for (size_t i = 0; i < n; i++) {
        m->buffers[i].data = malloc(lens[i] ? lens[i] : 1);
        if (!m->buffers[i].data)
            return CG_ENOMEM;
        memcpy(m->buffers[i].data, data[i], lens[i]);
        m->buffers[i].len = lens[i];
    }
    return CG_OK;
}

/* The JSON form, whose text is js[0..n), with buffers already split. */
static int
from_json(const char *js, size_t n, const unsigned char *const *bufs, const size_t *lens,
          size_t nbufs, wire_msg_t **out, char channel[CONVERT_CHANNEL_MAX], char *err,
          size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(js, n, JSON_REJECT_DUPLICATES, &je);
    int rc;

    if (!json_is_object(o)) {
        json_decref(o);
        return cg_fail(err, errlen, CG_EINVAL, "frame is not a JSON object: %s", je.text);
    }
    json_t *ch = json_object_get(o, "channel");
    rc = take_channel(json_string_value(ch), json_string_length(ch), channel, err, errlen);
    if (rc == CG_OK) {
        json_t *vals[PARTS];
        for (int i = 0; i < PARTS; i++)
            vals[i] = json_object_get(o, part_names[i]);
        rc = build_msg(vals, out, err, errlen);
    }
    if (rc == CG_OK && (rc = add_buffers(*out, bufs, lens, nbufs)) != CG_OK)
        wire_msg_destroy(out);
    json_decref(o);
    return rc;
}

/* Splits a binary frame's offset table: count entries of width bytes
 * (4 big-endian or 8 little-endian) after a count of the same width, each
 * offset inside the frame and none going backwards. */
static int
read_offsets(const unsigned char *d, size_t len, int width, size_t *offs, size_t max,
             size_t *count, char *err, size_t errlen)
{
    if (len < (size_t)width)
        return cg_fail(err, errlen, CG_EINVAL, "binary frame too short");
    uint64_t n = width == 4 ? get_be32(d) : get_le64(d);
    if (n < 1 || n > max)
        return cg_fail(err, errlen, CG_ETOOBIG, "binary frame: %llu offsets",
                       (unsigned long long)n);
    if (len < (size_t)width * (n + 1))
        return cg_fail(err, errlen, CG_EINVAL, "binary frame too short for its offsets");
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = d + (size_t)width * (i + 1);
        uint64_t o = width == 4 ? get_be32(p) : get_le64(p);
        if (o > len || o < (uint64_t)width * (n + 1) || (i && o < offs[i - 1]))
            return cg_fail(err, errlen, CG_EINVAL, "binary frame: offset %zu out of order "
                           "or outside the frame", i);
        offs[i] = (size_t)o;
    }
    *count = (size_t)n;
    return CG_OK;
}

/* The v1 form: channel, header, parent_header, metadata, content, buffers. */
static int
from_v1(const unsigned char *d, size_t len, wire_msg_t **out, char channel[CONVERT_CHANNEL_MAX],
        char *err, size_t errlen)
{
    size_t offs[WIRE_MAX_BUFFERS + PARTS + 2], n;
    json_t *vals[PARTS] = { 0 };
    int rc = read_offsets(d, len, 8, offs, sizeof offs / sizeof offs[0], &n, err, errlen);

    if (rc != CG_OK)
        return rc;
    if (n < PARTS + 2)
        return cg_fail(err, errlen, CG_EINVAL, "v1 frame: %zu offsets, at least %d needed", n,
                       PARTS + 2);
    rc = take_channel((const char *)d + offs[0], offs[1] - offs[0], channel, err, errlen);
    for (int i = 0; rc == CG_OK && i < PARTS; i++) {
        json_error_t je;
        vals[i] = json_loadb((const char *)d + offs[1 + i], offs[2 + i] - offs[1 + i],
                             JSON_REJECT_DUPLICATES, &je);
        if (!vals[i])
            rc = cg_fail(err, errlen, CG_EINVAL, "v1 frame: %s is not JSON: %s",
                         part_names[i], je.text);
    }
    if (rc == CG_OK)
        rc = build_msg(vals, out, err, errlen);
    if (rc == CG_OK) {
        size_t nb = n - (PARTS + 2);
        const unsigned char *bufs[WIRE_MAX_BUFFERS];
        size_t lens[WIRE_MAX_BUFFERS];
        for (size_t i = 0; i < nb; i++) {
            bufs[i] = d + offs[PARTS + 1 + i];
            lens[i] = offs[PARTS + 2 + i] - offs[PARTS + 1 + i];
        }
        if ((rc = add_buffers(*out, bufs, lens, nb)) != CG_OK)
            wire_msg_destroy(out);
    }
    for (int i = 0; i < PARTS; i++)
        json_decref(vals[i]);
    return rc;
}

/* The legacy binary form: u32 count, u32 start offsets, JSON, buffers. */
static int
from_legacy(const unsigned char *d, size_t len, wire_msg_t **out,
            char channel[CONVERT_CHANNEL_MAX], char *err, size_t errlen)
{
    size_t offs[WIRE_MAX_BUFFERS + 1], n;
    int rc = read_offsets(d, len, 4, offs, sizeof offs / sizeof offs[0], &n, err, errlen);
    const unsigned char *bufs[WIRE_MAX_BUFFERS];
    size_t lens[WIRE_MAX_BUFFERS];

    if (rc != CG_OK)
        return rc;
    for (size_t i = 1; i < n; i++) {
        bufs[i - 1] = d + offs[i];
        lens[i - 1] = (i + 1 < n ? offs[i + 1] : len) - offs[i];
    }
    size_t jsend = n > 1 ? offs[1] : len;
    return from_json((const char *)d + offs[0], jsend - offs[0], bufs, lens, n - 1, out, channel,
                     err, errlen);
}

int
convert_from_frame(const unsigned char *data, size_t len, bool binary, enum convert_form form,
                   wire_msg_t **out, char channel[CONVERT_CHANNEL_MAX], char *err,
                   size_t errlen)
{
    *out = NULL;
    channel[0] = '\0';
    if (!binary)
        return from_json((const char *)data, len, NULL, NULL, 0, out, channel, err, errlen);
    if (form == CONVERT_V1)
        return from_v1(data, len, out, channel, err, errlen);
    return from_legacy(data, len, out, channel, err, errlen);
}
