/*
 * The access rule, in one place: who may read a tag (and so receive and hold its bodies), who
 * may write a scope, and what a delta may contain. Ownership comes from the key record (its
 * owner's origin); grants are the "@access" events of the scope's state; a write needs a
 * write grant in the causal past the delta claims. May call: state.c (members), ledger.c.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Is this node a reader of bodies with this tag (key held, or granted by a grant header)? */
bool node__reads_tag(node_txn *t, node_engine *e, const uint8_t tag[32])
{
    ledger_key k;
    bool have = node__ledger_key_get(t, tag, &k) == NODE_OK;
    proto_wipe(&k, sizeof(k));
    return have || node__ledger_holds(t, tag, proto_identity_origin(e->me));
}

/* Every entry a delta adds must be its author's own event: a dot of the author (a counter
 * entry: of crdt_counter_origin(author, field)); only a redaction names another's event.
 * Otherwise a member could forge entries in another member's name, or take a dot that
 * member will use and make its later delta conflict. */
bool node__entries_by(const crdt_scope *delta, const uint8_t author[32])
{
    const crdt_origin *a = (const crdt_origin *)(const void *)author;
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) != CRDT_OK)
            return false;
        if (en.type == CRDT_TIMELINE && en.redacted)
            continue;
        crdt_origin want = *a;
        if (en.type == CRDT_COUNTER) {
            char field[CRDT_FIELD_MAX + 1];
            memcpy(field, en.field.p, en.field.len);
            field[en.field.len] = 0;
            crdt_counter_origin(a, field, &want);
        }
        if (crdt_origin_cmp(&en.dot.origin, &want) != 0)
            return false;
    }
    return true;
}

/* Does the delta write or remove a reserved field (the access map, "@...")? A removal shows
 * only in its context: it covers the dots of state entries it does not carry. */
static bool touches_reserved(const crdt_scope *delta, const crdt_scope *state)
{
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) == CRDT_OK && en.field.len > 0
            && en.field.p[0] == '@')
            return true;
    }
    const crdt_cc *cc = crdt_scope_cc(delta);
    n = crdt_scope_entry_count(state);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(state, i, &en) == CRDT_OK && en.field.len > 0
            && en.field.p[0] == '@' && crdt_cc_contains(cc, &en.dot))
            return true;
    }
    return false;
}

/* The access a member holds in a scope as of version vector vv: the newest @access event
 * for its org whose dot lies in vv. */
uint8_t node__access_as_of(const crdt_scope *state, const char *org, const crdt_vv_entry *vv,
    size_t nvv, const proto_limits *lim)
{
    size_t n;
    uint8_t level = PROTO_ACCESS_NONE;
    if (crdt_timeline_count(state, PROTO_ACCESS_FIELD, &n) != CRDT_OK)
        return level;
    for (size_t i = 0; i < n; i++) {
        crdt_event ev;
        if (crdt_timeline_at(state, PROTO_ACCESS_FIELD, i, &ev) != CRDT_OK || ev.redacted)
            continue;
        uint64_t max = 0;
        for (size_t k = 0; k < nvv; k++)
            if (memcmp(vv[k].origin.b, ev.id.origin.b, 32) == 0)
                max = vv[k].max;
        if (ev.id.counter > max)
            continue;
        proto_access a;
        if (proto_access_decode(ev.content.p, ev.content.len, lim, &a, NULL) != PROTO_OK)
            continue;
        if (a.grantee.len == strlen(org) && memcmp(a.grantee.p, org, a.grantee.len) == 0)
            level = a.access; /* events come in timeline order: the last one wins */
    }
    return level;
}

node_auth node__authorise(node_engine *e, const ledger_key *k, const crdt_scope *state,
    const uint8_t author[32], const proto_body *plain, const crdt_scope *delta)
{
    if (memcmp(author, k->owner, 32) == 0)
        return NODE_AUTH_OK;
    if (touches_reserved(delta, state))
        return NODE_AUTH_NO;
    const crdt_cc *cc = crdt_scope_cc(state);
    for (size_t i = 0; i < plain->nvv; i++)
        if (crdt_cc_vv_max(cc, &plain->vv[i].origin) < plain->vv[i].max)
            return NODE_AUTH_WAIT;
    node_member *m = node__member_by_origin(e, author);
    if (m == NULL)
        return NODE_AUTH_NO;
    return node__access_as_of(state, m->org, plain->vv, plain->nvv, &e->lim) == PROTO_ACCESS_WRITE
        ? NODE_AUTH_OK
        : NODE_AUTH_NO;
}

/* May member m receive the body of header h? */
bool node__may_receive(node_txn *t, const proto_header *h, const node_member *m)
{
    if (h->kind == PROTO_HDR_KEY_GRANT) {
        for (size_t r = 0; r < h->nrecipients; r++)
            if (memcmp(h->recipients[r].b, m->origin, 32) == 0)
                return true;
        return false;
    }
    return node__ledger_holds(t, h->tag, m->origin);
}

bool node__may_write(node_engine *e, const ledger_key *k, const crdt_scope *state)
{
    if (memcmp(k->owner, proto_identity_origin(e->me), 32) == 0)
        return true;
    const crdt_cc *cc = crdt_scope_cc(state);
    return node__access_as_of(state, e->cfg.org, cc->vv, cc->nvv, &e->lim) == PROTO_ACCESS_WRITE;
}
