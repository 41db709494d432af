/* What journeyctl's commands share (see journeyctl_common.h): error lines, command tables and
 * their --help, argument parsing, running a command, the PostgreSQL connection and calls to the
 * admin API in SQL (jd_admin) with their error lines. journeyctl.c (sites, tokens, maps,
 * imports, privacy, export, audit, api) and journeyctl_chat.c (transcripts, agent accounts) each
 * keep a table of jd_ctl_command and hand a jd_ctl to jd_ctl_run; the rules are journeyctl's:
 * exit 0, 1 with one line "journeyctl: ..." on stderr for an error, 2 for a usage error. */
#include "journeyctl_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------- */
/* Messages */

void jd_ctl_errorf(const char *fmt, ...)
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

const char *jd_ctl_cmd_name(const jd_ctl_command *cmd, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", cmd->group, cmd->sub ? " " : "", cmd->sub ? cmd->sub : "");
    return buf;
}

int jd_ctl_usage_error(const jd_ctl_command *cmd, const char *fmt, ...)
{
    char msg[1024], name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cmd)
        jd_ctl_errorf("%s: %s (see 'journeyctl %s --help')",
                      jd_ctl_cmd_name(cmd, name, sizeof(name)), msg, name);
    else
        jd_ctl_errorf("%s (see 'journeyctl --help')", msg);
    return JD_CTL_USAGE;
}

void jd_ctl_print_help(const jd_ctl_command *cmd)
{
    char name[64];
    printf("usage: journeyctl [--database-url URL] %s %s\n\n%s\n",
           jd_ctl_cmd_name(cmd, name, sizeof(name)), cmd->synopsis, cmd->help);
}

void jd_ctl_list_commands(FILE *f, const jd_ctl_command *table, size_t n)
{
    char name[64];
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-16s %s\n", jd_ctl_cmd_name(&table[i], name, sizeof(name)),
                table[i].synopsis);
}

/* ------------------------------------------------------------------------------------------- */
/* Commands and arguments */

jd_ctl_command *jd_ctl_find_command(jd_ctl_command *table, size_t n, const char *group, int argc,
                                    char **argv, int *used)
{
    *used = 0;
    for (size_t k = 0; k < n; k++) {
        jd_ctl_command *cmd = &table[k];
        if (strcmp(cmd->group, group) != 0)
            continue;
        if (!cmd->sub)
            return cmd;
        if (argc > 0 && strcmp(cmd->sub, argv[0]) == 0) {
            *used = 1;
            return cmd;
        }
    }
    return NULL;
}

bool jd_ctl_subcommands(const jd_ctl_command *table, size_t n, const char *group, char *buf,
                        size_t size)
{
    bool known = false;
    buf[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        if (strcmp(table[k].group, group) != 0)
            continue;
        known = true;
        if (table[k].sub)
            snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     table[k].sub);
    }
    return known;
}

bool jd_ctl_is_help(const char *word)
{
    return strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0;
}

void jd_ctl_group_help(const jd_ctl_command *table, size_t n, const char *group)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(table[k].group, group) == 0) {
            jd_ctl_print_help(&table[k]);
            printf("\n");
        }
}

jd_ctl_opt *jd_ctl_opt_get(jd_ctl_command *cmd, const char *name)
{
    for (size_t i = 0; i < JD_CTL_MAX_OPTS && cmd->opts[i].name; i++)
        if (strcmp(cmd->opts[i].name, name) == 0)
            return &cmd->opts[i];
    return NULL;
}

const char *jd_ctl_opt_value(const jd_ctl *c, const char *name)
{
    jd_ctl_opt *o = jd_ctl_opt_get(c->cmd, name);
    return o ? o->value : NULL;
}

bool jd_ctl_parse_int(const char *s, long long min, long long max, long long *out)
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

void jd_ctl_json_add(jd_buf *b, const char *key, const char *value)
{
    if (!value)
        return;
    jd_buf_puts(b, b->len > 1 ? "," : "");
    jd_buf_json_string(b, key, strlen(key));
    jd_buf_puts(b, ":");
    jd_buf_json_string(b, value, strlen(value));
}

/* Parses c->cmd's options and positional arguments (at most c->cmd->max_pos, into pos). Returns
 * 0, JD_CTL_USAGE after a message, or -1 for --help. */
