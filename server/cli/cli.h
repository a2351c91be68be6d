/* server/cli/cli.h: what the engine-only subcommands (generate, bench) share: loading a
 * model (a file, a Hugging Face folder, or a random model
 * of a named shape) on a device, and small timing helpers. */
#ifndef ORTHOD_SERVER_CLI_CLI_H
#define ORTHOD_SERVER_CLI_CLI_H

#include "../../engine/engine.h"

struct cli_model_spec {
    const char *model;        /* path, or NULL when random_shape is set */
    const char *random_shape; /* eng_random_model shape */
    const char *dtype;        /* random model dtype ("f16") */
    uint64_t seed;
    const char *save;         /* random model: also written to this GGUF file (NULL: not) */
    const char *device;       /* "cpu", "cuda:0" */
    int threads;              /* <= 0: all CPUs */
};

/* Creates the backend and loads the model; on failure prints one line to stderr and returns
 * the exit status to use (1). On success returns 0. */
int cli_model_open(const struct cli_model_spec *spec, eng_backend_t **be, eng_model_t **m);
void cli_model_close(eng_backend_t *be, eng_model_t *m);

double cli_now(void);             /* monotonic seconds */
size_t cli_peak_rss_bytes(void);  /* VmHWM of this process (0 if unknown) */

#endif
