/*
 * limits.c - the box's resource limits (see limits.h).
 *
 * Two halves. The first is data: one table of limits with their defaults,
 * bounds, flags and CELLGATE_* variables, and a strict parser for "512M",
 * "64", "0". The second enforces them: a cgroup per box when the machine
 * lets us have one (cgroup v2 where it is delegated, else the v1 memory and
 * pids controllers, which need root), rlimits in each process otherwise.
 *
 * Box cgroups live in a "cellgate" directory below the cgroup this process
 * already belongs to (e.g. <mount>/<our cgroup>/cellgate/<name>), never at
 * the top of a hierarchy: v2 delegation only allows that, and in v1 it
 * keeps any limit put on the kernel itself binding on its boxes. The
 * "cellgate" parent is created on demand and left in place.
 */
#include "sandbox/boxlimits.h"

#include "common/cgerr.h"
#include "common/size.h"
#include "common/log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mntent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

#define CG_PARENT "cellgate" /* the directory box cgroups are made in */
#define CG_PATH 512          /* cgroup paths are short; longer ones are refused */
#define CG_NAME_MAX 64       /* longest box name */
#define PID_MAX_LIMIT 4194304 /* the kernel's ceiling for pid_max and pids.max */

/* cgroup_destroy() gives processes this long to die before giving up. */
#define DESTROY_ROUNDS 400
#define DESTROY_SLEEP_NS 5000000L /* 5 ms: at most 2 s in all */
#define KILL_MAX_PER_ROUND 100000 /* pids read from cgroup.procs per round */

/* ---- the table --------------------------------------------------------- */

static const struct limit_info table[] = {
    { "memory", "memory for the whole box, per process without cgroups (K/M/G; 0 = none)",
      true, offsetof(struct box_limits, memory) },
    { "pids", "processes in the box (0 = none)", false, offsetof(struct box_limits, pids) },
    { "nofile", "open files per process", false, offsetof(struct box_limits, nofile) },
    { "fsize", "largest file a process may write (K/M/G; 0 = none)", true,
      offsetof(struct box_limits, fsize) },
    { "tmp", "size of the box's /tmp (K/M/G)", true, offsetof(struct box_limits, tmp) },
    { "timeout", "wall-clock seconds per cell (0 = off)", false,
      offsetof(struct box_limits, timeout) },
    { "data-size", "size of /mnt/data (K/M/G; 0 = none; needs root)", true,
      offsetof(struct box_limits, data_size) },
};

#define N_LIMITS (sizeof table / sizeof table[0])

/* What values each limit accepts; same order as table[]. */
static const struct {
    bool zero_ok;  /* "0" means no limit */
    uint64_t min;  /* smallest value other than 0 */
    uint64_t max;  /* largest value */
} bounds[N_LIMITS] = {
    { true, MiB, INT64_MAX },      /* memory: less than 1M is a forgotten suffix */
    { true, 1, PID_MAX_LIMIT },    /* pids: pids.max takes no more */
    { false, 16, INT32_MAX },      /* nofile: stdio and a runtime need a few */
    { true, 1, INT64_MAX },        /* fsize */
    { false, MiB, INT64_MAX },     /* tmp: tmpfs reads size=0 as unlimited */
    { true, 1, INT32_MAX / 1000 }, /* timeout: milliseconds still fit poll()'s int */
    { true, 4 * MiB, INT64_MAX },  /* data-size: the smallest ext4 with a journal */
};

_Static_assert(sizeof bounds / sizeof bounds[0] == N_LIMITS, "one bounds entry per limit");

const struct limit_info *
limits_table(size_t *n)
{
    if (n)
        *n = N_LIMITS;
    return table;
}

void
limits_defaults(struct box_limits *l)
{
    *l = (struct box_limits){
        .memory = 2 * GiB,
        .pids = 512,
        .nofile = 1024,
        .fsize = 1 * GiB,
        .tmp = 256 * MiB,
        .timeout = 0,
        .data_size = 10 * GiB,
    };
}

/* ---- parsing ------------------------------------------------------------ */

/* Checks value for table[i] and stores it in l; label names the limit in
 * errors ("memory", or the variable it came from). */
