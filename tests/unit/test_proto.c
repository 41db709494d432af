/* Unit tests for the protocol codec: every frame type, every validation rule, against a fixed
 * catalog. The records the codec produces are parsed back to check the exact values stored. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "fixture_catalog.h"
#include "proto.h"

#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-8222-222222222222"
#define RESP "33333333-3333-4333-8333-333333333333"

typedef struct {
    jd_catalog *catalog;
    jd_proto_session session;
    jd_proto_out out;
    jd_proto_error err;
} ctx;

static int setup(void **state)
{
    static ctx c;
    memset(&c, 0, sizeof(c));
    char err[256];
    assert_true(jd_catalog_parse(fixture_catalog_json, strlen(fixture_catalog_json), &c.catalog,
                                 err, sizeof(err)));
    c.session.max_frame = 65536;
    c.session.rate_per_sec = 20;
    c.session.rate_burst = 40;
    jd_proto_out_init(&c.out);
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    jd_proto_out_free(&c->out);
    jd_catalog_free(&c->catalog);
    return 0;
}

static bool run(ctx *c, const char *site, const char *frame)
{
    jd_proto_out_free(&c->out);
    jd_proto_out_init(&c->out);
    memset(&c->err, 0, sizeof(c->err));
    return jd_proto_handle(c->catalog, site, &c->session, frame, strlen(frame), &c->out, &c->err);
}

static void hello(ctx *c)
{
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0001\","
                    "\"respondent\":\"" RESP "\",\"persona\":\"parent\","
                    "\"page\":{\"url\":\"https://shop.example/p\",\"lang\":\"en\","
                    "\"utm\":{\"source\":\"news\",\"evil\":\"x\"}}}"));
}

static json_t *record(ctx *c)
{
    json_t *r = json_loads(c->out.record.data, 0, NULL);
    assert_non_null(r);
    return r;
}

static void expect_error(ctx *c, const char *site, const char *frame, jd_error_code code,
                         const char *field)
{
    assert_false(run(c, site, frame));
    if (c->err.code != code)
        fail_msg("expected %s, got %s (%s)", jd_proto_error_name(code),
                 jd_proto_error_name(c->err.code), c->err.message);
    if (field)
        assert_string_equal(c->err.field, field);
    assert_int_equal(c->out.record_kind, JD_REC_NONE);
}

static void test_hello_welcome_and_session_record(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(c->session.hello_done);
    assert_string_equal(c->session.respondent_id, RESP);
    json_t *w = json_loads(c->out.reply.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(w, "type")), "welcome");
    assert_string_equal(json_string_value(json_object_get(w, "re")), ID1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(w, "config"), "max_frame")),
                     65536);
    assert_true(json_is_true(json_object_get(json_object_get(w, "config"), "collect")));
    json_decref(w);
    assert_true(c->out.send_surveys);
    assert_int_equal(c->out.record_kind, JD_REC_SESSION);
    json_t *r = record(c);
    assert_int_equal(json_integer_value(json_object_get(r, "persona_id")), 100);
    assert_string_equal(json_string_value(json_object_get(r, "url")), "https://shop.example/p");
    json_t *utm = json_object_get(r, "utm");
    assert_string_equal(json_string_value(json_object_get(utm, "source")), "news");
    assert_null(json_object_get(utm, "evil")); /* only the five standard keys */
    json_decref(r);
}

static void test_hello_errors(void **state)
{
    ctx *c = *state;
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":2,\"site\":\"site-key-0001\"}",
                 JD_ERR_UNSUPPORTED_VERSION, "v");
    assert_int_equal(c->err.close_code, 1002);
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"site\":\"site-key-0001\"}",
                 JD_ERR_MISSING_FIELD, "v");
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0002\"}",
                 JD_ERR_UNKNOWN_SITE, "site");
    assert_int_equal(c->err.close_code, 1008);
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0001\","
                 "\"respondent\":\"nope\"}",
                 JD_ERR_BAD_FIELD, "respondent");
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0001\","
                 "\"persona\":\"ghost\"}",
                 JD_ERR_UNKNOWN_PERSONA, "persona");
    assert_false(c->session.hello_done);
    hello(c);
    expect_error(c, "site-key-0001",
                 "{\"type\":\"hello\",\"id\":\"" ID2 "\",\"v\":1,\"site\":\"site-key-0001\"}",
                 JD_ERR_DUPLICATE_HELLO, NULL);
}

