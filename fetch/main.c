/*
 * main.c - cellgate-fetch, the program that carries out one
 * cellgate.download for the kernel (kernel/tools/download.c). libcurl and the TLS
 * library it brings live only here: the kernel does not map them (smaller,
 * faster to start), and what parses responses from the network runs in a
 * process of its own that the kernel kills to cancel.
 *
 *   cellgate-fetch URL      fd 3: the file to write the body to
 *                           fd 4: where the one-line JSON result goes
 *
 * The policy comes from the environment (download.h). The result is
 * {"ok": true, "size", "sha256", "content_type", "url", "http_status"} or
 * {"ok": false, "ename", "evalue"}. Exit status 0 once a result was
 * written, 2 for a usage error.
 */
#include "fetch/download.h"

#include "common/cgerr.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define OUT_FD 3
#define RESULT_FD 4

/* Writes result (stolen) as one line to RESULT_FD. */
static int
report(json_t *result)
{
    char *line = result ? json_dumps(result, JSON_COMPACT) : NULL;
    int rc = 1;

    json_decref(result);
    if (line) {
        size_t len = strlen(line), at = 0;
        line[len++] = '\n'; /* json_dumps left room: it wrote the NUL there */
        while (at < len) {
            ssize_t n = write(RESULT_FD, line + at, len - at);
            if (n <= 0)
                break;
            at += (size_t)n;
        }
        rc = at == len ? 0 : 1;
    }
    free(line);
    return rc;
}

static json_t *
failure(const char *ename, const char *evalue)
{
    return json_pack("{s:b, s:s, s:s}", "ok", 0, "ename", ename, "evalue", evalue);
}

int
main(int argc, char **argv)
{
    static struct download_result res;
    char err[2048];

    if (argc != 2 || fcntl(OUT_FD, F_GETFD) < 0 || fcntl(RESULT_FD, F_GETFD) < 0) {
        fprintf(stderr, "usage: cellgate-fetch URL (fd 3: the output file, fd 4: the "
                        "result); run by the cellgate kernel\n");
        return 2;
    }
    prctl(PR_SET_NAME, "cellgate-fetch");
    if (download_global_init(err, sizeof err) != CG_OK)
        return report(failure(DOWNLOAD_E_FAILED, err));
    struct download_request rq = { .url = argv[1], .out_fd = OUT_FD };
    if (download_run(&rq, &res, err, sizeof err) != CG_OK)
        return report(failure(res.ename ? res.ename : DOWNLOAD_E_FAILED, err));
    return report(json_pack("{s:b, s:I, s:s, s:s, s:s, s:i}", "ok", 1, "size",
                            (json_int_t)res.size, "sha256", res.sha256, "content_type",
                            res.content_type, "url", res.url, "http_status",
                            res.http_status));
}
