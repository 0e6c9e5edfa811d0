/*
 * tool_exec.c - cellgate.exec and cellgate.feed (DESIGN.md, "Comms").
 *
 * Without a session name, a command runs once in the box with stdin from
 * /dev/null and its stdout and stderr on pipes, streamed to the client as
 * they arrive; it is killed at its timeout. With a session name, it runs in
 * a persistent bash on a terminal (cwd, variables and background jobs
 * survive). The kernel owns the terminal's master side: it types the
 * command and reads what the session prints. The shell prints an
 * end-of-command marker as its prompt, "ESC ] 777 ; cg-NONCE ; STATUS BEL",
 * with a random nonce per session; the marker is taken out of the output
 * and gives the command's exit status. A command still running at its
 * timeout keeps running ("running": true); cellgate.feed types into it and
 * returns what it printed meanwhile. Everything a session prints between
 * requests is kept (up to TOOL_OUTPUT_MAX) for the next reply.
 */
#include "kernel/tools/tools_impl.h"

#include "kernel/tools/marker.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/ioctl.h>
#include <termios.h>

#define EXEC_TIMEOUT 60.0        /* seconds, when the request gives none */
#define EXEC_TIMEOUT_MAX 86400.0
#define FEED_YIELD_MS 1000       /* when the request gives no yield_ms */
#define FEED_YIELD_MAX_MS 600000
#define CMD_MAX (256u << 10)     /* bytes of a command or of typed chars */
#define ARGV_MAX 250
#define ENV_MAX 64
#define GRACE 1.0                /* seconds: interrupt to SIGKILL or reply */
#define PIPE_LINGER 0.5          /* seconds we read pipes after the exit */
#define READ_CHUNK 65536
#define LINE_CHUNK 1024          /* bytes of a typed line (the terminal's
                                    line buffer holds 4095) */

/* ---- the request ----------------------------------------------------------- */

struct exec_req {
    const char *cmd;          /* a shell string, or NULL */
    json_t *argv;             /* or an argv list */
    const char *session;
    const char *workdir;
    double timeout;
    char *env[ENV_MAX + 1];   /* "NAME=value", owned */
};

static void
exec_req_free(struct exec_req *r)
{
    for (size_t i = 0; r->env[i]; i++)
        free(r->env[i]);
}

