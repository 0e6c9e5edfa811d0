/*
 * fuzz_image.c - libFuzzer target for image_sniff(), which reads files that
 * code in the box wrote (cellgate.open_image).
 */
#include "kernel/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned w, h;
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);

    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    const char *mime = image_sniff(copy, size, &w, &h);
    if (mime && strncmp(mime, "image/", 6) != 0)
        abort();
    free(copy);
    return 0;
}
