/* Renders the canonical journey.json document (built by jd_map_export() in SQL) into files. The
 * document is indexed once (cells by their stable id "p{persona|all}-s{stage}[-t{touchpoint}]"),
 * then each format walks personas x stages x touchpoints in the document's order and writes
 * through one escaper per target language: RFC 4180 with a formula-injection guard for CSV,
 * numeric entities (#35; #58; #59; ...) for Mermaid's journey lexer, and XML entities for draw.io
 * and HTML. Every string that came from a user (names, quotes, actions, obstacles, resources) goes
 * through an escaper; numbers are formatted here. Nothing is fetched: the HTML page is one file
 * with inline CSS and SVG and no script. */
#include "export.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FMT_NUM 32

typedef struct model {
    const json_t *doc, *map, *personas, *stages, *touchpoints, *cells, *resources, *metrics;
    const json_t *conversion;
    json_t *by_id; /* cell id -> cell (borrowed references) */
} model;

/* One column set of a map: a persona, or the all-personas view (persona == NULL). */
typedef struct view {
    const json_t *persona;
    json_int_t id; /* 0 for the all view */
    const char *name, *key;
} view;

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- document access ---------------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static json_int_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (json_int_t)json_real_value(v);
    return 0;
}

static bool jnumv(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

static bool jnum(const json_t *o, const char *key, double *out)
{
    return jnumv(json_object_get(o, key), out);
}

/* A number with at most `decimals` decimals, trailing zeros removed ("3.5", "2", "-0.46"). */
static const char *fmt_num(char buf[FMT_NUM], double v, int decimals)
{
    snprintf(buf, FMT_NUM, "%.*f", decimals, v);
    if (strchr(buf, '.')) {
        size_t n = strlen(buf);
        while (n > 0 && buf[n - 1] == '0')
            buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '.')
            buf[--n] = '\0';
    }
    if (strcmp(buf, "-0") == 0)
        strcpy(buf, "0");
    return buf;
}

static const char *fmt_pct(char buf[FMT_NUM], double share)
{
    char tmp[FMT_NUM];
    snprintf(buf, FMT_NUM, "%s%%", fmt_num(tmp, share * 100.0, 1));
    return buf;
}

static void cell_key(char *buf, size_t len, json_int_t persona, json_int_t stage, json_int_t tp)
{
    char p[32];
    if (persona)
        snprintf(p, sizeof(p), "p%lld", (long long)persona);
    else
        snprintf(p, sizeof(p), "pall");
    if (tp)
        snprintf(buf, len, "%s-s%lld-t%lld", p, (long long)stage, (long long)tp);
    else
        snprintf(buf, len, "%s-s%lld", p, (long long)stage);
}

static const json_t *cell_get(const model *m, json_int_t persona, json_int_t stage, json_int_t tp)
{
    char key[96];
    cell_key(key, sizeof(key), persona, stage, tp);
    return json_object_get(m->by_id, key);
}

static bool model_init(model *m, const json_t *doc, char *err, size_t err_len)
{
    memset(m, 0, sizeof(*m));
    if (!json_is_object(doc) || strcmp(jstr(doc, "format"), "journeyd.map/1") != 0) {
        set_err(err, err_len, "not a journeyd.map/1 document");
        return false;
    }
    m->doc = doc;
    m->map = json_object_get(doc, "map");
    m->personas = json_object_get(doc, "personas");
    m->stages = json_object_get(doc, "stages");
    m->touchpoints = json_object_get(doc, "touchpoints");
    m->cells = json_object_get(doc, "cells");
    m->resources = json_object_get(doc, "resources");
    m->metrics = json_object_get(json_object_get(doc, "stage_metrics"), "stages");
    m->conversion = json_object_get(doc, "conversion");
    if (!json_is_object(m->map) || !json_is_array(m->personas) || !json_is_array(m->stages) ||
        !json_is_array(m->touchpoints) || !json_is_array(m->cells)) {
        set_err(err, err_len, "document lacks map, personas, stages, touchpoints or cells");
        return false;
    }
    m->by_id = json_object();
    if (!m->by_id)
        goto oom;
    size_t i;
    json_t *c;
    json_array_foreach(m->cells, i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (id && json_object_set(m->by_id, id, c) != 0)
            goto oom;
    }
    return true;
oom:
    set_err(err, err_len, "out of memory");
    json_decref(m->by_id);
    m->by_id = NULL;
    return false;
}

static void model_free(model *m)
{
    json_decref(m->by_id);
    m->by_id = NULL;
}

static view view_of(const json_t *p)
{
    view v = {p, 0, "All personas", "all"};
    if (p) {
        v.id = jint(p, "id");
        v.name = jstr(p, "name");
        v.key = jstr(p, "slug");
    }
    return v;
}

/* The views a file holds: the named persona, or every persona then the all view (many), or the
 * all view alone. *out is malloc'ed. */
static bool pick_views(const model *m, const char *persona, bool many, view **out, size_t *n,
                       char *err, size_t err_len)
{
    size_t np = json_array_size(m->personas), i;
    view *v = calloc(np + 1, sizeof(*v));
    *out = v;
    *n = 0;
    if (!v) {
        set_err(err, err_len, "out of memory");
        return false;
    }
    if (persona && strcmp(persona, "all") == 0) {
        v[(*n)++] = view_of(NULL);
        return true;
    }
    if (persona) {
        for (i = 0; i < np; i++) {
            const json_t *p = json_array_get(m->personas, i);
            char idbuf[32];
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)jint(p, "id"));
            if (strcmp(jstr(p, "slug"), persona) == 0 || strcmp(idbuf, persona) == 0) {
                v[(*n)++] = view_of(p);
                return true;
            }
        }
        set_err(err, err_len, "persona \"%s\" is not in this document", persona);
        return false;
    }
    if (many)
        for (i = 0; i < np; i++)
            v[(*n)++] = view_of(json_array_get(m->personas, i));
    v[(*n)++] = view_of(NULL);
    return true;
}

static bool tp_in_stage(const json_t *tp, json_int_t stage)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(tp, "stages"), i, s)
    {
        if (json_integer_value(s) == stage)
            return true;
    }
    return false;
}

static const json_t *stage_metric(const model *m, json_int_t stage)
{
    size_t i;
    const json_t *s;
    json_array_foreach(m->metrics, i, s)
    {
        if (jint(s, "stage_id") == stage)
            return s;
    }
    return NULL;
}

/* ---- escapers ----------------------------------------------------------------------------- */

void jd_export_csv_field(jd_buf *out, const char *text)
{
    const char *t = text ? text : "";
    bool guard = strchr("=+-@\t\r", t[0]) != NULL && t[0] != '\0';
    bool quote = guard || strpbrk(t, ",\"\r\n") != NULL;
    if (quote)
        jd_buf_puts(out, "\"");
    if (guard)
        jd_buf_puts(out, "'");
    for (const char *p = t; *p; p++) {
        if (*p == '"')
            jd_buf_puts(out, "\"\"");
        else
            jd_buf_append(out, p, 1);
    }
    if (quote)
        jd_buf_puts(out, "\"");
}

void jd_export_xml_text(jd_buf *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    for (; *p; p++) {
        switch (*p) {
        case '&':
            jd_buf_puts(out, "&amp;");
            break;
        case '<':
            jd_buf_puts(out, "&lt;");
            break;
        case '>':
            jd_buf_puts(out, "&gt;");
            break;
        case '"':
            jd_buf_puts(out, "&quot;");
            break;
        case '\'':
            jd_buf_puts(out, "&#39;");
            break;
        case '\n':
            jd_buf_puts(out, "&#10;");
            break;
        case '\r':
            jd_buf_puts(out, "&#13;");
            break;
        case '\t':
            jd_buf_puts(out, "&#9;");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                break; /* not allowed in XML 1.0: dropped */
            if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
                p += 2; /* U+FFFE / U+FFFF are not XML characters either */
                break;
            }
            jd_buf_append(out, p, 1);
        }
    }
}

