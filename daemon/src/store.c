/* The store thread's PostgreSQL engine. One nonblocking libpq connection in pipeline mode carries
 * a FIFO of requests (prepare, catalog load, batch). A batch is a group commit: up to batch_max
 * records popped from the inbound queue, written with one prepared statement per table, each
 * taking the whole batch as one JSON array (json_to_recordset), followed by a pipeline sync: the
 * sync ends the implicit transaction, so PGRES_PIPELINE_SYNC means COMMIT is durable
 * (synchronous_commit is forced on) and only then are the client ids acked. Up to
 * pipeline_depth batches are in flight, so the next batch is built while the previous commits:
 * batch size adapts to load by itself. Failure handling:
 *  - data errors (SQLSTATE classes 22 and 23) split the batch into single-record batches, so one
 *    poisoned row is rejected with store_rejected and its neighbours are still stored;
 *  - anything else (connection loss, shutdown, resource errors) keeps the batch and retries it
 *    after reconnecting; inserts are idempotent (ON CONFLICT DO NOTHING), so a batch whose COMMIT
 *    outcome is unknown can safely run twice.
 * While batches cannot be written the store stops popping, the inbound queue fills, and the
 * network thread pauses reading: memory stays bounded. */
#include "store.h"

#include "catalog.h"
#include "channel.h"
#include "export.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define JD_MAX_STATEMENTS 4

typedef enum {
    JD_STORE_DISCONNECTED = 0, /* waiting for the reconnect timer */
    JD_STORE_CONNECTING,       /* PQconnectPoll in progress */
    JD_STORE_READY,            /* pipeline open, requests flow */
    JD_STORE_CLOSED,           /* destroyed */
} jd_store_state;

typedef enum {
    JD_REQ_SETUP = 0,
    JD_REQ_CATALOG,
    JD_REQ_BATCH,
    JD_REQ_API,
    JD_REQ_PURGE,
    JD_REQ_CHAT
} jd_request_kind;

typedef struct jd_batch {
    jd_record **records;
    size_t n;
    bool single; /* already isolated: a data error rejects it */
} jd_batch;

typedef struct jd_request {
    struct jd_request *next;
    jd_request_kind kind;
    jd_batch *batch; /* JD_REQ_BATCH */
    uint64_t sent_us;
    int results_pending; /* statements whose results have not all arrived */
    bool failed;
    char sqlstate[6];
    char error[256];
    char *catalog_json;         /* JD_REQ_CATALOG: the document, owned */
    jd_record *api;             /* JD_REQ_API: the request, owned */
    jd_http_response *response; /* JD_REQ_API: the answer once its row arrived, owned */
    long purged;                /* JD_REQ_PURGE: rows deleted, -1 until known */
    char detail[40];            /* the error's DETAIL (a JDnnn error's code) */
    char hint[40];              /* the error's HINT (a JDnnn error's field) */
    jd_record *chat;            /* JD_REQ_CHAT: the call, owned */
    jd_chat_reply *reply;       /* JD_REQ_CHAT: the result once its row arrived, owned */
} jd_request;

/* A FIFO of batches waiting to be (re)sent, in order. */
typedef struct jd_batch_list {
    jd_batch **items;
    size_t n, cap;
} jd_batch_list;

struct jd_store {
    jd_store_role role;
    struct event_base *base;
    jd_config config;
    char *conninfo;
    jd_queue *inbound;
    jd_queue *outbound;
    jd_store_wake_fn wake_net;
    void *wake_arg;

    jd_store_state state;
    PGconn *conn;
    struct event *read_ev;
    struct event *write_ev;
    struct event *wake_ev;
    struct event *reconnect_ev;
    struct event *catalog_ev;
    struct event *retry_events_ev;
    struct event *purge_ev;
    struct event *tick_ev; /* chat store: presence heartbeats and safety polls */
    int purge_batch;
    long purged_total;
    bool purge_in_flight;
    uint64_t backoff_ms;

    jd_request *head, *tail; /* in flight, in send order */
    int batches_in_flight;
    jd_batch_list waiting; /* batches to send before popping more records */
    jd_record **pop_buf;

    jd_event *pending_events; /* outbound events that did not fit yet */
    size_t n_pending_events, cap_pending_events;

    bool drain_seen;
    bool drained_sent;
    bool catalog_in_flight;
    char setup_error[320]; /* set when the session setup failed; the connection is dropped */

    pthread_mutex_t health_lock;
    char health_reason[256];
    atomic_bool healthy;
};

static void store_set_state(jd_store *s, jd_store_state state, const char *reason);
static void store_pump(jd_store *s);
static void store_flush_output(jd_store *s);
static void store_schedule_reconnect(jd_store *s);
static void complete_purge(jd_store *s, jd_request *req);
static void complete_chat(jd_store *s, jd_request *req);
static bool send_chat(jd_store *s, jd_record *rec);

/* --- SQL --------------------------------------------------------------------------------- */

static const char *const statement_names[JD_MAX_STATEMENTS] = {"jd_respondents", "jd_sessions",
                                                               "jd_touches", "jd_answers"};

