/*
 * boxfs.c - files inside the box as the kernel reaches them (see boxfs.h).
 * Reads go through openat2(RESOLVE_IN_ROOT) from the box's root; writes
 * walk to the parent directory one component at a time with
 * RESOLVE_NO_SYMLINKS, create a temporary file there and rename it onto
 * the final name, so no symlink the box plants is ever followed out.
 *
 * Below those, the data volume that bounds /mnt/data: an ext4 image on a
 * loop device, prepared by a process of its own while the box is built.
 */
#include "sandbox/boxfs.h"

#include "common/cgerr.h"
#include "common/sibling.h"
#include "sandbox/boxpaths.h"
#include "sandbox/spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/ioprio.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEPTH_MAX 128 /* directories in a path */

struct boxfs_file {
    int dir_fd;         /* the final name's directory (O_PATH) */
    int fd;             /* the temporary file, open for writing */
    char tmp[48];       /* its name in dir_fd */
    char *name;         /* the final name in dir_fd */
    char *path;         /* the final path, as the box sees it */
};

static int
openat2_fd(int dirfd, const char *path, int flags, unsigned long long resolve)
{
    struct open_how how = { .flags = (unsigned long long)flags, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* The client's name for an errno. */
static const char *
ename_of(int e)
{
    switch (e) {
    case ENOENT: return "FileNotFoundError";
    case EEXIST: return "FileExistsError";
    case EISDIR: return "IsADirectoryError";
    case ENOTDIR: return "NotADirectoryError";
    case EACCES: case EPERM: return "PermissionError";
    case ELOOP: case EXDEV: return "PathRefused";
    }
    return "OSError";
}

/* Fills ename and err from errno e; returns CG_ENOTFOUND or CG_ESYS, errno kept. */
static int
sys_fail(int e, const char **ename, char *err, size_t errlen, const char *path,
         const char *doing)
{
    if (ename)
        *ename = ename_of(e);
    if (e == ELOOP)
        cg_fail(err, errlen, CG_ESYS, "%s: %s: a symbolic link is in the way (not followed)",
                path, doing);
    else
        cg_fail(err, errlen, CG_ESYS, "%s: %s: %s", path, doing, strerror(e));
    errno = e;
    return e == ENOENT ? CG_ENOTFOUND : CG_ESYS;
}

int
boxfs_root_open(pid_t init_pid, int *root_fd, char *err, size_t errlen)
{
    char path[64];

    snprintf(path, sizeof path, "/proc/%ld/root", (long)init_pid);
    *root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*root_fd < 0)
        return cg_fail(err, errlen, CG_ESYS, "opening the box's root %s: %s", path,
                       strerror(errno));
    return CG_OK;
}

int
boxfs_home_owner(int root_fd, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
    struct stat st;

    if (root_fd == AT_FDCWD) {
        *uid = geteuid();
        *gid = getegid();
        return CG_OK;
    }
    int fd = openat2_fd(root_fd, BOX_HOME, O_PATH | O_DIRECTORY | O_CLOEXEC,
                        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return cg_fail(err, errlen, CG_ESYS, "%s in the box: %s", BOX_HOME, strerror(e));
    }
    close(fd);
    *uid = st.st_uid;
    *gid = st.st_gid;
    return CG_OK;
}

int
boxfs_open_read(int root_fd, const char *path, int *fd, const char **ename, char *err,
                size_t errlen)
{
    char full[PATH_MAX];
    unsigned long long resolve = RESOLVE_NO_MAGICLINKS;
    struct statfs fs;

    *fd = -1;
    if (root_fd != AT_FDCWD) {
        resolve |= RESOLVE_IN_ROOT;
        if (path[0] != '/') {
            if ((size_t)snprintf(full, sizeof full, "%s/%s", BOX_HOME, path) >= sizeof full)
                return sys_fail(ENAMETOOLONG, ename, err, errlen, path, "opening");
            path = full;
        }
    }
    int f = openat2_fd(root_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, resolve);
    if (f < 0)
        return sys_fail(errno, ename, err, errlen, path, "opening");
    /* The box's /proc and /sys answer to who opens them: the kernel may be
     * host root, so it reads nothing there on the box's behalf. */
    if (root_fd != AT_FDCWD && fstatfs(f, &fs) == 0
        && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC)) {
        close(f);
        return sys_fail(EACCES, ename, err, errlen, path, "not read from /proc or /sys");
    }
    *fd = f;
    return CG_OK;
}

/* ---- atomic create ------------------------------------------------------- */

/* The path's components, ".." resolved in the text when in_box. */
struct parts {
    char *buf;                  /* a copy of the path, cut at the slashes */
    const char *dir[DEPTH_MAX]; /* the directories, from the start */
    size_t n;
    const char *name;           /* the final component */
};

