/* A parallel for over a fixed set of worker threads (see vpool.h). */
#include "vpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define VPOOL_MAX 7
#define VPOOL_CHUNK 8 /* indices taken at a time: a few signature checks, ~0.3 ms */

struct node_vpool {
    pthread_t threads[VPOOL_MAX];
    unsigned nthreads;

    pthread_mutex_t lock;
    pthread_cond_t start, done;
    uint64_t gen;     /* bumped for every job; workers wait for a change */
    unsigned running; /* workers still inside the current job */
    bool quit;

    /* the current job */
    void (*fn)(void *ctx, size_t i);
    void *ctx;
    size_t n;
    atomic_size_t next;
};

static void run_share(node_vpool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, VPOOL_CHUNK);
        if (i >= p->n)
            return;
        size_t end = p->n - i < VPOOL_CHUNK ? p->n : i + VPOOL_CHUNK;
        for (; i < end; i++)
            p->fn(p->ctx, i);
    }
}

static void *worker(void *arg)
{
    node_vpool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && p->gen == seen)
            pthread_cond_wait(&p->start, &p->lock);
        if (p->quit)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->lock);
        run_share(p);
        pthread_mutex_lock(&p->lock);
        if (--p->running == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

unsigned node_vpool_default_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus <= 1)
        return 0;
    return cpus - 1 > VPOOL_MAX ? VPOOL_MAX : (unsigned)(cpus - 1);
}

node_err node_vpool_new(unsigned workers, node_vpool **out, node_errmsg *msg)
{
    *out = NULL;
    node_vpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory for the verification threads");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    if (workers > VPOOL_MAX)
        workers = VPOOL_MAX;
    for (; p->nthreads < workers; p->nthreads++) {
        int rv = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
        if (rv != 0) {
            node_vpool_free(p);
            return node__fail(
                msg, NODE_EIO, "cannot start a verification thread: %s", strerror(rv));
        }
    }
    *out = p;
    return NODE_OK;
}

void node_vpool_free(node_vpool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void node_vpool_for(node_vpool *p, size_t n, void (*fn)(void *ctx, size_t i), void *ctx)
{
    /* Small jobs are not worth waking anybody. */
    if (p == NULL || p->nthreads == 0 || n < 2 * VPOOL_CHUNK) {
        for (size_t i = 0; i < n; i++)
            fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->running = p->nthreads;
    p->gen++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);

    run_share(p);

    pthread_mutex_lock(&p->lock);
    while (p->running > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
