/* tests/test_backend_ops.c: every op of the backend table on a backend under test against
 * the CPU backend at its scalar (reference) kernel level, with random non-zero inputs,
 * outputs poisoned (NaN) first, and tolerances per dtype. Built three ways (tests/meson.build):
 *   backend_ops           suite engine: the CPU backend at its default level vs scalar;
 *   backend_ops_cuda      suite gpu:    the CUDA backend vs scalar CPU (exit 77 = skip
 *                                       when no GPU is visible);
 *   backend_ops_cuda_emu  suite engine: the CUDA backend's host code and kernels on the CPU
 *                                       emulator (gpu/emu/) vs scalar CPU.
 * Besides single ops: multi-step decode sequences (the CUDA backend defers and replays
 * repeated steps as CUDA graphs: positions change every step while the records repeat),
 * in-place aliasing, unprepared quantized weights, both matmul paths (ORTHOD_CUDA_GEMV_ROWS),
 * and the error paths (bad tokens, bad block tables, device out of memory: the op fails, the
 * backend keeps working). Matmul tolerance: |got - want| <= tol * sum_k |x_k w_k| (+1e-6),
 * the bound for rounding each product's operands by a relative tol. cmocka (or
 * tests/minicmocka.h on a host without libcmocka): one test per op family, in groups per
 * configuration of the backend under test. */
#include "../engine/backend_impl.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(TEST_CUDA) || defined(ORTHOD_GPU_EMU)
#define DUT_CUDA 1
#include "../gpu/gpu.h"
#include "../gpu/microbench.h"
#endif
#ifdef ORTHOD_GPU_EMU
void gpu_emu_set_capture_fails(int on);   /* gpu/emu/emu.cpp: make graph capture fail */
#endif

/* --- harness ---------------------------------------------------------------------------------- */
struct T {
    eng_backend_t *ref, *dut;
    uint64_t rng;
    const char *label;       /* the group: "default", "cublas-only", ... */
};

static uint32_t rnd(struct T *t)
{
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    return (uint32_t)(x >> 16);
}

/* uniform in [-1, 1), never exactly 0 */
static float rndf(struct T *t)
{
    float f = ((float)(rnd(t) & 0xffffff) / 8388608.0f) - 1.0f;
    return f == 0.0f ? 0.5f : f;
}

static void fill(struct T *t, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = rndf(t) * scale;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* A tensor with its own buffer on one backend; `off` bytes into the buffer. */
struct tb {
    eng_tensor_t t;
    eng_buffer_t *buf;
};

static void tb_new(eng_backend_t *be, enum eng_dtype dt, int64_t ne0, int64_t ne1,
                   size_t off, struct tb *out)
{
    int64_t ne[2] = {ne0, ne1};
    assert_ok(eng_tensor_init(&out->t, dt, 2, ne));
    assert_ok(eng_buffer_new(be, eng_tensor_nbytes(&out->t) + off + 64, ENG_BUF_COMPUTE, &out->buf));
    out->t.data = (char *)out->buf->base + off;
    out->t.buf = out->buf;
}

static void tb_free(struct tb *b)
{
    eng_buffer_free(b->buf);
    b->buf = NULL;
}

/* The same F32 activation on both backends. */
struct pair {
    struct tb r, d;
};

static void pair_new(struct T *t, int64_t ne0, int64_t ne1, const float *host, struct pair *p,
                     size_t dut_off)
{
    tb_new(t->ref, ENG_DTYPE_F32, ne0, ne1, 0, &p->r);
    tb_new(t->dut, ENG_DTYPE_F32, ne0, ne1, dut_off, &p->d);
    const size_t n = eng_tensor_nbytes(&p->r.t);
    if (host) {
        assert_ok(eng_tensor_set(t->ref, &p->r.t, host, 0, n));
        assert_ok(eng_tensor_set(t->dut, &p->d.t, host, 0, n));
    } else {               // poison: all-ones bytes are NaN
        unsigned char *nan = xmalloc(n);
        memset(nan, 0xff, n);
        assert_ok(eng_tensor_set(t->ref, &p->r.t, nan, 0, n));
        assert_ok(eng_tensor_set(t->dut, &p->d.t, nan, 0, n));
        free(nan);
    }
}

/* The first `rows` rows of p (same buffers): the engine reuses its activation buffers
 * every step, which is what lets the CUDA backend replay a repeated step as a graph. */
static struct pair pair_rows(const struct pair *p, int64_t rows)
{
    struct pair v = *p;
    int64_t ne[2] = {p->r.t.ne[0], rows};
    eng_tensor_init(&v.r.t, ENG_DTYPE_F32, 2, ne);
    eng_tensor_init(&v.d.t, ENG_DTYPE_F32, 2, ne);
    v.r.t.data = p->r.t.data;
    v.r.t.buf = p->r.t.buf;
    v.d.t.data = p->d.t.data;
    v.d.t.buf = p->d.t.buf;
    return v;
}

static void pair_free(struct pair *p)
{
    tb_free(&p->r);
    tb_free(&p->d);
}

static void get_f32(eng_backend_t *be, const eng_tensor_t *x, float *out)
{
    assert_ok(eng_tensor_get(be, x, out, 0, eng_tensor_nbytes(x)));
}

/* Compares the pair's contents: |d - r| <= atol + rtol * |r| elementwise (NaN fails). */
static void compare(struct T *t, struct pair *p, double atol, double rtol, const char *what)
{
    const size_t n = (size_t)eng_tensor_nelements(&p->r.t);
    float *a = xmalloc(n * 4), *b = xmalloc(n * 4);
    get_f32(t->ref, &p->r.t, a);
    get_f32(t->dut, &p->d.t, b);
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)a[i]))) {
            if (!bad++)
                first = i;
            if (d > worst || isnan(d))
                worst = d;
        }
    }
    assert_msg(bad == 0, "%s: %zu of %zu differ; first [%zu] ref %.9g got %.9g; worst |diff| %.3g",
          what, bad, n, first, bad ? a[first] : 0.0, bad ? b[first] : 0.0, worst);
    free(a);
    free(b);
}

/* A weight prepared on both backends from the same host bytes (kept alive by the caller). */
struct wpair {
    eng_tensor_t r, d;
    void *host;
    float *deq;     /* the weights as the CPU reference sees them (N, K) */
};

