/*
 * seccomp_probe.c - shows what the box's seccomp policy does, from inside.
 *
 * It builds and loads the filter into itself, then makes every refused call
 * with harmless bad arguments, and the ordinary things that must keep
 * working (fork, threads, clone, exec, files, mmap), printing one line per
 * call: `name result`, the result being an errno name (`bpf EPERM`) or
 * `ok`. A line that differs from the policy gets `(want X)`. Exits 0 if
 * every line is as expected, 1 if not. The refused calls are harmless even
 * when not filtered: every one has arguments the kernel rejects.
 *
 * `make test` builds and runs it (the unit step) and fails if any line is
 * not as the policy says.
 */
#include "cgerr.h"
#include "boxseccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <unistd.h>

/* A call's result: 0 (it worked), an errno, or WRONG (it returned, but
 * not what an ordinary call returns). */
#define WRONG (-1)

/* The result of a system call: 0 or its errno. */
#define ERR(call) ((call) < 0 ? errno : 0)

/* Calls newer than the C library's headers (and than REVIEWED_LAST). */
#define NR_LISTMOUNT 458
#define NR_OPEN_TREE_ATTR 467

/* How a raw call enters the kernel. */
enum abi {
    NATIVE, /* syscall() */
    X32,    /* syscall() with bit 30: the filter answers even if the kernel has no x32 */
    I386,   /* int $0x80, in a child (see probe_i386) */
};

/* A system call made with fixed (harmless, mostly invalid) arguments. */
struct raw {
    const char *name; /* what is printed */
    enum abi abi;
    long nr;          /* the call's number in that ABI */
    long a[5];        /* its arguments */
    int want;         /* 0 or the errno the policy promises */
};

#define X32_BIT 0x40000000L

/*
 * The refused calls. Every one has arguments the kernel would reject (bad
 * fd, NULL, reboot with no magic, iopl level 4), so the probe is harmless
 * even when the filter is missing.
 */
