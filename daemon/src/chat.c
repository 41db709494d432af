/* Live chat on the network thread: connections, watches, calls and fan-out (see chat.h and
 * docs/chat.md). Everything here is small linear tables: an instance holds at most a few
 * thousand chatting connections, and each poll result touches a handful of watches. */
#include "chat.h"

#include "log.h"
#include "metrics.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_MAX_PENDING_PER_CONN 32
#define CHAT_MSG_PER_SEC 5.0
#define CHAT_MSG_BURST 10.0
#define CHAT_TYPING_EVERY_US 2000000ull
#define CHAT_OPENS_PER_MINUTE 3
#define CHAT_BODY_MAX 4000
#define CHAT_CACHE_MAX 4096
#define CHAT_CLOSE_POLICY 1008
#define CHAT_MAX_WATCHES_PER_CONN 256

/* One connection watching one conversation. Owned by jd_chat (watches table). */
typedef struct chat_watch {
    char conv[JD_UUID_LEN + 1];
    uint64_t conn_id;
    bool agent;
    bool ready; /* the open/resume was answered: the connection may see this conversation */
    int64_t last_seq_sent;
    /* What this watcher was last told, to push only changes. */
    char status[16];
    bool typing_on;
    int64_t delivered, read;
    int64_t codes_version;
    uint64_t since; /* order of creation, to drop the oldest watch first */
} chat_watch;

/* A connection that used chat. Owned by jd_chat (conns table). */
typedef struct chat_conn {
    uint64_t id;
    jd_chat_role role;
    int64_t site_id;
    char respondent[JD_UUID_LEN + 1];
    char session[JD_UUID_LEN + 1];
    /* agents */
    char token[160];
    bool authed;
    bool hello_pending;
    int64_t agent_id;
    char agent_name[128];
    /* limits */
    int pending;
    double tokens;
    uint64_t tokens_at_us;
    uint64_t last_typing_us;
    uint64_t opens_at_us[CHAT_OPENS_PER_MINUTE];
} chat_conn;

/* A call in flight, found again by its tag. */
typedef struct chat_call {
    uint64_t tag;
    uint64_t conn_id;
    char op[24];
    char id[JD_UUID_LEN + 1]; /* the client frame's id */
    char conv[JD_UUID_LEN + 1];
    int64_t site_id;
    json_t *poll; /* op "poll": the request entries, in order */
} chat_call;

/* The last inbox-relevant state seen of a conversation, so inbox.update goes out on change. */
typedef struct chat_seen {
    char conv[JD_UUID_LEN + 1];
    char status[16];
    int64_t last_seq;
    int64_t assigned;
    int64_t unread;
} chat_seen;

/* A site's agent presence as last read, so a visitor's hello is answered without a query. */
typedef struct chat_presence {
    int64_t site_id;
    json_t *result;       /* {"online","agents"} as last read, or NULL */
    uint64_t at_us;       /* when it was read; 0 = stale */
    bool pending;         /* a query is in flight */
    uint64_t waiters[64]; /* connections that said hello meanwhile */
    size_t n_waiters;
} chat_presence;

#define CHAT_PRESENCE_FRESH_US 30000000ull

struct jd_chat {
    jd_chat_io io;
    char instance[128];
    uint64_t next_tag;
    chat_conn **conns;
    size_t n_conns, cap_conns;
    chat_watch **watches;
    size_t n_watches, cap_watches;
    chat_call **calls;
    size_t n_calls, cap_calls;
    char (*dirty)[JD_UUID_LEN + 1];
    size_t n_dirty, cap_dirty;
    bool poll_in_flight;
    chat_seen *seen;
    size_t n_seen;
    chat_presence *presence;
    size_t n_presence, cap_presence;
    unsigned ticks;
};

/* --- tables ----------------------------------------------------------------------------------- */

static bool grow(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, c * size);
    if (!p)
        return false;
    *items = p;
    *cap = c;
    return true;
}

static chat_conn *conn_find(jd_chat *chat, uint64_t id)
{
    for (size_t i = 0; i < chat->n_conns; i++)
        if (chat->conns[i]->id == id)
            return chat->conns[i];
    return NULL;
}

static chat_conn *conn_get(jd_chat *chat, uint64_t id, jd_chat_role role)
{
    chat_conn *c = conn_find(chat, id);
    if (c)
        return c;
    if (!grow((void **)&chat->conns, &chat->cap_conns, chat->n_conns, sizeof(*chat->conns)))
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->id = id;
    c->role = role;
    c->tokens = CHAT_MSG_BURST;
    c->tokens_at_us = jd_now_us();
    chat->conns[chat->n_conns++] = c;
    return c;
}

static chat_watch *watch_find(jd_chat *chat, uint64_t conn_id, const char *conv)
{
    for (size_t i = 0; i < chat->n_watches; i++)
        if (chat->watches[i]->conn_id == conn_id && strcmp(chat->watches[i]->conv, conv) == 0)
            return chat->watches[i];
    return NULL;
}

static void watch_remove(jd_chat *chat, chat_watch *w);

static chat_watch *watch_add(jd_chat *chat, uint64_t conn_id, const char *conv, bool agent,
                             int64_t after_seq)
{
    chat_watch *w = watch_find(chat, conn_id, conv);
    if (w)
        return w;
    /* A console that opens conversation after conversation watches only the latest ones. */
    size_t mine = 0, oldest = SIZE_MAX;
    for (size_t i = 0; i < chat->n_watches; i++)
        if (chat->watches[i]->conn_id == conn_id) {
            mine++;
            if (oldest == SIZE_MAX || chat->watches[i]->since < chat->watches[oldest]->since)
                oldest = i;
        }
    if (mine >= CHAT_MAX_WATCHES_PER_CONN)
        watch_remove(chat, chat->watches[oldest]);
    if (!grow((void **)&chat->watches, &chat->cap_watches, chat->n_watches, sizeof(*chat->watches)))
        return NULL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    snprintf(w->conv, sizeof(w->conv), "%s", conv);
    w->conn_id = conn_id;
    w->agent = agent;
    w->last_seq_sent = after_seq;
    w->delivered = w->read = -1;
    w->codes_version = -1;
    w->since = ++chat->next_tag;
    chat->watches[chat->n_watches++] = w;
    jd_metrics_chat_watches((int64_t)chat->n_watches);
    return w;
}

static void watch_remove(jd_chat *chat, chat_watch *w)
{
    for (size_t i = 0; i < chat->n_watches; i++)
        if (chat->watches[i] == w) {
            chat->watches[i] = chat->watches[--chat->n_watches];
            free(w);
            jd_metrics_chat_watches((int64_t)chat->n_watches);
            return;
        }
}

static void mark_dirty(jd_chat *chat, const char *conv)
{
    for (size_t i = 0; i < chat->n_dirty; i++)
        if (strcmp(chat->dirty[i], conv) == 0)
            return;
    if (!grow((void **)&chat->dirty, &chat->cap_dirty, chat->n_dirty, sizeof(*chat->dirty)))
        return; /* the 30 s safety poll catches up */
    snprintf(chat->dirty[chat->n_dirty++], JD_UUID_LEN + 1, "%s", conv);
}

