/* engine/tok/vocab.c: the vocabulary (eng_vocab_t): reading tokenizer.ggml.* from a model
 * file, the special-token rules (BOS/EOS/EOG, control and user-defined tokens, the
 * lstrip/rstrip rules), the byte maps, the getters, and the lookups the encoders use
 * (token by text, BPE merge rank). The rules follow llama.cpp's llama-vocab.cpp so that
 * ids match; where this file departs from it (hostile input that llama.cpp would crash or
 * throw on) the comment says so. Limits: 16M tokens, 16M merges and 1 GiB of token text
 * per vocabulary. */
#include "unicode.h"
#include "vocab.h"

#include "../../common/grow.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS (1u << 24)
#define MAX_MERGES (1u << 24)
#define MAX_POOL (1u << 30)

/* --- lookups the encoders use ------------------------------------------------------------ */

int32_t eng__vocab_find(const eng_vocab_t *v, const char *s, size_t n)
{
    if (n == 0 || n > v->max_token_len)
        return -1;
    return (int32_t)eng__strtab_find(&v->index, s, n, eng__hash(s, n));
}

static int32_t find_lit(const eng_vocab_t *v, const char *s)
{
    return eng__vocab_find(v, s, strlen(s));
}

int32_t eng__vocab_merge_rank(const eng_vocab_t *v, const char *l, size_t ln, const char *r,
                              size_t rn, char *key)
{
    const size_t n = ln + 1 + rn;
    if (n > v->max_merge_len)
        return -1;
    memcpy(key, l, ln);
    key[ln] = ' ';
    memcpy(key + ln + 1, r, rn);
    return (int32_t)eng__strtab_find(&v->merge_index, key, n, eng__hash(key, n));
}

int eng__ids_push(struct eng__ids *ids, int32_t id)
{
    int rc;
    if (ids->n == ids->cap &&
        (rc = grow(&ids->p, &ids->cap, ids->n + 1, sizeof *ids->p, 64, ids->limit)) < 0)
        return rc;
    ids->p[ids->n++] = id;
    return 0;
}

/* --- loading ------------------------------------------------------------------------- */

static bool str_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static bool str_in(const char *s, size_t n, const char *const *list)
{
    for (; *list; list++)
        if (str_eq(s, n, *list))
            return true;
    return false;
}

/* A token id from key: kept as *id when present and < n_tokens (llama.cpp ignores bad
 * ones with a warning; negative values mean "none" in some converters). */
static int read_id(const eng_gguf_t *g, const char *key, int32_t n_tokens, int32_t *id,
                   struct errbuf *eb)
{
    uint64_t u;
    int32_t s;
    int rc = eng_gguf_get_u64(g, key, &u);
    if (rc == 0) {
        if (u < (uint64_t)n_tokens)
            *id = (int32_t)u;
        return 0;
    }
    if (rc == ERR_NOTFOUND || eng_gguf_get_i32(g, key, &s) == 0)
        return 0;
    return err_set(eb, ERR_CORRUPT, "%s: expected a token id (an integer)", key);
}

static int read_bool(const eng_gguf_t *g, const char *key, bool *out, struct errbuf *eb)
{
    int rc = eng_gguf_get_bool(g, key, out);
    if (rc == 0 || rc == ERR_NOTFOUND)
        return 0;
    return err_set(eb, ERR_CORRUPT, "%s: expected a bool", key);
}

static int get_opt_str(const eng_gguf_t *g, const char *key, const char **s, size_t *n,
                       struct errbuf *eb)
{
    *s = "";
    *n = 0;
    int rc = eng_gguf_get_str(g, key, s, n);
    if (rc == 0 || rc == ERR_NOTFOUND) {
        if (rc)
            *s = "", *n = 0;
        return 0;
    }
    return err_set(eb, ERR_CORRUPT, "%s: expected a string", key);
}

