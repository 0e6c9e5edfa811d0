/*
 * log.h - one-line diagnostics on stderr, where Jupyter servers collect a
 * kernel's log. Level from CELLGATE_LOG (error, warn, info, debug).
 */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Reads CELLGATE_LOG once; later calls are cheap. */
void log_init(void);

/* Writes "cellgate[pid]: level: message\n" if level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A printf-style logger callback for libraries (libmicrohttpd's
 * MHD_OPTION_EXTERNAL_LOGGER): one warning line "tag: message", the
 * library's own newlines dropped. tag is a string that outlives the library.
 */
void log_library(void *tag, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
