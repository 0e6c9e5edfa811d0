/*
 * test_limits.c - unit tests of the box's resource limits: the table,
 * parsing of sizes and counts from flags and CELLGATE_* variables, rlimits
 * in a child, and, as root with cgroup controllers, real cgroups: the OOM
 * killer ends a process over its memory limit, forks stop at the pids
 * limit, and cgroup_destroy() leaves no directory and no process behind.
 * Those are skipped, saying why, where the machine cannot have them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "sandbox/boxlimits.h"

#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KB ((uint64_t)1 << 10)
#define MB ((uint64_t)1 << 20)
#define GB ((uint64_t)1 << 30)
#define PATHLEN 512

static const char *const env_vars[] = {
    "CELLGATE_MEMORY", "CELLGATE_PIDS", "CELLGATE_NOFILE",
    "CELLGATE_FSIZE",  "CELLGATE_TMP",  "CELLGATE_TIMEOUT", "CELLGATE_DATA_SIZE",
};

static void
clear_env(void)
{
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
}

/* The field called name, read straight from the struct (not through the
 * table, so the table's offsets are checked). */
static uint64_t
field(const struct box_limits *l, const char *name)
{
    if (strcmp(name, "memory") == 0)
        return l->memory;
    if (strcmp(name, "pids") == 0)
        return l->pids;
    if (strcmp(name, "nofile") == 0)
        return l->nofile;
    if (strcmp(name, "fsize") == 0)
        return l->fsize;
    if (strcmp(name, "tmp") == 0)
        return l->tmp;
    if (strcmp(name, "timeout") == 0)
        return l->timeout;
    if (strcmp(name, "data-size") == 0)
        return l->data_size;
    fail_msg("no limit field %s", name);
    return 0;
}

/* Sets name to value on the defaults, which must succeed; returns the field. */
static uint64_t
set_ok(const char *name, const char *value)
{
    struct box_limits l;
    char err[256] = "";

    limits_defaults(&l);
    int rc = limits_set(&l, name, value, err, sizeof err);
    if (rc != CG_OK)
        fail_msg("%s \"%s\" refused: %s", name, value, err);
    return field(&l, name);
}

/* Sets name to value, which must fail with code, an error naming the limit
 * and the value, and the limits untouched. */
static void
set_bad(const char *name, const char *value, int code)
{
    struct box_limits l, before;
    char err[256] = "";

    limits_defaults(&l);
    before = l;
    int rc = limits_set(&l, name, value, err, sizeof err);
    if (rc != code)
        fail_msg("%s \"%s\": got %d (%s), wanted %d", name, value, rc, err, code);
    if (!strstr(err, name) || !strstr(err, value))
        fail_msg("%s \"%s\": the error does not name both: %s", name, value, err);
    assert_memory_equal(&l, &before, sizeof l);
}

/* ---- the table and parsing --------------------------------------------- */

static void
test_defaults(void **state)
{
    (void)state;
    struct box_limits l;
    memset(&l, 0xff, sizeof l);
    limits_defaults(&l);
    assert_true(l.memory == 2 * GB);
    assert_true(l.pids == 512);
    assert_true(l.nofile == 1024);
    assert_true(l.fsize == 1 * GB);
    assert_true(l.tmp == 256 * MB);
    assert_true(l.timeout == 0);
    assert_true(l.data_size == 10 * GB);
}

static void
test_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool is_size;
    } want[] = {
        { "memory", true }, { "pids", false }, { "nofile", false },
        { "fsize", true },  { "tmp", true },   { "timeout", false },
        { "data-size", true },
    };
    size_t n = 0;
    const struct limit_info *t = limits_table(&n);

    assert_non_null(t);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].name, want[i].name);
        assert_int_equal(t[i].is_size, want[i].is_size);
        assert_non_null(t[i].help);
        assert_true(strlen(t[i].help) > 10);
        assert_true(t[i].offset + sizeof(uint64_t) <= sizeof(struct box_limits));
        assert_int_equal(t[i].offset % sizeof(uint64_t), 0);

        /* The offset is this limit's field, and setting it touches no other. */
        struct box_limits l, d;
        char err[256] = "";
        limits_defaults(&l);
        d = l;
        uint64_t v = t[i].is_size ? 16 * MB : 1000;
        if (limits_set(&l, t[i].name, t[i].is_size ? "16M" : "1000", err, sizeof err) != CG_OK)
            fail_msg("%s: %s", t[i].name, err);
        uint64_t via_offset;
        memcpy(&via_offset, (const char *)&l + t[i].offset, sizeof via_offset);
        assert_true(via_offset == v);
        assert_true(field(&l, t[i].name) == v);
        for (size_t j = 0; j < n; j++)
            if (j != i)
                assert_true(field(&l, t[j].name) == field(&d, t[j].name));
    }
}

