/* engine/cpu/train_cpu.c: the CPU backend's training table (train_ops.h): splits each op
 * over the thread pool and calls the kernels of the level picked at run time
 * (train_kern.h). Scratch lives in struct eng_cpu_train, made on first use and grown only
 * when a larger shape is first seen. Every split gives each output element to exactly one
 * thread in a fixed order, and every reduction over a split sums fixed-size chunks in
 * order, so results are the same whatever the thread count. */
#include "train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_WORK 16384     /* elements below which a row op runs on the caller alone */
#define SUM_CHUNK 65536      /* elements per partial sum of sumsq */

struct eng_cpu_train {
    struct eng_cpu_tk tk;
    float *gemm_scr;
    size_t gemm_cap;         /* floats */
    float *attn_scr;
    size_t attn_cap;
    int32_t *order;
    size_t order_cap;
    double *part;
    size_t part_cap;
};

void eng_cpu_train_free(struct eng_cpu_train *t)
{
    if (!t)
        return;
    free(t->gemm_scr);
    free(t->attn_scr);
    free(t->order);
    free(t->part);
    free(t);
}

static struct eng_cpu *CPU(eng_backend_t *be)
{
    return be->ctx;
}

static struct eng_cpu_train *TR(eng_backend_t *be)
{
    struct eng_cpu *cpu = CPU(be);
    if (cpu->train)
        return cpu->train;
    struct eng_cpu_train *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    eng_cpu_tk_base(&t->tk);
#if defined(__x86_64__)
    if (cpu->level >= ENG_CPU_AVX512)
        eng_cpu_tk_avx512(&t->tk);
    else if (cpu->level >= ENG_CPU_AVX2)
        eng_cpu_tk_avx2(&t->tk);
#endif
    cpu->train = t;
    return t;
}

/* Grows a 64-byte-aligned array to `need` elements of `size` bytes (contents not kept). */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    if (need > (SIZE_MAX - 4096) / size)
        return ERR_NOMEM;
    size_t bytes = (need * size + 63) & ~(size_t)63;
    void *q = aligned_alloc(64, bytes);
    if (!q)
        return ERR_NOMEM;
    free(*p);
    *p = q;
    *cap = need;
    return 0;
}

/* --- row-split jobs -------------------------------------------------------------------- */

struct rows_job {
    void (*fn)(struct rows_job *j, int64_t lo, int64_t hi);
    int64_t rows, cols;
    const struct eng_cpu_tk *tk;
    float *o1, *o2;
    const float *i1, *i2, *i3, *i4, *i5;
    const int32_t *idx;
    int64_t n_idx;
    const eng_tensor_t *w;
    float f1;
    bool flag;
    double *part;
    const struct eng_rope_params *rp;
    int32_t n_heads, hs;
    const struct tk_adam *adam;
    uint16_t *u16;
};

static void rows_worker(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    int64_t lo, hi;
    eng_tp_range(j->rows, 1, ith, nth, &lo, &hi);
    if (lo < hi)
        j->fn(j, lo, hi);
}

static void run_rows(eng_backend_t *be, struct rows_job *j)
{
    eng_tp_t *tp = CPU(be)->tp;
    if (j->rows * j->cols < SMALL_WORK || eng_tp_size(tp) == 1 || j->rows == 1)
        j->fn(j, 0, j->rows);
    else
        eng_tp_run(tp, rows_worker, j);
}

/* --- embedding ---------------------------------------------------------------------------- */

static void embed_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    for (int64_t t = lo; t < hi; t++)
        eng_row_to_f32(j->w->dtype, (const char *)j->w->data + (size_t)j->idx[t] * j->w->nb[1],
                       j->o1 + t * j->cols, j->cols);
}

static int tr_embed(eng_backend_t *be, float *out, const int32_t *tokens, int64_t T,
                    const eng_tensor_t *wte)
{
    struct rows_job j = {.fn = embed_rows, .rows = T, .cols = wte->ne[0], .o1 = out,
                         .idx = tokens, .w = wte};
    run_rows(be, &j);
    return 0;
}

/* Columns [lo, hi) of every token's row, in token order (one writer per column). */
static void embed_bwd_cols(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->n_heads;     // row length (the job's rows are columns here)
    for (int64_t t = 0; t < j->n_idx; t++) {
        float *dst = j->o1 + (int64_t)j->idx[t] * C;
        const float *src = j->i1 + t * C;
        for (int64_t c = lo; c < hi; c++)
            dst[c] += src[c];
    }
}

