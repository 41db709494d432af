/* Map export rendering (daemon/src/export.c): the escapers (CSV quoting and formula guard,
 * Mermaid entities, XML entities) and whole files rendered from a small document whose names and
 * quotes are hostile. The real parsers (mermaid, xmllint, Chromium, ajv) check the same files in
 * tests/integration/export.test.mjs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "export.h"

typedef void (*escaper)(jd_buf *out, const char *text);

static void mermaid_task(jd_buf *out, const char *text)
{
    jd_export_mermaid_text(out, text, false);
}

static void mermaid_actor(jd_buf *out, const char *text)
{
    jd_export_mermaid_text(out, text, true);
}

static void expect(escaper fn, const char *in, const char *want)
{
    jd_buf b;
    jd_buf_init(&b);
    fn(&b, in);
    jd_buf_append(&b, "", 1);
    assert_true(jd_buf_ok(&b));
    if (strcmp(b.data, want) != 0)
        fail_msg("escape(%s)\n got: %s\nwant: %s", in, b.data, want);
    jd_buf_free(&b);
}

static void test_csv_quoting_and_injection_guard(void **state)
{
    (void)state;
    expect(jd_export_csv_field, "plain text", "plain text");
    expect(jd_export_csv_field, "", "");
    expect(jd_export_csv_field, "a,b", "\"a,b\"");
    expect(jd_export_csv_field, "say \"hi\"", "\"say \"\"hi\"\"\"");
    expect(jd_export_csv_field, "two\nlines", "\"two\nlines\"");
    expect(jd_export_csv_field, "cr\rin", "\"cr\rin\"");
    expect(jd_export_csv_field, "=HYPERLINK(\"http://x\",\"y\")",
           "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
    expect(jd_export_csv_field, "+1 555", "\"'+1 555\"");
    expect(jd_export_csv_field, "-2+3", "\"'-2+3\"");
    expect(jd_export_csv_field, "@SUM(A1)", "\"'@SUM(A1)\"");
    expect(jd_export_csv_field, "\tTAB", "\"'\tTAB\"");
    expect(jd_export_csv_field, "\rCR", "\"'\rCR\"");
    expect(jd_export_csv_field, "a=b", "a=b");
    expect(jd_export_csv_field, "Ünïcødé ✓", "Ünïcødé ✓");
}

static void test_mermaid_escaping(void **state)
{
    (void)state;
    expect(mermaid_task, "Website", "Website");
    expect(mermaid_task, "Pay: card: 5: Me", "Pay#58; card#58; 5#58; Me");
    expect(mermaid_task, "a#b;c", "a#35;b#59;c");
    expect(mermaid_task, "title Trick", "#116;itle Trick");
    expect(mermaid_task, "Title", "#84;itle");
    expect(mermaid_task, "section x", "#115;ection x");
    expect(mermaid_task, "journey", "#106;ourney");
    expect(mermaid_task, "accTitle: x", "#97;ccTitle#58; x");
    expect(mermaid_task, "%%{init: {}}%%", "#37;#37;#123;init#58; #123;#125;#125;#37;#37;");
    expect(mermaid_task, "  two\n lines\t ", "two lines");
    expect(mermaid_task, "<b>&amp;</b>", "#60;b#62;#38;amp#59;#60;/b#62;");
    expect(mermaid_task, "a, b", "a, b");
    expect(mermaid_actor, "Me, you", "Me#44; you");
    expect(mermaid_task, "", "#45;");
    expect(mermaid_task, " \n ", "#45;");
    expect(mermaid_task, "Café ☕", "Café ☕");
}

static void test_xml_escaping(void **state)
{
    (void)state;
    expect(jd_export_xml_text, "<img src=x onerror=alert(1)>",
           "&lt;img src=x onerror=alert(1)&gt;");
    expect(jd_export_xml_text, "a & \"b\" 'c'", "a &amp; &quot;b&quot; &#39;c&#39;");
    expect(jd_export_xml_text, "l1\nl2\tx", "l1&#10;l2&#9;x");
    expect(jd_export_xml_text, "bell\x07 esc\x1b", "bell esc");
    expect(jd_export_xml_text, "nonchar\xef\xbf\xbe!", "nonchar!");
    expect(jd_export_xml_text, "]]>", "]]&gt;");
}

/* A two-stage map with one persona; every user string is hostile. */
static const char doc_text[] =
    "{\"format\":\"journeyd.map/1\",\"generated_at\":\"2026-01-01T00:00:00Z\","
    "\"filters\":{\"min_evidence\":3},"
    "\"map\":{\"id\":1,\"slug\":\"m\",\"name\":\"Map <script>alert(1)</script>\",\"goal\":\"g & "
    "h\"},"
    "\"personas\":[{\"id\":7,\"slug\":\"p\",\"name\":\"title: Boss; "
    "#1\",\"description\":\"<i>d</i>\"}],"
    "\"stages\":[{\"id\":10,\"slug\":\"s1\",\"name\":\"Look: around\"},"
    "{\"id\":11,\"slug\":\"s2\",\"name\":\"=cmd|' /C calc'!A0\"}],"
    "\"touchpoints\":[{\"id\":20,\"slug\":\"t\",\"name\":\"journey; #web: 5\",\"stages\":[10,11]}],"
    "\"obstacles\":[],\"resources\":[{\"id\":1,\"stage_id\":10,\"kind\":\"process\",\"name\":\"<b>"
    "ops</b>\",\"owner\":\"\"}],"
    "\"stage_metrics\":{\"sessions\":2,\"stages\":[{\"stage_id\":10,\"share_reached\":1,\"drop_"
    "off\":0.5},"
    "{\"stage_id\":11,\"share_reached\":0.5,\"drop_off\":null}]},"
    "\"conversion\":{\"converted\":0,\"touches_median\":null,\"distribution\":[]},"
    "\"cells\":["
    "{\"id\":\"p7-s10\",\"n\":4,\"respondents\":4,\"thin\":false,"
    " \"emotion\":{\"n\":4,\"mean\":3.5,\"sd\":1.29,\"ci95\":[1.45,5.55],\"distribution\":[0,1,1,1,"
    "1]},"
    " \"goal\":{\"n\":0,\"reached\":0,\"rate\":null},"
    " \"obstacles\":[{\"id\":3,\"slug\":\"o\",\"name\":\"<img src=x "
    "onerror=alert(2)>\",\"count\":2,\"share\":0.5}],"
    " \"actions\":[{\"text\":\"+SUM(1)\",\"count\":1}],"
    " \"quotes\":[{\"text\":\"<img src=x "
    "onerror=alert(1)>\",\"evidence\":\"answer:5\",\"source\":\"survey\",\"at\":\"2026-01-01\"}],"
    " \"evidence\":[\"answer:5\",\"answer:6\"]},"
    "{\"id\":\"p7-s10-t20\",\"n\":4,\"respondents\":4,\"thin\":false,"
    " \"emotion\":{\"n\":4,\"mean\":3.5,\"sd\":1.29,\"ci95\":[1.45,5.55],\"distribution\":[0,1,1,1,"
    "1]},"
    " \"goal\":{\"n\":0,\"reached\":0,\"rate\":null},\"obstacles\":[],\"actions\":[],\"quotes\":[],"
    " \"evidence\":[\"answer:5\"]},"
    "{\"id\":\"p7-s11\",\"n\":1,\"respondents\":1,\"thin\":true,"
    " \"emotion\":{\"n\":1,\"mean\":1.2,\"sd\":null,\"ci95\":null,\"distribution\":[1,0,0,0,0]},"
    " \"goal\":{\"n\":1,\"reached\":1,\"rate\":1},\"obstacles\":[],\"actions\":[],\"quotes\":[],"
    "\"evidence\":[]},"
    "{\"id\":\"p7-s11-t20\",\"n\":1,\"respondents\":1,\"thin\":true,"
    " \"emotion\":{\"n\":1,\"mean\":1.2,\"sd\":null,\"ci95\":null,\"distribution\":[1,0,0,0,0]},"
    " \"goal\":{\"n\":1,\"reached\":1,\"rate\":1},\"obstacles\":[],\"actions\":[],\"quotes\":[],"
    "\"evidence\":[]}"
    "]}";

