/* engine/cpu/matmul.c: out = x @ w^T for every weight dtype.
 * This first version is the reference: each weight row is converted to F32 and dotted in
 * double-free F32 arithmetic, rows split over threads. Fast per-ISA paths replace it;
 * this file's eng_cpu_mm_ref stays as the oracle the tests compare against. */
#include "cpu.h"

#include <stdlib.h>

struct eng_cpu_mm {
    enum eng_cpu_level level;
    int n_threads;
    float *wrow;            /* per-thread converted weight row */
    int64_t wrow_cap;       /* floats per thread */
};

int eng_cpu_mm_new(enum eng_cpu_level level, int n_threads, eng_cpu_mm_t **out)
{
    eng_cpu_mm_t *mm = calloc(1, sizeof *mm);
    if (!mm)
        return ERR_NOMEM;
    mm->level = level;
    mm->n_threads = n_threads;
    *out = mm;
    return 0;
}

void eng_cpu_mm_free(eng_cpu_mm_t *mm)
{
    if (!mm)
        return;
    free(mm->wrow);
    free(mm);
}

bool eng_cpu_mm_supports(enum eng_dtype t)
{
    return eng_dtype_is_compute(t);
}

struct mm_job {
    eng_cpu_mm_t *mm;
    float *out;
    const float *x;
    int64_t R, N, K;
    const eng_tensor_t *w;
};

static void mm_ref_worker(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    int64_t lo, hi;
    eng_tp_range(j->N, 1, ith, nth, &lo, &hi);
    float *wr = j->mm->wrow + (size_t)ith * (size_t)j->mm->wrow_cap;
    for (int64_t n = lo; n < hi; n++) {
        eng_row_to_f32(j->w->dtype, (const char *)j->w->data + (size_t)n * j->w->nb[1], wr, j->K);
        for (int64_t r = 0; r < j->R; r++) {
            const float *x = j->x + r * j->K;
            float s = 0.0f;
            for (int64_t k = 0; k < j->K; k++)
                s += x[k] * wr[k];
            j->out[r * j->N + n] = s;
        }
    }
}

int eng_cpu_mm_run(eng_cpu_mm_t *mm, eng_tp_t *tp, float *out, const float *x, int64_t R,
                   const eng_tensor_t *w)
{
    const int64_t K = w->ne[0], N = w->ne[1];
    if (K > mm->wrow_cap) {
        float *p = realloc(mm->wrow, (size_t)K * sizeof(float) * (size_t)eng_tp_size(tp));
        if (!p)
            return ERR_NOMEM;
        mm->wrow = p;
        mm->wrow_cap = K;
    }
    struct mm_job j = {.mm = mm, .out = out, .x = x, .R = R, .N = N, .K = K, .w = w};
    eng_tp_run(tp, mm_ref_worker, &j);
    return 0;
}
