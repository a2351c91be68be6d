/* server/cli/generate.c: `orthod generate`: complete one prompt on the command line.
 * The completion text goes to stdout as it is produced and nothing else does; statistics
 * go to stderr. */
#include "cmd.h"

#include "../../common/opt.h"
#include "cli.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gen_opts {
    char *model, *prompt, *device, *kv_type, *stop;
    int max_tokens, threads, ctx_size, top_k, repeat_last_n, logprobs;
    int64_t seed;
    double temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
    bool no_bos, special, quiet;
};

#define O(f) offsetof(struct gen_opts, f)
static const struct opt_def gen_defs[] = {
    {"model", OPT_STRING, O(model), NULL, 1, 0, NULL, OPT_F_REQUIRED, "PATH",
     "GGUF file or Hugging Face folder"},
    {"prompt", OPT_STRING, O(prompt), NULL, 1, 0, NULL, OPT_F_REQUIRED, "TEXT",
     "the prompt to complete"},
    {"max-tokens", OPT_INT, O(max_tokens), "128", 0, 1 << 20, NULL, 0, "N", "tokens to generate"},
    {"temperature", OPT_DOUBLE, O(temperature), "0.8", 0, 100, NULL, 0, "T", "0 = greedy"},
    {"top-k", OPT_INT, O(top_k), "40", 0, 1 << 24, NULL, 0, "K", "0 = off"},
    {"top-p", OPT_DOUBLE, O(top_p), "0.95", 0.000001, 1, NULL, 0, "P", "1 = off"},
    {"min-p", OPT_DOUBLE, O(min_p), "0.05", 0, 1, NULL, 0, "P", "0 = off"},
    {"repeat-penalty", OPT_DOUBLE, O(repeat_penalty), "1.0", 0.000001, 100, NULL, 0, "X", "1 = off"},
    {"repeat-last-n", OPT_INT, O(repeat_last_n), "64", -1, 1 << 20, NULL, 0, "N",
     "penalty window (-1 = all)"},
    {"presence-penalty", OPT_DOUBLE, O(presence_penalty), "0", -2, 2, NULL, 0, "X", ""},
    {"frequency-penalty", OPT_DOUBLE, O(frequency_penalty), "0", -2, 2, NULL, 0, "X", ""},
    {"seed", OPT_INT64, O(seed), "0", 0, 9.2e18, NULL, 0, "S", "same seed, same output"},
    {"stop", OPT_STRING, O(stop), NULL, 1, 0, NULL, 0, "TEXT", "stop before this text"},
    {"logprobs", OPT_INT, O(logprobs), "0", 0, ENG_MAX_LOGPROBS, NULL, 0, "N",
     "print top-N logprobs per token to stderr"},
    {"threads", OPT_INT, O(threads), "0", 0, 512, NULL, 0, "N", "CPU threads (0 = all)"},
    {"device", OPT_STRING, O(device), "cpu", 1, 0, NULL, 0, "DEV", "cpu, cuda or cuda:N"},
    {"ctx-size", OPT_INT, O(ctx_size), "0", 0, 1 << 24, NULL, 0, "N",
     "context length (0 = the model's, at most 4096)"},
    {"kv-type", OPT_STRING, O(kv_type), "f16", 1, 0, "f16|f32", 0, "TYPE", "KV cache format"},
    {"no-bos", OPT_BOOL, O(no_bos), NULL, 1, 0, NULL, 0, NULL, "do not add the BOS token"},
    {"special", OPT_BOOL, O(special), NULL, 1, 0, NULL, 0, NULL,
     "parse special-token texts such as <s> in the prompt, and print special tokens"},
    {"quiet", OPT_BOOL, O(quiet), NULL, 1, 0, NULL, 0, NULL, "no statistics on stderr"},
};
#undef O
#define N_DEFS (sizeof gen_defs / sizeof gen_defs[0])

static const struct opt_cmd gen_cmd = {
    "generate",
    "usage: orthod generate --model PATH --prompt TEXT [options]\n"
    "Prints the completion of TEXT to stdout; statistics go to stderr.",
    gen_defs, N_DEFS, NULL, "(use --prompt TEXT)"};

/* Bytes eng_detok_push may need for any one token of v: 3 * (longest piece + 3)
 * (engine/tok/tokenizer.h). Pieces can be long (GPT-2 has a 128-byte one), so a fixed buffer
 * would silently drop text. 0 when out of memory. */