static int
set_one(struct box_limits *l, size_t i, const char *label, const char *value, char *err,
        size_t errlen)
{
    const struct limit_info *t = &table[i];
    uint64_t v = 0;
    int rc = size_parse(value, t->is_size, &v);

    if (rc == CG_EINVAL)
        return cg_fail(err, errlen, CG_EINVAL, "%s: \"%.64s\" is not %s", label, value,
                       t->is_size ? "a size (a whole number, optionally with a K, M, G or T "
                                    "suffix)"
                                  : "a whole number");
    if (rc == CG_ETOOBIG || v > bounds[i].max)
        return cg_fail(err, errlen, CG_EINVAL, "%s: \"%.64s\" is too large (at most %" PRIu64
                       "%s)", label, value, bounds[i].max, t->is_size ? " bytes" : "");
    if (v == 0 && !bounds[i].zero_ok)
        return cg_fail(err, errlen, CG_EINVAL, "%s: \"%.64s\": this limit cannot be turned "
                       "off (at least %" PRIu64 "%s)", label, value, bounds[i].min,
                       t->is_size ? " bytes" : "");
    if (v != 0 && v < bounds[i].min) {
        bool bare = t->is_size && isdigit((unsigned char)value[strlen(value) - 1]);
        return cg_fail(err, errlen, CG_EINVAL, "%s: \"%.64s\" is too small (at least %" PRIu64
                       "%s%s%.64s%s)", label, value, bounds[i].min, t->is_size ? " bytes" : "",
                       bare ? "; did you mean " : "", bare ? value : "", bare ? "M?" : "");
    }
    memcpy((char *)l + t->offset, &v, sizeof v);
    return CG_OK;
}

int
limits_set(struct box_limits *l, const char *name, const char *value, char *err,
           size_t errlen)
{
    for (size_t i = 0; i < N_LIMITS; i++)
        if (strcmp(table[i].name, name) == 0)
            return set_one(l, i, table[i].name, value, err, errlen);
    return cg_fail(err, errlen, CG_ENOTFOUND, "unknown limit \"%.64s\" (given \"%.64s\"); the "
                   "limits are memory, pids, nofile, fsize, tmp, timeout and data-size", name, value);
}

void
limits_env_name(const char *name, char *out, size_t len)
{
    size_t k = (size_t)snprintf(out, len, "CELLGATE_%s", name);

    for (size_t j = sizeof "CELLGATE_" - 1; j < k && j < len; j++)
        out[j] = out[j] == '-' ? '_' : (char)toupper((unsigned char)out[j]);
}

int
limits_from_env(struct box_limits *l, char *err, size_t errlen)
{
    struct box_limits next = *l; /* all or nothing */

    for (size_t i = 0; i < N_LIMITS; i++) {
        char var[64];
        limits_env_name(table[i].name, var, sizeof var);
        const char *value = getenv(var);
        if (!value)
            continue;
        if (!*value)
            return cg_fail(err, errlen, CG_EINVAL, "%s (%s) is set but empty", var,
                           table[i].name);
        char label[96];
        snprintf(label, sizeof label, "%s (%s)", var, table[i].name);
        int rc = set_one(&next, i, label, value, err, errlen);
        if (rc != CG_OK)
            return rc;
    }
    *l = next;
    return CG_OK;
}

const char *
mem_mechanism_name(enum mem_mechanism m)
{
    switch (m) {
    case MEM_CGROUP_V2: return "cgroup v2";
    case MEM_CGROUP_V1: return "cgroup v1 (memory controller)";
    case MEM_RLIMIT_AS: return "RLIMIT_AS per process";
    case MEM_NONE: return "none";
    }
    return "unknown";
}

/* ---- cgroup files ------------------------------------------------------- */

/* Joins dir and name with one '/'. Returns CG_OK or CG_ETOOBIG. */
static int
join(char *out, size_t outlen, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    bool slash = n > 0 && dir[n - 1] == '/';
    while (*name == '/')
        name++;
    int k = snprintf(out, outlen, "%s%s%s", dir, slash || !*name ? "" : "/", name);
    return k < 0 || (size_t)k >= outlen ? CG_ETOOBIG : CG_OK;
}

/* Writes text to dir/file in one write(), as cgroup files want. Returns 0
 * or -errno. */
