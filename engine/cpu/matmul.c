/* engine/cpu/matmul.c: out = x @ w^T for every weight dtype: argument checks, scratch,
 * dispatch to the kernel level chosen at run time (kernels.h), and the oracle: the
 * canonical quantized product (mm_impl.h) and a float64 reference for the float dtypes.
 * The kernels live in the levels (mm_tmpl.h over mm_<isa>.h, one unit per level, each
 * compiled with its own -m flags); this file contains no AVX instruction. */
#include "kernels.h"
#include "mm_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MM_GUARD 16384      /* bytes between scratch areas written by different threads */
#define MM_ACT_PRIVATE 65536 /* converted activations up to this size: one copy per thread */

struct eng_cpu_mm {
    enum eng_cpu_level level;
    const struct eng_cpu_kernels *k;
    void *act;              /* converted activations, shared by the threads of a call */
    size_t act_cap;
    uint8_t *pack;          /* per-thread panels */
    size_t pack_cap;        /* bytes in all */
};

int eng_cpu_mm_new(enum eng_cpu_level level, int n_threads, eng_cpu_mm_t **out)
{
    (void)n_threads;        // scratch is sized from the pool at each call
    // never run a level the CPU (or the OS) lacks: it would trap with SIGILL
    struct eng_cpu_features f;
    eng_cpu_detect(&f);
    const struct eng_cpu_kernels *k = eng_cpu_kernels(level);
    if (!k || level > eng_cpu_level_pick(&f))
        return ERR_UNSUPPORTED;
    eng_cpu_mm_t *mm = calloc(1, sizeof *mm);
    if (!mm)
        return ERR_NOMEM;
    mm->level = level;
    mm->k = k;
    *out = mm;
    return 0;
}

void eng_cpu_mm_free(eng_cpu_mm_t *mm)
{
    if (!mm)
        return;
    free(mm->act);
    free(mm->pack);
    free(mm);
}

bool eng_cpu_mm_supports(enum eng_dtype t)
{
    return eng_dtype_is_compute(t);
}

/* Grows *p to at least `need` bytes (64-byte aligned); contents are not kept. */
static int grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    if (need > SIZE_MAX - 4096)
        return ERR_NOMEM;
    size_t sz = (need + 63) & ~(size_t)63;
    void *q = aligned_alloc(64, sz);
    if (!q)
        return ERR_NOMEM;
    free(*p);
    *p = q;
    *cap = sz;
    return 0;
}

/* Shape checks shared by eng_cpu_mm_run and the oracle. */
static int check_args(const float *out, const float *x, int64_t R, const eng_tensor_t *w)
{
    if (!w || !eng_dtype_is_compute(w->dtype) || R < 0)
        return ERR_INVAL;
    const int64_t K = w->ne[0], N = w->ne[1];
    if (K <= 0 || N < 0 || K > ((int64_t)1 << 32) || N > ((int64_t)1 << 40))
        return ERR_INVAL;
    const size_t rb = eng_dtype_row_bytes(w->dtype, K);
    if (rb == 0 || w->nb[1] < rb)
        return ERR_INVAL;          // K not a multiple of the block size, or rows overlap
    if (R > 0 && N > 0 && (!out || !x || !w->data))
        return ERR_INVAL;
    int64_t t;
    if (__builtin_mul_overflow(R, K, &t) || __builtin_mul_overflow(R, N, &t))
        return ERR_INVAL;
    return 0;
}

int eng_cpu_mm_run_n(eng_cpu_mm_t *mm, eng_tp_t *tp, int n, float *const out[], const float *x,
                     int64_t R, const eng_tensor_t *const w[])
{
    if (n < 1 || n > MM_MAX_W)
        return ERR_INVAL;
    int rc;
    for (int i = 0; i < n; i++)
        if ((rc = check_args(out[i], x, R, w[i])) < 0)
            return rc;
    const enum eng_dtype dt = w[0]->dtype;
    const int64_t K = w[0]->ne[0];
    for (int i = 1; i < n; i++)
        if (w[i]->dtype != dt || w[i]->ne[0] != K)
            return ERR_INVAL;
    if (R == 0)
        return 0;
    const int nth = eng_tp_size(tp);
    size_t ab = mm->k->mm_act_bytes(dt, R, K);
    size_t pb = mm->k->mm_pack_bytes(dt, R, K);
    if (ab == SIZE_MAX || ab > SIZE_MAX / 2 || pb > ((size_t)1 << 40) / (size_t)nth)
        return ERR_NOMEM;
    // Each thread's panels start on their own page with MM_GUARD bytes of gap: a core's
    // hardware prefetchers run a few KiB past what it touches, and pulling in lines the
    // neighbouring thread is writing made the second thread 2x slower (measured).
    pb = ((pb + 4095) & ~(size_t)4095) + MM_GUARD;
    // small activations (decode): every thread converts its own copy, no barrier
    size_t act_stride = 0;
    if (nth > 1 && ab > 0 && ab <= MM_ACT_PRIVATE) {
        act_stride = ((ab + 4095) & ~(size_t)4095) + MM_GUARD;
        ab = act_stride * (size_t)nth;
    }
    if ((rc = grow(&mm->act, &mm->act_cap, ab + MM_GUARD)) < 0 ||
        (rc = grow((void **)&mm->pack, &mm->pack_cap, pb * (size_t)nth + MM_GUARD)) < 0)
        return rc;
    struct mm_call c = {.j = {.x = x, .R = R, .K = K, .dt = dt, .tp = tp, .act = mm->act,
                              .pack = mm->pack + MM_GUARD, .pack_bytes = pb},
                        .n_w = n, .act_stride = act_stride};
    // work items: one per weight on one thread; else about 8 per thread, 32 .. 1024
    // columns each (multiples of every kind's panel width)
    int64_t n_sum = 0, n_max = 0;
    for (int i = 0; i < n; i++) {
        n_sum += w[i]->ne[1];
        n_max = w[i]->ne[1] > n_max ? w[i]->ne[1] : n_max;
    }
    int64_t chunk = nth == 1 ? n_max : (n_sum + 8 * nth - 1) / (8 * nth);
    chunk = chunk < 32 ? 32 : chunk > 1024 && nth > 1 ? 1024 : chunk;
    c.chunk = (chunk + 31) / 32 * 32;
    for (int i = 0; i < n; i++) {
        c.wt[i].out = out[i];
        c.wt[i].w = w[i]->data;
        c.wt[i].ws = w[i]->nb[1];
        c.wt[i].N = w[i]->ne[1];
        c.wt[i].first_item = c.n_items;
        c.n_items += (w[i]->ne[1] + c.chunk - 1) / c.chunk;
    }
    if (c.n_items == 0)
        return 0;
    atomic_init(&c.next, 0);
    eng_tp_run(tp, mm->k->mm_worker, &c);
    return 0;
}

