/* tests/test_auth.c: server/auth.c: the key file (comments, blank lines, CRLF; every bad line
 * is an error naming file:line), Bearer parsing, roles, and the constant-time compare. */
#include "auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include <cmocka.h>

#define K_INF "inference-key-0123456789abcdef"
#define K_ADM "admin-key-0123456789abcdef012345"

static srv_auth_t *parse_ok(const char *text)
{
    srv_auth_t *a = NULL;
    struct errbuf eb = {{0}};
    int rc = srv_auth_parse(text, strlen(text), "keys", &a, &eb);
    if (rc != 0)
        print_error("parse failed: %s\n", eb.msg);
    assert_int_equal(rc, 0);
    return a;
}

static void test_parse_good(void **state)
{
    (void)state;
    srv_auth_t *a = parse_ok("# orthod keys\n\n   \n" K_INF " inference\r\n"
                             "\t" K_ADM "\t admin  \n# trailing comment");
    assert_int_equal(srv_auth_count(a), 2);
    enum srv_auth_role r = SRV_ROLE_NONE;
    assert_int_equal(srv_auth_check(a, "Bearer " K_INF, &r), 0);
    assert_int_equal(r, SRV_ROLE_INFERENCE);
    assert_int_equal(srv_auth_check(a, "Bearer " K_ADM, &r), 0);
    assert_int_equal(r, SRV_ROLE_ADMIN);
    srv_auth_free(a);
    srv_auth_free(NULL);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"# only comments\n\n", "keys: no keys"},
        {"", "keys: no keys"},
        {K_INF "\n", "keys:1: expected `KEY ROLE`"},
        {"# c\n" K_INF " inference extra\n", "keys:2: expected `KEY ROLE`"},
        {K_INF " root\n", "keys:1: unknown role 'root'"},
        {K_INF " Admin\n", "keys:1: unknown role"},
        {"short admin\n", "keys:1: key is 5 characters"},
        {K_INF " inference\n" K_INF " admin\n", "keys:2: this key is already listed"},
        {"key\xc3\xa9-0123456789abcdef admin\n", "keys:1: keys must be printable ASCII"},
        {"\n\n" K_INF "\x01 admin\n", "keys:3: keys must be printable ASCII"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_auth_t *a = (srv_auth_t *)(uintptr_t)1;
        struct errbuf eb = {{0}};
        int rc = srv_auth_parse(cases[i].text, strlen(cases[i].text), "keys", &a, &eb);
        if (rc != ERR_INVAL || !strstr(eb.msg, cases[i].want) ||
            a != (srv_auth_t *)(uintptr_t)1) {
            print_error("case %zu: rc=%d msg='%s' want '%s'\n", i, rc, eb.msg, cases[i].want);
            fail();
        }
    }
    // a key of the maximum length is fine; one more is not
    char line[600];
    memset(line, 'k', SRV_AUTH_KEY_MAX);
    snprintf(line + SRV_AUTH_KEY_MAX, sizeof line - SRV_AUTH_KEY_MAX, " admin\n");
    srv_auth_t *a = parse_ok(line);
    srv_auth_free(a);
    memset(line, 'k', SRV_AUTH_KEY_MAX + 1);
    snprintf(line + SRV_AUTH_KEY_MAX + 1, sizeof line - SRV_AUTH_KEY_MAX - 1, " admin\n");
    struct errbuf eb;
    assert_int_equal(srv_auth_parse(line, strlen(line), "keys", &a, &eb), ERR_INVAL);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/orthod_test_keys_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# x\n" K_ADM " admin\nnot-a-valid-line\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    srv_auth_t *a = NULL;
    struct errbuf eb = {{0}};
    assert_int_equal(srv_auth_load(path, &a, NULL, &eb), ERR_INVAL);
    char want[64];
    snprintf(want, sizeof want, "%s:3:", path);
    assert_non_null(strstr(eb.msg, want));
    // a good file, and its mode
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(K_ADM " admin\n", f);
    fclose(f);
    chmod(path, 0640);
    unsigned mode = 0;
    assert_int_equal(srv_auth_load(path, &a, &mode, &eb), 0);
    assert_int_equal(mode, 0640);
    srv_auth_free(a);
    unlink(path);
    assert_int_equal(srv_auth_load(path, &a, NULL, &eb), ERR_IO);
    assert_non_null(strstr(eb.msg, "cannot open"));
    // a FIFO is refused at once (opening it must not wait for a writer)
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(srv_auth_load(path, &a, NULL, &eb), ERR_IO);
    assert_non_null(strstr(eb.msg, "a FIFO, not a regular file"));
    unlink(path);
    assert_int_equal(srv_auth_load("/tmp", &a, NULL, &eb), ERR_IO);
    assert_non_null(strstr(eb.msg, "a directory"));
}

