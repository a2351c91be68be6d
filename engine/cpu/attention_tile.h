/* engine/cpu/attention_tile.h: the blocked attention kernel, written once in plain C and
 * compiled per ISA level (attention.c: baseline; attention_avx2.c; attention_avx512.c,
 * each with its own -m flags and FP contraction on, so the loops below become FMAs of
 * that width). Not a header to include elsewhere: the includer defines ATT_WORKER.
 *
 * One tile = up to ATT_QT query rows (token, head) of one sequence sharing one KV head.
 * Keys are visited in chunks of ATT_KB positions through the block table; each chunk's
 * K rows are converted to F32 once and stored transposed (kt[d][key]), V rows as they
 * are (vf[key][d]), so that for every query row
 *   scores: s[key] += q[d] * kt[d][key]     (16 keys wide: one vector, no horizontal sums)
 *   values: o[d]   += p[key] * vf[key][d]   (head size wide)
 * with an online softmax (running max m and sum l per row) between the two. */
#ifndef ATT_WORKER
#error "define ATT_WORKER before including attention_tile.h"
#endif

#include <math.h>
#include <string.h>

#if defined(__AVX512F__)
#include "simd_avx512.h"
#elif defined(__AVX2__)
#include "simd_avx2.h"
#endif

/* e^x for x <= 0 (relative error ~2e-7, x < -87 gives ~1e-38): Cody-Waite reduction to
 * |r| <= ln2/2 and a degree-7 Taylor polynomial; branch-free so loops vectorize. */
static inline float att_exp(float x)
{
    x = x > -87.0f ? x : -87.0f;
    const float t = x * 1.44269504088896341f;
    const int32_t n = (int32_t)(t + 128.5f) - 128;     // round(t), t + 128.5 > 0
    const float fn = (float)n;
    float r = x - fn * 0.693145751953125f;
    r = r - fn * 1.42860682030941723e-6f;
    float p = 1.98412698e-4f;
    p = p * r + 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, 4);
    return p * two_n;
}

/* n elements of a cache row (F16 or F32) to F32. */
static inline void att_cvt_row(enum eng_dtype dt, const uint8_t *src, float *dst, int32_t n)
{
    if (dt == ENG_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int32_t d = 0;
#if defined(__AVX512F__)
    for (; d + 16 <= n; d += 16)
        _mm512_storeu_ps(dst + d,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * d))));
#endif
#if defined(__F16C__)
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(dst + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * d))));
#endif
    for (; d < n; d++) {
        uint16_t h;
        memcpy(&h, src + 2 * d, 2);
        dst[d] = eng_fp16_to_fp32(h);
    }
}

/* max and sum of 16 values as fixed pairwise trees (vectorizable, unlike a running
 * reduction the compiler may not reassociate) */
static inline float att_max16(const float *v)
{
    float a[8], b[4];
    for (int e = 0; e < 8; e++)
        a[e] = v[e] > v[e + 8] ? v[e] : v[e + 8];
    for (int e = 0; e < 4; e++)
        b[e] = a[e] > a[e + 4] ? a[e] : a[e + 4];
    const float c0 = b[0] > b[2] ? b[0] : b[2], c1 = b[1] > b[3] ? b[1] : b[3];
    return c0 > c1 ? c0 : c1;
}

