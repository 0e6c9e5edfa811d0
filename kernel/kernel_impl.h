/*
 * kernel_impl.h - the kernel's inside, shared by its three modules:
 * kernel.c (sockets, signals, the loop, sending messages), cell.c (a shell
 * request's life on a runtime: starting it, what the runtime sends back,
 * finishing it) and handlers.c (the allowlist of requests we answer).
 * Not part of the kernel's interface (kernel.h).
 */
#ifndef CG_KERNEL_IMPL_H
#define CG_KERNEL_IMPL_H

#include "kernel/kernel.h"

#include "common/cgerr.h"
#include "common/connfile.h"
#include "common/log.h"
#include "common/wire.h"
#include "sandbox/box.h"
#include "kernel/history.h"
#include "kernel/runtime.h"
#include "common/utf8.h"
#include "common/version.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_LANGS 16
#define PARENT_CHECK_MS 1000

enum pending_kind { PR_NONE, PR_EXECUTE, PR_COMPLETE, PR_INSPECT, PR_IS_COMPLETE, PR_TOOL };

/* The shell request a runtime is working on. */
struct pending {
    enum pending_kind kind;
    wire_msg_t *req;            /* owned */
    struct runtime *rt;
    size_t shift;               /* code points of a %%magic line removed */
    char *code;                 /* the whole cell, for history */
    json_t *error;              /* the cell's error record, owned */
    json_t *payload;            /* execute_reply payload list, owned */
    char *result_text;          /* text/plain of the result, for history */
    int count;                  /* execution_count of this cell */
    bool silent, store_history, stop_on_error, allow_stdin;
    bool input_waiting;         /* an input_request is out */
    size_t out_bytes;           /* output published so far */
    bool limit_hit;             /* output past the limit is dropped */
    double deadline;            /* monotonic seconds when the cell times out, 0: never */
    int timeouts;               /* 1: interrupted for the time limit; 2: killed */
    double interrupted_at;      /* monotonic seconds of the client's first interrupt, 0: none */
    bool interrupt_noted;       /* the "interrupt again" notice went out */
    bool force_killed;          /* a second interrupt ended the runtime */
    uint64_t oom_before;        /* the box's OOM kills when the cell started */
    bool started;               /* the driver acknowledged the execute ("started") */
    bool resent;                /* already resent once to a fresh runtime */
};

struct kernel {
    connfile_t conn;
    wire_t *wire;
    void *zctx;
    void *sock[CH_COUNT];
    pthread_t hb_thread;
    bool hb_started;
    int sigfd;
    pid_t ppid;                         /* the parent we die with */
    const struct lang *primary;
    struct runtime *rts[MAX_LANGS];     /* by language index, started lazily */
    bool state_lost[MAX_LANGS];         /* a runtime died: tell the next cell */
    struct pending p;
    wire_msg_t *last_exec;              /* parent for output after a cell ended */
    int execution_count;
    struct history *hist;
    wire_msg_t **backlog;               /* shell requests queued behind an error */
    bool *backlog_abort;                /* ... and whether to abort each */
    size_t backlog_len, backlog_cap;
    bool aborting;                      /* the request being served is aborted */
    bool prestart;                      /* start the main runtime once the loop runs */
    bool quit;
    size_t output_limit;
    bool color;
    struct box *box;                    /* NULL without the sandbox */
    char box_error[512];                /* why there is no box, if it was wanted */
    struct box_limits limits;
    struct displayd *displayd;          /* serves cellgate-display's requests */
    struct {
        char id[64];
        const char *target;             /* a tool's target name */
    } comms[32];                        /* tool comms the client keeps open */
    size_t n_comms;
    struct tools *tools;                /* tools.c's state, NULL until a tool runs */
};

/* ---- kernel.c ----------------------------------------------------------- */

/* Monotonic time in seconds. */
double kernel_now(void);

/* Sends a built message on sock (IOPub loses its identities) and frees it. */
void kernel_send_built(struct kernel *k, void *sock, wire_msg_t *m);

/* Sends a message of type with content (stolen) to sock, parented by req. */
void kernel_send(struct kernel *k, void *sock, const wire_msg_t *req, const char *type,
                 json_t *content);

/* Publishes stream output: len bytes of valid UTF-8, serialised directly. */
void kernel_publish_stream(struct kernel *k, const wire_msg_t *parent, const char *name,
                           const char *text, size_t len);

/* Publishes a message on IOPub (content stolen). */
void kernel_publish(struct kernel *k, const wire_msg_t *parent, const char *type, json_t *content);

/* Publishes status busy/idle/starting with parent. */
void kernel_publish_status(struct kernel *k, const wire_msg_t *parent, const char *state);

