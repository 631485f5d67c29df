/* The node's records on top of the LMDB store, one function per kind of record; the key layout
 * is in ledger.h. May call: store.c, proto (decoding stored scopes), crdt. */
#include "ledger.h"
#include "findidx.h"

#include <stdlib.h>
#include <string.h>

void node__ledger_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint64_t node__ledger_get64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

static lkey mk(char prefix, const void *a, size_t alen, const void *b, size_t blen)
{
    lkey k;
    k.b[0] = (uint8_t)prefix;
    k.n = 1;
    if (alen) {
        memcpy(k.b + k.n, a, alen);
        k.n += alen;
    }
    if (blen) {
        memcpy(k.b + k.n, b, blen);
        k.n += blen;
    }
    return k;
}

/* A vv record: seq(8) id(32) wall(8) logical(2). */
#define VV_REC 50

node_err node__ledger_header_put(
    node_txn *t, const proto_header *h, const uint8_t *bytes, size_t len)
{
    uint8_t seq[8], loc[40];
    node__ledger_be64(seq, h->seq);
    lkey hk = mk('H', h->origin, 32, seq, 8);
    lkey ik = mk('I', h->id, 32, NULL, 0);
    lkey tk = mk('T', h->tag, 32, h->id, 32);
    memcpy(loc, h->origin, 32);
    memcpy(loc + 32, seq, 8);
    node_err err;
    if ((err = node_txn_put(t, NODE_DB_HEADERS, hk.b, hk.n, bytes, len)) != NODE_OK
        || (err = node_txn_put(t, NODE_DB_HEADERS, ik.b, ik.n, loc, sizeof(loc))) != NODE_OK
        || (err = node_txn_put(t, NODE_DB_HEADERS, tk.b, tk.n, "", 0)) != NODE_OK)
        return err;
    if (h->seq > node__ledger_vv_get(t, h->origin)) {
        uint8_t v[VV_REC];
        memcpy(v, seq, 8);
        memcpy(v + 8, h->id, 32);
        node__ledger_be64(v + 40, h->hlc.wall);
        v[48] = (uint8_t)(h->hlc.logical >> 8);
        v[49] = (uint8_t)h->hlc.logical;
        return node_txn_put(t, NODE_DB_VV, h->origin, 32, v, sizeof(v));
    }
    return NODE_OK;
}

node_err node__ledger_header_get(
    node_txn *t, const uint8_t origin[32], uint64_t seq, const void **bytes, size_t *len)
{
    uint8_t s[8];
    node__ledger_be64(s, seq);
    lkey hk = mk('H', origin, 32, s, 8);
    return node_txn_get(t, NODE_DB_HEADERS, hk.b, hk.n, bytes, len);
}

/* Bodies and applied marks are keyed by their header's place in its origin's log, not by id:
 * ids are uniform hashes, so every new body would land on its own page of a large tree and a
 * group commit of a thousand bodies rewrote a thousand pages (a fifth of a syncing node's time
 * went to writing them). In log order, new records fill the same few pages. The header's 'I'
 * record gives the place; a body or mark without a stored header has none. */
/* A body is looked up by id several times in one transaction (held? stored, applied, marked):
 * the places found are remembered in the transaction's memo, PLACE_MEMO of them by the id's
 * first byte (ids are uniform hashes). Only places found are kept: a header's place never
 * changes once stored, and the memo ends with the transaction (a rerun starts empty). */
#define PLACE_MEMO 24
typedef struct place_memo {
    uint8_t id[PLACE_MEMO][32];
    uint8_t place[PLACE_MEMO][40];
    bool used[PLACE_MEMO];
} place_memo;
_Static_assert(sizeof(place_memo) <= NODE_TXN_MEMO_BYTES, "the place memo fits a transaction's");

static node_err log_place(node_txn *t, const uint8_t id[32], uint8_t place[40])
{
    place_memo *m = node_txn_memo(t);
    size_t slot = id[0] % PLACE_MEMO;
    if (m->used[slot] && memcmp(m->id[slot], id, 32) == 0) {
        memcpy(place, m->place[slot], 40);
        return NODE_OK;
    }
    lkey ik = mk('I', id, 32, NULL, 0);
    const void *loc;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_HEADERS, ik.b, ik.n, &loc, &n);
    if (err != NODE_OK)
        return err;
    if (n != 40)
        return NODE_ECORRUPT;
    memcpy(place, loc, 40);
    memcpy(m->id[slot], id, 32);
    memcpy(m->place[slot], loc, 40);
    m->used[slot] = true;
    return NODE_OK;
}

node_err node__ledger_place(node_txn *t, const uint8_t id[32], uint8_t origin[32], uint64_t *seq)
{
    uint8_t place[40];
    node_err err = log_place(t, id, place);
    if (err == NODE_OK) {
        memcpy(origin, place, 32);
        *seq = node__ledger_get64(place + 32);
    }
    return err;
}

