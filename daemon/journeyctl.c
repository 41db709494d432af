/* journeyctl: the administration command line of journeyd. It creates sites and admin tokens,
 * applies and dumps journey maps as JSON files ("map as code"), imports coded interview findings
 * from CSV (strict RFC 4180, see journeyctl_csv.h) or JSON, erases or exports one respondent's
 * data (chats included), shows the audit log, signs identity tokens for testing verified
 * identities, and makes raw calls to the admin API. The live-chat commands (transcripts, agent
 * accounts) are in journeyctl_chat.c; the framework both use (command tables, argument parsing,
 * error lines, the database connection, admin API calls) in journeyctl_common.c. The work itself is
 * done by SQL functions (jd_admin, jd_site_create, jd_token_create, jd_apply_map,
 * jd_import_findings, ...; sql/002_admin_api.sql, sql/011_admin_api_privacy.sql,
 * sql/022_chat_api.sql), which validate and write the audit log; journeyctl parses arguments and
 * files, calls them and prints the results.
 *
 * journeyctl is a separate, short-lived program run by a human or a script, not part of the event
 * loop daemon, so it talks to PostgreSQL directly with blocking libpq calls. The daemon's rule
 * that only its store module talks to libpq (asynchronously, off the event loop) is about
 * journeyd and does not apply here.
 *
 * Exit status: 0 on success, 1 on an error (one line "journeyctl: ..." on stderr; an import
 * with rejected rows counts as an error), 2 on a usage error. */
#include "export.h"
#include "identity.h"
#include "journeyctl_chat.h"
#include "journeyctl_common.h"
#include "journeyctl_csv.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILE (512u * 1024u * 1024u)
#define DEFAULT_CHUNK 2000

/* ------------------------------------------------------------------------------------------- */
/* Small helpers */

