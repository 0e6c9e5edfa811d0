/*
 * terminal.c - pseudo-terminals (terminal.h).
 */
#include "kernel/terminal.h"

#include "common/cgerr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int
terminal_open(int *master, int *slave, int master_flags)
{
    char name[128];
    int e;

    *slave = -1;
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | master_flags);
    if (*master >= 0 && grantpt(*master) == 0 && unlockpt(*master) == 0
        && ptsname_r(*master, name, sizeof name) == 0
        && (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) >= 0)
        return CG_OK;
    e = errno;
    if (*master >= 0)
        close(*master);
    *master = -1;
    errno = e;
    return CG_ESYS;
}
