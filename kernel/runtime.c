/*
 * runtime.c - a driver process and its fds (see runtime.h).
 */
#include "kernel/runtime.h"

#include "common/buf.h"
#include "common/cgerr.h"
#include "common/log.h"
#include "common/utf8.h"
#include "kernel/terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)

extern char **environ;

/* A growable byte buffer. */
/* One raw output pipe and the cut UTF-8 sequence left from its last read. */
struct pipe_in {
    int fd;
    const char *name; /* "stdout" / "stderr" */
    char carry[4];
    size_t carry_len;
};

struct runtime {
    const struct lang *lang;
    struct spawner *sp;     /* what started it, and signals it */
    pid_t pid;              /* 0 when not running */
    bool reaped;            /* the driver process was waited for */
    int ctl;                /* control socket, -1 when closed */
    int code_in;            /* RT_SHELL: write end of the driver's stdin */
    int tty;                /* RT_SHELL: master of the shell's terminal (shell_terminal),
                             * non-blocking; what arrives is read and dropped */
    struct pipe_in out[2];  /* stdout, stderr */
    struct buf in;          /* control bytes not yet handled */
    size_t scan_from;       /* where the newline search in `in` resumes */
    struct buf pending;     /* requests not yet written */
    char *version;          /* from the ready record */
    char death[128];        /* why it ended */
};

/* ---- lifetime ----------------------------------------------------------- */

struct runtime *
runtime_new(const struct lang *lang)
{
    struct runtime *rt = calloc(1, sizeof *rt);

    if (!rt)
        return NULL;
    rt->lang = lang;
    rt->ctl = rt->code_in = rt->tty = rt->out[0].fd = rt->out[1].fd = -1;
    rt->out[0].name = "stdout";
    rt->out[1].name = "stderr";
    rt->reaped = true;
    return rt;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void
close_all(struct runtime *rt)
{
    close_fd(&rt->ctl);
    close_fd(&rt->code_in);
    close_fd(&rt->tty);
    close_fd(&rt->out[0].fd);
    close_fd(&rt->out[1].fd);
}

void
runtime_kill(struct runtime *rt)
{
    if (rt->pid > 0 && !rt->reaped)
        rt->sp->signal(rt->sp, rt->pid, SIGKILL);
}

/* Waits for a SIGKILLed child, a second at most: one stuck in the kernel
 * (a hung filesystem) is left to the loop's reaping, never waited for. */
static void
reap_bounded(pid_t pid)
{
    for (int i = 0; i < 100; i++) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r != 0 && !(r < 0 && errno == EINTR))
            return;
        usleep(10000);
    }
    log_warn("driver %ld did not end within a second of SIGKILL", (long)pid);
}

void
runtime_destroy(struct runtime **rtp)
{
    if (!rtp || !*rtp)
        return;
    struct runtime *rt = *rtp;
    runtime_kill(rt);
    if (rt->pid > 0 && !rt->reaped && rt->sp == spawn_plain())
        reap_bounded(rt->pid); /* the box's init reaps its own */
    close_all(rt);
    buf_free(&rt->in);
    buf_free(&rt->pending);
    free(rt->version);
    free(rt);
    *rtp = NULL;
}

#define BOX_PATH "/usr/local/bin:/usr/bin:/bin"

/* What every driver gets, in or out of the box. */
static const char *const driver_vars[] = {
    "CELLGATE_DRIVER=1", "CELLGATE_CONTROL_FD=3", "PAGER=cat", "GIT_PAGER=cat", "TERM=dumb",
};

/* Appends the NULL-terminated list vars to env (at *k), replacing an entry
 * of the same name already there. */
static void
env_add(char **env, size_t *k, const char *const *vars)
{
    for (; vars && *vars; vars++) {
        size_t name = strcspn(*vars, "=") + 1, i;
        for (i = 0; i < *k; i++)
            if (strncmp(env[i], *vars, name) == 0)
                break;
        env[i] = (char *)*vars;
        if (i == *k)
            (*k)++;
    }
}

