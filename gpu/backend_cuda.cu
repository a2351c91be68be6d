/* gpu/backend_cuda.cu: the CUDA backend's table (engine/backend_impl.h) and constructor.
 * Owns: device selection and checks, the stream, the cuBLAS handle and its workspace,
 * device buffers (cudaMalloc at buffer_new: load/plan time only), weight upload (F32, F16,
 * BF16 kept as they are; Q8_0/Q4_0 dequantized to F16 on the device), the step upload
 * (the step's arrays packed into one pinned block, one cudaMemcpyAsync), host-side
 * validation of every op, and the op records: run at once (eager), or kept until the
 * step's first flush and replayed as a CUDA graph when the same step was seen before.
 * Every CUDA / cuBLAS status is checked; failures are logged through the backend's sink and
 * returned as ERR_GPU, or ERR_DEVICE_NOMEM when the device is out of memory.
 * Environment (read once): ORTHOD_CUDA_GRAPHS=0 disables graphs (and with them the deferral
 * that fusion needs); ORTHOD_CUDA_FUSE=0 disables fusing deferred records; ORTHOD_CUDA_GEMV_ROWS=N
 * (0..4, default 4) sets the row count up to which matmul uses the GEMV kernel. */
#include "common.cuh"
#include "microbench.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEP_MAX_INTS ((size_t)1 << 28)   /* 1 GiB of step arrays: beyond any sane step */
#define BLAS_WORKSPACE ((size_t)32 << 20)
#define LOAD_CHUNK ((size_t)64 << 20)

/* --- errors ------------------------------------------------------------------------------- */

int gpu_backend_cuda_fail(struct gpu_ctx *g, cudaError_t e, const char *call, const char *file, int line)
{
    (void)cudaGetLastError();   // clear it, so the next launch check does not see it again
    const bool oom = e == cudaErrorMemoryAllocation;
    log_error(&g->be->log,
              "msg=\"CUDA call failed: %s\" device=cuda:%d call=\"%s\" error=%s at=%s:%d",
              oom ? "the device is out of memory; this request fails (lower the context, batch or "
                    "KV blocks, or use a smaller model)"
                  : "if this repeats, check nvidia-smi and the kernel log (Xid) and restart orthod",
              g->device, call, cudaGetErrorName(e), file, line);
    log_error(&g->be->log, "msg=\"CUDA error detail\" detail=\"%s\"", cudaGetErrorString(e));
    return oom ? ERR_DEVICE_NOMEM : ERR_GPU;
}

int gpu_backend_blas_fail(struct gpu_ctx *g, cublasStatus_t s, const char *call, const char *file,
                  int line)
{
    const bool oom = s == CUBLAS_STATUS_ALLOC_FAILED;
    log_error(&g->be->log, "msg=\"cuBLAS call failed%s\" device=cuda:%d call=\"%s\" status=%s "
              "detail=\"%s\" at=%s:%d",
              oom ? ": out of device memory; this request fails" : "", g->device, call,
              cublasGetStatusName(s), cublasGetStatusString(s), file, line);
    (void)cudaGetLastError();
    return oom ? ERR_DEVICE_NOMEM : ERR_GPU;
}

#define CTX(be) gpu_ctx_of(be)

/* --- records: eager, or deferred and replayed as graphs --------------------------------------- */

static int rec_exec(struct gpu_ctx *g, const struct gpu_rec *r)
{
    switch (r->op) {
    case GPU_OP_MATMUL:
        return gpu_matmul_exec(g, r);
    case GPU_OP_ATTENTION:
        return gpu_attention_exec(g, r);
    default:
        return gpu_ops_exec(g, r);
    }
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void cache_drop(struct gpu_graph_entry *e)
{
    if (e->exec) {
        cudaError_t err = cudaGraphExecDestroy(e->exec);
        if (err != cudaSuccess)
            (void)cudaGetLastError();
    }
    free(e->snap);
    memset(e, 0, sizeof *e);
}

static void cache_clear(struct gpu_ctx *g)
{
    for (int i = 0; i < GPU_GRAPH_CACHE; i++)
        cache_drop(&g->cache[i]);
}

static int run_eager(struct gpu_ctx *g)
{
    for (int i = 0; i < g->n_recs;) {
        int used = 0, rc = 0;
        if (g->fuse && (rc = gpu_ops_exec_fused(g, &g->recs[i], g->n_recs - i, &used)) < 0)
            return rc;
        if (used == 0) {
            if ((rc = rec_exec(g, &g->recs[i])) < 0)
                return rc;
            used = 1;
        } else {
            g->fused += (uint64_t)used;
        }
        i += used;
    }
    return 0;
}

/* Captures the pending records into a graph for entry e and launches it. A capture that
 * fails (scratch growth, an API refused under capture) marks the entry eager-only. */
static int capture_and_launch(struct gpu_ctx *g, struct gpu_graph_entry *e)
{
    cudaError_t err = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeRelaxed);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        log_warn(&g->be->log, "msg=\"CUDA graph capture unavailable; running steps eagerly\" "
                 "error=%s", cudaGetErrorName(err));
        g->graphs = false;
        return run_eager(g);
    }
    g->capturing = true;
    int rc = run_eager(g);
    cudaGraph_t graph = NULL;
    err = cudaStreamEndCapture(g->stream, &graph);
    g->capturing = false;
    cudaGraphExec_t exec = NULL;
    cudaError_t ierr = cudaSuccess;
    if (rc == 0 && err == cudaSuccess && graph)
        ierr = cudaGraphInstantiate(&exec, graph, 0);
    if (graph && cudaGraphDestroy(graph) != cudaSuccess)
        (void)cudaGetLastError();
    if (rc < 0 || err != cudaSuccess || !graph || ierr != cudaSuccess) {
        (void)cudaGetLastError();
        e->no_graph = true;
        if (rc == ERR_STATE) {      // scratch had to grow: this record list only
            log_warn(&g->be->log, "msg=\"CUDA graph capture needed new scratch; this step shape "
                     "runs eagerly\" ops=%d", g->n_recs);
        } else {                    // CUDA refused: do not try again for every shape
            log_warn(&g->be->log, "msg=\"CUDA graph capture failed; CUDA graphs are off for this "
                     "backend (steps run eagerly)\" ops=%d op_rc=%d capture=%s instantiate=%s",
                     g->n_recs, rc, cudaGetErrorName(err), cudaGetErrorName(ierr));
            g->graphs = false;
        }
        return run_eager(g);
    }
    e->exec = exec;
    g->graph_captures++;
    GPU_CU(g, cudaGraphLaunch(exec, g->stream));
    g->graph_launches++;
    return 0;
}

