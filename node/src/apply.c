/*
 * Apply: merging a body this node holds into the state of its scope, once its key, its causal
 * past and its time have come: a key grant opens into a key record; a delta is decrypted,
 * checked against the access rule and joined. The waits are retried in passes, a bounded
 * number per call, so that the loop keeps answering peers and operators during a large
 * backlog. May call: access.c, state.c, keycache.c, ledger.c, proto, crdt.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Try to merge one waiting body. Sets *done or *why. */
/* A held body that this node has decided not to merge: logged once with why, marked refused
 * in the store (it stays held and served), and done. */
static node_err refuse(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const char *event, const char *scope, const char *why, const char *detail, bool *done)
{
    char hex[65];
    const node_member *m = node__member_by_origin(c->e, h->origin);
    if (m == NULL)
        proto_hex_encode(h->origin, 32, hex);
    NODE_WARN(event, "org=%s seq=%" PRIu64 " scope=%s reason=\"%s\" detail=\"%s\"",
        m != NULL ? m->org : hex, h->seq, scope, why, detail);
    *done = true;
    c->refused++;
    return node__ledger_applied_put(t, w->id, LEDGER_REFUSED);
}

/* A key grant held here: opened into the key record of its (case, scope, epoch), or refused.
 * One that is not for this node is done (it is held for others). */
static node_err apply_grant(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const void *body, size_t len, bool *done)
{
    node_engine *e = c->e;
    proto_diag diag = { 0, "" };
    proto_scope_key *sk = NULL;
    proto_err perr = proto_key_grant_open(h, e->me, body, len, &e->lim, &sk, &diag);
    if (perr == PROTO_ENOTRECIPIENT) {
        *done = true;
        return NODE_OK;
    }
    if (perr != PROTO_OK)
        return refuse(t, c, w, h, "grant.reject", "?", proto_strerror(perr), diag.reason, done);
    ledger_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.tag, proto_scope_key_tag(sk), 32);
    k.case_id = *proto_scope_key_case(sk);
    snprintf(k.scope, sizeof(k.scope), "%s", proto_scope_key_scope(sk));
    k.epoch = proto_scope_key_epoch(sk);
    memcpy(k.owner, h->origin, 32);
    proto_scope_key_export(sk, k.key);
    proto_scope_key_free(sk);
    node_err err = node__ledger_key_put(t, &k);
    proto_wipe(&k, sizeof(k));
    if (err == NODE_OK)
        err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
    *done = true;
    c->progress++;
    return err;
}

/* Is a delta's clock so far ahead of this node's that it must wait (ARCHITECTURE.md, section 5,
 * "Waits")? */
static bool clock_ahead(apply_ctx *c, const proto_header *h, wait_reason was)
{
    uint64_t now = node__now(c->e);
    if (h->hlc.wall <= now || h->hlc.wall - now <= c->e->cfg.max_clock_ahead_ms)
        return false;
    if (was != WAIT_CLOCK) {
        char hex[65];
        const node_member *m = node__member_by_origin(c->e, h->origin);
        if (m == NULL)
            proto_hex_encode(h->origin, 32, hex);
        NODE_WARN("delta.wait", "org=%s seq=%" PRIu64 " reason=\"clock ahead\" ahead_ms=%" PRIu64,
            m != NULL ? m->org : hex, h->seq, h->hlc.wall - now);
    }
    return true;
}

/* A decrypted delta under key k: checked against the access rule and joined into the state
 * of its scope, or refused, or left waiting for its causal past. */
