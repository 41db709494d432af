/* Private PostgreSQL for the quickstart and for single-box installs: initdb, pg_ctl start/stop,
 * createdb, run through posix_spawn (as `postgres` via runuser when we are root). */
#include "pgembed.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PG_BIN "/usr/lib/postgresql/15/bin"

/* Runs argv and waits. quiet sends its output to /dev/null (probes whose failure is expected). */
static int run_quiet(char *const argv[], bool quiet)
{
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs PG_BIN/tool with args, as postgres when root; quiet hides its output. */
static int run_pg(bool quiet, const char *tool, const char *a1, const char *a2, const char *a3,
                  const char *a4, const char *a5, const char *a6, const char *a7, const char *a8)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", PG_BIN, tool);
    const char *argv[16];
    int n = 0;
    if (geteuid() == 0) {
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    argv[n++] = path;
    const char *rest[] = {a1, a2, a3, a4, a5, a6, a7, a8};
    for (int i = 0; i < 8 && rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    return run_quiet((char *const *)argv, quiet);
}

static bool owned_by_postgres(const char *path, char *err, size_t err_len)
{
    if (geteuid() != 0)
        return true;
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
        snprintf(err, err_len, "embedded PostgreSQL: no `postgres` user (install postgresql-15)");
        return false;
    }
    if (chown(path, pw->pw_uid, pw->pw_gid) != 0) {
        snprintf(err, err_len, "embedded PostgreSQL: cannot chown %s: %s", path, strerror(errno));
        return false;
    }
    return true;
}

bool jd_pgembed_start(const char *data_dir, char *conninfo, size_t conninfo_len, bool *started_here,
                      char *err, size_t err_len)
{
    char abs_dir[PATH_MAX], pg_dir[PATH_MAX + 8], version[PATH_MAX + 24], log_path[PATH_MAX + 16],
        opts[PATH_MAX + 64];
    *started_here = false;
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "embedded PostgreSQL: cannot create %s: %s", data_dir,
                 strerror(errno));
        return false;
    }
    if (!realpath(data_dir, abs_dir)) {
        snprintf(err, err_len, "embedded PostgreSQL: %s: %s", data_dir, strerror(errno));
        return false;
    }
    if (!owned_by_postgres(abs_dir, err, err_len))
        return false;
    snprintf(pg_dir, sizeof(pg_dir), "%s/pg", abs_dir);
    snprintf(version, sizeof(version), "%s/PG_VERSION", pg_dir);
    snprintf(log_path, sizeof(log_path), "%s/postgresql.log", abs_dir);
    if (access(version, F_OK) != 0) {
        jd_log_info("embedded PostgreSQL: initdb %s", pg_dir);
        if (run_pg(false, "initdb", "-D", pg_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-instructions") != 0) {
            snprintf(err, err_len,
                     "embedded PostgreSQL: initdb failed for %s (is every parent directory "
                     "readable by the postgres user?)",
                     pg_dir);
            return false;
        }
    }
    if (run_pg(true, "pg_ctl", "status", "-D", pg_dir, NULL, NULL, NULL, NULL, NULL) != 0) {
        /* Only a Unix socket in data_dir: nothing listens on the network. */
        snprintf(opts, sizeof(opts), "-c listen_addresses='' -k '%s' -c synchronous_commit=on",
                 abs_dir);
        jd_log_info("embedded PostgreSQL: starting (log: %s)", log_path);
        if (run_pg(false, "pg_ctl", "start", "-w", "-D", pg_dir, "-l", log_path, "-o", opts) != 0) {
            snprintf(err, err_len, "embedded PostgreSQL: pg_ctl start failed; see %s", log_path);
            return false;
        }
        *started_here = true;
    }
    /* createdb fails harmlessly when the database exists. */
    char host_opt[PATH_MAX + 8];
    snprintf(host_opt, sizeof(host_opt), "-h%s", abs_dir);
    char createdb[256];
    snprintf(createdb, sizeof(createdb), "%s/createdb", PG_BIN);
    const char *argv[] = {createdb, host_opt, "-U", "postgres", "journeyd", NULL};
    int exists_rc = run_quiet((char *const *)argv, true);
    (void)exists_rc;
    snprintf(conninfo, conninfo_len, "host=%s port=5432 user=postgres dbname=journeyd", abs_dir);
    return true;
}

void jd_pgembed_stop(const char *data_dir)
{
    char abs_dir[PATH_MAX], pg_dir[PATH_MAX + 8];
    if (!realpath(data_dir, abs_dir))
        return;
    snprintf(pg_dir, sizeof(pg_dir), "%s/pg", abs_dir);
    jd_log_info("embedded PostgreSQL: stopping");
    (void)run_pg(false, "pg_ctl", "stop", "-m", "fast", "-w", "-D", pg_dir, NULL, NULL);
}
