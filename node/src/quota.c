/*
 * The pending quota: how many bodies of one author may wait here for the causal past they name
 * (or for a manifest that admits them) at once, [sync] pending_per_author (default 10,000).
 * A delta is never refused for waiting, but a member must not make every holder keep an
 * unbounded number of bodies that may never be decided. Beyond the quota the author's
 * highest-seq waiting bodies are dropped from the store (their headers stay, so they can be
 * asked for again), and its bodies from the lowest dropped seq on are held back: not stored when
 * they come, not asked for. When its waits fall under the quota again (what they waited for has
 * come), the held-back bodies are asked for again in seq order, as many as there is room for.
 * The lowest seqs are kept because an author's deltas usually depend on its earlier ones.
 * May call: state.c (wants, members), access.c (may_hold), ledger.c, proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Headers looked at per held-back author and call when asking again (the rest: next call). */
#define QUOTA_SCAN 4096

static node_held_back *held_back_of(const node_engine *e, const uint8_t origin[32])
{
    for (size_t i = 0; i < e->held_back.n; i++)
        if (memcmp(e->held_back.v[i].origin, origin, 32) == 0)
            return &e->held_back.v[i];
    return NULL;
}

bool node__quota_holds_back(const node_engine *e, const uint8_t origin[32], uint64_t seq)
{
    const node_held_back *hb = held_back_of(e, origin);
    return hb != NULL && seq >= hb->from;
}

node_err node__quota_want(node_engine *e, const node_want *w)
{
    return node__quota_holds_back(e, w->origin, w->seq) ? NODE_OK : node__want_add(e, w);
}

static bool counts(const node_wait *w)
{
    return w->placed && w->why == WAIT_CAUSAL;
}

/* Waits that count, by origin then seq (descending within an origin). */
static int by_origin_seq_desc(const void *a, const void *b)
{
    const node_wait *x = *(const node_wait *const *)a, *y = *(const node_wait *const *)b;
    int c = memcmp(x->origin, y->origin, 32);
    if (c != 0)
        return c;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

typedef struct drop_ctx {
    node_wait **v;
    size_t n;
} drop_ctx;

static node_err drop_cb(node_txn *t, void *ctx)
{
    drop_ctx *d = ctx;
    for (size_t i = 0; i < d->n; i++) {
        node_err err = node__ledger_body_del(t, d->v[i]->id);
        if (err != NODE_OK && err != NODE_ENOTFOUND)
            return err;
    }
    return NODE_OK;
}

static void log_drop(node_engine *e, const uint8_t origin[32], size_t dropped, uint64_t from)
{
    char hex[65];
    const node_member *m = node__author(e, origin, NULL);
    if (m == NULL)
        proto_hex_encode(origin, 32, hex);
    NODE_WARN("delta.drop",
        "org=%s dropped=%zu from_seq=%" PRIu64 " quota=%" PRIu64
        " detail=\"more of its deltas wait for their causal past than the quota; the newest are "
        "dropped and asked for again when the older ones are decided\"",
        m != NULL ? m->org : hex, dropped, from, e->cfg.pending_per_author);
}

/* Drop the waits beyond the quota of every author. Returns false on error (logged). */
static bool trim(node_engine *e)
{
    size_t n = 0, quota = (size_t)e->cfg.pending_per_author;
    for (size_t i = 0; i < e->waits.n; i++)
        n += counts(&e->waits.v[i]);
    if (n <= quota)
        return true; /* no author can be over it */
    node_wait **v = malloc(n * sizeof(*v));
    if (v == NULL)
        return false;
    n = 0;
    for (size_t i = 0; i < e->waits.n; i++)
        if (counts(&e->waits.v[i]))
            v[n++] = &e->waits.v[i];
    qsort(v, n, sizeof(*v), by_origin_seq_desc);
    /* Move each author's waits beyond the quota (its highest seqs: the first of its run) to
     * the front of v. */
    size_t ndrop = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && memcmp(v[j]->origin, v[i]->origin, 32) == 0)
            j++;
        for (size_t k = i; j - i > quota && k < j - quota; k++)
            v[ndrop++] = v[k];
        i = j;
    }
    bool ok = true;
    if (ndrop > 0) {
        drop_ctx d = { v, ndrop };
        node_errmsg msg;
        if (node_store_write(e->store, drop_cb, &d, &msg) != NODE_OK) {
            NODE_ERROR("quota.fail", "error=\"%s\"", msg.text);
            ok = false;
        }
    }
    /* Note the held-back authors, log once per author, and take the dropped off the list. */
    bool *gone = ok && ndrop > 0 ? calloc(e->waits.n, sizeof(bool)) : NULL;
    ok = ok && (ndrop == 0 || gone != NULL);
    for (size_t i = 0; ok && i < ndrop;) {
        size_t j = i;
        while (j < ndrop && memcmp(v[j]->origin, v[i]->origin, 32) == 0)
            j++;
        uint64_t from = v[j - 1]->seq; /* the lowest dropped */
        node_held_back *hb = held_back_of(e, v[i]->origin);
        if (hb == NULL && (hb = NODE_VEC_PUSH(&e->held_back, PROTO_VV_MAX)) != NULL) {
            memcpy(hb->origin, v[i]->origin, 32);
            hb->from = from;
        }
        if (hb != NULL && from < hb->from)
            hb->from = from;
        log_drop(e, v[i]->origin, j - i, hb != NULL ? hb->from : from);
        for (size_t k = i; k < j; k++)
            gone[v[k] - e->waits.v] = true;
        i = j;
    }
    free(v);
    if (ok && gone != NULL) {
        size_t w = 0;
        for (size_t i = 0; i < e->waits.n; i++)
            if (!gone[i])
                e->waits.v[w++] = e->waits.v[i];
        e->waits.n = w;
    }
    free(gone);
    return ok;
}

