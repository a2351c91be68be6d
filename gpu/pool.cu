/* gpu/pool.cu: the backend's device scratch: named slots that grow to the largest request
 * and are never shrunk, so after the first step of each shape no op allocates. A growth
 * waits for the stream (kernels may still read the old block), frees, reallocates with
 * 25% headroom, and bumps the pool generation so cached CUDA graphs, which hold the old
 * addresses, are never replayed. Out of device memory here fails the op with
 * ERR_DEVICE_NOMEM (the request fails; the process and the backend stay usable). */
#include "common.cuh"

static const char *slot_name(enum gpu_scratch_slot s)
{
    static const char *names[GPU_SCR__COUNT] = {"x16", "wdq", "attention", "gather", "load",
                                                "bench"};
    return (unsigned)s < GPU_SCR__COUNT ? names[s] : "unknown";
}

int gpu_pool_reserve(struct gpu_ctx *g, enum gpu_scratch_slot slot, size_t bytes, void **out)
{
    struct gpu_pool *p = &g->pool;
    if ((unsigned)slot >= GPU_SCR__COUNT)
        return ERR_INTERNAL;
    if (bytes == 0)
        bytes = 1;
    if (bytes <= p->cap[slot]) {
        *out = p->ptr[slot];
        return 0;
    }
    if (g->capturing) {
        // cannot synchronize or move memory under capture: the caller runs the step eagerly
        log_debug(&g->be->log, "msg=\"scratch growth during graph capture\" slot=%s bytes=%zu",
                  slot_name(slot), bytes);
        return ERR_STATE;
    }
    size_t want = bytes + bytes / 4;
    if (want < bytes)
        want = bytes;
    want = (want + 4095) & ~(size_t)4095;
    GPU_CU(g, cudaStreamSynchronize(g->stream));
    if (p->ptr[slot]) {
        GPU_CU(g, cudaFree(p->ptr[slot]));
        p->total -= p->cap[slot];
        p->ptr[slot] = NULL;
        p->cap[slot] = 0;
    }
    p->gen++;
    void *q = NULL;
    cudaError_t e = cudaMalloc(&q, want);
    if (e != cudaSuccess) {
        int rc = gpu_backend_cuda_fail(g, e, "cudaMalloc(scratch)", __FILE__, __LINE__);
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
            (void)cudaGetLastError();
            fr = tot = 0;
        }
        log_error(&g->be->log,
                  "msg=\"out of device memory for scratch; this request fails: use shorter "
                  "prompts, a smaller batch, fewer KV blocks or a smaller model\" slot=%s "
                  "bytes=%zu device_free=%zu device_total=%zu",
                  slot_name(slot), want, fr, tot);
        return rc;
    }
    p->ptr[slot] = q;
    p->cap[slot] = want;
    p->total += want;
    log_debug(&g->be->log, "msg=\"scratch grown\" slot=%s bytes=%zu total=%zu", slot_name(slot),
              want, p->total);
    *out = q;
    return 0;
}

void gpu_pool_release_all(struct gpu_ctx *g)
{
    struct gpu_pool *p = &g->pool;
    for (int i = 0; i < GPU_SCR__COUNT; i++) {
        if (p->ptr[i]) {
            cudaError_t e = cudaFree(p->ptr[i]);
            if (e != cudaSuccess)
                gpu_backend_cuda_fail(g, e, "cudaFree(scratch)", __FILE__, __LINE__);
        }
        p->ptr[i] = NULL;
        p->cap[i] = 0;
    }
    p->total = 0;
    p->gen++;
}
