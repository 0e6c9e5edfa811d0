/*
 * seccomp_calls.c - the calls the seccomp tests make and what the box's
 * policy promises for each (seccomp_calls.h describes the tables), the
 * functions behind the checks that take several system calls (fork,
 * threads, clone, exec, files, memory), and the means to make a call.
 *
 * The probe loads the filter into itself, the unit tests into the children
 * of call_in_child().
 */
#include "tests/seccomp_calls.h"
#include "sandbox/boxseccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <unistd.h>

/* The result of a system call: 0 or its errno. */
#define ERR(call) ((call) < 0 ? errno : 0)

/* Calls newer than the C library's headers, and than the last one the
 * policy reviewed (futex_requeue, 456, Linux 6.7). */
#define NR_STATMOUNT 457      /* Linux 6.8 */
#define NR_LISTMOUNT 458      /* Linux 6.8 */
#define NR_OPEN_TREE_ATTR 467 /* more of the new mount API */

/* ---- calls that take more than one system call ---------------------------- */

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
        return CALL_WRONG;
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
    return WIFEXITED(status) && WEXITSTATUS(status) == 42 ? 0 : CALL_WRONG;
}

/* bpf's errno in a grandchild: the filter is inherited across fork. A
 * failed fork is CALL_WRONG, so that its errno cannot pass for bpf's. */
static int
fork_then_bpf(void)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return CALL_WRONG;
    if (pid == 0)
        _exit(ERR(syscall(SYS_bpf, -1L, 0L, 0L)));
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return CALL_WRONG;
    return WEXITSTATUS(status);
}

static void *
thread_mark(void *arg)
{
    *(int *)arg = 0;
    return NULL;
}

static void *
thread_bpf(void *arg)
{
    *(int *)arg = ERR(syscall(SYS_bpf, -1L, 0L, 0L));
    return NULL;
}

/* Runs fn in a new thread, which stores its result in *result. Returns
 * pthread_create's error or 0. glibc tries clone3 first, so this works only
 * if its fallback to clone does. */
static int
in_thread(void *(*fn)(void *), int *result)
{
    pthread_t t;
    int rc;

    *result = CALL_WRONG;
    rc = pthread_create(&t, NULL, fn, result);
    if (rc != 0)
        return rc;
    return pthread_join(t, NULL);
}

static int
thread_runs(void)
{
    int result;
    int rc = in_thread(thread_mark, &result);

    return rc ? rc : result;
}

/* A failed pthread_create is CALL_WRONG: its errno must not pass for bpf's. */
static int
thread_then_bpf(void)
{
    int result;

    return in_thread(thread_bpf, &result) ? CALL_WRONG : result;
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
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : CALL_WRONG;
}

/* A device opened for writing, a file opened and read. */
static int
open_read(void)
{
    char buf[64];
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return errno;
    close(fd);
    fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 ? 0 : CALL_WRONG;
}

static int
map_memory(void)
{
    char *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return errno;
    memset(p, 'x', 1 << 16);
    return ERR(munmap(p, 1 << 16));
}

/* The kernel agrees the filter is on. */
static int
seccomp_mode_2(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return CALL_WRONG;
    buf[n] = '\0';
    return strstr(buf, "\nSeccomp:\t2\n") ? 0 : CALL_WRONG;
}

static int
no_new_privs(void)
{
    return prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L) == 1 ? 0 : CALL_WRONG;
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
    if (syscall(SYS_personality, 0xffffffffL) != (old | ADDR_NO_RANDOMIZE))
        return CALL_WRONG;
    return ERR(syscall(SYS_personality, old));
}

static int
adjtimex_read(void)
{
    struct timex tx = { .modes = 0 };

    return ERR(syscall(SYS_adjtimex, &tx));
}

/* ---- the tables ------------------------------------------------------------- */

/* Raw native calls, then x32, then i386, then functions: the probe prints
 * them in this order (the i386 ones from a child). */