static void
test_sizes(void **state)
{
    (void)state;
    assert_true(set_ok("memory", "0") == 0);
    assert_true(set_ok("memory", "1M") == 1 * MB);
    assert_true(set_ok("memory", "512M") == 512 * MB);
    assert_true(set_ok("memory", "512m") == 512 * MB);
    assert_true(set_ok("memory", "2G") == 2 * GB);
    assert_true(set_ok("memory", "2g") == 2 * GB);
    assert_true(set_ok("memory", "1T") == 1024 * GB);
    assert_true(set_ok("memory", "1048576") == 1 * MB);
    assert_true(set_ok("memory", "1024K") == 1 * MB);
    assert_true(set_ok("memory", "4096k") == 4 * MB);
    assert_true(set_ok("memory", "0008M") == 8 * MB);
    assert_true(set_ok("memory", "8388607T") == (uint64_t)8388607 * 1024 * GB);
    assert_true(set_ok("fsize", "0") == 0);
    assert_true(set_ok("fsize", "1") == 1);
    assert_true(set_ok("fsize", "1K") == 1 * KB);
    assert_true(set_ok("fsize", "10G") == 10 * GB);
    assert_true(set_ok("tmp", "256M") == 256 * MB);
    assert_true(set_ok("tmp", "1G") == 1 * GB);
}

static void
test_size_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "-1",  "+1",   " 1M",  "1M ", "1.5G", "12X",  "0x10", "M",
        "1MB", "1KiB", "1 M",  "1e9", "1,5G", "1MM",  "G1",   "nan",
        "18446744073709551616",      /* 2^64 */
        "99999999999999999999999",   /* far past 64 bits */
        "16777216T",                 /* 2^64 through the suffix */
        "8388608T",                  /* 2^63: past what the kernel takes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_bad("memory", bad[i], CG_EINVAL);
        set_bad("fsize", bad[i], CG_EINVAL);
        set_bad("tmp", bad[i], CG_EINVAL);
    }

    /* An empty value names the limit (there is no value to quote). */
    struct box_limits l;
    char err[256] = "";
    limits_defaults(&l);
    assert_int_equal(limits_set(&l, "memory", "", err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "memory"));

    /* Bytes where megabytes were meant: refused, with a hint. */
    set_bad("memory", "512", CG_EINVAL);
    assert_int_equal(limits_set(&l, "memory", "512", err, sizeof err), CG_EINVAL);
    assert_non_null(strstr(err, "512M"));
    set_bad("memory", "1023K", CG_EINVAL);

    /* /tmp cannot be unlimited: tmpfs reads size=0 as no limit at all. */
    set_bad("tmp", "0", CG_EINVAL);
    set_bad("tmp", "4K", CG_EINVAL);

    /* No buffer for the message is fine. */
    assert_int_equal(limits_set(&l, "memory", "lots", NULL, 0), CG_EINVAL);
    assert_int_equal(limits_set(&l, "memory", "lots", err, 1), CG_EINVAL);
    assert_string_equal(err, "");
}

static void
test_counts(void **state)
{
    (void)state;
    assert_true(set_ok("pids", "0") == 0);
    assert_true(set_ok("pids", "1") == 1);
    assert_true(set_ok("pids", "64") == 64);
    assert_true(set_ok("pids", "4194304") == 4194304);
    assert_true(set_ok("nofile", "16") == 16);
    assert_true(set_ok("nofile", "65536") == 65536);
    assert_true(set_ok("timeout", "0") == 0);
    assert_true(set_ok("timeout", "30") == 30);
    assert_true(set_ok("timeout", "2147483") == 2147483);

    set_bad("pids", "64K", CG_EINVAL); /* counts take no suffix */
    set_bad("pids", "1M", CG_EINVAL);
    set_bad("pids", "-5", CG_EINVAL);
    set_bad("pids", "4194305", CG_EINVAL);
    set_bad("pids", "many", CG_EINVAL);
    set_bad("nofile", "0", CG_EINVAL); /* no process can run without files */
    set_bad("nofile", "8", CG_EINVAL);
    set_bad("nofile", "2147483648", CG_EINVAL);
    set_bad("timeout", "30s", CG_EINVAL);
    set_bad("timeout", "1M", CG_EINVAL);
    set_bad("timeout", "2147484", CG_EINVAL);
    set_bad("timeout", "-1", CG_EINVAL);
    assert_true(set_ok("data-size", "0") == 0); /* no bound */
    assert_true(set_ok("data-size", "8M") == 8 * MB);
    set_bad("data-size", "1M", CG_EINVAL);      /* smaller than an ext4 with a journal */
    set_bad("data_size", "8M", CG_ENOTFOUND);   /* the flag's name has a dash */
}

