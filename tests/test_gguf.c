/* tests/test_gguf.c: the GGUF reader, builder and writer (engine/format/gguf.c).
 * Owns: round trips of every metadata type and every tensor dtype, the real files in
 * ../shared/models, a table of hand-made malformed files (each must give ERR_CORRUPT or
 * ERR_UNSUPPORTED and a message naming the problem), every truncation of a valid file,
 * getter type rules, and the writer's atomic replace. */
#include "../engine/format/gguf.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"   /* cmocka, the shared models, the GGUF byte builder (struct buf) */

/* ---------------------------------------------------------------------------------- */
/* helpers: temp dirs */

static char *make_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/orthod-test-gguf-XXXXXX", t && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

/* Removes every file in dir and dir itself; returns how many files it held. */
static int rm_tmpdir(char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
        n++;
    }
    closedir(d);
    rmdir(dir);
    free(dir);
    return n;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static bool str_eq(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---------------------------------------------------------------------------------- */
/* every metadata type, read from hand-encoded bytes, written, read back */

static void put_all_types(struct buf *b)
{
    put_header(b, 3, 0, 20);
    put_key(b, "t.u8", ENG_GGUF_UINT8); put_u8(b, 200);
    put_key(b, "t.i8", ENG_GGUF_INT8); put_u8(b, (uint8_t)-5);
    put_key(b, "t.u16", ENG_GGUF_UINT16); put_u16(b, 60000);
    put_key(b, "t.i16", ENG_GGUF_INT16); put_u16(b, (uint16_t)-30000);
    put_key(b, "t.u32", ENG_GGUF_UINT32); put_u32(b, 4000000000u);
    put_key(b, "t.i32", ENG_GGUF_INT32); put_u32(b, (uint32_t)-2000000000);
    put_key(b, "t.f32", ENG_GGUF_FLOAT32); put_f32(b, 1.5f);
    put_key(b, "t.bool", ENG_GGUF_BOOL); put_u8(b, 1);
    put_key(b, "t.str", ENG_GGUF_STRING); put_str(b, "h\xc3\xa9llo");
    put_key(b, "t.u64", ENG_GGUF_UINT64); put_u64(b, 1ull << 40);
    put_key(b, "t.i64", ENG_GGUF_INT64); put_u64(b, (uint64_t)-7);
    put_key(b, "t.f64", ENG_GGUF_FLOAT64); put_f64(b, 0.25);
    put_key(b, "t.small_u64", ENG_GGUF_UINT64); put_u64(b, 77);
    put_key(b, "t.arr_i16", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_INT16); put_u64(b, 3);
    put_u16(b, 1); put_u16(b, (uint16_t)-2); put_u16(b, 3);
    put_key(b, "t.arr_f64", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_FLOAT64); put_u64(b, 2);
    put_f64(b, 1.0); put_f64(b, -2.5);
    put_key(b, "t.arr_bool", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_BOOL); put_u64(b, 2);
    put_u8(b, 0); put_u8(b, 1);
    put_key(b, "t.arr_str", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_STRING); put_u64(b, 3);
    put_str(b, "a"); put_str(b, ""); put_str(b, "\xe2\x96\x81the");
    put_key(b, "t.arr_empty", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_UINT32); put_u64(b, 0);
    put_key(b, "t.arr_str_empty", ENG_GGUF_ARRAY); put_u32(b, ENG_GGUF_STRING); put_u64(b, 0);
    put_key(b, "t.str_empty", ENG_GGUF_STRING); put_str(b, "");
}

static void check_all_types(const eng_gguf_t *g)
{
    assert_int_equal(eng_gguf_n_kv(g), 20);
    assert_int_equal(eng_gguf_n_tensors(g), 0);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    bool bo;
    const char *s;
    size_t len;

    /* types of each key, in file order */
    static const enum eng_gguf_type types[] = {
        ENG_GGUF_UINT8, ENG_GGUF_INT8, ENG_GGUF_UINT16, ENG_GGUF_INT16, ENG_GGUF_UINT32,
        ENG_GGUF_INT32, ENG_GGUF_FLOAT32, ENG_GGUF_BOOL, ENG_GGUF_STRING, ENG_GGUF_UINT64,
        ENG_GGUF_INT64, ENG_GGUF_FLOAT64, ENG_GGUF_UINT64, ENG_GGUF_ARRAY, ENG_GGUF_ARRAY,
        ENG_GGUF_ARRAY, ENG_GGUF_ARRAY, ENG_GGUF_ARRAY, ENG_GGUF_ARRAY, ENG_GGUF_STRING};
    for (int i = 0; i < 20; i++)
        assert_int_equal(eng_gguf_type_at(g, i), types[i]);
    const char *k = eng_gguf_key_at(g, 3, &len);
    assert_true(str_eq(k, len, "t.i16"));
    assert_int_equal(eng_gguf_find_key(g, "t.i16"), 3);
    assert_int_equal(eng_gguf_find_key(g, "t.i1"), -1);
    assert_int_equal(eng_gguf_find_key(g, "t.i166"), -1);

    /* integer getters accept any integer type whose value fits */
    assert_int_equal(eng_gguf_get_u32(g, "t.u8", &u32), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(eng_gguf_get_i32(g, "t.i8", &i32), 0);
    assert_int_equal(i32, -5);
    assert_int_equal(eng_gguf_get_u32(g, "t.i8", &u32), ERR_CORRUPT);     /* negative */
    assert_int_equal(eng_gguf_get_u64(g, "t.i8", &u64), ERR_CORRUPT);
    assert_int_equal(eng_gguf_get_u32(g, "t.u16", &u32), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(eng_gguf_get_i32(g, "t.i16", &i32), 0);
    assert_int_equal(i32, -30000);
    assert_int_equal(eng_gguf_get_u32(g, "t.u32", &u32), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(eng_gguf_get_i32(g, "t.u32", &i32), ERR_CORRUPT);   /* > INT32_MAX */
    assert_int_equal(eng_gguf_get_i32(g, "t.i32", &i32), 0);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(eng_gguf_get_u64(g, "t.u64", &u64), 0);
    assert_true(u64 == (1ull << 40));
    assert_int_equal(eng_gguf_get_u32(g, "t.u64", &u32), ERR_CORRUPT);   /* too big */
    assert_int_equal(eng_gguf_get_u32(g, "t.small_u64", &u32), 0);
    assert_int_equal(u32, 77);
    assert_int_equal(eng_gguf_get_i32(g, "t.i64", &i32), 0);
    assert_int_equal(i32, -7);
    assert_int_equal(eng_gguf_get_u32(g, "t.f32", &u32), ERR_CORRUPT);   /* not an integer */
    assert_int_equal(eng_gguf_get_u32(g, "t.bool", &u32), ERR_CORRUPT);
    assert_int_equal(eng_gguf_get_u32(g, "t.str", &u32), ERR_CORRUPT);

    assert_int_equal(eng_gguf_get_f32(g, "t.f32", &f), 0);
    assert_true(f == 1.5f);
    assert_int_equal(eng_gguf_get_f32(g, "t.f64", &f), 0);
    assert_true(f == 0.25f);
    assert_int_equal(eng_gguf_get_f32(g, "t.u32", &f), ERR_CORRUPT);

    assert_int_equal(eng_gguf_get_bool(g, "t.bool", &bo), 0);
    assert_true(bo);
    assert_int_equal(eng_gguf_get_bool(g, "t.u8", &bo), ERR_CORRUPT);

    assert_int_equal(eng_gguf_get_str(g, "t.str", &s, &len), 0);
    assert_true(str_eq(s, len, "h\xc3\xa9llo"));
    assert_int_equal(eng_gguf_get_str(g, "t.str_empty", &s, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(eng_gguf_get_str(g, "t.u8", &s, &len), ERR_CORRUPT);

    /* missing keys */
    assert_int_equal(eng_gguf_get_u32(g, "nope", &u32), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_i32(g, "nope", &i32), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_u64(g, "nope", &u64), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_f32(g, "nope", &f), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_bool(g, "nope", &bo), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_str(g, "nope", &s, &len), ERR_NOTFOUND);

    /* arrays */
    enum eng_gguf_type elem;
    uint64_t n;
    const void *data;
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_i16", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_INT16);
    assert_int_equal(n, 3);
    int16_t v16[3];
    memcpy(v16, data, sizeof v16);
    assert_int_equal(v16[0], 1);
    assert_int_equal(v16[1], -2);
    assert_int_equal(v16[2], 3);
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_f64", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_FLOAT64);
    double d2[2];
    memcpy(d2, data, sizeof d2);
    assert_true(d2[0] == 1.0 && d2[1] == -2.5);
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_bool", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_BOOL);
    assert_int_equal(((const uint8_t *)data)[1], 1);
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_str", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_STRING);
    assert_int_equal(n, 3);
    assert_null(data);
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_str", 0, &s, &len), 0);
    assert_true(str_eq(s, len, "a"));
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_str", 1, &s, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_str", 2, &s, &len), 0);
    assert_true(str_eq(s, len, "\xe2\x96\x81the"));
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_str", 3, &s, &len), ERR_RANGE);
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_i16", 0, &s, &len), ERR_CORRUPT);
    assert_int_equal(eng_gguf_get_arr_str(g, "nope", 0, &s, &len), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_arr(g, "t.u8", &elem, &n, &data), ERR_CORRUPT);
    assert_int_equal(eng_gguf_get_arr(g, "nope", &elem, &n, &data), ERR_NOTFOUND);
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_empty", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_UINT32);
    assert_int_equal(n, 0);
    assert_int_equal(eng_gguf_get_arr(g, "t.arr_str_empty", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_STRING);
    assert_int_equal(n, 0);
    assert_int_equal(eng_gguf_get_arr_str(g, "t.arr_str_empty", 0, &s, &len), ERR_RANGE);
    assert_int_equal(eng_gguf_get_u32(g, "t.arr_empty", &u32), ERR_CORRUPT);
}

static void test_all_types_round_trip(void **state)
{
    (void)state;
    struct buf b = {0};
    put_all_types(&b);
    struct errbuf eb = {{0}};
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_open_mem(b.p, b.n, &g, &eb), 0);
    assert_int_equal(eng_gguf_version(g), 3);
    assert_int_equal(eng_gguf_alignment(g), 32);
    assert_int_equal(eng_gguf_file_size(g), b.n);
    check_all_types(g);

    /* written and read back: same answers, and the bytes equal the input (vocab-only
     * files have no padding after the metadata) */
    char *dir = make_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/all.gguf", dir);
    assert_int_equal(eng_gguf_write(g, path, &eb), 0);
    eng_gguf_free(g);
    size_t n;
    uint8_t *p = read_file(path, &n);
    assert_int_equal(n, b.n);
    assert_memory_equal(p, b.p, n);
    free(p);
    assert_int_equal(eng_gguf_open(path, &g, &eb), 0);
    check_all_types(g);
    assert_int_equal(eng_gguf_file_size(g), b.n);
    eng_gguf_free(g);
    assert_int_equal(rm_tmpdir(dir), 1);     /* no temporary file left behind */

    /* GGUF v2 has the same layout */
    memcpy(b.p + 4, &(uint32_t){2}, 4);
    assert_int_equal(eng_gguf_open_mem(b.p, b.n, &g, &eb), 0);
    assert_int_equal(eng_gguf_version(g), 2);
    check_all_types(g);
    eng_gguf_free(g);
    free(b.p);
}

/* The builder's setters: same getters, replace semantics, written as v3. */
static void test_builder_metadata(void **state)
{
    (void)state;
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_new(&g), 0);
    assert_int_equal(eng_gguf_version(g), 3);
    assert_int_equal(eng_gguf_alignment(g), 32);
    assert_int_equal(eng_gguf_file_size(g), 0);
    assert_int_equal(eng_gguf_n_kv(g), 0);
    assert_int_equal(eng_gguf_find_key(g, "a"), -1);

    assert_int_equal(eng_gguf_set_u32(g, "k.u32", 7), 0);
    assert_int_equal(eng_gguf_set_i32(g, "k.i32", -9), 0);
    assert_int_equal(eng_gguf_set_u64(g, "k.u64", UINT64_MAX), 0);
    assert_int_equal(eng_gguf_set_f32(g, "k.f32", -0.5f), 0);
    assert_int_equal(eng_gguf_set_bool(g, "k.bool", true), 0);
    assert_int_equal(eng_gguf_set_str(g, "k.str", "abc", 3), 0);
    const float fa[3] = {1, 2, 3};
    assert_int_equal(eng_gguf_set_arr(g, "k.arr", ENG_GGUF_FLOAT32, 3, fa), 0);
    const char *strs[] = {"x", "", "yz"};
    const size_t lens[] = {1, 0, 2};
    assert_int_equal(eng_gguf_set_arr_str(g, "k.strs", 3, strs, lens), 0);
    assert_int_equal(eng_gguf_n_kv(g), 8);

    /* replace keeps the count and the position, changes type and value */
    assert_int_equal(eng_gguf_set_str(g, "k.u32", "now a string", 12), 0);
    assert_int_equal(eng_gguf_n_kv(g), 8);
    assert_int_equal(eng_gguf_find_key(g, "k.u32"), 0);
    assert_int_equal(eng_gguf_type_at(g, 0), ENG_GGUF_STRING);
    const char *s;
    size_t len;
    assert_int_equal(eng_gguf_get_str(g, "k.u32", &s, &len), 0);
    assert_true(str_eq(s, len, "now a string"));
    uint32_t u32;
    assert_int_equal(eng_gguf_get_u32(g, "k.u32", &u32), ERR_CORRUPT);

    /* bad arguments */
    assert_int_equal(eng_gguf_set_u32(g, "", 1), ERR_INVAL);
    assert_int_equal(eng_gguf_set_arr(g, "k.bad", ENG_GGUF_STRING, 1, fa), ERR_INVAL);
    assert_int_equal(eng_gguf_set_arr(g, "k.bad", ENG_GGUF_ARRAY, 1, fa), ERR_INVAL);
    assert_int_equal(eng_gguf_set_arr(g, "k.bad", (enum eng_gguf_type)99, 1, fa), ERR_INVAL);
    const uint8_t badbool[1] = {2};
    assert_int_equal(eng_gguf_set_arr(g, "k.bad", ENG_GGUF_BOOL, 1, badbool), ERR_INVAL);
    assert_int_equal(eng_gguf_set_u32(g, "general.alignment", 48), ERR_INVAL);
    assert_int_equal(eng_gguf_set_u32(g, "general.alignment", 0), ERR_INVAL);
    assert_int_equal(eng_gguf_find_key(g, "k.bad"), -1);
    assert_int_equal(eng_gguf_find_key(g, "general.alignment"), -1);
    assert_int_equal(eng_gguf_n_kv(g), 8);
    assert_int_equal(eng_gguf_alignment(g), 32);

    /* many keys: the index grows and every key stays findable */
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "many.%d", i);
        assert_int_equal(eng_gguf_set_i32(g, key, i), 0);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "many.%d", i);
        int32_t v;
        assert_int_equal(eng_gguf_get_i32(g, key, &v), 0);
        assert_int_equal(v, i);
        assert_int_equal(eng_gguf_find_key(g, key), 8 + i);
    }

    char *dir = make_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/b.gguf", dir);
    struct errbuf eb = {{0}};
    assert_int_equal(eng_gguf_write(g, path, &eb), 0);
    eng_gguf_t *r = NULL;
    assert_int_equal(eng_gguf_open(path, &r, &eb), 0);
    assert_int_equal(eng_gguf_n_kv(r), 1008);
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++) {
        size_t l1, l2;
        const char *k1 = eng_gguf_key_at(g, i, &l1), *k2 = eng_gguf_key_at(r, i, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(k1, k2, l1);
        assert_int_equal(eng_gguf_type_at(g, i), eng_gguf_type_at(r, i));
    }
    int32_t i32;
    uint64_t u64;
    float f;
    bool bo;
    assert_int_equal(eng_gguf_get_i32(r, "k.i32", &i32), 0);
    assert_int_equal(i32, -9);
    assert_int_equal(eng_gguf_get_u64(r, "k.u64", &u64), 0);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(eng_gguf_get_f32(r, "k.f32", &f), 0);
    assert_true(f == -0.5f);
    assert_int_equal(eng_gguf_get_bool(r, "k.bool", &bo), 0);
    assert_true(bo);
    enum eng_gguf_type elem;
    uint64_t n;
    const void *data;
    assert_int_equal(eng_gguf_get_arr(r, "k.arr", &elem, &n, &data), 0);
    assert_int_equal(elem, ENG_GGUF_FLOAT32);
    assert_int_equal(n, 3);
    assert_memory_equal(data, fa, sizeof fa);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(eng_gguf_get_arr_str(r, "k.strs", i, &s, &len), 0);
        assert_int_equal(len, lens[i]);
        assert_memory_equal(s, strs[i], len);
    }
    eng_gguf_free(r);
    eng_gguf_free(g);
    assert_int_equal(rm_tmpdir(dir), 1);
}

