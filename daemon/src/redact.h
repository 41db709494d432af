/* PII redaction for free text: masks e-mail addresses, phone numbers, card-like digit runs
 * (13-19 digits passing the Luhn check) and IPv4 addresses, leaving prices, dates, times and
 * short numbers alone. Pure C; used at ingest (proto) and at export. */
#ifndef JD_REDACT_H
#define JD_REDACT_H

#include "util.h"

#include <stdbool.h>
#include <stddef.h>

/* Appends text[0..len) to out with every match replaced by [email], [phone], [card] or [ip].
 * Returns how many replacements were made. */
size_t jd_redact(const char *text, size_t len, jd_buf *out);

/* True when the digits of text (other characters ignored) pass the Luhn check. */
bool jd_redact_luhn(const char *digits, size_t n);

#endif