static void
test_unknown_limit(void **state)
{
    (void)state;
    set_bad("cpu", "1", CG_ENOTFOUND);
    set_bad("MEMORY", "1G", CG_ENOTFOUND);
    set_bad("mem", "1G", CG_ENOTFOUND);

    struct box_limits l;
    char err[256] = "";
    limits_defaults(&l);
    assert_int_equal(limits_set(&l, "", "1", err, sizeof err), CG_ENOTFOUND);
    assert_non_null(strstr(err, "memory")); /* lists the limits there are */
}

static void
test_env(void **state)
{
    (void)state;
    struct box_limits l, d;
    char err[256] = "";

    clear_env();
    limits_defaults(&d);
    l = d;
    assert_int_equal(limits_from_env(&l, err, sizeof err), CG_OK);
    assert_memory_equal(&l, &d, sizeof l);

    setenv("CELLGATE_MEMORY", "64M", 1);
    setenv("CELLGATE_TIMEOUT", "30", 1);
    setenv("CELLGATE_NOFILE", "2048", 1);
    setenv("CELLGATE_TMP", "1G", 1);
    setenv("CELLGATE_DATA_SIZE", "64M", 1); /* the dash of data-size is an underscore */
    setenv("cellgate_pids", "7", 1); /* names are upper case */
    int rc = limits_from_env(&l, err, sizeof err);
    if (rc != CG_OK)
        fail_msg("limits_from_env: %s", err);
    assert_true(l.memory == 64 * MB);
    assert_true(l.timeout == 30);
    assert_true(l.nofile == 2048);
    assert_true(l.tmp == 1 * GB);
    assert_true(l.data_size == 64 * MB);
    assert_true(l.pids == d.pids);
    assert_true(l.fsize == d.fsize);
    unsetenv("cellgate_pids");

    /* Every variable, a flag after it wins. */
    setenv("CELLGATE_PIDS", "100", 1);
    setenv("CELLGATE_FSIZE", "0", 1);
    limits_defaults(&l);
    assert_int_equal(limits_from_env(&l, err, sizeof err), CG_OK);
    assert_true(l.pids == 100);
    assert_true(l.fsize == 0);
    assert_int_equal(limits_set(&l, "pids", "200", err, sizeof err), CG_OK);
    assert_true(l.pids == 200);
    clear_env();
}

