/*
 * tool.h - what a tool is, below tools.c (the comms, the table, running
 * jobs): the job interface and what every tool shares (tool.c: a job's
 * result, errors, the output a tool streams), and the tools themselves:
 * exec.c (cellgate.exec once), session.c (exec sessions and
 * cellgate.feed), download.c and open_image.c. Only kernel/tools/ uses it.
 *
 * A tool either answers at once (its function returns the result) or
 * starts a job: something that runs on in the kernel's loop while control,
 * interrupts and the heartbeat are served. A job has a small table of
 * operations; it ends by leaving its result with job_finish(), which
 * tools.c picks up after each call into the job and answers. Until then
 * the request stays in service on the channel, so shell requests queue
 * behind it as they do behind a cell.
 */
#ifndef CG_TOOL_H
#define CG_TOOL_H

#include "common/buf.h"
#include "common/wire.h"
#include "kernel/chan.h"
#include "kernel/site.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <zmq.h>

#define JOB_POLL_ITEMS 3           /* poll items the running job may use */
#define SESSIONS_MAX 8             /* cellgate.exec sessions a kernel keeps */
#define TOOL_OUTPUT_MAX (1u << 20) /* bytes of output a reply carries */
#define TOOL_GRACE 1.0             /* seconds: interrupt to SIGKILL or reply */
#define TOOL_READ_CHUNK 65536      /* bytes read from a pipe or terminal at once */
#define TOOL_CMD_MAX (256u << 10)  /* bytes of a command or of typed chars */

struct sessions;

/* What every tool works with (borrowed from the kernel). */
struct tool_env {
    struct chan *chan;            /* output, parented by the request in service */
    struct site *site;            /* where commands start and files are */
    struct sessions *sessions;    /* the exec sessions (session.c) */
};

struct tool_job;

/* A job's operations; poll, service and exited may be NULL (a job with no
 * fds, or no processes of its own). */
struct job_ops {
    /* Fills up to JOB_POLL_ITEMS items; returns how many. */
    size_t (*poll)(struct tool_job *job, zmq_pollitem_t *items);
    /* Serves the items filled by poll (revents set). */
    void (*service)(struct tool_env *env, struct tool_job *job, const zmq_pollitem_t *items,
                    size_t n);
    /* Time passed: act on deadlines. Returns when it wants to be called
     * again (monotonic seconds), or 0 for no deadline. */
    double (*tick)(struct tool_env *env, struct tool_job *job, double now);
    /* The client interrupted the kernel. */
    void (*interrupt)(struct tool_env *env, struct tool_job *job);
    /* A process ended (wait status; boxed: pid is the box's, else the
     * host's); true if it was the job's. */
    bool (*exited)(struct tool_env *env, struct tool_job *job, pid_t pid, int status,
                   bool boxed);
    /* Frees the job (its processes are the job's to kill first). */
    void (*destroy)(struct tool_job *job);
};

/* Every job starts with this (the concrete job embeds it first). */
struct tool_job {
    const struct job_ops *ops;
    json_t *result;               /* set once by job_finish: the job is done */
};

/* A tool: the request's data to a result ({"status": "ok", ...} or an
 * error from tool_error), or NULL after setting *job to a started job. */
typedef json_t *(*tool_fn)(struct tool_env *env, const wire_msg_t *req, json_t *data,
                           struct tool_job **job);

/* ---- tool.c ------------------------------------------------------------- */

/* The job is done with result (stolen; NULL: out of memory). The first
 * result counts; later ones are dropped. */
void job_finish(struct tool_job *job, json_t *result);

/* An error result {"status": "error", ename, evalue}. */
json_t *tool_error(const char *ename, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True for a JSON string without NUL bytes (jansson keeps them inside a
 * string; C code would stop at the first). */
bool tool_text(const json_t *v);

/* The string member name of data, or NULL when absent or null (and *bad
 * set when present but not such a string). */
const char *tool_str_member(const json_t *data, const char *name, bool *bad);

/* The exit status of a wait status, as a shell reports it (128 + signal). */
int tool_exit_code(int status);

/*
 * Output of a tool, as it arrives: bytes of stream name are made valid
 * UTF-8 (a sequence cut at the end of a read waits in carry for the next),
 * published on IOPub if publish (parented by the request in service,
 * within its output budget: chan_output_room) and kept in out
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
void tool_output_add(struct chan *chan, bool publish, struct tool_output *out,
                     struct tool_text *cut, const char *name, const char *bytes, size_t len);

/* The output as a JSON string, with a note of dropped bytes; resets it. */
json_t *tool_output_take(struct tool_output *out);

/* ---- the tools ---------------------------------------------------------- */

/* cellgate.download (download.c) */
json_t *tool_download(struct tool_env *env, const wire_msg_t *req, json_t *data,
                      struct tool_job **job);

/* cellgate.open_image (open_image.c) */
json_t *tool_open_image(struct tool_env *env, const wire_msg_t *req, json_t *data,
                        struct tool_job **job);

/* cellgate.exec (exec.c: once; a request with a session name goes to
 * session.c) */
json_t *tool_exec(struct tool_env *env, const wire_msg_t *req, json_t *data,
                  struct tool_job **job);

/* ---- session.c ---------------------------------------------------------- */

/* An exec request, as exec.c read it. */
struct exec_req {
    const char *cmd;          /* a shell string, or NULL */
    json_t *argv;             /* or an argv list */
    const char *session;
    const char *workdir;
    double timeout;
    char *env[65];            /* "NAME=value", owned, NULL-terminated */
};
#define EXEC_ENV_MAX 64

/* An empty session table, or NULL on no memory. */
struct sessions *sessions_new(void);

/* Kills every session's shell and frees the table; nulls *ss. */
void sessions_destroy(struct sessions **ss);

/* Kills every session's shell and forgets them (the table stays). */
void sessions_clear(struct sessions *ss);

/* Types r's command (cmd set; argv already quoted into it) into session
 * r->session, started if new, and starts a job waiting for its end. */
json_t *session_exec(struct tool_env *env, const struct exec_req *r, struct tool_job **job);

/* cellgate.feed {session_name, chars, yield_ms?} */
json_t *tool_feed(struct tool_env *env, const wire_msg_t *req, json_t *data,
                  struct tool_job **job);

/* The sessions' terminals are read all the time (a program's output must
 * not block it): poll items (at most max), serving them, and the exit of a
 * session's shell (true if pid was one). */
size_t sessions_poll(struct sessions *ss, zmq_pollitem_t *items, size_t max);
void sessions_service(struct tool_env *env, const zmq_pollitem_t *items, size_t n);
bool sessions_exited(struct tool_env *env, pid_t pid, int status, bool boxed);

#endif
