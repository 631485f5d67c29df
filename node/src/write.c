/*
 * Local changes: operator edits and consent grants become signed, encrypted deltas in this
 * node's log. All the deltas of one command are written in one transaction, and the command
 * is acknowledged only after it commits; the caller pushes what a write returns (ARCHITECTURE.md,
 * section 5: durable before acknowledged; the next sequence number is stored with the header, so a
 * crash never reuses one). May call: access.c, state.c, keycache.c, ledger.c, store.c,
 * schema.c, proto, crdt.
 */
#include "core.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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
    node_err err = node_schema_check(
        sd, f, out->op, eq + 1, out->value, sizeof(out->value), &out->amount, msg);
    /* The field's semantic check: this node's operators only (a value removed is not checked:
     * a wrong one must be removable). Deltas from peers are judged by their types alone. */
    if (err == NODE_OK && out->op != NODE_EDIT_REMOVE)
        err = node_schema_check_local(sd, f, out->value, node__now(e), msg);
    return err;
}

void node__event_id(const crdt_dot *d, char out[NODE_EVENT_ID_SIZE])
{
    char hex[13];
    proto_hex_encode(d->origin.b, 6, hex);
    snprintf(out, NODE_EVENT_ID_SIZE, "%s.%" PRIu64, hex, d->counter);
}

bool node__event_id_parse(const char *text, node_edit *ed)
{
    const char *dot = strchr(text, '.');
    if (dot == NULL || dot - text != 12 || !proto_hex_decode(text, 12, ed->event_origin, 6)
        || dot[1] < '0' || dot[1] > '9' || strlen(dot + 1) > 20)
        return false;
    char *end;
    errno = 0;
    unsigned long long c = strtoull(dot + 1, &end, 10);
    if (*end != '\0' || errno != 0)
        return false;
    ed->event_counter = c;
    ed->redact = true;
    return true;
}

