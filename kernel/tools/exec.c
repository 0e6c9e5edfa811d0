/*
 * exec.c - cellgate.exec (DESIGN.md, "Comms"): reading the request, and a
 * command run once. Without a session name, the command runs in the box
 * with stdin from /dev/null and its stdout and stderr on pipes, streamed
 * to the client as they arrive; it is killed at its timeout. A request
 * with a session name goes to a persistent shell (session.c).
 */
#include "kernel/tools/tool.h"

#include "common/cgerr.h"
#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXEC_TIMEOUT 60.0        /* seconds, when the request gives none */
#define EXEC_TIMEOUT_MAX 86400.0
#define ARGV_MAX 250
#define PIPE_LINGER 0.5          /* seconds we read pipes after the exit */

/* ---- the request ----------------------------------------------------------- */

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
        if (!tool_text(cmd) || json_string_length(cmd) > TOOL_CMD_MAX || !*r->cmd)
            return tool_error("ValueError", "cmd must be a non-empty string of at most %u bytes "
                              "without NUL", TOOL_CMD_MAX);
    } else if (json_is_array(cmd) && json_array_size(cmd) >= 1
               && json_array_size(cmd) <= ARGV_MAX) {
        size_t i, total = 0;
        json_t *a;
        json_array_foreach(cmd, i, a) {
            if (!tool_text(a))
                return tool_error("ValueError", "cmd[%zu] must be a string without NUL", i);
            total += json_string_length(a) + 1;
        }
        if (total > TOOL_CMD_MAX || !*json_string_value(json_array_get(cmd, 0)))
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
        if (!json_is_object(env) || json_object_size(env) > EXEC_ENV_MAX)
            return tool_error("ValueError", "env must be an object of at most %d strings",
                              EXEC_ENV_MAX);
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
exec_read(struct tool_env *env, struct exec_job *j, int i)
{
    static char buf[TOOL_READ_CHUNK];
    ssize_t n = read(j->fd[i], buf, sizeof buf);

    if (n > 0) {
        tool_output_add(env->chan, true, &j->out, &j->cut[i], stream_names[i], buf,
                        (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        tool_output_add(env->chan, true, &j->out, &j->cut[i], stream_names[i], "", 0);
        close(j->fd[i]);
        j->fd[i] = -1;
    }
}

/* Replies once the process exited and its pipes are done (or lingered). */
static void
exec_maybe_finish(struct tool_env *env, struct exec_job *j, double now)
{
    if (!j->exited || ((j->fd[0] >= 0 || j->fd[1] >= 0) && now < j->linger_until))
        return;
    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0) {
            exec_read(env, j, i); /* what is there now; a background child may hold it open */
            tool_output_add(env->chan, true, &j->out, &j->cut[i], stream_names[i], "", 0);
        }
    json_t *r = json_pack("{s:s, s:i, s:b, s:o}", "status", "ok", "exit_code",
                          tool_exit_code(j->status), "timed_out", j->timed_out, "output",
                          tool_output_take(&j->out));
    if (r && WIFSIGNALED(j->status))
        json_object_set_new(r, "signal", json_integer(WTERMSIG(j->status)));
    if (r && j->interrupted)
        json_object_set_new(r, "interrupted", json_true());
    job_finish(&j->base, r);
}

static void
exec_service(struct tool_env *env, struct tool_job *job, const zmq_pollitem_t *items, size_t n)
{
    struct exec_job *j = (struct exec_job *)job;
    size_t at = 0;
    int which[2], m = 0;

    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0)
            which[m++] = i;
    for (at = 0; at < n && at < (size_t)m; at++)
        if (items[at].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            exec_read(env, j, which[at]);
    exec_maybe_finish(env, j, clock_now());
}

static double
exec_tick(struct tool_env *env, struct tool_job *job, double now)
{
    struct exec_job *j = (struct exec_job *)job;

    if (!j->exited && j->kill_at && now >= j->kill_at) {
        j->sp->signal(j->sp, j->pid, SIGKILL);
        j->kill_at = 0;
        j->timed_out = !j->interrupted;
    }
    if (j->exited) {
        exec_maybe_finish(env, j, now);
        return j->base.result ? 0 : j->linger_until;
    }
    return j->kill_at;
}

static void
exec_interrupt(struct tool_env *env, struct tool_job *job)
{
    struct exec_job *j = (struct exec_job *)job;

    (void)env;
    if (j->exited)
        return;
    j->interrupted = true;
    j->sp->signal(j->sp, j->pid, SIGINT);
    double at = clock_now() + TOOL_GRACE;
    if (!j->kill_at || at < j->kill_at)
        j->kill_at = at;
}

static bool
exec_exited(struct tool_env *env, struct tool_job *job, pid_t pid, int status, bool boxed)
{
    struct exec_job *j = (struct exec_job *)job;

    if (pid != j->pid || j->exited || boxed != (j->sp != spawn_plain()))
        return false;
    j->exited = true;
    j->status = status;
    j->linger_until = clock_now() + PIPE_LINGER;
    exec_maybe_finish(env, j, clock_now());
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

/* Starts a one-shot command. */
static json_t *
exec_once(struct tool_env *env, struct exec_req *r, struct tool_job **job)
{
    struct rt_place where;
    const char *argv[ARGV_MAX + 6], *extra[EXEC_ENV_MAX + 2];
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, devnull = -1;
    char err[512], cwd[4200];
    size_t n = 0;
    json_t *result = NULL;
    struct exec_job *j = calloc(1, sizeof *j);

    if (site_place(env->site, &where, err, sizeof err) != CG_OK) {
        free(j);
        return tool_error("RuntimeUnavailable", "%s", err);
    }
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
    char **envp = runtime_env(&where, extra);
    if (!j || !envp || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0
        || (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        result = tool_error(errno == ENOMEM || !j || !envp ? "MemoryError" : "OSError",
                            "cannot start the command: %s", strerror(errno));
        goto out;
    }
    struct spawn_fd fds[] = { { 0, devnull }, { 1, po[1] }, { 2, pe[1] } };
    struct spawn_spec spec = { .argv = argv, .envp = (const char *const *)envp,
                               .cwd = r->workdir && *r->workdir
                                          ? site_path(env->site, r->workdir, cwd, sizeof cwd)
                                          : NULL,
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
    j->kill_at = clock_now() + r->timeout;
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
    free(envp);
    free(j);
    return result;
}

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

/* cellgate.exec {cmd, session_name?, workdir?, timeout?, env?} ->
 * {exit_code, timed_out, output, ...} */
json_t *
tool_exec(struct tool_env *env, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    struct exec_req r;
    char *line = NULL;
    json_t *error = parse_exec(data, &r);

    (void)req;
    if (error)
        return error;
    if (!r.session)
        error = exec_once(env, &r, job);
    else if (r.argv && !(r.cmd = line = quote_argv(r.argv)))
        error = tool_error("MemoryError", "out of memory");
    else
        error = session_exec(env, &r, job);
    free(line);
    exec_req_free(&r);
    return error;
}

