/*
 * box.c - creating, using and removing a box, from the kernel's side (see
 * box.h; the inside is boxinit.c, the messages boxproto.h).
 */
#include "sandbox/box.h"

#include "common/cgerr.h"
#include "common/log.h"
#include "sandbox/boxfs.h"
#include "sandbox/boxinit.h"
#include "sandbox/boxproto.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534        /* the host uid a root kernel's box runs as */
#define REPLY_TIMEOUT_MS 10000
#define MAX_QUEUED 64

struct box {
    struct spawner sp;      /* first: box_spawner() hands out &b->sp */
    pid_t init;             /* host pid of init */
    int ctl;                /* SOCK_SEQPACKET to init, -1 once it is gone */
    char *data_dir;
    bool keep_data;
    struct boxfs_volume *vol; /* what bounds /mnt/data, NULL when nothing does */
    struct box_limits limits;
    struct box_cgroup *cg;
    bool attached;          /* init is in the cgroup */
    bool ready;             /* init reported its set-up done */
    char failed[512];       /* why the set-up failed, if it did */
    int display_fd;         /* cellgate-display's listening socket, from READY; -1 */
    int registry_fd;        /* the registry gateway's, from READY after it; -1 */
    bool want_registry;     /* init was asked to listen for the registry gateway */
    struct { pid_t pid; int status; } exits[MAX_QUEUED]; /* read while awaiting a reply */
    size_t n_exits;
};

/* ---- creation ------------------------------------------------------------ */

/* mkdir -p, owned by uid/gid when we may choose (root). */
static int
make_data_dir(const char *path, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    char tmp[4096];
    size_t len = strlen(path);

    if (len >= sizeof tmp)
        return cg_fail(err, errlen, CG_ETOOBIG, "data directory path too long");
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return cg_fail(err, errlen, CG_ESYS, "cannot create %s: %s", tmp,
                               strerror(errno));
            *p = '/';
        }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return cg_fail(err, errlen, CG_ESYS, "cannot create %s: %s", path, strerror(errno));
    if (uid != geteuid() && chown(path, uid, gid) < 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot chown %s: %s", path, strerror(errno));
    return CG_OK;
}

static int
write_proc(pid_t pid, const char *file, const char *text, char *err, size_t errlen)
{
    char path[64];
    int fd;

    snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, file);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return cg_fail(err, errlen, CG_ESYS, "writing %s: %s", path, strerror(e));
    }
    close(fd);
    return CG_OK;
}

/* Maps BOX_UID inside to host_uid outside (and the same for groups). */
static int
write_id_maps(pid_t pid, uid_t host_uid, gid_t host_gid, char *err, size_t errlen)
{
    char map[64];
    int rc;

    snprintf(map, sizeof map, "%d %lu 1\n", BOX_UID, (unsigned long)host_uid);
    if ((rc = write_proc(pid, "uid_map", map, err, errlen)) != CG_OK)
        return rc;
    if ((rc = write_proc(pid, "setgroups", "deny", err, errlen)) != CG_OK)
        return rc;
    snprintf(map, sizeof map, "%d %lu 1\n", BOX_UID, (unsigned long)host_gid);
    return write_proc(pid, "gid_map", map, err, errlen);
}

/* Starts preparing the volume that bounds /mnt/data (boxfs.h), or says in
 * the log what is not bounded and why. Before clone: it forks. */
static void
start_data_volume(struct box *b, const struct box_opts *o, bool root, uid_t uid, gid_t gid)
{
    char why[256];

    if (o->limits.data_size == 0) {
        log_info("/mnt/data is not bounded (--data-size 0)");
        return;
    }
    if (!root) {
        log_warn("/mnt/data is not bounded: a filesystem image for --data-size needs root; "
                 "each file is still bounded by --fsize");
        return;
    }
    b->vol = boxfs_volume_start(b->data_dir, o->limits.data_size, uid, gid, o->keep_data, why,
                                sizeof why);
    if (!b->vol)
        log_warn("/mnt/data is not bounded: %s", why);
}

