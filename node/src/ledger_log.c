/*
 * The access log of each (case, scope) on top of the store: 'E' case(16) len(1) scope
 * number(8) -> kind(1) id(32) wall(8) logical(2) epoch(8), then for a grant access(1) basis(1)
 * expiry(8) and six strings (len(2) bytes): grantee, purpose, provision, operator, unix user,
 * evidence; for an epoch announcement new_epoch(8) key_hash(32); for a narrowing access(1)
 * reason(1) ncut(1), ncut times origin(32) seq(8) id(32), and four strings: grantee,
 * operator, unix user, note. The rest of the key layout
 * is in ledger.h. May call: store.c, proto.
 */
#include "ledger.h"

#include <stdlib.h>
#include <string.h>

#define ENTRY_HEAD (1 + 32 + 8 + 2 + 8)

static lkey entry_key(const proto_case_id *c, const char *scope, uint64_t number, bool with_number)
{
    return node__ledger_scope_key('E', c, scope, number, with_number);
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return 2 + n;
}

static bool get_str(const uint8_t **p, size_t *left, char *out, size_t max)
{
    if (*left < 2)
        return false;
    size_t n = (size_t)(*p)[0] << 8 | (*p)[1];
    if (n > max || *left - 2 < n)
        return false;
    memcpy(out, *p + 2, n);
    out[n] = 0;
    *p += 2 + n;
    *left -= 2 + n;
    return true;
}

node_err node__ledger_entry_put(
    node_txn *t, const proto_case_id *c, const char *scope, const ledger_entry *en)
{
    uint8_t *v = malloc(ENTRY_HEAD + 10 + 6 * 2 + 2 * PROTO_ORG_MAX + 3 * PROTO_TEXT_MAX
        + LEDGER_USER_MAX + 40 + PROTO_CUT_MAX * 72);
    if (v == NULL)
        return NODE_ENOMEM;
    size_t n = 0;
    v[n++] = en->kind;
    memcpy(v + n, en->id, 32);
    n += 32;
    node__ledger_be64(v + n, en->hlc.wall);
    n += 8;
    v[n++] = (uint8_t)(en->hlc.logical >> 8);
    v[n++] = (uint8_t)en->hlc.logical;
    node__ledger_be64(v + n, en->epoch);
    n += 8;
    if (en->kind == PROTO_BODY_ACCESS_GRANT) {
        v[n++] = en->access;
        v[n++] = en->basis;
        node__ledger_be64(v + n, en->expiry_ms);
        n += 8;
        n += put_str(v + n, en->grantee);
        n += put_str(v + n, en->purpose);
        n += put_str(v + n, en->provision);
        n += put_str(v + n, en->operator_name);
        n += put_str(v + n, en->unix_user);
        n += put_str(v + n, en->evidence);
    } else if (en->kind == PROTO_BODY_ACCESS_NARROW) {
        size_t nc = en->ncut < PROTO_CUT_MAX ? en->ncut : PROTO_CUT_MAX;
        v[n++] = en->access;
        v[n++] = en->reason;
        v[n++] = (uint8_t)nc;
        for (size_t i = 0; i < nc; i++) {
            memcpy(v + n, en->cut[i].origin, 32);
            node__ledger_be64(v + n + 32, en->cut[i].seq);
            memcpy(v + n + 40, en->cut[i].id, 32);
            n += 72;
        }
        n += put_str(v + n, en->grantee);
        n += put_str(v + n, en->operator_name);
        n += put_str(v + n, en->unix_user);
        n += put_str(v + n, en->evidence);
    } else {
        node__ledger_be64(v + n, en->new_epoch);
        n += 8;
        memcpy(v + n, en->key_hash, 32);
        n += 32;
    }
    lkey k = entry_key(c, scope, en->number, true);
    node_err err = node_txn_put(t, NODE_DB_CONSENTS, k.b, k.n, v, n);
    free(v);
    return err;
}

