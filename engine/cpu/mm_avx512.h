/* engine/cpu/mm_avx512.h: the matmul kinds of the avx512 level (AVX512F/BW/VL/DQ + VNNI +
 * BF16; never AMX), for the driver mm_tmpl.h. Included only by level_avx512.c (compiled
 * with those -m flags, run only after features.c found them).
 *
 * Quantized weights (Q8_0, Q4_0): x is quantized once per call (canonical rounding,
 * mm_impl.h); 32 output columns of weights are packed per K chunk into a panel of
 * 4-byte groups [block][k/4][32 columns][4] (+ F32 scales [block][32]), then an
 * R_T x 32 microkernel broadcasts 4 bytes of x and runs vpdpbusd against 16 columns x
 * 4 k at a time: lanes are output columns, so there are no horizontal sums and each
 * (row, column, block) integer sum is complete in one lane; the canonical fma then
 * adds it to the column's F32 accumulator. vpdpbusd multiplies u8 by s8: Q8_0 weights
 * are packed as w + 128 (u8) and every block's sum starts at -128 * sum(q_x); Q4_0
 * nibbles are already u8 and start at -8 * sum(q_x). Decode (R = 1) runs the same code:
 * packing costs about as much as the horizontal sums a row-wise kernel would need, and
 * keeping one accumulation order makes results independent of batch size.
 *
 * Float weights: for R <= RV_F / RV_B (decode) a row-wise kernel streams weight rows
 * once and FMAs them against every row of x (F16 via vcvtph2ps, BF16 via vdpbf16ps on x
 * rounded to BF16); for larger R, panels [k][32 columns] (F32, F16 converted to F32, or
 * BF16 pairs) feed an R_T x 32 FMA / vdpbf16ps microkernel. */
#include "mm_impl.h"
#include "simd_avx512.h"

#include <stdlib.h>

#define PW 32           /* output columns per panel */
#define KCB 32          /* K chunk of a quantized panel, in 32-element blocks (32 KiB) */
#define KCB_GEMV 16     /* the chunk for R <= RT_Q (measured: 32 is +8% for prefill,
                           16 is +5% for decode) */
#define KCF 256         /* K chunk of a float panel, in elements (32 KiB of F32) */
#define KCP 128         /* K chunk of a BF16 panel, in pairs (16 KiB) */
#define RT_Q 6          /* rows per quantized microkernel tile */
#define RT_F 8          /* rows per float / BF16 microkernel tile */
#define RV_F 16         /* R up to which F32/F16 weights use the row-wise (GEMV) kernel */
#define RX_F 3          /* R up to which that kernel reads x as it is (above: interleaved) */
#define PF_F 4096       /* software prefetch distance (bytes) of that kernel's weight stream */
#define RV_Q 4          /* R up to which Q8_0/Q4_0 weights use the row-wise kernel */
#define RV_B 4          /* the same for BF16 (its vdpbf16ps GEMM wins from R = 5) */

static const uint8_t zero_rows[KCB * sizeof(eng_block_q8_0) + 64];   /* stands in for rows >= N */

/* ------------------------------------------------------------------------------------- */
/* quantized activations                                                                   */

struct q_act {
    int8_t *q;             /* (R, qs) */
    float *dx;             /* (R, nb) */
    int32_t *corr;         /* (R, nb): -128 (Q8_0) or -8 (Q4_0) times sum of the block's q */
    size_t qs;             /* row stride of q */
};

static struct q_act q_layout(void *act, int64_t R, int64_t K)
{
    struct q_act a;
    const size_t nb = (size_t)K / 32;
    a.qs = (size_t)mm_round_up(K, 64);
    a.dx = act;
    a.corr = (int32_t *)(a.dx + (size_t)R * nb);
    a.q = (int8_t *)(a.corr + (size_t)R * nb);
    return a;
}

static size_t q_act_bytes(int64_t R, int64_t K)
{
    size_t b;   // q (R, mm_round_up(K, 64)) + dx, corr (R, K/32)
    if (__builtin_mul_overflow((size_t)R, (size_t)mm_round_up(K, 64) + (size_t)K / 32 * 8, &b))
        return SIZE_MAX;
    return b;
}

