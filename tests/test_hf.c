/* tests/test_hf.c: Hugging Face folders (engine/format/hf.c), generated at test time.
 * Owns: a tiny llama folder (single file, sharded, tied) mapped to GGUF names, shapes
 * and keys; tokenizer.json files built from the shared GGUF vocabularies the way
 * transformers' converters build them, whose ids must equal llama.cpp's test vectors
 * through the HF path; stories260K written as an HF folder (Q/K un-permuted) giving the
 * same logits as the GGUF; malformed safetensors headers and folders. JSON is written
 * with jansson (this test is built only when jansson is). */
#include "../engine/engine.h"
#include "../engine/format/hf.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ---------------------------------------------------------------------------------- */
/* helpers */

static void model_path(char *out, size_t cap, const char *file)
{
    tu_model_path(out, cap, file);
}

static char *make_dir(const char *base, const char *name)
{
    char p[1024];
    if (!base) {
        const char *t = getenv("TMPDIR");
        snprintf(p, sizeof p, "%s/orthod-test-hf-XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(p));
    } else {
        snprintf(p, sizeof p, "%s/%s", base, name);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    return strdup(p);
}

/* rm -r of a folder this test made (one level of subfolders) */
static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *s)
{
    write_bytes(dir, name, s, strlen(s));
}

/* writes j to dir/name and releases it */
static void write_json(const char *dir, const char *name, json_t *j)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(json_dump_file(j, path, JSON_COMPACT), 0);
    json_decref(j);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)sz + 1);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    p[sz] = '\0';
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static bool str_eq(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && !memcmp(s, want, len);
}

/* --- safetensors writer --- */

struct st_in {
    const char *name;
    const char *dtype;           /* "F32", "F16", "BF16", ... */
    int rank;
    int64_t shape[4];            /* row-major, outermost first */
    const void *data;
    size_t nbytes;
};

/* A safetensors image: header padded with spaces to a multiple of 8, as the reference
 * writer does. Returns malloc'd bytes. */
static uint8_t *st_image(const struct st_in *t, int n, size_t *size)
{
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].rank; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", t[i].dtype, "shape", shape,
                                      "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + t[i].nbytes)));
        off += t[i].nbytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(hs);
    size_t hp = (hl + 7) / 8 * 8;
    *size = 8 + hp + off;
    uint8_t *img = malloc(*size);
    uint64_t l64 = hp;
    memcpy(img, &l64, 8);
    memcpy(img + 8, hs, hl);
    memset(img + 8 + hl, ' ', hp - hl);
    free(hs);
    size_t o = 8 + hp;
    for (int i = 0; i < n; i++) {
        if (t[i].nbytes)
            memcpy(img + o, t[i].data, t[i].nbytes);
        o += t[i].nbytes;
    }
    return img;
}

static void write_st(const char *dir, const char *name, const struct st_in *t, int n)
{
    size_t size;
    uint8_t *img = st_image(t, n, &size);
    write_bytes(dir, name, img, size);
    free(img);
}

/* ---------------------------------------------------------------------------------- */
/* a tiny llama folder: hidden 8, 2 heads, 1 KV head, 2 layers, ffn 16, vocab 6 */

#define TV 6
#define TH 8
#define TF 16
#define TL 2

struct tiny {
    float embed[TV * TH], norm[TH], inv_freq[2];
    uint16_t lm_head[TV * TH];                         /* BF16 */
    float ln1[TL][TH], ln2[TL][TH];
    uint16_t q[TL][TH * TH], k[TL][4 * TH], v[TL][4 * TH], o[TL][TH * TH];   /* F16 */
    uint16_t gate[TL][TF * TH], up[TL][TF * TH], down[TL][TH * TF];
};

static void tiny_fill(struct tiny *t)
{
    uint16_t *u = (uint16_t *)t;
    float *f = (float *)t;
    (void)u;
    (void)f;
    for (int i = 0; i < TV * TH; i++) {
        t->embed[i] = (float)i * 0.01f;
        t->lm_head[i] = eng_fp32_to_bf16((float)i * -0.02f);
    }
    for (int i = 0; i < TH; i++)
        t->norm[i] = 1.0f + (float)i;
    t->inv_freq[0] = 1.0f;
    t->inv_freq[1] = 0.01f;
    for (int l = 0; l < TL; l++) {
        for (int i = 0; i < TH; i++) {
            t->ln1[l][i] = (float)(l * 100 + i);
            t->ln2[l][i] = (float)(l * 100 + i) + 0.5f;
        }
        for (int i = 0; i < TH * TH; i++) {
            t->q[l][i] = eng_fp32_to_fp16((float)(i % 13) * 0.1f + (float)l);
            t->o[l][i] = eng_fp32_to_fp16((float)(i % 7) * 0.2f - (float)l);
        }
        for (int i = 0; i < 4 * TH; i++) {
            t->k[l][i] = eng_fp32_to_fp16((float)i * 0.03f);
            t->v[l][i] = eng_fp32_to_fp16((float)i * -0.03f);
        }
        for (int i = 0; i < TF * TH; i++) {
            t->gate[l][i] = eng_fp32_to_fp16((float)(i % 11) * 0.05f);
            t->up[l][i] = eng_fp32_to_fp16((float)(i % 5) * 0.05f);
            t->down[l][i] = eng_fp32_to_fp16((float)(i % 3) * 0.05f);
        }
    }
}

