/* Configuration: one table of settings drives parsing, --help and the generated reference in
 * docs/configuration.md. Values are layered: built-in defaults, then the config file
 * (`key = value` lines, `#` comments), then JOURNEYD_* environment variables, then command-line
 * flags. A jd_config is a plain value (fixed-size strings, no pointers), so it is copied by
 * assignment and handed between threads without ownership questions. */
#ifndef JD_CONFIG_H
#define JD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define JD_CONFIG_STR 1024

typedef struct jd_config {
    char config_file[JD_CONFIG_STR];  /* --config / JOURNEYD_CONFIG; empty = none */
    char listen[256];                 /* host:port, JOURNEYD_LISTEN */
    char database_url[JD_CONFIG_STR]; /* libpq conninfo or URI; empty = embedded PostgreSQL */
    char data_dir[JD_CONFIG_STR];     /* embedded PostgreSQL lives in data_dir/pg */
    char static_dir[JD_CONFIG_STR];   /* built widget and demo files served over HTTP */
    char sql_dir[JD_CONFIG_STR];      /* numbered migrations for `journeyd migrate` */
    int max_frame;                    /* bytes per WebSocket message; over it closes 1009 */
    int rate_per_sec;                 /* token bucket refill per connection */
    int rate_burst;                   /* token bucket size per connection */
    int max_conns;                    /* total connections */
    int max_conns_per_ip;             /* open connections from one client IP */
    int max_inflight;                 /* unacked frames per connection before reading pauses */
    int queue_capacity;               /* records between the network and store threads */
    int batch_max;                    /* rows per group commit */
    int pipeline_depth;               /* group commits in flight on the database connection */
    int ping_interval;                /* seconds of silence before a WebSocket ping */
    int drain_timeout;                /* seconds SIGTERM waits for the flush before giving up */
    int catalog_refresh;              /* seconds between reloads of sites and surveys */
    char tls_cert[JD_CONFIG_STR];     /* PEM certificate chain; with tls_key serves https/wss */
    char tls_key[JD_CONFIG_STR];      /* PEM private key */
    int hsts_max_age;                 /* seconds for Strict-Transport-Security; 0 = no header */
    char trusted_proxies[512];        /* comma-separated proxy IPs whose X-Forwarded-For counts */
    int purge_interval;               /* seconds between retention purges; 0 = never */
    char instance[128];  /* this instance's name for chat presence; empty = host:port */
    char log_level[16];  /* error, warn, info, debug */
    char log_format[16]; /* text or json */
} jd_config;

/* What the command line asked for, besides settings. */
typedef enum {
    JD_CMD_RUN = 0,      /* serve */
    JD_CMD_MIGRATE,      /* journeyd migrate */
    JD_CMD_HELP,         /* --help */
    JD_CMD_VERSION,      /* --version */
    JD_CMD_CHECK_CONFIG, /* --check-config */
} jd_command;

/* Fills every setting with its built-in default. */
void jd_config_defaults(jd_config *config);

/* Builds a config from defaults, the config file, the environment and argv (in that order of
 * precedence, last wins) and validates it. argv is only read. On success returns true and sets
 * *command; on error returns false and writes a one-line human message naming the setting and the
 * source (file:line, environment variable or flag) into err. *config is only written on success. */
bool jd_config_load(jd_config *config, jd_command *command, int argc, char *const argv[], char *err,
                    size_t err_len) __attribute__((warn_unused_result));

/* Checks ranges and forms (listen is host:port, log_level known, ...). Returns false and writes
 * the first problem into err. */
bool jd_config_validate(const jd_config *config, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Writes the names of settings that differ between old and new and only take effect after a
 * restart, comma-separated, into out (empty string when none). */
void jd_config_restart_needed(const jd_config *old_config, const jd_config *new_config, char *out,
                              size_t out_len);

/* Copies every restart-only setting from running into next, so a reload applies only what can
 * change at run time (the table decides which). */
void jd_config_keep_restart_only(const jd_config *running, jd_config *next);

/* Prints usage with every setting, its flag, environment variable, default and help. */
void jd_config_print_help(FILE *out);

/* Prints the Markdown reference table (docs/configuration.md is generated from it). */
void jd_config_print_markdown(FILE *out);

/* Splits config->listen into host and port. Returns false when it is not host:port. */
bool jd_config_listen_split(const char *listen, char *host, size_t host_len, int *port)
    __attribute__((warn_unused_result));

#endif