/* Row r: the canonical quantization (mm_impl.h), plus the per-block offset correction. */
static void q_act_row(const struct mm_job *j, int64_t r)
{
    const int64_t K = j->K, nb = K / 32;
    const struct q_act a = q_layout(j->act, j->R, K);
    const float *x = j->x + r * K;
    int8_t *q = a.q + (size_t)r * a.qs;
    float *dx = a.dx + r * nb;
    int32_t *corr = a.corr + r * nb;
    const int32_t cm = j->dt == ENG_DTYPE_Q8_0 ? -128 : -8;
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        __m512i am = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v0), absm),
                                      _mm512_and_si512(_mm512_castps_si512(v1), absm));
        const float d = eng_fp32_from_bits((uint32_t)_mm512_reduce_max_epu32(am)) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        const __m512i q0 = round_q16(_mm512_mul_ps(v0, id)), q1 = round_q16(_mm512_mul_ps(v1, id));
        _mm_storeu_si128((__m128i *)(q + b * 32), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + b * 32 + 16), _mm512_cvtepi32_epi8(q1));
        dx[b] = eng_fp16_to_fp32(eng_fp32_to_fp16(d));
        corr[b] = cm * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ------------------------------------------------------------------------------------- */
/* quantized weight panels                                                                 */

/* Packs blocks [kb0, kb0 + kbn) of columns n0 .. n0 + nc - 1 (nc <= 32): pw gets
 * [b][kg][32][4] u8 (Q8_0: w + 128; Q4_0: the nibble), psc gets [b][32] F32 scales.
 * Columns >= nc are packed as zero weights with zero scales. */
static void q_pack(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                   int64_t kn, int64_t n_end)
{
    uint8_t *pw = panel;
    float *psc = (float *)(pw + KCB * 1024);
    const int64_t kb0 = k0 / 32;
    const int kbn = (int)(kn / 32);
    // the next panel's rows [n0 + PW, n0 + 2 PW) are prefetched block by block, so
    // DRAM streams the weights while this panel is transposed (32 strided row streams
    // defeat the hardware prefetchers: 11 GB/s without, one thread)
    const bool pf = n0 + 2 * PW <= n_end;
    const size_t pfd = (size_t)PW * j->ws;
    const bool q8 = j->dt == ENG_DTYPE_Q8_0;
    const size_t bs = q8 ? sizeof(eng_block_q8_0) : sizeof(eng_block_q4_0);
    const __m512i x80 = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0f);
    const __m512i sh4 = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    for (int h = 0; h * 16 < nc; h++) {
        const uint8_t *rows[16];
        for (int i = 0; i < 16; i++) {
            const int64_t n = n0 + h * 16 + i;
            rows[i] = n < n0 + nc ? j->w + (size_t)n * j->ws + (size_t)kb0 * bs : zero_rows;
        }
        for (int b = 0; b < kbn; b++) {
            const size_t off = (size_t)b * bs;
            if (pf)
                for (int i = 0; i < 16; i++)
                    _mm_prefetch((const char *)rows[i] + off + pfd, _MM_HINT_T0);
            __m512i z[8], o[8];
            for (int i = 0; i < 8; i++) {
                if (q8) {
                    __m256i lo = _mm256_loadu_si256((const __m256i *)(rows[i] + off + 2));
                    __m256i hi = _mm256_loadu_si256((const __m256i *)(rows[i + 8] + off + 2));
                    z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                } else {   // 16 bytes -> [lo nibbles (k 0-15) | hi nibbles (k 16-31)]
                    __m128i lo = _mm_loadu_si128((const __m128i *)(rows[i] + off + 2));
                    __m128i hi = _mm_loadu_si128((const __m128i *)(rows[i + 8] + off + 2));
                    __m512i v = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(lo)),
                        _mm256_broadcastsi128_si256(hi), 1);
                    z[i] = _mm512_and_si512(_mm512_srlv_epi64(v, sh4), m4);
                }
            }
            tr_8x16_epi32(z, o);
            uint8_t *dst = pw + (size_t)b * 1024 + (size_t)h * 64;
            for (int k = 0; k < 8; k++)
                _mm512_store_si512(dst + k * 128, q8 ? _mm512_xor_si512(o[k], x80) : o[k]);
            uint16_t hs[16];
            for (int i = 0; i < 16; i++)
                memcpy(&hs[i], rows[i] + off, 2);
            _mm512_store_ps(psc + b * 32 + h * 16,
                            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hs)));
        }
    }
}

