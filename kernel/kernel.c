/*
 * kernel.c - the Jupyter kernel's event loop (see kernel.h): it sets up the
 * channels, the box and the modules, polls, and dispatches; it is called
 * by no module. Everything sent to a client goes through chan.c; the
 * requests are served by handlers.c, runtimes by cell.c, the client's
 * tools by tools/ and cellgate-display by displayd.c.
 *
 * One thread serves everything except the heartbeat, which echoes in its
 * own thread so a busy kernel never looks dead. The loop polls control
 * first, then the runtimes' fds, then shell. A shell request that needs a
 * runtime or a tool stays in service until it is answered; meanwhile shell
 * is not read (Jupyter serialises shell requests) but control is, so
 * interrupt and shutdown always work.
 */
#include "kernel/kernel.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/connfile.h"
#include "common/log.h"
#include "kernel/cell.h"
#include "kernel/chan.h"
#include "kernel/displayd.h"
#include "kernel/handlers.h"
#include "kernel/history.h"
#include "kernel/site.h"
#include "kernel/tools/tools.h"
#include "sandbox/box.h"
#include "sandbox/spawn.h"

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
#include <unistd.h>
#include <zmq.h>

#define PARENT_CHECK_MS 1000

struct kernel {
    connfile_t conn;
    struct chan *chan;
    struct site site;
    struct history *hist;
    struct cells *cells;
    struct tools *tools;
    struct displayd *displayd;
    struct handlers h;
    int sigfd;
    pid_t ppid;                 /* the parent we die with */
    double parent_check_at;     /* when parent_gone looks again (clock_now) */
    bool prestart;              /* start the main runtime once the loop runs */
};

/* ---- processes ---------------------------------------------------------- */

/* The box's init is gone, and every process in the box with it: the
 * running cell and tool fail saying so, and the next cell builds a fresh
 * box (site_place) and says that the earlier state was lost. */
static void
box_gone(struct kernel *k, const char *why)
{
    site_lost(&k->site, why);
    cell_box_gone(k->cells);
    tools_box_gone(k->tools, "RuntimeUnavailable", k->site.error);
    displayd_box_gone(k->displayd);
    site_close(&k->site); /* last: the tools' processes were signalled through it */
}

/* Reaps every exited child: drivers, and orphans that were re-parented to
 * us (we are a child subreaper, so nothing a runtime starts escapes). */
static void
reap_children(struct kernel *k)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (k->site.box && pid == box_init_pid(k->site.box)) {
            box_gone(k, "its init exited");
            continue;
        }
        if (egress_exited(k->site.egress, pid, status))
            continue;
        if (!k->site.box && !k->site.error[0])
            cell_exited(k->cells, pid, status);
        tools_exited(k->tools, pid, status, false);
    }
}

/* A process started in the box ended (its init told us). */
static void
on_box_exit(void *ctx, pid_t pid, int status)
{
    struct kernel *k = ctx;

    cell_exited(k->cells, pid, status);
    tools_exited(k->tools, pid, status, true);
}

/* Reports every process that ended, now: the box's and our children. */
static void
reap_now(void *ctx)
{
    struct kernel *k = ctx;

    if (k->site.box && box_events(k->site.box, on_box_exit, k) != CG_OK)
        box_gone(k, "its init exited");
    else if (!k->site.box)
        reap_children(k);
}

static void
serve_signals(struct kernel *k)
{
    struct signalfd_siginfo si;

    while (read(k->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGINT:
            handlers_interrupt(&k->h); /* jupyter_client's interrupt_mode "signal" */
            break;
        case SIGCHLD:
            reap_children(k);
            break;
        default:
            log_info("signal %u: shutting down", si.ssi_signo);
            k->h.quit = true;
        }
    }
}

/* ---- set-up and tear-down ----------------------------------------------- */

static void
teardown(struct kernel *k)
{
    if (k->cells)
        cells_kill(k->cells);
    tools_destroy(&k->tools);
    egress_destroy(&k->site.egress);
    /* Everything started under us, orphans and disowned jobs included
     * (we are their subreaper), up to a second for them to die. */
    spawn_kill_descendants(1000);
    cells_destroy(&k->cells);
    site_destroy(&k->site);
    displayd_destroy(&k->displayd);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    chan_destroy(&k->chan);
    if (k->sigfd >= 0)
        close(k->sigfd);
    history_destroy(&k->hist);
    connfile_clear(&k->conn);
}