/* Mermaid's journey lexer stops a task or section at '#', ':' or ';', treats a line starting
 * with title/section/journey/acc... as a keyword and '%%' as a comment, and its renderer reads
 * HTML. Mermaid turns "#NN;" into the character NN after parsing, so every such character becomes
 * an entity, as does the first letter of a leading keyword, and ',' in an actor name. Whitespace
 * runs (newlines included) become one space; leading and trailing spaces are dropped. */
void jd_export_mermaid_text(jd_buf *out, const char *text, bool actor)
{
    static const char *const keywords[] = {"title", "section", "journey", "acc"};
    const char *t = text ? text : "";
    while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')
        t++;
    size_t len = strlen(t);
    while (len > 0 &&
           (t[len - 1] == ' ' || t[len - 1] == '\t' || t[len - 1] == '\r' || t[len - 1] == '\n'))
        len--;
    if (len == 0) {
        jd_buf_puts(out, "#45;"); /* "-": an empty name would not parse */
        return;
    }
    bool kw = false;
    for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
        if (len >= strlen(keywords[k]) && strncasecmp(t, keywords[k], strlen(keywords[k])) == 0)
            kw = true;
    bool space = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (!space)
                jd_buf_puts(out, " ");
            space = true;
            continue;
        }
        space = false;
        if ((i == 0 && kw) || strchr("#:;%{}<>&\"`", c) || (actor && c == ',') || c < 0x20) {
            if (c < 0x20)
                c = ' ';
            jd_buf_printf(out, "#%u;", (unsigned)c);
        } else {
            jd_buf_append(out, &c, 1);
        }
    }
}

static void yaml_string(jd_buf *out, const char *text)
{
    jd_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            jd_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            jd_buf_puts(out, " ");
        else
            jd_buf_append(out, p, 1);
    }
    jd_buf_puts(out, "\"");
}

/* ---- shared text of a cell ----------------------------------------------------------------- */

/* "3.5 (95% CI 1.45-5.55, n=4)", or "no emotion data". */
static void emotion_summary(jd_buf *out, const json_t *cell)
{
    const json_t *e = json_object_get(cell, "emotion");
    const json_t *ci = json_object_get(e, "ci95");
    double mean, lo, hi;
    char a[FMT_NUM], b[FMT_NUM], c[FMT_NUM];
    if (!jnum(e, "mean", &mean)) {
        jd_buf_puts(out, "no emotion data");
        return;
    }
    jd_buf_printf(out, "%s", fmt_num(a, mean, 2));
    if (jnumv(json_array_get(ci, 0), &lo) && jnumv(json_array_get(ci, 1), &hi))
        jd_buf_printf(out, " (95%% CI %s to %s, n=%lld)", fmt_num(b, lo, 2), fmt_num(c, hi, 2),
                      (long long)jint(e, "n"));
    else
        jd_buf_printf(out, " (n=%lld)", (long long)jint(e, "n"));
}

/* Joins the items of a cell's list ("obstacles", "actions", "quotes") into one string. */
static void list_summary(jd_buf *out, const json_t *cell, const char *list, const char *sep)
{
    size_t i;
    const json_t *it;
    char a[FMT_NUM];
    json_array_foreach(json_object_get(cell, list), i, it)
    {
        if (i)
            jd_buf_puts(out, sep);
        if (strcmp(list, "obstacles") == 0) {
            double share;
            jd_buf_printf(out, "%s (%lld", jstr(it, "name"), (long long)jint(it, "count"));
            if (jnum(it, "share", &share))
                jd_buf_printf(out, ", %s", fmt_pct(a, share));
            jd_buf_puts(out, ")");
        } else if (strcmp(list, "actions") == 0) {
            jd_buf_printf(out, "%s (%lld)", jstr(it, "text"), (long long)jint(it, "count"));
        } else {
            jd_buf_printf(out, "\"%s\" [%s]", jstr(it, "text"), jstr(it, "evidence"));
        }
    }
}

static void resources_summary(jd_buf *out, const model *m, json_int_t stage, const char *sep)
{
    size_t i, k = 0;
    const json_t *r;
    json_array_foreach(m->resources, i, r)
    {
        if (jint(r, "stage_id") != stage)
            continue;
        if (k++)
            jd_buf_puts(out, sep);
        jd_buf_printf(out, "%s (%s", jstr(r, "name"), jstr(r, "kind"));
        if (*jstr(r, "owner"))
            jd_buf_printf(out, ", %s", jstr(r, "owner"));
        jd_buf_puts(out, ")");
    }
}

/* Evidence ids of a cell, its quotes' first, separated by sep. */
static void evidence_list(jd_buf *out, const json_t *cell, const char *sep)
{
    size_t i, k = 0;
    const json_t *it;
    json_array_foreach(json_object_get(cell, "quotes"), i, it)
    {
        jd_buf_printf(out, "%s%s", k++ ? sep : "", jstr(it, "evidence"));
    }
    json_array_foreach(json_object_get(cell, "evidence"), i, it)
    {
        const char *id = json_string_value(it);
        bool seen = false;
        size_t qi;
        const json_t *q;
        json_array_foreach(json_object_get(cell, "quotes"), qi, q)
        {
            if (id && strcmp(jstr(q, "evidence"), id) == 0)
                seen = true;
        }
        if (id && !seen)
            jd_buf_printf(out, "%s%s", k++ ? sep : "", id);
    }
}

/* ---- JSON --------------------------------------------------------------------------------- */

