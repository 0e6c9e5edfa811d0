/*
 * tool_download.c - cellgate.download {url, path?} -> {path, size, sha256,
 * content_type, url}. The operator's policy is checked first, in the loop
 * (a refused URL costs nothing); the fetch then runs in a worker thread
 * (download.c) writing into a temporary file inside the box (boxfs.c),
 * renamed onto the path when complete. The loop polls a pipe the worker
 * writes one byte to when it is done; an interrupt sets the cancel flag,
 * which the fetch checks at least once a second.
 */
#include "tools_impl.h"

#include "boxfs.h"
#include "download.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sys/fsuid.h>

struct download_job {
    struct tool_job base;
    pthread_t thread;
    bool running;                 /* the thread was started and not joined */
    int done[2];                  /* the worker writes a byte to done[1] at the end */
    atomic_bool cancel;
    struct download_policy *policy;
    int root;                     /* the box's root, or AT_FDCWD */
    uid_t uid;
    gid_t gid;
    char *url, *path;
    /* Written by the worker before it signals done. */
    int rc;
    struct download_result res;
    const char *ename;
    char err[1024];
    char final_path[4200];
};

/*
 * Switches this thread's file system ids to the box user's (on) or back.
 * They are per thread: the box's own permissions then apply to what the
 * thread does to the box's files, and the box's tmpfs, which knows no host
 * root, accepts new files. The kernel's real ids allow switching back.
 */
static void
as_box_user(const struct download_job *j, bool on)
{
    if (j->uid == (uid_t)-1)
        return;
    setfsgid(on ? j->gid : getgid());
    setfsuid(on ? j->uid : getuid());
}

/* The worker: create, fetch, commit or abort. */
static void *
download_main(void *arg)
{
    struct download_job *j = arg;
    struct boxfs_file *f = NULL;
    const char *ename = NULL;

    as_box_user(j, true);
    j->rc = boxfs_create_atomic(j->root, j->path, j->uid, j->gid, &f, &ename, j->err,
                                sizeof j->err);
    if (j->rc == CG_OK) {
        struct download_request rq = { .url = j->url, .out_fd = boxfs_fd(f),
                                       .cancel = &j->cancel };
        snprintf(j->final_path, sizeof j->final_path, "%s", boxfs_path(f));
        as_box_user(j, false); /* the seen file is the operator's */
        j->rc = download_fetch(j->policy, &rq, &j->res, j->err, sizeof j->err);
        ename = j->res.ename;
        as_box_user(j, true);
        if (j->rc == CG_OK)
            j->rc = boxfs_commit(&f, &ename, j->err, sizeof j->err);
        else
            boxfs_abort(&f);
    }
    j->ename = ename ? ename : DOWNLOAD_E_FAILED;
    ssize_t w = write(j->done[1], "", 1);
    (void)w;
    return NULL;
}

static size_t
download_poll(struct tool_job *job, zmq_pollitem_t *items)
{
    struct download_job *j = (struct download_job *)job;

    items[0] = (zmq_pollitem_t){ .fd = j->done[0], .events = ZMQ_POLLIN };
    return 1;
}

static void
download_service(struct kernel *k, struct tool_job *job, const zmq_pollitem_t *items, size_t n)
{
    struct download_job *j = (struct download_job *)job;

    if (n < 1 || !(items[0].revents & ZMQ_POLLIN))
        return;
    pthread_join(j->thread, NULL);
    j->running = false;
    if (j->rc != CG_OK) {
        tools_finish(k, tool_error(j->ename, "%s", j->err));
        return;
    }
    tools_finish(k, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "status", "ok", "path",
                              j->final_path, "size", (json_int_t)j->res.size, "sha256",
                              j->res.sha256, "content_type", j->res.content_type, "url",
                              j->res.url));
}

static double
download_tick(struct kernel *k, struct tool_job *job, double now)
{
    (void)k;
    (void)job;
    (void)now;
    return 0; /* the fetch keeps its own time cap */
}

static void
download_interrupt(struct kernel *k, struct tool_job *job)
{
    (void)k;
    atomic_store(&((struct download_job *)job)->cancel, true);
}

