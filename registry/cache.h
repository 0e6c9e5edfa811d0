/*
 * cache.h - the registry gateway's cache of immutable artifacts (npm
 * tarballs, PyPI files) on the host, shared by the gateways of concurrent
 * kernels. An artifact is stored under the hex sha256 of its upstream URL,
 * in two levels of directories (DIR/ab/cd/abcd...), written to a temporary
 * file beside it and renamed into place once complete, so a reader never
 * sees half a file and two gateways fetching the same artifact at once
 * both end with a whole one. Metadata is never cached.
 *
 * The total size is bounded: after a store pushes the total past the
 * bound, the least recently used files (by mtime, which a hit refreshes)
 * are removed until it is back under. Another gateway's stores are seen at
 * the next scan, so with several gateways the bound can be passed briefly.
 * A file being served when it is evicted stays readable through its open
 * descriptor.
 *
 * The object may be used from many threads at once.
 */
#ifndef CG_CACHE_H
#define CG_CACHE_H

#include <stdint.h>
#include <stddef.h>

#define CACHE_BYTES_DEFAULT (2ULL << 30)

struct cache;

/* An artifact being written: its temporary file. Filled by cache_begin(),
 * ended by cache_commit() or cache_abort(). */
struct cache_tmp {
    int fd;                /* write the artifact here (read-write) */
    char tmp[128];         /* its name under the cache root, "" when unnamed */
    char final[128];       /* the name it gets, "" when it is not kept */
};

/*
 * Opens (creating it, and its parent if missing) the cache directory dir,
 * bounded to max_bytes. Returns the object or NULL with err filled (the
 * directory cannot be created or opened). Destroy with cache_destroy().
 */
struct cache *cache_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen);

/* Closes the directory and frees *c; sets it to NULL. NULL is fine. */
void cache_destroy(struct cache **c);

/*
 * Looks up the artifact fetched from url. Returns its read-only fd (the
 * caller owns it) with *size filled, and marks it recently used; or -1
 * when it is not in the cache.
 */
int cache_get(struct cache *c, const char *url, uint64_t *size);

/*
 * Starts storing the artifact fetched from url: *t gets a new empty
 * temporary file. If the cache cannot be written (full disk, permissions),
 * *t gets an unnamed temporary file instead (the artifact is served but
 * not kept) and a warning is logged. Returns CG_OK, or CG_ESYS with err
 * filled when no temporary file can be made at all.
 */
int cache_begin(struct cache *c, const char *url, struct cache_tmp *t, char *err, size_t errlen);

/*
 * Ends a complete store: renames the temporary file into place (replacing
 * an equal one another gateway stored meanwhile), evicts old files if the
 * total passed the bound, and hands the file's fd over to the caller
 * (returned, positioned anywhere, readable) with *size filled. Returns -1
 * with err filled if the file cannot be kept or read; t is ended either
 * way.
 */
int cache_commit(struct cache *c, struct cache_tmp *t, uint64_t *size, char *err,
                 size_t errlen);

/* Ends an incomplete store: the temporary file is removed. */
void cache_abort(struct cache *c, struct cache_tmp *t);

#endif