static bool render_json(const model *m, jd_buf *out, char *err, size_t err_len)
{
    char *text = json_dumps(m->doc, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (!text) {
        set_err(err, err_len, "out of memory");
        return false;
    }
    jd_buf_puts(out, text);
    jd_buf_puts(out, "\n");
    free(text);
    return true;
}

/* ---- CSV (long): one row per cell and lane ------------------------------------------------- */

static void csv_num(jd_buf *out, const json_t *v, int decimals)
{
    double d;
    char a[FMT_NUM];
    if (jnumv(v, &d))
        jd_buf_puts(out, fmt_num(a, d, decimals));
}

static void csv_text(jd_buf *out, const jd_buf *text)
{
    char *s = strndup(text->data ? text->data : "", text->len);
    if (!s) {
        out->failed = true;
        return;
    }
    jd_export_csv_field(out, s);
    free(s);
}

static void csv_long_row(jd_buf *out, const model *m, const view *v, const json_t *stage,
                         const json_t *tp, const json_t *cell, const char *lane, const jd_buf *text,
                         const jd_buf *evidence)
{
    const json_t *e = json_object_get(cell, "emotion");
    const json_t *dist = json_object_get(e, "distribution");
    char id[96];
    (void)m;
    cell_key(id, sizeof(id), v->id, jint(stage, "id"), tp ? jint(tp, "id") : 0);
    jd_buf_printf(out, "%s,", cell ? jstr(cell, "id") : id);
    jd_export_csv_field(out, v->key);
    jd_buf_puts(out, ",");
    jd_export_csv_field(out, v->name);
    jd_buf_puts(out, ",");
    jd_export_csv_field(out, jstr(stage, "slug"));
    jd_buf_puts(out, ",");
    jd_export_csv_field(out, jstr(stage, "name"));
    jd_buf_puts(out, ",");
    jd_export_csv_field(out, tp ? jstr(tp, "slug") : "");
    jd_buf_puts(out, ",");
    jd_export_csv_field(out, tp ? jstr(tp, "name") : "");
    jd_buf_printf(out, ",%s,%s,", lane, tp ? "cell" : "stage");
    csv_text(out, text);
    if (cell) {
        jd_buf_printf(out, ",%lld,%lld,%s,%lld,", (long long)jint(cell, "n"),
                      (long long)jint(cell, "respondents"),
                      json_is_true(json_object_get(cell, "thin")) ? "true" : "false",
                      (long long)jint(e, "n"));
        csv_num(out, json_object_get(e, "mean"), 4);
        jd_buf_puts(out, ",");
        csv_num(out, json_object_get(e, "sd"), 4);
        jd_buf_puts(out, ",");
        csv_num(out, json_array_get(json_object_get(e, "ci95"), 0), 4);
        jd_buf_puts(out, ",");
        csv_num(out, json_array_get(json_object_get(e, "ci95"), 1), 4);
        for (size_t i = 0; i < 5; i++) {
            jd_buf_puts(out, ",");
            csv_num(out, json_array_get(dist, i), 0);
        }
        jd_buf_puts(out, ",");
        csv_num(out, json_object_get(json_object_get(cell, "goal"), "rate"), 4);
    } else {
        jd_buf_puts(out, ",,,,,,,,,,,,,,"); /* the 14 statistics columns */
    }
    jd_buf_puts(out, ",");
    csv_text(out, evidence);
    jd_buf_puts(out, "\r\n");
}

static bool render_csv_long(const model *m, const char *persona, jd_buf *out, char *err,
                            size_t err_len)
{
    static const char *const lanes[] = {"emotion", "actions", "thoughts", "obstacles"};
    view *views = NULL;
    size_t nv = 0, vi, si, ti;
    jd_buf text, ev;
    jd_buf_init(&text);
    jd_buf_init(&ev);
    bool ok = false;
    if (!pick_views(m, persona, true, &views, &nv, err, err_len))
        goto fail;
    jd_buf_puts(out,
                "cell_id,persona,persona_name,stage,stage_name,touchpoint,touchpoint_name,"
                "lane,level,text,n,respondents,thin,emotion_n,emotion_mean,emotion_sd,"
                "ci95_low,ci95_high,dist_1,dist_2,dist_3,dist_4,dist_5,goal_rate,evidence\r\n");
    for (vi = 0; vi < nv; vi++) {
        const json_t *stage;
        json_array_foreach(m->stages, si, stage)
        {
            json_int_t sid = jint(stage, "id");
            /* the stage rollup first (tp NULL), then its touchpoints */
            for (ti = 0; ti <= json_array_size(m->touchpoints); ti++) {
                const json_t *tp = ti == 0 ? NULL : json_array_get(m->touchpoints, ti - 1);
                const json_t *cell = cell_get(m, views[vi].id, sid, tp ? jint(tp, "id") : 0);
                if (!cell)
                    continue;
                for (size_t li = 0; li < sizeof(lanes) / sizeof(lanes[0]); li++) {
                    jd_buf_reset(&text);
                    jd_buf_reset(&ev);
                    if (li == 0)
                        emotion_summary(&text, cell);
                    else if (li == 1)
                        list_summary(&text, cell, "actions", "; ");
                    else if (li == 2)
                        list_summary(&text, cell, "quotes", "; ");
                    else
                        list_summary(&text, cell, "obstacles", "; ");
                    if (li == 2) {
                        size_t qi;
                        const json_t *q;
                        json_array_foreach(json_object_get(cell, "quotes"), qi, q)
                        {
                            jd_buf_printf(&ev, "%s%s", qi ? " " : "", jstr(q, "evidence"));
                        }
                    } else {
                        evidence_list(&ev, cell, " ");
                    }
                    csv_long_row(out, m, &views[vi], stage, tp, cell, lanes[li], &text, &ev);
                }
            }
        }
    }
    /* the resources lane: one row per stage, no persona */
    const json_t *stage;
    json_array_foreach(m->stages, si, stage)
    {
        jd_buf_reset(&text);
        jd_buf_reset(&ev);
        resources_summary(&text, m, jint(stage, "id"), "; ");
        view all = view_of(NULL);
        csv_long_row(out, m, &all, stage, NULL, NULL, "resources", &text, &ev);
    }
    ok = true;
fail:
    if (!jd_buf_ok(&text) || !jd_buf_ok(&ev)) {
        set_err(err, err_len, "out of memory");
        ok = false;
    }
    jd_buf_free(&text);
    jd_buf_free(&ev);
    free(views);
    return ok;
}

/* ---- CSV grid: stages across, lanes down ---------------------------------------------------- */

static bool render_csv_grid(const model *m, const char *persona, jd_buf *out, char *err,
                            size_t err_len)
{
    static const char *const lanes[] = {
        "Touchpoints", "Actions",      "Thoughts",   "Emotion",
        "Obstacles",   "Goal reached", "Reached by", "Drop-off to next stage",
        "Resources"};
    view *views = NULL;
    size_t nv = 0, si, ti;
    const json_t *stage;
    jd_buf text;
    jd_buf_init(&text);
    bool ok = false;
    char a[FMT_NUM];
    if (!pick_views(m, persona, false, &views, &nv, err, err_len))
        goto fail;
    const view *v = &views[0];
    jd_export_csv_field(out, v->name);
    json_array_foreach(m->stages, si, stage)
    {
        jd_buf_puts(out, ",");
        jd_export_csv_field(out, jstr(stage, "name"));
    }
    jd_buf_puts(out, "\r\n");
    for (size_t li = 0; li < sizeof(lanes) / sizeof(lanes[0]); li++) {
        jd_export_csv_field(out, lanes[li]);
        json_array_foreach(m->stages, si, stage)
        {
            json_int_t sid = jint(stage, "id");
            const json_t *cell = cell_get(m, v->id, sid, 0);
            const json_t *sm = stage_metric(m, sid);
            double d;
            jd_buf_reset(&text);
            switch (li) {
            case 0: {
                const json_t *tp;
                size_t k = 0;
                json_array_foreach(m->touchpoints, ti, tp)
                {
                    const json_t *c = cell_get(m, v->id, sid, jint(tp, "id"));
                    if (!c || (!tp_in_stage(tp, sid) && jint(c, "n") == 0))
                        continue;
                    jd_buf_printf(&text, "%s%s: ", k++ ? "\n" : "", jstr(tp, "name"));
                    emotion_summary(&text, c);
                    if (json_is_true(json_object_get(c, "thin")))
                        jd_buf_puts(&text, " [thin]");
                }
                break;
            }
            case 1:
                list_summary(&text, cell, "actions", "\n");
                break;
            case 2:
                list_summary(&text, cell, "quotes", "\n");
                break;
            case 3:
                if (cell) {
                    emotion_summary(&text, cell);
                    if (json_is_true(json_object_get(cell, "thin")))
                        jd_buf_puts(&text, " [thin]");
                }
                break;
            case 4:
                list_summary(&text, cell, "obstacles", "\n");
                break;
            case 5:
                if (jnum(json_object_get(cell, "goal"), "rate", &d))
                    jd_buf_printf(&text, "%s of %lld", fmt_pct(a, d),
                                  (long long)jint(json_object_get(cell, "goal"), "n"));
                break;
            case 6:
                if (jnum(sm, "share_reached", &d))
                    jd_buf_printf(&text, "%s of sessions (%lld)", fmt_pct(a, d),
                                  (long long)jint(sm, "sessions_reached"));
                break;
            case 7:
                if (jnum(sm, "drop_off", &d))
                    jd_buf_puts(&text, fmt_pct(a, d));
                break;
            default:
                resources_summary(&text, m, sid, "\n");
                break;
            }
            jd_buf_puts(out, ",");
            csv_text(out, &text);
        }
        jd_buf_puts(out, "\r\n");
    }
    ok = true;
fail:
    if (!jd_buf_ok(&text)) {
        set_err(err, err_len, "out of memory");
        ok = false;
    }
    jd_buf_free(&text);
    free(views);
    return ok;
}

/* ---- Mermaid journey ------------------------------------------------------------------------- */

static bool render_mermaid(const model *m, const char *persona, jd_buf *out, char *err,
                           size_t err_len)
{
    view *views = NULL;
    size_t nv = 0, si, ti, pi;
    const json_t *stage, *tp, *p;
    if (!pick_views(m, persona, false, &views, &nv, err, err_len)) {
        free(views);
        return false;
    }
    const view *v = &views[0];
    jd_buf title;
    jd_buf_init(&title);
    jd_buf_printf(&title, "%s: %s", jstr(m->map, "name"), v->name);
    jd_buf_puts(out, "---\ntitle: ");
    jd_buf_append(&title, "", 1);
    yaml_string(out, jd_buf_ok(&title) ? title.data : "");
    jd_buf_free(&title);
    jd_buf_puts(out, "\n---\njourney\n");
    json_array_foreach(m->stages, si, stage)
    {
        json_int_t sid = jint(stage, "id");
        jd_buf_puts(out, "    section ");
        jd_export_mermaid_text(out, jstr(stage, "name"), false);
        jd_buf_puts(out, "\n");
        json_array_foreach(m->touchpoints, ti, tp)
        {
            const json_t *cell = cell_get(m, v->id, sid, jint(tp, "id"));
            double mean;
            if (!cell || !jnum(json_object_get(cell, "emotion"), "mean", &mean))
                continue; /* no emotion evidence: no task */
            long score = lround(mean);
            score = score < 1 ? 1 : score > 5 ? 5 : score;
            jd_buf_puts(out, "        ");
            jd_export_mermaid_text(out, jstr(tp, "name"), false);
            jd_buf_printf(out, ": %ld: ", score);
            if (v->persona) {
                jd_export_mermaid_text(out, v->name, true);
            } else {
                size_t k = 0;
                json_array_foreach(m->personas, pi, p)
                {
                    const json_t *pc = cell_get(m, jint(p, "id"), sid, jint(tp, "id"));
                    if (!pc || jint(json_object_get(pc, "emotion"), "n") == 0)
                        continue;
                    if (k++)
                        jd_buf_puts(out, ", ");
                    jd_export_mermaid_text(out, jstr(p, "name"), true);
                }
                if (k == 0)
                    jd_export_mermaid_text(out, v->name, true);
            }
            jd_buf_puts(out, "\n");
        }
    }
    free(views);
    return true;
}

/* ---- draw.io --------------------------------------------------------------------------------- */

#define DX_LANE_W 170
#define DX_COL_W 250
#define DX_HEAD_H 50
#define DX_TP_H 46

static const char *emotion_fill(const json_t *cell)
{
    double mean;
    if (!cell || !jnum(json_object_get(cell, "emotion"), "mean", &mean))
        return "#f5f5f5";
    if (mean < 2.0)
        return "#f8cecc";
    if (mean < 2.75)
        return "#ffe6cc";
    if (mean < 3.5)
        return "#fff2cc";
    if (mean < 4.25)
        return "#d5e8d4";
    return "#b9e0a5";
}

/* One vertex: a UserObject carrying the cell's evidence as properties when cell != NULL. */
static void dx_vertex(jd_buf *out, const char *id, const char *label, const char *style, int x,
                      int y, int w, int h, const json_t *cell)
{
    jd_buf_puts(out, "        <UserObject id=\"");
    jd_export_xml_text(out, id);
    jd_buf_puts(out, "\" label=\"");
    jd_export_xml_text(out, label);
    jd_buf_puts(out, "\"");
    if (cell) {
        const json_t *e = json_object_get(cell, "emotion");
        const json_t *ci = json_object_get(e, "ci95");
        char a[FMT_NUM];
        double d;
        jd_buf_puts(out, " cell=\"");
        jd_export_xml_text(out, jstr(cell, "id"));
        jd_buf_printf(out, "\" n=\"%lld\" respondents=\"%lld\" thin=\"%s\" emotion_n=\"%lld\"",
                      (long long)jint(cell, "n"), (long long)jint(cell, "respondents"),
                      json_is_true(json_object_get(cell, "thin")) ? "true" : "false",
                      (long long)jint(e, "n"));
        if (jnum(e, "mean", &d))
            jd_buf_printf(out, " emotion_mean=\"%s\"", fmt_num(a, d, 4));
        if (jnumv(json_array_get(ci, 0), &d))
            jd_buf_printf(out, " ci95_low=\"%s\"", fmt_num(a, d, 4));
        if (jnumv(json_array_get(ci, 1), &d))
            jd_buf_printf(out, " ci95_high=\"%s\"", fmt_num(a, d, 4));
        jd_buf text;
        jd_buf_init(&text);
        evidence_list(&text, cell, " ");
        jd_buf_append(&text, "", 1);
        jd_buf_puts(out, " evidence=\"");
        jd_export_xml_text(out, jd_buf_ok(&text) ? text.data : "");
        jd_buf_puts(out, "\"");
        jd_buf_free(&text);
    }
    jd_buf_puts(out, ">\n          <mxCell style=\"");
    jd_export_xml_text(out, style);
    jd_buf_printf(out,
                  "\" vertex=\"1\" parent=\"1\">\n            <mxGeometry x=\"%d\" y=\"%d\" "
                  "width=\"%d\" height=\"%d\" as=\"geometry\"/>\n          </mxCell>\n"
                  "        </UserObject>\n",
                  x, y, w, h);
}

static void dx_page(jd_buf *out, const model *m, const view *v, int page)
{
    static const char *const lanes[] = {"Touchpoints", "Actions",      "Thoughts", "Emotion",
                                        "Obstacles",   "Goal & reach", "Resources"};
    size_t ns = json_array_size(m->stages), si, ti, ntp_max = 1;
    const json_t *stage, *tp;
    int heights[7] = {0, 130, 170, 90, 130, 70, 110};
    char id[160], pfx[48];
    jd_buf label;
    jd_buf_init(&label);
    snprintf(pfx, sizeof(pfx), "pg%d", page);
    json_array_foreach(m->stages, si, stage)
    {
        size_t k = 0;
        json_array_foreach(m->touchpoints, ti, tp)
        {
            if (tp_in_stage(tp, jint(stage, "id")) ||
                jint(cell_get(m, v->id, jint(stage, "id"), jint(tp, "id")), "n") > 0)
                k++;
        }
        if (k > ntp_max)
            ntp_max = k;
    }
    heights[0] = (int)ntp_max * DX_TP_H + 10;
    int width = DX_LANE_W + (int)ns * DX_COL_W, height = DX_HEAD_H;
    for (int i = 0; i < 7; i++)
        height += heights[i];
    jd_buf_printf(out, "  <diagram id=\"%s-%s\" name=\"", pfx, v->persona ? "persona" : "all");
    jd_export_xml_text(out, v->name);
    jd_buf_printf(out,
                  "\">\n    <mxGraphModel dx=\"%d\" dy=\"%d\" grid=\"1\" gridSize=\"10\" "
                  "guides=\"1\" tooltips=\"1\" connect=\"1\" arrows=\"1\" fold=\"1\" page=\"1\" "
                  "pageScale=\"1\" pageWidth=\"%d\" pageHeight=\"%d\" math=\"0\" shadow=\"0\">\n"
                  "      <root>\n        <mxCell id=\"0\"/>\n        <mxCell id=\"1\" "
                  "parent=\"0\"/>\n",
                  width, height + 60, width + 40, height + 80);
    jd_buf_printf(&label, "%s: %s", jstr(m->map, "name"), v->name);
    jd_buf_append(&label, "", 1);
    snprintf(id, sizeof(id), "%s-title", pfx);
    dx_vertex(out, id, jd_buf_ok(&label) ? label.data : "",
              "text;html=0;fontSize=18;fontStyle=1;align=left;verticalAlign=middle;", 0, 0, width,
              40, NULL);
    /* stage headers */
    json_array_foreach(m->stages, si, stage)
    {
        snprintf(id, sizeof(id), "%s-s%lld", pfx, (long long)jint(stage, "id"));
        dx_vertex(out, id, jstr(stage, "name"),
                  "rounded=0;whiteSpace=wrap;html=0;fillColor=#dae8fc;strokeColor=#6c8ebf;"
                  "fontStyle=1;",
                  DX_LANE_W + (int)si * DX_COL_W, 40, DX_COL_W, DX_HEAD_H, NULL);
    }
    int y = 40 + DX_HEAD_H;
    for (int li = 0; li < 7; li++) {
        snprintf(id, sizeof(id), "%s-lane%d", pfx, li);
        dx_vertex(out, id, lanes[li],
                  "swimlane;horizontal=0;startSize=0;html=0;whiteSpace=wrap;fillColor=#eeeeee;"
                  "fontStyle=1;",
                  0, y, DX_LANE_W, heights[li], NULL);
        json_array_foreach(m->stages, si, stage)
        {
            json_int_t sid = jint(stage, "id");
            const json_t *cell = cell_get(m, v->id, sid, 0);
            bool thin = json_is_true(json_object_get(cell, "thin"));
            int x = DX_LANE_W + (int)si * DX_COL_W;
            char style[256];
            snprintf(style, sizeof(style),
                     "rounded=0;whiteSpace=wrap;html=0;align=left;verticalAlign=top;spacing=6;"
                     "fillColor=%s;%s",
                     li == 3 ? emotion_fill(cell) : "#ffffff",
                     thin ? "dashed=1;strokeColor=#b85450;" : "strokeColor=#999999;");
            jd_buf_reset(&label);
            if (li == 0) {
                size_t k = 0;
                json_array_foreach(m->touchpoints, ti, tp)
                {
                    const json_t *c = cell_get(m, v->id, sid, jint(tp, "id"));
                    if (!c || (!tp_in_stage(tp, sid) && jint(c, "n") == 0))
                        continue;
                    bool tthin = json_is_true(json_object_get(c, "thin"));
                    jd_buf_reset(&label);
                    jd_buf_printf(&label, "%s\n", jstr(tp, "name"));
                    emotion_summary(&label, c);
                    if (tthin)
                        jd_buf_puts(&label, " [thin]");
                    jd_buf_append(&label, "", 1);
                    char tstyle[256];
                    snprintf(tstyle, sizeof(tstyle),
                             "rounded=1;whiteSpace=wrap;html=0;fontSize=10;fillColor=%s;%s",
                             emotion_fill(c),
                             tthin ? "dashed=1;strokeColor=#b85450;" : "strokeColor=#999999;");
                    snprintf(id, sizeof(id), "%s-%s", pfx, jstr(c, "id"));
                    dx_vertex(out, id, jd_buf_ok(&label) ? label.data : "", tstyle, x + 5,
                              y + 5 + (int)k * DX_TP_H, DX_COL_W - 10, DX_TP_H - 6, c);
                    k++;
                }
                continue;
            }
            double d;
            char a[FMT_NUM];
            const json_t *sm = stage_metric(m, sid);
            switch (li) {
            case 1:
                list_summary(&label, cell, "actions", "\n");
                break;
            case 2:
                list_summary(&label, cell, "quotes", "\n");
                break;
            case 3:
                emotion_summary(&label, cell);
                if (thin)
                    jd_buf_printf(&label, "\nthin evidence (n=%lld)", (long long)jint(cell, "n"));
                break;
            case 4:
                list_summary(&label, cell, "obstacles", "\n");
                break;
            case 5:
                if (jnum(json_object_get(cell, "goal"), "rate", &d))
                    jd_buf_printf(&label, "goal reached: %s\n", fmt_pct(a, d));
                if (jnum(sm, "share_reached", &d))
                    jd_buf_printf(&label, "reached by %s of sessions\n", fmt_pct(a, d));
                if (jnum(sm, "drop_off", &d))
                    jd_buf_printf(&label, "drop-off to next: %s", fmt_pct(a, d));
                break;
            default:
                resources_summary(&label, m, sid, "\n");
                break;
            }
            jd_buf_append(&label, "", 1);
            snprintf(id, sizeof(id), "%s-s%lld-lane%d", pfx, (long long)sid, li);
            dx_vertex(out, id, jd_buf_ok(&label) ? label.data : "", style, x, y, DX_COL_W,
                      heights[li], li == 6 ? NULL : cell);
        }
        y += heights[li];
    }
    jd_buf_puts(out, "      </root>\n    </mxGraphModel>\n  </diagram>\n");
    if (!jd_buf_ok(&label))
        out->failed = true;
    jd_buf_free(&label);
}

static bool render_drawio(const model *m, const char *persona, jd_buf *out, char *err,
                          size_t err_len)
{
    view *views = NULL;
    size_t nv = 0;
    if (!pick_views(m, persona, true, &views, &nv, err, err_len)) {
        free(views);
        return false;
    }
    jd_buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<mxfile host=\"journeyd\" agent=\"journeyd export\" type=\"device\" "
                     "compressed=\"false\">\n");
    for (size_t i = 0; i < nv; i++)
        dx_page(out, m, &views[i], (int)i + 1);
    jd_buf_puts(out, "</mxfile>\n");
    free(views);
    return true;
}