/* True for a shell variable name. */
static bool
valid_name(const char *s)
{
    if (!s || !(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (s++; *s; s++)
        if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')
              || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* A session name: 1-63 of [A-Za-z0-9_.-]. */
static bool
valid_session(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n >= 1 && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789_.-") == n;
}

/* Reads an exec request; NULL, or an error result. */
static json_t *
parse_exec(json_t *data, struct exec_req *r)
{
    json_t *cmd = json_object_get(data, "cmd"), *env = json_object_get(data, "env");
    json_t *timeout = json_object_get(data, "timeout");
    bool bad = false;
    size_t n = 0;

    *r = (struct exec_req){ .timeout = EXEC_TIMEOUT };
    if (json_is_string(cmd)) {
        r->cmd = json_string_value(cmd);
        if (!tool_text(cmd) || json_string_length(cmd) > CMD_MAX || !*r->cmd)
            return tool_error("ValueError", "cmd must be a non-empty string of at most %u bytes "
                              "without NUL", CMD_MAX);
    } else if (json_is_array(cmd) && json_array_size(cmd) >= 1
               && json_array_size(cmd) <= ARGV_MAX) {
        size_t i, total = 0;
        json_t *a;
        json_array_foreach(cmd, i, a) {
            if (!tool_text(a))
                return tool_error("ValueError", "cmd[%zu] must be a string without NUL", i);
            total += json_string_length(a) + 1;
        }
        if (total > CMD_MAX || !*json_string_value(json_array_get(cmd, 0)))
            return tool_error("ValueError", "cmd is too long or names no program");
        r->argv = cmd;
    } else {
        return tool_error("ValueError", "exec needs \"cmd\": a shell string or an argv list "
                          "(1 to %d strings)", ARGV_MAX);
    }
    r->session = tool_str_member(data, "session_name", &bad);
    r->workdir = tool_str_member(data, "workdir", &bad);
    if (bad)
        return tool_error("ValueError", "session_name and workdir must be strings");
    if (r->session && !valid_session(r->session))
        return tool_error("ValueError", "session_name must be 1 to 63 letters, digits, "
                          "'_', '.' or '-'");
    if (timeout && !json_is_null(timeout)) {
        if (!json_is_number(timeout) || json_number_value(timeout) <= 0
            || json_number_value(timeout) > EXEC_TIMEOUT_MAX)
            return tool_error("ValueError", "timeout must be a number of seconds, above 0 and "
                              "at most %.0f", EXEC_TIMEOUT_MAX);
        r->timeout = json_number_value(timeout);
    }
    if (env && !json_is_null(env)) {
        const char *name;
        json_t *v;
        if (!json_is_object(env) || json_object_size(env) > ENV_MAX)
            return tool_error("ValueError", "env must be an object of at most %d strings",
                              ENV_MAX);
        json_object_foreach(env, name, v) {
            if (!valid_name(name) || !tool_text(v)) {
                exec_req_free(r);
                return tool_error("ValueError", "env: \"%.64s\" must be a variable name with a "
                                  "string value without NUL", name);
            }
            if (asprintf(&r->env[n], "%s=%s", name, json_string_value(v)) < 0) {
                r->env[n] = NULL;
                exec_req_free(r);
                return tool_error("MemoryError", "out of memory");
            }
            n++;
        }
    }
    return NULL;
}

/* The exit status of a wait status, as a shell reports it. */
static int
exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- one command, once ----------------------------------------------------- */

struct exec_job {
    struct tool_job base;
    struct spawner *sp;
    pid_t pid;
    int fd[2];                /* stdout, stderr pipes; -1 at EOF */
    struct tool_text cut[2];
    struct tool_output out;
    double kill_at;           /* SIGKILL then (timeout or interrupt), 0: no */
    double linger_until;      /* after the exit: stop reading pipes then */
    bool exited, timed_out, interrupted;
    int status;
};

static const char *const stream_names[2] = { "stdout", "stderr" };

static size_t
exec_poll(struct tool_job *job, zmq_pollitem_t *items)
{
    struct exec_job *j = (struct exec_job *)job;
    size_t n = 0;

    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0)
            items[n++] = (zmq_pollitem_t){ .fd = j->fd[i], .events = ZMQ_POLLIN };
    return n;
}

/* Reads what pipe i holds (one chunk); closes it at EOF. */
static void
exec_read(struct kernel *k, struct exec_job *j, int i)
{
    static char buf[READ_CHUNK];
    ssize_t n = read(j->fd[i], buf, sizeof buf);

    if (n > 0) {
        tool_output_add(k, true, &j->out, &j->cut[i], stream_names[i], buf,
                        (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        tool_output_add(k, true, &j->out, &j->cut[i], stream_names[i], "", 0);
        close(j->fd[i]);
        j->fd[i] = -1;
    }
}

/* Replies once the process exited and its pipes are done (or lingered). */
static void
exec_maybe_finish(struct kernel *k, struct exec_job *j, double now)
{
    if (!j->exited || ((j->fd[0] >= 0 || j->fd[1] >= 0) && now < j->linger_until))
        return;
    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0) {
            exec_read(k, j, i); /* what is there now; a background child may hold it open */
            tool_output_add(k, true, &j->out, &j->cut[i], stream_names[i], "", 0);
        }
    json_t *r = json_pack("{s:s, s:i, s:b, s:o}", "status", "ok", "exit_code",
                          exit_code(j->status), "timed_out", j->timed_out, "output",
                          tool_output_take(&j->out));
    if (r && WIFSIGNALED(j->status))
        json_object_set_new(r, "signal", json_integer(WTERMSIG(j->status)));
    if (r && j->interrupted)
        json_object_set_new(r, "interrupted", json_true());
    tools_finish(k, r);
}

static void
exec_service(struct kernel *k, struct tool_job *job, const zmq_pollitem_t *items, size_t n)
{
    struct exec_job *j = (struct exec_job *)job;
    size_t at = 0;
    int which[2], m = 0;

    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0)
            which[m++] = i;
    for (at = 0; at < n && at < (size_t)m; at++)
        if (items[at].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            exec_read(k, j, which[at]);
    exec_maybe_finish(k, j, kernel_now());
}

static double
exec_tick(struct kernel *k, struct tool_job *job, double now)
{
    struct exec_job *j = (struct exec_job *)job;

    if (!j->exited && j->kill_at && now >= j->kill_at) {
        j->sp->signal(j->sp, j->pid, SIGKILL);
        j->kill_at = 0;
        j->timed_out = !j->interrupted;
    }
    if (j->exited) {
        exec_maybe_finish(k, j, now); /* may destroy j */
        return k->tools && k->tools->job == job ? j->linger_until : 0;
    }
    return j->kill_at;
}

static void
exec_interrupt(struct kernel *k, struct tool_job *job)
{
    struct exec_job *j = (struct exec_job *)job;

    (void)k;
    if (j->exited)
        return;
    j->interrupted = true;
    j->sp->signal(j->sp, j->pid, SIGINT);
    double at = kernel_now() + GRACE;
    if (!j->kill_at || at < j->kill_at)
        j->kill_at = at;
}

static bool
exec_exited(struct kernel *k, struct tool_job *job, pid_t pid, int status, bool boxed)
{
    struct exec_job *j = (struct exec_job *)job;

    if (pid != j->pid || j->exited || boxed != (j->sp != spawn_plain()))
        return false;
    j->exited = true;
    j->status = status;
    j->linger_until = kernel_now() + PIPE_LINGER;
    exec_maybe_finish(k, j, kernel_now());
    return true;
}

static void
exec_destroy(struct tool_job *job)
{
    struct exec_job *j = (struct exec_job *)job;

    if (!j->exited)
        j->sp->signal(j->sp, j->pid, SIGKILL); /* reaped by whoever reaps */
    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0)
            close(j->fd[i]);
    buf_free(&j->out.text);
    free(j);
}

static const struct job_ops exec_ops = {
    exec_poll, exec_service, exec_tick, exec_interrupt, exec_exited, exec_destroy,
};

/* The working directory for a request: relative paths are under the box
 * home (or the kernel's directory without the box). */
static const char *
workdir_path(struct kernel *k, const char *dir, char *buf, size_t len)
{
    if (!dir || !*dir)
        return NULL;
    if (dir[0] == '/' || !k->box)
        return dir;
    snprintf(buf, len, "%s/%s", BOX_HOME, dir);
    return buf;
}

/* Starts a one-shot command. */
static json_t *
exec_once(struct kernel *k, struct exec_req *r, struct tool_job **job)
{
    struct rt_place where = cell_place(k);
    const char *argv[ARGV_MAX + 6], *extra[ENV_MAX + 2];
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, devnull = -1;
    char err[512], cwd[4200];
    size_t n = 0;
    json_t *result = NULL;
    struct exec_job *j = calloc(1, sizeof *j);

    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    if (r->cmd) {
        argv[n++] = r->cmd;
    } else {
        size_t i;
        json_t *a;
        argv[n++] = "exec \"$@\""; /* the shell finds the program on PATH */
        argv[n++] = "sh";
        json_array_foreach(r->argv, i, a)
            argv[n++] = json_string_value(a);
    }
    argv[n] = NULL;
    extra[0] = "TERM=dumb";
    for (n = 0; r->env[n]; n++)
        extra[n + 1] = r->env[n];
    extra[n + 1] = NULL;
    char **env = runtime_env(&where, extra);
    if (!j || !env || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0
        || (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        result = tool_error(errno == ENOMEM || !j || !env ? "MemoryError" : "OSError",
                            "cannot start the command: %s", strerror(errno));
        goto out;
    }
    struct spawn_fd fds[] = { { 0, devnull }, { 1, po[1] }, { 2, pe[1] } };
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)env,
                               .cwd = workdir_path(k, r->workdir, cwd, sizeof cwd),
                               .fds = fds, .n_fds = 3 };
    if (where.spawner->start(where.spawner, &spec, &j->pid, err, sizeof err) != CG_OK) {
        result = tool_error(strstr(err, "working directory") ? "FileNotFoundError" : "OSError",
                            "%s", err);
        goto out;
    }
    j->base.ops = &exec_ops;
    j->sp = where.spawner;
    j->fd[0] = po[0];
    j->fd[1] = pe[0];
    po[0] = pe[0] = -1;
    fcntl(j->fd[0], F_SETFL, O_NONBLOCK);
    fcntl(j->fd[1], F_SETFL, O_NONBLOCK);
    j->kill_at = kernel_now() + r->timeout;
    *job = &j->base;
    j = NULL;
out:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    if (devnull >= 0)
        close(devnull);
    free(env);
    free(j);
    return result;
}

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
};

