/* libwebsockets service thread: HTTP and the journey.v1 WebSocket. Each WebSocket connection is a
 * jd_conn owned by this thread, found by id through a hash table so store events (which carry only
 * the id) never touch freed memory. Backpressure: a connection stops reading when its unacked
 * frames reach max_inflight or when the inbound queue is full (records then wait in the
 * connection, in order, and are retried on JD_EV_RESUME). Connections are freed only from the
 * service loop, never inside their own callback (closed ones are put on a reap list). */
#include "net.h"

#include "chat.h"

#include "catalog.h"
#include "channel.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "util.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define JD_MAX_OUTQ 256    /* queued frames before a reader is deemed stuck */
#define JD_FLOOD_CLOSE 200 /* refused frames in a row before closing 1008 */
#define JD_LOGINS_PER_MINUTE 20

/* OPEN -> CLOSING (we decided to close; owed frames still go out) -> CLOSE_SENT (the close is
 * lws's now: it sends the close frame and waits for the peer's reply) -> CLOSED (wsi gone). */
typedef enum {
    JD_CONN_OPEN = 0,
    JD_CONN_CLOSING,
    JD_CONN_CLOSE_SENT,
    JD_CONN_CLOSED
} jd_conn_state;

typedef struct jd_frame {
    struct jd_frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
} jd_frame;

typedef struct jd_ip_count {
    struct jd_ip_count *next;
    int count;
    char ip[48];
} jd_ip_count;

typedef struct jd_conn {
    uint64_t id;
    struct lws *wsi;
    jd_conn_state state;
    bool agent; /* an agent console (journey.agent.v1), else a visitor (journey.v1) */
    struct jd_conn *table_next; /* hash chain */
    struct jd_conn *reap_next;
    jd_ip_count *ip;
    char site_key[72];
    char peer[48]; /* client address, for log lines */
    jd_proto_session proto;
    jd_buf rx; /* fragments of the current message */
    jd_frame *out_head, *out_tail;
    int out_count;
    jd_buf acks; /* "id","id",... waiting for an ack frame */
    int n_acks;
    int inflight; /* records pushed or stalled and not yet acked or rejected */
    jd_record **stalled;
    size_t n_stalled, cap_stalled;
    struct jd_conn *stall_prev, *stall_next; /* place in net's FIFO of stalled connections */
    bool in_stall_list;
    bool rx_paused;
    double tokens;
    uint64_t tokens_at_us;
    int refused_in_a_row;
    int close_code;
    char close_reason[64];
} jd_conn;

typedef struct jd_http {
    char *body;
    size_t len, sent;
    bool owned;
    bool head_only;
    bool close_after; /* the request's body was not read: the connection cannot be reused */
} jd_http;

#define JD_API_MAX_BODY (1u << 20)

/* An admin API request while its body arrives and while jd_api() runs. */
typedef struct jd_api_call {
    uint64_t id; /* 0 when no call is pending */
    char method[8];
    char path[512];
    char token[320];
    const char *agent_op; /* an agent console route (jd_agent_http), else NULL: admin API */
    jd_buf query;         /* JSON object text */
    jd_buf body;
    bool too_large;
    bool bad_query;
    bool answered;              /* an error went out before the body was read: ignore the body */
    jd_http_response *response; /* owned; the body being written points into it */
} jd_api_call;

/* Per-session data lws allocates for both protocols. */
typedef struct jd_pss {
    jd_conn *conn;
    jd_http http;
    jd_api_call *api; /* only while an admin request is open: WebSocket sessions stay small */
    struct jd_pss *api_next; /* pending list, to find the request when its answer arrives */
    struct lws *wsi;
} jd_pss;

typedef enum { JD_NET_SERVING = 0, JD_NET_DRAINING, JD_NET_CLOSING, JD_NET_DONE } jd_net_state;

struct jd_net {
    struct lws_context *context;
    pthread_t thread;
    bool thread_started;
    jd_net_hooks hooks;
    jd_config config;
    jd_files *files;
    jd_catalog *catalog;
    jd_queue *inbound, *api, *chatq, *outbound;
    jd_chat *chat;
    jd_pss *api_pending;
    uint64_t next_api_id;
    jd_net_state state;
    bool tls;
    bool marker_pushed;
    uint64_t next_conn_id;

    jd_conn *stall_head, *stall_tail; /* stalled connections, oldest first: served in turn */
    jd_conn **table;                  /* hash of open connections by id */
    size_t table_size, n_conns;
    jd_ip_count *ips[1024];
    jd_conn *reap;

    /* Written by other threads, read on the service thread. */
    pthread_mutex_t update_lock;
    jd_config pending_config;
    bool pending_config_set;
    jd_files *pending_files;
    atomic_bool drain_requested;
    atomic_bool abort_requested;

    /* Agent sign-ins per client address and minute (slots shared on hash collision, which only
     * ever makes the limit stricter). */
    struct {
        char ip[48];
        double tokens;
        uint64_t at_us;
    } logins[256];

    lws_retry_bo_t retry;
    char iface[256];
    jd_event event_buf[512];
};

static void net_set_state(jd_net *net, jd_net_state state);

/* --- connection table ----------------------------------------------------------------------- */

static size_t slot_of(const jd_net *net, uint64_t id)
{
    return (size_t)(id * 11400714819323198485ull) & (net->table_size - 1);
}

static jd_conn *conn_find(jd_net *net, uint64_t id)
{
    for (jd_conn *c = net->table[slot_of(net, id)]; c; c = c->table_next)
        if (c->id == id)
            return c;
    return NULL;
}

static void conn_table_grow(jd_net *net)
{
    size_t old_size = net->table_size;
    jd_conn **old = net->table;
    size_t size = old_size * 2;
    jd_conn **table = calloc(size, sizeof(*table));
    if (!table)
        return; /* keep chaining in the old table */
    net->table = table;
    net->table_size = size;
    for (size_t i = 0; i < old_size; i++) {
        jd_conn *c = old[i];
        while (c) {
            jd_conn *next = c->table_next;
            size_t s = slot_of(net, c->id);
            c->table_next = table[s];
            table[s] = c;
            c = next;
        }
    }
    free(old);
}

static void conn_insert(jd_net *net, jd_conn *c)
{
    if (net->n_conns + 1 > net->table_size)
        conn_table_grow(net);
    size_t s = slot_of(net, c->id);
    c->table_next = net->table[s];
    net->table[s] = c;
    net->n_conns++;
}

static void conn_remove(jd_net *net, jd_conn *c)
{
    jd_conn **p = &net->table[slot_of(net, c->id)];
    while (*p && *p != c)
        p = &(*p)->table_next;
    if (*p) {
        *p = c->table_next;
        net->n_conns--;
    }
}

static jd_ip_count *ip_get(jd_net *net, const char *ip, bool create)
{
    size_t s = jd_hash64(ip, strlen(ip)) % (sizeof(net->ips) / sizeof(net->ips[0]));
    for (jd_ip_count *e = net->ips[s]; e; e = e->next)
        if (strcmp(e->ip, ip) == 0)
            return e;
    if (!create)
        return NULL;
    jd_ip_count *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->ip, sizeof(e->ip), "%s", ip);
    e->next = net->ips[s];
    net->ips[s] = e;
    return e;
}

static void ip_release(jd_net *net, jd_ip_count *entry)
{
    if (!entry || --entry->count > 0)
        return;
    size_t s = jd_hash64(entry->ip, strlen(entry->ip)) % (sizeof(net->ips) / sizeof(net->ips[0]));
    jd_ip_count **p = &net->ips[s];
    while (*p && *p != entry)
        p = &(*p)->next;
    if (*p)
        *p = entry->next;
    free(entry);
}

