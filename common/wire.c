/*
 * wire.c - Jupyter wire protocol codec (see wire.h).
 */
#include "common/wire.h"

#include "common/cgerr.h"

#include <errno.h>
#include <inttypes.h>
#include <nettle/hmac.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <zmq.h>

#define DIGEST_LEN 32
#define KEY_LEN 16 /* replay keys: the first 128 bits of a digest (below) */

/*
 * One generation of remembered signatures: an open-addressing set that
 * starts small and doubles, so a short session costs kilobytes, never more
 * than 2 * WIRE_REPLAY_WINDOW * KEY_LEN bytes. Keys are digest prefixes:
 * 128 bits of an HMAC make an accidental match between two honest messages
 * negligible, and a forged one needs the key anyway.
 */
struct digest_set {
    unsigned char (*slots)[KEY_LEN]; /* all-zero = empty */
    size_t count, cap;               /* cap: a power of two, or 0 */
};

struct wire {
    bool signing;              /* false: the key is empty, nothing is signed */
    struct hmac_sha256_ctx keyed; /* HMAC state after the key, copied per message */
    size_t max_bytes;          /* bound on a whole message */
    char session[33];          /* this process's session id */
    struct digest_set gen[2];  /* current and previous generation */
    int cur;                   /* index of the current generation */
};

static size_t
key_slot(const unsigned char *d, size_t cap)
{
    uint64_t h;

    memcpy(&h, d, sizeof h); /* digests are uniformly random */
    return (size_t)(h & (cap - 1));
}

static bool
set_has(const struct digest_set *s, const unsigned char *d)
{
    static const unsigned char zero[KEY_LEN];

    for (size_t i = s->cap ? key_slot(d, s->cap) : 0; s->cap; i = (i + 1) & (s->cap - 1)) {
        if (memcmp(s->slots[i], zero, KEY_LEN) == 0)
            return false;
        if (memcmp(s->slots[i], d, KEY_LEN) == 0)
            return true;
    }
    return false;
}

static void
set_put(unsigned char (*slots)[KEY_LEN], size_t cap, const unsigned char *d)
{
    static const unsigned char zero[KEY_LEN];
    size_t i = key_slot(d, cap);

    while (memcmp(slots[i], zero, KEY_LEN) != 0)
        i = (i + 1) & (cap - 1);
    memcpy(slots[i], d, KEY_LEN);
}

