/* tests/test_tokenizer.c: the tokenizers against llama.cpp: every case of llama.cpp's own
 * test vectors (ggml-vocab-{llama-spm,gpt-2,bert-bge}.gguf.inp/.out), llama.cpp's
 * tokenizations of golden/llama-2-tiny-random.json (with/without BOS, with/without
 * special-token parsing, and the pieces), stories260K's prompt; detokenizing (round trips,
 * llama.cpp's space cleaning, the streaming decoder with characters split over byte
 * tokens); special-token rules on small vocabularies built in memory; hostile vocabularies
 * and inputs; and `orthod tokenize` (server/cli/tokenize.c, run in-process). */
#include "../engine/engine.h"
#include "../engine/tok/tokenizer.h"
#include "../engine/tok/encoders.h"
#include "../engine/tok/unicode.h"
#include "../server/cli/cmd.h"
#include "orthod_config.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#if ORTHOD_HAVE_JANSSON
#include <jansson.h>
#endif

/* --- helpers ----------------------------------------------------------------------------- */

static char *model_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    return (char *)tu_model_path(buf[k++ & 3], sizeof buf[0], name);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)size + 1);
    *n = fread(b, 1, (size_t)size, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

/* Loads the vocab of a shared model file; skips the test when the file is absent. */
static eng_vocab_t *load_vocab(const char *name, eng_gguf_t **g)
{
    const char *p = model_path(name);
    if (access(p, R_OK) != 0) {
        print_message("shared model %s not found (set ORTHOD_SHARED)\n", p);
        skip();
    }
    struct errbuf eb = {{0}};
    int rc = eng_gguf_open(p, g, &eb);
    if (rc < 0)
        fail_msg("open %s: %s", p, eb.msg);
    eng_vocab_t *v = NULL;
    rc = eng_vocab_from_gguf(*g, &v, &eb);
    if (rc < 0)
        fail_msg("vocab of %s: %s", p, eb.msg);
    return v;
}

/* Tokenizes into a fresh array (caller frees), asserting success. */
static int32_t *tok(const eng_vocab_t *v, const char *s, size_t len, bool add, bool special,
                    size_t *n)
{
    size_t need = 0;
    int rc = eng_tokenize(v, s, len, add, special, NULL, 0, &need);
    assert_true(rc == 0 || rc == ERR_TOOLARGE);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    assert_int_equal(eng_tokenize(v, s, len, add, special, ids, need, n), 0);
    assert_int_equal(*n, need);
    return ids;
}

static void assert_ids(const int32_t *got, size_t n, const int32_t *want, size_t wn,
                       const char *what)
{
    bool same = n == wn;
    for (size_t i = 0; same && i < n; i++)
        same = got[i] == want[i];
    if (!same) {
        char a[4096] = "", b[4096] = "";
        size_t al = 0, bl = 0;
        for (size_t i = 0; i < n && al < sizeof a - 16; i++)
            al += (size_t)snprintf(a + al, sizeof a - al, " %d", got[i]);
        for (size_t i = 0; i < wn && bl < sizeof b - 16; i++)
            bl += (size_t)snprintf(b + bl, sizeof b - bl, " %d", want[i]);
        fail_msg("%s:\n  got: %s\n want: %s", what, a, b);
    }
}

/* Concatenates the streaming decoder's output over ids (and its flush). */
static size_t stream_all(const eng_vocab_t *v, const int32_t *ids, size_t n, bool special,
                         char *out, size_t cap)
{
    struct eng_detok d;
    eng_detok_init(&d, v);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[64];
        size_t k = eng_detok_push(v, &d, ids[i], special, piece, sizeof piece);
        assert_true(k <= sizeof piece);
        assert_true(at + k < cap);
        memcpy(out + at, piece, k);
        at += k;
    }
    char tail[8];
    size_t k = eng_detok_flush(&d, tail, sizeof tail);
    memcpy(out + at, tail, k);
    at += k;
    out[at] = '\0';
    return at;
}

/* --- llama.cpp's vector files -------------------------------------------------------------- */

struct vec_case {
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
};

/* Reads <vocab>.inp (cases separated by "\n__ggml_vocab_test__\n") and <vocab>.out (one
 * line of ids per case). Returns the number of cases; *buf_in and *buf_out own the text. */
static size_t read_vectors(const char *vocab, struct vec_case **cases, char **buf_in,
                           char **buf_out)
{
    char p[1024];
    size_t ni, no;
    snprintf(p, sizeof p, "%s.inp", model_path(vocab));
    *buf_in = slurp(p, &ni);
    snprintf(p, sizeof p, "%s.out", model_path(vocab));
    *buf_out = slurp(p, &no);
    if (!*buf_in || !*buf_out)
        fail_msg("cannot read the vectors of %s", vocab);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n = 0, cap = 64;
    struct vec_case *c = calloc(cap, sizeof *c);
    char *in = *buf_in, *out = *buf_out;
    for (;;) {
        char *e = strstr(in, sep);
        if (!e)
            break;
        char *eol = strchr(out, '\n');
        assert_non_null(eol);
        *eol = '\0';
        if (n == cap)
            c = realloc(c, (cap *= 2) * sizeof *c);
        c[n].text = in;
        c[n].len = (size_t)(e - in);
        c[n].ids = malloc((strlen(out) / 2 + 2) * sizeof(int32_t));
        c[n].n = 0;
        for (char *q = out; *q;) {
            char *end;
            long x = strtol(q, &end, 10);
            if (end == q)
                break;
            c[n].ids[c[n].n++] = (int32_t)x;
            q = end;
        }
        n++;
        in = e + sizeof sep - 1;
        out = eol + 1;
    }
    *cases = c;
    return n;
}

static void free_vectors(struct vec_case *c, size_t n, char *a, char *b)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].ids);
    free(c);
    free(a);
    free(b);
}

/* true when s has none of the patterns llama.cpp's clean_spaces rewrites */
static bool cleanable(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == ' ' && strchr("?!.,'", s[i + 1]))
            return true;
    return false;
}

/* a and b are equal once spaces are removed from both */
static bool equal_but_spaces(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < an && a[i] == ' ')
            i++;
        while (j < bn && b[j] == ' ')
            j++;
        if (i == an || j == bn)
            return i == an && j == bn;
        if (a[i++] != b[j++])
            return false;
    }
}

