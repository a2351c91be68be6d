/* engine/cpu/backend_cpu.c: the CPU backend's table: host buffers, zero-copy weights,
 * and the element-wise ops; matmul and attention live in their own modules.
 * Every op splits its rows over the thread pool; tiny ops run on the caller alone
 * (a pool round trip costs more than the work). */
#include "cpu.h"
#include "kernels.h"
#include "train_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_WORK 16384   /* elements below which an op runs on one thread */

static struct eng_cpu *CPU(eng_backend_t *be)
{
    return be->ctx;
}

/* --- identity, memory ------------------------------------------------------------------ */

static const char *cpu_name(eng_backend_t *be)
{
    return CPU(be)->name;
}

static const char *cpu_describe(eng_backend_t *be)
{
    return CPU(be)->desc;
}

static void cpu_free(eng_backend_t *be)
{
    struct eng_cpu *cpu = CPU(be);
    eng_cpu_mm_free(cpu->mm);
    eng_tp_free(cpu->tp);
    eng_cpu_train_free(cpu->train);
    free(cpu->att_scratch);
    free(cpu->rope_cs);
    free(cpu);
    free(be);
}

static int cpu_buffer_new(eng_backend_t *be, size_t size, enum eng_buf_usage use,
                          eng_buffer_t *buf)
{
    (void)be;
    (void)use;
    size_t sz = (size + 63) & ~(size_t)63;
    buf->base = aligned_alloc(64, sz ? sz : 64);
    if (!buf->base)
        return ERR_NOMEM;
    return 0;
}

static void cpu_buffer_free(eng_backend_t *be, eng_buffer_t *buf)
{
    (void)be;
    free(buf->base);
    buf->base = NULL;
}

static int cpu_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off,
                          size_t n)
{
    (void)be;
    memcpy((char *)dst->data + off, src, n);
    return 0;
}

static int cpu_tensor_get(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off,
                          size_t n)
{
    (void)be;
    memcpy(dst, (const char *)src->data + off, n);
    return 0;
}

static int cpu_memset_buffer(eng_backend_t *be, eng_buffer_t *buf, int byte)
{
    (void)be;
    memset(buf->base, byte, buf->size);
    return 0;
}

/* Weights are used in place, straight from the model file's mmap. */
static int cpu_weight_prepare(eng_backend_t *be, eng_tensor_t *w, const void *host)
{
    (void)be;
    w->data = (void *)host;
    w->buf = NULL;
    return 0;
}

static void cpu_weight_release(eng_backend_t *be, eng_tensor_t *w)
{
    (void)be;
    (void)w;
}

static bool cpu_supports_matmul(eng_backend_t *be, enum eng_dtype t)
{
    (void)be;
    return eng_cpu_mm_supports(t);
}

static bool cpu_supports_kv(eng_backend_t *be, enum eng_kv_format f)
{
    (void)be;
    return f == ENG_KV_F32 || f == ENG_KV_F16;
}

/* --- steps ------------------------------------------------------------------------------ */

static int cpu_step_begin(eng_backend_t *be, const struct eng_step *st)
{
    struct eng_cpu *cpu = CPU(be);
    cpu->step = *st;
    cpu->in_step = true;
    cpu->rope_valid = false;
    return 0;
}

static int cpu_step_end(eng_backend_t *be)
{
    CPU(be)->in_step = false;
    return 0;
}

/* Runs fn over [0, rows) on the pool, or inline when rows*cols is small. */
struct rows_job {
    void (*fn)(struct rows_job *j, int64_t lo, int64_t hi);
    int64_t rows;
    float *out;
    const float *a, *b;
    const void *w;
    int64_t cols;
    float eps;
    const struct eng_cpu *cpu;
    const eng_tensor_t *tw;
    const struct eng_rope_params *rp;
    int32_t n_heads;
    const eng_tensor_t *kc, *vc;   /* kv_write: the layer's cache tensors */
};

static void rows_worker(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    int64_t lo, hi;
    eng_tp_range(j->rows, 1, ith, nth, &lo, &hi);
    if (lo < hi)
        j->fn(j, lo, hi);
}