const struct call seccomp_calls[] = {
    SC(CALLS_KERNEL, "bpf", SYS_bpf, EPERM, -1),
    SC(CALLS_KERNEL, "keyctl", SYS_keyctl, EPERM, -1),
    SC(CALLS_KERNEL, "add_key", SYS_add_key, EPERM, 0),
    SC(CALLS_KERNEL, "request_key", SYS_request_key, EPERM, 0),
    SC(CALLS_KERNEL, "kexec_load", SYS_kexec_load, EPERM, 0, 0, 0, -1),
    SC(CALLS_KERNEL, "kexec_file_load", SYS_kexec_file_load, EPERM, -1, -1, 0, 0, -1),
    SC(CALLS_KERNEL, "init_module", SYS_init_module, EPERM, 0),
    SC(CALLS_KERNEL, "finit_module", SYS_finit_module, EPERM, -1),
    SC(CALLS_KERNEL, "delete_module", SYS_delete_module, EPERM, 0),
    SC(CALLS_MOUNTS, "mount", SYS_mount, EPERM, 0),
    SC(CALLS_MOUNTS, "umount2", SYS_umount2, EPERM, 0),
    SC(CALLS_MOUNTS, "pivot_root", SYS_pivot_root, EPERM, 0),
    SC(CALLS_MOUNTS, "fsopen", SYS_fsopen, EPERM, 0),
    SC(CALLS_MOUNTS, "fsconfig", SYS_fsconfig, EPERM, -1),
    SC(CALLS_MOUNTS, "fsmount", SYS_fsmount, EPERM, -1),
    SC(CALLS_MOUNTS, "fspick", SYS_fspick, EPERM, -1),
    SC(CALLS_MOUNTS, "move_mount", SYS_move_mount, EPERM, -1, 0, -1),
    SC(CALLS_MOUNTS, "open_tree", SYS_open_tree, EPERM, -1),
    SC(CALLS_MOUNTS, "mount_setattr", SYS_mount_setattr, EPERM, -1),
    SC(CALLS_HOST, "swapon", SYS_swapon, EPERM, 0),
    SC(CALLS_HOST, "swapoff", SYS_swapoff, EPERM, 0),
    SC(CALLS_HOST, "reboot", SYS_reboot, EPERM, 0), /* no magic: EINVAL if it got through */
    SC(CALLS_KERNEL, "perf_event_open", SYS_perf_event_open, EPERM, 0, 0, -1, -1),
    SC(CALLS_KERNEL, "userfaultfd", SYS_userfaultfd, EPERM, -1),
    SC(CALLS_KERNEL, "open_by_handle_at", SYS_open_by_handle_at, EPERM, -1),
    SC(CALLS_USERNS, "setns", SYS_setns, EPERM, -1),
    SC(CALLS_HOST, "acct", SYS_acct, EPERM, 1), /* a bad pointer, not NULL ("off") */
    SC(CALLS_HOST, "settimeofday", SYS_settimeofday, EPERM, 0),
    SC(CALLS_HOST, "clock_settime", SYS_clock_settime, EPERM, -1),
    SC(CALLS_KERNEL, "syslog", SYS_syslog, EPERM, -1),
    SC(CALLS_HOST, "quotactl", SYS_quotactl, EPERM, 0),
    SC(CALLS_HOST, "quotactl_fd", SYS_quotactl_fd, EPERM, -1),
    SC(CALLS_KERNEL, "lookup_dcookie", SYS_lookup_dcookie, EPERM, 0),
    SC(CALLS_KERNEL, "iopl", SYS_iopl, EPERM, 4),
    SC(CALLS_KERNEL, "ioperm", SYS_ioperm, EPERM, 65536, 1),
    SC(CALLS_USERNS, "unshare(NEWUSER)", SYS_unshare, EPERM, CLONE_NEWUSER),
    SC(CALLS_USERNS, "unshare(NEWUSER|NEWNS)", SYS_unshare, EPERM, CLONE_NEWUSER | CLONE_NEWNS),
    /* No flags to check: ENOSYS, so glibc falls back to clone. */
    SC(CALLS_USERNS, "clone3", SYS_clone3, ENOSYS, 0),
    SC(CALLS_IO_URING, "io_uring_setup", SYS_io_uring_setup, ENOSYS, 0),
    SC(CALLS_IO_URING, "io_uring_enter", SYS_io_uring_enter, ENOSYS, -1),
    SC(CALLS_IO_URING, "io_uring_register", SYS_io_uring_register, ENOSYS, -1),
    SC(CALLS_PERSONALITY, "personality(READ_IMPLIES_EXEC)", SYS_personality, EPERM,
       READ_IMPLIES_EXEC),
    SC(CALLS_PERSONALITY, "personality(MMAP_PAGE_ZERO)", SYS_personality, EPERM, MMAP_PAGE_ZERO),
    /* Bit 31 set makes it no query: the kernel would store every flag. */
    SC(CALLS_PERSONALITY, "personality(1<<31|READ_IMPLIES_EXEC)", SYS_personality, EPERM,
       0x80000000L | READ_IMPLIES_EXEC),
    SC(CALLS_IOCTL, "ioctl(TIOCSTI)", SYS_ioctl, EPERM, -1, TIOCSTI),
    /* The command is an unsigned int: upper bits must not hide it. */
    SC(CALLS_IOCTL, "ioctl(1<<32|TIOCSTI)", SYS_ioctl, EPERM, -1, (1L << 32) | TIOCSTI),
    SC(CALLS_IOCTL, "ioctl(TIOCLINUX)", SYS_ioctl, EPERM, -1, TIOCLINUX),
    SC(CALLS_UNREVIEWED, "listmount(unreviewed)", NR_LISTMOUNT, ENOSYS, 0),
    SC(CALLS_UNREVIEWED, "open_tree_attr(unreviewed)", NR_OPEN_TREE_ATTR, ENOSYS, -1),
    /* Allowed, so the kernel answers. */
    SC(CALLS_IOCTL, "ioctl(TCGETS)", SYS_ioctl, EBADF, -1, TCGETS),
    SC(CALLS_PERSONALITY, "personality(query)", SYS_personality, 0, 0xffffffffL),
    SC(CALLS_ORDINARY, "unshare(0)", SYS_unshare, 0, 0),
#if defined(__x86_64__)
    /* The filter answers before the kernel looks for x32 support. */
    SC_X32("x32:bpf", SYS_bpf, EPERM, -1),
    SC_X32("x32:mount", SYS_mount, EPERM, 0),
    SC_X32("x32:unshare(NEWUSER)", SYS_unshare, EPERM, CLONE_NEWUSER),
    SC_X32("x32:io_uring_setup", SYS_io_uring_setup, ENOSYS, 0),
    SC_X32("x32:clone3", SYS_clone3, ENOSYS, 0),
    SC_X32("x32:personality(READ_IMPLIES_EXEC)", SYS_personality, EPERM, READ_IMPLIES_EXEC),
    SC_X32("x32:open_tree_attr(unreviewed)", NR_OPEN_TREE_ATTR, ENOSYS, -1),
    /* i386 numbers from <asm/unistd_32.h>. getpid first: it tells whether
     * the kernel has the ABI at all. */
    SC_I386("i386:getpid", 20, 0, 0),
    SC_I386("i386:bpf", 357, EPERM, -1),
    SC_I386("i386:mount", 21, EPERM, 0),
    SC_I386("i386:umount", 22, EPERM, 0),
    SC_I386("i386:keyctl", 288, EPERM, -1),
    SC_I386("i386:stime", 25, EPERM, 0),
    SC_I386("i386:clock_settime64", 404, EPERM, -1),
    SC_I386("i386:unshare(NEWUSER)", 310, EPERM, CLONE_NEWUSER),
    SC_I386("i386:io_uring_setup", 425, ENOSYS, 0),
    SC_I386("i386:clone3", 435, ENOSYS, 0),
    SC_I386("i386:personality(READ_IMPLIES_EXEC)", 136, EPERM, READ_IMPLIES_EXEC),
    SC_I386("i386:open_tree_attr(unreviewed)", NR_OPEN_TREE_ATTR, ENOSYS, -1),
#endif
    FN(CALLS_USERNS, "clone(NEWUSER)", clone_newuser, EPERM),
    FN(CALLS_ORDINARY, "fork", fork_wait, 0),
    FN(CALLS_ORDINARY, "pthread_create", thread_runs, 0),
    FN(CALLS_ORDINARY, "clone", clone_plain, 0),
    FN(CALLS_ORDINARY, "exec", exec_true, 0),
    FN(CALLS_ORDINARY, "open", open_read, 0),
    FN(CALLS_ORDINARY, "mmap", map_memory, 0),
    FN(CALLS_ORDINARY, "seccomp_mode_2", seccomp_mode_2, 0),
    FN(CALLS_ORDINARY, "no_new_privs", no_new_privs, 0),
    FN(CALLS_PERSONALITY, "personality(ADDR_NO_RANDOMIZE)", personality_no_aslr, 0),
    FN(CALLS_ORDINARY, "adjtimex(read)", adjtimex_read, 0),
};
const size_t seccomp_calls_n = sizeof seccomp_calls / sizeof seccomp_calls[0];

