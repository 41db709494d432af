/* A strict RFC 4180 CSV reader for journeyctl's interview findings import. It reads a whole file
 * held in memory one record at a time: fields separated by commas, records ended by CRLF or LF,
 * fields optionally enclosed in double quotes, where a doubled quote stands for one quote and
 * commas, CR and LF are data. Anything else is an error that names the physical line: a quote in
 * an unquoted field, text after a closing quote, a quoted field never closed, a bare CR, a NUL
 * byte, or bytes that are not valid UTF-8 (overlong forms, surrogates and code points above
 * U+10FFFF included). A UTF-8 byte order mark at the start is skipped, and lines that are
 * completely empty are skipped (editors leave them at the end of files). Pure C, no I/O. */
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
    size_t error_line;  /* line of the error when jd_csv_next returned -1 */
    char error[160];    /* what is wrong, without the line number */
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

#endif
