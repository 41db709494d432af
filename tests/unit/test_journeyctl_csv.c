/* journeyctl's strict RFC 4180 reader: quoted fields, embedded commas and newlines, doubled
 * quotes, CRLF and LF line ends, the physical line where each record starts, bad quoting and
 * invalid UTF-8 refused with the line number, blank lines and a byte order mark skipped. And the
 * findings loader: header mapping, rows as JSON with their line, rejects, JSON element lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyctl_csv.h"

/* Reads every record of text into a "|"-joined line per record ("L3:a|b|c"), or "ERR L3: ..." for
 * an error. */
static char *read_all(const char *text, size_t len)
{
    jd_csv c;
    jd_buf out;
    jd_buf_init(&out);
    jd_csv_init(&c, text, len);
    int rc;
    while ((rc = jd_csv_next(&c)) == 1) {
        jd_buf_printf(&out, "L%zu:", c.record_line);
        for (size_t i = 0; i < c.nfields; i++) {
            size_t n;
            const char *f = jd_csv_field(&c, i, &n);
            if (i)
                jd_buf_puts(&out, "|");
            jd_buf_append(&out, f, n);
        }
        jd_buf_puts(&out, "\n");
    }
    if (rc < 0)
        jd_buf_printf(&out, "ERR L%zu: %s\n", c.error_line, c.error);
    jd_csv_free(&c);
    jd_buf_append(&out, "", 1);
    return out.data;
}

static void check(const char *text, const char *want)
{
    char *got = read_all(text, strlen(text));
    assert_string_equal(got, want);
    free(got);
}

static void test_plain_and_quoted_fields(void **state)
{
    (void)state;
    check("a,b,c\n1,2,3\n", "L1:a|b|c\nL2:1|2|3\n");
    check("a,b,c\n1,2,3", "L1:a|b|c\nL2:1|2|3\n"); /* no final line end */
    check("\"a\",\"b,c\",d\n", "L1:a|b,c|d\n");
    check("x,,\n", "L1:x||\n"); /* empty fields, trailing comma */
    check("\"\",\"\"\n", "L1:|\n");
    check("a, b ,c\n", "L1:a| b |c\n"); /* spaces are data */
}

static void test_doubled_quotes(void **state)
{
    (void)state;
    check("\"she said \"\"hi\"\"\",2\n", "L1:she said \"hi\"|2\n");
    check("\"\"\"\"\n", "L1:\"\n");
}

static void test_embedded_newlines_keep_physical_lines(void **state)
{
    (void)state;
    check("h1,h2\n\"line one\nline two\",x\nnext,row\n",
          "L1:h1|h2\nL2:line one\nline two|x\nL4:next|row\n");
    check("h\n\"a\r\nb\r\nc\"\nz\n", "L1:h\nL2:a\r\nb\r\nc\nL5:z\n");
}

static void test_crlf(void **state)
{
    (void)state;
    check("a,b\r\n1,2\r\n\"q\",\"w\"\r\n", "L1:a|b\nL2:1|2\nL3:q|w\n");
}

static void test_blank_lines_and_bom_skipped(void **state)
{
    (void)state;
    check("\xEF\xBB\xBFh1,h2\n\n1,2\n\r\n\n", "L1:h1|h2\nL3:1|2\n");
    check("", "");
}

static void test_bad_quoting_reports_line(void **state)
{
    (void)state;
    check("a,b\n1,2\nab\"c,d\n",
          "L1:a|b\nL2:1|2\nERR L3: quote inside an unquoted field (quote the whole field and "
          "double the quote)\n");
    check("a\n\"ok\"x,1\n", "L1:a\nERR L2: unexpected text after a closing quote (a quote inside "
                            "a quoted field must be doubled)\n");
    check("a\nb\n\"never\nclosed,1\n2\n",
          "L1:a\nL2:b\nERR L3: quoted field opened on line 3 is never closed\n");
    check("a\rb\n", "ERR L1: carriage return without a line feed outside quotes\n");
}

static void test_invalid_utf8_rejected_with_line(void **state)
{
    (void)state;
    check("name\ncaf\xc3\xa9\n\xe2\x82\xac 5\n", "L1:name\nL2:caf\xc3\xa9\nL3:\xe2\x82\xac 5\n");
    check("name\nok\ncaf\xe9\n", "L1:name\nL2:ok\nERR L3: invalid UTF-8 (byte 0xE9); save the "
                                 "file as UTF-8\n");
    /* The bad byte sits on the second physical line of a quoted field. */
    check("h\n\"one\ntw\xc0\xaf\"\n", "L1:h\nERR L3: invalid UTF-8 (byte 0xC0); save the file as "
                                      "UTF-8\n");
    /* NUL is refused too. */
    const char nul[] = "h\na\0b\n";
    char *got = read_all(nul, sizeof(nul) - 1);
    assert_string_equal(got, "L1:h\nERR L2: NUL byte in the text\n");
    free(got);
}

static void test_utf8_validator(void **state)
{
    (void)state;
    size_t bad = 99;
    const char *ok = "plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_true(jd_utf8_valid(ok, strlen(ok), &bad));
    assert_false(jd_utf8_valid("\xc0\x80", 2, &bad)); /* overlong NUL */
    assert_int_equal(bad, 0);
    assert_false(jd_utf8_valid("ab\xed\xa0\x80", 5, &bad)); /* surrogate */
    assert_int_equal(bad, 2);
    assert_false(jd_utf8_valid("\xf4\x90\x80\x80", 4, &bad)); /* above U+10FFFF */
    assert_false(jd_utf8_valid("\xe2\x82", 2, &bad));         /* truncated */
    assert_false(jd_utf8_valid("\x80", 1, &bad));             /* lone continuation */
}

