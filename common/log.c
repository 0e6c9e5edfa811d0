/*
 * log.c - diagnostics on stderr (see log.h).
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOG_WARN;

void
log_init(void)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    const char *v = getenv("CELLGATE_LOG");

    if (!v)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(v, names[i]) == 0)
            max_level = (enum log_level)i;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *tags[] = { "error", "warning", "info", "debug" };
    char line[1024];
    va_list ap;
    int n;

    if (level > max_level)
        return;
    n = snprintf(line, sizeof line, "cellgate[%ld]: %s: ", (long)getpid(), tags[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so lines from concurrent kernels do not mix. */
    size_t len = strlen(line);
    if (len < sizeof line - 1)
        line[len++] = '\n';
    else
        line[len - 1] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void
log_library(void *tag, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("%s: %s", (const char *)tag, line);
}