char **
runtime_env(const struct rt_place *where, const char *const *extra)
{
    static char home_var[256], path_var[4200], display_var[4200];
    static const char *const base[] = {
        home_var, "PATH=" BOX_PATH, "LANG=C.UTF-8", "USER=user",
        "LOGNAME=user", "SHELL=/bin/bash", "TMPDIR=/tmp", "HOSTNAME=cellgate",
        "XDG_CACHE_HOME=/tmp/.cache", /* caches stay out of /mnt/data */
        NULL,
    };
    size_t n = 0, k = 0, n_extra = 0;

    while (!where->home && environ[n])
        n++;
    /* A gateway's KERNEL_* launch variables, when the operator lets them in
     * (what a client sends never reaches the box unasked). */
    const char *in_box = getenv("CELLGATE_KERNEL_ENV_IN_BOX");
    bool pass_kernel = where->home && in_box && strcmp(in_box, "1") == 0;
    size_t n_kernel = 0;
    for (size_t i = 0; pass_kernel && environ[i]; i++)
        n_kernel += strncmp(environ[i], "KERNEL_", 7) == 0;
    while (extra && extra[n_extra])
        n_extra++;
    for (size_t i = 0; where->env && where->env[i]; i++)
        n_extra++;
    char **env = calloc(n + sizeof base / sizeof base[0] + n_extra + n_kernel + 4,
                       sizeof *env);
    if (!env)
        return NULL;
    if (where->home) {
        /* The box's environment, from scratch: nothing of the kernel's or
         * the host's leaks in. */
        snprintf(home_var, sizeof home_var, "HOME=%s", where->home);
        env_add(env, &k, base);
    } else {
        /* Without the box: ours, less the Jupyter launcher's and our own. */
        static const char *const lang[] = { "LANG=C.UTF-8", NULL };
        env_add(env, &k, lang);
        for (size_t i = 0; i < n; i++) {
            const char *e = environ[i], *one[] = { e, NULL };
            if (strncmp(e, "JPY_", 4) != 0 && strncmp(e, "CELLGATE_", 9) != 0)
                env_add(env, &k, one);
        }
    }
    /* cellgate-display: its directory first in PATH, and its socket. */
    const char *old_path = where->home ? BOX_PATH : getenv("PATH");
    const char *display[3] = { NULL }, **d = display;
    if (where->bin_dir) {
        snprintf(path_var, sizeof path_var, "PATH=%s%s%s", where->bin_dir,
                 old_path ? ":" : "", old_path ? old_path : "");
        *d++ = path_var;
    }
    if (where->display_socket) {
        snprintf(display_var, sizeof display_var, "CELLGATE_DISPLAY_SOCKET=%s",
                 where->display_socket);
        *d++ = display_var;
    }
    env_add(env, &k, display);
    for (size_t i = 0; n_kernel && environ[i]; i++) {
        const char *one[] = { environ[i], NULL };
        if (strncmp(environ[i], "KERNEL_", 7) == 0)
            env_add(env, &k, one);
    }
    env_add(env, &k, where->env);
    env_add(env, &k, extra);
    env[k] = NULL;
    return env;
}

/* Queues the start-up payload of a bootstrapped driver: two 16-digit hex
 * lengths, the compiled driver, its source (PROTOCOL.md, "Start-up"). */
static int
queue_preload(struct runtime *rt, const char *driver, char *err, size_t errlen)
{
    char name[64], head[33];
    size_t clen, slen;
    const char *src = drivers_source(driver, &slen);

    snprintf(name, sizeof name, "%s-compiled", driver);
    const char *compiled = drivers_source(name, &clen);
    if (!src || !compiled)
        return cg_fail(err, errlen, CG_ENOTFOUND, "no embedded driver %s", driver);
    snprintf(head, sizeof head, "%016zx%016zx", clen, slen);
    if (buf_add(&rt->pending, head, 32) != CG_OK || buf_add(&rt->pending, compiled, clen) != CG_OK
        || buf_add(&rt->pending, src, slen) != CG_OK)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    return CG_OK;
}

static int
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/*
 * The start-up stderr of a shell driver: the slave of a new pseudo-terminal,
 * whose master goes to *master (held while the shell runs; what is written
 * to the terminal is read and dropped, tty_drop, so no writer ever blocks on
 * it), or /dev/null where no pseudo-terminal can be had. An interactive bash takes a
 * copy of its start-up stderr as its terminal, and after a job dies of a
 * signal it restores that terminal's settings; on /dev/null that fails and
 * bash prints "tcsetattr: Inappropriate ioctl for device" into the cell's
 * stderr. A terminal takes the settings, and keeps bash's start-up chatter
 * (its default prompt, "no job control") out of the cell as /dev/null did.
 * Returns the descriptor (close-on-exec) or -1 with errno set.
 */
