/* journeyctl's live-chat commands: `journeyctl transcripts` writes chat transcripts (JSONL, CSV,
 * plain text or HTML) and `journeyctl agent add|passwd|disable|enable|list` manages a site's agent
 * accounts. Like the rest of journeyctl they call the admin API in SQL through jd_admin
 * (sql/022_chat_api.sql: GET /conversations, GET /conversations/{id}/transcript,
 * /sites/{site}/agents[/{id}]), so validation, access rules, the audit log and the answers are
 * the API's own; this file parses arguments, reads passwords and prints.
 *
 * A transcript is written byte for byte as the API answered it. Passwords never come from the
 * command line, where ps and shell history would keep them: they are read from --password-file or
 * from stdin (the first line; on a terminal prompted for twice, without echo), travel to
 * PostgreSQL as a query parameter (never inside the SQL text, never in the audit log) and are
 * wiped from memory after use.
 *
 * journeyctl.c hands over the command line (jd_ctl_chat_main) and lists the commands in its
 * --help (jd_ctl_chat_usage); exit status and error lines follow journeyctl's rules: 0, 1 with one
 * line "journeyctl: ..." for an error, 2 for a usage error. */
#include "journeyctl_chat.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#define WUR __attribute__((warn_unused_result))
#define USAGE 2
#define MAX_OPTS 16
#define PASSWORD_MAX 1024 /* bcrypt uses 72 bytes; the database refuses more than that */
#define AGENT_PAGE 1000

typedef struct chat_opt {
    const char *name; /* long name without the dashes */
    char short_name;  /* 0 when none */
    bool has_arg;
    const char *value; /* "1" for a flag, NULL when not given */
} chat_opt;

typedef struct chat_ctl chat_ctl;
typedef struct chat_cmd {
    const char *group;
    const char *sub; /* NULL for one-word commands */
    const char *synopsis;
    const char *help;
    int (*run)(chat_ctl *c);
    chat_opt opts[MAX_OPTS];
} chat_cmd;

struct chat_ctl {
    const char *db_url;
    const char *actor;
    PGconn *conn;
    chat_cmd *cmd;
    bool usage_failed; /* no database URL: exit USAGE */
};

/* One answer of jd_admin. */
typedef struct api_reply {
    int status;
    char *content_type;
    char *body;
    size_t len;
} api_reply;

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
    fprintf(stderr, "journeyctl: %s\n", msg);
}

static const char *cmd_name(const chat_cmd *cmd, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", cmd->group, cmd->sub ? " " : "", cmd->sub ? cmd->sub : "");
    return buf;
}

static int usage_error(const chat_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const chat_cmd *cmd, const char *fmt, ...)
{
    char msg[1024], name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errorf("%s: %s (see 'journeyctl %s --help')", cmd_name(cmd, name, sizeof(name)), msg, name);
    return USAGE;
}

static void print_help(const chat_cmd *cmd)
{
    char name[64];
    printf("usage: journeyctl [--database-url URL] %s %s\n\n%s\n",
           cmd_name(cmd, name, sizeof(name)), cmd->synopsis, cmd->help);
}

/* ------------------------------------------------------------------------------------------- */
/* Arguments */

static const char *opt(const chat_ctl *c, const char *name)
{
    for (size_t i = 0; i < MAX_OPTS && c->cmd->opts[i].name; i++)
        if (strcmp(c->cmd->opts[i].name, name) == 0)
            return c->cmd->opts[i].value;
    return NULL;
}

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

/* A site id or key: safe to put in an API path. */
static bool site_ref_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
            !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

/* Parses the options of c->cmd (no positional arguments). Returns 0, USAGE after a message, or -1
 * for --help. */
