/* engine/cpu/simd_avx2.h: small AVX2 + FMA + F16C helpers shared by the kernels of the avx2
 * level (matmul, attention, element-wise): lane masks, transposes, horizontal sums, the
 * canonical int8 rounding, a vectorized exp, and the width-generic float vector (vf_*)
 * that the element-wise template (vec_tmpl.h) is written against.
 * Include only from files compiled with the avx2 level's -m flags (engine/cpu/meson.build);
 * a file includes one simd_*.h. Every helper is static inline: no symbols, no state. */
#ifndef ORTHOD_ENGINE_CPU_SIMD_AVX2_H
#define ORTHOD_ENGINE_CPU_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))

/* --- masks ------------------------------------------------------------------------------ */

/* lanes i < n set (n clamped to 0..8), for maskload/maskstore */
AI __m256i lanes8(int64_t n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* --- horizontal sums -------------------------------------------------------------------- */

AI float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* --- transposes --------------------------------------------------------------------------- */

/* 8x8 transpose of dwords: r[i] row i -> r[k] = element k of rows 0..7. */
AI void tr_8x8_epi32(__m256i r[8])
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

/* --- rounding ------------------------------------------------------------------------------ */

/* roundf (half away from zero) of v clamped to [-127, 127] as int32, NaN -> -127: the
 * canonical Q8 activation rounding (mm_impl.h), lane for lane equal to the scalar code. */
AI __m256i round_q8(__m256 v)
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

/* --- exp ------------------------------------------------------------------------------------ */

/* exp(x) for 8 lanes: as exp16 in simd_avx512.h, 2^n built in the exponent bits. */
AI __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.33f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // n in [-126, 127]: 2^n = (n + 127) << 23
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* --- the width-generic float vector for templates (vec_tmpl.h) ---------------------------- */

typedef __m256 vf_t;
#define VF_W 8
#define VF_LEVEL avx2

AI vf_t vf_zero(void) { return _mm256_setzero_ps(); }
AI vf_t vf_set1(float v) { return _mm256_set1_ps(v); }
AI vf_t vf_load(const float *p) { return _mm256_loadu_ps(p); }
AI void vf_store(float *p, vf_t v) { _mm256_storeu_ps(p, v); }
/* n < VF_W lanes: zeros beyond, nothing touched past p + n */
AI vf_t vf_load_n(const float *p, int64_t n) { return _mm256_maskload_ps(p, lanes8(n)); }
AI void vf_store_n(float *p, vf_t v, int64_t n) { _mm256_maskstore_ps(p, lanes8(n), v); }
AI vf_t vf_keep_n(vf_t v, int64_t n) { return _mm256_and_ps(v, _mm256_castsi256_ps(lanes8(n))); }  /* lanes >= n: 0 */
AI vf_t vf_add(vf_t a, vf_t b) { return _mm256_add_ps(a, b); }
AI vf_t vf_sub(vf_t a, vf_t b) { return _mm256_sub_ps(a, b); }
AI vf_t vf_mul(vf_t a, vf_t b) { return _mm256_mul_ps(a, b); }
AI vf_t vf_div(vf_t a, vf_t b) { return _mm256_div_ps(a, b); }
AI vf_t vf_exp(vf_t x) { return exp8(x); }
AI float vf_hsum(vf_t v) { return hsum8(v); }
AI float vf_first(vf_t v) { return _mm256_cvtss_f32(v); }

/* sum of squares in double lanes (two accumulators, each VF_W/2 doubles) */
typedef __m256d vd_t;
AI vd_t vd_zero(void) { return _mm256_setzero_pd(); }
AI void vd_sumsq(vf_t v, vd_t *a0, vd_t *a1)
{
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    *a0 = _mm256_fmadd_pd(lo, lo, *a0);
    *a1 = _mm256_fmadd_pd(hi, hi, *a1);
}
AI double vd_hsum(vd_t a0, vd_t a1)
{
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    return t[0] + t[1] + t[2] + t[3];
}

/* VF_W floats -> IEEE half, round to nearest even */
AI void vf_store_f16(uint16_t *p, vf_t v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
AI vf_t vf_load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

#endif