static char *render(const char *format, const char *persona, bool want_ok)
{
    json_error_t jerr;
    json_t *doc = json_loads(doc_text, 0, &jerr);
    if (!doc)
        fail_msg("fixture JSON: %s at %d", jerr.text, jerr.column);
    jd_buf out;
    jd_buf_init(&out);
    char err[200] = "";
    bool ok = jd_export_render(format, doc, persona, &out, err, sizeof(err));
    json_decref(doc);
    if (ok != want_ok)
        fail_msg("render %s: ok=%d, err=%s", format, ok, err);
    if (!ok) {
        assert_true(err[0] != '\0');
        jd_buf_free(&out);
        return NULL;
    }
    jd_buf_append(&out, "", 1);
    assert_true(jd_buf_ok(&out));
    return out.data;
}

static void test_mermaid_file(void **state)
{
    (void)state;
    char *m = render("mermaid", "p", true);
    assert_non_null(strstr(m, "title: \"Map <script>alert(1)</script>: title: Boss; #1\"\n"));
    assert_non_null(strstr(m, "\njourney\n    section Look#58; around\n"));
    assert_non_null(
        strstr(m, "        #106;ourney#59; #35;web#58; 5: 4: #116;itle#58; Boss#59; #35;1\n"));
    /* 1.2 rounds to score 1; the second section name keeps its '|' and '!' */
    assert_non_null(
        strstr(m, "    section =cmd|' /C calc'!A0\n        #106;ourney#59; #35;web#58; 5: 1: "));
    free(m);
    m = render("mermaid", NULL, true); /* the all view: no pall cells in this document */
    assert_null(strstr(m, ": 4: "));
    free(m);
}

