/*
 * The access rule, in one place: who owns a case, who may read a tag (and so receive and hold
 * its bodies), who may write a scope, and what a delta may contain. Every decision here depends
 * only on signed data: the manifest in force, the key records (whose owner org is checked
 * against the case id when the key is taken in), and the scope's access log (entries decided
 * from the owner's authentic headers only). And the generations of scopes that tell when a
 * delta waiting for its causal past is worth another try. May call: state.c (members),
 * keycache.c, ledger.c, schema.c, proto, crdt.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

bool node__reads_tag(node_txn *t, node_engine *e, const uint8_t tag[32])
{
    (void)e;
    ledger_key k;
    bool have = node__ledger_key_get(t, tag, &k) == NODE_OK && k.confirmed;
    proto_wipe(&k, sizeof(k));
    return have;
}

/* Is h on the chain of the header that carried entry `number` of k's scope, at or before it? */
static bool owner_before(node_txn *t, const ledger_key *k, uint64_t number, const proto_header *h)
{
    ledger_entry *en = malloc(sizeof(*en));
    uint8_t origin[32];
    uint64_t seq = 0;
    bool ok = en != NULL && node__ledger_entry_get(t, &k->case_id, k->scope, number, en) == NODE_OK
        && node__ledger_place(t, en->id, origin, &seq) == NODE_OK
        && memcmp(origin, h->origin, 32) == 0 && h->seq <= seq;
    free(en);
    return ok;
}

typedef struct grant_after {
    const char *org;
    uint64_t after;
    bool found;
} grant_after;

static bool grant_after_cb(const ledger_entry *en, void *ctx)
{
    grant_after *g = ctx;
    g->found = en->number > g->after && en->kind == PROTO_BODY_ACCESS_GRANT
        && strcmp(en->grantee, g->org) == 0;
    return !g->found;
}

node_err node__granted_after(node_txn *t, const proto_case_id *c, const char *scope,
    const char *org, uint64_t after, bool *found)
{
    grant_after g = { org, after, false };
    node_err err = node__ledger_entries(t, c, scope, grant_after_cb, &g);
    *found = g.found;
    return err;
}

bool node__cut_for_good(node_txn *t, node_engine *e, const proto_header *h)
{
    const node_member *author = node__author(e, h->origin, NULL);
    ledger_key k;
    bool cut = false;
    if (h->kind == PROTO_HDR_DELTA && author != NULL
        && node__ledger_key_get(t, h->tag, &k) == NODE_OK && !node__is_owner(&k, author)) {
        uint64_t n = node__cut_by(t, &k, author->org, h, 0);
        bool later = true;
        cut = n != 0 && n != UINT64_MAX
            && node__granted_after(t, &k.case_id, k.scope, author->org, n, &later) == NODE_OK
            && !later;
    }
    proto_wipe(&k, sizeof(k));
    return cut;
}

bool node__closed_here(node_txn *t, const ledger_key *k, ledger_closed *out)
{
    ledger_closed x;
    bool closed = node__ledger_closed_get(t, &k->case_id, k->scope, &x) == NODE_OK
        && x.access == PROTO_ACCESS_NONE && k->epoch <= x.epoch;
    if (closed && out != NULL)
        *out = x;
    return closed;
}

bool node__tag_closed_here(node_txn *t, const uint8_t tag[32])
{
    ledger_key k;
    bool closed = node__ledger_key_get(t, tag, &k) == NODE_OK && node__closed_here(t, &k, NULL);
    proto_wipe(&k, sizeof(k));
    return closed;
}

bool node__may_hold(node_txn *t, node_engine *e, const proto_header *h)
{
    ledger_key k;
    if (node__ledger_key_get(t, h->tag, &k) == NODE_OK && k.confirmed) {
        /* A scope whose access ended here takes nothing more under the keys it held then but
         * what the owner wrote up to the narrowing (its holders ship nothing else of it to this
         * node: node__may_receive); a later grant's keys are newer. */
        ledger_closed x;
        bool take = !node__closed_here(t, &k, &x) || owner_before(t, &k, x.entry, h);
        proto_wipe(&k, sizeof(k));
        return take;
    }
    proto_wipe(&k, sizeof(k));
    const proto_member_key *key;
    return (h->kind == PROTO_HDR_KEY_GRANT || h->kind == PROTO_HDR_NOTE)
        && node__author(e, h->origin, &key) != NULL && node__grant_slot(e, h, key->box_pk) >= 0;
}

