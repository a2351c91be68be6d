/* gpu/matmul.cu: out (R, N) = x (R, K) @ w^T for F32, F16 and BF16 weight storage
 * (Q8_0/Q4_0 weights are dequantized to F16 when uploaded; raw quantized bytes that did not
 * go through eng_weights_prepare are dequantized into scratch per call).
 * Two paths:
 *  - GEMV (R <= gemv_max_rows, decode): one 128-thread block per output row streams the
 *    weight row once with 16-byte loads (4 in flight per thread) and dots it with every
 *    x row in F32 (x is read through L1; no conversion, so no rounding of activations);
 *  - cuBLAS GemmEx (prefill, batched decode): x converted to the weight's 16-bit type
 *    (F16 saturating at +-65504, or BF16), FP32 accumulation; F32 weights use an F32 GEMM
 *    without TF32 so they stay exact to the CPU reference. */
#include "common.cuh"

#include <limits.h>

#define GEMV_THREADS 128
#define GEMV_UNROLL 4
#define GEMV_MAX_ROWS 4

#ifdef GPU_EMU
static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#else
static __device__ __forceinline__ float u2f(uint32_t u) { return __uint_as_float(u); }
#endif

/* 16 bytes of weights -> EPV floats */
template <int WT>
static __device__ __forceinline__ void unpack16(const uint4 &v, float *f)
{
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    if (WT == ENG_DTYPE_F32) {
        for (int i = 0; i < 4; i++)
            f[i] = u2f(w[i]);
    } else if (WT == ENG_DTYPE_BF16) {
        for (int i = 0; i < 4; i++) {
            f[2 * i] = u2f(w[i] << 16);
            f[2 * i + 1] = u2f(w[i] & 0xffff0000u);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            f[2 * i] = gpu_h2f((uint16_t)(w[i] & 0xffffu));
            f[2 * i + 1] = gpu_h2f((uint16_t)(w[i] >> 16));
        }
    }
}

template <int WT>
static __device__ __forceinline__ float load_w(const void *row, int64_t k)
{
    if (WT == ENG_DTYPE_F32)
        return ((const float *)row)[k];
    if (WT == ENG_DTYPE_BF16)
        return gpu_bf2f(((const uint16_t *)row)[k]);
    return gpu_h2f(((const uint16_t *)row)[k]);
}

/* Sums acc[0..R) over the block and writes out[r * N + n]. */
template <int R>
static __device__ __forceinline__ void gemv_reduce(float *acc, float *out, int64_t n, int64_t N)
{
    __shared__ float red[GEMV_MAX_ROWS][GEMV_THREADS / 32];
    const int lane = (int)threadIdx.x % 32, warp = (int)threadIdx.x / 32;
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = gpu_warp_sum(acc[r]);
        if (lane == 0)
            red[r][warp] = v;
    }
    __syncthreads();
    if ((int)threadIdx.x < R) {
        float s = 0.0f;
        for (int w = 0; w < GEMV_THREADS / 32; w++)
            s += red[threadIdx.x][w];
        out[(int64_t)threadIdx.x * N + n] = s;
    }
}

/* grid (N), block GEMV_THREADS. Needs K % EPV == 0 and 16-byte aligned W and x. */
template <int WT, int R>
static __global__ void __launch_bounds__(GEMV_THREADS)
    k_gemv(const void *W, const float *x, float *out, int64_t K, int64_t N)
{
    constexpr int EPV = WT == ENG_DTYPE_F32 ? 4 : 8;
    constexpr int ES = WT == ENG_DTYPE_F32 ? 4 : 2;
    const int64_t n = blockIdx.x;
    const int64_t nvec = K / EPV;
    const uint4 *wrow = (const uint4 *)((const unsigned char *)W + (size_t)n * (size_t)K * ES);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.0f;
    for (int64_t base = threadIdx.x; base < nvec; base += GEMV_THREADS * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL] = {};
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int64_t i = base + (int64_t)u * GEMV_THREADS;
            if (i < nvec)
                wv[u] = __ldcs(wrow + i);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int64_t i = base + (int64_t)u * GEMV_THREADS;
            if (i < nvec) {
                float wf[EPV];
                unpack16<WT>(wv[u], wf);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const float4 *xv = (const float4 *)(x + (int64_t)r * K + i * EPV);
#pragma unroll
                    for (int j = 0; j < EPV / 4; j++) {
                        const float4 a = __ldg(xv + j);
                        acc[r] += wf[4 * j] * a.x + wf[4 * j + 1] * a.y + wf[4 * j + 2] * a.z +
                                  wf[4 * j + 3] * a.w;
                    }
                }
            }
        }
    }
    gemv_reduce<R>(acc, out, n, N);
}

