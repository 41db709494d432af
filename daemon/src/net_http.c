/* The network module's HTTP side (see net_private.h): static files with ETags, /healthz,
 * /metrics, the /api/v1 bridge to the admin API store, and the agent console's routes
 * (/agent/login, /agent/logout, /agent/me, /agent/transcript) answered by jd_agent_http() on the
 * chat store. Requests whose answer comes from the database are parked in net->api_pending and
 * resumed from JD_EV_HTTP inside their own wsi's WRITEABLE callback. */
#include "net_private.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The agent console's session cookie: __Host-jd_agent under TLS, jd_agent without. */
bool jd_net_agent_cookie(struct lws *wsi, char *out, size_t out_len)
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
bool jd_net_same_origin(struct lws *wsi)
{
    char origin[512] = "", host[256] = "";
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return true;
    if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
        return false;
    const char *o = strstr(origin, "://");
    return o && strcmp(o + 3, host) == 0;
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

int jd_net_http_writeable(struct lws *wsi, jd_pss *pss)
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

void jd_net_http_release(jd_pss *pss)
{
    if (pss->http.owned)
        free(pss->http.body);
    pss->http.body = NULL;
}

static int api_begin(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path);

static int agent_route(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path);

int jd_net_http_request(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path)
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

void jd_net_api_release(jd_net *net, jd_pss *pss)
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
int jd_net_api_submit(jd_net *net, struct lws *wsi, jd_pss *pss)
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
    jd_net_api_release(net, pss);
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
    return jd_net_api_submit(net, wsi, pss);
}

/* POST /agent/login, POST /agent/logout, GET /agent/me, GET /agent/transcript: the agent
 * console's routes, answered by jd_agent_http() on the chat store's connection. */
static int agent_route(jd_net *net, struct lws *wsi, jd_pss *pss, const char *path)
{
    static const char *const ops[][3] = {{"/agent/login", "login", "POST"},
                                         {"/agent/logout", "logout", "POST"},
                                         {"/agent/me", "me", "GET"},
                                         {"/agent/transcript", "transcript", "GET"}};
    jd_net_api_release(net, pss);
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
    if (post && !jd_net_same_origin(wsi))
        return api_error(wsi, pss, 403, "forbidden", "cross-site request refused");
    char cookie[160];
    if (jd_net_agent_cookie(wsi, cookie, sizeof(cookie)))
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
        return jd_net_api_submit(net, wsi, pss);
    if (strcmp(a->agent_op, "login") == 0) {
        char ip[48] = "";
        jd_net_client_address(net, wsi, ip, sizeof(ip));
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
    return jd_net_api_submit(net, wsi, pss); /* logout: no body */
}

int jd_net_api_body(jd_pss *pss, const void *in, size_t len)
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

void jd_net_api_answered(jd_net *net, uint64_t id, jd_http_response *response)
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
