/*
 * fuzz_connfile.c - libFuzzer target for connection file parsing.
 */
#include "common/cgerr.h"
#include "common/connfile.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    connfile_t c;
    char err[256], ep[320];

    if (connfile_parse((const char *)data, size, &c, err, sizeof err) == CG_OK) {
        for (int ch = 0; ch < CH_COUNT; ch++)
            if (connfile_endpoint(&c, (enum channel)ch, ep, sizeof ep) != CG_OK)
                abort(); /* ip is bounded to fit */
        connfile_clear(&c);
    }
    return 0;
}