int eng_cpu_mm_run(eng_cpu_mm_t *mm, eng_tp_t *tp, float *out, const float *x, int64_t R,
                   const eng_tensor_t *w)
{
    return eng_cpu_mm_run_n(mm, tp, 1, &out, x, R, &w);
}

/* --- the canonical quantized product ---------------------------------------------------- */

void eng_cpu_mm_quantize_row(const float *x, int64_t K, int8_t *q, float *dx, int32_t *xsum)
{
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + b * 32;
        uint32_t amax_bits = 0;                 // max |x| as bits: NaN wins, no order issue
        for (int j = 0; j < 32; j++) {
            uint32_t a = eng_fp32_to_bits(xb[j]) & 0x7fffffffu;
            amax_bits = a > amax_bits ? a : amax_bits;
        }
        const float d = eng_fp32_from_bits(amax_bits) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            float v = xb[j] * id;
            v = v > -127.0f ? v : -127.0f;      // = max_ps(v, -127): NaN -> -127
            v = v < 127.0f ? v : 127.0f;        // = min_ps(v, 127)
            const int8_t qq = (int8_t)roundf(v);
            q[b * 32 + j] = qq;
            s += qq;
        }
        dx[b] = eng_fp16_to_fp32(eng_fp32_to_fp16(d));
        xsum[b] = s;
    }
}

float eng_cpu_mm_qdot_ref(enum eng_dtype dt, const uint8_t *wrow, const int8_t *q,
                          const float *dx, int64_t nb)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *xq = q + b * 32;
        int32_t s = 0;
        float dw;
        if (dt == ENG_DTYPE_Q8_0) {
            const uint8_t *blk = wrow + (size_t)b * sizeof(eng_block_q8_0);
            dw = mm_load_fp16(blk);
            for (int j = 0; j < 32; j++)
                s += (int8_t)blk[2 + j] * xq[j];
        } else {
            const uint8_t *blk = wrow + (size_t)b * sizeof(eng_block_q4_0);
            dw = mm_load_fp16(blk);
            for (int j = 0; j < 16; j++) {
                s += ((blk[2 + j] & 0xf) - 8) * xq[j];
                s += ((blk[2 + j] >> 4) - 8) * xq[j + 16];
            }
        }
        acc = fmaf((float)s, dw * dx[b], acc);
    }
    return acc;
}

static bool is_quant(enum eng_dtype dt)
{
    return dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0;
}

int eng_cpu_mm_ref(float *out, const float *x, int64_t R, const eng_tensor_t *w)
{
    int rc = check_args(out, x, R, w);
    if (rc < 0)
        return rc;
    const int64_t K = w->ne[0], N = w->ne[1], nb = K / 32;
    if (R == 0 || N == 0)
        return 0;
    const uint8_t *wd = w->data;
    if (is_quant(w->dtype)) {
        int8_t *q = malloc((size_t)K);
        float *dx = malloc((size_t)nb * sizeof(float));
        int32_t *xs = malloc((size_t)nb * sizeof(int32_t));
        if (q && dx && xs) {
            for (int64_t r = 0; r < R; r++) {
                eng_cpu_mm_quantize_row(x + r * K, K, q, dx, xs);
                for (int64_t n = 0; n < N; n++)
                    out[r * N + n] =
                        eng_cpu_mm_qdot_ref(w->dtype, wd + (size_t)n * w->nb[1], q, dx, nb);
            }
        } else {
            rc = ERR_NOMEM;
        }
        free(q);
        free(dx);
        free(xs);
        return rc;
    }
    float *wr = malloc((size_t)K * sizeof(float));
    if (!wr)
        return ERR_NOMEM;
    for (int64_t n = 0; n < N; n++) {
        eng_row_to_f32(w->dtype, wd + (size_t)n * w->nb[1], wr, K);
        for (int64_t r = 0; r < R; r++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[r * K + k] * wr[k];
            out[r * N + n] = (float)s;
        }
    }
    free(wr);
    return 0;
}
