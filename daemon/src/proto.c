/* Protocol v1: decodes a frame with jansson, checks it field by field against the spec and the
 * catalog, and produces the reply or the store record as compact JSON built with jd_buf (no
 * second JSON tree, no re-encoding of what the client sent except the raw answer value). Every
 * rejection names a stable code, the frame id and the field, so clients and tests can act on it. */
#include "proto.h"

#include "identity.h"
#include "redact.h"

#include <arpa/inet.h>
#include <time.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const error_names[JD_ERR_COUNT] = {
    "bad_json",         "bad_frame",          "unknown_type",
    "missing_field",    "bad_field",          "unsupported_version",
    "unknown_site",     "not_ready",          "duplicate_hello",
    "unknown_survey",   "unknown_question",   "unknown_persona",
    "unknown_stage",    "unknown_touchpoint", "unknown_obstacle",
    "out_of_range",     "consent_required",   "rate_limited",
    "store_rejected",   "shutting_down",      "frame_too_large",
    "bad_utf8",         "bad_identity",       "chat_forbidden",
    "chat_rate_limited"};

static const char *const msg_names[JD_MSG_COUNT] = {"hello", "answer", "touch",  "consent",
                                                    "ping",  "chat",   "invalid"};

const char *jd_proto_error_name(jd_error_code code)
{
    return code < JD_ERR_COUNT ? error_names[code] : "internal";
}

const char *jd_proto_msg_name(jd_msg_type type)
{
    return type < JD_MSG_COUNT ? msg_names[type] : "invalid";
}

void jd_proto_out_init(jd_proto_out *out)
{
    memset(out, 0, sizeof(*out));
    jd_buf_init(&out->reply);
    jd_buf_init(&out->record);
}

void jd_proto_out_free(jd_proto_out *out)
{
    jd_buf_free(&out->reply);
    jd_buf_free(&out->record);
    if (out->chat)
        json_decref((json_t *)out->chat);
    out->chat = NULL;
}

