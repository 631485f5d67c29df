/*
 * Apply: deciding a body this node holds, once its key, what it names and its time have come: a
 * key grant addressed to this node opens into key records (its owner checked); a body under a
 * scope key is decrypted, and an access-log entry is recorded (from the owner only) or a delta
 * checked against the access rule and joined into the state of its scope. The waits are retried in
 * passes, a bounded number per call, so that the loop keeps answering peers and operators during a
 * large backlog. May call: rebuild.c, quota.c, park.c, gopen.c, access.c, state.c, keycache.c,
 * ledger.c, proto, crdt.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A body tried and left waiting for its causal past, in the (case, scope) of its tag: remember
 * the generations now (core.h, node_engine.scope_gen). */
static void waits_now(node_txn *t, const node_engine *e, node_wait *w, bool done, wait_reason why)
{
    if (done || why != WAIT_CAUSAL || e->scope_gen == NULL)
        return;
    ledger_key k;
    if (node__ledger_key_get(t, w->tag, &k) == NODE_OK) {
        w->gen_known = true;
        w->scope_slot = node__scope_slot(&k.case_id, k.scope);
        w->scope_gen = e->scope_gen[w->scope_slot];
        w->all_gen = e->all_gen;
    }
    proto_wipe(&k, sizeof(k));
}

/* Nothing it may wait for moved since it was last tried. */
static bool wait_stands(const node_engine *e, const node_wait *w)
{
    return w->why == WAIT_CAUSAL && w->gen_known && e->scope_gen != NULL && w->all_gen == e->all_gen
        && e->scope_gen[w->scope_slot] == w->scope_gen;
}

/* A held body that this node has decided not to merge: logged once with why, marked refused
 * (or void) in the store (it stays held and served), and done. */
static node_err not_merged(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const char *event, const char *scope, const char *why, const char *detail, bool *done,
    ledger_applied how)
{
    char hex[65];
    const node_member *m = node__author(c->e, h->origin, NULL);
    if (m == NULL)
        proto_hex_encode(h->origin, 32, hex);
    NODE_WARN(event, "org=%s seq=%" PRIu64 " scope=%s reason=\"%s\" detail=\"%s\"",
        m != NULL ? m->org : hex, h->seq, scope, why, detail);
    *done = true;
    c->refused++;
    return node__ledger_applied_put(t, w->id, how);
}

static node_err refuse(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const char *event, const char *scope, const char *why, const char *detail, bool *done)
{
    return not_merged(t, c, w, h, event, scope, why, detail, done, LEDGER_REFUSED);
}

/* Want the bodies of every header of this tag that this node lacks: a key has just made them
 * readable here. The wants are adopted after the commit (node__apply_adopt). */
typedef struct tag_want {
    apply_ctx *c;
    node_txn *t;
    const uint8_t *tag;
    node_err err;
} tag_want;

static bool tag_want_cb(const uint8_t id[32], void *ctx)
{
    tag_want *w = ctx;
    uint8_t origin[32];
    uint64_t seq;
    /* the tag index names the id, its 'I' record the place (the header is not decoded) */
    if (node__ledger_body_has(w->t, id) || node__ledger_place(w->t, id, origin, &seq) != NODE_OK)
        return true;
    node_want *nw = NODE_VEC_PUSH(&w->c->wants, NODE_WANTS_MAX);
    if (nw == NULL) {
        w->err = NODE_ENOMEM;
        return false;
    }
    memcpy(nw->id, id, 32);
    memcpy(nw->tag, w->tag, 32);
    memcpy(nw->origin, origin, 32);
    nw->seq = seq;
    nw->since_ms = 1; /* held for a while: asked for at once (node__want_add) */
    return true;
}

static node_err want_tag(node_txn *t, apply_ctx *c, const uint8_t tag[32])
{
    tag_want w = { c, t, tag, NODE_OK };
    node_err err = node__ledger_tag_headers(t, tag, tag_want_cb, &w);
    return err != NODE_OK ? err : w.err;
}

