/*
 * convert.h - a Jupyter message between its two shapes: the wire message
 * the kernel speaks over ZeroMQ (common/wire.h) and the frame a WebSocket
 * client speaks (jupyter_server's "channels" protocol). Three frame forms:
 *
 *   JSON text     {"channel", "header", "parent_header", "metadata",
 *                  "content", "buffers": []}, msg_id and msg_type copied
 *                  to the top as jupyter_server does;
 *   legacy binary u32 count, u32 offsets (big-endian), the JSON above,
 *                  then the buffers (when a message has buffers);
 *   v1 binary     the v1.kernel.websocket.jupyter.org subprotocol: u64
 *                  count, u64 offsets (little-endian), channel, header,
 *                  parent_header, metadata, content, buffers.
 *
 * Everything from a client is untrusted: sizes and offsets are checked
 * before a byte is read, and JSON goes through jansson only.
 */
#ifndef CG_GW_CONVERT_H
#define CG_GW_CONVERT_H

#include "common/wire.h"

#include <stdbool.h>
#include <stddef.h>

#define CONVERT_CHANNEL_MAX 16 /* longest channel name, with its NUL */

/* The framing a WebSocket connection speaks. */
enum convert_form {
    CONVERT_JSON,   /* text frames; binary (legacy) frames when buffers */
    CONVERT_V1,     /* v1.kernel.websocket.jupyter.org: every frame binary */
};

/*
 * Encodes a message received from a kernel on channel ("iopub", "shell",
 * "stdin", "control") as one WebSocket frame of the given form. On CG_OK
 * *out is a malloc'd frame of *len bytes (owned by the caller) and *binary
 * says whether it goes out as a binary frame. Returns CG_ENOMEM otherwise.
 */
int convert_to_frame(const wire_msg_t *m, const char *channel, enum convert_form form,
                     unsigned char **out, size_t *len, bool *binary);

/*
 * Decodes one WebSocket frame from a client (binary says which kind of
 * frame it came in) into a new message (*out, owned by the caller, without
 * identities) and the channel it is for (copied into channel). The header
 * must be an object with string msg_id and msg_type; parent_header,
 * metadata and content objects (absent ones become {}). Returns CG_OK, or
 * CG_EINVAL / CG_ETOOBIG with err saying why and *out NULL.
 */
int convert_from_frame(const unsigned char *data, size_t len, bool binary,
                       enum convert_form form, wire_msg_t **out,
                       char channel[CONVERT_CHANNEL_MAX], char *err, size_t errlen);

#endif
