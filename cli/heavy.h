/*
 * heavy.h - the commands that need the kernel's libraries (ZeroMQ,
 * libsodium's and Nettle's crypto, ...): `cellgate kernel` and `cellgate
 * doctor`. One interface, two implementations, one per program (Makefile):
 * heavy_run.c runs them, linked into cellgate-kernel; heavy_exec.c,
 * linked into cellgate, execs cellgate-kernel beside it with the same
 * command line. So `cellgate box`, `install`, `display`, `serve` and
 * `--version` start without loading those libraries (a third of the start
 * time), while kernelspecs keep running `cellgate kernel ...`.
 */
#ifndef CG_HEAVY_H
#define CG_HEAVY_H

/* `cellgate kernel`: argv[0] is the program, argv[1..] the command's
 * options (as getopt sees them). Returns the exit status. */
int heavy_kernel(int argc, char **argv);

/* `cellgate doctor`, the same way. */
int heavy_doctor(int argc, char **argv);

#endif