/* --- sending ---------------------------------------------------------------------------------- */

static void conn_set_state(jd_conn *c, jd_conn_state state)
{
    c->state = state;
}

static void conn_close(jd_conn *c, int code, const char *reason)
{
    if (c->state != JD_CONN_OPEN)
        return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
    conn_set_state(c, JD_CONN_CLOSING);
    if (c->wsi) {
        lws_callback_on_writable(c->wsi);
        /* A peer that never reads (or never answers the close) cannot hold the socket open. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 5);
    }
}

static void conn_send(jd_conn *c, const char *type, const char *data, size_t len)
{
    if (c->state == JD_CONN_CLOSE_SENT || c->state == JD_CONN_CLOSED)
        return;
    if (c->out_count >= JD_MAX_OUTQ) {
        jd_log(JD_LOG_WARN, c->id, c->peer, "client is not reading its frames; closing");
        conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "not reading");
        return;
    }
    jd_frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f) {
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->data + LWS_PRE, data, len);
    if (c->out_tail)
        c->out_tail->next = f;
    else
        c->out_head = f;
    c->out_tail = f;
    c->out_count++;
    jd_metrics_frame_out(type);
    lws_callback_on_writable(c->wsi);
}

static void conn_send_error(jd_conn *c, const jd_proto_error *err)
{
    jd_buf frame;
    jd_buf_init(&frame);
    jd_proto_encode_error(&frame, err);
    jd_metrics_error(err->code);
    if (jd_buf_ok(&frame))
        conn_send(c, "error", frame.data, frame.len);
    jd_buf_free(&frame);
    if (err->close_code)
        conn_close(c, err->close_code, jd_proto_error_name(err->code));
}

/* One lws_write per WRITEABLE: queued frames first, then one coalesced ack frame, then the
 * close once everything owed to the client has gone out. */
static int conn_writeable(jd_conn *c)
{
    /* lws may still call WRITEABLE while it awaits the close reply; another -1 here would kill
     * the socket with the peer's data unread, and the peer would see a reset (1006). */
    if (c->state == JD_CONN_CLOSE_SENT)
        return 0;
    if (c->out_head) {
        jd_frame *f = c->out_head;
        c->out_head = f->next;
        if (!c->out_head)
            c->out_tail = NULL;
        c->out_count--;
        int n = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        free(f);
        if (n < 0)
            return -1;
    } else if (c->n_acks) {
        static const char head[] = "{\"type\":\"ack\",\"ids\":[";
        size_t len = sizeof(head) - 1 + c->acks.len + 2;
        unsigned char *buf = malloc(LWS_PRE + len);
        if (!buf)
            return -1;
        memcpy(buf + LWS_PRE, head, sizeof(head) - 1);
        memcpy(buf + LWS_PRE + sizeof(head) - 1, c->acks.data, c->acks.len);
        memcpy(buf + LWS_PRE + sizeof(head) - 1 + c->acks.len, "]}", 2);
        jd_metrics_acks((uint64_t)c->n_acks);
        jd_metrics_frame_out("ack");
        jd_buf_reset(&c->acks);
        c->n_acks = 0;
        int n = lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
        free(buf);
        if (n < 0)
            return -1;
    } else if (c->state == JD_CONN_CLOSING) {
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        conn_set_state(c, JD_CONN_CLOSE_SENT);
        return -1;
    }
    if (c->out_head || c->n_acks || c->state == JD_CONN_CLOSING)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* --- flow control ----------------------------------------------------------------------------- */

static void conn_update_flow(jd_net *net, jd_conn *c)
{
    bool want_pause =
        net->state != JD_NET_SERVING || c->n_stalled > 0 || c->inflight >= net->config.max_inflight;
    bool want_resume = net->state == JD_NET_SERVING && c->n_stalled == 0 &&
                       c->inflight <= net->config.max_inflight / 2;
    if (!c->rx_paused && want_pause) {
        c->rx_paused = true;
        jd_metrics_rx_paused(1);
        lws_rx_flow_control(c->wsi, 0);
    } else if (c->rx_paused && want_resume && c->state == JD_CONN_OPEN) {
        c->rx_paused = false;
        jd_metrics_rx_paused(-1);
        lws_rx_flow_control(c->wsi, 1);
    }
}

static bool push_records(jd_net *net, jd_record **records, size_t n, size_t *pushed)
{
    bool was_empty = false;
    *pushed = jd_queue_push(net->inbound, records, n, &was_empty);
    if (*pushed && was_empty)
        net->hooks.wake_store(net->hooks.arg);
    return *pushed == n;
}

static void stall_list_add(jd_net *net, jd_conn *c)
{
    if (c->in_stall_list)
        return;
    c->in_stall_list = true;
    c->stall_next = NULL;
    c->stall_prev = net->stall_tail;
    if (net->stall_tail)
        net->stall_tail->stall_next = c;
    else
        net->stall_head = c;
    net->stall_tail = c;
}

static void stall_list_remove(jd_net *net, jd_conn *c)
{
    if (!c->in_stall_list)
        return;
    if (c->stall_prev)
        c->stall_prev->stall_next = c->stall_next;
    else
        net->stall_head = c->stall_next;
    if (c->stall_next)
        c->stall_next->stall_prev = c->stall_prev;
    else
        net->stall_tail = c->stall_prev;
    c->stall_prev = c->stall_next = NULL;
    c->in_stall_list = false;
}

/* Retries a connection's stalled records, oldest first. Returns true when none is left. */
static bool conn_unstall(jd_net *net, jd_conn *c)
{
    if (c->n_stalled) {
        size_t pushed;
        push_records(net, c->stalled, c->n_stalled, &pushed);
        memmove(c->stalled, c->stalled + pushed, (c->n_stalled - pushed) * sizeof(*c->stalled));
        c->n_stalled -= pushed;
    }
    if (c->n_stalled == 0)
        stall_list_remove(net, c);
    conn_update_flow(net, c);
    return c->n_stalled == 0;
}

/* Serves stalled connections in the order they stalled, until the queue is full again: under
 * backpressure every client gets its turn, and none is starved by luckier ones. */
static void unstall_in_turn(jd_net *net)
{
    while (net->stall_head)
        if (!conn_unstall(net, net->stall_head))
            break;
}

static void conn_submit(jd_net *net, jd_conn *c, jd_record *rec)
{
    if (rec->acked)
        c->inflight++;
    size_t pushed = 0;
    /* While others wait their turn, a connection does not jump the queue. */
    if (c->n_stalled == 0 && !net->stall_head && push_records(net, &rec, 1, &pushed)) {
        conn_update_flow(net, c);
        return;
    }
    /* The queue is full (or others are waiting): keep the record here, in order, and stop
     * reading this client until its turn comes. */
    if (c->n_stalled == c->cap_stalled) {
        size_t cap = c->cap_stalled ? c->cap_stalled * 2 : 8;
        jd_record **grown = realloc(c->stalled, cap * sizeof(*grown));
        if (!grown) {
            if (rec->acked)
                c->inflight--;
            free(rec);
            conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
            return;
        }
        c->stalled = grown;
        c->cap_stalled = cap;
    }
    c->stalled[c->n_stalled++] = rec;
    stall_list_add(net, c);
    conn_update_flow(net, c);
}

/* --- frames ----------------------------------------------------------------------------------- */

static bool take_token(jd_net *net, jd_conn *c)
{
    uint64_t now = jd_now_us();
    c->tokens += (double)(now - c->tokens_at_us) * net->config.rate_per_sec / 1e6;
    if (c->tokens > net->config.rate_burst)
        c->tokens = net->config.rate_burst;
    c->tokens_at_us = now;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        c->refused_in_a_row = 0;
        return true;
    }
    return false;
}

static void handle_message(jd_net *net, jd_conn *c, bool binary)
{
    jd_proto_error err;
    if (!take_token(net, c)) {
        char id[JD_UUID_LEN + 1] = "";
        jd_metrics_frame_in(JD_MSG_INVALID);
        if (!binary)
            jd_proto_peek_id(c->rx.data, c->rx.len, id);
        jd_proto_error_set(&err, JD_ERR_RATE_LIMITED, id,
                           "too many frames per second; wait and resend");
        /* A client that keeps sending into an empty bucket is flooding: close 1008. */
        if (++c->refused_in_a_row >= JD_FLOOD_CLOSE) {
            jd_log(JD_LOG_WARN, c->id, c->peer, "flooding; closing");
            err.close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        }
        conn_send_error(c, &err);
        return;
    }
    if (binary) {
        jd_metrics_frame_in(JD_MSG_INVALID);
        jd_proto_error_set(&err, JD_ERR_BAD_FRAME, NULL,
                           "binary frames are not part of journey.v1");
        conn_send_error(c, &err);
        return;
    }
    if (c->agent) {
        jd_metrics_frame_in(JD_MSG_CHAT);
        jd_chat_agent_frame(net->chat, c->id, c->rx.data, c->rx.len);
        return;
    }
    jd_proto_out out;
    jd_proto_out_init(&out);
    bool ok =
        jd_proto_handle(net->catalog, c->site_key, &c->proto, c->rx.data, c->rx.len, &out, &err);
    jd_metrics_frame_in(out.type);
    if (!ok) {
        jd_log(JD_LOG_DEBUG, c->id, c->peer, "refused frame: %s: %s", jd_proto_error_name(err.code),
               err.message);
        conn_send_error(c, &err);
        goto done;
    }
    if (out.type == JD_MSG_CHAT) {
        jd_chat_visitor_frame(net->chat, c->id, &c->proto, out.chat);
        goto done;
    }
    if (out.reply.len)
        conn_send(c, out.type == JD_MSG_HELLO ? "welcome" : "pong", out.reply.data, out.reply.len);
    if (out.send_surveys) {
        const jd_catalog_site *site = jd_catalog_site_by_id(net->catalog, c->proto.site_id);
        for (size_t i = 0; site && i < site->n_surveys; i++)
            conn_send(c, "survey", site->survey_frames[i], site->survey_frame_lens[i]);
    }
    if (out.record_kind != JD_REC_NONE) {
        jd_record *rec = jd_record_new(out.record_kind, out.record_acked, c->id, out.id,
                                       out.record.data, out.record.len);
        if (!rec) {
            jd_proto_error_set(&err, JD_ERR_STORE_REJECTED, out.id, "server out of memory; resend");
            conn_send_error(c, &err);
            goto done;
        }
        conn_submit(net, c, rec);
    }
done:
    jd_proto_out_free(&out);
}

static int ws_receive(jd_net *net, jd_conn *c, struct lws *wsi, const void *in, size_t len)
{
    if (c->state != JD_CONN_OPEN)
        return 0;
    if (lws_is_first_fragment(wsi))
        jd_buf_reset(&c->rx);
    if (c->rx.len + len > (size_t)net->config.max_frame) {
        jd_metrics_error(JD_ERR_FRAME_TOO_LARGE);
        jd_log(JD_LOG_INFO, c->id, c->peer, "frame over max_frame (%d bytes); closing 1009",
               net->config.max_frame);
        /* Close through the writeable path, not by returning -1 here: lws would abandon its
         * frame parser mid-payload, parse the rest of the message as headers and kill the
         * socket before the close frame went out (the peer then sees 1006, not 1009). The
         * rest of the message is read and dropped because the state is no longer OPEN. */
        jd_buf_free(&c->rx);
        conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "frame_too_large");
        return 0;
    }
    jd_buf_append(&c->rx, in, len);
    if (!jd_buf_ok(&c->rx)) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, NULL, 0);
        return -1;
    }
    if (!lws_is_final_fragment(wsi))
        return 0;
    handle_message(net, c, lws_frame_is_binary(wsi));
    /* Idle connections keep no receive buffer: memory per connection stays small. */
    if (c->rx.cap > 4096)
        jd_buf_free(&c->rx);
    else
        jd_buf_reset(&c->rx);
    return 0;
}

