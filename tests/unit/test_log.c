/* Unit tests for log.c: the text and JSON line formats, level filtering, escaping of anything that
 * could break a line or a JSON document, truncation of long messages, whole lines under
 * concurrent logging and jd_fatal aborting. stderr is captured by pointing fd 2 at a temp file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

typedef struct capture {
    int saved_fd;
    FILE *file;
} capture;

static void capture_start(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns everything written meanwhile; the caller frees it. */
static char *capture_end(capture *c)
{
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    assert_int_equal(fseek(c->file, 0, SEEK_END), 0);
    long size = ftell(c->file);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    rewind(c->file);
    assert_int_equal(fread(text, 1, (size_t)size, c->file), (size_t)size);
    fclose(c->file);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* Checks one JSON line: valid JSON object with ts, level and msg; returns the parsed object. */
static json_t *parse_json_line(const char *line_text)
{
    json_error_t error;
    json_t *root = json_loads(line_text, JSON_REJECT_DUPLICATES, &error);
    if (!root)
        fail_msg("not JSON (%s): %s", error.text, line_text);
    assert_true(json_is_object(root));
    assert_true(jd_timestamp_valid(json_string_value(json_object_get(root, "ts"))));
    assert_non_null(json_string_value(json_object_get(root, "level")));
    assert_non_null(json_string_value(json_object_get(root, "msg")));
    return root;
}

static int reset_log(void **state)
{
    (void)state;
    jd_log_configure(JD_LOG_INFO, false);
    return 0;
}

static void test_level_parse(void **state)
{
    (void)state;
    jd_log_level level = JD_LOG_ERROR;
    assert_true(jd_log_level_parse("debug", &level));
    assert_int_equal(level, JD_LOG_DEBUG);
    assert_true(jd_log_level_parse("info", &level));
    assert_int_equal(level, JD_LOG_INFO);
    assert_true(jd_log_level_parse("warn", &level));
    assert_int_equal(level, JD_LOG_WARN);
    assert_true(jd_log_level_parse("error", &level));
    assert_int_equal(level, JD_LOG_ERROR);
    assert_false(jd_log_level_parse("warning", &level));
    assert_false(jd_log_level_parse("INFO", &level));
    assert_false(jd_log_level_parse("", &level));
    assert_false(jd_log_level_parse(NULL, &level));
    assert_int_equal(level, JD_LOG_ERROR);
}

static void test_text_format(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    jd_log(JD_LOG_INFO, 12, "127.0.0.1", "hello %s %d", "world", 42);
    char *out = capture_end(&c);
    /* 2026-11-29T07:00:00.123Z is 24 characters. */
    assert_true(strlen(out) > 25);
    assert_int_equal(out[24], ' ');
    out[24] = '\0';
    assert_true(jd_timestamp_valid(out));
    assert_string_equal(out + 25, "INFO conn=12 peer=127.0.0.1 hello world 42\n");
    free(out);
}

static void test_text_omits_conn_and_peer(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    jd_log_warn("plain");
    jd_log(JD_LOG_ERROR, 0, "::1", "peer only");
    jd_log(JD_LOG_ERROR, 7, NULL, "conn only");
    char *out = capture_end(&c);
    char *second = strchr(out, '\n');
    assert_non_null(second);
    *second++ = '\0';
    char *third = strchr(second, '\n');
    assert_non_null(third);
    *third++ = '\0';
    assert_string_equal(out + 25, "WARN plain");
    assert_string_equal(second + 25, "ERROR peer=::1 peer only");
    assert_string_equal(third + 25, "ERROR conn=7 conn only\n");
    assert_null(strstr(out, "conn="));
    free(out);
}

static void test_text_escapes_control_bytes(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    jd_log_info("a\nb\rc\td\x01"
                "e");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_string_equal(out + 25, "INFO a\\nb\\rc\\td\\x01e\n");
    free(out);
}

static void test_level_threshold(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    jd_log_debug("hidden debug");
    jd_log_info("shown info");
    jd_log_configure(JD_LOG_WARN, false);
    jd_log_info("hidden info");
    jd_log_warn("shown warn");
    jd_log_configure(JD_LOG_DEBUG, false);
    jd_log_debug("shown debug");
    jd_log_configure(JD_LOG_ERROR, false);
    jd_log_warn("hidden warn");
    jd_log_error("shown error");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 4);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "INFO shown info"));
    assert_non_null(strstr(out, "WARN shown warn"));
    assert_non_null(strstr(out, "DEBUG shown debug"));
    assert_non_null(strstr(out, "ERROR shown error"));
    free(out);
}