static void run_vectors(const char *vocab, bool roundtrip)
{
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab(vocab, &g);
    struct vec_case *c;
    char *bi, *bo;
    const size_t n = read_vectors(vocab, &c, &bi, &bo);
    assert_int_equal(n, 46);
    size_t out_cap = 1 << 16;
    char *out = malloc(out_cap), *st = malloc(out_cap);
    for (size_t i = 0; i < n; i++) {
        size_t k;
        int32_t *ids = tok(v, c[i].text, c[i].len, false, false, &k);
        char what[64];
        snprintf(what, sizeof what, "%s case %zu", vocab, i);
        assert_ids(ids, k, c[i].ids, c[i].n, what);
        if (roundtrip) {
            // the streaming decoder gives the text back exactly (byte-level vocabs)
            const size_t sn = stream_all(v, ids, k, false, st, out_cap);
            assert_int_equal(sn, c[i].len);
            assert_memory_equal(st, c[i].text, sn);
            // the whole-sequence decoder too, except where llama.cpp cleans spaces
            const size_t dn = eng_detokenize(v, ids, k, false, out, out_cap);
            assert_true(dn < out_cap);
            if (eng_vocab_type(v) == ENG_VOCAB_SPM || !cleanable(c[i].text, c[i].len)) {
                assert_int_equal(dn, c[i].len);
                assert_memory_equal(out, c[i].text, dn);
            } else {
                assert_true(equal_but_spaces(out, dn, c[i].text, c[i].len));
            }
        }
        free(ids);
    }
    free(out);
    free(st);
    free_vectors(c, n, bi, bo);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

static void test_vectors_spm(void **state)
{
    (void)state;
    run_vectors("ggml-vocab-llama-spm.gguf", true);
}

static void test_vectors_gpt2(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_UTF8PROC
    skip();
#endif
    run_vectors("ggml-vocab-gpt-2.gguf", true);
}

static void test_vectors_bert(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_UTF8PROC
    skip();
#endif
    run_vectors("ggml-vocab-bert-bge.gguf", false);
}

/* GPT-2 decoding applies llama.cpp's clean_spaces; the pieces themselves are exact. */
static void test_gpt2_detok_clean(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_UTF8PROC
    skip();
#endif
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("ggml-vocab-gpt-2.gguf", &g);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Hello , world !", "Hello, world!"},
        {"you 😁 ?我", "you 😁?我"},
        {"he ' s", "he's"},
        {"I 'm sure they 're here , aren 't they", "I'm sure they're here, aren 't they"},
        {"We 'll see", "We 'll see"},
        {" . .", ".."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        int32_t *ids = tok(v, cases[i].in, strlen(cases[i].in), false, false, &n);
        char out[256];
        size_t k = eng_detokenize(v, ids, n, false, out, sizeof out);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(k, strlen(cases[i].out));
        // too small a buffer: truncated, NUL-terminated, full length returned
        char small[4];
        assert_int_equal(eng_detokenize(v, ids, n, false, small, sizeof small), k);
        const size_t sl = k < 3 ? k : 3;
        assert_int_equal(strlen(small), sl);
        assert_memory_equal(small, cases[i].out, sl);
        free(ids);
    }
    eng_vocab_free(v);
    eng_gguf_free(g);
}

/* BERT: lowercased, accents stripped, [CLS] ... [SEP] with add_special. */
static void test_bert_special(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_UTF8PROC
    skip();
#endif
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("ggml-vocab-bert-bge.gguf", &g);
    size_t n, m;
    int32_t *a = tok(v, "Héllo World", 11 + 1, true, false, &n);
    int32_t *b = tok(v, "hello world", 11, false, false, &m);
    assert_int_equal(n, m + 2);
    assert_int_equal(a[0], 101);
    assert_int_equal(a[n - 1], 102);
    assert_ids(a + 1, n - 2, b, m, "bert accents/case");
    char out[64];
    eng_detokenize(v, b, m, false, out, sizeof out);
    assert_string_equal(out, " hello world");
    free(a);
    free(b);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

/* --- llama.cpp's tokenizations of llama-2-tiny-random (golden JSON) ------------------------ */

#if ORTHOD_HAVE_JANSSON
static size_t json_ids(const json_t *arr, int32_t *out, size_t cap)
{
    size_t n = json_array_size(arr);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return n;
}
#endif

static void test_golden_llama2(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_JANSSON
    print_message("built without jansson: the golden JSON cannot be read\n");
    skip();
#else
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/llama-2-tiny-random.json", tu_shared_dir());
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        print_message("golden file %s: %s\n", path, je.text);
        skip();
    }
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("llama-2-tiny-random.gguf", &g);
    const json_t *cases = json_object_get(root, "tokenization");
    assert_true(json_array_size(cases) >= 10);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        const size_t len = json_string_length(json_object_get(c, "text"));
        int32_t want[256];
        size_t wn, n;
        char what[96];
        snprintf(what, sizeof what, "golden case %zu", i);
        // "ids": special tokens parsed, no BOS
        wn = json_ids(json_object_get(c, "ids"), want, 256);
        int32_t *ids = tok(v, text, len, false, true, &n);
        assert_ids(ids, n, want, wn, what);
        // the pieces, special tokens rendered
        const json_t *pieces = json_object_get(c, "pieces");
        assert_int_equal(json_array_size(pieces), n);
        for (size_t k = 0; k < n; k++) {
            const json_t *p = json_array_get(pieces, k);
            char want_p[64], got[64];
            size_t wl;
            if (json_is_string(p)) {
                wl = json_string_length(p);
                memcpy(want_p, json_string_value(p), wl);
            } else {
                wl = json_array_size(p);
                for (size_t b = 0; b < wl; b++)
                    want_p[b] = (char)json_integer_value(json_array_get(p, b));
            }
            const int gl = eng_token_to_piece(v, ids[k], true, got, sizeof got);
            assert_int_equal(gl, wl);
            assert_memory_equal(got, want_p, wl);
        }
        free(ids);
        wn = json_ids(json_object_get(c, "ids_with_bos"), want, 256);
        ids = tok(v, text, len, true, true, &n);
        assert_ids(ids, n, want, wn, what);
        free(ids);
        wn = json_ids(json_object_get(c, "ids_parse_special_false"), want, 256);
        ids = tok(v, text, len, false, false, &n);
        assert_ids(ids, n, want, wn, what);
        free(ids);
    }
    // the completions' prompts (with BOS) and the generated text of the first one
    const json_t *comps = json_object_get(root, "completions");
    assert_true(json_array_size(comps) >= 1);
    for (size_t i = 0; i < json_array_size(comps); i++) {
        const json_t *c = json_array_get(comps, i);
        const char *text = json_string_value(json_object_get(c, "prompt"));
        int32_t want[256];
        size_t n, wn = json_ids(json_object_get(c, "prompt_ids_with_bos"), want, 256);
        int32_t *ids = tok(v, text, strlen(text), true, false, &n);
        assert_ids(ids, n, want, wn, "golden prompt");
        free(ids);
        // llama.cpp printed the completion piece by piece: the streaming decoder agrees
        const json_t *gen = json_object_get(c, "generated_ids");
        const char *gtext = json_string_value(json_object_get(c, "text"));
        int32_t gids[512];
        size_t gn = json_ids(gen, gids, 512);
        struct eng_detok d;
        eng_detok_init(&d, v);
        d.started = true;   // a completion continues the prompt: keep its first space
        char out[4096];
        size_t at = 0;
        for (size_t k = 0; k < gn; k++)
            at += eng_detok_push(v, &d, gids[k], false, out + at, sizeof out - at);
        at += eng_detok_flush(&d, out + at, sizeof out - at);
        assert_int_equal(at, strlen(gtext));
        assert_memory_equal(out, gtext, at);
    }
    eng_vocab_free(v);
    eng_gguf_free(g);
    json_decref(root);
#endif
}

