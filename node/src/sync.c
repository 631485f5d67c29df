/*
 * The sync protocol inside a session: eager push of new deltas, anti-entropy by version
 * vectors, bodies only to members that hold the key of their tag, wants for bodies this node
 * lacks, and the work through the inbound queue (group commits of HEADERS and BODIES).
 * May call: inq.c, ingest.c, apply.c, rebuild.c, access.c, link.c, state.c, ledger.c, source.c,
 * proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_BYTES (1u << 20)    /* one HEADERS or BODIES message */
#define RESPONSE_BYTES (4u << 20) /* all the messages answering one VV or WANT */

/* How much one answer to a VV or WANT sends (it may end one header or body past it):
 * RESPONSE_BYTES, or less so that one answer to each peer up takes at most half the send share
 * of the memory budget. A peer has one answer to its version vector in flight at a time (the
 * answer ends with our version vector, which makes it ask again): together they stay within
 * that half. (Smaller answers cost round trips, and the crossing rule below then sent some
 * headers twice: a quarter gave 2 MiB answers with two peers up and 805 bytes per update.) */
static size_t answer_bytes(node_engine *e)
{
    size_t up = 0;
    for (size_t i = 0; i < e->nmembers; i++)
        up += !e->members[i].self && e->members[i].pipe != 0;
    size_t share = e->budget.tx / 2 / (up > 0 ? up : 1);
    return share < RESPONSE_BYTES ? share : RESPONSE_BYTES;
}

/* Is there room in the peers' send queues for an answer to a WANT? Only while they hold less
 * than three quarters of their share with it; otherwise the WANT is not answered and its sender
 * asks again (NODE_WANT_RETRY_MS). The share itself is the hard bound: a send beyond it fails and
 * drops its link (answers to version vectors, up to half of it, coming on top of WANT answers
 * can reach it; a WANT gated at a quarter slowed a catch-up's wants too much to be worth it). */
static bool want_room(node_engine *e)
{
    size_t unread = 0, queued = 0;
    if (e->host.net_queued != NULL)
        e->host.net_queued(e->host.ctx, &unread, &queued);
    return queued + answer_bytes(e) <= e->budget.tx / 4 * 3;
}
/* A gap seen in pushed headers asks the pusher for its log at most this often. */
#define GAP_VV_MS 1000
/* The same version vector is not sent to a member again within this time only to ask for
 * what it has: the answer to the first one is on its way (the two links of a pair each carry
 * a version vector when they come up, and each would be answered in full). */
#define VV_REPEAT_MS 2000

typedef struct vv_read {
    const proto_limits *lim;
    proto_vv_item *vv;
    size_t n;
} vv_read;

static node_err vv_read_cb(node_txn *t, void *ctx)
{
    vv_read *r = ctx;
    return node__ledger_vv_all(t, r->lim, &r->vv, &r->n);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

/* What is stored, and the headers in the inbound queue that follow it (node__inq_vv). */
void node__send_vv(node_engine *e, node_member *m, node_link *l, bool only_new)
{
    vv_read r = { &e->lim, NULL, 0 };
    node_errmsg msg;
    if (node_store_read(e->store, vv_read_cb, &r, &msg) != NODE_OK)
        return;
    node__inq_vv(e, &r.vv, &r.n, m);
    proto_hash_bytes *skip = NULL;
    size_t nskip = 0;
    (void)node__source_skip(e, m, &skip, &nskip); /* out of memory: nothing skipped */
    proto_vv_msg v = { .entries = r.vv, .n = r.n, .skip = skip, .nskip = nskip };
    proto_buf out = { NULL, 0 };
    uint64_t now = node__mono(e);
    if (proto_vv_encode(&v, &out) == PROTO_OK) {
        uint64_t h = fnv1a(out.p, out.len);
        if (!only_new || h != m->vv_sent_hash || now - m->vv_sent_ms >= VV_REPEAT_MS) {
            m->vv_sent_ms = now;
            m->vv_sent_hash = h;
            m->ask_again = false;
            NODE_DEBUG("sync.vv", "org=%s origins=%zu skip=%zu", m->org, r.n, nskip);
            (void)(l != NULL ? node__link_send(e, l, &out) : node__send_to(e, m, &out));
        }
    }
    proto_buf_free(&out);
    free(r.vv);
    free(skip);
}

/* A growing batch of HEADERS or BODIES, flushed as messages of at most BATCH_BYTES. */
/* A growing HEADERS or BODIES message, flushed at BATCH_BYTES, so it holds far fewer than
 * PROTO_BATCH_MAX items. items[i] and bodies[i].body are the same copy. */
typedef struct batch {
    NODE_VEC(proto_bytes) items;
    NODE_VEC(proto_body_item) bodies;
    size_t bytes;
} batch;

static bool batch_add(batch *b, const uint8_t *p, size_t len, const uint8_t *id)
{
    size_t n = b->items.n;
    if (NODE_VEC_RESERVE(&b->items, n + 1, PROTO_BATCH_MAX) != NODE_OK
        || NODE_VEC_RESERVE(&b->bodies, n + 1, PROTO_BATCH_MAX) != NODE_OK)
        return false;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return false;
    memcpy(copy, p, len);
    b->items.v[n] = (proto_bytes) { copy, len };
    proto_body_item *it = &b->bodies.v[n];
    if (id != NULL)
        memcpy(it->header_id, id, 32);
    it->body = (proto_bytes) { copy, len };
    b->items.n = b->bodies.n = n + 1;
    b->bytes += len + 48;
    return true;
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->items.n; i++)
        free((void *)(uintptr_t)b->items.v[i].p);
    b->items.n = b->bodies.n = 0;
    b->bytes = 0;
}

