/* gpu/attention.cu: causal attention of a step's tokens over the paged KV cache.
 * One block per (token, KV head, group of up to 8 query heads sharing it, split of the KV
 * length): each K/V row is read once for all the query heads of its GQA group. A block
 * walks its positions in chunks of 64: scores (one warp per position), an online-softmax
 * update per head, then V accumulated into shared memory. Slots come from the block
 * table (slot = block_table[p / block_size] * block_size + p % block_size), so the cache
 * layout is the engine's (engine/backend.h); a quantized cache format is a new loader
 * for the K/V rows here, not a new kernel structure.
 * Decode (few tokens, long contexts) splits the KV length over blocks (flash-decoding):
 * each split writes (max, sum, unnormalized output) and a second kernel combines them.
 * Prefill has enough (token, head) blocks and runs unsplit. */
#include "common.cuh"

#include <math.h>

#define ATT_THREADS 128
#define ATT_CH 64           /* positions per chunk */
#define ATT_GB_MAX 8        /* query heads per block */
#define ATT_SPAN_BUCKET 256 /* plans are made for the longest sequence rounded up to this */

static size_t att_smem_bytes(int32_t GB, int32_t HS)
{
    return (size_t)(2 * GB * HS + GB * ATT_CH + 3 * GB) * sizeof(float) + ATT_CH * sizeof(int32_t);
}

template <int F16>
static __device__ __forceinline__ float kv_load(const void *base, int64_t i)
{
    if (F16)
        return gpu_h2f(((const uint16_t *)base)[i]);
    return ((const float *)base)[i];
}

