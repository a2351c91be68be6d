/* engine/train/data.c: training datasets: samples of token ids with a loss mask, loaded
 * from JSONL (chat or prompt/completion, rendered through a chat template family) or from
 * plain text (pretraining windows). Every input is hostile: sizes are bounded, each line
 * is checked, and an error names the line and what to fix. JSON needs jansson (the
 * engine's one JSON dependency, as for Hugging Face folders). */
#include "train_impl.h"

#include "../../common/text.h"

#include "orthod_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if ORTHOD_HAVE_JANSSON
#include <jansson.h>
#endif

#define DEF_MAX_SAMPLES 10000000
#define DEF_MAX_BYTES ((int64_t)4 << 30)
#define MAX_SEQ_LEN (1 << 20)
#define TEXT_CHUNK ((size_t)1 << 20)   /* bytes of text tokenized per call */

struct eng_train_data {
    int32_t *tok;
    uint8_t *mask;
    int64_t n_tok, cap_tok;
    int64_t *off;                /* (n + 1) */
    int64_t n, cap;
    int64_t n_truncated;
    int64_t n_sup;
    int32_t max_len;
};

void eng_data_opts_default(struct eng_data_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = ENG_DATA_AUTO;
    o->max_seq_len = 1024;
    o->add_bos = true;
    o->add_eos = true;
}

int eng_train_data_new(eng_train_data_t **out)
{
    eng_train_data_t *d = calloc(1, sizeof *d);
    if (!d || !(d->off = calloc(1, sizeof *d->off))) {
        free(d);
        return ERR_NOMEM;
    }
    *out = d;
    return 0;
}

void eng_train_data_free(eng_train_data_t *d)
{
    if (!d)
        return;
    free(d->tok);
    free(d->mask);
    free(d->off);
    free(d);
}

static int reserve(eng_train_data_t *d, int64_t n_tok)
{
    if (d->n_tok + n_tok > d->cap_tok) {
        int64_t cap = d->cap_tok ? d->cap_tok : 4096;
        while (cap < d->n_tok + n_tok)
            cap *= 2;
        int32_t *t = realloc(d->tok, (size_t)cap * sizeof *t);
        if (!t)
            return ERR_NOMEM;
        d->tok = t;
        uint8_t *m = realloc(d->mask, (size_t)cap);
        if (!m)
            return ERR_NOMEM;
        d->mask = m;
        d->cap_tok = cap;
    }
    if (d->n + 1 >= d->cap) {
        int64_t cap = d->cap ? d->cap * 2 : 256;
        int64_t *o = realloc(d->off, (size_t)(cap + 1) * sizeof *o);
        if (!o)
            return ERR_NOMEM;
        d->off = o;
        d->cap = cap;
    }
    return 0;
}

int eng_train_data_add(eng_train_data_t *d, const int32_t *tokens, const uint8_t *loss_mask,
                       int32_t n)
{
    if (!d || !tokens || n < 2 || n > MAX_SEQ_LEN)
        return ERR_INVAL;
    int64_t sup = 0;
    for (int32_t i = 1; i < n; i++)
        sup += loss_mask ? (loss_mask[i] != 0) : 1;
    if (sup == 0)
        return ERR_INVAL;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0)
            return ERR_INVAL;
    int rc = reserve(d, n);
    if (rc < 0)
        return rc;
    memcpy(d->tok + d->n_tok, tokens, (size_t)n * sizeof *tokens);
    for (int32_t i = 0; i < n; i++)
        d->mask[d->n_tok + i] = i > 0 && (loss_mask ? loss_mask[i] != 0 : 1);
    d->n_tok += n;
    d->off[++d->n] = d->n_tok;
    d->n_sup += sup;
    if (n > d->max_len)
        d->max_len = n;
    return 0;
}

void eng_train_data_stats(const eng_train_data_t *d, struct eng_train_data_stats *out)
{
    out->n_samples = d->n;
    out->n_tokens = d->n_tok;
    out->n_supervised = d->n_sup;
    out->n_truncated = d->n_truncated;
    out->max_len = d->max_len;
}