/* the tensor list, in HF names and shapes (row-major) */
static int tiny_tensors(const struct tiny *t, struct st_in *out, char names[][64])
{
    int n = 0;
#define ADD(nm, dt, r, s0, s1, ptr)                                                    \
    do {                                                                               \
        out[n] = (struct st_in){names[n], dt, r, {s0, s1, 0, 0}, ptr, sizeof *(ptr)};  \
        snprintf(names[n], 64, "%s", nm);                                              \
        n++;                                                                           \
    } while (0)
    ADD("model.embed_tokens.weight", "F32", 2, TV, TH, &t->embed);
    ADD("model.norm.weight", "F32", 1, TH, 0, &t->norm);
    ADD("lm_head.weight", "BF16", 2, TV, TH, &t->lm_head);
    char nm[64];
    for (int l = 0; l < TL; l++) {
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        ADD(nm, "F32", 1, TH, 0, &t->ln1[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(nm, "F32", 1, TH, 0, &t->ln2[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(nm, "F16", 2, TH, TH, &t->q[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(nm, "F16", 2, 4, TH, &t->k[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_proj.weight", l);
        ADD(nm, "F16", 2, 4, TH, &t->v[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.o_proj.weight", l);
        ADD(nm, "F16", 2, TH, TH, &t->o[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(nm, "F16", 2, TF, TH, &t->gate[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(nm, "F16", 2, TF, TH, &t->up[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l);
        ADD(nm, "F16", 2, TH, TF, &t->down[l]);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.rotary_emb.inv_freq", l);
        ADD(nm, "F32", 1, 2, 0, &t->inv_freq);
    }
#undef ADD
    return n;
}

static json_t *tiny_config(bool tied)
{
    return json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:i,s:s,s:b,s:n,s:i,s:i}",
                     "architectures", "LlamaForCausalLM", "model_type", "llama",
                     "hidden_size", TH, "intermediate_size", TF, "num_attention_heads", 2,
                     "num_key_value_heads", 1, "num_hidden_layers", TL,
                     "max_position_embeddings", 128, "rms_norm_eps", 1e-5, "rope_theta",
                     500000.0, "vocab_size", TV, "hidden_act", "silu", "tie_word_embeddings",
                     tied, "rope_scaling", "bos_token_id", 1, "eos_token_id", 2);
}

/* byte-level BPE: a, b, ab, Ġ, Ġa, plus <|endoftext|> (special) */
static json_t *tiny_tokenizer(void)
{
    return json_pack(
        "{s:s,s:[{s:i,s:s,s:b},{s:i,s:s,s:b}],s:n,s:{s:s,s:b,s:b},s:{s:s},"
        "s:{s:s,s:{s:i,s:i,s:i,s:i},s:[s,[s,s],s]}}",
        "version", "1.0", "added_tokens", "id", 5, "content", "<|endoftext|>", "special", 1,
        "id", 4, "content", "Ġa", "special", 0,
        "normalizer",
        "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
        "decoder", "type", "ByteLevel",
        "model", "type", "BPE", "vocab", "a", 0, "b", 1, "ab", 2, "Ġ", 3,
        "merges", "a b", "Ġ", "a", "x y");
}

static void make_tiny(const char *dir, bool tied, int shards)
{
    struct tiny *t = calloc(1, sizeof *t);
    tiny_fill(t);
    struct st_in ts[40];
    char names[40][64];
    int n = tiny_tensors(t, ts, names);
    write_json(dir, "config.json", tiny_config(tied));
    write_json(dir, "tokenizer.json", tiny_tokenizer());
    write_json(dir, "tokenizer_config.json",
               json_pack("{s:s,s:{s:s},s:b}", "bos_token", "<|endoftext|>", "eos_token",
                         "content", "<|endoftext|>", "add_bos_token", 0));
    if (shards <= 1) {
        write_st(dir, "model.safetensors", ts, n);
    } else {
        json_t *wm = json_object();
        int per = (n + shards - 1) / shards;
        for (int s = 0; s < shards; s++) {
            char fn[64];
            snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", s + 1, shards);
            int a = s * per, b = a + per < n ? a + per : n;
            write_st(dir, fn, ts + a, b - a);
            for (int i = a; i < b; i++)
                json_object_set_new(wm, ts[i].name, json_string(fn));
        }
        write_json(dir, "model.safetensors.index.json",
                   json_pack("{s:{s:i},s:o}", "metadata", "total_size", 0, "weight_map", wm));
    }
    free(t);
}

static void check_tensor(const eng_gguf_t *g, const char *name, enum eng_dtype dt, int n_dims,
                         int64_t ne0, int64_t ne1, const void *want, size_t nbytes)
{
    int64_t i = eng_gguf_find_tensor(g, name);
    if (i < 0)
        fail_msg("tensor %s missing", name);
    struct eng_gguf_tensor t;
    eng_gguf_tensor_at(g, i, &t);
    assert_int_equal(t.dtype, dt);
    assert_int_equal(t.n_dims, n_dims);
    assert_int_equal(t.ne[0], ne0);
    assert_int_equal(t.ne[1], ne1);
    assert_int_equal(t.ne[2], 1);
    assert_int_equal(t.nbytes, nbytes);
    assert_memory_equal(t.data, want, nbytes);
}

static void check_tiny(const eng_gguf_t *g, bool tied, const char *name)
{
    struct tiny *t = calloc(1, sizeof *t);
    tiny_fill(t);
    const char *s;
    size_t len;
    uint32_t u;
    float f;
    bool b;
    assert_int_equal(eng_gguf_get_str(g, "general.architecture", &s, &len), 0);
    assert_true(str_eq(s, len, "llama"));
    assert_int_equal(eng_gguf_get_str(g, "general.name", &s, &len), 0);
    assert_true(str_eq(s, len, name));
    static const struct {
        const char *key;
        uint32_t v;
    } u32s[] = {
        {"llama.context_length", 128}, {"llama.embedding_length", TH}, {"llama.block_count", TL},
        {"llama.feed_forward_length", TF}, {"llama.attention.head_count", 2},
        {"llama.attention.head_count_kv", 1}, {"llama.rope.dimension_count", TH / 2},
        {"llama.vocab_size", TV}, {"tokenizer.ggml.bos_token_id", 5},
        {"tokenizer.ggml.eos_token_id", 5},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        if (eng_gguf_get_u32(g, u32s[i].key, &u) != 0 || u != u32s[i].v)
            fail_msg("%s: want %u", u32s[i].key, u32s[i].v);
    }
    assert_int_equal(eng_gguf_get_f32(g, "llama.rope.freq_base", &f), 0);
    assert_true(f == 500000.0f);
    assert_int_equal(eng_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
    assert_true(f == 1e-5f);
    assert_int_equal(eng_gguf_get_bool(g, "orthod.rope.neox", &b), 0);
    assert_true(b);
    assert_int_equal(eng_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 0);
    assert_false(b);
    assert_int_equal(eng_gguf_find_key(g, "llama.rope.scaling.type"), -1);

    /* tokenizer: byte-level BPE */
    assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.model", &s, &len), 0);
    assert_true(str_eq(s, len, "gpt2"));
    assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), 0);
    assert_true(str_eq(s, len, "gpt-2"));
    static const char *const toks[TV] = {"a", "b", "ab", "Ġ", "Ġa", "<|endoftext|>"};
    static const int32_t types[TV] = {1, 1, 1, 1, 4, 3};
    enum eng_gguf_type et;
    uint64_t n;
    const void *data;
    assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data), 0);
    assert_int_equal(et, ENG_GGUF_INT32);
    assert_int_equal(n, TV);
    assert_memory_equal(data, types, sizeof types);
    for (int i = 0; i < TV; i++) {
        assert_int_equal(
            eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)i, &s, &len), 0);
        assert_true(str_eq(s, len, toks[i]));
    }
    static const char *const merges[] = {"a b", "Ġ a", "x y"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            eng_gguf_get_arr_str(g, "tokenizer.ggml.merges", (uint64_t)i, &s, &len), 0);
        assert_true(str_eq(s, len, merges[i]));
    }
    assert_int_equal(eng_gguf_find_key(g, "tokenizer.ggml.scores"), -1);

    /* tensors: GGUF names, ne reversed from the HF shapes, bytes not copied or changed */
    assert_int_equal(eng_gguf_n_tensors(g), tied ? 2 + 9 * TL : 3 + 9 * TL);
    check_tensor(g, "token_embd.weight", ENG_DTYPE_F32, 2, TH, TV, t->embed, sizeof t->embed);
    check_tensor(g, "output_norm.weight", ENG_DTYPE_F32, 1, TH, 1, t->norm, sizeof t->norm);
    if (tied)
        assert_int_equal(eng_gguf_find_tensor(g, "output.weight"), -1);
    else
        check_tensor(g, "output.weight", ENG_DTYPE_BF16, 2, TH, TV, t->lm_head,
                     sizeof t->lm_head);
    char nm[64];
    for (int l = 0; l < TL; l++) {
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F32, 1, TH, 1, t->ln1[l], sizeof t->ln1[l]);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F32, 1, TH, 1, t->ln2[l], sizeof t->ln2[l]);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, TH, t->q[l], sizeof t->q[l]);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, 4, t->k[l], sizeof t->k[l]);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, 4, t->v[l], sizeof t->v[l]);
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, TH, t->o[l], sizeof t->o[l]);
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, TF, t->gate[l], sizeof t->gate[l]);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TH, TF, t->up[l], sizeof t->up[l]);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        check_tensor(g, nm, ENG_DTYPE_F16, 2, TF, TH, t->down[l], sizeof t->down[l]);
    }
    free(t);
}