static const char *const statement_sql[JD_MAX_STATEMENTS] = {
    "INSERT INTO respondents (site_id, id) "
    "SELECT DISTINCT r.site_id, r.respondent_id "
    "FROM json_to_recordset($1::json) AS r(site_id bigint, respondent_id uuid) "
    "ON CONFLICT DO NOTHING",

    /* A hello and a later consent for one session can share a batch: keep the last. */
    "INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent, url, referrer, lang, "
    "utm, persona_id, stage_id, touchpoint_id, subject, verified, client_ip) "
    "SELECT DISTINCT ON (r.id) r.id, r.site_id, r.respondent_id, r.consent_mode, r.consent, "
    "r.url, r.referrer, r.lang, coalesce(r.utm, '{}'), r.persona_id, r.stage_id, r.touchpoint_id, "
    "r.subject, coalesce(r.verified, false), r.client_ip "
    "FROM (SELECT x.*, row_number() OVER () AS n FROM json_to_recordset($1::json) AS x(id uuid, "
    "site_id bigint, respondent_id uuid, consent_mode text, consent boolean, url text, "
    "referrer text, lang text, utm jsonb, persona_id bigint, stage_id bigint, "
    "touchpoint_id bigint, subject text, verified boolean, client_ip inet)) r "
    "ORDER BY r.id, r.n DESC "
    "ON CONFLICT (id) DO UPDATE SET consent = EXCLUDED.consent",

    "INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind, name, url, "
    "stage_id, touchpoint_id, client_ts) "
    "SELECT r.site_id, r.client_id, r.session_id, r.respondent_id, r.kind, r.name, r.url, "
    "r.stage_id, r.touchpoint_id, r.client_ts "
    "FROM json_to_recordset($1::json) AS r(site_id bigint, client_id uuid, session_id uuid, "
    "respondent_id uuid, kind text, name text, url text, stage_id bigint, touchpoint_id bigint, "
    "client_ts timestamptz) "
    "ON CONFLICT (site_id, client_id) DO NOTHING",

    "INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, session_id, "
    "respondent_id, persona_id, stage_id, touchpoint_id, emotion, score, goal_reached, "
    "obstacle_ids, choice, thought, action, value, client_ts) "
    "SELECT r.site_id, r.map_id, r.client_id, r.survey_id, r.question_id, r.session_id, "
    "r.respondent_id, r.persona_id, r.stage_id, r.touchpoint_id, r.emotion, r.score, "
    "r.goal_reached, coalesce(r.obstacle_ids, '{}'), r.choice, r.thought, r.action, r.value, "
    "r.client_ts "
    "FROM json_to_recordset($1::json) AS r(site_id bigint, map_id bigint, client_id uuid, "
    "survey_id bigint, question_id bigint, session_id uuid, respondent_id uuid, "
    "persona_id bigint, stage_id bigint, touchpoint_id bigint, emotion smallint, score smallint, "
    "goal_reached boolean, obstacle_ids bigint[], choice text[], thought text, action text, "
    "value jsonb, client_ts timestamptz) "
    "ON CONFLICT (site_id, client_id) DO NOTHING",
};

/* One document with every site, its maps' slugs and its live surveys, so the network thread can
 * validate frames without a round trip. Retired questions and non-live surveys are left out. */
static const char catalog_sql[] =
    "SELECT json_build_object('sites', coalesce(json_agg(json_build_object("
    " 'id', s.id, 'key', s.key, 'origins', to_json(s.allowed_origins),"
    " 'consent_mode', s.consent_mode, 'redact', s.redact, 'store_ip', s.store_ip,"
    " 'identity_secret', s.identity_secret,"
    " 'chat', EXISTS (SELECT 1 FROM agents a WHERE a.site_id = s.id AND a.disabled_at IS NULL),"
    " 'rules', (SELECT coalesce(json_agg(json_build_object('kind', r.kind, 'match', r.match,"
    "   'stage', rs.slug, 'touchpoint', rt.slug, 'persona', rp.slug,"
    "   'question_id', (SELECT q.id FROM surveys sv JOIN questions q ON q.survey_id = sv.id"
    "                   WHERE r.kind = 'screener' AND sv.map_id = r.map_id"
    "                     AND (sv.slug = r.match ->> 'survey' OR sv.id::text = r.match ->> "
    "'survey')"
    "                     AND q.key = r.match ->> 'question' AND q.retired_at IS NULL LIMIT 1))"
    "   ORDER BY r.position, r.id), '[]')"
    "   FROM tagging_rules r LEFT JOIN stages rs ON rs.id = r.stage_id"
    "   LEFT JOIN touchpoints rt ON rt.id = r.touchpoint_id LEFT JOIN personas rp ON rp.id = "
    "r.persona_id"
    "   WHERE r.site_id = s.id),"
    " 'maps', (SELECT coalesce(json_agg(json_build_object('id', m.id,"
    "   'personas', (SELECT coalesce(json_object_agg(p.slug, p.id), '{}') FROM personas p"
    "                WHERE p.map_id = m.id),"
    "   'stages', (SELECT coalesce(json_object_agg(x.slug, x.id), '{}') FROM stages x"
    "              WHERE x.map_id = m.id),"
    "   'touchpoints', (SELECT coalesce(json_object_agg(t.slug, t.id), '{}') FROM touchpoints t"
    "                   WHERE t.map_id = m.id),"
    "   'obstacles', (SELECT coalesce(json_object_agg(o.slug, o.id), '{}') FROM obstacles o"
    "                 WHERE o.map_id = m.id)) ORDER BY m.id), '[]')"
    "   FROM maps m WHERE m.site_id = s.id),"
    " 'surveys', (SELECT coalesce(json_agg(json_build_object('id', sv.id, 'slug', sv.slug,"
    "   'title', sv.title, 'map', sv.map_id, 'locale', sv.locale, 'display', sv.display,"
    "   'trigger', sv.trigger,"
    "   'obstacles', (SELECT coalesce(json_agg(json_build_object('slug', o.slug, 'name', o.name)"
    "                 ORDER BY o.id), '[]') FROM obstacles o WHERE o.map_id = sv.map_id),"
    "   'questions', (SELECT coalesce(json_agg(json_build_object('id', q.id, 'key', q.key,"
    "     'kind', q.kind, 'prompt', q.prompt, 'required', q.required, 'options', q.options,"
    "     'lane', q.lane, 'stage', st.slug, 'touchpoint', tp.slug, 'show_if', q.show_if,"
    "     'stage_id', q.stage_id, 'touchpoint_id', q.touchpoint_id)"
    "     ORDER BY q.position, q.id), '[]')"
    "     FROM questions q LEFT JOIN stages st ON st.id = q.stage_id"
    "     LEFT JOIN touchpoints tp ON tp.id = q.touchpoint_id"
    "     WHERE q.survey_id = sv.id AND q.retired_at IS NULL)) ORDER BY sv.id), '[]')"
    "   FROM surveys sv JOIN maps m ON m.id = sv.map_id"
    "   WHERE m.site_id = s.id AND sv.status = 'live')"
    ")), '[]'))::text FROM sites s";

/* --- small helpers ------------------------------------------------------------------------ */

static void batch_free(jd_batch **batch)
{
    if (!*batch)
        return;
    for (size_t i = 0; i < (*batch)->n; i++)
        free((*batch)->records[i]);
    free((*batch)->records);
    free(*batch);
    *batch = NULL;
}

/* Puts batches back at the head of the retry list, in order. They hold records the clients were
 * not acked for, so dropping them silently is never an option: out of memory here is fatal. */
static void batch_list_push_front(jd_batch_list *list, jd_batch **items, size_t n)
{
    if (list->n + n > list->cap) {
        size_t cap = list->cap ? list->cap : 16;
        while (cap < list->n + n)
            cap *= 2;
        jd_batch **grown = realloc(list->items, cap * sizeof(*grown));
        if (!grown)
            jd_fatal("out of memory keeping %zu batches for retry", n);
        list->items = grown;
        list->cap = cap;
    }
    memmove(list->items + n, list->items, list->n * sizeof(*list->items));
    memcpy(list->items, items, n * sizeof(*items));
    list->n += n;
}

