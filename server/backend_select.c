/* server/backend_select.c: device string -> backend. The CPU backend is linked in; the CUDA
 * backend is a module loaded on demand (gpu/loader.h), so orthod runs on every host and maps
 * the CUDA libraries only when a CUDA device is asked for. */
#include "backend_select.h"

#include "../gpu/loader.h"

#include <stdlib.h>
#include <string.h>

int backend_select_new(const char *device, int n_threads, const struct log_sink *log,
                       eng_backend_t **out, struct errbuf *eb)
{
    if (!device || strcmp(device, "cpu") == 0) {
        struct eng_cpu_params cp = {.n_threads = n_threads};
        if (log)
            cp.log = *log;
        int rc = eng_cpu_backend_new(&cp, out);
        if (rc < 0)
            return err_set(eb, rc, "cannot start the CPU backend with %d threads: %s", n_threads,
                           err_str(rc));
        return 0;
    }
    if (strncmp(device, "cuda", 4) == 0 && (device[4] == '\0' || device[4] == ':')) {
        int idx = 0;
        if (device[4] == ':') {
            char *end;
            long v = strtol(device + 5, &end, 10);
            if (end == device + 5 || *end || v < 0 || v > 63)
                return err_set(eb, ERR_INVAL, "--device: '%s' is not cuda:N", device);
            idx = (int)v;
        }
        return gpu_loader_backend_new(idx, log, out, eb);
    }
    return err_set(eb, ERR_INVAL, "--device: unknown device '%s' (use cpu, cuda or cuda:N)",
                   device);
}
