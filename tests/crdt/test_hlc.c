/* crdt.hlc: hybrid logical clocks (SPEC.md I3). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "crdt/crdt.h"
#include "test_rng.h"

static crdt_hlc hlc(uint64_t wall, uint16_t logical)
{
    crdt_hlc h = { wall, logical };
    return h;
}

static void assert_hlc(const crdt_hlc *h, uint64_t wall, uint16_t logical)
{
    assert_int_equal(h->wall, wall);
    assert_int_equal(h->logical, logical);
}

static void test_cmp(void **state)
{
    (void)state;
    crdt_hlc a = hlc(10, 5), b = hlc(10, 6), c = hlc(11, 0), d = hlc(10, 5);
    assert_true(crdt_hlc_cmp(&a, &b) < 0);
    assert_true(crdt_hlc_cmp(&b, &a) > 0);
    assert_true(crdt_hlc_cmp(&b, &c) < 0); /* wall first, whatever the logical part */
    assert_true(crdt_hlc_cmp(&c, &b) > 0);
    assert_int_equal(crdt_hlc_cmp(&a, &d), 0);
    crdt_hlc big = hlc(CRDT_HLC_WALL_MAX, 0), small = hlc(0, CRDT_HLC_LOGICAL_MAX);
    assert_true(crdt_hlc_cmp(&small, &big) < 0);
    assert_true(crdt_hlc_cmp(&big, &small) > 0);
}

static void test_send_basic(void **state)
{
    (void)state;
    crdt_hlc clock = { 0, 0 }, out;
    assert_int_equal(crdt_hlc_send(&clock, 1000, &out), CRDT_OK);
    assert_hlc(&out, 1000, 0);
    assert_hlc(&clock, 1000, 0);
    /* Same millisecond: the logical part counts. */
    assert_int_equal(crdt_hlc_send(&clock, 1000, &out), CRDT_OK);
    assert_hlc(&out, 1000, 1);
    /* Physical time moves on: the logical part restarts. */
    assert_int_equal(crdt_hlc_send(&clock, 1005, &out), CRDT_OK);
    assert_hlc(&out, 1005, 0);
    assert_hlc(&clock, 1005, 0);
}

static void test_send_clock_backwards(void **state)
{
    (void)state;
    crdt_hlc clock = { 0, 0 }, out, prev;
    assert_int_equal(crdt_hlc_send(&clock, 5000, &prev), CRDT_OK);
    /* The wall clock steps back by a second: timestamps keep increasing. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(crdt_hlc_send(&clock, 4000, &out), CRDT_OK);
        assert_true(crdt_hlc_cmp(&out, &prev) > 0);
        assert_int_equal(out.wall, 5000);
        assert_int_equal(out.logical, i + 1);
        prev = out;
    }
    /* And back to 0. */
    assert_int_equal(crdt_hlc_send(&clock, 0, &out), CRDT_OK);
    assert_true(crdt_hlc_cmp(&out, &prev) > 0);
}

/* Random physical times, jumping forwards and backwards: every timestamp is strictly greater
 * than the one before, and never behind the physical time given. */
static void test_send_monotone_random(void **state)
{
    (void)state;
    test_rng r;
    uint64_t seed = test_seed();
    test_rng_seed(&r, seed ^ 0x41c);
    crdt_hlc clock = { 0, 0 }, out, prev = { 0, 0 };
    uint64_t now = 1700000000000ULL;
    for (int i = 0; i < 200000; i++) {
        uint64_t step = test_rng_below(&r, 8);
        if (step == 0 && now > 5000)
            now -= test_rng_below(&r, 5000); /* clock stepped back */
        else if (step == 1)
            now += test_rng_below(&r, 3);
        crdt_err err = crdt_hlc_send(&clock, now, &out);
        if (err != CRDT_OK || crdt_hlc_cmp(&out, &prev) <= 0 || out.wall < now
            || crdt_hlc_cmp(&clock, &out) != 0) {
            fail_msg("seed 0x%016llx step %d: now %llu prev (%llu,%u) out (%llu,%u) err %d",
                (unsigned long long)seed, i, (unsigned long long)now, (unsigned long long)prev.wall,
                prev.logical, (unsigned long long)out.wall, out.logical, (int)err);
        }
        prev = out;
    }
}

