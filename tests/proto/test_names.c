/* proto.names: the shared rules for names and values (proto.h, "Names and values"). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <proto/proto.h>

#define S(x) (x), strlen(x)

static void org_ids(void **state)
{
    (void)state;
    assert_true(proto_org_valid(S("comune-latina")));
    assert_true(proto_org_valid(S("cpia-1")));
    assert_true(proto_org_valid(S("abcdefghijklmnopqrstuvwxyz012345")));   /* 32 */
    assert_false(proto_org_valid(S("abcdefghijklmnopqrstuvwxyz0123456"))); /* 33 */
    assert_false(proto_org_valid(S("")));
    assert_false(proto_org_valid(S("Comune")));
    assert_false(proto_org_valid(S("comune_1")));
    assert_false(proto_org_valid(NULL, 0));
    assert_false(proto_org_valid("cpia\0x", 6)); /* a NUL inside */
    assert_true(proto_org_valid(S("a")));
    assert_false(proto_org_valid(S("comune 1")));
    assert_false(proto_org_valid(S("comun\xc3\xa9")));
}

static void scope_names(void **state)
{
    (void)state;
    assert_true(proto_scope_name_valid(S("anagrafica")));
    assert_true(proto_scope_name_valid(S("piano_2")));
    assert_false(proto_scope_name_valid(S("Lingua")));
    assert_false(proto_scope_name_valid(S("lingua.livello")));
    assert_false(proto_scope_name_valid(S("")));
}

static void roles_bases_access(void **state)
{
    (void)state;
    const char *roles[] = { "comune", "cpia", "cpi", "prefettura", "coop", "coord" };
    for (unsigned i = 0; i < 6; i++) {
        assert_int_equal(proto_role_parse(S(roles[i])), i + 1);
        assert_string_equal(proto_role_name(i + 1), roles[i]);
    }
    assert_int_equal(proto_role_parse(S("admin")), 0);
    assert_int_equal(proto_role_parse(S("")), 0);
    assert_int_equal(proto_role_parse(S("comunex")), 0);
    assert_int_equal(proto_role_parse(S("Comune")), 0);
    assert_int_equal(proto_role_parse(NULL, 0), 0);
    assert_null(proto_role_name(0));
    assert_null(proto_role_name(7));

    assert_int_equal(proto_basis_parse(S("public-task")), PROTO_BASIS_PUBLIC_TASK);
    assert_int_equal(proto_basis_parse(S("explicit-consent")), PROTO_BASIS_EXPLICIT_CONSENT);
    assert_int_equal(proto_basis_parse(S("consensus")), 0);
    assert_string_equal(proto_basis_name(PROTO_BASIS_LEGAL_OBLIGATION), "legal-obligation");
    assert_null(proto_basis_name(0));

    uint8_t a = 99;
    assert_true(proto_access_parse(S("write"), &a));
    assert_int_equal(a, PROTO_ACCESS_WRITE);
    assert_true(proto_access_parse(S("read"), &a));
    assert_int_equal(a, PROTO_ACCESS_READ);
    assert_false(proto_access_parse(S("admin"), &a));
    assert_int_equal(a, PROTO_ACCESS_READ); /* untouched on failure */
    assert_string_equal(proto_access_name(PROTO_ACCESS_NONE), "none");
}

static void urls(void **state)
{
    (void)state;
    assert_true(proto_url_valid(S("tcp://127.0.0.1:7000")));
    assert_true(proto_url_valid(S("tcp://node.comune.example:65535")));
    assert_true(proto_url_valid(S("tcp://[::1]:7000")));
    assert_false(proto_url_valid(S("tcp://127.0.0.1:0")));
    assert_false(proto_url_valid(S("tcp://127.0.0.1:65536")));
    assert_false(proto_url_valid(S("tcp://127.0.0.1")));
    assert_false(proto_url_valid(S("tcp://:7000")));
    assert_false(proto_url_valid(S("tcp://a b:7000")));
    assert_false(proto_url_valid(S("tcp://[::1:7000")));
    assert_false(proto_url_valid(S("ipc:///tmp/x")));
    assert_false(proto_url_valid(S("tcp://host:7000x")));
    char long_url[300] = "tcp://";
    memset(long_url + 6, 'a', 250);
    strcpy(long_url + 256, ":1");
    assert_false(proto_url_valid(S(long_url))); /* 258 bytes */
    assert_true(proto_url_valid(S("tcp://[fe80::1]:7401")));
    assert_false(proto_url_valid(S("tcp://127.0.0.1:")));
    assert_false(proto_url_valid(S("tcp://127.0.0.1:12a")));
    assert_false(proto_url_valid(S("tcp://[]:7401")));
    assert_false(proto_url_valid(S("tcp://[::1]7401")));
    assert_false(proto_url_valid(S("http://host:80")));
    assert_false(proto_url_valid(S("")));
    assert_false(proto_url_valid(NULL, 0));
}