static void set_error(jd_proto_error *err, jd_error_code code, const char *id, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(jd_proto_error *err, jd_error_code code, const char *id, const char *field,
                      const char *fmt, ...)
{
    memset(err, 0, sizeof(*err));
    err->code = code;
    if (id)
        snprintf(err->id, sizeof(err->id), "%s", id);
    if (field)
        snprintf(err->field, sizeof(err->field), "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    /* A peer's text quoted with a byte limit ("%.32s") can end mid-character: cut back to the
     * last whole one, so the error frame stays valid UTF-8 (found by the fuzzer). */
    size_t len = strlen(err->message);
    while (len && !jd_utf8_text_valid(err->message, len))
        err->message[--len] = '\0';
}

void jd_proto_peek_id(const char *frame, size_t len, char id[JD_UUID_LEN + 1])
{
    id[0] = '\0';
    json_t *msg = json_loadb(frame, len, JSON_DECODE_ANY, NULL);
    const char *v = json_string_value(json_object_get(msg, "id"));
    if (v && jd_uuid_valid(v))
        snprintf(id, JD_UUID_LEN + 1, "%s", v);
    json_decref(msg);
}

void jd_proto_error_set(jd_proto_error *err, jd_error_code code, const char *id,
                        const char *message)
{
    set_error(err, code, id, NULL, "%s", message);
}

void jd_proto_encode_error(jd_buf *out, const jd_proto_error *err)
{
    jd_buf_puts(out, "{\"type\":\"error\",\"code\":\"");
    jd_buf_puts(out, jd_proto_error_name(err->code));
    jd_buf_puts(out, "\",\"message\":");
    jd_buf_json_string(out, err->message, strlen(err->message));
    if (err->id[0]) {
        jd_buf_puts(out, ",\"id\":");
        jd_buf_json_string(out, err->id, strlen(err->id));
    }
    if (err->field[0]) {
        jd_buf_puts(out, ",\"field\":");
        jd_buf_json_string(out, err->field, strlen(err->field));
    }
    if (err->code == JD_ERR_UNSUPPORTED_VERSION)
        jd_buf_puts(out, ",\"supported\":[1]");
    jd_buf_puts(out, "}");
}

static bool valid_slug(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > JD_SLUG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Reads an optional string field. Returns false (error set) when present but not a string or
 * longer than max characters. *out is NULL when absent or null. */
static bool opt_string(json_t *obj, const char *key, size_t max, const char *id, const char **out,
                       jd_proto_error *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        set_error(err, JD_ERR_BAD_FIELD, id, key, "%s must be a string", key);
        return false;
    }
    if (jd_utf8_length(json_string_value(v)) > max) {
        set_error(err, JD_ERR_OUT_OF_RANGE, id, key, "%s is longer than %zu characters", key, max);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool opt_slug(json_t *obj, const char *key, const char *id, const char **out,
                     jd_proto_error *err)
{
    if (!opt_string(obj, key, JD_SLUG_MAX, id, out, err))
        return false;
    if (*out && !valid_slug(*out)) {
        set_error(err, JD_ERR_BAD_FIELD, id, key,
                  "%s must be a slug (lower-case letters, digits, - and _)", key);
        return false;
    }
    return true;
}

static bool opt_int(json_t *obj, const char *key, int64_t lo, int64_t hi, const char *id,
                    bool *present, int64_t *out, jd_proto_error *err)
{
    json_t *v = json_object_get(obj, key);
    *present = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v)) {
        set_error(err, JD_ERR_BAD_FIELD, id, key, "%s must be an integer", key);
        return false;
    }
    *out = json_integer_value(v);
    if (*out < lo || *out > hi) {
        set_error(err, JD_ERR_OUT_OF_RANGE, id, key, "%s %lld is outside %lld..%lld", key,
                  (long long)*out, (long long)lo, (long long)hi);
        return false;
    }
    *present = true;
    return true;
}

static void put_key(jd_buf *b, const char *key)
{
    jd_buf_puts(b, ",\"");
    jd_buf_puts(b, key);
    jd_buf_puts(b, "\":");
}

static void put_str(jd_buf *b, const char *key, const char *value)
{
    put_key(b, key);
    if (value)
        jd_buf_json_string(b, value, strlen(value));
    else
        jd_buf_puts(b, "null");
}

static void put_id(jd_buf *b, const char *key, int64_t value)
{
    put_key(b, key);
    if (value)
        jd_buf_printf(b, "%lld", (long long)value);
    else
        jd_buf_puts(b, "null");
}

/* Opens a session record: the fields a hello and a consent upsert share. */
static void put_session_head(jd_buf *b, const jd_proto_session *s)
{
    jd_buf_printf(b, "{\"id\":\"%s\",\"site_id\":%lld", s->session_id, (long long)s->site_id);
    put_str(b, "respondent_id", s->respondent_id);
    put_str(b, "consent_mode", jd_catalog_consent_name(s->consent_mode));
    put_key(b, "consent");
    jd_buf_puts(b, s->consent ? "true" : "false");
}

/* Resolves a slug (from the frame, else the session hint) in a map. 0 with no slug. */
static bool resolve(const jd_catalog_map *map, jd_slug_kind kind, const char *slug,
                    const char *hint, const char *id, const char *field, int64_t *out,
                    jd_proto_error *err)
{
    static const jd_error_code codes[JD_SLUG_KIND_COUNT] = {
        JD_ERR_UNKNOWN_PERSONA, JD_ERR_UNKNOWN_STAGE, JD_ERR_UNKNOWN_TOUCHPOINT,
        JD_ERR_UNKNOWN_OBSTACLE};
    const char *use = slug ? slug : (hint && hint[0] ? hint : NULL);
    *out = 0;
    if (!use)
        return true;
    *out = jd_catalog_slug(map, kind, use);
    if (*out == 0) {
        set_error(err, codes[kind], id, field, "%s \"%s\" is not in this journey map", field, use);
        return false;
    }
    return true;
}

bool jd_proto_truncate_ip(const char *ip, char *out, size_t out_len)
{
    unsigned char addr[16];
    if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.'))
        ip += 7;
    if (inet_pton(AF_INET, ip, addr) == 1) {
        addr[3] = 0;
        return inet_ntop(AF_INET, addr, out, (socklen_t)out_len) != NULL;
    }
    if (inet_pton(AF_INET6, ip, addr) == 1) {
        memset(addr + 6, 0, 10);
        return inet_ntop(AF_INET6, addr, out, (socklen_t)out_len) != NULL;
    }
    return false;
}

/* Redacts text into scratch when the site asks for it at ingest; returns what to store. */
static const char *maybe_redact(const jd_catalog_site *site, const char *text, jd_buf *scratch)
{
    if (!text || site->redact != JD_REDACT_INGEST)
        return text;
    jd_buf_reset(scratch);
    jd_redact(text, strlen(text), scratch);
    jd_buf_append(scratch, "", 0);
    return scratch->data ? scratch->data : "";
}

/* The first rule of each kind that matches and names a slug of this map wins; a hint the
 * client sent itself is never overridden (callers only use these when theirs is NULL). */
static void keep_first(const jd_catalog_map *map, jd_slug_kind kind, const char *slug,
                       const char **out)
{
    if (!*out && slug && jd_catalog_slug(map, kind, slug))
        *out = slug;
}

static bool utm_matches(json_t *match, json_t *utm)
{
    const char *key;
    json_t *want;
    if (!json_object_size(match))
        return false;
    json_object_foreach(match, key, want)
    {
        const char *have = json_string_value(json_object_get(utm, key));
        if (!have || !json_is_string(want) || strcasecmp(have, json_string_value(want)) != 0)
            return false;
    }
    return true;
}

static bool attribute_matches(json_t *match, json_t *attributes)
{
    const char *name = json_string_value(json_object_get(match, "attribute"));
    json_t *want = json_object_get(match, "value"),
           *have = name ? json_object_get(attributes, name) : NULL;
    if (!have || !want)
        return false;
    if (json_equal(have, want))
        return true;
    /* Host pages pass attributes as they have them: "3" and 3 are the same answer. */
    char a[64], b[64];
    const char *ha = json_is_string(have) ? json_string_value(have) : NULL;
    const char *wb = json_is_string(want) ? json_string_value(want) : NULL;
    if (!ha && json_is_integer(have)) {
        snprintf(a, sizeof(a), "%lld", (long long)json_integer_value(have));
        ha = a;
    }
    if (!wb && json_is_integer(want)) {
        snprintf(b, sizeof(b), "%lld", (long long)json_integer_value(want));
        wb = b;
    }
    return ha && wb && strcmp(ha, wb) == 0;
}

/* Applies the site's url, referrer, utm and persona-attribute rules to a page context. */
static void apply_page_rules(const jd_catalog_site *site, const jd_catalog_map *map,
                             const char *url, const char *referrer, json_t *utm, json_t *attributes,
                             const char **stage, const char **touchpoint, const char **persona)
{
    for (size_t i = 0; map && i < site->n_rules; i++) {
        const jd_catalog_rule *r = &site->rules[i];
        switch (r->kind) {
        case JD_RULE_URL:
            if (jd_catalog_rule_matches_text(r, url)) {
                keep_first(map, JD_SLUG_STAGE, r->stage, stage);
                keep_first(map, JD_SLUG_TOUCHPOINT, r->touchpoint, touchpoint);
            }
            break;
        case JD_RULE_REFERRER:
            if (referrer && referrer[0] && jd_catalog_rule_matches_text(r, referrer))
                keep_first(map, JD_SLUG_TOUCHPOINT, r->touchpoint, touchpoint);
            break;
        case JD_RULE_UTM:
            if (utm_matches(r->match, utm))
                keep_first(map, JD_SLUG_TOUCHPOINT, r->touchpoint, touchpoint);
            break;
        case JD_RULE_PERSONA_ATTRIBUTE:
            if (persona && attribute_matches(r->match, attributes))
                keep_first(map, JD_SLUG_PERSONA, r->persona, persona);
            break;
        case JD_RULE_SCREENER:
            break;
        }
    }
}

static bool handle_hello(const jd_catalog *catalog, const char *site_key, jd_proto_session *s,
                         json_t *msg, const char *id, jd_proto_out *out, jd_proto_error *err)
{
    if (s->hello_done) {
        set_error(err, JD_ERR_DUPLICATE_HELLO, id, NULL, "hello was already received");
        return false;
    }
    json_t *v = json_object_get(msg, "v");
    if (!v) {
        set_error(err, JD_ERR_MISSING_FIELD, id, "v", "hello needs the protocol version v");
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) != JD_PROTO_VERSION) {
        set_error(err, JD_ERR_UNSUPPORTED_VERSION, id, "v",
                  "protocol version not supported; this server speaks version 1");
        err->close_code = 1002;
        return false;
    }
    const char *site;
    if (!opt_string(msg, "site", 64, id, &site, err))
        return false;
    if (!site) {
        set_error(err, JD_ERR_MISSING_FIELD, id, "site", "hello needs the site key");
        return false;
    }
    const jd_catalog_site *cs = jd_catalog_site_by_key(catalog, site);
    if (!cs || !site_key || strcmp(site, site_key) != 0) {
        set_error(err, JD_ERR_UNKNOWN_SITE, id, "site",
                  "site key does not match the key this connection was opened for");
        err->close_code = 1008;
        return false;
    }
    const char *respondent, *persona, *stage, *touchpoint;
    if (!opt_string(msg, "respondent", JD_UUID_LEN, id, &respondent, err))
        return false;
    if (respondent && !jd_uuid_valid(respondent)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "respondent", "respondent must be a UUID");
        return false;
    }
    if (!opt_slug(msg, "persona", id, &persona, err) || !opt_slug(msg, "stage", id, &stage, err) ||
        !opt_slug(msg, "touchpoint", id, &touchpoint, err))
        return false;
    const char *identity, *subject;
    if (!opt_string(msg, "identity", 4096, id, &identity, err) ||
        !opt_string(msg, "subject", 128, id, &subject, err))
        return false;
    jd_identity verified_identity;
    if (identity) {
        jd_identity_result r = jd_identity_verify(identity, cs->identity_secret,
                                                  (int64_t)time(NULL), &verified_identity);
        if (r != JD_IDENTITY_OK) {
            set_error(err, JD_ERR_BAD_IDENTITY, id, "identity", "%s", jd_identity_reason(r));
            return false;
        }
    }
    json_t *consent = json_object_get(msg, "consent");
    if (consent && !json_is_boolean(consent) && !json_is_null(consent)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "consent", "consent must be true or false");
        return false;
    }
    json_t *page = json_object_get(msg, "page");
    if (page && !json_is_object(page) && !json_is_null(page)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "page", "page must be an object");
        return false;
    }
    const char *url = NULL, *referrer = NULL, *lang = NULL;
    json_t *utm = page ? json_object_get(page, "utm") : NULL;
    if (page && (!opt_string(page, "url", 2048, id, &url, err) ||
                 !opt_string(page, "referrer", 2048, id, &referrer, err) ||
                 !opt_string(page, "lang", 35, id, &lang, err)))
        return false;
    if (utm && !json_is_object(utm) && !json_is_null(utm)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "utm", "page.utm must be an object");
        return false;
    }

    json_t *attributes = json_object_get(msg, "attributes");
    if (attributes && !json_is_object(attributes) && !json_is_null(attributes)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "attributes", "attributes must be an object");
        return false;
    }
    const jd_catalog_map *map = cs->n_maps ? &cs->maps[0] : NULL;
    /* The client's own hints are checked as sent; the site's tagging rules fill in the rest. */
    int64_t persona_id, stage_id, touchpoint_id;
    if (!resolve(map, JD_SLUG_PERSONA, persona, NULL, id, "persona", &persona_id, err) ||
        !resolve(map, JD_SLUG_STAGE, stage, NULL, id, "stage", &stage_id, err) ||
        !resolve(map, JD_SLUG_TOUCHPOINT, touchpoint, NULL, id, "touchpoint", &touchpoint_id, err))
        return false;
    apply_page_rules(cs, map, url, referrer, utm, attributes, &stage, &touchpoint, &persona);
    if (!resolve(map, JD_SLUG_PERSONA, persona, NULL, id, "persona", &persona_id, err) ||
        !resolve(map, JD_SLUG_STAGE, stage, NULL, id, "stage", &stage_id, err) ||
        !resolve(map, JD_SLUG_TOUCHPOINT, touchpoint, NULL, id, "touchpoint", &touchpoint_id, err))
        return false;

    /* All checks passed: only now change the session. */
    s->hello_done = true;
    s->site_id = cs->id;
    s->default_map_id = map ? map->id : 0;
    s->consent_mode = cs->consent_mode;
    s->consent = json_is_true(consent);
    jd_uuid_generate(s->session_id);
    if (cs->consent_mode == JD_CONSENT_COOKIELESS || !respondent)
        memcpy(s->respondent_id, s->session_id, sizeof(s->respondent_id));
    else
        snprintf(s->respondent_id, sizeof(s->respondent_id), "%s", respondent);
    snprintf(s->persona, sizeof(s->persona), "%s", persona ? persona : "");
    snprintf(s->stage, sizeof(s->stage), "%s", stage ? stage : "");
    snprintf(s->touchpoint, sizeof(s->touchpoint), "%s", touchpoint ? touchpoint : "");

    bool collect = cs->consent_mode != JD_CONSENT_OPT_IN || s->consent;
    jd_buf *r = &out->reply;
    jd_buf_puts(r, "{\"type\":\"welcome\",\"re\":");
    jd_buf_json_string(r, id, strlen(id));
    jd_buf_printf(r, ",\"v\":1,\"session\":\"%s\",\"respondent\":\"%s\",\"config\":{",
                  s->session_id, s->respondent_id);
    jd_buf_printf(r,
                  "\"consent_mode\":\"%s\",\"collect\":%s,\"max_frame\":%d,"
                  "\"rate\":{\"per_sec\":%d,\"burst\":%d}},\"chat\":{\"enabled\":%s}}",
                  jd_catalog_consent_name(cs->consent_mode), collect ? "true" : "false",
                  s->max_frame, s->rate_per_sec, s->rate_burst, cs->chat ? "true" : "false");
    out->send_surveys = true;

    if (collect) {
        jd_buf *b = &out->record;
        out->record_kind = JD_REC_SESSION;
        put_session_head(b, s);
        put_str(b, "url", url ? url : "");
        put_str(b, "referrer", referrer ? referrer : "");
        put_str(b, "lang", lang ? lang : "");
        put_key(b, "utm");
        jd_buf_puts(b, "{");
        const char *k;
        json_t *uv;
        bool first = true;
        json_object_foreach(utm, k, uv)
        {
            /* Only the five standard parameters, as short strings. */
            if (!json_is_string(uv) || jd_utf8_length(json_string_value(uv)) > 200 ||
                (strcmp(k, "source") && strcmp(k, "medium") && strcmp(k, "campaign") &&
                 strcmp(k, "term") && strcmp(k, "content")))
                continue;
            if (!first)
                jd_buf_puts(b, ",");
            first = false;
            jd_buf_json_string(b, k, strlen(k));
            jd_buf_puts(b, ":");
            jd_buf_json_string(b, json_string_value(uv), strlen(json_string_value(uv)));
        }
        jd_buf_puts(b, "}");
        put_id(b, "persona_id", persona_id);
        put_id(b, "stage_id", stage_id);
        put_id(b, "touchpoint_id", touchpoint_id);
        /* A signed identity is verified; a bare subject is kept, but apart, as unverified. */
        put_str(b, "subject", identity ? verified_identity.subject : subject);
        put_key(b, "verified");
        jd_buf_puts(b, identity ? "true" : "false");
        char truncated[64];
        put_str(b, "client_ip",
                cs->store_ip && s->client_ip[0] &&
                        jd_proto_truncate_ip(s->client_ip, truncated, sizeof(truncated))
                    ? truncated
                    : NULL);
        jd_buf_puts(b, "}");
    }
    return true;
}

