/* engine/cpu/train_impl.h: internals of the CPU backend's training ops (not a public API).
 * Owns: the jobs that train_cpu.c hands to the thread pool (GEMM, attention) and the
 * per-ISA kernel table struct eng_cpu_tk, filled by train_kern.h compiled once per level
 * (train_kern.c: baseline SSE2; train_kern_avx2.c; train_kern_avx512.c), each with its own
 * -m flags, FP contraction on: plain C loops over GCC vector types that the compiler
 * vectorizes at that width.
 *
 * GEMM (matmul_dx, matmul_dw): C (M, N) = (acc ? C : 0) + alpha * opA (M, Kd) @ B (Kd, N),
 * A F32 (row-major or transposed), B row-major in any compute dtype (rows converted to F32
 * while packing). BLIS-style: work items are (column block of nc, slice of M); per K chunk
 * of KC the item packs its B panel [NR strips][k][NR] once (it stays in L2), then runs an
 * MR x NR register-tile microkernel over each MR rows of its slice, reading A in place (an
 * MR x KC block is 8 KiB: it stays in L1; packing it cost more than it saved). Each output
 * element is computed by one thread in one fixed k order, so results do not depend on the
 * thread count.
 *
 * Attention (packed training batch): a work item is one (sample, KV head); it transposes
 * the sample's keys (and values, for backward) of that head into [HS][L] and works on
 * tiles of 8 queries: the tile's scores (and dP) are a small register-tiled GEMM against
 * the transposed keys, so each key is loaded once per tile; backward recomputes P from the
 * saved log-sum-exp (flash-attention style) and accumulates dK, dV of the head group in the
 * item, one pass over them per tile. */
#ifndef ORTHOD_ENGINE_CPU_TRAIN_IMPL_H
#define ORTHOD_ENGINE_CPU_TRAIN_IMPL_H

#include "../train/train_ops.h"
#include "cpu.h"

#include <stdatomic.h>

#define TK_KC 256          /* K chunk of the GEMM panels */
#define TK_NC_MAX 512      /* columns per GEMM work item at most */

struct tk_gemm {
    int64_t M, N, Kd;
    const float *a;
    int64_t lda;
    bool a_trans;          /* element (m, k) at a[k * lda + m]; else a[m * lda + k] */
    const uint8_t *b;      /* row k (N elements of b_dt) at b + k * ldb */
    size_t ldb;
    enum eng_dtype b_dt;
    float *c;
    int64_t ldc;
    float alpha;
    bool accumulate;
    int64_t nc;            /* columns per item: a multiple of NR and of 32 */
    int64_t n_nblk;        /* column blocks */
    int64_t n_mslice;      /* M slices per column block */
    float *scratch;        /* per thread: tk_gemm_scratch_floats() */
    size_t per_thread;     /* floats between threads' scratch */
};

/* Scratch floats one thread's GEMM needs with the level's MR and NR. */
static inline size_t tk_gemm_scratch_floats(int mr, int nr)
{
    return (size_t)TK_KC * (TK_NC_MAX + (size_t)nr) + (size_t)TK_NC_MAX + 64 +
           (size_t)mr * (size_t)nr;
}

struct tk_attn {
    /* forward: out, lse written; backward: dq, dk, dv written */
    const float *q, *k, *v, *out_in, *dout, *lse_in;
    float *out, *lse, *dq, *dk, *dv;
    const int32_t *start;  /* (n_seqs + 1) */
    int32_t n_seqs, NH, NKV, HS;
    float scale;
    int64_t n_items;       /* n_seqs * NKV, longest samples first (order) */
    const int32_t *order;  /* (n_seqs) sample indices by decreasing length */
    _Atomic int64_t next;
    float *scratch;        /* per thread: tk_attn_scratch_floats(HS, Lmax) */
    size_t per_thread;
};

static inline size_t tk_attn_scratch_floats(int32_t HS, int64_t L)
{
    const size_t l = (size_t)L + 16;   // rows padded to 16; tiles of 8 queries
    return 4 * (size_t)HS * l + 2 * 8 * l + 2 * (size_t)HS + 64;
}

struct tk_adam {
    float lr, b1, b2, eps, wd, gscale;
    float bc1, bc2_sqrt;   /* 1 - b1^t, sqrt(1 - b2^t) */
};

/* One ISA level's training kernels. Row kernels are single-threaded (train_cpu.c splits
 * rows); the workers are eng_tp_fn over their jobs. */
struct eng_cpu_tk {
    const char *name;
    int mr, nr;
    eng_tp_fn gemm_worker;            /* arg: struct tk_gemm */
    eng_tp_fn attn_fwd_worker;        /* arg: struct tk_attn */
    eng_tp_fn attn_bwd_worker;
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int64_t C,
                        float eps);
    /* one row: dx = (acc ? dx : 0) + rstd (gw - xhat mean(gw xhat)), gw = dy w */
    void (*rmsnorm_bwd_dx)(float *dx, const float *dy, const float *x, float rstd,
                           const float *w, int64_t C, bool acc);
    /* dw[c] += dy[c] * x[c] * rstd for c in [0, n) */
    void (*rmsnorm_bwd_dw)(float *dw, const float *dy, const float *x, float rstd, int64_t n);
    void (*swiglu_bwd)(float *dg, float *du, const float *dh, const float *g, const float *u,
                       int64_t n);
    double (*xent_row)(float *z, int32_t target, int64_t V, float scale);
    void (*adamw)(float *w, const float *g, float *m, float *v, int64_t n,
                  const struct tk_adam *p);
    double (*sumsq)(const float *x, int64_t n);
    void (*axpy)(float *y, const float *x, float a, int64_t n);
    void (*to_bf16)(uint16_t *out, const float *x, int64_t n);
};

void eng_cpu_tk_base(struct eng_cpu_tk *t);
#if defined(__x86_64__)
void eng_cpu_tk_avx2(struct eng_cpu_tk *t);
void eng_cpu_tk_avx512(struct eng_cpu_tk *t);
#endif

/* train_cpu.c: the table the CPU backend exposes as be->ops->train, and its cleanup
 * (called from the backend's free; NULL-safe). */
extern const struct eng_train_ops eng_cpu_train_ops;
struct eng_cpu_train;
void eng_cpu_train_free(struct eng_cpu_train *t);

#endif
