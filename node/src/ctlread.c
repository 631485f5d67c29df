/*
 * ctlread.c - the control commands that read (node/CONTROL.md): case.show, consent.list,
 * case.list, case.find, status, digest, schema. May call: ctlreq.c, access.c, state.c, ledger.c,
 * findidx.c, store.c, proto, crdt.
 */
#include "ctl.h"
#include "findidx.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LIST_MAX ((size_t)1 << 22) /* cases in one case.list answer */

/* ---------------------------------------------------------------------------------------- */
/* Reading a case                                                                            */

/* The JSON of one field's value (what a person reads), adding conflicts when there are. */
json_object *node__field_json(node_engine *e, const crdt_scope *s, const char *scope,
    const char *field, crdt_type type, json_object *conflicts)
{
    const node_field *f = node_schema_field(e->schema, scope, field);
    size_t n = 0;
    switch (type) {
    case CRDT_REGISTER: {
        if (crdt_register_count(s, field, &n) != CRDT_OK || n == 0)
            return NULL;
        json_object *winner = NULL,
                    *all = n > 1 && conflicts != NULL ? json_object_new_array() : NULL;
        for (size_t i = 0; i < n; i++) {
            crdt_reg_value v;
            if (crdt_register_at(s, field, i, &v) != CRDT_OK)
                continue;
            json_object *j;
            char buf[64];
            if (f != NULL && f->type == NODE_F_NUMBER && v.value.len < sizeof(buf)) {
                memcpy(buf, v.value.p, v.value.len);
                buf[v.value.len] = 0;
                j = json_object_new_int64(strtoll(buf, NULL, 10));
            } else {
                j = json_object_new_string_len((const char *)v.value.p, (int)v.value.len);
            }
            if (i == 0)
                winner = j;
            if (all != NULL)
                json_object_array_add(all, i == 0 ? json_object_get(j) : j);
            else if (i > 0)
                json_object_put(j); /* (no conflicts wanted: the winner alone) */
        }
        if (all != NULL) {
            char key[PROTO_SCOPE_NAME_MAX + CRDT_FIELD_MAX + 2];
            snprintf(key, sizeof(key), "%s.%s", scope, field);
            json_object_object_add(conflicts, key, all);
        }
        return winner;
    }
    case CRDT_SET: {
        json_object *a = json_object_new_array();
        if (crdt_set_count(s, field, &n) == CRDT_OK)
            for (size_t i = 0; i < n; i++) {
                crdt_bytes b;
                if (crdt_set_at(s, field, i, &b) == CRDT_OK)
                    json_object_array_add(
                        a, json_object_new_string_len((const char *)b.p, (int)b.len));
            }
        return a;
    }
    case CRDT_COUNTER: {
        int64_t v = 0;
        if (crdt_counter_value(s, field, &v) != CRDT_OK)
            return NULL;
        return json_object_new_int64(v);
    }
    case CRDT_TIMELINE: {
        json_object *a = json_object_new_array();
        if (crdt_timeline_count(s, field, &n) == CRDT_OK)
            for (size_t i = 0; i < n; i++) {
                crdt_event ev;
                if (crdt_timeline_at(s, field, i, &ev) != CRDT_OK)
                    continue;
                json_object *o = json_object_new_object();
                char at[32], hex[65];
                node__rfc3339(ev.hlc.wall, at);
                json_object_object_add(o, "at", json_object_new_string(at));
                json_object_object_add(
                    o, "by", json_object_new_string(node__org_of(e, ev.id.origin.b, hex)));
                char eid[NODE_EVENT_ID_SIZE];
                node__event_id(&ev.id, eid);
                json_object_object_add(o, "id", json_object_new_string(eid));
                if (ev.redacted) {
                    json_object_object_add(o, "event", NULL);
                    json_object_object_add(o, "redacted", json_object_new_boolean(1));
                } else {
                    /* Contents are stored without a NUL: parse a terminated copy. */
                    json_object *body = NULL;
                    char *copy = malloc(ev.content.len + 1);
                    if (copy != NULL) {
                        memcpy(copy, ev.content.p, ev.content.len);
                        copy[ev.content.len] = 0;
                        body = json_tokener_parse(copy);
                        free(copy);
                    }
                    json_object_object_add(o, "event", body);
                }
                json_object_array_add(a, o);
            }
        return a;
    }
    }
    return NULL;
}

/* This node is not the owner and its newest grant in (case, scope) of key tag has ended by its
 * clock: the scope is no longer shown here (the owner sees its scopes always). What holders
 * accept from this node is judged by the signed clocks of its writes, not by this view. */
bool node__ended_here(node_txn *t, const node_engine *e, const proto_case_id *c, const char *scope,
    const uint8_t tag[32])
{
    ledger_key k;
    bool mine = node__ledger_key_get(t, tag, &k) == NODE_OK && strcmp(k.owner_org, e->cfg.org) == 0;
    proto_wipe(&k, sizeof(k));
    ledger_entry *en = mine ? NULL : malloc(sizeof(*en));
    ledger_closed x;
    bool ended = en != NULL
        && ((node__grant_for(t, c, scope, e->cfg.org, UINT64_MAX, en)
                && ((en->expiry_ms != 0 && en->expiry_ms < node__now(e))
                    || en->access == PROTO_ACCESS_NONE)) /* revoked: closed here */
            || (node__ledger_closed_get(t, c, scope, &x) == NODE_OK
                && x.access == PROTO_ACCESS_NONE));
    free(en);
    return ended;
}

/* A closed scope (ledger_closed) as JSON (node/CONTROL.md, status "closed"). */
static json_object *closed_json(const proto_case_id *c, const char *scope, const ledger_closed *x)
{
    json_object *o = json_object_new_object();
    char id[PROTO_CASE_ID_TEXT_SIZE], at[32];
    if (c != NULL) {
        proto_case_id_format(c, id);
        json_object_object_add(o, "case", json_object_new_string(id));
    }
    json_object_object_add(o, "scope", json_object_new_string(scope));
    json_object_object_add(o, "owner", json_object_new_string(x->owner_org));
    json_object_object_add(o, "entry", json_object_new_int64((int64_t)x->entry));
    node__rfc3339(x->at_ms, at);
    json_object_object_add(o, "since", json_object_new_string(at));
    json_object_object_add(o, "reason", json_object_new_string(node__narrow_reason(x->reason)));
    const char *basis = proto_basis_name(x->basis), *acc = proto_access_name(x->access);
    json_object_object_add(o, "basis", basis != NULL ? json_object_new_string(basis) : NULL);
    json_object_object_add(o, "access", json_object_new_string(acc != NULL ? acc : "?"));
    json_object_object_add(o, "purged", json_object_new_boolean(x->purged));
    json_object_object_add(o, "own_writes_refused", json_object_new_int64((int64_t)x->refused));
    return o;
}

typedef struct show_ctx {
    node_engine *e;
    const proto_case_id *id;
    json_object *scopes, *conflicts, *access, *closed;
    char owner[PROTO_ORG_MAX + 1];
    size_t n;
    node_err err;
    node_txn *t;
} show_ctx;