static void test_tiny_folder(void **state)
{
    (void)state;
    char *root = make_dir(NULL, NULL);
    static const struct {
        const char *name;
        bool tied;
        int shards;
    } v[] = {{"tiny-llama", false, 1}, {"tiny-tied", true, 1}, {"tiny-sharded", false, 3}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *dir = make_dir(root, v[i].name);
        make_tiny(dir, v[i].tied, v[i].shards);
        eng_gguf_t *g = NULL;
        struct errbuf eb = {{0}};
        int rc = eng_hf_open(dir, &g, &eb);
        if (rc)
            fail_msg("%s: %s", v[i].name, eb.msg);
        check_tiny(g, v[i].tied, v[i].name);

        /* the assembled object writes as a GGUF that reads back the same */
        char path[1100];
        snprintf(path, sizeof path, "%s/out.gguf", dir);
        assert_int_equal(eng_gguf_write(g, path, &eb), 0);
        eng_gguf_t *r = NULL;
        assert_int_equal(eng_gguf_open(path, &r, &eb), 0);
        check_tiny(r, v[i].tied, v[i].name);
        eng_gguf_free(r);
        eng_gguf_free(g);
        free(dir);
    }
    rm_tree(root);
    free(root);
}

/* ---------------------------------------------------------------------------------- */
/* tokenizer.json built from the shared GGUF vocabularies */

struct vocab_in {
    uint64_t n;
    const char **text;
    size_t *len;
    float *score;
    int32_t *type;
    uint64_t n_merges;
    const char **mtext;
    size_t *mlen;
};

static void vocab_read(const eng_gguf_t *g, struct vocab_in *v)
{
    enum eng_gguf_type et;
    const void *data;
    memset(v, 0, sizeof *v);
    assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &v->n, &data), 0);
    v->text = calloc(v->n, sizeof *v->text);
    v->len = calloc(v->n, sizeof *v->len);
    v->score = calloc(v->n, sizeof *v->score);
    v->type = calloc(v->n, sizeof *v->type);
    for (uint64_t i = 0; i < v->n; i++)
        assert_int_equal(eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &v->text[i],
                                              &v->len[i]), 0);
    uint64_t n;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data) == 0)
        memcpy(v->score, data, v->n * 4);
    assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data), 0);
    memcpy(v->type, data, v->n * 4);
    if (eng_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &v->n_merges, &data) == 0) {
        v->mtext = calloc(v->n_merges, sizeof *v->mtext);
        v->mlen = calloc(v->n_merges, sizeof *v->mlen);
        for (uint64_t i = 0; i < v->n_merges; i++)
            assert_int_equal(eng_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &v->mtext[i],
                                                  &v->mlen[i]), 0);
    }
}

static void vocab_free(struct vocab_in *v)
{
    free(v->text);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->mtext);
    free(v->mlen);
}

static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    assert_non_null(j);
    return j;
}

/* string -> id, for building merges */
struct smap {
    int64_t *slot;
    size_t cap;
    const struct vocab_in *v;
};

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void smap_build(struct smap *m, const struct vocab_in *v)
{
    m->cap = 1;
    while (m->cap < 4 * v->n)
        m->cap *= 2;
    m->slot = calloc(m->cap, sizeof *m->slot);
    m->v = v;
    for (uint64_t i = 0; i < v->n; i++) {
        size_t h = (size_t)fnv(v->text[i], v->len[i]) & (m->cap - 1);
        while (m->slot[h])
            h = (h + 1) & (m->cap - 1);
        m->slot[h] = (int64_t)i + 1;
    }
}

static int64_t smap_find(const struct smap *m, const char *s, size_t n)
{
    for (size_t h = (size_t)fnv(s, n) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        int64_t x = m->slot[h];
        if (!x)
            return -1;
        if (m->v->len[x - 1] == n && !memcmp(m->v->text[x - 1], s, n))
            return x - 1;
    }
}

struct merge {
    float score;
    int64_t piece, l, r;
};

static int merge_cmp(const void *a, const void *b)
{
    const struct merge *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->piece != y->piece)
        return x->piece < y->piece ? -1 : 1;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

/* tokenizer.json as transformers' LlamaConverter writes it for a SentencePiece model:
 * merges from SentencePieceExtractor (every split of a piece into two pieces, ordered
 * by the piece's score), byte_fallback, Prepend/Replace normalizer. */
static json_t *spm_tokenizer_json(const struct vocab_in *v)
{
    struct smap m;
    smap_build(&m, v);
    size_t cap = 1024, nm = 0;
    struct merge *ms = malloc(cap * sizeof *ms);
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->type[i] != 1)
            continue;     /* specials and bytes are not merge results */
        for (size_t k = 1; k < v->len[i]; k++) {
            int64_t l = smap_find(&m, v->text[i], k);
            int64_t r = smap_find(&m, v->text[i] + k, v->len[i] - k);
            if (l < 0 || r < 0)
                continue;
            if (nm == cap)
                ms = realloc(ms, (cap *= 2) * sizeof *ms);
            ms[nm++] = (struct merge){v->score[i], (int64_t)i, l, r};
        }
    }
    qsort(ms, nm, sizeof *ms, merge_cmp);
    json_t *merges = json_array();
    char *buf = malloc(4096);
    for (size_t i = 0; i < nm; i++) {
        size_t a = v->len[ms[i].l], b = v->len[ms[i].r];
        assert_true(a + b + 1 < 4096);
        memcpy(buf, v->text[ms[i].l], a);
        buf[a] = ' ';
        memcpy(buf + a + 1, v->text[ms[i].r], b);
        json_array_append_new(merges, jstr(buf, a + b + 1));
    }
    free(buf);
    free(ms);
    free(m.slot);
    json_t *vocab = json_object(), *added = json_array();
    for (uint64_t i = 0; i < v->n; i++) {
        char *k = strndup(v->text[i], v->len[i]);
        json_object_set_new(vocab, k, json_integer((json_int_t)i));
        free(k);
        if (v->type[i] == 2 || v->type[i] == 3)
            json_array_append_new(added, json_pack("{s:I,s:o,s:b,s:b}", "id", (json_int_t)i,
                                                   "content", jstr(v->text[i], v->len[i]),
                                                   "special", 1, "normalized", 0));
    }
    return json_pack(
        "{s:s,s:o,s:{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]},s:n,"
        "s:{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}]},"
        "s:{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s}]},"
        "s:{s:s,s:n,s:s,s:b,s:b,s:o,s:o}}",
        "version", "1.0", "added_tokens", added,
        "normalizer", "type", "Sequence", "normalizers", "type", "Prepend", "prepend",
        "\xe2\x96\x81", "type", "Replace", "pattern", "String", " ", "content", "\xe2\x96\x81",
        "pre_tokenizer",
        "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id", "<s>",
        "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "decoder", "type", "Sequence", "decoders", "type", "Replace", "pattern", "String",
        "\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse",
        "model", "type", "BPE", "dropout", "unk_token", "<unk>", "fuse_unk", 1, "byte_fallback",
        1, "vocab", vocab, "merges", merges);
}

