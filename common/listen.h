/*
 * listen.h - a kernel's TCP listening sockets, opened before ZeroMQ starts
 * and, from `cellgate kernel`, before it execs cellgate-kernel: a client
 * that connects before anything listens is refused and tries again only
 * after ZeroMQ's reconnect interval (100 ms).
 */
#ifndef CG_LISTEN_H
#define CG_LISTEN_H

#include "common/connfile.h"

/* The environment variable naming the handed-down sockets. */
#define LISTEN_FDS_ENV "CELLGATE_LISTEN_FDS"

/*
 * Listens, as ZeroMQ's own listener does (SO_REUSEADDR, backlog 100,
 * close-on-exec), on each of c's TCP endpoints whose fds[ch] is -1;
 * leaves -1 where it cannot, or for a transport other than tcp.
 */
void listen_open(const connfile_t *c, int fds[CH_COUNT]);

/*
 * Keeps the sockets of fds open across exec and names them in
 * LISTEN_FDS_ENV for listen_take() in the program exec'd next.  If one
 * cannot be kept, closes them all and names none: the next program then
 * listens itself, on free ports.
 */
void listen_hand_down(const int fds[CH_COUNT]);

/*
 * Takes the sockets LISTEN_FDS_ENV names (then removes it): a named
 * socket listening on the address and port of a channel of c that has
 * none yet becomes that channel's fds[ch], close-on-exec again (in any
 * order; one socket per channel). The others are left alone - a name from
 * the environment is not proof a descriptor is ours - and channels
 * without a socket stay -1.
 */
void listen_take(const connfile_t *c, int fds[CH_COUNT]);

#endif
