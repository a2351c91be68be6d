/* engine/backend.h: what the model code sees of a compute device.
 * Owns: the opaque backend handle, buffers, the per-step metadata (struct eng_step),
 * the KV-cache storage layout, and the checked op wrappers eng_op_*() that validate
 * shapes and dtypes before dispatching to the device's table (backend_impl.h).
 * Thread: a backend and everything made from it belong to one thread (the engine
 * thread); the CPU backend parallelizes inside each op with its own worker threads.
 * Errors: every int is 0 or a negative ERR_* (common/err.h). */
#ifndef ORTHOD_ENGINE_BACKEND_H
#define ORTHOD_ENGINE_BACKEND_H

#include "../common/err.h"
#include "../common/log.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_backend eng_backend_t;

/* A buffer owns `size` bytes of device memory (host memory for the CPU). `base` is an
 * address in the device's space: tensors point into it as base + offset. */
typedef struct eng_buffer {
    eng_backend_t *be;
    void *base;
    size_t size;
    void *ctx;                   /* backend-private */
} eng_buffer_t;

enum eng_buf_usage {
    ENG_BUF_WEIGHTS = 0,         /* written once at load, then read-only */
    ENG_BUF_COMPUTE = 1,         /* activations and scratch, planned once */
    ENG_BUF_KV = 2,              /* KV-cache blocks */
};

/* --- KV cache storage ---------------------------------------------------------------
 * The cache is a pool of fixed-size blocks per layer. A sequence's position p lives in
 * physical block block_table[p / block_size] at offset p % block_size; its "slot" is
 * block * block_size + offset. For the plain formats (F32, F16) layer l's K storage is
 * the tensor k[l] with ne = {n_kv_heads*head_dim, n_blocks*block_size}: slot s is row s.
 * Quantized formats (later issues) keep the same block addressing with their own
 * per-block byte layout, so they are new kernels, not a new cache. */
enum eng_kv_format {
    ENG_KV_F32 = 0,
    ENG_KV_F16 = 1,
};
const char *eng_kv_format_name(enum eng_kv_format f);
int eng_kv_format_parse(const char *s, enum eng_kv_format *out);

struct eng_kv_layout {
    enum eng_kv_format format;
    int32_t n_layers;
    int32_t n_kv_heads;          /* NKV */
    int32_t head_dim;            /* HS */
    int32_t block_size;          /* tokens per block (16 by default) */
    int32_t n_blocks;            /* physical blocks per layer */
};

typedef struct eng_kv_storage {
    struct eng_kv_layout lay;
    eng_buffer_t *buf;           /* owns all layers' K and V */
    eng_tensor_t *k;             /* (n_layers) views: ne = {NKV*HS, n_blocks*block_size} */
    eng_tensor_t *v;             /* (n_layers) same shape */
} eng_kv_storage_t;

/* --- one forward step -----------------------------------------------------------------
 * A step is a flat list of T tokens from one or more sequences. Token t belongs to
 * sequence seq[t] (an index 0..n_seqs-1 into this step's sequence table, not a global
 * id), sits at position pos[t], and its K/V are written to kv_slot[t]. Token t attends
 * to positions 0..pos[t] of its sequence (causal), which must already be in the cache or
 * be written by this step. All arrays are host memory, valid from step_begin to
 * step_end; the backend copies what it needs (device backends upload once per step). */
struct eng_step {
    int32_t n_tokens;            /* T, >= 1 */
    const int32_t *tokens;       /* (T) token ids, < n_vocab */
    const int32_t *pos;          /* (T) positions */
    const int32_t *seq;          /* (T) sequence index in [0, n_seqs) */
    const int32_t *kv_slot;      /* (T) physical slot for this token's K/V */
    int32_t n_seqs;
    const int32_t *seq_len;      /* (n_seqs) tokens in the cache after this step */
    int32_t max_blocks;          /* columns of block_table */
    const int32_t *block_table;  /* (n_seqs, max_blocks) physical block ids, -1 unused */
    int32_t n_out;               /* rows that need logits */
    const int32_t *out_rows;     /* (n_out) token indices t, ascending */
};

enum eng_rope_mode {
    ENG_ROPE_NORM = 0,           /* rotate adjacent pairs (x[2i], x[2i+1]): llama.cpp NORM */
    ENG_ROPE_NEOX = 2,           /* rotate (x[i], x[i + n_rot/2]): GPT-NeoX / HF Llama */
};

struct eng_rope_params {
    int32_t n_rot;               /* rotated dims per head (<= head_dim, even) */
    float freq_base;             /* theta, e.g. 10000 */
    float freq_scale;            /* linear position scaling, 1.0 = none */
    enum eng_rope_mode mode;
};

/* --- lifetime ------------------------------------------------------------------------ */
struct eng_cpu_params {
    int n_threads;               /* <= 0: all online CPUs */
    struct log_sink log;
};
/* The CPU backend (engine/cpu/). Detects CPU features at run time (AVX2+FMA baseline,
 * AVX-512 / VNNI / BF16 where present and usable); never executes an instruction the OS
 * or CPU does not support. */
int eng_cpu_backend_new(const struct eng_cpu_params *p, eng_backend_t **out);

/* (Device selection from a string such as "cuda:0" lives in server/backend_select.c:
 * the engine never includes gpu/.) */