static void wpair_new(struct T *t, enum eng_dtype dt, int64_t K, int64_t N, float scale,
                      struct wpair *w)
{
    int64_t ne[2] = {K, N};
    assert_ok(eng_tensor_init(&w->r, dt, 2, ne));
    w->d = w->r;
    const size_t rb = eng_dtype_row_bytes(dt, K);
    w->host = xmalloc(rb * (size_t)N);
    w->deq = xmalloc(sizeof(float) * (size_t)(K * N));
    float *row = xmalloc(sizeof(float) * (size_t)K);
    for (int64_t n = 0; n < N; n++) {
        fill(t, row, (size_t)K, scale);
        eng_row_from_f32(dt, row, (char *)w->host + (size_t)n * rb, K);
        eng_row_to_f32(dt, (char *)w->host + (size_t)n * rb, w->deq + n * K, K);
    }
    free(row);
    assert_ok(eng_weight_prepare(t->ref, &w->r, w->host));
    assert_ok(eng_weight_prepare(t->dut, &w->d, w->host));
}

static void wpair_free(struct T *t, struct wpair *w)
{
    eng_weight_release(t->ref, &w->r);
    eng_weight_release(t->dut, &w->d);
    free(w->host);
    free(w->deq);
}

/* --- steps ------------------------------------------------------------------------------------- */
#define MAXT 64
#define MAXS 8
#define MAXB 64
struct stepbuf {
    int32_t tokens[MAXT], pos[MAXT], seq[MAXT], slot[MAXT], out_rows[MAXT];
    int32_t seq_len[MAXS], block_table[MAXS * MAXB];
    struct eng_step st;
};

static void step_init(struct stepbuf *s, int n_seqs, int max_blocks)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < MAXS * MAXB; i++)
        s->block_table[i] = -1;
    s->st.n_seqs = n_seqs;
    s->st.max_blocks = max_blocks;
    s->st.tokens = s->tokens;
    s->st.pos = s->pos;
    s->st.seq = s->seq;
    s->st.kv_slot = s->slot;
    s->st.seq_len = s->seq_len;
    s->st.block_table = s->block_table;
    s->st.out_rows = s->out_rows;
}

static void step_add(struct stepbuf *s, int32_t tok, int32_t seq, int32_t pos, int block_size)
{
    int i = s->st.n_tokens++;
    s->tokens[i] = tok;
    s->seq[i] = seq;
    s->pos[i] = pos;
    s->slot[i] = s->block_table[seq * s->st.max_blocks + pos / block_size] * block_size +
                 pos % block_size;
    if (s->seq_len[seq] < pos + 1)
        s->seq_len[seq] = pos + 1;
}

static void both_begin(struct T *t, struct stepbuf *s)
{
    assert_ok(eng_step_begin(t->ref, &s->st));
    assert_ok(eng_step_begin(t->dut, &s->st));
}

static void both_end(struct T *t)
{
    assert_ok(eng_step_end(t->ref));
    assert_ok(eng_step_end(t->dut));
}

/* --- ops --------------------------------------------------------------------------------------- */

static void test_embed(void **state)
{
    struct T *t = *state;
    static const enum eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16,
                                         ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0};
    const int64_t V = 37, C = 64;
    struct stepbuf s;
    step_init(&s, 1, 4);
    s.block_table[0] = 0;
    const int32_t toks[] = {0, 36, 5, 5, 17, 1, 36, 20, 9};
    for (int i = 0; i < 9; i++)
        step_add(&s, toks[i], 0, i, 16);
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        for (int prepared = 1; prepared >= 0; prepared--) {
            struct wpair w;
            struct tb raw = {0};
            if (prepared) {
                wpair_new(t, dts[d], C, V, 1.0f, &w);
            } else {      // weight bytes copied into a plain buffer: the backend sees raw bytes
                wpair_new(t, dts[d], C, V, 1.0f, &w);
                tb_new(t->dut, dts[d], C, V, 0, &raw);
                assert_ok(eng_tensor_set(t->dut, &raw.t, w.host, 0, eng_tensor_nbytes(&raw.t)));
            }
            struct pair out;
            pair_new(t, C, 9, NULL, &out, 0);
            both_begin(t, &s);
            assert_ok(eng_op_embed(t->ref, &out.r.t, &w.r));
            assert_ok(eng_op_embed(t->dut, &out.d.t, prepared ? &w.d : &raw.t));
            both_end(t);
            char what[64];
            snprintf(what, sizeof what, "embed %s %s", eng_dtype_name(dts[d]),
                     prepared ? "prepared" : "raw");
            // prepared Q8_0/Q4_0 are stored as F16 on a device: one F16 rounding of d*q
            const bool q = dts[d] == ENG_DTYPE_Q8_0 || dts[d] == ENG_DTYPE_Q4_0;
            compare(t, &out, 0.0, q && prepared ? 1.0 / 1024 : 0.0, what);
            pair_free(&out);
            if (!prepared)
                tb_free(&raw);
            wpair_free(t, &w);
        }
    }
}

static void test_rmsnorm(void **state)
{
    struct T *t = *state;
    static const int64_t Cs[] = {64, 100, 4096};
    for (size_t c = 0; c < 3; c++) {
        const int64_t C = Cs[c], R = 5;
        float *x = xmalloc(sizeof(float) * (size_t)(C * R)), *w = xmalloc(sizeof(float) * (size_t)C);
        fill(t, x, (size_t)(C * R), 3.0f);
        fill(t, w, (size_t)C, 1.0f);
        for (int inplace = 0; inplace < 2; inplace++) {
            struct pair px, pw, po;
            pair_new(t, C, R, x, &px, 0);
            pair_new(t, C, 1, w, &pw, 0);
            pair_new(t, C, R, NULL, &po, 0);
            struct pair *o = inplace ? &px : &po;
            assert_ok(eng_op_rmsnorm(t->ref, &o->r.t, &px.r.t, &pw.r.t, 1e-5f));
            assert_ok(eng_op_rmsnorm(t->dut, &o->d.t, &px.d.t, &pw.d.t, 1e-5f));
            char what[64];
            snprintf(what, sizeof what, "rmsnorm C=%lld%s", (long long)C, inplace ? " in place" : "");
            compare(t, o, 1e-6, 1e-5, what);
            pair_free(&px);
            pair_free(&pw);
            pair_free(&po);
        }
        free(x);
        free(w);
    }
}