/* The event of a timeline field that ed names, in state; false when there is none. */
static bool event_find(const crdt_scope *state, const node_edit *ed, crdt_dot *out)
{
    size_t n = 0;
    if (crdt_timeline_count(state, ed->field, &n) != CRDT_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        crdt_event ev;
        if (crdt_timeline_at(state, ed->field, i, &ev) == CRDT_OK
            && ev.id.counter == ed->event_counter
            && memcmp(ev.id.origin.b, ed->event_origin, 6) == 0) {
            *out = ev.id;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */

typedef struct write_ctx {
    node_engine *e;
    const proto_case_id *c;
    const proto_case_nonce *nonce; /* a new case's (create) */
    bool create;
    const node_edit *edits;
    size_t n;
    const char *const *scopes; /* grant mode when g != NULL */
    size_t nscopes;
    const node_grant *g;
    node_revoke *rv;        /* revoke mode */
    const proto_note *note; /* note mode */
    node_errmsg *msg;
    size_t outs_max; /* 0: NODE_OUTS_MAX */
    /* batch mode */
    node_batch_item *items;
    size_t nitems;
    node_edit *scratch;    /* NODE_BATCH_EDITS_MAX parsed edits */
    bool retry;            /* an item was refused: run the batch again without it */
    struct sealer *sealer; /* a batch: deltas are sealed on the sealer's thread */
    proto_scope_key *made; /* the key scope_key just made (a batch takes it), or NULL */
    node_errmsg *batch_msg;
    bool owner; /* this node's org owns the case (set per scope by write_cb) */
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

/* The key of (case, scope): the stored one, or a new one (of the first epoch) when this node
 * owns the case. */
static node_err scope_key(node_txn *t, write_ctx *w, const char *scope, ledger_key *k)
{
    proto_case_nonce nonce;
    if (w->create) {
        /* A case opened by this write holds no key yet: no look-ups. */
        nonce = *w->nonce;
    } else {
        node_err err = node__ledger_key_for(t, w->c, scope, k);
        if (err != NODE_ENOTFOUND)
            return err;
        if (!node__ledger_case_owned(t, w->c, &nonce))
            return NODE_ENOTFOUND;
    }
    proto_scope_key *sk = NULL;
    if (proto_scope_key_new(w->c, scope, PROTO_EPOCH_FIRST, NULL, &sk) != PROTO_OK)
        return NODE_ENOMEM;
    memset(k, 0, sizeof(*k));
    memcpy(k->tag, proto_scope_key_tag(sk), 32);
    k->case_id = *w->c;
    k->nonce = nonce;
    snprintf(k->scope, sizeof(k->scope), "%s", scope);
    snprintf(k->owner_org, sizeof(k->owner_org), "%s", w->e->cfg.org);
    k->epoch = PROTO_EPOCH_FIRST;
    k->confirmed = true;
    proto_scope_key_export(sk, k->key);
    /* The key is sealed with next: a batch's sealer takes it, else the cache keeps it (rather
     * than derive it again from its bytes). */
    if (w->sealer != NULL) {
        proto_scope_key_free(w->made);
        w->made = sk;
        return node__ledger_key_put(t, k);
    }
    node_err err = node__keycache_put(w->e, k->tag, sk);
    return err != NODE_OK ? err : node__ledger_key_put(t, k);
}

/* Keep a delta this transaction wrote, to push after the commit (takes the buffers and the
 * decoded header). */
static node_err push_out(write_ctx *w, proto_buf *header, proto_buf *body, proto_header *h)
{
    node_out *x = NODE_VEC_PUSH(w->out, w->outs_max != 0 ? w->outs_max : NODE_OUTS_MAX);
    if (x == NULL)
        return NODE_ENOMEM;
    x->header = *header;
    x->body = *body;
    x->h = *h;
    header->p = body->p = NULL;
    memset(h, 0, sizeof(*h));
    return NODE_OK;
}

/* Store a header this node sealed (as ingest would), with its body, marked applied, and
 * advance the own-log position. */
static node_err store_own(
    node_txn *t, write_ctx *w, const proto_buf *header, const proto_buf *body, proto_header *h)
{
    if (proto_header_decode(header->p, header->len, &w->e->lim, h, NULL) != PROTO_OK)
        return NODE_EINVAL;
    node_err err = node__ledger_sealed_put(t, h, header->p, header->len, body->p, body->len);
    if (err != NODE_OK)
        return err;
    w->seq = h->seq;
    memcpy(w->last, h->id, 32);
    return NODE_OK;
}

static node_err tick(write_ctx *w, crdt_hlc *out)
{
    crdt_err cerr = crdt_hlc_send(&w->clock, node__now(w->e), out);
    return cerr == CRDT_OK ? NODE_OK
                           : node__fail(w->msg, NODE_EIO, "clock: %s", crdt_strerror(cerr));
}

/* The place and clock of this node's next header: after its last, stamped now. */
static node_err next_place(write_ctx *w, proto_seal_info *info)
{
    memset(info, 0, sizeof(*info));
    info->seq = w->seq + 1;
    memcpy(info->prev, w->last, 32);
    return tick(w, &info->hlc);
}

/* Seal one body under key k (a delta or an access-log entry: plain), store it as this node's
 * next header, mark it decided, and keep it to push. *id gets the header's id. */
static node_err seal_body(
    node_txn *t, write_ctx *w, const ledger_key *k, proto_body *plain, uint8_t id[32])
{
    node_err err;
    proto_buf header = { NULL, 0 }, body = { NULL, 0 };
    proto_scope_key *sk = NULL;
    proto_header h;
    memset(&h, 0, sizeof(h));
    if ((err = node__keycache_get(w->e, k, &sk)) != NODE_OK)
        goto out;
    proto_seal_info info;
    if ((err = next_place(w, &info)) != NODE_OK)
        goto out;
    proto_err perr = proto_delta_seal(w->e->me, sk, &info, plain, NULL, &header, &body);
    if (perr != PROTO_OK) {
        err = node__fail(w->msg, perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_EINVAL,
            "cannot seal the change: %s", proto_strerror(perr));
        goto out;
    }
    if ((err = store_own(t, w, &header, &body, &h)) != NODE_OK)
        goto out;
    memcpy(id, h.id, 32);
    err = push_out(w, &header, &body, &h);
out:
    proto_header_fini(&h);
    proto_buf_free(&header);
    proto_buf_free(&body);
    return err;
}

/* The last access-log entry of (case, scope) held without a gap, and the place of the owner's
 * header that carried it, into a delta's plaintext (none: access_seen 0). */
static node_err seen_place(node_txn *t, const ledger_key *k, proto_body *plain)
{
    plain->access_seen = node__ledger_entries_contiguous(t, &k->case_id, k->scope);
    if (plain->access_seen == 0)
        return NODE_OK;
    ledger_entry *en = malloc(sizeof(*en));
    if (en == NULL)
        return NODE_ENOMEM;
    node_err err = node__ledger_entry_get(t, &k->case_id, k->scope, plain->access_seen, en);
    if (err == NODE_OK)
        err = node__ledger_place(t, en->id, plain->access_origin, &plain->access_at);
    free(en);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* A batch's sealer: signing is most of a delta's cost and each header names the id of the one
 * before it (a hash of its signed bytes), so the chain is sealed in order, on a thread of its
 * own, while the loop thread makes the next deltas and stores the sealed ones (ARCHITECTURE.md:
 * stateless CPU work may leave the loop thread; only the loop thread touches the store). */

typedef struct seal_job {
    proto_scope_key *sk; /* owned */
    proto_body plain;    /* borrows vv and enc */
    crdt_vv_entry *vv;   /* owned */
    proto_buf enc;       /* owned: the delta */
    crdt_hlc hlc;        /* the header's clock, ticked in order with the edits' */
    proto_buf header, body;
    proto_header h; /* decoded by the sealer */
} seal_job;

typedef struct sealer {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t more, sealed;
    seal_job *jobs; /* its capacity is fixed before the thread starts: never moved */
    size_t cap, njobs, nsealed;
    bool closed, stop;
    node_err err;
    const proto_identity *me;
    const proto_limits *lim;
    uint64_t seq0;
    uint8_t prev0[32];
} sealer;

static void *sealer_main(void *arg)
{
    sealer *s = arg;
    uint8_t prev[32]; /* its own copy: the loop thread hands sealed headers on meanwhile */
    memcpy(prev, s->prev0, 32);
    for (size_t k = 0;; k++) {
        pthread_mutex_lock(&s->mu);
        while (k >= s->njobs && !s->closed && !s->stop)
            pthread_cond_wait(&s->more, &s->mu);
        bool done = s->stop || k >= s->njobs;
        pthread_mutex_unlock(&s->mu);
        if (done)
            break;
        seal_job *j = &s->jobs[k];
        proto_seal_info info;
        memset(&info, 0, sizeof(info));
        info.seq = s->seq0 + k + 1;
        memcpy(info.prev, prev, 32);
        info.hlc = j->hlc;
        proto_err perr
            = proto_delta_seal(s->me, j->sk, &info, &j->plain, NULL, &j->header, &j->body);
        if (perr == PROTO_OK)
            perr = proto_header_decode(j->header.p, j->header.len, s->lim, &j->h, NULL);
        if (perr == PROTO_OK)
            memcpy(prev, j->h.id, 32);
        pthread_mutex_lock(&s->mu);
        if (perr != PROTO_OK) {
            s->err = perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_EINVAL;
            s->stop = true;
        } else {
            s->nsealed = k + 1;
        }
        pthread_cond_broadcast(&s->sealed);
        pthread_mutex_unlock(&s->mu);
        if (perr != PROTO_OK)
            break;
    }
    return NULL;
}

static void sealer_free_jobs(sealer *s)
{
    for (size_t k = 0; k < s->njobs; k++) {
        seal_job *j = &s->jobs[k];
        proto_scope_key_free(j->sk);
        free(j->vv);
        proto_buf_free(&j->enc);
        proto_buf_free(&j->header);
        proto_buf_free(&j->body);
        proto_header_fini(&j->h);
    }
    free(s->jobs);
    s->jobs = NULL;
    s->njobs = 0;
}

static node_err sealer_start(sealer *s, write_ctx *w, size_t cap)
{
    memset(s, 0, sizeof(*s));
    if ((s->jobs = calloc(cap ? cap : 1, sizeof(*s->jobs))) == NULL)
        return NODE_ENOMEM;
    s->cap = cap;
    s->me = w->e->me;
    s->lim = &w->e->lim;
    s->seq0 = w->seq;
    memcpy(s->prev0, w->last, 32);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->jobs);
        return NODE_ENOMEM;
    }
    if (pthread_cond_init(&s->more, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s->jobs);
        return NODE_ENOMEM;
    }
    if (pthread_cond_init(&s->sealed, NULL) != 0) {
        pthread_cond_destroy(&s->more);
        pthread_mutex_destroy(&s->mu);
        free(s->jobs);
        return NODE_ENOMEM;
    }
    if (pthread_create(&s->thread, NULL, sealer_main, s) != 0) {
        pthread_cond_destroy(&s->sealed);
        pthread_cond_destroy(&s->more);
        pthread_mutex_destroy(&s->mu);
        free(s->jobs);
        return NODE_ENOMEM;
    }
    s->started = true;
    return NODE_OK;
}

/* Stop (what is not sealed yet is dropped), wait for the thread, free what was not handed on. */
static void sealer_end(sealer *s)
{
    if (!s->started)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->more);
    pthread_cond_destroy(&s->sealed);
    pthread_mutex_destroy(&s->mu);
    sealer_free_jobs(s);
    s->started = false;
}

/* Queue one delta to seal; takes sk, vv and enc whatever happens. */
static node_err sealer_add(sealer *s, proto_scope_key *sk, const proto_body *plain,
    crdt_vv_entry *vv, proto_buf *enc, crdt_hlc hlc)
{
    if (s->njobs == s->cap) {
        proto_scope_key_free(sk);
        free(vv);
        proto_buf_free(enc);
        return NODE_ECORRUPT; /* the capacity was counted from the edits */
    }
    seal_job *j = &s->jobs[s->njobs];
    j->sk = sk;
    j->plain = *plain;
    j->vv = vv;
    j->enc = *enc;
    enc->p = NULL;
    enc->len = 0;
    j->plain.vv = vv;
    j->plain.delta.p = j->enc.p;
    j->plain.delta.len = j->enc.len;
    j->hlc = hlc;
    pthread_mutex_lock(&s->mu);
    s->njobs++;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->mu);
    return NODE_OK;
}

/* No more deltas: store each one as it is sealed, in order, and keep it to push. */
static node_err sealer_drain(node_txn *t, write_ctx *w, sealer *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->more);
    pthread_mutex_unlock(&s->mu);
    for (size_t k = 0; k < s->njobs; k++) {
        pthread_mutex_lock(&s->mu);
        while (s->nsealed <= k && !s->stop)
            pthread_cond_wait(&s->sealed, &s->mu);
        node_err err = s->nsealed > k ? NODE_OK : s->err != NODE_OK ? s->err : NODE_EINVAL;
        pthread_mutex_unlock(&s->mu);
        if (err != NODE_OK)
            return node__fail(w->msg, err, "cannot seal the change");
        seal_job *j = &s->jobs[k];
        if ((err = node__ledger_sealed_put(
                 t, &j->h, j->header.p, j->header.len, j->body.p, j->body.len))
            != NODE_OK)
            return err;
        w->seq = j->h.seq;
        memcpy(w->last, j->h.id, 32);
        if ((err = push_out(w, &j->header, &j->body, &j->h)) != NODE_OK)
            return err;
    }
    return NODE_OK;
}