bool node__is_owner(const ledger_key *k, const node_member *m)
{
    return m != NULL && strcmp(m->org, k->owner_org) == 0;
}

typedef struct grant_find {
    const char *org;
    uint64_t upto;
    ledger_entry *out;
    bool found;
} grant_find;

static bool grant_find_cb(const ledger_entry *en, void *ctx)
{
    grant_find *g = ctx;
    if (en->number > g->upto)
        return false;
    if (strcmp(en->grantee, g->org) != 0)
        return true;
    if (en->kind == PROTO_BODY_ACCESS_GRANT) {
        *g->out = *en; /* entries come in number order: the last one found is the newest */
        g->found = true;
    } else if (en->kind == PROTO_BODY_ACCESS_NARROW && g->found && en->access < g->out->access) {
        g->out->access = en->access; /* a later narrowing lowers it, until a later grant */
    }
    return true;
}

bool node__grant_for(node_txn *t, const proto_case_id *c, const char *scope, const char *org,
    uint64_t upto, ledger_entry *out)
{
    grant_find g = { org, upto, out, false };
    if (node__ledger_entries(t, c, scope, grant_find_cb, &g) != NODE_OK)
        return false;
    return g.found;
}

/* Does org hold access of at least `level` in the scope of k, for a header stamped at `at`
 * (the newest grant entry for it among entries 1..upto, and not expired at that time)? The
 * owner always does. */
static bool holds(
    node_txn *t, const ledger_key *k, const char *org, uint8_t level, uint64_t at, uint64_t upto)
{
    if (strcmp(org, k->owner_org) == 0)
        return true;
    ledger_entry *en = malloc(sizeof(*en));
    if (en == NULL)
        return false;
    bool ok = node__grant_for(t, &k->case_id, k->scope, org, upto, en) && en->access >= level
        && (en->expiry_ms == 0 || at <= en->expiry_ms);
    free(en);
    return ok;
}

/* The access-log entry carried by header id (its number, 0: none), the newest narrowing of org's
 * access (its number, 0: none), and the announcement of an epoch. */
typedef struct narrowed_find {
    const char *org;
    const uint8_t *id; /* NULL: none looked for */
    uint64_t entry, narrowing;
    uint8_t narrowing_id[32];  /* the header of the newest narrowing */
    uint64_t epoch, announced; /* the announcement of this epoch (its number, 0: none) */
} narrowed_find;

static bool narrowed_cb(const ledger_entry *en, void *ctx)
{
    narrowed_find *f = ctx;
    if (f->id != NULL && memcmp(en->id, f->id, 32) == 0)
        f->entry = en->number;
    if (en->kind == PROTO_BODY_ACCESS_EPOCH && f->epoch != 0 && en->new_epoch == f->epoch)
        f->announced = en->number;
    if (en->kind == PROTO_BODY_ACCESS_NARROW && strcmp(en->grantee, f->org) == 0) {
        f->narrowing = en->number;
        memcpy(f->narrowing_id, en->id, 32);
    }
    return true;
}

/* A body of this node's own, kept when its scope was purged here (the key is gone): it goes to
 * the case's owner alone, who may have counted the write in its cut without having it yet. */
static bool own_purged_to(node_txn *t, node_engine *e, const proto_header *h, const node_member *m)
{
    proto_case_id c;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    ledger_closed x;
    return memcmp(h->origin, proto_identity_origin(e->me), 32) == 0
        && node__ledger_purged_get(t, h->tag, &c, scope) == NODE_OK
        && node__ledger_closed_get(t, &c, scope, &x) == NODE_OK && strcmp(x.owner_org, m->org) == 0;
}

