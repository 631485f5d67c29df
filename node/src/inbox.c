/*
 * The inbox: what reached this node that concerns its operators (a case shared with it, its
 * access narrowed, partners' changes to cases it reads, a withdrawal or drop for a case it
 * owns), kept as rows in the store, newest last, at most NODE_INBOX_MAX of them (the oldest
 * goes first), each read by an operator once it is below that operator's acknowledgement mark.
 * Rows hold no field values: the case id, the scope, the org and the access-log entry. The
 * rows are written inside the transaction that took what they tell (apply.c, purge.c), so a
 * row exists exactly when its cause was taken; a cause taken again (a log read anew after a
 * purge and a new grant) adds no second row. Alerts are not rows: they are computed from the
 * node's state when asked (node__alerts).
 * May call: ledger.c, store.c, ctlreq.c (answers), proto.
 *
 * Partners' changes are one row per case, updated in place (two store operations per merged
 * delta), kept apart from the others, and told apart by time rather than by seq.
 *
 * Keys (consents db): 'B' seq(8)                      -> row
 *                     'b' case(16) kind(1) entry(8) scope -> seq(8) (the row of a cause)
 *                     'c' case(16)                    -> row (partners' changes to the case)
 *                     'Y' operator                    -> seq(8) ms(8) (acknowledged up to)
 *                     'Z' "inbox"                     -> next seq(8) rows(8)
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Row: at(8) kind(1) case(16) entry(8) count(4) access(1) basis(1) reason(1) until(8), then
 * scope, org and purpose, each as len(1) bytes. */
#define ROW_FIXED (8 + 1 + PROTO_CASE_ID_LEN + 8 + 4 + 3 + 8)
#define ROW_MAX (ROW_FIXED + 3 * (1 + PROTO_ORG_MAX))

static const uint8_t counter_key[] = { 'Z', 'i', 'n', 'b', 'o', 'x' };

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = strnlen(s, PROTO_ORG_MAX);
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return 1 + n;
}

static size_t row_encode(const node_inbox_item *it, uint8_t out[ROW_MAX])
{
    node__ledger_be64(out, it->at_ms);
    out[8] = it->kind;
    memcpy(out + 9, it->case_id.b, PROTO_CASE_ID_LEN);
    size_t o = 9 + PROTO_CASE_ID_LEN;
    node__ledger_be64(out + o, it->entry);
    be32(out + o + 8, it->count);
    out[o + 12] = it->access;
    out[o + 13] = it->basis;
    out[o + 14] = it->reason;
    node__ledger_be64(out + o + 15, it->until_ms);
    o = ROW_FIXED;
    o += put_str(out + o, it->scope);
    o += put_str(out + o, it->org);
    o += put_str(out + o, it->purpose);
    return o;
}

static bool get_str(const uint8_t *v, size_t n, size_t *o, char *out, size_t size)
{
    if (*o >= n || v[*o] >= size || *o + 1 + v[*o] > n)
        return false;
    memcpy(out, v + *o + 1, v[*o]);
    out[v[*o]] = '\0';
    *o += 1 + (size_t)v[*o];
    return true;
}

static node_err row_decode(const uint8_t *v, size_t n, node_inbox_item *it)
{
    memset(it, 0, sizeof(*it));
    if (n < ROW_FIXED)
        return NODE_ECORRUPT;
    it->at_ms = node__ledger_get64(v);
    it->kind = v[8];
    memcpy(it->case_id.b, v + 9, PROTO_CASE_ID_LEN);
    size_t o = 9 + PROTO_CASE_ID_LEN;
    it->entry = node__ledger_get64(v + o);
    it->count = get32(v + o + 8);
    it->access = v[o + 12];
    it->basis = v[o + 13];
    it->reason = v[o + 14];
    it->until_ms = node__ledger_get64(v + o + 15);
    o = ROW_FIXED;
    if (!get_str(v, n, &o, it->scope, sizeof(it->scope))
        || !get_str(v, n, &o, it->org, sizeof(it->org))
        || !get_str(v, n, &o, it->purpose, sizeof(it->purpose)) || o != n)
        return NODE_ECORRUPT;
    return NODE_OK;
}

