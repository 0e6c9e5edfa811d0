/*
 * boxinit.c - the box's init: pid 1 of the box's namespaces.
 *
 * It builds the box's filesystem top to bottom (bubblewrap's order: a
 * private mount tree, a tmpfs root, read-only binds of the toolchains and
 * of selected /etc files, a writable /mnt/data, a private /tmp, a minimal
 * /dev, a fresh /proc, pivot_root), names the host, brings up loopback,
 * reports ready and then serves the kernel: it
 * starts processes (setsid, rlimits, no capabilities, no_new_privs,
 * seccomp last, exec), signals process groups and reports exits. It exits
 * when the kernel closes the socket, taking the pid namespace with it.
 */
#include "sandbox/boxinit.h"

#include "sandbox/boxpaths.h"

#include "common/cgerr.h"
#include "common/sibling.h"
#include "sandbox/boxproto.h"
#include "sandbox/boxseccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROOT "/tmp" /* where the new root is assembled (our own tmpfs) */
#define MAX_CHILDREN 256

/* Host paths bound read-only where they exist; merged-/usr symlinks such as
 * /bin -> usr/bin are recreated as symlinks. */
static const char *const system_dirs[] = {
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
};

/* The parts of /etc that programs need: the dynamic linker's cache,
 * Debian's alternatives, time zone, Python's and matplotlib's settings,
 * fonts, certificates, and name-service files that do not reveal the host. */
static const char *const etc_entries[] = {
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone",
    "python3", "python3.11", "python3.12", "matplotlibrc", "fonts", "ssl", "ca-certificates",
    "mime.types", "nsswitch.conf", "protocols", "services", "inputrc", "bash.bashrc",
    "java-17-openjdk", "perl", "php", "R", "gitconfig", "magic", "magic.mime",
};

static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

/* ---- failing set-up ------------------------------------------------------ */

static int ctl_fd = -1;

/* Sends READY with an error text and exits: the kernel prints the text. */
static void __attribute__((noreturn, format(printf, 1, 2)))
setup_fail(const char *fmt, ...)
{
    char buf[sizeof(struct boxmsg) + 512];
    struct boxmsg *m = (struct boxmsg *)buf;
    va_list ap;
    int e = errno;

    memset(m, 0, sizeof *m);
    m->type = BOXMSG_READY;
    m->error = e ? e : EINVAL;
    va_start(ap, fmt);
    vsnprintf(m->text, 512, fmt, ap);
    va_end(ap);
    ssize_t w = send(ctl_fd, m, sizeof *m + strlen(m->text) + 1, MSG_NOSIGNAL);
    (void)w;
    _exit(1);
}

/* ---- identity ------------------------------------------------------------ */

/* Becomes BOX_UID/BOX_UID inside (mapped by the kernel) keeping the
 * namespace capabilities init needs for its mounts. */
static void
become_box_user(void)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2];

    if (prctl(PR_SET_KEEPCAPS, 1) < 0 || setresgid(BOX_UID, BOX_UID, BOX_UID) < 0
        || setresuid(BOX_UID, BOX_UID, BOX_UID) < 0)
        setup_fail("cannot become uid %d in the box's user namespace: %s", BOX_UID,
                   strerror(errno));
    /* setresuid cleared the effective set: raise it from the permitted one. */
    if (syscall(SYS_capget, &hdr, data) < 0)
        setup_fail("capget: %s", strerror(errno));
    data[0].effective = data[0].permitted;
    data[1].effective = data[1].permitted;
    if (syscall(SYS_capset, &hdr, data) < 0)
        setup_fail("capset: %s", strerror(errno));
}

/* Empties init's capability bounding set once its set-up is done: every
 * process it starts inherits the empty set, so no exec in the box can gain
 * a capability. Init's own capabilities stay (it needs none after set-up,
 * but dropping them is each child's job). The set ends at the first
 * capability this Linux does not know (EINVAL). */
static void
drop_bounding_set(void)
{
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                return;
            setup_fail("dropping capability %d from the bounding set: %s", cap,
                       strerror(errno));
        }
}

/* In a child before exec: no capability of any kind survives (the
 * bounding set is empty already: drop_bounding_set). */
static int
drop_all_caps(void)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2] = { { 0 }, { 0 } };

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return (int)syscall(SYS_capset, &hdr, data);
}

/* ---- the filesystem ------------------------------------------------------ */

static void
make_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        setup_fail("mkdir %s: %s", path, strerror(errno));
}