void eng_backend_free(eng_backend_t *be);          /* NULL ok; buffers must be freed first */
const char *eng_backend_name(const eng_backend_t *be);    /* "cpu", "cuda:0" */
const char *eng_backend_describe(const eng_backend_t *be); /* one line: features, device */
bool eng_backend_is_host(const eng_backend_t *be); /* data pointers are host addresses */
int eng_backend_n_threads(const eng_backend_t *be);
/* Asked once at model load: can matmul consume weights of dtype t? (KV formats are checked
 * by eng_kv_storage_new, which returns ERR_UNSUPPORTED.) */
bool eng_backend_supports_matmul(const eng_backend_t *be, enum eng_dtype t);

/* --- memory -------------------------------------------------------------------------- */
int eng_buffer_new(eng_backend_t *be, size_t size, enum eng_buf_usage use, eng_buffer_t **out);
void eng_buffer_free(eng_buffer_t *buf);           /* NULL ok */
/* Host <-> tensor copies of n bytes at byte offset off of the tensor's data. */
int eng_tensor_set(eng_backend_t *be, eng_tensor_t *dst, const void *src, size_t off, size_t n);
int eng_tensor_get(eng_backend_t *be, const eng_tensor_t *src, void *dst, size_t off, size_t n);
/* Makes n weights usable by the backend, together: w[i] describes weight i (dtype, shape)
 * and on entry w[i]->data points at its bytes in host memory (usually the model file's
 * mmap), valid for the backend's lifetime. Host backends may use those bytes in place
 * (zero copy; *block is then NULL); device backends allocate one buffer for all of them
 * (*block, ENG_BUF_WEIGHTS) and upload, pointing each w[i]->data into it. On failure
 * nothing stays allocated and the w[i] placed so far are cleared (data NULL).
 * Undo with eng_weights_release (same w, n and block). */
int eng_weights_prepare(eng_backend_t *be, eng_tensor_t *const *w, size_t n,
                        eng_buffer_t **block);
/* Releases the weights and frees the block (NULL ok); w[i]->data become NULL. Allocates
 * nothing, so it cannot fail under memory pressure. */
void eng_weights_release(eng_backend_t *be, eng_tensor_t *const *w, size_t n,
                         eng_buffer_t *block);
/* The same for one weight alone (its own block, kept in w->buf): w's bytes are `host`. */
int eng_weight_prepare(eng_backend_t *be, eng_tensor_t *w, const void *host);
void eng_weight_release(eng_backend_t *be, eng_tensor_t *w);
/* Allocates and zeroes KV storage for `lay` (tensors in *out point into out->buf). */
int eng_kv_storage_new(eng_backend_t *be, const struct eng_kv_layout *lay,
                       eng_kv_storage_t **out);
void eng_kv_storage_free(eng_kv_storage_t *kv);   /* NULL ok */
/* Bytes one block of one layer takes (K plus V). */
size_t eng_kv_block_bytes(const struct eng_kv_layout *lay);

/* --- compute (forward). Shapes: T tokens of the step, R any row count, C model width,
 * N/K matmul out/in features, F ffn width, NH/NKV heads, HS head size. Activations are
 * F32 and contiguous. Every op checks shapes and dtypes and returns ERR_INVAL on misuse. */
int eng_step_begin(eng_backend_t *be, const struct eng_step *st);
int eng_step_end(eng_backend_t *be);   /* waits for the step's work (device sync) */

/* out (T, C) = rows of wte (V, C) (any compute dtype) picked by the step's tokens. */
int eng_op_embed(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *wte);
/* out (R, C) = x / rms(x) * w, w (C) F32. */
int eng_op_rmsnorm(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                   const eng_tensor_t *w, float eps);
/* out (R, N) = x (R, K) @ w^T, w (N, K) in any compute dtype. Quantized weights may
 * quantize x on the fly (Q8_0 activations), as llama.cpp does. */
int eng_op_matmul(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x,
                  const eng_tensor_t *w);
/* out[i] (R, N_i) = x (R, K) @ w[i]^T for i < n (1 <= n <= ENG_MATMUL_N_MAX): several
 * weights against the same x (q/k/v, gate/up) in one pass where the backend can (the CPU
 * backend converts x once and runs one fork-join); else n matmuls. */
#define ENG_MATMUL_N_MAX 4
int eng_op_matmul_n(eng_backend_t *be, int n, eng_tensor_t *const out[], const eng_tensor_t *x,
                    const eng_tensor_t *const w[]);
/* In place on x (T, n_heads*HS): rotates each head by the step's positions. */
int eng_op_rope(eng_backend_t *be, eng_tensor_t *x, int32_t n_heads,
                const struct eng_rope_params *rp);
/* Writes k, v (T, NKV*HS) F32 into the cache at the step's kv_slot[] (converting). */
int eng_op_kv_write(eng_backend_t *be, eng_kv_storage_t *kv, int32_t layer,
                    const eng_tensor_t *k, const eng_tensor_t *v);
/* out (T, NH*HS) = causal softmax(q k^T * scale) v per token over its sequence's cache;
 * q (T, NH*HS); GQA: head h reads KV head h / (NH/NKV). */
int eng_op_attention(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *q,
                     const eng_kv_storage_t *kv, int32_t layer, int32_t n_heads, float scale);
/* out (R, F) = silu(gate) * up. */
int eng_op_swiglu(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *gate,
                  const eng_tensor_t *up);
/* out = a + b, same shapes (out may alias a or b). */
int eng_op_add(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *a,
               const eng_tensor_t *b);
/* out (n_out, C) = rows out_rows[] of x (T, C) (the rows that need logits). */
int eng_op_gather_rows(eng_backend_t *be, eng_tensor_t *out, const eng_tensor_t *x);

#endif
