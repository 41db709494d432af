/* Schema migrations: `journeyd migrate` applies the numbered files in sql_dir (NNN_name.sql, in
 * name order) exactly once each, each in its own transaction, recording them in the
 * journeyd_migrations table. Part of the store concern (it is the other module allowed to use
 * libpq); it runs before any event loop starts, so its blocking libpq calls stall nothing. */
#ifndef JD_MIGRATE_H
#define JD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

/* Applies pending migrations. On success returns true and sets *applied to how many ran. On
 * failure everything of the failing file is rolled back and err names the file and the reason. */
bool jd_migrate_run(const char *conninfo, const char *sql_dir, int *applied, char *err,
                    size_t err_len) __attribute__((warn_unused_result));

#endif
