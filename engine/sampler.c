/* engine/sampler.c: penalties, temperature, top-k/top-p/min-p, seeded draws, logprobs,
 * stop strings. Scratch is sized once per sampler (n_vocab); nothing is allocated per
 * token. */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    float logit;
    int32_t id;
};

struct eng_sampler {
    struct eng_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];
    struct cand *cands;        /* (n_vocab) */
    float *work;               /* (n_vocab) penalized logits */
    uint32_t *counts;          /* (n_vocab) occurrences in the penalty window */
    int32_t *ring;             /* (window) history, when the window is bounded */
    int32_t ring_cap, ring_n, ring_head;
};

void eng_sampler_params_default(struct eng_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

int eng_sampler_params_check(const struct eng_sampler_params *p, const char **why)
{
#define BAD(msg)                                                                                 \
    do {                                                                                         \
        if (why)                                                                                 \
            *why = msg;                                                                          \
        return ERR_RANGE;                                                                        \
    } while (0)
    if (!isfinite(p->temperature) || p->temperature < 0.0f || p->temperature > 100.0f)
        BAD("temperature must be in 0..100");
    if (p->top_k < 0)
        BAD("top_k must be >= 0");
    if (!isfinite(p->top_p) || p->top_p <= 0.0f || p->top_p > 1.0f)
        BAD("top_p must be in (0, 1]");
    if (!isfinite(p->min_p) || p->min_p < 0.0f || p->min_p > 1.0f)
        BAD("min_p must be in 0..1");
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0.0f || p->repeat_penalty > 100.0f)
        BAD("repeat_penalty must be in (0, 100]");
    if (p->repeat_last_n < -1 || p->repeat_last_n > (1 << 20))
        BAD("repeat_last_n must be -1 (all), 0 (off) or a window of up to 1048576 tokens");
    if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 2.0f)
        BAD("presence_penalty must be in -2..2");
    if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 2.0f)
        BAD("frequency_penalty must be in -2..2");
    if (p->n_logprobs < 0 || p->n_logprobs > ENG_MAX_LOGPROBS)
        BAD("logprobs must be in 0..20");
    return 0;
#undef BAD
}

/* splitmix64 seeding + xoshiro256** */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t *s)
{
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double rng_uniform(uint64_t *s)   /* [0, 1) with 53 bits */
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

int eng_sampler_new(const struct eng_sampler_params *p, int32_t n_vocab, eng_sampler_t **out)
{
    if (n_vocab <= 0 || eng_sampler_params_check(p, NULL) < 0)
        return ERR_INVAL;
    eng_sampler_t *s = calloc(1, sizeof *s);
    if (!s)
        return ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->cands = malloc(sizeof *s->cands * (size_t)n_vocab);
    s->work = malloc(sizeof *s->work * (size_t)n_vocab);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->ring_cap = p->repeat_last_n > 0 ? p->repeat_last_n : 0;
    s->ring = s->ring_cap ? malloc(sizeof *s->ring * (size_t)s->ring_cap) : NULL;
    if (!s->cands || !s->work || !s->counts || (s->ring_cap && !s->ring)) {
        eng_sampler_free(s);
        return ERR_NOMEM;
    }
    *out = s;
    return 0;
}

void eng_sampler_free(eng_sampler_t *s)
{
    if (!s)
        return;
    free(s->cands);
    free(s->work);
    free(s->counts);
    free(s->ring);
    free(s);
}

void eng_sampler_accept(eng_sampler_t *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab || s->p.repeat_last_n == 0)
        return;
    if (s->ring_cap) {
        if (s->ring_n == s->ring_cap) {        // evict the oldest
            s->counts[s->ring[s->ring_head]]--;
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
        } else {
            s->ring[(s->ring_head + s->ring_n) % s->ring_cap] = token;
            s->ring_n++;
        }
    }
    if (s->counts[token] < UINT32_MAX)
        s->counts[token]++;
}

static bool penalties_on(const struct eng_sampler_params *p)
{
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f);
}

/* Descending by logit, ascending id on ties (deterministic). */
static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool cand_before(const struct cand *x, const struct cand *y)
{
    return x->logit > y->logit || (x->logit == y->logit && x->id < y->id);
}

/* Moves the k best candidates to the front of c[0..n), sorted. O(n + k log k) expected. */
static void select_top(struct cand *c, int32_t n, int32_t k)
{
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        return;
    }
    int32_t lo = 0, hi = n - 1;
    uint64_t seed = 0x2545f4914f6cdd1dull ^ (uint64_t)n;
    while (lo < hi) {                          // quickselect for the k-th position
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const struct cand piv = c[lo + (int32_t)((seed >> 33) % (uint64_t)(hi - lo + 1))];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &piv))
                i++;
            while (cand_before(&piv, &c[j]))
                j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* Non-finite logits, which the arithmetic below cannot take (one NaN or +inf turns every
 * sum into NaN): NaN counts as -inf (never chosen); when some logits are +inf, those tokens
 * share all the probability; when no logit is above -inf, every token is equally likely.
 * Returns lg itself when every value is finite, else the cleaned copy in s->work. */
static const float *sanitize_logits(eng_sampler_t *s, const float *lg)
{
    const int32_t V = s->n_vocab;
    bool bad = false, pinf = false;
    for (int32_t i = 0; i < V; i++) {
        if (!isfinite(lg[i])) {
            bad = true;
            pinf = pinf || lg[i] == INFINITY;
        }
    }
    if (!bad)
        return lg;
    float *w = s->work;               // may be lg itself (penalties): read before write
    bool any = false;
    for (int32_t i = 0; i < V; i++) {
        float x = lg[i];
        if (pinf)
            x = x == INFINITY ? 0.0f : -INFINITY;
        else if (isnan(x))
            x = -INFINITY;
        w[i] = x;
        any = any || x != -INFINITY;
    }
    if (!any)
        for (int32_t i = 0; i < V; i++)
            w[i] = 0.0f;
    return w;
}

