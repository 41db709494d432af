/* The daemon's main loop. Thread layout (docs/architecture.md): this thread runs libevent and
 * owns the store (PostgreSQL), the timers and the signals; the network thread runs lws. They
 * meet only at the two bounded queues and the wake-ups documented in channel.h. */
#include "daemon.h"

#include "channel.h"
#include "files.h"
#include "log.h"
#include "net.h"
#include "pgembed.h"
#include "store.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { JD_DAEMON_SERVING = 0, JD_DAEMON_DRAINING, JD_DAEMON_STOPPING } jd_daemon_state;

typedef struct jd_daemon {
    jd_config config;
    int argc;
    char *const *argv;
    struct event_base *base;
    jd_queue inbound, api, chat, outbound;
    jd_store *store;
    jd_store *api_store;
    jd_store *chat_store;
    jd_net *net;
    struct event *sigterm_ev, *sigint_ev, *sighup_ev, *drain_timer, *net_done_ev, *purge_timer;
    jd_daemon_state state;
    bool drain_aborted;
} jd_daemon;

typedef struct jd_loader {
    jd_net *net;
    jd_config config;
} jd_loader;

bool jd_daemon_resolve_database(const jd_config *config, char *out, size_t out_len,
                                bool *embedded_started, char *err, size_t err_len)
{
    *embedded_started = false;
    if (config->database_url[0]) {
        snprintf(out, out_len, "%s", config->database_url);
        return true;
    }
    return jd_pgembed_start(config->data_dir, out, out_len, embedded_started, err, err_len);
}

static void wake_net(void *arg)
{
    jd_daemon *d = arg;
    if (d->net)
        jd_net_wake(d->net);
}

static void wake_store(void *arg)
{
    jd_store_wake(((jd_daemon *)arg)->store);
}

static void wake_api(void *arg)
{
    jd_store_wake(((jd_daemon *)arg)->api_store);
}

static void wake_chat(void *arg)
{
    jd_store_wake(((jd_daemon *)arg)->chat_store);
}

static bool db_healthy(void *arg, char *reason, size_t len)
{
    return jd_store_healthy(((jd_daemon *)arg)->store, reason, len);
}

static void net_finished(void *arg)
{
    /* Called on the network thread: hand over to the loop thread. */
    event_active(((jd_daemon *)arg)->net_done_ev, EV_READ, 0);
}

static void on_net_done(evutil_socket_t fd, short what, void *arg)
{
    jd_daemon *d = arg;
    d->state = JD_DAEMON_STOPPING;
    event_base_loopbreak(d->base);
}

static void on_purge(evutil_socket_t fd, short what, void *arg)
{
    jd_daemon *d = arg;
    if (d->state == JD_DAEMON_SERVING)
        jd_store_purge(d->api_store, 1000);
    if (d->config.purge_interval > 0) {
        struct timeval tv = {d->config.purge_interval, 0};
        event_add(d->purge_timer, &tv);
    }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    jd_daemon *d = arg;
    d->drain_aborted = true;
    jd_log_error("drain: timed out after %d s with %zu records not committed (not acked; "
                 "clients will resend them)",
                 d->config.drain_timeout, jd_store_pending(d->store));
    jd_net_abort(d->net);
}

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
    jd_daemon *d = arg;
    if (d->state != JD_DAEMON_SERVING) {
        static const char msg[] = "journeyd: second signal, exiting at once\n";
        ssize_t ignored = write(2, msg, sizeof(msg) - 1);
        (void)ignored;
        _exit(1);
    }
    d->state = JD_DAEMON_DRAINING;
    jd_log_info("%s: draining (send it again to exit at once)",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
    struct timeval tv = {d->config.drain_timeout, 0};
    event_add(d->drain_timer, &tv);
    jd_net_drain(d->net);
}

static void *load_files(void *arg)
{
    jd_loader *l = arg;
    jd_files *files = NULL;
    char err[512];
    if (jd_files_load(l->config.static_dir, &files, err, sizeof(err)))
        jd_net_update(l->net, &l->config, files);
    else
        jd_log_error("reload: %s; keeping the old files", err);
    free(l);
    return NULL;
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    jd_daemon *d = arg;
    jd_config next;
    jd_command command;
    char err[512], restart[512];
    if (!jd_config_load(&next, &command, d->argc, d->argv, err, sizeof(err))) {
        jd_log_error("SIGHUP: %s; keeping the running config", err);
        return;
    }
    jd_config_restart_needed(&d->config, &next, restart, sizeof(restart));
    if (restart[0])
        jd_log_warn("SIGHUP: these settings change only after a restart: %s", restart);
    jd_log_level level = JD_LOG_INFO;
    if (jd_log_level_parse(next.log_level, &level))
        jd_log_configure(level, strcmp(next.log_format, "json") == 0);
    /* Keep the running values of restart-only settings so the two threads stay consistent. */
    jd_config applied = next;
    jd_config_keep_restart_only(&d->config, &applied);
    d->config = applied;
    jd_store_apply_config(d->store, &applied);
    jd_store_apply_config(d->api_store, &applied);
    jd_store_reload_catalog(d->api_store);
    jd_net_update(d->net, &applied, NULL);
    /* File reads happen off both loops. */
    jd_loader *loader = malloc(sizeof(*loader));
    pthread_t t;
    if (loader) {
        loader->net = d->net;
        loader->config = applied;
        if (pthread_create(&t, NULL, load_files, loader) == 0)
            pthread_detach(t);
        else
            free(loader);
    }
    jd_log_info("SIGHUP: config reloaded");
}

