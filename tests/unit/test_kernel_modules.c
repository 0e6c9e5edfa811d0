/*
 * test_kernel_modules.c - unit tests of the kernel's modules under its loop
 * (handlers.c, cell.c, tools/) against the channel module on inproc://
 * sockets, without kernel.c: each test sends requests as a client would,
 * turns the modules the way the loop does (poll, serve, reap) and checks
 * what the client received on shell, IOPub and stdin, in order. Runtimes
 * are the real drivers, started as plain processes (no box).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/langs.h"
#include "common/wire.h"
#include "kernel/cell.h"
#include "kernel/chan.h"
#include "kernel/handlers.h"
#include "kernel/history.h"
#include "kernel/site.h"
#include "kernel/tools/tools.h"
#include "sandbox/spawn.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define DONE_S 10.0   /* a request must be answered within this */

static char key[] = "test-kernel-modules-key";

/* A message the client received, and where. */
struct seen {
    enum channel ch;
    wire_msg_t *m;
};

/* The modules as kernel.c wires them, and a client. */
struct rig {
    struct chan *chan;
    struct site site;
    struct history *hist;
    struct cells *cells;
    struct tools *tools;
    struct handlers h;
    wire_t *wire;             /* the client's codec */
    void *sock[CH_COUNT];     /* the client's sockets (none on heartbeat) */
    struct seen *log;         /* what the client received, in order */
    size_t n, cap;
};

/* ---- the client ------------------------------------------------------------ */

/* Receives what waits on the client's sockets into the log. */
static void
drain(struct rig *r)
{
    char err[256];

    for (int ch = 0; ch < CH_COUNT; ch++) {
        wire_msg_t *m = NULL;
        int rc;
        if (!r->sock[ch])
            continue;
        while ((rc = wire_recv(r->wire, r->sock[ch], ZMQ_DONTWAIT, &m, err, sizeof err))
               == CG_OK) {
            if (r->n == r->cap) {
                r->cap = r->cap ? 2 * r->cap : 64;
                r->log = realloc(r->log, r->cap * sizeof *r->log);
                assert_non_null(r->log);
            }
            r->log[r->n++] = (struct seen){ (enum channel)ch, m };
        }
        if (rc != CG_ESYS) /* what the kernel sends always verifies */
            fail_msg("bad message on %s: %s", connfile_port_name((enum channel)ch), err);
    }
}

static void
log_clear(struct rig *r)
{
    for (size_t i = 0; i < r->n; i++)
        wire_msg_destroy(&r->log[i].m);
    r->n = 0;
}

static const char *
str_of(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    return s ? s : "";
}

/* Sends type on ch with content (JSON text, sent as is: it need not be an
 * object); its msg_id into id. */
static void
send_msg(struct rig *r, enum channel ch, const char *type, const char *content, char id[64])
{
    wire_msg_t *m = wire_msg_new(r->wire, type, NULL);

    assert_non_null(m);
    m->content_json = strdup(content);
    snprintf(id, 64, "%s", str_of(m->header, "msg_id"));
    assert_int_equal(wire_send(r->wire, r->sock[ch], m), CG_OK);
    wire_msg_destroy(&m);
}

/* Sends an execute_request for code (stop_on_error, allow_stdin). */
static void
execute(struct rig *r, const char *code, char id[64])
{
    json_t *c = json_pack("{s:s, s:b, s:b, s:b, s:b, s:{}}", "code", code, "silent", 0,
                          "store_history", 1, "allow_stdin", 1, "stop_on_error", 1,
                          "user_expressions");
    char *text = json_dumps(c, JSON_COMPACT);

    send_msg(r, CH_SHELL, "execute_request", text, id);
    free(text);
    json_decref(c);
}

/* The nth (from 0) message received on ch of type (NULL: any) whose
 * parent is parent (NULL: any), or NULL. */
