/*
 * tools.c - comms for the client's tools (see tools.h). Each tool is one
 * row of the table below: a target name and a function from the request's
 * data to its result ({"status": "ok", ...} or an error object).
 */
#include "tools.h"

#include "display.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/syscall.h>

typedef json_t *(*tool_fn)(struct kernel *k, const wire_msg_t *req, json_t *data);

static json_t *
tool_error(const char *ename, const char *evalue)
{
    return json_pack("{s:s, s:s, s:s}", "status", "error", "ename", ename, "evalue", evalue);
}

/*
 * Opens path as the box sees it, for reading: relative paths are under
 * /mnt/data; resolution stays inside the box's root (RESOLVE_IN_ROOT:
 * symlinks and ".." planted in the box cannot reach a host path). Without
 * the box, relative to the kernel's directory. Returns an fd or -1/errno.
 */
static int
open_in_box(struct kernel *k, const char *path)
{
    char root_path[64], full[4096];
    struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                            .resolve = RESOLVE_NO_MAGICLINKS };
    int root = AT_FDCWD;

    if (k->box) {
        snprintf(root_path, sizeof root_path, "/proc/%ld/root", (long)box_init_pid(k->box));
        root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            return -1;
        how.resolve |= RESOLVE_IN_ROOT;
        if (path[0] != '/') {
            snprintf(full, sizeof full, "%s/%s", BOX_HOME, path);
            path = full;
        }
    }
    int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
    int e = errno;
    if (root >= 0)
        close(root);
    errno = e;
    return fd;
}

/* cellgate.open_image {path} -> {mime, width, height} + a display_data. */
static json_t *
tool_open_image(struct kernel *k, const wire_msg_t *req, json_t *data)
{
    const char *path = json_string_value(json_object_get(data, "path"));
    char why[4200], err[256];
    unsigned char *bytes;
    size_t len;
    json_t *c;
    struct display_shown shown;

    if (!path || !*path)
        return tool_error("ValueError", "open_image needs a \"path\"");
    int fd = open_in_box(k, path);
    if (fd < 0) {
        snprintf(why, sizeof why, "%s: %s", path, strerror(errno));
        return tool_error(errno == ENOENT ? "FileNotFoundError" : "OSError", why);
    }
    int rc = display_read_fd(fd, &bytes, &len, err, sizeof err);
    close(fd);
    if (rc != CG_OK) {
        snprintf(why, sizeof why, "%s: %s", path, err);
        return tool_error(rc == CG_ETOOBIG ? "ImageTooLarge" : rc == CG_EINVAL ? "NotAnImage"
                                                                              : "OSError", why);
    }
    rc = display_bundle(bytes, len, path, NULL, DISPLAY_IMAGES, &c, &shown, why, sizeof why);
    free(bytes);
    if (rc != CG_OK)
        return tool_error(rc == CG_ENOMEM ? "MemoryError" : "NotAnImage", why);
    kernel_publish(k, req, "display_data", c);
    return json_pack("{s:s, s:s, s:i, s:i}", "status", "ok", "mime", shown.mime, "width",
                     shown.width, "height", shown.height);
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
