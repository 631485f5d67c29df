/*
 * Ingest: headers and bodies from peers, verified, chained per origin (or held out of order,
 * or kept as a proof of equivocation), stored, and the bodies merged at once when they can be,
 * in one transaction per group of queued messages (a group commit). What cannot be merged yet
 * joins the waits (apply.c takes them up). Transaction bodies may run twice (the store reruns them
 * after growing a full map), so they work on copies of in-memory state and the caller adopts the
 * copies after the commit. May call: apply.c, rebuild.c, quota.c, hcheck.c, access.c, state.c,
 * link.c, ledger.c, proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Headers                                                                                   */

/* Distinct (author, reason) pairs of refused headers logged per group; the rest are counted in
 * one more line. */
#define INGEST_REJECT_LINES 8
/* Headers sent back per group to the peer that brought proofs of equivocation. */
#define INGEST_FORK_REPLIES 16

/* What a batch of header ingestion decided, adopted after the commit. */
typedef struct ingest_ctx {
    node_engine *e;
    const node_hdr *headers; /* decoded, with what is known of their signatures */
    size_t n;
    crdt_hlc clock;
    /* outputs */
    node_want_vec wants;
    node_pending_vec pend; /* headers to hold out of order (bytes point into the input) */
    bool *used_pending;    /* e->pending entries consumed */
    size_t stored, rejected;
    uint64_t own_seq; /* this node's log position, raised by its own headers seen from peers */
    uint8_t own_last[32];
    /* refused headers, one line per author and reason when the group is done */
    struct {
        char who[72];
        const char *reason;
        uint64_t first_seq;
        size_t count;
    } rej[INGEST_REJECT_LINES];
    size_t nrej, rej_other;
    /* places of this node's headers to send back to the peer that brought a proof of
     * equivocation: the one at the proof's seq (so the peer holds the proof too) and, when the
     * other branch does not chain to ours below it, the one below (to find the lowest differing
     * seq, the fork point, one step a round trip) */
    node_member *from;
    struct {
        uint8_t origin[32];
        uint64_t seq;
    } back[INGEST_FORK_REPLIES];
    size_t nback;
    size_t dup; /* headers at a place held already (status traffic.headers_dup, after commit) */
} ingest_ctx;

static void ingest_reset(ingest_ctx *c)
{
    c->clock = c->e->clock;
    c->nback = 0;
    c->wants.n = 0;
    c->pend.n = 0;
    c->stored = c->rejected = c->dup = 0;
    c->nrej = c->rej_other = 0;
    c->own_seq = c->e->own_seq;
    memcpy(c->own_last, c->e->own_last, 32);
    if (c->used_pending)
        memset(c->used_pending, 0, c->e->pending.n * sizeof(bool));
}

static node_err ctx_want(ingest_ctx *c, const proto_header *h)
{
    node_want *w = NODE_VEC_PUSH(&c->wants, NODE_WANTS_MAX);
    if (w == NULL)
        return NODE_ENOMEM;
    memcpy(w->id, h->id, 32);
    memcpy(w->tag, h->tag, 32);
    memcpy(w->origin, h->origin, 32);
    w->seq = h->seq;
    w->since_ms = 0; /* just came: its body is probably in the next message */
    return NODE_OK;
}

/* The id of the header at (origin, seq), by decoding what is stored. */
static node_err stored_id(
    node_txn *t, const uint8_t origin[32], uint64_t seq, const proto_limits *lim, uint8_t id[32])
{
    const void *b;
    size_t n;
    node_err err = node__ledger_header_get(t, origin, seq, &b, &n);
    if (err != NODE_OK)
        return err;
    proto_header h;
    if (proto_header_decode(b, n, lim, &h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    memcpy(id, h.id, 32);
    proto_header_fini(&h);
    return NODE_OK;
}

/* Is this exact header already held out of order (verified when it was held)? */
static bool pending_held(
    const node_engine *e, const uint8_t origin[32], uint64_t seq, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < e->pending.n; i++) {
        const node_pending *p = &e->pending.v[i];
        if (p->seq == seq && p->len == len && memcmp(p->origin, origin, 32) == 0
            && memcmp(p->bytes, bytes, len) == 0)
            return true;
    }
    return false;
}

/* A header of our own beyond our log position: this store was restored from an older copy. */
static void log_own_behind(uint64_t seq, uint64_t own_seq)
{
    NODE_WARN("own.behind",
        "seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"a peer holds a newer header of this "
        "node's log (restored from an older copy?); continuing after it\"",
        seq, own_seq);
}

/* Does a header held out of order (authentic: checked before it was held) at h's next seq
 * name h's id as its prev? Then h is authentic by the chain (PROTOCOL.md section 9). */
static bool vouched(const ingest_ctx *c, const proto_header *h)
{
    const node_pending *v[2] = { c->pend.v, c->e->pending.v };
    size_t n[2] = { c->pend.n, c->e->pending.n };
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < n[k]; i++) {
            const node_pending *p = &v[k][i];
            if (p->seq != h->seq + 1 || memcmp(p->origin, h->origin, 32) != 0)
                continue;
            proto_header next;
            if (proto_header_decode(p->bytes, p->len, &c->e->lim, &next, NULL) != PROTO_OK)
                continue;
            bool chained = memcmp(next.prev, h->id, 32) == 0;
            proto_header_fini(&next);
            if (chained)
                return true;
        }
    return false;
}