int eng_train_data_get(const eng_train_data_t *d, int64_t i, const int32_t **tokens,
                       const uint8_t **mask, int32_t *n)
{
    if (!d || i < 0 || i >= d->n)
        return ERR_INVAL;
    *tokens = d->tok + d->off[i];
    *mask = d->mask + d->off[i];
    *n = (int32_t)(d->off[i + 1] - d->off[i]);
    return 0;
}

int eng_train_data_split(eng_train_data_t *d, int32_t k, eng_train_data_t **heldout)
{
    if (!d || k < 2 || !heldout)
        return ERR_INVAL;
    eng_train_data_t *keep, *ho;
    int rc = eng_train_data_new(&keep);
    if (rc < 0)
        return rc;
    if ((rc = eng_train_data_new(&ho)) < 0) {
        eng_train_data_free(keep);
        return rc;
    }
    for (int64_t i = 0; i < d->n && rc == 0; i++) {
        const int32_t n = (int32_t)(d->off[i + 1] - d->off[i]);
        rc = eng_train_data_add(i % k == k - 1 ? ho : keep, d->tok + d->off[i],
                                d->mask + d->off[i], n);
    }
    if (rc < 0 || ho->n == 0) {
        eng_train_data_free(keep);
        eng_train_data_free(ho);
        return rc < 0 ? rc : ERR_INVAL;
    }
    keep->n_truncated = d->n_truncated;
    // swap keep's contents into d
    eng_train_data_t tmp = *d;
    *d = *keep;
    *keep = tmp;
    eng_train_data_free(keep);
    *heldout = ho;
    return 0;
}

/* --- building one sample from pieces ------------------------------------------------------ */

struct builder {
    int32_t *tok;
    uint8_t *mask;
    int32_t n, cap, limit;
    bool truncated;
};

static int b_push(struct builder *b, int32_t id, bool sup)
{
    if (b->n >= b->limit) {
        b->truncated = true;
        return 0;
    }
    if (b->n == b->cap) {
        int32_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *t = realloc(b->tok, (size_t)cap * sizeof *t);
        if (!t)
            return ERR_NOMEM;
        b->tok = t;
        uint8_t *m = realloc(b->mask, (size_t)cap);
        if (!m)
            return ERR_NOMEM;
        b->mask = m;
        b->cap = cap;
    }
    b->tok[b->n] = id;
    b->mask[b->n] = sup;
    b->n++;
    return 0;
}

/* The rendered text of one sample and, per byte, whether it is supervised. */
struct rtext {
    char *s;
    uint8_t *sup;
    size_t n, cap;
};

static int rt_add(struct rtext *r, const char *s, size_t n, bool sup)
{
    if (r->n + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->n + n + 1)
            cap *= 2;
        char *ns = realloc(r->s, cap);
        if (!ns)
            return ERR_NOMEM;
        r->s = ns;
        uint8_t *nm = realloc(r->sup, cap);
        if (!nm)
            return ERR_NOMEM;
        r->sup = nm;
        r->cap = cap;
    }
    memcpy(r->s + r->n, s, n);
    memset(r->sup + r->n, sup, n);
    r->n += n;
    r->s[r->n] = '\0';
    return 0;
}

/* Number of tokens text[0..n) takes (0 on an error). */
static size_t n_tokens(const eng_vocab_t *v, const char *text, size_t n)
{
    size_t need = 0;
    int rc = eng_tokenize(v, text, n, false, true, NULL, 0, &need);
    return rc == 0 || rc == ERR_TOOLARGE ? need : 0;
}

/* Tokenizes the whole rendered text once (special-token texts recognized) and appends the
 * ids; a supervised byte run [a, b) supervises tokens [ntok(text[0..a)), ntok(text[0..b))):
 * the templates put span boundaries after a newline or a special token, where tokenizing a
 * prefix gives the same tokens as the whole text does. */
