/*
 * seccomp_gen.c - run when cellgate is built: writes the program
 * libseccomp makes of the box's policy (seccomp.c) to stdout as C, which
 * becomes part of every program that builds boxes (seccomp_run.c). A
 * policy libseccomp cannot express fails the build, not a box.
 *
 *   seccomp_gen > build/sandbox/seccomp_prog.c
 */
#include "common/cgerr.h"
#include "sandbox/boxseccomp.h"

#include <stdio.h>
#include <stdlib.h>

int
main(void)
{
    struct sock_fprog prog;
    char err[256];

    if (box_seccomp_build(&prog, err, sizeof err) != CG_OK) {
        fprintf(stderr, "seccomp_gen: %s\n", err);
        return 1;
    }
    printf("/* Written by seccomp_gen from sandbox/seccomp.c's table: do not edit. */\n"
           "#include \"sandbox/boxseccomp.h\"\n\n"
           "static const struct sock_filter insns[%u] = {\n", prog.len);
    for (unsigned i = 0; i < prog.len; i++)
        printf("    { 0x%04x, %u, %u, 0x%08x },\n", prog.filter[i].code, prog.filter[i].jt,
               prog.filter[i].jf, prog.filter[i].k);
    printf("};\n\n/* read-only: the cast only fits sock_fprog's type */\n"
           "const struct sock_fprog box_seccomp_program = { %u, (struct sock_filter *)insns };\n",
           prog.len);
    free(prog.filter);
    return fflush(stdout) == 0 ? 0 : 1;
}
