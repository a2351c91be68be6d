/* tests/fuzz/fuzz_http.c: a bounded HTTP fuzz run against a real `orthod serve` over
 * loopback. Request byte streams are mutated from seeds (valid and invalid requests: every
 * route, bodies, chunked framing, keys, pipelining) and sent through up to 40 connections
 * at once, each in random fragments, then half-closed or held open. Checked for every
 * connection: it ends, within conn-timeout and a margin, with nothing or with well-formed
 * responses (status line, headers, exactly Content-Length body bytes; orthod's own errors
 * in the OpenAI JSON shape); and for the daemon: /health answers 200 every 2 s, it never
 * dies, its open descriptors and memory return to their baseline at the end, it exits 0
 * on SIGTERM, and its log holds no sanitizer report. Known libmicrohttpd 0.9.75 residue
 * (its HTML error pages; the status and header block sent twice for a Content-Length it
 * cannot parse: docs/security.md) is counted, not failed.
 *
 *   fuzz_http ORTHOD MODEL [--seconds N] [--seed S] [--artifacts DIR] [--corpus DIR]
 *   fuzz_http ORTHOD MODEL --replay FILE      send one input and check the outcome
 *   fuzz_http --port P [--seconds N] ...        against a daemon already running on
 *                                               127.0.0.1:P (bench/soak.sh): the streams
 *                                               and /health are checked, not the daemon's
 *                                               memory, descriptors or exit
 *
 * A failing input is written to DIR/http-<seed>-<n>.bin; --replay reproduces it.
 * Exit: 0 pass, 1 failure, 2 usage. Not libFuzzer: the daemon is the target, whole. */
#include "../rawsock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 40
#define FUZZ_MAX_INPUT 65536
#define MAX_RESP (256 * 1024)
#define CONN_TIMEOUT_S 2          /* the daemon's conn-timeout */
#define HANG_S (CONN_TIMEOUT_S + 8.0)
#define KEY "fuzz-key-0123456789abcdef0123456789"

/* --- random --------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    // splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* --- seeds ------------------------------------------------------------------------------ */

static const char *const builtin_seeds[] = {
    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /metrics HTTP/1.0\r\n\r\n",
    "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n\r\n",
    "GET /v1/models/llama HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
    "X-Request-Id: abc-1\r\n\r\n",
    "POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Content-Length: 13\r\n\r\n{\"a\":[1,2,3]}",
    "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /health?x=1&y=%41 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "DELETE /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
    "Content-Length: 0\r\n\r\n",
    // routes that take JSON bodies once they exist (404 before that)
    "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
    "Content-Type: application/json\r\nContent-Length: 41\r\n\r\n"
    "{\"model\":\"llama\",\"prompt\":\"a\",\"max_tokens\":1}",
    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    "10\r\n{\"messages\":[{\"\r\n1b\r\nrole\":\"user\",\"content\":\"x\"}]}\r\n0\r\n\r\n",
    "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Content-Length: 17\r\n\r\n{\"content\":\"hi\"}",
};

static const char *const tokens[] = {
    "\r\n", "\r\n\r\n", "\n", "\r", " ", "\t", ":", "\0", "%00", "%", "%zz", "?", "/..",
    "Content-Length: 0\r\n", "Content-Length: 5\r\n", "Content-Length: 99999999999999999999\r\n",
    "Content-Length: -1\r\n", "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\n",
    "Host: y\r\n", "Connection: close\r\n", "Connection: keep-alive\r\n",
    "Expect: 100-continue\r\n", "Authorization: Bearer " KEY "\r\n", "X-A: a\r\n b\r\n",
    "ffffffffffffffff\r\n", "0\r\n\r\n", "1;ext=1\r\nx\r\n", "HTTP/1.0", "HTTP/1.1",
    "HTTP/2.0", "GET ", "POST ", "{\"a\":", "[[[[[[[[", "\"\\u0000\"", "\xff\xfe",
};
#define N_TOKENS (sizeof tokens / sizeof tokens[0])

struct buf {
    char *p;
    size_t n;
};

struct corpus {
    struct buf *v;
    size_t n;
};

static void corpus_add(struct corpus *c, const char *p, size_t n)
{
    c->v = realloc(c->v, (c->n + 1) * sizeof *c->v);
    c->v[c->n].p = malloc(n ? n : 1);
    memcpy(c->v[c->n].p, p, n);
    c->v[c->n].n = n;
    c->n++;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = malloc(FUZZ_MAX_INPUT);
    *n = fread(p, 1, FUZZ_MAX_INPUT, f);
    fclose(f);
    return p;
}

