/* The store: the only module that talks to PostgreSQL at run time. It lives on the libevent
 * thread and drives one nonblocking libpq connection in pipeline mode: it drains the inbound
 * queue into group commits (one implicit transaction per pipeline sync, many rows per statement
 * through json_to_recordset), acks every client id only after its COMMIT, isolates rows the
 * database refuses, reconnects with backoff and retries batches whose outcome is unknown (every
 * insert is idempotent), and reloads the catalog on a timer. */
#ifndef JD_STORE_H
#define JD_STORE_H

#include "config.h"
#include "queue.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct jd_store jd_store;

/* An ingest store only writes records in group commits; an API store answers admin API requests
 * (JD_REC_API) one by one, loads the catalog and runs the retention purge on its own connection,
 * so neither a slow export nor a catalog reload ever delays an ingest COMMIT. A chat store runs
 * live chat calls (JD_REC_CHAT: jd_chat_rpc, JD_REC_CHAT_HTTP: jd_agent_http), each in its own
 * transaction, LISTENs for the chat notifications and ticks every 10 s (docs/chat.md). */
typedef enum { JD_STORE_INGEST = 0, JD_STORE_API, JD_STORE_CHAT } jd_store_role;

/* Called from the store thread when events were pushed to an empty outbound queue. */
typedef void (*jd_store_wake_fn)(void *arg);

/* Creates the store on base (which must have been made after evthread_use_pthreads). inbound
 * and outbound are borrowed and must outlive the store. conninfo is copied. Starts connecting at
 * once. Returns false on allocation failure. */
bool jd_store_create(struct event_base *base, jd_store_role role, const jd_config *config,
                     const char *conninfo, jd_queue *inbound, jd_queue *outbound,
                     jd_store_wake_fn wake_net, void *wake_arg, jd_store **out)
    __attribute__((warn_unused_result));

/* Closes the connection and frees everything, including records still queued inside. Sets
 * *store to NULL. */
void jd_store_destroy(jd_store **store);

/* Thread-safe: tells the store that the inbound queue has new records. */
void jd_store_wake(jd_store *store);

/* Store thread: applies reloadable settings (batch_max, pipeline_depth, catalog_refresh). */
void jd_store_apply_config(jd_store *store, const jd_config *config);

/* Store thread: reloads the catalog now (SIGHUP) instead of waiting for the timer. API store. */
void jd_store_reload_catalog(jd_store *store);

/* Store thread: starts a retention purge: jd_purge_expired() in batches of batch rows, the next
 * batch 100 ms after the previous one while batches come back full. API store only. */
void jd_store_purge(jd_store *store, int batch);

/* Thread-safe: true when the database connection is ready; otherwise writes why into reason. */
bool jd_store_healthy(jd_store *store, char *reason, size_t reason_len);

/* Store thread: how many records are accepted but not yet committed (for the drain log). */
size_t jd_store_pending(jd_store *store);

#endif