static int
shell_terminal(int *master)
{
    int slave;

    if (terminal_open(master, &slave, O_NONBLOCK) == CG_OK)
        return slave;
    log_debug("no terminal for the shell (%s): its stderr starts on /dev/null",
              strerror(errno));
    return open("/dev/null", O_RDWR | O_CLOEXEC);
}

int
runtime_start(struct runtime *rt, const struct rt_place *where, char *err, size_t errlen)
{
    const struct lang *l = rt->lang;
    int sv[2] = { -1, -1 }, po[2] = { -1, -1 }, pe[2] = { -1, -1 }, pi[2] = { -1, -1 };
    int devnull = -1, tty = -1, term = -1, rc;
    size_t srclen, argc = 0;
    const char *src = drivers_source(l->driver, &srclen);
    const char *argv[16];
    char **env = NULL;

    if (!src)
        return cg_fail(err, errlen, CG_ENOTFOUND, "no driver for %s", l->name);
    while (l->argv[argc] && argc < 15) {
        argv[argc] = strcmp(l->argv[argc], "@DRIVER@") == 0 ? src : l->argv[argc];
        argc++;
    }
    argv[argc] = NULL;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(po, O_CLOEXEC) < 0
        || pipe2(pe, O_CLOEXEC) < 0 || pipe2(pi, O_CLOEXEC) < 0
        || (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0
        || (l->kind == RT_SHELL && (term = shell_terminal(&tty)) < 0)) {
        rc = cg_fail(err, errlen, CG_ESYS, "creating the driver's pipes: %s", strerror(errno));
        goto out;
    }
    const char *extra[sizeof driver_vars / sizeof driver_vars[0] + 3], **e = extra;
    for (size_t i = 0; i < sizeof driver_vars / sizeof driver_vars[0]; i++)
        *e++ = driver_vars[i];
    /* The operator's choice of the Python driver's hand-written fallback
     * over IPython's shell (python.py): the one CELLGATE_ variable let in. */
    const char *plain = getenv("CELLGATE_PYTHON_IPYTHON");
    if (plain && strcmp(plain, "0") == 0)
        *e++ = "CELLGATE_PYTHON_IPYTHON=0";
    if (l->driver_env)
        *e++ = l->driver_env;
    *e = NULL;
    env = runtime_env(where, extra);
    if (!env) {
        rc = cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        goto out;
    }
    struct spawn_fd fds_jsonl[] = { { 0, devnull }, { 1, po[1] }, { 2, pe[1] }, { 3, sv[1] } };
    struct spawn_fd fds_shell[] = {
        { 0, pi[0] }, { 1, po[1] }, { 2, term }, { 3, sv[1] }, { 4, pe[1] },
    };
    struct spawn_spec spec = {
        .argv = argv, .envp = (const char *const *)env, .cwd = where->cwd,
        .fds = l->kind == RT_SHELL ? fds_shell : fds_jsonl,
        .n_fds = l->kind == RT_SHELL ? 5 : 4,
    };
    rc = where->spawner->start(where->spawner, &spec, &rt->pid, err, errlen);
    if (rc != CG_OK)
        goto out;
    rt->sp = where->spawner;
    rt->reaped = false;
    rt->death[0] = '\0';
    rt->ctl = sv[0];
    rt->out[0].fd = po[0];
    rt->out[1].fd = pe[0];
    rt->out[0].carry_len = rt->out[1].carry_len = 0;
    rt->in.len = rt->pending.len = rt->scan_from = 0;
    sv[0] = po[0] = pe[0] = -1;
    if (l->kind == RT_SHELL) {
        rt->code_in = pi[1];
        rt->tty = tty;
        pi[1] = tty = -1;
        /* A shell driver reads its own source first. */
        rc = buf_add(&rt->pending, src, srclen);
        if (rc == CG_OK)
            rc = buf_add(&rt->pending, "\n", 1);
    } else if (l->preload) {
        rc = queue_preload(rt, l->preload, err, errlen);
    }
    set_nonblock(rt->ctl);
    set_nonblock(rt->out[0].fd);
    set_nonblock(rt->out[1].fd);
    if (rt->code_in >= 0)
        set_nonblock(rt->code_in);
out:
    free(env);
    close_fd(&sv[0]);
    close_fd(&sv[1]);
    close_fd(&po[0]);
    close_fd(&po[1]);
    close_fd(&pe[0]);
    close_fd(&pe[1]);
    close_fd(&pi[0]);
    close_fd(&pi[1]);
    close_fd(&devnull);
    close_fd(&tty);
    close_fd(&term);
    return rc;
}