/* ---- HTML --------------------------------------------------------------------------------------
 */

#define HT_COL_W 230
#define HT_CURVE_H 150

static const char html_css[] =
    "@page{size:A3 landscape;margin:10mm}\n*{box-sizing:border-box}"
    "\nbody{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;"
    "margin:16px;background:#fff}\nh1{font-size:22px;margin:0 0 4px}h2{font-size:18px;"
    "margin:24px 0 8px}\n.meta{color:#57606a;margin:0 0 12px}\n.map{display:grid;gap:0;"
    "border:1px solid #d0d7de;width:max-content}\n.map>div{border-right:1px solid #d0d7de;"
    "border-bottom:1px solid #d0d7de;padding:6px 8px;vertical-align:top;overflow-wrap:anywhere}"
    "\n.lane{background:#f6f8fa;font-weight:600}\n.stage{background:#ddf4ff;font-weight:700;"
    "text-align:center}\n.stage small{display:block;font-weight:400;color:#57606a}"
    "\n.thin{outline:2px dashed #cf222e;outline-offset:-3px;"
    "background:repeating-linear-gradient(45deg,#fff,#fff 8px,#fff5f5 8px,#fff5f5 16px)}"
    "\n.badge{display:inline-block;font-size:11px;border-radius:8px;padding:0 6px;"
    "margin-left:4px;background:#ffebe9;color:#a40e26;font-weight:600}"
    "\n.tp{border:1px solid #d0d7de;border-radius:6px;padding:4px 6px;margin:0 0 4px}"
    "\n.tp .stat{color:#57606a;font-size:12px}\nul{margin:0;padding-left:18px}"
    "\n.quote{position:relative;margin:0 0 6px;padding:4px 6px;border-left:3px solid #8250df;"
    "background:#fbefff;border-radius:0 6px 6px 0}\n.quote:focus{outline:2px solid #0969da}"
    "\n.quote blockquote{margin:0}\n.quote .src{display:none;font-size:11px;color:#57606a;"
    "margin-top:2px}"
    "\n.quote:hover .src,.quote:focus .src,.quote:focus-within .src{display:block}"
    "\n.bar{height:6px;background:#cf222e;border-radius:3px;margin:2px 0 4px}"
    "\n.curve{padding:0!important}\n.curve svg{display:block}\n.res{font-size:13px}"
    ".muted{color:#8c959f}\n@media print{body{margin:0}.quote .src{display:block}"
    ".map{break-inside:avoid}section{break-after:page}}\n";

