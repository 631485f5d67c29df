/* crdt.cc: dots and causal contexts (SPEC.md I4), checked against a bitmap model. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "crdt/crdt.h"
#include "crdt_testutil.h"
#include "test_rng.h"

#define NORIG 4
#define NCTR 64 /* model counters 1..64 */

/* A set of dots over origins 0..NORIG-1 and counters 1..NCTR: bit c-1 of m[o]. */
typedef struct model {
    uint64_t m[NORIG];
} model;

static void add_ok(crdt_cc *cc, uint8_t o, uint64_t c)
{
    crdt_dot d = tu_dot(o, c);
    assert_int_equal(crdt_cc_add(cc, &d), CRDT_OK);
}

static void assert_canonical(const crdt_cc *cc)
{
    char why[160];
    if (!tu_cc_canonical(cc, why, sizeof(why)))
        fail_msg("context not canonical: %s", why);
}

/* The context holds exactly the model's dots, and its arrays are the canonical form. */
static void assert_matches(const crdt_cc *cc, const model *m)
{
    assert_canonical(cc);
    size_t nvv = 0, ncloud = 0;
    for (uint8_t o = 0; o < NORIG; o++) {
        crdt_origin org = tu_origin(o);
        uint64_t prefix = 0, top = 0;
        while (prefix < NCTR && (m->m[o] >> prefix & 1))
            prefix++;
        for (uint64_t c = 1; c <= NCTR; c++) {
            crdt_dot d = tu_dot(o, c);
            bool want = m->m[o] >> (c - 1) & 1;
            if (crdt_cc_contains(cc, &d) != want)
                fail_msg("origin %u counter %llu: contains %d, model %d", o, (unsigned long long)c,
                    !want, want);
            if (want) {
                top = c;
                if (c > prefix)
                    ncloud++;
            }
        }
        crdt_dot beyond = tu_dot(o, NCTR + 1);
        assert_false(crdt_cc_contains(cc, &beyond));
        assert_int_equal(crdt_cc_vv_max(cc, &org), prefix);
        assert_int_equal(crdt_cc_max(cc, &org), top);
        if (prefix > 0)
            nvv++;
    }
    assert_int_equal(cc->nvv, nvv);
    assert_int_equal(cc->ncloud, ncloud);
}

static void random_model(test_rng *r, model *m)
{
    for (int o = 0; o < NORIG; o++) {
        switch (test_rng_below(r, 4)) {
        case 0:
            m->m[o] = 0;
            break;
        case 1: /* a prefix, sometimes with a few dots beyond */
            m->m[o] = (UINT64_C(1) << test_rng_below(r, 40)) - 1;
            if (test_rng_chance(r, 50))
                m->m[o] |= UINT64_C(1) << (40 + test_rng_below(r, 24));
            break;
        default:
            m->m[o] = test_rng_next(r) & test_rng_next(r);
            break;
        }
    }
}

/* Build a context holding the model's dots, added in a random order (with repeats). */
static void build(test_rng *r, crdt_cc *cc, const model *m)
{
    size_t idx[NORIG * NCTR], n = 0;
    for (size_t o = 0; o < NORIG; o++)
        for (size_t c = 1; c <= NCTR; c++)
            if (m->m[o] >> (c - 1) & 1)
                idx[n++] = o * NCTR + (c - 1);
    test_rng_shuffle(r, idx, n);
    for (size_t i = 0; i < n; i++) {
        add_ok(cc, (uint8_t)(idx[i] / NCTR), idx[i] % NCTR + 1);
        if (test_rng_chance(r, 10)) /* a repeat changes nothing */
            add_ok(cc, (uint8_t)(idx[i] / NCTR), idx[i] % NCTR + 1);
    }
}

static void test_origin_and_dot_order(void **state)
{
    (void)state;
    crdt_origin a = tu_origin(1), b = tu_origin(2);
    assert_true(crdt_origin_cmp(&a, &b) < 0);
    assert_true(crdt_origin_cmp(&b, &a) > 0);
    assert_int_equal(crdt_origin_cmp(&a, &a), 0);
    /* Bytes compare unsigned, first byte most significant. */
    crdt_origin hi = tu_origin(0), lo = tu_origin(0xff);
    hi.b[0] = 0x80;
    lo.b[0] = 0x7f;
    assert_true(crdt_origin_cmp(&lo, &hi) < 0);

    crdt_dot d1 = tu_dot(1, 5), d2 = tu_dot(1, 6), d3 = tu_dot(2, 1);
    assert_true(crdt_dot_cmp(&d1, &d2) < 0);
    assert_true(crdt_dot_cmp(&d2, &d3) < 0); /* origin before counter */
    assert_true(crdt_dot_cmp(&d3, &d1) > 0);
    assert_int_equal(crdt_dot_cmp(&d2, &d2), 0);
    crdt_dot big = tu_dot(1, UINT64_MAX);
    assert_true(crdt_dot_cmp(&d1, &big) < 0);
}