node_err node__ledger_header_by_id(
    node_txn *t, const uint8_t id[32], const void **bytes, size_t *len)
{
    uint8_t place[40];
    node_err err = log_place(t, id, place);
    return err != NODE_OK
        ? err
        : node__ledger_header_get(t, place, node__ledger_get64(place + 32), bytes, len);
}

uint64_t node__ledger_vv_get(node_txn *t, const uint8_t origin[32])
{
    uint8_t id[32];
    return node__ledger_vv_last(t, origin, id);
}

uint64_t node__ledger_vv_last(node_txn *t, const uint8_t origin[32], uint8_t id[32])
{
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_VV, origin, 32, &v, &n) != NODE_OK || n != VV_REC) {
        memset(id, 0, 32);
        return 0;
    }
    memcpy(id, (const uint8_t *)v + 8, 32);
    return node__ledger_get64(v);
}

crdt_hlc node__ledger_vv_clock(node_txn *t, const uint8_t origin[32])
{
    crdt_hlc h = { 0, 0 };
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_VV, origin, 32, &v, &n) == NODE_OK && n == VV_REC) {
        const uint8_t *p = v;
        h.wall = node__ledger_get64(p + 40);
        h.logical = (uint16_t)(p[48] << 8 | p[49]);
    }
    return h;
}

typedef struct vv_collect {
    proto_vv_item *e;
    size_t n, cap;
    bool oom;
} vv_collect;

static bool vv_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    vv_collect *c = ctx;
    if (kl != 32 || vl != VV_REC)
        return true;
    if (node__vec_reserve(&c->e, &c->cap, c->n + 1, sizeof(*c->e), PROTO_VV_MAX) != NODE_OK) {
        c->oom = true;
        return false;
    }
    memcpy(c->e[c->n].origin, k, 32);
    c->e[c->n].seq = node__ledger_get64(v);
    memcpy(c->e[c->n].id, (const uint8_t *)v + 8, 32);
    c->e[c->n].fork = 0;
    c->n++;
    return true;
}

/* A quarantined origin's fork point into its entry (a proof's seq is at most the contiguous
 * seq: ingest takes only a proof at a held place). */
static bool vv_fork_cb(const uint8_t origin[32], uint64_t seq, void *ctx)
{
    vv_collect *c = ctx;
    for (size_t lo = 0, hi = c->n; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        int d = memcmp(c->e[mid].origin, origin, 32);
        if (d == 0) {
            c->e[mid].fork = seq <= c->e[mid].seq ? seq : 0;
            break;
        }
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return true;
}

node_err node__ledger_vv_all(node_txn *t, const proto_limits *lim, proto_vv_item **out, size_t *n)
{
    vv_collect c = { NULL, 0, 0, false };
    node_err err = node_txn_scan(t, NODE_DB_VV, NULL, 0, vv_cb, &c);
    if (err == NODE_OK && c.oom)
        err = NODE_ENOMEM;
    if (err == NODE_OK)
        err = node__ledger_quarantine_list(t, lim, vv_fork_cb, &c);
    if (err != NODE_OK) {
        free(c.e);
        return err;
    }
    *out = c.e;
    *n = c.n;
    return NODE_OK;
}

typedef struct tag_ids {
    ledger_id_cb fn;
    void *ctx;
} tag_ids;

static bool tag_ids_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    tag_ids *c = ctx;
    if (kl != 65)
        return true;
    return c->fn((const uint8_t *)k + 33, c->ctx);
}

node_err node__ledger_tag_headers(node_txn *t, const uint8_t tag[32], ledger_id_cb fn, void *ctx)
{
    lkey tk = mk('T', tag, 32, NULL, 0);
    tag_ids c = { fn, ctx };
    return node_txn_scan(t, NODE_DB_HEADERS, tk.b, tk.n, tag_ids_cb, &c);
}

typedef struct log_headers {
    ledger_header_cb fn;
    void *ctx;
} log_headers;

static bool log_headers_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    log_headers *c = ctx;
    return kl != 41 || c->fn((const uint8_t *)k + 1, v, vl, c->ctx);
}

node_err node__ledger_headers_from(node_txn *t, const uint8_t *from, ledger_header_cb fn, void *ctx)
{
    lkey hk = mk('H', from, from != NULL ? 40 : 0, NULL, 0);
    log_headers c = { fn, ctx };
    return node_txn_scan_from(t, NODE_DB_HEADERS, "H", 1, hk.b, hk.n, log_headers_cb, &c);
}

bool node__ledger_body_at(node_txn *t, const uint8_t place[40])
{
    const void *b;
    size_t n;
    return node_txn_get(t, NODE_DB_BODIES, place, 40, &b, &n) == NODE_OK;
}