/* The kernel's id for the host directory of /mnt/data: the connection
 * file's name without "kernel-" and ".json" (what Jupyter calls the kernel
 * id), else this process's session id. */
static void
kernel_id(const char *connection_file, const char *session, char *out, size_t len)
{
    const char *base = strrchr(connection_file, '/');
    base = base ? base + 1 : connection_file;
    if (strncmp(base, "kernel-", 7) == 0)
        base += 7;
    size_t n = strcspn(base, ".");
    if (n == 0 || n > 64 || strchr(base, '/'))
        snprintf(out, len, "%s", session);
    else
        snprintf(out, len, "%.*s", (int)n, base);
}

/* Builds the box (unless the operator turned it off) and the site around
 * it; on failure the site remembers why, so every cell can say it (a
 * kernel never falls back to running code unboxed on its own). */
static void
make_site(struct kernel *k, const struct kernel_opts *opts)
{
    char id[80], data[4096], name[96], cache[4200], err[512] = "";
    struct box *box = NULL;
    struct box_opts bo = { 0 };

    if (!opts->no_sandbox) {
        kernel_id(opts->connection_file, chan_session(k->chan), id, sizeof id);
        snprintf(data, sizeof data, "%s/%s", opts->state_dir, id);
        snprintf(name, sizeof name, "kernel-%s", id);
        bo = (struct box_opts){ .data_dir = data, .keep_data = opts->keep_data, .name = name,
                                .limits = opts->limits, .registry = egress_wanted() };
        box = box_new(&bo, err, sizeof err);
        if (!box)
            log_error("%s", err);
    }
    site_init(&k->site, box, box || opts->no_sandbox ? NULL : err, &opts->limits);
    /* One artifact cache for the kernels of a host, beside their data. */
    snprintf(cache, sizeof cache, "%s/registry-cache", opts->state_dir);
    if (box && egress_wanted())
        k->site.egress = egress_new(id, cache);
    if (box) /* a box that dies is built again the same way */
        site_rebuildable(&k->site, &bo, egress_wanted() ? id : NULL, cache);
}

/* Blocks the signals we serve through a signalfd. Done before any thread
 * starts, so ZeroMQ's threads inherit the mask and never take them. */
static int
setup_signals(struct kernel *k)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    k->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return k->sigfd < 0 ? -1 : 0;
}

/* Sets up everything but the sockets; CG_OK or an error with err filled. */
static int
setup(struct kernel *k, const struct kernel_opts *opts, char *err, size_t errlen)
{
    if (connfile_load(opts->connection_file, &k->conn, err, errlen) != CG_OK)
        return CG_EINVAL;
    k->chan = chan_new(&k->conn, opts->output_limit, err, errlen);
    k->hist = history_new();
    if (!k->chan || !k->hist)
        return k->chan ? cg_fail(err, errlen, CG_ENOMEM, "out of memory") : CG_EINVAL;
    chan_listen_early(k->chan, &k->conn); /* clients may connect while the box is built */
    make_site(k, opts);
    struct cells_opts co = { .chan = k->chan, .site = &k->site, .hist = k->hist,
                             .primary = opts->primary, .color = opts->color,
                             .reap = reap_now, .reap_ctx = k };
    k->cells = cells_new(&co);
    k->tools = tools_new(k->chan, &k->site);
    if (!k->cells || !k->tools)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    char derr[512];
    k->displayd = displayd_new(k->chan, &k->site,
                               (struct displayd_hook){ cell_catch_up, k->cells }, derr,
                               sizeof derr);
    if (!k->displayd)
        log_warn("cellgate-display will not work: %s", derr);
    displayd_place(k->displayd, &k->site.place);
    k->h = (struct handlers){ .chan = k->chan, .cells = k->cells, .tools = k->tools,
                              .hist = k->hist, .primary = opts->primary };
    if (setup_signals(k) < 0)
        return cg_fail(err, errlen, CG_ESYS, "cannot set up signal handling: %s",
                       strerror(errno));
    return CG_OK;
}