const struct lang *
runtime_lang(const struct runtime *rt)
{
    return rt->lang;
}

bool
runtime_alive(const struct runtime *rt)
{
    return rt->pid > 0 && !rt->reaped;
}

bool
runtime_hung_up(const struct runtime *rt)
{
    struct pollfd p = { rt->ctl, POLLRDHUP, 0 };

    if (rt->ctl < 0)
        return runtime_alive(rt);
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

pid_t
runtime_pid(const struct runtime *rt)
{
    return runtime_alive(rt) ? rt->pid : 0;
}

const char *
runtime_version(const struct runtime *rt)
{
    return rt->version;
}

const char *
runtime_death(const struct runtime *rt)
{
    return rt->death[0] ? rt->death : "is not running";
}

void
runtime_interrupt(struct runtime *rt)
{
    if (runtime_alive(rt))
        rt->sp->signal(rt->sp, rt->pid, SIGINT);
}

/* ---- reading ------------------------------------------------------------ */

/* Hands len bytes of stream output to sink, cleaned to valid UTF-8. */
static int
deliver_text(struct runtime *rt, const struct rt_sink *sink, const char *name, const char *text,
             size_t len)
{
    size_t n;
    const char *clean = utf8_clean(text, len, &n);

    if (!clean)
        return CG_ENOMEM;
    sink->stream(sink->ctx, rt, name, clean, n);
    if (clean != text)
        free((char *)clean);
    return CG_OK;
}

/* Reads what one raw pipe holds (up to a bound) and hands it on as UTF-8. */
static void
pipe_read(struct pipe_in *p, struct runtime *rt, const struct rt_sink *sink, int rounds)
{
    static char raw[READ_CHUNK + 4];

    for (int r = 0; r < rounds && p->fd >= 0; r++) {
        memcpy(raw, p->carry, p->carry_len);
        ssize_t n = read(p->fd, raw + p->carry_len, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                /* EOF: flush a dangling cut sequence as replacement chars. */
                if (p->carry_len && deliver_text(rt, sink, p->name, p->carry,
                                                 p->carry_len) != CG_OK)
                    log_warn("out of memory: %s output lost", p->name);
                p->carry_len = 0;
                close_fd(&p->fd);
            }
            return;
        }
        size_t total = p->carry_len + (size_t)n;
        size_t keep = total - utf8_complete_prefix(raw, total);
        if (total > keep && deliver_text(rt, sink, p->name, raw, total - keep) != CG_OK)
            log_warn("out of memory: %s output lost", p->name);
        memcpy(p->carry, raw + total - keep, keep);
        p->carry_len = keep;
        if ((size_t)n < READ_CHUNK)
            return;
    }
}

void
runtime_drain(struct runtime *rt, const struct rt_sink *sink)
{
    /* Bounded, so a process flooding its pipe cannot starve the kernel. */
    for (int i = 0; i < 2; i++)
        pipe_read(&rt->out[i], rt, sink, 64);
}

static int ctl_read(struct runtime *rt, const struct rt_sink *sink, char *err, size_t errlen);

int
runtime_catch_up(struct runtime *rt, const struct rt_sink *sink, char *err, size_t errlen)
{
    int rc = ctl_read(rt, sink, err, errlen);

    if (rc == CG_OK)
        runtime_drain(rt, sink);
    return rc;
}

/*
 * Handles the record at the front of p[0..avail) if it is complete: a JSON
 * header line, and for {"t":"stream","bytes":N} the N raw bytes after it.
 * Returns the bytes consumed, 0 when more input is needed, or -1 with err
 * filled when the driver broke the protocol.
 */
