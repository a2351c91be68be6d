/* engine/train/export.c: a job's results as files other tools load.
 *   LoRA: adapter.gguf (llama.cpp's GGUF LoRA: general.type = adapter, adapter.type = lora,
 *         adapter.lora.alpha; "blk.N.attn_q.weight.lora_a" ne {in, r} and ".lora_b" ne
 *         {r, out}, scale alpha / r), and PEFT's adapter_config.json +
 *         adapter_model.safetensors (HF names, lora_A (r, in), lora_B (out, r)). For GGUF
 *         models with llama.cpp's rotary layout (NORM: q and k rows interleaved per head by
 *         the HF-to-GGUF conversion) the PEFT lora_B rows of q and k are permuted back to
 *         the HF order, so the adapter applies to the original HF model.
 *         rsLoRA (scale alpha / sqrt(r)): PEFT gets use_rslora; the GGUF gets
 *         alpha * sqrt(r) so that llama.cpp's alpha / r is the same scale.
 *   Full: model.gguf, the base model's metadata (tokenizer included) with the trained
 *         weights (matrices in the requested dtype, norms F32).
 * Every file is written atomically (temp, fsync, rename, fsync of the directory). */
#include "train_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int trn_write_atomic(const char *path, const void *const *parts, const size_t *sizes, int n,
                     struct errbuf *eb);
int trn_export_lora(eng_train_t *t, const char *dir, const char *base_name, struct errbuf *eb);

static const char *const hf_mod[TRN_NLIN] = {"self_attn.q_proj", "self_attn.k_proj",
                                             "self_attn.v_proj", "self_attn.o_proj",
                                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
static const char *const hf_short[TRN_NLIN] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};

static void free_ptr(void *p)
{
    free(p);
}

/* Host copy of a parameter's weights (owned by g). */
static int param_host(eng_train_t *t, eng_gguf_t *g, const struct trn_param *p, float **out)
{
    const int64_t n = trn_param_n(p);
    float *h = malloc((size_t)n * sizeof(float));
    if (!h)
        return ERR_NOMEM;
    int rc = eng_gguf_hold(g, h, free_ptr);
    if (rc < 0) {
        free(h);
        return rc;
    }
    if ((rc = trn_dev_get(t, p->w, h, n)) < 0)
        return rc;
    *out = h;
    return 0;
}

/* JSON string body of s (printable ASCII kept, the rest escaped). */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

struct st_entry {
    char name[160];
    int64_t rows, cols;
    const float *data;
};

