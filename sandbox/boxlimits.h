/*
 * boxlimits.h - the box's resource limits: what they are (defaults, flags,
 * environment) and how they are enforced (cgroup v2 where delegated, the
 * cgroup v1 memory and pids controllers when the kernel runs as root,
 * rlimits otherwise).
 */
#ifndef CG_BOXLIMITS_H
#define CG_BOXLIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How the memory limit is enforced. */
enum mem_mechanism { MEM_CGROUP_V2, MEM_CGROUP_V1, MEM_RLIMIT_AS, MEM_NONE };

struct box_limits {
    uint64_t memory;   /* bytes for the whole box (rlimit fallback: per process); 0 = none */
    uint64_t pids;     /* processes in the box; 0 = none */
    uint64_t nofile;   /* open files per process */
    uint64_t fsize;    /* largest file a process may write, bytes; 0 = none */
    uint64_t tmp;      /* size of the box's /tmp, bytes */
    uint64_t timeout;  /* per-cell wall clock, seconds; 0 = off (Jupyter's default) */
    uint64_t data_size; /* size of /mnt/data, bytes (root: a filesystem image); 0 = none */
};

/* One limit's names: "memory" -> flag --memory, variable CELLGATE_MEMORY;
 * "data-size" -> --data-size, CELLGATE_DATA_SIZE. */
struct limit_info {
    const char *name;       /* "memory" */
    const char *help;       /* one line for --help */
    bool is_size;           /* accepts K/M/G suffixes */
    size_t offset;          /* offsetof(struct box_limits, ...) */
};

/* The table of limits, for option parsing, --help and the README. */
const struct limit_info *limits_table(size_t *n);

/* The variable of the limit called name: "data-size" -> "CELLGATE_DATA_SIZE". */
void limits_env_name(const char *name, char *out, size_t len);

/* Fills l with the defaults. */
void limits_defaults(struct box_limits *l);

/* Sets the limit called name from text ("512M", "64", "0"). Returns CG_OK
 * or CG_EINVAL / CG_ENOTFOUND with err naming the limit and the value. */
int limits_set(struct box_limits *l, const char *name, const char *value, char *err,
               size_t errlen);

/* Applies every CELLGATE_<NAME> variable that is set. Same errors. */
int limits_from_env(struct box_limits *l, char *err, size_t errlen);

/* The mechanism cgroup_create() would use on this machine, for doctor. */
enum mem_mechanism limits_probe(void);

/* "cgroup v2", "cgroup v1 (memory controller)", "RLIMIT_AS per process", "none". */
const char *mem_mechanism_name(enum mem_mechanism m);

struct box_cgroup;

/*
 * Creates the cgroup(s) for one box named name (e.g. "cellgate-<id>") with
 * l's memory and pids limits, using the best mechanism available. When no
 * cgroup can be used the handle still exists and says MEM_RLIMIT_AS (or
 * MEM_NONE when l->memory is 0). Returns NULL with err on failure.
 */
struct box_cgroup *cgroup_create(const struct box_limits *l, const char *name, char *err,
                                 size_t errlen);

/* The mechanism in force for this box. */
enum mem_mechanism cgroup_mechanism(const struct box_cgroup *cg);

/* True if the pids limit is enforced by a cgroup (else RLIMIT_NPROC). */
bool cgroup_has_pids(const struct box_cgroup *cg);

/* Moves pid (and its future children) into the box's cgroup(s). */
int cgroup_attach(struct box_cgroup *cg, pid_t pid, char *err, size_t errlen);

/* Removes box cgroups that kernels killed outright left beside cg's: empty
 * ones older than a minute. Work that may wait: a box's own is never
 * touched (it holds its init), nor a young one. */
void cgroup_sweep(const struct box_cgroup *cg);

/* How many processes the memory limit has killed so far (0 without a cgroup). */
uint64_t cgroup_oom_kills(struct box_cgroup *cg);

/* How many times a fork in the box failed at the pids limit so far (the
 * "max" count of pids.events; 0 without a pids cgroup). */
uint64_t cgroup_pids_hits(struct box_cgroup *cg);

/* Kills every process left in the cgroup(s), removes them, frees, nulls *cg. */
void cgroup_destroy(struct box_cgroup **cg);

/*
 * In a child just before exec: RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_CORE 0,
 * RLIMIT_NPROC when pids are not limited by a cgroup, RLIMIT_AS when the
 * mechanism is MEM_RLIMIT_AS. Async-signal-safe (no allocation). Returns 0
 * or -1 with errno.
 */
int limits_apply_rlimits(const struct box_limits *l, enum mem_mechanism m, bool pids_by_cgroup);

#endif
