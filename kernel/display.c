/*
 * display.c - a file's bytes as display_data content, and the request of
 * cellgate-display (see display.h).
 */
#include "kernel/display.h"

#include "common/cgerr.h"
#include "kernel/image.h"
#include "common/utf8.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The types shown, with how a message names each. */
static const struct shown_type {
    const char *mime;
    const char *label;
} types[] = {
    { "image/png", "a PNG image" },
    { "image/jpeg", "a JPEG image" },
    { "image/gif", "a GIF image" },
    { "image/webp", "a WebP image" },
    { "image/svg+xml", "an SVG image" },
    { "text/html", "HTML" },
};

#define N_TYPES (sizeof types / sizeof types[0])

static const struct shown_type *
find_type(const char *mime)
{
    for (size_t i = 0; mime && i < N_TYPES; i++)
        if (strcmp(types[i].mime, mime) == 0)
            return &types[i];
    return NULL;
}

bool
display_mime_known(const char *mime, unsigned kinds)
{
    const struct shown_type *t = find_type(mime);

    if (!t)
        return false;
    return strcmp(t->mime, "text/html") == 0 ? (kinds & DISPLAY_HTML) != 0
                                             : (kinds & DISPLAY_IMAGES) != 0;
}

/* ---- reading ------------------------------------------------------------ */

static const char *
file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    return "not a file";
}

int
display_read_fd(int fd, unsigned char **bytes, size_t *len, char *err, size_t errlen)
{
    struct stat st;

    *bytes = NULL;
    *len = 0;
    if (fstat(fd, &st) != 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot stat it: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cg_fail(err, errlen, CG_EINVAL, "not a regular file (%s)", file_kind(st.st_mode));
    if (st.st_size > (off_t)DISPLAY_MAX)
        return cg_fail(err, errlen, CG_ETOOBIG, "larger than the %u MiB that can be shown",
                       DISPLAY_MAX >> 20);
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *b = malloc(size + 1);
    if (!b)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    /* pread: from the start whatever the offset, and never past the size
     * seen above, even if the file grows meanwhile. */
    while (got < size) {
        ssize_t n = pread(fd, b + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(b);
            return cg_fail(err, errlen, CG_ESYS, "cannot read it: %s", strerror(e));
        }
        if (n == 0)
            break; /* it shrank */
        got += (size_t)n;
    }
    b[got] = '\0';
    *bytes = b;
    *len = got;
    return CG_OK;
}

/* ---- the bundle --------------------------------------------------------- */

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcasecmp(s + n - m, suffix) == 0;
}

/* The value shown for mime: the text itself for SVG and HTML (which must
 * be UTF-8), base64 for the rest. NULL on invalid text or no memory. */
static json_t *
shown_value(const unsigned char *bytes, size_t len, const char *mime)
{
    if (strcmp(mime, "image/svg+xml") == 0 || strcmp(mime, "text/html") == 0)
        return utf8_valid((const char *)bytes, len) ? json_stringn((const char *)bytes, len)
                                                    : NULL;
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(cap);
    json_t *v = b64 ? json_string(sodium_bin2base64(b64, cap, bytes, len,
                                                    sodium_base64_VARIANT_ORIGINAL))
                    : NULL;
    free(b64);
    return v;
}

int
display_bundle(const unsigned char *bytes, size_t len, const char *name, const char *asked,
               unsigned kinds, json_t **content, struct display_shown *shown, char *err,
               size_t errlen)
{
    unsigned w, h;
    const char *sniffed = image_sniff(bytes, len, &w, &h);
    const struct shown_type *t;

    *content = NULL;
    if (!name || !*name)
        name = "(unnamed)";
    if (asked) {
        t = find_type(asked);
        if (!t || !display_mime_known(asked, kinds))
            return cg_fail(err, errlen, CG_EINVAL, "%s cannot be shown as %.64s", name, asked);
        if (strcmp(t->mime, "text/html") != 0 && (!sniffed || strcmp(sniffed, t->mime) != 0))
            return cg_fail(err, errlen, CG_EINVAL, "%s is not %s%s%s%s", name, t->label,
                           sniffed ? " (its bytes are " : "",
                           sniffed ? find_type(sniffed)->label : "", sniffed ? ")" : "");
    } else if ((kinds & DISPLAY_HTML) && (ends_with(name, ".html") || ends_with(name, ".htm"))
               && (!sniffed || strcmp(sniffed, "image/svg+xml") == 0)) {
        t = find_type("text/html"); /* an HTML page may well hold an <svg> */
    } else if (sniffed && (kinds & DISPLAY_IMAGES)) {
        t = find_type(sniffed);
    } else {
        return cg_fail(err, errlen, CG_EINVAL, "%s is not a PNG, JPEG, GIF, WebP or SVG image%s",
                       name, kinds & DISPLAY_HTML ? " nor an .html file (--mime text/html shows "
                                                    "a file as HTML)" : "");
    }
    bool image = strcmp(t->mime, "text/html") != 0;
    if (!image)
        w = h = 0;

    json_t *value = shown_value(bytes, len, t->mime);
    if (!value) {
        if (image && strcmp(t->mime, "image/svg+xml") != 0)
            return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return cg_fail(err, errlen, CG_EINVAL, "%s: %s is not valid UTF-8 text", name,
                       image ? "the SVG" : "the HTML");
    }
    json_t *plain = image ? json_sprintf("<image %s, %ux%u>", name, w, h) : json_string(name);
    json_t *c = json_pack("{s:{s:o, s:o}, s:{}}", "data", t->mime, value, "text/plain",
                          plain, "metadata");
    if (c && image && w && h)
        json_object_set_new(json_object_get(c, "metadata"), t->mime,
                            json_pack("{s:i, s:i}", "width", w, "height", h));
    if (!c)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    *content = c;
    shown->mime = t->mime;
    shown->width = w;
    shown->height = h;
    return CG_OK;
}

/* ---- the request -------------------------------------------------------- */

int
display_parse_request(const char *buf, size_t len, struct display_req *req, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    json_t *o, *mime, *name;
    int rc = CG_EINVAL;

    memset(req, 0, sizeof *req);
    if (len > DISPLAY_REQ_MAX)
        return cg_fail(err, errlen, CG_ETOOBIG, "request larger than %u bytes", DISPLAY_REQ_MAX);
    o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o)) {
        cg_fail(err, errlen, CG_EINVAL, "the request is not a JSON object");
        goto out;
    }
    mime = json_object_get(o, "mime");
    name = json_object_get(o, "name");
    if (mime && !json_is_null(mime)) {
        if (!json_is_string(mime) || !display_mime_known(json_string_value(mime),
                                                         DISPLAY_IMAGES | DISPLAY_HTML)) {
            cg_fail(err, errlen, CG_EINVAL, "\"mime\" must be one of image/png, image/jpeg, "
                    "image/gif, image/webp, image/svg+xml, text/html");
            goto out;
        }
        memcpy(req->mime, json_string_value(mime), json_string_length(mime) + 1);
    }
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || json_string_length(name) > DISPLAY_NAME_MAX) {
            cg_fail(err, errlen, CG_EINVAL, "\"name\" must be a string of at most %u bytes",
                    DISPLAY_NAME_MAX);
            goto out;
        }
        memcpy(req->name, json_string_value(name), json_string_length(name) + 1);
    }
    rc = CG_OK;
out:
    json_decref(o);
    return rc;
}
