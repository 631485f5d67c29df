/*
 * Local changes: operator edits and consent grants become signed, encrypted deltas in this
 * node's log. All the deltas of one command are written in one transaction, and the command
 * is acknowledged only after it commits; the caller pushes what a write returns (ARCHITECTURE.md,
 * section 5: durable before acknowledged; the next sequence number is stored with the header, so a
 * crash never reuses one). May call: access.c, state.c, keycache.c, ledger.c, store.c,
 * schema.c, proto, crdt.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

node_err node__edit_parse(node_engine *e, const char *text, node_edit *out, node_errmsg *msg)
{
    memset(out, 0, sizeof(*out));
    const char *eq = strchr(text, '=');
    const char *dot = strchr(text, '.');
    if (eq == NULL || dot == NULL || dot > eq)
        return node__fail(msg, NODE_EINVAL,
            "'%s' is not an edit: write scope.field=VALUE, scope.field+=VALUE or "
            "scope.field-=VALUE",
            text);
    const char *name_end = eq;
    out->op = NODE_EDIT_SET;
    if (eq > text && (eq[-1] == '+' || eq[-1] == '-')) {
        out->op = eq[-1] == '+' ? NODE_EDIT_ADD : NODE_EDIT_REMOVE;
        name_end = eq - 1;
    }
    size_t sl = (size_t)(dot - text), fl = (size_t)(name_end - dot - 1);
    if (sl == 0 || sl > PROTO_SCOPE_NAME_MAX || fl == 0 || fl > CRDT_FIELD_MAX)
        return node__fail(
            msg, NODE_EINVAL, "'%.*s' is not a scope.field name", (int)(name_end - text), text);
    memcpy(out->scope, text, sl);
    memcpy(out->field, dot + 1, fl);
    const node_scope_def *sd = node_schema_scope(e->schema, out->scope);
    const node_field *f = node_schema_field(e->schema, out->scope, out->field);
    if (sd == NULL)
        return node__fail(msg, NODE_EINVAL, "unknown scope '%s' (see 'patto schema')", out->scope);
    if (f == NULL)
        return node__fail(msg, NODE_EINVAL, "scope %s has no field '%s' (see 'patto schema')",
            out->scope, out->field);
    return node_schema_check(
        sd, f, out->op, eq + 1, out->value, sizeof(out->value), &out->amount, msg);
}

/* ---------------------------------------------------------------------------------------- */

typedef struct write_ctx {
    node_engine *e;
    const proto_case_id *c;
    bool create;
    const node_edit *edits;
    size_t n;
    const char *const *scopes; /* grant mode when g != NULL */
    size_t nscopes;
    const node_grant *g;
    node_errmsg *msg;
    /* copies adopted after the commit */
    crdt_hlc clock;
    uint64_t seq;
    uint8_t last[32];
    node_outs *out;
} write_ctx;

void node__outs_free(node_outs *o)
{
    for (size_t i = 0; i < o->n; i++) {
        proto_header_fini(&o->v[i].h);
        proto_buf_free(&o->v[i].header);
        proto_buf_free(&o->v[i].body);
    }
    free(o->v);
    memset(o, 0, sizeof(*o));
}

static node_err no_case(write_ctx *w)
{
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(w->c, id);
    return node__fail(w->msg, NODE_ENOTFOUND, "no readable scope of case %s on this node", id);
}

/* The key of (case, scope): the stored one, or a new one when this node owns the case. */
static node_err scope_key(node_txn *t, write_ctx *w, const char *scope, ledger_key *k)
{
    node_err err = node__ledger_key_for(t, w->c, scope, k);
    if (err != NODE_ENOTFOUND)
        return err;
    if (!node__ledger_case_owned(t, w->c))
        return NODE_ENOTFOUND;
    proto_scope_key *sk = NULL;
    if (proto_scope_key_new(w->c, scope, 0, NULL, &sk) != PROTO_OK)
        return NODE_ENOMEM;
    memset(k, 0, sizeof(*k));
    memcpy(k->tag, proto_scope_key_tag(sk), 32);
    k->case_id = *w->c;
    snprintf(k->scope, sizeof(k->scope), "%s", scope);
    k->epoch = 0;
    memcpy(k->owner, proto_identity_origin(w->e->me), 32);
    proto_scope_key_export(sk, k->key);
    proto_scope_key_free(sk);
    return node__ledger_key_put(t, k);
}