/* out = x @ w^T checked against the bound tol * sum|x w|. */
static void check_matmul(struct T *t, struct pair *po, const float *x, const struct wpair *w,
                         int64_t R, int64_t K, int64_t N, double tol, const char *what)
{
    float *got = xmalloc(sizeof(float) * (size_t)(R * N)), *ref = xmalloc(sizeof(float) * (size_t)(R * N));
    get_f32(t->ref, &po->r.t, ref);
    get_f32(t->dut, &po->d.t, got);
    int bad = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t n = 0; n < N; n++) {
            double mag = 0;
            for (int64_t k = 0; k < K; k++)
                mag += fabs((double)x[r * K + k] * w->deq[n * K + k]);
            double d = fabs((double)got[r * N + n] - ref[r * N + n]);
            if (!(d <= tol * mag + 1e-6)) {
                if (bad++ < 3)
                    assert_msg(0, "%s: out[%lld][%lld] ref %.7g got %.7g (|diff| %.3g > %.3g)", what,
                          (long long)r, (long long)n, ref[r * N + n], got[r * N + n], d,
                          tol * mag + 1e-6);
            }
        }
    assert_msg(bad == 0, "%s: %d of %lld outputs out of tolerance", what, bad, (long long)(R * N));
    free(got);
    free(ref);
}

static double mm_tol(enum eng_dtype dt)
{
    switch (dt) {
    case ENG_DTYPE_F32: return 1e-5;
    case ENG_DTYPE_F16: return 1.5e-3;      // x rounded to F16 on the GEMM path
    case ENG_DTYPE_BF16: return 1e-2;       // x rounded to BF16 on the GEMM path
    default: return 3e-3;                   // weights stored as F16 (+ x to F16)
    }
}

static void test_matmul(void **state)
{
    struct T *t = *state;
    const char *label = t->label;
    static const enum eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16,
                                         ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0};
    static const int64_t shapes[][3] = {{1, 256, 33}, {2, 64, 70}, {3, 96, 17},
                                        {4, 256, 40}, {5, 64, 24}, {16, 96, 33}};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t R = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
            float *x = xmalloc(sizeof(float) * (size_t)(R * K));
            // the last shape has large activations (still finite in F16: 4000 < 65504)
            fill(t, x, (size_t)(R * K), s == 5 ? 4000.0f : 2.0f);
            struct wpair w;
            wpair_new(t, dts[d], K, N, 0.5f, &w);
            // odd shapes also run on an x that is only 4-byte aligned
            for (int mis = 0; mis < (s == 2 ? 2 : 1); mis++) {
                struct pair px, po;
                pair_new(t, K, R, x, &px, mis ? 4 : 0);
                pair_new(t, N, R, NULL, &po, 0);
                assert_ok(eng_op_matmul(t->ref, &po.r.t, &px.r.t, &w.r));
                assert_ok(eng_op_matmul(t->dut, &po.d.t, &px.d.t, &w.d));
                char what[96];
                snprintf(what, sizeof what, "%s matmul %s R=%lld K=%lld N=%lld%s", label,
                         eng_dtype_name(dts[d]), (long long)R, (long long)K, (long long)N,
                         mis ? " (x misaligned)" : "");
                check_matmul(t, &po, x, &w, R, K, N, mm_tol(dts[d]), what);
                pair_free(&px);
                pair_free(&po);
            }
            wpair_free(t, &w);
            free(x);
        }
    }
    // K not a multiple of 8 (F16 rows not 16-byte aligned), and raw (unprepared) Q8_0 bytes
    {
        const int64_t R = 2, K = 36, N = 9;
        float *x = xmalloc(sizeof(float) * (size_t)(R * K));
        fill(t, x, (size_t)(R * K), 1.0f);
        struct wpair w;
        wpair_new(t, ENG_DTYPE_F16, K, N, 1.0f, &w);
        struct pair px, po;
        pair_new(t, K, R, x, &px, 0);
        pair_new(t, N, R, NULL, &po, 0);
        assert_ok(eng_op_matmul(t->ref, &po.r.t, &px.r.t, &w.r));
        assert_ok(eng_op_matmul(t->dut, &po.d.t, &px.d.t, &w.d));
        check_matmul(t, &po, x, &w, R, K, N, mm_tol(ENG_DTYPE_F16), "matmul f16 K=36");
        pair_free(&px);
        pair_free(&po);
        wpair_free(t, &w);
        free(x);
    }
    for (int rows = 1; rows <= 8; rows += 7) {
        const int64_t R = rows, K = 64, N = 12;
        float *x = xmalloc(sizeof(float) * (size_t)(R * K));
        fill(t, x, (size_t)(R * K), 1.0f);
        struct wpair w;
        wpair_new(t, ENG_DTYPE_Q8_0, K, N, 1.0f, &w);
        struct tb raw;
        tb_new(t->dut, ENG_DTYPE_Q8_0, K, N, 0, &raw);
        assert_ok(eng_tensor_set(t->dut, &raw.t, w.host, 0, eng_tensor_nbytes(&raw.t)));
        struct pair px, po;
        pair_new(t, K, R, x, &px, 0);
        pair_new(t, N, R, NULL, &po, 0);
        assert_ok(eng_op_matmul(t->ref, &po.r.t, &px.r.t, &w.r));
        assert_ok(eng_op_matmul(t->dut, &po.d.t, &px.d.t, &raw.t));
        check_matmul(t, &po, x, &w, R, K, N, mm_tol(ENG_DTYPE_Q8_0), "matmul raw q8_0");
        pair_free(&px);
        pair_free(&po);
        tb_free(&raw);
        wpair_free(t, &w);
        free(x);
    }
}