/* tokenizer.json of a GPT-2 style vocabulary (ByteLevel pre-tokenizer and decoder). */
static json_t *bpe_tokenizer_json(const struct vocab_in *v)
{
    json_t *vocab = json_object(), *added = json_array(), *merges = json_array();
    for (uint64_t i = 0; i < v->n; i++) {
        char *k = strndup(v->text[i], v->len[i]);
        json_object_set_new(vocab, k, json_integer((json_int_t)i));
        free(k);
        if (v->type[i] == 3)
            json_array_append_new(added, json_pack("{s:I,s:o,s:b}", "id", (json_int_t)i,
                                                   "content", jstr(v->text[i], v->len[i]),
                                                   "special", 1));
    }
    for (uint64_t i = 0; i < v->n_merges; i++) {
        /* alternate the two merge formats: "a b" and ["a", "b"] */
        const char *sp = memchr(v->mtext[i] + 1, ' ', v->mlen[i] - 1);
        assert_non_null(sp);
        size_t la = (size_t)(sp - v->mtext[i]);
        if (i % 2)
            json_array_append_new(merges, jstr(v->mtext[i], v->mlen[i]));
        else
            json_array_append_new(merges, json_pack("[o,o]", jstr(v->mtext[i], la),
                                                    jstr(sp + 1, v->mlen[i] - la - 1)));
    }
    return json_pack("{s:s,s:o,s:n,s:{s:s,s:b,s:b,s:b},s:{s:s},s:{s:s,s:o,s:o}}", "version", "1.0",
                     "added_tokens", added, "normalizer", "pre_tokenizer", "type", "ByteLevel",
                     "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "decoder", "type",
                     "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges", merges);
}

static json_t *vocab_config(uint64_t n_vocab)
{
    return json_pack("{s:[s],s:i,s:i,s:i,s:i,s:i,s:I}", "architectures", "LlamaForCausalLM",
                     "hidden_size", 8, "intermediate_size", 16, "num_attention_heads", 2,
                     "num_key_value_heads", 2, "num_hidden_layers", 1, "vocab_size",
                     (json_int_t)n_vocab);
}

/* llama.cpp's .inp/.out vectors through a vocab */
static void run_vectors(const eng_vocab_t *voc, const char *file)
{
    char p[1024];
    size_t ni, no;
    model_path(p, sizeof p, file);
    strcat(p, ".inp");
    char *in = slurp(p, &ni);
    model_path(p, sizeof p, file);
    strcat(p, ".out");
    char *out = slurp(p, &no);
    assert_non_null(in);
    assert_non_null(out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *ci = in, *co = out;
    int n_cases = 0;
    int32_t *ids = malloc(65536 * sizeof *ids);
    for (char *e; (e = strstr(ci, sep)); ci = e + sizeof sep - 1) {
        char *eol = strchr(co, '\n');
        assert_non_null(eol);
        *eol = '\0';
        size_t n;
        assert_int_equal(eng_tokenize(voc, ci, (size_t)(e - ci), false, false, ids, 65536, &n), 0);
        char got[8192] = "";
        size_t gl = 0;
        for (size_t i = 0; i < n && gl < sizeof got - 16; i++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%d", i ? " " : "", ids[i]);
        /* .out lines may carry a leading space and trailing spaces */
        char *want = co;
        while (*want == ' ')
            want++;
        size_t wl = strlen(want);
        while (wl && want[wl - 1] == ' ')
            wl--;
        if (gl != wl || memcmp(got, want, wl))
            fail_msg("%s case %d (%.40s): got [%s] want [%.*s]", file, n_cases, ci, got, (int)wl,
                     want);
        co = eol + 1;
        n_cases++;
    }
    assert_true(n_cases >= 40);
    free(ids);
    free(in);
    free(out);
}

/* An HF folder with the given tokenizer.json (a norm weight as its only tensor). */
static void make_vocab_folder(const char *dir, uint64_t n_vocab, json_t *tok, json_t *tok_cfg)
{
    write_json(dir, "config.json", vocab_config(n_vocab));
    write_json(dir, "tokenizer.json", tok);
    if (tok_cfg)
        write_json(dir, "tokenizer_config.json", tok_cfg);
    float norm[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    struct st_in t = {"model.norm.weight", "F32", 1, {8}, norm, sizeof norm};
    write_st(dir, "model.safetensors", &t, 1);
}

static void test_spm_vocab_via_tokenizer_json(void **state)
{
    (void)state;
    if (!tu_have_model("ggml-vocab-llama-spm.gguf"))
        skip();
    char p[1024];
    model_path(p, sizeof p, "ggml-vocab-llama-spm.gguf");
    eng_gguf_t *orig = NULL;
    assert_int_equal(eng_gguf_open(p, &orig, NULL), 0);
    struct vocab_in v;
    vocab_read(orig, &v);
    char *root = make_dir(NULL, NULL);
    make_vocab_folder(root, v.n, spm_tokenizer_json(&v),
                      json_pack("{s:b,s:b,s:{s:s},s:s,s:s}", "add_bos_token", 1, "add_eos_token",
                                0, "bos_token", "content", "<s>", "eos_token", "</s>",
                                "unk_token", "<unk>"));
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    if (eng_hf_open(root, &g, &eb) != 0)
        fail_msg("%s", eb.msg);
    const char *s;
    size_t len;
    assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.model", &s, &len), 0);
    assert_true(str_eq(s, len, "llama"));
    /* same tokens and the same token types as llama.cpp's own GGUF */
    struct vocab_in w;
    vocab_read(g, &w);
    assert_int_equal(w.n, v.n);
    for (uint64_t i = 0; i < v.n; i++) {
        assert_int_equal(w.len[i], v.len[i]);
        assert_memory_equal(w.text[i], v.text[i], v.len[i]);
        if (w.type[i] != v.type[i])
            fail_msg("token %llu '%.*s': type %d, llama.cpp has %d", (unsigned long long)i,
                     (int)v.len[i], v.text[i], w.type[i], v.type[i]);
    }
    /* derived scores order the merged pieces as SentencePiece's scores do: compare each
     * merged normal token with the previous one (tokens no merge makes share the lowest
     * derived score and are skipped) */
    float lowest = INFINITY;
    for (uint64_t i = 0; i < w.n; i++)
        lowest = fminf(lowest, w.score[i]);
    int64_t prev = -1;
    int n_ordered = 0;
    for (uint64_t i = 0; i < v.n; i++) {
        if (v.type[i] != 1 || w.score[i] == lowest)
            continue;
        if (prev >= 0 && v.score[i] != v.score[prev]) {
            if ((v.score[i] < v.score[prev]) != (w.score[i] < w.score[prev]))
                fail_msg("tokens %lld and %llu: SentencePiece scores %g, %g; derived %g, %g",
                         (long long)prev, (unsigned long long)i, v.score[prev], v.score[i],
                         w.score[prev], w.score[i]);
            n_ordered++;
        }
        prev = (int64_t)i;
    }
    print_message("llama-spm via tokenizer.json: %d merged tokens in SentencePiece order\n",
                  n_ordered);
    assert_true(n_ordered > 20000);
    uint32_t u;
    bool b;
    assert_int_equal(eng_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), 0);
    assert_int_equal(u, 1);
    assert_int_equal(eng_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u), 0);
    assert_int_equal(u, 2);
    assert_int_equal(eng_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &u), 0);
    assert_int_equal(u, 0);
    assert_int_equal(eng_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 0);
    assert_true(b);
    assert_int_equal(eng_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b), 0);
    assert_false(b);
    assert_int_equal(eng_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b), 0);
    assert_true(b);

    /* and llama.cpp's test vectors give llama.cpp's ids through this vocab */
    eng_vocab_t *voc = NULL;
    if (eng_vocab_from_gguf(g, &voc, &eb) != 0)
        fail_msg("vocab: %s", eb.msg);
    run_vectors(voc, "ggml-vocab-llama-spm.gguf");
    eng_vocab_free(voc);
    vocab_free(&w);
    vocab_free(&v);
    eng_gguf_free(g);
    eng_gguf_free(orig);
    rm_tree(root);
    free(root);
}