/* Microkernel, tile rt rows x 16*C columns over kbn blocks of a packed panel.
 * Per block it reads 8 x C zmm of weights (16 columns x 4 k each) and 8 x rt
 * broadcast dwords of x, and runs 8*rt*C vpdpbusd into int32 accumulators that start
 * at the block's offset correction; then per (row, column): the canonical
 * acc = fma(float(isum), dw * dx, acc). Registers at rt = 6, C = 2: 12 int + 12 float
 * accumulators + 2 weights + 2 scales (rt 4 and 6 measured equal). F32 accumulators
 * live across the K chunk and go through `out` between chunks (first: start from 0). */
AI void kq(const int rt, const int C, const uint8_t *pw, const float *psc, int kbn,
           const int8_t *xq, size_t xqs, const float *xd, const int32_t *xc, size_t nbs,
           float *out, size_t ldo, __mmask16 m0, __mmask16 m1, bool first)
{
    __m512 f[RT_Q][2];
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            f[r][c] = first ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(c ? m1 : m0, out + r * ldo + c * 16);
    for (int b = 0; b < kbn; b++) {
        __m512i a[RT_Q][2];
        for (int r = 0; r < rt; r++)
            for (int c = 0; c < C; c++)
                a[r][c] = _mm512_set1_epi32(xc[r * nbs + b]);
        const uint8_t *wb = pw + (size_t)b * 1024;
        const int8_t *xb = xq + b * 32;
        for (int kg = 0; kg < 8; kg++) {
            __m512i w[2];
            for (int c = 0; c < C; c++)
                w[c] = _mm512_load_si512(wb + kg * 128 + c * 64);
            for (int r = 0; r < rt; r++) {
                int32_t x4;
                memcpy(&x4, xb + r * xqs + kg * 4, 4);
                const __m512i xv = _mm512_set1_epi32(x4);
                for (int c = 0; c < C; c++)
                    a[r][c] = _mm512_dpbusd_epi32(a[r][c], w[c], xv);
            }
        }
        __m512 s[2];
        for (int c = 0; c < C; c++)
            s[c] = _mm512_load_ps(psc + b * 32 + c * 16);
        for (int r = 0; r < rt; r++) {
            const __m512 dx = _mm512_set1_ps(xd[r * nbs + b]);
            for (int c = 0; c < C; c++)
                f[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[r][c]), _mm512_mul_ps(s[c], dx),
                                          f[r][c]);
        }
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + r * ldo + c * 16, c ? m1 : m0, f[r][c]);
}

static void q_tile(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                   int64_t nc, int64_t k0, int64_t kn)
{
    const int64_t nb = j->K / 32, kb0 = k0 / 32;
    const struct q_act a = q_layout(j->act, j->R, j->K);
    const uint8_t *pw = panel;
    const float *psc = (const float *)(pw + KCB * 1024);
    const __mmask16 m0 = mask16(nc), m1 = mask16(nc - 16);
    MM_LADDER(kq, RT_Q, rt, nc > 16 ? 2 : 1, pw, psc, (int)(kn / 32),
              a.q + (size_t)r0 * a.qs + kb0 * 32, a.qs, a.dx + r0 * nb + kb0,
              a.corr + r0 * nb + kb0, (size_t)nb, j->out + r0 * j->N + n0, (size_t)j->N, m0,
              m1, k0 == 0);
}

/* ------------------------------------------------------------------------------------- */
/* quantized weights, row-wise (decode and small batches: R <= RV_Q)                      */

/* Block b of 16 weight rows as u8 in 8 zmm, rows paired so that gq_reduce leaves row i in
 * lane i: z[i] = [row i | row i + 4] for i < 4, [row i + 4 | row i + 8] for i >= 4, each
 * half the block's 32 values in k order (Q8_0: w + 128; Q4_0: the nibbles). */
