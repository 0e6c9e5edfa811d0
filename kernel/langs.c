/*
 * langs.c - the language table (see langs.h). Adding a language is one
 * entry here plus its driver in drivers/.
 */
#include "langs.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const python_argv[] = {
    /* -I: ignore PYTHON* variables and the user site; the driver puts the
     * working directory on sys.path itself, as ipykernel does. The
     * program is the small bootstrap; the driver follows on fd 3. */
    "/usr/bin/python3", "-I", "-c", "@DRIVER@", NULL,
};

static const char *const bash_argv[] = {
    /* Interactive, so SIGINT abandons the running line and keeps state. */
    "/bin/bash", "--norc", "--noprofile", "--noediting", "-i", NULL,
};

static const struct lang table[] = {
    {
        .name = "python", .aliases = "python3 py",
        .display_name = "Python 3 (cellgate)", .language = "python",
        .file_extension = ".py", .mimetype = "text/x-python",
        .pygments_lexer = "ipython3", .codemirror_mode = "python",
        .nbconvert_exporter = "python",
        .program = "/usr/bin/python3", .version_flag = "--version",
        .version_bare = "-c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'",
        .driver = "python-boot", .preload = "python", .kind = RT_JSONL,
        .argv = python_argv,
        .banner = "cellgate: Python in a Jupyter kernel written in C",
    },
    {
        .name = "bash", .aliases = "sh shell",
        .display_name = "Bash (cellgate)", .language = "bash",
        .file_extension = ".sh", .mimetype = "text/x-sh",
        .pygments_lexer = "bash", .codemirror_mode = "shell",
        .nbconvert_exporter = "script",
        .program = "/bin/bash", .version_flag = "--version",
        .version_bare = "-c 'echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}'",
        .driver = "bash", .kind = RT_SHELL, .argv = bash_argv,
        .banner = "cellgate: Bash in a Jupyter kernel written in C",
    },
};

size_t
langs_count(void)
{
    return sizeof table / sizeof table[0];
}

const struct lang *
langs_at(size_t i)
{
    return i < langs_count() ? &table[i] : NULL;
}

size_t
langs_index(const struct lang *l)
{
    return (size_t)(l - table);
}

/* True if word appears in the space-separated list. */
static bool
in_list(const char *list, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = list; *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p += len;
        p += strspn(p, " ");
    }
    return false;
}

const struct lang *
langs_find(const char *name)
{
    for (size_t i = 0; i < langs_count(); i++)
        if (strcmp(table[i].name, name) == 0 || in_list(table[i].aliases, name))
            return &table[i];
    return NULL;
}

bool
lang_available(const struct lang *l)
{
    return access(l->program, X_OK) == 0;
}

int
lang_first_line(const struct lang *l, const char *args, char *out, size_t len)
{
    char cmd[1024];
    FILE *p;

    out[0] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 </dev/null", l->program, args);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] ? 0 : -1;
}