int32_t eng_sampler_sample(eng_sampler_t *s, const float *logits, struct eng_logprobs *lp)
{
    const struct eng_sampler_params *p = &s->p;
    const int32_t V = s->n_vocab;
    const float *lg = logits;
    if (penalties_on(p)) {
        memcpy(s->work, logits, sizeof(float) * (size_t)V);
        for (int32_t i = 0; i < V; i++) {
            const uint32_t n = s->counts[i];
            if (!n)
                continue;
            float x = s->work[i];
            if (p->repeat_penalty != 1.0f)
                x = x > 0.0f ? x / p->repeat_penalty : x * p->repeat_penalty;
            x -= (float)n * p->frequency_penalty + p->presence_penalty;
            s->work[i] = x;
        }
        lg = s->work;
    }
    lg = sanitize_logits(s, lg);
    // the distribution logprobs report: softmax of the penalized logits
    double lse = 0.0;
    float mx = -INFINITY;
    int32_t best = 0;
    for (int32_t i = 0; i < V; i++) {
        if (lg[i] > mx) {
            mx = lg[i];
            best = i;
        }
    }
    const bool want_lp = lp && p->n_logprobs > 0;
    if (lp || p->temperature > 0.0f) {
        for (int32_t i = 0; i < V; i++)
            lse += exp((double)lg[i] - mx);
        lse = log(lse) + mx;
    }
    int32_t chosen;
    if (p->temperature <= 0.0f) {
        chosen = best;
    } else {
        for (int32_t i = 0; i < V; i++)
            s->cands[i] = (struct cand){lg[i], i};
        int32_t n = V;
        // top-k, then keep at most enough candidates for top-p / min-p
        int32_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
        const bool need_sort = k < V || p->top_p < 1.0f;
        if (need_sort) {
            int32_t kk = k;
            if (kk == V && p->top_p < 1.0f) {
                // try a short prefix first; fall back to the full sort when it is not enough
                kk = V < 512 ? V : 512;
                select_top(s->cands, n, kk);
                double mass = 0.0;
                for (int32_t i = 0; i < kk; i++)
                    mass += exp(((double)s->cands[i].logit - mx) / p->temperature);
                double total = 0.0;
                for (int32_t i = 0; i < V; i++)
                    total += exp(((double)lg[i] - mx) / p->temperature);
                if (mass < p->top_p * total && kk < V) {
                    for (int32_t i = 0; i < V; i++)
                        s->cands[i] = (struct cand){lg[i], i};
                    kk = V;
                    select_top(s->cands, n, kk);
                }
            } else {
                select_top(s->cands, n, kk);
            }
            n = kk;
        }
        // softmax over the survivors at temperature
        const float top = need_sort ? s->cands[0].logit : mx;
        double sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += exp(((double)s->cands[i].logit - top) / p->temperature);
        if (p->top_p < 1.0f) {
            double cum = 0.0;
            int32_t keep = n;
            for (int32_t i = 0; i < n; i++) {
                cum += exp(((double)s->cands[i].logit - top) / p->temperature) / sum;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
        if (p->min_p > 0.0f) {
            // p_i >= min_p * p_max  <=>  (l_i - l_max)/T >= log(min_p)
            const double thr = log(p->min_p) * p->temperature + top;
            int32_t keep = 0;
            for (int32_t i = 0; i < n; i++)
                if ((double)s->cands[i].logit >= thr)
                    s->cands[keep++] = s->cands[i];
            n = keep > 0 ? keep : 1;   // the max always survives (it sorts first when sorted)
            if (keep == 0)
                s->cands[0] = (struct cand){mx, best};
        }
        sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += exp(((double)s->cands[i].logit - top) / p->temperature);
        const double r = rng_uniform(s->rng) * sum;
        double acc = 0.0;
        chosen = s->cands[n - 1].id;
        for (int32_t i = 0; i < n; i++) {
            acc += exp(((double)s->cands[i].logit - top) / p->temperature);
            if (r < acc) {
                chosen = s->cands[i].id;
                break;
            }
        }
    }
    if (lp) {
        lp->token = chosen;
        lp->logprob = (float)((double)lg[chosen] - lse);
        lp->n_top = 0;
        if (want_lp) {
            for (int32_t i = 0; i < V; i++)
                s->cands[i] = (struct cand){lg[i], i};
            const int32_t k = p->n_logprobs < V ? p->n_logprobs : V;
            select_top(s->cands, V, k);
            for (int32_t i = 0; i < k; i++) {
                lp->top_token[i] = s->cands[i].id;
                lp->top_logprob[i] = (float)((double)s->cands[i].logit - lse);
            }
            lp->n_top = k;
        }
    }
    return chosen;
}

/* --- stop strings --- */

int64_t eng_stop_find(const struct eng_stop *st, const char *text, size_t len)
{
    int64_t best = -1;
    for (size_t i = 0; st && i < st->n; i++) {
        const size_t sl = strlen(st->strs[i]);
        if (sl == 0 || sl > len)
            continue;
        const char *hit = memmem(text, len, st->strs[i], sl);
        if (hit && (best < 0 || hit - text < best))
            best = hit - text;
    }
    return best;
}

size_t eng_stop_safe_len(const struct eng_stop *st, const char *text, size_t len)
{
    size_t hold = 0;
    for (size_t i = 0; st && i < st->n; i++) {
        const size_t sl = strlen(st->strs[i]);
        // longest proper prefix of the stop string that is a suffix of text
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--) {
            if (k <= len && memcmp(text + len - k, st->strs[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return len - hold;
}
