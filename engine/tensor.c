/* engine/tensor.c: dtype table, scalar conversions (the oracle), tensor views. */
#include "tensor.h"

#include "../common/err.h"

#include <math.h>
#include <strings.h>

static const struct {
    enum eng_dtype t;
    const char *name;
    int64_t blk;
    size_t bytes;
} dtype_table[] = {
    {ENG_DTYPE_F32, "f32", 1, 4},
    {ENG_DTYPE_F16, "f16", 1, 2},
    {ENG_DTYPE_Q4_0, "q4_0", 32, 18},
    {ENG_DTYPE_Q4_1, "q4_1", 32, 20},
    {ENG_DTYPE_Q5_0, "q5_0", 32, 22},
    {ENG_DTYPE_Q5_1, "q5_1", 32, 24},
    {ENG_DTYPE_Q8_0, "q8_0", 32, 34},
    {ENG_DTYPE_Q8_1, "q8_1", 32, 36},
    {ENG_DTYPE_Q2_K, "q2_k", 256, 84},
    {ENG_DTYPE_Q3_K, "q3_k", 256, 110},
    {ENG_DTYPE_Q4_K, "q4_k", 256, 144},
    {ENG_DTYPE_Q5_K, "q5_k", 256, 176},
    {ENG_DTYPE_Q6_K, "q6_k", 256, 210},
    {ENG_DTYPE_Q8_K, "q8_k", 256, 292},
    {ENG_DTYPE_I8, "i8", 1, 1},
    {ENG_DTYPE_I16, "i16", 1, 2},
    {ENG_DTYPE_I32, "i32", 1, 4},
    {ENG_DTYPE_I64, "i64", 1, 8},
    {ENG_DTYPE_F64, "f64", 1, 8},
    {ENG_DTYPE_BF16, "bf16", 1, 2},
};
#define N_DTYPES (sizeof dtype_table / sizeof dtype_table[0])

static int dtype_index(enum eng_dtype t)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtype_table[i].t == t)
            return (int)i;
    return -1;
}

const char *eng_dtype_name(enum eng_dtype t)
{
    int i = dtype_index(t);
    return i < 0 ? "unknown" : dtype_table[i].name;
}

int eng_dtype_parse(const char *s, enum eng_dtype *out)
{
    static const enum eng_dtype allowed[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16,
                                             ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (strcasecmp(s, eng_dtype_name(allowed[i])) == 0) {
            *out = allowed[i];
            return 0;
        }
    }
    return ERR_INVAL;
}

int64_t eng_dtype_block_elems(enum eng_dtype t)
{
    int i = dtype_index(t);
    return i < 0 ? 0 : dtype_table[i].blk;
}

size_t eng_dtype_block_bytes(enum eng_dtype t)
{
    int i = dtype_index(t);
    return i < 0 ? 0 : dtype_table[i].bytes;
}

bool eng_dtype_is_compute(enum eng_dtype t)
{
    return t == ENG_DTYPE_F32 || t == ENG_DTYPE_F16 || t == ENG_DTYPE_BF16 ||
           t == ENG_DTYPE_Q8_0 || t == ENG_DTYPE_Q4_0;
}

size_t eng_dtype_row_bytes(enum eng_dtype t, int64_t n)
{
    int64_t blk = eng_dtype_block_elems(t);
    if (blk <= 0 || n < 0 || n % blk)
        return 0;
    return (size_t)(n / blk) * eng_dtype_block_bytes(t);
}