static bool
download_exited(struct kernel *k, struct tool_job *job, pid_t pid, int status)
{
    (void)k;
    (void)job;
    (void)pid;
    (void)status;
    return false;
}

static void
download_destroy(struct tool_job *job)
{
    struct download_job *j = (struct download_job *)job;

    if (j->running) {
        atomic_store(&j->cancel, true);
        pthread_join(j->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (j->done[i] >= 0)
            close(j->done[i]);
    if (j->root != AT_FDCWD && j->root >= 0)
        close(j->root);
    download_policy_destroy(&j->policy);
    free(j->url);
    free(j->path);
    free(j);
}

static const struct job_ops download_ops = {
    download_poll, download_service, download_tick, download_interrupt, download_exited,
    download_destroy,
};

/* A file name for url when the request names none: its last path segment,
 * of safe characters only, else "download". */
static char *
default_name(const char *canon)
{
    const char *p = strstr(canon, "://");
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
 * under /mnt/data or /tmp. The kernel may be host root: it must not write
 * where the box user could not. */
static bool
writable_place(const char *path)
{
    return path[0] != '/' || strncmp(path, BOX_HOME "/", strlen(BOX_HOME) + 1) == 0
           || strncmp(path, "/tmp/", 5) == 0;
}

json_t *
tool_download(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    static bool initialised;
    const char *url = json_string_value(json_object_get(data, "url"));
    json_t *jpath = json_object_get(data, "path");
    char canon[DOWNLOAD_URL_MAX + 1], err[1024];
    struct download_policy *policy;
    json_t *error = NULL;

    (void)req;
    if (!url)
        return tool_error("ValueError", "download needs \"url\"");
    if (jpath && !json_is_null(jpath)
        && (!json_is_string(jpath) || !*json_string_value(jpath)
            || strlen(json_string_value(jpath)) != json_string_length(jpath)
            || json_string_length(jpath) > 4000))
        return tool_error("ValueError", "path must be a non-empty string");
    if (!initialised) {
        /* The loop's thread is the only one using libcurl until now. */
        if (download_global_init(err, sizeof err) != CG_OK)
            return tool_error(DOWNLOAD_E_FAILED, "%s", err);
        initialised = true;
    }
    if (!(policy = download_policy_from_env(err, sizeof err)))
        return tool_error(DOWNLOAD_E_CONFIG, "%s", err);
    if (download_policy_check(policy, url, canon, sizeof canon, err, sizeof err) != CG_OK) {
        download_policy_destroy(&policy);
        return tool_error(DOWNLOAD_E_REFUSED, "%s", err);
    }
    struct download_job *j = calloc(1, sizeof *j);
    if (!j) {
        download_policy_destroy(&policy);
        return tool_error("MemoryError", "out of memory");
    }
    *j = (struct download_job){ .base = { &download_ops }, .done = { -1, -1 },
                                .policy = policy, .root = AT_FDCWD, .uid = (uid_t)-1,
                                .gid = (gid_t)-1 };
    j->url = strdup(url);
    j->path = json_is_string(jpath) ? strdup(json_string_value(jpath)) : default_name(canon);
    if (!j->url || !j->path || pipe2(j->done, O_CLOEXEC | O_NONBLOCK) < 0) {
        error = tool_error("OSError", "cannot start the download: %s", strerror(errno));
        goto fail;
    }
    if (k->box) {
        if (!writable_place(j->path)) {
            error = tool_error("PermissionError", "%s: downloads go under %s or /tmp",
                               j->path, BOX_HOME);
            goto fail;
        }
        if (boxfs_root_open(box_init_pid(k->box), &j->root, err, sizeof err) != CG_OK
            || boxfs_home_owner(j->root, &j->uid, &j->gid, err, sizeof err) != CG_OK) {
            error = tool_error("OSError", "%s", err);
            goto fail;
        }
    }
    if (pthread_create(&j->thread, NULL, download_main, j) != 0) {
        error = tool_error("OSError", "cannot start the download's thread");
        goto fail;
    }
    j->running = true;
    *job = &j->base;
    return NULL;
fail:
    download_destroy(&j->base);
    return error;
}