static void test_envelope_errors(void **state)
{
    ctx *c = *state;
    expect_error(c, "site-key-0001", "{bad", JD_ERR_BAD_JSON, NULL);
    expect_error(c, "site-key-0001", "[1,2]", JD_ERR_BAD_FRAME, NULL);
    expect_error(c, "site-key-0001", "\"hello\"", JD_ERR_BAD_FRAME, NULL);
    expect_error(c, "site-key-0001", "{\"id\":\"" ID1 "\"}", JD_ERR_BAD_FRAME, "type");
    expect_error(c, "site-key-0001", "{\"type\":\"nope\",\"id\":\"" ID1 "\"}",
                 JD_ERR_UNKNOWN_TYPE, "type");
    assert_string_equal(c->err.id, ID1);
    expect_error(c, "site-key-0001", "{\"type\":\"answer\"}", JD_ERR_MISSING_FIELD, "id");
    expect_error(c, "site-key-0001", "{\"type\":\"answer\",\"id\":\"x\"}", JD_ERR_BAD_FIELD, "id");
    expect_error(c, "site-key-0001", "{\"type\":\"answer\",\"id\":\"" ID1 "\"}",
                 JD_ERR_NOT_READY, NULL);
    expect_error(c, "site-key-0001", "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"id\":\"" ID2 "\"}",
                 JD_ERR_BAD_JSON, NULL);
}

static void test_ping(void **state)
{
    ctx *c = *state;
    assert_true(run(c, "site-key-0001", "{\"type\":\"ping\",\"id\":\"" ID2 "\"}"));
    assert_string_equal(c->out.reply.data, "{\"type\":\"pong\",\"re\":\"" ID2 "\"}");
    assert_int_equal(c->out.record_kind, JD_REC_NONE);
}

#define ANSWER(q, extra) "{\"type\":\"answer\",\"id\":\"" ID2 "\",\"survey\":20,\"question\":" #q extra "}"

static void test_answer_emotion(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(run(c, "site-key-0001", ANSWER(1, ",\"value\":4,\"text\":\"ok\"")));
    assert_int_equal(c->out.record_kind, JD_REC_ANSWER);
    assert_true(c->out.record_acked);
    json_t *r = record(c);
    assert_int_equal(json_integer_value(json_object_get(r, "emotion")), 4);
    assert_int_equal(json_integer_value(json_object_get(r, "stage_id")), 200);
    assert_int_equal(json_integer_value(json_object_get(r, "touchpoint_id")), 300);
    assert_int_equal(json_integer_value(json_object_get(r, "persona_id")), 100);
    assert_int_equal(json_integer_value(json_object_get(r, "map_id")), 10);
    assert_string_equal(json_string_value(json_object_get(r, "thought")), "ok");
    assert_string_equal(json_string_value(json_object_get(r, "client_id")), ID2);
    assert_string_equal(json_string_value(json_object_get(r, "respondent_id")), RESP);
    json_decref(r);
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":6"), JD_ERR_OUT_OF_RANGE, "value");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":0"), JD_ERR_OUT_OF_RANGE, "value");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":\"4\""), JD_ERR_BAD_FIELD, "value");
    expect_error(c, "site-key-0001", ANSWER(1, ""), JD_ERR_MISSING_FIELD, "value");
}

static void test_answer_scores(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(run(c, "site-key-0001", ANSWER(2, ",\"value\":0")));
    json_t *r = record(c);
    assert_int_equal(json_integer_value(json_object_get(r, "score")), 0);
    assert_int_equal(json_integer_value(json_object_get(r, "stage_id")), 201);
    json_decref(r);
    assert_true(run(c, "site-key-0001", ANSWER(2, ",\"value\":10")));
    expect_error(c, "site-key-0001", ANSWER(2, ",\"value\":11"), JD_ERR_OUT_OF_RANGE, "value");
    expect_error(c, "site-key-0001", ANSWER(3, ",\"value\":0"), JD_ERR_OUT_OF_RANGE, "value");
    assert_true(run(c, "site-key-0001", ANSWER(3, ",\"value\":5")));
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":3,\"emotion\":9"), JD_ERR_OUT_OF_RANGE,
                 "emotion");
}

static void test_answer_choices(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(run(c, "site-key-0001", ANSWER(4, ",\"value\":\"b\"")));
    json_t *r = record(c);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "choice"), 0)), "b");
    json_decref(r);
    expect_error(c, "site-key-0001", ANSWER(4, ",\"value\":\"z\""), JD_ERR_OUT_OF_RANGE, "value");
    assert_true(run(c, "site-key-0001", ANSWER(5, ",\"value\":[\"a\",\"b\"]")));
    expect_error(c, "site-key-0001", ANSWER(5, ",\"value\":[\"a\",\"a\"]"), JD_ERR_BAD_FIELD,
                 "value");
    expect_error(c, "site-key-0001", ANSWER(5, ",\"value\":\"a\""), JD_ERR_BAD_FIELD, "value");
}