static void run_rows(struct eng_cpu *cpu, struct rows_job *j)
{
    if (j->rows * j->cols < SMALL_WORK || eng_tp_size(cpu->tp) == 1 || j->rows == 1)
        j->fn(j, 0, j->rows);
    else
        eng_tp_run(cpu->tp, rows_worker, j);
}

/* --- element-wise ops --------------------------------------------------------------------- */

static void embed_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const eng_tensor_t *w = j->tw;
    for (int64_t t = lo; t < hi; t++) {
        int32_t id = j->cpu->step.tokens[t];
        eng_row_to_f32(w->dtype, (const char *)w->data + (size_t)id * w->nb[1],
                       j->out + t * j->cols, j->cols);
    }
}

static int cpu_embed(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte)
{
    struct eng_cpu *cpu = CPU(be);
    if (!cpu->in_step || out->ne[1] != cpu->step.n_tokens)
        return ERR_INVAL;
    for (int32_t t = 0; t < cpu->step.n_tokens; t++)
        if (cpu->step.tokens[t] < 0 || cpu->step.tokens[t] >= wte->ne[1])
            return ERR_INVAL;
    struct rows_job j = {.fn = embed_rows, .rows = out->ne[1], .out = out->data,
                         .cols = out->ne[0], .cpu = cpu, .tw = wte};
    run_rows(cpu, &j);
    return 0;
}

static void rmsnorm_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const int64_t C = j->cols;
    for (int64_t r = lo; r < hi; r++)   // sums of squares in double (vec.h)
        j->cpu->k->rmsnorm(j->out + r * C, j->a + r * C, j->b, j->eps, C);
}

static int cpu_rmsnorm(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                       const eng_tensor_t *w, float eps)
{
    struct rows_job j = {.fn = rmsnorm_rows, .rows = eng_tensor_nrows(x), .out = out->data,
                         .a = x->data, .b = w->data, .cols = x->ne[0], .eps = eps,
                         .cpu = CPU(be)};
    run_rows(CPU(be), &j);
    return 0;
}

static int cpu_matmul(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                      const eng_tensor_t *w)
{
    struct eng_cpu *cpu = CPU(be);
    return eng_cpu_mm_run(cpu->mm, cpu->tp, out->data, x->data, eng_tensor_nrows(x), w);
}

static int cpu_matmul_n(eng_backend_t *be, int n, eng_tensor_t *const out[],
                        const eng_tensor_t *x, const eng_tensor_t *const w[])
{
    struct eng_cpu *cpu = CPU(be);
    bool same = true;   // one pass needs one dtype and K (the wrapper checked K)
    for (int i = 1; i < n; i++)
        same = same && w[i]->dtype == w[0]->dtype;
    if (!same) {
        for (int i = 0; i < n; i++) {
            int rc = cpu_matmul(be, out[i], x, w[i]);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    float *o[ENG_MATMUL_N_MAX];
    for (int i = 0; i < n; i++)
        o[i] = out[i]->data;
    return eng_cpu_mm_run_n(cpu->mm, cpu->tp, n, o, x->data, eng_tensor_nrows(x), w);
}

/* cos/sin of every (token, pair) of the step: computed once per step (all layers and both
 * q and k share them), angles in double precision: pos * scale * base^(-2i/n_rot). */
static void rope_cs_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const struct eng_rope_params *rp = j->rp;
    const int half = rp->n_rot / 2;
    for (int64_t t = lo; t < hi; t++) {
        const double p = (double)j->cpu->step.pos[t] * rp->freq_scale;
        float *cs = j->out + t * half * 2;
        for (int i = 0; i < half; i++) {
            const double theta = p * pow((double)rp->freq_base, -2.0 * i / rp->n_rot);
            cs[2 * i] = (float)cos(theta);
            cs[2 * i + 1] = (float)sin(theta);
        }
    }
}

static void rope_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const struct eng_rope_params *rp = j->rp;
    const int64_t HS = j->cols / j->n_heads;
    const int half = rp->n_rot / 2;
    for (int64_t t = lo; t < hi; t++) {
        const float *cs = j->a + t * half * 2;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            for (int32_t h = 0; h < j->n_heads; h++) {
                float *x = j->out + t * j->cols + h * HS;
                int i0 = rp->mode == ENG_ROPE_NEOX ? i : 2 * i;
                int i1 = rp->mode == ENG_ROPE_NEOX ? i + half : 2 * i + 1;
                const float x0 = x[i0], x1 = x[i1];
                x[i0] = x0 * c - x1 * s;
                x[i1] = x0 * s + x1 * c;
            }
        }
    }
}