static void call_free(chat_call **call)
{
    if (!*call)
        return;
    json_decref((*call)->poll);
    free(*call);
    *call = NULL;
}

static chat_call *call_take(jd_chat *chat, uint64_t tag)
{
    for (size_t i = 0; i < chat->n_calls; i++)
        if (chat->calls[i]->tag == tag) {
            chat_call *c = chat->calls[i];
            chat->calls[i] = chat->calls[--chat->n_calls];
            return c;
        }
    return NULL;
}

/* --- frames out ------------------------------------------------------------------------------- */

static void send_json(jd_chat *chat, uint64_t conn_id, json_t *frame)
{
    const char *type = json_string_value(json_object_get(frame, "type"));
    char *text = json_dumps(frame, JSON_COMPACT);
    if (text) {
        chat->io.send(chat->io.arg, conn_id, type ? type : "chat", text, strlen(text));
        free(text);
    }
    json_decref(frame);
}

static void send_error(jd_chat *chat, uint64_t conn_id, const char *id, const char *code,
                       const char *field, const char *message)
{
    json_t *f = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (!f)
        return;
    if (id && id[0])
        json_object_set_new(f, "id", json_string(id));
    if (field && field[0])
        json_object_set_new(f, "field", json_string(field));
    send_json(chat, conn_id, f);
}

static void send_ack(jd_chat *chat, uint64_t conn_id, const char *id, json_t *seq)
{
    json_t *f = json_pack("{s:s, s:[s]}", "type", "ack", "ids", id);
    if (!f)
        return;
    if (seq && json_is_integer(seq))
        json_object_set_new(f, "seq", json_pack("{s:O}", id, seq));
    send_json(chat, conn_id, f);
}

/* A frame: type (and re) first, as every journeyd frame starts, then the members of body
 * (borrowed; may be NULL). Returns NULL when out of memory. */
static json_t *frame_of(const char *type, const char *re, json_t *body)
{
    json_t *f = json_pack("{s:s}", "type", type);
    if (f && re)
        json_object_set_new(f, "re", json_string(re));
    if (f && json_is_object(body))
        json_object_update_missing(f, body);
    return f;
}

/* A reply frame: the call's result object plus type and re. */
static void send_result(jd_chat *chat, uint64_t conn_id, const char *type, const char *re,
                        json_t *result)
{
    json_t *f = frame_of(type, re, result);
    if (f)
        send_json(chat, conn_id, f);
}

/* --- calls ------------------------------------------------------------------------------------ */

/* Queues jd_chat_rpc(op, ctx, args) for conn; takes ctx and args. Returns the call, or NULL
 * after telling the client (busy or out of memory). */
static chat_call *call_start(jd_chat *chat, chat_conn *c, const char *op, const char *id,
                             json_t *ctx, json_t *args)
{
    chat_call *call = NULL;
    jd_record *rec = NULL;
    char *text = NULL;
    json_t *triple =
        json_pack("[s, o, o]", op, ctx ? ctx : json_object(), args ? args : json_object());
    ctx = args = NULL;
    if (c && c->pending >= CHAT_MAX_PENDING_PER_CONN) {
        send_error(chat, c->id, id, "chat_rate_limited", NULL,
                   "too many chat requests in progress; wait for their answers");
        goto fail;
    }
    if (!triple ||
        !grow((void **)&chat->calls, &chat->cap_calls, chat->n_calls, sizeof(*chat->calls)))
        goto busy;
    call = calloc(1, sizeof(*call));
    text = json_dumps(triple, JSON_COMPACT);
    if (!call || !text)
        goto busy;
    call->tag = ++chat->next_tag;
    call->conn_id = c ? c->id : 0;
    snprintf(call->op, sizeof(call->op), "%s", op);
    snprintf(call->id, sizeof(call->id), "%s", id ? id : "");
    rec = jd_record_new(JD_REC_CHAT, false, call->conn_id, id, text, strlen(text));
    if (!rec)
        goto busy;
    rec->tag = call->tag;
    if (!chat->io.submit(chat->io.arg, rec))
        goto busy;
    rec = NULL;
    chat->calls[chat->n_calls++] = call;
    if (c)
        c->pending++;
    json_decref(triple);
    free(text);
    return call;
busy:
    if (c)
        send_error(chat, c->id, id, "unavailable", NULL, "the server is busy; resend");
fail:
    free(rec);
    free(text);
    json_decref(triple);
    call_free(&call);
    return NULL;
}

static json_t *visitor_ctx(const chat_conn *c)
{
    return json_pack("{s:I, s:s, s:s}", "site_id", (json_int_t)c->site_id, "respondent",
                     c->respondent, "session", c->session);
}

static json_t *agent_ctx(const jd_chat *chat, const chat_conn *c)
{
    return json_pack("{s:I, s:I, s:s, s:s}", "agent_id", (json_int_t)c->agent_id, "site_id",
                     (json_int_t)c->site_id, "instance", chat->instance, "token", c->token);
}

/* Starts the one poll, for every dirty conversation someone here cares about. */
static void poll_dirty(jd_chat *chat)
{
    if (chat->poll_in_flight || !chat->n_dirty)
        return;
    bool agents_here = false;
    for (size_t i = 0; i < chat->n_conns; i++)
        agents_here |= chat->conns[i]->role == JD_CHAT_AGENT && chat->conns[i]->authed;
    json_t *entries = json_array();
    if (!entries)
        return;
    for (size_t d = 0; d < chat->n_dirty; d++) {
        const char *conv = chat->dirty[d];
        for (int agent = 0; agent < 2; agent++) {
            int64_t after = -1;
            for (size_t i = 0; i < chat->n_watches; i++) {
                chat_watch *w = chat->watches[i];
                if (w->ready && w->agent == (bool)agent && strcmp(w->conv, conv) == 0 &&
                    (after < 0 || w->last_seq_sent < after))
                    after = w->last_seq_sent;
            }
            if (after >= 0)
                json_array_append_new(entries, json_pack("{s:s, s:I, s:b}", "conversation", conv,
                                                         "after_seq", (json_int_t)after,
                                                         "for_agent", agent));
            else if (agent && agents_here)
                /* No console here watches it, but consoles of its site want inbox updates. */
                json_array_append_new(entries, json_pack("{s:s, s:b, s:b}", "conversation", conv,
                                                         "for_agent", 1, "messages", 0));
        }
    }
    chat->n_dirty = 0;
    if (!json_array_size(entries)) {
        json_decref(entries);
        return;
    }
    chat_call *call = call_start(chat, NULL, "poll", NULL, json_object(), json_incref(entries));
    if (!call) {
        /* Queue full: try again on the next wake-up or tick. */
        size_t i;
        json_t *e;
        json_array_foreach(entries, i, e)
        {
            mark_dirty(chat, json_string_value(json_object_get(e, "conversation")));
        }
        json_decref(entries);
        return;
    }
    call->poll = entries;
    chat->poll_in_flight = true;
    jd_metrics_chat_poll();
}

