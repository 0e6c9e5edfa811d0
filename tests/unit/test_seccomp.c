/*
 * test_seccomp.c - unit tests of the box's seccomp policy: the filter
 * builds, and a forked child that loads it gets the promised errno from
 * every refused call (through each x86 ABI), while fork, threads, clone,
 * exec, files and memory keep working. Children report through a pipe; a
 * child killed by a signal (SIGSYS) fails the test.
 *
 * Run as root (as `make` does here) these checks are conclusive: unfiltered,
 * root gets another errno from every refused call. Run as an ordinary user,
 * the kernel itself answers EPERM to many of them (mount, swapon, reboot...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

/* A result that is neither success nor an errno: the call returned, wrongly. */
#define WRONG (-1)

/* The result of a system call: 0 or its errno. */
#define ERR(call) ((call) < 0 ? errno : 0)

/* Calls newer than the C library's headers. */
#define NR_FUTEX_REQUEUE 456 /* Linux 6.7, the last one reviewed */
#define NR_STATMOUNT 457     /* Linux 6.8 */
#define NR_OPEN_TREE_ATTR 467 /* more of the new mount API */

#define X32_BIT 0x40000000L

/* How a call enters the kernel. */
enum abi { NATIVE, X32, I386 };

/* One call a child makes: a raw system call, or a function for the
 * checks that take several. */
struct call {
    const char *name; /* for failure messages */
    enum abi abi;
    long nr;          /* the number in that ABI, for a raw call */
    long a[5];        /* its arguments */
    int want;         /* 0 or the promised errno */
    int (*fn)(void);  /* instead of a raw call, if set */
};

#define SC(name, nr, want, ...) { name, NATIVE, nr, { __VA_ARGS__ }, want, NULL }
#define SC_X32(name, nr, want, ...) { name, X32, X32_BIT | (nr), { __VA_ARGS__ }, want, NULL }
#define SC_I386(name, nr, want, ...) { name, I386, nr, { __VA_ARGS__ }, want, NULL }
#define FN(name, fn, want) { name, NATIVE, 0, { 0 }, want, fn }
#define N(calls) (sizeof(calls) / sizeof((calls)[0]))

/* The filter, built once for the whole group. */
static struct sock_fprog prog;

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

static int
make_call(const struct call *c)
{
    if (c->fn)
        return c->fn();
#if defined(__x86_64__)
    if (c->abi == I386)
        return int80(c->nr, c->a);
#endif
    return ERR(syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]));
}

/*
 * Forks a child that loads the filter (if filtered) and makes each call,
 * writing each result to a pipe. Fills got[0..n) and returns the child's
 * wait status; *n_got says how many results arrived.
 */
