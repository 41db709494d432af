/* Unit tests for the chat module (daemon/src/chat.c) through its real interface: frames in,
 * records for the chat store and frames out, recorded by a jd_chat_io that keeps what it is
 * given. The replies fed back are the JSON shapes sql/021_chat_rpc.sql returns (the integration
 * tests check those against a real database). Covers: a conversation must be opened or resumed
 * before use; each watcher gets every seq once and in order even when polls overlap; erased
 * conversations end the watch; body limits count code points; agents must say hello and a dead
 * session closes the socket with 1008; a full store queue becomes a resendable error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define CONV "9b2d4f0e-1a43-4b56-9a2e-0d7f3c1b2a10"
#define MAX_SEEN 64

typedef struct recorder {
    json_t *frames[MAX_SEEN]; /* frames sent, in order */
    uint64_t frame_conn[MAX_SEEN];
    size_t n_frames;
    jd_record *records[MAX_SEEN]; /* calls queued for the store */
    size_t n_records;
    int close_code;
    uint64_t closed_conn;
    bool queue_full;
} recorder;

static void rec_send(void *arg, uint64_t conn_id, const char *type, const char *frame, size_t len)
{
    recorder *r = arg;
    (void)type;
    assert_true(r->n_frames < MAX_SEEN);
    json_error_t err;
    r->frames[r->n_frames] = json_loadb(frame, len, 0, &err);
    assert_non_null(r->frames[r->n_frames]);
    r->frame_conn[r->n_frames++] = conn_id;
}

static void rec_close(void *arg, uint64_t conn_id, int code, const char *reason)
{
    recorder *r = arg;
    (void)reason;
    r->close_code = code;
    r->closed_conn = conn_id;
}

static bool rec_submit(void *arg, jd_record *rec)
{
    recorder *r = arg;
    if (r->queue_full)
        return false;
    assert_true(r->n_records < MAX_SEEN);
    r->records[r->n_records++] = rec;
    return true;
}

typedef struct fixture {
    recorder r;
    jd_chat *chat;
    jd_proto_session session;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    jd_chat_io io = {.send = rec_send, .close = rec_close, .submit = rec_submit, .arg = &f->r};
    assert_true(jd_chat_create(&io, "test:1", &f->chat));
    f->session.hello_done = true;
    f->session.site_id = 7;
    snprintf(f->session.session_id, sizeof(f->session.session_id), "%s",
             "11111111-1111-4111-8111-111111111111");
    snprintf(f->session.respondent_id, sizeof(f->session.respondent_id), "%s",
             "22222222-2222-4222-8222-222222222222");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    jd_chat_destroy(&f->chat);
    assert_null(f->chat);
    for (size_t i = 0; i < f->r.n_frames; i++)
        json_decref(f->r.frames[i]);
    for (size_t i = 0; i < f->r.n_records; i++)
        free(f->r.records[i]);
    free(f);
    return 0;
}

static void visitor(fixture *f, uint64_t conn, const char *json)
{
    json_error_t err;
    json_t *msg = json_loads(json, 0, &err);
    assert_non_null(msg);
    jd_chat_visitor_frame(f->chat, conn, &f->session, msg);
    json_decref(msg);
}

static const char *frame_type(const fixture *f, size_t i)
{
    /* Every frame starts with its type, as journeyd's frames do (clients may rely on it). */
    char *text = json_dumps(f->r.frames[i], JSON_COMPACT);
    assert_non_null(text);
    assert_memory_equal(text, "{\"type\":", 8);
    free(text);
    return json_string_value(json_object_get(f->r.frames[i], "type"));
}

/* The op of the last queued call, and its parsed [op, ctx, args]. */
static json_t *last_call(const fixture *f, const char *want_op)
{
    assert_true(f->r.n_records > 0);
    const jd_record *rec = f->r.records[f->r.n_records - 1];
    assert_int_equal(rec->kind, JD_REC_CHAT);
    json_error_t err;
    json_t *triple = json_loads(rec->json, 0, &err);
    assert_non_null(triple);
    assert_string_equal(json_string_value(json_array_get(triple, 0)), want_op);
    return triple;
}

static void reply(fixture *f, size_t record_index, const char *json)
{
    const jd_record *rec = f->r.records[record_index];
    jd_chat_reply *r = jd_chat_reply_new(rec->conn_id, rec->tag, json, strlen(json));
    assert_non_null(r);
    jd_chat_on_reply(f->chat, r);
}

static void reply_error(fixture *f, size_t record_index, const char *code)
{
    const jd_record *rec = f->r.records[record_index];
    jd_chat_reply *r = jd_chat_reply_new(rec->conn_id, rec->tag, "", 0);
    assert_non_null(r);
    snprintf(r->code, sizeof(r->code), "%s", code);
    snprintf(r->message, sizeof(r->message), "refused");
    r->err = r->code;
    jd_chat_on_reply(f->chat, r);
}

