/* proto/text.h: making arbitrary bytes safe to put in a JSON string or a log line.
 * Owns UTF-8 validation for the wire layer. Thread: any. */
#ifndef ORTHOD_PROTO_TEXT_H
#define ORTHOD_PROTO_TEXT_H

#include <stddef.h>

/* Length (1..4) of the valid, shortest-form UTF-8 sequence at s[0..n), or 0 if none. */
size_t proto_text_utf8_len(const unsigned char *s, size_t n);

/* A heap copy of s (caller frees) with control characters and invalid UTF-8 replaced by
 * '?', so it is always a valid JSON string. NULL when out of memory. */
char *proto_text_sanitize(const char *s);

#endif