static jd_batch *batch_list_pop_front(jd_batch_list *list)
{
    if (!list->n)
        return NULL;
    jd_batch *b = list->items[0];
    memmove(list->items, list->items + 1, (list->n - 1) * sizeof(*list->items));
    list->n--;
    return b;
}

static void request_free(jd_request **req)
{
    if (!*req)
        return;
    batch_free(&(*req)->batch);
    free((*req)->catalog_json);
    free((*req)->api);
    free((*req)->response);
    free((*req)->chat);
    free((*req)->reply);
    free(*req);
    *req = NULL;
}

static void set_health(jd_store *s, bool ok, const char *reason)
{
    pthread_mutex_lock(&s->health_lock);
    snprintf(s->health_reason, sizeof(s->health_reason), "%s", reason ? reason : "");
    pthread_mutex_unlock(&s->health_lock);
    atomic_store(&s->healthy, ok);
    jd_metrics_db_up(ok ? 1 : 0);
}

bool jd_store_healthy(jd_store *s, char *reason, size_t reason_len)
{
    bool ok = atomic_load(&s->healthy);
    if (!ok) {
        pthread_mutex_lock(&s->health_lock);
        snprintf(reason, reason_len, "%s", s->health_reason);
        pthread_mutex_unlock(&s->health_lock);
    }
    return ok;
}

/* The one place the connection state changes. */
static void store_set_state(jd_store *s, jd_store_state state, const char *reason)
{
    if (s->state == state)
        return;
    s->state = state;
    switch (state) {
    case JD_STORE_READY:
        jd_log_info("database connection ready (%s)", s->role == JD_STORE_API    ? "admin API"
                                                      : s->role == JD_STORE_CHAT ? "chat"
                                                                                 : "ingest");
        set_health(s, true, NULL);
        break;
    case JD_STORE_DISCONNECTED:
    case JD_STORE_CONNECTING:
        set_health(s, false, reason ? reason : "database not connected");
        break;
    case JD_STORE_CLOSED:
        set_health(s, false, "store closed");
        break;
    }
}

/* --- events to the network thread --------------------------------------------------------- */

static bool queue_event(jd_store *s, const jd_event *ev)
{
    if (s->n_pending_events == s->cap_pending_events) {
        size_t cap = s->cap_pending_events ? s->cap_pending_events * 2 : 256;
        jd_event *grown = realloc(s->pending_events, cap * sizeof(*grown));
        if (!grown)
            return false;
        s->pending_events = grown;
        s->cap_pending_events = cap;
    }
    s->pending_events[s->n_pending_events++] = *ev;
    return true;
}

/* Pushes pending events; whatever does not fit is retried shortly. Acks are therefore never
 * dropped, only delayed, when the network thread falls behind. */
static void flush_events(jd_store *s)
{
    if (!s->n_pending_events)
        return;
    bool was_empty;
    size_t pushed = jd_queue_push(s->outbound, s->pending_events, s->n_pending_events, &was_empty);
    memmove(s->pending_events, s->pending_events + pushed,
            (s->n_pending_events - pushed) * sizeof(*s->pending_events));
    s->n_pending_events -= pushed;
    if (pushed && was_empty)
        s->wake_net(s->wake_arg);
    if (s->n_pending_events) {
        struct timeval tv = {0, 2000};
        event_add(s->retry_events_ev, &tv);
    }
}

static void on_retry_events(evutil_socket_t fd, short what, void *arg)
{
    jd_store *s = arg;
    flush_events(s);
    store_pump(s);
}

static void emit(jd_store *s, jd_event_kind kind, const jd_record *rec, void *ptr)
{
    jd_event ev = {.kind = kind, .conn_id = rec ? rec->conn_id : 0, .ptr = ptr};
    if (rec)
        memcpy(ev.client_id, rec->client_id, sizeof(ev.client_id));
    if (!queue_event(s, &ev))
        jd_fatal("out of memory queueing an event for the network thread");
}

static void check_drained(jd_store *s)
{
    if (s->role == JD_STORE_INGEST && s->drain_seen && !s->drained_sent &&
        s->batches_in_flight == 0 && s->waiting.n == 0 && jd_queue_count(s->inbound) == 0) {
        s->drained_sent = true;
        jd_log_info("drain: every accepted record is committed");
        emit(s, JD_EV_DRAINED, NULL, NULL);
    }
}

/* --- sending ------------------------------------------------------------------------------- */

static bool send_query(jd_store *s, jd_request *req, const char *name, const char *param,
                       int param_len)
{
    const char *values[1] = {param};
    int lengths[1] = {param_len};
    int formats[1] = {0};
    if (!PQsendQueryPrepared(s->conn, name, param ? 1 : 0, param ? values : NULL,
                             param ? lengths : NULL, param ? formats : NULL, 0))
        return false;
    req->results_pending++;
    return true;
}

static void append_request(jd_store *s, jd_request *req)
{
    req->sent_us = jd_now_us();
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
}

static bool send_setup(jd_store *s)
{
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return false;
    req->kind = JD_REQ_SETUP;
    /* Durability is not negotiable: a server default of off must not weaken our acks. */
    if (!PQsendQueryParams(s->conn, "SET synchronous_commit TO on", 0, NULL, NULL, NULL, NULL, 0))
        goto fail;
    req->results_pending++;
    /* The API store sends jd_api unprepared: the function arrives with a later migration and
     * must not stop the connection from coming up before it exists. */
    for (int i = 0; s->role == JD_STORE_INGEST && i < JD_MAX_STATEMENTS; i++) {
        if (!PQsendPrepare(s->conn, statement_names[i], statement_sql[i], 1, NULL))
            goto fail;
        req->results_pending++;
    }
    if (s->role == JD_STORE_API) {
        if (!PQsendPrepare(s->conn, "jd_catalog", catalog_sql, 0, NULL))
            goto fail;
        req->results_pending++;
    }
    if (s->role == JD_STORE_CHAT) {
        /* A restarted instance first clears the presence rows its previous run left. */
        const char *values[1] = {s->config.instance};
        static const char *const listens[] = {"LISTEN journeyd_chat", "LISTEN journeyd_presence",
                                              "LISTEN journeyd_agent"};
        for (size_t i = 0; i < sizeof(listens) / sizeof(listens[0]); i++) {
            /* Pipeline mode speaks the extended protocol: one statement per query. */
            if (!PQsendQueryParams(s->conn, listens[i], 0, NULL, NULL, NULL, NULL, 0))
                goto fail;
            req->results_pending++;
        }
        if (!PQsendQueryParams(s->conn, "SELECT jd_presence_clear_instance($1)", 1, NULL, values,
                               NULL, NULL, 0))
            goto fail;
        req->results_pending++;
    }
    if (!PQpipelineSync(s->conn))
        goto fail;
    append_request(s, req);
    return true;
fail:
    free(req);
    return false;
}