static int parse_args(jd_ctl *c, int argc, char **argv, char **pos, size_t *npos)
{
    jd_ctl_command *cmd = c->cmd;
    bool only_pos = false;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        jd_ctl_opt *o = NULL;
        const char *val = NULL;
        if (!only_pos && (c->flags & JD_CTL_DASHDASH) && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && strncmp(a, "--", 2) == 0 && a[2]) {
            char name[64];
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            snprintf(name, sizeof(name), "%.*s", (int)n, a + 2);
            if (strcmp(name, "help") == 0)
                return -1;
            if ((c->flags & JD_CTL_NO_PASSWORD_OPTION) && strcmp(name, "password") == 0)
                return jd_ctl_usage_error(cmd, "passwords are never taken from the command line: "
                                               "pipe the password on stdin or use --password-file "
                                               "FILE");
            if (strcmp(name, "database-url") == 0) {
                val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!val)
                    return jd_ctl_usage_error(cmd, "--database-url needs a value");
                c->db_url = val;
                continue;
            }
            o = jd_ctl_opt_get(cmd, name);
            if (!o)
                return jd_ctl_usage_error(cmd, "unknown option --%s", name);
            if (eq && !o->has_arg)
                return jd_ctl_usage_error(cmd, "--%s takes no value", name);
            val = eq ? eq + 1 : NULL;
        } else if (!only_pos && a[0] == '-' && a[1] && !a[2]) {
            if (a[1] == 'h')
                return -1;
            for (size_t k = 0; k < JD_CTL_MAX_OPTS && cmd->opts[k].name; k++)
                if (cmd->opts[k].short_name == a[1])
                    o = &cmd->opts[k];
            if (!o)
                return jd_ctl_usage_error(cmd, "unknown option %s", a);
        } else {
            if (*npos >= cmd->max_pos || *npos >= JD_CTL_MAX_POS)
                return jd_ctl_usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (o->has_arg && !val) {
            if (i + 1 >= argc)
                return jd_ctl_usage_error(cmd, "--%s needs a value", o->name);
            val = argv[++i];
        }
        if (o->value && !o->multi)
            return jd_ctl_usage_error(cmd, "--%s given twice", o->name);
        if (o->multi) {
            if (o->count >= sizeof(o->values) / sizeof(o->values[0]))
                return jd_ctl_usage_error(cmd, "--%s given too many times", o->name);
            o->values[o->count++] = val;
        }
        o->value = o->has_arg ? val : "1";
    }
    if (*npos < cmd->min_pos)
        return jd_ctl_usage_error(cmd, "missing argument: %s", cmd->synopsis);
    return 0;
}

int jd_ctl_run(jd_ctl *c, int argc, char **argv)
{
    char *pos[JD_CTL_MAX_POS];
    size_t npos = 0;
    int rc = parse_args(c, argc, argv, pos, &npos);
    if (rc < 0) {
        jd_ctl_print_help(c->cmd);
        return 0;
    }
    if (rc == 0) {
        rc = c->cmd->run(c, c->cmd, pos, npos);
        if (rc != 0 && c->usage_failed)
            rc = JD_CTL_USAGE;
    }
    PQfinish(c->conn);
    c->conn = NULL;
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Output */

size_t jd_ctl_text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void jd_ctl_print_table(char *const *cells, size_t nrows, size_t ncols)
{
    size_t *widths = calloc(ncols ? ncols : 1, sizeof(*widths));
    if (!widths)
        return;
    for (size_t i = 0; i < nrows * ncols; i++)
        if (cells[i] && jd_ctl_text_width(cells[i]) > widths[i % ncols])
            widths[i % ncols] = jd_ctl_text_width(cells[i]);
    for (size_t r = 0; r < nrows; r++)
        for (size_t k = 0; k < ncols; k++) {
            const char *s = cells[r * ncols + k] ? cells[r * ncols + k] : "";
            if (k + 1 < ncols)
                printf("%s%*s  ", s, (int)(widths[k] - jd_ctl_text_width(s)), "");
            else
                printf("%s\n", s);
        }
    free(widths);
}

/* ------------------------------------------------------------------------------------------- */
/* Database and admin API */

int jd_ctl_db_connect(jd_ctl *c)
{
    if (c->conn)
        return 0;
    const char *url = c->db_url ? c->db_url : getenv("JOURNEYD_DATABASE_URL");
    if (!url || !*url) {
        c->usage_failed = true;
        return jd_ctl_usage_error(NULL, "no database: give --database-url URL or set "
                                        "JOURNEYD_DATABASE_URL");
    }
    const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
    const char *vals[] = {url, "journeyctl", "UTF8", NULL};
    c->conn = PQconnectdbParams(keys, vals, 1);
    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        jd_ctl_errorf("cannot connect to the database: %s",
                      c->conn ? PQerrorMessage(c->conn) : "out of memory");
        PQfinish(c->conn);
        c->conn = NULL;
        return 1;
    }
    return 0;
}