static int b_render(struct builder *b, const eng_vocab_t *v, const struct rtext *r)
{
    if (r->n == 0)
        return 0;
    size_t need = 0;
    int32_t *ids = NULL;
    int rc = eng_tokenize(v, r->s, r->n, false, true, NULL, 0, &need);
    if (rc == ERR_TOOLARGE && need > 0) {
        if (!(ids = malloc(need * sizeof *ids)))
            return ERR_NOMEM;
        rc = eng_tokenize(v, r->s, r->n, false, true, ids, need, &need);
    }
    uint8_t *sup = rc == 0 ? calloc(need + 1, 1) : NULL;
    if (rc == 0 && !sup)
        rc = ERR_NOMEM;
    for (size_t a = 0; rc == 0 && a < r->n;) {
        if (!r->sup[a]) {
            a++;
            continue;
        }
        size_t e = a;
        while (e < r->n && r->sup[e])
            e++;
        const size_t ka = n_tokens(v, r->s, a), kb = e == r->n ? need : n_tokens(v, r->s, e);
        for (size_t k = ka; k < kb && k < need; k++)
            sup[k] = 1;
        a = e;
    }
    for (size_t i = 0; rc == 0 && i < need; i++)
        rc = b_push(b, ids[i], sup[i]);
    free(sup);
    free(ids);
    return rc;
}

/* --- chat templates ----------------------------------------------------------------------- */

enum tmpl { T_CHATML, T_LLAMA2, T_LLAMA3, T_ZEPHYR, T_PLAIN };
const char *const eng_chat_template_names[] = {"chatml", "llama2", "llama3", "zephyr", "plain",
                                               NULL};

static int template_pick(const char *s, enum tmpl *out)
{
    if (!s || !*s) {
        *out = T_CHATML;
        return 0;
    }
    for (int i = 0; eng_chat_template_names[i]; i++)
        if (!strcmp(s, eng_chat_template_names[i])) {
            *out = (enum tmpl)i;
            return 0;
        }
    // a Jinja template: recognize the family by its markers (as llama.cpp does)
    if (strstr(s, "<|im_start|>"))
        *out = T_CHATML;
    else if (strstr(s, "<|start_header_id|>"))
        *out = T_LLAMA3;
    else if (strstr(s, "[INST]"))
        *out = T_LLAMA2;
    else if (strstr(s, "<|user|>"))
        *out = T_ZEPHYR;
    else
        return ERR_UNSUPPORTED;
    return 0;
}

struct turn {
    const char *role, *content;
    size_t role_len, content_len;
};

/* Renders turns into r: the assistant content and its end marker are supervised. */
static int render_chat(struct rtext *r, const eng_vocab_t *v, enum tmpl tp,
                       const struct turn *turns, size_t n, bool add_eos)
{
    size_t eos_len = 0;
    const int32_t eos = eng_vocab_eos(v);
    const char *eos_text = eos >= 0 ? eng_vocab_token_text(v, eos, &eos_len) : NULL;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct turn *t = &turns[i];
        const bool asst = t->role_len == 9 && !memcmp(t->role, "assistant", 9);
        char pre[96];
        int pl = 0;
        const char *end = "", *after = "";
        switch (tp) {
        case T_CHATML:
            pl = snprintf(pre, sizeof pre, "<|im_start|>%.*s\n", (int)t->role_len, t->role);
            end = "<|im_end|>";
            after = "\n";
            break;
        case T_LLAMA3:
            pl = snprintf(pre, sizeof pre, "<|start_header_id|>%.*s<|end_header_id|>\n\n",
                          (int)t->role_len, t->role);
            end = "<|eot_id|>";
            break;
        case T_ZEPHYR:
            pl = snprintf(pre, sizeof pre, "<|%.*s|>\n", (int)t->role_len, t->role);
            end = "</s>";
            after = "\n";
            break;
        case T_LLAMA2:
            if (asst) {
                pl = snprintf(pre, sizeof pre, " ");
                end = " </s>";
            } else if (t->role_len == 6 && !memcmp(t->role, "system", 6)) {
                pl = snprintf(pre, sizeof pre, "[INST] <<SYS>>\n");
                after = "\n<</SYS>>\n\n";
            } else {
                // after a system block the [INST] is already open
                const bool open = i > 0 && turns[i - 1].role_len == 6 &&
                                  !memcmp(turns[i - 1].role, "system", 6);
                pl = snprintf(pre, sizeof pre, "%s", open ? "" : "[INST] ");
                after = " [/INST]";
            }
            break;
        case T_PLAIN:
            pl = snprintf(pre, sizeof pre, "%s%.*s: ", i ? "\n" : "", (int)t->role_len, t->role);
            if (asst && add_eos && eos_text)
                end = eos_text;
            break;
        }
        // the end marker closes the assistant's turn: the model must learn to emit it
        if ((rc = rt_add(r, pre, (size_t)pl, false)) < 0 ||
            (rc = rt_add(r, t->content, t->content_len, asst)) < 0 ||
            (rc = rt_add(r, end, end == eos_text ? eos_len : strlen(end), asst)) < 0 ||
            (rc = rt_add(r, after, strlen(after), false)) < 0)
            break;
    }
    return rc;
}

