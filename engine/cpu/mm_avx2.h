/* engine/cpu/mm_avx2.h: the matmul kinds of the avx2 level (AVX2 + FMA + F16C, for CPUs
 * without AVX-512), for the driver mm_tmpl.h. Included only by level_avx2.c (compiled
 * with those -m flags, run only after features.c found them).
 *
 * Quantized weights (Q8_0, Q4_0): x is quantized with the canonical rounding
 * (mm_impl.h) and kept as int16; 16 output columns of weights are packed per K chunk
 * as int16 pairs [block][k/2][16 columns][2] (+ F32 scales [block][16]) and an
 * R_T x 16 microkernel broadcasts a pair of x and runs vpmaddwd against 8 columns x
 * 2 k at a time. int16 x int16 pairs cannot overflow (unlike vpmaddubsw with an
 * offset), so block sums are exact without corrections; lanes are output columns and
 * the canonical fma per block keeps the result equal to the scalar reference.
 *
 * Float weights: a row-wise kernel for R <= RV_F (decode); for larger R, panels
 * [k][16 columns] of F32 (F16 and BF16 converted exactly) and an R_T x 16 FMA
 * microkernel. BF16 here multiplies F32 x by the exact BF16 weight (no vdpbf16ps). */

#include "mm_impl.h"
#include "simd_avx2.h"

#include <stdlib.h>

#define PW 16           /* output columns per panel (two ymm) */
#define KCB 16          /* K chunk of a quantized panel, in blocks (16 KiB) */
#define KCF 256         /* K chunk of a float panel, in elements (16 KiB) */
#define RT_Q 2          /* rows per quantized tile: 4 int + 4 float accumulators */
#define RT_F 6          /* rows per float tile: 12 accumulators of 16 ymm */
#define RV_F 4          /* R up to which float weights use the row-wise kernel */

static const uint8_t zero_rows[KCB * sizeof(eng_block_q8_0) + 64];

/* ------------------------------------------------------------------------------------- */
/* quantized                                                                               */

struct q_act {
    int16_t *q;            /* (R, qs) */
    float *dx;             /* (R, nb) */
    size_t qs;
};

static struct q_act q_layout(void *act, int64_t R, int64_t K)
{
    struct q_act a;
    a.qs = (size_t)mm_round_up(K, 32);
    a.dx = act;
    a.q = (int16_t *)(a.dx + (size_t)R * (size_t)(K / 32));
    return a;
}

static size_t q_act_bytes(int64_t R, int64_t K)
{
    size_t b;
    if (__builtin_mul_overflow((size_t)R, (size_t)mm_round_up(K, 32) * 2 + (size_t)K / 32 * 4, &b))
        return SIZE_MAX;
    return b;
}

/* Row r: the canonical quantization (mm_impl.h), kept as int16. */
static void q_act_row(const struct mm_job *j, int64_t r)
{
    const int64_t K = j->K;
    const struct q_act a = q_layout(j->act, j->R, K);
    const float *x = j->x + r * K;
    int16_t *q = a.q + (size_t)r * a.qs;
    float *dx = a.dx + r * (K / 32);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256 v[4];
        __m256i am = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + b * 32 + i * 8);
            am = _mm256_max_epu32(am, _mm256_and_si256(_mm256_castps_si256(v[i]), absm));
        }
        __m128i m = _mm_max_epu32(_mm256_castsi256_si128(am), _mm256_extracti128_si256(am, 1));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
        const float d = eng_fp32_from_bits((uint32_t)_mm_cvtsi128_si32(m)) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int i = 0; i < 2; i++) {
            __m256i q0 = round_q8(_mm256_mul_ps(v[2 * i], id));
            __m256i q1 = round_q8(_mm256_mul_ps(v[2 * i + 1], id));
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8);
            _mm256_storeu_si256((__m256i *)(q + b * 32 + i * 16), p);
        }
        dx[b] = eng_fp16_to_fp32(eng_fp32_to_fp16(d));
    }
}

