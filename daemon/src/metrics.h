/* Process-wide counters, gauges and histograms, updated lock-free from both threads with C11
 * atomics and rendered in the Prometheus text format for GET /metrics. */
#ifndef JD_METRICS_H
#define JD_METRICS_H

#include "proto.h"
#include "util.h"

#include <stdint.h>

void jd_metrics_connection_opened(void);
void jd_metrics_connection_closed(void);
void jd_metrics_frame_in(jd_msg_type type);
void jd_metrics_frame_out(const char *type); /* "welcome", "survey", "ack", "error", "pong" */
void jd_metrics_error(jd_error_code code);
void jd_metrics_acks(uint64_t ids);
void jd_metrics_rejected_upgrade(int http_status);
void jd_metrics_queue_depth(int64_t depth);
void jd_metrics_batch(uint64_t rows, uint64_t commit_us);
void jd_metrics_db_up(int up);
void jd_metrics_db_retry(void);
void jd_metrics_rx_paused(int delta);
/* Live chat (chat.c): calls answered by the chat store (ok or refused), notifications heard,
 * polls run, messages pushed to watchers, and the watches open now. */
void jd_metrics_chat_call(bool ok);
void jd_metrics_chat_notification(void);
void jd_metrics_chat_poll(void);
void jd_metrics_chat_pushed(uint64_t messages);
void jd_metrics_chat_watches(int64_t watches);

/* Snapshot accessors used by tests and by the drain log line. */
uint64_t jd_metrics_acks_total(void);
int64_t jd_metrics_connections(void);

/* Appends the whole exposition to out. */
void jd_metrics_render(jd_buf *out);

#endif
