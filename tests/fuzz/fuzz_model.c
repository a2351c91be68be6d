/* tests/fuzz/fuzz_model.c: libFuzzer target for the model loader on top of the GGUF reader:
 * hyper-parameter and tensor-shape validation (engine/model.c), the vocab, and a short
 * forward pass over a small context when the file is accepted. Any accepted file must run
 * without a sanitizer report; any rejected one must say why. */
#include "../../engine/engine.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    if (eng_gguf_open_mem(data, size, &g, &eb) < 0)
        return 0;
    eng_backend_t *be = NULL;
    struct eng_cpu_params cp = {.n_threads = 1, .log = {.min = LOG_ERROR + 1}};
    if (eng_cpu_backend_new(&cp, &be) < 0) {
        eng_gguf_free(g);
        return 0;
    }
    eng_model_t *m = NULL;
    struct eng_model_params mp = {.be = be, .log = cp.log};
    int rc = eng_model_from_gguf(g, &mp, &m, &eb);   // takes g
    if (rc < 0) {
        if (!eb.msg[0] && rc != ERR_NOMEM)
            __builtin_trap();          // every rejection names its reason
        eng_backend_free(be);
        return 0;
    }
    const struct eng_hparams *hp = eng_model_hparams(m);
    struct eng_ctx_params p;
    eng_ctx_params_default(&p);
    p.n_ctx = 8;
    p.n_batch = 4;
    p.n_out_max = 4;
    eng_ctx_t *c = NULL;
    if (eng_ctx_new(m, &p, &c, &eb) == 0) {
        int32_t s, toks[4], sids[4];
        eng_ctx_seq_new(c, &s);
        for (int i = 0; i < 4; i++) {
            toks[i] = (int32_t)((size > (size_t)i ? data[i] : 0) % (uint32_t)hp->n_vocab);
            sids[i] = s;
        }
        struct eng_batch b = {.n = 4, .tokens = toks, .seq_id = sids};
        if (eng_ctx_decode(c, &b) == 0) {
            const float *lg = eng_ctx_logits(c, 0);
            volatile float sink = lg[0] + lg[hp->n_vocab - 1];
            (void)sink;
        }
        eng_ctx_free(c);
    }
    // the tokenizer on a piece of the file, both ways
    const eng_vocab_t *v = eng_model_vocab(m);
    int32_t ids[64];
    size_t n = 0;
    size_t tl = size < 64 ? size : 64;
    if (eng_tokenize(v, (const char *)data, tl, true, true, ids, 64, &n) == 0) {
        char out[512];
        eng_detokenize(v, ids, n, true, out, sizeof out);
    }
    eng_model_free(m);
    eng_backend_free(be);
    return 0;
}