/* Runs the pending records of the step. */
static int flush(struct gpu_ctx *g)
{
    if (g->n_recs == 0)
        return 0;
    const uint64_t gen0 = g->pool.gen;
    uint64_t key = hash_bytes(g->recs, sizeof(struct gpu_rec) * (size_t)g->n_recs,
                              0xcbf29ce484222325ull ^ gen0);
    struct gpu_graph_entry *e = NULL, *victim = &g->cache[0];
    for (int i = 0; i < GPU_GRAPH_CACHE; i++) {
        struct gpu_graph_entry *c = &g->cache[i];
        if (c->snap && c->key == key && c->n_snap == g->n_recs &&
            memcmp(c->snap, g->recs, sizeof(struct gpu_rec) * (size_t)g->n_recs) == 0) {
            e = c;
            break;
        }
        if (!c->snap || c->last_use < victim->last_use)
            victim = c;
    }
    if (!e) {
        cache_drop(victim);
        victim->snap = (struct gpu_rec *)malloc(sizeof(struct gpu_rec) * (size_t)g->n_recs);
        if (victim->snap) {
            memcpy(victim->snap, g->recs, sizeof(struct gpu_rec) * (size_t)g->n_recs);
            victim->n_snap = g->n_recs;
            victim->key = key;
            e = victim;
        }
    }
    int rc;
    if (e && e->exec) {
        cudaError_t err = cudaGraphLaunch(e->exec, g->stream);
        rc = err == cudaSuccess ? 0 : gpu_backend_cuda_fail(g, err, "cudaGraphLaunch", __FILE__, __LINE__);
        if (rc == 0)
            g->graph_launches++;
    } else if (e && e->seen >= 1 && !e->no_graph && g->graphs) {
        rc = capture_and_launch(g, e);
    } else {
        rc = run_eager(g);
        g->eager_steps++;
    }
    if (e) {
        e->seen++;
        e->last_use = ++g->use_clock;
    }
    g->n_recs = 0;
    if (g->pool.gen != gen0)
        cache_clear(g);     // scratch moved: every graph holds stale addresses
    if (rc < 0)
        g->step_failed = true;
    return rc;
}

/* Runs r now, or queues it when this step is deferred. */
static int submit(struct gpu_ctx *g, const struct gpu_rec *r)
{
    if (!(g->graphs && g->in_step)) {
        int rc = rec_exec(g, r);
        if (rc < 0 && g->in_step)
            g->step_failed = true;
        return rc;
    }
    if (g->n_recs == g->cap_recs) {
        int cap = g->cap_recs ? g->cap_recs * 2 : 256;
        if (cap > (1 << 20))
            return ERR_TOOLARGE;
        struct gpu_rec *p = (struct gpu_rec *)realloc(g->recs, sizeof *p * (size_t)cap);
        if (!p)
            return ERR_NOMEM;
        g->recs = p;
        g->cap_recs = cap;
    }
    g->recs[g->n_recs++] = *r;
    return 0;
}

static void rec_init(struct gpu_rec *r, enum gpu_op op)
{
    memset(r, 0, sizeof *r);
    r->op = op;
}

/* --- identity, lifetime ------------------------------------------------------------------------ */

static const char *cuda_name(eng_backend_t *be)
{
    return CTX(be)->name;
}

static const char *cuda_describe(eng_backend_t *be)
{
    return CTX(be)->desc;
}

static void ctx_destroy(struct gpu_ctx *g)
{
    if (!g)
        return;
    if (g->stream && cudaStreamSynchronize(g->stream) != cudaSuccess)
        (void)cudaGetLastError();
    cache_clear(g);
    free(g->recs);
    gpu_pool_release_all(g);
    if (g->blas)
        cublasDestroy(g->blas);
    if (g->blas_ws)
        (void)cudaFree(g->blas_ws);
    if (g->step_uploaded)
        (void)cudaEventDestroy(g->step_uploaded);
    if (g->step_host)
        (void)cudaFreeHost(g->step_host);
    if (g->step_dev)
        (void)cudaFree(g->step_dev);
    if (g->stream)
        (void)cudaStreamDestroy(g->stream);
    (void)cudaGetLastError();
    free(g);
}