/* Seal one delta on (case, scope) and store it with the new state. vv: the state's version
 * vector before the change (the delta's causal past). */
static node_err commit_delta(node_txn *t, write_ctx *w, const ledger_key *k,
    const crdt_scope *state, const crdt_scope *delta, const crdt_vv_entry *vv, size_t nvv)
{
    proto_buf enc = { NULL, 0 };
    if (proto_scope_encode(delta, &enc) != PROTO_OK)
        return NODE_ENOMEM;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = vv;
    plain.nvv = nvv;
    /* A case opened by this write has no access log yet. */
    node_err err = w->create ? NODE_OK : seen_place(t, k, &plain);
    plain.delta.p = enc.p;
    plain.delta.len = enc.len;
    uint8_t id[32];
    if (err == NODE_OK && w->sealer != NULL) {
        /* A batch: the sealer signs it; its key is the one just made or a copy. */
        proto_scope_key *sk = w->made;
        crdt_vv_entry *vcopy = NULL;
        proto_seal_info info;
        w->made = NULL;
        if (sk == NULL
            && proto_scope_key_from_bytes(&k->case_id, k->scope, k->epoch, k->key, &sk) != PROTO_OK)
            err = NODE_ENOMEM;
        if (err == NODE_OK && nvv > 0 && (vcopy = malloc(nvv * sizeof(*vcopy))) == NULL)
            err = NODE_ENOMEM;
        if (err == NODE_OK) {
            if (nvv > 0)
                memcpy(vcopy, vv, nvv * sizeof(*vcopy));
            err = next_place(w, &info);
        }
        if (err == NODE_OK) {
            err = sealer_add(w->sealer, sk, &plain, vcopy, &enc, info.hlc);
        } else {
            proto_scope_key_free(sk);
            free(vcopy);
        }
    } else if (err == NODE_OK) {
        err = seal_body(t, w, k, &plain, id);
    }
    if (err == NODE_OK)
        err = node__ledger_state_put(t, k->tag, state, node__now(w->e));
    if (err == NODE_OK)
        node__scope_moved(w->e, &k->case_id, k->scope);
    proto_buf_free(&enc);
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
    if (ed->redact) {
        crdt_dot ev;
        char eid[NODE_EVENT_ID_SIZE];
        crdt_dot named = { .counter = ed->event_counter };
        memcpy(named.origin.b, ed->event_origin, 6);
        node__event_id(&named, eid);
        if (!event_find(state, ed, &ev))
            return node__fail(w->msg, NODE_ENOTFOUND, "%s.%s has no event %s (see case show)",
                ed->scope, ed->field, eid);
        /* Every holder refuses another's redaction unless it comes from the case's owner. */
        if (memcmp(ev.origin.b, me->b, 32) != 0 && !w->owner)
            return node__fail(w->msg, NODE_EINVAL,
                "event %s of %s.%s was written by another member: only its author or the "
                "case's owner may redact it",
                eid, ed->scope, ed->field);
        cerr = crdt_timeline_redact(state, delta, ed->field, &ev);
    } else if (ed->unset) {
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
        case NODE_F_COUNTER: {
            crdt_origin co;
            proto_counter_origin(me->b, ed->field, strlen(ed->field), co.b);
            cerr = crdt_counter_add(state, delta, &co, ed->field, ed->amount);
            break;
        }
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

/* The edits of one case (w->c, w->edits), one delta per scope, without begin and finish. */
static node_err write_case(node_txn *t, write_ctx *w)
{
    node_engine *e = w->e;
    node_err err;
    if (w->create && (err = node__ledger_case_own(t, w->c, w->nonce, node__now(e))) != NODE_OK)
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
        if (w->create) {
            /* A new case: an empty state, written by its owner. */
            if (crdt_scope_new(NULL, &state) != CRDT_OK) {
                err = NODE_ENOMEM;
                goto scope_done;
            }
        } else if ((err = node__ledger_state_get(t, k.tag, &e->lim, &state)) != NODE_OK) {
            goto scope_done;
        }
        if (!w->create && !node__may_write(t, e, &k)) {
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
        w->owner = strcmp(k.owner_org, e->cfg.org) == 0;
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
    return NODE_OK;
}

static node_err write_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    begin(w);
    node_err err = write_case(t, w);
    return err != NODE_OK ? err : finish(t, w);
}

/* Parse an item's edits into w->scratch; false (the item refused, with its reason) when one
 * is not an edit the schema allows. */
static bool batch_parse(write_ctx *w, node_batch_item *it)
{
    for (size_t j = 0; j < it->n; j++) {
        node_errmsg m = { { 0 } };
        if (node__edit_parse(w->e, it->edits[j], &w->scratch[j], &m) != NODE_OK) {
            it->state = NODE_BATCH_REFUSED;
            it->err = NODE_EINVAL;
            snprintf(it->reason, sizeof(it->reason), "edit %zu: %.480s", j + 1, m.text);
            return false;
        }
    }
    return true;
}

/* One attempt at the batch: every item not refused yet. An item the write refuses is marked
 * and the attempt fails with w->retry set: the transaction is dropped and run again without it. */
/* The deltas an item makes: one per scope its edits name. */
static size_t item_scopes(const node_batch_item *it)
{
    size_t n = 0;
    for (size_t j = 0; j < it->n; j++) {
        const char *dot = strchr(it->edits[j], '.');
        size_t l = dot != NULL ? (size_t)(dot - it->edits[j]) : strlen(it->edits[j]);
        bool seen = false;
        for (size_t i = 0; i < j && !seen; i++)
            seen = strncmp(it->edits[i], it->edits[j], l) == 0 && it->edits[i][l] == '.';
        n += !seen;
    }
    return n;
}

static node_err batch_items(node_txn *t, write_ctx *w);

static node_err batch_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    begin(w);
    size_t cap = 0;
    for (size_t i = 0; i < w->nitems; i++)
        if (w->items[i].state != NODE_BATCH_REFUSED)
            cap += item_scopes(&w->items[i]);
    sealer s;
    node_err err = sealer_start(&s, w, cap);
    if (err != NODE_OK)
        return node__fail(w->msg, err, "cannot start the batch's sealer");
    w->sealer = &s;
    err = batch_items(t, w);
    if (err == NODE_OK)
        err = sealer_drain(t, w, &s);
    w->sealer = NULL;
    proto_scope_key_free(w->made);
    w->made = NULL;
    sealer_end(&s);
    return err != NODE_OK ? err : finish(t, w);
}

static node_err batch_items(node_txn *t, write_ctx *w)
{
    for (size_t i = 0; i < w->nitems; i++) {
        node_batch_item *it = &w->items[i];
        if (it->state == NODE_BATCH_REFUSED)
            continue;
        it->state = NODE_BATCH_PENDING;
        if (!batch_parse(w, it)) {
            w->retry = true;
            return NODE_EINVAL;
        }
        if (it->keyed && node__ledger_case_known(t, &it->c)) {
            it->state = NODE_BATCH_EXISTS;
            continue;
        }
        node_errmsg m = { { 0 } };
        w->c = &it->c;
        w->nonce = it->create ? &it->nonce : NULL;
        w->create = it->create;
        w->edits = w->scratch;
        w->n = it->n;
        w->msg = &m;
        node_err err = write_case(t, w);
        w->msg = w->batch_msg;
        if (err == NODE_EINVAL || err == NODE_ENOTFOUND) {
            it->state = NODE_BATCH_REFUSED;
            it->err = err;
            snprintf(it->reason, sizeof(it->reason), "%s", m.text[0] ? m.text : node_strerror(err));
            w->retry = true;
            return err;
        }
        if (err != NODE_OK) {
            snprintf(w->msg->text, sizeof(w->msg->text), "%s", m.text);
            return err;
        }
        it->state = it->create ? NODE_BATCH_CREATED : NODE_BATCH_UPDATED;
    }
    return NODE_OK;
}

/* Confirmed keys opened (owned) for a key grant that seals every epoch of its scopes: one
 * scope's (at most PROTO_GRANT_EPOCHS_MAX of them), or those of the scopes one grant command
 * gives, gathered for one key grant. */
typedef struct grant_keys {
    proto_scope_key *v[PROTO_GRANT_EPOCHS_MAX];
    size_t n;
    bool bad;
    proto_case_nonce nonce; /* of their case */
} grant_keys;

static bool grant_keys_cb(const ledger_key *k, void *ctx)
{
    grant_keys *g = ctx;
    if (!k->confirmed || g->n == PROTO_GRANT_EPOCHS_MAX)
        return true;
    if (proto_scope_key_from_bytes(&k->case_id, k->scope, k->epoch, k->key, &g->v[g->n])
        != PROTO_OK) {
        g->bad = true;
        return false;
    }
    g->n++;
    return true;
}

static void grant_keys_free(grant_keys *g)
{
    for (size_t i = 0; i < g->n; i++)
        proto_scope_key_free(g->v[i]);
    g->n = 0;
}

/* A key grant of keys (of k's case) to 1..PROTO_HINT_SLOTS recipients: this node's next
 * header, decided, kept to push. */
static node_err seal_key_grant(
    node_txn *t, write_ctx *w, const grant_keys *keys, const proto_recipient *r, size_t nr)
{
    proto_buf header = { NULL, 0 }, body = { NULL, 0 };
    proto_header h;
    memset(&h, 0, sizeof(h));
    proto_seal_info info;
    node_err err = next_place(w, &info);
    if (err != NODE_OK)
        return err;
    proto_err perr = proto_key_grant_seal(w->e->me, w->e->cfg.org, &keys->nonce,
        (const proto_scope_key *const *)keys->v, keys->n, &info, r, nr, NULL, &header, &body);
    if (perr != PROTO_OK)
        err = node__fail(
            w->msg, NODE_EINVAL, "cannot seal the key grant: %s", proto_strerror(perr));
    else if ((err = store_own(t, w, &header, &body, &h)) == NODE_OK)
        err = push_out(w, &header, &body, &h);
    proto_header_fini(&h);
    proto_buf_free(&header);
    proto_buf_free(&body);
    return err;
}

static node_err narrow_scope(node_txn *t, write_ctx *w, const char *scope);

/* A new grant that narrows the one in force (less access, or an end sooner, or an end where
 * there was none) is preceded by a narrowing with its cut: otherwise the grantee's deltas
 * resting on the old grant would be judged by it, beyond the new terms, whatever they claim
 * to have seen (a writer downgraded by a new read grant writing on by naming the old one). */
static node_err narrow_before_grant(node_txn *t, write_ctx *w, const char *scope)
{
    const node_grant *g = w->g;
    ledger_entry *old = malloc(sizeof(*old));
    node_revoke *rv = calloc(1, sizeof(*rv));
    node_err err = old == NULL || rv == NULL ? NODE_ENOMEM : NODE_OK;
    bool narrows = err == NODE_OK && node__grant_for(t, w->c, scope, g->to, UINT64_MAX, old)
        && old->access != PROTO_ACCESS_NONE
        && (g->access < old->access
            || (g->until_ms != 0 && (old->expiry_ms == 0 || g->until_ms < old->expiry_ms)));
    if (narrows) {
        snprintf(rv->from, sizeof(rv->from), "%s", g->to);
        rv->access = PROTO_ACCESS_READ; /* no new key: the grant that follows keeps it reading */
        rv->reason = PROTO_NARROW_REVOKED;
        snprintf(rv->operator_name, sizeof(rv->operator_name), "%s", g->operator_name);
        snprintf(rv->unix_user, sizeof(rv->unix_user), "%s", g->unix_user);
        snprintf(rv->note, sizeof(rv->note), "narrowed by the grant that follows");
        w->rv = rv;
        err = narrow_scope(t, w, scope);
        w->rv = NULL;
    }
    free(rv);
    free(old);
    return err;
}

/* The keys gathered for the grantee, sealed in one key grant to it (none when there are none). */
static node_err seal_gathered(node_txn *t, write_ctx *w, grant_keys *pack, const node_member *to)
{
    if (pack->n == 0)
        return NODE_OK;
    proto_recipient r;
    memcpy(r.box_pk, to->box_pk, 32);
    node_err err = seal_key_grant(t, w, pack, &r, 1);
    grant_keys_free(pack);
    return err;
}

/* One scope granted: the grant entry in its access log (sealed under its current key, like a
 * delta, numbered after the last entry); every epoch's key gathered into pack, which is sealed to
 * the grantee first when they would not fit in one key grant with it (grant_cb seals the rest
 * after the last scope: one key grant for all the scopes of a command, as a rule). */
static node_err grant_scope(
    node_txn *t, write_ctx *w, const char *scope, const node_member *to, grant_keys *pack)
{
    ledger_key k;
    node_err err = narrow_before_grant(t, w, scope);
    if (err == NODE_OK)
        err = scope_key(t, w, scope, &k);
    if (err != NODE_OK)
        return err;
    const node_grant *g = w->g;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_ACCESS_GRANT;
    plain.entry = node__ledger_entries_contiguous(t, &k.case_id, k.scope) + 1;
#define BYTES(s) ((proto_bytes) { (const uint8_t *)(s), strlen(s) })
    plain.grant.grantee = BYTES(g->to);
    plain.grant.access = g->access;
    plain.grant.purpose = BYTES(g->purpose);
    plain.grant.basis = g->basis;
    plain.grant.provision = BYTES(g->provision);
    plain.grant.expiry_ms = g->until_ms;
    plain.grant.operator_name = BYTES(g->operator_name);
    plain.grant.unix_user = BYTES(g->unix_user);
    plain.grant.evidence = BYTES(g->evidence);
#undef BYTES
    ledger_entry *en = calloc(1, sizeof(*en));
    grant_keys keys = { .n = 0 };
    if (en == NULL) {
        err = NODE_ENOMEM;
        goto out;
    }
    en->number = plain.entry;
    en->kind = PROTO_BODY_ACCESS_GRANT;
    en->epoch = k.epoch;
    snprintf(en->grantee, sizeof(en->grantee), "%s", g->to);
    en->access = g->access;
    snprintf(en->purpose, sizeof(en->purpose), "%s", g->purpose);
    en->basis = g->basis;
    en->expiry_ms = g->until_ms;
    snprintf(en->provision, sizeof(en->provision), "%s", g->provision);
    snprintf(en->operator_name, sizeof(en->operator_name), "%s", g->operator_name);
    snprintf(en->unix_user, sizeof(en->unix_user), "%s", g->unix_user);
    snprintf(en->evidence, sizeof(en->evidence), "%s", g->evidence);
    if ((err = seal_body(t, w, &k, &plain, en->id)) != NODE_OK)
        goto out;
    en->hlc = w->clock;
    if ((err = node__ledger_entry_put(t, &k.case_id, k.scope, en)) != NODE_OK)
        goto out;
    node__scope_moved(w->e, &k.case_id, k.scope);
    /* The keys, for the grantee's current key. */
    if ((err = node__ledger_scope_keys(t, &k.case_id, k.scope, grant_keys_cb, &keys)) != NODE_OK)
        goto out;
    if (keys.bad || keys.n == 0) {
        err = NODE_ECORRUPT;
        goto out;
    }
    if (pack->n + keys.n > PROTO_GRANT_EPOCHS_MAX
        && (err = seal_gathered(t, w, pack, to)) != NODE_OK)
        goto out;
    memcpy(pack->v + pack->n, keys.v, keys.n * sizeof(*keys.v));
    pack->n += keys.n;
    pack->nonce = k.nonce;
    keys.n = 0; /* now pack's */
out:
    grant_keys_free(&keys);
    free(en);
    proto_wipe(&k, sizeof(k));
    return err;
}

/* Only the case's owner grants, revokes and downgrades. */
static node_err owned_here(node_txn *t, write_ctx *w, const char *what)
{
    if (node__ledger_case_owned(t, w->c, NULL))
        return NODE_OK;
    if (!node__ledger_case_known(t, w->c))
        return no_case(w);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(w->c, id);
    return node__fail(w->msg, NODE_EINVAL,
        "case %s was not opened on this node: only its owner can %s", id, what);
}

static node_err grant_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    node_engine *e = w->e;
    begin(w);
    node_err err0 = owned_here(t, w, "grant access to it");
    if (err0 != NODE_OK)
        return err0;
    node_member *to = node__member_by_org(e, w->g->to);
    if (to == NULL || !to->active)
        return node__fail(w->msg, NODE_ENOTFOUND, "'%s' is not a member of the network", w->g->to);
    node_err err = NODE_OK;
    grant_keys pack = { .n = 0 };
    for (size_t i = 0; i < w->nscopes && err == NODE_OK; i++)
        err = grant_scope(t, w, w->scopes[i], to, &pack);
    if (err == NODE_OK)
        err = seal_gathered(t, w, &pack, to);
    grant_keys_free(&pack);
    return err != NODE_OK ? err : finish(t, w);
}