/* ---------------------------------------------------------------------------------- */
/* tensors of every dtype the table knows */

static void test_tensors_every_dtype(void **state)
{
    (void)state;
    for (int align = 32; align <= 256; align *= 8) {
        eng_gguf_t *g = NULL;
        assert_int_equal(eng_gguf_new(&g), 0);
        if (align != 32)
            assert_int_equal(eng_gguf_set_u32(g, "general.alignment", (uint32_t)align), 0);
        assert_int_equal(eng_gguf_alignment(g), (size_t)align);
        assert_int_equal(eng_gguf_set_str(g, "general.architecture", "llama", 5), 0);
        uint8_t *bufs[ENG_DTYPE__MAX] = {0};
        int n_added = 0;
        uint32_t seed = 12345;
        for (int t = 0; t < ENG_DTYPE__MAX; t++) {
            int64_t blk = eng_dtype_block_elems((enum eng_dtype)t);
            if (blk <= 0)
                continue;
            /* 3 rows of 2 blocks, as a 2-D tensor; odd dtypes also as 3-D and 4-D */
            int n_dims = 2 + (t % 3);
            int64_t ne[4] = {2 * blk, 3, 2, 1};
            size_t nbytes = eng_dtype_row_bytes((enum eng_dtype)t, ne[0]);
            for (int d = 1; d < n_dims; d++)
                nbytes *= (size_t)ne[d];
            bufs[t] = malloc(nbytes);
            for (size_t i = 0; i < nbytes; i++) {
                seed = seed * 1664525u + 1013904223u;
                bufs[t][i] = (uint8_t)(seed >> 24);
            }
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", t, eng_dtype_name((enum eng_dtype)t));
            assert_int_equal(eng_gguf_add_tensor(g, name, (enum eng_dtype)t, n_dims, ne, bufs[t],
                                                 nbytes), 0);
            /* the builder reports the tensor as given */
            struct eng_gguf_tensor ti;
            eng_gguf_tensor_at(g, eng_gguf_find_tensor(g, name), &ti);
            assert_string_equal(ti.name, name);
            assert_int_equal(ti.nbytes, nbytes);
            assert_ptr_equal(ti.data, bufs[t]);
            assert_int_equal(ti.offset, 0);
            n_added++;
        }
        assert_true(n_added >= 20);
        assert_int_equal(eng_gguf_n_tensors(g), n_added);

        char *dir = make_tmpdir();
        char path[1024];
        snprintf(path, sizeof path, "%s/t.gguf", dir);
        struct errbuf eb = {{0}};
        assert_int_equal(eng_gguf_write(g, path, &eb), 0);
        eng_gguf_t *r = NULL;
        assert_int_equal(eng_gguf_open(path, &r, &eb), 0);
        assert_int_equal(eng_gguf_alignment(r), (size_t)align);
        assert_int_equal(eng_gguf_n_tensors(r), n_added);
        uint64_t prev_end = 0;
        for (int64_t i = 0; i < n_added; i++) {
            struct eng_gguf_tensor a, b;
            eng_gguf_tensor_at(g, i, &a);
            eng_gguf_tensor_at(r, i, &b);
            assert_string_equal(a.name, b.name);
            assert_int_equal(a.dtype, b.dtype);
            assert_int_equal(a.n_dims, b.n_dims);
            for (int d = 0; d < 4; d++)
                assert_int_equal(a.ne[d], b.ne[d]);
            assert_int_equal(a.nbytes, b.nbytes);
            assert_memory_equal(a.data, b.data, a.nbytes);
            /* packed in order, each offset aligned, data pointer aligned in the mmap */
            assert_int_equal(b.offset % (uint64_t)align, 0);
            assert_int_equal((uintptr_t)b.data % (uintptr_t)align, 0);
            assert_true(b.offset >= prev_end);
            prev_end = b.offset + b.nbytes;
            assert_int_equal(eng_gguf_find_tensor(r, b.name), i);
        }
        assert_int_equal(eng_gguf_find_tensor(r, "missing"), -1);
        /* the file ends at the padded end of the last tensor */
        assert_int_equal(eng_gguf_file_size(r) % (size_t)align, 0);
        eng_gguf_free(r);
        eng_gguf_free(g);
        for (int t = 0; t < ENG_DTYPE__MAX; t++)
            free(bufs[t]);
        assert_int_equal(rm_tmpdir(dir), 1);
    }
}

