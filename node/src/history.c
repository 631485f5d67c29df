/*
 * case.log: a case's history as this node can read it, from the deltas it merged. For each
 * readable scope, its merged deltas (every epoch) are replayed in the order of their signed
 * clocks (a linear extension of their causal order: a delta's clock is after every one it
 * had seen) into an empty state; each field a delta touches (its own entries, and the entries
 * of the replayed state its context covers and it does not keep: a removal or an overwrite)
 * gives a change, the field's value before and after, as case.show prints values. A register
 * left with more than one value after a delta is a conflict: each side with who wrote it and
 * when. Refused and void deltas are not part of the history. Cost: O(deltas x entries) of the
 * scope, in one read transaction.
 * May call: rebuild.c (node__scope_deltas), ctlread.c (values as case.show prints them),
 * ledger.c, store.c, ctlreq.c (answers), crdt.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deltas replayed per scope at most, and changes answered at most. */
#define LOG_DELTAS_MAX ((size_t)1 << 20)
#define LOG_LIMIT_MAX 10000
#define LOG_LIMIT_DEFAULT 100

typedef struct logged {
    crdt_hlc hlc;
    uint8_t origin[32];
    char org[PROTO_ORG_MAX + 1];
    crdt_scope *delta;
} logged;
typedef NODE_VEC(logged) logged_vec;

static node_err take_cb(
    const proto_header *h, int mark, const node_member *author, crdt_scope **delta, void *ctx)
{
    if (mark != LEDGER_APPLIED || author == NULL)
        return NODE_OK;
    logged *l = NODE_VEC_PUSH((logged_vec *)ctx, LOG_DELTAS_MAX);
    if (l == NULL)
        return NODE_ENOMEM;
    l->hlc = h->hlc;
    memcpy(l->origin, h->origin, 32);
    snprintf(l->org, sizeof l->org, "%s", author->org);
    l->delta = *delta;
    *delta = NULL;
    return NODE_OK;
}

static int by_clock(const void *a, const void *b)
{
    const logged *x = a, *y = b;
    int c = crdt_hlc_cmp(&x->hlc, &y->hlc);
    return c != 0 ? c : memcmp(x->origin, y->origin, 32);
}

typedef struct log_ctx {
    node_engine *e;
    node_txn *t;
    const proto_case_id *c;
    size_t readable;                      /* scopes read */
    char scope[PROTO_SCOPE_NAME_MAX + 1]; /* "" : every scope */
    char field[CRDT_FIELD_MAX + 1];       /* "" : every field */
    json_object *changes;                 /* every change, oldest first */
    size_t n;
    node_err err;
} log_ctx;

/* The names of the fields a delta touches: its own entries' and those of the replayed state its
 * context covers (overwritten or removed; kept, when before and after are the same). */
typedef NODE_VEC(char *) name_vec;

static node_err names_add(name_vec *v, const crdt_bytes *f)
{
    for (size_t i = 0; i < v->n; i++)
        if (strlen(v->v[i]) == f->len && memcmp(v->v[i], f->p, f->len) == 0)
            return NODE_OK;
    char **slot = NODE_VEC_PUSH(v, 4096);
    if (slot == NULL || (*slot = malloc(f->len + 1)) == NULL)
        return NODE_ENOMEM;
    memcpy(*slot, f->p, f->len);
    (*slot)[f->len] = '\0';
    return NODE_OK;
}

static void names_free(name_vec *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    NODE_VEC_FREE(v);
}

static node_err names_of(const crdt_scope *run, const crdt_scope *d, name_vec *v)
{
    crdt_entry en;
    node_err err = NODE_OK;
    for (size_t i = 0; err == NODE_OK && i < crdt_scope_entry_count(d); i++)
        if (crdt_scope_entry_at(d, i, &en) == CRDT_OK)
            err = names_add(v, &en.field);
    const crdt_cc *cc = crdt_scope_cc(d);
    for (size_t i = 0; err == NODE_OK && i < crdt_scope_entry_count(run); i++)
        if (crdt_scope_entry_at(run, i, &en) == CRDT_OK && crdt_cc_contains(cc, &en.dot))
            err = names_add(v, &en.field);
    return err;
}