node_err node__apply_adopt(node_engine *e, apply_ctx *c)
{
    node_err err = NODE_OK;
    for (size_t i = 0; i < c->wants.n && err == NODE_OK; i++) {
        err = node__quota_want(e, &c->wants.v[i]);
        node__park_wanted(e, &c->wants.v[i]);
    }
    NODE_VEC_FREE(&c->wants);
    return err;
}

/* Keys of (case, scope) already held here, to compare a grant's with. */
typedef struct held_keys {
    ledger_key *v;
    size_t n;
} held_keys;

static bool held_keys_cb(const ledger_key *k, void *ctx)
{
    held_keys *h = ctx;
    if (h->n < PROTO_GRANT_EPOCHS_MAX)
        h->v[h->n++] = *k;
    return true;
}

/* Is there an epoch announcement for k's epoch in its scope's access log, with k's hash? */
static bool announced(node_txn *t, const ledger_key *k, const proto_scope_key *sk)
{
    uint8_t want[32];
    proto_epoch_key_hash(sk, want);
    ledger_entry *en = malloc(sizeof(*en));
    bool ok = false;
    for (uint64_t n = 1; en != NULL && !ok; n++) {
        if (node__ledger_entry_get(t, &k->case_id, k->scope, n, en) != NODE_OK)
            break;
        ok = en->kind == PROTO_BODY_ACCESS_EPOCH && en->new_epoch == k->epoch
            && memcmp(en->key_hash, want, 32) == 0;
    }
    free(en);
    return ok;
}

/* Take one key of a grant: a key of an epoch already held must be the same key (nothing
 * replaces a key); the first epoch's is taken as it comes, a later one is confirmed only by its
 * announcement in the access log (until then it is held unconfirmed, and deltas under it wait). */
static node_err take_key(node_txn *t, apply_ctx *c, const proto_grant *g, proto_scope_key *sk,
    const held_keys *held, const proto_header *h)
{
    ledger_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.tag, proto_scope_key_tag(sk), 32);
    k.case_id = g->case_id;
    k.nonce = g->nonce;
    snprintf(k.scope, sizeof(k.scope), "%s", proto_scope_key_scope(sk));
    snprintf(k.owner_org, sizeof(k.owner_org), "%s", g->owner_org);
    k.epoch = proto_scope_key_epoch(sk);
    proto_scope_key_export(sk, k.key);
    node_err err = NODE_OK;
    for (size_t i = 0; i < held->n; i++) {
        if (held->v[i].epoch != k.epoch)
            continue;
        if (memcmp(held->v[i].key, k.key, 32) != 0)
            NODE_WARN("grant.key",
                "owner=%s seq=%" PRIu64 " epoch=%" PRIu64
                " reason=\"another key for an epoch already held: kept the one held\"",
                g->owner_org, h->seq, k.epoch);
        goto out;
    }
    k.confirmed = k.epoch == PROTO_EPOCH_FIRST || announced(t, &k, sk);
    if ((err = node__ledger_key_put(t, &k)) == NODE_OK && k.confirmed)
        err = want_tag(t, c, k.tag);
out:
    proto_wipe(&k, sizeof(k));
    return err;
}

/* The keys g.keys[from..to) of one scope of a grant taken. A scope whose access ended here takes
 * keys again only from a later grant: one that brings an epoch after those it held then (an old
 * grant come late is kept, not taken: a purge stays a purge). held is scratch space. */
