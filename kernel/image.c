/*
 * image.c - image type and size from a file's bytes (see image.h).
 */
#include "kernel/image.h"

#include <stdlib.h>
#include <string.h>

static unsigned
be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static unsigned
le16(const unsigned char *p)
{
    return (unsigned)p[1] << 8 | p[0];
}

static unsigned
be32(const unsigned char *p)
{
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

static unsigned
le24(const unsigned char *p)
{
    return (unsigned)p[2] << 16 | (unsigned)p[1] << 8 | p[0];
}

/* JPEG: walk the segments to the first start-of-frame. */
static const char *
jpeg(const unsigned char *d, size_t len, unsigned *w, unsigned *h)
{
    size_t i = 2;

    while (i + 9 < len) {
        if (d[i] != 0xff)
            return NULL;
        unsigned char marker = d[i + 1];
        if (marker == 0xff) { /* fill byte */
            i++;
            continue;
        }
        size_t seglen = be16(d + i + 2);
        if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8
            && marker != 0xcc) {
            *h = be16(d + i + 5);
            *w = be16(d + i + 7);
            return "image/jpeg";
        }
        if (seglen < 2)
            return NULL;
        i += 2 + seglen;
    }
    return NULL;
}

static const char *
webp(const unsigned char *d, size_t len, unsigned *w, unsigned *h)
{
    if (len < 30)
        return NULL;
    if (memcmp(d + 12, "VP8 ", 4) == 0) {
        *w = le16(d + 26) & 0x3fff;
        *h = le16(d + 28) & 0x3fff;
    } else if (memcmp(d + 12, "VP8L", 4) == 0) {
        unsigned bits = (unsigned)d[21] | (unsigned)d[22] << 8 | (unsigned)d[23] << 16
                        | (unsigned)d[24] << 24;
        *w = (bits & 0x3fff) + 1;
        *h = ((bits >> 14) & 0x3fff) + 1;
    } else if (memcmp(d + 12, "VP8X", 4) == 0) {
        *w = le24(d + 24) + 1;
        *h = le24(d + 27) + 1;
    } else {
        return NULL;
    }
    return "image/webp";
}

/* The number in an SVG attribute such as width="120" or width="120px". */
static unsigned
svg_attr(const char *tag, size_t len, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i + n + 2 < len; i++) {
        if ((i == 0 || tag[i - 1] == ' ' || tag[i - 1] == '\n' || tag[i - 1] == '\t')
            && memcmp(tag + i, name, n) == 0 && tag[i + n] == '=' &&
            (tag[i + n + 1] == '"' || tag[i + n + 1] == '\'')) {
            unsigned v = 0;
            for (size_t j = i + n + 2; j < len && tag[j] >= '0' && tag[j] <= '9' && v < 1000000; j++)
                v = v * 10 + (unsigned)(tag[j] - '0');
            return v;
        }
    }
    return 0;
}

/* SVG: an <svg element near the start of a text file. */
static const char *
svg(const unsigned char *d, size_t len, unsigned *w, unsigned *h)
{
    size_t scan = len < 4096 ? len : 4096;
    const char *t = (const char *)d;

    for (size_t i = 0; i + 4 < scan; i++) {
        if (d[i] == 0)
            return NULL; /* binary, not SVG */
        if (memcmp(t + i, "<svg", 4) == 0 && (t[i + 4] == ' ' || t[i + 4] == '>'
                                              || t[i + 4] == '\n' || t[i + 4] == '\t')) {
            const char *end = memchr(t + i, '>', scan - i);
            size_t tag = end ? (size_t)(end - (t + i)) : scan - i;
            *w = svg_attr(t + i + 4, tag - 4, "width");
            *h = svg_attr(t + i + 4, tag - 4, "height");
            return "image/svg+xml";
        }
    }
    return NULL;
}

const char *
image_sniff(const unsigned char *d, size_t len, unsigned *width, unsigned *height)
{
    *width = *height = 0;
    if (len >= 24 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(d + 12, "IHDR", 4) == 0) {
        *width = be32(d + 16);
        *height = be32(d + 20);
        return "image/png";
    }
    if (len >= 10 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) {
        *width = le16(d + 6);
        *height = le16(d + 8);
        return "image/gif";
    }
    if (len >= 4 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
        return jpeg(d, len, width, height);
    if (len >= 16 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return webp(d, len, width, height);
    return svg(d, len, width, height);
}
