/* Strict RFC 4180 CSV reader with UTF-8 validation, and the findings file loader, for journeyctl
 * (see journeyctl_csv.h). The reader walks the input once; each record's fields are unescaped into
 * one growable buffer, so a record costs no allocation once the buffer has grown to the widest
 * record. The loader writes every row's JSON object into one buffer too. */
#include "journeyctl_csv.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JD_CSV_MAX_FIELDS 4096

void jd_csv_init(jd_csv *c, const char *data, size_t len)
{
    memset(c, 0, sizeof(*c));
    jd_buf_init(&c->text);
    c->data = data;
    c->len = len;
    c->line = 1;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        c->pos = 3;
}

void jd_csv_free(jd_csv *c)
{
    jd_buf_free(&c->text);
    free(c->offsets);
    free(c->lengths);
    c->offsets = NULL;
    c->lengths = NULL;
    c->nfields = c->cap = 0;
}

bool jd_utf8_valid(const char *text, size_t len, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t need;
        uint32_t cp, min;
        if (b == 0)
            goto invalid;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1, cp = b & 0x1Fu, min = 0x80;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2, cp = b & 0x0Fu, min = 0x800;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            goto invalid;
        }
        if (len - i <= need)
            goto invalid;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                goto invalid;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            goto invalid;
        i += need + 1;
    }
    return true;
invalid:
    if (bad)
        *bad = i;
    return false;
}

static int csv_error(jd_csv *c, size_t line, const char *what)
{
    c->error_line = line;
    snprintf(c->error, sizeof(c->error), "%s", what);
    c->pos = c->len;
    c->data = NULL; /* every further call fails */
    return -1;
}

static bool end_field(jd_csv *c, size_t start)
{
    if (c->nfields == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        size_t *o = realloc(c->offsets, cap * sizeof(*o));
        if (!o)
            return false;
        c->offsets = o;
        size_t *l = realloc(c->lengths, cap * sizeof(*l));
        if (!l)
            return false;
        c->lengths = l;
        c->cap = cap;
    }
    c->offsets[c->nfields] = start;
    c->lengths[c->nfields] = c->text.len - start;
    c->nfields++;
    jd_buf_append(&c->text, "", 1);
    return jd_buf_ok(&c->text);
}

/* Parses one record starting at c->pos. Returns 1, or -1 on an error. Sets *blank when the record
 * is a completely empty line. */
static int parse_record(jd_csv *c, bool *blank)
{
    const char *d = c->data;
    bool only_empty_unquoted = true;
    c->nfields = 0;
    jd_buf_reset(&c->text);
    c->record_line = c->line;
    for (;;) {
        size_t start = c->text.len;
        if (c->pos < c->len && d[c->pos] == '"') {
            size_t opened = c->line;
            only_empty_unquoted = false;
            c->pos++;
            for (;;) {
                if (c->pos >= c->len) {
                    char msg[96];
                    snprintf(msg, sizeof(msg), "quoted field opened on line %zu is never closed",
                             opened);
                    return csv_error(c, opened, msg);
                }
                const char *q = memchr(d + c->pos, '"', c->len - c->pos);
                size_t run = (q ? (size_t)(q - d) : c->len) - c->pos;
                for (const char *nl = d + c->pos;
                     (nl = memchr(nl, '\n', (size_t)(d + c->pos + run - nl))); nl++)
                    c->line++;
                jd_buf_append(&c->text, d + c->pos, run);
                c->pos += run;
                if (!q)
                    continue; /* reports the unclosed field above */
                if (c->pos + 1 < c->len && d[c->pos + 1] == '"') {
                    jd_buf_append(&c->text, "\"", 1);
                    c->pos += 2;
                    continue;
                }
                c->pos++; /* the closing quote */
                break;
            }
            if (c->pos < c->len && d[c->pos] != ',' && d[c->pos] != '\n' &&
                !(d[c->pos] == '\r' && c->pos + 1 < c->len && d[c->pos + 1] == '\n'))
                return csv_error(c, c->line,
                                 "unexpected text after a closing quote (a quote inside a quoted "
                                 "field must be doubled)");
        } else {
            size_t p = c->pos;
            while (p < c->len && d[p] != ',' && d[p] != '\n' && d[p] != '\r' && d[p] != '"')
                p++;
            if (p < c->len && d[p] == '"')
                return csv_error(c, c->line,
                                 "quote inside an unquoted field (quote the whole field and "
                                 "double the quote)");
            if (p < c->len && d[p] == '\r' && !(p + 1 < c->len && d[p + 1] == '\n'))
                return csv_error(c, c->line, "carriage return without a line feed outside quotes");
            if (p > c->pos)
                only_empty_unquoted = false;
            jd_buf_append(&c->text, d + c->pos, p - c->pos);
            c->pos = p;
        }
        if (c->nfields >= JD_CSV_MAX_FIELDS)
            return csv_error(c, c->record_line, "more than 4096 fields in one record");
        if (!end_field(c, start))
            return csv_error(c, c->record_line, "out of memory");
        if (c->pos >= c->len)
            break;
        if (d[c->pos] == ',') {
            c->pos++;
            only_empty_unquoted = false;
            continue;
        }
        c->pos += d[c->pos] == '\r' ? 2 : 1; /* CRLF or LF */
        c->line++;
        break;
    }
    *blank = only_empty_unquoted && c->nfields == 1;
    return 1;
}