static int
cg_write(const char *dir, const char *file, const char *text)
{
    char path[CG_PATH];
    if (join(path, sizeof path, dir, file) != CG_OK)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int e = n < 0 ? errno : (size_t)n == len ? 0 : EIO;
    close(fd);
    return -e;
}

/* Reads dir/file (a path alone when dir is NULL) into buf, NUL-terminated,
 * at most len - 1 bytes. Returns 0 or -errno. */
static int
cg_read(const char *dir, const char *file, char *buf, size_t len)
{
    char path[CG_PATH];
    if (dir && join(path, sizeof path, dir, file) != CG_OK)
        return -ENAMETOOLONG;
    int fd = open(dir ? path : file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return 0;
}

static bool
exists(const char *dir, const char *file)
{
    char path[CG_PATH];
    return join(path, sizeof path, dir, file) == CG_OK && access(path, F_OK) == 0;
}

/* True if item is one of the words of list, words being separated by any
 * of seps ("cpu memory pids", "cpu,cpuacct"). */
static bool
has_word(const char *list, size_t len, const char *item, const char *seps)
{
    size_t n = strlen(item);
    const char *end = list + len;
    for (const char *p = list; p < end;) {
        size_t w = 0;
        while (p + w < end && !strchr(seps, p[w]))
            w++;
        if (w == n && memcmp(p, item, n) == 0)
            return true;
        p += w + 1;
    }
    return false;
}

/* Reads a /proc/<pid>/cgroup file and finds the cgroup in the hierarchy of
 * controller ctl ("" for the v2 one, the "0::" line), as a path from the
 * hierarchy's top. Returns true if found. */
static bool
cgroup_of(const char *procfile, const char *ctl, char *out, size_t outlen)
{
    char buf[8192];
    if (cg_read(NULL, procfile, buf, sizeof buf) != 0)
        return false;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *c1 = memchr(line, ':', len);
        char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            const char *ctls = c1 + 1;
            size_t ctls_len = (size_t)(c2 - ctls);
            bool match = *ctl ? has_word(ctls, ctls_len, ctl, ",")
                              : ctls_len == 0 && c1 - line == 1 && line[0] == '0';
            size_t plen = len - (size_t)(c2 + 1 - line);
            if (match && plen < outlen) {
                memcpy(out, c2 + 1, plen);
                out[plen] = '\0';
                return true;
            }
        }
        line += len + (nl ? 1 : 0);
    }
    return false;
}

/* Finds a read-write mount of the hierarchy of ctl ("" for cgroup2). */
static bool
find_mount(const char *ctl, char *out, size_t outlen)
{
    struct mntent m;
    char buf[4096];
    bool found = false;
    FILE *f = setmntent("/proc/self/mounts", "re");

    if (!f)
        return false;
    while (!found && getmntent_r(f, &m, buf, sizeof buf)) {
        bool ours = *ctl ? strcmp(m.mnt_type, "cgroup") == 0 && hasmntopt(&m, ctl)
                         : strcmp(m.mnt_type, "cgroup2") == 0;
        if (ours && !hasmntopt(&m, "ro"))
            found = join(out, outlen, m.mnt_dir, "") == CG_OK;
    }
    endmntent(f);
    return found;
}

/* One cgroup directory of a box (or the "cellgate" parent). */
struct cg_dir {
    char path[CG_PATH]; /* absolute directory; "" when not in use */
    char rel[CG_PATH];  /* the same cgroup as /proc/<pid>/cgroup names it */
    char base[CG_PATH]; /* the directory above the "cellgate" parent */
    char ctl[16];       /* "memory", "pids", or "" for the v2 hierarchy */
};

/* Locates the "cellgate" parent in the hierarchy of ctl, below our own
 * cgroup, without creating anything. */
