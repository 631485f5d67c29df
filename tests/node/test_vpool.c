/* node.vpool: the pool that spreads header signature checks over the cores runs every index
 * exactly once, for any pool size and job size, job after job, and on more than one thread
 * when it has workers; jobs queued with submit run while the caller does other things, in any
 * number, and finish (with the caller's help) in any order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "vpool.h"

typedef struct job {
    atomic_uint *hits; /* per index */
    pthread_t *who;    /* per index: the thread that ran it */
} job;

static void count(void *ctx, size_t i)
{
    job *j = ctx;
    atomic_fetch_add(&j->hits[i], 1);
    j->who[i] = pthread_self();
    /* A little work, so that workers get a share before the caller finishes alone. */
    volatile uint64_t x = i;
    for (int k = 0; k < 2000; k++)
        x = x * 6364136223846793005u + 1442695040888963407u;
}

/* Run n indices; return how many distinct threads ran them. */
static size_t run(node_vpool *p, size_t n)
{
    job j = { calloc(n ? n : 1, sizeof(atomic_uint)), calloc(n ? n : 1, sizeof(pthread_t)) };
    assert_non_null(j.hits);
    assert_non_null(j.who);
    for (size_t i = 0; i < n; i++)
        atomic_init(&j.hits[i], 0);
    node__vpool_for(p, n, count, &j);
    size_t threads = 0;
    pthread_t seen[16];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(atomic_load(&j.hits[i]), 1);
        size_t k = 0;
        while (k < threads && !pthread_equal(seen[k], j.who[i]))
            k++;
        if (k == threads && threads < 16)
            seen[threads++] = j.who[i];
    }
    free(j.hits);
    free(j.who);
    return threads;
}

static void every_index_once(void **state)
{
    (void)state;
    static const size_t sizes[] = { 0, 1, 7, 15, 16, 17, 100, 1001, 20000 };
    for (unsigned workers = 0; workers <= 3; workers++) {
        node_vpool *p = NULL;
        node_errmsg msg;
        assert_int_equal(node__vpool_new(workers, &p, &msg), NODE_OK);
        for (int round = 0; round < 20; round++)
            for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                size_t threads
                    = run(p, sizes[round % 2 ? s : sizeof(sizes) / sizeof(sizes[0]) - 1 - s]);
                assert_true(threads <= workers + 1);
            }
        node__vpool_free(p);
    }
    /* No pool: the caller runs everything. */
    assert_int_equal(run(NULL, 500), 1);
}

static void workers_take_a_share(void **state)
{
    (void)state;
    node_vpool *p = NULL;
    node_errmsg msg;
    assert_int_equal(node__vpool_new(2, &p, &msg), NODE_OK);
    /* Over many large jobs, some index is run by a thread other than the caller. */
    size_t most = 0;
    for (int round = 0; round < 50 && most < 2; round++) {
        size_t t = run(p, 20000);
        most = t > most ? t : most;
    }
    assert_true(most >= 2);
    node__vpool_free(p);
    node__vpool_free(NULL);
}

/* Several jobs queued at once, finished in an order other than their submission, each index
 * of each job run once; the workers make progress while the caller does not help. */
static void queued_jobs(void **state)
{
    (void)state;
    enum { JOBS = 6 };
    static const size_t sizes[JOBS] = { 3000, 0, 15, 5000, 1, 2048 };
    for (unsigned workers = 0; workers <= 2; workers++) {
        node_vpool *p = NULL;
        node_errmsg msg;
        assert_int_equal(node__vpool_new(workers, &p, &msg), NODE_OK);
        for (int round = 0; round < 10; round++) {
            job j[JOBS];
            node_vjob vj[JOBS];
            for (int k = 0; k < JOBS; k++) {
                size_t n = sizes[k];
                j[k].hits = calloc(n ? n : 1, sizeof(atomic_uint));
                j[k].who = calloc(n ? n : 1, sizeof(pthread_t));
                assert_non_null(j[k].hits);
                assert_non_null(j[k].who);
                for (size_t i = 0; i < n; i++)
                    atomic_init(&j[k].hits[i], 0);
                vj[k] = (node_vjob) { .fn = count, .ctx = &j[k], .n = n };
                node__vpool_submit(p, &vj[k]);
            }
            if (workers > 0 && round == 0) {
                /* Nobody helps: the workers alone finish the first job. */
                while (!node__vpool_done(p, &vj[0]))
                    sched_yield();
                for (size_t i = 0; i < sizes[0]; i++)
                    assert_int_equal(atomic_load(&j[0].hits[i]), 1);
            }
            static const int order[JOBS] = { 5, 0, 3, 1, 4, 2 };
            for (int o = 0; o < JOBS; o++) {
                int k = order[o];
                node__vpool_finish(p, &vj[k]);
                assert_true(node__vpool_done(p, &vj[k]));
                for (size_t i = 0; i < sizes[k]; i++)
                    assert_int_equal(atomic_load(&j[k].hits[i]), 1);
            }
            for (int k = 0; k < JOBS; k++) {
                free(j[k].hits);
                free(j[k].who);
            }
        }
        node__vpool_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_index_once),
        cmocka_unit_test(workers_take_a_share),
        cmocka_unit_test(queued_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
