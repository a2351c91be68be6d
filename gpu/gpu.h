/* gpu/gpu.h: the CUDA backend's constructor and the module interface (C linkage; the rest
 * of gpu/ is private).
 * Owns: nothing outside gpu/ sees a device pointer type; the backend is used through
 * engine/backend.h like any other. orthod itself does not link this code: it is built as
 * the module liborthod_cuda.so, which gpu/loader.h loads when a CUDA device is asked for
 * (the tests and bench_gpu link it directly). */
#ifndef ORTHOD_GPU_GPU_H
#define ORTHOD_GPU_GPU_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/backend.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices visible (0 when there is no driver or no device). */
int gpu_device_count(void);

/* Creates the CUDA backend on device `device`. ERR_NOTFOUND when no such device (eb says
 * which devices exist), ERR_GPU on driver/runtime errors (eb carries cudaGetErrorString).
 * log: optional sink (copied). */
int gpu_backend_cuda_new(int device, const struct log_sink *log, eng_backend_t **out,
                         struct errbuf *eb);

/* --- the module ---------------------------------------------------------------------------
 * liborthod_cuda.so exports one symbol, GPU_MODULE_SYMBOL, a function returning this table.
 * The module carries its own copy of the engine code it uses (tensor helpers, errors, logs),
 * so the two sides share only the backend table and the structs in engine/backend*.h: the
 * loader refuses a module whose ABI number, struct sizes or build id differ from its own. */
#define GPU_MODULE_ABI 1
#define GPU_MODULE_SYMBOL "orthod_gpu_module_v1"
#define GPU_MODULE_FILE "liborthod_cuda.so"

struct gpu_module {
    uint32_t abi;                /* GPU_MODULE_ABI */
    uint32_t n_sizes;            /* entries of sizes[] */
    const size_t *sizes;         /* GPU_MODULE_SIZES as the module was compiled */
    const char *build;           /* GPU_MODULE_BUILD of the module's build */
    int cuda_version;            /* CUDART_VERSION it was compiled against (13000: 13.0) */
    int emulated;                /* 1: the CPU emulator (gpu/emu, tests only) */
    int (*device_count)(void);
    int (*backend_new)(int device, const struct log_sink *log, eng_backend_t **out,
                       struct errbuf *eb);
};

/* The structs both sides of the module boundary use (engine/backend_impl.h). */
#define GPU_MODULE_SIZES                                                                      \
    {sizeof(struct eng_backend_ops), sizeof(struct eng_backend), sizeof(struct eng_step),     \
     sizeof(eng_tensor_t), sizeof(eng_buffer_t), sizeof(eng_kv_storage_t),                    \
     sizeof(struct eng_rope_params), sizeof(struct log_sink), sizeof(struct errbuf)}
/* orthod's version and git revision at configure time (orthod_config.h) */
#define GPU_MODULE_BUILD "orthod " ORTHOD_VERSION " git " ORTHOD_GIT_REV
/* GPU_MODULE_BUILD as the module was built (gpu/module_id.c: a C file, so that it follows
 * the configuration; meson 1.0 tracks no header dependencies of .cu files) */
extern const char gpu_module_build_id[];

const struct gpu_module *orthod_gpu_module_v1(void);

#ifdef __cplusplus
}
#endif

#endif