static int
split(const char *path, bool in_box, struct parts *p, const char **ename, char *err,
      size_t errlen)
{
    char full[PATH_MAX];
    const char *orig = path;

    memset(p, 0, sizeof *p);
    if (!*path) {
        if (ename)
            *ename = "ValueError";
        return cg_fail(err, errlen, CG_EINVAL, "the path is empty");
    }
    if (in_box && path[0] != '/') {
        if ((size_t)snprintf(full, sizeof full, "%s/%s", BOX_HOME, path) >= sizeof full)
            return sys_fail(ENAMETOOLONG, ename, err, errlen, orig, "creating");
        path = full;
    } else if (strlen(path) >= PATH_MAX) {
        return sys_fail(ENAMETOOLONG, ename, err, errlen, orig, "creating");
    }
    const char *last = strrchr(path, '/');
    last = last ? last + 1 : path;
    if (!*last || strcmp(last, ".") == 0 || strcmp(last, "..") == 0)
        return sys_fail(EISDIR, ename, err, errlen, orig, "it names a directory");
    if (!(p->buf = strdup(path)))
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");

    char *s = p->buf, *save = NULL;
    for (char *c = strtok_r(s, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strlen(c) > NAME_MAX)
            return sys_fail(ENAMETOOLONG, ename, err, errlen, orig, "creating");
        if (strcmp(c, ".") == 0)
            continue;
        if (in_box && strcmp(c, "..") == 0) {
            if (p->n)
                p->n--;
            continue;
        }
        if (p->n == DEPTH_MAX)
            return sys_fail(ENAMETOOLONG, ename, err, errlen, orig, "too many directories");
        p->dir[p->n++] = c;
    }
    /* The last component is a name (checked above), so it is on the list. */
    p->name = p->dir[--p->n];
    return CG_OK;
}

/*
 * Opens (creating if missing) directory c in dir; in the box a symlink is
 * refused. Returns the new fd or -1 with errno.
 */
