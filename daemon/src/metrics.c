/* Metrics: relaxed atomics (a scrape may see counters a few increments apart, which Prometheus
 * tolerates) so the hot path never takes a lock. Histograms use fixed buckets chosen for group
 * commits: rows per batch and commit latency from send to COMMIT acknowledged. */
#include "metrics.h"

#include <stdatomic.h>
#include <string.h>

#define ADD(var, n) atomic_fetch_add_explicit(&(var), (n), memory_order_relaxed)
#define GET(var) atomic_load_explicit(&(var), memory_order_relaxed)

static _Atomic int64_t connections;
static _Atomic uint64_t connections_total;
static _Atomic uint64_t frames_in[JD_MSG_COUNT];
static const char *const out_types[] = {"welcome", "survey", "ack", "error", "pong"};
#define N_OUT (sizeof(out_types) / sizeof(out_types[0]))
static _Atomic uint64_t frames_out[N_OUT];
static _Atomic uint64_t errors[JD_ERR_COUNT];
static _Atomic uint64_t acks_total;
static _Atomic uint64_t upgrades_rejected_403, upgrades_rejected_429, upgrades_rejected_503;
static _Atomic int64_t queue_depth;
static _Atomic int64_t db_up;
static _Atomic uint64_t db_retries;
static _Atomic int64_t rx_paused;
static _Atomic uint64_t chat_calls_ok, chat_calls_refused, chat_notifications, chat_polls,
    chat_pushed;
static _Atomic int64_t chat_watches;

static const double batch_buckets[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
#define N_BATCH (sizeof(batch_buckets) / sizeof(batch_buckets[0]))
static _Atomic uint64_t batch_counts[N_BATCH + 1];
static _Atomic uint64_t batch_sum, batch_n;

static const double commit_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define N_COMMIT (sizeof(commit_buckets) / sizeof(commit_buckets[0]))
static _Atomic uint64_t commit_counts[N_COMMIT + 1];
static _Atomic uint64_t commit_sum_us, commit_n;

void jd_metrics_connection_opened(void)
{
    ADD(connections, 1);
    ADD(connections_total, 1);
}

void jd_metrics_connection_closed(void)
{
    ADD(connections, -1);
}

void jd_metrics_frame_in(jd_msg_type type)
{
    if (type < JD_MSG_COUNT)
        ADD(frames_in[type], 1);
}

void jd_metrics_frame_out(const char *type)
{
    for (size_t i = 0; i < N_OUT; i++)
        if (strcmp(type, out_types[i]) == 0)
            ADD(frames_out[i], 1);
}

void jd_metrics_error(jd_error_code code)
{
    if (code < JD_ERR_COUNT)
        ADD(errors[code], 1);
}

void jd_metrics_acks(uint64_t ids)
{
    ADD(acks_total, ids);
}

void jd_metrics_rejected_upgrade(int status)
{
    if (status == 403)
        ADD(upgrades_rejected_403, 1);
    else if (status == 429)
        ADD(upgrades_rejected_429, 1);
    else
        ADD(upgrades_rejected_503, 1);
}

void jd_metrics_queue_depth(int64_t depth)
{
    atomic_store_explicit(&queue_depth, depth, memory_order_relaxed);
}

void jd_metrics_batch(uint64_t rows, uint64_t commit_us)
{
    size_t i = 0;
    while (i < N_BATCH && (double)rows > batch_buckets[i])
        i++;
    ADD(batch_counts[i], 1);
    ADD(batch_sum, rows);
    ADD(batch_n, 1);
    double secs = (double)commit_us / 1e6;
    i = 0;
    while (i < N_COMMIT && secs > commit_buckets[i])
        i++;
    ADD(commit_counts[i], 1);
    ADD(commit_sum_us, commit_us);
    ADD(commit_n, 1);
}

void jd_metrics_db_up(int up)
{
    atomic_store_explicit(&db_up, up, memory_order_relaxed);
}

void jd_metrics_db_retry(void)
{
    ADD(db_retries, 1);
}

void jd_metrics_rx_paused(int delta)
{
    ADD(rx_paused, delta);
}

uint64_t jd_metrics_acks_total(void)
{
    return GET(acks_total);
}

int64_t jd_metrics_connections(void)
{
    return GET(connections);
}

static void histogram(jd_buf *out, const char *name, const double *bounds, size_t n,
                      _Atomic uint64_t *counts, double sum, uint64_t total)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i < n; i++) {
        cumulative += GET(counts[i]);
        jd_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                      (unsigned long long)cumulative);
    }
    cumulative += GET(counts[n]);
    jd_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                  (unsigned long long)cumulative, name, sum, name, (unsigned long long)total);
}

