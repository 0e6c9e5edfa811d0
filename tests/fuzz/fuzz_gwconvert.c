/*
 * fuzz_gwconvert.c - libFuzzer target for the gateway's converter between
 * WebSocket frames and wire messages (gateway/convert.c), the parser every
 * frame from a gateway client goes through.
 *
 * Input: byte 0 says how the rest arrived (bit 0: a binary frame, else
 * text; bit 1: the connection speaks v1.kernel.websocket.jupyter.org); the
 * rest is the frame. A frame that decodes must encode in every form and
 * decode again to the same msg_type, channel and buffer count.
 */
#include "common/cgerr.h"
#include "common/wire.h"
#include "gateway/convert.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes m in form and decodes it back; aborts on any difference. */
static void
round_trip(const wire_msg_t *m, const char *channel, enum convert_form form)
{
    unsigned char *frame;
    size_t len;
    bool binary;
    wire_msg_t *again = NULL;
    char ch[CONVERT_CHANNEL_MAX], err[256];

    if (convert_to_frame(m, channel, form, &frame, &len, &binary) != CG_OK)
        return; /* no memory, or larger than a frame's offsets can say */
    if (convert_from_frame(frame, len, binary, form, &again, ch, err, sizeof err) != CG_OK)
        abort(); /* what we encode we must be able to decode */
    if (strcmp(ch, channel) != 0 || strcmp(wire_msg_type(again), wire_msg_type(m)) != 0
        || again->n_buffers != m->n_buffers)
        abort();
    for (size_t i = 0; i < m->n_buffers; i++)
        if (again->buffers[i].len != m->buffers[i].len
            || (m->buffers[i].len
                && memcmp(again->buffers[i].data, m->buffers[i].data, m->buffers[i].len) != 0))
            abort();
    wire_msg_destroy(&again);
    free(frame);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_msg_t *m = NULL;
    char channel[CONVERT_CHANNEL_MAX], err[256];

    if (size < 1)
        return 0;
    bool binary = data[0] & 1;
    enum convert_form form = data[0] & 2 ? CONVERT_V1 : CONVERT_JSON;
    if (convert_from_frame(data + 1, size - 1, binary, form, &m, channel, err, sizeof err)
        != CG_OK)
        return 0;
    round_trip(m, channel, CONVERT_JSON);
    round_trip(m, channel, CONVERT_V1);
    wire_msg_destroy(&m);
    return 0;
}