/* Keep a delta this transaction wrote, to push after the commit (takes the buffers and the
 * decoded header). */
static node_err push_out(write_ctx *w, proto_buf *header, proto_buf *body, proto_header *h)
{
    node_out *x = NODE_VEC_PUSH(w->out, NODE_OUTS_MAX);
    if (x == NULL)
        return NODE_ENOMEM;
    x->header = *header;
    x->body = *body;
    x->h = *h;
    header->p = body->p = NULL;
    memset(h, 0, sizeof(*h));
    return NODE_OK;
}

/* Store a header this node sealed (as ingest would) and advance the own-log position. */
static node_err store_own(
    node_txn *t, write_ctx *w, const proto_buf *header, const proto_buf *body, proto_header *h)
{
    if (proto_header_decode(header->p, header->len, &w->e->lim, h, NULL) != PROTO_OK)
        return NODE_EINVAL;
    node_err err;
    if ((err = node__ledger_header_put(t, h, header->p, header->len)) != NODE_OK
        || (err = node__ledger_body_put(t, h->id, body->p, body->len)) != NODE_OK)
        return err;
    w->seq = h->seq;
    memcpy(w->last, h->id, 32);
    return NODE_OK;
}

/* Seal one delta on (case, scope) and store it with the new state. vv: the state's version
 * vector before the change (the delta's causal past). */
static node_err commit_delta(node_txn *t, write_ctx *w, const ledger_key *k,
    const crdt_scope *state, const crdt_scope *delta, const crdt_vv_entry *vv, size_t nvv)
{
    node_err err;
    proto_buf enc = { NULL, 0 }, header = { NULL, 0 }, body = { NULL, 0 };
    proto_scope_key *sk = NULL;
    proto_header h;
    memset(&h, 0, sizeof(h));
    if (proto_scope_encode(delta, &enc) != PROTO_OK) {
        err = NODE_ENOMEM;
        goto out;
    }
    if ((err = node__keycache_get(w->e, k, &sk)) != NODE_OK)
        goto out;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = vv;
    plain.nvv = nvv;
    plain.delta.p = enc.p;
    plain.delta.len = enc.len;
    proto_seal_info info;
    memset(&info, 0, sizeof(info));
    info.seq = w->seq + 1;
    memcpy(info.prev, w->last, 32);
    info.hlc = w->clock;
    proto_err perr = proto_delta_seal(w->e->me, sk, &info, &plain, NULL, &header, &body);
    if (perr != PROTO_OK) {
        err = node__fail(w->msg, perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_EINVAL,
            "cannot seal the change: %s", proto_strerror(perr));
        goto out;
    }
    if ((err = store_own(t, w, &header, &body, &h)) != NODE_OK
        || (err = node__ledger_applied_put(t, h.id, LEDGER_APPLIED)) != NODE_OK
        || (err = node__ledger_state_put(t, k->tag, state, node__now(w->e))) != NODE_OK)
        goto out;
    err = push_out(w, &header, &body, &h);
out:
    proto_header_fini(&h);
    proto_buf_free(&enc);
    proto_buf_free(&header);
    proto_buf_free(&body);
    return err;
}

static node_err snapshot_vv(const crdt_scope *state, crdt_vv_entry **vv, size_t *n)
{
    const crdt_cc *cc = crdt_scope_cc(state);
    *n = cc->nvv;
    *vv = NULL;
    if (cc->nvv == 0)
        return NODE_OK;
    if ((*vv = malloc(cc->nvv * sizeof(**vv))) == NULL)
        return NODE_ENOMEM;
    memcpy(*vv, cc->vv, cc->nvv * sizeof(**vv));
    return NODE_OK;
}