static bool send_catalog(jd_store *s)
{
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return false;
    req->kind = JD_REQ_CATALOG;
    if (!send_query(s, req, "jd_catalog", NULL, 0) || !PQpipelineSync(s->conn)) {
        free(req);
        return false;
    }
    append_request(s, req);
    s->catalog_in_flight = true;
    return true;
}

/* The record's JSON is [method, path, query, body, token]. */
static bool send_api(jd_store *s, jd_record *rec)
{
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return false;
    req->kind = JD_REQ_API;
    const char *values[1] = {rec->json};
    /* The agent console's routes are [op, args]; the admin API's [method, path, query, body,
     * token]. */
    const char *sql = rec->kind == JD_REC_CHAT_HTTP
                          ? "SELECT status, content_type, body, cookie FROM "
                            "jd_agent_http($1::json->>0, ($1::json->1)::jsonb)"
                          : "SELECT status, content_type, body FROM jd_api($1::json->>0, "
                            "$1::json->>1, ($1::json->2)::jsonb, $1::json->>3, $1::json->>4)";
    if (!PQsendQueryParams(s->conn, sql, 1, NULL, values, NULL, NULL, 0) ||
        !PQpipelineSync(s->conn)) {
        free(req);
        return false;
    }
    req->results_pending = 1;
    req->api = rec;
    append_request(s, req);
    s->batches_in_flight++;
    return true;
}

static void respond_api(jd_store *s, jd_record *rec, int status, const char *type, const char *body)
{
    jd_http_response *r = jd_http_response_new(status, type, body, strlen(body));
    if (!r)
        jd_fatal("out of memory answering an API request");
    jd_event ev = {.kind = JD_EV_HTTP, .conn_id = rec->conn_id, .ptr = r};
    if (!queue_event(s, &ev))
        jd_fatal("out of memory queueing an API response");
}

/* Map exports: the admin API returns the canonical journey.json; when the request asked for another
 * ?format= (GET /maps/{id}/export or /maps/{id}/versions/{v}), the file is rendered here, from
 * the document, by the pure export module. Returns the response to send (taking over r). */
static jd_http_response *render_export(const jd_record *api, jd_http_response *r)
{
    if (r->status != 200)
        return r;
    json_t *req = json_loadb(api->json, api->len, 0, NULL);
    const char *method = json_string_value(json_array_get(req, 0));
    const char *path = json_string_value(json_array_get(req, 1));
    json_t *query = json_array_get(req, 2);
    const char *format = json_string_value(json_object_get(query, "format"));
    const char *persona = json_string_value(json_object_get(query, "render_persona"));
    int n = 0;
    long id = 0, v = 0;
    bool exported =
        method && path && strcmp(method, "GET") == 0 &&
        ((sscanf(path, "/maps/%ld/export%n", &id, &n) == 1 && path[n] == '\0') ||
         (sscanf(path, "/maps/%ld/versions/%ld%n", &id, &v, &n) == 2 && path[n] == '\0'));
    if (!exported || !format || strcmp(format, "json") == 0) {
        json_decref(req);
        return r;
    }
    jd_buf out;
    jd_buf_init(&out);
    char err[256] = "";
    json_t *doc = json_loadb(r->body, r->len, 0, NULL);
    jd_http_response *rendered = NULL;
    if (doc && jd_export_render(format, doc, persona, &out, err, sizeof(err)) && jd_buf_ok(&out)) {
        rendered = jd_http_response_new(200, jd_export_content_type(format), out.data, out.len);
    } else {
        jd_buf msg;
        jd_buf_init(&msg);
        jd_buf_puts(&msg, "{\"error\":{\"code\":\"bad_format\",\"message\":");
        const char *why = err[0] ? err : "cannot render this document";
        jd_buf_json_string(&msg, why, strlen(why));
        jd_buf_puts(&msg, ",\"field\":\"format\"}}");
        rendered = jd_http_response_new(400, "application/json", msg.data ? msg.data : "{}",
                                        msg.data ? msg.len : 2);
        jd_buf_free(&msg);
    }
    jd_buf_free(&out);
    json_decref(doc);
    json_decref(req);
    if (!rendered)
        return r;
    free(r);
    return rendered;
}

static void append_array_item(jd_buf *array, const jd_record *rec)
{
    jd_buf_puts(array, array->len ? "," : "[");
    jd_buf_append(array, rec->json, rec->len);
}

/* Sends one batch as one transaction. On failure the batch stays owned by the caller. */
static bool send_batch(jd_store *s, jd_batch *batch)
{
    jd_buf arrays[3]; /* sessions, touches, answers */
    for (int i = 0; i < 3; i++)
        jd_buf_init(&arrays[i]);
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        goto fail;
    req->kind = JD_REQ_BATCH;
    for (size_t i = 0; i < batch->n; i++) {
        const jd_record *rec = batch->records[i];
        int slot = rec->kind == JD_REC_SESSION ? 0 : rec->kind == JD_REC_TOUCH ? 1 : 2;
        append_array_item(&arrays[slot], rec);
    }
    for (int i = 0; i < 3; i++) {
        if (arrays[i].len)
            jd_buf_puts(&arrays[i], "]");
        if (!jd_buf_ok(&arrays[i]))
            goto fail;
    }
    /* Respondents before sessions (foreign key), sessions before touches and answers. */
    if (arrays[0].len &&
        (!send_query(s, req, "jd_respondents", arrays[0].data, (int)arrays[0].len) ||
         !send_query(s, req, "jd_sessions", arrays[0].data, (int)arrays[0].len)))
        goto fail_conn;
    if (arrays[1].len && !send_query(s, req, "jd_touches", arrays[1].data, (int)arrays[1].len))
        goto fail_conn;
    if (arrays[2].len && !send_query(s, req, "jd_answers", arrays[2].data, (int)arrays[2].len))
        goto fail_conn;
    if (!PQpipelineSync(s->conn))
        goto fail_conn;
    req->batch = batch;
    append_request(s, req);
    s->batches_in_flight++;
    for (int i = 0; i < 3; i++)
        jd_buf_free(&arrays[i]);
    return true;

fail_conn:
    jd_log_warn("database: cannot queue a batch: %s", PQerrorMessage(s->conn));
fail:
    free(req);
    for (int i = 0; i < 3; i++)
        jd_buf_free(&arrays[i]);
    return false;
}

