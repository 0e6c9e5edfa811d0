/*
 * handlers.h - the allowlist: the request types the kernel answers, on
 * which channel, and their handlers (OpenSSH's mon_table, xeus'
 * m_handler). A message of any other type, or on a channel its type does
 * not belong to, is logged and ignored, with busy and idle around it and no
 * reply (as ipykernel does); a malformed *_request is answered BadRequest.
 * Serving shell, control, stdin and the shell backlog; the loop calls
 * these.
 */
#ifndef CG_HANDLERS_H
#define CG_HANDLERS_H

#include "common/langs.h"
#include "common/wire.h"
#include "kernel/cell.h"
#include "kernel/chan.h"
#include "kernel/history.h"
#include "kernel/tools/tools.h"

#include <stdbool.h>

/* What the handlers serve with (borrowed from the kernel). */
struct handlers {
    struct chan *chan;
    struct cells *cells;
    struct tools *tools;
    struct history *hist;
    const struct lang *primary;   /* for kernel_info */
    bool quit;                    /* a shutdown_request was served */
    bool aborting;                /* the request in service is aborted */
};

/* Receives one message from shell or control and serves it. */
void handlers_dispatch(struct handlers *h, enum channel ch);

/* Serves backlogged shell requests until one goes pending. */
void handlers_serve_backlog(struct handlers *h);

/* Forwards an input_reply from stdin to the cell waiting for it. */
void handlers_serve_stdin(struct handlers *h);

/* Interrupts the request in flight: the running tool, or SIGINT to the
 * running cell's runtime (a second one may end it: cell.h). */
void handlers_interrupt(struct handlers *h);

/* True while a shell request is in service (the loop does not read shell). */
bool handlers_busy(const struct handlers *h);

#endif
