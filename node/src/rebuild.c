/*
 * The rebuild: when new signed data changes decisions already taken (an origin caught
 * equivocating: its headers from the fork point on are void, both branches), every
 * (case, scope) those headers touch (or a narrowing's scope, or a scope where a dot was created
 * twice) is decided again from what this node holds, by the same
 * rules as the incremental path (access.c node__verdict, which never reads the state): the
 * access log loses the entries of void headers; the scope's one state (for all its epochs) is
 * made again from empty by joining every decided delta still authorised, and only the dots of the
 * others (refused, void by a clash, or resting on an entry now void) as context; a delta void by
 * its origin's fork adds nothing. Joins commute, so the order of the bodies does not matter, and an
 * incremental decision on the same data gives the same state. Bodies still waiting are left to the
 * waits. Cost: O(bodies of the scope) per scope. May call: access.c, keycache.c, state.c, ledger.c,
 * proto, crdt.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef node_scope_ref scope_ref;
typedef node_scope_ref_vec scope_ref_vec;
typedef NODE_VEC(uint64_t) u64_vec;
typedef struct id32 {
    uint8_t b[32];
} id32;
typedef NODE_VEC(id32) id_vec;
typedef NODE_VEC(ledger_key) key_vec;

/* Scopes touched at most per rebuild, ids per tag, entries per scope (NODE_VEC bounds). */
#define REBUILD_SCOPES_MAX ((size_t)1 << 20)
#define REBUILD_IDS_MAX ((size_t)1 << 22)

typedef struct void_entries {
    node_txn *t;
    node_engine *e;
    u64_vec numbers;
    id_vec ids; /* of their headers */
    node_err err;
} void_entries;

static bool void_entry_cb(const ledger_entry *en, void *ctx)
{
    void_entries *v = ctx;
    const void *hb;
    size_t hl;
    proto_header h;
    if (node__ledger_header_by_id(v->t, en->id, &hb, &hl) != NODE_OK
        || proto_header_decode(hb, hl, &v->e->lim, &h, NULL) != PROTO_OK)
        return true;
    bool gone = node__void(v->t, v->e, &h);
    proto_header_fini(&h);
    uint64_t *n = gone ? NODE_VEC_PUSH(&v->numbers, REBUILD_IDS_MAX) : NULL;
    id32 *id = n != NULL ? NODE_VEC_PUSH(&v->ids, REBUILD_IDS_MAX) : NULL;
    if (gone && id == NULL) {
        v->err = NODE_ENOMEM;
        return false;
    }
    if (id != NULL) {
        *n = en->number;
        memcpy(id->b, en->id, 32);
    }
    return true;
}

static bool key_cb(const ledger_key *k, void *ctx)
{
    ledger_key *d = NODE_VEC_PUSH((key_vec *)ctx, PROTO_GRANT_EPOCHS_MAX);
    if (d == NULL)
        return false;
    *d = *k;
    return true;
}

/* One held, decided body of key k, opened: its header, and when it is a delta of a known
 * author, the delta. */
typedef struct opened {
    int mark;
    proto_header h;
    bool h_ok;
    proto_body plain;
    crdt_scope *delta;
    const node_member *author;
} opened;

static void opened_fini(opened *o)
{
    crdt_scope_free(o->delta);
    proto_body_fini(&o->plain);
    if (o->h_ok)
        proto_header_fini(&o->h);
}