static void
test_env_errors(void **state)
{
    (void)state;
    static const struct {
        const char *var, *value, *limit;
    } bad[] = {
        { "CELLGATE_PIDS", "lots", "pids" },
        { "CELLGATE_MEMORY", "2GB", "memory" },
        { "CELLGATE_NOFILE", "0", "nofile" },
        { "CELLGATE_FSIZE", "-1", "fsize" },
        { "CELLGATE_TMP", "0", "tmp" },
        { "CELLGATE_TIMEOUT", "5m", "timeout" },
        { "CELLGATE_TIMEOUT", "", "timeout" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct box_limits l, d;
        char err[256] = "";

        clear_env();
        setenv("CELLGATE_MEMORY", "64M", 1); /* good, but not applied alone */
        setenv(bad[i].var, bad[i].value, 1);
        limits_defaults(&d);
        l = d;
        int rc = limits_from_env(&l, err, sizeof err);
        if (rc != CG_EINVAL)
            fail_msg("%s=\"%s\": got %d (%s)", bad[i].var, bad[i].value, rc, err);
        if (!strstr(err, bad[i].var) || !strstr(err, bad[i].limit)
            || !strstr(err, bad[i].value))
            fail_msg("%s=\"%s\": the error does not say which: %s", bad[i].var, bad[i].value,
                     err);
        assert_memory_equal(&l, &d, sizeof l); /* all or nothing */
    }
    clear_env();
}

static void
test_mechanism_names(void **state)
{
    (void)state;
    assert_string_equal(mem_mechanism_name(MEM_CGROUP_V2), "cgroup v2");
    assert_string_equal(mem_mechanism_name(MEM_CGROUP_V1), "cgroup v1 (memory controller)");
    assert_string_equal(mem_mechanism_name(MEM_RLIMIT_AS), "RLIMIT_AS per process");
    assert_string_equal(mem_mechanism_name(MEM_NONE), "none");

    enum mem_mechanism m = limits_probe();
    assert_true(m == MEM_CGROUP_V2 || m == MEM_CGROUP_V1 || m == MEM_RLIMIT_AS);
    print_message("[ INFO     ] memory here is limited by %s\n", mem_mechanism_name(m));
    assert_int_equal(limits_probe(), m); /* stable */
}

/* ---- children, bounded ------------------------------------------------- */

/* Waits for pid at most seconds; on time-out kills and reaps it and returns
 * false. */
static bool
wait_bounded(pid_t pid, int seconds, int *status)
{
    struct timespec nap = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < seconds * 100; i++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        nanosleep(&nap, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return false;
}

/* Reads exactly len bytes within seconds; false on time-out or EOF. */
static bool
read_bounded(int fd, void *buf, size_t len, int seconds)
{
    size_t got = 0;
    struct timespec start, now;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (got < len) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left_ms = seconds * 1000L - ((now.tv_sec - start.tv_sec) * 1000L
                                          + (now.tv_nsec - start.tv_nsec) / 1000000L);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (left_ms <= 0 || poll(&p, 1, (int)left_ms) <= 0)
            return false;
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* Runs fn in a child and returns its wait status (the child is killed
 * after 20 s). */
static int
run_child(int (*fn)(void *), void *arg)
{
    int status = 0;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(arg));
    assert_true(wait_bounded(pid, 20, &status));
    return status;
}

/* Fails with the child's own account of which check it failed. */
static void
expect_exit_0(int status)
{
    if (WIFSIGNALED(status))
        fail_msg("the child died of signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("the child's check %d failed", WEXITSTATUS(status));
}

/* Under valgrind, which keeps the hard RLIMIT_NOFILE to itself. */
static bool
on_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

static bool
rlimit_is(int resource, rlim_t v)
{
    struct rlimit r;
    if (getrlimit(resource, &r) != 0 || r.rlim_cur != v)
        return false;
    return r.rlim_max == v || (resource == RLIMIT_NOFILE && on_valgrind());
}

/* ---- rlimits ------------------------------------------------------------ */

/* Without cgroups: every limit is an rlimit, and they bite. */
static int
child_rlimit_fallback(void *arg)
{
    int fd = *(const int *)arg;
    struct box_limits l;
    static char block[64 * 1024];

    limits_defaults(&l);
    l.memory = 256 * MB;
    l.nofile = 64;
    l.fsize = 1 * MB;
    l.pids = 4000;
    if (limits_apply_rlimits(&l, MEM_RLIMIT_AS, false) != 0)
        return 10;
    if (!rlimit_is(RLIMIT_NOFILE, 64))
        return 11;
    if (!rlimit_is(RLIMIT_FSIZE, 1 * MB))
        return 12;
    if (!rlimit_is(RLIMIT_CORE, 0))
        return 13;
    if (!rlimit_is(RLIMIT_NPROC, 4000))
        return 14;
    if (!rlimit_is(RLIMIT_AS, 256 * MB))
        return 15;
    void *p = mmap(NULL, 512 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
        return 16;
    /* Writing past fsize ends the process with SIGXFSZ. */
    signal(SIGXFSZ, SIG_DFL);
    for (int i = 0; i < 32; i++)
        if (write(fd, block, sizeof block) < 0)
            return 17;
    return 18;
}

static void
test_rlimits_fallback(void **state)
{
    (void)state;
    char path[] = "/tmp/test_limits.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int status = run_child(child_rlimit_fallback, &fd);
    close(fd);
    if (WIFEXITED(status))
        fail_msg("the child's check %d failed", WEXITSTATUS(status));
    assert_int_equal(WTERMSIG(status), SIGXFSZ);
}

/* With cgroups for memory and pids: neither RLIMIT_AS nor RLIMIT_NPROC is
 * touched; fsize 0 leaves RLIMIT_FSIZE as it was. */
static int
child_rlimit_cgroup(void *arg)
{
    (void)arg;
    struct box_limits l;
    struct rlimit as, nproc, fsize;

    limits_defaults(&l);
    l.fsize = 0;
    if (getrlimit(RLIMIT_AS, &as) || getrlimit(RLIMIT_NPROC, &nproc)
        || getrlimit(RLIMIT_FSIZE, &fsize))
        return 10;
    if (limits_apply_rlimits(&l, MEM_CGROUP_V1, true) != 0)
        return 11;
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) || r.rlim_cur != as.rlim_cur || r.rlim_max != as.rlim_max)
        return 12;
    if (getrlimit(RLIMIT_NPROC, &r) || r.rlim_cur != nproc.rlim_cur
        || r.rlim_max != nproc.rlim_max)
        return 13;
    if (getrlimit(RLIMIT_FSIZE, &r) || r.rlim_cur != fsize.rlim_cur
        || r.rlim_max != fsize.rlim_max)
        return 14;
    if (!rlimit_is(RLIMIT_NOFILE, 1024))
        return 15;
    if (!rlimit_is(RLIMIT_CORE, 0))
        return 16;
    return 0;
}

static void
test_rlimits_with_cgroup(void **state)
{
    (void)state;
    expect_exit_0(run_child(child_rlimit_cgroup, NULL));
}

/* Limits only tighten: asking for more than the hard limit gets the hard
 * limit, not an error and not more. */
static int
child_rlimit_tighten_only(void *arg)
{
    (void)arg;
    struct box_limits l;
    struct rlimit nofile, fsize = { 4096, 4096 };

    if (getrlimit(RLIMIT_NOFILE, &nofile))
        return 9;
    nofile.rlim_cur = 100;
    if (!on_valgrind())
        nofile.rlim_max = 100;
    if (setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_FSIZE, &fsize))
        return 10;
    limits_defaults(&l); /* nofile 1024, fsize 1G */
    if (limits_apply_rlimits(&l, MEM_NONE, false) != 0)
        return 11;
    /* (Under valgrind the hard limit stayed high: 1024 fits below it.) */
    if (!rlimit_is(RLIMIT_NOFILE, on_valgrind() ? 1024 : 100))
        return 12;
    if (!rlimit_is(RLIMIT_FSIZE, 4096))
        return 13;
    return 0;
}

static void
test_rlimits_tighten_only(void **state)
{
    (void)state;
    expect_exit_0(run_child(child_rlimit_tighten_only, NULL));
}

/* ---- real cgroups ------------------------------------------------------- */

/* "cellgate" parents the tests saw; those the tests made are removed at
 * the end (if empty), those that were there before are left alone. */
static char seen_parents[4][PATHLEN];
static size_t n_seen_parents;
static char old_parents[6][PATHLEN];
static size_t n_old_parents;

struct cg_test {
    struct box_cgroup *cg; /* the box under test; destroyed in teardown */
    pid_t child;           /* the attached child; killed in teardown */
    char name[64];         /* unique box name */
};

static int
cg_setup(void **state)
{
    static int seq;
    struct cg_test *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    snprintf(t->name, sizeof t->name, "test-limits-%ld-%d", (long)getpid(), ++seq);
    *state = t;
    return 0;
}

/* Reaps children orphaned to us (we are their subreaper) for up to 2 s. */
static void
reap_orphans(void)
{
    struct timespec nap = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0)
            return; /* ECHILD: none left */
        if (r == 0)
            nanosleep(&nap, NULL);
    }
}