static void test_builder_tensor_errors(void **state)
{
    (void)state;
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_new(&g), 0);
    float data[64] = {0};
    int64_t ne[4] = {8, 2, 1, 1};
    assert_int_equal(eng_gguf_add_tensor(g, "a", ENG_DTYPE_F32, 2, ne, data, 64), 0);
    assert_int_equal(eng_gguf_add_tensor(g, "a", ENG_DTYPE_F32, 2, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 2, ne, data, 60), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 0, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 5, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "", ENG_DTYPE_F32, 2, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", (enum eng_dtype)4, 2, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_Q8_0, 2, ne, data, 64), ERR_INVAL);
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 2, ne, NULL, 64), ERR_INVAL);
    int64_t neg[2] = {-8, -2};
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 2, neg, data, 64), ERR_INVAL);
    int64_t huge[4] = {INT64_MAX / 2, 4, 1, 1};
    assert_int_equal(eng_gguf_add_tensor(g, "b", ENG_DTYPE_F32, 2, huge, data, 64), ERR_INVAL);
    char longname[65];
    memset(longname, 'x', 64);
    longname[64] = '\0';
    assert_int_equal(eng_gguf_add_tensor(g, longname, ENG_DTYPE_F32, 2, ne, data, 64), ERR_INVAL);
    longname[63] = '\0';     /* 63 bytes: the limit, accepted */
    assert_int_equal(eng_gguf_add_tensor(g, longname, ENG_DTYPE_F32, 2, ne, data, 64), 0);
    assert_int_equal(eng_gguf_n_tensors(g), 2);

    /* names handed out stay valid while more tensors are added */
    struct eng_gguf_tensor t0;
    eng_gguf_tensor_at(g, 0, &t0);
    char nm[16];
    for (int i = 0; i < 300; i++) {
        snprintf(nm, sizeof nm, "t%d", i);
        assert_int_equal(eng_gguf_add_tensor(g, nm, ENG_DTYPE_F32, 1, ne, data, 32), 0);
    }
    assert_string_equal(t0.name, "a");
    assert_int_equal(eng_gguf_find_tensor(g, "t299"), 301);
    eng_gguf_free(g);
    eng_gguf_free(NULL);
}