static int cpu_rope(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads,
                    const struct eng_rope_params *rp)
{
    struct eng_cpu *cpu = CPU(be);
    if (!cpu->in_step || x->ne[1] != cpu->step.n_tokens)
        return ERR_INVAL;
    const int64_t T = x->ne[1];
    const bool same = cpu->rope_valid && cpu->rope_key.n_rot == rp->n_rot &&
                      cpu->rope_key.freq_base == rp->freq_base &&
                      cpu->rope_key.freq_scale == rp->freq_scale;
    if (!same) {
        const size_t need = (size_t)T * (size_t)rp->n_rot;
        if (need > cpu->rope_cs_cap) {
            float *p = realloc(cpu->rope_cs, need * sizeof(float));
            if (!p)
                return ERR_NOMEM;
            cpu->rope_cs = p;
            cpu->rope_cs_cap = need;
        }
        struct rows_job cj = {.fn = rope_cs_rows, .rows = T, .out = cpu->rope_cs,
                              .cols = rp->n_rot * 8, .cpu = cpu, .rp = rp};
        run_rows(cpu, &cj);
        cpu->rope_key = *rp;
        cpu->rope_valid = true;
    }
    struct rows_job j = {.fn = rope_rows, .rows = T, .out = x->data, .a = cpu->rope_cs,
                         .cols = x->ne[0], .cpu = cpu, .rp = rp, .n_heads = n_heads};
    run_rows(cpu, &j);
    return 0;
}

/* K and V rows of tokens [lo, hi) into their cache slots (F32 copy or F16 conversion). */
static void kv_write_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    const eng_tensor_t *kc = j->kc, *vc = j->vc;
    const int64_t row = j->cols;
    for (int64_t t = lo; t < hi; t++) {
        const size_t slot = (size_t)j->cpu->step.kv_slot[t];
        char *kd = (char *)kc->data + slot * kc->nb[1], *vd = (char *)vc->data + slot * vc->nb[1];
        const float *ks = j->a + t * row, *vs = j->b + t * row;
        if (kc->dtype == ENG_DTYPE_F16) {
            j->cpu->k->f32_to_f16((uint16_t *)kd, ks, row);
            j->cpu->k->f32_to_f16((uint16_t *)vd, vs, row);
        } else {
            eng_row_from_f32(kc->dtype, ks, kd, row);
            eng_row_from_f32(vc->dtype, vs, vd, row);
        }
    }
}

static int cpu_kv_write(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer,
                        const eng_tensor_t *k, const eng_tensor_t *v)
{
    struct eng_cpu *cpu = CPU(be);
    if (!cpu->in_step || k->ne[1] != cpu->step.n_tokens)
        return ERR_INVAL;
    const eng_tensor_t *kc = &kv->k[layer], *vc = &kv->v[layer];
    for (int32_t t = 0; t < cpu->step.n_tokens; t++)
        if (cpu->step.kv_slot[t] >= kc->ne[1])
            return ERR_INVAL;
    struct rows_job j = {.fn = kv_write_rows, .rows = k->ne[1], .a = k->data, .b = v->data,
                         .cols = k->ne[0], .cpu = cpu, .kc = kc, .vc = vc};
    run_rows(cpu, &j);
    return 0;
}

static int cpu_attention(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                         const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    struct eng_cpu *cpu = CPU(be);
    if (!cpu->in_step || q->ne[1] != cpu->step.n_tokens)
        return ERR_INVAL;
    return eng_cpu_attention(cpu, out, q, kv, layer, n_heads, scale);
}

