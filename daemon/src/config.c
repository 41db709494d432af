/* Configuration loading. The settings table below is the single source of truth: every setting's
 * type, place in jd_config, default, range, environment variable, flag, reload behaviour and help
 * line live in one row, and parsing, validation, --help and the Markdown reference all walk that
 * table. Values are layered defaults < config file < environment < flags; every layer goes
 * through set_value, so a bad value is reported the same way wherever it came from, with the
 * source named (file:line, environment variable or flag). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifndef JD_DEFAULT_STATIC_DIR
#error "JD_DEFAULT_STATIC_DIR must be defined by the build"
#endif
#ifndef JD_DEFAULT_SQL_DIR
#error "JD_DEFAULT_SQL_DIR must be defined by the build"
#endif
#ifndef JD_VERSION
#define JD_VERSION "unknown"
#endif

typedef enum { SETTING_STRING, SETTING_INT } setting_type;

/* Extra form check for a string value; writes why it failed (e.g. "is not host:port"). */
typedef bool (*setting_check)(const char *value, char *why, size_t why_len);

typedef struct setting {
    const char *name;
    setting_type type;
    size_t offset;
    size_t size;
    const char *default_text; /* strings */
    int default_int;          /* ints */
    int min, max;             /* ints */
    const char *choices;      /* strings: NULL or "a|b|c" */
    setting_check check;      /* strings: NULL or an extra form check */
    const char *env;
    const char *flag;
    const char *metavar; /* shown after the flag in --help */
    bool restart;
    const char *doc_default; /* replaces the default in the docs when it depends on the build */
    const char *help;
} setting;

static bool check_listen(const char *value, char *why, size_t why_len);

/* The _Generic selections make the build fail if a row's type does not match its field. */
#define FIELD_STR(f)                                                                               \
    .type = SETTING_STRING, .offset = offsetof(jd_config, f),                                      \
    .size = _Generic(((jd_config *)0)->f[0], char                                                  \
                     : sizeof(((jd_config *)0)->f))
#define FIELD_INT(f)                                                                               \
    .type = SETTING_INT, .offset = offsetof(jd_config, f),                                         \
    .size = _Generic(((jd_config *)0)->f, int                                                      \
                     : sizeof(int))