/* Is the header authentic: its own signature, or (next: it is the next of its origin here)
 * one held above it. hcheck.c checked the runs within its message; the scan of the held
 * headers, at most held_headers_mb, is done only for the header that fills a gap. */
static bool sig_good(const ingest_ctx *c, const node_hdr *hd, bool next)
{
    return hd->sig == SIG_GOOD
        || (hd->sig == SIG_UNKNOWN && proto_header_verify(&hd->h) == PROTO_OK)
        || (next && vouched(c, &hd->h));
}

/* A header refused: counted, and logged once the group is done, one line per author and
 * reason (a message of 65,536 refused headers is one line, not 65,536). */
static void hdr_reject(ingest_ctx *c, const node_hdr *hd, const char *reason)
{
    char who[72];
    const node_member *m = hd->perr == PROTO_OK ? node__author(c->e, hd->h.origin, NULL) : NULL;
    if (m != NULL) {
        snprintf(who, sizeof(who), "org=%s", m->org);
    } else if (hd->perr == PROTO_OK) {
        char hex[65];
        proto_hex_encode(hd->h.origin, 32, hex);
        snprintf(who, sizeof(who), "origin=%s", hex);
    } else {
        snprintf(who, sizeof(who), "origin=?");
    }
    c->rejected++;
    for (size_t i = 0; i < c->nrej; i++)
        if (c->rej[i].reason == reason && strcmp(c->rej[i].who, who) == 0) {
            c->rej[i].count++;
            return;
        }
    if (c->nrej == INGEST_REJECT_LINES) {
        c->rej_other++;
        return;
    }
    snprintf(c->rej[c->nrej].who, sizeof(c->rej[c->nrej].who), "%s", who);
    c->rej[c->nrej].reason = reason;
    c->rej[c->nrej].first_seq = hd->perr == PROTO_OK ? hd->h.seq : 0;
    c->rej[c->nrej].count = 1;
    c->nrej++;
}

static void rejects_log(const ingest_ctx *c)
{
    for (size_t i = 0; i < c->nrej; i++)
        NODE_WARN("header.reject", "%s seq=%" PRIu64 " count=%zu reason=\"%s\"", c->rej[i].who,
            c->rej[i].first_seq, c->rej[i].count, c->rej[i].reason);
    if (c->rej_other > 0)
        NODE_WARN("header.reject", "count=%zu reason=\"other authors and reasons\"", c->rej_other);
}

/* A header at a place this node holds already: the same bytes (or the same id) need no
 * signature check, as most headers a peer sends are ones held. Only a different header there,
 * a candidate proof of equivocation, is verified, and then both are kept as the proof (the
 * stored one was verified when it was stored) and the origin is quarantined. */
static node_err ingest_held(node_txn *t, ingest_ctx *c, const node_hdr *hd, const node_member *m)
{
    const proto_header *h = &hd->h;
    const void *other;
    size_t olen;
    node_err err = node__ledger_header_get(t, h->origin, h->seq, &other, &olen);
    if (err != NODE_OK || (olen == hd->bytes.len && memcmp(other, hd->bytes.p, olen) == 0))
        return err;
    uint8_t id[32];
    if ((err = stored_id(t, h->origin, h->seq, &c->e->lim, id)) != NODE_OK
        || memcmp(id, h->id, 32) == 0)
        return err;
    if (!sig_good(c, hd, false)) {
        hdr_reject(c, hd, "bad signature");
        return NODE_OK;
    }
    if ((err = node__ledger_quarantine_put(t, h->origin, other, olen, hd->bytes.p, hd->bytes.len))
            != NODE_OK
        || (err = node__rebuild_from(t, c->e, h->origin, h->seq)) != NODE_OK)
        return err;
    /* Send ours at this seq back, and ours below it when the other branch does not chain to
     * it: the peer then holds this proof, or finds a lower one. */
    uint8_t below[32];
    bool lower = h->seq > 1 && stored_id(t, h->origin, h->seq - 1, &c->e->lim, below) == NODE_OK
        && memcmp(below, h->prev, 32) != 0;
    for (uint64_t s = h->seq; s + (lower ? 1 : 0) >= h->seq && c->nback < INGEST_FORK_REPLIES;
         s--) {
        memcpy(c->back[c->nback].origin, h->origin, 32);
        c->back[c->nback++].seq = s;
        if (s == 1)
            break;
    }
    char who[65];
    proto_hex_encode(h->origin, 32, who);
    NODE_ERROR("origin.equivocation",
        "org=%s origin=%s seq=%" PRIu64 " action=quarantined detail=\"two different signed "
        "headers for one sequence number; proof kept\"",
        m->org, who, h->seq);
    return NODE_OK;
}

