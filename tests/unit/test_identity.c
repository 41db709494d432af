/* Signed identity tokens: a good token verifies; an expired, tampered, unsigned or wrongly
 * signed one is refused with the right reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "identity.h"

#define NOW 1800000000

static void test_round_trip_and_refusals(void **state)
{
    (void)state;
    char token[1024];
    jd_identity id;
    assert_true(jd_identity_sign("user-42", NOW + 60, "s3cret", token, sizeof(token)));
    assert_int_equal(jd_identity_verify(token, "s3cret", NOW, &id), JD_IDENTITY_OK);
    assert_string_equal(id.subject, "user-42");
    assert_int_equal(jd_identity_verify(token, "other", NOW, &id), JD_IDENTITY_BAD_SIGNATURE);
    assert_int_equal(jd_identity_verify(token, "s3cret", NOW + 61, &id), JD_IDENTITY_EXPIRED);
    assert_int_equal(jd_identity_verify(token, "", NOW, &id), JD_IDENTITY_NO_SECRET);
    /* Tamper with the payload: the signature no longer matches. */
    char *dot = strchr(token, '.');
    dot[2] = dot[2] == 'A' ? 'B' : 'A';
    assert_int_equal(jd_identity_verify(token, "s3cret", NOW, &id), JD_IDENTITY_BAD_SIGNATURE);
    assert_int_equal(jd_identity_verify("abc", "s3cret", NOW, &id), JD_IDENTITY_MALFORMED);
    assert_int_equal(jd_identity_verify("a.b.c.d", "s3cret", NOW, &id), JD_IDENTITY_MALFORMED);
    /* alg "none" with an empty signature is refused. */
    assert_int_equal(jd_identity_verify("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.",
                                        "s3cret", NOW, &id),
                     JD_IDENTITY_BAD_SIGNATURE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip_and_refusals)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