static void html_text(jd_buf *out, const char *s)
{
    jd_export_xml_text(out, s);
}

static void html_curve(jd_buf *out, const model *m, const view *v)
{
    size_t ns = json_array_size(m->stages), si;
    int w = (int)ns * HT_COL_W, top = 24, h = HT_CURVE_H - 36;
    const json_t *stage;
    char a[FMT_NUM], b[FMT_NUM];
#define Y(val) (top + (int)lround((5.0 - (val)) / 4.0 * h))
    jd_buf_printf(out,
                  "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
                  "aria-label=\"Emotion by stage, 1 (very negative) to 5 (very positive), with "
                  "95%% confidence band\">",
                  w, HT_CURVE_H, w, HT_CURVE_H);
    for (int g = 1; g <= 5; g++)
        jd_buf_printf(out,
                      "<line x1=\"0\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#eaeef2\"/>"
                      "<text x=\"2\" y=\"%d\" font-size=\"10\" fill=\"#8c959f\">%d</text>",
                      w, Y(g), Y(g), Y(g) - 2, g);
    /* confidence band: upper edge left to right, lower edge back */
    jd_buf band, line;
    jd_buf_init(&band);
    jd_buf_init(&line);
    size_t npts = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < ns; k++) {
            si = pass == 0 ? k : ns - 1 - k;
            stage = json_array_get(m->stages, si);
            const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
            const json_t *ci = json_object_get(json_object_get(cell, "emotion"), "ci95");
            double lo, hi, x = (double)si * HT_COL_W + HT_COL_W / 2.0;
            if (!jnumv(json_array_get(ci, 0), &lo) || !jnumv(json_array_get(ci, 1), &hi))
                continue;
            lo = lo < 1 ? 1 : lo > 5 ? 5 : lo;
            hi = hi < 1 ? 1 : hi > 5 ? 5 : hi;
            jd_buf_printf(&band, "%s,%d ", fmt_num(a, x, 1), pass == 0 ? Y(hi) : Y(lo));
            npts++;
        }
    }
    if (npts >= 4)
        jd_buf_printf(out, "<polygon points=\"%.*s\" fill=\"#0969da\" fill-opacity=\"0.15\"/>",
                      (int)band.len, band.data ? band.data : "");
    size_t nline = 0;
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        double mean, x = (double)si * HT_COL_W + HT_COL_W / 2.0;
        if (!jnum(json_object_get(cell, "emotion"), "mean", &mean))
            continue;
        jd_buf_printf(&line, "%s,%d ", fmt_num(a, x, 1), Y(mean));
        nline++;
    }
    if (nline >= 2)
        jd_buf_printf(out,
                      "<polyline points=\"%.*s\" fill=\"none\" stroke=\"#0969da\" "
                      "stroke-width=\"2\"/>",
                      (int)line.len, line.data ? line.data : "");
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        double mean, x = (double)si * HT_COL_W + HT_COL_W / 2.0;
        if (!jnum(json_object_get(cell, "emotion"), "mean", &mean))
            continue;
        bool thin = json_is_true(json_object_get(cell, "thin"));
        jd_buf_printf(out,
                      "<circle cx=\"%s\" cy=\"%d\" r=\"6\" fill=\"%s\" stroke=\"#0969da\" "
                      "stroke-width=\"2\"%s><title>",
                      fmt_num(a, x, 1), Y(mean), thin ? "#fff" : "#0969da",
                      thin ? " stroke-dasharray=\"3 2\"" : "");
        html_text(out, jstr(stage, "name"));
        jd_buf_puts(out, ": ");
        jd_buf text;
        jd_buf_init(&text);
        emotion_summary(&text, cell);
        jd_buf_append(&text, "", 1);
        html_text(out, jd_buf_ok(&text) ? text.data : "");
        jd_buf_free(&text);
        jd_buf_printf(out,
                      "%s</title></circle><text x=\"%s\" y=\"%d\" font-size=\"12\" "
                      "text-anchor=\"middle\" fill=\"#1f2328\">%s</text>",
                      thin ? " (thin evidence)" : "", fmt_num(b, x, 1), Y(mean) - 10,
                      fmt_num(a, mean, 2));
    }
    jd_buf_puts(out, "</svg>");
    if (!jd_buf_ok(&band) || !jd_buf_ok(&line))
        out->failed = true;
    jd_buf_free(&band);
    jd_buf_free(&line);
