/* journeyctl: the administration command line of journeyd. It creates sites and admin tokens,
 * applies and dumps journey maps as JSON files ("map as code"), imports coded interview findings
 * from CSV (strict RFC 4180, see journeyctl_csv.h) or JSON, erases or exports one respondent's
 * data (chats included), shows the audit log, signs identity tokens for testing verified
 * identities, and makes raw calls to the admin API. The live-chat commands (transcripts, agent
 * accounts) are in journeyctl_chat.c. The work itself is done by SQL functions (jd_admin,
 * jd_site_create, jd_token_create, jd_apply_map, jd_import_findings, ...; sql/002_admin_api.sql,
 * sql/011_admin_api_privacy.sql, sql/022_chat_api.sql), which validate and write the audit log;
 * journeyctl parses arguments and files, calls them and prints the results.
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
#include "journeyctl_csv.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WUR __attribute__((warn_unused_result))
#define USAGE 2
#define MAX_POS 4
#define MAX_FILE (512u * 1024u * 1024u)
#define DEFAULT_CHUNK 2000

typedef struct opt {
    const char *name; /* long name without the dashes */
    char short_name;  /* 0 when none */
    bool has_arg;
    bool multi;        /* may be given more than once */
    const char *value; /* the last value, "1" for a flag, NULL when not given */
    const char *values[32];
    size_t count;
} opt;

typedef struct ctl ctl;
typedef struct command {
    const char *group;
    const char *sub; /* NULL for one-word commands */
    const char *synopsis;
    const char *help;
    size_t min_pos, max_pos;
    int (*run)(ctl *c, const struct command *cmd, char **pos, size_t npos);
    opt opts[8];
} command;

struct ctl {
    const char *db_url;
    PGconn *conn;
    char actor[160];
    command *cmd;
    bool usage_failed; /* the database URL was missing: exit USAGE */
};

/* ------------------------------------------------------------------------------------------- */
/* Messages */

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
    fprintf(stderr, "journeyctl: %s\n", msg);
}

static const char *cmd_name(const command *cmd, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", cmd->group, cmd->sub ? " " : "", cmd->sub ? cmd->sub : "");
    return buf;
}

static int usage_error(const command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const command *cmd, const char *fmt, ...)
{
    char msg[1024], name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cmd)
        errorf("%s: %s (see 'journeyctl %s --help')", cmd_name(cmd, name, sizeof(name)), msg, name);
    else
        errorf("%s (see 'journeyctl --help')", msg);
    return USAGE;
}

/* Prints a database error as one line. The admin API's own errors (SQLSTATE JDnnn, see
 * sql/002_admin_api.sql) carry a sentence, a stable code as DETAIL and the field as HINT. */
static void report_pg(ctl *c, const char *what, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!primary)
        primary = PQerrorMessage(c->conn);
    if (state && strncmp(state, "JD", 2) == 0) {
        const char *field = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        if (field && *field)
            errorf("%s: %s (field %s)", what, primary, field);
        else
            errorf("%s: %s", what, primary);
    } else if (detail)
        errorf("%s: %s (%s)", what, primary, detail);
    else
        errorf("%s: %s", what, primary);
}

/* ------------------------------------------------------------------------------------------- */
/* Small helpers */

static WUR bool parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static opt *opt_get(command *cmd, const char *name)
{
    for (size_t i = 0; i < sizeof(cmd->opts) / sizeof(cmd->opts[0]) && cmd->opts[i].name; i++)
        if (strcmp(cmd->opts[i].name, name) == 0)
            return &cmd->opts[i];
    return NULL;
}

static const char *opt_value(command *cmd, const char *name)
{
    opt *o = opt_get(cmd, name);
    return o ? o->value : NULL;
}

