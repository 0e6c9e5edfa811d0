/*
 * fuzz_regpath.c - libFuzzer target for regpath_parse, which reads every
 * request line the box sends to the registry gateway.
 *
 * Input: the method, a space, the target (the first space splits them; no
 * space: all of it is the target of a GET). Both are cut at a NUL, as the
 * server hands over C strings. A request accepted must be canonical: its
 * name valid for its ecosystem, its file and version made of safe
 * characters only, no segment empty or a dot segment, and the path rebuilt
 * from it must parse to the same request (so what the server forwards
 * upstream is what was checked).
 */
#include "registry/regpath.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No segment of s is empty, "." or "..". */
static void
check_segments(const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "/");
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            abort();
        if (s[n] == '\0')
            return;
        s += n + 1;
    }
}

/* Only these in a name, a file path or a version: nothing to re-encode. */
static void
check_chars(const char *s, const char *allowed)
{
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9')
            && !strchr(allowed, *s))
            abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[8192];
    char err[256], path[4096], norm[REGPATH_NAME_MAX + 1];
    struct reg_req r, again;
    const char *method = "GET", *target = buf;

    if (size >= sizeof buf)
        size = sizeof buf - 1;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *sp = memchr(buf, ' ', size);
    if (sp) {
        *sp = '\0';
        method = buf;
        target = sp + 1;
    }
    err[0] = '\0';
    enum regpath_status st = regpath_parse(method, target, &r, err, sizeof err);
    if (st != REGPATH_OK) {
        if ((st != REGPATH_BAD_REQUEST && st != REGPATH_NOT_FOUND && st != REGPATH_BAD_METHOD)
            || err[0] == '\0' || strlen(err) >= sizeof err)
            abort();
        return 0;
    }
    if (err[0] != '\0')
        abort();
    check_segments(r.name);
    if (r.file[0])
        check_segments(r.file);
    check_chars(r.version, ".-+!_");
    switch (r.kind) {
    case REG_NPM_PACKUMENT:
    case REG_NPM_TARBALL:
        if (r.eco != REG_NPM || !regpath_npm_name_ok(r.name))
            abort();
        check_chars(r.file, ".-+");
        if (r.kind == REG_NPM_PACKUMENT)
            snprintf(path, sizeof path, "/npm/%s", r.name);
        else
            snprintf(path, sizeof path, "/npm/%s/-/%s", r.name, r.file);
        break;
    case REG_PYPI_PROJECT:
    case REG_PYPI_FILE:
        if (r.eco != REG_PYPI || !regpath_pypi_normalize(r.name, norm, sizeof norm)
            || strcmp(norm, r.name) != 0)
            abort();
        check_chars(r.file, "-._~+!/");
        if (r.file[0] == '/' || strstr(r.file, "/."))
            abort();
        if (r.kind == REG_PYPI_PROJECT)
            snprintf(path, sizeof path, "/pypi/simple/%s/", r.name);
        else
            snprintf(path, sizeof path, "/pypi/files/%s", r.file);
        break;
    default:
        abort();
    }
    if (regpath_parse(r.head ? "HEAD" : "GET", path, &again, err, sizeof err) != REGPATH_OK
        || again.eco != r.eco || again.kind != r.kind || again.head != r.head
        || strcmp(again.name, r.name) != 0 || strcmp(again.version, r.version) != 0
        || strcmp(again.file, r.file) != 0)
        abort();
    return 0;
}