/* Prints a database error as one line. The admin API's own errors (SQLSTATE JDnnn, see
 * sql/002_admin_api.sql) carry a sentence, a stable code as DETAIL and the field as HINT. */
static void report_pg(const jd_ctl *c, const char *what, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!primary)
        primary = PQerrorMessage(c->conn);
    if (state && strncmp(state, "JD", 2) == 0) {
        const char *field = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        if (field && *field)
            jd_ctl_errorf("%s: %s (field %s)", what, primary, field);
        else
            jd_ctl_errorf("%s: %s", what, primary);
    } else if (detail)
        jd_ctl_errorf("%s: %s (%s)", what, primary, detail);
    else
        jd_ctl_errorf("%s: %s", what, primary);
}

PGresult *jd_ctl_db_exec(jd_ctl *c, const char *what, const char *sql, int n,
                         const char *const *params)
{
    if (jd_ctl_db_connect(c) != 0)
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

void jd_ctl_reply_free(jd_ctl_reply *r)
{
    free(r->content_type);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

int jd_ctl_api_call(jd_ctl *c, const char *what, const char *method, const char *path,
                    const char *query_json, const char *body, jd_ctl_reply *out)
{
    const char *p[] = {method, path, query_json ? query_json : "{}", body, c->actor};
    memset(out, 0, sizeof(*out));
    PGresult *res = jd_ctl_db_exec(c, what,
                                   "SELECT status, content_type, body FROM jd_admin($1::text, "
                                   "$2::text, $3::jsonb, $4::text, $5::text)",
                                   5, p);
    if (!res)
        return 1;
    if (PQntuples(res) != 1 || PQnfields(res) != 3) {
        jd_ctl_errorf("%s: jd_admin returned %d rows of %d columns", what, PQntuples(res),
                      PQnfields(res));
        PQclear(res);
        return 1;
    }
    out->status = atoi(PQgetvalue(res, 0, 0));
    out->content_type = strdup(PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1));
    out->len = PQgetisnull(res, 0, 2) ? 0 : (size_t)PQgetlength(res, 0, 2);
    out->body = malloc(out->len + 1);
    if (out->body) {
        memcpy(out->body, PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2), out->len);
        out->body[out->len] = '\0';
    }
    PQclear(res);
    if (!out->content_type || !out->body) {
        jd_ctl_reply_free(out);
        jd_ctl_errorf("%s: out of memory", what);
        return 1;
    }
    return 0;
}

const char *jd_ctl_api_error_text(const char *body, char *buf, size_t size)
{
    json_t *v = json_loads(body, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    snprintf(buf, size, "%s", msg ? msg : body);
    json_decref(v);
    return buf;
}

void jd_ctl_report_api_error(const jd_ctl *c, const char *what, const jd_ctl_reply *r)
{
    bool full = c->flags & JD_CTL_API_ERROR_FIELD;
    char msg[2048]; /* as much as an error line holds */
    jd_ctl_api_error_text(r->body, msg, full ? sizeof(msg) : 512);
    json_t *v = full ? json_loads(r->body, 0, NULL) : NULL;
    const char *field = json_string_value(json_object_get(json_object_get(v, "error"), "field"));
    if (field && *field)
        jd_ctl_errorf("%s: %s (field %s, HTTP %d)", what, msg, field, r->status);
    else
        jd_ctl_errorf("%s: %s (HTTP %d)", what, msg, r->status);
    json_decref(v);
}

int jd_ctl_api_json(jd_ctl *c, const char *what, const char *method, const char *path,
                    const char *query_json, const char *body, json_t **out)
{
    jd_ctl_reply r;
    int rc = 1;
    *out = NULL;
    if (jd_ctl_api_call(c, (c->flags & JD_CTL_API_ERROR_FIELD) ? what : "api", method, path,
                        query_json, body, &r) != 0)
        return 1;
    if (r.status >= 300) {
        jd_ctl_report_api_error(c, what, &r);
        goto fail;
    }
    *out = json_loads(r.body, JSON_DECODE_ANY, NULL);
    if (!*out) {
        jd_ctl_errorf("%s: the admin API answered something that is not JSON", what);
        goto fail;
    }
    rc = 0;
fail:
    jd_ctl_reply_free(&r);
    return rc;
}
