/* Logging: every event becomes one line on stderr, formatted in a bounded stack buffer and handed
 * to the kernel with a single write(2), so lines from different threads never interleave and a
 * logging call never allocates. The threshold and the text/JSON choice live in one atomic word,
 * so jd_log_configure can run while other threads log. Bytes that could break a line (control
 * characters, and in JSON also quotes and backslashes) are escaped in both formats, because
 * messages often quote what a peer sent. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* PIPE_BUF on Linux: writes up to this size to a pipe are atomic, so lines stay whole even when
 * stderr is a pipe to a supervisor. */
#define LINE_MAX_BYTES 4096
/* Room kept back for the truncation marker and the line ending ("...\"}\n"). */
#define LINE_TAIL_RESERVE 8
#define MSG_MAX_BYTES LINE_MAX_BYTES

#define SETTINGS_JSON 0x100
#define SETTINGS_LEVEL_MASK 0xff

static atomic_uint log_settings = JD_LOG_INFO;

static const char *const level_upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_lower[] = {"error", "warn", "info", "debug"};

typedef struct line {
    char *data;
    size_t len;
    size_t cap; /* appends stop here; the tail reserve lies beyond it */
    bool truncated;
} line;

void jd_log_configure(jd_log_level level, bool json)
{
    unsigned value = ((unsigned)level & SETTINGS_LEVEL_MASK) | (json ? SETTINGS_JSON : 0u);
    atomic_store_explicit(&log_settings, value, memory_order_relaxed);
}

bool jd_log_level_parse(const char *text, jd_log_level *out)
{
    if (!text)
        return false;
    for (size_t i = 0; i < sizeof(level_lower) / sizeof(level_lower[0]); i++) {
        if (strcmp(text, level_lower[i]) == 0) {
            *out = (jd_log_level)i;
            return true;
        }
    }
    return false;
}

static void line_raw(line *ln, const char *text, size_t len)
{
    if (ln->truncated)
        return;
    if (len > ln->cap - ln->len) {
        len = ln->cap - ln->len;
        ln->truncated = true;
    }
    memcpy(ln->data + ln->len, text, len);
    ln->len += len;
}

static void line_str(line *ln, const char *text)
{
    line_raw(ln, text, strlen(text));
}

/* Appends text with every byte that could end or corrupt the line escaped. An escape sequence is
 * written whole or not at all, so a cut never leaves half of one behind. */
static void line_escaped(line *ln, const char *text, size_t len, bool json)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len && !ln->truncated; i++) {
        unsigned char c = (unsigned char)text[i];
        char esc[7];
        size_t n = 0;
        if (c == '\n' || c == '\r' || c == '\t') {
            esc[n++] = '\\';
            esc[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (json && (c == '"' || c == '\\')) {
            esc[n++] = '\\';
            esc[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            esc[n++] = '\\';
            if (json) {
                memcpy(esc + n, "u00", 3);
                n += 3;
            } else {
                esc[n++] = 'x';
            }
            esc[n++] = hex[c >> 4];
            esc[n++] = hex[c & 15];
        } else {
            esc[n++] = (char)c;
        }
        if (n > ln->cap - ln->len) {
            ln->truncated = true;
            break;
        }
        memcpy(ln->data + ln->len, esc, n);
        ln->len += n;
    }
}

/* After a cut, drops a trailing UTF-8 sequence that lost its last bytes, so a JSON line stays
 * valid UTF-8 whenever the message was. */
static void line_trim_partial_utf8(line *ln)
{
    size_t back = 0;
    while (back < 4 && back < ln->len &&
           ((unsigned char)ln->data[ln->len - 1 - back] & 0xc0) == 0x80)
        back++;
    if (back == ln->len)
        return;
    unsigned char lead = (unsigned char)ln->data[ln->len - 1 - back];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (lead >= 0xc0 && want > back + 1)
        ln->len -= back + 1;
}

static void format_timestamp(char *out, size_t out_len)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        snprintf(out, out_len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, out_len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

static void write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        /* Nowhere left to report a failing stderr; the line is dropped. */
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static void log_line(jd_log_level level, uint64_t conn_id, const char *peer, bool json,
                     const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void log_line(jd_log_level level, uint64_t conn_id, const char *peer, bool json,
                     const char *fmt, va_list ap)
{
    char msg[MSG_MAX_BYTES];
    int msg_n = vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t msg_len = msg_n < 0 ? 0 : (size_t)msg_n;
    bool msg_cut = msg_len >= sizeof(msg);
    if (msg_cut)
        msg_len = sizeof(msg) - 1;

    /* Real timestamps take 24 bytes; the room is for -Wformat-truncation's worst case. */
    char ts[96];
    format_timestamp(ts, sizeof(ts));
    size_t level_index = (unsigned)level < 4 ? (size_t)level : 0;

    char buf[LINE_MAX_BYTES];
    line ln = {.data = buf, .len = 0, .cap = sizeof(buf) - LINE_TAIL_RESERVE, .truncated = false};
    char num[32];
    if (json) {
        line_str(&ln, "{\"ts\":\"");
        line_str(&ln, ts);
        line_str(&ln, "\",\"level\":\"");
        line_str(&ln, level_lower[level_index]);
        line_str(&ln, "\"");
        if (conn_id != 0) {
            snprintf(num, sizeof(num), ",\"conn\":%" PRIu64, conn_id);
            line_str(&ln, num);
        }
        if (peer) {
            line_str(&ln, ",\"peer\":\"");
            line_escaped(&ln, peer, strlen(peer), true);
            line_str(&ln, "\"");
        }
        line_str(&ln, ",\"msg\":\"");
        line_escaped(&ln, msg, msg_len, true);
    } else {
        line_str(&ln, ts);
        line_str(&ln, " ");
        line_str(&ln, level_upper[level_index]);
        if (conn_id != 0) {
            snprintf(num, sizeof(num), " conn=%" PRIu64, conn_id);
            line_str(&ln, num);
        }
        if (peer) {
            line_str(&ln, " peer=");
            line_escaped(&ln, peer, strlen(peer), false);
        }
        line_str(&ln, " ");
        line_escaped(&ln, msg, msg_len, false);
    }
    if (ln.truncated || msg_cut) {
        line_trim_partial_utf8(&ln);
        ln.cap = sizeof(buf);
        ln.truncated = false;
        line_str(&ln, "...");
    }
    /* The tail reserve guarantees room for the closing bytes even after a cut. */
    ln.cap = sizeof(buf);
    line_str(&ln, json ? "\"}\n" : "\n");
    write_all(buf, ln.len);
}

void jd_log(jd_log_level level, uint64_t conn_id, const char *peer, const char *fmt, ...)
{
    unsigned settings = atomic_load_explicit(&log_settings, memory_order_relaxed);
    if ((unsigned)level > (settings & SETTINGS_LEVEL_MASK))
        return;
    /* Callers often log and then inspect errno; formatting must not disturb it. */
    int saved_errno = errno;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, conn_id, peer, (settings & SETTINGS_JSON) != 0, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

void jd_fatal(const char *fmt, ...)
{
    unsigned settings = atomic_load_explicit(&log_settings, memory_order_relaxed);
    va_list ap;
    va_start(ap, fmt);
    log_line(JD_LOG_ERROR, 0, NULL, (settings & SETTINGS_JSON) != 0, fmt, ap);
    va_end(ap);
    abort();
}