AI void gq_load(bool q8, const uint8_t *const rows[16], size_t off, __m512i z[8])
{
    static const int8_t pair[8][2] = {{0, 4}, {1, 5}, {2, 6}, {3, 7},
                                      {8, 12}, {9, 13}, {10, 14}, {11, 15}};
    const __m512i x80 = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0f);
    const __m512i sh4 = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    for (int i = 0; i < 8; i++) {
        const uint8_t *ra = rows[pair[i][0]] + off + 2, *rb = rows[pair[i][1]] + off + 2;
        if (q8) {
            const __m256i lo = _mm256_loadu_si256((const __m256i *)ra);
            const __m256i hi = _mm256_loadu_si256((const __m256i *)rb);
            z[i] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), x80);
        } else {   // 16 bytes -> [lo nibbles (k 0-15) | hi nibbles (k 16-31)]
            const __m128i lo = _mm_loadu_si128((const __m128i *)ra);
            const __m128i hi = _mm_loadu_si128((const __m128i *)rb);
            const __m512i v = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(lo)),
                _mm256_broadcastsi128_si256(hi), 1);
            z[i] = _mm512_and_si512(_mm512_srlv_epi64(v, sh4), m4);
        }
    }
}

/* p[i] = 8 partial sums of each of two rows (gq_load's pairing) -> lane i: row i's sum. */
AI __m512i gq_reduce(const __m512i p[8])
{
    __m512i t[4], w[2];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]),
                                _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1]));
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88),
                            _mm512_shuffle_i32x4(w[0], w[1], 0xdd));
}

/* The fp16 block scales of 16 rows at byte offset off, as F32 lanes. */
AI __m512 gq_scales(const uint8_t *const rows[16], size_t off, __m512i gidx, bool gather)
{
    if (gather)   // 4 bytes from each row (scale + 2 quants): the low half is the scale
        return _mm512_cvtph_ps(
            _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(gidx, rows[0] + off, 1)));
    uint16_t hs[16];
    for (int i = 0; i < 16; i++)
        memcpy(&hs[i], rows[i] + off, 2);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hs));
}

/* Rows n .. n + nr - 1 (nr <= 16) of Q8_0/Q4_0 weights against all R rows of x: per
 * block, the 16 rows' weights are loaded once (gq_load), then for each row of x: 8
 * vpdpbusd against the x block broadcast to both halves, the lane reduction to one exact
 * integer sum per weight row (plus the offset correction), and the canonical
 * acc = fma(float(isum), dw * dx, acc): lanes are weight rows, so the order per output is
 * the canonical one and results equal the packed path's and the oracle's bit for bit.
 * The 16 rows stream side by side; the next 16 are prefetched linearly meanwhile (16
 * interleaved streams otherwise leave the hardware prefetchers behind). Reading one row
 * at a time would stream better, but the canonical chain then runs along one output and
 * its latency, or the transposes that avoid it, cost more than the stream gains (both
 * measured slower). */
AI void gq(const int R, bool q8, const struct mm_job *j, const struct q_act *a, int64_t n,
           int64_t nr, bool gather, __m512i gidx)
{
    const int64_t nb = j->K / 32, N = j->N;
    const size_t bs = q8 ? sizeof(eng_block_q8_0) : sizeof(eng_block_q4_0);
    const uint8_t *rows[16];
    for (int i = 0; i < 16; i++)
        rows[i] = j->w + (size_t)(n + (i < nr ? i : 0)) * j->ws;
    const uint8_t *pf = rows[0] + 16 * j->ws;   // the next group, read in this group's time
    const size_t pf_step = 16 * bs;
    __m512 acc[RV_Q];
    for (int r = 0; r < R; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bs;
        for (size_t c = 0; c < pf_step; c += 64)
            _mm_prefetch((const char *)pf + b * pf_step + c, _MM_HINT_T1);
        __m512i z[8];
        gq_load(q8, rows, off, z);
        const __m512 dw = gq_scales(rows, off, gidx, gather);
        for (int r = 0; r < R; r++) {
            const __m512i xv = _mm512_broadcast_i64x4(
                _mm256_loadu_si256((const __m256i *)(a->q + (size_t)r * a->qs + b * 32)));
            __m512i p[8];
            for (int i = 0; i < 8; i++)
                p[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z[i], xv);
            const __m512i isum =
                _mm512_add_epi32(gq_reduce(p), _mm512_set1_epi32(a->corr[r * nb + b]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(a->dx[r * nb + b])), acc[r]);
        }
    }
    for (int r = 0; r < R; r++)
        _mm512_mask_storeu_ps(j->out + r * N + n, mask16(nr), acc[r]);
}