/* Packs blocks [kb0, kb0 + kbn) of columns n0 .. n0 + nc - 1 (nc <= 16) as int16 pairs:
 * pw [b][kp 0..15][16][2], psc [b][16]; columns >= nc get zero weights and scales. */
static void q_pack(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                   int64_t kn, int64_t n_end)
{
    int16_t *pw = panel;
    float *psc = (float *)(pw + KCB * 512);
    const int64_t kb0 = k0 / 32;
    const int kbn = (int)(kn / 32);
    // prefetch the next panel's rows while this one is packed (see matmul_avx512.c)
    const bool pf = n0 + 2 * PW <= n_end;
    const size_t pfd = (size_t)PW * j->ws;
    const bool q8 = j->dt == ENG_DTYPE_Q8_0;
    const size_t bs = q8 ? sizeof(eng_block_q8_0) : sizeof(eng_block_q4_0);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m256i eight = _mm256_set1_epi16(8);
    for (int h = 0; h * 8 < nc; h++) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) {
            const int64_t n = n0 + h * 8 + i;
            rows[i] = n < n0 + nc ? j->w + (size_t)n * j->ws + (size_t)kb0 * bs : zero_rows;
        }
        for (int b = 0; b < kbn; b++) {
            const size_t off = (size_t)b * bs;
            if (pf)
                for (int i = 0; i < 8; i++)
                    _mm_prefetch((const char *)rows[i] + off + pfd, _MM_HINT_T0);
            __m256i lo[8], hi[8];
            for (int i = 0; i < 8; i++) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(rows[i] + off + 2));
                if (q8) {
                    lo[i] = _mm256_cvtepi8_epi16(v);
                    hi[i] = _mm256_cvtepi8_epi16(
                        _mm_loadu_si128((const __m128i *)(rows[i] + off + 18)));
                } else {
                    lo[i] = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(v, m4)), eight);
                    hi[i] = _mm256_sub_epi16(
                        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4)), eight);
                }
            }
            tr_8x8_epi32(lo);
            tr_8x8_epi32(hi);
            int16_t *dst = pw + (size_t)b * 512 + h * 16;
            for (int k = 0; k < 8; k++) {
                _mm256_store_si256((__m256i *)(dst + k * 32), lo[k]);
                _mm256_store_si256((__m256i *)(dst + (k + 8) * 32), hi[k]);
            }
            uint16_t hs[8];
            for (int i = 0; i < 8; i++)
                memcpy(&hs[i], rows[i] + off, 2);
            _mm256_store_ps(psc + b * PW + h * 8,
                            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)hs)));
        }
    }
}

/* Microkernel, rt rows x 8*C columns over kbn blocks: per pair of k, C weight loads,
 * rt broadcasts of an x pair, rt*C (vpmaddwd + vpaddd); per block the canonical fma. */
AI void kq(const int rt, const int C, const int16_t *pw, const float *psc, int kbn,
           const int16_t *xq, size_t xqs, const float *xd, size_t nbs, float *out, size_t ldo,
           int64_t nc, bool first)
{
    const __m256i mk[2] = {lanes8(nc), lanes8(nc - 8)};
    __m256 f[RT_Q][2];
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            f[r][c] = first ? _mm256_setzero_ps()
                            : _mm256_maskload_ps(out + r * ldo + c * 8, mk[c]);
    for (int b = 0; b < kbn; b++) {
        __m256i a[RT_Q][2];
        for (int r = 0; r < rt; r++)
            for (int c = 0; c < C; c++)
                a[r][c] = _mm256_setzero_si256();
        const int16_t *wb = pw + (size_t)b * 512;
        const int16_t *xb = xq + b * 32;
        for (int kp = 0; kp < 16; kp++) {
            __m256i w[2];
            for (int c = 0; c < C; c++)
                w[c] = _mm256_load_si256((const __m256i *)(wb + kp * 32 + c * 16));
            for (int r = 0; r < rt; r++) {
                int32_t x2;
                memcpy(&x2, xb + r * xqs + kp * 2, 4);
                const __m256i xv = _mm256_set1_epi32(x2);
                for (int c = 0; c < C; c++)
                    a[r][c] = _mm256_add_epi32(a[r][c], _mm256_madd_epi16(w[c], xv));
            }
        }
        __m256 s[2];
        for (int c = 0; c < C; c++)
            s[c] = _mm256_load_ps(psc + b * PW + c * 8);
        for (int r = 0; r < rt; r++) {
            const __m256 dx = _mm256_set1_ps(xd[r * nbs + b]);
            for (int c = 0; c < C; c++)
                f[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[r][c]), _mm256_mul_ps(s[c], dx),
                                          f[r][c]);
        }
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            _mm256_maskstore_ps(out + r * ldo + c * 8, mk[c], f[r][c]);
}

