/*
 * download.h - one download as the kernel's cellgate.download tool does it:
 * the operator's policy decides which URLs may be fetched, libcurl fetches
 * them (http and https only, redirects followed by hand and re-checked hop
 * by hop, every address checked before connecting), and the body streams
 * into an fd the caller gives, with a size cap, a time cap and a cancel
 * flag. Everything here may run in a worker thread: the only global state
 * is libcurl's and libsodium's, set up once by download_global_init().
 *
 * The policy is the operator's, read from the environment (DESIGN.md):
 *
 *   CELLGATE_DOWNLOAD_ALLOW          comma-separated URL patterns (below)
 *   CELLGATE_DOWNLOAD_SEEN           a file of allowed URLs, one a line,
 *                                    re-read on every request
 *   CELLGATE_DOWNLOAD_ALLOW_PRIVATE  "1": loopback, private, link-local...
 *                                    addresses may be reached (never cloud
 *                                    metadata addresses)
 *   CELLGATE_DOWNLOAD_MAX_BYTES      size cap in bytes (default 256 MiB)
 *   CELLGATE_DOWNLOAD_TIMEOUT        time cap in seconds for the whole
 *                                    download, redirects included (300)
 *   CELLGATE_DOWNLOAD_CA_FILE        a PEM file of CA certificates that
 *                                    replaces the system's CA store for
 *                                    https (an internal mirror's CA), read
 *                                    by the process that fetches
 *
 * With neither ALLOW nor SEEN set nothing is allowed, and the error says so.
 * TLS is always verified, peer and host name, against the system's CA store
 * or CA_FILE's certificates; there is no setting that turns that off. A
 * CA_FILE that cannot be read, or is not a regular file, fails every
 * download (DownloadConfigError, naming the variable); one that holds no
 * certificate fails every https download the same way. Neither falls back
 * to the system's store.
 *
 * URLs. A URL must be http:// or https:// (scheme in any case), at most
 * DOWNLOAD_URL_MAX bytes of printable ASCII with no spaces, backslashes or
 * userinfo ("user@"), and no path segment that is a percent-encoded "." or
 * "..". It is then put in canonical form by libcurl's URL parser: scheme
 * and host lower-case, the scheme's default port dropped, "." and ".."
 * segments resolved, the fragment dropped. That canonical URL is what the
 * policy sees and what is fetched.
 *
 * Patterns (CELLGATE_DOWNLOAD_ALLOW). Items are separated by commas;
 * whitespace around an item is ignored, and so are empty items. A URL is
 * allowed when one pattern matches the whole canonical URL, where
 *   *   matches any run of characters, the empty one too;
 *   ?   matches any one character;
 *   \c  matches the character c itself (so \* is a literal star);
 *   anything else matches itself.
 * A pattern with "://" is matched part by part: its scheme against the
 * URL's scheme, its host (from "://" to the next "/") against the URL's
 * host and port, the rest against the rest. Letters in the scheme and host
 * match in any case, and a star or ? there never matches an "@". So a star
 * in the host stays in the host: the pattern https://STAR.example.com/STAR
 * (STAR being *) allows https://a.b.example.com/x but not
 * https://evil.test/?.example.com/. A pattern without "://" is matched as
 * one string ("*" alone allows everything). Examples follow, as line
 * comments: a slash then a star would be an error inside this one.
 */
// https://files.example.com/*      everything on that host, https only
// http*://*.example.com/pub/*      any subdomain, http or https, under /pub/
// https://*/*                      every https URL
// https://*                        nothing: the star cannot leave the host
/*
 * Seen file (CELLGATE_DOWNLOAD_SEEN). A URL is allowed when it equals a
 * line of the file exactly, either as the client wrote it or in canonical
 * form. Surrounding whitespace and blank lines are ignored; lines longer
 * than DOWNLOAD_URL_MAX are skipped; only the first DOWNLOAD_SEEN_MAX
 * bytes of the file are read, and it must be a regular file.
 */
