/*
 * boxfs.c - files inside the box as the kernel reaches them (see boxfs.h).
 * Reads go through openat2(RESOLVE_IN_ROOT) from the box's root; writes
 * walk to the parent directory one component at a time with
 * RESOLVE_NO_SYMLINKS, create a temporary file there and rename it onto
 * the final name, so no symlink the box plants is ever followed out.
 */
#include "sandbox/boxfs.h"

#include "common/cgerr.h"
#include "sandbox/box.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
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