static inline float att_sum16(const float *v)
{
    float a[8], b[4];
    for (int e = 0; e < 8; e++)
        a[e] = v[e] + v[e + 8];
    for (int e = 0; e < 4; e++)
        b[e] = a[e] + a[e + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* K rows of one chunk -> kt[d][key] (F32). The AVX-512 build converts 16 keys x 16 d at a
 * time and transposes in registers; otherwise each row is converted and scattered. */
static inline void att_load_kt(const struct att_job *j, const int64_t *slots, int32_t nk,
                               size_t koff, float *kt, float *tmp)
{
    const int32_t hs = j->hs;
    const enum eng_dtype dt = j->kc->dtype;
    const uint8_t *base = (const uint8_t *)j->kc->data + koff;
    const size_t rs = j->kc->nb[1];
#if defined(__AVX512F__)
    if (nk == ATT_KB && hs % 16 == 0) {
        for (int32_t d0 = 0; d0 < hs; d0 += 16) {
            __m512 r[16];
            for (int jj = 0; jj < 16; jj++) {
                const uint8_t *src = base + (size_t)slots[jj] * rs;
                const uint8_t *p = src + (size_t)d0 * (dt == ENG_DTYPE_F32 ? 4 : 2);
                r[jj] = dt == ENG_DTYPE_F32
                            ? _mm512_loadu_ps(p)
                            : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
            }
            tr_16x16_ps(r);
            for (int e = 0; e < 16; e++)
                _mm512_store_ps(kt + (size_t)(d0 + e) * ATT_KB, r[e]);
        }
        return;
    }
#endif
    for (int32_t jj = 0; jj < nk; jj++) {
        att_cvt_row(dt, base + (size_t)slots[jj] * rs, tmp, hs);
        for (int32_t d = 0; d < hs; d++)
            kt[(size_t)d * ATT_KB + jj] = tmp[d];
    }
    if (nk < ATT_KB)   // keys past the last one: finite zeros (masked later)
        for (int32_t d = 0; d < hs; d++)
            for (int32_t jj = nk; jj < ATT_KB; jj++)
                kt[(size_t)d * ATT_KB + jj] = 0.0f;
}

/* Scores of ATT_RB query rows against the chunk: s[r][key] = sum_d q_r[d] kt[d][key];
 * each kt row is loaded once for all rows. AVX-512: 8 rows, eight zmm accumulator
 * chains (hide the 4-cycle FMA latency), q broadcast from memory. Otherwise 4 rows of
 * plain C the compiler vectorizes. */
#if defined(__AVX512F__)
#define ATT_RB 8
static inline void att_scores_rb(const float *const *q, const float *kt, int32_t hs, float *s)
{
    __m512 a[8];
    for (int r = 0; r < 8; r++)
        a[r] = _mm512_setzero_ps();
    for (int32_t d = 0; d < hs; d++) {
        const __m512 k = _mm512_load_ps(kt + (size_t)d * ATT_KB);
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), k, a[r]);
    }
    for (int r = 0; r < 8; r++)
        _mm512_storeu_ps(s + r * ATT_KB, a[r]);
}
#else
#define ATT_RB 4
static inline void att_scores_rb(const float *const *q, const float *kt, int32_t hs, float *s)
{
    float a0[ATT_KB] = {0}, a1[ATT_KB] = {0}, a2[ATT_KB] = {0}, a3[ATT_KB] = {0};
    for (int32_t d = 0; d < hs; d++) {
        const float *k = kt + (size_t)d * ATT_KB;
        const float q0 = q[0][d], q1 = q[1][d], q2 = q[2][d], q3 = q[3][d];
        for (int jj = 0; jj < ATT_KB; jj++) {
            a0[jj] += q0 * k[jj];
            a1[jj] += q1 * k[jj];
            a2[jj] += q2 * k[jj];
            a3[jj] += q3 * k[jj];
        }
    }
    for (int jj = 0; jj < ATT_KB; jj++) {
        s[jj] = a0[jj];
        s[ATT_KB + jj] = a1[jj];
        s[2 * ATT_KB + jj] = a2[jj];
        s[3 * ATT_KB + jj] = a3[jj];
    }
}
#endif

static inline void att_scores1(const float *q, const float *kt, int32_t hs, float s[ATT_KB])
{
    float a[ATT_KB] = {0};
    for (int32_t d = 0; d < hs; d++) {
        const float *k = kt + (size_t)d * ATT_KB;
        const float qd = q[d];
        for (int jj = 0; jj < ATT_KB; jj++)
            a[jj] += qd * k[jj];
    }
    for (int jj = 0; jj < ATT_KB; jj++)
        s[jj] = a[jj];
}