/* Open the body of id when it is a decided delta; o->delta stays NULL otherwise. */
static node_err open_body(
    node_txn *t, node_engine *e, proto_scope_key *sk, const uint8_t id[32], opened *o)
{
    memset(o, 0, sizeof(*o));
    o->mark = node__ledger_applied_get(t, id);
    const void *hb, *bb;
    size_t hl, bl;
    if (o->mark == 0 || node__ledger_header_by_id(t, id, &hb, &hl) != NODE_OK
        || node__ledger_body_get(t, id, &bb, &bl) != NODE_OK)
        return NODE_OK;
    if (proto_header_decode(hb, hl, &e->lim, &o->h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    o->h_ok = true;
    o->author = node__author(e, o->h.origin, NULL);
    if (o->h.kind != PROTO_HDR_DELTA || o->author == NULL
        || proto_body_open(&o->h, sk, bb, bl, &e->lim, &o->plain, NULL) != PROTO_OK
        || o->plain.kind != PROTO_BODY_DELTA
        || proto_scope_decode(o->plain.delta.p, o->plain.delta.len, &e->lim, NULL, &o->delta, NULL)
            != PROTO_OK) {
        crdt_scope_free(o->delta);
        o->delta = NULL;
    }
    return NODE_OK;
}

/* The new dots of every decided delta of the tag, with the delta's index. */
typedef struct dots_of {
    node_dot_range r;
    size_t body;
} dots_of;
typedef NODE_VEC(dots_of) dots_vec;

static int dots_cmp(const void *a, const void *b)
{
    const dots_of *x = a, *y = b;
    int c = crdt_origin_cmp(&x->r.origin, &y->r.origin);
    return c != 0 ? c : x->r.lo < y->r.lo ? -1 : x->r.lo > y->r.lo;
}

/* Mark every delta whose new dots overlap another's (of the same author's origin): two deltas
 * that create one dot are both void, whatever came first. */
static void mark_clashes(dots_vec *d, bool *clash)
{
    if (d->n > 1) /* (an empty vector has no array: qsort must not see NULL) */
        qsort(d->v, d->n, sizeof(*d->v), dots_cmp);
    for (size_t i = 0; i < d->n;) {
        size_t j = i + 1;
        uint64_t hi = d->v[i].r.hi;
        while (j < d->n && crdt_origin_cmp(&d->v[j].r.origin, &d->v[i].r.origin) == 0
            && d->v[j].r.lo <= hi) {
            if (d->v[j].r.hi > hi)
                hi = d->v[j].r.hi;
            j++;
        }
        for (size_t k = i; j - i > 1 && k < j; k++)
            clash[d->v[k].body] = true;
        i = j;
    }
}

static const char *mark_name(int mark)
{
    return mark == LEDGER_APPLIED ? "merged" : mark == LEDGER_REFUSED ? "refused" : "void";
}

/* Decide one opened delta again and join it into state (entries, or dots as context only);
 * a changed decision is counted in voided[0] (now void), [1] (now refused) or [2] (now merged). */
static node_err redecide(node_txn *t, node_engine *e, const ledger_key *k, const uint8_t id[32],
    opened *o, bool clash, crdt_scope *state, size_t *voided)
{
    const char *why = "";
    ledger_applied how = LEDGER_VOID;
    bool forked = false;
    if (clash) {
        why = "another delta of its author creates one of its dots";
    } else if ((forked = node__void(t, e, &o->h))) {
        why = NODE_VOID_WHY;
    } else {
        node_auth r = node__verdict(t, e, k, &o->h, o->author, &o->plain, o->delta, &why);
        /* Waiting here means the entries it had seen are no longer all there: one was void. */
        how = r == NODE_AUTH_OK ? LEDGER_APPLIED : r == NODE_AUTH_NO ? LEDGER_REFUSED : LEDGER_VOID;
        if (r == NODE_AUTH_WAIT)
            why = "an access-log entry it rests on is void";
    }
    node_err err = NODE_OK;
    if (how == LEDGER_APPLIED) {
        crdt_err cerr = crdt_scope_join(state, o->delta);
        if (cerr == CRDT_ENOMEM)
            err = NODE_ENOMEM;
        else if (cerr != CRDT_OK)
            NODE_ERROR("rebuild.join", "scope=%s seq=%" PRIu64 " error=\"%s\"", k->scope, o->h.seq,
                crdt_strerror(cerr));
    } else if (!forked) {
        /* refused, or void with a clash: its dots as context (void by a fork: nothing, as the
         * incremental path does, apply.c) */
        err = node__context_only(state, o->delta, &o->plain, o->h.origin);
    }
    if (err == NODE_OK && (int)how != o->mark) {
        voided[how == LEDGER_VOID ? 0 : how == LEDGER_REFUSED ? 1 : 2]++;
        NODE_WARN("delta.redecided", "org=%s seq=%" PRIu64 " scope=%s was=%s now=%s reason=\"%s\"",
            o->author->org, o->h.seq, k->scope, mark_name(o->mark), mark_name((int)how), why);
        err = node__ledger_applied_put(t, id, how);
    }
    return err;
}

/* A decided body of the scope and the key (index in the scope's keys) its tag is under. */
typedef struct kid {
    uint8_t b[32];
    size_t key;
} kid;
typedef NODE_VEC(kid) kid_vec;

/* Make the state of the scope again from the decided bodies under all its keys (one state for
 * every epoch, ledger.h): two passes over them (the first finds the deltas that create one dot
 * twice, across epochs too: an author's dots run on from one epoch to the next), each body
 * opened once per pass with its own key. */
static node_err rebuild_state(
    node_txn *t, node_engine *e, const key_vec *keys, const kid_vec *ids, size_t *voided)
{
    crdt_scope *state = NULL;
    dots_vec dots = { 0 };
    bool *clash = calloc(ids->n ? ids->n : 1, sizeof(bool));
    node_err err = clash == NULL ? NODE_ENOMEM : NODE_OK;
    for (size_t j = 0; err == NODE_OK && j < ids->n; j++) {
        opened o;
        proto_scope_key *sk = NULL;
        if ((err = node__keycache_get(e, &keys->v[ids->v[j].key], &sk)) != NODE_OK)
            break;
        if ((err = open_body(t, e, sk, ids->v[j].b, &o)) == NODE_OK && o.delta != NULL) {
            /* One range per origin: its author's, and a counter origin per counter entry. */
            size_t max = crdt_scope_entry_count(o.delta) + 1;
            node_dot_range *r = malloc(max * sizeof(*r));
            size_t n = r == NULL ? 0 : node__new_dots(o.delta, &o.plain, o.h.origin, r, max, &err);
            if (r == NULL)
                err = NODE_ENOMEM;
            for (size_t i = 0; i < n && err == NODE_OK; i++) {
                dots_of *d = NODE_VEC_PUSH(&dots, REBUILD_IDS_MAX);
                if (d == NULL)
                    err = NODE_ENOMEM;
                else
                    *d = (dots_of) { r[i], j };
            }
            free(r);
        }
        opened_fini(&o);
    }
    if (err == NODE_OK)
        mark_clashes(&dots, clash);
    if (err == NODE_OK && crdt_scope_new(NULL, &state) != CRDT_OK)
        err = NODE_ENOMEM;
    for (size_t j = 0; err == NODE_OK && j < ids->n; j++) {
        opened o;
        proto_scope_key *sk = NULL;
        const ledger_key *k = &keys->v[ids->v[j].key];
        if ((err = node__keycache_get(e, k, &sk)) != NODE_OK)
            break;
        if ((err = open_body(t, e, sk, ids->v[j].b, &o)) == NODE_OK && o.delta != NULL)
            err = redecide(t, e, k, ids->v[j].b, &o, clash[j], state, voided);
        opened_fini(&o);
    }
    if (err == NODE_OK && keys->n > 0)
        err = node__ledger_state_put(t, keys->v[0].tag, state, node__now(e));
    crdt_scope_free(state);
    NODE_VEC_FREE(&dots);
    free(clash);
    return err;
}

/* Decide every held, decided body of one (case, scope) again. */
typedef struct kid_ctx {
    kid_vec *v;
    size_t key;
} kid_ctx;

static bool kid_cb(const uint8_t id[32], void *ctx)
{
    kid_ctx *c = ctx;
    kid *d = NODE_VEC_PUSH(c->v, REBUILD_IDS_MAX);
    if (d == NULL)
        return false;
    memcpy(d->b, id, 32);
    d->key = c->key;
    return true;
}

/* The confirmed keys of (case c, scope) (nothing under another was decided) and the ids of the
 * headers under their tags, each with its key's index. */
static node_err scope_bodies(
    node_txn *t, const proto_case_id *c, const char *scope, key_vec *keys, kid_vec *ids)
{
    node_err err = node__ledger_scope_keys(t, c, scope, key_cb, keys);
    size_t nk = 0;
    for (size_t i = 0; i < keys->n; i++)
        if (keys->v[i].confirmed)
            keys->v[nk++] = keys->v[i];
        else
            proto_wipe(&keys->v[i], sizeof(keys->v[i]));
    keys->n = nk;
    for (size_t i = 0; err == NODE_OK && i < keys->n; i++) {
        kid_ctx kc = { ids, i };
        size_t before = ids->n;
        err = node__ledger_tag_headers(t, keys->v[i].tag, kid_cb, &kc);
        if (err == NODE_OK && ids->n == before && ids->n == REBUILD_IDS_MAX)
            err = NODE_ENOMEM;
    }
    return err;
}

static void keys_free(key_vec *keys)
{
    for (size_t i = 0; i < keys->n; i++)
        proto_wipe(&keys->v[i], sizeof(keys->v[i]));
    NODE_VEC_FREE(keys);
}

node_err node__scope_deltas(node_txn *t, node_engine *e, const proto_case_id *c, const char *scope,
    node_delta_fn fn, void *ctx)
{
    key_vec keys = { 0 };
    kid_vec ids = { 0 };
    node_err err = scope_bodies(t, c, scope, &keys, &ids);
    for (size_t j = 0; err == NODE_OK && j < ids.n; j++) {
        opened o;
        proto_scope_key *sk = NULL;
        if ((err = node__keycache_get(e, &keys.v[ids.v[j].key], &sk)) != NODE_OK)
            break;
        if ((err = open_body(t, e, sk, ids.v[j].b, &o)) == NODE_OK && o.delta != NULL)
            err = fn(&o.h, o.mark, o.author, &o.delta, ctx);
        opened_fini(&o);
    }
    keys_free(&keys);
    NODE_VEC_FREE(&ids);
    return err;
}

static node_err rebuild_scope(node_txn *t, node_engine *e, const scope_ref *s, size_t *voided)
{
    void_entries v = { t, e, { 0 }, { 0 }, NODE_OK };
    key_vec keys = { 0 };
    kid_vec ids = { 0 };
    node_err err = node__ledger_entries(t, &s->case_id, s->scope, void_entry_cb, &v);
    if (err == NODE_OK)
        err = v.err;
    for (size_t i = 0; err == NODE_OK && i < v.numbers.n; i++)
        if ((err = node__ledger_entry_del(t, &s->case_id, s->scope, v.numbers.v[i])) == NODE_OK)
            err = node__ledger_applied_put(t, v.ids.v[i].b, LEDGER_VOID);
    if (err == NODE_OK)
        err = scope_bodies(t, &s->case_id, s->scope, &keys, &ids);
    if (err == NODE_OK)
        err = rebuild_state(t, e, &keys, &ids, voided);
    if (err == NODE_OK)
        node__scope_moved(e, &s->case_id, s->scope);
    if (err == NODE_OK && v.numbers.n > 0)
        NODE_WARN("access.void", "scope=%s entries=%zu reason=\"the owner forked\"", s->scope,
            v.numbers.n);
    keys_free(&keys);
    NODE_VEC_FREE(&ids);
    NODE_VEC_FREE(&v.numbers);
    NODE_VEC_FREE(&v.ids);
    return err;
}

/* Add (case, scope) to v unless it is there. */
static node_err scope_add(scope_ref_vec *v, const proto_case_id *case_id, const char *scope)
{
    for (size_t i = 0; i < v->n; i++)
        if (memcmp(&v->v[i].case_id, case_id, sizeof(*case_id)) == 0
            && strcmp(v->v[i].scope, scope) == 0)
            return NODE_OK;
    scope_ref *r = NODE_VEC_PUSH(v, REBUILD_SCOPES_MAX);
    if (r == NULL)
        return NODE_ENOMEM;
    r->case_id = *case_id;
    snprintf(r->scope, sizeof(r->scope), "%s", scope);
    return NODE_OK;
}

node_err node__rebuild_note(apply_ctx *c, const proto_case_id *case_id, const char *scope)
{
    return scope_add(&c->rebuild, case_id, scope);
}

node_err node__rebuild_noted(node_txn *t, apply_ctx *c)
{
    size_t voided[3] = { 0, 0, 0 }, n = c->rebuild.n; /* now void, refused, merged again */
    node_err err = NODE_OK;
    uint64_t t0 = n > 0 ? node__mono(c->e) : 0;
    for (size_t i = 0; i < n && err == NODE_OK; i++)
        err = rebuild_scope(t, c->e, &c->rebuild.v[i], voided);
    c->rebuild.n = 0;
    if (err == NODE_OK && n > 0)
        NODE_WARN("rebuild.done",
            "scopes=%zu voided=%zu refused=%zu merged=%zu ms=%" PRIu64
            " reason=\"a dot created twice, or a narrowing\"",
            n, voided[0], voided[1], voided[2], node__mono(c->e) - t0);
    return err;
}

node_err node__rebuild_from(node_txn *t, node_engine *e, const uint8_t origin[32], uint64_t fork)
{
    /* The scopes the origin's headers from the fork point on touch (those this node holds a key
     * of): each is rebuilt once. */
    scope_ref_vec scopes = { 0 };
    node_err err = NODE_OK;
    e->all_gen++; /* deltas waiting for dots of this origin wait no more (access.c) */
    uint64_t last = node__ledger_vv_get(t, origin);
    for (uint64_t seq = fork; err == NODE_OK && seq <= last; seq++) {
        const void *hb;
        size_t hl;
        proto_header h;
        if (node__ledger_header_get(t, origin, seq, &hb, &hl) != NODE_OK)
            continue;
        if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
            return NODE_ECORRUPT;
        ledger_key k;
        if (node__ledger_key_get(t, h.tag, &k) == NODE_OK)
            err = scope_add(&scopes, &k.case_id, k.scope);
        proto_wipe(&k, sizeof(k));
        proto_header_fini(&h);
    }
    size_t voided[3] = { 0, 0, 0 };
    for (size_t i = 0; err == NODE_OK && i < scopes.n; i++)
        err = rebuild_scope(t, e, &scopes.v[i], voided);
    if (err == NODE_OK && scopes.n > 0)
        NODE_WARN("rebuild.done", "scopes=%zu voided=%zu refused=%zu merged=%zu from_seq=%" PRIu64,
            scopes.n, voided[0], voided[1], voided[2], fork);
    NODE_VEC_FREE(&scopes);
    return err;
}

/* Has this node decided (merged or refused) a delta of origin beyond seq `after`, up to `last`?
 * Void ones are decided for good; key grants are not undone (a key once held stays held). */
static bool decided_beyond(
    node_txn *t, node_engine *e, const uint8_t origin[32], uint64_t after, uint64_t last)
{
    for (uint64_t seq = after + 1; seq <= last; seq++) {
        const void *hb;
        size_t hl;
        proto_header h;
        if (node__ledger_header_get(t, origin, seq, &hb, &hl) != NODE_OK
            || proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
            continue;
        int mark = h.kind == PROTO_HDR_DELTA ? node__ledger_applied_get(t, h.id) : 0;
        proto_header_fini(&h);
        if (mark == LEDGER_APPLIED || mark == LEDGER_REFUSED)
            return true;
    }
    return false;
}

static node_err retired_cb(node_txn *t, void *ctx)
{
    node_engine *e = ctx;
    node_err err = NODE_OK;
    for (size_t i = 0; err == NODE_OK && i < e->manifest.nmembers; i++) {
        const proto_member *m = &e->manifest.members[i];
        for (size_t k = 0; err == NODE_OK && k < m->nkeys; k++) {
            const proto_member_key *key = &m->keys[k];
            uint64_t last = key->retired ? node__ledger_vv_get(t, key->origin) : 0;
            if (last > key->last_seq && decided_beyond(t, e, key->origin, key->last_seq, last)) {
                NODE_WARN("rebuild.retired",
                    "org=%.*s from_seq=%" PRIu64 " detail=\"manifest version %" PRIu64
                    " retired this key: what it wrote after that is void\"",
                    (int)m->org.len, (const char *)m->org.p, key->last_seq + 1,
                    e->manifest.version);
                err = node__rebuild_from(t, e, key->origin, key->last_seq + 1);
            }
        }
    }
    return err;
}

node_err node__retired_voids(node_engine *e)
{
    if (!e->have_manifest)
        return NODE_OK;
    node_errmsg msg;
    node_err err = node_store_write(e->store, retired_cb, e, &msg);
    if (err != NODE_OK)
        NODE_ERROR("rebuild.fail", "error=\"%s\"", node__logq(msg.text));
    return err;
}
