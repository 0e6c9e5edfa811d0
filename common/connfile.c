/*
 * connfile.c - connection file parsing (see connfile.h).
 */
#include "common/connfile.h"

#include "common/cgerr.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNFILE_MAX (64 * 1024)

static const char *port_names[CH_COUNT] = {
    [CH_SHELL] = "shell_port", [CH_IOPUB] = "iopub_port", [CH_STDIN] = "stdin_port",
    [CH_CONTROL] = "control_port", [CH_HB] = "hb_port",
};

const char *
connfile_port_name(enum channel ch)
{
    return port_names[ch];
}

static int
copy_string(json_t *root, const char *name, const char *dflt, char *dst, size_t cap,
            char *err, size_t errlen)
{
    json_t *v = json_object_get(root, name);
    const char *s;

    if (!v) {
        if (!dflt)
            return cg_fail(err, errlen, CG_EINVAL, "connection file lacks \"%s\"", name);
        s = dflt;
    } else if (!json_is_string(v)) {
        return cg_fail(err, errlen, CG_EINVAL, "connection file: \"%s\" is not a string", name);
    } else {
        s = json_string_value(v);
    }
    if (strlen(s) >= cap)
        return cg_fail(err, errlen, CG_ETOOBIG, "connection file: \"%s\" is too long", name);
    memcpy(dst, s, strlen(s) + 1);
    return CG_OK;
}

int
connfile_parse(const char *text, size_t len, connfile_t *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(out, 0, sizeof *out);
    root = json_loadb(text, len, 0, &jerr);
    if (!root)
        return cg_fail(err, errlen, CG_EINVAL, "connection file is not JSON: %s (line %d)",
                       jerr.text, jerr.line);
    if (!json_is_object(root)) {
        rc = cg_fail(err, errlen, CG_EINVAL, "connection file is not a JSON object");
        goto out;
    }
    if ((rc = copy_string(root, "transport", "tcp", out->transport, sizeof out->transport,
                          err, errlen)) != CG_OK
        || (rc = copy_string(root, "ip", "127.0.0.1", out->ip, sizeof out->ip, err, errlen)) != CG_OK
        || (rc = copy_string(root, "signature_scheme", "hmac-sha256", out->scheme,
                             sizeof out->scheme, err, errlen)) != CG_OK)
        goto out;
    if (strcmp(out->transport, "tcp") != 0 && strcmp(out->transport, "ipc") != 0) {
        rc = cg_fail(err, errlen, CG_EUNSUPP, "transport \"%s\" is not supported (tcp or ipc)",
                     out->transport);
        goto out;
    }
    for (int ch = 0; ch < CH_COUNT; ch++) {
        json_t *p = json_object_get(root, port_names[ch]);
        if (!json_is_integer(p) || json_integer_value(p) <= 0 || json_integer_value(p) > 65535) {
            rc = cg_fail(err, errlen, CG_EINVAL, "connection file: \"%s\" must be a port "
                         "number from 1 to 65535", port_names[ch]);
            goto out;
        }
        out->ports[ch] = (int)json_integer_value(p);
    }
    json_t *key = json_object_get(root, "key");
    if (key && !json_is_string(key)) {
        rc = cg_fail(err, errlen, CG_EINVAL, "connection file: \"key\" is not a string");
        goto out;
    }
    out->key = strdup(key ? json_string_value(key) : "");
    rc = out->key ? CG_OK : cg_fail(err, errlen, CG_ENOMEM, "out of memory");
out:
    json_decref(root);
    if (rc != CG_OK)
        connfile_clear(out);
    return rc;
}

int
connfile_load(const char *path, connfile_t *out, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "r");
    int rc;

    memset(out, 0, sizeof *out);
    if (!f)
        return cg_fail(err, errlen, CG_ENOTFOUND, "cannot open connection file %s: %s",
                       path, strerror(errno));
    buf = malloc(CONNFILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    }
    n = fread(buf, 1, CONNFILE_MAX + 1, f);
    fclose(f);
    if (n > CONNFILE_MAX)
        rc = cg_fail(err, errlen, CG_ETOOBIG, "connection file %s is larger than %d bytes",
                     path, CONNFILE_MAX);
    else
        rc = connfile_parse(buf, n, out, err, errlen);
    free(buf);
    return rc;
}

void
connfile_clear(connfile_t *c)
{
    if (!c)
        return;
    free(c->key);
    c->key = NULL;
}

int
connfile_endpoint(const connfile_t *c, enum channel ch, char *buf, size_t len)
{
    int n;

    if (strcmp(c->transport, "ipc") == 0)
        n = snprintf(buf, len, "ipc://%s-%d", c->ip, c->ports[ch]);
    else
        n = snprintf(buf, len, "tcp://%s:%d", c->ip, c->ports[ch]);
    return n < 0 || (size_t)n >= len ? CG_ETOOBIG : CG_OK;
}
