/*
 * Parked bodies: a body that comes before this node holds a key of its tag is not this node's
 * to store (ARCHITECTURE.md "Headers and bodies"), but in a catch-up it usually is a moment
 * later: an owner's log holds a case's writes before the key grants that share it. A
 * version-vector answer leaves out the bodies whose reader's grant comes later in it (sync.c
 * grant_ahead), but what comes just before its key grant (a grant's own access entry) or by a
 * push still comes early. Dropping such bodies made the peer send each again when the node
 * asked for it (a want) once the key came: twice the bytes, and a round trip per 4 MiB.
 *
 * Such a body (ciphertext, checked against its header) waits here, in memory only, never in
 * the store: at most the park's share of the memory budget (e->budget.park) in all and NODE_PARK_MS
 * each; beyond, the oldest go first (they are asked for again as before, when a key makes them
 * wanted). When a key taken in makes a body wanted (node__apply_adopt), a parked copy is moved to a
 * ready list, and the ready bodies are ingested after the group (ingest.c, node__ingest_parked):
 * stored if this node may hold them by then, checked as any body from a peer. May call: idset.c.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* What an entry costs besides its body, counted in the park's share: its vector slot, up to
 * twice over before a compaction, and its index slot (an idset at most half full). */
#define ENTRY_COST (2 * sizeof(node_parked) + 2 * sizeof(idset_slot))

static void entry_drop(node_engine *e, node_parked *p)
{
    if (p->body == NULL)
        return;
    e->park.bytes -= p->len + ENTRY_COST;
    e->park.live--;
    node__idset_del(&e->park.ix, p->id);
    free(p->body);
    p->body = NULL;
}

/* Drop the entries that are gone (taken, dropped) once they are half of the vector or more,
 * so that it holds at most twice the live entries (and nothing once none is left). */
static void compact(node_engine *e)
{
    if (e->park.live == 0) {
        NODE_VEC_FREE(&e->park.v);
        node__idset_free(&e->park.ix);
        e->park.head = 0;
        return;
    }
    if (e->park.v.n < 1024 || e->park.live * 2 > e->park.v.n)
        return;
    size_t k = 0;
    for (size_t i = e->park.head; i < e->park.v.n; i++) {
        if (e->park.v.v[i].body == NULL)
            continue;
        e->park.v.v[k] = e->park.v.v[i];
        (void)node__idset_put(&e->park.ix, e->park.v.v[k].id, k); /* an update: no memory */
        k++;
    }
    e->park.v.n = k;
    e->park.head = 0;
}

/* The oldest entry out. */
static void evict(node_engine *e)
{
    while (e->park.head < e->park.v.n && e->park.v.v[e->park.head].body == NULL)
        e->park.head++;
    if (e->park.head < e->park.v.n)
        entry_drop(e, &e->park.v.v[e->park.head++]);
    e->park.evicted++;
}

void node__park_put(node_engine *e, const uint8_t id[32], const void *body, size_t len)
{
    if (len > e->budget.park / 64 || node__idset_get(&e->park.ix, id) != SIZE_MAX)
        return;
    while (e->park.live > 0 && e->park.bytes + len + ENTRY_COST > e->budget.park)
        evict(e);
    compact(e);
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return;
    node_parked *p = NODE_VEC_PUSH(&e->park.v, e->budget.park / 64);
    if (p == NULL) {
        free(copy);
        return;
    }
    memcpy(copy, body, len);
    memcpy(p->id, id, 32);
    p->body = copy;
    p->len = len;
    p->ms = node__mono(e);
    if (!node__idset_put(&e->park.ix, id, e->park.v.n - 1)) {
        free(copy);
        e->park.v.n--;
        return;
    }
    e->park.bytes += len + ENTRY_COST;
    e->park.live++;
    e->park.parked++;
}

void node__park_forget(node_engine *e, const uint8_t id[32])
{
    size_t i = node__idset_get(&e->park.ix, id);
    if (i != SIZE_MAX)
        entry_drop(e, &e->park.v.v[i]);
}

void node__park_wanted(node_engine *e, const node_want *w)
{
    size_t i = node__idset_get(&e->park.ix, w->id);
    if (i == SIZE_MAX)
        return;
    node_parked *p = &e->park.v.v[i];
    node_unparked *u = NODE_VEC_PUSH(&e->park.ready, e->budget.park / 64);
    if (u == NULL)
        return; /* wanted as before */
    memcpy(u->it.header_id, p->id, 32);
    u->it.body.p = p->body;
    u->it.body.len = p->len;
    memcpy(u->origin, w->origin, 32);
    u->seq = w->seq;
    /* the bytes move to the ready list */
    node__idset_del(&e->park.ix, p->id);
    e->park.bytes -= p->len + ENTRY_COST;
    e->park.live--;
    p->body = NULL;
    compact(e);
}

static int place_cmp(const void *a, const void *b)
{
    const node_unparked *x = a, *y = b;
    int c = memcmp(x->origin, y->origin, 32);
    return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

node_unparked *node__park_ready(node_engine *e, size_t *n)
{
    node_unparked *u = e->park.ready.v;
    *n = e->park.ready.n;
    e->park.ready.v = NULL;
    e->park.ready.n = e->park.ready.cap = 0;
    /* in their authors' log order, as a version-vector answer brings them (sync.c) */
    if (*n > 1)
        qsort(u, *n, sizeof(*u), place_cmp);
    e->park.unparked += *n;
    return u;
}

void node__park_expire(node_engine *e)
{
    uint64_t now = node__mono(e);
    while (e->park.live > 0) {
        while (e->park.head < e->park.v.n && e->park.v.v[e->park.head].body == NULL)
            e->park.head++;
        if (e->park.head >= e->park.v.n || now - e->park.v.v[e->park.head].ms < NODE_PARK_MS)
            break;
        entry_drop(e, &e->park.v.v[e->park.head++]);
        e->park.expired++;
    }
    compact(e);
}

void node__park_free(node_engine *e)
{
    for (size_t i = 0; i < e->park.v.n; i++)
        free(e->park.v.v[i].body);
    for (size_t i = 0; i < e->park.ready.n; i++)
        free((void *)(uintptr_t)e->park.ready.v[i].it.body.p);
    NODE_VEC_FREE(&e->park.v);
    NODE_VEC_FREE(&e->park.ready);
    node__idset_free(&e->park.ix);
    memset(&e->park, 0, sizeof(e->park));
}