/* Puts the volume in the box once its init has built it (before any code
 * runs); when that fails, /mnt/data stays the plain directory, and the log
 * says it is not bounded. */
static void
mount_data_volume(struct box *b)
{
    char why[300];

    if (!b->vol || boxfs_volume_ready(b->vol))
        return;
    if (boxfs_volume_mount(b->vol, b->init, why, sizeof why) == CG_OK) {
        log_info("/mnt/data is bounded: a filesystem of %llu bytes (%s.img)",
                 (unsigned long long)b->limits.data_size, b->data_dir);
        return;
    }
    log_warn("/mnt/data is not bounded: %s", why);
    boxfs_volume_release(&b->vol, b->keep_data);
}

/* One clear message per way the machine can refuse namespaces. */
static int
clone_error(int e, char *err, size_t errlen)
{
    switch (e) {
    case EINVAL:
        return cg_fail(err, errlen, CG_EUNSUPP, "cannot build the box: this Linux kernel has "
                       "no user namespaces (CONFIG_USER_NS); run with --no-sandbox to run "
                       "code without isolation");
    case EPERM:
        return cg_fail(err, errlen, CG_ESYS, "cannot build the box: creating user namespaces "
                       "is not permitted here (EPERM: kernel.unprivileged_userns_clone=0, an "
                       "AppArmor/seccomp policy, or a container that forbids it)");
    case ENOSPC:
    case EUSERS:
        return cg_fail(err, errlen, CG_ESYS, "cannot build the box: the limit on user "
                       "namespaces is reached (ENOSPC: see /proc/sys/user/max_user_namespaces)");
    }
    return cg_fail(err, errlen, CG_ESYS, "cannot build the box: clone: %s", strerror(e));
}

/* Receives one message from init. fds may come with READY (the display
 * socket, then the registry gateway's): they are kept; fds with anything
 * else are closed. Returns what recvmsg returns. */
static ssize_t
recv_box(struct box *b, void *buf, size_t cap, int flags)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = { buf, cap };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    ssize_t n = recvmsg(b->ctl, &mh, flags | MSG_CMSG_CLOEXEC);
    const struct boxmsg *m = buf;
    bool ready = n >= (ssize_t)sizeof *m && m->type == BOXMSG_READY;

    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
            if (ready && b->display_fd < 0)
                b->display_fd = fd;
            else if (ready && b->registry_fd < 0 && b->want_registry)
                b->registry_fd = fd;
            else
                close(fd);
        }
    }
    return n;
}

/* Waits for a message from init (bounded in time). Returns its length, 0
 * when init is gone, -1 on timeout/error. */
static ssize_t
recv_timed(struct box *b, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = { b->ctl, POLLIN, 0 };
    int rc;

    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc <= 0)
        return -1;
    ssize_t n = recv_box(b, buf, cap, 0);
    return n < 0 ? -1 : n;
}

/* True when we are root of the machine, not only of a user namespace: only
 * then may the box's user be nobody rather than our own uid. */