#undef Y
}

static void html_open_cell(jd_buf *out, const json_t *cell)
{
    bool thin = json_is_true(json_object_get(cell, "thin"));
    jd_buf_printf(out, "<div%s>", thin ? " class=\"thin\"" : "");
}

static void html_quotes(jd_buf *out, const json_t *cell)
{
    size_t qi;
    const json_t *q;
    if (json_array_size(json_object_get(cell, "quotes")) == 0) {
        jd_buf_puts(out, "<span class=\"muted\">no quotes</span>");
        return;
    }
    json_array_foreach(json_object_get(cell, "quotes"), qi, q)
    {
        jd_buf src;
        jd_buf_init(&src);
        jd_buf_printf(&src, "%s · %s · %.10s", jstr(q, "evidence"), jstr(q, "source"),
                      jstr(q, "at"));
        jd_buf_append(&src, "", 1);
        const char *s = jd_buf_ok(&src) ? src.data : "";
        jd_buf_puts(out, "<figure class=\"quote\" tabindex=\"0\" title=\"Source: ");
        html_text(out, s);
        jd_buf_puts(out, "\"><blockquote>");
        html_text(out, jstr(q, "text"));
        jd_buf_puts(out, "</blockquote><figcaption class=\"src\">Source: ");
        html_text(out, s);
        jd_buf_puts(out, "</figcaption></figure>");
        jd_buf_free(&src);
    }
}