bool node__may_receive(node_txn *t, node_engine *e, const proto_header *h, const node_member *m)
{
    /* Only a body decided here (merged or refused: what this node wrote is decided too) leaves
     * it, and only to those the access log of its scope names. A key-grant body goes the same
     * way: its tag is its scope's, and its recipients were granted read first. */
    if (node__ledger_applied_get(t, h->id) == 0)
        return false;
    if (h->kind == PROTO_HDR_NOTE) {
        /* a note goes from its author to the owner it is sealed to, and nowhere else */
        ledger_note *n = malloc(sizeof(*n));
        bool to = n != NULL && node__ledger_note_get(t, true, h->id, n) == NODE_OK
            && strcmp(n->note.owner_org, m->org) == 0;
        free(n);
        return to;
    }
    ledger_key k;
    if (node__ledger_key_get(t, h->tag, &k) != NODE_OK)
        return own_purged_to(t, e, h, m);
    bool ok = holds(t, &k, m->org, PROTO_ACCESS_READ, h->hlc.wall, UINT64_MAX);
    if (ok && k.epoch > PROTO_EPOCH_FIRST) {
        /* A later epoch follows a narrowing that may be what excludes m: its bodies go out only
         * once every entry up to its announcement is held here, the narrowing among them. */
        narrowed_find f = { m->org, NULL, 0, 0, { 0 }, k.epoch, 0 };
        ok = node__ledger_entries(t, &k.case_id, k.scope, narrowed_cb, &f) == NODE_OK
            && f.announced != 0
            && node__ledger_entries_contiguous(t, &k.case_id, k.scope) >= f.announced;
    }
    if (!ok) {
        /* An org whose access was narrowed still gets what the owner wrote on its chain up to
         * its newest narrowing, that narrowing included (under keys it holds; key grants too):
         * so it learns of the narrowing, and of the grant it ended when that came late. The same
         * rule on its side says which bodies it still takes (node__may_hold). */
        narrowed_find f = { m->org, NULL, 0, 0, { 0 }, 0, 0 };
        uint8_t origin[32];
        uint64_t seq = 0;
        ok = node__ledger_entries(t, &k.case_id, k.scope, narrowed_cb, &f) == NODE_OK
            && f.narrowing != 0 && node__ledger_place(t, f.narrowing_id, origin, &seq) == NODE_OK
            && memcmp(origin, h->origin, 32) == 0 && h->seq <= seq;
    }
    proto_wipe(&k, sizeof(k));
    return ok;
}

bool node__grant_place(
    node_txn *t, const proto_header *h, const node_member *m, uint8_t origin[32], uint64_t *seq)
{
    ledger_key k;
    if (node__ledger_key_get(t, h->tag, &k) != NODE_OK)
        return false;
    bool found = false;
    if (strcmp(m->org, k.owner_org) != 0) {
        ledger_entry *en = malloc(sizeof(*en));
        found = en != NULL && node__grant_for(t, &k.case_id, k.scope, m->org, UINT64_MAX, en)
            && node__ledger_place(t, en->id, origin, seq) == NODE_OK;
        free(en);
    }
    proto_wipe(&k, sizeof(k));
    return found;
}

bool node__holder(node_txn *t, const uint8_t tag[32], const node_member *m)
{
    ledger_key k;
    if (node__ledger_key_get(t, tag, &k) != NODE_OK)
        return false;
    bool ok = holds(t, &k, m->org, PROTO_ACCESS_READ, 0, UINT64_MAX);
    proto_wipe(&k, sizeof(k));
    return ok;
}

bool node__may_write(node_txn *t, node_engine *e, const ledger_key *k)
{
    /* By the rule every holder applies to the delta (node__authorise): the newest grant among
     * the entries this node holds without a gap, the number its delta states. */
    return holds(t, k, e->cfg.org, PROTO_ACCESS_WRITE, node__now(e),
        node__ledger_entries_contiguous(t, &k->case_id, k->scope));
}

/* Every entry a delta adds must be its author's own: a dot of the author (a counter entry: of
 * its counter origin for that field). Only a redaction names another's event, and only the
 * case owner may redact another's event. Otherwise a member could forge entries in another
 * member's name, or take a dot that member will use and make its later delta conflict. */
