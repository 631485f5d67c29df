/*
 * Load: at start, this node's own log position and clock, and the lists of what it waits for
 * (bodies held, not decided yet) and lacks (bodies it may hold, asked for at once), rebuilt from
 * the store; the same scan lists again what was left out at the lists' bounds
 * (node__lists_refill), and the waits list made again in log order when it is stuck. May call:
 * access.c, ledger.c, state.c (the lists), apply.c (to merge what was listed), proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The scan that fills the lists goes through the headers in their authors' log order (a body
 * merges only after its author's earlier ones, so a list filled in any other order holds bodies
 * that wait for bodies it left out), and round: a refill begins where the last scan left
 * something out, goes to the end, then from the start up to there. It stops when a list that
 * had room for at least half its bound is full, so each refill reads about as many headers as
 * it lists, not the whole log. */
typedef struct load_ctx {
    node_engine *e;
    node_want_vec wants;
    node_wait_vec waits;
    node_txn *t;
    size_t want_room, wait_room; /* how many each list may take */
    bool want_open, wait_open;   /* a list the scan fills: it stops once every such one is full */
    bool want_full, wait_full;   /* the list left something out in this scan */
    bool refill;                 /* node__lists_refill (not the load at start) */
    const uint8_t *until;        /* the second part of the round ends here (NULL: no end) */
    bool full;                   /* something was left out */
    bool wants_left, waits_left; /* a want, a wait was left out */
    bool stopped;                /* an open list is full: the scan stopped at `left` */
    bool left_set;
    uint8_t left[40]; /* the place of the first header left out: the next refill begins there */
} load_ctx;

/* The header at place did not fit in its list (*full): remember where to begin next time; stop
 * the scan once every list it fills is full. */
static bool left_out(load_ctx *c, const uint8_t place[40], bool *full)
{
    if (!c->left_set)
        memcpy(c->left, place, 40);
    c->left_set = c->full = *full = true;
    c->stopped = (c->want_open || c->wait_open) && (!c->want_open || c->want_full)
        && (!c->wait_open || c->wait_full);
    return !c->stopped;
}

/* The wait of a held body whose header is h: placed, no generations (tried at once). */
static void wait_of(node_wait *w, const proto_header *h)
{
    memset(w, 0, sizeof(*w));
    memcpy(w->id, h->id, 32);
    memcpy(w->tag, h->tag, 32);
    memcpy(w->origin, h->origin, 32);
    w->seq = h->seq;
    w->placed = true;
    w->why = WAIT_KEY;
    w->kind = (uint8_t)h->kind;
}

