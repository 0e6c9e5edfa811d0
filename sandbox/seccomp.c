/*
 * seccomp.c - the box's system call policy, built with libseccomp.
 *
 * Everything is allowed except the calls in `refused` below, each of which
 * fails with an errno: never a kill, so a runtime that probes for bpf,
 * io_uring or user namespaces carries on with its fallback. The box already
 * runs as a non-root user without capabilities in its own namespaces, so
 * many of these calls would fail anyway; the filter is the second wall, and
 * the only one for calls an unprivileged user may make (bpf, userfaultfd,
 * perf_event_open, io_uring, new user namespaces, TIOCSTI).
 *
 * libseccomp writes the table out as classic BPF when cellgate is built
 * (seccomp_gen.c puts the program into the binaries, seccomp_run.c hands
 * it out), so no box and no process pays for building it; loading it in a
 * freshly started child is then two prctl() calls and allocates nothing. In front of libseccomp's program sits a short
 * hand-written prologue for the two rules libseccomp cannot say (it allows
 * only one comparison per argument, and names only the calls it knows):
 *
 *   - system calls newer than the last one we reviewed (REVIEWED_LAST)
 *     answer ENOSYS, as on an older kernel, so a default-allow policy does
 *     not silently allow whatever the next kernel adds (open_tree_attr,
 *     number 467, is more of the new mount API);
 *   - personality() may not set READ_IMPLIES_EXEC or MMAP_PAGE_ZERO, but
 *     its query form personality(0xffffffff), which sets every bit, works.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <seccomp.h> /* libseccomp's */

#include "sandbox/boxseccomp.h"

#include "common/cgerr.h"

/*
 * The newest system call whose meaning we reviewed for this table:
 * futex_requeue (456, Linux 6.7), also the newest Debian 12's libseccomp
 * 2.5.4 knows. Anything newer answers ENOSYS until someone reviews it and
 * moves this line.
 */
#define REVIEWED_LAST 456

/* clone's flags argument: the first everywhere but s390 (CLONE_BACKWARDS2). */
#if defined(__s390__) || defined(__s390x__)
#define CLONE_FLAGS_ARG 1
#else
#define CLONE_FLAGS_ARG 0
#endif

/* A call the box refuses: always, or when one argument matches. */
struct refusal {
    const char *name; /* the system call, as libseccomp names it */
    int errnum;       /* the errno the caller gets */
    int arg;          /* ALWAYS, or which argument is tested */
    uint64_t mask;    /* refused when (argument & mask) == match */
    uint64_t match;
};

#define ALWAYS (-1)
#define REFUSE(name, errnum) { name, errnum, ALWAYS, 0, 0 }
#define REFUSE_IF(name, errnum, arg, mask, match) { name, errnum, arg, mask, match }

/*
 * The policy. A name that exists only on some of the filter's ABIs (stime,
 * umount: i386 only) is refused where it exists.
 *
 * Left allowed on purpose:
 *   ptrace, process_vm_readv/writev, kcmp, pidfd_getfd: the box's pid
 *     namespace hides every process outside it, so debuggers and strace work
 *     on the box's own processes only. The one unfiltered process inside,
 *     the box's init, keeps capabilities its children lack and is not
 *     dumpable after setresuid (sandbox/boxinit.c), so ptrace_may_access()
 *     refuses to attach to it. Since Linux 4.8 the filter runs again after a tracer rewrites a
 *     call, so a tracer cannot smuggle a refused call past it.
 *   adjtimex, clock_adjtime: with modes == 0 they only read the clock's
 *     state (ntp_gettime, chrony's tools); changing it needs CAP_SYS_TIME in
 *     the initial user namespace, which nothing in the box has, and seccomp
 *     cannot read the struct to tell the two apart.
 *   personality's layout flags (ADDR_NO_RANDOMIZE, ADDR_COMPAT_LAYOUT,
 *     ADDR_LIMIT_*): gdb turns off ASLR for the program it debugs, and they
 *     make predictable only the caller's own addresses; no_new_privs means no
 *     setuid program can be run under them. See the prologue for the rest.
 *   clone and unshare with other namespace flags: creating a mount, pid or
 *     net namespace needs CAP_SYS_ADMIN, which only a new user namespace
 *     could give.
 */