static const char *entries_by(const crdt_scope *delta, const uint8_t author[32], bool owner)
{
    const crdt_origin *a = (const crdt_origin *)(const void *)author;
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) != CRDT_OK)
            return "the delta does not read back";
        crdt_origin want = *a;
        if (en.type == CRDT_TIMELINE && en.redacted) {
            if (owner || crdt_origin_cmp(&en.dot.origin, a) == 0)
                continue;
            return "a redaction of another member's event by a member that does not own the case";
        }
        if (en.type == CRDT_COUNTER)
            proto_counter_origin(author, (const char *)en.field.p, en.field.len, want.b);
        if (crdt_origin_cmp(&en.dot.origin, &want) != 0)
            return "an entry carries another member's dot";
    }
    return NULL;
}

/* Does every entry pass the network's schema (the field exists in this scope with this CRDT,
 * its value is one the schema admits, in canonical form), every counter stay within the
 * manifest's per-author limit, and every entry's clock not come after its header's? */
static const char *entries_valid(
    node_engine *e, const char *scope, const crdt_scope *delta, const crdt_hlc *hclock)
{
    const node_scope_def *sd = node_schema_scope(e->schema, scope);
    if (sd == NULL)
        return "a scope the network's schema does not have";
    static char value[65536 + 1], canon[65536 + 1];
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) != CRDT_OK)
            return "the delta does not read back";
        char field[CRDT_FIELD_MAX + 1];
        memcpy(field, en.field.p, en.field.len);
        field[en.field.len] = 0;
        const node_field *f = node_schema_field(e->schema, scope, field);
        if (f == NULL || node_ftype_crdt(f->type) != en.type)
            return "a field the network's schema does not have, or of another type";
        if ((en.type == CRDT_REGISTER || en.type == CRDT_TIMELINE)
            && crdt_hlc_cmp(&en.hlc, hclock) > 0)
            return "an entry stamped later than its header";
        if (en.type == CRDT_COUNTER) {
            if (en.pos > e->manifest.counter_limit || en.neg > e->manifest.counter_limit)
                return "a counter beyond the network's per-author limit";
            continue;
        }
        if (en.type == CRDT_TIMELINE && en.redacted)
            continue;
        const crdt_bytes *v = en.type == CRDT_SET ? &en.elem : &en.value;
        if (v->len > sizeof(value) - 1 || memchr(v->p, 0, v->len) != NULL)
            return "a value the network's schema does not admit";
        memcpy(value, v->p, v->len);
        value[v->len] = 0;
        node_edit_op op = en.type == CRDT_REGISTER ? NODE_EDIT_SET : NODE_EDIT_ADD;
        if (node_schema_check(sd, f, op, value, canon, sizeof(canon), NULL, NULL) != NODE_OK
            || strcmp(value, canon) != 0)
            return "a value the network's schema does not admit";
    }
    return NULL;
}

static int origin_cmp(const void *a, const void *b)
{
    return crdt_origin_cmp(a, b);
}

/* The origins a delta's author creates dots under: its own, and its counter origins of the
 * counter fields the delta carries; sorted. Returns how many (0: out of memory). */
static size_t own_origins(const crdt_scope *delta, const uint8_t author[32], crdt_origin **out)
{
    size_t n = crdt_scope_entry_count(delta), k = 0;
    crdt_origin *own = malloc((n + 1) * sizeof(*own));
    if ((*out = own) == NULL)
        return 0;
    memcpy(own[k++].b, author, 32);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) == CRDT_OK && en.type == CRDT_COUNTER)
            proto_counter_origin(author, (const char *)en.field.p, en.field.len, own[k++].b);
    }
    qsort(own, k, sizeof(*own), origin_cmp);
    return k;
}

/* Do the dots a delta creates under each of its author's origins follow those its author had
 * seen (the version vector the delta states) without a gap? Its dots up to what it had seen
 * are its past; beyond, they must be the next numbers, one after another. A gap would let an
 * author take the future of its own counters at every holder (ARCHITECTURE.md, section 6,
 * finding 3). Decided from the delta's own signed data alone. */