static lkey row_key(uint64_t seq)
{
    lkey k;
    k.b[0] = 'B';
    node__ledger_be64(k.b + 1, seq);
    k.n = 9;
    return k;
}

/* The key of a row's cause. */
static lkey cause_key(const node_inbox_item *it)
{
    lkey k;
    k.b[0] = 'b';
    memcpy(k.b + 1, it->case_id.b, PROTO_CASE_ID_LEN);
    size_t o = 1 + PROTO_CASE_ID_LEN;
    k.b[o] = it->kind;
    node__ledger_be64(k.b + o + 1, it->entry);
    size_t sl = strnlen(it->scope, PROTO_SCOPE_NAME_MAX);
    memcpy(k.b + o + 9, it->scope, sl);
    k.n = o + 9 + sl;
    return k;
}

static lkey change_key(const proto_case_id *c)
{
    lkey k;
    k.b[0] = 'c';
    memcpy(k.b + 1, c->b, PROTO_CASE_ID_LEN);
    k.n = 1 + PROTO_CASE_ID_LEN;
    return k;
}

static node_err counter_get(node_txn *t, uint64_t *next, uint64_t *rows)
{
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_CONSENTS, counter_key, sizeof counter_key, &v, &n);
    if (err == NODE_ENOTFOUND) {
        *next = 1, *rows = 0;
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    if (n != 16)
        return NODE_ECORRUPT;
    *next = node__ledger_get64(v);
    *rows = node__ledger_get64((const uint8_t *)v + 8);
    return NODE_OK;
}

static node_err counter_put(node_txn *t, uint64_t next, uint64_t rows)
{
    uint8_t v[16];
    node__ledger_be64(v, next);
    node__ledger_be64(v + 8, rows);
    return node_txn_put(t, NODE_DB_CONSENTS, counter_key, sizeof counter_key, v, sizeof v);
}

/* Delete row seq and its cause's key; *gone says whether it was there. */
static node_err row_del(node_txn *t, uint64_t seq, bool *gone)
{
    lkey rk = row_key(seq);
    const void *v;
    size_t n;
    node_inbox_item it;
    *gone = false;
    node_err err = node_txn_get(t, NODE_DB_CONSENTS, rk.b, rk.n, &v, &n);
    if (err == NODE_ENOTFOUND)
        return NODE_OK;
    if (err != NODE_OK || (err = row_decode(v, n, &it)) != NODE_OK)
        return err;
    lkey ck = cause_key(&it);
    if ((err = node_txn_del(t, NODE_DB_CONSENTS, ck.b, ck.n)) != NODE_OK && err != NODE_ENOTFOUND)
        return err;
    if ((err = node_txn_del(t, NODE_DB_CONSENTS, rk.b, rk.n)) != NODE_OK)
        return err;
    *gone = true;
    return NODE_OK;
}

static bool first_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    if (kl == 9)
        *(uint64_t *)ctx = node__ledger_get64((const uint8_t *)k + 1);
    return kl != 9;
}

void node__inbox_item(node_inbox_item *it, uint64_t at_ms, uint8_t kind, const proto_case_id *c,
    const char *scope, const char *org)
{
    memset(it, 0, sizeof(*it));
    it->at_ms = at_ms;
    it->kind = kind;
    it->case_id = *c;
    snprintf(it->scope, sizeof(it->scope), "%s", scope);
    snprintf(it->org, sizeof(it->org), "%s", org);
}

