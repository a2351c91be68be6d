/* engine/format/hf.c: Hugging Face model folders (config.json, safetensors, tokenizer.json)
 * assembled into an in-memory eng_gguf_t with llama.cpp's llama-architecture key and
 * tensor names; and the safetensors parser. The one engine file that includes
 * <jansson.h> (the HF formats are JSON).
 * Owns: the HF -> GGUF name and key mapping, shard mmaps (held by the eng_gguf_t),
 * the tokenizer.json -> tokenizer.ggml.* conversion.
 * Hostile input: JSON files are size-capped before reading; the safetensors header
 * length is capped and checked against the file size; every shape, offset and byte
 * count is overflow-checked; shard names from the index cannot leave the folder.
 * Choices that differ from convert_hf_to_gguf.py are documented in docs/models.md
 * (SentencePiece-style scores derived from merge ranks; Q/K not permuted). */
#include "hf.h"

#include "../../common/hash.h"
#include "../../common/text.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF_MAX_CONFIG (16u << 20)          /* config.json, tokenizer_config.json, index */
#define HF_MAX_TOKENIZER (128u << 20)      /* tokenizer.json (Gemma 3's is 33 MiB) */
#define HF_MAX_VOCAB (1u << 24)            /* token ids */
#define HF_MAX_PAD_IDS 65536u              /* ids past those defined (config padding) */
#define HF_MAX_SHARDS 4096u

#define ESC_MAX 80
static const char *esc(char out[ESC_MAX], const char *s)
{
    return text_escape(out, ESC_MAX, s, strlen(s), TEXT_MESSAGE);
}

/* ---------------------------------------------------------------------------------- */
/* safetensors */

struct st_entry {
    const char *name;
    enum eng_dtype dtype;
    int n_dims;
    int64_t ne[4];
    uint64_t begin, end;
};

static int st_cmp(const void *a, const void *b)
{
    const struct st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int st_dtype(const char *s, enum eng_dtype *dt, size_t *esz)
{
    if (!strcmp(s, "F32")) {
        *dt = ENG_DTYPE_F32;
        *esz = 4;
    } else if (!strcmp(s, "F16")) {
        *dt = ENG_DTYPE_F16;
        *esz = 2;
    } else if (!strcmp(s, "BF16")) {
        *dt = ENG_DTYPE_BF16;
        *esz = 2;
    } else {
        return ERR_UNSUPPORTED;
    }
    return 0;
}

int eng_hf_safetensors_parse(const void *image, size_t size, eng_hf_st_fn fn, void *ctx,
                             struct errbuf *eb)
{
    const uint8_t *p = image;
    char nm[ESC_MAX], nm2[ESC_MAX];
    if (!p || !fn)
        return err_set(eb, ERR_INVAL, "eng_hf_safetensors_parse: NULL argument");
    if (size < 8)
        return err_set(eb, ERR_CORRUPT, "file is %zu bytes, too short for a safetensors header",
                       size);
    uint64_t hlen;
    memcpy(&hlen, p, 8);
    if (hlen > ENG_HF_MAX_HEADER)
        return err_set(eb, ERR_CORRUPT, "header length %" PRIu64 " is over the %u MiB limit "
                       "(not a safetensors file?)", hlen, ENG_HF_MAX_HEADER >> 20);
    if (hlen > size - 8)
        return err_set(eb, ERR_CORRUPT, "header length %" PRIu64 " past end of file (%zu bytes)",
                       hlen, size);
    if (hlen < 2 || p[8] != '{')
        return err_set(eb, ERR_CORRUPT, "header is not a JSON object");
    size_t data_start = 8 + (size_t)hlen;
    size_t data_size = size - data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set(eb, ERR_CORRUPT, "header: invalid JSON at byte %d: %s", jerr.position,
                       jerr.text);
    int rc = 0;
    struct st_entry *ents = NULL;
    if (!json_is_object(root)) {
        rc = err_set(eb, ERR_CORRUPT, "header is not a JSON object");
        goto done;
    }
    size_t n = json_object_size(root);
    ents = calloc(n ? n : 1, sizeof *ents);
    if (!ents) {
        rc = err_set(eb, ERR_NOMEM, "no memory for %zu tensors", n);
        goto done;
    }
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                rc = err_set(eb, ERR_CORRUPT, "__metadata__ is not an object");
                goto done;
            }
            continue;
        }
        esc(nm, key);
        if (!json_is_object(val)) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': entry is not an object", nm);
            goto done;
        }
        const json_t *jd = json_object_get(val, "dtype");
        const json_t *js = json_object_get(val, "shape");
        const json_t *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
            json_array_size(jo) != 2) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': needs dtype (string), shape (array) and "
                         "data_offsets ([begin, end])", nm);
            goto done;
        }
        struct st_entry *e = &ents[k];
        e->name = key;
        size_t esz;
        if (st_dtype(json_string_value(jd), &e->dtype, &esz) < 0) {
            rc = err_set(eb, ERR_UNSUPPORTED, "tensor '%s': dtype %.16s is not supported (F32, "
                         "F16 and BF16 are)", nm, json_string_value(jd));
            goto done;
        }
        size_t rank = json_array_size(js);
        if (rank < 1 || rank > 4) {
            rc = err_set(eb, ERR_UNSUPPORTED, "tensor '%s': rank %zu is not supported (1..4)", nm,
                         rank);
            goto done;
        }
        e->n_dims = (int)rank;
        for (int d = 0; d < 4; d++)
            e->ne[d] = 1;
        uint64_t nel = 1;
        for (size_t d = 0; d < rank; d++) {
            uint64_t v;
            if (!json_u64(json_array_get(js, d), &v)) {
                rc = err_set(eb, ERR_CORRUPT, "tensor '%s': shape[%zu] is not a non-negative "
                             "integer", nm, d);
                goto done;
            }
            if (v && nel > (uint64_t)INT64_MAX / v) {
                rc = err_set(eb, ERR_CORRUPT, "tensor '%s': element count overflows", nm);
                goto done;
            }
            nel *= v;
            e->ne[rank - 1 - d] = (int64_t)v;          /* row-major -> ggml order */
        }
        if (nel > UINT64_MAX / esz) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': byte size overflows", nm);
            goto done;
        }
        uint64_t nbytes = nel * esz;
        if (!json_u64(json_array_get(jo, 0), &e->begin) ||
            !json_u64(json_array_get(jo, 1), &e->end)) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': data_offsets are not non-negative integers",
                         nm);
            goto done;
        }
        if (e->begin > e->end || e->end > data_size) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         ") past end of file (data section is %zu bytes)", nm, e->begin, e->end,
                         data_size);
            goto done;
        }
        if (e->end - e->begin != nbytes) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': data_offsets hold %" PRIu64 " bytes but "
                         "the shape needs %" PRIu64, nm, e->end - e->begin, nbytes);
            goto done;
        }
        if ((data_start + e->begin) % esz) {
            rc = err_set(eb, ERR_UNSUPPORTED, "tensor '%s': data at file offset %" PRIu64
                         " is not aligned to its %zu-byte elements", nm,
                         (uint64_t)data_start + e->begin, esz);
            goto done;
        }
        k++;
    }
    qsort(ents, k, sizeof *ents, st_cmp);
    for (size_t i = 1; i < k; i++) {
        if (ents[i].begin < ents[i - 1].end) {
            rc = err_set(eb, ERR_CORRUPT, "tensor '%s': data overlaps tensor '%s'",
                         esc(nm, ents[i].name), esc(nm2, ents[i - 1].name));
            goto done;
        }
    }
    for (size_t i = 0; i < k; i++) {
        struct eng_hf_st_tensor t = {
            .name = ents[i].name,
            .dtype = ents[i].dtype,
            .n_dims = ents[i].n_dims,
            .data = p + data_start + ents[i].begin,
            .nbytes = (size_t)(ents[i].end - ents[i].begin),
        };
        memcpy(t.ne, ents[i].ne, sizeof t.ne);
        if ((rc = fn(ctx, &t, eb)) < 0)
            goto done;
    }