/* IEEE half <-> single, exact and round-to-nearest-even (as numpy and F16C do). */
float eng_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t w;
    if (exp == 0) {
        if (man == 0) {
            w = sign;
        } else { // subnormal: normalize
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            man &= 0x3ff;
            w = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        w = sign | 0x7f800000u | (man << 13);
    } else {
        w = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return eng_fp32_from_bits(w);
}

uint16_t eng_fp32_to_fp16(float f)
{
    uint32_t w = eng_fp32_to_bits(f);
    uint32_t sign = (w >> 16) & 0x8000;
    uint32_t aw = w & 0x7fffffffu;
    if (aw > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);          // NaN
    if (aw >= 0x477ff000u)                          // rounds to >= 65520: inf
        return (uint16_t)(sign | 0x7c00);
    if (aw < 0x38800000u) {                         // below the smallest normal half
        // subnormal half: value = m * 2^-24, round to nearest even via float addition
        float a = eng_fp32_from_bits(aw);
        uint32_t m = (uint32_t)lrintf(a * 16777216.0f); // a / 2^-24, RNE (default rounding)
        return (uint16_t)(sign | m);
    }
    uint32_t exp = ((aw >> 23) - 127 + 15);
    uint32_t man = aw & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;                                        // may carry into the exponent: correct
    return (uint16_t)(sign | h);
}

void eng_row_to_f32(enum eng_dtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case ENG_DTYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case ENG_DTYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = eng_fp16_to_fp32(s[i]);
        break;
    }
    case ENG_DTYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = eng_bf16_to_fp32(s[i]);
        break;
    }
    case ENG_DTYPE_Q8_0: {
        const eng_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / ENG_QK8_0; i++) {
            float d = eng_fp16_to_fp32(b[i].d);
            for (int j = 0; j < ENG_QK8_0; j++)
                dst[i * ENG_QK8_0 + j] = d * (float)b[i].qs[j];
        }
        break;
    }
    case ENG_DTYPE_Q4_0: {
        const eng_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / ENG_QK4_0; i++) {
            float d = eng_fp16_to_fp32(b[i].d);
            for (int j = 0; j < ENG_QK4_0 / 2; j++) {
                dst[i * ENG_QK4_0 + j] = d * (float)((b[i].qs[j] & 0xf) - 8);
                dst[i * ENG_QK4_0 + j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
        break;
    }
}

void eng_row_from_f32(enum eng_dtype t, const float *src, void *dst, int64_t n)
{
    switch (t) {
    case ENG_DTYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case ENG_DTYPE_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = eng_fp32_to_fp16(src[i]);
        break;
    }
    case ENG_DTYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = eng_fp32_to_bf16(src[i]);
        break;
    }
    case ENG_DTYPE_Q8_0: {
        eng_block_q8_0 *b = dst;
        for (int64_t i = 0; i < n / ENG_QK8_0; i++) {
            const float *x = src + i * ENG_QK8_0;
            float amax = 0.0f;
            for (int j = 0; j < ENG_QK8_0; j++)
                amax = fmaxf(amax, fabsf(x[j]));
            const float d = amax / 127.0f;
            const float id = d ? 1.0f / d : 0.0f;
            b[i].d = eng_fp32_to_fp16(d);
            for (int j = 0; j < ENG_QK8_0; j++)
                b[i].qs[j] = (int8_t)roundf(x[j] * id);
        }
        break;
    }
    case ENG_DTYPE_Q4_0: {
        eng_block_q4_0 *b = dst;
        for (int64_t i = 0; i < n / ENG_QK4_0; i++) {
            const float *x = src + i * ENG_QK4_0;
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < ENG_QK4_0; j++) {
                if (amax < fabsf(x[j])) {
                    amax = fabsf(x[j]);
                    max = x[j];
                }
            }
            const float d = max / -8.0f;
            const float id = d ? 1.0f / d : 0.0f;
            b[i].d = eng_fp32_to_fp16(d);
            for (int j = 0; j < ENG_QK4_0 / 2; j++) {
                int x0 = (int)(x[j] * id + 8.5f), x1 = (int)(x[j + 16] * id + 8.5f);
                x0 = x0 > 15 ? 15 : x0;
                x1 = x1 > 15 ? 15 : x1;
                b[i].qs[j] = (uint8_t)(x0 | (x1 << 4));
            }
        }
        break;
    }
    default:
        break;
    }
}

int eng_tensor_init(eng_tensor_t *t, enum eng_dtype dtype, int n_dims, const int64_t *ne)
{
    int64_t blk = eng_dtype_block_elems(dtype);
    size_t bb = eng_dtype_block_bytes(dtype);
    if (blk <= 0 || n_dims < 1 || n_dims > 4)
        return ERR_INVAL;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    for (int i = 0; i < 4; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    for (int i = 0; i < 4; i++)
        if (t->ne[i] < 0 || t->ne[i] > ((int64_t)1 << 40))
            return ERR_INVAL;
    if (t->ne[0] % blk)
        return ERR_INVAL;
    t->nb[0] = bb;
    t->nb[1] = (size_t)(t->ne[0] / blk) * bb;
    for (int i = 2; i < 4; i++) {
        // overflow check: total must stay below 2^62
        if (t->ne[i - 1] && t->nb[i - 1] > ((size_t)1 << 62) / (size_t)t->ne[i - 1])
            return ERR_INVAL;
        t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
    }
    if (t->ne[3] && t->nb[3] > ((size_t)1 << 62) / (size_t)t->ne[3])
        return ERR_INVAL;
    return 0;
}

int64_t eng_tensor_nelements(const eng_tensor_t *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int64_t eng_tensor_nrows(const eng_tensor_t *t)
{
    return t->ne[1] * t->ne[2] * t->ne[3];
}

size_t eng_tensor_nbytes(const eng_tensor_t *t)
{
    return t->nb[3] * (size_t)t->ne[3];
}

bool eng_tensor_is_contiguous(const eng_tensor_t *t)
{
    size_t rb = eng_dtype_row_bytes(t->dtype, t->ne[0]);
    return t->nb[0] == eng_dtype_block_bytes(t->dtype) && t->nb[1] == rb &&
           t->nb[2] == rb * (size_t)t->ne[1] && t->nb[3] == t->nb[2] * (size_t)t->ne[2];
}
