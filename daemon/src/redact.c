/* Two passes over the text: e-mail spans are found around each '@'; then number-like runs are
 * classified. A run is digits joined by single spaces, dashes, dots or parentheses, optionally
 * starting with '+'. IPv4 is four dot-separated octets; 13-19 digits passing Luhn is a card;
 * 9-15 digits is a phone number. Fewer digits (prices, dates like 2026-11-29, times) survive, and
 * a comma, slash or colon ends a run, so "1,299.99", "29/11/2026" and "10:30" are never joined. */
#include "redact.h"

#include <ctype.h>
#include <string.h>

bool jd_redact_luhn(const char *digits, size_t n)
{
    int sum = 0, count = 0;
    bool twice = false;
    for (size_t i = n; i-- > 0;) {
        if (!isdigit((unsigned char)digits[i]))
            continue;
        int d = digits[i] - '0';
        if (twice) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        twice = !twice;
        count++;
    }
    return count > 0 && sum % 10 == 0;
}

static bool is_local(char c)
{
    return isalnum((unsigned char)c) || strchr("._%+-", c) != NULL;
}

static bool is_domain(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-';
}

/* Finds the e-mail span containing the '@' at `at`. */
static bool email_span(const char *t, size_t len, size_t at, size_t *start, size_t *end)
{
    size_t s = at, e = at + 1;
    while (s > 0 && is_local(t[s - 1]))
        s--;
    while (e < len && is_domain(t[e]))
        e++;
    while (e > at + 1 && (t[e - 1] == '.' || t[e - 1] == '-'))
        e--;
    if (s == at || e == at + 1)
        return false;
    /* The domain needs a dot and a top-level part of two or more letters. */
    size_t dot = e;
    while (dot > at + 1 && t[dot - 1] != '.')
        dot--;
    if (dot == at + 1 || e - dot < 2)
        return false;
    for (size_t i = dot; i < e; i++)
        if (!isalpha((unsigned char)t[i]))
            return false;
    *start = s;
    *end = e;
    return true;
}

static bool ipv4_at(const char *t, size_t len, size_t i, size_t *end)
{
    for (int part = 0; part < 4; part++) {
        size_t d = 0;
        int value = 0;
        while (i < len && isdigit((unsigned char)t[i]) && d < 3) {
            value = value * 10 + (t[i] - '0');
            i++;
            d++;
        }
        if (d == 0 || value > 255 || (i < len && isdigit((unsigned char)t[i])))
            return false;
        if (part < 3) {
            if (i >= len || t[i] != '.')
                return false;
            i++;
        }
    }
    *end = i;
    return true;
}

/* A number-like run starting at i: digits joined by single separators. */
static size_t number_run(const char *t, size_t len, size_t i, size_t *digits)
{
    size_t end = i, d = 0;
    bool international = t[i] == '+';
    if (t[i] == '+' || t[i] == '(')
        i++;
    bool last_sep = true;
    while (i < len) {
        char c = t[i];
        if (isdigit((unsigned char)c)) {
            d++;
            last_sep = false;
            end = i + 1;
        } else if ((c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') && !last_sep) {
            last_sep = c != ')';
        } else if (c == '(' && last_sep && international) {
            /* "+44 (0)20": a trunk prefix in parentheses, only in an international number, so
             * "2026-11-29 (29/11/2026)" stays two dates */
        } else {
            break;
        }
        i++;
    }
    *digits = d;
    return end;
}

size_t jd_redact(const char *t, size_t len, jd_buf *out)
{
    size_t count = 0, i = 0, copied = 0;
    while (i < len) {
        size_t s, e;
        const char *mask = NULL;
        if (t[i] == '@' && email_span(t, len, i, &s, &e) && s >= copied) {
            mask = "[email]";
        } else if ((isdigit((unsigned char)t[i]) || ((t[i] == '+' || t[i] == '(') && i + 1 < len &&
                                                     isdigit((unsigned char)t[i + 1]))) &&
                   (i == 0 || !isalnum((unsigned char)t[i - 1]))) {
            size_t digits;
            s = i;
            if (ipv4_at(t, len, i, &e)) {
                mask = "[ip]";
            } else {
                e = number_run(t, len, i, &digits);
                /* A run glued to letters (an order code like A1234567890B) is not a number. */
                bool glued = e < len && isalpha((unsigned char)t[e]);
                if (!glued && digits >= 13 && digits <= 19 && jd_redact_luhn(t + s, e - s))
                    mask = "[card]";
                else if (!glued && digits >= 9 && digits <= 15)
                    mask = "[phone]";
                else
                    i = e > i ? e - 1 : i;
            }
        }
        if (mask) {
            jd_buf_append(out, t + copied, s - copied);
            jd_buf_puts(out, mask);
            copied = i = e;
            count++;
            continue;
        }
        i++;
    }
    jd_buf_append(out, t + copied, len - copied);
    return count;
}
