/*
 * utf8.c - UTF-8 validation and offsets (see utf8.h).
 */
#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid sequence starting at s (bounded by len), 0 if the
 * byte at s cannot start one, or -1 if s[0..len) is a valid but cut
 * prefix of a sequence. Rejects overlongs, surrogates and > U+10FFFF. */
static int
seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= len)
            return -1;
        unsigned char b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf))
            return 0;
    }
    return need;
}

size_t
utf8_complete_prefix(const char *s, size_t len)
{
    /* Only the last three bytes can start a cut sequence. */
    size_t start = len > 3 ? len - 3 : 0;

    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xc0 && seq_len((const unsigned char *)s + i, len - i) == -1)
            return i;
    }
    return len;
}

size_t
utf8_sanitize(const char *s, size_t len, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;

    while (i < len) {
        int n = p[i] == 0 ? 0 : seq_len(p + i, len - i);
        if (n > 0) {
            memcpy(out + o, p + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

bool
utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        uint64_t v;
        if (i + 8 <= len) { /* the common case: eight ASCII bytes, no NUL */
            memcpy(&v, p + i, sizeof v);
            if (!(v & UINT64_C(0x8080808080808080))
                && !((v - UINT64_C(0x0101010101010101)) & ~v & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        if (p[i] > 0 && p[i] < 0x80) {
            i++;
            continue;
        }
        int n = p[i] == 0 ? 0 : seq_len(p + i, len - i);
        if (n <= 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

size_t
utf8_count(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

size_t
utf8_offset(const char *s, size_t len, size_t cp)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (n == cp)
                return i;
            n++;
        }
    return len;
}

const char *
utf8_clean(const char *s, size_t len, size_t *out_len)
{
    if (utf8_valid(s, len)) {
        *out_len = len;
        return s;
    }
    char *clean = malloc(3 * len + 1);
    if (clean)
        *out_len = utf8_sanitize(s, len, clean);
    return clean;
}