/* safetensors: u64 header length, JSON header (padded with spaces to 8 bytes), data. */
static int write_safetensors(const char *path, const struct st_entry *e, int n,
                             struct errbuf *eb)
{
    size_t cap = 256 + (size_t)n * 256, len = 0;
    char *hdr = malloc(cap);
    if (!hdr)
        return ERR_NOMEM;
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const uint64_t bytes = (uint64_t)e[i].rows * (uint64_t)e[i].cols * 4;
        len += (size_t)snprintf(hdr + len, cap - len,
                                ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                                "\"data_offsets\":[%llu,%llu]}",
                                e[i].name, (long long)e[i].rows, (long long)e[i].cols,
                                (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8 && len + 1 < cap)
        hdr[len++] = ' ';
    uint64_t hl = len;
    uint8_t hlb[8];
    for (int i = 0; i < 8; i++)
        hlb[i] = (uint8_t)(hl >> (8 * i));
    const void **parts = malloc(((size_t)n + 2) * sizeof *parts);
    size_t *sizes = malloc(((size_t)n + 2) * sizeof *sizes);
    int rc = ERR_NOMEM;
    if (parts && sizes) {
        parts[0] = hlb;
        sizes[0] = 8;
        parts[1] = hdr;
        sizes[1] = len;
        for (int i = 0; i < n; i++) {
            parts[2 + i] = e[i].data;
            sizes[2 + i] = (size_t)e[i].rows * (size_t)e[i].cols * 4;
        }
        rc = trn_write_atomic(path, (const void *const *)parts, sizes, n + 2, eb);
    }
    free(parts);
    free(sizes);
    free(hdr);
    return rc;
}

int trn_export_lora(eng_train_t *t, const char *dir, const char *base_name, struct errbuf *eb)
{
    const struct eng_train_config *c = &t->cfg;
    char path[PATH_MAX];
    eng_gguf_t *g;
    int rc = eng_gguf_new(&g);
    if (rc < 0)
        return rc;
    const float alpha_gguf = c->lora_rslora ? c->lora_alpha * sqrtf((float)t->R) : c->lora_alpha;
    const char *mname = base_name ? base_name : t->m->info.name;
    char nm[160];
    snprintf(nm, sizeof nm, "%s LoRA r%d", mname, (int)t->R);
    struct st_entry *st = calloc((size_t)t->n_params, sizeof *st);
    if (!st) {
        eng_gguf_free(g);
        return ERR_NOMEM;
    }
    int n_st = 0;
    if ((rc = eng_gguf_set_str(g, "general.architecture", "llama", 5)) < 0 ||
        (rc = eng_gguf_set_str(g, "general.type", "adapter", 7)) < 0 ||
        (rc = eng_gguf_set_str(g, "general.name", nm, strlen(nm))) < 0 ||
        (rc = eng_gguf_set_str(g, "adapter.type", "lora", 4)) < 0 ||
        (rc = eng_gguf_set_f32(g, "adapter.lora.alpha", alpha_gguf)) < 0)
        goto out;
    const bool unpermute = t->m->hp.rope_mode == ENG_ROPE_NORM;
    for (int64_t l = 0; l < t->L && rc == 0; l++) {
        for (int i = 0; i < TRN_NLIN && rc == 0; i++) {
            const struct trn_lin *li = &t->layers[l].lin[i];
            if (!li->a)
                continue;
            float *ha, *hb;
            if ((rc = param_host(t, g, li->a, &ha)) < 0 || (rc = param_host(t, g, li->b, &hb)) < 0)
                break;
            const int64_t nea[2] = {li->a->ne0, li->a->ne1}, neb[2] = {li->b->ne0, li->b->ne1};
            if ((rc = eng_gguf_add_tensor(g, li->a->name, ENG_DTYPE_F32, 2, nea, ha,
                                          (size_t)trn_param_n(li->a) * 4)) < 0 ||
                (rc = eng_gguf_add_tensor(g, li->b->name, ENG_DTYPE_F32, 2, neb, hb,
                                          (size_t)trn_param_n(li->b) * 4)) < 0)
                break;
            // PEFT: B rows in HF order
            const float *pb = hb;
            if (unpermute && (i == TRN_Q || i == TRN_K)) {
                float *hp = malloc((size_t)trn_param_n(li->b) * 4);
                if (!hp || (rc = eng_gguf_hold(g, hp, free_ptr)) < 0) {
                    free(hp);
                    rc = ERR_NOMEM;
                    break;
                }
                const int64_t HS = t->HS, heads = li->out / HS, half = HS / 2, r = t->R;
                for (int64_t h = 0; h < heads; h++)
                    for (int64_t cc = 0; cc < 2; cc++)
                        for (int64_t j = 0; j < half; j++)
                            memcpy(hp + (h * HS + cc * half + j) * r,
                                   hb + (h * HS + 2 * j + cc) * r, (size_t)r * 4);
                pb = hp;
            }
            snprintf(st[n_st].name, sizeof st[n_st].name,
                     "base_model.model.model.layers.%lld.%s.lora_A.weight", (long long)l, hf_mod[i]);
            st[n_st].rows = t->R;
            st[n_st].cols = li->in;
            st[n_st++].data = ha;
            snprintf(st[n_st].name, sizeof st[n_st].name,
                     "base_model.model.model.layers.%lld.%s.lora_B.weight", (long long)l, hf_mod[i]);
            st[n_st].rows = li->out;
            st[n_st].cols = t->R;
            st[n_st++].data = pb;
        }
    }
    if (rc < 0) {
        err_set(eb, rc, "LoRA export: cannot collect the adapter: %s", err_str(rc));
        goto out;
    }
    if (snprintf(path, sizeof path, "%s/adapter.gguf", dir) >= (int)sizeof path) {
        rc = err_set(eb, ERR_INVAL, "export path too long");
        goto out;
    }
    if ((rc = eng_gguf_write(g, path, eb)) < 0)
        goto out;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = write_safetensors(path, st, n_st, eb)) < 0)
        goto out;
    // adapter_config.json
    char targets[160] = "", ebase[300];
    size_t tl = 0;
    for (int i = 0; i < TRN_NLIN; i++)
        if (c->lora_targets & (1u << i))
            tl += (size_t)snprintf(targets + tl, sizeof targets - tl, "%s\"%s\"", tl ? ", " : "",
                                   hf_short[i]);
    json_escape(ebase, sizeof ebase, mname);
    char js[2048];
    int jl = snprintf(js, sizeof js,
                      "{\n"
                      "  \"peft_type\": \"LORA\",\n"
                      "  \"task_type\": \"CAUSAL_LM\",\n"
                      "  \"base_model_name_or_path\": \"%s\",\n"
                      "  \"r\": %d,\n"
                      "  \"lora_alpha\": %g,\n"
                      "  \"lora_dropout\": 0.0,\n"
                      "  \"use_rslora\": %s,\n"
                      "  \"target_modules\": [%s],\n"
                      "  \"bias\": \"none\",\n"
                      "  \"fan_in_fan_out\": false,\n"
                      "  \"inference_mode\": true,\n"
                      "  \"init_lora_weights\": true\n"
                      "}\n",
                      ebase, (int)t->R, (double)c->lora_alpha, c->lora_rslora ? "true" : "false",
                      targets);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    const void *parts[1] = {js};
    size_t sizes[1] = {(size_t)jl};
    rc = trn_write_atomic(path, parts, sizes, 1, eb);