static const char *new_dots_follow(
    const crdt_scope *delta, const proto_body *plain, const crdt_origin *own, size_t nown)
{
    const crdt_cc *cc = crdt_scope_cc(delta);
    for (size_t i = 0; i < nown; i++) {
        uint64_t seen = 0;
        for (size_t k = 0; k < plain->nvv; k++)
            if (crdt_origin_cmp(&plain->vv[k].origin, &own[i]) == 0)
                seen = plain->vv[k].max;
        uint64_t top = crdt_cc_vv_max(cc, &own[i]), hi;
        if (top < seen)
            top = seen;
        hi = top;
        uint64_t beyond = 0; /* cloud dots are distinct, each beyond the vv part of its origin */
        for (size_t k = 0; k < cc->ncloud; k++)
            if (crdt_origin_cmp(&cc->cloud[k].origin, &own[i]) == 0 && cc->cloud[k].counter > top) {
                beyond++;
                if (cc->cloud[k].counter > hi)
                    hi = cc->cloud[k].counter;
            }
        if (hi - top != beyond)
            return "its new dots skip numbers after those its author had seen";
        if (hi - seen > NODE_DELTA_DOTS_MAX)
            return "it creates more dots under one origin than one delta may";
    }
    return NULL;
}

size_t node__new_dots(const crdt_scope *delta, const proto_body *plain, const uint8_t author[32],
    node_dot_range *out, size_t max, node_err *err)
{
    crdt_origin *own = NULL;
    size_t nown = own_origins(delta, author, &own), n = 0;
    *err = nown == 0 ? NODE_ENOMEM : NODE_OK;
    if (nown == 0 || new_dots_follow(delta, plain, own, nown) != NULL) {
        free(own);
        return 0; /* no dots it may be said to create */
    }
    const crdt_cc *dcc = crdt_scope_cc(delta);
    for (size_t i = 0; i < nown; i++) {
        uint64_t seen = 0;
        for (size_t k = 0; k < plain->nvv; k++)
            if (crdt_origin_cmp(&plain->vv[k].origin, &own[i]) == 0)
                seen = plain->vv[k].max;
        uint64_t hi = crdt_cc_max(dcc, &own[i]);
        if (hi <= seen)
            continue;
        if (n == max) {
            *err = NODE_EFULL;
            break;
        }
        out[n++] = (node_dot_range) { own[i], seen + 1, hi };
    }
    free(own);
    return n;
}

/* The new dots of a delta: at most one range per origin it creates dots under (its own, and
 * one counter origin per counter entry). */
static size_t new_dots_alloc(const crdt_scope *delta, const proto_body *plain,
    const uint8_t author[32], node_dot_range **out, node_err *err)
{
    size_t max = crdt_scope_entry_count(delta) + 1;
    if ((*out = malloc(max * sizeof(**out))) == NULL) {
        *err = NODE_ENOMEM;
        return 0;
    }
    return node__new_dots(delta, plain, author, *out, max, err);
}

node_err node__context_only(
    crdt_scope *state, const crdt_scope *delta, const proto_body *plain, const uint8_t author[32])
{
    node_dot_range *r = NULL;
    node_err err = NODE_OK;
    size_t n = new_dots_alloc(delta, plain, author, &r, &err);
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    crdt_scope *dots = NULL;
    for (size_t i = 0; i < n && err == NODE_OK; i++)
        for (uint64_t d = r[i].lo; d <= r[i].hi && err == NODE_OK; d++) {
            crdt_dot dot = { r[i].origin, d };
            if (crdt_cc_add(&cc, &dot) != CRDT_OK)
                err = NODE_ENOMEM;
        }
    if (err == NODE_OK && n > 0
        && (crdt_scope_new(NULL, &dots) != CRDT_OK || crdt_scope_set_cc(dots, &cc) != CRDT_OK
            || crdt_scope_join(state, dots) != CRDT_OK))
        err = NODE_ENOMEM;
    crdt_scope_free(dots);
    crdt_cc_fini(&cc);
    free(r);
    return err;
}