static const wire_msg_t *
find(const struct rig *r, enum channel ch, const char *type, const char *parent, int nth)
{
    for (size_t i = 0; i < r->n; i++) {
        const wire_msg_t *m = r->log[i].m;
        if (r->log[i].ch == ch && (!type || strcmp(wire_msg_type(m), type) == 0)
            && (!parent || strcmp(str_of(m->parent, "msg_id"), parent) == 0) && nth-- == 0)
            return m;
    }
    return NULL;
}

static const char *
date_of(const wire_msg_t *m)
{
    return str_of(m->header, "date");
}

/*
 * What the client received parented by parent, on every channel, as a line
 * of words: the type of each message, or the state of a status ("busy
 * execute_input execute_reply idle"). Each channel's messages are in the
 * order received; across channels (a reply on shell against IOPub) the
 * order is the header dates', which have microseconds (a tie: the order
 * the client took them in, shell first).
 */
static const char *
seq_of(const struct rig *r, const char *parent, char *buf, size_t len)
{
    size_t at = 0, k = 0, *idx = calloc(r->n + 1, sizeof *idx);

    assert_non_null(idx);
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(str_of(r->log[i].m->parent, "msg_id"), parent) != 0)
            continue;
        size_t j = k++; /* insertion sort by date, stable */
        for (; j > 0 && strcmp(date_of(r->log[idx[j - 1]].m), date_of(r->log[i].m)) > 0; j--)
            idx[j] = idx[j - 1];
        idx[j] = i;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < k && at < len; i++) {
        const wire_msg_t *m = r->log[idx[i]].m;
        const char *word = strcmp(wire_msg_type(m), "status") == 0
                               ? str_of(m->content, "execution_state")
                               : wire_msg_type(m);
        at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? " " : "", word);
    }
    free(idx);
    return buf;
}

static void
assert_seq(const struct rig *r, const char *parent, const char *want)
{
    char seq[1024];

    assert_string_equal(seq_of(r, parent, seq, sizeof seq), want);
}

/* The text of every stream of name parented by parent, joined. */
static size_t
stream_text(const struct rig *r, const char *parent, const char *name, char *buf, size_t len)
{
    size_t at = 0;
    const wire_msg_t *m;

    buf[0] = '\0';
    for (int i = 0; (m = find(r, CH_IOPUB, "stream", parent, i)); i++)
        if (strcmp(str_of(m->content, "name"), name) == 0 && at < len)
            at += (size_t)snprintf(buf + at, len - at, "%s", str_of(m->content, "text"));
    return at;
}

/* The reply on ch to the request id: exactly one, which is returned. */
static const wire_msg_t *
reply_to(const struct rig *r, enum channel ch, const char *id)
{
    const wire_msg_t *m = find(r, ch, NULL, id, 0);

    assert_non_null(m);
    assert_null(find(r, ch, NULL, id, 1));
    return m;
}

/* ---- the kernel's side: one turn of its loop ------------------------------- */

/* Reports every child that ended, as kernel.c's reap_children does without
 * the box. Also the cells' reap hook. */
static void
reap(void *ctx)
{
    struct rig *r = ctx;
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        cell_exited(r->cells, pid, status);
        tools_exited(r->tools, pid, status, false);
    }
}

enum { IT_CONTROL, IT_STDIN, IT_SHELL, IT_IOPUB, IT_FIXED };

/* One turn of kernel.c's loop (waiting at most ms), then the client
 * receives what was sent. */