/* Builds the next batch from the waiting list, else from the inbound queue. */
static jd_batch *next_batch(jd_store *s)
{
    jd_batch *b = batch_list_pop_front(&s->waiting);
    if (b)
        return b;
    size_t max = (size_t)s->config.batch_max;
    bool unblocked = false;
    size_t n = jd_queue_pop(s->inbound, s->pop_buf, max, &unblocked);
    if (unblocked)
        emit(s, JD_EV_RESUME, NULL, NULL);
    jd_metrics_queue_depth((int64_t)jd_queue_count(s->inbound));
    if (!n)
        return NULL;
    b = calloc(1, sizeof(*b));
    jd_record **records = malloc(n * sizeof(*records));
    if (!b || !records)
        jd_fatal("out of memory building a batch");
    b->records = records;
    for (size_t i = 0; i < n; i++) {
        jd_record *rec = s->pop_buf[i];
        if (rec->kind == JD_REC_DRAIN) {
            s->drain_seen = true;
            free(rec);
            continue;
        }
        b->records[b->n++] = rec;
    }
    if (!b->n) {
        batch_free(&b);
        return NULL;
    }
    return b;
}

/* Moves records from the queue into the pipeline while there is room. */
static void store_pump(jd_store *s)
{
    if (s->state != JD_STORE_READY) {
        /* Hold at most one batch while the database is away, so a drain marker behind an empty
         * queue is still seen (and a drain with nothing to commit completes) without unbounding
         * memory. */
        if (s->role == JD_STORE_INGEST && s->waiting.n == 0) {
            jd_batch *b = next_batch(s);
            if (b)
                batch_list_push_front(&s->waiting, &b, 1);
        }
        check_drained(s);
        flush_events(s);
        return;
    }
    /* Outbound backlog means the network thread is behind; stop producing acks until it
     * catches up, which also stops reading records. */
    while (s->role != JD_STORE_INGEST &&
           s->batches_in_flight < (s->role == JD_STORE_CHAT ? 64 : 16)) {
        jd_record *rec;
        bool unblocked;
        if (jd_queue_pop(s->inbound, &rec, 1, &unblocked) != 1)
            break;
        if (rec->kind == JD_REC_CHAT) {
            if (!send_chat(s, rec)) {
                jd_request failed = {.kind = JD_REQ_CHAT, .chat = rec, .failed = true};
                snprintf(failed.error, sizeof(failed.error), "database unavailable");
                complete_chat(s, &failed);
                free(rec);
                break;
            }
            continue;
        }
        if (!send_api(s, rec)) {
            respond_api(s, rec, 503, "application/json",
                        "{\"error\":{\"code\":\"unavailable\",\"message\":\"database "
                        "unavailable; retry\"}}");
            free(rec);
            break;
        }
    }
    while (s->role == JD_STORE_INGEST && s->batches_in_flight < s->config.pipeline_depth &&
           s->n_pending_events < 65536) {
        jd_batch *b = next_batch(s);
        if (!b)
            break;
        if (!send_batch(s, b)) {
            batch_list_push_front(&s->waiting, &b, 1);
            break;
        }
    }
    store_flush_output(s);
    check_drained(s);
    flush_events(s);
}

/* --- receiving ----------------------------------------------------------------------------- */

static bool is_data_error(const char *sqlstate)
{
    return sqlstate[0] && (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0);
}

static void complete_batch(jd_store *s, jd_request *req)
{
    jd_batch *batch = req->batch;
    s->batches_in_flight--;
    if (!req->failed) {
        for (size_t i = 0; i < batch->n; i++)
            if (batch->records[i]->acked)
                emit(s, JD_EV_ACK, batch->records[i], NULL);
        jd_metrics_batch(batch->n, jd_now_us() - req->sent_us);
        jd_log_debug("batch of %zu committed in %llu us", batch->n,
                     (unsigned long long)(jd_now_us() - req->sent_us));
        return;
    }
    if (is_data_error(req->sqlstate)) {
        if (batch->single) {
            const jd_record *rec = batch->records[0];
            jd_log(JD_LOG_WARN, rec->conn_id, NULL, "database rejected %s: %s (%s)", rec->client_id,
                   req->error, req->sqlstate);
            if (rec->acked)
                emit(s, JD_EV_REJECT, rec, NULL);
            return;
        }
        /* Isolate the poisoned row: retry every record on its own, in order. */
        jd_batch **singles = calloc(batch->n, sizeof(*singles));
        if (!singles)
            jd_fatal("out of memory isolating a failed batch");
        for (size_t i = 0; i < batch->n; i++) {
            singles[i] = calloc(1, sizeof(jd_batch));
            singles[i]->records = malloc(sizeof(jd_record *));
            if (!singles[i] || !singles[i]->records)
                jd_fatal("out of memory isolating a failed batch");
            singles[i]->records[0] = batch->records[i];
            singles[i]->n = 1;
            singles[i]->single = true;
        }
        jd_log_warn("batch of %zu failed with %s (%s); retrying row by row", batch->n,
                    req->sqlstate, req->error);
        size_t n = batch->n;
        batch->n = 0; /* the records now belong to the singles */
        batch_list_push_front(&s->waiting, singles, n);
        free(singles);
        return;
    }
    /* Unknown outcome or transient error: retry the whole batch later, unchanged. */
    jd_metrics_db_retry();
    jd_log_warn("batch of %zu not committed (%s %s); will retry", batch->n, req->sqlstate,
                req->error);
    batch_list_push_front(&s->waiting, &req->batch, 1);
    req->batch = NULL;
}

static void complete_catalog(jd_store *s, jd_request *req)
{
    s->catalog_in_flight = false;
    if (req->failed || !req->catalog_json) {
        jd_log_error("catalog load failed: %s", req->error);
        return;
    }
    jd_catalog *catalog = NULL;
    char err[256];
    if (!jd_catalog_parse(req->catalog_json, strlen(req->catalog_json), &catalog, err,
                          sizeof(err))) {
        jd_log_error("%s", err);
        return;
    }
    jd_log_debug("catalog loaded: %zu sites", catalog->n_sites);
    emit(s, JD_EV_CATALOG, NULL, catalog);
}

