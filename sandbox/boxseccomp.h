/*
 * boxseccomp.h - the box's system call policy (libseccomp, at build time).
 * The policy is one readable table in seccomp.c: calls a sandboxed program must not make are
 * refused with an errno (never a kill, so runtimes that probe survive);
 * clone3 answers ENOSYS so libc falls back to clone, where namespace flags
 * can be checked.
 */
#ifndef CG_BOXSECCOMP_H
#define CG_BOXSECCOMP_H

#include <linux/filter.h>
#include <stddef.h>

/*
 * Builds the filter from the table with libseccomp into a BPF program
 * owned by the caller (free prog->filter). Returns CG_OK or an error with
 * err filled. Done when cellgate is built (seccomp_gen.c), and by tests.
 */
int box_seccomp_build(struct sock_fprog *prog, char *err, size_t errlen);

/* The program box_seccomp_build() made when cellgate was built (static,
 * never freed): what every process in every box runs under. */
const struct sock_fprog *box_seccomp_prog(void);

/* That program, as seccomp_gen writes it out (build/sandbox/seccomp_prog.c). */
extern const struct sock_fprog box_seccomp_program;

/*
 * In a child just before exec: sets PR_SET_NO_NEW_PRIVS and loads prog.
 * Async-signal-safe (prctl/seccomp only). Returns 0 or -1 with errno.
 */
int box_seccomp_load(const struct sock_fprog *prog);

#endif
