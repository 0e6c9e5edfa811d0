/*
 * session.c - cellgate.exec with a session name, and cellgate.feed
 * (DESIGN.md, "Comms"). A session is a persistent bash on a terminal in
 * the box (cwd, variables and background jobs survive). The kernel owns the
 * terminal's master side: it types the command and reads what the session
 * prints. The shell prints an end-of-command marker as its prompt,
 * "ESC ] 777 ; cg-NONCE ; STATUS BEL", with a random nonce per session; the
 * marker is taken out of the output and gives the command's exit status
 * (marker.c). A command still running at its timeout keeps running
 * ("running": true); cellgate.feed types into it and returns what it
 * printed meanwhile. Everything a session prints between requests is kept
 * (up to TOOL_OUTPUT_MAX) for the next reply.
 */
#include "kernel/tools/tool.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"
#include "kernel/terminal.h"
#include "kernel/tools/marker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define FEED_YIELD_MS 1000       /* when the request gives no yield_ms */
#define FEED_YIELD_MAX_MS 600000
#define LINE_CHUNK 1024          /* bytes of a typed line (the terminal's
                                    line buffer holds 4095) */

/* ---- sessions -------------------------------------------------------------- */

struct session {
    char name[64];
    struct spawner *sp;
    pid_t pid;
    int master;               /* the terminal's master side; -1 once it hung up */
    struct marker mk;         /* finds the end-of-command markers */
    bool ready;               /* the set-up line ran: markers now end commands */
    bool busy;                /* a command has not printed its marker yet */
    bool finished;            /* a command finished since the job began */
    int last_exit;
    bool ended;               /* the shell exited (status) */
    int status;
    struct buf typing;        /* bytes waiting to be written to the terminal */
    struct tool_text cut;
    struct tool_output unread; /* printed since the last reply */
    struct session_job *waiter; /* the job waiting on it, or NULL */
};

/* The exec sessions of a kernel, by slot. */
struct sessions {
    struct session *s[SESSIONS_MAX];
};

/* A request that waits on a session: exec in it, or feed it. */
struct session_job {
    struct tool_job base;
    struct session *s;        /* NULL once the session is gone */
    bool feed;
    double reply_at;          /* the timeout (exec) or the yield (feed) */
    bool interrupted;
};

/* Queues bytes to type into the session. CG_OK or CG_ENOMEM. */
static int
type_bytes(struct session *s, const char *bytes, size_t len)
{
    return buf_add(&s->typing, bytes, len);
}

/* Appends src[0..len) to *line as bash $'...' text (no raw newline, no
 * quote). */
static int
type_quoted(struct session *s, const char *src, size_t len)
{
    char one[8];
    int rc = type_bytes(s, "$'", 2);

    for (size_t i = 0; i < len && rc == CG_OK; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\\' || c == '\'')
            snprintf(one, sizeof one, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            snprintf(one, sizeof one, "%c", c);
        else
            snprintf(one, sizeof one, "\\x%02x", c);
        rc = type_bytes(s, one, strlen(one));
    }
    return rc == CG_OK ? type_bytes(s, "'", 1) : rc;
}

/*
 * Types a command as one logical line: `[cd -- $'dir' &&] [N=$'v' ...]
 * eval $'part'\<newline>$'part'...` - quoted parts joined by
 * backslash-newline, so no physical line outgrows the terminal's line
 * buffer and the shell runs it as one command (one marker). The cd stays
 * (as if typed); the variables are the command's alone: Bash (not in
 * POSIX mode) scopes assignments before `eval` to it and what it starts,
 * while what the command itself sets or exports survives.
 */
static int
type_command(struct session *s, const struct exec_req *r)
{
    int rc = CG_OK;

    if (r->workdir && *r->workdir) {
        rc = type_bytes(s, "cd -- ", 6);
        if (rc == CG_OK)
            rc = type_quoted(s, r->workdir, strlen(r->workdir));
        if (rc == CG_OK)
            rc = type_bytes(s, " &&\\\n", 5);
    }
    for (size_t i = 0; r->env[i] && rc == CG_OK; i++) {
        const char *eq = strchr(r->env[i], '=');
        rc = type_bytes(s, r->env[i], (size_t)(eq - r->env[i]) + 1);
        if (rc == CG_OK)
            rc = type_quoted(s, eq + 1, strlen(eq + 1));
        if (rc == CG_OK)
            rc = type_bytes(s, " \\\n", 3);
    }
    if (rc == CG_OK)
        rc = type_bytes(s, "eval ", 5);
    size_t len = strlen(r->cmd);
    for (size_t at = 0; at < len && rc == CG_OK; at += LINE_CHUNK / 4) {
        size_t part = len - at < LINE_CHUNK / 4 ? len - at : LINE_CHUNK / 4;
        if (at)
            rc = type_bytes(s, "\\\n", 2);
        if (rc == CG_OK)
            rc = type_quoted(s, r->cmd + at, part);
    }
    return rc == CG_OK ? type_bytes(s, "\n", 1) : rc;
}

