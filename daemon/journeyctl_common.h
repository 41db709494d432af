/* The small framework journeyctl's commands share (journeyctl.c, journeyctl_chat.c): the command
 * and option tables, argument parsing, --help texts, error lines ("journeyctl: ..." on stderr,
 * exit 2 for a usage error), the connection to PostgreSQL and calls to the admin API in SQL
 * (jd_admin), whose answers are printed the same way everywhere. Each front end keeps its own
 * table of commands and sets, in jd_ctl.flags, the few conventions in which the two differ.
 *
 * journeyctl is a short-lived program run by a human or a script, so everything here blocks and
 * talks to libpq directly (see journeyctl.c). */
#ifndef JD_JOURNEYCTL_COMMON_H
#define JD_JOURNEYCTL_COMMON_H

#include "util.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define JD_CTL_WUR __attribute__((warn_unused_result))
#define JD_CTL_USAGE 2     /* exit status of a usage error */
#define JD_CTL_MAX_OPTS 16 /* options a command may have */
#define JD_CTL_MAX_POS 4   /* positional arguments a command may have */

/* The conventions of a front end (jd_ctl.flags). */
enum {
    /* "--" ends the options; later words are positional arguments (journeyctl.c). Without it "--"
     * is an unknown option. */
    JD_CTL_DASHDASH = 1u << 0,
    /* --password is refused with a pointer to stdin and --password-file (journeyctl_chat.c). */
    JD_CTL_NO_PASSWORD_OPTION = 1u << 1,
    /* Admin API errors name the command (also when the database fails) and give the whole message
     * and the field: "what: message (field F, HTTP N)" (journeyctl_chat.c). Without it a database
     * failure is reported as "api: ..." and an error answer as "what: message (HTTP N)" with the
     * message cut to 511 bytes. */
    JD_CTL_API_ERROR_FIELD = 1u << 2,
};

typedef struct jd_ctl_opt {
    const char *name; /* long name without the dashes */
    char short_name;  /* 0 when none */
    bool has_arg;
    bool multi;        /* may be given more than once */
    const char *value; /* the last value, "1" for a flag, NULL when not given */
    const char *values[32];
    size_t count;
} jd_ctl_opt;

typedef struct jd_ctl jd_ctl;
typedef struct jd_ctl_command {
    const char *group;
    const char *sub; /* NULL for one-word commands */
    const char *synopsis;
    const char *help;
    size_t min_pos, max_pos; /* positional arguments, at most JD_CTL_MAX_POS */
    /* Runs the command with the options parsed into cmd->opts and the positional arguments
     * pos[0..npos). Returns the exit status. */
    int (*run)(jd_ctl *c, const struct jd_ctl_command *cmd, char **pos, size_t npos);
    jd_ctl_opt opts[JD_CTL_MAX_OPTS]; /* ends at the first without a name */
} jd_ctl_command;

/* Entries of jd_ctl_command.opts: an option with a value (short name s, 0 for none), one that may
 * be given up to 32 times, a flag. */
#define JD_CTL_ARG(n, s)                                                                           \
    {                                                                                              \
        .name = n, .short_name = s, .has_arg = true                                                \
    }
#define JD_CTL_MULTI(n)                                                                            \
    {                                                                                              \
        .name = n, .has_arg = true, .multi = true                                                  \
    }
#define JD_CTL_FLAG(n, s)                                                                          \
    {                                                                                              \
        .name = n, .short_name = s                                                                 \
    }

/* The state of one run of journeyctl. */
struct jd_ctl {
    const char *db_url; /* --database-url; NULL: JOURNEYD_DATABASE_URL */
    PGconn *conn;       /* opened on first use by jd_ctl_db_connect, closed by jd_ctl_run */
    char actor[160];    /* what the audit log records, "journeyctl:USER" */
    jd_ctl_command *cmd;
    unsigned flags;    /* JD_CTL_* conventions */
    bool usage_failed; /* the database URL was missing: exit JD_CTL_USAGE */
};

/* One answer of jd_admin. body is NUL-terminated; len does not count the NUL. */
typedef struct jd_ctl_reply {
    int status;
    char *content_type;
    char *body;
    size_t len;
} jd_ctl_reply;

/* ---- Messages ---- */

/* Prints "journeyctl: MESSAGE" on stderr as one line: line breaks and tabs become spaces and
 * trailing spaces are dropped. */
void jd_ctl_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes "group sub" (or "group") of cmd into buf[size] and returns buf. */
const char *jd_ctl_cmd_name(const jd_ctl_command *cmd, char *buf, size_t size);

/* Prints a usage error "cmd: MESSAGE (see 'journeyctl cmd --help')" (cmd NULL: "MESSAGE (see
 * 'journeyctl --help')"). Returns JD_CTL_USAGE, for `return jd_ctl_usage_error(...)`. */