/* --- fan-out of a poll result ----------------------------------------------------------------- */

static chat_seen *seen_get(jd_chat *chat, const char *conv)
{
    for (size_t i = 0; i < chat->n_seen; i++)
        if (strcmp(chat->seen[i].conv, conv) == 0)
            return &chat->seen[i];
    if (!chat->seen) {
        chat->seen = calloc(CHAT_CACHE_MAX, sizeof(*chat->seen));
        if (!chat->seen)
            return NULL;
    }
    size_t slot =
        chat->n_seen < CHAT_CACHE_MAX ? chat->n_seen++ : (size_t)(jd_now_us() % CHAT_CACHE_MAX);
    chat_seen *s = &chat->seen[slot];
    memset(s, 0, sizeof(*s));
    snprintf(s->conv, sizeof(s->conv), "%s", conv);
    s->last_seq = -1;
    s->assigned = -1;
    return s;
}

static void inbox_update(jd_chat *chat, const char *conv, json_t *state)
{
    int64_t site = json_integer_value(json_object_get(state, "site_id"));
    const char *status = json_string_value(json_object_get(state, "status"));
    int64_t last_seq = json_integer_value(json_object_get(state, "last_seq"));
    int64_t unread = json_integer_value(json_object_get(state, "unread"));
    json_t *assigned = json_object_get(state, "assigned_agent");
    int64_t assigned_id =
        json_is_object(assigned) ? json_integer_value(json_object_get(assigned, "id")) : 0;
    chat_seen *s = seen_get(chat, conv);
    if (s && status && strcmp(s->status, status) == 0 && s->last_seq == last_seq &&
        s->assigned == assigned_id && s->unread == unread)
        return;
    if (s) {
        snprintf(s->status, sizeof(s->status), "%s", status ? status : "");
        s->last_seq = last_seq;
        s->assigned = assigned_id;
        s->unread = unread;
    }
    for (size_t i = 0; i < chat->n_conns; i++) {
        chat_conn *c = chat->conns[i];
        if (c->role != JD_CHAT_AGENT || !c->authed || c->site_id != site)
            continue;
        json_t *f = json_pack("{s:s, s:s, s:s?, s:I, s:I, s:O?, s:O?}", "type", "inbox.update",
                              "conversation", conv, "status", status, "last_seq",
                              (json_int_t)last_seq, "unread", (json_int_t)unread, "assigned_agent",
                              assigned, "updated_at", json_object_get(state, "updated_at"));
        if (f)
            send_json(chat, c->id, f);
    }
}

static void push_state(jd_chat *chat, chat_watch *w, json_t *state)
{
    const char *conv = w->conv;
    const char *status = json_string_value(json_object_get(state, "status"));
    json_t *receipts = json_object_get(state, "receipts");
    if (w->agent) {
        bool on = json_is_true(json_object_get(state, "visitor_typing"));
        if (on != w->typing_on) {
            w->typing_on = on;
            send_json(chat, w->conn_id,
                      json_pack("{s:s, s:s, s:s, s:b, s:i}", "type", "chat.typing", "conversation",
                                conv, "who", "visitor", "on", on, "ttl_ms", 6000));
        }
    } else {
        json_t *typist = json_object_get(state, "agent_typing");
        bool on = json_is_object(typist);
        if (on != w->typing_on) {
            w->typing_on = on;
            json_t *f = json_pack("{s:s, s:s, s:s, s:b, s:i}", "type", "chat.typing",
                                  "conversation", conv, "who", "agent", "on", on, "ttl_ms", 6000);
            if (f && on)
                json_object_set(f, "name", json_object_get(typist, "name"));
            if (f)
                send_json(chat, w->conn_id, f);
        }
    }
    /* A visitor sees how far the agents read, an agent how far the visitor read. */
    int64_t delivered = json_integer_value(
        json_object_get(receipts, w->agent ? "visitor_delivered_seq" : "agent_delivered_seq"));
    int64_t read = json_integer_value(
        json_object_get(receipts, w->agent ? "visitor_read_seq" : "agent_read_seq"));
    if (receipts && (delivered != w->delivered || read != w->read)) {
        w->delivered = delivered;
        w->read = read;
        send_json(chat, w->conn_id,
                  json_pack("{s:s, s:s, s:I, s:I}", "type", "chat.receipt", "conversation", conv,
                            "delivered_seq", (json_int_t)delivered, "read_seq", (json_int_t)read));
    }
    if (status && strcmp(status, w->status) != 0) {
        bool first = !w->status[0];
        snprintf(w->status, sizeof(w->status), "%s", status);
        if (!first) {
            json_t *f = json_pack("{s:s, s:s, s:s}", "type", "chat.status", "conversation", conv,
                                  "status", status);
            if (f && w->agent)
                json_object_set(f, "assigned_agent", json_object_get(state, "assigned_agent"));
            if (f)
                send_json(chat, w->conn_id, f);
        }
    }
    if (w->agent) {
        int64_t version = json_integer_value(json_object_get(state, "codes_version"));
        if (w->codes_version >= 0 && version != w->codes_version) {
            chat_conn *c = conn_find(chat, w->conn_id);
            chat_call *call = c ? call_start(chat, c, "codes", NULL, agent_ctx(chat, c),
                                             json_pack("{s:s}", "conversation", conv))
                                : NULL;
            if (call)
                snprintf(call->conv, sizeof(call->conv), "%s", conv);
        }
        w->codes_version = version;
    }
}

static void fan_out(jd_chat *chat, json_t *entry, json_t *result)
{
    const char *conv = json_string_value(json_object_get(entry, "conversation"));
    bool agent = json_is_true(json_object_get(entry, "for_agent"));
    json_t *state = json_object_get(result, "state");
    json_t *messages = json_object_get(result, "messages");
    if (!conv)
        return;
    if (json_is_true(json_object_get(result, "more")))
        mark_dirty(chat, conv);
    if (agent && json_is_object(state))
        inbox_update(chat, conv, state);
    for (size_t i = 0; i < chat->n_watches;) {
        chat_watch *w = chat->watches[i];
        if (!w->ready || w->agent != agent || strcmp(w->conv, conv) != 0) {
            i++;
            continue;
        }
        if (!json_is_object(state)) {
            /* Erased: the conversation is gone for everyone watching it. */
            send_json(chat, w->conn_id,
                      json_pack("{s:s, s:s, s:s}", "type", "chat.status", "conversation", conv,
                                "status", "gone"));
            watch_remove(chat, w);
            continue;
        }
        size_t k;
        json_t *m;
        json_array_foreach(messages, k, m)
        {
            int64_t seq = json_integer_value(json_object_get(m, "seq"));
            if (seq <= w->last_seq_sent)
                continue;
            json_t *f = frame_of("chat.message", NULL, m);
            if (!f)
                break;
            send_json(chat, w->conn_id, f);
            w->last_seq_sent = seq;
            jd_metrics_chat_pushed(1);
        }
        push_state(chat, w, state);
        i++;
    }
}

/* --- presence --------------------------------------------------------------------------------- */