/* o_r[d] = o_r[d] * c_r + sum_{key < nk} p_r[key] vf[key][d] for ATT_RB rows r: per 16 d,
 * ATT_RB independent accumulator chains share each V load. */
#if defined(__AVX512F__)
static inline void att_pv_rb(float *const *o, const float *c, const float *p, const float *vf,
                             int32_t nk, int32_t hs)
{
    for (int32_t d0 = 0; d0 < hs; d0 += 16) {
        const __mmask16 m = mask16(hs - d0);
        __m512 a[8];
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, o[r] + d0), _mm512_set1_ps(c[r]));
        for (int32_t jj = 0; jj < nk; jj++) {
            const __m512 v = _mm512_maskz_loadu_ps(m, vf + (size_t)jj * hs + d0);
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r * ATT_KB + jj]), v, a[r]);
        }
        for (int r = 0; r < 8; r++)
            _mm512_mask_storeu_ps(o[r] + d0, m, a[r]);
    }
}
#else
static inline void att_pv_rb(float *const *o, const float *c, const float *p, const float *vf,
                             int32_t nk, int32_t hs)
{
    int32_t d0 = 0;
    for (; d0 + 16 <= hs; d0 += 16) {
        float a0[16], a1[16], a2[16], a3[16];
        for (int e = 0; e < 16; e++) {
            a0[e] = o[0][d0 + e] * c[0];
            a1[e] = o[1][d0 + e] * c[1];
            a2[e] = o[2][d0 + e] * c[2];
            a3[e] = o[3][d0 + e] * c[3];
        }
        for (int32_t jj = 0; jj < nk; jj++) {
            const float p0 = p[jj], p1 = p[ATT_KB + jj], p2 = p[2 * ATT_KB + jj],
                        p3 = p[3 * ATT_KB + jj];
            const float *v = vf + (size_t)jj * hs + d0;
            for (int e = 0; e < 16; e++) {
                a0[e] += p0 * v[e];
                a1[e] += p1 * v[e];
                a2[e] += p2 * v[e];
                a3[e] += p3 * v[e];
            }
        }
        for (int e = 0; e < 16; e++) {
            o[0][d0 + e] = a0[e];
            o[1][d0 + e] = a1[e];
            o[2][d0 + e] = a2[e];
            o[3][d0 + e] = a3[e];
        }
    }
    for (; d0 < hs; d0++) {
        for (int r = 0; r < 4; r++) {
            float a = o[r][d0] * c[r];
            for (int32_t jj = 0; jj < nk; jj++)
                a += p[r * ATT_KB + jj] * vf[(size_t)jj * hs + d0];
            o[r][d0] = a;
        }
    }
}
#endif

/* the same for one row, all d chunks at once (independent chains across chunks) */
static inline void att_pv1(float *o, float c, const float *p, const float *vf, int32_t nk,
                           int32_t hs)
{
    for (int32_t d = 0; d < hs; d++)
        o[d] *= c;
    for (int32_t jj = 0; jj < nk; jj++) {
        const float pj = p[jj];
        const float *v = vf + (size_t)jj * hs;
        for (int32_t d = 0; d < hs; d++)
            o[d] += pj * v[d];
    }
}

/* slots[i] = cache slot of position p0 + i, i < n: one division per call (a division
 * per key cost as much as the rest of a decode chunk). */
static inline void att_slots(const int32_t *bt, int32_t bs, int32_t p0, int32_t n,
                             int64_t *slots)
{
    int32_t b = p0 / bs, o = p0 % bs;
    for (int32_t i = 0; i < n; i++) {
        slots[i] = (int64_t)bt[b] * bs + o;
        if (++o == bs) {
            o = 0;
            b++;
        }
    }
}

/* Prefetches the K and V rows (this tile's head) of keys [p0, p1): the cache rows of
 * consecutive keys are a row stride apart and one key needs only its head's part, so
 * without this each chunk waits for DRAM latency once per row. */