static int tr_embed_bwd(eng_backend_t *be, float *dwte, int64_t V, const int32_t *tokens,
                        int64_t T, const float *dout, int64_t C)
{
    (void)V;
    struct rows_job j = {.fn = embed_bwd_cols, .rows = C, .cols = T, .o1 = dwte, .i1 = dout,
                         .idx = tokens, .n_idx = T, .n_heads = (int32_t)C};
    run_rows(be, &j);
    return 0;
}

/* --- RMSNorm ------------------------------------------------------------------------------ */

static void rmsnorm_fwd_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++)
        j->tk->rmsnorm_fwd(j->o1 + r * j->cols, j->o2 + r, j->i1 + r * j->cols, j->i2, j->cols,
                           j->f1);
}

static int tr_rmsnorm_fwd(eng_backend_t *be, float *out, float *rstd, const float *x,
                          const float *w, int64_t R, int64_t C, float eps)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    struct rows_job j = {.fn = rmsnorm_fwd_rows, .rows = R, .cols = C, .tk = &t->tk, .o1 = out,
                         .o2 = rstd, .i1 = x, .i2 = w, .f1 = eps};
    run_rows(be, &j);
    return 0;
}

static void rmsnorm_dx_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->cols;
    for (int64_t r = lo; r < hi; r++)
        j->tk->rmsnorm_bwd_dx(j->o1 + r * C, j->i1 + r * C, j->i2 + r * C, j->i3[r], j->i4, C,
                              j->flag);
}

/* dw columns [lo, hi): every row in order. */
static void rmsnorm_dw_cols(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->n_heads, R = j->n_idx;
    for (int64_t r = 0; r < R; r++)
        j->tk->rmsnorm_bwd_dw(j->o2 + lo, j->i1 + r * C + lo, j->i2 + r * C + lo, j->i3[r],
                              hi - lo);
}

static int tr_rmsnorm_bwd(eng_backend_t *be, float *dx, float *dw, const float *dout,
                          const float *x, const float *rstd, const float *w, int64_t R,
                          int64_t C, bool accumulate)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    struct rows_job j = {.fn = rmsnorm_dx_rows, .rows = R, .cols = C, .tk = &t->tk, .o1 = dx,
                         .i1 = dout, .i2 = x, .i3 = rstd, .i4 = w, .flag = accumulate};
    run_rows(be, &j);
    if (dw) {   // the columns split over the threads, each summing every row in order
        struct rows_job jw = {.fn = rmsnorm_dw_cols, .rows = C, .cols = R, .tk = &t->tk,
                              .o2 = dw, .i1 = dout, .i2 = x, .i3 = rstd, .n_idx = R,
                              .n_heads = (int32_t)C};
        run_rows(be, &jw);
    }
    return 0;
}

/* --- RoPE ---------------------------------------------------------------------------------- */

static void rope_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const struct eng_rope_params *rp = j->rp;
    const int half = rp->n_rot / 2;
    const int64_t HS = j->hs;
    for (int64_t t = lo; t < hi; t++) {
        const double p = (double)j->idx[t] * rp->freq_scale;
        for (int i = 0; i < half; i++) {
            // the angle exactly as the inference backend computes it (backend_cpu.c)
            const double theta = p * pow((double)rp->freq_base, -2.0 * i / rp->n_rot);
            const float c = (float)cos(theta), s0 = (float)sin(theta), s = j->flag ? -s0 : s0;
            const int i0 = rp->mode == ENG_ROPE_NEOX ? i : 2 * i;
            const int i1 = rp->mode == ENG_ROPE_NEOX ? i + half : 2 * i + 1;
            for (int32_t h = 0; h < j->n_heads; h++) {
                float *x = j->o1 + t * j->cols + h * HS;
                const float x0 = x[i0], x1 = x[i1];
                x[i0] = x0 * c - x1 * s;
                x[i1] = x0 * s + x1 * c;
            }
        }
    }
}

static int tr_rope(eng_backend_t *be, float *x, const int32_t *pos, int64_t T, int32_t n_heads,
                   int32_t head_dim, const struct eng_rope_params *rp, bool inverse)
{
    struct rows_job j = {.fn = rope_rows, .rows = T, .cols = (int64_t)n_heads * head_dim,
                         .o1 = x, .idx = pos, .rp = rp, .n_heads = n_heads, .hs = head_dim,
                         .flag = inverse};
    run_rows(be, &j);
    return 0;
}

/* --- attention ---------------------------------------------------------------------------- */