struct hold_log {
    int order[4];
    int n;
};
struct hold_res {
    int id;
    struct hold_log *log;
};
static void release_fn(void *res)
{
    struct hold_res *r = res;
    r->log->order[r->log->n++] = r->id;
}

static void test_hold(void **state)
{
    (void)state;
    struct hold_log log = {{0}, 0};
    struct hold_res a = {1, &log}, b = {2, &log}, c = {3, &log};
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_new(&g), 0);
    assert_int_equal(eng_gguf_hold(g, &a, release_fn), 0);
    assert_int_equal(eng_gguf_hold(g, &b, release_fn), 0);
    assert_int_equal(eng_gguf_hold(g, &c, release_fn), 0);
    assert_int_equal(log.n, 0);
    eng_gguf_free(g);
    assert_int_equal(log.n, 3);            /* reverse order of holding */
    assert_int_equal(log.order[0], 3);
    assert_int_equal(log.order[1], 2);
    assert_int_equal(log.order[2], 1);
}

/* ---------------------------------------------------------------------------------- */
/* the real files in ../shared/models */

struct shared_case {
    const char *file;
    int64_t n_kv, n_tensors;
    const char *arch, *tok_model;
    uint64_t n_tokens, n_merges;
};

static const struct shared_case shared_cases[] = {
    {"ggml-vocab-llama-spm.gguf", 22, 0, "llama", "llama", 32000, 0},
    {"ggml-vocab-gpt-2.gguf", 16, 0, "gpt2", "gpt2", 50257, 50000},
    {"ggml-vocab-bert-bge.gguf", 20, 0, "bert", "bert", 30522, 0},
    {"stories260K.gguf", 19, 48, "llama", "llama", 512, 0},
    {"llama-2-tiny-random.gguf", 18, 12, "llama", "llama", 32000, 0},
    {"mmproj-tinygemma3.gguf", 20, 71, "clip", NULL, 0, 0},
};

