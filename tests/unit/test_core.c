/* Unit tests for the small core modules: the bounded queue (wrap-around, refusal when full and
 * the unblock signal), UUID and timestamp validation, JSON escaping, the catalog lookups and
 * origin rules, the static file set and the metrics exposition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "files.h"
#include "fixture_catalog.h"
#include "metrics.h"
#include "queue.h"
#include "util.h"

static void test_queue_bounded_fifo(void **state)
{
    (void)state;
    jd_queue q;
    assert_true(jd_queue_init(&q, sizeof(int), 4));
    int in[6] = {1, 2, 3, 4, 5, 6}, out[6];
    bool was_empty, unblocked;
    assert_int_equal(jd_queue_push(&q, in, 3, &was_empty), 3);
    assert_true(was_empty);
    assert_int_equal(jd_queue_pop(&q, out, 2, &unblocked), 2);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    /* Wraps around the end of the ring; only 3 of 4 fit. */
    assert_int_equal(jd_queue_push(&q, in + 3, 3, &was_empty), 3);
    assert_false(was_empty);
    assert_int_equal(jd_queue_push(&q, in, 1, &was_empty), 0); /* full: refused */
    assert_int_equal(jd_queue_count(&q), 4);
    assert_int_equal(jd_queue_pop(&q, out, 1, &unblocked), 1);
    assert_false(unblocked); /* 3 of 4: not yet half */
    assert_int_equal(jd_queue_pop(&q, out + 1, 1, &unblocked), 1);
    assert_true(unblocked); /* half: the refused producer may retry */
    assert_int_equal(jd_queue_pop(&q, out + 2, 6, &unblocked), 2);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    assert_int_equal(out[2], 5);
    assert_int_equal(out[3], 6);
    jd_queue_destroy(&q);
}