/* grid (T, NKV * hb, n_split), block ATT_THREADS, dynamic shared memory att_smem_bytes. */
template <int F16>
static __global__ void __launch_bounds__(ATT_THREADS)
    k_attention(float *out, float *part_acc, float2 *part_ml, const float *q, const void *kc,
                const void *vc, const int32_t *pos, const int32_t *seq, const int32_t *block_table,
                int32_t NH, int32_t NKV, int32_t HS, int32_t bs, int32_t max_blocks, float scale,
                int32_t GB, int32_t hb, int32_t n_split, int32_t split_len)
{
    GPU_DYN_SMEM(smem);
    float *q_s = (float *)smem;           // (GB, HS) scaled queries
    float *acc_s = q_s + GB * HS;          // (GB, HS) unnormalized outputs
    float *sc = acc_s + GB * HS;           // (GB, ATT_CH) scores, then weights
    float *m_s = sc + GB * ATT_CH;         // (GB) running max
    float *l_s = m_s + GB;                 // (GB) running sum
    float *c_s = l_s + GB;                 // (GB) this chunk's rescale factor
    int32_t *slot_s = (int32_t *)(c_s + GB);   // (ATT_CH)

    const int64_t t = blockIdx.x;
    const int group = NH / NKV;
    const int kvh = (int)blockIdx.y / hb;
    const int hg0 = ((int)blockIdx.y % hb) * GB;
    const int nh = GB < group - hg0 ? GB : group - hg0;
    const int h0 = kvh * group + hg0;
    const int split = (int)blockIdx.z;
    const int32_t len = pos[t] + 1;
    const int32_t p_begin = split * split_len;
    const int32_t p_end = len < p_begin + split_len ? len : p_begin + split_len;
    const int tid = (int)threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int NW = ATT_THREADS / 32;
    const int64_t rs = (int64_t)NKV * HS;
    const int32_t *bt = block_table + (int64_t)seq[t] * max_blocks;
    const int64_t qo = (t * NH + h0) * (int64_t)HS;   // heads h0.. are contiguous

    for (int e = tid; e < nh * HS; e += ATT_THREADS) {
        q_s[e] = q[qo + e] * scale;
        acc_s[e] = 0.0f;
    }
    if (tid < nh) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    __syncthreads();

    for (int32_t c0 = p_begin; c0 < p_end; c0 += ATT_CH) {
        const int n = ATT_CH < p_end - c0 ? ATT_CH : p_end - c0;
        if (tid < n) {
            const int32_t p = c0 + tid;
            slot_s[tid] = bt[p / bs] * bs + p % bs;
        }
        __syncthreads();
        // scores: warp w takes positions w, w + NW, ...
        for (int j = warp; j < n; j += NW) {
            const int64_t kb = (int64_t)slot_s[j] * rs + (int64_t)kvh * HS;
            float part[ATT_GB_MAX];
#pragma unroll
            for (int h = 0; h < ATT_GB_MAX; h++)
                part[h] = 0.0f;
            for (int d = lane; d < HS; d += 32) {
                const float kf = kv_load<F16>(kc, kb + d);
#pragma unroll
                for (int h = 0; h < ATT_GB_MAX; h++)
                    if (h < nh)
                        part[h] += q_s[h * HS + d] * kf;
            }
#pragma unroll
            for (int h = 0; h < ATT_GB_MAX; h++) {
                if (h < nh) {
                    const float v = gpu_warp_sum(part[h]);
                    if (lane == 0)
                        sc[h * ATT_CH + j] = v;
                }
            }
        }
        __syncthreads();
        // online softmax: warp w takes heads w, w + NW, ...
        for (int h = warp; h < nh; h += NW) {
            const float m_old = m_s[h];
            float mx = -INFINITY;
            for (int j = lane; j < n; j += 32)
                mx = fmaxf(mx, sc[h * ATT_CH + j]);
            mx = gpu_warp_max(mx);
            const float m_new = fmaxf(m_old, mx);
            const float corr = expf(m_old - m_new);
            float sum = 0.0f;
            for (int j = lane; j < n; j += 32) {
                const float e = expf(sc[h * ATT_CH + j] - m_new);
                sc[h * ATT_CH + j] = e;
                sum += e;
            }
            sum = gpu_warp_sum(sum);
            if (lane == 0) {
                l_s[h] = l_s[h] * corr + sum;
                m_s[h] = m_new;
                c_s[h] = corr;
            }
        }
        __syncthreads();
        // V: thread owns output elements e = h * HS + d
        for (int e = tid; e < nh * HS; e += ATT_THREADS) {
            const int h = e / HS, d = e % HS;
            const float *wgt = sc + h * ATT_CH;
            float a = acc_s[e] * c_s[h];
            for (int j = 0; j < n; j++)
                a += wgt[j] * kv_load<F16>(vc, (int64_t)slot_s[j] * rs + (int64_t)kvh * HS + d);
            acc_s[e] = a;
        }
        __syncthreads();
    }

    if (n_split == 1) {
        for (int e = tid; e < nh * HS; e += ATT_THREADS)
            out[qo + e] = acc_s[e] / l_s[e / HS];
    } else {
        for (int e = tid; e < nh * HS; e += ATT_THREADS) {
            const int h = e / HS, d = e % HS;
            part_acc[((t * NH + h0 + h) * n_split + split) * (int64_t)HS + d] = acc_s[e];
        }
        if (tid < nh)
            part_ml[(t * NH + h0 + tid) * n_split + split] = make_float2(m_s[tid], l_s[tid]);
    }
}

/* grid (T, NH), block 128: merges the splits of one (token, head). Empty splits (l = 0)
 * are skipped. */
static __global__ void k_att_combine(float *out, const float *part_acc, const float2 *part_ml,
                                     int32_t NH, int32_t HS, int32_t n_split)
{
    const int64_t th = (int64_t)blockIdx.x * NH + blockIdx.y;
    const float2 *ml = part_ml + th * n_split;
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < n_split; s++)
        if (ml[s].y > 0.0f)
            M = fmaxf(M, ml[s].x);
    for (int s = 0; s < n_split; s++)
        if (ml[s].y > 0.0f)
            L += ml[s].y * expf(ml[s].x - M);
    for (int d = (int)threadIdx.x; d < HS; d += (int)blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < n_split; s++)
            if (ml[s].y > 0.0f)
                a += part_acc[(th * n_split + s) * HS + d] * expf(ml[s].x - M);
        out[th * HS + d] = a / L;
    }
}