static void test_shared_models(void **state)
{
    (void)state;
    char path[1024];
    tu_model_path(path, sizeof path, "stories260K.gguf");
    if (access(path, R_OK) != 0) {
        print_message("shared models not found at %s (set ORTHOD_SHARED)\n", tu_shared_dir());
        skip();
    }
    char *dir = make_tmpdir();
    for (size_t c = 0; c < sizeof shared_cases / sizeof shared_cases[0]; c++) {
        const struct shared_case *sc = &shared_cases[c];
        tu_model_path(path, sizeof path, sc->file);
        struct errbuf eb = {{0}};
        eng_gguf_t *g = NULL;
        int rc = eng_gguf_open(path, &g, &eb);
        if (rc)
            print_error("%s: %s\n", sc->file, eb.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(eng_gguf_version(g), 3);
        assert_int_equal(eng_gguf_n_kv(g), sc->n_kv);
        assert_int_equal(eng_gguf_n_tensors(g), sc->n_tensors);
        const char *s;
        size_t len;
        assert_int_equal(eng_gguf_get_str(g, "general.architecture", &s, &len), 0);
        assert_true(str_eq(s, len, sc->arch));
        if (sc->tok_model) {
            assert_int_equal(eng_gguf_get_str(g, "tokenizer.ggml.model", &s, &len), 0);
            assert_true(str_eq(s, len, sc->tok_model));
            enum eng_gguf_type elem;
            uint64_t n;
            const void *data;
            assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &elem, &n, &data), 0);
            assert_int_equal(elem, ENG_GGUF_STRING);
            assert_int_equal(n, sc->n_tokens);
            assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &elem, &n, &data),
                             0);
            assert_int_equal(elem, ENG_GGUF_INT32);
            assert_int_equal(n, sc->n_tokens);
            if (sc->n_merges) {
                assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.merges", &elem, &n, &data),
                                 0);
                assert_int_equal(n, sc->n_merges);
            }
        }
        for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
            struct eng_gguf_tensor t;
            eng_gguf_tensor_at(g, i, &t);
            assert_true(t.n_dims >= 1 && t.n_dims <= 4);
            assert_int_equal(t.offset % 32, 0);
            assert_int_equal((uintptr_t)t.data % 32, 0);
            assert_int_equal(eng_gguf_find_tensor(g, t.name), i);
        }

        /* written back: byte-identical to llama.cpp's own writer output */
        char out[1024];
        snprintf(out, sizeof out, "%s/%s", dir, sc->file);
        assert_int_equal(eng_gguf_write(g, out, &eb), 0);
        size_t n1, n2;
        uint8_t *p1 = read_file(path, &n1), *p2 = read_file(out, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(p1, p2, n1);
        free(p1);
        free(p2);
        eng_gguf_free(g);
    }

    /* specific facts from MANIFEST.md */
    tu_model_path(path, sizeof path, "stories260K.gguf");
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_open(path, &g, NULL), 0);
    uint32_t u;
    assert_int_equal(eng_gguf_get_u32(g, "llama.embedding_length", &u), 0);
    assert_int_equal(u, 64);
    assert_int_equal(eng_gguf_get_u32(g, "llama.attention.head_count_kv", &u), 0);
    assert_int_equal(u, 4);
    float eps;
    assert_int_equal(eng_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    assert_true(fabsf(eps - 1e-5f) < 1e-12f);
    int64_t ti = eng_gguf_find_tensor(g, "token_embd.weight");
    assert_true(ti >= 0);
    struct eng_gguf_tensor te, to;
    eng_gguf_tensor_at(g, ti, &te);
    assert_int_equal(te.dtype, ENG_DTYPE_F32);
    assert_int_equal(te.ne[0], 64);
    assert_int_equal(te.ne[1], 512);
    eng_gguf_tensor_at(g, eng_gguf_find_tensor(g, "output.weight"), &to);
    assert_memory_equal(te.data, to.data, te.nbytes);     /* byte-equal per MANIFEST */
    assert_int_equal(eng_gguf_file_size(g), 1185376);
    eng_gguf_free(g);

    tu_model_path(path, sizeof path, "llama-2-tiny-random.gguf");
    assert_int_equal(eng_gguf_open(path, &g, NULL), 0);
    eng_gguf_tensor_at(g, eng_gguf_find_tensor(g, "token_embd.weight"), &te);
    assert_int_equal(te.dtype, ENG_DTYPE_F16);
    assert_int_equal(te.ne[0], 8);
    assert_int_equal(te.ne[1], 32000);
    const char *s;
    size_t len;
    assert_int_equal(eng_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 15043, &s, &len), 0);
    assert_true(str_eq(s, len, "\xe2\x96\x81Hello"));
    eng_gguf_free(g);

    tu_model_path(path, sizeof path, "mmproj-tinygemma3.gguf");
    assert_int_equal(eng_gguf_open(path, &g, NULL), 0);
    int n_q8 = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        eng_gguf_tensor_at(g, i, &te);
        n_q8 += te.dtype == ENG_DTYPE_Q8_0;
    }
    assert_true(n_q8 > 0);
    eng_gguf_free(g);
    assert_int_equal(rm_tmpdir(dir), (int)(sizeof shared_cases / sizeof shared_cases[0]));
}

/* ---------------------------------------------------------------------------------- */
/* malformed files */

/* A small valid model-shaped file: 2 keys, 2 tensors. Parameters let cases break it. */
struct mk {
    uint32_t version;
    uint64_t n_tensors_hdr, n_kv_hdr;   /* UINT64_MAX: the true count */
    uint32_t align;                     /* 0: no general.alignment key */
    uint32_t t1_type, t1_ndims;
    uint64_t t1_ne[5];
    uint64_t t1_off;
    const char *t0_name, *t1_name;
    uint64_t t0_off;
};

static void mk_default(struct mk *m)
{
    memset(m, 0, sizeof *m);
    m->version = 3;
    m->n_tensors_hdr = m->n_kv_hdr = UINT64_MAX;
    m->t1_type = ENG_DTYPE_F32;
    m->t1_ndims = 2;
    m->t1_ne[0] = 4;
    m->t1_ne[1] = 2;
    m->t1_ne[2] = m->t1_ne[3] = m->t1_ne[4] = 1;
    m->t1_off = 32;
    m->t0_name = "token_embd.weight";
    m->t1_name = "blk.3.attn_q.weight";
}