static bool
machine_root(void)
{
    char line[128] = "";
    unsigned long inside, outside, count;
    FILE *f;

    if (geteuid() != 0 || !(f = fopen("/proc/self/uid_map", "re")))
        return false;
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    return sscanf(line, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0
           && outside == 0 && count == 4294967295UL;
}

/* Tells init how memory and processes are limited (boxproto.h). */
static int
send_limits(struct box *b, char *err, size_t errlen)
{
    struct boxmsg m = { .type = BOXMSG_LIMITS };
    struct boxmsg_limits l = { .mem = (int32_t)cgroup_mechanism(b->cg),
                               .pids_by_cgroup = cgroup_has_pids(b->cg) };
    struct iovec iov[2] = { { &m, sizeof m }, { &l, sizeof l } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

    if (sendmsg(b->ctl, &mh, MSG_NOSIGNAL) < 0)
        return cg_fail(err, errlen, CG_ESYS, "starting the box: %s", strerror(errno));
    return CG_OK;
}

static int box_start(struct spawner *sp, const struct spawn_spec *spec, pid_t *pid, char *err,
                     size_t errlen);
static int box_signal(struct spawner *sp, pid_t pid, int sig);

struct box *
box_new(const struct box_opts *o, char *err, size_t errlen)
{
    struct box *b = calloc(1, sizeof *b);
    int sv[2] = { -1, -1 }, sync[2] = { -1, -1 };
    bool root = machine_root();
    uid_t host_uid = root ? NOBODY : geteuid();
    gid_t host_gid = root ? NOBODY : getegid();
    if (!b) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    b->sp = (struct spawner){ .start = box_start, .signal = box_signal };
    b->ctl = -1;
    b->display_fd = -1;
    b->registry_fd = -1;
    b->want_registry = o->registry;
    b->limits = o->limits;
    b->keep_data = o->keep_data;
    b->data_dir = strdup(o->data_dir);
    if (!b->data_dir || make_data_dir(o->data_dir, host_uid, host_gid, err, errlen) != CG_OK)
        goto fail;
    if (o->volume) {
        b->vol = o->volume;
        boxfs_volume_rehome(b->vol);
    } else {
        start_data_volume(b, o, root, host_uid, host_gid);
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        cg_fail(err, errlen, CG_ESYS, "socketpair: %s", strerror(errno));
        goto fail;
    }
    struct boxinit_args a = {
        .ctl = sv[1], .sync = sync[0], .data_dir = b->data_dir, .tmp_bytes = o->limits.tmp,
        .limits = o->limits, .registry = o->registry,
    };
    /* fork() with namespaces: the child has the calling thread only, and
     * goes on using this program's code and memory without exec (box.h). */
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS |
                                   CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
                               NULL, NULL, NULL, NULL);
    if (pid < 0) {
        clone_error(errno, err, errlen);
        goto fail;
    }
    if (pid == 0) {
        /* Nothing else the creating process had open (a kernel's listening
         * sockets, its logs, other boxes' sockets) stays reachable in init. */
        spawn_close_all_but(sv[1], sync[0]);
        boxinit_main(&a);
    }
    b->init = pid;
    close(sv[1]);
    close(sync[0]);
    sv[1] = sync[0] = -1;
    b->ctl = sv[0];
    sv[0] = -1;
    if (write_id_maps(pid, host_uid, host_gid, err, errlen) != CG_OK)
        goto fail;
    if (write(sync[1], "", 1) != 1) {
        cg_fail(err, errlen, CG_ESYS, "starting the box: %s", strerror(errno));
        goto fail;
    }
    close(sync[1]);
    sync[1] = -1;
    /* The cgroups are made while init builds the box; it learns how the
     * limits are enforced before it reports ready (box_ready attaches it). */
    b->cg = cgroup_create(&o->limits, o->name, err, errlen);
    if (!b->cg || send_limits(b, err, errlen) != CG_OK)
        goto fail;
    return b; /* init builds the box now; box_ready() collects it */
fail:
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (sync[i] >= 0)
            close(sync[i]);
    }
    box_destroy(&b);
    return NULL;
}

/* Takes init's READY message (m, n bytes): set-up done, or why not. */
static void
take_ready(struct box *b, const struct boxmsg *m, size_t n)
{
    b->ready = true;
    if (m->error)
        snprintf(b->failed, sizeof b->failed, "cannot build the box: %.*s",
                 (int)(n - sizeof *m), m->text);
}

int
box_ready(struct box *b, char *err, size_t errlen)
{
    char buf[sizeof(struct boxmsg) + 600];
    struct boxmsg *m = (struct boxmsg *)buf;

    /* Done here, after the kernel has bound its sockets, and always before
     * init starts a process. (Attaching to a v1 cgroup once waited for an
     * RCU grace period, ~15 ms; on Linux 6.18 it takes ~0.2 ms.) */
    if (!b->attached) {
        if (cgroup_attach(b->cg, b->init, err, errlen) != CG_OK)
            return CG_ESYS;
        b->attached = true;
        cgroup_sweep(b->cg); /* while init sets up */
    }
    while (!b->ready) {
        ssize_t n = recv_timed(b, buf, sizeof buf - 1, REPLY_TIMEOUT_MS);
        if (n < (ssize_t)sizeof *m)
            return cg_fail(err, errlen, CG_ESYS, "cannot build the box: its init %s",
                           n < 0 ? "did not answer in time" : "exited during set-up");
        if (m->type == BOXMSG_READY)
            take_ready(b, m, (size_t)n);
    }
    if (b->failed[0])
        return cg_fail(err, errlen, CG_ESYS, "%s", b->failed);
    mount_data_volume(b);
    return CG_OK;
}

