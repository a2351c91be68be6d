/* engine/ctx.c: a model on its backend with a paged KV cache, for batched steps.
 * Owns: the KV block allocator (a free stack of physical blocks; per-sequence block
 * tables), sequence slots, the activation buffer (planned once for n_batch tokens), the
 * host logits buffer, and turning a batch into a validated eng_step. Nothing here
 * allocates per step. */
#include "model_impl.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 4096
#define MAX_BATCH 65536

void eng_ctx_params_default(struct eng_ctx_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_ctx = 0;            /* 0: min(n_ctx_train, 4096) */
    p->n_seq_max = 1;
    p->n_batch = 512;
    p->n_out_max = 0;        /* 0: n_seq_max */
    p->kv_format = ENG_KV_F16;
    p->kv_block_size = 16;
    p->kv_blocks = 0;
}

void eng_ctx_free(eng_ctx_t *c)
{
    if (!c)
        return;
    eng_kv_storage_free(c->kv);
    eng_buffer_free(c->act);
    free(c->free_blocks);
    free(c->seq_used);
    free(c->seq_len);
    free(c->seq_blocks);
    free(c->st_tokens);
    free(c->st_pos);
    free(c->st_seq);
    free(c->st_slot);
    free(c->st_out);
    free(c->st_seq_len);
    free(c->st_block_table);
    free(c->st_seq_map);
    free(c->logits);
    free(c);
}

static void *xcalloc(size_t n, size_t sz, int *rc)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        *rc = ERR_NOMEM;
    return p;
}

int eng_ctx_new(eng_model_t *m, const struct eng_ctx_params *pin, eng_ctx_t **out,
                struct errbuf *eb)
{
    if (!m->be)
        return err_set(eb, ERR_INVAL, "the model was loaded vocab-only: it cannot run");
    const struct eng_hparams *hp = &m->hp;
    struct eng_ctx_params p = *pin;
    if (p.n_ctx <= 0)
        p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_seq_max <= 0)
        p.n_seq_max = 1;
    if (p.n_batch <= 0)
        p.n_batch = 512;
    if (p.kv_block_size <= 0)
        p.kv_block_size = 16;
    if (p.n_out_max <= 0)
        p.n_out_max = p.n_seq_max < p.n_batch ? p.n_seq_max : p.n_batch;
    if (p.n_ctx > (1 << 24) || p.n_seq_max > MAX_SEQS || p.n_batch > MAX_BATCH ||
        p.n_out_max > p.n_batch || p.kv_block_size > 4096)
        return err_set(eb, ERR_RANGE, "context limits out of range: n_ctx=%d (max %d) "
                       "n_seq_max=%d (max %d) n_batch=%d (max %d) n_out_max=%d (<= n_batch) "
                       "kv_block_size=%d (max 4096)", p.n_ctx, 1 << 24, p.n_seq_max, MAX_SEQS,
                       p.n_batch, MAX_BATCH, p.n_out_max, p.kv_block_size);
    const int32_t max_blocks_seq = (p.n_ctx + p.kv_block_size - 1) / p.kv_block_size;
    if (p.kv_blocks <= 0) {
        int64_t nb = (int64_t)max_blocks_seq * p.n_seq_max;
        if (nb > (1 << 28))
            return err_set(eb, ERR_TOOLARGE, "KV cache of %lld blocks is too large: lower n_ctx "
                           "or the number of sequences", (long long)nb);
        p.kv_blocks = (int32_t)nb;
    }
    int rc = 0;
    eng_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    c->m = m;
    c->be = m->be;
    c->p = p;
    c->n_out_max = p.n_out_max;
    c->max_blocks_seq = max_blocks_seq;

    struct eng_kv_layout lay = {.format = p.kv_format, .n_layers = hp->n_layer,
                                .n_kv_heads = hp->n_head_kv, .head_dim = hp->head_dim,
                                .block_size = p.kv_block_size, .n_blocks = p.kv_blocks};
    if ((rc = eng_kv_storage_new(c->be, &lay, &c->kv)) < 0) {
        rc = err_set(eb, rc, "cannot allocate the KV cache (%d blocks of %zu bytes, %s): %s",
                     p.kv_blocks, eng_kv_block_bytes(&lay) * (size_t)hp->n_layer,
                     eng_kv_format_name(p.kv_format), err_str(rc));
        goto fail;
    }
    const size_t S = (size_t)p.n_seq_max, T = (size_t)p.n_batch;
    c->free_blocks = xcalloc((size_t)p.kv_blocks, sizeof(int32_t), &rc);
    c->seq_used = xcalloc(S, sizeof(bool), &rc);
    c->seq_len = xcalloc(S, sizeof(int32_t), &rc);
    c->seq_blocks = xcalloc(S * (size_t)max_blocks_seq, sizeof(int32_t), &rc);
    c->st_tokens = xcalloc(T, sizeof(int32_t), &rc);
    c->st_pos = xcalloc(T, sizeof(int32_t), &rc);
    c->st_seq = xcalloc(T, sizeof(int32_t), &rc);
    c->st_slot = xcalloc(T, sizeof(int32_t), &rc);
    c->st_out = xcalloc(T, sizeof(int32_t), &rc);
    c->st_seq_len = xcalloc(S, sizeof(int32_t), &rc);
    c->st_block_table = xcalloc(S * (size_t)max_blocks_seq, sizeof(int32_t), &rc);
    c->st_seq_map = xcalloc(S, sizeof(int32_t), &rc);
    c->logits = xcalloc((size_t)p.n_out_max * (size_t)hp->n_vocab, sizeof(float), &rc);
    if (rc < 0)
        goto fail;
    for (int32_t b = 0; b < p.kv_blocks; b++)
        c->free_blocks[b] = p.kv_blocks - 1 - b;      // pop order 0, 1, 2, ...
    c->n_free = p.kv_blocks;
    for (size_t i = 0; i < S * (size_t)max_blocks_seq; i++)
        c->seq_blocks[i] = -1;

    // activations, planned once: x, xb, q, att (T, C); k, v (T, KV); hb, hb2 (T, F);
    // xo (n_out, C); logits (n_out, V)
    const size_t C = (size_t)hp->n_embd, KV = (size_t)hp->n_head_kv * hp->head_dim,
                 F = (size_t)hp->n_ff, V = (size_t)hp->n_vocab, O = (size_t)p.n_out_max;
    const size_t Q = (size_t)hp->n_head * hp->head_dim;
    size_t sizes[10] = {T * C, T * C, T * Q, T * KV, T * KV, T * Q, T * F, T * F, O * C, O * V};
    size_t offs[10], total = 0;
    for (int i = 0; i < 10; i++) {
        offs[i] = total;
        total += (sizes[i] * sizeof(float) + 255) & ~(size_t)255;
    }
    if ((rc = eng_buffer_new(c->be, total, ENG_BUF_COMPUTE, &c->act)) < 0) {
        rc = err_set(eb, rc, "cannot allocate %zu bytes of activations for n_batch=%d: %s", total,
                     p.n_batch, err_str(rc));
        goto fail;
    }
    float **ptrs[10] = {&c->act_x, &c->act_xb, &c->act_q, &c->act_k, &c->act_v,
                        &c->act_att, &c->act_hb, &c->act_hb2, &c->act_xo, &c->act_logits};
    for (int i = 0; i < 10; i++)
        *ptrs[i] = (float *)((char *)c->act->base + offs[i]);
    *out = c;
    return 0;