/* True when the process that started us is gone (we were re-parented).
 * Never when started with CELLGATE_OUTLIVE_PARENT=1: `cellgate serve` sets
 * it, so its kernels keep running across a gateway restart and are
 * re-adopted (k->ppid is 0 then). */
static bool
parent_gone(struct kernel *k)
{
    /* at most once per PARENT_CHECK_MS: the loop turns several times a cell */
    double now = clock_now();
    if (k->ppid <= 1 || now < k->parent_check_at)
        return false;
    k->parent_check_at = now + PARENT_CHECK_MS / 1000.0;
    return getppid() != k->ppid;
}

/* ---- the loop ----------------------------------------------------------- */

/* Starts the main language's runtime ahead of the first cell, once. */
static void
prestart(struct kernel *k)
{
    if (!k->prestart)
        return;
    k->prestart = false;
    cell_prestart(k->cells);
}

/* The earlier of two deadlines (monotonic seconds, 0: none). */
static double
earlier(double a, double b)
{
    return !a || (b && b < a) ? b : a;
}

/* Fixed poll items, in the order the loop serves them. */
enum { IT_CONTROL, IT_SIGNALS, IT_STDIN, IT_SHELL, IT_IOPUB, IT_BOX, IT_EGRESS, IT_FIXED };
#define LOOP_POLL_ITEMS (IT_FIXED + CELL_POLL_ITEMS + DISPLAYD_POLL_ITEMS + TOOLS_POLL_ITEMS)