static long
take_record(struct runtime *rt, const char *p, size_t avail, const char *nl,
            const struct rt_sink *sink, char *err, size_t errlen)
{
    size_t hlen = (size_t)(nl - p), used = hlen + 1;
    json_error_t jerr;
    json_t *rec = json_loadb(p, hlen, 0, &jerr);
    const char *t = json_string_value(json_object_get(rec, "t"));
    long rc = -1;

    if (!rec || !json_is_object(rec) || !t) {
        cg_fail(err, errlen, CG_EINVAL, "%s driver sent a bad record: %s", rt->lang->name,
                rec ? "no \"t\"" : jerr.text);
        goto out;
    }
    if (strcmp(t, "stream") == 0) {
        const char *name = json_string_value(json_object_get(rec, "name"));
        json_t *text = json_object_get(rec, "text"), *bytes = json_object_get(rec, "bytes");
        if (!name || (strcmp(name, "stdout") != 0 && strcmp(name, "stderr") != 0)
            || (!json_is_string(text) && !json_is_integer(bytes))) {
            cg_fail(err, errlen, CG_EINVAL, "%s driver sent a bad stream record", rt->lang->name);
            goto out;
        }
        if (json_is_integer(bytes)) {
            json_int_t n = json_integer_value(bytes);
            if (n < 0 || n > (json_int_t)RT_MAX_LINE) {
                cg_fail(err, errlen, CG_ETOOBIG, "%s driver sent a stream of %lld bytes",
                        rt->lang->name, (long long)n);
                goto out;
            }
            if (avail - used < (size_t)n) {
                rc = 0; /* the payload is still on its way */
                goto out;
            }
            if (deliver_text(rt, sink, name, nl + 1, (size_t)n) != CG_OK) {
                cg_fail(err, errlen, CG_ENOMEM, "out of memory");
                goto out;
            }
            used += (size_t)n;
        } else if (deliver_text(rt, sink, name, json_string_value(text),
                                json_string_length(text)) != CG_OK) {
            cg_fail(err, errlen, CG_ENOMEM, "out of memory");
            goto out;
        }
    } else if (strcmp(t, "ready") == 0) {
        const char *v = json_string_value(json_object_get(rec, "language_version"));
        free(rt->version);
        rt->version = v ? strdup(v) : NULL;
    } else if (strcmp(t, "sync") == 0) {
        /* The driver saw raw output waiting in the pipes: it came first. */
        runtime_drain(rt, sink);
    } else {
        if (strcmp(t, "done") == 0)
            runtime_drain(rt, sink); /* a cell's output is complete at its end */
        sink->record(sink->ctx, rt, rec);
    }
    rc = (long)used;
out:
    json_decref(rec);
    return rc;
}

/* Reads the control socket and handles every complete record. */
static int
ctl_read(struct runtime *rt, const struct rt_sink *sink, char *err, size_t errlen)
{
    for (int rounds = 0; rounds < 64 && rt->ctl >= 0; rounds++) {
        if (buf_reserve(&rt->in, READ_CHUNK) != CG_OK)
            return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        /* Straight into the buffer: large output is copied once less. */
        ssize_t n = read(rt->ctl, rt->in.data + rt->in.len, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            close_fd(&rt->ctl);
            break;
        }
        rt->in.len += (size_t)n;
        rt->in.data[rt->in.len] = '\0';
        size_t start = 0;
        for (;;) {
            /* Resume the newline search where it stopped: a long line
             * arriving in pieces is scanned once, not once per piece. */
            const char *from = rt->in.data + start + rt->scan_from;
            const char *nl = memchr(from, '\n', rt->in.len - start - rt->scan_from);
            if (!nl) {
                rt->scan_from = rt->in.len - start;
                break;
            }
            long used = take_record(rt, rt->in.data + start, rt->in.len - start, nl, sink, err,
                                    errlen);
            if (used < 0)
                return CG_EINVAL;
            if (used == 0) { /* header seen, payload pending */
                rt->scan_from = (size_t)(nl - (rt->in.data + start));
                break;
            }
            start += (size_t)used;
            rt->scan_from = 0;
        }
        buf_consume(&rt->in, start);
        if (rt->in.len > RT_MAX_LINE + 4096)
            return cg_fail(err, errlen, CG_ETOOBIG, "%s driver sent a record over %u bytes",
                           rt->lang->name, RT_MAX_LINE);
        if ((size_t)n < READ_CHUNK)
            break;
    }
    return CG_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int
out_fd(const struct runtime *rt)
{
    return rt->lang->kind == RT_SHELL ? rt->code_in : rt->ctl;
}

static void
flush_pending(struct runtime *rt)
{
    int fd = out_fd(rt);

    while (rt->pending.len && fd >= 0) {
        ssize_t n = write(fd, rt->pending.data, rt->pending.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN) {
                log_warn("writing to the %s driver: %s", rt->lang->name, strerror(errno));
                rt->pending.len = 0;
            }
            return;
        }
        buf_consume(&rt->pending, (size_t)n);
    }
}