static void test_check_header(void **state)
{
    (void)state;
    srv_auth_t *a = parse_ok(K_INF " inference\n" K_ADM " admin\n");
    enum srv_auth_role r = SRV_ROLE_NONE;
    const char *ok[] = {"Bearer " K_INF, "bearer " K_INF, "BEARER\t" K_INF, "  Bearer   " K_INF "  "};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(srv_auth_check(a, ok[i], &r), 0);
    const char *bad[] = {NULL, "", "Bearer", "Bearer ", K_INF, "Basic " K_INF,
                         "Bearer" K_INF, "Bearer " K_INF "x", "Bearer x" K_INF,
                         "Bearer inference-key-0123456789abcde", "Bearer " K_INF " " K_INF,
                         "Token " K_INF};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = SRV_ROLE_ADMIN;
        if (srv_auth_check(a, bad[i], &r) != ERR_AUTH) {
            print_error("accepted '%s'\n", bad[i] ? bad[i] : "(null)");
            fail();
        }
    }
    // no key set configured: nothing passes
    assert_int_equal(srv_auth_check(NULL, "Bearer " K_INF, &r), ERR_AUTH);
    // a very long header is refused without trouble
    static char huge[100000];
    memcpy(huge, "Bearer ", 7);
    memset(huge + 7, 'x', sizeof huge - 8);
    assert_int_equal(srv_auth_check(a, huge, &r), ERR_AUTH);
    srv_auth_free(a);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(srv_auth_allow(SRV_ROLE_ADMIN, SRV_ROLE_ADMIN), 0);
    assert_int_equal(srv_auth_allow(SRV_ROLE_ADMIN, SRV_ROLE_INFERENCE), 0);
    assert_int_equal(srv_auth_allow(SRV_ROLE_INFERENCE, SRV_ROLE_INFERENCE), 0);
    assert_int_equal(srv_auth_allow(SRV_ROLE_INFERENCE, SRV_ROLE_ADMIN), ERR_FORBIDDEN);
    assert_int_equal(srv_auth_allow(SRV_ROLE_NONE, SRV_ROLE_INFERENCE), ERR_FORBIDDEN);
    assert_int_equal(srv_auth_allow(SRV_ROLE_NONE, SRV_ROLE_NONE), 0);
    assert_string_equal(srv_auth_role_name(SRV_ROLE_ADMIN), "admin");
    assert_string_equal(srv_auth_role_name(SRV_ROLE_INFERENCE), "inference");
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(srv_auth_ct_equal("abc", 3, "abc", 3));
    assert_false(srv_auth_ct_equal("abd", 3, "abc", 3));
    assert_false(srv_auth_ct_equal("xbc", 3, "abc", 3));
    assert_false(srv_auth_ct_equal("ab", 2, "abc", 3));      // prefix
    assert_false(srv_auth_ct_equal("abcd", 4, "abc", 3));    // extension
    assert_false(srv_auth_ct_equal("", 0, "abc", 3));
    assert_true(srv_auth_ct_equal("", 0, "", 0));
    // a difference in the length alone, with equal bytes as far as b goes
    assert_false(srv_auth_ct_equal("abc\0", 4, "abc", 3));
    // the same key prefix but a different final byte, at every position
    char k[33] = "0123456789abcdef0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        char c[33];
        memcpy(c, k, sizeof c);
        c[i] ^= 1;
        assert_false(srv_auth_ct_equal(c, 32, k, 32));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_check_header),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_ct_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