static void test_stories260k_prompt(void **state)
{
    (void)state;
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("stories260K.gguf", &g);
    size_t n;
    int32_t *ids = tok(v, "Once upon a time", 16, true, false, &n);
    const int32_t want[] = {1, 403, 407, 261, 378};
    assert_ids(ids, n, want, 5, "stories260K prompt");
    assert_int_equal(eng_vocab_bos(v), 1);
    assert_int_equal(eng_vocab_eos(v), 2);
    assert_true(eng_vocab_add_bos(v));
    assert_false(eng_vocab_add_eos(v));
    assert_true(eng_vocab_is_eog(v, 2));
    assert_false(eng_vocab_is_eog(v, 1));
    assert_int_equal(eng_vocab_type(v), ENG_VOCAB_SPM);
    assert_int_equal(eng_vocab_n_tokens(v), 512);
    // detokenize with BOS: llama.cpp's rule strips only the first token's space, and the
    // first token here is BOS (no text), so " Once" keeps its space
    char out[64];
    assert_int_equal(eng_detokenize(v, ids, n, false, out, sizeof out), 17);
    assert_string_equal(out, " Once upon a time");
    assert_int_equal(eng_detokenize(v, ids + 1, n - 1, false, out, sizeof out), 16);
    assert_string_equal(out, "Once upon a time");
    assert_int_equal(eng_detokenize(v, ids, n, true, out, sizeof out), 20);
    assert_string_equal(out, "<s> Once upon a time");
    free(ids);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

/* --- streaming decoding -------------------------------------------------------------------- */

static void test_stream_split_utf8(void **state)
{
    (void)state;
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("ggml-vocab-llama-spm.gguf", &g);
    // emoji and CJK that the Llama vocab spells as byte tokens
    const char *text = "emoji 🦙🚀👍🏽 end 日本 \xF0\x9F\xA6\x99";
    size_t n;
    int32_t *ids = tok(v, text, strlen(text), false, false, &n);
    size_t n_byte_tokens = 0;
    struct eng_detok d;
    eng_detok_init(&d, v);
    char all[256];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[64];
        size_t k = eng_detok_push(v, &d, ids[i], false, piece, sizeof piece);
        if (eng_vocab_token_type(v, ids[i]) == ENG_TOKEN_BYTE)
            n_byte_tokens++;
        // only complete, valid UTF-8 comes out, so each piece stands on its own
        for (size_t j = 0; j < k;) {
            size_t bad;
            int r = eng_unicode_check((const uint8_t *)piece + j, k - j, &bad);
            assert_true(r > 0);
            j += (size_t)r;
        }
        memcpy(all + at, piece, k);
        at += k;
    }
    assert_true(n_byte_tokens >= 12);
    assert_int_equal(eng_detok_flush(&d, all + at, 8), 0);
    assert_int_equal(at, strlen(text));
    assert_memory_equal(all, text, at);
    free(ids);

    // the first byte of a 4-byte character: nothing yet; the rest completes it
    const int32_t b_f0 = 3 + 0xF0, b_9f = 3 + 0x9F, b_a6 = 3 + 0xA6, b_99 = 3 + 0x99;
    char out[64];
    eng_detok_init(&d, v);
    assert_int_equal(eng_detok_push(v, &d, b_f0, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, b_9f, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, b_a6, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, b_99, false, out, sizeof out), 4);
    assert_memory_equal(out, "\xF0\x9F\xA6\x99", 4);
    // invalid: a lone continuation byte, a lead byte followed by ASCII, 0xFF
    const int32_t b_80 = 3 + 0x80, b_e6 = 3 + 0xE6, b_41 = 3 + 0x41, b_ff = 3 + 0xFF;
    assert_int_equal(eng_detok_push(v, &d, b_80, false, out, sizeof out), 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    assert_int_equal(eng_detok_push(v, &d, b_e6, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, b_41, false, out, sizeof out), 4);
    assert_memory_equal(out, "\xEF\xBF\xBD" "A", 4);
    assert_int_equal(eng_detok_push(v, &d, b_ff, false, out, sizeof out), 3);
    // an incomplete tail at the end becomes one U+FFFD
    assert_int_equal(eng_detok_push(v, &d, b_f0, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, b_9f, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_flush(&d, out, sizeof out), 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    assert_int_equal(eng_detok_flush(&d, out, sizeof out), 0);
    // the leading-space rule: the first piece of a fresh decoder loses one space
    const int32_t hello = 15043;    // "▁Hello"
    eng_detok_init(&d, v);
    assert_int_equal(eng_detok_push(v, &d, hello, false, out, sizeof out), 5);
    assert_memory_equal(out, "Hello", 5);
    assert_int_equal(eng_detok_push(v, &d, hello, false, out, sizeof out), 6);
    assert_memory_equal(out, " Hello", 6);
    // a control token gives nothing unless special
    eng_detok_init(&d, v);
    assert_int_equal(eng_detok_push(v, &d, 1, false, out, sizeof out), 0);
    assert_int_equal(eng_detok_push(v, &d, 1, true, out, sizeof out), 3);
    assert_memory_equal(out, "<s>", 3);
    // a piece that does not fit is not cut in the middle of a character
    eng_detok_init(&d, v);
    d.started = true;
    int32_t nihon[8];
    size_t nn;
    assert_int_equal(eng_tokenize(v, "日本", 6, false, false, nihon, 8, &nn), 0);
    assert_int_equal(nn, 3);    // "▁" 日 本
    at = 0;
    for (size_t i = 0; i < nn; i++)
        at += eng_detok_push(v, &d, nihon[i], false, out + at, 3 - at);
    assert_int_equal(at, 1);    // " ", then 日 (3 bytes) does not fit in 2: nothing torn
    assert_int_equal(out[0], ' ');
    // token_to_piece: byte tokens are raw bytes; bad ids are errors
    char p[8];
    assert_int_equal(eng_token_to_piece(v, b_f0, false, p, sizeof p), 1);
    assert_int_equal((uint8_t)p[0], 0xF0);
    assert_int_equal(eng_token_to_piece(v, hello, false, p, 3), 3);
    assert_memory_equal(p, " He", 3);
    assert_true(eng_token_to_piece(v, -1, false, p, sizeof p) < 0);
    assert_true(eng_token_to_piece(v, 32000, false, p, sizeof p) < 0);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

/* --- small vocabularies built in memory ------------------------------------------------------ */

struct tv {
    const char *text;
    int32_t type;
    float score;
};

/* An SPM vocab: <unk> <s> </s>, 256 byte tokens, then extra. */
static eng_gguf_t *build_spm(const struct tv *extra, size_t n_extra, const char *name)
{
    const size_t V = 259 + n_extra;
    const char **toks = calloc(V, sizeof *toks);
    size_t *lens = calloc(V, sizeof *lens);
    float *scores = calloc(V, sizeof *scores);
    int32_t *types = calloc(V, sizeof *types);
    char *bytes = malloc(256 * 8);
    toks[0] = "<unk>", types[0] = ENG_TOKEN_UNKNOWN;
    toks[1] = "<s>", types[1] = ENG_TOKEN_CONTROL;
    toks[2] = "</s>", types[2] = ENG_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes + 8 * b, 8, "<0x%02X>", b);
        toks[3 + b] = bytes + 8 * b;
        types[3 + b] = ENG_TOKEN_BYTE;
    }
    for (size_t i = 0; i < n_extra; i++) {
        toks[259 + i] = extra[i].text;
        types[259 + i] = extra[i].type;
        scores[259 + i] = extra[i].score;
    }
    for (size_t i = 0; i < V; i++)
        lens[i] = strlen(toks[i]);
    eng_gguf_t *g;
    assert_int_equal(eng_gguf_new(&g), 0);
    assert_int_equal(eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5), 0);
    if (name)
        assert_int_equal(eng_gguf_set_str(g, "general.name", name, strlen(name)), 0);
    assert_int_equal(eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", V, toks, lens), 0);
    assert_int_equal(eng_gguf_set_arr(g, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, V, scores), 0);
    assert_int_equal(eng_gguf_set_arr(g, "tokenizer.ggml.token_type", ENG_GGUF_INT32, V, types), 0);
    free(toks);
    free(lens);
    free(scores);
    free(types);
    free(bytes);
    return g;
}

static eng_vocab_t *vocab_of(eng_gguf_t *g)
{
    eng_vocab_t *v = NULL;
    struct errbuf eb = {{0}};
    int rc = eng_vocab_from_gguf(g, &v, &eb);
    if (rc < 0)
        fail_msg("vocab: %s", eb.msg);
    return v;
}

static void test_spm_merges_and_specials(void **state)
{
    (void)state;
    static const struct tv extra[] = {
        {"\xE2\x96\x81", ENG_TOKEN_NORMAL, -1.0f},          // 259 ▁
        {"a", ENG_TOKEN_NORMAL, -2.0f},                      // 260
        {"b", ENG_TOKEN_NORMAL, -2.0f},                      // 261
        {"ab", ENG_TOKEN_NORMAL, -3.0f},                     // 262
        {"\xE2\x96\x81" "a", ENG_TOKEN_NORMAL, -5.0f},       // 263 ▁a
        {"bb", ENG_TOKEN_NORMAL, -1.5f},                     // 264
        {"<|im_end|>", ENG_TOKEN_NORMAL, 0.0f},              // 265: becomes control + EOG
        {"<tool>", ENG_TOKEN_USER_DEFINED, 0.0f},            // 266
        {"<tool_x>", ENG_TOKEN_USER_DEFINED, 0.0f},          // 267: longer, wins
    };
    eng_gguf_t *g = build_spm(extra, sizeof extra / sizeof extra[0], NULL);
    eng_vocab_t *v = vocab_of(g);
    size_t n;
    int32_t *ids;
    // "▁ab": ▁a (-5) vs ab (-3): ab merges first, then ▁ + ab is not a token
    ids = tok(v, "ab", 2, false, false, &n);
    assert_ids(ids, n, (const int32_t[]){259, 262}, 2, "highest score first");
    free(ids);
    // "abb": ab (-3) and bb (-1.5): bb wins, leaving ▁a + bb
    ids = tok(v, "abb", 3, false, false, &n);
    assert_ids(ids, n, (const int32_t[]){263, 264}, 2, "bb before ab");
    free(ids);
    // ties go left: "bbb" -> bb + b
    ids = tok(v, "bbb", 3, false, false, &n);
    assert_ids(ids, n, (const int32_t[]){259, 264, 261}, 3, "leftmost on ties");
    free(ids);
    // byte fallback for characters without tokens
    ids = tok(v, "é", 2, false, false, &n);
    assert_ids(ids, n, (const int32_t[]){259, 3 + 0xC3, 3 + 0xA9}, 3, "byte fallback");
    free(ids);
    // user-defined tokens are split off even without parse_special; control only with it
    ids = tok(v, "a<tool_x>b<|im_end|>", 20, true, false, &n);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 263);
    assert_int_equal(ids[2], 267);
    assert_int_equal(ids[3], 259);      // a fragment after a special token gets "▁"
    assert_int_equal(ids[4], 261);
    assert_true(n > 6);                  // <|im_end|> spelled out in bytes
    free(ids);
    ids = tok(v, "a<tool_x>b<|im_end|>", 20, true, true, &n);
    assert_ids(ids, n, (const int32_t[]){1, 263, 267, 259, 261, 265}, 6, "parse_special");
    free(ids);
    assert_true(eng_vocab_is_eog(v, 265));
    assert_true(eng_vocab_is_eog(v, 2));
    assert_false(eng_vocab_is_eog(v, 266));
    assert_int_equal(eng_vocab_token_type(v, 265), ENG_TOKEN_CONTROL);
    assert_int_equal(eng_vocab_token_type(v, 266), ENG_TOKEN_USER_DEFINED);
    assert_int_equal(eng_vocab_token_type(v, 5000), ENG_TOKEN_UNDEFINED);
    size_t tl;
    assert_string_equal(eng_vocab_token_text(v, 267, &tl), "<tool_x>");
    assert_int_equal(tl, 8);
    assert_null(eng_vocab_token_text(v, -1, &tl));
    // user-defined tokens always render; control ones only with special
    char out[64];
    const int32_t seq[] = {263, 266, 265};
    assert_int_equal(eng_detokenize(v, seq, 3, false, out, sizeof out), 7);
    assert_string_equal(out, "a<tool>");
    eng_vocab_free(v);
    eng_gguf_free(g);

    // phi-3 rule: special tokens eat the whitespace after them
    g = build_spm(extra, sizeof extra / sizeof extra[0], "Phi-3-mini");
    v = vocab_of(g);
    ids = tok(v, "<|im_end|>  a", 13, false, true, &n);
    assert_ids(ids, n, (const int32_t[]){265, 263}, 2, "rstrip");
    free(ids);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

static void test_capacity_and_limits(void **state)
{
    (void)state;
    eng_gguf_t *g = NULL;
    eng_vocab_t *v = load_vocab("ggml-vocab-llama-spm.gguf", &g);
    int32_t ids[8];
    size_t n = 99;
    assert_int_equal(eng_tokenize(v, "Hello world", 11, true, false, ids, 2, &n), ERR_TOOLARGE);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(eng_tokenize(v, "Hello world", 11, true, false, ids, 3, &n), 0);
    assert_int_equal(eng_tokenize(v, "", 0, false, false, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(eng_tokenize(v, "", 0, true, false, NULL, 0, &n), ERR_TOOLARGE);
    assert_int_equal(n, 1);
    assert_int_equal(eng_tokenize(v, NULL, 3, false, false, ids, 8, &n), ERR_INVAL);
    assert_int_equal(eng_tokenize(v, "x", 1, false, false, NULL, 8, &n), ERR_INVAL);
    // over the input limit
    const size_t big = ENG_TOKENIZE_MAX_BYTES + 1;
    char *s = malloc(big);
    memset(s, 'a', big);
    n = 7;
    assert_int_equal(eng_tokenize(v, s, big, false, false, NULL, 0, &n), ERR_TOOLARGE);
    assert_int_equal(n, 0);
    // a long input of one repeated word and of varied text: exact round trip
    const size_t len = 1 << 20;
    static const char pat[] = "the quick brown fox jumps over the lazy dog 0123456789 "
                              "\xC3\xA9t\xC3\xA9\n";
    for (size_t i = 0; i < len; i++)
        s[i] = pat[i % (sizeof pat - 1)];
    s[len - 1] = '.';
    size_t cnt;
    int32_t *t = tok(v, s, len, false, false, &cnt);
    assert_true(cnt > len / 8 && cnt < len);
    char *back = malloc(len + 2);
    assert_int_equal(eng_detokenize(v, t, cnt, false, back, len + 2), len);
    assert_memory_equal(back, s, len);
    free(t);
    memset(s, 'a', len);
    t = tok(v, s, len, false, false, &cnt);
    assert_int_equal(eng_detokenize(v, t, cnt, false, back, len + 2), len);
    assert_memory_equal(back, s, len);
    free(t);
    free(back);
    free(s);
    eng_vocab_free(v);
    eng_gguf_free(g);
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}


/* The streaming decoder's documented capacity, 3 * (piece length + 3), loses nothing for
 * any token of any shared vocabulary, with or without a carried partial sequence: it gives
 * what an unbounded buffer gives. (The contract used to promise that 64 bytes always
 * suffice; GPT-2's longest piece alone is 128 bytes, and a 64-byte buffer drops half.) */
static void test_detok_capacity_contract(void **state)
{
    (void)state;
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                           "ggml-vocab-bert-bge.gguf"};
    enum { BIG = 1 << 16 };
    char *piece = malloc(BIG), *a = malloc(BIG), *b = malloc(BIG);
    for (int k = 0; k < (ORTHOD_HAVE_UTF8PROC ? 3 : 1); k++) {
        eng_gguf_t *g = NULL;
        eng_vocab_t *v = load_vocab(names[k], &g);
        const int32_t V = eng_vocab_n_tokens(v);
        int32_t lead = -1;        // a token whose piece is the lone byte 0xE6 (a 3-byte lead)
        size_t longest = 0;
        for (int32_t id = 0; id < V; id++) {
            int n = eng_token_to_piece(v, id, true, piece, BIG);
            assert_true(n >= 0 && n < BIG);
            if (n == 1 && (uint8_t)piece[0] == 0xE6 && lead < 0)
                lead = id;
            if ((size_t)n > longest)
                longest = (size_t)n;
        }
        for (int carry = 0; carry < (lead >= 0 ? 2 : 1); carry++) {
            for (int32_t id = 0; id < V; id++) {
                const size_t n = (size_t)eng_token_to_piece(v, id, true, piece, BIG);
                struct eng_detok d1, d2;
                eng_detok_init(&d1, v);
                if (carry)
                    assert_int_equal(eng_detok_push(v, &d1, lead, true, a, BIG), 0);
                d2 = d1;
                const size_t cap = 3 * (n + 3);
                const size_t ka = eng_detok_push(v, &d1, id, true, a, cap);
                const size_t kb = eng_detok_push(v, &d2, id, true, b, BIG);
                if (ka != kb || memcmp(a, b, kb) != 0)
                    fail_msg("%s: token %d (piece %zu bytes, carry %d): %zu bytes with cap %zu, "
                             "%zu unbounded", names[k], id, n, carry, ka, cap, kb);
            }
        }
        if (k == 1) {
            // GPT-2's long piece really is longer than the old promise
            assert_true(longest >= 128);
        }
        eng_vocab_free(v);
        eng_gguf_free(g);
    }
    free(piece);
    free(a);
    free(b);
}

/* Arbitrary bytes: every vocab tokenizes them into valid ids; SPM gives them back byte for
 * byte; GPT-2 gives back any valid UTF-8 text (pieces concatenated, no space cleaning). */
static void test_arbitrary_bytes(void **state)
{
    (void)state;
    const char *names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                           "ggml-vocab-bert-bge.gguf"};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < (ORTHOD_HAVE_UTF8PROC ? 3 : 1); k++) {
        eng_gguf_t *g = NULL;
        eng_vocab_t *v = load_vocab(names[k], &g);
        for (int round = 0; round < 300; round++) {
            char s[1200], out[8192];
            size_t len = 0;
            const bool valid = round % 2 == 0;
            while (len < (size_t)(round + 1)) {
                const uint64_t r = rnd(&x);
                if (!valid) {
                    // bytes that form and break multi-byte sequences, some ASCII
                    s[len++] = r % 3 == 0 ? " a<s>\n'"[r % 7] : (char)((r >> 8) & 0xFF);
                    continue;
                }
                // random codepoints: ASCII, Latin, CJK, emoji, combining marks, spaces
                static const uint32_t base[] = {0x20, 0xC0, 0x4E00, 0x1F600, 0x300, 0x2000};
                uint32_t cp = base[r % 6] + (uint32_t)((r >> 8) % 96);
                if (cp >= 0xD800 && cp <= 0xDFFF)
                    cp = 'x';
                uint8_t u[4];
                const size_t n = eng_unicode_encode(cp, u);
                memcpy(s + len, u, n);
                len += n;
            }
            size_t n;
            int32_t *ids = tok(v, s, len, true, (round & 3) == 1, &n);
            for (size_t i = 0; i < n; i++)
                assert_true(ids[i] >= 0 && ids[i] < eng_vocab_n_tokens(v));
            free(ids);
            ids = tok(v, s, len, false, false, &n);
            if (k == 0 && valid) {
                // (invalid UTF-8 does not round-trip in llama.cpp either: a lead byte
                // swallows the "▁" that a following space became)
                assert_int_equal(eng_detokenize(v, ids, n, false, out, sizeof out), len);
                assert_memory_equal(out, s, len);
            } else if (k == 1 && valid) {
                size_t at = 0;
                for (size_t i = 0; i < n; i++) {
                    const int pn = eng_token_to_piece(v, ids[i], false, out + at,
                                                      sizeof out - at);
                    assert_true(pn >= 0);
                    at += (size_t)pn;
                }
                assert_int_equal(at, len);
                assert_memory_equal(out, s, len);
            }
            free(ids);
        }
        eng_vocab_free(v);
        eng_gguf_free(g);
    }
}

/* --- pre-tokenizers against the original regular expressions ------------------------------ */

#if ORTHOD_HAVE_UTF8PROC
struct pretok_case {
    enum eng__bpe_pre pre;
    const char *text;
    size_t ends[24];    /* byte offset where each word ends */
    size_t n;
};

/* generated by the script in docs/tokenizers.md (Python `regex` module, original regexes) */
static const struct pretok_case pretok_cases[] = {
    {ENG__PRE_GPT2, "Hello world",
     {5, 11}, 2},
    {ENG__PRE_GPT2, " Hello World!",
     {6, 12, 13}, 3},
    {ENG__PRE_GPT2, "I've 'RE you sure\? 'M not",
     {1, 4, 6, 8, 12, 17, 18, 20, 21, 25}, 10},
    {ENG__PRE_GPT2, "3333333 33",
     {7, 10}, 2},
    {ENG__PRE_GPT2, "  \x0A\x0A\x09 x  ",
     {5, 7, 9}, 3},
    {ENG__PRE_GPT2, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
     "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
     {24}, 1},
    {ENG__PRE_GPT2, "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE2\x80\x9Cquotes\xE2"
     "\x80\x9D",
     {6, 12, 16, 20, 26, 29}, 6},
    {ENG__PRE_GPT2, "a  b   c    ",
     {1, 2, 4, 6, 8, 12}, 6},
    {ENG__PRE_GPT2, "x\x0D\x0A\x0D\x0A y",
     {1, 5, 7}, 3},
    {ENG__PRE_GPT2, "$$$ +++ ...!!!",
     {3, 7, 14}, 3},
    {ENG__PRE_GPT2, "\xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 ok",
     {8, 11}, 2},
    {ENG__PRE_GPT2, "\xC2\xA0\xC2\xA0""a\xE3\x80\x80""b",
     {2, 4, 5, 8, 9}, 5},
    {ENG__PRE_GPT2, "'''''' I'm",
     {6, 8, 10}, 3},
    {ENG__PRE_GPT2, "e\xCC\x81te\xCC\x81",
     {1, 3, 5, 7}, 4},
    {ENG__PRE_GPT2, "\xE2\x85\xAB\xE2\x85\xAB\xC2\xB2\xC2\xB3 12345",
     {10, 16}, 2},
    {ENG__PRE_GPT2, "\xC3\xA9'a'M\xE2\x80\x9DY've'd] cXc",
     {2, 3, 4, 5, 6, 9, 10, 13, 15, 16, 20}, 11},
    {ENG__PRE_GPT2, "\xC3\xB1\xE6\x97\xA5""4'M8'",
     {5, 6, 7, 8, 9, 10}, 6},
    {ENG__PRE_GPT2, "b\xE2\x85\xAB\xC2\xB2\x09're\xC2\xA0\xE6\x97\xA5're'M\xCC"
     "\x81\xE2\x80\x9DZ\x0A\x0A\xE2\x80\x83",
     {1, 6, 7, 10, 12, 15, 18, 19, 20, 25, 26, 31}, 12},
    {ENG__PRE_GPT2, "!\xC3\xB1",
     {1, 3}, 2},
    {ENG__PRE_GPT2, "]\x0A\x0A\x09 \xD0\x96\xF0\x9F\x98\x80""c\xCC\x81'LLa(3\xE6"
     "\x9C\xAC<",
     {1, 4, 7, 11, 12, 15, 18, 19, 20, 23, 24}, 11},
    {ENG__PRE_GPT2, "'s'LL\xE2\x80\xA6",
     {2, 3, 5, 8}, 4},
    {ENG__PRE_GPT2, "5'LL\xE2\x80\x83 3X['",
     {1, 2, 4, 7, 9, 10, 12}, 7},
    {ENG__PRE_GPT2, "3\?\xD0\x96Z|\x0DZ7\x0A\x0A",
     {1, 2, 5, 6, 7, 8, 9, 11}, 8},
    {ENG__PRE_GPT2, "!4\xE6\x97\xA5",
     {1, 2, 5}, 3},
    {ENG__PRE_GPT2, "\xE2\x80\x94",
     {3}, 1},
    {ENG__PRE_GPT2, "[\xD9\xA3)\xE2\x80\x9D\xE6\x97\xA5\xE6\x9C\xACZ",
     {1, 3, 7, 14}, 4},
    {ENG__PRE_GPT2, "\xE6\x9C\xAC""6\xC3\xA9\xE2\x82\xAC\xC3\xA9,\x0D""08|\"0\xF0"
     "\x9F\x98\x80",
     {3, 4, 6, 9, 11, 12, 13, 15, 17, 18, 22}, 11},
    {ENG__PRE_GPT2, "\xC2\xB2<",
     {2, 3}, 2},
    {ENG__PRE_GPT2, "\x0A""9['x5\xE2\x80\x9D\x0A\x0A""4_\xC3\x9F'LL've> ",
     {1, 2, 4, 5, 6, 9, 10, 11, 12, 13, 15, 16, 18, 21, 22, 23}, 16},
    {ENG__PRE_GPT2, ".",
     {1}, 1},
    {ENG__PRE_GPT2, "Y \xE2\x85\xAB'M-\?\xD0\x96're\xE2\x80\x9D\x0A'LL~ ",
     {1, 5, 6, 7, 9, 11, 14, 17, 18, 19, 21, 22, 23}, 13},
    {ENG__PRE_GPT2, ">9",
     {1, 2}, 2},
    {ENG__PRE_GPT2, "\xD0\x96\xE2\x85\xAB $ \xCC\x81|7\xE2\x80\x9D !'T",
     {2, 5, 7, 11, 12, 15, 18, 19}, 8},
    {ENG__PRE_GPT2, "]\xF0\x9F\xA6\x99""4\xD9\xA3\xE3\x80\x80\xE6\x9C\xAC(21's63"
     "\xC2\xA0're",
     {5, 8, 11, 14, 15, 17, 19, 21, 23, 26}, 10},
    {ENG__PRE_GPT2, "_6a'T'M3 Z\">_ ",
     {1, 2, 3, 4, 5, 6, 7, 8, 10, 13, 14}, 11},
    {ENG__PRE_GPT2, "<\x0D\xF0\x9F\xA6\x99!~-\xE2\x80\x9C""4\xF0\x9F\xA6\x99'M"
     "\x0D\x0A\x0D`^",
     {1, 2, 12, 13, 18, 19, 21, 22, 24}, 9},
    {ENG__PRE_GPT2, "\xE2\x80\x94\x0D\xF0\x9F\x98\x80'<\x0D !\xE2\x80\xA6>'s[\xC3"
     "\xA9 ",
     {3, 4, 10, 11, 18, 19, 20, 22, 23}, 9},
    {ENG__PRE_GPT2, "\xC2\xB2""6<\?a'LL\xC3\xB1>!~\xC3\xB1""8^",
     {3, 5, 6, 7, 11, 14, 16, 17, 18}, 9},
    {ENG__PRE_GPT2, "\xC3\xB1""5.\xE2\x80\xA6+[ 6\xE2\x82\xAC\xE2\x80\x94\xD0\x96",
     {2, 3, 9, 11, 17, 19}, 6},
    {ENG__PRE_GPT2, "\xE6\x9C\xACX\xE6\x97\xA5'xX$\xE6\x9C\xAC're2\xE2\x80\xA6([,",
     {7, 8, 10, 11, 14, 17, 18, 24}, 8},
    {ENG__PRE_GPT2, "\xE2\x80\x9D(\xE2\x80\x94,\xE2\x80\x94",
     {11}, 1},
    {ENG__PRE_GPT2, "\xCC\x81\x0D'LL\xF0\x9F\xA6\x99",
     {2, 3, 4, 6, 10}, 5},
    {ENG__PRE_GPT2, " )\xCC\x81(_\xD0\x96\x0A\x0A've\xF0\x9F\x98\x80\xE2\x80\xA6"
     "\xE2\x80\x9D\xE3\x80\x80",
     {6, 8, 9, 10, 13, 23, 26}, 7},
    {ENG__PRE_GPT2, "\x09\x0A",
     {2}, 1},
    {ENG__PRE_GPT2, "2X>YZ ",
     {1, 2, 3, 5, 6}, 5},
    {ENG__PRE_GPT2, "4-\xE2\x82\xAC]\"\xCC\x81're\?\x0D\x0A\xC2\xB2\xE2\x80\x9D",
     {1, 10, 12, 13, 14, 15, 17, 20}, 8},
    {ENG__PRE_GPT2, "[\xE2\x85\xAB'vec",
     {1, 4, 7, 8}, 4},
    {ENG__PRE_GPT2, "\xE2\x80\x9D(\xE2\x80\x94 5\xC3\xB1\xD9\xA3""2\xF0\x9F\xA6"
     "\x99're3",
     {7, 9, 11, 14, 19, 21, 22}, 7},
    {ENG__PRE_GPT2, "\x09""6\xE2\x85\xAB\xE2\x85\xAB>_1\xE2\x80\x83\xE2\x80\x94",
     {1, 8, 10, 11, 14, 17}, 6},
    {ENG__PRE_GPT2, "\xC3\x9FZ+'re+`Z'LL-",
     {3, 5, 7, 9, 10, 11, 13, 14}, 8},
    {ENG__PRE_GPT2, " [\xE2\x82\xAC<",
     {6}, 1},
    {ENG__PRE_GPT2, "\xD9\xA3'sX\xC3\x9F've,~)3\xC2\xB2",
     {2, 4, 7, 10, 13, 16}, 6},
    {ENG__PRE_GPT2, " X]\xE2\x80\xA6+|7'LLc  ",
     {2, 8, 9, 10, 13, 15}, 6},
    {ENG__PRE_GPT2, "\xE3\x80\x80""3\xE2\x85\xAB""1\x0A's\xE6\x97\xA5$+.>`+ ",
     {3, 8, 9, 11, 14, 20, 21}, 7},
    {ENG__PRE_GPT2, "b-\xE2\x80\x9D\x0A\x0A""0",
     {1, 5, 6, 7, 8}, 5},
    {ENG__PRE_LLAMA3, "Hello world",
     {5, 11}, 2},
    {ENG__PRE_LLAMA3, " Hello World!",
     {6, 12, 13}, 3},
    {ENG__PRE_LLAMA3, "I've 'RE you sure\? 'M not",
     {1, 4, 6, 8, 12, 17, 18, 20, 21, 25}, 10},
    {ENG__PRE_LLAMA3, "3333333 33",
     {3, 6, 7, 8, 10}, 5},
    {ENG__PRE_LLAMA3, "  \x0A\x0A\x09 x  ",
     {4, 5, 7, 9}, 4},
    {ENG__PRE_LLAMA3, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
     "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
     {24}, 1},
    {ENG__PRE_LLAMA3, "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE2\x80\x9Cquotes\xE2"
     "\x80\x9D",
     {6, 12, 16, 20, 26, 29}, 6},
    {ENG__PRE_LLAMA3, "a  b   c    ",
     {1, 2, 4, 6, 8, 12}, 6},
    {ENG__PRE_LLAMA3, "x\x0D\x0A\x0D\x0A y",
     {1, 5, 7}, 3},
    {ENG__PRE_LLAMA3, "$$$ +++ ...!!!",
     {3, 7, 14}, 3},
    {ENG__PRE_LLAMA3, "\xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 ok",
     {8, 11}, 2},
    {ENG__PRE_LLAMA3, "\xC2\xA0\xC2\xA0""a\xE3\x80\x80""b",
     {2, 5, 9}, 3},
    {ENG__PRE_LLAMA3, "'''''' I'm",
     {6, 8, 10}, 3},
    {ENG__PRE_LLAMA3, "e\xCC\x81te\xCC\x81",
     {1, 5, 7}, 3},
    {ENG__PRE_LLAMA3, "\xE2\x85\xAB\xE2\x85\xAB\xC2\xB2\xC2\xB3 12345",
     {8, 10, 11, 14, 16}, 5},
    {ENG__PRE_LLAMA3, "Y \xF0\x9F\xA6\x99\xE2\x80\x9C\xE2\x80\xA6+\xF0\x9F\xA6\x99""8"
     "_",
     {1, 17, 18, 19}, 4},
    {ENG__PRE_LLAMA3, "$\x0A\x0A""7\xD0\x96""6",
     {3, 4, 6, 7}, 4},
    {ENG__PRE_LLAMA3, "\xC2\xA0",
     {2}, 1},
    {ENG__PRE_LLAMA3, "` 9\xC3\xA9\x0A\x0A""7]\xE2\x80\xA6`\xF0\x9F\x98\x80\xC2\xB2"
     "\xE2\x80\xA6",
     {1, 2, 3, 5, 7, 8, 17, 19, 22}, 9},
    {ENG__PRE_LLAMA3, "\xC3\xB1\xCC\x81\xC3\xA9+'x\xF0\x9F\x98\x80^\xE2\x80\x9D",
     {2, 6, 8, 9, 17}, 5},
    {ENG__PRE_LLAMA3, "'x\xE6\x9C\xAC\xC2\xB2",
     {5, 7}, 2},
    {ENG__PRE_LLAMA3, "\xC2\xA0\xE2\x80\x83",
     {5}, 1},
    {ENG__PRE_LLAMA3, "\x0A 'LL",
     {1, 3, 5}, 3},
    {ENG__PRE_LLAMA3, ">,\xE2\x82\xAC]^\xE3\x80\x80",
     {7, 10}, 2},
    {ENG__PRE_LLAMA3, "9\xE6\x9C\xAC\xE6\x97\xA5-\xC3\xA9\xF0\x9F\x98\x80'x\xC2\xA0"
     "\xE6\x97\xA5've'LL 7(",
     {1, 7, 10, 15, 16, 21, 24, 27, 28, 29, 30}, 11},
    {ENG__PRE_LLAMA3, "<\x0A\x0A ",
     {3, 4}, 2},
    {ENG__PRE_LLAMA3, "X5-'dZ",
     {1, 2, 4, 6}, 4},
    {ENG__PRE_LLAMA3, "\x0D\x0A",
     {2}, 1},
    {ENG__PRE_LLAMA3, "_)\?\xE2\x80\xA6\"\xE2\x80\x9C""6",
     {10, 11}, 2},
    {ENG__PRE_LLAMA3, ">b,.-\x09""4",
     {2, 5, 6, 7}, 4},
    {ENG__PRE_LLAMA3, "9\xC3\x9F\xC3\xA9|\xE2\x85\xAB)\xE2\x82\xAC\x0A\x0A\">\x0D"
     "\x0A\xE2\x80\x9C\xD9\xA3-",
     {1, 5, 6, 9, 15, 19, 22, 24, 25}, 9},
    {ENG__PRE_LLAMA3, ".55`",
     {1, 3, 4}, 3},
    {ENG__PRE_LLAMA3, "Y \xE2\x80\x9C",
     {1, 5}, 2},
    {ENG__PRE_LLAMA3, "]\xC2\xA0 \"\xC3\xA9X\xE3\x80\x80^'re",
     {1, 3, 5, 8, 11, 13, 15}, 7},
    {ENG__PRE_LLAMA3, "'re'LL\x09<\xC2\xB2< !\xCC\x81_\xE2\x82\xAC\xE2\x82\xAC",
     {3, 6, 7, 8, 10, 11, 22}, 7},
    {ENG__PRE_LLAMA3, "'re!X\xE2\x85\xAB""833<",
     {3, 5, 10, 11, 12}, 5},
    {ENG__PRE_LLAMA3, "7\xF0\x9F\x98\x80""2!'d\xC2\xB2\xC2\xA0",
     {1, 5, 6, 8, 9, 11, 13}, 7},
    {ENG__PRE_LLAMA3, "(2\x0A\x0A\"\xE6\x9C\xAC\x0D-6're\xC3\xA9 \xC3\xA9\x09",
     {1, 2, 4, 8, 9, 10, 11, 14, 16, 19, 20}, 11},
    {ENG__PRE_LLAMA3, "'re\x0A\x0A""4\xE2\x80\x83\x0D""3>  \xE2\x80\x83\xE2\x82\xAC""3"
     " ",
     {3, 5, 6, 10, 11, 12, 14, 17, 20, 21, 22}, 11},
    {ENG__PRE_LLAMA3, "`a\xE2\x82\xAC[9 ",
     {2, 6, 7, 8}, 4},
    {ENG__PRE_LLAMA3, "\xE3\x80\x80""cc$\xC3\xA9 b|~\xD9\xA3|(\xE2\x80\x9D\xE2\x82"
     "\xAC",
     {5, 8, 10, 12, 14, 22}, 6},
    {ENG__PRE_LLAMA3, "\xE2\x80\xA6\xE2\x80\x9C\xE2\x80\x94\xC2\xB2",
     {9, 11}, 2},
    {ENG__PRE_LLAMA3, "\xE6\x9C\xAC\xE2\x80\xA6""cc,",
     {3, 8, 9}, 3},
    {ENG__PRE_LLAMA3, "\xE2\x80\x94""0\xC3\x9F\xE2\x80\x9C\x09>| Z\">'",
     {3, 4, 6, 9, 10, 12, 14, 17}, 8},
    {ENG__PRE_LLAMA3, "77'LL+6 're",
     {2, 5, 6, 7, 9, 11}, 6},
    {ENG__PRE_LLAMA3, "<Y1\x0A\x0A\xE2\x85\xABX[\xCC\x81'T",
     {2, 3, 5, 8, 9, 13, 14}, 7},
    {ENG__PRE_LLAMA3, "\x0D\xE2\x82\xAC""cZ`\xC3\xB1X.8 \xC2\xB2\xE2\x80\x9C'T",
     {1, 6, 10, 11, 12, 13, 15, 19, 20}, 9},
    {ENG__PRE_LLAMA3, "\x09\xC3\x9F\xD0\x96""7\x0D\x0A",
     {5, 6, 8}, 3},
    {ENG__PRE_LLAMA3, "|\?\xE2\x82\xAC",
     {5}, 1},
    {ENG__PRE_LLAMA3, ",",
     {1}, 1},
    {ENG__PRE_LLAMA3, "_ 8Y\?\xD9\xA3""c~5\").'d've",
     {1, 2, 3, 4, 5, 7, 8, 9, 10, 14, 15, 18}, 12},
    {ENG__PRE_LLAMA3, "\xE2\x80\x9C|\xE2\x80\x94(\xF0\x9F\x98\x80Y`\xC3\xA9\xF0\x9F"
     "\x98\x80""8^'x\xE2\x80\x83\xE2\x82\xAC",
     {12, 13, 16, 20, 21, 23, 24, 27, 30}, 9},
    {ENG__PRE_LLAMA3, "\xE2\x80\xA6\xE2\x82\xAC\xF0\x9F\xA6\x99""9\xE2\x82\xAC'd",
     {10, 11, 15, 16}, 4},
    {ENG__PRE_LLAMA3, "'M-\xCC\x81""1'LL(\xC3\xB1",
     {2, 5, 6, 9, 12}, 5},
    {ENG__PRE_LLAMA3, "'LL're\xC3\x9F""b]",
     {3, 6, 9, 10}, 4},
    {ENG__PRE_QWEN2, "Hello world",
     {5, 11}, 2},
    {ENG__PRE_QWEN2, " Hello World!",
     {6, 12, 13}, 3},
    {ENG__PRE_QWEN2, "I've 'RE you sure\? 'M not",
     {1, 4, 6, 8, 12, 17, 18, 20, 21, 25}, 10},
    {ENG__PRE_QWEN2, "3333333 33",
     {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10},
    {ENG__PRE_QWEN2, "  \x0A\x0A\x09 x  ",
     {4, 5, 7, 9}, 4},
    {ENG__PRE_QWEN2, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
     "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
     {24}, 1},
    {ENG__PRE_QWEN2, "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE2\x80\x9Cquotes\xE2"
     "\x80\x9D",
     {6, 12, 16, 20, 26, 29}, 6},
    {ENG__PRE_QWEN2, "a  b   c    ",
     {1, 2, 4, 6, 8, 12}, 6},
    {ENG__PRE_QWEN2, "x\x0D\x0A\x0D\x0A y",
     {1, 5, 7}, 3},
    {ENG__PRE_QWEN2, "$$$ +++ ...!!!",
     {3, 7, 14}, 3},
    {ENG__PRE_QWEN2, "\xF0\x9F\xA6\x99\xF0\x9F\x9A\x80 ok",
     {8, 11}, 2},
    {ENG__PRE_QWEN2, "\xC2\xA0\xC2\xA0""a\xE3\x80\x80""b",
     {2, 5, 9}, 3},
    {ENG__PRE_QWEN2, "'''''' I'm",
     {6, 8, 10}, 3},
    {ENG__PRE_QWEN2, "e\xCC\x81te\xCC\x81",
     {1, 5, 7}, 3},
    {ENG__PRE_QWEN2, "\xE2\x85\xAB\xE2\x85\xAB\xC2\xB2\xC2\xB3 12345",
     {3, 6, 8, 10, 11, 12, 13, 14, 15, 16}, 10},
    {ENG__PRE_QWEN2, "\xE2\x80\xA6",
     {3}, 1},
    {ENG__PRE_QWEN2, " 'x\xC3\x9F\xE3\x80\x80""7\xE2\x80\x9CZ\x0A\x0A\xE2\x85\xAB"
     "\xE2\x80\x9D",
     {2, 5, 8, 9, 13, 15, 18, 21}, 8},
    {ENG__PRE_QWEN2, "^\?\xE2\x80\x9DY\xE2\x80\x9C)\xC2\xA0) 'M\xE2\x82\xAC\x09'd!",
     {5, 6, 10, 12, 13, 15, 16, 19, 20, 22, 23}, 11},
    {ENG__PRE_QWEN2, "'re",
     {3}, 1},
    {ENG__PRE_QWEN2, "X!",
     {1, 2}, 2},
    {ENG__PRE_QWEN2, "[\"c>\xD0\x96'M 've[",
     {2, 3, 6, 8, 10, 12, 13}, 7},
    {ENG__PRE_QWEN2, "(]=]'dX12\xC3\x9F]1",
     {5, 7, 8, 9, 11, 12, 13}, 7},
    {ENG__PRE_QWEN2, "'T\x0A\x0A",
     {2, 4}, 2},
    {ENG__PRE_QWEN2, "5Y)\xE2\x80\x83\xD9\xA3've\xE2\x85\xAB\"$c",
     {1, 2, 3, 6, 8, 11, 14, 16, 17}, 9},
    {ENG__PRE_QWEN2, "-9\xC2\xA0""6\xE2\x80\x9C ~",
     {1, 2, 4, 5, 8, 10}, 6},
    {ENG__PRE_QWEN2, "\"\xD9\xA3""2",
     {1, 3, 4}, 3},
    {ENG__PRE_QWEN2, "\xE2\x85\xAB\xE6\x9C\xAC\xE2\x80\x9C=\?\xE2\x80\x94\x0D",
     {3, 6, 15}, 3},
    {ENG__PRE_QWEN2, "3]1\x0D\x0A\?",
     {1, 2, 3, 5, 6}, 5},
    {ENG__PRE_QWEN2, ",64\xE2\x80\x9D",
     {1, 2, 3, 6}, 4},
    {ENG__PRE_QWEN2, "\xD0\x96'T\x0D\x0A|+'s[b\xE2\x85\xABY \?",
     {2, 4, 6, 9, 10, 12, 15, 16, 18}, 9},
    {ENG__PRE_QWEN2, "\xE6\x9C\xAC=.-",
     {3, 6}, 2},
    {ENG__PRE_QWEN2, "=|\x0A\x0A\xC3\x9F\xE2\x82\xAC'T(\x0A""9",
     {4, 6, 10, 11, 13, 14}, 6},
    {ENG__PRE_QWEN2, "-'d^$$~,=`.\x0A""6\xD0\x96",
     {2, 3, 12, 13, 15}, 5},
    {ENG__PRE_QWEN2, "] \xCC\x81""8'T<\xE2\x80\x94\xD0\x96\xE2\x80\x9D""1",
     {1, 4, 5, 7, 11, 13, 16, 17}, 8},
    {ENG__PRE_QWEN2, "<!+`",
     {4}, 1},
    {ENG__PRE_QWEN2, "\x0A _\xE2\x80\x83\xC3\xA9-06\xE2\x80\x83\x0A",
     {1, 3, 8, 9, 10, 11, 15}, 7},
    {ENG__PRE_QWEN2, "^\xC3\x9F\x0D\x0A",
     {3, 5}, 2},
    {ENG__PRE_QWEN2, "\x0D\xC3\x9F'M6\xE2\x82\xAC\xD0\x96\xC2\xB2's'T! <1",
     {1, 3, 5, 6, 11, 13, 15, 17, 18, 20, 21}, 11},
    {ENG__PRE_QWEN2, "\xE2\x80\x9D'LL94,+,",
     {4, 6, 7, 8, 11}, 5},
    {ENG__PRE_QWEN2, "\xE2\x80\x9D\xF0\x9F\xA6\x99\"",
     {8}, 1},
    {ENG__PRE_QWEN2, "\xE6\x9C\xAC's \xE2\x80\x9C\xE2\x80\x9D\xC3\xB1>'d5's''d3",
     {3, 5, 12, 14, 16, 17, 18, 20, 22, 23, 24}, 11},
    {ENG__PRE_QWEN2, "0\xE6\x9C\xAC+",
     {1, 4, 5}, 3},
    {ENG__PRE_QWEN2, "'x\xE2\x80\x83""c've 2-<\x0A~,$\xC3\x9F ",
     {2, 6, 9, 10, 11, 14, 17, 19, 20}, 9},
    {ENG__PRE_QWEN2, "-'s",
     {2, 3}, 2},
    {ENG__PRE_QWEN2, "!^\xF0\x9F\x98\x80+",
     {7}, 1},
    {ENG__PRE_QWEN2, "\xF0\x9F\x98\x80\xD9\xA3\?\x0A""68-cZ)\xCC\x81",
     {4, 6, 8, 9, 10, 13, 16}, 7},
    {ENG__PRE_QWEN2, "$\xD0\x96""0\"'ve,",
     {3, 4, 6, 8, 9}, 5},
    {ENG__PRE_QWEN2, "|\xE2\x82\xAC'x_2>\x0A\x0A\xC3\xB1Z<a",
     {5, 6, 7, 8, 11, 14, 16}, 7},
    {ENG__PRE_QWEN2, "X \xF0\x9F\x98\x80\xE2\x80\x94\xE2\x80\x83're\xE2\x80\x9D",
     {1, 9, 12, 15, 18}, 5},
    {ENG__PRE_QWEN2, "\xE2\x82\xAC+",
     {4}, 1},
    {ENG__PRE_QWEN2, "\xC2\xB2Z'Tac\xF0\x9F\xA6\x99",
     {2, 3, 5, 7, 11}, 5},
    {ENG__PRE_QWEN2, " \xE2\x80\xA6""0=\x0D\xE2\x85\xAB\xE2\x80\x83 \x0A!'re",
     {4, 5, 7, 10, 15, 17, 19}, 7},
    {ENG__PRE_QWEN2, ",(",
     {2}, 1},
    {ENG__PRE_QWEN2, ")~\xE6\x9C\xACY\xD0\x96|\xC2\xA0_   ",
     {2, 8, 9, 11, 12, 15}, 6},
    {ENG__PRE_QWEN2, "\x0A\x0A""b`\xF0\x9F\x98\x80X\xE6\x97\xA5""a\x0A\x0A\"b\xE2"
     "\x80\x9D's`",
     {2, 3, 8, 13, 15, 17, 21, 22, 23}, 9},
};

#endif

/* The hand-written GPT-2, Llama-3 and Qwen2 splitters give the words the regexes give
 * (the table holds the `regex` module's matches of the original patterns). */
static void test_pretokenizers(void **state)
{
    (void)state;
#if !ORTHOD_HAVE_UTF8PROC
    skip();
#else
    for (size_t i = 0; i < sizeof pretok_cases / sizeof pretok_cases[0]; i++) {
        const struct pretok_case *c = &pretok_cases[i];
        size_t ends[64], n;
        assert_int_equal(eng__tok_bpe_split(c->pre, c->text, strlen(c->text), ends, 64, &n), 0);
        bool same = n == c->n;
        for (size_t k = 0; same && k < n; k++)
            same = ends[k] == c->ends[k];
        if (!same)
            fail_msg("pre-tokenizer %d splits case %zu ('%s') differently", (int)c->pre, i,
                     c->text);
    }
#endif
}

/* --- hostile vocabularies -------------------------------------------------------------------- */

static int load_err(eng_gguf_t *g, const char *needle)
{
    eng_vocab_t *v = NULL;
    struct errbuf eb = {{0}};
    int rc = eng_vocab_from_gguf(g, &v, &eb);
    assert_true(rc < 0);
    assert_null(v);
    if (needle && !strstr(eb.msg, needle))
        fail_msg("message '%s' does not name '%s'", eb.msg, needle);
    eng_gguf_free(g);
    return rc;
}

static void test_bad_vocabs(void **state)
{
    (void)state;
    eng_gguf_t *g;
    const char *two[] = {"a", "a"};
    const size_t lens[] = {1, 1};
    const char *one[] = {"x"};
    float sc[1] = {0};
    int64_t big[1] = {3};

    assert_int_equal(eng_gguf_new(&g), 0);
    assert_int_equal(load_err(g, "tokenizer.ggml.model"), ERR_NOTFOUND);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "t5", 2);
    assert_int_equal(load_err(g, "'t5'"), ERR_UNSUPPORTED);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    assert_int_equal(load_err(g, "tokenizer.ggml.tokens"), ERR_CORRUPT);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 2, two, lens);
    eng_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", false);
    assert_int_equal(load_err(g, "duplicate"), ERR_CORRUPT);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    eng_gguf_set_arr(g, "tokenizer.ggml.scores", ENG_GGUF_INT64, 1, big);
    assert_int_equal(load_err(g, "tokenizer.ggml.scores"), ERR_CORRUPT);

    // one token: the default BOS (1) is out of range, yet add_bos is on
    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    eng_gguf_set_arr(g, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, 1, sc);
    assert_int_equal(load_err(g, "add_bos"), ERR_CORRUPT);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    eng_gguf_set_u32(g, "tokenizer.ggml.add_bos_token", 1);
    assert_int_equal(load_err(g, "add_bos_token"), ERR_CORRUPT);

    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "gpt2", 4);
    eng_gguf_set_str(g, "tokenizer.ggml.pre", "made-up", 7);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    assert_int_equal(load_err(g, ORTHOD_HAVE_UTF8PROC ? "made-up" : "libutf8proc"),
                     ERR_UNSUPPORTED);

