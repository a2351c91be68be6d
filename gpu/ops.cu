/* gpu/ops.cu: the small kernels: embedding lookup (every weight dtype), RMSNorm, RoPE
 * (NORM and NEOX), KV-cache writes (F32 -> F32/F16), SwiGLU, add, row gather; Q8_0/Q4_0
 * dequantization to F16 (weight upload); the probe kernel. Each mirrors the CPU backend's
 * arithmetic (engine/cpu/backend_cpu.c) so results agree to rounding. */
#include "common.cuh"

#include <math.h>

#define EW_THREADS 256

/* --- element decoding for the embedding ----------------------------------------------------- */
static __device__ __forceinline__ float load_elem(int32_t t, const unsigned char *row, int64_t i)
{
    switch (t) {
    case ENG_DTYPE_F32:
        return ((const float *)row)[i];
    case ENG_DTYPE_F16:
        return gpu_h2f(((const uint16_t *)row)[i]);
    case ENG_DTYPE_BF16:
        return gpu_bf2f(((const uint16_t *)row)[i]);
    case ENG_DTYPE_Q8_0: {
        const unsigned char *b = row + (i / ENG_QK8_0) * 34;
        const uint16_t d = (uint16_t)(b[0] | (b[1] << 8));
        return gpu_h2f(d) * (float)(int8_t)b[2 + i % ENG_QK8_0];
    }
    case ENG_DTYPE_Q4_0: {
        const unsigned char *b = row + (i / ENG_QK4_0) * 18;
        const uint16_t d = (uint16_t)(b[0] | (b[1] << 8));
        const int j = (int)(i % ENG_QK4_0);
        const int q = j < 16 ? (b[2 + j] & 0xf) : (b[2 + j - 16] >> 4);
        return gpu_h2f(d) * (float)(q - 8);
    }
    default:
        return NAN;
    }
}

/* grid (T), block EW_THREADS: out[t] = row tokens[t] of wte */
static __global__ void k_embed(float *out, const unsigned char *wte, const int32_t *tokens,
                               int64_t C, size_t row_bytes, int32_t storage)
{
    const int64_t t = blockIdx.x;
    const unsigned char *row = wte + (size_t)tokens[t] * row_bytes;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        out[t * C + c] = load_elem(storage, row, c);
}

/* grid (R), block EW_THREADS: out = x / rms(x) * w, the sum of squares in double as on the CPU.
 * Reads the whole row before writing it, so out may alias x. */
static __global__ void __launch_bounds__(EW_THREADS) k_rmsnorm(float *out, const float *x,
                                                               const float *w, int64_t C, float eps)
{
    __shared__ double part[EW_THREADS / 32];
    __shared__ float s_scale;
    const int64_t r = blockIdx.x;
    const float *xr = x + r * C;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < C; i += EW_THREADS)
        ss += (double)xr[i] * xr[i];
    ss = gpu_warp_sum_d(ss);
    const int lane = (int)threadIdx.x % 32, warp = (int)threadIdx.x / 32;
    if (lane == 0)
        part[warp] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int i = 0; i < EW_THREADS / 32; i++)
            tot += part[i];
        s_scale = (float)(1.0 / sqrt(tot / (double)C + (double)eps));
    }
    __syncthreads();
    const float scale = s_scale;
    float *o = out + r * C;
    for (int64_t i = threadIdx.x; i < C; i += EW_THREADS)
        o[i] = xr[i] * scale * w[i];
}

/* grid (T), block 64: rotates every head of token t by its position (angles in double, as
 * on the CPU). Thread i handles pair i of every head. */
static __global__ void k_rope(float *x, const int32_t *pos, int64_t n_heads, int64_t HS,
                              int32_t n_rot, int32_t neox, float freq_base, float freq_scale)
{
    const int64_t t = blockIdx.x;
    const int half = n_rot / 2;
    const double p = (double)pos[t] * (double)freq_scale;
    float *xt = x + t * n_heads * HS;
    for (int i = (int)threadIdx.x; i < half; i += (int)blockDim.x) {
        const double theta = p * pow((double)freq_base, -2.0 * i / n_rot);
        const float c = (float)cos(theta), s = (float)sin(theta);
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        for (int64_t h = 0; h < n_heads; h++) {
            float *xh = xt + h * HS;
            const float x0 = xh[i0], x1 = xh[i1];
            xh[i0] = x0 * c - x1 * s;
            xh[i1] = x0 * s + x1 * c;
        }
    }
}