static chat_presence *presence_get(jd_chat *chat, int64_t site_id)
{
    for (size_t i = 0; i < chat->n_presence; i++)
        if (chat->presence[i].site_id == site_id)
            return &chat->presence[i];
    if (!grow((void **)&chat->presence, &chat->cap_presence, chat->n_presence,
              sizeof(*chat->presence)))
        return NULL;
    chat_presence *p = &chat->presence[chat->n_presence++];
    memset(p, 0, sizeof(*p));
    p->site_id = site_id;
    return p;
}

static void presence_query(jd_chat *chat, int64_t site_id, bool agents)
{
    chat_presence *cache = agents ? NULL : presence_get(chat, site_id);
    if (cache && cache->pending)
        return; /* its answer reaches everyone */
    if (cache)
        cache->pending = true;
    json_t *ctx = json_pack("{s:I}", "site_id", (json_int_t)site_id);
    chat_call *call = call_start(chat, NULL, agents ? "online" : "presence", NULL, ctx, NULL);
    if (call)
        call->site_id = site_id;
    else if (cache)
        cache->pending = false;
}

/* Heartbeat (online) or goodbye for an agent of this instance. */
static void agent_presence(jd_chat *chat, chat_conn *c, bool online)
{
    json_t *ctx = agent_ctx(chat, c);
    call_start(chat, NULL, "agent_presence", NULL, ctx, json_pack("{s:b}", "online", online));
}

static bool agent_has_other_conn(const jd_chat *chat, const chat_conn *c)
{
    for (size_t i = 0; i < chat->n_conns; i++)
        if (chat->conns[i] != c && chat->conns[i]->role == JD_CHAT_AGENT &&
            chat->conns[i]->authed && chat->conns[i]->agent_id == c->agent_id)
            return true;
    return false;
}

/* --- frames in: shared checks ----------------------------------------------------------------- */

static bool take_message_token(chat_conn *c)
{
    uint64_t now = jd_now_us();
    c->tokens += (double)(now - c->tokens_at_us) * CHAT_MSG_PER_SEC / 1e6;
    if (c->tokens > CHAT_MSG_BURST)
        c->tokens = CHAT_MSG_BURST;
    c->tokens_at_us = now;
    if (c->tokens < 1.0)
        return false;
    c->tokens -= 1.0;
    return true;
}

/* The conversation a frame names, when this connection may use it. */
static const char *watched_conv(jd_chat *chat, chat_conn *c, json_t *msg, const char *id)
{
    const char *conv = json_string_value(json_object_get(msg, "conversation"));
    if (!conv || !jd_uuid_valid(conv)) {
        send_error(chat, c->id, id, "bad_field", "conversation", "conversation must be a UUID");
        return NULL;
    }
    chat_watch *w = watch_find(chat, c->id, conv);
    if (!w || !w->ready) {
        send_error(chat, c->id, id, "chat_forbidden", "conversation",
                   c->role == JD_CHAT_AGENT ? "open the conversation first"
                                            : "open or resume this conversation first");
        return NULL;
    }
    return conv;
}

static bool check_body(jd_chat *chat, chat_conn *c, json_t *msg, const char *id)
{
    const char *body = json_string_value(json_object_get(msg, "body"));
    if (!body) {
        send_error(chat, c->id, id, "missing_field", "body", "a message needs a body string");
        return false;
    }
    size_t n = jd_utf8_length(body);
    bool blank = true;
    for (const char *p = body; *p && blank; p++)
        blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
    if (n == 0 || blank || n > CHAT_BODY_MAX) {
        send_error(chat, c->id, id, "out_of_range", "body",
                   "a message has 1 to 4000 characters and is not blank");
        return false;
    }
    if (strlen(body) != json_string_length(json_object_get(msg, "body"))) {
        send_error(chat, c->id, id, "bad_field", "body", "a message cannot contain NUL");
        return false;
    }
    return true;
}

static bool check_kind(jd_chat *chat, chat_conn *c, json_t *msg, const char *id, const char *a,
                       const char *b)
{
    json_t *k = json_object_get(msg, "kind");
    const char *kind = json_string_value(k);
    if (!k || (kind && (strcmp(kind, a) == 0 || strcmp(kind, b) == 0)))
        return true;
    char why[96];
    snprintf(why, sizeof(why), "kind must be %s or %s", a, b);
    send_error(chat, c->id, id, "bad_field", "kind", why);
    return false;
}

/* Copies the listed members of msg that are present into a new args object. */
static json_t *pick(json_t *msg, const char *const *keys)
{
    json_t *args = json_object();
    for (size_t i = 0; args && keys[i]; i++) {
        json_t *v = json_object_get(msg, keys[i]);
        if (v && !json_is_null(v))
            json_object_set(args, keys[i], v);
    }
    return args;
}

static bool check_strings(jd_chat *chat, chat_conn *c, json_t *msg, const char *id,
                          const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) {
        json_t *v = json_object_get(msg, keys[i]);
        if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 2048)) {
            char why[96];
            snprintf(why, sizeof(why), "%s must be a string of at most 2048 bytes", keys[i]);
            send_error(chat, c->id, id, "bad_field", keys[i], why);
            return false;
        }
    }
    json_t *page = json_object_get(msg, "page");
    if (page && !json_is_null(page) &&
        (!json_is_object(page) ||
         (json_object_get(page, "url") && !json_is_string(json_object_get(page, "url"))))) {
        send_error(chat, c->id, id, "bad_field", "page", "page must be {\"url\": string}");
        return false;
    }
    return true;
}

static bool check_int(jd_chat *chat, chat_conn *c, json_t *msg, const char *id, const char *key,
                      bool required, int64_t min, int64_t max)
{
    json_t *v = json_object_get(msg, key);
    if (!v || json_is_null(v)) {
        if (!required)
            return true;
        send_error(chat, c->id, id, "missing_field", key, "a required number is missing");
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char why[96];
        snprintf(why, sizeof(why), "%s must be an integer from %lld to %lld", key, (long long)min,
                 (long long)max);
        send_error(chat, c->id, id, json_is_integer(v) ? "out_of_range" : "bad_field", key, why);
        return false;
    }
    return true;
}

/* --- visitors --------------------------------------------------------------------------------- */

static void visitor_open(jd_chat *chat, chat_conn *c, json_t *msg, const char *id)
{
    static const char *const keys[] = {"email", "stage", "touchpoint", NULL};
    if (!check_strings(chat, c, msg, id, keys))
        return;
    uint64_t now = jd_now_us();
    int recent = 0, oldest = 0;
    for (int i = 0; i < CHAT_OPENS_PER_MINUTE; i++) {
        if (c->opens_at_us[i] && now - c->opens_at_us[i] < 60000000ull)
            recent++;
        if (c->opens_at_us[i] < c->opens_at_us[oldest])
            oldest = i;
    }
    if (recent >= CHAT_OPENS_PER_MINUTE) {
        send_error(chat, c->id, id, "chat_rate_limited", NULL,
                   "too many new conversations; wait a minute");
        return;
    }
    c->opens_at_us[oldest] = now;
    static const char *const args_keys[] = {"email", "page", "stage", "touchpoint", NULL};
    json_t *args = pick(msg, args_keys);
    json_object_set_new(args, "id", json_string(id));
    call_start(chat, c, "open", id, visitor_ctx(c), args);
}