static node_err take_scope_keys(node_txn *t, apply_ctx *c, const proto_grant *g, size_t from,
    size_t to, held_keys *held, const proto_header *h)
{
    const char *scope = proto_scope_key_scope(g->keys[from]);
    ledger_closed x;
    memset(&x, 0, sizeof(x));
    bool closed = node__ledger_closed_get(t, &g->case_id, scope, &x) == NODE_OK
        && x.access == PROTO_ACCESS_NONE;
    bool newer = proto_scope_key_epoch(g->keys[to - 1]) > x.epoch;
    if (closed && !newer)
        return NODE_OK; /* kept, decided: nothing taken */
    held->n = 0;
    node_err err = node__ledger_scope_keys(t, &g->case_id, scope, held_keys_cb, held);
    for (size_t i = from; i < to && err == NODE_OK; i++)
        err = take_key(t, c, g, g->keys[i], held, h);
    if (err == NODE_OK && closed)
        err = node__ledger_closed_del(t, &g->case_id, scope); /* granted again */
    /* what the closed scope did not take under the keys it kept is asked for again */
    for (size_t i = 0; err == NODE_OK && closed && i < held->n; i++)
        if (held->v[i].confirmed)
            err = want_tag(t, c, held->v[i].tag);
    return err;
}

/* A key grant held here: when one of its hint slots is this node's, opened, its owner checked
 * (the case id derives from the owner org and the nonce, and the header's author is a key of
 * that org), and its keys taken. One that is not for this node is done (it is held for
 * others). */
static node_err apply_grant(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const void *body, size_t len, bool *done)
{
    node_engine *e = c->e;
    const proto_member_key *key;
    node_member *author = node__author(e, h->origin, &key);
    if (author == NULL) {
        *done = true; /* not held: node__may_hold admits a grant of a listed author only */
        return NODE_OK;
    }
    int slot = node__grant_slot(e, h, key->box_pk);
    if (slot < 0) {
        /* A grant to another holder of a scope this node reads: held to pass on. */
        *done = true;
        return node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
    }
    proto_diag diag = { 0, "" };
    proto_grant g;
    memset(&g, 0, sizeof(g));
    proto_err perr;
    if (!node__gopen_take(e, h, slot, &g, &perr, &diag)) /* opened on the workers (gopen.c) */
        perr = proto_key_grant_open_slot(h, e->me, slot, body, len, &e->lim, &g, &diag);
    if (perr != PROTO_OK)
        return refuse(t, c, w, h, "grant.reject", "?", proto_strerror(perr), diag.reason, done);
    node_err err = NODE_OK;
    const char *first = g.nkeys > 0 ? proto_scope_key_scope(g.keys[0]) : "?";
    if (strcmp(g.owner_org, author->org) != 0) {
        err = refuse(t, c, w, h, "grant.reject", first, "a key grant for a case another org owns",
            g.owner_org, done);
    } else if (strcmp(g.owner_org, e->cfg.org) == 0) {
        err = refuse(
            t, c, w, h, "grant.reject", first, "a key grant for a case this node owns", "", done);
    } else {
        held_keys held = { calloc(PROTO_GRANT_EPOCHS_MAX, sizeof(ledger_key)), 0 };
        if (held.v == NULL)
            err = NODE_ENOMEM;
        /* each scope of the grant on its own (its keys are a run of g.keys) */
        for (size_t i = 0, end; err == NODE_OK && i < g.nkeys; i = end) {
            end = i + 1;
            const char *scope = proto_scope_key_scope(g.keys[i]);
            while (end < g.nkeys && strcmp(proto_scope_key_scope(g.keys[end]), scope) == 0)
                end++;
            err = take_scope_keys(t, c, &g, i, end, &held, h);
        }
        if (held.v != NULL)
            proto_wipe(held.v, PROTO_GRANT_EPOCHS_MAX * sizeof(ledger_key));
        free(held.v);
        if (err == NODE_OK)
            err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
        *done = true;
        c->progress++;
    }
    proto_grant_fini(&g);
    return err;
}

/* A note held here: when one of its hint slots is this node's, opened and kept for the close
 * pass (write.c, node__close_ended), which narrows what it names; only for a case this node
 * owns, and a drop only from the grantee's own org. One that is not for this node is done
 * (no node but its owner holds it). */