static const struct raw raws[] = {
    { "bpf", NATIVE, SYS_bpf, { -1 }, EPERM },
    { "keyctl", NATIVE, SYS_keyctl, { -1 }, EPERM },
    { "add_key", NATIVE, SYS_add_key, { 0 }, EPERM },
    { "request_key", NATIVE, SYS_request_key, { 0 }, EPERM },
    { "kexec_load", NATIVE, SYS_kexec_load, { 0, 0, 0, -1 }, EPERM },
    { "kexec_file_load", NATIVE, SYS_kexec_file_load, { -1, -1, 0, 0, -1 }, EPERM },
    { "init_module", NATIVE, SYS_init_module, { 0 }, EPERM },
    { "finit_module", NATIVE, SYS_finit_module, { -1 }, EPERM },
    { "delete_module", NATIVE, SYS_delete_module, { 0 }, EPERM },
    { "mount", NATIVE, SYS_mount, { 0 }, EPERM },
    { "umount2", NATIVE, SYS_umount2, { 0 }, EPERM },
    { "pivot_root", NATIVE, SYS_pivot_root, { 0 }, EPERM },
    { "fsopen", NATIVE, SYS_fsopen, { 0 }, EPERM },
    { "fsconfig", NATIVE, SYS_fsconfig, { -1 }, EPERM },
    { "fsmount", NATIVE, SYS_fsmount, { -1 }, EPERM },
    { "fspick", NATIVE, SYS_fspick, { -1 }, EPERM },
    { "move_mount", NATIVE, SYS_move_mount, { -1, 0, -1 }, EPERM },
    { "open_tree", NATIVE, SYS_open_tree, { -1 }, EPERM },
    { "mount_setattr", NATIVE, SYS_mount_setattr, { -1 }, EPERM },
    { "swapon", NATIVE, SYS_swapon, { 0 }, EPERM },
    { "swapoff", NATIVE, SYS_swapoff, { 0 }, EPERM },
    { "reboot", NATIVE, SYS_reboot, { 0 }, EPERM },
    { "perf_event_open", NATIVE, SYS_perf_event_open, { 0, 0, -1, -1 }, EPERM },
    { "userfaultfd", NATIVE, SYS_userfaultfd, { -1 }, EPERM },
    { "open_by_handle_at", NATIVE, SYS_open_by_handle_at, { -1 }, EPERM },
    { "setns", NATIVE, SYS_setns, { -1 }, EPERM },
    { "acct", NATIVE, SYS_acct, { 1 }, EPERM }, /* a bad pointer, not NULL ("off") */
    { "settimeofday", NATIVE, SYS_settimeofday, { 0 }, EPERM },
    { "clock_settime", NATIVE, SYS_clock_settime, { -1 }, EPERM },
    { "syslog", NATIVE, SYS_syslog, { -1 }, EPERM },
    { "quotactl", NATIVE, SYS_quotactl, { 0 }, EPERM },
    { "quotactl_fd", NATIVE, SYS_quotactl_fd, { -1 }, EPERM },
    { "lookup_dcookie", NATIVE, SYS_lookup_dcookie, { 0 }, EPERM },
    { "iopl", NATIVE, SYS_iopl, { 4 }, EPERM },
    { "ioperm", NATIVE, SYS_ioperm, { 65536, 1 }, EPERM },
    { "unshare(NEWUSER)", NATIVE, SYS_unshare, { CLONE_NEWUSER }, EPERM },
    { "unshare(NEWUSER|NEWNS)", NATIVE, SYS_unshare, { CLONE_NEWUSER | CLONE_NEWNS }, EPERM },
    { "clone3", NATIVE, SYS_clone3, { 0 }, ENOSYS },
    { "io_uring_setup", NATIVE, SYS_io_uring_setup, { 0 }, ENOSYS },
    { "io_uring_enter", NATIVE, SYS_io_uring_enter, { -1 }, ENOSYS },
    { "io_uring_register", NATIVE, SYS_io_uring_register, { -1 }, ENOSYS },
    { "personality(READ_IMPLIES_EXEC)", NATIVE, SYS_personality, { READ_IMPLIES_EXEC }, EPERM },
    { "personality(MMAP_PAGE_ZERO)", NATIVE, SYS_personality, { MMAP_PAGE_ZERO }, EPERM },
    /* Bit 31 set makes it no query: the kernel would store every flag. */
    { "personality(1<<31|READ_IMPLIES_EXEC)", NATIVE, SYS_personality,
      { 0x80000000L | READ_IMPLIES_EXEC }, EPERM },
    { "ioctl(TIOCSTI)", NATIVE, SYS_ioctl, { -1, TIOCSTI }, EPERM },
    /* The command is an unsigned int: upper bits must not hide it. */
    { "ioctl(1<<32|TIOCSTI)", NATIVE, SYS_ioctl, { -1, (1L << 32) | TIOCSTI }, EPERM },
    { "ioctl(TIOCLINUX)", NATIVE, SYS_ioctl, { -1, TIOCLINUX }, EPERM },
    { "listmount(unreviewed)", NATIVE, NR_LISTMOUNT, { 0 }, ENOSYS },
    { "open_tree_attr(unreviewed)", NATIVE, NR_OPEN_TREE_ATTR, { -1 }, ENOSYS },
    /* Allowed, so the kernel answers. */
    { "ioctl(TCGETS)", NATIVE, SYS_ioctl, { -1, TCGETS }, EBADF },
    { "personality(query)", NATIVE, SYS_personality, { 0xffffffffL }, 0 },
    { "unshare(0)", NATIVE, SYS_unshare, { 0 }, 0 },
#if defined(__x86_64__)
    { "x32:bpf", X32, X32_BIT | SYS_bpf, { -1 }, EPERM },
    { "x32:mount", X32, X32_BIT | SYS_mount, { 0 }, EPERM },
    { "x32:unshare(NEWUSER)", X32, X32_BIT | SYS_unshare, { CLONE_NEWUSER }, EPERM },
    { "x32:io_uring_setup", X32, X32_BIT | SYS_io_uring_setup, { 0 }, ENOSYS },
    { "x32:clone3", X32, X32_BIT | SYS_clone3, { 0 }, ENOSYS },
    { "x32:personality(READ_IMPLIES_EXEC)", X32, X32_BIT | SYS_personality,
      { READ_IMPLIES_EXEC }, EPERM },
    { "x32:open_tree_attr(unreviewed)", X32, X32_BIT | NR_OPEN_TREE_ATTR, { -1 }, ENOSYS },
    /* i386 numbers from <asm/unistd_32.h>. getpid first: it tells whether
     * the kernel has the ABI at all. */
    { "i386:getpid", I386, 20, { 0 }, 0 },
    { "i386:bpf", I386, 357, { -1 }, EPERM },
    { "i386:mount", I386, 21, { 0 }, EPERM },
    { "i386:umount", I386, 22, { 0 }, EPERM },
    { "i386:keyctl", I386, 288, { -1 }, EPERM },
    { "i386:stime", I386, 25, { 0 }, EPERM },
    { "i386:clock_settime64", I386, 404, { -1 }, EPERM },
    { "i386:unshare(NEWUSER)", I386, 310, { CLONE_NEWUSER }, EPERM },
    { "i386:io_uring_setup", I386, 425, { 0 }, ENOSYS },
    { "i386:clone3", I386, 435, { 0 }, ENOSYS },
    { "i386:personality(READ_IMPLIES_EXEC)", I386, 136, { READ_IMPLIES_EXEC }, EPERM },
    { "i386:open_tree_attr(unreviewed)", I386, NR_OPEN_TREE_ATTR, { -1 }, ENOSYS },
#endif
};
#define N_RAWS (sizeof raws / sizeof raws[0])