/* A request that waits on a session: exec in it, or feed it. */
struct session_job {
    struct tool_job base;
    struct session *s;
    bool feed;
    double reply_at;          /* the timeout (exec) or the yield (feed) */
    bool interrupted;
};

static const struct job_ops session_job_ops;

/* The running job if it waits on s, else NULL. */
static struct session_job *
job_of(struct kernel *k, struct session *s)
{
    struct tool_job *job = k->tools ? k->tools->job : NULL;

    if (job && job->ops == &session_job_ops && ((struct session_job *)job)->s == s)
        return (struct session_job *)job;
    return NULL;
}

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
session_text(struct kernel *k, struct session *s, const char *text, size_t len)
{
    if (!s->ready || len == 0)
        return; /* the shell's start-up noise */
    tool_output_add(k, job_of(k, s) != NULL, &s->unread, &s->cut, "stdout", text, len);
}

/* What marker callbacks need. */
struct scan_ctx {
    struct kernel *k;
    struct session *s;
};

static void
on_text(void *ctx, const char *text, size_t len)
{
    struct scan_ctx *c = ctx;
    session_text(c->k, c->s, text, len);
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
session_scan(struct kernel *k, struct session *s, const char *data, size_t len)
{
    struct scan_ctx c = { k, s };

    if (marker_scan(&s->mk, data, len, on_text, on_marker, &c) != 0)
        log_error("out of memory: session output lost");
}

/* Lets out a held tail as text (a reply is about to be sent). */
static void
session_flush(struct kernel *k, struct session *s)
{
    struct scan_ctx c = { k, s };
    marker_flush(&s->mk, on_text, &c);
}

/* Reads what the terminal has; at hang-up, stops reading it. */
static void
session_read(struct kernel *k, struct session *s)
{
    static char buf[READ_CHUNK];

    for (int round = 0; round < 4 && s->master >= 0; round++) {
        ssize_t n = read(s->master, buf, sizeof buf);
        if (n > 0) {
            session_scan(k, s, buf, (size_t)n);
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
session_reply(struct kernel *k, struct session_job *j)
{
    struct session *s = j->s;

    session_flush(k, s);
    tool_output_add(k, true, &s->unread, &s->cut, "stdout", "", 0);
    json_t *r = json_pack("{s:s, s:s, s:o, s:b}", "status", "ok", "session_name", s->name,
                          "output", tool_output_take(&s->unread), "running", s->busy);
    if (r && s->finished)
        json_object_set_new(r, "exit_code", json_integer(s->last_exit));
    else if (r && s->ended)
        json_object_set_new(r, "exit_code", json_integer(exit_code(s->status)));
    else if (r && !j->feed)
        json_object_set_new(r, "exit_code", json_null());
    if (r && !j->feed)
        json_object_set_new(r, "timed_out", json_boolean(!s->finished && !s->ended
                                                          && !j->interrupted));
    if (r && s->ended)
        json_object_set_new(r, "session_ended", json_true());
    if (r && j->interrupted)
        json_object_set_new(r, "interrupted", json_true());
    tools_finish(k, r);
}

/* Removes an ended session from the kernel's table. */
static void
session_remove(struct kernel *k, struct session *s)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (k->tools->sessions[i] == s)
            k->tools->sessions[i] = NULL;
    session_free(s);
}

size_t
sessions_poll(struct kernel *k, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < SESSIONS_MAX && n < max; i++) {
        struct session *s = k->tools->sessions[i];
        if (s && s->master >= 0)
            items[n++] = (zmq_pollitem_t){ .fd = s->master,
                                           .events = ZMQ_POLLIN
                                                     | (s->typing.len ? ZMQ_POLLOUT : 0) };
    }
    return n;
}

void
sessions_service(struct kernel *k, const zmq_pollitem_t *items, size_t n)
{
    size_t at = 0;

    for (size_t i = 0; i < SESSIONS_MAX && at < n; i++) {
        struct session *s = k->tools->sessions[i];
        if (!s || s->master < 0)
            continue;
        short ev = items[at++].revents;
        if (ev & ZMQ_POLLOUT)
            session_write(s);
        if (ev & (ZMQ_POLLIN | ZMQ_POLLERR))
            session_read(k, s);
        struct session_job *j = job_of(k, s);
        if (j && s->finished)
            session_reply(k, j);
    }
}

bool
sessions_exited(struct kernel *k, pid_t pid, int status, bool boxed)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        struct session *s = k->tools->sessions[i];
        if (!s || s->pid != pid || boxed != (s->sp != spawn_plain()))
            continue;
        s->ended = true;
        s->status = status;
        s->busy = false;
        session_read(k, s);
        struct session_job *j = job_of(k, s);
        if (j)
            session_reply(k, j);
        session_remove(k, s);
        return true;
    }
    return false;
}