static const setting settings[] = {
    {.name = "config_file",
     FIELD_STR(config_file),
     .default_text = "",
     .env = "JOURNEYD_CONFIG",
     .flag = "--config",
     .metavar = "FILE",
     .restart = true,
     .help = "file of key = value lines, read before the environment and flags; empty = none"},
    {.name = "listen",
     FIELD_STR(listen),
     .default_text = "127.0.0.1:8080",
     .check = check_listen,
     .env = "JOURNEYD_LISTEN",
     .flag = "--listen",
     .metavar = "HOST:PORT",
     .restart = true,
     .help = "address for WebSocket and HTTP clients: host:port, [::1]:port, *:port for all"},
    {.name = "database_url",
     FIELD_STR(database_url),
     .default_text = "",
     .env = "JOURNEYD_DATABASE_URL",
     .flag = "--database-url",
     .metavar = "URL",
     .restart = true,
     .help = "libpq conninfo or postgresql:// URI; empty = embedded PostgreSQL in data_dir/pg"},
    {.name = "data_dir",
     FIELD_STR(data_dir),
     .default_text = "./var",
     .env = "JOURNEYD_DATA_DIR",
     .flag = "--data-dir",
     .metavar = "DIR",
     .restart = true,
     .help = "state directory; the embedded PostgreSQL lives in data_dir/pg"},
    {.name = "static_dir",
     FIELD_STR(static_dir),
     .default_text = JD_DEFAULT_STATIC_DIR,
     .env = "JOURNEYD_STATIC_DIR",
     .flag = "--static-dir",
     .metavar = "DIR",
     .restart = true,
     .doc_default = "`web-widget/dist` in the source tree",
     .help = "built widget and demo files served over HTTP"},
    {.name = "sql_dir",
     FIELD_STR(sql_dir),
     .default_text = JD_DEFAULT_SQL_DIR,
     .env = "JOURNEYD_SQL_DIR",
     .flag = "--sql-dir",
     .metavar = "DIR",
     .restart = true,
     .doc_default = "`sql` in the source tree",
     .help = "numbered SQL migrations applied by journeyd migrate"},
    {.name = "max_frame",
     FIELD_INT(max_frame),
     .default_int = 65536,
     .min = 1024,
     .max = 16777216,
     .env = "JOURNEYD_MAX_FRAME",
     .flag = "--max-frame",
     .metavar = "BYTES",
     .help = "largest WebSocket message; a bigger one closes the connection with 1009"},
    {.name = "rate_per_sec",
     FIELD_INT(rate_per_sec),
     .default_int = 20,
     .min = 1,
     .max = 100000,
     .env = "JOURNEYD_RATE_PER_SEC",
     .flag = "--rate-per-sec",
     .metavar = "N",
     .help = "average frames per second one connection may send; the token bucket refill rate"},
    {.name = "rate_burst",
     FIELD_INT(rate_burst),
     .default_int = 40,
     .min = 1,
     .max = 1000000,
     .env = "JOURNEYD_RATE_BURST",
     .flag = "--rate-burst",
     .metavar = "N",
     .help = "frames one connection may send at once; the token bucket size"},
    {.name = "max_conns",
     FIELD_INT(max_conns),
     .default_int = 20000,
     .min = 1,
     .max = 1000000,
     .env = "JOURNEYD_MAX_CONNS",
     .flag = "--max-conns",
     .metavar = "N",
     .restart = true,
     .help = "open connections in total"},
    {.name = "max_conns_per_ip",
     FIELD_INT(max_conns_per_ip),
     .default_int = 256,
     .min = 1,
     .max = 1000000,
     .env = "JOURNEYD_MAX_CONNS_PER_IP",
     .flag = "--max-conns-per-ip",
     .metavar = "N",
     .help = "open connections from one client IP"},
    {.name = "max_inflight",
     FIELD_INT(max_inflight),
     .default_int = 256,
     .min = 1,
     .max = 100000,
     .env = "JOURNEYD_MAX_INFLIGHT",
     .flag = "--max-inflight",
     .metavar = "N",
     .help = "unacknowledged frames per connection before reading from it pauses"},
    {.name = "queue_capacity",
     FIELD_INT(queue_capacity),
     .default_int = 16384,
     .min = 16,
     .max = 4194304,
     .env = "JOURNEYD_QUEUE_CAPACITY",
     .flag = "--queue-capacity",
     .metavar = "N",
     .restart = true,
     .help = "records buffered between the network and store threads"},
    {.name = "batch_max",
     FIELD_INT(batch_max),
     .default_int = 2000,
     .min = 1,
     .max = 100000,
     .env = "JOURNEYD_BATCH_MAX",
     .flag = "--batch-max",
     .metavar = "N",
     .help = "rows per group commit"},
    {.name = "pipeline_depth",
     FIELD_INT(pipeline_depth),
     .default_int = 2,
     .min = 1,
     .max = 64,
     .env = "JOURNEYD_PIPELINE_DEPTH",
     .flag = "--pipeline-depth",
     .metavar = "N",
     .help = "group commits in flight on the database connection"},
    {.name = "ping_interval",
     FIELD_INT(ping_interval),
     .default_int = 30,
     .min = 1,
     .max = 3600,
     .env = "JOURNEYD_PING_INTERVAL",
     .flag = "--ping-interval",
     .metavar = "SECONDS",
     .restart = true,
     .help = "seconds of silence on a connection before a WebSocket ping"},
    {.name = "drain_timeout",
     FIELD_INT(drain_timeout),
     .default_int = 10,
     .min = 1,
     .max = 3600,
     .env = "JOURNEYD_DRAIN_TIMEOUT",
     .flag = "--drain-timeout",
     .metavar = "SECONDS",
     .help = "seconds SIGTERM waits for buffered records to be stored before exiting"},
    {.name = "catalog_refresh",
     FIELD_INT(catalog_refresh),
     .default_int = 5,
     .min = 1,
     .max = 86400,
     .env = "JOURNEYD_CATALOG_REFRESH",
     .flag = "--catalog-refresh",
     .metavar = "SECONDS",
     .help = "seconds between reloads of sites and surveys from the database"},
    {.name = "log_level",
     FIELD_STR(log_level),
     .default_text = "info",
     .choices = "error|warn|info|debug",
     .env = "JOURNEYD_LOG_LEVEL",
     .flag = "--log-level",
     .metavar = "LEVEL",
     .help = "least severe level that is logged"},
    {.name = "tls_cert",
     FIELD_STR(tls_cert),
     .default_text = "",
     .env = "JOURNEYD_TLS_CERT",
     .flag = "--tls-cert",
     .metavar = "FILE",
     .restart = true,
     .help = "PEM certificate (chain); with tls_key journeyd serves https and wss itself"},
    {.name = "tls_key",
     FIELD_STR(tls_key),
     .default_text = "",
     .env = "JOURNEYD_TLS_KEY",
     .flag = "--tls-key",
     .metavar = "FILE",
     .restart = true,
     .help = "PEM private key for tls_cert"},
    {.name = "hsts_max_age",
     FIELD_INT(hsts_max_age),
     .default_int = 0,
     .min = 0,
     .max = 63072000,
     .env = "JOURNEYD_HSTS_MAX_AGE",
     .flag = "--hsts-max-age",
     .metavar = "SECONDS",
     .help = "with TLS, send Strict-Transport-Security with this max-age; 0 = no header"},
    {.name = "trusted_proxies",
     FIELD_STR(trusted_proxies),
     .default_text = "",
     .env = "JOURNEYD_TRUSTED_PROXIES",
     .flag = "--trusted-proxies",
     .metavar = "IP,IP",
     .help = "reverse proxies whose X-Forwarded-For gives the client IP; empty = none"},
    {.name = "purge_interval",
     FIELD_INT(purge_interval),
     .default_int = 300,
     .min = 0,
     .max = 86400,
     .env = "JOURNEYD_PURGE_INTERVAL",
     .flag = "--purge-interval",
     .metavar = "SECONDS",
     .help = "seconds between retention purges (small batches, never stalls ingest); 0 = off"},
    {.name = "instance",
     FIELD_STR(instance),
     .default_text = "",
     .doc_default = "`hostname:port`",
     .env = "JOURNEYD_INSTANCE",
     .flag = "--instance",
     .metavar = "NAME",
     .restart = true,
     .help = "this instance's name in agent presence (several instances share one database)"},
    {.name = "log_format",
     FIELD_STR(log_format),
     .default_text = "text",
     .choices = "text|json",
     .env = "JOURNEYD_LOG_FORMAT",
     .flag = "--log-format",
     .metavar = "FORMAT",
     .help = "log line format"},
};