/* ---- removal ------------------------------------------------------------- */

/* Makes directories writable on the way down, so read-only ones that code
 * in the box left behind can still be emptied. */
static int
make_writable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_D && !S_ISLNK(st->st_mode))
        chmod(path, 0700);
    return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path); /* symlinks are removed, never followed (FTW_PHYS) */
    return 0;
}

void
box_destroy(struct box **bp)
{
    if (!bp || !*bp)
        return;
    struct box *b = *bp;
    if (b->ctl >= 0)
        close(b->ctl); /* init exits, and the pid namespace with it */
    if (b->display_fd >= 0)
        close(b->display_fd);
    if (b->registry_fd >= 0)
        close(b->registry_fd);
    if (b->init > 0) {
        kill(b->init, SIGKILL);
        waitpid(b->init, NULL, 0);
    }
    cgroup_destroy(&b->cg);
    boxfs_volume_release(&b->vol, b->keep_data);
    /* An empty directory goes in one call; the walks are for the rest. */
    if (b->data_dir && !b->keep_data && rmdir(b->data_dir) < 0 && errno != ENOENT) {
        nftw(b->data_dir, make_writable, 32, FTW_PHYS | FTW_MOUNT);
        nftw(b->data_dir, remove_entry, 32, FTW_PHYS | FTW_DEPTH | FTW_MOUNT);
    }
    free(b->data_dir);
    free(b);
    *bp = NULL;
}

/* ---- use ------------------------------------------------------------------ */

struct spawner *
box_spawner(struct box *b)
{
    return &b->sp;
}

int
box_fd(const struct box *b)
{
    return b->ctl;
}

int
box_take_display_fd(struct box *b)
{
    int fd = b->display_fd;

    b->display_fd = -1;
    return fd;
}

int
box_take_registry_fd(struct box *b)
{
    int fd = b->registry_fd;

    b->registry_fd = -1;
    return fd;
}

pid_t
box_init_pid(const struct box *b)
{
    return b->init;
}

enum mem_mechanism
box_mem_mechanism(const struct box *b)
{
    return cgroup_mechanism(b->cg);
}

uint64_t
box_oom_kills(const struct box *b)
{
    return cgroup_oom_kills(b->cg);
}

uint64_t
box_pids_hits(const struct box *b)
{
    return cgroup_pids_hits(b->cg);
}

bool
box_pids_counted(const struct box *b)
{
    return cgroup_has_pids(b->cg);
}

void
box_keep_data(struct box *b)
{
    b->keep_data = true;
}

struct boxfs_volume *
box_take_volume(struct box *b)
{
    struct boxfs_volume *v = b->vol;

    b->vol = NULL;
    b->keep_data = true;
    return v;
}

const struct box_limits *
box_limits(const struct box *b)
{
    return &b->limits;
}

/* Appends a NUL-terminated string to the message text. */
static int
put_str(char *buf, size_t *len, size_t cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*len + n > cap)
        return -1;
    memcpy(buf + *len, s, n);
    *len += n;
    return 0;
}