/* Opens CONV for connection 1: returns the index of the poll the open triggered. */
static size_t open_conv(fixture *f)
{
    visitor(f, 1,
            "{\"type\":\"chat.open\",\"id\":\"6f1c1e9a-1a43-4b56-9a2e-0d7f3c1b2a10\","
            "\"email\":\"ana@example.com\",\"stage\":\"purchase\"}");
    json_t *call = last_call(f, "open");
    json_t *ctx = json_array_get(call, 1);
    assert_int_equal(json_integer_value(json_object_get(ctx, "site_id")), 7);
    assert_string_equal(json_string_value(json_object_get(ctx, "respondent")),
                        "22222222-2222-4222-8222-222222222222");
    json_decref(call);
    reply(f, f->r.n_records - 1,
          "{\"conversation\":\"" CONV "\",\"token\":\"jdc_x\",\"status\":\"waiting\","
          "\"last_seq\":0,\"presence\":{\"online\":true,\"agents\":1}}");
    /* chat.opened, then chat.presence; the watch is dirty, so a poll is queued. */
    assert_string_equal(frame_type(f, f->r.n_frames - 2), "chat.opened");
    assert_string_equal(frame_type(f, f->r.n_frames - 1), "chat.presence");
    json_decref(last_call(f, "poll"));
    return f->r.n_records - 1;
}

static const char *poll_result(int from, int to, char *buf, size_t len)
{
    size_t n =
        (size_t)snprintf(buf, len,
                         "{\"results\":[{\"conversation\":\"" CONV "\",\"state\":{\"site_id\":7,"
                         "\"status\":\"open\",\"last_seq\":%d,\"receipts\":{"
                         "\"agent_delivered_seq\":0,\"agent_read_seq\":0}},\"messages\":[",
                         to);
    for (int s = from; s <= to; s++)
        n += (size_t)snprintf(buf + n, len - n,
                              "%s{\"conversation\":\"" CONV "\",\"seq\":%d,\"sender\":\"agent\","
                              "\"kind\":\"text\",\"body\":\"m%d\",\"at\":\"x\"}",
                              s == from ? "" : ",", s, s);
    snprintf(buf + n, len - n, "],\"more\":false}]}");
    return buf;
}

static void test_message_needs_an_open_conversation(void **state)
{
    fixture *f = *state;
    visitor(f, 1,
            "{\"type\":\"chat.message\",\"id\":\"c0ffee00-0000-4000-8000-000000000001\","
            "\"conversation\":\"" CONV "\",\"body\":\"hi\"}");
    assert_int_equal(f->r.n_records, 0);
    assert_int_equal(f->r.n_frames, 1);
    assert_string_equal(frame_type(f, 0), "error");
    assert_string_equal(json_string_value(json_object_get(f->r.frames[0], "code")),
                        "chat_forbidden");
    assert_string_equal(json_string_value(json_object_get(f->r.frames[0], "id")),
                        "c0ffee00-0000-4000-8000-000000000001");
}

static void test_each_seq_once_and_in_order(void **state)
{
    fixture *f = *state;
    size_t poll1 = open_conv(f);
    char buf[4096];
    size_t before = f->r.n_frames;
    reply(f, poll1, poll_result(1, 3, buf, sizeof(buf)));
    /* A notification while nothing is in flight starts the next poll; its result overlaps. */
    jd_chat_on_notify(f->chat, JD_CHAT_CHANNEL_CHAT, CONV);
    json_t *call = last_call(f, "poll");
    json_t *entry = json_array_get(json_array_get(call, 2), 0);
    assert_int_equal(json_integer_value(json_object_get(entry, "after_seq")), 3);
    json_decref(call);
    reply(f, f->r.n_records - 1, poll_result(2, 5, buf, sizeof(buf)));
    int expect = 1;
    for (size_t i = before; i < f->r.n_frames; i++) {
        if (strcmp(frame_type(f, i), "chat.message") != 0)
            continue;
        assert_int_equal(json_integer_value(json_object_get(f->r.frames[i], "seq")), expect);
        expect++;
    }
    assert_int_equal(expect, 6); /* 1..5, each once */
}

static void test_erased_conversation_ends_the_watch(void **state)
{
    fixture *f = *state;
    size_t poll1 = open_conv(f);
    assert_int_equal(jd_chat_watch_count(f->chat), 1);
    reply(f, poll1,
          "{\"results\":[{\"conversation\":\"" CONV "\",\"state\":null,\"messages\":[],"
          "\"more\":false}]}");
    assert_string_equal(frame_type(f, f->r.n_frames - 1), "chat.status");
    assert_string_equal(
        json_string_value(json_object_get(f->r.frames[f->r.n_frames - 1], "status")), "gone");
    assert_int_equal(jd_chat_watch_count(f->chat), 0);
}

static void test_closed_connection_drops_watches(void **state)
{
    fixture *f = *state;
    open_conv(f);
    jd_chat_conn_closed(f->chat, 1);
    assert_int_equal(jd_chat_watch_count(f->chat), 0);
    size_t records = f->r.n_records;
    /* Nobody here cares about this conversation any more: no poll. */
    jd_chat_on_notify(f->chat, JD_CHAT_CHANNEL_CHAT, "aaaaaaaa-1a43-4b56-9a2e-0d7f3c1b2a10");
    assert_int_equal(f->r.n_records, records);
}

