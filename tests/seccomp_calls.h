/*
 * seccomp_calls.h - the system calls the seccomp tests make, and what the
 * box's policy promises for each: one table of calls (raw system calls
 * through each x86 ABI, or small functions for checks that take several
 * calls) with the errno each must get, and the means to make one.
 *
 * Both tests/seccomp_probe.c (which prints a line per call) and
 * tests/unit/test_seccomp.c (which makes them in forked children, one
 * cmocka test per group) read these tables, so the two cannot drift apart.
 */
#ifndef CG_SECCOMP_CALLS_H
#define CG_SECCOMP_CALLS_H

#include <linux/filter.h>
#include <stddef.h>

/* A result that is neither success nor an errno: the call returned, wrongly. */
#define CALL_WRONG (-1)

/* x32 system call numbers are the native ones with this bit set. */
#define CALL_X32_BIT 0x40000000L

/* How a call enters the kernel. */
enum call_abi {
    CALL_NATIVE, /* syscall() */
    CALL_X32,    /* syscall() with bit 30: the filter answers even if the kernel has no x32 */
    CALL_I386,   /* int $0x80: a SIGSEGV if the kernel has no ia32 emulation */
};

/* Which part of the policy a call checks: one unit test per group. */
enum call_group {
    CALLS_KERNEL,      /* interfaces to the kernel itself: bpf, keys, modules... */
    CALLS_MOUNTS,      /* the old and the new mount API */
    CALLS_HOST,        /* host-wide switches: swap, reboot, clocks, quotas */
    CALLS_USERNS,      /* new user namespaces, setns, clone3 */
    CALLS_IO_URING,    /* io_uring: ENOSYS */
    CALLS_PERSONALITY, /* personality flags */
    CALLS_IOCTL,       /* terminal ioctls */
    CALLS_UNREVIEWED,  /* calls newer than the policy's review: ENOSYS */
    CALLS_X32,         /* the x32 ABI */
    CALLS_I386,        /* the i386 ABI */
    CALLS_ORDINARY,    /* what must keep working */
    CALLS_INHERITED,   /* the filter holds in children and threads */
};

/* One call: a raw system call, or a function for the checks that take several. */
struct call {
    const char *name;      /* what the probe prints and a failed test names */
    enum call_group group; /* the unit test that makes it */
    enum call_abi abi;     /* how a raw call enters the kernel */
    long nr;               /* the number in that ABI, for a raw call */
    long a[5];             /* its arguments: harmless, mostly invalid */
    int want;              /* 0 or the errno the policy promises */
    int (*fn)(void);       /* instead of a raw call, if set: 0, an errno or CALL_WRONG */
};

/* Table entries: a raw call in each ABI (arguments last), or a function. */
#define SC(group, name, nr, want, ...) \
    { name, group, CALL_NATIVE, nr, { __VA_ARGS__ }, want, NULL }
#define SC_X32(name, nr, want, ...) \
    { name, CALLS_X32, CALL_X32, CALL_X32_BIT | (nr), { __VA_ARGS__ }, want, NULL }
#define SC_I386(name, nr, want, ...) \
    { name, CALLS_I386, CALL_I386, nr, { __VA_ARGS__ }, want, NULL }
#define FN(group, name, fn, want) { name, group, CALL_NATIVE, 0, { 0 }, want, fn }

/*
 * Every rule of the policy, a call each, in the order the probe prints
 * them. The refused calls have arguments the kernel would reject too (bad
 * fd, NULL, reboot with no magic, iopl level 4), so making them is harmless
 * even when the filter is missing.
 */
extern const struct call seccomp_calls[];
extern const size_t seccomp_calls_n;

/*
 * More cases of the same rules, which only the unit tests make: other
 * encodings of the same arguments, clone with namespace flags through the
 * other ABIs, and the filter inherited by children and threads.
 */
extern const struct call seccomp_calls_more[];
extern const size_t seccomp_calls_more_n;

/*
 * Makes call c in this process: returns 0 if it worked, else its errno, or
 * CALL_WRONG if it returned something no ordinary call returns. An i386
 * call kills the process with SIGSEGV where the kernel has no ia32
 * emulation: make those in a child.
 */
int call_make(const struct call *c);

/*
 * Forks a child that loads filter (none if NULL) and makes each of
 * calls[0..n), writing each result to this process through a pipe. The
 * child's fault signals (SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGSYS) are the
 * default ones, so a fault or a killing filter ends it and the wait status
 * says so; a child that cannot load the filter exits 3. Fills got[0..n)
 * and sets *n_got to how many results arrived. Returns the child's wait
 * status, or -1 with errno if the pipe, fork or wait failed.
 */
int call_in_child(const struct call *calls, size_t n, const struct sock_fprog *filter, int *got,
                  size_t *n_got);

/*
 * The name of a call's result, for printing: "ok" for 0, "WRONG" for
 * CALL_WRONG, else the errno's name ("EPERM"), "?" if it has none. The
 * string is static.
 */
const char *call_result_name(int result);

#endif