static void test_json_format(void **state)
{
    (void)state;
    jd_log_configure(JD_LOG_INFO, true);
    capture c;
    capture_start(&c);
    jd_log(JD_LOG_WARN, 12, "127.0.0.1", "slow %d ms", 250);
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_memory_equal(out, "{\"ts\":\"", 7);
    json_t *root = parse_json_line(out);
    assert_string_equal(json_string_value(json_object_get(root, "level")), "warn");
    assert_int_equal(json_integer_value(json_object_get(root, "conn")), 12);
    assert_string_equal(json_string_value(json_object_get(root, "peer")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(root, "msg")), "slow 250 ms");
    assert_int_equal(json_object_size(root), 5);
    /* Key order is part of the format: ts, level, conn, peer, msg. */
    const char *ts = strstr(out, "\"ts\""), *level = strstr(out, "\"level\""),
               *conn = strstr(out, "\"conn\""), *peer = strstr(out, "\"peer\""),
               *msg = strstr(out, "\"msg\"");
    assert_true(ts < level && level < conn && conn < peer && peer < msg);
    json_decref(root);
    free(out);
}

static void test_json_omits_conn_and_peer(void **state)
{
    (void)state;
    jd_log_configure(JD_LOG_INFO, true);
    capture c;
    capture_start(&c);
    jd_log_error("no connection");
    char *out = capture_end(&c);
    json_t *root = parse_json_line(out);
    assert_int_equal(json_object_size(root), 3);
    assert_null(json_object_get(root, "conn"));
    assert_null(json_object_get(root, "peer"));
    assert_string_equal(json_string_value(json_object_get(root, "level")), "error");
    json_decref(root);
    free(out);
}

static void test_json_escaping(void **state)
{
    (void)state;
    jd_log_configure(JD_LOG_INFO, true);
    const char *nasty = "quote\" backslash\\ nl\n cr\r tab\t ctl\x01\x1f del\x7f utf8 \xc3\xa9 end";
    capture c;
    capture_start(&c);
    jd_log(JD_LOG_INFO, 1, "pe\"er\n", "%s", nasty);
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "quote\\\" backslash\\\\ nl\\n cr\\r tab\\t ctl\\u0001\\u001f "
                                "del\\u007f utf8 \xc3\xa9 end\"}\n"));
    json_t *root = parse_json_line(out);
    assert_string_equal(json_string_value(json_object_get(root, "msg")), nasty);
    assert_string_equal(json_string_value(json_object_get(root, "peer")), "pe\"er\n");
    json_decref(root);
    free(out);
}

static void test_json_invalid_utf8_stays_one_line(void **state)
{
    (void)state;
    jd_log_configure(JD_LOG_INFO, true);
    capture c;
    capture_start(&c);
    jd_log_info("bad \xff\xfe bytes\n\x02");
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    /* Passed through as-is (acceptable per the spec), but nothing below 0x20 raw. */
    assert_non_null(strstr(out, "\"msg\":\"bad \xff\xfe bytes\\n\\u0002\"}\n"));
    for (const char *p = out; *p != '\n'; p++)
        assert_true((unsigned char)*p >= 0x20);
    free(out);
}

static void test_long_message_is_cut(void **state)
{
    (void)state;
    size_t big = 20000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    /* Quotes double in size when escaped, so the cut lands inside the escaped text. */
    for (size_t i = 0; i < big; i++)
        msg[i] = i % 2 ? '"' : 'x';
    msg[big] = '\0';
    for (int json = 0; json <= 1; json++) {
        jd_log_configure(JD_LOG_INFO, json);
        capture c;
        capture_start(&c);
        jd_log(JD_LOG_INFO, 99, "10.0.0.1", "%s", msg);
        char *out = capture_end(&c);
        size_t len = strlen(out);
        assert_int_equal(count_lines(out), 1);
        assert_true(len <= 4096);
        assert_true(len > 3000);
        assert_int_equal(out[len - 1], '\n');
        if (json) {
            assert_memory_equal(out + len - 6, "...\"}\n", 6);
            json_t *root = parse_json_line(out);
            assert_int_equal(json_integer_value(json_object_get(root, "conn")), 99);
            json_decref(root);
        } else {
            assert_memory_equal(out + len - 4, "...\n", 4);
        }
        free(out);
    }
    free(msg);
}

static void test_lengths_around_the_limit(void **state)
{
    (void)state;
    /* Sweep message sizes across the point where the line fills up, so the closing bytes are
     * checked when the body lands exactly on the cut and just either side of it. */
    char msg[4200];
    for (int json = 0; json <= 1; json++) {
        jd_log_configure(JD_LOG_INFO, json);
        for (size_t n = 3950; n < sizeof(msg); n++) {
            memset(msg, 'm', n);
            msg[n] = '\0';
            capture c;
            capture_start(&c);
            jd_log_info("%s", msg);
            char *out = capture_end(&c);
            size_t len = strlen(out);
            if (count_lines(out) != 1 || out[len - 1] != '\n' || len > 4096)
                fail_msg("message of %zu bytes (json %d) gave a broken line of %zu bytes", n, json,
                         len);
            if (json)
                json_decref(parse_json_line(out));
            free(out);
        }
    }
}