#define SETTING_COUNT (sizeof(settings) / sizeof(settings[0]))

static char *field_str(jd_config *config, const setting *s)
{
    return (char *)config + s->offset;
}

static const char *field_str_const(const jd_config *config, const setting *s)
{
    return (const char *)config + s->offset;
}

static const setting *find_by_name(const char *name, size_t len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (strlen(settings[i].name) == len && memcmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

static const setting *find_by_flag(const char *flag, size_t len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (strlen(settings[i].flag) == len && memcmp(settings[i].flag, flag, len) == 0)
            return &settings[i];
    return NULL;
}

/* Quotes a value for an error message, clipped and with control bytes replaced, so a message
 * stays one short line whatever the user typed. */
static void show_value(const char *value, char *out, size_t out_len)
{
    size_t n = 0, i = 0;
    const size_t limit = 48;
    out[n++] = '"';
    for (; value[i] && i < limit && n + 6 < out_len; i++)
        out[n++] = (unsigned char)value[i] < 0x20 ? '?' : value[i];
    if (value[i]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '"';
    out[n] = '\0';
}

static bool parse_int(const char *text, long long *out)
{
    const char *p = text;
    if (*p == '+' || *p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    /* Saturate so an overflowing number is reported as out of range, not as garbage. */
    if (errno == ERANGE)
        v = text[0] == '-' ? LLONG_MIN : LLONG_MAX;
    *out = v;
    return true;
}

static bool choice_ok(const char *choices, const char *value)
{
    size_t len = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, value, n) == 0)
            return true;
        p += n + (bar ? 1 : 0);
    }
    return false;
}

static bool check_listen(const char *value, char *why, size_t why_len)
{
    char host[256];
    int port;
    if (jd_config_listen_split(value, host, sizeof(host), &port))
        return true;
    snprintf(why, why_len, "is not host:port with a port in 1..65535");
    return false;
}

/* Stores one value from any layer. where names the source for the error message. */
static bool set_value(jd_config *config, const setting *s, const char *value, const char *where,
                      char *err, size_t err_len)
{
    char shown[64];
    show_value(value, shown, sizeof(shown));
    if (s->type == SETTING_INT) {
        long long v;
        if (!parse_int(value, &v)) {
            snprintf(err, err_len, "%s: %s is not an integer (%s)", s->name, shown, where);
            return false;
        }
        if (v < s->min || v > s->max) {
            snprintf(err, err_len, "%s: %s is out of range %d..%d (%s)", s->name, shown, s->min,
                     s->max, where);
            return false;
        }
        int iv = (int)v;
        memcpy((char *)config + s->offset, &iv, sizeof(iv));
        return true;
    }
    size_t len = strlen(value);
    if (len >= s->size) {
        /* Not echoed: a long value may be a conninfo with a password in it. */
        snprintf(err, err_len, "%s: value is %zu bytes, longer than the limit of %zu (%s)", s->name,
                 len, s->size - 1, where);
        return false;
    }
    if (s->choices && !choice_ok(s->choices, value)) {
        snprintf(err, err_len, "%s: %s is not one of %s (%s)", s->name, shown, s->choices, where);
        return false;
    }
    char why[128];
    if (s->check && !s->check(value, why, sizeof(why))) {
        snprintf(err, err_len, "%s: %s %s (%s)", s->name, shown, why, where);
        return false;
    }
    /* Zero the tail so equal configs compare equal byte for byte. */
    memset(field_str(config, s), 0, s->size);
    memcpy(field_str(config, s), value, len);
    return true;
}

void jd_config_defaults(jd_config *config)
{
    memset(config, 0, sizeof(*config));
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        if (s->type == SETTING_INT)
            memcpy((char *)config + s->offset, &s->default_int, sizeof(int));
        else
            snprintf(field_str(config, s), s->size, "%s", s->default_text);
    }
}