static void
turn(struct rig *r, long ms)
{
    zmq_pollitem_t items[IT_FIXED + CELL_POLL_ITEMS + TOOLS_POLL_ITEMS];
    struct handlers *h = &r->h;
    bool shell_open;

    tools_tick(r->tools);
    cell_tick(r->cells);
    shell_open = !handlers_busy(h) && !chan_backlog_len(r->chan);
    items[IT_CONTROL] = (zmq_pollitem_t){ .socket = chan_socket(r->chan, CH_CONTROL),
                                          .events = ZMQ_POLLIN };
    items[IT_STDIN] = (zmq_pollitem_t){ .socket = chan_socket(r->chan, CH_STDIN),
                                        .events = cell_input_waiting(r->cells) ? ZMQ_POLLIN : 0 };
    items[IT_SHELL] = (zmq_pollitem_t){ .socket = chan_socket(r->chan, CH_SHELL),
                                        .events = shell_open ? ZMQ_POLLIN : 0 };
    items[IT_IOPUB] = (zmq_pollitem_t){ .socket = chan_socket(r->chan, CH_IOPUB),
                                        .events = ZMQ_POLLIN };
    size_t n = IT_FIXED;
    size_t cells_at = n, cells_n = cell_poll_items(r->cells, &items[n]);
    n += cells_n;
    size_t tools_at = n, tools_n = tools_poll_items(r->tools, &items[n]);
    n += tools_n;
    if (zmq_poll(items, (int)n, ms) < 0)
        for (size_t i = 0; i < n; i++)
            items[i].revents = 0;

    if (items[IT_CONTROL].revents & ZMQ_POLLIN)
        handlers_dispatch(h, CH_CONTROL);
    if (items[IT_IOPUB].revents & ZMQ_POLLIN)
        chan_greet_subscribers(r->chan);
    if (cells_n)
        cell_service(r->cells, &items[cells_at]);
    if (tools_n)
        tools_service(r->tools, &items[tools_at], tools_n);
    reap(r); /* the kernel learns of it by SIGCHLD */
    if ((items[IT_STDIN].revents & ZMQ_POLLIN) && cell_input_waiting(r->cells))
        handlers_serve_stdin(h);
    handlers_serve_backlog(h);
    if ((items[IT_SHELL].revents & ZMQ_POLLIN) && !handlers_busy(h) && !chan_backlog_len(r->chan))
        handlers_dispatch(h, CH_SHELL);
    drain(r);
}

typedef bool (*until_fn)(const struct rig *r, const char *arg);

/* Turns the loop until done(r, arg) holds (true) or seconds passed (false). */
static bool
pump_until(struct rig *r, until_fn done, const char *arg, double seconds)
{
    double end = clock_now() + seconds;

    while (!done(r, arg)) {
        if (clock_now() > end)
            return false;
        turn(r, 20);
    }
    return true;
}

/* The request id was ended: idle for it on IOPub (after its reply, if any). */
static bool
finished(const struct rig *r, const char *id)
{
    const wire_msg_t *m;

    for (int i = 0; (m = find(r, CH_IOPUB, "status", id, i)); i++)
        if (strcmp(str_of(m->content, "execution_state"), "idle") == 0)
            return true;
    return false;
}

/* Some stream's text contains text. */
static bool
printed(const struct rig *r, const char *text)
{
    const wire_msg_t *m;

    for (int i = 0; (m = find(r, CH_IOPUB, "stream", NULL, i)); i++)
        if (strstr(str_of(m->content, "text"), text))
            return true;
    return false;
}

/* Something arrived on channel *ch. */
static bool
received_on(const struct rig *r, const char *ch)
{
    return find(r, (enum channel)*ch, NULL, NULL, 0) != NULL;
}

/* The processes whose parent is ppid and (unless comm is NULL) whose name
 * is comm: how many, and the first max of them in pids. */
static size_t
proc_scan(pid_t ppid, const char *comm, pid_t *pids, size_t max)
{
    char path[64], stat[512];
    struct dirent *e;
    DIR *d = opendir("/proc");
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d))) {
        snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
        FILE *f = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        size_t len = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
        if (f)
            fclose(f);
        stat[len] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces and parentheses */
        char *open = strchr(stat, '('), *close = strrchr(stat, ')');
        if (!open || !close || close < open || strtol(close + 4, NULL, 10) != ppid)
            continue;
        *close = '\0';
        if (comm && strcmp(open + 1, comm) != 0)
            continue;
        if (n < max)
            pids[n] = (pid_t)strtol(stat, NULL, 10);
        n++;
    }
    closedir(d);
    return n;
}

