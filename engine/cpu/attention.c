/* engine/cpu/attention.c: causal attention over the paged KV cache (reference version).
 * One (token, head) pair per work item; online softmax over the sequence's positions,
 * reading K/V rows through the block table. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

struct att_job {
    struct eng_cpu *cpu;
    float *out;
    const float *q;
    const eng_tensor_t *kc, *vc;
    int32_t n_heads, n_kv_heads, head_dim, block_size;
    float scale;
    float *scratch;            /* per thread: 2 * head_dim floats */
};

static void att_worker(void *arg, int ith, int nth)
{
    struct att_job *j = arg;
    const struct eng_step *st = &j->cpu->step;
    const int64_t items = (int64_t)st->n_tokens * j->n_heads;
    const int HS = j->head_dim, group = j->n_heads / j->n_kv_heads;
    float *kr = j->scratch + (size_t)ith * 2 * (size_t)HS, *vr = kr + HS;
    int64_t lo, hi;
    eng_tp_range(items, 1, ith, nth, &lo, &hi);
    for (int64_t it = lo; it < hi; it++) {
        const int32_t t = (int32_t)(it / j->n_heads), h = (int32_t)(it % j->n_heads);
        const int32_t s = st->seq[t], kvh = h / group;
        const float *q = j->q + ((int64_t)t * j->n_heads + h) * HS;
        float *o = j->out + ((int64_t)t * j->n_heads + h) * HS;
        const int32_t *bt = st->block_table + (int64_t)s * st->max_blocks;
        float m = -INFINITY, l = 0.0f;
        for (int d = 0; d < HS; d++)
            o[d] = 0.0f;
        for (int32_t p = 0; p <= st->pos[t]; p++) {
            const int64_t slot = (int64_t)bt[p / j->block_size] * j->block_size + p % j->block_size;
            eng_row_to_f32(j->kc->dtype, (const char *)j->kc->data + (size_t)slot * j->kc->nb[1] +
                                             (size_t)kvh * HS * j->kc->nb[0], kr, HS);
            float sc = 0.0f;
            for (int d = 0; d < HS; d++)
                sc += q[d] * kr[d];
            sc *= j->scale;
            eng_row_to_f32(j->vc->dtype, (const char *)j->vc->data + (size_t)slot * j->vc->nb[1] +
                                             (size_t)kvh * HS * j->vc->nb[0], vr, HS);
            if (sc > m) {
                const float c = expf(m - sc);
                l *= c;
                for (int d = 0; d < HS; d++)
                    o[d] *= c;
                m = sc;
            }
            const float e = expf(sc - m);
            l += e;
            for (int d = 0; d < HS; d++)
                o[d] += e * vr[d];
        }
        const float inv = 1.0f / l;
        for (int d = 0; d < HS; d++)
            o[d] *= inv;
    }
}

int eng_cpu_attention(struct eng_cpu *cpu, eng_tensor_t *out, const eng_tensor_t *q,
                      const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    const int32_t HS = kv->lay.head_dim;
    const size_t need = 2 * (size_t)HS;
    const int nth = eng_tp_size(cpu->tp);
    if (need > cpu->att_scratch_floats) {
        float *p = realloc(cpu->att_scratch, need * sizeof(float) * (size_t)nth);
        if (!p)
            return ERR_NOMEM;
        cpu->att_scratch = p;
        cpu->att_scratch_floats = need;
    }
    // every position a token reads must map to an allocated block
    const struct eng_step *st = &cpu->step;
    for (int32_t t = 0; t < st->n_tokens; t++) {
        const int32_t *bt = st->block_table + (int64_t)st->seq[t] * st->max_blocks;
        int32_t nb = st->pos[t] / kv->lay.block_size + 1;
        if (nb > st->max_blocks)
            return ERR_INVAL;
        for (int32_t b = 0; b < nb; b++)
            if (bt[b] < 0 || bt[b] >= kv->lay.n_blocks)
                return ERR_INVAL;
    }
    struct att_job j = {.cpu = cpu, .out = out->data, .q = q->data, .kc = &kv->k[layer],
                        .vc = &kv->v[layer], .n_heads = n_heads, .n_kv_heads = kv->lay.n_kv_heads,
                        .head_dim = HS, .block_size = kv->lay.block_size, .scale = scale,
                        .scratch = cpu->att_scratch};
    eng_tp_run(cpu->tp, att_worker, &j);
    return 0;
}