node_err node__inbox_add(node_txn *t, const node_inbox_item *item)
{
    node_inbox_item it = *item;
    uint8_t row[ROW_MAX], seq[8];
    const void *v;
    size_t n;
    node_err err;
    if (it.kind == NODE_INBOX_CHANGED) {
        /* One row a case, counting on. */
        lkey ck = change_key(&it.case_id);
        node_inbox_item was;
        err = node_txn_get(t, NODE_DB_CONSENTS, ck.b, ck.n, &v, &n);
        if (err == NODE_OK && (err = row_decode(v, n, &was)) == NODE_OK)
            it.count += was.count;
        if (err != NODE_OK && err != NODE_ENOTFOUND)
            return err;
        size_t len = row_encode(&it, row);
        return node_txn_put(t, NODE_DB_CONSENTS, ck.b, ck.n, row, len);
    }
    uint64_t next, rows;
    if ((err = counter_get(t, &next, &rows)) != NODE_OK)
        return err;
    lkey ck = cause_key(&it);
    err = node_txn_get(t, NODE_DB_CONSENTS, ck.b, ck.n, &v, &n);
    if (err == NODE_OK)
        return NODE_OK; /* this cause has its row */
    if (err != NODE_ENOTFOUND)
        return err;
    size_t len = row_encode(&it, row);
    lkey rk = row_key(next);
    node__ledger_be64(seq, next);
    if ((err = node_txn_put(t, NODE_DB_CONSENTS, rk.b, rk.n, row, len)) != NODE_OK
        || (err = node_txn_put(t, NODE_DB_CONSENTS, ck.b, ck.n, seq, 8)) != NODE_OK)
        return err;
    rows++;
    /* The bound: the oldest rows go. */
    while (rows > NODE_INBOX_MAX) {
        uint64_t first = 0;
        bool gone = false;
        uint8_t p = 'B';
        if ((err = node_txn_scan(t, NODE_DB_CONSENTS, &p, 1, first_cb, &first)) != NODE_OK
            || (err = row_del(t, first, &gone)) != NODE_OK)
            return err;
        if (!gone)
            return NODE_ECORRUPT;
        rows--;
    }
    return counter_put(t, next + 1, rows);
}

node_err node__inbox_forget_case(node_txn *t, const proto_case_id *c)
{
    lkey ck = change_key(c);
    node_err err = node_txn_del(t, NODE_DB_CONSENTS, ck.b, ck.n);
    return err == NODE_ENOTFOUND ? NODE_OK : err;
}

/* ---- the control commands ---- */

static lkey ack_key(const char *op)
{
    lkey k;
    size_t n = strnlen(op, NODE_OPERATOR_MAX);
    k.b[0] = 'Y';
    memcpy(k.b + 1, op, n);
    k.n = 1 + n;
    return k;
}

/* An operator's mark: the rows up to seq and the changes up to ms are read. */
typedef struct ack_mark {
    uint64_t seq, ms;
} ack_mark;

static ack_mark acked(node_txn *t, const char *op)
{
    lkey k = ack_key(op);
    const void *v;
    size_t n;
    ack_mark m = { 0, 0 };
    if (node_txn_get(t, NODE_DB_CONSENTS, k.b, k.n, &v, &n) == NODE_OK && n == 16) {
        m.seq = node__ledger_get64(v);
        m.ms = node__ledger_get64((const uint8_t *)v + 8);
    }
    return m;
}

static const char *kind_name(uint8_t k)
{
    switch (k) {
    case NODE_INBOX_SHARED:
        return "shared";
    case NODE_INBOX_NARROWED:
        return "narrowed";
    case NODE_INBOX_CHANGED:
        return "changed";
    case NODE_INBOX_WITHDRAWAL:
        return "withdrawal";
    case NODE_INBOX_DROP:
        return "drop";
    default:
        return "?";
    }
}

const char *node__narrow_reason(uint8_t reason)
{
    switch (reason) {
    case PROTO_NARROW_WITHDRAWN:
        return "withdrawn";
    case PROTO_NARROW_DROPPED:
        return "dropped";
    case PROTO_NARROW_EXPIRED:
        return "expired";
    default:
        return "revoked";
    }
}

static json_object *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_object_new_string(s) : NULL;
}

