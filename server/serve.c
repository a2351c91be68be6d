/* server/serve.c: `orthod serve`: configuration in, exit status out. Everything else is in
 * server.c (struct srv). */
#include "cli/cmd.h"

#include "config.h"
#include "server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int cmd_serve(int argc, char **argv)
{
    struct opt_cmd cmd = {
        "serve", "usage: orthod serve --model PATH [--host 127.0.0.1] [--port 8080] "
        "[--config FILE] [flags]\nServes the model over an OpenAI-compatible HTTP API. "
        "SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the API keys.", NULL, 0, NULL, NULL};
    cmd.defs = srv_config_defs(&cmd.n);
    struct srv_config cfg;
    int st = srv_config_from_cmd(&cmd, &cfg, argc, argv);
    if (st >= 0)
        return st;
    if (!cfg.model) {
        fprintf(stderr, "orthod serve: --model is required (a GGUF file, e.g. "
                        "../shared/models/stories260K.gguf)\n");
        srv_config_free(&cfg);
        return 2;
    }
    struct log_sink log = {NULL, NULL, LOG_INFO};
    enum log_level lvl;
    if (log_level_parse(cfg.log_level, &lvl) == 0)
        log.min = lvl;
    // a client that disconnects mid-write must not kill the daemon
    signal(SIGPIPE, SIG_IGN);
    struct srv *s = NULL;
    struct errbuf eb = {{0}};
    int rc = srv_new(&cfg, &log, &s, &eb);
    if (rc < 0) {
        log_error(&log, "msg=\"cannot start\" error=%s detail=\"%s\"", err_name(rc),
                  eb.msg[0] ? eb.msg : err_str(rc));
        srv_config_free(&cfg);
        return 1;
    }
    int status = srv_run(s);
    // the drain is over: a late SIGTERM/SIGINT (systemd, a second Ctrl-C) must not turn a
    // clean exit into death by signal once srv_free removes the handlers
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    srv_free(s);
    // srv_free put the default actions back; other threads (libuv's pool) must not die of them
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    log_info(&log, "msg=exit status=%d", status);
    srv_config_free(&cfg);
    return status;
}
