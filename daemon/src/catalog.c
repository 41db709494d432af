/* Builds the immutable catalog snapshot from the JSON document the store loads, and answers the
 * lookups the network thread makes for every frame: site by key, question by id, slug to id. The
 * jansson tree is kept as the backing store; small sorted arrays index it for O(log n) lookups. */
#include "catalog.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const question_kind_names[JD_Q_KIND_COUNT] = {
    "emotion", "single_choice", "multi_choice", "obstacle", "text",
    "action",  "nps",           "csat",         "goal"};

static const char *const slug_kind_keys[JD_SLUG_KIND_COUNT] = {"personas", "stages", "touchpoints",
                                                               "obstacles"};

const char *jd_catalog_consent_name(jd_consent_mode mode)
{
    switch (mode) {
    case JD_CONSENT_OPT_IN:
        return "opt-in";
    case JD_CONSENT_COOKIELESS:
        return "cookieless";
    default:
        return "none-required";
    }
}

static int compare_sites(const void *a, const void *b)
{
    return strcmp(((const jd_catalog_site *)a)->key, ((const jd_catalog_site *)b)->key);
}

static int compare_questions(const void *a, const void *b)
{
    int64_t x = ((const jd_catalog_question *)a)->id, y = ((const jd_catalog_question *)b)->id;
    return (x > y) - (x < y);
}

static void free_site(jd_catalog_site *site)
{
    for (size_t i = 0; i < site->n_rules; i++) {
        if (site->rules[i].regex) {
            regfree(site->rules[i].regex);
            free(site->rules[i].regex);
        }
    }
    free(site->rules);
    free(site->origins);
    free(site->maps);
    free(site->questions);
    for (size_t i = 0; i < site->n_surveys; i++)
        free(site->survey_frames[i]);
    free(site->survey_frames);
    free(site->survey_frame_lens);
    memset(site, 0, sizeof(*site));
}

void jd_catalog_free(jd_catalog **catalog)
{
    if (!catalog || !*catalog)
        return;
    jd_catalog *c = *catalog;
    for (size_t i = 0; i < c->n_sites; i++)
        free_site(&c->sites[i]);
    free(c->sites);
    json_decref(c->root);
    free(c);
    *catalog = NULL;
}

static bool parse_kind(const char *name, jd_question_kind *out)
{
    for (int i = 0; i < JD_Q_KIND_COUNT; i++) {
        if (strcmp(name, question_kind_names[i]) == 0) {
            *out = (jd_question_kind)i;
            return true;
        }
    }
    return false;
}

/* The survey frame the widget receives: the survey object minus the internal ids the server
 * needs but the widget does not (stage_id, touchpoint_id). */
static char *encode_survey_frame(json_t *survey, size_t *len)
{
    json_t *copy = json_deep_copy(survey);
    if (!copy)
        return NULL;
    json_t *questions = json_object_get(copy, "questions");
    size_t i;
    json_t *q;
    json_array_foreach(questions, i, q)
    {
        json_object_del(q, "stage_id");
        json_object_del(q, "touchpoint_id");
    }
    json_t *frame = json_pack("{s:s, s:o}", "type", "survey", "survey", copy);
    char *text = frame ? json_dumps(frame, JSON_COMPACT) : NULL;
    json_decref(frame);
    if (text)
        *len = strlen(text);
    return text;
}

