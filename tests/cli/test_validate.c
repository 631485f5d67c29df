/* cli.validate: the CLI's pure input checks (cli.h), which decide exit codes 1 and 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <cli/cli.h>
#include <proto/proto.h>

static void test_org(void **state)
{
    (void)state;
    assert_true(cli_valid_org("comune-latina"));
    assert_true(cli_valid_org("a"));
    assert_true(cli_valid_org("cpia-1"));
    assert_true(cli_valid_org("abcdefghijklmnopqrstuvwxyz012345"));   /* 32 */
    assert_false(cli_valid_org("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
    assert_false(cli_valid_org(""));
    assert_false(cli_valid_org(NULL));
    assert_false(cli_valid_org("Comune"));
    assert_false(cli_valid_org("comune_1"));
    assert_false(cli_valid_org("comune 1"));
    assert_false(cli_valid_org("comuné"));
}

static void test_role(void **state)
{
    (void)state;
    assert_int_equal(cli_role_parse("comune"), PROTO_ROLE_COMUNE);
    assert_int_equal(cli_role_parse("cpia"), PROTO_ROLE_CPIA);
    assert_int_equal(cli_role_parse("cpi"), PROTO_ROLE_CPI);
    assert_int_equal(cli_role_parse("prefettura"), PROTO_ROLE_PREFETTURA);
    assert_int_equal(cli_role_parse("coop"), PROTO_ROLE_COOP);
    assert_int_equal(cli_role_parse("coord"), PROTO_ROLE_COORD);
    assert_int_equal(cli_role_parse("Comune"), 0);
    assert_int_equal(cli_role_parse("sindaco"), 0);
    assert_int_equal(cli_role_parse(""), 0);
    assert_int_equal(cli_role_parse(NULL), 0);
}

static void test_url(void **state)
{
    (void)state;
    assert_true(cli_valid_url("tcp://127.0.0.1:7401"));
    assert_true(cli_valid_url("tcp://node-1.comune.example.it:65535"));
    assert_true(cli_valid_url("tcp://[::1]:1"));
    assert_true(cli_valid_url("tcp://[fe80::1]:7401"));
    assert_false(cli_valid_url("tcp://127.0.0.1"));
    assert_false(cli_valid_url("tcp://127.0.0.1:"));
    assert_false(cli_valid_url("tcp://127.0.0.1:0"));
    assert_false(cli_valid_url("tcp://127.0.0.1:65536"));
    assert_false(cli_valid_url("tcp://127.0.0.1:12a"));
    assert_false(cli_valid_url("tcp://:7401"));
    assert_false(cli_valid_url("tcp://[]:7401"));
    assert_false(cli_valid_url("tcp://[::1]7401"));
    assert_false(cli_valid_url("tcp://a b:1"));
    assert_false(cli_valid_url("http://host:80"));
    assert_false(cli_valid_url("ipc://control.sock"));
    assert_false(cli_valid_url(""));
    assert_false(cli_valid_url(NULL));
}

static void test_date(void **state)
{
    (void)state;
    assert_true(cli_valid_date("2025-12-31"));
    assert_true(cli_valid_date("2024-02-29"));
    assert_true(cli_valid_date("2000-02-29"));
    assert_false(cli_valid_date("1900-02-29"));
    assert_false(cli_valid_date("2025-02-29"));
    assert_false(cli_valid_date("2025-04-31"));
    assert_false(cli_valid_date("2025-13-01"));
    assert_false(cli_valid_date("2025-00-10"));
    assert_false(cli_valid_date("2025-1-01"));
    assert_false(cli_valid_date("25-01-01"));
    assert_false(cli_valid_date("2025/01/01"));
    assert_false(cli_valid_date("1899-12-31"));
    assert_false(cli_valid_date("2201-01-01"));
    assert_false(cli_valid_date("2025-01-01x"));
    assert_false(cli_valid_date(NULL));
}

static void test_text(void **state)
{
    (void)state;
    assert_true(cli_valid_text("Comune di Latina", 64));
    assert_true(cli_valid_text("Città", 64));
    assert_false(cli_valid_text("", 64));
    assert_false(cli_valid_text("a\nb", 64));
    assert_false(cli_valid_text("a\tb", 64));
    assert_false(cli_valid_text("abcd", 3));
    assert_false(cli_valid_text(NULL, 3));
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t b[4];
    char s[9];
    assert_true(cli_hex_decode("00ff7Aa0", b, 4));
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(b[2], 0x7a);
    assert_int_equal(b[3], 0xa0);
    cli_hex_encode(b, 4, s);
    assert_string_equal(s, "00ff7aa0");
    assert_false(cli_hex_decode("00ff7a", b, 4));
    assert_false(cli_hex_decode("00ff7aa0b", b, 4));
    assert_false(cli_hex_decode("00ff7ag0", b, 4));
    assert_false(cli_hex_decode(NULL, b, 4));
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
        cmocka_unit_test(test_org),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