static node_err apply_note(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const void *body, size_t len, bool *done)
{
    node_engine *e = c->e;
    const proto_member_key *key;
    node_member *author = node__author(e, h->origin, &key);
    int slot = author != NULL ? node__grant_slot(e, h, key->box_pk) : -1;
    *done = true;
    if (slot < 0)
        return author == NULL ? NODE_OK : node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
    ledger_note *rec = calloc(1, sizeof(*rec));
    if (rec == NULL)
        return NODE_ENOMEM;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_note_open_slot(h, e->me, slot, body, len, &e->lim, &rec->note, &diag);
    node_err err = NODE_OK;
    const proto_note *n = &rec->note;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&n->case_id, id);
    if (perr != PROTO_OK) {
        err = refuse(t, c, w, h, "note.reject", "?", proto_strerror(perr), diag.reason, done);
    } else if (strcmp(n->owner_org, e->cfg.org) != 0
        || !node__ledger_case_owned(t, &n->case_id, NULL)) {
        err = refuse(t, c, w, h, "note.reject", n->scopes[0],
            "a note for a case this node does not own", id, done);
    } else if (n->kind == PROTO_NOTE_DROP && strcmp(n->grantee, author->org) != 0) {
        err = refuse(t, c, w, h, "note.reject", n->scopes[0], "a drop of another org's grant",
            n->grantee, done);
    } else {
        memcpy(rec->id, h->id, 32);
        rec->state = LEDGER_NOTE_PENDING;
        rec->at_ms = node__now(e);
        snprintf(rec->author_org, sizeof(rec->author_org), "%s", author->org);
        node_inbox_item it;
        node__inbox_item(&it, rec->at_ms,
            n->kind == PROTO_NOTE_DROP ? NODE_INBOX_DROP : NODE_INBOX_WITHDRAWAL, &n->case_id,
            n->scopes[0], author->org);
        it.entry = node__ledger_get64(h->id);
        snprintf(it.purpose, sizeof(it.purpose), "%s", n->grantee);
        if ((err = node__ledger_note_put(t, false, rec)) == NODE_OK
            && (err = node__inbox_add(t, &it)) == NODE_OK)
            err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
        NODE_INFO("consent.note", "case=%s kind=%s grantee=%s scopes=%zu from=%s operator=\"%s\"",
            id, n->kind == PROTO_NOTE_DROP ? "drop" : "withdrawal", n->grantee, n->nscopes,
            author->org, node__logq(n->operator_name));
        e->ended_due_ms = 0; /* the close pass takes it at the next tick */
        c->progress++;
    }
    proto_wipe(rec, sizeof(*rec));
    free(rec);
    return err;
}

/* Is there a key of this epoch held unconfirmed? Confirm it when its hash matches. */
typedef struct confirm_ctx {
    const ledger_entry *en;
    ledger_key found;
    bool have;
} confirm_ctx;

static bool confirm_cb(const ledger_key *k, void *ctx)
{
    confirm_ctx *c = ctx;
    if (k->epoch != c->en->new_epoch)
        return true;
    c->found = *k;
    c->have = true;
    return false;
}

static node_err confirm_epoch(
    node_txn *t, apply_ctx *c, const ledger_key *k, const ledger_entry *en)
{
    confirm_ctx cc;
    memset(&cc, 0, sizeof(cc));
    cc.en = en;
    node_err err = node__ledger_scope_keys(t, &k->case_id, k->scope, confirm_cb, &cc);
    if (err != NODE_OK || !cc.have || cc.found.confirmed)
        goto out;
    proto_scope_key *sk = NULL;
    if (proto_scope_key_from_bytes(
            &cc.found.case_id, cc.found.scope, cc.found.epoch, cc.found.key, &sk)
        != PROTO_OK) {
        err = NODE_ECORRUPT;
        goto out;
    }
    uint8_t hash[32];
    proto_epoch_key_hash(sk, hash);
    proto_scope_key_free(sk);
    if (memcmp(hash, en->key_hash, 32) != 0) {
        NODE_WARN("grant.key",
            "scope=%s epoch=%" PRIu64 " reason=\"the key held for this epoch is not the one its "
            "announcement names: not used\"",
            k->scope, en->new_epoch);
        goto out;
    }
    cc.found.confirmed = true;
    if ((err = node__ledger_key_put(t, &cc.found)) == NODE_OK)
        err = want_tag(t, c, cc.found.tag);
out:
    proto_wipe(&cc.found, sizeof(cc.found));
    return err;
}

