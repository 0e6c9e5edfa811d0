/*
 * regpath.h - what a package manager in the box may ask the registry
 * gateway for, read from the request's method and path. The gateway is a
 * mirror, not a proxy: only the read paths of each ecosystem pass, and a
 * path that is not a well-formed request of its ecosystem is refused
 * before anything is forwarded (a bad package name, "..", an encoded
 * slash where none belongs, an absolute URL, a host in the path, a
 * proxy-style request line). Package names are not a channel for data.
 *
 * The gateway's URL layout (as the box sees it, below its base URL):
 *   /npm/NAME                          npm packument (NAME may be
 *   /npm/@SCOPE%2fNAME, /npm/@SCOPE/NAME  scoped, either form)
 *   /npm/NAME/-/FILE.tgz               npm tarball
 *   /npm/@SCOPE/NAME/-/FILE.tgz
 *   /pypi/simple/NAME/                 PEP 503/691 project page (NAME
 *                                      normalised; no trailing slash too)
 *   /pypi/files/PATH                   a file on the PyPI files host
 *                                      (wheel, sdist, or its .metadata)
 */
#ifndef CG_REGPATH_H
#define CG_REGPATH_H

#include <stdbool.h>
#include <stddef.h>

#define REGPATH_NAME_MAX 214     /* npm's limit for a whole (scoped) name */
#define REGPATH_FILE_MAX 1024    /* bytes of a files-host path or tarball name */

enum reg_eco { REG_NPM, REG_PYPI, REG_ECO_COUNT };

enum reg_kind {
    REG_NPM_PACKUMENT,   /* metadata: refreshed, rewritten */
    REG_NPM_TARBALL,     /* an artifact: immutable, cached, bytes untouched */
    REG_PYPI_PROJECT,    /* metadata: refreshed, rewritten */
    REG_PYPI_FILE,       /* an artifact: immutable, cached, bytes untouched */
};

/* A request the gateway will serve. */
struct reg_req {
    enum reg_eco eco;
    enum reg_kind kind;
    bool head;                              /* HEAD: headers only */
    char name[REGPATH_NAME_MAX + 1];        /* npm: "left-pad", "@types/node";
                                               pypi: normalised ("foo-bar") */
    char version[128];                      /* a tarball's version when the file
                                               name says it, else "" */
    char file[REGPATH_FILE_MAX + 1];        /* npm: "left-pad-1.3.0.tgz";
                                               pypi: the files-host path
                                               "packages/ab/cd/x-1.0.whl" */
};

/* Why a request is refused: the HTTP status to answer with. */
enum regpath_status {
    REGPATH_OK = 200,
    REGPATH_BAD_REQUEST = 400,      /* not a well-formed read of an ecosystem */
    REGPATH_NOT_FOUND = 404,        /* well-formed, but nothing is served there
                                       (e.g. the /pypi/simple/ root listing) */
    REGPATH_BAD_METHOD = 405,       /* anything but GET and HEAD */
};

/*
 * Reads method and target (the request line's second word, exactly as
 * received: percent-encoded, with an optional "?query" that is ignored)
 * into *req. Returns REGPATH_OK, or the status to answer with and err
 * filled with a reason for humans (it names the offending part, bounded).
 * Never touches the network. Accepts only an origin-form target ("/..."):
 * absolute URLs and authority forms are REGPATH_BAD_REQUEST.
 */
enum regpath_status regpath_parse(const char *method, const char *target, struct reg_req *req,
                                  char *err, size_t errlen);

/* True for a valid npm package name, scoped ("@scope/name") or not
 * (lowercase, URL-safe, at most REGPATH_NAME_MAX bytes, no leading dot or
 * underscore; an unscoped name may have the uppercase letters names
 * published before npm required lowercase have, as JSONStream). */
bool regpath_npm_name_ok(const char *name);

/* Normalises a PyPI project name as PEP 503 does (runs of -_. become "-",
 * lowercase) into out; false if name is not a valid PEP 508 name or does
 * not fit. */
bool regpath_pypi_normalize(const char *name, char *out, size_t outlen);

#endif