static int attn_setup(eng_backend_t *be, struct tk_attn *a, const struct eng_train_seqs *s)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    int64_t Lmax = 1;
    for (int32_t i = 0; i < s->n_seqs; i++)
        if (s->start[i + 1] - s->start[i] > Lmax)
            Lmax = s->start[i + 1] - s->start[i];
    const int nth = eng_tp_size(CPU(be)->tp);
    const size_t per = tk_attn_scratch_floats(a->HS, Lmax);
    int rc;
    if ((rc = grow((void **)&t->attn_scr, &t->attn_cap, per * (size_t)nth, sizeof(float))) < 0 ||
        (rc = grow((void **)&t->order, &t->order_cap, (size_t)s->n_seqs, sizeof(int32_t))) < 0)
        return rc;
    // longest samples first (insertion sort by length; stable, so deterministic)
    for (int32_t i = 0; i < s->n_seqs; i++) {
        int32_t k = i;
        const int32_t len = s->start[i + 1] - s->start[i];
        while (k > 0 && s->start[t->order[k - 1] + 1] - s->start[t->order[k - 1]] < len) {
            t->order[k] = t->order[k - 1];
            k--;
        }
        t->order[k] = i;
    }
    a->start = s->start;
    a->n_seqs = s->n_seqs;
    a->order = t->order;
    a->n_items = (int64_t)s->n_seqs * a->NKV;
    atomic_store(&a->next, 0);
    a->scratch = t->attn_scr;
    a->per_thread = per;
    return 0;
}

static int tr_attn_fwd(eng_backend_t *be, float *out, float *lse, const float *q, const float *k,
                       const float *v, const struct eng_train_seqs *s, int32_t NH, int32_t NKV,
                       int32_t HS, float scale)
{
    struct tk_attn a = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .NH = NH, .NKV = NKV,
                        .HS = HS, .scale = scale};
    int rc = attn_setup(be, &a, s);
    if (rc < 0)
        return rc;
    eng_tp_run(CPU(be)->tp, TR(be)->tk.attn_fwd_worker, &a);
    return 0;
}

static int tr_attn_bwd(eng_backend_t *be, float *dq, float *dk, float *dv, const float *dout,
                       const float *out, const float *lse, const float *q, const float *k,
                       const float *v, const struct eng_train_seqs *s, int32_t NH, int32_t NKV,
                       int32_t HS, float scale)
{
    struct tk_attn a = {.q = q, .k = k, .v = v, .out_in = out, .lse_in = lse, .dout = dout,
                        .dq = dq, .dk = dk, .dv = dv, .NH = NH, .NKV = NKV, .HS = HS,
                        .scale = scale};
    int rc = attn_setup(be, &a, s);
    if (rc < 0)
        return rc;
    eng_tp_run(CPU(be)->tp, TR(be)->tk.attn_bwd_worker, &a);
    return 0;
}

/* --- SwiGLU -------------------------------------------------------------------------------- */

static void swiglu_bwd_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->cols;
    j->tk->swiglu_bwd(j->o1 + lo * C, j->o2 + lo * C, j->i1 + lo * C, j->i2 + lo * C,
                      j->i3 + lo * C, (hi - lo) * C);
}

static int tr_swiglu_bwd(eng_backend_t *be, float *dg, float *du, const float *dh,
                         const float *g, const float *u, int64_t n)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    const int64_t C = 1024, R = (n + C - 1) / C;
    // whole chunks of 1024 in the split, the tail by the caller
    struct rows_job j = {.fn = swiglu_bwd_rows, .rows = n / C, .cols = C, .tk = &t->tk,
                         .o1 = dg, .o2 = du, .i1 = dh, .i2 = g, .i3 = u};
    if (j.rows > 0)
        run_rows(be, &j);
    if (R > n / C)
        t->tk.swiglu_bwd(dg + n / C * C, du + n / C * C, dh + n / C * C, g + n / C * C,
                         u + n / C * C, n - n / C * C);
    return 0;
}

/* --- GEMM ---------------------------------------------------------------------------------- */

static int64_t round_up(int64_t v, int64_t m)
{
    return (v + m - 1) / m * m;
}