static void test_bpe_vocab_via_tokenizer_json(void **state)
{
    (void)state;
    if (!tu_have_model("ggml-vocab-gpt-2.gguf"))
        skip();
    char p[1024];
    model_path(p, sizeof p, "ggml-vocab-gpt-2.gguf");
    eng_gguf_t *orig = NULL;
    assert_int_equal(eng_gguf_open(p, &orig, NULL), 0);
    struct vocab_in v;
    vocab_read(orig, &v);
    char *root = make_dir(NULL, NULL);
    make_vocab_folder(root, v.n, bpe_tokenizer_json(&v),
                      json_pack("{s:s,s:s}", "bos_token", "<|endoftext|>", "eos_token",
                                "<|endoftext|>"));
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    if (eng_hf_open(root, &g, &eb) != 0)
        fail_msg("%s", eb.msg);
    struct vocab_in w;
    vocab_read(g, &w);
    assert_int_equal(w.n, v.n);
    assert_int_equal(w.n_merges, v.n_merges);
    for (uint64_t i = 0; i < v.n; i++) {
        assert_int_equal(w.len[i], v.len[i]);
        assert_memory_equal(w.text[i], v.text[i], v.len[i]);
        assert_int_equal(w.type[i], v.type[i]);
    }
    for (uint64_t i = 0; i < v.n_merges; i++) {
        assert_int_equal(w.mlen[i], v.mlen[i]);
        assert_memory_equal(w.mtext[i], v.mtext[i], v.mlen[i]);
    }
    const char *s;
    size_t len;
    assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), 0);
    assert_true(str_eq(s, len, "gpt-2"));
    uint32_t u;
    assert_int_equal(eng_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), 0);
    assert_int_equal(u, 50256);
    eng_vocab_t *voc = NULL;
    if (eng_vocab_from_gguf(g, &voc, &eb) != 0)
        fail_msg("vocab: %s", eb.msg);
    run_vectors(voc, "ggml-vocab-gpt-2.gguf");
    eng_vocab_free(voc);
    vocab_free(&w);
    vocab_free(&v);
    eng_gguf_free(g);
    eng_gguf_free(orig);
    rm_tree(root);
    free(root);
}

/* Llama-3 style: Split regex + ByteLevel, TemplateProcessing adds BOS, padded vocab. */
static void test_llama3_style_tokenizer(void **state)
{
    (void)state;
    static const char regex[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"
        "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    json_t *tok = json_pack(
        "{s:[{s:i,s:s,s:b},{s:i,s:s,s:b}],s:{s:s,s:[{s:s,s:{s:s},s:s},{s:s,s:b}]},"
        "s:{s:s,s:[{s:{s:s}},{s:{s:s}}]},s:{s:s},"
        "s:{s:s,s:b,s:{s:i,s:i,s:i},s:[s]}}",
        "added_tokens", "id", 4, "content", "<|begin_of_text|>", "special", 1, "id", 5,
        "content", "<|reserved_special_token_0|>", "special", 0,
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern",
        "Regex", regex, "behavior", "Isolated", "type", "ByteLevel", "use_regex", 0,
        "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id",
        "<|begin_of_text|>", "Sequence", "id", "A",
        "decoder", "type", "ByteLevel",
        "model", "type", "BPE", "ignore_merges", 1, "vocab", "a", 0, "b", 1, "ab", 2,
        "merges", "a b");
    char *root = make_dir(NULL, NULL);
    json_t *cfg = json_pack("{s:[s],s:i,s:i,s:i,s:i,s:i,s:I,s:{s:s,s:f}}", "architectures",
                            "MistralForCausalLM", "hidden_size", 8, "intermediate_size", 16,
                            "num_attention_heads", 2, "num_key_value_heads", 2,
                            "num_hidden_layers", 1, "vocab_size", (json_int_t)8, "rope_scaling",
                            "type", "linear", "factor", 4.0);
    write_json(root, "config.json", cfg);
    write_json(root, "tokenizer.json", tok);
    float norm[8] = {0};
    struct st_in t = {"model.norm.weight", "F32", 1, {8}, norm, sizeof norm};
    write_st(root, "model.safetensors", &t, 1);
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    if (eng_hf_open(root, &g, &eb) != 0)
        fail_msg("%s", eb.msg);
    const char *s;
    size_t len;
    assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), 0);
    assert_true(str_eq(s, len, "llama-bpe"));
    bool b;
    assert_int_equal(eng_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 0);
    assert_true(b);
    uint32_t u;
    assert_int_equal(eng_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), 0);
    assert_int_equal(u, 4);
    /* ids 3, 6, 7 are unused: [PADn], UNUSED; 5 looks special: CONTROL */
    enum eng_gguf_type et;
    uint64_t n;
    const void *data;
    assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data), 0);
    assert_int_equal(n, 8);
    static const int32_t types[8] = {1, 1, 1, 5, 3, 3, 5, 5};
    assert_memory_equal(data, types, sizeof types);
    assert_int_equal(eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 6, &s, &len), 0);
    assert_true(str_eq(s, len, "[PAD6]"));
    assert_int_equal(eng_gguf_get_str(g, "llama.rope.scaling.type", &s, &len), 0);
    assert_true(str_eq(s, len, "linear"));
    float f;
    assert_int_equal(eng_gguf_get_f32(g, "llama.rope.scaling.factor", &f), 0);
    assert_true(f == 4.0f);
    eng_gguf_free(g);
    rm_tree(root);
    free(root);
}

/* ---------------------------------------------------------------------------------- */
/* stories260K as an HF folder: same logits as the GGUF */

/* GGUF llama files store Q/K rows permuted for adjacent-pair RoPE (convert_hf_to_gguf.py
 * LlamaModel.permute); undo it: HF row h*d + j*d/2 + i = GGUF row h*d + 2*i + j. */