void
sessions_destroy(struct kernel *k)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (k->tools->sessions[i]) {
            session_free(k->tools->sessions[i]);
            k->tools->sessions[i] = NULL;
        }
}

static struct session *
session_find(struct kernel *k, const char *name)
{
    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (k->tools->sessions[i] && strcmp(k->tools->sessions[i]->name, name) == 0)
            return k->tools->sessions[i];
    return NULL;
}

/* Opens a terminal pair: *master (non-blocking) and *slave, with echo and
 * CR-LF output translation off, 50 x 200. CG_OK or CG_ESYS. */
static int
open_terminal(int *master, int *slave)
{
    char name[128];
    struct termios t;
    struct winsize ws = { .ws_row = 50, .ws_col = 200 };

    *slave = -1;
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (*master < 0 || grantpt(*master) < 0 || unlockpt(*master) < 0
        || ptsname_r(*master, name, sizeof name) != 0
        || (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0
        || tcgetattr(*slave, &t) < 0)
        goto fail;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    t.c_oflag &= ~(tcflag_t)ONLCR;
    if (tcsetattr(*slave, TCSANOW, &t) < 0 || ioctl(*slave, TIOCSWINSZ, &ws) < 0)
        goto fail;
    return CG_OK;
fail:;
    int e = errno;
    if (*slave >= 0)
        close(*slave);
    if (*master >= 0)
        close(*master);
    errno = e;
    return CG_ESYS;
}

/* Starts a session's shell; NULL with an error result in *error. */
static struct session *
session_start(struct kernel *k, const char *name, json_t **error)
{
    static const char *const argv[] = { "/bin/bash", "--noprofile", "--norc", "--noediting",
                                        "-i", NULL };
    static const char *const extra[] = { "TERM=xterm-256color", "PAGER=cat", "GIT_PAGER=cat",
                                         NULL };
    struct rt_place where = cell_place(k);
    struct session *s = NULL;
    unsigned char nonce[8];
    char hex[17], err[512], setup[256];
    size_t slot = SESSIONS_MAX;
    int slave = -1;

    for (size_t i = 0; i < SESSIONS_MAX; i++)
        if (!k->tools->sessions[i])
            slot = i;
    if (slot == SESSIONS_MAX) {
        *error = tool_error("TooManySessions", "this kernel already has %d exec sessions; "
                            "end one (type \"exit\\n\" into it with cellgate.feed)",
                            SESSIONS_MAX);
        return NULL;
    }
    char **env = runtime_env(&where, extra);
    s = calloc(1, sizeof *s);
    if (!env || !s) {
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
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)env, .fds = fds,
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
    free(env);
    k->tools->sessions[slot] = s;
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
    free(env);
    return NULL;
}

static size_t
session_job_poll(struct tool_job *job, zmq_pollitem_t *items)
{
    (void)job;
    (void)items;
    return 0; /* the session's terminal is polled as a session */
}

static void
session_job_service(struct kernel *k, struct tool_job *job, const zmq_pollitem_t *items,
                    size_t n)
{
    (void)k;
    (void)job;
    (void)items;
    (void)n;
}

static double
session_job_tick(struct kernel *k, struct tool_job *job, double now)
{
    struct session_job *j = (struct session_job *)job;

    if (now < j->reply_at)
        return j->reply_at;
    session_read(k, j->s); /* what it printed up to now */
    session_reply(k, j);
    return 0;
}

/* Ctrl-C to the session's foreground program; the reply follows its
 * marker, or GRACE seconds later with "running" as it is then. */
static void
session_job_interrupt(struct kernel *k, struct tool_job *job)
{
    struct session_job *j = (struct session_job *)job;
    double at = kernel_now() + GRACE;

    (void)k;
    j->interrupted = true;
    if (j->s->master >= 0 && type_bytes(j->s, "\003", 1) == CG_OK)
        session_write(j->s);
    if (at < j->reply_at)
        j->reply_at = at;
}

static bool
session_job_exited(struct kernel *k, struct tool_job *job, pid_t pid, int status, bool boxed)
{
    (void)boxed;
    (void)k;
    (void)job;
    (void)pid;
    (void)status;
    return false; /* the session hears of its shell's exit */
}

static void
session_job_destroy(struct tool_job *job)
{
    free(job);
}

static const struct job_ops session_job_ops = {
    session_job_poll, session_job_service, session_job_tick, session_job_interrupt,
    session_job_exited, session_job_destroy,
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
                               .reply_at = kernel_now() + seconds };
    s->finished = false;
    if (s->master >= 0 && s->typing.len)
        session_write(s);
    *job = &j->base;
    return NULL;
}