static void test_send_logical_overflow(void **state)
{
    (void)state;
    crdt_hlc clock = hlc(1000, CRDT_HLC_LOGICAL_MAX - 1), out;
    assert_int_equal(crdt_hlc_send(&clock, 1000, &out), CRDT_OK);
    assert_hlc(&out, 1000, CRDT_HLC_LOGICAL_MAX);
    /* The logical part would pass 65535: the wall part moves one millisecond ahead. */
    assert_int_equal(crdt_hlc_send(&clock, 1000, &out), CRDT_OK);
    assert_hlc(&out, 1001, 0);
    assert_hlc(&clock, 1001, 0);
    /* The physical clock behind (999): still strictly increasing, never wrapping. */
    crdt_hlc prev = out;
    for (long i = 0; i < 3L * 65536 + 17; i++) {
        assert_int_equal(crdt_hlc_send(&clock, 999, &out), CRDT_OK);
        if (crdt_hlc_cmp(&out, &prev) <= 0)
            fail_msg("step %ld: (%llu,%u) not after (%llu,%u)", i, (unsigned long long)out.wall,
                out.logical, (unsigned long long)prev.wall, prev.logical);
        prev = out;
    }
    /* 3 * 65536 + 17 ticks after (1001, 0): three carries. */
    assert_hlc(&out, 1004, 17);
    /* Physical time catching up past the carried wall restarts the logical part. */
    assert_int_equal(crdt_hlc_send(&clock, 1005, &out), CRDT_OK);
    assert_hlc(&out, 1005, 0);
}

static void test_send_wall_max(void **state)
{
    (void)state;
    crdt_hlc clock = { 0, 0 }, out = hlc(7, 7);
    /* The last representable millisecond is fine. */
    assert_int_equal(crdt_hlc_send(&clock, CRDT_HLC_WALL_MAX, &out), CRDT_OK);
    assert_hlc(&out, CRDT_HLC_WALL_MAX, 0);
    /* Physical time beyond 48 bits: CRDT_ECLOCK, clock and out unchanged. */
    crdt_hlc before = clock;
    out = hlc(7, 7);
    assert_int_equal(crdt_hlc_send(&clock, CRDT_HLC_WALL_MAX + 1, &out), CRDT_ECLOCK);
    assert_int_equal(crdt_hlc_cmp(&clock, &before), 0);
    assert_hlc(&out, 7, 7);
    assert_int_equal(crdt_hlc_send(&clock, UINT64_MAX, &out), CRDT_ECLOCK);
    assert_int_equal(crdt_hlc_cmp(&clock, &before), 0);
    /* At the very last timestamp, a carry would leave 48 bits: CRDT_ECLOCK, not a wrap. */
    clock = hlc(CRDT_HLC_WALL_MAX, CRDT_HLC_LOGICAL_MAX);
    assert_int_equal(crdt_hlc_send(&clock, 0, &out), CRDT_ECLOCK);
    assert_hlc(&clock, CRDT_HLC_WALL_MAX, CRDT_HLC_LOGICAL_MAX);
    assert_hlc(&out, 7, 7);
    /* A clock state already beyond the limit (corrupt input) is refused too. */
    clock = hlc(CRDT_HLC_WALL_MAX + 1, 0);
    assert_int_equal(crdt_hlc_send(&clock, 0, &out), CRDT_ECLOCK);
    assert_hlc(&clock, CRDT_HLC_WALL_MAX + 1, 0);
}

static void test_recv_takes_max(void **state)
{
    (void)state;
    const uint64_t ahead = 10 * 60 * 1000;
    crdt_hlc clock, remote, out;

    /* Remote ahead of both the clock and now: its wall, its logical + 1. */
    clock = hlc(1000, 5);
    remote = hlc(2000, 3);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, ahead, &out), CRDT_OK);
    assert_hlc(&out, 2000, 4);
    assert_int_equal(crdt_hlc_cmp(&clock, &out), 0);

    /* Clock ahead of remote and now: its own wall, logical + 1. */
    clock = hlc(3000, 9);
    remote = hlc(2000, 50);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, ahead, &out), CRDT_OK);
    assert_hlc(&out, 3000, 10);

    /* Same wall on both: the larger logical + 1. */
    clock = hlc(3000, 9);
    remote = hlc(3000, 50);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, ahead, &out), CRDT_OK);
    assert_hlc(&out, 3000, 51);
    clock = hlc(3000, 60);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, ahead, &out), CRDT_OK);
    assert_hlc(&out, 3000, 61);

    /* Physical time ahead of both: now, logical 0. */
    clock = hlc(3000, 9);
    remote = hlc(2000, 50);
    assert_int_equal(crdt_hlc_recv(&clock, 4000, &remote, ahead, &out), CRDT_OK);
    assert_hlc(&out, 4000, 0);

    /* out is optional. */
    clock = hlc(1000, 0);
    remote = hlc(1200, 7);
    assert_int_equal(crdt_hlc_recv(&clock, 1100, &remote, ahead, NULL), CRDT_OK);
    assert_hlc(&clock, 1200, 8);

    /* A send after a receive is after both. */
    assert_int_equal(crdt_hlc_send(&clock, 0, &out), CRDT_OK);
    assert_true(crdt_hlc_cmp(&out, &remote) > 0);
}