static void unpermute(float *dst, const float *src, int n_head, int n_rows, int n_cols)
{
    int d = n_rows / n_head;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < d / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * d + j * d / 2 + i) * (size_t)n_cols,
                       src + (size_t)(h * d + 2 * i + j) * (size_t)n_cols,
                       sizeof(float) * (size_t)n_cols);
}

static float *run_logits(const char *path, const int32_t *toks, int n, int32_t *n_vocab,
                         const int32_t *want_toks)
{
    struct eng_cpu_params cp = {.n_threads = 1};
    eng_backend_t *be = NULL;
    assert_int_equal(eng_cpu_backend_new(&cp, &be), 0);
    struct eng_model_params mp = {.be = be};
    eng_model_t *m = NULL;
    struct errbuf eb = {{0}};
    if (eng_model_load(path, &mp, &m, &eb) != 0)
        fail_msg("%s: %s", path, eb.msg);
    const eng_vocab_t *voc = eng_model_vocab(m);
    if (want_toks) {
        int32_t ids[16];
        size_t k;
        static const char prompt[] = "Once upon a time";
        assert_int_equal(eng_tokenize(voc, prompt, strlen(prompt), true, false, ids, 16, &k), 0);
        assert_int_equal(k, (size_t)n);
        assert_memory_equal(ids, want_toks, (size_t)n * sizeof *ids);
    }
    *n_vocab = eng_model_hparams(m)->n_vocab;
    // F32 cache: the two loaders run different (equally valid) summation orders, and an
    // F16 cache can round a K/V element differently; F32 keeps the comparison at 1e-5
    struct eng_ctx_params p = tu_ctx_params(64, 1, 16, ENG_KV_F32);
    eng_ctx_t *c = NULL;
    if (eng_ctx_new(m, &p, &c, &eb) != 0)
        fail_msg("ctx: %s", eb.msg);
    int32_t seq;
    assert_int_equal(eng_ctx_seq_new(c, &seq), 0);
    int32_t sid[16];
    bool want[16];
    for (int i = 0; i < n; i++) {
        sid[i] = seq;
        want[i] = true;
    }
    struct eng_batch bt = {.n = n, .tokens = toks, .seq_id = sid, .want_logits = want};
    assert_int_equal(eng_ctx_decode(c, &bt), 0);
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)*n_vocab);
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * (size_t)*n_vocab, eng_ctx_logits(c, i),
               sizeof(float) * (size_t)*n_vocab);
    eng_ctx_free(c);
    eng_model_free(m);
    eng_backend_free(be);
    return out;
}

static void test_stories_hf_logits(void **state)
{
    (void)state;
    if (!tu_have_model("stories260K.gguf"))
        skip();
    char gpath[1024];
    model_path(gpath, sizeof gpath, "stories260K.gguf");
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_open(gpath, &g, NULL), 0);
    const int n_head = 8, n_head_kv = 4;

    /* the weights under HF names, row-major shapes, Q/K un-permuted */
    int nt = (int)eng_gguf_n_tensors(g);
    struct st_in *ts = calloc((size_t)nt, sizeof *ts);
    char (*names)[64] = calloc((size_t)nt, sizeof *names);
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int i = 0; i < nt; i++) {
        struct eng_gguf_tensor t;
        eng_gguf_tensor_at(g, i, &t);
        assert_int_equal(t.dtype, ENG_DTYPE_F32);
        int layer = -1;
        char what[64] = "";
        if (sscanf(t.name, "blk.%d.%63s", &layer, what) == 2) {
            static const char *const map[][2] = {
                {"attn_norm.weight", "input_layernorm.weight"},
                {"attn_q.weight", "self_attn.q_proj.weight"},
                {"attn_k.weight", "self_attn.k_proj.weight"},
                {"attn_v.weight", "self_attn.v_proj.weight"},
                {"attn_output.weight", "self_attn.o_proj.weight"},
                {"ffn_norm.weight", "post_attention_layernorm.weight"},
                {"ffn_gate.weight", "mlp.gate_proj.weight"},
                {"ffn_up.weight", "mlp.up_proj.weight"},
                {"ffn_down.weight", "mlp.down_proj.weight"},
            };
            bool found = false;
            for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
                if (!strcmp(what, map[k][0])) {
                    snprintf(names[i], 64, "model.layers.%d.%s", layer, map[k][1]);
                    found = true;
                }
            }
            assert_true(found);
        } else if (!strcmp(t.name, "token_embd.weight")) {
            strcpy(names[i], "model.embed_tokens.weight");
        } else if (!strcmp(t.name, "output_norm.weight")) {
            strcpy(names[i], "model.norm.weight");
        } else if (!strcmp(t.name, "output.weight")) {
            strcpy(names[i], "lm_head.weight");
        } else {
            fail_msg("unexpected tensor %s", t.name);
        }
        bufs[i] = malloc(t.nbytes);
        if (strstr(t.name, "attn_q.weight"))
            unpermute(bufs[i], t.data, n_head, (int)t.ne[1], (int)t.ne[0]);
        else if (strstr(t.name, "attn_k.weight"))
            unpermute(bufs[i], t.data, n_head_kv, (int)t.ne[1], (int)t.ne[0]);
        else
            memcpy(bufs[i], t.data, t.nbytes);
        ts[i] = (struct st_in){names[i], "F32", t.n_dims, {0}, bufs[i], t.nbytes};
        for (int d = 0; d < t.n_dims; d++)
            ts[i].shape[d] = t.ne[t.n_dims - 1 - d];
    }
    char *root = make_dir(NULL, NULL);
    char *dir = make_dir(root, "stories260K-hf");
    write_st(dir, "model.safetensors", ts, nt);
    write_json(dir, "config.json",
               json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:i,s:s,s:b}",
                         "architectures", "LlamaForCausalLM", "model_type", "llama",
                         "hidden_size", 64, "intermediate_size", 172, "num_attention_heads",
                         n_head, "num_key_value_heads", n_head_kv, "num_hidden_layers", 5,
                         "max_position_embeddings", 2048, "rms_norm_eps", 1e-5, "rope_theta",
                         10000.0, "vocab_size", 512, "hidden_act", "silu",
                         "tie_word_embeddings", 0));
    struct vocab_in v;
    vocab_read(g, &v);
    write_json(dir, "tokenizer.json", spm_tokenizer_json(&v));
    write_json(dir, "tokenizer_config.json",
               json_pack("{s:b,s:s,s:s}", "add_bos_token", 1, "bos_token", "<s>", "eos_token",
                         "</s>"));
    vocab_free(&v);

    static const int32_t toks[] = {1, 403, 407, 261, 378};
    int n = 5;
    int32_t V1, V2;
    float *a = run_logits(gpath, toks, n, &V1, toks);
    float *b = run_logits(dir, toks, n, &V2, toks);
    assert_int_equal(V1, 512);
    assert_int_equal(V2, 512);
    double md = 0, mb = 0;
    for (size_t i = 0; i < (size_t)n * 512; i++) {
        assert_true(isfinite(a[i]) && isfinite(b[i]));
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)a[i]));
    }
    print_message("stories260K GGUF vs HF folder: max |diff| %.3g, max |logit| %.3g\n", md, mb);
    assert_true(md <= 1e-4 * mb);
    /* greedy next token after the prompt: the documented story's first id */
    int best = 0;
    for (int j = 1; j < 512; j++)
        if (b[4 * 512 + j] > b[4 * 512 + best])
            best = j;
    assert_int_equal(best, 432);
    free(a);
    free(b);
    for (int i = 0; i < nt; i++)
        free(bufs[i]);
    free(bufs);
    free(names);
    free(ts);
    eng_gguf_free(g);
    rm_tree(root);
    free(root);
    free(dir);
}

