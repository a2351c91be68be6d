/* server/config.c: the config table, INI loading through libinih, flag merging, and
 * `orthod config`. The file is read once into memory (size-capped) and handed to inih one
 * line at a time by our reader, which is how every message knows its line number. */
#include "config.h"

#include "cli/cmd.h"

#include <errno.h>
#include <stdarg.h>
#include <ini.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_FILE_BYTES (1u << 20)
#define CONFIG_MAX_STRING 4000    /* paths and names; longer values are refused */

#define O(f) offsetof(struct srv_config, f)
#define C OPT_F_CONFIG
static const struct opt_def config_defs[] = {
    {"config", OPT_STRING, O(config), NULL, 1, 0, NULL, 0, "FILE",
     "read settings from this INI file first; flags override it"},
    {"model", OPT_STRING, O(model), NULL, 1, 0, NULL, C, "PATH",
     "GGUF file (or Hugging Face folder) to serve"},
    {"model-alias", OPT_STRING, O(model_alias), NULL, 1, 0, NULL, C, "NAME",
     "model id shown in /v1/models and accepted in requests (default: the model's name)"},
    {"device", OPT_STRING, O(device), "cpu", 1, 0, NULL, C, "DEV", "cpu, cuda or cuda:N"},
    {"threads", OPT_INT, O(threads), "0", 0, 4096, NULL, C, "N", "CPU threads (0: all CPUs)"},
    {"ctx-size", OPT_INT, O(ctx_size), "0", 0, 1 << 24, NULL, C, "N",
     "tokens per sequence (0: the model's training context)"},
    {"parallel", OPT_INT, O(parallel), "4", 1, 4096, NULL, C, "N",
     "sequences decoded together (continuous batching)"},
    {"batch-size", OPT_INT, O(batch_size), "512", 1, 1 << 20, NULL, C, "N",
     "most tokens in one engine step"},
    {"kv-type", OPT_STRING, O(kv_type), "f16", 1, 0, "f16|f32", C, "TYPE", "KV cache format"},
    {"kv-block-size", OPT_INT, O(kv_block_size), "16", 1, 4096, NULL, C, "N",
     "tokens per KV cache block"},
    {"max-queue", OPT_INT, O(max_queue), "64", 0, 1 << 20, NULL, C, "N",
     "requests that may wait for a free sequence before new ones get 503"},
    {"host", OPT_STRING, O(host), "127.0.0.1", 1, 0, NULL, C, "ADDR",
     "address to listen on (IPv4 or IPv6 literal, or a host name)"},
    {"port", OPT_INT, O(port), "8080", 0, 65535, NULL, C, "PORT",
     "TCP port (0: any free port, logged at startup)"},
    {"max-body-bytes", OPT_SIZE, O(max_body_bytes), "8M", 1024, 1073741824.0, NULL, C, "BYTES",
     "largest request body; bigger ones get 413"},
    {"max-buffered-bytes", OPT_SIZE, O(max_buffered_bytes), "64M", 1024, 68719476736.0, NULL, C,
     "BYTES", "request-body bytes held at once across all connections; past it new bodies get "
     "503 with Retry-After (at least max-body-bytes)"},
    {"conn-timeout", OPT_SECONDS, O(conn_timeout), "30s", 1, 3600, NULL, C, "SECONDS",
     "a connection must deliver each request (headers and body) within this time, and idle "
     "keep-alive connections are closed after it"},
    {"max-connections", OPT_INT, O(max_connections), "256", 1, 65536, NULL, C, "N",
     "open connections at most; more are refused"},
    {"admin-listen", OPT_STRING, O(admin_listen), NULL, 1, 0, NULL, C, "HOST:PORT",
     "a second address serving only /health, /ready and /metrics, with its own connections: "
     "probes answer even when max-connections is reached (e.g. 127.0.0.1:9090; [::1]:9090)"},
    {"shutdown-timeout", OPT_SECONDS, O(shutdown_timeout), "30s", 0, 3600, NULL, C, "SECONDS",
     "on SIGTERM/SIGINT, how long in-flight requests may take to finish"},
    {"api-key-file", OPT_STRING, O(api_key_file), NULL, 1, 0, NULL, C, "FILE",
     "lines `KEY ROLE` (role inference or admin); when set, /v1 routes need "
     "`Authorization: Bearer KEY`; SIGHUP reloads it"},
    {"tls-cert", OPT_STRING, O(tls_cert), NULL, 1, 0, NULL, C, "FILE",
     "serve HTTPS with this PEM certificate chain (leaf first); needs tls-key; SIGHUP "
     "reloads both"},
    {"tls-key", OPT_STRING, O(tls_key), NULL, 1, 0, NULL, C, "FILE",
     "the PEM private key of tls-cert (unencrypted; keep it mode 600)"},
    {"log-level", OPT_STRING, O(log_level), "info", 1, 0, "debug|info|warn|error", C, "LEVEL",
     "least severe log lines written to stderr"},
};
#undef C
#undef O
#define N_DEFS (sizeof config_defs / sizeof config_defs[0])

