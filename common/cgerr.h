/*
 * cgerr.h - the one error convention of cellgate.
 *
 * Functions that can fail return an int: CG_OK (0) on success or one of the
 * negative codes below. Detail for humans goes into a caller-supplied
 * buffer (char *err, size_t errlen), in the style of redis' anet.
 */
#ifndef CG_ERR_H
#define CG_ERR_H

#include <stddef.h>

enum {
    CG_OK = 0,
    CG_ENOMEM = -1,     /* allocation failed */
    CG_EINVAL = -2,     /* malformed input: bad frame, bad JSON, bad field */
    CG_ESIG = -3,       /* signature missing, wrong length or wrong */
    CG_EREPLAY = -4,    /* a signature seen before */
    CG_ETOOBIG = -5,    /* a size or count bound was exceeded */
    CG_ESYS = -6,       /* a system call failed; errno says which */
    CG_ENOTFOUND = -7,  /* a file, language or key that does not exist */
    CG_EUNSUPP = -8,    /* valid but unsupported (transport, scheme) */
    CG_EREFUSED = -9,   /* refused by a policy (download allowlist, address) */
    CG_ECANCELED = -10, /* stopped because the caller asked (interrupt) */
    CG_ETIMEDOUT = -11, /* a time limit passed */
    CG_EREMOTE = -12,   /* the other end failed or answered an error (HTTP) */
};

/* Returns a static description of an error code. Never NULL. */
const char *cg_strerror(int err);

/*
 * Formats into err (if err != NULL and errlen > 0), always NUL-terminated,
 * and returns code, so callers can write `return cg_fail(err, len, CG_EINVAL,
 * "bad port %d", p);`.
 */
int cg_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