bool node__dots_taken(const crdt_scope *state, const crdt_scope *delta, const proto_body *plain,
    const uint8_t author[32])
{
    node_dot_range *r = NULL;
    node_err err = NODE_OK;
    size_t n = new_dots_alloc(delta, plain, author, &r, &err);
    const crdt_cc *cc = crdt_scope_cc(state);
    bool taken = false;
    for (size_t i = 0; i < n && !taken; i++)
        for (uint64_t d = r[i].lo; d <= r[i].hi && !taken; d++) {
            crdt_dot dot = { r[i].origin, d };
            taken = crdt_cc_contains(cc, &dot);
        }
    free(r);
    return taken;
}

bool node__void(node_txn *t, node_engine *e, const proto_header *h)
{
    const proto_member_key *k;
    if (node__author(e, h->origin, &k) != NULL && k->retired && h->seq > k->last_seq)
        return true; /* beyond its key's retirement: the manifest's cut, for every scope */
    uint64_t fork = node__ledger_fork_seq(t, &e->lim, h->origin);
    return fork != 0 && h->seq >= fork;
}

/* Is origin o one whose dots a waiting delta no longer waits for: the origin of an author
 * caught forking or whose key the manifest retired, or one of its counter origins for a
 * counter field of the scope? */
typedef struct forked_find {
    node_engine *e;
    const char *scope;
    const uint8_t *o;
    bool found;
} forked_find;

static bool forked_cb(const uint8_t origin[32], uint64_t seq, void *ctx)
{
    (void)seq;
    forked_find *f = ctx;
    if (memcmp(origin, f->o, 32) == 0)
        f->found = true;
    const node_scope_def *sd = node_schema_scope(f->e->schema, f->scope);
    for (size_t i = 0; sd != NULL && i < sd->nfields && !f->found; i++) {
        if (sd->fields[i].type != NODE_F_COUNTER)
            continue;
        uint8_t co[32];
        proto_counter_origin(origin, sd->fields[i].name, strlen(sd->fields[i].name), co);
        f->found = memcmp(co, f->o, 32) == 0;
    }
    return !f->found;
}

static bool forked_dots(node_txn *t, node_engine *e, const char *scope, const uint8_t o[32])
{
    if (node__ledger_quarantined(t, o))
        return true;
    forked_find f = { e, scope, o, false };
    if (node__ledger_quarantine_list(t, &e->lim, forked_cb, &f) != NODE_OK)
        return false;
    /* and the keys the manifest retired: what they wrote beyond their retirement is void */
    for (size_t i = 0; i < e->manifest.nmembers && !f.found; i++)
        for (size_t k = 0; k < e->manifest.members[i].nkeys && !f.found; k++)
            if (e->manifest.members[i].keys[k].retired)
                (void)forked_cb(e->manifest.members[i].keys[k].origin, 0, &f);
    return f.found;
}

/* Are the dots the delta's causal context names all covered by the state (decided here) or the
 * author's own (own: its origin's, or its counter origins' of the counter fields the delta
 * carries: the dots it creates, some of them superseded within the delta itself, which
 * new_dots_follow checked)? A context naming another member's dots this node has not decided
 * would let an author claim the future of that member's counter (and with it delete what it
 * writes next, or exhaust its counter); such a delta waits until they are covered. */
static node_auth context_covered(node_txn *t, node_engine *e, const ledger_key *key,
    const crdt_scope *state, const crdt_scope *delta, const crdt_origin *own, size_t k)
{
    const crdt_cc *have = crdt_scope_cc(state), *cc = crdt_scope_cc(delta);
    bool ok = true;
    for (size_t i = 0; i < cc->nvv && ok; i++) {
        if (bsearch(&cc->vv[i].origin, own, k, sizeof(*own), origin_cmp) != NULL
            || forked_dots(t, e, key->scope, cc->vv[i].origin.b))
            continue;
        /* Another's dots 1..max: the state covers them all only in its contiguous part (a
         * cloud dot is never right after it). */
        ok = crdt_cc_vv_max(have, &cc->vv[i].origin) >= cc->vv[i].max;
    }
    for (size_t i = 0; i < cc->ncloud && ok; i++)
        ok = bsearch(&cc->cloud[i].origin, own, k, sizeof(*own), origin_cmp) != NULL
            || crdt_cc_contains(have, &cc->cloud[i])
            || forked_dots(t, e, key->scope, cc->cloud[i].origin.b);
    return ok ? NODE_AUTH_OK : NODE_AUTH_WAIT;
}

