/* server/config.h: the daemon's configuration: one table (struct opt_def rows, common/opt.h)
 * read from an INI file through libinih and from --flags; flags win over the file.
 * Owns struct srv_config, the table, file loading (unknown keys are errors with file:line)
 * and `orthod config`. Adding a knob = one field + one row.
 * Thread: any (no global mutable state); a loaded config is read-only while serving. */
#ifndef ORTHOD_SERVER_CONFIG_H
#define ORTHOD_SERVER_CONFIG_H

#include "../common/err.h"
#include "../common/opt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct srv_config {
    char *config;             /* --config FILE (flag only) */
    /* model */
    char *model;              /* GGUF file or Hugging Face folder */
    char *model_alias;        /* id in /v1/models and "model" in requests */
    char *device;             /* cpu | cuda | cuda:N */
    int threads;              /* CPU threads, 0: all */
    /* engine (future issues read these) */
    int ctx_size;             /* tokens per sequence, 0: the model's */
    int parallel;             /* sequences decoded at once */
    int batch_size;           /* max tokens per engine step */
    char *kv_type;            /* KV cache format */
    int kv_block_size;        /* tokens per KV block */
    int max_queue;            /* requests waiting for a sequence slot before 503 */
    /* http */
    char *host;
    int port;                 /* 0: any free port (logged) */
    size_t max_body_bytes;
    size_t max_buffered_bytes;  /* body bytes held across all connections */
    double conn_timeout;      /* seconds a connection may take to deliver one request */
    int max_connections;
    char *admin_listen;       /* HOST:PORT for probes and metrics only; unset: none */
    double shutdown_timeout;  /* seconds SIGTERM waits for in-flight requests */
    char *api_key_file;       /* lines `KEY ROLE`; unset: no auth */
    char *tls_cert, *tls_key; /* PEM chain and key: HTTPS; unset: plain HTTP */
    char *log_level;          /* debug | info | warn | error */
};

/* The table, for --help and tests. */
const struct opt_def *srv_config_defs(size_t *n);

/* Sets defaults. Returns 0 (ERR_INVAL only if a default is broken: a bug). */
int srv_config_init(struct srv_config *c, struct errbuf *eb);
/* Frees the strings; the struct may be re-initialized. NULL ok. */
void srv_config_free(struct srv_config *c);

/* Applies the INI file at path over c. Errors name "path:line" and what to do:
 * unknown key, section header, duplicate key, bad value, line too long, unreadable file.
 * Returns 0, ERR_IO, ERR_INVAL, ERR_RANGE, ERR_NOTFOUND (unknown key) or ERR_NOMEM. */
int srv_config_load_file(struct srv_config *c, const char *path, struct errbuf *eb);
/* Same over an in-memory file (name is used in messages only). */
int srv_config_load_string(struct srv_config *c, const char *text, size_t len, const char *name,
                           struct errbuf *eb);

/* The whole sequence: defaults, then the file named by --config (if any), then the flags in
 * argv[0..argc) (no subcommand name), then srv_config_check. argv is not modified; a
 * non-option argument is an error. On failure c holds nothing (no need to free) and eb
 * names the flag or file:line. Returns 0 or a negative ERR_*. */
int srv_config_from_args(struct srv_config *c, int argc, char **argv, struct errbuf *eb);
/* The command line of `orthod serve` / `orthod config`: --help prints cmd's usage and
 * returns 0; else srv_config_from_args, where a failure prints "orthod NAME: <what>" to
 * stderr and returns 2 (c holds nothing then). -1: c is loaded, the command goes on. */
int srv_config_from_cmd(const struct opt_cmd *cmd, struct srv_config *c, int argc, char **argv);

/* Cross-field checks after loading (device syntax, ...). Returns 0 or ERR_INVAL. */
int srv_config_check(const struct srv_config *c, struct errbuf *eb);

/* Splits "HOST:PORT" or "[V6]:PORT" (host into host[cap]). ERR_INVAL with a message. */
int srv_config_split_listen(const char *s, char *host, size_t cap, int *port, struct errbuf *eb);

/* Writes the effective configuration as an INI file (every key, with its help as a comment). */
void srv_config_print(const struct srv_config *c, FILE *f);

#endif
