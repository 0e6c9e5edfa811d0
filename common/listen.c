/*
 * listen.c - a kernel's listening sockets, early and across exec
 * (see listen.h).
 */
#include "common/listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Fills sa with the address ZeroMQ would bind for ip:port (numeric IPv4
 * or "*"); false when there is none. */
static bool
endpoint_addr(const char *ip, int port, struct sockaddr_in *sa)
{
    *sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (port <= 0 || port > 65535)
        return false;
    if (strcmp(ip, "*") == 0) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return true;
    }
    return inet_pton(AF_INET, ip, &sa->sin_addr) == 1;
}

/* A TCP socket listening on ip:port, or -1. */
static int
listen_tcp(const char *ip, int port)
{
    struct sockaddr_in sa;
    int one = 1;

    if (!endpoint_addr(ip, port, &sa))
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 100) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void
listen_open(const connfile_t *c, int fds[CH_COUNT])
{
    if (strcmp(c->transport, "tcp") != 0)
        return;
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (fds[ch] < 0)
            fds[ch] = listen_tcp(c->ip, c->ports[ch]);
}

void
listen_hand_down(const int fds[CH_COUNT])
{
    char list[CH_COUNT * 12] = "";
    size_t n = 0;

    for (int ch = 0; ch < CH_COUNT; ch++) {
        if (fds[ch] >= 0 && fcntl(fds[ch], F_SETFD, 0) != 0) {
            /* None handed down: the next program listens itself, on ports
             * that must be free for it (an inheritable socket left open
             * would hold one). */
            for (int i = 0; i < CH_COUNT; i++)
                if (fds[i] >= 0)
                    close(fds[i]);
            unsetenv(LISTEN_FDS_ENV);
            return;
        }
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%d", ch ? "," : "", fds[ch]);
    }
    setenv(LISTEN_FDS_ENV, list, 1);
}

/* True when fd is a TCP socket listening on the address c's endpoints
 * bind, port `port`: not merely any socket on that port (one on every
 * interface would serve a loopback-only kernel to the network). */
static bool
listens_on(int fd, const connfile_t *c, int port)
{
    struct sockaddr_in want, sa;
    socklen_t len = sizeof sa;
    int on = 0;
    socklen_t olen = sizeof on;

    return endpoint_addr(c->ip, port, &want)
           && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) == 0 && on
           && getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && len == sizeof sa
           && sa.sin_family == AF_INET && sa.sin_port == want.sin_port
           && sa.sin_addr.s_addr == want.sin_addr.s_addr;
}

/* True when fd is already one of fds (one socket serves one channel). */
static bool
taken(const int fds[CH_COUNT], int fd)
{
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (fds[ch] == fd)
            return true;
    return false;
}

/* The channel without a socket yet whose endpoint fd listens on, or -1. */
static int
channel_of(const connfile_t *c, const int fds[CH_COUNT], int fd)
{
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (fds[ch] < 0 && listens_on(fd, c, c->ports[ch]))
            return ch;
    return -1;
}

void
listen_take(const connfile_t *c, int fds[CH_COUNT])
{
    const char *v = strcmp(c->transport, "tcp") == 0 ? getenv(LISTEN_FDS_ENV) : NULL;
    char *end;

    for (int i = 0; v && *v && i < CH_COUNT; i++) {
        long fd = strtol(v, &end, 10);
        if (end == v || (*end != ',' && *end != '\0'))
            break;
        int ch = fd >= 0 && fd <= 65535 && !taken(fds, (int)fd) ? channel_of(c, fds, (int)fd) : -1;
        if (ch >= 0 && fcntl((int)fd, F_SETFD, FD_CLOEXEC) == 0)
            fds[ch] = (int)fd;
        v = *end ? end + 1 : end;
    }
    unsetenv(LISTEN_FDS_ENV);
}
