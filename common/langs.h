/*
 * langs.h - the language table: everything cellgate knows about each
 * language is one entry here. Kernelspecs, language_info, `%%name` cell
 * magics and `cellgate doctor` are all generated from it.
 */
#ifndef CG_LANGS_H
#define CG_LANGS_H

#include <stdbool.h>
#include <stddef.h>

/* How the kernel delivers requests to a language's driver. */
enum rt_kind {
    RT_JSONL,   /* JSON lines on the control socket (python, ...) */
    RT_SHELL,   /* bash source lines on the driver's stdin */
};

struct lang {
    const char *name;             /* --language value, %%name, kernelspec suffix */
    const char *aliases;          /* other %% names, space separated, or "" */
    const char *display_name;     /* kernelspec display_name */
    const char *language;         /* kernelspec language, language_info.name */
    const char *file_extension;   /* language_info.file_extension */
    const char *mimetype;         /* language_info.mimetype */
    const char *pygments_lexer;   /* language_info.pygments_lexer */
    const char *codemirror_mode;  /* language_info.codemirror_mode */
    const char *nbconvert_exporter; /* language_info.nbconvert_exporter */
    const char *program;          /* the toolchain binary; absent => unavailable */
    const char *version_bare;     /* `program ARGS` prints just "X.Y.Z" */
    const char *driver;           /* name of the embedded driver source */
    const char *preload;          /* RT_JSONL: driver sent on fd 3 at start
                                     (PROTOCOL.md, "Start-up"), or NULL */
    enum rt_kind kind;
    const char *const *argv;      /* driver command line; "@DRIVER@" => source */
    const char *driver_env;       /* one more VAR=value for the driver, or NULL */
    bool acks_execute;            /* the driver sends "started" before running a cell */
    bool cell_magics;             /* the driver runs "%%name" cells whose name is no
                                     language's (python: %%time, %%writefile ...) */
    const char *banner;           /* kernel_info banner */
};

/* Number of entries in the table. */
size_t langs_count(void);

/* The i-th entry (0 <= i < langs_count()). */
const struct lang *langs_at(size_t i);

/* The entry whose name or alias is name, or NULL. */
const struct lang *langs_find(const char *name);

/* Index of an entry in the table. */
size_t langs_index(const struct lang *l);

/* True if the language's program exists and is executable (cheap: what a
 * kernel checks before starting a runtime). */
bool lang_available(const struct lang *l);

/* True if the toolchain also runs (its version probe succeeds), so a
 * kernelspec for it will not fail on its first cell: what `install` and
 * `doctor` check. Computed once per process. */
bool lang_works(const struct lang *l);

/*
 * Runs `program args` (args is shell text), with stdin from /dev/null, and
 * copies the first line it prints (stderr included) to out, without the
 * newline. Returns 0, or -1 with out empty if nothing could be read.
 */
int lang_first_line(const struct lang *l, const char *args, char *out, size_t len);

/* The embedded driver source for a driver name, or NULL; *len set. */
const char *drivers_source(const char *driver, size_t *len);

#endif