static const struct refusal refused[] = {
    /* eBPF programs and maps: a large kernel attack surface that many hosts
     * open to unprivileged users. */
    REFUSE("bpf", EPERM),
    /* The kernel keyring is not fully namespaced and has a long history of
     * bugs. */
    REFUSE("keyctl", EPERM),
    REFUSE("add_key", EPERM),
    REFUSE("request_key", EPERM),
    /* Replacing or extending the running kernel. */
    REFUSE("kexec_load", EPERM),
    REFUSE("kexec_file_load", EPERM),
    REFUSE("init_module", EPERM),
    REFUSE("finit_module", EPERM),
    REFUSE("delete_module", EPERM),
    /* The box's mount tree is set up before its children start and is
     * theirs to use, not to change: old and new mount API alike. */
    REFUSE("mount", EPERM),
    REFUSE("umount", EPERM),
    REFUSE("umount2", EPERM),
    REFUSE("pivot_root", EPERM),
    REFUSE("fsopen", EPERM),
    REFUSE("fsconfig", EPERM),
    REFUSE("fsmount", EPERM),
    REFUSE("fspick", EPERM),
    REFUSE("move_mount", EPERM),
    REFUSE("open_tree", EPERM),
    REFUSE("mount_setattr", EPERM),
    /* Host-wide switches. */
    REFUSE("swapon", EPERM),
    REFUSE("swapoff", EPERM),
    REFUSE("reboot", EPERM),
    REFUSE("acct", EPERM),
    REFUSE("settimeofday", EPERM),
    REFUSE("stime", EPERM),
    REFUSE("clock_settime", EPERM),
    REFUSE("clock_settime64", EPERM),
    REFUSE("quotactl", EPERM),
    REFUSE("quotactl_fd", EPERM),
    /* Reading the host: the kernel log holds the host's (and other boxes')
     * messages and kernel addresses; glibc's syslog(3) uses /dev/log, not
     * this call. lookup_dcookie is oprofile's, removed from recent kernels. */
    REFUSE("syslog", EPERM),
    REFUSE("lookup_dcookie", EPERM),
    /* perf events: side channels and a steady source of kernel bugs. */
    REFUSE("perf_event_open", EPERM),
    /* userfaultfd lets a program stall the kernel mid-copy: the standard
     * tool for winning kernel races. */
    REFUSE("userfaultfd", EPERM),
    /* Opening a file by handle walks around the box's mount tree ("shocker"). */
    REFUSE("open_by_handle_at", EPERM),
    /* Direct port I/O. */
    REFUSE("iopl", EPERM),
    REFUSE("ioperm", EPERM),
    /* Other namespaces, and new user namespaces: in one, an unprivileged
     * process holds every capability, the door to most kernel bugs. */
    REFUSE("setns", EPERM),
    REFUSE_IF("unshare", EPERM, 0, CLONE_NEWUSER, CLONE_NEWUSER),
    REFUSE_IF("clone", EPERM, CLONE_FLAGS_ARG, CLONE_NEWUSER, CLONE_NEWUSER),
    /* clone3 takes its flags in a struct, out of seccomp's sight. glibc
     * (2.34+) tries clone3 first and falls back to clone on ENOSYS, where
     * the flags can be checked; EPERM would fail pthread_create. */
    REFUSE("clone3", ENOSYS),
    /* io_uring runs calls from kernel workers, past seccomp, and has been a
     * steady source of kernel bugs. ENOSYS, not EPERM: "this kernel has no
     * io_uring" is the case every user of it (libuv, liburing, tokio)
     * handles, while EPERM only became a known answer with the
     * io_uring_disabled sysctl (Linux 6.6) and older code treats it as an
     * error. */
    REFUSE("io_uring_setup", ENOSYS),
    REFUSE("io_uring_enter", ENOSYS),
    REFUSE("io_uring_register", ENOSYS),
    /* Typing into, or reprogramming, a terminal another program reads
     * (bubblewrap's CVE-2017-5226). The command is an unsigned int: the
     * mask ignores whatever sits in the register's upper half. */
    REFUSE_IF("ioctl", EPERM, 1, 0xffffffffu, TIOCSTI),
    REFUSE_IF("ioctl", EPERM, 1, 0xffffffffu, TIOCLINUX),
};