static bool parse_site(json_t *js, jd_catalog_site *site, char *err, size_t err_len)
{
    json_t *origins = json_object_get(js, "origins");
    json_t *maps = json_object_get(js, "maps");
    json_t *surveys = json_object_get(js, "surveys");
    const char *key = json_string_value(json_object_get(js, "key"));
    const char *mode = json_string_value(json_object_get(js, "consent_mode"));
    if (!json_is_integer(json_object_get(js, "id")) || !key || !json_is_array(origins) ||
        !json_is_array(maps) || !json_is_array(surveys)) {
        snprintf(err, err_len, "catalog: site entry lacks id, key, origins, maps or surveys");
        return false;
    }
    site->id = json_integer_value(json_object_get(js, "id"));
    site->key = key;
    site->consent_mode = JD_CONSENT_NONE_REQUIRED;
    if (mode && strcmp(mode, "opt-in") == 0)
        site->consent_mode = JD_CONSENT_OPT_IN;
    else if (mode && strcmp(mode, "cookieless") == 0)
        site->consent_mode = JD_CONSENT_COOKIELESS;

    site->n_origins = json_array_size(origins);
    site->origins = calloc(site->n_origins + 1, sizeof(*site->origins));
    site->n_maps = json_array_size(maps);
    site->maps = calloc(site->n_maps + 1, sizeof(*site->maps));
    site->n_surveys = json_array_size(surveys);
    site->survey_frames = calloc(site->n_surveys + 1, sizeof(*site->survey_frames));
    site->survey_frame_lens = calloc(site->n_surveys + 1, sizeof(*site->survey_frame_lens));
    if (!site->origins || !site->maps || !site->survey_frames || !site->survey_frame_lens)
        goto fail_oom;
    for (size_t i = 0; i < site->n_origins; i++)
        site->origins[i] = json_string_value(json_array_get(origins, i));
    const char *redact = json_string_value(json_object_get(js, "redact"));
    site->redact = !redact                         ? JD_REDACT_OFF
                   : strcmp(redact, "ingest") == 0 ? JD_REDACT_INGEST
                   : strcmp(redact, "export") == 0 ? JD_REDACT_EXPORT
                                                   : JD_REDACT_OFF;
    site->store_ip = json_is_true(json_object_get(js, "store_ip"));
    site->chat = json_is_true(json_object_get(js, "chat"));

    static const char *const kinds[] = {"url", "referrer", "utm", "persona_attribute", "screener"};
    json_t *rules = json_object_get(js, "rules");
    site->rules = calloc(json_array_size(rules) + 1, sizeof(*site->rules));
    if (!site->rules)
        goto fail_oom;
    size_t ri;
    json_t *jr;
    json_array_foreach(rules, ri, jr)
    {
        const char *kind = json_string_value(json_object_get(jr, "kind"));
        jd_catalog_rule *r = &site->rules[site->n_rules];
        int k = -1;
        for (int i = 0; kind && i < 5; i++)
            if (strcmp(kind, kinds[i]) == 0)
                k = i;
        if (k < 0)
            continue; /* a kind this build does not know: skip, never fail the catalog */
        r->kind = (jd_rule_kind)k;
        r->match = json_object_get(jr, "match");
        r->op = json_string_value(json_object_get(r->match, "op"));
        if (!r->op)
            r->op = "contains";
        r->pattern = json_string_value(json_object_get(r->match, "pattern"));
        r->stage = json_string_value(json_object_get(jr, "stage"));
        r->touchpoint = json_string_value(json_object_get(jr, "touchpoint"));
        r->persona = json_string_value(json_object_get(jr, "persona"));
        r->question_id = json_integer_value(json_object_get(jr, "question_id"));
        if (strcmp(r->op, "regex") == 0 && r->pattern) {
            regex_t *re = malloc(sizeof(*re));
            if (!re || regcomp(re, r->pattern, REG_EXTENDED | REG_NOSUB | REG_ICASE) != 0) {
                free(re);
                continue; /* PostgreSQL accepted it but POSIX cannot compile it: skip the rule */
            }
            r->regex = re;
        }
        site->n_rules++;
    }
    site->identity_secret = json_string_value(json_object_get(js, "identity_secret"));

    for (size_t i = 0; i < site->n_maps; i++) {
        json_t *jm = json_array_get(maps, i);
        site->maps[i].id = json_integer_value(json_object_get(jm, "id"));
        for (int k = 0; k < JD_SLUG_KIND_COUNT; k++)
            site->maps[i].slugs[k] = json_object_get(jm, slug_kind_keys[k]);
    }

    size_t n_questions = 0, si;
    json_t *survey;
    json_array_foreach(surveys, si, survey)
    {
        n_questions += json_array_size(json_object_get(survey, "questions"));
    }
    site->questions = calloc(n_questions + 1, sizeof(*site->questions));
    if (!site->questions)
        goto fail_oom;
    json_array_foreach(surveys, si, survey)
    {
        json_t *questions = json_object_get(survey, "questions");
        int64_t survey_id = json_integer_value(json_object_get(survey, "id"));
        int64_t map_id = json_integer_value(json_object_get(survey, "map"));
        size_t qi;
        json_t *jq;
        json_array_foreach(questions, qi, jq)
        {
            jd_catalog_question *q = &site->questions[site->n_questions];
            const char *kind = json_string_value(json_object_get(jq, "kind"));
            if (!kind || !parse_kind(kind, &q->kind)) {
                snprintf(err, err_len, "catalog: question %lld has unknown kind",
                         (long long)json_integer_value(json_object_get(jq, "id")));
                return false;
            }
            q->id = json_integer_value(json_object_get(jq, "id"));
            q->survey_id = survey_id;
            q->map_id = map_id;
            q->stage_id = json_integer_value(json_object_get(jq, "stage_id"));
            q->touchpoint_id = json_integer_value(json_object_get(jq, "touchpoint_id"));
            q->options = json_is_array(json_object_get(jq, "options"))
                             ? json_object_get(jq, "options")
                             : NULL;
            site->n_questions++;
        }
        site->survey_frames[si] = encode_survey_frame(survey, &site->survey_frame_lens[si]);
        if (!site->survey_frames[si])
            goto fail_oom;
    }
    qsort(site->questions, site->n_questions, sizeof(*site->questions), compare_questions);
    return true;

fail_oom:
    snprintf(err, err_len, "catalog: out of memory");
    return false;
}