/* --- upgrade checks and connection lifecycle -------------------------------------------------- */

static int reject_upgrade(struct lws *wsi, unsigned int status, const char *why, const char *peer)
{
    jd_metrics_rejected_upgrade((int)status);
    jd_log(JD_LOG_INFO, 0, peer, "upgrade refused with %u: %s", status, why);
    lws_return_http_status(wsi, status, why);
    return -1;
}

static bool ip_listed(const char *list, const char *ip)
{
    if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.'))
        ip += 7;
    size_t n = strlen(ip);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == n && strncmp(p, ip, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* The client's address: the peer, or, when the peer is a trusted reverse proxy, the right-most
 * X-Forwarded-For entry that is not itself a trusted proxy. */
static void client_address(jd_net *net, struct lws *wsi, char *out, size_t out_len)
{
    char peer[64] = "", xff[512] = "";
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    snprintf(out, out_len, "%s", peer);
    if (!net->config.trusted_proxies[0] || !ip_listed(net->config.trusted_proxies, peer) ||
        lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) <= 0)
        return;
    char *end = xff + strlen(xff);
    while (end > xff) {
        char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        char *a = start, *b = end;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        *b = '\0';
        if (*a && !ip_listed(net->config.trusted_proxies, a)) {
            snprintf(out, out_len, "%s", a);
            return;
        }
        end = start > xff ? start - 1 : xff;
    }
}

/* The limits every upgrade passes last: total connections and connections per address. */
static int limit_upgrade(jd_net *net, struct lws *wsi, const char *peer)
{
    if ((int)net->n_conns >= net->config.max_conns)
        return reject_upgrade(wsi, 503, "too many connections", peer);
    jd_ip_count *ip = ip_get(net, peer, false);
    if (ip && ip->count >= net->config.max_conns_per_ip)
        return reject_upgrade(wsi, 429, "too many connections from this address", peer);
    return 0;
}

/* The agent console's session cookie: __Host-jd_agent under TLS, jd_agent without. */
static bool agent_cookie(struct lws *wsi, char *out, size_t out_len)
{
    char cookies[1024] = "";
    out[0] = '\0';
    if (lws_hdr_copy(wsi, cookies, sizeof(cookies), WSI_TOKEN_HTTP_COOKIE) <= 0)
        return false;
    for (char *p = cookies; *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t len = strcspn(p, ";");
        char *eq = memchr(p, '=', len);
        if (eq) {
            size_t name_len = (size_t)(eq - p);
            bool ours = (name_len == 8 && strncmp(p, "jd_agent", 8) == 0) ||
                        (name_len == 15 && strncmp(p, "__Host-jd_agent", 15) == 0);
            size_t value_len = len - name_len - 1;
            if (ours && value_len > 0 && value_len < out_len) {
                memcpy(out, eq + 1, value_len);
                out[value_len] = '\0';
                return true;
            }
        }
        p += len;
    }
    return false;
}

/* Browsers send Origin on WebSocket upgrades and POSTs; the console lives on journeyd's own
 * origin, so any other Origin is a cross-site request. A missing Origin is not a browser. */
static bool same_origin(struct lws *wsi)
{
    char origin[512] = "", host[256] = "";
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return true;
    if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
        return false;
    const char *o = strstr(origin, "://");
    return o && strcmp(o + 3, host) == 0;
}

static int agent_filter(jd_net *net, struct lws *wsi, const char *uri, const char *peer)
{
    char token[160];
    if (strcmp(uri, "/agent/ws") != 0)
        return reject_upgrade(wsi, 404, "the agent console's WebSocket is /agent/ws", peer);
    if (!same_origin(wsi))
        return reject_upgrade(wsi, 403, "origin not allowed for the agent console", peer);
    if (!agent_cookie(wsi, token, sizeof(token)))
        return reject_upgrade(wsi, 403, "sign in first (POST /agent/login)", peer);
    return limit_upgrade(net, wsi, peer);
}

static int ws_filter(jd_net *net, struct lws *wsi)
{
    char peer[48] = "", site[72] = "", origin[512] = "", uri[64] = "";
    client_address(net, wsi, peer, sizeof(peer));
    if (net->state != JD_NET_SERVING)
        return reject_upgrade(wsi, 503, "server is shutting down", peer);
    lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    const struct lws_protocols *proto = lws_get_protocol(wsi);
    if (proto && strcmp(proto->name, JD_CHAT_AGENT_SUBPROTOCOL) == 0)
        return agent_filter(net, wsi, uri, peer);
    if (strcmp(uri, "/ws") != 0)
        return reject_upgrade(wsi, 404, "no WebSocket endpoint here; use /ws", peer);
    if (!net->catalog)
        return reject_upgrade(wsi, 503, "server is starting: database not reached yet", peer);
    const char *key = lws_get_urlarg_by_name(wsi, "site=", site, sizeof(site));
    if (!key)
        return reject_upgrade(wsi, 403, "missing site key (?site=KEY)", peer);
    const jd_catalog_site *cs = jd_catalog_site_by_key(net->catalog, key);
    if (!cs)
        return reject_upgrade(wsi, 403, "unknown site key", peer);
    /* Browsers always send Origin; a missing one is a non-browser client, which cannot be
     * hijacked cross-site. A present one must be allowed for the site. */
    int olen = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
    if (olen > 0 && !jd_catalog_origin_allowed(cs, origin))
        return reject_upgrade(wsi, 403, "origin not allowed for this site", peer);
    return limit_upgrade(net, wsi, peer);
}

static int ws_established(jd_net *net, struct lws *wsi, jd_pss *pss)
{
    jd_conn *c = calloc(1, sizeof(*c));
    char peer[48] = "";
    if (!c)
        return -1;
    client_address(net, wsi, peer, sizeof(peer));
    snprintf(c->proto.client_ip, sizeof(c->proto.client_ip), "%s", peer);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->id = ++net->next_conn_id;
    c->wsi = wsi;
    c->ip = ip_get(net, peer, true);
    if (c->ip)
        c->ip->count++;
    char site[72];
    const char *key = lws_get_urlarg_by_name(wsi, "site=", site, sizeof(site));
    snprintf(c->site_key, sizeof(c->site_key), "%s", key ? key : "");
    c->tokens = net->config.rate_burst;
    c->tokens_at_us = jd_now_us();
    c->proto.max_frame = net->config.max_frame;
    c->proto.rate_per_sec = net->config.rate_per_sec;
    c->proto.rate_burst = net->config.rate_burst;
    jd_buf_init(&c->rx);
    jd_buf_init(&c->acks);
    conn_insert(net, c);
    pss->conn = c;
    jd_metrics_connection_opened();
    const struct lws_protocols *proto = lws_get_protocol(wsi);
    if (proto && strcmp(proto->name, JD_CHAT_AGENT_SUBPROTOCOL) == 0) {
        char token[160];
        c->agent = true;
        agent_cookie(wsi, token, sizeof(token));
        jd_chat_agent_connected(net->chat, c->id, token);
        jd_log(JD_LOG_INFO, c->id, c->peer, "agent console connected");
        return 0;
    }
    jd_log(JD_LOG_INFO, c->id, c->peer, "connected (site %s)", c->site_key);
    return 0;
}

static void ws_closed(jd_net *net, jd_pss *pss)
{
    jd_conn *c = pss->conn;
    if (!c)
        return;
    pss->conn = NULL;
    conn_remove(net, c);
    stall_list_remove(net, c);
    jd_chat_conn_closed(net->chat, c->id);
    ip_release(net, c->ip);
    c->ip = NULL;
    c->wsi = NULL;
    if (c->rx_paused)
        jd_metrics_rx_paused(-1);
    conn_set_state(c, JD_CONN_CLOSED);
    jd_metrics_connection_closed();
    jd_log(JD_LOG_INFO, c->id, c->peer, "closed");
    /* Freed from the service loop, after this callback has returned. */
    c->reap_next = net->reap;
    net->reap = c;
}

static void conn_free(jd_net *net, jd_conn *c)
{
    /* Stalled records were never queued, so never acked: the client resends them. While
     * draining they are pushed before the marker, so none are left here then. */
    for (size_t i = 0; i < c->n_stalled; i++)
        free(c->stalled[i]);
    free(c->stalled);
    while (c->out_head) {
        jd_frame *f = c->out_head;
        c->out_head = f->next;
        free(f);
    }
    jd_buf_free(&c->rx);
    jd_buf_free(&c->acks);
    free(c);
}

static void reap_closed(jd_net *net)
{
    while (net->reap) {
        jd_conn *c = net->reap;
        net->reap = c->reap_next;
        conn_free(net, c);
    }
}

/* --- HTTP ------------------------------------------------------------------------------------- */

static int http_respond(struct lws *wsi, jd_pss *pss, unsigned int status, const char *type,
                        const char *body, size_t len, bool owned, const char *extra_headers[][2])
{
    unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, status, type, len, &p, end))
        goto fail;
    static const char *const security[][2] = {
        {"x-content-type-options:", "nosniff"},
        {"referrer-policy:", "strict-origin-when-cross-origin"},
        {"content-security-policy:",
         "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
         "style-src 'self'; script-src 'self'; frame-ancestors 'self'; base-uri 'none'"}};
    for (size_t i = 0; i < sizeof(security) / sizeof(security[0]); i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)security[i][0],
                                        (const unsigned char *)security[i][1],
                                        (int)strlen(security[i][1]), &p, end))
            goto fail;
    jd_net *net = lws_context_user(lws_get_context(wsi));
    if (pss->http.close_after &&
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"connection:", (const unsigned char *)"close", 5, &p, end))
        goto fail;
    if (net->tls && net->config.hsts_max_age > 0) {
        char hsts[64];
        int n =
            snprintf(hsts, sizeof(hsts), "max-age=%d; includeSubDomains", net->config.hsts_max_age);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"strict-transport-security:",
                                        (const unsigned char *)hsts, n, &p, end))
            goto fail;
    }
    for (int i = 0; extra_headers && extra_headers[i][0]; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra_headers[i][0],
                                        (const unsigned char *)extra_headers[i][1],
                                        (int)strlen(extra_headers[i][1]), &p, end))
            goto fail;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        goto fail;
    if (!len || pss->http.head_only) {
        if (owned)
            free((char *)body);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    pss->http.body = (char *)body;
    pss->http.len = len;
    pss->http.sent = 0;
    pss->http.owned = owned;
    lws_callback_on_writable(wsi);
    return 0;
fail:
    if (owned)
        free((char *)body);
    return -1;
}

