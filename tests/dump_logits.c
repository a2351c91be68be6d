/* tests/dump_logits.c: test tool: runs a model over given token ids and writes the logits of
 * every position as raw little-endian float32 (n_tokens x n_vocab, row-major), so an
 * independent reference (tests/ref/llama_ref.py) can compare them. The backend's one-line
 * description ("backend: cpu threads=2 kernels=avx512 ...") goes to stderr.
 * usage: dump_logits MODEL OUT.f32 --tokens 1,2,3 [--threads N] [--device cpu]
 *                    [--kv f32|f16] [--batch-split K] */
#include "../engine/engine.h"
#include "../server/backend_select.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dump_logits MODEL OUT.f32 --tokens 1,2,3 [--threads N] "
                        "[--device cpu] [--kv f32|f16] [--batch-split K]\n");
        return 2;
    }
    const char *model = argv[1], *outp = argv[2], *device = "cpu", *kv = "f32", *tokstr = NULL;
    int threads = 1, split = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokens")) tokstr = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--kv")) kv = argv[i + 1];
        else if (!strcmp(argv[i], "--batch-split")) split = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "dump_logits: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (!tokstr) {
        fprintf(stderr, "dump_logits: --tokens is required\n");
        return 2;
    }
    int32_t toks[8192];
    int n = 0;
    for (char *p = (char *)tokstr; *p && n < 8192;) {
        toks[n++] = (int32_t)strtol(p, &p, 10);
        if (*p == ',')
            p++;
    }
    struct errbuf eb = {{0}};
    eng_backend_t *be;
    if (backend_select_new(device, threads, NULL, &be, &eb) < 0) {
        fprintf(stderr, "dump_logits: %s\n", eb.msg);
        return 1;
    }
    fprintf(stderr, "backend: %s\n", eng_backend_describe(be));
    eng_model_t *m;
    struct eng_model_params mp = {.be = be};
    if (eng_model_load(model, &mp, &m, &eb) < 0) {
        fprintf(stderr, "dump_logits: %s\n", eb.msg);
        return 1;
    }
    const int32_t V = eng_model_hparams(m)->n_vocab;
    struct eng_ctx_params cp;
    eng_ctx_params_default(&cp);
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.n_out_max = n;
    if (eng_kv_format_parse(kv, &cp.kv_format) < 0) {
        fprintf(stderr, "dump_logits: --kv must be f32 or f16\n");
        return 2;
    }
    eng_ctx_t *c;
    if (eng_ctx_new(m, &cp, &c, &eb) < 0) {
        fprintf(stderr, "dump_logits: %s\n", eb.msg);
        return 1;
    }
    int32_t seq;
    eng_ctx_seq_new(c, &seq);
    FILE *f = fopen(outp, "wb");
    if (!f) {
        perror(outp);
        return 1;
    }
    int32_t *sids = malloc(sizeof *sids * (size_t)n);
    bool *want = malloc(sizeof *want * (size_t)n);
    for (int i = 0; i < n; i++) {
        sids[i] = seq;
        want[i] = true;
    }
    // split the tokens into chunks so that later chunks attend to earlier ones via the cache
    int chunk = split > 0 ? (n + split - 1) / split : n;
    for (int done = 0; done < n;) {
        int k = n - done < chunk ? n - done : chunk;
        struct eng_batch b = {.n = k, .tokens = toks + done, .seq_id = sids, .want_logits = want};
        int rc = eng_ctx_decode(c, &b);
        if (rc < 0) {
            fprintf(stderr, "dump_logits: decode failed: %s\n", err_str(rc));
            return 1;
        }
        for (int i = 0; i < k; i++)
            fwrite(eng_ctx_logits(c, i), sizeof(float), (size_t)V, f);
        done += k;
    }
    fclose(f);
    free(sids);
    free(want);
    eng_ctx_free(c);
    eng_model_free(m);
    eng_backend_free(be);
    return 0;
}
