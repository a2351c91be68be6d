/* engine/cpu/attention.c: causal attention over the paged KV cache for one step.
 * Owns: the step's checks, the work plan (tokens grouped by sequence, tiles of query rows
 * per KV head: attention_impl.h), dispatch to the tile kernel of the CPU's level
 * (attention_tile.h compiled here for the baseline, and in attention_avx2.c /
 * attention_avx512.c), and the reference version the tests compare against. */
#include "attention_impl.h"
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATT_WORKER eng_cpu_attention_worker_base
#include "attention_tile.h"

/* Every position a token reads must map to an allocated block; sequences and
 * positions must be in range. */
static int check_step(const struct eng_step *st, const eng_kv_storage_t *kv)
{
    if (st->n_seqs <= 0 || st->max_blocks <= 0 || kv->lay.block_size <= 0)
        return ERR_INVAL;
    for (int32_t t = 0; t < st->n_tokens; t++) {
        if (st->seq[t] < 0 || st->seq[t] >= st->n_seqs || st->pos[t] < 0)
            return ERR_INVAL;
        const int32_t *bt = st->block_table + (int64_t)st->seq[t] * st->max_blocks;
        const int32_t nb = st->pos[t] / kv->lay.block_size + 1;
        if (nb > st->max_blocks)
            return ERR_INVAL;
        for (int32_t b = 0; b < nb; b++)
            if (bt[b] < 0 || bt[b] >= kv->lay.n_blocks)
                return ERR_INVAL;
    }
    return 0;
}

static bool kv_dtype_ok(const eng_tensor_t *t, const eng_kv_storage_t *kv)
{
    const int64_t row = (int64_t)kv->lay.n_kv_heads * kv->lay.head_dim;
    return (t->dtype == ENG_DTYPE_F32 || t->dtype == ENG_DTYPE_F16) && t->ne[0] == row &&
           t->ne[1] >= (int64_t)kv->lay.n_blocks * kv->lay.block_size &&
           t->nb[1] >= eng_dtype_row_bytes(t->dtype, row);
}

/* Grows cpu->att_scratch to nth * per_thread floats (64-byte aligned). Here
 * cpu->att_scratch_floats counts the whole allocation, so a pool of another size is safe. */
static int scratch_grow(struct eng_cpu *cpu, size_t per_thread, int nth)
{
    if (per_thread > ((size_t)1 << 36) / (size_t)nth)
        return ERR_NOMEM;
    const size_t need = per_thread * (size_t)nth;
    if (need <= cpu->att_scratch_floats)
        return 0;
    float *p = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
    if (!p)
        return ERR_NOMEM;
    free(cpu->att_scratch);
    cpu->att_scratch = p;
    cpu->att_scratch_floats = need;
    return 0;
}

