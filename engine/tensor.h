/* engine/tensor.h: element types, quantized block layouts and the tensor view.
 * Owns: enum eng_dtype (numbered as GGUF/ggml number them, so files map 1:1),
 * the Q8_0/Q4_0 block structs, scalar fp16/bf16 conversions, eng_tensor_t.
 * A tensor is a view: it never owns memory; its buffer (or the model's mmap) does.
 * Shapes follow ggml: ne[0] is the innermost (contiguous) dimension, so a weight
 * matrix W with N outputs and K inputs has ne = {K, N} and row n at data + n*nb[1]. */
#ifndef ORTHOD_ENGINE_TENSOR_H
#define ORTHOD_ENGINE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum eng_dtype {
    ENG_DTYPE_F32  = 0,
    ENG_DTYPE_F16  = 1,
    ENG_DTYPE_Q4_0 = 2,
    ENG_DTYPE_Q4_1 = 3,
    ENG_DTYPE_Q5_0 = 6,
    ENG_DTYPE_Q5_1 = 7,
    ENG_DTYPE_Q8_0 = 8,
    ENG_DTYPE_Q8_1 = 9,
    ENG_DTYPE_Q2_K = 10,
    ENG_DTYPE_Q3_K = 11,
    ENG_DTYPE_Q4_K = 12,
    ENG_DTYPE_Q5_K = 13,
    ENG_DTYPE_Q6_K = 14,
    ENG_DTYPE_Q8_K = 15,
    ENG_DTYPE_I8   = 24,
    ENG_DTYPE_I16  = 25,
    ENG_DTYPE_I32  = 26,
    ENG_DTYPE_I64  = 27,
    ENG_DTYPE_F64  = 28,
    ENG_DTYPE_BF16 = 30,
    ENG_DTYPE__MAX = 40,     /* ids >= this are rejected by loaders */
};

#define ENG_QK8_0 32
#define ENG_QK4_0 32

/* Q8_0: 32 weights = d * qs[i]. 34 bytes. */
typedef struct {
    uint16_t d;              /* fp16 scale */
    int8_t qs[ENG_QK8_0];
} eng_block_q8_0;

/* Q4_0: 32 weights; element i < 16 is (qs[i] & 0xF) - 8, element i >= 16 is
 * (qs[i-16] >> 4) - 8, all times d. 18 bytes. */
typedef struct {
    uint16_t d;              /* fp16 scale */
    uint8_t qs[ENG_QK4_0 / 2];
} eng_block_q4_0;

_Static_assert(sizeof(eng_block_q8_0) == 34, "q8_0 block layout");
_Static_assert(sizeof(eng_block_q4_0) == 18, "q4_0 block layout");

/* Name as GGUF tools print it ("f32", "q8_0"); "unknown" otherwise. */
const char *eng_dtype_name(enum eng_dtype t);
/* Parses "f32|f16|bf16|q8_0|q4_0" (case-insensitive). Returns 0 or ERR_INVAL. */
int eng_dtype_parse(const char *s, enum eng_dtype *out);
/* Elements per block (1 for plain types), bytes per block; 0 for unsupported ids. */
int64_t eng_dtype_block_elems(enum eng_dtype t);
size_t eng_dtype_block_bytes(enum eng_dtype t);
/* True for the dtypes the engine can compute with (F32, F16, BF16, Q8_0, Q4_0). */
bool eng_dtype_is_compute(enum eng_dtype t);
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size. */
size_t eng_dtype_row_bytes(enum eng_dtype t, int64_t n);

/* --- scalar conversions (IEEE binary16 and bfloat16; round to nearest even) --- */
static inline float eng_fp32_from_bits(uint32_t w)
{
    float f;
    memcpy(&f, &w, 4);
    return f;
}
static inline uint32_t eng_fp32_to_bits(float f)
{
    uint32_t w;
    memcpy(&w, &f, 4);
    return w;
}
float eng_fp16_to_fp32(uint16_t h);
uint16_t eng_fp32_to_fp16(float f);
static inline float eng_bf16_to_fp32(uint16_t h)
{
    return eng_fp32_from_bits((uint32_t)h << 16);
}
static inline uint16_t eng_fp32_to_bf16(float f)
{
    uint32_t w = eng_fp32_to_bits(f);
    if ((w & 0x7fffffffu) > 0x7f800000u)           // NaN: keep it a (quiet) NaN
        return (uint16_t)((w >> 16) | 64);
    return (uint16_t)((w + (0x7fffu + ((w >> 16) & 1))) >> 16);
}

/* --- reference (scalar) row conversion: the oracle every SIMD path must match --- */
/* Dequantizes/converts n elements of one row of type t at src into dst (F32). */
void eng_row_to_f32(enum eng_dtype t, const void *src, float *dst, int64_t n);
/* Quantizes n floats into one row of type t (F32/F16/BF16/Q8_0/Q4_0), reference
 * rounding as ggml's quantize_row_*_ref. n must be a multiple of the block size. */
void eng_row_from_f32(enum eng_dtype t, const float *src, void *dst, int64_t n);

/* --- the view --- */
struct eng_buffer;

typedef struct eng_tensor {
    enum eng_dtype dtype;
    int64_t ne[4];           /* elements per dim, ne[0] innermost; unused dims are 1 */
    size_t nb[4];            /* byte strides; nb[0] = block bytes (per block, not per elem) */
    void *data;              /* address in the owning backend's memory space */
    struct eng_buffer *buf;  /* owning buffer, NULL for host memory owned elsewhere (mmap) */
    void *extra;             /* backend-private per-tensor state (NULL unless the backend sets it) */
    char name[64];
} eng_tensor_t;

/* Fills t as a contiguous view: dtype, ne (n_dims <= 4, rest 1), strides; data/buf NULL.
 * Returns 0 or ERR_INVAL (ne[0] not a multiple of the block size, negative dims,
 * overflowing size). */
int eng_tensor_init(eng_tensor_t *t, enum eng_dtype dtype, int n_dims, const int64_t *ne);
int64_t eng_tensor_nelements(const eng_tensor_t *t);
int64_t eng_tensor_nrows(const eng_tensor_t *t);   /* ne[1]*ne[2]*ne[3] */
size_t eng_tensor_nbytes(const eng_tensor_t *t);   /* for a contiguous tensor */
bool eng_tensor_is_contiguous(const eng_tensor_t *t);

#endif