static void swiglu_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    j->cpu->k->silu_mul(j->out + lo * j->cols, j->a + lo * j->cols, j->b + lo * j->cols,
                          (hi - lo) * j->cols);
}

static int cpu_swiglu(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                      const eng_tensor_t *up)
{
    struct rows_job j = {.fn = swiglu_rows, .rows = eng_tensor_nrows(out), .out = out->data,
                         .a = gate->data, .b = up->data, .cols = out->ne[0], .cpu = CPU(be)};
    run_rows(CPU(be), &j);
    return 0;
}

static void add_rows(struct rows_job *j, int64_t lo, int64_t hi)
{
    j->cpu->k->add(j->out + lo * j->cols, j->a + lo * j->cols, j->b + lo * j->cols,
                     (hi - lo) * j->cols);
}

static int cpu_add(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a,
                   const eng_tensor_t *b)
{
    struct rows_job j = {.fn = add_rows, .rows = eng_tensor_nrows(out), .out = out->data,
                         .a = a->data, .b = b->data, .cols = out->ne[0], .cpu = CPU(be)};
    run_rows(CPU(be), &j);
    return 0;
}

static int cpu_gather_rows(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x)
{
    struct eng_cpu *cpu = CPU(be);
    if (!cpu->in_step || out->ne[1] != cpu->step.n_out || x->ne[1] != cpu->step.n_tokens)
        return ERR_INVAL;
    const size_t rb = (size_t)x->ne[0] * sizeof(float);
    for (int32_t i = 0; i < cpu->step.n_out; i++)
        memmove((char *)out->data + (size_t)i * rb,
                (const char *)x->data + (size_t)cpu->step.out_rows[i] * rb, rb);
    return 0;
}

static const struct eng_backend_ops cpu_ops = {
    .name = cpu_name,
    .describe = cpu_describe,
    .free = cpu_free,
    .buffer_new = cpu_buffer_new,
    .buffer_free = cpu_buffer_free,
    .tensor_set = cpu_tensor_set,
    .tensor_get = cpu_tensor_get,
    .memset_buffer = cpu_memset_buffer,
    .weight_prepare = cpu_weight_prepare,
    .weight_release = cpu_weight_release,
    .supports_matmul = cpu_supports_matmul,
    .supports_kv = cpu_supports_kv,
    .step_begin = cpu_step_begin,
    .step_end = cpu_step_end,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .matmul_n = cpu_matmul_n,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .train = &eng_cpu_train_ops,
};

#include <unistd.h>

int eng_cpu_backend_new(const struct eng_cpu_params *p, eng_backend_t **out)
{
    int n = p && p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > 512)
        return ERR_RANGE;
    eng_backend_t *be = calloc(1, sizeof *be);
    struct eng_cpu *cpu = calloc(1, sizeof *cpu);
    int rc = ERR_NOMEM;
    if (!be || !cpu)
        goto fail;
    eng_cpu_detect(&cpu->feat);
    cpu->level = eng_cpu_level_pick(&cpu->feat);
    cpu->k = eng_cpu_kernels(cpu->level);
    if ((rc = eng_tp_new(n, &cpu->tp)) < 0)
        goto fail;
    if ((rc = eng_cpu_mm_new(cpu->level, n, &cpu->mm)) < 0)
        goto fail;
    snprintf(cpu->name, sizeof cpu->name, "cpu");
    char feats[192];
    eng_cpu_features_str(&cpu->feat, feats, sizeof feats);
    snprintf(cpu->desc, sizeof cpu->desc, "cpu threads=%d kernels=%s features=\"%s\"", n,
             eng_cpu_level_name(cpu->level), feats);
    be->ops = &cpu_ops;
    be->ctx = cpu;
    be->is_host = true;
    be->n_threads = n;
    if (p)
        be->log = p->log;
    *out = be;
    return 0;
fail:
    if (cpu) {
        eng_cpu_mm_free(cpu->mm);
        eng_tp_free(cpu->tp);
    }
    free(cpu);
    free(be);
    return rc;
}