/* --- mutation ------------------------------------------------------------------------- */

static size_t token_len(size_t i)
{
    return tokens[i][0] ? strlen(tokens[i]) : 1;    // "\0" is one NUL byte
}

static void insert(char *b, size_t *n, size_t at, const char *src, size_t k)
{
    if (*n + k > FUZZ_MAX_INPUT)
        return;
    memmove(b + at + k, b + at, *n - at);
    memcpy(b + at, src, k);
    *n += k;
}

static void mutate(char *b, size_t *n)
{
    int rounds = 1 + (int)rnd_below(4);
    for (int r = 0; r < rounds; r++) {
        size_t at = rnd_below(*n + 1);
        switch (rnd_below(8)) {
        case 0:    // flip a bit
            if (*n)
                b[rnd_below(*n)] ^= (char)(1u << rnd_below(8));
            break;
        case 1: {  // an interesting byte
            static const char ib[] = {'\0', '\r', '\n', ' ', ':', '%', '\xff', '0', '9', ';', '"'};
            if (*n)
                b[rnd_below(*n)] = ib[rnd_below(sizeof ib)];
            break;
        }
        case 2: {  // insert a token
            size_t t = rnd_below(N_TOKENS);
            insert(b, n, at, tokens[t], token_len(t));
            break;
        }
        case 3: {  // delete a range
            size_t k = rnd_below(16) + 1;
            if (at + k <= *n) {
                memmove(b + at, b + at + k, *n - at - k);
                *n -= k;
            }
            break;
        }
        case 4: {  // duplicate a range (a header line, a chunk)
            size_t k = rnd_below(48) + 1;
            if (at + k <= *n && *n + k <= FUZZ_MAX_INPUT) {
                char tmp[64];
                memcpy(tmp, b + at, k);
                insert(b, n, at, tmp, k);
            }
            break;
        }
        case 5:    // truncate
            *n = at;
            break;
        case 6: {  // a number replaced
            static const char *const nums[] = {"0", "1", "-1", "65535", "65536", "4294967296",
                                               "18446744073709551615", "007", "1e3", "0x10"};
            const char *d = NULL;
            for (size_t i = at; i < *n; i++)
                if (b[i] >= '0' && b[i] <= '9') {
                    d = b + i;
                    break;
                }
            if (d) {
                size_t i = (size_t)(d - b), e = i;
                while (e < *n && b[e] >= '0' && b[e] <= '9')
                    e++;
                memmove(b + i, b + e, *n - e);
                *n -= e - i;
                const char *v = nums[rnd_below(sizeof nums / sizeof nums[0])];
                insert(b, n, i, v, strlen(v));
            }
            break;
        }
        default: { // random bytes
            char rb[8];
            size_t k = rnd_below(8) + 1;
            for (size_t i = 0; i < k; i++)
                rb[i] = (char)rnd();
            insert(b, n, at, rb, k);
            break;
        }
        }
    }
}

/* --- checking a connection's bytes --------------------------------------------------------- */

struct stats {
    unsigned long inputs, responses, empty, mhd_pages, residue, continues, health;
    unsigned long by_class[6];
};

static struct stats st;

/* The first k-byte needle in p[0..n), or NULL. */
static const char *find(const char *p, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (p[i] == needle[0] && memcmp(p + i, needle, k) == 0)
            return p + i;
    return NULL;
}

/* Checks resp[0..n): zero or more well-formed responses. Returns NULL, or why it is not
 * well formed. *complete: it ends exactly after a final (non-1xx) response. count: add to
 * the statistics (once, when the connection is over). */