static inline void att_prefetch(const struct att_job *j, const int32_t *bt, int32_t p0,
                                int32_t p1, size_t koff, size_t voff, size_t row_bytes)
{
    const char *kb = (const char *)j->kc->data + koff, *vb = (const char *)j->vc->data + voff;
    for (int32_t q0 = p0; q0 < p1; q0 += ATT_KB) {
        const int32_t n = p1 - q0 < ATT_KB ? p1 - q0 : ATT_KB;
        int64_t slots[ATT_KB];
        att_slots(bt, j->bs, q0, n, slots);
        for (int32_t i = 0; i < n; i++)
            for (size_t c = 0; c < row_bytes; c += 64) {
                __builtin_prefetch(kb + (size_t)slots[i] * j->kc->nb[1] + c);
                __builtin_prefetch(vb + (size_t)slots[i] * j->vc->nb[1] + c);
            }
    }
}

#if defined(__AVX512F__)
/* One query row (decode without GQA) against keys [pb, pe), all visible, F16 cache, hs a
 * multiple of 16 (<= 256): no F32 copy of the keys and values. Per chunk of 16 keys each
 * K row is converted and dotted with q in registers and one transposing tree gives the 16
 * scores; then the online softmax and, per key, o += p * v with the V row converted on
 * the fly. (m, l, o) carry the running state in and out. */
static void att_row_f16(const struct att_job *j, const int32_t *bt, const float *q,
                        int32_t pb, int32_t pe, size_t koff, size_t voff, float *m_io,
                        float *l_io, float *o)
{
    const int32_t nv = j->hs / 16, bs = j->bs;
    const uint8_t *kb = (const uint8_t *)j->kc->data + koff, *vb = (const uint8_t *)j->vc->data + voff;
    const size_t ks = j->kc->nb[1], vs = j->vc->nb[1], row_bytes = (size_t)j->hs * 2;
    __m512 qv[16], ov[16];
    for (int32_t v = 0; v < nv; v++) {
        qv[v] = _mm512_loadu_ps(q + 16 * v);
        ov[v] = _mm512_loadu_ps(o + 16 * v);
    }
    float m = *m_io, l = *l_io;
    int32_t pf = pb + ATT_PF * ATT_KB < pe ? pb + ATT_PF * ATT_KB : pe;
    att_prefetch(j, bt, pb, pf, koff, voff, row_bytes);
    for (int32_t p0 = pb; p0 < pe; p0 += ATT_KB) {
        const int32_t nk = pe - p0 < ATT_KB ? pe - p0 : ATT_KB;
        if (pf < pe) {
            const int32_t pf1 = pf + ATT_KB < pe ? pf + ATT_KB : pe;
            att_prefetch(j, bt, pf, pf1, koff, voff, row_bytes);
            pf = pf1;
        }
        const uint8_t *vr[ATT_KB];
        __m512 acc[ATT_KB];
        int64_t slots[ATT_KB];
        att_slots(bt, bs, p0, nk, slots);
        for (int32_t jj = 0; jj < ATT_KB; jj++) {
            if (jj >= nk) {
                acc[jj] = _mm512_setzero_ps();
                continue;
            }
            const size_t slot = (size_t)slots[jj];
            const uint8_t *kr = kb + slot * ks;
            vr[jj] = vb + slot * vs;
            __m512 a = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)kr)), qv[0]);
            for (int32_t v = 1; v < nv; v++)
                a = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kr + 32 * v))), qv[v], a);
            acc[jj] = a;
        }
        const __mmask16 live = mask16(nk);
        const __m512 sc = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), live,
                                             _mm512_mul_ps(hsum16x16_ps(acc),
                                                           _mm512_set1_ps(j->scale)));
        const float mb = _mm512_reduce_max_ps(sc), mn = mb > m ? mb : m;
        const float c = att_exp(m - mn);
        const __m512 pv = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(sc, _mm512_set1_ps(mn))));
        l = l * c + _mm512_reduce_add_ps(pv);
        m = mn;
        float pbuf[ATT_KB];
        _mm512_storeu_ps(pbuf, pv);
        const __m512 cv = _mm512_set1_ps(c);
        for (int32_t v = 0; v < nv; v++)
            ov[v] = _mm512_mul_ps(ov[v], cv);
        for (int32_t jj = 0; jj < nk; jj++) {
            const __m512 pj = _mm512_set1_ps(pbuf[jj]);
            for (int32_t v = 0; v < nv; v++)
                ov[v] = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vr[jj] + 32 * v))), pj,
                    ov[v]);
        }
    }
    for (int32_t v = 0; v < nv; v++)
        _mm512_storeu_ps(o + 16 * v, ov[v]);
    *m_io = m;
    *l_io = l;
}
#endif

