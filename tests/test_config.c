/* tests/test_config.c: server/config.c: defaults, bounds, the INI file through libinih
 * (unknown keys, sections, duplicates, bad values and long lines are errors with
 * file:line), flags beating the file, and `orthod config` output loading back unchanged. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static int load(struct srv_config *c, const char *text, struct errbuf *eb)
{
    memset(eb, 0, sizeof *eb);
    return srv_config_load_string(c, text, strlen(text), "t.conf", eb);
}

/* Writes text to a fresh temp file; returns its path (static buffer per call site). */
static void write_temp(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/orthod_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* opt_cmd_parse, the command line of every `orthod CMD`: help, bad and missing flags, the
 * positional argument (too few, too many), and success leaving it in argv[0]. */
struct cmd_opts {
    char *model;
    int n;
};

/* Parses and releases the strings again (ints stay for the caller to look at). */
static int run_cmd(const struct opt_cmd *c, struct cmd_opts *o, char **argv, size_t argc)
{
    memset(o, 0, sizeof *o);
    int rc = opt_cmd_parse(c, o, (int)argc, argv);
    opt_free(c->defs, c->n, o);
    return rc;
}
#define RUN(c, ...) \
    run_cmd(c, &o, (char *[]){__VA_ARGS__}, sizeof((char *[]){__VA_ARGS__}) / sizeof(char *))

static void test_opt_cmd_parse(void **state)
{
    (void)state;
    static const struct opt_def defs[] = {
        {"model", OPT_STRING, offsetof(struct cmd_opts, model), NULL, 1, 0, NULL, OPT_F_REQUIRED,
         "PATH", "model"},
        {"n", OPT_INT, offsetof(struct cmd_opts, n), "3", 0, 9, NULL, 0, "N", "count"},
    };
    const struct opt_cmd c = {"t", "usage: orthod t --model PATH TEXT", defs, 2, "TEXT", NULL};
    struct cmd_opts o;
    assert_int_equal(RUN(&c, "--model", "--help"), 0);
    assert_int_equal(RUN(&c, "--model", "m", "--bogus"), 2);
    assert_int_equal(RUN(&c, "text"), 2);                    // --model missing
    assert_int_equal(RUN(&c, "--model", "m"), 2);             // TEXT missing
    assert_int_equal(RUN(&c, "--model", "m", "a", "b"), 2);   // one TEXT too many
    assert_int_equal(RUN(&c, "--model", "m", "--n", "10"), 2); // out of range
    char *argv[] = {"--n", "7", "hello", "--model", "m"};
    memset(&o, 0, sizeof o);
    assert_int_equal(opt_cmd_parse(&c, &o, 5, argv), -1);
    assert_string_equal(argv[0], "hello");
    assert_string_equal(o.model, "m");
    assert_int_equal(o.n, 7);
    opt_free(defs, 2, &o);
    const struct opt_cmd none = {"u", "usage: orthod u", defs + 1, 1, NULL, NULL};
    assert_int_equal(RUN(&none, "x"), 2);                      // no positional
    assert_int_equal(run_cmd(&none, &o, NULL, 0), -1);
    assert_int_equal(o.n, 3);
}

static void test_defaults(void **state)
{
    (void)state;
    struct srv_config c;
    struct errbuf eb = {{0}};
    assert_int_equal(srv_config_init(&c, &eb), 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.device, "cpu");
    assert_int_equal(c.max_body_bytes, 8u << 20);
    assert_true(c.conn_timeout == 30.0);
    assert_true(c.shutdown_timeout == 30.0);
    assert_int_equal(c.max_connections, 256);
    assert_string_equal(c.log_level, "info");
    assert_string_equal(c.kv_type, "f16");
    assert_null(c.model);
    assert_null(c.api_key_file);
    assert_int_equal(srv_config_check(&c, &eb), 0);
    srv_config_free(&c);
    srv_config_free(NULL);
}

static void test_file_values(void **state)
{
    (void)state;
    struct srv_config c;
    struct errbuf eb;
    srv_config_init(&c, &eb);
    assert_int_equal(load(&c, "# comment\n; other comment\n\nport = 9000\nhost=0.0.0.0\n"
                              "max-body-bytes = 1M\nconn-timeout = 1500ms\nshutdown-timeout=2m\n"
                              "model = /m/x.gguf\nlog-level = debug\n", &eb), 0);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.max_body_bytes, 1u << 20);
    assert_true(c.conn_timeout == 1.5);
    assert_true(c.shutdown_timeout == 120.0);
    assert_string_equal(c.model, "/m/x.gguf");
    assert_string_equal(c.log_level, "debug");
    srv_config_free(&c);
}

