/* server/server.h: struct srv, the daemon's composition root: the loop, HTTP, routes,
 * auth, metrics, the model (loaded on its own thread), signals, watchdog and the
 * start/drain/stop order. Only server/ includes this.
 * Thread: the loop thread owns everything here, except the fields marked (load thread),
 * which that thread writes before uv_async_send and the loop reads after joining it. */
#ifndef ORTHOD_SERVER_SERVER_H
#define ORTHOD_SERVER_SERVER_H

#include "../common/err.h"
#include "../common/log.h"
#include "../engine/engine.h"
#include "auth.h"
#include "config.h"
#include "http.h"
#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SRV_FD_RESERVE 64          /* descriptors the daemon holds besides connections */
#define SRV_ADMIN_MAX_CONNECTIONS 16    /* on admin-listen */

struct srv {
    const struct srv_config *cfg;   /* borrowed; outlives the srv */
    struct log_sink log;
    uv_loop_t loop;
    srv_http_t *http;
    srv_http_t *admin_http;         /* admin-listen: probes and metrics only, or NULL */
    srv_metrics_t *metrics;
    srv_auth_t *auth;               /* NULL: no api-key-file, /v1 is open */
    struct srv_opfile_job *reload_job; /* keys/certificate reload in progress (SIGHUP) */
    bool reload_again;              /* a SIGHUP came during it: read the files once more */
    /* handles */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog;            /* WATCHDOG=1 at half of WatchdogSec */
    uv_timer_t drain_deadline;      /* shutdown-timeout */
    uv_async_t loaded;              /* the load thread is done */
    uv_thread_t load_thread;
    bool load_running;
    /* model (load thread) */
    eng_backend_t *be;
    eng_model_t *model;
    int load_rc;
    struct errbuf load_eb;
    double load_seconds;
    /* state (loop) */
    struct eng_model_info info;
    char model_id[257];             /* --model-alias or the model's name */
    int64_t loaded_at;              /* unix seconds */
    bool ready, draining, stopping;
    int exit_code;
};

/* Validates the config, loads API keys, binds the listening socket and starts the model
 * load thread. cfg and log are borrowed for the life of the srv. Errors: ERR_IO (bind, key
 * file), ERR_INVAL (key file content), ERR_NOMEM; eb says what to do. */
int srv_new(const struct srv_config *cfg, const struct log_sink *log, struct srv **out,
            struct errbuf *eb);
/* Runs the loop until the daemon stops. Returns the process exit status: 0 after a drain,
 * 1 when the model failed to load. */
int srv_run(struct srv *s);
/* Frees everything (waits for a model load still in progress). NULL ok. */
void srv_free(struct srv *s);

/* Starts the drain (as SIGTERM does). */
void srv_drain(struct srv *s);

#endif
