/*
 * cache.c - the artifact cache on the host (see cache.h): names by
 * sha256, atomic stores by rename, least-recently-used eviction by mtime.
 * Everything is done relative to one directory descriptor, so the cache
 * root is resolved once, at start.
 */
#include "registry/cache.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A temporary file not written for this long belongs to a gateway that
 * died mid-fetch: a live fetch writes at least every LOW_SPEED_TIME. */
#define STALE_TMP_S 600
/* Rescan at least this often, to see what other gateways stored. */
#define RESCAN_S 60
#define TMP_PREFIX ".tmp-"

struct cache {
    int dirfd;                 /* the cache root */
    uint64_t max_bytes;        /* the bound on the total */
    pthread_mutex_t lock;      /* guards the fields below */
    uint64_t total;            /* bytes as of the last scan, plus our stores since */
    double last_scan;          /* clock_now() of the last scan */
    unsigned seq;              /* for temporary names */
};

/* One stored artifact, as a scan sees it. */
struct entry {
    struct timespec used;      /* mtime: stored or last hit */
    uint64_t size;
    char path[72];             /* "ab/cd/<64 hex>" */
};

/* "ab/cd/<hex sha256 of url>" into path (at least 71 bytes). */
static void
path_of(const char *url, char *path, size_t pathlen)
{
    static const char hexd[] = "0123456789abcdef";
    uint8_t digest[SHA256_DIGEST_SIZE];
    char hex[2 * SHA256_DIGEST_SIZE + 1];
    struct sha256_ctx ctx;

    sha256_init(&ctx);
    sha256_update(&ctx, strlen(url), (const uint8_t *)url);
    sha256_digest(&ctx, sizeof digest, digest);
    for (size_t i = 0; i < sizeof digest; i++) {
        hex[2 * i] = hexd[digest[i] >> 4];
        hex[2 * i + 1] = hexd[digest[i] & 15];
    }
    hex[sizeof hex - 1] = '\0';
    snprintf(path, pathlen, "%.2s/%.2s/%s", hex, hex + 2, hex);
}

static bool
is_hex_name(const char *name, size_t len)
{
    if (strlen(name) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return true;
}

static int
cmp_used(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec)
        return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    if (x->used.tv_nsec != y->used.tv_nsec)
        return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
    return 0;
}