/* The access-log entry a non-owner delta says its author had seen last: number n, carried by
 * the owner's header at (origin, seq). Decided from that signed claim, the entries held and
 * the fork points: a place at or beyond its origin's fork point is void, whatever this node
 * holds (it may never hold the other branch), and so is every delta resting on it; otherwise
 * the delta waits until entries 1..n are all held here, and entry n must be the header at
 * that place. */
static node_auth seen_entry(node_txn *t, node_engine *e, const ledger_key *k,
    const proto_body *plain, ledger_entry *en, const char **why)
{
    if (plain->access_seen == 0)
        return NODE_AUTH_OK;
    const node_member *signer = node__author(e, plain->access_origin, NULL);
    if (signer == NULL || strcmp(signer->org, k->owner_org) != 0) {
        *why = "names an access-log entry of a member that does not own the case";
        return NODE_AUTH_NO;
    }
    uint64_t fork = node__ledger_fork_seq(t, &e->lim, plain->access_origin);
    if (fork != 0 && plain->access_at >= fork) {
        *why = "rests on an access-log entry that is void (the owner forked)";
        return NODE_AUTH_NO;
    }
    if (node__ledger_entries_contiguous(t, &k->case_id, k->scope) < plain->access_seen) {
        /* Another member's delta is authorised by the newest grant among the access-log
         * entries its author had seen (1..access_seen), once they are all decided here. */
        *why = "waits for the access-log entries its author had seen";
        return NODE_AUTH_WAIT;
    }
    uint8_t origin[32];
    uint64_t seq = 0;
    if (node__ledger_entry_get(t, &k->case_id, k->scope, plain->access_seen, en) != NODE_OK
        || node__ledger_place(t, en->id, origin, &seq) != NODE_OK || seq != plain->access_at
        || memcmp(origin, plain->access_origin, 32) != 0) {
        *why = "names an access-log entry the owner did not write at that place";
        return NODE_AUTH_NO;
    }
    return NODE_AUTH_OK;
}

/* Does a narrowing of org's access that the delta's author had not seen (numbered after
 * access_seen) cut it: its header beyond the cut's seq for its origin (an origin absent from the
 * cut: cut 0)? *number gets that narrowing's number. */
typedef struct cut_find {
    const char *org;
    const proto_header *h;
    uint64_t after, number;
} cut_find;

static bool cut_cb(const ledger_entry *en, void *ctx)
{
    cut_find *c = ctx;
    if (en->number <= c->after || en->kind != PROTO_BODY_ACCESS_NARROW
        || strcmp(en->grantee, c->org) != 0)
        return true;
    uint64_t cut = 0;
    for (size_t i = 0; i < en->ncut; i++)
        if (memcmp(en->cut[i].origin, c->h->origin, 32) == 0)
            cut = en->cut[i].seq;
    if (c->h->seq > cut)
        c->number = en->number;
    return c->number == 0;
}

uint64_t node__cut_by(
    node_txn *t, const ledger_key *k, const char *org, const proto_header *h, uint64_t seen)
{
    cut_find c = { org, h, seen, 0 };
    if (node__ledger_entries(t, &k->case_id, k->scope, cut_cb, &c) != NODE_OK)
        return UINT64_MAX; /* unreadable log: as cut (never merged on a store error) */
    return c.number;
}