static node_err tick(write_ctx *w, crdt_hlc *out)
{
    crdt_err cerr = crdt_hlc_send(&w->clock, node__now(w->e), out);
    return cerr == CRDT_OK ? NODE_OK
                           : node__fail(w->msg, NODE_EIO, "clock: %s", crdt_strerror(cerr));
}

/* Apply one edit to state, gathering the delta. */
static node_err apply_edit(write_ctx *w, crdt_scope *state, crdt_scope *delta, const node_edit *ed)
{
    const node_field *f = node_schema_field(w->e->schema, ed->scope, ed->field);
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(w->e->me);
    crdt_hlc h;
    node_err err = tick(w, &h);
    if (err != NODE_OK)
        return err;
    crdt_err cerr;
    if (ed->unset) {
        cerr = crdt_field_remove(state, delta, ed->field);
        if (cerr == CRDT_ENOTFOUND)
            return node__fail(
                w->msg, NODE_EINVAL, "%s.%s holds nothing to unset", ed->scope, ed->field);
    } else {
        size_t vl = strlen(ed->value);
        switch (f->type) {
        case NODE_F_SET:
            if (ed->op == NODE_EDIT_ADD) {
                cerr = crdt_set_add(state, delta, me, ed->field, ed->value, vl);
            } else {
                cerr = crdt_set_remove(state, delta, ed->field, ed->value, vl);
                if (cerr == CRDT_ENOTFOUND)
                    return node__fail(w->msg, NODE_EINVAL, "'%s' is not in %s.%s", ed->value,
                        ed->scope, ed->field);
            }
            break;
        case NODE_F_COUNTER:
            cerr = crdt_counter_add(state, delta, me, ed->field, ed->amount);
            break;
        case NODE_F_TIMELINE:
            cerr = crdt_timeline_add(state, delta, me, &h, ed->field, ed->value, vl, NULL);
            break;
        case NODE_F_TEXT:
        case NODE_F_DATE:
        case NODE_F_ENUM:
        case NODE_F_NUMBER:
        default:
            cerr = crdt_register_set(state, delta, me, &h, ed->field, ed->value, vl);
            break;
        }
    }
    if (cerr != CRDT_OK)
        return node__fail(w->msg, cerr == CRDT_ENOMEM ? NODE_ENOMEM : NODE_EINVAL, "%s.%s: %s",
            ed->scope, ed->field, crdt_strerror(cerr));
    return NODE_OK;
}

/* Every run of a transaction body starts from the node's committed position... */
static void begin(write_ctx *w)
{
    node__outs_free(w->out);
    w->clock = w->e->clock;
    w->seq = w->e->own_seq;
    memcpy(w->last, w->e->own_last, 32);
}

/* ...and stores the new one in the same transaction as the headers it wrote. */
static node_err finish(node_txn *t, write_ctx *w)
{
    node_err err = node__ledger_own_put(t, w->seq, w->last);
    return err != NODE_OK ? err : node__ledger_hlc_put(t, &w->clock);
}