out:
    free(st);
    eng_gguf_free(g);
    return rc;
}

enum meta_sel { META_ALL, META_TOKENIZER, META_NO_TOKENIZER };

static bool is_tokenizer_key(const char *k, size_t n)
{
    return n >= 10 && !memcmp(k, "tokenizer.", 10);
}

/* Copies the selected metadata keys of src into dst. */
static int copy_meta(const eng_gguf_t *src, eng_gguf_t *dst, enum meta_sel sel)
{
    int rc = 0;
    for (int64_t i = 0; i < eng_gguf_n_kv(src) && rc == 0; i++) {
        size_t kl;
        const char *kp = eng_gguf_key_at(src, i, &kl);
        char key[512];
        if (kl >= sizeof key || (sel == META_TOKENIZER && !is_tokenizer_key(kp, kl)) ||
            (sel == META_NO_TOKENIZER && is_tokenizer_key(kp, kl)))
            continue;
        memcpy(key, kp, kl);
        key[kl] = '\0';
        switch (eng_gguf_type_at(src, i)) {
        case ENG_GGUF_STRING: {
            const char *s;
            size_t n;
            if ((rc = eng_gguf_get_str(src, key, &s, &n)) == 0)
                rc = eng_gguf_set_str(dst, key, s, n);
            break;
        }
        case ENG_GGUF_FLOAT32:
        case ENG_GGUF_FLOAT64: {
            float f;
            if ((rc = eng_gguf_get_f32(src, key, &f)) == 0)
                rc = eng_gguf_set_f32(dst, key, f);
            break;
        }
        case ENG_GGUF_BOOL: {
            bool b;
            if ((rc = eng_gguf_get_bool(src, key, &b)) == 0)
                rc = eng_gguf_set_bool(dst, key, b);
            break;
        }
        case ENG_GGUF_INT8:
        case ENG_GGUF_INT16:
        case ENG_GGUF_INT32: {
            int32_t v;
            if ((rc = eng_gguf_get_i32(src, key, &v)) == 0)
                rc = eng_gguf_set_i32(dst, key, v);
            break;
        }
        case ENG_GGUF_UINT64:
        case ENG_GGUF_INT64: {
            uint64_t v;
            if ((rc = eng_gguf_get_u64(src, key, &v)) == 0)
                rc = eng_gguf_set_u64(dst, key, v);
            break;
        }
        case ENG_GGUF_ARRAY: {
            enum eng_gguf_type et;
            uint64_t n;
            const void *data;
            if ((rc = eng_gguf_get_arr(src, key, &et, &n, &data)) < 0)
                break;
            if (et != ENG_GGUF_STRING) {
                rc = eng_gguf_set_arr(dst, key, et, n, data);
                break;
            }
            const char **ss = malloc((size_t)(n ? n : 1) * sizeof *ss);
            size_t *ls = malloc((size_t)(n ? n : 1) * sizeof *ls);
            if (!ss || !ls)
                rc = ERR_NOMEM;
            for (uint64_t k = 0; k < n && rc == 0; k++)
                rc = eng_gguf_get_arr_str(src, key, k, &ss[k], &ls[k]);
            if (rc == 0)
                rc = eng_gguf_set_arr_str(dst, key, n, ss, ls);
            free(ss);
            free(ls);
            break;
        }
        default: {   // u8, u16, u32
            uint32_t v;
            if ((rc = eng_gguf_get_u32(src, key, &v)) == 0)
                rc = eng_gguf_set_u32(dst, key, v);
            break;
        }
        }
    }
    return rc;
}