done:
    free(ents);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------------- */
/* files */

struct hf_map {
    void *base;
    size_t size;
};

static void hf_map_release(void *res)
{
    struct hf_map *m = res;
    if (m->base)
        munmap(m->base, m->size);
    free(m);
}

static int path_join(char *out, size_t cap, const char *dir, const char *name, struct errbuf *eb)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return err_set(eb, ERR_INVAL, "path '%s/%s' is too long", dir, name);
    return 0;
}

/* Maps dir/name read-only and ties the mapping to g. */
static int map_file(eng_gguf_t *g, const char *dir, const char *name, const uint8_t **base,
                    size_t *size, struct errbuf *eb)
{
    char path[PATH_MAX];
    int rc = path_join(path, sizeof path, dir, name, eb);
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(eb, e == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s", name,
                       strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(eb, ERR_IO, "%s: not a readable regular file", name);
    }
    if ((uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        return err_set(eb, ERR_TOOLARGE, "%s: too large to map", name);
    }
    struct hf_map *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return err_set(eb, ERR_NOMEM, "no memory");
    }
    m->size = (size_t)st.st_size;
    if (m->size) {
        void *b = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (b == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m);
            return err_set(eb, ERR_IO, "%s: cannot mmap: %s", name, strerror(e));
        }
        m->base = b;
    }
    close(fd);
    if ((rc = eng_gguf_hold(g, m, hf_map_release)) < 0) {
        hf_map_release(m);
        return err_set(eb, rc, "no memory");
    }
    *base = m->base;
    *size = m->size;
    return 0;
}