/* A header of an origin quarantined here from seq `fork`, at or beyond it: when it is not the
 * one this node holds at its place, the peer holds another branch and may not know the fork
 * point yet: send it this node's header at the fork point (the lower proof). */
static node_err fork_known(node_txn *t, ingest_ctx *c, const node_hdr *hd, uint64_t fork)
{
    const proto_header *h = &hd->h;
    uint8_t mine[32];
    if (stored_id(t, h->origin, h->seq, &c->e->lim, mine) != NODE_OK || memcmp(mine, h->id, 32) == 0
        || c->nback >= INGEST_FORK_REPLIES)
        return NODE_OK;
    for (size_t i = 0; i < c->nback; i++)
        if (c->back[i].seq == fork && memcmp(c->back[i].origin, h->origin, 32) == 0)
            return NODE_OK;
    memcpy(c->back[c->nback].origin, h->origin, 32);
    c->back[c->nback++].seq = fork;
    return NODE_OK;
}

/* How many headers of origin are held out of order (in the engine and in this group), the
 * highest seq among those in the engine, and the bytes held in all. */
static size_t held_of(
    const ingest_ctx *c, const uint8_t origin[32], uint64_t *max_seq, size_t *bytes)
{
    size_t n = 0;
    *max_seq = 0;
    *bytes = c->e->pending_bytes;
    for (size_t i = 0; i < c->e->pending_stats.n; i++) {
        const node_pending_stat *st = &c->e->pending_stats.v[i];
        if (memcmp(st->origin, origin, 32) == 0) {
            n = st->count;
            *max_seq = st->max_seq;
        }
    }
    for (size_t i = 0; i < c->pend.n; i++) {
        *bytes += c->pend.v[i].len;
        if (memcmp(c->pend.v[i].origin, origin, 32) == 0)
            n++;
    }
    return n;
}

/* A verified header beyond the next one expected of its origin: held (in memory) until the
 * headers before it come. At the bounds ([sync] held_headers_per_origin, default 10,000, and
 * the budget's held share, default 8 MiB in all) one above every held one of its origin is not
 * held; one below is, and ingest_post drops the highest instead. What is not held is asked for
 * again by a later version vector. Its bytes are borrowed from the input until ingest_post copies
 * them. */
static node_err hold(ingest_ctx *c, const node_hdr *hd)
{
    const node_engine *e = c->e;
    uint64_t max_seq;
    size_t bytes;
    size_t n = held_of(c, hd->h.origin, &max_seq, &bytes);
    if ((n >= (size_t)e->cfg.held_per_origin || bytes + hd->bytes.len > e->budget.held)
        && hd->h.seq > max_seq)
        return NODE_OK;
    node_pending *p = NODE_VEC_PUSH(&c->pend, NODE_GROUP_HEADERS);
    if (p == NULL)
        return NODE_OK;
    memcpy(p->origin, hd->h.origin, 32);
    p->seq = hd->h.seq;
    p->bytes = (uint8_t *)(uintptr_t)hd->bytes.p;
    p->len = hd->bytes.len;
    return NODE_OK;
}

/* The next header of its origin, chained and verified: stored, and acted on (this node's own
 * log position, the bodies this node may read or a key grant meant for it, the clock). */