static void mk_build(const struct mk *m, struct buf *b)
{
    uint64_t nkv = m->align ? 3 : 2;
    put_header(b, m->version, m->n_tensors_hdr == UINT64_MAX ? 2 : m->n_tensors_hdr,
               m->n_kv_hdr == UINT64_MAX ? nkv : m->n_kv_hdr);
    put_key(b, "general.architecture", ENG_GGUF_STRING);
    put_str(b, "llama");
    put_key(b, "tokenizer.ggml.tokens", ENG_GGUF_ARRAY);
    put_u32(b, ENG_GGUF_STRING);
    put_u64(b, 2);
    put_str(b, "<s>");
    put_str(b, "a");
    if (m->align) {
        put_key(b, "general.alignment", ENG_GGUF_UINT32);
        put_u32(b, m->align);
    }
    uint64_t ne0[2] = {8, 1};
    put_tinfo(b, m->t0_name, 2, ne0, ENG_DTYPE_F32, m->t0_off);
    put_tinfo(b, m->t1_name, m->t1_ndims, m->t1_ne, m->t1_type, m->t1_off);
    /* invalid alignments (the cases testing them) are padded to 32 */
    put_pad(b, m->align && !(m->align & (m->align - 1)) ? m->align : 32);
    for (int i = 0; i < 16; i++)      /* exactly the two tensors' bytes: no slack */
        put_f32(b, (float)i);
}

typedef void (*mk_fn)(struct buf *b);

#define MK_CASE(fn, body)                                                             \
    static void fn(struct buf *b)                                                     \
    {                                                                                 \
        struct mk m;                                                                  \
        mk_default(&m);                                                               \
        body;                                                                         \
        mk_build(&m, b);                                                              \
    }

MK_CASE(mk_valid, (void)0)
MK_CASE(mk_version1, m.version = 1)
MK_CASE(mk_version4, m.version = 4)
MK_CASE(mk_big_endian, m.version = 0x03000000)
MK_CASE(mk_huge_kv, m.n_kv_hdr = UINT64_MAX - 1)
MK_CASE(mk_more_kv, m.n_kv_hdr = 5)
MK_CASE(mk_huge_tensors, m.n_tensors_hdr = 1ull << 62)
MK_CASE(mk_more_tensors, m.n_tensors_hdr = 3)
MK_CASE(mk_align48, m.align = 48)
MK_CASE(mk_align0, m.align = 0xffffffffu)
MK_CASE(mk_align64_misaligned, { m.align = 64; m.t1_off = 32; })
MK_CASE(mk_off_misaligned, m.t1_off = 16)
MK_CASE(mk_off_past_eof, m.t1_off = 1024)
MK_CASE(mk_off_huge, m.t1_off = UINT64_MAX - 31)
MK_CASE(mk_overlap, m.t1_off = 0)
MK_CASE(mk_dup_name, m.t1_name = "token_embd.weight")
MK_CASE(mk_long_name,
        m.t1_name = "blk.0.this_name_is_far_too_long_for_ggml_which_caps_at_63.weight")
MK_CASE(mk_empty_name, m.t1_name = "")
MK_CASE(mk_type99, m.t1_type = 99)
MK_CASE(mk_type4, m.t1_type = 4)
MK_CASE(mk_type_iq2, m.t1_type = 16)
MK_CASE(mk_ndims0, m.t1_ndims = 0)
MK_CASE(mk_ndims5, m.t1_ndims = 5)
MK_CASE(mk_ne_overflow, { m.t1_ne[0] = 1ull << 32; m.t1_ne[1] = 1ull << 32; })
MK_CASE(mk_ne_negative, m.t1_ne[1] = (uint64_t)-2)
MK_CASE(mk_ne_too_big, { m.t1_ne[0] = 1ull << 40; m.t1_ne[1] = 1; })
MK_CASE(mk_q8_block, { m.t1_type = ENG_DTYPE_Q8_0; m.t1_ne[0] = 33; })

static void mk_truncated_header(struct buf *b)
{
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u16(b, 0);
}
static void mk_bad_magic(struct buf *b)
{
    mk_valid(b);
    memcpy(b->p, "GGML", 4);
}
static void mk_str_len_past_eof(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "tokenizer.ggml.pre", ENG_GGUF_STRING);
    put_u64(b, 4294967295u);
    put(b, "abc", 3);
}
static void mk_arr_str_len_past_eof(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "tokenizer.ggml.tokens", ENG_GGUF_ARRAY);
    put_u32(b, ENG_GGUF_STRING);
    put_u64(b, 2);
    put_str(b, "a");
    put_u64(b, 4294967295u);
    put(b, "abc", 3);
}
static void mk_arr_count_huge(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "tokenizer.ggml.tokens", ENG_GGUF_ARRAY);
    put_u32(b, ENG_GGUF_STRING);
    put_u64(b, UINT64_MAX);
    put_str(b, "a");
}
static void mk_arr_f32_huge(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "tokenizer.ggml.scores", ENG_GGUF_ARRAY);
    put_u32(b, ENG_GGUF_FLOAT32);
    put_u64(b, 1ull << 61);
    put_f32(b, 1);
}
static void mk_nested_array(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "x.nested", ENG_GGUF_ARRAY);
    put_u32(b, ENG_GGUF_ARRAY);
    put_u64(b, 1);
    put_u32(b, ENG_GGUF_UINT8);
    put_u64(b, 1);
    put_u8(b, 1);
}
static void mk_bad_value_type(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "general.name", 13);
    put_u64(b, 0);
}
static void mk_bad_elem_type(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "general.tags", ENG_GGUF_ARRAY);
    put_u32(b, 200);
    put_u64(b, 0);
}
static void mk_dup_key(struct buf *b)
{
    put_header(b, 3, 0, 2);
    put_key(b, "general.name", ENG_GGUF_STRING);
    put_str(b, "a");
    put_key(b, "general.name", ENG_GGUF_STRING);
    put_str(b, "b");
}
static void mk_key_len_past_eof(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_u64(b, 1000);
    put(b, "general.name", 12);
}
static void mk_key_empty(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "", ENG_GGUF_UINT8);
    put_u8(b, 0);
}
static void mk_key_nul(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_u64(b, 3);
    put(b, "a\0b", 3);
    put_u32(b, ENG_GGUF_UINT8);
    put_u8(b, 0);
}
static void mk_bool2(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "tokenizer.ggml.add_bos_token", ENG_GGUF_BOOL);
    put_u8(b, 2);
}
static void mk_align_string(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "general.alignment", ENG_GGUF_STRING);
    put_str(b, "32");
}
static void mk_scalar_truncated(struct buf *b)
{
    put_header(b, 3, 0, 1);
    put_key(b, "llama.block_count", ENG_GGUF_UINT64);
    put_u32(b, 5);
}
static void mk_data_start_past_eof(struct buf *b)
{
    /* a tensor of 0 bytes, with the file ending inside the alignment padding */
    put_header(b, 3, 1, 0);
    uint64_t ne[1] = {0};
    put_tinfo(b, "empty", 1, ne, ENG_DTYPE_F32, 0);
    assert_true(b->n % 32 != 0);           /* 61 bytes: ends inside the padding */
}