fail:
    eng_ctx_free(c);
    return rc;
}

int eng_ctx_seq_new(eng_ctx_t *c, int32_t *seq_id)
{
    for (int32_t s = 0; s < c->p.n_seq_max; s++) {
        if (!c->seq_used[s]) {
            c->seq_used[s] = true;
            c->seq_len[s] = 0;
            *seq_id = s;
            return 0;
        }
    }
    return ERR_BUSY;
}

static int32_t *seq_row(eng_ctx_t *c, int32_t s)
{
    return c->seq_blocks + (size_t)s * (size_t)c->max_blocks_seq;
}

static void release_blocks_from(eng_ctx_t *c, int32_t s, int32_t first_block)
{
    int32_t *row = seq_row(c, s);
    for (int32_t b = first_block; b < c->max_blocks_seq && row[b] >= 0; b++) {
        c->free_blocks[c->n_free++] = row[b];
        row[b] = -1;
    }
}

void eng_ctx_seq_free(eng_ctx_t *c, int32_t s)
{
    if (s < 0 || s >= c->p.n_seq_max || !c->seq_used[s])
        return;
    release_blocks_from(c, s, 0);
    c->seq_used[s] = false;
    c->seq_len[s] = 0;
}

int32_t eng_ctx_seq_len(const eng_ctx_t *c, int32_t s)
{
    if (s < 0 || s >= c->p.n_seq_max || !c->seq_used[s])
        return -1;
    return c->seq_len[s];
}

int eng_ctx_seq_truncate(eng_ctx_t *c, int32_t s, int32_t new_len)
{
    if (s < 0 || s >= c->p.n_seq_max || !c->seq_used[s] || new_len < 0 || new_len > c->seq_len[s])
        return ERR_INVAL;
    const int32_t bs = c->p.kv_block_size;
    release_blocks_from(c, s, (new_len + bs - 1) / bs);
    c->seq_len[s] = new_len;
    return 0;
}

int32_t eng_ctx_free_blocks(const eng_ctx_t *c)
{
    return c->n_free;
}