static int
locate_parent(const char *ctl, struct cg_dir *d, char *err, size_t errlen)
{
    char mnt[CG_PATH], own[CG_PATH];
    struct stat st;

    memset(d, 0, sizeof *d);
    snprintf(d->ctl, sizeof d->ctl, "%s", ctl);
    if (!find_mount(ctl, mnt, sizeof mnt))
        return cg_fail(err, errlen, CG_ENOTFOUND, "no writable %s%s hierarchy is mounted",
                       *ctl ? "cgroup v1 " : "cgroup2", ctl);
    if (!cgroup_of("/proc/self/cgroup", ctl, own, sizeof own))
        snprintf(own, sizeof own, "/");
    /* A mount from outside our cgroup namespace does not show our path: use its top. */
    if (join(d->base, sizeof d->base, mnt, own) != CG_OK || stat(d->base, &st) != 0
        || !S_ISDIR(st.st_mode)) {
        snprintf(own, sizeof own, "/");
        snprintf(d->base, sizeof d->base, "%s", mnt);
    }
    if (join(d->path, sizeof d->path, d->base, CG_PARENT) != CG_OK
        || join(d->rel, sizeof d->rel, own, CG_PARENT) != CG_OK)
        return cg_fail(err, errlen, CG_ETOOBIG, "cgroup path too long below %s", d->base);
    return CG_OK;
}

static int
make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return CG_OK;
    return cg_fail(err, errlen, CG_ESYS, "cannot create cgroup %s: %s", path, strerror(errno));
}

/* Turns controller on for the children of dir, unless it already is. */
static int
enable_controller(const char *dir, const char *controller)
{
    char buf[512], op[32];
    if (cg_read(dir, "cgroup.subtree_control", buf, sizeof buf) == 0
        && has_word(buf, strlen(buf), controller, " \n"))
        return 0;
    snprintf(op, sizeof op, "+%s", controller);
    return cg_write(dir, "cgroup.subtree_control", op);
}

/*
 * The v2 parent, ready for box cgroups: memory (and pids when available)
 * enabled for its children. This is the delegation test: a cgroup2 mount
 * we can write, memory offered to our cgroup, and either already enabled
 * below it or ours to enable (a non-root cgroup with processes in it, such
 * as our own, cannot hand controllers down: EBUSY).
 */
static int
v2_parent(struct cg_dir *d, bool *pids, char *err, size_t errlen)
{
    char ctrls[512];
    int rc = locate_parent("", d, err, errlen), e;

    if (rc != CG_OK)
        return rc;
    if (cg_read(d->base, "cgroup.controllers", ctrls, sizeof ctrls) != 0
        || !has_word(ctrls, strlen(ctrls), "memory", " \n"))
        return cg_fail(err, errlen, CG_EUNSUPP, "cgroup v2: the memory controller is not "
                       "available in %s", d->base);
    bool want_pids = has_word(ctrls, strlen(ctrls), "pids", " \n");
    if ((e = enable_controller(d->base, "memory")) != 0)
        return cg_fail(err, errlen, CG_EUNSUPP, "cgroup v2 is not delegated to us: cannot "
                       "enable memory below %s: %s", d->base, strerror(-e));
    if (want_pids)
        enable_controller(d->base, "pids");
    if ((rc = make_dir(d->path, err, errlen)) != CG_OK)
        return rc;
    if ((e = enable_controller(d->path, "memory")) != 0)
        return cg_fail(err, errlen, CG_EUNSUPP, "cgroup v2: cannot enable memory below %s: %s",
                       d->path, strerror(-e));
    if (want_pids)
        enable_controller(d->path, "pids");
    if (cg_read(d->path, "cgroup.subtree_control", ctrls, sizeof ctrls) != 0)
        ctrls[0] = '\0';
    *pids = has_word(ctrls, strlen(ctrls), "pids", " \n");
    return CG_OK;
}

/* The v1 parent for controller ctl; writing there takes root. */
static int
v1_parent(const char *ctl, struct cg_dir *d, char *err, size_t errlen)
{
    int rc = locate_parent(ctl, d, err, errlen);
    if (rc != CG_OK)
        return rc;
    if ((rc = make_dir(d->path, err, errlen)) != CG_OK)
        return rc;
    if (access(d->path, W_OK) != 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot write cgroup %s: %s", d->path,
                       strerror(errno));
    return CG_OK;
}

enum mem_mechanism
limits_probe(void)
{
    struct cg_dir d;
    bool pids;

    if (v2_parent(&d, &pids, NULL, 0) == CG_OK)
        return MEM_CGROUP_V2;
    if (v1_parent("memory", &d, NULL, 0) == CG_OK)
        return MEM_CGROUP_V1;
    return MEM_RLIMIT_AS;
}