/* ---------------------------------------------------------------------------------- */
/* malformed safetensors */

struct st_seen {
    int n;
    char names[8][64];
    int64_t ne[8][4];
    size_t nbytes[8];
};

static int st_collect(void *ctx, const struct eng_hf_st_tensor *t, struct errbuf *eb)
{
    (void)eb;
    struct st_seen *s = ctx;
    if (s->n < 8) {
        snprintf(s->names[s->n], 64, "%s", t->name);
        memcpy(s->ne[s->n], t->ne, sizeof t->ne);
        s->nbytes[s->n] = t->nbytes;
    }
    s->n++;
    return 0;
}

/* a file image: u64 header length, header text, then `data` zero bytes. hlen_field 0:
 * the header is padded with spaces to a multiple of 8 (data start aligned) and its
 * true length stored; else hlen_field is stored as given. */
static uint8_t *raw_image(const char *header, uint64_t hlen_field, size_t data, size_t *size)
{
    size_t hl = strlen(header), hp = hlen_field ? hl : (hl + 7) / 8 * 8;
    *size = 8 + hp + data;
    uint8_t *p = calloc(1, *size);
    uint64_t field = hlen_field ? hlen_field : hp;
    memcpy(p, &field, 8);
    memset(p + 8, ' ', hp);
    memcpy(p + 8, header, hl);
    return p;
}

static void test_safetensors_valid(void **state)
{
    (void)state;
    /* listed out of order; delivered in data order with ne reversed; zero-size ok */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                    "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[28,28]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}    ";
    size_t size;
    uint8_t *p = raw_image(h, 0, 28, &size);
    struct st_seen s = {0};
    struct errbuf eb = {{0}};
    int rc = eng_hf_safetensors_parse(p, size, st_collect, &s, &eb);
    if (rc)
        fail_msg("%s", eb.msg);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "a");
    assert_string_equal(s.names[1], "b");
    assert_string_equal(s.names[2], "z");
    assert_int_equal(s.ne[1][0], 3);
    assert_int_equal(s.ne[1][1], 2);
    assert_int_equal(s.nbytes[1], 12);
    assert_int_equal(s.ne[2][0], 4);
    assert_int_equal(s.ne[2][1], 0);
    assert_int_equal(s.nbytes[2], 0);
    free(p);
}

struct st_bad {
    const char *name;
    const char *header;           /* NULL: use hlen/size below */
    uint64_t hlen;                /* 0: strlen(header) */
    size_t data;
    int rc;
    const char *words;
};

#define T1(body) "{\"t\":{" body "}}"

static const struct st_bad st_bads[] = {
    {"too short", NULL, 0, 0, ERR_CORRUPT, "too short"},
    {"header over the cap", "{}", 1ull << 40, 0, ERR_CORRUPT, "over the 100 MiB limit"},
    {"header past EOF", "{}", 1000, 0, ERR_CORRUPT, "header length 1000 past end of file"},
    {"not JSON", "{\"t\": nope}", 0, 0, ERR_CORRUPT, "invalid JSON"},
    {"not an object", "[1, 2]", 0, 0, ERR_CORRUPT, "not a JSON object"},
    {"duplicate tensor", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     0, 8, ERR_CORRUPT, "duplicate"},
    {"entry not an object", "{\"t\": 5}", 0, 0, ERR_CORRUPT, "tensor 't': entry is not an object"},
    {"metadata not an object", "{\"__metadata__\": 5}", 0, 0, ERR_CORRUPT, "__metadata__"},
    {"missing fields", T1("\"dtype\":\"F32\""), 0, 0, ERR_CORRUPT, "tensor 't': needs dtype"},
    {"dtype I64", T1("\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]"), 0, 8,
     ERR_UNSUPPORTED, "tensor 't': dtype I64 is not supported"},
    {"rank 0", T1("\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]"), 0, 4,
     ERR_UNSUPPORTED, "rank 0"},
    {"rank 5", T1("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]"), 0, 4,
     ERR_UNSUPPORTED, "rank 5"},
    {"negative shape", T1("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 0, 4,
     ERR_CORRUPT, "shape[0] is not a non-negative integer"},
    {"shape overflow", T1("\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                          "\"data_offsets\":[0,4]"), 0, 4, ERR_CORRUPT, "overflows"},
    {"bytes != shape", T1("\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]"), 0, 16,
     ERR_CORRUPT, "data_offsets hold 12 bytes but the shape needs 16"},
    {"offsets past EOF", T1("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), 0, 8,
     ERR_CORRUPT, "tensor 't': data_offsets [0, 16) past end of file"},
    {"begin > end", T1("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]"), 0, 8,
     ERR_CORRUPT, "past end of file"},
    {"offsets not integers", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]"), 0,
     4, ERR_CORRUPT, "data_offsets are not non-negative integers"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     0, 24, ERR_CORRUPT, "tensor 'b': data overlaps tensor 'a'"},
    {"misaligned", T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]") " ", 0, 8,
     ERR_UNSUPPORTED, "not aligned"},
};

static void test_safetensors_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof st_bads / sizeof st_bads[0]; i++) {
        const struct st_bad *c = &st_bads[i];
        size_t size;
        uint8_t *p;
        if (!c->header) {
            p = calloc(1, 4);
            size = 4;
        } else {
            p = raw_image(c->header, c->hlen, c->data, &size);
        }
        struct st_seen s = {0};
        struct errbuf eb = {{0}};
        int rc = eng_hf_safetensors_parse(p, size, st_collect, &s, &eb);
        if (rc != c->rc || !strstr(eb.msg, c->words))
            fail_msg("case '%s': rc %d (want %d), message \"%s\" (want \"%s\")", c->name, rc,
                     c->rc, eb.msg, c->words);
        assert_int_equal(s.n, 0);      /* nothing delivered from a bad file */
        /* every truncation fails cleanly too */
        for (size_t k = 0; k < size; k++) {
            uint8_t *q = malloc(k ? k : 1);
            memcpy(q, p, k);
            struct st_seen s2 = {0};
            eng_hf_safetensors_parse(q, k, st_collect, &s2, NULL);
            free(q);
        }
        free(p);
    }
}

/* ---------------------------------------------------------------------------------- */
/* malformed folders */

typedef void (*spoil_fn)(const char *dir);

