/* engine/cpu/attention_impl.h: internals of the attention module (not a public API).
 * Owns: the job one eng_cpu_attention call hands to the pool, the per-ISA tile workers
 * (attention.c: baseline; attention_avx2.c; attention_avx512.c, each compiling
 * attention_tile.h with its own flags), and the reference kept as the tests' oracle.
 *
 * Work split: the step's tokens are grouped by sequence; a work item is one (sequence,
 * KV head, tile of up to ATT_QT query rows), a query row being one (token, query head of
 * that KV head's group). A tile reads each key/value row it needs once, converted to F32,
 * for all its rows; items are taken from an atomic counter, latest tokens first.
 * Decode with few (sequence, KV head) pairs and long contexts: each pair's keys are split
 * into nsplit ranges (flash-decoding); each range leaves its softmax state (max, sum,
 * unnormalized output) in `part`, and after a barrier the threads combine them. */
#ifndef ORTHOD_ENGINE_CPU_ATTENTION_IMPL_H
#define ORTHOD_ENGINE_CPU_ATTENTION_IMPL_H

#include "cpu.h"

#include <stdatomic.h>

#define ATT_QT 16          /* query rows per tile */
#define ATT_KB 16          /* keys per chunk */
#define ATT_PF 2           /* chunks of K/V rows prefetched ahead */

struct att_job {
    const struct eng_step *st;
    float *out;                      /* (T, n_heads * HS) */
    const float *q;                  /* (T, n_heads * HS) */
    const eng_tensor_t *kc, *vc;     /* the layer's cache: row = slot, NKV * HS elements */
    int32_t n_heads, n_kv, hs, bs;   /* query heads, KV heads, head size, block size */
    int32_t group;                   /* n_heads / n_kv */
    int32_t tt;                      /* tokens per tile: max(1, ATT_QT / group) */
    float scale;
    const int32_t *order;            /* (T) token indices grouped by sequence */
    const int32_t *seq_start;        /* (n_seqs + 1) offsets into order */
    const int32_t *tile_start;       /* (n_seqs + 1) first tile of each sequence */
    int64_t n_pairs;                 /* tiles * n_kv */
    int32_t nsplit;                  /* key ranges per pair (1: no split) */
    int64_t n_items;                 /* n_pairs * nsplit */
    _Atomic int64_t next;            /* next item to take */
    float *part;                     /* nsplit > 1: (n_items, ATT_QT * (2 + hs)) states */
    eng_tp_t *tp;                    /* for the barrier before combining */
    float *scratch;                  /* per thread: att_tile_floats(hs) floats */
    size_t per_thread;               /* floats between threads' scratch */
};

/* Floats of per-thread scratch a tile needs for head size hs. */
static inline size_t att_tile_floats(int32_t hs)
{
    return (size_t)ATT_KB * (size_t)hs * 2 + (size_t)ATT_QT * ATT_KB +
           (size_t)ATT_QT * (size_t)hs + (size_t)ATT_QT * 2 + (size_t)hs + 64;
}

void eng_cpu_attention_worker_base(void *arg, int ith, int nth);
#if defined(__x86_64__)
void eng_cpu_attention_worker_avx2(void *arg, int ith, int nth);
void eng_cpu_attention_worker_avx512(void *arg, int ith, int nth);
#endif

/* The oracle: one (token, head) at a time, online softmax, expf, rows converted with
 * eng_row_to_f32. Same contract and checks as eng_cpu_attention; single thread. */
int eng_cpu_attention_ref(struct eng_cpu *cpu, eng_tensor_t *out, const eng_tensor_t *q,
                          const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads,
                          float scale);

#endif
