/* Strict RFC 4180 CSV reader with UTF-8 validation for journeyctl (see journeyctl_csv.h). The
 * reader walks the input once; each record's fields are unescaped into one growable buffer, so a
 * record costs no allocation once the buffer has grown to the widest record. */
#include "journeyctl_csv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                for (const char *nl = d + c->pos; (nl = memchr(nl, '\n', (size_t)(d + c->pos + run - nl)));
                     nl++)
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
                snprintf(msg, sizeof(msg),
                         "invalid UTF-8 (byte 0x%02X); save the file as UTF-8", b);
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