struct bad_case {
    const char *text;
    int line;
    const char *needle;
};

static void test_file_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"port = 1\nbogus-key = 3\n", 2, "unknown key 'bogus-key'"},
        {"\n\n\n[server]\nport = 1\n", 5, "section [server]"},
        {"port = 1\nport = 2\n", 2, "more than once"},
        {"# ok\nport = 99999\n", 2, "out of range"},
        {"port = eighty\n", 1, "not an integer"},
        {"log-level = loud\n", 1, "not one of"},
        {"kv-type = q9\n", 1, "not one of"},
        {"max-body-bytes = 10\n", 1, "out of range"},
        {"conn-timeout = forever\n", 1, "not a duration"},
        {"host = a\nthis line has no equals sign\n", 2, "expected `key = value`"},
        {"config = other.conf\n", 1, "cannot be set in a config file"},
        {"port = 8080 # inline hash comments are not comments\n", 1, "not an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct srv_config c;
        struct errbuf eb;
        srv_config_init(&c, &eb);
        int rc = load(&c, cases[i].text, &eb);
        char want[32];
        snprintf(want, sizeof want, "t.conf:%d: ", cases[i].line);
        if (rc >= 0 || strncmp(eb.msg, want, strlen(want)) != 0 ||
            !strstr(eb.msg, cases[i].needle)) {
            print_error("case %zu: rc=%d msg='%s' (want '%s...%s')\n", i, rc, eb.msg, want,
                        cases[i].needle);
            fail();
        }
        srv_config_free(&c);
    }
}

static void test_long_line_and_nul(void **state)
{
    (void)state;
    struct srv_config c;
    struct errbuf eb;
    srv_config_init(&c, &eb);
    char text[2048];
    int n = snprintf(text, sizeof text, "port = 1\nmodel = /");
    memset(text + n, 'a', 1000);
    snprintf(text + n + 1000, sizeof text - (size_t)n - 1000, "\nport = 2\n");
    assert_true(load(&c, text, &eb) < 0);
    assert_non_null(strstr(eb.msg, "t.conf:2: line is longer"));
    srv_config_free(&c);

    srv_config_init(&c, &eb);
    static const char with_nul[] = "port = 1\nhost = a\0b\n";
    memset(&eb, 0, sizeof eb);
    assert_true(srv_config_load_string(&c, with_nul, sizeof with_nul - 1, "t.conf", &eb) < 0);
    assert_non_null(strstr(eb.msg, "t.conf:2: NUL byte"));
    srv_config_free(&c);
}

static void test_empty_value_unsets(void **state)
{
    (void)state;
    struct srv_config c;
    struct errbuf eb;
    srv_config_init(&c, &eb);
    assert_int_equal(load(&c, "api-key-file = /x\n", &eb), 0);
    assert_string_equal(c.api_key_file, "/x");
    srv_config_free(&c);
    srv_config_init(&c, &eb);
    assert_int_equal(load(&c, "api-key-file =\nmodel-alias = \n", &eb), 0);
    assert_null(c.api_key_file);
    assert_null(c.model_alias);
    srv_config_free(&c);
}

static void test_flags_beat_file(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, sizeof path, "port = 9001\nhost = 0.0.0.0\nmax-connections = 7\n");
    char *argv[] = {"--port", "9002", "--config", path, "--max-connections=9", NULL};
    struct srv_config c;
    struct errbuf eb = {{0}};
    assert_int_equal(srv_config_from_args(&c, 5, argv, &eb), 0);
    assert_int_equal(c.port, 9002);               // flag wins although it comes first
    assert_string_equal(c.host, "0.0.0.0");       // from the file
    assert_int_equal(c.max_connections, 9);
    assert_string_equal(c.config, path);
    // argv is left as it was
    assert_string_equal(argv[0], "--port");
    assert_string_equal(argv[3], path);
    srv_config_free(&c);
    unlink(path);
}