static int
cg_teardown(void **state)
{
    struct cg_test *t = *state;
    if (t->child > 0) {
        kill(t->child, SIGKILL);
        waitpid(t->child, NULL, 0);
    }
    cgroup_destroy(&t->cg);
    reap_orphans();
    free(t);
    return 0;
}

static bool mount_of(const char *ctl, char *out, size_t len);

/* Notes the "cellgate" parents that exist before any test runs: below our
 * own cgroup or at the top, in each hierarchy limits.c may use. */
static int
note_old_parents(void **state)
{
    static const char *const ctls[] = { "memory", "pids", "" };
    char line[1024], mnt[PATHLEN], own[PATHLEN];
    struct stat st;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        if (!mount_of(ctls[i], mnt, sizeof mnt))
            continue;
        snprintf(own, sizeof own, "/");
        FILE *f = fopen("/proc/self/cgroup", "r");
        while (f && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2)
                continue;
            *c2 = '\0';
            bool match = *ctls[i] ? strstr(c1 + 1, ctls[i]) != NULL : c1[1] == '\0';
            if (match)
                snprintf(own, sizeof own, "%s", c2 + 1);
        }
        if (f)
            fclose(f);
        for (int top = 0; top < 2 && n_old_parents < 6; top++) {
            char *p = old_parents[n_old_parents];
            int k = snprintf(p, PATHLEN, "%s%s/cellgate", mnt,
                             top || strcmp(own, "/") == 0 ? "" : own);
            if (k > 0 && k < PATHLEN && stat(p, &st) == 0)
                n_old_parents++;
        }
    }
    return 0;
}

static int
remove_parents(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_seen_parents; i++) {
        bool old = false;
        for (size_t j = 0; j < n_old_parents; j++)
            old = old || strcmp(seen_parents[i], old_parents[j]) == 0;
        if (!old)
            rmdir(seen_parents[i]); /* fails, harmlessly, if a box is using it */
    }
    return 0;
}

/* Skips the test, saying why, unless cgroups can limit memory here. */
static enum mem_mechanism
need_cgroups(void)
{
    if (geteuid() != 0) {
        print_message("[  SKIP    ] real cgroups need root (euid %ld)\n", (long)geteuid());
        skip();
    }
    enum mem_mechanism m = limits_probe();
    if (m != MEM_CGROUP_V1 && m != MEM_CGROUP_V2) {
        print_message("[  SKIP    ] no usable cgroup memory controller here (memory is "
                      "limited by %s)\n", mem_mechanism_name(m));
        skip();
    }
    return m;
}

/* A box with 64M of memory and 16 processes. */
static void
make_box(struct cg_test *t)
{
    struct box_limits l;
    char err[256] = "";

    limits_defaults(&l);
    l.memory = 64 * MB;
    l.pids = 16;
    t->cg = cgroup_create(&l, t->name, err, sizeof err);
    if (!t->cg)
        fail_msg("cgroup_create: %s", err);
}

static void
attach(struct cg_test *t, pid_t pid)
{
    char err[256] = "";
    if (cgroup_attach(t->cg, pid, err, sizeof err) != CG_OK)
        fail_msg("cgroup_attach: %s", err);
}