static void wildcard_urls(void **state)
{
    (void)state;
    assert_true(proto_url_wildcard(S("tcp://0.0.0.0:7401")));
    assert_true(proto_url_wildcard(S("tcp://[::]:7401")));
    assert_false(proto_url_wildcard(S("tcp://127.0.0.1:7401")));
    assert_false(proto_url_wildcard(S("tcp://10.0.0.5:7401")));
    assert_false(proto_url_wildcard(S("tcp://[::1]:7401")));
    assert_false(proto_url_wildcard(S("tcp://0.0.0.01:7401"))); /* another host */
    assert_false(proto_url_wildcard(S("tcp://0.0.0.0:")));      /* no port: not even a URL */
    assert_false(proto_url_wildcard("tcp://0.0.0.0:7401", 10)); /* only its first len bytes */
    assert_false(proto_url_wildcard(NULL, 0));
}

static void text(void **state)
{
    (void)state;
    assert_true(proto_text_valid(S("Aïcha Ben Salah"), 64));
    assert_true(proto_text_valid(S(" x "), 64));
    assert_false(proto_text_valid(S(""), 64));
    assert_false(proto_text_valid(S(" "), 64));
    assert_false(proto_text_valid(S("   "), 64));
    assert_false(proto_text_valid(S("two\nlines"), 64));
    assert_false(proto_text_valid(S("tab\there"), 64));
    assert_false(proto_text_valid(S("del\x7f"), 64));
    assert_false(proto_text_valid(S("c1 \xc2\x85"), 64));  /* U+0085, a C1 control */
    assert_false(proto_text_valid(S("\xc0\xaf"), 64));     /* overlong '/' */
    assert_false(proto_text_valid(S("\xed\xa0\x80"), 64)); /* a surrogate */
    assert_false(proto_text_valid(S("\xe2\x82"), 64));     /* truncated */
    assert_false(proto_text_valid(S("abcd"), 3));
    assert_true(proto_text_valid(S("abc"), 3));
    assert_false(proto_text_valid(NULL, 0, 3));
    assert_true(proto_utf8_valid(S("")));
}

