/*
 * test_rng.h - a small seeded pseudo-random generator for tests (xoshiro256**, seeded through
 * splitmix64), so that every randomised test can be replayed from one number.
 *
 * The seed comes from the TEST_SEED environment variable (decimal or 0x-hex) or else from a
 * fixed default; test_seed() prints it once so a failing run names the seed that replays it.
 * Header-only: every function is static inline.
 */
#ifndef PATTO_TEST_RNG_H
#define PATTO_TEST_RNG_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define TEST_SEED_DEFAULT UINT64_C(0x5eed0000c0ffee01)

typedef struct test_rng {
    uint64_t s[4];
} test_rng;

static inline uint64_t test_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline void test_rng_seed(test_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = test_splitmix64(&x);
}

static inline uint64_t test_rng__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static inline uint64_t test_rng_next(test_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = test_rng__rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = test_rng__rotl(s[3], 45);
    return result;
}

/* A uniform number in [0, n); n > 0. Rejection sampling, so no modulo bias. */
static inline uint64_t test_rng_below(test_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = test_rng_next(r);
    } while (x >= limit);
    return x % n;
}

/* A uniform number in [lo, hi]. */
static inline int64_t test_rng_range(test_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)test_rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* True with probability percent / 100. */
static inline bool test_rng_chance(test_rng *r, unsigned percent)
{
    return test_rng_below(r, 100) < percent;
}

/* Shuffle an array of size_t in place (Fisher-Yates). */
static inline void test_rng_shuffle(test_rng *r, size_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)test_rng_below(r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* A uint64 from the environment variable `name`, or `dflt` when unset or malformed. */
static inline uint64_t test_env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno != 0 || end == v || *end != '\0') {
        fprintf(stderr, "ignoring malformed %s=%s\n", name, v);
        return dflt;
    }
    return (uint64_t)x;
}

/* The run's seed: TEST_SEED or the default. Printed on the first call. */
static inline uint64_t test_seed(void)
{
    static bool printed;
    uint64_t seed = test_env_u64("TEST_SEED", TEST_SEED_DEFAULT);
    if (!printed) {
        printed = true;
        fprintf(stderr, "test seed: TEST_SEED=0x%016" PRIx64 " (set TEST_SEED to replay)\n", seed);
    }
    return seed;
}

/* A seed for the case `index` of a test, derived from the run's seed and a test id, so one
 * case can be replayed alone. */
static inline uint64_t test_case_seed(uint64_t seed, uint64_t test_id, uint64_t index)
{
    uint64_t x = seed ^ (test_id * UINT64_C(0x9e3779b97f4a7c15));
    (void)test_splitmix64(&x);
    x ^= index;
    return test_splitmix64(&x);
}

#endif /* PATTO_TEST_RNG_H */