/* Reads dir/name as JSON (at most cap bytes). Missing and !required: *out = NULL. */
static int read_json(const char *dir, const char *name, size_t cap, bool required, json_t **out,
                     struct errbuf *eb)
{
    char path[PATH_MAX];
    int rc = path_join(path, sizeof path, dir, name, eb);
    *out = NULL;
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && !required)
            return 0;
        return err_set(eb, e == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: cannot open: %s", name,
                       strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(eb, ERR_IO, "%s: not a readable regular file", name);
    }
    if ((uintmax_t)st.st_size > cap) {
        close(fd);
        return err_set(eb, ERR_TOOLARGE, "%s: %lld bytes is over the %zu MiB limit", name,
                       (long long)st.st_size, cap >> 20);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return err_set(eb, ERR_NOMEM, "%s: no memory for %zu bytes", name, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return err_set(eb, ERR_IO, "%s: short read", name);
    }
    json_error_t jerr;
    json_t *j = json_loadb(buf, n, 0, &jerr);
    free(buf);
    if (!j)
        return err_set(eb, ERR_CORRUPT, "%s: invalid JSON at line %d column %d: %s", name,
                       jerr.line, jerr.column, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return err_set(eb, ERR_CORRUPT, "%s: expected a JSON object", name);
    }
    *out = j;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* config.json -> llama.* keys */

struct hf {
    const char *dir;
    eng_gguf_t *g;
    json_t *config, *tok, *tok_cfg, *index;
    uint32_t n_layer;
    bool tied;
    const char *shard;          /* the shard being read (index mode) */
    size_t n_mapped;            /* tensors found that the index lists */
};

static int cfg_u32(const json_t *cfg, const char *key, bool required, uint32_t def, uint32_t *out,
                   struct errbuf *eb)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required)
            return err_set(eb, ERR_CORRUPT, "config.json: '%s' is missing", key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > (json_int_t)UINT32_MAX)
        return err_set(eb, ERR_CORRUPT, "config.json: '%s' must be an integer in 0..4294967295",
                       key);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int cfg_f32(const json_t *cfg, const char *key, float def, float *out, struct errbuf *eb)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return err_set(eb, ERR_CORRUPT, "config.json: '%s' must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

static bool cfg_true(const json_t *cfg, const char *key)
{
    return json_is_true(json_object_get(cfg, key));
}

static int set_config(struct hf *h, struct errbuf *eb)
{
    const json_t *c = h->config;
    eng_gguf_t *g = h->g;
    static const char *const archs[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                        "Qwen2ForCausalLM", NULL};
    static const char *const types[] = {"llama", "mistral", "qwen2", NULL};
    const json_t *ja = json_object_get(c, "architectures");
    const json_t *jt = json_object_get(c, "model_type");
    const char *what = NULL;
    bool ok = false;
    if (json_is_array(ja) && json_array_size(ja) > 0) {
        what = json_string_value(json_array_get(ja, 0));
        for (int i = 0; what && archs[i]; i++)
            ok = ok || !strcmp(what, archs[i]);
        if (!what)
            return err_set(eb, ERR_CORRUPT, "config.json: 'architectures' must hold strings");
    } else if (json_is_string(jt)) {
        what = json_string_value(jt);
        for (int i = 0; types[i]; i++)
            ok = ok || !strcmp(what, types[i]);
    } else {
        return err_set(eb, ERR_CORRUPT, "config.json: neither 'architectures' nor 'model_type' "
                       "says what the model is");
    }
    if (!ok) {
        char nm[ESC_MAX];
        return err_set(eb, ERR_UNSUPPORTED, "config.json: architecture '%s' is not supported "
                       "(orthod reads LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM "
                       "folders)", esc(nm, what));
    }
    const json_t *act = json_object_get(c, "hidden_act");
    if (act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu"))) {
        char nm[ESC_MAX];
        return err_set(eb, ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not supported (silu "
                       "is)", json_is_string(act) ? esc(nm, json_string_value(act)) : "?");
    }
    if (cfg_true(c, "attention_bias") || cfg_true(c, "mlp_bias"))
        return err_set(eb, ERR_UNSUPPORTED, "config.json: attention/MLP biases are not supported "
                       "by the llama layout");

    uint32_t embd = 0, n_layer = 0, ff = 0, nh = 0, nkv = 0, ctx = 0, head_dim = 0;
    float theta = 0, eps = 0;
    int rc;
    if ((rc = cfg_u32(c, "hidden_size", true, 0, &embd, eb)) < 0 ||
        (rc = cfg_u32(c, "num_hidden_layers", true, 0, &n_layer, eb)) < 0 ||
        (rc = cfg_u32(c, "intermediate_size", true, 0, &ff, eb)) < 0 ||
        (rc = cfg_u32(c, "num_attention_heads", true, 0, &nh, eb)) < 0 ||
        (rc = cfg_u32(c, "num_key_value_heads", false, nh, &nkv, eb)) < 0 ||
        (rc = cfg_u32(c, "max_position_embeddings", false, 2048, &ctx, eb)) < 0 ||
        (rc = cfg_f32(c, "rope_theta", 10000.0f, &theta, eb)) < 0 ||
        (rc = cfg_f32(c, "rms_norm_eps", 1e-6f, &eps, eb)) < 0)   /* HF LlamaConfig default */
        return rc;
    if (nh == 0 || embd % nh || n_layer == 0 || n_layer > 100000)
        return err_set(eb, ERR_CORRUPT, "config.json: inconsistent sizes (hidden_size %u, "
                       "num_attention_heads %u, num_hidden_layers %u)", embd, nh, n_layer);
    if ((rc = cfg_u32(c, "head_dim", false, embd / nh, &head_dim, eb)) < 0)
        return rc;
    h->n_layer = n_layer;
    h->tied = cfg_true(c, "tie_word_embeddings");

    const char *name = h->dir;
    size_t nlen = strlen(name);
    while (nlen > 1 && name[nlen - 1] == '/')
        nlen--;
    size_t start = nlen;
    while (start > 0 && name[start - 1] != '/')
        start--;

    if ((rc = eng_gguf_set_str(g, "general.architecture", "llama", 5)) < 0 ||
        (rc = eng_gguf_set_str(g, "general.name", name + start, nlen - start)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.context_length", ctx)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.embedding_length", embd)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.block_count", n_layer)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.feed_forward_length", ff)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.attention.head_count", nh)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.attention.head_count_kv", nkv)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.rope.dimension_count", head_dim)) < 0 ||
        (rc = eng_gguf_set_f32(g, "llama.rope.freq_base", theta)) < 0 ||
        (rc = eng_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", eps)) < 0 ||
        (rc = eng_gguf_set_bool(g, "orthod.rope.neox", true)) < 0)
        return err_set(eb, rc, "cannot set model metadata");
    if (head_dim != embd / nh &&
        ((rc = eng_gguf_set_u32(g, "llama.attention.key_length", head_dim)) < 0 ||
         (rc = eng_gguf_set_u32(g, "llama.attention.value_length", head_dim)) < 0))
        return err_set(eb, rc, "cannot set model metadata");

    const json_t *rs = json_object_get(c, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        const json_t *ty = json_object_get(rs, "rope_type");
        if (!ty)
            ty = json_object_get(rs, "type");
        const char *tys = json_string_value(ty);
        float factor = 1.0f;
        if (!json_is_object(rs) || !tys)
            return err_set(eb, ERR_CORRUPT, "config.json: rope_scaling needs a 'type'");
        if (!strcmp(tys, "linear")) {
            if ((rc = cfg_f32(rs, "factor", 1.0f, &factor, eb)) < 0)
                return rc;
            if ((rc = eng_gguf_set_str(g, "llama.rope.scaling.type", "linear", 6)) < 0 ||
                (rc = eng_gguf_set_f32(g, "llama.rope.scaling.factor", factor)) < 0)
                return err_set(eb, rc, "cannot set model metadata");
        } else if (strcmp(tys, "default") != 0) {
            char nm[ESC_MAX];
            return err_set(eb, ERR_UNSUPPORTED, "config.json: rope_scaling type '%s' is not "
                           "supported (linear is)", esc(nm, tys));
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* tensors: HF names -> GGUF names */

static const struct {
    const char *hf, *gguf;
} layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

/* Maps an HF tensor name. Returns 1 with gguf name in out, 0 to skip the tensor, or a
 * negative error for a name with no place in the llama layout. */
static int map_name(const struct hf *h, const char *name, char out[64], struct errbuf *eb)
{
    char nm[ESC_MAX];
    if (!strcmp(name, "model.embed_tokens.weight")) {
        strcpy(out, "token_embd.weight");
        return 1;
    }
    if (!strcmp(name, "model.norm.weight")) {
        strcpy(out, "output_norm.weight");
        return 1;
    }
    if (!strcmp(name, "lm_head.weight")) {
        if (h->tied)
            return 0;      /* tied: the output projection is token_embd (as llama.cpp drops it) */
        strcpy(out, "output.weight");
        return 1;
    }
    static const char pre[] = "model.layers.";
    if (!strncmp(name, pre, sizeof pre - 1)) {
        const char *p = name + sizeof pre - 1;
        uint32_t layer = 0;
        const char *d = p;
        while (*p >= '0' && *p <= '9' && p - d < 7)
            layer = layer * 10 + (uint32_t)(*p++ - '0');
        if (p > d && *p == '.' && !(d[0] == '0' && p - d > 1)) {
            p++;
            if (layer >= h->n_layer)
                return err_set(eb, ERR_CORRUPT, "tensor '%s': layer %u but config.json has "
                               "num_hidden_layers %u", esc(nm, name), layer, h->n_layer);
            if (!strcmp(p, "self_attn.rotary_emb.inv_freq"))
                return 0;  /* recomputed from rope_theta, as llama.cpp skips it */
            for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
                if (!strcmp(p, layer_names[i].hf)) {
                    snprintf(out, 64, "blk.%u.%s", layer, layer_names[i].gguf);
                    return 1;
                }
            }
        }
    }
    return err_set(eb, ERR_UNSUPPORTED, "tensor '%s' has no place in the llama layout (biases, "
                   "extra heads and other architectures are not supported)", esc(nm, name));
}

static int add_st_tensor(void *ctx, const struct eng_hf_st_tensor *t, struct errbuf *eb)
{
    struct hf *h = ctx;
    char nm[ESC_MAX];
    if (h->index) {
        const json_t *wm = json_object_get(h->index, "weight_map");
        const char *listed = json_string_value(json_object_get(wm, t->name));
        if (!listed)
            return err_set(eb, ERR_CORRUPT, "tensor '%s' is not listed in "
                           "model.safetensors.index.json", esc(nm, t->name));
        if (strcmp(listed, h->shard) != 0)
            return err_set(eb, ERR_CORRUPT, "tensor '%s' is listed in the index under "
                           "another shard ('%.64s')", esc(nm, t->name), listed);
        h->n_mapped++;
    }
    char gname[64];
    int rc = map_name(h, t->name, gname, eb);
    if (rc <= 0)
        return rc;
    rc = eng_gguf_add_tensor(h->g, gname, t->dtype, t->n_dims, t->ne, t->data, t->nbytes);
    if (rc == ERR_INVAL)
        return err_set(eb, ERR_CORRUPT, "tensor '%s' appears twice, or its shape does not fit "
                       "its dtype", esc(nm, t->name));
    if (rc < 0)
        return err_set(eb, rc, "cannot add tensor '%s'", esc(nm, t->name));
    return 0;
}

static int read_shard(struct hf *h, const char *file, struct errbuf *eb)
{
    const uint8_t *base;
    size_t size;
    int rc = map_file(h->g, h->dir, file, &base, &size, eb);
    if (rc < 0)
        return rc;
    h->shard = file;
    rc = eng_hf_safetensors_parse(base, size, add_st_tensor, h, eb);
    if (rc < 0)
        return err_prefix(eb, rc, "%s", file);
    return 0;
}

/* A shard name from the index must name a file inside the folder. */
static bool shard_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static int read_tensors(struct hf *h, struct errbuf *eb)
{
    int rc = read_json(h->dir, "model.safetensors.index.json", HF_MAX_CONFIG, false, &h->index,
                       eb);
    if (rc < 0)
        return rc;
    if (!h->index) {
        rc = read_shard(h, "model.safetensors", eb);
        if (rc == ERR_NOTFOUND)
            return err_set(eb, rc, "neither model.safetensors nor model.safetensors.index.json "
                           "found (orthod reads safetensors weights, not pytorch_model.bin)");
        return rc;
    }
    const json_t *wm = json_object_get(h->index, "weight_map");
    if (!json_is_object(wm))
        return err_set(eb, ERR_CORRUPT, "model.safetensors.index.json: 'weight_map' is not an "
                       "object");
    /* the distinct shard names, in first-seen order */
    size_t n_entries = json_object_size(wm), n_shards = 0;
    const char **shards = calloc(n_entries ? n_entries : 1, sizeof *shards);
    if (!shards)
        return err_set(eb, ERR_NOMEM, "no memory");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        const char *s = json_string_value(val);
        char nm[ESC_MAX];
        if (!s || !shard_name_ok(s)) {
            free(shards);
            return err_set(eb, ERR_CORRUPT, "model.safetensors.index.json: tensor '%s': shard "
                           "must be a file name inside the folder", esc(nm, key));
        }
        bool seen = false;
        for (size_t i = n_shards; i-- > 0 && !seen;)
            seen = !strcmp(shards[i], s);
        if (!seen) {
            if (n_shards == HF_MAX_SHARDS) {
                free(shards);
                return err_set(eb, ERR_CORRUPT, "model.safetensors.index.json: more than %u "
                               "shards", HF_MAX_SHARDS);
            }
            shards[n_shards++] = s;
        }
    }
    for (size_t i = 0; i < n_shards && rc == 0; i++)
        rc = read_shard(h, shards[i], eb);
    free(shards);
    if (rc < 0)
        return rc;
    if (h->n_mapped != n_entries)
        return err_set(eb, ERR_CORRUPT, "model.safetensors.index.json lists %zu tensors but the "
                       "shards hold %zu of them", n_entries, h->n_mapped);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* tokenizer.json -> tokenizer.ggml.* */

/* string -> id hash map over the token texts */
struct tok_map {
    int32_t *slot;             /* id + 1, 0 empty */
    size_t cap;
    const char **text;
    const size_t *len;
};


static int tok_map_build(struct tok_map *m, const char **text, const size_t *len, uint32_t n)
{
    m->cap = 16;
    while (m->cap < 2 * (size_t)n)
        m->cap *= 2;
    m->slot = calloc(m->cap, sizeof *m->slot);
    if (!m->slot)
        return ERR_NOMEM;
    m->text = text;
    m->len = len;
    for (uint32_t i = 0; i < n; i++) {
        size_t hsh = (size_t)hash_fnv1a(text[i], len[i]) & (m->cap - 1);
        bool dup = false;
        while (m->slot[hsh]) {
            int32_t j = m->slot[hsh] - 1;
            if (len[j] == len[i] && !memcmp(text[j], text[i], len[i])) {
                dup = true;    /* keep the lowest id for a text */
                break;
            }
            hsh = (hsh + 1) & (m->cap - 1);
        }
        if (!dup)
            m->slot[hsh] = (int32_t)i + 1;
    }
    return 0;
}

static int32_t tok_map_find(const struct tok_map *m, const char *s, size_t n)
{
    for (size_t hsh = (size_t)hash_fnv1a(s, n) & (m->cap - 1);; hsh = (hsh + 1) & (m->cap - 1)) {
        int32_t v = m->slot[hsh];
        if (!v)
            return -1;
        if (m->len[v - 1] == n && !memcmp(m->text[v - 1], s, n))
            return v - 1;
    }
}

/* llama.cpp's does_token_look_special: added tokens some models forget to mark special */
static bool looks_special(const char *s, size_t n)
{
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]", NULL};
    for (int i = 0; exact[i]; i++)
        if (n == strlen(exact[i]) && !memcmp(s, exact[i], n))
            return true;
    if (n >= 4 && !memcmp(s, "<|", 2) && !memcmp(s + n - 2, "|>", 2))
        return true;
    if (n >= 8 && !memcmp(s, "<\xef\xbd\x9c", 4) && !memcmp(s + n - 4, "\xef\xbd\x9c>", 4))
        return true;     /* <｜ ... ｜> (deepseek) */
    if (n >= 8 && !memcmp(s, "<unused", 7) && s[n - 1] == '>')
        return true;
    return false;
}

static bool is_byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && strchr(hex, s[3]) && s[3] &&
           strchr(hex, s[4]) && s[4];
}

/* The GPT-2-style pre-tokenizer name for tokenizer.json's pre_tokenizer (llama.cpp names). */
static int bpe_pre_name(const json_t *pt, const char **out, struct errbuf *eb)
{
    static const struct {
        const char *regex, *name;
    } known[] = {
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"
         "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}"
         "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
        {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
         "gpt-2"},
    };
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (type && !strcmp(type, "ByteLevel")) {
        const json_t *ur = json_object_get(pt, "use_regex");
        if (!ur || json_is_true(ur)) {
            *out = "gpt-2";
            return 0;
        }
    } else if (type && !strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(pt, "pretokenizers");
        const char *regex = NULL;
        bool byte_level = false;
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *e = json_array_get(list, i);
            const char *et = json_string_value(json_object_get(e, "type"));
            if (et && !strcmp(et, "Split") && !regex)
                regex = json_string_value(json_object_get(json_object_get(e, "pattern"), "Regex"));
            else if (et && !strcmp(et, "ByteLevel"))
                byte_level = true;
        }
        if (regex && byte_level) {
            for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
                if (!strcmp(regex, known[i].regex)) {
                    *out = known[i].name;
                    return 0;
                }
            }
            char nm[ESC_MAX];
            return err_set(eb, ERR_UNSUPPORTED, "tokenizer.json: pre-tokenizer regex '%s' is not "
                           "one orthod knows (GPT-2, Llama-3 and Qwen2 regexes are)",
                           esc(nm, regex));
        }
    }
    return err_set(eb, ERR_UNSUPPORTED, "tokenizer.json: byte-level BPE with pre_tokenizer type "
                   "'%s' is not supported", type ? type : "null");
}