/* ---- a box's cgroups ---------------------------------------------------- */

struct box_cgroup {
    enum mem_mechanism mech; /* how the memory limit is enforced */
    bool v2;                 /* mem is a v2 cgroup (then it also holds pids) */
    bool has_pids;           /* the pids controller is on for this box */
    struct cg_dir mem;       /* memory cgroup (v2: the box's only one); path "" if none */
    struct cg_dir pids;      /* v1 pids cgroup; path "" if none */
    int events[2];           /* the counters' files (enum counter), open from the
                              * first read on (a cell reads both), or -1 */
};

/* The event counters a cell reads before and after it runs. */
enum counter { COUNTER_OOM, COUNTER_PIDS };

/* Box names become directory names: short, plain, no dot first. */
static bool
name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CG_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
            return false;
    return true;
}

#define STALE_AGE 60 /* seconds an empty box cgroup must have existed to be swept */

/*
 * Removes box cgroups left behind by kernels that were killed outright
 * (SIGKILL gives no chance to clean up): empty ones older than a minute.
 * A live box's cgroup holds its init from the moment it starts, and rmdir
 * refuses a cgroup that holds a process, so only leftovers go.
 */
static void
sweep_stale(const struct cg_dir *p)
{
    DIR *dir = opendir(p->path);
    struct dirent *e;
    time_t now = time(NULL);

    while (dir && (e = readdir(dir))) {
        char path[CG_PATH], procs[64];
        struct stat st;
        /* cgroupfs names each entry's type: its many control files need no stat */
        if (e->d_name[0] == '.' || (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
            || join(path, sizeof path, p->path, e->d_name) != CG_OK
            || stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || now - st.st_mtime < STALE_AGE)
            continue;
        if (cg_read(path, "cgroup.procs", procs, sizeof procs) == 0 && procs[0] == '\0')
            rmdir(path);
    }
    if (dir)
        closedir(dir);
}

/*
 * Removes the cgroup at path if it is, or within a second becomes, empty:
 * a box of a kernel that was SIGKILLed and restarted under the same name
 * (jupyter_client's restart_kernel(now=True)) leaves its cgroup behind,
 * its processes dying with their init. True if it went.
 */
static bool
remove_leftover(const char *path)
{
    char procs[64];
    int e = errno; /* the caller reports mkdir's EEXIST if it stays */

    for (int i = 0; i < 100; i++) {
        if (cg_read(path, "cgroup.procs", procs, sizeof procs) == 0 && procs[0] == '\0'
            && rmdir(path) == 0)
            return true;
        usleep(10000);
    }
    errno = e;
    return false;
}

/* Creates the box's directory name below parent p, filling leaf on success
 * only (so a failed box never removes a parent). */
static int
make_leaf(const struct cg_dir *p, const char *name, struct cg_dir *leaf, char *err,
          size_t errlen)
{
    struct cg_dir d = *p;
    if (join(d.path, sizeof d.path, p->path, name) != CG_OK
        || join(d.rel, sizeof d.rel, p->rel, name) != CG_OK)
        return cg_fail(err, errlen, CG_ETOOBIG, "cgroup path too long below %s", p->path);
    if (mkdir(d.path, 0755) != 0 && !(errno == EEXIST && remove_leftover(d.path)
                                       && mkdir(d.path, 0755) == 0)) {
        if (errno == ENOENT) /* the parent went away: the caller may make it again */
            return cg_fail(err, errlen, CG_ENOTFOUND, "cgroup %s vanished", p->path);
        if (errno == EEXIST)
            return cg_fail(err, errlen, CG_ESYS, "cgroup %s already exists (another box "
                           "with the name %s?)", d.path, name);
        return cg_fail(err, errlen, CG_ESYS, "cannot create cgroup %s: %s", d.path,
                       strerror(errno));
    }
    *leaf = d;
    return CG_OK;
}

/*
 * Makes the box's directory in the hierarchy of ctl ("" for v2) into leaf.
 * *avail says whether that hierarchy can be used at all; when it can,
 * failing to make the directory is an error, not a reason to fall back. A
 * parent removed meanwhile (someone's clean-up) is made again, twice at most.
 */
static int
make_box_dir(const char *ctl, const char *name, struct cg_dir *leaf, bool *pids, bool *avail,
             char *err, size_t errlen)
{
    struct cg_dir parent;
    int rc = CG_OK;

    *avail = false;
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = *ctl ? v1_parent(ctl, &parent, err, errlen) : v2_parent(&parent, pids, err, errlen);
        if (rc != CG_OK)
            return *avail ? rc : CG_OK;
        *avail = true;
        rc = make_leaf(&parent, name, leaf, err, errlen);
        if (rc != CG_ENOTFOUND)
            break;
    }
    return rc;
}