#if defined(__x86_64__)
/* An i386 system call from this 64-bit process: 0 or its errno. */
static int
int80(long nr, const long *a)
{
    long ret;

    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a[0]), "c"(a[1]), "d"(a[2]), "S"(a[3]), "D"(a[4])
                     : "memory", "r8", "r9", "r10", "r11");
    return (int)ret < 0 && (int)ret > -4096 ? -(int)ret : 0;
}
#endif

/* Makes one raw call: 0 or its errno. */
static int
raw_call(const struct raw *r)
{
#if defined(__x86_64__)
    if (r->abi == I386)
        return int80(r->nr, r->a);
#endif
    return ERR(syscall(r->nr, r->a[0], r->a[1], r->a[2], r->a[3], r->a[4]));
}

/* ---- calls that need more than one system call ---------------------------- */

/* clone with flags: 0 if a child was made (and reaped), else the errno. */
static int
clone_with(long flags)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0L, 0L, 0L, 0L);
    int status;

    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(0);
    if (waitpid((pid_t)pid, &status, 0) != pid || !WIFEXITED(status))
        return WRONG;
    return 0;
}

static int
clone_newuser(void)
{
    return clone_with(CLONE_NEWUSER);
}

static int
clone_plain(void)
{
    return clone_with(0);
}

static int
fork_wait(void)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(42);
    if (waitpid(pid, &status, 0) != pid)
        return errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 42 ? 0 : WRONG;
}

static void *
thread_main(void *arg)
{
    *(int *)arg = 1;
    return NULL;
}

/* glibc tries clone3 first: this passes only if its fallback to clone works. */
static int
thread(void)
{
    pthread_t t;
    int ran = 0;
    int rc = pthread_create(&t, NULL, thread_main, &ran);

    if (rc != 0)
        return rc;
    if (pthread_join(t, NULL) != 0)
        return WRONG;
    return ran ? 0 : WRONG;
}

static int
exec_true(void)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return errno;
    if (pid == 0) {
        char *const argv[] = { (char *)"true", NULL };
        execv("/bin/true", argv);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : WRONG;
}

static int
open_file(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static int
map_memory(void)
{
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return errno;
    p[0] = 'x';
    p[4095] = 'y';
    munmap(p, 4096);
    return 0;
}

/* The filter really is on: the kernel says so. */
static int
seccomp_mode_2(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return errno;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return WRONG;
    buf[n] = '\0';
    return strstr(buf, "\nSeccomp:\t2\n") ? 0 : WRONG;
}

static int
no_new_privs(void)
{
    return prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L) == 1 ? 0 : WRONG;
}

/* What gdb does to the program it debugs; then back. */
static int
personality_no_aslr(void)
{
    long old = syscall(SYS_personality, 0xffffffffL);

    if (old < 0)
        return errno;
    if (syscall(SYS_personality, old | ADDR_NO_RANDOMIZE) < 0)
        return errno;
    return ERR(syscall(SYS_personality, old));
}