static void q_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    (void)scratch;
    const struct q_act a = q_layout(j->act, j->R, j->K);
    const bool q8 = j->dt == ENG_DTYPE_Q8_0;
    // gather the scales when 16 rows' offsets fit its int32 indices
    const bool gather = j->ws <= (size_t)INT32_MAX / 16;
    const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                              11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(gather ? (int)j->ws : 0));
    for (int64_t n = lo; n < hi; n += 16) {
        const int64_t nr = mm_imin(16, hi - n);
        const __m512i gi = nr == 16 ? gidx : _mm512_maskz_mov_epi32(mask16(nr), gidx);
#define GQ(RR) q8 ? gq(RR, true, j, &a, n, nr, gather, gi) : gq(RR, false, j, &a, n, nr, gather, gi)
        switch (j->R) {
        case 1: GQ(1); break;
        case 2: GQ(2); break;
        case 3: GQ(3); break;
        default: GQ(RV_Q); break;
        }
#undef GQ
    }
}

static const struct mm_kind kind_q = {
    .act_bytes = q_act_bytes,
    .act_row = q_act_row,
    .rv = RV_Q,
    .gemv = q_gemv,
    .pw = PW,
    .rt = RT_Q,
    .kc = KCB * 32,
    .kc_small = KCB_GEMV * 32,
    .panel_bytes = KCB * 1024 + KCB * PW * sizeof(float),
    .pack = q_pack,
    .tile = q_tile,
};

/* ------------------------------------------------------------------------------------- */
/* float weights: row-wise kernel for decode                                               */

/* Loads 16 weights of row p from element k as F32 (F32 or F16 storage); m masks a tail. */
AI __m512 load_w16(bool f16, const uint8_t *p, int64_t k, __mmask16 m)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + k * 2));
    return _mm512_maskz_loadu_ps(m, p + k * 4);
}

/* One row of F32/F16 weights against R rows of F32 x, for outputs out[r * N]: the row is
 * read once, front to back (one stream: rows side by side, even sharing each x load, were
 * measured slower at every R, prefetched or not; the hardware prefetchers follow one
 * stream best), U vectors of 16 weights per step, each converted once and FMAed with
 * every row of x into R*U accumulators (>= 8 chains hide the FMA latency); one horizontal
 * sum per output. x is either as given (il false: rows K floats apart, for R <= RX_F) or
 * interleaved by f_act_row (il true: [k/16][R][16], the R vectors of one step adjacent;
 * rows of x K floats apart alias in the L1 cache when K is a multiple of 1024). */
AI void gv_f(const int R, const int U, bool f16, bool il, const uint8_t *wr, const float *x,
             int64_t K, float *out, int64_t N)
{
    __m512 acc[16];   // [r * U + u], R * U <= 16
    for (int i = 0; i < R * U; i++)
        acc[i] = _mm512_setzero_ps();
    const int64_t es = f16 ? 2 : 4;
    int64_t k = 0;
    for (; k + 16 * U <= K; k += 16 * U)
        for (int u = 0; u < U; u++) {
            const int64_t ku = k + 16 * u;
            if ((ku * es) % 64 == 0)   // (rows are adjacent: past the row's end, the next)
                _mm_prefetch((const char *)wr + ku * es + PF_F, _MM_HINT_T1);
            const __m512 wv = load_w16(f16, wr, ku, 0xffff);
            for (int r = 0; r < R; r++)
                acc[r * U + u] = _mm512_fmadd_ps(
                    wv, il ? _mm512_load_ps(x + ku * R + r * 16) : _mm512_loadu_ps(x + r * K + ku),
                    acc[r * U + u]);
        }
    for (; k < K; k += 16) {   // (the interleaved copy is zero past K)
        const __mmask16 m = mask16(K - k);
        const __m512 wv = load_w16(f16, wr, k, m);
        for (int r = 0; r < R; r++)
            acc[r * U] = _mm512_fmadd_ps(
                wv, il ? _mm512_load_ps(x + k * R + r * 16) : _mm512_maskz_loadu_ps(m, x + r * K + k),
                acc[r * U]);
    }
    for (int r = 0; r < R; r++) {
        __m512 s = acc[r * U];
        for (int u = 1; u < U; u++)
            s = _mm512_add_ps(s, acc[r * U + u]);
        out[r * N] = _mm512_reduce_add_ps(s);
    }
}

