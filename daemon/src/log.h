/* Logging: one line per event on stderr, as text or JSON, safe to call from any thread. Each line
 * carries the level, the connection id and the peer when the event concerns a connection, so a
 * grep for one connection tells its whole story. jd_fatal is for broken invariants only, never for
 * anything a peer sent. */
#ifndef JD_LOG_H
#define JD_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { JD_LOG_ERROR = 0, JD_LOG_WARN, JD_LOG_INFO, JD_LOG_DEBUG } jd_log_level;

/* Sets the threshold and format for all later lines. Safe to call while other threads log. */
void jd_log_configure(jd_log_level level, bool json);

/* Parses "error", "warn", "info" or "debug". Returns false on anything else. */
bool jd_log_level_parse(const char *text, jd_log_level *out) __attribute__((warn_unused_result));

/* Logs one line. conn_id 0 and peer NULL mean "not about a connection". The message is formatted
 * into a bounded buffer (long messages are cut, never overflowed) and written with one write(2). */
void jd_log(jd_log_level level, uint64_t conn_id, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Logs the message at error level and aborts. For broken invariants only. */
void jd_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define jd_log_error(...) jd_log(JD_LOG_ERROR, 0, NULL, __VA_ARGS__)
#define jd_log_warn(...) jd_log(JD_LOG_WARN, 0, NULL, __VA_ARGS__)
#define jd_log_info(...) jd_log(JD_LOG_INFO, 0, NULL, __VA_ARGS__)
#define jd_log_debug(...) jd_log(JD_LOG_DEBUG, 0, NULL, __VA_ARGS__)

#endif