static int
set_add(struct digest_set *s, const unsigned char *d)
{
    static const unsigned char zero[KEY_LEN];

    if (2 * (s->count + 1) > s->cap) { /* keep the load at most one half */
        size_t cap = s->cap ? 2 * s->cap : 256;
        unsigned char (*slots)[KEY_LEN] = calloc(cap, KEY_LEN);
        if (!slots)
            return CG_ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (memcmp(s->slots[i], zero, KEY_LEN) != 0)
                set_put(slots, cap, s->slots[i]);
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    set_put(s->slots, s->cap, d);
    s->count++;
    return CG_OK;
}

/* Remembers d; when the current generation is full the older one is
 * forgotten, so memory stays bounded at two windows. */
static int
replay_remember(wire_t *w, const unsigned char *d)
{
    struct digest_set *cur = &w->gen[w->cur];

    if (cur->count >= WIRE_REPLAY_WINDOW) {
        w->cur ^= 1;
        cur = &w->gen[w->cur];
        free(cur->slots);
        *cur = (struct digest_set){ 0 };
    }
    return set_add(cur, d);
}

static bool
replay_seen(const wire_t *w, const unsigned char *d)
{
    return set_has(&w->gen[0], d) || set_has(&w->gen[1], d);
}

/* ---- codec lifetime ----------------------------------------------------- */

wire_t *
wire_new(const char *scheme, const char *key, size_t max_bytes, char *err, size_t errlen)
{
    wire_t *w;

    if (sodium_init() < 0) {
        cg_fail(err, errlen, CG_ESYS, "libsodium failed to initialise");
        return NULL;
    }
    if (!key)
        key = "";
    if (key[0] && (!scheme || strcmp(scheme, "hmac-sha256") != 0)) {
        cg_fail(err, errlen, CG_EUNSUPP, "signature scheme '%s' is not supported "
                "(only hmac-sha256)", scheme ? scheme : "");
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (!w)
        goto nomem;
    w->signing = key[0] != '\0';
    hmac_sha256_set_key(&w->keyed, strlen(key), (const uint8_t *)key);
    w->max_bytes = max_bytes ? max_bytes : WIRE_DEFAULT_MAX_BYTES;
    wire_new_id(w->session);
    return w;
nomem:
    free(w);
    cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    return NULL;
}

void
wire_destroy(wire_t **wp)
{
    if (!wp || !*wp)
        return;
    wire_t *w = *wp;
    sodium_memzero(&w->keyed, sizeof w->keyed);
    free(w->gen[0].slots);
    free(w->gen[1].slots);
    free(w);
    *wp = NULL;
}

const char *
wire_session(const wire_t *w)
{
    return w->session;
}

/* ---- signing ------------------------------------------------------------ */

void
wire_sign(const wire_t *w, const wire_frame_t parts[4], char hex[65])
{
    struct hmac_sha256_ctx st;
    unsigned char mac[DIGEST_LEN];

    if (!w->signing) {
        hex[0] = '\0';
        return;
    }
    /* Nettle's SHA-256 uses the CPU's SHA instructions where there are
     * some: about four times libsodium's speed on large outputs. */
    st = w->keyed;
    for (int i = 0; i < 4; i++)
        hmac_sha256_update(&st, parts[i].len, parts[i].data);
    hmac_sha256_digest(&st, sizeof mac, mac);
    sodium_memzero(&st, sizeof st);
    sodium_bin2hex(hex, 65, mac, sizeof mac);
}

/* ---- decoding ----------------------------------------------------------- */

static int
copy_buf(wire_buf_t *dst, const wire_frame_t *src)
{
    dst->len = src->len;
    dst->data = malloc(src->len ? src->len : 1);
    if (!dst->data)
        return CG_ENOMEM;
    if (src->len)
        memcpy(dst->data, src->data, src->len);
    return CG_OK;
}

static json_t *
parse_object(const wire_frame_t *f, const char *what, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loadb(f->data, f->len, 0, &jerr);

    if (!j) {
        cg_fail(err, errlen, CG_EINVAL, "%s is not JSON: %s", what, jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        cg_fail(err, errlen, CG_EINVAL, "%s is not a JSON object", what);
        return NULL;
    }
    return j;
}

int
wire_decode(wire_t *w, const wire_frame_t *frames, size_t n, wire_msg_t **out,
            char *err, size_t errlen)
{
    static const char *names[4] = { "header", "parent_header", "metadata", "content" };
    size_t delim = n, total = 0;
    wire_msg_t *m = NULL;
    int rc;

    *out = NULL;
    if (n > WIRE_MAX_FRAMES)
        return cg_fail(err, errlen, CG_ETOOBIG, "%zu frames (at most %d)", n, WIRE_MAX_FRAMES);
    for (size_t i = 0; i < n; i++) {
        total += frames[i].len;
        if (delim == n && frames[i].len == sizeof WIRE_DELIM - 1
            && memcmp(frames[i].data, WIRE_DELIM, sizeof WIRE_DELIM - 1) == 0)
            delim = i;
    }
    if (delim == n)
        return cg_fail(err, errlen, CG_EINVAL, "no <IDS|MSG> delimiter");
    if (delim > WIRE_MAX_IDENTS)
        return cg_fail(err, errlen, CG_ETOOBIG, "%zu identities (at most %d)", delim, WIRE_MAX_IDENTS);
    if (n - delim < 6)
        return cg_fail(err, errlen, CG_EINVAL, "%zu frames after the delimiter (need 5)", n - delim - 1);
    if (n - delim - 6 > WIRE_MAX_BUFFERS)
        return cg_fail(err, errlen, CG_ETOOBIG, "too many buffers");
    if (total > w->max_bytes)
        return cg_fail(err, errlen, CG_ETOOBIG, "message of %zu bytes (at most %zu)", total, w->max_bytes);

    const wire_frame_t *sig = &frames[delim + 1];
    const wire_frame_t *parts = &frames[delim + 2];
    for (int i = 0; i < 3; i++)
        if (parts[i].len > WIRE_MAX_DICT)
            return cg_fail(err, errlen, CG_ETOOBIG, "%s of %zu bytes", names[i], parts[i].len);

    if (w->signing) {
        char want[65];
        unsigned char digest[DIGEST_LEN];

        if (sig->len != 64)
            return cg_fail(err, errlen, CG_ESIG, "signature of %zu bytes (want 64)", sig->len);
        wire_sign(w, parts, want);
        if (sodium_memcmp(want, sig->data, 64) != 0)
            return cg_fail(err, errlen, CG_ESIG, "signature does not match");
        if (sodium_hex2bin(digest, sizeof digest, sig->data, 64, NULL, NULL, NULL) != 0)
            return cg_fail(err, errlen, CG_ESIG, "signature is not hex");
        if (replay_seen(w, digest))
            return cg_fail(err, errlen, CG_EREPLAY, "signature seen before (replay)");
        if (replay_remember(w, digest) != CG_OK)
            return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    }

    m = calloc(1, sizeof *m);
    if (!m)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    json_t **slots[4] = { &m->header, &m->parent, &m->metadata, &m->content };
    for (int i = 0; i < 4; i++) {
        *slots[i] = parse_object(&parts[i], names[i], err, errlen);
        if (!*slots[i] && i == 0) {
            rc = CG_EINVAL;
            goto fail;
        }
        if (!*slots[i]) {
            /* The sender can still be told: keep the first reason. */
            if (!m->malformed && !(m->malformed = strdup(err))) {
                rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
                goto fail;
            }
            if (!(*slots[i] = json_object())) {
                rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
                goto fail;
            }
        }
    }
    if (!json_is_string(json_object_get(m->header, "msg_type"))
        || !json_is_string(json_object_get(m->header, "msg_id"))) {
        rc = cg_fail(err, errlen, CG_EINVAL, "header lacks msg_type or msg_id");
        goto fail;
    }
    m->n_idents = delim;
    m->idents = calloc(delim ? delim : 1, sizeof *m->idents);
    m->n_buffers = n - delim - 6;
    m->buffers = calloc(m->n_buffers ? m->n_buffers : 1, sizeof *m->buffers);
    if (!m->idents || !m->buffers) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < delim; i++)
        if (copy_buf(&m->idents[i], &frames[i]) != CG_OK) {
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto fail;
        }
    for (size_t i = 0; i < m->n_buffers; i++)
        if (copy_buf(&m->buffers[i], &frames[delim + 6 + i]) != CG_OK) {
            rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto fail;
        }
    *out = m;
    return CG_OK;
fail:
    wire_msg_destroy(&m);
    return rc;
}

/* ---- encoding ----------------------------------------------------------- */

static char *
dump(const json_t *j)
{
    /* Compact output; ensure_ascii is off, so UTF-8 passes through. */
    return json_dumps(j ? j : json_object(), JSON_COMPACT);
}

int
wire_encode(wire_t *w, const wire_msg_t *msg, wire_buf_t **framesp, size_t *np)
{
    size_t n = msg->n_idents + 6 + msg->n_buffers, k = 0;
    wire_buf_t *f = calloc(n, sizeof *f);
    const json_t *js[4] = { msg->header, msg->parent, msg->metadata, msg->content };
    wire_frame_t parts[4];
    char hex[65];

    if (!f)
        return CG_ENOMEM;
    for (size_t i = 0; i < msg->n_idents; i++, k++)
        if (copy_buf(&f[k], &(wire_frame_t){ msg->idents[i].data, msg->idents[i].len }) != CG_OK)
            goto nomem;
    if (copy_buf(&f[k++], &(wire_frame_t){ WIRE_DELIM, sizeof WIRE_DELIM - 1 }) != CG_OK)
        goto nomem;
    size_t sig_at = k++;
    for (int i = 0; i < 4; i++, k++) {
        char *s = i == 3 && msg->content_json ? strdup(msg->content_json) : dump(js[i]);
        if (!s)
            goto nomem;
        f[k].data = (unsigned char *)s;
        f[k].len = strlen(s);
        parts[i] = (wire_frame_t){ f[k].data, f[k].len };
    }
    wire_sign(w, parts, hex);
    if (copy_buf(&f[sig_at], &(wire_frame_t){ hex, strlen(hex) }) != CG_OK)
        goto nomem;
    for (size_t i = 0; i < msg->n_buffers; i++, k++)
        if (copy_buf(&f[k], &(wire_frame_t){ msg->buffers[i].data, msg->buffers[i].len }) != CG_OK)
            goto nomem;
    *framesp = f;
    *np = n;
    return CG_OK;
nomem:
    wire_frames_free(f, n);
    return CG_ENOMEM;
}

void
wire_frames_free(wire_buf_t *frames, size_t n)
{
    if (!frames)
        return;
    for (size_t i = 0; i < n; i++)
        free(frames[i].data);
    free(frames);
}

/* ---- messages ----------------------------------------------------------- */

/* Word-at-a-time tests (Bit Twiddling Hacks): a byte of v that is zero,
 * or below n (n <= 128). */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_ZERO(v) (((v) - ONES) & ~(v) & HIGHS)
#define HAS_LESS(v, n) (((v) - ONES * (n)) & ~(v) & HIGHS)

/* True if none of the 8 bytes at s needs escaping in a JSON string. */
static bool
plain8(const char *s)
{
    uint64_t v;

    memcpy(&v, s, sizeof v);
    return !(HAS_LESS(v, 0x20) | HAS_ZERO(v ^ (ONES * '"')) | HAS_ZERO(v ^ (ONES * '\\')));
}

size_t
wire_json_escape(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, run = 0, i = 0;

    while (i < len) {
        if (i + 8 <= len && plain8(s + i)) {
            i += 8; /* the common case: a word of ordinary text */
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        memcpy(out + o, s + run, i - run);
        o += i - run;
        run = ++i;
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        case '\b': out[o++] = 'b'; break;
        case '\f': out[o++] = 'f'; break;
        default:
            memcpy(out + o, "u00", 3);
            out[o + 3] = hex[c >> 4];
            out[o + 4] = hex[c & 15];
            o += 5;
        }
    }
    memcpy(out + o, s + run, len - run);
    o += len - run;
    out[o] = '\0';
    return o;
}

void
wire_now_iso(char buf[40])
{
    struct timeval tv;
    struct tm tm;
    char base[24];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, 40, "%s.%06ldZ", base, (long)tv.tv_usec);
}

void
wire_new_id(char buf[33])
{
    unsigned char raw[16];

    randombytes_buf(raw, sizeof raw);
    raw[6] = (unsigned char)((raw[6] & 0x0f) | 0x40); /* version 4 */
    raw[8] = (unsigned char)((raw[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    sodium_bin2hex(buf, 33, raw, sizeof raw);
}

/* A message's id: unique, which does not need a random draw each (a
 * getrandom() call: five a warm cell). The first half of this codec's
 * random session id, then a count of the process's messages in hex:
 * distinct from every other process's, and ours never send from a
 * forked child. */
static void
message_id(const wire_t *w, char buf[33])
{
    static _Atomic uint64_t count;

    snprintf(buf, 33, "%.16s%016" PRIx64, w->session, atomic_fetch_add(&count, 1) + 1);
}

wire_msg_t *
wire_msg_new(const wire_t *w, const char *msg_type, const wire_msg_t *parent)
{
    wire_msg_t *m = calloc(1, sizeof *m);
    char id[33], date[40];

    if (!m)
        return NULL;
    message_id(w, id);
    wire_now_iso(date);
    m->header = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
                          "msg_id", id, "session", w->session, "username", "cellgate",
                          "date", date, "msg_type", msg_type,
                          "version", WIRE_PROTOCOL_VERSION);
    m->parent = parent ? json_incref(parent->header) : json_object();
    m->metadata = json_object();
    m->content = json_object();
    if (!m->header || !m->parent || !m->metadata || !m->content)
        goto nomem;
    if (parent && parent->n_idents) {
        m->idents = calloc(parent->n_idents, sizeof *m->idents);
        if (!m->idents)
            goto nomem;
        m->n_idents = parent->n_idents;
        for (size_t i = 0; i < parent->n_idents; i++)
            if (copy_buf(&m->idents[i], &(wire_frame_t){ parent->idents[i].data,
                                                          parent->idents[i].len }) != CG_OK)
                goto nomem;
    }
    return m;
nomem:
    wire_msg_destroy(&m);
    return NULL;
}

void
wire_msg_destroy(wire_msg_t **mp)
{
    if (!mp || !*mp)
        return;
    wire_msg_t *m = *mp;
    for (size_t i = 0; i < m->n_idents; i++)
        free(m->idents ? m->idents[i].data : NULL);
    for (size_t i = 0; i < m->n_buffers; i++)
        free(m->buffers ? m->buffers[i].data : NULL);
    free(m->idents);
    free(m->buffers);
    json_decref(m->header);
    json_decref(m->parent);
    json_decref(m->metadata);
    json_decref(m->content);
    free(m->content_json);
    free(m->malformed);
    free(m);
    *mp = NULL;
}

const char *
wire_msg_type(const wire_msg_t *m)
{
    const char *t = json_string_value(json_object_get(m->header, "msg_type"));
    return t ? t : "";
}

/* ---- ZeroMQ ------------------------------------------------------------- */

int
wire_recv(wire_t *w, void *sock, int flags, wire_msg_t **out, char *err, size_t errlen)
{
    zmq_msg_t parts[WIRE_MAX_FRAMES];
    wire_frame_t frames[WIRE_MAX_FRAMES];
    size_t n = 0, dropped = 0;
    int more = 1, rc;

    *out = NULL;
    while (more) {
        zmq_msg_t *p = n < WIRE_MAX_FRAMES ? &parts[n] : &(zmq_msg_t){ 0 };
        zmq_msg_init(p);
        if (zmq_msg_recv(p, sock, n || dropped ? 0 : flags) < 0) {
            int e = errno;
            zmq_msg_close(p);
            for (size_t i = 0; i < n; i++)
                zmq_msg_close(&parts[i]);
            errno = e;
            return CG_ESYS;
        }
        more = zmq_msg_more(p);
        if (n < WIRE_MAX_FRAMES) {
            frames[n].data = zmq_msg_data(p);
            frames[n].len = zmq_msg_size(p);
            n++;
        } else {
            zmq_msg_close(p); /* drain the rest of an oversized message */
            dropped++;
        }
    }
    if (dropped)
        rc = cg_fail(err, errlen, CG_ETOOBIG, "more than %d frames", WIRE_MAX_FRAMES);
    else
        rc = wire_decode(w, frames, n, out, err, errlen);
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return rc;
}

static void
free_frame_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int
wire_send(wire_t *w, void *sock, const wire_msg_t *msg)
{
    wire_buf_t *f;
    size_t n;
    int rc = wire_encode(w, msg, &f, &n);

    if (rc != CG_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        zmq_msg_t z;
        /* Hand the buffer to ZeroMQ: no copy for large content. */
        zmq_msg_init_data(&z, f[i].data, f[i].len, free_frame_data, NULL);
        f[i].data = NULL;
        if (zmq_msg_send(&z, sock, i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close(&z);
            rc = CG_ESYS;
            break;
        }
    }
    wire_frames_free(f, n);
    return rc;
}