/* Random receives and sends: the clock is always greater than both its previous value and
 * the remote, and its wall part is the maximum of the three walls or a carry beyond it. */
static void test_recv_random(void **state)
{
    (void)state;
    test_rng r;
    uint64_t seed = test_seed();
    test_rng_seed(&r, seed ^ 0x2ecf);
    crdt_hlc clock = { 0, 0 }, out;
    uint64_t now = 1000000;
    for (int i = 0; i < 100000; i++) {
        now += test_rng_below(&r, 3);
        if (test_rng_chance(&r, 5))
            now -= test_rng_below(&r, 100);
        crdt_hlc prev = clock;
        if (test_rng_chance(&r, 50)) {
            crdt_hlc remote = hlc(now + test_rng_below(&r, 200) - 100,
                (uint16_t)(test_rng_chance(&r, 10) ? CRDT_HLC_LOGICAL_MAX
                                                   : test_rng_below(&r, 65536)));
            crdt_err err = crdt_hlc_recv(&clock, now, &remote, 1000, &out);
            uint64_t maxwall = prev.wall;
            if (remote.wall > maxwall)
                maxwall = remote.wall;
            if (now > maxwall)
                maxwall = now;
            if (err != CRDT_OK || crdt_hlc_cmp(&out, &prev) <= 0 || crdt_hlc_cmp(&out, &remote) <= 0
                || crdt_hlc_cmp(&out, &clock) != 0 || out.wall < maxwall || out.wall > maxwall + 1
                || (out.wall == maxwall + 1 && out.logical != 0))
                fail_msg("seed 0x%016llx step %d: recv clock (%llu,%u) remote (%llu,%u) now "
                         "%llu -> (%llu,%u) err %d",
                    (unsigned long long)seed, i, (unsigned long long)prev.wall, prev.logical,
                    (unsigned long long)remote.wall, remote.logical, (unsigned long long)now,
                    (unsigned long long)out.wall, out.logical, (int)err);
        } else {
            crdt_err err = crdt_hlc_send(&clock, now, &out);
            if (err != CRDT_OK || crdt_hlc_cmp(&out, &prev) <= 0)
                fail_msg("seed 0x%016llx step %d: send", (unsigned long long)seed, i);
        }
    }
}

static void test_recv_logical_overflow(void **state)
{
    (void)state;
    crdt_hlc clock = hlc(1000, CRDT_HLC_LOGICAL_MAX), remote = hlc(1000, CRDT_HLC_LOGICAL_MAX);
    crdt_hlc out;
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 0, &out), CRDT_OK);
    assert_hlc(&out, 1001, 0);
    assert_true(crdt_hlc_cmp(&out, &remote) > 0);

    /* Remote at the top of its millisecond, ahead of the clock. */
    clock = hlc(10, 0);
    remote = hlc(2000, CRDT_HLC_LOGICAL_MAX);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, 1000, &out), CRDT_OK);
    assert_hlc(&out, 2001, 0);

    /* The clock at the top, the remote behind. */
    clock = hlc(2000, CRDT_HLC_LOGICAL_MAX);
    remote = hlc(5, 5);
    assert_int_equal(crdt_hlc_recv(&clock, 1500, &remote, 1000, &out), CRDT_OK);
    assert_hlc(&out, 2001, 0);

    /* No room left to carry: CRDT_ECLOCK and the clock unchanged. */
    clock = hlc(CRDT_HLC_WALL_MAX, CRDT_HLC_LOGICAL_MAX);
    remote = hlc(CRDT_HLC_WALL_MAX, 3);
    out = hlc(7, 7);
    assert_int_equal(crdt_hlc_recv(&clock, CRDT_HLC_WALL_MAX, &remote, 0, &out), CRDT_ECLOCK);
    assert_hlc(&clock, CRDT_HLC_WALL_MAX, CRDT_HLC_LOGICAL_MAX);
    assert_hlc(&out, 7, 7);
    clock = hlc(CRDT_HLC_WALL_MAX, 3);
    remote = hlc(CRDT_HLC_WALL_MAX, CRDT_HLC_LOGICAL_MAX);
    assert_int_equal(crdt_hlc_recv(&clock, CRDT_HLC_WALL_MAX, &remote, 0, &out), CRDT_ECLOCK);
    assert_hlc(&clock, CRDT_HLC_WALL_MAX, 3);
}