static void test_answer_obstacles_text_goal(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(run(c, "site-key-0001", ANSWER(6, ",\"value\":[\"price\",\"shipping\"]")));
    json_t *r = record(c);
    json_t *ids = json_object_get(r, "obstacle_ids");
    assert_int_equal(json_array_size(ids), 2);
    assert_int_equal(json_integer_value(json_array_get(ids, 1)), 401);
    json_decref(r);
    expect_error(c, "site-key-0001", ANSWER(6, ",\"value\":[\"ghost\"]"), JD_ERR_UNKNOWN_OBSTACLE,
                 "value");
    assert_true(run(c, "site-key-0001", ANSWER(7, ",\"value\":\"It was slow\"")));
    r = record(c);
    assert_string_equal(json_string_value(json_object_get(r, "thought")), "It was slow");
    json_decref(r);
    expect_error(c, "site-key-0001", ANSWER(7, ",\"value\":\"\""), JD_ERR_OUT_OF_RANGE, "value");
    assert_true(run(c, "site-key-0001", ANSWER(8, ",\"value\":\"Compared prices\"")));
    r = record(c);
    assert_string_equal(json_string_value(json_object_get(r, "action")), "Compared prices");
    json_decref(r);
    assert_true(run(c, "site-key-0001", ANSWER(9, ",\"value\":false")));
    r = record(c);
    assert_true(json_is_false(json_object_get(r, "goal_reached")));
    json_decref(r);
    expect_error(c, "site-key-0001", ANSWER(9, ",\"value\":1"), JD_ERR_BAD_FIELD, "value");
}

static void test_answer_text_limit_counts_characters(void **state)
{
    ctx *c = *state;
    hello(c);
    /* 4000 two-byte characters are fine, 4001 are not. */
    char frame[20000];
    char text[9000];
    for (int n = 4000; n <= 4001; n++) {
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            text[k++] = (char)0xc3;
            text[k++] = (char)0xa9;
        }
        text[k] = '\0';
        snprintf(frame, sizeof(frame), ANSWER(7, ",\"value\":\"%s\""), text);
        bool ok = run(c, "site-key-0001", frame);
        assert_int_equal(ok, n == 4000);
    }
}

static void test_answer_unknowns(void **state)
{
    ctx *c = *state;
    hello(c);
    expect_error(c, "site-key-0001", ANSWER(99, ",\"value\":1"), JD_ERR_UNKNOWN_QUESTION,
                 "question");
    expect_error(c, "site-key-0001",
                 "{\"type\":\"answer\",\"id\":\"" ID2 "\",\"survey\":21,\"question\":1,\"value\":1}",
                 JD_ERR_UNKNOWN_QUESTION, "question");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":3,\"stage\":\"ghost\""),
                 JD_ERR_UNKNOWN_STAGE, "stage");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":3,\"touchpoint\":\"ghost\""),
                 JD_ERR_UNKNOWN_TOUCHPOINT, "touchpoint");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":3,\"stage\":\"Bad Slug\""),
                 JD_ERR_BAD_FIELD, "stage");
    expect_error(c, "site-key-0001", ANSWER(1, ",\"value\":3,\"ts\":\"yesterday\""),
                 JD_ERR_BAD_FIELD, "ts");
    expect_error(c, "site-key-0001", "{\"type\":\"answer\",\"id\":\"" ID2 "\",\"question\":1}",
                 JD_ERR_MISSING_FIELD, "survey");
    /* Answer's stage used when the question has none. */
    assert_true(run(c, "site-key-0001", ANSWER(3, ",\"value\":3,\"stage\":\"purchase\"")));
    json_t *r = record(c);
    assert_int_equal(json_integer_value(json_object_get(r, "stage_id")), 200);
    json_decref(r);
}

static void test_opt_in_consent(void **state)
{
    ctx *c = *state;
    assert_true(run(c, "site-key-0002",
                    "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0002\"}"));
    assert_int_equal(c->out.record_kind, JD_REC_NONE); /* nothing stored before consent */
    assert_non_null(strstr(c->out.reply.data, "\"collect\":false"));
    expect_error(c, "site-key-0002",
                 "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"pageview\",\"url\":\"/\"}",
                 JD_ERR_CONSENT_REQUIRED, NULL);
    assert_true(run(c, "site-key-0002",
                    "{\"type\":\"consent\",\"id\":\"" ID2 "\",\"consent\":true}"));
    assert_int_equal(c->out.record_kind, JD_REC_SESSION);
    assert_true(c->out.record_acked);
    assert_true(run(c, "site-key-0002",
                    "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"pageview\",\"url\":\"/\"}"));
    assert_int_equal(c->out.record_kind, JD_REC_TOUCH);
    assert_true(run(c, "site-key-0002",
                    "{\"type\":\"consent\",\"id\":\"" ID1 "\",\"consent\":false}"));
    expect_error(c, "site-key-0002",
                 "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"pageview\",\"url\":\"/\"}",
                 JD_ERR_CONSENT_REQUIRED, NULL);
}

