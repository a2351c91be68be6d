/* gpu/microbench.cu: the ceilings bench/bench_gpu.c reports against, and timing of the two
 * matmul paths on one shape. Owns nothing persistent: buffers come from the bench scratch
 * slot. Not used by the engine. */
#include "common.cuh"
#include "microbench.h"

static_assert((int)GPU_MICROBENCH_GEMV == (int)GPU_MM_GEMV, "path ids");
static_assert((int)GPU_MICROBENCH_CUBLAS == (int)GPU_MM_CUBLAS, "path ids");

/* Elapsed milliseconds of `iters` runs of fn on the stream. */
template <class F>
static int time_ms(struct gpu_ctx *g, int iters, F fn, float *ms)
{
    cudaEvent_t a = NULL, b = NULL;
    int rc = 0;
    cudaError_t e = cudaEventCreate(&a);
    if (e == cudaSuccess)
        e = cudaEventCreate(&b);
    if (e != cudaSuccess) {
        rc = gpu_backend_cuda_fail(g, e, "cudaEventCreate", __FILE__, __LINE__);
        goto done;
    }
    if ((rc = fn()) < 0)       // warm-up (also grows scratch, picks cuBLAS kernels)
        goto done;
    if ((e = cudaEventRecord(a, g->stream)) != cudaSuccess) {
        rc = gpu_backend_cuda_fail(g, e, "cudaEventRecord", __FILE__, __LINE__);
        goto done;
    }
    for (int i = 0; i < iters && rc == 0; i++)
        rc = fn();
    if (rc < 0)
        goto done;
    if ((e = cudaEventRecord(b, g->stream)) != cudaSuccess ||
        (e = cudaEventSynchronize(b)) != cudaSuccess || (e = cudaEventElapsedTime(ms, a, b)) != cudaSuccess)
        rc = gpu_backend_cuda_fail(g, e, "cudaEventElapsedTime", __FILE__, __LINE__);
done:
    if (a)
        (void)cudaEventDestroy(a);
    if (b)
        (void)cudaEventDestroy(b);
    return rc;
}

extern "C" int gpu_microbench_copy(eng_backend_t *be, size_t bytes, int iters, double *gbps)
{
    struct gpu_ctx *g = gpu_ctx_of(be);
    if (g->in_step || bytes == 0 || iters < 1)
        return ERR_STATE;
    void *p;
    int rc = gpu_pool_reserve(g, GPU_SCR_BENCH, 2 * bytes, &p);
    if (rc < 0)
        return rc;
    char *src = (char *)p, *dst = src + bytes;
    GPU_CU(g, cudaMemsetAsync(src, 0x3c, bytes, g->stream));
    float ms = 0.0f;
    rc = time_ms(g, iters, [&]() -> int {
        GPU_CU(g, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g->stream));
        return 0;
    }, &ms);
    if (rc < 0)
        return rc;
    *gbps = ms > 0.0f ? 2.0 * (double)bytes * iters / (ms / 1e3) / 1e9 : 0.0;
    return 0;
}

extern "C" int gpu_microbench_matmul(eng_backend_t *be, enum eng_dtype wt, enum gpu_microbench_path path,
                                int R, int K, int N, int iters, double *us)
{
    struct gpu_ctx *g = gpu_ctx_of(be);
    if (g->in_step || R < 1 || K < 1 || N < 1 || iters < 1 ||
        (wt != ENG_DTYPE_F16 && wt != ENG_DTYPE_BF16 && wt != ENG_DTYPE_F32) ||
        (path == GPU_MICROBENCH_GEMV && (R > 4 || K % 8)))
        return ERR_INVAL;
    const size_t es = wt == ENG_DTYPE_F32 ? 4 : 2;
    const size_t wb = ((size_t)N * (size_t)K * es + 255) & ~(size_t)255;
    const size_t xb = ((size_t)R * (size_t)K * 4 + 255) & ~(size_t)255;
    const size_t ob = (size_t)R * (size_t)N * 4;
    void *p;
    int rc = gpu_pool_reserve(g, GPU_SCR_BENCH, wb + xb + ob, &p);
    if (rc < 0)
        return rc;
    char *w = (char *)p;
    float *x = (float *)(w + wb), *out = (float *)(w + wb + xb);
    GPU_CU(g, cudaMemsetAsync(w, 0x11, wb, g->stream));       // small finite weights
    GPU_CU(g, cudaMemsetAsync(x, 0x3c, xb, g->stream));       // ~0.012 activations
    float ms = 0.0f;
    rc = time_ms(g, iters, [&]() -> int {
        return gpu_matmul_run(g, (int32_t)path, (int32_t)wt, out, x, w, R, K, N);
    }, &ms);
    if (rc < 0)
        return rc;
    *us = (double)ms * 1e3 / iters;
    return 0;
}
