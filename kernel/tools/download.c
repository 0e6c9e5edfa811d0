/*
 * download.c - cellgate.download {url, path?} -> {path, size, sha256,
 * content_type, url}. The kernel creates a temporary file inside the box
 * (sandbox/boxfs.c, as the box's user), then starts cellgate-fetch (fetch/,
 * beside the kernel's binary), which checks the operator's policy and
 * fetches into that file, and writes one JSON line of result on a pipe the
 * loop polls. On success the file is renamed onto the path; otherwise it is
 * removed. An interrupt kills the fetch.
 */
#include "kernel/tools/tool.h"

#include "common/cgerr.h"
#include "common/sibling.h"
#include "sandbox/boxfs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <unistd.h>

#define RESULT_MAX 65536      /* bytes of result we read from cellgate-fetch */

extern char **environ;

struct download_job {
    struct tool_job base;
    pid_t pid;                /* cellgate-fetch, 0 once it is gone */
    int result;               /* its result pipe, -1 at EOF */
    char buf[RESULT_MAX];
    size_t len;
    struct boxfs_file *file;
    uid_t uid;                /* the box user's ids, or -1 without the box */
    gid_t gid;
    bool interrupted;
};

/*
 * Switches the loop thread's file system ids to the box user's (on) or
 * back. Then the box's own permissions apply to what the kernel does to the
 * box's files, and the box's tmpfs, which knows no host root, accepts new
 * files. The kernel's real ids allow switching back.
 */
static void
as_box_user(uid_t uid, gid_t gid, bool on)
{
    if (uid == (uid_t)-1)
        return;
    setfsgid(on ? gid : getgid());
    setfsuid(on ? uid : getuid());
}

static size_t
download_poll(struct tool_job *job, zmq_pollitem_t *items)
{
    struct download_job *j = (struct download_job *)job;

    if (j->result < 0)
        return 0;
    items[0] = (zmq_pollitem_t){ .fd = j->result, .events = ZMQ_POLLIN };
    return 1;
}