static int
adjtimex_read(void)
{
    struct timex tx = { .modes = 0 };

    return ERR(syscall(SYS_adjtimex, &tx));
}

/* A check made of several calls. */
struct probe {
    const char *name; /* what is printed */
    int (*call)(void);
    int want;         /* 0 or the errno the policy promises */
};

static const struct probe probes[] = {
    { "clone(NEWUSER)", clone_newuser, EPERM },
    { "fork", fork_wait, 0 },
    { "pthread_create", thread, 0 },
    { "clone", clone_plain, 0 },
    { "exec", exec_true, 0 },
    { "open", open_file, 0 },
    { "mmap", map_memory, 0 },
    { "seccomp_mode_2", seccomp_mode_2, 0 },
    { "no_new_privs", no_new_privs, 0 },
    { "personality(ADDR_NO_RANDOMIZE)", personality_no_aslr, 0 },
    { "adjtimex(read)", adjtimex_read, 0 },
};

/* ---- running and reporting -------------------------------------------------- */

/* Prints one line; returns whether it is as expected. */
static bool
report(const char *name, int got, int want)
{
    const char *g = got == 0 ? "ok" : got == WRONG ? "WRONG" : strerrorname_np(got);
    const char *w = want == 0 ? "ok" : strerrorname_np(want);

    if (got == want) {
        printf("%s %s\n", name, g ? g : "?");
        return true;
    }
    printf("%s %s (want %s)\n", name, g ? g : "?", w ? w : "?");
    return false;
}

/*
 * The i386 calls run in a child: a kernel without ia32 emulation kills it
 * with SIGSEGV at the first int $0x80, and then they are skipped.
 */
static bool
probe_i386(void)
{
    int results[N_RAWS];
    size_t n = 0, got = 0;
    int p[2], status;

    for (size_t i = 0; i < N_RAWS; i++)
        n += raws[i].abi == I386;
    if (n == 0)
        return true;
    if (pipe(p) < 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(p[0]);
        for (size_t i = 0; i < N_RAWS; i++) {
            int r = raws[i].abi == I386 ? raw_call(&raws[i]) : 0;
            if (raws[i].abi == I386 && write(p[1], &r, sizeof r) != (ssize_t)sizeof r)
                _exit(1);
        }
        _exit(0);
    }
    close(p[1]);
    while (got < n * sizeof(int)) {
        ssize_t k = read(p[0], (char *)results + got, n * sizeof(int) - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(p[0]);
    if (waitpid(pid, &status, 0) != pid)
        return false;
    if (got == 0 && WIFSIGNALED(status) && WTERMSIG(status) != SIGSYS) {
        printf("i386 skipped (no ia32 emulation: %s)\n", strsignal(WTERMSIG(status)));
        return true;
    }
    if (got != n * sizeof(int) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("i386 child failed (wait status 0x%x)\n", (unsigned)status);
        return false;
    }
    bool ok = true;
    for (size_t i = 0, k = 0; i < N_RAWS; i++)
        if (raws[i].abi == I386)
            ok &= report(raws[i].name, results[k++], raws[i].want);
    return ok;
}

/* A SIGSYS would mean the policy kills instead of refusing: say so. */
static void
on_sigsys(int sig)
{
    static const char msg[] = "SIGSYS: the filter killed a call instead of refusing it\n";

    (void)sig;
    (void)!write(STDOUT_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

int
main(int argc, char **argv)
{
    struct sock_fprog prog;
    char err[256];
    bool ok = true;

    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: seccomp_probe\n");
        return 2;
    }
    signal(SIGSYS, on_sigsys);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (box_seccomp_build(&prog, err, sizeof err) != CG_OK) {
        fprintf(stderr, "seccomp_probe: %s\n", err);
        return 1;
    }
    if (box_seccomp_load(&prog) < 0) {
        fprintf(stderr, "seccomp_probe: loading the filter: %s\n", strerror(errno));
        return 1;
    }
    free(prog.filter);
    for (size_t i = 0; i < N_RAWS; i++)
        if (raws[i].abi != I386)
            ok &= report(raws[i].name, raw_call(&raws[i]), raws[i].want);
    ok &= probe_i386();
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        ok &= report(probes[i].name, probes[i].call(), probes[i].want);
    return ok ? 0 : 1;
}
