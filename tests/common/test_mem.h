/*
 * test_mem.h - an injectable allocator for crdt_mem that counts allocations, can fail the
 * Nth one, and tracks live blocks so that a test can check that nothing leaked.
 *
 * Allocation indices count the calls that ask for memory (n > 0), from 0. With fail_at = N
 * the call of index N returns NULL; with fail_from set, every call from fail_at on fails.
 * fail_at < 0 never fails. Header-only: every function is static inline.
 */
#ifndef PATTO_TEST_MEM_H
#define PATTO_TEST_MEM_H

#include <stdbool.h>
#include <stdlib.h>

#include "crdt/crdt.h"

typedef struct test_mem {
    crdt_mem mem;   /* pass &tm->mem to crdt_*; ctx points back to this struct */
    long fail_at;   /* index of the allocation to fail; < 0: never */
    bool fail_from; /* fail every allocation from fail_at on, not only that one */
    long count;     /* allocations asked for since the last test_mem_arm */
    long failures;  /* allocations refused since the last test_mem_arm */
    long live;      /* blocks allocated and not yet freed */
} test_mem;

static inline void *test_mem__realloc(void *ctx, void *p, size_t n)
{
    test_mem *tm = ctx;
    if (n == 0) {
        if (p != NULL)
            tm->live--;
        free(p);
        return NULL;
    }
    long idx = tm->count++;
    if (tm->fail_at >= 0 && (idx == tm->fail_at || (tm->fail_from && idx > tm->fail_at))) {
        tm->failures++;
        return NULL;
    }
    void *q = realloc(p, n);
    if (q != NULL && p == NULL)
        tm->live++;
    return q;
}

static inline void test_mem_init(test_mem *tm)
{
    tm->mem.realloc_fn = test_mem__realloc;
    tm->mem.ctx = tm;
    tm->fail_at = -1;
    tm->fail_from = false;
    tm->count = 0;
    tm->failures = 0;
    tm->live = 0;
}

/* Fail the allocation of index fail_at from now on (< 0: none); resets the counters. */
static inline void test_mem_arm(test_mem *tm, long fail_at)
{
    tm->fail_at = fail_at;
    tm->count = 0;
    tm->failures = 0;
}

static inline void test_mem_disarm(test_mem *tm)
{
    tm->fail_at = -1;
}

#endif /* PATTO_TEST_MEM_H */