/* Writes one limit file, failing with a message that names it. */
static int
set_file(const struct cg_dir *d, const char *file, const char *value, char *err, size_t errlen)
{
    int e = cg_write(d->path, file, value);
    if (e != 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot write %s to %s/%s: %s", value, d->path,
                       file, strerror(-e));
    return CG_OK;
}

static int
setup_v2(struct box_cgroup *cg, const struct box_limits *l, char *err, size_t errlen)
{
    char v[32];
    int rc = CG_OK;

    if (l->memory) {
        snprintf(v, sizeof v, "%" PRIu64, l->memory);
        rc = set_file(&cg->mem, "memory.max", v, err, errlen);
        /* Swap is not a way around the limit. */
        if (rc == CG_OK && exists(cg->mem.path, "memory.swap.max"))
            rc = set_file(&cg->mem, "memory.swap.max", "0", err, errlen);
    }
    if (rc == CG_OK && cg->has_pids && l->pids) {
        snprintf(v, sizeof v, "%" PRIu64, l->pids);
        rc = set_file(&cg->mem, "pids.max", v, err, errlen);
    }
    return rc;
}

static int
setup_v1_memory(struct box_cgroup *cg, const struct box_limits *l, char *err, size_t errlen)
{
    char v[32];
    /* A new v1 cgroup inherits oom_kill_disable from its parent: insist on
     * the OOM killer ending the offender, never on a frozen box. */
    int rc = set_file(&cg->mem, "memory.oom_control", "0", err, errlen);

    if (rc != CG_OK || !l->memory)
        return rc;
    snprintf(v, sizeof v, "%" PRIu64, l->memory);
    rc = set_file(&cg->mem, "memory.limit_in_bytes", v, err, errlen);
    /* memory + swap at the same value: swap is not a way around the limit.
     * Without swap accounting, keep the box's pages out of swap instead. */
    if (rc == CG_OK && exists(cg->mem.path, "memory.memsw.limit_in_bytes"))
        rc = set_file(&cg->mem, "memory.memsw.limit_in_bytes", v, err, errlen);
    else if (rc == CG_OK)
        cg_write(cg->mem.path, "memory.swappiness", "0");
    return rc;
}

/* Removes the box's directories made so far (empty: nothing was attached). */
static void
unmake(struct box_cgroup *cg)
{
    if (cg->pids.path[0])
        rmdir(cg->pids.path);
    if (cg->mem.path[0])
        rmdir(cg->mem.path);
}

struct box_cgroup *
cgroup_create(const struct box_limits *l, const char *name, char *err, size_t errlen)
{
    struct box_cgroup *cg;
    bool avail;
    int rc;

    if (!name_ok(name)) {
        cg_fail(err, errlen, CG_EINVAL, "bad box name \"%.80s\" (1 to %d letters, digits, "
                "'-', '_' or '.', not starting with '.')", name, CG_NAME_MAX);
        return NULL;
    }
    if (!(cg = calloc(1, sizeof *cg))) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    cg->events[COUNTER_OOM] = cg->events[COUNTER_PIDS] = -1;
    rc = make_box_dir("", name, &cg->mem, &cg->has_pids, &avail, err, errlen);
    if (avail) {
        cg->v2 = true;
        if (rc == CG_OK)
            rc = setup_v2(cg, l, err, errlen);
        cg->mech = l->memory ? MEM_CGROUP_V2 : MEM_NONE;
    } else {
        /* v1: each controller on its own; a missing one falls back to rlimits. */
        bool mem;
        rc = make_box_dir("memory", name, &cg->mem, NULL, &mem, err, errlen);
        if (rc == CG_OK && mem)
            rc = setup_v1_memory(cg, l, err, errlen);
        if (rc == CG_OK)
            rc = make_box_dir("pids", name, &cg->pids, NULL, &cg->has_pids, err, errlen);
        if (rc == CG_OK && cg->has_pids && l->pids) {
            char v[32];
            snprintf(v, sizeof v, "%" PRIu64, l->pids);
            rc = set_file(&cg->pids, "pids.max", v, err, errlen);
        }
        cg->mech = !l->memory ? MEM_NONE : mem ? MEM_CGROUP_V1 : MEM_RLIMIT_AS;
    }
    if (rc != CG_OK) {
        unmake(cg);
        free(cg);
        return NULL;
    }
    return cg;
}

