/*
 * Where access ends at this node: the destruction primitive (a (case, scope)'s keys, bodies,
 * state and access log gone, its headers kept), and what a narrowing of this node's own org
 * does here: its own writes beyond the cut are listed, the scope is closed, and purged when
 * the grant it ends rested on consent. Everything runs inside the caller's transaction.
 * May call: keycache.c, ledger.c, access.c, proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The tags of a scope's keys, to close them in the key cache once their records are gone. */
typedef struct tag_list {
    uint8_t v[PROTO_GRANT_EPOCHS_MAX][32];
    size_t n;
} tag_list;

static bool tag_cb(const ledger_key *k, void *ctx)
{
    tag_list *l = ctx;
    if (l->n < PROTO_GRANT_EPOCHS_MAX)
        memcpy(l->v[l->n++], k->tag, 32);
    return true;
}

node_err node__destroy_scope(
    node_txn *t, node_engine *e, const proto_case_id *c, const char *scope, size_t *bodies)
{
    tag_list *tags = calloc(1, sizeof(*tags));
    if (tags == NULL)
        return NODE_ENOMEM;
    node_err err = node__ledger_scope_keys(t, c, scope, tag_cb, tags);
    if (err == NODE_OK)
        err = node__ledger_scope_destroy(t, c, scope, proto_identity_origin(e->me), bodies);
    if (err == NODE_OK)
        err = node__inbox_forget_case(t, c);
    if (err == NODE_OK) {
        for (size_t i = 0; i < tags->n; i++)
            node__keycache_drop(e, tags->v[i]);
        node__scope_moved(e, c, scope);
    }
    free(tags);
    return err;
}

/* The newest epoch of k's scope whose key is held here. */
static bool epoch_cb(const ledger_key *k, void *ctx)
{
    uint64_t *e = ctx;
    if (k->epoch > *e)
        *e = k->epoch;
    return true;
}

static uint64_t newest_epoch(node_txn *t, const ledger_key *k)
{
    uint64_t e = k->epoch;
    (void)node__ledger_scope_keys(t, &k->case_id, k->scope, epoch_cb, &e);
    return e;
}

/* This node's own headers under a scope's tags beyond the cut for its origin. */
typedef struct own_beyond {
    node_txn *t;
    const uint8_t *me;
    uint64_t cut;
    uint32_t n;
    uint64_t first; /* the lowest such seq */
} own_beyond;

static bool own_id_cb(const uint8_t id[32], void *ctx)
{
    own_beyond *o = ctx;
    uint8_t origin[32];
    uint64_t seq;
    if (node__ledger_place(o->t, id, origin, &seq) == NODE_OK && memcmp(origin, o->me, 32) == 0
        && seq > o->cut && node__ledger_applied_get(o->t, id) != 0) {
        o->n++;
        if (o->first == 0 || seq < o->first)
            o->first = seq;
    }
    return true;
}

typedef struct own_keys {
    own_beyond *o;
    node_err err;
} own_keys;

static bool own_key_cb(const ledger_key *k, void *ctx)
{
    own_keys *ok = ctx;
    ok->err = node__ledger_tag_headers(ok->o->t, k->tag, own_id_cb, ok->o);
    return ok->err == NODE_OK;
}

/* The inbox row of an access-log entry en naming this node's org. */
static node_err inbox_entry(
    node_txn *t, node_engine *e, const ledger_key *k, const ledger_entry *en, uint8_t kind)
{
    node_inbox_item it;
    node__inbox_item(&it, node__now(e), kind, &k->case_id, k->scope, k->owner_org);
    it.entry = en->number;
    it.access = en->access;
    it.basis = en->basis;
    it.reason = en->reason;
    it.until_ms = en->expiry_ms;
    snprintf(it.purpose, sizeof(it.purpose), "%s", en->purpose);
    return node__inbox_add(t, &it);
}

