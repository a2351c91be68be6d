/* engine/cpu/mm_scalar.h: the matmul kinds of the scalar level (plain C, for CPUs without
 * AVX2), for the driver mm_tmpl.h. Included only by level_scalar.c.
 * Quantized: the canonical product itself (matmul.c), x quantized once per call, one
 * output at a time. Float: each weight row converted once into the thread's scratch and
 * dotted with every row of x (four partial sums). Neither packs panels (rv is unbounded). */
#include "mm_impl.h"

#include <stdlib.h>

/* ------------------------------------------------------------------------------------- */
/* quantized: layout of j->act                                                             */

struct q_act {
    int8_t *q;            /* (R, K) */
    float *dx;            /* (R, K/32) */
    int32_t *xs;          /* (R, K/32) */
};

static struct q_act q_layout(const struct mm_job *j)
{
    const size_t rk = (size_t)j->R * (size_t)j->K, rb = rk / 32;
    struct q_act a;
    a.dx = (float *)j->act;
    a.xs = (int32_t *)(a.dx + rb);
    a.q = (int8_t *)(a.xs + rb);
    return a;
}

static size_t q_act_bytes(int64_t R, int64_t K)
{
    size_t rk;
    if (__builtin_mul_overflow((size_t)R, (size_t)K, &rk) || rk > SIZE_MAX / 2)
        return SIZE_MAX;
    return rk + rk / 32 * 8;
}

static void q_act_row(const struct mm_job *j, int64_t r)
{
    const struct q_act a = q_layout(j);
    const int64_t K = j->K, nb = K / 32;
    eng_cpu_mm_quantize_row(j->x + r * K, K, a.q + r * K, a.dx + r * nb, a.xs + r * nb);
}

static void q_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    (void)scratch;
    const struct q_act a = q_layout(j);
    const int64_t K = j->K, N = j->N, nb = K / 32;
    for (int64_t n = lo; n < hi; n++) {
        const uint8_t *wr = j->w + (size_t)n * j->ws;
        for (int64_t r = 0; r < j->R; r++)
            j->out[r * N + n] = eng_cpu_mm_qdot_ref(j->dt, wr, a.q + r * K, a.dx + r * nb, nb);
    }
}

static const struct mm_kind kind_q = {
    .act_bytes = q_act_bytes,
    .act_row = q_act_row,
    .rv = INT64_MAX,
    .gemv = q_gemv,
};

/* ------------------------------------------------------------------------------------- */
/* float                                                                                   */

static size_t f_gemv_bytes(int64_t R, int64_t K)
{
    (void)R;
    return (size_t)K * sizeof(float);
}

static void f_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    float *wf = scratch;
    const int64_t K = j->K, N = j->N;
    for (int64_t n = lo; n < hi; n++) {
        eng_row_to_f32(j->dt, j->w + (size_t)n * j->ws, wf, K);
        for (int64_t r = 0; r < j->R; r++) {
            const float *xr = j->x + r * K;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            int64_t k = 0;
            for (; k + 4 <= K; k += 4) {
                s0 += xr[k] * wf[k];
                s1 += xr[k + 1] * wf[k + 1];
                s2 += xr[k + 2] * wf[k + 2];
                s3 += xr[k + 3] * wf[k + 3];
            }
            for (; k < K; k++)
                s0 += xr[k] * wf[k];
            j->out[r * N + n] = (s0 + s1) + (s2 + s3);
        }
    }
}

static const struct mm_kind kind_f = {
    .rv = INT64_MAX,
    .gemv = f_gemv,
    .gemv_bytes = f_gemv_bytes,
};