/* ---- the tools ------------------------------------------------------------- */

/* An argv list as one shell command line, each word single-quoted. */
static char *
quote_argv(json_t *argv)
{
    char *line = NULL;
    size_t len = 0, i;
    json_t *a;
    FILE *f = open_memstream(&line, &len);

    if (!f)
        return NULL;
    json_array_foreach(argv, i, a) {
        fputs(i ? " '" : "'", f);
        for (const char *c = json_string_value(a); *c; c++)
            if (*c == '\'')
                fputs("'\\''", f);
            else
                fputc(*c, f);
        fputc('\'', f);
    }
    return fclose(f) == 0 ? line : (free(line), NULL);
}

/* Types r's command into its session (started if new) and waits. */
static json_t *
exec_in_session(struct kernel *k, const struct exec_req *r, struct tool_job **job)
{
    struct session *s = session_find(k, r->session);
    json_t *error = NULL;

    if (s && s->busy)
        return tool_error("SessionBusy", "session \"%s\" is still running a command: type "
                          "into it with cellgate.feed (\"\\u0003\" is Ctrl-C)", r->session);
    if (!s && !(s = session_start(k, r->session, &error)))
        return error;
    if (type_command(s, r) != CG_OK)
        return tool_error("MemoryError", "out of memory");
    s->busy = true;
    return session_wait(s, false, r->timeout, job);
}

