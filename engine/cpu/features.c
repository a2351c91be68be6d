/* engine/cpu/features.c: which SIMD the CPU has and the OS enables (cpuid + xgetbv). */
#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

void eng_cpu_detect(struct eng_cpu_features *f)
{
    memset(f, 0, sizeof *f);
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    bool osxsave = (c >> 27) & 1;
    f->sse42 = (c >> 20) & 1;
    f->fma = (c >> 12) & 1;
    f->f16c = (c >> 29) & 1;
    bool avx_hw = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6;                 // SSE + AVX state
    bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0;     // opmask, ZMM_Hi256, Hi16_ZMM
    f->avx = avx_hw && ymm_os;
    if (!f->avx) {
        f->fma = f->f16c = false;
    }
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = f->avx && ((b >> 5) & 1);
        f->avx512f = zmm_os && ((b >> 16) & 1);
        f->avx512dq = f->avx512f && ((b >> 17) & 1);
        f->avx512bw = f->avx512f && ((b >> 30) & 1);
        f->avx512vl = f->avx512f && ((b >> 31) & 1);
        f->avx512vnni = f->avx512f && ((c >> 11) & 1);
        f->amx_reported = ((d >> 24) & 1) || ((d >> 25) & 1) || ((d >> 22) & 1);
        __cpuid_count(7, 1, a, b, c, d);
        f->avxvnni = f->avx && ((a >> 4) & 1);
        f->avx512bf16 = f->avx512f && ((a >> 5) & 1);
    }
}
#else
void eng_cpu_detect(struct eng_cpu_features *f)
{
    memset(f, 0, sizeof *f);
}
#endif

void eng_cpu_features_str(const struct eng_cpu_features *f, char *buf, size_t cap)
{
    static const struct {
        const char *name;
        size_t off;
    } names[] = {
        {"sse4.2", offsetof(struct eng_cpu_features, sse42)},
        {"avx", offsetof(struct eng_cpu_features, avx)},
        {"avx2", offsetof(struct eng_cpu_features, avx2)},
        {"fma", offsetof(struct eng_cpu_features, fma)},
        {"f16c", offsetof(struct eng_cpu_features, f16c)},
        {"avx512f", offsetof(struct eng_cpu_features, avx512f)},
        {"avx512bw", offsetof(struct eng_cpu_features, avx512bw)},
        {"avx512vl", offsetof(struct eng_cpu_features, avx512vl)},
        {"avx512dq", offsetof(struct eng_cpu_features, avx512dq)},
        {"avx512vnni", offsetof(struct eng_cpu_features, avx512vnni)},
        {"avx512bf16", offsetof(struct eng_cpu_features, avx512bf16)},
        {"avxvnni", offsetof(struct eng_cpu_features, avxvnni)},
        {"amx(unused)", offsetof(struct eng_cpu_features, amx_reported)},
    };
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (*(const bool *)((const char *)f + names[i].off) && n < cap) {
            int w = snprintf(buf + n, cap - n, "%s%s", n ? " " : "", names[i].name);
            if (w > 0)
                n += (size_t)w;
        }
    }
}

enum eng_cpu_level eng_cpu_level_pick(const struct eng_cpu_features *f)
{
    enum eng_cpu_level best = ENG_CPU_SCALAR;
    if (f->avx2 && f->fma && f->f16c)
        best = ENG_CPU_AVX2;
    if (best == ENG_CPU_AVX2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq &&
        f->avx512vnni && f->avx512bf16)
        best = ENG_CPU_AVX512;
    const char *env = getenv("ORTHOD_CPU_LEVEL");
    if (env) {
        enum eng_cpu_level want = best;
        if (strcmp(env, "scalar") == 0)
            want = ENG_CPU_SCALAR;
        else if (strcmp(env, "avx2") == 0)
            want = ENG_CPU_AVX2;
        if (want < best)   // the environment can only lower the level, never raise it
            best = want;
    }
    return best;
}

const char *eng_cpu_level_name(enum eng_cpu_level l)
{
    switch (l) {
    case ENG_CPU_AVX512: return "avx512";
    case ENG_CPU_AVX2: return "avx2";
    default: return "scalar";
    }
}