static void test_empty(void **state)
{
    (void)state;
    crdt_cc a, b;
    crdt_cc_init(&a, NULL);
    crdt_cc_init(&b, NULL);
    crdt_origin o = tu_origin(1);
    crdt_dot d = tu_dot(1, 1);
    assert_false(crdt_cc_contains(&a, &d));
    assert_int_equal(crdt_cc_max(&a, &o), 0);
    assert_int_equal(crdt_cc_vv_max(&a, &o), 0);
    assert_true(crdt_cc_equal(&a, &b));
    assert_true(crdt_cc_includes(&a, &b));
    assert_int_equal(crdt_cc_join(&a, &b), CRDT_OK);
    assert_int_equal(a.nvv + a.ncloud, 0);
    crdt_cc_fini(&a);
    crdt_cc_fini(&b);
}

static void test_add_in_order(void **state)
{
    (void)state;
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    for (uint64_t c = 1; c <= 5; c++)
        add_ok(&cc, 3, c);
    crdt_origin o = tu_origin(3), other = tu_origin(4);
    assert_int_equal(cc.nvv, 1);
    assert_int_equal(cc.ncloud, 0);
    assert_int_equal(cc.vv[0].max, 5);
    assert_int_equal(crdt_cc_max(&cc, &o), 5);
    assert_int_equal(crdt_cc_vv_max(&cc, &o), 5);
    assert_int_equal(crdt_cc_max(&cc, &other), 0);
    crdt_cc_fini(&cc);
    /* fini leaves it empty and reusable. */
    assert_int_equal(cc.nvv + cc.ncloud, 0);
    add_ok(&cc, 1, 1);
    assert_int_equal(cc.nvv, 1);
    crdt_cc_fini(&cc);
}

static void test_add_gap_then_fill(void **state)
{
    (void)state;
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    crdt_origin o = tu_origin(1);
    add_ok(&cc, 1, 1);
    add_ok(&cc, 1, 2);
    add_ok(&cc, 1, 5);
    add_ok(&cc, 1, 7);
    assert_int_equal(crdt_cc_vv_max(&cc, &o), 2);
    assert_int_equal(crdt_cc_max(&cc, &o), 7);
    assert_int_equal(cc.ncloud, 2);
    crdt_dot d3 = tu_dot(1, 3), d5 = tu_dot(1, 5);
    assert_false(crdt_cc_contains(&cc, &d3));
    assert_true(crdt_cc_contains(&cc, &d5));
    assert_canonical(&cc);
    add_ok(&cc, 1, 3); /* 3 folds in; 5 and 7 stay in the cloud (4 is missing) */
    assert_int_equal(crdt_cc_vv_max(&cc, &o), 3);
    assert_int_equal(cc.ncloud, 2);
    add_ok(&cc, 1, 4); /* 4 closes the gap: 5 folds in, 7 stays */
    assert_int_equal(crdt_cc_vv_max(&cc, &o), 5);
    assert_int_equal(cc.ncloud, 1);
    assert_int_equal(cc.cloud[0].counter, 7);
    add_ok(&cc, 1, 6);
    assert_int_equal(crdt_cc_vv_max(&cc, &o), 7);
    assert_int_equal(cc.ncloud, 0);
    assert_canonical(&cc);

    /* A dot only in the cloud (no vector entry for its origin yet). */
    crdt_origin p = tu_origin(2);
    add_ok(&cc, 2, 3);
    assert_int_equal(crdt_cc_vv_max(&cc, &p), 0);
    assert_int_equal(crdt_cc_max(&cc, &p), 3);
    assert_canonical(&cc);
    add_ok(&cc, 2, 1);
    add_ok(&cc, 2, 2);
    assert_int_equal(crdt_cc_vv_max(&cc, &p), 3);
    assert_int_equal(cc.nvv, 2);
    assert_int_equal(cc.ncloud, 0);
    /* Very large counters sit in the cloud. */
    add_ok(&cc, 2, UINT64_MAX);
    assert_int_equal(crdt_cc_max(&cc, &p), UINT64_MAX);
    assert_int_equal(crdt_cc_vv_max(&cc, &p), 3);
    crdt_cc_fini(&cc);
}

/* Every dot of several origins, added in a random order, ends as the plain vector. */
static void test_add_out_of_order_compacts(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, test_seed() ^ 0xcc01);
    for (int round = 0; round < 200; round++) {
        crdt_cc cc;
        crdt_cc_init(&cc, NULL);
        size_t n = 0, idx[NORIG * 50];
        uint64_t len[NORIG];
        for (size_t o = 0; o < NORIG; o++) {
            len[o] = test_rng_below(&r, 50) + 1;
            for (uint64_t c = 1; c <= len[o]; c++)
                idx[n++] = o * 64 + c;
        }
        test_rng_shuffle(&r, idx, n);
        for (size_t i = 0; i < n; i++)
            add_ok(&cc, (uint8_t)(idx[i] / 64), idx[i] % 64);
        assert_int_equal(cc.nvv, NORIG);
        assert_int_equal(cc.ncloud, 0);
        for (uint8_t o = 0; o < NORIG; o++) {
            crdt_origin org = tu_origin(o);
            assert_memory_equal(cc.vv[o].origin.b, org.b, CRDT_ORIGIN_LEN);
            assert_int_equal(cc.vv[o].max, len[o]);
        }
        crdt_cc_fini(&cc);
    }
}