/* Opens sub (a directory under at) for listing; NULL if it cannot. */
static DIR *
open_dir_at(int at, const char *sub)
{
    int fd = openat(at, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

/* Appends e to *v (growing it); false when out of memory. */
static bool
push_entry(struct entry **v, size_t *n, size_t *cap, const struct entry *e)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        struct entry *nv = realloc(*v, ncap * sizeof *nv);
        if (!nv)
            return false;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = *e;
    return true;
}

/*
 * Lists the cache (removing stale temporary files), and when the total is
 * over the bound removes the least recently used files down to 90% of it.
 * Called with c->lock held.
 */
static void
cache_scan(struct cache *c)
{
    struct entry *v = NULL, e;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    time_t now = time(NULL);
    DIR *top = open_dir_at(c->dirfd, ".");
    struct dirent *d1, *d2, *f;

    if (!top)
        return;
    while ((d1 = readdir(top))) {
        if (!is_hex_name(d1->d_name, 2))
            continue;
        DIR *mid = open_dir_at(dirfd(top), d1->d_name);
        if (!mid)
            continue;
        while ((d2 = readdir(mid))) {
            if (!is_hex_name(d2->d_name, 2))
                continue;
            DIR *leaf = open_dir_at(dirfd(mid), d2->d_name);
            if (!leaf)
                continue;
            while ((f = readdir(leaf))) {
                struct stat st;
                bool tmp = strncmp(f->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;
                if (!tmp && !is_hex_name(f->d_name, 64))
                    continue;
                if (fstatat(dirfd(leaf), f->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0
                    || !S_ISREG(st.st_mode))
                    continue;
                if (tmp) {
                    if (now - st.st_mtim.tv_sec > STALE_TMP_S)
                        unlinkat(dirfd(leaf), f->d_name, 0);
                    continue;
                }
                e.used = st.st_mtim;
                e.size = (uint64_t)st.st_size;
                snprintf(e.path, sizeof e.path, "%.2s/%.2s/%.64s", d1->d_name, d2->d_name,
                         f->d_name);
                total += e.size;
                if (!push_entry(&v, &n, &cap, &e)) {
                    closedir(leaf);
                    closedir(mid);
                    goto out;
                }
            }
            closedir(leaf);
        }
        closedir(mid);
    }
    if (total > c->max_bytes) {
        uint64_t goal = c->max_bytes / 10 * 9;
        size_t removed = 0;
        qsort(v, n, sizeof *v, cmp_used);
        for (size_t i = 0; i < n && total > goal; i++) {
            if (unlinkat(c->dirfd, v[i].path, 0) == 0 || errno == ENOENT) {
                total -= v[i].size;
                removed++;
            }
        }
        log_debug("registry: cache: evicted %zu files, %" PRIu64 " bytes left", removed, total);
    }
out:
    closedir(top);
    free(v);
    c->total = total;
    c->last_scan = clock_now();
}

/* mkdir -p for one or two missing levels of an absolute or relative dir. */
static int
make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -1;
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return -1;
    *slash = '\0';
    if (mkdir(parent, 0700) != 0 && errno != EEXIST)
        return -1;
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

struct cache *
cache_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
    struct cache *c;

    if (!*dir || strlen(dir) >= 4096) {
        cg_fail(err, errlen, CG_EINVAL, "the cache directory name is empty or too long");
        return NULL;
    }
    if (make_dir(dir) != 0) {
        cg_fail(err, errlen, CG_ESYS, "cannot create the cache directory %s: %s", dir,
                strerror(errno));
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        cg_fail(err, errlen, CG_ENOMEM, "out of memory");
        return NULL;
    }
    c->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dirfd < 0) {
        cg_fail(err, errlen, CG_ESYS, "cannot open the cache directory %s: %s", dir,
                strerror(errno));
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes ? max_bytes : CACHE_BYTES_DEFAULT;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_lock(&c->lock);
    cache_scan(c);
    pthread_mutex_unlock(&c->lock);
    return c;
}

void
cache_destroy(struct cache **cp)
{
    if (!cp || !*cp)
        return;
    close((*cp)->dirfd);
    pthread_mutex_destroy(&(*cp)->lock);
    free(*cp);
    *cp = NULL;
}

int
cache_get(struct cache *c, const char *url, uint64_t *size)
{
    char path[80];
    struct stat st;

    path_of(url, path, sizeof path);
    int fd = openat(c->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    futimens(fd, NULL); /* recently used; a file of another user's stays as it is */
    *size = (uint64_t)st.st_size;
    return fd;
}

int
cache_begin(struct cache *c, const char *url, struct cache_tmp *t, char *err, size_t errlen)
{
    char path[80];
    unsigned seq;

    *t = (struct cache_tmp){ .fd = -1 };
    path_of(url, path, sizeof path);
    pthread_mutex_lock(&c->lock);
    seq = c->seq++;
    pthread_mutex_unlock(&c->lock);

    char level[8];
    snprintf(level, sizeof level, "%.2s", path);
    if (mkdirat(c->dirfd, level, 0700) == 0 || errno == EEXIST) {
        snprintf(level, sizeof level, "%.5s", path);
        if (mkdirat(c->dirfd, level, 0700) == 0 || errno == EEXIST) {
            snprintf(t->tmp, sizeof t->tmp, "%.6s" TMP_PREFIX "%.16s-%ld-%u", path, path + 6,
                     (long)getpid(), seq);
            t->fd = openat(c->dirfd, t->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                           0644);
        }
    }
    if (t->fd >= 0) {
        snprintf(t->final, sizeof t->final, "%s", path);
        return CG_OK;
    }
    log_warn("registry: cache: cannot write under the cache directory (%s): this artifact "
             "is served but not kept", strerror(errno));
    t->tmp[0] = '\0';
    t->fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (t->fd < 0)
        return cg_fail(err, errlen, CG_ESYS, "no temporary file for the artifact: %s",
                       strerror(errno));
    return CG_OK;
}

int
cache_commit(struct cache *c, struct cache_tmp *t, uint64_t *size, char *err, size_t errlen)
{
    struct stat st;
    int fd = t->fd;

    t->fd = -1;
    if (fstat(fd, &st) != 0) {
        cg_fail(err, errlen, CG_ESYS, "the artifact's temporary file: %s", strerror(errno));
        if (t->tmp[0])
            unlinkat(c->dirfd, t->tmp, 0);
        close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    if (!t->tmp[0])
        return fd;
    if (renameat(c->dirfd, t->tmp, c->dirfd, t->final) != 0) {
        log_warn("registry: cache: cannot store %s: %s (served, not kept)", t->final,
                 strerror(errno));
        unlinkat(c->dirfd, t->tmp, 0);
        return fd;
    }
    pthread_mutex_lock(&c->lock);
    c->total += *size;
    if (c->total > c->max_bytes || clock_now() - c->last_scan > RESCAN_S)
        cache_scan(c);
    pthread_mutex_unlock(&c->lock);
    return fd;
}

void
cache_abort(struct cache *c, struct cache_tmp *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->tmp[0])
        unlinkat(c->dirfd, t->tmp, 0);
    t->tmp[0] = '\0';
}