/* Hands text the session printed on: kept for the next reply and, while a
 * job waits on the session, streamed to its client. */
static void
session_text(struct tool_env *env, struct session *s, const char *text, size_t len)
{
    if (!s->ready || len == 0)
        return; /* the shell's start-up noise */
    tool_output_add(env->chan, s->waiter != NULL, &s->unread, &s->cut, "stdout", text, len);
}

/* What marker callbacks need. */
struct scan_ctx {
    struct tool_env *env;
    struct session *s;
};

static void
on_text(void *ctx, const char *text, size_t len)
{
    struct scan_ctx *c = ctx;
    session_text(c->env, c->s, text, len);
}

/* A marker ended a command with status code. */
static void
on_marker(void *ctx, int code)
{
    struct session *s = ((struct scan_ctx *)ctx)->s;

    if (!s->ready) {
        s->ready = true; /* the set-up line's */
        return;
    }
    s->busy = false;
    s->finished = true;
    s->last_exit = code;
}

static void
session_scan(struct tool_env *env, struct session *s, const char *data, size_t len)
{
    struct scan_ctx c = { env, s };

    if (marker_scan(&s->mk, data, len, on_text, on_marker, &c) != 0)
        log_error("out of memory: session output lost");
}

/* Lets out a held tail as text (a reply is about to be sent). */
static void
session_flush(struct tool_env *env, struct session *s)
{
    struct scan_ctx c = { env, s };
    marker_flush(&s->mk, on_text, &c);
}

/* Reads what the terminal has; at hang-up, stops reading it. */
static void
session_read(struct tool_env *env, struct session *s)
{
    static char buf[TOOL_READ_CHUNK];

    for (int round = 0; round < 4 && s->master >= 0; round++) {
        ssize_t n = read(s->master, buf, sizeof buf);
        if (n > 0) {
            session_scan(env, s, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        close(s->master); /* EIO: every program on the terminal closed it */
        s->master = -1;
    }
}

static void
session_write(struct session *s)
{
    ssize_t n = write(s->master, s->typing.data, s->typing.len);

    if (n > 0) {
        buf_consume(&s->typing, (size_t)n);
    }
}

static void
session_free(struct session *s)
{
    if (!s->ended)
        s->sp->signal(s->sp, s->pid, SIGKILL);
    if (s->master >= 0)
        close(s->master);
    buf_free(&s->typing);
    buf_free(&s->unread.text);
    free(s);
}

/* The reply to a session job, then its end. */
static void
session_reply(struct tool_env *env, struct session_job *j)
{
    struct session *s = j->s;

    session_flush(env, s);
    tool_output_add(env->chan, true, &s->unread, &s->cut, "stdout", "", 0);
    json_t *r = json_pack("{s:s, s:s, s:o, s:b}", "status", "ok", "session_name", s->name,
                          "output", tool_output_take(&s->unread), "running", s->busy);
    if (r && s->finished)
        json_object_set_new(r, "exit_code", json_integer(s->last_exit));
    else if (r && s->ended)
        json_object_set_new(r, "exit_code", json_integer(tool_exit_code(s->status)));
    else if (r && !j->feed)
        json_object_set_new(r, "exit_code", json_null());
    if (r && !j->feed)
        json_object_set_new(r, "timed_out", json_boolean(!s->finished && !s->ended
                                                          && !j->interrupted));
    if (r && s->ended)
        json_object_set_new(r, "session_ended", json_true());
    if (r && j->interrupted)
        json_object_set_new(r, "interrupted", json_true());
    job_finish(&j->base, r);
    s->waiter = NULL; /* what it prints from now on waits for the next reply */
    j->s = NULL;
}

struct sessions *
sessions_new(void)
{
    return calloc(1, sizeof(struct sessions));
}

/* Frees session i of the table (its shell is killed if still running). */
static void
session_remove(struct sessions *ss, size_t i)
{
    struct session *s = ss->s[i];

    if (s->waiter)
        s->waiter->s = NULL;
    session_free(s);
    ss->s[i] = NULL;
}

void
sessions_clear(struct sessions *ss)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (ss->s[i])
            session_remove(ss, i);
}

void
sessions_destroy(struct sessions **ssp)
{
    if (!ssp || !*ssp)
        return;
    sessions_clear(*ssp);
    free(*ssp);
    *ssp = NULL;
}

size_t
sessions_poll(struct sessions *ss, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < SESSIONS_MAX && n < max; i++) {
        struct session *s = ss->s[i];
        if (s && s->master >= 0)
            items[n++] = (zmq_pollitem_t){ .fd = s->master,
                                           .events = ZMQ_POLLIN
                                                     | (s->typing.len ? ZMQ_POLLOUT : 0) };
    }
    return n;
}

