/* tests/rawsock.c: see rawsock.h. */
#include "rawsock.h"

#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double raw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void raw_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool raw_send(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

size_t raw_read_response(int fd, char *buf, size_t cap, bool *closed, double deadline_s)
{
    size_t n = 0;
    *closed = false;
    double end = raw_now() + deadline_s;
    buf[0] = '\0';
    while (n + 1 < cap && raw_now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) {
            *closed = true;
            break;
        }
        n += (size_t)r;
        buf[n] = '\0';
        char *head_end = strstr(buf, "\r\n\r\n");
        if (head_end) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = cl && cl < head_end ? (size_t)atol(cl + 17) : 0;
            if (n >= (size_t)(head_end + 4 - buf) + want)
                break;
        }
    }
    buf[n] = '\0';
    return n;
}

bool raw_wait_closed(int fd, double deadline_s)
{
    double end = raw_now() + deadline_s;
    char b[4096];
    while (raw_now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r <= 0)
            return true;
    }
    return false;
}

int raw_status(const char *resp)
{
    return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : -1;
}

int raw_status_lines(const char *resp)
{
    int n = 0;
    for (const char *p = resp; p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        n += strncmp(p, "HTTP/1.", 7) == 0 && p[7] && p[8] == ' ';
    }
    return n;
}

long raw_proc_status(int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0)
            v = atol(line + fl);
    if (f)
        fclose(f);
    return v;
}