static void test_many_records(void **state)
{
    (void)state;
    jd_buf in;
    jd_buf_init(&in);
    jd_buf_puts(&in, "a,b\r\n");
    for (int i = 0; i < 10000; i++)
        jd_buf_printf(&in, "%d,\"multi\nline %d\"\r\n", i, i);
    assert_true(jd_buf_ok(&in));
    jd_csv c;
    jd_csv_init(&c, in.data, in.len);
    assert_int_equal(jd_csv_next(&c), 1);
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(jd_csv_next(&c), 1);
        assert_int_equal(c.record_line, (size_t)(2 + 2 * i));
        assert_int_equal(c.nfields, 2);
        assert_int_equal(atoi(jd_csv_field(&c, 0, NULL)), i);
    }
    assert_int_equal(jd_csv_next(&c), 0);
    jd_csv_free(&c);
    jd_buf_free(&in);
}

/* The loaded rows, one per line, then the rejects ("! L reason"). */
static char *findings_text(const jd_findings *f)
{
    jd_buf out;
    jd_buf_init(&out);
    for (size_t i = 0; i < f->count; i++) {
        jd_buf_append(&out, f->rows.data + f->offsets[i], f->offsets[i + 1] - f->offsets[i]);
        jd_buf_printf(&out, " @%lld\n", f->lines[i]);
    }
    for (size_t i = 0; i < f->nrejects; i++)
        jd_buf_printf(&out, "! %lld %s\n", f->rejects[i].line, f->rejects[i].reason);
    jd_buf_append(&out, "", 1);
    return out.data;
}

static void test_findings_csv(void **state)
{
    (void)state;
    jd_findings f;
    jd_findings_init(&f);
    const char *csv = " Persona ,STAGE,quote,emotion\r\n"
                      "budget-parent,awareness,\"too \"\"dear\"\",\r\nreally\",2\r\n"
                      "busy-professional,purchase,,\r\n"
                      "x,y\r\n";
    assert_true(jd_findings_load_csv(&f, csv, strlen(csv)));
    char *got = findings_text(&f);
    assert_string_equal(
        got, "{\"line\":2,\"persona\":\"budget-parent\",\"stage\":\"awareness\","
             "\"quote\":\"too \\\"dear\\\",\\u000d\\u000areally\",\"emotion\":\"2\"} @2\n"
             "{\"line\":4,\"persona\":\"busy-professional\",\"stage\":\"purchase\"}"
             " @4\n"
             "! 5 2 fields, the header has 4\n");
    free(got);
    jd_findings_free(&f);

    const char *unknown = "persona,colour\nbudget-parent,red\n";
    assert_false(jd_findings_load_csv(&f, unknown, strlen(unknown)));
    assert_int_equal(f.error_line, 1);
    assert_non_null(strstr(f.error, "unknown column \"colour\""));
    jd_findings_free(&f);

    const char *twice = "stage,Stage\n";
    assert_false(jd_findings_load_csv(&f, twice, strlen(twice)));
    assert_non_null(strstr(f.error, "appears twice"));
    jd_findings_free(&f);

    const char *broken = "persona\nok\nbad\"quote\n";
    assert_false(jd_findings_load_csv(&f, broken, strlen(broken)));
    assert_int_equal(f.error_line, 3);
    jd_findings_free(&f);

    assert_false(jd_findings_load_csv(&f, "", 0));
    assert_non_null(strstr(f.error, "empty"));
    jd_findings_free(&f);
}

static void test_findings_json(void **state)
{
    (void)state;
    jd_findings f;
    jd_findings_init(&f);
    const char *json = "[\n"
                       "  {\"persona\": \"budget-parent\", \"quote\": \"a ] } , [ { \\\" x\",\n"
                       "   \"emotion\": 4, \"obstacles\": [\"price\"]},\n"
                       "  7,\n"
                       "  {\"persona\": \"x\", \"line\": 3},\n"
                       "  {\"colour\": \"red\"}, {\"stage\": null}\n"
                       "]\n";
    assert_true(jd_findings_load_json(&f, json, strlen(json)));
    char *got = findings_text(&f);
    assert_string_equal(got, "{\"line\":2,\"persona\":\"budget-parent\",\"quote\":\"a ] } , [ { "
                             "\\\" x\",\"emotion\":4,\"obstacles\":[\"price\"]} @2\n"
                             "{\"line\":6,\"colour\":\"red\"} @6\n"
                             "{\"line\":6,\"stage\":null} @6\n"
                             "! 4 not a JSON object\n"
                             "! 5 \"line\" is journeyctl's own key\n");
    free(got);
    jd_findings_free(&f);

    assert_false(jd_findings_load_json(&f, "{\"a\":1}", 7));
    assert_non_null(strstr(f.error, "array"));
    jd_findings_free(&f);
    assert_false(jd_findings_load_json(&f, "[\n{\"a\":", 7));
    assert_int_equal(f.error_line, 2);
    jd_findings_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_quoted_fields),
        cmocka_unit_test(test_doubled_quotes),
        cmocka_unit_test(test_embedded_newlines_keep_physical_lines),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_blank_lines_and_bom_skipped),
        cmocka_unit_test(test_bad_quoting_reports_line),
        cmocka_unit_test(test_invalid_utf8_rejected_with_line),
        cmocka_unit_test(test_utf8_validator),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_findings_csv),
        cmocka_unit_test(test_findings_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
