/* tests/fuzz/fuzz_train_data.c: libFuzzer target for training datasets (engine/train/data.c).
 * Arbitrary bytes go through the upload check (eng_train_data_check_jsonl) and the loader
 * in every format and chat template, with the Llama SPM vocabulary. Checked: no crash or
 * sanitizer report; the check and the loader agree on whether a JSONL file is well formed
 * (the loader may still refuse a well-formed file whose samples are cut to nothing); every
 * loaded sample has >= 2 tokens, ids in range, and at least one supervised token. */
#include "../../engine/format/gguf.h"
#include "../../engine/tok/tokenizer.h"
#include "../../engine/train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ORTHOD_SHARED_DEFAULT
#define ORTHOD_SHARED_DEFAULT "../shared"
#endif

static eng_gguf_t *file;
static eng_vocab_t *vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("ORTHOD_SHARED");
    if (!dir || !*dir)
        dir = ORTHOD_SHARED_DEFAULT;
    char path[1024];
    struct errbuf eb = {{0}};
    snprintf(path, sizeof path, "%s/models/ggml-vocab-llama-spm.gguf", dir);
    if (eng_gguf_open(path, &file, &eb) < 0 || eng_vocab_from_gguf(file, &vocab, &eb) < 0) {
        fprintf(stderr, "fuzz_train_data: %s: %s (set ORTHOD_SHARED)\n", path, eb.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *text = (const char *)data;
    static const char *const tmpl[] = {"chatml", "llama2", "llama3", "zephyr", "plain"};
    const int which = size ? data[0] % 8 : 0;
    struct errbuf eb;
    int64_t n_lines = 0;
    int crc = eng_train_data_check_jsonl(text, size, ENG_DATA_AUTO, &n_lines, &eb);
    struct eng_data_opts o;
    eng_data_opts_default(&o);
    o.max_seq_len = 64;
    o.format = which < 5 ? ENG_DATA_AUTO : which == 5 ? ENG_DATA_TEXT
                                                      : (enum eng_data_format)(which - 5);
    o.chat_template = tmpl[which % 5];
    eng_train_data_t *d = NULL;
    int rc = eng_train_data_load_mem(vocab, "fuzz.jsonl", text, size, &o, &d, &eb);
    if (o.format == ENG_DATA_AUTO && rc == 0 && crc != 0)
        abort();   // the loader accepted what the upload check refused
    if (rc == 0) {
        struct eng_train_data_stats s;
        eng_train_data_stats(d, &s);
        for (int64_t i = 0; i < s.n_samples; i++) {
            const int32_t *tok;
            const uint8_t *mask;
            int32_t n;
            if (eng_train_data_get(d, i, &tok, &mask, &n) < 0 || n < 2 || n > 64)
                abort();
            int sup = 0;
            for (int32_t j = 0; j < n; j++) {
                if (tok[j] < 0 || tok[j] >= eng_vocab_n_tokens(vocab))
                    abort();
                sup += j > 0 && mask[j];
            }
            if (!sup)
                abort();
        }
        eng_train_data_free(d);
    }
    return 0;
}