void jd_metrics_render(jd_buf *out)
{
    jd_buf_printf(out,
                  "# HELP journeyd_connections Open WebSocket connections.\n"
                  "# TYPE journeyd_connections gauge\njourneyd_connections %lld\n"
                  "# HELP journeyd_connections_total WebSocket connections accepted.\n"
                  "# TYPE journeyd_connections_total counter\njourneyd_connections_total %llu\n",
                  (long long)GET(connections), (unsigned long long)GET(connections_total));
    jd_buf_puts(out, "# HELP journeyd_frames_in_total Client frames received, by type.\n"
                     "# TYPE journeyd_frames_in_total counter\n");
    for (int i = 0; i < JD_MSG_COUNT; i++)
        jd_buf_printf(out, "journeyd_frames_in_total{type=\"%s\"} %llu\n",
                      jd_proto_msg_name((jd_msg_type)i), (unsigned long long)GET(frames_in[i]));
    jd_buf_puts(out, "# HELP journeyd_frames_out_total Server frames sent, by type.\n"
                     "# TYPE journeyd_frames_out_total counter\n");
    for (size_t i = 0; i < N_OUT; i++)
        jd_buf_printf(out, "journeyd_frames_out_total{type=\"%s\"} %llu\n", out_types[i],
                      (unsigned long long)GET(frames_out[i]));
    jd_buf_printf(out,
                  "# HELP journeyd_acks_total Client ids acknowledged after COMMIT.\n"
                  "# TYPE journeyd_acks_total counter\njourneyd_acks_total %llu\n",
                  (unsigned long long)GET(acks_total));
    jd_buf_puts(out, "# HELP journeyd_errors_total Error frames and closes, by code.\n"
                     "# TYPE journeyd_errors_total counter\n");
    for (int i = 0; i < JD_ERR_COUNT; i++)
        jd_buf_printf(out, "journeyd_errors_total{code=\"%s\"} %llu\n",
                      jd_proto_error_name((jd_error_code)i), (unsigned long long)GET(errors[i]));
    jd_buf_printf(out,
                  "# HELP journeyd_upgrades_rejected_total WebSocket upgrades refused, by status.\n"
                  "# TYPE journeyd_upgrades_rejected_total counter\n"
                  "journeyd_upgrades_rejected_total{status=\"403\"} %llu\n"
                  "journeyd_upgrades_rejected_total{status=\"429\"} %llu\n"
                  "journeyd_upgrades_rejected_total{status=\"503\"} %llu\n",
                  (unsigned long long)GET(upgrades_rejected_403),
                  (unsigned long long)GET(upgrades_rejected_429),
                  (unsigned long long)GET(upgrades_rejected_503));
    jd_buf_printf(out,
                  "# HELP journeyd_queue_depth Records waiting between the network and store "
                  "threads.\n# TYPE journeyd_queue_depth gauge\njourneyd_queue_depth %lld\n"
                  "# HELP journeyd_rx_paused Connections whose reading is paused by "
                  "backpressure.\n# TYPE journeyd_rx_paused gauge\njourneyd_rx_paused %lld\n"
                  "# HELP journeyd_db_up 1 when the database connection is ready.\n"
                  "# TYPE journeyd_db_up gauge\njourneyd_db_up %lld\n"
                  "# HELP journeyd_db_retries_total Batches retried after a database failure.\n"
                  "# TYPE journeyd_db_retries_total counter\njourneyd_db_retries_total %llu\n",
                  (long long)GET(queue_depth), (long long)GET(rx_paused), (long long)GET(db_up),
                  (unsigned long long)GET(db_retries));
    jd_buf_printf(out,
                  "# HELP journeyd_chat_calls_total Chat calls answered by the chat store, by "
                  "result.\n# TYPE journeyd_chat_calls_total counter\n"
                  "journeyd_chat_calls_total{result=\"ok\"} %llu\n"
                  "journeyd_chat_calls_total{result=\"refused\"} %llu\n"
                  "# HELP journeyd_chat_notifications_total Chat notifications heard (LISTEN).\n"
                  "# TYPE journeyd_chat_notifications_total counter\n"
                  "journeyd_chat_notifications_total %llu\n"
                  "# HELP journeyd_chat_polls_total Polls of dirty conversations.\n"
                  "# TYPE journeyd_chat_polls_total counter\njourneyd_chat_polls_total %llu\n"
                  "# HELP journeyd_chat_messages_pushed_total Chat messages sent to watchers.\n"
                  "# TYPE journeyd_chat_messages_pushed_total counter\n"
                  "journeyd_chat_messages_pushed_total %llu\n"
                  "# HELP journeyd_chat_watches Connections watching a conversation, now.\n"
                  "# TYPE journeyd_chat_watches gauge\njourneyd_chat_watches %lld\n",
                  (unsigned long long)GET(chat_calls_ok),
                  (unsigned long long)GET(chat_calls_refused),
                  (unsigned long long)GET(chat_notifications), (unsigned long long)GET(chat_polls),
                  (unsigned long long)GET(chat_pushed), (long long)GET(chat_watches));
    jd_buf_puts(out, "# HELP journeyd_batch_rows Rows per group commit.\n"
                     "# TYPE journeyd_batch_rows histogram\n");
    histogram(out, "journeyd_batch_rows", batch_buckets, N_BATCH, batch_counts,
              (double)GET(batch_sum), GET(batch_n));
    jd_buf_puts(out, "# HELP journeyd_commit_seconds Time from sending a batch to its COMMIT.\n"
                     "# TYPE journeyd_commit_seconds histogram\n");
    histogram(out, "journeyd_commit_seconds", commit_buckets, N_COMMIT, commit_counts,
              (double)GET(commit_sum_us) / 1e6, GET(commit_n));
}

void jd_metrics_chat_call(bool ok)
{
    ADD(*(ok ? &chat_calls_ok : &chat_calls_refused), 1);
}

void jd_metrics_chat_notification(void)
{
    ADD(chat_notifications, 1);
}

void jd_metrics_chat_poll(void)
{
    ADD(chat_polls, 1);
}

void jd_metrics_chat_pushed(uint64_t messages)
{
    ADD(chat_pushed, messages);
}

void jd_metrics_chat_watches(int64_t watches)
{
    atomic_store_explicit(&chat_watches, watches, memory_order_relaxed);
}