static char *trim(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' ||
                     text[n - 1] == '\n'))
        text[--n] = '\0';
    return text;
}

/* One `key = value` line. A value may be double-quoted (then it ends at the next quote); `#`
 * starts a comment at the start of a line or after whitespace, so URLs and passwords containing
 * `#` still work when they are not preceded by a space. */
static bool parse_line(jd_config *config, char *text, const char *where, char *err, size_t err_len)
{
    char *p = trim(text);
    if (*p == '\0' || *p == '#')
        return true;
    char *eq = strchr(p, '=');
    if (!eq) {
        snprintf(err, err_len, "%s: expected key = value", where);
        return false;
    }
    *eq = '\0';
    char *key = trim(p);
    char *value = trim(eq + 1);
    const setting *s = find_by_name(key, strlen(key));
    if (!s) {
        char shown[64];
        show_value(key, shown, sizeof(shown));
        snprintf(err, err_len, "%s: unknown setting %s", where, shown);
        return false;
    }
    if (strcmp(s->name, "config_file") == 0) {
        snprintf(err, err_len, "%s: config_file cannot be set inside a config file", where);
        return false;
    }
    if (*value == '"') {
        char *close = strchr(value + 1, '"');
        if (!close) {
            snprintf(err, err_len, "%s: %s: missing closing quote", where, s->name);
            return false;
        }
        char *rest = close + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest != '\0' && *rest != '#') {
            snprintf(err, err_len, "%s: %s: unexpected text after the closing quote", where,
                     s->name);
            return false;
        }
        *close = '\0';
        value++;
    } else {
        for (char *c = value; *c; c++) {
            if (*c == '#' && (c == value || c[-1] == ' ' || c[-1] == '\t')) {
                *c = '\0';
                break;
            }
        }
        value = trim(value);
    }
    return set_value(config, s, value, where, err, err_len);
}