static void
make_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(text);

    if (fd < 0 || write(fd, text, len) != (ssize_t)len)
        setup_fail("writing %s: %s", path, strerror(errno));
    close(fd);
}

/* The mount flags a bind at path must keep (a user namespace may not drop
 * nodev/nosuid/noexec that the source mount has). */
static unsigned long
locked_flags(const char *path)
{
    struct statvfs st;
    unsigned long f = 0;

    if (statvfs(path, &st) == 0) {
        if (st.f_flag & ST_NODEV)
            f |= MS_NODEV;
        if (st.f_flag & ST_NOSUID)
            f |= MS_NOSUID;
        if (st.f_flag & ST_NOEXEC)
            f |= MS_NOEXEC;
    }
    return f;
}

/* How a source is bound. */
enum bind_mode { BIND_RO, BIND_RW, BIND_DEVICE };

/* Restricts the bind mount at target: read-only, or writable, or a device
 * node (which must not get nodev). Always nosuid. */
static void
restrict_bind(const char *target, enum bind_mode mode)
{
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | locked_flags(target);

    if (mode == BIND_RO)
        flags |= MS_RDONLY | MS_NODEV;
    else if (mode == BIND_RW)
        flags |= MS_NODEV;
    if (mount("none", target, "none", flags, NULL) < 0)
        setup_fail("restricting %s: %s", target, strerror(errno));
}

/* How the mode of a bind is applied. */
enum restrict_when { RESTRICT_NOW, RESTRICT_WITH_TREE };

/* Binds the object open as fd (O_PATH, opened before the root was
 * replaced) at target, restricted to mode at once or, with
 * RESTRICT_WITH_TREE, later by restrict_tree() on a directory above. */
static void
bind_fd(int fd, const char *target, enum bind_mode mode, enum restrict_when when,
        const char *what)
{
    char src[64];

    snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
    if (mount(src, target, "none", MS_BIND | MS_REC, NULL) < 0)
        setup_fail("binding %s at %s: %s", what, target, strerror(errno));
    if (when == RESTRICT_NOW)
        restrict_bind(target, mode);
}

/* A host path opened before the new root hides it. */
struct src {
    const char *host;   /* host path */
    char target[128];   /* path under ROOT */
    int fd;             /* O_PATH, or -1 when the host has no such path */
    bool dir;
    char link[256];     /* non-empty: recreate as this symlink instead */
    bool bound;         /* place_src bound it at target */
};

/* Opens host (O_PATH, the link itself if it is one) and reads what it is:
 * a symlink's target is kept to recreate it, anything else is bound. */
static void
open_src(struct src *s, const char *host, const char *target)
{
    struct stat st;

    memset(s, 0, sizeof *s);
    s->host = host;
    snprintf(s->target, sizeof s->target, "%s%s", ROOT, target);
    s->fd = open(host, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &st) < 0)
        goto none;
    s->dir = S_ISDIR(st.st_mode);
    if (!S_ISLNK(st.st_mode))
        return;
    ssize_t n = readlinkat(s->fd, "", s->link, sizeof s->link - 1);
    if (n > 0)
        s->link[n] = '\0';
    else
        s->link[0] = '\0';
none:
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static void
place_src(struct src *s, enum bind_mode mode, enum restrict_when when)
{
    if (s->link[0]) {
        if (symlink(s->link, s->target) < 0 && errno != EEXIST)
            setup_fail("symlink %s: %s", s->target, strerror(errno));
        return;
    }
    if (s->fd < 0)
        return;
    if (s->dir)
        make_dir(s->target, 0755);
    else if (mknod(s->target, S_IFREG | 0644, 0) < 0) /* an empty file to bind over */
        setup_fail("creating %s: %s", s->target, strerror(errno));
    bind_fd(s->fd, s->target, mode, when, s->host);
    s->bound = true;
    close(s->fd);
    s->fd = -1;
}

/*
 * Gives every mount at and below dir - a bind, or a tmpfs and the binds
 * of srcs placed in it with RESTRICT_WITH_TREE - the flags of mode, in one
 * mount_setattr() (Linux 5.12) instead of a remount each: ~20 fewer
 * system calls on the way to a ready box. Flags are only ever added, so
 * those the host locked stay. Where the call fails - a kernel without
 * it (ENOSYS), or a container's seccomp profile that refuses it (EPERM) -
 * dir and each bind are remounted as restrict_bind() does, which fails
 * the box if it cannot.
 */