/* ---------------------------------------------------------------------------------------- */
/* Revoking and downgrading: a narrowing entry with its cut, then (access none) a new epoch.  */

/* Seal an access-log entry (plain, numbered after the last held) under k and store it. */
static node_err log_entry(
    node_txn *t, write_ctx *w, const ledger_key *k, proto_body *plain, ledger_entry *en)
{
    en->number = plain->entry;
    en->kind = plain->kind;
    en->epoch = k->epoch;
    node_err err = seal_body(t, w, k, plain, en->id);
    if (err != NODE_OK)
        return err;
    en->hlc = w->clock;
    if ((err = node__ledger_entry_put(t, &k->case_id, k->scope, en)) == NODE_OK)
        node__scope_moved(w->e, &k->case_id, k->scope);
    return err;
}

static int cut_cmp(const void *a, const void *b)
{
    return memcmp(((const proto_cut *)a)->origin, ((const proto_cut *)b)->origin, 32);
}

/* The cut: for every origin the manifest lists for org, the last header of it held here. */
/* A narrowing's cut of org's access: for each key the manifest lists for org, the seq and id
 * of its last header this node holds (an origin left out is cut at 0: every write of it on the
 * scope is beyond). A write counted in whose body has not come yet stays servable: the org's
 * node keeps its own bodies when it purges the scope (node__destroy_scope). */