/* Picks the GPT-2-style pre-tokenizer for tokenizer.ggml.pre (llama.cpp's list). */
static int set_bpe_pre(eng_vocab_t *v, const char *pre, size_t n, struct errbuf *eb)
{
    static const char *const gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat",
                                       "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
                                       "modern-bert", "exaone4", "mpt", "olmo", "jais",
                                       "jina-v1-en", "jina-v2-code", "roberta-bpe", NULL};
    static const char *const gpt2_nc[] = {"trillion", "granite-docling", NULL};
    static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3",
                                         "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                                         "jina-v5-nano", NULL};
    static const char *const llama3_re[] = {"dbrx", "smaug-bpe", NULL};
    static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", NULL};
    static const char *const qwen2_c[] = {"stablelm2", "megrez", NULL};
    v->clean_spaces = true;
    if (str_in(pre, n, gpt2)) {
        v->pre = ENG__PRE_GPT2;
        v->add_sep = str_eq(pre, n, "jina-v1-en") || str_eq(pre, n, "jina-v2-code") ||
                     str_eq(pre, n, "roberta-bpe");
    } else if (str_in(pre, n, gpt2_nc)) {
        v->pre = ENG__PRE_GPT2;
        v->clean_spaces = false;
    } else if (str_in(pre, n, llama3)) {
        v->pre = ENG__PRE_LLAMA3;
        v->ignore_merges = true;
        v->add_bos = true;
    } else if (str_in(pre, n, llama3_re)) {
        v->pre = ENG__PRE_LLAMA3;
    } else if (str_eq(pre, n, "glm4") || str_eq(pre, n, "chatglm-bpe")) {
        v->pre = ENG__PRE_LLAMA3;
        v->bos = -1;
    } else if (str_in(pre, n, qwen2)) {
        v->pre = ENG__PRE_QWEN2;
        v->clean_spaces = false;
    } else if (str_in(pre, n, qwen2_c)) {
        v->pre = ENG__PRE_QWEN2;
    } else {
        return err_set(eb, ERR_UNSUPPORTED,
                       "tokenizer.ggml.pre '%.*s' is not supported (supported: the gpt-2, "
                       "llama3 and qwen2 pre-tokenizer families)",
                       (int)(n > 64 ? 64 : n), pre);
    }
    return 0;
}

static int load_tokens(eng_vocab_t *v, const eng_gguf_t *g, struct errbuf *eb)
{
    enum eng_gguf_type et;
    uint64_t n;
    const void *data;
    int rc = eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data);
    if (rc == ERR_NOTFOUND)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens is missing");
    if (rc < 0 || et != ENG_GGUF_STRING)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens: expected an array of strings");
    if (n == 0)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens is empty");
    if (n > MAX_TOKENS)
        return err_set(eb, ERR_UNSUPPORTED, "tokenizer.ggml.tokens: %llu tokens is more than "
                       "the supported %u", (unsigned long long)n, MAX_TOKENS);
    const uint32_t V = (uint32_t)n;
    v->n_tokens = (int32_t)V;
    v->tok_off = malloc(V * sizeof *v->tok_off);
    v->tok_len = malloc(V * sizeof *v->tok_len);
    v->score = malloc(V * sizeof *v->score);
    v->attr = malloc(V * sizeof *v->attr);
    v->ttype = malloc(V * sizeof *v->ttype);
    if (!v->tok_off || !v->tok_len || !v->score || !v->attr || !v->ttype)
        return ERR_NOMEM;
    // pass 1: sizes (an empty token becomes "[EMPTY_<id>]", as in llama.cpp)
    size_t total = 0;
    for (uint32_t i = 0; i < V; i++) {
        const char *s;
        size_t len;
        if ((rc = eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len)) < 0)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens[%u] cannot be read", i);
        if (len == 0)
            len = 20;
        if (len + 1 > MAX_POOL - total)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens: more than 1 GiB of text");
        total += len + 1;
    }
    v->pool = malloc(total);
    if (!v->pool)
        return ERR_NOMEM;
    size_t at = 0;
    for (uint32_t i = 0; i < V; i++) {
        const char *s;
        size_t len;
        eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
        char *d = v->pool + at;
        if (len == 0)
            len = (size_t)snprintf(d, 21, "[EMPTY_%u]", i);
        else
            memcpy(d, s, len);
        d[len] = '\0';
        v->tok_off[i] = (uint32_t)at;
        v->tok_len[i] = (uint32_t)len;
        if (len > v->max_token_len)
            v->max_token_len = (uint32_t)len;
        at += len + 1;
    }
    // scores (f32 or i32), default 0
    for (uint32_t i = 0; i < V; i++)
        v->score[i] = 0.0f;
    rc = eng_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data);
    if (rc == 0) {
        if (et != ENG_GGUF_FLOAT32 && et != ENG_GGUF_INT32)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.scores: expected f32 or i32 values");
        if (n < V)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.scores has %llu values for %u tokens",
                           (unsigned long long)n, V);
        for (uint32_t i = 0; i < V; i++) {
            float f;
            if (et == ENG_GGUF_FLOAT32) {
                memcpy(&f, (const char *)data + 4 * (size_t)i, 4);
            } else {
                int32_t x;
                memcpy(&x, (const char *)data + 4 * (size_t)i, 4);
                f = (float)x;
            }
            v->score[i] = isnan(f) ? -INFINITY : f;
        }
    } else if (rc != ERR_NOTFOUND) {
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.scores: expected an array");
    }
    // token types -> attributes, default normal
    const void *types = NULL;
    rc = eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &types);
    if (rc == 0) {
        if (et != ENG_GGUF_INT32)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.token_type: expected i32 values");
        if (n < V)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.token_type has %llu values for %u "
                           "tokens", (unsigned long long)n, V);
    } else if (rc != ERR_NOTFOUND) {
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.token_type: expected an array");
    }
    for (uint32_t i = 0; i < V; i++) {
        int32_t t = ENG_TOKEN_NORMAL;
        if (types)
            memcpy(&t, (const char *)types + 4 * (size_t)i, 4);
        uint16_t a;
        switch (t) {
        case ENG_TOKEN_NORMAL: a = ENG__ATTR_NORMAL; break;
        case ENG_TOKEN_UNKNOWN: a = ENG__ATTR_UNKNOWN; break;
        case ENG_TOKEN_CONTROL: a = ENG__ATTR_CONTROL; break;
        case ENG_TOKEN_USER_DEFINED: a = ENG__ATTR_USER_DEFINED; break;
        case ENG_TOKEN_UNUSED: a = ENG__ATTR_UNUSED; break;
        case ENG_TOKEN_BYTE: a = ENG__ATTR_BYTE; break;
        default: a = 0, t = ENG_TOKEN_UNDEFINED; break;
        }
        v->attr[i] = a;
        v->ttype[i] = (uint8_t)t;
    }
    uint32_t da = 0, db = 0;
    rc = eng__strtab_build(&v->index, v->pool, v->tok_off, v->tok_len, V, false, &da, &db);
    if (rc == ERR_CORRUPT)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.tokens: duplicate token '%.*s' (ids %u "
                       "and %u)", (int)(v->tok_len[da] > 48 ? 48 : v->tok_len[da]),
                       v->pool + v->tok_off[da], da, db);
    return rc;
}