int eng_ctx_decode(eng_ctx_t *c, const struct eng_batch *b)
{
    const int32_t n = b->n, bs = c->p.kv_block_size, V = c->m->hp.n_vocab;
    if (n < 1 || !b->tokens || !b->seq_id)
        return ERR_INVAL;
    if (n > c->p.n_batch)
        return ERR_TOOLARGE;
    // map sequences to step-local indices and count their new tokens (st_seq_len as counter)
    int32_t n_seqs = 0;
    for (int32_t s = 0; s < c->p.n_seq_max; s++)
        c->st_seq_map[s] = -1;
    for (int32_t i = 0; i < n; i++) {
        const int32_t s = b->seq_id[i];
        if (s < 0 || s >= c->p.n_seq_max || !c->seq_used[s] || b->tokens[i] < 0 ||
            b->tokens[i] >= V)
            return ERR_INVAL;
        if (c->st_seq_map[s] < 0) {
            c->st_seq_map[s] = n_seqs;
            c->st_seq_len[n_seqs++] = 0;
        }
        c->st_seq_len[c->st_seq_map[s]]++;
    }
    // capacity: context length and free blocks (all or nothing)
    int32_t need_blocks = 0;
    for (int32_t s = 0; s < c->p.n_seq_max; s++) {
        if (c->st_seq_map[s] < 0)
            continue;
        const int32_t len = c->seq_len[s], add = c->st_seq_len[c->st_seq_map[s]];
        if ((int64_t)len + add > c->p.n_ctx)
            return ERR_TOOLARGE;
        need_blocks += (len + add + bs - 1) / bs - (len + bs - 1) / bs;
    }
    if (need_blocks > c->n_free)
        return ERR_BUSY;
    // logits requests
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        bool want;
        if (b->want_logits) {
            want = b->want_logits[i];
        } else {   // default: the last token of each sequence in the batch
            want = true;
            for (int32_t k = i + 1; k < n; k++)
                if (b->seq_id[k] == b->seq_id[i]) {
                    want = false;
                    break;
                }
        }
        if (want)
            c->st_out[n_out++] = i;
    }
    if (n_out > c->n_out_max)
        return ERR_TOOLARGE;
    // commit: allocate blocks, assign positions and slots
    for (int32_t s = 0; s < c->p.n_seq_max; s++) {
        if (c->st_seq_map[s] < 0)
            continue;
        const int32_t len = c->seq_len[s], add = c->st_seq_len[c->st_seq_map[s]];
        int32_t *row = seq_row(c, s);
        for (int32_t blk = (len + bs - 1) / bs; blk < (len + add + bs - 1) / bs; blk++)
            row[blk] = c->free_blocks[--c->n_free];
    }
    for (int32_t i = 0; i < n; i++) {
        const int32_t s = b->seq_id[i], p = c->seq_len[s]++;
        c->st_tokens[i] = b->tokens[i];
        c->st_pos[i] = p;
        c->st_seq[i] = c->st_seq_map[s];
        c->st_slot[i] = seq_row(c, s)[p / bs] * bs + p % bs;
    }
    const int32_t W = c->max_blocks_seq;
    for (int32_t s = 0; s < c->p.n_seq_max; s++) {
        const int32_t j = c->st_seq_map[s];
        if (j < 0)
            continue;
        c->st_seq_len[j] = c->seq_len[s];
        memcpy(c->st_block_table + (size_t)j * (size_t)W, seq_row(c, s), sizeof(int32_t) * (size_t)W);
    }
    c->step = (struct eng_step){.n_tokens = n, .tokens = c->st_tokens, .pos = c->st_pos,
                                .seq = c->st_seq, .kv_slot = c->st_slot, .n_seqs = n_seqs,
                                .seq_len = c->st_seq_len, .max_blocks = W,
                                .block_table = c->st_block_table, .n_out = n_out,
                                .out_rows = c->st_out};
    int rc = eng__forward(c);
    if (rc < 0) {
        // the step failed on the device: drop the tokens it appended (their KV is garbage)
        for (int32_t s = 0; s < c->p.n_seq_max; s++) {
            const int32_t j = c->st_seq_map[s];
            if (j >= 0) {
                int32_t added = 0;
                for (int32_t i = 0; i < n; i++)
                    added += b->seq_id[i] == s;
                eng_ctx_seq_truncate(c, s, c->seq_len[s] - added);
            }
        }
        c->n_logits = 0;
        return rc;
    }
    c->n_logits = n_out;
    return 0;
}

const float *eng_ctx_logits(const eng_ctx_t *c, int32_t i)
{
    if (i < 0 || i >= c->n_logits)
        return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

int32_t eng_ctx_n_logits(const eng_ctx_t *c)
{
    return c->n_logits;
}