#if ORTHOD_HAVE_UTF8PROC
    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "gpt2", 4);
    eng_gguf_set_str(g, "tokenizer.ggml.pre", "gpt-2", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    assert_int_equal(load_err(g, "tokenizer.ggml.merges"), ERR_CORRUPT);
#endif

    // a vocab without byte tokens: an unknown run of bytes becomes one <unk> (id 0 is the
    // default <unk> of a llama vocab, as in llama.cpp)
    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5);
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 1, one, lens);
    eng_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", false);
    eng_vocab_t *v = vocab_of(g);
    assert_int_equal(eng_vocab_bos(v), -1);
    assert_int_equal(eng_vocab_eos(v), -1);
    size_t n;
    int32_t ids[8];
    assert_int_equal(eng_tokenize(v, "x\xC3\xA9", 3, false, false, ids, 8, &n), 0);
    assert_ids(ids, n, (const int32_t[]){0, 0, 0}, 3, "unk runs");   // ▁ x é
    assert_int_equal(eng_tokenize(v, "", 0, true, false, ids, 8, &n), 0);
    assert_int_equal(n, 0);
    eng_vocab_free(v);
    eng_gguf_free(g);
#if ORTHOD_HAVE_UTF8PROC
    // a bert vocab too small for its default [UNK] (100): an unknown word is an error
    assert_int_equal(eng_gguf_new(&g), 0);
    eng_gguf_set_str(g, "tokenizer.ggml.model", "bert", 4);
    const char *bert[] = {"\xE2\x96\x81x", "[CLS]", "[SEP]"};
    const size_t blens[] = {4, 5, 5};
    eng_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 3, bert, blens);
    eng_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
    eng_gguf_set_u32(g, "tokenizer.ggml.seperator_token_id", 2);
    v = vocab_of(g);
    assert_int_equal(eng_tokenize(v, "x X", 3, true, false, ids, 8, &n), 0);
    assert_ids(ids, n, (const int32_t[]){1, 0, 0, 2}, 4, "bert tiny");
    assert_int_equal(eng_tokenize(v, "y", 1, false, false, ids, 8, &n), ERR_UNSUPPORTED);
    eng_vocab_free(v);
    eng_gguf_free(g);
