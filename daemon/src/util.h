/* Small helpers shared by every module: a growable byte buffer with JSON string escaping (used to
 * build frames and store records without a JSON tree), UUID text validation and generation, and a
 * monotonic clock. Pure C, no library state. */
#ifndef JD_UTIL_H
#define JD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JD_UUID_LEN 36 /* text form without the terminating NUL */

/* A growable buffer. Owned by whoever declared it; release with jd_buf_free. On allocation
 * failure the buffer is marked failed and further appends do nothing; check jd_buf_ok. */
typedef struct jd_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} jd_buf;

void jd_buf_init(jd_buf *buf);
void jd_buf_free(jd_buf *buf);
void jd_buf_reset(jd_buf *buf); /* length 0, keeps capacity */
bool jd_buf_reserve(jd_buf *buf, size_t extra) __attribute__((warn_unused_result));
void jd_buf_append(jd_buf *buf, const void *data, size_t len);
void jd_buf_puts(jd_buf *buf, const char *text);
void jd_buf_printf(jd_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text as a quoted JSON string, escaping quotes, backslashes and control characters. */
void jd_buf_json_string(jd_buf *buf, const char *text, size_t len);
static inline bool jd_buf_ok(const jd_buf *buf)
{
    return !buf->failed;
}

/* True when text is exactly 36 characters of 8-4-4-4-12 hex digits. */
bool jd_uuid_valid(const char *text);
/* Writes a random version-4 UUID (from getrandom) into out[JD_UUID_LEN + 1]. */
void jd_uuid_generate(char out[JD_UUID_LEN + 1]);

/* Monotonic time in microseconds. */
uint64_t jd_now_us(void);

/* True when text is an RFC 3339 timestamp such as 2026-11-29T07:00:00.123Z or ...+01:00. */
bool jd_timestamp_valid(const char *text);

/* True when text[0..len) is well-formed UTF-8 with no NUL byte (PostgreSQL text cannot hold NUL).
 */
bool jd_utf8_text_valid(const char *text, size_t len);

/* Code points in the NUL-terminated UTF-8 text (as PostgreSQL's length() counts them). */
size_t jd_utf8_length(const char *text);

/* 64-bit FNV-1a hash. */
uint64_t jd_hash64(const void *data, size_t len);

#endif