/* One access-log entry as JSON (node/CONTROL.md, case.show "access"). */
static bool entry_json_cb(const ledger_entry *en, void *ctx)
{
    json_object *o = json_object_new_object(), *a = ctx;
    char at[32];
    json_object_object_add(o, "number", json_object_new_int64((int64_t)en->number));
    node__rfc3339(en->hlc.wall, at);
    json_object_object_add(o, "recorded_at", json_object_new_string(at));
    if (en->kind == PROTO_BODY_ACCESS_EPOCH) {
        json_object_object_add(o, "kind", json_object_new_string("epoch"));
        json_object_object_add(o, "epoch", json_object_new_int64((int64_t)en->new_epoch));
        json_object_array_add(a, o);
        return true;
    }
    bool narrow = en->kind == PROTO_BODY_ACCESS_NARROW;
    const char *acc = proto_access_name(en->access), *basis = proto_basis_name(en->basis);
    json_object_object_add(o, "kind", json_object_new_string(narrow ? "narrowing" : "grant"));
    json_object_object_add(o, "to", json_object_new_string(en->grantee));
    json_object_object_add(o, "access", json_object_new_string(acc ? acc : "?"));
    if (narrow) {
        json_object_object_add(
            o, "reason", json_object_new_string(node__narrow_reason(en->reason)));
        json_object_object_add(o, "cut", json_object_new_int64((int64_t)en->ncut));
    } else {
        json_object_object_add(o, "purpose", json_object_new_string(en->purpose));
        json_object_object_add(o, "basis", json_object_new_string(basis ? basis : "?"));
        json_object_object_add(
            o, "provision", en->provision[0] ? json_object_new_string(en->provision) : NULL);
        char until[32];
        if (en->expiry_ms != 0)
            node__rfc3339(en->expiry_ms, until);
        json_object_object_add(
            o, "until", en->expiry_ms != 0 ? json_object_new_string(until) : NULL);
        json_object_object_add(o, "until_ms",
            en->expiry_ms != 0 ? json_object_new_int64((int64_t)en->expiry_ms) : NULL);
    }
    json_object_object_add(o, "operator", json_object_new_string(en->operator_name));
    json_object_object_add(
        o, "unix_user", en->unix_user[0] ? json_object_new_string(en->unix_user) : NULL);
    /* a narrowing's note is kept where a grant keeps its evidence */
    json_object_object_add(o, narrow ? "note" : "evidence",
        en->evidence[0] ? json_object_new_string(en->evidence) : NULL);
    json_object_array_add(a, o);
    return true;
}

/* The state of each grant and narrowing of one scope's access log (entries in number order), as
 * this node sees it now: a grant is "replaced" when a later entry grants the same org again (the
 * newest one is the one in force); "revoked", "expired" or "downgraded" when a narrowing of that
 * org follows it before any later grant (the lowest access left decides; a narrowing to read of
 * a read grant changes nothing); else "expired" once its end has passed by this node's clock
 * (what a holder accepts is judged by the writes' signed clocks, ARCHITECTURE.md section 4),
 * else "active". A narrowing is "revoked", "expired" (its reason) or "downgraded", or "replaced"
 * by a later grant. */
static void grant_states(json_object *entries, uint64_t now)
{
    /* per org, what follows the entry at hand: "grant", or the word of the narrowing that
     * leaves the least since the next grant */
    json_object *later = json_object_new_object();
    for (size_t i = json_object_array_length(entries); i-- > 0;) {
        json_object *o = json_object_array_get_idx(entries, i), *v, *until = NULL, *after;
        const char *kind
            = json_object_object_get_ex(o, "kind", &v) ? json_object_get_string(v) : "";
        bool grant = strcmp(kind, "grant") == 0;
        if (!grant && strcmp(kind, "narrowing") != 0)
            continue;
        const char *to = json_object_object_get_ex(o, "to", &v) ? json_object_get_string(v) : "";
        const char *acc
            = json_object_object_get_ex(o, "access", &v) ? json_object_get_string(v) : "";
        const char *next
            = json_object_object_get_ex(later, to, &after) ? json_object_get_string(after) : "";
        bool ends = strcmp(next, "revoked") == 0 || strcmp(next, "expired") == 0;
        const char *state;
        if (strcmp(next, "grant") == 0) {
            state = "replaced";
        } else if (!grant) {
            const char *reason
                = json_object_object_get_ex(o, "reason", &v) ? json_object_get_string(v) : "";
            state = strcmp(acc, "read") == 0     ? "downgraded"
                : strcmp(reason, "expired") == 0 ? "expired"
                                                 : "revoked";
            if (!ends)
                json_object_object_add(later, to, json_object_new_string(state));
        } else if (ends || (strcmp(next, "downgraded") == 0 && strcmp(acc, "write") == 0)) {
            state = next;
        } else {
            state = json_object_object_get_ex(o, "until_ms", &until) && until != NULL
                    && (uint64_t)json_object_get_int64(until) < now
                ? "expired"
                : "active";
        }
        json_object_object_add(o, "state", json_object_new_string(state));
        if (grant)
            json_object_object_add(later, to, json_object_new_string("grant"));
    }
    json_object_put(later);
}

static bool show_scope_cb(const char *scope, const uint8_t tag[32], void *ctx)
{
    show_ctx *c = ctx;
    if (node__ended_here(c->t, c->e, c->id, scope, tag))
        return true; /* its grant here has ended */
    crdt_scope *s = NULL;
    if ((c->err = node__ledger_state_get(c->t, tag, &c->e->lim, &s)) != NODE_OK)
        return false;
    json_object *obj = json_object_new_object();
    size_t nf = crdt_scope_field_count(s);
    for (size_t i = 0; i < nf; i++) {
        const char *name;
        crdt_type type;
        if (crdt_scope_field_at(s, i, &name, &type) != CRDT_OK)
            continue;
        json_object *v = node__field_json(c->e, s, scope, name, type, c->conflicts);
        if (v != NULL)
            json_object_object_add(obj, name, v);
    }
    json_object_object_add(c->scopes, scope, obj);
    crdt_scope_free(s);
    ledger_key k;
    if ((c->err = node__ledger_key_get(c->t, tag, &k)) != NODE_OK)
        return false;
    snprintf(c->owner, sizeof(c->owner), "%s", k.owner_org);
    json_object *entries = json_object_new_array();
    c->err = node__ledger_entries(c->t, &k.case_id, scope, entry_json_cb, entries);
    proto_wipe(&k, sizeof(k));
    grant_states(entries, node__now(c->e));
    json_object_object_add(c->access, scope, entries);
    c->n++;
    return c->err == NODE_OK;
}

/* A closed scope of the case still held here (public task, legal obligation: kept, closed).
 * A purged one is not shown: the case answers as one this node cannot read. */
static bool show_closed_cb(
    const proto_case_id *c, const char *scope, const ledger_closed *x, void *ctx)
{
    (void)c;
    show_ctx *s = ctx;
    if (!x->purged && x->access == PROTO_ACCESS_NONE) {
        json_object_object_add(s->closed, scope, closed_json(NULL, scope, x));
        snprintf(s->owner, sizeof(s->owner), "%s", x->owner_org);
        s->n++;
    }
    return true;
}

typedef struct show_req {
    show_ctx *c;
    const proto_case_id *id;
    bool owned;
} show_req;

static node_err show_cb(node_txn *t, void *ctx)
{
    show_req *s = ctx;
    s->c->t = t;
    s->c->n = 0;
    s->c->err = NODE_OK;
    s->owned = node__ledger_case_owned(t, s->id, NULL);
    node_err err = node__ledger_case_scopes(t, s->id, show_scope_cb, s->c);
    if (err == NODE_OK && s->c->err == NODE_OK)
        err = node__ledger_closed_list(t, s->id, show_closed_cb, s->c);
    return err != NODE_OK ? err : s->c->err;
}

/* What case.show answers: {"id", "owner", "scopes", "conflicts", "access"}; NULL after
 * replying the refusal itself. */
static json_object *case_doc(req *r)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return NULL;
    show_ctx sc = { .e = r->e,
        .id = &c,
        .scopes = json_object_new_object(),
        .conflicts = json_object_new_object(),
        .access = json_object_new_object(),
        .closed = json_object_new_object() };
    show_req s = { &sc, &c, false };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, show_cb, &s, &msg);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    if (err != NODE_OK || (sc.n == 0 && !s.owned)) {
        json_object_put(sc.scopes);
        json_object_put(sc.conflicts);
        json_object_put(sc.access);
        json_object_put(sc.closed);
        if (err != NODE_OK) {
            node__ctl_error(r->e, r->id, CODE_INTERNAL, msg.text);
            return NULL;
        }
        char m[128];
        snprintf(m, sizeof(m), "no readable scope of case %s on this node", id);
        node__ctl_error(r->e, r->id, CODE_NOTFOUND, m);
        return NULL;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(
        doc, "owner", json_object_new_string(s.owned ? r->e->cfg.org : sc.owner));
    json_object_object_add(doc, "scopes", sc.scopes);
    json_object_object_add(doc, "conflicts", sc.conflicts);
    json_object_object_add(doc, "access", sc.access);
    json_object_object_add(doc, "closed", sc.closed);
    return doc;
}

