/* engine/tok/encoders.h: the three encoders (private to engine/tok/): spm.c, bpe.c and
 * wpm.c each turn one raw-text fragment (special tokens already split off by tokenize.c)
 * into ids, reading only the vocabulary (vocab.h). tokenize.c picks one by vocab type. */
#ifndef ORTHOD_ENGINE_TOK_ENCODERS_H
#define ORTHOD_ENGINE_TOK_ENCODERS_H

#include "vocab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Append the ids of one raw-text fragment to out.
 * 0, ERR_NOMEM, ERR_TOOLARGE (ids->limit reached), or ERR_UNSUPPORTED when the text
 * needs a byte/unknown token that the vocabulary lacks. */
int eng__tok_spm_encode(const eng_vocab_t *v, const char *text, size_t len, bool space_prefix,
                        struct eng__ids *out);
#if ORTHOD_HAVE_UTF8PROC
int eng__tok_bpe_encode(const eng_vocab_t *v, const char *text, size_t len,
                        struct eng__ids *out);
/* The words the pre-tokenizer splits text into, as byte offsets where each one ends
 * (exact for valid UTF-8). ERR_TOOLARGE when there are more than cap (*n_words says how
 * many). For tests. */
int eng__tok_bpe_split(enum eng__bpe_pre pre, const char *text, size_t len, size_t *ends,
                       size_t cap, size_t *n_words);
int eng__tok_wpm_encode(const eng_vocab_t *v, const char *text, size_t len,
                        struct eng__ids *out);
#endif

#endif