node_err node__ledger_body_put(node_txn *t, const uint8_t id[32], const uint8_t *body, size_t len)
{
    uint8_t place[40];
    node_err err = log_place(t, id, place);
    return err != NODE_OK ? err : node_txn_put(t, NODE_DB_BODIES, place, 40, body, len);
}

node_err node__ledger_body_get(node_txn *t, const uint8_t id[32], const void **body, size_t *len)
{
    uint8_t place[40];
    node_err err = log_place(t, id, place);
    return err != NODE_OK ? err : node_txn_get(t, NODE_DB_BODIES, place, 40, body, len);
}

node_err node__ledger_body_del(node_txn *t, const uint8_t id[32])
{
    uint8_t place[40];
    node_err err = log_place(t, id, place);
    return err != NODE_OK ? err : node_txn_del(t, NODE_DB_BODIES, place, 40);
}

bool node__ledger_body_has(node_txn *t, const uint8_t id[32])
{
    const void *b;
    size_t n;
    return node__ledger_body_get(t, id, &b, &n) == NODE_OK;
}

/* 'P' case(16) len(1) scope epoch(8) -> tag: every key of a (case, scope), in epoch order. */
lkey node__ledger_scope_key(
    char prefix, const proto_case_id *c, const char *scope, uint64_t number, bool with_number)
{
    lkey k;
    size_t sl = strlen(scope);
    k.b[0] = (uint8_t)prefix;
    memcpy(k.b + 1, c->b, 16);
    k.b[17] = (uint8_t)sl;
    memcpy(k.b + 18, scope, sl);
    k.n = 18 + sl;
    if (with_number) {
        node__ledger_be64(k.b + k.n, number);
        k.n += 8;
    }
    return k;
}

static lkey epoch_key(const proto_case_id *c, const char *scope, uint64_t epoch, bool with_epoch)
{
    return node__ledger_scope_key('P', c, scope, epoch, with_epoch);
}

/* Key record: case(16) nonce(16) epoch(8) confirmed(1) key(32) len(1) owner org, then the
 * scope (the rest). */
#define KEY_FIXED (16 + 16 + 8 + 1 + 32 + 1)

node_err node__ledger_key_put(node_txn *t, const ledger_key *k)
{
    uint8_t rec[KEY_FIXED + PROTO_ORG_MAX + PROTO_SCOPE_NAME_MAX];
    size_t sl = strlen(k->scope), ol = strlen(k->owner_org);
    if (sl == 0 || sl > PROTO_SCOPE_NAME_MAX || ol == 0 || ol > PROTO_ORG_MAX)
        return NODE_EINVAL;
    memcpy(rec, k->case_id.b, 16);
    memcpy(rec + 16, k->nonce.b, 16);
    node__ledger_be64(rec + 32, k->epoch);
    rec[40] = k->confirmed ? 1 : 0;
    memcpy(rec + 41, k->key, 32);
    rec[73] = (uint8_t)ol;
    memcpy(rec + KEY_FIXED, k->owner_org, ol);
    memcpy(rec + KEY_FIXED + ol, k->scope, sl);
    lkey kk = mk('K', k->tag, 32, NULL, 0);
    node_err err = node_txn_put(t, NODE_DB_KEYS, kk.b, kk.n, rec, KEY_FIXED + ol + sl);
    proto_wipe(rec, sizeof(rec));
    if (err != NODE_OK)
        return err;
    lkey pk = epoch_key(&k->case_id, k->scope, k->epoch, true);
    if ((err = node_txn_put(t, NODE_DB_KEYS, pk.b, pk.n, k->tag, 32)) != NODE_OK || !k->confirmed)
        return err;
    /* The scope's newest confirmed epoch is what new writes use. */
    ledger_key cur;
    node_err e2 = node__ledger_key_for(t, &k->case_id, k->scope, &cur);
    bool newer = e2 == NODE_ENOTFOUND || (e2 == NODE_OK && k->epoch >= cur.epoch);
    proto_wipe(&cur, sizeof(cur));
    if (e2 != NODE_OK && e2 != NODE_ENOTFOUND)
        return e2;
    if (!newer)
        return NODE_OK;
    lkey ck = mk('C', k->case_id.b, 16, k->scope, sl);
    return node_txn_put(t, NODE_DB_KEYS, ck.b, ck.n, k->tag, 32);
}

static node_err key_decode(const uint8_t tag[32], const void *v, size_t n, ledger_key *out)
{
    const uint8_t *r = v;
    if (n <= KEY_FIXED)
        return NODE_ECORRUPT;
    size_t ol = r[73];
    if (ol == 0 || ol > PROTO_ORG_MAX || n <= KEY_FIXED + ol
        || n - KEY_FIXED - ol > PROTO_SCOPE_NAME_MAX)
        return NODE_ECORRUPT;
    size_t sl = n - KEY_FIXED - ol;
    memcpy(out->tag, tag, 32);
    memcpy(out->case_id.b, r, 16);
    memcpy(out->nonce.b, r + 16, 16);
    out->epoch = node__ledger_get64(r + 32);
    out->confirmed = r[40] != 0;
    memcpy(out->key, r + 41, 32);
    memcpy(out->owner_org, r + KEY_FIXED, ol);
    out->owner_org[ol] = 0;
    memcpy(out->scope, r + KEY_FIXED + ol, sl);
    out->scope[sl] = 0;
    return NODE_OK;
}

