/*
 * test_boxfs.c - unit tests of boxfs: a temporary directory plays the box's
 * root, code "in the box" plants symlinks and ".." paths, and nothing the
 * kernel writes or reads may land outside it. Next to the root sits a decoy
 * directory standing for the host: every test checks it stays untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sandbox/boxfs.h"
#include "common/cgerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fixture {
    char outer[64];          /* mkdtemp: holds root/ and host/ */
    char root[96];           /* the box's root */
    char home[128];          /* root/mnt/data */
    char host[96];           /* the decoy "host" directory, outside the root */
    int root_fd;             /* O_PATH fd of root */
    uid_t uid;               /* the ids files are given to */
    gid_t gid;
};

static void
put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The file's contents (up to 255 bytes), or "" if it cannot be read. */
static const char *
get(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* rm -rf dir */
static void
remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char p[256];

    snprintf(fx->outer, sizeof fx->outer, "/tmp/cg-boxfs-XXXXXX");
    if (!mkdtemp(fx->outer))
        return -1;
    snprintf(fx->root, sizeof fx->root, "%s/root", fx->outer);
    snprintf(fx->home, sizeof fx->home, "%s/mnt/data", fx->root);
    snprintf(fx->host, sizeof fx->host, "%s/host", fx->outer);
    mkdir(fx->root, 0755);
    snprintf(p, sizeof p, "%s/mnt", fx->root);
    mkdir(p, 0755);
    mkdir(fx->home, 0755);
    snprintf(p, sizeof p, "%s/etc", fx->root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/etc/passwd", fx->root);
    put(p, "box passwd\n");
    mkdir(fx->host, 0755);
    snprintf(p, sizeof p, "%s/secret", fx->host);
    put(p, "host secret\n");
    /* As root, files go to the box user the way the kernel will give them. */
    fx->uid = geteuid() == 0 ? 1000 : geteuid();
    fx->gid = geteuid() == 0 ? 1000 : getegid();
    if (geteuid() == 0 && chown(fx->home, fx->uid, fx->gid) != 0)
        return -1;
    fx->root_fd = open(fx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    *state = fx;
    return fx->root_fd < 0 ? -1 : 0;
}

/* The decoy host directory holds exactly its secret, unchanged. */
static void
assert_host_untouched(const struct fixture *fx)
{
    char p[256];
    DIR *d = opendir(fx->host);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    assert_int_equal(n, 1);
    snprintf(p, sizeof p, "%s/secret", fx->host);
    assert_string_equal(get(p), "host secret\n");
}

/* No temporary file is left in dir. */
static void
assert_no_temp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".cellgate-"));
    closedir(d);
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;
    assert_host_untouched(fx);
    close(fx->root_fd);
    remove_tree(fx->outer);
    free(fx);
    return 0;
}

static void
write_all(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Creates path in the box with text; returns what boxfs_commit returned. */
static int
create(struct fixture *fx, const char *path, const char *text, const char **ename)
{
    struct boxfs_file *f = NULL;
    char err[512];
    int rc = boxfs_create_atomic(fx->root_fd, path, fx->uid, fx->gid, &f, ename, err,
                                 sizeof err);
    if (rc != CG_OK) {
        assert_null(f);
        return rc;
    }
    write_all(boxfs_fd(f), text);
    rc = boxfs_commit(&f, ename, err, sizeof err);
    assert_null(f);
    return rc;
}

static void
test_read_in_box(void **state)
{
    struct fixture *fx = *state;
    char p[256], err[256], buf[64];
    const char *ename = NULL;
    int fd;

    snprintf(p, sizeof p, "%s/notes.txt", fx->home);
    put(p, "box notes\n");
    assert_int_equal(boxfs_open_read(fx->root_fd, "notes.txt", &fd, &ename, err, sizeof err),
                     CG_OK);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "box notes\n");
    close(fd);

    /* An absolute symlink, ".." past the root, /etc/passwd: all the box's. */
    snprintf(p, sizeof p, "%s/pw", fx->home);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    const char *to_box_passwd[] = { "pw", "/etc/passwd", "../../../../../etc/passwd",
                                    "/mnt/data/../../etc/passwd" };
    for (size_t i = 0; i < sizeof to_box_passwd / sizeof to_box_passwd[0]; i++) {
        assert_int_equal(boxfs_open_read(fx->root_fd, to_box_passwd[i], &fd, &ename, err,
                                         sizeof err), CG_OK);
        n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = '\0';
        assert_string_equal(buf, "box passwd\n");
        close(fd);
    }

    /* A symlink to the host decoy's absolute path stays in the box: ENOENT. */
    char target[256];
    snprintf(target, sizeof target, "%s/secret", fx->host);
    snprintf(p, sizeof p, "%s/hostlink", fx->home);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(boxfs_open_read(fx->root_fd, "hostlink", &fd, &ename, err, sizeof err),
                     CG_ENOTFOUND);
    assert_int_equal(fd, -1);
    assert_string_equal(ename, "FileNotFoundError");
    assert_int_equal(errno, ENOENT);

    assert_int_equal(boxfs_open_read(fx->root_fd, "missing", &fd, &ename, err, sizeof err),
                     CG_ENOTFOUND);
    assert_non_null(strstr(err, "/mnt/data/missing"));
}

