/*
 * test_wire.c - unit tests of the wire codec: framing, signing,
 * verification before parsing, replay protection and message building.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "common/wire.h"

#include <stdlib.h>
#include <string.h>

/* Builds a signed message with the given content text, encoded to frames. */
static void
encode(wire_t *w, const char *msg_type, const char *ident, wire_buf_t **f, size_t *n)
{
    wire_msg_t *m = wire_msg_new(w, msg_type, NULL);
    assert_non_null(m);
    json_object_set_new(m->content, "code", json_string("1+1"));
    if (ident) {
        m->idents = calloc(1, sizeof *m->idents);
        m->idents[0].data = (unsigned char *)strdup(ident);
        m->idents[0].len = strlen(ident);
        m->n_idents = 1;
    }
    assert_int_equal(wire_encode(w, m, f, n), CG_OK);
    wire_msg_destroy(&m);
    assert_null(m);
}

static int
decode(wire_t *w, wire_buf_t *f, size_t n, wire_msg_t **out)
{
    wire_frame_t fr[WIRE_MAX_FRAMES + 8];
    char err[256];
    for (size_t i = 0; i < n; i++)
        fr[i] = (wire_frame_t){ f[i].data, f[i].len };
    return wire_decode(w, fr, n, out, err, sizeof err);
}

static void
test_round_trip(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "secret", 0, NULL, 0);
    wire_buf_t *f;
    size_t n;
    wire_msg_t *m = NULL;

    encode(w, "execute_request", "client-1", &f, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(f[1].data, "<IDS|MSG>", 9);
    assert_int_equal(f[2].len, 64);
    assert_int_equal(decode(w, f, n, &m), CG_OK);
    assert_string_equal(wire_msg_type(m), "execute_request");
    assert_int_equal(m->n_idents, 1);
    assert_memory_equal(m->idents[0].data, "client-1", 8);
    assert_string_equal(json_string_value(json_object_get(m->content, "code")), "1+1");
    assert_string_equal(json_string_value(json_object_get(m->header, "version")), "5.3");
    assert_string_equal(json_string_value(json_object_get(m->header, "session")),
                        wire_session(w));
    wire_msg_destroy(&m);
    wire_frames_free(f, n);
    wire_destroy(&w);
    assert_null(w);
    wire_destroy(&w); /* idempotent */
}

static void
test_known_signature(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "secret", 0, NULL, 0);
    wire_frame_t parts[4] = {
        { "{\"a\":1}", 7 }, { "{}", 2 }, { "{}", 2 }, { "{\"code\":\"1\"}", 12 },
    };
    char hex[65];

    wire_sign(w, parts, hex);
    /* Python: hmac.new(b"secret", digestmod=sha256) over the same parts. */
    assert_string_equal(hex, "4cd721348272a9d38f52e40f18755f0c1547d1172085474a01e7af8f3442da14");
    wire_destroy(&w);
}

static void
test_bad_signature(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "secret", 0, NULL, 0);
    wire_t *other = wire_new("hmac-sha256", "not-the-key", 0, NULL, 0);
    wire_buf_t *f;
    size_t n;
    wire_msg_t *m = NULL;

    encode(other, "execute_request", NULL, &f, &n);
    assert_int_equal(decode(w, f, n, &m), CG_ESIG); /* wrong key */
    assert_null(m);
    wire_frames_free(f, n);

    encode(w, "execute_request", NULL, &f, &n);
    f[5].data[0] = ' '; /* tamper with content after signing */
    assert_int_equal(decode(w, f, n, &m), CG_ESIG);
    f[1].len = 63;      /* a short signature */
    assert_int_equal(decode(w, f, n, &m), CG_ESIG);
    f[1].len = 0;       /* unsigned */
    assert_int_equal(decode(w, f, n, &m), CG_ESIG);
    wire_frames_free(f, n);
    wire_destroy(&w);
    wire_destroy(&other);
}

static void
test_replay(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "secret", 0, NULL, 0);
    wire_buf_t *f;
    size_t n;
    wire_msg_t *m = NULL;

    encode(w, "execute_request", NULL, &f, &n);
    assert_int_equal(decode(w, f, n, &m), CG_OK);
    wire_msg_destroy(&m);
    assert_int_equal(decode(w, f, n, &m), CG_EREPLAY);
    assert_null(m);
    wire_frames_free(f, n);
    wire_destroy(&w);
}

/* Memory is bounded: after two full windows of newer messages, the oldest
 * signature is forgotten; one window back is still remembered. */