static void test_rope(void **state)
{
    struct T *t = *state;
    const int64_t NH = 3, HS = 16, T = 6;
    static const int32_t pos[] = {0, 1, 17, 300, 4095, 100000};
    struct stepbuf s;
    step_init(&s, T, 1);
    for (int i = 0; i < T; i++) {
        s.block_table[i] = 0;
        s.tokens[i] = 0;
        s.pos[i] = pos[i];
        s.seq[i] = i;
        s.slot[i] = 0;
        s.seq_len[i] = pos[i] + 1;
    }
    s.st.n_tokens = (int32_t)T;     // one sequence per token; pos < seq_len <= 2^20
    float *x = xmalloc(sizeof(float) * (size_t)(NH * HS * T));
    fill(t, x, (size_t)(NH * HS * T), 2.0f);
    for (int mode = 0; mode < 2; mode++)
        for (int nrot = 8; nrot <= 16; nrot += 8)
            for (int v = 0; v < 2; v++) {
                struct eng_rope_params rp = {.n_rot = nrot, .freq_base = v ? 500000.0f : 10000.0f,
                                             .freq_scale = v ? 0.25f : 1.0f,
                                             .mode = mode ? ENG_ROPE_NEOX : ENG_ROPE_NORM};
                struct pair px;
                pair_new(t, NH * HS, T, x, &px, 0);
                both_begin(t, &s);
                assert_ok(eng_op_rope(t->ref, &px.r.t, (int32_t)NH, &rp));
                assert_ok(eng_op_rope(t->dut, &px.d.t, (int32_t)NH, &rp));
                both_end(t);
                char what[64];
                snprintf(what, sizeof what, "rope %s n_rot=%d base=%g scale=%g",
                         mode ? "neox" : "norm", nrot, rp.freq_base, rp.freq_scale);
                compare(t, &px, 2e-6, 1e-5, what);
                pair_free(&px);
            }
    free(x);
}

/* KV storage on both backends, every slot filled with the same random values. */
struct kvpair {
    eng_kv_storage_t *r, *d;
};

static void kv_new(struct T *t, enum eng_kv_format f, int L, int NKV, int HS, int bs, int nb,
                   bool fill_random, struct kvpair *kv)
{
    struct eng_kv_layout lay = {.format = f, .n_layers = L, .n_kv_heads = NKV, .head_dim = HS,
                                .block_size = bs, .n_blocks = nb};
    assert_ok(eng_kv_storage_new(t->ref, &lay, &kv->r));
    assert_ok(eng_kv_storage_new(t->dut, &lay, &kv->d));
    if (!fill_random)
        return;
    const int64_t row = (int64_t)NKV * HS, slots = (int64_t)nb * bs;
    const enum eng_dtype dt = f == ENG_KV_F16 ? ENG_DTYPE_F16 : ENG_DTYPE_F32;
    const size_t rb = eng_dtype_row_bytes(dt, row);
    float *v = xmalloc(sizeof(float) * (size_t)row);
    unsigned char *bytes = xmalloc(rb * (size_t)slots);
    for (int l = 0; l < L; l++)
        for (int kind = 0; kind < 2; kind++) {
            for (int64_t s = 0; s < slots; s++) {
                fill(t, v, (size_t)row, 1.5f);
                eng_row_from_f32(dt, v, bytes + (size_t)s * rb, row);
            }
            assert_ok(eng_tensor_set(t->ref, kind ? &kv->r->v[l] : &kv->r->k[l], bytes, 0, rb * (size_t)slots));
            assert_ok(eng_tensor_set(t->dut, kind ? &kv->d->v[l] : &kv->d->k[l], bytes, 0, rb * (size_t)slots));
        }
    free(v);
    free(bytes);
}

static void kv_free(struct kvpair *kv)
{
    eng_kv_storage_free(kv->r);
    eng_kv_storage_free(kv->d);
}

/* Layer l's K and V on both backends: byte for byte (tol < 0) or within tol relative. */
static void kv_compare(struct T *t, struct kvpair *kv, int l, double tol, const char *what)
{
    for (int kind = 0; kind < 2; kind++) {
        const eng_tensor_t *a = kind ? &kv->r->v[l] : &kv->r->k[l];
        const eng_tensor_t *b = kind ? &kv->d->v[l] : &kv->d->k[l];
        const size_t n = eng_tensor_nbytes(a);
        unsigned char *x = xmalloc(n), *y = xmalloc(n);
        assert_ok(eng_tensor_get(t->ref, a, x, 0, n));
        assert_ok(eng_tensor_get(t->dut, b, y, 0, n));
        if (tol < 0) {
            size_t i = 0;
            while (i < n && x[i] == y[i])
                i++;
            assert_msg(i == n, "%s: %s cache of layer %d differs at byte %zu", what,
                  kind ? "V" : "K", l, i);
        } else {
            const int64_t ne = eng_tensor_nelements(a), row = a->ne[0];
            float *fx = xmalloc(sizeof(float) * (size_t)ne), *fy = xmalloc(sizeof(float) * (size_t)ne);
            for (int64_t r = 0; r < ne / row; r++) {
                eng_row_to_f32(a->dtype, x + (size_t)r * a->nb[1], fx + r * row, row);
                eng_row_to_f32(a->dtype, y + (size_t)r * a->nb[1], fy + r * row, row);
            }
            int64_t bad = 0;
            for (int64_t i = 0; i < ne; i++)
                if (!(fabsf(fx[i] - fy[i]) <= tol * (1.0 + fabsf(fx[i]))))
                    bad++;
            assert_msg(bad == 0, "%s: %lld values of the %s cache of layer %d differ", what,
                  (long long)bad, kind ? "V" : "K", l);
            free(fx);
            free(fy);
        }
        free(x);
        free(y);
    }
}

static void test_kv_write(void **state)
{
    struct T *t = *state;
    for (int f = 0; f < 2; f++) {
        const int NKV = 2, HS = 8, bs = 4, nb = 6;
        struct kvpair kv;
        kv_new(t, f ? ENG_KV_F16 : ENG_KV_F32, 2, NKV, HS, bs, nb, false, &kv);
        struct stepbuf s;
        step_init(&s, 2, 3);
        s.block_table[0] = 4;
        s.block_table[1] = 1;
        s.block_table[3] = 2;
        const int32_t seqs[] = {0, 0, 0, 1, 0}, poss[] = {3, 4, 5, 2, 6};
        for (int i = 0; i < 5; i++)
            step_add(&s, 0, seqs[i], poss[i], bs);
        const int64_t row = NKV * HS;
        float *k = xmalloc(sizeof(float) * (size_t)(row * 5)), *v = xmalloc(sizeof(float) * (size_t)(row * 5));
        fill(t, k, (size_t)(row * 5), 4.0f);
        fill(t, v, (size_t)(row * 5), 4.0f);
        k[3] = 1e-6f;       // a subnormal in F16
        k[4] = 70000.0f;    // overflows F16
        struct pair pk, pv;
        pair_new(t, row, 5, k, &pk, 0);
        pair_new(t, row, 5, v, &pv, 0);
        both_begin(t, &s);
        assert_ok(eng_op_kv_write(t->ref, kv.r, 1, &pk.r.t, &pv.r.t));
        assert_ok(eng_op_kv_write(t->dut, kv.d, 1, &pk.d.t, &pv.d.t));
        both_end(t);
        kv_compare(t, &kv, 0, -1, f ? "kv_write f16 (other layer)" : "kv_write f32 (other layer)");
        kv_compare(t, &kv, 1, -1, f ? "kv_write f16" : "kv_write f32");
        pair_free(&pk);
        pair_free(&pv);
        free(k);
        free(v);
        kv_free(&kv);
    }
}