/* The content string of tokenizer_config's "<typ>_token" (a string or {"content": s}). */
static const char *special_content(const json_t *tok_cfg, const char *typ)
{
    char key[32];
    snprintf(key, sizeof key, "%s_token", typ);
    const json_t *e = json_object_get(tok_cfg, key);
    if (json_is_object(e))
        e = json_object_get(e, "content");
    return json_string_value(e);
}

static int set_special_ids(struct hf *h, const json_t *added, uint32_t n_vocab,
                           const char *tmpl_first, const char *tmpl_last, struct errbuf *eb)
{
    static const struct {
        const char *typ, *key;
    } specials[] = {
        {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", "tokenizer.ggml.cls_token_id"},
        {"mask", "tokenizer.ggml.mask_token_id"},
    };
    int rc;
    for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++) {
        const char *content = h->tok_cfg ? special_content(h->tok_cfg, specials[s].typ) : NULL;
        if (!h->tok_cfg && !strcmp(specials[s].typ, "bos"))
            content = tmpl_first;           /* as llama.cpp: from the post-processor */
        if (!h->tok_cfg && !strcmp(specials[s].typ, "eos"))
            content = tmpl_last;
        json_int_t id = -1;
        for (size_t i = 0; content && i < json_array_size(added) && id < 0; i++) {
            const json_t *a = json_array_get(added, i);
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c && !strcmp(c, content) && json_is_integer(json_object_get(a, "id")))
                id = json_integer_value(json_object_get(a, "id"));
        }
        if (id < 0) {
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", specials[s].typ);
            const json_t *v = json_object_get(h->config, key);
            if (json_is_integer(v))
                id = json_integer_value(v);
        }
        if (id >= 0 && id < (json_int_t)n_vocab &&
            (rc = eng_gguf_set_u32(h->g, specials[s].key, (uint32_t)id)) < 0)
            return err_set(eb, rc, "cannot set %s", specials[s].key);
    }
    /* add_bos/add_eos: the post-processor template, then tokenizer_config's flags */
    const char *bos_c = h->tok_cfg ? special_content(h->tok_cfg, "bos") : tmpl_first;
    const char *eos_c = h->tok_cfg ? special_content(h->tok_cfg, "eos") : tmpl_last;
    int add_bos = -1, add_eos = -1;
    if (tmpl_first)
        add_bos = bos_c && !strcmp(tmpl_first, bos_c);
    if (tmpl_last)
        add_eos = eos_c && !strcmp(tmpl_last, eos_c);
    if (h->tok_cfg) {
        const json_t *v = json_object_get(h->tok_cfg, "add_bos_token");
        if (json_is_boolean(v))
            add_bos = json_is_true(v);
        v = json_object_get(h->tok_cfg, "add_eos_token");
        if (json_is_boolean(v))
            add_eos = json_is_true(v);
    }
    if (add_bos >= 0 && (rc = eng_gguf_set_bool(h->g, "tokenizer.ggml.add_bos_token", add_bos)) < 0)
        return err_set(eb, rc, "cannot set add_bos_token");
    if (add_eos >= 0 && (rc = eng_gguf_set_bool(h->g, "tokenizer.ggml.add_eos_token", add_eos)) < 0)
        return err_set(eb, rc, "cannot set add_eos_token");
    return 0;
}