static void
restrict_tree(const char *dir, struct src *srcs, size_t n, enum bind_mode mode)
{
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOSUID };

    if (mode == BIND_RO)
        attr.attr_set |= MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
    else if (mode == BIND_RW)
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (mount_setattr(AT_FDCWD, dir, AT_RECURSIVE, &attr, sizeof attr) == 0)
        return;
    restrict_bind(dir, mode);
    for (size_t i = 0; i < n; i++)
        if (srcs[i].bound)
            restrict_bind(srcs[i].target, mode);
}

/* Every host path the box shows, opened before anything is mounted. */
struct sources {
    struct src sys[sizeof system_dirs / sizeof system_dirs[0]];
    struct src etc[sizeof etc_entries / sizeof etc_entries[0]];
    struct src dev[sizeof dev_nodes / sizeof dev_nodes[0]];
    struct src data;
    struct src self;    /* this program, shown as cellgate-display */
};

#define N_SYS (sizeof system_dirs / sizeof system_dirs[0])
#define N_ETC (sizeof etc_entries / sizeof etc_entries[0])
#define N_DEV (sizeof dev_nodes / sizeof dev_nodes[0])

/*
 * The program shown as cellgate-display: the cellgate command beside this
 * program (init was forked from the kernel without exec, so this is
 * cellgate-kernel, which does the same but loads more libraries to start),
 * else this program itself. Opened by its path: the file /proc/self/exe
 * leads to belongs to the kernel's mount namespace, and a bind needs one
 * of ours. If neither is there (replaced while the kernel runs), the box
 * goes without cellgate-display.
 */
static void
open_self(struct src *s)
{
    static char path[4096];

    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->host = path;
    snprintf(s->target, sizeof s->target, ROOT BOX_BIN_DIR "/cellgate-display");
    if (sibling_or_self("cellgate", path, sizeof path) == CG_OK && path[0] == '/')
        s->fd = open(path, O_PATH | O_CLOEXEC);
}

/*
 * Opens the sources while init still has the kernel's identity on the
 * host, so it can reach a data directory below parents only the kernel's
 * user may enter; the fds live in init's own mount namespace, so they can
 * be bound. The new root hides the host's /tmp, where a data directory may
 * live: another reason to open first.
 */
static void
open_sources(struct sources *s, const struct boxinit_args *a)
{
    static char etc_paths[N_ETC][64], dev_paths[N_DEV][32];

    /* Nothing we mount from here on propagates back to the host. */
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
        setup_fail("making mounts private: %s", strerror(errno));
    for (size_t i = 0; i < N_SYS; i++)
        open_src(&s->sys[i], system_dirs[i], system_dirs[i]);
    for (size_t i = 0; i < N_ETC; i++) {
        snprintf(etc_paths[i], sizeof etc_paths[i], "/etc/%s", etc_entries[i]);
        open_src(&s->etc[i], etc_paths[i], etc_paths[i]);
    }
    for (size_t i = 0; i < N_DEV; i++) {
        snprintf(dev_paths[i], sizeof dev_paths[i], "/dev/%s", dev_nodes[i]);
        open_src(&s->dev[i], dev_paths[i], dev_paths[i]);
    }
    open_src(&s->data, a->data_dir, BOX_HOME);
    if (s->data.fd < 0 || !s->data.dir)
        setup_fail("the data directory %s cannot be opened: %s", a->data_dir, strerror(errno));
    open_self(&s->self);
}

/* ---- cellgate-display ---------------------------------------------------- */

static int display_fd = -1; /* its listening socket, handed to the kernel with READY */

/* The directory of the display command and socket, with its mode exact
 * whatever our umask (the root goes read-only later: nobody changes it). */
static void
make_run_dir(const char *path)
{
    make_dir(path, 0755);
    if (chmod(path, 0755) < 0)
        setup_fail("chmod %s: %s", path, strerror(errno));
}

/* Puts cellgate-display in the box: this program bound read-only at
 * BOX_BIN_DIR, and the socket it talks to bound at BOX_DISPLAY_SOCKET,
 * open to every user of the box. The kernel listens on it (serve() hands
 * it over), so what the command shows is only what it could open itself. */