static void visitor_resume(jd_chat *chat, chat_conn *c, json_t *msg, const char *id)
{
    const char *conv = json_string_value(json_object_get(msg, "conversation"));
    const char *token = json_string_value(json_object_get(msg, "token"));
    if (!conv || !jd_uuid_valid(conv) || !token || strlen(token) > 128) {
        /* The same answer as for a wrong token: ids cannot be probed. */
        send_error(chat, c->id, id, "chat_forbidden", NULL, "unknown conversation or wrong token");
        return;
    }
    if (!check_int(chat, c, msg, id, "after_seq", false, 0, INT64_MAX / 2))
        return;
    int64_t after = json_integer_value(json_object_get(msg, "after_seq"));
    chat_watch *w = watch_find(chat, c->id, conv);
    if (w && w->ready) {
        /* A second resume on the same connection rewinds to what the client now has. */
        w->last_seq_sent = after;
    } else if (!(w = watch_add(chat, c->id, conv, false, after))) {
        send_error(chat, c->id, id, "unavailable", NULL, "server out of memory; resend");
        return;
    }
    chat_call *call = call_start(chat, c, "resume", id, visitor_ctx(c),
                                 json_pack("{s:s, s:s}", "conversation", conv, "token", token));
    if (call)
        snprintf(call->conv, sizeof(call->conv), "%s", conv);
    else if (!w->ready)
        watch_remove(chat, w);
}

void jd_chat_visitor_frame(jd_chat *chat, uint64_t conn_id, const jd_proto_session *session,
                           void *frame)
{
    json_t *msg = frame;
    const char *type = json_string_value(json_object_get(msg, "type"));
    const char *id = json_string_value(json_object_get(msg, "id"));
    chat_conn *c = conn_get(chat, conn_id, JD_CHAT_VISITOR);
    if (!c) {
        chat->io.close(chat->io.arg, conn_id, 1011, "out of memory");
        return;
    }
    c->site_id = session->site_id;
    snprintf(c->respondent, sizeof(c->respondent), "%s", session->respondent_id);
    snprintf(c->session, sizeof(c->session), "%s", session->session_id);
    const char *conv = NULL;
    if (strcmp(type, "chat.open") == 0) {
        visitor_open(chat, c, msg, id);
    } else if (strcmp(type, "chat.resume") == 0) {
        visitor_resume(chat, c, msg, id);
    } else if (strcmp(type, "chat.message") == 0) {
        static const char *const keys[] = {"stage", "touchpoint", "ts", NULL};
        if (!(conv = watched_conv(chat, c, msg, id)) || !check_body(chat, c, msg, id) ||
            !check_kind(chat, c, msg, id, "text", "offline") ||
            !check_strings(chat, c, msg, id, keys))
            return;
        if (!take_message_token(c)) {
            send_error(chat, c->id, id, "chat_rate_limited", NULL,
                       "too many messages per second; resend in a moment");
            return;
        }
        static const char *const args_keys[] = {"conversation", "body",       "kind", "page",
                                                "stage",        "touchpoint", "ts",   NULL};
        json_t *args = pick(msg, args_keys);
        json_object_set_new(args, "id", json_string(id));
        call_start(chat, c, "message", id, visitor_ctx(c), args);
    } else if (strcmp(type, "chat.typing") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)))
            return;
        bool on = json_is_true(json_object_get(msg, "on"));
        uint64_t now = jd_now_us();
        /* Ephemeral: extra keystroke frames are dropped, an "off" always goes through. */
        if (on && now - c->last_typing_us < CHAT_TYPING_EVERY_US)
            return;
        c->last_typing_us = now;
        call_start(chat, c, "typing", id, visitor_ctx(c),
                   json_pack("{s:s, s:b}", "conversation", conv, "on", on));
    } else if (strcmp(type, "chat.read") == 0) {
        const char *what = json_string_value(json_object_get(msg, "what"));
        if (!(conv = watched_conv(chat, c, msg, id)) ||
            !check_int(chat, c, msg, id, "upto_seq", true, 0, INT64_MAX / 2))
            return;
        if (!what || (strcmp(what, "read") != 0 && strcmp(what, "delivered") != 0)) {
            send_error(chat, c->id, id, "bad_field", "what", "what must be delivered or read");
            return;
        }
        static const char *const keys[] = {"conversation", "upto_seq", "what", NULL};
        call_start(chat, c, "read", id, visitor_ctx(c), pick(msg, keys));
    } else if (strcmp(type, "chat.email") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)))
            return;
        if (!json_is_string(json_object_get(msg, "email"))) {
            send_error(chat, c->id, id, "bad_field", "email", "email must be a string");
            return;
        }
        static const char *const keys[] = {"conversation", "email", NULL};
        call_start(chat, c, "email", id, visitor_ctx(c), pick(msg, keys));
    } else if (strcmp(type, "chat.close") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)))
            return;
        call_start(chat, c, "close", id, visitor_ctx(c), json_pack("{s:s}", "conversation", conv));
    } else if (strcmp(type, "chat.rating") == 0) {
        static const char *const keys[] = {"text", NULL};
        if (!(conv = watched_conv(chat, c, msg, id)) ||
            !check_int(chat, c, msg, id, "emotion", false, 1, 5) ||
            !check_int(chat, c, msg, id, "score", false, 1, 5) ||
            !check_strings(chat, c, msg, id, keys))
            return;
        static const char *const args_keys[] = {"conversation", "emotion", "score", "text", NULL};
        json_t *args = pick(msg, args_keys);
        json_object_set_new(args, "id", json_string(id));
        call_start(chat, c, "rating", id, visitor_ctx(c), args);
    } else {
        send_error(chat, c->id, id, "unknown_type", "type", "unknown chat frame type");
    }
}

/* --- agents ----------------------------------------------------------------------------------- */

void jd_chat_visitor_hello(jd_chat *chat, uint64_t conn_id, int64_t site_id)
{
    chat_presence *cache = presence_get(chat, site_id);
    if (!cache)
        return;
    if (cache->result && jd_now_us() - cache->at_us < CHAT_PRESENCE_FRESH_US) {
        send_result(chat, conn_id, "chat.presence", NULL, cache->result);
        return;
    }
    if (cache->n_waiters < sizeof(cache->waiters) / sizeof(cache->waiters[0]))
        cache->waiters[cache->n_waiters++] = conn_id;
    else if (cache->result)
        send_result(chat, conn_id, "chat.presence", NULL, cache->result); /* a little old */
    presence_query(chat, site_id, false);
}

void jd_chat_agent_connected(jd_chat *chat, uint64_t conn_id, const char *token)
{
    chat_conn *c = conn_get(chat, conn_id, JD_CHAT_AGENT);
    if (!c) {
        chat->io.close(chat->io.arg, conn_id, 1011, "out of memory");
        return;
    }
    snprintf(c->token, sizeof(c->token), "%s", token ? token : "");
}