/* A process named comm runs under a child of ours (a runtime's command). */
static bool
running(const struct rig *r, const char *comm)
{
    pid_t kids[64];
    size_t n = proc_scan(getpid(), NULL, kids, 64);

    (void)r;
    for (size_t i = 0; i < n && i < 64; i++)
        if (proc_scan(kids[i], comm, NULL, 0))
            return true;
    return false;
}

/* Sends code and turns the loop until it is answered. */
static void
run_cell(struct rig *r, const char *code, char id[64])
{
    execute(r, code, id);
    assert_true(pump_until(r, finished, id, DONE_S));
}

/* ---- set-up and tear-down -------------------------------------------------- */

/* A client socket of type in the channel's context, connected to ep. */
static void *
client_socket(struct rig *r, int type, const char *ep)
{
    void *s = zmq_socket(chan_context(r->chan), type);
    int linger = 0;

    assert_non_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (type == ZMQ_DEALER)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, "client", 6); /* the same on shell and stdin */
    else
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

/* The modules on fresh inproc:// endpoints, bash the primary language,
 * the client connected and subscribed. */
static int
rig_open(void **state, size_t output_limit)
{
    static int seq;
    connfile_t conn = { .scheme = "hmac-sha256", .key = key };
    struct box_limits limits = { 0 };
    char eps[CH_COUNT][64], err[256];
    const char *ep[CH_COUNT];
    struct rig *r = calloc(1, sizeof *r);

    assert_non_null(r);
    seq++;
    for (int ch = 0; ch < CH_COUNT; ch++) {
        snprintf(eps[ch], sizeof eps[ch], "inproc://test-modules-%d-%s", seq,
                 connfile_port_name((enum channel)ch));
        ep[ch] = eps[ch];
    }
    r->chan = chan_new(&conn, output_limit, err, sizeof err);
    assert_non_null(r->chan);
    assert_int_equal(chan_open_at(r->chan, ep, err, sizeof err), CG_OK);
    site_init(&r->site, NULL, NULL, &limits);
    r->hist = history_new();
    struct cells_opts co = { .chan = r->chan, .site = &r->site, .hist = r->hist,
                             .primary = langs_find("bash"), .reap = reap, .reap_ctx = r };
    assert_non_null(co.primary);
    r->cells = cells_new(&co);
    r->tools = tools_new(r->chan, &r->site);
    assert_non_null(r->hist);
    assert_non_null(r->cells);
    assert_non_null(r->tools);
    r->h = (struct handlers){ .chan = r->chan, .cells = r->cells, .tools = r->tools,
                              .hist = r->hist, .primary = co.primary };

    r->wire = wire_new(conn.scheme, key, 0, err, sizeof err);
    assert_non_null(r->wire);
    r->sock[CH_SHELL] = client_socket(r, ZMQ_DEALER, ep[CH_SHELL]);
    r->sock[CH_CONTROL] = client_socket(r, ZMQ_DEALER, ep[CH_CONTROL]);
    r->sock[CH_STDIN] = client_socket(r, ZMQ_DEALER, ep[CH_STDIN]);
    r->sock[CH_IOPUB] = client_socket(r, ZMQ_SUB, ep[CH_IOPUB]);
    /* The loop greets the subscription with idle once it arrives. */
    static const char iopub[] = { CH_IOPUB };
    assert_true(pump_until(r, received_on, iopub, DONE_S));
    log_clear(r);
    *state = r;
    return 0;
}

static int
setup(void **state)
{
    return rig_open(state, 0);
}

static int
setup_limit1000(void **state)
{
    return rig_open(state, 1000);
}

/* As kernel.c's teardown: every process started is killed and reaped. */
static int
teardown(void **state)
{
    struct rig *r = *state;

    cells_kill(r->cells);
    tools_destroy(&r->tools);
    spawn_kill_descendants(1000);
    cells_destroy(&r->cells);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (r->sock[ch])
            zmq_close(r->sock[ch]);
    chan_destroy(&r->chan);
    history_destroy(&r->hist);
    log_clear(r);
    free(r->log);
    wire_destroy(&r->wire);
    free(r);
    return 0;
}

/* ---- the tests ------------------------------------------------------------- */

