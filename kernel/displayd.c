/*
 * displayd.c - serving cellgate-display's requests in the kernel's loop
 * (see displayd.h; what a file shows as is display.c's).
 */
#include "kernel/displayd.h"

#include "common/cgerr.h"
#include "common/sibling.h"
#include "common/clock.h"
#include "common/log.h"
#include "kernel/display.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define CONN_WAIT_S 3.0  /* a client sends its request right after connecting */
#define MAX_FDS 4        /* fds taken from one message (all but one are refused) */

/* A client that has not sent its request yet. */
struct conn {
    int fd;
    double deadline;     /* monotonic seconds when it is dropped */
};

struct displayd {
    struct chan *chan;
    struct site *site;
    struct displayd_hook hook;
    int listen;          /* -1 until the box hands it over */
    struct conn conns[DISPLAYD_MAX_CONNS];
    size_t n_conns;
    char dir[128];       /* without the box: the private directory, else "" */
    char bin_dir[160];   /* ... its bin/, holding the cellgate-display symlink */
    char link[192];      /* ... the symlink */
    char sock[160];      /* ... and the socket */
};

/* ---- set-up and tear-down ----------------------------------------------- */

static int
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Without the box: a private directory with the socket, and bin/ with a
 * symlink cellgate-display -> this program, for the runtimes' PATH. */