static void cuda_free(eng_backend_t *be)
{
    struct gpu_ctx *g = CTX(be);
    if (g && (g->bytes_by_use[0] || g->bytes_by_use[1] || g->bytes_by_use[2]))
        log_warn(&be->log, "msg=\"CUDA backend freed with live buffers (a leak in the caller)\" "
                 "weights=%zu compute=%zu kv=%zu", g->bytes_by_use[0], g->bytes_by_use[1],
                 g->bytes_by_use[2]);
    ctx_destroy(g);
    free(be);
}

/* --- memory ------------------------------------------------------------------------------------ */

static const char *use_name(enum eng_buf_usage u)
{
    return u == ENG_BUF_WEIGHTS ? "weights" : u == ENG_BUF_KV ? "KV cache" : "activations";
}

static int cuda_buffer_new(eng_backend_t *be, size_t size, enum eng_buf_usage use,
                           eng_buffer_t *buf)
{
    struct gpu_ctx *g = CTX(be);
    if ((unsigned)use > ENG_BUF_KV)
        return ERR_INVAL;
    struct gpu_buf *gb = (struct gpu_buf *)calloc(1, sizeof *gb);
    if (!gb)
        return ERR_NOMEM;
    GPU_CU(g, cudaSetDevice(g->device));
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size ? size : 256);
    if (e != cudaSuccess) {
        free(gb);
        int rc = gpu_backend_cuda_fail(g, e, "cudaMalloc", __FILE__, __LINE__);
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess)
            (void)cudaGetLastError();
        log_error(&be->log, "msg=\"cannot allocate %zu MiB of device memory for %s on cuda:%d "
                  "(%zu MiB free of %zu MiB): use a smaller model, a shorter context or fewer "
                  "KV blocks, or another device\"", size >> 20, use_name(use), g->device,
                  fr >> 20, tot >> 20);
        return rc;
    }
    gb->use = use;
    gb->bytes = size;
    g->bytes_by_use[use] += size;
    buf->base = p;
    buf->ctx = gb;
    return 0;
}

static void cuda_buffer_free(eng_backend_t *be, eng_buffer_t *buf)
{
    struct gpu_ctx *g = CTX(be);
    struct gpu_buf *gb = (struct gpu_buf *)buf->ctx;
    if (g->n_recs)
        (void)flush(g);
    if (buf->base) {
        cudaError_t e = cudaFree(buf->base);
        if (e != cudaSuccess)
            gpu_backend_cuda_fail(g, e, "cudaFree", __FILE__, __LINE__);
    }
    if (gb) {
        g->bytes_by_use[gb->use] -= gb->bytes;
        free(gb);
    }
    buf->base = NULL;
    buf->ctx = NULL;
}

static int cuda_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off,
                           size_t n)
{
    struct gpu_ctx *g = CTX(be);
    GPU_CU(g, cudaSetDevice(g->device));     // CUDA's current device is per host thread
    int rc = flush(g);
    if (rc < 0)
        return rc;
    if (n == 0)
        return 0;
    GPU_CU(g, cudaMemcpyAsync((char *)dst->data + off, src, n, cudaMemcpyHostToDevice, g->stream));
    GPU_CU(g, cudaStreamSynchronize(g->stream));
    return 0;
}

static int cuda_tensor_get(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off,
                           size_t n)
{
    struct gpu_ctx *g = CTX(be);
    GPU_CU(g, cudaSetDevice(g->device));     // CUDA's current device is per host thread
    int rc = flush(g);
    if (rc < 0)
        return rc;
    if (n)
        GPU_CU(g, cudaMemcpyAsync(dst, (const char *)src->data + off, n, cudaMemcpyDeviceToHost,
                                  g->stream));
    GPU_CU(g, cudaStreamSynchronize(g->stream));
    return 0;
}

static int cuda_memset_buffer(eng_backend_t *be, eng_buffer_t *buf, int byte)
{
    struct gpu_ctx *g = CTX(be);
    GPU_CU(g, cudaSetDevice(g->device));     // CUDA's current device is per host thread
    int rc = flush(g);
    if (rc < 0)
        return rc;
    GPU_CU(g, cudaMemsetAsync(buf->base, byte, buf->size, g->stream));
    GPU_CU(g, cudaStreamSynchronize(g->stream));
    return 0;
}

static bool is_quant(enum eng_dtype t)
{
    return t == ENG_DTYPE_Q8_0 || t == ENG_DTYPE_Q4_0;
}

/* F32/F16/BF16 are stored as they are; Q8_0/Q4_0 are dequantized to F16 on the device
 * (one GEMV/GEMM path for every dtype; decode then reads 2 bytes per weight). */
static size_t cuda_weight_size(eng_backend_t *be, const eng_tensor_t *w)
{
    (void)be;
    if (is_quant(w->dtype))
        return (size_t)w->ne[0] * (size_t)eng_tensor_nrows(w) * 2;
    return eng_tensor_nbytes(w);
}

/* Uploads one weight into the model's weight block at off (quantized ones in chunks,
 * dequantized on the device). */