static size_t cut_of(node_txn *t, node_engine *e, const char *org, proto_cut *cut)
{
    size_t n = 0;
    for (size_t i = 0; i < e->manifest.nmembers; i++) {
        const proto_member *m = &e->manifest.members[i];
        if (m->org.len != strlen(org) || memcmp(m->org.p, org, m->org.len) != 0)
            continue;
        for (size_t j = 0; j < m->nkeys && n < PROTO_CUT_MAX; j++) {
            uint64_t seq = node__ledger_vv_last(t, m->keys[j].origin, cut[n].id);
            if (seq == 0)
                continue;
            memcpy(cut[n].origin, m->keys[j].origin, 32);
            cut[n++].seq = seq;
        }
    }
    qsort(cut, n, sizeof(*cut), cut_cmp);
    return n;
}

/* The orgs that read k's scope now (by this node's clock): the recipients of a new key. */
typedef struct readers {
    node_txn *t;
    node_engine *e;
    const ledger_key *k;
    proto_recipient v[PROTO_MEMBERS_MAX];
    size_t n;
    ledger_entry *tmp;
} readers;

static bool readers_cb(const ledger_entry *en, void *ctx)
{
    readers *r = ctx;
    if (en->kind != PROTO_BODY_ACCESS_GRANT || strcmp(en->grantee, r->e->cfg.org) == 0)
        return true;
    node_member *m = node__member_by_org(r->e, en->grantee);
    if (m == NULL || !m->active || r->n == PROTO_MEMBERS_MAX)
        return true;
    for (size_t i = 0; i < r->n; i++)
        if (memcmp(r->v[i].box_pk, m->box_pk, 32) == 0)
            return true; /* named already */
    if (node__grant_for(r->t, &r->k->case_id, r->k->scope, en->grantee, UINT64_MAX, r->tmp)
        && r->tmp->access >= PROTO_ACCESS_READ
        && (r->tmp->expiry_ms == 0 || r->tmp->expiry_ms >= node__now(r->e)))
        memcpy(r->v[r->n++].box_pk, m->box_pk, 32);
    return true;
}

/* A new epoch of k's scope: its key, the announcement (sealed under k, the key in force), and
 * key grants of the new key to the orgs that read the scope now, four to a grant. *k becomes
 * the new key. */
static node_err rotate(node_txn *t, write_ctx *w, ledger_key *k, uint64_t *epoch)
{
    proto_scope_key *sk = NULL;
    readers *rd = calloc(1, sizeof(*rd));
    ledger_entry *en = calloc(1, sizeof(*en));
    node_err err = rd == NULL || en == NULL ? NODE_ENOMEM : NODE_OK;
    grant_keys keys = { .n = 0 };
    if (err == NODE_OK
        && proto_scope_key_new(&k->case_id, k->scope, k->epoch + 1, NULL, &sk) != PROTO_OK)
        err = NODE_ENOMEM;
    if (err == NODE_OK) {
        proto_body plain;
        memset(&plain, 0, sizeof(plain));
        plain.kind = PROTO_BODY_ACCESS_EPOCH;
        plain.entry = node__ledger_entries_contiguous(t, &k->case_id, k->scope) + 1;
        plain.new_epoch = k->epoch + 1;
        proto_epoch_key_hash(sk, plain.key_hash);
        en->new_epoch = plain.new_epoch;
        memcpy(en->key_hash, plain.key_hash, 32);
        err = log_entry(t, w, k, &plain, en);
    }
    if (err == NODE_OK) {
        k->epoch++;
        memcpy(k->tag, proto_scope_key_tag(sk), 32);
        proto_scope_key_export(sk, k->key);
        k->confirmed = true;
        *epoch = k->epoch;
        err = node__ledger_key_put(t, k);
    }
    if (err == NODE_OK) {
        rd->t = t;
        rd->e = w->e;
        rd->k = k;
        rd->tmp = en;
        err = node__ledger_entries(t, &k->case_id, k->scope, readers_cb, rd);
    }
    if (err == NODE_OK) {
        keys.v[0] = sk;
        keys.n = 1;
        keys.nonce = k->nonce;
    }
    for (size_t i = 0; err == NODE_OK && i < rd->n; i += PROTO_HINT_SLOTS)
        err = seal_key_grant(
            t, w, &keys, rd->v + i, rd->n - i < PROTO_HINT_SLOTS ? rd->n - i : PROTO_HINT_SLOTS);
    proto_scope_key_free(sk);
    free(rd);
    free(en);
    return err;
}

