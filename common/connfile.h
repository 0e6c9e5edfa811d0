/*
 * connfile.h - Jupyter connection files: the JSON a client writes naming
 * the transport, address, five ports, key and signature scheme.
 */
#ifndef CG_CONNFILE_H
#define CG_CONNFILE_H

#include <stddef.h>

enum channel { CH_SHELL, CH_IOPUB, CH_STDIN, CH_CONTROL, CH_HB, CH_COUNT };

typedef struct {
    char transport[8];          /* "tcp" or "ipc" */
    char ip[256];               /* address (tcp) or path prefix (ipc) */
    int ports[CH_COUNT];        /* indexed by enum channel */
    char scheme[32];            /* signature_scheme, e.g. "hmac-sha256" */
    char *key;                  /* owned; "" when unsigned */
} connfile_t;

/* The connection file's key name for a channel ("shell_port", ...). */
const char *connfile_port_name(enum channel ch);

/*
 * Parses a connection file's text. On CG_OK *out holds owned data (free
 * with connfile_clear()); on error err says which field was wrong.
 */
int connfile_parse(const char *text, size_t len, connfile_t *out, char *err, size_t errlen);

/* Reads and parses a connection file (at most 64 KiB). */
int connfile_load(const char *path, connfile_t *out, char *err, size_t errlen);

/* Frees what connfile_parse() allocated. Idempotent. */
void connfile_clear(connfile_t *c);

/* Writes the ZeroMQ endpoint of a channel: "tcp://IP:PORT" or "ipc://IP-PORT".
 * Returns CG_OK or CG_ETOOBIG if buf is too small. */
int connfile_endpoint(const connfile_t *c, enum channel ch, char *buf, size_t len);

#endif