/* The type of field in s (its first entry), or false when s holds none. */
static bool type_in(const crdt_scope *s, const char *field, crdt_type *out)
{
    size_t nf = crdt_scope_field_count(s);
    for (size_t i = 0; i < nf; i++) {
        const char *name;
        if (crdt_scope_field_at(s, i, &name, out) == CRDT_OK && strcmp(name, field) == 0)
            return true;
    }
    return false;
}

/* A register's values after a delta, when more than one: who wrote each and when. */
static json_object *conflict_json(node_engine *e, const crdt_scope *s, const char *field)
{
    size_t n = 0;
    if (crdt_register_count(s, field, &n) != CRDT_OK || n < 2)
        return NULL;
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        crdt_reg_value v;
        if (crdt_register_at(s, field, i, &v) != CRDT_OK)
            continue;
        json_object *o = json_object_new_object();
        char at[32], hex[65];
        node__rfc3339(v.hlc.wall, at);
        json_object_object_add(
            o, "value", json_object_new_string_len((const char *)v.value.p, (int)v.value.len));
        json_object_object_add(
            o, "by", json_object_new_string(node__org_of(e, v.dot.origin.b, hex)));
        json_object_object_add(o, "at", json_object_new_string(at));
        json_object_array_add(a, o);
    }
    return a;
}

static bool same_json(json_object *a, json_object *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
               json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN))
        == 0;
}

/* Replay one scope's merged deltas and add its changes. */
static node_err replay(log_ctx *c, const char *scope, logged_vec *v)
{
    crdt_scope *run = NULL;
    if (crdt_scope_new(NULL, &run) != CRDT_OK)
        return NODE_ENOMEM;
    qsort(v->v, v->n, sizeof(*v->v), by_clock);
    node_err err = NODE_OK;
    for (size_t i = 0; err == NODE_OK && i < v->n; i++) {
        logged *l = &v->v[i];
        name_vec names = { 0 };
        err = names_of(run, l->delta, &names);
        json_object **before = calloc(names.n ? names.n : 1, sizeof(*before));
        crdt_type *types = calloc(names.n ? names.n : 1, sizeof(*types));
        if (err == NODE_OK && (before == NULL || types == NULL))
            err = NODE_ENOMEM;
        for (size_t k = 0; err == NODE_OK && k < names.n; k++) {
            bool keep = (c->field[0] == '\0' || strcmp(c->field, names.v[k]) == 0)
                && (type_in(run, names.v[k], &types[k])
                    || type_in(l->delta, names.v[k], &types[k]));
            if (!keep) {
                types[k] = (crdt_type)-1;
                continue;
            }
            before[k] = types[k] == CRDT_TIMELINE
                ? NULL
                : node__field_json(c->e, run, scope, names.v[k], types[k], NULL);
        }
        if (err == NODE_OK && crdt_scope_join(run, l->delta) != CRDT_OK)
            err = NODE_ENOMEM;
        for (size_t k = 0; err == NODE_OK && k < names.n; k++) {
            if (types[k] == (crdt_type)-1)
                continue;
            /* A timeline's change is the events this delta carries (added, or redacted). */
            json_object *after = node__field_json(c->e, types[k] == CRDT_TIMELINE ? l->delta : run,
                scope, names.v[k], types[k], NULL);
            if (types[k] != CRDT_TIMELINE && same_json(before[k], after)) {
                json_object_put(after);
                continue;
            }
            json_object *o = json_object_new_object();
            char at[32];
            node__rfc3339(l->hlc.wall, at);
            json_object_object_add(o, "at", json_object_new_string(at));
            json_object_object_add(o, "by", json_object_new_string(l->org));
            json_object_object_add(o, "scope", json_object_new_string(scope));
            json_object_object_add(o, "field", json_object_new_string(names.v[k]));
            json_object_object_add(o, "old", json_object_get(before[k]));
            json_object_object_add(o, "new", after);
            json_object *conflict
                = types[k] == CRDT_REGISTER ? conflict_json(c->e, run, names.v[k]) : NULL;
            if (conflict != NULL)
                json_object_object_add(o, "conflict", conflict);
            json_object_array_add(c->changes, o);
            c->n++;
        }
        for (size_t k = 0; before != NULL && k < names.n; k++)
            json_object_put(before[k]);
        free(before);
        free(types);
        names_free(&names);
    }
    crdt_scope_free(run);
    return err;
}