const struct call seccomp_calls_more[] = {
    SC(CALLS_USERNS, "unshare(NEWUSER|NEWNS|NEWNET)", SYS_unshare, EPERM,
       CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET),
    SC(CALLS_USERNS, "unshare(NEWUSER, junk in the upper half)", SYS_unshare, EPERM,
       (1L << 40) | CLONE_NEWUSER),
    SC(CALLS_PERSONALITY, "personality(PER_LINUX32|READ_IMPLIES_EXEC)", SYS_personality, EPERM,
       PER_LINUX32 | READ_IMPLIES_EXEC),
    SC(CALLS_PERSONALITY, "personality(0xfffffffe)", SYS_personality, EPERM, 0xfffffffeL),
    SC(CALLS_UNREVIEWED, "statmount(unreviewed)", NR_STATMOUNT, ENOSYS, 0),
    SC(CALLS_ORDINARY, "getpid", SYS_getpid, 0, 0),
#if defined(__x86_64__)
    SC_X32("x32:keyctl", SYS_keyctl, EPERM, -1),
    SC_X32("x32:clone(NEWUSER|FS)", SYS_clone, EPERM, CLONE_NEWUSER | CLONE_FS),
    /* With CLONE_FS the kernel would refuse it too, with EINVAL: no child
     * is made even if the filter fails. */
    SC_I386("i386:clone(NEWUSER|FS)", 120, EPERM, CLONE_NEWUSER | CLONE_FS),
#endif
    FN(CALLS_INHERITED, "bpf in a forked child", fork_then_bpf, EPERM),
    FN(CALLS_INHERITED, "bpf in a thread", thread_then_bpf, EPERM),
};
const size_t seccomp_calls_more_n = sizeof seccomp_calls_more / sizeof seccomp_calls_more[0];