/* Narrow org's access to one scope: the narrowing entry with its cut, and (access none) a new
 * epoch whose key the org never receives. */
static node_err narrow_scope(node_txn *t, write_ctx *w, const char *scope)
{
    node_revoke *rv = w->rv;
    ledger_key k;
    ledger_entry *en = calloc(1, sizeof(*en));
    node_err err = en == NULL ? NODE_ENOMEM : node__ledger_key_for(t, w->c, scope, &k);
    if (err != NODE_OK) {
        free(en);
        return err;
    }
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_ACCESS_NARROW;
    plain.entry = node__ledger_entries_contiguous(t, &k.case_id, k.scope) + 1;
    proto_narrow *n = &plain.narrow;
#define BYTES(s) ((proto_bytes) { (const uint8_t *)(s), strlen(s) })
    n->grantee = BYTES(rv->from);
    n->access = rv->access;
    n->reason = rv->reason;
    n->operator_name = BYTES(rv->operator_name);
    n->unix_user = BYTES(rv->unix_user);
    n->note = BYTES(rv->note);
#undef BYTES
    en->ncut = cut_of(t, w->e, rv->from, en->cut);
    n->cut = en->cut;
    n->ncut = en->ncut;
    snprintf(en->grantee, sizeof(en->grantee), "%s", rv->from);
    en->access = rv->access;
    en->reason = rv->reason;
    snprintf(en->operator_name, sizeof(en->operator_name), "%s", rv->operator_name);
    snprintf(en->unix_user, sizeof(en->unix_user), "%s", rv->unix_user);
    snprintf(en->evidence, sizeof(en->evidence), "%s", rv->note);
    err = log_entry(t, w, &k, &plain, en);
    node_revoked *d = &rv->done[rv->ndone];
    snprintf(d->scope, sizeof(d->scope), "%s", scope);
    d->entry = en->number;
    d->epoch = 0;
    if (err == NODE_OK && rv->access == PROTO_ACCESS_NONE)
        err = rotate(t, w, &k, &d->epoch);
    if (err == NODE_OK)
        rv->ndone++;
    proto_wipe(&k, sizeof(k));
    free(en);
    return err;
}

/* The scopes of the case whose access for org stands above what the revocation leaves. */
typedef struct above {
    node_txn *t;
    const proto_case_id *c;
    const node_revoke *rv;
    const char *v[NODE_REVOKE_SCOPES_MAX];
    char names[NODE_REVOKE_SCOPES_MAX][PROTO_SCOPE_NAME_MAX + 1];
    size_t n;
    ledger_entry en;
} above;

static bool holds_above(above *a, const char *scope)
{
    return node__grant_for(a->t, a->c, scope, a->rv->from, UINT64_MAX, &a->en)
        && a->en.access > a->rv->access;
}

static bool above_cb(const char *scope, const uint8_t tag[32], void *ctx)
{
    (void)tag;
    above *a = ctx;
    if (a->n < NODE_REVOKE_SCOPES_MAX && holds_above(a, scope)) {
        snprintf(a->names[a->n], sizeof(a->names[a->n]), "%s", scope);
        a->v[a->n] = a->names[a->n];
        a->n++;
    }
    return true;
}

static node_err revoke_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    node_revoke *rv = w->rv;
    begin(w);
    rv->ndone = 0;
    node_err err = owned_here(t, w, "revoke access to it");
    if (err != NODE_OK)
        return err;
    above *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NODE_ENOMEM;
    *a = (above) { .t = t, .c = w->c, .rv = rv };
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(w->c, id);
    bool down = rv->access == PROTO_ACCESS_READ;
    const char *level = down ? "write access" : "access", *what = down ? "downgrade" : "revoke";
    if (w->nscopes == 0) {
        err = node__ledger_case_scopes(t, w->c, above_cb, a);
        if (err == NODE_OK && a->n == 0)
            err = node__fail(w->msg, NODE_ENOTFOUND, "%s holds no %s to case %s: nothing to %s",
                rv->from, level, id, what);
    } else {
        for (size_t i = 0; i < w->nscopes && err == NODE_OK; i++) {
            if (!holds_above(a, w->scopes[i]))
                err = node__fail(w->msg, NODE_ENOTFOUND,
                    "%s holds no %s to scope %s of case %s: nothing to %s", rv->from, level,
                    w->scopes[i], id, what);
            a->v[a->n++] = w->scopes[i];
        }
    }
    for (size_t i = 0; i < a->n && err == NODE_OK; i++)
        err = narrow_scope(t, w, a->v[i]);
    free(a);
    return err != NODE_OK ? err : finish(t, w);
}

/* Run a write body; on success adopt its log position and clock; w->out holds what it made. */
static node_err run(node_engine *e, write_ctx *w, node_txn_cb cb)
{
    node_errmsg smsg = { { 0 } };
    w->msg->text[0] = 0;
    node_err err0 = node__removed_why(e, w->msg);
    if (err0 == NODE_OK)
        err0 = node__own_log_settled(e, w->msg);
    if (err0 != NODE_OK)
        return err0;
    node_err err = node_store_write(e->store, cb, w, &smsg);
    if (err != NODE_OK) {
        if (w->msg->text[0] == 0)
            snprintf(w->msg->text, sizeof(w->msg->text), "%s",
                smsg.text[0] != 0 ? smsg.text : node_strerror(err));
        node__outs_free(w->out);
        return err;
    }
    e->clock = w->clock;
    e->own_seq = w->seq;
    memcpy(e->own_last, w->last, 32);
    return NODE_OK;
}

node_err node__case_write(node_engine *e, const proto_case_id *c, const proto_case_nonce *nonce,
    const node_edit *edits, size_t n, node_outs *out, node_errmsg *msg)
{
    write_ctx w = { .e = e,
        .c = c,
        .nonce = nonce,
        .create = nonce != NULL,
        .edits = edits,
        .n = n,
        .msg = msg,
        .out = out };
    return run(e, &w, write_cb);
}