static int cuda_weight_place(eng_backend_t *be, eng_tensor_t *w, const void *host,
                             eng_buffer_t *buf, size_t off)
{
    struct gpu_ctx *g = CTX(be);
    const enum eng_dtype t = w->dtype;
    if (!eng_dtype_is_compute(t))
        return ERR_UNSUPPORTED;
    if (!host || off > buf->size || cuda_weight_size(be, w) > buf->size - off)
        return ERR_INVAL;
    const int64_t K = w->ne[0], rows = eng_tensor_nrows(w);
    const size_t raw = eng_tensor_nbytes(w);
    char *dst = (char *)buf->base + off;
    int rc = 0;
    ((struct gpu_buf *)buf->ctx)->prepared = true;
    if (!is_quant(t)) {
        cudaError_t e = cudaMemcpyAsync(dst, host, raw, cudaMemcpyHostToDevice, g->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(g->stream);
        if (e != cudaSuccess)
            rc = gpu_backend_cuda_fail(g, e, "cudaMemcpy(weights)", __FILE__, __LINE__);
    } else {
        const size_t rb = eng_dtype_row_bytes(t, K);
        int64_t chunk_rows = rb ? (int64_t)(LOAD_CHUNK / rb) : 1;
        if (chunk_rows < 1)
            chunk_rows = 1;
        for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += chunk_rows) {
            const int64_t nr = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
            void *stage;
            if ((rc = gpu_pool_reserve(g, GPU_SCR_LOAD, (size_t)nr * rb, &stage)) < 0)
                break;
            cudaError_t e = cudaMemcpyAsync(stage, (const char *)host + (size_t)r0 * rb,
                                            (size_t)nr * rb, cudaMemcpyHostToDevice, g->stream);
            if (e != cudaSuccess) {
                rc = gpu_backend_cuda_fail(g, e, "cudaMemcpy(weights)", __FILE__, __LINE__);
                break;
            }
            rc = gpu_ops_dequant_f16(g, t, stage, (uint16_t *)dst + (size_t)r0 * (size_t)K, nr, K);
        }
        if (rc == 0) {
            cudaError_t e = cudaStreamSynchronize(g->stream);
            if (e != cudaSuccess)
                rc = gpu_backend_cuda_fail(g, e, "cudaStreamSynchronize(weights)", __FILE__, __LINE__);
        }
    }
    if (rc < 0)
        return rc;
    w->data = dst;
    return 0;
}

static bool cuda_supports_matmul(eng_backend_t *be, enum eng_dtype t)
{
    (void)be;
    return eng_dtype_is_compute(t);
}

static bool cuda_supports_kv(eng_backend_t *be, enum eng_kv_format f)
{
    (void)be;
    return f == ENG_KV_F32 || f == ENG_KV_F16;
}

/* The dtype of the bytes at w->data: weights we placed in a weight block may be stored
 * differently (quantized ones as F16: cuda_weight_place). */
static int32_t weight_storage(eng_backend_t *be, const eng_tensor_t *w)
{
    const eng_buffer_t *b = w->buf;
    if (b && b->be == be && b->ctx && ((const struct gpu_buf *)b->ctx)->prepared &&
        (const char *)w->data >= (const char *)b->base &&
        (const char *)w->data < (const char *)b->base + b->size)
        return is_quant(w->dtype) ? ENG_DTYPE_F16 : w->dtype;
    return w->dtype;
}

/* --- steps ------------------------------------------------------------------------------------- */

static int cuda_step_end(eng_backend_t *be);

static int cuda_step_begin(eng_backend_t *be, const struct eng_step *st)
{
    struct gpu_ctx *g = CTX(be);
    if (g->in_step) {
        log_warn(&be->log, "msg=\"step_begin without step_end: ending the previous step\"");
        (void)cuda_step_end(be);
    }
    GPU_CU(g, cudaSetDevice(g->device));
    const size_t T = (size_t)st->n_tokens, S = (size_t)st->n_seqs, MB = (size_t)st->max_blocks,
                 O = (size_t)st->n_out;
    if (S > STEP_MAX_INTS / MB || 4 * T + O + S + S * MB > STEP_MAX_INTS) {
        log_error(&be->log, "msg=\"step too large for the device step buffer\" tokens=%zu seqs=%zu "
                  "max_blocks=%zu", T, S, MB);
        return ERR_TOOLARGE;
    }
    const size_t need = 4 * T + O + S + S * MB;
    if (g->step_event_live) {
        GPU_CU(g, cudaEventSynchronize(g->step_uploaded));   // the staging block is free again
        g->step_event_live = false;
    }
    if (need > g->step_cap) {
        const size_t cap = need + need / 4 + 1024;
        if (g->step_host)
            GPU_CU(g, cudaFreeHost(g->step_host));
        g->step_host = NULL;
        if (g->step_dev)
            GPU_CU(g, cudaFree(g->step_dev));
        g->step_dev = NULL;
        g->step_cap = 0;
        g->step_gen++;
        GPU_CU(g, cudaMallocHost((void **)&g->step_host, cap * sizeof(int32_t)));
        GPU_CU(g, cudaMalloc((void **)&g->step_dev, cap * sizeof(int32_t)));
        g->step_cap = cap;
    }
    int32_t *h = g->step_host, *d = g->step_dev;
    size_t o = 0;
    const int32_t *arrs[7] = {st->tokens, st->pos, st->seq, st->kv_slot, st->out_rows, st->seq_len,
                              st->block_table};
    const size_t lens[7] = {T, T, T, T, O, S, S * MB};
    const int32_t **dptr[7] = {&g->d_tokens, &g->d_pos, &g->d_seq, &g->d_slot, &g->d_out_rows,
                               &g->d_seq_len, &g->d_block_table};
    for (int i = 0; i < 7; i++) {
        if (lens[i])
            memcpy(h + o, arrs[i], lens[i] * sizeof(int32_t));
        *dptr[i] = d + o;
        o += lens[i];
    }
    GPU_CU(g, cudaMemcpyAsync(d, h, need * sizeof(int32_t), cudaMemcpyHostToDevice, g->stream));
    GPU_CU(g, cudaEventRecord(g->step_uploaded, g->stream));
    g->step_event_live = true;
    int32_t mp = 0;
    for (size_t t = 0; t < T; t++)
        if (st->pos[t] > mp)
            mp = st->pos[t];
    g->max_pos = mp;
    g->st = *st;
    g->checked_blocks = -1;
    g->checked_slots = -1;
    g->step_failed = false;
    g->n_recs = 0;
    g->in_step = true;
    return 0;
}