static int parse_args(chat_ctl *c, int argc, char **argv)
{
    chat_cmd *cmd = c->cmd;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        chat_opt *o = NULL;
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            char name[64];
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            snprintf(name, sizeof(name), "%.*s", (int)n, a + 2);
            if (strcmp(name, "help") == 0)
                return -1;
            if (strcmp(name, "password") == 0)
                return usage_error(cmd, "passwords are never taken from the command line: pipe "
                                        "the password on stdin or use --password-file FILE");
            if (strcmp(name, "database-url") == 0) {
                val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!val)
                    return usage_error(cmd, "--database-url needs a value");
                c->db_url = val;
                continue;
            }
            for (size_t k = 0; k < MAX_OPTS && cmd->opts[k].name; k++)
                if (strcmp(cmd->opts[k].name, name) == 0)
                    o = &cmd->opts[k];
            if (!o)
                return usage_error(cmd, "unknown option --%s", name);
            if (eq && !o->has_arg)
                return usage_error(cmd, "--%s takes no value", name);
            val = eq ? eq + 1 : NULL;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            if (a[1] == 'h')
                return -1;
            for (size_t k = 0; k < MAX_OPTS && cmd->opts[k].name; k++)
                if (cmd->opts[k].short_name == a[1])
                    o = &cmd->opts[k];
            if (!o)
                return usage_error(cmd, "unknown option %s", a);
        } else {
            return usage_error(cmd, "unexpected argument '%s'", a);
        }
        if (o->has_arg && !val) {
            if (i + 1 >= argc)
                return usage_error(cmd, "--%s needs a value", o->name);
            val = argv[++i];
        }
        if (o->value)
            return usage_error(cmd, "--%s given twice", o->name);
        o->value = o->has_arg ? val : "1";
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Database and admin API */