/* cellgate.exec {cmd, session_name?, workdir?, timeout?, env?} ->
 * {exit_code, timed_out, output, ...} */
json_t *
tool_exec(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    struct exec_req r;
    char *line = NULL;
    json_t *error = parse_exec(data, &r);

    (void)req;
    if (error)
        return error;
    if (!r.session)
        error = exec_once(k, &r, job);
    else if (r.argv && !(r.cmd = line = quote_argv(r.argv)))
        error = tool_error("MemoryError", "out of memory");
    else
        error = exec_in_session(k, &r, job);
    free(line);
    exec_req_free(&r);
    return error;
}

/* cellgate.feed {session_name, chars, yield_ms?} -> {output, running, ...} */
json_t *
tool_feed(struct kernel *k, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    json_t *chars = json_object_get(data, "chars"), *yield = json_object_get(data, "yield_ms");
    bool bad = false;
    const char *name = tool_str_member(data, "session_name", &bad);
    double ms = FEED_YIELD_MS;

    (void)req;
    if (bad || !name)
        return tool_error("ValueError", "feed needs \"session_name\"");
    if (!json_is_string(chars) || json_string_length(chars) > CMD_MAX)
        return tool_error("ValueError", "feed needs \"chars\": a string of at most %u bytes",
                          CMD_MAX);
    if (yield && !json_is_null(yield)) {
        if (!json_is_number(yield) || json_number_value(yield) < 0
            || json_number_value(yield) > FEED_YIELD_MAX_MS)
            return tool_error("ValueError", "yield_ms must be 0 to %d", FEED_YIELD_MAX_MS);
        ms = json_number_value(yield);
    }
    struct session *s = session_find(k, name);
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