static node_err entry_decode(uint64_t number, const void *val, size_t len, ledger_entry *out)
{
    const uint8_t *p = val;
    memset(out, 0, sizeof(*out));
    if (len < ENTRY_HEAD)
        return NODE_ECORRUPT;
    out->number = number;
    out->kind = p[0];
    memcpy(out->id, p + 1, 32);
    out->hlc.wall = node__ledger_get64(p + 33);
    out->hlc.logical = (uint16_t)(p[41] << 8 | p[42]);
    out->epoch = node__ledger_get64(p + 43);
    p += ENTRY_HEAD;
    size_t left = len - ENTRY_HEAD;
    if (out->kind == PROTO_BODY_ACCESS_GRANT) {
        if (left < 10)
            return NODE_ECORRUPT;
        out->access = p[0];
        out->basis = p[1];
        out->expiry_ms = node__ledger_get64(p + 2);
        p += 10;
        left -= 10;
        if (!get_str(&p, &left, out->grantee, PROTO_ORG_MAX)
            || !get_str(&p, &left, out->purpose, PROTO_ORG_MAX)
            || !get_str(&p, &left, out->provision, PROTO_TEXT_MAX)
            || !get_str(&p, &left, out->operator_name, PROTO_TEXT_MAX)
            || !get_str(&p, &left, out->unix_user, LEDGER_USER_MAX)
            || !get_str(&p, &left, out->evidence, PROTO_TEXT_MAX) || left != 0)
            return NODE_ECORRUPT;
        return NODE_OK;
    }
    if (out->kind == PROTO_BODY_ACCESS_NARROW) {
        if (left < 3 || p[2] > PROTO_CUT_MAX || left - 3 < (size_t)p[2] * 72)
            return NODE_ECORRUPT;
        out->access = p[0];
        out->reason = p[1];
        out->ncut = p[2];
        p += 3;
        left -= 3;
        for (size_t i = 0; i < out->ncut; i++, p += 72, left -= 72) {
            memcpy(out->cut[i].origin, p, 32);
            out->cut[i].seq = node__ledger_get64(p + 32);
            memcpy(out->cut[i].id, p + 40, 32);
        }
        if (!get_str(&p, &left, out->grantee, PROTO_ORG_MAX)
            || !get_str(&p, &left, out->operator_name, PROTO_TEXT_MAX)
            || !get_str(&p, &left, out->unix_user, LEDGER_USER_MAX)
            || !get_str(&p, &left, out->evidence, PROTO_TEXT_MAX) || left != 0)
            return NODE_ECORRUPT;
        return NODE_OK;
    }
    if (out->kind != PROTO_BODY_ACCESS_EPOCH || left != 40)
        return NODE_ECORRUPT;
    out->new_epoch = node__ledger_get64(p);
    memcpy(out->key_hash, p + 8, 32);
    return NODE_OK;
}

node_err node__ledger_entry_get(
    node_txn *t, const proto_case_id *c, const char *scope, uint64_t number, ledger_entry *out)
{
    lkey k = entry_key(c, scope, number, true);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_CONSENTS, k.b, k.n, &v, &n);
    return err != NODE_OK ? err : entry_decode(number, v, n, out);
}

node_err node__ledger_entry_del(
    node_txn *t, const proto_case_id *c, const char *scope, uint64_t number)
{
    lkey k = entry_key(c, scope, number, true);
    return node_txn_del(t, NODE_DB_CONSENTS, k.b, k.n);
}

typedef struct entries_ctx {
    size_t prefix;
    ledger_entry_cb fn;
    void *ctx;
    ledger_entry *en;
    node_err err;
} entries_ctx;

static bool entries_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    entries_ctx *c = ctx;
    if (kl != c->prefix + 8)
        return true;
    if ((c->err = entry_decode(node__ledger_get64((const uint8_t *)k + c->prefix), v, vl, c->en))
        != NODE_OK)
        return false;
    return c->fn(c->en, c->ctx);
}

node_err node__ledger_entries(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_entry_cb fn, void *ctx)
{
    lkey k = entry_key(c, scope, 0, false);
    entries_ctx ec = { k.n, fn, ctx, malloc(sizeof(ledger_entry)), NODE_OK };
    if (ec.en == NULL)
        return NODE_ENOMEM;
    node_err err = node_txn_scan(t, NODE_DB_CONSENTS, k.b, k.n, entries_cb, &ec);
    free(ec.en);
    return err != NODE_OK ? err : ec.err;
}

typedef struct contig_ctx {
    size_t prefix;
    uint64_t n;
} contig_ctx;

static bool contig_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    contig_ctx *c = ctx;
    if (kl != c->prefix + 8)
        return true;
    if (node__ledger_get64((const uint8_t *)k + c->prefix) != c->n + 1)
        return false;
    c->n++;
    return true;
}

