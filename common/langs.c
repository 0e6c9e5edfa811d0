/*
 * langs.c - the language table (see langs.h). Adding a language is one
 * entry here plus its driver in drivers/.
 */
#include "common/langs.h"

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

static const char *const node_argv[] = { "/usr/bin/node", "-e", "@DRIVER@", NULL };
static const char *const ruby_argv[] = { "/usr/bin/ruby", "-e", "@DRIVER@", NULL };
static const char *const perl_argv[] = { "/usr/bin/perl", "-e", "@DRIVER@", NULL };
static const char *const php_argv[] = { "/usr/bin/php", "-r", "@DRIVER@", NULL };

/* The compiled languages' driver as python_argv, less the site module
 * (-S): it needs nothing from site-packages, and a fresh kernel's first
 * compile waits for its start-up (~12 ms less). */
static const char *const compiled_argv[] = {
    "/usr/bin/python3", "-I", "-S", "-c", "@DRIVER@", NULL,
};

/* Fields every compiled language shares: one driver (compiled.py, run by
 * the Python bootstrap) told which language it serves. */
#define COMPILED(lang_env) \
    .driver = "python-boot", .preload = "compiled", .kind = RT_JSONL, \
    .argv = compiled_argv, .driver_env = "CELLGATE_LANGUAGE=" lang_env, .acks_execute = true, \
    .nbconvert_exporter = "script"

