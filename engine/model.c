/* engine/model.c: loading a Llama-family model from a model file (GGUF, or the in-memory
 * file the Hugging Face loader assembles) onto a backend.
 * Owns: hyper-parameters from metadata, shape/dtype checks of every tensor (errors name
 * the tensor), weight preparation on the backend (zero copy on the CPU), model info. */
#include "model_impl.h"

#include "orthod_config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if ORTHOD_HAVE_JANSSON
#include "format/hf.h"
#endif

#define MAX_LAYERS 1024
#define MAX_DIM (1 << 20)

/* --- metadata ------------------------------------------------------------------------- */

static int get_u32_arch(const eng_gguf_t *g, const char *arch, const char *suffix, uint32_t *out,
                        bool required, uint32_t def, struct errbuf *eb)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = eng_gguf_get_u32(g, key, out);
    if (rc == ERR_NOTFOUND && !required) {
        *out = def;
        return 0;
    }
    if (rc == ERR_NOTFOUND)
        return err_set(eb, ERR_CORRUPT, "model metadata lacks '%s'", key);
    if (rc < 0)
        return err_set(eb, ERR_CORRUPT, "model metadata '%s' has the wrong type", key);
    return 0;
}

static int get_f32_arch(const eng_gguf_t *g, const char *arch, const char *suffix, float *out,
                        float def, struct errbuf *eb)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = eng_gguf_get_f32(g, key, out);
    if (rc == ERR_NOTFOUND) {
        *out = def;
        return 0;
    }
    if (rc < 0 || !isfinite(*out))
        return err_set(eb, ERR_CORRUPT, "model metadata '%s' is not a finite float", key);
    return 0;
}

static int read_hparams(const eng_gguf_t *g, struct eng_hparams *hp, struct errbuf *eb)
{
    const char *arch;
    size_t alen;
    memset(hp, 0, sizeof *hp);
    if (eng_gguf_get_str(g, "general.architecture", &arch, &alen) < 0)
        return err_set(eb, ERR_CORRUPT, "model metadata lacks 'general.architecture'");
    if (alen >= sizeof hp->arch)
        alen = sizeof hp->arch - 1;
    memcpy(hp->arch, arch, alen);
    hp->arch[alen] = '\0';
    if (strcmp(hp->arch, "llama") != 0)
        return err_set(eb, ERR_UNSUPPORTED,
                       "architecture '%s' is not supported (orthod runs the Llama family: "
                       "general.architecture = llama)", hp->arch);
    const char *a = hp->arch;
    uint32_t ctx, embd, nl, ff, nh, nkv, rot;
    int rc;
    if ((rc = get_u32_arch(g, a, "context_length", &ctx, false, 2048, eb)) < 0 ||
        (rc = get_u32_arch(g, a, "embedding_length", &embd, true, 0, eb)) < 0 ||
        (rc = get_u32_arch(g, a, "block_count", &nl, true, 0, eb)) < 0 ||
        (rc = get_u32_arch(g, a, "feed_forward_length", &ff, true, 0, eb)) < 0 ||
        (rc = get_u32_arch(g, a, "attention.head_count", &nh, true, 0, eb)) < 0 ||
        (rc = get_u32_arch(g, a, "attention.head_count_kv", &nkv, false, nh, eb)) < 0)
        return rc;
    if (embd == 0 || embd > MAX_DIM || nl == 0 || nl > MAX_LAYERS || ff == 0 || ff > MAX_DIM ||
        nh == 0 || nh > embd || embd % nh || nkv == 0 || nkv > nh || nh % nkv || ctx == 0 ||
        ctx > (1u << 24))
        return err_set(eb, ERR_CORRUPT,
                       "inconsistent hyper-parameters: n_embd=%u n_layer=%u n_ff=%u n_head=%u "
                       "n_head_kv=%u n_ctx=%u", embd, nl, ff, nh, nkv, ctx);
    uint32_t hs = embd / nh;
    if ((rc = get_u32_arch(g, a, "rope.dimension_count", &rot, false, hs, eb)) < 0)
        return rc;
    if (rot == 0 || rot > hs || rot % 2)
        return err_set(eb, ERR_CORRUPT, "rope.dimension_count %u does not fit head size %u", rot,
                       hs);
    hp->n_ctx_train = (int32_t)ctx;
    hp->n_embd = (int32_t)embd;
    hp->n_layer = (int32_t)nl;
    hp->n_ff = (int32_t)ff;
    hp->n_head = (int32_t)nh;
    hp->n_head_kv = (int32_t)nkv;
    hp->head_dim = (int32_t)hs;
    hp->n_rot = (int32_t)rot;
    if ((rc = get_f32_arch(g, a, "rope.freq_base", &hp->rope_freq_base, 10000.0f, eb)) < 0 ||
        (rc = get_f32_arch(g, a, "attention.layer_norm_rms_epsilon", &hp->rms_eps, 1e-5f, eb)) < 0)
        return rc;
    float factor = 1.0f;
    const char *stype;
    size_t slen;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (eng_gguf_get_str(g, key, &stype, &slen) == 0 && !(slen == 4 && !memcmp(stype, "none", 4))) {
        if (!(slen == 6 && !memcmp(stype, "linear", 6)))
            return err_set(eb, ERR_UNSUPPORTED, "rope scaling type '%.*s' is not supported (linear "
                           "and none are)", (int)(slen > 32 ? 32 : slen), stype);
        if ((rc = get_f32_arch(g, a, "rope.scaling.factor", &factor, 1.0f, eb)) < 0)
            return rc;
        // a denormal factor passes > 0 but its inverse overflows: every logit would be NaN
        if (!(factor > 0.0f) || !isfinite(1.0f / factor))
            return err_set(eb, ERR_CORRUPT, "rope.scaling.factor %g must be > 0 with a finite "
                           "inverse", (double)factor);
    }
    hp->rope_freq_scale = 1.0f / factor;
    if (!(hp->rope_freq_base > 0.0f) || !(hp->rms_eps > 0.0f))
        return err_set(eb, ERR_CORRUPT, "rope.freq_base and rms epsilon must be > 0");
    bool neox = false;
    rc = eng_gguf_get_bool(g, "orthod.rope.neox", &neox);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return err_set(eb, ERR_CORRUPT, "'orthod.rope.neox' must be a bool");
    hp->rope_mode = neox ? ENG_ROPE_NEOX : ENG_ROPE_NORM;
    return 0;
}

