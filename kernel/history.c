/*
 * history.c - input history (see history.h).
 */
#include "kernel/history.h"

#include "common/cgerr.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    int line;
    char *input;
    char *output; /* may be NULL */
};

struct history {
    struct entry *e; /* oldest first */
    size_t n, cap;
};

struct history *
history_new(void)
{
    return calloc(1, sizeof(struct history));
}

void
history_destroy(struct history **hp)
{
    if (!hp || !*hp)
        return;
    struct history *h = *hp;
    for (size_t i = 0; i < h->n; i++) {
        free(h->e[i].input);
        free(h->e[i].output);
    }
    free(h->e);
    free(h);
    *hp = NULL;
}

int
history_add(struct history *h, int line, const char *input, const char *output)
{
    if (h->n == HISTORY_MAX) {
        free(h->e[0].input);
        free(h->e[0].output);
        memmove(h->e, h->e + 1, (h->n - 1) * sizeof *h->e);
        h->n--;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        struct entry *e = realloc(h->e, cap * sizeof *e);
        if (!e)
            return CG_ENOMEM;
        h->e = e;
        h->cap = cap;
    }
    struct entry *x = &h->e[h->n];
    x->line = line;
    x->input = strdup(input);
    x->output = output ? strdup(output) : NULL;
    if (!x->input || (output && !x->output)) {
        free(x->input);
        free(x->output);
        return CG_ENOMEM;
    }
    h->n++;
    return CG_OK;
}

static json_t *
row(const struct entry *x, bool output)
{
    if (output)
        return json_pack("[i, i, [s, s?]]", HISTORY_SESSION, x->line, x->input, x->output);
    return json_pack("[i, i, s]", HISTORY_SESSION, x->line, x->input);
}

static json_int_t
int_field(const json_t *o, const char *name, json_int_t dflt)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* True if an earlier-listed (newer) entry in out already has input. */
static bool
seen_input(const struct history *h, const size_t *picked, size_t n, const char *input)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h->e[picked[i]].input, input) == 0)
            return true;
    return false;
}

json_t *
history_query(const struct history *h, const json_t *req)
{
    const char *type = json_string_value(json_object_get(req, "hist_access_type"));
    bool output = json_is_true(json_object_get(req, "output"));
    json_t *list = json_array();
    size_t *picked = NULL, np = 0;

    if (!list || !type || h->n == 0)
        return list;
    picked = calloc(h->n, sizeof *picked);
    if (!picked)
        return list;

    if (strcmp(type, "tail") == 0) {
        json_int_t n = int_field(req, "n", 10);
        size_t from = n <= 0 || (size_t)n >= h->n ? 0 : h->n - (size_t)n; /* 0: all */
        for (size_t i = from; i < h->n; i++)
            picked[np++] = i;
    } else if (strcmp(type, "range") == 0) {
        json_int_t session = int_field(req, "session", 0);
        json_int_t start = int_field(req, "start", 0), stop = int_field(req, "stop", 0);
        /* 0 and negative sessions are relative to this one (IPython). */
        if (session == 0 || session == HISTORY_SESSION)
            for (size_t i = 0; i < h->n; i++)
                if (h->e[i].line >= start && (stop <= 0 || h->e[i].line < stop))
                    picked[np++] = i;
    } else if (strcmp(type, "search") == 0) {
        const char *pattern = json_string_value(json_object_get(req, "pattern"));
        bool unique = json_is_true(json_object_get(req, "unique"));
        json_int_t n = int_field(req, "n", 0);
        /* Newest first while choosing, so unique keeps the latest copy. */
        for (size_t i = h->n; pattern && i-- > 0;) {
            if (n > 0 && np >= (size_t)n)
                break;
            if (fnmatch(pattern, h->e[i].input, 0) != 0)
                continue;
            if (unique && seen_input(h, picked, np, h->e[i].input))
                continue;
            picked[np++] = i;
        }
        for (size_t i = 0; i < np / 2; i++) { /* back to oldest first */
            size_t t = picked[i];
            picked[i] = picked[np - 1 - i];
            picked[np - 1 - i] = t;
        }
    }
    for (size_t i = 0; i < np; i++)
        json_array_append_new(list, row(&h->e[picked[i]], output));
    free(picked);
    return list;
}