/* The first/last SpecialToken ids of a TemplateProcessing "single" template (length > 1). */
static void template_specials(const json_t *pp, const char **first, const char **last)
{
    *first = *last = NULL;
    if (!json_is_object(pp))
        return;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (type && !strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(pp, "processors");
        for (size_t i = 0; i < json_array_size(list) && !*first && !*last; i++)
            template_specials(json_array_get(list, i), first, last);
        return;
    }
    if (!type || strcmp(type, "TemplateProcessing") != 0)
        return;
    const json_t *single = json_object_get(pp, "single");
    size_t n = json_array_size(single);
    if (n < 2)
        return;
    *first = json_string_value(
        json_object_get(json_object_get(json_array_get(single, 0), "SpecialToken"), "id"));
    *last = json_string_value(
        json_object_get(json_object_get(json_array_get(single, n - 1), "SpecialToken"), "id"));
}

/* A merge as "a b": strings as they are; [a, b] pairs joined, spaces inside encoded as
 * U+0120 as llama.cpp's SpecialVocab does. Returns a malloc'd string or NULL. */
static char *merge_text(const json_t *m, size_t *len)
{
    if (json_is_string(m)) {
        *len = json_string_length(m);
        char *s = malloc(*len + 1);
        if (s)
            memcpy(s, json_string_value(m), *len + 1);
        return s;
    }
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) ||
        !json_is_string(json_array_get(m, 1)))
        return NULL;
    const json_t *parts[2] = {json_array_get(m, 0), json_array_get(m, 1)};
    size_t cap = 2 * (json_string_length(parts[0]) + json_string_length(parts[1])) + 2;
    char *s = malloc(cap), *o = s;
    if (!s)
        return NULL;
    for (int k = 0; k < 2; k++) {
        const char *p = json_string_value(parts[k]);
        size_t n = json_string_length(parts[k]);
        for (size_t i = 0; i < n; i++) {
            if (p[i] == ' ') {
                *o++ = (char)0xc4;
                *o++ = (char)0xa0;
            } else {
                *o++ = p[i];
            }
        }
        if (k == 0)
            *o++ = ' ';
    }
    *o = '\0';
    *len = (size_t)(o - s);
    return s;
}