/* grid (T, 2), block EW_THREADS: row t of k (y = 0) or v (y = 1) into its cache slot. */
static __global__ void k_kv_write(const float *k, const float *v, void *kc, void *vc,
                                  const int32_t *slot, int64_t row, int32_t f16)
{
    const int64_t t = blockIdx.x;
    const float *src = (blockIdx.y == 0 ? k : v) + t * row;
    void *dst = blockIdx.y == 0 ? kc : vc;
    const int64_t s = slot[t];
    if (f16) {
        uint16_t *d = (uint16_t *)dst + s * row;
        for (int64_t i = threadIdx.x; i < row; i += blockDim.x)
            d[i] = gpu_f2h(src[i]);
    } else {
        float *d = (float *)dst + s * row;
        for (int64_t i = threadIdx.x; i < row; i += blockDim.x)
            d[i] = src[i];
    }
}

static __global__ void k_swiglu(float *out, const float *g, const float *u, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        out[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

static __global__ void k_add(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

/* grid (n_out), block EW_THREADS */
static __global__ void k_gather(float *out, const float *x, const int32_t *rows, int64_t C)
{
    const int64_t i = blockIdx.x;
    const float *src = x + (int64_t)rows[i] * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        out[i * C + c] = src[c];
}

/* grid (ceil(rows*K/32 / EW_THREADS)): one thread per quantized block -> 32 F16 values. */
static __global__ void k_dequant(const unsigned char *src, uint16_t *dst, int64_t n_blocks,
                                 int32_t q4)
{
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks)
        return;
    uint16_t *o = dst + b * 32;
    if (q4) {
        const unsigned char *blk = src + b * 18;
        const float d = gpu_h2f((uint16_t)(blk[0] | (blk[1] << 8)));
        for (int j = 0; j < 16; j++) {
            o[j] = gpu_f2h(d * (float)((blk[2 + j] & 0xf) - 8));
            o[j + 16] = gpu_f2h(d * (float)((blk[2 + j] >> 4) - 8));
        }
    } else {
        const unsigned char *blk = src + b * 34;
        const float d = gpu_h2f((uint16_t)(blk[0] | (blk[1] << 8)));
        for (int j = 0; j < 32; j++)
            o[j] = gpu_f2h(d * (float)(int8_t)blk[2 + j]);
    }
}

/* grid (R), block EW_THREADS: out_add = a + b, then out_norm = rmsnorm(out_add) * w, with
 * k_add's and k_rmsnorm's arithmetic (same thread mapping, same summation order). Each
 * thread re-reads only the elements it wrote, so out_norm may alias out_add, a or b. */
static __global__ void __launch_bounds__(EW_THREADS)
    k_add_rmsnorm(float *out_add, const float *a, const float *b, float *out_norm, const float *w,
                  int64_t C, float eps)
{
    __shared__ double part[EW_THREADS / 32];
    __shared__ float s_scale;
    const int64_t r = blockIdx.x;
    const float *ar = a + r * C, *br = b + r * C;
    float *xr = out_add + r * C;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < C; i += EW_THREADS) {
        const float v = ar[i] + br[i];
        xr[i] = v;
        ss += (double)v * v;
    }
    ss = gpu_warp_sum_d(ss);
    const int lane = (int)threadIdx.x % 32, warp = (int)threadIdx.x / 32;
    if (lane == 0)
        part[warp] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int i = 0; i < EW_THREADS / 32; i++)
            tot += part[i];
        s_scale = (float)(1.0 / sqrt(tot / (double)C + (double)eps));
    }
    __syncthreads();
    const float scale = s_scale;
    float *o = out_norm + r * C;
    for (int64_t i = threadIdx.x; i < C; i += EW_THREADS)
        o[i] = xr[i] * scale * w[i];
}

/* grid (T), block 128: RoPE of q and k of token t (k_rope's arithmetic), then, when kc is
 * set, k (rotated) and v written into the cache at slot[t] (k_kv_write's conversion). */
static __global__ void k_rope_qk_kv(float *q, int64_t nhq, int64_t HSq, float *k, int64_t nhk,
                                    int64_t HSk, const int32_t *pos, int32_t n_rot, int32_t neox,
                                    float freq_base, float freq_scale, const float *v, void *kc,
                                    void *vc, const int32_t *slot, int64_t row, int32_t f16)
{
    const int64_t t = blockIdx.x;
    const int half = n_rot / 2;
    const double p = (double)pos[t] * (double)freq_scale;
    float *qt = q + t * nhq * HSq, *kt = k + t * nhk * HSk;
    for (int i = (int)threadIdx.x; i < half; i += (int)blockDim.x) {
        const double theta = p * pow((double)freq_base, -2.0 * i / n_rot);
        const float c = (float)cos(theta), s = (float)sin(theta);
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        for (int64_t h = 0; h < nhq; h++) {
            float *xh = qt + h * HSq;
            const float x0 = xh[i0], x1 = xh[i1];
            xh[i0] = x0 * c - x1 * s;
            xh[i1] = x0 * s + x1 * c;
        }
        for (int64_t h = 0; h < nhk; h++) {
            float *xh = kt + h * HSk;
            const float x0 = xh[i0], x1 = xh[i1];
            xh[i0] = x0 * c - x1 * s;
            xh[i1] = x0 * s + x1 * c;
        }
    }
    if (!kc)
        return;     // uniform over the block
    __syncthreads();
    const int64_t sl = slot[t];
    const float *vt = v + t * row;
    if (f16) {
        uint16_t *dk = (uint16_t *)kc + sl * row, *dv = (uint16_t *)vc + sl * row;
        for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
            dk[i] = gpu_f2h(kt[i]);
            dv[i] = gpu_f2h(vt[i]);
        }
    } else {
        float *dk = (float *)kc + sl * row, *dv = (float *)vc + sl * row;
        for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
            dk[i] = kt[i];
            dv[i] = vt[i];
        }
    }
}