static void
test_read_without_box(void **state)
{
    struct fixture *fx = *state;
    char p[256], err[256], cwd[PATH_MAX];
    const char *ename = NULL;
    int fd;

    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(fx->host), 0);
    assert_int_equal(boxfs_open_read(AT_FDCWD, "secret", &fd, &ename, err, sizeof err), CG_OK);
    close(fd);
    /* Magic links (/proc/self/...) are refused even without a box. */
    snprintf(p, sizeof p, "%s/magic", fx->root);
    assert_int_equal(symlink("/proc/self/cwd", p), 0);
    assert_int_equal(boxfs_open_read(AT_FDCWD, p, &fd, &ename, err, sizeof err), CG_ESYS);
    assert_int_equal(errno, ELOOP);
    assert_string_equal(ename, "PathRefused");
    assert_int_equal(chdir(cwd), 0);
}

static void
test_create_simple(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    char p[256], err[256];
    const char *ename = NULL;
    struct stat st;

    assert_int_equal(boxfs_create_atomic(fx->root_fd, "out.txt", fx->uid, fx->gid, &f, &ename,
                                         err, sizeof err), CG_OK);
    assert_string_equal(boxfs_path(f), "/mnt/data/out.txt");
    write_all(boxfs_fd(f), "contents\n");
    snprintf(p, sizeof p, "%s/out.txt", fx->home);
    assert_int_equal(access(p, F_OK), -1); /* nothing at the final name before commit */
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    assert_null(f);
    assert_string_equal(get(p), "contents\n");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_uid, fx->uid);
    assert_int_equal(st.st_gid, fx->gid);
    assert_no_temp(fx->home);

    /* Absolute box paths and "." are the box's too. */
    assert_int_equal(create(fx, "/mnt/data/./abs.txt", "abs\n", &ename), CG_OK);
    snprintf(p, sizeof p, "%s/abs.txt", fx->home);
    assert_string_equal(get(p), "abs\n");

    uid_t u;
    gid_t g;
    assert_int_equal(boxfs_home_owner(fx->root_fd, &u, &g, err, sizeof err), CG_OK);
    assert_int_equal(u, fx->uid);
    assert_int_equal(g, fx->gid);
}

static void
test_create_parents(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    char p[256], err[256];
    const char *ename = NULL;
    struct stat st;

    assert_int_equal(boxfs_create_atomic(fx->root_fd, "a/b//c/deep.csv", fx->uid, fx->gid, &f,
                                         &ename, err, sizeof err), CG_OK);
    assert_string_equal(boxfs_path(f), "/mnt/data/a/b/c/deep.csv");
    write_all(boxfs_fd(f), "1,2\n");
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    snprintf(p, sizeof p, "%s/a/b/c/deep.csv", fx->home);
    assert_string_equal(get(p), "1,2\n");
    const char *dirs[] = { "a", "a/b", "a/b/c" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", fx->home, dirs[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(st.st_uid, fx->uid);
    }
    /* A file where a directory should be. */
    assert_int_equal(create(fx, "a/b/c/deep.csv/x", "x", &ename), CG_ESYS);
    assert_string_equal(ename, "NotADirectoryError");
}

