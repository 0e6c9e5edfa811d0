/*
 * statedir.c - the default state directory (see statedir.h).
 */
#include "common/statedir.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void
statedir_default(char *out, size_t len)
{
    const char *v;

    if (geteuid() == 0)
        snprintf(out, len, "/var/lib/cellgate");
    else if ((v = getenv("XDG_STATE_HOME")) && *v)
        snprintf(out, len, "%s/cellgate", v);
    else
        snprintf(out, len, "%s/.local/state/cellgate", getenv("HOME") ? getenv("HOME") : "/tmp");
}