/* A step over three sequences: one long decode (length `long_len`), a prefill of 7, and 2
 * tokens in the middle of a third; block tables are a shuffled set of physical blocks. */
static void att_step(struct T *t, struct stepbuf *s, int bs, int nb, int long_len, bool decode_only)
{
    const int max_blocks = (long_len + bs - 1) / bs + 1;
    step_init(s, 3, max_blocks);
    int *perm = xmalloc(sizeof(int) * (size_t)nb);
    for (int i = 0; i < nb; i++)
        perm[i] = i;
    for (int i = nb - 1; i > 0; i--) {
        int j = (int)(rnd(t) % (uint32_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    int next = 0;
    const int lens[3] = {long_len, 7, 42};
    for (int q = 0; q < 3; q++)
        for (int b = 0; b < (lens[q] + bs - 1) / bs; b++)
            s->block_table[q * max_blocks + b] = perm[next++];
    free(perm);
    step_add(s, 1, 0, long_len - 1, bs);
    if (!decode_only) {
        for (int p = 0; p < 7; p++)
            step_add(s, 2, 1, p, bs);
        step_add(s, 3, 2, 40, bs);
        step_add(s, 4, 2, 41, bs);
    }
}

static void test_attention(void **state)
{
    struct T *t = *state;
    static const int cfg[][4] = {{4, 4, 8, 4}, {8, 2, 16, 16}, {16, 2, 32, 16}, {12, 1, 64, 16},
                                 {2, 2, 128, 16}};    // NH, NKV, HS, block size
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        for (int f = 0; f < 2; f++) {
            for (int dec = 0; dec < 2; dec++) {
                const int NH = cfg[c][0], NKV = cfg[c][1], HS = cfg[c][2], bs = cfg[c][3];
                const int long_len = c % 2 ? 300 : 700;
                const int nb = (long_len + bs - 1) / bs + 8 / bs + 4 + 42 / bs + 4;
                struct kvpair kv;
                kv_new(t, f ? ENG_KV_F16 : ENG_KV_F32, 1, NKV, HS, bs, nb, true, &kv);
                struct stepbuf s;
                att_step(t, &s, bs, nb, long_len, dec == 1);
                const int64_t T = s.st.n_tokens;
                float *q = xmalloc(sizeof(float) * (size_t)(T * NH * HS));
                fill(t, q, (size_t)(T * NH * HS), 1.0f);
                struct pair pq, po;
                pair_new(t, (int64_t)NH * HS, T, q, &pq, 0);
                pair_new(t, (int64_t)NH * HS, T, NULL, &po, 0);
                const float scale = 1.0f / sqrtf((float)HS);
                both_begin(t, &s);
                assert_ok(eng_op_attention(t->ref, &po.r.t, &pq.r.t, kv.r, 0, NH, scale));
                assert_ok(eng_op_attention(t->dut, &po.d.t, &pq.d.t, kv.d, 0, NH, scale));
                both_end(t);
                char what[96];
                snprintf(what, sizeof what, "attention NH=%d NKV=%d HS=%d bs=%d %s %s", NH, NKV, HS,
                         bs, f ? "f16" : "f32", dec ? "decode" : "mixed");
                compare(t, &po, 2e-5, 2e-4, what);
                pair_free(&pq);
                pair_free(&po);
                free(q);
                kv_free(&kv);
            }
        }
    }
}

static void test_elementwise(void **state)
{
    struct T *t = *state;
    const int64_t C = 300, R = 7;
    float *a = xmalloc(sizeof(float) * (size_t)(C * R)), *b = xmalloc(sizeof(float) * (size_t)(C * R));
    fill(t, a, (size_t)(C * R), 8.0f);
    fill(t, b, (size_t)(C * R), 2.0f);
    for (int op = 0; op < 2; op++)
        for (int alias = 0; alias < 2; alias++) {
            struct pair pa, pb, po;
            pair_new(t, C, R, a, &pa, 0);
            pair_new(t, C, R, b, &pb, 0);
            pair_new(t, C, R, NULL, &po, 0);
            struct pair *o = alias ? &pa : &po;
            if (op == 0) {
                assert_ok(eng_op_swiglu(t->ref, &o->r.t, &pa.r.t, &pb.r.t));
                assert_ok(eng_op_swiglu(t->dut, &o->d.t, &pa.d.t, &pb.d.t));
            } else {
                assert_ok(eng_op_add(t->ref, &o->r.t, &pa.r.t, &pb.r.t));
                assert_ok(eng_op_add(t->dut, &o->d.t, &pa.d.t, &pb.d.t));
            }
            compare(t, o, 1e-6, 1e-5, op ? (alias ? "add in place" : "add")
                                          : (alias ? "swiglu in place" : "swiglu"));
            pair_free(&pa);
            pair_free(&pb);
            pair_free(&po);
        }
    free(a);
    free(b);
}

static void test_gather(void **state)
{
    struct T *t = *state;
    const int64_t C = 40, T = 10;
    struct stepbuf s;
    step_init(&s, 1, 1);
    s.block_table[0] = 0;
    for (int i = 0; i < T; i++)
        step_add(&s, 0, 0, i, 16);
    const int32_t rows[] = {1, 3, 4, 9};
    memcpy(s.out_rows, rows, sizeof rows);
    s.st.n_out = 4;
    float *x = xmalloc(sizeof(float) * (size_t)(C * T));
    fill(t, x, (size_t)(C * T), 1.0f);
    for (int alias = 0; alias < 2; alias++) {
        struct pair px, po;
        pair_new(t, C, T, x, &px, 0);
        pair_new(t, C, 4, NULL, &po, 0);
        eng_tensor_t or_ = po.r.t, od = po.d.t;
        if (alias) {     // out is a view of the first rows of x
            or_.data = px.r.t.data;
            od.data = px.d.t.data;
        }
        both_begin(t, &s);
        assert_ok(eng_op_gather_rows(t->ref, &or_, &px.r.t));
        assert_ok(eng_op_gather_rows(t->dut, &od, &px.d.t));
        both_end(t);
        compare(t, alias ? &px : &po, 0.0, 0.0, alias ? "gather in place" : "gather");
        pair_free(&px);
        pair_free(&po);
    }
    free(x);
}

/* --- several decode steps: a one-layer model's ops, positions advancing ------------------------------ */
static void steps_plain(struct T *t)
{
    const int V = 50, C = 64, NH = 4, NKV = 2, HS = 16, bs = 16, nb = 64, B = 3;
    struct wpair wte, wq, wk;
    wpair_new(t, ENG_DTYPE_F16, C, V, 1.0f, &wte);
    wpair_new(t, ENG_DTYPE_F16, C, NH * HS, 0.2f, &wq);
    wpair_new(t, ENG_DTYPE_F16, C, NKV * HS, 0.2f, &wk);
    float *nw = xmalloc(sizeof(float) * C);
    fill(t, nw, C, 1.0f);
    struct pair pn;
    pair_new(t, C, 1, nw, &pn, 0);
    struct kvpair kv;
    kv_new(t, ENG_KV_F16, 1, NKV, HS, bs, nb, false, &kv);
    const struct eng_rope_params rp = {.n_rot = HS, .freq_base = 10000.0f, .freq_scale = 1.0f,
                                       .mode = ENG_ROPE_NEOX};
    int32_t len[8];      // B <= 8
    struct pair bx, bq, bk, ba, bo;      // activations, allocated once for the largest step
    pair_new(t, C, MAXT, NULL, &bx, 0);
    pair_new(t, NH * HS, MAXT, NULL, &bq, 0);
    pair_new(t, NKV * HS, MAXT, NULL, &bk, 0);
    pair_new(t, NH * HS, MAXT, NULL, &ba, 0);
    pair_new(t, NH * HS, B, NULL, &bo, 0);
    for (int q = 0; q < B; q++)
        len[q] = 0;
    // step 0: prefill 20 tokens of seq 0 and 5 of seq 1; then decode steps of B tokens,
    // crossing position 256 (a new attention plan) on the way
    for (int step = 0; step < 12; step++) {
        struct stepbuf s;
        step_init(&s, B, 32);
        for (int q = 0; q < B; q++)
            for (int b = 0; b < 32; b++)
                s.block_table[q * 32 + b] = q * 20 + b % 20;
        if (step == 0) {
            for (int i = 0; i < 20; i++)
                step_add(&s, (int32_t)(rnd(t) % V), 0, len[0]++, bs);
            for (int i = 0; i < 5; i++)
                step_add(&s, (int32_t)(rnd(t) % V), 1, len[1]++, bs);
            for (int i = 0; i < 2; i++)
                step_add(&s, (int32_t)(rnd(t) % V), 2, len[2]++, bs);
        } else {
            // jumps of seq 0 (the cache in between holds zeros on both sides): across a
            // 64-position chunk within one replayed plan, then across the 256 plan bucket
            if (step == 3)
                len[0] = 62;
            if (step == 6)
                len[0] = 250;
            for (int q = 0; q < B; q++)
                step_add(&s, (int32_t)(rnd(t) % V), q, len[q]++, bs);
        }
        for (int q = 0; q < B; q++)
            s.seq_len[q] = len[q] > 0 ? len[q] : 1;
        const int T = s.st.n_tokens;
        s.st.n_out = B;
        for (int q = 0, i = 0; i < T; i++)     // the last token of each sequence
            if (i == T - 1 || s.seq[i + 1] != s.seq[i] || T == B)
                s.out_rows[q++] = i;
        struct pair px = pair_rows(&bx, T), pq = pair_rows(&bq, T), pk = pair_rows(&bk, T),
                    pa = pair_rows(&ba, T), po = pair_rows(&bo, B);
        float *got = xmalloc(sizeof(float) * (size_t)(B * NH * HS));
        float *want = xmalloc(sizeof(float) * (size_t)(B * NH * HS));
        for (int side = 0; side < 2; side++) {
            eng_backend_t *be = side ? t->dut : t->ref;
            eng_kv_storage_t *kvs = side ? kv.d : kv.r;
            const eng_tensor_t *w_e = side ? &wte.d : &wte.r, *w_q = side ? &wq.d : &wq.r,
                               *w_k = side ? &wk.d : &wk.r;
#define S(p) (side ? &(p).d.t : &(p).r.t)
            assert_ok(eng_step_begin(be, &s.st));
            assert_ok(eng_op_embed(be, S(px), w_e));
            assert_ok(eng_op_rmsnorm(be, S(px), S(px), S(pn), 1e-5f));
            assert_ok(eng_op_matmul(be, S(pq), S(px), w_q));
            assert_ok(eng_op_matmul(be, S(pk), S(px), w_k));
            assert_ok(eng_op_rope(be, S(pq), NH, &rp));
            assert_ok(eng_op_rope(be, S(pk), NKV, &rp));
            assert_ok(eng_op_kv_write(be, kvs, 0, S(pk), S(pk)));
            assert_ok(eng_op_attention(be, S(pa), S(pq), kvs, 0, NH, 0.25f));
            // a residual add and the RMSNorm of its result (the CUDA backend fuses the pair);
            // the norm writes over the add's second input, as the engine's forward does
            assert_ok(eng_op_add(be, S(pa), S(pa), S(pq)));
            assert_ok(eng_op_rmsnorm(be, S(pq), S(pa), S(pn), 1e-5f));
            assert_ok(eng_op_gather_rows(be, S(po), S(pq)));
            assert_ok(eng_tensor_get(be, S(po), side ? got : want, 0, eng_tensor_nbytes(S(po))));
            assert_ok(eng_step_end(be));
#undef S
        }
        int bad = 0;
        for (int i = 0; i < B * NH * HS; i++)
            if (!(fabsf(got[i] - want[i]) <= 2e-3f + 2e-3f * fabsf(want[i])))
                bad++;
        assert_msg(bad == 0, "decode step %d (%d tokens): %d of %d outputs differ", step, T, bad,
              B * NH * HS);
        free(got);
        free(want);
    }
    pair_free(&bx);
    pair_free(&bq);
    pair_free(&bk);
    pair_free(&ba);
    pair_free(&bo);
    kv_compare(t, &kv, 0, 2e-3, "steps: KV cache after all steps");
    kv_free(&kv);
    pair_free(&pn);
    free(nw);
    wpair_free(t, &wte);
    wpair_free(t, &wq);
    wpair_free(t, &wk);
}

static void test_steps(void **state)
{
    struct T *t = *state;
    steps_plain(t);
#ifdef DUT_CUDA
    // with graphs on, the repeated decode steps must have been replayed, not only run
    struct gpu_stats gs;
    gpu_backend_stats(t->dut, &gs);
    const char *env = getenv("ORTHOD_CUDA_GRAPHS");
    if (!env || strcmp(env, "0") != 0) {
        assert_msg(gs.graph_captures > 0 && gs.graph_launches > gs.graph_captures,
              "decode steps were not replayed as graphs: captures %llu launches %llu eager %llu",
              (unsigned long long)gs.graph_captures, (unsigned long long)gs.graph_launches,
              (unsigned long long)gs.eager_steps);
        const char *fenv = getenv("ORTHOD_CUDA_FUSE");
        if (!fenv || strcmp(fenv, "0") != 0)
            assert_msg(gs.fused_records > 0, "no records were fused");
    } else {
        assert_msg(gs.graph_launches == 0 && gs.fused_records == 0,
              "graphs launched or records fused with ORTHOD_CUDA_GRAPHS=0");
    }
#endif
}

/* --- near misses of the fused patterns: each must keep the separate ops' meaning ---------------- */
static void test_fusion_guards(void **state)
{
    struct T *t = *state;
    const int C = 64, T = 4, NH = 2, HS = 32;
    float *h = xmalloc(sizeof(float) * (size_t)(C * (T + 1)) * 4);
    fill(t, h, (size_t)(C * (T + 1)) * 4, 2.0f);
    struct pair a, b, c, o, w, q, k;
    pair_new(t, C, T + 1, h, &a, 0);
    pair_new(t, C, T + 1, h + C * (T + 1), &b, 0);
    pair_new(t, C, T, h + 2 * C * (T + 1), &c, 0);
    pair_new(t, C, T, NULL, &o, 0);
    pair_new(t, C, 1, h + 3 * C * (T + 1), &w, 0);
    pair_new(t, C, T, h + 2 * C * (T + 1), &q, 0);
    pair_new(t, C, T, h + C * (T + 1), &k, 0);
    struct kvpair kv;
    kv_new(t, ENG_KV_F32, 1, NH, HS, 16, 2, false, &kv);
    struct stepbuf s;
    step_init(&s, 1, 2);
    s.block_table[0] = 1;
    for (int i = 0; i < T; i++)
        step_add(&s, 0, 0, i + 3, 16);
    s.st.n_out = 1;
    s.out_rows[0] = T - 1;
    const struct eng_rope_params r1 = {.n_rot = HS, .freq_base = 10000.0f, .freq_scale = 1.0f,
                                       .mode = ENG_ROPE_NORM};
    struct eng_rope_params r2 = r1;
    r2.freq_base = 500000.0f;
    for (int side = 0; side < 2; side++) {
        eng_backend_t *be = side ? t->dut : t->ref;
#define S(p) (side ? &(p).d.t : &(p).r.t)
        // views: rows 0..T-1 of a and b, and rows 1..T of b (overlapping its rows 0..T-1)
        eng_tensor_t a0 = *S(a), b0 = *S(b), b1 = *S(b);
        a0.ne[1] = b0.ne[1] = b1.ne[1] = T;
        a0.nb[2] = a0.nb[3] = b0.nb[2] = b0.nb[3] = b1.nb[2] = b1.nb[3] = a0.nb[1] * T;
        b1.data = (char *)b1.data + a0.nb[1];
        assert_ok(eng_step_begin(be, &s.st));
        // an add, then the norm of another tensor
        assert_ok(eng_op_add(be, &a0, &a0, &b0));
        assert_ok(eng_op_rmsnorm(be, S(o), S(c), S(w), 1e-5f));
        // an add, then its norm written one row off the add's input
        assert_ok(eng_op_add(be, S(c), S(c), &b1));
        assert_ok(eng_op_rmsnorm(be, &b0, S(c), S(w), 1e-5f));
        // two RoPEs with different bases, then the KV write
        assert_ok(eng_op_rope(be, S(q), NH, &r1));
        assert_ok(eng_op_rope(be, S(k), NH, &r2));
        assert_ok(eng_op_kv_write(be, side ? kv.d : kv.r, 0, S(k), S(q)));
        assert_ok(eng_step_end(be));
#undef S
    }
    compare(t, &a, 1e-6, 1e-5, "add then unrelated norm: sum");
    compare(t, &o, 1e-6, 1e-5, "add then unrelated norm: norm");
    compare(t, &b, 1e-6, 1e-5, "add then norm over its input, one row off");
    compare(t, &c, 1e-6, 1e-5, "add then norm over its input, one row off (sum)");
    compare(t, &q, 2e-6, 1e-5, "rope q (base 1e4)");
    compare(t, &k, 2e-6, 1e-5, "rope k (base 5e5)");
    kv_compare(t, &kv, 0, 1e-5, "kv after ropes of different bases");
    kv_free(&kv);
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    pair_free(&o);
    pair_free(&w);
    pair_free(&q);
    pair_free(&k);
    free(h);
}

/* --- errors: the op fails, the backend keeps working ------------------------------------------------- */
static void test_errors(void **state)
{
    struct T *t = *state;
    eng_backend_t *be = t->dut;
    // a token id past the vocabulary
    struct wpair w;
    wpair_new(t, ENG_DTYPE_F16, 32, 10, 1.0f, &w);
    struct stepbuf s;
    step_init(&s, 1, 2);
    s.block_table[0] = 0;
    step_add(&s, 10, 0, 0, 16);
    struct tb out;
    tb_new(be, ENG_DTYPE_F32, 32, 1, 0, &out);
    assert_ok(eng_step_begin(be, &s.st));
    assert_msg(eng_op_embed(be, &out.t, &w.d) == ERR_INVAL, "embed accepted token 10 of 10");
    assert_ok(eng_step_end(be));
    // a block table entry past the cache, and an unallocated (-1) block
    struct kvpair kv;
    kv_new(t, ENG_KV_F16, 1, 1, 32, 16, 2, false, &kv);
    for (int bad = 0; bad < 2; bad++) {
        struct stepbuf s2;
        step_init(&s2, 1, 2);
        s2.block_table[0] = 0;
        s2.block_table[1] = bad ? -1 : 2;
        s2.tokens[0] = 0;
        s2.pos[0] = 20;
        s2.slot[0] = 4;
        s2.seq_len[0] = 21;
        s2.st.n_tokens = 1;
        struct tb q, o;
        tb_new(be, ENG_DTYPE_F32, 32, 1, 0, &q);
        tb_new(be, ENG_DTYPE_F32, 32, 1, 0, &o);
        assert_ok(eng_step_begin(be, &s2.st));
        assert_msg(eng_op_attention(be, &o.t, &q.t, kv.d, 0, 1, 1.0f) == ERR_INVAL,
              "attention accepted block %d", s2.block_table[1]);
        assert_ok(eng_step_end(be));
        tb_free(&q);
        tb_free(&o);
    }
    kv_free(&kv);
#ifdef DUT_CUDA
    // device out of memory: that allocation fails, nothing else does
    fprintf(stderr, "(errors logged next are expected: a 1 PiB buffer, a device that does not exist)\n");
    eng_buffer_t *huge = NULL;
    int rc = eng_buffer_new(be, (size_t)1 << 50, ENG_BUF_KV, &huge);
    assert_msg(rc == ERR_DEVICE_NOMEM, "a 1 PiB buffer gave %s, want ERR_DEVICE_NOMEM", err_name(rc));
    eng_backend_t *none = NULL;
    struct errbuf eb = {{0}};
    rc = gpu_backend_cuda_new(63, NULL, &none, &eb);
    assert_msg(rc == ERR_NOTFOUND && strstr(eb.msg, "cuda:63") != NULL,
          "cuda:63 gave %s \"%s\", want ERR_NOTFOUND naming it", err_name(rc), eb.msg);
#endif
    // still working: embed a valid token
    step_init(&s, 1, 2);
    s.block_table[0] = 0;
    step_add(&s, 9, 0, 0, 16);
    assert_ok(eng_step_begin(be, &s.st));
    assert_ok(eng_op_embed(be, &out.t, &w.d));
    float row[32], want[32];
    assert_ok(eng_tensor_get(be, &out.t, row, 0, sizeof row));
    assert_ok(eng_step_end(be));
    eng_row_to_f32(ENG_DTYPE_F16, (const char *)w.host + 9 * 64, want, 32);
    assert_msg(memcmp(row, want, sizeof row) == 0, "embed after errors returned wrong values");
    tb_free(&out);
    wpair_free(t, &w);
}

/* --- main ------------------------------------------------------------------------------------------ */
static int new_dut(eng_backend_t **out)
{
#ifdef DUT_CUDA
    struct errbuf eb = {{0}};
    struct log_sink sink = {.fn = NULL, .ctx = NULL, .min = LOG_WARN};
    int rc = gpu_backend_cuda_new(0, &sink, out, &eb);
    if (rc < 0)
        fprintf(stderr, "cannot create the CUDA backend: %s\n", eb.msg);
    return rc;
#else
    unsetenv("ORTHOD_CPU_LEVEL");
    struct eng_cpu_params cp = {.n_threads = 2};
    return eng_cpu_backend_new(&cp, out);
#endif
}

/* Group fixtures: the scalar CPU reference and a fresh backend under test. */
static int setup_group(void **state, const char *label)
{
    struct T *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->rng = 0x9e3779b97f4a7c15ull;
    t->label = label;
    setenv("ORTHOD_CPU_LEVEL", "scalar", 1);
    struct eng_cpu_params rp = {.n_threads = 2};
    assert_ok(eng_cpu_backend_new(&rp, &t->ref));
    assert_ok(new_dut(&t->dut));
    print_message("%s: reference %s; under test %s\n", label, eng_backend_describe(t->ref),
                  eng_backend_describe(t->dut));
    *state = t;
    return 0;
}

static int teardown_group(void **state)
{
    struct T *t = *state;
    eng_backend_free(t->dut);
    eng_backend_free(t->ref);
    free(t);
#ifdef DUT_CUDA
    unsetenv("ORTHOD_CUDA_GEMV_ROWS");
    unsetenv("ORTHOD_CUDA_GRAPHS");
#endif
#ifdef ORTHOD_GPU_EMU
    gpu_emu_set_capture_fails(0);
#endif
    return 0;
}

static int setup_default(void **state) { return setup_group(state, "default"); }

#ifdef ORTHOD_GPU_EMU
/* CUDA refuses the capture: the backend turns graphs off and runs the steps eagerly. */
static int setup_capture_refused(void **state)
{
    gpu_emu_set_capture_fails(1);
    return setup_group(state, "capture refused");
}

static void test_capture_refused(void **state)
{
    struct T *t = *state;
    steps_plain(t);
    struct gpu_stats gs;
    gpu_backend_stats(t->dut, &gs);
    assert_msg(gs.graph_captures == 0 && gs.graph_launches == 0 && gs.eager_steps > 0,
               "after a refused capture: captures %llu launches %llu eager %llu",
               (unsigned long long)gs.graph_captures, (unsigned long long)gs.graph_launches,
               (unsigned long long)gs.eager_steps);
}
#endif

#ifdef DUT_CUDA
/* Every matmul through cuBLAS, and no graph replay. */
static int setup_cublas_only(void **state)
{
    setenv("ORTHOD_CUDA_GEMV_ROWS", "0", 1);
    setenv("ORTHOD_CUDA_GRAPHS", "0", 1);
    return setup_group(state, "cublas-only");
}
#endif

int main(void)
{
#if defined(TEST_CUDA) && !defined(ORTHOD_GPU_EMU)
    if (gpu_device_count() == 0) {
        printf("SKIP: no CUDA device visible\n");
        return 77;
    }
#endif
    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_kv_write),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_fusion_guards),
        cmocka_unit_test(test_errors),
    };
    int failed = cmocka_run_group_tests_name("default", all, setup_default, teardown_group);
#ifdef ORTHOD_GPU_EMU
    const struct CMUnitTest refused[] = {cmocka_unit_test(test_capture_refused)};
    failed += cmocka_run_group_tests_name("capture refused", refused, setup_capture_refused,
                                          teardown_group);
#endif
#ifdef DUT_CUDA
    const struct CMUnitTest cublas[] = {cmocka_unit_test(test_matmul), cmocka_unit_test(test_steps)};
    failed += cmocka_run_group_tests_name("cublas-only", cublas, setup_cublas_only,
                                          teardown_group);
#endif
    return tu_exit(failed, 0);
}