node_auth node__verdict(node_txn *t, node_engine *e, const ledger_key *k, const proto_header *h,
    const node_member *author, const proto_body *plain, const crdt_scope *delta, const char **why)
{
    bool owner = node__is_owner(k, author);
    if ((*why = entries_by(delta, h->origin, owner)) != NULL
        || (*why = entries_valid(e, k->scope, delta, &h->hlc)) != NULL)
        return NODE_AUTH_NO;
    crdt_origin *own = NULL;
    size_t nown = own_origins(delta, h->origin, &own);
    node_auth r = NODE_AUTH_OK;
    ledger_entry *en = NULL;
    if (nown == 0) {
        *why = "out of memory";
        r = NODE_AUTH_WAIT;
    } else if ((*why = new_dots_follow(delta, plain, own, nown)) != NULL) {
        r = NODE_AUTH_NO;
    } else if (owner) {
        r = NODE_AUTH_OK; /* the owner's acts are decided from its own signed data */
    } else if ((en = malloc(sizeof(*en))) == NULL) {
        *why = "out of memory";
        r = NODE_AUTH_WAIT;
    } else if ((r = seen_entry(t, e, k, plain, en, why)) != NODE_AUTH_OK) {
        /* it names an entry this node does not hold yet, or one it cannot rest on */
    } else if (!node__grant_for(t, &k->case_id, k->scope, author->org, plain->access_seen, en)
        || en->access != PROTO_ACCESS_WRITE) {
        *why = "no write grant among the access-log entries its author had seen";
        r = NODE_AUTH_NO;
    } else if (en->expiry_ms != 0 && h->hlc.wall > en->expiry_ms) {
        *why = "stamped after its write grant expired";
        r = NODE_AUTH_NO;
    } else if (node__cut_by(t, k, author->org, h, plain->access_seen) != 0) {
        *why = "written beyond the cut of a narrowing of its access (revoked or downgraded)";
        r = NODE_AUTH_NO;
    }
    free(en);
    free(own);
    return r;
}

node_auth node__authorise(node_txn *t, node_engine *e, const ledger_key *k, const crdt_scope *state,
    const proto_header *h, const node_member *author, const proto_body *plain,
    const crdt_scope *delta, const char **why)
{
    node_auth r = node__verdict(t, e, k, h, author, plain, delta, why);
    if (r != NODE_AUTH_OK)
        return r;
    /* A delta waits for the causal past it names, the owner's too (merged before a delta whose
     * dots its context names, it made that one look like a second creation of them, void until
     * the rebuild decided its scope again), but for the dots of an origin caught forking (its own
     * and its counter origins'): beyond its fork point those are void, and a node holding the
     * other branch never decides them (void deltas join nothing, apply.c), so waiting for them
     * could last for ever. This delays, never changes, a verdict: node__verdict above does not
     * look. */
    const crdt_cc *cc = crdt_scope_cc(state);
    for (size_t i = 0; i < plain->nvv && r == NODE_AUTH_OK; i++)
        if (crdt_cc_vv_max(cc, &plain->vv[i].origin) < plain->vv[i].max
            && !forked_dots(t, e, k->scope, plain->vv[i].origin.b))
            r = NODE_AUTH_WAIT;
    if (r == NODE_AUTH_OK) {
        crdt_origin *own = NULL;
        size_t nown = own_origins(delta, h->origin, &own);
        r = nown == 0 ? NODE_AUTH_WAIT : context_covered(t, e, k, state, delta, own, nown);
        free(own);
    }
    /* Nor where this node's access to the scope ended and what it received stays, closed
     * (public task, legal obligation: purge.c): no peer sends it the scope's bodies any more, so
     * the past a delta received before the end names may never come. It merges with what is
     * here; a body of that past come after all is decided by the rebuild, as for any dot
     * created twice. */
    if (r == NODE_AUTH_WAIT && node__closed_here(t, k, NULL))
        r = NODE_AUTH_OK;
    if (r == NODE_AUTH_WAIT)
        *why = "waits for the causal past it names";
    return r;
}

/* Generations of scopes, for the retry of deltas waiting for their causal past (core.h,
 * node_engine.scope_gen). */
uint16_t node__scope_slot(const proto_case_id *case_id, const char *scope)
{
    /* FNV-1a over the case id and the scope name: spreads slots, nothing secret about it */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof(case_id->b); i++)
        h = (h ^ case_id->b[i]) * 16777619u;
    for (const char *p = scope; *p != 0; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (uint16_t)(h ^ (h >> 16));
}

void node__scope_moved(node_engine *e, const proto_case_id *case_id, const char *scope)
{
    if (e->scope_gen != NULL)
        e->scope_gen[node__scope_slot(case_id, scope)]++;
}
