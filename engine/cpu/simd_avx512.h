/* engine/cpu/simd_avx512.h: small AVX-512 helpers shared by the kernels of the avx512 level
 * (matmul, attention, element-wise): lane masks, transposes, horizontal sums, the
 * canonical int8 rounding, a vectorized exp, and the width-generic float vector (vf_*)
 * that the element-wise template (vec_tmpl.h) is written against.
 * Include only from files compiled with the avx512 level's -m flags (engine/cpu/meson.build);
 * a file includes one simd_*.h. Every helper is static inline: no symbols, no state. */
#ifndef ORTHOD_ENGINE_CPU_SIMD_AVX512_H
#define ORTHOD_ENGINE_CPU_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))

/* --- masks ------------------------------------------------------------------------------ */

/* lanes i < n set, n clamped to 0..16 */
AI __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* lanes i < n set, n clamped to 0..32 (16-bit elements) */
AI __mmask32 mask32(int64_t n)
{
    return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? (__mmask32)0 : (__mmask32)((1u << n) - 1);
}

/* --- transposes --------------------------------------------------------------------------- */

/* r[i] = 16 floats of row i; on return r[c] = column c (64 shuffles). */
AI void tr_16x16_ps(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {   // rows 4g .. 4g+3; u[4g+e] = element e of each lane
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int e = 0; e < 4; e++) {
        const __m512 alo = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);
        const __m512 ahi = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);
        const __m512 blo = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
        const __m512 bhi = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
        r[e] = _mm512_shuffle_f32x4(alo, blo, 0x88);
        r[8 + e] = _mm512_shuffle_f32x4(alo, blo, 0xdd);
        r[4 + e] = _mm512_shuffle_f32x4(ahi, bhi, 0x88);
        r[12 + e] = _mm512_shuffle_f32x4(ahi, bhi, 0xdd);
    }
}

/* z[i] = [row i | row i+8] (8 dwords each); out[k] = dword k of rows 0..15. */
AI void tr_8x16_epi32(const __m512i z[8], __m512i out[8])
{
    static const int64_t ia[8] = {0, 1, 8, 9, 4, 5, 12, 13}, ib[8] = {2, 3, 10, 11, 6, 7, 14, 15};
    const __m512i idxa = _mm512_loadu_si512(ia), idxb = _mm512_loadu_si512(ib);
    __m512i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {   // rows 0-3 (g 0) and 4-7 (g 1) of each half
        const __m512i *tg = t + 4 * g;
        u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]);   // dwords 0 | 4
        u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);   // 1 | 5
        u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);   // 2 | 6
        u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);   // 3 | 7
    }
    for (int k = 0; k < 4; k++) {
        out[k] = _mm512_permutex2var_epi64(u[k], idxa, u[k + 4]);
        out[k + 4] = _mm512_permutex2var_epi64(u[k], idxb, u[k + 4]);
    }
}

/* --- horizontal sums ------------------------------------------------------------------ */

/* a[i] = 16 partial sums of item i; returns lane i = the sum of a[i] (a transposing tree:
 * 30 shuffles and 15 adds for 16 horizontal sums). */
AI __m512 hsum16x16_ps(const __m512 a[16])
{
    __m512 t[8], u[4], v[2];
    for (int i = 0; i < 8; i++)   // per 128-bit lane: [a(2i) a(2i+1) a(2i) a(2i+1)]
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; i++)   // per 128-bit lane: items 4i .. 4i+3
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xee));
    for (int i = 0; i < 2; i++)   // lanes 0-1: items 8i .. 8i+3, lanes 2-3: 8i+4 .. 8i+7
        v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x88),
                         _mm512_shuffle_f32x4(v[0], v[1], 0xdd));
}

/* --- rounding ------------------------------------------------------------------------------ */

/* roundf (half away from zero) of v clamped to [-127, 127] as int32, NaN -> -127: the
 * canonical Q8 activation rounding (mm_impl.h), lane for lane equal to the scalar code. */
AI __m512i round_q16(__m512 v)
{
    v = _mm512_max_ps(v, _mm512_set1_ps(-127.0f));      // NaN -> -127, like the scalar code
    v = _mm512_min_ps(v, _mm512_set1_ps(127.0f));
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 fr = _mm512_sub_ps(v, t);                      // exact
    __mmask16 up = _mm512_cmp_ps_mask(fr, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __mmask16 dn = _mm512_cmp_ps_mask(fr, _mm512_set1_ps(-0.5f), _CMP_LE_OQ);
    t = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
    t = _mm512_mask_sub_ps(t, dn, t, _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(t);
}

/* --- exp ------------------------------------------------------------------------------------ */

/* exp(x) for 16 lanes: n = round(x log2 e), r = x - n ln2 (two-part), Cephes degree-5
 * polynomial (~1 ulp), scaled by 2^n with vscalefps. Inputs are clamped to [-87.3, 88.7]. */
AI __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72f)), _mm512_set1_ps(-87.33f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* --- the width-generic float vector for templates (vec_tmpl.h) ---------------------------- */

typedef __m512 vf_t;
#define VF_W 16
#define VF_LEVEL avx512

AI vf_t vf_zero(void) { return _mm512_setzero_ps(); }
AI vf_t vf_set1(float v) { return _mm512_set1_ps(v); }
AI vf_t vf_load(const float *p) { return _mm512_loadu_ps(p); }
AI void vf_store(float *p, vf_t v) { _mm512_storeu_ps(p, v); }
/* n < VF_W lanes: zeros beyond, nothing touched past p + n */
AI vf_t vf_load_n(const float *p, int64_t n) { return _mm512_maskz_loadu_ps(mask16(n), p); }
AI void vf_store_n(float *p, vf_t v, int64_t n) { _mm512_mask_storeu_ps(p, mask16(n), v); }
AI vf_t vf_keep_n(vf_t v, int64_t n) { return _mm512_maskz_mov_ps(mask16(n), v); }  /* lanes >= n: 0 */
AI vf_t vf_add(vf_t a, vf_t b) { return _mm512_add_ps(a, b); }
AI vf_t vf_sub(vf_t a, vf_t b) { return _mm512_sub_ps(a, b); }
AI vf_t vf_mul(vf_t a, vf_t b) { return _mm512_mul_ps(a, b); }
AI vf_t vf_div(vf_t a, vf_t b) { return _mm512_div_ps(a, b); }
AI vf_t vf_exp(vf_t x) { return exp16(x); }
AI float vf_hsum(vf_t v) { return _mm512_reduce_add_ps(v); }
AI float vf_first(vf_t v) { return _mm512_cvtss_f32(v); }

/* sum of squares in double lanes (two accumulators, each VF_W/2 doubles) */
typedef __m512d vd_t;
AI vd_t vd_zero(void) { return _mm512_setzero_pd(); }
AI void vd_sumsq(vf_t v, vd_t *a0, vd_t *a1)
{
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi =
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    *a0 = _mm512_fmadd_pd(lo, lo, *a0);
    *a1 = _mm512_fmadd_pd(hi, hi, *a1);
}
AI double vd_hsum(vd_t a0, vd_t a1) { return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1)); }

/* VF_W floats -> IEEE half, round to nearest even */
AI void vf_store_f16(uint16_t *p, vf_t v)
{
    _mm256_storeu_si256((__m256i *)p,
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
AI vf_t vf_load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

#endif