node_err node__case_batch(node_engine *e, node_batch_item *items, size_t n, bool dry_run,
    node_outs *out, node_errmsg *msg)
{
    write_ctx w = { .e = e,
        .msg = msg,
        .batch_msg = msg,
        .out = out,
        .outs_max = NODE_BATCH_MAX * 16,
        .items = items,
        .nitems = n };
    if ((w.scratch = calloc(NODE_BATCH_EDITS_MAX, sizeof(*w.scratch))) == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory");
    node_err err = NODE_OK;
    /* Refuse what the schema refuses before the transaction: a retry costs a whole attempt. */
    for (size_t i = 0; i < n; i++) {
        items[i].state = NODE_BATCH_PENDING;
        if (items[i].n == 0 || items[i].n > NODE_BATCH_EDITS_MAX) {
            items[i].state = NODE_BATCH_REFUSED;
            items[i].err = NODE_EINVAL;
            snprintf(items[i].reason, sizeof(items[i].reason), "give between 1 and %d edits",
                NODE_BATCH_EDITS_MAX);
        } else {
            (void)batch_parse(&w, &items[i]);
        }
    }
    for (size_t attempt = 0; attempt <= n && !dry_run; attempt++) {
        w.retry = false;
        err = run(e, &w, batch_cb);
        if (err == NODE_OK || !w.retry)
            break;
        msg->text[0] = 0;
    }
    if (err != NODE_OK) {
        for (size_t i = 0; i < n; i++)
            if (items[i].state != NODE_BATCH_REFUSED)
                items[i].state = NODE_BATCH_PENDING;
    }
    free(w.scratch);
    return err;
}

node_err node__case_grant(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, const node_grant *g, node_outs *out, node_errmsg *msg)
{
    write_ctx w
        = { .e = e, .c = c, .scopes = scopes, .nscopes = nscopes, .g = g, .msg = msg, .out = out };
    return run(e, &w, grant_cb);
}

node_err node__case_revoke(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, node_revoke *rv, node_outs *out, node_errmsg *msg)
{
    if (nscopes > NODE_REVOKE_SCOPES_MAX)
        return node__fail(
            msg, NODE_EINVAL, "at most %d scopes in one revocation", NODE_REVOKE_SCOPES_MAX);
    write_ctx w = {
        .e = e, .c = c, .scopes = scopes, .nscopes = nscopes, .rv = rv, .msg = msg, .out = out
    };
    return run(e, &w, revoke_cb);
}

/* ---------------------------------------------------------------------------------------- */
/* Grants that ended: closed by the owner with a narrowing and a new key                     */

typedef struct ended_item {
    proto_case_id c;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    char org[PROTO_ORG_MAX + 1];
    uint8_t reason;
    char note[256]; /* a withdrawal's or a drop's, for the narrowing */
} ended_item;

typedef struct ended_find {
    node_txn *t;
    node_engine *e;
    ended_item *v;
    size_t n, max;
    const proto_case_id *c;
    const char *scope;
    ledger_entry en;
    node_err err;
} ended_find;

/* A grant entry of a scope this node owns: its org's grant in force ended? (One item per org
 * and scope: the newest grant decides.) */
static bool ended_entry_cb(const ledger_entry *en, void *ctx)
{
    ended_find *f = ctx;
    if (en->kind != PROTO_BODY_ACCESS_GRANT || f->n == f->max)
        return f->n < f->max;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].org, en->grantee) == 0 && strcmp(f->v[i].scope, f->scope) == 0
            && memcmp(&f->v[i].c, f->c, sizeof(*f->c)) == 0)
            return true;
    if (!node__grant_for(f->t, f->c, f->scope, en->grantee, UINT64_MAX, &f->en)
        || f->en.access == PROTO_ACCESS_NONE)
        return true; /* closed already */
    node_member *m = node__member_by_org(f->e, en->grantee);
    bool gone = m == NULL || !m->active;
    bool expired = f->en.expiry_ms != 0 && f->en.expiry_ms < node__now(f->e);
    if (gone || expired) {
        ended_item *it = &f->v[f->n++];
        it->c = *f->c;
        snprintf(it->scope, sizeof(it->scope), "%s", f->scope);
        snprintf(it->org, sizeof(it->org), "%s", en->grantee);
        it->reason = gone ? PROTO_NARROW_REVOKED : PROTO_NARROW_EXPIRED;
    }
    return true;
}

static bool ended_scope_cb(const proto_case_id *c, const char *scope, const uint8_t *tag, void *ctx)
{
    ended_find *f = ctx;
    if (scope == NULL || !node__ledger_case_owned(f->t, c, NULL))
        return true;
    (void)tag;
    f->c = c;
    f->scope = scope;
    f->err = node__ledger_entries(f->t, c, scope, ended_entry_cb, f);
    return f->err == NODE_OK && f->n < f->max;
}

/* Notes received (this node owns their cases) not applied yet: each scope whose grantee still
 * holds a consent-based grant becomes an item (a narrowing, reason withdrawn or dropped);
 * grants on another basis wait for an operator here (consent list shows them pending). A note
 * whose scopes all hold nothing more is marked applied. */
typedef struct notes_scan {
    ended_find *f;
    ledger_note *v;
    size_t n, max;
} notes_scan;

static bool notes_scan_cb(const ledger_note *n, void *ctx)
{
    notes_scan *s = ctx;
    if (n->state == LEDGER_NOTE_PENDING && s->n < s->max)
        s->v[s->n++] = *n;
    return s->n < s->max;
}

/* Drop an incomplete UTF-8 sequence at the end of s (left by a cut). */
static void utf8_cut(char *s)
{
    size_t n = strlen(s), i = n, cont = 0;
    while (i > 0 && ((uint8_t)s[i - 1] & 0xC0) == 0x80 && cont < 3) {
        i--;
        cont++;
    }
    if (i == 0 || ((uint8_t)s[i - 1] & 0x80) == 0)
        return;
    uint8_t lead = (uint8_t)s[i - 1];
    size_t want = (lead & 0xE0) == 0xC0 ? 1
        : (lead & 0xF0) == 0xE0         ? 2
        : (lead & 0xF8) == 0xF0         ? 3
                                        : 0;
    if (want != cont)
        s[i - 1] = 0;
}

/* The notes a pass takes: each with where its items end in the pass's list, whether all its
 * scopes were looked at (the list had room), and whether one waits for an operator. A note is
 * marked applied only once every item it made was written. */
#define NOTES_PER_PASS 64
typedef struct notes_taken {
    ledger_note *v;
    size_t end[NOTES_PER_PASS];
    bool whole[NOTES_PER_PASS], waits[NOTES_PER_PASS];
    size_t n;
} notes_taken;

static node_err notes_due(node_txn *t, ended_find *f, notes_taken *nt)
{
    notes_scan s = { f, nt->v, 0, NOTES_PER_PASS };
    node_err err = node__ledger_notes(t, false, notes_scan_cb, &s);
    nt->n = s.n;
    for (size_t i = 0; i < s.n && err == NODE_OK; i++) {
        ledger_note *rec = &s.v[i];
        const proto_note *n = &rec->note;
        nt->waits[i] = false;
        nt->whole[i] = true;
        /* The note's signed clock: it ends the grants recorded before it, not a grant the owner
         * recorded later (new consent given after the withdrawal). */
        crdt_hlc at = { UINT64_MAX, UINT16_MAX };
        const void *hb;
        size_t hl;
        proto_header h;
        if (node__ledger_header_by_id(t, rec->id, &hb, &hl) == NODE_OK
            && proto_header_decode(hb, hl, &f->e->lim, &h, NULL) == PROTO_OK) {
            at = h.hlc;
            proto_header_fini(&h);
        }
        for (size_t k = 0; k < n->nscopes; k++) {
            if (!node__grant_for(t, &n->case_id, n->scopes[k], n->grantee, UINT64_MAX, &f->en)
                || f->en.access == PROTO_ACCESS_NONE || crdt_hlc_cmp(&f->en.hlc, &at) > 0)
                continue; /* nothing (more) to end, or granted again after the note */
            if (f->en.basis != PROTO_BASIS_CONSENT && f->en.basis != PROTO_BASIS_EXPLICIT_CONSENT) {
                nt->waits[i] = true; /* public task, legal obligation: an operator decides */
                continue;
            }
            if (f->n == f->max) {
                nt->whole[i] = false;
                break;
            }
            ended_item *it = &f->v[f->n++];
            it->c = n->case_id;
            snprintf(it->scope, sizeof(it->scope), "%s", n->scopes[k]);
            snprintf(it->org, sizeof(it->org), "%s", n->grantee);
            it->reason = n->kind == PROTO_NOTE_DROP ? PROTO_NARROW_DROPPED : PROTO_NARROW_WITHDRAWN;
            int len = snprintf(it->note, sizeof(it->note), "%s at %s's desk (%s)%s%s",
                n->kind == PROTO_NOTE_DROP ? "dropped" : "consent withdrawn", rec->author_org,
                n->operator_name, n->evidence[0] ? ", evidence " : "", n->evidence);
            if (len < 0 || (size_t)len >= sizeof(it->note))
                utf8_cut(it->note); /* a cut text stays text */
        }
        nt->end[i] = f->n;
    }
    return err;
}