#ifndef CG_DOWNLOAD_H
#define CG_DOWNLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DOWNLOAD_URL_MAX 8192                      /* bytes in a URL */
#define DOWNLOAD_SEEN_MAX (64u << 20)              /* bytes of the seen file read */
#define DOWNLOAD_ALLOW_MAX (64u << 10)             /* bytes of CELLGATE_DOWNLOAD_ALLOW */
#define DOWNLOAD_PATTERN_MAX 1024                  /* bytes in one pattern */
#define DOWNLOAD_MAX_BYTES_DEFAULT (256ull << 20)  /* size cap */
#define DOWNLOAD_TIMEOUT_DEFAULT 300               /* seconds, whole download */
#define DOWNLOAD_CONNECT_TIMEOUT 30                /* seconds, each connect */
#define DOWNLOAD_MAX_HOPS 5                        /* redirects followed */

/* Clients see these as the error's ename. */
#define DOWNLOAD_E_REFUSED "DownloadRefused"   /* policy, scheme, URL form, address */
#define DOWNLOAD_E_FAILED "DownloadFailed"     /* DNS, connect, TLS, writing the fd */
#define DOWNLOAD_E_TOO_LARGE "DownloadTooLarge"
#define DOWNLOAD_E_TIMEOUT "DownloadTimeout"
#define DOWNLOAD_E_HTTP "HTTPError"            /* a status that is not 2xx */
#define DOWNLOAD_E_INTERRUPTED "Interrupted"
#define DOWNLOAD_E_CONFIG "DownloadConfigError" /* the operator's settings are malformed */

/*
 * Sets up libcurl and libsodium. Call once at start, while the process has
 * one thread, before any other function here. Returns CG_OK or CG_ESYS.
 */
int download_global_init(char *err, size_t errlen);

/* The operator's settings, as download_policy_new() takes them. */
struct download_config {
    const char *allow;        /* comma-separated patterns, or NULL */
    const char *seen_file;    /* path of the seen-URLs file, or NULL */
    bool allow_private;       /* reach loopback, private, link-local... addresses */
    uint64_t max_bytes;       /* size cap; 0 for DOWNLOAD_MAX_BYTES_DEFAULT */
    unsigned timeout_s;       /* time cap; 0 for DOWNLOAD_TIMEOUT_DEFAULT */
    const char *ca_file;      /* PEM CA bundle replacing the system's store, or NULL */
};

struct download_policy;

/*
 * A policy from cfg (strings are copied; "" is NULL). Returns NULL with err
 * filled when allow is longer than DOWNLOAD_ALLOW_MAX or has a pattern
 * longer than DOWNLOAD_PATTERN_MAX, when ca_file cannot be opened for
 * reading or is not a regular file (err names CELLGATE_DOWNLOAD_CA_FILE),
 * or on no memory.
 */
struct download_policy *download_policy_new(const struct download_config *cfg, char *err,
                                            size_t errlen);

/*
 * The policy of the environment variables above, read now. Returns NULL
 * with err saying which variable is malformed (MAX_BYTES not a positive
 * integer, TIMEOUT not 1..86400, ALLOW_PRIVATE not 0 or 1, CA_FILE not a
 * readable regular file, ...).
 */
struct download_policy *download_policy_from_env(char *err, size_t errlen);

/* Frees the policy and nulls *p. Idempotent. */
void download_policy_destroy(struct download_policy **p);

/*
 * Checks url's form (scheme, length, characters, userinfo) and puts it in
 * canonical form into canon (canonlen >= DOWNLOAD_URL_MAX + 1 always
 * suffices). Does not consult any policy. Returns CG_OK, CG_EINVAL (not a
 * URL), CG_EUNSUPP (a scheme other than http/https) or CG_EREFUSED (a form
 * refused: userinfo, spaces, control characters, too long, ...), with err
 * saying why.
 */
int download_url_canon(const char *url, char *canon, size_t canonlen, char *err, size_t errlen);

