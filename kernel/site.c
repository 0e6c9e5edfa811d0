/*
 * site.c - where a kernel's code runs (see site.h).
 */
#include "kernel/site.h"

#include "common/cgerr.h"
#include "common/log.h"
#include "kernel/procs.h"
#include "sandbox/boxfs.h"

#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>

void
site_init(struct site *s, struct box *box, const char *error, const struct box_limits *limits)
{
    *s = (struct site){ .box = box, .limits = *limits };
    snprintf(s->error, sizeof s->error, "%s", error ? error : "");
    if (box)
        s->place = (struct rt_place){ .spawner = box_spawner(box), .home = BOX_HOME };
    else
        s->place = (struct rt_place){ .spawner = spawn_plain() };
}

void
site_rebuildable(struct site *s, const struct box_opts *bo, const char *egress_id,
                 const char *cache_dir)
{
    s->rebuild = true;
    s->bo = *bo;
    snprintf(s->data_dir, sizeof s->data_dir, "%s", bo->data_dir);
    snprintf(s->name, sizeof s->name, "%s", bo->name);
    snprintf(s->egress_id, sizeof s->egress_id, "%s", egress_id ? egress_id : "");
    snprintf(s->cache_dir, sizeof s->cache_dir, "%s", cache_dir ? cache_dir : "");
    s->bo.data_dir = s->data_dir;
    s->bo.name = s->name;
}

bool
site_take_rebuilt(struct site *s, char *why, size_t len)
{
    if (!s->rebuilt[0])
        return false;
    snprintf(why, len, "%s", s->rebuilt);
    s->rebuilt[0] = '\0';
    return true;
}

/* Builds a fresh box in place of one that died, and its package egress.
 * CG_OK, or an error with err filled (the next place tries again). */
static int
rebuild(struct site *s, char *err, size_t errlen)
{
    s->bo.volume = s->volume; /* box_new takes it */
    s->volume = NULL;
    struct box *box = box_new(&s->bo, err, errlen);
    s->bo.volume = NULL;

    if (!box || box_ready(box, err, errlen) != CG_OK) {
        box_destroy(&box);
        return CG_ESYS;
    }
    log_info("built a fresh box (%s)", s->rebuilt);
    s->box = box;
    s->error[0] = '\0';
    s->place.spawner = box_spawner(box);
    egress_destroy(&s->egress);
    if (s->egress_id[0])
        s->egress = egress_new(s->egress_id, s->cache_dir);
    return CG_OK;
}

int
site_place(struct site *s, struct rt_place *where, char *err, size_t errlen)
{
    char why[512];

    if (s->rebuild && !s->box && rebuild(s, err, errlen) != CG_OK)
        return CG_ESYS;
    if (s->error[0])
        return cg_fail(err, errlen, CG_ESYS, "%s", s->error);
    if (s->box && s->egress) {
        if (box_ready(s->box, err, errlen) != CG_OK)
            return CG_ESYS;
        if (egress_start(s->egress, s->box, why, sizeof why) != CG_OK)
            log_warn("package installs in the box will not work: %s", why);
    }
    *where = s->place;
    where->env = egress_env(s->egress);
    return CG_OK;
}

int
site_root_open(const struct site *s, int *root, char *err, size_t errlen)
{
    *root = AT_FDCWD;
    if (s->error[0])
        return cg_fail(err, errlen, CG_ESYS, "%s", s->error);
    if (!s->box)
        return CG_OK;
    /* Ready first: until then /mnt/data is not yet its bounded volume, and
     * a file written there would be hidden under it. */
    if (box_ready(s->box, err, errlen) != CG_OK)
        return CG_ESYS;
    return boxfs_root_open(box_init_pid(s->box), root, err, errlen);
}

const char *
site_path(const struct site *s, const char *path, char *buf, size_t len)
{
    if (path[0] == '/' || !s->box)
        return path;
    snprintf(buf, len, "%s/%s", BOX_HOME, path);
    return buf;
}

uint64_t
site_oom_kills(const struct site *s)
{
    return s->box ? box_oom_kills(s->box) : 0;
}

void
site_mark(const struct site *s, struct site_mark *m)
{
    *m = (struct site_mark){ 0 };
    if (!s->box)
        return;
    m->pids_hits = box_pids_hits(s->box);
    m->since = procs_now();
}

bool
site_pids_reached(const struct site *s, const struct site_mark *m)
{
    int root;

    if (!s->box || !s->limits.pids)
        return false;
    if (box_pids_counted(s->box))
        return box_pids_hits(s->box) > m->pids_hits;
    if (boxfs_root_open(box_init_pid(s->box), &root, NULL, 0) != CG_OK)
        return false;
    long n = procs_count(root);
    close(root);
    return n >= 0 && (uint64_t)n >= s->limits.pids;
}

long
site_end_cell(const struct site *s, const struct site_mark *m, pid_t driver, const pid_t *spare,
              size_t n_spare)
{
    int root;

    if (!s->box || boxfs_root_open(box_init_pid(s->box), &root, NULL, 0) != CG_OK)
        return -1;
    long n = procs_end_cell(root, driver, m->since, spare, n_spare);
    close(root);
    return n;
}

void
site_lost(struct site *s, const char *why)
{
    log_error("the box is gone: %s", why);
    if (s->rebuild) {
        snprintf(s->error, sizeof s->error, "the box is gone (%s): the next cell builds a "
                 "fresh one", why);
        snprintf(s->rebuilt, sizeof s->rebuilt, "%s", why);
        if (s->box) { /* the fresh box's /mnt/data, bounded as it was */
            box_keep_data(s->box);
            s->volume = box_take_volume(s->box);
        }
        return;
    }
    snprintf(s->error, sizeof s->error, "the box is gone (%s): restart the kernel for a fresh "
             "one", why);
}

long
site_zombies(const struct site *s, pid_t driver)
{
    int root;

    if (!s->box || boxfs_root_open(box_init_pid(s->box), &root, NULL, 0) != CG_OK)
        return 0;
    long n = procs_zombies(root, driver);
    close(root);
    return n < 0 ? 0 : n;
}

bool
site_box_lost(const struct site *s)
{
    return s->rebuild && !s->box;
}

void
site_close(struct site *s)
{
    box_destroy(&s->box);
}

void
site_destroy(struct site *s)
{
    site_close(s);
    boxfs_volume_release(&s->volume, s->bo.keep_data);
}