static bool load_header_cb(const uint8_t place[40], const void *hb, size_t hl, void *ctx)
{
    load_ctx *c = ctx;
    if (c->until != NULL && memcmp(place, c->until, 40) >= 0)
        return false; /* round the log */
    bool has_body = node__ledger_body_at(c->t, place);
    if (has_body && node__ledger_applied_at(c->t, place) != 0)
        return true; /* merged (or refused) */
    proto_header h;
    if (proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
        return true;
    bool go = true;
    if (node__want_has(c->e, h.id) || node__idset_get(&c->e->wait_ix, h.id) != SIZE_MAX) {
        /* listed already (a refill) */
    } else if (has_body) {
        node_wait *w = NODE_VEC_PUSH(&c->waits, c->wait_room);
        if (w == NULL) { /* over the bound: found again by a refill, once these merged */
            c->waits_left = true;
            go = left_out(c, place, &c->wait_full);
        } else {
            wait_of(w, &h);
        }
    } else if (node__may_hold(c->t, c->e, &h)) {
        node_want *w = NODE_VEC_PUSH(&c->wants, c->want_room);
        if (w == NULL) {
            c->wants_left = true;
            go = left_out(c, place, &c->want_full);
        } else {
            memset(w, 0, sizeof(*w)); /* missing since before the start: asked at once */
            memcpy(w->id, h.id, 32);
            memcpy(w->tag, h.tag, 32);
            memcpy(w->origin, h.origin, 32);
            w->seq = h.seq;
        }
    }
    proto_header_fini(&h);
    return go;
}

static node_err scan_lists(node_txn *t, load_ctx *c)
{
    node_engine *e = c->e;
    c->t = t;
    c->wants.n = c->waits.n = 0; /* a rerun starts again */
    c->full = c->wants_left = c->waits_left = c->stopped = c->left_set = false;
    c->want_full = c->wait_full = false;
    c->until = NULL;
    /* The lists it fills: at start (and after a failed refill, which left the flags clear) those
     * with room for half their bound; in a refill, those that left something out (the other one
     * holds all there is: filling it would read the whole log for nothing). */
    bool known = c->refill && (e->wants_left || e->waits_left);
    c->want_open = known ? e->wants_left : c->want_room >= e->budget.wants / 2;
    c->wait_open = known ? e->waits_left : c->wait_room >= e->budget.waits / 2;
    const uint8_t *from = e->refill_at_set ? e->refill_at : NULL;
    node_err err = node__ledger_headers_from(t, from, load_header_cb, c);
    if (err == NODE_OK && !c->stopped && from != NULL) {
        c->until = from;
        err = node__ledger_headers_from(t, NULL, load_header_cb, c);
    }
    return err;
}

/* Where the next scan begins: where this one left something out (the start when nothing). */
static void scan_done(node_engine *e, const load_ctx *c)
{
    e->refill_at_set = c->left_set;
    memcpy(e->refill_at, c->left, sizeof(e->refill_at));
    e->lists_full = c->full;
    e->wants_left = c->wants_left;
    e->waits_left = c->waits_left;
}

static node_err load_cb(node_txn *t, void *ctx)
{
    load_ctx *c = ctx;
    node_engine *e = c->e;
    c->t = t;
    node_err err;
    if ((err = node__ledger_own_get(t, &e->own_seq, e->own_last)) != NODE_OK
        || (err = node__ledger_hlc_get(t, &e->clock)) != NODE_OK)
        return err;
    /* The next sequence number is one past the highest of our own headers held here, whether
     * this node wrote it or it came back from a peer after a restore from an older copy. */
    uint8_t last[32];
    uint64_t held = node__ledger_vv_last(t, proto_identity_origin(e->me), last);
    if (held > e->own_seq) {
        NODE_WARN("own.behind",
            "seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"the store holds newer headers of this "
            "node's log than its own position; continuing after them\"",
            held, e->own_seq);
        e->own_seq = held;
        memcpy(e->own_last, last, 32);
    }
    return scan_lists(t, c);
}

node_err node__load_store(node_engine *e, node_errmsg *msg)
{
    load_ctx c = { .e = e, .want_room = e->budget.wants, .wait_room = e->budget.waits };
    node_err err = node_store_read(e->store, load_cb, &c, msg);
    if (err != NODE_OK) {
        NODE_VEC_FREE(&c.wants);
        NODE_VEC_FREE(&c.waits);
        return err;
    }
    e->wants = c.wants;
    e->waits = c.waits;
    scan_done(e, &c);
    if (c.full)
        NODE_INFO("store.load",
            "wants=%zu waits=%zu detail=\"more bodies are lacked or held than the lists' share "
            "of [node] memory_mb holds; the rest is listed as these are done\"",
            e->wants.n, e->waits.n);
    for (size_t i = 0; i < e->wants.n; i++)
        if (!node__idset_put(&e->want_ix, e->wants.v[i].id, i))
            return NODE_ENOMEM;
    return node__waits_reindex(e);
}

static node_err refill_cb(node_txn *t, void *ctx)
{
    return scan_lists(t, ctx);
}

/* The waits list made again from the store: its bodies in log order (the store keys them by
 * their header's place), each author's lowest seqs first, at most an equal part of the list for
 * each author. */
typedef struct remake_ctx {
    node_engine *e;
    node_txn *t;
    node_wait_vec waits;
    size_t room, per_origin;
    uint8_t origin[32]; /* the author scanned */
    size_t taken;       /* of its bodies */
} remake_ctx;

static bool remake_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    remake_ctx *c = ctx;
    if (kl != 40)
        return true;
    if (memcmp(k, c->origin, 32) != 0) {
        memcpy(c->origin, k, 32);
        c->taken = 0;
    }
    if (c->taken >= c->per_origin || node__ledger_applied_at(c->t, k) != 0)
        return true;
    const void *hb;
    size_t hl;
    proto_header h;
    if (node__ledger_header_get(c->t, k, node__ledger_get64((const uint8_t *)k + 32), &hb, &hl)
            != NODE_OK
        || proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
        return true;
    node_wait *w = NODE_VEC_PUSH(&c->waits, c->room);
    if (w != NULL) {
        wait_of(w, &h);
        c->taken++;
    }
    proto_header_fini(&h);
    return w != NULL;
}

static node_err remake_cb_txn(node_txn *t, void *ctx)
{
    remake_ctx *c = ctx;
    c->t = t;
    c->waits.n = 0; /* a rerun starts again */
    memset(c->origin, 0, sizeof(c->origin));
    c->taken = 0;
    return node_txn_scan(t, NODE_DB_BODIES, NULL, 0, remake_cb, c);
}

/* A waits list over half its bound that decided nothing since the last tick, while bodies were
 * left out of it, may hold only deltas that wait for those (an author's later deltas listed,
 * the earlier ones they name not): it is made again from the store, each author's lowest seqs
 * first, so that what nothing else waits for is listed. Not more often than remake_gap_ms, which
 * doubles (up to REMAKE_GAP_MAX_MS) while remakes decide nothing: bodies that wait for a key or
 * a clock, or for a past that never comes, cost a scan of the store's bodies only that often. */
#define REMAKE_GAP_MIN_MS 2000
#define REMAKE_GAP_MAX_MS 300000

static void waits_remake(node_engine *e)
{
    bool moved = e->waits_done != e->waits_done_seen;
    e->waits_done_seen = e->waits_done;
    if (moved)
        e->remake_gap_ms = REMAKE_GAP_MIN_MS;
    uint64_t now = node__mono(e);
    if (moved || !e->lists_full || e->waits.n <= e->budget.waits / 2 || now < e->remake_at_ms)
        return;
    if (e->remake_gap_ms < REMAKE_GAP_MIN_MS)
        e->remake_gap_ms = REMAKE_GAP_MIN_MS;
    e->remake_at_ms = now + e->remake_gap_ms;
    e->remake_gap_ms
        = e->remake_gap_ms * 2 < REMAKE_GAP_MAX_MS ? e->remake_gap_ms * 2 : REMAKE_GAP_MAX_MS;
    size_t members = e->nmembers > 0 ? e->nmembers : 1;
    remake_ctx c = { .e = e,
        .room = e->budget.waits,
        .per_origin = e->budget.waits / members > 0 ? e->budget.waits / members : 1 };
    node_errmsg msg = { { 0 } };
    node_err err = node_store_read(e->store, remake_cb_txn, &c, &msg);
    if (err == NODE_OK) {
        e->waits.n = 0; /* each stays in the store: listed again by a later refill */
        e->retry_at = e->retry_passes = 0;
        err = node__waits_reindex(e);
        for (size_t i = 0; err == NODE_OK && i < c.waits.n; i++)
            err = node__wait_add(e, &c.waits.v[i]);
    }
    e->waits_remakes++;
    if (err != NODE_OK)
        NODE_ERROR("lists.remake", "error=\"%s\"", msg.text[0] ? msg.text : node_strerror(err));
    else
        NODE_INFO("lists.remake", "waits=%zu next_ms=%" PRIu64, c.waits.n, e->remake_gap_ms);
    NODE_VEC_FREE(&c.waits);
    node__retry_waits(e);
}

void node__lists_refill(node_engine *e)
{
    waits_remake(e);
    /* once a list is down to half its bound (each refill is a scan of the store's headers, so it
     * must list many at a time), and a list that left something out has room */
    bool room = (e->wants_left && e->wants.n < e->budget.wants)
        || (e->waits_left && e->waits.n < e->budget.waits) || (!e->wants_left && !e->waits_left);
    if (!e->lists_full || !room
        || (e->wants.n > e->budget.wants / 2 && e->waits.n > e->budget.waits / 2))
        return;
    load_ctx c = { .e = e,
        .refill = true,
        .want_room = e->wants.n < e->budget.wants ? e->budget.wants - e->wants.n : 0,
        .wait_room = e->waits.n < e->budget.waits ? e->budget.waits - e->waits.n : 0 };
    node_errmsg msg = { { 0 } };
    node_err err = node_store_read(e->store, refill_cb, &c, &msg);
    if (err == NODE_OK)
        scan_done(e, &c);
    else
        e->wants_left = e->waits_left = false; /* not at once again: at the next tick */
    e->lists_refills++;
    for (size_t i = 0; err == NODE_OK && i < c.waits.n; i++)
        err = node__wait_add(e, &c.waits.v[i]);
    for (size_t i = 0; err == NODE_OK && i < c.wants.n; i++) {
        c.wants.v[i].since_ms = 1; /* its header came long ago: asked for at once */
        err = node__want_add(e, &c.wants.v[i]);
    }
    if (err != NODE_OK)
        NODE_ERROR("lists.refill", "error=\"%s\"", msg.text[0] ? msg.text : node_strerror(err));
    else
        NODE_INFO("lists.refill", "wants=%zu waits=%zu more=%s", c.wants.n, c.waits.n,
            c.full ? "yes" : "no");
    bool retry = c.waits.n > 0;
    NODE_VEC_FREE(&c.wants);
    NODE_VEC_FREE(&c.waits);
    if (retry)
        node__retry_waits(e);
}