static void
test_create_dotdot_stays_in_root(void **state)
{
    struct fixture *fx = *state;
    const char *ename = NULL;
    char p[256];

    /* From /mnt/data, "../../../host/secret" is /host/secret in the box. */
    assert_int_equal(create(fx, "../../../../host/secret", "from the box\n", &ename), CG_OK);
    snprintf(p, sizeof p, "%s/host/secret", fx->root);
    assert_string_equal(get(p), "from the box\n");
    assert_int_equal(create(fx, "/../../../host/other", "x", &ename), CG_OK);
    snprintf(p, sizeof p, "%s/host/other", fx->root);
    assert_string_equal(get(p), "x");
    /* teardown: the decoy host directory is untouched */
}

static void
test_create_symlink_at_target(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;
    char p[256], target[256], err[256];
    struct stat st, host_pw;

    /* Planted: mnt/data/link -> <host>/secret (the decoy's absolute path). */
    snprintf(target, sizeof target, "%s/secret", fx->host);
    snprintf(p, sizeof p, "%s/link", fx->home);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(create(fx, "link", "replaced\n", &ename), CG_OK);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_string_equal(get(p), "replaced\n");

    /* And one to /etc/passwd: the temporary file must not be the host's
     * (checked before anything is written), and the link is replaced. */
    snprintf(p, sizeof p, "%s/pw", fx->home);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_int_equal(stat("/etc/passwd", &host_pw), 0);
    assert_int_equal(boxfs_create_atomic(fx->root_fd, "pw", fx->uid, fx->gid, &f, &ename, err,
                                         sizeof err), CG_OK);
    assert_int_equal(fstat(boxfs_fd(f), &st), 0);
    if (st.st_ino == host_pw.st_ino && st.st_dev == host_pw.st_dev) {
        boxfs_abort(&f);
        fail_msg("the temporary file is the host's /etc/passwd");
    }
    write_all(boxfs_fd(f), "box\n");
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(stat("/etc/passwd", &st), 0);
    assert_int_equal(st.st_ino, host_pw.st_ino);
    assert_int_equal(st.st_mtime, host_pw.st_mtime);
    assert_no_temp(fx->home);
}

static void
test_create_symlink_at_parent(void **state)
{
    struct fixture *fx = *state;
    const char *ename = NULL;
    char p[256], err[256];
    struct boxfs_file *f = NULL;

    /* mnt/data/out -> <host> (absolute), mnt/data/etc -> /etc, and one
     * pointing inside the box: every symlinked parent is refused. */
    snprintf(p, sizeof p, "%s/out", fx->home);
    assert_int_equal(symlink(fx->host, p), 0);
    snprintf(p, sizeof p, "%s/etc", fx->home);
    assert_int_equal(symlink("/etc", p), 0);
    snprintf(p, sizeof p, "%s/inside", fx->home);
    assert_int_equal(symlink("/mnt/data", p), 0);
    snprintf(p, sizeof p, "%s/rel", fx->home);
    assert_int_equal(symlink("../../..", p), 0);
    const char *paths[] = { "out/secret", "out/new/file", "etc/passwd", "inside/x", "rel/x",
                            "/mnt/data/out/x" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_int_equal(boxfs_create_atomic(fx->root_fd, paths[i], fx->uid, fx->gid, &f, &ename,
                                             err, sizeof err), CG_ESYS);
        assert_null(f);
        assert_string_equal(ename, "PathRefused");
        assert_non_null(strstr(err, "symbolic link"));
    }
    /* The box's own /mnt swapped for a symlink: refused too. */
    char mnt[256], moved[256];
    snprintf(mnt, sizeof mnt, "%s/mnt", fx->root);
    snprintf(moved, sizeof moved, "%s/mnt-real", fx->root);
    assert_int_equal(rename(mnt, moved), 0);
    assert_int_equal(symlink(fx->outer, mnt), 0);
    assert_int_equal(create(fx, "x", "x", &ename), CG_ESYS);
    assert_string_equal(ename, "PathRefused");
    assert_int_equal(unlink(mnt), 0);
    assert_int_equal(rename(moved, mnt), 0);
    snprintf(p, sizeof p, "%s/root/x", fx->outer);
    assert_int_equal(access(p, F_OK), -1);
}