static size_t f_act_bytes(int64_t R, int64_t K)
{
    size_t b;
    if (R <= RX_F || R > RV_F)
        return 0;   // x as it is
    if (__builtin_mul_overflow((size_t)R, (size_t)mm_round_up(K, 16) * sizeof(float), &b))
        return SIZE_MAX;
    return b;
}

/* Row r of x into the interleaved layout of gv_f (zeros past K). */
static void f_act_row(const struct mm_job *j, int64_t r)
{
    const int64_t K = j->K, R = j->R;
    const float *x = j->x + r * K;
    float *xi = (float *)j->act + r * 16;
    for (int64_t k = 0; k < K; k += 16)
        _mm512_store_ps(xi + k * R, _mm512_maskz_loadu_ps(mask16(K - k), x + k));
}

static void f_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    (void)scratch;
    const bool f16 = j->dt == ENG_DTYPE_F16;
    const int64_t K = j->K, N = j->N;
    const float *x = j->R <= RX_F ? j->x : j->act;
#define GV(RR, UU, IL)                                                                      \
    do {                                                                                    \
        for (int64_t n = lo; n < hi; n++)                                                   \
            f16 ? gv_f(RR, UU, true, IL, j->w + (size_t)n * j->ws, x, K, j->out + n, N)     \
                : gv_f(RR, UU, false, IL, j->w + (size_t)n * j->ws, x, K, j->out + n, N);   \
    } while (0)
#define GI(RR, UU) GV(RR, UU, true)
    switch (j->R) {   // accumulators: R*U <= 16, >= 8 chains where R allows
    case 1: GV(1, 8, false); break;
    case 2: GV(2, 4, false); break;
    case 3: GV(3, 4, false); break;
    case 4: GI(4, 2); break;
    case 5: GI(5, 2); break;
    case 6: GI(6, 2); break;
    case 7: GI(7, 2); break;
    case 8: GI(8, 2); break;
    case 9: GI(9, 1); break;
    case 10: GI(10, 1); break;
    case 11: GI(11, 1); break;
    case 12: GI(12, 1); break;
    case 13: GI(13, 1); break;
    case 14: GI(14, 1); break;
    case 15: GI(15, 1); break;
    default: GI(16, 1); break;
    }
#undef GV
#undef GI
}

/* ------------------------------------------------------------------------------------- */
/* float weights: packed panels for prefill                                                */

/* pw[k][32] = F32 weights of columns n0 .. n0+nc-1, k in [k0, k0 + kcn); zero beyond nc. */
static void f_pack(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                   int64_t kcn, int64_t n_end)
{
    (void)n_end;
    float *pw = panel;
    const bool f16 = j->dt == ENG_DTYPE_F16;
    for (int h = 0; h * 16 < nc; h++) {
        for (int64_t kk = 0; kk < kcn; kk += 16) {
            const __mmask16 m = mask16(kcn - kk);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const int64_t n = n0 + h * 16 + i;
                r[i] = n < n0 + nc ? load_w16(f16, j->w + (size_t)n * j->ws, k0 + kk, m)
                                   : _mm512_setzero_ps();
            }
            tr_16x16_ps(r);
            for (int i = 0; i < 16; i++)
                _mm512_store_ps(pw + (kk + i) * PW + h * 16, r[i]);
        }
    }
}

/* Microkernel, tile rt rows x 16*C columns over kcn k of an F32 panel: per k, C weight
 * loads, rt broadcasts of x, rt*C FMAs (rt = 8, C = 2: 16 accumulators). */