void gpu_attention_plan(const struct gpu_ctx *g, struct gpu_rec *r, int32_t max_len)
{
    auto &a = r->u.att;
    const int32_t group = a.n_heads / a.n_kv_heads;
    a.heads_per_block = group < ATT_GB_MAX ? group : ATT_GB_MAX;
    a.head_blocks = (group + a.heads_per_block - 1) / a.heads_per_block;
    const int64_t base = a.T * a.n_kv_heads * a.head_blocks;
    const int64_t span = GPU_CEIL_DIV((int64_t)max_len, (int64_t)ATT_SPAN_BUCKET) * ATT_SPAN_BUCKET;
    int64_t want = GPU_CEIL_DIV((int64_t)8 * (g->n_sm > 0 ? g->n_sm : 1), base);
    const int64_t by_len = GPU_CEIL_DIV(span, (int64_t)ATT_CH);
    int64_t ns = want < by_len ? want : by_len;
    if (ns < 1)
        ns = 1;
    if (ns > 65535)
        ns = 65535;
    int64_t sl = GPU_CEIL_DIV(GPU_CEIL_DIV(span, ns), (int64_t)ATT_CH) * ATT_CH;
    ns = GPU_CEIL_DIV(span, sl);
    a.n_split = (int32_t)ns;
    a.split_len = (int32_t)sl;
}

int gpu_attention_exec(struct gpu_ctx *g, const struct gpu_rec *r)
{
    const auto &a = r->u.att;
    const int32_t GB = a.heads_per_block;
    const size_t smem = att_smem_bytes(GB, a.head_dim);
    float *part_acc = NULL;
    float2 *part_ml = NULL;
    if (a.n_split > 1) {
        const size_t n = (size_t)a.T * (size_t)a.n_heads * (size_t)a.n_split;
        const size_t acc_bytes = (n * (size_t)a.head_dim * sizeof(float) + 255) & ~(size_t)255;
        void *p;
        int rc = gpu_pool_reserve(g, GPU_SCR_ATT, acc_bytes + n * sizeof(float2), &p);
        if (rc < 0)
            return rc;
        part_acc = (float *)p;
        part_ml = (float2 *)((char *)p + acc_bytes);
    }
    const dim3 grid((unsigned)a.T, (unsigned)(a.n_kv_heads * a.head_blocks), (unsigned)a.n_split);
    if (a.f16)
        LAUNCH(grid, dim3(ATT_THREADS), smem, g->stream, k_attention<1>)(
            a.out, part_acc, part_ml, a.q, a.kc, a.vc, a.pos, a.seq, a.block_table, a.n_heads,
            a.n_kv_heads, a.head_dim, a.block_size, a.max_blocks, a.scale, GB, a.head_blocks,
            a.n_split, a.split_len);
    else
        LAUNCH(grid, dim3(ATT_THREADS), smem, g->stream, k_attention<0>)(
            a.out, part_acc, part_ml, a.q, a.kc, a.vc, a.pos, a.seq, a.block_table, a.n_heads,
            a.n_kv_heads, a.head_dim, a.block_size, a.max_blocks, a.scale, GB, a.head_blocks,
            a.n_split, a.split_len);
    GPU_LAUNCHED(g, "attention");
    if (a.n_split > 1) {
        LAUNCH(dim3((unsigned)a.T, (unsigned)a.n_heads), dim3(128), 0, g->stream, k_att_combine)(
            a.out, part_acc, part_ml, a.n_heads, a.head_dim, a.n_split);
        GPU_LAUNCHED(g, "attention_combine");
    }
    return 0;
}

/* Largest head size the kernel takes (its shared memory stays under the 48 KiB default). */
int32_t gpu_attention_max_head_dim(void)
{
    return 512;
}