bool jd_catalog_parse(const char *json, size_t len, jd_catalog **out, char *err, size_t err_len)
{
    json_error_t jerr;
    jd_catalog *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_len, "catalog: out of memory");
        return false;
    }
    c->root = json_loadb(json, len, 0, &jerr);
    if (!c->root) {
        snprintf(err, err_len, "catalog: %s (line %d)", jerr.text, jerr.line);
        goto fail;
    }
    json_t *sites = json_object_get(c->root, "sites");
    if (!json_is_array(sites)) {
        snprintf(err, err_len, "catalog: no sites array");
        goto fail;
    }
    c->sites = calloc(json_array_size(sites) + 1, sizeof(*c->sites));
    if (!c->sites) {
        snprintf(err, err_len, "catalog: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(sites); i++) {
        /* Count first so jd_catalog_free releases a half-built site too. */
        c->n_sites++;
        if (!parse_site(json_array_get(sites, i), &c->sites[i], err, err_len))
            goto fail;
    }
    qsort(c->sites, c->n_sites, sizeof(*c->sites), compare_sites);
    *out = c;
    return true;

fail:
    jd_catalog_free(&c);
    return false;
}

const jd_catalog_site *jd_catalog_site_by_key(const jd_catalog *catalog, const char *key)
{
    if (!catalog || !key)
        return NULL;
    jd_catalog_site probe = {.key = key};
    return bsearch(&probe, catalog->sites, catalog->n_sites, sizeof(probe), compare_sites);
}

const jd_catalog_site *jd_catalog_site_by_id(const jd_catalog *catalog, int64_t id)
{
    if (!catalog)
        return NULL;
    for (size_t i = 0; i < catalog->n_sites; i++)
        if (catalog->sites[i].id == id)
            return &catalog->sites[i];
    return NULL;
}

const jd_catalog_question *jd_catalog_question_find(const jd_catalog_site *site, int64_t survey_id,
                                                    int64_t question_id)
{
    jd_catalog_question probe = {.id = question_id};
    const jd_catalog_question *q =
        bsearch(&probe, site->questions, site->n_questions, sizeof(probe), compare_questions);
    return q && q->survey_id == survey_id ? q : NULL;
}

const jd_catalog_map *jd_catalog_map_find(const jd_catalog_site *site, int64_t map_id)
{
    for (size_t i = 0; i < site->n_maps; i++)
        if (site->maps[i].id == map_id)
            return &site->maps[i];
    return NULL;
}

int64_t jd_catalog_slug(const jd_catalog_map *map, jd_slug_kind kind, const char *slug)
{
    if (!map || !slug || kind >= JD_SLUG_KIND_COUNT)
        return 0;
    return json_integer_value(json_object_get(map->slugs[kind], slug));
}

bool jd_catalog_rule_matches_text(const jd_catalog_rule *r, const char *text)
{
    if (!text || !r->pattern)
        return false;
    size_t tl = strlen(text), pl = strlen(r->pattern);
    if (strcmp(r->op, "exact") == 0)
        return strcmp(text, r->pattern) == 0;
    if (strcmp(r->op, "contains") == 0)
        return strstr(text, r->pattern) != NULL;
    if (strcmp(r->op, "not_contains") == 0)
        return strstr(text, r->pattern) == NULL;
    if (strcmp(r->op, "starts_with") == 0)
        return strncmp(text, r->pattern, pl) == 0;
    if (strcmp(r->op, "ends_with") == 0)
        return tl >= pl && strcmp(text + tl - pl, r->pattern) == 0;
    if (strcmp(r->op, "regex") == 0 && r->regex)
        return regexec(r->regex, text, 0, NULL, 0) == 0;
    return false;
}

bool jd_catalog_origin_allowed(const jd_catalog_site *site, const char *origin)
{
    for (size_t i = 0; i < site->n_origins; i++) {
        const char *allowed = site->origins[i];
        if (!allowed)
            continue;
        if (strcmp(allowed, "*") == 0)
            return true;
        if (origin && strcasecmp(allowed, origin) == 0)
            return true;
    }
    return false;
}
