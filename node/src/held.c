/*
 * Headers held out of order (their seq is beyond the next one expected of their origin, in
 * ingest.c): counted per origin, and kept within [sync] held_headers_per_origin and
 * held_headers_mb by dropping the highest seqs first. May call: nothing but the engine's lists.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* The per-origin counts of the headers held out of order, and their bytes, counted again. */
static void pending_restat(node_engine *e)
{
    e->pending_stats.n = 0;
    e->pending_bytes = 0;
    for (size_t i = 0; i < e->pending.n; i++) {
        const node_pending *p = &e->pending.v[i];
        e->pending_bytes += p->len;
        node_pending_stat *st = NULL;
        for (size_t k = 0; k < e->pending_stats.n && st == NULL; k++)
            if (memcmp(e->pending_stats.v[k].origin, p->origin, 32) == 0)
                st = &e->pending_stats.v[k];
        if (st == NULL) {
            if ((st = NODE_VEC_PUSH(&e->pending_stats, PROTO_VV_MAX)) == NULL)
                continue; /* out of memory: the bounds are checked against what is counted */
            memcpy(st->origin, p->origin, 32);
            st->count = st->bytes = 0;
            st->max_seq = 0;
        }
        st->count++;
        st->bytes += p->len;
        if (p->seq > st->max_seq)
            st->max_seq = p->seq;
    }
}

static int pending_seq_desc(const void *a, const void *b)
{
    uint64_t x = (*(node_pending *const *)a)->seq, y = (*(node_pending *const *)b)->seq;
    return x > y ? -1 : x < y;
}

/* Drop the highest seqs of origin until it holds at most keep headers and the bytes held in
 * all are at most max_bytes. */
static void pending_trim(node_engine *e, const uint8_t origin[32], size_t keep, size_t max_bytes)
{
    size_t n = 0;
    node_pending **of = malloc((e->pending.n ? e->pending.n : 1) * sizeof(*of));
    if (of == NULL)
        return;
    for (size_t i = 0; i < e->pending.n; i++)
        if (memcmp(e->pending.v[i].origin, origin, 32) == 0)
            of[n++] = &e->pending.v[i];
    qsort(of, n, sizeof(*of), pending_seq_desc);
    size_t bytes = e->pending_bytes;
    for (size_t i = 0; i < n && (n - i > keep || bytes > max_bytes); i++) {
        bytes -= of[i]->len;
        free(of[i]->bytes);
        of[i]->bytes = NULL;
    }
    free(of);
    size_t w = 0;
    for (size_t i = 0; i < e->pending.n; i++)
        if (e->pending.v[i].bytes != NULL)
            e->pending.v[w++] = e->pending.v[i];
    e->pending.n = w;
    pending_restat(e);
}

/* Keep the held headers within [sync] held_headers_per_origin per origin and held_headers_mb in
 * all: beyond, the highest seqs are dropped first (a later version vector asks for them again,
 * in seq order, once the gap before them is filled). */
void node__held_bound(node_engine *e)
{
    pending_restat(e);
    for (size_t k = 0; k < e->pending_stats.n; k++)
        if (e->pending_stats.v[k].count > (size_t)e->cfg.held_per_origin) {
            uint8_t o[32];
            memcpy(o, e->pending_stats.v[k].origin, 32);
            pending_trim(e, o, (size_t)e->cfg.held_per_origin, SIZE_MAX);
            k = (size_t)-1; /* the stats were counted again */
        }
    while (e->pending_bytes > e->budget.held && e->pending_stats.n > 0) {
        size_t big = 0;
        for (size_t k = 1; k < e->pending_stats.n; k++)
            if (e->pending_stats.v[k].bytes > e->pending_stats.v[big].bytes)
                big = k;
        uint8_t o[32];
        memcpy(o, e->pending_stats.v[big].origin, 32);
        pending_trim(e, o, SIZE_MAX, e->budget.held);
    }
}
