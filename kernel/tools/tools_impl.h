/*
 * tools_impl.h - what the tool modules share: tools.c (the comm side, the
 * table, jobs), tool_exec.c (cellgate.exec and cellgate.feed) and
 * tool_download.c (cellgate.download). Not part of tools.h.
 *
 * A tool either answers at once (its function returns the result) or
 * starts a job: something that runs on in the kernel's loop while control,
 * interrupts and the heartbeat are served. A job has a small table of
 * operations; it ends by calling tools_finish() with its result. Until
 * then the request is the kernel's pending one (PR_TOOL), so shell
 * requests queue behind it as they do behind a cell.
 */
#ifndef CG_TOOLS_IMPL_H
#define CG_TOOLS_IMPL_H

#include "kernel/tools/tools.h"

#include "common/buf.h"

#define TOOL_OUTPUT_MAX (1u << 20) /* bytes of output a reply carries */

struct tool_job;
struct session;

/* The tools' state in the kernel (k->tools). */
struct tools {
    struct tool_job *job;         /* the running job, or NULL */
    char comm_id[64];             /* ... its comm */
    bool close_comm;              /* ... which was opened with the request */
    size_t job_items;             /* poll items the job filled this turn */
    struct session *sessions[SESSIONS_MAX];
};

struct job_ops {
    /* Fills up to JOB_POLL_ITEMS items; returns how many. */
    size_t (*poll)(struct tool_job *job, zmq_pollitem_t *items);
    /* Serves the items filled by poll (revents set). */
    void (*service)(struct kernel *k, struct tool_job *job, const zmq_pollitem_t *items,
                    size_t n);
    /* Time passed: act on deadlines. Returns when it wants to be called
     * again (monotonic seconds), or 0 for no deadline. */
    double (*tick)(struct kernel *k, struct tool_job *job, double now);
    /* The client interrupted the kernel. */
    void (*interrupt)(struct kernel *k, struct tool_job *job);
    /* A process ended (wait status; boxed: pid is the box's, else the
     * host's); true if it was the job's. */
    bool (*exited)(struct kernel *k, struct tool_job *job, pid_t pid, int status, bool boxed);
    /* Frees the job (its processes are the job's to kill first). */
    void (*destroy)(struct tool_job *job);
};

/* Every job starts with this (the concrete job embeds it first). */
struct tool_job {
    const struct job_ops *ops;
};

/* A tool: the request's data to a result ({"status": "ok", ...} or an
 * error from tool_error), or NULL after setting *job to a started job. */
typedef json_t *(*tool_fn)(struct kernel *k, const wire_msg_t *req, json_t *data,
                           struct tool_job **job);

/* An error result {"status": "error", ename, evalue}. */
json_t *tool_error(const char *ename, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True for a JSON string without NUL bytes (jansson keeps them inside a
 * string; C code would stop at the first). */
bool tool_text(const json_t *v);

/* The string member name of data, or NULL when absent or null (and *bad
 * set when present but not such a string). */
const char *tool_str_member(const json_t *data, const char *name, bool *bad);

/* Ends the running job with result (stolen): publishes it on the job's
 * comm (and comm_close when the request came with the comm_open), then
 * idle, and destroys the job. */
void tools_finish(struct kernel *k, json_t *result);

/*
 * Output of a tool, as it arrives: bytes of stream name are made valid
 * UTF-8 (a sequence cut at the end of a read waits in carry for the next),
 * published on IOPub if publish (parented by the running tool's request,
 * within its output limit: cell_output_room) and kept in out
 * (TOOL_OUTPUT_MAX bytes: the first, or the last with keep_tail; the
 * others are counted in dropped). len 0 marks the end of the stream.
 */
struct tool_text {
    char carry[4];
    size_t carry_len;
};
struct tool_output {
    struct buf text;     /* data NULL before any output */
    size_t dropped;      /* bytes left out (past TOOL_OUTPUT_MAX) */
    bool keep_tail;      /* keep the last bytes, not the first */
};
void tool_output_add(struct kernel *k, bool publish, struct tool_output *out,
                     struct tool_text *cut, const char *name, const char *bytes, size_t len);

/* The output as a JSON string, with a note of dropped bytes; resets it. */
json_t *tool_output_take(struct tool_output *out);

/* ---- tool_download.c ---------------------------------------------------- */

json_t *tool_download(struct kernel *k, const wire_msg_t *req, json_t *data,
                      struct tool_job **job);

/* ---- tool_exec.c -------------------------------------------------------- */

json_t *tool_exec(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job);
json_t *tool_feed(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job);

/* The exec sessions live between requests: their terminals are read all
 * the time (a program's output must not block it). */
size_t sessions_poll(struct kernel *k, zmq_pollitem_t *items, size_t max);
void sessions_service(struct kernel *k, const zmq_pollitem_t *items, size_t n);
bool sessions_exited(struct kernel *k, pid_t pid, int status, bool boxed);
void sessions_destroy(struct kernel *k);


#endif