static void test_uuid_and_timestamps(void **state)
{
    (void)state;
    char id[JD_UUID_LEN + 1];
    jd_uuid_generate(id);
    assert_true(jd_uuid_valid(id));
    assert_int_equal(id[14], '4');
    assert_true(jd_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_false(jd_uuid_valid("123e4567-e89b-12d3-a456-42661417400"));
    assert_false(jd_uuid_valid("123e4567-e89b-12d3-a456-4266141740000"));
    assert_false(jd_uuid_valid("123e4567xe89b-12d3-a456-426614174000"));
    assert_false(jd_uuid_valid("g23e4567-e89b-12d3-a456-426614174000"));
    assert_true(jd_timestamp_valid("2026-11-29T07:00:00Z"));
    assert_true(jd_timestamp_valid("2026-11-29T07:00:00.123456+01:00"));
    assert_false(jd_timestamp_valid("2026-13-29T07:00:00Z"));
    assert_false(jd_timestamp_valid("2026-11-29T07:00:00"));
    assert_false(jd_timestamp_valid("2026-11-29T24:00:00Z"));
    assert_false(jd_timestamp_valid("2026-11-29T07:00:00.Z"));
}

static void test_utf8_validation(void **state)
{
    (void)state;
    static const char good[] = "plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_true(jd_utf8_text_valid(good, sizeof(good) - 1));
    assert_false(jd_utf8_text_valid("nul\0inside", 11));
    assert_false(jd_utf8_text_valid("\xc3", 1));             /* truncated */
    assert_false(jd_utf8_text_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(jd_utf8_text_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(jd_utf8_text_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(jd_utf8_text_valid("\xff", 1));
}

static void test_json_escaping(void **state)
{
    (void)state;
    jd_buf b;
    jd_buf_init(&b);
    const char text[] = "a\"b\\c\nd\x01\x7f\xc3\xa9";
    jd_buf_json_string(&b, text, sizeof(text) - 1);
    json_t *j = json_loads(b.data, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), text);
    json_decref(j);
    jd_buf_reset(&b);
    jd_buf_append(&b, NULL, 0); /* lws hands over (NULL, 0) bodies: must be harmless */
    assert_int_equal(b.len, 0);
    jd_buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    jd_buf_free(&b);
}

static void test_catalog_lookups(void **state)
{
    (void)state;
    jd_catalog *c = NULL;
    char err[256];
    assert_true(jd_catalog_parse(fixture_catalog_json, strlen(fixture_catalog_json), &c, err,
                                 sizeof(err)));
    const jd_catalog_site *s = jd_catalog_site_by_key(c, "site-key-0001");
    assert_non_null(s);
    assert_null(jd_catalog_site_by_key(c, "site-key-9999"));
    assert_ptr_equal(jd_catalog_site_by_id(c, 1), s);
    assert_true(jd_catalog_origin_allowed(s, "https://shop.example"));
    assert_true(jd_catalog_origin_allowed(s, "HTTPS://SHOP.EXAMPLE"));
    assert_false(jd_catalog_origin_allowed(s, "https://evil.example"));
    assert_false(jd_catalog_origin_allowed(s, "https://shop.example.evil.example"));
    assert_true(jd_catalog_origin_allowed(jd_catalog_site_by_key(c, "site-key-0002"), "x"));
    const jd_catalog_question *q = jd_catalog_question_find(s, 20, 6);
    assert_non_null(q);
    assert_int_equal(q->kind, JD_Q_OBSTACLE);
    assert_null(jd_catalog_question_find(s, 21, 6));
    const jd_catalog_map *m = jd_catalog_map_find(s, 10);
    assert_int_equal(jd_catalog_slug(m, JD_SLUG_TOUCHPOINT, "email"), 301);
    assert_int_equal(jd_catalog_slug(m, JD_SLUG_TOUCHPOINT, "nope"), 0);
    assert_int_equal(s->n_surveys, 1);
    json_t *frame = json_loads(s->survey_frames[0], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(frame, "type")), "survey");
    json_t *q0 = json_array_get(json_object_get(json_object_get(frame, "survey"), "questions"), 0);
    assert_null(json_object_get(q0, "stage_id")); /* internal ids stay on the server */
    json_decref(frame);
    jd_catalog_free(&c);
    assert_null(c);
    assert_false(jd_catalog_parse("{\"sites\":[{\"id\":1}]}", 20, &c, err, sizeof(err)));
    assert_false(jd_catalog_parse("nope", 4, &c, err, sizeof(err)));
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/jd-files-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/sub/a.js", dir);
    FILE *f = fopen(path, "w");
    fputs("console.log(1)", f);
    fclose(f);
    jd_files *files = NULL;
    char err[256];
    assert_true(jd_files_load(dir, &files, err, sizeof(err)));
    const jd_file *a = jd_files_find(files, "/sub/a.js");
    assert_non_null(a);
    assert_int_equal(a->len, 14);
    assert_string_equal(a->content_type, "text/javascript; charset=utf-8");
    assert_int_equal(a->etag[0], '"');
    assert_null(jd_files_find(files, "/sub/b.js"));
    assert_null(jd_files_find(files, "/../etc/passwd"));
    jd_files_free(&files);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);
    rmdir(dir);
}

static void test_metrics_render(void **state)
{
    (void)state;
    jd_metrics_connection_opened();
    jd_metrics_error(JD_ERR_OUT_OF_RANGE);
    jd_metrics_batch(150, 3000);
    jd_buf b;
    jd_buf_init(&b);
    jd_metrics_render(&b);
    assert_non_null(strstr(b.data, "journeyd_connections 1\n"));
    assert_non_null(strstr(b.data, "journeyd_errors_total{code=\"out_of_range\"} 1\n"));
    assert_non_null(strstr(b.data, "journeyd_batch_rows_bucket{le=\"250\"} 1\n"));
    assert_non_null(strstr(b.data, "journeyd_batch_rows_bucket{le=\"100\"} 0\n"));
    assert_non_null(strstr(b.data, "journeyd_commit_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(b.data, "# TYPE journeyd_commit_seconds histogram\n"));
    jd_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_bounded_fifo), cmocka_unit_test(test_uuid_and_timestamps),
        cmocka_unit_test(test_json_escaping),      cmocka_unit_test(test_utf8_validation),      cmocka_unit_test(test_catalog_lookups),
        cmocka_unit_test(test_files),              cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
