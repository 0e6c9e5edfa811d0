/*
 * tools.c - comms for the client's tools (see tools.h). Each tool is one
 * row of the table below: a target name and a function from the request's
 * data to its result ({"status": "ok", ...} or an error object).
 */
#include "tools.h"

#include "boxfs.h"
#include "image.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>

#define IMAGE_MAX (16u << 20) /* largest image open_image shows */

typedef json_t *(*tool_fn)(struct kernel *k, const wire_msg_t *req, json_t *data);

static json_t *
tool_error(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s}", "status", "error", "ename", ename, "evalue", evalue);
}

/* cellgate.open_image {path} -> {mime, width, height} + a display_data. */
static json_t *
tool_open_image(struct kernel *k, const wire_msg_t *req, json_t *data)
{
    const char *path = json_string_value(json_object_get(data, "path"));
    char why[4200];
    struct stat st;

    if (!path || !*path)
        return tool_error("ValueError", "open_image needs a \"path\"");
    int root = AT_FDCWD, fd = -1, e = 0;
    if (k->box && boxfs_root_open(box_init_pid(k->box), &root, why, sizeof why) != CG_OK)
        return tool_error("OSError", why);
    if (boxfs_open_read(root, path, &fd, NULL, NULL, 0) != CG_OK)
        e = errno;
    if (root != AT_FDCWD)
        close(root);
    if (fd < 0) {
        snprintf(why, sizeof why, "%s: %s", path, strerror(e));
        return tool_error(e == ENOENT ? "FileNotFoundError" : "OSError", why);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)IMAGE_MAX) {
        close(fd);
        snprintf(why, sizeof why, "%s: %s", path, !S_ISREG(st.st_mode)
                 ? "not a regular file" : "larger than the 16 MiB open_image shows");
        return tool_error(S_ISREG(st.st_mode) ? "ImageTooLarge" : "NotAnImage", why);
    }
    unsigned char *bytes = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (bytes && got < (size_t)st.st_size) {
        ssize_t n = read(fd, bytes + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    unsigned width, height;
    const char *mime = bytes ? image_sniff(bytes, got, &width, &height) : NULL;
    if (!mime) {
        free(bytes);
        snprintf(why, sizeof why, "%s is not a PNG, JPEG, GIF, WebP or SVG image", path);
        return tool_error("NotAnImage", why);
    }
    json_t *shown;
    if (strcmp(mime, "image/svg+xml") == 0) {
        bytes[got] = '\0';
        shown = json_stringn((const char *)bytes, got); /* NULL if not UTF-8 */
    } else {
        size_t cap = sodium_base64_ENCODED_LEN(got, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc(cap);
        shown = b64 ? json_string(sodium_bin2base64(b64, cap, bytes, got,
                                                    sodium_base64_VARIANT_ORIGINAL)) : NULL;
        free(b64);
    }
    free(bytes);
    if (!shown)
        return tool_error("NotAnImage", "the SVG is not valid UTF-8");
    snprintf(why, sizeof why, "<image %s, %ux%u>", path, width, height);
    json_t *c = json_pack("{s:{s:s}, s:{s:{s:i, s:i}}}", "data", "text/plain", why,
                          "metadata", mime, "width", width, "height", height);
    json_object_set_new(json_object_get(c, "data"), mime, shown);
    kernel_publish(k, req, "display_data", c);
    return json_pack("{s:s, s:s, s:i, s:i}", "status", "ok", "mime", mime, "width", width,
                     "height", height);
}

static const struct tool {
    const char *target;
    tool_fn fn;
} tools[] = {
    { "cellgate.open_image", tool_open_image },
};

static const struct tool *
find_tool(const char *target)
{
    for (size_t i = 0; target && i < sizeof tools / sizeof tools[0]; i++)
        if (strcmp(tools[i].target, target) == 0)
            return &tools[i];
    return NULL;
}

/* Runs one request on comm id and publishes the result as a comm_msg. */
static void
run_tool(struct kernel *k, const struct tool *t, const wire_msg_t *req, const char *id,
         json_t *data)
{
    json_t *result = json_is_object(data) ? t->fn(k, req, data)
                                          : tool_error("ValueError", "data must be an object");
    kernel_publish(k, req, "comm_msg", json_pack("{s:s, s:o}", "comm_id", id, "data", result));
}

bool
tools_comm_open(struct kernel *k, const wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");
    const struct tool *t = find_tool(kernel_str_field(req, "target_name"));
    json_t *data = json_object_get(req->content, "data");

    if (!t || !id)
        return false;
    if (json_is_object(data) && json_object_size(data) == 0
        && k->n_comms < sizeof k->comms / sizeof k->comms[0] && strlen(id) < sizeof k->comms[0].id) {
        /* No request yet: the comm stays open for comm_msg requests. */
        memcpy(k->comms[k->n_comms].id, id, strlen(id) + 1);
        k->comms[k->n_comms++].target = t->target;
        return true;
    }
    run_tool(k, t, req, id, data);
    kernel_publish(k, req, "comm_close", json_pack("{s:s, s:{}}", "comm_id", id, "data"));
    return true;
}

void
tools_comm_msg(struct kernel *k, const wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");

    for (size_t i = 0; id && i < k->n_comms; i++)
        if (strcmp(k->comms[i].id, id) == 0) {
            run_tool(k, find_tool(k->comms[i].target), req, id,
                     json_object_get(req->content, "data"));
            return;
        }
    log_debug("comm_msg for a comm we do not have: ignored");
}

void
tools_comm_close(struct kernel *k, const wire_msg_t *req)
{
    const char *id = kernel_str_field(req, "comm_id");

    for (size_t i = 0; id && i < k->n_comms; i++)
        if (strcmp(k->comms[i].id, id) == 0) {
            k->comms[i] = k->comms[--k->n_comms];
            return;
        }
}

json_t *
tools_comm_info(const struct kernel *k, const char *target)
{
    json_t *comms = json_object();

    for (size_t i = 0; i < k->n_comms; i++)
        if (!target || strcmp(target, k->comms[i].target) == 0)
            json_object_set_new(comms, k->comms[i].id,
                                json_pack("{s:s}", "target_name", k->comms[i].target));
    return comms;
}
