/*
 * procs.c - the processes a cell started in the box (see procs.h).
 */
#include "kernel/procs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PROCS_MAX 65536   /* entries read from the box's /proc, at most */
#define ANCESTRY_MAX 4096 /* parents followed from one process, at most */

/* One process as its /proc entry shows it. */
struct proc_ent {
    pid_t pid, ppid;
    uint64_t start; /* clock ticks since boot */
    char state;     /* 'Z': ended, not yet collected by its parent */
    long threads;   /* what a pids limit counts */
};

uint64_t
procs_now(void)
{
    struct timespec ts;
    long hz = sysconf(_SC_CLK_TCK);

    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)hz + (uint64_t)ts.tv_nsec / (1000000000u / (uint64_t)hz);
}

/* Reads the ppid and start time from the stat file of the /proc/PID
 * directory dir. 0, or -1 (gone, or not parseable). */
static int
read_stat(int dir, struct proc_ent *e)
{
    char buf[1024];
    int fd = openat(dir, "stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;

    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* After the command's ")": state (field 3), ppid (4), ..., starttime (22). */
    char *p = strrchr(buf, ')');
    unsigned long long start;
    int ppid;
    if (!p || sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %ld %*d %llu", &e->state, &ppid, &e->threads, &start) != 4)
        return -1;
    e->ppid = ppid;
    e->start = start;
    return 0;
}

/* The box's /proc, opened below its root; NULL on failure. */
static DIR *
open_proc(int root_fd)
{
    int fd = openat(root_fd, "proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

    if (!d && fd >= 0)
        close(fd);
    return d;
}

/* A pid directory's name as a pid, or 0. */
static pid_t
entry_pid(const struct dirent *de)
{
    char *end;
    long v = strtol(de->d_name, &end, 10);

    return de->d_name[0] >= '1' && de->d_name[0] <= '9' && !*end && v > 0 ? (pid_t)v : 0;
}

static int
by_pid(const void *a, const void *b)
{
    const struct proc_ent *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Every process in the box (up to PROCS_MAX), sorted by pid, into *out
 * (the caller frees it). -1 when /proc cannot be read. */
static long
scan(int root_fd, struct proc_ent **out)
{
    DIR *d = open_proc(root_fd);
    struct proc_ent *v = NULL;
    struct dirent *de;
    long n = 0, cap = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL && n < PROCS_MAX) {
        pid_t pid = entry_pid(de);
        if (pid && n == cap) { /* grows by doubling: a box holds a few, or its limit */
            struct proc_ent *w = realloc(v, (size_t)(cap ? cap * 2 : 64) * sizeof *v);
            if (!w)
                break;
            v = w;
            cap = cap ? cap * 2 : 64;
        }
        int pd = pid ? openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (pd < 0)
            continue;
        v[n].pid = pid;
        if (read_stat(pd, &v[n]) == 0)
            n++;
        close(pd);
    }
    closedir(d);
    if (n)
        qsort(v, (size_t)n, sizeof *v, by_pid);
    *out = v;
    return n;
}

long
procs_count(int root_fd)
{
    struct proc_ent *v = NULL;
    long n = scan(root_fd, &v), tasks = 0;

    for (long i = 0; i < n; i++)
        tasks += v[i].threads > 0 ? v[i].threads : 1;
    free(v);
    return n < 0 ? -1 : tasks;
}

static bool
spared(pid_t pid, const pid_t *spare, size_t n_spare)
{
    for (size_t i = 0; i < n_spare; i++)
        if (spare[i] == pid)
            return true;
    return pid <= 1;
}

/* True if e is the cell's: started since then, and its ancestry reaches
 * the driver or the box's init without passing an older process. */
static bool
is_cells(const struct proc_ent *v, long n, const struct proc_ent *e, pid_t driver,
         uint64_t since, const pid_t *spare, size_t n_spare)
{
    if (e->start < since || spared(e->pid, spare, n_spare))
        return false;
    pid_t up = e->ppid;
    for (int depth = 0; depth < ANCESTRY_MAX; depth++) {
        if (up == driver || up <= 1)
            return true;
        struct proc_ent key = { .pid = up };
        const struct proc_ent *a = bsearch(&key, v, (size_t)n, sizeof *v, by_pid);
        if (!a)
            return true; /* its parent just ended: it will be the init's */
        if (a->start < since || spared(a->pid, spare, n_spare))
            return false;
        up = a->ppid;
    }
    return false;
}

/* SIGKILLs e if its /proc entry still shows the same process. */
static bool
kill_ent(DIR *proc, const struct proc_ent *e)
{
    char name[24];
    struct proc_ent now = { .pid = e->pid };

    snprintf(name, sizeof name, "%ld", (long)e->pid);
    int pd = openat(dirfd(proc), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pd < 0)
        return false;
    /* The directory fd is a pidfd: it names this process, not its pid. */
    bool ok = read_stat(pd, &now) == 0 && now.start == e->start
              && syscall(SYS_pidfd_send_signal, pd, SIGKILL, NULL, 0) == 0;
    close(pd);
    return ok;
}

long
procs_end_cell(int root_fd, pid_t driver, uint64_t since, const pid_t *spare, size_t n_spare)
{
    struct proc_ent *v = NULL;
    long n = scan(root_fd, &v), killed = 0;
    DIR *proc = n >= 0 ? open_proc(root_fd) : NULL;

    for (long i = 0; proc && i < n; i++)
        if (is_cells(v, n, &v[i], driver, since, spare, n_spare) && kill_ent(proc, &v[i]))
            killed++;
    if (proc)
        closedir(proc);
    free(v);
    return proc ? killed : -1;
}

long
procs_zombies(int root_fd, pid_t parent)
{
    struct proc_ent *v = NULL;
    long n = scan(root_fd, &v), z = 0;

    for (long i = 0; i < n; i++)
        z += v[i].ppid == parent && v[i].state == 'Z';
    free(v);
    return n < 0 ? -1 : z;
}