static uint32_t file_type_of(enum eng_dtype dt)
{
    switch (dt) {   // llama_ftype
    case ENG_DTYPE_F16:
        return 1;
    case ENG_DTYPE_Q4_0:
        return 2;
    case ENG_DTYPE_Q8_0:
        return 7;
    case ENG_DTYPE_BF16:
        return 32;
    default:
        return 0;
    }
}

static int export_full(eng_train_t *t, const char *path, enum eng_dtype dt, struct errbuf *eb)
{
    eng_gguf_t *g;
    int rc = eng_gguf_new(&g);
    if (rc < 0)
        return rc;
    if ((rc = copy_meta(t->m->file, g, META_ALL)) < 0 ||
        (rc = eng_gguf_set_u32(g, "general.file_type", file_type_of(dt))) < 0) {
        err_set(eb, rc, "model export: cannot copy the base model's metadata");
        goto out;
    }
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        const struct trn_param *p = &t->params[i];
        float *h;
        if ((rc = param_host(t, g, p, &h)) < 0)
            break;
        const int64_t ne[2] = {p->ne0, p->ne1};
        const int nd = p->ne1 == 1 ? 1 : 2;
        enum eng_dtype od = p->ne1 == 1 ? ENG_DTYPE_F32 : dt;
        if (eng_dtype_row_bytes(od, p->ne0) == 0) {
            rc = err_set(eb, ERR_INVAL, "model export: %s has rows of %lld, not a multiple of "
                         "%s's block", p->name, (long long)p->ne0, eng_dtype_name(od));
            break;
        }
        const size_t rb = eng_dtype_row_bytes(od, p->ne0);
        void *data = h;
        if (od != ENG_DTYPE_F32) {
            data = malloc(rb * (size_t)p->ne1);
            if (!data || (rc = eng_gguf_hold(g, data, free_ptr)) < 0) {
                free(data);
                rc = ERR_NOMEM;
                break;
            }
            for (int64_t r = 0; r < p->ne1; r++)
                eng_row_from_f32(od, h + r * p->ne0, (char *)data + (size_t)r * rb, p->ne0);
        }
        rc = eng_gguf_add_tensor(g, p->name, od, nd, ne, data, rb * (size_t)p->ne1);
    }
    if (rc == 0)
        rc = eng_gguf_write(g, path, eb);
    else if (!eb || !eb->msg[0])
        err_set(eb, rc, "model export failed: %s", err_str(rc));