/* The schema's labels of what doc shows: {"SCOPE": label, "SCOPE.FIELD": label}. */
static json_object *labels_of(node_engine *e, json_object *doc)
{
    json_object *labels = json_object_new_object(), *scopes = NULL;
    json_object_object_get_ex(doc, "scopes", &scopes);
    json_object_object_foreach(scopes, sname, fields)
    {
        const node_scope_def *sd = node_schema_scope(e->schema, sname);
        if (sd != NULL && sd->label != NULL)
            json_object_object_add(labels, sname, json_object_new_string(sd->label));
        json_object_object_foreach(fields, fname, v)
        {
            (void)v;
            const node_field *f = node_schema_field(e->schema, sname, fname);
            char key[PROTO_SCOPE_NAME_MAX + CRDT_FIELD_MAX + 2];
            snprintf(key, sizeof key, "%s.%s", sname, fname);
            if (f != NULL && f->label != NULL)
                json_object_object_add(labels, key, json_object_new_string(f->label));
        }
    }
    return labels;
}

void node__cmd_case_show(req *r)
{
    char opt[8] = "";
    if (r->nargs > 3
        || (r->nargs == 3
            && (!node__ctl_arg(r, 2, opt, sizeof opt)
                || (opt[0] != '\0' && strcmp(opt, "labels") != 0)))) {
        node__ctl_error(r->e, r->id, CODE_USAGE, "case.show takes: case, and 'labels' or nothing");
        return;
    }
    json_object *doc = case_doc(r);
    if (doc != NULL && strcmp(opt, "labels") == 0)
        json_object_object_add(doc, "labels", labels_of(r->e, doc));
    if (doc != NULL)
        node__ctl_json(r->e, r->id, doc);
}

/* The notes of a case, as consent.list rows: those received here (the owner) not applied yet
 * ("withdrawal pending", "drop pending": an operator decides, the grant not resting on
 * consent), and those written here ("sent": on their way to the owner, or taken there). */
typedef struct note_rows {
    const proto_case_id *c;
    json_object *rows;
    bool mine;
} note_rows;

static bool note_row_cb(const ledger_note *rec, void *ctx)
{
    note_rows *nr = ctx;
    const proto_note *n = &rec->note;
    if (memcmp(&n->case_id, nr->c, sizeof(*nr->c)) != 0
        || (!nr->mine && rec->state != LEDGER_NOTE_PENDING))
        return true;
    bool drop = n->kind == PROTO_NOTE_DROP;
    char at[32];
    node__rfc3339(rec->at_ms, at);
    for (size_t i = 0; i < n->nscopes; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "scope", json_object_new_string(n->scopes[i]));
        json_object_object_add(o, "kind", json_object_new_string(drop ? "drop" : "withdrawal"));
        json_object_object_add(o, "recorded_at", json_object_new_string(at));
        json_object_object_add(o, "to", json_object_new_string(n->grantee));
        json_object_object_add(o, "from", json_object_new_string(rec->author_org));
        json_object_object_add(o, "operator", json_object_new_string(n->operator_name));
        json_object_object_add(
            o, "unix_user", n->unix_user[0] ? json_object_new_string(n->unix_user) : NULL);
        json_object_object_add(
            o, "evidence", n->evidence[0] ? json_object_new_string(n->evidence) : NULL);
        json_object_object_add(o, "state",
            json_object_new_string(nr->mine ? "sent"
                    : drop                  ? "drop pending"
                                            : "withdrawal pending"));
        json_object_array_add(nr->rows, o);
    }
    return true;
}

static node_err note_rows_cb(node_txn *t, void *ctx)
{
    note_rows *nr = ctx;
    nr->mine = false;
    node_err err = node__ledger_notes(t, false, note_row_cb, nr);
    nr->mine = true;
    return err != NODE_OK ? err : node__ledger_notes(t, true, note_row_cb, nr);
}

/* consent.list: every grant and narrowing of the access logs this node can read of the case,
 * one row per (scope, entry), with the scope and its state, then the notes of the case. */
void node__cmd_consent_list(req *r)
{
    json_object *doc = case_doc(r), *access, *id, *owner;
    if (doc == NULL)
        return;
    json_object *out = json_object_new_object(), *grants = json_object_new_array();
    json_object_object_get_ex(doc, "id", &id);
    json_object_object_get_ex(doc, "owner", &owner);
    json_object_object_add(out, "id", json_object_get(id));
    json_object_object_add(out, "owner", json_object_get(owner));
    json_object_object_get_ex(doc, "access", &access);
    json_object_object_foreach(access, scope, entries)
    {
        for (size_t i = 0; i < json_object_array_length(entries); i++) {
            json_object *e = json_object_array_get_idx(entries, i), *kind;
            if (!json_object_object_get_ex(e, "kind", &kind)
                || (strcmp(json_object_get_string(kind), "grant") != 0
                    && strcmp(json_object_get_string(kind), "narrowing") != 0))
                continue;
            json_object *row = json_object_new_object();
            json_object_object_add(row, "scope", json_object_new_string(scope));
            json_object_object_foreach(e, key, val)
            {
                json_object_object_add(row, key, json_object_get(val));
            }
            json_object_array_add(grants, row);
        }
    }
    proto_case_id c;
    node_errmsg msg;
    note_rows nr = { &c, grants, false };
    if (proto_case_id_parse(json_object_get_string(id), strlen(json_object_get_string(id)), &c)
            != PROTO_OK
        || node_store_read(r->e->store, note_rows_cb, &nr, &msg) != NODE_OK) {
        json_object_put(out);
        json_object_put(grants);
        json_object_put(doc);
        node__ctl_error(r->e, r->id, CODE_INTERNAL, "cannot read the notes of the case");
        return;
    }
    json_object_object_add(out, "grants", grants);
    json_object_put(doc);
    node__ctl_json(r->e, r->id, out);
}

/* ---------------------------------------------------------------------------------------- */
/* case list                                                                                 */

typedef struct list_item {
    proto_case_id id;
    json_object *scopes;
    uint64_t last;
    char owner[PROTO_ORG_MAX + 1]; /* "" until a scope or the case's opening names it */
    find_summary *sum;             /* case.list: its anagrafica when readable here, or NULL */
    char sortkey[160];             /* --sort name: folded "cognome nome" */
} list_item;

/* case.list's --where scope.field=VALUE */
typedef struct list_where {
    char scope[PROTO_SCOPE_NAME_MAX + 1], field[CRDT_FIELD_MAX + 1];
    const node_field *f;
    char value[1024], folded[2048];
} list_where;

typedef struct list_ctx {
    node_txn *t;
    list_item *items;
    size_t n, cap;
    bool oom;
    const node_engine *e;
    const list_where *where; /* or NULL */
} list_ctx;

/* node__ledger_cases gives the cases opened here in id order, then every readable scope in case
 * order: a case is new unless it is the last one seen; list_merge joins the two runs. */
static bool list_cb(const proto_case_id *c, const char *scope, const uint8_t *tag, void *ctx)
{
    list_ctx *l = ctx;
    list_item *it = NULL;
    if (l->n > 0 && memcmp(l->items[l->n - 1].id.b, c->b, 16) == 0)
        it = &l->items[l->n - 1];
    if (it == NULL) {
        if (node__vec_reserve(&l->items, &l->cap, l->n + 1, sizeof(*l->items), LIST_MAX)
            != NODE_OK) {
            l->oom = true;
            return false;
        }
        it = &l->items[l->n++];
        memset(it, 0, sizeof(*it));
        it->id = *c;
        it->scopes = json_object_new_array();
    }
    if (scope == NULL)
        snprintf(it->owner, sizeof(it->owner), "%s", l->e->cfg.org);
    if (scope != NULL && !node__ended_here(l->t, l->e, c, scope, tag)) {
        json_object_array_add(it->scopes, json_object_new_string(scope));
        uint64_t last = node__ledger_last_change(l->t, tag);
        if (last > it->last)
            it->last = last;
        ledger_key k;
        if (it->owner[0] == 0 && node__ledger_key_get(l->t, tag, &k) == NODE_OK)
            snprintf(it->owner, sizeof(it->owner), "%s", k.owner_org);
        proto_wipe(&k, sizeof(k));
    }
    return true;
}