static node_err write_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    node_engine *e = w->e;
    begin(w);
    node_err err;
    if (w->create && (err = node__ledger_case_own(t, w->c, node__now(e))) != NODE_OK)
        return err;
    for (size_t i = 0; i < w->n; i++) {
        /* The first edit of each scope gathers all its edits into one delta. */
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = strcmp(w->edits[j].scope, w->edits[i].scope) != 0;
        if (!first)
            continue;
        const char *scope = w->edits[i].scope;
        ledger_key k;
        err = scope_key(t, w, scope, &k);
        if (err == NODE_ENOTFOUND) {
            if (!node__ledger_case_known(t, w->c))
                return no_case(w);
            char id[PROTO_CASE_ID_TEXT_SIZE];
            proto_case_id_format(w->c, id);
            return node__fail(w->msg, NODE_ENOTFOUND,
                "this node holds no grant for scope %s of case %s", scope, id);
        }
        if (err != NODE_OK)
            return err;
        crdt_scope *state = NULL, *delta = NULL;
        crdt_vv_entry *vv = NULL;
        size_t nvv = 0;
        if ((err = node__ledger_state_get(t, k.tag, &e->lim, &state)) != NODE_OK)
            goto scope_done;
        if (!node__may_write(e, &k, state)) {
            char id[PROTO_CASE_ID_TEXT_SIZE];
            proto_case_id_format(w->c, id);
            err = node__fail(w->msg, NODE_EINVAL,
                "this node holds no write grant for scope %s of case %s", scope, id);
            goto scope_done;
        }
        if ((err = snapshot_vv(state, &vv, &nvv)) != NODE_OK)
            goto scope_done;
        if (crdt_scope_new(NULL, &delta) != CRDT_OK) {
            err = NODE_ENOMEM;
            goto scope_done;
        }
        for (size_t j = i; j < w->n && err == NODE_OK; j++)
            if (strcmp(w->edits[j].scope, scope) == 0)
                err = apply_edit(w, state, delta, &w->edits[j]);
        if (err == NODE_OK)
            err = commit_delta(t, w, &k, state, delta, vv, nvv);
    scope_done:
        proto_wipe(&k, sizeof(k));
        free(vv);
        crdt_scope_free(state);
        crdt_scope_free(delta);
        if (err != NODE_OK)
            return err;
    }
    return finish(t, w);
}

static node_err grant_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    node_engine *e = w->e;
    begin(w);
    if (!node__ledger_case_owned(t, w->c)) {
        if (!node__ledger_case_known(t, w->c))
            return no_case(w);
        char id[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(w->c, id);
        return node__fail(w->msg, NODE_EINVAL,
            "case %s was not opened on this node: only its owner can grant access "
            "to it",
            id);
    }
    node_member *to = node__member_by_org(e, w->g->to);
    const uint8_t *me = proto_identity_origin(e->me);
    const crdt_origin *self = (const crdt_origin *)(const void *)me;
    node_err err = NODE_OK;
    for (size_t i = 0; i < w->nscopes && err == NODE_OK; i++) {
        ledger_key k;
        crdt_scope *state = NULL, *delta = NULL;
        crdt_vv_entry *vv = NULL;
        size_t nvv = 0;
        proto_buf acc = { NULL, 0 }, header = { NULL, 0 }, body = { NULL, 0 };
        proto_scope_key *sk = NULL;
        proto_header h;
        memset(&h, 0, sizeof(h));
        if ((err = scope_key(t, w, w->scopes[i], &k)) != NODE_OK)
            goto next;
        if ((err = node__ledger_state_get(t, k.tag, &e->lim, &state)) != NODE_OK
            || (err = snapshot_vv(state, &vv, &nvv)) != NODE_OK)
            goto next;
        /* The grant, in the access map of the scope it grants. */
        proto_access a;
        memset(&a, 0, sizeof(a));
        a.grantee.p = (const uint8_t *)w->g->to;
        a.grantee.len = strlen(w->g->to);
        a.access = w->g->access;
        a.purpose.p = (const uint8_t *)w->g->purpose;
        a.purpose.len = strlen(w->g->purpose);
        a.basis = w->g->basis;
        a.expiry_ms = w->g->until_ms;
        a.operator_name.p = (const uint8_t *)w->g->operator_name;
        a.operator_name.len = strlen(w->g->operator_name);
        a.evidence.p = (const uint8_t *)w->g->evidence;
        a.evidence.len = strlen(w->g->evidence);
        crdt_hlc hl;
        if (proto_access_encode(&a, &acc) != PROTO_OK) {
            err = node__fail(w->msg, NODE_EINVAL, "the grant cannot be encoded");
            goto next;
        }
        if ((err = tick(w, &hl)) != NODE_OK)
            goto next;
        if (crdt_scope_new(NULL, &delta) != CRDT_OK
            || crdt_timeline_add(state, delta, self, &hl, PROTO_ACCESS_FIELD, acc.p, acc.len, NULL)
                != CRDT_OK) {
            err = NODE_ENOMEM;
            goto next;
        }
        if ((err = commit_delta(t, w, &k, state, delta, vv, nvv)) != NODE_OK)
            goto next;
        /* The key, sealed to the grantee. */
        if ((err = node__keycache_get(e, &k, &sk)) != NODE_OK)
            goto next;
        proto_recipient r;
        memcpy(r.origin, to->origin, 32);
        memcpy(r.box_pk, to->box_pk, 32);
        proto_seal_info info;
        memset(&info, 0, sizeof(info));
        info.seq = w->seq + 1;
        memcpy(info.prev, w->last, 32);
        if ((err = tick(w, &info.hlc)) != NODE_OK)
            goto next;
        proto_err perr = proto_key_grant_seal(e->me, sk, &info, &r, 1, NULL, &header, &body);
        if (perr != PROTO_OK) {
            err = node__fail(
                w->msg, NODE_EINVAL, "cannot seal the key grant: %s", proto_strerror(perr));
            goto next;
        }
        if ((err = store_own(t, w, &header, &body, &h)) != NODE_OK
            || (err = node__ledger_grant_put(t, k.tag, to->origin, me)) != NODE_OK)
            goto next;
        err = push_out(w, &header, &body, &h);
    next:
        proto_header_fini(&h);
        proto_buf_free(&acc);
        proto_buf_free(&header);
        proto_buf_free(&body);
        proto_wipe(&k, sizeof(k));
        free(vv);
        crdt_scope_free(state);
        crdt_scope_free(delta);
    }
    return err != NODE_OK ? err : finish(t, w);
}