static size_t detok_capacity(const eng_vocab_t *v, bool special)
{
    size_t cap = 256, longest = 0;
    char *buf = malloc(cap);
    for (int32_t id = 0; buf && id < eng_vocab_n_tokens(v); id++) {
        int n = eng_token_to_piece(v, id, special, buf, cap);
        while (buf && n >= 0 && (size_t)n == cap && cap < ((size_t)1 << 30)) {
            char *nb = realloc(buf, cap * 4);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 4;
            n = eng_token_to_piece(v, id, special, buf, cap);
        }
        if (n > 0 && (size_t)n > longest)
            longest = (size_t)n;
    }
    if (!buf)
        return 0;
    free(buf);
    return 3 * (longest + 3);
}

static int run(struct gen_opts *o)
{
    eng_backend_t *be = NULL;
    eng_model_t *m = NULL;
    eng_ctx_t *c = NULL;
    eng_sampler_t *smp = NULL;
    int32_t *toks = NULL;
    char *text = NULL, *piece = NULL;
    int status = 1, rc;
    struct cli_model_spec spec = {.model = o->model, .device = o->device, .threads = o->threads};
    double t0 = cli_now();
    if ((status = cli_model_open(&spec, &be, &m)) != 0)
        return status;
    status = 1;
    double t_load = cli_now() - t0;
    const struct eng_hparams *hp = eng_model_hparams(m);
    const eng_vocab_t *voc = eng_model_vocab(m);

    // tokenize
    const size_t plen = strlen(o->prompt);
    size_t n_prompt = 0;
    rc = eng_tokenize(voc, o->prompt, plen, !o->no_bos, o->special, NULL, 0, &n_prompt);
    if (rc < 0 && rc != ERR_TOOLARGE) {
        fprintf(stderr, "orthod: cannot tokenize the prompt: %s\n", err_str(rc));
        goto out;
    }
    struct eng_ctx_params cp;
    eng_ctx_params_default(&cp);
    cp.n_ctx = o->ctx_size;
    eng_kv_format_parse(o->kv_type, &cp.kv_format);
    struct errbuf eb = {{0}};
    if ((rc = eng_ctx_new(m, &cp, &c, &eb)) < 0) {
        fprintf(stderr, "orthod: %s\n", eb.msg[0] ? eb.msg : err_str(rc));
        goto out;
    }
    const int32_t n_ctx = cp.n_ctx > 0 ? cp.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (n_prompt == 0) {
        fprintf(stderr, "orthod: the prompt is empty and no BOS token is added\n");
        goto out;
    }
    if ((int64_t)n_prompt + o->max_tokens > n_ctx) {
        fprintf(stderr, "orthod: prompt (%zu tokens) + --max-tokens %d exceed the context of %d "
                        "tokens (raise --ctx-size or lower --max-tokens)\n",
                n_prompt, o->max_tokens, n_ctx);
        status = 2;
        goto out;
    }
    toks = malloc(sizeof *toks * (n_prompt + 1));
    if (!toks)
        goto out;
    eng_tokenize(voc, o->prompt, plen, !o->no_bos, o->special, toks, n_prompt, &n_prompt);

    struct eng_sampler_params sp;
    eng_sampler_params_default(&sp);
    sp.temperature = (float)o->temperature;
    sp.top_k = o->top_k;
    sp.top_p = (float)o->top_p;
    sp.min_p = (float)o->min_p;
    sp.repeat_penalty = (float)o->repeat_penalty;
    sp.repeat_last_n = o->repeat_last_n;
    sp.presence_penalty = (float)o->presence_penalty;
    sp.frequency_penalty = (float)o->frequency_penalty;
    sp.seed = (uint64_t)o->seed;
    sp.n_logprobs = o->logprobs;
    const char *why = NULL;
    if (eng_sampler_params_check(&sp, &why) < 0) {
        fprintf(stderr, "orthod: %s\n", why);
        status = 2;
        goto out;
    }
    if (eng_sampler_new(&sp, hp->n_vocab, &smp) < 0)
        goto out;
    for (size_t i = 0; i < n_prompt; i++)
        eng_sampler_accept(smp, toks[i]);

    int32_t seq;
    eng_ctx_seq_new(c, &seq);
    // prefill in chunks of the batch size
    double t1 = cli_now();
    int32_t *seqs = malloc(sizeof *seqs * 512);
    if (!seqs)
        goto out;
    for (int i = 0; i < 512; i++)
        seqs[i] = seq;
    for (size_t done = 0; done < n_prompt;) {
        int32_t n = (int32_t)(n_prompt - done > 512 ? 512 : n_prompt - done);
        struct eng_batch b = {.n = n, .tokens = toks + done, .seq_id = seqs};
        if ((rc = eng_ctx_decode(c, &b)) < 0) {
            fprintf(stderr, "orthod: prefill failed: %s\n", err_str(rc));
            free(seqs);
            goto out;
        }
        done += (size_t)n;
    }
    double t_prefill = cli_now() - t1;

    // generate
    const struct eng_stop stop = {.strs = (const char *const *)&o->stop, .n = o->stop ? 1 : 0};
    size_t text_cap = 4096, text_len = 0, emitted = 0;
    const size_t piece_cap = detok_capacity(voc, o->special);
    piece = piece_cap ? malloc(piece_cap) : NULL;
    text = piece ? malloc(text_cap) : NULL;
    if (!text) {
        fprintf(stderr, "orthod: out of memory\n");
        free(seqs);
        goto out;
    }
    struct eng_detok dt;
    eng_detok_init(&dt, voc);
    dt.started = true;   // a completion continues the prompt: keep its first leading space
    int n_gen = 0;
    bool stopped = false;
    double t2 = cli_now();
    const float *logits = eng_ctx_logits(c, 0);
    while (text && n_gen < o->max_tokens && !stopped) {
        struct eng_logprobs lp;
        int32_t tok = eng_sampler_sample(smp, logits, o->logprobs ? &lp : NULL);
        if (eng_vocab_is_eog(voc, tok))
            break;
        eng_sampler_accept(smp, tok);
        n_gen++;
        size_t pn = eng_detok_push(voc, &dt, tok, o->special, piece, piece_cap);
        if (text_len + pn + 1 > text_cap) {
            char *nt = realloc(text, text_cap * 2 + pn);
            if (!nt)
                break;
            text = nt;
            text_cap = text_cap * 2 + pn;
        }
        memcpy(text + text_len, piece, pn);
        text_len += pn;
        if (o->logprobs) {
            fprintf(stderr, "token=%d logprob=%.4f top=[", tok, lp.logprob);
            for (int k = 0; k < lp.n_top; k++)
                fprintf(stderr, "%s%d:%.4f", k ? "," : "", lp.top_token[k], lp.top_logprob[k]);
            fprintf(stderr, "]\n");
        }
        int64_t at = eng_stop_find(&stop, text, text_len);
        size_t safe = at >= 0 ? (size_t)at : eng_stop_safe_len(&stop, text, text_len);
        if (safe > emitted) {
            fwrite(text + emitted, 1, safe - emitted, stdout);
            fflush(stdout);
            emitted = safe;
        }
        if (at >= 0) {
            stopped = true;
            break;
        }
        if (n_gen >= o->max_tokens)
            break;
        struct eng_batch b = {.n = 1, .tokens = &tok, .seq_id = &seq};
        if ((rc = eng_ctx_decode(c, &b)) < 0) {
            fprintf(stderr, "orthod: decode failed: %s\n", err_str(rc));
            free(seqs);
            goto out;
        }
        logits = eng_ctx_logits(c, 0);
    }
    if (!stopped && text) {
        char tail[16];
        size_t tn = eng_detok_flush(&dt, tail, sizeof tail);
        if (text_len > emitted)
            fwrite(text + emitted, 1, text_len - emitted, stdout);
        fwrite(tail, 1, tn, stdout);
    }
    fflush(stdout);
    double t_gen = cli_now() - t2;
    free(seqs);
    if (!o->quiet)
        fprintf(stderr,
                "\nstats: load=%.3fs prompt_tokens=%zu prefill=%.3fs (%.1f tok/s) generated=%d "
                "decode=%.3fs (%.1f tok/s) backend=\"%s\"\n",
                t_load, n_prompt, t_prefill, (double)n_prompt / t_prefill, n_gen, t_gen,
                n_gen > 0 ? (double)(n_gen - 1 > 0 ? n_gen - 1 : 1) / t_gen : 0.0,
                eng_backend_describe(be));
    status = 0;
out:
    free(piece);
    free(text);
    free(toks);
    eng_sampler_free(smp);
    eng_ctx_free(c);
    cli_model_close(be, m);
    return status;
}

int cmd_generate(int argc, char **argv)
{
    struct gen_opts o = {0};
    int status = opt_cmd_parse(&gen_cmd, &o, argc, argv);
    if (status < 0)
        status = run(&o);
    opt_free(gen_defs, N_DEFS, &o);
    return status;
}
