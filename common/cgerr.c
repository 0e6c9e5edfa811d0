/*
 * cgerr.c - error strings and the cg_fail() helper (see cgerr.h).
 */
#include "common/cgerr.h"

#include <stdarg.h>
#include <stdio.h>

const char *
cg_strerror(int err)
{
    switch (err) {
    case CG_OK: return "success";
    case CG_ENOMEM: return "out of memory";
    case CG_EINVAL: return "malformed input";
    case CG_ESIG: return "bad signature";
    case CG_EREPLAY: return "replayed message";
    case CG_ETOOBIG: return "size limit exceeded";
    case CG_ESYS: return "system call failed";
    case CG_ENOTFOUND: return "not found";
    case CG_EUNSUPP: return "not supported";
    case CG_EREFUSED: return "refused by policy";
    case CG_ECANCELED: return "interrupted";
    case CG_ETIMEDOUT: return "timed out";
    case CG_EREMOTE: return "remote error";
    }
    return "unknown error";
}

int
cg_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
