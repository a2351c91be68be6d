/* common/err.c: names and sentences for enum err; errbuf formatting. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    const char *str;
} err_table[ERR__COUNT] = {
    {"ERR_OK", "success"},
    {"ERR_NOMEM", "out of memory"},
    {"ERR_INVAL", "invalid argument"},
    {"ERR_IO", "input/output error"},
    {"ERR_PROTO", "malformed input"},
    {"ERR_BUSY", "server busy, retry later"},
    {"ERR_AGAIN", "temporarily unavailable, retry"},
    {"ERR_CANCELLED", "cancelled"},
    {"ERR_UNSUPPORTED", "not supported"},
    {"ERR_GPU", "GPU error"},
    {"ERR_DEVICE_NOMEM", "device out of memory"},
    {"ERR_CORRUPT", "corrupt or malformed file"},
    {"ERR_NOTFOUND", "not found"},
    {"ERR_TOOLARGE", "too large"},
    {"ERR_AUTH", "authentication required"},
    {"ERR_FORBIDDEN", "forbidden"},
    {"ERR_RANGE", "value out of range"},
    {"ERR_STATE", "not ready"},
    {"ERR_INTERNAL", "internal error"},
    {"ERR_METHOD", "method not allowed"},
    {"ERR_TIMEOUT", "timed out"},
};

const char *err_name(int code)
{
    if (code > 0 || code <= -ERR__COUNT)
        return "ERR_UNKNOWN";
    return err_table[-code].name;
}

const char *err_str(int code)
{
    if (code > 0 || code <= -ERR__COUNT)
        return "unknown error";
    return err_table[-code].str;
}

int err_set(struct errbuf *eb, int code, const char *fmt, ...)
{
    if (eb) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof eb->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int err_prefix(struct errbuf *eb, int code, const char *fmt, ...)
{
    if (eb) {
        char pre[256], old[sizeof eb->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof pre, fmt, ap);
        va_end(ap);
        memcpy(old, eb->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        // "<pre>: <old>", truncated to the buffer (assembled by hand: no truncation warning)
        const char *tail = old[0] ? old : err_str(code);
        size_t n = strnlen(pre, sizeof eb->msg - 1);
        memcpy(eb->msg, pre, n);
        if (n + 2 < sizeof eb->msg) {
            eb->msg[n++] = ':';
            eb->msg[n++] = ' ';
        }
        size_t t = strnlen(tail, sizeof eb->msg - 1 - n);
        memcpy(eb->msg + n, tail, t);
        eb->msg[n + t] = '\0';
    }
    return code;
}