static WUR int db_connect(chat_ctl *c)
{
    if (c->conn)
        return 0;
    const char *url = c->db_url ? c->db_url : getenv("JOURNEYD_DATABASE_URL");
    if (!url || !*url) {
        c->usage_failed = true;
        errorf("no database: give --database-url URL or set JOURNEYD_DATABASE_URL (see "
               "'journeyctl --help')");
        return 1;
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

static void reply_free(api_reply *r)
{
    free(r->content_type);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Calls jd_admin(method, path, query, body, actor). A database error is printed as "what: ...". */
static WUR int api_call(chat_ctl *c, const char *what, const char *method, const char *path,
                        const char *query_json, const char *body, api_reply *out)
{
    memset(out, 0, sizeof(*out));
    if (db_connect(c) != 0)
        return 1;
    const char *p[] = {method, path, query_json ? query_json : "{}", body, c->actor};
    PGresult *res = PQexecParams(c->conn,
                                 "SELECT status, content_type, body FROM jd_admin($1::text, "
                                 "$2::text, $3::jsonb, $4::text, $5::text)",
                                 5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 3) {
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        errorf("%s: %s", what, msg ? msg : PQerrorMessage(c->conn));
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
        reply_free(out);
        errorf("%s: out of memory", what);
        return 1;
    }
    return 0;
}

/* Prints an API error answer {"error":{"message","field"}} as "what: message (field F, HTTP N)". */
static void report_api_error(const char *what, const api_reply *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    json_t *e = json_object_get(v, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *field = json_string_value(json_object_get(e, "field"));
    if (field && *field)
        errorf("%s: %s (field %s, HTTP %d)", what, msg ? msg : r->body, field, r->status);
    else
        errorf("%s: %s (HTTP %d)", what, msg ? msg : r->body, r->status);
    json_decref(v);
}

/* Calls the API and parses a 2xx JSON answer into *out; otherwise prints the error. */
static WUR int api_json(chat_ctl *c, const char *what, const char *method, const char *path,
                        const char *query_json, const char *body, json_t **out)
{
    api_reply r;
    *out = NULL;
    if (api_call(c, what, method, path, query_json, body, &r) != 0)
        return 1;
    int rc = 1;
    if (r.status >= 300) {
        report_api_error(what, &r);
        goto fail;
    }
    *out = json_loads(r.body, 0, NULL);
    if (!*out) {
        errorf("%s: the admin API answered something that is not JSON", what);
        goto fail;
    }
    rc = 0;
fail:
    reply_free(&r);
    return rc;
}

/* Adds "key":"value" to a JSON object text being built (which starts with "{"). */
static void json_add(jd_buf *b, const char *key, const char *value)
{
    if (!value)
        return;
    jd_buf_puts(b, b->len > 1 ? "," : "");
    jd_buf_json_string(b, key, strlen(key));
    jd_buf_puts(b, ":");
    jd_buf_json_string(b, value, strlen(value));
}

/* Finishes a JSON object text: closes it and NUL-terminates. */
static WUR bool json_end(jd_buf *b)
{
    jd_buf_puts(b, "}");
    jd_buf_append(b, "", 1);
    if (!jd_buf_ok(b)) {
        errorf("out of memory");
        return false;
    }
    return true;
}

/* Adds "key":"secret" with room reserved first, so that no reallocation while the secret is
 * copied in leaves a copy of it behind in freed memory. */
static WUR bool json_add_secret(jd_buf *b, const char *key, const char *secret)
{
    if (!jd_buf_reserve(b, strlen(key) + 6 * strlen(secret) + 16)) {
        errorf("out of memory");
        return false;
    }
    json_add(b, key, secret);
    return true;
}

/* Frees a buffer that held a password, wiping it first. */
static void buf_wipe(jd_buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    jd_buf_free(b);
}

/* ------------------------------------------------------------------------------------------- */
/* transcripts */

static bool format_valid(const char *f)
{
    return strcmp(f, "jsonl") == 0 || strcmp(f, "csv") == 0 || strcmp(f, "text") == 0 ||
           strcmp(f, "html") == 0;
}

/* Writes len bytes to path ("-" or NULL: stdout), exactly. */
static WUR int write_all(const char *path, const char *data, size_t len)
{
    bool to_stdout = !path || strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "wb");
    if (!f) {
        errorf("cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (to_stdout ? fflush(f) == 0 : fclose(f) == 0) && ok;
    if (!ok) {
        errorf("cannot write %s: %s", to_stdout ? "to stdout" : path, strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_transcripts(chat_ctl *c)
{
    const char *conv = opt(c, "conversation"), *format = opt(c, "format");
    const char *limit = opt(c, "limit");
    static const char *const bulk_only[] = {"from", "to", "stage", "code", "coded", "limit"};
    char path[96];
    long long n;
    jd_buf q;
    api_reply r = {0};
    int rc = 1;
    if (format && !format_valid(format))
        return usage_error(c->cmd, "--format must be jsonl, csv, text or html");
    if (limit && !parse_int(limit, 1, 10000, &n))
        return usage_error(c->cmd, "--limit must be a whole number of conversations from 1 to "
                                   "10000");
    if (conv && !jd_uuid_valid(conv))
        return usage_error(c->cmd, "--conversation '%s' is not a conversation id (a UUID)", conv);
    for (size_t i = 0; conv && i < sizeof(bulk_only) / sizeof(bulk_only[0]); i++)
        if (opt(c, bulk_only[i]))
            return usage_error(c->cmd,
                               "--%s selects conversations; --conversation exports "
                               "one whole conversation",
                               bulk_only[i]);
    jd_buf_init(&q);
    jd_buf_puts(&q, "{");
    json_add(&q, "site", opt(c, "site"));
    json_add(&q, "format", format);
    json_add(&q, "from", opt(c, "from"));
    json_add(&q, "to", opt(c, "to"));
    json_add(&q, "stage", opt(c, "stage"));
    json_add(&q, "code", opt(c, "code"));
    json_add(&q, "coded", opt(c, "coded") ? "true" : NULL);
    json_add(&q, "redact", opt(c, "redact") ? "true" : NULL);
    json_add(&q, "notes", opt(c, "notes") ? "true" : NULL);
    json_add(&q, "limit", limit);
    if (!json_end(&q))
        goto fail;
    if (conv)
        snprintf(path, sizeof(path), "/conversations/%s/transcript", conv);
    else
        snprintf(path, sizeof(path), "/conversations");
    if (api_call(c, "transcripts", "GET", path, q.data, NULL, &r) != 0)
        goto fail;
    if (r.status >= 300) {
        report_api_error("transcripts", &r);
        goto fail;
    }
    rc = write_all(opt(c, "output"), r.body, r.len);
fail:
    reply_free(&r);
    jd_buf_free(&q);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Passwords */

/* Reads one line (without its line end) from f into out[size]. Returns 0, or 1 after a message. */
static WUR int read_line(FILE *f, const char *from, char *out, size_t size)
{
    if (!fgets(out, (int)size, f)) {
        if (ferror(f))
            errorf("cannot read the password from %s: %s", from, strerror(errno));
        else
            errorf("no password on %s", from);
        return 1;
    }
    size_t n = strlen(out);
    bool line_end = n > 0 && out[n - 1] == '\n';
    if (!line_end && n == size - 1 && !feof(f)) {
        explicit_bzero(out, size);
        errorf("the password on %s is longer than %d bytes", from, PASSWORD_MAX - 2);
        return 1;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    if (n == 0) {
        errorf("empty password on %s", from);
        return 1;
    }
    return 0;
}

/* Prompts on the terminal with echo off. */
static WUR int prompt_line(const char *prompt, char *out, size_t size)
{
    struct termios old, quiet;
    bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
    fputs(prompt, stderr);
    fflush(stderr);
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rc = read_line(stdin, "the terminal", out, size);
    if (restore)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return rc;
}

/* The password from --password-file FILE, else from stdin (prompted twice on a terminal). */
static WUR int read_password(chat_ctl *c, char *out, size_t size)
{
    const char *file = opt(c, "password-file");
    if (file && strcmp(file, "-") != 0) {
        FILE *f = fopen(file, "r");
        if (!f) {
            errorf("cannot open %s: %s", file, strerror(errno));
            return 1;
        }
        int rc = read_line(f, file, out, size);
        fclose(f);
        return rc;
    }
    if (!isatty(STDIN_FILENO))
        return read_line(stdin, "stdin", out, size);
    char again[PASSWORD_MAX];
    if (prompt_line("New password: ", out, size) != 0)
        return 1;
    int rc = prompt_line("Repeat it: ", again, sizeof(again));
    if (rc == 0 && strcmp(out, again) != 0) {
        errorf("the passwords differ");
        rc = 1;
    }
    explicit_bzero(again, sizeof(again));
    if (rc != 0)
        explicit_bzero(out, size);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* agent */

/* --site is required and must be an id or a key. */
static int need_site(chat_ctl *c, const char **site)
{
    *site = opt(c, "site");
    if (!*site)
        return usage_error(c->cmd, "--site KEY is required");
    if (!site_ref_valid(*site))
        return usage_error(c->cmd, "--site '%s' is not a site key or id", *site);
    return 0;
}

/* Every agent of the site (the API pages by 1000). */
static WUR int list_agents(chat_ctl *c, const char *what, const char *site, json_t **out)
{
    char path[128], query[64];
    *out = json_array();
    if (!*out) {
        errorf("out of memory");
        return 1;
    }
    snprintf(path, sizeof(path), "/sites/%s/agents", site);
    for (long long off = 0;; off += AGENT_PAGE) {
        json_t *page;
        snprintf(query, sizeof(query), "{\"limit\":\"%d\",\"offset\":\"%lld\"}", AGENT_PAGE, off);
        if (api_json(c, what, "GET", path, query, NULL, &page) != 0)
            goto fail;
        json_t *items = json_object_get(page, "items");
        if (!json_is_array(items)) {
            json_decref(page);
            errorf("%s: unexpected answer from GET %s", what, path);
            goto fail;
        }
        json_array_extend(*out, items);
        size_t got = json_array_size(items);
        json_decref(page);
        if (got < AGENT_PAGE)
            return 0;
    }
fail:
    json_decref(*out);
    *out = NULL;
    return 1;
}

/* The agent named by --id or --email (exactly one of them) on the site. *id gets its id, *email
 * (optional) a copy of its e-mail. */
static int find_agent(chat_ctl *c, const char *what, const char *site, long long *id, char **email)
{
    const char *by_id = opt(c, "id"), *by_email = opt(c, "email");
    json_t *all = NULL;
    if (!!by_id == !!by_email)
        return usage_error(c->cmd, "give exactly one of --email EMAIL and --id ID");
    if (by_id && !parse_int(by_id, 1, INT64_MAX, id))
        return usage_error(c->cmd, "--id must be a positive whole number");
    if (list_agents(c, what, site, &all) != 0)
        return 1;
    size_t i;
    json_t *a;
    json_array_foreach(all, i, a)
    {
        const char *e = json_string_value(json_object_get(a, "email"));
        long long aid = (long long)json_integer_value(json_object_get(a, "id"));
        if (e && (by_id ? aid == *id : strcasecmp(e, by_email) == 0)) {
            *id = aid;
            if (email)
                *email = strdup(e);
            json_decref(all);
            if (email && !*email) {
                errorf("out of memory");
                return 1;
            }
            return 0;
        }
    }
    json_decref(all);
    if (by_id)
        errorf("%s: no agent with id %s on site %s", what, by_id, site);
    else
        errorf("%s: no agent with e-mail %s on site %s", what, by_email, site);
    return 1;
}

static int cmd_agent_add(chat_ctl *c)
{
    const char *site, *email = opt(c, "email"), *role = opt(c, "role");
    char password[PASSWORD_MAX], path[128];
    jd_buf body;
    json_t *res = NULL;
    int rc = need_site(c, &site);
    if (rc != 0)
        return rc;
    if (!email || !strchr(email, '@'))
        return usage_error(c->cmd, "--email EMAIL (the agent's sign-in) is required");
    if (role && strcmp(role, "agent") != 0 && strcmp(role, "admin") != 0)
        return usage_error(c->cmd, "--role must be agent or admin");
    if (read_password(c, password, sizeof(password)) != 0)
        return 1;
    jd_buf_init(&body);
    jd_buf_puts(&body, "{");
    json_add(&body, "email", email);
    json_add(&body, "name", opt(c, "name"));
    json_add(&body, "role", role);
    bool ok = json_add_secret(&body, "password", password);
    explicit_bzero(password, sizeof(password));
    rc = 1;
    if (!ok || !json_end(&body))
        goto fail;
    snprintf(path, sizeof(path), "/sites/%s/agents", site);
    if (api_json(c, "agent add", "POST", path, "{}", body.data, &res) != 0)
        goto fail;
    printf("id: %lld\nemail: %s\nname: %s\nrole: %s\n",
           (long long)json_integer_value(json_object_get(res, "id")),
           json_string_value(json_object_get(res, "email")),
           json_string_value(json_object_get(res, "name")),
           json_string_value(json_object_get(res, "role")));
    rc = 0;
fail:
    json_decref(res);
    buf_wipe(&body);
    return rc;
}

static int cmd_agent_passwd(chat_ctl *c)
{
    const char *site;
    char password[PASSWORD_MAX], path[160];
    char *email = NULL;
    long long id = 0;
    jd_buf body;
    json_t *res = NULL;
    int rc = need_site(c, &site);
    if (rc != 0)
        return rc;
    if ((rc = find_agent(c, "agent passwd", site, &id, &email)) != 0)
        return rc;
    if (read_password(c, password, sizeof(password)) != 0) {
        free(email);
        return 1;
    }
    jd_buf_init(&body);
    jd_buf_puts(&body, "{");
    bool ok = json_add_secret(&body, "password", password);
    explicit_bzero(password, sizeof(password));
    rc = 1;
    if (!ok || !json_end(&body))
        goto fail;
    snprintf(path, sizeof(path), "/sites/%s/agents/%lld", site, id);
    if (api_json(c, "agent passwd", "PATCH", path, "{}", body.data, &res) != 0)
        goto fail;
    printf("password changed for agent %lld (%s); its console sessions ended\n", id, email);
    rc = 0;
fail:
    json_decref(res);
    buf_wipe(&body);
    free(email);
    return rc;
}

/* agent disable (DELETE, which disables) and agent enable (PATCH {"disabled": false}). */
static int agent_switch(chat_ctl *c, bool enable)
{
    const char *site, *what = enable ? "agent enable" : "agent disable";
    char path[160];
    char *email = NULL;
    long long id = 0;
    json_t *res = NULL;
    int rc = need_site(c, &site);
    if (rc != 0)
        return rc;
    if ((rc = find_agent(c, what, site, &id, &email)) != 0)
        return rc;
    snprintf(path, sizeof(path), "/sites/%s/agents/%lld", site, id);
    rc = api_json(c, what, enable ? "PATCH" : "DELETE", path, "{}",
                  enable ? "{\"disabled\":false}" : NULL, &res);
    if (rc == 0) {
        if (enable)
            printf("enabled agent %lld (%s)\n", id, email);
        else
            printf("disabled agent %lld (%s); its console sessions ended\n", id, email);
    }
    json_decref(res);
    free(email);
    return rc;
}

static int cmd_agent_disable(chat_ctl *c)
{
    return agent_switch(c, false);
}

static int cmd_agent_enable(chat_ctl *c)
{
    return agent_switch(c, true);
}

/* Display width of UTF-8 text: one column per code point. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static int cmd_agent_list(chat_ctl *c)
{
    static const char *const head[] = {"id",     "email",  "name",      "role",
                                       "status", "online", "created_at"};
    enum { NCOLS = sizeof(head) / sizeof(head[0]) };
    const char *site;
    json_t *all = NULL;
    int rc = need_site(c, &site);
    if (rc != 0)
        return rc;
    if (list_agents(c, "agent list", site, &all) != 0)
        return 1;
    size_t nrows = json_array_size(all), widths[NCOLS];
    char **cells = calloc((nrows + 1) * NCOLS, sizeof(*cells));
    rc = 1;
    if (!cells) {
        errorf("out of memory");
        goto fail;
    }
    for (size_t k = 0; k < NCOLS; k++) {
        cells[k] = strdup(head[k]);
        widths[k] = strlen(head[k]);
    }
    for (size_t r = 0; r < nrows; r++) {
        json_t *a = json_array_get(all, r);
        char id[32];
        snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(a, "id")));
        const char *row[NCOLS] = {
            id,
            json_string_value(json_object_get(a, "email")),
            json_string_value(json_object_get(a, "name")),
            json_string_value(json_object_get(a, "role")),
            json_is_true(json_object_get(a, "disabled")) ? "disabled" : "active",
            json_is_true(json_object_get(a, "online")) ? "yes" : "no",
            json_string_value(json_object_get(a, "created_at")),
        };
        for (size_t k = 0; k < NCOLS; k++) {
            char *s = strdup(row[k] ? row[k] : "");
            for (char *p = s; p && *p; p++)
                if ((unsigned char)*p < 0x20)
                    *p = ' ';
            cells[(r + 1) * NCOLS + k] = s;
            if (s && text_width(s) > widths[k])
                widths[k] = text_width(s);
        }
    }
    if (nrows == 0)
        printf("no agents on site %s\n", site);
    for (size_t r = 0; nrows > 0 && r <= nrows; r++)
        for (size_t k = 0; k < NCOLS; k++) {
            const char *s = cells[r * NCOLS + k] ? cells[r * NCOLS + k] : "";
            if (k + 1 < NCOLS)
                printf("%s%*s  ", s, (int)(widths[k] - text_width(s)), "");
            else
                printf("%s\n", s);
        }
    rc = fflush(stdout) == 0 ? 0 : 1;
fail:
    for (size_t i = 0; cells && i < (nrows + 1) * NCOLS; i++)
        free(cells[i]);
    free(cells);
    json_decref(all);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Command table, main */

#define O_ARG(n, s)                                                                                \
    {                                                                                              \
        .name = n, .short_name = s, .has_arg = true                                                \
    }
#define O_FLAG(n)                                                                                  \
    {                                                                                              \
        .name = n                                                                                  \
    }

/* clang-format off */
static chat_cmd COMMANDS[] = {
    {"transcripts", NULL,
     "[--site KEY] [--conversation ID] [--from T] [--to T] [--stage SLUG] [--code SLUG] [--coded] [--redact] [--notes] [--limit N] [--format jsonl|csv|text|html] [-o FILE]",
     "Writes chat transcripts (GET /api/v1/conversations): whole conversations of the site\n"
     "active in the window, in the order they were opened, then by message. jsonl (default):\n"
     "one message per line with its codes; csv: RFC 4180 with a formula guard; text: readable;\n"
     "html: an escaped page. --stage: a message written on that stage or a code naming it;\n"
     "--code: an obstacle slug a code names; --coded: only coded conversations; --redact: mask\n"
     "e-mails, phones, cards and IPs (always on when the site's redact setting is not off);\n"
     "--notes: include the agents' private notes; --limit: conversations (default 1000).\n"
     "--conversation ID writes that one conversation. --site may be left out when there is\n"
     "one site. Audited.",
     cmd_transcripts,
     {O_ARG("site", 0), O_ARG("conversation", 0), O_ARG("from", 0), O_ARG("to", 0),
      O_ARG("stage", 0), O_ARG("code", 0), O_FLAG("coded"), O_FLAG("redact"), O_FLAG("notes"),
      O_ARG("limit", 0), O_ARG("format", 0), O_ARG("output", 'o')}},
    {"agent", "add", "--site KEY --email EMAIL [--name NAME] [--role agent|admin] [--password-file FILE]",
     "Creates a chat agent account on the site and prints its id. The password (10 characters\n"
     "to 72 bytes) is the first line of FILE, else of stdin (asked for twice, without echo, on\n"
     "a terminal); it is never taken from the command line. The name defaults to the part of\n"
     "the e-mail before the @; admins may also edit canned responses.",
     cmd_agent_add,
     {O_ARG("site", 0), O_ARG("email", 0), O_ARG("name", 0), O_ARG("role", 0),
      O_ARG("password-file", 0)}},
    {"agent", "passwd", "--site KEY (--email EMAIL | --id ID) [--password-file FILE]",
     "Sets a new password (read like 'agent add' does). Every console session of the agent\n"
     "ends.",
     cmd_agent_passwd, {O_ARG("site", 0), O_ARG("email", 0), O_ARG("id", 0), O_ARG("password-file", 0)}},
    {"agent", "disable", "--site KEY (--email EMAIL | --id ID)",
     "Disables an agent: it can no longer sign in and every console session ends. The account\n"
     "is kept, so its messages and codes keep their author. 'agent enable' undoes it.",
     cmd_agent_disable, {O_ARG("site", 0), O_ARG("email", 0), O_ARG("id", 0)}},
    {"agent", "enable", "--site KEY (--email EMAIL | --id ID)",
     "Lets a disabled agent sign in again.",
     cmd_agent_enable, {O_ARG("site", 0), O_ARG("email", 0), O_ARG("id", 0)}},
    {"agent", "list", "--site KEY",
     "Lists the site's agents: id, e-mail, name, role, active or disabled, online.",
     cmd_agent_list, {O_ARG("site", 0)}},
};
/* clang-format on */
#define N_COMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

bool jd_ctl_chat_owns(const char *group)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].group, group) == 0)
            return true;
    return false;
}

void jd_ctl_chat_usage(FILE *f)
{
    char name[64];
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-16s %s\n", cmd_name(&COMMANDS[i], name, sizeof(name)),
                COMMANDS[i].synopsis);
}

int jd_ctl_chat_main(const char *group, int argc, char **argv, const char *db_url,
                     const char *actor)
{
    chat_ctl c = {.db_url = db_url, .actor = actor};
    int i = 0;
    char subs[128] = "";
    for (size_t k = 0; k < N_COMMANDS && !c.cmd; k++) {
        chat_cmd *cmd = &COMMANDS[k];
        if (strcmp(cmd->group, group) != 0)
            continue;
        if (!cmd->sub)
            c.cmd = cmd;
        else if (argc > 0 && strcmp(cmd->sub, argv[0]) == 0)
            c.cmd = cmd, i = 1;
        else
            snprintf(subs + strlen(subs), sizeof(subs) - strlen(subs), "%s%s", subs[0] ? ", " : "",
                     cmd->sub);
    }
    if (!c.cmd) {
        if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
            for (size_t k = 0; k < N_COMMANDS; k++)
                if (strcmp(COMMANDS[k].group, group) == 0)
                    print_help(&COMMANDS[k]), printf("\n");
            return 0;
        }
        errorf("'%s' needs one of: %s (see 'journeyctl %s --help')", group, subs, group);
        return USAGE;
    }
    int rc = parse_args(&c, argc - i, argv + i);
    if (rc < 0) {
        print_help(c.cmd);
        return 0;
    }
    if (rc == 0) {
        rc = c.cmd->run(&c);
        if (rc != 0 && c.usage_failed)
            rc = USAGE;
    }
    PQfinish(c.conn);
    return rc;
}
