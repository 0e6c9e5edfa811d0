/*
 * fuzz_listen.c - libFuzzer target for listen_take, which reads the
 * CELLGATE_LISTEN_FDS a kernel's environment may carry (set by `cellgate
 * kernel`, or by anyone who starts cellgate-kernel).
 *
 * Input: the variable's value (cut at a NUL). One real listening socket
 * is open, on the port every channel of the connection names; others of
 * the process's descriptors are not listening sockets. Whatever the
 * value: at most one channel takes that socket, nothing else is taken,
 * the variable is gone afterwards, and the socket is close-on-exec.
 */
#include "common/listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sock = -1;
static connfile_t conn = { .transport = "tcp", .ip = "127.0.0.1" };

/* A listening socket on 127.0.0.1 and an ephemeral port, once. */
static void
setup(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;

    if (sock >= 0)
        return;
    sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(sock, 1) != 0
        || getsockname(sock, (struct sockaddr *)&sa, &len) != 0)
        abort();
    for (int ch = 0; ch < CH_COUNT; ch++)
        conn.ports[ch] = ntohs(sa.sin_port);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char value[512];
    int fds[CH_COUNT] = { -1, -1, -1, -1, -1 }, got = 0;

    setup();
    size = size < sizeof value - 1 ? size : sizeof value - 1;
    memcpy(value, data, size);
    value[size] = '\0';
    fcntl(sock, F_SETFD, 0);
    setenv(LISTEN_FDS_ENV, value, 1);
    listen_take(&conn, fds);
    if (getenv(LISTEN_FDS_ENV))
        abort();
    for (int ch = 0; ch < CH_COUNT; ch++) {
        if (fds[ch] < 0)
            continue;
        if (fds[ch] != sock || ++got > 1 || fcntl(sock, F_GETFD) != FD_CLOEXEC)
            abort();
    }
    return 0;
}