/* An access-log entry of the scope of k: only from the case owner's authentic headers; numbered
 * once (a second entry under a number held waits, below). An epoch announcement confirms the key of
 * its epoch when this node holds it already (held unconfirmed). */
static node_err apply_entry(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const ledger_key *k, const node_member *author, const proto_body *plain, bool *done,
    wait_reason *why)
{
    if (!node__is_owner(k, author))
        return refuse(t, c, w, h, "access.reject", k->scope,
            "an access-log entry from a member that does not own the case", "", done);
    ledger_entry *en = calloc(1, sizeof(*en));
    if (en == NULL)
        return NODE_ENOMEM;
    node_err err = node__ledger_entry_get(t, &k->case_id, k->scope, plain->entry, en);
    if (err == NODE_OK) {
        bool same = memcmp(en->id, h->id, 32) == 0;
        free(en);
        if (same) {
            *done = true;
            return node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
        }
        /* A second entry under a number held: the owner forked (the one held is void once the
         * proof comes, and the rebuild drops it), or wrote two under one number. It waits, so
         * that whichever came first, the one that stands is the same at every node once the
         * fork is known. */
        if (*why != WAIT_CAUSAL)
            NODE_WARN("access.fork",
                "scope=%s seq=%" PRIu64 " entry=%" PRIu64
                " detail=\"a second access-log entry under a number held: it waits\"",
                k->scope, h->seq, plain->entry);
        *why = WAIT_CAUSAL;
        return NODE_OK;
    }
    if (err != NODE_ENOTFOUND) {
        free(en);
        return err;
    }
    memset(en, 0, sizeof(*en));
    en->number = plain->entry;
    en->kind = plain->kind;
    memcpy(en->id, h->id, 32);
    en->hlc = h->hlc;
    en->epoch = plain->epoch;
#define COPY(dst, b) snprintf(dst, sizeof(dst), "%.*s", (int)(b).len, (const char *)(b).p)
    if (plain->kind == PROTO_BODY_ACCESS_GRANT) {
        const proto_access *a = &plain->grant;
        COPY(en->grantee, a->grantee);
        COPY(en->purpose, a->purpose);
        COPY(en->provision, a->provision);
        COPY(en->operator_name, a->operator_name);
        COPY(en->unix_user, a->unix_user);
        COPY(en->evidence, a->evidence);
        en->access = a->access;
        en->basis = a->basis;
        en->expiry_ms = a->expiry_ms;
    } else if (plain->kind == PROTO_BODY_ACCESS_NARROW) {
        const proto_narrow *n = &plain->narrow;
        COPY(en->grantee, n->grantee);
        COPY(en->operator_name, n->operator_name);
        COPY(en->unix_user, n->unix_user);
        COPY(en->evidence, n->note);
        en->access = n->access;
        en->reason = n->reason;
        en->ncut = n->ncut;
        if (n->ncut > 0) /* (an empty cut may have no array) */
            memcpy(en->cut, n->cut, n->ncut * sizeof(*n->cut));
    } else {
        en->new_epoch = plain->new_epoch;
        memcpy(en->key_hash, plain->key_hash, 32);
    }
#undef COPY
    /* the grant a narrowing of this node's org ends, as it stood before it */
    ledger_entry *ended = NULL;
    bool here = plain->kind == PROTO_BODY_ACCESS_NARROW && strcmp(en->grantee, c->e->cfg.org) == 0;
    err = NODE_OK;
    if (here && (ended = malloc(sizeof(*ended))) == NULL) {
        err = NODE_ENOMEM;
    } else if (here
        && !node__grant_for(t, &k->case_id, k->scope, en->grantee, en->number - 1, ended)) {
        free(ended);
        ended = NULL;
    }
    if (err == NODE_OK)
        err = node__ledger_entry_put(t, &k->case_id, k->scope, en);
    if (err == NODE_OK && plain->kind == PROTO_BODY_ACCESS_EPOCH)
        err = confirm_epoch(t, c, k, en);
    /* A narrowing may cut deltas this node merged already: its scope is decided again. */
    if (err == NODE_OK && plain->kind == PROTO_BODY_ACCESS_NARROW)
        err = node__rebuild_note(c, &k->case_id, k->scope);
    if (err == NODE_OK)
        err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED);
    if (err == NODE_OK && here)
        err = node__narrowed_here(t, c->e, k, en, ended);
    else if (err == NODE_OK && plain->kind == PROTO_BODY_ACCESS_GRANT
        && strcmp(en->grantee, c->e->cfg.org) == 0)
        err = node__granted_here(t, c->e, k, en);
    free(ended);
    free(en);
    *done = true;
    c->progress++;
    return err;
}

