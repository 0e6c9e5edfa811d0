/*
 * fuzz_gwhttp.c - libFuzzer target for the gateway's HTTP side: the bytes
 * are one client connection to libmicrohttpd's request parser and our
 * routes in gateway/http.c (token auth, routing, JSON bodies, CORS, the
 * WebSocket upgrade's checks), through a socketpair handed to a server
 * without a listen socket (http_opts.no_listen).
 *
 * Input: byte 0 picks the server's options (bits 0-1: allowed origin none,
 * "*", "http://app.example" or none; bit 2: base URL "/gw"); the rest is
 * what the client sends before it shuts its side down. The token is
 * "fuzztoken". Kernelspecs "cellgate" and "python" exist with an empty
 * argv, so POST /api/kernels reaches kernels_start() and fails before any
 * process starts: no kernel ever runs, and every route of a kernel answers
 * 404. Whatever the server writes back must be HTTP.
 */
#include "common/cgerr.h"
#include "common/log.h"
#include "gateway/channels.h"
#include "gateway/http.h"
#include "gateway/kernels.h"
#include "gateway/specs.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "fuzztoken"
#define MAX_ROUNDS 4096 /* of the server's loop per input; each moves bytes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What every input shares: kernelspecs, an empty kernel table, no clients. */
static struct {
    char dir[64];                 /* kernelspecs and connection files */
    struct specs *specs;
    void *zctx;
    struct channels *ch;
    struct kernels *ks;
} fx;

static const char *const spec_names[] = { "cellgate", "python" };
static const char *const spec_files[] = { "kernel.json", "logo-64x64.png" };
/* What `cellgate install --prefix DIR/specs` would create, outer first. */
static const char *const spec_dirs[] = { "/specs", "/specs/share", "/specs/share/jupyter",
                                         "/specs/share/jupyter/kernels" };
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* DIR/specs/share/jupyter/kernels/NAME[/FILE] */
static void
spec_path(char *out, size_t len, const char *name, const char *file)
{
    snprintf(out, len, "%s%s/%s%s%s", fx.dir, spec_dirs[N_OF(spec_dirs) - 1], name,
             file ? "/" : "", file ? file : "");
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort(); /* the fixture, not the code under test */
}

static void
fixture_free(void)
{
    char path[256];

    kernels_destroy(&fx.ks);
    channels_destroy(&fx.ch);
    specs_destroy(&fx.specs);
    if (fx.zctx)
        zmq_ctx_term(fx.zctx);
    for (size_t i = 0; i < N_OF(spec_names); i++) {
        for (size_t j = 0; j < N_OF(spec_files); j++) {
            spec_path(path, sizeof path, spec_names[i], spec_files[j]);
            unlink(path);
        }
        spec_path(path, sizeof path, spec_names[i], NULL);
        rmdir(path);
    }
    for (size_t i = N_OF(spec_dirs); i-- > 0;) {
        snprintf(path, sizeof path, "%s%s", fx.dir, spec_dirs[i]);
        rmdir(path);
    }
    rmdir(fx.dir);
}

/* Once: the kernelspecs on disk (loaded by specs_load() with /bin/true
 * standing in for `cellgate install`), the kernel table, quiet logs. */
static void
fixture(void)
{
    char path[256], err[256];

    if (fx.ks)
        return;
    /* The access log is one fprintf(stderr) per request: to /dev/null unless
     * someone asks for logs. Sanitizers and valgrind write to fd 2 itself. */
    if (!getenv("CELLGATE_LOG")) {
        setenv("CELLGATE_LOG", "error", 1);
        FILE *null = fopen("/dev/null", "w");
        if (null)
            stderr = null;
    }
    log_init();
    signal(SIGPIPE, SIG_IGN);
    snprintf(fx.dir, sizeof fx.dir, "/tmp/cg-fuzz-gwhttp-XXXXXX");
    if (!mkdtemp(fx.dir))
        abort();
    atexit(fixture_free);
    for (size_t i = 0; i < N_OF(spec_dirs); i++) {
        snprintf(path, sizeof path, "%s%s", fx.dir, spec_dirs[i]);
        mkdir(path, 0700);
    }
    static const char *const contents[N_OF(spec_files)] = {
        "{\"argv\": [], \"display_name\": \"fuzz\", \"language\": \"python\","
        " \"interrupt_mode\": \"message\", \"env\": {\"A\": \"1\"}}",
        "\x89PNG\r\n",
    };
    for (size_t i = 0; i < N_OF(spec_names); i++) {
        spec_path(path, sizeof path, spec_names[i], NULL);
        mkdir(path, 0700);
        for (size_t j = 0; j < N_OF(spec_files); j++) {
            spec_path(path, sizeof path, spec_names[i], spec_files[j]);
            write_file(path, contents[j]);
        }
    }
    fx.specs = specs_load("/bin/true", fx.dir, err, sizeof err);
    fx.zctx = zmq_ctx_new();
    fx.ch = channels_new();
    if (!fx.specs || !fx.zctx || !fx.ch
        || !(fx.ks = kernels_new(fx.zctx, fx.dir, channels_sink(fx.ch))))
        abort();
}

/* Reads what the server wrote so far; false once it closed the connection. */
static bool
drain(int fd, char *head, size_t headlen, size_t *got)
{
    char buf[65536];
    ssize_t n;

    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (*got < headlen) {
            size_t k = (size_t)n < headlen - *got ? (size_t)n : headlen - *got;
            memcpy(head + *got, buf, k);
        }
        *got += (size_t)n;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const origins[] = { NULL, "*", "http://app.example", NULL };
    int sv[2];
    char err[256], head[8];
    size_t sent = 0, got = 0;
    bool shut = false;

    if (size < 1)
        return 0;
    fixture();
    struct http_opts o = { .token = TOKEN, .specs = fx.specs, .kernels = fx.ks,
                           .channels = fx.ch, .base_url = data[0] & 4 ? "/gw" : "",
                           .allow_origin = origins[data[0] & 3], .no_listen = true };
    struct http *h = http_new(&o, err, sizeof err);
    if (!h || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (http_add_connection(h, sv[0]) != CG_OK)
        abort();
    data++;
    size--;
    for (int round = 0; round < MAX_ROUNDS; round++) {
        ssize_t n = 0;
        if (sent < size && (n = write(sv[1], data + sent, size - sent)) > 0)
            sent += (size_t)n;
        if (sent == size && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        http_run(h);
        if (!drain(sv[1], head, sizeof head, &got))
            break;
    }
    if (got && memcmp(head, "HTTP/1.", got < 7 ? got : 7) != 0)
        abort(); /* libmicrohttpd wrote something that is not an answer */
    close(sv[1]);
    http_destroy(&h);
    kernels_tick(fx.ks); /* frees what a failed POST /api/kernels left */
    return 0;
}