static bool log_scope_cb(const char *scope, const uint8_t tag[32], void *ctx)
{
    log_ctx *c = ctx;
    if ((c->scope[0] != '\0' && strcmp(c->scope, scope) != 0)
        || node__ended_here(c->t, c->e, c->c, scope, tag))
        return true;
    c->readable++;
    logged_vec v = { 0 };
    c->err = node__scope_deltas(c->t, c->e, c->c, scope, take_cb, &v);
    if (c->err == NODE_OK)
        c->err = replay(c, scope, &v);
    for (size_t i = 0; i < v.n; i++)
        crdt_scope_free(v.v[i].delta);
    NODE_VEC_FREE(&v);
    return c->err == NODE_OK;
}

static node_err log_cb(node_txn *t, void *ctx)
{
    log_ctx *c = ctx;
    c->t = t;
    node_err err = node__ledger_case_scopes(t, c->c, log_scope_cb, c);
    return err != NODE_OK ? err : c->err;
}

/* Changes of all scopes, newest first (by time, then as replayed). */
static int newest_first(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
    json_object *ax, *ay;
    json_object_object_get_ex(x, "at", &ax);
    json_object_object_get_ex(y, "at", &ay);
    return -strcmp(json_object_get_string(ax), json_object_get_string(ay));
}

void node__cmd_case_log(req *r)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return;
    log_ctx lc = { .e = r->e, .c = &c };
    char field[PROTO_SCOPE_NAME_MAX + CRDT_FIELD_MAX + 2] = "", limit[12] = "";
    uint64_t max = LOG_LIMIT_DEFAULT;
    const char *dot = NULL;
    if (r->nargs > 4 || (r->nargs > 2 && !node__ctl_arg(r, 2, field, sizeof field))
        || (r->nargs > 3 && !node__ctl_arg(r, 3, limit, sizeof limit))
        || (field[0] != '\0'
            && ((dot = strchr(field, '.')) == NULL || dot == field
                || (size_t)(dot - field) > PROTO_SCOPE_NAME_MAX
                || strlen(dot + 1) > CRDT_FIELD_MAX))
        || (limit[0] != '\0'
            && (sscanf(limit, "%" SCNu64, &max) != 1 || max == 0 || max > LOG_LIMIT_MAX))) {
        node__ctl_error(r->e, r->id, CODE_USAGE,
            "case.log takes: case, scope.field (or empty: every field), limit (1 to 10000, or "
            "empty: 100)");
        return;
    }
    if (field[0] != '\0') {
        memcpy(lc.scope, field, (size_t)(dot - field));
        snprintf(lc.field, sizeof lc.field, "%s", dot + 1);
        if (node_schema_field(r->e->schema, lc.scope, lc.field) == NULL) {
            char m[200];
            snprintf(m, sizeof m, "%s is not a field of the schema (see patto schema)", field);
            node__ctl_error(r->e, r->id, CODE_REFUSED, m);
            return;
        }
    }
    lc.changes = json_object_new_array();
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, log_cb, &lc, &msg);
    if (err != NODE_OK) {
        json_object_put(lc.changes);
        node__ctl_error(r->e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    if (lc.readable == 0) {
        json_object_put(lc.changes);
        char m[200];
        snprintf(m, sizeof m, "case %s: this node reads none of its scopes%s", id,
            lc.scope[0] ? " (or not that one)" : "");
        node__ctl_error(r->e, r->id, CODE_NOTFOUND, m);
        return;
    }
    size_t n = json_object_array_length(lc.changes);
    json_object_array_sort(lc.changes, newest_first);
    json_object *out = json_object_new_array();
    for (size_t i = 0; i < n && i < max; i++)
        json_object_array_add(out, json_object_get(json_object_array_get_idx(lc.changes, i)));
    json_object_put(lc.changes);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "changes", out);
    json_object_object_add(doc, "more", json_object_new_int64((int64_t)(n > max ? n - max : 0)));
    node__ctl_json(r->e, r->id, doc);
}