/* `echo hi` in bash: busy, execute_input, the stream, the reply, idle. */
static void
test_execute(void **state)
{
    struct rig *r = *state;
    char id[64], out[256];

    run_cell(r, "echo hi", id);
    assert_seq(r, id, "busy execute_input stream execute_reply idle");
    const wire_msg_t *in = find(r, CH_IOPUB, "execute_input", id, 0);
    assert_string_equal(str_of(in->content, "code"), "echo hi");
    assert_int_equal(json_integer_value(json_object_get(in->content, "execution_count")), 1);
    assert_int_equal(stream_text(r, id, "stdout", out, sizeof out), 3);
    assert_string_equal(out, "hi\n");
    const wire_msg_t *rep = reply_to(r, CH_SHELL, id);
    assert_string_equal(wire_msg_type(rep), "execute_reply");
    assert_string_equal(str_of(rep->content, "status"), "ok");
    assert_int_equal(json_integer_value(json_object_get(rep->content, "execution_count")), 1);
    assert_false(handlers_busy(&r->h));
    assert_false(cell_pending(r->cells));
    assert_string_equal(str_of(chan_last(r->chan)->header, "msg_id"), id);
}

/* A Python cell (%%python, a JSON-lines driver): its stream and result. */
static void
test_python_cell(void **state)
{
    struct rig *r = *state;
    char id[64], out[256];

    run_cell(r, "%%python\nprint(6 * 7)\n6 * 7", id);
    assert_seq(r, id, "busy execute_input stream execute_result execute_reply idle");
    stream_text(r, id, "stdout", out, sizeof out);
    assert_string_equal(out, "42\n");
    const wire_msg_t *res = find(r, CH_IOPUB, "execute_result", id, 0);
    assert_string_equal(str_of(json_object_get(res->content, "data"), "text/plain"), "42");
    assert_string_equal(str_of(reply_to(r, CH_SHELL, id)->content, "status"), "ok");
}

/* A failing cell with two executes queued behind it: both are answered
 * "aborted" without an execution_count (as ipykernel does), and neither
 * runs; the next cell runs. */
static void
test_stop_on_error(void **state)
{
    struct rig *r = *state;
    char ids[4][64], out[256];

    execute(r, "false", ids[0]);
    execute(r, "echo queued-1", ids[1]);
    execute(r, "echo queued-2", ids[2]);
    assert_true(pump_until(r, finished, ids[2], DONE_S));

    assert_seq(r, ids[0], "busy execute_input error execute_reply idle");
    const wire_msg_t *rep = reply_to(r, CH_SHELL, ids[0]);
    assert_string_equal(str_of(rep->content, "status"), "error");
    assert_string_equal(str_of(rep->content, "ename"), "ExitStatus");
    assert_int_equal(json_integer_value(json_object_get(rep->content, "execution_count")), 1);
    for (int i = 1; i <= 2; i++) {
        assert_seq(r, ids[i], "busy execute_reply idle");
        rep = reply_to(r, CH_SHELL, ids[i]);
        assert_string_equal(wire_msg_type(rep), "execute_reply");
        assert_string_equal(str_of(rep->content, "status"), "aborted");
        assert_null(json_object_get(rep->content, "execution_count"));
    }
    assert_false(printed(r, "queued"));
    assert_int_equal(chan_backlog_len(r->chan), 0);

    run_cell(r, "echo after", ids[3]);
    stream_text(r, ids[3], "stdout", out, sizeof out);
    assert_string_equal(out, "after\n");
    rep = reply_to(r, CH_SHELL, ids[3]);
    assert_string_equal(str_of(rep->content, "status"), "ok");
    assert_int_equal(json_integer_value(json_object_get(rep->content, "execution_count")), 2);
}

/* An interrupt ends `sleep 30` within seconds, with an error; the
 * runtime and its state live on. */