static node_err store_next(node_txn *t, ingest_ctx *c, const node_hdr *hd)
{
    node_engine *e = c->e;
    const proto_header *h = &hd->h;
    node_err err = node__ledger_header_put(t, h, hd->bytes.p, hd->bytes.len);
    if (err != NODE_OK)
        return err;
    c->stored++;
    const uint8_t *me = proto_identity_origin(e->me);
    if (memcmp(h->origin, me, 32) == 0 && h->seq > c->own_seq) {
        /* An authentic header of our own that our log position does not cover: this store was
         * restored from an older copy. Never reuse its sequence number. */
        log_own_behind(h->seq, c->own_seq);
        c->own_seq = h->seq;
        memcpy(c->own_last, h->id, 32);
        if ((err = node__ledger_own_put(t, c->own_seq, c->own_last)) != NODE_OK)
            return err;
    }
    if (!node__ledger_body_has(t, h->id) && node__may_hold(t, e, h))
        err = ctx_want(c, h);
    /* A clock too far ahead is not adopted here (crdt_hlc_recv refuses it); its delta waits
     * when it is merged. */
    crdt_hlc tmp;
    if (crdt_hlc_recv(&c->clock, node__now(e), &h->hlc, node__clock_ahead_ms(e), &tmp) != CRDT_OK)
        NODE_DEBUG("clock.ahead", "seq=%" PRIu64 " detail=\"not adopted\"", h->seq);
    return err;
}

/* One header: chain it, or hold it, or drop it. *next_seq gets its seq + 1 when stored (else
 * 0), and origin_out its origin. */
static node_err ingest_one(
    node_txn *t, ingest_ctx *c, const node_hdr *hd, uint8_t origin_out[32], uint64_t *next_seq)
{
    node_engine *e = c->e;
    const proto_header *h = &hd->h;
    *next_seq = 0;
    if (hd->perr != PROTO_OK) {
        hdr_reject(c, hd, proto_strerror(hd->perr));
        return NODE_OK;
    }
    node_member *m;
    const char *why = node__header_admitted(e, h, &m);
    if (why != NULL) {
        hdr_reject(c, hd, why);
        return NODE_OK;
    }
    uint64_t have = node__ledger_vv_get(t, h->origin);
    uint64_t fork = node__ledger_fork_seq(t, &e->lim, h->origin);
    if (fork != 0) /* quarantined: only a proof of an earlier fork point is taken */
        return h->seq < fork && h->seq <= have ? ingest_held(t, c, hd, m)
                                               : fork_known(t, c, hd, fork);
    if (h->seq <= have) {
        c->dup++;
        return ingest_held(t, c, hd, m);
    }
    if (h->seq > have + 1) {
        for (size_t i = 0; i < c->pend.n; i++)
            if (memcmp(c->pend.v[i].origin, h->origin, 32) == 0 && c->pend.v[i].seq == h->seq)
                return NODE_OK;
        if (pending_held(e, h->origin, h->seq, hd->bytes.p, hd->bytes.len))
            return NODE_OK;
    }
    if (!sig_good(c, hd, h->seq == have + 1)) {
        hdr_reject(c, hd, "bad signature");
        return NODE_OK;
    }
    if (h->seq > have + 1)
        return hold(c, hd);
    uint8_t prev[32];
    (void)node__ledger_vv_last(t, h->origin, prev);
    if (memcmp(prev, h->prev, 32) != 0) {
        hdr_reject(c, hd, "hash chain broken: prev is not the id of the previous header");
        return NODE_OK;
    }
    crdt_hlc before = node__ledger_vv_clock(t, h->origin);
    if (crdt_hlc_cmp(&h->hlc, &before) < 0) {
        hdr_reject(c, hd, "its clock goes back along its origin's chain");
        return NODE_OK;
    }
    node_err err = store_next(t, c, hd);
    if (err == NODE_OK) {
        memcpy(origin_out, h->origin, 32);
        *next_seq = h->seq + 1;
    }
    return err;
}

/* A header held out of order (verified when it was held), now next in its chain. */
static node_err ingest_held_bytes(node_txn *t, ingest_ctx *c, const uint8_t *bytes, size_t len,
    uint8_t origin_out[32], uint64_t *next_seq)
{
    proto_bytes b = { bytes, len };
    node_hdr hd = { .bytes = b, .sig = SIG_GOOD };
    hd.perr = proto_header_decode(bytes, len, &c->e->lim, &hd.h, &hd.diag);
    node_err err = ingest_one(t, c, &hd, origin_out, next_seq);
    if (hd.perr == PROTO_OK)
        proto_header_fini(&hd.h);
    return err;
}