static void q_tile(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                   int64_t nc, int64_t k0, int64_t kn)
{
    const int64_t nb = j->K / 32, kb0 = k0 / 32;
    const struct q_act a = q_layout(j->act, j->R, j->K);
    const int16_t *pw = panel;
    const float *psc = (const float *)(pw + KCB * 512);
    MM_LADDER(kq, RT_Q, rt, nc > 8 ? 2 : 1, pw, psc, (int)(kn / 32),
              a.q + (size_t)r0 * a.qs + kb0 * 32, a.qs, a.dx + r0 * nb + kb0, (size_t)nb,
              j->out + r0 * j->N + n0, (size_t)j->N, nc, k0 == 0);
}

static const struct mm_kind kind_q = {
    .act_bytes = q_act_bytes,
    .act_row = q_act_row,
    .rv = 0,
    .pw = PW,
    .rt = RT_Q,
    .kc = KCB * 32,
    .kc_small = KCB * 32,
    .panel_bytes = KCB * 1024 + KCB * PW * sizeof(float),
    .pack = q_pack,
    .tile = q_tile,
};

/* ------------------------------------------------------------------------------------- */
/* float weights                                                                           */

/* 8 weights of a row from element k as F32 (F32, F16 or BF16 storage); n < 8: a tail,
 * read through a small buffer so no byte past the row is touched. */
AI __m256 load_w8(enum eng_dtype dt, const uint8_t *row, int64_t k, int64_t n)
{
    const size_t es = dt == ENG_DTYPE_F32 ? 4 : 2;
    const uint8_t *p = row + (size_t)k * es;
    uint8_t tmp[32];
    if (n < 8) {
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, p, (size_t)(n > 0 ? n : 0) * es);
        p = tmp;
    }
    switch (dt) {
    case ENG_DTYPE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    case ENG_DTYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    default: return _mm256_loadu_ps((const float *)p);
    }
}

/* Row-wise kernel (decode): rows n .. n+J-1 against R rows of x; per 8 k, J converted
 * weight vectors and R*J FMAs into R*J accumulators; one horizontal sum per output. */
AI void gv(const int R, const int J, enum eng_dtype dt, const uint8_t *w, size_t ws,
           const float *x, int64_t K, float *out, int64_t N, int64_t n)
{
    __m256 acc[4][8];
    const uint8_t *wr[8];
    for (int jj = 0; jj < J; jj++)
        wr[jj] = w + (size_t)(n + jj) * ws;
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++)
            acc[r][jj] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        for (int jj = 0; jj < J; jj++) {
            const __m256 wv = load_w8(dt, wr[jj], k, 8);
            for (int r = 0; r < R; r++)
                acc[r][jj] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * K + k), acc[r][jj]);
        }
    }
    if (k < K) {
        const __m256i m = lanes8(K - k);
        for (int jj = 0; jj < J; jj++) {
            const __m256 wv = load_w8(dt, wr[jj], k, K - k);
            for (int r = 0; r < R; r++)
                acc[r][jj] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + r * K + k, m), acc[r][jj]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++)
            out[r * N + n + jj] = hsum8(acc[r][jj]);
}