static __global__ void k_probe(int32_t *p)
{
    if (threadIdx.x == 0)
        p[0] = 42;
}

static unsigned ew_grid(int64_t n)
{
    int64_t b = GPU_CEIL_DIV(n, (int64_t)EW_THREADS);
    return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

int gpu_ops_dequant_f16(struct gpu_ctx *g, enum eng_dtype t, const void *src, uint16_t *dst,
                    int64_t rows, int64_t K)
{
    const int64_t nb = rows * (K / 32);
    if (nb <= 0)
        return 0;
    LAUNCH(dim3((unsigned)GPU_CEIL_DIV(nb, (int64_t)EW_THREADS)), dim3(EW_THREADS), 0, g->stream,
           k_dequant)((const unsigned char *)src, dst, nb, t == ENG_DTYPE_Q4_0 ? 1 : 0);
    GPU_LAUNCHED(g, "dequant");
    return 0;
}

int gpu_ops_probe(struct gpu_ctx *g)
{
    void *p = NULL;
    int32_t v = 0;
    int rc = gpu_pool_reserve(g, GPU_SCR_BENCH, sizeof(int32_t), &p);
    if (rc < 0)
        return rc;
    LAUNCH(dim3(1), dim3(32), 0, g->stream, k_probe)((int32_t *)p);
    GPU_LAUNCHED(g, "probe");
    GPU_CU(g, cudaMemcpyAsync(&v, p, sizeof v, cudaMemcpyDeviceToHost, g->stream));
    GPU_CU(g, cudaStreamSynchronize(g->stream));
    if (v != 42) {
        log_error(&g->be->log, "msg=\"the probe kernel did not run\" device=%d got=%d", g->device, (int)v);
        return ERR_GPU;
    }
    return 0;
}

int gpu_ops_exec(struct gpu_ctx *g, const struct gpu_rec *r)
{
    cudaStream_t s = g->stream;
    switch (r->op) {
    case GPU_OP_EMBED: {
        const auto &a = r->u.embed;
        LAUNCH(dim3((unsigned)a.T), dim3(EW_THREADS), 0, s, k_embed)(
            a.out, (const unsigned char *)a.wte, a.tokens, a.C, a.row_bytes, a.storage);
        GPU_LAUNCHED(g, "embed");
        return 0;
    }
    case GPU_OP_RMSNORM: {
        const auto &a = r->u.rmsnorm;
        LAUNCH(dim3((unsigned)a.R), dim3(EW_THREADS), 0, s, k_rmsnorm)(a.out, a.x, a.w, a.C, a.eps);
        GPU_LAUNCHED(g, "rmsnorm");
        return 0;
    }
    case GPU_OP_ROPE: {
        const auto &a = r->u.rope;
        LAUNCH(dim3((unsigned)a.T), dim3(64), 0, s, k_rope)(
            a.x, a.pos, a.n_heads, a.HS, a.n_rot, a.mode == ENG_ROPE_NEOX ? 1 : 0, a.freq_base,
            a.freq_scale);
        GPU_LAUNCHED(g, "rope");
        return 0;
    }
    case GPU_OP_KV_WRITE: {
        const auto &a = r->u.kv_write;
        LAUNCH(dim3((unsigned)a.T, 2), dim3(EW_THREADS), 0, s, k_kv_write)(
            a.k, a.v, a.kc, a.vc, a.slot, a.row, a.f16);
        GPU_LAUNCHED(g, "kv_write");
        return 0;
    }
    case GPU_OP_SWIGLU: {
        const auto &a = r->u.ew;
        LAUNCH(dim3(ew_grid(a.n)), dim3(EW_THREADS), 0, s, k_swiglu)(a.out, a.a, a.b, a.n);
        GPU_LAUNCHED(g, "swiglu");
        return 0;
    }
    case GPU_OP_ADD: {
        const auto &a = r->u.ew;
        LAUNCH(dim3(ew_grid(a.n)), dim3(EW_THREADS), 0, s, k_add)(a.out, a.a, a.b, a.n);
        GPU_LAUNCHED(g, "add");
        return 0;
    }
    case GPU_OP_GATHER: {
        const auto &a = r->u.gather;
        if (a.n_out == 0)
            return 0;
        float *dst = a.out;
        const size_t bytes = (size_t)a.n_out * (size_t)a.C * sizeof(float);
        if (a.overlap) {
            void *p;
            int rc = gpu_pool_reserve(g, GPU_SCR_GATHER, bytes, &p);
            if (rc < 0)
                return rc;
            dst = (float *)p;
        }
        LAUNCH(dim3((unsigned)a.n_out), dim3(EW_THREADS), 0, s, k_gather)(dst, a.x, a.rows, a.C);
        GPU_LAUNCHED(g, "gather");
        if (a.overlap)
            GPU_CU(g, cudaMemcpyAsync(a.out, dst, bytes, cudaMemcpyDeviceToDevice, s));
        return 0;
    }
    default:
        log_error(&g->be->log, "msg=\"internal: unknown op record\" op=%d", (int)r->op);
        return ERR_INTERNAL;
    }
}

/* [p, p + n) and [q, q + m) are the same range start or do not overlap. */
static bool alias_ok(const void *p, size_t n, const void *q, size_t m)
{
    const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q;
    return a == b || a + n <= b || b + m <= a;
}

int gpu_ops_exec_fused(struct gpu_ctx *g, const struct gpu_rec *recs, int n, int *used)
{
    *used = 0;
    if (n < 2)
        return 0;
    const struct gpu_rec *r0 = &recs[0], *r1 = &recs[1];
    if (r0->op == GPU_OP_ADD && r1->op == GPU_OP_RMSNORM) {
        const auto &a = r0->u.ew;
        const auto &m = r1->u.rmsnorm;
        const size_t bytes = (size_t)a.n * sizeof(float);
        if (m.x != a.out || m.R * m.C != a.n || m.C <= 0 || m.R > 0x7fffffff ||
            !alias_ok(a.out, bytes, a.a, bytes) || !alias_ok(a.out, bytes, a.b, bytes) ||
            !alias_ok(m.out, bytes, a.out, bytes) || !alias_ok(m.out, bytes, a.a, bytes) ||
            !alias_ok(m.out, bytes, a.b, bytes) || !alias_ok(m.w, (size_t)m.C * 4, a.out, bytes) ||
            !alias_ok(m.w, (size_t)m.C * 4, m.out, bytes))
            return 0;
        LAUNCH(dim3((unsigned)m.R), dim3(EW_THREADS), 0, g->stream, k_add_rmsnorm)(
            a.out, a.a, a.b, m.out, m.w, m.C, m.eps);
        GPU_LAUNCHED(g, "add_rmsnorm");
        *used = 2;
        return 0;
    }
    if (r0->op == GPU_OP_ROPE && r1->op == GPU_OP_ROPE) {
        const auto &q = r0->u.rope;
        const auto &k = r1->u.rope;
        const size_t qb = (size_t)(q.T * q.n_heads * q.HS) * 4, kb = (size_t)(k.T * k.n_heads * k.HS) * 4;
        if (q.pos != k.pos || q.T != k.T || q.n_rot != k.n_rot || q.mode != k.mode ||
            q.freq_base != k.freq_base || q.freq_scale != k.freq_scale || q.x == k.x ||
            !alias_ok(q.x, qb, k.x, kb))
            return 0;
        const float *v = NULL;
        void *kc = NULL, *vc = NULL;
        const int32_t *slot = NULL;
        int64_t row = 0;
        int32_t f16 = 0;
        int nrec = 2;
        if (n >= 3 && recs[2].op == GPU_OP_KV_WRITE) {
            const auto &w = recs[2].u.kv_write;
            const size_t vb = (size_t)(w.T * w.row) * 4;
            if (w.k == k.x && w.T == k.T && w.row == k.n_heads * k.HS &&
                alias_ok(w.v, vb, q.x, qb) && alias_ok(w.v, vb, k.x, kb)) {
                v = w.v;
                kc = w.kc;
                vc = w.vc;
                slot = w.slot;
                row = w.row;
                f16 = w.f16;
                nrec = 3;
            }
        }
        LAUNCH(dim3((unsigned)q.T), dim3(128), 0, g->stream, k_rope_qk_kv)(
            q.x, q.n_heads, q.HS, k.x, k.n_heads, k.HS, q.pos, q.n_rot,
            q.mode == ENG_ROPE_NEOX ? 1 : 0, q.freq_base, q.freq_scale, v, kc, vc, slot, row, f16);
        GPU_LAUNCHED(g, "rope_qk_kv");
        *used = nrec;
        return 0;
    }
    return 0;
}