static int by_id(const void *a, const void *b)
{
    const list_item *x = a, *y = b;
    return memcmp(x->id.b, y->id.b, 16);
}

/* Sort by id and join the entries of one case (n log n). */
static void list_merge(list_ctx *l)
{
    if (l->n < 2)
        return;
    qsort(l->items, l->n, sizeof(*l->items), by_id);
    size_t w = 0;
    for (size_t i = 1; i < l->n; i++) {
        list_item *to = &l->items[w], *from = &l->items[i];
        if (memcmp(to->id.b, from->id.b, 16) != 0) {
            l->items[++w] = *from;
            continue;
        }
        size_t ns = json_object_array_length(from->scopes);
        for (size_t k = 0; k < ns; k++)
            json_object_array_add(
                to->scopes, json_object_get(json_object_array_get_idx(from->scopes, k)));
        json_object_put(from->scopes);
        if (from->last > to->last)
            to->last = from->last;
        if (to->owner[0] == 0)
            memcpy(to->owner, from->owner, sizeof(to->owner));
    }
    l->n = w + 1;
}

static bool has_scope(json_object *scopes, const char *scope)
{
    for (size_t i = 0; i < json_object_array_length(scopes); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(scopes, i)), scope) == 0)
            return true;
    return false;
}

/* Does the case's field equal the --where value? A register: its winning value (text folded:
 * case and accents do not matter); a set: holds the value; a counter: its sum. Its scope must be
 * readable here (it is in the item's scopes). */
static node_err where_match(list_ctx *l, const list_item *it, bool *match)
{
    const list_where *w = l->where;
    *match = false;
    if (!has_scope(it->scopes, w->scope))
        return NODE_OK;
    ledger_key k;
    node_err err = node__ledger_key_for(l->t, &it->id, w->scope, &k);
    crdt_scope *s = NULL;
    if (err == NODE_OK)
        err = node__ledger_state_get(l->t, k.tag, &l->e->lim, &s);
    proto_wipe(&k, sizeof(k));
    if (err != NODE_OK)
        return err == NODE_ENOTFOUND ? NODE_OK : err;
    bool text = w->f->type == NODE_F_TEXT || (w->f->type == NODE_F_SET && w->f->of == NODE_F_TEXT);
    char buf[2048];
    size_t n = 0;
    if (w->f->type == NODE_F_SET) {
        crdt_bytes b;
        if (crdt_set_count(s, w->field, &n) != CRDT_OK)
            n = 0;
        for (size_t i = 0; i < n && !*match; i++) {
            if (crdt_set_at(s, w->field, i, &b) != CRDT_OK)
                continue;
            if (text)
                node__find_fold((const char *)b.p, b.len, buf, sizeof(buf));
            *match = text ? strcmp(buf, w->folded) == 0
                          : b.len == strlen(w->value) && memcmp(b.p, w->value, b.len) == 0;
        }
    } else if (w->f->type == NODE_F_COUNTER) {
        int64_t v;
        *match = crdt_counter_value(s, w->field, &v) == CRDT_OK
            && snprintf(buf, sizeof(buf), "%lld", (long long)v) > 0 && strcmp(buf, w->value) == 0;
    } else {
        crdt_reg_value rv;
        if (crdt_register_count(s, w->field, &n) == CRDT_OK && n > 0
            && crdt_register_at(s, w->field, 0, &rv) == CRDT_OK) {
            if (text)
                node__find_fold((const char *)rv.value.p, rv.value.len, buf, sizeof(buf));
            *match = text ? strcmp(buf, w->folded) == 0
                          : rv.value.len == strlen(w->value)
                    && memcmp(rv.value.p, w->value, rv.value.len) == 0;
        }
    }
    crdt_scope_free(s);
    return NODE_OK;
}

/* On a failure at item i, the items kept so far and those not looked at yet stay listed (their
 * scopes are freed with the answer). */
static node_err list_stop(list_ctx *l, size_t w, size_t i, node_err err)
{
    memmove(&l->items[w], &l->items[i], (l->n - i) * sizeof(*l->items));
    l->n = w + (l->n - i);
    return err;
}

/* case.list: filter by --where, and each case's names (its anagrafica, when readable). */
static node_err list_detail(list_ctx *l)
{
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        list_item *it = &l->items[i];
        bool keep = true;
        if (l->where != NULL) {
            node_err err = where_match(l, it, &keep);
            if (err != NODE_OK)
                return list_stop(l, w, i, err);
        }
        if (!keep) {
            json_object_put(it->scopes);
            continue;
        }
        if (has_scope(it->scopes, "anagrafica")) {
            if ((it->sum = malloc(sizeof(*it->sum))) == NULL)
                return list_stop(l, w, i, NODE_ENOMEM);
            if (!node__find_summary(l->t, &it->id, it->sum)) {
                free(it->sum);
                it->sum = NULL;
            }
        }
        if (it->sum != NULL) {
            char both[sizeof(it->sum->cognome) + sizeof(it->sum->nome) + 2];
            snprintf(both, sizeof(both), "%s %s", it->sum->cognome, it->sum->nome);
            node__find_fold(both, strlen(both), it->sortkey, sizeof(it->sortkey));
        }
        l->items[w++] = *it;
    }
    l->n = w;
    return NODE_OK;
}

static node_err list_txn_cb(node_txn *t, void *ctx)
{
    list_ctx *l = ctx;
    l->t = t;
    node_err err = node__ledger_cases(t, list_cb, l);
    if (err == NODE_OK && !l->oom)
        list_merge(l);
    if (err == NODE_OK && !l->oom)
        err = list_detail(l);
    return err != NODE_OK ? err : l->oom ? NODE_ENOMEM : NODE_OK;
}

static int by_last_desc(const void *a, const void *b)
{
    const list_item *x = a, *y = b;
    if (x->last != y->last)
        return (x->last < y->last) - (x->last > y->last);
    return memcmp(x->id.b, y->id.b, 16);
}

/* Cases without a name (or birth date) here come last, in change order. */
static int by_name(const void *a, const void *b)
{
    const list_item *x = a, *y = b;
    bool hx = x->sortkey[0] != 0, hy = y->sortkey[0] != 0;
    if (hx != hy)
        return hx ? -1 : 1;
    int c = strcmp(x->sortkey, y->sortkey);
    return c != 0 ? c : by_last_desc(a, b);
}

static int by_birth(const void *a, const void *b)
{
    const list_item *x = a, *y = b;
    const char *bx = x->sum != NULL ? x->sum->birth : "", *by = y->sum != NULL ? y->sum->birth : "";
    if ((bx[0] != 0) != (by[0] != 0))
        return bx[0] != 0 ? -1 : 1;
    int c = strcmp(bx, by);
    return c != 0 ? c : by_name(a, b);
}

#define LIST_LIMIT_MAX 1000000