static void
test_replace_atomically(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;
    char p[256], err[256], buf[32];

    snprintf(p, sizeof p, "%s/data.bin", fx->home);
    put(p, "old\n");
    int old = open(p, O_RDONLY);
    assert_true(old >= 0);
    assert_int_equal(boxfs_create_atomic(fx->root_fd, "data.bin", fx->uid, fx->gid, &f, &ename,
                                         err, sizeof err), CG_OK);
    write_all(boxfs_fd(f), "new contents\n");
    assert_string_equal(get(p), "old\n"); /* readers see the old file until the commit */
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    assert_string_equal(get(p), "new contents\n");
    ssize_t n = read(old, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    assert_string_equal(buf, "old\n"); /* the old inode was never written */
    close(old);
    assert_no_temp(fx->home);
}

static void
test_abort(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;
    char p[256], err[256];

    snprintf(p, sizeof p, "%s/kept.txt", fx->home);
    put(p, "kept\n");
    assert_int_equal(boxfs_create_atomic(fx->root_fd, "kept.txt", fx->uid, fx->gid, &f, &ename,
                                         err, sizeof err), CG_OK);
    write_all(boxfs_fd(f), "partial");
    boxfs_abort(&f);
    assert_null(f);
    boxfs_abort(&f); /* idempotent */
    assert_string_equal(get(p), "kept\n");
    assert_no_temp(fx->home);

    assert_int_equal(boxfs_create_atomic(fx->root_fd, "never/made.txt", fx->uid, fx->gid, &f,
                                         &ename, err, sizeof err), CG_OK);
    boxfs_abort(&f);
    snprintf(p, sizeof p, "%s/never/made.txt", fx->home);
    assert_int_equal(access(p, F_OK), -1);
}

static void
test_directory_targets(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;
    char p[256], err[256];

    snprintf(p, sizeof p, "%s/adir", fx->home);
    assert_int_equal(mkdir(p, 0755), 0);
    const char *paths[] = { "adir", "adir/", "adir/.", "adir/..", ".", "/", "/mnt/data" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_int_equal(boxfs_create_atomic(fx->root_fd, paths[i], fx->uid, fx->gid, &f, &ename,
                                             err, sizeof err), CG_ESYS);
        assert_string_equal(ename, "IsADirectoryError");
        assert_null(f);
    }
    assert_int_equal(boxfs_create_atomic(fx->root_fd, "", fx->uid, fx->gid, &f, &ename, err,
                                         sizeof err), CG_EINVAL);
    assert_string_equal(ename, "ValueError");

    /* A directory appears at the final name before the commit. */
    assert_int_equal(boxfs_create_atomic(fx->root_fd, "late", fx->uid, fx->gid, &f, &ename, err,
                                         sizeof err), CG_OK);
    snprintf(p, sizeof p, "%s/late", fx->home);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_ESYS);
    assert_null(f);
    assert_string_equal(ename, "IsADirectoryError");
    assert_no_temp(fx->home);
    snprintf(p, sizeof p, "%s/adir", fx->home);
    assert_no_temp(p);
}

static void
test_create_without_box(void **state)
{
    struct fixture *fx = *state;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;
    char p[256], err[256], cwd[PATH_MAX];

    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(fx->root), 0);
    assert_int_equal(boxfs_create_atomic(AT_FDCWD, "plain/file.txt", (uid_t)-1, (gid_t)-1, &f,
                                         &ename, err, sizeof err), CG_OK);
    assert_string_equal(boxfs_path(f), "plain/file.txt");
    write_all(boxfs_fd(f), "plain\n");
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    assert_int_equal(chdir(cwd), 0);
    snprintf(p, sizeof p, "%s/plain/file.txt", fx->root);
    assert_string_equal(get(p), "plain\n");
    /* The final name is still never followed. */
    snprintf(p, sizeof p, "%s/plain/link", fx->root);
    char target[256];
    snprintf(target, sizeof target, "%s/secret", fx->host);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(boxfs_create_atomic(AT_FDCWD, p, (uid_t)-1, (gid_t)-1, &f, &ename, err,
                                         sizeof err), CG_OK);
    write_all(boxfs_fd(f), "not the secret\n");
    assert_int_equal(boxfs_commit(&f, &ename, err, sizeof err), CG_OK);
    assert_string_equal(get(p), "not the secret\n");
}

int
main(void)
{
    struct open_how how = { .flags = O_PATH };
    if (syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how) < 0 && errno == ENOSYS) {
        /* valgrind has no handler for openat2: nothing here can run. */
        printf("boxfs: openat2 is not available here (valgrind?): tests skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_in_box, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_without_box, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_simple, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_dotdot_stays_in_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_symlink_at_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_symlink_at_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_atomically, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_without_box, setup, teardown),
    };
    return cmocka_run_group_tests_name("boxfs", tests, NULL, NULL);
}