/* The headers a narrowing of scope may write: itself, the announcement of a new epoch, and a
 * key grant per 4 readers (bounded by the orgs its log names). */
typedef struct grantees {
    char v[PROTO_MEMBERS_MAX > 64 ? 64 : PROTO_MEMBERS_MAX][PROTO_ORG_MAX + 1];
    size_t n, more;
} grantees;

static bool grantees_cb(const ledger_entry *en, void *ctx)
{
    grantees *g = ctx;
    if (en->kind != PROTO_BODY_ACCESS_GRANT)
        return true;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i], en->grantee) == 0)
            return true;
    if (g->n < sizeof(g->v) / sizeof(g->v[0]))
        snprintf(g->v[g->n++], sizeof(g->v[0]), "%s", en->grantee);
    else
        g->more++; /* counted as new each time: an overcount, never an undercount */
    return true;
}

static size_t narrowing_headers(node_txn *t, const proto_case_id *c, const char *scope)
{
    grantees *g = calloc(1, sizeof(*g));
    if (g == NULL || node__ledger_entries(t, c, scope, grantees_cb, g) != NODE_OK) {
        free(g);
        return 2 + PROTO_MEMBERS_MAX / PROTO_HINT_SLOTS;
    }
    size_t n = 2 + (g->n + g->more + PROTO_HINT_SLOTS - 1) / PROTO_HINT_SLOTS;
    free(g);
    return n;
}

typedef struct ended_ctx {
    write_ctx w;
    ended_find f;
    notes_taken nt;
    size_t *closed;
    bool *more;
} ended_ctx;

static node_err ended_cb(node_txn *t, void *ctx)
{
    ended_ctx *x = ctx;
    write_ctx *w = &x->w;
    begin(w);
    x->f.t = t;
    x->f.n = 0;
    x->f.err = NODE_OK;
    x->nt.n = 0;
    *x->closed = 0;
    *x->more = false;
    node_err err = node__ledger_cases(t, ended_scope_cb, &x->f);
    if (err == NODE_OK)
        err = x->f.err;
    if (err == NODE_OK)
        err = notes_due(t, &x->f, &x->nt);
    *x->more = x->f.n == x->f.max;
    size_t done = 0;
    for (; done < x->f.n && err == NODE_OK; done++) {
        ended_item *it = &x->f.v[done];
        if (w->out->n + narrowing_headers(t, &it->c, it->scope) > NODE_OUTS_MAX) {
            *x->more = true; /* the rest in the next transaction */
            break;
        }
        node_revoke *rv = w->rv;
        memset(rv, 0, sizeof(*rv));
        snprintf(rv->from, sizeof(rv->from), "%s", it->org);
        rv->access = PROTO_ACCESS_NONE;
        rv->reason = it->reason;
        snprintf(rv->operator_name, sizeof(rv->operator_name), "pattod");
        if (it->reason == PROTO_NARROW_WITHDRAWN || it->reason == PROTO_NARROW_DROPPED)
            snprintf(rv->note, sizeof(rv->note), "%s", it->note);
        else
            snprintf(rv->note, sizeof(rv->note), "%s",
                it->reason == PROTO_NARROW_EXPIRED ? "the grant's term ended"
                                                   : "the org is no longer in the network");
        w->c = &it->c;
        if ((err = narrow_scope(t, w, it->scope)) == NODE_OK) {
            char id[PROTO_CASE_ID_TEXT_SIZE];
            proto_case_id_format(&it->c, id);
            NODE_INFO("consent.close", "case=%s scope=%s org=%s reason=%s new_epoch=%" PRIu64, id,
                it->scope, it->org,
                it->reason == PROTO_NARROW_REVOKED ? "removed" : node__narrow_reason(it->reason),
                rv->done[0].epoch);
            ++*x->closed;
        }
    }
    /* a note is applied once every item it made is written and none waits for an operator */
    for (size_t i = 0; i < x->nt.n && err == NODE_OK; i++)
        if (x->nt.whole[i] && !x->nt.waits[i] && x->nt.end[i] <= done) {
            x->nt.v[i].state = LEDGER_NOTE_APPLIED;
            err = node__ledger_note_put(t, false, &x->nt.v[i]);
        }
    return err != NODE_OK ? err : finish(t, w);
}

node_err node__close_ended(
    node_engine *e, size_t max, size_t *closed, bool *more, node_outs *out, node_errmsg *msg)
{
    *closed = 0;
    *more = false;
    ended_ctx *x = calloc(1, sizeof(*x));
    node_revoke *rv = calloc(1, sizeof(*rv));
    ended_item *items = calloc(max ? max : 1, sizeof(*items));
    ledger_note *notes = calloc(NOTES_PER_PASS, sizeof(*notes));
    node_err err
        = x == NULL || rv == NULL || items == NULL || notes == NULL ? NODE_ENOMEM : NODE_OK;
    if (err == NODE_OK) {
        x->w = (write_ctx) { .e = e, .rv = rv, .msg = msg, .out = out };
        x->f = (ended_find) { .e = e, .v = items, .max = max };
        x->nt.v = notes;
        x->closed = closed;
        x->more = more;
        err = run(e, &x->w, ended_cb);
    }
    free(notes);
    free(items);
    free(rv);
    free(x);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Notes to a case's owner: a withdrawal recorded at this desk, or this node dropping a grant */

static node_err note_cb(node_txn *t, void *ctx)
{
    write_ctx *w = ctx;
    node_engine *e = w->e;
    begin(w);
    const proto_note *n = w->note;
    node_member *owner = node__member_by_org(e, n->owner_org);
    if (owner == NULL || !owner->active)
        return node__fail(w->msg, NODE_ENOTFOUND,
            "'%s' is not a member of the network: the note cannot reach the case's owner",
            n->owner_org);
    proto_recipient r;
    memcpy(r.box_pk, owner->box_pk, 32);
    proto_buf header = { NULL, 0 }, body = { NULL, 0 };
    proto_header h;
    memset(&h, 0, sizeof(h));
    proto_seal_info info;
    ledger_note *rec = calloc(1, sizeof(*rec));
    node_err err = rec == NULL ? NODE_ENOMEM : next_place(w, &info);
    proto_err perr
        = err == NODE_OK ? proto_note_seal(e->me, n, &info, &r, NULL, &header, &body) : PROTO_OK;
    if (perr != PROTO_OK)
        err = node__fail(w->msg, perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_EINVAL,
            "cannot seal the note: %s", proto_strerror(perr));
    if (err == NODE_OK && (err = store_own(t, w, &header, &body, &h)) == NODE_OK) {
        memcpy(rec->id, h.id, 32);
        rec->state = LEDGER_NOTE_PENDING;
        rec->at_ms = node__now(e);
        snprintf(rec->author_org, sizeof(rec->author_org), "%s", e->cfg.org);
        rec->note = *n;
        if ((err = node__ledger_note_put(t, true, rec)) == NODE_OK)
            err = push_out(w, &header, &body, &h);
    }
    proto_header_fini(&h);
    proto_buf_free(&header);
    proto_buf_free(&body);
    free(rec);
    return err != NODE_OK ? err : finish(t, w);
}

node_err node__case_note(node_engine *e, const proto_note *note, node_outs *out, node_errmsg *msg)
{
    write_ctx w = { .e = e, .c = &note->case_id, .note = note, .msg = msg, .out = out };
    return run(e, &w, note_cb);
}