static void agent_open(jd_chat *chat, chat_conn *c, json_t *msg, const char *id)
{
    const char *conv = json_string_value(json_object_get(msg, "conversation"));
    if (!conv || !jd_uuid_valid(conv)) {
        send_error(chat, c->id, id, "not_found", "conversation", "no such conversation");
        return;
    }
    if (!check_int(chat, c, msg, id, "after_seq", false, 0, INT64_MAX / 2))
        return;
    int64_t after = json_integer_value(json_object_get(msg, "after_seq"));
    chat_watch *w = watch_find(chat, c->id, conv);
    if (w && w->ready)
        w->last_seq_sent = after;
    else if (!(w = watch_add(chat, c->id, conv, true, after))) {
        send_error(chat, c->id, id, "unavailable", NULL, "server out of memory; resend");
        return;
    }
    chat_call *call = call_start(chat, c, "agent_open", id, agent_ctx(chat, c),
                                 json_pack("{s:s}", "conversation", conv));
    if (call)
        snprintf(call->conv, sizeof(call->conv), "%s", conv);
    else if (!w->ready)
        watch_remove(chat, w);
}

static void agent_frame(jd_chat *chat, chat_conn *c, json_t *msg, const char *type, const char *id)
{
    const char *conv = NULL;
    json_t *ctx = agent_ctx(chat, c);
    if (strcmp(type, "inbox") == 0) {
        static const char *const keys[] = {"status", "limit", "offset", NULL};
        call_start(chat, c, "inbox", id, ctx, pick(msg, keys));
        return;
    }
    if (strcmp(type, "open") == 0) {
        json_decref(ctx);
        agent_open(chat, c, msg, id);
        return;
    }
    if (strcmp(type, "leave") == 0) {
        const char *lconv = json_string_value(json_object_get(msg, "conversation"));
        chat_watch *w = lconv ? watch_find(chat, c->id, lconv) : NULL;
        if (w)
            watch_remove(chat, w);
        send_ack(chat, c->id, id, NULL);
        json_decref(ctx);
        return;
    }
    if (strcmp(type, "chat.message") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)) || !check_body(chat, c, msg, id) ||
            !check_kind(chat, c, msg, id, "text", "note"))
            goto done;
        if (!take_message_token(c)) {
            send_error(chat, c->id, id, "chat_rate_limited", NULL,
                       "too many messages per second; resend in a moment");
            goto done;
        }
        static const char *const keys[] = {"conversation", "body", "kind", NULL};
        json_t *args = pick(msg, keys);
        json_object_set_new(args, "id", json_string(id));
        call_start(chat, c, "agent_message", id, ctx, args);
        return;
    }
    if (strcmp(type, "chat.typing") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)))
            goto done;
        bool on = json_is_true(json_object_get(msg, "on"));
        uint64_t now = jd_now_us();
        if (on && now - c->last_typing_us < CHAT_TYPING_EVERY_US)
            goto done;
        c->last_typing_us = now;
        call_start(chat, c, "agent_typing", id, ctx,
                   json_pack("{s:s, s:b}", "conversation", conv, "on", on));
        return;
    }
    if (strcmp(type, "chat.read") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)) ||
            !check_int(chat, c, msg, id, "upto_seq", true, 0, INT64_MAX / 2))
            goto done;
        static const char *const keys[] = {"conversation", "upto_seq", "what", NULL};
        call_start(chat, c, "agent_read", id, ctx, pick(msg, keys));
        return;
    }
    if (strcmp(type, "chat.close") == 0) {
        if (!(conv = watched_conv(chat, c, msg, id)))
            goto done;
        call_start(chat, c, "agent_close", id, ctx, json_pack("{s:s}", "conversation", conv));
        return;
    }
    static const struct {
        const char *type, *op;
    } passthrough[] = {{"code.create", "code_create"},
                       {"code.revise", "code_revise"},
                       {"code.retract", "code_retract"},
                       {"codes.history", "codes_history"},
                       {"canned", "canned"},
                       {"canned.save", "canned_save"},
                       {"canned.delete", "canned_delete"}};
    for (size_t i = 0; i < sizeof(passthrough) / sizeof(passthrough[0]); i++) {
        if (strcmp(type, passthrough[i].type) != 0)
            continue;
        /* The SQL functions validate these fields (spans, slugs, roles) and name the bad one. */
        json_t *args = json_deep_copy(msg);
        json_object_del(args, "type");
        call_start(chat, c, passthrough[i].op, id, ctx, args);
        return;
    }
    send_error(chat, c->id, id, "unknown_type", "type", "unknown frame type");
done:
    json_decref(ctx);
}