static void batch_free(batch *b)
{
    batch_clear(b);
    NODE_VEC_FREE(&b->items);
    NODE_VEC_FREE(&b->bodies);
}

/* Answers go back on the link the request came on (l). */
static void flush_headers(node_engine *e, node_link *l, batch *b)
{
    if (b->items.n == 0)
        return;
    proto_headers_msg hm = { .headers = b->items.v, .n = b->items.n };
    proto_buf out = { NULL, 0 };
    if (proto_headers_encode(&hm, &out) == PROTO_OK && node__link_send(e, l, &out))
        e->traffic.headers_sent += b->items.n;
    proto_buf_free(&out);
    batch_clear(b);
}

static void flush_bodies(node_engine *e, node_link *l, batch *b)
{
    if (b->bodies.n == 0)
        return;
    proto_bodies_msg bm = { b->bodies.v, b->bodies.n, NULL };
    proto_buf out = { NULL, 0 };
    if (proto_bodies_encode(&bm, &out) == PROTO_OK && node__link_send(e, l, &out))
        e->traffic.bodies_sent += b->bodies.n;
    proto_buf_free(&out);
    batch_clear(b);
}

typedef struct lack_ctx {
    node_engine *e;
    node_member *m;
    node_link *l;
    batch headers, bodies;
    size_t limit; /* answer_bytes */
    size_t sent, nheaders, nbodies;
    bool truncated; /* more to send than one answer holds */
    bool ahead;     /* m has headers this node lacks */
} lack_ctx;

/* Does the grant that lets m read h's body come after it in this answer: in a header m's version
 * vector does not cover, and not one of h's origin at or before h? Sent now, the body would reach
 * m before the key it needs (parked, or dropped and asked for again: a catch-up where every
 * write precedes the grants filled the park). It is left for m to want once the key came
 * (ARCHITECTURE.md "Sender-side body filter"). */
static bool grant_ahead(node_txn *t, lack_ctx *c, const proto_header *h)
{
    uint8_t origin[32];
    uint64_t seq = 0;
    if (h->kind != PROTO_HDR_DELTA || !node__grant_place(t, h, c->m, origin, &seq))
        return false;
    const proto_vv_item *theirs = node__vv_find(c->m->vv, c->m->nvv, origin);
    if (theirs != NULL && theirs->seq >= seq)
        return false;
    return !(memcmp(origin, h->origin, 32) == 0 && seq <= h->seq);
}

/* A header of ours and its body (when m may hold it) into the answer. */
static node_err lack_add(node_txn *t, lack_ctx *c, const void *hb, size_t hl)
{
    node_engine *e = c->e;
    proto_header h;
    if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    node_err err = NODE_OK;
    if (!batch_add(&c->headers, hb, hl, NULL)) {
        err = NODE_ENOMEM;
        goto out;
    }
    c->sent += hl;
    c->nheaders++;
    const void *bb;
    size_t bl;
    if (node__may_receive(t, e, &h, c->m) && !grant_ahead(t, c, &h)
        && node__ledger_body_get(t, h.id, &bb, &bl) == NODE_OK) {
        if (!batch_add(&c->bodies, bb, bl, h.id)) {
            err = NODE_ENOMEM;
            goto out;
        }
        c->sent += bl;
        c->nbodies++;
    }
    /* Headers go first, so that bodies always find theirs at the peer. */
    if (c->headers.bytes >= BATCH_BYTES || c->bodies.bytes >= BATCH_BYTES) {
        flush_headers(e, c->l, &c->headers);
        flush_bodies(e, c->l, &c->bodies);
    }
out:
    proto_header_fini(&h);
    return err;
}

/* Where m's version vector names a header of an origin that this node holds at that seq under
 * another id, the two are an equivocation: send m ours, so that both hold the proof. Not when m
 * names a fork point of that origin already (it holds a proof; section "forks" below). */