static int
enter_dir(int dir, const char *c, bool in_box, uid_t uid, gid_t gid)
{
    unsigned long long resolve = RESOLVE_NO_MAGICLINKS;
    if (in_box)
        resolve |= RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;

    int fd = openat2_fd(dir, c, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    if (mkdirat(dir, c, 0755) != 0) {
        if (errno != EEXIST)
            return -1;
        /* Someone else made it meanwhile: theirs, not ours to chown. */
        return openat2_fd(dir, c, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
    }
    /* Opened for real (not O_PATH) to chown and chmod what was just made;
     * should the box have swapped in a symlink, it is not followed. */
    fd = openat2_fd(dir, c, O_RDONLY | O_DIRECTORY | O_CLOEXEC, resolve);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && ((uid != (uid_t)-1 && st.st_uid != uid)
                                || (gid != (gid_t)-1 && st.st_gid != gid))
        && fchown(fd, uid, gid) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    fchmod(fd, 0755);
    return fd;
}

static char *
join_box_path(const struct parts *p)
{
    size_t n = strlen(p->name) + 2;
    for (size_t i = 0; i < p->n; i++)
        n += strlen(p->dir[i]) + 1;
    char *s = malloc(n), *w = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        w += snprintf(w, n - (size_t)(w - s), "/%s", p->dir[i]);
    snprintf(w, n - (size_t)(w - s), "/%s", p->name);
    return s;
}

int
boxfs_create_atomic(int root_fd, const char *path, uid_t uid, gid_t gid,
                    struct boxfs_file **out, const char **ename, char *err, size_t errlen)
{
    bool in_box = root_fd != AT_FDCWD;
    struct parts p;
    struct boxfs_file *f = NULL;
    struct stat st;
    int dir = -1, rc;

    *out = NULL;
    rc = split(path, in_box, &p, ename, err, errlen);
    if (rc != CG_OK)
        goto out;
    if (in_box)
        dir = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    else
        dir = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        rc = sys_fail(errno, ename, err, errlen, path, "opening the root");
        goto out;
    }
    for (size_t i = 0; i < p.n; i++) {
        int next = enter_dir(dir, p.dir[i], in_box, uid, gid);
        if (next < 0) {
            int e = errno;
            char what[NAME_MAX + 32];
            snprintf(what, sizeof what, "directory \"%s\"", p.dir[i]);
            rc = sys_fail(e, ename, err, errlen, path, what);
            goto out;
        }
        close(dir);
        dir = next;
    }
    if (fstatat(dir, p.name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        rc = sys_fail(EISDIR, ename, err, errlen, path, "it names a directory");
        goto out;
    }

    if (!(f = calloc(1, sizeof *f)) || !(f->name = strdup(p.name))
        || !(f->path = in_box ? join_box_path(&p) : strdup(path))) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        if (ename)
            *ename = "MemoryError";
        goto out;
    }
    f->fd = -1;
    for (int tries = 0; f->fd < 0 && tries < 8; tries++) {
        unsigned char r[8];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            break;
        snprintf(f->tmp, sizeof f->tmp, ".cellgate-%02x%02x%02x%02x%02x%02x%02x%02x.part", r[0],
                 r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        f->fd = openat(dir, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f->fd < 0 && errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        rc = sys_fail(errno, ename, err, errlen, path, "creating a temporary file");
        f->tmp[0] = '\0';
        goto out;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(f->fd, uid, gid) != 0) {
        rc = sys_fail(errno, ename, err, errlen, path, "giving the file to the box user");
        goto out;
    }
    if (fchmod(f->fd, 0644) != 0) {
        rc = sys_fail(errno, ename, err, errlen, path, "setting its mode");
        goto out;
    }
    f->dir_fd = dir;
    dir = -1;
    *out = f;
    f = NULL;
out:
    if (f) {
        if (f->fd >= 0) {
            close(f->fd);
            unlinkat(dir, f->tmp, 0);
        }
        free(f->name);
        free(f->path);
        free(f);
    }
    if (dir >= 0)
        close(dir);
    free(p.buf);
    return rc;
}

int
boxfs_fd(const struct boxfs_file *f)
{
    return f->fd;
}

const char *
boxfs_path(const struct boxfs_file *f)
{
    return f->path;
}

int
boxfs_commit(struct boxfs_file **fp, const char **ename, char *err, size_t errlen)
{
    struct boxfs_file *f = *fp;
    int rc = CG_OK;

    if (fsync(f->fd) != 0) {
        rc = sys_fail(errno, ename, err, errlen, f->path, "writing it out");
    } else if (renameat(f->dir_fd, f->tmp, f->dir_fd, f->name) != 0) {
        int e = errno;
        struct stat st;
        /* Renaming a file onto a non-empty directory can say ENOTEMPTY. */
        if (fstatat(f->dir_fd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            e = EISDIR;
        rc = sys_fail(e, ename, err, errlen, f->path,
                      e == EISDIR ? "it names a directory" : "renaming into place");
    } else {
        f->tmp[0] = '\0';
        int d = openat(f->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            fsync(d);
            close(d);
        }
    }
    boxfs_abort(fp);
    return rc;
}

void
boxfs_abort(struct boxfs_file **fp)
{
    if (!fp || !*fp)
        return;
    struct boxfs_file *f = *fp;
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp[0])
        unlinkat(f->dir_fd, f->tmp, 0);
    close(f->dir_fd);
    free(f->name);
    free(f->path);
    free(f);
    *fp = NULL;
}

/* ---- the data volume ------------------------------------------------------ */

#define VOLUME_WAIT_MS 30000 /* the preparation's bound: mke2fs takes ~50 ms */
#define READY_DELAY_NS 20000000L /* 20 ms: see make_ready_later() */
#define LOOP_TRIES 8         /* another process may take the free loop device first */
/* Empty images made once per size and owner, copied for each box: a copy
 * of their ~200 KB costs well under a ms, mke2fs 40 to 150 ms (it fsyncs).
 * Named volume-<bytes>-<uid>-<gid>.img since they come without the 4 MB of
 * blocks reserved for growing the filesystem while mounted, which no box
 * volume does (resize_inode: ~90% of what each box copied), without
 * lost+found and with mode 0700 (the data-*.img and home-*.img made before
 * are no longer used). */
#define VOLUME_TEMPLATES "/var/cache/cellgate"

static const char *const mke2fs_paths[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs" };

struct boxfs_volume {
    char *dir;      /* the host directory it is mounted on */
    char *image;    /* "<dir>.img" */
    pid_t pid;      /* the keeper (not ours to reap: see boxfs.h) */
    int report;     /* its pipe: a NUL-terminated "" (mounted on dir) or why not; -1 once read */
    int life;       /* the keeper cleans up when this closes: we are gone */
    bool mounted;   /* mounted on dir */
    bool in_box;    /* mounted in the box too */
    char why[256];  /* why not, when the report said so */
};

static const char *
mke2fs_path(void)
{
    for (size_t i = 0; i < sizeof mke2fs_paths / sizeof mke2fs_paths[0]; i++)
        if (access(mke2fs_paths[i], X_OK) == 0)
            return mke2fs_paths[i];
    return NULL;
}

const char *
boxfs_volume_unsupported(void)
{
    if (geteuid() != 0)
        return "a filesystem image needs root; each file is still bounded by --fsize";
    if (access("/dev/loop-control", R_OK | W_OK) != 0)
        return "no loop devices here (/dev/loop-control)";
    if (!mke2fs_path())
        return "mke2fs is not installed (Debian: e2fsprogs)";
    return NULL;
}

static bool
is_mount_root(const char *dir)
{
    struct statx stx;

    return statx(AT_FDCWD, dir, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) == 0
           && (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
           && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static bool
dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool empty = true;

    if (!d)
        return false;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* Runs `debugfs -w -R request image`, quietly; failure is left to the caller
 * to notice. */
static void
run_debugfs(const char *image, const char *request)
{
    static const char *const paths[] = { "/usr/sbin/debugfs", "/sbin/debugfs" };
    const char *const argv[] = { "debugfs", "-w", "-R", request, image, NULL };
    const char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
    posix_spawn_file_actions_t fa;
    pid_t pid;

    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        if (access(paths[i], X_OK) != 0)
            continue;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        if (posix_spawn(&pid, paths[i], &fa, NULL, (char *const *)argv,
                        (char *const *)envp) == 0)
            waitpid(pid, NULL, 0);
        posix_spawn_file_actions_destroy(&fa);
        return;
    }
}

/* A new sparse image of bytes bytes with an empty ext4 in it, its root
 * owned by uid:gid. Lazy initialisation: mke2fs discards the file (so the
 * inode tables count as zeroed and nothing initialises them later) and
 * writes ~4 MB whatever the size; no blocks are reserved for root. */
static int
mkfs_image(const char *image, uint64_t bytes, uid_t uid, gid_t gid, char *why, size_t len)
{
    char ext[96];
    int fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), status = -1;
    pid_t pid;

    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
        cg_fail(why, len, CG_ESYS, "cannot create %s: %s", image, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(image);
        }
        return CG_ESYS;
    }
    close(fd);
    snprintf(ext, sizeof ext, "root_owner=%lu:%lu,lazy_itable_init=1,lazy_journal_init=1",
             (unsigned long)uid, (unsigned long)gid);
    const char *const argv[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", "-O",
                                 "^resize_inode", "-E", ext, image, NULL };
    const char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
    int rc = posix_spawn(&pid, mke2fs_path(), NULL, NULL, (char *const *)argv,
                         (char *const *)envp);
    if (rc == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)
        && WEXITSTATUS(status) == 0) {
        /* The home as the box wants it, so mounting a copy needs no
         * journalled change first: no lost+found, mode 0700. debugfs comes
         * with mke2fs (e2fsprogs); without it prepare() does both. */
        static const char *const fixes[] = { "rmdir lost+found", "sif / mode 040700" };
        for (size_t i = 0; i < sizeof fixes / sizeof fixes[0]; i++)
            run_debugfs(image, fixes[i]);
        return CG_OK;
    }
    unlink(image);
    return cg_fail(why, len, CG_ESYS, "mke2fs %s failed (%s)", image,
                   rc ? strerror(rc) : "see the log above");
}

/* Copies the data extents of from (size bytes) into the empty to, leaving
 * its holes holes. Returns 0, or -1 with errno. */
static int
copy_sparse(int from, int to, off_t size)
{
    off_t data = 0, hole;

    if (ftruncate(to, size) < 0)
        return -1;
    while ((data = lseek(from, data, SEEK_DATA)) >= 0) {
        if ((hole = lseek(from, data, SEEK_HOLE)) < 0)
            return -1;
        for (off_t in = data, out = data; in < hole;) {
            ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(hole - in), 0);
            if (n <= 0)
                return n < 0 ? -1 : (errno = EIO, -1);
        }
        data = hole;
    }
    return errno == ENXIO ? 0 : -1; /* ENXIO: no data past data */
}

/* The path of the template for bytes and uid:gid. */
static void
template_path(char *out, size_t len, uint64_t bytes, uid_t uid, gid_t gid)
{
    snprintf(out, len, VOLUME_TEMPLATES "/volume-%llu-%lu-%lu.img", (unsigned long long)bytes,
             (unsigned long)uid, (unsigned long)gid);
}

/* The template for bytes and uid:gid, made now if missing (atomically:
 * kernels starting together may each make one, the last rename wins).
 * Returns an fd open on it, or -1. */
static int
open_template(uint64_t bytes, uid_t uid, gid_t gid, char *why, size_t len)
{
    char path[128], tmp[160];

    template_path(path, sizeof path, bytes, uid, gid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    if ((mkdir(VOLUME_TEMPLATES, 0700) < 0 && errno != EEXIST)
        || mkfs_image(tmp, bytes, uid, gid, why, len) != CG_OK)
        return -1;
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* A copy of the template for bytes and uid:gid at image (which must not
 * exist), written to disk first with sync. CG_OK, or CG_ESYS with nothing
 * left at image (why says so when there was no template). */
static int
copy_template(const char *image, uint64_t bytes, uid_t uid, gid_t gid, bool sync, char *why,
              size_t len)
{
    int from = open_template(bytes, uid, gid, why, len), to = -1, rc = -1;

    if (from >= 0 && (to = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
        rc = copy_sparse(from, to, (off_t)bytes);
    if (rc == 0 && sync)
        rc = fsync(to);
    if (from >= 0)
        close(from);
    if (to >= 0)
        close(to);
    if (rc == 0)
        return CG_OK;
    if (to >= 0)
        unlink(image);
    return CG_ESYS;
}

/* A new image of bytes bytes with an empty ext4 in it, its root owned by
 * uid:gid: a copy of the template, else (no template possible here, or
 * another filesystem that copy_file_range will not cross) mke2fs's own. */
static int
make_image(const char *image, uint64_t bytes, uid_t uid, gid_t gid, char *why, size_t len)
{
    if (copy_template(image, bytes, uid, gid, false, why, len) == CG_OK)
        return CG_OK;
    return mkfs_image(image, bytes, uid, gid, why, len);
}

/* Attaches image to a free loop device that goes away with its last
 * user (autoclear): *loop is open on it, and must stay open until it is
 * mounted. Returns CG_OK with dev filled, or CG_ESYS with why. */
static int
attach_loop(const char *image, char *dev, size_t devlen, int *loop, char *why, size_t len)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int file = open(image, O_RDWR | O_CLOEXEC);
    int e = errno;

    *loop = -1;
    for (int i = 0; i < LOOP_TRIES && ctl >= 0 && file >= 0 && *loop < 0; i++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            e = errno;
            break;
        }
        snprintf(dev, devlen, "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        struct loop_config c = { .fd = (unsigned)file };
        /* Direct I/O: the image's blocks are not cached a second time, as
         * the host's file, outside the box's memory limit. */
        c.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        snprintf((char *)c.info.lo_file_name, sizeof c.info.lo_file_name, "%s", image);
        if (fd >= 0 && ioctl(fd, LOOP_CONFIGURE, &c) == 0) {
            *loop = fd;
            break;
        }
        e = errno;
        if (fd >= 0)
            close(fd);
        if (e != EBUSY)
            break;
    }
    if (ctl >= 0)
        close(ctl);
    if (file >= 0)
        close(file);
    if (*loop < 0)
        return cg_fail(why, len, CG_ESYS, "no loop device for %s: %s", image, strerror(e));
    return CG_OK;
}

/* Attaches image to a loop device and mounts its ext4 on dir; the loop
 * device then lives as long as the mount. CG_OK, or CG_ESYS with why. */
static int
mount_image(const char *image, const char *dir, char *why, size_t len)
{
    char dev[32];
    int loop;

    if (attach_loop(image, dev, sizeof dev, &loop, why, len) != CG_OK)
        return CG_ESYS;
    int rc = mount(dev, dir, "ext4", MS_NOSUID | MS_NODEV, NULL);
    int e = errno;
    close(loop);
    if (rc < 0)
        return cg_fail(why, len, CG_ESYS, "mounting %s on %s: %s", image, dir, strerror(e));
    return CG_OK;
}

/* True when path is still the file fd is open on. */
static bool
same_file(int fd, const char *path)
{
    struct stat a, b;

    return fd >= 0 && fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev
           && a.st_ino == b.st_ino;
}

/* ---- the ready volume ----------------------------------------------------- */

/*
 * The next volume of a size and owner, made ahead so that a box's keeper
 * only moves a mount (~0.1 ms) instead of copying an image, attaching a
 * loop device and mounting ext4 on the box's critical path (1.5 to 5 ms
 * here). One per size and owner, in VOLUME_TEMPLATES (root's, mode 0700):
 * the folder ready-<bytes>-<uid>-<gid> holds "img", a copy of the template,
 * mounted on "mnt". Nothing of it was ever in a box: one keeper takes it,
 * holding a lock on the folder while it renames it to taking-<pid> (the
 * lock is the claim, the rename makes the claim visible), then moves the
 * mount onto the box's directory and the image beside it.
 *
 * A folder whose mnt is not mounted (the machine restarted, or it is
 * mounted in another mount namespace only) is removed, never mounted a
 * second time. Makers and takers hold a lock on their folder
 * (making-<pid>, taking-<pid>) until done: one killed midway leaves it
 * unlocked, and the next maker unmounts and removes it.
 */

/* VOLUME_TEMPLATES/name, or VOLUME_TEMPLATES/name/part. */
static void
pool_path(char *out, size_t len, const char *name, const char *part)
{
    snprintf(out, len, VOLUME_TEMPLATES "/%s%s%s", name, *part ? "/" : "", part);
}

static void
ready_name(char *out, size_t len, uint64_t bytes, uid_t uid, gid_t gid)
{
    snprintf(out, len, "ready-%llu-%lu-%lu", (unsigned long long)bytes, (unsigned long)uid,
             (unsigned long)gid);
}

/* Opens and locks the pool folder name, without waiting. Returns the fd
 * holding the lock, or -1. */
static int
pool_lock(const char *name)
{
    char dir[160];

    pool_path(dir, sizeof dir, name, "");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Unmounts (lazily: a clone of the mount taken from it stays) and removes
 * the pool folder name. */
static void
pool_remove(const char *name)
{
    char dir[160], mnt[160], img[160];

    pool_path(dir, sizeof dir, name, "");
    pool_path(mnt, sizeof mnt, name, "mnt");
    pool_path(img, sizeof img, name, "img");
    if (is_mount_root(mnt))
        umount2(mnt, MNT_DETACH);
    unlink(img);
    rmdir(mnt);
    rmdir(dir);
}

/* Removes what makers and takers killed midway left: their folders, once
 * no process holds their lock. */
static void
pool_sweep(void)
{
    DIR *d = opendir(VOLUME_TEMPLATES);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "making-", 7) != 0 && strncmp(e->d_name, "taking-", 7) != 0)
            continue;
        int lock = pool_lock(e->d_name);
        if (lock >= 0) {
            pool_remove(e->d_name);
            close(lock);
        }
    }
    if (d)
        closedir(d);
}

/* Makes the ready volume for bytes and uid:gid (see above), unless there
 * is one (boxes started together each start a maker) or another maker's
 * comes first. */
static void
make_ready(uint64_t bytes, uid_t uid, gid_t gid)
{
    char name[32], rname[96], ready[160], dir[160], mnt[160], img[160], why[256];
    int lock;

    pool_sweep();
    snprintf(name, sizeof name, "making-%ld", (long)getpid());
    ready_name(rname, sizeof rname, bytes, uid, gid);
    pool_path(ready, sizeof ready, rname, "");
    pool_path(dir, sizeof dir, name, "");
    pool_path(mnt, sizeof mnt, name, "mnt");
    pool_path(img, sizeof img, name, "img");
    if (access(ready, F_OK) == 0 || mkdir(dir, 0700) < 0 || (lock = pool_lock(name)) < 0)
        return;
    bool ok = mkdir(mnt, 0700) == 0
              && copy_template(img, bytes, uid, gid, true, why, sizeof why) == CG_OK
              && mount_image(img, mnt, why, sizeof why) == CG_OK;
    if (!ok || rename(dir, ready) < 0) /* ENOTEMPTY: another maker's is there */
        pool_remove(name);
    close(lock);
}

/*
 * Makes the ready volume for the next box of this size and owner in a
 * process of its own, at idle CPU and I/O priority, unless there is one.
 * That process first waits READY_DELAY_NS: the box that took the last one
 * is starting its first process then, and mounting ext4 is kernel work
 * (a journal thread, the loop device's I/O) that the idle priority does
 * not hold back (on 2 cores: boxes 8-10% faster than making it at once).
 * Returns at once: the caller goes on.
 */
static void
make_ready_later(uint64_t bytes, uid_t uid, gid_t gid)
{
    struct sched_param prio = { 0 };
    char name[96], path[160];

    ready_name(name, sizeof name, bytes, uid, gid);
    pool_path(path, sizeof path, name, "");
    if (access(path, F_OK) == 0)
        return;
    signal(SIGCHLD, SIG_IGN); /* the keeper waits for no child: they reap themselves */
    sched_setscheduler(0, SCHED_IDLE, &prio); /* the fork too is idle work */
    pid_t pid = fork();
    if (pid != 0) {
        sched_setscheduler(0, SCHED_OTHER, &prio);
        return;
    }
    signal(SIGCHLD, SIG_DFL); /* mke2fs, should the template be missing, is waited for */
    syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0));
    struct timespec nap = { 0, READY_DELAY_NS };
    nanosleep(&nap, NULL);
    make_ready(bytes, uid, gid);
    _exit(0);
}

/* Puts a ready volume's image where the box's goes: renamed to image; on
 * another filesystem, unless kept, unlinked instead (its loop device holds
 * it until the last unmount, so nothing is left to remove). */
static bool
place_image(const char *img, const char *image, bool keep)
{
    return rename(img, image) == 0 || (errno == EXDEV && !keep && unlink(img) == 0);
}

/* Takes the ready volume for bytes and uid:gid if there is one: its mount
 * moved onto dir (empty), its image put at image (place_image). True if
 * done. */
static bool
take_ready(const char *dir, const char *image, uint64_t bytes, uid_t uid, gid_t gid, bool keep)
{
    char ready[96], name[32], path[160], taking[160], mnt[160], img[160];
    bool ok = false;

    ready_name(ready, sizeof ready, bytes, uid, gid);
    pool_path(path, sizeof path, ready, "");
    snprintf(name, sizeof name, "taking-%ld", (long)getpid());
    pool_path(taking, sizeof taking, name, "");
    pool_path(mnt, sizeof mnt, name, "mnt");
    pool_path(img, sizeof img, name, "img");
    int lock = pool_lock(ready);
    if (lock < 0)
        return false;
    /* Still the folder locked (not one made after another keeper took it)? */
    if (same_file(lock, path) && rename(path, taking) == 0) {
        if (is_mount_root(mnt) && place_image(img, image, keep)) {
            int tree = open_tree(AT_FDCWD, mnt, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
            ok = tree >= 0 && move_mount(tree, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH) == 0;
            if (tree >= 0)
                close(tree);
            if (!ok)
                unlink(image);
        }
        pool_remove(name);
    }
    close(lock);
    return ok;
}

/* A fresh volume's root as the box wants it: templates made here come so
 * (mkfs_image); others are set right now. */
static int
settle_home(const char *dir, char *why, size_t len)
{
    struct stat st;
    char lf[4200];

    snprintf(lf, sizeof lf, "%s/lost+found", dir);
    if (lstat(lf, &st) == 0)
        rmdir(lf); /* clutter in the user's home; e2fsck makes it again if needed */
    if ((stat(dir, &st) < 0 || (st.st_mode & 07777) != 0700) && chmod(dir, 0700) < 0)
        return cg_fail(why, len, CG_ESYS, "chmod %s: %s", dir, strerror(errno));
    return CG_OK;
}

/* Mounts image on dir (taking the ready volume, or making the image first,
 * when there is none). What the keeper does first; CG_OK or an error with
 * why. */
static int
prepare(const char *dir, const char *image, uint64_t bytes, uid_t uid, gid_t gid, bool keep,
        char *why, size_t len)
{
    if (keep && is_mount_root(dir))
        return CG_OK; /* kept by an earlier kernel: its files are in it */
    if (!keep) { /* what a kernel killed before its keeper ran left: start afresh */
        if (is_mount_root(dir))
            umount2(dir, MNT_DETACH);
        unlink(image);
    }
    bool fresh = access(image, F_OK) != 0;
    if (fresh && !dir_is_empty(dir))
        return cg_fail(why, len, CG_EINVAL, "%s already holds files (kept from a kernel that "
                       "ran without a size limit)", dir);
    if (fresh && take_ready(dir, image, bytes, uid, gid, keep))
        return settle_home(dir, why, len);
    if (fresh && make_image(image, bytes, uid, gid, why, len) != CG_OK)
        return CG_ESYS;
    if (mount_image(image, dir, why, len) != CG_OK)
        return CG_ESYS;
    return fresh ? settle_home(dir, why, len) : CG_OK;
}

/*
 * The keeper's wait: until the kernel is gone (life closes: box_destroy,
 * or the kernel was killed), then it unmounts and removes what is still
 * its own - dir still the root of the mount opened as root, image still
 * the file opened as img - so a kernel killed with SIGKILL leaves no
 * mount, loop device or image behind. Holding root open, no later volume
 * can take its device number while it checks.
 */
static void __attribute__((noreturn))
keeper_wait(const char *dir, const char *image, int root, int img, int life)
{
    char c;

    while (read(life, &c, 1) < 0 && errno == EINTR)
        ;
    if (same_file(root, dir) && is_mount_root(dir))
        umount2(dir, MNT_DETACH);
    close(root);
    if (same_file(img, image))
        unlink(image);
    rmdir(dir); /* empty once unmounted, unless the kernel kept it */
    _exit(0);
}

/*
 * A keeper forked from cellgate-kernel holds ~2 MB of that program's
 * libraries resident while it waits, for the whole life of the kernel;
 * the static `cellgate` beside it waits in a fraction of that. So the
 * keeper execs `cellgate volume-keeper DIR IMAGE ROOT IMG LIFE` to wait
 * (once the volume is reported ready: off a box's start-up path). Returns
 * when it cannot, or when it is that program already: the caller waits.
 */
static void
keeper_exec_light(const char *dir, const char *image, int root, int img, int life)
{
    char light[4096], self[4096], fds[3][16], cmd[] = "volume-keeper";
    const int keep[3] = { root, img, life };
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    if (n <= 0 || sibling_find("cellgate", light, sizeof light) != CG_OK)
        return;
    self[n] = '\0';
    if (strcmp(self, light) == 0)
        return;
    for (size_t i = 0; i < 3; i++) {
        snprintf(fds[i], sizeof fds[i], "%d", keep[i]);
        if (keep[i] >= 0 && fcntl(keep[i], F_SETFD, 0) < 0)
            return;
    }
    char *argv[] = { light, cmd, (char *)dir, (char *)image,
                     fds[0], fds[1], fds[2], NULL };
    execv(light, argv);
}

/* One descriptor number of `cellgate volume-keeper`'s arguments: -1 or
 * more, whole; -2 if it is not one. */
static int
keeper_fd_arg(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end || v < -1 || v > INT_MAX ? -2 : (int)v;
}

int
boxfs_keeper_main(int argc, char **argv)
{
    struct stat st;
    int root, img, life;

    if (argc != 6 || (root = keeper_fd_arg(argv[3])) < -1 || (img = keeper_fd_arg(argv[4])) < -1
        || (life = keeper_fd_arg(argv[5])) < 0 || fstat(life, &st) < 0 || !S_ISFIFO(st.st_mode)
        || (root >= 0 && (fstat(root, &st) < 0 || !S_ISDIR(st.st_mode)))) {
        fprintf(stderr, "cellgate volume-keeper: what a data volume's keeper runs to wait "
                        "for its kernel (not a command to run by hand)\n");
        return 2;
    }
    keeper_wait(argv[1], argv[2], root, img, life);
}

/*
 * The keeper: prepares the volume, reports, then waits for the kernel to
 * go (keeper_wait, in the static `cellgate` if it can) and, unless keep,
 * removes what is still its own. It has a session of its own (Jupyter
 * signals the kernel's process group).
 */
static void
keeper(const char *dir, const char *image, uint64_t bytes, uid_t uid, gid_t gid, bool keep,
       int report, int life)
{
    char why[256] = "";
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };

    setsid();
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_IGN);
    spawn_close_all_but(report, life); /* nothing of the caller's outlives it here */
    int rc = prepare(dir, image, bytes, uid, gid, keep, why, sizeof why);
    int root = rc == CG_OK ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int img = rc == CG_OK ? open(image, O_RDONLY | O_CLOEXEC) : -1;
    if (write(report, why, strlen(why) + 1) < 0 || rc != CG_OK)
        _exit(0);
    make_ready_later(bytes, uid, gid); /* for the next volume: this one may have taken it */
    if (keep)
        _exit(0);
    close(report);
    keeper_exec_light(dir, image, root, img, life);
    keeper_wait(dir, image, root, img, life);
}

