/*
 * display_cmd.h - the command `cellgate-display FILE [--mime TYPE]` (and
 * `cellgate display ...`), which code in the box runs to show a file in
 * the notebook (display_cmd.c).
 */
#ifndef CG_DISPLAY_CMD_H
#define CG_DISPLAY_CMD_H

/*
 * Runs the command: argv[1..argc) are its arguments, prog names it in
 * messages. Returns the process exit status: 0 once the kernel showed the
 * file, 1 when it could not (why is on stderr), 2 on a usage error.
 */
int display_cmd_main(int argc, char **argv, const char *prog);

#endif