const struct opt_def *srv_config_defs(size_t *n)
{
    *n = N_DEFS;
    return config_defs;
}

int srv_config_init(struct srv_config *c, struct errbuf *eb)
{
    memset(c, 0, sizeof *c);
    return opt_defaults(config_defs, N_DEFS, c, eb);
}

void srv_config_free(struct srv_config *c)
{
    if (c)
        opt_free(config_defs, N_DEFS, c);
}

/* --- INI loading ------------------------------------------------------------------------ */

struct ini_state {
    struct srv_config *cfg;
    const char *name;        /* file name for messages */
    const char *text;        /* the file, not NUL-terminated */
    size_t len, pos;
    int line;                /* lines handed to inih so far = the line being parsed */
    int err_line;            /* first error we found (0: none) */
    int rc;
    bool seen[N_DEFS];
    struct errbuf msg;       /* message for err_line, without the "file:line: " prefix */
};

static void ini_fail(struct ini_state *st, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ini_fail(struct ini_state *st, int rc, const char *fmt, ...)
{
    if (st->err_line)
        return;
    st->err_line = st->line;
    st->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg.msg, sizeof st->msg.msg, fmt, ap);
    va_end(ap);
}

/* inih reader: one line per call (with its newline), so st->line is the current line. */
static char *on_ini_read(char *str, int num, void *stream)
{
    struct ini_state *st = stream;
    if (st->pos >= st->len || num < 2)
        return NULL;
    const char *p = st->text + st->pos;
    size_t left = st->len - st->pos;
    const char *nl = memchr(p, '\n', left);
    size_t line_len = nl ? (size_t)(nl - p) + 1 : left;
    st->line++;
    st->pos += line_len;
    if (line_len > (size_t)num - 1) {
        // inih would split the line and parse the tail as a new line: refuse instead
        ini_fail(st, ERR_INVAL, "line is longer than %d characters; shorten it (long paths "
                                "can be given as flags)", num - 3);
        memcpy(str, "\n", 2);
        return str;
    }
    memcpy(str, p, line_len);
    str[line_len] = '\0';
    return str;
}

static int on_ini_pair(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *st = user;
    if (st->err_line)
        return 1;    // report only the first error; keep the config untouched after it
    if (section && section[0]) {
        ini_fail(st, ERR_INVAL, "'%s' is under section [%s]; this file has no sections, put "
                                "`key = value` lines at the top level", name, section);
        return 0;
    }
    const struct opt_def *d = opt_find(config_defs, N_DEFS, name);
    if (!d) {
        ini_fail(st, ERR_NOTFOUND, "unknown key '%s' (etc/orthod.conf lists every key)", name);
        return 0;
    }
    if (!(d->flags & OPT_F_CONFIG)) {
        ini_fail(st, ERR_INVAL, "'%s' cannot be set in a config file; use --%s", name, name);
        return 0;
    }
    size_t idx = (size_t)(d - config_defs);
    if (st->seen[idx]) {
        ini_fail(st, ERR_INVAL, "'%s' is set more than once; keep one line", name);
        return 0;
    }
    st->seen[idx] = true;
    struct errbuf eb;
    int rc = opt_set(config_defs, N_DEFS, st->cfg, name, value, &eb);
    if (rc < 0) {
        ini_fail(st, rc, "%s", eb.msg);
        return 0;
    }
    return 1;
}