/* The mount point of the hierarchy of controller ctl ("" for cgroup2). */
static bool
mount_of(const char *ctl, char *out, size_t len)
{
    struct mntent *m;
    bool found = false;
    FILE *f = setmntent("/proc/self/mounts", "r");
    if (!f)
        return false;
    while (!found && (m = getmntent(f)) != NULL) {
        if (*ctl ? strcmp(m->mnt_type, "cgroup") == 0 && hasmntopt(m, ctl)
                 : strcmp(m->mnt_type, "cgroup2") == 0) {
            snprintf(out, len, "%s", m->mnt_dir);
            found = true;
        }
    }
    endmntent(f);
    return found;
}

/* The box directories pid is in, found without limits.c: the lines of
 * /proc/<pid>/cgroup ending in /cellgate/<name>, each under the mount of its
 * hierarchy. Returns how many (at most 2). */
static size_t
box_dirs(pid_t pid, const char *name, char dirs[2][PATHLEN])
{
    char path[64], line[1024], suffix[128];
    size_t n = 0;

    snprintf(path, sizeof path, "/proc/%ld/cgroup", (long)pid);
    snprintf(suffix, sizeof suffix, "/cellgate/%s", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (n < 2 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        const char *cg = c2 + 1;
        size_t cl = strlen(cg), sl = strlen(suffix);
        if (cl < sl || strcmp(cg + cl - sl, suffix) != 0)
            continue;
        *c2 = '\0';
        c1[1 + strcspn(c1 + 1, ",")] = '\0'; /* first controller, or "" on v2 */
        char mnt[PATHLEN];
        if (!mount_of(c1 + 1, mnt, sizeof mnt))
            continue;
        snprintf(dirs[n], PATHLEN, "%s%s", mnt, cg);

        char parent[PATHLEN];
        snprintf(parent, sizeof parent, "%s", dirs[n]);
        *strrchr(parent, '/') = '\0';
        bool known = false;
        for (size_t i = 0; i < n_seen_parents; i++)
            known = known || strcmp(seen_parents[i], parent) == 0;
        if (!known && n_seen_parents < 4)
            memcpy(seen_parents[n_seen_parents++], parent, sizeof parent);
        n++;
    }
    fclose(f);
    return n;
}

/* The number in dir/file, or -1 if it cannot be read. "max" reads as -2. */
static long long
read_number(const char *dir, const char *file)
{
    char path[PATHLEN + 64], buf[64] = "";
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    bool got = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!got)
        return -1;
    return strncmp(buf, "max", 3) == 0 ? -2 : strtoll(buf, NULL, 10);
}

/* The one of n dirs that has file (e.g. "pids.max"); fails if none does. */
static const char *
dir_with(char dirs[2][PATHLEN], size_t n, const char *file)
{
    char path[PATHLEN + 64];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dirs[i], file);
        if (access(path, F_OK) == 0)
            return dirs[i];
    }
    fail_msg("no box cgroup has %s", file);
    return NULL;
}

/* The limit files of the box's memory cgroup say what was asked. */
static void
expect_memory_files(const char *dir, enum mem_mechanism m, long long bytes)
{
    char path[PATHLEN + 64];
    if (m == MEM_CGROUP_V2) {
        assert_int_equal(read_number(dir, "memory.max"), bytes);
        snprintf(path, sizeof path, "%s/memory.swap.max", dir);
        if (access(path, F_OK) == 0)
            assert_int_equal(read_number(dir, "memory.swap.max"), 0);
        return;
    }
    assert_int_equal(read_number(dir, "memory.limit_in_bytes"), bytes);
    snprintf(path, sizeof path, "%s/memory.memsw.limit_in_bytes", dir);
    if (access(path, F_OK) == 0)
        assert_int_equal(read_number(dir, "memory.memsw.limit_in_bytes"), bytes);
    /* The OOM killer is on (a frozen box would hang, not die). */
    char buf[256] = "";
    snprintf(path, sizeof path, "%s/memory.oom_control", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strncmp(buf, "oom_kill_disable 0\n", 19) != 0)
        fail_msg("%s: %s", path, buf);
}

/* Child: waits for "go" on fd, then allocates and touches bytes. Exits 0
 * only if nothing stopped it. */
static int
hog(int fd, uint64_t bytes)
{
    char c;
    if (read(fd, &c, 1) != 1)
        return 3;
    volatile char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 2;
    for (uint64_t off = 0; off < bytes; off += 4096)
        p[off] = 1;
    return 0;
}

