/* gpu/microbench.h: measurements and knobs for bench/bench_gpu.c (gpu/ and bench/; C linkage).
 * Owns: the ceilings the benchmark reports against (device-to-device copy bandwidth, cuBLAS
 * F16 GEMM throughput), timing of one matmul path, the graph switch and the backend's
 * counters. Timing uses CUDA events on the backend's stream. Errors: 0 or ERR_*. */
#ifndef ORTHOD_GPU_MICROBENCH_H
#define ORTHOD_GPU_MICROBENCH_H

#include "../engine/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gpu_microbench_path {
    GPU_MICROBENCH_GEMV = 1,      /* the GEMV kernel (R <= 4) */
    GPU_MICROBENCH_CUBLAS = 3,    /* cuBLAS GemmEx */
};

struct gpu_stats {
    uint64_t graph_launches, graph_captures, eager_steps, fused_records;
    size_t scratch_bytes, weight_bytes, kv_bytes, compute_bytes;
    int n_sm;
};

/* Copies `bytes` device-to-device `iters` times; *gbps counts bytes read + written. */
int gpu_microbench_copy(eng_backend_t *be, size_t bytes, int iters, double *gbps);
/* out (R, N) = x (R, K) @ W^T with W of dtype wt (F16, BF16 or F32) through `path`;
 * *us is the mean time per call. */
int gpu_microbench_matmul(eng_backend_t *be, enum eng_dtype wt, enum gpu_microbench_path path, int R,
                     int K, int N, int iters, double *us);
/* Graph replay of repeated steps on (default, unless ORTHOD_CUDA_GRAPHS=0) or off. */
void gpu_backend_set_graphs(eng_backend_t *be, bool on);
/* Fusion of deferred records (on by default unless ORTHOD_CUDA_FUSE=0; needs graphs on). */
void gpu_backend_set_fuse(eng_backend_t *be, bool on);
void gpu_backend_stats(eng_backend_t *be, struct gpu_stats *out);

#ifdef __cplusplus
}
#endif

#endif
