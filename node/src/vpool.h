/* vpool: a few worker threads that help the loop thread with CPU-bound loops (header
 * signature checks), so that ingest uses every core. Internal to node/. */
#ifndef NODE_SRC_VPOOL_H
#define NODE_SRC_VPOOL_H

#include <stddef.h>

#include <node/node.h>

typedef struct node_vpool node_vpool;

/* A pool of `workers` threads (0 is fine: node_vpool_for then runs on the caller alone). */
NODE_NODISCARD node_err node_vpool_new(unsigned workers, node_vpool **out, node_errmsg *msg);
/* Stop and join the workers. NULL is fine. */
void node_vpool_free(node_vpool *p);
/* One worker per online CPU beyond the first, at most 7. */
unsigned node_vpool_default_workers(void);
/* fn(ctx, i) for every i < n, spread over the workers and the calling thread; returns when
 * all have run. fn must be safe to run concurrently for different i. One caller at a time
 * (the loop thread). A NULL pool runs everything on the caller. */
void node_vpool_for(node_vpool *p, size_t n, void (*fn)(void *ctx, size_t i), void *ctx);

#endif
