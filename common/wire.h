/*
 * wire.h - the Jupyter wire protocol: framing, HMAC-SHA256 signing and
 * verification, replay protection, and building messages.
 *
 * Shared by the kernel and (later) the gateway. A message on a ZeroMQ
 * socket is a multipart message:
 *
 *   ident... "<IDS|MSG>" signature header parent_header metadata content buffer...
 *
 * We verify before we parse: the delimiter is found, frame counts and sizes
 * are bounded, the signature's length is checked and it is compared in
 * constant time over the bytes as received, replayed signatures are
 * refused, and only then do the four JSON frames reach jansson.
 */
#ifndef CG_WIRE_H
#define CG_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define WIRE_PROTOCOL_VERSION "5.3"
#define WIRE_DELIM "<IDS|MSG>"
#define WIRE_MAX_IDENTS 32       /* routing identities before the delimiter */
#define WIRE_MAX_BUFFERS 64      /* binary buffers after content */
#define WIRE_MAX_FRAMES (WIRE_MAX_IDENTS + 6 + WIRE_MAX_BUFFERS)
#define WIRE_MAX_DICT (1u << 20) /* header, parent_header, metadata: each */
#define WIRE_DEFAULT_MAX_BYTES (128u << 20) /* a whole message */
#define WIRE_REPLAY_WINDOW 65536 /* signatures remembered, per generation */

typedef struct wire wire_t;

/* A borrowed run of bytes: a received frame. */
typedef struct {
    const void *data;
    size_t len;
} wire_frame_t;

/* An owned run of bytes: an identity, a buffer or an encoded frame. */
typedef struct {
    unsigned char *data;
    size_t len;
} wire_buf_t;

/* A message, decoded or to be sent. Owns every member. */
typedef struct {
    wire_buf_t *idents;      /* routing identities (ROUTER sockets) */
    size_t n_idents;
    json_t *header;          /* always an object with msg_id and msg_type */
    json_t *parent;          /* parent_header: an object, maybe empty */
    json_t *metadata;        /* an object */
    json_t *content;         /* an object */
    char *content_json;      /* if set: the content already serialised
                                (valid JSON object text), sent instead */
    wire_buf_t *buffers;     /* binary buffers, rarely used */
    size_t n_buffers;
    char *malformed;         /* received: why parent_header, metadata or
                                content could not be decoded (they are
                                then empty objects), or NULL */
} wire_msg_t;

/*
 * Creates a codec for one connection. scheme is the connection file's
 * signature_scheme ("hmac-sha256"); key is the signing key. An empty key
 * means messages are neither signed nor checked (Jupyter's rule), whatever
 * the scheme. max_bytes bounds a whole message (0: the default). Each codec
 * has a fresh random session id. Returns NULL with err filled on an
 * unsupported scheme or no memory.
 */
wire_t *wire_new(const char *scheme, const char *key, size_t max_bytes,
                 char *err, size_t errlen);

/* Frees the codec and nulls *w. Idempotent. */
void wire_destroy(wire_t **w);

/* The session id this codec puts in every header it builds. */
const char *wire_session(const wire_t *w);

/*
 * Verifies and decodes n received frames into a new message (*out, owned
 * by the caller). Returns CG_OK, or CG_EINVAL (no delimiter, bad JSON
 * header, missing header fields), CG_ETOOBIG (bounds), CG_ESIG (signature
 * missing, wrong length, wrong) or CG_EREPLAY (signature seen before), with
 * err filled; *out is NULL then. A signed message with a good header but a
 * parent_header, metadata or content that is not a JSON object is CG_OK
 * with those empty and m->malformed saying why, so it can be answered. A
 * message is remembered for replay checks only after its signature
 * verified.
 */
int wire_decode(wire_t *w, const wire_frame_t *frames, size_t n,
                wire_msg_t **out, char *err, size_t errlen);

/*
 * Encodes msg into owned frames (identities, delimiter, signature, the four
 * JSON parts, buffers). On CG_OK *frames is a malloc'd array of *n frames;
 * free it with wire_frames_free().
 */
int wire_encode(wire_t *w, const wire_msg_t *msg, wire_buf_t **frames, size_t *n);

/* Frees n frames from wire_encode() and the array. */
void wire_frames_free(wire_buf_t *frames, size_t n);

/*
 * Computes the lowercase hex HMAC of the parts (64 chars + NUL in hex).
 * With an empty key hex is "". Exposed for tests and the gateway.
 */
void wire_sign(const wire_t *w, const wire_frame_t parts[4], char hex[65]);

/*
 * Builds a new message of msg_type: a fresh header; if parent is not NULL,
 * its header becomes parent_header and its identities are copied (so a
 * reply routes back to the requester); empty metadata and content.
 * Returns NULL on no memory.
 */
wire_msg_t *wire_msg_new(const wire_t *w, const char *msg_type, const wire_msg_t *parent);

/* Frees a message and nulls *m. Idempotent. */
void wire_msg_destroy(wire_msg_t **m);

/* The header's msg_type, or "" if absent. Borrowed from the header. */
const char *wire_msg_type(const wire_msg_t *m);

/* Receives one message from a ZeroMQ socket (blocking unless flags has
 * ZMQ_DONTWAIT) and decodes it. Frames past the bounds are drained and
 * the message refused. Returns CG_OK, a decode error, or CG_ESYS with
 * errno set (EAGAIN when nothing is waiting). */
int wire_recv(wire_t *w, void *sock, int flags, wire_msg_t **out, char *err, size_t errlen);

/* Encodes and sends msg on a ZeroMQ socket. Returns CG_OK or CG_ESYS/CG_ENOMEM. */
int wire_send(wire_t *w, void *sock, const wire_msg_t *msg);

/*
 * Writes s[0..len) (valid UTF-8) as the body of a JSON string, without the
 * quotes, to out, which must hold 6 * len + 1 bytes. Returns the length
 * written; out is NUL-terminated. Faster than building a json_t for large
 * stream text: runs of plain characters are copied whole.
 */
size_t wire_json_escape(const char *s, size_t len, char *out);

/* Writes the current UTC time as ISO 8601 with microseconds and "Z". */
void wire_now_iso(char buf[40]);

/* Writes 32 random lowercase hex characters and a NUL (a uuid4-like id). */
void wire_new_id(char buf[33]);

#endif