/* ---- the prologue ------------------------------------------------------- */

/* personality() flags refused: executable data, and a mapping at address
 * zero (the classic aid for kernel NULL-pointer bugs). */
#define PERSONALITY_REFUSED (READ_IMPLIES_EXEC | MMAP_PAGE_ZERO)

/* One system call ABI the prologue guards. */
struct abi {
    uint32_t audit_arch;  /* seccomp_data.arch for this ABI */
    uint32_t scmp_arch;   /* libseccomp's name for it, to number calls */
    uint32_t first_new;   /* first call number newer than REVIEWED_LAST */
    uint32_t last;        /* last number of the ABI's range */
};

/*
 * x86_64, x32 and i386 programs all run on an x86_64 kernel, so a filter
 * that knew only x86_64 could be walked around with `int $0x80`. x32 calls
 * carry bit 30 and the x86_64 arch; x32's own calls at 512..547 predate
 * REVIEWED_LAST. Since Linux 5.1 a new call gets the same number on every
 * ABI. Ranges stop at NR_TOP, below the -1 a tracer writes to skip a call.
 * Other architectures get libseccomp's table only (native ABI, no
 * prologue) until someone checks their numbering.
 */
#define X32_BIT 0x40000000u
#define NR_TOP (X32_BIT - 1)
static const struct abi abis[] = {
#if defined(__x86_64__)
    { AUDIT_ARCH_X86_64, SCMP_ARCH_X86_64, REVIEWED_LAST + 1, NR_TOP },
    { AUDIT_ARCH_X86_64, SCMP_ARCH_X32, X32_BIT + REVIEWED_LAST + 1, X32_BIT + 511 },
    { AUDIT_ARCH_I386, SCMP_ARCH_X86, REVIEWED_LAST + 1, NR_TOP },
#elif defined(__aarch64__)
    { AUDIT_ARCH_AARCH64, SCMP_ARCH_AARCH64, REVIEWED_LAST + 1, NR_TOP },
#endif
};
#define N_ABIS (sizeof abis / sizeof abis[0])

/* Instructions per ABI in the prologue (see prologue_block). */
#define BLOCK_LEN 11

#define SD_NR offsetof(struct seccomp_data, nr)
#define SD_ARCH offsetof(struct seccomp_data, arch)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SD_ARG0_LO offsetof(struct seccomp_data, args[0])
#else
#define SD_ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#endif

/*
 * Writes one ABI's block to f (BLOCK_LEN instructions). Every way out that
 * does not return falls through to the next block, and the last block to
 * libseccomp's program. Jump offsets count from the next instruction.
 */
static void
prologue_block(struct sock_filter *f, const struct abi *abi, uint32_t personality_nr)
{
    const struct sock_filter block[BLOCK_LEN] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SD_ARCH),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, abi->audit_arch, 0, 9),   /* no: out */
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SD_NR),
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, abi->first_new, 0, 2),    /* older: 6 */
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, abi->last, 1, 0),         /* beyond: 6 */
        /* 5 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, personality_nr, 0, 4),    /* no: out */
        /* 7 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SD_ARG0_LO),
        /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, 2, 0),       /* query: out */
        /* 9 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PERSONALITY_REFUSED, 0, 1), /* no: out */
        /* 10 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    memcpy(f, block, sizeof block);
}

/* ---- building ------------------------------------------------------------ */

/* Maps a libseccomp result (0 or -errno) to ours. */
static int
scmp_fail(char *err, size_t errlen, int rc, const char *what)
{
    errno = -rc;
    return cg_fail(err, errlen, rc == -ENOMEM ? CG_ENOMEM : CG_ESYS, "%s: %s", what,
                   strerror(-rc));
}

