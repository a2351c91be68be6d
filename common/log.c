/* common/log.c: one log line, formatted and handed to a sink. */
#include "log.h"

#include "err.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *log_level_name(enum log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "unknown";
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return ERR_INVAL;
}

void log_vemit(const struct log_sink *s, enum log_level level, const char *fmt, va_list ap)
{
    if (s && level < s->min)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(level));
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    // one line per event: fold embedded newlines so a message can never forge a record
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (s && s->fn)
        s->fn(s->ctx, level, line);
    else
        fprintf(stderr, "%s\n", line);
}

void log_emit(const struct log_sink *s, enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vemit(s, level, fmt, ap);
    va_end(ap);
}
