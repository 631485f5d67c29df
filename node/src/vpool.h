/* vpool: a few worker threads that help the loop thread with CPU-bound loops (header
 * signature checks), so that ingest uses every core. Internal to node/. */
#ifndef NODE_SRC_VPOOL_H
#define NODE_SRC_VPOOL_H

#include <stdbool.h>
#include <stddef.h>

#include <node/node.h>

typedef struct node_vpool node_vpool;

/* A job: fn(ctx, i) for every i < n. Owned by the caller, which fills fn, ctx and n and
 * must not touch or free it between node__vpool_submit and node__vpool_finish. */
typedef struct node_vjob {
    void (*fn)(void *ctx, size_t i);
    void *ctx;
    size_t n;
    /* the pool's */
    size_t next, finished;
    struct node_vjob *qnext;
    bool queued;
} node_vjob;

/* A pool of `workers` threads (0 is fine: jobs then run on the caller alone). */
NODE_NODISCARD node_err node__vpool_new(unsigned workers, node_vpool **out, node_errmsg *msg);
/* Stop and join the workers. Every submitted job must have been finished. NULL is fine. */
void node__vpool_free(node_vpool *p);
/* One worker per online CPU beyond the first, at most 7. */
unsigned node__vpool_default_workers(void);
/* Queue job j: the workers start on it when they are done with the jobs before it; returns at
 * once. fn must be safe to run concurrently for different i and with the caller. A NULL pool
 * (or one without workers) leaves the whole job to node__vpool_finish. */
void node__vpool_submit(node_vpool *p, node_vjob *j);
/* Whether every index of j has run (without waiting). */
bool node__vpool_done(node_vpool *p, node_vjob *j);
/* Run what no worker has taken of j on the caller, then wait until the workers' share is
 * done. After it returns, j is the caller's again. */
void node__vpool_finish(node_vpool *p, node_vjob *j);
/* submit + finish: returns when fn has run for every i < n. */
void node__vpool_for(node_vpool *p, size_t n, void (*fn)(void *ctx, size_t i), void *ctx);

#endif