static json_object *row_json(uint64_t seq, const node_inbox_item *it, bool fresh)
{
    json_object *o = json_object_new_object();
    char id[PROTO_CASE_ID_TEXT_SIZE], at[32];
    proto_case_id_format(&it->case_id, id);
    node__rfc3339(it->at_ms, at);
    json_object_object_add(o, "seq", json_object_new_int64((int64_t)seq));
    json_object_object_add(o, "at", json_object_new_string(at));
    json_object_object_add(o, "kind", json_object_new_string(kind_name(it->kind)));
    json_object_object_add(o, "case", json_object_new_string(id));
    json_object_object_add(o, "scope", str_or_null(it->scope));
    json_object_object_add(o, "org", json_object_new_string(it->org));
    json_object_object_add(o, "new", json_object_new_boolean(fresh));
    if (it->kind == NODE_INBOX_SHARED || it->kind == NODE_INBOX_NARROWED)
        json_object_object_add(o, "entry", json_object_new_int64((int64_t)it->entry));
    if (it->kind == NODE_INBOX_SHARED) {
        const char *acc = proto_access_name(it->access), *basis = proto_basis_name(it->basis);
        json_object_object_add(o, "access", str_or_null(acc));
        json_object_object_add(o, "purpose", str_or_null(it->purpose));
        json_object_object_add(o, "basis", str_or_null(basis));
        if (it->until_ms != 0) {
            node__rfc3339(it->until_ms, at);
            json_object_object_add(o, "until", json_object_new_string(at));
        } else {
            json_object_object_add(o, "until", NULL);
        }
    } else if (it->kind == NODE_INBOX_NARROWED) {
        const char *acc = proto_access_name(it->access);
        json_object_object_add(o, "access", json_object_new_string(acc != NULL ? acc : "none"));
        json_object_object_add(
            o, "reason", json_object_new_string(node__narrow_reason(it->reason)));
    } else if (it->kind == NODE_INBOX_CHANGED) {
        json_object_object_add(o, "changes", json_object_new_int64((int64_t)it->count));
    } else {
        json_object_object_add(o, "grantee", str_or_null(it->purpose)); /* (notes: see core.h) */
    }
    return o;
}

/* The rows that match, gathered, then sorted newest first. */
typedef struct row_ref {
    uint64_t at_ms, seq;
    json_object *o;
} row_ref;

typedef struct inbox_ctx {
    const char *op;
    uint64_t since_ms;
    ack_mark mark;
    bool all;
    uint64_t limit;
    size_t fresh;
    row_ref *v;
    size_t n, cap;
    node_err err;
} inbox_ctx;

static bool keep(inbox_ctx *c, uint64_t seq, const node_inbox_item *it, bool fresh)
{
    c->fresh += fresh;
    if (!(c->all || fresh) || it->at_ms < c->since_ms)
        return true;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        row_ref *v = realloc(c->v, cap * sizeof(*v));
        if (v == NULL) {
            c->err = NODE_ENOMEM;
            return false;
        }
        c->v = v, c->cap = cap;
    }
    c->v[c->n++] = (row_ref) { it->at_ms, seq, row_json(seq, it, fresh) };
    return true;
}

static bool rows_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    inbox_ctx *c = ctx;
    node_inbox_item it;
    if (kl != 9)
        return true;
    if ((c->err = row_decode(v, vl, &it)) != NODE_OK)
        return false;
    uint64_t seq = node__ledger_get64((const uint8_t *)k + 1);
    return keep(c, seq, &it, seq > c->mark.seq);
}

static bool changes_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k;
    inbox_ctx *c = ctx;
    node_inbox_item it;
    if (kl != 1 + PROTO_CASE_ID_LEN)
        return true;
    if ((c->err = row_decode(v, vl, &it)) != NODE_OK)
        return false;
    return keep(c, 0, &it, it.at_ms > c->mark.ms);
}

static node_err inbox_read_cb(node_txn *t, void *ctx)
{
    inbox_ctx *c = ctx;
    c->mark = acked(t, c->op);
    uint8_t p = 'B', q = 'c';
    node_err err = node_txn_scan(t, NODE_DB_CONSENTS, &p, 1, rows_cb, c);
    if (err == NODE_OK && c->err == NODE_OK)
        err = node_txn_scan(t, NODE_DB_CONSENTS, &q, 1, changes_cb, c);
    return err != NODE_OK ? err : c->err;
}