static int load_merges(eng_vocab_t *v, const eng_gguf_t *g, struct errbuf *eb)
{
    enum eng_gguf_type et;
    uint64_t n;
    const void *data;
    int rc = eng_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data);
    if (rc == ERR_NOTFOUND)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.merges is missing (a gpt2 tokenizer "
                       "needs its BPE merges)");
    if (rc < 0 || et != ENG_GGUF_STRING)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.merges: expected an array of strings");
    if (n > MAX_MERGES)
        return err_set(eb, ERR_UNSUPPORTED, "tokenizer.ggml.merges: %llu merges is more than "
                       "the supported %u", (unsigned long long)n, MAX_MERGES);
    const uint32_t M = (uint32_t)n;
    v->n_merges = M;
    v->merge_off = malloc((M ? M : 1) * sizeof *v->merge_off);
    v->merge_len = malloc((M ? M : 1) * sizeof *v->merge_len);
    if (!v->merge_off || !v->merge_len)
        return ERR_NOMEM;
    size_t total = 0;
    for (uint32_t i = 0; i < M; i++) {
        const char *s;
        size_t len;
        if (eng_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, &len) < 0)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.merges[%u] cannot be read", i);
        if (len > MAX_POOL - total)
            return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.merges: more than 1 GiB of text");
        total += len;
    }
    v->merge_pool = malloc(total ? total : 1);
    if (!v->merge_pool)
        return ERR_NOMEM;
    size_t at = 0;
    for (uint32_t i = 0; i < M; i++) {
        const char *s;
        size_t len;
        eng_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, &len);
        memcpy(v->merge_pool + at, s, len);
        v->merge_off[i] = (uint32_t)at;
        // a merge is "left right", split at the first space after the first byte; one
        // without such a space can never apply (llama.cpp files it as ("", ""))
        const void *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        v->merge_len[i] = sp ? (uint32_t)len : 0;
        if (sp && len > v->max_merge_len)
            v->max_merge_len = (uint32_t)len;
        at += len;
    }
    uint32_t da, db;
    return eng__strtab_build(&v->merge_index, v->merge_pool, v->merge_off, v->merge_len, M, true,
                        &da, &db);
}