/* Is a delta's clock so far ahead of this node's that it must wait (ARCHITECTURE.md, section 5,
 * "Waits")? The wait delays the decision only: the header is stored and relayed already. */
static bool clock_ahead(apply_ctx *c, const proto_header *h, wait_reason was)
{
    uint64_t now = node__now(c->e);
    if (h->hlc.wall <= now || h->hlc.wall - now <= node__clock_ahead_ms(c->e))
        return false;
    if (was != WAIT_CLOCK) {
        char hex[65];
        const node_member *m = node__author(c->e, h->origin, NULL);
        if (m == NULL)
            proto_hex_encode(h->origin, 32, hex);
        NODE_WARN("delta.wait", "org=%s seq=%" PRIu64 " reason=\"clock ahead\" ahead_ms=%" PRIu64,
            m != NULL ? m->org : hex, h->seq, h->hlc.wall - now);
    }
    return true;
}

/* A partner's delta merged: its case's row of changes in the inbox. */
static node_err inbox_change(
    node_txn *t, node_engine *e, const ledger_key *k, const node_member *author)
{
    if (author->self)
        return NODE_OK;
    node_inbox_item it;
    node__inbox_item(&it, node__now(e), NODE_INBOX_CHANGED, &k->case_id, k->scope, author->org);
    it.count = 1;
    return node__inbox_add(t, &it);
}

/* A decrypted delta under key k: checked against the access rule and joined into the state of
 * its scope, or refused, or left waiting for what it names. */