void
sessions_service(struct tool_env *env, const zmq_pollitem_t *items, size_t n)
{
    size_t at = 0;

    for (size_t i = 0; i < SESSIONS_MAX && at < n; i++) {
        struct session *s = env->sessions->s[i];
        if (!s || s->master < 0)
            continue;
        short ev = items[at++].revents;
        if (ev & ZMQ_POLLOUT)
            session_write(s);
        if (ev & (ZMQ_POLLIN | ZMQ_POLLERR))
            session_read(env, s);
        if (s->waiter && s->finished)
            session_reply(env, s->waiter);
    }
}

bool
sessions_exited(struct tool_env *env, pid_t pid, int status, bool boxed)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        struct session *s = env->sessions->s[i];
        if (!s || s->pid != pid || boxed != (s->sp != spawn_plain()))
            continue;
        s->ended = true;
        s->status = status;
        s->busy = false;
        session_read(env, s);
        if (s->waiter)
            session_reply(env, s->waiter);
        session_remove(env->sessions, i);
        return true;
    }
    return false;
}

static struct session *
session_find(struct sessions *ss, const char *name)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (ss->s[i] && strcmp(ss->s[i]->name, name) == 0)
            return ss->s[i];
    return NULL;
}

/* Opens a terminal pair: *master (non-blocking) and *slave, with echo and
 * CR-LF output translation off, 50 x 200. CG_OK or CG_ESYS. */
static int
open_terminal(int *master, int *slave)
{
    struct termios t;
    struct winsize ws = { .ws_row = 50, .ws_col = 200 };

    if (terminal_open(master, slave, O_NONBLOCK) != CG_OK)
        return CG_ESYS;
    if (tcgetattr(*slave, &t) == 0) {
        t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        t.c_oflag &= ~(tcflag_t)ONLCR;
        if (tcsetattr(*slave, TCSANOW, &t) == 0 && ioctl(*slave, TIOCSWINSZ, &ws) == 0)
            return CG_OK;
    }
    int e = errno;
    close(*slave);
    close(*master);
    *slave = *master = -1;
    errno = e;
    return CG_ESYS;
}

/* Starts a session's shell; NULL with an error result in *error. */
static struct session *
session_start(struct tool_env *env, const char *name, json_t **error)
{
    static const char *const argv[] = { "/bin/bash", "--noprofile", "--norc", "--noediting",
                                        "-i", NULL };
    static const char *const extra[] = { "TERM=xterm-256color", "PAGER=cat", "GIT_PAGER=cat",
                                         NULL };
    struct rt_place where;
    struct session *s = NULL;
    unsigned char nonce[8];
    char hex[17], err[512], setup[256];
    size_t slot = SESSIONS_MAX;
    int slave = -1;

    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (!env->sessions->s[i])
            slot = i;
    if (slot == SESSIONS_MAX) {
        *error = tool_error("TooManySessions", "this kernel already has %d exec sessions; "
                            "end one (type \"exit\\n\" into it with cellgate.feed)",
                            SESSIONS_MAX);
        return NULL;
    }
    if (site_place(env->site, &where, err, sizeof err) != CG_OK) {
        *error = tool_error("RuntimeUnavailable", "%s", err);
        return NULL;
    }
    char **envp = runtime_env(&where, extra);
    s = calloc(1, sizeof *s);
    if (!envp || !s) {
        *error = tool_error("MemoryError", "out of memory");
        goto fail;
    }
    s->master = -1;
    s->unread.keep_tail = true; /* a long-running program's latest output matters */
    if (open_terminal(&s->master, &slave) != CG_OK) {
        *error = tool_error("OSError", "cannot open a terminal: %s", strerror(errno));
        goto fail;
    }
    struct spawn_fd fds[] = { { 0, slave }, { 1, slave }, { 2, slave } };
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)envp, .fds = fds,
                               .n_fds = 3, .tty = 1 };
    if (where.spawner->start(where.spawner, &spec, &s->pid, err, sizeof err) != CG_OK) {
        *error = tool_error("OSError", "cannot start the session's shell: %s", err);
        goto fail;
    }
    close(slave);
    slave = -1;
    s->sp = where.spawner;
    snprintf(s->name, sizeof s->name, "%s", name);
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(hex, sizeof hex, nonce, sizeof nonce);
    marker_init(&s->mk, hex);
    /* The prompt becomes the marker; the next prompt after this line is the
     * first marker, which says the session is ready. */
    snprintf(setup, sizeof setup, "PS1=''; PS2=''; unset HISTFILE; PROMPT_COMMAND='printf "
             "\"\\033]777;cg-%s;%%s\\007\" \"$?\"'\n", hex);
    if (type_bytes(s, setup, strlen(setup)) != CG_OK) {
        *error = tool_error("MemoryError", "out of memory");
        goto fail;
    }
    free(envp);
    env->sessions->s[slot] = s;
    return s;