static void
test_interrupt(void **state)
{
    struct rig *r = *state;
    char id[64], out[256];

    run_cell(r, "x=5", id);
    execute(r, "echo started; sleep 30", id);
    /* Not before sleep runs: a SIGINT that reaches bash between commands
     * waits for the next one to end (bash runs traps after a foreground
     * command), here 30 s. */
    assert_true(pump_until(r, running, "sleep", DONE_S));
    assert_true(cell_pending(r->cells));
    handlers_interrupt(&r->h);
    assert_true(pump_until(r, finished, id, 5.0)); /* not the 30 s of sleep */
    /* Nothing of bash's own on stderr when sleep dies of the SIGINT: on a
     * /dev/null for a terminal it printed "tcsetattr: Inappropriate ioctl
     * for device" (runtime.c, shell_terminal). */
    char seq[1024];
    seq_of(r, id, seq, sizeof seq);
    assert_string_equal(seq, "busy execute_input stream error execute_reply idle");
    stream_text(r, id, "stdout", out, sizeof out);
    assert_string_equal(out, "started\n");
    const wire_msg_t *rep = reply_to(r, CH_SHELL, id);
    assert_string_equal(str_of(rep->content, "status"), "error");
    assert_non_null(strstr(str_of(rep->content, "evalue"), "interrupted"));

    run_cell(r, "echo \"x=$x\"", id);
    stream_text(r, id, "stdout", out, sizeof out);
    assert_string_equal(out, "x=5\n");
    assert_string_equal(str_of(reply_to(r, CH_SHELL, id)->content, "status"), "ok");
    handlers_interrupt(&r->h); /* nothing runs: nothing happens */
    turn(r, 50);
    assert_false(handlers_busy(&r->h));
}

/* A cell printing 5000 bytes under a limit of 1000: 1000 are published,
 * then one notice; the cell still succeeds. */
static void
test_output_limit(void **state)
{
    struct rig *r = *state;
    char id[64], out[8192];

    run_cell(r, "printf 'a%.0s' {1..5000}", id);
    assert_int_equal(stream_text(r, id, "stdout", out, sizeof out), 1000);
    assert_int_equal(strspn(out, "a"), 1000);
    assert_true(stream_text(r, id, "stderr", out, sizeof out) > 0);
    assert_non_null(strstr(out, "passed the limit of 1000 bytes"));
    assert_null(strstr(strstr(out, "passed the limit") + 1, "passed the limit")); /* once */
    assert_string_equal(str_of(reply_to(r, CH_SHELL, id)->content, "status"), "ok");
}

/* cellgate.exec as a comm_open (plain processes): the command's output
 * streams, then its result as a comm_msg, then comm_close. */
static void
test_tool_exec(void **state)
{
    struct rig *r = *state;
    char id[64], out[256];

    send_msg(r, CH_SHELL, "comm_open",
             "{\"comm_id\":\"c1\",\"target_name\":\"cellgate.exec\","
             "\"data\":{\"cmd\":\"echo tool\"}}", id);
    assert_true(pump_until(r, finished, id, DONE_S));
    assert_seq(r, id, "busy stream comm_msg comm_close idle");
    stream_text(r, id, "stdout", out, sizeof out);
    assert_string_equal(out, "tool\n");
    const wire_msg_t *m = find(r, CH_IOPUB, "comm_msg", id, 0);
    json_t *data = json_object_get(m->content, "data");
    assert_string_equal(str_of(m->content, "comm_id"), "c1");
    assert_string_equal(str_of(data, "status"), "ok");
    assert_true(json_is_integer(json_object_get(data, "exit_code")));
    assert_int_equal(json_integer_value(json_object_get(data, "exit_code")), 0);
    assert_string_equal(str_of(find(r, CH_IOPUB, "comm_close", id, 0)->content, "comm_id"), "c1");
    assert_null(find(r, CH_SHELL, NULL, id, 0)); /* comm messages get no reply */
}

/* input() in a cell: input_request on stdin, the client's input_reply goes
 * to the cell. */