static bool option_allowed(const jd_catalog_question *q, const char *value)
{
    size_t i;
    json_t *opt;
    json_array_foreach(q->options, i, opt)
    {
        const char *v = json_is_object(opt) ? json_string_value(json_object_get(opt, "value"))
                                            : json_string_value(opt);
        if (v && strcmp(v, value) == 0)
            return true;
    }
    return false;
}

/* Appends "obstacle_ids":[..] resolving slugs; fails on unknown ones. */
static bool put_obstacles(jd_buf *b, const jd_catalog_map *map, json_t *list, const char *id,
                          const char *field, jd_proto_error *err)
{
    put_key(b, "obstacle_ids");
    jd_buf_puts(b, "[");
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (!json_is_string(item)) {
            set_error(err, JD_ERR_BAD_FIELD, id, field, "%s must be an array of slugs", field);
            return false;
        }
        int64_t oid = jd_catalog_slug(map, JD_SLUG_OBSTACLE, json_string_value(item));
        if (!oid) {
            set_error(err, JD_ERR_UNKNOWN_OBSTACLE, id, field,
                      "obstacle \"%.64s\" is not in this map's codebook", json_string_value(item));
            return false;
        }
        jd_buf_printf(b, "%s%lld", i ? "," : "", (long long)oid);
    }
    jd_buf_puts(b, "]");
    return true;
}

