/* gpu/gpu.h: the CUDA backend's constructor (C linkage; the rest of gpu/ is private).
 * Owns: nothing outside gpu/ sees a device pointer type; the backend is used through
 * engine/backend.h like any other. */
#ifndef ORTHOD_GPU_GPU_H
#define ORTHOD_GPU_GPU_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/backend.h"

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

#ifdef __cplusplus
}
#endif

#endif
