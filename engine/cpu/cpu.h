/* engine/cpu/cpu.h: internals shared by the CPU backend's modules (not a public API).
 * Owns: CPU feature detection, the worker thread pool, and the interfaces between
 * backend_cpu.c (the backend's ops table) and the kernel modules: matmul.c (all weight
 * dtypes, GEMV and GEMM paths) and attention.c; the per-level kernels behind them are
 * in kernels.h.
 * Thread: everything here is driven from the engine thread; eng_tp_run fans work out to
 * the pool's workers and returns when all are done. */
#ifndef ORTHOD_ENGINE_CPU_H
#define ORTHOD_ENGINE_CPU_H

#include "../backend_impl.h"

#include <stdbool.h>
#include <stdint.h>

/* --- CPU features (cpuid + xgetbv: a feature counts only if the OS saves its state) --- */
struct eng_cpu_features {
    bool sse42, avx, avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq;
    bool avx512vnni, avx512bf16, avxvnni;
    bool amx_reported;   /* cpuid says AMX; never used (it traps on some VMs) */
};
void eng_cpu_detect(struct eng_cpu_features *f);
/* "avx2 fma f16c avx512f ..." into buf. */
void eng_cpu_features_str(const struct eng_cpu_features *f, char *buf, size_t cap);
/* Kernel level chosen at run time; ORTHOD_CPU_LEVEL=scalar|avx2|avx512 in the
 * environment lowers it (for tests of every path on one machine). */
enum eng_cpu_level { ENG_CPU_SCALAR = 0, ENG_CPU_AVX2 = 1, ENG_CPU_AVX512 = 2 };
enum eng_cpu_level eng_cpu_level_pick(const struct eng_cpu_features *f);
const char *eng_cpu_level_name(enum eng_cpu_level l);

/* --- thread pool ------------------------------------------------------------------ */
typedef struct eng_tp eng_tp_t;
typedef void (*eng_tp_fn)(void *arg, int ith, int nth);
int eng_tp_new(int n_threads, eng_tp_t **out);     /* n_threads >= 1 (caller included) */
void eng_tp_free(eng_tp_t *tp);
int eng_tp_size(const eng_tp_t *tp);
/* Runs fn(arg, ith, nth) on every thread (the caller is ith 0); returns when all
 * returned. Not reentrant. */
void eng_tp_run(eng_tp_t *tp, eng_tp_fn fn, void *arg);
/* Inside fn: waits until every thread of the current run reaches it. */
void eng_tp_barrier(eng_tp_t *tp);
/* Splits [0, n) into nth near-equal chunks (multiples of `align`): chunk ith. */
static inline void eng_tp_range(int64_t n, int64_t align, int ith, int nth, int64_t *lo,
                                int64_t *hi)
{
    int64_t blocks = (n + align - 1) / align;
    int64_t b0 = blocks * ith / nth, b1 = blocks * (ith + 1) / nth;
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

/* --- matmul module (matmul.c and its per-ISA files) ------------------------------- */
typedef struct eng_cpu_mm eng_cpu_mm_t;
int eng_cpu_mm_new(enum eng_cpu_level level, int n_threads, eng_cpu_mm_t **out);
void eng_cpu_mm_free(eng_cpu_mm_t *mm);
bool eng_cpu_mm_supports(enum eng_dtype t);
/* out (R, N) = x (R, K) @ w^T for w (N, K) of any compute dtype; uses tp for threads.
 * Scratch (quantized/converted activations, packed panels) is owned by mm and grows
 * only when a larger shape is first seen. */
int eng_cpu_mm_run(eng_cpu_mm_t *mm, eng_tp_t *tp, float *out, const float *x, int64_t R,
                   const eng_tensor_t *w);
/* The same for n <= 4 weights of one dtype and K against one x (out[i] (R, w[i]->ne[1])),
 * in one fork-join: x converted once, the columns of all weights shared out together. */
int eng_cpu_mm_run_n(eng_cpu_mm_t *mm, eng_tp_t *tp, int n, float *const out[], const float *x,
                     int64_t R, const eng_tensor_t *const w[]);

/* --- the backend context ------------------------------------------------------------ */
struct eng_cpu_kernels;            /* kernels.h */

struct eng_cpu {
    eng_tp_t *tp;
    struct eng_cpu_features feat;
    enum eng_cpu_level level;
    eng_cpu_mm_t *mm;
    struct eng_step step;          /* the current step (arrays borrowed until step_end) */
    bool in_step;
    const struct eng_cpu_kernels *k;   /* the kernel table of `level` */
    float *rope_cs;                /* (T, n_rot/2, 2) cos/sin of the current step */
    size_t rope_cs_cap;            /* floats */
    bool rope_valid;               /* rope_cs matches rope_key for this step */
    struct eng_rope_params rope_key;
    float *att_scratch;            /* per-thread attention scratch */
    size_t att_scratch_floats;     /* per thread */
    char name[16];
    char desc[256];
    struct eng_cpu_train *train;   /* training ops' state (train_cpu.c), made on first use */
};

/* attention.c: causal attention over the paged cache for the current step. */
int eng_cpu_attention(struct eng_cpu *cpu, eng_tensor_t *out, const eng_tensor_t *q,
                      const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale);

#endif