static void
test_replay_window_bounded(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "secret", 0, NULL, 0);
    wire_buf_t *first, *mid, *f;
    size_t nf, nm, n;
    wire_msg_t *m = NULL;

    encode(w, "a", NULL, &first, &nf);
    assert_int_equal(decode(w, first, nf, &m), CG_OK);
    wire_msg_destroy(&m);
    for (int i = 0; i < 2 * WIRE_REPLAY_WINDOW; i++) {
        encode(w, "b", NULL, &f, &n);
        assert_int_equal(decode(w, f, n, &m), CG_OK);
        wire_msg_destroy(&m);
        wire_frames_free(f, n);
        if (i == WIRE_REPLAY_WINDOW + 10) {
            encode(w, "c", NULL, &mid, &nm);
            assert_int_equal(decode(w, mid, nm, &m), CG_OK);
            wire_msg_destroy(&m);
        }
    }
    assert_int_equal(decode(w, mid, nm, &m), CG_EREPLAY);
    assert_int_equal(decode(w, first, nf, &m), CG_OK);
    wire_msg_destroy(&m);
    wire_frames_free(first, nf);
    wire_frames_free(mid, nm);
    wire_destroy(&w);
}

static void
test_malformed(void **state)
{
    (void)state;
    wire_t *w = wire_new("", "", 0, NULL, 0); /* unsigned: parse checks only */
    wire_msg_t *m = NULL;
    char err[256];
    wire_frame_t no_delim[] = { { "x", 1 }, { "", 0 }, { "{}", 2 }, { "{}", 2 }, { "{}", 2 },
                                { "{}", 2 } };
    wire_frame_t short_msg[] = { { "<IDS|MSG>", 9 }, { "", 0 }, { "{}", 2 } };
    wire_frame_t bad_json[] = { { "<IDS|MSG>", 9 }, { "", 0 }, { "{nope", 5 }, { "{}", 2 },
                                { "{}", 2 }, { "{}", 2 } };
    wire_frame_t not_obj[] = { { "<IDS|MSG>", 9 }, { "", 0 }, { "[1]", 3 }, { "{}", 2 },
                               { "{}", 2 }, { "{}", 2 } };
    wire_frame_t no_type[] = { { "<IDS|MSG>", 9 }, { "", 0 }, { "{\"msg_id\":\"1\"}", 14 },
                               { "{}", 2 }, { "{}", 2 }, { "{}", 2 } };
    wire_frame_t ok[] = { { "<IDS|MSG>", 9 }, { "", 0 },
                          { "{\"msg_id\":\"1\",\"msg_type\":\"x\"}", 29 }, { "{}", 2 },
                          { "{}", 2 }, { "{}", 2 }, { "\x00\x01", 2 } };

    assert_int_equal(wire_decode(w, no_delim, 6, &m, err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "delimiter"));
    assert_int_equal(wire_decode(w, short_msg, 3, &m, err, sizeof err), CG_EINVAL);
    assert_int_equal(wire_decode(w, bad_json, 6, &m, err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "header"));
    assert_int_equal(wire_decode(w, not_obj, 6, &m, err, sizeof err), CG_EINVAL);
    assert_int_equal(wire_decode(w, no_type, 6, &m, err, sizeof err), CG_EINVAL);
    assert_null(m);
    assert_int_equal(wire_decode(w, ok, 7, &m, err, sizeof err), CG_OK);
    assert_int_equal(m->n_buffers, 1); /* a binary buffer survives */
    assert_int_equal(m->buffers[0].len, 2);
    assert_null(m->malformed);
    wire_msg_destroy(&m);
    wire_destroy(&w);
}

/* A good header with a bad parent, metadata or content is decoded (to be
 * answered): those become empty objects and malformed says why. */
static void
test_malformed_content_kept(void **state)
{
    (void)state;
    wire_t *w = wire_new("", "", 0, NULL, 0);
    wire_msg_t *m = NULL;
    char err[256];
    wire_frame_t bad_content[] = { { "<IDS|MSG>", 9 }, { "", 0 },
                                   { "{\"msg_id\":\"1\",\"msg_type\":\"x\"}", 29 },
                                   { "{}", 2 }, { "{}", 2 }, { "{\"a\":\"\\u0000\"}", 14 } };
    wire_frame_t bad_parent[] = { { "<IDS|MSG>", 9 }, { "", 0 },
                                  { "{\"msg_id\":\"1\",\"msg_type\":\"x\"}", 29 },
                                  { "[]", 2 }, { "{}", 2 }, { "{\"code\":\"1\"}", 12 } };

    assert_int_equal(wire_decode(w, bad_content, 6, &m, err, sizeof err), CG_OK);
    assert_non_null(m->malformed);
    assert_non_null(strstr(m->malformed, "content is not JSON"));
    assert_int_equal(json_object_size(m->content), 0);
    wire_msg_destroy(&m);
    assert_int_equal(wire_decode(w, bad_parent, 6, &m, err, sizeof err), CG_OK);
    assert_non_null(strstr(m->malformed, "parent_header is not a JSON object"));
    assert_true(json_is_object(m->parent));
    assert_string_equal(json_string_value(json_object_get(m->content, "code")), "1");
    wire_msg_destroy(&m);
    wire_destroy(&w);
}