static void complete_request(jd_store *s, jd_request *req)
{
    switch (req->kind) {
    case JD_REQ_SETUP:
        if (req->failed) {
            /* Usually an unmigrated schema: report it through /healthz and retry later. */
            snprintf(s->setup_error, sizeof(s->setup_error),
                     "setup failed (is the schema "
                     "migrated? run journeyd migrate): %s",
                     req->error);
            return;
        }
        /* LISTEN is in place: whatever was notified before it must be polled for. */
        if (s->role == JD_STORE_CHAT)
            emit(s, JD_EV_CHAT_RESYNC, NULL, NULL);
        break;
    case JD_REQ_CHAT:
        s->batches_in_flight--;
        complete_chat(s, req);
        break;
    case JD_REQ_CATALOG:
        complete_catalog(s, req);
        break;
    case JD_REQ_BATCH:
        complete_batch(s, req);
        break;
    case JD_REQ_PURGE:
        complete_purge(s, req);
        break;
    case JD_REQ_API:
        s->batches_in_flight--;
        if (!req->failed && req->response) {
            req->response = render_export(req->api, req->response);
            jd_event ev = {.kind = JD_EV_HTTP, .conn_id = req->api->conn_id, .ptr = req->response};
            req->response = NULL;
            if (!queue_event(s, &ev))
                jd_fatal("out of memory queueing an API response");
        } else {
            jd_buf body;
            jd_buf_init(&body);
            jd_buf_puts(&body, "{\"error\":{\"code\":\"internal\",\"message\":");
            const char *why = req->failed ? req->error : "the API returned no row";
            jd_buf_json_string(&body, why, strlen(why));
            jd_buf_puts(&body, "}}");
            /* Never log the request itself: it carries the bearer token. */
            jd_log_error("admin API request failed: %s", why);
            respond_api(s, req->api, 500, "application/json", jd_buf_ok(&body) ? body.data : "{}");
            jd_buf_free(&body);
        }
        break;
    }
}

/* Hands a chat call's outcome to the network thread. A JDnnn error carries its code in DETAIL
 * and its field in HINT (sql/020_chat.sql); data errors (classes 22, 23) are the client's;
 * anything else is ours, and the client may resend (every chat write is idempotent). */
static void complete_chat(jd_store *s, jd_request *req)
{
    jd_chat_reply *r = req->reply;
    req->reply = NULL;
    if (req->failed || !r) {
        free(r);
        r = jd_chat_reply_new(req->chat->conn_id, req->chat->tag, "", 0);
        if (!r)
            jd_fatal("out of memory answering a chat call");
        const char *code = "unavailable";
        const char *message = "the server could not do this now; resend";
        if (req->failed && strncmp(req->sqlstate, "JD", 2) == 0 && req->detail[0]) {
            code = req->detail;
            message = req->error;
        } else if (req->failed && is_data_error(req->sqlstate)) {
            code = "bad_field";
            message = req->error;
        } else {
            jd_log_warn("chat call failed: %s (%s)", req->failed ? req->error : "no row",
                        req->sqlstate);
        }
        snprintf(r->code, sizeof(r->code), "%s", code);
        snprintf(r->field, sizeof(r->field), "%s", req->hint);
        snprintf(r->message, sizeof(r->message), "%.199s", message);
        r->err = r->code;
    }
    jd_event ev = {.kind = JD_EV_CHAT_REPLY, .conn_id = r->conn_id, .ptr = r};
    if (!queue_event(s, &ev))
        jd_fatal("out of memory queueing a chat reply");
}

/* The record's JSON is [op, ctx, args]. */
static bool send_chat(jd_store *s, jd_record *rec)
{
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return false;
    req->kind = JD_REQ_CHAT;
    const char *values[1] = {rec->json};
    if (!PQsendQueryParams(s->conn,
                           "SELECT jd_chat_rpc($1::json->>0, ($1::json->1)::jsonb, "
                           "($1::json->2)::jsonb)",
                           1, NULL, values, NULL, NULL, 0) ||
        !PQpipelineSync(s->conn)) {
        free(req);
        return false;
    }
    req->results_pending = 1;
    req->chat = rec;
    append_request(s, req);
    s->batches_in_flight++;
    return true;
}

/* Wake-ups from other instances (and this one): only ids travel, the data is polled. */
static void drain_notifications(jd_store *s)
{
    PGnotify *n;
    while ((n = PQnotifies(s->conn)) != NULL) {
        jd_event ev = {.kind = JD_EV_CHAT_NOTIFY};
        if (strcmp(n->relname, "journeyd_presence") == 0)
            ev.conn_id = JD_CHAT_CHANNEL_PRESENCE;
        else if (strcmp(n->relname, "journeyd_agent") == 0)
            ev.conn_id = JD_CHAT_CHANNEL_AGENT;
        else
            ev.conn_id = JD_CHAT_CHANNEL_CHAT;
        snprintf(ev.client_id, sizeof(ev.client_id), "%s", n->extra ? n->extra : "");
        PQfreemem(n);
        if (!queue_event(s, &ev))
            jd_fatal("out of memory queueing a chat notification");
    }
}

static void note_result(jd_request *req, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR && !req->failed) {
        req->failed = true;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(req->sqlstate, sizeof(req->sqlstate), "%s", state ? state : "");
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(req->error, sizeof(req->error), "%s", msg ? msg : PQresultErrorMessage(res));
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        snprintf(req->detail, sizeof(req->detail), "%s", detail ? detail : "");
        snprintf(req->hint, sizeof(req->hint), "%s", hint ? hint : "");
    } else if (st == PGRES_PIPELINE_ABORTED && !req->failed) {
        req->failed = true;
        snprintf(req->error, sizeof(req->error), "pipeline aborted");
    } else if (st == PGRES_TUPLES_OK && req->kind == JD_REQ_CATALOG && PQntuples(res) == 1 &&
               !req->catalog_json) {
        req->catalog_json = strdup(PQgetvalue(res, 0, 0));
    } else if (st == PGRES_TUPLES_OK && req->kind == JD_REQ_PURGE && PQntuples(res) == 1) {
        req->purged = atol(PQgetvalue(res, 0, 0));
    } else if (st == PGRES_TUPLES_OK && req->kind == JD_REQ_API && PQntuples(res) == 1 &&
               PQnfields(res) >= 3 && !req->response) {
        req->response = jd_http_response_new(atoi(PQgetvalue(res, 0, 0)), PQgetvalue(res, 0, 1),
                                             PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
        if (req->response && PQnfields(res) == 4 && !PQgetisnull(res, 0, 3)) {
            req->response->set_cookie = true;
            snprintf(req->response->cookie, sizeof(req->response->cookie), "%s",
                     PQgetvalue(res, 0, 3));
        }
    } else if (st == PGRES_TUPLES_OK && req->kind == JD_REQ_CHAT && PQntuples(res) == 1 &&
               !req->reply) {
        req->reply = jd_chat_reply_new(req->chat->conn_id, req->chat->tag, PQgetvalue(res, 0, 0),
                                       (size_t)PQgetlength(res, 0, 0));
    }
}

