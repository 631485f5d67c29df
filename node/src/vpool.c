/* Worker threads taking chunks of queued jobs (see vpool.h). May call: pthreads, common.c. */
#include "vpool.h"

#include <pthread.h>
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
    pthread_cond_t work, done; /* a job was queued / a job's last chunk ended */
    node_vjob *head, *tail;    /* jobs with indices nobody has taken yet */
    bool quit;
};

/* Take the next chunk of the first queued job: [*from, *to). Called with the lock held. A job
 * whose last chunk is taken leaves the queue. */
static node_vjob *take_locked(node_vpool *p, node_vjob *only, size_t *from, size_t *to)
{
    node_vjob *j = only != NULL ? only : p->head;
    if (j == NULL || j->next >= j->n)
        return NULL;
    *from = j->next;
    *to = j->n - j->next < VPOOL_CHUNK ? j->n : j->next + VPOOL_CHUNK;
    j->next = *to;
    if (j->next >= j->n && j->queued) {
        node_vjob **pp = &p->head, *prev = NULL;
        while (*pp != j) {
            prev = *pp;
            pp = &(*pp)->qnext;
        }
        *pp = j->qnext;
        if (p->tail == j)
            p->tail = prev;
        j->queued = false;
    }
    return j;
}

/* Run [from, to) of j, lock not held; then count it done (lock taken and kept). */
static void run_chunk(node_vpool *p, node_vjob *j, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        j->fn(j->ctx, i);
    pthread_mutex_lock(&p->lock);
    j->finished += to - from;
    if (j->finished == j->n)
        pthread_cond_broadcast(&p->done);
}

static void *worker(void *arg)
{
    node_vpool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        size_t from, to;
        node_vjob *j;
        while (!p->quit && (j = take_locked(p, NULL, &from, &to)) == NULL)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->quit)
            break;
        pthread_mutex_unlock(&p->lock);
        run_chunk(p, j, from, to);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

unsigned node__vpool_default_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus <= 1)
        return 0;
    return cpus - 1 > VPOOL_MAX ? VPOOL_MAX : (unsigned)(cpus - 1);
}

node_err node__vpool_new(unsigned workers, node_vpool **out, node_errmsg *msg)
{
    *out = NULL;
    node_vpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory for the verification threads");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    if (workers > VPOOL_MAX)
        workers = VPOOL_MAX;
    for (; p->nthreads < workers; p->nthreads++) {
        int rv = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
        if (rv != 0) {
            node__vpool_free(p);
            return node__fail(
                msg, NODE_EIO, "cannot start a verification thread: %s", strerror(rv));
        }
    }
    *out = p;
    return NODE_OK;
}

void node__vpool_free(node_vpool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void node__vpool_submit(node_vpool *p, node_vjob *j)
{
    j->next = j->finished = 0;
    j->qnext = NULL;
    j->queued = false;
    /* Small jobs are not worth waking anybody: the caller runs them in finish. */
    if (p == NULL || p->nthreads == 0 || j->n < 2 * VPOOL_CHUNK)
        return;
    pthread_mutex_lock(&p->lock);
    j->queued = true;
    if (p->tail != NULL)
        p->tail->qnext = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
}

bool node__vpool_done(node_vpool *p, node_vjob *j)
{
    if (p == NULL)
        return j->finished == j->n;
    pthread_mutex_lock(&p->lock);
    bool done = j->finished == j->n;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void node__vpool_finish(node_vpool *p, node_vjob *j)
{
    if (p == NULL) {
        for (; j->next < j->n; j->next++)
            j->fn(j->ctx, j->next);
        j->finished = j->n;
        return;
    }
    pthread_mutex_lock(&p->lock);
    size_t from, to;
    for (;;) {
        node_vjob *got = take_locked(p, j, &from, &to);
        if (got == NULL)
            break;
        pthread_mutex_unlock(&p->lock);
        run_chunk(p, j, from, to);
    }
    while (j->finished < j->n)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void node__vpool_for(node_vpool *p, size_t n, void (*fn)(void *ctx, size_t i), void *ctx)
{
    node_vjob j = { .fn = fn, .ctx = ctx, .n = n };
    node__vpool_submit(p, &j);
    node__vpool_finish(p, &j);
}
