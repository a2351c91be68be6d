/* gpu/loader.h: the CUDA backend from its module, loaded at run time.
 * Owns: finding liborthod_cuda.so, loading it (dlopen) and checking that it was built with
 * this orthod. Nothing here links CUDA: a host without the CUDA libraries runs orthod on
 * the CPU and pays nothing for CUDA; the libraries are mapped only when a CUDA device is
 * asked for. Search order (the first file that exists is the one loaded):
 *   1. $ORTHOD_CUDA_MODULE (a file path; nothing else is tried when it is set),
 *   2. the folder of the running executable (/proc/self/exe): the build tree, or an
 *      install that keeps the module next to the binary,
 *   3. <executable's folder>/../lib/orthod/ (deploy/install.sh: /usr/local/lib/orthod/),
 *   4. <executable's folder>/ORTHOD_MODULE_RELDIR (meson install: bindir -> libdir/orthod).
 * The module stays mapped until the process exits (RTLD_NODELETE: the CUDA runtime must not
 * be unloaded under its own exit handlers). Thread: any, but meant for startup. */
#ifndef ORTHOD_GPU_LOADER_H
#define ORTHOD_GPU_LOADER_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/backend.h"

/* Loads the module and creates the CUDA backend on `device` (gpu_backend_cuda_new).
 * Errors, each with a message in eb that says what to do:
 *   ERR_UNSUPPORTED  no module found (eb lists where it looked), or it is not one
 *                    (no entry symbol), or it was built for another orthod (ABI, struct
 *                    sizes or build id differ);
 *   ERR_IO           the module exists but cannot be loaded: eb carries dlerror(), which
 *                    names the missing library (libcublas.so.13: cannot open ...);
 *   others           from the backend itself (ERR_NOTFOUND: no such device, ERR_GPU).
 * log: optional sink (copied by the backend); the loaded path is logged at info. */
int gpu_loader_backend_new(int device, const struct log_sink *log, eng_backend_t **out,
                           struct errbuf *eb);

#endif
