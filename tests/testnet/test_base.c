/*
 * testnet.base: the pieces of patto-testnet that touch nothing of the world (testnet/src/
 * base.c): the one number parser, the bounded vector, the error and exit tables.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tn.h"

#include <string.h>

static void parse_whole_numbers_only(void **state)
{
    (void)state;
    uint64_t v = 77;
    static const char *const bad[] = { "", "abc", "5x", "x5", "-1", "+3", " 3", "3 ", "0x10", "1e3",
        "2m", "1.5", "18446744073709551616", "99999999999999999999999" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (tn_parse_u64(bad[k], 0, UINT64_MAX, &v) != TN_EUSAGE)
            fail_msg("\"%s\" was taken as a number", bad[k]);
        assert_int_equal(v, 77); /* untouched */
    }
    assert_int_equal(tn_parse_u64(NULL, 0, 10, &v), TN_EUSAGE);
    assert_int_equal(tn_parse_u64("0", 0, 10, &v), TN_OK);
    assert_int_equal(v, 0);
    assert_int_equal(tn_parse_u64("007", 0, 10, &v), TN_OK);
    assert_int_equal(v, 7);
    assert_int_equal(tn_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), TN_OK);
    assert_true(v == UINT64_MAX);
    /* The range, both ends. */
    assert_int_equal(tn_parse_u64("2", 2, 32, &v), TN_OK);
    assert_int_equal(tn_parse_u64("32", 2, 32, &v), TN_OK);
    assert_int_equal(tn_parse_u64("1", 2, 32, &v), TN_EUSAGE);
    assert_int_equal(tn_parse_u64("33", 2, 32, &v), TN_EUSAGE);
}

static void vector_doubles_up_to_its_maximum(void **state)
{
    (void)state;
    tn_vec v = TN_VEC_INIT(uint32_t, 100);
    tn_err err = TN_ENOMEM;
    for (uint32_t k = 0; k < 100; k++) {
        uint32_t *item = tn_vec_push(&v, &err);
        assert_non_null(item);
        assert_int_equal(err, TN_OK);
        assert_int_equal(*item, 0); /* zeroed */
        *item = k;
        assert_true(v.cap >= v.n && v.cap <= 100);
    }
    assert_int_equal(v.cap, 100); /* doubled, then clamped to the maximum */
    assert_null(tn_vec_push(&v, &err));
    assert_int_equal(err, TN_EFULL);
    assert_int_equal(v.n, 100);
    for (uint32_t k = 0; k < 100; k++)
        assert_int_equal(*TN_VEC_AT(&v, uint32_t, k), k);
    assert_int_equal(tn_vec_reserve(&v, 1), TN_EFULL);
    tn_vec_fini(&v);
    assert_null(v.items);
    assert_int_equal(v.n, 0);
    assert_int_equal(v.max, 100); /* usable again */
    assert_non_null(tn_vec_push(&v, NULL));
    tn_vec_fini(&v);
    /* A maximum of 0 holds nothing. */
    tn_vec none;
    tn_vec_init(&none, 8, 0);
    assert_null(tn_vec_push(&none, &err));
    assert_int_equal(err, TN_EFULL);
    tn_vec_fini(&none);
}

static void byte_vector_keeps_room_for_a_nul(void **state)
{
    (void)state;
    tn_vec v = TN_VEC_INIT(char, 11); /* 10 bytes of text and a NUL */
    char *at;
    size_t len;
    assert_int_equal(tn_vec_room(&v, 4, &at, &len), TN_OK);
    assert_int_equal(len, 4);
    memcpy(at, "abcd", 4);
    v.n += 4;
    assert_int_equal(tn_vec_room(&v, 100, &at, &len), TN_OK);
    assert_int_equal(len, 6); /* what is left before the NUL */
    memcpy(at, "efghij", 6);
    v.n += 6;
    ((char *)v.items)[v.n] = '\0';
    assert_string_equal(v.items, "abcdefghij");
    assert_int_equal(tn_vec_room(&v, 1, &at, &len), TN_EFULL);
    tn_vec_fini(&v);
}

static void errors_map_to_the_exit_table(void **state)
{
    (void)state;
    /* The table shared with patto (cli/README.md). */
    assert_int_equal(TN_EXIT_OK, 0);
    assert_int_equal(TN_EXIT_USAGE, 1);
    assert_int_equal(TN_EXIT_REFUSED, 2);
    assert_int_equal(TN_EXIT_NOTFOUND, 3);
    assert_int_equal(TN_EXIT_UNREACHABLE, 4);
    assert_int_equal(TN_EXIT_INTERNAL, 5);
    assert_int_equal(TN_EXIT_CHECK, 6);
    assert_int_equal(tn_exit_code(TN_OK), 0);
    assert_int_equal(tn_exit_code(TN_EUSAGE), 1);
    assert_int_equal(tn_exit_code(TN_EREFUSED), 2);
    assert_int_equal(tn_exit_code(TN_EEXIST), 2);
    assert_int_equal(tn_exit_code(TN_ENOTFOUND), 3);
    assert_int_equal(tn_exit_code(TN_EUNREACHABLE), 4);
    assert_int_equal(tn_exit_code(TN_ENOMEM), 5);
    assert_int_equal(tn_exit_code(TN_ETOOBIG), 5);
    assert_int_equal(tn_exit_code(TN_ENOTCONVERGED), 6);
    assert_int_equal(tn_exit_code(TN_EVIOLATION), 6);
    assert_int_equal(tn_exit_code(TN_ERR_COUNT), 5);
    for (int e = 0; e <= TN_ERR_COUNT; e++) {
        const char *text = tn_strerror((tn_err)e);
        assert_non_null(text);
        assert_true(text[0] != '\0');
    }
}

static void splitmix64_reference(void **state)
{
    (void)state;
    /* splitmix64 from seed 0: the first outputs of the reference implementation. */
    uint64_t s = 0;
    assert_true(tn_splitmix64(&s) == 0xe220a8397b1dcdafull);
    assert_true(tn_splitmix64(&s) == 0x6e789e6aa1b965f4ull);
    assert_true(tn_splitmix64(&s) == 0x06c45d188009454full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_whole_numbers_only),
        cmocka_unit_test(vector_doubles_up_to_its_maximum),
        cmocka_unit_test(byte_vector_keeps_room_for_a_nul),
        cmocka_unit_test(errors_map_to_the_exit_table),
        cmocka_unit_test(splitmix64_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