static int http_writeable(struct lws *wsi, jd_pss *pss)
{
    jd_http *h = &pss->http;
    if (pss->api && pss->api->response && !h->body && pss->api->id) {
        /* The API answer arrived: headers now, inside this wsi's own callback. */
        jd_http_response *r = pss->api->response;
        pss->api->id = 0;
        if (r->set_cookie) {
            jd_net *net = lws_context_user(lws_get_context(wsi));
            char cookie[400];
            /* HttpOnly: scripts never see it; SameSite=Strict: other sites never send it. */
            snprintf(
                cookie, sizeof(cookie), "%s=%s; Path=%s; HttpOnly; SameSite=Strict%s; Max-Age=%d",
                net->tls ? "__Host-jd_agent" : "jd_agent", r->cookie, net->tls ? "/" : "/agent",
                net->tls ? "; Secure" : "", r->cookie[0] ? 43200 : 0);
            const char *headers[][2] = {
                {"set-cookie:", cookie}, {"cache-control:", "no-store"}, {NULL, NULL}};
            return http_respond(wsi, pss, (unsigned int)r->status, r->content_type, r->body, r->len,
                                false, headers);
        }
        return http_respond(wsi, pss, (unsigned int)r->status, r->content_type, r->body, r->len,
                            false, NULL);
    }
    if (!h->body)
        return 0;
    size_t chunk = h->len - h->sent;
    if (chunk > 16384)
        chunk = 16384;
    /* lws_write needs LWS_PRE bytes of headroom before the data. */
    unsigned char buf[LWS_PRE + 16384];
    memcpy(buf + LWS_PRE, h->body + h->sent, chunk);
    h->sent += chunk;
    bool last = h->sent == h->len;
    if (lws_write(wsi, buf + LWS_PRE, chunk, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
        (int)chunk)
        return -1;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (h->owned)
        free(h->body);
    h->body = NULL;
    if (pss->api) {
        free(pss->api->response);
        pss->api->response = NULL;
    }
    if (h->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void http_release(jd_pss *pss)
{
    if (pss->http.owned)
        free(pss->http.body);
    pss->http.body = NULL;
}

static int api_begin(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path);

static int agent_route(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path);

static int http_request(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path)
{
    if (strncmp(path, "/api/v1", 7) == 0 && (path[7] == '\0' || path[7] == '/'))
        return api_begin(net, wsi, pss, path);
    if (strcmp(path, "/agent/login") == 0 || strcmp(path, "/agent/logout") == 0 ||
        strcmp(path, "/agent/me") == 0 || strcmp(path, "/agent/transcript") == 0)
        return agent_route(net, wsi, pss, path);
    char method[8] = "";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        snprintf(method, sizeof(method), "GET");
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0)
        snprintf(method, sizeof(method), "HEAD");
    pss->http.head_only = strcmp(method, "HEAD") == 0;
    if (!method[0]) {
        static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\","
                                   "\"message\":\"only GET and HEAD are served here\"}}";
        return http_respond(wsi, pss, 405, "application/json", body, sizeof(body) - 1, false, NULL);
    }
    if (strcmp(path, "/healthz") == 0) {
        char reason[256] = "", body[512];
        bool up = net->hooks.db_healthy(net->hooks.arg, reason, sizeof(reason));
        unsigned int status = 200;
        jd_buf b;
        jd_buf_init(&b);
        if (net->state != JD_NET_SERVING) {
            status = 503;
            jd_buf_puts(&b, "{\"status\":\"draining\",\"reason\":\"shutting down\"}");
        } else if (!up) {
            status = 503;
            jd_buf_puts(&b, "{\"status\":\"unavailable\",\"database\":\"down\",\"reason\":");
            jd_buf_json_string(&b, reason, strlen(reason));
            jd_buf_puts(&b, "}");
        } else if (!net->catalog) {
            /* Connected, but sites and surveys are not loaded yet: upgrades would get 503. */
            status = 503;
            jd_buf_puts(&b, "{\"status\":\"starting\",\"database\":\"up\",\"reason\":"
                            "\"loading sites and surveys\"}");
        } else {
            jd_buf_puts(&b, "{\"status\":\"ok\",\"database\":\"up\",\"catalog\":true}");
        }
        snprintf(body, sizeof(body), "%s", jd_buf_ok(&b) ? b.data : "{}");
        jd_buf_free(&b);
        static const char *const nocache[][2] = {{"cache-control:", "no-store"}, {NULL, NULL}};
        char *copy = strdup(body);
        return http_respond(wsi, pss, status, "application/json", copy, copy ? strlen(copy) : 0,
                            true, (const char *(*)[2])nocache);
    }
    if (strcmp(path, "/metrics") == 0) {
        jd_buf b;
        jd_buf_init(&b);
        jd_metrics_render(&b);
        if (!jd_buf_ok(&b)) {
            jd_buf_free(&b);
            return -1;
        }
        return http_respond(wsi, pss, 200, "text/plain; version=0.0.4; charset=utf-8", b.data,
                            b.len, true, NULL);
    }
    if (strcmp(path, "/ws") == 0) {
        static const char body[] = "{\"error\":{\"code\":\"upgrade_required\",\"message\":"
                                   "\"/ws speaks WebSocket with subprotocol journey.v1\"}}";
        return http_respond(wsi, pss, 426, "application/json", body, sizeof(body) - 1, false, NULL);
    }
    if (strcmp(path, "/") == 0) {
        static const char *const loc[][2] = {{"location:", "/demo/index.html"}, {NULL, NULL}};
        return http_respond(wsi, pss, 302, "text/plain", "", 0, false, (const char *(*)[2])loc);
    }
    if (strcmp(path, "/agent") == 0 || strcmp(path, "/agent/") == 0) {
        static const char *const loc[][2] = {{"location:", "/agent/index.html"}, {NULL, NULL}};
        return http_respond(wsi, pss, 302, "text/plain", "", 0, false, (const char *(*)[2])loc);
    }
    if (strcmp(path, "/agent/ws") == 0) {
        static const char body[] = "{\"error\":{\"code\":\"upgrade_required\",\"message\":"
                                   "\"/agent/ws speaks WebSocket with subprotocol "
                                   "journey.agent.v1\"}}";
        return http_respond(wsi, pss, 426, "application/json", body, sizeof(body) - 1, false, NULL);
    }
    const jd_file *file = jd_files_find(net->files, path);
    if (!file) {
        static const char body[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such "
                                   "file\"}}";
        return http_respond(wsi, pss, 404, "application/json", body, sizeof(body) - 1, false, NULL);
    }
    char inm[64] = "";
    const char *headers[4][2] = {{"etag:", file->etag},
                                 {"cache-control:", "public, max-age=300, must-revalidate"},
                                 {"cross-origin-resource-policy:", "cross-origin"},
                                 {NULL, NULL}};
    if (lws_hdr_copy(wsi, inm, sizeof(inm), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
        strcmp(inm, file->etag) == 0)
        return http_respond(wsi, pss, 304, file->content_type, "", 0, false, headers);
    return http_respond(wsi, pss, 200, file->content_type, file->data, file->len, false, headers);
}

/* --- admin API bridge ------------------------------------------------------------------------ */

static void api_unlink(jd_net *net, jd_pss *pss)
{
    jd_pss **p = &net->api_pending;
    while (*p && *p != pss)
        p = &(*p)->api_next;
    if (*p)
        *p = pss->api_next;
    pss->api_next = NULL;
}

static void api_release(jd_net *net, jd_pss *pss)
{
    api_unlink(net, pss);
    if (!pss->api)
        return;
    jd_buf_free(&pss->api->query);
    jd_buf_free(&pss->api->body);
    free(pss->api->response);
    free(pss->api);
    pss->api = NULL;
}

static int api_error(struct lws *wsi, jd_pss *pss, unsigned int status, const char *code,
                     const char *message)
{
    if (pss->api)
        pss->api->answered = true;
    jd_buf b;
    jd_buf_init(&b);
    jd_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    jd_buf_json_string(&b, message, strlen(message));
    jd_buf_puts(&b, "}}");
    if (!jd_buf_ok(&b)) {
        jd_buf_free(&b);
        return -1;
    }
    return http_respond(wsi, pss, status, "application/json", b.data, b.len, true, NULL);
}

/* Queues the request for the API store; the answer arrives as JD_EV_HTTP. */
static int api_submit(jd_net *net, struct lws *wsi, jd_pss *pss)
{
    jd_api_call *a = pss->api;
    if (!a)
        return -1;
    if (a->answered)
        return 0;
    if (a->too_large)
        return api_error(wsi, pss, 413, "too_large", "request body over 1 MiB");
    if (a->bad_query)
        return api_error(wsi, pss, 400, "bad_request",
                         "query string must be UTF-8 text without NUL bytes");
    if (a->body.len && !jd_utf8_text_valid(a->body.data, a->body.len))
        return api_error(wsi, pss, 400, "bad_request",
                         "request body must be UTF-8 text without NUL bytes");
    jd_buf rec;
    jd_buf_init(&rec);
    if (a->agent_op) {
        if (!jd_chat_http_record(a->agent_op, a->body.data, a->body.len, a->query.data,
                                 a->query.len, a->token, &rec)) {
            jd_buf_free(&rec);
            return api_error(wsi, pss, 400, "bad_request", "the body must be a JSON object");
        }
        goto queue;
    }
    jd_buf_puts(&rec, "[");
    jd_buf_json_string(&rec, a->method, strlen(a->method));
    jd_buf_puts(&rec, ",");
    jd_buf_json_string(&rec, a->path, strlen(a->path));
    jd_buf_puts(&rec, ",");
    jd_buf_append(&rec, a->query.data ? a->query.data : "{}", a->query.data ? a->query.len : 2);
    jd_buf_puts(&rec, ",");
    if (a->body.len)
        jd_buf_json_string(&rec, a->body.data, a->body.len);
    else
        jd_buf_puts(&rec, "null");
    jd_buf_puts(&rec, ",");
    if (a->token[0])
        jd_buf_json_string(&rec, a->token, strlen(a->token));
    else
        jd_buf_puts(&rec, "null");
    jd_buf_puts(&rec, "]");
queue:
    a->id = ++net->next_api_id;
    jd_record *r = jd_buf_ok(&rec) ? jd_record_new(a->agent_op ? JD_REC_CHAT_HTTP : JD_REC_API,
                                                   false, a->id, NULL, rec.data, rec.len)
                                   : NULL;
    jd_buf_free(&rec);
    jd_buf_free(&a->body);
    bool was_empty = false;
    jd_queue *q = a->agent_op ? net->chatq : net->api;
    if (!r || jd_queue_push(q, &r, 1, &was_empty) != 1) {
        free(r);
        a->id = 0;
        return api_error(wsi, pss, 503, "busy", "too many admin requests in progress; retry");
    }
    pss->wsi = wsi;
    pss->api_next = net->api_pending;
    net->api_pending = pss;
    if (was_empty)
        (a->agent_op ? net->hooks.wake_chat : net->hooks.wake_api)(net->hooks.arg);
    return 0;
}

static int api_begin(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path)
{
    static const struct {
        enum lws_token_indexes token;
        const char *name;
        bool body;
    } methods[] = {{WSI_TOKEN_GET_URI, "GET", false},       {WSI_TOKEN_POST_URI, "POST", true},
                   {WSI_TOKEN_PUT_URI, "PUT", true},        {WSI_TOKEN_PATCH_URI, "PATCH", true},
                   {WSI_TOKEN_DELETE_URI, "DELETE", false}, {WSI_TOKEN_HEAD_URI, "HEAD", false}};
    api_release(net, pss);
    jd_api_call *a = pss->api = calloc(1, sizeof(*pss->api));
    if (!a)
        return -1;
    pss->http.close_after = false;
    bool has_body = false;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (lws_hdr_total_length(wsi, methods[i].token) > 0) {
            snprintf(a->method, sizeof(a->method), "%s", methods[i].name);
            has_body = methods[i].body;
        }
    pss->http.head_only = strcmp(a->method, "HEAD") == 0;
    if (!a->method[0])
        return api_error(wsi, pss, 405, "method_not_allowed", "unsupported method");
    const char *rest = path + strlen("/api/v1");
    snprintf(a->path, sizeof(a->path), "%s", rest[0] ? rest : "/");
    char auth[300] = "";
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        strncasecmp(auth, "Bearer ", 7) == 0)
        snprintf(a->token, sizeof(a->token), "%s", auth + 7);
    jd_buf_init(&a->query);
    jd_buf_init(&a->body);
    jd_buf_puts(&a->query, "{");
    char frag[1024];
    int flen;
    for (int n = 0, first = 1;
         (flen = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, n)) > 0;
         n++) {
        if (!jd_utf8_text_valid(frag, (size_t)flen) || strlen(frag) != (size_t)flen)
            a->bad_query = true;
        char *eq = strchr(frag, '=');
        const char *value = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        if (!first)
            jd_buf_puts(&a->query, ",");
        first = 0;
        jd_buf_json_string(&a->query, frag, strlen(frag));
        jd_buf_puts(&a->query, ":");
        jd_buf_json_string(&a->query, value, strlen(value));
    }
    jd_buf_puts(&a->query, "}");
    if (has_body && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        /* lws 4.1 does not decode chunked request bodies: say so instead of waiting forever,
         * and close, since the unread body makes the connection unusable. */
        pss->http.close_after = true;
        return api_error(wsi, pss, 411, "length_required",
                         "send the request body with a Content-Length header");
    }
    if (has_body)
        return 0; /* wait for LWS_CALLBACK_HTTP_BODY_COMPLETION */
    return api_submit(net, wsi, pss);
}

/* POST /agent/login, POST /agent/logout, GET /agent/me, GET /agent/transcript: the agent
 * console's routes, answered by jd_agent_http() on the chat store's connection. */
static int agent_route(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path)
{
    static const char *const ops[][3] = {{"/agent/login", "login", "POST"},
                                         {"/agent/logout", "logout", "POST"},
                                         {"/agent/me", "me", "GET"},
                                         {"/agent/transcript", "transcript", "GET"}};
    api_release(net, pss);
    jd_api_call *a = pss->api = calloc(1, sizeof(*pss->api));
    if (!a)
        return -1;
    jd_buf_init(&a->query);
    jd_buf_init(&a->body);
    pss->http.close_after = false;
    pss->http.head_only = false;
    const char *want = NULL;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(path, ops[i][0]) == 0) {
            a->agent_op = ops[i][1];
            want = ops[i][2];
        }
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    /* Refused before its body is read, a request leaves the connection unusable. */
    pss->http.close_after = post;
    snprintf(a->method, sizeof(a->method), "%s", post ? "POST" : "GET");
    if (!want || (strcmp(want, "POST") == 0 ? !post : !get)) {
        char why[64];
        snprintf(why, sizeof(why), "use %s for %s", want ? want : "GET", path);
        return api_error(wsi, pss, 405, "method_not_allowed", why);
    }
    if (post && !same_origin(wsi))
        return api_error(wsi, pss, 403, "forbidden", "cross-site request refused");
    char cookie[160];
    if (agent_cookie(wsi, cookie, sizeof(cookie)))
        snprintf(a->token, sizeof(a->token), "%s", cookie);
    /* Only the query parameters the routes read. */
    jd_buf_puts(&a->query, "{");
    static const char *const names[] = {"conversation=", "format=", "redact="};
    bool first = true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char buf[160];
        /* lws returns a pointer past "name=" inside buf, not the value at buf's start. */
        const char *value = lws_get_urlarg_by_name(wsi, names[i], buf, sizeof(buf));
        if (!value)
            continue;
        if (!first)
            jd_buf_puts(&a->query, ",");
        first = false;
        jd_buf_json_string(&a->query, names[i], strlen(names[i]) - 1);
        jd_buf_puts(&a->query, ":");
        if (!jd_utf8_text_valid(value, strlen(value)))
            a->bad_query = true;
        jd_buf_json_string(&a->query, value, strlen(value));
    }
    jd_buf_puts(&a->query, "}");
    if (!post)
        return api_submit(net, wsi, pss);
    if (strcmp(a->agent_op, "login") == 0) {
        char ip[48] = "";
        client_address(net, wsi, ip, sizeof(ip));
        size_t slot = jd_hash64(ip, strlen(ip)) % (sizeof(net->logins) / sizeof(net->logins[0]));
        uint64_t now = jd_now_us();
        if (strcmp(net->logins[slot].ip, ip) != 0) {
            net->logins[slot].tokens = JD_LOGINS_PER_MINUTE;
            net->logins[slot].at_us = now;
            snprintf(net->logins[slot].ip, sizeof(net->logins[slot].ip), "%s", ip);
        }
        /* A token bucket: 20 at once, then one every 3 s. Password guessing from one address
         * is slowed before any bcrypt runs; the database also locks an e-mail after 10
         * failures. */
        double *tokens = &net->logins[slot].tokens;
        *tokens += (double)(now - net->logins[slot].at_us) * JD_LOGINS_PER_MINUTE / 60e6;
        if (*tokens > JD_LOGINS_PER_MINUTE)
            *tokens = JD_LOGINS_PER_MINUTE;
        net->logins[slot].at_us = now;
        if (*tokens < 1.0)
            return api_error(wsi, pss, 429, "too_many_attempts",
                             "too many sign-ins from this address; wait a minute");
        *tokens -= 1.0;
        char type[128] = "";
        lws_hdr_copy(wsi, type, sizeof(type), WSI_TOKEN_HTTP_CONTENT_TYPE);
        /* A cross-site form cannot send JSON without a CORS preflight. */
        if (strncasecmp(type, "application/json", 16) != 0)
            return api_error(wsi, pss, 415, "unsupported_media_type",
                             "send the sign-in as application/json");
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        pss->http.close_after = false;
        return 0; /* wait for LWS_CALLBACK_HTTP_BODY_COMPLETION */
    }
    if (strcmp(a->agent_op, "login") == 0) {
        /* lws 4.1 does not decode chunked request bodies (see api_begin). */
        return api_error(wsi, pss, 411, "length_required",
                         "send the sign-in with a Content-Length header");
    }
    pss->http.close_after = false;
    return api_submit(net, wsi, pss); /* logout: no body */
}