static void test_cut_keeps_utf8_whole(void **state)
{
    (void)state;
    /* Try every alignment of a 2-, 3- and 4-byte character against the cut. */
    const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    jd_log_configure(JD_LOG_INFO, true);
    for (size_t k = 0; k < 3; k++) {
        for (size_t shift = 0; shift < 4; shift++) {
            char msg[6000];
            size_t n = 0;
            for (; n < shift; n++)
                msg[n] = 'a';
            size_t w = strlen(chars[k]);
            while (n + w < sizeof(msg)) {
                memcpy(msg + n, chars[k], w);
                n += w;
            }
            msg[n] = '\0';
            capture c;
            capture_start(&c);
            jd_log_info("%s", msg);
            char *out = capture_end(&c);
            json_t *root = parse_json_line(out); /* jansson rejects broken UTF-8 */
            json_decref(root);
            free(out);
        }
    }
}

static void test_errno_preserved(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    errno = ENOENT;
    jd_log_info("errno must survive");
    int after = errno;
    char *out = capture_end(&c);
    assert_int_equal(after, ENOENT);
    assert_non_null(strstr(out, "errno must survive"));
    free(out);

    /* A failing write(2) (stderr closed) must not leak its EBADF either. */
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    close(STDERR_FILENO);
    errno = ENOENT;
    jd_log_info("nowhere to go");
    after = errno;
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_int_equal(after, ENOENT);
}

#define THREADS 8
#define LINES_PER_THREAD 300

static void *log_worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    char pad[600];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++) {
        /* Thread 0 flips the format under the others' feet. */
        if (id == 0 && i % 10 == 0)
            jd_log_configure(JD_LOG_INFO, (i / 10) % 2);
        jd_log(JD_LOG_INFO, id + 1, "192.0.2.1", "worker %u line %d %s", (unsigned)id, i, pad);
    }
    return NULL;
}

static void test_concurrent_lines_stay_whole(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    pthread_t threads[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, log_worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    char *out = capture_end(&c);
    assert_int_equal(count_lines(out), THREADS * LINES_PER_THREAD);
    size_t json_lines = 0, text_lines = 0;
    char *save = NULL;
    for (char *ln = strtok_r(out, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        unsigned id;
        int i;
        if (ln[0] == '{') {
            json_t *root = parse_json_line(ln);
            const char *msg = json_string_value(json_object_get(root, "msg"));
            assert_int_equal(sscanf(msg, "worker %u line %d", &id, &i), 2);
            assert_int_equal(json_integer_value(json_object_get(root, "conn")), id + 1);
            json_decref(root);
            json_lines++;
        } else {
            char conn[32];
            assert_int_equal(
                sscanf(ln + 25, "INFO conn=%31s peer=192.0.2.1 worker %u line %d", conn, &id, &i),
                3);
            assert_int_equal(strtoul(conn, NULL, 10), id + 1);
            assert_int_equal(strlen(ln), 25 + strlen("INFO conn=1 peer=192.0.2.1 worker 0 line ") +
                                             (i >= 100  ? 3
                                              : i >= 10 ? 2
                                                        : 1) +
                                             1 + 599);
            text_lines++;
        }
    }
    assert_int_equal(json_lines + text_lines, THREADS * LINES_PER_THREAD);
    assert_true(json_lines > 0);
    assert_true(text_lines > 0);
    free(out);
}

static void test_fatal_logs_and_aborts(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No core file for an abort we asked for. */
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        /* cmocka may trap signals in the test process; the abort must really kill us. */
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        jd_log_configure(JD_LOG_ERROR, false);
        jd_fatal("invariant %s broken", "queue");
    }
    close(fds[1]);
    char buf[1024] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(buf, " ERROR invariant queue broken\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_level_parse, reset_log),
        cmocka_unit_test_setup(test_text_format, reset_log),
        cmocka_unit_test_setup(test_text_omits_conn_and_peer, reset_log),
        cmocka_unit_test_setup(test_text_escapes_control_bytes, reset_log),
        cmocka_unit_test_setup(test_level_threshold, reset_log),
        cmocka_unit_test_setup(test_json_format, reset_log),
        cmocka_unit_test_setup(test_json_omits_conn_and_peer, reset_log),
        cmocka_unit_test_setup(test_json_escaping, reset_log),
        cmocka_unit_test_setup(test_json_invalid_utf8_stays_one_line, reset_log),
        cmocka_unit_test_setup(test_long_message_is_cut, reset_log),
        cmocka_unit_test_setup(test_lengths_around_the_limit, reset_log),
        cmocka_unit_test_setup(test_cut_keeps_utf8_whole, reset_log),
        cmocka_unit_test_setup(test_errno_preserved, reset_log),
        cmocka_unit_test_setup(test_concurrent_lines_stay_whole, reset_log),
        cmocka_unit_test_setup(test_fatal_logs_and_aborts, reset_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
