/* server/cli/cli.c: model loading and timing for the engine-only subcommands. */
#include "cli.h"

#include "../backend_select.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t cli_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

int cli_model_open(const struct cli_model_spec *spec, eng_backend_t **be, eng_model_t **m)
{
    struct errbuf eb = {{0}};
    struct log_sink log = {.min = LOG_WARN};
    int rc = backend_select_new(spec->device, spec->threads, &log, be, &eb);
    if (rc < 0) {
        fprintf(stderr, "orthod: %s\n", eb.msg);
        return 1;
    }
    struct eng_model_params mp = {.be = *be, .log = log};
    if (spec->random_shape) {
        struct eng_random_model rm = {.std = 0.02f, .seed = spec->seed,
                                      .n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN)};
        snprintf(rm.shape, sizeof rm.shape, "%s", spec->random_shape);
        if (eng_dtype_parse(spec->dtype ? spec->dtype : "f32", &rm.dtype) < 0) {
            fprintf(stderr, "orthod: --dtype: '%s' is not one of f32, f16, bf16, q8_0, q4_0\n",
                    spec->dtype);
            eng_backend_free(*be);
            return 2;
        }
        eng_gguf_t *g = NULL;
        if ((rc = eng_random_model_build(&rm, &g, &eb)) >= 0 && spec->save &&
            (rc = eng_gguf_write(g, spec->save, &eb)) < 0)
            eng_gguf_free(g);   // (eng_model_from_gguf owns g from here on)
        if (rc < 0 || (rc = eng_model_from_gguf(g, &mp, m, &eb)) < 0) {
            fprintf(stderr, "orthod: random model '%s': %s\n", spec->random_shape,
                    eb.msg[0] ? eb.msg : err_str(rc));
            eng_backend_free(*be);
            return 1;
        }
        return 0;
    }
    if ((rc = eng_model_load(spec->model, &mp, m, &eb)) < 0) {
        fprintf(stderr, "orthod: %s\n", eb.msg[0] ? eb.msg : err_str(rc));
        eng_backend_free(*be);
        return 1;
    }
    return 0;
}

void cli_model_close(eng_backend_t *be, eng_model_t *m)
{
    eng_model_free(m);
    eng_backend_free(be);
}