int eng_cpu_attention(struct eng_cpu *cpu, eng_tensor_t *out, const eng_tensor_t *q,
                      const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    const struct eng_step *st = &cpu->step;
    const int32_t hs = kv->lay.head_dim, n_kv = kv->lay.n_kv_heads;
    if (hs <= 0 || n_kv <= 0 || n_heads % n_kv || !kv_dtype_ok(&kv->k[layer], kv) ||
        !kv_dtype_ok(&kv->v[layer], kv))
        return ERR_INVAL;
    int rc = check_step(st, kv);
    if (rc < 0)
        return rc;
    const int nth = eng_tp_size(cpu->tp);
    // per thread: the tile scratch, rounded to 64 bytes plus a page of gap (threads
    // write their own scratch; see matmul.c on prefetchers); after thread 0's
    // tile scratch: the plan (order, seq_start, tile_start) as int32
    const int32_t group = n_heads / n_kv;
    if (group > ATT_QT)   // more query heads per KV head than a tile holds: reference
        return eng_cpu_attention_ref(cpu, out, q, kv, layer, n_heads, scale);
    const int32_t tt = group >= ATT_QT ? 1 : ATT_QT / group;
    int32_t maxpos = 0;
    for (int32_t t = 0; t < st->n_tokens; t++)
        maxpos = st->pos[t] > maxpos ? st->pos[t] : maxpos;
    const size_t tile_f = (att_tile_floats(hs) + 15) & ~(size_t)15;
    const size_t plan_i = (size_t)st->n_tokens + 2 * ((size_t)st->n_seqs + 1);
    // the split is decided after the plan; reserve the largest partial state it may need
    const int32_t max_split = nth > 1 ? 16 : 1;
    const size_t part_max = (size_t)((int64_t)st->n_tokens * n_kv) < (size_t)(2 * nth)
                                ? (size_t)st->n_tokens * (size_t)n_kv * (size_t)max_split *
                                      ATT_QT * (2 + (size_t)hs)
                                : 0;
    const size_t per = tile_f + ((plan_i + 15) & ~(size_t)15) + part_max + 1024;
    if ((rc = scratch_grow(cpu, per, nth)) < 0)
        return rc;
    int32_t *order = (int32_t *)(cpu->att_scratch + tile_f);
    int32_t *seq_start = order + st->n_tokens, *tile_start = seq_start + st->n_seqs + 1;
    float *part = cpu->att_scratch + tile_f + ((plan_i + 15) & ~(size_t)15);

    // counting sort of the tokens by sequence (stable: a sequence's tokens keep their order)
    memset(seq_start, 0, ((size_t)st->n_seqs + 1) * sizeof(int32_t));
    for (int32_t t = 0; t < st->n_tokens; t++)
        seq_start[st->seq[t] + 1]++;
    for (int32_t s = 0; s < st->n_seqs; s++)
        seq_start[s + 1] += seq_start[s];
    for (int32_t s = 0; s <= st->n_seqs; s++)
        tile_start[s] = seq_start[s];          // reused as fill cursors, then rewritten
    for (int32_t t = 0; t < st->n_tokens; t++)
        order[tile_start[st->seq[t]]++] = t;
    tile_start[0] = 0;
    for (int32_t s = 0; s < st->n_seqs; s++) {
        const int32_t n = seq_start[s + 1] - seq_start[s];
        tile_start[s + 1] = tile_start[s] + (n + tt - 1) / tt;
    }
    // decode with fewer (sequence, KV head) pairs than 2 per thread and long contexts:
    // split each pair's keys into ranges of >= 256 keys, 4 items per thread
    const int64_t n_pairs = (int64_t)tile_start[st->n_seqs] * n_kv;
    int32_t nsplit = 1;
    if (part_max > 0 && n_pairs < 2 * nth) {
        const int64_t want = (4 * nth + n_pairs - 1) / n_pairs, room = (maxpos + 1) / 256;
        nsplit = (int32_t)(want < room ? want : room);
        nsplit = nsplit < 1 ? 1 : nsplit > max_split ? max_split : nsplit;
    }

    struct att_job j = {.st = st, .out = out->data, .q = q->data, .kc = &kv->k[layer],
                        .vc = &kv->v[layer], .n_heads = n_heads, .n_kv = n_kv, .hs = hs,
                        .bs = kv->lay.block_size, .group = group, .tt = tt, .scale = scale,
                        .order = order, .seq_start = seq_start, .tile_start = tile_start,
                        .n_pairs = n_pairs, .nsplit = nsplit, .n_items = n_pairs * nsplit,
                        .part = part, .tp = cpu->tp,
                        .scratch = cpu->att_scratch, .per_thread = per};
    atomic_init(&j.next, 0);
    const eng_tp_fn fn = eng_cpu_kernels(cpu->level)->att_worker;
    if (nth == 1 || j.n_items == 1)   // (n_items == 1: never split, no barrier)
        fn(&j, 0, 1);
    else
        eng_tp_run(cpu->tp, fn, &j);
    return 0;
}

/* --- the reference ------------------------------------------------------------------------ */

int eng_cpu_attention_ref(struct eng_cpu *cpu, eng_tensor_t *out, const eng_tensor_t *q,
                          const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads,
                          float scale)
{
    const struct eng_step *st = &cpu->step;
    const int32_t HS = kv->lay.head_dim, n_kv = kv->lay.n_kv_heads;
    if (HS <= 0 || n_kv <= 0 || n_heads % n_kv || !kv_dtype_ok(&kv->k[layer], kv) ||
        !kv_dtype_ok(&kv->v[layer], kv))
        return ERR_INVAL;
    int rc = check_step(st, kv);
    if (rc < 0)
        return rc;
    float *kr = malloc(2 * (size_t)HS * sizeof(float));
    if (!kr)
        return ERR_NOMEM;
    float *vr = kr + HS;
    const eng_tensor_t *kc = &kv->k[layer], *vc = &kv->v[layer];
    const int32_t group = n_heads / n_kv, bsz = kv->lay.block_size;
    for (int64_t it = 0; it < (int64_t)st->n_tokens * n_heads; it++) {
        const int32_t t = (int32_t)(it / n_heads), h = (int32_t)(it % n_heads);
        const int32_t s = st->seq[t], kvh = h / group;
        const float *qv = (const float *)q->data + ((int64_t)t * n_heads + h) * HS;
        float *o = (float *)out->data + ((int64_t)t * n_heads + h) * HS;
        const int32_t *bt = st->block_table + (int64_t)s * st->max_blocks;
        float m = -INFINITY, l = 0.0f;
        for (int d = 0; d < HS; d++)
            o[d] = 0.0f;
        for (int32_t p = 0; p <= st->pos[t]; p++) {
            const int64_t slot = (int64_t)bt[p / bsz] * bsz + p % bsz;
            eng_row_to_f32(kc->dtype, (const char *)kc->data + (size_t)slot * kc->nb[1] +
                                          (size_t)kvh * HS * kc->nb[0], kr, HS);
            float sc = 0.0f;
            for (int d = 0; d < HS; d++)
                sc += qv[d] * kr[d];
            sc *= scale;
            eng_row_to_f32(vc->dtype, (const char *)vc->data + (size_t)slot * vc->nb[1] +
                                          (size_t)kvh * HS * vc->nb[0], vr, HS);
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
    (void)cpu;
    free(kr);
    return 0;
}