static node_err merge_delta(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const ledger_key *k, const node_member *author, const proto_body *plain, bool *done,
    wait_reason *why)
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
    if ((err = node__ledger_state_get(t, h->tag, &e->lim, &state)) != NODE_OK)
        goto out;
    /* (a void header never gets here: apply_delta decides it before decrypting) */
    const char *reason = "";
    node_auth verdict = node__authorise(t, e, k, state, h, author, plain, delta, &reason);
    if (verdict == NODE_AUTH_WAIT) {
        *why = WAIT_CAUSAL;
        goto out;
    }
    if (node__dots_taken(state, delta, plain, h->origin)) {
        /* Another delta of its author created one of its dots: both are void, whichever came
         * first, so the scope is decided again (rebuild.c, once per transaction), this one
         * with it. */
        if ((err = not_merged(t, c, w, h, "delta.void", k->scope,
                 "another delta of its author created one of its dots", "", done, LEDGER_VOID))
            == NODE_OK)
            err = node__rebuild_note(c, &k->case_id, k->scope);
        goto out;
    }
    if (verdict == NODE_AUTH_NO) {
        /* Refused, its dots are joined as context only (so that its author's later deltas,
         * which name them, are not held back), as the rebuild does (rebuild.c). */
        if ((err = node__context_only(state, delta, plain, h->origin)) != NODE_OK
            || (err = node__ledger_state_put(t, h->tag, state, node__now(e))) != NODE_OK)
            goto out;
        err = refuse(t, c, w, h, "delta.refuse", k->scope, reason, "", done);
        goto out;
    }
    crdt_err cerr = crdt_scope_join(state, delta);
    if (cerr == CRDT_ENOMEM) {
        err = NODE_ENOMEM;
    } else if (cerr != CRDT_OK) {
        /* The checks above admit only what joins; a join that fails all the same is this
         * node's fault, not the author's: alert, and keep the body for another try. */
        NODE_ERROR("delta.join", "scope=%s seq=%" PRIu64 " error=\"%s\"", k->scope, h->seq,
            crdt_strerror(cerr));
        *why = WAIT_CAUSAL;
    } else if ((err = node__ledger_state_put(t, h->tag, state, node__now(e))) == NODE_OK
        && (err = node__ledger_applied_put(t, w->id, LEDGER_APPLIED)) == NODE_OK
        && (err = inbox_change(t, e, k, author)) == NODE_OK) {
        *done = true;
        c->progress++;
    }
out:
    crdt_scope_free(delta);
    crdt_scope_free(state);
    return err;
}

/* A body under a scope key held here: once the key is confirmed and the header's clock is not
 * too far ahead, decrypted and decided by its kind: a delta (merge_delta), an access-log entry
 * (apply_entry). */
static node_err apply_delta(node_txn *t, apply_ctx *c, const node_wait *w, const proto_header *h,
    const void *body, size_t len, bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    ledger_key k;
    if (node__ledger_key_get(t, h->tag, &k) != NODE_OK || !k.confirmed) {
        proto_wipe(&k, sizeof(k));
        *why = WAIT_KEY;
        return NODE_OK;
    }
    node_err err = NODE_OK;
    proto_scope_key *sk = NULL;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    proto_diag diag = { 0, "" };
    proto_err perr = PROTO_OK;
    node_member *author = NULL;
    const char *inadmissible = node__header_admitted(e, h, &author);
    if (author == NULL) {
        *why = WAIT_CAUSAL; /* an org a later manifest may list */
    } else if (node__void(t, e, h)) {
        /* Nothing of a void header is merged, not even its dots: every later header of its
         * origin is void too, and other nodes may hold another branch (core.h). */
        err = not_merged(t, c, w, h, "delta.void", k.scope, NODE_VOID_WHY, "", done, LEDGER_VOID);
    } else if (inadmissible != NULL) {
        err = refuse(t, c, w, h, "delta.refuse", k.scope, inadmissible, "", done);
    } else if (clock_ahead(c, h, *why)) {
        *why = WAIT_CLOCK;
    } else if ((err = node__keycache_get(e, &k, &sk)) != NODE_OK) {
        /* the key record does not make a key: err says so */
    } else if ((perr = proto_body_open(h, sk, body, len, &e->lim, &plain, &diag)) != PROTO_OK) {
        err = refuse(t, c, w, h, "delta.reject", k.scope, proto_strerror(perr), diag.reason, done);
    } else if (plain.kind == PROTO_BODY_DELTA) {
        err = merge_delta(t, c, w, h, &k, author, &plain, done, why);
    } else if (plain.kind == PROTO_BODY_ACCESS_GRANT || plain.kind == PROTO_BODY_ACCESS_EPOCH
        || plain.kind == PROTO_BODY_ACCESS_NARROW) {
        err = apply_entry(t, c, w, h, &k, author, &plain, done, why);
    } else {
        /* Erasure (forget) is later work: keep the body, merge nothing. */
        NODE_WARN("delta.skip", "scope=%s seq=%" PRIu64 " reason=\"forget not implemented\"",
            k.scope, h->seq);
        err = node__ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
    }
    if (err == NODE_OK && *done)
        node__scope_moved(e, &k.case_id, k.scope); /* decided: its dots or entry are in */
    proto_body_fini(&plain);
    proto_wipe(&k, sizeof(k));
    return err;
}