static void test_args_errors(void **state)
{
    (void)state;
    struct {
        int argc;
        char *argv[4];
        const char *needle;
    } cases[] = {
        {1, {"--bogus"}, "--bogus"},
        {2, {"--port", "70000"}, "--port"},
        {1, {"--port"}, "--port needs a value"},
        {1, {"stray"}, "unexpected argument 'stray'"},
        {2, {"--device", "tpu"}, "--device"},
        {2, {"--device", "cuda:x"}, "--device"},
        {2, {"--config", "/nonexistent/orthod.conf"}, "/nonexistent/orthod.conf: cannot open"},
        {2, {"--host", ""}, "--host"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct srv_config c;
        struct errbuf eb = {{0}};
        int rc = srv_config_from_args(&c, cases[i].argc, cases[i].argv, &eb);
        if (rc >= 0 || !strstr(eb.msg, cases[i].needle)) {
            print_error("case %zu: rc=%d msg='%s' want '%s'\n", i, rc, eb.msg, cases[i].needle);
            fail();
        }
    }
    // absurdly long strings are refused, not truncated
    static char longpath[5000];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    char *argv_long[] = {"--model", longpath};
    struct srv_config cl;
    struct errbuf ebl = {{0}};
    assert_int_equal(srv_config_from_args(&cl, 2, argv_long, &ebl), ERR_INVAL);
    assert_non_null(strstr(ebl.msg, "--model: longer than"));
    // a bad file names file:line through --config
    char path[64];
    write_temp(path, sizeof path, "port = 1\n\nnope = 2\n");
    char *argv[] = {"--config", path};
    struct srv_config c;
    struct errbuf eb = {{0}};
    assert_true(srv_config_from_args(&c, 2, argv, &eb) < 0);
    char want[96];
    snprintf(want, sizeof want, "%s:3: unknown key 'nope'", path);
    assert_non_null(strstr(eb.msg, want));
    unlink(path);
}

static void test_devices(void **state)
{
    (void)state;
    const char *good[] = {"cpu", "cuda", "cuda:0", "cuda:7"};
    const char *bad[] = {"gpu", "cuda:", "cuda:-1", "cuda:64", "cuda:1x", "CPU"};
    for (size_t i = 0; i < 4; i++) {
        char *argv[] = {"--device", (char *)good[i]};
        struct srv_config c;
        struct errbuf eb = {{0}};
        assert_int_equal(srv_config_from_args(&c, 2, argv, &eb), 0);
        srv_config_free(&c);
    }
    for (size_t i = 0; i < 6; i++) {
        char *argv[] = {"--device", (char *)bad[i]};
        struct srv_config c;
        struct errbuf eb = {{0}};
        assert_true(srv_config_from_args(&c, 2, argv, &eb) < 0);
    }
}

/* `orthod config` output is itself a valid config file with the same values. */
static void test_print_round_trip(void **state)
{
    (void)state;
    char *argv[] = {"--port", "1234", "--model", "/a b/c.gguf", "--conn-timeout", "1.5s",
                    "--max-body-bytes", "64K", "--api-key-file", "/k"};
    struct srv_config a, b;
    struct errbuf eb = {{0}};
    assert_int_equal(srv_config_from_args(&a, 10, argv, &eb), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    srv_config_print(&a, f);
    fclose(f);
    assert_non_null(strstr(text, "\nport = 1234\n"));
    assert_non_null(strstr(text, "\nmodel = /a b/c.gguf\n"));
    srv_config_init(&b, &eb);
    assert_int_equal(srv_config_load_string(&b, text, len, "printed", &eb), 0);
    size_t n;
    const struct opt_def *defs = srv_config_defs(&n);
    for (size_t i = 0; i < n; i++) {
        if (!(defs[i].flags & OPT_F_CONFIG))
            continue;
        char va[512], vb[512];
        opt_format(&defs[i], &a, va, sizeof va);
        opt_format(&defs[i], &b, vb, sizeof vb);
        if (strcmp(va, vb) != 0) {
            print_error("%s: '%s' != '%s'\n", defs[i].name, va, vb);
            fail();
        }
    }
    free(text);
    srv_config_free(&a);
    srv_config_free(&b);
}

/* Every key in the table is documented in etc/orthod.conf with its default. */
static void test_example_file_documents_every_key(void **state)
{
    (void)state;
    const char *root = getenv("ORTHOD_SOURCE_ROOT");
    if (!root)
        skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/etc/orthod.conf", root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    size_t n;
    const struct opt_def *defs = srv_config_defs(&n);
    struct srv_config c;
    struct errbuf eb;
    srv_config_init(&c, &eb);
    for (size_t i = 0; i < n; i++) {
        if (!(defs[i].flags & OPT_F_CONFIG))
            continue;
        // documented as a commented-out default line: "# key = default"
        char want[256];
        char def[128];
        opt_format(&defs[i], &c, def, sizeof def);
        snprintf(want, sizeof want, "\n# %s = %s\n", defs[i].name, def);
        char want_empty[256];
        snprintf(want_empty, sizeof want_empty, "\n# %s =\n", defs[i].name);
        if (!strstr(text, want) && !(def[0] == '\0' && strstr(text, want_empty))) {
            print_error("etc/orthod.conf lacks the line '# %s = %s'\n", defs[i].name, def);
            fail();
        }
    }
    // and the file itself loads (every line a comment or a valid setting)
    srv_config_free(&c);
    srv_config_init(&c, &eb);
    memset(&eb, 0, sizeof eb);
    assert_int_equal(srv_config_load_string(&c, text, len, path, &eb), 0);
    srv_config_free(&c);
}

/* common/opt.c directly, on a table without bounds: a unit suffix may not turn a finite
 * number into infinity ("1e308h" is 3.6e311 seconds), which a caller converting seconds to
 * integer milliseconds would hit as undefined behaviour. */
struct unbounded {
    double secs, num;
    size_t bytes;
};

static void test_opt_values_stay_finite(void **state)
{
    (void)state;
    static const struct opt_def defs[] = {
        {"secs", OPT_SECONDS, offsetof(struct unbounded, secs), NULL, 1, 0, NULL, 0, "S", ""},
        {"num", OPT_DOUBLE, offsetof(struct unbounded, num), NULL, 1, 0, NULL, 0, "X", ""},
        {"bytes", OPT_SIZE, offsetof(struct unbounded, bytes), NULL, 1, 0, NULL, 0, "B", ""},
    };
    const size_t n = sizeof defs / sizeof defs[0];
    struct unbounded u = {0};
    struct errbuf eb = {{0}};
    assert_int_equal(opt_set(defs, n, &u, "secs", "1e308h", &eb), ERR_INVAL);
    assert_int_equal(opt_set(defs, n, &u, "secs", "1e307m", &eb), ERR_INVAL);
    assert_true(u.secs == 0.0);
    assert_int_equal(opt_set(defs, n, &u, "secs", "inf", &eb), ERR_INVAL);
    assert_int_equal(opt_set(defs, n, &u, "secs", "nan", &eb), ERR_INVAL);
    assert_int_equal(opt_set(defs, n, &u, "secs", "2h", &eb), 0);
    assert_true(u.secs == 7200.0);
    assert_int_equal(opt_set(defs, n, &u, "num", "1e308", &eb), 0);
    assert_int_equal(opt_set(defs, n, &u, "num", "1e309", &eb), ERR_INVAL);
    assert_int_equal(opt_set(defs, n, &u, "bytes", "1e308G", &eb), ERR_INVAL);
    assert_int_equal(opt_set(defs, n, &u, "bytes", "2K", &eb), 0);
    assert_int_equal(u.bytes, 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opt_cmd_parse),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_long_line_and_nul),
        cmocka_unit_test(test_empty_value_unsets),
        cmocka_unit_test(test_flags_beat_file),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_example_file_documents_every_key),
        cmocka_unit_test(test_opt_values_stay_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
