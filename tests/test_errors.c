/* tests/test_errors.c: proto/: the one ERR_* -> HTTP mapping and the OpenAI error body,
 * the generic body checks (content type, JSON object), the model list shape, and UTF-8
 * sanitizing of anything echoed back. */
#include "body.h"
#include "models.h"
#include "status.h"
#include "../common/text.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_every_code_maps(void **state)
{
    (void)state;
    for (int e = -1; e > -ERR__COUNT; e--) {
        struct proto_status st;
        proto_status_for(e, &st);
        if (st.http < 400 || st.http > 599 || !st.type || !st.code) {
            print_error("%s maps to %u\n", err_name(e), st.http);
            fail();
        }
        // 4xx are the client's to fix, 5xx are ours: the OpenAI type must agree
        bool client = st.http < 500;
        bool client_type = strcmp(st.type, "server_error") != 0;
        if (client != client_type) {
            print_error("%s: status %u with type %s\n", err_name(e), st.http, st.type);
            fail();
        }
    }
}

static void test_specific_codes(void **state)
{
    (void)state;
    static const struct {
        int err;
        unsigned http;
        const char *type;
    } want[] = {
        {ERR_INVAL, 400, "invalid_request_error"},
        {ERR_PROTO, 400, "invalid_request_error"},
        {ERR_RANGE, 400, "invalid_request_error"},
        {ERR_AUTH, 401, "authentication_error"},
        {ERR_FORBIDDEN, 403, "permission_error"},
        {ERR_NOTFOUND, 404, "invalid_request_error"},
        {ERR_METHOD, 405, "invalid_request_error"},
        {ERR_TOOLARGE, 413, "invalid_request_error"},
        {ERR_BUSY, 503, "server_error"},
        {ERR_STATE, 503, "server_error"},
        {ERR_INTERNAL, 500, "server_error"},
        {ERR_GPU, 500, "server_error"},
        {ERR_TIMEOUT, 504, "server_error"},
        {0, 500, "server_error"},        // success is not an error: a bug if it gets here
        {-999, 500, "server_error"},
        {7, 500, "server_error"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct proto_status st;
        proto_status_for(want[i].err, &st);
        assert_int_equal(st.http, want[i].http);
        assert_string_equal(st.type, want[i].type);
    }
    struct proto_status st;
    proto_status_for(ERR_BUSY, &st);
    assert_true(st.retry_after > 0);
    proto_status_for(ERR_INVAL, &st);
    assert_int_equal(st.retry_after, 0);
}

static json_t *parse(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!j)
        print_error("not JSON: %s (%s)\n", s, je.text);
    assert_non_null(j);
    return j;
}

static void test_error_body_shape(void **state)
{
    (void)state;
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(proto_status_error_json(ERR_AUTH, "bad key", NULL, &s, &len), 0);
    assert_int_equal(len, strlen(s));
    json_t *j = parse(s);
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(e, "message")), "bad key");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "authentication_error");
    assert_true(json_is_null(json_object_get(e, "param")));
    assert_string_equal(json_string_value(json_object_get(e, "code")), "invalid_api_key");
    json_decref(j);
    free(s);

    assert_int_equal(proto_status_error_json(ERR_RANGE, NULL, "max_tokens", &s, NULL), 0);
    j = parse(s);
    e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "param")), "max_tokens");
    assert_string_equal(json_string_value(json_object_get(e, "message")), err_str(ERR_RANGE));
    json_decref(j);
    free(s);
}

