/* server/cli/tokenize.c: `orthod tokenize --model M [--no-bos] [--special] [--json-pieces]
 * TEXT`: prints the token ids of TEXT as a JSON array on one line, e.g. [1, 15043, 3186].
 * TEXT is plain text: "<s>" and other special-token texts are recognized only with
 * --special. --json-pieces prints [{"id": 1, "piece": "<s>"}, ...] instead, each piece as
 * a string, or as an array of byte values when it is not valid UTF-8 on its own (a byte
 * token that is part of a longer character). Only the vocabulary is loaded (GGUF file or
 * Hugging Face folder). Exit status: 0, 1 (model or text could not be processed), 2 (usage). */
#include "cmd.h"

#include "../../common/opt.h"
#include "../../engine/engine.h"
#include "../../engine/tok/unicode.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tok_opts {
    char *model;
    bool no_bos, special, json_pieces;
};

#define O(f) offsetof(struct tok_opts, f)
static const struct opt_def tok_defs[] = {
    {"model", OPT_STRING, O(model), NULL, 1, 0, NULL, OPT_F_REQUIRED, "PATH",
     "GGUF file or Hugging Face folder (only its tokenizer is read)"},
    {"no-bos", OPT_BOOL, O(no_bos), NULL, 1, 0, NULL, 0, NULL,
     "do not add the BOS/EOS tokens the vocabulary asks for"},
    {"special", OPT_BOOL, O(special), NULL, 1, 0, NULL, 0, NULL,
     "recognize special-token texts such as <s> in TEXT"},
    {"json-pieces", OPT_BOOL, O(json_pieces), NULL, 1, 0, NULL, 0, NULL,
     "print [{\"id\": N, \"piece\": TEXT}, ...] instead of the ids"},
};
#undef O
#define N_DEFS (sizeof tok_defs / sizeof tok_defs[0])

static const struct opt_cmd tok_cmd = {
    "tokenize",
    "usage: orthod tokenize --model PATH [--no-bos] [--special] [--json-pieces] TEXT\n"
    "Prints the token ids of TEXT as a JSON array on one line.",
    tok_defs, N_DEFS, "TEXT", "(give TEXT as one quoted argument)"};

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t bad;
        const int r = eng_unicode_check((const uint8_t *)s + i, n - i, &bad);
        if (r <= 0)
            return false;
        i += (size_t)r;
    }
    return true;
}

/* The piece as a JSON value: a string, or an array of byte values. */
static void print_piece(FILE *f, const char *s, size_t n)
{
    if (!valid_utf8(s, n)) {
        fputc('[', f);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%s%u", i ? ", " : "", (unsigned)(uint8_t)s[i]);
        fputc(']', f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c < 0x20 || c == 0x7F)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int run(const struct tok_opts *o, const char *text)
{
    eng_model_t *m = NULL;
    int32_t *ids = NULL;
    char *piece = NULL;
    int status = 1;
    struct errbuf eb = {{0}};
    const struct eng_model_params mp = {.vocab_only = true, .log = {.min = LOG_WARN}};
    int rc = eng_model_load(o->model, &mp, &m, &eb);
    if (rc < 0) {
        fprintf(stderr, "orthod tokenize: cannot load '%s': %s\n", o->model,
                eb.msg[0] ? eb.msg : err_str(rc));
        goto out;
    }
    const eng_vocab_t *v = eng_model_vocab(m);
    const size_t len = strlen(text);
    size_t n = 0;
    rc = eng_tokenize(v, text, len, !o->no_bos, o->special, NULL, 0, &n);
    if (rc == ERR_TOOLARGE && n == 0 && len > 0) {
        fprintf(stderr, "orthod tokenize: TEXT is longer than the %zu-byte limit\n",
                (size_t)ENG_TOKENIZE_MAX_BYTES);
        goto out;
    }
    if (rc < 0 && rc != ERR_TOOLARGE) {
        fprintf(stderr, "orthod tokenize: cannot tokenize TEXT: %s\n", err_str(rc));
        goto out;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids || (rc = eng_tokenize(v, text, len, !o->no_bos, o->special, ids, n, &n)) < 0) {
        fprintf(stderr, "orthod tokenize: cannot tokenize TEXT: %s\n",
                err_str(ids ? rc : ERR_NOMEM));
        goto out;
    }
    size_t pcap = 256;
    piece = malloc(pcap);
    if (!piece)
        goto out;
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        if (!o->json_pieces) {
            printf("%s%d", i ? ", " : "", ids[i]);
            continue;
        }
        int pn = eng_token_to_piece(v, ids[i], true, piece, pcap);
        if (pn >= 0 && (size_t)pn == pcap) {    // maybe truncated: ask with room to spare
            size_t want = pcap;
            while ((size_t)pn == want && want < ((size_t)1 << 30)) {
                want *= 4;
                char *p = realloc(piece, want);
                if (!p)
                    goto out;
                piece = p;
                pn = eng_token_to_piece(v, ids[i], true, piece, want);
            }
            pcap = want;
        }
        printf("%s{\"id\": %d, \"piece\": ", i ? ", " : "", ids[i]);
        print_piece(stdout, piece, pn > 0 ? (size_t)pn : 0);
        fputc('}', stdout);
    }
    fputs("]\n", stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    free(piece);
    free(ids);
    eng_model_free(m);
    return status;
}

int cmd_tokenize(int argc, char **argv)
{
    struct tok_opts o = {0};
    int status = opt_cmd_parse(&tok_cmd, &o, argc, argv);
    if (status < 0)
        status = run(&o, argv[0]);
    opt_free(tok_defs, N_DEFS, &o);
    return status;
}
