/*
 * terminal.h - pseudo-terminals for the processes the kernel starts: an
 * exec session's shell (its controlling terminal, read and written by the
 * kernel) and a shell driver's own terminal (runtime.c).
 */
#ifndef CG_TERMINAL_H
#define CG_TERMINAL_H

/* Opens a new pseudo-terminal pair: *master, opened with master_flags
 * added (0 or O_NONBLOCK), and *slave; both close-on-exec, neither made
 * our controlling terminal. Returns CG_OK, or CG_ESYS with errno set and
 * nothing left open (*master and *slave -1). */
int terminal_open(int *master, int *slave, int master_flags);

#endif
