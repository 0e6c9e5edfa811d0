/*
 * fuzz_ws.c - libFuzzer target for gateway/ws.c and libwslay's frame
 * parser under it (masking, fragments, control frames, the close
 * handshake, the WS_MAX_MESSAGE bound): the bytes are what a client sent on
 * an upgraded connection, whose other end is a socketpair the target
 * drains.
 *
 * Input: byte 0 says what the server does (bit 0: send each message back;
 * bit 1: ping the client first; bit 2: start the close handshake once the
 * client's bytes are read; bit 3: the bytes come through the socket rather
 * than as the bytes read with the upgrade); the rest is the client's
 * frames, after which the client shuts its side down. The messages
 * delivered can hold no more bytes than the client sent.
 */
#include "common/cgerr.h"
#include "gateway/ws.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ROUNDS 4096 /* of ws_handle() per input; each moves bytes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sink's view of the connection. */
struct seen {
    struct ws *w;
    bool echo;                    /* send each message back */
    size_t messages, bytes;
};

static void
on_message(void *ctx, const unsigned char *data, size_t len, bool binary)
{
    struct seen *s = ctx;
    s->messages++;
    s->bytes += len;
    if (s->echo)
        ws_send(s->w, data, len, binary); /* may fail once closing: fine */
}

/* Reads and drops what the server wrote; false once it is gone. */
static bool
drain(int fd)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        ;
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    size_t sent = 0;
    bool shut = false, closing = false;

    if (size < 1)
        return 0;
    signal(SIGPIPE, SIG_IGN);
    uint8_t flags = data[0];
    bool via_socket = flags & 8;
    data++;
    size--;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    struct seen s = { .echo = flags & 1 };
    s.w = ws_new(sv[0], via_socket ? NULL : (const char *)data, via_socket ? 0 : size,
                 (struct ws_sink){ .on_message = on_message, .ctx = &s });
    if (!s.w)
        abort();
    if (!via_socket)
        sent = size;
    if (flags & 2)
        ws_ping(s.w);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        ssize_t n;
        if (sent < size && (n = write(sv[1], data + sent, size - sent)) > 0)
            sent += (size_t)n;
        /* The first round with every byte sent answers pings and closes;
         * the next one sees the client's end of stream. */
        bool all_read = sent == size && round > 0;
        if (all_read && (flags & 4) && !closing) {
            ws_close(s.w, 1000, "fuzz");
            closing = true;
        }
        if (all_read && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        bool alive = ws_handle(s.w, true, true);
        if (!drain(sv[1]) || !alive)
            break;
    }
    if (s.bytes > size)
        abort(); /* a message made of bytes the client never sent */
    ws_destroy(&s.w);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