static void
volume_free(struct boxfs_volume *v)
{
    if (v->life >= 0)
        close(v->life);
    if (v->report >= 0)
        close(v->report);
    free(v->dir);
    free(v->image);
    free(v);
}

struct boxfs_volume *
boxfs_volume_start(const char *dir, uint64_t bytes, uid_t uid, gid_t gid, bool keep, char *why,
                   size_t whylen)
{
    const char *no = boxfs_volume_unsupported();
    struct boxfs_volume *v = calloc(1, sizeof *v);
    int p[2] = { -1, -1 }, l[2] = { -1, -1 };

    if (no || !v) {
        cg_fail(why, whylen, CG_EUNSUPP, "%s", no ? no : "out of memory");
        free(v);
        return NULL;
    }
    v->report = v->life = -1;
    if (!(v->dir = strdup(dir)) || asprintf(&v->image, "%s.img", dir) < 0
        || pipe2(p, O_CLOEXEC) < 0 || pipe2(l, O_CLOEXEC) < 0) {
        cg_fail(why, whylen, CG_ENOMEM, "preparing the data volume: %s", strerror(errno));
        for (int i = 0; i < 2; i++)
            if (p[i] >= 0)
                close(p[i]);
        volume_free(v);
        return NULL;
    }
    v->report = p[0];
    v->life = l[1];
    v->pid = fork();
    if (v->pid == 0) {
        close(p[0]);
        close(l[1]);
        keeper(dir, v->image, bytes, uid, gid, keep, p[1], l[0]);
    }
    close(p[1]);
    close(l[0]);
    if (v->pid < 0) {
        cg_fail(why, whylen, CG_ESYS, "preparing the data volume: fork: %s", strerror(errno));
        volume_free(v);
        return NULL;
    }
    return v;
}