struct bad_case {
    const char *name;
    mk_fn fn;
    int rc;
    const char *words;       /* the message must contain this */
};

static const struct bad_case bad_cases[] = {
    {"truncated header", mk_truncated_header, ERR_CORRUPT, "too short"},
    {"bad magic", mk_bad_magic, ERR_CORRUPT, "not a GGUF file"},
    {"version 1", mk_version1, ERR_UNSUPPORTED, "version 1"},
    {"version 4", mk_version4, ERR_UNSUPPORTED, "version 4"},
    {"big-endian", mk_big_endian, ERR_UNSUPPORTED, "big-endian"},
    {"huge n_kv", mk_huge_kv, ERR_CORRUPT, "key/values cannot fit"},
    {"n_kv past the keys", mk_more_kv, ERR_CORRUPT, "past end of file"},
    {"huge n_tensors", mk_huge_tensors, ERR_CORRUPT, "tensors cannot fit"},
    {"n_tensors past the infos", mk_more_tensors, ERR_CORRUPT, "tensor 2:"},
    {"string length past EOF", mk_str_len_past_eof, ERR_CORRUPT,
     "key 'tokenizer.ggml.pre': string length 4294967295 past end of file"},
    {"array string length past EOF", mk_arr_str_len_past_eof, ERR_CORRUPT,
     "key 'tokenizer.ggml.tokens': element 1: string length 4294967295 past end of file"},
    {"huge string array", mk_arr_count_huge, ERR_CORRUPT,
     "key 'tokenizer.ggml.tokens': array of 18446744073709551615 strings past end of file"},
    {"huge f32 array", mk_arr_f32_huge, ERR_CORRUPT, "array of 2305843009213693952 float32"},
    {"nested array", mk_nested_array, ERR_UNSUPPORTED, "key 'x.nested': arrays of arrays"},
    {"bad value type", mk_bad_value_type, ERR_CORRUPT, "key 'general.name': unknown value type 13"},
    {"bad element type", mk_bad_elem_type, ERR_CORRUPT, "unknown element type 200"},
    {"duplicate key", mk_dup_key, ERR_CORRUPT, "key 'general.name': duplicate key"},
    {"key length past EOF", mk_key_len_past_eof, ERR_CORRUPT, "key length 1000 past end of file"},
    {"empty key", mk_key_empty, ERR_CORRUPT, "empty key"},
    {"NUL in key", mk_key_nul, ERR_CORRUPT, "NUL"},
    {"bool 2", mk_bool2, ERR_CORRUPT, "bool value 2"},
    {"scalar truncated", mk_scalar_truncated, ERR_CORRUPT,
     "key 'llama.block_count': uint64 value past end of file"},
    {"alignment 48", mk_align48, ERR_CORRUPT, "48 is not a power of two"},
    {"alignment 2^32-1", mk_align0, ERR_CORRUPT, "not a power of two"},
    {"alignment as string", mk_align_string, ERR_CORRUPT, "general.alignment"},
    {"offset not a multiple of alignment 64", mk_align64_misaligned, ERR_CORRUPT,
     "tensor 'blk.3.attn_q.weight': offset 32 is not a multiple of the alignment 64"},
    {"offset misaligned", mk_off_misaligned, ERR_CORRUPT, "not a multiple of the alignment 32"},
    {"offset past EOF", mk_off_past_eof, ERR_CORRUPT,
     "tensor 'blk.3.attn_q.weight': offset past end of file"},
    {"offset wraps", mk_off_huge, ERR_CORRUPT,
     "tensor 'blk.3.attn_q.weight': offset past end of file"},
    {"overlapping tensors", mk_overlap, ERR_CORRUPT,
     "tensor 'blk.3.attn_q.weight': data overlaps tensor 'token_embd.weight'"},
    {"duplicate tensor names", mk_dup_name, ERR_CORRUPT,
     "tensor 'token_embd.weight': duplicate name"},
    {"name over 63 bytes", mk_long_name, ERR_CORRUPT, "longer than 63"},
    {"empty tensor name", mk_empty_name, ERR_CORRUPT, "empty name"},
    {"unknown type 99", mk_type99, ERR_CORRUPT, "tensor 'blk.3.attn_q.weight': unknown type id 99"},
    {"removed type 4", mk_type4, ERR_CORRUPT, "unknown type id 4"},
    {"unsupported iq2_xxs", mk_type_iq2, ERR_UNSUPPORTED, "iq2_xxs"},
    {"n_dims 0", mk_ndims0, ERR_CORRUPT, "n_dims 0 is not in 1..4"},
    {"n_dims 5", mk_ndims5, ERR_CORRUPT, "n_dims 5 is not in 1..4"},
    {"ne overflow", mk_ne_overflow, ERR_CORRUPT, "element count overflows"},
    {"ne negative", mk_ne_negative, ERR_CORRUPT, "ne[1] = 18446744073709551614 is out of range"},
    {"tensor bigger than file", mk_ne_too_big, ERR_CORRUPT, "cannot fit"},
    {"q8_0 ne[0] not a block multiple", mk_q8_block, ERR_CORRUPT,
     "ne[0] = 33 is not a multiple of the q8_0 block size 32"},
    {"data section start past EOF", mk_data_start_past_eof, ERR_CORRUPT, "data section start"},
};

