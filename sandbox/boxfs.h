/*
 * boxfs.h - files inside the box, as the kernel reaches them. The kernel
 * (possibly host root) sees the box's filesystem through a directory fd
 * for the box's root, /proc/<box init pid>/root, and code in the box may
 * have planted symlinks and ".." anywhere: nothing here lets them lead to
 * a host path.
 *
 * Paths are the box's: a relative path is under the box's home (BOX_HOME,
 * "/mnt/data"), an absolute one starts at the box's root. In the box every
 * path resolves inside the root, so "/etc/x" is a path in the box like any
 * other: writing it is attempted and fails as it would in the box (EROFS on
 * the read-only system mounts, EACCES where the box user may not write).
 *
 * Without a box (root_fd == AT_FDCWD) paths are plain host paths relative
 * to the kernel's working directory; no confinement is possible or needed
 * then, as the code runs as the kernel's user anyway.
 *
 * Errors follow cgerr.h; where an ename is asked for it is a Python
 * exception name for the client ("FileNotFoundError", "IsADirectoryError",
 * "PermissionError", ...) and err says which path and why.
 */
#ifndef CG_BOXFS_H
#define CG_BOXFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Opens the box's root for the calls below: /proc/<init_pid>/root, O_PATH.
 * Returns CG_OK with *root_fd set (the caller closes it) or CG_ESYS.
 */
int boxfs_root_open(pid_t init_pid, int *root_fd, char *err, size_t errlen);

/*
 * The host uid and gid owning the box's home: the box user's ids, as files
 * created for it should have them. CG_OK, or CG_ESYS with err.
 */
int boxfs_home_owner(int root_fd, uid_t *uid, gid_t *gid, char *err, size_t errlen);

/*
 * Opens path for reading (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY).
 * In the box, resolution stays inside the root (RESOLVE_IN_ROOT: symlinks
 * are followed, but "/" and ".." stop at the box's root) and /proc magic
 * links are refused. Returns CG_OK with *fd set, or CG_ENOTFOUND / CG_ESYS
 * with errno kept, *ename (if ename) and err filled.
 */
int boxfs_open_read(int root_fd, const char *path, int *fd, const char **ename, char *err,
                    size_t errlen);

struct boxfs_file;

/*
 * Starts an atomic write of path: creates a temporary file (mode 0644,
 * owned by uid:gid; (uid_t)-1 / (gid_t)-1 keep the kernel's) in the
 * final name's directory, creating missing parent directories (mode 0755,
 * owned by uid:gid). In the box each directory is opened one component at
 * a time and a symlink at any of them is refused (ELOOP, "PathRefused"),
 * never followed; ".." is resolved in the path's text, stopping at the
 * root. Fails with IsADirectoryError when path names a directory; a
 * symlink or other file at the final name is replaced by the commit, never
 * followed. Returns CG_OK with *out (write to boxfs_fd(*out), then
 * boxfs_commit or boxfs_abort), or an error with *ename and err.
 */
int boxfs_create_atomic(int root_fd, const char *path, uid_t uid, gid_t gid,
                        struct boxfs_file **out, const char **ename, char *err, size_t errlen);

/* The fd to write the new contents to (owned by f). */
int boxfs_fd(const struct boxfs_file *f);

/* The file's final path as the box sees it, normalised ("/mnt/data/x.csv");
 * owned by f, so gone after boxfs_commit / boxfs_abort: copy it first. */
const char *boxfs_path(const struct boxfs_file *f);

/*
 * Fsyncs the contents and renames the temporary file onto the final name
 * (atomically replacing a file or symlink there; a directory is refused),
 * then frees *f and nulls it, in every case (on error the temporary file
 * is removed). Returns CG_OK or an error with *ename and err.
 */
int boxfs_commit(struct boxfs_file **f, const char **ename, char *err, size_t errlen);

/* Removes the temporary file, frees *f and nulls it. Idempotent. */
void boxfs_abort(struct boxfs_file **f);

/*
 * The data volume: what bounds /mnt/data. As root of the machine the
 * box's home is a filesystem of its own, an ext4 image (a sparse file
 * "<dir>.img" beside the data directory, made by mke2fs) on a loop device,
 * mounted on the data directory on the host (so the host reads the files
 * where it always did) and on BOX_HOME in the box. Writing past its size is
 * ENOSPC in the box and touches nothing else.
 *
 * Making it ready takes tens of milliseconds, so a process of its own (the
 * keeper) does it, started by boxfs_volume_start() while the box is being
 * built; boxfs_volume_mount() puts it in the box before any code runs. The
 * keeper reports through a pipe, never its exit status, so whoever reaps
 * the caller's children may reap it. It stays until the caller is gone,
 * then removes what is left (unless kept): a kernel killed with SIGKILL
 * leaves no mount behind. The next volume of the same size and owner is
 * made ahead, mounted in /var/cache/cellgate (root's): a keeper that finds
 * it only moves it onto its directory (one per size and owner, used by
 * one box only; see boxfs.c, "the ready volume").
 */
struct boxfs_volume;

/*
 * Starts preparing a volume of bytes bytes for the host directory dir
 * (which exists and is empty, or is the mount point a kept volume left:
 * with keep it is used as it is, else it is replaced), its root owned by
 * uid:gid. Needs root of the machine, /dev/loop-control and mke2fs; must
 * be called while the process has one thread (it forks). Returns the
 * volume, or NULL with why saying what this machine lacks.
 */
struct boxfs_volume *boxfs_volume_start(const char *dir, uint64_t bytes, uid_t uid, gid_t gid,
                                        bool keep, char *why, size_t whylen);

/*
 * Waits (bounded) for the preparation, then mounts the volume at BOX_HOME
 * in the mount namespace of the box whose init is init_pid, over the bound
 * data directory. Idempotent once done. Returns CG_OK, or an error with err
 * saying why /mnt/data stays unbounded (the host directory is then left
 * as it was, not covered).
 */
int boxfs_volume_mount(struct boxfs_volume *v, pid_t init_pid, char *err, size_t errlen);

/* Makes v, in use by a box that ended, ready for boxfs_volume_mount() in
 * the box built after it: its files and bound stay. */
void boxfs_volume_rehome(struct boxfs_volume *v);

/* True once the volume is mounted on the host directory and in the box. */
bool boxfs_volume_ready(const struct boxfs_volume *v);

/*
 * Frees *v and nulls it; idempotent. Without keep it unmounts the host
 * directory (lazily: the box's mount goes with its namespace) and removes
 * the image. With keep both stay, so the files stay readable in the data
 * directory, and a later volume for the same directory reuses the mount
 * (or the image, after a reboot).
 */
void boxfs_volume_release(struct boxfs_volume **v, bool keep);

/*
 * `cellgate volume-keeper DIR IMAGE ROOT IMG LIFE` (argv[0] is the
 * program): a volume's keeper waiting for its kernel in the static
 * `cellgate`, which it execs with the descriptors it holds (see boxfs.c).
 * Never returns but with 2 on arguments that are not a keeper's (LIFE a
 * pipe, ROOT -1 or a directory), having touched nothing.
 */
int boxfs_keeper_main(int argc, char **argv);

/* Whether this machine can bound /mnt/data: NULL if so, else why not. */
const char *boxfs_volume_unsupported(void);

#endif