#define GV_DT(RR, JJ, NN)                                                                   \
    do {                                                                                    \
        switch (j->dt) {                                                                    \
        case ENG_DTYPE_F16:                                                                 \
            gv(RR, JJ, ENG_DTYPE_F16, j->w, j->ws, j->x, K, j->out, N, NN);                 \
            break;                                                                          \
        case ENG_DTYPE_BF16:                                                                \
            gv(RR, JJ, ENG_DTYPE_BF16, j->w, j->ws, j->x, K, j->out, N, NN);                \
            break;                                                                          \
        default:                                                                            \
            gv(RR, JJ, ENG_DTYPE_F32, j->w, j->ws, j->x, K, j->out, N, NN);                 \
            break;                                                                          \
        }                                                                                   \
    } while (0)

static void f_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    (void)scratch;
    const int64_t K = j->K, N = j->N;
    int64_t n = lo;
#define GV(RR, JJ)                                                                          \
    do {                                                                                    \
        for (; n + (JJ) <= hi; n += (JJ))                                                   \
            GV_DT(RR, JJ, n);                                                               \
        for (; n < hi; n++)                                                                 \
            GV_DT(RR, 1, n);                                                                \
    } while (0)
    switch (j->R) {
    case 1: GV(1, 8); break;
    case 2: GV(2, 4); break;
    case 3: GV(3, 2); break;
    default: GV(4, 2); break;
    }
#undef GV
}

/* pw[k][16] = F32 weights of columns n0 .. n0+nc-1, k in [k0, k0 + kcn); zero beyond nc. */
static void f_pack(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                   int64_t kcn, int64_t n_end)
{
    (void)n_end;
    float *pw = panel;
    for (int h = 0; h * 8 < nc; h++) {
        for (int64_t kk = 0; kk < kcn; kk += 8) {
            __m256i r[8];
            for (int i = 0; i < 8; i++) {
                const int64_t n = n0 + h * 8 + i;
                r[i] = n < n0 + nc ? _mm256_castps_si256(load_w8(j->dt, j->w + (size_t)n * j->ws,
                                                                 k0 + kk, kcn - kk))
                                   : _mm256_setzero_si256();
            }
            tr_8x8_epi32(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_si256((__m256i *)(pw + (kk + i) * PW + h * 8), r[i]);
        }
    }
}

/* Microkernel, rt rows x 8*C columns over kcn k: C weight loads, rt broadcasts, rt*C
 * FMAs per k (rt = 6, C = 2: 12 accumulators). */
AI void kf(const int rt, const int C, const float *pw, int64_t kcn, const float *x, size_t ldx,
           float *out, size_t ldo, int64_t nc, bool first)
{
    const __m256i mk[2] = {lanes8(nc), lanes8(nc - 8)};
    __m256 f[RT_F][2];
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            f[r][c] = first ? _mm256_setzero_ps()
                            : _mm256_maskload_ps(out + r * ldo + c * 8, mk[c]);
    for (int64_t k = 0; k < kcn; k++) {
        __m256 w[2];
        for (int c = 0; c < C; c++)
            w[c] = _mm256_load_ps(pw + k * PW + c * 8);
        for (int r = 0; r < rt; r++) {
            const __m256 xv = _mm256_broadcast_ss(x + r * ldx + k);
            for (int c = 0; c < C; c++)
                f[r][c] = _mm256_fmadd_ps(w[c], xv, f[r][c]);
        }
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            _mm256_maskstore_ps(out + r * ldo + c * 8, mk[c], f[r][c]);
}

static void f_tile(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                   int64_t nc, int64_t k0, int64_t kn)
{
    const int64_t K = j->K, N = j->N;
    MM_LADDER(kf, RT_F, rt, nc > 8 ? 2 : 1, panel, kn, j->x + r0 * K + k0, (size_t)K,
              j->out + r0 * N + n0, (size_t)N, nc, k0 == 0);
}

/* F32, F16 and BF16 (converted exactly to F32) */
static const struct mm_kind kind_f = {
    .rv = RV_F,
    .gemv = f_gemv,
    .pw = PW,
    .rt = RT_F,
    .kc = KCF,
    .kc_small = KCF,
    .panel_bytes = KCF * PW * sizeof(float),
    .pack = f_pack,
    .tile = f_tile,
};