node_err node__ledger_key_get(node_txn *t, const uint8_t tag[32], ledger_key *out)
{
    lkey kk = mk('K', tag, 32, NULL, 0);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_KEYS, kk.b, kk.n, &v, &n);
    return err != NODE_OK ? err : key_decode(tag, v, n, out);
}

node_err node__ledger_key_for(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_key *out)
{
    lkey ck = mk('C', c->b, 16, scope, strlen(scope));
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_KEYS, ck.b, ck.n, &v, &n);
    if (err != NODE_OK)
        return err;
    if (n != 32)
        return NODE_ECORRUPT;
    uint8_t tag[32];
    memcpy(tag, v, 32);
    return node__ledger_key_get(t, tag, out);
}

typedef struct scope_keys {
    node_txn *t;
    size_t prefix;
    ledger_key_cb fn;
    void *ctx;
    node_err err;
} scope_keys;

static bool scope_keys_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k;
    scope_keys *c = ctx;
    if (kl != c->prefix + 8 || vl != 32)
        return true;
    uint8_t tag[32];
    memcpy(tag, v, 32);
    ledger_key key;
    if ((c->err = node__ledger_key_get(c->t, tag, &key)) != NODE_OK)
        return false;
    bool more = c->fn(&key, c->ctx);
    proto_wipe(&key, sizeof(key));
    return more;
}

node_err node__ledger_scope_keys(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_key_cb fn, void *ctx)
{
    lkey pk = epoch_key(c, scope, 0, false);
    scope_keys sk = { t, pk.n, fn, ctx, NODE_OK };
    node_err err = node_txn_scan(t, NODE_DB_KEYS, pk.b, pk.n, scope_keys_cb, &sk);
    return err != NODE_OK ? err : sk.err;
}

node_err node__ledger_case_own(
    node_txn *t, const proto_case_id *c, const proto_case_nonce *nonce, uint64_t now_ms)
{
    uint8_t v[8 + 16];
    node__ledger_be64(v, now_ms);
    memcpy(v + 8, nonce->b, 16);
    lkey ok = mk('O', c->b, 16, NULL, 0);
    return node_txn_put(t, NODE_DB_KEYS, ok.b, ok.n, v, sizeof(v));
}

bool node__ledger_case_owned(node_txn *t, const proto_case_id *c, proto_case_nonce *nonce)
{
    lkey ok = mk('O', c->b, 16, NULL, 0);
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_KEYS, ok.b, ok.n, &v, &n) != NODE_OK || n != 24)
        return false;
    if (nonce != NULL)
        memcpy(nonce->b, (const uint8_t *)v + 8, 16);
    return true;
}

typedef struct scopes_ctx {
    ledger_scope_cb fn;
    void *ctx;
    size_t n;
} scopes_ctx;

static bool scopes_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    scopes_ctx *c = ctx;
    if (kl <= 17 || kl > 17 + PROTO_SCOPE_NAME_MAX || vl != 32)
        return true;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    memcpy(scope, (const uint8_t *)k + 17, kl - 17);
    scope[kl - 17] = 0;
    c->n++;
    return c->fn == NULL || c->fn(scope, v, c->ctx);
}

node_err node__ledger_case_scopes(
    node_txn *t, const proto_case_id *c, ledger_scope_cb fn, void *ctx)
{
    lkey ck = mk('C', c->b, 16, NULL, 0);
    scopes_ctx sc = { fn, ctx, 0 };
    return node_txn_scan(t, NODE_DB_KEYS, ck.b, ck.n, scopes_cb, &sc);
}

bool node__ledger_case_known(node_txn *t, const proto_case_id *c)
{
    if (node__ledger_case_owned(t, c, NULL))
        return true;
    lkey ck = mk('C', c->b, 16, NULL, 0);
    scopes_ctx sc = { NULL, NULL, 0 };
    return node_txn_scan(t, NODE_DB_KEYS, ck.b, ck.n, scopes_cb, &sc) == NODE_OK && sc.n > 0;
}

/* A scope has one state whatever the epoch its deltas were sealed under: it is kept under the
 * tag of the scope's first epoch (every holder holds that key: a grant seals every epoch's). A
 * tag whose key is not held here stands for itself. */