int jd_csv_next(jd_csv *c)
{
    if (!c->data)
        return -1;
    for (;;) {
        if (c->pos >= c->len)
            return 0;
        size_t from = c->pos;
        bool blank = false;
        if (parse_record(c, &blank) < 0)
            return -1;
        size_t bad;
        if (!jd_utf8_valid(c->data + from, c->pos - from, &bad)) {
            size_t line = c->record_line;
            for (size_t i = from; i < from + bad; i++)
                if (c->data[i] == '\n')
                    line++;
            unsigned char b = (unsigned char)c->data[from + bad];
            char msg[96];
            if (b == 0)
                snprintf(msg, sizeof(msg), "NUL byte in the text");
            else
                snprintf(msg, sizeof(msg), "invalid UTF-8 (byte 0x%02X); save the file as UTF-8",
                         b);
            return csv_error(c, line, msg);
        }
        if (!blank)
            return 1;
    }
}

const char *jd_csv_field(const jd_csv *c, size_t i, size_t *len)
{
    if (i >= c->nfields) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = c->lengths[i];
    return c->text.data + c->offsets[i];
}

/* ------------------------------------------------------------------------------------------- */
/* Findings files */

#define MAX_HEADER_COLUMNS 64

const char *const jd_findings_columns[JD_FINDINGS_NCOLUMNS] = {
    "persona",  "stage", "touchpoint",  "action", "thought",     "emotion",
    "obstacle", "quote", "interviewee", "date",   "goal_reached"};

void jd_findings_init(jd_findings *f)
{
    memset(f, 0, sizeof(*f));
    jd_buf_init(&f->rows);
}

void jd_findings_free(jd_findings *f)
{
    for (size_t i = 0; i < f->nrejects; i++)
        free(f->rejects[i].reason);
    free(f->rejects);
    free(f->offsets);
    free(f->lines);
    jd_buf_free(&f->rows);
    jd_findings_init(f);
}

static bool findings_error(jd_findings *f, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool findings_error(jd_findings *f, size_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof(f->error), fmt, ap);
    va_end(ap);
    f->error_line = line;
    return false;
}

bool jd_findings_add_reject(jd_findings *f, long long line, const char *fmt, ...)
{
    if (f->nrejects == f->rcap) {
        size_t cap = f->rcap ? f->rcap * 2 : 64;
        jd_findings_reject *r = realloc(f->rejects, cap * sizeof(*r));
        if (!r)
            return false;
        f->rejects = r;
        f->rcap = cap;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    f->rejects[f->nrejects].line = line;
    f->rejects[f->nrejects].reason = strdup(msg);
    if (!f->rejects[f->nrejects].reason)
        return false;
    f->nrejects++;
    return true;
}

static int cmp_reject(const void *a, const void *b)
{
    const jd_findings_reject *x = a, *y = b;
    return (x->line > y->line) - (x->line < y->line);
}

void jd_findings_sort_rejects(jd_findings *f)
{
    if (f->nrejects > 1)
        qsort(f->rejects, f->nrejects, sizeof(*f->rejects), cmp_reject);
}

/* Closes the row being built in f->rows (started at offset start, from source line line). */
static bool end_row(jd_findings *f, size_t start, long long line)
{
    if (f->count + 1 >= f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 1024;
        size_t *o = realloc(f->offsets, cap * sizeof(*o));
        if (!o)
            return false;
        f->offsets = o;
        long long *l = realloc(f->lines, cap * sizeof(*l));
        if (!l)
            return false;
        f->lines = l;
        f->cap = cap;
    }
    f->lines[f->count] = line;
    f->offsets[f->count++] = start;
    f->offsets[f->count] = f->rows.len;
    return jd_buf_ok(&f->rows);
}

static int finding_column(const char *name, size_t len)
{
    while (len > 0 && (*name == ' ' || *name == '\t'))
        name++, len--;
    while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < JD_FINDINGS_NCOLUMNS; i++)
        if (strlen(jd_findings_columns[i]) == len &&
            strncasecmp(jd_findings_columns[i], name, len) == 0)
            return (int)i;
    return -1;
}