static void test_malformed_table(void **state)
{
    (void)state;
    struct buf b = {0};
    mk_valid(&b);
    eng_gguf_t *g = NULL;
    struct errbuf eb = {{0}};
    assert_int_equal(eng_gguf_open_mem(b.p, b.n, &g, &eb), 0);   /* the base is valid */
    assert_int_equal(eng_gguf_n_tensors(g), 2);
    struct eng_gguf_tensor t;
    eng_gguf_tensor_at(g, 1, &t);
    float v;
    memcpy(&v, t.data, 4);
    assert_true(v == 8.0f);            /* offset 32 = the 9th float of the data section */
    eng_gguf_free(g);
    free(b.p);

    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        memset(&b, 0, sizeof b);
        c->fn(&b);
        memset(&eb, 0, sizeof eb);
        g = NULL;
        int rc = eng_gguf_open_mem(b.p, b.n, &g, &eb);
        if (rc != c->rc || !strstr(eb.msg, c->words))
            print_error("case '%s': rc %d (want %d), message \"%s\" (want \"%s\")\n", c->name,
                        rc, c->rc, eb.msg, c->words);
        assert_int_equal(rc, c->rc);
        assert_non_null(strstr(eb.msg, c->words));
        assert_null(g);
        /* a NULL errbuf is fine too */
        assert_int_equal(eng_gguf_open_mem(b.p, b.n, &g, NULL), c->rc);
        free(b.p);
    }
}

/* Every truncation of a valid model file fails cleanly; flipping any single header
 * byte never crashes (most flips are errors, a few are still valid files). */
static void test_truncations_and_flips(void **state)
{
    (void)state;
    struct buf b = {0};
    mk_valid(&b);
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *p = malloc(n ? n : 1);   /* exact-size copy: ASan sees any overread */
        memcpy(p, b.p, n);
        eng_gguf_t *g = NULL;
        struct errbuf eb = {{0}};
        int rc = eng_gguf_open_mem(p, n, &g, &eb);
        assert_int_equal(rc, ERR_CORRUPT);
        assert_true(eb.msg[0] != '\0');
        free(p);
    }
    size_t hdr = b.n - 16 * 4;
    int n_err = 0;
    for (size_t i = 0; i < hdr; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *p = malloc(b.n);
            memcpy(p, b.p, b.n);
            p[i] ^= (uint8_t)(1u << bit);
            eng_gguf_t *g = NULL;
            int rc = eng_gguf_open_mem(p, b.n, &g, NULL);
            if (rc == 0) {
                /* still valid: everything it reports is inside the buffer */
                for (int64_t k = 0; k < eng_gguf_n_tensors(g); k++) {
                    struct eng_gguf_tensor t;
                    eng_gguf_tensor_at(g, k, &t);
                    assert_true((const uint8_t *)t.data >= p);
                    assert_true((const uint8_t *)t.data + t.nbytes <= p + b.n);
                }
                eng_gguf_free(g);
            } else {
                assert_true(rc == ERR_CORRUPT || rc == ERR_UNSUPPORTED);
                n_err++;
            }
            free(p);
        }
    }
    assert_true(n_err > (int)hdr);     /* most flips are caught */
    free(b.p);
}

/* Vocab-only: 0 tensors, file ends before the aligned data start. */
static void test_vocab_only_short(void **state)
{
    (void)state;
    struct buf b = {0};
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.name", ENG_GGUF_STRING);
    put_str(&b, "x");         /* 24 + 8+12+4 + 8+1 = 57 bytes: not a multiple of 32 */
    assert_true(b.n % 32 != 0);
    eng_gguf_t *g = NULL;
    assert_int_equal(eng_gguf_open_mem(b.p, b.n, &g, NULL), 0);
    assert_int_equal(eng_gguf_n_tensors(g), 0);
    eng_gguf_free(g);
    free(b.p);
}

/* The file-level errors of eng_gguf_open and eng_gguf_write. */
static void test_open_write_errors(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[1024];
    struct errbuf eb = {{0}};
    eng_gguf_t *g = NULL;
    snprintf(path, sizeof path, "%s/missing.gguf", dir);
    assert_int_equal(eng_gguf_open(path, &g, &eb), ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "cannot open"));
    assert_int_equal(eng_gguf_open(dir, &g, &eb), ERR_INVAL);
    assert_non_null(strstr(eb.msg, "not a regular file"));
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    write_file(path, "", 0);
    assert_int_equal(eng_gguf_open(path, &g, &eb), ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "empty"));
    /* the caller adds the path (err_prefix on the way up); the message names the tensor */
    struct buf b = {0};
    mk_off_past_eof(&b);
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    write_file(path, b.p, b.n);
    free(b.p);
    assert_int_equal(eng_gguf_open(path, &g, &eb), ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "tensor 'blk.3.attn_q.weight': offset past end"));
    assert_null(g);

    /* writing replaces an existing file atomically, leaving no temp file */
    assert_int_equal(eng_gguf_new(&g), 0);
    assert_int_equal(eng_gguf_set_u32(g, "a", 1), 0);
    assert_int_equal(eng_gguf_write(g, path, &eb), 0);
    eng_gguf_t *r = NULL;
    assert_int_equal(eng_gguf_open(path, &r, &eb), 0);
    assert_int_equal(eng_gguf_n_kv(r), 1);
    eng_gguf_free(r);
    /* into a missing directory: ERR_IO naming the path, nothing created */
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/nodir/x.gguf", dir);
    assert_int_equal(eng_gguf_write(g, bad, &eb), ERR_IO);
    assert_non_null(strstr(eb.msg, "nodir/x.gguf"));
    eng_gguf_free(g);
    assert_int_equal(rm_tmpdir(dir), 2);   /* empty.gguf, bad.gguf: no temp file left */
}

int main(void)
{
    static const char *const models[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf",
                                         "ggml-vocab-bert-bge.gguf", "stories260K.gguf",
                                         "llama-2-tiny-random.gguf", "mmproj-tinygemma3.gguf"};
    const int missing = tu_missing_models(models, sizeof models / sizeof models[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_types_round_trip),
        cmocka_unit_test(test_builder_metadata),
        cmocka_unit_test(test_tensors_every_dtype),
        cmocka_unit_test(test_builder_tensor_errors),
        cmocka_unit_test(test_hold),
        cmocka_unit_test(test_shared_models),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_truncations_and_flips),
        cmocka_unit_test(test_vocab_only_short),
        cmocka_unit_test(test_open_write_errors),
    };
    return tu_exit(cmocka_run_group_tests(tests, NULL, NULL), missing);
}