void jd_chat_agent_frame(jd_chat *chat, uint64_t conn_id, const char *frame, size_t len)
{
    chat_conn *c = conn_find(chat, conn_id);
    if (!c)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(frame, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg || !json_is_object(msg)) {
        send_error(chat, conn_id, NULL, msg ? "bad_frame" : "bad_json", NULL,
                   msg ? "frame must be a JSON object" : "frame is not valid JSON");
        json_decref(msg);
        return;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (!type) {
        send_error(chat, conn_id, NULL, "bad_frame", "type", "frame needs a string type");
    } else if (!id || !jd_uuid_valid(id)) {
        send_error(chat, conn_id, NULL, id ? "bad_field" : "missing_field", "id",
                   "every frame needs a UUID id");
    } else if (strcmp(type, "ping") == 0) {
        send_json(chat, conn_id, json_pack("{s:s, s:s}", "type", "pong", "re", id));
    } else if (strcmp(type, "hello") == 0) {
        if (c->authed) {
            send_error(chat, conn_id, id, "duplicate_hello", NULL, "already signed in");
        } else if (!c->hello_pending) {
            json_t *ctx = json_pack("{s:s}", "token", c->token);
            if (call_start(chat, c, "agent_hello", id, ctx, NULL))
                c->hello_pending = true;
        }
    } else if (!c->authed) {
        send_error(chat, conn_id, id, "not_ready", NULL, "send hello and wait for welcome");
    } else {
        agent_frame(chat, c, msg, type, id);
    }
    json_decref(msg);
}

/* --- replies ---------------------------------------------------------------------------------- */

static void reply_agent_hello(jd_chat *chat, chat_conn *c, chat_call *call, json_t *result)
{
    c->hello_pending = false;
    json_t *agent = json_object_get(result, "agent");
    c->agent_id = json_integer_value(json_object_get(agent, "id"));
    c->site_id = json_integer_value(json_object_get(agent, "site_id"));
    snprintf(c->agent_name, sizeof(c->agent_name), "%s",
             json_string_value(json_object_get(agent, "name")) ?: "");
    bool first = !agent_has_other_conn(chat, c);
    c->authed = true;
    json_t *f = frame_of("welcome", call->id, NULL);
    if (f) {
        json_object_set_new(f, "v", json_integer(1));
        json_object_update_missing(f, result);
        send_json(chat, c->id, f);
    }
    if (first)
        agent_presence(chat, c, true);
}

static void reply_poll(jd_chat *chat, chat_call *call, json_t *result)
{
    chat->poll_in_flight = false;
    json_t *results = json_object_get(result, "results");
    size_t i;
    json_t *entry;
    json_array_foreach(call->poll, i, entry)
    {
        fan_out(chat, entry, json_array_get(results, i));
    }
}

static void reply_presence(jd_chat *chat, chat_call *call, json_t *result)
{
    bool agents = strcmp(call->op, "online") == 0;
    chat_presence *cache = agents ? NULL : presence_get(chat, call->site_id);
    if (cache) {
        cache->pending = false;
        json_decref(cache->result);
        cache->result = json_incref(result);
        cache->at_us = jd_now_us();
        for (size_t i = 0; i < cache->n_waiters; i++)
            send_result(chat, cache->waiters[i], "chat.presence", NULL, result);
        cache->n_waiters = 0;
    }
    for (size_t i = 0; i < chat->n_conns; i++) {
        chat_conn *c = chat->conns[i];
        if (c->site_id != call->site_id || (c->role == JD_CHAT_AGENT) != agents ||
            (agents && !c->authed))
            continue;
        if (!agents) {
            bool watching = false;
            for (size_t k = 0; k < chat->n_watches && !watching; k++)
                watching = chat->watches[k]->conn_id == c->id && chat->watches[k]->ready;
            if (!watching)
                continue;
        }
        send_result(chat, c->id, "chat.presence", NULL, result);
    }
}

/* A visitor's conversation is ready: its watch starts, the client hears presence, the poll
 * sends what it has not seen. */
static void watch_ready(jd_chat *chat, chat_conn *c, const char *conv, int64_t after,
                        json_t *result)
{
    chat_watch *w = watch_find(chat, c->id, conv);
    if (!w && !(w = watch_add(chat, c->id, conv, c->role == JD_CHAT_AGENT, after)))
        return;
    w->ready = true;
    json_t *state = json_object_get(result, "state");
    if (json_is_object(state))
        w->codes_version = json_integer_value(json_object_get(state, "codes_version"));
    else if (w->agent)
        w->codes_version = 0;
    mark_dirty(chat, conv);
}

static void reply_ok(jd_chat *chat, chat_conn *c, chat_call *call, json_t *result)
{
    const char *op = call->op;
    if (strcmp(op, "open") == 0) {
        const char *conv = json_string_value(json_object_get(result, "conversation"));
        if (!conv)
            return;
        watch_ready(chat, c, conv, 0, result);
        send_result(chat, c->id, "chat.opened", call->id, result);
        send_result(chat, c->id, "chat.presence", NULL, json_object_get(result, "presence"));
    } else if (strcmp(op, "resume") == 0) {
        watch_ready(chat, c, call->conv, 0, result);
        send_result(chat, c->id, "chat.resumed", call->id, result);
        send_result(chat, c->id, "chat.presence", NULL, json_object_get(result, "presence"));
    } else if (strcmp(op, "agent_open") == 0) {
        watch_ready(chat, c, call->conv, 0, result);
        send_result(chat, c->id, "conversation", call->id, result);
    } else if (strcmp(op, "message") == 0 || strcmp(op, "agent_message") == 0) {
        send_ack(chat, c->id, call->id, json_object_get(result, "seq"));
    } else if (strcmp(op, "inbox") == 0) {
        send_result(chat, c->id, "inbox", call->id, result);
    } else if (strncmp(op, "code_", 5) == 0) {
        json_t *f = json_pack("{s:s, s:s, s:O}", "type", "code", "re", call->id, "code", result);
        if (f)
            send_json(chat, c->id, f);
    } else if (strcmp(op, "codes_history") == 0) {
        send_result(chat, c->id, "codes.history", call->id, result);
    } else if (strcmp(op, "codes") == 0) {
        send_result(chat, c->id, "chat.codes", NULL, result);
    } else if (strcmp(op, "canned") == 0) {
        send_result(chat, c->id, "canned", call->id, result);
    } else if (strcmp(op, "canned_save") == 0) {
        json_t *f =
            json_pack("{s:s, s:s, s:O}", "type", "canned.saved", "re", call->id, "canned", result);
        if (f)
            send_json(chat, c->id, f);
    } else if (strcmp(op, "agent_hello") == 0) {
        reply_agent_hello(chat, c, call, result);
    } else if (strcmp(op, "agent_check") == 0) {
        if (!json_is_true(json_object_get(result, "ok")))
            chat->io.close(chat->io.arg, c->id, CHAT_CLOSE_POLICY, "session expired");
    } else if (strcmp(op, "typing") == 0 || strcmp(op, "agent_typing") == 0) {
        /* ephemeral: no ack */
    } else {
        send_ack(chat, c->id, call->id, NULL);
    }
}

void jd_chat_on_reply(jd_chat *chat, jd_chat_reply *reply)
{
    chat_call *call = call_take(chat, reply->tag);
    jd_metrics_chat_call(reply->err == NULL);
    if (!call)
        goto done;
    chat_conn *c = call->conn_id ? conn_find(chat, call->conn_id) : NULL;
    if (c && c->pending > 0)
        c->pending--;
    if (strcmp(call->op, "poll") == 0)
        chat->poll_in_flight = false;
    if (reply->err && strcmp(call->op, "presence") == 0) {
        chat_presence *cache = presence_get(chat, call->site_id);
        if (cache)
            cache->pending = false; /* waiters hear it from the next hello's query or a tick */
    }
    if (reply->err) {
        if (strcmp(call->op, "poll") == 0) {
            /* Try again later: the conversations stay dirty. */
            size_t i;
            json_t *e;
            json_array_foreach(call->poll, i, e)
            {
                mark_dirty(chat, json_string_value(json_object_get(e, "conversation")));
            }
            goto done;
        }
        if (!c)
            goto done;
        if (call->conv[0] &&
            (strcmp(call->op, "resume") == 0 || strcmp(call->op, "agent_open") == 0)) {
            chat_watch *w = watch_find(chat, c->id, call->conv);
            if (w && !w->ready)
                watch_remove(chat, w);
        }
        if (strcmp(call->op, "agent_hello") == 0 && strcmp(reply->code, "unavailable") != 0) {
            c->hello_pending = false;
            send_error(chat, c->id, call->id, reply->code, NULL, reply->message);
            chat->io.close(chat->io.arg, c->id, CHAT_CLOSE_POLICY, "session expired");
            goto done;
        }
        if (strcmp(call->op, "agent_hello") == 0)
            c->hello_pending = false;
        if (strcmp(call->op, "typing") != 0 && strcmp(call->op, "agent_typing") != 0 &&
            strcmp(call->op, "agent_presence") != 0)
            send_error(chat, c->id, call->id, reply->code, reply->field, reply->message);
        goto done;
    }
    json_error_t jerr;
    json_t *result = json_loadb(reply->json, reply->len, 0, &jerr);
    if (strcmp(call->op, "poll") == 0)
        reply_poll(chat, call, result);
    else if (strcmp(call->op, "presence") == 0 || strcmp(call->op, "online") == 0)
        reply_presence(chat, call, result);
    else if (c)
        reply_ok(chat, c, call, result);
    json_decref(result);
done:
    call_free(&call);
    free(reply);
    poll_dirty(chat);
}

/* --- wake-ups --------------------------------------------------------------------------------- */

/* Sends the site's current presence to its chatting visitors and consoles here. */
static void presence_refresh(jd_chat *chat, int64_t site)
{
    bool visitors = false, agents = false;
    for (size_t i = 0; i < chat->n_conns; i++)
        if (chat->conns[i]->site_id == site) {
            visitors |= chat->conns[i]->role == JD_CHAT_VISITOR;
            agents |= chat->conns[i]->role == JD_CHAT_AGENT && chat->conns[i]->authed;
        }
    if (visitors)
        presence_query(chat, site, false);
    if (agents)
        presence_query(chat, site, true);
}

/* Asks whether an agent's session is still live; the reply closes the socket if not. The call
 * belongs to the connection so the reply can find it. */
static void session_check(jd_chat *chat, chat_conn *c)
{
    call_start(chat, c, "agent_check", NULL, agent_ctx(chat, c), NULL);
}

void jd_chat_on_notify(jd_chat *chat, jd_chat_channel channel, const char *payload)
{
    jd_metrics_chat_notification();
    switch (channel) {
    case JD_CHAT_CHANNEL_CHAT: {
        if (!jd_uuid_valid(payload))
            return;
        bool wanted = false;
        for (size_t i = 0; i < chat->n_watches && !wanted; i++)
            wanted = strcmp(chat->watches[i]->conv, payload) == 0;
        for (size_t i = 0; i < chat->n_conns && !wanted; i++)
            wanted = chat->conns[i]->role == JD_CHAT_AGENT && chat->conns[i]->authed;
        if (wanted)
            mark_dirty(chat, payload);
        poll_dirty(chat);
        break;
    }
    case JD_CHAT_CHANNEL_PRESENCE: {
        int64_t site = strtoll(payload, NULL, 10);
        chat_presence *cache = presence_get(chat, site);
        if (cache)
            cache->at_us = 0;
        presence_refresh(chat, site);
        break;
    }
    case JD_CHAT_CHANNEL_AGENT: {
        /* Logout, a new password or a disabled account: re-check that agent's sockets. */
        int64_t agent = strtoll(payload, NULL, 10);
        for (size_t i = 0; i < chat->n_conns; i++) {
            chat_conn *c = chat->conns[i];
            if (c->role == JD_CHAT_AGENT && c->authed && c->agent_id == agent)
                session_check(chat, c);
        }
        break;
    }
    }
}

void jd_chat_on_resync(jd_chat *chat)
{
    for (size_t i = 0; i < chat->n_watches; i++)
        if (chat->watches[i]->ready)
            mark_dirty(chat, chat->watches[i]->conv);
    poll_dirty(chat);
}

void jd_chat_on_tick(jd_chat *chat)
{
    chat->ticks++;
    for (size_t i = 0; i < chat->n_conns; i++) {
        chat_conn *c = chat->conns[i];
        if (c->role != JD_CHAT_AGENT || !c->authed)
            continue;
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = !(chat->conns[k]->role == JD_CHAT_AGENT && chat->conns[k]->authed &&
                      chat->conns[k]->agent_id == c->agent_id);
        if (first)
            agent_presence(chat, c, true);
        if (chat->ticks % 30 == 0)
            session_check(chat, c);
    }
    if (chat->ticks % 3 == 0) {
        /* Safety poll: typing and presence that expired without a notification, and anything
         * a lost notification delayed. */
        jd_chat_on_resync(chat);
        int64_t sites[64];
        size_t n_sites = 0;
        for (size_t i = 0; i < chat->n_conns && n_sites < 64; i++) {
            bool known = false;
            for (size_t k = 0; k < n_sites && !known; k++)
                known = sites[k] == chat->conns[i]->site_id;
            if (!known && chat->conns[i]->site_id)
                sites[n_sites++] = chat->conns[i]->site_id;
        }
        for (size_t k = 0; k < n_sites; k++)
            presence_refresh(chat, sites[k]);
    }
}

/* --- lifecycle -------------------------------------------------------------------------------- */

void jd_chat_conn_closed(jd_chat *chat, uint64_t conn_id)
{
    for (size_t i = 0; i < chat->n_watches;) {
        if (chat->watches[i]->conn_id == conn_id)
            watch_remove(chat, chat->watches[i]);
        else
            i++;
    }
    for (size_t i = 0; i < chat->n_conns; i++) {
        chat_conn *c = chat->conns[i];
        if (c->id != conn_id)
            continue;
        if (c->role == JD_CHAT_AGENT && c->authed && !agent_has_other_conn(chat, c))
            agent_presence(chat, c, false);
        chat->conns[i] = chat->conns[--chat->n_conns];
        free(c);
        break;
    }
    /* Calls in flight stay in the table; their replies find no connection and are dropped. */
}

bool jd_chat_http_record(const char *op, const char *body, size_t body_len, const char *query,
                         size_t query_len, const char *token, jd_buf *rec)
{
    json_error_t jerr;
    json_t *args = body_len ? json_loadb(body, body_len, 0, &jerr) : json_object();
    json_t *q = query_len ? json_loadb(query, query_len, 0, &jerr) : json_object();
    json_t *pair = NULL;
    char *text = NULL;
    bool ok = false;
    if (!json_is_object(args) || !json_is_object(q))
        goto fail;
    json_object_update(args, q);
    if (token && token[0])
        json_object_set_new(args, "token", json_string(token));
    pair = json_pack("[s, O]", op, args);
    text = pair ? json_dumps(pair, JSON_COMPACT) : NULL;
    if (!text)
        goto fail;
    jd_buf_puts(rec, text);
    ok = jd_buf_ok(rec);
fail:
    free(text);
    json_decref(pair);
    json_decref(args);
    json_decref(q);
    return ok;
}

size_t jd_chat_watch_count(const jd_chat *chat)
{
    return chat->n_watches;
}

bool jd_chat_create(const jd_chat_io *io, const char *instance, jd_chat **out)
{
    jd_chat *chat = calloc(1, sizeof(*chat));
    if (!chat)
        return false;
    chat->io = *io;
    snprintf(chat->instance, sizeof(chat->instance), "%s", instance ? instance : "");
    *out = chat;
    return true;
}

void jd_chat_destroy(jd_chat **pchat)
{
    jd_chat *chat = *pchat;
    if (!chat)
        return;
    for (size_t i = 0; i < chat->n_conns; i++)
        free(chat->conns[i]);
    for (size_t i = 0; i < chat->n_watches; i++)
        free(chat->watches[i]);
    for (size_t i = 0; i < chat->n_calls; i++)
        call_free(&chat->calls[i]);
    free(chat->conns);
    free(chat->watches);
    free(chat->calls);
    free(chat->dirty);
    free(chat->seen);
    for (size_t i = 0; i < chat->n_presence; i++)
        json_decref(chat->presence[i].result);
    free(chat->presence);
    free(chat);
    *pchat = NULL;
}