static void state_tag(node_txn *t, const uint8_t tag[32], uint8_t out[32])
{
    memcpy(out, tag, 32);
    ledger_key k;
    if (node__ledger_key_get(t, tag, &k) == NODE_OK && k.epoch != PROTO_EPOCH_FIRST) {
        lkey pk = epoch_key(&k.case_id, k.scope, PROTO_EPOCH_FIRST, true);
        const void *v;
        size_t n;
        if (node_txn_get(t, NODE_DB_KEYS, pk.b, pk.n, &v, &n) == NODE_OK && n == 32)
            memcpy(out, v, 32);
    }
    proto_wipe(&k, sizeof(k));
}

node_err node__ledger_state_get(
    node_txn *t, const uint8_t tag0[32], const proto_limits *lim, crdt_scope **out)
{
    uint8_t tag[32];
    state_tag(t, tag0, tag);
    lkey sk = mk('S', tag, 32, NULL, 0);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_STATE, sk.b, sk.n, &v, &n);
    if (err == NODE_ENOTFOUND)
        return crdt_scope_new(NULL, out) == CRDT_OK ? NODE_OK : NODE_ENOMEM;
    if (err != NODE_OK)
        return err;
    proto_diag diag;
    proto_err perr = proto_scope_decode(v, n, lim, NULL, out, &diag);
    if (perr == PROTO_ENOMEM)
        return NODE_ENOMEM;
    return perr == PROTO_OK ? NODE_OK : NODE_ECORRUPT;
}

node_err node__ledger_state_put(
    node_txn *t, const uint8_t tag0[32], const crdt_scope *s, uint64_t now_ms)
{
    uint8_t tag[32];
    state_tag(t, tag0, tag);
    proto_buf buf = { NULL, 0 };
    proto_err perr = proto_scope_encode(s, &buf);
    if (perr != PROTO_OK)
        return perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_EINVAL;
    lkey sk = mk('S', tag, 32, NULL, 0);
    node_err err = node_txn_put(t, NODE_DB_STATE, sk.b, sk.n, buf.p, buf.len);
    proto_buf_free(&buf);
    if (err != NODE_OK)
        return err;
    uint8_t ms[8];
    node__ledger_be64(ms, now_ms);
    lkey lk = mk('L', tag, 32, NULL, 0);
    if ((err = node_txn_put(t, NODE_DB_STATE, lk.b, lk.n, ms, 8)) != NODE_OK)
        return err;
    /* every new state (a local write, a merged delta, a rebuild) re-indexes its scope */
    ledger_key k;
    err = node__ledger_key_get(t, tag0, &k);
    if (err == NODE_OK)
        err = node__find_update(t, &k.case_id, k.scope, s);
    else if (err == NODE_ENOTFOUND)
        err = NODE_OK; /* no key: nothing this node reads */
    proto_wipe(&k, sizeof(k));
    return err;
}

typedef struct find_build {
    node_txn *t;
    const proto_limits *lim;
    node_err err;
} find_build;

static bool find_build_cb(const uint8_t tag[32], void *ctx)
{
    find_build *b = ctx;
    ledger_key k;
    if (node__ledger_key_get(b->t, tag, &k) == NODE_OK && k.epoch == PROTO_EPOCH_FIRST) {
        crdt_scope *s = NULL;
        b->err = node__ledger_state_get(b->t, tag, b->lim, &s);
        if (b->err == NODE_OK)
            b->err = node__find_update(b->t, &k.case_id, k.scope, s);
        crdt_scope_free(s);
    }
    proto_wipe(&k, sizeof(k));
    return b->err == NODE_OK;
}

node_err node__ledger_find_build(node_txn *t, const proto_limits *lim)
{
    node_err err;
    if (node__find_built(t, &err) || err != NODE_OK)
        return err;
    /* A tag names the scope's first epoch when the key of that epoch is held; a scope whose
     * first key is not held here has no state here either (the state is kept under it). */
    find_build b = { t, lim, NODE_OK };
    err = node__ledger_key_tags(t, find_build_cb, &b);
    if (err == NODE_OK)
        err = b.err;
    return err == NODE_OK ? node__find_built_mark(t) : err;
}

uint64_t node__ledger_last_change(node_txn *t, const uint8_t tag0[32])
{
    uint8_t tag[32];
    state_tag(t, tag0, tag);
    lkey lk = mk('L', tag, 32, NULL, 0);
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_STATE, lk.b, lk.n, &v, &n) != NODE_OK || n != 8)
        return 0;
    return node__ledger_get64(v);
}

node_err node__ledger_applied_put(node_txn *t, const uint8_t id[32], ledger_applied how)
{
    uint8_t v = (uint8_t)how, place[40];
    node_err err = log_place(t, id, place);
    if (err != NODE_OK)
        return err;
    lkey ak = mk('A', place, 40, NULL, 0);
    return node_txn_put(t, NODE_DB_STATE, ak.b, ak.n, &v, 1);
}

