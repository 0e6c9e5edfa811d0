/*
 * seccomp_run.c - the box's filter at run time: the program libseccomp
 * made of seccomp.c's table when cellgate was built (seccomp_gen.c writes
 * it into build/sandbox/seccomp_prog.c), and loading it in a child.
 */
#include "sandbox/boxseccomp.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

const struct sock_fprog *
box_seccomp_prog(void)
{
    return &box_seccomp_program;
}

int
box_seccomp_load(const struct sock_fprog *prog)
{
    if (!prog || !prog->filter || prog->len == 0) {
        errno = EINVAL;
        return -1;
    }
    /* Required for an unprivileged filter, and what makes it stick:
     * no setuid program can shed it. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
        return -1;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0L, 0L) < 0)
        return -1;
    return 0;
}