/* Adds every ABI the box can be entered through, and the table, to ctx. */
static int
add_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
    int rc;

    /* A call from an ABI not in the filter (none remain on x86_64) answers
     * ENOSYS: it cannot get around the table, and nothing crashes. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
    if (rc < 0)
        return scmp_fail(err, errlen, rc, "setting the bad-arch action");
    for (size_t i = 0; i < N_ABIS; i++) {
        rc = seccomp_arch_add(ctx, abis[i].scmp_arch);
        if (rc < 0 && rc != -EEXIST)
            return scmp_fail(err, errlen, rc, "adding an architecture");
    }

    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const struct refusal *r = &refused[i];
        int nr = seccomp_syscall_resolve_name(r->name);
        char what[96];

        /* Fail closed: a refusal we cannot express must not vanish. */
        if (nr == __NR_SCMP_ERROR)
            return cg_fail(err, errlen, CG_EUNSUPP,
                           "libseccomp does not know the system call %s (too old?)",
                           r->name);
        snprintf(what, sizeof what, "refusing %s", r->name);
        if (r->arg == ALWAYS) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)r->errnum), nr, 0);
        } else {
            struct scmp_arg_cmp cmp = SCMP_CMP((unsigned)r->arg, SCMP_CMP_MASKED_EQ,
                                               r->mask, r->match);
            rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO((uint32_t)r->errnum), nr, 1,
                                        &cmp);
        }
        if (rc < 0)
            return scmp_fail(err, errlen, rc, what);
    }
    return CG_OK;
}

/* Writes the prologue for every ABI to f (N_ABIS * BLOCK_LEN instructions). */
static int
write_prologue(struct sock_filter *f, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_ABIS; i++) {
        int nr = seccomp_syscall_resolve_name_arch(abis[i].scmp_arch, "personality");
        if (nr < 0)
            return cg_fail(err, errlen, CG_EUNSUPP,
                           "libseccomp does not number personality for an ABI");
        prologue_block(f + i * BLOCK_LEN, &abis[i], (uint32_t)nr);
    }
    return CG_OK;
}

int
box_seccomp_build(struct sock_fprog *prog, char *err, size_t errlen)
{
    const size_t head = N_ABIS * BLOCK_LEN;
    scmp_filter_ctx ctx = NULL;
    struct sock_filter *f = NULL;
    size_t n = 0;
    int fd = -1;
    int rc;

    prog->filter = NULL;
    prog->len = 0;
    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "seccomp_init failed");
        goto out;
    }
    rc = add_rules(ctx, err, errlen);
    if (rc != CG_OK)
        goto out;

    /* libseccomp 2.5 exports only to a file descriptor. A memfd, not a
     * pipe: a pipe can shrink to one page when the user's pipe quota runs
     * out, and the export would block on it forever. */
    fd = memfd_create("cellgate-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = cg_fail(err, errlen, CG_ESYS, "memfd_create: %s", strerror(errno));
        goto out;
    }
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        rc = scmp_fail(err, errlen, rc, "exporting the filter");
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof *f != 0) {
        rc = cg_fail(err, errlen, CG_ESYS, "libseccomp exported %lld bytes of BPF",
                     (long long)size);
        goto out;
    }
    n = (size_t)size / sizeof *f;
    if (head + n > BPF_MAXINSNS) {
        rc = cg_fail(err, errlen, CG_ETOOBIG, "the filter has %zu instructions (at most %d)",
                     head + n, BPF_MAXINSNS);
        goto out;
    }
    f = calloc(head + n, sizeof *f);
    if (!f) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "no memory for the filter");
        goto out;
    }
    rc = write_prologue(f, err, errlen);
    if (rc != CG_OK)
        goto out;
    for (size_t got = 0; got < (size_t)size;) {
        ssize_t k = pread(fd, (char *)(f + head) + got, (size_t)size - got, (off_t)got);
        if (k <= 0) {
            rc = cg_fail(err, errlen, CG_ESYS, "reading the exported filter: %s",
                         k < 0 ? strerror(errno) : "short file");
            goto out;
        }
        got += (size_t)k;
    }
    prog->filter = f;
    prog->len = (unsigned short)(head + n);
    f = NULL;
    rc = CG_OK;
out:
    free(f);
    if (fd >= 0)
        close(fd);
    if (ctx)
        seccomp_release(ctx);
    return rc;
}