static node_err merge_delta(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const ledger_key *k, const proto_body *plain, bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    proto_diag diag = { 0, "" };
    crdt_scope *delta = NULL, *state = NULL;
    node_err err = NODE_OK;
    if (proto_scope_decode(plain->delta.p, plain->delta.len, &e->lim, NULL, &delta, &diag)
        != PROTO_OK) {
        err = refuse(t, c, w, h, "delta.reject", k->scope, "bad scope encoding", diag.reason, done);
        goto out;
    }
    if (!node__entries_by(delta, h->origin)) {
        err = refuse(t, c, w, h, "delta.reject", k->scope, "an entry carries another member's dot",
            "", done);
        goto out;
    }
    if ((err = node__ledger_state_get(t, h->tag, &e->lim, &state)) != NODE_OK)
        goto out;
    switch (node__authorise(e, k, state, h->origin, plain, delta)) {
    case NODE_AUTH_WAIT:
        *why = WAIT_CAUSAL;
        goto out;
    case NODE_AUTH_NO:
        err = refuse(t, c, w, h, "delta.refuse", k->scope,
            "no write grant in the delta's causal past", "", done);
        goto out;
    case NODE_AUTH_OK:
        break;
    }
    crdt_err cerr = crdt_scope_join(state, delta);
    if (cerr == CRDT_ENOMEM) {
        err = NODE_ENOMEM;
    } else if (cerr != CRDT_OK) {
        err = refuse(t, c, w, h, "delta.reject", k->scope, crdt_strerror(cerr), "", done);
    } else if ((err = node__ledger_state_put(t, h->tag, state, node__now(e))) == NODE_OK
        && (err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED)) == NODE_OK) {
        *done = true;
        c->progress++;
    }
out:
    crdt_scope_free(delta);
    crdt_scope_free(state);
    return err;
}

/* A delta held here: once its key is here and its clock is not too far ahead, decrypted and
 * merged (merge_delta). */
static node_err apply_delta(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const void *body, size_t len, bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    ledger_key k;
    if (node__ledger_key_get(t, h->tag, &k) != NODE_OK) {
        *why = WAIT_KEY;
        return NODE_OK;
    }
    node_err err = NODE_OK;
    proto_scope_key *sk = NULL;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    proto_diag diag = { 0, "" };
    proto_err perr = PROTO_OK;
    if (clock_ahead(c, h, *why)) {
        *why = WAIT_CLOCK;
    } else if ((err = node__keycache_get(e, &k, &sk)) != NODE_OK) {
        /* the key record does not make a key: err says so */
    } else if ((perr = proto_body_open(h, sk, body, len, &e->lim, &plain, &diag)) != PROTO_OK) {
        err = refuse(t, c, w, h, "delta.reject", k.scope, proto_strerror(perr), diag.reason, done);
    } else if (plain.kind != PROTO_BODY_DELTA) {
        /* Erasure (forget) is later work: keep the body, merge nothing. */
        NODE_WARN("delta.skip", "scope=%s seq=%" PRIu64 " reason=\"forget not implemented\"",
            k.scope, h->seq);
        err = node__ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
    } else {
        err = merge_delta(t, c, w, h, &k, &plain, done, why);
    }
    proto_body_fini(&plain);
    proto_wipe(&k, sizeof(k));
    return err;
}

node_err node__apply_one(node_txn *t, apply_ctx *c, const node_wait *w, const node_held *held,
    bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    *done = false;
    *why = w->why;
    if (node__ledger_applied_get(t, w->id) != 0) {
        *done = true;
        return NODE_OK;
    }
    if (w->kind == PROTO_HDR_DELTA) {
        /* Most waits wait for their key: tell that without decoding anything. */
        ledger_key probe;
        bool have = node__ledger_key_get(t, w->tag, &probe) == NODE_OK;
        proto_wipe(&probe, sizeof(probe));
        if (!have) {
            *why = WAIT_KEY;
            return NODE_OK;
        }
    }
    if (held != NULL)
        return held->h->kind == PROTO_HDR_KEY_GRANT
            ? apply_grant(t, c, w, held->h, held->body, held->len, done)
            : apply_delta(t, c, w, held->h, held->body, held->len, done, why);
    const void *hb, *bb;
    size_t hl, bl;
    if (node__ledger_header_by_id(t, w->id, &hb, &hl) != NODE_OK
        || node__ledger_body_get(t, w->id, &bb, &bl) != NODE_OK) {
        *done = true;
        return NODE_OK;
    }
    proto_header h;
    if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    node_err err = h.kind == PROTO_HDR_KEY_GRANT ? apply_grant(t, c, w, &h, bb, bl, done)
                                                 : apply_delta(t, c, w, &h, bb, bl, done, why);
    proto_header_fini(&h);
    return err;
}

