/* cli.validate: the CLI's pure helpers (cli.h): the sentences of its exit codes and the times
 * it shows people (from the node's RFC 3339 text and from milliseconds). Its input checks are
 * proto's, tested in proto.names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <cli/cli.h>

static void expect_time(const char *utc, const char *want)
{
    char out[CLI_TIME_TEXT_SIZE] = "untouched";
    bool ok = cli_rome_time(utc, out, sizeof out);
    if (want == NULL) {
        if (ok)
            fail_msg("'%s' was taken as a time: '%s'", utc, out);
        assert_string_equal(out, "untouched");
        return;
    }
    if (!ok)
        fail_msg("'%s' was not taken as a time", utc);
    assert_string_equal(out, want);
}

static void test_rome_time(void **state)
{
    (void)state;
    /* winter (CET, UTC+1) and summer (CEST, UTC+2), with and without a fraction */
    expect_time("2026-12-06T12:29:31.123Z", "2026-12-06 13:29:31 CET");
    expect_time("2026-07-01T09:00:00Z", "2026-07-01 11:00:00 CEST");
    expect_time("2026-12-31T23:30:00.000Z", "2027-01-01 00:30:00 CET"); /* the next day in Rome */
    /* the changes of 2026: 29 March and 25 October at 01:00 UTC */
    expect_time("2026-03-29T00:59:59.999Z", "2026-03-29 01:59:59 CET");
    expect_time("2026-03-29T01:00:00.000Z", "2026-03-29 03:00:00 CEST");
    expect_time("2026-10-25T00:59:59Z", "2026-10-25 02:59:59 CEST");
    expect_time("2026-10-25T01:00:00Z", "2026-10-25 02:00:00 CET");
    /* anything else is not a time the node wrote */
    expect_time("2026-12-06 12:29:31Z", NULL);
    expect_time("2026-12-06T12:29:31", NULL);
    expect_time("2026-12-06T12:29:31+01:00", NULL);
    expect_time("2026-02-30T12:29:31Z", NULL);
    expect_time("2026-12-06T24:00:00Z", NULL);
    expect_time("2026-12-06T12:60:00Z", NULL);
    expect_time("2026-12-06T12:29:31.Z", NULL);
    expect_time("2026-12-06T12:29:31.1x3Z", NULL);
    expect_time("2026-12-06T1a:29:31Z", NULL);
    expect_time("1950-01-01T00:00:00Z", NULL); /* before the epoch: never a node's time */
    expect_time("", NULL);
    expect_time("-", NULL);
    expect_time(NULL, NULL);
    char small[16] = "untouched"; /* too small for the text: refused, untouched */
    assert_false(cli_rome_time("2026-12-06T12:29:31Z", small, 8));
    assert_string_equal(small, "untouched");
}

static void test_rome_time_ms(void **state)
{
    (void)state;
    char out[CLI_TIME_TEXT_SIZE] = "untouched";
    /* 2026-12-06T12:29:31.999Z: seconds cut, not rounded */
    assert_true(cli_rome_time_ms(UINT64_C(1796560171999), out, sizeof out));
    assert_string_equal(out, "2026-12-06 13:29:31 CET");
    assert_true(cli_rome_time_ms(UINT64_C(1782896400000), out, sizeof out)); /* 2026-07-01 09:00Z */
    assert_string_equal(out, "2026-07-01 11:00:00 CEST");
    assert_true(cli_rome_time_ms(0, out, sizeof out));
    assert_string_equal(out, "1970-01-01 01:00:00 CET");
    char small[16] = "untouched";
    assert_false(cli_rome_time_ms(0, small, 8));
    assert_string_equal(small, "untouched");
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(cli_strerror(CLI_OK), "done");
    assert_int_equal(CLI_EUSAGE, 1);
    assert_int_equal(CLI_EINPUT, 2);
    assert_int_equal(CLI_ENOTFOUND, 3);
    assert_int_equal(CLI_EUNREACHABLE, 4);
    assert_int_equal(CLI_EINTERNAL, 5);
    assert_string_equal(cli_strerror(99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rome_time),
        cmocka_unit_test(test_rome_time_ms),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