node_err node__granted_here(
    node_txn *t, node_engine *e, const ledger_key *k, const ledger_entry *en)
{
    ledger_closed x;
    node_err err = inbox_entry(t, e, k, en, NODE_INBOX_SHARED);
    if (err != NODE_OK)
        return err;
    err = node__ledger_closed_get(t, &k->case_id, k->scope, &x);
    if (err == NODE_ENOTFOUND)
        return NODE_OK;
    if (err != NODE_OK)
        return err;
    if (x.entry < en->number)
        return node__ledger_closed_del(t, &k->case_id, k->scope); /* granted again */
    /* A grant from before the narrowing, come after it (bodies arrive in any order): the grant
     * the narrowing ended is known better now, and with it whether the scope is purged. */
    ledger_entry *ended = malloc(sizeof(*ended));
    if (ended == NULL)
        return NODE_ENOMEM;
    if (node__grant_for(t, &k->case_id, k->scope, e->cfg.org, x.entry - 1, ended))
        x.basis = ended->basis;
    free(ended);
    bool consent = x.basis == PROTO_BASIS_CONSENT || x.basis == PROTO_BASIS_EXPLICIT_CONSENT;
    size_t bodies = 0;
    if (consent && x.access == PROTO_ACCESS_NONE && !x.purged) {
        if ((err = node__destroy_scope(t, e, &k->case_id, k->scope, &bodies)) != NODE_OK)
            return err;
        x.purged = true;
        char id[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(&k->case_id, id);
        NODE_WARN("access.narrowed",
            "case=%s scope=%s owner=%s entry=%" PRIu64 " detail=\"the grant it ended, come after "
            "it, rested on consent: purged\" purged=yes bodies_destroyed=%zu",
            id, k->scope, k->owner_org, x.entry, bodies);
    }
    return node__ledger_closed_put(t, &k->case_id, k->scope, &x);
}

node_err node__narrowed_here(node_txn *t, node_engine *e, const ledger_key *k,
    const ledger_entry *en, const ledger_entry *ended)
{
    /* An old narrowing taken again (after a purge, a later grant brought the keys back and the
     * log is read anew) changes nothing: a later grant stands, or it was recorded already. */
    bool later = false;
    ledger_closed was;
    node_err err = node__granted_after(t, &k->case_id, k->scope, e->cfg.org, en->number, &later);
    if (err != NODE_OK || later)
        return err;
    /* Nor when this node holds a key of an epoch after the narrowing's: only a later grant
     * brings it (the epoch the narrowing made goes to the others), its entry still on its way. */
    if (en->access == PROTO_ACCESS_NONE && newest_epoch(t, k) > en->epoch)
        return NODE_OK;
    if ((err = node__ledger_closed_get(t, &k->case_id, k->scope, &was)) == NODE_OK
        && was.entry >= en->number)
        return NODE_OK;
    if (err != NODE_OK && err != NODE_ENOTFOUND)
        return err;
    const uint8_t *me = proto_identity_origin(e->me);
    own_beyond o = { t, me, 0, 0, 0 };
    for (size_t i = 0; i < en->ncut; i++)
        if (memcmp(en->cut[i].origin, me, 32) == 0)
            o.cut = en->cut[i].seq;
    own_keys ok = { &o, NODE_OK };
    err = node__ledger_scope_keys(t, &k->case_id, k->scope, own_key_cb, &ok);
    if (err == NODE_OK)
        err = ok.err;
    if (err != NODE_OK)
        return err;
    ledger_closed x;
    memset(&x, 0, sizeof(x));
    x.entry = en->number;
    x.at_ms = en->hlc.wall;
    x.reason = en->reason;
    x.basis = ended != NULL ? ended->basis : 0;
    x.access = en->access;
    x.refused
        = en->access == PROTO_ACCESS_NONE || ended == NULL || ended->access == PROTO_ACCESS_WRITE
        ? o.n
        : 0;
    snprintf(x.owner_org, sizeof(x.owner_org), "%s", k->owner_org);
    x.epoch = newest_epoch(t, k);
    /* Consent-based access that ends leaves nothing readable behind; public task and legal
     * obligation keep what was received, closed. */
    bool consent = x.basis == PROTO_BASIS_CONSENT || x.basis == PROTO_BASIS_EXPLICIT_CONSENT;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&k->case_id, id);
    size_t bodies = 0;
    if (en->access == PROTO_ACCESS_NONE && consent) {
        if ((err = node__destroy_scope(t, e, &k->case_id, k->scope, &bodies)) != NODE_OK)
            return err;
        x.purged = true;
    }
    if ((err = inbox_entry(t, e, k, en, NODE_INBOX_NARROWED)) != NODE_OK)
        return err;
    NODE_WARN("access.narrowed",
        "case=%s scope=%s owner=%s entry=%" PRIu64
        " reason=%s access=%s own_writes_refused=%" PRIu32 " first_refused_seq=%" PRIu64
        " purged=%s bodies_destroyed=%zu",
        id, k->scope, k->owner_org, en->number, node__narrow_reason(en->reason),
        proto_access_name(en->access) != NULL ? proto_access_name(en->access) : "none", x.refused,
        x.refused > 0 ? o.first : 0, x.purged ? "yes" : "no", bodies);
    return node__ledger_closed_put(t, &k->case_id, k->scope, &x);
}
