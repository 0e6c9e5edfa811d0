/*
 * fuzz_display.c - libFuzzer target for what the kernel does with a
 * cellgate-display request from the box: display_parse_request() on the
 * request, then display_bundle() on the file's bytes. An input is the
 * request, a NUL byte, then the file (no NUL: the whole input is both).
 */
#include "kernel/display.h"

#include "common/cgerr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t req_len = nul ? (size_t)(nul - data) : size;
    size_t file_len = nul ? size - req_len - 1 : size;
    /* Copies of exactly the lengths, so ASan sees any read past the end. */
    char *req = malloc(req_len ? req_len : 1);
    unsigned char *file = malloc(file_len ? file_len : 1);
    struct display_req r;
    struct display_shown shown;
    char err[512];
    json_t *c = NULL;

    if (!req || !file)
        goto out;
    memcpy(req, data, req_len);
    memcpy(file, nul ? nul + 1 : data, file_len);
    if (display_parse_request(req, req_len, &r, err, sizeof err) != CG_OK) {
        memset(&r, 0, sizeof r); /* show the bytes anyway, as open_image would */
        memcpy(r.name, "fuzz.html", 10);
    }
    if (r.mime[0] && !display_mime_known(r.mime, DISPLAY_IMAGES | DISPLAY_HTML))
        abort();
    if (display_bundle(file, file_len, r.name, r.mime[0] ? r.mime : NULL,
                       DISPLAY_IMAGES | DISPLAY_HTML, &c, &shown, err, sizeof err) == CG_OK) {
        json_t *d = json_object_get(c, "data");
        if (!json_is_string(json_object_get(d, shown.mime))
            || !json_is_string(json_object_get(d, "text/plain"))
            || !display_mime_known(shown.mime, DISPLAY_IMAGES | DISPLAY_HTML))
            abort();
    }
    json_decref(c);
out:
    free(req);
    free(file);
    return 0;
}