static bool apply_file(jd_config *config, const char *path, const char *path_source, char *err,
                       size_t err_len)
{
    bool ok = false;
    char *text = NULL;
    size_t cap = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "config_file: cannot open %s: %s (%s)", path, strerror(errno),
                 path_source);
        goto fail;
    }
    for (unsigned lineno = 1;; lineno++) {
        ssize_t n = getline(&text, &cap, f);
        if (n < 0) {
            if (ferror(f)) {
                snprintf(err, err_len, "config_file: cannot read %s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
        char where[JD_CONFIG_STR + 32];
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (memchr(text, '\0', (size_t)n)) {
            snprintf(err, err_len, "%s: line contains a NUL byte", where);
            goto fail;
        }
        if (!parse_line(config, text, where, err, err_len))
            goto fail;
    }
    ok = true;
fail:
    free(text);
    if (f)
        fclose(f);
    return ok;
}

static bool apply_env(jd_config *config, char *err, size_t err_len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const char *value = getenv(settings[i].env);
        if (!value)
            continue;
        char where[64];
        snprintf(where, sizeof(where), "environment %s", settings[i].env);
        if (!set_value(config, &settings[i], value, where, err, err_len))
            return false;
    }
    return true;
}

static bool is_arg(const char *arg, const char *long_name, const char *short_name)
{
    return strcmp(arg, long_name) == 0 || (short_name && strcmp(arg, short_name) == 0);
}

/* Walks argv, storing flag values into config and the command into *command. *config_flag is set
 * when --config was given, because the file has to be found before the flags are layered on. */
static bool apply_args(jd_config *config, jd_command *command, bool *config_flag, int argc,
                       char *const argv[], char *err, size_t err_len)
{
    bool have_positional = false, check = false;
    *command = JD_CMD_RUN;
    *config_flag = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            if (have_positional) {
                snprintf(err, err_len, "unexpected argument \"%.64s\"", arg);
                return false;
            }
            have_positional = true;
            if (strcmp(arg, "migrate") == 0) {
                *command = JD_CMD_MIGRATE;
            } else if (strcmp(arg, "run") != 0) {
                snprintf(err, err_len, "unknown command \"%.64s\" (expected run or migrate)", arg);
                return false;
            }
            continue;
        }
        if (is_arg(arg, "--help", "-h") || is_arg(arg, "--version", "-V"))
            continue; /* handled before any layering, see jd_config_load */
        if (is_arg(arg, "--check-config", NULL)) {
            check = true;
            continue;
        }
        const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
        size_t flag_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const setting *s = arg[1] == '-' ? find_by_flag(arg, flag_len) : NULL;
        if (!s) {
            /* Only the part before '=' is echoed: the value may be a secret. */
            snprintf(err, err_len, "unknown option %.*s (see --help)",
                     (int)(flag_len > 64 ? 64 : flag_len), arg);
            return false;
        }
        const char *value = NULL;
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            value = argv[++i];
        char where[64];
        snprintf(where, sizeof(where), "flag %s", s->flag);
        if (!value) {
            snprintf(err, err_len, "%s: missing value (%s)", s->name, where);
            return false;
        }
        if (!set_value(config, s, value, where, err, err_len))
            return false;
        if (strcmp(s->name, "config_file") == 0)
            *config_flag = true;
    }
    if (check)
        *command = JD_CMD_CHECK_CONFIG;
    return true;
}