/* The arguments of case.list (all optional): where, sort, limit. False after answering. */
static bool list_args(
    req *r, list_where *w, bool *where, int (**cmp)(const void *, const void *), size_t *limit)
{
    char arg[1100];
    *where = false;
    *cmp = by_last_desc;
    *limit = SIZE_MAX;
    if (r->nargs > 1 && node__ctl_arg(r, 1, arg, sizeof(arg)) && arg[0] != 0) {
        const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
        size_t sl = dot != NULL ? (size_t)(dot - arg) : 0;
        size_t fl = dot != NULL && eq != NULL && eq > dot ? (size_t)(eq - dot - 1) : 0;
        char m[1300];
        if (eq == NULL || dot == NULL || dot > eq || sl == 0 || sl > PROTO_SCOPE_NAME_MAX || fl == 0
            || fl > CRDT_FIELD_MAX) {
            snprintf(m, sizeof(m), "--where '%s' is not scope.field=VALUE", arg);
            node__ctl_error(r->e, r->id, CODE_USAGE, m);
            return false;
        }
        memcpy(w->scope, arg, sl);
        w->scope[sl] = 0;
        memcpy(w->field, dot + 1, fl);
        w->field[fl] = 0;
        snprintf(w->value, sizeof(w->value), "%s", eq + 1);
        w->f = node_schema_field(r->e->schema, w->scope, w->field);
        if (w->f == NULL || w->f->type == NODE_F_TIMELINE) {
            snprintf(m, sizeof(m),
                w->f == NULL ? "--where: %s.%s is not a field of the schema (see 'patto schema')"
                             : "--where: %s.%s is a timeline, which --where cannot compare",
                w->scope, w->field);
            node__ctl_error(r->e, r->id, CODE_REFUSED, m);
            return false;
        }
        node__find_fold(w->value, strlen(w->value), w->folded, sizeof(w->folded));
        *where = true;
    }
    if (r->nargs > 2 && node__ctl_arg(r, 2, arg, sizeof(arg)) && arg[0] != 0) {
        if (strcmp(arg, "name") == 0)
            *cmp = by_name;
        else if (strcmp(arg, "birth") == 0)
            *cmp = by_birth;
        else if (strcmp(arg, "change") != 0) {
            node__ctl_error(r->e, r->id, CODE_USAGE, "--sort must be name, birth or change");
            return false;
        }
    }
    if (r->nargs > 3 && node__ctl_arg(r, 3, arg, sizeof(arg)) && arg[0] != 0) {
        char *end;
        unsigned long v = strtoul(arg, &end, 10);
        if (*end != 0 || arg[0] < '0' || arg[0] > '9' || v < 1 || v > LIST_LIMIT_MAX) {
            node__ctl_error(r->e, r->id, CODE_USAGE, "--limit must be a whole number from 1");
            return false;
        }
        *limit = v;
    }
    return true;
}