static int api_body(jd_pss *pss, const void *in, size_t len)
{
    jd_api_call *a = pss->api;
    if (!a)
        return -1;
    if (a->too_large || a->body.len + len > JD_API_MAX_BODY) {
        a->too_large = true;
        jd_buf_free(&a->body);
        return 0;
    }
    jd_buf_append(&a->body, in, len);
    return jd_buf_ok(&a->body) ? 0 : -1;
}

static void api_answered(jd_net *net, uint64_t id, jd_http_response *response)
{
    for (jd_pss *p = net->api_pending; p; p = p->api_next) {
        if (p->api && p->api->id == id) {
            api_unlink(net, p);
            free(p->api->response);
            p->api->response = response;
            lws_callback_on_writable(p->wsi);
            return;
        }
    }
    free(response); /* the client went away */
}

/* --- cross-thread events ---------------------------------------------------------------------- */

static void net_set_state(jd_net *net, jd_net_state state)
{
    if (net->state == state)
        return;
    net->state = state;
    bool abort = state == JD_NET_CLOSING && atomic_load(&net->abort_requested);
    for (size_t i = 0; i < net->table_size; i++)
        for (jd_conn *c = net->table[i]; c; c = c->table_next) {
            if (abort)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            else if (state == JD_NET_CLOSING)
                conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "shutting_down");
            else
                conn_update_flow(net, c);
        }
}

