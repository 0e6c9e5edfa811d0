/*
 * specs.c - the kernelspecs `cellgate install` writes, read back (see
 * specs.h).
 */
#include "gateway/specs.h"

#include "common/cgerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPECS_MAX 64
#define FILES_MAX 8
#define RESOURCE_MAX (4u << 20)

struct spec {
    char name[128];             /* directory name: the kernelspec's name */
    char dir[4096];             /* where its files are */
    json_t *json;               /* kernel.json */
    char files[FILES_MAX][64];  /* resource files (logos) */
    size_t n_files;
};

struct specs {
    struct spec v[SPECS_MAX];
    size_t n;
};

/* Runs cellgate install --prefix prefix, its output to /dev/null. */
static int
run_install(const char *bin, const char *prefix, char *err, size_t errlen)
{
    pid_t pid = fork();
    int status;

    if (pid < 0)
        return cg_fail(err, errlen, CG_ESYS, "fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execl(bin, bin, "install", "--prefix", prefix, (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cg_fail(err, errlen, CG_ESYS, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cg_fail(err, errlen, CG_EREMOTE, "%s install --prefix %s failed (status %d)", bin,
                       prefix, status);
    return CG_OK;
}

/* Loads one kernelspec directory; false if it holds no usable kernel.json. */
static bool
load_one(struct spec *sp, const char *kernels, const char *name)
{
    char path[4200];
    json_error_t je;

    if (snprintf(sp->name, sizeof sp->name, "%s", name) >= (int)sizeof sp->name
        || snprintf(sp->dir, sizeof sp->dir, "%s/%s", kernels, name) >= (int)sizeof sp->dir)
        return false;
    snprintf(path, sizeof path, "%s/kernel.json", sp->dir);
    sp->json = json_load_file(path, 0, &je);
    if (!json_is_object(sp->json) || !json_is_array(json_object_get(sp->json, "argv"))) {
        json_decref(sp->json);
        sp->json = NULL;
        return false;
    }
    sp->n_files = 0;
    DIR *d = opendir(sp->dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && sp->n_files < FILES_MAX)
        if (strncmp(e->d_name, "logo-", 5) == 0 && strlen(e->d_name) < sizeof sp->files[0])
            memcpy(sp->files[sp->n_files++], e->d_name, strlen(e->d_name) + 1); /* fits: checked */
    if (d)
        closedir(d);
    return true;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(((const struct spec *)a)->name, ((const struct spec *)b)->name);
}

struct specs *
specs_load(const char *cellgate_bin, const char *dir, char *err, size_t errlen)
{
    char prefix[4096], kernels[4200];
    struct specs *s;

    if (snprintf(prefix, sizeof prefix, "%s/specs", dir) >= (int)sizeof prefix) {
        cg_fail(err, errlen, CG_ETOOBIG, "directory name too long");
        return NULL;
    }
    if (run_install(cellgate_bin, prefix, err, errlen) != CG_OK)
        return NULL;
    snprintf(kernels, sizeof kernels, "%s/share/jupyter/kernels", prefix);
    DIR *d = opendir(kernels);
    if (!d) {
        cg_fail(err, errlen, CG_ESYS, "%s: %s", kernels, strerror(errno));
        return NULL;
    }
    s = calloc(1, sizeof *s);
    struct dirent *e;
    while (s && (e = readdir(d)) && s->n < SPECS_MAX)
        if (e->d_name[0] != '.' && load_one(&s->v[s->n], kernels, e->d_name))
            s->n++;
    closedir(d);
    if (!s) {
        cg_fail(err, errlen, CG_ENOMEM, "no memory");
        return NULL;
    }
    if (s->n == 0) {
        cg_fail(err, errlen, CG_ENOTFOUND, "cellgate install wrote no kernelspec");
        free(s);
        return NULL;
    }
    qsort(s->v, s->n, sizeof s->v[0], by_name);
    return s;
}

void
specs_destroy(struct specs **sp)
{
    if (!sp || !*sp)
        return;
    for (size_t i = 0; i < (*sp)->n; i++)
        json_decref((*sp)->v[i].json);
    free(*sp);
    *sp = NULL;
}

static const struct spec *
find(const struct specs *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

const char *
specs_default(const struct specs *s)
{
    return find(s, "cellgate") ? "cellgate" : s->v[0].name;
}

const json_t *
specs_spec(const struct specs *s, const char *name)
{
    const struct spec *sp = find(s, name);
    return sp ? sp->json : NULL;
}

/* The model of one kernelspec; resources map "logo-64x64" to its URL. */
static json_t *
model(const struct spec *sp, const char *base)
{
    json_t *res = json_object();
    for (size_t i = 0; res && i < sp->n_files; i++) {
        char key[64], url[512];
        const char *dot = strrchr(sp->files[i], '.');
        size_t n = dot ? (size_t)(dot - sp->files[i]) : strlen(sp->files[i]);
        snprintf(key, sizeof key, "%.*s", (int)n, sp->files[i]);
        snprintf(url, sizeof url, "%s/kernelspecs/%s/%s", base, sp->name, sp->files[i]);
        json_object_set_new(res, key, json_string(url));
    }
    return json_pack("{s:s, s:O, s:o}", "name", sp->name, "spec", sp->json, "resources",
                     res ? res : json_object());
}

json_t *
specs_model_json(const struct specs *s, const char *name, const char *base)
{
    const struct spec *sp = find(s, name);
    return sp ? model(sp, base) : NULL;
}

json_t *
specs_all_json(const struct specs *s, const char *base)
{
    json_t *all = json_object();
    for (size_t i = 0; all && i < s->n; i++)
        if (json_object_set_new(all, s->v[i].name, model(&s->v[i], base)) != 0) {
            json_decref(all);
            return NULL;
        }
    return all ? json_pack("{s:s, s:o}", "default", specs_default(s), "kernelspecs", all) : NULL;
}

static const char *
mime_of(const char *file)
{
    const char *dot = strrchr(file, '.');
    if (dot && strcmp(dot, ".png") == 0)
        return "image/png";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

int
specs_resource(const struct specs *s, const char *name, const char *file, unsigned char **data,
               size_t *len, const char **ctype)
{
    const struct spec *sp = find(s, name);
    char path[4200];
    struct stat st;

    *data = NULL;
    if (!sp)
        return CG_ENOTFOUND;
    size_t i = 0;
    while (i < sp->n_files && strcmp(sp->files[i], file) != 0)
        i++;
    if (i == sp->n_files)
        return CG_ENOTFOUND;
    snprintf(path, sizeof path, "%s/%s", sp->dir, sp->files[i]);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return CG_ENOTFOUND;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > RESOURCE_MAX) {
        close(fd);
        return CG_ENOTFOUND;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    ssize_t n = b ? read(fd, b, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        free(b);
        return b ? CG_ESYS : CG_ENOMEM;
    }
    *data = b;
    *len = (size_t)n;
    *ctype = mime_of(file);
    return CG_OK;
}