/* The result line, as the reply: commits or drops the file. */
static json_t *
download_outcome(struct download_job *j)
{
    json_t *r = j->len ? json_loadb(j->buf, j->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *ename = "DownloadFailed";
    char err[1024];

    if (j->interrupted) {
        json_decref(r);
        return tool_error("Interrupted", "the download was interrupted");
    }
    if (!json_is_object(r)) {
        json_decref(r);
        return tool_error(ename, "cellgate-fetch ended without a result");
    }
    if (!json_is_true(json_object_get(r, "ok"))) {
        const char *e = json_string_value(json_object_get(r, "ename"));
        const char *v = json_string_value(json_object_get(r, "evalue"));
        json_t *out = tool_error(e ? e : ename, "%s", v ? v : "the download failed");
        json_decref(r);
        return out;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s", boxfs_path(j->file));
    as_box_user(j->uid, j->gid, true);
    int rc = boxfs_commit(&j->file, &ename, err, sizeof err);
    as_box_user(j->uid, j->gid, false);
    if (rc != CG_OK) {
        json_decref(r);
        return tool_error(ename, "%s", err);
    }
    json_t *out = json_pack("{s:s, s:s, s:O, s:O, s:O, s:O}", "status", "ok", "path", path,
                            "size", json_object_get(r, "size"), "sha256",
                            json_object_get(r, "sha256"), "content_type",
                            json_object_get(r, "content_type"), "url", json_object_get(r, "url"));
    json_decref(r);
    return out ? out : tool_error(ename, "cellgate-fetch gave a malformed result");
}

static void
download_service(struct tool_env *env, struct tool_job *job, const zmq_pollitem_t *items, size_t n)
{
    struct download_job *j = (struct download_job *)job;

    (void)env;
    if (n < 1 || !(items[0].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        return;
    ssize_t got = read(j->result, j->buf + j->len, sizeof j->buf - j->len);
    if (got > 0) {
        j->len += (size_t)got;
        if (j->len < sizeof j->buf)
            return;
    } else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    close(j->result); /* EOF (or a result too long to be one) */
    j->result = -1;
    job_finish(&j->base, download_outcome(j));
}

static double
download_tick(struct tool_env *env, struct tool_job *job, double now)
{
    (void)env;
    (void)job;
    (void)now;
    return 0; /* cellgate-fetch keeps its own time cap */
}

static void
download_interrupt(struct tool_env *env, struct tool_job *job)
{
    struct download_job *j = (struct download_job *)job;

    (void)env;
    if (j->pid > 0) {
        j->interrupted = true;
        kill(j->pid, SIGKILL); /* the result pipe's EOF ends the job */
    }
}

static bool
download_exited(struct tool_env *env, struct tool_job *job, pid_t pid, int status, bool boxed)
{
    struct download_job *j = (struct download_job *)job;

    (void)env;
    (void)status;
    if (boxed || pid != j->pid || pid <= 0)
        return false;
    j->pid = 0;
    return true;
}

static void
download_destroy(struct tool_job *job)
{
    struct download_job *j = (struct download_job *)job;

    if (j->pid > 0)
        kill(j->pid, SIGKILL); /* reaped by the kernel */
    if (j->result >= 0)
        close(j->result);
    if (j->file) {
        as_box_user(j->uid, j->gid, true);
        boxfs_abort(&j->file);
        as_box_user(j->uid, j->gid, false);
    }
    free(j);
}

static const struct job_ops download_ops = {
    download_poll, download_service, download_tick, download_interrupt, download_exited,
    download_destroy,
};

/* A file name for url when the request names none: its last path segment,
 * of safe characters only, else "download". */
static char *
default_name(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    size_t end = p ? strcspn(p, "?#") : 0;
    const char *seg = p ? p + end : NULL;

    while (seg && seg > p && seg[-1] != '/')
        seg--;
    size_t n = seg ? (size_t)(p + end - seg) : 0;
    bool safe = n > 0 && n < 200 && seg[0] != '.';
    for (size_t i = 0; safe && i < n; i++)
        safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                      seg[i]) != NULL;
    return safe ? strndup(seg, n) : strdup("download");
}

/* True for a path the box user may write: relative (under /mnt/data), or
 * under /mnt/data or /tmp. */
static bool
writable_place(const char *path)
{
    return path[0] != '/' || strncmp(path, BOX_HOME "/", strlen(BOX_HOME) + 1) == 0
           || strncmp(path, "/tmp/", 5) == 0;
}

/* Creates the file for j in the box (or on the host without it). */
static json_t *
create_file(struct tool_env *env, struct download_job *j, const char *path)
{
    char err[1024];
    const char *ename = "OSError";
    int root;

    if (env->site->box && !writable_place(path))
        return tool_error("PermissionError", "%s: downloads go under %s or /tmp", path,
                          BOX_HOME);
    if (site_root_open(env->site, &root, err, sizeof err) != CG_OK
        || (env->site->box && boxfs_home_owner(root, &j->uid, &j->gid, err, sizeof err) != CG_OK)) {
        if (root != AT_FDCWD)
            close(root);
        return tool_error(env->site->error[0] ? "RuntimeUnavailable" : "OSError", "%s", err);
    }
    as_box_user(j->uid, j->gid, true);
    int rc = boxfs_create_atomic(root, path, j->uid, j->gid, &j->file, &ename, err, sizeof err);
    as_box_user(j->uid, j->gid, false);
    if (root != AT_FDCWD)
        close(root);
    return rc == CG_OK ? NULL : tool_error(ename, "%s", err);
}

json_t *
tool_download(struct tool_env *env, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    json_t *jurl = json_object_get(data, "url");
    bool bad = false;
    const char *given = tool_str_member(data, "path", &bad);
    char prog[4200], err[512];
    int pipefd[2] = { -1, -1 };
    json_t *error = NULL;
    char *path = NULL;

    (void)req;
    if (!tool_text(jurl))
        return tool_error("ValueError", "download needs \"url\"");
    if (bad || (given && (!*given || strlen(given) > 4000)))
        return tool_error("ValueError", "path must be a non-empty string");
    const char *url = json_string_value(jurl);
    struct download_job *j = calloc(1, sizeof *j);
    if (!j)
        return tool_error("MemoryError", "out of memory");
    *j = (struct download_job){ .base = { &download_ops }, .result = -1, .uid = (uid_t)-1,
                                .gid = (gid_t)-1 };
    path = given ? strdup(given) : default_name(url);
    if (!path) {
        error = tool_error("MemoryError", "out of memory");
        goto fail;
    }
    if (sibling_find("cellgate-fetch", prog, sizeof prog) != CG_OK) {
        error = tool_error("DownloadFailed", "cellgate-fetch is missing beside the kernel's "
                           "binary (%s)", prog);
        goto fail;
    }
    if ((error = create_file(env, j, path)))
        goto fail;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        error = tool_error("OSError", "pipe: %s", strerror(errno));
        goto fail;
    }
    /* It runs beside the kernel, with the kernel's environment: the policy
     * (CELLGATE_DOWNLOAD_*) is the operator's. */
    const char *argv[] = { prog, url, NULL };
    struct spawn_fd fds[] = { { 3, boxfs_fd(j->file) }, { 4, pipefd[1] } };
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)environ,
                               .fds = fds, .n_fds = 2 };
    if (spawn_plain()->start(spawn_plain(), &spec, &j->pid, err, sizeof err) != CG_OK) {
        error = tool_error("DownloadFailed", "%s", err);
        goto fail;
    }
    close(pipefd[1]);
    j->result = pipefd[0];
    fcntl(j->result, F_SETFL, O_NONBLOCK);
    free(path);
    *job = &j->base;
    return NULL;
fail:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    free(path);
    download_destroy(&j->base);
    return error;
}