bool jd_config_load(jd_config *config, jd_command *command, int argc, char *const argv[], char *err,
                    size_t err_len)
{
    bool ok = false;
    /* Three whole configs are too big to put on a thread stack casually. */
    jd_config *flags = NULL, *env = NULL, *result = NULL;
    jd_command cmd = JD_CMD_RUN;
    bool config_flag = false;
    if (err_len > 0)
        err[0] = '\0';

    /* --help and --version win over everything, including broken settings, so a user can always
     * find out how to fix them. */
    for (int i = 1; i < argc; i++) {
        if (is_arg(argv[i], "--help", "-h") || is_arg(argv[i], "--version", "-V")) {
            jd_config_defaults(config);
            *command = is_arg(argv[i], "--help", "-h") ? JD_CMD_HELP : JD_CMD_VERSION;
            return true;
        }
    }

    flags = malloc(sizeof(*flags));
    env = malloc(sizeof(*env));
    result = malloc(sizeof(*result));
    if (!flags || !env || !result) {
        snprintf(err, err_len, "out of memory loading the configuration");
        goto fail;
    }

    /* The file's path can come from the environment or a flag, yet the file ranks below both:
     * resolve the path from trial runs of those layers, then layer for real. */
    jd_config_defaults(flags);
    if (!apply_args(flags, &cmd, &config_flag, argc, argv, err, err_len))
        goto fail;
    jd_config_defaults(env);
    if (!apply_env(env, err, err_len))
        goto fail;
    const char *path = config_flag ? flags->config_file : env->config_file;
    const char *path_source = config_flag ? "flag --config" : "environment JOURNEYD_CONFIG";

    jd_config_defaults(result);
    if (path[0] != '\0' && !apply_file(result, path, path_source, err, err_len))
        goto fail;
    if (!apply_env(result, err, err_len))
        goto fail;
    if (!apply_args(result, &cmd, &config_flag, argc, argv, err, err_len))
        goto fail;
    if (!jd_config_validate(result, err, err_len))
        goto fail;
    *config = *result;
    *command = cmd;
    ok = true;
fail:
    free(flags);
    free(env);
    free(result);
    return ok;
}

bool jd_config_validate(const jd_config *config, char *err, size_t err_len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        if (s->type == SETTING_INT) {
            int v;
            memcpy(&v, (const char *)config + s->offset, sizeof(v));
            if (v < s->min || v > s->max) {
                snprintf(err, err_len, "%s: %d is out of range %d..%d", s->name, v, s->min, s->max);
                return false;
            }
            continue;
        }
        const char *value = field_str_const(config, s);
        if (!memchr(value, '\0', s->size)) {
            snprintf(err, err_len, "%s: value is not NUL-terminated", s->name);
            return false;
        }
        char shown[64];
        show_value(value, shown, sizeof(shown));
        if (s->choices && !choice_ok(s->choices, value)) {
            snprintf(err, err_len, "%s: %s is not one of %s", s->name, shown, s->choices);
            return false;
        }
        char why[128];
        if (s->check && !s->check(value, why, sizeof(why))) {
            snprintf(err, err_len, "%s: %s %s", s->name, shown, why);
            return false;
        }
    }
    if (config->database_url[0] == '\0' && config->data_dir[0] == '\0') {
        snprintf(err, err_len,
                 "data_dir: must not be empty when database_url is empty (the embedded "
                 "PostgreSQL lives in data_dir/pg)");
        return false;
    }
    return true;
}

void jd_config_restart_needed(const jd_config *old_config, const jd_config *new_config, char *out,
                              size_t out_len)
{
    if (out_len == 0)
        return;
    out[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        if (!s->restart)
            continue;
        bool changed;
        if (s->type == SETTING_INT)
            changed = memcmp((const char *)old_config + s->offset,
                             (const char *)new_config + s->offset, sizeof(int)) != 0;
        else
            changed = strncmp(field_str_const(old_config, s), field_str_const(new_config, s),
                              s->size) != 0;
        if (!changed)
            continue;
        int n = snprintf(out + used, out_len - used, "%s%s", used ? ", " : "", s->name);
        if (n < 0 || (size_t)n >= out_len - used)
            return; /* cut short, still terminated by snprintf */
        used += (size_t)n;
    }
}

static void format_default(const setting *s, char *out, size_t out_len)
{
    if (s->type == SETTING_INT)
        snprintf(out, out_len, "%d", s->default_int);
    else
        snprintf(out, out_len, "\"%s\"", s->default_text);
}

static void format_limits(const setting *s, char *out, size_t out_len)
{
    out[0] = '\0';
    if (s->type == SETTING_INT) {
        snprintf(out, out_len, " (%d..%d)", s->min, s->max);
    } else if (s->choices) {
        size_t used = (size_t)snprintf(out, out_len, " (");
        for (const char *c = s->choices; *c && used + 4 < out_len; c++) {
            if (*c == '|') {
                used += (size_t)snprintf(out + used, out_len - used, ", ");
                continue;
            }
            out[used++] = *c;
            out[used] = '\0';
        }
        snprintf(out + used, out_len - used, ")");
    }
}

void jd_config_keep_restart_only(const jd_config *running, jd_config *next)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        if (!s->restart)
            continue;
        memcpy((char *)next + s->offset, (const char *)running + s->offset, s->size);
    }
}