static int cuda_step_end(eng_backend_t *be)
{
    struct gpu_ctx *g = CTX(be);
    int rc = 0;
    if (g->step_failed)
        g->n_recs = 0;        // a failed step is not run (its earlier records are dropped)
    else
        rc = flush(g);
    cudaError_t e = cudaStreamSynchronize(g->stream);
    g->in_step = false;
    g->n_recs = 0;
    if (e != cudaSuccess)
        return gpu_backend_cuda_fail(g, e, "cudaStreamSynchronize(step)", __FILE__, __LINE__);
    return rc;
}

/* --- compute ------------------------------------------------------------------------------------ */

static int in_step_rows(struct gpu_ctx *g, int64_t rows)
{
    return g->in_step && rows == g->st.n_tokens ? 0 : ERR_INVAL;
}

static int fail_op(struct gpu_ctx *g, int rc)
{
    if (g->in_step)
        g->step_failed = true;
    return rc;
}

static int cuda_embed(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte)
{
    struct gpu_ctx *g = CTX(be);
    if (in_step_rows(g, out->ne[1]) < 0)
        return fail_op(g, ERR_INVAL);
    for (int32_t t = 0; t < g->st.n_tokens; t++)
        if (g->st.tokens[t] < 0 || g->st.tokens[t] >= wte->ne[1])
            return fail_op(g, ERR_INVAL);
    const int32_t storage = weight_storage(be, wte);
    struct gpu_rec r;
    rec_init(&r, GPU_OP_EMBED);
    r.u.embed.out = (float *)out->data;
    r.u.embed.wte = wte->data;
    r.u.embed.tokens = g->d_tokens;
    r.u.embed.C = out->ne[0];
    r.u.embed.T = out->ne[1];
    r.u.embed.row_bytes = storage == wte->dtype ? wte->nb[1] : (size_t)wte->ne[0] * 2;
    r.u.embed.storage = storage;
    return submit(g, &r);
}

static int cuda_rmsnorm(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                        const eng_tensor_t *w, float eps)
{
    struct gpu_ctx *g = CTX(be);
    const int64_t R = eng_tensor_nrows(x);
    if (R > INT_MAX)
        return fail_op(g, ERR_UNSUPPORTED);
    if (R == 0 || x->ne[0] == 0)
        return 0;
    struct gpu_rec r;
    rec_init(&r, GPU_OP_RMSNORM);
    r.u.rmsnorm.out = (float *)out->data;
    r.u.rmsnorm.x = (const float *)x->data;
    r.u.rmsnorm.w = (const float *)w->data;
    r.u.rmsnorm.C = x->ne[0];
    r.u.rmsnorm.R = R;
    r.u.rmsnorm.eps = eps;
    return submit(g, &r);
}

static int cuda_matmul(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                       const eng_tensor_t *w)
{
    struct gpu_ctx *g = CTX(be);
    const int64_t R = eng_tensor_nrows(x), K = w->ne[0], N = w->ne[1];
    if (R > INT_MAX || K > INT_MAX || N > INT_MAX)
        return fail_op(g, ERR_UNSUPPORTED);
    if (R == 0 || N == 0)
        return 0;
    const int32_t storage = weight_storage(be, w);
    if (storage != ENG_DTYPE_F32 && storage != ENG_DTYPE_F16 && storage != ENG_DTYPE_BF16 &&
        storage != ENG_DTYPE_Q8_0 && storage != ENG_DTYPE_Q4_0)
        return fail_op(g, ERR_UNSUPPORTED);
    if ((storage == ENG_DTYPE_Q8_0 || storage == ENG_DTYPE_Q4_0) && !g->warned_raw_quant) {
        g->warned_raw_quant = true;
        log_warn(&be->log, "msg=\"matmul on %s weights that were not placed with "
                 "eng_weights_prepare: dequantizing them on every call (slow)\" tensor=\"%s\"",
                 eng_dtype_name((enum eng_dtype)storage), w->name);
    }
    struct gpu_rec r;
    rec_init(&r, GPU_OP_MATMUL);
    r.u.matmul.out = (float *)out->data;
    r.u.matmul.x = (const float *)x->data;
    r.u.matmul.w = w->data;
    r.u.matmul.R = R;
    r.u.matmul.K = K;
    r.u.matmul.N = N;
    r.u.matmul.storage = storage;
    r.u.matmul.path = gpu_matmul_pick(g, R, K, storage, w->data, x->data);
    return submit(g, &r);
}