static bool need_consent(const jd_proto_session *s, const char *id, jd_proto_error *err)
{
    if (s->consent_mode == JD_CONSENT_OPT_IN && !s->consent) {
        set_error(err, JD_ERR_CONSENT_REQUIRED, id, NULL,
                  "this site stores nothing until the visitor consents");
        return false;
    }
    return true;
}

static bool handle_answer(const jd_catalog *catalog, jd_proto_session *s, json_t *msg,
                          const char *id, jd_proto_out *out, jd_proto_error *err)
{
    if (!need_consent(s, id, err))
        return false;
    const jd_catalog_site *site = jd_catalog_site_by_id(catalog, s->site_id);
    if (!site) {
        set_error(err, JD_ERR_UNKNOWN_SITE, id, NULL, "this site no longer exists");
        return false;
    }
    bool has_survey, has_question, has_emotion;
    int64_t survey_id = 0, question_id = 0, emotion = 0;
    if (!opt_int(msg, "survey", 1, INT64_MAX, id, &has_survey, &survey_id, err) ||
        !opt_int(msg, "question", 1, INT64_MAX, id, &has_question, &question_id, err))
        return false;
    if (!has_survey || !has_question) {
        set_error(err, JD_ERR_MISSING_FIELD, id, has_survey ? "question" : "survey",
                  "answer needs survey and question ids");
        return false;
    }
    const jd_catalog_question *q = jd_catalog_question_find(site, survey_id, question_id);
    if (!q) {
        set_error(err, JD_ERR_UNKNOWN_QUESTION, id, "question",
                  "question %lld is not a live question of survey %lld", (long long)question_id,
                  (long long)survey_id);
        return false;
    }
    const jd_catalog_map *map = jd_catalog_map_find(site, q->map_id);
    const char *persona, *stage, *touchpoint, *text, *ts;
    if (!opt_slug(msg, "persona", id, &persona, err) || !opt_slug(msg, "stage", id, &stage, err) ||
        !opt_slug(msg, "touchpoint", id, &touchpoint, err) ||
        !opt_string(msg, "text", JD_PROTO_MAX_TEXT, id, &text, err) ||
        !opt_string(msg, "ts", 40, id, &ts, err) ||
        !opt_int(msg, "emotion", 1, 5, id, &has_emotion, &emotion, err))
        return false;
    if (ts && !jd_timestamp_valid(ts)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "ts", "ts must be an RFC 3339 timestamp");
        return false;
    }
    json_t *obstacles = json_object_get(msg, "obstacles");
    if (obstacles && !json_is_array(obstacles) && !json_is_null(obstacles)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "obstacles", "obstacles must be an array of slugs");
        return false;
    }
    /* A screener rule turns this answer into the session's persona (from now on). */
    json_t *answer_value = json_object_get(msg, "value");
    for (size_t i = 0; map && answer_value && i < site->n_rules; i++) {
        const jd_catalog_rule *r = &site->rules[i];
        if (r->kind != JD_RULE_SCREENER || r->question_id != question_id || !r->persona ||
            !jd_catalog_slug(map, JD_SLUG_PERSONA, r->persona))
            continue;
        json_t *eq = json_object_get(r->match, "equals"), *in = json_object_get(r->match, "in");
        bool hit = eq && json_equal(eq, answer_value);
        size_t k;
        json_t *item;
        json_array_foreach(in, k, item)
        {
            hit = hit || json_equal(item, answer_value);
        }
        if (hit) {
            snprintf(s->persona, sizeof(s->persona), "%s", r->persona);
            break;
        }
    }
    /* Every slug the frame names must exist, even where the question's own stage and touchpoint
     * win: a typo is reported, not silently ignored. */
    int64_t persona_id, stage_id, touchpoint_id;
    if (!resolve(map, JD_SLUG_PERSONA, persona, s->persona, id, "persona", &persona_id, err) ||
        !resolve(map, JD_SLUG_STAGE, stage, s->stage, id, "stage", &stage_id, err) ||
        !resolve(map, JD_SLUG_TOUCHPOINT, touchpoint, s->touchpoint, id, "touchpoint",
                 &touchpoint_id, err))
        return false;
    if (q->stage_id)
        stage_id = q->stage_id;
    if (q->touchpoint_id)
        touchpoint_id = q->touchpoint_id;

    json_t *value = json_object_get(msg, "value");
    jd_buf *b = &out->record;
    out->record_kind = JD_REC_ANSWER;
    out->record_acked = true;
    jd_buf_printf(b, "{\"site_id\":%lld,\"map_id\":%lld,\"client_id\":\"%s\"", (long long)site->id,
                  (long long)q->map_id, id);
    jd_buf_printf(b, ",\"survey_id\":%lld,\"question_id\":%lld", (long long)survey_id,
                  (long long)question_id);
    put_str(b, "session_id", s->session_id);
    put_str(b, "respondent_id", s->respondent_id);
    put_id(b, "persona_id", persona_id);
    put_id(b, "stage_id", stage_id);
    put_id(b, "touchpoint_id", touchpoint_id);

    /* The value, by question kind. */
    const char *thought = text, *action = NULL;
    int64_t score = -1;
    int goal = -1;
    json_t *choices = NULL;
    switch (q->kind) {
    case JD_Q_EMOTION:
    case JD_Q_NPS:
    case JD_Q_CSAT: {
        int64_t lo = q->kind == JD_Q_NPS ? 0 : 1, hi = q->kind == JD_Q_NPS ? 10 : 5;
        if (!json_is_integer(value)) {
            set_error(err, value ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "value",
                      "value must be an integer %lld..%lld", (long long)lo, (long long)hi);
            return false;
        }
        int64_t n = json_integer_value(value);
        if (n < lo || n > hi) {
            set_error(err, JD_ERR_OUT_OF_RANGE, id, "value",
                      "value %lld is outside %lld..%lld for question %lld", (long long)n,
                      (long long)lo, (long long)hi, (long long)question_id);
            return false;
        }
        if (q->kind == JD_Q_EMOTION) {
            emotion = n;
            has_emotion = true;
        } else {
            score = n;
        }
        break;
    }
    case JD_Q_SINGLE_CHOICE:
        if (!json_is_string(value)) {
            set_error(err, value ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "value",
                      "value must be one of the question's options");
            return false;
        }
        if (!option_allowed(q, json_string_value(value))) {
            set_error(err, JD_ERR_OUT_OF_RANGE, id, "value", "\"%.64s\" is not an option",
                      json_string_value(value));
            return false;
        }
        choices = value;
        break;
    case JD_Q_MULTI_CHOICE: {
        if (!json_is_array(value)) {
            set_error(err, value ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "value",
                      "value must be an array of options");
            return false;
        }
        size_t i, j;
        json_t *item, *other;
        json_array_foreach(value, i, item)
        {
            if (!json_is_string(item) || !option_allowed(q, json_string_value(item))) {
                set_error(err, JD_ERR_OUT_OF_RANGE, id, "value",
                          "item %zu of value is not an option", i);
                return false;
            }
            json_array_foreach(value, j, other)
            {
                if (j < i && json_equal(item, other)) {
                    set_error(err, JD_ERR_BAD_FIELD, id, "value", "options must be distinct");
                    return false;
                }
            }
        }
        choices = value;
        break;
    }
    case JD_Q_OBSTACLE:
        if (!json_is_array(value)) {
            set_error(err, value ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "value",
                      "value must be an array of obstacle slugs");
            return false;
        }
        if (obstacles && json_is_array(obstacles)) {
            set_error(err, JD_ERR_BAD_FIELD, id, "obstacles",
                      "an obstacle question carries its obstacles in value");
            return false;
        }
        obstacles = value;
        break;
    case JD_Q_TEXT:
    case JD_Q_ACTION: {
        const char *t = json_string_value(value);
        if (value && !json_is_string(value)) {
            set_error(err, JD_ERR_BAD_FIELD, id, "value", "value must be text");
            return false;
        }
        if (!t)
            t = text;
        if (!t) {
            set_error(err, JD_ERR_MISSING_FIELD, id, "value", "value must be non-empty text");
            return false;
        }
        if (!t[0]) {
            set_error(err, JD_ERR_OUT_OF_RANGE, id, "value", "text must not be empty");
            return false;
        }
        if (jd_utf8_length(t) > JD_PROTO_MAX_TEXT) {
            set_error(err, JD_ERR_OUT_OF_RANGE, id, "value", "text is longer than %d characters",
                      JD_PROTO_MAX_TEXT);
            return false;
        }
        if (q->kind == JD_Q_TEXT) {
            thought = t;
        } else {
            action = t;
            thought = text && t != text ? text : NULL;
        }
        break;
    }
    case JD_Q_GOAL:
        if (!json_is_boolean(value)) {
            set_error(err, value ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "value",
                      "value must be true or false");
            return false;
        }
        goal = json_is_true(value);
        break;
    default:
        set_error(err, JD_ERR_UNKNOWN_QUESTION, id, "question", "question kind not supported");
        return false;
    }

    put_key(b, "emotion");
    if (has_emotion)
        jd_buf_printf(b, "%lld", (long long)emotion);
    else
        jd_buf_puts(b, "null");
    put_key(b, "score");
    if (score >= 0)
        jd_buf_printf(b, "%lld", (long long)score);
    else
        jd_buf_puts(b, "null");
    put_key(b, "goal_reached");
    jd_buf_puts(b, goal < 0 ? "null" : goal ? "true" : "false");
    if (obstacles && json_is_array(obstacles)) {
        if (!put_obstacles(b, map, obstacles, id, q->kind == JD_Q_OBSTACLE ? "value" : "obstacles",
                           err))
            return false;
    } else {
        put_key(b, "obstacle_ids");
        jd_buf_puts(b, "[]");
    }
    put_key(b, "choice");
    if (json_is_string(choices)) {
        jd_buf_puts(b, "[");
        jd_buf_json_string(b, json_string_value(choices), strlen(json_string_value(choices)));
        jd_buf_puts(b, "]");
    } else if (json_is_array(choices)) {
        size_t i;
        json_t *item;
        jd_buf_puts(b, "[");
        json_array_foreach(choices, i, item)
        {
            if (i)
                jd_buf_puts(b, ",");
            jd_buf_json_string(b, json_string_value(item), strlen(json_string_value(item)));
        }
        jd_buf_puts(b, "]");
    } else {
        jd_buf_puts(b, "null");
    }
    jd_buf scratch;
    jd_buf_init(&scratch);
    put_str(b, "thought", maybe_redact(site, thought, &scratch));
    put_str(b, "action", maybe_redact(site, action, &scratch));
    jd_buf_free(&scratch);
    put_key(b, "value");
    if (json_is_string(value) && site->redact == JD_REDACT_INGEST) {
        /* The raw value must not keep what the redacted columns mask. */
        jd_buf red;
        jd_buf_init(&red);
        jd_redact(json_string_value(value), strlen(json_string_value(value)), &red);
        jd_buf_json_string(b, red.data ? red.data : "", red.len);
        jd_buf_free(&red);
    } else if (value) {
        char *raw = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        jd_buf_puts(b, raw ? raw : "null");
        free(raw);
    } else {
        jd_buf_puts(b, "null");
    }
    put_str(b, "client_ts", ts);
    jd_buf_puts(b, "}");
    return true;
}