bool jd_findings_load_csv(jd_findings *f, const char *data, size_t len)
{
    jd_csv csv;
    int col_of[MAX_HEADER_COLUMNS];
    size_t ncols;
    bool ok = false;
    jd_csv_init(&csv, data, len);
    int r = jd_csv_next(&csv);
    if (r == 0) {
        findings_error(f, 0, "the file is empty (expected a header row)");
        goto fail;
    }
    if (r < 0)
        goto parse_error;
    ncols = csv.nfields;
    if (ncols > MAX_HEADER_COLUMNS) {
        findings_error(f, csv.record_line, "%zu columns in the header, at most %d", ncols,
                       MAX_HEADER_COLUMNS);
        goto fail;
    }
    for (size_t i = 0; i < ncols; i++) {
        size_t n;
        const char *name = jd_csv_field(&csv, i, &n);
        col_of[i] = finding_column(name, n);
        if (col_of[i] < 0) {
            findings_error(f, csv.record_line,
                           "unknown column \"%.60s\" (the columns are persona, stage, touchpoint, "
                           "action, thought, emotion, obstacle, quote, interviewee, date, "
                           "goal_reached)",
                           name);
            goto fail;
        }
        for (size_t k = 0; k < i; k++)
            if (col_of[k] == col_of[i]) {
                findings_error(f, csv.record_line, "column \"%s\" appears twice",
                               jd_findings_columns[col_of[i]]);
                goto fail;
            }
    }
    while ((r = jd_csv_next(&csv)) == 1) {
        long long line = (long long)csv.record_line;
        if (csv.nfields != ncols) {
            if (!jd_findings_add_reject(f, line, "%zu fields, the header has %zu", csv.nfields,
                                        ncols))
                goto oom;
            continue;
        }
        size_t start = f->rows.len;
        jd_buf_printf(&f->rows, "{\"line\":%lld", line);
        for (size_t i = 0; i < ncols; i++) {
            size_t n;
            const char *v = jd_csv_field(&csv, i, &n);
            if (n == 0)
                continue; /* an empty cell is a value not given */
            jd_buf_puts(&f->rows, ",\"");
            jd_buf_puts(&f->rows, jd_findings_columns[col_of[i]]);
            jd_buf_puts(&f->rows, "\":");
            jd_buf_json_string(&f->rows, v, n);
        }
        jd_buf_puts(&f->rows, "}");
        if (!end_row(f, start, line))
            goto oom;
    }
    if (r < 0)
        goto parse_error;
    ok = true;
    goto fail;
parse_error:
    findings_error(f, csv.error_line, "%s", csv.error);
    goto fail;
oom:
    findings_error(f, 0, "out of memory");
fail:
    jd_csv_free(&csv);
    return ok;
}

/* Fills lines[i] with the physical line where element i of the (valid) JSON array text starts. */
static void json_element_lines(const char *d, size_t len, long long *lines, size_t n)
{
    size_t p = 0;
    long long line = 1;
    while (p < len && d[p] != '[')
        line += d[p++] == '\n';
    p++;
    for (size_t i = 0; i < n; i++) {
        while (p < len && strchr(" \t\r\n,", d[p]))
            line += d[p++] == '\n';
        lines[i] = line;
        for (int depth = 0; p < len; p++) {
            char ch = d[p];
            if (ch == '"') {
                for (p++; p < len && d[p] != '"'; p++)
                    p += d[p] == '\\';
            } else if (ch == '\n') {
                line++;
            } else if (ch == '[' || ch == '{') {
                depth++;
            } else if ((ch == ']' || ch == '}') && depth-- == 0) {
                break;
            } else if (ch == ',' && depth == 0) {
                break;
            }
        }
    }
}

bool jd_findings_load_json(jd_findings *f, const char *data, size_t len)
{
    json_error_t err;
    long long *lines = NULL;
    bool ok = false;
    json_t *doc = json_loadb(data, len, 0, &err);
    if (!doc)
        return findings_error(f, (size_t)(err.line > 0 ? err.line : 0), "%s (column %d)", err.text,
                              err.column);
    if (!json_is_array(doc)) {
        findings_error(f, 0, "expected a JSON array of objects");
        goto fail;
    }
    size_t n = json_array_size(doc);
    lines = calloc(n ? n : 1, sizeof(*lines));
    if (!lines)
        goto oom;
    json_element_lines(data, len, lines, n);
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(doc, i), *val;
        const char *key;
        if (!json_is_object(row)) {
            if (!jd_findings_add_reject(f, lines[i], "not a JSON object"))
                goto oom;
            continue;
        }
        if (json_object_get(row, "line")) {
            if (!jd_findings_add_reject(f, lines[i], "\"line\" is journeyctl's own key"))
                goto oom;
            continue;
        }
        size_t start = f->rows.len;
        jd_buf_printf(&f->rows, "{\"line\":%lld", lines[i]);
        json_object_foreach(row, key, val)
        {
            char *v = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!v)
                goto oom;
            jd_buf_puts(&f->rows, ",");
            jd_buf_json_string(&f->rows, key, strlen(key));
            jd_buf_puts(&f->rows, ":");
            jd_buf_puts(&f->rows, v);
            free(v);
        }
        jd_buf_puts(&f->rows, "}");
        if (!end_row(f, start, lines[i]))
            goto oom;
    }
    ok = true;
    goto fail;
oom:
    findings_error(f, 0, "out of memory");
fail:
    free(lines);
    json_decref(doc);
    return ok;
}