node_err node__ledger_sealed_put(node_txn *t, const proto_header *h, const uint8_t *header,
    size_t hlen, const uint8_t *body, size_t blen)
{
    uint8_t place[40], v = (uint8_t)LEDGER_APPLIED;
    memcpy(place, h->origin, 32);
    node__ledger_be64(place + 32, h->seq);
    lkey ak = mk('A', place, 40, NULL, 0);
    node_err err = node__ledger_header_put(t, h, header, hlen);
    if (err == NODE_OK)
        err = node_txn_put(t, NODE_DB_BODIES, place, 40, body, blen);
    if (err == NODE_OK)
        err = node_txn_put(t, NODE_DB_STATE, ak.b, ak.n, &v, 1);
    return err;
}

int node__ledger_applied_get(node_txn *t, const uint8_t id[32])
{
    uint8_t place[40];
    if (log_place(t, id, place) != NODE_OK)
        return 0;
    return node__ledger_applied_at(t, place);
}

int node__ledger_applied_at(node_txn *t, const uint8_t place[40])
{
    lkey ak = mk('A', place, 40, NULL, 0);
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_STATE, ak.b, ak.n, &v, &n) != NODE_OK || n != 1)
        return 0;
    return *(const uint8_t *)v;
}

#define LAYOUT_KEY "layout"
#define LAYOUT 6 /* protocol version 5 (2 to 5: earlier protocols) */

node_err node__ledger_layout(node_txn *t)
{
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_META, LAYOUT_KEY, strlen(LAYOUT_KEY), &v, &n);
    if (err == NODE_OK)
        return n == 1 && *(const uint8_t *)v == LAYOUT ? NODE_OK : NODE_ECONFIG;
    if (err != NODE_ENOTFOUND)
        return err;
    /* No layout mark: a new store, or one of a pattod before layouts were marked. A store
     * that holds anything without the mark is of protocol version 1. Every header and body
     * stored carries its protocol version, so a store of an earlier one cannot be read. */
    size_t held = 0;
    if ((err = node_txn_count(t, NODE_DB_META, &held)) != NODE_OK)
        return err;
    if (held > 0)
        return NODE_ECONFIG;
    uint8_t layout = LAYOUT;
    return node_txn_put(t, NODE_DB_META, LAYOUT_KEY, strlen(LAYOUT_KEY), &layout, 1);
}

node_err node__ledger_own_get(node_txn *t, uint64_t *seq, uint8_t last[32])
{
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_META, "own", 3, &v, &n);
    if (err == NODE_ENOTFOUND) {
        *seq = 0;
        memset(last, 0, 32);
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    if (n != 40)
        return NODE_ECORRUPT;
    *seq = node__ledger_get64(v);
    memcpy(last, (const uint8_t *)v + 8, 32);
    return NODE_OK;
}

node_err node__ledger_own_put(node_txn *t, uint64_t seq, const uint8_t last[32])
{
    uint8_t v[40];
    node__ledger_be64(v, seq);
    memcpy(v + 8, last, 32);
    return node_txn_put(t, NODE_DB_META, "own", 3, v, sizeof(v));
}

node_err node__ledger_hlc_get(node_txn *t, crdt_hlc *out)
{
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_META, "hlc", 3, &v, &n);
    if (err == NODE_ENOTFOUND) {
        out->wall = 0;
        out->logical = 0;
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    if (n != 10)
        return NODE_ECORRUPT;
    const uint8_t *p = v;
    out->wall = node__ledger_get64(p);
    out->logical = (uint16_t)(p[8] << 8 | p[9]);
    return NODE_OK;
}

node_err node__ledger_hlc_put(node_txn *t, const crdt_hlc *h)
{
    uint8_t v[10];
    node__ledger_be64(v, h->wall);
    v[8] = (uint8_t)(h->logical >> 8);
    v[9] = (uint8_t)h->logical;
    return node_txn_put(t, NODE_DB_META, "hlc", 3, v, sizeof(v));
}

node_err node__ledger_quarantine_put(node_txn *t, const uint8_t origin[32], const uint8_t *a,
    size_t alen, const uint8_t *b, size_t blen)
{
    if (alen > UINT32_MAX || blen > UINT32_MAX)
        return NODE_EINVAL;
    uint8_t *v = malloc(8 + alen + blen);
    if (v == NULL)
        return NODE_ENOMEM;
    for (int i = 0; i < 4; i++) {
        v[i] = (uint8_t)(alen >> (24 - 8 * i));
        v[4 + i] = (uint8_t)(blen >> (24 - 8 * i));
    }
    memcpy(v + 8, a, alen);
    memcpy(v + 8 + alen, b, blen);
    lkey qk = mk('Q', origin, 32, NULL, 0);
    node_err err = node_txn_put(t, NODE_DB_META, qk.b, qk.n, v, 8 + alen + blen);
    free(v);
    return err;
}