/* Reads every complete result. In pipeline mode each statement's results end with NULL and each
 * sync yields PGRES_PIPELINE_SYNC, which completes the request at the head of the FIFO. */
static bool read_results(jd_store *s)
{
    if (!PQconsumeInput(s->conn))
        return false;
    if (s->role == JD_STORE_CHAT)
        drain_notifications(s);
    while (s->head && !PQisBusy(s->conn)) {
        PGresult *res = PQgetResult(s->conn);
        jd_request *req = s->head;
        if (!res) {
            /* End of one statement's results; nothing more is ready unless one is pending. */
            if (req->results_pending > 0) {
                req->results_pending--;
                continue;
            }
            break;
        }
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            s->head = req->next;
            if (!s->head)
                s->tail = NULL;
            complete_request(s, req);
            request_free(&req);
            continue;
        }
        note_result(req, res);
        PQclear(res);
    }
    return true;
}

/* --- connection lifecycle ------------------------------------------------------------------ */

static void drop_connection(jd_store *s, const char *why)
{
    char reason[256];
    snprintf(reason, sizeof(reason), "database unreachable: %s", why);
    /* Strip libpq's trailing newline. */
    reason[strcspn(reason, "\n")] = '\0';
    jd_log_warn("%s", reason);
    if (s->read_ev) {
        event_free(s->read_ev);
        s->read_ev = NULL;
    }
    if (s->write_ev) {
        event_free(s->write_ev);
        s->write_ev = NULL;
    }
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    /* Batches in flight have an unknown outcome: keep them, in order, for a resend. */
    jd_batch **retry = NULL;
    size_t n = 0;
    for (jd_request *r = s->head; r; r = r->next)
        if (r->kind == JD_REQ_BATCH && r->batch)
            n++;
    if (n) {
        retry = malloc(n * sizeof(*retry));
        if (!retry)
            jd_fatal("out of memory keeping batches for retry");
        n = 0;
        for (jd_request *r = s->head; r; r = r->next) {
            if (r->kind == JD_REQ_BATCH && r->batch) {
                retry[n++] = r->batch;
                r->batch = NULL;
                jd_metrics_db_retry();
            }
        }
        batch_list_push_front(&s->waiting, retry, n);
        free(retry);
    }
    while (s->head) {
        jd_request *r = s->head;
        s->head = r->next;
        if (r->kind == JD_REQ_API)
            respond_api(s, r->api, 503, "application/json",
                        "{\"error\":{\"code\":\"unavailable\",\"message\":\"database "
                        "connection lost; retry\"}}");
        if (r->kind == JD_REQ_CHAT) {
            /* The outcome is unknown; the client resends and the call is idempotent. */
            r->failed = true;
            r->sqlstate[0] = '\0';
            snprintf(r->error, sizeof(r->error), "database connection lost");
            complete_chat(s, r);
        }
        request_free(&r);
    }
    s->tail = NULL;
    s->batches_in_flight = 0;
    s->catalog_in_flight = false;
    s->purge_in_flight = false;
    store_set_state(s, JD_STORE_DISCONNECTED, reason);
    store_schedule_reconnect(s);
}