static int set_tokenizer(struct hf *h, struct errbuf *eb)
{
    const json_t *model = json_object_get(h->tok, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || !mtype)
        return err_set(eb, ERR_CORRUPT, "tokenizer.json: 'model.type' is missing");
    if (strcmp(mtype, "BPE") != 0) {
        char nm[ESC_MAX];
        return err_set(eb, ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported "
                       "(BPE is)", esc(nm, mtype));
    }
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(h->tok, "added_tokens");
    if (!json_is_object(vocab))
        return err_set(eb, ERR_CORRUPT, "tokenizer.json: 'model.vocab' is not an object");
    if (merges && !json_is_array(merges))
        return err_set(eb, ERR_CORRUPT, "tokenizer.json: 'model.merges' is not an array");
    if (added && !json_is_array(added))
        return err_set(eb, ERR_CORRUPT, "tokenizer.json: 'added_tokens' is not an array");
    bool spm = json_is_true(json_object_get(model, "byte_fallback"));

    /* vocabulary size: the largest id, and config.json's vocab_size (padding rows) */
    uint32_t n_vocab = 0;
    int rc = cfg_u32(h->config, "vocab_size", false, 0, &n_vocab, eb);
    if (rc < 0)
        return rc;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        char nm[ESC_MAX];
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= (json_int_t)HF_MAX_VOCAB)
            return err_set(eb, ERR_CORRUPT, "tokenizer.json: token '%s': id must be an integer "
                           "in 0..%u", esc(nm, key), HF_MAX_VOCAB - 1);
        if ((uint32_t)json_integer_value(val) >= n_vocab)
            n_vocab = (uint32_t)json_integer_value(val) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const json_t *id = json_object_get(a, "id");
        if (!json_is_string(json_object_get(a, "content")) || !json_is_integer(id) ||
            json_integer_value(id) < 0 || json_integer_value(id) >= (json_int_t)HF_MAX_VOCAB)
            return err_set(eb, ERR_CORRUPT, "tokenizer.json: added_tokens[%zu] needs a content "
                           "string and an id in 0..%u", i, HF_MAX_VOCAB - 1);
        if ((uint32_t)json_integer_value(id) >= n_vocab)
            n_vocab = (uint32_t)json_integer_value(id) + 1;
    }
    if (n_vocab == 0)
        return err_set(eb, ERR_CORRUPT, "tokenizer.json: empty vocabulary");
    /* ids are dense up to a little padding: a small file cannot claim a huge vocabulary */
    size_t n_defined = json_object_size(vocab) + json_array_size(added);
    if (n_vocab > n_defined + HF_MAX_PAD_IDS)
        return err_set(eb, ERR_CORRUPT, "tokenizer.json/config.json: a vocabulary of %u ids for "
                       "only %zu defined tokens", n_vocab, n_defined);

    const char **text = calloc(n_vocab, sizeof *text);
    size_t *len = calloc(n_vocab, sizeof *len);
    int32_t *type = calloc(n_vocab, sizeof *type);
    float *score = spm ? calloc(n_vocab, sizeof *score) : NULL;
    char *pads = NULL;
    const char **mtext = NULL;
    size_t *mlen = NULL;
    size_t n_merges = json_array_size(merges);
    struct tok_map map = {0};
    if (!text || !len || !type || (spm && !score)) {
        rc = err_set(eb, ERR_NOMEM, "no memory for %u tokens", n_vocab);
        goto done;
    }
    json_object_foreach((json_t *)vocab, key, val) {
        uint32_t id = (uint32_t)json_integer_value(val);
        if (text[id]) {
            char nm[ESC_MAX], nm2[ESC_MAX];
            rc = err_set(eb, ERR_CORRUPT, "tokenizer.json: tokens '%s' and '%s' share id %u",
                         esc(nm, text[id]), esc(nm2, key), id);
            goto done;
        }
        text[id] = key;
        len[id] = strlen(key);
        type[id] = 1;                                        /* NORMAL */
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        uint32_t id = (uint32_t)json_integer_value(json_object_get(a, "id"));
        const json_t *c = json_object_get(a, "content");
        text[id] = json_string_value(c);
        len[id] = json_string_length(c);
        bool special = json_is_true(json_object_get(a, "special"));
        /* CONTROL, else USER_DEFINED */
        type[id] = special || looks_special(text[id], len[id]) ? 3 : 4;
    }
    /* ids nobody uses: "[PAD<id>]", UNUSED (as convert_hf_to_gguf.py) */
    size_t n_pad = 0;
    for (uint32_t i = 0; i < n_vocab; i++)
        n_pad += !text[i];
    if (n_pad) {
        pads = malloc(n_pad * 20);
        if (!pads) {
            rc = err_set(eb, ERR_NOMEM, "no memory");
            goto done;
        }
        char *o = pads;
        for (uint32_t i = 0; i < n_vocab; i++) {
            if (text[i])
                continue;
            int k = snprintf(o, 20, "[PAD%u]", i);
            text[i] = o;
            len[i] = (size_t)k;
            type[i] = 5;                                     /* UNUSED */
            o += 20;
        }
    }
    if (spm) {
        for (uint32_t i = 0; i < n_vocab; i++) {
            if (is_byte_token(text[i], len[i]))
                type[i] = 6;                                 /* BYTE */
            else if (unk && strlen(unk) == len[i] && !memcmp(unk, text[i], len[i]))
                type[i] = 2;                                 /* UNKNOWN */
        }
    }

    /* merges as "a b" strings (gpt2 writes them; spm derives scores from their ranks) */
    if (n_merges) {
        mtext = calloc(n_merges, sizeof *mtext);
        mlen = calloc(n_merges, sizeof *mlen);
        if (!mtext || !mlen) {
            rc = err_set(eb, ERR_NOMEM, "no memory for %zu merges", n_merges);
            goto done;
        }
        for (size_t i = 0; i < n_merges; i++) {
            mtext[i] = merge_text(json_array_get(merges, i), &mlen[i]);
            if (!mtext[i]) {
                rc = err_set(eb, ERR_CORRUPT, "tokenizer.json: merges[%zu] is neither \"a b\" nor "
                             "[\"a\", \"b\"]", i);
                goto done;
            }
        }
    }

    const char *pre = "default";
    if (spm) {
        /* SentencePiece-style BPE: llama.cpp's SPM tokenizer merges the adjacent pair
         * whose result has the highest score, so a token's score is minus the rank of the
         * first merge that makes it; tokens no merge makes score below every merge. */
        bool has_space_mark = false;
        for (uint32_t i = 0; i < n_vocab && !has_space_mark; i++)
            has_space_mark = len[i] >= 3 && !memcmp(text[i], "\xe2\x96\x81", 3);
        if (!has_space_mark) {
            rc = err_set(eb, ERR_UNSUPPORTED, "tokenizer.json: byte-fallback BPE without "
                         "\"\xe2\x96\x81\" word marks is not a SentencePiece-style vocabulary");
            goto done;
        }
        if ((rc = tok_map_build(&map, text, len, n_vocab)) < 0) {
            rc = err_set(eb, rc, "no memory");
            goto done;
        }
        for (uint32_t i = 0; i < n_vocab; i++)
            score[i] = -(float)n_merges - 1.0f;
        size_t buf_cap = 256;
        char *buf = malloc(buf_cap);
        if (!buf) {
            rc = err_set(eb, ERR_NOMEM, "no memory");
            goto done;
        }
        for (size_t r = n_merges; r-- > 0;) {   /* lowest rank last: it wins */
            const char *sp = memchr(mtext[r], ' ', mlen[r]);
            if (!sp || memchr(sp + 1, ' ', mlen[r] - (size_t)(sp + 1 - mtext[r]))) {
                free(buf);
                rc = err_set(eb, ERR_CORRUPT, "tokenizer.json: merges[%zu] is not two tokens "
                             "separated by one space", r);
                goto done;
            }
            size_t la = (size_t)(sp - mtext[r]), lb = mlen[r] - la - 1;
            if (la + lb > buf_cap) {
                char *nb = realloc(buf, la + lb);
                if (!nb) {
                    free(buf);
                    rc = err_set(eb, ERR_NOMEM, "no memory");
                    goto done;
                }
                buf = nb;
                buf_cap = la + lb;
            }
            memcpy(buf, mtext[r], la);
            memcpy(buf + la, sp + 1, lb);
            int32_t id = tok_map_find(&map, buf, la + lb);
            if (id >= 0)
                score[id] = -(float)r;
        }
        free(buf);
        pre = "default";
    } else {
        const json_t *dec = json_object_get(h->tok, "decoder");
        const char *dtype = json_string_value(json_object_get(dec, "type"));
        if (!dtype || strcmp(dtype, "ByteLevel") != 0) {
            rc = err_set(eb, ERR_UNSUPPORTED, "tokenizer.json: BPE without byte_fallback must "
                         "have a ByteLevel decoder (GPT-2 style); this one has '%s'",
                         dtype ? dtype : "none");
            goto done;
        }
        if ((rc = bpe_pre_name(json_object_get(h->tok, "pre_tokenizer"), &pre, eb)) < 0)
            goto done;
        if (!n_merges) {
            rc = err_set(eb, ERR_CORRUPT, "tokenizer.json: byte-level BPE without merges");
            goto done;
        }
    }

    eng_gguf_t *g = h->g;
    const char *model_name = spm ? "llama" : "gpt2";
    if ((rc = eng_gguf_set_str(g, "tokenizer.ggml.model", model_name, strlen(model_name))) < 0 ||
        (rc = eng_gguf_set_str(g, "tokenizer.ggml.pre", pre, strlen(pre))) < 0 ||
        (rc = eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", n_vocab, text, len)) < 0 ||
        (rc = eng_gguf_set_arr(g, "tokenizer.ggml.token_type", ENG_GGUF_INT32, n_vocab,
                               type)) < 0 ||
        (rc = eng_gguf_set_u32(g, "llama.vocab_size", n_vocab)) < 0 ||
        (spm && (rc = eng_gguf_set_arr(g, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, n_vocab,
                                       score)) < 0) ||
        (!spm && (rc = eng_gguf_set_arr_str(g, "tokenizer.ggml.merges", n_merges, mtext,
                                            mlen)) < 0)) {
        rc = err_set(eb, rc, "cannot set the tokenizer metadata");
        goto done;
    }
    if (spm) {
        /* SentencePiece adds a leading "▁" unless the normalizer/pre-tokenizer says not */
        bool prefix = false;
        const json_t *norm = json_object_get(h->tok, "normalizer");
        const json_t *pt = json_object_get(h->tok, "pre_tokenizer");
        const json_t *nl = json_object_get(norm, "normalizers");
        for (size_t i = 0; i < json_array_size(nl); i++) {
            const json_t *e = json_array_get(nl, i);
            const char *et = json_string_value(json_object_get(e, "type"));
            prefix = prefix || (et && !strcmp(et, "Prepend"));
        }
        const char *nt = json_string_value(json_object_get(norm, "type"));
        prefix = prefix || (nt && !strcmp(nt, "Prepend"));
        const char *ptt = json_string_value(json_object_get(pt, "type"));
        if (ptt && !strcmp(ptt, "Metaspace")) {
            const char *scheme = json_string_value(json_object_get(pt, "prepend_scheme"));
            prefix = prefix || (scheme ? strcmp(scheme, "never") != 0
                                       : json_is_true(json_object_get(pt, "add_prefix_space")));
        }
        if ((rc = eng_gguf_set_bool(g, "tokenizer.ggml.add_space_prefix", prefix)) < 0) {
            rc = err_set(eb, rc, "cannot set the tokenizer metadata");
            goto done;
        }
    }
    const char *tf, *tl;
    template_specials(json_object_get(h->tok, "post_processor"), &tf, &tl);
    rc = set_special_ids(h, added, n_vocab, tf, tl, eb);
    if (rc == 0 && spm && unk && eng_gguf_find_key(g, "tokenizer.ggml.unknown_token_id") < 0) {
        int32_t id = -1;
        for (uint32_t i = 0; i < n_vocab && id < 0; i++)
            if (type[i] == 2)
                id = (int32_t)i;
        if (id >= 0 && (rc = eng_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id",
                                              (uint32_t)id)) < 0)
            rc = err_set(eb, rc, "cannot set unknown_token_id");
    }