static void test_error_body_hostile_text(void **state)
{
    (void)state;
    // invalid UTF-8, control characters, quotes: the body must still be valid JSON
    const char *msg = "path \"/\xff\xfe\" \x01\n end \xe2\x82\xac \xed\xa0\x80 \xc0\xaf";
    char *s = NULL;
    assert_int_equal(proto_status_error_json(ERR_NOTFOUND, msg, "p\x80", &s, NULL), 0);
    json_t *j = parse(s);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(m);
    assert_non_null(strstr(m, "\xe2\x82\xac"));     // valid multi-byte text survives
    assert_null(strchr(m, '\n'));
    assert_null(strchr(m, '\x01'));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "param")),
                        "p?");
    json_decref(j);
    free(s);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n, want;
    } cases[] = {
        {"a", 1, 1},
        {"\xc3\xa9", 2, 2},
        {"\xe2\x82\xac", 3, 3},
        {"\xf0\x9f\x98\x80", 4, 4},
        {"\xc0\x80", 2, 0},             // overlong
        {"\xe0\x80\xaf", 3, 0},         // overlong
        {"\xed\xa0\x80", 3, 0},         // surrogate
        {"\xf4\x90\x80\x80", 4, 0},     // > U+10FFFF
        {"\xe2\x82", 2, 0},             // truncated
        {"\x80", 1, 0},                 // continuation byte
        {"\xff", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(text_utf8_len((const unsigned char *)cases[i].s, cases[i].n),
                         cases[i].want);
    assert_int_equal(text_utf8_len((const unsigned char *)"", 0), 0);
    char *c = text_escape_dup("ok\xe2\x82 \t", TEXT_JSON);
    assert_string_equal(c, "ok?? ?");
    free(c);
}

/* The one escaper (common/text.h): its three styles, and cutting with "..." that never
 * splits a UTF-8 sequence or a \xNN escape. */
static void test_text_escape(void **state)
{
    (void)state;
    char out[64];
    const char *s = "a'b\x01\xe2\x82 \xc3\xa9\"\\";
    const size_t n = strlen(s);
    assert_string_equal(text_escape(out, sizeof out, s, n, TEXT_JSON), "a'b??? \xc3\xa9\"\\");
    assert_string_equal(text_escape(out, sizeof out, s, n, TEXT_MESSAGE), "a?b??? \xc3\xa9\"\\");
    assert_string_equal(text_escape(out, sizeof out, s, n, TEXT_LOG),
                        "a'b\\x01\\xe2\\x82 \\xc3\\xa9\\x22\\x5c");
    // fits exactly (10 bytes + NUL in 11); one byte less: cut to cap - 4 bytes + "..."
    assert_string_equal(text_escape(out, 11, "abcdefghij", 10, TEXT_JSON), "abcdefghij");
    assert_string_equal(text_escape(out, 10, "abcdefghij", 10, TEXT_JSON), "abcdef...");
    assert_string_equal(text_escape(out, 7, "\xc3\xa9\xc3\xa9\xc3\xa9", 6, TEXT_JSON),
                        "\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_string_equal(text_escape(out, 6, "\xc3\xa9\xc3\xa9\xc3\xa9", 6, TEXT_JSON),
                        "\xc3\xa9...");
    assert_string_equal(text_escape(out, 6, "a\xc3\xa9\xc3\xa9\xc3\xa9", 7, TEXT_JSON),
                        "a...");     // the first 2-byte sequence would not fit whole
    assert_string_equal(text_escape(out, 8, "\x01\x02\x03", 3, TEXT_LOG), "\\x01...");
    assert_string_equal(text_escape(out, 4, "abcdef", 6, TEXT_JSON), "...");
    // a NUL inside the bytes is a control byte, not the end
    assert_string_equal(text_escape(out, sizeof out, "a\0b", 3, TEXT_MESSAGE), "a?b");
    char *d = text_escape_dup("\x7f\xff ok", TEXT_LOG);
    assert_string_equal(d, "\\x7f\\xff ok");
    free(d);
}

static void test_content_type(void **state)
{
    (void)state;
    const char *yes[] = {"application/json", "application/json; charset=utf-8",
                         "Application/JSON", "  application/json  ", "application/json;"};
    const char *no[] = {NULL, "", "text/plain", "application/jsonx", "application/json-patch+json",
                        "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                        "application/ json"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(proto_body_is_json_type(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(proto_body_is_json_type(no[i]));
}

static void test_body_json(void **state)
{
    (void)state;
    json_t *j = NULL;
    const char *why = NULL;
    const char ok[] = "{\"model\":\"m\",\"n\":[1,2,{\"x\":null}]}";
    assert_int_equal(proto_body_parse_json(ok, sizeof ok - 1, &j, &why), 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m");
    json_decref(j);

    static const struct {
        const char *s;
        size_t n;
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {"{", 1, "not valid JSON"},
        {"{\"a\":1,}", 8, "not valid JSON"},
        {"[1,2]", 5, "must be a JSON object"},
        {"\"str\"", 5, "must be a JSON object"},
        {"{\"a\":1}{\"b\":2}", 14, "after the JSON value"},
        {"{\"a\":1,\"a\":2}", 13, "duplicate key"},
        {"{\"a\":\"\\u0000\"}", 14, "NUL"},
        {"{\"a\":\"\xff\"}", 9, "UTF-8"},
        {"{\"a\":1}\0", 8, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = NULL;
        why = NULL;
        int rc = proto_body_parse_json(bad[i].s, bad[i].n, &j, &why);
        if (rc != ERR_PROTO || j || !why || (bad[i].why && !strstr(why, bad[i].why))) {
            print_error("case %zu: rc=%d why=%s\n", i, rc, why ? why : "(null)");
            fail();
        }
    }
}

static void test_body_depth(void **state)
{
    (void)state;
    char buf[512];
    size_t n = 0;
    // depth exactly the limit passes, one more fails
    for (int depth = PROTO_BODY_MAX_DEPTH; depth <= PROTO_BODY_MAX_DEPTH + 1; depth++) {
        n = 0;
        buf[n++] = '{';
        buf[n++] = '"';
        buf[n++] = 'a';
        buf[n++] = '"';
        buf[n++] = ':';
        for (int i = 1; i < depth; i++)
            buf[n++] = '[';
        for (int i = 1; i < depth; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        json_t *j = NULL;
        const char *why = NULL;
        int rc = proto_body_parse_json(buf, n, &j, &why);
        if (depth == PROTO_BODY_MAX_DEPTH) {
            assert_int_equal(rc, 0);
            json_decref(j);
        } else {
            assert_int_equal(rc, ERR_PROTO);
            assert_non_null(strstr(why, "nested too deeply"));
        }
    }
    // far past jansson's own limit: still a clean error, no crash
    static char deep[20000];
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"a\":", 4);
    k += 4;
    while (k < sizeof deep - 2)
        deep[k++] = '[';
    json_t *j = NULL;
    const char *why = NULL;
    assert_int_equal(proto_body_parse_json(deep, k, &j, &why), ERR_PROTO);
}

static void test_models_list(void **state)
{
    (void)state;
    struct proto_model m[2] = {
        {.id = "stories", .created = 1700000000, .owned_by = NULL, .arch = "llama", .dtype = "f32",
         .n_params = 260000, .n_ctx_train = 512, .n_vocab = 512},
        {.id = "bad\xff" "name", .created = 1},
    };
    json_t *j = proto_models_list(m, 2);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    json_t *a = json_array_get(data, 0);
    assert_string_equal(json_string_value(json_object_get(a, "id")), "stories");
    assert_string_equal(json_string_value(json_object_get(a, "object")), "model");
    assert_int_equal(json_integer_value(json_object_get(a, "created")), 1700000000);
    assert_string_equal(json_string_value(json_object_get(a, "owned_by")), "orthod");
    json_t *meta = json_object_get(a, "meta");
    assert_string_equal(json_string_value(json_object_get(meta, "arch")), "llama");
    assert_int_equal(json_integer_value(json_object_get(meta, "n_ctx_train")), 512);
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 1), "id")),
                        "bad?name");
    json_decref(j);
    j = proto_models_list(NULL, 0);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_maps),
        cmocka_unit_test(test_specific_codes),
        cmocka_unit_test(test_error_body_shape),
        cmocka_unit_test(test_error_body_hostile_text),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_text_escape),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_body_json),
        cmocka_unit_test(test_body_depth),
        cmocka_unit_test(test_models_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
