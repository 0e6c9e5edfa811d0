/*
 * site.h - where a kernel's code runs: in its box, or as plain processes
 * when the operator turned the sandbox off. Cells start runtimes here and
 * tools start commands and reach files here; the kernel builds it and
 * marks it lost when the box dies, so nothing falls back to running on
 * the host on its own.
 */
#ifndef CG_SITE_H
#define CG_SITE_H

#include "kernel/egress.h"
#include "kernel/runtime.h"
#include "sandbox/box.h"
#include "sandbox/boxlimits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct site {
    struct box *box;            /* NULL without the sandbox, or once it is gone */
    char error[512];            /* why code cannot run ("" while it can) */
    bool rebuild;               /* a box that dies is built afresh (site_rebuildable) */
    struct box_opts bo;         /* how, its strings in the three below */
    char data_dir[4096], name[96], egress_id[80], cache_dir[4200];
    char rebuilt[256];          /* why the last box ended, until a cell says it */
    struct rt_place place;      /* spawner, home, cellgate-display's dir and socket */
    struct box_limits limits;   /* as given to the box (time limit, memory) */
    struct egress *egress;      /* package egress of the box, or NULL */
    struct boxfs_volume *volume; /* a lost box's bounded /mnt/data, for the next box */
};

/*
 * Sets up s: with box (may be NULL when error says why there is none, or
 * when the sandbox is off) its spawner and home, else plain processes.
 * error (may be NULL) is copied.
 */
void site_init(struct site *s, struct box *box, const char *error,
               const struct box_limits *limits);

/* Lets a box that dies be rebuilt, the same way (bo's strings are
 * copied), with package egress for egress_id and cache_dir when those
 * are non-NULL. */
void site_rebuildable(struct site *s, const struct box_opts *bo, const char *egress_id,
                      const char *cache_dir);

/* Takes the reason a fresh box replaced one that died (for the cell that
 * says so): true with why filled once after each rebuild, else false. */
bool site_take_rebuilt(struct site *s, char *why, size_t len);

/* Where a process starts: *where filled, CG_OK; or CG_ESYS with err
 * saying why code cannot run (the box failed, or is gone and a fresh one
 * cannot be built; a rebuildable site builds it here). The first place
 * in the box waits for it to be ready and starts its package egress, so
 * the registry gateway is there before any code runs. */
int site_place(struct site *s, struct rt_place *where, char *err, size_t errlen);

/*
 * An fd for the root of the files code sees, for resolving paths inside
 * it (sandbox/boxfs.h): the box's root (the caller closes it), or
 * AT_FDCWD without the box. CG_OK, or an error with err filled.
 */
int site_root_open(const struct site *s, int *root, char *err, size_t errlen);

/* A path the request named, as the box sees it: relative paths are under
 * the box's home; without the box, relative to the kernel's directory. */
const char *site_path(const struct site *s, const char *path, char *buf, size_t len);

/* Processes the box's memory limit killed so far (0 without the box). */
uint64_t site_oom_kills(const struct site *s);

/* Where a cell stands with the box's process limit: taken when it starts. */
struct site_mark {
    uint64_t pids_hits;         /* forks the limit had refused by then */
    uint64_t since;             /* procs_now() then */
};

/* Marks the start of a cell (nothing to mark without the box). */
void site_mark(const struct site *s, struct site_mark *m);

/* True if the box's process limit was reached since m: a fork was refused
 * (pids cgroup), or, where rlimits enforce it, the box holds as many
 * tasks (threads) as the limit. False without the box or without a limit. */
bool site_pids_reached(const struct site *s, const struct site_mark *m);

/* SIGKILLs the processes a cell started since m on its runtime driver
 * (procs.h); spare lists the kernel's runtimes. Returns how many, or -1
 * when the box's processes cannot be read (or there is no box). */
long site_end_cell(const struct site *s, const struct site_mark *m, pid_t driver,
                   const pid_t *spare, size_t n_spare);

/* The box died (why: for humans): code cannot run until a rebuildable
 * site builds a fresh box at the next site_place (its /mnt/data kept);
 * otherwise ever again, and every place says so. The box object stays
 * until site_close, so that what was started in it can still be told to
 * stop. */
void site_lost(struct site *s, const char *why);

/* Children of driver (a box pid) that ended and wait for it to collect
 * them (procs_zombies); 0 without the box. */
long site_zombies(const struct site *s, pid_t driver);

/* True between a rebuildable box's death and the fresh box. */
bool site_box_lost(const struct site *s);

/* Destroys the box (if any); s->box is NULL after. */
void site_close(struct site *s);

/* site_close, and what a lost box left for the next one goes too. */
void site_destroy(struct site *s);

#endif