static void test_body_limits_count_code_points(void **state)
{
    fixture *f = *state;
    open_conv(f);
    /* 4000 three-byte characters are fine, 4001 are not; blank is not. */
    size_t len = 4001 * 3;
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i += 3)
        memcpy(body + i, "\xe2\x82\xac", 3); /* the euro sign */
    body[len] = '\0';
    json_t *msg =
        json_pack("{s:s, s:s, s:s, s:s}", "type", "chat.message", "id",
                  "c0ffee00-0000-4000-8000-000000000002", "conversation", CONV, "body", body);
    size_t records = f->r.n_records;
    jd_chat_visitor_frame(f->chat, 1, &f->session, msg);
    assert_int_equal(f->r.n_records, records);
    assert_string_equal(json_string_value(json_object_get(f->r.frames[f->r.n_frames - 1], "code")),
                        "out_of_range");
    body[4000 * 3] = '\0';
    json_object_set_new(msg, "body", json_string(body));
    jd_chat_visitor_frame(f->chat, 1, &f->session, msg);
    assert_int_equal(f->r.n_records, records + 1);
    json_decref(last_call(f, "message"));
    json_object_set_new(msg, "body", json_string(" \n\t "));
    json_object_set_new(msg, "id", json_string("c0ffee00-0000-4000-8000-000000000003"));
    jd_chat_visitor_frame(f->chat, 1, &f->session, msg);
    assert_int_equal(f->r.n_records, records + 1);
    json_decref(msg);
    free(body);
}

static void test_ack_carries_seq(void **state)
{
    fixture *f = *state;
    open_conv(f);
    visitor(f, 1,
            "{\"type\":\"chat.message\",\"id\":\"c0ffee00-0000-4000-8000-000000000001\","
            "\"conversation\":\"" CONV "\",\"body\":\"Does it ship on Sunday?\"}");
    json_decref(last_call(f, "message"));
    reply(f, f->r.n_records - 1, "{\"seq\":12}");
    json_t *ack = f->r.frames[f->r.n_frames - 1];
    assert_string_equal(frame_type(f, f->r.n_frames - 1), "ack");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ack, "seq"),
                                                        "c0ffee00-0000-4000-8000-000000000001")),
                     12);
}

static void test_agent_hello_and_expired_session(void **state)
{
    fixture *f = *state;
    jd_chat_agent_connected(f->chat, 9, "jda_token");
    const char *inbox = "{\"type\":\"inbox\",\"id\":\"c0ffee00-0000-4000-8000-000000000004\"}";
    jd_chat_agent_frame(f->chat, 9, inbox, strlen(inbox));
    assert_string_equal(json_string_value(json_object_get(f->r.frames[0], "code")), "not_ready");
    assert_int_equal(f->r.n_records, 0);
    const char *hello = "{\"type\":\"hello\",\"id\":\"c0ffee00-0000-4000-8000-000000000005\"}";
    jd_chat_agent_frame(f->chat, 9, hello, strlen(hello));
    json_t *call = last_call(f, "agent_hello");
    assert_string_equal(json_string_value(json_object_get(json_array_get(call, 1), "token")),
                        "jda_token");
    json_decref(call);
    reply_error(f, 0, "session_expired");
    assert_int_equal(f->r.close_code, 1008);
    assert_int_equal(f->r.closed_conn, 9);
}

static void test_full_queue_is_a_resendable_error(void **state)
{
    fixture *f = *state;
    f->r.queue_full = true;
    visitor(f, 1, "{\"type\":\"chat.open\",\"id\":\"6f1c1e9a-1a43-4b56-9a2e-0d7f3c1b2a10\"}");
    assert_int_equal(f->r.n_records, 0);
    assert_string_equal(json_string_value(json_object_get(f->r.frames[0], "code")), "unavailable");
}

static void test_http_record(void **state)
{
    (void)state;
    jd_buf rec;
    jd_buf_init(&rec);
    const char *body = "{\"site\":\"k\",\"email\":\"a@b\",\"password\":\"p\"}";
    assert_true(jd_chat_http_record("login", body, strlen(body), "{}", 2, "", &rec));
    json_error_t err;
    json_t *pair = json_loadb(rec.data, rec.len, 0, &err);
    assert_string_equal(json_string_value(json_array_get(pair, 0)), "login");
    assert_string_equal(json_string_value(json_object_get(json_array_get(pair, 1), "email")),
                        "a@b");
    json_decref(pair);
    jd_buf_reset(&rec);
    assert_false(jd_chat_http_record("login", "[1]", 3, "{}", 2, "", &rec));
    jd_buf_free(&rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_needs_an_open_conversation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_seq_once_and_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erased_conversation_ends_the_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_connection_drops_watches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits_count_code_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_carries_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_hello_and_expired_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_is_a_resendable_error, setup, teardown),
        cmocka_unit_test(test_http_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