fail:
    if (slave >= 0)
        close(slave);
    if (s && s->pid > 0)
        s->sp->signal(s->sp, s->pid, SIGKILL);
    if (s && s->master >= 0)
        close(s->master);
    if (s)
        buf_free(&s->typing);
    free(s);
    free(envp);
    return NULL;
}

/* The reply is due: the session's output up to now, running or not. */
static double
session_job_tick(struct tool_env *env, struct tool_job *job, double now)
{
    struct session_job *j = (struct session_job *)job;

    if (!j->s)
        return 0; /* answered already: the session ended */
    if (now < j->reply_at)
        return j->reply_at;
    session_read(env, j->s); /* what it printed up to now */
    session_reply(env, j);
    return 0;
}

/* Ctrl-C to the session's foreground program; the reply follows its
 * marker, or TOOL_GRACE seconds later with "running" as it is then. */
static void
session_job_interrupt(struct tool_env *env, struct tool_job *job)
{
    struct session_job *j = (struct session_job *)job;
    double at = clock_now() + TOOL_GRACE;

    (void)env;
    if (!j->s)
        return;
    j->interrupted = true;
    if (j->s->master >= 0 && type_bytes(j->s, "\003", 1) == CG_OK)
        session_write(j->s);
    if (at < j->reply_at)
        j->reply_at = at;
}

static void
session_job_destroy(struct tool_job *job)
{
    struct session_job *j = (struct session_job *)job;

    if (j->s)
        j->s->waiter = NULL;
    free(j);
}

/* The session's terminal is polled as a session, and it hears of its
 * shell's exit: the job only waits. */
static const struct job_ops session_job_ops = {
    .tick = session_job_tick, .interrupt = session_job_interrupt,
    .destroy = session_job_destroy,
};

/* Starts a job waiting on s until reply_at. */
static json_t *
session_wait(struct session *s, bool feed, double seconds,
             struct tool_job **job)
{
    struct session_job *j = calloc(1, sizeof *j);

    if (!j)
        return tool_error("MemoryError", "out of memory");
    *j = (struct session_job){ .base = { &session_job_ops }, .s = s, .feed = feed,
                               .reply_at = clock_now() + seconds };
    s->finished = false;
    s->waiter = j;
    if (s->master >= 0 && s->typing.len)
        session_write(s);
    *job = &j->base;
    return NULL;
}

json_t *
session_exec(struct tool_env *env, const struct exec_req *r, struct tool_job **job)
{
    struct session *s = session_find(env->sessions, r->session);
    json_t *error = NULL;

    if (s && s->busy)
        return tool_error("SessionBusy", "session \"%s\" is still running a command: type "
                          "into it with cellgate.feed (\"\\u0003\" is Ctrl-C)", r->session);
    if (!s && !(s = session_start(env, r->session, &error)))
        return error;
    if (type_command(s, r) != CG_OK)
        return tool_error("MemoryError", "out of memory");
    s->busy = true;
    return session_wait(s, false, r->timeout, job);
}

/* cellgate.feed {session_name, chars, yield_ms?} -> {output, running, ...} */
json_t *
tool_feed(struct tool_env *env, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    json_t *chars = json_object_get(data, "chars"), *yield = json_object_get(data, "yield_ms");
    bool bad = false;
    const char *name = tool_str_member(data, "session_name", &bad);
    double ms = FEED_YIELD_MS;

    (void)req;
    if (bad || !name)
        return tool_error("ValueError", "feed needs \"session_name\"");
    if (!json_is_string(chars) || json_string_length(chars) > TOOL_CMD_MAX)
        return tool_error("ValueError", "feed needs \"chars\": a string of at most %u bytes",
                          TOOL_CMD_MAX);
    if (yield && !json_is_null(yield)) {
        if (!json_is_number(yield) || json_number_value(yield) < 0
            || json_number_value(yield) > FEED_YIELD_MAX_MS)
            return tool_error("ValueError", "yield_ms must be 0 to %d", FEED_YIELD_MAX_MS);
        ms = json_number_value(yield);
    }
    struct session *s = session_find(env->sessions, name);
    if (!s)
        return tool_error("SessionNotFound", "no exec session named \"%s\": start one with "
                          "cellgate.exec and this session_name", name);
    const char *text = json_string_value(chars);
    size_t len = json_string_length(chars);
    if (type_bytes(s, text, len) != CG_OK)
        return tool_error("MemoryError", "out of memory");
    if (!s->busy && (memchr(text, '\n', len) || memchr(text, '\r', len)))
        s->busy = true; /* typed a command line into the shell itself */
    return session_wait(s, true, ms / 1000.0, job);
}
