/* Redaction fixture: personal data that must be masked next to numbers that must survive. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "redact.h"

static void expect(const char *in, const char *want)
{
    jd_buf b;
    jd_buf_init(&b);
    jd_redact(in, strlen(in), &b);
    if (strcmp(b.data ? b.data : "", want) != 0)
        fail_msg("redact(%s)\n got: %s\nwant: %s", in, b.data, want);
    jd_buf_free(&b);
}

static void test_masks_personal_data(void **state)
{
    (void)state;
    expect("call me on +44 20 7946 0958 please", "call me on [phone] please");
    expect("mail name@example.co.uk now", "mail [email] now");
    expect("first.last+tag@sub.example.com.", "[email].");
    expect("card 4111 1111 1111 1111 expires", "card [card] expires");
    expect("card 4111-1111-1111-1111", "card [card]");
    expect("from 192.168.10.4 today", "from [ip] today");
    expect("US number (415) 555-0123 ok", "US number [phone] ok");
    expect("(see page 12)", "(see page 12)");
    expect("ring 020 7946 0958", "ring [phone]");
    expect("ring +44 (0)20 7946 0958 now", "ring [phone] now");
}

static void test_keeps_prices_dates_and_short_numbers(void **state)
{
    (void)state;
    const char *keep[] = {
        "It cost £1,299.99 in total",
        "Delivered on 2026-11-29 at 10:30",
        "on 29/11/2026",
        "on 2026-11-29 (29/11/2026)",
        "I waited 45 minutes for 3 items",
        "version 2.5 is better",
        "order A1234567890B arrived",
        "not an address: a@b",
        "4111 1111 1111 1112 is not a valid card but 16 digits",
    };
    for (size_t i = 0; i < 8; i++)
        expect(keep[i], keep[i]);
    /* 16 digits failing Luhn are still too long for a phone number: kept. */
    expect(keep[8], keep[8]);
}

static void test_luhn(void **state)
{
    (void)state;
    assert_true(jd_redact_luhn("4111111111111111", 16));
    assert_true(jd_redact_luhn("79927398713", 11));
    assert_false(jd_redact_luhn("4111111111111112", 16));
    assert_false(jd_redact_luhn("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks_personal_data),
        cmocka_unit_test(test_keeps_prices_dates_and_short_numbers),
        cmocka_unit_test(test_luhn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