static int
run_in_child(const struct call *calls, size_t n, bool filtered, int *got, size_t *n_got)
{
    int p[2], status;
    size_t bytes = 0;

    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka catches these to fail a test; in the child they must kill
         * it, or it would carry on running the tests. */
        static const int sigs[] = { SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGSYS };
        for (size_t i = 0; i < N(sigs); i++)
            signal(sigs[i], SIG_DFL);
        close(p[0]);
        if (filtered && box_seccomp_load(&prog) < 0)
            _exit(3);
        for (size_t i = 0; i < n; i++) {
            int r = make_call(&calls[i]);
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
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *n_got = bytes / sizeof(int);
    return status;
}

/*
 * valgrind runs system calls itself: it answers the ones it does not know
 * (x32, the new mount API, kexec_file_load...) with ENOSYS, checks pointer
 * arguments before the kernel sees them, and cannot run int $0x80. Under it
 * the filter's answers cannot be seen; its business here is
 * seccomp_build's memory.
 */
static bool
under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

static const char *
errname(int e)
{
    const char *s = e == 0 ? "success" : e == WRONG ? "a wrong result" : strerrorname_np(e);
    return s ? s : "an unknown errno";
}

/* Each call, in a filtered child, gives what it promises; the child survives. */
static void
check_calls(const struct call *calls, size_t n)
{
    int got[64];
    size_t n_got;
    int bad = 0;

    if (under_valgrind())
        skip();
    assert_true(n <= N(got));
    int status = run_in_child(calls, n, true, got, &n_got);
    if (WIFSIGNALED(status))
        fail_msg("the filtered child was killed by signal %d (%s) after %zu calls",
                 WTERMSIG(status), strsignal(WTERMSIG(status)), n_got);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(n_got, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != calls[i].want) {
            print_error("%s: got %s, want %s\n", calls[i].name, errname(got[i]),
                        errname(calls[i].want));
            bad++;
        }
    assert_int_equal(bad, 0);
}

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

/* bpf's errno in a grandchild: the filter is inherited across fork. A
 * failed fork is WRONG, so that its errno cannot pass for bpf's. */
static int
fork_then_bpf(void)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return WRONG;
    if (pid == 0)
        _exit(ERR(syscall(SYS_bpf, -1L, 0L, 0L)));
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return WRONG;
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

    *result = WRONG;
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

/* A failed pthread_create is WRONG: its errno must not pass for bpf's. */
static int
thread_then_bpf(void)
{
    int result;

    return in_thread(thread_bpf, &result) ? WRONG : result;
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
open_read(void)
{
    char buf[64];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return errno;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 ? 0 : WRONG;
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
    if (syscall(SYS_personality, 0xffffffffL) != (old | ADDR_NO_RANDOMIZE))
        return WRONG;
    return ERR(syscall(SYS_personality, old));
}

static int
adjtimex_read(void)
{
    struct timex tx = { .modes = 0 };

    return ERR(syscall(SYS_adjtimex, &tx));
}

/* ---- building and loading ------------------------------------------------- */

static int
group_setup(void **state)
{
    char err[256];

    (void)state;
    if (box_seccomp_build(&prog, err, sizeof err) != CG_OK) {
        print_error("seccomp_build: %s\n", err);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    free(prog.filter);
    return 0;
}

static void
test_build(void **state)
{
    struct sock_fprog again;
    char err[256] = "";

    (void)state;
    assert_non_null(prog.filter);
    assert_true(prog.len > 0 && prog.len <= BPF_MAXINSNS);
    /* The prologue comes first and starts by reading the ABI. */
    assert_int_equal(prog.filter[0].code, BPF_LD | BPF_W | BPF_ABS);
    assert_int_equal(prog.filter[0].k, 4);
    /* Building is deterministic: the same table, the same program. */
    assert_int_equal(box_seccomp_build(&again, err, sizeof err), CG_OK);
    assert_string_equal(err, "");
    assert_int_equal(again.len, prog.len);
    assert_memory_equal(again.filter, prog.filter, prog.len * sizeof *prog.filter);
    free(again.filter);
}

static void
test_load_rejects_no_program(void **state)
{
    struct sock_fprog empty = { 0, NULL };
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L);

    (void)state;
    errno = 0;
    assert_int_equal(box_seccomp_load(NULL), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(box_seccomp_load(&empty), -1);
    assert_int_equal(errno, EINVAL);
    /* Refused before anything was set. */
    assert_int_equal(prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L), nnp);
}

/* ---- refused calls -------------------------------------------------------- */

static void
test_refuses_kernel_interfaces(void **state)
{
    static const struct call calls[] = {
        SC("bpf", SYS_bpf, EPERM, -1),
        SC("keyctl", SYS_keyctl, EPERM, -1),
        SC("add_key", SYS_add_key, EPERM, 0),
        SC("request_key", SYS_request_key, EPERM, 0),
        SC("kexec_load", SYS_kexec_load, EPERM, 0, 0, 0, -1),
        SC("kexec_file_load", SYS_kexec_file_load, EPERM, -1, -1, 0, 0, -1),
        SC("init_module", SYS_init_module, EPERM, 0),
        SC("finit_module", SYS_finit_module, EPERM, -1),
        SC("delete_module", SYS_delete_module, EPERM, 0),
        SC("perf_event_open", SYS_perf_event_open, EPERM, 0, 0, -1, -1),
        SC("userfaultfd", SYS_userfaultfd, EPERM, -1),
        SC("open_by_handle_at", SYS_open_by_handle_at, EPERM, -1),
        SC("syslog", SYS_syslog, EPERM, -1),
        SC("lookup_dcookie", SYS_lookup_dcookie, EPERM, 0),
        SC("iopl", SYS_iopl, EPERM, 4),
        SC("ioperm", SYS_ioperm, EPERM, 65536, 1),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_refuses_mounts(void **state)
{
    static const struct call calls[] = {
        SC("mount", SYS_mount, EPERM, 0),
        SC("umount2", SYS_umount2, EPERM, 0),
        SC("pivot_root", SYS_pivot_root, EPERM, 0),
        SC("fsopen", SYS_fsopen, EPERM, 0),
        SC("fsconfig", SYS_fsconfig, EPERM, -1),
        SC("fsmount", SYS_fsmount, EPERM, -1),
        SC("fspick", SYS_fspick, EPERM, -1),
        SC("move_mount", SYS_move_mount, EPERM, -1, 0, -1),
        SC("open_tree", SYS_open_tree, EPERM, -1),
        SC("mount_setattr", SYS_mount_setattr, EPERM, -1),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_refuses_host_switches(void **state)
{
    static const struct call calls[] = {
        SC("swapon", SYS_swapon, EPERM, 0),
        SC("swapoff", SYS_swapoff, EPERM, 0),
        SC("reboot", SYS_reboot, EPERM, 0), /* no magic: EINVAL if it got through */
        SC("acct", SYS_acct, EPERM, 1),     /* a bad pointer, not NULL ("off") */
        SC("settimeofday", SYS_settimeofday, EPERM, 0),
        SC("clock_settime", SYS_clock_settime, EPERM, -1),
        SC("quotactl", SYS_quotactl, EPERM, 0),
        SC("quotactl_fd", SYS_quotactl_fd, EPERM, -1),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_refuses_new_user_namespaces(void **state)
{
    static const struct call calls[] = {
        SC("unshare(NEWUSER)", SYS_unshare, EPERM, CLONE_NEWUSER),
        SC("unshare(NEWUSER|NEWNS|NEWNET)", SYS_unshare, EPERM,
           CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET),
        SC("unshare(NEWUSER, junk in the upper half)", SYS_unshare, EPERM,
           (1L << 40) | CLONE_NEWUSER),
        FN("clone(NEWUSER)", clone_newuser, EPERM),
        SC("setns", SYS_setns, EPERM, -1),
        /* No flags to check: ENOSYS, so glibc falls back to clone. */
        SC("clone3", SYS_clone3, ENOSYS, 0),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_io_uring_enosys(void **state)
{
    static const struct call calls[] = {
        SC("io_uring_setup", SYS_io_uring_setup, ENOSYS, 0),
        SC("io_uring_enter", SYS_io_uring_enter, ENOSYS, -1),
        SC("io_uring_register", SYS_io_uring_register, ENOSYS, -1),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_personality(void **state)
{
    static const struct call calls[] = {
        SC("personality(READ_IMPLIES_EXEC)", SYS_personality, EPERM, READ_IMPLIES_EXEC),
        SC("personality(MMAP_PAGE_ZERO)", SYS_personality, EPERM, MMAP_PAGE_ZERO),
        SC("personality(PER_LINUX32|READ_IMPLIES_EXEC)", SYS_personality, EPERM,
           PER_LINUX32 | READ_IMPLIES_EXEC),
        /* Bit 31 set makes it no query: the kernel would store every flag. */
        SC("personality(1<<31|READ_IMPLIES_EXEC)", SYS_personality, EPERM,
           0x80000000L | READ_IMPLIES_EXEC),
        SC("personality(0xfffffffe)", SYS_personality, EPERM, 0xfffffffeL),
        SC("personality(query)", SYS_personality, 0, 0xffffffffL),
        FN("personality(ADDR_NO_RANDOMIZE)", personality_no_aslr, 0),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_terminal_ioctls(void **state)
{
    static const struct call calls[] = {
        SC("ioctl(TIOCSTI)", SYS_ioctl, EPERM, -1, TIOCSTI),
        SC("ioctl(1<<32|TIOCSTI)", SYS_ioctl, EPERM, -1, (1L << 32) | TIOCSTI),
        SC("ioctl(TIOCLINUX)", SYS_ioctl, EPERM, -1, TIOCLINUX),
        /* Other ioctls go through: the kernel answers. */
        SC("ioctl(TCGETS)", SYS_ioctl, EBADF, -1, TCGETS),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_unreviewed_calls_enosys(void **state)
{
    static const struct call calls[] = {
        SC("statmount", NR_STATMOUNT, ENOSYS, 0),
        SC("open_tree_attr", NR_OPEN_TREE_ATTR, ENOSYS, -1),
    };
    static const struct call last_reviewed[] = {
        SC("futex_requeue", NR_FUTEX_REQUEUE, 0, 0, 0, 1, 0),
    };
    int filtered, unfiltered;
    size_t n;

    (void)state;
    check_calls(calls, N(calls));
    /* The last reviewed call gets whatever the kernel says, filter or not. */
    assert_true(WIFEXITED(run_in_child(last_reviewed, 1, false, &unfiltered, &n)));
    assert_int_equal(n, 1);
    assert_true(WIFEXITED(run_in_child(last_reviewed, 1, true, &filtered, &n)));
    assert_int_equal(n, 1);
    assert_int_equal(filtered, unfiltered);
}

/* ---- other ABIs ------------------------------------------------------------- */

static void
test_x32_abi(void **state)
{
#if defined(__x86_64__)
    /* The filter answers before the kernel looks for x32 support. */
    static const struct call calls[] = {
        SC_X32("x32 bpf", SYS_bpf, EPERM, -1),
        SC_X32("x32 mount", SYS_mount, EPERM, 0),
        SC_X32("x32 keyctl", SYS_keyctl, EPERM, -1),
        SC_X32("x32 unshare(NEWUSER)", SYS_unshare, EPERM, CLONE_NEWUSER),
        SC_X32("x32 clone(NEWUSER|FS)", SYS_clone, EPERM, CLONE_NEWUSER | CLONE_FS),
        SC_X32("x32 personality(READ_IMPLIES_EXEC)", SYS_personality, EPERM,
               READ_IMPLIES_EXEC),
        SC_X32("x32 io_uring_setup", SYS_io_uring_setup, ENOSYS, 0),
        SC_X32("x32 open_tree_attr", NR_OPEN_TREE_ATTR, ENOSYS, -1),
    };
    (void)state;
    check_calls(calls, N(calls));
#else
    (void)state;
    skip();
#endif
}

static void
test_i386_abi(void **state)
{
#if defined(__x86_64__)
    /* Numbers from <asm/unistd_32.h>. */
    static const struct call probe[] = {
        SC_I386("i386 getpid", 20, 0, 0),
    };
    static const struct call calls[] = {
        SC_I386("i386 getpid", 20, 0, 0),
        SC_I386("i386 bpf", 357, EPERM, -1),
        SC_I386("i386 mount", 21, EPERM, 0),
        SC_I386("i386 umount", 22, EPERM, 0),
        SC_I386("i386 keyctl", 288, EPERM, -1),
        SC_I386("i386 stime", 25, EPERM, 0),
        SC_I386("i386 clock_settime64", 404, EPERM, -1),
        SC_I386("i386 unshare(NEWUSER)", 310, EPERM, CLONE_NEWUSER),
        /* With CLONE_FS the kernel would refuse it too, with EINVAL: no
         * child is made even if the filter fails. */
        SC_I386("i386 clone(NEWUSER|FS)", 120, EPERM, CLONE_NEWUSER | CLONE_FS),
        SC_I386("i386 personality(READ_IMPLIES_EXEC)", 136, EPERM, READ_IMPLIES_EXEC),
        SC_I386("i386 io_uring_setup", 425, ENOSYS, 0),
        SC_I386("i386 clone3", 435, ENOSYS, 0),
        SC_I386("i386 open_tree_attr", NR_OPEN_TREE_ATTR, ENOSYS, -1),
    };
    int got;
    size_t n;

    (void)state;
    if (under_valgrind())
        skip();
    /* Without ia32 emulation, int $0x80 is a SIGSEGV: nothing to test. */
    if (!WIFEXITED(run_in_child(probe, 1, false, &got, &n)) || n != 1 || got != 0)
        skip();
    check_calls(calls, N(calls));
#else
    (void)state;
    skip();
#endif
}

/* ---- what must keep working --------------------------------------------------- */

static void
test_ordinary_calls_work(void **state)
{
    static const struct call calls[] = {
        FN("the filter is on", seccomp_mode_2, 0),
        FN("no_new_privs is set", no_new_privs, 0),
        FN("fork and wait", fork_wait, 0),
        FN("pthread_create", thread_runs, 0),
        FN("clone without namespace flags", clone_plain, 0),
        SC("unshare(0)", SYS_unshare, 0, 0),
        FN("exec /bin/true", exec_true, 0),
        FN("open and read", open_read, 0),
        FN("mmap", map_memory, 0),
        FN("adjtimex(read)", adjtimex_read, 0),
        SC("getpid", SYS_getpid, 0, 0),
    };
    (void)state;
    check_calls(calls, N(calls));
}

static void
test_children_and_threads_inherit(void **state)
{
    static const struct call calls[] = {
        FN("bpf in a forked child", fork_then_bpf, EPERM),
        FN("bpf in a thread", thread_then_bpf, EPERM),
    };
    (void)state;
    check_calls(calls, N(calls));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_load_rejects_no_program),
        cmocka_unit_test(test_refuses_kernel_interfaces),
        cmocka_unit_test(test_refuses_mounts),
        cmocka_unit_test(test_refuses_host_switches),
        cmocka_unit_test(test_refuses_new_user_namespaces),
        cmocka_unit_test(test_io_uring_enosys),
        cmocka_unit_test(test_personality),
        cmocka_unit_test(test_terminal_ioctls),
        cmocka_unit_test(test_unreviewed_calls_enosys),
        cmocka_unit_test(test_x32_abi),
        cmocka_unit_test(test_i386_abi),
        cmocka_unit_test(test_ordinary_calls_work),
        cmocka_unit_test(test_children_and_threads_inherit),
    };
    return cmocka_run_group_tests_name("seccomp", tests, group_setup, group_teardown);
}
