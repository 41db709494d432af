/* Yardsticks for journeyd's ingest rate, written with plain libpq:
 *
 *   copy_baseline copy  --url URL [--rows N] [--chunk C]
 *       raw COPY of N answer rows into `answers`, C rows per COPY statement (each COPY commits
 *       on its own, synchronous_commit as the server has it): the limit. --table names another
 *       table with the same columns (run.sh uses a copy without foreign keys, to show their cost).
 *   copy_baseline naive --url URL [--clients K] [--duration S]
 *       K client connections (one thread each), one INSERT ... ON CONFLICT DO NOTHING per answer,
 *       autocommit: what peers that commit per message do.
 *
 * Rows carry the same column values journeyd writes for an emotion answer from the load
 * generator: the demo site and map, a live emotion question with its stage and touchpoint, a
 * persona, a fresh UUID v4 client id, session and respondent ids, emotion 1..5, the raw value,
 * ~100 characters of text and a client timestamp. The demo seed must be loaded. Prints one JSON
 * object on stdout. */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define UUID_LEN 36

static const char *url;
static const char *table = "answers";
static long rows_total = 500000, chunk = 100000;
static int clients = 8;
static double duration = 10;
static int text_len = 100;

static long site_id, map_id, n_questions;
static long q_survey[8], q_id[8], q_stage[8], q_touchpoint[8];
static long persona_ids[8];
static int n_personas;

static const char *const sentences[] = {
    "The delivery estimate changed twice while I was paying, so I am not sure when it arrives.",
    "Shipping cost only showed up on the last page; I almost left because of that surprise.",
    "I liked the size guide but could not find whether the fabric is machine washable at all.",
    "Checkout asked me to create an account before I could pay, which felt like a lot of effort.",
    "Comparing the two models side by side was easy and the reviews helped me decide quickly.",
    "The discount code from the newsletter did not apply to sale items and nothing explained it.",
    "Paying with my phone worked first time, but the confirmation email took ages to arrive here.",
    "I wanted to talk to someone about the warranty and the chat window kept closing on mobile.",
};
#define N_SENTENCES (sizeof(sentences) / sizeof(sentences[0]))
static char texts[N_SENTENCES][512];

static void die(const char *msg, PGconn *conn)
{
    fprintf(stderr, "copy_baseline: %s%s%s\n", msg, conn ? ": " : "",
            conn ? PQerrorMessage(conn) : "");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    uint64_t s[2];
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t s1 = r->s[0];
    const uint64_t s0 = r->s[1];
    r->s[0] = s0;
    s1 ^= s1 << 23;
    r->s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return r->s[1] + s0;
}

