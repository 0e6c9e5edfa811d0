/*
 * sibling.h - finding the programs installed beside the running binary
 * (cellgate-fetch next to cellgate), without a search of PATH that the
 * environment could steer.
 */
#ifndef CG_SIBLING_H
#define CG_SIBLING_H

#include <stddef.h>

/* The path of program name in the directory of /proc/self/exe, into buf.
 * Returns CG_OK, or CG_ESYS (the binary cannot be found) or CG_ETOOBIG
 * (buf too small). Does not check that the program exists. */
int sibling_path(const char *name, char *buf, size_t len);

/* sibling_path, and whether that program is there for us to run: CG_OK
 * when it is executable, CG_ENOTFOUND when not (buf still names where it
 * was looked for, for a message), or sibling_path's error. */
int sibling_find(const char *name, char *buf, size_t len);

/* The program name beside the running binary if it is there to run
 * (sibling_find), else the running binary itself: CG_OK with its path in
 * buf, or CG_ESYS (errno set) when neither can be named. For a program
 * that can stand in for this one and starts faster. */
int sibling_or_self(const char *name, char *buf, size_t len);

/* Execs program name beside the running binary with argv, whose argv[0]
 * it sets to that program's path. Returns only on failure, -1 with errno
 * (ENOENT when there is no such program). */
int sibling_exec(const char *name, char **argv);

#endif