static void html_view(jd_buf *out, const model *m, const view *v)
{
    size_t ns = json_array_size(m->stages), si, ti, i;
    const json_t *stage, *tp, *it;
    char a[FMT_NUM];
    double d;
    jd_buf_puts(out, "<section><h2>");
    html_text(out, v->name);
    jd_buf_puts(out, "</h2>");
    if (v->persona && *jstr(v->persona, "description")) {
        jd_buf_puts(out, "<p class=\"meta\">");
        html_text(out, jstr(v->persona, "description"));
        jd_buf_puts(out, "</p>");
    }
    jd_buf_printf(out, "<div class=\"map\" style=\"grid-template-columns:150px repeat(%zu,%dpx)\">",
                  ns, HT_COL_W);
    jd_buf_puts(out, "<div class=\"lane\">Stage</div>");
    json_array_foreach(m->stages, si, stage)
    {
        jd_buf_puts(out, "<div class=\"stage\">");
        html_text(out, jstr(stage, "name"));
        const json_t *sm = stage_metric(m, jint(stage, "id"));
        if (jnum(sm, "share_reached", &d)) {
            jd_buf_printf(out, "<small>reached by %s of sessions", fmt_pct(a, d));
            if (jnum(sm, "drop_off", &d))
                jd_buf_printf(out, " · drop-off to next %s", fmt_pct(a, d));
            jd_buf_puts(out, "</small>");
        }
        jd_buf_puts(out, "</div>");
    }
    /* touchpoints */
    jd_buf_puts(out, "<div class=\"lane\">Touchpoints</div>");
    json_array_foreach(m->stages, si, stage)
    {
        json_int_t sid = jint(stage, "id");
        jd_buf_puts(out, "<div>");
        json_array_foreach(m->touchpoints, ti, tp)
        {
            const json_t *c = cell_get(m, v->id, sid, jint(tp, "id"));
            if (!c || (!tp_in_stage(tp, sid) && jint(c, "n") == 0))
                continue;
            bool thin = json_is_true(json_object_get(c, "thin"));
            jd_buf_printf(out, "<div class=\"tp%s\" title=\"cell ", thin ? " thin" : "");
            html_text(out, jstr(c, "id"));
            jd_buf_puts(out, "\"><b>");
            html_text(out, jstr(tp, "name"));
            jd_buf_puts(out, "</b>");
            if (thin)
                jd_buf_puts(out, "<span class=\"badge\">thin</span>");
            jd_buf_puts(out, "<div class=\"stat\">");
            jd_buf text;
            jd_buf_init(&text);
            emotion_summary(&text, c);
            jd_buf_printf(&text, " · %lld answers, %lld respondents", (long long)jint(c, "n"),
                          (long long)jint(c, "respondents"));
            jd_buf_append(&text, "", 1);
            html_text(out, jd_buf_ok(&text) ? text.data : "");
            jd_buf_free(&text);
            jd_buf_puts(out, "</div></div>");
        }
        jd_buf_puts(out, "</div>");
    }
    /* actions */
    jd_buf_puts(out, "<div class=\"lane\">Actions</div>");
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        html_open_cell(out, cell);
        if (json_array_size(json_object_get(cell, "actions")) == 0)
            jd_buf_puts(out, "<span class=\"muted\">no actions</span>");
        else
            jd_buf_puts(out, "<ul>");
        json_array_foreach(json_object_get(cell, "actions"), i, it)
        {
            jd_buf_puts(out, "<li>");
            html_text(out, jstr(it, "text"));
            jd_buf_printf(out, " <span class=\"muted\">(%lld)</span></li>",
                          (long long)jint(it, "count"));
        }
        if (json_array_size(json_object_get(cell, "actions")) > 0)
            jd_buf_puts(out, "</ul>");
        jd_buf_puts(out, "</div>");
    }
    /* thoughts */
    jd_buf_puts(out, "<div class=\"lane\">Thoughts</div>");
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        html_open_cell(out, cell);
        html_quotes(out, cell);
        jd_buf_puts(out, "</div>");
    }
    /* emotion curve */
    jd_buf_printf(out,
                  "<div class=\"lane\">Emotion<br><small class=\"muted\">mean, 95%% CI "
                  "band; hollow = thin</small></div><div class=\"curve\" "
                  "style=\"grid-column:span %zu\">",
                  ns);
    html_curve(out, m, v);
    jd_buf_puts(out, "</div>");
    jd_buf_puts(out, "<div class=\"lane\">Evidence</div>");
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        html_open_cell(out, cell);
        jd_buf_printf(out, "%lld answers, %lld respondents", (long long)jint(cell, "n"),
                      (long long)jint(cell, "respondents"));
        if (json_is_true(json_object_get(cell, "thin")))
            jd_buf_puts(out, "<span class=\"badge\">thin evidence</span>");
        if (jnum(json_object_get(cell, "goal"), "rate", &d))
            jd_buf_printf(out, "<br>goal reached: %s", fmt_pct(a, d));
        jd_buf_puts(out, "</div>");
    }
    /* obstacles */
    jd_buf_puts(out, "<div class=\"lane\">Obstacles</div>");
    json_array_foreach(m->stages, si, stage)
    {
        const json_t *cell = cell_get(m, v->id, jint(stage, "id"), 0);
        html_open_cell(out, cell);
        if (json_array_size(json_object_get(cell, "obstacles")) == 0)
            jd_buf_puts(out, "<span class=\"muted\">no obstacles</span>");
        json_array_foreach(json_object_get(cell, "obstacles"), i, it)
        {
            double share = 0;
            jnum(it, "share", &share);
            html_text(out, jstr(it, "name"));
            jd_buf_printf(out, " <span class=\"muted\">%lld · %s</span>",
                          (long long)jint(it, "count"), fmt_pct(a, share));
            jd_buf_printf(out, "<div class=\"bar\" style=\"width:%d%%\"></div>",
                          (int)lround(share < 0   ? 0
                                      : share > 1 ? 100
                                                  : share * 100));
        }
        jd_buf_puts(out, "</div>");
    }
    /* resources */
    jd_buf_puts(out, "<div class=\"lane\">Resources</div>");
    json_array_foreach(m->stages, si, stage)
    {
        size_t k = 0;
        jd_buf_puts(out, "<div class=\"res\">");
        json_array_foreach(m->resources, i, it)
        {
            if (jint(it, "stage_id") != jint(stage, "id"))
                continue;
            jd_buf_puts(out, k++ ? "<br>" : "");
            jd_buf_puts(out, "<b>");
            html_text(out, jstr(it, "name"));
            jd_buf_puts(out, "</b> <span class=\"muted\">");
            html_text(out, jstr(it, "kind"));
            if (*jstr(it, "owner")) {
                jd_buf_puts(out, " · ");
                html_text(out, jstr(it, "owner"));
            }
            jd_buf_puts(out, "</span>");
        }
        if (k == 0)
            jd_buf_puts(out, "<span class=\"muted\">none</span>");
        jd_buf_puts(out, "</div>");
    }
    jd_buf_puts(out, "</div></section>\n");
}

static bool render_html(const model *m, const char *persona, jd_buf *out, char *err, size_t err_len)
{
    view *views = NULL;
    size_t nv = 0;
    double d;
    char a[FMT_NUM];
    if (!pick_views(m, persona, true, &views, &nv, err, err_len)) {
        free(views);
        return false;
    }
    jd_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                     "style-src 'unsafe-inline'; img-src data:\"><title>");
    html_text(out, jstr(m->map, "name"));
    jd_buf_puts(out, " · journey map</title><style>");
    jd_buf_puts(out, html_css);
    jd_buf_puts(out, "</style></head><body><header><h1>");
    html_text(out, jstr(m->map, "name"));
    jd_buf_puts(out, "</h1><p class=\"meta\">");
    if (*jstr(m->map, "goal")) {
        jd_buf_puts(out, "Goal: ");
        html_text(out, jstr(m->map, "goal"));
        jd_buf_puts(out, " · ");
    }
    jd_buf_puts(out, "Generated ");
    html_text(out, jstr(m->doc, "generated_at"));
    jd_buf_printf(out, " · cells with fewer than %lld answers are marked thin",
                  (long long)jint(json_object_get(m->doc, "filters"), "min_evidence"));
    if (m->conversion && jint(m->conversion, "converted") > 0) {
        jd_buf_printf(out, " · %lld converted respondents",
                      (long long)jint(m->conversion, "converted"));
        if (jnum(m->conversion, "touches_median", &d))
            jd_buf_printf(out, ", median %s touches before purchase", fmt_num(a, d, 1));
    }
    jd_buf_puts(out, "</p></header>\n");
    for (size_t i = 0; i < nv; i++)
        html_view(out, m, &views[i]);
    jd_buf_puts(out, "</body></html>\n");
    free(views);
    return true;
}

