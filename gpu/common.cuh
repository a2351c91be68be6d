/* gpu/common.cuh: internals shared by gpu/'s .cu files (never included outside gpu/).
 * Owns: struct gpu_ctx (device, stream, cuBLAS handle, scratch pool, the current step, the
 * op records and the CUDA-graph cache), the status checks that turn every CUDA / cuBLAS
 * failure into ERR_GPU or ERR_DEVICE_NOMEM with a logged message, the kernel launch macro
 * (real <<<>>> under nvcc; the CPU emulator in gpu/emu/ when GPU_EMU is defined), the
 * fp16/bf16 helpers kernels use, and the interfaces between backend_cuda.cu (the table),
 * pool.cu (scratch), ops.cu, matmul.cu and attention.cu (kernels).
 *
 * How an op runs: the table entry validates its arguments on the host and fills a
 * struct gpu_rec (everything the launch needs: device pointers, shapes, the launch plan).
 * gpu_rec_exec() launches from the record alone. Eagerly, records run at once; in graph
 * mode (decode steps) they are kept until the step's first flush (tensor_get/step_end)
 * and replayed as one CUDA graph when the same records were seen before. So nothing a
 * kernel needs may come from the host step arrays except through the record. */
#ifndef ORTHOD_GPU_COMMON_CUH
#define ORTHOD_GPU_COMMON_CUH

#ifdef GPU_EMU
#include "emu/emu.h"
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <stddef.h>
#include <stdint.h>

/* The engine's headers are C11: give them C linkage and C++'s spelling of _Static_assert. */
#define _Static_assert static_assert
extern "C" {
#include "../engine/backend_impl.h"
#include "gpu.h"
}
#undef _Static_assert

/* --- launching ------------------------------------------------------------------------
 * LAUNCH(grid, block, smem, stream, kernel<...>)(args...); then GPU_LAUNCHED(g) checks
 * the launch. The kernel goes last so template arguments may contain commas. */
#ifdef GPU_EMU
#define LAUNCH(grid, block, smem, stream, ...) emu::make_launch((grid), (block), (smem), (stream), __VA_ARGS__)
#define GPU_DYN_SMEM(name) unsigned char *name = (unsigned char *)emu::dyn_smem()
#else
#define LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define GPU_DYN_SMEM(name) extern __shared__ __align__(16) unsigned char gpu_dyn_smem_[]; \
    unsigned char *name = gpu_dyn_smem_
#endif

#define GPU_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

/* --- fp16 / bf16 bits <-> float (round to nearest even, as engine/tensor.c) ------------ */
#ifdef GPU_EMU
static inline float gpu_h2f(uint16_t h) { return eng_fp16_to_fp32(h); }
static inline uint16_t gpu_f2h(float f) { return eng_fp32_to_fp16(f); }
static inline float gpu_bf2f(uint16_t h) { return eng_bf16_to_fp32(h); }
static inline uint16_t gpu_f2bf(float f) { return eng_fp32_to_bf16(f); }
#else
static __device__ __forceinline__ float gpu_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
static __device__ __forceinline__ uint16_t gpu_f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }
static __device__ __forceinline__ float gpu_bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
static __device__ __forceinline__ uint16_t gpu_f2bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
#endif

static __device__ __forceinline__ float gpu_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float gpu_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ double gpu_warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* --- scratch pool (pool.cu) -------------------------------------------------------------
 * Device scratch in named slots, each grown (never shrunk) to the largest request seen:
 * cudaMalloc happens only when a step is larger than every step before it. A growth
 * bumps the generation, which retires every cached CUDA graph (they hold the old
 * addresses). */
enum gpu_scratch_slot {
    GPU_SCR_X16 = 0,     /* activations converted to F16/BF16 for cuBLAS */
    GPU_SCR_WDQ,         /* a weight dequantized on the fly (weights not prepared by us) */
    GPU_SCR_ATT,         /* attention split partials */
    GPU_SCR_GATHER,      /* gather_rows when out overlaps x */
    GPU_SCR_LOAD,        /* weight upload staging (quantized blocks) */
    GPU_SCR_BENCH,       /* microbenchmarks */
    GPU_SCR__COUNT
};

struct gpu_pool {
    void *ptr[GPU_SCR__COUNT];
    size_t cap[GPU_SCR__COUNT];
    uint64_t gen;        /* bumped by every reallocation */
    size_t total;        /* bytes held */
};

/* --- per-buffer state (buf->ctx) ------------------------------------------------------- */
struct gpu_buf {
    enum eng_buf_usage use;
    bool prepared;               /* a weight block: weights placed by cuda_weight_place */
    size_t bytes;
};

