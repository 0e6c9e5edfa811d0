/*
 * display_cmd.c - `cellgate-display FILE [--mime TYPE]` (see
 * display_cmd.h). In the box this very program is bound read-only at
 * /run/cellgate/bin/cellgate-display (boxinit.c), so every language can
 * run it. It opens FILE itself - so it shows only what the box's user may
 * read, and a symlink planted in /mnt/data resolves inside the box - and
 * hands the open file to the kernel over the display socket (displayd.h)
 * with a small request, then waits for the kernel's answer: whatever the
 * calling program prints afterwards comes after the display.
 */
#include "cli/display_cmd.h"

#include "sandbox/box.h"
#include "kernel/display.h"
#include "common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define WAIT_S 60 /* for a connection and for the answer: the kernel answers at once */

static void
usage(FILE *f, const char *prog)
{
    fprintf(f, "usage: %s FILE [--mime TYPE]\n"
            "\n"
            "Shows FILE in the notebook, after what the running cell printed so far: a PNG,\n"
            "JPEG, GIF, WebP or SVG image (recognised by its bytes) or an HTML page (a name\n"
            "ending in .html or .htm), of at most %u MiB. --mime TYPE says what FILE is:\n"
            "image/png, image/jpeg, image/gif, image/webp, image/svg+xml or text/html (an\n"
            "image must really be of that type). Works from any language in a cellgate\n"
            "kernel. Exits 0 once the file is shown, 1 if it cannot be (why on stderr),\n"
            "2 on a usage error.\n",
            prog, DISPLAY_MAX >> 20);
}

/* The request: {"name": NAME, "mime": TYPE}, with name as the user gave
 * it when that fits (as valid UTF-8), else its last component, else none.
 * NULL on no memory. */
static char *
request(const char *file, const char *mime)
{
    const char *slash = strrchr(file, '/');
    const char *names[] = { file, slash && slash[1] ? slash + 1 : file, "" };

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = strlen(names[i]);
        char *clean = malloc(3 * len + 1);
        if (!clean)
            return NULL;
        size_t n = utf8_sanitize(names[i], len, clean);
        json_t *o = n <= DISPLAY_NAME_MAX ? json_pack("{s:s}", "name", clean) : NULL;
        free(clean);
        if (o && mime)
            json_object_set_new(o, "mime", json_string(mime));
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (s && strlen(s) <= DISPLAY_REQ_MAX)
            return s;
        free(s);
    }
    return NULL;
}

/* Connects to the kernel's display socket. Returns the socket or -1 (why
 * printed). */
static int
connect_kernel(const char *prog)
{
    const char *path = getenv("CELLGATE_DISPLAY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = WAIT_S };

    if (!path || !*path)
        path = BOX_DISPLAY_SOCKET;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "%s: CELLGATE_DISPLAY_SOCKET is too long\n", prog);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    /* A busy kernel keeps us in its backlog: connect waits (bounded). */
    if (s >= 0)
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "%s: cannot reach the kernel at %s: %s (it works in code that a "
                "cellgate kernel runs)\n", prog, path, strerror(errno));
        if (s >= 0)
            close(s);
        return -1;
    }
    return s;
}

/* Sends the request with fd attached. */
static int
send_request(int s, const char *req, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { (void *)req, strlen(req) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

    memset(cbuf, 0, sizeof cbuf);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Waits for the kernel's answer and reports it: the exit status. */
static int
await_answer(int s, const char *prog)
{
    char buf[1024];
    struct pollfd p = { s, POLLIN, 0 };
    int rc;

    do
        rc = poll(&p, 1, WAIT_S * 1000);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        fprintf(stderr, "%s: no answer from the kernel within %d s\n", prog, WAIT_S);
        return 1;
    }
    ssize_t n = rc < 0 ? -1 : recv(s, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        fprintf(stderr, "%s: the kernel closed the connection without an answer\n", prog);
        return 1;
    }
    buf[n] = '\0';
    if (strcmp(buf, "ok") == 0)
        return 0;
    fprintf(stderr, "%s: %s\n", prog, buf);
    return 1;
}

int
display_cmd_main(int argc, char **argv, const char *prog)
{
    const char *file = NULL, *mime = NULL;
    bool options = true;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0) {
            options = false;
        } else if (options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            usage(stdout, prog);
            return 0;
        } else if (options && strcmp(a, "--mime") == 0) {
            if (++i == argc) {
                fprintf(stderr, "%s: --mime needs a TYPE\n", prog);
                return 2;
            }
            mime = argv[i];
        } else if (options && strncmp(a, "--mime=", 7) == 0) {
            mime = a + 7;
        } else if (options && a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option %s\n", prog, a);
            usage(stderr, prog);
            return 2;
        } else if (file) {
            fprintf(stderr, "%s: one FILE at a time (got %s and %s)\n", prog, file, a);
            return 2;
        } else {
            file = a;
        }
    }
    if (!file) {
        usage(stderr, prog);
        return 2;
    }
    if (mime && !display_mime_known(mime, DISPLAY_IMAGES | DISPLAY_HTML)) {
        fprintf(stderr, "%s: --mime %s: the types shown are image/png, image/jpeg, image/gif, "
                "image/webp, image/svg+xml and text/html\n", prog, mime);
        return 2;
    }
    /* O_NONBLOCK: a FIFO must not hang us here (the kernel refuses it). */
    int fd = open(file, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, file, strerror(errno));
        return 1;
    }
    char *req = request(file, mime);
    int s = req ? connect_kernel(prog) : -1;
    int status = 1;
    if (!req)
        fprintf(stderr, "%s: out of memory\n", prog);
    else if (s >= 0 && send_request(s, req, fd) < 0)
        fprintf(stderr, "%s: cannot send the request to the kernel: %s\n", prog, strerror(errno));
    else if (s >= 0)
        status = await_answer(s, prog);
    free(req);
    close(fd);
    if (s >= 0)
        close(s);
    return status;
}