static int cuda_rope(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads,
                     const struct eng_rope_params *rp)
{
    struct gpu_ctx *g = CTX(be);
    if (in_step_rows(g, x->ne[1]) < 0)
        return fail_op(g, ERR_INVAL);
    struct gpu_rec r;
    rec_init(&r, GPU_OP_ROPE);
    r.u.rope.x = (float *)x->data;
    r.u.rope.pos = g->d_pos;
    r.u.rope.T = x->ne[1];
    r.u.rope.n_heads = n_heads;
    r.u.rope.HS = x->ne[0] / n_heads;
    r.u.rope.n_rot = rp->n_rot;
    r.u.rope.mode = rp->mode;
    r.u.rope.freq_base = rp->freq_base;
    r.u.rope.freq_scale = rp->freq_scale;
    return submit(g, &r);
}

static bool kv_on(eng_backend_t *be, const eng_kv_storage_t *kv)
{
    return kv->buf && kv->buf->be == be;
}

static int cuda_kv_write(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer,
                         const eng_tensor_t *k, const eng_tensor_t *v)
{
    struct gpu_ctx *g = CTX(be);
    if (in_step_rows(g, k->ne[1]) < 0 || !kv_on(be, kv))
        return fail_op(g, ERR_INVAL);
    eng_tensor_t *kc = &kv->k[layer], *vc = &kv->v[layer];
    if (g->checked_slots != (int32_t)(kc->ne[1] > INT32_MAX ? INT32_MAX : kc->ne[1])) {
        for (int32_t t = 0; t < g->st.n_tokens; t++)
            if (g->st.kv_slot[t] >= kc->ne[1])
                return fail_op(g, ERR_INVAL);
        g->checked_slots = (int32_t)(kc->ne[1] > INT32_MAX ? INT32_MAX : kc->ne[1]);
    }
    struct gpu_rec r;
    rec_init(&r, GPU_OP_KV_WRITE);
    r.u.kv_write.k = (const float *)k->data;
    r.u.kv_write.v = (const float *)v->data;
    r.u.kv_write.kc = kc->data;
    r.u.kv_write.vc = vc->data;
    r.u.kv_write.slot = g->d_slot;
    r.u.kv_write.T = k->ne[1];
    r.u.kv_write.row = k->ne[0];
    r.u.kv_write.f16 = kv->lay.format == ENG_KV_F16;
    return submit(g, &r);
}

static int cuda_attention(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                          const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale)
{
    struct gpu_ctx *g = CTX(be);
    const struct eng_kv_layout *lay = &kv->lay;
    if (in_step_rows(g, q->ne[1]) < 0 || !kv_on(be, kv))
        return fail_op(g, ERR_INVAL);
    if (lay->head_dim > gpu_attention_max_head_dim() || n_heads > 65535 ||
        (int64_t)lay->n_blocks * lay->block_size > INT32_MAX) {
        log_error(&be->log, "msg=\"attention shape not supported on CUDA\" head_dim=%d "
                  "(max %d) n_heads=%d kv_slots=%lld", lay->head_dim,
                  gpu_attention_max_head_dim(), n_heads,
                  (long long)lay->n_blocks * lay->block_size);
        return fail_op(g, ERR_UNSUPPORTED);
    }
    // every position a token reads must map to an allocated block (once per step and cache size)
    if (g->checked_blocks != lay->n_blocks) {
        const struct eng_step *st = &g->st;
        for (int32_t t = 0; t < st->n_tokens; t++) {
            const int32_t *bt = st->block_table + (int64_t)st->seq[t] * st->max_blocks;
            const int32_t nb = st->pos[t] / lay->block_size + 1;
            if (nb > st->max_blocks)
                return fail_op(g, ERR_INVAL);
            for (int32_t b = 0; b < nb; b++)
                if (bt[b] < 0 || bt[b] >= lay->n_blocks)
                    return fail_op(g, ERR_INVAL);
        }
        g->checked_blocks = lay->n_blocks;
    }
    struct gpu_rec r;
    rec_init(&r, GPU_OP_ATTENTION);
    auto &a = r.u.att;
    a.out = (float *)out->data;
    a.q = (const float *)q->data;
    a.kc = kv->k[layer].data;
    a.vc = kv->v[layer].data;
    a.pos = g->d_pos;
    a.seq = g->d_seq;
    a.block_table = g->d_block_table;
    a.T = q->ne[1];
    a.n_heads = n_heads;
    a.n_kv_heads = lay->n_kv_heads;
    a.head_dim = lay->head_dim;
    a.block_size = lay->block_size;
    a.max_blocks = g->st.max_blocks;
    a.f16 = lay->format == ENG_KV_F16;
    a.scale = scale;
    gpu_attention_plan(g, &r, g->max_pos + 1);
    if ((int64_t)a.n_kv_heads * a.head_blocks > 65535)
        return fail_op(g, ERR_UNSUPPORTED);
    return submit(g, &r);
}

static int cuda_swiglu(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                       const eng_tensor_t *up)
{
    struct gpu_ctx *g = CTX(be);
    struct gpu_rec r;
    rec_init(&r, GPU_OP_SWIGLU);
    r.u.ew.out = (float *)out->data;
    r.u.ew.a = (const float *)gate->data;
    r.u.ew.b = (const float *)up->data;
    r.u.ew.n = eng_tensor_nelements(out);
    return r.u.ew.n ? submit(g, &r) : 0;
}

static int cuda_add(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a,
                    const eng_tensor_t *b)
{
    struct gpu_ctx *g = CTX(be);
    struct gpu_rec r;
    rec_init(&r, GPU_OP_ADD);
    r.u.ew.out = (float *)out->data;
    r.u.ew.a = (const float *)a->data;
    r.u.ew.b = (const float *)b->data;
    r.u.ew.n = eng_tensor_nelements(out);
    return r.u.ew.n ? submit(g, &r) : 0;
}

