/* The file side of journeyctl's interview findings import: a strict RFC 4180 CSV reader, and a
 * loader that turns a findings file (CSV or JSON) into the JSON rows jd_import_findings takes.
 *
 * The CSV reader reads a whole file
 * held in memory one record at a time: fields separated by commas, records ended by CRLF or LF,
 * fields optionally enclosed in double quotes, where a doubled quote stands for one quote and
 * commas, CR and LF are data. Anything else is an error that names the physical line: a quote in
 * an unquoted field, text after a closing quote, a quoted field never closed, a bare CR, a NUL
 * byte, or bytes that are not valid UTF-8 (overlong forms, surrogates and code points above
 * U+10FFFF included). A UTF-8 byte order mark at the start is skipped, and lines that are
 * completely empty are skipped (editors leave them at the end of files).
 *
 * The loader maps a CSV header (any order, any subset of the findings columns, case and
 * surrounding blanks ignored) to the columns, and makes one
 * JSON object per row with the source line number under "line". JSON objects are passed on as
 * they are (jd_import_findings judges their keys and values, and knows aliases such as
 * "obstacles"). A row it can judge bad by itself (a wrong number of fields, an element that is not
 * an object or that has its own "line") becomes a reject instead; a file it cannot read at all (bad
 * CSV quoting, invalid UTF-8 or JSON, an unknown header column) is an error. Pure C over jansson,
 * no I/O. */
#ifndef JD_JOURNEYCTL_CSV_H
#define JD_JOURNEYCTL_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef struct jd_csv {
    const char *data;
    size_t len;
    size_t pos;
    size_t line;        /* physical line (1-based) at pos */
    size_t record_line; /* physical line where the current record starts */
    jd_buf text;        /* the current record's fields, each NUL-terminated */
    size_t *offsets;    /* start of each field in text.data */
    size_t *lengths;    /* length of each field, without the NUL */
    size_t nfields;
    size_t cap;
    size_t error_line; /* line of the error when jd_csv_next returned -1 */
    char error[160];   /* what is wrong, without the line number */
} jd_csv;

/* Prepares c to read len bytes at data (not copied: keep them alive while reading). */
void jd_csv_init(jd_csv *c, const char *data, size_t len);
void jd_csv_free(jd_csv *c);

/* Reads the next record. Returns 1 with the record's fields (jd_csv_field) and c->record_line,
 * 0 at the end of the input, -1 on an error described by c->error and c->error_line (reading
 * further after an error keeps returning -1). */
int jd_csv_next(jd_csv *c) __attribute__((warn_unused_result));

/* Field i (< c->nfields) of the current record, NUL-terminated; *len gets its length when len is
 * not NULL. Valid until the next jd_csv_next. */
const char *jd_csv_field(const jd_csv *c, size_t i, size_t *len);

/* True when text[0..len) is valid UTF-8 without NUL bytes; otherwise *bad gets the offset of the
 * first offending byte. */
bool jd_utf8_valid(const char *text, size_t len, size_t *bad) __attribute__((warn_unused_result));

/* The columns of a findings file, in the order of the issue. */
extern const char *const jd_findings_columns[];
#define JD_FINDINGS_NCOLUMNS 11

typedef struct jd_findings_reject {
    long long line;
    char *reason;
} jd_findings_reject;

typedef struct jd_findings {
    jd_buf rows;      /* the rows' JSON objects, back to back */
    size_t *offsets;  /* where row i starts in rows.data; offsets[count] = rows.len */
    long long *lines; /* the source line of row i */
    size_t count, cap;
    jd_findings_reject *rejects;
    size_t nrejects, rcap;
    size_t error_line; /* 0 when the error has no line */
    char error[400];
} jd_findings;

void jd_findings_init(jd_findings *f);
void jd_findings_free(jd_findings *f);
/* Loads a CSV or JSON findings file. False on an error described by f->error (and the line
 * f->error_line when not 0); rows and rejects found before it stay in f. */
bool jd_findings_load_csv(jd_findings *f, const char *data, size_t len)
    __attribute__((warn_unused_result));
bool jd_findings_load_json(jd_findings *f, const char *data, size_t len)
    __attribute__((warn_unused_result));
/* Adds a rejected row (false when out of memory). */
bool jd_findings_add_reject(jd_findings *f, long long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), warn_unused_result));
/* Sorts the rejects by line. */
void jd_findings_sort_rejects(jd_findings *f);

#endif
