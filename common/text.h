/* common/text.h: showing untrusted bytes (names from model files, request fields, URL
 * paths, model ids) in error messages, JSON strings and log lines.
 * Owns: the project's one text escaper and the UTF-8 validation it uses.
 * Thread: any; no state. */
#ifndef ORTHOD_COMMON_TEXT_H
#define ORTHOD_COMMON_TEXT_H

#include <stddef.h>

/* Length (1..4) of the valid, shortest-form UTF-8 sequence at s[0..n), or 0 if none. */
size_t text_utf8_len(const unsigned char *s, size_t n);

enum text_style {
    /* a JSON string: control bytes and invalid UTF-8 become '?', one byte for one (so a
     * length stays the same); valid UTF-8 passes */
    TEXT_JSON = 0,
    /* a name quoted in an error message ("tensor '%s'"): as TEXT_JSON, and ' becomes '?' */
    TEXT_MESSAGE = 1,
    /* a value quoted in a log line (key="%s"): printable ASCII passes; every other byte,
     * " and \ become \xNN */
    TEXT_LOG = 2,
};

/* Escapes s[0..len) into out[cap] (NUL-terminated) in style st; when the result does not
 * fit, it is cut and ends with "...". Returns out. cap >= 4. */
const char *text_escape(char *out, size_t cap, const char *s, size_t len, enum text_style st);
/* The same into a heap copy of exactly the needed size (caller frees; never cut).
 * NULL when out of memory. */
char *text_escape_dup(const char *s, enum text_style st);

#endif