uint64_t node__ledger_entries_contiguous(node_txn *t, const proto_case_id *c, const char *scope)
{
    lkey k = entry_key(c, scope, 0, false);
    contig_ctx cc = { k.n, 0 };
    if (node_txn_scan(t, NODE_DB_CONSENTS, k.b, k.n, contig_cb, &cc) != NODE_OK)
        return 0; /* nothing counts as held: what waits for entries waits longer */
    return cc.n;
}

/* Closed scopes: 'X' case(16) len(1) scope -> entry(8) at(8) reason(1) basis(1) access(1)
 * purged(1) refused(4) epoch(8) owner org (the rest). */
#define CLOSED_FIXED (8 + 8 + 4 + 4 + 8)

node_err node__ledger_closed_put(
    node_txn *t, const proto_case_id *c, const char *scope, const ledger_closed *x)
{
    uint8_t v[CLOSED_FIXED + PROTO_ORG_MAX];
    size_t ol = strlen(x->owner_org);
    if (ol > PROTO_ORG_MAX)
        return NODE_EINVAL;
    node__ledger_be64(v, x->entry);
    node__ledger_be64(v + 8, x->at_ms);
    v[16] = x->reason;
    v[17] = x->basis;
    v[18] = x->access;
    v[19] = x->purged ? 1 : 0;
    v[20] = (uint8_t)(x->refused >> 24);
    v[21] = (uint8_t)(x->refused >> 16);
    v[22] = (uint8_t)(x->refused >> 8);
    v[23] = (uint8_t)x->refused;
    node__ledger_be64(v + 24, x->epoch);
    memcpy(v + CLOSED_FIXED, x->owner_org, ol);
    lkey k = node__ledger_scope_key('X', c, scope, 0, false);
    return node_txn_put(t, NODE_DB_CONSENTS, k.b, k.n, v, CLOSED_FIXED + ol);
}

static node_err closed_decode(const uint8_t *v, size_t n, ledger_closed *out)
{
    memset(out, 0, sizeof(*out));
    if (n < CLOSED_FIXED || n - CLOSED_FIXED > PROTO_ORG_MAX)
        return NODE_ECORRUPT;
    out->entry = node__ledger_get64(v);
    out->at_ms = node__ledger_get64(v + 8);
    out->reason = v[16];
    out->basis = v[17];
    out->access = v[18];
    out->purged = v[19] != 0;
    out->refused = (uint32_t)v[20] << 24 | (uint32_t)v[21] << 16 | (uint32_t)v[22] << 8 | v[23];
    out->epoch = node__ledger_get64(v + 24);
    memcpy(out->owner_org, v + CLOSED_FIXED, n - CLOSED_FIXED);
    return NODE_OK;
}

node_err node__ledger_closed_get(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_closed *out)
{
    lkey k = node__ledger_scope_key('X', c, scope, 0, false);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_CONSENTS, k.b, k.n, &v, &n);
    return err != NODE_OK ? err : closed_decode(v, n, out);
}

node_err node__ledger_closed_del(node_txn *t, const proto_case_id *c, const char *scope)
{
    lkey k = node__ledger_scope_key('X', c, scope, 0, false);
    node_err err = node_txn_del(t, NODE_DB_CONSENTS, k.b, k.n);
    return err == NODE_ENOTFOUND ? NODE_OK : err;
}

typedef struct closed_ctx {
    ledger_closed_cb fn;
    void *ctx;
    node_err err;
} closed_ctx;

static bool closed_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    closed_ctx *c = ctx;
    const uint8_t *p = k;
    if (kl < 18 || p[17] == 0 || p[17] > PROTO_SCOPE_NAME_MAX || kl != 18u + p[17])
        return true;
    proto_case_id id;
    memcpy(id.b, p + 1, 16);
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    memcpy(scope, p + 18, p[17]);
    scope[p[17]] = 0;
    ledger_closed x;
    if ((c->err = closed_decode(v, vl, &x)) != NODE_OK)
        return false;
    return c->fn(&id, scope, &x, c->ctx);
}

node_err node__ledger_closed_list(
    node_txn *t, const proto_case_id *c, ledger_closed_cb fn, void *ctx)
{
    uint8_t prefix[17] = { 'X' };
    if (c != NULL)
        memcpy(prefix + 1, c->b, 16);
    closed_ctx cc = { fn, ctx, NODE_OK };
    node_err err = node_txn_scan(t, NODE_DB_CONSENTS, prefix, c != NULL ? 17 : 1, closed_cb, &cc);
    return err != NODE_OK ? err : cc.err;
}