/* Reads and drops what was written to a shell's terminal (bash's start-up
 * chatter, or a cell's `>&255`), a bounded amount per turn; closes our end
 * once the terminal is hung up (no process has it open any more). */
static void
tty_drop(struct runtime *rt)
{
    char scratch[4096];

    for (int i = 0; i < 16; i++) {
        ssize_t n = read(rt->tty, scratch, sizeof scratch);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        close_fd(&rt->tty); /* EIO: hung up */
        return;
    }
}

size_t
runtime_poll_items(const struct runtime *rt, zmq_pollitem_t *items)
{
    size_t n = 0;
    int ofd = out_fd(rt);

    if (rt->ctl >= 0)
        items[n++] = (zmq_pollitem_t){ .fd = rt->ctl, .events = ZMQ_POLLIN };
    for (int i = 0; i < 2; i++)
        if (rt->out[i].fd >= 0)
            items[n++] = (zmq_pollitem_t){ .fd = rt->out[i].fd, .events = ZMQ_POLLIN };
    if (rt->tty >= 0)
        items[n++] = (zmq_pollitem_t){ .fd = rt->tty, .events = ZMQ_POLLIN };
    if (rt->pending.len && ofd >= 0) {
        if (ofd == rt->ctl)
            items[0].events |= ZMQ_POLLOUT;
        else
            items[n++] = (zmq_pollitem_t){ .fd = ofd, .events = ZMQ_POLLOUT };
    }
    return n;
}

