/* engine/sampler.h: turning logits into the next token.
 * Owns: eng_sampler_t, the chain repetition/presence/frequency penalties -> temperature
 * -> top-k -> top-p -> min-p -> draw from a seeded RNG (same seed, same tokens), greedy
 * when temperature <= 0; logprobs of the chosen and top-N tokens; stop-string matching.
 * Thread: one sampler per sequence; not shared. */
#ifndef ORTHOD_ENGINE_SAMPLER_H
#define ORTHOD_ENGINE_SAMPLER_H

#include "../common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct eng_sampler_params {
    float temperature;        /* <= 0: greedy (argmax, lowest id on ties) */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repeat_penalty;     /* 1: off (llama.cpp semantics: divide positive logits) */
    int32_t repeat_last_n;    /* window of history the penalties look at; -1: all, 0: off */
    float presence_penalty;   /* 0: off (OpenAI semantics) */
    float frequency_penalty;  /* 0: off */
    uint64_t seed;
    int32_t n_logprobs;       /* top-N logprobs to report, 0..20 */
};
void eng_sampler_params_default(struct eng_sampler_params *p);
/* Validates ranges; on failure returns ERR_RANGE with *why naming the field. */
int eng_sampler_params_check(const struct eng_sampler_params *p, const char **why);

#define ENG_MAX_LOGPROBS 20
struct eng_logprobs {
    int32_t token;                       /* the chosen token */
    float logprob;                       /* its log-probability under the model's */
    int32_t n_top;                       /* distribution after penalties, before */
    int32_t top_token[ENG_MAX_LOGPROBS]; /* temperature (as OpenAI reports) */
    float top_logprob[ENG_MAX_LOGPROBS];
};

typedef struct eng_sampler eng_sampler_t;
int eng_sampler_new(const struct eng_sampler_params *p, int32_t n_vocab, eng_sampler_t **out);
void eng_sampler_free(eng_sampler_t *s);
/* Records a token in the history the penalties use (prompt tokens and sampled ones). */
void eng_sampler_accept(eng_sampler_t *s, int32_t token);
/* Picks the next token from logits (n_vocab floats; not modified). Fills lp when non-NULL
 * and n_logprobs > 0 (lp->token always). Does not accept the token. Non-finite logits are
 * safe: NaN counts as -inf, +inf tokens share all the probability, and when no logit is
 * above -inf every token is equally likely. */
int32_t eng_sampler_sample(eng_sampler_t *s, const float *logits, struct eng_logprobs *lp);

/* --- stop strings: finds the earliest stop string in generated text, and how much of the
 * text can be released to a stream without risking that it starts a stop string. */
struct eng_stop {
    const char *const *strs;  /* borrowed */
    size_t n;
};
/* Returns the byte offset in text[0..len) where the first stop string starts, or -1. */
int64_t eng_stop_find(const struct eng_stop *st, const char *text, size_t len);
/* Bytes of text[0..len) safe to emit now: everything except a suffix that is a proper
 * prefix of some stop string. */
size_t eng_stop_safe_len(const struct eng_stop *st, const char *text, size_t len);

#endif
