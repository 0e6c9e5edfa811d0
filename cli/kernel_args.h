/*
 * kernel_args.h - the command-line options of `cellgate kernel`, in one
 * table for both programs that read them: cellgate-kernel parses them all
 * (heavy_run.c); cellgate finds the connection file in them to listen on
 * its ports before the exec (heavy_exec.c). Reading both with getopt_long
 * over the same table, they cannot disagree about which argument is the
 * connection file (an abbreviation such as --conn=FILE, "-l -f" naming a
 * language, an option after "--").
 */
#ifndef CG_KERNEL_ARGS_H
#define CG_KERNEL_ARGS_H

#include <getopt.h>
#include <stddef.h>

/* getopt_long's short options for the table below. */
#define KERNEL_SHORT_OPTS "f:l:h"

/* getopt_long's values for the options without a short letter; a box
 * limit's value is KOPT_LIMIT + its index in limits_table(). */
enum {
    KOPT_OUTPUT_LIMIT = 'o',
    KOPT_COLOR = 'c',
    KOPT_VERSION = 'V',
    KOPT_STATE_DIR = 's',
    KOPT_KEEP_DATA = 'k',
    KOPT_NO_SANDBOX = 'n',
    KOPT_LIMIT = 1000,
};

/* The most entries kernel_args_table() writes, the terminating zero entry
 * included. */
#define KERNEL_OPTS_MAX 32

/* Fills opts (KERNEL_OPTS_MAX entries) with the kernel's long options: the
 * fixed ones, then one per box limit (--memory, --pids, ...), then the zero
 * entry getopt_long ends on. */
void kernel_args_table(struct option opts[KERNEL_OPTS_MAX]);

/* The connection file that `cellgate kernel ARGS` would use, ARGS being
 * argv[1..argc-1], or NULL when they name none or are not valid options.
 * argv is left as it was (getopt_long runs over a copy) and nothing is
 * printed; getopt's state is reset for the next parser. */
const char *kernel_args_connection_file(int argc, char **argv);

#endif