enum mem_mechanism
cgroup_mechanism(const struct box_cgroup *cg)
{
    return cg->mech;
}

bool
cgroup_has_pids(const struct box_cgroup *cg)
{
    return cg->has_pids;
}

int
cgroup_attach(struct box_cgroup *cg, pid_t pid, char *err, size_t errlen)
{
    char v[24];
    const struct cg_dir *dirs[2] = { &cg->mem, &cg->pids };

    snprintf(v, sizeof v, "%ld", (long)pid);
    for (size_t i = 0; i < 2; i++) {
        if (!dirs[i]->path[0])
            continue;
        int e = cg_write(dirs[i]->path, "cgroup.procs", v);
        if (e != 0)
            return cg_fail(err, errlen, CG_ESYS, "cannot move process %ld into cgroup %s: %s",
                           (long)pid, dirs[i]->path, strerror(-e));
    }
    return CG_OK;
}

void
cgroup_sweep(const struct box_cgroup *cg)
{
    const struct cg_dir *dirs[2] = { &cg->mem, &cg->pids };

    for (size_t i = 0; i < 2; i++) {
        struct cg_dir parent = *dirs[i];
        char *slash = strrchr(parent.path, '/');
        if (!parent.path[0] || !slash)
            continue;
        *slash = '\0';
        sweep_stale(&parent);
    }
}

/* Reads the counter file dir/file into buf (NUL-terminated, at most len -
 * 1 bytes) through cg->events[which], opened at the first read and kept:
 * two reads a cell, each an open, two reads and a close before. Returns 0
 * or -errno. */