static const char *check_stream(const char *resp, size_t n, bool head_request, bool *complete,
                                bool count_stats)
{
    struct stats scratch = st;
    struct stats *sp = count_stats ? &st : &scratch;
    *complete = false;
    if (!resp || n == 0) {
        sp->empty++;
        return NULL;
    }
    size_t off = 0;
    int count = 0, finals = 0;
    while (off < n) {
        const char *p = resp + off;
        size_t left = n - off;
        *complete = false;
        if (left < 12 && memcmp(p, "HTTP/1.1 ", left < 9 ? left : 9) == 0)
            return "response cut short";
        if (left < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
            p[8] != ' ')
            return count ? "bytes after the last response that are not a response"
                         : "reply does not start with a status line";
        int status = atoi(p + 9);
        if (status < 100 || status > 599)
            return "status out of range";
        const char *he = find(p, left, "\r\n\r\n", 4);
        if (!he)
            return "response cut short";
        size_t head_len = (size_t)(he - p) + 4;
        // header lines: Name: value
        bool has_cl = false, has_rid = false, chunked = false;
        size_t cl = 0;
        const char *line = find(p, head_len, "\n", 1) + 1;
        while (line < he + 2) {
            const char *le = find(line, (size_t)(he + 2 - line), "\r\n", 2);
            const char *colon = memchr(line, ':', (size_t)(le - line));
            if (!colon || colon == line)
                return "malformed response header line";
            size_t nl = (size_t)(colon - line);
            if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
                has_cl = true;
                cl = (size_t)strtoull(colon + 1, NULL, 10);
            } else if (nl == 12 && strncasecmp(line, "X-Request-Id", 12) == 0) {
                has_rid = true;
            } else if (nl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
                chunked = true;
            }
            line = le + 2;
        }
        count++;
        off += head_len;
        if (status < 200) {
            sp->continues++;
            continue;    // 100 Continue: no body, the final response follows
        }
        sp->responses++;
        sp->by_class[status / 100]++;
        if (chunked) {
            *complete = true;    // orthod streams none yet; the rest is not checked
            return NULL;
        }
        if (!has_cl)
            return status == 204 || status == 304 ? NULL : "response without Content-Length";
        const char *body = resp + off;
        if (n - off >= 12 && memcmp(body, p, 12) == 0) {
            // libmicrohttpd 0.9.75: status and header block twice (a Content-Length it cannot
            // parse), then its HTML page; the connection closes after it
            sp->residue++;
            *complete = true;
            return NULL;
        }
        // the reply to HEAD: the length, no body; unless the head never arrived whole (a 408
        // written before the method was known carries its body, and closes)
        if (head_request && finals++ == 0 && n - off != cl) {
            *complete = true;
            continue;
        }
        if (n - off < cl)
            return "response cut short";
        if (!has_rid) {
            sp->mhd_pages++;    // libmicrohttpd's own page (HTML)
        } else if (status >= 400) {
            json_error_t je;
            json_t *j = json_loadb(body, cl, 0, &je);
            json_t *e = j ? json_object_get(j, "error") : NULL;
            bool ok = e && json_is_string(json_object_get(e, "message")) &&
                      json_is_string(json_object_get(e, "type")) &&
                      json_is_string(json_object_get(e, "code"));
            json_decref(j);
            if (!ok)
                return "orthod error reply is not the OpenAI JSON shape";
        }
        off += cl;
        *complete = true;
    }
    return NULL;
}

/* --- the daemon ------------------------------------------------------------------------ */

struct daemon {
    pid_t pid;
    int port;
    char log[512];
};

static long open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The whole log (it may be long): does it hold needle? */
static bool log_grep(const struct daemon *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    char line[4096];
    bool yes = false;
    while (f && !yes && fgets(line, sizeof line, f))
        yes = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return yes;
}

static int daemon_start(struct daemon *d, const char *orthod, const char *model, const char *dir)
{
    char keys[512];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    FILE *f = fopen(keys, "w");
    if (!f)
        return -1;
    fprintf(f, KEY " admin\n");
    fclose(f);
    chmod(keys, 0600);
    snprintf(d->log, sizeof d->log, "%s/orthod.log", dir);
    // a free port (the daemon logs at warn level only, so it is chosen here)
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        return -1;
    d->port = ntohs(a.sin_port);
    close(ls);
    char port[16];
    snprintf(port, sizeof port, "%d", d->port);
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        // a small quarantine, so that memory freed is memory returned (ASan builds)
        setenv("ASAN_OPTIONS", "detect_leaks=1:quarantine_size_mb=8:abort_on_error=0", 1);
        setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1", 1);
        execl(orthod, orthod, "serve", "--model", model, "--host", "127.0.0.1", "--port", port,
              "--api-key-file", keys, "--conn-timeout", "2s", "--max-body-bytes", "64K",
              "--max-buffered-bytes", "1M", "--max-connections", "128", "--log-level", "warn",
              (char *)NULL);
        _exit(127);
    }
    double end = raw_now() + 60;
    while (raw_now() < end) {
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            return -1;
        int fd = raw_connect(d->port);
        if (fd >= 0) {
            const char req[] = "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            char b[2048];
            bool closed;
            raw_send(fd, req, sizeof req - 1);
            raw_read_response(fd, b, sizeof b, &closed, 10.0);
            close(fd);
            if (raw_status(b) == 200)
                return 0;
        }
        raw_sleep_ms(20);
    }
    kill(d->pid, SIGKILL);    // never became ready: leave nothing behind
    waitpid(d->pid, NULL, 0);
    return -1;
}