static int
box_start(struct spawner *sp, const struct spawn_spec *spec, pid_t *pidp, char *err,
          size_t errlen)
{
    struct box *b = (struct box *)sp;
    static char buf[BOXMSG_MAX];
    struct boxmsg *m = (struct boxmsg *)buf;
    size_t len = offsetof(struct boxmsg, text);
    char cbuf[CMSG_SPACE(sizeof(int) * SPAWN_MAX_FDS)] = { 0 };

    if (b->ctl < 0)
        return cg_fail(err, errlen, CG_ESYS, "the box is gone");
    if (box_ready(b, err, errlen) != CG_OK)
        return CG_ESYS;
    if (spec->n_fds > SPAWN_MAX_FDS)
        return cg_fail(err, errlen, CG_ETOOBIG, "too many fds");
    memset(m, 0, sizeof *m);
    m->type = BOXMSG_SPAWN;
    m->n_fds = (uint32_t)spec->n_fds;
    m->tty = spec->tty ? 1 : 0;
    for (size_t i = 0; i < spec->n_fds; i++)
        m->child_fds[i] = spec->fds[i].child_fd;
    for (const char *const *a = spec->argv; *a; a++, m->argc++)
        if (put_str(buf, &len, sizeof buf, *a) < 0)
            return cg_fail(err, errlen, CG_ETOOBIG, "command line too long for the box");
    for (const char *const *e = spec->envp; *e; e++, m->envc++)
        if (put_str(buf, &len, sizeof buf, *e) < 0)
            return cg_fail(err, errlen, CG_ETOOBIG, "environment too large for the box");
    if (put_str(buf, &len, sizeof buf, spec->cwd ? spec->cwd : "") < 0)
        return cg_fail(err, errlen, CG_ETOOBIG, "working directory too long");

    struct iovec iov = { buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (spec->n_fds) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * spec->n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * spec->n_fds);
        for (size_t i = 0; i < spec->n_fds; i++)
            memcpy(CMSG_DATA(c) + i * sizeof(int), &spec->fds[i].parent_fd, sizeof(int));
    }
    if (sendmsg(b->ctl, &mh, MSG_NOSIGNAL) < 0)
        return cg_fail(err, errlen, CG_ESYS, "asking the box to start %s: %s", spec->argv[0],
                       strerror(errno));
    /* Exits that arrive before the answer are kept for box_events(). */
    for (;;) {
        char rbuf[sizeof(struct boxmsg) + 300];
        struct boxmsg *r = (struct boxmsg *)rbuf;
        ssize_t n = recv_timed(b, rbuf, sizeof rbuf - 1, REPLY_TIMEOUT_MS);
        if (n < (ssize_t)sizeof *r)
            return cg_fail(err, errlen, CG_ESYS, "the box did not start %s (%s)", spec->argv[0],
                           n == 0 ? "its init is gone" : "no answer");
        rbuf[n] = '\0';
        if (r->type == BOXMSG_EXITED && b->n_exits < MAX_QUEUED) {
            b->exits[b->n_exits].pid = r->pid;
            b->exits[b->n_exits++].status = r->status;
            continue;
        }
        if (r->type != BOXMSG_SPAWNED)
            continue;
        if (r->error)
            return cg_fail(err, errlen, CG_ESYS, "%s", (size_t)n > sizeof *r && r->text[0]
                               ? r->text : strerror(r->error));
        *pidp = r->pid;
        return CG_OK;
    }
}

static int
box_signal(struct spawner *sp, pid_t pid, int sig)
{
    struct box *b = (struct box *)sp;
    struct boxmsg m = { .type = BOXMSG_SIGNAL, .pid = pid, .status = sig };

    if (b->ctl < 0 || pid <= 1) {
        errno = ESRCH;
        return -1;
    }
    return send(b->ctl, &m, sizeof m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

int
box_events(struct box *b, void (*exited)(void *ctx, pid_t pid, int status), void *ctx)
{
    for (size_t i = 0; i < b->n_exits; i++)
        exited(ctx, b->exits[i].pid, b->exits[i].status);
    b->n_exits = 0;
    while (b->ctl >= 0) {
        char buf[sizeof(struct boxmsg) + 600];
        struct boxmsg *m = (struct boxmsg *)buf;
        ssize_t n = recv_box(b, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return CG_OK;
        if (n <= 0) {
            close(b->ctl);
            b->ctl = -1;
            break;
        }
        if ((size_t)n >= sizeof *m && m->type == BOXMSG_EXITED)
            exited(ctx, m->pid, m->status);
        else if ((size_t)n >= sizeof *m && m->type == BOXMSG_READY)
            take_ready(b, m, (size_t)n);
    }
    return CG_ESYS; /* init is gone, and everything in the box with it */
}
