/*
 * open_image.c - cellgate.open_image {path} -> {mime, width, height} and a
 * display_data of the image on IOPub. The file is opened inside the box's
 * root (sandbox/boxfs.h: no symlink leads out of it) and must be an image
 * display.c knows, within its size bound.
 */
#include "kernel/tools/tool.h"

#include "common/cgerr.h"
#include "kernel/display.h"
#include "sandbox/boxfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

json_t *
tool_open_image(struct tool_env *env, const wire_msg_t *req, json_t *data, struct tool_job **job)
{
    const char *path = json_string_value(json_object_get(data, "path"));
    char why[4200];
    unsigned char *bytes;
    size_t len;
    json_t *c;
    struct display_shown shown;
    int root, fd = -1, e = 0;

    (void)job;
    if (!path || !*path)
        return tool_error("ValueError", "open_image needs a \"path\"");
    if (site_root_open(env->site, &root, why, sizeof why) != CG_OK)
        return tool_error(env->site->error[0] ? "RuntimeUnavailable" : "OSError", "%s", why);
    if (boxfs_open_read(root, path, &fd, NULL, NULL, 0) != CG_OK)
        e = errno;
    if (root != AT_FDCWD)
        close(root);
    if (fd < 0)
        return tool_error(e == ENOENT ? "FileNotFoundError" : "OSError", "%s: %s", path,
                          strerror(e));
    int rc = display_read_fd(fd, &bytes, &len, why, sizeof why);
    close(fd);
    if (rc != CG_OK)
        return tool_error(rc == CG_ETOOBIG ? "ImageTooLarge" : rc == CG_EINVAL ? "NotAnImage"
                                                                              : "OSError",
                          "%s: %s", path, why);
    rc = display_bundle(bytes, len, path, NULL, DISPLAY_IMAGES, &c, &shown, why, sizeof why);
    free(bytes);
    if (rc != CG_OK)
        return tool_error(rc == CG_ENOMEM ? "MemoryError" : "NotAnImage", "%s", why);
    chan_publish(env->chan, req, "display_data", c);
    return json_pack("{s:s, s:s, s:i, s:i}", "status", "ok", "mime", shown.mime, "width",
                     shown.width, "height", shown.height);
}