static void begin_drain(jd_net *net)
{
    if (net->state != JD_NET_SERVING)
        return;
    jd_log_info("drain: no new connections; committing %zu open connections' answers",
                net->n_conns);
    net_set_state(net, JD_NET_DRAINING);
}

/* While draining: push every stalled record, then the marker. Retried on each wake-up. */
static void drain_push(jd_net *net)
{
    if (net->state != JD_NET_DRAINING || net->marker_pushed)
        return;
    unstall_in_turn(net);
    if (net->stall_head)
        return;
    jd_record *marker = jd_record_new(JD_REC_DRAIN, false, 0, NULL, "", 0);
    size_t pushed = 0;
    if (marker && push_records(net, &marker, 1, &pushed)) {
        net->marker_pushed = true;
        return;
    }
    free(marker);
}

static void handle_event(jd_net *net, jd_event *ev)
{
    jd_conn *c;
    switch (ev->kind) {
    case JD_EV_ACK:
    case JD_EV_REJECT:
        c = conn_find(net, ev->conn_id);
        if (!c)
            return; /* gone: a resend on reconnect will be acked as a duplicate */
        c->inflight--;
        if (ev->kind == JD_EV_ACK) {
            if (c->n_acks)
                jd_buf_puts(&c->acks, ",");
            jd_buf_json_string(&c->acks, ev->client_id, strlen(ev->client_id));
            c->n_acks++;
            lws_callback_on_writable(c->wsi);
        } else {
            jd_proto_error err;
            jd_proto_error_set(&err, JD_ERR_STORE_REJECTED, ev->client_id,
                               "the database refused this frame; it was not stored");
            conn_send_error(c, &err);
        }
        conn_update_flow(net, c);
        break;
    case JD_EV_CATALOG:
        jd_catalog_free(&net->catalog);
        net->catalog = ev->ptr;
        break;
    case JD_EV_RESUME:
        unstall_in_turn(net);
        break;
    case JD_EV_HTTP:
        api_answered(net, ev->conn_id, ev->ptr);
        break;
    case JD_EV_DRAINED:
        jd_log_info("drain: committed; closing %zu connections with 1001", net->n_conns);
        net_set_state(net, JD_NET_CLOSING);
        break;
    case JD_EV_CHAT_REPLY:
        jd_chat_on_reply(net->chat, ev->ptr);
        break;
    case JD_EV_CHAT_NOTIFY:
        jd_chat_on_notify(net->chat, (jd_chat_channel)ev->conn_id, ev->client_id);
        break;
    case JD_EV_CHAT_RESYNC:
        jd_chat_on_resync(net->chat);
        break;
    case JD_EV_CHAT_TICK:
        jd_chat_on_tick(net->chat);
        break;
    }
}

