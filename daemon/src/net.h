/* The network module: the only code that talks to libwebsockets. It owns one lws context served
 * by its own thread: HTTP (static files, /healthz, /metrics) and the journey.v1 WebSocket at /ws.
 * Frames are decoded and validated on this thread (proto + catalog), turned into records and
 * pushed to the inbound queue; acks, rejections, catalog snapshots and drain notices come back
 * through the outbound queue. Other threads may only call the functions marked thread-safe, all
 * of which end in lws_cancel_service(), the one lws call that is safe across threads. */
#ifndef JD_NET_H
#define JD_NET_H

#include "config.h"
#include "files.h"
#include "queue.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct jd_net jd_net;

/* How the network thread reaches the rest of the daemon without knowing it. All are called on
 * the network thread. */
typedef struct jd_net_hooks {
    void (*wake_store)(void *arg);                           /* inbound got records */
    void (*wake_api)(void *arg);                             /* api queue got a request */
    void (*wake_chat)(void *arg);                            /* chat queue got a call */
    bool (*db_healthy)(void *arg, char *reason, size_t len); /* for /healthz */
    void (*finished)(void *arg);                             /* the thread is about to exit */
    void *arg;
} jd_net_hooks;

/* Creates the lws context (binding config->listen) and starts the service thread. files is taken
 * over (may be NULL). inbound (records), api (admin API requests), chat (chat calls and agent
 * console routes) and outbound are borrowed.
 * Returns false with err filled when the listener cannot be created. */
bool jd_net_start(const jd_config *config, jd_files *files, jd_queue *inbound, jd_queue *api,
                  jd_queue *chat, jd_queue *outbound, const jd_net_hooks *hooks, jd_net **out,
                  char *err, size_t err_len) __attribute__((warn_unused_result));

/* Thread-safe: the outbound queue has events. */
void jd_net_wake(jd_net *net);

/* Thread-safe: stop accepting, stop reading, push the drain marker; connections close with 1001
 * once the store reports JD_EV_DRAINED. */
void jd_net_drain(jd_net *net);

/* Thread-safe: close every connection with 1001 now and end the thread (drain timeout). */
void jd_net_abort(jd_net *net);

/* Thread-safe: hands over a new config (reloadable settings apply at once) and, if files is not
 * NULL, a new static file set (taken over). */
void jd_net_update(jd_net *net, const jd_config *config, jd_files *files);

/* Joins the service thread (after `finished`), destroys the context and frees everything.
 * Sets *net to NULL. */
void jd_net_destroy(jd_net **net);

#endif