static void rng_seed(rng_t *r)
{
    if (getrandom(r->s, sizeof(r->s), 0) != sizeof(r->s)) {
        r->s[0] = (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ull;
        r->s[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ull;
    }
    if (!r->s[0] && !r->s[1])
        r->s[0] = 1;
}

static void uuid4(rng_t *r, char out[UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    uint64_t a = rng_next(r), b = rng_next(r);
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
    out[o] = '\0';
}

static void make_texts(void)
{
    int want = text_len < 1 ? 1 : text_len > 500 ? 500 : text_len;
    for (size_t i = 0; i < N_SENTENCES; i++) {
        int n = 0;
        while (n < want) {
            const char *s = sentences[(i + (size_t)n) % N_SENTENCES];
            int len = (int)strlen(s);
            int take = want - n < len ? want - n : len;
            memcpy(texts[i] + n, s, (size_t)take);
            n += take;
            if (n < want)
                texts[i][n++] = ' ';
        }
        while (n > 1 && texts[i][n - 1] == ' ')
            n--;
        texts[i][n] = '\0';
    }
}

static PGconn *connect_db(void)
{
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK)
        die("cannot connect", conn);
    return conn;
}

/* The ids the daemon would resolve from the demo seed. */
static void load_ids(void)
{
    PGconn *conn = connect_db();
    PGresult *r = PQexec(conn,
                         "SELECT s.id, m.id FROM sites s JOIN maps m ON m.site_id = s.id "
                         "WHERE s.key = 'demo-site-key-0001' AND m.slug = 'online-purchase'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        die("the demo seed is not loaded (no demo-site-key-0001/online-purchase)", conn);
    site_id = atol(PQgetvalue(r, 0, 0));
    map_id = atol(PQgetvalue(r, 0, 1));
    PQclear(r);
    r = PQexec(conn, "SELECT q.survey_id, q.id, coalesce(q.stage_id, 0), "
                     "coalesce(q.touchpoint_id, 0) FROM questions q JOIN surveys s ON s.id = "
                     "q.survey_id JOIN maps m ON m.id = s.map_id JOIN sites si ON si.id = "
                     "m.site_id WHERE si.key = 'demo-site-key-0001' AND q.kind = 'emotion' AND "
                     "q.retired_at IS NULL AND s.status = 'live' ORDER BY q.id LIMIT 8");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        die("no live emotion question in the demo seed", conn);
    n_questions = PQntuples(r);
    for (int i = 0; i < n_questions; i++) {
        q_survey[i] = atol(PQgetvalue(r, i, 0));
        q_id[i] = atol(PQgetvalue(r, i, 1));
        q_stage[i] = atol(PQgetvalue(r, i, 2));
        q_touchpoint[i] = atol(PQgetvalue(r, i, 3));
    }
    PQclear(r);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT id FROM personas WHERE map_id = %ld ORDER BY id LIMIT 8",
             map_id);
    r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        die("no personas in the demo map", conn);
    n_personas = PQntuples(r);
    for (int i = 0; i < n_personas; i++)
        persona_ids[i] = atol(PQgetvalue(r, i, 0));
    PQclear(r);
    PQfinish(conn);
}

/* One answer's column values, as text. NULL pointers are SQL NULLs. */
typedef struct {
    char site[24], map[24], client[UUID_LEN + 1], survey[24], question[24];
    char session[UUID_LEN + 1], respondent[UUID_LEN + 1], persona[24], stage[24], touchpoint[24];
    char emotion[4], value[4], ts[32];
    const char *text;
} row_t;

typedef struct {
    char session[UUID_LEN + 1], respondent[UUID_LEN + 1];
} sess_t;

static void make_row(rng_t *rng, const sess_t *sess, row_t *row)
{
    uint64_t r = rng_next(rng);
    int qi = (int)(r % (uint64_t)n_questions);
    int emotion = (int)((r >> 8) % 5) + 1;
    snprintf(row->site, sizeof(row->site), "%ld", site_id);
    snprintf(row->map, sizeof(row->map), "%ld", map_id);
    uuid4(rng, row->client);
    snprintf(row->survey, sizeof(row->survey), "%ld", q_survey[qi]);
    snprintf(row->question, sizeof(row->question), "%ld", q_id[qi]);
    memcpy(row->session, sess->session, sizeof(row->session));
    memcpy(row->respondent, sess->respondent, sizeof(row->respondent));
    snprintf(row->persona, sizeof(row->persona), "%ld",
             persona_ids[(r >> 16) % (uint64_t)n_personas]);
    snprintf(row->stage, sizeof(row->stage), "%ld", q_stage[qi]);
    snprintf(row->touchpoint, sizeof(row->touchpoint), "%ld", q_touchpoint[qi]);
    snprintf(row->emotion, sizeof(row->emotion), "%d", emotion);
    snprintf(row->value, sizeof(row->value), "%d", emotion);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(row->ts, sizeof(row->ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    row->text = texts[(r >> 24) % N_SENTENCES];
}

static const char columns[] =
    "site_id, map_id, client_id, survey_id, question_id, session_id, respondent_id, persona_id, "
    "stage_id, touchpoint_id, emotion, score, goal_reached, obstacle_ids, choice, thought, "
    "action, value, client_ts";

static void make_sessions(rng_t *rng, sess_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        uuid4(rng, s[i].session);
        uuid4(rng, s[i].respondent);
    }
}

/* --- COPY ------------------------------------------------------------------------------------ */

static int run_copy(void)
{
    PGconn *conn = connect_db();
    rng_t rng;
    rng_seed(&rng);
    sess_t sess[100];
    make_sessions(&rng, sess, 100);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf)
        die("out of memory", NULL);
    char sql[512];
    snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN", table, columns);
    long done = 0;
    double t0 = now_s();
    while (done < rows_total) {
        long n = rows_total - done < chunk ? rows_total - done : chunk;
        PGresult *r = PQexec(conn, sql);
        if (PQresultStatus(r) != PGRES_COPY_IN)
            die("COPY did not start", conn);
        PQclear(r);
        size_t len = 0;
        for (long i = 0; i < n; i++) {
            row_t row;
            make_row(&rng, &sess[i % 100], &row);
            if (len + 2048 > cap) {
                if (PQputCopyData(conn, buf, (int)len) != 1)
                    die("PQputCopyData", conn);
                len = 0;
            }
            /* text format: tab separated, \N for NULL; the texts hold no tab, newline or \ */
            len += (size_t)snprintf(buf + len, cap - len,
                                    "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\\N\t\\N\t{}\t\\N\t"
                                    "%s\t\\N\t%s\t%s\n",
                                    row.site, row.map, row.client, row.survey, row.question,
                                    row.session, row.respondent, row.persona, row.stage,
                                    row.touchpoint, row.emotion, row.text, row.value, row.ts);
        }
        if (len && PQputCopyData(conn, buf, (int)len) != 1)
            die("PQputCopyData", conn);
        if (PQputCopyEnd(conn, NULL) != 1)
            die("PQputCopyEnd", conn);
        r = PQgetResult(conn);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("COPY failed", conn);
        PQclear(r);
        while ((r = PQgetResult(conn)))
            PQclear(r);
        done += n;
    }
    double secs = now_s() - t0;
    printf("{\"path\":\"copy\",\"table\":\"%s\",\"rows\":%ld,\"chunk\":%ld,\"seconds\":%.3f,"
           "\"rows_per_s\":%.0f}\n",
           table, done, chunk, secs, (double)done / secs);
    free(buf);
    PQfinish(conn);
    return 0;
}

/* --- naive: one INSERT per answer, autocommit ------------------------------------------------ */

static atomic_long naive_rows, naive_errors;
static double naive_deadline;

static void *naive_client(void *arg)
{
    (void)arg;
    PGconn *conn = connect_db();
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO answers (%s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
             "NULL, NULL, '{}', NULL, $12, NULL, $13, $14) ON CONFLICT (site_id, client_id) DO "
             "NOTHING",
             columns);
    PGresult *r = PQprepare(conn, "ins", sql, 14, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("prepare", conn);
    PQclear(r);
    rng_t rng;
    rng_seed(&rng);
    sess_t sess;
    make_sessions(&rng, &sess, 1);
    long n = 0, bad = 0;
    while (now_s() < naive_deadline) {
        row_t row;
        make_row(&rng, &sess, &row);
        const char *v[14] = {row.site,    row.map,        row.client,    row.survey, row.question,
                             row.session, row.respondent, row.persona,   row.stage,  row.touchpoint,
                             row.emotion, row.text,       row.value,     row.ts};
        r = PQexecPrepared(conn, "ins", 14, v, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            n++;
        else if (++bad > 100)
            die("too many failed inserts", conn);
        PQclear(r);
    }
    atomic_fetch_add(&naive_rows, n);
    atomic_fetch_add(&naive_errors, bad);
    PQfinish(conn);
    return NULL;
}

static int run_naive(void)
{
    pthread_t th[256];
    double t0 = now_s();
    naive_deadline = t0 + duration;
    for (int i = 0; i < clients; i++)
        if (pthread_create(&th[i], NULL, naive_client, NULL) != 0)
            die("pthread_create", NULL);
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    double secs = now_s() - t0;
    printf("{\"path\":\"naive\",\"clients\":%d,\"rows\":%ld,\"errors\":%ld,\"seconds\":%.3f,"
           "\"rows_per_s\":%.0f}\n",
           clients, atomic_load(&naive_rows), atomic_load(&naive_errors), secs,
           (double)atomic_load(&naive_rows) / secs);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: copy_baseline copy --url URL [--rows N] [--chunk C] [--table T] [--text-len N]\n"
                    "       copy_baseline naive --url URL [--clients K] [--duration S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--rows") == 0)
            rows_total = atol(v);
        else if (strcmp(a, "--chunk") == 0)
            chunk = atol(v);
        else if (strcmp(a, "--clients") == 0)
            clients = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            duration = atof(v);
        else if (strcmp(a, "--table") == 0)
            table = v;
        else if (strcmp(a, "--text-len") == 0)
            text_len = atoi(v);
        else
            usage();
    }
    if (!url || rows_total < 1 || rows_total > 100000000 || chunk < 1 || clients < 1 ||
        clients > 256 || duration <= 0 || duration > 3600)
        usage();
    make_texts();
    load_ids();
    if (strcmp(mode, "copy") == 0)
        return run_copy();
    if (strcmp(mode, "naive") == 0)
        return run_naive();
    usage();
    return 2;
}