/* Replies to req on sock with content (stolen); the type is req's with _reply. */
void kernel_reply(struct kernel *k, void *sock, const wire_msg_t *req, json_t *content);

/* A new error reply content {status: error, ename, evalue, traceback: [evalue]}. */
json_t *kernel_error_content(const char *ename, const char *evalue);

/* A boolean field of a request's content, or dflt. */
bool kernel_bool_field(const wire_msg_t *m, const char *name, bool dflt);

/* A string field of a request's content, or NULL. */
const char *kernel_str_field(const wire_msg_t *m, const char *name);

/* Reaps exited children (plain runtimes, the box's init, orphans). */
void kernel_reap_children(struct kernel *k);

/* The box reported that one of its processes ended. */
void kernel_on_box_exit(void *ctx, pid_t pid, int status);

/* The parent for output the kernel publishes on its own (a display asked
 * for from the box): the pending request, or else the last execute (NULL
 * before the first). */
const wire_msg_t *kernel_output_parent(const struct kernel *k);

/* ---- cell.c ------------------------------------------------------------- */

/* The sink through which runtimes hand their output to the kernel. */
struct rt_sink cell_sink(struct kernel *k);

/* Where processes of the box start: the spawner (box or plain), the
 * environment's home, cellgate-display's directory and socket. */
struct rt_place cell_place(struct kernel *k);

/* A running runtime for lang, started if needed; NULL with err filled. */
struct runtime *cell_runtime(struct kernel *k, const struct lang *lang, char *err,
                             size_t errlen);

/* Splits a leading %%name line off code; the language, or NULL (unknown
 * name copied to unknown). A primary language with cell magics takes
 * unknown names, and the code whole. */
const struct lang *cell_language(struct kernel *k, const char *code, const char **body,
                                 size_t *shift, char unknown[64]);

/* Tells the cell (stderr) that lang's runtime is fresh: earlier state is gone. */
void cell_note_fresh_runtime(struct kernel *k, const wire_msg_t *req, const struct lang *l);

/* Sends the pending execute (k->p, whose req and code are set) to rt.
 * Returns CG_OK or CG_ENOMEM. */
int cell_send_execute(struct kernel *k, struct runtime *rt);

/* Forgets the pending request (an execute becomes the parent of late output). */
void cell_clear(struct kernel *k);

/* Moves requests waiting on shell into the backlog, executes marked to abort. */
void cell_backlog_fill(struct kernel *k);

/* A runtime's driver was reaped with wait status: report it to its cell. */
void cell_runtime_ended(struct kernel *k, struct runtime *rt, int status);

/* Seconds after a client's interrupt when a cell still running is told it
 * can be ended by another interrupt (which then kills its runtime). */
#define CELL_INTERRUPT_FORCE_S 1.0

/*
 * The client interrupts the running cell: SIGINT to its runtime (a pending
 * input is cancelled). A runtime that ignores it (a JavaScript busy loop
 * after an await, Python code that catches KeyboardInterrupt) is killed
 * by a second interrupt that comes CELL_INTERRUPT_FORCE_S or more after
 * the first; the cell ends with RuntimeExited and the next one gets a
 * fresh runtime.
 */
void cell_interrupt(struct kernel *k);

/* Time-driven work of the running cell: its time limit (--timeout) and the
 * "interrupt again" notice. Returns the monotonic time it next needs a
 * call, or 0. */
double cell_tick(struct kernel *k);

/* Charges len bytes of output the kernel publishes itself to the pending
 * request's output limit (a cell's or a tool's): true if they may go out,
 * false once the limit was passed (the client was told). */
bool cell_output_allowed(struct kernel *k, size_t len);

/* A running tool's output of stream name (len bytes of valid UTF-8 text)
 * against its output limit, as for a cell's: how many bytes to publish
 * (0 once the limit was hit; the fitting part and the notice are then
 * published here). */
size_t cell_output_room(struct kernel *k, const char *name, const char *text, size_t len);

/* ---- handlers.c --------------------------------------------------------- */

/* Receives one message from shell or control and serves it. */
void handlers_dispatch(struct kernel *k, enum channel ch);

/* Serves backlogged shell requests until one goes pending. */
void handlers_serve_backlog(struct kernel *k);

/* Greets new IOPub subscribers with the current status. */
void handlers_serve_subscriptions(struct kernel *k);

/* Forwards an input_reply from stdin to the runtime waiting for it. */
void handlers_serve_stdin(struct kernel *k);

/* Interrupts the cell in flight (SIGINT to its runtime's process group). */
void handlers_interrupt(struct kernel *k);

#endif