static void test_add_invalid(void **state)
{
    (void)state;
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    add_ok(&cc, 1, 1);
    crdt_dot zero = tu_dot(1, 0);
    assert_int_equal(crdt_cc_add(&cc, &zero), CRDT_EINVAL);
    assert_int_equal(cc.nvv, 1);
    assert_int_equal(cc.vv[0].max, 1);
    assert_int_equal(cc.ncloud, 0);
    assert_false(crdt_cc_contains(&cc, &zero));
    crdt_cc_fini(&cc);
}

/* Random dot sets against the bitmap model: contains/max/vv_max, join = union, includes =
 * subset, equal = same set whatever the insertion order, copy. */
static void test_model_random(void **state)
{
    (void)state;
    test_rng r;
    uint64_t seed = test_seed();
    for (uint64_t round = 0; round < 2000; round++) {
        test_rng_seed(&r, test_case_seed(seed, 0xcc02, round));
        model ma, mb, mu;
        random_model(&r, &ma);
        random_model(&r, &mb);
        if (test_rng_chance(&r, 20))
            mb = ma;
        if (test_rng_chance(&r, 20)) /* b a subset of a */
            for (int o = 0; o < NORIG; o++)
                mb.m[o] &= ma.m[o];
        for (int o = 0; o < NORIG; o++)
            mu.m[o] = ma.m[o] | mb.m[o];

        crdt_cc a, a2, b, u, c;
        crdt_cc_init(&a, NULL);
        crdt_cc_init(&a2, NULL);
        crdt_cc_init(&b, NULL);
        crdt_cc_init(&u, NULL);
        crdt_cc_init(&c, NULL);
        build(&r, &a, &ma);
        build(&r, &a2, &ma);
        build(&r, &b, &mb);
        assert_matches(&a, &ma);
        assert_matches(&b, &mb);

        /* Same set, another insertion order: equal and byte-identical (I4). */
        assert_true(crdt_cc_equal(&a, &a2));
        assert_int_equal(a.nvv, a2.nvv);
        assert_int_equal(a.ncloud, a2.ncloud);
        if (a.nvv)
            assert_memory_equal(a.vv, a2.vv, a.nvv * sizeof(*a.vv));
        if (a.ncloud)
            assert_memory_equal(a.cloud, a2.cloud, a.ncloud * sizeof(*a.cloud));

        bool same = memcmp(&ma, &mb, sizeof(ma)) == 0;
        assert_int_equal(crdt_cc_equal(&a, &b), same);
        bool b_in_a = true, a_in_b = true;
        for (int o = 0; o < NORIG; o++) {
            b_in_a = b_in_a && (mb.m[o] & ~ma.m[o]) == 0;
            a_in_b = a_in_b && (ma.m[o] & ~mb.m[o]) == 0;
        }
        assert_int_equal(crdt_cc_includes(&a, &b), b_in_a);
        assert_int_equal(crdt_cc_includes(&b, &a), a_in_b);
        assert_true(crdt_cc_includes(&a, &a));

        /* Join is the union, in either direction, and idempotent. */
        assert_int_equal(crdt_cc_copy(&u, &a), CRDT_OK);
        assert_int_equal(crdt_cc_join(&u, &b), CRDT_OK);
        assert_matches(&u, &mu);
        assert_true(crdt_cc_includes(&u, &a));
        assert_true(crdt_cc_includes(&u, &b));
        assert_int_equal(crdt_cc_join(&u, &b), CRDT_OK);
        assert_matches(&u, &mu);
        assert_int_equal(crdt_cc_copy(&c, &b), CRDT_OK);
        assert_int_equal(crdt_cc_join(&c, &a), CRDT_OK);
        assert_true(crdt_cc_equal(&c, &u));

        /* Copy replaces what dst held and is independent of src afterwards. */
        assert_int_equal(crdt_cc_copy(&c, &b), CRDT_OK);
        assert_matches(&c, &mb);
        add_ok(&b, 3, NCTR + 5);
        assert_matches(&c, &mb);

        crdt_cc_fini(&a);
        crdt_cc_fini(&a2);
        crdt_cc_fini(&b);
        crdt_cc_fini(&u);
        crdt_cc_fini(&c);
    }
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin_and_dot_order),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_add_in_order),
        cmocka_unit_test(test_add_gap_then_fill),
        cmocka_unit_test(test_add_out_of_order_compacts),
        cmocka_unit_test(test_add_invalid),
        cmocka_unit_test(test_model_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