void node__cmd_case_list(req *r)
{
    list_where w;
    bool has_where;
    int (*cmp)(const void *, const void *);
    size_t limit;
    if (!list_args(r, &w, &has_where, &cmp, &limit))
        return;
    list_ctx l = { NULL, NULL, 0, 0, false, r->e, has_where ? &w : NULL };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, list_txn_cb, &l, &msg);
    json_object *doc = json_object_new_object(), *cases = json_object_new_array();
    if (err == NODE_OK && l.n > 0) /* no cases: no array to sort (qsort of NULL) */
        qsort(l.items, l.n, sizeof(*l.items), cmp);
    for (size_t i = 0; i < l.n; i++) {
        list_item *it = &l.items[i];
        if (i >= limit) {
            json_object_put(it->scopes);
            free(it->sum);
            continue;
        }
        json_object *o = json_object_new_object();
        char id[PROTO_CASE_ID_TEXT_SIZE], at[32];
        proto_case_id_format(&it->id, id);
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "scopes", it->scopes);
        if (it->last) {
            node__rfc3339(it->last, at);
            json_object_object_add(o, "last_change", json_object_new_string(at));
        } else {
            json_object_object_add(o, "last_change", NULL);
        }
        json_object_object_add(o, "owner", it->owner[0] ? json_object_new_string(it->owner) : NULL);
        const find_summary *s = it->sum;
        json_object_object_add(
            o, "cognome", s != NULL && s->cognome[0] ? json_object_new_string(s->cognome) : NULL);
        json_object_object_add(
            o, "nome", s != NULL && s->nome[0] ? json_object_new_string(s->nome) : NULL);
        json_object_object_add(
            o, "data_nascita", s != NULL && s->birth[0] ? json_object_new_string(s->birth) : NULL);
        free(it->sum);
        json_object_array_add(cases, o);
    }
    json_object_object_add(doc, "total", json_object_new_int64((int64_t)l.n));
    free(l.items);
    json_object_object_add(doc, "cases", cases);
    if (err != NODE_OK) {
        json_object_put(doc);
        node__ctl_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    node__ctl_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* case find                                                                                 */

#define FIND_LIMIT_DEFAULT 20
#define FIND_LIMIT_MAX 1000

/* One share of the memory budget: what it holds now and its bound, in bytes. */
static void share_json(json_object *parts, const char *name, size_t bytes, size_t bound)
{
    json_object *s = json_object_new_object();
    json_object_object_add(s, "bytes", json_object_new_int64((int64_t)bytes));
    json_object_object_add(s, "bound", json_object_new_int64((int64_t)bound));
    json_object_object_add(parts, name, s);
}

/* The memory budget ([node] memory_mb), what each share of it holds, and the heap as the C
 * library counts it (node/CONFIG.md "Memory"). */
static json_object *memory_json(const node_engine *e)
{
    const node_budget *b = &e->budget;
    size_t unread = 0, send = 0;
    if (e->host.net_queued != NULL)
        e->host.net_queued(e->host.ctx, &unread, &send);
    json_object *mem = json_object_new_object();
    json_object_object_add(mem, "budget", json_object_new_int64((int64_t)b->total));
#ifdef __GLIBC__
    /* from the system: the main heap (arena) and the chunks mapped on their own (hblkhd),
     * besides the arenas of other threads; in use: what is allocated and not freed */
    struct mallinfo2 mi = mallinfo2();
    json_object_object_add(mem, "heap", json_object_new_int64((int64_t)(mi.arena + mi.hblkhd)));
    json_object_object_add(
        mem, "heap_in_use", json_object_new_int64((int64_t)(mi.uordblks + mi.hblkhd)));
#endif
    json_object *parts = json_object_new_object();
    share_json(parts, "inbound", e->inq_bytes, b->inq);
    share_json(parts, "unread", unread, b->rx);
    share_json(parts, "send", send, b->tx);
    share_json(parts, "held_headers", e->pending_bytes, b->held);
    share_json(parts, "parked", e->park.bytes, b->park);
    share_json(parts, "wanted", e->wants.n * NODE_WANT_COST, b->wants * NODE_WANT_COST);
    share_json(parts, "waiting", e->waits.n * NODE_WAIT_COST, b->waits * NODE_WAIT_COST);
    json_object_object_add(mem, "shares", parts);
    json_object_object_add(mem, "lists_full", json_object_new_boolean(e->lists_full));
    json_object_object_add(mem, "refills", json_object_new_int64((int64_t)e->lists_refills));
    json_object_object_add(mem, "remakes", json_object_new_int64((int64_t)e->waits_remakes));
    return mem;
}

/* Is scope of case c readable here now (a key held, its grant here not ended)? owner gets the
 * case's owner when it is. */
static bool readable_here(node_txn *t, const node_engine *e, const proto_case_id *c,
    const char *scope, char owner[PROTO_ORG_MAX + 1])
{
    ledger_key k;
    bool ok = node__ledger_key_for(t, c, scope, &k) == NODE_OK
        && !node__ended_here(t, e, c, scope, k.tag);
    if (ok && owner != NULL)
        snprintf(owner, PROTO_ORG_MAX + 1, "%s", k.owner_org);
    proto_wipe(&k, sizeof(k));
    return ok;
}

static json_object *text_or_null(const char *s)
{
    return s[0] ? json_object_new_string(s) : NULL;
}

typedef struct find_ctx {
    node_engine *e;
    const char *query;
    bool fuzzy;
    size_t limit;
    json_object *cases;
    find_result res;
    bool more;
    node_errmsg qmsg;
    bool refused; /* the query itself: qmsg says why */
} find_ctx;

static node_err find_cb(node_txn *t, void *ctx)
{
    find_ctx *f = ctx;
    node_err err = node__find_query(t, f->query, f->fuzzy, &f->res, &f->qmsg);
    if (err == NODE_EINVAL) {
        f->refused = true;
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    size_t shown = 0;
    for (size_t i = 0; i < f->res.n; i++) {
        const find_hit *h = &f->res.hits[i];
        char owner[PROTO_ORG_MAX + 1];
        if (!readable_here(t, f->e, &h->id, h->scope, owner))
            continue; /* its grant here has ended: not shown, as in case show */
        if (shown == f->limit) {
            f->more = true;
            break;
        }
        shown++;
        find_summary s;
        bool named = readable_here(t, f->e, &h->id, "anagrafica", NULL)
            && node__find_summary(t, &h->id, &s);
        if (!named)
            memset(&s, 0, sizeof(s));
        json_object *o = json_object_new_object();
        char id[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(&h->id, id);
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "owner", json_object_new_string(owner));
        json_object_object_add(o, "cognome", text_or_null(s.cognome));
        json_object_object_add(o, "nome", text_or_null(s.nome));
        json_object_object_add(o, "data_nascita", text_or_null(s.birth));
        json_object_object_add(o, "codice_fiscale", text_or_null(s.cf));
        json_object_object_add(o, "matched", json_object_new_string(h->matched));
        json_object_object_add(o, "score", json_object_new_int64((int64_t)h->score));
        json_object_array_add(f->cases, o);
    }
    return NODE_OK;
}

/* case.find: args query, "fuzzy" or "", limit ("" for the default). */
void node__cmd_case_find(req *r)
{
    char query[600], mode[16], lim[16];
    if (!node__ctl_arg(r, 1, query, sizeof(query))) {
        node__ctl_error(r->e, r->id, CODE_USAGE, "case.find needs a query of at most 599 bytes");
        return;
    }
    mode[0] = lim[0] = 0;
    if ((r->nargs > 2 && !node__ctl_arg(r, 2, mode, sizeof(mode)))
        || (mode[0] != 0 && strcmp(mode, "fuzzy") != 0)) {
        node__ctl_error(r->e, r->id, CODE_USAGE, "case.find: the mode must be \"fuzzy\" or empty");
        return;
    }
    size_t limit = FIND_LIMIT_DEFAULT;
    bool lim_ok = r->nargs <= 3 || node__ctl_arg(r, 3, lim, sizeof(lim));
    if (!lim_ok || lim[0] != 0) {
        char *end = lim;
        unsigned long v = lim_ok ? strtoul(lim, &end, 10) : 0;
        if (!lim_ok || *end != 0 || lim[0] < '0' || lim[0] > '9' || v < 1 || v > FIND_LIMIT_MAX) {
            char m[128];
            snprintf(m, sizeof(m), "the limit must be a whole number from 1 to %d (got '%.15s')",
                FIND_LIMIT_MAX, lim_ok ? lim : "?");
            node__ctl_error(r->e, r->id, CODE_REFUSED, m);
            return;
        }
        limit = v;
    }
    find_ctx f = { .e = r->e,
        .query = query,
        .fuzzy = mode[0] != 0,
        .limit = limit,
        .cases = json_object_new_array() };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, find_cb, &f, &msg);
    if (err != NODE_OK || f.refused) {
        json_object_put(f.cases);
        node__find_result_free(&f.res);
        if (f.refused)
            node__ctl_error(r->e, r->id, CODE_REFUSED, f.qmsg.text);
        else
            node__ctl_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    static const char *const kinds[] = { "name", "code", "birth_date" };
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "query", json_object_new_string(query));
    json_object_object_add(doc, "kind", json_object_new_string(kinds[f.res.kind]));
    json_object_object_add(doc, "term", json_object_new_string(f.res.term));
    json_object_object_add(doc, "fuzzy", json_object_new_boolean(f.fuzzy));
    json_object_object_add(doc, "limit", json_object_new_int64((int64_t)limit));
    json_object_object_add(doc, "more", json_object_new_boolean(f.more || f.res.truncated));
    json_object_object_add(doc, "cases", f.cases);
    node__find_result_free(&f.res);
    node__ctl_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* status, digest, schema                                                                    */

typedef struct status_ctx {
    node_engine *e;
    node_txn *t;
    proto_vv_item *vv;
    size_t nvv;
    size_t cases, bodies;
    json_object *quarantined;
    json_object *closed; /* scopes whose access ended here (the first STATUS_CLOSED_LISTED) */
    size_t nclosed;
} status_ctx;

/* This node's own writes voided by its own fork, listed in status: at most this many (the
 * count is whole). */
#define STATUS_VOID_LISTED 100

/* One of them: its seq, clock, kind and, when this node holds the key of its tag, the case and
 * scope. */
static json_object *void_write_json(status_ctx *c, const proto_header *h)
{
    json_object *w = json_object_new_object();
    json_object_object_add(w, "seq", json_object_new_int64((int64_t)h->seq));
    json_object_object_add(w, "at_ms", json_object_new_int64((int64_t)h->hlc.wall));
    json_object_object_add(
        w, "kind", json_object_new_string(h->kind == PROTO_HDR_KEY_GRANT ? "key grant" : "delta"));
    ledger_key k;
    if (node__ledger_key_get(c->t, h->tag, &k) == NODE_OK) {
        char id[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(&k.case_id, id);
        json_object_object_add(w, "case", json_object_new_string(id));
        json_object_object_add(w, "scope", json_object_new_string(k.scope));
    }
    proto_wipe(&k, sizeof(k));
    return w;
}

static bool quar_json_cb(const uint8_t origin[32], uint64_t seq, void *ctx)
{
    status_ctx *c = ctx;
    json_object *o = json_object_new_object();
    char hex[65];
    json_object_object_add(o, "org", json_object_new_string(node__org_of(c->e, origin, hex)));
    json_object_object_add(o, "origin", node__hexstr(origin, 32));
    json_object_object_add(o, "seq", json_object_new_int64((int64_t)seq));
    bool self = memcmp(origin, proto_identity_origin(c->e->me), 32) == 0;
    json_object_object_add(o, "self", json_object_new_boolean(self));
    if (self) {
        /* This node's own log forked (a restore from an old backup that wrote again): how many
         * of its own writes from the fork point on are void everywhere. */
        size_t voided = 0;
        json_object *list = json_object_new_array();
        uint64_t last = node__ledger_vv_get(c->t, origin);
        for (uint64_t s = seq; s <= last; s++) {
            const void *hb;
            size_t hl;
            proto_header h;
            if (node__ledger_header_get(c->t, origin, s, &hb, &hl) != NODE_OK
                || proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
                continue;
            if (node__ledger_applied_get(c->t, h.id) == LEDGER_VOID
                && voided++ < STATUS_VOID_LISTED)
                json_object_array_add(list, void_write_json(c, &h));
            proto_header_fini(&h);
        }
        json_object_object_add(o, "void_own", json_object_new_int64((int64_t)voided));
        json_object_object_add(o, "void_own_writes", list);
    }
    json_object_array_add(c->quarantined, o);
    return true;
}

/* Closed scopes listed in status: at most this many (the count is whole). */
#define STATUS_CLOSED_LISTED 100

static bool status_closed_cb(
    const proto_case_id *c, const char *scope, const ledger_closed *x, void *ctx)
{
    status_ctx *s = ctx;
    if (s->nclosed++ < STATUS_CLOSED_LISTED)
        json_object_array_add(s->closed, closed_json(c, scope, x));
    return true;
}

/* The cases case.list would list, counted without building the list: node__ledger_cases gives
 * the cases opened here, then the cases with a scope readable here; one of the second run counts
 * unless it was opened here (one lookup a case). */
typedef struct cases_count {
    node_txn *t;
    proto_case_id last;
    bool any;
    size_t n;
} cases_count;

static bool count_case_cb(const proto_case_id *c, const char *scope, const uint8_t *tag, void *ctx)
{
    (void)tag;
    cases_count *x = ctx;
    if (x->any && memcmp(x->last.b, c->b, 16) == 0)
        return true; /* another scope of the same case */
    x->last = *c;
    x->any = true;
    if (scope == NULL || !node__ledger_case_owned(x->t, c, NULL))
        x->n++;
    return true;
}

static node_err status_cb(node_txn *t, void *ctx)
{
    status_ctx *c = ctx;
    c->t = t;
    node_err err;
    cases_count cc = { t, { { 0 } }, false, 0 };
    if ((err = node__ledger_vv_all(t, &c->e->lim, &c->vv, &c->nvv)) != NODE_OK
        || (err = node_txn_count(t, NODE_DB_BODIES, &c->bodies)) != NODE_OK
        || (err = node__ledger_cases(t, count_case_cb, &cc)) != NODE_OK)
        return err;
    c->cases = cc.n;
    if ((err = node__ledger_closed_list(t, NULL, status_closed_cb, c)) != NODE_OK)
        return err;
    return node__ledger_quarantine_list(t, &c->e->lim, quar_json_cb, c);
}

static json_object *vv_json(const proto_vv_item *vv, size_t n)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        proto_hex_encode(vv[i].origin, 32, hex);
        json_object_object_add(o, hex, json_object_new_int64((int64_t)vv[i].seq));
    }
    return o;
}

void node__cmd_status(req *r)
{
    node_engine *e = r->e;
    status_ctx c
        = { .e = e, .quarantined = json_object_new_array(), .closed = json_object_new_array() };
    node_errmsg msg;
    node_err err = node_store_read(e->store, status_cb, &c, &msg);
    if (err != NODE_OK) {
        json_object_put(c.quarantined);
        json_object_put(c.closed);
        free(c.vv);
        node__ctl_error(e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    json_object *doc = json_object_new_object(), *versions = json_object_new_object();
    uint64_t now = node__mono(e);
    json_object_object_add(doc, "org", json_object_new_string(e->cfg.org));
    json_object_object_add(doc, "role", json_object_new_string(e->cfg.role));
    json_object_object_add(doc, "pid", json_object_new_int64((int64_t)getpid()));
    json_object_object_add(doc, "uptime_s",
        json_object_new_int64(now > e->started_ms ? (int64_t)((now - e->started_ms) / 1000) : 0));
    json_object_object_add(doc, "listen", json_object_new_string(e->cfg.listen));
    json_object_object_add(
        doc, "advertise", json_object_new_string(node_config_advertise(&e->cfg)));
    json_object_object_add(doc, "dir", json_object_new_string(e->dir));
    json_object_object_add(versions, "program", json_object_new_string(PATTO_VERSION));
    json_object_object_add(versions, "protocol", json_object_new_int(PROTO_VERSION));
    json_object_object_add(versions, "schema", node__hexstr(e->schema_hash, 32));
    json_object_object_add(versions, "schema_file",
        e->schema_next != NULL ? node__hexstr(e->schema_next_hash, 32) : NULL);
    json_object_object_add(versions, "manifest",
        e->have_manifest ? json_object_new_int64((int64_t)e->manifest.version) : NULL);
    json_object_object_add(doc, "versions", versions);
    json_object_object_add(doc, "removed", json_object_new_boolean(e->removed));
    json_object_object_add(doc, "alerts", node__alerts(e));
    json_object *peers = json_object_new_array(), *members = json_object_new_array();
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        json_object *mo = json_object_new_object();
        json_object_object_add(mo, "org", json_object_new_string(m->org));
        json_object_object_add(mo, "role",
            json_object_new_string(proto_role_name(m->role) ? proto_role_name(m->role) : "?"));
        json_object_object_add(mo, "origin", node__hexstr(m->origin, 32));
        json_object_object_add(mo, "active", json_object_new_boolean(m->active));
        const proto_member *pm = &e->manifest.members[i];
        json_object_object_add(mo, "keys", json_object_new_int64((int64_t)pm->nkeys));
        json_object_object_add(mo, "key_effective_ms",
            json_object_new_int64((int64_t)proto_member_current(pm)->effective_ms));
        json_object_array_add(members, mo);
        if (m->self || !m->active)
            continue;
        json_object *p = json_object_new_object();
        json_object_object_add(p, "org", json_object_new_string(m->org));
        json_object_object_add(p, "state",
            json_object_new_string(m->pipe ? "up"
                    : m->dialer            ? "connecting"
                                           : "down"));
        uint64_t lag = 0;
        for (size_t k = 0; k < m->nvv; k++) {
            uint64_t mine = 0;
            for (size_t j = 0; j < c.nvv; j++)
                if (memcmp(c.vv[j].origin, m->vv[k].origin, 32) == 0)
                    mine = c.vv[j].seq;
            if (m->vv[k].seq > mine)
                lag += m->vv[k].seq - mine;
        }
        json_object_object_add(p, "lag", json_object_new_int64((int64_t)lag));
        /* Whole seconds: a fraction printed as a double would show its binary rounding. */
        json_object_object_add(p, "last_heard_s",
            m->last_heard_ms ? json_object_new_int64(
                now > m->last_heard_ms ? (int64_t)((now - m->last_heard_ms) / 1000) : 0)
                             : NULL);
        json_object_object_add(p, "clock_offset_ms",
            m->clock_sampled_ms ? json_object_new_int64(m->clock_offset_ms) : NULL);
        json_object_array_add(peers, p);
    }
    json_object_object_add(doc, "peers", peers);
    json_object_object_add(doc, "vv", vv_json(c.vv, c.nvv));
    uint64_t headers = 0;
    for (size_t i = 0; i < c.nvv; i++)
        headers += c.vv[i].seq;
    json_object *counts = json_object_new_object();
    json_object_object_add(counts, "cases", json_object_new_int64((int64_t)c.cases));
    json_object_object_add(counts, "headers", json_object_new_int64((int64_t)headers));
    json_object_object_add(counts, "bodies", json_object_new_int64((int64_t)c.bodies));
    json_object_object_add(
        counts, "waits_retried", json_object_new_int64((int64_t)e->waits_retried));
    json_object_object_add(doc, "counts", counts);
    json_object *tr = json_object_new_object();
    json_object_object_add(
        tr, "frames_sent", json_object_new_int64((int64_t)e->traffic.frames_sent));
    json_object_object_add(tr, "bytes_sent", json_object_new_int64((int64_t)e->traffic.bytes_sent));
    json_object_object_add(
        tr, "headers_sent", json_object_new_int64((int64_t)e->traffic.headers_sent));
    json_object_object_add(
        tr, "bodies_sent", json_object_new_int64((int64_t)e->traffic.bodies_sent));
    json_object_object_add(
        tr, "headers_got", json_object_new_int64((int64_t)e->traffic.headers_got));
    json_object_object_add(
        tr, "headers_dup", json_object_new_int64((int64_t)e->traffic.headers_dup));
    json_object_object_add(tr, "bodies_got", json_object_new_int64((int64_t)e->traffic.bodies_got));
    json_object_object_add(tr, "bodies_dup", json_object_new_int64((int64_t)e->traffic.bodies_dup));
    json_object_object_add(tr, "parked", json_object_new_int64((int64_t)e->park.parked));
    json_object_object_add(tr, "unparked", json_object_new_int64((int64_t)e->park.unparked));
    json_object_object_add(
        tr, "park_dropped", json_object_new_int64((int64_t)(e->park.evicted + e->park.expired)));
    json_object_object_add(tr, "park_bytes", json_object_new_int64((int64_t)e->park.bytes));
    json_object_object_add(doc, "traffic", tr);
    json_object_object_add(doc, "memory", memory_json(e));
    json_object_object_add(doc, "quarantined", c.quarantined);
    json_object_object_add(doc, "closed", c.closed);
    json_object_object_add(doc, "closed_count", json_object_new_int64((int64_t)c.nclosed));
    size_t causal = 0, clock = 0, key = 0;
    for (size_t i = 0; i < e->waits.n; i++) {
        causal += e->waits.v[i].why == WAIT_CAUSAL;
        clock += e->waits.v[i].why == WAIT_CLOCK;
        key += e->waits.v[i].why == WAIT_KEY;
    }
    json_object *waiting = json_object_new_object();
    json_object_object_add(waiting, "causal", json_object_new_int64((int64_t)causal));
    json_object_object_add(waiting, "clock", json_object_new_int64((int64_t)clock));
    json_object_object_add(waiting, "key", json_object_new_int64((int64_t)key));
    size_t moot = 0;
    for (size_t i = 0; i < e->wants.n; i++)
        moot += e->wants.v[i].moot;
    json_object_object_add(waiting, "bodies", json_object_new_int64((int64_t)(e->wants.n - moot)));
    json_object_object_add(waiting, "bodies_refused", json_object_new_int64((int64_t)moot));
    json_object_object_add(waiting, "headers", json_object_new_int64((int64_t)e->pending.n));
    json_object_object_add(
        waiting, "held_back_authors", json_object_new_int64((int64_t)e->held_back.n));
    json_object_object_add(doc, "waiting", waiting);
    json_object_object_add(doc, "members", members);
    json_object *purposes = json_object_new_array();
    for (size_t i = 0; e->have_manifest && i < e->manifest.npurposes; i++) {
        json_object *p = json_object_new_object();
        const proto_purpose *pp = &e->manifest.purposes[i];
        json_object_object_add(
            p, "id", json_object_new_string_len((const char *)pp->id.p, (int)pp->id.len));
        json_object_object_add(p, "description",
            json_object_new_string_len((const char *)pp->description.p, (int)pp->description.len));
        json_object_array_add(purposes, p);
    }
    json_object_object_add(doc, "purposes", purposes);
    free(c.vv);
    node__ctl_json(e, r->id, doc);
}

typedef struct digest_ctx {
    node_engine *e;
    node_txn *t;
    json_object *tags;
    proto_vv_item *vv;
    size_t nvv;
    node_err err;
} digest_ctx;

static bool digest_tag_cb(const uint8_t tag[32], void *ctx)
{
    digest_ctx *c = ctx;
    /* A scope closed here (access ended, kept: public task) no longer follows the others: its
     * state is what it held when its access ended, so it is left out. */
    if (node__tag_closed_here(c->t, tag))
        return true;
    crdt_scope *s = NULL;
    if ((c->err = node__ledger_state_get(c->t, tag, &c->e->lim, &s)) != NODE_OK)
        return false;
    uint8_t d[32];
    if (proto_scope_digest(s, d) != PROTO_OK) {
        crdt_scope_free(s);
        c->err = NODE_ENOMEM;
        return false;
    }
    crdt_scope_free(s);
    char hex[65];
    proto_hex_encode(tag, 32, hex);
    json_object_object_add(c->tags, hex, node__hexstr(d, 32));
    return true;
}

static node_err digest_cb(node_txn *t, void *ctx)
{
    digest_ctx *c = ctx;
    c->t = t;
    node_err err = node__ledger_vv_all(t, &c->e->lim, &c->vv, &c->nvv);
    if (err == NODE_OK)
        err = node__ledger_key_tags(t, digest_tag_cb, c);
    return err != NODE_OK ? err : c->err;
}

/* `digest vv`: the version vector alone, and how much this node still has in hand (waiting
 * bodies, wanted bodies, held-out-of-order headers, queued messages): O(origins), cheap enough
 * to poll while a sync runs, where the whole digest reads and hashes every scope state. */
static node_err digest_vv_cb(node_txn *t, void *ctx)
{
    digest_ctx *c = ctx;
    return node__ledger_vv_all(t, &c->e->lim, &c->vv, &c->nvv);
}

static void digest_vv(req *r)
{
    node_engine *e = r->e;
    digest_ctx c = { .e = e };
    node_errmsg msg;
    if (node_store_read(e->store, digest_vv_cb, &c, &msg) != NODE_OK) {
        free(c.vv);
        node__ctl_error(e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    size_t wants = 0;
    for (size_t i = 0; i < e->wants.n; i++)
        wants += !e->wants.v[i].moot;
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "vv", vv_json(c.vv, c.nvv));
    json_object_object_add(doc, "in_hand",
        json_object_new_int64(
            (int64_t)(e->waits.n + wants + e->pending.n + (e->inq_head != NULL ? 1 : 0))));
    free(c.vv);
    node__ctl_json(e, r->id, doc);
}

void node__cmd_digest(req *r)
{
    char arg[8];
    if (r->nargs > 1) {
        if (r->nargs == 2 && node__ctl_arg(r, 1, arg, sizeof(arg)) && strcmp(arg, "vv") == 0) {
            digest_vv(r);
        } else {
            node__ctl_error(r->e, r->id, CODE_USAGE,
                "digest takes no argument, or 'vv' for the version vector alone");
        }
        return;
    }
    digest_ctx c = { .e = r->e, .tags = json_object_new_object() };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, digest_cb, &c, &msg);
    if (err != NODE_OK) {
        json_object_put(c.tags);
        free(c.vv);
        node__ctl_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "vv", vv_json(c.vv, c.nvv));
    json_object_object_add(doc, "tags", c.tags);
    free(c.vv);
    node__ctl_json(r->e, r->id, doc);
}

void node__cmd_schema(req *r)
{
    node_engine *e = r->e;
    json_object *doc = json_object_new_object(), *scopes = json_object_new_array();
    json_object_object_add(doc, "schema", json_object_new_string(e->schema->name));
    json_object_object_add(doc, "version", json_object_new_int64(e->schema->version));
    json_object_object_add(doc, "hash", node__hexstr(e->schema_hash, 32));
    for (size_t i = 0; i < e->schema->nscopes; i++) {
        const node_scope_def *s = &e->schema->scopes[i];
        json_object *so = json_object_new_object(), *fields = json_object_new_array();
        json_object_object_add(so, "name", json_object_new_string(s->name));
        json_object_object_add(so, "label", s->label ? json_object_new_string(s->label) : NULL);
        for (size_t j = 0; j < s->nfields; j++) {
            const node_field *f = &s->fields[j];
            json_object *fo = json_object_new_object();
            json_object_object_add(fo, "name", json_object_new_string(f->name));
            json_object_object_add(fo, "type", json_object_new_string(node_ftype_name(f->type)));
            json_object_object_add(fo, "label", f->label ? json_object_new_string(f->label) : NULL);
            if (f->type == NODE_F_SET)
                json_object_object_add(fo, "of", json_object_new_string(node_ftype_name(f->of)));
            if (f->nvalues > 0) {
                json_object *va = json_object_new_array();
                for (size_t k = 0; k < f->nvalues; k++)
                    json_object_array_add(va, json_object_new_string(f->values[k]));
                json_object_object_add(fo, "values", va);
            }
            if (f->type == NODE_F_TEXT || (f->type == NODE_F_SET && f->of == NODE_F_TEXT))
                json_object_object_add(fo, "max", json_object_new_int64((int64_t)f->max_len));
            if (f->type == NODE_F_NUMBER) {
                json_object_object_add(fo, "min", json_object_new_int64(f->min));
                json_object_object_add(fo, "max", json_object_new_int64(f->max));
            }
            if (f->check != NODE_CHECK_NONE)
                json_object_object_add(
                    fo, "check", json_object_new_string(node_check_name(f->check)));
            json_object_array_add(fields, fo);
        }
        json_object_object_add(so, "fields", fields);
        json_object_array_add(scopes, so);
    }
    json_object_object_add(doc, "scopes", scopes);
    node__ctl_json(e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* The owner of a case, as this node knows it                                                */

typedef struct owner_find {
    const proto_case_id *c;
    char *owner;
    bool owned;
    node_txn *t;
} owner_find;

static bool owner_scope_cb(const char *scope, const uint8_t tag[32], void *ctx)
{
    (void)scope;
    owner_find *f = ctx;
    ledger_key k;
    if (node__ledger_key_get(f->t, tag, &k) == NODE_OK)
        snprintf(f->owner, PROTO_ORG_MAX + 1, "%s", k.owner_org);
    proto_wipe(&k, sizeof(k));
    return f->owner[0] == 0;
}

static node_err owner_cb(node_txn *t, void *ctx)
{
    owner_find *f = ctx;
    f->t = t;
    f->owned = node__ledger_case_owned(t, f->c, NULL);
    return f->owned ? NODE_OK : node__ledger_case_scopes(t, f->c, owner_scope_cb, f);
}

node_err node__case_owner(node_engine *e, const proto_case_id *c, char owner[PROTO_ORG_MAX + 1])
{
    owner[0] = 0;
    owner_find f = { c, owner, false, NULL };
    node_errmsg msg;
    node_err err = node_store_read(e->store, owner_cb, &f, &msg);
    if (err == NODE_OK && f.owned)
        snprintf(owner, PROTO_ORG_MAX + 1, "%s", e->cfg.org);
    return err != NODE_OK ? err : owner[0] != 0 ? NODE_OK : NODE_ENOTFOUND;
}
