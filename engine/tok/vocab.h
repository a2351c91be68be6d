/* engine/tok/vocab.h: the inside of eng_vocab_t (private to engine/tok/), written by
 * vocab.c (loading) and read by the encoders (spm.c, bpe.c, wpm.c), tokenize.c and
 * detok.c; and the lookups vocab.c offers them (token by text, BPE merge rank) and the
 * id list they append to. The vocab is immutable after eng_vocab_from_gguf; the
 * encoders keep all their state on the stack or in per-call allocations. */
#ifndef ORTHOD_ENGINE_TOK_VOCAB_H
#define ORTHOD_ENGINE_TOK_VOCAB_H

#include "orthod_config.h"
#include "strtab.h"
#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token attributes (llama.cpp's llama_token_attr bits; what tokenizing and detokenizing
 * look at). Derived from tokenizer.ggml.token_type, then adjusted by name-based rules. */
enum {
    ENG__ATTR_UNKNOWN = 1u << 0,
    ENG__ATTR_UNUSED = 1u << 1,
    ENG__ATTR_NORMAL = 1u << 2,
    ENG__ATTR_CONTROL = 1u << 3,
    ENG__ATTR_USER_DEFINED = 1u << 4,
    ENG__ATTR_BYTE = 1u << 5,
    ENG__ATTR_LSTRIP = 1u << 7,     /* eat whitespace before the special token */
    ENG__ATTR_RSTRIP = 1u << 8,     /* eat whitespace after it */
};

/* GPT-2-style pre-tokenizers (the regex that splits text into words before BPE):
 *   GPT2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   LLAMA3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2:  the same with \p{N} (one digit per word) */
enum eng__bpe_pre {
    ENG__PRE_GPT2 = 1,
    ENG__PRE_LLAMA3 = 2,
    ENG__PRE_QWEN2 = 3,
};

struct eng_vocab {
    enum eng_vocab_type type;
    int32_t n_tokens;                   /* V */
    char *pool;                         /* token texts, each NUL-terminated */
    uint32_t *tok_off, *tok_len;        /* (V) */
    float *score;                       /* (V) NaN stored as -inf */
    uint16_t *attr;                     /* (V) ENG__ATTR_* */
    uint8_t *ttype;                     /* (V) enum eng_token_type as reported */
    uint32_t max_token_len;             /* bytes */
    struct eng__strtab index;           /* text -> id */

    int32_t bos, eos, eot, eom, unk, sep, pad, mask_tok;   /* -1 when absent */
    bool add_bos, add_eos, add_sep, add_space_prefix, clean_spaces, ignore_merges;
    bool wpm_lowercase, wpm_strip_accents;
    enum eng__bpe_pre pre;

    int32_t *eog;                       /* sorted ids */
    size_t n_eog;
    int32_t *special;                   /* ids of control/user-defined/unknown tokens, */
    size_t n_special;                   /* longest text first (then lowest id) */

    int32_t byte_tok[256];              /* SPM byte fallback: <0xXX>, else the 1-byte token */

    /* BPE merges: "left right" strings, rank = index */
    char *merge_pool;
    uint32_t *merge_off, *merge_len;
    uint32_t n_merges, max_merge_len;
    struct eng__strtab merge_index;

    /* GPT-2 byte-level mapping: byte -> UTF-8 of its stand-in codepoint (1 or 2 bytes),
     * and stand-in codepoint (< 0x144) -> byte */
    uint8_t byte_enc[256][2];
    uint8_t byte_enc_len[256];
    int16_t byte_dec[0x144];
};

/* A growable id list with a hard cap (the encoders never produce more than a few ids per
 * input byte; the cap turns a bug into ERR_TOOLARGE instead of unbounded growth). */
struct eng__ids {
    int32_t *p;
    size_t n, cap, limit;
};
int eng__ids_push(struct eng__ids *ids, int32_t id);   /* 0, ERR_NOMEM, ERR_TOOLARGE */

/* Token id of the exact text s[0..n), or -1. */
int32_t eng__vocab_find(const eng_vocab_t *v, const char *s, size_t n);
/* Rank of the BPE merge (left, right), or -1. key: scratch of v->max_merge_len bytes. */
int32_t eng__vocab_merge_rank(const eng_vocab_t *v, const char *l, size_t ln, const char *r,
                              size_t rn, char *key);

#endif