/* ---- making calls --------------------------------------------------------- */

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

int
call_make(const struct call *c)
{
    if (c->fn)
        return c->fn();
#if defined(__x86_64__)
    if (c->abi == CALL_I386)
        return int80(c->nr, c->a);
#endif
    return ERR(syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]));
}

int
call_in_child(const struct call *calls, size_t n, const struct sock_fprog *filter, int *got,
              size_t *n_got)
{
    int p[2], status;
    size_t bytes = 0;
    pid_t pid;

    if (pipe(p) < 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        /* cmocka and the probe catch these; in the child they must kill it,
         * or a cmocka child would carry on running the tests. */
        static const int sigs[] = { SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGSYS };
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        close(p[0]);
        if (filter && box_seccomp_load(filter) < 0)
            _exit(3);
        for (size_t i = 0; i < n; i++) {
            int r = call_make(&calls[i]);
            if (write(p[1], &r, sizeof r) != (ssize_t)sizeof r)
                _exit(4);
        }
        _exit(0);
    }
    close(p[1]);
    while (bytes < n * sizeof(int)) {
        ssize_t k = read(p[0], (char *)got + bytes, n * sizeof(int) - bytes);
        if (k <= 0)
            break;
        bytes += (size_t)k;
    }
    close(p[0]);
    *n_got = bytes / sizeof(int);
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

const char *
call_result_name(int result)
{
    const char *s;

    if (result == 0)
        return "ok";
    if (result == CALL_WRONG)
        return "WRONG";
    s = strerrorname_np(result);
    return s ? s : "?";
}