static void set_attr_text(eng_vocab_t *v, const char *text, uint16_t attr, bool on)
{
    const int32_t id = find_lit(v, text);
    if (id < 0)
        return;
    if (on)
        v->attr[id] |= attr;
    else
        v->attr[id] &= (uint16_t)~attr;
}

static void force_control(eng_vocab_t *v, int32_t id)
{
    if (!(v->attr[id] & ENG__ATTR_CONTROL)) {
        v->attr[id] |= ENG__ATTR_CONTROL;
        v->ttype[id] = ENG_TOKEN_CONTROL;
    }
}

/* The lowest id whose text is in list, or -1. */
static int32_t find_any(const eng_vocab_t *v, const char *const *list)
{
    int32_t best = -1;
    for (; *list; list++) {
        const int32_t id = find_lit(v, *list);
        if (id >= 0 && (best < 0 || id < best))
            best = id;
    }
    return best;
}

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static bool is_eog_sorted(const int32_t *eog, size_t n, int32_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (eog[mid] == id)
            return true;
        if (eog[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* End-of-generation tokens and the text-based special-token rules of llama.cpp (eot,
 * eom and fim tokens found by their text are forced to control type). Where llama.cpp
 * picks whichever matching token its hash map yields first, the lowest id is used. */
static int set_special_rules(eng_vocab_t *v, int32_t fim_pad, int32_t fim_rep, int32_t fim_sep)
{
    static const char *const eot_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of"
        "\xE2\x96\x81sentence\xEF\xBD\x9C>", "<end_of_utterance>", NULL};
    static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
        "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>", "\xE2\x96\x81<PRE>",
        "<|code_prefix|>", "<|prefix|>", NULL};
    static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
        "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>", "\xE2\x96\x81<SUF>",
        "<|code_suffix|>", "<|suffix|>", NULL};
    static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
        "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>", "\xE2\x96\x81<MID>",
        "<|code_middle|>", "<|middle|>", NULL};
    static const char *const fim_pad_t[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                            "[PAD]", NULL};
    static const char *const fim_rep_t[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>", "<reponame>", NULL};
    static const char *const fim_sep_t[] = {"<|file_sep|>", NULL};
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
        "<turn|>", "<|tool_response>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~[", NULL};
    int32_t id;
    if (v->eot < 0 && (id = find_any(v, eot_texts)) >= 0) {
        v->eot = id;
        force_control(v, id);
    }
    if (v->eom < 0 && (id = find_lit(v, "<|eom_id|>")) >= 0) {
        v->eom = id;
        force_control(v, id);
    }
    const char *const *fim_lists[] = {fim_pre, fim_suf, fim_mid};
    for (int k = 0; k < 3; k++)
        if ((id = find_any(v, fim_lists[k])) >= 0)
            force_control(v, id);
    if (fim_pad < 0 && (fim_pad = find_any(v, fim_pad_t)) >= 0)
        force_control(v, fim_pad);
    if (fim_rep < 0 && (fim_rep = find_any(v, fim_rep_t)) >= 0)
        force_control(v, fim_rep);
    if (fim_sep < 0 && (fim_sep = find_any(v, fim_sep_t)) >= 0)
        force_control(v, fim_sep);

    size_t cap = 8 + sizeof eog_texts / sizeof eog_texts[0];
    v->eog = malloc(cap * sizeof *v->eog);
    if (!v->eog)
        return ERR_NOMEM;
    size_t n = 0;
    const int32_t by_id[] = {fim_pad, fim_rep, fim_sep, v->eos, v->eot, v->eom};
    for (size_t k = 0; k < sizeof by_id / sizeof by_id[0]; k++)
        if (by_id[k] >= 0)
            v->eog[n++] = by_id[k];
    for (const char *const *t = eog_texts; *t; t++)
        if ((id = find_lit(v, *t)) >= 0) {
            v->eog[n++] = id;
            force_control(v, id);
        }
    // gpt-oss: these render as text
    static const char *const harmony[] = {"<|channel|>", "<|message|>", "<|start|>",
                                          "<|constrain|>", NULL};
    for (const char *const *t = harmony; *t; t++)
        if ((id = find_lit(v, *t)) >= 0) {
            v->attr[id] = ENG__ATTR_USER_DEFINED;
            v->ttype[id] = ENG_TOKEN_USER_DEFINED;
        }
    qsort(v->eog, n, sizeof *v->eog, cmp_i32);
    size_t u = 0;
    for (size_t k = 0; k < n; k++)
        if (u == 0 || v->eog[u - 1] != v->eog[k])
            v->eog[u++] = v->eog[k];
    v->n_eog = u;
    // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation
    const int32_t ret = find_lit(v, "<|return|>"), call = find_lit(v, "<|call|>"),
                  calls = find_lit(v, "<|calls|>"), flush = find_lit(v, "<|flush|>"),
                  end = find_lit(v, "<|end|>");
    const bool has_call = (call >= 0 && is_eog_sorted(v->eog, u, call)) ||
                          (calls >= 0 && is_eog_sorted(v->eog, u, calls));
    if (end >= 0 && is_eog_sorted(v->eog, u, end) && has_call &&
        ((ret >= 0 && is_eog_sorted(v->eog, u, ret)) ||
         (flush >= 0 && is_eog_sorted(v->eog, u, flush)))) {
        size_t w = 0;
        for (size_t k = 0; k < v->n_eog; k++)
            if (v->eog[k] != end)
                v->eog[w++] = v->eog[k];
        v->n_eog = w;
        v->attr[end] = ENG__ATTR_USER_DEFINED;
        v->ttype[end] = ENG_TOKEN_USER_DEFINED;
    }
    // gemma4: "</s>" is not an end when "<|tool_response>" is
    const int32_t tr = find_lit(v, "<|tool_response>"), s_end = find_lit(v, "</s>");
    if (tr >= 0 && s_end >= 0 && is_eog_sorted(v->eog, v->n_eog, tr) &&
        is_eog_sorted(v->eog, v->n_eog, s_end)) {
        size_t w = 0;
        for (size_t k = 0; k < v->n_eog; k++)
            if (v->eog[k] != s_end)
                v->eog[w++] = v->eog[k];
        v->n_eog = w;
        v->attr[s_end] = ENG__ATTR_NORMAL;
        v->ttype[s_end] = ENG_TOKEN_NORMAL;
    }
    return 0;
}

