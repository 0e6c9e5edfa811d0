/*
 * cell.h - the shell requests that run on a language's runtime: execute,
 * complete, inspect and is_complete. Cells start the runtime a request
 * needs (one per language, kept between requests), hand it the request,
 * turn what its driver sends back into Jupyter messages (streams under the
 * output budget, displays, results, the one error, input requests) and
 * finish the request - or fail it when the runtime dies.
 *
 * A request that goes to a runtime stays the channel's request in service
 * (kernel/chan.h) until the driver answers; everything sent goes through
 * the channel. The loop polls the runtimes' fds through cell_poll_items.
 */
#ifndef CG_CELL_H
#define CG_CELL_H

#include "common/langs.h"
#include "common/wire.h"
#include "kernel/chan.h"
#include "kernel/history.h"
#include "kernel/runtime.h"
#include "kernel/site.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <zmq.h>

#define CELL_MAX_LANGS 16
#define CELL_POLL_ITEMS (CELL_MAX_LANGS * RT_POLL_ITEMS)

/* Seconds after a client's interrupt when a cell still running is told it
 * can be ended by another interrupt (which then kills its runtime). */
#define CELL_INTERRUPT_FORCE_S 1.0

struct cells;

struct cells_opts {
    struct chan *chan;           /* where everything goes out */
    struct site *site;           /* where runtimes start */
    struct history *hist;        /* executes with store_history are recorded */
    const struct lang *primary;  /* the kernelspec's language */
    bool color;                  /* ANSI colour in tracebacks */
    /* Reports processes that ended, now (the kernel's reaping): used to
     * settle a runtime that hung up before its exit was reported. */
    void (*reap)(void *ctx);
    void *reap_ctx;
};

/* Cells for a kernel (no runtime started yet); NULL when out of memory.
 * The objects in opts are borrowed and must outlive the cells. */
struct cells *cells_new(const struct cells_opts *opts);

/* SIGKILLs every runtime's process group (reaping comes later). */
void cells_kill(struct cells *cs);

/* Kills and frees every runtime and the cells; nulls *cs. Idempotent. */
void cells_destroy(struct cells **cs);

/*
 * execute_request (in service on the channel): answers at once (an
 * unknown %%language, a runtime that cannot start) and returns false, or
 * hands the cell to its runtime and returns true: the reply and idle
 * follow when the driver is done.
 */
bool cell_execute(struct cells *cs, const wire_msg_t *req);

/* complete_request, inspect_request, is_complete_request: answered at once
 * (false) or forwarded to the runtime of the cell's language (true). */
bool cell_request(struct cells *cs, const wire_msg_t *req);

/* A comm_open / comm_msg / comm_close that is not for one of the kernel's
 * tools: handed to the Python runtime (ipywidgets live there) when it runs.
 * False when none runs: no comm of it can exist. */
bool cell_comm(struct cells *cs, const wire_msg_t *req);

/* True while a request runs on a runtime. */
bool cell_pending(const struct cells *cs);

/* True while the running cell waits for an input_reply. */
bool cell_input_waiting(const struct cells *cs);

/* An input_reply's value for the cell waiting for it. */
void cell_input_reply(struct cells *cs, const char *value);

/*
 * The client interrupts the running cell: SIGINT to its runtime (a pending
 * input is cancelled). A runtime that ignores it (a JavaScript busy loop
 * after an await, Python code that catches KeyboardInterrupt) is killed
 * by a second interrupt that comes CELL_INTERRUPT_FORCE_S or more after
 * the first; the cell ends with RuntimeExited and the next one gets a
 * fresh runtime. Nothing happens when no request runs.
 */
void cell_interrupt(struct cells *cs);

/* Time-driven work of the running cell: its time limit (--timeout) and the
 * "interrupt again" notice. Returns the monotonic time it next needs a
 * call, or 0. */
double cell_tick(struct cells *cs);

/* Starts the primary language's runtime ahead of the first cell, if no
 * request runs (a failure is logged: the first cell will say it). */
void cell_prestart(struct cells *cs);

/* The version the primary runtime reported, or NULL (not started yet). */
const char *cell_language_version(const struct cells *cs);

/* Fills up to CELL_POLL_ITEMS poll items for the runtimes' fds. */
size_t cell_poll_items(struct cells *cs, zmq_pollitem_t *items);

/* Serves the runtimes after zmq_poll (items as filled above). A driver
 * that breaks the protocol is killed. */
void cell_service(struct cells *cs, const zmq_pollitem_t *items);

/* A process ended with wait status: if it was a runtime's driver, its
 * request (if any) is finished or failed. True if it was one. */
bool cell_exited(struct cells *cs, pid_t pid, int status);

/* Every runtime died with the box: each is reported dead. */
void cell_box_gone(struct cells *cs);

/*
 * Delivers what the running request's runtime has sent so far (records,
 * then pipes) before output the kernel publishes itself, which must follow
 * everything the cell printed before asking for it. ctx is the cells (a
 * display service's hook).
 */
void cell_catch_up(void *ctx);

#endif
