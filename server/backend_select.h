/* server/backend_select.h: a compute backend from a device string.
 * Owns the one place that knows which devices were compiled in ("cpu" always; "cuda",
 * "cuda:N" when orthod was built with -Dcuda=enabled/auto and nvcc). */
#ifndef ORTHOD_SERVER_BACKEND_SELECT_H
#define ORTHOD_SERVER_BACKEND_SELECT_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/backend.h"

/* device: "cpu", "cuda" (= "cuda:0"), "cuda:N". n_threads: CPU worker threads (<= 0: all
 * CPUs). ERR_UNSUPPORTED when the device was not compiled in, ERR_NOTFOUND / ERR_GPU when
 * it is absent; eb says what to do. */
int backend_select_new(const char *device, int n_threads, const struct log_sink *log,
                       eng_backend_t **out, struct errbuf *eb);

#endif