static void
test_cgroup_oom_kill(void **state)
{
    struct cg_test *t = *state;
    enum mem_mechanism m = need_cgroups();
    int go[2], status = 0;
    char dirs[2][PATHLEN];

    make_box(t);
    assert_int_equal(cgroup_mechanism(t->cg), m);
    uint64_t before = cgroup_oom_kills(t->cg);
    assert_int_equal(pipe(go), 0);
    t->child = fork();
    assert_true(t->child >= 0);
    if (t->child == 0) {
        close(go[1]);
        _exit(hog(go[0], 200 * MB));
    }
    close(go[0]);
    attach(t, t->child);
    size_t n = box_dirs(t->child, t->name, dirs);
    assert_true(n >= 1);
    expect_memory_files(dir_with(dirs, n, m == MEM_CGROUP_V2 ? "memory.max"
                                                             : "memory.limit_in_bytes"),
                        m, 64 * MB);
    assert_int_equal(write(go[1], "g", 1), 1);
    close(go[1]);

    bool ended = wait_bounded(t->child, 60, &status);
    t->child = 0;
    assert_true(ended);
    if (WIFEXITED(status))
        fail_msg("200 MB in a 64 MB cgroup: the child was not killed (exit %d)",
                 WEXITSTATUS(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    uint64_t after = cgroup_oom_kills(t->cg);
    if (after <= before)
        fail_msg("oom kills did not go up: %llu then %llu", (unsigned long long)before,
                 (unsigned long long)after);
}

/* What a forking child reports. */
struct fork_report {
    int forked;     /* children it made */
    int err;        /* errno of the fork that failed, 0 if none did */
    pid_t pids[64]; /* their pids */
};

/* Child: waits for "go", forks up to max sleepers or until refused, reports
 * on rep, then sleeps too (everything here ends within a minute anyway). */
static int
fork_sleepers(int go, int rep, int max)
{
    struct fork_report r = { 0, 0, { 0 } };
    char c;

    if (read(go, &c, 1) != 1)
        return 3;
    for (int i = 0; i < max && i < 64; i++) {
        pid_t p = fork();
        if (p == 0) {
            sleep(60);
            _exit(0);
        }
        if (p < 0) {
            r.err = errno;
            break;
        }
        r.pids[r.forked++] = p;
    }
    if (write(rep, &r, sizeof r) != (ssize_t)sizeof r)
        return 4;
    sleep(60);
    return 0;
}

/* Starts an attached forking child; fills r with its report. */
static void
start_forker(struct cg_test *t, int max, struct fork_report *r)
{
    int go[2], rep[2];

    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(rep), 0);
    t->child = fork();
    assert_true(t->child >= 0);
    if (t->child == 0) {
        close(go[1]);
        close(rep[0]);
        _exit(fork_sleepers(go[0], rep[1], max));
    }
    close(go[0]);
    close(rep[1]);
    attach(t, t->child);
    assert_int_equal(write(go[1], "g", 1), 1);
    close(go[1]);
    bool got = read_bounded(rep[0], r, sizeof *r, 20);
    close(rep[0]);
    assert_true(got);
}

static void
test_cgroup_pids_limit(void **state)
{
    struct cg_test *t = *state;
    struct fork_report r;

    need_cgroups();
    make_box(t);
    if (!cgroup_has_pids(t->cg)) {
        print_message("[  SKIP    ] no pids controller: processes are limited by "
                      "RLIMIT_NPROC\n");
        skip();
    }
    start_forker(t, 64, &r);
    char dirs[2][PATHLEN];
    size_t n = box_dirs(t->child, t->name, dirs);
    assert_true(n >= 1);
    assert_int_equal(read_number(dir_with(dirs, n, "pids.max"), "pids.max"), 16);
    if (r.err != EAGAIN)
        fail_msg("forked %d of 64 in a 16-process cgroup; last fork error %d, wanted EAGAIN",
                 r.forked, r.err);
    /* 16 processes: the child and up to 15 more (a few may still be exiting). */
    if (r.forked < 12 || r.forked > 15)
        fail_msg("the pids limit stopped forks after %d, wanted 12 to 15", r.forked);
}

static void
test_cgroup_destroy(void **state)
{
    struct cg_test *t = *state;
    struct fork_report r;
    char dirs[2][PATHLEN], gdirs[2][PATHLEN];
    struct stat st;
    int status = 0;

    need_cgroups();
    make_box(t);
    start_forker(t, 5, &r);
    assert_int_equal(r.forked, 5);

    size_t n = box_dirs(t->child, t->name, dirs);
    size_t want = cgroup_mechanism(t->cg) == MEM_CGROUP_V2 || !cgroup_has_pids(t->cg) ? 1 : 2;
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(stat(dirs[i], &st), 0);
    for (int i = 0; i < r.forked; i++)
        assert_int_equal(box_dirs(r.pids[i], t->name, gdirs), n); /* children follow */

    cgroup_destroy(&t->cg);
    assert_null(t->cg);
    cgroup_destroy(&t->cg); /* idempotent */

    for (size_t i = 0; i < n; i++) {
        errno = 0;
        if (stat(dirs[i], &st) == 0 || errno != ENOENT)
            fail_msg("%s is still there", dirs[i]);
        *strrchr(dirs[i], '/') = '\0';
        if (stat(dirs[i], &st) != 0)
            fail_msg("the parent %s went away", dirs[i]);
    }

    /* The child and all its children were killed. */
    bool ended = wait_bounded(t->child, 10, &status);
    t->child = 0;
    assert_true(ended);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    int reaped = 0;
    struct timespec nap = { 0, 10 * 1000 * 1000 };
    for (int round = 0; round < 500 && reaped < r.forked; round++) {
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p < 0)
            break;
        if (p == 0) {
            nanosleep(&nap, NULL);
            continue;
        }
        for (int i = 0; i < r.forked; i++) {
            if (r.pids[i] == p) {
                assert_true(WIFSIGNALED(status));
                assert_int_equal(WTERMSIG(status), SIGKILL);
                reaped++;
            }
        }
    }
    assert_int_equal(reaped, r.forked);
    for (int i = 0; i < r.forked; i++)
        assert_true(kill(r.pids[i], 0) == -1 && errno == ESRCH);
}