static void
test_input(void **state)
{
    struct rig *r = *state;
    char id[64], rid[64], out[256];
    static const char on_stdin[] = { CH_STDIN };

    execute(r, "read -r v; echo \"got $v\"", id);
    assert_true(pump_until(r, received_on, on_stdin, DONE_S));
    const wire_msg_t *req = find(r, CH_STDIN, "input_request", id, 0);
    assert_non_null(req);
    assert_true(cell_input_waiting(r->cells));
    send_msg(r, CH_STDIN, "input_reply", "{\"value\":\"abc\"}", rid);
    assert_true(pump_until(r, finished, id, DONE_S));
    stream_text(r, id, "stdout", out, sizeof out);
    assert_string_equal(out, "got abc\n");
    assert_string_equal(str_of(reply_to(r, CH_SHELL, id)->content, "status"), "ok");
}

/* What is not on the allowlist is refused, a comm for a target that is no
 * tool's is closed, a malformed request gets BadRequest; the kernel serves
 * on. */
static void
test_refused(void **state)
{
    struct rig *r = *state;
    char id[6][64];

    send_msg(r, CH_SHELL, "frobnicate_request", "{}", id[0]);
    assert_true(pump_until(r, finished, id[0], DONE_S));
    assert_seq(r, id[0], "busy idle");
    assert_null(find(r, CH_SHELL, NULL, id[0], 0));

    send_msg(r, CH_CONTROL, "execute_request", "{\"code\":\"echo no\"}", id[1]);
    assert_true(pump_until(r, finished, id[1], DONE_S));
    assert_seq(r, id[1], "busy idle"); /* shell only */
    assert_null(find(r, CH_CONTROL, NULL, id[1], 0));

    send_msg(r, CH_SHELL, "comm_open", "{\"comm_id\":\"c2\",\"target_name\":\"nope\",\"data\":{}}",
             id[2]);
    assert_true(pump_until(r, finished, id[2], DONE_S));
    assert_seq(r, id[2], "busy comm_close idle");
    assert_string_equal(str_of(find(r, CH_IOPUB, "comm_close", id[2], 0)->content, "comm_id"),
                        "c2");

    send_msg(r, CH_SHELL, "execute_request", "[\"echo no\"]", id[3]);
    assert_true(pump_until(r, finished, id[3], DONE_S));
    assert_seq(r, id[3], "busy execute_reply idle");
    const wire_msg_t *rep = reply_to(r, CH_SHELL, id[3]);
    assert_string_equal(wire_msg_type(rep), "execute_reply");
    assert_string_equal(str_of(rep->content, "status"), "error");
    assert_string_equal(str_of(rep->content, "ename"), "BadRequest");

    send_msg(r, CH_SHELL, "comm_msg", "not json", id[4]); /* no reply is due */
    assert_true(pump_until(r, finished, id[4], DONE_S));
    assert_seq(r, id[4], "busy idle");
    assert_null(find(r, CH_SHELL, NULL, id[4], 0));

    send_msg(r, CH_SHELL, "kernel_info_request", "{}", id[5]);
    assert_true(pump_until(r, finished, id[5], DONE_S));
    rep = reply_to(r, CH_SHELL, id[5]);
    assert_string_equal(str_of(rep->content, "status"), "ok");
    assert_string_equal(str_of(json_object_get(rep->content, "language_info"), "name"), "bash");
    assert_false(printed(r, "no"));
    assert_false(r->h.quit);
}

/* Every process a test started was killed and reaped by its teardown:
 * nothing is left with this process as its parent. Runs last. */
static void
test_no_children_left(void **state)
{
    pid_t left[8];
    size_t n = proc_scan(getpid(), NULL, left, 8);

    (void)state;
    for (size_t i = 0; i < n && i < 8; i++)
        print_message("left behind: pid %ld\n", (long)left[i]);
    assert_int_equal(n, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_execute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_cell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_on_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_limit, setup_limit1000, teardown),
        cmocka_unit_test_setup_teardown(test_tool_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test(test_no_children_left),
    };

    /* As the kernel: orphans of what the tests start come back to us, and
     * a runtime that closes its pipe does not kill us. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("kernel modules", tests, NULL, NULL);
}