static node_err ingest_cb(node_txn *t, void *ctx)
{
    ingest_ctx *c = ctx;
    node_engine *e = c->e;
    ingest_reset(c);
    for (size_t i = 0; i < c->n; i++) {
        uint8_t origin[32];
        uint64_t next;
        node_err err = ingest_one(t, c, &c->headers[i], origin, &next);
        /* Headers held out of order may now follow. */
        while (err == NODE_OK && next != 0) {
            size_t k = 0;
            while (k < e->pending.n
                && (c->used_pending[k] || e->pending.v[k].seq != next
                    || memcmp(e->pending.v[k].origin, origin, 32) != 0))
                k++;
            size_t j = 0;
            while (j < c->pend.n
                && (c->pend.v[j].seq != next || memcmp(c->pend.v[j].origin, origin, 32) != 0))
                j++;
            if (k < e->pending.n) {
                c->used_pending[k] = true;
                err = ingest_held_bytes(
                    t, c, e->pending.v[k].bytes, e->pending.v[k].len, origin, &next);
            } else if (j < c->pend.n) {
                node_pending p = c->pend.v[j];
                c->pend.v[j] = c->pend.v[--c->pend.n];
                err = ingest_held_bytes(t, c, p.bytes, p.len, origin, &next);
            } else {
                next = 0;
            }
        }
        if (err != NODE_OK)
            return err;
    }
    return node__ledger_hlc_put(t, &c->clock);
}

/* A verified header of our own log beyond what we hold (restored from an older copy): the
 * next local write continues after it, so that no sequence number is used twice. */
static void own_pending(node_engine *e, const node_pending *p)
{
    if (p->seq <= e->own_seq || memcmp(p->origin, proto_identity_origin(e->me), 32) != 0)
        return;
    proto_header h;
    if (proto_header_decode(p->bytes, p->len, &e->lim, &h, NULL) != PROTO_OK)
        return;
    log_own_behind(h.seq, e->own_seq);
    e->own_seq = h.seq;
    memcpy(e->own_last, h.id, 32);
    proto_header_fini(&h);
}

/* Headers per transaction: a group commit. A 1 MiB HEADERS message holds about 4,600
 * headers, so it is mostly one commit; smaller groups (512) made the fsyncs of the commits a
 * large share of ingest time. A larger message (a peer with a larger max_message_bytes) is
 * taken in several commits, all in this loop turn. */
#define INGEST_BATCH 4096

node_err node__ingest_headers(node_engine *e, node_hdr *headers, size_t n, node_member *from)
{
    /* What was not checked yet is checked on the workers first (ingest would one by one). */
    node_hcheck *own = node__hcheck_start(e, headers, n);
    node__hcheck_wait(e, own);
    node_err err = NODE_OK;
    for (size_t i = 0; i < n && err == NODE_OK; i += INGEST_BATCH) {
        node_ingest_in in = { headers + i, n - i < INGEST_BATCH ? n - i : INGEST_BATCH, NULL, 0 };
        err = node__ingest(e, &in, from);
    }
    node__hcheck_free(e, own);
    return err;
}

/* Send the peer that brought proofs of equivocation this node's headers at the places noted. */
typedef struct back_ctx {
    ingest_ctx *c;
    proto_bytes items[INGEST_FORK_REPLIES];
    size_t n;
    proto_buf out;
} back_ctx;

static node_err back_cb(node_txn *t, void *ctx)
{
    back_ctx *b = ctx;
    b->n = 0;
    for (size_t i = 0; i < b->c->nback; i++) {
        const void *hb;
        size_t hl;
        if (node__ledger_header_get(t, b->c->back[i].origin, b->c->back[i].seq, &hb, &hl)
            == NODE_OK)
            b->items[b->n++] = (proto_bytes) { hb, hl };
    }
    proto_headers_msg m = { .headers = b->items, .n = b->n };
    /* Encoded inside the transaction: the bytes are borrowed from it. */
    return b->n == 0 || proto_headers_encode(&m, &b->out) == PROTO_OK ? NODE_OK : NODE_ENOMEM;
}

static void send_back(node_engine *e, ingest_ctx *c)
{
    if (c->nback == 0 || c->from == NULL)
        return;
    back_ctx b = { .c = c, .out = { NULL, 0 } };
    node_errmsg msg;
    if (node_store_read(e->store, back_cb, &b, &msg) == NODE_OK && b.out.p != NULL)
        (void)node__send_to(e, c->from, &b.out);
    proto_buf_free(&b.out);
}

/* After the commit: adopt the clock and log position, keep the headers held out of order
 * (within their bounds), log what was refused, and want the bodies this node may read. */