static const struct lang table[] = {
    {
        .name = "python", .aliases = "python3 py",
        .display_name = "Python 3 (cellgate)", .language = "python",
        .file_extension = ".py", .mimetype = "text/x-python",
        .pygments_lexer = "ipython3", .codemirror_mode = "python",
        .nbconvert_exporter = "python",
        .program = "/usr/bin/python3",
        .version_bare = "-c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'",
        .driver = "python-boot", .preload = "python", .kind = RT_JSONL,
        .argv = python_argv, .acks_execute = true, .cell_magics = true,
        .banner = "cellgate: Python in a Jupyter kernel written in C",
    },
    {
        .name = "bash", .aliases = "sh shell",
        .display_name = "Bash (cellgate)", .language = "bash",
        .file_extension = ".sh", .mimetype = "text/x-sh",
        .pygments_lexer = "bash", .codemirror_mode = "shell",
        .nbconvert_exporter = "script",
        .program = "/bin/bash",
        .version_bare = "-c 'echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}'",
        .driver = "bash", .kind = RT_SHELL, .argv = bash_argv, .acks_execute = true,
        .banner = "cellgate: Bash in a Jupyter kernel written in C",
    },
    {
        .name = "javascript", .aliases = "js node",
        .display_name = "JavaScript (Node.js, cellgate)", .language = "javascript",
        .file_extension = ".js", .mimetype = "application/javascript",
        .pygments_lexer = "javascript", .codemirror_mode = "javascript",
        .nbconvert_exporter = "script",
        .program = "/usr/bin/node",
        .version_bare = "-p process.versions.node",
        .driver = "javascript", .kind = RT_JSONL, .argv = node_argv, .acks_execute = true,
        .banner = "cellgate: JavaScript (Node.js)",
    },
    {
        .name = "ruby", .aliases = "rb",
        .display_name = "Ruby (cellgate)", .language = "ruby",
        .file_extension = ".rb", .mimetype = "text/x-ruby",
        .pygments_lexer = "ruby", .codemirror_mode = "ruby", .nbconvert_exporter = "script",
        .program = "/usr/bin/ruby",
        .version_bare = "-e 'print RUBY_VERSION'",
        .driver = "ruby", .kind = RT_JSONL, .argv = ruby_argv, .acks_execute = true,
        .banner = "cellgate: Ruby",
    },
    {
        .name = "perl", .aliases = "pl",
        .display_name = "Perl (cellgate)", .language = "perl",
        .file_extension = ".pl", .mimetype = "text/x-perl",
        .pygments_lexer = "perl", .codemirror_mode = "perl", .nbconvert_exporter = "script",
        .program = "/usr/bin/perl",
        .version_bare = "-e 'printf q{%vd}, $^V'",
        .driver = "perl", .kind = RT_JSONL, .argv = perl_argv, .acks_execute = true,
        .banner = "cellgate: Perl",
    },
    {
        .name = "php", .aliases = "",
        .display_name = "PHP (cellgate)", .language = "php",
        .file_extension = ".php", .mimetype = "application/x-httpd-php",
        .pygments_lexer = "php", .codemirror_mode = "php", .nbconvert_exporter = "script",
        .program = "/usr/bin/php",
        .version_bare = "-r 'echo PHP_VERSION;'",
        .driver = "php", .kind = RT_JSONL, .argv = php_argv, .acks_execute = true,
        .banner = "cellgate: PHP",
    },
    {
        .name = "c", .aliases = "",
        .display_name = "C (cellgate)", .language = "c",
        .file_extension = ".c", .mimetype = "text/x-csrc",
        .pygments_lexer = "c", .codemirror_mode = "clike",
        .program = "/usr/bin/gcc",
        .version_bare = "-dumpfullversion", COMPILED("c"),
        .banner = "cellgate: C (each cell is a program; gcc -std=c17 -O2)",
    },
    {
        .name = "cpp", .aliases = "c++ cxx",
        .display_name = "C++ (cellgate)", .language = "c++",
        .file_extension = ".cpp", .mimetype = "text/x-c++src",
        .pygments_lexer = "cpp", .codemirror_mode = "clike",
        .program = "/usr/bin/g++",
        .version_bare = "-dumpfullversion", COMPILED("c++"),
        .banner = "cellgate: C++ (each cell is a program; g++ -std=c++20 -O2)",
    },
    {
        .name = "go", .aliases = "golang",
        .display_name = "Go (cellgate)", .language = "go",
        .file_extension = ".go", .mimetype = "text/x-go",
        .pygments_lexer = "go", .codemirror_mode = "go",
        .program = "/usr/bin/go",
        .version_bare = "env GOVERSION | sed s/^go// | grep -E '^[0-9]'", COMPILED("go"),
        .banner = "cellgate: Go (each cell is package main)",
    },
    {
        .name = "java", .aliases = "",
        .display_name = "Java (cellgate)", .language = "java",
        .file_extension = ".java", .mimetype = "text/x-java",
        .pygments_lexer = "java", .codemirror_mode = "clike",
        .program = "/usr/bin/javac",
        .version_bare = "-version 2>&1 | sed 's/^javac //' | grep -E '^[0-9]'", COMPILED("java"),
        .banner = "cellgate: Java (each cell is a program: the public class with main)",
    },
    {
        .name = "rust", .aliases = "rs",
        .display_name = "Rust (cellgate)", .language = "rust",
        .file_extension = ".rs", .mimetype = "text/rust",
        .pygments_lexer = "rust", .codemirror_mode = "rust",
        .program = "/usr/bin/rustc",
        .version_bare = "--version | cut -d' ' -f2 | grep -E '^[0-9]'", COMPILED("rust"),
        .banner = "cellgate: Rust (each cell is a program; rustc -O)",
    },
    {
        .name = "kotlin", .aliases = "kt",
        .display_name = "Kotlin (cellgate)", .language = "kotlin",
        .file_extension = ".kt", .mimetype = "text/x-kotlin",
        .pygments_lexer = "kotlin", .codemirror_mode = "clike",
        .program = "/usr/bin/kotlinc",
        .version_bare = "-version 2>&1 | sed -n 's/.*kotlinc-jvm \\([^ ]*\\).*/\\1/p' | grep .",
        COMPILED("kotlin"),
        .banner = "cellgate: Kotlin (each cell is a program with main)",
    },
    {
        .name = "swift", .aliases = "",
        .display_name = "Swift (cellgate)", .language = "swift",
        .file_extension = ".swift", .mimetype = "text/x-swift",
        .pygments_lexer = "swift", .codemirror_mode = "swift",
        .program = "/usr/bin/swiftc",
        .version_bare = "--version 2>&1 | sed -n 's/.*version \\([0-9.]*\\).*/\\1/p' | grep .",
        COMPILED("swift"),
        .banner = "cellgate: Swift (each cell is a program)",
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

bool
lang_works(const struct lang *l)
{
    static signed char known[sizeof table / sizeof table[0]]; /* 0 unknown, 1 yes, -1 no */
    size_t i = langs_index(l);
    char v[128];

    if (!known[i])
        known[i] = lang_available(l) && lang_first_line(l, l->version_bare, v, sizeof v) == 0
                       ? 1 : -1;
    return known[i] > 0;
}

int
lang_first_line(const struct lang *l, const char *args, char *out, size_t len)
{
    char cmd[1024];
    FILE *p;

    out[0] = '\0';
    /* The redirections go on the shell, so in `prog ... | sed ...` the
     * program reads /dev/null and the filters read the pipe. */
    snprintf(cmd, sizeof cmd, "exec </dev/null 2>&1; '%s' %s", l->program, args);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    int status = pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] && status == 0 ? 0 : -1;
}