static void store_flush_output(jd_store *s)
{
    if (!s->conn)
        return;
    int r = PQflush(s->conn);
    if (r < 0) {
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    if (r == 1 && s->write_ev)
        event_add(s->write_ev, NULL);
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

static bool watch_socket(jd_store *s)
{
    int fd = PQsocket(s->conn);
    if (fd < 0)
        return false;
    if (s->read_ev)
        event_free(s->read_ev);
    if (s->write_ev)
        event_free(s->write_ev);
    s->read_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_socket, s);
    s->write_ev = event_new(s->base, fd, EV_WRITE, on_socket, s);
    return s->read_ev && s->write_ev;
}

static void connect_poll(jd_store *s)
{
    PostgresPollingStatusType st = PQconnectPoll(s->conn);
    switch (st) {
    case PGRES_POLLING_READING:
        event_del(s->write_ev);
        event_add(s->read_ev, NULL);
        return;
    case PGRES_POLLING_WRITING:
        event_add(s->write_ev, NULL);
        return;
    case PGRES_POLLING_FAILED:
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        return;
    }
    /* The socket can change during connection (e.g. host lists): watch the final one. */
    if (!watch_socket(s) || PQsetnonblocking(s->conn, 1) != 0 || !PQenterPipelineMode(s->conn) ||
        !send_setup(s)) {
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    event_add(s->read_ev, NULL);
    s->backoff_ms = 0;
    store_set_state(s, JD_STORE_READY, NULL);
    if (s->role == JD_STORE_API && !send_catalog(s)) {
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    store_pump(s);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    jd_store *s = arg;
    if (s->state == JD_STORE_CONNECTING) {
        connect_poll(s);
        return;
    }
    if (s->state != JD_STORE_READY || !s->conn)
        return;
    if (what & EV_WRITE)
        store_flush_output(s);
    if (s->conn && (what & EV_READ) && !read_results(s)) {
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    if (s->setup_error[0]) {
        char why[sizeof(s->setup_error)];
        memcpy(why, s->setup_error, sizeof(why));
        s->setup_error[0] = '\0';
        drop_connection(s, why);
        return;
    }
    if (s->conn && PQstatus(s->conn) == CONNECTION_BAD) {
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    store_pump(s);
}

static void start_connect(jd_store *s)
{
    s->conn = PQconnectStart(s->conninfo);
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
        drop_connection(s, s->conn ? PQerrorMessage(s->conn) : "out of memory");
        return;
    }
    store_set_state(s, JD_STORE_CONNECTING, "connecting to the database");
    if (!watch_socket(s)) {
        drop_connection(s, "no socket");
        return;
    }
    event_add(s->write_ev, NULL);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    start_connect(arg);
}

static void store_schedule_reconnect(jd_store *s)
{
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 5000)
        s->backoff_ms = 5000;
    struct timeval tv = {(time_t)(s->backoff_ms / 1000),
                         (suseconds_t)(s->backoff_ms % 1000) * 1000};
    event_add(s->reconnect_ev, &tv);
}

static void on_catalog_timer(evutil_socket_t fd, short what, void *arg)
{
    jd_store *s = arg;
    if (s->role == JD_STORE_API && s->state == JD_STORE_READY && !s->catalog_in_flight) {
        if (!send_catalog(s)) {
            drop_connection(s, PQerrorMessage(s->conn));
            return;
        }
        store_flush_output(s);
    }
}

static void send_purge(jd_store *s)
{
    if (s->state != JD_STORE_READY || s->purge_in_flight)
        return;
    jd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return;
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", s->purge_batch);
    const char *values[1] = {batch};
    req->kind = JD_REQ_PURGE;
    req->purged = -1;
    if (!PQsendQueryParams(s->conn, "SELECT jd_purge_expired($1::int)", 1, NULL, values, NULL, NULL,
                           0) ||
        !PQpipelineSync(s->conn)) {
        free(req);
        drop_connection(s, PQerrorMessage(s->conn));
        return;
    }
    req->results_pending = 1;
    append_request(s, req);
    s->purge_in_flight = true;
    store_flush_output(s);
}

static void on_purge_timer(evutil_socket_t fd, short what, void *arg)
{
    send_purge(arg);
}

static void complete_purge(jd_store *s, jd_request *req)
{
    s->purge_in_flight = false;
    if (req->failed || req->purged < 0) {
        jd_log_error("retention purge failed: %s", req->error);
        s->purged_total = 0;
        return;
    }
    s->purged_total += req->purged;
    if (req->purged >= s->purge_batch) {
        struct timeval tv = {0, 100000};
        event_add(s->purge_ev, &tv);
        return;
    }
    if (s->purged_total)
        jd_log_info("retention purge: %ld rows past their site's retention deleted",
                    s->purged_total);
    s->purged_total = 0;
}

void jd_store_purge(jd_store *s, int batch)
{
    s->purge_batch = batch > 0 ? batch : 1000;
    s->purged_total = 0;
    send_purge(s);
}

void jd_store_reload_catalog(jd_store *s)
{
    on_catalog_timer(-1, 0, s);
}

static void on_chat_tick(evutil_socket_t fd, short what, void *arg)
{
    jd_store *s = arg;
    emit(s, JD_EV_CHAT_TICK, NULL, NULL);
    flush_events(s);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    store_pump(arg);
}

void jd_store_wake(jd_store *s)
{
    event_active(s->wake_ev, EV_READ, 0);
}

void jd_store_apply_config(jd_store *s, const jd_config *config)
{
    s->config = *config;
    struct timeval tv = {config->catalog_refresh, 0};
    event_del(s->catalog_ev);
    event_add(s->catalog_ev, &tv);
    jd_record **grown = realloc(s->pop_buf, (size_t)config->batch_max * sizeof(*grown));
    if (grown)
        s->pop_buf = grown;
    else
        jd_fatal("out of memory resizing the batch buffer");
}

size_t jd_store_pending(jd_store *s)
{
    size_t n = jd_queue_count(s->inbound);
    for (size_t i = 0; i < s->waiting.n; i++)
        n += s->waiting.items[i]->n;
    for (jd_request *r = s->head; r; r = r->next)
        if (r->batch)
            n += r->batch->n;
    return n;
}

bool jd_store_create(struct event_base *base, jd_store_role role, const jd_config *config,
                     const char *conninfo, jd_queue *inbound, jd_queue *outbound,
                     jd_store_wake_fn wake_net, void *wake_arg, jd_store **out)
{
    jd_store *s = calloc(1, sizeof(*s));
    if (!s)
        return false;
    pthread_mutex_init(&s->health_lock, NULL);
    s->role = role;
    s->base = base;
    s->config = *config;
    s->inbound = inbound;
    s->outbound = outbound;
    s->wake_net = wake_net;
    s->wake_arg = wake_arg;
    s->conninfo = strdup(conninfo);
    s->pop_buf = malloc((size_t)config->batch_max * sizeof(*s->pop_buf));
    s->wake_ev = event_new(base, -1, EV_PERSIST, on_wake, s);
    s->reconnect_ev = evtimer_new(base, on_reconnect, s);
    s->catalog_ev = event_new(base, -1, EV_PERSIST, on_catalog_timer, s);
    s->retry_events_ev = evtimer_new(base, on_retry_events, s);
    s->purge_ev = evtimer_new(base, on_purge_timer, s);
    s->tick_ev = event_new(base, -1, EV_PERSIST, on_chat_tick, s);
    if (!s->conninfo || !s->pop_buf || !s->wake_ev || !s->reconnect_ev || !s->catalog_ev ||
        !s->retry_events_ev || !s->purge_ev || !s->tick_ev)
        goto fail;
    if (role == JD_STORE_CHAT) {
        struct timeval tick = {10, 0};
        event_add(s->tick_ev, &tick);
    }
    set_health(s, false, "connecting to the database");
    struct timeval tv = {config->catalog_refresh, 0};
    event_add(s->catalog_ev, &tv);
    start_connect(s);
    *out = s;
    return true;
fail:
    jd_store_destroy(&s);
    return false;
}

void jd_store_destroy(jd_store **store)
{
    jd_store *s = *store;
    if (!s)
        return;
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    store_set_state(s, JD_STORE_CLOSED, NULL);
    struct event **evs[] = {&s->read_ev,    &s->write_ev, &s->wake_ev,         &s->reconnect_ev,
                            &s->catalog_ev, &s->purge_ev, &s->retry_events_ev, &s->tick_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (*evs[i]) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    }
    while (s->head) {
        jd_request *r = s->head;
        s->head = r->next;
        request_free(&r);
    }
    for (size_t i = 0; i < s->waiting.n; i++)
        batch_free(&s->waiting.items[i]);
    free(s->waiting.items);
    /* Records still queued were never acked; the clients will resend them. */
    bool unblocked;
    jd_record *rec;
    while (jd_queue_pop(s->inbound, &rec, 1, &unblocked) == 1)
        free(rec);
    for (size_t i = 0; i < s->n_pending_events; i++)
        if (s->pending_events[i].kind == JD_EV_CATALOG)
            jd_catalog_free((jd_catalog **)&s->pending_events[i].ptr);
        else if (s->pending_events[i].kind == JD_EV_HTTP ||
                 s->pending_events[i].kind == JD_EV_CHAT_REPLY)
            free(s->pending_events[i].ptr);
    free(s->pending_events);
    free(s->pop_buf);
    free(s->conninfo);
    pthread_mutex_destroy(&s->health_lock);
    free(s);
    *store = NULL;
}
