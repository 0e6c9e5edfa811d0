/*
 * sibling.c - programs beside the running binary (see sibling.h).
 */
#include "common/sibling.h"

#include "common/cgerr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
sibling_path(const char *name, char *buf, size_t len)
{
    if (!buf || len < 2)
        return CG_ETOOBIG;
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return CG_ESYS;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    size_t dir = slash ? (size_t)(slash + 1 - buf) : 0;
    int w = snprintf(buf + dir, len - dir, "%s", name);
    return w < 0 || (size_t)w >= len - dir ? CG_ETOOBIG : CG_OK;
}

int
sibling_find(const char *name, char *buf, size_t len)
{
    int rc = sibling_path(name, buf, len);

    if (rc == CG_OK && access(buf, X_OK) != 0)
        rc = CG_ENOTFOUND;
    return rc;
}

int
sibling_or_self(const char *name, char *buf, size_t len)
{
    if (sibling_find(name, buf, len) == CG_OK)
        return CG_OK;
    ssize_t n = len > 1 ? readlink("/proc/self/exe", buf, len - 1) : -1;
    if (n <= 0)
        return CG_ESYS;
    buf[n] = '\0';
    return CG_OK;
}

int
sibling_exec(const char *name, char **argv)
{
    static char prog[4096];
    int rc = sibling_path(name, prog, sizeof prog);

    if (rc != CG_OK) {
        errno = rc == CG_ETOOBIG ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    argv[0] = prog;
    execv(prog, argv);
    return -1;
}