/* Reads the preparing process's report (bounded in time), once. */
static void
take_report(struct boxfs_volume *v)
{
    struct pollfd p = { v->report, POLLIN, 0 };
    ssize_t n = 0;
    int rc;

    if (v->report < 0)
        return;
    do
        rc = poll(&p, 1, VOLUME_WAIT_MS);
    while (rc < 0 && errno == EINTR);
    if (rc > 0)
        n = read(v->report, v->why, sizeof v->why - 1);
    v->why[n > 0 ? n : 0] = '\0';
    if (n <= 0)
        snprintf(v->why, sizeof v->why, "preparing %s %s", v->image,
                 rc > 0 ? "failed (its process died)" : "took too long");
    v->mounted = n > 0 && !v->why[0];
    close(v->report);
    v->report = -1;
    waitpid(v->pid, NULL, WNOHANG); /* when no one else has reaped it */
}

/* Puts the host's mount of v->dir at BOX_HOME in the mount namespace of
 * init_pid: a clone of it (open_tree), moved there by a child that joined
 * that namespace (the caller may have threads, which setns forbids). The
 * child only makes system calls, so vfork, which copies no page tables,
 * is safe. Returns 0 or an errno. */
static int
mount_in_box(const struct boxfs_volume *v, pid_t init_pid)
{
    char ns_path[64];
    int status = 0, e = 0;

    snprintf(ns_path, sizeof ns_path, "/proc/%ld/ns/mnt", (long)init_pid);
    int ns = open(ns_path, O_RDONLY | O_CLOEXEC);
    int tree = open_tree(AT_FDCWD, v->dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    pid_t pid = ns >= 0 && tree >= 0 ? vfork() : -1;

    if (pid == 0)
        _exit(setns(ns, CLONE_NEWNS) < 0 ? errno
              : move_mount(tree, "", AT_FDCWD, BOX_HOME, MOVE_MOUNT_F_EMPTY_PATH) < 0 ? errno
              : 0);
    if (pid < 0)
        e = errno;
    else if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        e = ECHILD;
    else
        e = WEXITSTATUS(status);
    if (ns >= 0)
        close(ns);
    if (tree >= 0)
        close(tree);
    return e;
}

int
boxfs_volume_mount(struct boxfs_volume *v, pid_t init_pid, char *err, size_t errlen)
{
    if (v->in_box)
        return CG_OK;
    take_report(v);
    if (!v->mounted)
        return cg_fail(err, errlen, CG_ESYS, "%s", v->why);
    int e = mount_in_box(v, init_pid);
    if (e) {
        umount2(v->dir, MNT_DETACH); /* else the box would write where the host cannot see */
        v->mounted = false;
        snprintf(v->why, sizeof v->why, "mounting %s in the box: %s", v->image, strerror(e));
        return cg_fail(err, errlen, CG_ESYS, "%s", v->why);
    }
    v->in_box = true;
    return CG_OK;
}

void
boxfs_volume_rehome(struct boxfs_volume *v)
{
    v->in_box = false;
}

bool
boxfs_volume_ready(const struct boxfs_volume *v)
{
    return v && v->in_box;
}

void
boxfs_volume_release(struct boxfs_volume **vp, bool keep)
{
    if (!vp || !*vp)
        return;
    struct boxfs_volume *v = *vp;
    take_report(v);
    if (!keep) {
        /* Unlinked first, its blocks go when the loop device lets go of
         * it, later and not in our time. */
        unlink(v->image);
        if (v->mounted)
            umount2(v->dir, MNT_DETACH);
    }
    volume_free(v);
    *vp = NULL;
}