static int cuda_gather_rows(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x)
{
    struct gpu_ctx *g = CTX(be);
    if (!g->in_step || out->ne[1] != g->st.n_out || x->ne[1] != g->st.n_tokens)
        return fail_op(g, ERR_INVAL);
    const uintptr_t o0 = (uintptr_t)out->data, o1 = o0 + eng_tensor_nbytes(out);
    const uintptr_t x0 = (uintptr_t)x->data, x1 = x0 + eng_tensor_nbytes(x);
    struct gpu_rec r;
    rec_init(&r, GPU_OP_GATHER);
    r.u.gather.out = (float *)out->data;
    r.u.gather.x = (const float *)x->data;
    r.u.gather.rows = g->d_out_rows;
    r.u.gather.C = x->ne[0];
    r.u.gather.n_out = out->ne[1];
    r.u.gather.overlap = o0 < x1 && x0 < o1;
    return r.u.gather.n_out ? submit(g, &r) : 0;
}

static const struct eng_backend_ops cuda_ops = {
    .name = cuda_name,
    .describe = cuda_describe,
    .free = cuda_free,
    .buffer_new = cuda_buffer_new,
    .buffer_free = cuda_buffer_free,
    .tensor_set = cuda_tensor_set,
    .tensor_get = cuda_tensor_get,
    .memset_buffer = cuda_memset_buffer,
    .weight_prepare = NULL,    // weights go into one block per model: weight_size/place
    .weight_release = NULL,
    .weight_size = cuda_weight_size,
    .weight_place = cuda_weight_place,
    .supports_matmul = cuda_supports_matmul,
    .supports_kv = cuda_supports_kv,
    .step_begin = cuda_step_begin,
    .step_end = cuda_step_end,
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .matmul_n = nullptr,   // (the engine's fallback: one matmul per weight)
    .rope = cuda_rope,
    .kv_write = cuda_kv_write,
    .attention = cuda_attention,
    .swiglu = cuda_swiglu,
    .add = cuda_add,
    .gather_rows = cuda_gather_rows,
    .train = nullptr,   // training ops: not yet on CUDA (engine/train/train_ops.h)
};

/* --- construction -------------------------------------------------------------------------------- */

extern "C" int gpu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0 ? n : 0;
}

static int env_int(const char *name, int def, int lo, int hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi)
        return def;
    return (int)v;
}