#endif
    eng_vocab_free(NULL);
}

/* --- orthod tokenize --------------------------------------------------------------------- */

/* Runs cmd_tokenize with stdout and stderr captured; returns the exit status. */
static int run_cmd(char *out, size_t cap, char *err, size_t ecap, int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    char po[] = "/tmp/orthod-tok-out-XXXXXX", pe[] = "/tmp/orthod-tok-err-XXXXXX";
    int fo = mkstemp(po), fe = mkstemp(pe);
    assert_true(fo >= 0 && fe >= 0);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fo, 1);
    dup2(fe, 2);
    int status = cmd_tokenize(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    ssize_t k = pread(fo, out, cap - 1, 0);
    out[k > 0 ? k : 0] = '\0';
    k = pread(fe, err, ecap - 1, 0);
    err[k > 0 ? k : 0] = '\0';
    close(fo);
    close(fe);
    unlink(po);
    unlink(pe);
    return status;
}

static void test_cmd_tokenize(void **state)
{
    (void)state;
    char *m = model_path("ggml-vocab-llama-spm.gguf");
    if (access(m, R_OK) != 0)
        skip();
    char out[4096], err[1024];
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 3, "--model", m, "Hello world"), 0);
    assert_string_equal(out, "[1, 15043, 3186]\n");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 4, "--no-bos", "--model", m,
                             "Hello world"), 0);
    assert_string_equal(out, "[15043, 3186]\n");
    // <s> is text unless --special
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 4, "--model", m, "--no-bos",
                             "<s>special</s> [INST] tokens"), 0);
    assert_string_equal(out, "[529, 29879, 29958, 18732, 829, 29879, 29958, 518, 25580, 29962, "
                             "18897]\n");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 5, "--model", m, "--no-bos",
                             "--special", "<s>special</s> [INST] tokens"), 0);
    assert_string_equal(out, "[1, 4266, 2, 29871, 518, 25580, 29962, 18897]\n");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 4, "--model", m, "--json-pieces",
                             "a \"q\"\n🦙"), 0);
    assert_string_equal(out, "[{\"id\": 1, \"piece\": \"<s>\"}, {\"id\": 263, \"piece\": \" a\"}, "
                             "{\"id\": 376, \"piece\": \" \\\"\"}, {\"id\": 29939, \"piece\": "
                             "\"q\"}, {\"id\": 29908, \"piece\": \"\\\"\"}, {\"id\": 13, "
                             "\"piece\": \"\\n\"}, {\"id\": 243, \"piece\": [240]}, {\"id\": 162, "
                             "\"piece\": [159]}, {\"id\": 169, \"piece\": [166]}, {\"id\": 156, "
                             "\"piece\": [153]}]\n");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 3, "--model", m, ""), 0);
    assert_string_equal(out, "[1]\n");
    // usage errors: exit 2 and one line naming the problem
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 3, "--model", m, "--bogus"), 2);
    assert_non_null(strstr(err, "--bogus"));
    assert_string_equal(out, "");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 2, "--model", m), 2);
    assert_non_null(strstr(err, "TEXT"));
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 4, "--model", m, "a", "b"), 2);
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 1, "text"), 2);
    assert_non_null(strstr(err, "--model"));
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 3, "--model", "/nonexistent.gguf",
                             "x"), 1);
    assert_non_null(strstr(err, "/nonexistent.gguf"));
    assert_string_equal(out, "");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 1, "--help"), 0);
    assert_non_null(strstr(out, "usage: orthod tokenize"));
