/* server/backend_select.h: a compute backend from a device string.
 * Owns the mapping of device names to backends: "cpu" (linked in), "cuda" / "cuda:N" (the
 * CUDA module, loaded at run time by gpu/loader.h). */
#ifndef ORTHOD_SERVER_BACKEND_SELECT_H
#define ORTHOD_SERVER_BACKEND_SELECT_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/backend.h"

/* device: "cpu", "cuda" (= "cuda:0"), "cuda:N". n_threads: CPU worker threads (<= 0: all
 * CPUs). For CUDA: ERR_UNSUPPORTED when no usable module was found, ERR_IO when it cannot be
 * loaded (a CUDA library is missing: eb names it), ERR_NOTFOUND / ERR_GPU when the device is
 * absent or fails; eb says what to do. */
int backend_select_new(const char *device, int n_threads, const struct log_sink *log,
                       eng_backend_t **out, struct errbuf *eb);

#endif
