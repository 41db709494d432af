/* The embedded default: when no database_url is configured, journeyd runs a private PostgreSQL
 * 15 cluster under data_dir/pg (initdb on first use), reachable only through a Unix socket in
 * data_dir, and stops it on exit if it started it. When run as root the cluster runs as the
 * `postgres` user, since PostgreSQL refuses to run as root. Blocking: called before the loops. */
#ifndef JD_PGEMBED_H
#define JD_PGEMBED_H

#include <stdbool.h>
#include <stddef.h>

/* Ensures the cluster exists and runs, and writes a libpq conninfo for its `journeyd` database
 * into conninfo. *started_here tells whether this call started the server. */
bool jd_pgembed_start(const char *data_dir, char *conninfo, size_t conninfo_len, bool *started_here,
                      char *err, size_t err_len) __attribute__((warn_unused_result));

/* Stops the cluster (fast shutdown). */
void jd_pgembed_stop(const char *data_dir);

#endif
