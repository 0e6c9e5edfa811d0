/*
 * statedir.h - the default state directory, where kernels keep /mnt/data
 * and the gateway its kernels' models (`cellgate kernel`, `cellgate serve`).
 */
#ifndef CG_STATEDIR_H
#define CG_STATEDIR_H

#include <stddef.h>

/* Writes the default into out: /var/lib/cellgate for root,
 * $XDG_STATE_HOME/cellgate or ~/.local/state/cellgate otherwise ($HOME
 * unset: /tmp/.local/state/cellgate). Truncates to len. */
void statedir_default(char *out, size_t len);

#endif