extern "C" int gpu_backend_cuda_new(int device, const struct log_sink *log, eng_backend_t **out,
                                    struct errbuf *eb)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (e == cudaErrorNoDevice)
            return err_set(eb, ERR_NOTFOUND, "cuda:%d: no CUDA device is visible (%s); check "
                           "nvidia-smi and CUDA_VISIBLE_DEVICES, or use --device cpu", device,
                           cudaGetErrorString(e));
        return err_set(eb, ERR_GPU, "cuda:%d: the CUDA driver cannot be used: %s (%s); check that "
                       "the NVIDIA driver is installed and new enough for CUDA %d.%d (nvidia-smi), "
                       "or use --device cpu", device, cudaGetErrorString(e), cudaGetErrorName(e),
                       CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    }
    if (device < 0 || device >= n) {
        char list[400] = "";
        size_t o = 0;
        for (int i = 0; i < n && o + 1 < sizeof list; i++) {
            cudaDeviceProp p;
            const char *nm = cudaGetDeviceProperties(&p, i) == cudaSuccess ? p.name : "?";
            int w = snprintf(list + o, sizeof list - o, "%scuda:%d (%.64s)", i ? ", " : "", i, nm);
            if (w > 0)
                o += (size_t)w;
        }
        (void)cudaGetLastError();
        return err_set(eb, ERR_NOTFOUND, "cuda:%d does not exist; %d device%s visible%s%s", device,
                       n, n == 1 ? " is" : "s are", n ? ": " : "", list);
    }
    eng_backend_t *be = (eng_backend_t *)calloc(1, sizeof *be);
    struct gpu_ctx *g = (struct gpu_ctx *)calloc(1, sizeof *g);
    if (!be || !g) {
        free(be);
        free(g);
        return err_set(eb, ERR_NOMEM, "out of host memory creating the CUDA backend");
    }
    be->ops = &cuda_ops;
    be->ctx = g;
    be->is_host = false;
    be->n_threads = 1;
    if (log)
        be->log = *log;
    g->be = be;
    g->device = device;
    g->checked_blocks = g->checked_slots = -1;
    g->gemv_max_rows = env_int("ORTHOD_CUDA_GEMV_ROWS", 4, 0, 4);
    g->graphs = env_int("ORTHOD_CUDA_GRAPHS", 1, 0, 1) == 1;
    g->fuse = env_int("ORTHOD_CUDA_FUSE", 1, 0, 1) == 1;
    snprintf(g->name, sizeof g->name, "cuda:%d", device);
    int rc = 0;
    cudaDeviceProp p;
    const char *what = "cudaSetDevice";
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (what = "cudaGetDeviceProperties", e = cudaGetDeviceProperties(&p, device)) != cudaSuccess) {
        rc = err_set(eb, ERR_GPU, "cuda:%d: %s failed: %s (%s)", device, what, cudaGetErrorString(e),
                     cudaGetErrorName(e));
        goto fail;
    }
    g->n_sm = p.multiProcessorCount;
    g->cc_major = p.major;
    g->cc_minor = p.minor;
    g->smem_optin = p.sharedMemPerBlockOptin;
    g->total_mem = p.totalGlobalMem;
    if (p.major < 8) {
        rc = err_set(eb, ERR_UNSUPPORTED, "cuda:%d (%s) has compute capability %d.%d; orthod's CUDA "
                     "backend needs 8.0 or newer (A100, H100, L40, RTX 30xx and later): use --device "
                     "cpu", device, p.name, p.major, p.minor);
        goto fail;
    }
    what = "cudaStreamCreateWithFlags";
    if ((e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (what = "cudaEventCreateWithFlags",
         e = cudaEventCreateWithFlags(&g->step_uploaded, cudaEventDisableTiming)) != cudaSuccess ||
        (what = "cudaMalloc(cuBLAS workspace)",
         e = cudaMalloc(&g->blas_ws, BLAS_WORKSPACE)) != cudaSuccess) {
        rc = err_set(eb, e == cudaErrorMemoryAllocation ? ERR_DEVICE_NOMEM : ERR_GPU,
                     "cuda:%d: %s failed: %s (%s)", device, what, cudaGetErrorString(e),
                     cudaGetErrorName(e));
        goto fail;
    }
    g->blas_ws_size = BLAS_WORKSPACE;
    {
        cublasStatus_t s = cublasCreate(&g->blas);
        const char *bwhat = "cublasCreate";
        if (s == CUBLAS_STATUS_SUCCESS) {
            bwhat = "cublasSetStream";
            s = cublasSetStream(g->blas, g->stream);
        }
        if (s == CUBLAS_STATUS_SUCCESS) {
            bwhat = "cublasSetWorkspace";
            s = cublasSetWorkspace(g->blas, g->blas_ws, g->blas_ws_size);
        }
        if (s == CUBLAS_STATUS_SUCCESS) {
            bwhat = "cublasSetMathMode";
            s = cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH);   // no TF32 for F32 GEMMs
        }
        if (s != CUBLAS_STATUS_SUCCESS) {
            rc = err_set(eb, s == CUBLAS_STATUS_ALLOC_FAILED ? ERR_DEVICE_NOMEM : ERR_GPU,
                         "cuda:%d: %s failed: %s", device, bwhat, cublasGetStatusString(s));
            goto fail;
        }
    }
    if ((rc = gpu_ops_probe(g)) < 0) {
        rc = err_set(eb, rc, "cuda:%d (%s, sm_%d%d): the probe kernel failed: this orthod was "
                     "probably built without code for this GPU; rebuild with -Dgpu_sm=%d%d (the "
                     "log has the CUDA error)", device, p.name, p.major, p.minor, p.major, p.minor);
        goto fail;
    }
    {
        int drv = 0, rt = 0;
        if (cudaDriverGetVersion(&drv) != cudaSuccess || cudaRuntimeGetVersion(&rt) != cudaSuccess)
            (void)cudaGetLastError();
        snprintf(g->desc, sizeof g->desc,
                 "cuda:%d \"%.96s\" sm_%d%d sms=%d mem=%zuMiB driver=%d.%d runtime=%d.%d graphs=%s "
                 "fuse=%s gemv_rows=%d", device, p.name, p.major, p.minor, p.multiProcessorCount,
                 p.totalGlobalMem >> 20, drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10,
                 g->graphs ? "on" : "off", g->fuse ? "on" : "off", g->gemv_max_rows);
    }
    *out = be;
    return 0;
fail:
    (void)cudaGetLastError();
    ctx_destroy(g);
    free(be);
    return rc;
}

/* --- knobs and statistics for bench/bench_gpu.c (microbench.h) --------------------------------- */

extern "C" void gpu_backend_set_graphs(eng_backend_t *be, bool on)
{
    struct gpu_ctx *g = CTX(be);
    g->graphs = on;
    if (!on)
        cache_clear(g);
}

extern "C" void gpu_backend_set_fuse(eng_backend_t *be, bool on)
{
    struct gpu_ctx *g = CTX(be);
    g->fuse = on;
    cache_clear(g);      // graphs captured with the other setting must not be replayed
}

extern "C" void gpu_backend_stats(eng_backend_t *be, struct gpu_stats *out)
{
    struct gpu_ctx *g = CTX(be);
    memset(out, 0, sizeof *out);
    out->graph_launches = g->graph_launches;
    out->graph_captures = g->graph_captures;
    out->eager_steps = g->eager_steps;
    out->fused_records = g->fused;
    out->scratch_bytes = g->pool.total;
    out->weight_bytes = g->bytes_by_use[ENG_BUF_WEIGHTS];
    out->kv_bytes = g->bytes_by_use[ENG_BUF_KV];
    out->compute_bytes = g->bytes_by_use[ENG_BUF_COMPUTE];
    out->n_sm = g->n_sm;
}

/* --- the module's entry point (gpu/gpu.h; gpu/loader.c calls it after dlopen) ---------------- */

extern "C" const struct gpu_module *orthod_gpu_module_v1(void)
{
    static const size_t sizes[] = GPU_MODULE_SIZES;
    static const struct gpu_module mod = {
        GPU_MODULE_ABI,
        (uint32_t)(sizeof sizes / sizeof sizes[0]),
        sizes,
        gpu_module_build_id,
        CUDART_VERSION,
#ifdef GPU_EMU
        1,
#else
        0,
#endif
        gpu_device_count,
        gpu_backend_cuda_new,
    };
    return &mod;
}