/* grid (N), block GEMV_THREADS: any K, any alignment; R <= GEMV_MAX_ROWS at run time. */
template <int WT>
static __global__ void __launch_bounds__(GEMV_THREADS)
    k_gemv_scalar(const void *W, const float *x, float *out, int64_t K, int64_t N, int32_t R)
{
    constexpr int ES = WT == ENG_DTYPE_F32 ? 4 : 2;
    const int64_t n = blockIdx.x;
    const void *row = (const unsigned char *)W + (size_t)n * (size_t)K * ES;
    float acc[GEMV_MAX_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k = threadIdx.x; k < K; k += GEMV_THREADS) {
        const float w = load_w<WT>(row, k);
#pragma unroll
        for (int r = 0; r < GEMV_MAX_ROWS; r++)
            if (r < R)
                acc[r] += w * x[(int64_t)r * K + k];
    }
    switch (R) {
    case 1: gemv_reduce<1>(acc, out, n, N); break;
    case 2: gemv_reduce<2>(acc, out, n, N); break;
    case 3: gemv_reduce<3>(acc, out, n, N); break;
    default: gemv_reduce<4>(acc, out, n, N); break;
    }
}

/* x (F32) -> F16 (saturating; NaN stays NaN) or BF16 */
static __global__ void k_to16(const float *x, uint16_t *y, int64_t n, int32_t bf16)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (bf16) {
            y[i] = gpu_f2bf(v);
        } else {
            if (v > 65504.0f)
                v = 65504.0f;
            else if (v < -65504.0f)
                v = -65504.0f;
            y[i] = gpu_f2h(v);
        }
    }
}

static bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* How the bytes at w are multiplied: raw quantized weights become F16 in scratch. */
static int32_t compute_storage(int32_t storage)
{
    return storage == ENG_DTYPE_Q8_0 || storage == ENG_DTYPE_Q4_0 ? ENG_DTYPE_F16 : storage;
}

int32_t gpu_matmul_pick(const struct gpu_ctx *g, int64_t R, int64_t K, int32_t storage,
                        const void *w, const void *x)
{
    if (R > g->gemv_max_rows)
        return GPU_MM_CUBLAS;
    const int32_t cs = compute_storage(storage);
    const int64_t epv = cs == ENG_DTYPE_F32 ? 4 : 8;
    const bool w_ok = cs != storage || aligned16(w);     // scratch is 256-aligned
    if (K % epv == 0 && w_ok && aligned16(x))
        return GPU_MM_GEMV;
    return GPU_MM_GEMV_SCALAR;
}

template <int WT>
static void launch_gemv(cudaStream_t s, const void *w, const float *x, float *out, int64_t R,
                        int64_t K, int64_t N)
{
    const dim3 grid((unsigned)N), block(GEMV_THREADS);
    switch (R) {
    case 1: LAUNCH(grid, block, 0, s, k_gemv<WT, 1>)(w, x, out, K, N); break;
    case 2: LAUNCH(grid, block, 0, s, k_gemv<WT, 2>)(w, x, out, K, N); break;
    case 3: LAUNCH(grid, block, 0, s, k_gemv<WT, 3>)(w, x, out, K, N); break;
    default: LAUNCH(grid, block, 0, s, k_gemv<WT, 4>)(w, x, out, K, N); break;
    }
}

