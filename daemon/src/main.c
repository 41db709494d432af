/* journeyd entry point: parses the command line and runs `migrate` or the daemon. */
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "migrate.h"
#include "pgembed.h"

#include <stdio.h>
#include <string.h>

static int migrate(const jd_config *config)
{
    char conninfo[2048], err[1024];
    bool embedded = false;
    int applied = 0, rc = 0;
    if (!jd_daemon_resolve_database(config, conninfo, sizeof(conninfo), &embedded, err,
                                    sizeof(err))) {
        fprintf(stderr, "journeyd: %s\n", err);
        return 1;
    }
    if (!jd_migrate_run(conninfo, config->sql_dir, &applied, err, sizeof(err))) {
        fprintf(stderr, "journeyd: %s\n", err);
        rc = 1;
    } else {
        printf("journeyd: %d migration(s) applied\n", applied);
    }
    if (embedded)
        jd_pgembed_stop(config->data_dir);
    return rc;
}

int main(int argc, char *argv[])
{
    jd_config config;
    jd_command command;
    char err[1024];
    if (!jd_config_load(&config, &command, argc, argv, err, sizeof(err))) {
        fprintf(stderr, "journeyd: %s\n", err);
        return 2;
    }
    switch (command) {
    case JD_CMD_HELP:
        jd_config_print_help(stdout);
        return 0;
    case JD_CMD_VERSION:
        printf("journeyd %s (protocol journey.v1)\n", JD_VERSION);
        return 0;
    case JD_CMD_CHECK_CONFIG:
        printf("journeyd: configuration OK\n");
        return 0;
    default:
        break;
    }
    jd_log_level level = JD_LOG_INFO;
    if (!jd_log_level_parse(config.log_level, &level))
        level = JD_LOG_INFO;
    jd_log_configure(level, strcmp(config.log_format, "json") == 0);
    if (command == JD_CMD_MIGRATE)
        return migrate(&config);
    return jd_daemon_run(&config, argc, argv);
}