/* Ask again for the held-back bodies of one author, in seq order, while there is room. */
typedef struct again_ctx {
    node_engine *e;
    node_held_back *hb;
    size_t room;
    node_want_vec wants;
    uint64_t next; /* the first seq not looked at */
    bool end;      /* the author's log ends before next */
} again_ctx;

static node_err again_cb(node_txn *t, void *ctx)
{
    again_ctx *a = ctx;
    a->wants.n = 0;
    a->end = false;
    uint64_t seq = a->hb->from;
    for (size_t looked = 0; a->wants.n < a->room && looked < QUOTA_SCAN; looked++, seq++) {
        const void *hb;
        size_t hl;
        node_err err = node__ledger_header_get(t, a->hb->origin, seq, &hb, &hl);
        if (err == NODE_ENOTFOUND) {
            a->end = true;
            break;
        }
        if (err != NODE_OK)
            return err;
        proto_header h;
        if (proto_header_decode(hb, hl, &a->e->lim, &h, NULL) != PROTO_OK)
            return NODE_ECORRUPT;
        if (!node__ledger_body_has(t, h.id) && node__may_hold(t, a->e, &h)) {
            node_want *w = NODE_VEC_PUSH(&a->wants, NODE_WANTS_MAX);
            if (w == NULL) {
                proto_header_fini(&h);
                return NODE_ENOMEM;
            }
            memset(w, 0, sizeof(*w));
            memcpy(w->id, h.id, 32);
            memcpy(w->tag, h.tag, 32);
            memcpy(w->origin, h.origin, 32);
            w->seq = h.seq;
        }
        proto_header_fini(&h);
    }
    a->next = seq;
    return NODE_OK;
}

static void ask_again(node_engine *e)
{
    size_t quota = (size_t)e->cfg.pending_per_author;
    for (size_t i = 0; i < e->held_back.n;) {
        node_held_back *hb = &e->held_back.v[i];
        size_t waiting = 0;
        for (size_t k = 0; k < e->waits.n; k++)
            waiting += counts(&e->waits.v[k]) && memcmp(e->waits.v[k].origin, hb->origin, 32) == 0;
        if (waiting >= quota) {
            i++;
            continue;
        }
        again_ctx a = { .e = e, .hb = hb, .room = quota - waiting };
        node_errmsg msg;
        if (node_store_read(e->store, again_cb, &a, &msg) != NODE_OK) {
            NODE_ERROR("quota.fail", "error=\"%s\"", msg.text);
            NODE_VEC_FREE(&a.wants);
            return;
        }
        hb->from = a.next; /* what was looked at is no longer held back */
        for (size_t k = 0; k < a.wants.n; k++)
            if (node__want_add(e, &a.wants.v[k]) != NODE_OK)
                break; /* beyond the wants' bound: found again at a later start */
        NODE_VEC_FREE(&a.wants);
        if (a.end) {
            *hb = e->held_back.v[--e->held_back.n];
            continue;
        }
        i++;
    }
}

void node__quota_keep(node_engine *e)
{
    if (trim(e) && e->held_back.n > 0)
        ask_again(e);
}
