/*
 * utf8.h - make untrusted bytes into valid UTF-8 for JSON, and convert
 * between byte and code-point offsets (Jupyter cursors count code points).
 */
#ifndef CG_UTF8_H
#define CG_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Length of the longest prefix of s[0..len) that does not end inside an
 * incomplete (but so far valid) multi-byte sequence. A reader keeps the
 * remaining 0-3 bytes for its next read.
 */
size_t utf8_complete_prefix(const char *s, size_t len);

/*
 * Copies s[0..len) to out, replacing each invalid byte with U+FFFD and NUL
 * bytes with U+FFFD too (jansson strings are NUL-terminated). out must hold
 * 3 * len + 1 bytes. Returns the output length; out is NUL-terminated.
 */
size_t utf8_sanitize(const char *s, size_t len, char *out);

/* True if s[0..len) is valid UTF-8 without NUL bytes (utf8_sanitize
 * would copy it unchanged). */
bool utf8_valid(const char *s, size_t len);

/*
 * s[0..len) made valid: s itself when utf8_valid, else a malloc'd copy
 * made by utf8_sanitize (the caller frees it when it is not s). Sets
 * *out_len. NULL when out of memory.
 */
const char *utf8_clean(const char *s, size_t len, size_t *out_len);

/* Number of code points in the valid UTF-8 string s[0..len). */
size_t utf8_count(const char *s, size_t len);

/* Byte offset of code point cp in s[0..len) (len if past the end). */
size_t utf8_offset(const char *s, size_t len, size_t cp);

#endif