static void on_cancelled(jd_net *net)
{
    pthread_mutex_lock(&net->update_lock);
    if (net->pending_config_set) {
        net->config = net->pending_config;
        net->pending_config_set = false;
        for (size_t i = 0; i < net->table_size; i++)
            for (jd_conn *c = net->table[i]; c; c = c->table_next)
                conn_update_flow(net, c);
    }
    if (net->pending_files) {
        jd_files_free(&net->files);
        net->files = net->pending_files;
        net->pending_files = NULL;
    }
    pthread_mutex_unlock(&net->update_lock);

    size_t n;
    bool unblocked;
    while ((n = jd_queue_pop(net->outbound, net->event_buf,
                             sizeof(net->event_buf) / sizeof(net->event_buf[0]), &unblocked)) > 0)
        for (size_t i = 0; i < n; i++)
            handle_event(net, &net->event_buf[i]);

    if (atomic_load(&net->drain_requested))
        begin_drain(net);
    drain_push(net);
    if (atomic_load(&net->abort_requested) && net->state != JD_NET_DONE) {
        /* Drain timed out: drop every socket now (state may already be CLOSING). */
        for (size_t i = 0; i < net->table_size; i++)
            for (jd_conn *c = net->table[i]; c; c = c->table_next)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        net_set_state(net, JD_NET_CLOSING);
    }
}