AI void kf(const int rt, const int C, const float *pw, int64_t kcn, const float *x, size_t ldx,
           float *out, size_t ldo, __mmask16 m0, __mmask16 m1, bool first)
{
    __m512 f[RT_F][2];
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            f[r][c] = first ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(c ? m1 : m0, out + r * ldo + c * 16);
    for (int64_t k = 0; k < kcn; k++) {
        __m512 w[2];
        for (int c = 0; c < C; c++)
            w[c] = _mm512_load_ps(pw + k * PW + c * 16);
        for (int r = 0; r < rt; r++) {
            const __m512 xv = _mm512_set1_ps(x[r * ldx + k]);
            for (int c = 0; c < C; c++)
                f[r][c] = _mm512_fmadd_ps(w[c], xv, f[r][c]);
        }
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + r * ldo + c * 16, c ? m1 : m0, f[r][c]);
}

static void f_tile(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                   int64_t nc, int64_t k0, int64_t kn)
{
    const int64_t K = j->K, N = j->N;
    MM_LADDER(kf, RT_F, rt, nc > 16 ? 2 : 1, panel, kn, j->x + r0 * K + k0, (size_t)K,
              j->out + r0 * N + n0, (size_t)N, mask16(nc), mask16(nc - 16), k0 == 0);
}

static const struct mm_kind kind_f = {
    .act_bytes = f_act_bytes,
    .act_row = f_act_row,
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

/* ------------------------------------------------------------------------------------- */
/* BF16 weights: x rounded to BF16 (RNE), products summed in F32 by vdpbf16ps              */

static size_t bf_stride(int64_t K)   /* BF16 elements per converted row of x */
{
    return (size_t)mm_round_up(K, 32);
}

static size_t bf_act_bytes(int64_t R, int64_t K)
{
    size_t b;
    if (__builtin_mul_overflow((size_t)R, bf_stride(K) * 2, &b))
        return SIZE_MAX;
    return b;
}

static void bf_act_row(const struct mm_job *j, int64_t r)
{
    const int64_t K = j->K;
    const float *x = j->x + r * K;
    uint16_t *dst = (uint16_t *)j->act + (size_t)r * bf_stride(K);
    for (int64_t k = 0; k < K; k += 32) {
        const __m512 a = _mm512_maskz_loadu_ps(mask16(K - k), x + k);
        const __m512 b = _mm512_maskz_loadu_ps(mask16(K - k - 16), x + k + 16);
        _mm512_storeu_si512(dst + k, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
}

/* Row-wise BF16 kernel (decode): per 32 k, J weight vectors, R x vectors, R*J vdpbf16ps. */
AI void gv_bf(const int R, const int J, const uint8_t *w, size_t ws, const uint16_t *xb,
              size_t xs, int64_t K, float *out, int64_t N, int64_t n)
{
    __m512 acc[RV_B][8];
    const uint8_t *wr[8];
    for (int jj = 0; jj < J; jj++)
        wr[jj] = w + (size_t)(n + jj) * ws;
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++)
            acc[r][jj] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 32) {
        const __mmask32 m = K - k >= 32 ? 0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        for (int jj = 0; jj < J; jj++) {
            const __m512i wv = _mm512_maskz_loadu_epi16(m, wr[jj] + k * 2);
            for (int r = 0; r < R; r++)
                acc[r][jj] = _mm512_dpbf16_ps(acc[r][jj], (__m512bh)wv,
                                              (__m512bh)_mm512_loadu_si512(xb + r * xs + k));
        }
    }
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++)
            out[r * N + n + jj] = _mm512_reduce_add_ps(acc[r][jj]);
}

static void bf_gemv(const struct mm_job *j, void *scratch, int64_t lo, int64_t hi)
{
    (void)scratch;
    const uint16_t *xb = j->act;
    const int64_t K = j->K, N = j->N;
    const size_t xs = bf_stride(K);
    int64_t n = lo;
#define GV(RR, JJ)                                                                          \
    do {                                                                                    \
        for (; n + (JJ) <= hi; n += (JJ))                                                   \
            gv_bf(RR, JJ, j->w, j->ws, xb, xs, K, j->out, N, n);                            \
        for (; n < hi; n++)                                                                 \
            gv_bf(RR, 1, j->w, j->ws, xb, xs, K, j->out, N, n);                             \
    } while (0)
    switch (j->R) {   // R*J <= 16 accumulators, >= 8 chains
    case 1: GV(1, 8); break;
    case 2: GV(2, 4); break;
    case 3: GV(3, 4); break;
    default: GV(4, 2); break;
    }
#undef GV
}