done:
    for (size_t i = 0; mtext && i < n_merges; i++)
        free((void *)mtext[i]);
    free(mtext);
    free(mlen);
    free(map.slot);
    free(pads);
    free(score);
    free(type);
    free(len);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------------------- */

int eng_hf_open(const char *dir, eng_gguf_t **out, struct errbuf *eb)
{
    if (!dir || !out)
        return err_set(eb, ERR_INVAL, "eng_hf_open: NULL argument");
    struct hf h = {.dir = dir};
    int rc = eng_gguf_new(&h.g);
    if (rc < 0)
        return err_set(eb, rc, "no memory");
    if ((rc = read_json(dir, "config.json", HF_MAX_CONFIG, true, &h.config, eb)) < 0 ||
        (rc = set_config(&h, eb)) < 0 ||
        (rc = read_json(dir, "tokenizer.json", HF_MAX_TOKENIZER, true, &h.tok, eb)) < 0 ||
        (rc = read_json(dir, "tokenizer_config.json", HF_MAX_CONFIG, false, &h.tok_cfg, eb)) < 0 ||
        (rc = set_tokenizer(&h, eb)) < 0 ||
        (rc = read_tensors(&h, eb)) < 0)
        goto fail;
    json_decref(h.config);
    json_decref(h.tok);
    json_decref(h.tok_cfg);
    json_decref(h.index);
    *out = h.g;
    return 0;
fail:
    json_decref(h.config);
    json_decref(h.tok);
    json_decref(h.tok_cfg);
    json_decref(h.index);
    eng_gguf_free(h.g);
    return rc;
}
