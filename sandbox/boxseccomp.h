/*
 * boxseccomp.h - the box's system call policy (libseccomp). The policy is one
 * readable table in seccomp.c: calls a sandboxed program must not make are
 * refused with an errno (never a kill, so runtimes that probe survive);
 * clone3 answers ENOSYS so libc falls back to clone, where namespace flags
 * can be checked.
 */
#ifndef CG_BOXSECCOMP_H
#define CG_BOXSECCOMP_H

#include <linux/filter.h>
#include <stddef.h>

/*
 * Builds the filter into a BPF program owned by the caller (free
 * prog->filter). Returns CG_OK or an error with err filled.
 */
int box_seccomp_build(struct sock_fprog *prog, char *err, size_t errlen);

/*
 * The filter, built on the first call in this process and kept for every
 * later one (libseccomp's work is the same each time): sets *prog to a
 * program owned by this module, alive until the process ends. Thread-safe.
 * Returns CG_OK or, when building failed (every call then fails the same
 * way), an error with err filled.
 */
int box_seccomp_once(const struct sock_fprog **prog, char *err, size_t errlen);

/*
 * In a child just before exec: sets PR_SET_NO_NEW_PRIVS and loads prog.
 * Async-signal-safe (prctl/seccomp only). Returns 0 or -1 with errno.
 */
int box_seccomp_load(const struct sock_fprog *prog);

#endif