static void test_recv_wall_beyond_max(void **state)
{
    (void)state;
    crdt_hlc clock = hlc(1000, 1), out = hlc(7, 7);
    crdt_hlc remote = hlc(CRDT_HLC_WALL_MAX + 1, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, UINT64_MAX, &out), CRDT_ECLOCK);
    assert_hlc(&clock, 1000, 1);
    assert_hlc(&out, 7, 7);
    remote = hlc(1000, 0);
    assert_int_equal(
        crdt_hlc_recv(&clock, CRDT_HLC_WALL_MAX + 1, &remote, UINT64_MAX, &out), CRDT_ECLOCK);
    assert_hlc(&clock, 1000, 1);
    assert_hlc(&out, 7, 7);
}

static void test_recv_too_far_ahead(void **state)
{
    (void)state;
    crdt_hlc clock = hlc(900, 4), out = hlc(7, 7), remote;
    /* Exactly max_ahead ahead is accepted ... */
    remote = hlc(1100, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 100, &out), CRDT_OK);
    assert_hlc(&out, 1100, 1);
    /* ... one millisecond more is not, and nothing changes. */
    clock = hlc(900, 4);
    out = hlc(7, 7);
    remote = hlc(1101, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 100, &out), CRDT_EAHEAD);
    assert_hlc(&clock, 900, 4);
    assert_hlc(&out, 7, 7);
    /* max_ahead 0: any remote wall beyond now waits. */
    remote = hlc(1001, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 0, &out), CRDT_EAHEAD);
    assert_hlc(&clock, 900, 4);
    /* A remote behind now is never "ahead", whatever max_ahead. */
    remote = hlc(10, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 0, &out), CRDT_OK);
    /* A huge max_ahead does not overflow. */
    clock = hlc(900, 4);
    remote = hlc(CRDT_HLC_WALL_MAX, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 0, &remote, UINT64_MAX, &out), CRDT_OK);
    assert_hlc(&out, CRDT_HLC_WALL_MAX, 1);
    /* The local clock itself being ahead of now does not matter: only the remote is checked. */
    clock = hlc(5000, 0);
    remote = hlc(1050, 0);
    assert_int_equal(crdt_hlc_recv(&clock, 1000, &remote, 100, &out), CRDT_OK);
    assert_hlc(&out, 5000, 1);
}

static void test_null_args(void **state)
{
    (void)state;
    crdt_hlc clock = hlc(10, 1), out = hlc(7, 7), remote = hlc(20, 2);
    assert_int_equal(crdt_hlc_send(NULL, 100, &out), CRDT_EINVAL);
    assert_hlc(&out, 7, 7);
    assert_int_equal(crdt_hlc_send(&clock, 100, NULL), CRDT_EINVAL);
    assert_hlc(&clock, 10, 1);
    assert_int_equal(crdt_hlc_recv(NULL, 100, &remote, 1000, &out), CRDT_EINVAL);
    assert_hlc(&out, 7, 7);
    assert_int_equal(crdt_hlc_recv(&clock, 100, NULL, 1000, &out), CRDT_EINVAL);
    assert_hlc(&clock, 10, 1);
    assert_hlc(&out, 7, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmp),
        cmocka_unit_test(test_send_basic),
        cmocka_unit_test(test_send_clock_backwards),
        cmocka_unit_test(test_send_monotone_random),
        cmocka_unit_test(test_send_logical_overflow),
        cmocka_unit_test(test_send_wall_max),
        cmocka_unit_test(test_recv_takes_max),
        cmocka_unit_test(test_recv_random),
        cmocka_unit_test(test_recv_logical_overflow),
        cmocka_unit_test(test_recv_wall_beyond_max),
        cmocka_unit_test(test_recv_too_far_ahead),
        cmocka_unit_test(test_null_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