void jd_config_print_help(FILE *out)
{
    fprintf(out,
            "Usage: journeyd [migrate] [options]\n"
            "\n"
            "Commands:\n"
            "  run              serve WebSocket clients (the default)\n"
            "  migrate          apply pending SQL migrations from sql_dir, then exit\n"
            "\n"
            "Options:\n"
            "  -h, --help       print this help and exit\n"
            "  -V, --version    print the version (" JD_VERSION ") and exit\n"
            "  --check-config   load and validate the configuration, then exit\n"
            "\n"
            "Settings: flag (--flag VALUE or --flag=VALUE), environment variable, default.\n"
            "Later sources win: defaults < config file < environment < flags. In the config\n"
            "file write `name = value`, e.g. max_frame = 65536. [restart] marks settings that\n"
            "a reload does not change.\n");
    int flag_w = 0, env_w = 0, def_w = 0;
    char text[JD_CONFIG_STR + 64];
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        int n = snprintf(text, sizeof(text), "%s %s", s->flag, s->metavar);
        flag_w = n > flag_w ? n : flag_w;
        n = (int)strlen(s->env);
        env_w = n > env_w ? n : env_w;
        format_default(s, text, sizeof(text));
        n = (int)strlen(text);
        /* Build-dependent paths are long; let them overflow rather than widen every row. */
        if (n <= 20)
            def_w = n > def_w ? n : def_w;
    }
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        char flag[64], def[JD_CONFIG_STR + 8], limits[96];
        snprintf(flag, sizeof(flag), "%s %s", s->flag, s->metavar);
        format_default(s, def, sizeof(def));
        format_limits(s, limits, sizeof(limits));
        fprintf(out, "  %-*s  %-*s  %-*s  %s%s%s\n", flag_w, flag, env_w, s->env, def_w, def,
                s->help, limits, s->restart ? " [restart]" : "");
    }
}

/* Table cells must not contain a bare '|'. */
static void print_md_cell(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '|')
            fputc('\\', out);
        fputc(*c, out);
    }
}

void jd_config_print_markdown(FILE *out)
{
    fprintf(out, "| Setting | Flag | Environment | Default | Reload | Meaning |\n"
                 "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        fprintf(out, "| `%s` | `%s` | `%s` | ", s->name, s->flag, s->env);
        if (s->doc_default)
            print_md_cell(out, s->doc_default);
        else if (s->type == SETTING_INT)
            fprintf(out, "%d", s->default_int);
        else if (s->default_text[0] == '\0')
            fputs("*empty*", out);
        else {
            fputc('`', out);
            print_md_cell(out, s->default_text);
            fputc('`', out);
        }
        char limits[96];
        format_limits(s, limits, sizeof(limits));
        fprintf(out, " | %s | ", s->restart ? "restart" : "yes");
        print_md_cell(out, s->help);
        print_md_cell(out, limits);
        fputs(" |\n", out);
    }
}

bool jd_config_listen_split(const char *listen, char *host, size_t host_len, int *port)
{
    if (!listen)
        return false;
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return false;
    const char *h = listen;
    size_t h_len = (size_t)(colon - listen);
    if (h[0] == '[') {
        /* Bracketed IPv6; the brackets are dropped for getaddrinfo. */
        if (h_len < 3 || h[h_len - 1] != ']')
            return false;
        h++;
        h_len -= 2;
        for (size_t i = 0; i < h_len; i++) {
            char c = h[i];
            bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (!hex && c != ':' && c != '.')
                return false;
        }
        if (!memchr(h, ':', h_len))
            return false;
    } else if (!(h_len == 1 && h[0] == '*')) {
        for (size_t i = 0; i < h_len; i++) {
            char c = h[i];
            bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      c == '.' || c == '-' || c == '_';
            /* A bare ':' here means an unbracketed IPv6 address, which is ambiguous. */
            if (!ok)
                return false;
        }
    }
    const char *p = colon + 1;
    size_t p_len = strlen(p);
    if (p_len == 0 || p_len > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < p_len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535 || h_len >= host_len)
        return false;
    memcpy(host, h, h_len);
    host[h_len] = '\0';
    *port = v;
    return true;
}