/* The header's place in its origin's log, for the pending quota (quota.c). */
static void place(node_wait *w, const proto_header *h)
{
    memcpy(w->origin, h->origin, 32);
    w->seq = h->seq;
    w->placed = true;
}

node_err node__apply_one(
    node_txn *t, apply_ctx *c, node_wait *w, const node_held *held, bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    *done = false;
    *why = w->why;
    if (wait_stands(e, w))
        return NODE_OK; /* nothing it may wait for moved: not worth decrypting again */
    e->waits_retried += w->why == WAIT_CAUSAL;
    if (node__ledger_applied_get(t, w->id) != 0) {
        *done = true;
        return NODE_OK;
    }
    if (w->kind == PROTO_HDR_DELTA) {
        /* Most waits wait for their key: tell that without decoding anything. */
        ledger_key probe;
        bool have = node__ledger_key_get(t, w->tag, &probe) == NODE_OK && probe.confirmed;
        proto_wipe(&probe, sizeof(probe));
        if (!have) {
            /* its body gone too: its scope was destroyed here (purge.c), nothing to wait for */
            *done = !node__ledger_body_has(t, w->id);
            *why = WAIT_KEY;
            return NODE_OK;
        }
    }
    w->gen_known = false;
    if (held != NULL) {
        place(w, held->h);
        node_err err = held->h->kind == PROTO_HDR_KEY_GRANT
            ? apply_grant(t, c, w, held->h, held->body, held->len, done)
            : held->h->kind == PROTO_HDR_NOTE
            ? apply_note(t, c, w, held->h, held->body, held->len, done)
            : apply_delta(t, c, w, held->h, held->body, held->len, done, why);
        if (err == NODE_OK)
            waits_now(t, e, w, *done, *why);
        return err;
    }
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
    place(w, &h);
    node_err err = h.kind == PROTO_HDR_KEY_GRANT ? apply_grant(t, c, w, &h, bb, bl, done)
        : h.kind == PROTO_HDR_NOTE               ? apply_note(t, c, w, &h, bb, bl, done)
                                                 : apply_delta(t, c, w, &h, bb, bl, done, why);
    proto_header_fini(&h);
    if (err == NODE_OK)
        waits_now(t, e, w, *done, *why);
    return err;
}

static node_err apply_cb(node_txn *t, void *ctx)
{
    apply_ctx *c = ctx;
    c->progress = c->refused = 0;
    c->wants.n = c->rebuild.n = 0; /* a rerun of the transaction starts again */
    for (size_t i = 0; i < c->n; i++) {
        node_err err
            = node__apply_one(t, c, &c->e->waits.v[c->from + i], NULL, &c->done[i], &c->why[i]);
        if (err != NODE_OK)
            return err;
    }
    return node__rebuild_noted(t, c);
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
    apply_ctx c = { .e = e,
        .from = from,
        .n = n,
        .why = calloc(n ? n : 1, sizeof(wait_reason)),
        .done = calloc(n ? n : 1, 1) };
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
    e->waits_done += finished;
    node__lists_due(e);
    e->apply_progress += c.progress;
    if (node__apply_adopt(e, &c) != NODE_OK)
        NODE_ERROR("apply.fail", "error=\"out of memory listing the bodies a key unlocked\"");
out:
    NODE_VEC_FREE(&c.wants);
    NODE_VEC_FREE(&c.rebuild);
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
        node__quota_keep(e); /* between passes: the list may be compacted */
    }
    if (node__waits_reindex(e) != NODE_OK)
        NODE_ERROR("apply.fail", "error=\"out of memory indexing waiting bodies\"");
    if (more && !e->stopping)
        e->host.schedule(e->host.ctx, NODE_WORK_APPLY, 0);
}