/* --- JSONL ---------------------------------------------------------------------------------- */

#if ORTHOD_HAVE_JANSSON

/* Validates one JSON object; fills turns (chat) or prompt/completion. Returns the format
 * or an error with the reason in why. */
static int parse_line(json_t *o, enum eng_data_format want, struct turn *turns, size_t cap,
                      size_t *n_turns, struct turn *pc, char *why, size_t wcap)
{
    if (!json_is_object(o)) {
        snprintf(why, wcap, "is not a JSON object");
        return ERR_CORRUPT;
    }
    json_t *msgs = json_object_get(o, "messages");
    json_t *prompt = json_object_get(o, "prompt"), *comp = json_object_get(o, "completion");
    enum eng_data_format f = want;
    if (f == ENG_DATA_AUTO)
        f = msgs ? ENG_DATA_CHAT : (prompt || comp) ? ENG_DATA_COMPLETION : ENG_DATA_AUTO;
    if (f == ENG_DATA_CHAT) {
        if (!json_is_array(msgs)) {
            snprintf(why, wcap, "'messages' must be an array of {\"role\", \"content\"}");
            return ERR_CORRUPT;
        }
        size_t n = json_array_size(msgs);
        if (n == 0 || n > cap) {
            snprintf(why, wcap, "'messages' has %zu turns (1 to %zu allowed)", n, cap);
            return ERR_CORRUPT;
        }
        bool has_asst = false;
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            json_t *r = json_object_get(m, "role"), *c = json_object_get(m, "content");
            if (!json_is_string(r) || !json_is_string(c)) {
                snprintf(why, wcap, "messages[%zu] needs string 'role' and 'content'", i);
                return ERR_CORRUPT;
            }
            const char *rs = json_string_value(r);
            if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant")) {
                snprintf(why, wcap, "messages[%zu].role must be system, user or assistant", i);
                return ERR_CORRUPT;
            }
            has_asst |= !strcmp(rs, "assistant");
            turns[i].role = rs;
            turns[i].role_len = json_string_length(r);
            turns[i].content = json_string_value(c);
            turns[i].content_len = json_string_length(c);
        }
        if (!has_asst) {
            snprintf(why, wcap, "'messages' has no assistant turn (nothing to learn)");
            return ERR_CORRUPT;
        }
        *n_turns = n;
        return ENG_DATA_CHAT;
    }
    if (f == ENG_DATA_COMPLETION) {
        if (!json_is_string(prompt) || !json_is_string(comp)) {
            snprintf(why, wcap, "needs string 'prompt' and 'completion'");
            return ERR_CORRUPT;
        }
        if (json_string_length(comp) == 0) {
            snprintf(why, wcap, "'completion' is empty (nothing to learn)");
            return ERR_CORRUPT;
        }
        pc[0].content = json_string_value(prompt);
        pc[0].content_len = json_string_length(prompt);
        pc[1].content = json_string_value(comp);
        pc[1].content_len = json_string_length(comp);
        return ENG_DATA_COMPLETION;
    }
    snprintf(why, wcap, "has neither 'messages' (chat) nor 'prompt'/'completion'");
    return ERR_CORRUPT;
}