struct len_id {
    uint32_t len;
    int32_t id;
};

static int cmp_len_id(const void *a, const void *b)
{
    const struct len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int build_special_cache(eng_vocab_t *v)
{
    size_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->attr[i] & (ENG__ATTR_CONTROL | ENG__ATTR_USER_DEFINED | ENG__ATTR_UNKNOWN))
            n++;
    struct len_id *tmp = malloc((n ? n : 1) * sizeof *tmp);
    v->special = malloc((n ? n : 1) * sizeof *v->special);
    if (!tmp || !v->special) {
        free(tmp);
        return ERR_NOMEM;
    }
    n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->attr[i] & (ENG__ATTR_CONTROL | ENG__ATTR_USER_DEFINED | ENG__ATTR_UNKNOWN))
            tmp[n++] = (struct len_id){v->tok_len[i], i};
    qsort(tmp, n, sizeof *tmp, cmp_len_id);
    for (size_t k = 0; k < n; k++)
        v->special[k] = tmp[k].id;
    v->n_special = n;
    free(tmp);
    return 0;
}

static bool contains_ci(const char *s, size_t n, const char *needle)
{
    const size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && tolower((unsigned char)s[i + k]) == needle[k])
            k++;
        if (k == m)
            return true;
    }
    return false;
}