static bool handle_touch(const jd_catalog *catalog, jd_proto_session *s, json_t *msg,
                         const char *id, jd_proto_out *out, jd_proto_error *err)
{
    if (!need_consent(s, id, err))
        return false;
    const jd_catalog_site *site = jd_catalog_site_by_id(catalog, s->site_id);
    const jd_catalog_map *map = site ? jd_catalog_map_find(site, s->default_map_id) : NULL;
    const char *kind, *name, *url, *stage, *touchpoint, *ts;
    if (!opt_string(msg, "kind", 16, id, &kind, err) ||
        !opt_string(msg, "name", 200, id, &name, err) ||
        !opt_string(msg, "url", 2048, id, &url, err) || !opt_slug(msg, "stage", id, &stage, err) ||
        !opt_slug(msg, "touchpoint", id, &touchpoint, err) ||
        !opt_string(msg, "ts", 40, id, &ts, err))
        return false;
    if (!kind) {
        set_error(err, JD_ERR_MISSING_FIELD, id, "kind", "touch needs kind pageview or event");
        return false;
    }
    if (strcmp(kind, "pageview") != 0 && strcmp(kind, "event") != 0) {
        set_error(err, JD_ERR_BAD_FIELD, id, "kind", "kind must be pageview or event");
        return false;
    }
    if (strcmp(kind, "event") == 0 && (!name || !name[0])) {
        set_error(err, JD_ERR_MISSING_FIELD, id, "name", "an event touch needs a name");
        return false;
    }
    if (ts && !jd_timestamp_valid(ts)) {
        set_error(err, JD_ERR_BAD_FIELD, id, "ts", "ts must be an RFC 3339 timestamp");
        return false;
    }
    if (!stage && !touchpoint && site && strcmp(kind, "pageview") == 0) {
        /* A page view the site's URL rules place in the journey moves the visitor along: the
         * session's hints follow, so later answers and touches carry the new stage. */
        const char *rs = NULL, *rt = NULL;
        apply_page_rules(site, map, url, NULL, NULL, NULL, &rs, &rt, NULL);
        stage = rs;
        touchpoint = rt;
        if (rs)
            snprintf(s->stage, sizeof(s->stage), "%s", rs);
        if (rt)
            snprintf(s->touchpoint, sizeof(s->touchpoint), "%s", rt);
    }
    int64_t stage_id = 0, touchpoint_id = 0;
    if ((stage || touchpoint) && !map) {
        set_error(err, JD_ERR_UNKNOWN_STAGE, id, stage ? "stage" : "touchpoint",
                  "this site has no journey map");
        return false;
    }
    if (!resolve(map, JD_SLUG_STAGE, stage, NULL, id, "stage", &stage_id, err) ||
        !resolve(map, JD_SLUG_TOUCHPOINT, touchpoint, NULL, id, "touchpoint", &touchpoint_id, err))
        return false;
    jd_buf *b = &out->record;
    out->record_kind = JD_REC_TOUCH;
    out->record_acked = true;
    jd_buf_printf(b, "{\"site_id\":%lld,\"client_id\":\"%s\"", (long long)s->site_id, id);
    put_str(b, "session_id", s->session_id);
    put_str(b, "respondent_id", s->respondent_id);
    put_str(b, "kind", kind);
    put_str(b, "name", name ? name : "");
    put_str(b, "url", url ? url : "");
    put_id(b, "stage_id", stage_id);
    put_id(b, "touchpoint_id", touchpoint_id);
    put_str(b, "client_ts", ts);
    jd_buf_puts(b, "}");
    return true;
}

