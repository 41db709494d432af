/* Fuzz target for the protocol codec and the chat module: any byte string as a frame, in a fresh
 * session and after a valid hello, against the fixture catalog; a chat.* frame the codec accepts
 * goes on to the chat module as a visitor frame, and the same bytes arrive as a signed-in agent
 * console's frame. Every call the chat module queues is answered (alternately with an empty
 * result and an error), so the reply paths run too. Built with libFuzzer when JD_FUZZ=ON
 * (clang), and as a plain replay program otherwise so the seed corpus runs in every ctest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "chat.h"
#include "proto.h"
#include "../unit/fixture_catalog.h"

static jd_catalog *catalog;
static jd_chat *chat;
static jd_record *calls[4096];
static size_t n_calls;

static void fuzz_send(void *arg, uint64_t conn, const char *type, const char *frame, size_t len)
{
    (void)arg, (void)conn, (void)type;
    /* Every frame the chat module sends must be a JSON object. */
    json_t *j = json_loadb(frame, len, 0, NULL);
    if (!json_is_object(j))
        abort();
    json_decref(j);
}

static void fuzz_close(void *arg, uint64_t conn, int code, const char *reason)
{
    (void)arg, (void)conn, (void)code, (void)reason;
}

static bool fuzz_submit(void *arg, jd_record *rec)
{
    (void)arg;
    if (n_calls == sizeof(calls) / sizeof(calls[0]))
        return false;
    calls[n_calls++] = rec;
    return true;
}

/* Answers every queued call: the replies may queue more calls (polls), answered in turn. */
static void answer_calls(void)
{
    for (int round = 0; round < 4 && n_calls; round++) {
        size_t n = n_calls;
        jd_record *batch[sizeof(calls) / sizeof(calls[0])];
        memcpy(batch, calls, n * sizeof(*batch));
        n_calls = 0;
        for (size_t i = 0; i < n; i++) {
            jd_chat_reply *r = jd_chat_reply_new(batch[i]->conn_id, batch[i]->tag, "{}", 2);
            if (r && i % 2) {
                r->len = 0;
                r->json[0] = '\0';
                snprintf(r->code, sizeof(r->code), "unavailable");
                r->err = r->code;
            }
            if (r)
                jd_chat_on_reply(chat, r);
            free(batch[i]);
        }
    }
    for (size_t i = 0; i < n_calls; i++)
        free(calls[i]);
    n_calls = 0;
}

static void one(jd_proto_session *s, const uint8_t *data, size_t size)
{
    jd_proto_out out;
    jd_proto_error err;
    jd_proto_out_init(&out);
    if (jd_proto_handle(catalog, "site-key-0001", s, (const char *)data, size, &out, &err)) {
        /* Whatever is accepted must produce well-formed JSON for the store and the client. */
        const jd_buf *bufs[2] = {&out.record, &out.reply};
        for (int i = 0; i < 2; i++) {
            if (!bufs[i]->len)
                continue;
            json_t *j = json_loadb(bufs[i]->data, bufs[i]->len, 0, NULL);
            if (!j)
                abort();
            json_decref(j);
        }
    } else {
        jd_buf b;
        jd_buf_init(&b);
        jd_proto_encode_error(&b, &err);
        json_t *j = json_loadb(b.data, b.len, 0, NULL);
        if (!j)
            abort();
        json_decref(j);
        jd_buf_free(&b);
    }
    if (out.chat)
        jd_chat_visitor_frame(chat, 1, s, out.chat);
    jd_proto_out_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!chat) {
        jd_chat_io io = {.send = fuzz_send, .close = fuzz_close, .submit = fuzz_submit};
        if (!jd_chat_create(&io, "fuzz", &chat))
            abort();
        /* A signed-in console: its hello answered with a session. */
        jd_chat_agent_connected(chat, 2, "jda_fuzz");
        static const char hello[] =
            "{\"type\":\"hello\",\"id\":\"11111111-1111-4111-8111-111111111111\"}";
        jd_chat_agent_frame(chat, 2, hello, sizeof(hello) - 1);
        static const char who[] =
            "{\"agent\":{\"id\":4,\"site_id\":1,\"name\":\"A\"},\"online\":[],"
            "\"canned\":[]}";
        if (n_calls != 1)
            abort();
        jd_chat_on_reply(chat, jd_chat_reply_new(2, calls[0]->tag, who, sizeof(who) - 1));
        free(calls[0]);
        n_calls = 0;
    }
    if (!catalog) {
        char err[256];
        if (!jd_catalog_parse(fixture_catalog_json, strlen(fixture_catalog_json), &catalog, err,
                              sizeof(err)))
            abort();
    }
    jd_proto_session fresh = {0};
    one(&fresh, data, size);
    jd_proto_session greeted = {0};
    static const char hello[] =
        "{\"type\":\"hello\",\"id\":\"11111111-1111-4111-8111-111111111111\","
        "\"v\":1,\"site\":\"site-key-0001\"}";
    one(&greeted, (const uint8_t *)hello, sizeof(hello) - 1);
    one(&greeted, data, size);
    jd_chat_agent_frame(chat, 2, (const char *)data, size);
    answer_calls();
    return 0;
}

#ifndef JD_LIBFUZZER
/* Replays every file named on the command line (the seed corpus) through the target. */
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("fuzz_proto: replayed %d inputs\n", n);
    return n > 0 ? 0 : 1;
}
#endif