/* Notes: 'N' or 'W' id(32) -> state(1) at(8) case(16) kind(1) nscopes(1), then strings (len(2)
 * bytes): author org, owner org, grantee, each scope, evidence, operator, unix user. */
static lkey note_key(bool mine, const uint8_t id[32])
{
    lkey k;
    k.b[0] = mine ? 'N' : 'W';
    memcpy(k.b + 1, id, 32);
    k.n = 33;
    return k;
}

node_err node__ledger_note_put(node_txn *t, bool mine, const ledger_note *n)
{
    const proto_note *x = &n->note;
    if (x->nscopes == 0 || x->nscopes > PROTO_NOTE_SCOPES_MAX)
        return NODE_EINVAL;
    uint8_t *v = malloc(27 + 2 * 3 + 3 * PROTO_ORG_MAX
        + PROTO_NOTE_SCOPES_MAX * (2 + PROTO_SCOPE_NAME_MAX) + 3 * 2 + 2 * PROTO_TEXT_MAX + 64);
    if (v == NULL)
        return NODE_ENOMEM;
    size_t len = 0;
    v[len++] = n->state;
    node__ledger_be64(v + len, n->at_ms);
    len += 8;
    memcpy(v + len, x->case_id.b, 16);
    len += 16;
    v[len++] = x->kind;
    v[len++] = (uint8_t)x->nscopes;
    len += put_str(v + len, n->author_org);
    len += put_str(v + len, x->owner_org);
    len += put_str(v + len, x->grantee);
    for (size_t i = 0; i < x->nscopes; i++)
        len += put_str(v + len, x->scopes[i]);
    len += put_str(v + len, x->evidence);
    len += put_str(v + len, x->operator_name);
    len += put_str(v + len, x->unix_user);
    lkey k = note_key(mine, n->id);
    node_err err = node_txn_put(t, NODE_DB_CONSENTS, k.b, k.n, v, len);
    free(v);
    return err;
}

static node_err note_decode(const uint8_t id[32], const uint8_t *p, size_t left, ledger_note *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->id, id, 32);
    if (left < 27 || p[26] == 0 || p[26] > PROTO_NOTE_SCOPES_MAX)
        return NODE_ECORRUPT;
    proto_note *x = &out->note;
    out->state = p[0];
    out->at_ms = node__ledger_get64(p + 1);
    memcpy(x->case_id.b, p + 9, 16);
    x->kind = p[25];
    x->nscopes = p[26];
    p += 27;
    left -= 27;
    bool ok = get_str(&p, &left, out->author_org, PROTO_ORG_MAX)
        && get_str(&p, &left, x->owner_org, PROTO_ORG_MAX)
        && get_str(&p, &left, x->grantee, PROTO_ORG_MAX);
    for (size_t i = 0; ok && i < x->nscopes; i++)
        ok = get_str(&p, &left, x->scopes[i], PROTO_SCOPE_NAME_MAX);
    ok = ok && get_str(&p, &left, x->evidence, PROTO_TEXT_MAX)
        && get_str(&p, &left, x->operator_name, PROTO_TEXT_MAX)
        && get_str(&p, &left, x->unix_user, sizeof(x->unix_user) - 1) && left == 0;
    return ok ? NODE_OK : NODE_ECORRUPT;
}

node_err node__ledger_note_get(node_txn *t, bool mine, const uint8_t id[32], ledger_note *out)
{
    lkey k = note_key(mine, id);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_CONSENTS, k.b, k.n, &v, &n);
    return err != NODE_OK ? err : note_decode(id, v, n, out);
}

typedef struct notes_ctx {
    ledger_note_cb fn;
    void *ctx;
    ledger_note *n;
    node_err err;
} notes_ctx;

static bool notes_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    notes_ctx *c = ctx;
    if (kl != 33)
        return true;
    if ((c->err = note_decode((const uint8_t *)k + 1, v, vl, c->n)) != NODE_OK)
        return false;
    return c->fn(c->n, c->ctx);
}

node_err node__ledger_notes(node_txn *t, bool mine, ledger_note_cb fn, void *ctx)
{
    uint8_t prefix = mine ? 'N' : 'W';
    notes_ctx c = { fn, ctx, malloc(sizeof(ledger_note)), NODE_OK };
    if (c.n == NULL)
        return NODE_ENOMEM;
    node_err err = node_txn_scan(t, NODE_DB_CONSENTS, &prefix, 1, notes_cb, &c);
    free(c.n);
    return err != NODE_OK ? err : c.err;
}
