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
 * --help (jd_ctl_chat_usage). Argument parsing, error lines and the admin API calls are
 * journeyctl_common.c's, with the chat commands' conventions (JD_CTL_NO_PASSWORD_OPTION,
 * JD_CTL_API_ERROR_FIELD); exit status and error lines follow journeyctl's rules: 0, 1 with one
 * line "journeyctl: ..." for an error, 2 for a usage error. */
#include "journeyctl_chat.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MAX 1024 /* bcrypt uses 72 bytes; the database refuses more than that */
#define AGENT_PAGE 1000

/* ------------------------------------------------------------------------------------------- */
/* Arguments, JSON */

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

/* Finishes a JSON object text: closes it and NUL-terminates. */
static JD_CTL_WUR bool json_end(jd_buf *b)
{
    jd_buf_puts(b, "}");
    jd_buf_append(b, "", 1);
    if (!jd_buf_ok(b)) {
        jd_ctl_errorf("out of memory");
        return false;
    }
    return true;
}

/* Adds "key":"secret" with room reserved first, so that no reallocation while the secret is
 * copied in leaves a copy of it behind in freed memory. */
static JD_CTL_WUR bool json_add_secret(jd_buf *b, const char *key, const char *secret)
{
    if (!jd_buf_reserve(b, strlen(key) + 6 * strlen(secret) + 16)) {
        jd_ctl_errorf("out of memory");
        return false;
    }
    jd_ctl_json_add(b, key, secret);
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
static JD_CTL_WUR int write_all(const char *path, const char *data, size_t len)
{
    bool to_stdout = !path || strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "wb");
    if (!f) {
        jd_ctl_errorf("cannot create %s: %s", path, strerror(errno));
        return 1;
    }
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (to_stdout ? fflush(f) == 0 : fclose(f) == 0) && ok;
    if (!ok) {
        jd_ctl_errorf("cannot write %s: %s", to_stdout ? "to stdout" : path, strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_transcripts(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *conv = jd_ctl_opt_value(c, "conversation"), *format = jd_ctl_opt_value(c, "format");
    const char *limit = jd_ctl_opt_value(c, "limit");
    static const char *const bulk_only[] = {"from", "to", "stage", "code", "coded", "limit"};
    char path[96];
    long long n;
    jd_buf q;
    jd_ctl_reply r = {0};
    int rc = 1;
    if (format && !format_valid(format))
        return jd_ctl_usage_error(c->cmd, "--format must be jsonl, csv, text or html");
    if (limit && !jd_ctl_parse_int(limit, 1, 10000, &n))
        return jd_ctl_usage_error(c->cmd,
                                  "--limit must be a whole number of conversations from 1 to "
                                  "10000");
    if (conv && !jd_uuid_valid(conv))
        return jd_ctl_usage_error(c->cmd, "--conversation '%s' is not a conversation id (a UUID)",
                                  conv);
    for (size_t i = 0; conv && i < sizeof(bulk_only) / sizeof(bulk_only[0]); i++)
        if (jd_ctl_opt_value(c, bulk_only[i]))
            return jd_ctl_usage_error(c->cmd,
                                      "--%s selects conversations; --conversation exports "
                                      "one whole conversation",
                                      bulk_only[i]);
    jd_buf_init(&q);
    jd_buf_puts(&q, "{");
    jd_ctl_json_add(&q, "site", jd_ctl_opt_value(c, "site"));
    jd_ctl_json_add(&q, "format", format);
    jd_ctl_json_add(&q, "from", jd_ctl_opt_value(c, "from"));
    jd_ctl_json_add(&q, "to", jd_ctl_opt_value(c, "to"));
    jd_ctl_json_add(&q, "stage", jd_ctl_opt_value(c, "stage"));
    jd_ctl_json_add(&q, "code", jd_ctl_opt_value(c, "code"));
    jd_ctl_json_add(&q, "coded", jd_ctl_opt_value(c, "coded") ? "true" : NULL);
    jd_ctl_json_add(&q, "redact", jd_ctl_opt_value(c, "redact") ? "true" : NULL);
    jd_ctl_json_add(&q, "notes", jd_ctl_opt_value(c, "notes") ? "true" : NULL);
    jd_ctl_json_add(&q, "limit", limit);
    if (!json_end(&q))
        goto fail;
    if (conv)
        snprintf(path, sizeof(path), "/conversations/%s/transcript", conv);
    else
        snprintf(path, sizeof(path), "/conversations");
    if (jd_ctl_api_call(c, "transcripts", "GET", path, q.data, NULL, &r) != 0)
        goto fail;
    if (r.status >= 300) {
        jd_ctl_report_api_error(c, "transcripts", &r);
        goto fail;
    }
    rc = write_all(jd_ctl_opt_value(c, "output"), r.body, r.len);
fail:
    jd_ctl_reply_free(&r);
    jd_buf_free(&q);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Passwords */

/* Reads one line (without its line end) from f into out[size]. Returns 0, or 1 after a message. */
static JD_CTL_WUR int read_line(FILE *f, const char *from, char *out, size_t size)
{
    if (!fgets(out, (int)size, f)) {
        if (ferror(f))
            jd_ctl_errorf("cannot read the password from %s: %s", from, strerror(errno));
        else
            jd_ctl_errorf("no password on %s", from);
        return 1;
    }
    size_t n = strlen(out);
    bool line_end = n > 0 && out[n - 1] == '\n';
    if (!line_end && n == size - 1 && !feof(f)) {
        explicit_bzero(out, size);
        jd_ctl_errorf("the password on %s is longer than %d bytes", from, PASSWORD_MAX - 2);
        return 1;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    if (n == 0) {
        jd_ctl_errorf("empty password on %s", from);
        return 1;
    }
    return 0;
}

/* Prompts on the terminal with echo off. */
static JD_CTL_WUR int prompt_line(const char *prompt, char *out, size_t size)
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
static JD_CTL_WUR int read_password(jd_ctl *c, char *out, size_t size)
{
    const char *file = jd_ctl_opt_value(c, "password-file");
    if (file && strcmp(file, "-") != 0) {
        FILE *f = fopen(file, "r");
        if (!f) {
            jd_ctl_errorf("cannot open %s: %s", file, strerror(errno));
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
        jd_ctl_errorf("the passwords differ");
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
static int need_site(jd_ctl *c, const char **site)
{
    *site = jd_ctl_opt_value(c, "site");
    if (!*site)
        return jd_ctl_usage_error(c->cmd, "--site KEY is required");
    if (!site_ref_valid(*site))
        return jd_ctl_usage_error(c->cmd, "--site '%s' is not a site key or id", *site);
    return 0;
}

/* Every agent of the site (the API pages by 1000). */
static JD_CTL_WUR int list_agents(jd_ctl *c, const char *what, const char *site, json_t **out)
{
    char path[128], query[64];
    *out = json_array();
    if (!*out) {
        jd_ctl_errorf("out of memory");
        return 1;
    }
    snprintf(path, sizeof(path), "/sites/%s/agents", site);
    for (long long off = 0;; off += AGENT_PAGE) {
        json_t *page;
        snprintf(query, sizeof(query), "{\"limit\":\"%d\",\"offset\":\"%lld\"}", AGENT_PAGE, off);
        if (jd_ctl_api_json(c, what, "GET", path, query, NULL, &page) != 0)
            goto fail;
        json_t *items = json_object_get(page, "items");
        if (!json_is_array(items)) {
            json_decref(page);
            jd_ctl_errorf("%s: unexpected answer from GET %s", what, path);
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
static int find_agent(jd_ctl *c, const char *what, const char *site, long long *id, char **email)
{
    const char *by_id = jd_ctl_opt_value(c, "id"), *by_email = jd_ctl_opt_value(c, "email");
    json_t *all = NULL;
    if (!!by_id == !!by_email)
        return jd_ctl_usage_error(c->cmd, "give exactly one of --email EMAIL and --id ID");
    if (by_id && !jd_ctl_parse_int(by_id, 1, INT64_MAX, id))
        return jd_ctl_usage_error(c->cmd, "--id must be a positive whole number");
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
                jd_ctl_errorf("out of memory");
                return 1;
            }
            return 0;
        }
    }
    json_decref(all);
    if (by_id)
        jd_ctl_errorf("%s: no agent with id %s on site %s", what, by_id, site);
    else
        jd_ctl_errorf("%s: no agent with e-mail %s on site %s", what, by_email, site);
    return 1;
}

static int cmd_agent_add(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    const char *site, *email = jd_ctl_opt_value(c, "email"), *role = jd_ctl_opt_value(c, "role");
    char password[PASSWORD_MAX], path[128];
    jd_buf body;
    json_t *res = NULL;
    int rc = need_site(c, &site);
    if (rc != 0)
        return rc;
    if (!email || !strchr(email, '@'))
        return jd_ctl_usage_error(c->cmd, "--email EMAIL (the agent's sign-in) is required");
    if (role && strcmp(role, "agent") != 0 && strcmp(role, "admin") != 0)
        return jd_ctl_usage_error(c->cmd, "--role must be agent or admin");
    if (read_password(c, password, sizeof(password)) != 0)
        return 1;
    jd_buf_init(&body);
    jd_buf_puts(&body, "{");
    jd_ctl_json_add(&body, "email", email);
    jd_ctl_json_add(&body, "name", jd_ctl_opt_value(c, "name"));
    jd_ctl_json_add(&body, "role", role);
    bool ok = json_add_secret(&body, "password", password);
    explicit_bzero(password, sizeof(password));
    rc = 1;
    if (!ok || !json_end(&body))
        goto fail;
    snprintf(path, sizeof(path), "/sites/%s/agents", site);
    if (jd_ctl_api_json(c, "agent add", "POST", path, "{}", body.data, &res) != 0)
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

static int cmd_agent_passwd(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
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
    if (jd_ctl_api_json(c, "agent passwd", "PATCH", path, "{}", body.data, &res) != 0)
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
static int agent_switch(jd_ctl *c, bool enable)
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
    rc = jd_ctl_api_json(c, what, enable ? "PATCH" : "DELETE", path, "{}",
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

static int cmd_agent_disable(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    return agent_switch(c, false);
}

static int cmd_agent_enable(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
{
    return agent_switch(c, true);
}

static int cmd_agent_list(jd_ctl *c, const jd_ctl_command *cmd, char **pos, size_t npos)
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
    size_t nrows = json_array_size(all);
    char **cells = calloc((nrows + 1) * NCOLS, sizeof(*cells));
    rc = 1;
    if (!cells) {
        jd_ctl_errorf("out of memory");
        goto fail;
    }
    for (size_t k = 0; k < NCOLS; k++)
        cells[k] = strdup(head[k]);
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
        }
    }
    if (nrows == 0)
        printf("no agents on site %s\n", site);
    else
        jd_ctl_print_table(cells, nrows + 1, NCOLS);
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

/* clang-format off */
static jd_ctl_command COMMANDS[] = {
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
     0, 0, cmd_transcripts,
     {JD_CTL_ARG("site", 0), JD_CTL_ARG("conversation", 0), JD_CTL_ARG("from", 0),
      JD_CTL_ARG("to", 0), JD_CTL_ARG("stage", 0), JD_CTL_ARG("code", 0), JD_CTL_FLAG("coded", 0),
      JD_CTL_FLAG("redact", 0), JD_CTL_FLAG("notes", 0), JD_CTL_ARG("limit", 0),
      JD_CTL_ARG("format", 0), JD_CTL_ARG("output", 'o')}},
    {"agent", "add", "--site KEY --email EMAIL [--name NAME] [--role agent|admin] [--password-file FILE]",
     "Creates a chat agent account on the site and prints its id. The password (10 characters\n"
     "to 72 bytes) is the first line of FILE, else of stdin (asked for twice, without echo, on\n"
     "a terminal); it is never taken from the command line. The name defaults to the part of\n"
     "the e-mail before the @; admins may also edit canned responses.",
     0, 0, cmd_agent_add,
     {JD_CTL_ARG("site", 0), JD_CTL_ARG("email", 0), JD_CTL_ARG("name", 0),
      JD_CTL_ARG("role", 0), JD_CTL_ARG("password-file", 0)}},
    {"agent", "passwd", "--site KEY (--email EMAIL | --id ID) [--password-file FILE]",
     "Sets a new password (read like 'agent add' does). Every console session of the agent\n"
     "ends.",
     0, 0, cmd_agent_passwd,
     {JD_CTL_ARG("site", 0), JD_CTL_ARG("email", 0), JD_CTL_ARG("id", 0),
      JD_CTL_ARG("password-file", 0)}},
    {"agent", "disable", "--site KEY (--email EMAIL | --id ID)",
     "Disables an agent: it can no longer sign in and every console session ends. The account\n"
     "is kept, so its messages and codes keep their author. 'agent enable' undoes it.",
     0, 0, cmd_agent_disable,
     {JD_CTL_ARG("site", 0), JD_CTL_ARG("email", 0), JD_CTL_ARG("id", 0)}},
    {"agent", "enable", "--site KEY (--email EMAIL | --id ID)",
     "Lets a disabled agent sign in again.",
     0, 0, cmd_agent_enable,
     {JD_CTL_ARG("site", 0), JD_CTL_ARG("email", 0), JD_CTL_ARG("id", 0)}},
    {"agent", "list", "--site KEY",
     "Lists the site's agents: id, e-mail, name, role, active or disabled, online.",
     0, 0, cmd_agent_list, {JD_CTL_ARG("site", 0)}},
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
    jd_ctl_list_commands(f, COMMANDS, N_COMMANDS);
}

int jd_ctl_chat_main(jd_ctl *c, const char *group, int argc, char **argv)
{
    int used;
    c->flags = JD_CTL_NO_PASSWORD_OPTION | JD_CTL_API_ERROR_FIELD;
    c->cmd = jd_ctl_find_command(COMMANDS, N_COMMANDS, group, argc, argv, &used);
    if (!c->cmd) {
        char subs[128];
        if (argc > 0 && jd_ctl_is_help(argv[0])) {
            jd_ctl_group_help(COMMANDS, N_COMMANDS, group);
            return 0;
        }
        jd_ctl_subcommands(COMMANDS, N_COMMANDS, group, subs, sizeof(subs));
        jd_ctl_errorf("'%s' needs one of: %s (see 'journeyctl %s --help')", group, subs, group);
        return JD_CTL_USAGE;
    }
    return jd_ctl_run(c, argc - used, argv + used);
}
