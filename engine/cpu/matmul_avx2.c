/* engine/cpu/matmul_avx2.c: the AVX2 + FMA + F16C level of the matmul module, for CPUs
 * without AVX-512. Compiled only into orthod_cpu_avx2 with those -m flags and called
 * only after features.c found them (eng_cpu_mm_new checks).
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

#include <immintrin.h>
#include <stdlib.h>

#define AI static inline __attribute__((always_inline))

#define PW 16           /* output columns per panel (two ymm) */
#define KCB 16          /* K chunk of a quantized panel, in blocks (16 KiB) */
#define KCF 256         /* K chunk of a float panel, in elements (16 KiB) */
#define RT_Q 2          /* rows per quantized tile: 4 int + 4 float accumulators */
#define RT_F 6          /* rows per float tile: 12 accumulators of 16 ymm */
#define RV_F 4          /* R up to which float weights use the row-wise kernel */

static const uint8_t zero_rows[KCB * sizeof(eng_block_q8_0) + 64];

static int64_t imin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t round_up(int64_t v, int64_t m)
{
    return (v + m - 1) / m * m;
}

/* lanes i < n set (n clamped to 0..8), for maskload/maskstore */
static __m256i lane_mask(int64_t n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AI float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8x8 transpose of dwords: r[i] row i -> r[k] = element k of rows 0..7. */
AI void transpose_8x8(__m256i r[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        const __m256i *tg = t + 4 * g;
        u[4 * g + 0] = _mm256_unpacklo_epi64(tg[0], tg[2]);
        u[4 * g + 1] = _mm256_unpackhi_epi64(tg[0], tg[2]);
        u[4 * g + 2] = _mm256_unpacklo_epi64(tg[1], tg[3]);
        u[4 * g + 3] = _mm256_unpackhi_epi64(tg[1], tg[3]);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x31);
    }
}

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
    a.qs = (size_t)round_up(K, 32);
    a.dx = act;
    a.q = (int16_t *)(a.dx + (size_t)R * (size_t)(K / 32));
    return a;
}

AI __m256i round_q(__m256 v)
{
    v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f));    // NaN -> -127, like the scalar code
    v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 fr = _mm256_sub_ps(v, t);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 up = _mm256_and_ps(_mm256_cmp_ps(fr, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
    __m256 dn = _mm256_and_ps(_mm256_cmp_ps(fr, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one);
    t = _mm256_sub_ps(_mm256_add_ps(t, up), dn);
    return _mm256_cvttps_epi32(t);
}

static void quant_row(const float *x, int64_t K, int16_t *q, float *dx)
{
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256 v[4];
        __m256i a = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + b * 32 + i * 8);
            a = _mm256_max_epu32(a, _mm256_and_si256(_mm256_castps_si256(v[i]), absm));
        }
        __m128i m = _mm_max_epu32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
        const float d = eng_fp32_from_bits((uint32_t)_mm_cvtsi128_si32(m)) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int i = 0; i < 2; i++) {
            __m256i q0 = round_q(_mm256_mul_ps(v[2 * i], id));
            __m256i q1 = round_q(_mm256_mul_ps(v[2 * i + 1], id));
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8);
            _mm256_storeu_si256((__m256i *)(q + b * 32 + i * 16), p);
        }
        dx[b] = eng_fp16_to_fp32(eng_fp32_to_fp16(d));
    }
}

/* Packs blocks [kb0, kb0 + kbn) of columns n0 .. n0 + nc - 1 (nc <= 16) as int16 pairs:
 * pw [b][kp 0..15][16][2], psc [b][16]; columns >= nc get zero weights and scales. */
