/*
 * specs.h - the kernelspecs the gateway offers: exactly those `cellgate
 * install` writes (one per language this machine has, and "cellgate"),
 * produced by running the sibling `cellgate install --prefix DIR` once at
 * start-up into a private directory and read back from there, so the
 * gateway never keeps a second copy of how a kernelspec is made.
 */
#ifndef CG_GW_SPECS_H
#define CG_GW_SPECS_H

#include <jansson.h>
#include <stddef.h>

struct specs;

/*
 * Runs `cellgate install --prefix DIR/specs` (cellgate_bin: the cellgate
 * program) with dir a private directory of the caller's, and loads every
 * kernel.json. Returns the set, or NULL with err filled.
 */
struct specs *specs_load(const char *cellgate_bin, const char *dir, char *err, size_t errlen);

/* Frees the set and nulls *s. Idempotent. Leaves the files to the caller. */
void specs_destroy(struct specs **s);

/* The default kernelspec's name ("cellgate"). */
const char *specs_default(const struct specs *s);

/* GET /api/kernelspecs: {"default", "kernelspecs": {name: model}}; a new
 * reference, NULL on no memory. base is the URL prefix of resources ("" or
 * "/prefix"). */
json_t *specs_all_json(const struct specs *s, const char *base);

/* One kernelspec's model {"name", "spec", "resources"} (a new reference),
 * or NULL when no kernelspec has that name. */
json_t *specs_model_json(const struct specs *s, const char *name, const char *base);

/* The kernel.json of a kernelspec (borrowed), or NULL when unknown. */
const json_t *specs_spec(const struct specs *s, const char *name);

/*
 * Reads one resource file (a logo) of a kernelspec: only names that its
 * directory holds, never a path. On CG_OK *data is malloc'd (*len bytes,
 * owned by the caller) and *ctype a static MIME type. CG_ENOTFOUND when the
 * kernelspec or the file is unknown.
 */
int specs_resource(const struct specs *s, const char *name, const char *file,
                   unsigned char **data, size_t *len, const char **ctype);

#endif