/* cgroup_sweep() removes an empty box cgroup older than a minute beside
 * the box's own, and leaves a young one and the box's own alone. */
static void
test_cgroup_sweep(void **state)
{
    struct cg_test *t = *state;
    char dirs[2][PATHLEN], stale[PATHLEN + 80], young[PATHLEN + 80];
    struct timespec old[2] = { { time(NULL) - 120, 0 }, { time(NULL) - 120, 0 } };
    struct stat st;

    need_cgroups();
    make_box(t);
    t->child = fork();
    if (t->child == 0) {
        pause();
        _exit(0);
    }
    attach(t, t->child);
    size_t n = box_dirs(t->child, t->name, dirs);
    assert_true(n >= 1);
    *strrchr(dirs[0], '/') = '\0'; /* the box cgroups' parent */
    snprintf(stale, sizeof stale, "%s/%s-stale", dirs[0], t->name);
    snprintf(young, sizeof young, "%s/%s-young", dirs[0], t->name);
    assert_int_equal(mkdir(stale, 0755), 0);
    assert_int_equal(mkdir(young, 0755), 0);
    if (utimensat(AT_FDCWD, stale, old, 0) != 0) {
        rmdir(stale);
        rmdir(young);
        print_message("[  SKIP    ] cannot age a cgroup directory here: %s\n", strerror(errno));
        skip();
    }
    cgroup_sweep(t->cg);
    bool stale_gone = stat(stale, &st) != 0 && errno == ENOENT;
    bool young_kept = stat(young, &st) == 0;
    rmdir(stale);
    rmdir(young);
    assert_true(stale_gone);
    assert_true(young_kept);
    assert_int_equal(box_dirs(t->child, t->name, dirs), n); /* the box's own stays */
}

/* With memory 0 the box still gets its cgroups (to be killed as one), and
 * says memory is not limited. */
static void
test_cgroup_no_memory_limit(void **state)
{
    struct cg_test *t = *state;
    struct box_limits l;
    char err[256] = "";

    need_cgroups();
    limits_defaults(&l);
    l.memory = 0;
    t->cg = cgroup_create(&l, t->name, err, sizeof err);
    if (!t->cg)
        fail_msg("cgroup_create: %s", err);
    assert_int_equal(cgroup_mechanism(t->cg), MEM_NONE);
    assert_true(cgroup_oom_kills(t->cg) == 0);
}

/* Names become directories: nothing that could leave the parent. */
static void
test_cgroup_bad_names(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", ".", "..", "../escape", "a/b", "/abs", ".hidden", "sp ace", "new\nline",
        "a-name-much-longer-than-sixty-four-characters-to-be-refused-outright",
    };
    struct box_limits l;

    limits_defaults(&l);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        struct box_cgroup *cg = cgroup_create(&l, bad[i], err, sizeof err);
        if (cg) {
            cgroup_destroy(&cg);
            fail_msg("box name \"%s\" was accepted", bad[i]);
        }
        assert_non_null(strstr(err, "name"));
    }
}

int
main(void)
{
    /* Children of killed test children come back to us, to be counted. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_size_errors),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_unknown_limit),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_mechanism_names),
        cmocka_unit_test(test_rlimits_fallback),
        cmocka_unit_test(test_rlimits_with_cgroup),
        cmocka_unit_test(test_rlimits_tighten_only),
        cmocka_unit_test(test_cgroup_bad_names),
        cmocka_unit_test_setup_teardown(test_cgroup_oom_kill, cg_setup, cg_teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_pids_limit, cg_setup, cg_teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_destroy, cg_setup, cg_teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_no_memory_limit, cg_setup, cg_teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_sweep, cg_setup, cg_teardown),
    };
    return cmocka_run_group_tests_name("limits", tests, note_old_parents, remove_parents);
}