static void
loop(struct kernel *k)
{
    zmq_pollitem_t items[LOOP_POLL_ITEMS];
    struct handlers *h = &k->h;

    while (!h->quit) {
        /* Tool deadlines first: a job that ends here polls nothing below. */
        double deadline = earlier(tools_tick(k->tools), cell_tick(k->cells));
        bool shell_open = !handlers_busy(h) && !chan_backlog_len(k->chan);
        struct box *box = k->site.box;
        items[IT_CONTROL] = (zmq_pollitem_t){ .socket = chan_socket(k->chan, CH_CONTROL),
                                              .events = ZMQ_POLLIN };
        items[IT_SIGNALS] = (zmq_pollitem_t){ .fd = k->sigfd, .events = ZMQ_POLLIN };
        items[IT_STDIN] = (zmq_pollitem_t){ .socket = chan_socket(k->chan, CH_STDIN),
                                            .events = cell_input_waiting(k->cells) ? ZMQ_POLLIN
                                                                                   : 0 };
        items[IT_SHELL] = (zmq_pollitem_t){ .socket = chan_socket(k->chan, CH_SHELL),
                                            .events = shell_open ? ZMQ_POLLIN : 0 };
        items[IT_IOPUB] = (zmq_pollitem_t){ .socket = chan_socket(k->chan, CH_IOPUB),
                                            .events = ZMQ_POLLIN };
        items[IT_BOX] = (zmq_pollitem_t){ .fd = box ? box_fd(box) : -1,
                                          .events = box ? ZMQ_POLLIN : 0 };
        /* A package manager's first connection starts the registry gateway. */
        int egress_fd = egress_poll_fd(k->site.egress);
        items[IT_EGRESS] = (zmq_pollitem_t){ .fd = egress_fd,
                                             .events = egress_fd >= 0 ? ZMQ_POLLIN : 0 };
        size_t n = IT_FIXED;
        size_t cells_at = n, cells_n = cell_poll_items(k->cells, &items[n]);
        n += cells_n;
        size_t disp_at = n, disp_n = displayd_poll_items(k->displayd, &items[n]);
        n += disp_n;
        size_t tools_at = n, tools_n = tools_poll_items(k->tools, &items[n]);
        n += tools_n;

        bool ready = (chan_backlog_len(k->chan) && !handlers_busy(h)) || k->prestart;
        long wait_ms = ready ? 0 : PARENT_CHECK_MS;
        long disp_ms = displayd_wait_ms(k->displayd);
        if (disp_ms >= 0 && disp_ms < wait_ms)
            wait_ms = disp_ms;
        if (deadline) {
            double left = deadline - clock_now();
            wait_ms = left <= 0 ? 0 : left * 1000 < wait_ms ? (long)(left * 1000) + 1 : wait_ms;
        }
        int rc = zmq_poll(items, (int)n, wait_ms);
        if (rc < 0 && errno != EINTR) {
            log_error("zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (parent_gone(k)) {
            log_info("parent process is gone: shutting down");
            break;
        }
        if (rc <= 0) {
            displayd_service(k->displayd, NULL, 0); /* drops clients whose time is up */
            handlers_serve_backlog(h);
            prestart(k);
            continue;
        }
        if (items[IT_CONTROL].revents & ZMQ_POLLIN)
            for (int i = 0; i < 16 && !h->quit; i++) /* several, but bounded */
                handlers_dispatch(h, CH_CONTROL);
        if (items[IT_SIGNALS].revents & ZMQ_POLLIN)
            serve_signals(k);
        if (items[IT_IOPUB].revents & ZMQ_POLLIN)
            chan_greet_subscribers(k->chan);
        if (box && box == k->site.box && (items[IT_BOX].revents & ZMQ_POLLIN)
            && box_events(box, on_box_exit, k) != CG_OK)
            box_gone(k, "its init exited");
        if (items[IT_EGRESS].revents & ZMQ_POLLIN)
            egress_wake(k->site.egress);
        if (cells_n && !h->quit)
            cell_service(k->cells, &items[cells_at]);
        /* After the runtimes: a display follows what the cell printed. */
        displayd_service(k->displayd, &items[disp_at], disp_n);
        if (tools_n && !h->quit)
            tools_service(k->tools, &items[tools_at], tools_n);
        if ((items[IT_STDIN].revents & ZMQ_POLLIN) && cell_input_waiting(k->cells))
            handlers_serve_stdin(h);
        handlers_serve_backlog(h);
        if ((items[IT_SHELL].revents & ZMQ_POLLIN) && !handlers_busy(h)
            && !chan_backlog_len(k->chan) && !h->quit)
            handlers_dispatch(h, CH_SHELL);
        prestart(k);
    }
}

int
kernel_run(const struct kernel_opts *opts)
{
    struct kernel k = { .sigfd = -1 };
    char err[512];
    int status = 1;

    log_init();
    k.ppid = getppid();
    const char *jpy = getenv("JPY_PARENT_PID");
    if (jpy && strtol(jpy, NULL, 10) > 1)
        k.ppid = (pid_t)strtol(jpy, NULL, 10);
    const char *outlive = getenv("CELLGATE_OUTLIVE_PARENT");
    if (outlive && strcmp(outlive, "1") == 0)
        k.ppid = 0;
    if (langs_count() > CELL_MAX_LANGS) {
        fprintf(stderr, "cellgate: too many languages\n");
        return 1;
    }
    /* Orphans of runtimes come back to us, so shutdown can end them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* Memory back to the system soon after a stream's megabyte blocks
     * are freed: one arena for all our threads (ZeroMQ's two, the
     * heartbeat's, which hardly allocate and never contend), whose heap
     * top goes back at 128 KiB free (glibc's default, which it otherwise
     * raises with the largest block freed). Blocks up to 32 MiB come from
     * that heap: mapping each on its own cost a fifth of the stream's
     * throughput in page faults. After kernelbench's 20 MB stream the
     * kernel kept 1.4-4.9 MB (median 2.6) of heap, now 1.3-1.5 (one run
     * in ten 3.8). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 1);

    if (setup(&k, opts, err, sizeof err) != CG_OK
        || chan_open(k.chan, &k.conn, err, sizeof err) != CG_OK) {
        fprintf(stderr, "cellgate: %s\n", err);
        goto out;
    }
    /* The main language's driver starts in the loop's first turn, after
     * any kernel_info already waiting, so the first cell need not wait. */
    k.prestart = true;
    loop(&k);
    status = 0;
out:
    teardown(&k);
    return status;
}