static int newest_first(const void *a, const void *b)
{
    const row_ref *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? 1 : -1;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* Who reads: the operator given, else the node's default one. */
static bool inbox_operator(req *r)
{
    if (r->operator_name[0] != '\0')
        return true;
    node__ctl_error(r->e, r->id, CODE_USAGE,
        "the inbox is kept per operator: give --operator NAME (or set PATTO_OPERATOR), or set "
        "'operator = NAME' under [node] in pattod.conf");
    return false;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s[0] == '\0')
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

void node__cmd_inbox(req *r)
{
    char since[24] = "", all[8] = "", limit[12] = "";
    inbox_ctx c = { .op = r->operator_name, .limit = 50 };
    if (r->nargs > 4 || (r->nargs > 1 && !node__ctl_arg(r, 1, since, sizeof since))
        || (r->nargs > 2 && !node__ctl_arg(r, 2, all, sizeof all))
        || (r->nargs > 3 && !node__ctl_arg(r, 3, limit, sizeof limit))
        || (since[0] != '\0' && !parse_u64(since, &c.since_ms))
        || (all[0] != '\0' && strcmp(all, "all") != 0 && strcmp(all, "new") != 0)
        || (limit[0] != '\0' && (!parse_u64(limit, &c.limit) || c.limit == 0))) {
        node__ctl_error(r->e, r->id, CODE_USAGE,
            "inbox takes: since (UTC ms, or empty), which rows (all, or new/empty: those not "
            "acknowledged), limit (1 or more, or empty: 50)");
        return;
    }
    if (!inbox_operator(r))
        return;
    c.all = strcmp(all, "all") == 0;
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, inbox_read_cb, &c, &msg);
    if (c.v != NULL)
        qsort(c.v, c.n, sizeof(*c.v), newest_first);
    json_object *items = json_object_new_array();
    for (size_t i = 0; i < c.n; i++) {
        if (err == NODE_OK && i < c.limit)
            json_object_array_add(items, c.v[i].o);
        else
            json_object_put(c.v[i].o);
    }
    free(c.v);
    if (err != NODE_OK) {
        json_object_put(items);
        node__ctl_error(r->e, r->id, node__ctl_code(err),
            err == NODE_ECORRUPT ? "an inbox row in the store is damaged" : msg.text);
        return;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "operator", json_object_new_string(r->operator_name));
    json_object_object_add(doc, "new", json_object_new_int64((int64_t)c.fresh));
    json_object_object_add(doc, "alerts", node__alerts(r->e));
    json_object_object_add(doc, "items", items);
    json_object_object_add(
        doc, "more", json_object_new_int64((int64_t)(c.n > c.limit ? c.n - c.limit : 0)));
    node__ctl_json(r->e, r->id, doc);
}

typedef struct ack_ctx {
    const char *op;
    uint64_t now;
    ack_mark was, mark;
} ack_ctx;

static node_err ack_cb(node_txn *t, void *ctx)
{
    ack_ctx *a = ctx;
    uint64_t next, rows;
    node_err err = counter_get(t, &next, &rows);
    if (err != NODE_OK)
        return err;
    a->was = acked(t, a->op);
    /* A mark never moves back (this node's clock may). */
    a->mark.seq = next - 1 > a->was.seq ? next - 1 : a->was.seq;
    a->mark.ms = a->now > a->was.ms ? a->now : a->was.ms;
    uint8_t v[16];
    node__ledger_be64(v, a->mark.seq);
    node__ledger_be64(v + 8, a->mark.ms);
    lkey k = ack_key(a->op);
    return node_txn_put(t, NODE_DB_CONSENTS, k.b, k.n, v, sizeof v);
}

void node__cmd_inbox_ack(req *r)
{
    ack_ctx a = { .op = r->operator_name, .now = node__now(r->e) };
    if (r->nargs > 1) {
        node__ctl_error(r->e, r->id, CODE_USAGE, "inbox.ack takes no arguments");
        return;
    }
    if (!inbox_operator(r))
        return;
    node_errmsg msg;
    node_err err = node_store_write(r->e->store, ack_cb, &a, &msg);
    if (err != NODE_OK) {
        node__ctl_error(r->e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    char at[32];
    node__rfc3339(a.mark.ms, at);
    NODE_INFO("inbox.ack", "operator=\"%s\" user=\"%s\" seq=%" PRIu64 " at=%s",
        node__logq(r->operator_name), node__logq(r->unix_user), a.mark.seq, at);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "operator", json_object_new_string(r->operator_name));
    json_object_object_add(doc, "acked_at", json_object_new_string(at));
    node__ctl_json(r->e, r->id, doc);
}

/* ---- alerts ---- */

static json_object *alert(const char *kind, const char *org, const char *message)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "kind", json_object_new_string(kind));
    json_object_object_add(o, "org", str_or_null(org));
    json_object_object_add(o, "message", json_object_new_string(message));
    return o;
}