static int
make_private(struct displayd *d, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char exe[PATH_MAX];
    const char *tmp = getenv("TMPDIR");

    if (!tmp || tmp[0] != '/' || strlen(tmp) > 60) /* the socket path must fit sun_path */
        tmp = "/tmp";
    snprintf(d->dir, sizeof d->dir, "%s/cellgate-display-XXXXXX", tmp);
    if (!mkdtemp(d->dir)) {
        int e = errno;
        d->dir[0] = '\0';
        return cg_fail(err, errlen, CG_ESYS, "cannot create a directory in %s: %s", tmp,
                       strerror(e));
    }
    snprintf(d->bin_dir, sizeof d->bin_dir, "%s/bin", d->dir);
    snprintf(d->link, sizeof d->link, "%s/cellgate-display", d->bin_dir);
    snprintf(d->sock, sizeof d->sock, "%s/display.sock", d->dir);
    /* The cellgate command beside us (it starts faster than this program,
     * cellgate-kernel, and does the same as the display command), else us. */
    if (sibling_or_self("cellgate", exe, sizeof exe) != CG_OK)
        return cg_fail(err, errlen, CG_ESYS, "cannot find this program: %s", strerror(errno));
    if (mkdir(d->bin_dir, 0700) < 0 || symlink(exe, d->link) < 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot create %s: %s", d->link, strerror(errno));
    if (strlen(d->sock) >= sizeof sa.sun_path)
        return cg_fail(err, errlen, CG_ETOOBIG, "socket path too long: %s", d->sock);
    memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
    d->listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->listen < 0 || bind(d->listen, (struct sockaddr *)&sa, sizeof sa) < 0
        || listen(d->listen, 16) < 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot listen at %s: %s", d->sock, strerror(errno));
    return CG_OK;
}

struct displayd *
displayd_new(struct chan *chan, struct site *site, struct displayd_hook hook, char *err,
             size_t errlen)
{
    struct displayd *d = calloc(1, sizeof *d);

    if (!d) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    *d = (struct displayd){ .chan = chan, .site = site, .hook = hook, .listen = -1 };
    /* With the box, its init hands the socket over (displayd_poll_items
     * takes it); with a box that failed, no runtime ever starts. */
    if (!site->box && !site->error[0] && make_private(d, err, errlen) != CG_OK)
        displayd_destroy(&d);
    return d;
}

static void
drop(struct displayd *d, size_t i)
{
    close(d->conns[i].fd);
    d->conns[i] = d->conns[--d->n_conns];
}

void
displayd_box_gone(struct displayd *d)
{
    if (!d)
        return;
    while (d->n_conns)
        drop(d, 0);
    if (d->listen >= 0)
        close(d->listen);
    d->listen = -1; /* a fresh box hands over its own */
}

void
displayd_destroy(struct displayd **dp)
{
    if (!dp || !*dp)
        return;
    struct displayd *d = *dp;
    while (d->n_conns)
        drop(d, 0);
    if (d->listen >= 0)
        close(d->listen);
    if (d->dir[0]) {
        unlink(d->sock);
        unlink(d->link);
        rmdir(d->bin_dir);
        rmdir(d->dir);
    }
    free(d);
    *dp = NULL;
}

void
displayd_place(const struct displayd *d, struct rt_place *where)
{
    if (!d)
        return;
    if (d->site->box) {
        where->bin_dir = BOX_BIN_DIR;
        where->display_socket = BOX_DISPLAY_SOCKET;
    } else if (d->dir[0] && d->listen >= 0) {
        where->bin_dir = d->bin_dir;
        where->display_socket = d->sock;
    }
}

/* ---- polling ------------------------------------------------------------ */

size_t
displayd_poll_items(struct displayd *d, zmq_pollitem_t *items)
{
    size_t n = 0;

    if (!d)
        return 0;
    if (d->listen < 0 && d->site->box && (d->listen = box_take_display_fd(d->site->box)) >= 0
        && set_nonblock(d->listen) < 0) {
        log_warn("display socket: %s", strerror(errno));
        close(d->listen);
        d->listen = -1;
    }
    /* A full table stops accepting: clients wait in the backlog. */
    if (d->listen >= 0 && d->n_conns < DISPLAYD_MAX_CONNS)
        items[n++] = (zmq_pollitem_t){ .fd = d->listen, .events = ZMQ_POLLIN };
    for (size_t i = 0; i < d->n_conns; i++)
        items[n++] = (zmq_pollitem_t){ .fd = d->conns[i].fd, .events = ZMQ_POLLIN };
    return n;
}

long
displayd_wait_ms(const struct displayd *d)
{
    double now = clock_now(), first = 0;

    for (size_t i = 0; d && i < d->n_conns; i++)
        if (!first || d->conns[i].deadline < first)
            first = d->conns[i].deadline;
    if (!first)
        return -1;
    return first <= now ? 0 : (long)((first - now) * 1000) + 1;
}

/* ---- serving ------------------------------------------------------------ */

/* Answers a client (one message; it may be gone already). */
static void
answer(int fd, const char *text)
{
    ssize_t n = send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
}

/* One request: buf[0..len) as received, fd the file it came with. */
static int
handle(struct displayd *d, const char *buf, size_t len, int fd, char *err, size_t errlen)
{
    struct display_req req;
    struct display_shown shown;
    unsigned char *bytes;
    size_t n;
    json_t *c;
    char why[256];
    int rc = display_parse_request(buf, len, &req, err, errlen);

    if (rc != CG_OK)
        return rc;
    rc = display_read_fd(fd, &bytes, &n, why, sizeof why);
    if (rc != CG_OK)
        return cg_fail(err, errlen, rc, "%s: %s", req.name[0] ? req.name : "the file", why);
    rc = display_bundle(bytes, n, req.name, req.mime[0] ? req.mime : NULL,
                        DISPLAY_IMAGES | DISPLAY_HTML, &c, &shown, err, errlen);
    free(bytes);
    if (rc != CG_OK)
        return rc;
    /* The cell's output so far comes first: the client waits for our
     * answer, so nothing it prints later can be in there. */
    if (d->hook.catch_up)
        d->hook.catch_up(d->hook.ctx);
    json_t *data = json_object_get(c, "data");
    size_t size = json_string_length(json_object_get(data, shown.mime))
                  + json_string_length(json_object_get(data, "text/plain"));
    if (!chan_output_allowed(d->chan, size)) {
        json_decref(c);
        return cg_fail(err, errlen, CG_ETOOBIG, "not shown: this cell's output passed its "
                       "limit (--output-limit)");
    }
    chan_publish(d->chan, chan_output_parent(d->chan), "display_data", c);
    return CG_OK;
}

/* Reads the request waiting on conn i, serves it and answers; drops the
 * connection unless nothing was there after all. */
static void
serve_conn(struct displayd *d, size_t i)
{
    char buf[DISPLAY_REQ_MAX], cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)], err[512];
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    int fds[MAX_FDS], rc;
    size_t n_fds = 0;

    ssize_t n = recvmsg(d->conns[i].fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            for (size_t j = 0; j < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); j++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + j * sizeof fd, sizeof fd);
                if (n_fds < MAX_FDS)
                    fds[n_fds++] = fd;
                else
                    close(fd);
            }
    if (n < 0) { /* the client went away */
        drop(d, i);
        return;
    }
    if (n == 0)
        rc = cg_fail(err, sizeof err, CG_EINVAL, "empty request");
    else if (mh.msg_flags & MSG_TRUNC)
        rc = cg_fail(err, sizeof err, CG_ETOOBIG, "request larger than %u bytes",
                     DISPLAY_REQ_MAX);
    else if (n_fds != 1 || (mh.msg_flags & MSG_CTRUNC))
        rc = cg_fail(err, sizeof err, CG_EINVAL, "%s", n_fds ? "attach exactly one file"
                                                          : "no file attached to the request");
    else
        rc = handle(d, buf, (size_t)n, fds[0], err, sizeof err);
    for (size_t j = 0; j < n_fds; j++)
        close(fds[j]);
    if (rc != CG_OK)
        log_debug("cellgate-display: %s", err);
    answer(d->conns[i].fd, rc == CG_OK ? "ok" : err);
    drop(d, i);
}

/* Takes waiting connections while there is room. */
static void
accept_conns(struct displayd *d)
{
    while (d->n_conns < DISPLAYD_MAX_CONNS) {
        int fd = accept4(d->listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("display socket: accept: %s", strerror(errno));
            return;
        }
        d->conns[d->n_conns++] = (struct conn){ fd, clock_now() + CONN_WAIT_S };
    }
}

void
displayd_service(struct displayd *d, const zmq_pollitem_t *items, size_t n)
{
    bool listen_ready = false;

    if (!d)
        return;
    /* Connections first (serving one may close it), then new ones. */
    for (size_t i = 0; i < n; i++) {
        if (!(items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
            continue;
        if (items[i].fd == d->listen) {
            listen_ready = true;
            continue;
        }
        for (size_t j = 0; j < d->n_conns; j++)
            if (d->conns[j].fd == items[i].fd) {
                serve_conn(d, j);
                break;
            }
    }
    if (listen_ready)
        accept_conns(d);
    double now = clock_now();
    for (size_t i = 0; i < d->n_conns;) {
        if (d->conns[i].deadline > now) {
            i++;
            continue;
        }
        answer(d->conns[i].fd, "no request came within 3 seconds of connecting");
        drop(d, i);
    }
}