/* --- op records -------------------------------------------------------------------------- */
enum gpu_op {
    GPU_OP_EMBED = 1,
    GPU_OP_RMSNORM,
    GPU_OP_MATMUL,
    GPU_OP_ROPE,
    GPU_OP_KV_WRITE,
    GPU_OP_ATTENTION,
    GPU_OP_SWIGLU,
    GPU_OP_ADD,
    GPU_OP_GATHER,
};

enum gpu_mm_path {
    GPU_MM_GEMV = 1,         /* our kernel: few rows, weights streamed once at HBM speed */
    GPU_MM_GEMV_SCALAR,      /* the same without 16-byte loads (odd K or misaligned rows) */
    GPU_MM_CUBLAS,           /* cuBLAS GEMM, x converted to the weight's 16-bit type */
};

/* Every field is fixed when the op is called; the record is zeroed first so that it can
 * be hashed and compared byte for byte. */
struct gpu_rec {
    int32_t op;
    int32_t pad0;
    union {
        struct {
            float *out;
            const void *wte;
            const int32_t *tokens;   /* device step array */
            int64_t C, T;
            size_t row_bytes;
            int32_t storage;         /* enum eng_dtype of the bytes */
        } embed;
        struct {
            float *out;
            const float *x, *w;
            int64_t C, R;
            float eps;
        } rmsnorm;
        struct {
            float *out;
            const float *x;
            const void *w;
            int64_t R, K, N;
            int32_t storage;         /* dtype of the bytes at w */
            int32_t path;            /* enum gpu_mm_path */
        } matmul;
        struct {
            float *x;
            const int32_t *pos;
            int64_t T, n_heads, HS;
            int32_t n_rot, mode;
            float freq_base, freq_scale;
        } rope;
        struct {
            const float *k, *v;
            void *kc, *vc;
            const int32_t *slot;
            int64_t T, row;
            int32_t f16;
        } kv_write;
        struct {
            float *out;
            const float *q;
            const void *kc, *vc;
            const int32_t *pos, *seq, *block_table;
            int64_t T;
            int32_t n_heads, n_kv_heads, head_dim, block_size, max_blocks, f16;
            float scale;
            int32_t heads_per_block;  /* query heads of one KV group handled by a block */
            int32_t head_blocks;      /* blocks per KV head: ceil(group / heads_per_block) */
            int32_t n_split;          /* blocks along the KV length */
            int32_t split_len;        /* positions per split (multiple of the chunk) */
        } att;
        struct {
            float *out;
            const float *a, *b;
            int64_t n;
        } ew;                        /* swiglu, add */
        struct {
            float *out;
            const float *x;
            const int32_t *rows;     /* device step array */
            int64_t C, n_out;
            int32_t overlap;         /* out overlaps x: gather through scratch */
        } gather;
    } u;
};

/* --- the backend context -------------------------------------------------------------------- */
struct gpu_graph_entry {
    uint64_t key;                /* hash of the records (and the scratch generation) */
    struct gpu_rec *snap;        /* the records themselves: a hit is an exact byte match */
    int n_snap;
    uint64_t last_use;
    int seen;                    /* times these records ran */
    bool no_graph;               /* capture failed once: always run eagerly */
    cudaGraphExec_t exec;        /* NULL until captured (the second time the step is seen) */
};

#define GPU_GRAPH_CACHE 32

struct gpu_ctx {
    eng_backend_t *be;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    size_t blas_ws_size;
    struct gpu_pool pool;
    int n_sm;
    int cc_major, cc_minor;
    size_t smem_optin;           /* max dynamic shared memory per block */
    size_t total_mem;
    size_t bytes_by_use[3];      /* live buffer bytes per enum eng_buf_usage */

    /* options (environment, read once at creation) */
    int gemv_max_rows;           /* ORTHOD_CUDA_GEMV_ROWS: rows up to which matmul uses GEMV */
    bool graphs;                 /* ORTHOD_CUDA_GRAPHS: replay repeated steps as CUDA graphs */
    bool fuse;                   /* ORTHOD_CUDA_FUSE: fuse deferred records (graph mode only) */

