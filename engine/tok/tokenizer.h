/* engine/tok/tokenizer.h: vocabularies, text -> token ids, token ids -> text.
 * Owns: eng_vocab_t (tokens, scores, types, merges, special ids) and the encoders:
 *   - SentencePiece-style BPE with byte fallback (GGUF tokenizer.ggml.model = "llama"),
 *   - GPT-2 byte-level BPE with its pre-tokenizer ("gpt2"; also built from tokenizer.json),
 *   - BERT WordPiece ("bert"), optional.
 * Ids must equal llama.cpp's (llama_tokenize) for the same vocab and flags.
 * Thread: a vocab is immutable after creation and may be used from any thread. */
#ifndef ORTHOD_ENGINE_TOKENIZER_H
#define ORTHOD_ENGINE_TOKENIZER_H

#include "../../common/err.h"
#include "../format/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_vocab eng_vocab_t;

enum eng_vocab_type {
    ENG_VOCAB_SPM = 1,       /* "llama" */
    ENG_VOCAB_BPE = 2,       /* "gpt2" */
    ENG_VOCAB_WPM = 3,       /* "bert" */
};

/* Token types as GGUF tokenizer.ggml.token_type stores them. */
enum eng_token_type {
    ENG_TOKEN_UNDEFINED = 0,
    ENG_TOKEN_NORMAL = 1,
    ENG_TOKEN_UNKNOWN = 2,
    ENG_TOKEN_CONTROL = 3,
    ENG_TOKEN_USER_DEFINED = 4,
    ENG_TOKEN_UNUSED = 5,
    ENG_TOKEN_BYTE = 6,
};

/* Reads tokenizer.ggml.* from g (vocab-only files included). ERR_UNSUPPORTED for an
 * unknown tokenizer model, ERR_CORRUPT for inconsistent arrays (message names the key). */
int eng_vocab_from_gguf(const eng_gguf_t *g, eng_vocab_t **out, struct errbuf *eb);
void eng_vocab_free(eng_vocab_t *v);        /* NULL ok */

enum eng_vocab_type eng_vocab_type(const eng_vocab_t *v);
int32_t eng_vocab_n_tokens(const eng_vocab_t *v);
int32_t eng_vocab_bos(const eng_vocab_t *v);        /* -1 if none */
int32_t eng_vocab_eos(const eng_vocab_t *v);        /* -1 if none */
bool eng_vocab_add_bos(const eng_vocab_t *v);       /* tokenizer.ggml.add_bos_token (default per type) */
bool eng_vocab_add_eos(const eng_vocab_t *v);
/* True for end-of-generation tokens (eos, eot, and control tokens marked as such). */
bool eng_vocab_is_eog(const eng_vocab_t *v, int32_t id);
/* The token's stored text (as in the vocab, e.g. "▁the", "<0x0A>"); NULL if out of range. */
const char *eng_vocab_token_text(const eng_vocab_t *v, int32_t id, size_t *len);
enum eng_token_type eng_vocab_token_type(const eng_vocab_t *v, int32_t id);

/* The most text one eng_tokenize call accepts (4 MiB, far beyond any context window);
 * longer text gives ERR_TOOLARGE with *n_out == 0, so that hostile input cannot make
 * tokenizing take unbounded time or memory. */
#define ENG_TOKENIZE_MAX_BYTES ((size_t)4 << 20)

/* Encodes text[0..len) (any bytes; invalid UTF-8 is handled as llama.cpp does).
 * add_special: prepend BOS / append EOS as the vocab says (llama.cpp add_special).
 * parse_special: recognize special/control token texts such as "<s>" in the text;
 * when false they are tokenized as plain text (llama.cpp's test-vector convention).
 * Writes up to cap ids; *n_out is the number of ids the text needs. Returns 0, or
 * ERR_TOOLARGE when cap is too small (call again with cap >= *n_out). */
int eng_tokenize(const eng_vocab_t *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, size_t cap, size_t *n_out);

/* The bytes token id stands for (byte tokens decoded, "▁" -> " " for SPM, GPT-2 byte
 * mapping undone). Control tokens give "" unless `special`. Returns the byte count
 * written (truncated to cap), or a negative ERR_* for a bad id. The bytes may be a
 * partial UTF-8 sequence: streaming callers use eng_detok. */
int eng_token_to_piece(const eng_vocab_t *v, int32_t id, bool special, char *buf, size_t cap);

/* Streaming decoder state: carries an incomplete UTF-8 sequence across tokens, and the
 * SPM rule that drops the leading space of the first piece. Zero-initialize, or use
 * eng_detok_init. */
struct eng_detok {
    uint8_t pending[8];
    uint8_t n_pending;
    bool started;            /* a piece has been emitted (SPM leading-space rule) */
    bool strip_leading_space; /* set by init for SPM vocabs with add_space_prefix */
};
void eng_detok_init(struct eng_detok *d, const eng_vocab_t *v);
/* Appends the text of token id to out (cap bytes), emitting only complete UTF-8
 * sequences; returns bytes written (never more than cap). An invalid sequence is emitted as
 * U+FFFD. What does not fit is lost: cap = 3 * (n + 3), n the token's piece length from
 * eng_token_to_piece, always suffices (the carry is at most 3 bytes, and each byte may
 * become a 3-byte U+FFFD). Pieces can be long: GPT-2 has a 128-byte one. */
size_t eng_detok_push(const eng_vocab_t *v, struct eng_detok *d, int32_t id, bool special,
                      char *out, size_t cap);
/* Emits whatever is left (an incomplete tail becomes U+FFFD). */
size_t eng_detok_flush(struct eng_detok *d, char *out, size_t cap);

/* Detokenizes a whole id sequence into out (NUL-terminated, truncated to cap-1);
 * returns the full length it needs. */
size_t eng_detokenize(const eng_vocab_t *v, const int32_t *ids, size_t n, bool special,
                      char *out, size_t cap);

#endif
