/* tests/rawsock.h: a raw HTTP/1.1 client for the tests that must control every byte
 * (partial requests, malformed framing, huge lengths): connect to 127.0.0.1, send, read one
 * response or wait for the close. Plain POSIX; no cmocka, so the fuzz driver uses it too.
 * Every wait is bounded by a deadline in seconds. */
#ifndef ORTHOD_TESTS_RAWSOCK_H
#define ORTHOD_TESTS_RAWSOCK_H

#include <stdbool.h>
#include <stddef.h>

double raw_now(void);              /* CLOCK_MONOTONIC seconds */
void raw_sleep_ms(int ms);

/* A TCP connection to 127.0.0.1:port, or -1. */
int raw_connect(int port);
/* Sends all n bytes (MSG_NOSIGNAL); false if the peer is gone. */
bool raw_send(int fd, const char *s, size_t n);
/* Reads until the peer closes or buf holds a complete response head (and its Content-Length
 * body). Returns bytes read (buf is NUL-terminated); *closed tells whether the peer closed
 * (or reset) the connection. */
size_t raw_read_response(int fd, char *buf, size_t cap, bool *closed, double deadline_s);
/* Reads (and drops) until the peer closes; true if it did within the deadline. */
bool raw_wait_closed(int fd, double deadline_s);
/* The status of "HTTP/1.1 NNN ...", else -1. */
int raw_status(const char *resp);
/* A number field of /proc/PID/status ("VmRSS:", "VmHWM:"; kB values stay kB), or -1. */
long raw_proc_status(int pid, const char *field);

/* How many status lines ("HTTP/1.x NNN" at the start of a line) resp holds. */
int raw_status_lines(const char *resp);

#endif