/* Empty strings mean "unset" for optional strings, so `api-key-file =` clears the key. */
static void normalize(struct srv_config *c)
{
    for (size_t i = 0; i < N_DEFS; i++) {
        const struct opt_def *d = &config_defs[i];
        if (d->type != OPT_STRING || d->defval)
            continue;
        char **f = (char **)((char *)c + d->offset);
        if (*f && !(*f)[0]) {
            free(*f);
            *f = NULL;
        }
    }
}

int srv_config_load_string(struct srv_config *c, const char *text, size_t len, const char *name,
                           struct errbuf *eb)
{
    if (len > CONFIG_MAX_FILE_BYTES)
        return err_set(eb, ERR_TOOLARGE, "%s: config file is larger than %u bytes", name,
                       CONFIG_MAX_FILE_BYTES);
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        return err_set(eb, ERR_INVAL, "%s:%d: NUL byte in config file (is it a text file?)",
                       name, line);
    }
    struct ini_state *st = calloc(1, sizeof *st);
    if (!st)
        return ERR_NOMEM;
    st->cfg = c;
    st->name = name;
    st->text = text;
    st->len = len;
    int r = ini_parse_stream(on_ini_read, st, on_ini_pair, st);
    int rc = 0;
    if (r == -2) {
        rc = ERR_NOMEM;
    } else if (r > 0 && (!st->err_line || r < st->err_line)) {
        rc = err_set(eb, ERR_INVAL, "%s:%d: expected `key = value`, a comment (# or ;) or a "
                                    "blank line", name, r);
    } else if (st->err_line) {
        rc = err_set(eb, st->rc, "%s:%d: %s", name, st->err_line, st->msg.msg);
    } else if (r != 0) {
        rc = err_set(eb, ERR_IO, "%s: cannot parse config file", name);
    }
    free(st);
    if (rc == 0)
        normalize(c);
    return rc;
}

int srv_config_load_file(struct srv_config *c, const char *path, struct errbuf *eb)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(eb, ERR_IO, "%s: cannot open config file: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        return ERR_NOMEM;
    }
    size_t n = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    int rc;
    if (ferror(f))
        rc = err_set(eb, ERR_IO, "%s: cannot read config file: %s", path, strerror(errno));
    else
        rc = srv_config_load_string(c, buf, n, path, eb);
    free(buf);
    fclose(f);
    return rc;
}

/* --- flags ------------------------------------------------------------------------------ */

static int parse_flags(struct srv_config *c, int argc, char **argv, struct errbuf *eb)
{
    // opt_parse_argv reorders its array: give it a copy so the caller's argv stays intact
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    if (!copy)
        return ERR_NOMEM;
    memcpy(copy, argv, (size_t)argc * sizeof *copy);
    int npos = 0;
    int rc = opt_parse_argv(config_defs, N_DEFS, c, argc, copy, &npos, NULL, eb);
    if (rc == 0 && npos > 0)
        rc = err_set(eb, ERR_INVAL, "unexpected argument '%.200s' (options are --name VALUE)",
                     copy[0]);
    free(copy);
    return rc;
}

int srv_config_from_args(struct srv_config *c, int argc, char **argv, struct errbuf *eb)
{
    struct srv_config flags;
    int rc = srv_config_init(&flags, eb);
    if (rc == 0)
        rc = parse_flags(&flags, argc, argv, eb);   // bad flags fail before the file is read
    if (rc < 0) {
        srv_config_free(&flags);
        return rc;
    }
    rc = srv_config_init(c, eb);
    if (rc == 0 && flags.config)
        rc = srv_config_load_file(c, flags.config, eb);
    srv_config_free(&flags);
    if (rc == 0)
        rc = parse_flags(c, argc, argv, eb);
    if (rc == 0) {
        normalize(c);
        rc = srv_config_check(c, eb);
    }
    if (rc < 0)
        srv_config_free(c);
    return rc;
}