node_err node__ledger_quarantine_get(node_txn *t, const uint8_t origin[32], const uint8_t **a,
    size_t *alen, const uint8_t **b, size_t *blen)
{
    lkey qk = mk('Q', origin, 32, NULL, 0);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_META, qk.b, qk.n, &v, &n);
    if (err != NODE_OK)
        return err;
    const uint8_t *p = v;
    if (n < 8)
        return NODE_ECORRUPT;
    *alen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    *blen = (size_t)p[4] << 24 | (size_t)p[5] << 16 | (size_t)p[6] << 8 | p[7];
    if (*alen > n - 8 || *blen != n - 8 - *alen)
        return NODE_ECORRUPT;
    *a = p + 8;
    *b = p + 8 + *alen;
    return NODE_OK;
}

bool node__ledger_quarantined(node_txn *t, const uint8_t origin[32])
{
    lkey qk = mk('Q', origin, 32, NULL, 0);
    const void *v;
    size_t n;
    return node_txn_get(t, NODE_DB_META, qk.b, qk.n, &v, &n) == NODE_OK;
}

typedef struct cases_ctx {
    ledger_case_cb fn;
    void *ctx;
} cases_ctx;

static bool cases_c_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    cases_ctx *c = ctx;
    if (kl <= 17 || kl > 17 + PROTO_SCOPE_NAME_MAX || vl != 32)
        return true;
    proto_case_id id;
    memcpy(id.b, (const uint8_t *)k + 1, 16);
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    memcpy(scope, (const uint8_t *)k + 17, kl - 17);
    scope[kl - 17] = 0;
    return c->fn(&id, scope, v, c->ctx);
}

static bool cases_o_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    cases_ctx *c = ctx;
    if (kl != 17)
        return true;
    proto_case_id id;
    memcpy(id.b, (const uint8_t *)k + 1, 16);
    return c->fn(&id, NULL, NULL, c->ctx);
}

node_err node__ledger_cases(node_txn *t, ledger_case_cb fn, void *ctx)
{
    cases_ctx c = { fn, ctx };
    node_err err = node_txn_scan(t, NODE_DB_KEYS, "O", 1, cases_o_cb, &c);
    if (err != NODE_OK)
        return err;
    return node_txn_scan(t, NODE_DB_KEYS, "C", 1, cases_c_cb, &c);
}

typedef struct tags_ctx {
    ledger_tag_cb fn;
    void *ctx;
} tags_ctx;

static bool tags_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    tags_ctx *c = ctx;
    if (kl != 33)
        return true;
    return c->fn((const uint8_t *)k + 1, c->ctx);
}

node_err node__ledger_key_tags(node_txn *t, ledger_tag_cb fn, void *ctx)
{
    tags_ctx c = { fn, ctx };
    return node_txn_scan(t, NODE_DB_KEYS, "K", 1, tags_cb, &c);
}

/* The proof is len(4) len(4) and the two headers; both carry the same seq. */
static uint64_t proof_seq(const uint8_t *p, size_t vl, const proto_limits *lim)
{
    uint64_t seq = 0;
    if (vl >= 8) {
        size_t alen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        proto_header h;
        if (alen <= vl - 8 && proto_header_decode(p + 8, alen, lim, &h, NULL) == PROTO_OK) {
            seq = h.seq;
            proto_header_fini(&h);
        }
    }
    return seq;
}

uint64_t node__ledger_fork_seq(node_txn *t, const proto_limits *lim, const uint8_t origin[32])
{
    lkey qk = mk('Q', origin, 32, NULL, 0);
    const void *v;
    size_t n;
    return node_txn_get(t, NODE_DB_META, qk.b, qk.n, &v, &n) == NODE_OK ? proof_seq(v, n, lim) : 0;
}

typedef struct quar_ctx {
    const proto_limits *lim;
    ledger_quarantine_cb fn;
    void *ctx;
} quar_ctx;

static bool quar_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    quar_ctx *c = ctx;
    if (kl != 33)
        return true;
    return c->fn((const uint8_t *)k + 1, proof_seq(v, vl, c->lim), c->ctx);
}

node_err node__ledger_quarantine_list(
    node_txn *t, const proto_limits *lim, ledger_quarantine_cb fn, void *ctx)
{
    quar_ctx c = { lim, fn, ctx };
    return node_txn_scan(t, NODE_DB_META, "Q", 1, quar_cb, &c);
}

/* The destruction primitive's store part (ledger.h). Keys are gathered first, then deleted:
 * no record is deleted under an open scan. */
typedef struct key_list {
    lkey *v;
    size_t n, cap;
    bool oom;
} key_list;

static bool key_list_push(key_list *l, lkey k)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->v, cap * sizeof(*l->v));
        if (p == NULL) {
            l->oom = true;
            return false;
        }
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = k;
    return true;
}

static bool key_list_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v;
    (void)vl;
    lkey x;
    if (kl > sizeof(x.b))
        return true;
    memcpy(x.b, k, kl);
    x.n = kl;
    return key_list_push(ctx, x);
}