typedef struct alerts_ctx {
    node_engine *e;
    json_object *list;
} alerts_ctx;

static bool fork_cb(const uint8_t origin[32], uint64_t seq, void *ctx)
{
    alerts_ctx *a = ctx;
    char hex[65], msg[300];
    const char *org = node__org_of(a->e, origin, hex);
    if (memcmp(origin, proto_identity_origin(a->e->me), 32) == 0)
        snprintf(msg, sizeof msg,
            "this node's own log forked at seq %" PRIu64 " (a restore from an old backup that "
            "wrote again?): its writes from there on are void everywhere; it needs a new key "
            "from the network's admin (patto network rekey)",
            seq);
    else
        snprintf(msg, sizeof msg,
            "%s's log forked at seq %" PRIu64 ": its writes from there on are void and it is "
            "quarantined until the network's admin gives it a new key",
            org, seq);
    json_object_array_add(a->list, alert("fork", org, msg));
    return true;
}

static node_err alerts_cb(node_txn *t, void *ctx)
{
    alerts_ctx *a = ctx;
    return node__ledger_quarantine_list(t, &a->e->lim, fork_cb, a);
}

static size_t key_waits(const node_engine *e)
{
    size_t key = 0;
    for (size_t i = 0; i < e->waits.n; i++)
        key += e->waits.v[i].why == WAIT_KEY;
    return key;
}

void node__alerts_tick(node_engine *e)
{
    if (key_waits(e) == 0)
        e->key_wait_since_ms = 0;
    else if (e->key_wait_since_ms == 0)
        e->key_wait_since_ms = node__mono(e);
}

json_object *node__alerts(node_engine *e)
{
    alerts_ctx a = { e, json_object_new_array() };
    char msg[300];
    if (e->removed) {
        snprintf(msg, sizeof msg,
            "this node was removed from the network in manifest %" PRIu64
            ": it writes nothing and syncs with no one; its data stays readable here",
            e->manifest.version);
        json_object_array_add(a.list, alert("removed", e->cfg.org, msg));
    }
    node_errmsg em;
    if (node_store_read(e->store, alerts_cb, &a, &em) != NODE_OK) {
        snprintf(msg, sizeof msg, "the store could not be read for forks: %.200s", em.text);
        json_object_array_add(a.list, alert("store", NULL, msg));
    }
    uint64_t bound = node__clock_ahead_ms(e);
    for (size_t i = 0; i < e->nmembers; i++) {
        const node_member *m = &e->members[i];
        if (m->self || !m->active || m->clock_sampled_ms == 0)
            continue;
        uint64_t off
            = m->clock_offset_ms < 0 ? (uint64_t)-m->clock_offset_ms : (uint64_t)m->clock_offset_ms;
        if (off <= bound)
            continue;
        snprintf(msg, sizeof msg,
            "%s's clock is %.1f s %s this node's, beyond the network's bound of %.1f s: its "
            "writes wait until this clock catches up, or this node's clock is wrong",
            m->org, (double)off / 1000.0, m->clock_offset_ms > 0 ? "ahead of" : "behind",
            (double)bound / 1000.0);
        json_object *o = alert("clock", m->org, msg);
        json_object_object_add(o, "offset_ms", json_object_new_int64(m->clock_offset_ms));
        json_object_array_add(a.list, o);
    }
    size_t key = key_waits(e);
    if (key > 0 && e->key_wait_since_ms != 0
        && node__mono(e) - e->key_wait_since_ms >= NODE_KEY_ALERT_MS) {
        snprintf(msg, sizeof msg,
            "%zu write%s of scopes whose key this node does not hold have waited over %d s: "
            "the owner's key grant has not come; check the link to the cases' owners",
            key, key == 1 ? "" : "s", NODE_KEY_ALERT_MS / 1000);
        json_object *o = alert("key", NULL, msg);
        json_object_object_add(o, "waiting", json_object_new_int64((int64_t)key));
        json_object_array_add(a.list, o);
    }
    return a.list;
}