/* Per-token strip attributes that llama.cpp sets by model name. */
static int set_strip_rules(eng_vocab_t *v, const eng_gguf_t *g, const char *pre, size_t pre_n,
                           struct errbuf *eb)
{
    const char *name, *arch;
    size_t name_n, arch_n;
    int rc;
    if ((rc = get_opt_str(g, "general.name", &name, &name_n, eb)) < 0 ||
        (rc = get_opt_str(g, "general.architecture", &arch, &arch_n, eb)) < 0)
        return rc;
    if (contains_ci(pre, pre_n, "jina-v2-de") || contains_ci(pre, pre_n, "jina-v2-es") ||
        contains_ci(pre, pre_n, "jina-v2-code") || contains_ci(arch, arch_n, "nomic-bert-moe") ||
        contains_ci(arch, arch_n, "jina-bert-v3")) {
        set_attr_text(v, "<mask>", ENG__ATTR_LSTRIP, true);
    } else if (contains_ci(name, name_n, "phi-3") || contains_ci(name, name_n, "phi3")) {
        for (size_t k = 0; k < v->n_special; k++)
            v->attr[v->special[k]] |= ENG__ATTR_RSTRIP;
        set_attr_text(v, "</s>", ENG__ATTR_RSTRIP, true);
        set_attr_text(v, "<unk>", ENG__ATTR_RSTRIP, false);
        set_attr_text(v, "<s>", ENG__ATTR_RSTRIP, false);
        set_attr_text(v, "<|endoftext|>", ENG__ATTR_RSTRIP, false);
    } else if (contains_ci(name, name_n, "modern-bert")) {
        set_attr_text(v, "[MASK]", ENG__ATTR_LSTRIP, true);
    }
    return 0;
}

static void set_byte_maps(eng_vocab_t *v)
{
    // SPM byte fallback tokens
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = eng__vocab_find(v, buf, 6);
        if (id < 0) {
            const char c = (char)b;
            id = eng__vocab_find(v, &c, 1);
        }
        v->byte_tok[b] = id;
    }
    // GPT-2: printable bytes stand for themselves, the other 68 for U+0100.. in order
    for (int i = 0; i < 0x144; i++)
        v->byte_dec[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                               (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        uint8_t u[4];
        const size_t k = eng_unicode_encode(cp, u);
        memcpy(v->byte_enc[b], u, k);
        v->byte_enc_len[b] = (uint8_t)k;
        v->byte_dec[cp] = (int16_t)b;
    }
}

int eng_vocab_from_gguf(const eng_gguf_t *g, eng_vocab_t **out, struct errbuf *eb)
{
    if (!g || !out)
        return ERR_INVAL;
    const char *model, *pre;
    size_t model_n, pre_n;
    int rc = eng_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_n);
    if (rc == ERR_NOTFOUND)
        return err_set(eb, ERR_NOTFOUND, "tokenizer.ggml.model is missing: the file has no "
                       "tokenizer");
    if (rc < 0)
        return err_set(eb, ERR_CORRUPT, "tokenizer.ggml.model: expected a string");
    if ((rc = get_opt_str(g, "tokenizer.ggml.pre", &pre, &pre_n, eb)) < 0)
        return rc;
    eng_vocab_t *v = calloc(1, sizeof *v);
    if (!v)
        return ERR_NOMEM;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask_tok = -1;
    if (str_eq(model, model_n, "llama")) {
        v->type = ENG_VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (str_eq(model, model_n, "gpt2")) {
        v->type = ENG_VOCAB_BPE;
        v->bos = 11, v->eos = 11;
    } else if (str_eq(model, model_n, "bert")) {
        v->type = ENG_VOCAB_WPM;
        v->bos = 101, v->unk = 100, v->sep = 102, v->pad = 0, v->mask_tok = 103;
        v->add_bos = true;
        v->add_sep = true;
        v->clean_spaces = true;
        v->wpm_lowercase = true;
        v->wpm_strip_accents = true;
    } else {
        rc = err_set(eb, ERR_UNSUPPORTED, "tokenizer.ggml.model '%.*s' is not supported "
                     "(supported: llama, gpt2, bert)", (int)(model_n > 64 ? 64 : model_n), model);
        goto fail;
    }
#if !ORTHOD_HAVE_UTF8PROC
    if (v->type != ENG_VOCAB_SPM) {
        rc = err_set(eb, ERR_UNSUPPORTED, "the '%s' tokenizer needs libutf8proc, and orthod was "
                     "built without libutf8proc; install libutf8proc-dev and rebuild",
                     v->type == ENG_VOCAB_BPE ? "gpt2" : "bert");
        goto fail;
    }
#endif
    if (v->type == ENG_VOCAB_BPE && (rc = set_bpe_pre(v, pre, pre_n, eb)) < 0)
        goto fail;
    if ((rc = read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, eb)) < 0 ||
        (rc = load_tokens(v, g, eb)) < 0)
        goto fail;
    if (v->type == ENG_VOCAB_BPE && (rc = load_merges(v, g, eb)) < 0)
        goto fail;
    // special ids: defaults out of range are dropped, then the file's values
    int32_t fim_pad = -1, fim_rep = -1, fim_sep = -1;
    struct {
        const char *key;
        int32_t *id;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", &v->bos},
        {"tokenizer.ggml.eos_token_id", &v->eos},
        {"tokenizer.ggml.eot_token_id", &v->eot},
        {"tokenizer.ggml.eom_token_id", &v->eom},
        {"tokenizer.ggml.unknown_token_id", &v->unk},
        {"tokenizer.ggml.seperator_token_id", &v->sep},
        {"tokenizer.ggml.padding_token_id", &v->pad},
        {"tokenizer.ggml.mask_token_id", &v->mask_tok},
        {"tokenizer.ggml.fim_pad_token_id", &fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &fim_rep},
        {"tokenizer.ggml.fim_sep_token_id", &fim_sep},
    };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        if (*ids[k].id >= v->n_tokens)
            *ids[k].id = -1;
        if ((rc = read_id(g, ids[k].key, v->n_tokens, ids[k].id, eb)) < 0)
            goto fail;
    }
    if ((rc = read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, eb)) < 0 ||
        (rc = read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, eb)) < 0 ||
        (rc = read_bool(g, "tokenizer.ggml.add_sep_token", &v->add_sep, eb)) < 0)
        goto fail;
    if (v->type == ENG_VOCAB_WPM) {
        if ((rc = read_bool(g, "tokenizer.ggml.normalizer.lowercase", &v->wpm_lowercase,
                            eb)) < 0)
            goto fail;
        v->wpm_strip_accents = v->wpm_lowercase;
        if ((rc = read_bool(g, "tokenizer.ggml.normalizer.strip_accents",
                            &v->wpm_strip_accents, eb)) < 0)
            goto fail;
    }
    if ((v->add_bos && v->bos < 0) || (v->add_eos && v->eos < 0) || (v->add_sep && v->sep < 0)) {
        const char *what = v->add_bos && v->bos < 0 ? "bos" : v->add_eos && v->eos < 0 ? "eos"
                                                                                          : "sep";
        rc = err_set(eb, ERR_CORRUPT, "tokenizer.ggml.add_%s_token is true, but the file names "
                     "no valid %s token id", what, what);
        goto fail;
    }
    if ((rc = set_special_rules(v, fim_pad, fim_rep, fim_sep)) < 0 ||
        (rc = build_special_cache(v)) < 0 || (rc = set_strip_rules(v, g, pre, pre_n, eb)) < 0)
        goto fail;
    set_byte_maps(v);
    *out = v;
    return 0;
