/* The catalog: an immutable in-memory snapshot of every site with its allowed origins, consent
 * mode, journey maps (persona, stage, touchpoint and obstacle slugs) and live surveys. The store
 * thread loads it from PostgreSQL as one JSON document (see jd_store's catalog query) and hands it
 * to the network thread, which validates frames against it without a database round trip. A
 * snapshot is never modified after jd_catalog_parse; the network thread owns the current one and
 * frees the old one when a new one arrives. */
#ifndef JD_CATALOG_H
#define JD_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    JD_Q_EMOTION = 0,
    JD_Q_SINGLE_CHOICE,
    JD_Q_MULTI_CHOICE,
    JD_Q_OBSTACLE,
    JD_Q_TEXT,
    JD_Q_ACTION,
    JD_Q_NPS,
    JD_Q_CSAT,
    JD_Q_GOAL,
    JD_Q_KIND_COUNT
} jd_question_kind;

typedef enum {
    JD_SLUG_PERSONA = 0,
    JD_SLUG_STAGE,
    JD_SLUG_TOUCHPOINT,
    JD_SLUG_OBSTACLE,
    JD_SLUG_KIND_COUNT
} jd_slug_kind;

typedef enum {
    JD_CONSENT_NONE_REQUIRED = 0,
    JD_CONSENT_OPT_IN,
    JD_CONSENT_COOKIELESS
} jd_consent_mode;

typedef struct jd_catalog_question {
    int64_t id;
    int64_t survey_id;
    int64_t map_id;
    int64_t stage_id;      /* 0 when the question does not fix a stage */
    int64_t touchpoint_id; /* 0 when the question does not fix a touchpoint */
    jd_question_kind kind;
    json_t *options; /* borrowed from the snapshot: array of {"value":..} or NULL */
} jd_catalog_question;

typedef enum {
    JD_RULE_URL = 0,           /* page URL -> stage and/or touchpoint */
    JD_RULE_REFERRER,          /* referrer -> touchpoint */
    JD_RULE_UTM,               /* UTM parameters -> touchpoint */
    JD_RULE_PERSONA_ATTRIBUTE, /* an attribute the host page passes -> persona */
    JD_RULE_SCREENER,          /* an answer to a screener question -> persona */
} jd_rule_kind;

/* A site's tagging rule, in the order the site set (position). Strings are borrowed from the
 * snapshot; slugs are NULL when the rule does not set that dimension. */
typedef struct jd_catalog_rule {
    jd_rule_kind kind;
    json_t *match;  /* the rule's match object */
    const char *op; /* url/referrer: exact, contains, not_contains, starts_with, ends_with, regex */
    const char *pattern; /* url/referrer */
    void *regex;         /* compiled regex_t for op regex, owned by the snapshot */
    const char *stage;   /* slugs set by the rule */
    const char *touchpoint;
    const char *persona;
    int64_t question_id; /* screener: the question whose answer is matched */
} jd_catalog_rule;

typedef struct jd_catalog_map {
    int64_t id;
    json_t *slugs[JD_SLUG_KIND_COUNT]; /* borrowed: objects slug -> id */
} jd_catalog_map;

typedef enum { JD_REDACT_OFF = 0, JD_REDACT_INGEST, JD_REDACT_EXPORT } jd_redact_mode;

typedef struct jd_catalog_site {
    int64_t id;
    const char *key;
    jd_consent_mode consent_mode;
    jd_redact_mode redact;
    bool store_ip;               /* keep a truncated client IP (/24, /48) with each session */
    bool chat;                   /* live chat offered: the site has an enabled agent account */
    const char *identity_secret; /* HS256 secret for signed identities, or NULL */
    const char **origins;
    size_t n_origins;
    jd_catalog_map *maps;
    size_t n_maps;
    jd_catalog_question *questions; /* sorted by id */
    size_t n_questions;
    jd_catalog_rule *rules;
    size_t n_rules;
    char **survey_frames; /* pre-encoded {"type":"survey",...} frames, owned by the snapshot */
    size_t *survey_frame_lens;
    size_t n_surveys;
} jd_catalog_site;

typedef struct jd_catalog {
    json_t *root;           /* owns every borrowed json_t above */
    jd_catalog_site *sites; /* sorted by key */
    size_t n_sites;
} jd_catalog;

/* Parses the catalog document:
 *   {"sites":[{"id":1,"key":"...","origins":["https://a.example"],"consent_mode":"opt-in",
 *              "maps":[{"id":3,"personas":{"slug":id},"stages":{..},"touchpoints":{..},
 *                       "obstacles":{..}}],
 *              "surveys":[{"id":12,"map":3,...,"questions":[{"id":40,"kind":"emotion",
 *                          "stage_id":7,"touchpoint_id":9,"options":[..],...}]}]}]}
 * On success *out owns a new snapshot (free with jd_catalog_free). On failure returns false and
 * writes the reason into err. */
bool jd_catalog_parse(const char *json, size_t len, jd_catalog **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Frees a snapshot and sets *catalog to NULL. NULL is fine. */
void jd_catalog_free(jd_catalog **catalog);

/* Lookups return pointers into the snapshot (valid while it lives) or NULL. */
const jd_catalog_site *jd_catalog_site_by_key(const jd_catalog *catalog, const char *key);
const jd_catalog_site *jd_catalog_site_by_id(const jd_catalog *catalog, int64_t id);
const jd_catalog_question *jd_catalog_question_find(const jd_catalog_site *site, int64_t survey_id,
                                                    int64_t question_id);
const jd_catalog_map *jd_catalog_map_find(const jd_catalog_site *site, int64_t map_id);

/* Resolves a slug within a map; returns its id or 0 when unknown. */
int64_t jd_catalog_slug(const jd_catalog_map *map, jd_slug_kind kind, const char *slug);

/* True when origin (the exact Origin header) is allowed for the site; "*" allows any. */
bool jd_catalog_origin_allowed(const jd_catalog_site *site, const char *origin);

const char *jd_catalog_consent_name(jd_consent_mode mode);

/* True when text matches a url/referrer rule's op and pattern. NULL text never matches. */
bool jd_catalog_rule_matches_text(const jd_catalog_rule *rule, const char *text);

#endif