/* ---- diff HTML (a jd_map_diff document) ------------------------------------------------------ */

static void diff_obstacles(jd_buf *out, const json_t *list)
{
    size_t i;
    const json_t *o;
    if (json_array_size(list) == 0) {
        jd_buf_puts(out, "<span class=\"muted\">none</span>");
        return;
    }
    json_array_foreach(list, i, o)
    {
        jd_buf_puts(out, i ? ", " : "");
        html_text(out, jstr(o, "name"));
        jd_buf_printf(out, " <span class=\"muted\">(%lld)</span>", (long long)jint(o, "count"));
    }
}

static bool render_diff_html(const json_t *doc, jd_buf *out, char *err, size_t err_len)
{
    const json_t *cells = json_object_get(doc, "cells"), *c;
    size_t i, shown = 0;
    char a[FMT_NUM], b[FMT_NUM];
    if (!json_is_object(doc) || strcmp(jstr(doc, "format"), "journeyd.map-diff/1") != 0 ||
        !json_is_array(cells)) {
        set_err(err, err_len, "diff-html needs a journeyd.map-diff/1 document (jd_map_diff)");
        return false;
    }
    jd_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                     "style-src 'unsafe-inline'\"><title>");
    html_text(out, jstr(doc, "map_name"));
    jd_buf_puts(out, " · map diff</title><style>");
    jd_buf_puts(out, html_css);
    jd_buf_puts(out, "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:4px "
                     "8px;text-align:left;vertical-align:top}th{background:#f6f8fa}"
                     ".up{color:#1a7f37}.down{color:#cf222e}.sig{font-weight:700}"
                     "</style></head><body><h1>");
    html_text(out, jstr(doc, "map_name"));
    jd_buf_printf(out,
                  ": version %lld → %lld</h1><p class=\"meta\">Emotion change tested with "
                  "Welch's t (two-sided, significant when p &lt; 0.05). Cells whose n, "
                  "emotion and obstacles did not change are left out.</p>",
                  (long long)jint(json_object_get(doc, "v1"), "version"),
                  (long long)jint(json_object_get(doc, "v2"), "version"));
    jd_buf_puts(out, "<table><thead><tr><th>Persona</th><th>Stage</th><th>Touchpoint</th>"
                     "<th>Answers</th><th>Emotion</th><th>Welch t (df), p</th>"
                     "<th>New obstacles</th><th>Resolved obstacles</th></tr></thead><tbody>");
    json_array_foreach(cells, i, c)
    {
        const json_t *n = json_object_get(c, "n"), *e = json_object_get(c, "emotion");
        double d1 = 0, d2 = 0, ch = 0, t = 0, df = 0, pv = 0;
        bool has1 = jnum(e, "v1", &d1), has2 = jnum(e, "v2", &d2);
        bool moved = jint(n, "change") != 0 || (has1 != has2) ||
                     (jnum(e, "change", &ch) && ch != 0.0) ||
                     json_array_size(json_object_get(c, "obstacles_new")) > 0 ||
                     json_array_size(json_object_get(c, "obstacles_resolved")) > 0;
        if (!moved)
            continue;
        shown++;
        jd_buf_puts(out, "<tr><td>");
        html_text(out, jstr(c, "persona"));
        jd_buf_puts(out, "</td><td>");
        html_text(out, jstr(c, "stage"));
        jd_buf_puts(out, "</td><td>");
        html_text(out, json_is_string(json_object_get(c, "touchpoint")) ? jstr(c, "touchpoint")
                                                                        : "(whole stage)");
        jd_buf_printf(out, "</td><td>%lld → %lld</td><td>", (long long)jint(n, "v1"),
                      (long long)jint(n, "v2"));
        jd_buf_puts(out, has1 ? fmt_num(a, d1, 2) : "–");
        jd_buf_puts(out, " → ");
        jd_buf_puts(out, has2 ? fmt_num(b, d2, 2) : "–");
        if (jnum(e, "change", &ch))
            jd_buf_printf(out, " <span class=\"%s\">(%s%s)</span>", ch >= 0 ? "up" : "down",
                          ch >= 0 ? "+" : "", fmt_num(a, ch, 2));
        jd_buf_puts(out, "</td><td>");
        if (jnum(e, "welch_t", &t) && jnum(e, "df", &df) && jnum(e, "p", &pv)) {
            bool sig = json_is_true(json_object_get(e, "significant"));
            jd_buf_printf(out, "<span%s>t = %s (%s), p = ", sig ? " class=\"sig\"" : "",
                          fmt_num(a, t, 2), fmt_num(b, df, 1));
            jd_buf_printf(out, "%s%s</span>", fmt_num(a, pv, 3), sig ? " · significant" : "");
        } else {
            jd_buf_puts(out, "<span class=\"muted\">too few answers</span>");
        }
        jd_buf_puts(out, "</td><td>");
        diff_obstacles(out, json_object_get(c, "obstacles_new"));
        jd_buf_puts(out, "</td><td>");
        diff_obstacles(out, json_object_get(c, "obstacles_resolved"));
        jd_buf_puts(out, "</td></tr>");
    }
    jd_buf_printf(out,
                  "</tbody></table><p class=\"meta\">%zu of %zu cells changed.</p>"
                  "</body></html>\n",
                  shown, json_array_size(cells));
    return true;
}

/* ---- entry points ---------------------------------------------------------------------------- */

static const struct {
    const char *name, *type, *ext;
} formats[] = {
    {"json", "application/json", "json"},
    {"csv", "text/csv; charset=utf-8", "csv"},
    {"csv-grid", "text/csv; charset=utf-8", "csv"},
    {"mermaid", "text/vnd.mermaid; charset=utf-8", "mmd"},
    {"drawio", "application/vnd.jgraph.mxfile", "drawio"},
    {"html", "text/html; charset=utf-8", "html"},
    {"diff-html", "text/html; charset=utf-8", "html"},
};

static int format_index(const char *format)
{
    for (size_t i = 0; format && i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcmp(formats[i].name, format) == 0)
            return (int)i;
    return -1;
}

const char *jd_export_content_type(const char *format)
{
    int i = format_index(format);
    return i < 0 ? NULL : formats[i].type;
}

const char *jd_export_extension(const char *format)
{
    int i = format_index(format);
    return i < 0 ? NULL : formats[i].ext;
}

bool jd_export_render(const char *format, const json_t *doc, const char *persona, jd_buf *out,
                      char *err, size_t err_len)
{
    model m;
    bool ok = false;
    int f = format_index(format);
    if (f < 0) {
        set_err(err, err_len,
                "unknown format \"%s\" (json, csv, csv-grid, mermaid, drawio, html, diff-html)",
                format ? format : "");
        return false;
    }
    if (f == 6) {
        ok = render_diff_html(doc, out, err, err_len);
        if (ok && !jd_buf_ok(out)) {
            set_err(err, err_len, "out of memory");
            ok = false;
        }
        return ok;
    }
    if (!model_init(&m, doc, err, err_len))
        return false;
    switch (f) {
    case 0:
        ok = render_json(&m, out, err, err_len);
        break;
    case 1:
        ok = render_csv_long(&m, persona, out, err, err_len);
        break;
    case 2:
        ok = render_csv_grid(&m, persona, out, err, err_len);
        break;
    case 3:
        ok = render_mermaid(&m, persona, out, err, err_len);
        break;
    case 4:
        ok = render_drawio(&m, persona, out, err, err_len);
        break;
    default:
        ok = render_html(&m, persona, out, err, err_len);
        break;
    }
    model_free(&m);
    if (ok && !jd_buf_ok(out)) {
        set_err(err, err_len, "out of memory");
        ok = false;
    }
    return ok;
}