static int gemm_run(eng_backend_t *be, struct tk_gemm *g)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    if (g->M == 0 || g->N == 0)
        return 0;
    if (g->Kd == 0) {
        if (!g->accumulate)
            for (int64_t m = 0; m < g->M; m++)
                memset(g->c + m * g->ldc, 0, (size_t)g->N * sizeof(float));
        return 0;
    }
    eng_tp_t *tp = CPU(be)->tp;
    const int nth = eng_tp_size(tp);
    const size_t per = tk_gemm_scratch_floats(t->tk.mr, t->tk.nr);
    int rc = grow((void **)&t->gemm_scr, &t->gemm_cap, per * (size_t)nth, sizeof(float));
    if (rc < 0)
        return rc;
    // column blocks: as wide as allowed, but at least one per thread when N allows
    const int64_t align = t->tk.nr > 32 ? t->tk.nr : 32;   // NR multiple and block (32) multiple
    int64_t nc = round_up((g->N + nth - 1) / nth, align);
    if (nc > TK_NC_MAX)
        nc = TK_NC_MAX;
    g->nc = nc;
    g->n_nblk = (g->N + nc - 1) / nc;
    const int64_t m_strips = (g->M + t->tk.mr - 1) / t->tk.mr;
    int64_t ms = (nth + g->n_nblk - 1) / g->n_nblk;
    g->n_mslice = ms < m_strips ? ms : m_strips;
    if (g->n_mslice < 1)
        g->n_mslice = 1;
    g->scratch = t->gemm_scr;
    g->per_thread = per;
    if (g->n_nblk * g->n_mslice == 1 || (double)g->M * g->N * g->Kd < 65536.0)
        t->tk.gemm_worker(g, 0, 1);
    else
        eng_tp_run(tp, t->tk.gemm_worker, g);
    return 0;
}

static int tr_matmul_dx(eng_backend_t *be, float *dx, const float *dy, int64_t R,
                        const eng_tensor_t *w, float alpha, bool accumulate)
{
    const int64_t K = w->ne[0], N = w->ne[1];
    struct tk_gemm g = {.M = R, .N = K, .Kd = N, .a = dy, .lda = N, .a_trans = false,
                        .b = w->data, .ldb = w->nb[1], .b_dt = w->dtype, .c = dx, .ldc = K,
                        .alpha = alpha, .accumulate = accumulate};
    return gemm_run(be, &g);
}

static int tr_matmul_dw(eng_backend_t *be, float *dw, const float *dy, const float *x, int64_t R,
                        int64_t N, int64_t K, float alpha)
{
    struct tk_gemm g = {.M = N, .N = K, .Kd = R, .a = dy, .lda = N, .a_trans = true,
                        .b = (const uint8_t *)x, .ldb = (size_t)K * sizeof(float),
                        .b_dt = ENG_DTYPE_F32, .c = dw, .ldc = K, .alpha = alpha,
                        .accumulate = true};
    return gemm_run(be, &g);
}

/* --- loss ------------------------------------------------------------------------------------ */

static void xent_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++)
        j->part[r] = j->tk->xent_row(j->o1 + r * j->cols, j->idx[r], j->cols, j->f1);
}

static int tr_xent(eng_backend_t *be, float *z, const int32_t *targets, int64_t R, int64_t V,
                   float grad_scale, double *loss_sum)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    int rc = grow((void **)&t->part, &t->part_cap, (size_t)R + 1, sizeof(double));
    if (rc < 0)
        return rc;
    struct rows_job j = {.fn = xent_rows, .rows = R, .cols = V, .tk = &t->tk, .o1 = z,
                         .idx = targets, .f1 = grad_scale, .part = t->part};
    run_rows(be, &j);
    double s = 0.0;
    for (int64_t r = 0; r < R; r++)
        s += t->part[r];
    *loss_sum = s;
    return 0;
}

/* --- rows, vectors ------------------------------------------------------------------------- */

static int tr_gather(eng_backend_t *be, float *out, const float *x, const int32_t *rows,
                     int64_t n, int64_t C)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * C, x + (int64_t)rows[i] * C, (size_t)C * sizeof(float));
    return 0;
}

static int tr_scatter(eng_backend_t *be, float *x, const float *src, const int32_t *rows,
                      int64_t n, int64_t C)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        memcpy(x + (int64_t)rows[i] * C, src + i * C, (size_t)C * sizeof(float));
    return 0;
}

static void axpy_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    j->tk->axpy(j->o1 + lo * j->cols, j->i1 + lo * j->cols, j->f1, (hi - lo) * j->cols);
}