static node_err ingest_post(node_engine *e, ingest_ctx *c)
{
    send_back(e, c);
    e->clock = c->clock;
    e->rejected += c->rejected;
    e->headers_stored += c->stored;
    e->own_seq = c->own_seq;
    memcpy(e->own_last, c->own_last, 32);
    rejects_log(c);
    /* Drop consumed pending headers, keep new ones. */
    size_t w = 0;
    for (size_t i = 0; i < e->pending.n; i++) {
        if (c->used_pending != NULL && c->used_pending[i])
            free(e->pending.v[i].bytes);
        else
            e->pending.v[w++] = e->pending.v[i];
    }
    e->pending.n = w;
    for (size_t i = 0; i < c->pend.n; i++) {
        uint8_t *copy = malloc(c->pend.v[i].len);
        node_pending *p = copy != NULL ? NODE_VEC_PUSH(&e->pending, PENDING_MAX) : NULL;
        if (p == NULL) {
            free(copy);
            break; /* beyond the bound: asked for again by a later version vector */
        }
        memcpy(copy, c->pend.v[i].bytes, c->pend.v[i].len);
        *p = c->pend.v[i];
        p->bytes = copy;
        own_pending(e, p);
    }
    node__held_bound(e);
    node_err err = NODE_OK;
    for (size_t i = 0; i < c->wants.n && err == NODE_OK; i++)
        err = node__quota_want(e, &c->wants.v[i]);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Bodies                                                                                    */

/* A BODIES message is stored and merged in one transaction: a key grant and the deltas under
 * it usually come in the same message, and a second transaction (and its fsync) per message
 * was a large share of a syncing node's time. What cannot be merged yet joins the waits. */
typedef struct bodies_ctx {
    node_engine *e;
    const proto_body_item *items;
    size_t n;
    const node_hdr *hdrs; /* the group's headers, decoded once */
    idset hdr_ix;         /* their ids -> index in hdrs */
    bool *stored;         /* per item */
    bool *seen;           /* per item: looked at by bodies_store */
    bool *park;           /* per item: kept in memory (park.c) for a key not held yet */
    size_t dup;           /* bodies held already (status traffic.bodies_dup, after commit) */
    proto_header *own;    /* per item whose header is not in the group: decoded from the store */
    uint8_t *looked;      /* per item: what item_header found in this transaction (LOOKED_*) */
    node_held *held;      /* per item: its header and body */
    node_wait *w;         /* per item: the wait it would be */
    bool *done;           /* per item: merged, refused or not ours */
    wait_reason *why;     /* per item not done: what it waits for */
    apply_ctx a;
} bodies_ctx;

/* What an item's header lookup found: not looked yet, no header here, the group's, own[i]. */
enum { LOOKED_NOT, LOOKED_ABSENT, LOOKED_GROUP, LOOKED_OWN };

/* The header of body item i, if this node holds it: the group's decoded one (the id covers
 * every field a body is checked and merged against), else decoded from the store. NULL when
 * the header is not here (the body comes again with anti-entropy). Looked up once per
 * transaction (bodies_store passes twice; a stored header stays). */
static const proto_header *item_header(node_txn *t, bodies_ctx *c, size_t i, node_err *err)
{
    const uint8_t *id = c->items[i].header_id;
    const void *hb;
    size_t hl;
    *err = NODE_OK;
    if (c->looked[i] == LOOKED_OWN)
        return &c->own[i];
    if (c->looked[i] == LOOKED_ABSENT)
        return NULL;
    size_t k = c->looked[i] == LOOKED_GROUP ? node__idset_get(&c->hdr_ix, id) : SIZE_MAX;
    if (k != SIZE_MAX)
        return &c->hdrs[k].h;
    if (node__ledger_header_by_id(t, id, &hb, &hl) != NODE_OK) {
        c->looked[i] = LOOKED_ABSENT;
        return NULL;
    }
    k = node__idset_get(&c->hdr_ix, id);
    if (k != SIZE_MAX) {
        c->looked[i] = LOOKED_GROUP;
        return &c->hdrs[k].h;
    }
    if (proto_header_decode(hb, hl, &c->e->lim, &c->own[i], NULL) != PROTO_OK) {
        *err = NODE_ECORRUPT;
        return NULL;
    }
    c->looked[i] = LOOKED_OWN;
    return &c->own[i];
}

/* Store the bodies of kind `kind` (0: every kind not stored yet) that this node may hold
 * (never one it may not read), each checked against its header. */
static node_err bodies_store(node_txn *t, bodies_ctx *c, uint8_t kind)
{
    node_engine *e = c->e;
    for (size_t i = 0; i < c->n; i++) {
        if (c->stored[i] || c->seen[i])
            continue;
        const proto_body_item *it = &c->items[i];
        node_err err;
        const proto_header *h = item_header(t, c, i, &err);
        if (err != NODE_OK)
            return err;
        if (h == NULL || (kind != 0 && h->kind != kind))
            continue;
        c->seen[i] = true;
        if (node__ledger_body_has(t, it->header_id)) {
            c->dup++;
            continue;
        }
        if (node__quota_holds_back(e, h->origin, h->seq))
            continue; /* beyond its author's quota */
        if (!node__may_hold(t, e, h)) {
            /* not ours to hold; unless no key of its tag is known here yet: then parked */
            ledger_key k;
            c->park[i] = h->kind != PROTO_HDR_NOTE && node__ledger_key_get(t, h->tag, &k) != NODE_OK
                && proto_body_check(h, it->body.p, it->body.len) == PROTO_OK;
            proto_wipe(&k, sizeof(k));
            continue;
        }
        proto_err perr = proto_body_check(h, it->body.p, it->body.len);
        if (perr != PROTO_OK) {
            NODE_WARN("body.reject", "reason=\"%s\"", proto_strerror(perr));
            continue;
        }
        if ((err = node__ledger_body_put(t, it->header_id, it->body.p, it->body.len)) != NODE_OK)
            return err;
        c->stored[i] = true;
        c->held[i] = (node_held) { h, it->body.p, it->body.len };
        memcpy(c->w[i].id, it->header_id, 32);
        memcpy(c->w[i].tag, h->tag, 32);
        memcpy(c->w[i].origin, h->origin, 32);
        c->w[i].seq = h->seq;
        c->w[i].placed = true;
        c->w[i].kind = h->kind;
    }
    return NODE_OK;
}

static node_err bodies_cb(node_txn *t, void *ctx)
{
    bodies_ctx *c = ctx;
    for (size_t i = 0; i < c->n; i++) {
        if (c->looked[i] == LOOKED_OWN) /* a rerun of the transaction */
            proto_header_fini(&c->own[i]);
        c->stored[i] = c->seen[i] = c->park[i] = false;
        c->looked[i] = LOOKED_NOT;
        c->done[i] = true;
        c->why[i] = WAIT_KEY;
    }
    c->a.wants.n = c->a.rebuild.n = 0;
    c->a.progress = c->a.refused = 0;
    c->dup = 0; /* a rerun counts again */
    /* The key grants first: a grant and the bodies under its key usually come in one group,
     * and those bodies are this node's to hold only once it holds the key. Then the rest are
     * stored and merged in the order they came (their authors' log order: merged out of order,
     * a scope's causal context holds a cloud of dots that every later merge decodes and encodes
     * again); passes repeat while they merge something (deltas that depend on others). */
    node_err err = bodies_store(t, c, PROTO_HDR_KEY_GRANT);
    for (size_t i = 0; i < c->n && err == NODE_OK; i++) {
        c->done[i] = !c->stored[i];
        if (c->stored[i])
            err = node__apply_one(t, &c->a, &c->w[i], &c->held[i], &c->done[i], &c->why[i]);
    }
    if (err == NODE_OK)
        err = bodies_store(t, c, 0);
    if (err != NODE_OK)
        return err;
    for (size_t i = 0; i < c->n; i++)
        if (c->stored[i] && c->w[i].kind != PROTO_HDR_KEY_GRANT)
            c->done[i] = false;
    for (size_t pass = 0; pass < 8; pass++) {
        size_t before = c->a.progress;
        for (size_t i = 0; i < c->n; i++) {
            if (c->done[i])
                continue;
            c->w[i].why = c->why[i];
            err = node__apply_one(t, &c->a, &c->w[i], &c->held[i], &c->done[i], &c->why[i]);
            if (err != NODE_OK)
                return err;
        }
        if (c->a.progress == before)
            break;
    }
    return node__rebuild_noted(t, &c->a);
}

/* Headers and bodies from peers, stored in one transaction: the headers first, so that the
 * bodies find theirs. */
typedef struct group_ctx {
    ingest_ctx h;
    bodies_ctx b;
} group_ctx;

static node_err group_cb(node_txn *t, void *ctx)
{
    group_ctx *g = ctx;
    node_err err = g->h.n > 0 ? ingest_cb(t, &g->h) : NODE_OK;
    if (err == NODE_OK && g->b.n > 0)
        err = bodies_cb(t, &g->b);
    return err;
}

node_err node__ingest(node_engine *e, const node_ingest_in *in, node_member *from)
{
    e->traffic.headers_got += in->nheaders;
    e->traffic.bodies_got += in->nbodies;
    size_t k = in->nbodies ? in->nbodies : 1;
    group_ctx g = { .h = { .e = e, .headers = in->headers, .n = in->nheaders, .from = from },
        .b = { .e = e,
            .items = in->bodies,
            .n = in->nbodies,
            .hdrs = in->headers,
            .stored = calloc(k, sizeof(bool)),
            .seen = calloc(k, sizeof(bool)),
            .park = calloc(k, sizeof(bool)),
            .own = calloc(k, sizeof(proto_header)),
            .looked = calloc(k, 1),
            .held = calloc(k, sizeof(node_held)),
            .w = calloc(k, sizeof(node_wait)),
            .done = calloc(k, sizeof(bool)),
            .why = calloc(k, sizeof(wait_reason)) } };
    g.b.a.e = e;
    node_err err = NODE_ENOMEM;
    if (g.b.stored == NULL || g.b.seen == NULL || g.b.park == NULL || g.b.own == NULL
        || g.b.looked == NULL || g.b.held == NULL || g.b.w == NULL || g.b.done == NULL
        || g.b.why == NULL)
        goto out;
    for (size_t i = 0; in->nbodies > 0 && i < in->nheaders; i++)
        if (in->headers[i].perr == PROTO_OK
            && !node__idset_put(&g.b.hdr_ix, in->headers[i].h.id, i))
            goto out;
    if (in->nheaders > 0 && e->pending.n > 0
        && (g.h.used_pending = calloc(e->pending.n, sizeof(bool))) == NULL)
        goto out;
    node_errmsg msg;
    if ((err = node_store_write(e->store, group_cb, &g, &msg)) != NODE_OK) {
        NODE_ERROR("ingest.fail", "peer=%s headers=%zu bodies=%zu error=\"%s\"",
            from ? from->org : "?", in->nheaders, in->nbodies, msg.text);
        goto out;
    }
    /* counted once the transaction committed (a rerun after a full map counts again) */
    e->traffic.headers_dup += g.h.dup;
    e->traffic.bodies_dup += g.b.dup;
    if (in->nheaders > 0 && (err = ingest_post(e, &g.h)) != NODE_OK)
        goto out;
    if (in->nbodies == 0)
        goto out;
    e->refused += g.b.a.refused;
    /* parked before the wants are adopted: a key taken in this group may want them at once */
    for (size_t i = 0; i < in->nbodies; i++)
        if (g.b.park[i])
            node__park_put(
                e, in->bodies[i].header_id, in->bodies[i].body.p, in->bodies[i].body.len);
    if ((err = node__apply_adopt(e, &g.b.a)) != NODE_OK)
        goto out;
    for (size_t i = 0; i < in->nbodies; i++) {
        if (!g.b.stored[i])
            continue;
        node__park_forget(e, in->bodies[i].header_id);
        node__want_remove(e, in->bodies[i].header_id);
        if (g.b.done[i])
            continue;
        g.b.w[i].why = g.b.why[i];
        if ((err = node__wait_add(e, &g.b.w[i])) != NODE_OK)
            goto out;
    }
    node__retry_waits(e);   /* older waits may follow what was merged */
    node__ingest_parked(e); /* and parked bodies a key taken in made wanted */
out:
    NODE_VEC_FREE(&g.b.a.wants);
    NODE_VEC_FREE(&g.b.a.rebuild);
    NODE_VEC_FREE(&g.h.wants);
    NODE_VEC_FREE(&g.h.pend);
    free(g.h.used_pending);
    for (size_t i = 0; g.b.looked != NULL && i < in->nbodies; i++)
        if (g.b.looked[i] == LOOKED_OWN)
            proto_header_fini(&g.b.own[i]);
    node__idset_free(&g.b.hdr_ix);
    free(g.b.stored);
    free(g.b.seen);
    free(g.b.park);
    free(g.b.own);
    free(g.b.looked);
    free(g.b.held);
    free(g.b.w);
    free(g.b.done);
    free(g.b.why);
    return err;
}

void node__ingest_parked(node_engine *e)
{
    if (e->park.draining)
        return; /* called from the ingest below */
    e->park.draining = true;
    size_t n;
    node_unparked *u;
    while ((u = node__park_ready(e, &n)) != NULL) {
        proto_body_item *items = malloc(n * sizeof(*items));
        if (items != NULL) {
            for (size_t i = 0; i < n; i++)
                items[i] = u[i].it;
            (void)node__ingest_bodies(e, items, n, NULL); /* logged there; wanted if lost */
        }
        for (size_t i = 0; i < n; i++)
            free((void *)(uintptr_t)u[i].it.body.p);
        free(items);
        free(u);
    }
    e->park.draining = false;
}

node_err node__ingest_bodies(
    node_engine *e, const proto_body_item *items, size_t n, node_member *from)
{
    node_ingest_in in = { NULL, 0, items, n };
    return node__ingest(e, &in, from);
}