out:
    eng_gguf_free(g);
    return rc;
}

int eng_train_export(eng_train_t *t, const char *dir, const struct eng_train_export_opts *o,
                     struct errbuf *eb)
{
    if (!t || !dir || !*dir)
        return err_set(eb, ERR_INVAL, "export needs a directory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_set(eb, ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    if (t->cfg.method == ENG_TRAIN_LORA)
        return trn_export_lora(t, dir, o ? o->base_model_name : NULL, eb);
    enum eng_dtype dt = o && o->model_dtype ? o->model_dtype : ENG_DTYPE_F32;
    if (!eng_dtype_is_compute(dt))
        return err_set(eb, ERR_INVAL, "model export: dtype must be f32, f16, bf16, q8_0 or q4_0");
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/model.gguf", dir) >= (int)sizeof path)
        return err_set(eb, ERR_INVAL, "export path too long");
    return export_full(t, path, dt, eb);
}

int eng_train_scratch_model(const char *shape, const eng_gguf_t *tok, bool tied, uint64_t seed,
                            eng_gguf_t **out, struct errbuf *eb)
{
    if (!shape || !tok)
        return err_set(eb, ERR_INVAL, "scratch model: needs a shape and a tokenizer file");
    uint64_t n_vocab = 0;
    enum eng_gguf_type et;
    const void *data;
    if (eng_gguf_get_arr(tok, "tokenizer.ggml.tokens", &et, &n_vocab, &data) < 0 ||
        n_vocab < 2 || n_vocab > (1u << 22))
        return err_set(eb, ERR_CORRUPT, "scratch model: the tokenizer file has no "
                                        "tokenizer.ggml.tokens");
    // the shape with the tokenizer's vocabulary ("vocab" of the shape must not be given)
    if (strstr(shape, "vocab="))
        return err_set(eb, ERR_INVAL, "scratch model: the vocabulary comes from the tokenizer; "
                                      "drop vocab= from the shape");
    struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .std = 0.02f, .seed = seed,
                                  .n_threads = 2};
    if (snprintf(rm.shape, sizeof rm.shape, "%s,vocab=%llu", shape,
                 (unsigned long long)n_vocab) >= (int)sizeof rm.shape)
        return err_set(eb, ERR_INVAL, "scratch model: shape too long");
    eng_gguf_t *r, *g;
    int rc = eng_random_model_build(&rm, &r, eb);
    if (rc < 0)
        return rc;
    if ((rc = eng_gguf_new(&g)) < 0) {
        eng_gguf_free(r);
        return rc;
    }
    // the random model's metadata without its byte-level vocab, then the real tokenizer
    rc = copy_meta(r, g, META_NO_TOKENIZER);
    if (rc == 0)
        rc = copy_meta(tok, g, META_TOKENIZER);
    if (rc == 0)
        rc = eng_gguf_set_str(g, "general.name", "orthod-scratch", 14);
    for (int64_t i = 0; i < eng_gguf_n_tensors(r) && rc == 0; i++) {
        struct eng_gguf_tensor t;
        eng_gguf_tensor_at(r, i, &t);
        if (tied && !strcmp(t.name, "output.weight"))
            continue;
        rc = eng_gguf_add_tensor(g, t.name, t.dtype, t.n_dims, t.ne, t.data, t.nbytes);
    }
    if (rc == 0)   // the tensors' bytes belong to r: keep it alive with g
        rc = eng_gguf_hold(g, r, (void (*)(void *))eng_gguf_free);
    if (rc < 0) {
        eng_gguf_free(g);
        eng_gguf_free(r);
        return err_set(eb, rc, "scratch model: cannot assemble the model file");
    }
    *out = g;
    return 0;
}