    /* the current step */
    bool in_step;
    bool step_failed;            /* an op of this step failed: do not replay or capture it */
    struct eng_step st;          /* host arrays borrowed until step_end */
    int32_t max_pos;             /* largest position of the step */
    int32_t checked_blocks;      /* n_blocks the block tables were validated against (-1: none) */
    int32_t checked_slots;       /* slots the kv_slot[] were validated against (-1: none) */
    int32_t *step_host;          /* pinned staging */
    int32_t *step_dev;
    size_t step_cap;             /* int32 elements in each */
    uint64_t step_gen;           /* bumped when step_dev moves */
    cudaEvent_t step_uploaded;
    bool step_event_live;
    const int32_t *d_tokens, *d_pos, *d_seq, *d_slot, *d_out_rows, *d_seq_len, *d_block_table;

    /* deferred records (graph mode) */
    struct gpu_rec *recs;
    int n_recs, cap_recs;
    bool capturing;
    struct gpu_graph_entry cache[GPU_GRAPH_CACHE];
    uint64_t use_clock;
    uint64_t graph_launches, graph_captures, eager_steps;   /* statistics */
    uint64_t fused;                                         /* records run fused */

    bool warned_raw_quant;
    char name[16];
    char desc[320];
};

static inline struct gpu_ctx *gpu_ctx_of(eng_backend_t *be)
{
    return (struct gpu_ctx *)be->ctx;
}

/* --- status checks (backend_cuda.cu) ------------------------------------------------------
 * Log the failed call with where and why, clear the (non-sticky) error, and return
 * ERR_DEVICE_NOMEM for out-of-memory or ERR_GPU otherwise. */
int gpu_backend_cuda_fail(struct gpu_ctx *g, cudaError_t e, const char *call, const char *file, int line);
int gpu_backend_blas_fail(struct gpu_ctx *g, cublasStatus_t s, const char *call, const char *file,
                  int line);

#define GPU_CU(g, call)                                                                          \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess)                                                                   \
            return gpu_backend_cuda_fail((g), e_, #call, __FILE__, __LINE__);                            \
    } while (0)

#define GPU_BLAS(g, call)                                                                        \
    do {                                                                                         \
        cublasStatus_t s_ = (call);                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                         \
            return gpu_backend_blas_fail((g), s_, #call, __FILE__, __LINE__);                            \
    } while (0)

/* After a LAUNCH: reports a bad configuration or a missing kernel image. */
#define GPU_LAUNCHED(g, what) GPU_CU((g), cudaGetLastError())

/* --- pool.cu --- */
/* A scratch slot of at least `bytes`; grows (stream-synchronized) when too small. Fails
 * with ERR_STATE while a graph is being captured (the caller falls back to eager). */
int gpu_pool_reserve(struct gpu_ctx *g, enum gpu_scratch_slot slot, size_t bytes, void **out);
void gpu_pool_release_all(struct gpu_ctx *g);

/* --- ops.cu, matmul.cu, attention.cu: launch one record --- */
int gpu_ops_exec(struct gpu_ctx *g, const struct gpu_rec *r);        /* all but matmul/attention */
/* Runs recs[0..] fused when they start with a pattern that has a fused kernel (residual add
 * then RMSNorm of its result; RoPE of q and k then the KV write of that k). Sets *used to
 * the records consumed (0: no pattern, nothing launched). Arithmetic is the same as the
 * separate kernels', so results are bitwise equal. */
int gpu_ops_exec_fused(struct gpu_ctx *g, const struct gpu_rec *recs, int n, int *used);
int gpu_matmul_exec(struct gpu_ctx *g, const struct gpu_rec *r);
int gpu_attention_exec(struct gpu_ctx *g, const struct gpu_rec *r);
int32_t gpu_attention_max_head_dim(void);
/* Decides the launch plan of an attention record (split along the KV length). */
void gpu_attention_plan(const struct gpu_ctx *g, struct gpu_rec *r, int32_t max_len);
/* Picks the matmul path for a record whose other fields are filled. */
int32_t gpu_matmul_pick(const struct gpu_ctx *g, int64_t R, int64_t K, int32_t storage,
                        const void *w, const void *x);
/* Dequantizes `rows` rows of Q8_0/Q4_0 blocks at src (device) into F16 at dst (device). */
int gpu_ops_dequant_f16(struct gpu_ctx *g, enum eng_dtype t, const void *src, uint16_t *dst,
                    int64_t rows, int64_t K);
/* cuBLAS and GEMV entry points for the microbenchmarks (matmul.cu). */
int gpu_matmul_run(struct gpu_ctx *g, int32_t path, int32_t storage, float *out, const float *x,
                   const void *w, int64_t R, int64_t K, int64_t N);
/* A trivial kernel: proves the binary has code for this device. */
int gpu_ops_probe(struct gpu_ctx *g);

#endif
