/*
 * test_listen.c - unit tests of the listening sockets `cellgate kernel`
 * hands across its exec to cellgate-kernel (common/listen.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A socket listening on addr (host order) and a port the system picks;
 * its port in *port. */
static int
listener(uint32_t addr, int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(addr) };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A loopback connection whose five ports are those of five listeners. */
static void
five_listeners(connfile_t *c, int socks[CH_COUNT])
{
    memset(c, 0, sizeof *c);
    snprintf(c->transport, sizeof c->transport, "tcp");
    snprintf(c->ip, sizeof c->ip, "127.0.0.1");
    for (int ch = 0; ch < CH_COUNT; ch++)
        socks[ch] = listener(INADDR_LOOPBACK, &c->ports[ch]);
}

static void
close_all(const int fds[CH_COUNT])
{
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (fds[ch] >= 0)
            close(fds[ch]);
}

static void
test_hand_down_then_take(void **state)
{
    (void)state;
    connfile_t c;
    int socks[CH_COUNT], fds[CH_COUNT] = { -1, -1, -1, -1, -1 };
    char expect[80];

    five_listeners(&c, socks);
    listen_hand_down(socks);
    snprintf(expect, sizeof expect, "%d,%d,%d,%d,%d", socks[0], socks[1], socks[2], socks[3],
             socks[4]);
    assert_string_equal(getenv(LISTEN_FDS_ENV), expect);
    for (int ch = 0; ch < CH_COUNT; ch++)
        assert_int_equal(fcntl(socks[ch], F_GETFD), 0); /* kept across exec */
    listen_take(&c, fds);
    assert_null(getenv(LISTEN_FDS_ENV));
    for (int ch = 0; ch < CH_COUNT; ch++) {
        assert_int_equal(fds[ch], socks[ch]);
        assert_int_equal(fcntl(fds[ch], F_GETFD), FD_CLOEXEC);
    }
    close_all(socks);
}

static void
test_take_matches_ports_not_order(void **state)
{
    (void)state;
    connfile_t c;
    int socks[CH_COUNT], fds[CH_COUNT] = { -1, -1, -1, -1, -1 };
    char list[80];

    five_listeners(&c, socks);
    /* Reversed, one named twice, one not a socket, garbage after. */
    snprintf(list, sizeof list, "%d,%d,%d,%d,%d,%d,1,x", socks[4], socks[4], socks[3], socks[2],
             socks[1], socks[0]);
    setenv(LISTEN_FDS_ENV, list, 1);
    listen_take(&c, fds);
    assert_null(getenv(LISTEN_FDS_ENV));
    /* Five names are read: socks[0], the sixth, is left for listen_open. */
    assert_int_equal(fds[0], -1);
    for (int ch = 1; ch < CH_COUNT; ch++)
        assert_int_equal(fds[ch], socks[ch]);
    close_all(socks);
}

static void
test_take_refuses_another_address(void **state)
{
    (void)state;
    connfile_t c;
    int socks[CH_COUNT], fds[CH_COUNT] = { -1, -1, -1, -1, -1 };
    int port, any = listener(INADDR_ANY, &port);
    int pipefd[2];
    char list[80];

    five_listeners(&c, socks);
    close(socks[CH_SHELL]);
    socks[CH_SHELL] = -1;
    c.ports[CH_SHELL] = port; /* the shell's port, but on every interface */
    assert_int_equal(pipe(pipefd), 0);
    snprintf(list, sizeof list, "%d,%d,%d", any, pipefd[0], socks[CH_IOPUB]);
    setenv(LISTEN_FDS_ENV, list, 1);
    listen_take(&c, fds);
    assert_int_equal(fds[CH_SHELL], -1);
    assert_int_equal(fds[CH_IOPUB], socks[CH_IOPUB]);
    assert_int_equal(fcntl(any, F_GETFD), 0); /* not ours: left alone */
    close(any);
    close(pipefd[0]);
    close(pipefd[1]);
    close_all(socks);
}

static void
test_hand_down_failure_closes_all(void **state)
{
    (void)state;
    connfile_t c;
    int socks[CH_COUNT];

    five_listeners(&c, socks);
    close(socks[CH_STDIN]); /* a descriptor that cannot be kept */
    setenv(LISTEN_FDS_ENV, "stale", 1);
    listen_hand_down(socks);
    assert_null(getenv(LISTEN_FDS_ENV));
    for (int ch = 0; ch < CH_COUNT; ch++)
        assert_int_equal(fcntl(socks[ch], F_GETFD), -1); /* closed: the ports are free */
    int fds[CH_COUNT] = { -1, -1, -1, -1, -1 };
    listen_open(&c, fds); /* as the next program does */
    for (int ch = 0; ch < CH_COUNT; ch++)
        assert_true(fds[ch] >= 0);
    close_all(fds);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_down_then_take),
        cmocka_unit_test(test_take_matches_ports_not_order),
        cmocka_unit_test(test_take_refuses_another_address),
        cmocka_unit_test(test_hand_down_failure_closes_all),
    };
    return cmocka_run_group_tests_name("listen", tests, NULL, NULL);
}