static void test_touch(void **state)
{
    ctx *c = *state;
    hello(c);
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"event\",\"name\":\"cart\","
                    "\"stage\":\"purchase\",\"touchpoint\":\"email\"}"));
    json_t *r = record(c);
    assert_int_equal(json_integer_value(json_object_get(r, "stage_id")), 200);
    assert_int_equal(json_integer_value(json_object_get(r, "touchpoint_id")), 301);
    json_decref(r);
    expect_error(c, "site-key-0001", "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"event\"}",
                 JD_ERR_MISSING_FIELD, "name");
    expect_error(c, "site-key-0001", "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"x\"}",
                 JD_ERR_BAD_FIELD, "kind");
}

static void test_error_encoding_escapes(void **state)
{
    (void)state;
    jd_proto_error err;
    jd_proto_error_set(&err, JD_ERR_BAD_FIELD, ID1, "quote \" and \\ and \n newline");
    jd_buf b;
    jd_buf_init(&b);
    jd_proto_encode_error(&b, &err);
    json_t *j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "quote \" and \\ and \n newline");
    assert_string_equal(json_string_value(json_object_get(j, "code")), "bad_field");
    json_decref(j);
    jd_buf_free(&b);
    char id[JD_UUID_LEN + 1];
    jd_proto_peek_id("{\"id\":\"" ID1 "\"}", strlen("{\"id\":\"" ID1 "\"}"), id);
    assert_string_equal(id, ID1);
    jd_proto_peek_id("{\"id\":\"x\"}", 10, id);
    assert_string_equal(id, "");
}

static int64_t record_int(ctx *c, const char *key)
{
    json_t *r = record(c);
    int64_t v = json_integer_value(json_object_get(r, key));
    json_decref(r);
    return v;
}

static void test_tagging_rules(void **state)
{
    ctx *c = *state;
    /* URL rule sets stage and touchpoint; a UTM rule after it cannot override the touchpoint;
     * an attribute rule sets the persona. */
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0001\","
                    "\"page\":{\"url\":\"https://shop.example/checkout/2\",\"utm\":{\"source\":\"NEWS\"}},"
                    "\"attributes\":{\"kids\":\"2\"}}"));
    assert_int_equal(record_int(c, "stage_id"), 200);
    assert_int_equal(record_int(c, "touchpoint_id"), 301);
    assert_int_equal(record_int(c, "persona_id"), 100);
    /* A pageview that a regex rule places in advocacy moves the session along. */
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"pageview\","
                    "\"url\":\"https://shop.example/reviews/12\"}"));
    assert_int_equal(record_int(c, "stage_id"), 201);
    assert_string_equal(c->session.stage, "advocacy");
    /* A rule naming a slug the map lacks is ignored, not an error. */
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"touch\",\"id\":\"" ID2 "\",\"kind\":\"pageview\","
                    "\"url\":\"https://shop.example/x\"}"));
}

static void test_tagging_rules_client_hints_win_and_screener(void **state)
{
    ctx *c = *state;
    assert_true(run(c, "site-key-0001",
                    "{\"type\":\"hello\",\"id\":\"" ID1 "\",\"v\":1,\"site\":\"site-key-0001\","
                    "\"stage\":\"advocacy\",\"page\":{\"url\":\"https://shop.example/\","
                    "\"utm\":{\"source\":\"news\"}}}"));
    assert_int_equal(record_int(c, "stage_id"), 201);      /* the client's own hint */
    assert_int_equal(record_int(c, "touchpoint_id"), 300); /* from the UTM rule */
    assert_int_equal(record_int(c, "persona_id"), 0);
    /* Answering the screener with "a" makes the session (and this answer) a parent. */
    assert_true(run(c, "site-key-0001", ANSWER(4, ",\"value\":\"a\"")));
    assert_int_equal(record_int(c, "persona_id"), 100);
    assert_string_equal(c->session.persona, "parent");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_welcome_and_session_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_emotion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_scores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_choices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_obstacles_text_goal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_text_limit_counts_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_unknowns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opt_in_consent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch, setup, teardown),
        cmocka_unit_test(test_error_encoding_escapes),
        cmocka_unit_test_setup_teardown(test_tagging_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tagging_rules_client_hints_win_and_screener, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