static node_err lack_fork(
    node_txn *t, lack_ctx *c, const proto_vv_item *theirs, const proto_vv_item *mine)
{
    if (mine == NULL || mine->seq < theirs->seq || theirs->fork != 0
        || (mine->fork != 0 && theirs->seq >= mine->fork)) /* lack_cb sends the proof */
        return NODE_OK;
    if (mine->seq == theirs->seq && memcmp(mine->id, theirs->id, 32) == 0)
        return NODE_OK;
    const void *hb;
    size_t hl;
    if (node__ledger_header_get(t, theirs->origin, theirs->seq, &hb, &hl) != NODE_OK)
        return NODE_OK;
    if (mine->seq > theirs->seq) {
        proto_header h;
        if (proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
            return NODE_ECORRUPT;
        bool same = memcmp(h.id, theirs->id, 32) == 0;
        proto_header_fini(&h);
        if (same)
            return NODE_OK;
    }
    return lack_add(t, c, hb, hl);
}

/* The fork point both sides know of an origin, the lower when they differ (0: none). Beyond
 * it every header of the origin is void, both branches: not worth trading. */
static uint64_t fork_of(const proto_vv_item *theirs, const proto_vv_item *mine)
{
    uint64_t a = theirs != NULL ? theirs->fork : 0, b = mine != NULL ? mine->fork : 0;
    return a == 0 ? b : b == 0 || a < b ? a : b;
}

/* Of a key the manifest retired, nothing beyond its retirement seq is traded (those headers are
 * refused, or void where stored before the manifest came): the first seq not traded, as a fork
 * point is (0: none). */
static uint64_t retired_cut(node_engine *e, const uint8_t origin[32])
{
    const proto_member_key *k;
    return node__author(e, origin, &k) != NULL && k->retired ? k->last_seq + 1 : 0;
}

static uint64_t lower_cut(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 || a < b ? a : b;
}

/* How far a version vector entry reaches for trading: its seq, or below the fork point. */
static uint64_t reach(const proto_vv_item *it, uint64_t fork)
{
    uint64_t seq = it != NULL ? it->seq : 0;
    return fork != 0 && seq >= fork ? fork - 1 : seq;
}

/* Send m the headers it lacks (and the bodies it may hold), up to RESPONSE_BYTES, and the
 * header of ours at any place where m holds another. Of an origin this node knows forked, m
 * gets the headers below the fork point, and the proof when it names no fork point or a
 * higher one (so every holder ends with the lowest proof, and nobody trades the branches). */
static node_err lack_cb(node_txn *t, void *ctx)
{
    lack_ctx *c = ctx;
    proto_vv_item *mine = NULL;
    size_t n = 0;
    node_err err = node__ledger_vv_all(t, &c->e->lim, &mine, &n);
    if (err != NODE_OK)
        return err;
    for (size_t i = 0; i < c->m->nvv && err == NODE_OK; i++) {
        const proto_vv_item *theirs = &c->m->vv[i], *my = node__vv_find(mine, n, theirs->origin);
        uint64_t fork = lower_cut(fork_of(theirs, my), retired_cut(c->e, theirs->origin));
        if (reach(my, fork) < reach(theirs, fork) || (theirs->fork != 0 && fork_of(NULL, my) == 0))
            c->ahead = true;
        err = lack_fork(t, c, theirs, my);
    }
    for (size_t i = 0; i < n && err == NODE_OK; i++) {
        const proto_vv_item *theirs = node__vv_find(c->m->vv, c->m->nvv, mine[i].origin);
        uint64_t fork = lower_cut(fork_of(theirs, &mine[i]), retired_cut(c->e, mine[i].origin));
        /* of an origin m skips (it gets that log from its author), only a fork proof */
        uint64_t last = node__source_skipped(c->m, mine[i].origin) ? 0 : reach(&mine[i], fork);
        for (uint64_t s = (theirs != NULL ? theirs->seq : 0) + 1; s <= last && err == NODE_OK;
             s++) {
            if (c->sent >= c->limit) {
                c->truncated = true;
                break;
            }
            const void *hb;
            size_t hl;
            if (node__ledger_header_get(t, mine[i].origin, s, &hb, &hl) != NODE_OK)
                break;
            err = lack_add(t, c, hb, hl);
        }
        if (c->truncated)
            break;
        const uint8_t *a, *b;
        size_t al, bl;
        if (mine[i].fork != 0
            && (theirs == NULL || theirs->fork == 0 || theirs->fork > mine[i].fork)
            && node__ledger_quarantine_get(t, mine[i].origin, &a, &al, &b, &bl) == NODE_OK
            && (err = lack_add(t, c, a, al)) == NODE_OK)
            err = lack_add(t, c, b, bl);
    }
    free(mine);
    return err;
}

/* Answer m's version vector on l. *truncated: the answer was cut at answer_bytes; *ahead:
 * m has headers this node lacks. */
static void send_lacking(node_engine *e, node_link *l, node_member *m, bool *truncated, bool *ahead)
{
    lack_ctx c = { .e = e, .m = m, .l = l, .limit = answer_bytes(e) };
    node_errmsg msg;
    if (node_store_read(e->store, lack_cb, &c, &msg) == NODE_OK) {
        NODE_DEBUG("sync.answer", "org=%s headers=%zu bodies=%zu skip=%zu truncated=%s", m->org,
            c.nheaders, c.nbodies, m->nskip, c.truncated ? "yes" : "no");
        flush_headers(e, l, &c.headers);
        flush_bodies(e, l, &c.bodies);
    }
    batch_free(&c.headers);
    batch_free(&c.bodies);
    *truncated = c.truncated;
    *ahead = c.ahead;
}

/* A header's author for the log: its org, or its origin in hex when no member has it. */
static const char *author_name(node_engine *e, const uint8_t origin[32], char hex[65])
{
    const node_member *m = node__author(e, origin, NULL);
    if (m != NULL)
        return m->org;
    proto_hex_encode(origin, 32, hex);
    return hex;
}

/* Ask holders for the bodies this node lacks: each want goes to its header's author when it
 * is up, else to any up member that holds the tag. */
typedef struct want_ctx {
    node_engine *e;
    node_member **target; /* per want */
    bool *gone;           /* per want: no longer this node's to hold (its scope closed here) */
    size_t *per;          /* per member: wants it is asked for in this round */
    size_t held;          /* due wants held back: their holder's WANT is full */
} want_ctx;

/* Is want w to be asked now? Not within its grace (the body is probably in the next message)
 * nor again before node__want_retry_due. */
static bool want_due(const node_engine *e, const node_want *w, uint64_t now)
{
    return now - w->since_ms >= NODE_WANT_GRACE_MS
        && (w->asked_ms == 0 || node__want_retry_due(e, w, now));
}

/* Is m, not this node nor the author a, up and a holder of tag (one to ask for a body)? */
static bool want_holder(
    node_txn *t, node_engine *e, node_member *m, const node_member *a, const uint8_t tag[32])
{
    return m != a && !m->self && node__link_up_to(e, m) != NULL && node__holder(t, tag, m);
}

static node_err want_cb(node_txn *t, void *ctx)
{
    want_ctx *c = ctx;
    node_engine *e = c->e;
    uint64_t now = node__mono(e);
    size_t up = 0, room = 0;
    for (size_t k = 0; k < e->nmembers; k++)
        up += !e->members[k].self && node__link_up_to(e, &e->members[k]) != NULL;
    c->held = 0; /* a rerun of the transaction counts again */
    memset(c->per, 0, (e->nmembers ? e->nmembers : 1) * sizeof(*c->per));
    for (size_t i = 0; i < e->wants.n; i++) {
        c->target[i] = NULL;
        c->gone[i] = false;
        if (!want_due(e, &e->wants.v[i], now))
            continue;
        if (room >= up * NODE_WANT_ASK_MAX && up > 0) {
            c->held++; /* every holder's WANT is full: asked in a later round */
            continue;
        }
        e->wants.v[i].asked_ms = now; /* tried now, whether a holder is up or not */
        const void *hb;
        size_t hl;
        proto_header h;
        if (node__ledger_header_by_id(t, e->wants.v[i].id, &hb, &hl) == NODE_OK
            && proto_header_decode(hb, hl, &e->lim, &h, NULL) == PROTO_OK) {
            c->gone[i] = !node__may_hold(t, e, &h);
            e->wants.v[i].moot = !c->gone[i] && node__cut_for_good(t, e, &h);
            proto_header_fini(&h);
            if (c->gone[i])
                continue;
        }
        /* The author first (it wrote the body), then each other holder that is up in turn: a
         * holder may lack the body (an author's own copy goes with a scope purged there). */
        node_member *a = node__author(e, e->wants.v[i].origin, NULL);
        bool author_up = a != NULL && !a->self && node__link_up_to(e, a) != NULL;
        size_t n = author_up ? 1 : 0;
        for (size_t k = 0; k < e->nmembers; k++)
            n += want_holder(t, e, &e->members[k], a, e->wants.v[i].tag);
        size_t pick = n > 0 ? e->wants.v[i].tries++ % n : 0;
        if (author_up && pick == 0)
            c->target[i] = a;
        pick -= author_up ? 1 : 0;
        for (size_t k = 0; k < e->nmembers && n > 0 && c->target[i] == NULL; k++)
            if (want_holder(t, e, &e->members[k], a, e->wants.v[i].tag) && pick-- == 0)
                c->target[i] = &e->members[k];
        if (c->target[i] == NULL)
            continue;
        size_t *per = &c->per[c->target[i] - e->members];
        if (*per >= NODE_WANT_ASK_MAX) {
            /* its holder's WANT is full: due again at once, asked in a later round */
            e->wants.v[i].asked_ms = 0;
            e->wants.v[i].tries--;
            c->target[i] = NULL;
            c->held++;
            continue;
        }
        (*per)++;
        room++;
    }
    return NODE_OK;
}

static void want_timer_next(node_engine *e);

/* A want's place in its author's log, for sorting. */
typedef struct want_place {
    const uint8_t *origin;
    uint64_t seq;
    size_t i;
} want_place;

static int want_place_cmp(const void *a, const void *b)
{
    const want_place *x = a, *y = b;
    int c = memcmp(x->origin, y->origin, 32);
    return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static void send_wants(node_engine *e)
{
    if (e->wants.n == 0)
        return;
    size_t most = e->wants.n < NODE_WANT_ASK_MAX ? e->wants.n : NODE_WANT_ASK_MAX;
    want_ctx c = { .e = e,
        .target = calloc(e->wants.n, sizeof(node_member *)),
        .gone = calloc(e->wants.n, sizeof(bool)),
        .per = calloc(e->nmembers ? e->nmembers : 1, sizeof(size_t)) };
    proto_hash_bytes *ids = calloc(most, sizeof(*ids));
    want_place *order = calloc(most, sizeof(*order));
    node_errmsg msg;
    if (c.target == NULL || c.gone == NULL || c.per == NULL || ids == NULL || order == NULL
        || node_store_read(e->store, want_cb, &c, &msg) != NODE_OK)
        goto out;
    for (size_t k = 0; k < e->nmembers; k++) {
        node_member *m = &e->members[k];
        size_t n = 0;
        for (size_t i = 0; i < e->wants.n && n < NODE_WANT_ASK_MAX; i++) {
            if (c.target[i] == m)
                order[n++] = (want_place) { e->wants.v[i].origin, e->wants.v[i].seq, i };
        }
        if (n == 0)
            continue;
        /* In their authors' log order: bodies merged out of order make an owner's earlier
         * delta look as if another had created its dots, and its scope is rebuilt. */
        qsort(order, n, sizeof(*order), want_place_cmp);
        for (size_t i = 0; i < n; i++)
            memcpy(ids[i].b, e->wants.v[order[i].i].id, 32);
        proto_want_msg w = { ids, n, NULL };
        proto_buf out = { NULL, 0 };
        if (proto_want_encode(&w, &out) == PROTO_OK)
            node__send_to(e, m, &out);
        proto_buf_free(&out);
    }
    /* the wants of scopes closed here go (from the end: removal moves the last one in) */
    for (size_t i = e->wants.n; i-- > 0;)
        if (c.gone[i])
            node__want_remove(e, e->wants.v[i].id);
    /* counted after the removals: node__want_remove counts down only what it finds here */
    e->wants_held = c.held > 0;
    e->wants_asked = 0;
    uint64_t now = node__mono(e);
    for (size_t i = 0; i < e->wants.n; i++)
        e->wants_asked += node__want_asked(e, &e->wants.v[i], now);
out:
    free(c.target);
    free(c.gone);
    free(c.per);
    free(ids);
    free(order);
    want_timer_next(e);
}

/* Schedule NODE_WORK_WANTS at the earliest moment a want falls due. */
static void want_timer_next(node_engine *e)
{
    if (e->stopping || e->wants.n == 0)
        return;
    uint64_t now = node__mono(e), wait = NODE_WANT_RETRY_MS;
    for (size_t i = 0; i < e->wants.n && wait > 0; i++) {
        const node_want *w = &e->wants.v[i];
        if (e->wants_held && w->asked_ms == 0 && w->since_ms + NODE_WANT_GRACE_MS <= now)
            continue; /* held back: asked when those asked have come (node__want_remove) */
        uint64_t due = w->since_ms + NODE_WANT_GRACE_MS;
        if (w->asked_ms != 0 && w->asked_ms + node__want_retry(w) > due)
            due = w->asked_ms + node__want_retry(w);
        if (w->asked_ms != 0 && due <= now && !node__want_retry_due(e, w, now)) {
            e->wants_drain = true; /* asked again once the inbound queue is seen empty */
            continue;
        }
        uint64_t left = due > now ? due - now : 0;
        if (left < wait)
            wait = left;
    }
    e->host.schedule(e->host.ctx, NODE_WORK_WANTS, wait ? wait : 1);
}

void node__wants_due(node_engine *e)
{
    send_wants(e);
}

typedef struct serve_ctx {
    node_engine *e;
    node_link *l;
    node_member *m;
    const proto_want_msg *want;
    size_t limit; /* answer_bytes */
    batch bodies;
} serve_ctx;

static node_err serve_cb(node_txn *t, void *ctx)
{
    serve_ctx *c = ctx;
    size_t sent = 0;
    for (size_t i = 0; i < c->want->n && sent < c->limit; i++) {
        const uint8_t *id = c->want->ids[i].b;
        const void *hb, *bb;
        size_t hl, bl;
        if (node__ledger_header_by_id(t, id, &hb, &hl) != NODE_OK
            || node__ledger_body_get(t, id, &bb, &bl) != NODE_OK)
            continue;
        proto_header h;
        if (proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
            continue;
        bool ok = node__may_receive(t, c->e, &h, c->m);
        if (!ok) {
            char hex[65];
            NODE_DEBUG("want.refuse",
                "org=%s author=%s seq=%" PRIu64 " kind=%u detail=\"not this member's to receive\"",
                c->m->org, author_name(c->e, h.origin, hex), h.seq, (unsigned)h.kind);
        }
        proto_header_fini(&h);
        if (!ok)
            continue; /* filter at the sender: never ship a body to a non-holder */
        if (!batch_add(&c->bodies, bb, bl, id))
            return NODE_ENOMEM;
        sent += bl;
        if (c->bodies.bytes >= BATCH_BYTES)
            flush_bodies(c->e, c->l, &c->bodies);
    }
    return NODE_OK;
}

/* After headers from m were ingested: answers to our version vector are followed by the
 * sender's own, which makes us ask for the rest. A gap in pushed headers (held out of order,
 * e->pending.n grew) asks at once, at most every GAP_VV_MS; bodies usually follow their
 * headers, so wants wait (NODE_WANT_GRACE_MS). */
static void gap_vv(node_engine *e, node_link *l, node_member *m, size_t pending_before)
{
    uint64_t now = node__mono(e);
    if (e->pending.n > pending_before && now - m->vv_sent_ms >= GAP_VV_MS)
        node__send_vv(e, m, l, false);
}

/* HEADERS not taken by the queue (it could not hold them). */
static void headers_in(node_engine *e, node_link *l, node_member *m, const proto_headers_msg *hm)
{
    size_t pending = e->pending.n;
    node_hdr *hs = node__hdrs_decode(e, hm->headers, hm->n);
    if (hs == NULL)
        return;
    (void)node__ingest_headers(e, hs, hm->n, m);
    node__hdrs_free(hs, hm->n);
    gap_vv(e, l, m, pending);
}

/* A ping (an empty WANT), answered with an empty BODIES after everything before it. */
void node__send_ping(node_engine *e, node_link *l)
{
    proto_want_msg w = { NULL, 0, NULL };
    proto_buf out = { NULL, 0 };
    if (proto_want_encode(&w, &out) == PROTO_OK)
        (void)node__link_send(e, l, &out);
    proto_buf_free(&out);
}

/* One round of the probe of m's claim on this node's log: our version vector (m answers it with
 * the headers of ours it holds beyond our position), then a ping, whose answer comes after them
 * (node__own_log_settled). */
static void own_probe_round(node_engine *e, node_link *l, node_member *m)
{
    m->own_progress = e->headers_stored;
    node__send_vv(e, m, l, false);
    node__send_ping(e, l);
}

/* m's version vector has come: what it claims to hold of this node's log. */
static void own_claim_seen(node_engine *e, node_link *l, node_member *m)
{
    m->vv_seen = true;
    m->own_claim = node__vv_seq(m->vv, m->nvv, proto_identity_origin(e->me));
    if (m->own_claim > e->own_seq && !m->own_disbelieved && !m->own_probe) {
        m->own_probe = true;
        m->own_rounds = 0;
        own_probe_round(e, l, m);
    }
}

/* m answered a ping: a round of the probe is over. Headers came (of any origin: a long answer
 * is cut in parts): another round; none came twice running and the claim still runs beyond
 * this node's log: m's claim is not believed. */
static void own_pong(node_engine *e, node_link *l, node_member *m)
{
    if (!m->vv_seen) {
        /* A member sends its version vector as its first link comes up, before it can answer
         * the ping this node sent then (node__peers_event): one that answered without it claims
         * nothing, and must not hold back writes by its silence. */
        m->vv_seen = true;
        NODE_WARN("own.claim",
            "org=%s detail=\"a peer answered a ping without having sent its version vector; "
            "it is taken to hold nothing of this node's log\"",
            m->org);
    }
    if (!m->own_probe)
        return;
    if (m->own_claim <= e->own_seq) {
        m->own_probe = false;
        return;
    }
    if (e->headers_stored != m->own_progress)
        m->own_rounds = 0;
    else if (++m->own_rounds >= 2) {
        m->own_probe = false;
        m->own_disbelieved = true;
        NODE_WARN("own.claim",
            "org=%s claims=%" PRIu64 " own_seq=%" PRIu64 " detail=\"a peer says it holds more of "
            "this node's log than it sends: its claim is not believed\"",
            m->org, m->own_claim, e->own_seq);
        return;
    }
    own_probe_round(e, l, m);
}

void node__sync_message(
    node_engine *e, node_link *l, node_member *m, unsigned kind, const uint8_t *p, size_t len)
{
    proto_diag diag = { 0, "" };
    proto_err perr = PROTO_OK;
    switch (kind) {
    case PROTO_K_VV: {
        proto_vv_msg v;
        if ((perr = proto_vv_decode(p, len, &e->lim, &v, &diag)) != PROTO_OK)
            break;
        proto_vv_item *copy = malloc(v.n ? v.n * sizeof(*copy) : 1);
        if (copy != NULL) {
            memcpy(copy, v.entries, v.n * sizeof(*copy));
            free(m->vv);
            m->vv = copy;
            m->nvv = v.n;
        }
        node__source_take(m, &v);
        proto_vv_fini(&v);
        own_claim_seen(e, l, m);
        uint64_t now = node__mono(e);
        /* Our version vector asks m for what we lack, or, after an answer cut short, makes m
         * ask again for the rest once it has taken this part: one answer in flight at a time.
         * When neither holds, both sides are done. When m is ahead but ours went to m within
         * VV_REPEAT_MS and no headers came since, the two crossed (both are sent as a link
         * comes up): m's answer to ours is still to come and holds at least what this one
         * claims. It is asked again after VV_REPEAT_MS (node__anti_entropy), not now: the same
         * headers would come twice. */
        bool truncated = false, ahead = false;
        send_lacking(e, l, m, &truncated, &ahead);
        bool crossed = m->vv_sent_ms != 0 && now - m->vv_sent_ms < VV_REPEAT_MS
            && m->headers_in_ms <= m->vv_sent_ms;
        if (truncated || (ahead && !crossed))
            node__send_vv(e, m, l, !truncated);
        else if (ahead)
            m->ask_again = true;
        return;
    }
    case PROTO_K_HEADERS: {
        proto_headers_msg hm;
        if ((perr = proto_headers_decode(p, len, &e->lim, &hm, &diag)) != PROTO_OK)
            break;
        headers_in(e, l, m, &hm);
        proto_headers_fini(&hm);
        return;
    }
    case PROTO_K_BODIES: {
        proto_bodies_msg bm;
        if ((perr = proto_bodies_decode(p, len, &e->lim, &bm, &diag)) != PROTO_OK)
            break;
        if (bm.n == 0)
            own_pong(e, l, m);
        else
            (void)node__ingest_bodies(e, bm.items, bm.n, m);
        proto_bodies_fini(&bm);
        return;
    }
    case PROTO_K_WANT: {
        proto_want_msg w;
        if ((perr = proto_want_decode(p, len, &e->lim, &w, &diag)) != PROTO_OK)
            break;
        if (w.n == 0) {
            /* A ping (keepalive): answered with an empty BODIES. */
            proto_bodies_msg pong = { NULL, 0, NULL };
            proto_buf out = { NULL, 0 };
            if (proto_bodies_encode(&pong, &out) == PROTO_OK)
                (void)node__link_send(e, l, &out);
            proto_buf_free(&out);
            proto_want_fini(&w);
            return;
        }
        if (!want_room(e)) {
            NODE_DEBUG(
                "want.later", "org=%s ids=%zu detail=\"the send queues are full\"", m->org, w.n);
            proto_want_fini(&w);
            return; /* m asks again (NODE_WANT_RETRY_MS) */
        }
        serve_ctx c = { .e = e, .l = l, .m = m, .want = &w, .limit = answer_bytes(e) };
        node_errmsg msg;
        if (node_store_read(e->store, serve_cb, &c, &msg) == NODE_OK)
            flush_bodies(e, l, &c.bodies);
        batch_free(&c.bodies);
        proto_want_fini(&w);
        return;
    }
    case PROTO_K_MANIFEST: {
        bool changed = false;
        node_errmsg msg;
        node_err err = node__manifest_offer(e, p, len, &changed, &msg);
        if (err == NODE_OK && changed) {
            (void)node__retired_voids(e); /* logged; tried again at the next start */
            node__peers_sync(e);
        } else if (err != NODE_OK) {
            /* Logged once per version: peers offer it again at every link. */
            proto_manifest pm;
            uint64_t v = 0;
            if (proto_manifest_decode(p, len, &e->lim, &pm, NULL) == PROTO_OK) {
                v = pm.version;
                proto_manifest_fini(&pm);
            }
            /* An older one (a peer behind) is no news; a newer one refused is. */
            if ((v == 0 || !e->have_manifest || v > e->manifest.version)
                && v != e->manifest_refused)
                NODE_WARN("manifest.refuse", "org=%s version=%" PRIu64 " reason=\"%s\"", m->org, v,
                    msg.text);
            e->manifest_refused = v;
        }
        return;
    }
    default:
        NODE_WARN("peer.reject", "org=%s reason=\"unexpected message kind %s\"", m->org,
            proto_kind_name(kind));
        return;
    }
    NODE_WARN("peer.reject", "org=%s kind=%s reason=\"%s\" detail=\"%s\" offset=%zu", m->org,
        proto_kind_name(kind), proto_strerror(perr), diag.reason, diag.offset);
}

/* The head of the queue, handed to node__sync_message. */
static void inq_one(node_engine *e)
{
    node_inmsg *q = node__inq_pop(e);
    node_link *l;
    node_member *m = node__inq_sender(e, q, &l);
    if (m != NULL && l != NULL)
        node__sync_message(e, l, m, q->kind, q->plain.p, q->plain.len);
    /* else: the member left, or the link an answer would go back on is gone */
    node__inmsg_free(e, q);
}

/* A group from the head of the queue (inq.c), ingested in one transaction. */
static void inq_group(node_engine *e, size_t nmsg, size_t nh, size_t nb)
{
    node_inmsg **msgs = calloc(nmsg, sizeof(*msgs));
    node_hdr *headers = calloc(nh ? nh : 1, sizeof(*headers)); /* shallow: the messages own */
    proto_body_item *bodies = calloc(nb ? nb : 1, sizeof(*bodies));
    if (msgs == NULL || headers == NULL || bodies == NULL) {
        free(msgs);
        free(headers);
        free(bodies);
        inq_one(e); /* out of memory: one message the old way */
        return;
    }
    nh = nb = 0;
    node_member *from = NULL;
    for (size_t i = 0; i < nmsg; i++) {
        node_inmsg *q = msgs[i] = node__inq_pop(e);
        node_link *l;
        node_member *m = node__inq_sender(e, q, &l);
        if (m == NULL)
            continue; /* the member left */
        if (from == NULL)
            from = m;
        if (q->is_headers) {
            node__hcheck_wait(e, q->chk);
            memcpy(headers + nh, q->hdrs, q->hm.n * sizeof(*headers));
            nh += q->hm.n;
        } else {
            memcpy(bodies + nb, q->bm.items, q->bm.n * sizeof(*bodies));
            nb += q->bm.n;
            node__gopen_offer(e, q->gop);
        }
    }
    size_t pending = e->pending.n;
    if (nh > NODE_GROUP_HEADERS) {
        /* A first message larger than a group (a peer with a larger max_message_bytes) is
         * alone in it, and taken in several transactions. */
        (void)node__ingest_headers(e, headers, nh, from);
    } else {
        node_ingest_in in = { headers, nh, bodies, nb };
        (void)node__ingest(e, &in, from);
    }
    for (size_t i = 0; i < nmsg; i++) {
        node_inmsg *q = msgs[i];
        node_link *l;
        node_member *m;
        if (q->is_bodies && q->bm.n == 0 && (m = node__inq_sender(e, q, &l)) != NULL && l != NULL)
            own_pong(e, l, m); /* after what came before it was ingested */
        /* Each sender of headers once (the first of its messages). */
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = !msgs[j]->is_headers || memcmp(msgs[j]->origin, q->origin, 32) != 0;
        if (q->is_headers && first && (m = node__inq_sender(e, q, &l)) != NULL)
            gap_vv(e, l, m, pending);
    }
    for (size_t i = 0; i < nmsg; i++)
        node__inmsg_free(e, msgs[i]);
    free(msgs);
    free(headers);
    free(bodies);
}

bool node__sync_step(node_engine *e)
{
    size_t nh, nb, nmsg = node__inq_group_len(e, &nh, &nb);
    if (nmsg > 0)
        inq_group(e, nmsg, nh, nb);
    else if (e->inq_head != NULL)
        inq_one(e);
    if (e->inq_head == NULL)
        node__inq_seen_empty(e);
    return e->inq_head != NULL;
}

typedef struct push_ctx {
    node_engine *e;
    const node_outs *outs;
    bool *may; /* per delta, per member */
} push_ctx;

static node_err push_cb(node_txn *t, void *ctx)
{
    push_ctx *c = ctx;
    for (size_t k = 0; k < c->outs->n; k++)
        for (size_t i = 0; i < c->e->nmembers; i++)
            c->may[k * c->e->nmembers + i]
                = node__may_receive(t, c->e, &c->outs->v[k].h, &c->e->members[i]);
    return NODE_OK;
}

static bool has_body_for_someone(node_engine *e, const push_ctx *c, size_t k)
{
    for (size_t i = 0; i < e->nmembers; i++)
        if (c->may[k * e->nmembers + i] && !e->members[i].self)
            return true;
    return false;
}

/* The deltas to every member that is up, a body only to those that may receive it: runs of up
 * to chunk deltas whose bodies go to no member in one HEADERS message each; any other delta in a
 * HEADERS message of its own followed by a BODIES message of its own. */
static void push_chunked(node_engine *e, const node_outs *outs, size_t chunk)
{
    bool any = false;
    for (size_t i = 0; i < e->nmembers && !any; i++)
        any = !e->members[i].self && node__link_up_to(e, &e->members[i]) != NULL;
    if (!any)
        return; /* nobody to push to: the version vectors of the next sessions carry it */
    size_t nm = e->nmembers ? e->nmembers : 1;
    push_ctx c = { e, outs, calloc(outs->n ? outs->n * nm : 1, sizeof(bool)) };
    node_errmsg msg;
    if (c.may == NULL || node_store_read(e->store, push_cb, &c, &msg) != NODE_OK)
        goto out;
    proto_bytes *hb = calloc(chunk, sizeof(*hb));
    proto_body_item *items = calloc(chunk, sizeof(*items));
    for (size_t a = 0, b = 0; hb != NULL && items != NULL && a < outs->n; a = b) {
        /* A run of deltas whose bodies go to no member shares HEADERS messages; a delta whose
         * body goes somewhere is sent alone, its body right after its header, as node__push
         * sends every delta (receivers see the same order of headers either way). */
        b = a + 1;
        while (b < outs->n && b - a < chunk && !has_body_for_someone(e, &c, a)
            && !has_body_for_someone(e, &c, b))
            b++;
        for (size_t k = a; k < b; k++)
            hb[k - a] = (proto_bytes) { outs->v[k].header.p, outs->v[k].header.len };
        proto_headers_msg hm = { .headers = hb, .n = b - a };
        proto_buf hmsg = { NULL, 0 };
        if (proto_headers_encode(&hm, &hmsg) != PROTO_OK)
            break;
        for (size_t i = 0; i < e->nmembers; i++) {
            node_member *m = &e->members[i];
            if (m->self || node__link_up_to(e, m) == NULL || !node__send_to(e, m, &hmsg))
                continue;
            e->traffic.headers_sent += b - a;
            size_t n = 0;
            for (size_t k = a; k < b; k++) {
                if (!c.may[k * e->nmembers + i])
                    continue;
                memcpy(items[n].header_id, outs->v[k].h.id, 32);
                items[n].body.p = outs->v[k].body.p;
                items[n].body.len = outs->v[k].body.len;
                n++;
            }
            proto_bodies_msg bm = { items, n, NULL };
            proto_buf bmsg = { NULL, 0 };
            if (n > 0 && proto_bodies_encode(&bm, &bmsg) == PROTO_OK && node__send_to(e, m, &bmsg))
                e->traffic.bodies_sent += n;
            proto_buf_free(&bmsg);
        }
        proto_buf_free(&hmsg);
    }
    free(hb);
    free(items);
out:
    free(c.may);
}

/* Each delta in a HEADERS message of its own, its body in a BODIES message of its own. */
void node__push(node_engine *e, const node_outs *outs)
{
    push_chunked(e, outs, 1);
}

/* A case.batch's thousands of deltas: the new cases' (whose bodies go to nobody yet) in
 * messages of 256 headers. */
void node__push_batch(node_engine *e, const node_outs *outs)
{
    push_chunked(e, outs, 256);
}

/* Each member as the source of its own log (source.c): when one goes down or turns slow after
 * the other peers were told to skip its log, those that claim more of it are asked now. */
static void sources_tick(node_engine *e)
{
    node_member *self = NULL;
    for (size_t i = 0; i < e->nmembers && self == NULL; i++)
        if (e->members[i].self)
            self = &e->members[i];
    vv_read r = { &e->lim, NULL, 0 };
    node_errmsg msg;
    if (self == NULL || node_store_read(e->store, vv_read_cb, &r, &msg) != NODE_OK)
        return;
    /* queued headers count, whoever sent them (those of this node's own log are not judged) */
    node__inq_vv(e, &r.vv, &r.n, self);
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *p = &e->members[i];
        if (!node__source_judge(e, p, r.vv, r.n))
            continue;
        for (size_t k = 0; k < e->nmembers; k++) {
            node_member *m = &e->members[k];
            if (m != p && !m->self && node__link_up_to(e, m) != NULL
                && node__source_claims_more(e, m, p, r.vv, r.n))
                node__send_vv(e, m, NULL, false);
        }
    }
    free(r.vv);
}

void node__anti_entropy(node_engine *e)
{
    sources_tick(e);
    uint64_t now = node__mono(e);
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        if (m->ask_again && now - m->vv_sent_ms >= VV_REPEAT_MS && node__link_up_to(e, m) != NULL)
            node__send_vv(e, m, NULL, false);
    }
    size_t up = 0;
    for (size_t i = 0; i < e->nmembers; i++)
        if (!e->members[i].self && node__link_up_to(e, &e->members[i]) != NULL)
            up++;
    if (up > 0) {
        /* Which peer does not need to be unpredictable, only spread: xorshift64. */
        e->rng ^= e->rng << 13;
        e->rng ^= e->rng >> 7;
        e->rng ^= e->rng << 17;
        size_t pick = (size_t)(e->rng % up);
        for (size_t i = 0; i < e->nmembers; i++) {
            if (e->members[i].self || node__link_up_to(e, &e->members[i]) == NULL)
                continue;
            if (pick-- == 0) {
                /* A peer we sent a version vector to within the round is syncing with us
                 * already (each answer makes us ask again): another one would cross it and
                 * be answered with what is already on the way. */
                node_member *m = &e->members[i];
                if (node__mono(e) - m->vv_sent_ms >= e->cfg.anti_entropy_ms)
                    node__send_vv(e, m, NULL, false);
                break;
            }
        }
    }
    send_wants(e);
    for (size_t i = 0; i < e->waits.n; i++) {
        if (e->waits.v[i].why == WAIT_CLOCK || e->waits.v[i].why == WAIT_CAUSAL) {
            node__retry_waits(e);
            node__ingest_parked(e);
            break;
        }
    }
}