static void
test_bounds(void **state)
{
    (void)state;
    wire_t *w = wire_new("", "", 1024, NULL, 0);
    wire_msg_t *m = NULL;
    char err[256];
    wire_frame_t fr[WIRE_MAX_IDENTS + 8];
    char *big = malloc(2048);

    memset(big, ' ', 2048);
    for (int i = 0; i < WIRE_MAX_IDENTS + 1; i++)
        fr[i] = (wire_frame_t){ "id", 2 };
    fr[WIRE_MAX_IDENTS + 1] = (wire_frame_t){ "<IDS|MSG>", 9 };
    for (int i = 0; i < 5; i++)
        fr[WIRE_MAX_IDENTS + 2 + i] = (wire_frame_t){ i ? "{}" : "", i ? 2u : 0u };
    assert_int_equal(wire_decode(w, fr, WIRE_MAX_IDENTS + 7, &m, err, sizeof err), CG_ETOOBIG);

    wire_frame_t huge[] = { { "<IDS|MSG>", 9 }, { "", 0 }, { big, 2048 }, { "{}", 2 },
                            { "{}", 2 }, { "{}", 2 } };
    assert_int_equal(wire_decode(w, huge, 6, &m, err, sizeof err), CG_ETOOBIG);
    assert_null(m);
    free(big);
    wire_destroy(&w);
}

static void
test_unsupported_scheme(void **state)
{
    (void)state;
    char err[128];
    assert_null(wire_new("hmac-md5", "k", 0, err, sizeof err));
    assert_non_null(strstr(err, "hmac-md5"));
}

static void
test_msg_new_reply(void **state)
{
    (void)state;
    wire_t *w = wire_new("hmac-sha256", "k", 0, NULL, 0);
    wire_buf_t *f;
    size_t n;
    wire_msg_t *req = NULL, *rep;
    char date[40], id[33];

    encode(w, "kernel_info_request", "peer", &f, &n);
    assert_int_equal(decode(w, f, n, &req), CG_OK);
    rep = wire_msg_new(w, "kernel_info_reply", req);
    assert_int_equal(rep->n_idents, 1);
    assert_memory_equal(rep->idents[0].data, "peer", 4);
    assert_true(json_equal(rep->parent, req->header));
    const char *d = json_string_value(json_object_get(rep->header, "date"));
    assert_int_equal(strlen(d), 27); /* 2026-11-23T01:02:03.456789Z */
    assert_int_equal(d[26], 'Z');
    assert_int_equal(d[10], 'T');
    wire_now_iso(date);
    assert_int_equal(strlen(date), 27);
    wire_new_id(id);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(id[12], '4'); /* uuid version 4 */
    /* Message ids: 32 hex digits, the session's first half, then distinct */
    wire_msg_t *next = wire_msg_new(w, "status", req);
    const char *a = json_string_value(json_object_get(rep->header, "msg_id"));
    const char *b = json_string_value(json_object_get(next->header, "msg_id"));
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_memory_equal(a, wire_session(w), 16);
    assert_string_not_equal(a, b);
    wire_msg_destroy(&next);
    wire_msg_destroy(&rep);
    wire_msg_destroy(&req);
    wire_frames_free(f, n);
    wire_destroy(&w);
}

/* What the escaper writes must parse back (jansson) to exactly the input,
 * for every ASCII character at every position around a word. */
static void
test_json_escape(void **state)
{
    (void)state;
    char in[40], out[6 * sizeof in + 3];

    for (int c = 1; c < 128; c++) {
        for (size_t pos = 0; pos < 20; pos++) {
            memset(in, 'a', sizeof in);
            in[pos] = (char)c;
            in[sizeof in - 1] = '\0';
            out[0] = '"';
            size_t n = wire_json_escape(in, strlen(in), out + 1);
            memcpy(out + 1 + n, "\"", 2);
            json_t *back = json_loads(out, JSON_DECODE_ANY, NULL);
            assert_non_null(back);
            assert_string_equal(json_string_value(back), in);
            json_decref(back);
            for (size_t k = 1; k <= n; k++)
                assert_true((unsigned char)out[k] >= 0x20);
        }
    }
    const char *utf = "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ end";
    wire_json_escape(utf, strlen(utf), out);
    assert_string_equal(out, "caf\xc3\xa9 \xf0\x9f\x98\x80 \\\"q\\\" \\\\ end");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_known_signature),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_replay_window_bounded),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_content_kept),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_unsupported_scheme),
        cmocka_unit_test(test_msg_new_reply),
        cmocka_unit_test(test_json_escape),
    };
    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