#if ORTHOD_HAVE_UTF8PROC
    m = model_path("ggml-vocab-gpt-2.gguf");
    assert_int_equal(run_cmd(out, sizeof out, err, sizeof err, 3, "--model", m, " Hello world"), 0);
    assert_string_equal(out, "[18435, 995]\n");    // gpt2: no BOS by default
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_spm),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_bert),
        cmocka_unit_test(test_gpt2_detok_clean),
        cmocka_unit_test(test_bert_special),
        cmocka_unit_test(test_golden_llama2),
        cmocka_unit_test(test_stories260k_prompt),
        cmocka_unit_test(test_stream_split_utf8),
        cmocka_unit_test(test_spm_merges_and_specials),
        cmocka_unit_test(test_capacity_and_limits),
        cmocka_unit_test(test_arbitrary_bytes),
        cmocka_unit_test(test_detok_capacity_contract),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_bad_vocabs),
        cmocka_unit_test(test_cmd_tokenize),
    };
    static const char *const models[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                                         "ggml-vocab-bert-bge.gguf", "llama-2-tiny-random.gguf",
                                         "stories260K.gguf"};
    static const char *const other[] = {"models/ggml-vocab-llama-spm.gguf.inp",
                                        "models/ggml-vocab-llama-spm.gguf.out",
                                        "golden/llama-2-tiny-random.json"};
    const int missing = tu_missing_models(models, sizeof models / sizeof models[0]) +
                        tu_missing_shared(other, sizeof other / sizeof other[0]) +
                        tu_missing_feature(ORTHOD_HAVE_UTF8PROC, "utf8proc (GPT-2/BERT tokenizers)") +
                        tu_missing_feature(ORTHOD_HAVE_JANSSON, "jansson (the golden JSON)");
    return tu_exit(cmocka_run_group_tests(tests, NULL, NULL), missing);
}