static node_err apply_cb(node_txn *t, void *ctx)
{
    apply_ctx *c = ctx;
    c->progress = c->refused = 0;
    for (size_t i = 0; i < c->n; i++) {
        node_err err
            = node__apply_one(t, c, &c->e->waits.v[c->from + i], NULL, &c->done[i], &c->why[i]);
        if (err != NODE_OK)
            return err;
    }
    return NODE_OK;
}

/* Bodies tried in one transaction (1024: about 60 ms of work, one fsync), and in one call
 * (one loop turn): a large backlog (a key that unlocks thousands of bodies, a restart) is
 * merged over several turns, so that the loop keeps answering peers and operators meanwhile. */
#define APPLY_BATCH 1024
#define APPLY_TURN 2048

/* One transaction over waits [from, from + n). Returns how many were merged (or refused, or
 * found not ours), or SIZE_MAX on error; the list is compacted. */
static size_t apply_batch(node_engine *e, size_t from, size_t n)
{
    apply_ctx c
        = { e, from, n, calloc(n ? n : 1, sizeof(wait_reason)), calloc(n ? n : 1, 1), 0, 0 };
    size_t finished = SIZE_MAX;
    node_errmsg msg;
    if (c.why == NULL || c.done == NULL)
        goto out;
    if (node_store_write(e->store, apply_cb, &c, &msg) != NODE_OK) {
        NODE_ERROR("apply.fail", "error=\"%s\"", msg.text);
        goto out;
    }
    e->refused += c.refused;
    size_t w = from;
    finished = 0;
    for (size_t i = 0; i < n; i++) {
        if (c.done[i]) {
            finished++;
            continue;
        }
        e->waits.v[from + i].why = c.why[i];
        e->waits.v[w++] = e->waits.v[from + i];
    }
    memmove(&e->waits.v[w], &e->waits.v[from + n], (e->waits.n - from - n) * sizeof(*e->waits.v));
    e->waits.n -= finished;
    e->apply_progress += c.progress;
out:
    free(c.why);
    free(c.done);
    return finished;
}

void node__retry_waits(node_engine *e)
{
    /* Passes go round the list from a cursor; each pass may unlock the next (a key, then the
     * deltas under it, then those that depend on them): repeat while passes make progress,
     * within APPLY_TURN tries per call, and continue on the next loop turn when it is used up. */
    size_t budget = APPLY_TURN;
    if (e->retry_at == 0)
        e->apply_progress = 0;
    while (e->waits.n > 0 && budget > 0) {
        if (e->retry_at >= e->waits.n) {
            /* A pass ended: another one only if it merged something. */
            e->retry_at = 0;
            if (e->apply_progress == 0)
                break;
            e->apply_progress = 0;
            if (++e->retry_passes >= 64)
                break;
        }
        size_t n = e->waits.n - e->retry_at;
        if (n > APPLY_BATCH)
            n = APPLY_BATCH;
        if (n > budget)
            n = budget;
        size_t finished = apply_batch(e, e->retry_at, n);
        if (finished == SIZE_MAX)
            break;
        budget -= n;
        e->retry_at += n - finished;
    }
    bool more = e->waits.n > 0 && budget == 0 && e->retry_passes < 64;
    if (!more) {
        e->retry_at = 0;
        e->retry_passes = 0;
        e->apply_progress = 0;
    }
    if (node__waits_reindex(e) != NODE_OK)
        NODE_ERROR("apply.fail", "error=\"out of memory indexing waiting bodies\"");
    if (more && !e->stopping)
        e->host.schedule(e->host.ctx, NODE_WORK_APPLY, 0);
}