/* A peer that holds more of this node's own log than this node does (its store was restored
 * from an older copy): writing now would reuse a sequence number, an equivocation. The peer
 * sends those headers back at the next version-vector exchange. */
static node_err own_log_behind(node_engine *e, node_errmsg *msg)
{
    const uint8_t *me = proto_identity_origin(e->me);
    for (size_t i = 0; i < e->nmembers; i++) {
        const node_member *m = &e->members[i];
        for (size_t k = 0; k < m->nvv; k++) {
            if (memcmp(m->vv[k].origin.b, me, 32) != 0 || m->vv[k].max <= e->own_seq)
                continue;
            NODE_WARN("own.behind",
                "org=%s seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"write refused until the "
                "peer's copy of this node's log is back\"",
                m->org, m->vv[k].max, e->own_seq);
            return node__fail(msg, NODE_EIO,
                "%s holds this node's log up to %" PRIu64 " but this node only up to %" PRIu64
                " (restored from an older copy?): retry once it has synced",
                m->org, m->vv[k].max, e->own_seq);
        }
    }
    return NODE_OK;
}

/* Run a write body; on success adopt its log position and clock; w->out holds what it made. */
static node_err run(node_engine *e, write_ctx *w, node_txn_cb cb)
{
    node_errmsg smsg;
    w->msg->text[0] = 0;
    node_err err0 = own_log_behind(e, w->msg);
    if (err0 != NODE_OK)
        return err0;
    node_err err = node_store_write(e->store, cb, w, &smsg);
    if (err != NODE_OK) {
        if (w->msg->text[0] == 0)
            snprintf(w->msg->text, sizeof(w->msg->text), "%s", smsg.text);
        node__outs_free(w->out);
        return err;
    }
    e->clock = w->clock;
    e->own_seq = w->seq;
    memcpy(e->own_last, w->last, 32);
    return NODE_OK;
}

node_err node__case_write(node_engine *e, const proto_case_id *c, bool create,
    const node_edit *edits, size_t n, node_outs *out, node_errmsg *msg)
{
    write_ctx w
        = { .e = e, .c = c, .create = create, .edits = edits, .n = n, .msg = msg, .out = out };
    return run(e, &w, write_cb);
}

node_err node__case_grant(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, const node_grant *g, node_outs *out, node_errmsg *msg)
{
    write_ctx w
        = { .e = e, .c = c, .scopes = scopes, .nscopes = nscopes, .g = g, .msg = msg, .out = out };
    return run(e, &w, grant_cb);
}