/* --- the lws callback ----------------------------------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    jd_net *net = ctx ? lws_context_user(ctx) : NULL;
    jd_pss *pss = user;
    if (!net)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        on_cancelled(net);
        return 0;
    case LWS_CALLBACK_HTTP:
        return http_request(net, wsi, pss, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(wsi, pss);
    case LWS_CALLBACK_HTTP_BODY:
        return api_body(pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return api_submit(net, wsi, pss);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss) {
            http_release(pss);
            api_release(net, pss);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(net, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return ws_established(net, wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        return pss->conn ? ws_receive(net, pss->conn, wsi, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? conn_writeable(pss->conn) : -1;
    case LWS_CALLBACK_CLOSED:
        ws_closed(net, pss);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(jd_pss), 0, 0, NULL, 0},
    /* 1 KiB receive buffer: frames are a few hundred bytes, longer ones arrive in fragments and
     * are reassembled, and every idle connection saves 3 KiB (bench/run.sh). */
    {JD_PROTO_SUBPROTOCOL, callback, sizeof(jd_pss), 1024, 0, NULL, 0},
    {JD_CHAT_AGENT_SUBPROTOCOL, callback, sizeof(jd_pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* --- thread --------------------------------------------------------------------------------- */

static void *service_thread(void *arg)
{
    jd_net *net = arg;
    while (net->state != JD_NET_DONE) {
        if (lws_service(net->context, 0) < 0)
            break;
        reap_closed(net);
        if (net->state == JD_NET_CLOSING && net->n_conns == 0)
            net_set_state(net, JD_NET_DONE);
    }
    net->hooks.finished(net->hooks.arg);
    return NULL;
}

static void lws_log_to_ours(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    jd_log(level & LLL_ERR ? JD_LOG_ERROR : JD_LOG_WARN, 0, NULL, "lws: %.*s", (int)n, line);
}

/* The chat module's way out: frames to connections, closes, calls to the chat store. */
static void chat_send(void *arg, uint64_t conn_id, const char *type, const char *frame, size_t len)
{
    jd_conn *c = conn_find(arg, conn_id);
    if (c)
        conn_send(c, type, frame, len);
}

static void chat_close(void *arg, uint64_t conn_id, int code, const char *reason)
{
    jd_conn *c = conn_find(arg, conn_id);
    if (c)
        conn_close(c, code, reason);
}

static bool chat_submit(void *arg, jd_record *rec)
{
    jd_net *net = arg;
    bool was_empty = false;
    if (jd_queue_push(net->chatq, &rec, 1, &was_empty) != 1)
        return false;
    if (was_empty)
        net->hooks.wake_chat(net->hooks.arg);
    return true;
}

bool jd_net_start(const jd_config *config, jd_files *files, jd_queue *inbound, jd_queue *api,
                  jd_queue *chat, jd_queue *outbound, const jd_net_hooks *hooks, jd_net **out,
                  char *err, size_t err_len)
{
    jd_net *net = calloc(1, sizeof(*net));
    if (!net) {
        snprintf(err, err_len, "out of memory");
        jd_files_free(&files);
        return false;
    }
    net->config = *config;
    net->files = files;
    net->inbound = inbound;
    net->api = api;
    net->chatq = chat;
    net->outbound = outbound;
    net->hooks = *hooks;
    net->table_size = 1024;
    net->table = calloc(net->table_size, sizeof(*net->table));
    pthread_mutex_init(&net->update_lock, NULL);
    jd_chat_io io = {.send = chat_send, .close = chat_close, .submit = chat_submit, .arg = net};
    if (!net->table || !jd_chat_create(&io, config->instance, &net->chat)) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    int port;
    if (!jd_config_listen_split(config->listen, net->iface, sizeof(net->iface), &port)) {
        snprintf(err, err_len, "listen: \"%s\" is not host:port", config->listen);
        goto fail;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_ours);
    net->retry.secs_since_valid_ping = (uint16_t)config->ping_interval;
    net->retry.secs_since_valid_hangup = (uint16_t)(config->ping_interval + 10);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    /* "*" and "0.0.0.0" mean every interface, which lws spells as no iface. */
    info.iface =
        (strcmp(net->iface, "*") == 0 || strcmp(net->iface, "0.0.0.0") == 0 || !net->iface[0])
            ? NULL
            : net->iface;
    info.protocols = protocols;
    info.user = net;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (config->tls_cert[0] || config->tls_key[0]) {
        if (!config->tls_cert[0] || !config->tls_key[0]) {
            snprintf(err, err_len, "TLS needs both tls_cert and tls_key");
            goto fail;
        }
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = config->tls_cert;
        info.ssl_private_key_filepath = config->tls_key;
        /* HTTP/1.1 only: WebSocket over h2 (RFC 8441) is not something browsers rely on. */
        info.alpn = "http/1.1";
        net->tls = true;
    }
    info.fd_limit_per_thread = (unsigned int)config->max_conns + 128;
    info.retry_and_idle_policy = &net->retry;
    info.timeout_secs = 30;
    info.max_http_header_pool = 256;
    net->context = lws_create_context(&info);
    if (!net->context) {
        snprintf(err, err_len, "cannot listen on %s (port in use, bad address%s?)", config->listen,
                 net->tls ? ", or unreadable TLS certificate/key" : "");
        goto fail;
    }
    if (pthread_create(&net->thread, NULL, service_thread, net) != 0) {
        snprintf(err, err_len, "cannot start the network thread");
        goto fail;
    }
    net->thread_started = true;
    *out = net;
    return true;
fail:
    jd_net_destroy(&net);
    return false;
}

void jd_net_wake(jd_net *net)
{
    lws_cancel_service(net->context);
}

void jd_net_drain(jd_net *net)
{
    atomic_store(&net->drain_requested, true);
    lws_cancel_service(net->context);
}

void jd_net_abort(jd_net *net)
{
    atomic_store(&net->abort_requested, true);
    lws_cancel_service(net->context);
}

void jd_net_update(jd_net *net, const jd_config *config, jd_files *files)
{
    pthread_mutex_lock(&net->update_lock);
    net->pending_config = *config;
    net->pending_config_set = true;
    if (files) {
        jd_files_free(&net->pending_files);
        net->pending_files = files;
    }
    pthread_mutex_unlock(&net->update_lock);
    lws_cancel_service(net->context);
}

void jd_net_destroy(jd_net **pnet)
{
    jd_net *net = *pnet;
    if (!net)
        return;
    if (net->thread_started) {
        pthread_join(net->thread, NULL);
        net->thread_started = false;
    }
    if (net->context) {
        lws_context_destroy(net->context);
        net->context = NULL;
    }
    reap_closed(net);
    for (size_t i = 0; net->table && i < net->table_size; i++) {
        jd_conn *c = net->table[i];
        while (c) {
            jd_conn *next = c->table_next;
            conn_free(net, c);
            c = next;
        }
    }
    free(net->table);
    for (size_t i = 0; i < sizeof(net->ips) / sizeof(net->ips[0]); i++) {
        while (net->ips[i]) {
            jd_ip_count *e = net->ips[i];
            net->ips[i] = e->next;
            free(e);
        }
    }
    jd_chat_destroy(&net->chat);
    jd_catalog_free(&net->catalog);
    jd_files_free(&net->files);
    jd_files_free(&net->pending_files);
    pthread_mutex_destroy(&net->update_lock);
    free(net);
    *pnet = NULL;
}