int jd_daemon_run(const jd_config *config, int argc, char *const argv[])
{
    jd_daemon d;
    memset(&d, 0, sizeof(d));
    d.config = *config;
    d.argc = argc;
    d.argv = argv;
    int rc = 1;
    bool embedded = false;
    char conninfo[2048], err[1024];
    jd_files *files = NULL;

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0 || !(d.base = event_base_new())) {
        jd_log_error("cannot create the event loop");
        return 1;
    }
    if (!jd_daemon_resolve_database(config, conninfo, sizeof(conninfo), &embedded, err,
                                    sizeof(err))) {
        jd_log_error("%s", err);
        goto done;
    }
    if (!jd_queue_init(&d.inbound, sizeof(jd_record *), (size_t)config->queue_capacity) ||
        !jd_queue_init(&d.api, sizeof(jd_record *), 1024) ||
        !jd_queue_init(&d.chat, sizeof(jd_record *), 4096) ||
        !jd_queue_init(&d.outbound, sizeof(jd_event), (size_t)config->queue_capacity * 2 + 4096)) {
        jd_log_error("out of memory for the queues");
        goto done;
    }
    if (!jd_files_load(config->static_dir, &files, err, sizeof(err))) {
        jd_log_error("%s", err);
        goto done;
    }
    if (!files->n)
        jd_log_warn("static_dir %s has no files: build the widget (node web-widget/build.mjs)",
                    config->static_dir);
    d.net_done_ev = event_new(d.base, -1, 0, on_net_done, &d);
    d.drain_timer = evtimer_new(d.base, on_drain_timeout, &d);
    d.purge_timer = evtimer_new(d.base, on_purge, &d);
    d.sigterm_ev = evsignal_new(d.base, SIGTERM, on_terminate, &d);
    d.sigint_ev = evsignal_new(d.base, SIGINT, on_terminate, &d);
    d.sighup_ev = evsignal_new(d.base, SIGHUP, on_reload, &d);
    if (!d.net_done_ev || !d.drain_timer || !d.purge_timer || !d.sigterm_ev || !d.sigint_ev ||
        !d.sighup_ev || event_add(d.sigterm_ev, NULL) || event_add(d.sigint_ev, NULL) ||
        event_add(d.sighup_ev, NULL)) {
        jd_log_error("cannot set up signal handling");
        goto done;
    }
    if (!d.config.instance[0]) {
        /* Presence rows are per instance: a restart of the same host:port clears its own. */
        char host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(d.config.instance, sizeof(d.config.instance), "%.80s:%.40s", host,
                 strrchr(config->listen, ':') ? strrchr(config->listen, ':') + 1 : config->listen);
    }
    if (!jd_store_create(d.base, JD_STORE_INGEST, config, conninfo, &d.inbound, &d.outbound,
                         wake_net, &d, &d.store) ||
        !jd_store_create(d.base, JD_STORE_API, config, conninfo, &d.api, &d.outbound, wake_net, &d,
                         &d.api_store) ||
        !jd_store_create(d.base, JD_STORE_CHAT, &d.config, conninfo, &d.chat, &d.outbound, wake_net,
                         &d, &d.chat_store)) {
        jd_log_error("cannot create the store");
        goto done;
    }
    jd_net_hooks hooks = {.wake_store = wake_store,
                          .wake_api = wake_api,
                          .wake_chat = wake_chat,
                          .db_healthy = db_healthy,
                          .finished = net_finished,
                          .arg = &d};
    if (!jd_net_start(&d.config, files, &d.inbound, &d.api, &d.chat, &d.outbound, &hooks, &d.net,
                      err, sizeof(err))) {
        files = NULL; /* taken over and freed */
        jd_log_error("%s", err);
        goto done;
    }
    files = NULL;
    jd_net_wake(d.net); /* deliver anything the store queued before the net existed */
    if (config->purge_interval > 0) {
        /* First purge soon after start, then every purge_interval. */
        struct timeval tv = {config->purge_interval < 5 ? config->purge_interval : 5, 0};
        event_add(d.purge_timer, &tv);
    }
    jd_log_info("journeyd %s listening on %s://%s (WebSocket /ws, demo /demo/index.html)",
                JD_VERSION, config->tls_cert[0] ? "https" : "http", config->listen);
    event_base_dispatch(d.base);
    rc = d.drain_aborted ? 1 : 0;
    jd_log_info("stopped");

done:
    jd_net_destroy(&d.net);
    jd_store_destroy(&d.store);
    jd_store_destroy(&d.api_store);
    jd_store_destroy(&d.chat_store);
    jd_files_free(&files);
    /* Events still queued for a network thread that is gone. */
    if (d.outbound.slots) {
        jd_event ev;
        bool unblocked;
        while (jd_queue_pop(&d.outbound, &ev, 1, &unblocked) == 1)
            if (ev.kind == JD_EV_CATALOG)
                jd_catalog_free((jd_catalog **)&ev.ptr);
            else if (ev.kind == JD_EV_HTTP)
                free(ev.ptr);
    }
    jd_queue_destroy(&d.inbound);
    jd_queue_destroy(&d.api);
    jd_queue_destroy(&d.chat);
    jd_queue_destroy(&d.outbound);
    struct event **evs[] = {&d.net_done_ev, &d.drain_timer, &d.sigterm_ev,
                            &d.sigint_ev,   &d.sighup_ev,   &d.purge_timer};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (*evs[i]) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    if (d.base)
        event_base_free(d.base);
    if (embedded)
        jd_pgembed_stop(config->data_dir);
    return rc;
}