static bool healthy(const struct daemon *d)
{
    int fd = raw_connect(d->port);
    if (fd < 0)
        return false;
    const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char b[4096];
    bool closed;
    bool ok = raw_send(fd, req, sizeof req - 1);
    raw_read_response(fd, b, sizeof b, &closed, 10.0);
    close(fd);
    st.health++;
    return ok && raw_status(b) == 200;
}

/* --- connections in flight ------------------------------------------------------------- */

struct slot {
    int fd;
    char in[FUZZ_MAX_INPUT];
    size_t n, sent;
    size_t cut[8];        /* fragment ends */
    int n_cut, next_cut;
    bool half_close;      /* shutdown(SHUT_WR) once sent */
    char *out;
    size_t got;
    double started, last_data;
    unsigned long id;
};

static void save_input(const char *dir, uint64_t seed, unsigned long id, const char *p, size_t n,
                       char *path, size_t cap)
{
    snprintf(path, cap, "%s/http-%llu-%lu.bin", dir, (unsigned long long)seed, id);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static void slot_plan(struct slot *s)
{
    s->n_cut = 1 + (int)rnd_below(s->n > 1 ? 6 : 1);
    for (int i = 0; i < s->n_cut - 1; i++)
        s->cut[i] = rnd_below(s->n + 1);
    s->cut[s->n_cut - 1] = s->n;
    // ascending
    for (int i = 0; i < s->n_cut; i++)
        for (int j = i + 1; j < s->n_cut; j++)
            if (s->cut[j] < s->cut[i]) {
                size_t t = s->cut[i];
                s->cut[i] = s->cut[j];
                s->cut[j] = t;
            }
    s->next_cut = 0;
    s->half_close = rnd_below(10) < 8;
}

/* Sends the next fragment; true when all is sent. */
static bool slot_send(struct slot *s)
{
    while (s->next_cut < s->n_cut) {
        size_t end = s->cut[s->next_cut];
        if (end > s->sent) {
            ssize_t w = send(s->fd, s->in + s->sent, end - s->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return false;
            if (w <= 0) {
                s->sent = s->n;    // the server closed: nothing more to send
                s->next_cut = s->n_cut;
                break;
            }
            s->sent += (size_t)w;
            if (s->sent < end)
                return false;
        }
        s->next_cut++;
        if (s->next_cut < s->n_cut)
            return false;    // one fragment per turn: the server sees them apart
    }
    if (s->half_close)
        shutdown(s->fd, SHUT_WR);
    s->half_close = false;
    return true;
}

static int run(const char *orthod, const char *model, int port, double seconds, uint64_t seed,
               const char *artifacts, const char *corpus_dir, const char *replay)
{
    char dir[] = "/tmp/orthod_fuzz_http_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct daemon d = {0};
    bool own = port == 0;    // else: someone else's daemon, on port
    if (!own) {
        d.port = port;
    } else if (daemon_start(&d, orthod, model, dir) < 0) {
        fprintf(stderr, "fuzz_http: the daemon did not start; log: %s\n", d.log);
        return 1;
    }
    struct corpus c = {0};
    if (replay) {
        size_t n;
        char *p = slurp(replay, &n);
        if (!p) {
            fprintf(stderr, "fuzz_http: cannot read %s\n", replay);
            return 2;
        }
        corpus_add(&c, p, n);
        free(p);
    } else {
        for (size_t i = 0; i < sizeof builtin_seeds / sizeof builtin_seeds[0]; i++)
            corpus_add(&c, builtin_seeds[i], strlen(builtin_seeds[i]));
        DIR *cd = corpus_dir ? opendir(corpus_dir) : NULL;
        struct dirent *e;
        while (cd && (e = readdir(cd))) {
            if (e->d_name[0] == '.')
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", corpus_dir, e->d_name);
            size_t n;
            char *p = slurp(path, &n);
            if (p)
                corpus_add(&c, p, n);
            free(p);
        }
        if (cd)
            closedir(cd);
    }
    rng_state = seed;
    static struct slot slots[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        slots[i].fd = -1;
        slots[i].out = malloc(MAX_RESP);
    }
    const char *failure = NULL;
    char fail_path[1200] = "";
    long rss0 = -1, fds0 = -1;
    double t0 = raw_now(), last_health = t0, end = t0 + seconds;
    unsigned long next_id = 0;
    bool warm = false;
    for (;;) {
        double now = raw_now();
        bool more = replay ? next_id < 1 : now < end;
        int active = 0;
        for (int i = 0; i < SLOTS; i++)
            active += slots[i].fd >= 0;
        // the baseline, once the allocator and the daemon's pools are warm and no fuzz
        // connection is open
        if (!warm && !own)
            warm = true;
        if (!warm && (replay || st.inputs >= 300)) {
            more = false;
            if (active == 0) {
                warm = true;
                raw_sleep_ms(300);
                rss0 = raw_proc_status((int)d.pid, "VmRSS:");
                fds0 = open_fds(d.pid);
                more = replay ? next_id < 1 : raw_now() < end;
            }
        }
        active = 0;
        for (int i = 0; i < SLOTS; i++) {
            struct slot *s = &slots[i];
            if (s->fd < 0 && more && !failure && !(replay && next_id >= 1)) {
                const struct buf *b = &c.v[rnd_below(c.n)];
                memcpy(s->in, b->p, b->n);
                s->n = b->n;
                if (!replay)
                    mutate(s->in, &s->n);
                s->fd = raw_connect(d.port);
                if (s->fd < 0) {
                    failure = "cannot connect to the daemon";
                    break;
                }
                fcntl(s->fd, F_SETFL, O_NONBLOCK);
                s->sent = 0;
                s->got = 0;
                s->started = now;
                s->last_data = now;
                s->id = next_id++;
                slot_plan(s);
                st.inputs++;
            }
            active += s->fd >= 0;
        }
        if (failure || (!more && active == 0 && warm))
            break;
        struct pollfd pf[SLOTS];
        for (int i = 0; i < SLOTS; i++) {
            struct slot *s = &slots[i];
            pf[i] = (struct pollfd){s->fd, (short)(POLLIN | (s->next_cut < s->n_cut ? POLLOUT : 0)),
                                    0};
        }
        poll(pf, SLOTS, 5);
        for (int i = 0; i < SLOTS && !failure; i++) {
            struct slot *s = &slots[i];
            if (s->fd < 0)
                continue;
            if (s->next_cut < s->n_cut)
                slot_send(s);
            bool done = false;
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(s->fd, s->out + s->got, MAX_RESP - 1 - s->got, 0);
                if (r > 0) {
                    s->got += (size_t)r;
                    s->last_data = raw_now();
                }
                else if (r == 0 || errno != EAGAIN)
                    done = true;
                if (s->got >= MAX_RESP - 1)
                    done = true;
            }
            bool head = s->n >= 5 && memcmp(s->in, "HEAD ", 5) == 0;
            bool complete = false;
            // an input held open: done once all is sent and answered (and quiet for a
            // moment: more pipelined replies may follow), else it must end by conn-timeout
            if (!done && s->next_cut == s->n_cut && s->got > 0 &&
                raw_now() - s->last_data > 0.2) {
                check_stream(s->out, s->got, head, &complete, false);
                done = complete;
            }
            if (!done && raw_now() - s->started > HANG_S)
                failure = "connection neither answered nor closed within conn-timeout";
            if (failure || done) {
                s->out[s->got] = '\0';
                const char *why = failure ? failure
                                          : check_stream(s->out, s->got, head, &complete, true);
                if (why) {
                    failure = why;
                    save_input(artifacts, seed, s->id, s->in, s->n, fail_path, sizeof fail_path);
                    fprintf(stderr, "fuzz_http: input %lu: %s\n--- reply (%zu bytes) ---\n%.2000s\n"
                                    "---\n", s->id, why, s->got, s->out);
                }
                close(s->fd);
                s->fd = -1;
            }
        }
        if (!failure && raw_now() - last_health > 2.0) {
            last_health = raw_now();
            if (!healthy(&d))
                failure = "GET /health did not answer 200";
        }
        if (!failure && own && waitpid(d.pid, NULL, WNOHANG) == d.pid)
            failure = "the daemon died";
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].fd >= 0)
            close(slots[i].fd);
        free(slots[i].out);
    }
    // back to the baseline: descriptors exactly (give the daemon time to see the closes),
    // memory within a margin that one leaked request per input would pass many times over
    long rss1 = -1, fds1 = -1;
    if (!failure && !own) {
        if (!healthy(&d))
            failure = "GET /health did not answer 200 at the end";
    } else if (!failure) {
        double until = raw_now() + 10;
        do {
            raw_sleep_ms(100);
            fds1 = open_fds(d.pid);
        } while (fds1 > fds0 && raw_now() < until);
        rss1 = raw_proc_status((int)d.pid, "VmRSS:");
        if (!healthy(&d))
            failure = "GET /health did not answer 200 at the end";
        else if (fds1 > fds0)
            failure = "open descriptors did not return to the baseline";
        else if (rss1 > rss0 + 64 * 1024)
            failure = "memory did not return to the baseline (+64 MiB)";
    }
    int wst = 0;
    if (own) {
        kill(d.pid, SIGTERM);
        double until = raw_now() + 60;
        while (waitpid(d.pid, &wst, WNOHANG) == 0 && raw_now() < until)
            raw_sleep_ms(20);
    }
    if (!failure && own && !(WIFEXITED(wst) && WEXITSTATUS(wst) == 0))
        failure = "the daemon did not exit 0 on SIGTERM";
    if (!failure && own && (log_grep(&d, "ERROR: AddressSanitizer") || log_grep(&d, "ERROR: LeakSanitizer") ||
                     log_grep(&d, "runtime error:")))
        failure = "sanitizer report in the daemon's log";
    double secs = raw_now() - t0;
    printf("fuzz_http: seed %llu, %.0f s, %lu inputs (%.0f/s), %lu responses "
           "(2xx %lu, 3xx %lu, 4xx %lu, 5xx %lu), %lu closed without a reply, %lu 100-continue, "
           "%lu libmicrohttpd pages, %lu double-head residue, %lu health checks; rss %ld -> %ld "
           "KiB, fds %ld -> %ld\n", (unsigned long long)seed, secs, st.inputs,
           (double)st.inputs / secs, st.responses, st.by_class[2], st.by_class[3],
           st.by_class[4], st.by_class[5], st.empty, st.continues, st.mhd_pages, st.residue,
           st.health, rss0, rss1, fds0, fds1);
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].p);
    free(c.v);
    if (failure) {
        fprintf(stderr, "fuzz_http: FAILED: %s\n", failure);
        if (fail_path[0])
            fprintf(stderr, "fuzz_http: input saved as %s; reproduce: %s %s %s --replay %s\n",
                    fail_path, "fuzz_http", orthod ? orthod : "ORTHOD", model ? model : "MODEL",
                    fail_path);
        if (own)
            fprintf(stderr, "fuzz_http: daemon log kept in %s\n", d.log);
        return 1;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_http: could not remove %s\n", dir);
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 60;
    uint64_t seed = (uint64_t)time(NULL);
    const char *artifacts = ".", *corpus = NULL, *replay = NULL, *orthod = NULL, *model = NULL;
    int port = 0;
    int i = 1;
    if (argc >= 3 && argv[1][0] != '-') {
        orthod = argv[1];
        model = argv[2];
        i = 3;
    }
    for (; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--artifacts") == 0)
            artifacts = argv[i + 1];
        else if (strcmp(argv[i], "--corpus") == 0)
            corpus = argv[i + 1];
        else if (strcmp(argv[i], "--replay") == 0)
            replay = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else
            break;
    }
    if (i != argc || (!orthod && port <= 0)) {
        fprintf(stderr, "usage: fuzz_http ORTHOD MODEL [--seconds N] [--seed S] [--artifacts DIR] "
                        "[--corpus DIR] [--replay FILE]\n"
                        "       fuzz_http --port P [--seconds N] [--seed S] ...\n");
        return 2;
    }
    if (model && access(model, R_OK) != 0) {
        fprintf(stderr, "fuzz_http: model %s not found; skipping\n", model);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return run(orthod, model, orthod ? 0 : port, seconds, seed, artifacts, corpus, replay);
}
