/* bench/bench_util.h: what the benchmark programs share: clocks, the median, and parsing
 * of comma lists and kernel levels. Header-only (static functions), for bench/ only. */
#ifndef ORTHOD_BENCH_UTIL_H
#define ORTHOD_BENCH_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)   /* monotonic seconds */
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int bench_cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v (so v[0] is the minimum afterwards) and returns its median. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "1,2,512" into out (at most max values, each in [lo, 1 << 20]); the count or -1. */
static inline int bench_parse_list(const char *s, int *out, int max, int lo)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > 1 << 20)
            return -1;
        out[n++] = (int)v;
        if (*end && *end != ',')
            return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* "scalar" | "avx2" | "avx512" -> 0 | 1 | 2 (enum eng_cpu_level); -1 otherwise. */
static inline int bench_parse_level(const char *v)
{
    return strcmp(v, "scalar") == 0 ? 0 : strcmp(v, "avx2") == 0 ? 1
         : strcmp(v, "avx512") == 0 ? 2 : -1;
}

#endif