/* Token range of tile `tile` of sequence s: order[*first .. *first + *na). */
static inline void att_tile_tokens(const struct att_job *j, int32_t s, int64_t tile,
                                   int32_t *first, int32_t *na)
{
    *first = j->seq_start[s] + (int32_t)(tile * j->tt);
    *na = j->seq_start[s + 1] - *first < j->tt ? j->seq_start[s + 1] - *first : j->tt;
}

/* Key range `split` of nsplit of the tile (all keys when nsplit = 1); the result goes to
 * `out` normalized, or as a softmax state to j->part slot `item` when split. */
static void att_tile(const struct att_job *j, float *sc, int32_t s, int64_t tile, int32_t g,
                     int32_t split, int64_t item)
{
    const struct eng_step *st = j->st;
    const int32_t hs = j->hs, group = j->group, bs = j->bs;
    float *kt = sc;                                   // [hs][KB]
    float *vf = kt + (size_t)hs * ATT_KB;             // [KB][hs]
    float *S = vf + (size_t)ATT_KB * hs;              // [QT][KB]
    float *O = S + ATT_QT * ATT_KB;                   // [QT][hs]
    float *M = O + (size_t)ATT_QT * hs, *L = M + ATT_QT;
    float *tmp = L + ATT_QT;                          // [hs]

    int32_t first, na;
    att_tile_tokens(j, s, tile, &first, &na);
    const int32_t nr = na * group;
    const float *qr[ATT_QT];
    int32_t pr[ATT_QT], maxpos = 0;
    for (int32_t a = 0; a < na; a++) {
        const int32_t t = j->order[first + a];
        for (int32_t e = 0; e < group; e++) {
            const int32_t i = a * group + e;
            qr[i] = j->q + ((int64_t)t * j->n_heads + (int64_t)g * group + e) * hs;
            pr[i] = st->pos[t];
        }
        maxpos = st->pos[t] > maxpos ? st->pos[t] : maxpos;
    }
    for (int32_t i = 0; i < nr; i++) {
        M[i] = -INFINITY;
        L[i] = 0.0f;
    }
    memset(O, 0, (size_t)nr * hs * sizeof(float));

    const int32_t *bt = st->block_table + (int64_t)s * st->max_blocks;
    const enum eng_dtype kdt = j->kc->dtype, vdt = j->vc->dtype;
    const size_t koff = (size_t)g * hs * (kdt == ENG_DTYPE_F32 ? 4 : 2);
    const size_t voff = (size_t)g * hs * (vdt == ENG_DTYPE_F32 ? 4 : 2);
    const int32_t n_chunks = maxpos / ATT_KB + 1;
    const int32_t c0 = (int32_t)((int64_t)split * n_chunks / j->nsplit);
    const int32_t c1 = (int32_t)((int64_t)(split + 1) * n_chunks / j->nsplit);
    // keys [c0 KB, p_end), prefetched ATT_PF chunks ahead
    int32_t p_end = c1 * ATT_KB < maxpos + 1 ? c1 * ATT_KB : maxpos + 1;
    const size_t row_bytes = (size_t)hs * (kdt == ENG_DTYPE_F32 ? 4 : 2);
    int32_t pf = c0 * ATT_KB + ATT_PF * ATT_KB < p_end ? c0 * ATT_KB + ATT_PF * ATT_KB : p_end;
#if defined(__AVX512F__)
    if (nr == 1 && kdt == ENG_DTYPE_F16 && vdt == ENG_DTYPE_F16 && hs % 16 == 0 && hs <= 256) {
        att_row_f16(j, bt, qr[0], c0 * ATT_KB, p_end, koff, voff, &M[0], &L[0], O);
        pf = p_end = c0 * ATT_KB;   // (the loop below has nothing left to do)
    }
#endif
    if (pf > c0 * ATT_KB)
        att_prefetch(j, bt, c0 * ATT_KB, pf, koff, voff, row_bytes);
    for (int32_t p0 = c0 * ATT_KB; p0 < p_end; p0 += ATT_KB) {
        const int32_t nk = maxpos + 1 - p0 < ATT_KB ? maxpos + 1 - p0 : ATT_KB;
        if (pf < p_end) {
            const int32_t pf1 = pf + ATT_KB < p_end ? pf + ATT_KB : p_end;
            att_prefetch(j, bt, pf, pf1, koff, voff, row_bytes);
            pf = pf1;
        }
        int64_t slots[ATT_KB];
        att_slots(bt, bs, p0, nk, slots);
        for (int32_t jj = 0; jj < nk; jj++) {
            att_cvt_row(vdt, (const uint8_t *)j->vc->data + (size_t)slots[jj] * j->vc->nb[1] + voff,
                        vf + (size_t)jj * hs, hs);
        }
        att_load_kt(j, slots, nk, koff, kt, tmp);

        int32_t i = 0;
        for (; i + ATT_RB <= nr; i += ATT_RB)
            att_scores_rb(qr + i, kt, hs, S + (size_t)i * ATT_KB);
        for (; i < nr; i++)
            att_scores1(qr[i], kt, hs, S + (size_t)i * ATT_KB);

        float C[ATT_QT];   // per row: the factor on the old O (its max went up)
        for (i = 0; i < nr; i++) {
            float *srow = S + (size_t)i * ATT_KB;
            const int32_t lim = pr[i] - p0;           // keys jj <= lim are visible
            // (no reductions and no conditionally evaluated FP: these loops vectorize)
            for (int jj = 0; jj < ATT_KB; jj++) {
                const float v = srow[jj] * j->scale;
                srow[jj] = jj <= lim ? v : -INFINITY;
            }
            const float mb = att_max16(srow);
            const float mnew = mb > M[i] ? mb : M[i];
            if (mnew == -INFINITY) {                  // nothing visible yet for this row
                C[i] = 1.0f;
                memset(srow, 0, ATT_KB * sizeof(float));
                continue;
            }
            C[i] = att_exp(M[i] - mnew);
            for (int jj = 0; jj < ATT_KB; jj++) {
                const float e = att_exp(srow[jj] - mnew);
                srow[jj] = srow[jj] > -INFINITY ? e : 0.0f;
            }
            L[i] = L[i] * C[i] + att_sum16(srow);
            M[i] = mnew;
        }
        for (i = 0; i + ATT_RB <= nr; i += ATT_RB) {
            float *orow[ATT_RB];
            for (int r = 0; r < ATT_RB; r++)
                orow[r] = O + (size_t)(i + r) * hs;
            att_pv_rb(orow, C + i, S + (size_t)i * ATT_KB, vf, nk, hs);
        }
        for (; i < nr; i++)
            att_pv1(O + (size_t)i * hs, C[i], S + (size_t)i * ATT_KB, vf, nk, hs);
    }
    if (j->nsplit > 1) {   // leave the state: M, L, then O, per row
        float *ps = j->part + (size_t)item * ATT_QT * (2 + (size_t)hs);
        memcpy(ps, M, (size_t)nr * sizeof(float));
        memcpy(ps + ATT_QT, L, (size_t)nr * sizeof(float));
        memcpy(ps + 2 * ATT_QT, O, (size_t)nr * hs * sizeof(float));
        return;
    }
    for (int32_t a = 0; a < na; a++) {
        const int32_t t = j->order[first + a];
        for (int32_t e = 0; e < group; e++) {
            const int32_t i = a * group + e;
            float *o = j->out + ((int64_t)t * j->n_heads + (int64_t)g * group + e) * hs;
            const float inv = 1.0f / L[i];
            for (int32_t d = 0; d < hs; d++)
                o[d] = O[(size_t)i * hs + d] * inv;
        }
    }
}