static void test_csv_files(void **state)
{
    (void)state;
    char *c = render("csv", NULL, true);
    assert_non_null(strstr(c, "cell_id,persona,persona_name,stage,"));
    assert_non_null(strstr(c, "\"'=cmd|' /C calc'!A0\""));
    assert_non_null(strstr(c, ",actions,stage,\"'+SUM(1) (1)\","));
    assert_non_null(strstr(c, "\"\"\"<img src=x onerror=alert(1)>\"\" [answer:5]\""));
    assert_null(strstr(c, ",=cmd"));
    assert_non_null(strstr(c, "\r\n"));
    free(c);
    c = render("csv-grid", "p", true);
    const char *head = "title: Boss; #1,Look: around,\"'=cmd|' /C calc'!A0\"\r\n";
    assert_true(strncmp(c, head, strlen(head)) == 0);
    free(c);
}

static void test_drawio_escaping(void **state)
{
    (void)state;
    char *d = render("drawio", NULL, true);
    assert_non_null(strstr(d, "<mxCell id=\"0\"/>"));
    assert_non_null(strstr(d, "<mxCell id=\"1\" parent=\"0\"/>"));
    assert_non_null(strstr(d, "name=\"title: Boss; #1\""));
    assert_non_null(strstr(d, "&lt;img src=x onerror=alert(2)&gt;"));
    assert_non_null(strstr(d, "evidence=\"answer:5 answer:6\""));
    assert_null(strstr(d, "<img"));
    assert_null(strstr(d, "<script"));
    free(d);
}

static void test_html_escaping(void **state)
{
    (void)state;
    char *h = render("html", NULL, true);
    assert_non_null(strstr(h, "<blockquote>&lt;img src=x onerror=alert(1)&gt;</blockquote>"));
    assert_non_null(strstr(h, "Map &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(h, "&lt;b&gt;ops&lt;/b&gt;"));
    assert_non_null(strstr(h, "@page{size:A3 landscape"));
    assert_non_null(strstr(h, "tabindex=\"0\" title=\"Source: answer:5"));
    assert_non_null(strstr(h, "class=\"thin\""));
    assert_null(strstr(h, "<img"));
    assert_null(strstr(h, "<script"));
    assert_null(strstr(h, "<i>"));
    assert_null(strstr(h, "http://"));
    free(h);
}

static void test_errors(void **state)
{
    (void)state;
    assert_null(render("pdf", NULL, false));
    assert_null(render("html", "nobody", false));
    char *j = render("json", NULL, true);
    assert_non_null(strstr(j, "\"format\": \"journeyd.map/1\""));
    free(j);
    json_t *bad = json_pack("{s:s}", "format", "other/1");
    jd_buf out;
    jd_buf_init(&out);
    char err[100] = "";
    assert_false(jd_export_render("csv", bad, NULL, &out, err, sizeof(err)));
    assert_non_null(strstr(err, "journeyd.map/1"));
    json_decref(bad);
    assert_null(render("diff-html", NULL, false)); /* a map document is not a diff */
    json_t *diff =
        json_loads("{\"format\":\"journeyd.map-diff/1\",\"map_name\":\"<b>m</b>\","
                   "\"v1\":{\"version\":1},\"v2\":{\"version\":2},\"cells\":[{\"id\":\"p1-s2\","
                   "\"persona\":\"<img src=x>\",\"stage\":\"s\",\"touchpoint\":null,"
                   "\"n\":{\"v1\":1,\"v2\":3,\"change\":2},\"emotion\":{\"v1\":2,\"v2\":4,"
                   "\"change\":2,\"welch_t\":3.1,\"df\":2.5,\"p\":0.04,\"significant\":true},"
                   "\"obstacles_new\":[],\"obstacles_resolved\":[]}]}",
                   0, NULL);
    assert_non_null(diff);
    jd_buf_reset(&out);
    assert_true(jd_export_render("diff-html", diff, NULL, &out, err, sizeof(err)));
    jd_buf_append(&out, "", 1);
    assert_non_null(strstr(out.data, "&lt;img src=x&gt;"));
    assert_non_null(strstr(out.data, "&lt;b&gt;m&lt;/b&gt;: version 1 → 2"));
    assert_non_null(strstr(out.data, "p = 0.04 · significant"));
    assert_null(strstr(out.data, "<img"));
    json_decref(diff);
    jd_buf_free(&out);
    assert_string_equal(jd_export_extension("mermaid"), "mmd");
    assert_null(jd_export_content_type("pdf"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_quoting_and_injection_guard),
        cmocka_unit_test(test_mermaid_escaping),
        cmocka_unit_test(test_xml_escaping),
        cmocka_unit_test(test_mermaid_file),
        cmocka_unit_test(test_csv_files),
        cmocka_unit_test(test_drawio_escaping),
        cmocka_unit_test(test_html_escaping),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