/* --- tensors ---------------------------------------------------------------------------- */

static int find_weight(eng_model_t *m, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                       bool optional, eng_tensor_t *out, struct errbuf *eb)
{
    int64_t i = eng_gguf_find_tensor(m->file, name);
    if (i < 0) {
        if (optional)
            return ERR_NOTFOUND;
        return err_set(eb, ERR_CORRUPT, "tensor '%s' is missing", name);
    }
    struct eng_gguf_tensor ti;
    eng_gguf_tensor_at(m->file, i, &ti);
    int64_t want[2] = {ne0, ne1};
    bool shape_ok = ti.ne[0] == ne0 && ti.ne[1] == (n_dims == 2 ? ne1 : 1) && ti.ne[2] == 1 &&
                    ti.ne[3] == 1;
    if (!shape_ok)
        return err_set(eb, ERR_CORRUPT,
                       "tensor '%s': shape [%lld, %lld, %lld, %lld] but the hyper-parameters "
                       "need [%lld, %lld]", name, (long long)ti.ne[0], (long long)ti.ne[1],
                       (long long)ti.ne[2], (long long)ti.ne[3], (long long)want[0],
                       (long long)(n_dims == 2 ? want[1] : 1));
    if (!eng_dtype_is_compute(ti.dtype))
        return err_set(eb, ERR_UNSUPPORTED,
                       "tensor '%s': type %s is not supported (f32, f16, bf16, q8_0, q4_0 are)",
                       name, eng_dtype_name(ti.dtype));
    int rc = eng_tensor_init(out, ti.dtype, n_dims, want);
    if (rc < 0 || eng_tensor_nbytes(out) != ti.nbytes)
        return err_set(eb, ERR_CORRUPT, "tensor '%s': byte size does not match its shape", name);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->data = (void *)ti.data;       // host bytes until prepared on the backend
    return 0;
}