#define MAX_TURNS 1024

/* Walks the lines of text; for each object calls fn. */
static int each_line(const char *name, const char *text, size_t len, enum eng_data_format fmt,
                     int64_t max_samples, int (*fn)(void *ctx, int f, const struct turn *turns,
                                                    size_t n, const struct turn *pc, int64_t line,
                                                    struct errbuf *eb),
                     void *ctx, int64_t *n_lines, struct errbuf *eb)
{
    struct turn *turns = malloc(MAX_TURNS * sizeof *turns);
    if (!turns)
        return ERR_NOMEM;
    int rc = 0;
    int64_t line = 0, count = 0;
    size_t i = 0;
    char ename[128];
    text_escape(ename, sizeof ename, name, strlen(name), TEXT_MESSAGE);
    while (i < len && rc == 0) {
        const char *s = text + i;
        const char *nl = memchr(s, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - s) : len - i;
        i += ll + (nl ? 1 : 0);
        line++;
        size_t a = 0;
        while (a < ll && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
            a++;
        if (a == ll)
            continue;   // blank line
        if (++count > max_samples) {
            rc = err_set(eb, ERR_TOOLARGE, "%s: more than %lld samples (line %lld); split the file",
                         ename, (long long)max_samples, (long long)line);
            break;
        }
        json_error_t je;
        json_t *o = json_loadb(s, ll, JSON_REJECT_DUPLICATES, &je);
        if (!o) {
            rc = err_set(eb, ERR_CORRUPT, "%s line %lld: invalid JSON (%s at column %d)", ename,
                         (long long)line, je.text, je.column);
            break;
        }
        char why[160];
        size_t nt = 0;
        struct turn pc[2];
        int f = parse_line(o, fmt, turns, MAX_TURNS, &nt, pc, why, sizeof why);
        if (f < 0)
            rc = err_set(eb, f, "%s line %lld: %s", ename, (long long)line, why);
        else if (fn)
            rc = fn(ctx, f, turns, nt, pc, line, eb);
        json_decref(o);
    }
    free(turns);
    if (rc == 0 && count == 0)
        rc = err_set(eb, ERR_CORRUPT, "%s: no samples (every line is blank)", ename);
    if (rc == 0 && n_lines)
        *n_lines = count;
    return rc;
}

struct load_ctx {
    const eng_vocab_t *v;
    const struct eng_data_opts *o;
    enum tmpl tp;
    eng_train_data_t *d;
    struct builder b;
    struct rtext r;
    const char *name;
};

static int add_sample(void *ctx, int f, const struct turn *turns, size_t n,
                      const struct turn *pc, int64_t line, struct errbuf *eb)
{
    struct load_ctx *c = ctx;
    struct builder *b = &c->b;
    struct rtext *r = &c->r;
    b->n = 0;
    b->truncated = false;
    r->n = 0;
    int rc = 0;
    const int32_t bos = eng_vocab_bos(c->v), eos = eng_vocab_eos(c->v);
    if (f == ENG_DATA_CHAT) {
        rc = render_chat(r, c->v, c->tp, turns, n, c->o->add_eos);
    } else {
        size_t el = 0;
        const char *et = c->o->add_eos && eos >= 0 ? eng_vocab_token_text(c->v, eos, &el) : NULL;
        if ((rc = rt_add(r, pc[0].content, pc[0].content_len, false)) == 0 &&
            (rc = rt_add(r, pc[1].content, pc[1].content_len, true)) == 0 && et)
            rc = rt_add(r, et, el, true);
    }
    if (rc == 0 && c->o->add_bos && bos >= 0 && eng_vocab_add_bos(c->v))
        rc = b_push(b, bos, false);
    if (rc == 0)
        rc = b_render(b, c->v, r);
    if (rc < 0)
        return err_set(eb, rc, "line %lld: cannot tokenize (%s)", (long long)line, err_str(rc));
    bool any = false;
    for (int32_t i = 1; i < b->n; i++)
        any |= b->mask[i];
    if (b->n < 2 || !any) {
        char en[128];
        return err_set(eb, ERR_CORRUPT,
                       "%s line %lld: no supervised token left within %d tokens (raise "
                       "max_seq_len or shorten the prompt)",
                       text_escape(en, sizeof en, c->name, strlen(c->name), TEXT_MESSAGE), (long long)line,
                       (int)b->limit);
    }
    c->d->n_truncated += b->truncated;
    return eng_train_data_add(c->d, b->tok, b->mask, b->n);
}
#endif

int eng_train_data_check_jsonl(const char *text, size_t len, enum eng_data_format format,
                               int64_t *n_lines, struct errbuf *eb)
{
#if ORTHOD_HAVE_JANSSON
    if (!text || format == ENG_DATA_TEXT)
        return err_set(eb, ERR_INVAL, "JSONL check: bad arguments");
    return each_line("file", text, len, format, DEF_MAX_SAMPLES, NULL, NULL, n_lines, eb);
#else
    (void)text, (void)len, (void)format, (void)n_lines;
    return err_set(eb, ERR_UNSUPPORTED, "this build has no JSON support (jansson)");
#endif
}

/* --- text (pretraining) ----------------------------------------------------------------- */

static int load_text(const eng_vocab_t *v, const char *name, const char *text, size_t len,
                     const struct eng_data_opts *o, eng_train_data_t *d, struct errbuf *eb)
{
    const int32_t W = o->max_seq_len, bos = eng_vocab_bos(v);
    const bool use_bos = o->add_bos && bos >= 0;
    int32_t *win = malloc((size_t)W * sizeof *win);
    int32_t *ids = NULL;
    size_t ids_cap = 0;
    if (!win)
        return ERR_NOMEM;
    int32_t n = 0;
    int rc = 0;
    size_t i = 0;
    while (i < len && rc == 0) {
        // a chunk of at most TEXT_CHUNK bytes, cut after a newline when there is one
        size_t cl = len - i < TEXT_CHUNK ? len - i : TEXT_CHUNK;
        if (i + cl < len) {
            const char *nl = NULL;
            for (size_t k = cl; k > cl / 2; k--)
                if (text[i + k - 1] == '\n') {
                    nl = text + i + k;
                    break;
                }
            if (nl)
                cl = (size_t)(nl - (text + i));
        }
        size_t need = 0;
        rc = eng_tokenize(v, text + i, cl, false, false, ids, ids_cap, &need);
        if (rc == ERR_TOOLARGE && need > ids_cap) {
            free(ids);
            ids_cap = need + 1024;
            if (!(ids = malloc(ids_cap * sizeof *ids))) {
                rc = ERR_NOMEM;
                break;
            }
            rc = eng_tokenize(v, text + i, cl, false, false, ids, ids_cap, &need);
        }
        if (rc < 0)
            break;
        for (size_t k = 0; k < need && rc == 0; k++) {
            if (n == 0 && use_bos)
                win[n++] = bos;
            win[n++] = ids[k];
            if (n == W) {
                rc = eng_train_data_add(d, win, NULL, n);
                n = 0;
            }
        }
        i += cl;
    }
    if (rc == 0 && n >= 16)
        rc = eng_train_data_add(d, win, NULL, n);
    free(win);
    free(ids);
    if (rc < 0) {
        char en[128];
        return err_set(eb, rc, "%s: cannot tokenize the text (%s)",
                       text_escape(en, sizeof en, name, strlen(name), TEXT_MESSAGE), err_str(rc));
    }
    if (d->n == 0) {
        char en[128];
        return err_set(eb, ERR_CORRUPT, "%s: too little text for one window of %d tokens",
                       text_escape(en, sizeof en, name, strlen(name), TEXT_MESSAGE), W);
    }
    return 0;
}

int eng_train_data_load_mem(const eng_vocab_t *v, const char *name, const char *text,
                            size_t len, const struct eng_data_opts *o, eng_train_data_t **out,
                            struct errbuf *eb)
{
    struct eng_data_opts def;
    if (!o) {
        eng_data_opts_default(&def);
        o = &def;
    }
    if (!v || !text || !name)
        return err_set(eb, ERR_INVAL, "dataset: bad arguments");
    if (o->max_seq_len < 2 || o->max_seq_len > MAX_SEQ_LEN)
        return err_set(eb, ERR_INVAL, "max_seq_len must be in [2, %d]", MAX_SEQ_LEN);
    const int64_t max_bytes = o->max_bytes > 0 ? o->max_bytes : DEF_MAX_BYTES;
    if ((int64_t)len > max_bytes)
        return err_set(eb, ERR_TOOLARGE, "dataset is %zu bytes, over the limit of %lld", len,
                       (long long)max_bytes);
    eng_train_data_t *d;
    int rc = eng_train_data_new(&d);
    if (rc < 0)
        return rc;
    if (o->format == ENG_DATA_TEXT) {
        rc = load_text(v, name, text, len, o, d, eb);
    } else {
#if ORTHOD_HAVE_JANSSON
        struct load_ctx c = {.v = v, .o = o, .d = d, .name = name};
        c.b.limit = o->max_seq_len;
        if (template_pick(o->chat_template, &c.tp) < 0) {
            eng_train_data_free(d);
            return err_set(eb, ERR_UNSUPPORTED,
                           "chat template not recognized (name one of chatml, llama2, llama3, "
                           "zephyr, plain)");
        }
        rc = each_line(name, text, len, o->format,
                       o->max_samples > 0 ? o->max_samples : DEF_MAX_SAMPLES, add_sample, &c,
                       NULL, eb);
        free(c.b.tok);
        free(c.b.mask);
        free(c.r.s);
        free(c.r.sup);
#else
        rc = err_set(eb, ERR_UNSUPPORTED,
                     "this build has no JSON support (jansson) for JSONL data");
#endif
    }
    if (rc < 0) {
        eng_train_data_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int eng_train_data_load(const eng_vocab_t *v, const char *path, const struct eng_data_opts *o,
                        eng_train_data_t **out, struct errbuf *eb)
{
    char ep[256];
    text_escape(ep, sizeof ep, path ? path : "", path ? strlen(path) : 0, TEXT_MESSAGE);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return err_set(eb, ERR_IO, "cannot open dataset '%s': %s", ep, strerror(errno));
    struct stat st;
    const int64_t max_bytes = o && o->max_bytes > 0 ? o->max_bytes : DEF_MAX_BYTES;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(eb, ERR_IO, "dataset '%s' is not a regular file", ep);
    }
    if ((int64_t)st.st_size > max_bytes) {
        fclose(f);
        return err_set(eb, ERR_TOOLARGE, "dataset '%s' is %lld bytes, over the limit of %lld", ep,
                       (long long)st.st_size, (long long)max_bytes);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return ERR_NOMEM;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n != (size_t)st.st_size) {
        free(buf);
        return err_set(eb, ERR_IO, "cannot read dataset '%s'", ep);
    }
    buf[n] = '\0';
    const char *base = strrchr(path, '/');
    int rc = eng_train_data_load_mem(v, base ? base + 1 : path, buf, n, o, out, eb);
    free(buf);
    return rc;
}

int eng_train_chat_template_of(const eng_model_t *m, char *name, size_t cap)
{
    const char *s;
    size_t n;
    if (!m || !m->file || eng_gguf_get_str(m->file, "tokenizer.chat_template", &s, &n) < 0) {
        snprintf(name, cap, "plain");
        return 0;
    }
    char *z = malloc(n + 1);
    if (!z)
        return ERR_NOMEM;
    memcpy(z, s, n);
    z[n] = '\0';
    enum tmpl tp;
    int rc = n ? template_pick(z, &tp) : ERR_UNSUPPORTED;
    free(z);
    if (rc < 0)
        return rc;
    snprintf(name, cap, "%s", eng_chat_template_names[tp]);
    return 0;
}