/* Reads a whole file ("-" for stdin) into out, NUL-terminated (not counted in out->len). */
static WUR int read_file(const char *path, jd_buf *out)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        errorf("cannot open %s: %s", path, strerror(errno));
        return 1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        jd_buf_append(out, chunk, n);
        if (out->len > MAX_FILE) {
            errorf("%s is larger than 512 MiB", path);
            goto fail;
        }
    }
    if (ferror(f)) {
        errorf("cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    jd_buf_append(out, "", 1);
    if (!jd_buf_ok(out)) {
        errorf("out of memory reading %s", path);
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
static WUR int write_output(const char *path, const char *text)
{
    if (!path || strcmp(path, "-") == 0) {
        if (printf("%s\n", text) < 0 || fflush(stdout) != 0) {
            errorf("cannot write to stdout: %s", strerror(errno));
            return 1;
        }
        return 0;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        errorf("cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (fclose(f) != 0 || !ok) {
        errorf("cannot write %s: %s", path, strerror(errno));
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

/* Connects on first use, so that commands check their arguments before needing a database. */
static WUR int db_connect(ctl *c)
{
    if (c->conn)
        return 0;
    const char *url = c->db_url ? c->db_url : getenv("JOURNEYD_DATABASE_URL");
    if (!url || !*url) {
        c->usage_failed = true;
        return usage_error(NULL, "no database: give --database-url URL or set "
                                 "JOURNEYD_DATABASE_URL");
    }
    const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
    const char *vals[] = {url, "journeyctl", "UTF8", NULL};
    c->conn = PQconnectdbParams(keys, vals, 1);
    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        errorf("cannot connect to the database: %s",
               c->conn ? PQerrorMessage(c->conn) : "out of memory");
        PQfinish(c->conn);
        c->conn = NULL;
        return 1;
    }
    return 0;
}

/* Runs sql with text parameters (NULL for SQL NULL). Returns the result, or NULL after printing
 * "journeyctl: what: error". */
static WUR PGresult *db_exec(ctl *c, const char *what, const char *sql, int n,
                             const char *const *params)
{
    if (db_connect(c) != 0)
        return NULL;
    PGresult *res = PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        report_pg(c, what, res);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Runs a query returning one value. *out gets a copy (NULL for SQL NULL or no row). */
static WUR int db_value(ctl *c, const char *what, const char *sql, int n, const char *const *params,
                        char **out)
{
    *out = NULL;
    PGresult *res = db_exec(c, what, sql, n, params);
    if (!res)
        return 1;
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
        *out = strdup(PQgetvalue(res, 0, 0));
        if (!*out) {
            PQclear(res);
            errorf("%s: out of memory", what);
            return 1;
        }
    }
    PQclear(res);
    return 0;
}

/* Runs a query returning one JSON value; *out gets it parsed (NULL for SQL NULL). */
static WUR int db_json(ctl *c, const char *what, const char *sql, int n, const char *const *params,
                       json_t **out)
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
        errorf("%s: the database returned invalid JSON: %s", what, err.text);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* site, token */

static int cmd_site_create(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *name = opt_value(c->cmd, "name");
    opt *origins = opt_get(c->cmd, "origin");
    const char *mode = opt_value(c->cmd, "consent-mode");
    json_t *res = NULL;
    jd_buf arr;
    int rc = 1;
    jd_buf_init(&arr);
    if (!name)
        return usage_error(cmd, "--name is required");
    if (origins->count == 0)
        return usage_error(cmd, "at least one --origin is required");
    if (!mode)
        mode = "none-required";
    if (strcmp(mode, "none-required") && strcmp(mode, "opt-in") && strcmp(mode, "cookieless"))
        return usage_error(cmd, "--consent-mode must be none-required, opt-in or cookieless");
    jd_buf_puts(&arr, "[");
    for (size_t i = 0; i < origins->count; i++) {
        const char *o = origins->values[i];
        const char *host = strncmp(o, "https://", 8) == 0  ? o + 8
                           : strncmp(o, "http://", 7) == 0 ? o + 7
                                                           : NULL;
        if (!host || !*host || strpbrk(host, "/?# \t")) {
            jd_buf_free(&arr);
            return usage_error(cmd, "origin '%s' must look like https://shop.example[:port]", o);
        }
        if (i)
            jd_buf_puts(&arr, ",");
        jd_buf_json_string(&arr, o, strlen(o));
    }
    jd_buf_puts(&arr, "]");
    if (!jd_buf_ok(&arr)) {
        errorf("out of memory");
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
        errorf("site create: unexpected answer from jd_site_create");
        goto fail;
    }
    printf("id: %lld\nkey: %s\n", (long long)json_integer_value(id), json_string_value(key));
    rc = 0;
fail:
    json_decref(res);
    jd_buf_free(&arr);
    return rc;
}

static int cmd_token_create(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *name = opt_value(c->cmd, "name"), *scope = opt_value(c->cmd, "scope");
    const char *site = opt_value(c->cmd, "site"), *days = opt_value(c->cmd, "expires-days");
    long long d = 0;
    json_t *res = NULL;
    if (!name)
        return usage_error(cmd, "--name is required");
    if (!scope || (strcmp(scope, "read") && strcmp(scope, "admin")))
        return usage_error(cmd, "--scope read or --scope admin is required");
    if (days && !parse_int(days, 1, 36500, &d))
        return usage_error(cmd, "--expires-days must be a whole number of days from 1 to 36500");
    const char *p[] = {name, scope, site, days, c->actor};
    if (db_json(c, "token create",
                "SELECT jd_token_create($1::text, $2::text, $3::text, $4::int, $5::text)::text", 5,
                p, &res) != 0)
        return 1;
    json_t *id = json_object_get(res, "id"), *token = json_object_get(res, "token");
    if (!json_is_integer(id) || !json_is_string(token)) {
        json_decref(res);
        errorf("token create: unexpected answer from jd_token_create");
        return 1;
    }
    printf("id: %lld\ntoken: %s\n", (long long)json_integer_value(id), json_string_value(token));
    if (isatty(STDOUT_FILENO))
        fprintf(stderr, "(the token is shown only this once: store it now)\n");
    json_decref(res);
    return 0;
}

static int cmd_token_revoke(ctl *c, const command *cmd, char **pos, size_t npos)
{
    long long id;
    char *out = NULL;
    if (!parse_int(pos[0], 1, INT64_MAX, &id))
        return usage_error(cmd, "token id '%s' is not a positive whole number", pos[0]);
    const char *p[] = {pos[0], c->actor};
    if (db_value(c, "token revoke", "SELECT jd_token_revoke($1::bigint, $2::text)::text", 2, p,
                 &out) != 0)
        return 1;
    bool missing = out && (strcmp(out, "f") == 0 || strcmp(out, "false") == 0);
    free(out);
    if (missing) {
        errorf("token revoke: no token %lld", id);
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

static int cmd_map_apply(ctl *c, const command *cmd, char **pos, size_t npos)
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
        errorf("%s:%d:%d: %s", pos[0], err.line, err.column, err.text);
        goto fail;
    }
    if (!json_is_object(doc)) {
        errorf("%s: a map document is a JSON object", pos[0]);
        goto fail;
    }
    compact = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!compact) {
        errorf("out of memory");
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

static int cmd_map_dump(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *map = opt_value(c->cmd, "map");
    long long id;
    char *text = NULL, *pretty = NULL;
    int rc = 1;
    if (!map || !parse_int(map, 1, INT64_MAX, &id))
        return usage_error(cmd, "--map ID (a positive whole number) is required");
    const char *p[] = {map};
    if (db_value(c, "map dump", "SELECT jd_map_document($1::bigint)::text", 1, p, &text) != 0)
        goto fail;
    if (!text) {
        errorf("map dump: no map %lld", id);
        goto fail;
    }
    pretty = pretty_json(text);
    if (!pretty) {
        errorf("map dump: the database returned invalid JSON");
        goto fail;
    }
    rc = write_output(opt_value(c->cmd, "output"), pretty);
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
static WUR int send_rows(ctl *c, jd_findings *f, const char *map, size_t from, size_t to,
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
        errorf("out of memory");
        goto fail;
    }
    const char *p[] = {map, arr.data, atomic ? "true" : "false", c->actor};
    if (db_json(c, "import",
                "SELECT jd_import_findings($1::bigint, $2::jsonb, $3::boolean, $4::text)::text", 4,
                p, &res) != 0)
        goto fail;
    json_t *acc = json_object_get(res, "accepted"), *errs = json_object_get(res, "errors");
    if (!json_is_integer(acc) || (errs && !json_is_array(errs))) {
        errorf("import: unexpected answer from jd_import_findings");
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
            errorf("out of memory");
            goto fail;
        }
    }
    rc = 0;
fail:
    json_decref(res);
    jd_buf_free(&arr);
    return rc;
}

static int cmd_import(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *map = opt_value(c->cmd, "map"), *chunk_opt = opt_value(c->cmd, "chunk-size");
    const char *file = pos[0];
    bool atomic = opt_value(c->cmd, "atomic") != NULL, in_tx = false;
    long long map_id, chunk = DEFAULT_CHUNK, accepted = 0;
    jd_findings f;
    jd_buf text;
    char *exists = NULL;
    int rc = 1;
    if (!map || !parse_int(map, 1, INT64_MAX, &map_id))
        return usage_error(cmd, "--map ID (a positive whole number) is required");
    if (chunk_opt && !parse_int(chunk_opt, 1, 100000, &chunk))
        return usage_error(cmd, "--chunk-size must be a whole number from 1 to 100000");
    jd_findings_init(&f);
    jd_buf_init(&text);
    const char *p[] = {map};
    if (db_value(c, "import", "SELECT id FROM maps WHERE id = $1::bigint", 1, p, &exists) != 0)
        goto fail;
    if (!exists) {
        errorf("import: no map %lld", map_id);
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
            errorf("%s:%zu: %s", file, f.error_line, f.error);
        else
            errorf("%s: %s", file, f.error);
        goto fail;
    }
    if (atomic) {
        /* One call in one transaction, rolled back when any row (ours or the database's) is bad. */
        PGresult *r = db_exec(c, "import", "BEGIN", 0, NULL);
        if (!r)
            goto fail;
        PQclear(r);
        in_tx = true;
        progress(0, f.count);
        if (f.count > 0 && send_rows(c, &f, map, 0, f.count, true, &accepted) != 0)
            goto fail;
        bool keep = f.nrejects == 0;
        r = db_exec(c, "import", keep ? "COMMIT" : "ROLLBACK", 0, NULL);
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
                errorf("import stopped at line %lld; %lld rows of the file were stored before",
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
        errorf("import: %zu rows rejected; nothing stored (--atomic)", f.nrejects);
    else
        errorf("import: %zu rows rejected, %lld stored", f.nrejects, accepted);
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

typedef struct api_reply {
    int status;
    char *content_type;
    char *body;
} api_reply;

static void api_reply_free(api_reply *r)
{
    free(r->content_type);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static WUR int api_call(ctl *c, const char *method, const char *path, const char *query_json,
                        const char *body, api_reply *out)
{
    const char *p[] = {method, path, query_json, body, c->actor};
    memset(out, 0, sizeof(*out));
    PGresult *res = db_exec(c, "api",
                            "SELECT status, content_type, body FROM jd_admin($1::text, $2::text, "
                            "$3::jsonb, $4::text, $5::text)",
                            5, p);
    if (!res)
        return 1;
    if (PQntuples(res) != 1 || PQnfields(res) != 3) {
        errorf("api: jd_admin returned %d rows of %d columns", PQntuples(res), PQnfields(res));
        PQclear(res);
        return 1;
    }
    out->status = atoi(PQgetvalue(res, 0, 0));
    out->content_type = strdup(PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1));
    out->body = strdup(PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2));
    PQclear(res);
    if (!out->content_type || !out->body) {
        api_reply_free(out);
        errorf("out of memory");
        return 1;
    }
    return 0;
}

/* The error message of an API error body {"error":{"message"}}, or the body itself. */
static const char *api_error_text(const char *body, char *buf, size_t size)
{
    json_t *v = json_loads(body, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    snprintf(buf, size, "%s", msg ? msg : body);
    json_decref(v);
    return buf;
}

/* Calls the admin API and parses a 2xx JSON answer into *out; otherwise prints "what: message". */
static WUR int api_json(ctl *c, const char *what, const char *method, const char *path,
                        const char *query_json, const char *body, json_t **out)
{
    api_reply reply;
    char msg[512];
    int rc = 1;
    *out = NULL;
    if (api_call(c, method, path, query_json, body, &reply) != 0)
        return 1;
    if (reply.status >= 300) {
        errorf("%s: %s (HTTP %d)", what, api_error_text(reply.body, msg, sizeof(msg)),
               reply.status);
        goto fail;
    }
    *out = json_loads(reply.body, JSON_DECODE_ANY, NULL);
    if (!*out) {
        errorf("%s: the admin API answered something that is not JSON", what);
        goto fail;
    }
    rc = 0;
fail:
    api_reply_free(&reply);
    return rc;
}

/* erase and access go through the admin API's privacy routes (POST /respondents/{id}/erase, POST
 * /erase, GET /respondents/{id}; sql/011_admin_api_privacy.sql as redefined by
 * sql/022_chat_api.sql). Erasure calls jd_erase_chat first and jd_erase second, in one
 * transaction (jd_erase clears the e-mail and the sessions that find a visitor's chats); access
 * adds jd_chat_access. Both write the audit log. */
static int cmd_erase(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *site = opt_value(c->cmd, "site"), *resp = opt_value(c->cmd, "respondent");
    const char *email = opt_value(c->cmd, "email");
    char path[80];
    jd_buf query, body;
    json_t *res = NULL;
    int rc = 1;
    if (!site)
        return usage_error(cmd, "--site KEY is required");
    if (!!resp == !!email)
        return usage_error(cmd, "give exactly one of --respondent UUID and --email EMAIL");
    if (resp && !jd_uuid_valid(resp))
        return usage_error(cmd, "--respondent '%s' is not a UUID", resp);
    if (email && !strchr(email, '@'))
        return usage_error(cmd, "--email '%s' is not an email address", email);
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
        errorf("out of memory");
        goto fail;
    }
    if (resp)
        snprintf(path, sizeof(path), "/respondents/%s/erase", resp);
    else
        snprintf(path, sizeof(path), "/erase");
    if (api_json(c, "erase", "POST", path, query.data, email ? body.data : NULL, &res) != 0)
        goto fail;
    json_t *counts = json_object_get(res, "erased");
    if (!json_is_object(counts)) {
        errorf("erase: unexpected answer from the admin API");
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

static int cmd_access(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *site = opt_value(c->cmd, "site"), *resp = opt_value(c->cmd, "respondent");
    char path[80];
    jd_buf query;
    json_t *res = NULL;
    char *pretty = NULL;
    int rc = 1;
    if (!site || !resp)
        return usage_error(cmd, "--site KEY and --respondent UUID are required");
    if (!jd_uuid_valid(resp))
        return usage_error(cmd, "--respondent '%s' is not a UUID", resp);
    jd_buf_init(&query);
    jd_buf_puts(&query, "{\"site\":");
    jd_buf_json_string(&query, site, strlen(site));
    jd_buf_puts(&query, "}");
    jd_buf_append(&query, "", 1);
    if (!jd_buf_ok(&query)) {
        errorf("out of memory");
        goto fail;
    }
    snprintf(path, sizeof(path), "/respondents/%s", resp);
    if (api_json(c, "access", "GET", path, query.data, NULL, &res) != 0)
        goto fail;
    pretty = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!pretty) {
        errorf("out of memory");
        goto fail;
    }
    rc = write_output(opt_value(c->cmd, "output"), pretty);
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

static int cmd_api(ctl *c, const command *cmd, char **pos, size_t npos)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    const char *data = opt_value(c->cmd, "data");
    char *method = pos[0], *path = pos[1];
    jd_buf query, body;
    api_reply reply = {0};
    int rc = 1;
    bool known = false;
    for (char *m = method; *m; m++)
        *m = (char)(*m >= 'a' && *m <= 'z' ? *m - 32 : *m);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        known |= strcmp(method, methods[i]) == 0;
    if (!known)
        return usage_error(cmd, "METHOD must be GET, POST, PUT, PATCH or DELETE");
    if (path[0] != '/')
        return usage_error(cmd, "PATH must start with / (for example /sites)");
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
        errorf("out of memory");
        goto fail;
    }
    if (api_call(c, method, path, query.data, data ? body.data : NULL, &reply) != 0)
        goto fail;
    if (opt_value(c->cmd, "include"))
        printf("%d %s\n", reply.status, reply.content_type);
    if (reply.body[0])
        printf("%s\n", reply.body);
    fflush(stdout);
    if (reply.status >= 400) {
        char msg[512];
        errorf("api: %s %s: %d %s", method, path, reply.status,
               api_error_text(reply.body, msg, sizeof(msg)));
        goto fail;
    }
    rc = 0;
fail:
    api_reply_free(&reply);
    jd_buf_free(&query);
    jd_buf_free(&body);
    return rc;
}

/* Display width of UTF-8 text: one column per character (good enough for a log table). */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Cuts s (on a character boundary) to at most max characters, ending in "...". */
static void shorten(char *s, size_t max)
{
    if (text_width(s) <= max)
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
    size_t ncols = 0, widths[32];
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
    for (size_t k = 0; k < ncols; k++) {
        cells[k] = strdup(cols[k]);
        widths[k] = strlen(cols[k]);
    }
    for (size_t r = 0; r < nrows; r++)
        for (size_t k = 0; k < ncols; k++) {
            char *s = json_short(json_object_get(json_array_get(items, r), cols[k]));
            if (s) {
                for (char *p = s; *p; p++)
                    if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
                shorten(s, 60);
                widths[k] = text_width(s) > widths[k] ? text_width(s) : widths[k];
            }
            cells[(r + 1) * ncols + k] = s;
        }
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t k = 0; k < ncols; k++) {
            const char *s = cells[r * ncols + k] ? cells[r * ncols + k] : "";
            if (k + 1 < ncols)
                printf("%s%*s  ", s, (int)(widths[k] - text_width(s)), "");
            else
                printf("%s\n", s);
        }
    }
    for (size_t i = 0; i < (nrows + 1) * ncols; i++)
        free(cells[i]);
    free(cells);
}

static int cmd_audit(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *limit = opt_value(c->cmd, "limit");
    long long n = 20;
    char query[64];
    json_t *doc = NULL;
    if (limit && !parse_int(limit, 1, 1000, &n))
        return usage_error(cmd, "--limit must be a whole number from 1 to 1000");
    snprintf(query, sizeof(query), "{\"limit\":\"%lld\"}", n);
    if (api_json(c, "audit", "GET", "/audit", query, NULL, &doc) != 0)
        return 1;
    json_t *items = json_is_array(doc) ? doc : json_object_get(doc, "items");
    if (!json_is_array(items)) {
        json_decref(doc);
        errorf("audit: unexpected answer from GET /audit");
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

/* Adds "key":"value" to a JSON object text being built, when value is set. */
static void query_add(jd_buf *q, const char *key, const char *value)
{
    if (!value)
        return;
    jd_buf_puts(q, q->len > 1 ? "," : "");
    jd_buf_json_string(q, key, strlen(key));
    jd_buf_puts(q, ":");
    jd_buf_json_string(q, value, strlen(value));
}

static int cmd_export(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *map = opt_value(c->cmd, "map"), *format = opt_value(c->cmd, "format");
    const char *version = opt_value(c->cmd, "version");
    long long id, v;
    char path[96], err[256];
    json_t *doc = NULL;
    jd_buf q, out;
    int rc = 1;
    if (!map || !parse_int(map, 1, INT64_MAX, &id))
        return usage_error(cmd, "--map ID (a positive whole number) is required");
    if (version && !parse_int(version, 1, INT32_MAX, &v))
        return usage_error(cmd, "--version must be a positive whole number");
    if (!format)
        format = "json";
    if (strcmp(format, "json") != 0 && !jd_export_content_type(format))
        return usage_error(cmd, "--format must be json, csv, csv-grid, mermaid, drawio or html");
    jd_buf_init(&q);
    jd_buf_init(&out);
    jd_buf_puts(&q, "{");
    query_add(&q, "persona", opt_value(c->cmd, "persona"));
    query_add(&q, "from", opt_value(c->cmd, "from"));
    query_add(&q, "to", opt_value(c->cmd, "to"));
    query_add(&q, "source", opt_value(c->cmd, "source"));
    jd_buf_puts(&q, "}");
    if (version)
        snprintf(path, sizeof(path), "/maps/%lld/versions/%lld", id, v);
    else
        snprintf(path, sizeof(path), "/maps/%lld/export", id);
    bool tty = isatty(STDERR_FILENO);
    uint64_t t0 = jd_now_us();
    if (tty)
        fprintf(stderr, "export: aggregating map %lld in PostgreSQL...", id);
    if (api_json(c, "export", "GET", path, q.data, NULL, &doc) != 0)
        goto fail;
    if (tty)
        fprintf(stderr, " %.2f s; rendering %s...", (double)(jd_now_us() - t0) / 1e6, format);
    if (!jd_export_render(format, doc, NULL, &out, err, sizeof(err)) || !jd_buf_ok(&out)) {
        errorf("export: %s", err[0] ? err : "out of memory");
        goto fail;
    }
    if (tty)
        fprintf(stderr, " done in %.2f s (%zu bytes)\n", (double)(jd_now_us() - t0) / 1e6, out.len);
    rc = write_output(opt_value(c->cmd, "output"), out.data);
fail:
    json_decref(doc);
    jd_buf_free(&q);
    jd_buf_free(&out);
    return rc;
}

static int cmd_snapshot(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *map = opt_value(c->cmd, "map");
    long long id;
    char path[64];
    json_t *doc = NULL;
    if (!map || !parse_int(map, 1, INT64_MAX, &id))
        return usage_error(cmd, "--map ID (a positive whole number) is required");
    snprintf(path, sizeof(path), "/maps/%lld/versions", id);
    if (api_json(c, "snapshot", "POST", path, "{}", NULL, &doc) != 0)
        return 1;
    printf("map %lld saved as version %lld\n", id,
           (long long)json_integer_value(json_object_get(doc, "version")));
    json_decref(doc);
    return 0;
}

static int cmd_diff(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *map = opt_value(c->cmd, "map");
    long long id, v1, v2;
    char path[64], query[96];
    json_t *doc = NULL;
    if (!map || !parse_int(map, 1, INT64_MAX, &id))
        return usage_error(cmd, "--map ID (a positive whole number) is required");
    if (!parse_int(pos[0], 1, INT32_MAX, &v1) || !parse_int(pos[1], 1, INT32_MAX, &v2))
        return usage_error(cmd, "V1 and V2 are version numbers");
    snprintf(path, sizeof(path), "/maps/%lld/diff", id);
    snprintf(query, sizeof(query), "{\"v1\":\"%lld\",\"v2\":\"%lld\"}", v1, v2);
    if (api_json(c, "diff", "GET", path, query, NULL, &doc) != 0)
        return 1;
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!text) {
        errorf("diff: out of memory");
        return 1;
    }
    int rc = write_output(opt_value(c->cmd, "output"), text);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* identity sign */

static int cmd_identity_sign(ctl *c, const command *cmd, char **pos, size_t npos)
{
    const char *secret = opt_value(c->cmd, "secret"), *sub = opt_value(c->cmd, "sub");
    const char *ttl_opt = opt_value(c->cmd, "ttl");
    long long ttl = 3600;
    char token[4096];
    if (!secret || !sub)
        return usage_error(cmd, "--secret S and --sub SUBJECT are required");
    if (strlen(secret) < 16)
        return usage_error(cmd, "--secret must be at least 16 characters, like a site's "
                                "identity_secret");
    if (!*sub || strlen(sub) > 128)
        return usage_error(cmd, "--sub must be 1 to 128 characters");
    if (ttl_opt && !parse_int(ttl_opt, 1, 366LL * 24 * 3600, &ttl))
        return usage_error(cmd, "--ttl must be a whole number of seconds from 1 to 31622400");
    if (!jd_identity_sign(sub, (int64_t)time(NULL) + ttl, secret, token, sizeof(token))) {
        errorf("identity sign: the token does not fit in %zu bytes", sizeof(token));
        return 1;
    }
    printf("%s\n", token);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Command table, argument parsing, main */

#define O_ARG(n, s)                                                                                \
    {                                                                                              \
        .name = n, .short_name = s, .has_arg = true                                                \
    }
#define O_MULTI(n)                                                                                 \
    {                                                                                              \
        .name = n, .has_arg = true, .multi = true                                                  \
    }
#define O_FLAG(n, s)                                                                               \
    {                                                                                              \
        .name = n, .short_name = s                                                                 \
    }

/* clang-format off */
static command COMMANDS[] = {
    {"site", "create", "--name NAME --origin ORIGIN [--origin ORIGIN ...] [--consent-mode MODE]",
     "Creates a site and prints its id and its key (the widget's data-site). MODE is\n"
     "none-required (default), opt-in or cookieless.",
     0, 0, cmd_site_create, {O_ARG("name", 0), O_MULTI("origin"), O_ARG("consent-mode", 0)}},
    {"token", "create", "--name NAME --scope read|admin [--site KEY] [--expires-days DAYS]",
     "Creates an admin API bearer token and prints its id and the raw token, once: only a hash\n"
     "is stored. --site limits it to one site; without --expires-days it does not expire.",
     0, 0, cmd_token_create,
     {O_ARG("name", 0), O_ARG("scope", 0), O_ARG("site", 0), O_ARG("expires-days", 0)}},
    {"token", "revoke", "ID", "Revokes the token with that id.", 1, 1, cmd_token_revoke, {{0}}},
    {"map", "apply", "FILE.json",
     "Creates or updates a whole journey map from a JSON document (map as code) and prints what\n"
     "changed. Applying the same file twice changes nothing the second time.",
     1, 1, cmd_map_apply, {{0}}},
    {"map", "dump", "--map ID [-o FILE]",
     "Prints the map document of a map as pretty JSON (to FILE with -o). Applying the dump\n"
     "with 'map apply' changes nothing.",
     0, 0, cmd_map_dump, {O_ARG("map", 0), O_ARG("output", 'o')}},
    {"import", NULL, "--map ID FILE.csv|FILE.json [--atomic] [--chunk-size N]",
     "Imports coded interview findings as answers with source 'interview'. CSV: a header row\n"
     "naming some of the columns persona, stage, touchpoint, action, thought, emotion, obstacle,\n"
     "quote, interviewee, date, goal_reached (any order), strict RFC 4180, UTF-8. JSON: an array\n"
     "of objects with those keys. Rows are sent in chunks of N (default 2000), each stored on\n"
     "its own; with --atomic all rows are stored or none. Prints 'accepted N, rejected M' and a\n"
     "line 'line L: reason' per rejected row (L is the file's line where the row starts). Exits\n"
     "1 when any row was rejected.",
     1, 1, cmd_import, {O_ARG("map", 0), O_FLAG("atomic", 0), O_ARG("chunk-size", 0)}},
    {"erase", NULL, "--site KEY (--respondent UUID | --email EMAIL)",
     "Erases a respondent's chats (conversations, messages, codes, ratings), then answers,\n"
     "touch events and sessions (by respondent id, or every respondent with that email or\n"
     "verified subject, and the visitors whose chats carried it) and prints the counts.\n"
     "Erasing again reports zeros.",
     0, 0, cmd_erase, {O_ARG("site", 0), O_ARG("respondent", 0), O_ARG("email", 0)}},
    {"access", NULL, "--site KEY --respondent UUID [-o FILE]",
     "Prints everything stored about one respondent as JSON (right of access).",
     0, 0, cmd_access, {O_ARG("site", 0), O_ARG("respondent", 0), O_ARG("output", 'o')}},
    {"export", NULL, "--map ID [--format json|csv|csv-grid|mermaid|drawio|html] [--persona P] [--from T] [--to T] [--source S] [--version V] [-o FILE]",
     "Aggregates the map's evidence (answers, coded chat, interviews) in PostgreSQL and writes\n"
     "it as a map file: the canonical journey.json (default), CSV (long or grid), Mermaid\n"
     "journey diagrams, draw.io or a standalone HTML map. --version exports a saved version.\n"
     "Progress goes to stderr when it is a terminal.",
     0, 0, cmd_export,
     {O_ARG("map", 0), O_ARG("format", 0), O_ARG("persona", 0), O_ARG("from", 0), O_ARG("to", 0),
      O_ARG("source", 0), O_ARG("version", 0), O_ARG("output", 'o')}},
    {"snapshot", NULL, "--map ID", "Saves the map's current export as its next numbered version.",
     0, 0, cmd_snapshot, {O_ARG("map", 0)}},
    {"diff", NULL, "--map ID V1 V2 [-o FILE]",
     "Per-cell changes between two saved versions: emotion change with its significance (Welch\n"
     "t), new and resolved obstacles, change in sample size. JSON.",
     2, 2, cmd_diff, {O_ARG("map", 0), O_ARG("output", 'o')}},
    {"audit", NULL, "[--limit N]", "Shows the most recent audit log entries (default 20).",
     0, 0, cmd_audit, {O_ARG("limit", 0)}},
    {"api", NULL, "METHOD PATH [--data JSON|@FILE] [-i]",
     "Calls the admin API (jd_admin) directly with full privileges, for scripting. PATH is like\n"
     "/sites or /maps/3/personas?limit=10 (a leading /api/v1 is dropped). Prints the response\n"
     "body (-i: the status and content type first) and exits 1 when the status is 400 or more.",
     2, 2, cmd_api, {O_ARG("data", 'd'), O_FLAG("include", 'i')}},
    {"identity", "sign", "--secret SECRET --sub SUBJECT [--ttl SECONDS]",
     "Prints a signed identity token (JWT HS256 with sub and exp, default 3600 seconds from\n"
     "now) for a site whose identity_secret is SECRET, to test verified identities. Needs no\n"
     "database.",
     0, 0, cmd_identity_sign, {O_ARG("secret", 0), O_ARG("sub", 0), O_ARG("ttl", 0)}},
};
/* clang-format on */
#define N_COMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

static void print_usage(FILE *f)
{
    char name[64];
    fprintf(f, "usage: journeyctl [--database-url URL] COMMAND [ARGS]\n\n"
               "Administration of journeyd. The database is --database-url or\n"
               "JOURNEYD_DATABASE_URL. 'journeyctl COMMAND --help' describes a command.\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-16s %s\n", cmd_name(&COMMANDS[i], name, sizeof(name)),
                COMMANDS[i].synopsis);
    jd_ctl_chat_usage(f);
    fprintf(f, "\noptions:\n  --database-url URL  PostgreSQL URL (or JOURNEYD_DATABASE_URL)\n"
               "  --help              this text\n  --version           print the version\n");
}

static void print_command_help(const command *cmd)
{
    char name[64];
    printf("usage: journeyctl [--database-url URL] %s %s\n\n%s\n",
           cmd_name(cmd, name, sizeof(name)), cmd->synopsis, cmd->help);
}

/* Parses a command's arguments. Returns 0, USAGE after a message, or -1 for --help. */
static int parse_args(ctl *c, command *cmd, int argc, char **argv, char **pos, size_t *npos)
{
    bool only_pos = false;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        opt *o = NULL;
        const char *val = NULL;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && strncmp(a, "--", 2) == 0) {
            char name[64];
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            snprintf(name, sizeof(name), "%.*s", (int)n, a + 2);
            if (strcmp(name, "help") == 0)
                return -1;
            if (strcmp(name, "database-url") == 0) {
                val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!val)
                    return usage_error(cmd, "--database-url needs a value");
                c->db_url = val;
                continue;
            }
            o = opt_get(cmd, name);
            if (!o)
                return usage_error(cmd, "unknown option --%s", name);
            if (eq && !o->has_arg)
                return usage_error(cmd, "--%s takes no value", name);
            val = eq ? eq + 1 : NULL;
        } else if (!only_pos && a[0] == '-' && a[1] && !a[2]) {
            if (a[1] == 'h')
                return -1;
            for (size_t k = 0; k < sizeof(cmd->opts) / sizeof(cmd->opts[0]) && cmd->opts[k].name;
                 k++)
                if (cmd->opts[k].short_name == a[1])
                    o = &cmd->opts[k];
            if (!o)
                return usage_error(cmd, "unknown option %s", a);
        } else {
            if (*npos >= cmd->max_pos || *npos >= MAX_POS)
                return usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (o->has_arg && !val) {
            if (i + 1 >= argc)
                return usage_error(cmd, "--%s needs a value", o->name);
            val = argv[++i];
        }
        if (o->value && !o->multi)
            return usage_error(cmd, "--%s given twice", o->name);
        if (o->multi) {
            if (o->count >= sizeof(o->values) / sizeof(o->values[0]))
                return usage_error(cmd, "--%s given too many times", o->name);
            o->values[o->count++] = val;
        }
        o->value = o->has_arg ? val : "1";
    }
    if (*npos < cmd->min_pos)
        return usage_error(cmd, "missing argument: %s", cmd->synopsis);
    return 0;
}

static void set_actor(ctl *c)
{
    const char *user = getenv("SUDO_USER");
    struct passwd *pw = user ? NULL : getpwuid(geteuid());
    if (!user)
        user = pw && pw->pw_name ? pw->pw_name : "unknown";
    snprintf(c->actor, sizeof(c->actor), "journeyctl:%s", user);
}

int main(int argc, char **argv)
{
    ctl c = {0};
    char *pos[MAX_POS];
    size_t npos = 0;
    int i = 1, rc;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("journeyctl %s\n", JD_VERSION);
            return 0;
        }
        if (strcmp(a, "--database-url") == 0) {
            if (i + 1 >= argc)
                return usage_error(NULL, "--database-url needs a value");
            c.db_url = argv[i + 1];
            i += 2;
        } else if (strncmp(a, "--database-url=", 15) == 0) {
            c.db_url = a + 15;
            i++;
        } else {
            return usage_error(NULL, "unknown option %s", a);
        }
    }
    if (i >= argc) {
        print_usage(stderr);
        return USAGE;
    }
    const char *group = argv[i++];
    if (jd_ctl_chat_owns(group)) {
        set_actor(&c);
        return jd_ctl_chat_main(group, argc - i, argv + i, c.db_url, c.actor);
    }
    bool group_known = false;
    for (size_t k = 0; k < N_COMMANDS && !c.cmd; k++) {
        command *cmd = &COMMANDS[k];
        if (strcmp(cmd->group, group) != 0)
            continue;
        group_known = true;
        if (!cmd->sub)
            c.cmd = cmd;
        else if (i < argc && strcmp(cmd->sub, argv[i]) == 0)
            c.cmd = cmd, i++;
    }
    if (!c.cmd) {
        if (!group_known)
            return usage_error(NULL, "unknown command '%s'", group);
        char subs[128] = "";
        for (size_t k = 0; k < N_COMMANDS; k++)
            if (strcmp(COMMANDS[k].group, group) == 0)
                snprintf(subs + strlen(subs), sizeof(subs) - strlen(subs), "%s%s",
                         subs[0] ? ", " : "", COMMANDS[k].sub);
        if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            for (size_t k = 0; k < N_COMMANDS; k++)
                if (strcmp(COMMANDS[k].group, group) == 0)
                    print_command_help(&COMMANDS[k]), printf("\n");
            return 0;
        }
        return usage_error(NULL, "'%s' needs one of: %s", group, subs);
    }
    rc = parse_args(&c, c.cmd, argc - i, argv + i, pos, &npos);
    if (rc < 0) {
        print_command_help(c.cmd);
        return 0;
    }
    if (rc != 0)
        return rc;
    set_actor(&c);
    rc = c.cmd->run(&c, c.cmd, pos, npos);
    if (rc != 0 && c.usage_failed)
        rc = USAGE;
    if (c.conn)
        PQfinish(c.conn);
    return rc;
}
