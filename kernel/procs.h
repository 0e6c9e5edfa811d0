/*
 * procs.h - the processes a cell started in the box, found through the
 * box's own /proc, and ended when the box's process limit left the cell
 * stuck (see /work/notes/i14-procs.md for why start time plus ancestry).
 *
 * A process is the cell's when it started at or after the cell did and
 * no older process other than the cell's runtime is its ancestor: what
 * the cell forked (however deep, in its own session or process group, or
 * orphaned to the box's init) is the cell's; what a background server of
 * an earlier cell forks during the cell is the server's.
 */
#ifndef CG_PROCS_H
#define CG_PROCS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Now, in the unit of /proc/PID/stat's start time (clock ticks since boot). */
uint64_t procs_now(void);

/*
 * Counts the tasks (threads, as a pids limit counts them) of the box whose
 * root is root_fd (an O_PATH fd of the box's root, as site_root_open
 * gives). -1 when its /proc cannot be read.
 */
long procs_count(int root_fd);

/*
 * SIGKILLs the processes the cell started (see above) in the box at
 * root_fd: the cell began at tick since and runs on driver (a box pid);
 * the pids in spare (the kernel's own runtimes) and the box's init are
 * never hit. Each is signalled through a pidfd taken from the box's /proc
 * entry it was judged by, so a reused pid is never hit. Returns how many
 * were signalled, or -1 when the box's /proc cannot be read.
 */
long procs_end_cell(int root_fd, pid_t driver, uint64_t since, const pid_t *spare,
                    size_t n_spare);

/* How many children of parent (a box pid) in the box at root_fd ended
 * and wait to be collected by it (zombies: each still holds a pid of the
 * limit). -1 when the box's /proc cannot be read. */
long procs_zombies(int root_fd, pid_t parent);

#endif
