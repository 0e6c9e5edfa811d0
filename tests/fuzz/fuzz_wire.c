/*
 * fuzz_wire.c - libFuzzer target for the wire codec (wire_decode), the
 * parser every byte from a client goes through.
 *
 * Input: byte 0 picks the codec (even: signed with key "k", odd: unsigned,
 * so fuzzing also reaches the JSON stage); the rest is frames, each a
 * 2-byte little-endian length and that many bytes (a short last frame is
 * cut). A decoded message must re-encode and decode again.
 */
#include "common/cgerr.h"
#include "common/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wire_t *signed_w, *plain_w;
    wire_frame_t frames[WIRE_MAX_FRAMES + 1];
    size_t n = 0, i = 1;
    wire_msg_t *m = NULL, *again = NULL;
    char err[256];

    if (!signed_w) {
        signed_w = wire_new("hmac-sha256", "k", 1 << 20, NULL, 0);
        plain_w = wire_new("", "", 1 << 20, NULL, 0);
    }
    if (size < 1)
        return 0;
    wire_t *w = data[0] & 1 ? plain_w : signed_w;
    while (i + 2 <= size && n < WIRE_MAX_FRAMES + 1) {
        size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
        i += 2;
        if (len > size - i)
            len = size - i;
        frames[n++] = (wire_frame_t){ data + i, len };
        i += len;
    }
    if (wire_decode(w, frames, n, &m, err, sizeof err) != CG_OK)
        return 0;
    wire_buf_t *f;
    size_t nf;
    if (wire_encode(plain_w, m, &f, &nf) == CG_OK) {
        wire_frame_t back[WIRE_MAX_FRAMES + 8];
        for (size_t k = 0; k < nf && k < WIRE_MAX_FRAMES + 8; k++)
            back[k] = (wire_frame_t){ f[k].data, f[k].len };
        if (wire_decode(plain_w, back, nf, &again, err, sizeof err) != CG_OK)
            abort(); /* what we encode we must be able to decode */
        if (strcmp(wire_msg_type(again), wire_msg_type(m)) != 0)
            abort();
        wire_msg_destroy(&again);
        wire_frames_free(f, nf);
    }
    wire_msg_destroy(&m);
    return 0;
}