static void pack_q(const struct mm_job *j, int64_t n0, int64_t nc, int64_t kb0, int kbn,
                   int16_t *pw, float *psc, int64_t n_end)
{
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
            transpose_8x8(lo);
            transpose_8x8(hi);
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
    const __m256i mk[2] = {lane_mask(nc), lane_mask(nc - 8)};
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

static void run_q(const struct mm_job *j, int ith, int nth)
{
    const int64_t R = j->R, N = j->N, K = j->K, nb = K / 32;
    const struct q_act a = q_layout(j->act, R, K);
    int64_t lo, hi;
    eng_tp_range(R, 1, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        quant_row(j->x + r * K, K, a.q + (size_t)r * a.qs, a.dx + r * nb);
    eng_tp_barrier(j->tp);

    int16_t *pw = (int16_t *)(j->pack + (size_t)ith * j->pack_bytes);
    float *psc = (float *)(pw + KCB * 512);
    eng_tp_range(N, 16, ith, nth, &lo, &hi);
    for (int64_t n0 = lo; n0 < hi; n0 += PW) {
        const int64_t nc = imin(PW, hi - n0);
        const bool two = nc > 8;
        for (int64_t kb0 = 0; kb0 < nb; kb0 += KCB) {
            const int kbn = (int)imin(KCB, nb - kb0);
            pack_q(j, n0, nc, kb0, kbn, pw, psc, hi);
            for (int64_t r0 = 0; r0 < R; r0 += RT_Q) {
                const int16_t *xq = a.q + (size_t)r0 * a.qs + kb0 * 32;
                const float *xd = a.dx + r0 * nb + kb0;
                float *out = j->out + r0 * N + n0;
                const bool first = kb0 == 0;
                const size_t nbs = (size_t)nb, ldo = (size_t)N;
                if (R - r0 >= 2)
                    two ? kq(2, 2, pw, psc, kbn, xq, a.qs, xd, nbs, out, ldo, nc, first)
                        : kq(2, 1, pw, psc, kbn, xq, a.qs, xd, nbs, out, ldo, nc, first);
                else
                    two ? kq(1, 2, pw, psc, kbn, xq, a.qs, xd, nbs, out, ldo, nc, first)
                        : kq(1, 1, pw, psc, kbn, xq, a.qs, xd, nbs, out, ldo, nc, first);
            }
        }
    }
}

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
        const __m256i m = lane_mask(K - k);
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

static void gemv_f(const struct mm_job *j, int64_t lo, int64_t hi)
{
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
static void pack_f(const struct mm_job *j, int64_t n0, int64_t nc, int64_t k0, int64_t kcn,
                   float *pw)
{
    for (int h = 0; h * 8 < nc; h++) {
        for (int64_t kk = 0; kk < kcn; kk += 8) {
            __m256i r[8];
            for (int i = 0; i < 8; i++) {
                const int64_t n = n0 + h * 8 + i;
                r[i] = n < n0 + nc ? _mm256_castps_si256(load_w8(j->dt, j->w + (size_t)n * j->ws,
                                                                 k0 + kk, kcn - kk))
                                   : _mm256_setzero_si256();
            }
            transpose_8x8(r);
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
    const __m256i mk[2] = {lane_mask(nc), lane_mask(nc - 8)};
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

#define KF_ARGS pw, kcn, x, ldx, out, ldo, nc, first
static void kf_any(int rt, const float *pw, int64_t kcn, const float *x, size_t ldx, float *out,
                   size_t ldo, int64_t nc, bool first)
{
    if (nc > 8) {
        switch (rt) {
        case 1: kf(1, 2, KF_ARGS); break;
        case 2: kf(2, 2, KF_ARGS); break;
        case 3: kf(3, 2, KF_ARGS); break;
        case 4: kf(4, 2, KF_ARGS); break;
        case 5: kf(5, 2, KF_ARGS); break;
        default: kf(6, 2, KF_ARGS); break;
        }
    } else {
        switch (rt) {
        case 1: kf(1, 1, KF_ARGS); break;
        case 2: kf(2, 1, KF_ARGS); break;
        case 3: kf(3, 1, KF_ARGS); break;
        case 4: kf(4, 1, KF_ARGS); break;
        case 5: kf(5, 1, KF_ARGS); break;
        default: kf(6, 1, KF_ARGS); break;
        }
    }
}

static void run_f(const struct mm_job *j, int ith, int nth)
{
    const int64_t R = j->R, N = j->N, K = j->K;
    int64_t lo, hi;
    eng_tp_range(N, 16, ith, nth, &lo, &hi);
    if (R <= RV_F) {
        gemv_f(j, lo, hi);
        return;
    }
    float *pw = (float *)(j->pack + (size_t)ith * j->pack_bytes);
    for (int64_t n0 = lo; n0 < hi; n0 += PW) {
        const int64_t nc = imin(PW, hi - n0);
        for (int64_t k0 = 0; k0 < K; k0 += KCF) {
            const int64_t kcn = imin(KCF, K - k0);
            pack_f(j, n0, nc, k0, kcn, pw);
            for (int64_t r0 = 0; r0 < R; r0 += RT_F)
                kf_any((int)imin(RT_F, R - r0), pw, kcn, j->x + r0 * K + k0, (size_t)K,
                       j->out + r0 * N + n0, (size_t)N, nc, k0 == 0);
        }
    }
}

/* ------------------------------------------------------------------------------------- */

static size_t act_bytes(enum eng_dtype dt, int64_t R, int64_t K)
{
    size_t b;
    if (dt != ENG_DTYPE_Q8_0 && dt != ENG_DTYPE_Q4_0)
        return 0;
    if (__builtin_mul_overflow((size_t)R, (size_t)round_up(K, 32) * 2 + (size_t)K / 32 * 4, &b))
        return SIZE_MAX;
    return b;
}

static size_t pack_bytes(enum eng_dtype dt, int64_t R, int64_t K)
{
    (void)K;
    if (dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0)
        return KCB * 1024 + KCB * PW * sizeof(float);
    return R <= RV_F ? 0 : KCF * PW * sizeof(float);
}

static void worker(void *arg, int ith, int nth)
{
    const struct mm_job *j = arg;
    if (j->dt == ENG_DTYPE_Q8_0 || j->dt == ENG_DTYPE_Q4_0)
        run_q(j, ith, nth);
    else
        run_f(j, ith, nth);
}

static const struct mm_level_ops avx2_ops = {
    .name = "avx2",
    .act_bytes = act_bytes,
    .pack_bytes = pack_bytes,
    .worker = worker,
};

const struct mm_level_ops *eng_cpu_mm_ops_avx2(void)
{
    return &avx2_ops;
}
