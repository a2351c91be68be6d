/* common/log.h: leveled, key=value logging through a caller-supplied sink.
 * Owns: struct log_sink and the formatting of one log line.  There is no global
 * logger: every object that logs holds a `struct log_sink` copied from its creator
 * (engine params, server context).  A sink with fn == NULL writes to stderr.
 * Line format (the default sink): `ts=... level=info msg="..." key=value ...`. */
#ifndef ORTHOD_COMMON_LOG_H
#define ORTHOD_COMMON_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Receives one finished line without trailing newline; must be thread-safe if the
 * sink is shared across threads. */
typedef void (*log_fn)(void *ctx, enum log_level level, const char *line);

struct log_sink {
    log_fn fn;             /* NULL: stderr */
    void *ctx;
    enum log_level min;    /* lines below this level are dropped */
};

/* Formats `fmt` (printf; write key=value pairs, quote values with spaces) into one line
 * prefixed with `ts=<RFC3339> level=<level>` and hands it to the sink. Thread: any. */
void log_emit(const struct log_sink *s, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vemit(const struct log_sink *s, enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

const char *log_level_name(enum log_level level);
/* Parses "debug|info|warn|error"; returns 0 or ERR_INVAL. */
int log_level_parse(const char *s, enum log_level *out);

#define log_debug(s, ...) log_emit((s), LOG_DEBUG, __VA_ARGS__)
#define log_info(s, ...)  log_emit((s), LOG_INFO, __VA_ARGS__)
#define log_warn(s, ...)  log_emit((s), LOG_WARN, __VA_ARGS__)
#define log_error(s, ...) log_emit((s), LOG_ERROR, __VA_ARGS__)

#endif