/* pw[p][32] = BF16 pairs (k = 2p, 2p+1) of columns n0 .. n0+nc-1, pairs [p0, p0 + pcn). */
static void bf_pack(const struct mm_job *j, void *panel, int64_t n0, int64_t nc, int64_t k0,
                    int64_t kn, int64_t n_end)
{
    (void)n_end;
    uint32_t *pw = panel;
    const int64_t p0 = k0 / 2, pcn = (kn + 1) / 2;
    const int64_t K = j->K, full = K / 2;   // pairs lying wholly inside a row
    for (int h = 0; h * 16 < nc; h++) {
        for (int64_t pp = 0; pp < pcn; pp += 16) {
            const __mmask16 m = mask16(mm_imin(pcn - pp, full - (p0 + pp)));
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const int64_t n = n0 + h * 16 + i;
                r[i] = n < n0 + nc ? _mm512_maskz_loadu_ps(m, j->w + (size_t)n * j->ws +
                                                                  (size_t)(p0 + pp) * 4)
                                   : _mm512_setzero_ps();
            }
            tr_16x16_ps(r);
            for (int i = 0; i < 16; i++)
                _mm512_store_ps((float *)(pw + (pp + i) * PW + h * 16), r[i]);
        }
    }
    if (K % 2 && full >= p0 && full < p0 + pcn) {   // odd K: last pair is (w[K-1], 0)
        for (int64_t i = 0; i < nc; i++) {
            uint16_t v;
            memcpy(&v, j->w + (size_t)(n0 + i) * j->ws + (size_t)(K - 1) * 2, 2);
            pw[(full - p0) * PW + i] = v;
        }
    }
}

/* Microkernel, rt rows x 16*C columns over pcn pairs: C weight loads, rt broadcast
 * pairs of x, rt*C vdpbf16ps per pair of k. */
AI void kb(const int rt, const int C, const uint32_t *pw, int64_t pcn, const uint32_t *x,
           size_t ldx, float *out, size_t ldo, __mmask16 m0, __mmask16 m1, bool first)
{
    __m512 f[RT_F][2];
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            f[r][c] = first ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(c ? m1 : m0, out + r * ldo + c * 16);
    for (int64_t p = 0; p < pcn; p++) {
        __m512i w[2];
        for (int c = 0; c < C; c++)
            w[c] = _mm512_load_si512(pw + p * PW + c * 16);
        for (int r = 0; r < rt; r++) {
            const __m512i xv = _mm512_set1_epi32((int)x[r * ldx + p]);
            for (int c = 0; c < C; c++)
                f[r][c] = _mm512_dpbf16_ps(f[r][c], (__m512bh)w[c], (__m512bh)xv);
        }
    }
    for (int r = 0; r < rt; r++)
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + r * ldo + c * 16, c ? m1 : m0, f[r][c]);
}

static void bf_tile(const struct mm_job *j, const void *panel, int rt, int64_t r0, int64_t n0,
                    int64_t nc, int64_t k0, int64_t kn)
{
    const size_t xs = bf_stride(j->K);
    const uint16_t *xb = j->act;
    const int64_t N = j->N, p0 = k0 / 2;
    MM_LADDER(kb, RT_F, rt, nc > 16 ? 2 : 1, panel, (kn + 1) / 2,
              (const uint32_t *)(xb + (size_t)r0 * xs) + p0, xs / 2, j->out + r0 * N + n0,
              (size_t)N, mask16(nc), mask16(nc - 16), p0 == 0);
}

static const struct mm_kind kind_bf = {
    .act_bytes = bf_act_bytes,
    .act_row = bf_act_row,
    .rv = RV_B,
    .gemv = bf_gemv,
    .pw = PW,
    .rt = RT_F,
    .kc = 2 * KCP,
    .kc_small = 2 * KCP,
    .panel_bytes = KCP * PW * sizeof(uint32_t),
    .pack = bf_pack,
    .tile = bf_tile,
};

#define MM_KIND_BF16 kind_bf   /* BF16 has its own kind here (mm_tmpl.h) */
