/* tests/mkmodel.c: test tool: writes a random-weight Llama GGUF (eng_random_model_build).
 * usage: mkmodel OUT.gguf --shape SHAPE --dtype f32|f16|bf16|q8_0|q4_0 [--seed S]
 *                [--std X] [--norm-std X] */
#include "../engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mkmodel OUT.gguf --shape SHAPE --dtype TYPE [--seed S] [--std X] "
                        "[--norm-std X]\n");
        return 2;
    }
    struct eng_random_model rm = {.dtype = ENG_DTYPE_F32, .std = 0.02f, .seed = 1, .n_threads = 2};
    snprintf(rm.shape, sizeof rm.shape, "tiny");
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--shape"))
            snprintf(rm.shape, sizeof rm.shape, "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) {
            if (eng_dtype_parse(argv[i + 1], &rm.dtype) < 0) {
                fprintf(stderr, "mkmodel: bad --dtype %s\n", argv[i + 1]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--seed"))
            rm.seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--std"))
            rm.std = strtof(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--norm-std"))
            rm.norm_std = strtof(argv[i + 1], NULL);
        else {
            fprintf(stderr, "mkmodel: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    struct errbuf eb = {{0}};
    eng_gguf_t *g;
    if (eng_random_model_build(&rm, &g, &eb) < 0 || eng_gguf_write(g, argv[1], &eb) < 0) {
        fprintf(stderr, "mkmodel: %s\n", eb.msg);
        return 1;
    }
    eng_gguf_free(g);
    return 0;
}