/* The sequence holding global tile `tile` (tile_start is non-decreasing; empty
 * sequences share their start with the next one, which is the one with tiles). */
static inline int32_t att_seq_of_tile(const struct att_job *j, int64_t tile)
{
    int32_t lo = 0, hi = j->st->n_seqs;
    while (hi - lo > 1) {
        const int32_t mid = (lo + hi) / 2;
        if (j->tile_start[mid] <= tile)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Merges the nsplit states of pair `pair`: m = max m_s, l = sum l_s e^(m_s - m),
 * o = sum o_s e^(m_s - m) / l (a range that saw no key has m_s = -inf and weight 0). */
static void att_combine(const struct att_job *j, int64_t pair)
{
    const int32_t hs = j->hs, group = j->group;
    const int64_t tile = pair / j->n_kv;
    const int32_t g = (int32_t)(pair % j->n_kv), s = att_seq_of_tile(j, tile);
    int32_t first, na;
    att_tile_tokens(j, s, tile - j->tile_start[s], &first, &na);
    const size_t slot = (size_t)ATT_QT * (2 + (size_t)hs);
    const float *base = j->part + (size_t)(j->n_pairs - 1 - pair) * j->nsplit * slot;
    for (int32_t a = 0; a < na; a++) {
        const int32_t t = j->order[first + a];
        for (int32_t e = 0; e < group; e++) {
            const int32_t i = a * group + e;
            float m = -INFINITY, l = 0.0f;
            for (int32_t sp = 0; sp < j->nsplit; sp++)
                m = base[sp * slot + i] > m ? base[sp * slot + i] : m;
            float *o = j->out + ((int64_t)t * j->n_heads + (int64_t)g * group + e) * hs;
            for (int32_t d = 0; d < hs; d++)
                o[d] = 0.0f;
            for (int32_t sp = 0; sp < j->nsplit; sp++) {
                const float *ps = base + sp * slot;
                if (ps[i] == -INFINITY)
                    continue;
                const float w = att_exp(ps[i] - m);
                l += ps[ATT_QT + i] * w;
                const float *os = ps + 2 * ATT_QT + (size_t)i * hs;
                for (int32_t d = 0; d < hs; d++)
                    o[d] += os[d] * w;
            }
            const float inv = 1.0f / l;
            for (int32_t d = 0; d < hs; d++)
                o[d] *= inv;
        }
    }
}

void ATT_WORKER(void *arg, int ith, int nth)
{
    struct att_job *j = arg;
    float *sc = j->scratch + (size_t)ith * j->per_thread;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            break;
        // latest tiles first (they see the most keys): better balance at the end
        const int64_t pair = j->n_pairs - 1 - it / j->nsplit;
        const int64_t tile = pair / j->n_kv;
        const int32_t s = att_seq_of_tile(j, tile);
        att_tile(j, sc, s, tile - j->tile_start[s], (int32_t)(pair % j->n_kv),
                 (int32_t)(it % j->nsplit), it);
    }
    if (j->nsplit == 1)
        return;
    if (nth > 1)
        eng_tp_barrier(j->tp);
    int64_t lo, hi;
    eng_tp_range(j->n_pairs, 1, ith, nth, &lo, &hi);
    for (int64_t pair = lo; pair < hi; pair++)
        att_combine(j, pair);
}