JD_CTL_WUR int jd_ctl_usage_error(const jd_ctl_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints the --help of one command on stdout. */
void jd_ctl_print_help(const jd_ctl_command *cmd);

/* Writes a line "  NAME  SYNOPSIS" per command of table[0..n) to f (journeyctl --help). */
void jd_ctl_list_commands(FILE *f, const jd_ctl_command *table, size_t n);

/* ---- Commands and arguments ---- */

/* The command of table[0..n) named group, or group and the subcommand argv[0] (then *used is 1,
 * else 0). NULL when none is. */
jd_ctl_command *jd_ctl_find_command(jd_ctl_command *table, size_t n, const char *group, int argc,
                                    char **argv, int *used);

/* Writes the subcommands of group in table[0..n) as "a, b, c" into buf[size]. Returns whether
 * table has commands of that group. */
bool jd_ctl_subcommands(const jd_ctl_command *table, size_t n, const char *group, char *buf,
                        size_t size);

/* True when word is --help or -h. */
bool jd_ctl_is_help(const char *word);

/* Prints the --help of every command of group in table[0..n), each followed by a blank line. */
void jd_ctl_group_help(const jd_ctl_command *table, size_t n, const char *group);

/* Parses argv[0..argc) as the options and arguments of c->cmd (by c->flags), prints its help
 * for --help, otherwise runs it; then closes the database connection. Returns the exit status:
 * 0, 1 on an error, JD_CTL_USAGE on a usage error (also when the database URL was missing). */
JD_CTL_WUR int jd_ctl_run(jd_ctl *c, int argc, char **argv);

/* The option called name of cmd (the table's entry, to read value, values and count), or NULL
 * when cmd has no such option. */
jd_ctl_opt *jd_ctl_opt_get(jd_ctl_command *cmd, const char *name);

/* The value of option name of the running command: the argument, "1" for a flag given, NULL when
 * not given. The text belongs to argv. */
const char *jd_ctl_opt_value(const jd_ctl *c, const char *name);

/* Parses s as a whole decimal number in [min, max] into *out. Returns false (and leaves *out)
 * when s is NULL, empty, not a number or out of range. */
JD_CTL_WUR bool jd_ctl_parse_int(const char *s, long long min, long long max, long long *out);

/* Adds "key":"value" (JSON-escaped) to the JSON object text being built in b, which starts with
 * "{"; nothing when value is NULL. Out of memory shows in jd_buf_ok(b). */
void jd_ctl_json_add(jd_buf *b, const char *key, const char *value);

/* ---- Output ---- */

/* Display width of UTF-8 text: one column per code point. */
size_t jd_ctl_text_width(const char *s);

/* Prints cells[0..nrows*ncols) (row by row, the first row the header; NULL cells print empty)
 * as columns two spaces apart, each as wide as its widest cell. */
void jd_ctl_print_table(char *const *cells, size_t nrows, size_t ncols);

/* ---- Database and admin API ---- */

/* Connects to c->db_url (else JOURNEYD_DATABASE_URL) unless connected. Returns 0; 1 after a
 * message when it cannot connect; JD_CTL_USAGE after a message, with c->usage_failed set, when
 * there is no URL. Commands connect on first use, after checking their arguments. */
JD_CTL_WUR int jd_ctl_db_connect(jd_ctl *c);

/* Runs sql with text parameters params[0..n) (NULL for SQL NULL), connecting first. Returns the
 * result (the caller PQclear()s it), or NULL after printing "what: error". */
JD_CTL_WUR PGresult *jd_ctl_db_exec(jd_ctl *c, const char *what, const char *sql, int n,
                                    const char *const *params);

/* Calls jd_admin(method, path, query_json (NULL: {}), body (may be NULL), c->actor) and fills
 * *out, which the caller frees with jd_ctl_reply_free (also after a failure). Any status counts
 * as an answer. Returns 0, or 1 after printing "what: error" when the call itself failed. */
JD_CTL_WUR int jd_ctl_api_call(jd_ctl *c, const char *what, const char *method, const char *path,
                               const char *query_json, const char *body, jd_ctl_reply *out);

/* Frees what *r holds and clears it. */
void jd_ctl_reply_free(jd_ctl_reply *r);

/* The "message" of an API error answer {"error":{"message"}}, else the body itself, copied into
 * buf[size] (cut to fit); returns buf. */
const char *jd_ctl_api_error_text(const char *body, char *buf, size_t size);

/* Prints an error answer of the admin API as one line "what: ..." (see JD_CTL_API_ERROR_FIELD). */
void jd_ctl_report_api_error(const jd_ctl *c, const char *what, const jd_ctl_reply *r);

/* Calls the admin API and parses a 2xx JSON answer into *out (the caller json_decref()s it).
 * Returns 0, or 1 after printing "what: ..." for an error answer, a failed call or an answer that
 * is not JSON (*out is then NULL). */
JD_CTL_WUR int jd_ctl_api_json(jd_ctl *c, const char *what, const char *method, const char *path,
                               const char *query_json, const char *body, json_t **out);

#endif