int srv_config_check(const struct srv_config *c, struct errbuf *eb)
{
    for (size_t i = 0; i < N_DEFS; i++) {
        const struct opt_def *d = &config_defs[i];
        const char *v = d->type == OPT_STRING ? *(char *const *)((const char *)c + d->offset)
                                              : NULL;
        if (v && strlen(v) > CONFIG_MAX_STRING)
            return err_set(eb, ERR_INVAL, "--%s: longer than %d characters", d->name,
                           CONFIG_MAX_STRING);
    }
    const char *d = c->device;
    if (!d || !d[0])
        return err_set(eb, ERR_INVAL, "--device: empty; use cpu, cuda or cuda:N");
    if (strcmp(d, "cpu") != 0 && strcmp(d, "cuda") != 0) {
        char *end;
        long v = -1;
        if (strncmp(d, "cuda:", 5) == 0 && d[5] >= '0' && d[5] <= '9')
            v = strtol(d + 5, &end, 10);
        if (v < 0 || v > 63 || *end)
            return err_set(eb, ERR_INVAL, "--device: '%s' is not cpu, cuda or cuda:N", d);
    }
    if (!c->host || !c->host[0])
        return err_set(eb, ERR_INVAL, "--host: empty; use an address such as 127.0.0.1");
    if (strlen(c->host) > 255)
        return err_set(eb, ERR_INVAL, "--host: longer than 255 characters");
    if (c->model_alias && strlen(c->model_alias) > 256)
        return err_set(eb, ERR_INVAL, "--model-alias: longer than 256 characters");
    if (!c->tls_cert != !c->tls_key)
        return err_set(eb, ERR_INVAL, "--tls-cert and --tls-key go together: set both (or "
                                      "neither, for plain HTTP)");
    if (c->admin_listen) {
        char host[256];
        int port;
        int rc = srv_config_split_listen(c->admin_listen, host, sizeof host, &port, eb);
        if (rc < 0)
            return rc;
    }
    if (c->max_buffered_bytes < c->max_body_bytes)
        return err_set(eb, ERR_INVAL, "--max-buffered-bytes (%zu) is below --max-body-bytes "
                       "(%zu): one request of the largest size could never be read; raise it",
                       c->max_buffered_bytes, c->max_body_bytes);
    return 0;
}

int srv_config_split_listen(const char *s, char *host, size_t cap, int *port, struct errbuf *eb)
{
    const char *colon = strrchr(s, ':');
    const char *h = s, *he = colon;
    if (s[0] == '[') {    // [v6]:port
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return err_set(eb, ERR_INVAL, "--admin-listen '%.100s': write an IPv6 address as "
                                          "[::1]:9090", s);
        h = s + 1;
        he = rb;
        colon = rb + 1;
    }
    if (!colon || he == h || (size_t)(he - h) >= cap)
        return err_set(eb, ERR_INVAL, "--admin-listen '%.100s': expected HOST:PORT, e.g. "
                                      "127.0.0.1:9090", s);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535)
        return err_set(eb, ERR_INVAL, "--admin-listen '%.100s': the port must be 0..65535", s);
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    *port = (int)p;
    return 0;
}

void srv_config_print(const struct srv_config *c, FILE *f)
{
    fprintf(f, "# orthod effective configuration (defaults, then --config file, then flags)\n");
    for (size_t i = 0; i < N_DEFS; i++) {
        const struct opt_def *d = &config_defs[i];
        if (!(d->flags & OPT_F_CONFIG))
            continue;
        char val[CONFIG_MAX_STRING + 64];
        opt_format(d, c, val, sizeof val);
        fprintf(f, "\n# %s\n%s = %s\n", d->help ? d->help : "", d->name, val);
    }
}

/* --- `orthod config` --------------------------------------------------------------------- */

int srv_config_from_cmd(const struct opt_cmd *cmd, struct srv_config *c, int argc, char **argv)
{
    if (opt_cmd_help(cmd, argc, argv))
        return 0;
    struct errbuf eb = {{0}};
    int rc = srv_config_from_args(c, argc, argv, &eb);
    if (rc < 0) {
        fprintf(stderr, "orthod %s: %s\n", cmd->name, eb.msg[0] ? eb.msg : err_str(rc));
        return 2;
    }
    return -1;
}

int cmd_config(int argc, char **argv)
{
    static const struct opt_cmd cmd = {
        "config", "usage: orthod config [--config FILE] [flags]\nPrints the effective "
        "configuration (defaults, then FILE, then flags) as an INI file.",
        config_defs, N_DEFS, NULL, NULL};
    struct srv_config c;
    int st = srv_config_from_cmd(&cmd, &c, argc, argv);
    if (st >= 0)
        return st;
    srv_config_print(&c, stdout);
    srv_config_free(&c);
    return 0;
}
