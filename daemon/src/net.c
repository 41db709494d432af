/* libwebsockets service thread: the lws context, the journey.v1 and journey.agent.v1 WebSockets
 * and the events from the stores (HTTP is in net_http.c). Each WebSocket connection is a
 * jd_conn owned by this thread, found by id through a hash table so store events (which carry only
 * the id) never touch freed memory. Backpressure: a connection stops reading when its unacked
 * frames reach max_inflight or when the inbound queue is full (records then wait in the
 * connection, in order, and are retried on JD_EV_RESUME). Connections are freed only from the
 * service loop, never inside their own callback (closed ones are put on a reap list). */
#include "net_private.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static void conn_update_flow(jd_net *net, jd_conn *c);

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
        conn_update_flow(lws_context_user(lws_get_context(c->wsi)), c);
        return -1;
    }
    if (c->out_head || c->n_acks || c->state == JD_CONN_CLOSING)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* --- flow control ----------------------------------------------------------------------------- */

static void conn_update_flow(jd_net *net, jd_conn *c)
{
    /* Once the close is lws's, the peer's close reply must be read (data frames are dropped), or
     * every close during a drain would wait for lws's 5 s close-ack timeout. */
    bool close_sent = c->state == JD_CONN_CLOSE_SENT;
    bool want_pause = !close_sent && (net->state != JD_NET_SERVING || c->n_stalled > 0 ||
                                      c->inflight >= net->config.max_inflight);
    bool want_resume = close_sent || (net->state == JD_NET_SERVING && c->n_stalled == 0 &&
                                      c->inflight <= net->config.max_inflight / 2);
    if (!c->rx_paused && want_pause) {
        c->rx_paused = true;
        jd_metrics_rx_paused(1);
        lws_rx_flow_control(c->wsi, 0);
    } else if (c->rx_paused && want_resume && (c->state == JD_CONN_OPEN || close_sent)) {
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
        if (site && site->chat)
            jd_chat_visitor_hello(net->chat, c->id, site->id);
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
        /* Like the oversize close above: through the writeable path, never -1 mid-message. */
        jd_buf_free(&c->rx);
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return 0;
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
void jd_net_client_address(jd_net *net, struct lws *wsi, char *out, size_t out_len)
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

static int agent_filter(jd_net *net, struct lws *wsi, const char *uri, const char *peer)
{
    char token[160];
    if (strcmp(uri, "/agent/ws") != 0)
        return reject_upgrade(wsi, 404, "the agent console's WebSocket is /agent/ws", peer);
    if (!jd_net_same_origin(wsi))
        return reject_upgrade(wsi, 403, "origin not allowed for the agent console", peer);
    if (!jd_net_agent_cookie(wsi, token, sizeof(token)))
        return reject_upgrade(wsi, 403, "sign in first (POST /agent/login)", peer);
    return limit_upgrade(net, wsi, peer);
}

static int ws_filter(jd_net *net, struct lws *wsi)
{
    char peer[48] = "", site[72] = "", origin[512] = "", uri[64] = "";
    jd_net_client_address(net, wsi, peer, sizeof(peer));
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
    jd_net_client_address(net, wsi, peer, sizeof(peer));
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
        jd_net_agent_cookie(wsi, token, sizeof(token));
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
        jd_net_api_answered(net, ev->conn_id, ev->ptr);
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
        return jd_net_http_request(net, wsi, pss, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return jd_net_http_writeable(wsi, pss);
    case LWS_CALLBACK_HTTP_BODY:
        return jd_net_api_body(pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return jd_net_api_submit(net, wsi, pss);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss) {
            jd_net_http_release(pss);
            jd_net_api_release(net, pss);
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