static void dates(void **state)
{
    (void)state;
    proto_date d = { 0, 0, 0 };
    assert_int_equal(proto_date_parse(S("2026-12-06"), &d), PROTO_OK);
    assert_int_equal(d.year, 2026);
    assert_int_equal(d.month, 12);
    assert_int_equal(d.day, 6);
    assert_int_equal(proto_date_parse(S("1950-01-01"), &d), PROTO_OK);
    assert_int_equal(proto_date_parse(S("2024-02-29"), &d), PROTO_OK);
    assert_int_equal(proto_date_parse(S("2000-02-29"), &d), PROTO_OK);
    assert_int_equal(proto_date_parse(S("1900-02-29"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-02-29"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-02-31"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-04-31"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-13-01"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-00-10"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-01-00"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("1899-12-31"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2201-01-01"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-1-01"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("2026-01-01x"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("06/12/2026"), &d), PROTO_EVALUE);
    assert_int_equal(proto_date_parse(S("+026-01-01"), &d), PROTO_EVALUE);
    assert_int_equal(d.year, 2000); /* untouched by the refusals */
    assert_int_equal(proto_date_parse(NULL, 0, &d), PROTO_EINVAL);
}

static uint64_t day_end(const char *text)
{
    proto_date d;
    assert_int_equal(proto_date_parse(S(text), &d), PROTO_OK);
    return proto_rome_day_end_ms(&d);
}

static void rome(void **state)
{
    (void)state;
    /* 2026: CEST from 29 March 01:00 UTC to 25 October 01:00 UTC */
    assert_int_equal(proto_rome_offset_min(UINT64_C(1774745999999)), 60);
    assert_int_equal(proto_rome_offset_min(UINT64_C(1774746000000)), 120);
    assert_int_equal(proto_rome_offset_min(UINT64_C(1792889999999)), 120);
    assert_int_equal(proto_rome_offset_min(UINT64_C(1792890000000)), 60);
    /* the last millisecond of a day in Rome */
    assert_true(day_end("2026-12-06") == UINT64_C(1796597999999)); /* 22:59:59.999Z */
    assert_true(day_end("2026-07-01") == UINT64_C(1782943199999)); /* 21:59:59.999Z */
    assert_true(day_end("2026-03-28") == UINT64_C(1774738799999)); /* CET the next midnight */
    assert_true(day_end("2026-03-29") == UINT64_C(1774821599999)); /* CEST the next midnight */
    assert_true(day_end("2026-12-31") == UINT64_C(1798757999999)); /* across the year */
    assert_true(day_end("1950-01-01") == 0);                       /* before the epoch */
    assert_true(day_end("1969-12-31") == 0);
    proto_date d;
    assert_int_equal(proto_date_parse(S("2026-10-25"), &d), PROTO_OK);
    assert_true(proto_rome_day_start_ms(&d) == UINT64_C(1792879200000)); /* 22:00Z the day before */
    proto_civil c;
    proto_rome_civil(UINT64_C(1796560171123), &c); /* 2026-12-06T12:29:31.123Z */
    assert_int_equal(c.year, 2026);
    assert_int_equal(c.month, 12);
    assert_int_equal(c.day, 6);
    assert_int_equal(c.hour, 13);
    assert_int_equal(c.minute, 29);
    assert_int_equal(c.second, 31);
    assert_int_equal(c.ms, 123);
    assert_int_equal(c.offset_min, 60);
    proto_rome_civil(UINT64_C(1792889999999), &c); /* 00:59:59.999Z on the last CEST morning */
    assert_int_equal(c.hour, 2);
    assert_int_equal(c.minute, 59);
    assert_int_equal(c.offset_min, 120);
}

/* The kinds of version 5 by name (PROTOCOL.md, "Kinds"): 1 to 26, nothing else; the header
 * kinds 1 to 3 (PROTOCOL.md, "Headers"). */
static void kind_names(void **state)
{
    (void)state;
    assert_int_equal(PROTO_VERSION, 5);
    assert_string_equal(proto_kind_name(PROTO_K_ACCESS_GRANT), "access-grant");
    assert_int_equal(PROTO_K_ACCESS_GRANT, 21);
    assert_string_equal(proto_kind_name(PROTO_K_ACCESS_EPOCH), "access-epoch");
    assert_int_equal(PROTO_K_ACCESS_EPOCH, 24);
    assert_string_equal(proto_kind_name(PROTO_K_ACCESS_NARROW), "access-narrow");
    assert_int_equal(PROTO_K_ACCESS_NARROW, 25);
    assert_int_equal(PROTO_BODY_ACCESS_NARROW, PROTO_K_ACCESS_NARROW);
    assert_string_equal(proto_kind_name(PROTO_K_GRANT_BODY), "grant-body");
    assert_string_equal(proto_kind_name(PROTO_K_FORGET_PLAIN), "forget-plaintext");
    assert_string_equal(proto_kind_name(PROTO_K_NOTE_PLAIN), "note-plaintext");
    assert_int_equal(PROTO_K_NOTE_PLAIN, 26);
    assert_string_equal(proto_kind_name(27), "unknown");
    assert_string_equal(proto_kind_name(0), "unknown");
    assert_string_equal(proto_kind_name(UINT32_MAX), "unknown");
    for (unsigned k = 1; k <= 26; k++)
        assert_string_not_equal(proto_kind_name(k), "unknown");
    assert_int_equal(PROTO_HDR_DELTA, 1);
    assert_int_equal(PROTO_HDR_KEY_GRANT, 2);
    assert_int_equal(PROTO_HDR_NOTE, 3);
    assert_int_equal(PROTO_NOTE_WITHDRAWAL, 1);
    assert_int_equal(PROTO_NOTE_DROP, 2);
}

static void hex(void **state)
{
    (void)state;
    const uint8_t in[4] = { 0x00, 0xab, 0x7f, 0xff };
    char out[9];
    proto_hex_encode(in, 4, out);
    assert_string_equal(out, "00ab7fff");
    uint8_t back[4] = { 0 };
    assert_true(proto_hex_decode(S("00AB7fff"), back, 4));
    assert_memory_equal(back, in, 4);
    assert_false(proto_hex_decode(S("00ab7ff"), back, 4));    /* short */
    assert_false(proto_hex_decode(S("00ab7fff00"), back, 4)); /* long */
    assert_false(proto_hex_decode(S("00ab7fgf"), back, 4));   /* not hex */
    assert_false(proto_hex_decode(S("00:b7fff"), back, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(org_ids),
        cmocka_unit_test(scope_names),
        cmocka_unit_test(roles_bases_access),
        cmocka_unit_test(urls),
        cmocka_unit_test(wildcard_urls),
        cmocka_unit_test(text),
        cmocka_unit_test(dates),
        cmocka_unit_test(rome),
        cmocka_unit_test(hex),
        cmocka_unit_test(kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