/* Runs a per-chunk row job over n elements in chunks of `chunk` (the tail on the caller). */
static void run_chunks(eng_backend_t *be, struct rows_job *j, int64_t n, int64_t chunk)
{
    j->cols = chunk;
    j->rows = n / chunk;
    if (j->rows > 0)
        run_rows(be, j);
    if (n % chunk) {
        const int64_t lo = j->rows;
        const int64_t saved = j->cols;
        // the tail as a one-row job of its own length, starting at element lo * chunk
        struct rows_job tail = *j;
        tail.o1 = j->o1 ? j->o1 + lo * saved : NULL;
        tail.o2 = j->o2 ? j->o2 + lo * saved : NULL;
        tail.i1 = j->i1 ? j->i1 + lo * saved : NULL;
        tail.i2 = j->i2 ? j->i2 + lo * saved : NULL;
        tail.i3 = j->i3 ? j->i3 + lo * saved : NULL;
        tail.u16 = j->u16 ? j->u16 + lo * saved : NULL;
        tail.part = j->part ? j->part + lo : NULL;
        tail.cols = n % chunk;
        tail.fn(&tail, 0, 1);
    }
}

static int tr_axpy(eng_backend_t *be, float *y, const float *x, float a, int64_t n)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    struct rows_job j = {.fn = axpy_rows, .tk = &t->tk, .o1 = y, .i1 = x, .f1 = a};
    run_chunks(be, &j, n, 4096);
    return 0;
}

static void sumsq_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    for (int64_t r = lo; r < hi; r++)
        j->part[r] = j->tk->sumsq(j->i1 + r * j->cols, j->cols);
}

static int tr_sumsq(eng_backend_t *be, const float *x, int64_t n, double *out)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    const int64_t chunks = (n + SUM_CHUNK - 1) / SUM_CHUNK;
    int rc = grow((void **)&t->part, &t->part_cap, (size_t)chunks + 1, sizeof(double));
    if (rc < 0)
        return rc;
    struct rows_job j = {.fn = sumsq_rows, .tk = &t->tk, .i1 = x, .part = t->part};
    run_chunks(be, &j, n, SUM_CHUNK);
    double s = 0.0;
    for (int64_t c = 0; c < chunks; c++)
        s += t->part[c];
    *out = s;
    return 0;
}

static void adamw_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->cols;
    j->tk->adamw(j->o1 + lo * C, j->i1 + lo * C, j->o2 + lo * C, (float *)j->i2 + lo * C,
                 (hi - lo) * C, j->adam);
}

static int tr_adamw(eng_backend_t *be, float *w, const float *g, float *m, float *v, int64_t n,
                    const struct eng_adamw_params *p)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    const struct tk_adam a = {.lr = p->lr, .b1 = p->beta1, .b2 = p->beta2, .eps = p->eps,
                              .wd = p->weight_decay, .gscale = p->grad_scale,
                              .bc1 = (float)(1.0 - pow((double)p->beta1, (double)p->t)),
                              .bc2_sqrt = (float)sqrt(1.0 - pow((double)p->beta2, (double)p->t))};
    struct rows_job j = {.fn = adamw_rows, .tk = &t->tk, .o1 = w, .i1 = g, .o2 = m, .i2 = v,
                         .adam = &a};
    run_chunks(be, &j, n, 4096);
    return 0;
}

static void bf16_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    j->tk->to_bf16(j->u16 + lo * j->cols, j->i1 + lo * j->cols, (hi - lo) * j->cols);
}

static int tr_to_bf16(eng_backend_t *be, uint16_t *out, const float *x, int64_t n)
{
    struct eng_cpu_train *t = TR(be);
    if (!t)
        return ERR_NOMEM;
    struct rows_job j = {.fn = bf16_rows, .tk = &t->tk, .u16 = out, .i1 = x};
    run_chunks(be, &j, n, 4096);
    return 0;
}

static int tr_zero(eng_backend_t *be, void *p, size_t n)
{
    (void)be;
    memset(p, 0, n);
    return 0;
}

const struct eng_train_ops eng_cpu_train_ops = {
    .embed = tr_embed,
    .embed_bwd = tr_embed_bwd,
    .rmsnorm_fwd = tr_rmsnorm_fwd,
    .rmsnorm_bwd = tr_rmsnorm_bwd,
    .rope = tr_rope,
    .attn_fwd = tr_attn_fwd,
    .attn_bwd = tr_attn_bwd,
    .swiglu_bwd = tr_swiglu_bwd,
    .matmul_dx = tr_matmul_dx,
    .matmul_dw = tr_matmul_dw,
    .xent = tr_xent,
    .gather = tr_gather,
    .scatter = tr_scatter,
    .axpy = tr_axpy,
    .sumsq = tr_sumsq,
    .adamw = tr_adamw,
    .to_bf16 = tr_to_bf16,
    .zero = tr_zero,
};
