/*
 * kernelspec.c - write kernelspecs (see kernelspec.h).
 */
#include "cli/kernelspec.h"

#include "common/cgerr.h"
#include "common/langs.h"
#include "common/embed.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

EMBED_FILE(cg_logo32, "kernelspecs/logo-32x32.png");
EMBED_FILE(cg_logo64, "kernelspecs/logo-64x64.png");
EMBED_FILE(cg_logosvg, "kernelspecs/logo-svg.svg");

/* mkdir -p. */
static int
make_dirs(const char *path, char *err, size_t errlen)
{
    char tmp[4096];

    if (strlen(path) >= sizeof tmp)
        return cg_fail(err, errlen, CG_ETOOBIG, "path too long: %s", path);
    memcpy(tmp, path, strlen(path) + 1); /* length checked above */
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return cg_fail(err, errlen, CG_ESYS, "cannot create %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return cg_fail(err, errlen, CG_ESYS, "cannot create %s: %s", tmp, strerror(errno));
    return CG_OK;
}

static int
write_file(const char *dir, const char *name, const void *data, size_t len, char *err,
           size_t errlen)
{
    char path[4200];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f)
        return cg_fail(err, errlen, CG_ESYS, "cannot write %s: %s", path, strerror(errno));
    size_t n = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || n != len)
        return cg_fail(err, errlen, CG_ESYS, "cannot write %s: %s", path, strerror(errno));
    return CG_OK;
}

static int
write_spec(const char *kernels_dir, const char *spec_name, const struct lang *l,
           const char *display_name, const char *exe, char *err, size_t errlen)
{
    char dir[4096], version[64];
    int rc;

    snprintf(dir, sizeof dir, "%s/%s", kernels_dir, spec_name);
    if ((rc = make_dirs(dir, err, errlen)) != CG_OK)
        return rc;
    /* kernel_info can name the version before the driver is up. */
    lang_first_line(l, l->version_bare, version, sizeof version);
    json_t *spec = json_pack("{s:[s, s, s, s, s, s], s:s, s:s, s:s, s:{s:s}, s:{s:b, s:s}}",
                             "argv", exe, "kernel", "-f", "{connection_file}", "--language",
                             l->name, "display_name", display_name, "language", l->language,
                             "interrupt_mode", "message", "env", "CELLGATE_LANGUAGE_VERSION",
                             version, "metadata", "debugger", 0, "cellgate_language", l->name);
    char *text = spec ? json_dumps(spec, JSON_INDENT(2)) : NULL;
    json_decref(spec);
    if (!text)
        return cg_fail(err, errlen, CG_ENOMEM, "out of memory");
    rc = write_file(dir, "kernel.json", text, strlen(text), err, errlen);
    free(text);
    static const struct {
        const char *name, *start, *end;
    } logos[] = {
        { "logo-32x32.png", cg_logo32_start, cg_logo32_end },
        { "logo-64x64.png", cg_logo64_start, cg_logo64_end },
        { "logo-svg.svg", cg_logosvg_start, cg_logosvg_end },
    };
    for (size_t i = 0; rc == CG_OK && i < sizeof logos / sizeof logos[0]; i++)
        rc = write_file(dir, logos[i].name, logos[i].start,
                        (size_t)(logos[i].end - logos[i].start), err, errlen);
    if (rc == CG_OK)
        printf("installed kernelspec %-20s in %s\n", spec_name, dir);
    return rc;
}

int
kernelspec_install(const char *kernels_dir, const char *exe, char *err, size_t errlen)
{
    char name[96];
    int rc;

    for (size_t i = 0; i < langs_count(); i++) {
        const struct lang *l = langs_at(i);
        if (!lang_works(l)) {
            printf("skipped  kernelspec cellgate-%-11s (%s missing or not working)\n", l->name,
                   l->program);
            continue;
        }
        snprintf(name, sizeof name, "cellgate-%s", l->name);
        if ((rc = write_spec(kernels_dir, name, l, l->display_name, exe, err, errlen)) != CG_OK)
            return rc;
    }
    const struct lang *py = langs_find("python");
    if (py && lang_works(py))
        return write_spec(kernels_dir, "cellgate", py, "cellgate (Python, %%bash and more)", exe,
                          err, errlen);
    return CG_OK;
}
