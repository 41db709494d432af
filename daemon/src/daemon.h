/* Wiring: builds the queues, the store (on this thread's libevent loop) and the network thread,
 * handles signals on the loop (SIGTERM/SIGINT drain, a second one exits at once; SIGHUP reloads
 * and keeps the old config on error), and tears everything down in order. */
#ifndef JD_DAEMON_H
#define JD_DAEMON_H

#include "config.h"

/* Resolves the database (embedded when database_url is empty): writes a conninfo into out. Sets
 * *embedded_started when it started the private cluster (stop it with jd_pgembed_stop). */
bool jd_daemon_resolve_database(const jd_config *config, char *out, size_t out_len,
                                bool *embedded_started, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Serves until SIGTERM/SIGINT. argv is kept to rebuild the config on SIGHUP. Returns the exit
 * code: 0 after a complete drain, 1 when the drain timed out or startup failed. */
int jd_daemon_run(const jd_config *config, int argc, char *const argv[]);

#endif