static void
setup_display(struct src *self)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    static const char path[] = ROOT BOX_DISPLAY_SOCKET;

    make_run_dir(ROOT "/run");
    make_run_dir(ROOT "/run/cellgate");
    make_run_dir(ROOT BOX_BIN_DIR);
    place_src(self, BIND_RO, RESTRICT_NOW);
    /* A `python` command where the system has only python3 (Debian
     * without python-is-python3): notebooks run `!python script.py`. */
    if (access(ROOT "/usr/bin/python", F_OK) < 0 && access(ROOT "/usr/bin/python3", X_OK) == 0
        && symlink("/usr/bin/python3", ROOT BOX_BIN_DIR "/python") < 0)
        setup_fail("creating %s/python: %s", BOX_BIN_DIR, strerror(errno));
    _Static_assert(sizeof path <= sizeof sa.sun_path, "display socket path too long");
    memcpy(sa.sun_path, path, sizeof path);
    display_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (display_fd < 0 || bind(display_fd, (struct sockaddr *)&sa, sizeof sa) < 0
        || chmod(path, 0666) < 0 || listen(display_fd, 16) < 0)
        setup_fail("creating the display socket %s: %s", BOX_DISPLAY_SOCKET, strerror(errno));
}

static void
setup_fs(struct sources *s, const struct boxinit_args *a)
{
    char path[256], opts[64];

    if (mount("tmpfs", ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") < 0)
        setup_fail("mounting the box's root (tmpfs): %s", strerror(errno));
    for (size_t i = 0; i < N_SYS; i++) { /* with whatever the host mounted below them */
        place_src(&s->sys[i], BIND_RO, RESTRICT_WITH_TREE);
        if (s->sys[i].bound)
            restrict_tree(s->sys[i].target, NULL, 0, BIND_RO);
    }

    /* /etc is a tmpfs of its own, so that one call makes it and the ~20
     * binds in it read-only (restrict_tree). */
    make_dir(ROOT "/etc", 0755);
    if (mount("tmpfs", ROOT "/etc", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") < 0)
        setup_fail("mounting /etc: %s", strerror(errno));
    for (size_t i = 0; i < N_ETC; i++)
        place_src(&s->etc[i], BIND_RO, RESTRICT_WITH_TREE);
    make_file(ROOT "/etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                  "user:x:1000:1000:cellgate:/mnt/data:/bin/bash\n"
                                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    make_file(ROOT "/etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n");
    make_file(ROOT "/etc/hosts", "127.0.0.1\tlocalhost cellgate\n::1\tlocalhost ip6-localhost\n");
    make_file(ROOT "/etc/hostname", "cellgate\n");
    restrict_tree(ROOT "/etc", s->etc, N_ETC, BIND_RO);

    setup_display(&s->self);

    make_dir(ROOT "/mnt", 0755);
    make_dir(ROOT BOX_HOME, 0755);
    place_src(&s->data, BIND_RW, RESTRICT_NOW);

    make_dir(ROOT "/tmp", 01777);
    snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)a->tmp_bytes);
    if (mount("tmpfs", ROOT "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        setup_fail("mounting /tmp: %s", strerror(errno));

    make_dir(ROOT "/dev", 0755);
    if (mount("tmpfs", ROOT "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
        setup_fail("mounting /dev: %s", strerror(errno));
    for (size_t i = 0; i < N_DEV; i++)
        place_src(&s->dev[i], BIND_DEVICE, RESTRICT_WITH_TREE);
    restrict_tree(ROOT "/dev", s->dev, N_DEV, BIND_DEVICE);
    make_dir(ROOT "/dev/shm", 01777);
    snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)a->tmp_bytes);
    if (mount("tmpfs", ROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        setup_fail("mounting /dev/shm: %s", strerror(errno));
    static const char *const links[][2] = {
        { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
        { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(path, sizeof path, ROOT "/dev/%s", links[i][1]);
        if (symlink(links[i][0], path) < 0)
            setup_fail("symlink %s: %s", path, strerror(errno));
    }

    make_dir(ROOT "/proc", 0555);
    if (mount("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        setup_fail("mounting /proc: %s", strerror(errno));

    make_dir(ROOT "/.oldroot", 0700);
    if (syscall(SYS_pivot_root, ROOT, ROOT "/.oldroot") < 0)
        setup_fail("pivot_root: %s", strerror(errno));
    if (chdir("/") < 0 || umount2("/.oldroot", MNT_DETACH) < 0 || rmdir("/.oldroot") < 0)
        setup_fail("leaving the host's root: %s", strerror(errno));
    if (mount("none", "/", "none", MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        setup_fail("making the box's root read-only: %s", strerror(errno));
    if (chdir(BOX_HOME) < 0)
        setup_fail("chdir %s: %s", BOX_HOME, strerror(errno));
}

/* Loopback is down in a new network namespace: bring it up. */
static void
loopback_up(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0)
        setup_fail("socket: %s", strerror(errno));
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        setup_fail("reading loopback's flags: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        setup_fail("bringing loopback up: %s", strerror(errno));
    close(s);
}

static int registry_fd = -1; /* the registry gateway's listening socket, handed over with READY */

/* Takes the registry gateway's port on the box's loopback before any code
 * runs, so no process in the box can take it first; the kernel gets the
 * listening socket with READY and hands it to the gateway outside. */
static void
setup_registry(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BOX_REGISTRY_PORT),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

    registry_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (registry_fd < 0 || bind(registry_fd, (struct sockaddr *)&sa, sizeof sa) < 0
        || listen(registry_fd, 128) < 0)
        setup_fail("listening at 127.0.0.1:%d for the registry gateway: %s", BOX_REGISTRY_PORT,
                   strerror(errno));
}

/* ---- serving ------------------------------------------------------------- */

static pid_t children[MAX_CHILDREN]; /* processes the kernel asked for */

static void
send_msg(const struct boxmsg *m, size_t len)
{
    if (send(ctl_fd, m, len, MSG_NOSIGNAL) < 0)
        _exit(0); /* the kernel is gone: so is the box */
}

/* How memory and processes are limited: what rlimits must make up for
 * (BOXMSG_LIMITS, before READY). */
static struct boxmsg_limits enforced;

/* What a child does after its fds are placed and before exec. */
struct child_setup {
    const struct boxinit_args *a;
    const struct sock_fprog *prog;
};

static int
child_hook(void *arg)
{
    const struct child_setup *cs = arg;

    if (limits_apply_rlimits(&cs->a->limits, (enum mem_mechanism)enforced.mem,
                             enforced.pids_by_cgroup) < 0)
        return -1;
    if (drop_all_caps() < 0)
        return -1;
    return box_seccomp_load(cs->prog); /* last: nothing after it but exec */
}

static void
serve_spawn(struct boxmsg *m, size_t len, int *fds, size_t n_fds,
            const struct boxinit_args *a, const struct sock_fprog *prog)
{
    const char *argv[256], *envp[256];
    struct spawn_fd placed[SPAWN_MAX_FDS];
    struct boxmsg reply = { .type = BOXMSG_SPAWNED };
    const char *p = m->text, *end = (const char *)m + len;
    char err[256];

    if (m->argc == 0 || m->argc > 255 || m->envc > 255 || n_fds != m->n_fds
        || n_fds > SPAWN_MAX_FDS) {
        reply.error = EINVAL;
        goto out;
    }
    /* argv, then envp, then the working directory ("" for the home). */
    const char *cwd = BOX_HOME;
    for (uint32_t i = 0; i < m->argc + m->envc + 1; i++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (!nul) {
            reply.error = EINVAL;
            goto out;
        }
        if (i < m->argc)
            argv[i] = p;
        else if (i < m->argc + m->envc)
            envp[i - m->argc] = p;
        else if (*p)
            cwd = p;
        p = nul + 1;
    }
    argv[m->argc] = NULL;
    envp[m->envc] = NULL;
    for (size_t i = 0; i < n_fds; i++)
        placed[i] = (struct spawn_fd){ m->child_fds[i], fds[i] };
    struct spawn_spec spec = { .argv = argv, .envp = envp, .cwd = cwd, .fds = placed,
                               .n_fds = n_fds, .tty = m->tty == 1 };
    struct child_setup cs = { a, prog };
    struct spawn_hook hook = { child_hook, &cs, "applying limits, capabilities and seccomp" };
    int report[2];
    if (spawn_report_pipe(report) < 0) {
        reply.error = errno;
        goto out;
    }
    /* In its own session and process group, signalled as one. */
    pid_t pid = spawn_vfork(&spec, report[1], &hook, 1);
    if (pid < 0) {
        reply.error = errno;
        close(report[0]);
        close(report[1]);
        goto out;
    }
    close(report[1]);
    if (spawn_wait_exec(report[0], &spec, &hook, err, sizeof err) != CG_OK) {
        waitpid(pid, NULL, 0);
        reply.error = EIO;
        char buf[sizeof reply + sizeof err];
        struct boxmsg *r = (struct boxmsg *)buf;
        *r = reply;
        memcpy(r->text, err, strlen(err) + 1);
        send_msg(r, sizeof *r + strlen(err) + 1);
        for (size_t i = 0; i < n_fds; i++)
            close(fds[i]);
        return;
    }
    for (size_t i = 0; i < MAX_CHILDREN; i++)
        if (!children[i]) {
            children[i] = pid;
            break;
        }
    reply.pid = pid;
out:
    for (size_t i = 0; i < n_fds; i++)
        close(fds[i]);
    send_msg(&reply, sizeof reply);
}

/* Reaps every exited process (orphans of the box come to us, as pid 1)
 * and reports the ones the kernel started. */
static void
reap(void)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (size_t i = 0; i < MAX_CHILDREN; i++)
            if (children[i] == pid) {
                children[i] = 0;
                struct boxmsg m = { .type = BOXMSG_EXITED, .pid = pid, .status = status };
                send_msg(&m, sizeof m);
            }
}

/* Receives one message with its fds. Returns its length, 0 at EOF, -1 on error. */
static ssize_t
recv_msg(struct boxmsg *m, size_t cap, int *fds, size_t *n_fds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * SPAWN_MAX_FDS)];
    struct iovec iov = { m, cap };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    ssize_t n = recvmsg(ctl_fd, &mh, MSG_CMSG_CLOEXEC);

    *n_fds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n > 0 && c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds, CMSG_DATA(c), k * sizeof(int));
            *n_fds = k;
        }
    return n;
}

static void __attribute__((noreturn))
serve(const struct boxinit_args *a, const struct sock_fprog *prog)
{
    static char buf[BOXMSG_MAX];
    struct boxmsg *m = (struct boxmsg *)buf;
    sigset_t set;
    int fds[SPAWN_MAX_FDS];
    size_t n_fds;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        setup_fail("signalfd: %s", strerror(errno));
    /* READY carries the display socket and, if asked for, the registry
     * gateway's: the kernel listens on them (boxproto.h). */
    int handed[2] = { display_fd, registry_fd };
    size_t n_handed = registry_fd >= 0 ? 2 : 1;
    struct boxmsg ready = { .type = BOXMSG_READY };
    char cbuf[CMSG_SPACE(sizeof handed)] = { 0 };
    struct iovec iov = { &ready, sizeof ready };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = CMSG_SPACE(n_handed * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n_handed * sizeof(int));
    memcpy(CMSG_DATA(c), handed, n_handed * sizeof(int));
    if (sendmsg(ctl_fd, &mh, MSG_NOSIGNAL) < 0)
        _exit(0); /* the kernel is gone: so is the box */
    close(display_fd);
    if (registry_fd >= 0)
        close(registry_fd);

    for (;;) {
        struct pollfd p[2] = { { ctl_fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            _exit(1);
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            reap();
        }
        if (!p[0].revents)
            continue;
        ssize_t n = recv_msg(m, sizeof buf - 1, fds, &n_fds);
        if (n <= 0)
            _exit(0); /* the kernel closed the box */
        buf[n] = '\0';
        if ((size_t)n >= sizeof *m && m->type == BOXMSG_SPAWN)
            serve_spawn(m, (size_t)n, fds, n_fds, a, prog);
        else if ((size_t)n >= sizeof *m && m->type == BOXMSG_SIGNAL && m->pid > 1)
            kill(-m->pid, m->status);
        else
            for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
    }
}

/* Takes the kernel's first message, LIMITS (boxproto.h): exits when the
 * kernel is gone, a set-up failure for anything else. */
static void
receive_limits(void)
{
    struct boxmsg m;
    struct iovec iov[2] = { { &m, sizeof m }, { &enforced, sizeof enforced } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t n;

    do
        n = recvmsg(ctl_fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        _exit(0); /* the kernel is gone: so is the box */
    if ((size_t)n != sizeof m + sizeof enforced || m.type != BOXMSG_LIMITS) {
        errno = EPROTO;
        setup_fail("the kernel did not say how the box's limits are enforced");
    }
}

void
boxinit_main(const struct boxinit_args *a)
{
    char byte;

    ctl_fd = a->ctl;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "cellgate-box");
    /* Wait until the kernel has written our uid/gid maps. */
    if (read(a->sync, &byte, 1) != 1)
        _exit(1);
    close(a->sync);
    static struct sources src;
    open_sources(&src, a);
    become_box_user();
    setup_fs(&src, a);
    if (sethostname("cellgate", 8) < 0)
        setup_fail("sethostname: %s", strerror(errno));
    loopback_up();
    if (a->registry)
        setup_registry();
    drop_bounding_set();
    receive_limits();
    serve(a, box_seccomp_prog()); /* made when cellgate was built */
}
