/* engine/cpu/mm_tmpl.h: the matmul driver, written once and compiled into every level
 * (level_scalar.c, level_avx2.c, level_avx512.c). Not a header to include elsewhere: the
 * includer has defined its kinds (mm_<isa>.h; the contract is in mm_impl.h). Defines the level's three matmul entries of struct eng_cpu_kernels:
 * mm_act_bytes, mm_pack_bytes and mm_worker (the pool worker, arg: struct mm_call). */
#ifndef ORTHOD_ENGINE_CPU_MM_IMPL_H
#error "include mm_impl.h and the level's mm_<isa>.h before mm_tmpl.h"
#endif

/* The kind each weight dtype runs on: every level defines kind_q (Q8_0, Q4_0) and kind_f
 * (F32, F16, and BF16 unless the level defines MM_KIND_BF16 as its own kind). A new weight
 * type gets its line here and, in every mm_<isa>.h, a kind or a case in a kind's hooks. */
#ifndef MM_KIND_BF16
#define MM_KIND_BF16 kind_f
#endif
static const struct mm_kind *mm_kind_of(enum eng_dtype dt)
{
    switch (dt) {
    case ENG_DTYPE_Q8_0:
    case ENG_DTYPE_Q4_0: return &kind_q;
    case ENG_DTYPE_F32:
    case ENG_DTYPE_F16: return &kind_f;
    case ENG_DTYPE_BF16: return &MM_KIND_BF16;
    default: return NULL;
    }
}

static size_t mm_act_bytes(enum eng_dtype dt, int64_t R, int64_t K)
{
    const struct mm_kind *kd = mm_kind_of(dt);
    return kd && kd->act_bytes ? kd->act_bytes(R, K) : 0;
}

static size_t mm_pack_bytes(enum eng_dtype dt, int64_t R, int64_t K)
{
    const struct mm_kind *kd = mm_kind_of(dt);
    if (!kd)
        return 0;
    if (R <= kd->rv)
        return kd->gemv_bytes ? kd->gemv_bytes(R, K) : 0;
    return kd->panel_bytes;
}

/* The pool worker (arg: struct mm_call). */
static void mm_worker(void *arg, int ith, int nth)
{
    struct mm_call *c = arg;
    const struct mm_kind *kd = mm_kind_of(c->j.dt);
    struct mm_job j = c->j;   // narrowed to each weight below
    const int64_t R = j.R, K = j.K;
    if (kd->act_row && (!kd->act_bytes || kd->act_bytes(R, K) > 0)) {
        int64_t lo = 0, hi = R;
        if (c->act_stride)    // the thread's own copy of all rows
            j.act = (uint8_t *)j.act + (size_t)ith * c->act_stride;
        else                  // a share of the rows; all threads use all of them
            eng_tp_range(R, 1, ith, nth, &lo, &hi);
        for (int64_t r = lo; r < hi; r++)
            kd->act_row(&j, r);
        if (!c->act_stride)
            eng_tp_barrier(j.tp);
    }
    uint8_t *scratch = j.pack + (size_t)ith * j.pack_bytes;
    const int64_t kc = R <= kd->rt ? kd->kc_small : kd->kc;
    int wi = 0;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (it >= c->n_items)
            break;
        while (wi + 1 < c->n_w && it >= c->wt[wi + 1].first_item)
            wi++;
        j.out = c->wt[wi].out;
        j.w = c->wt[wi].w;
        j.ws = c->wt[wi].ws;
        j.N = c->wt[wi].N;
        const int64_t lo = (it - c->wt[wi].first_item) * c->chunk;
        const int64_t hi = mm_imin(lo + c->chunk, j.N);
        if (R <= kd->rv) {
            kd->gemv(&j, scratch, lo, hi);
            continue;
        }
        for (int64_t n0 = lo; n0 < hi; n0 += kd->pw) {
            const int64_t nc = mm_imin(kd->pw, hi - n0);
            for (int64_t k0 = 0; k0 < K; k0 += kc) {
                const int64_t kn = mm_imin(kc, K - k0);
                kd->pack(&j, scratch, n0, nc, k0, kn, hi);
                for (int64_t r0 = 0; r0 < R; r0 += kd->rt)
                    kd->tile(&j, scratch, (int)mm_imin(kd->rt, R - r0), r0, n0, nc, k0, kn);
            }
        }
    }
}
