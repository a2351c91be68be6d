/* tests/test_router.c: server/router.c: exact and {param} patterns, 404, 405 with the Allow
 * list, HEAD implied by GET, method names, hostile paths. */
#include "router.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void h_dummy(struct srv *s, struct srv_req *r)
{
    (void)s;
    (void)r;
}

static const struct srv_route table[] = {
    {"/", SRV_GET, SRV_ROLE_NONE, h_dummy, SRV_BODY_NONE, 0},
    {"/health", SRV_GET, SRV_ROLE_NONE, h_dummy, SRV_BODY_NONE, 0},
    {"/v1/models", SRV_GET, SRV_ROLE_INFERENCE, h_dummy, SRV_BODY_NONE, 0},
    {"/v1/files", SRV_GET | SRV_POST, SRV_ROLE_ADMIN, h_dummy, SRV_BODY_NONE, 0},
    {"/v1/files/{id}", SRV_GET | SRV_DELETE, SRV_ROLE_ADMIN, h_dummy, SRV_BODY_NONE, 0},
    {"/v1/files/{id}/content", SRV_GET, SRV_ROLE_ADMIN, h_dummy, SRV_BODY_NONE, 0},
    {"/v1/jobs/{job}/events/{n}", SRV_GET, SRV_ROLE_ADMIN, h_dummy, SRV_BODY_NONE, 0},
};
#define N (sizeof table / sizeof table[0])

static int match(const char *method, const char *path, struct srv_route_match *m, char *allow)
{
    return srv_router_match(table, N, method, path, m, allow, SRV_ROUTE_ALLOW_CAP);
}

static void test_exact(void **state)
{
    (void)state;
    struct srv_route_match m;
    char allow[SRV_ROUTE_ALLOW_CAP];
    assert_int_equal(match("GET", "/health", &m, allow), 0);
    assert_ptr_equal(m.route, &table[1]);
    assert_int_equal(m.n_params, 0);
    assert_int_equal(match("GET", "/", &m, allow), 0);
    assert_ptr_equal(m.route, &table[0]);
    assert_int_equal(match("HEAD", "/v1/models", &m, allow), 0);    // HEAD rides on GET
    assert_ptr_equal(m.route, &table[2]);
    assert_int_equal(match("POST", "/v1/files", &m, allow), 0);
    assert_ptr_equal(m.route, &table[3]);
}

static void test_not_found(void **state)
{
    (void)state;
    struct srv_route_match m;
    char allow[SRV_ROUTE_ALLOW_CAP] = "x";
    const char *paths[] = {"/nope", "/health/", "//health", "/HEALTH", "/v1", "/v1/models/",
                           "/v1/files//content", "/v1/files/a/b", "health", "", "/v1/jobs/1/events"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        if (match("GET", paths[i], &m, allow) != ERR_NOTFOUND) {
            print_error("'%s' should be 404\n", paths[i]);
            fail();
        }
        assert_string_equal(allow, "");
    }
    assert_int_equal(srv_router_match(table, N, "GET", NULL, &m, NULL, 0), ERR_NOTFOUND);
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[0] = '/';
    big[sizeof big - 1] = '\0';
    assert_int_equal(match("GET", big, &m, allow), ERR_NOTFOUND);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    struct srv_route_match m;
    char allow[SRV_ROUTE_ALLOW_CAP];
    assert_int_equal(match("POST", "/health", &m, allow), ERR_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(match("PUT", "/v1/files", &m, allow), ERR_METHOD);
    assert_string_equal(allow, "GET, HEAD, POST");
    assert_int_equal(match("POST", "/v1/files/abc", &m, allow), ERR_METHOD);
    assert_string_equal(allow, "GET, HEAD, DELETE");
    assert_int_equal(match("BREW", "/health", &m, allow), ERR_METHOD);   // unknown method
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(match("get", "/health", &m, allow), ERR_METHOD);    // case-sensitive
}

static void test_params(void **state)
{
    (void)state;
    struct srv_route_match m;
    char allow[SRV_ROUTE_ALLOW_CAP];
    assert_int_equal(match("DELETE", "/v1/files/file-123", &m, allow), 0);
    assert_ptr_equal(m.route, &table[4]);
    assert_int_equal(m.n_params, 1);
    assert_int_equal(m.params[0].name_len, 2);
    assert_memory_equal(m.params[0].name, "id", 2);
    assert_int_equal(m.params[0].value_len, 8);
    assert_memory_equal(m.params[0].value, "file-123", 8);

    assert_int_equal(match("GET", "/v1/files/f9/content", &m, allow), 0);
    assert_ptr_equal(m.route, &table[5]);
    assert_memory_equal(m.params[0].value, "f9", 2);

    assert_int_equal(match("GET", "/v1/jobs/j1/events/42", &m, allow), 0);
    assert_int_equal(m.n_params, 2);
    assert_memory_equal(m.params[0].name, "job", 3);
    assert_memory_equal(m.params[0].value, "j1", 2);
    assert_memory_equal(m.params[1].name, "n", 1);
    assert_int_equal(m.params[1].value_len, 2);
    assert_memory_equal(m.params[1].value, "42", 2);
}

static void test_method_names(void **state)
{
    (void)state;
    assert_int_equal(srv_router_method("GET"), SRV_GET);
    assert_int_equal(srv_router_method("OPTIONS"), SRV_OPTIONS);
    assert_int_equal(srv_router_method("get"), 0);
    assert_int_equal(srv_router_method(""), 0);
    assert_int_equal(srv_router_method(NULL), 0);
    char buf[SRV_ROUTE_ALLOW_CAP];
    srv_router_allow_text(SRV_GET | SRV_HEAD | SRV_POST | SRV_PUT | SRV_DELETE | SRV_PATCH |
                              SRV_OPTIONS, buf, sizeof buf);
    assert_string_equal(buf, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
    char small[8];
    srv_router_allow_text(SRV_GET | SRV_POST, small, sizeof small);   // truncates, stays terminated
    assert_true(strlen(small) < sizeof small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
