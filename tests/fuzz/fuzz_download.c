/*
 * fuzz_download.c - libFuzzer target for the parsers of download.c: URL
 * checking and canonical form, allow-pattern matching, the seen file and
 * the address table. An input is three parts separated by newlines: the
 * allow list, a URL, and the rest is a seen file.
 */
#include "fetch/download.h"
#include "common/cgerr.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line of [*p, end) as a new string; moves *p past it. */
static char *
take_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = (size_t)((nl ? nl : end) - *p);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl != NULL);
    return s;
}

static void
check_canon(const char *url)
{
    static char canon[DOWNLOAD_URL_MAX + 1], again[DOWNLOAD_URL_MAX + 1];
    char err[256];

    if (download_url_canon(url, canon, sizeof canon, err, sizeof err) != CG_OK)
        return;
    if (strncmp(canon, "http://", 7) != 0 && strncmp(canon, "https://", 8) != 0)
        abort();
    for (const char *c = canon; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == '\\')
            abort();
    /* What the policy matched is what libcurl will fetch: canonical URLs
     * are their own canonical form. */
    if (download_url_canon(canon, again, sizeof again, err, sizeof err) != CG_OK
        || strcmp(canon, again) != 0)
        abort();
    if (!download_glob_match("*", 1, canon))
        abort();
    /* Without wildcards a URL is a pattern matching itself. */
    size_t n = strlen(canon);
    if (n <= DOWNLOAD_PATTERN_MAX && !strpbrk(canon, "*?\\")
        && !download_glob_match(canon, n, canon))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *allow = take_line(&p, end), *url = take_line(&p, end);
    char err[512], canon[DOWNLOAD_URL_MAX + 1];

    check_canon(url);
    download_glob_match(allow, strlen(allow), url);

    struct download_config cfg = { .allow = allow };
    struct download_policy *pol = download_policy_new(&cfg, err, sizeof err);
    if (pol) {
        download_policy_check(pol, url, canon, sizeof canon, err, sizeof err);
        download_policy_destroy(&pol);
    }

    int fd = memfd_create("seen", MFD_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, p, (size_t)(end - p)) == (ssize_t)(end - p)) {
            lseek(fd, 0, SEEK_SET);
            download_seen_fd_contains(fd, url, allow);
        }
        close(fd);
    }

    char why[256];
    if (size >= 16) {
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
        memcpy(&a6.sin6_addr, data, 16);
        download_addr_refused((const struct sockaddr *)&a6, data[0] & 1, why, sizeof why);
        struct sockaddr_in a4 = { .sin_family = AF_INET };
        memcpy(&a4.sin_addr, data + 12, 4);
        download_addr_refused((const struct sockaddr *)&a4, data[1] & 1, why, sizeof why);
    }
    free(allow);
    free(url);
    return 0;
}