static void spoil_no_config(const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
}
static void spoil_config_json(const char *dir)
{
    write_text(dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\",}");
}
static void spoil_arch(const char *dir)
{
    write_text(dir, "config.json",
               "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 8}");
}
static void spoil_act(const char *dir)
{
    json_t *c = tiny_config(false);
    json_object_set_new(c, "hidden_act", json_string("gelu"));
    write_json(dir, "config.json", c);
}
static void spoil_rope(const char *dir)
{
    json_t *c = tiny_config(false);
    json_object_set_new(c, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "llama3",
                                                     "factor", 8.0));
    write_json(dir, "config.json", c);
}
static void spoil_sizes(const char *dir)
{
    json_t *c = tiny_config(false);
    json_object_set_new(c, "num_attention_heads", json_integer(3));
    write_json(dir, "config.json", c);
}
static void spoil_missing_size(const char *dir)
{
    json_t *c = tiny_config(false);
    json_object_del(c, "hidden_size");
    write_json(dir, "config.json", c);
}
static void spoil_bias(const char *dir)
{
    float b[TH] = {0};
    struct st_in t = {"model.layers.0.self_attn.q_proj.bias", "F32", 1, {TH}, b, sizeof b};
    write_st(dir, "model.safetensors", &t, 1);
}
static void spoil_layer(const char *dir)
{
    float b[TH] = {0};
    struct st_in t = {"model.layers.7.input_layernorm.weight", "F32", 1, {TH}, b, sizeof b};
    write_st(dir, "model.safetensors", &t, 1);
}
static void spoil_no_weights(const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
}
static void spoil_no_tokenizer(const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
}
static void spoil_unigram(const char *dir)
{
    write_json(dir, "tokenizer.json", json_pack("{s:{s:s,s:[]}}", "model", "type", "Unigram",
                                                "vocab"));
}
static void spoil_vocab_id(const char *dir)
{
    write_json(dir, "tokenizer.json", json_pack("{s:{s:s,s:{s:i},s:[]}}", "model", "type", "BPE",
                                                "vocab", "a", -3, "merges"));
}
static void spoil_shared_id(const char *dir)
{
    write_json(dir, "tokenizer.json", json_pack("{s:{s:s,s:{s:i,s:i},s:[]},s:{s:s}}", "model",
                                                "type", "BPE", "vocab", "a", 0, "b", 0, "merges",
                                                "decoder", "type", "ByteLevel"));
}
static void spoil_huge_id(const char *dir)
{
    write_json(dir, "tokenizer.json", json_pack("{s:{s:s,s:{s:i},s:[]},s:{s:s}}", "model",
                                                "type", "BPE", "vocab", "a", 10000000, "merges",
                                                "decoder", "type", "ByteLevel"));
}
static void spoil_index_escape(const char *dir)
{
    write_json(dir, "model.safetensors.index.json",
               json_pack("{s:{s:s}}", "weight_map", "model.norm.weight", "../model.safetensors"));
}
static void spoil_index_missing(const char *dir)
{
    float b[TH] = {0};
    struct st_in t = {"model.norm.weight", "F32", 1, {TH}, b, sizeof b};
    write_st(dir, "model.safetensors", &t, 1);
    json_t *wm = json_pack("{s:s,s:s}", "model.norm.weight", "model.safetensors", "ghost.weight",
                           "model.safetensors");
    json_t *ix = json_pack("{s:o}", "weight_map", wm);
    write_json(dir, "model.safetensors.index.json", ix);
}
static void spoil_index_shard_gone(const char *dir)
{
    write_json(dir, "model.safetensors.index.json",
               json_pack("{s:{s:s}}", "weight_map", "model.norm.weight", "model-2.safetensors"));
}
static void spoil_bad_safetensors(const char *dir)
{
    static const char img[] = "\x10\0\0\0\0\0\0\0{\"a\":7}         ";
    write_bytes(dir, "model.safetensors", img, sizeof img - 1);
}

struct folder_bad {
    const char *name;
    spoil_fn fn;
    int rc;
    const char *words;
};

static const struct folder_bad folder_bads[] = {
    {"no config.json", spoil_no_config, ERR_NOTFOUND, "config.json: cannot open"},
    {"config not JSON", spoil_config_json, ERR_CORRUPT, "config.json: invalid JSON at line 1"},
    {"unknown architecture", spoil_arch, ERR_UNSUPPORTED,
     "architecture 'GPT2LMHeadModel' is not supported"},
    {"gelu", spoil_act, ERR_UNSUPPORTED, "hidden_act 'gelu'"},
    {"llama3 rope scaling", spoil_rope, ERR_UNSUPPORTED, "rope_scaling type 'llama3'"},
    {"heads do not divide", spoil_sizes, ERR_CORRUPT, "inconsistent sizes"},
    {"hidden_size missing", spoil_missing_size, ERR_CORRUPT, "'hidden_size' is missing"},
    {"bias tensor", spoil_bias, ERR_UNSUPPORTED,
     "tensor 'model.layers.0.self_attn.q_proj.bias' has no place in the llama layout"},
    {"layer out of range", spoil_layer, ERR_CORRUPT, "layer 7 but config.json has"},
    {"no weights", spoil_no_weights, ERR_NOTFOUND, "neither model.safetensors"},
    {"no tokenizer.json", spoil_no_tokenizer, ERR_NOTFOUND, "tokenizer.json: cannot open"},
    {"unigram", spoil_unigram, ERR_UNSUPPORTED, "model type 'Unigram'"},
    {"negative token id", spoil_vocab_id, ERR_CORRUPT, "token 'a': id must be"},
    {"two tokens one id", spoil_shared_id, ERR_CORRUPT, "share id 0"},
    {"huge token id", spoil_huge_id, ERR_CORRUPT, "a vocabulary of 10000001 ids for only 1"},
    {"index escapes the folder", spoil_index_escape, ERR_CORRUPT,
     "shard must be a file name inside the folder"},
    {"index lists a missing tensor", spoil_index_missing, ERR_CORRUPT, "lists 2 tensors"},
    {"index names a missing shard", spoil_index_shard_gone, ERR_NOTFOUND,
     "model-2.safetensors: cannot open"},
    {"bad safetensors", spoil_bad_safetensors, ERR_CORRUPT,
     "model.safetensors: tensor 'a': entry is not an object"},
};

static void test_folder_malformed(void **state)
{
    (void)state;
    char *root = make_dir(NULL, NULL);
    for (size_t i = 0; i < sizeof folder_bads / sizeof folder_bads[0]; i++) {
        const struct folder_bad *c = &folder_bads[i];
        char nm[32];
        snprintf(nm, sizeof nm, "case%zu", i);
        char *dir = make_dir(root, nm);
        make_tiny(dir, false, 1);
        c->fn(dir);
        eng_gguf_t *g = NULL;
        struct errbuf eb = {{0}};
        int rc = eng_hf_open(dir, &g, &eb);
        if (rc != c->rc || !strstr(eb.msg, c->words))
            fail_msg("case '%s': rc %d (want %d), message \"%s\" (want \"%s\")", c->name, rc,
                     c->rc, eb.msg, c->words);
        assert_null(g);
        free(dir);
    }
    rm_tree(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_folder),
        cmocka_unit_test(test_llama3_style_tokenizer),
        cmocka_unit_test(test_safetensors_valid),
        cmocka_unit_test(test_safetensors_malformed),
        cmocka_unit_test(test_folder_malformed),
        cmocka_unit_test(test_spm_vocab_via_tokenizer_json),
        cmocka_unit_test(test_bpe_vocab_via_tokenizer_json),
        cmocka_unit_test(test_stories_hf_logits),
    };
    static const char *const models[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                                         "stories260K.gguf"};
    const int missing = tu_missing_models(models, sizeof models / sizeof models[0]);
    return tu_exit(cmocka_run_group_tests(tests, NULL, NULL), missing);
}