/* The per-layer weights as data (model_impl.h: ENG_LAYER_WEIGHTS). */
enum dim { DIM_1, DIM_C, DIM_Q, DIM_KV, DIM_F };
static const struct layer_weight {
    const char *name;        /* blk.N.<name>.weight */
    size_t offset;           /* in struct eng_layer */
    int n_dims;              /* 1: an RMSNorm weight */
    enum dim ne0, ne1;
} layer_weights[] = {
#define ROW(field, name, n_dims, ne0, ne1) \
    {name, offsetof(struct eng_layer, field), n_dims, DIM_##ne0, DIM_##ne1},
    ENG_LAYER_WEIGHTS(ROW)
#undef ROW
};
#define N_LAYER_WEIGHTS (sizeof layer_weights / sizeof layer_weights[0])

static eng_tensor_t *layer_weight(struct eng_layer *L, size_t r)
{
    return (eng_tensor_t *)((char *)L + layer_weights[r].offset);
}

static int64_t dim_size(const struct eng_hparams *hp, enum dim d)
{
    switch (d) {
    case DIM_C: return hp->n_embd;
    case DIM_Q: return (int64_t)hp->n_head * hp->head_dim;
    case DIM_KV: return (int64_t)hp->n_head_kv * hp->head_dim;
    case DIM_F: return hp->n_ff;
    default: return 1;
    }
}

/* Calls fn for every weight of a loaded model once (the output projection only when it is
 * not tied to the embeddings); norm says whether it is an RMSNorm weight. */
static void each_weight(eng_model_t *m, void (*fn)(eng_tensor_t *w, bool norm, void *ctx),
                        void *ctx)
{
    fn(&m->tok_embd, false, ctx);
    fn(&m->output_norm, true, ctx);
    if (!m->hp.tied_output)
        fn(&m->output, false, ctx);
    for (int l = 0; l < m->hp.n_layer; l++)
        for (size_t r = 0; r < N_LAYER_WEIGHTS; r++)
            fn(layer_weight(&m->layers[l], r), layer_weights[r].n_dims == 1, ctx);
}

static void list_weight(eng_tensor_t *w, bool norm, void *ctx)
{
    (void)norm;
    eng_model_t *m = ctx;
    m->weights[m->n_weights++] = w;
}

/* Norm weights must be F32 for the rmsnorm op: the other dtypes are converted into one
 * host block (m->norms_f32). First pass: count the floats; second pass: convert. */
struct norm_pass {
    float *block;
    size_t n;
};

static void norm_to_f32(eng_tensor_t *t, bool norm, void *ctx)
{
    struct norm_pass *np = ctx;
    if (!norm || t->dtype == ENG_DTYPE_F32)
        return;
    if (np->block) {
        float *f = np->block + np->n;
        eng_row_to_f32(t->dtype, t->data, f, t->ne[0]);
        int64_t ne = t->ne[0];
        char name[64];
        memcpy(name, t->name, sizeof name);
        eng_tensor_init(t, ENG_DTYPE_F32, 1, &ne);
        memcpy(t->name, name, sizeof name);
        t->data = f;
    }
    np->n += (size_t)t->ne[0];
}

static int load_tensors(eng_model_t *m, struct errbuf *eb)
{
    const struct eng_hparams *hp = &m->hp;
    const int64_t C = hp->n_embd;
    int rc;
    int64_t ti = eng_gguf_find_tensor(m->file, "token_embd.weight");
    if (ti < 0)
        return err_set(eb, ERR_CORRUPT, "tensor 'token_embd.weight' is missing");
    struct eng_gguf_tensor te;
    eng_gguf_tensor_at(m->file, ti, &te);
    if (te.ne[1] <= 0 || te.ne[1] > (1 << 24))
        return err_set(eb, ERR_CORRUPT, "tensor 'token_embd.weight': bad vocabulary dimension");
    m->hp.n_vocab = (int32_t)te.ne[1];
    if ((rc = find_weight(m, "token_embd.weight", 2, C, hp->n_vocab, false, &m->tok_embd, eb)) < 0 ||
        (rc = find_weight(m, "output_norm.weight", 1, C, 1, false, &m->output_norm, eb)) < 0)
        return rc;
    rc = find_weight(m, "output.weight", 2, C, hp->n_vocab, true, &m->output, eb);
    if (rc == ERR_NOTFOUND) {
        m->output = m->tok_embd;          // tied embeddings
        snprintf(m->output.name, sizeof m->output.name, "output.weight(tied)");
        m->hp.tied_output = true;
    } else if (rc < 0) {
        return rc;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->weights = malloc(sizeof *m->weights * (3 + N_LAYER_WEIGHTS * (size_t)hp->n_layer));
    if (!m->layers || !m->weights)
        return ERR_NOMEM;
    for (int l = 0; l < hp->n_layer; l++) {
        for (size_t r = 0; r < N_LAYER_WEIGHTS; r++) {
            const struct layer_weight *lw = &layer_weights[r];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lw->name);
            if ((rc = find_weight(m, name, lw->n_dims, dim_size(hp, lw->ne0),
                                  dim_size(hp, lw->ne1), false, layer_weight(&m->layers[l], r),
                                  eb)) < 0)
                return rc;
        }
    }
    each_weight(m, list_weight, m);
    struct norm_pass np = {0};
    each_weight(m, norm_to_f32, &np);
    if (np.n > 0) {
        if (!(m->norms_f32 = malloc(sizeof(float) * np.n)))
            return ERR_NOMEM;
        np = (struct norm_pass){m->norms_f32, 0};
        each_weight(m, norm_to_f32, &np);
    }
    return 0;
}

static int prepare_weights(eng_model_t *m, struct errbuf *eb)
{
    size_t bytes = 0;
    for (size_t i = 0; i < m->n_weights; i++) {
        const eng_tensor_t *w = m->weights[i];
        if (w->ne[1] > 1 && !eng_backend_supports_matmul(m->be, w->dtype))
            return err_set(eb, ERR_UNSUPPORTED, "tensor '%s': the %s backend cannot multiply %s "
                           "weights", w->name, eng_backend_name(m->be), eng_dtype_name(w->dtype));
        bytes += eng_tensor_nbytes(w);
    }
    int rc = eng_weights_prepare(m->be, m->weights, m->n_weights, &m->weight_block);
    if (rc < 0)
        return err_set(eb, rc, "cannot place the weights (%zu tensors, %.1f MiB in the file) on "
                       "%s: %s", m->n_weights, (double)bytes / 1048576.0, eng_backend_name(m->be),
                       err_str(rc));
    m->prepared = true;
    if (m->hp.tied_output) {
        char name[64];
        memcpy(name, m->output.name, sizeof name);
        m->output = m->tok_embd;           // same device bytes
        memcpy(m->output.name, name, sizeof name);
    }
    return 0;
}

static void fill_info(eng_model_t *m, const char *path)
{
    struct eng_model_info *in = &m->info;
    memset(in, 0, sizeof *in);
    const char *name;
    size_t nlen;
    if (eng_gguf_get_str(m->file, "general.name", &name, &nlen) == 0 && nlen > 0) {
        if (nlen >= sizeof in->name)
            nlen = sizeof in->name - 1;
        memcpy(in->name, name, nlen);
    } else if (path) {
        const char *base = strrchr(path, '/');
        base = base && base[1] ? base + 1 : path;
        snprintf(in->name, sizeof in->name, "%s", base);
        char *dot = strrchr(in->name, '.');
        if (dot && strcmp(dot, ".gguf") == 0)
            *dot = '\0';
    } else {
        snprintf(in->name, sizeof in->name, "model");
    }
    snprintf(in->arch, sizeof in->arch, "%s", m->hp.arch);
    in->n_vocab = m->hp.n_vocab;
    in->n_ctx_train = m->hp.n_ctx_train;
    in->n_embd = m->hp.n_embd;
    in->n_layer = m->hp.n_layer;
    if (!m->weights)
        return;
    size_t by_dtype[ENG_DTYPE__MAX] = {0};
    for (size_t i = 0; i < m->n_weights; i++) {
        const eng_tensor_t *w = m->weights[i];
        size_t b = eng_tensor_nbytes(w);
        in->n_params += eng_tensor_nelements(w);
        if (w->ne[1] > 1)
            by_dtype[w->dtype] += b;
        if (w != &m->tok_embd)             // decode reads one embedding row, all else whole
            in->weight_bytes += b;
    }
    if (m->hp.tied_output)
        in->weight_bytes += eng_tensor_nbytes(&m->tok_embd);
    int best = 0;
    for (int t = 0; t < ENG_DTYPE__MAX; t++)
        if (by_dtype[t] > by_dtype[best])
            best = t;
    snprintf(in->dtype, sizeof in->dtype, "%s", eng_dtype_name((enum eng_dtype)best));
}

/* --- public ------------------------------------------------------------------------------- */

int eng_model_from_gguf(eng_gguf_t *g, const struct eng_model_params *p, eng_model_t **out,
                        struct errbuf *eb)
{
    return eng__model_from_gguf_named(g, p, NULL, out, eb);
}

int eng__model_from_gguf_named(eng_gguf_t *g, const struct eng_model_params *p, const char *path,
                               eng_model_t **out, struct errbuf *eb)
{
    eng_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        eng_gguf_free(g);
        return ERR_NOMEM;
    }
    m->file = g;
    m->log = p->log;
    int rc = eng_vocab_from_gguf(g, &m->vocab, eb);
    if (rc < 0)
        goto fail;
    if (p->vocab_only) {
        const char *arch;
        size_t alen;
        if (eng_gguf_get_str(g, "general.architecture", &arch, &alen) == 0) {
            size_t n = alen < sizeof m->hp.arch - 1 ? alen : sizeof m->hp.arch - 1;
            memcpy(m->hp.arch, arch, n);
        }
        m->hp.n_vocab = eng_vocab_n_tokens(m->vocab);
        fill_info(m, path);
        *out = m;
        return 0;
    }
    if (!p->be) {
        rc = err_set(eb, ERR_INVAL, "no backend given to load the model's weights on");
        goto fail;
    }
    m->be = p->be;
    if ((rc = read_hparams(g, &m->hp, eb)) < 0 || (rc = load_tensors(m, eb)) < 0)
        goto fail;
    if (eng_vocab_n_tokens(m->vocab) != m->hp.n_vocab) {
        rc = err_set(eb, ERR_CORRUPT, "the tokenizer has %d tokens but token_embd.weight has %d rows",
                     eng_vocab_n_tokens(m->vocab), m->hp.n_vocab);
        goto fail;
    }
    fill_info(m, path);
    if ((rc = prepare_weights(m, eb)) < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    eng_model_free(m);
    return rc;
}

int eng_model_load(const char *path, const struct eng_model_params *p, eng_model_t **out,
                   struct errbuf *eb)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return err_set(eb, ERR_NOTFOUND, "model '%s' not found (give a .gguf file or a Hugging "
                       "Face model folder)", path ? path : "(null)");
    eng_gguf_t *g = NULL;
    int rc;
    if (S_ISDIR(st.st_mode)) {
#if ORTHOD_HAVE_JANSSON
        rc = eng_hf_open(path, &g, eb);
#else
        rc = err_set(eb, ERR_UNSUPPORTED, "'%s' is a folder: loading Hugging Face models needs "
                     "orthod built with jansson (install libjansson-dev and rebuild)", path);
#endif
    } else {
        rc = eng_gguf_open(path, &g, eb);
    }
    if (rc < 0)
        return err_prefix(eb, rc, "%s", path);
    rc = eng__model_from_gguf_named(g, p, path, out, eb);
    if (rc < 0)
        return err_prefix(eb, rc, "%s", path);
    return 0;
}

void eng_model_free(eng_model_t *m)
{
    if (!m)
        return;
    if (m->prepared && m->be)      // allocates nothing: cannot leak device weights under OOM
        eng_weights_release(m->be, m->weights, m->n_weights, m->weight_block);
    free(m->weights);
    free(m->norms_f32);
    free(m->layers);
    eng_vocab_free(m->vocab);
    eng_gguf_free(m->file);
    free(m);
}

const struct eng_hparams *eng_model_hparams(const eng_model_t *m)
{
    return &m->hp;
}

const eng_vocab_t *eng_model_vocab(const eng_model_t *m)
{
    return m->vocab;
}

void eng_model_info(const eng_model_t *m, struct eng_model_info *out)
{
    *out = m->info;
}
