/* Applies numbered SQL migrations once each, under an advisory lock so two instances starting at
 * once cannot race. Blocking libpq is fine here: this runs as a command, never on a loop. */
#include "migrate.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_migration(const char *name)
{
    size_t n = strlen(name), digits = 0;
    while (name[digits] >= '0' && name[digits] <= '9')
        digits++;
    return digits > 0 && name[digits] == '_' && n > 4 && strcmp(name + n - 4, ".sql") == 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)len + 1))) {
            if (fread(data, 1, (size_t)len, f) != (size_t)len) {
                free(data);
                data = NULL;
            } else {
                data[len] = '\0';
            }
        }
    }
    fclose(f);
    return data;
}

static bool exec_ok(PGconn *conn, const char *sql, char *err, size_t err_len)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, err_len, "%s", PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

bool jd_migrate_run(const char *conninfo, const char *sql_dir, int *applied, char *err,
                    size_t err_len)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *sql = NULL;
    char reason[1024] = "";
    *applied = 0;
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, err_len, "cannot connect to the database: %s", PQerrorMessage(conn));
        goto fail;
    }
    if (!exec_ok(conn, "SET client_min_messages TO warning", reason, sizeof(reason)) ||
        !exec_ok(conn, "SELECT pg_advisory_lock(7740110)", reason, sizeof(reason)) ||
        !exec_ok(conn,
                 "CREATE TABLE IF NOT EXISTS journeyd_migrations (version text PRIMARY KEY, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 reason, sizeof(reason))) {
        snprintf(err, err_len, "cannot prepare the migrations table: %s", reason);
        goto fail;
    }
    DIR *d = opendir(sql_dir);
    if (!d) {
        snprintf(err, err_len, "cannot open sql_dir %s: %s", sql_dir, strerror(errno));
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_migration(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof(*grown));
            if (!grown) {
                closedir(d);
                snprintf(err, err_len, "out of memory");
                goto fail;
            }
            names = grown;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), compare_names);

    for (size_t i = 0; i < n; i++) {
        const char *params[1] = {names[i]};
        PGresult *res = PQexecParams(conn, "SELECT 1 FROM journeyd_migrations WHERE version = $1",
                                     1, NULL, params, NULL, NULL, 0);
        bool done = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        bool query_ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        if (!query_ok) {
            snprintf(err, err_len, "cannot read journeyd_migrations: %s", PQerrorMessage(conn));
            goto fail;
        }
        if (done)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", sql_dir, names[i]);
        free(sql);
        sql = read_file(path);
        if (!sql) {
            snprintf(err, err_len, "migration %s: cannot read %s", names[i], path);
            goto fail;
        }
        if (!exec_ok(conn, "BEGIN", reason, sizeof(reason)))
            goto fail_file;
        if (!exec_ok(conn, sql, reason, sizeof(reason))) {
            char ignore[256];
            (void)exec_ok(conn, "ROLLBACK", ignore, sizeof(ignore));
            goto fail_file;
        }
        res = PQexecParams(conn, "INSERT INTO journeyd_migrations (version) VALUES ($1)", 1, NULL,
                           params, NULL, NULL, 0);
        query_ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!query_ok)
            snprintf(reason, sizeof(reason), "%s", PQresultErrorMessage(res));
        PQclear(res);
        if (!query_ok || !exec_ok(conn, "COMMIT", reason, sizeof(reason))) {
            char ignore[256];
            (void)exec_ok(conn, "ROLLBACK", ignore, sizeof(ignore));
            goto fail_file;
        }
        jd_log_info("migration %s applied", names[i]);
        (*applied)++;
        continue;
    fail_file:
        reason[strcspn(reason, "\n")] = '\0';
        snprintf(err, err_len, "migration %s failed and was rolled back: %s", names[i], reason);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(sql);
    PQfinish(conn);
    return true;

fail:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(sql);
    PQfinish(conn);
    return false;
}