int gpu_matmul_run(struct gpu_ctx *g, int32_t path, int32_t storage, float *out, const float *x,
                   const void *w, int64_t R, int64_t K, int64_t N)
{
    cudaStream_t s = g->stream;
    if (R <= 0 || N <= 0)
        return 0;
    if (R > INT_MAX || K > INT_MAX || N > INT_MAX || (path != GPU_MM_CUBLAS && R > GEMV_MAX_ROWS)) {
        log_error(&g->be->log, "msg=\"internal: matmul shape out of range\" R=%lld K=%lld N=%lld path=%d",
                  (long long)R, (long long)K, (long long)N, (int)path);
        return ERR_INTERNAL;
    }
    if (K == 0) {               // an empty sum (cuBLAS would reject ld = 0)
        GPU_CU(g, cudaMemsetAsync(out, 0, (size_t)R * (size_t)N * sizeof(float), s));
        return 0;
    }
    int32_t cs = compute_storage(storage);
    if (cs != storage) {        // raw Q8_0/Q4_0: dequantize the whole matrix into scratch
        void *p;
        int rc = gpu_pool_reserve(g, GPU_SCR_WDQ, (size_t)N * (size_t)K * 2, &p);
        if (rc < 0)
            return rc;
        if ((rc = gpu_ops_dequant_f16(g, (enum eng_dtype)storage, w, (uint16_t *)p, N, K)) < 0)
            return rc;
        w = p;
    }
    if (path == GPU_MM_GEMV) {
        switch (cs) {
        case ENG_DTYPE_F32: launch_gemv<ENG_DTYPE_F32>(s, w, x, out, R, K, N); break;
        case ENG_DTYPE_BF16: launch_gemv<ENG_DTYPE_BF16>(s, w, x, out, R, K, N); break;
        default: launch_gemv<ENG_DTYPE_F16>(s, w, x, out, R, K, N); break;
        }
        GPU_LAUNCHED(g, "gemv");
        return 0;
    }
    if (path == GPU_MM_GEMV_SCALAR) {
        const dim3 grid((unsigned)N), block(GEMV_THREADS);
        switch (cs) {
        case ENG_DTYPE_F32:
            LAUNCH(grid, block, 0, s, k_gemv_scalar<ENG_DTYPE_F32>)(w, x, out, K, N, (int32_t)R);
            break;
        case ENG_DTYPE_BF16:
            LAUNCH(grid, block, 0, s, k_gemv_scalar<ENG_DTYPE_BF16>)(w, x, out, K, N, (int32_t)R);
            break;
        default:
            LAUNCH(grid, block, 0, s, k_gemv_scalar<ENG_DTYPE_F16>)(w, x, out, K, N, (int32_t)R);
            break;
        }
        GPU_LAUNCHED(g, "gemv_scalar");
        return 0;
    }
    // cuBLAS, column-major view: out^T (N x R) = W^T' (N x K) * x^T (K x R), where the
    // row-major W (N, K) is the column-major K x N matrix with ld K.
    const void *B = x;
    cudaDataType_t type = CUDA_R_32F;
    if (cs != ENG_DTYPE_F32) {
        const bool bf = cs == ENG_DTYPE_BF16;
        void *p;
        const int64_t n = R * K;
        int rc = gpu_pool_reserve(g, GPU_SCR_X16, (size_t)n * 2, &p);
        if (rc < 0)
            return rc;
        int64_t blocks = GPU_CEIL_DIV(n, (int64_t)256);
        LAUNCH(dim3((unsigned)(blocks > 65536 ? 65536 : blocks)), dim3(256), 0, s, k_to16)(
            x, (uint16_t *)p, n, bf ? 1 : 0);
        GPU_LAUNCHED(g, "to16");
        B = p;
        type = bf ? CUDA_R_16BF : CUDA_R_16F;
    }
    const float alpha = 1.0f, beta = 0.0f;
    GPU_BLAS(g, cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)R, (int)K, &alpha, w,
                             type, (int)K, B, type, (int)K, &beta, out, CUDA_R_32F, (int)N,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

int gpu_matmul_exec(struct gpu_ctx *g, const struct gpu_rec *r)
{
    const auto &a = r->u.matmul;
    return gpu_matmul_run(g, a.path, a.storage, a.out, a.x, a.w, a.R, a.K, a.N);
}