static int
counter_read(struct box_cgroup *cg, enum counter which, const char *dir, const char *file,
             char *buf, size_t len)
{
    char path[CG_PATH];
    ssize_t n;

    if (cg->events[which] < 0) {
        if (join(path, sizeof path, dir, file) != CG_OK)
            return -ENAMETOOLONG;
        if ((cg->events[which] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return -errno;
    }
    do /* a cgroup file gives all of itself to one read from 0 */
        n = pread(cg->events[which], buf, len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

/* The number after "key " at the start of a line of text, or 0. */
static uint64_t
counter_value(const char *text, const char *key)
{
    size_t k = strlen(key);
    for (const char *p = text; (p = strstr(p, key)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[k] == ' ')
            return strtoull(p + k + 1, NULL, 10);
    return 0;
}

uint64_t
cgroup_oom_kills(struct box_cgroup *cg)
{
    char buf[2048];
    if (!cg || !cg->mem.path[0]
        || counter_read(cg, COUNTER_OOM, cg->mem.path,
                        cg->v2 ? "memory.events" : "memory.oom_control", buf, sizeof buf) != 0)
        return 0;
    return counter_value(buf, "oom_kill");
}

uint64_t
cgroup_pids_hits(struct box_cgroup *cg)
{
    char buf[256];
    const struct cg_dir *d = cg && cg->v2 ? &cg->mem : cg ? &cg->pids : NULL;

    if (!d || !cg->has_pids || !d->path[0]
        || counter_read(cg, COUNTER_PIDS, d->path, "pids.events", buf, sizeof buf) != 0)
        return 0;
    return counter_value(buf, "max");
}

/* ---- removal ------------------------------------------------------------ */

/* SIGKILLs pid if it is still a member of d. A pidfd pins the process
 * while /proc says where it is, so a pid reused by a process outside the
 * box is never hit. */
static void
kill_member(pid_t pid, const struct cg_dir *d)
{
    char proc[48], where[CG_PATH];
    snprintf(proc, sizeof proc, "/proc/%ld/cgroup", (long)pid);
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        if (cgroup_of(proc, d->ctl, where, sizeof where) && strcmp(where, d->rel) == 0)
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        close(fd);
        return;
    }
    if (errno != ENOSYS)
        return; /* gone already */
#endif
    if (cgroup_of(proc, d->ctl, where, sizeof where) && strcmp(where, d->rel) == 0)
        kill(pid, SIGKILL);
}

/* One round: SIGKILLs every process listed in d; returns how many there were. */
static size_t
kill_round(const struct cg_dir *d)
{
    char path[CG_PATH];
    long pid;
    size_t n = 0;

    if (join(path, sizeof path, d->path, "cgroup.procs") != CG_OK)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    while (n < KILL_MAX_PER_ROUND && fscanf(f, "%ld", &pid) == 1) {
        n++;
        if (pid > 0)
            kill_member((pid_t)pid, d);
    }
    fclose(f);
    return n;
}

/* Kills until d is empty, then removes it; bounded in rounds and time. */
static void
empty_and_remove(const struct cg_dir *d)
{
    struct timespec nap = { 0, DESTROY_SLEEP_NS };
    int e = 0;

    for (int round = 0; round < DESTROY_ROUNDS; round++) {
        if (kill_round(d) == 0) {
            if (rmdir(d->path) == 0 || errno == ENOENT)
                return;
            e = errno;
            if (e != EBUSY)
                break; /* not a matter of time */
        }
        nanosleep(&nap, NULL);
    }
    log_warn("cannot remove cgroup %s: %s", d->path,
             e ? strerror(e) : "its processes survive SIGKILL");
}

void
cgroup_destroy(struct box_cgroup **cgp)
{
    if (!cgp || !*cgp)
        return;
    struct box_cgroup *cg = *cgp;
    const struct cg_dir *pd = cg->v2 ? &cg->mem : &cg->pids;

    for (size_t i = 0; i < sizeof cg->events / sizeof cg->events[0]; i++)
        if (cg->events[i] >= 0)
            close(cg->events[i]);

    /* No new processes from here on, so the kill rounds converge. */
    if (cg->has_pids && pd->path[0])
        cg_write(pd->path, "pids.max", "0");
    if (cg->v2 && cg->mem.path[0] && exists(cg->mem.path, "cgroup.kill"))
        cg_write(cg->mem.path, "cgroup.kill", "1");
    if (cg->pids.path[0])
        empty_and_remove(&cg->pids);
    if (cg->mem.path[0])
        empty_and_remove(&cg->mem);
    free(cg);
    *cgp = NULL;
}

/* ---- rlimits ------------------------------------------------------------ */

/* Sets soft and hard limit to want, or to the current hard limit if that is
 * lower: we may only tighten, and tighter is what was asked for. */
static int
tighten(int resource, uint64_t want)
{
    struct rlimit r;
    if (getrlimit(resource, &r) != 0)
        return -1;
    rlim_t v = (rlim_t)want, hard = r.rlim_max;
    if (hard != RLIM_INFINITY && v > hard)
        v = hard;
    r.rlim_cur = r.rlim_max = v;
    if (setrlimit(resource, &r) == 0)
        return 0;
    /* The kernel never refuses a lowering; valgrind does, for the hard
     * RLIMIT_NOFILE. There the soft limit is what we can have. */
    if (errno != EPERM)
        return -1;
    r.rlim_max = hard;
    return setrlimit(resource, &r);
}

int
limits_apply_rlimits(const struct box_limits *l, enum mem_mechanism m, bool pids_by_cgroup)
{
    if (l->nofile && tighten(RLIMIT_NOFILE, l->nofile) != 0)
        return -1;
    if (l->fsize && tighten(RLIMIT_FSIZE, l->fsize) != 0)
        return -1;
    if (tighten(RLIMIT_CORE, 0) != 0)
        return -1;
    if (!pids_by_cgroup && l->pids && tighten(RLIMIT_NPROC, l->pids) != 0)
        return -1;
    if (m == MEM_RLIMIT_AS && l->memory && tighten(RLIMIT_AS, l->memory) != 0)
        return -1;
    return 0;
}