/*
 * True when pattern (with the syntax above) matches all of url. url should
 * be canonical (download_url_canon); pattern is one item, not a list.
 */
bool download_glob_match(const char *pattern, size_t patlen, const char *url);

/*
 * True when a line of the seen file open as fd (read from its current
 * offset, at most DOWNLOAD_SEEN_MAX bytes) equals url or alt (alt may be
 * NULL), by the rules above.
 */
bool download_seen_fd_contains(int fd, const char *url, const char *alt);

/*
 * Decides whether url may be fetched under p: download_url_canon(), then
 * the allow patterns, then the seen file. On CG_OK canon holds the URL to
 * fetch. Otherwise returns what download_url_canon() does, or CG_EREFUSED
 * with err naming the URL and the variables that would allow it.
 */
int download_policy_check(const struct download_policy *p, const char *url, char *canon,
                          size_t canonlen, char *err, size_t errlen);

/*
 * Classifies an address a connection would go to (AF_INET or AF_INET6;
 * IPv4-mapped, -compatible, NAT64 and 6to4 IPv6 forms are judged by the
 * IPv4 address inside). Returns true when it must not be reached: loopback,
 * private, unique-local, CGNAT, link-local, unspecified, multicast,
 * broadcast, reserved and documentation addresses unless allow_private,
 * cloud metadata addresses (169.254.169.254, fd00:ec2::254, ...) and other
 * families always. why gets e.g. "127.0.0.1 is a loopback address".
 */
bool download_addr_refused(const struct sockaddr *sa, bool allow_private, char *why,
                           size_t whylen);

/* What to fetch, and where to. */
struct download_request {
    const char *url;              /* as the client sent it */
    int out_fd;                   /* the body is written here, from its offset */
    const atomic_bool *cancel;    /* set from any thread to stop; may be NULL */
    const char *resolve;          /* tests only: "host:port:addr" as CURLOPT_RESOLVE; NULL */
};

/* What was fetched. */
struct download_result {
    uint64_t size;                        /* bytes written to out_fd */
    char sha256[65];                      /* hex of the body's SHA-256 */
    char content_type[256];               /* of the final response; "" if none */
    char url[DOWNLOAD_URL_MAX + 1];       /* the final URL, after redirects */
    int http_status;                      /* of the last response; 0 if none */
    const char *ename;                    /* on error one of DOWNLOAD_E_*; NULL on success */
};

/*
 * Fetches rq->url under policy p into rq->out_fd, following up to
 * DOWNLOAD_MAX_HOPS redirects, each hop checked like the first. Blocks
 * until done, failed, timed out or cancelled (*rq->cancel is polled at
 * least once a second). Returns CG_OK with *res filled, or an error with
 * res->ename and err saying what happened:
 *   CG_EREFUSED  DownloadRefused   URL or redirect not allowed, address refused
 *   CG_EINVAL / CG_EUNSUPP         DownloadRefused (not an http(s) URL)
 *   CG_ETOOBIG   DownloadTooLarge  Content-Length or the body passed the cap
 *   CG_ETIMEDOUT DownloadTimeout
 *   CG_ECANCELED Interrupted
 *   CG_EREMOTE   HTTPError         a status not 2xx (or a redirect too many)
 *   CG_ESYS      DownloadFailed    network, TLS (an untrusted certificate, a
 *                                  name that does not match), or writing out_fd
 *   CG_EINVAL    DownloadConfigError  p's CA file holds no usable certificate
 * On error the fd may hold part of a body: the caller discards it
 * (boxfs_abort); res->size and res->sha256 are then zero and empty.
 */
int download_fetch(const struct download_policy *p, const struct download_request *rq,
                   struct download_result *res, char *err, size_t errlen);

/*
 * download_fetch() under the policy of the environment as it is now (the
 * kernel's call per request). A malformed environment is CG_EINVAL with
 * ename DownloadConfigError.
 */
int download_run(const struct download_request *rq, struct download_result *res, char *err,
                 size_t errlen);

#endif
