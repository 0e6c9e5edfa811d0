/*
 * display.h - what a file shows as in a notebook: the display_data content
 * for its bytes (an image, SVG or HTML), and the one request the in-box
 * command `cellgate-display` sends to ask for it. Shared by the
 * cellgate.open_image tool (tools.c) and the kernel's display socket
 * (displayd.c). Everything here reads bytes that came from the box, so it
 * is bounded and checks before it trusts; none of it needs a kernel.
 */
#ifndef CG_DISPLAY_H
#define CG_DISPLAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define DISPLAY_MAX (16u << 20)   /* largest file shown, in bytes */
#define DISPLAY_REQ_MAX 4096      /* largest request cellgate-display may send */
#define DISPLAY_NAME_MAX 1024     /* longest file name in a request */

/* Which kinds of file a caller accepts. */
enum display_kinds {
    DISPLAY_IMAGES = 1,           /* PNG, JPEG, GIF, WebP, SVG */
    DISPLAY_HTML = 2,             /* text/html */
};

/* What a file was shown as. */
struct display_shown {
    const char *mime;             /* static string, e.g. "image/png" */
    unsigned width, height;       /* images; 0 when unknown (an SVG may not say) */
};

/* A request from cellgate-display, parsed. */
struct display_req {
    char mime[32];                /* the type asked for with --mime, or "" */
    char name[DISPLAY_NAME_MAX + 1]; /* the file's name as the user gave it, or "" */
};

/*
 * Reads the regular file open as fd, from its start, into a new buffer:
 * *bytes (len + 1 bytes allocated, caller frees) and *len. Returns CG_OK;
 * CG_EINVAL when fd is not a regular file (a directory, a FIFO, ...);
 * CG_ETOOBIG when it is larger than DISPLAY_MAX; CG_ESYS when reading
 * fails; CG_ENOMEM. err says why, without the file's name.
 */
int display_read_fd(int fd, unsigned char **bytes, size_t *len, char *err, size_t errlen);

/* True if mime is a type display_bundle() shows for kinds. */
bool display_mime_known(const char *mime, unsigned kinds);

/*
 * Builds display_data content {data, metadata} for the file bytes[0..len)
 * called name (used in text/plain, and a name ending in .html or .htm is
 * HTML). mime is the type asked for, or NULL to decide: images by their
 * bytes, else HTML by the name. A type asked for must be one of kinds' and
 * an image must really be one of that type; SVG and HTML must be valid
 * UTF-8. Returns CG_OK with *content (a new reference) and *shown filled,
 * or CG_EINVAL (err says why, naming the file) or CG_ENOMEM.
 */
int display_bundle(const unsigned char *bytes, size_t len, const char *name, const char *mime,
                   unsigned kinds, json_t **content, struct display_shown *shown, char *err,
                   size_t errlen);

/*
 * Parses a request from cellgate-display: buf[0..len) must be a JSON
 * object of at most DISPLAY_REQ_MAX bytes, whose optional members "mime"
 * and "name" are strings (mime one of the types shown, name at most
 * DISPLAY_NAME_MAX bytes); other members are ignored. Returns CG_OK with
 * *req filled, CG_ETOOBIG or CG_EINVAL with err saying why.
 */
int display_parse_request(const char *buf, size_t len, struct display_req *req, char *err,
                          size_t errlen);

#endif
