/*
 * runtime.h - one language's driver process, seen from the kernel.
 *
 * A runtime owns the driver's process group and the four fds that connect
 * to it (see drivers/PROTOCOL.md): the control socket (JSON lines both
 * ways for RT_JSONL drivers), the stdout and stderr pipes, and for
 * RT_SHELL drivers the code pipe on the driver's stdin. Everything read
 * from them is untrusted: lines are bounded, JSON is checked, bytes are
 * made valid UTF-8 before they reach a Jupyter message.
 */
#ifndef CG_RUNTIME_H
#define CG_RUNTIME_H

#include "common/langs.h"
#include "sandbox/spawn.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <zmq.h>

#define RT_MAX_LINE (64u << 20) /* longest control line we accept */
#define RT_POLL_ITEMS 5         /* fds a runtime contributes to zmq_poll */

struct runtime;

/* Where a runtime delivers what its driver produced. */
struct rt_sink {
    void *ctx;
    /* Output for stream name ("stdout"/"stderr"): len bytes of valid UTF-8. */
    void (*stream)(void *ctx, struct runtime *rt, const char *name, const char *text, size_t len);
    /* Any other record (borrowed; "t" is a string). "ready" is not delivered. */
    void (*record)(void *ctx, struct runtime *rt, json_t *rec);
};

/* What an execute carries to the driver. */
struct rt_exec {
    const char *code;
    bool silent, store_history, allow_stdin, color;
    json_t *user_expressions; /* borrowed object: name -> expression */
    int execution_count;
};

/* A runtime for lang, not yet started. NULL on no memory. */
struct runtime *runtime_new(const struct lang *lang);

/* Kills the driver's process group, reaps it, closes fds, frees, nulls *rt. */
void runtime_destroy(struct runtime **rt);

/* Where and how a runtime starts. */
struct rt_place {
    struct spawner *spawner;  /* the box, or plain processes */
    const char *cwd;          /* working directory, NULL: the spawner's */
    const char *home;         /* non-NULL: build the environment from scratch
                                 with this HOME (the box); NULL: inherit ours */
    const char *bin_dir;      /* put first in PATH (cellgate-display's), or NULL */
    const char *display_socket; /* CELLGATE_DISPLAY_SOCKET, or NULL */
    const char *const *env;   /* more "NAME=value" for every process there
                                 (package managers' settings), or NULL */
};

/*
 * The environment of a process started at where: from scratch in the box
 * (HOME=where->home, a fixed PATH, LANG, USER...), else ours less the
 * Jupyter launcher's and our own CELLGATE_ variables; in the box also our
 * KERNEL_* variables when CELLGATE_KERNEL_ENV_IN_BOX=1 (a gateway's launch
 * variables, let in by its operator); then where->env and
 * extra (NULL-terminated lists of "NAME=value", may be NULL), each
 * replacing a variable of the same name. The array is the caller's to free(); its
 * strings are borrowed (from extra, environ and static storage) and valid
 * until the next call. NULL on no memory.
 */
char **runtime_env(const struct rt_place *where, const char *const *extra);

/* Spawns the driver. Returns CG_OK or an error with err filled. */
int runtime_start(struct runtime *rt, const struct rt_place *where, char *err, size_t errlen);

/* The language this runtime runs. */
const struct lang *runtime_lang(const struct runtime *rt);

/* True while the driver process has not been reaped. */
bool runtime_alive(const struct runtime *rt);

/* True if the driver's end of the control socket is closed (it died, or
 * is dying) although its exit has not been reported yet. */
bool runtime_hung_up(const struct runtime *rt);

/* The driver's pid as its spawner knows it (also its process group), or 0. */
pid_t runtime_pid(const struct runtime *rt);

/* The version the driver reported in its ready record, or NULL. */
const char *runtime_version(const struct runtime *rt);

/* Fills up to RT_POLL_ITEMS poll items for the runtime's fds; returns how many. */
size_t runtime_poll_items(const struct runtime *rt, zmq_pollitem_t *items);

/*
 * Services the runtime's fds after zmq_poll (items as filled above, with
 * revents set): writes pending requests, reads output and records and
 * hands them to sink: records in the order written, then raw pipe output;
 * the pipes are drained first at "sync" and "done" records. Returns CG_OK, or
 * CG_EINVAL with err filled when the driver broke the protocol (the caller
 * should kill it).
 */
int runtime_service(struct runtime *rt, const zmq_pollitem_t *items, size_t n,
                    const struct rt_sink *sink, char *err, size_t errlen);

/* Reads whatever output is waiting on the raw pipes, now, into sink. */
void runtime_drain(struct runtime *rt, const struct rt_sink *sink);

/*
 * Hands sink, now, what the driver has sent so far: the records waiting on
 * the control socket, then the raw pipes (each bounded as in
 * runtime_service). For output the kernel publishes itself, which must come
 * after everything the cell printed before asking for it. Returns CG_OK, or
 * an error with err filled when the driver broke the protocol (the caller
 * should kill it, as after runtime_service).
 */
int runtime_catch_up(struct runtime *rt, const struct rt_sink *sink, char *err, size_t errlen);

/*
 * Records that the driver was reaped with wait status; after a final drain
 * (and delivery of any complete records) its fds are closed.
 */
void runtime_exited(struct runtime *rt, int status, const struct rt_sink *sink);

/* Why the driver ended, for humans: "exited with status 3". */
const char *runtime_death(const struct runtime *rt);

/* Kills the driver's process group (SIGKILL) now; reaping happens later. */
void runtime_kill(struct runtime *rt);

/* Sends SIGINT to the driver's process group. */
void runtime_interrupt(struct runtime *rt);

/* Queues an execute request. CG_OK or CG_ENOMEM. */
int runtime_execute(struct runtime *rt, const struct rt_exec *x);

/*
 * Queues a complete / inspect / is_complete request (type is one of those
 * strings). cursor and detail are ignored where they do not apply.
 */
int runtime_request(struct runtime *rt, const char *type, const char *code, size_t cursor,
                    int detail);

/* Queues the answer to an input record. */
int runtime_input_reply(struct runtime *rt, const char *value);

/* A client's comm_open / comm_msg / comm_close (content borrowed) for a
 * comm of the driver's (ipywidgets), as a "comm" record; it is not a
 * request and needs no answer. CG_EINVAL for a driver without records. */
int runtime_comm(struct runtime *rt, const char *msg_type, json_t *content);

#endif