static bool handle_consent(jd_proto_session *s, json_t *msg, const char *id, jd_proto_out *out,
                           jd_proto_error *err)
{
    json_t *consent = json_object_get(msg, "consent");
    if (!json_is_boolean(consent)) {
        set_error(err, consent ? JD_ERR_BAD_FIELD : JD_ERR_MISSING_FIELD, id, "consent",
                  "consent must be true or false");
        return false;
    }
    s->consent = json_is_true(consent);
    /* Upsert the session so its consent state is recorded; the commit acks the frame. */
    jd_buf *b = &out->record;
    out->record_kind = JD_REC_SESSION;
    out->record_acked = true;
    put_session_head(b, s);
    jd_buf_puts(b, ",\"url\":\"\",\"referrer\":\"\",\"lang\":\"\",\"utm\":{},"
                   "\"persona_id\":null,\"stage_id\":null,\"touchpoint_id\":null}");
    return true;
}

bool jd_proto_handle(const jd_catalog *catalog, const char *site_key, jd_proto_session *session,
                     const char *frame, size_t len, jd_proto_out *out, jd_proto_error *err)
{
    json_error_t jerr;
    bool ok = false;
    json_t *msg = json_loadb(frame, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    out->type = JD_MSG_INVALID;
    if (!msg) {
        set_error(err, JD_ERR_BAD_JSON, NULL, NULL, "frame is not valid JSON: %s at position %d",
                  jerr.text, jerr.position);
        return false;
    }
    if (!json_is_object(msg)) {
        set_error(err, JD_ERR_BAD_FRAME, NULL, NULL, "frame must be a JSON object");
        goto done;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_t *jid = json_object_get(msg, "id");
    const char *id = json_string_value(jid);
    /* Echo the id in errors only when it is a well-formed one. */
    const char *safe_id = id && jd_uuid_valid(id) ? id : NULL;
    if (!type) {
        set_error(err, JD_ERR_BAD_FRAME, safe_id, "type", "frame needs a string type");
        goto done;
    }
    jd_msg_type t = JD_MSG_INVALID;
    for (int i = 0; i < JD_MSG_INVALID; i++)
        if (strcmp(type, msg_names[i]) == 0)
            t = (jd_msg_type)i;
    /* Every chat.* type goes to the chat module, which knows them; "chat" alone is unknown. */
    if (t == JD_MSG_CHAT || (strncmp(type, "chat.", 5) == 0 && type[5]))
        t = strcmp(type, "chat") == 0 ? JD_MSG_INVALID : JD_MSG_CHAT;
    if (t == JD_MSG_INVALID) {
        set_error(err, JD_ERR_UNKNOWN_TYPE, safe_id, "type", "unknown type \"%.32s\"", type);
        goto done;
    }
    if (!jid) {
        set_error(err, JD_ERR_MISSING_FIELD, NULL, "id", "every %s needs a client id", type);
        goto done;
    }
    if (!safe_id) {
        set_error(err, JD_ERR_BAD_FIELD, NULL, "id", "id must be a UUID");
        goto done;
    }
    if (t == JD_MSG_PING) {
        out->type = t;
        snprintf(out->id, sizeof(out->id), "%s", safe_id);
        jd_buf_printf(&out->reply, "{\"type\":\"pong\",\"re\":\"%s\"}", safe_id);
        ok = true;
        goto done;
    }
    if (!catalog) {
        set_error(err, JD_ERR_NOT_READY, safe_id, NULL, "the server is still starting; retry");
        goto done;
    }
    if (t != JD_MSG_HELLO && !session->hello_done) {
        set_error(err, JD_ERR_NOT_READY, safe_id, NULL, "send hello first");
        goto done;
    }
    out->type = t;
    snprintf(out->id, sizeof(out->id), "%s", safe_id);
    switch (t) {
    case JD_MSG_HELLO:
        ok = handle_hello(catalog, site_key, session, msg, safe_id, out, err);
        break;
    case JD_MSG_ANSWER:
        ok = handle_answer(catalog, session, msg, safe_id, out, err);
        break;
    case JD_MSG_TOUCH:
        ok = handle_touch(catalog, session, msg, safe_id, out, err);
        break;
    case JD_MSG_CONSENT:
        ok = handle_consent(session, msg, safe_id, out, err);
        break;
    case JD_MSG_CHAT:
        /* Chat stores personal data like answers do: opt-in sites need consent first. */
        ok = need_consent(session, safe_id, err);
        if (ok)
            out->chat = json_incref(msg);
        break;
    default:
        break;
    }
    if (ok && (!jd_buf_ok(&out->reply) || !jd_buf_ok(&out->record))) {
        set_error(err, JD_ERR_STORE_REJECTED, safe_id, NULL, "server out of memory; retry");
        ok = false;
    }
    if (!ok) {
        out->record_kind = JD_REC_NONE;
        out->record_acked = false;
        jd_buf_reset(&out->record);
        jd_buf_reset(&out->reply);
        out->send_surveys = false;
    }
done:
    if (!ok)
        out->type = JD_MSG_INVALID;
    json_decref(msg);
    return ok;
}
