/* gpu/loader.c: finds, loads and checks the CUDA backend module (gpu/loader.h). Plain C and
 * libdl: no CUDA header, no CUDA library. */
#include "loader.h"

#include "../common/text.h"
#include "../engine/backend_impl.h"
#include "gpu.h"
#include "orthod_config.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ORTHOD_MODULE_RELDIR
#define ORTHOD_MODULE_RELDIR "../lib/orthod"
#endif

#define N_CANDIDATES 4

struct candidates {
    char path[N_CANDIDATES][PATH_MAX];
    int n;
};

static void add_candidate(struct candidates *c, const char *dir, const char *sub)
{
    char p[PATH_MAX];
    int w = sub[0] == '/' ? snprintf(p, sizeof p, "%s/%s", sub, GPU_MODULE_FILE)
                          : snprintf(p, sizeof p, "%s%s%s/%s", dir, sub[0] ? "/" : "", sub,
                                     GPU_MODULE_FILE);
    if (w < 0 || (size_t)w >= sizeof p || c->n == N_CANDIDATES)
        return;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->path[i], p) == 0)
            return;
    memcpy(c->path[c->n++], p, (size_t)w + 1);
}

/* The search list of loader.h. */
static void candidates_find(struct candidates *c)
{
    c->n = 0;
    const char *env = getenv("ORTHOD_CUDA_MODULE");
    if (env && *env) {
        snprintf(c->path[0], sizeof c->path[0], "%s", env);
        c->n = 1;
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    add_candidate(c, exe, "");
    add_candidate(c, exe, "../lib/orthod");
    add_candidate(c, exe, ORTHOD_MODULE_RELDIR);
}

/* "a, b, c" of the candidates, cut to fit out[cap]. */
static const char *candidates_list(const struct candidates *c, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < c->n && o + 1 < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", c->path[i]);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return c->n ? out : "(the executable's folder is unknown: /proc/self/exe is unreadable)";
}

static int check_module(const struct gpu_module *m, const char *path, struct errbuf *eb)
{
    static const size_t ours[] = GPU_MODULE_SIZES;
    const uint32_t n_ours = (uint32_t)(sizeof ours / sizeof ours[0]);
    /* abi is the first field in every version: nothing else is read when it differs */
    if (!m || m->abi != GPU_MODULE_ABI)
        return err_set(eb, ERR_UNSUPPORTED, "%s has module ABI %u, this orthod %d: install the "
                       "module and the binary from the same build (deploy/install.sh installs "
                       "both)", path, m ? m->abi : 0, GPU_MODULE_ABI);
    if (m->n_sizes != n_ours || !m->sizes || memcmp(m->sizes, ours, sizeof ours) != 0 ||
        !m->device_count || !m->backend_new)
        return err_set(eb, ERR_UNSUPPORTED, "%s does not match this orthod's engine structures "
                       "(a module from other sources, or stale CUDA objects: rebuild it with "
                       "the binary, e.g. touch gpu/*.cu && ninja)", path);
    if (m->build && strcmp(m->build, GPU_MODULE_BUILD) == 0)
        return 0;
    char build[96];
    const char *b = m->build ? m->build : "?";
    text_escape(build, sizeof build, b, strnlen(b, 200), TEXT_MESSAGE);
    return err_set(eb, ERR_UNSUPPORTED, "%s was built from another orthod (module: %s; this "
                   "orthod: %s): install the module and the binary from the same build "
                   "(deploy/install.sh installs both)", path, build, GPU_MODULE_BUILD);
}

int gpu_loader_backend_new(int device, const struct log_sink *log, eng_backend_t **out,
                           struct errbuf *eb)
{
    struct candidates c;
    candidates_find(&c);
    int found = -1;
    for (int i = 0; i < c.n && found < 0; i++)
        if (access(c.path[i], F_OK) == 0)
            found = i;
    if (found < 0) {
        char list[320];
        candidates_list(&c, list, sizeof list);
        if (!ORTHOD_HAVE_CUDA)
            return err_set(eb, ERR_UNSUPPORTED,
                           "cuda:%d: this orthod was built without CUDA and no CUDA module (%s) "
                           "was found (looked for %s): rebuild with -Dcuda=enabled (needs nvcc), "
                           "or use --device cpu", device, GPU_MODULE_FILE, list);
        return err_set(eb, ERR_UNSUPPORTED,
                       "cuda:%d: the CUDA module was not found (looked for %s): install it with "
                       "deploy/install.sh (it goes beside the binary's ../lib/orthod/), set "
                       "ORTHOD_CUDA_MODULE to its path, or use --device cpu", device, list);
    }
    char real[PATH_MAX];
    const char *path = realpath(c.path[found], real) ? real : c.path[found];
    /* RTLD_NOW: a missing library or symbol is reported here, not at the first call */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *why = dlerror();
        return err_set(eb, ERR_IO,
                       "cuda:%d: cannot load %s: %s (the CUDA module needs the CUDA%s%s runtime "
                       "and cuBLAS: install them and add their folder to ld.so.conf or "
                       "LD_LIBRARY_PATH, or use --device cpu)", device, path,
                       why ? why : "unknown error", ORTHOD_CUDA_VERSION[0] ? " " : "",
                       ORTHOD_CUDA_VERSION);
    }
    const struct gpu_module *(*entry)(void) = NULL;
    void *sym = dlsym(h, GPU_MODULE_SYMBOL);
    if (sym)
        memcpy(&entry, &sym, sizeof entry);   /* POSIX: object to function pointer */
    int rc;
    if (!entry) {
        rc = err_set(eb, ERR_UNSUPPORTED, "cuda:%d: %s is not an orthod CUDA module (it has no "
                     "%s): check ORTHOD_CUDA_MODULE and the install", device, path,
                     GPU_MODULE_SYMBOL);
        goto done;
    }
    const struct gpu_module *m = entry();
    if ((rc = check_module(m, path, eb)) < 0) {
        err_prefix(eb, rc, "cuda:%d", device);
        goto done;
    }
    if ((rc = m->backend_new(device, log, out, eb)) == 0)
        log_emit(log, m->emulated ? LOG_WARN : LOG_INFO,
                 "msg=\"CUDA backend module loaded%s\" path=\"%s\" cuda=%d.%d", m->emulated ?
                 ": this is the CPU emulator of the CUDA kernels, for tests only" : "", path,
                 m->cuda_version / 1000, m->cuda_version % 1000 / 10);
done:
    dlclose(h);   /* RTLD_NODELETE: the code stays mapped for the backend made from it */
    return rc;
}