/* Reads a whole file ("-" for stdin) into out, NUL-terminated (not counted in out->len). */
static JD_CTL_WUR int read_file(const char *path, jd_buf *out)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        jd_ctl_errorf("cannot open %s: %s", path, strerror(errno));
        return 1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        jd_buf_append(out, chunk, n);
        if (out->len > MAX_FILE) {
            jd_ctl_errorf("%s is larger than 512 MiB", path);
            goto fail;
        }
    }
    if (ferror(f)) {
        jd_ctl_errorf("cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    jd_buf_append(out, "", 1);
    if (!jd_buf_ok(out)) {
        jd_ctl_errorf("out of memory reading %s", path);
        goto fail;
    }
    out->len--;
    if (!is_stdin)
        fclose(f);
    return 0;
fail:
    if (!is_stdin)
        fclose(f);
    return 1;
}

/* Writes text (plus a newline) to path, or to stdout when path is NULL or "-". */
static JD_CTL_WUR int write_output(const char *path, const char *text)
{
    if (!path || strcmp(path, "-") == 0) {
        if (printf("%s\n", text) < 0 || fflush(stdout) != 0) {
            jd_ctl_errorf("cannot write to stdout: %s", strerror(errno));
            return 1;
        }
        return 0;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        jd_ctl_errorf("cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (fclose(f) != 0 || !ok) {
        jd_ctl_errorf("cannot write %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* Pretty JSON (2-space indent, keys in document order) of a JSON text; NULL when not JSON. */
static char *pretty_json(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        return NULL;
    char *out = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(v);
    return out;
}

/* A JSON value as one short line: strings unquoted, everything else compact JSON. */
static char *json_short(const json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_null(v))
        return strdup("");
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

/* ------------------------------------------------------------------------------------------- */
/* Database */

/* Runs a query returning one value. *out gets a copy (NULL for SQL NULL or no row). */
static JD_CTL_WUR int db_value(jd_ctl *c, const char *what, const char *sql, int n,
                               const char *const *params, char **out)
{
    *out = NULL;
    PGresult *res = jd_ctl_db_exec(c, what, sql, n, params);
    if (!res)
        return 1;
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
        *out = strdup(PQgetvalue(res, 0, 0));
        if (!*out) {
            PQclear(res);
            jd_ctl_errorf("%s: out of memory", what);
            return 1;
        }
    }
    PQclear(res);
    return 0;
}

/* Runs a query returning one JSON value; *out gets it parsed (NULL for SQL NULL). */
static JD_CTL_WUR int db_json(jd_ctl *c, const char *what, const char *sql, int n,
                              const char *const *params, json_t **out)
{
    char *text = NULL;
    *out = NULL;
    if (db_value(c, what, sql, n, params, &text) != 0)
        return 1;
    if (!text)
        return 0;
    json_error_t err;
    *out = json_loads(text, JSON_DECODE_ANY, &err);
    free(text);
    if (!*out) {
        jd_ctl_errorf("%s: the database returned invalid JSON: %s", what, err.text);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* site, token */

static int cmd_site_create(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *name = jd_ctl_opt_value(c, "name");
    jd_ctl_opt *origins = jd_ctl_opt_get(c->cmd, "origin");
    const char *mode = jd_ctl_opt_value(c, "consent-mode");
    json_t *res = NULL;
    jd_buf arr;
    int rc = 1;
    jd_buf_init(&arr);
    if (!name)
        return jd_ctl_usage_error(cmd, "--name is required");
    if (origins->count == 0)
        return jd_ctl_usage_error(cmd, "at least one --origin is required");
    if (!mode)
        mode = "none-required";
    if (strcmp(mode, "none-required") && strcmp(mode, "opt-in") && strcmp(mode, "cookieless"))
        return jd_ctl_usage_error(cmd,
                                  "--consent-mode must be none-required, opt-in or cookieless");
    jd_buf_puts(&arr, "[");
    for (size_t i = 0; i < origins->count; i++) {
        const char *o = origins->values[i];
        const char *host = strncmp(o, "https://", 8) == 0  ? o + 8
                           : strncmp(o, "http://", 7) == 0 ? o + 7
                                                           : NULL;
        if (!host || !*host || strpbrk(host, "/?# \t")) {
            jd_buf_free(&arr);
            return jd_ctl_usage_error(cmd, "origin '%s' must look like https://shop.example[:port]",
                                      o);
        }
        if (i)
            jd_buf_puts(&arr, ",");
        jd_buf_json_string(&arr, o, strlen(o));
    }
    jd_buf_puts(&arr, "]");
    if (!jd_buf_ok(&arr)) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    const char *p[] = {name, arr.data, mode, c->actor};
    if (db_json(
            c, "site create",
            "SELECT jd_site_create($1::text, ARRAY(SELECT jsonb_array_elements_text($2::jsonb)),"
            " $3::text, $4::text)::text",
            4, p, &res) != 0)
        goto fail;
    json_t *id = json_object_get(res, "id"), *key = json_object_get(res, "key");
    if (!json_is_integer(id) || !json_is_string(key)) {
        jd_ctl_errorf("site create: unexpected answer from jd_site_create");
        goto fail;
    }
    printf("id: %lld\nkey: %s\n", (long long)json_integer_value(id), json_string_value(key));
    rc = 0;
fail:
    json_decref(res);
    jd_buf_free(&arr);
    return rc;
}

static int cmd_token_create(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *name = jd_ctl_opt_value(c, "name"), *scope = jd_ctl_opt_value(c, "scope");
    const char *site = jd_ctl_opt_value(c, "site"), *days = jd_ctl_opt_value(c, "expires-days");
    long long d = 0;
    json_t *res = NULL;
    if (!name)
        return jd_ctl_usage_error(cmd, "--name is required");
    if (!scope || (strcmp(scope, "read") && strcmp(scope, "admin")))
        return jd_ctl_usage_error(cmd, "--scope read or --scope admin is required");
    if (days && !jd_ctl_parse_int(days, 1, 36500, &d))
        return jd_ctl_usage_error(cmd,
                                  "--expires-days must be a whole number of days from 1 to 36500");
    const char *p[] = {name, scope, site, days, c->actor};
    if (db_json(c, "token create",
                "SELECT jd_token_create($1::text, $2::text, $3::text, $4::int, $5::text)::text", 5,
                p, &res) != 0)
        return 1;
    json_t *id = json_object_get(res, "id"), *token = json_object_get(res, "token");
    if (!json_is_integer(id) || !json_is_string(token)) {
        json_decref(res);
        jd_ctl_errorf("token create: unexpected answer from jd_token_create");
        return 1;
    }
    printf("id: %lld\ntoken: %s\n", (long long)json_integer_value(id), json_string_value(token));
    if (isatty(STDOUT_FILENO))
        fprintf(stderr, "(the token is shown only this once: store it now)\n");
    json_decref(res);
    return 0;
}

static int cmd_token_revoke(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    long long id;
    char *out = NULL;
    if (!jd_ctl_parse_int(pos[0], 1, INT64_MAX, &id))
        return jd_ctl_usage_error(cmd, "token id '%s' is not a positive whole number", pos[0]);
    const char *p[] = {pos[0], c->actor};
    if (db_value(c, "token revoke", "SELECT jd_token_revoke($1::bigint, $2::text)::text", 2, p,
                 &out) != 0)
        return 1;
    bool missing = out && (strcmp(out, "f") == 0 || strcmp(out, "false") == 0);
    free(out);
    if (missing) {
        jd_ctl_errorf("token revoke: no token %lld", id);
        return 1;
    }
    printf("token %lld revoked\n", id);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* map apply, map dump */

/* Prints a JSON result as "key: value" lines; arrays one element per indented line. */
static void print_summary(const json_t *v)
{
    if (!json_is_object(v)) {
        char *s = json_short(v);
        printf("%s\n", s ? s : "");
        free(s);
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        if (json_is_array(val)) {
            printf("%s: %zu\n", key, json_array_size(val));
            size_t i;
            json_t *item;
            json_array_foreach(val, i, item)
            {
                char *s = json_short(item);
                printf("  %s\n", s ? s : "?");
                free(s);
            }
        } else {
            char *s = json_short(val);
            printf("%s: %s\n", key, s ? s : "?");
            free(s);
        }
    }
}

static int cmd_map_apply(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    jd_buf text;
    json_t *doc = NULL, *res = NULL;
    char *compact = NULL;
    int rc = 1;
    jd_buf_init(&text);
    if (read_file(pos[0], &text) != 0)
        goto fail;
    json_error_t err;
    doc = json_loadb(text.data, text.len, 0, &err);
    if (!doc) {
        jd_ctl_errorf("%s:%d:%d: %s", pos[0], err.line, err.column, err.text);
        goto fail;
    }
    if (!json_is_object(doc)) {
        jd_ctl_errorf("%s: a map document is a JSON object", pos[0]);
        goto fail;
    }
    compact = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!compact) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    const char *p[] = {compact, c->actor};
    if (db_json(c, "map apply", "SELECT jd_apply_map($1::jsonb, $2::text)::text", 2, p, &res) != 0)
        goto fail;
    print_summary(res);
    rc = 0;
fail:
    free(compact);
    json_decref(doc);
    json_decref(res);
    jd_buf_free(&text);
    return rc;
}

static int cmd_map_dump(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *map = jd_ctl_opt_value(c, "map");
    long long id;
    char *text = NULL, *pretty = NULL;
    int rc = 1;
    if (!map || !jd_ctl_parse_int(map, 1, INT64_MAX, &id))
        return jd_ctl_usage_error(cmd, "--map ID (a positive whole number) is required");
    const char *p[] = {map};
    if (db_value(c, "map dump", "SELECT jd_map_document($1::bigint)::text", 1, p, &text) != 0)
        goto fail;
    if (!text) {
        jd_ctl_errorf("map dump: no map %lld", id);
        goto fail;
    }
    pretty = pretty_json(text);
    if (!pretty) {
        jd_ctl_errorf("map dump: the database returned invalid JSON");
        goto fail;
    }
    rc = write_output(jd_ctl_opt_value(c, "output"), pretty);
fail:
    free(pretty);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* import */

static void progress(size_t done, size_t total)
{
    if (!isatty(STDERR_FILENO) || total == 0)
        return;
    int width = 40, fill = (int)((double)done / (double)total * width);
    fprintf(stderr, "\rimporting [%.*s%*s] %zu/%zu rows", fill,
            "########################################", width - fill, "", done, total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Sends rows [from, to) in one jd_import_findings call; adds to *accepted and f->rejects. */
static JD_CTL_WUR int send_rows(jd_ctl *c, jd_findings *f, const char *map, size_t from, size_t to,
                                bool atomic, long long *accepted)
{
    jd_buf arr;
    json_t *res = NULL;
    int rc = 1;
    jd_buf_init(&arr);
    jd_buf_puts(&arr, "[");
    for (size_t i = from; i < to; i++) {
        if (i > from)
            jd_buf_puts(&arr, ",");
        jd_buf_append(&arr, f->rows.data + f->offsets[i], f->offsets[i + 1] - f->offsets[i]);
    }
    jd_buf_puts(&arr, "]");
    jd_buf_append(&arr, "", 1);
    if (!jd_buf_ok(&arr)) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    const char *p[] = {map, arr.data, atomic ? "true" : "false", c->actor};
    if (db_json(c, "import",
                "SELECT jd_import_findings($1::bigint, $2::jsonb, $3::boolean, $4::text)::text", 4,
                p, &res) != 0)
        goto fail;
    json_t *acc = json_object_get(res, "accepted"), *errs = json_object_get(res, "errors");
    if (!json_is_integer(acc) || (errs && !json_is_array(errs))) {
        jd_ctl_errorf("import: unexpected answer from jd_import_findings");
        goto fail;
    }
    *accepted += json_integer_value(acc);
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        json_t *line = json_object_get(e, "line"), *reason = json_object_get(e, "reason");
        char *why = json_short(reason);
        bool ok = jd_findings_add_reject(f, json_is_integer(line) ? json_integer_value(line) : 0,
                                         "%s", why ? why : "rejected");
        free(why);
        if (!ok) {
            jd_ctl_errorf("out of memory");
            goto fail;
        }
    }
    rc = 0;
fail:
    json_decref(res);
    jd_buf_free(&arr);
    return rc;
}

static int cmd_import(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *map = jd_ctl_opt_value(c, "map"), *chunk_opt = jd_ctl_opt_value(c, "chunk-size");
    const char *file = pos[0];
    bool atomic = jd_ctl_opt_value(c, "atomic") != NULL, in_tx = false;
    long long map_id, chunk = DEFAULT_CHUNK, accepted = 0;
    jd_findings f;
    jd_buf text;
    char *exists = NULL;
    int rc = 1;
    if (!map || !jd_ctl_parse_int(map, 1, INT64_MAX, &map_id))
        return jd_ctl_usage_error(cmd, "--map ID (a positive whole number) is required");
    if (chunk_opt && !jd_ctl_parse_int(chunk_opt, 1, 100000, &chunk))
        return jd_ctl_usage_error(cmd, "--chunk-size must be a whole number from 1 to 100000");
    jd_findings_init(&f);
    jd_buf_init(&text);
    const char *p[] = {map};
    if (db_value(c, "import", "SELECT id FROM maps WHERE id = $1::bigint", 1, p, &exists) != 0)
        goto fail;
    if (!exists) {
        jd_ctl_errorf("import: no map %lld", map_id);
        goto fail;
    }
    if (read_file(file, &text) != 0)
        goto fail;
    /* .json or .csv decide; otherwise a file starting with '[' is JSON. */
    size_t flen = strlen(file);
    bool is_json = flen > 5 && strcasecmp(file + flen - 5, ".json") == 0;
    if (!is_json && !(flen > 4 && strcasecmp(file + flen - 4, ".csv") == 0))
        is_json = text.data[strspn(text.data, " \t\r\n")] == '[';
    bool loaded = is_json ? jd_findings_load_json(&f, text.data, text.len)
                          : jd_findings_load_csv(&f, text.data, text.len);
    if (!loaded) {
        if (f.error_line)
            jd_ctl_errorf("%s:%zu: %s", file, f.error_line, f.error);
        else
            jd_ctl_errorf("%s: %s", file, f.error);
        goto fail;
    }
    if (atomic) {
        /* One call in one transaction, rolled back when any row (ours or the database's) is bad. */
        PGresult *r = jd_ctl_db_exec(c, "import", "BEGIN", 0, NULL);
        if (!r)
            goto fail;
        PQclear(r);
        in_tx = true;
        progress(0, f.count);
        if (f.count > 0 && send_rows(c, &f, map, 0, f.count, true, &accepted) != 0)
            goto fail;
        bool keep = f.nrejects == 0;
        r = jd_ctl_db_exec(c, "import", keep ? "COMMIT" : "ROLLBACK", 0, NULL);
        if (!r)
            goto fail;
        PQclear(r);
        in_tx = false;
        if (!keep)
            accepted = 0;
        progress(f.count, f.count);
    } else {
        for (size_t from = 0; from < f.count; from += (size_t)chunk) {
            size_t to = from + (size_t)chunk < f.count ? from + (size_t)chunk : f.count;
            progress(from, f.count);
            if (send_rows(c, &f, map, from, to, false, &accepted) != 0) {
                jd_ctl_errorf(
                    "import stopped at line %lld; %lld rows of the file were stored before",
                    f.lines[from], accepted);
                goto fail;
            }
        }
        progress(f.count, f.count);
    }
    jd_findings_sort_rejects(&f);
    printf("accepted %lld, rejected %zu\n", accepted, f.nrejects);
    for (size_t i = 0; i < f.nrejects; i++)
        printf("line %lld: %s\n", f.rejects[i].line, f.rejects[i].reason);
    fflush(stdout);
    if (f.nrejects == 0)
        rc = 0;
    else if (atomic)
        jd_ctl_errorf("import: %zu rows rejected; nothing stored (--atomic)", f.nrejects);
    else
        jd_ctl_errorf("import: %zu rows rejected, %lld stored", f.nrejects, accepted);
fail:
    if (in_tx)
        PQclear(PQexec(c->conn, "ROLLBACK"));
    jd_findings_free(&f);
    free(exists);
    jd_buf_free(&text);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* api, audit */

/* erase and access go through the admin API's privacy routes (POST /respondents/{id}/erase, POST
 * /erase, GET /respondents/{id}; sql/011_admin_api_privacy.sql as redefined by
 * sql/022_chat_api.sql). Erasure calls jd_erase_chat first and jd_erase second, in one
 * transaction (jd_erase clears the e-mail and the sessions that find a visitor's chats); access
 * adds jd_chat_access. Both write the audit log. */
static int cmd_erase(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *site = jd_ctl_opt_value(c, "site"), *resp = jd_ctl_opt_value(c, "respondent");
    const char *email = jd_ctl_opt_value(c, "email");
    char path[80];
    jd_buf query, body;
    json_t *res = NULL;
    int rc = 1;
    if (!site)
        return jd_ctl_usage_error(cmd, "--site KEY is required");
    if (!!resp == !!email)
        return jd_ctl_usage_error(cmd, "give exactly one of --respondent UUID and --email EMAIL");
    if (resp && !jd_uuid_valid(resp))
        return jd_ctl_usage_error(cmd, "--respondent '%s' is not a UUID", resp);
    if (email && !strchr(email, '@'))
        return jd_ctl_usage_error(cmd, "--email '%s' is not an email address", email);
    jd_buf_init(&query);
    jd_buf_init(&body);
    jd_buf_puts(&query, "{\"site\":");
    jd_buf_json_string(&query, site, strlen(site));
    jd_buf_puts(&query, "}");
    if (email) {
        jd_buf_puts(&body, "{\"email\":");
        jd_buf_json_string(&body, email, strlen(email));
        jd_buf_puts(&body, ",\"site\":");
        jd_buf_json_string(&body, site, strlen(site));
        jd_buf_puts(&body, "}");
    }
    jd_buf_append(&query, "", 1);
    jd_buf_append(&body, "", 1);
    if (!jd_buf_ok(&query) || !jd_buf_ok(&body)) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    if (resp)
        snprintf(path, sizeof(path), "/respondents/%s/erase", resp);
    else
        snprintf(path, sizeof(path), "/erase");
    if (jd_ctl_api_json(c, "erase", "POST", path, query.data, email ? body.data : NULL, &res) != 0)
        goto fail;
    json_t *counts = json_object_get(res, "erased");
    if (!json_is_object(counts)) {
        jd_ctl_errorf("erase: unexpected answer from the admin API");
        goto fail;
    }
    /* The counts in a fixed order, then any others jd_erase may add. */
    static const char *const order[] = {"respondents", "answers", "touch_events", "sessions"};
    const size_t norder = sizeof(order) / sizeof(order[0]);
    const char *key;
    json_t *val;
    printf("erased");
    for (size_t i = 0; i < norder; i++) {
        json_t *n = json_object_get(counts, order[i]);
        if (json_is_integer(n))
            printf(" %s=%lld", order[i], (long long)json_integer_value(n));
    }
    json_object_foreach(counts, key, val)
    {
        bool shown = false;
        for (size_t i = 0; i < norder; i++)
            shown |= strcmp(key, order[i]) == 0 && json_is_integer(val);
        char *text = shown ? NULL : json_short(val);
        if (!shown)
            printf(" %s=%s", key, text ? text : "?");
        free(text);
    }
    /* What jd_erase_chat deleted: conversations with their messages, codes and ratings. */
    static const char *const chat_order[] = {"conversations", "messages", "codes", "ratings"};
    json_t *chat = json_object_get(res, "chat");
    for (size_t i = 0; i < sizeof(chat_order) / sizeof(chat_order[0]); i++) {
        json_t *n = json_object_get(chat, chat_order[i]);
        if (json_is_integer(n))
            printf(" %s=%lld", chat_order[i], (long long)json_integer_value(n));
    }
    printf("\n");
    rc = 0;
fail:
    json_decref(res);
    jd_buf_free(&query);
    jd_buf_free(&body);
    return rc;
}

static int cmd_access(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *site = jd_ctl_opt_value(c, "site"), *resp = jd_ctl_opt_value(c, "respondent");
    char path[80];
    jd_buf query;
    json_t *res = NULL;
    char *pretty = NULL;
    int rc = 1;
    if (!site || !resp)
        return jd_ctl_usage_error(cmd, "--site KEY and --respondent UUID are required");
    if (!jd_uuid_valid(resp))
        return jd_ctl_usage_error(cmd, "--respondent '%s' is not a UUID", resp);
    jd_buf_init(&query);
    jd_buf_puts(&query, "{\"site\":");
    jd_buf_json_string(&query, site, strlen(site));
    jd_buf_puts(&query, "}");
    jd_buf_append(&query, "", 1);
    if (!jd_buf_ok(&query)) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    snprintf(path, sizeof(path), "/respondents/%s", resp);
    if (jd_ctl_api_json(c, "access", "GET", path, query.data, NULL, &res) != 0)
        goto fail;
    pretty = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!pretty) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    rc = write_output(jd_ctl_opt_value(c, "output"), pretty);
fail:
    free(pretty);
    json_decref(res);
    jd_buf_free(&query);
    return rc;
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* Appends the percent-decoded text[0..len) as a JSON string. */
static void json_urldecoded(jd_buf *out, const char *text, size_t len)
{
    jd_buf tmp;
    jd_buf_init(&tmp);
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < len && hexval(text[i + 1]) >= 0 &&
                   hexval(text[i + 2]) >= 0) {
            ch = (char)(hexval(text[i + 1]) * 16 + hexval(text[i + 2]));
            i += 2;
        }
        jd_buf_append(&tmp, &ch, 1);
    }
    jd_buf_json_string(out, tmp.data ? tmp.data : "", tmp.len);
    if (!jd_buf_ok(&tmp))
        out->failed = true;
    jd_buf_free(&tmp);
}

static int cmd_api(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    const char *data = jd_ctl_opt_value(c, "data");
    char *method = pos[0], *path = pos[1];
    jd_buf query, body;
    jd_ctl_reply reply = {0};
    int rc = 1;
    bool known = false;
    for (char *m = method; *m; m++)
        *m = (char)(*m >= 'a' && *m <= 'z' ? *m - 32 : *m);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        known |= strcmp(method, methods[i]) == 0;
    if (!known)
        return jd_ctl_usage_error(cmd, "METHOD must be GET, POST, PUT, PATCH or DELETE");
    if (path[0] != '/')
        return jd_ctl_usage_error(cmd, "PATH must start with / (for example /sites)");
    if (strncmp(path, "/api/v1/", 8) == 0)
        path += 7;
    jd_buf_init(&query);
    jd_buf_init(&body);
    char *q = strchr(path, '?');
    jd_buf_puts(&query, "{");
    if (q) {
        *q++ = '\0';
        bool first = true;
        for (char *part = strtok(q, "&"); part; part = strtok(NULL, "&")) {
            char *eq = strchr(part, '=');
            size_t klen = eq ? (size_t)(eq - part) : strlen(part);
            jd_buf_puts(&query, first ? "" : ",");
            json_urldecoded(&query, part, klen);
            jd_buf_puts(&query, ":");
            json_urldecoded(&query, eq ? eq + 1 : "", eq ? strlen(eq + 1) : 0);
            first = false;
        }
    }
    jd_buf_puts(&query, "}");
    if (data && data[0] == '@') {
        if (read_file(data + 1, &body) != 0)
            goto fail;
    } else if (data) {
        jd_buf_puts(&body, data);
        jd_buf_append(&body, "", 1);
    }
    if (!jd_buf_ok(&query) || !jd_buf_ok(&body)) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    if (jd_ctl_api_call(c, "api", method, path, query.data, data ? body.data : NULL, &reply) != 0)
        goto fail;
    if (jd_ctl_opt_value(c, "include"))
        printf("%d %s\n", reply.status, reply.content_type);
    if (reply.body[0])
        printf("%s\n", reply.body);
    fflush(stdout);
    if (reply.status >= 400) {
        char msg[512];
        jd_ctl_errorf("api: %s %s: %d %s", method, path, reply.status,
                      jd_ctl_api_error_text(reply.body, msg, sizeof(msg)));
        goto fail;
    }
    rc = 0;
fail:
    jd_ctl_reply_free(&reply);
    jd_buf_free(&query);
    jd_buf_free(&body);
    return rc;
}

/* Cuts s (on a character boundary) to at most max characters, ending in "...". */
static void shorten(char *s, size_t max)
{
    if (jd_ctl_text_width(s) <= max)
        return;
    size_t chars = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max - 3)
                break;
            chars++;
        }
    }
    strcpy(s + i, "..."); /* at least 4 more characters were there */
}

/* Prints items (an array of objects) as a table with the columns of the first item. */
static void print_table(const json_t *items)
{
    static const char *const preferred[] = {"id",     "at",          "created_at", "actor",
                                            "action", "object_type", "object",     "object_id",
                                            "target", "site_id",     "detail",     "details"};
    const char *cols[32];
    size_t ncols = 0;
    const json_t *first = json_array_get(items, 0);
    for (size_t i = 0; i < sizeof(preferred) / sizeof(preferred[0]); i++)
        if (json_object_get(first, preferred[i]))
            cols[ncols++] = preferred[i];
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)first, key, val)
    {
        bool seen = false;
        for (size_t i = 0; i < ncols; i++)
            seen |= strcmp(cols[i], key) == 0;
        if (!seen && ncols < 32)
            cols[ncols++] = key;
    }
    size_t nrows = json_array_size(items);
    char **cells = calloc((nrows + 1) * (ncols ? ncols : 1), sizeof(*cells));
    if (!cells)
        return;
    for (size_t k = 0; k < ncols; k++)
        cells[k] = strdup(cols[k]);
    for (size_t r = 0; r < nrows; r++)
        for (size_t k = 0; k < ncols; k++) {
            char *s = json_short(json_object_get(json_array_get(items, r), cols[k]));
            if (s) {
                for (char *p = s; *p; p++)
                    if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
                shorten(s, 60);
            }
            cells[(r + 1) * ncols + k] = s;
        }
    jd_ctl_print_table(cells, nrows + 1, ncols);
    for (size_t i = 0; i < (nrows + 1) * ncols; i++)
        free(cells[i]);
    free(cells);
}

static int cmd_audit(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *limit = jd_ctl_opt_value(c, "limit");
    long long n = 20;
    char query[64];
    json_t *doc = NULL;
    if (limit && !jd_ctl_parse_int(limit, 1, 1000, &n))
        return jd_ctl_usage_error(cmd, "--limit must be a whole number from 1 to 1000");
    snprintf(query, sizeof(query), "{\"limit\":\"%lld\"}", n);
    if (jd_ctl_api_json(c, "audit", "GET", "/audit", query, NULL, &doc) != 0)
        return 1;
    json_t *items = json_is_array(doc) ? doc : json_object_get(doc, "items");
    if (!json_is_array(items)) {
        json_decref(doc);
        jd_ctl_errorf("audit: unexpected answer from GET /audit");
        return 1;
    }
    if (json_array_size(items) == 0)
        printf("no audit entries\n");
    else
        print_table(items);
    json_decref(doc);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* export, snapshot, diff */

static int cmd_export(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *map = jd_ctl_opt_value(c, "map"), *format = jd_ctl_opt_value(c, "format");
    const char *version = jd_ctl_opt_value(c, "version");
    long long id, v;
    char path[96], err[256];
    json_t *doc = NULL;
    jd_buf q, out;
    int rc = 1;
    if (!map || !jd_ctl_parse_int(map, 1, INT64_MAX, &id))
        return jd_ctl_usage_error(cmd, "--map ID (a positive whole number) is required");
    if (version && !jd_ctl_parse_int(version, 1, INT32_MAX, &v))
        return jd_ctl_usage_error(cmd, "--version must be a positive whole number");
    if (!format)
        format = "json";
    if (strcmp(format, "json") != 0 && !jd_export_content_type(format))
        return jd_ctl_usage_error(cmd,
                                  "--format must be json, csv, csv-grid, mermaid, drawio or html");
    jd_buf_init(&q);
    jd_buf_init(&out);
    jd_buf_puts(&q, "{");
    jd_ctl_json_add(&q, "persona", jd_ctl_opt_value(c, "persona"));
    jd_ctl_json_add(&q, "from", jd_ctl_opt_value(c, "from"));
    jd_ctl_json_add(&q, "to", jd_ctl_opt_value(c, "to"));
    jd_ctl_json_add(&q, "source", jd_ctl_opt_value(c, "source"));
    jd_buf_puts(&q, "}");
    if (version)
        snprintf(path, sizeof(path), "/maps/%lld/versions/%lld", id, v);
    else
        snprintf(path, sizeof(path), "/maps/%lld/export", id);
    bool tty = isatty(STDERR_FILENO);
    uint64_t t0 = jd_now_us();
    if (tty)
        fprintf(stderr, "export: aggregating map %lld in PostgreSQL...", id);
    if (jd_ctl_api_json(c, "export", "GET", path, q.data, NULL, &doc) != 0)
        goto fail;
    if (tty)
        fprintf(stderr, " %.2f s; rendering %s...", (double)(jd_now_us() - t0) / 1e6, format);
    if (!jd_export_render(format, doc, NULL, &out, err, sizeof(err)) || !jd_buf_ok(&out)) {
        jd_ctl_errorf("export: %s", err[0] ? err : "out of memory");
        goto fail;
    }
    if (tty)
        fprintf(stderr, " done in %.2f s (%zu bytes)\n", (double)(jd_now_us() - t0) / 1e6, out.len);
    rc = write_output(jd_ctl_opt_value(c, "output"), out.data);
fail:
    json_decref(doc);
    jd_buf_free(&q);
    jd_buf_free(&out);
    return rc;
}

static int cmd_snapshot(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *map = jd_ctl_opt_value(c, "map");
    long long id;
    char path[64];
    json_t *doc = NULL;
    if (!map || !jd_ctl_parse_int(map, 1, INT64_MAX, &id))
        return jd_ctl_usage_error(cmd, "--map ID (a positive whole number) is required");
    snprintf(path, sizeof(path), "/maps/%lld/versions", id);
    if (jd_ctl_api_json(c, "snapshot", "POST", path, "{}", NULL, &doc) != 0)
        return 1;
    printf("map %lld saved as version %lld\n", id,
           (long long)json_integer_value(json_object_get(doc, "version")));
    json_decref(doc);
    return 0;
}

static int cmd_diff(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *map = jd_ctl_opt_value(c, "map");
    long long id, v1, v2;
    char path[64], query[96];
    json_t *doc = NULL;
    if (!map || !jd_ctl_parse_int(map, 1, INT64_MAX, &id))
        return jd_ctl_usage_error(cmd, "--map ID (a positive whole number) is required");
    if (!jd_ctl_parse_int(pos[0], 1, INT32_MAX, &v1) ||
        !jd_ctl_parse_int(pos[1], 1, INT32_MAX, &v2))
        return jd_ctl_usage_error(cmd, "V1 and V2 are version numbers");
    snprintf(path, sizeof(path), "/maps/%lld/diff", id);
    snprintf(query, sizeof(query), "{\"v1\":\"%lld\",\"v2\":\"%lld\"}", v1, v2);
    if (jd_ctl_api_json(c, "diff", "GET", path, query, NULL, &doc) != 0)
        return 1;
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!text) {
        jd_ctl_errorf("diff: out of memory");
        return 1;
    }
    int rc = write_output(jd_ctl_opt_value(c, "output"), text);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* identity sign */

static int cmd_identity_sign(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *secret = jd_ctl_opt_value(c, "secret"), *sub = jd_ctl_opt_value(c, "sub");
    const char *ttl_opt = jd_ctl_opt_value(c, "ttl");
    long long ttl = 3600;
    char token[4096];
    if (!secret || !sub)
        return jd_ctl_usage_error(cmd, "--secret S and --sub SUBJECT are required");
    if (strlen(secret) < 16)
        return jd_ctl_usage_error(cmd, "--secret must be at least 16 characters, like a site's "
                                       "identity_secret");
    if (!*sub || strlen(sub) > 128)
        return jd_ctl_usage_error(cmd, "--sub must be 1 to 128 characters");
    if (ttl_opt && !jd_ctl_parse_int(ttl_opt, 1, 366LL * 24 * 3600, &ttl))
        return jd_ctl_usage_error(cmd,
                                  "--ttl must be a whole number of seconds from 1 to 31622400");
    if (!jd_identity_sign(sub, (int64_t)time(NULL) + ttl, secret, token, sizeof(token))) {
        jd_ctl_errorf("identity sign: the token does not fit in %zu bytes", sizeof(token));
        return 1;
    }
    printf("%s\n", token);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Command table, argument parsing, main */

/* clang-format off */
static jd_ctl_command COMMANDS[] = {
    {"site", "create", "--name NAME --origin ORIGIN [--origin ORIGIN ...] [--consent-mode MODE]",
     "Creates a site and prints its id and its key (the widget's data-site). MODE is\n"
     "none-required (default), opt-in or cookieless.",
     0, 0, cmd_site_create, {JD_CTL_ARG("name", 0), JD_CTL_MULTI("origin"), JD_CTL_ARG("consent-mode", 0)}},
    {"token", "create", "--name NAME --scope read|admin [--site KEY] [--expires-days DAYS]",
     "Creates an admin API bearer token and prints its id and the raw token, once: only a hash\n"
     "is stored. --site limits it to one site; without --expires-days it does not expire.",
     0, 0, cmd_token_create,
     {JD_CTL_ARG("name", 0), JD_CTL_ARG("scope", 0), JD_CTL_ARG("site", 0), JD_CTL_ARG("expires-days", 0)}},
    {"token", "revoke", "ID", "Revokes the token with that id.", 1, 1, cmd_token_revoke, {{0}}},
    {"map", "apply", "FILE.json",
     "Creates or updates a whole journey map from a JSON document (map as code) and prints what\n"
     "changed. Applying the same file twice changes nothing the second time.",
     1, 1, cmd_map_apply, {{0}}},
    {"map", "dump", "--map ID [-o FILE]",
     "Prints the map document of a map as pretty JSON (to FILE with -o). Applying the dump\n"
     "with 'map apply' changes nothing.",
     0, 0, cmd_map_dump, {JD_CTL_ARG("map", 0), JD_CTL_ARG("output", 'o')}},
    {"import", NULL, "--map ID FILE.csv|FILE.json [--atomic] [--chunk-size N]",
     "Imports coded interview findings as answers with source 'interview'. CSV: a header row\n"
     "naming some of the columns persona, stage, touchpoint, action, thought, emotion, obstacle,\n"
     "quote, interviewee, date, goal_reached (any order), strict RFC 4180, UTF-8. JSON: an array\n"
     "of objects with those keys. Rows are sent in chunks of N (default 2000), each stored on\n"
     "its own; with --atomic all rows are stored or none. Prints 'accepted N, rejected M' and a\n"
     "line 'line L: reason' per rejected row (L is the file's line where the row starts). Exits\n"
     "1 when any row was rejected.",
     1, 1, cmd_import, {JD_CTL_ARG("map", 0), JD_CTL_FLAG("atomic", 0), JD_CTL_ARG("chunk-size", 0)}},
    {"erase", NULL, "--site KEY (--respondent UUID | --email EMAIL)",
     "Erases a respondent's chats (conversations, messages, codes, ratings), then answers,\n"
     "touch events and sessions (by respondent id, or every respondent with that email or\n"
     "verified subject, and the visitors whose chats carried it) and prints the counts.\n"
     "Erasing again reports zeros.",
     0, 0, cmd_erase, {JD_CTL_ARG("site", 0), JD_CTL_ARG("respondent", 0), JD_CTL_ARG("email", 0)}},
    {"access", NULL, "--site KEY --respondent UUID [-o FILE]",
     "Prints everything stored about one respondent as JSON (right of access).",
     0, 0, cmd_access, {JD_CTL_ARG("site", 0), JD_CTL_ARG("respondent", 0), JD_CTL_ARG("output", 'o')}},
    {"export", NULL, "--map ID [--format json|csv|csv-grid|mermaid|drawio|html] [--persona P] [--from T] [--to T] [--source S] [--version V] [-o FILE]",
     "Aggregates the map's evidence (answers, coded chat, interviews) in PostgreSQL and writes\n"
     "it as a map file: the canonical journey.json (default), CSV (long or grid), Mermaid\n"
     "journey diagrams, draw.io or a standalone HTML map. --version exports a saved version.\n"
     "Progress goes to stderr when it is a terminal.",
     0, 0, cmd_export,
     {JD_CTL_ARG("map", 0), JD_CTL_ARG("format", 0), JD_CTL_ARG("persona", 0), JD_CTL_ARG("from", 0), JD_CTL_ARG("to", 0),
      JD_CTL_ARG("source", 0), JD_CTL_ARG("version", 0), JD_CTL_ARG("output", 'o')}},
    {"snapshot", NULL, "--map ID", "Saves the map's current export as its next numbered version.",
     0, 0, cmd_snapshot, {JD_CTL_ARG("map", 0)}},
    {"diff", NULL, "--map ID V1 V2 [-o FILE]",
     "Per-cell changes between two saved versions: emotion change with its significance (Welch\n"
     "t), new and resolved obstacles, change in sample size. JSON.",
     2, 2, cmd_diff, {JD_CTL_ARG("map", 0), JD_CTL_ARG("output", 'o')}},
    {"audit", NULL, "[--limit N]", "Shows the most recent audit log entries (default 20).",
     0, 0, cmd_audit, {JD_CTL_ARG("limit", 0)}},
    {"api", NULL, "METHOD PATH [--data JSON|@FILE] [-i]",
     "Calls the admin API (jd_admin) directly with full privileges, for scripting. PATH is like\n"
     "/sites or /maps/3/personas?limit=10 (a leading /api/v1 is dropped). Prints the response\n"
     "body (-i: the status and content type first) and exits 1 when the status is 400 or more.",
     2, 2, cmd_api, {JD_CTL_ARG("data", 'd'), JD_CTL_FLAG("include", 'i')}},
    {"identity", "sign", "--secret SECRET --sub SUBJECT [--ttl SECONDS]",
     "Prints a signed identity token (JWT HS256 with sub and exp, default 3600 seconds from\n"
     "now) for a site whose identity_secret is SECRET, to test verified identities. Needs no\n"
     "database.",
     0, 0, cmd_identity_sign, {JD_CTL_ARG("secret", 0), JD_CTL_ARG("sub", 0), JD_CTL_ARG("ttl", 0)}},
};
/* clang-format on */
#define N_COMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

static void print_usage(FILE *f)
{
    fprintf(f, "usage: journeyctl [--database-url URL] COMMAND [ARGS]\n\n"
               "Administration of journeyd. The database is --database-url or\n"
               "JOURNEYD_DATABASE_URL. 'journeyctl COMMAND --help' describes a command.\n\n"
               "commands:\n");
    jd_ctl_list_commands(f, COMMANDS, N_COMMANDS);
    jd_ctl_chat_usage(f);
    fprintf(f, "\noptions:\n  --database-url URL  PostgreSQL URL (or JOURNEYD_DATABASE_URL)\n"
               "  --help              this text\n  --version           print the version\n");
}

static void set_actor(jd_ctl *c)
{
    const char *user = getenv("SUDO_USER");
    struct passwd *pw = user ? NULL : getpwuid(geteuid());
    if (!user)
        user = pw && pw->pw_name ? pw->pw_name : "unknown";
    snprintf(c->actor, sizeof(c->actor), "journeyctl:%s", user);
}

int main(int argc, char **argv)
{
    jd_ctl c = {.flags = JD_CTL_DASHDASH};
    int i = 1, used;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (jd_ctl_is_help(a)) {
            print_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("journeyctl %s\n", JD_VERSION);
            return 0;
        }
        if (strcmp(a, "--database-url") == 0) {
            if (i + 1 >= argc)
                return jd_ctl_usage_error(NULL, "--database-url needs a value");
            c.db_url = argv[i + 1];
            i += 2;
        } else if (strncmp(a, "--database-url=", 15) == 0) {
            c.db_url = a + 15;
            i++;
        } else {
            return jd_ctl_usage_error(NULL, "unknown option %s", a);
        }
    }
    if (i >= argc) {
        print_usage(stderr);
        return JD_CTL_USAGE;
    }
    const char *group = argv[i++];
    set_actor(&c);
    if (jd_ctl_chat_owns(group))
        return jd_ctl_chat_main(&c, group, argc - i, argv + i);
    c.cmd = jd_ctl_find_command(COMMANDS, N_COMMANDS, group, argc - i, argv + i, &used);
    if (!c.cmd) {
        char subs[128];
        if (!jd_ctl_subcommands(COMMANDS, N_COMMANDS, group, subs, sizeof(subs)))
            return jd_ctl_usage_error(NULL, "unknown command '%s'", group);
        if (i < argc && jd_ctl_is_help(argv[i])) {
            jd_ctl_group_help(COMMANDS, N_COMMANDS, group);
            return 0;
        }
        return jd_ctl_usage_error(NULL, "'%s' needs one of: %s", group, subs);
    }
    i += used;
    return jd_ctl_run(&c, argc - i, argv + i);
}