int
runtime_service(struct runtime *rt, const zmq_pollitem_t *items, size_t n,
                const struct rt_sink *sink, char *err, size_t errlen)
{
    int rc = CG_OK;

    /* Records first, in the order the driver wrote them; raw pipe output
     * after (PROTOCOL.md, "Ordering"). */
    for (size_t i = 0; i < n; i++) {
        if (items[i].revents & ZMQ_POLLOUT)
            flush_pending(rt);
        if (items[i].fd == rt->ctl && (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
            rc = ctl_read(rt, sink, err, errlen);
    }
    for (size_t i = 0; i < n && rc == CG_OK; i++) {
        if (!(items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) || items[i].fd < 0)
            continue;
        for (int k = 0; k < 2; k++)
            if (items[i].fd == rt->out[k].fd)
                pipe_read(&rt->out[k], rt, sink, 4);
        if (items[i].fd == rt->tty)
            tty_drop(rt);
    }
    return rc;
}

void
runtime_exited(struct runtime *rt, int status, const struct rt_sink *sink)
{
    char err[256];

    rt->reaped = true;
    if (WIFSIGNALED(status))
        snprintf(rt->death, sizeof rt->death, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(rt->death, sizeof rt->death, "exited with status %d", WEXITSTATUS(status));
    /* Whatever it said before dying is still worth showing. */
    if (ctl_read(rt, sink, err, sizeof err) != CG_OK)
        log_warn("%s", err);
    runtime_drain(rt, sink);
    close_all(rt);
    rt->pending.len = 0;
    rt->in.len = rt->scan_from = 0;
}

/* ---- requests ----------------------------------------------------------- */

static int
send_json(struct runtime *rt, json_t *obj)
{
    char *s;
    int rc;

    if (!obj)
        return CG_ENOMEM;
    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return CG_ENOMEM;
    rc = buf_add(&rt->pending, s, strlen(s));
    free(s);
    if (rc == CG_OK)
        rc = buf_add(&rt->pending, "\n", 1);
    flush_pending(rt);
    return rc;
}

/* Appends s as a bash $'...' word: every byte but [A-Za-z0-9] as \xHH. */
static int
add_bash_word(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    char esc[4] = { '\\', 'x', 0, 0 };
    int rc = buf_add(b, " $'", 3);

    for (const unsigned char *p = (const unsigned char *)s; rc == CG_OK && *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
            rc = buf_add(b, p, 1);
        } else {
            esc[2] = hex[*p >> 4];
            esc[3] = hex[*p & 15];
            rc = buf_add(b, esc, 4);
        }
    }
    return rc == CG_OK ? buf_add(b, "'", 1) : rc;
}

static int
add_str(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int
runtime_execute(struct runtime *rt, const struct rt_exec *x)
{
    if (rt->lang->kind == RT_JSONL)
        return send_json(rt, json_pack("{s:s, s:s, s:b, s:b, s:b, s:O, s:i, s:b}", "t", "execute",
                                       "code", x->code, "silent", x->silent, "store_history",
                                       x->store_history, "allow_stdin", x->allow_stdin,
                                       "user_expressions", x->user_expressions,
                                       "execution_count", x->execution_count, "color", x->color));

    /* Two lines: SIGINT drops the first, never the second (PROTOCOL.md). */
    struct buf *b = &rt->pending;
    const char *name;
    json_t *expr;
    int rc = add_str(b, x->allow_stdin ? "__cg_pre 1; eval" : "__cg_pre 0; eval");
    if (rc == CG_OK)
        rc = add_bash_word(b, x->code);
    if (rc == CG_OK)
        rc = add_str(b, " </dev/null\n__cg_done $?");
    json_object_foreach(x->user_expressions, name, expr) {
        if (rc == CG_OK && json_is_string(expr))
            rc = add_bash_word(b, name);
        if (rc == CG_OK && json_is_string(expr))
            rc = add_bash_word(b, json_string_value(expr));
    }
    if (rc == CG_OK)
        rc = add_str(b, "\n");
    flush_pending(rt);
    return rc;
}

int
runtime_request(struct runtime *rt, const char *type, const char *code, size_t cursor, int detail)
{
    char num[48];
    int rc;

    if (rt->lang->kind == RT_JSONL) {
        json_t *o = json_pack("{s:s, s:s}", "t", type, "code", code);
        if (o && strcmp(type, "is_complete") != 0)
            json_object_set_new(o, "cursor_pos", json_integer((json_int_t)cursor));
        if (o && strcmp(type, "inspect") == 0)
            json_object_set_new(o, "detail_level", json_integer(detail));
        return send_json(rt, o);
    }
    rc = add_str(&rt->pending, "__cg_");
    if (rc == CG_OK)
        rc = add_str(&rt->pending, type);
    if (rc == CG_OK)
        rc = add_bash_word(&rt->pending, code);
    if (strcmp(type, "is_complete") == 0)
        snprintf(num, sizeof num, "\n");
    else if (strcmp(type, "inspect") == 0)
        snprintf(num, sizeof num, " %zu %d\n", cursor, detail);
    else
        snprintf(num, sizeof num, " %zu\n", cursor);
    if (rc == CG_OK)
        rc = add_str(&rt->pending, num);
    flush_pending(rt);
    return rc;
}

int
runtime_comm(struct runtime *rt, const char *msg_type, json_t *content)
{
    if (rt->lang->kind != RT_JSONL)
        return CG_EINVAL;
    return send_json(rt, json_pack("{s:s, s:s, s:O}", "t", "comm", "msg_type", msg_type,
                                   "content", content));
}

int
runtime_input_reply(struct runtime *rt, const char *value)
{
    if (rt->lang->kind == RT_JSONL)
        return send_json(rt, json_pack("{s:s, s:s}", "t", "input_reply", "value", value));

    /* "#VALUE\n": one line, harmless as code if an interrupt raced it. */
    int rc = buf_add(&rt->pending, "#", 1);
    for (const char *p = value; rc == CG_OK && *p; p++)
        rc = buf_add(&rt->pending, *p == '\n' || *p == '\r' ? " " : p, 1);
    if (rc == CG_OK)
        rc = buf_add(&rt->pending, "\n", 1);
    flush_pending(rt);
    return rc;
}