static bool tag_list_cb(const ledger_key *k, void *ctx)
{
    return key_list_push(ctx, mk('K', k->tag, 32, NULL, 0));
}

static bool id_list_cb(const uint8_t id[32], void *ctx)
{
    return key_list_push(ctx, mk('I', id, 32, NULL, 0));
}

/* Delete every key of l from db (those already gone are fine). */
static node_err key_list_del(node_txn *t, node_db db, const key_list *l)
{
    node_err err = l->oom ? NODE_ENOMEM : NODE_OK;
    for (size_t i = 0; i < l->n && err == NODE_OK; i++)
        if ((err = node_txn_del(t, db, l->v[i].b, l->v[i].n)) == NODE_ENOTFOUND)
            err = NODE_OK;
    return err;
}

node_err node__ledger_scope_destroy(
    node_txn *t, const proto_case_id *c, const char *scope, const uint8_t *own, size_t *bodies)
{
    *bodies = 0;
    key_list tags = { 0 }, ids = { 0 }, recs = { 0 };
    node_err err = node__find_drop(t, c, scope); /* its terms in the find index */
    if (err == NODE_OK)
        err = node__ledger_scope_keys(t, c, scope, tag_list_cb, &tags);
    for (size_t i = 0; err == NODE_OK && !tags.oom && i < tags.n; i++) {
        const uint8_t *tag = tags.v[i].b + 1;
        ids.n = recs.n = 0;
        err = node__ledger_tag_headers(t, tag, id_list_cb, &ids);
        for (size_t j = 0; err == NODE_OK && !ids.oom && j < ids.n; j++) {
            uint8_t place[40];
            if (log_place(t, ids.v[j].b + 1, place) != NODE_OK)
                continue;
            if (own != NULL && memcmp(place, own, 32) == 0)
                continue; /* this node's own write: its ciphertext and mark stay */
            if ((err = node_txn_del(t, NODE_DB_BODIES, place, 40)) == NODE_OK)
                ++*bodies;
            if (err == NODE_ENOTFOUND)
                err = NODE_OK;
            (void)key_list_push(&recs, mk('A', place, 40, NULL, 0));
        }
        (void)key_list_push(&recs, mk('S', tag, 32, NULL, 0));
        (void)key_list_push(&recs, mk('L', tag, 32, NULL, 0));
        if (err == NODE_OK && (ids.oom || recs.oom))
            err = NODE_ENOMEM;
        if (err == NODE_OK)
            err = key_list_del(t, NODE_DB_STATE, &recs);
        if (err == NODE_OK) {
            uint8_t v[16 + PROTO_SCOPE_NAME_MAX];
            size_t sl = strnlen(scope, PROTO_SCOPE_NAME_MAX);
            memcpy(v, c->b, 16);
            memcpy(v + 16, scope, sl);
            lkey gk = mk('G', tag, 32, NULL, 0);
            err = node_txn_put(t, NODE_DB_KEYS, gk.b, gk.n, v, 16 + sl);
        }
    }
    if (err == NODE_OK)
        err = key_list_del(t, NODE_DB_KEYS, &tags); /* 'K' tag: the keys themselves */
    /* the epoch index and the current epoch, then the access log */
    recs.n = 0;
    lkey pk = epoch_key(c, scope, 0, false);
    if (err == NODE_OK)
        err = node_txn_scan(t, NODE_DB_KEYS, pk.b, pk.n, key_list_cb, &recs);
    if (err == NODE_OK)
        (void)key_list_push(&recs, mk('C', c->b, 16, scope, strlen(scope)));
    if (err == NODE_OK)
        err = key_list_del(t, NODE_DB_KEYS, &recs);
    recs.n = 0;
    lkey ek = node__ledger_scope_key('E', c, scope, 0, false);
    if (err == NODE_OK)
        err = node_txn_scan(t, NODE_DB_CONSENTS, ek.b, ek.n, key_list_cb, &recs);
    if (err == NODE_OK)
        err = key_list_del(t, NODE_DB_CONSENTS, &recs);
    free(tags.v);
    free(ids.v);
    free(recs.v);
    return err;
}

node_err node__ledger_purged_get(
    node_txn *t, const uint8_t tag[32], proto_case_id *c, char scope[PROTO_SCOPE_NAME_MAX + 1])
{
    lkey gk = mk('G', tag, 32, NULL, 0);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_KEYS, gk.b, gk.n, &v, &n);
    if (err != NODE_OK)
        return err;
    if (n <= 16 || n > 16 + PROTO_SCOPE_NAME_MAX)
        return NODE_ECORRUPT;
    memcpy(c->b, v, 16);
    memcpy(scope, (const uint8_t *)v + 16, n - 16);
    scope[n - 16] = '\0';
    return NODE_OK;
}