fail:
    if (rc == ERR_NOMEM && eb && !eb->msg[0])
        err_set(eb, ERR_NOMEM, "out of memory while loading the tokenizer");
    eng_vocab_free(v);
    return rc;
}

void eng_vocab_free(eng_vocab_t *v)
{
    if (!v)
        return;
    eng__strtab_free(&v->index);
    eng__strtab_free(&v->merge_index);
    free(v->pool);
    free(v->tok_off);
    free(v->tok_len);
    free(v->score);
    free(v->attr);
    free(v->ttype);
    free(v->eog);
    free(v->special);
    free(v->merge_pool);
    free(v->merge_off);
    free(v->merge_len);
    free(v);
}

/* --- getters --------------------------------------------------------------------------- */

enum eng_vocab_type eng_vocab_type(const eng_vocab_t *v) { return v->type; }
int32_t eng_vocab_n_tokens(const eng_vocab_t *v) { return v->n_tokens; }
int32_t eng_vocab_bos(const eng_vocab_t *v) { return v->bos; }
int32_t eng_vocab_eos(const eng_vocab_t *v) { return v->eos; }
bool eng_vocab_add_bos(const eng_vocab_t *v) { return v->add_bos; }
bool eng_vocab_add_eos(const eng_vocab_t *v) { return v->add_eos; }

bool eng_vocab_is_eog(const eng_vocab_t *v, int32_t id)
{
    return id >= 0 && is_eog_sorted(v->eog, v->n_eog, id);
}

const char *eng_vocab_token_text(const eng_vocab_t *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n_tokens)
        return NULL;
    if (len)
        *len = v->tok_len[id];
    return v->pool + v->tok_off[id];
}

enum eng_token_type eng_vocab_token_type(const eng_vocab_t *v, int32_t id)
{
    if (id < 0 || id >= v->n_tokens)
        return ENG_TOKEN_UNDEFINED;
    return (enum eng_token_type)v->ttype[id];
}
