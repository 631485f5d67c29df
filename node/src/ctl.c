/*
 * The control socket's commands (node/CONTROL.md): one request in, one JSON document or one
 * error (with the CLI's exit code) out. JSON is built with json-c.
 */
#include "core.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The CLI's exit codes (cli/README.md, "Exit codes and errors"). */
enum { CODE_USAGE = 1, CODE_REFUSED = 2, CODE_NOTFOUND = 3, CODE_INTERNAL = 5 };

#define EDITS_MAX 256
#define LIST_MAX ((size_t)1 << 22) /* cases in one case.list answer */

typedef struct req {
    node_engine *e;
    uint64_t id;
    const proto_bytes *args;
    size_t nargs;
    char operator_name[NODE_OPERATOR_MAX + 1];
} req;

static void reply_error(node_engine *e, uint64_t id, int code, const char *message)
{
    proto_ctl_error m = { id, (uint64_t)code, { (const uint8_t *)message, strlen(message) } };
    if (m.message.len > PROTO_TEXT_MAX)
        m.message.len = PROTO_TEXT_MAX;
    proto_buf out = { NULL, 0 };
    if (proto_ctl_error_encode(&m, &out) == PROTO_OK)
        e->host.ctl_reply(e->host.ctx, out.p, out.len);
    else
        e->host.ctl_reply(e->host.ctx, (const uint8_t *)"", 0);
    proto_buf_free(&out);
}

static void reply_json(node_engine *e, uint64_t id, json_object *doc)
{
    const char *text = json_object_to_json_string_ext(
        doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    proto_ctl_response m = { id, { (const uint8_t *)text, strlen(text) } };
    proto_buf out = { NULL, 0 };
    if (proto_ctl_response_encode(&m, &out) == PROTO_OK)
        e->host.ctl_reply(e->host.ctx, out.p, out.len);
    else
        reply_error(e, id, CODE_INTERNAL, "the answer is too large to encode");
    proto_buf_free(&out);
    json_object_put(doc);
}

static int code_of(node_err err)
{
    switch (err) {
    case NODE_EINVAL:
        return CODE_REFUSED;
    case NODE_ENOTFOUND:
        return CODE_NOTFOUND;
    default:
        return CODE_INTERNAL;
    }
}

/* args[i] as a NUL-terminated string in buf; false if absent, too long or with a NUL. */
static bool arg(const req *r, size_t i, char *buf, size_t size)
{
    if (i >= r->nargs || r->args[i].len >= size || memchr(r->args[i].p, 0, r->args[i].len) != NULL)
        return false;
    memcpy(buf, r->args[i].p, r->args[i].len);
    buf[r->args[i].len] = 0;
    return true;
}

static void rfc3339(uint64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}

static json_object *hexstr(const uint8_t *p, size_t n)
{
    char buf[2 * 64 + 1];
    proto_hex_encode(p, n, buf);
    return json_object_new_string(buf);
}

/* The case id in args[1]; when it is not one, the reply says why (a mistyped character fails
 * the checksum: refused; anything else is not a case id's shape: usage) and false. */
static bool case_arg(const req *r, proto_case_id *c)
{
    char text[128] = "";
    proto_err perr = arg(r, 1, text, sizeof(text)) ? proto_case_id_parse(text, strlen(text), c)
                                                   : PROTO_ECASEID;
    if (perr == PROTO_OK)
        return true;
    char msg[300];
    if (perr == PROTO_ECHECKSUM) {
        snprintf(msg, sizeof(msg),
            "'%s' is not a case id: its checksum does not match (a character is mistyped)", text);
        reply_error(r->e, r->id, CODE_REFUSED, msg);
    } else {
        snprintf(msg, sizeof(msg),
            "'%s' is not a case id: expected pc- followed by 29 letters and digits", text);
        reply_error(r->e, r->id, CODE_USAGE, msg);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading a case                                                                            */

static const char *org_of(node_engine *e, const uint8_t origin[32], char hex[65])
{
    node_member *m = node_member_by_origin(e, origin);
    if (m != NULL)
        return m->org;
    proto_hex_encode(origin, 32, hex);
    return hex;
}

/* The JSON of one field's value (what a person reads), adding conflicts when there are. */
static json_object *field_json(node_engine *e, const crdt_scope *s, const char *scope,
    const char *field, crdt_type type, json_object *conflicts)
{
    const node_field *f = node_schema_field(e->schema, scope, field);
    size_t n = 0;
    switch (type) {
    case CRDT_REGISTER: {
        if (crdt_register_count(s, field, &n) != CRDT_OK || n == 0)
            return NULL;
        json_object *winner = NULL, *all = n > 1 ? json_object_new_array() : NULL;
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
                rfc3339(ev.hlc.wall, at);
                json_object_object_add(o, "at", json_object_new_string(at));
                json_object_object_add(
                    o, "by", json_object_new_string(org_of(e, ev.id.origin.b, hex)));
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

typedef struct show_ctx {
    node_engine *e;
    json_object *scopes, *conflicts;
    size_t n;
    node_err err;
    node_txn *t;
} show_ctx;

static bool show_scope_cb(const char *scope, const uint8_t tag[32], void *ctx)
{
    show_ctx *c = ctx;
    crdt_scope *s = NULL;
    if ((c->err = ledger_state_get(c->t, tag, &c->e->lim, &s)) != NODE_OK)
        return false;
    json_object *obj = json_object_new_object();
    size_t nf = crdt_scope_field_count(s);
    for (size_t i = 0; i < nf; i++) {
        const char *name;
        crdt_type type;
        if (crdt_scope_field_at(s, i, &name, &type) != CRDT_OK || name[0] == '@')
            continue;
        json_object *v = field_json(c->e, s, scope, name, type, c->conflicts);
        if (v != NULL)
            json_object_object_add(obj, name, v);
    }
    json_object_object_add(c->scopes, scope, obj);
    crdt_scope_free(s);
    c->n++;
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
    s->owned = ledger_case_owned(t, s->id);
    node_err err = ledger_case_scopes(t, s->id, show_scope_cb, s->c);
    return err != NODE_OK ? err : s->c->err;
}

static void cmd_case_show(req *r)
{
    proto_case_id c;
    if (!case_arg(r, &c))
        return;
    show_ctx sc
        = { .e = r->e, .scopes = json_object_new_object(), .conflicts = json_object_new_object() };
    show_req s = { &sc, &c, false };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, show_cb, &s, &msg);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    if (err != NODE_OK || (sc.n == 0 && !s.owned)) {
        json_object_put(sc.scopes);
        json_object_put(sc.conflicts);
        if (err != NODE_OK) {
            reply_error(r->e, r->id, CODE_INTERNAL, msg.text);
            return;
        }
        char m[128];
        snprintf(m, sizeof(m), "no readable scope of case %s on this node", id);
        reply_error(r->e, r->id, CODE_NOTFOUND, m);
        return;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "scopes", sc.scopes);
    json_object_object_add(doc, "conflicts", sc.conflicts);
    reply_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* case list                                                                                 */

typedef struct list_item {
    proto_case_id id;
    json_object *scopes;
    uint64_t last;
} list_item;

typedef struct list_ctx {
    node_txn *t;
    list_item *items;
    size_t n, cap;
    bool oom;
} list_ctx;

/* ledger_cases gives the cases opened here in id order, then every readable scope in case
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
        it->id = *c;
        it->scopes = json_object_new_array();
        it->last = 0;
    }
    if (scope != NULL) {
        json_object_array_add(it->scopes, json_object_new_string(scope));
        uint64_t last = ledger_last_change(l->t, tag);
        if (last > it->last)
            it->last = last;
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
    }
    l->n = w + 1;
}

static node_err list_txn_cb(node_txn *t, void *ctx)
{
    list_ctx *l = ctx;
    l->t = t;
    node_err err = ledger_cases(t, list_cb, l);
    if (err == NODE_OK && !l->oom)
        list_merge(l);
    return err != NODE_OK ? err : l->oom ? NODE_ENOMEM : NODE_OK;
}

static int by_last_desc(const void *a, const void *b)
{
    const list_item *x = a, *y = b;
    return (x->last < y->last) - (x->last > y->last);
}

static void cmd_case_list(req *r)
{
    list_ctx l = { NULL, NULL, 0, 0, false };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, list_txn_cb, &l, &msg);
    json_object *doc = json_object_new_object(), *cases = json_object_new_array();
    if (err == NODE_OK)
        qsort(l.items, l.n, sizeof(*l.items), by_last_desc);
    for (size_t i = 0; i < l.n; i++) {
        json_object *o = json_object_new_object();
        char id[PROTO_CASE_ID_TEXT_SIZE], at[32];
        proto_case_id_format(&l.items[i].id, id);
        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "scopes", l.items[i].scopes);
        if (l.items[i].last) {
            rfc3339(l.items[i].last, at);
            json_object_object_add(o, "last_change", json_object_new_string(at));
        } else {
            json_object_object_add(o, "last_change", NULL);
        }
        json_object_array_add(cases, o);
    }
    free(l.items);
    json_object_object_add(doc, "cases", cases);
    if (err != NODE_OK) {
        json_object_put(doc);
        reply_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    reply_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                   */

/* A write, durable when it returns, then pushed to the peers. */
static node_err write_and_push(node_engine *e, const proto_case_id *c, bool create,
    const node_edit *edits, size_t n, node_errmsg *msg)
{
    node_outs outs = { NULL, 0, 0 };
    node_err err = node_case_write(e, c, create, edits, n, &outs, msg);
    node__push(e, &outs);
    node_outs_free(&outs);
    return err;
}

static void cmd_case_write(req *r, bool create, bool unset)
{
    size_t first = create ? 1 : 2;
    proto_case_id c;
    if (!create && !case_arg(r, &c))
        return;
    if (create && proto_case_id_new(NULL, &c) != PROTO_OK) {
        reply_error(r->e, r->id, CODE_INTERNAL, "cannot draw a random case id");
        return;
    }
    size_t n = r->nargs > first ? r->nargs - first : 0;
    if ((!create && n == 0) || n > EDITS_MAX || (unset && n != 1)) {
        reply_error(r->e, r->id, CODE_USAGE,
            unset ? "unset takes one scope.field"
                  : "give between 1 and 256 edits: scope.field=VALUE, +=VALUE, -=VALUE");
        return;
    }
    node_edit *edits = calloc(n ? n : 1, sizeof(*edits));
    if (edits == NULL) {
        reply_error(r->e, r->id, CODE_INTERNAL, "out of memory");
        return;
    }
    node_errmsg msg = { { 0 } };
    node_err err = NODE_OK;
    for (size_t i = 0; i < n && err == NODE_OK; i++) {
        char text[16384 + 128];
        if (!arg(r, first + i, text, sizeof(text))) {
            err = node__fail(&msg, NODE_EINVAL, "edit %zu is too long or not text", i + 1);
            break;
        }
        if (unset) {
            /* "scope.field" alone, naming a field of the schema. */
            const char *dot = strchr(text, '.');
            node_edit *ed = &edits[i];
            memset(ed, 0, sizeof(*ed));
            if (dot == NULL || dot == text || strlen(dot + 1) == 0
                || (size_t)(dot - text) > PROTO_SCOPE_NAME_MAX
                || strlen(dot + 1) > CRDT_FIELD_MAX) {
                err = node__fail(&msg, NODE_EINVAL, "'%s' is not a scope.field name", text);
                break;
            }
            memcpy(ed->scope, text, (size_t)(dot - text));
            strcpy(ed->field, dot + 1);
            if (node_schema_field(r->e->schema, ed->scope, ed->field) == NULL) {
                err = node__fail(&msg, NODE_EINVAL, "%s is not a field of the schema", text);
                break;
            }
            ed->unset = true;
        } else {
            err = node_edit_parse(r->e, text, &edits[i], &msg);
        }
    }
    if (err == NODE_OK)
        err = write_and_push(r->e, &c, create, edits, n, &msg);
    free(edits);
    if (err != NODE_OK) {
        reply_error(r->e, r->id, code_of(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    NODE_INFO("case.write", "case=%s operator=%s edits=%zu created=%s", id, r->operator_name, n,
        create ? "yes" : "no");
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    if (!create)
        json_object_object_add(doc, "edits", json_object_new_int64((int64_t)n));
    reply_json(r->e, r->id, doc);
}

/* The last millisecond of day D in Europe/Rome, what "until D" means (PROTOCOL.md, "Names
 * and values"); false when D is not a date. A day that ended before 1970 cannot be written as
 * UTC ms: it becomes the first millisecond that can (0 means no end), past all the same. */
static bool until_ms(const char *text, uint64_t *out)
{
    proto_date d;
    if (proto_date_parse(text, strlen(text), &d) != PROTO_OK)
        return false;
    uint64_t end = proto_rome_day_end_ms(&d);
    *out = end == UINT64_MAX ? 1 : end;
    return true;
}

/* Split the comma-separated scopes into list (borrowing from scopes, which is cut): each a scope
 * of the schema, none twice. Replies the refusal itself and returns 0 when they are not. */
static size_t grant_scopes(req *r, char *scopes, const char **list, size_t max)
{
    size_t ns = 0;
    char m[400];
    for (char *save = NULL, *s = strtok_r(scopes, ",", &save); s != NULL;
         s = strtok_r(NULL, ",", &save)) {
        if (node_schema_scope(r->e->schema, s) == NULL) {
            snprintf(m, sizeof(m), "unknown scope '%s' (see 'patto schema')", s);
            reply_error(r->e, r->id, CODE_REFUSED, m);
            return 0;
        }
        for (size_t i = 0; i < ns; i++)
            if (strcmp(list[i], s) == 0) {
                snprintf(m, sizeof(m), "scope '%s' is named twice", s);
                reply_error(r->e, r->id, CODE_USAGE, m);
                return 0;
            }
        if (ns == max) {
            snprintf(m, sizeof(m), "at most %zu scopes in one grant", max);
            reply_error(r->e, r->id, CODE_USAGE, m);
            return 0;
        }
        list[ns++] = s;
    }
    if (ns == 0)
        reply_error(r->e, r->id, CODE_USAGE, "give at least one scope to grant");
    return ns;
}

static void cmd_consent_grant(req *r)
{
    proto_case_id c;
    if (!case_arg(r, &c))
        return;
    char to[PROTO_ORG_MAX + 1], scopes[512], purpose[PROTO_ORG_MAX + 1], basis[32], access[16],
        until[16], evidence[PROTO_TEXT_MAX + 1];
    if (!arg(r, 2, to, sizeof(to)) || !arg(r, 3, scopes, sizeof(scopes))
        || !arg(r, 4, purpose, sizeof(purpose)) || !arg(r, 5, basis, sizeof(basis))
        || !arg(r, 6, access, sizeof(access)) || !arg(r, 7, until, sizeof(until))
        || !arg(r, 8, evidence, sizeof(evidence))) {
        reply_error(r->e, r->id, CODE_USAGE,
            "consent.grant takes: case, org, scopes, purpose, basis, access, until, "
            "evidence");
        return;
    }
    node_engine *e = r->e;
    node_grant g;
    memset(&g, 0, sizeof(g));
    char m[400];
    node_member *mem = node_member_by_org(e, to);
    if (mem == NULL || mem->self) {
        snprintf(m, sizeof(m),
            mem == NULL ? "'%s' is not a member of the network (see 'patto status')"
                        : "'%s' is this node's own org: it reads every scope it writes",
            to);
        reply_error(e, r->id, mem == NULL ? CODE_NOTFOUND : CODE_REFUSED, m);
        return;
    }
    snprintf(g.to, sizeof(g.to), "%s", to);
    bool purpose_ok = false;
    for (size_t i = 0; i < e->manifest.npurposes; i++)
        purpose_ok = purpose_ok
            || (e->manifest.purposes[i].id.len == strlen(purpose)
                && memcmp(e->manifest.purposes[i].id.p, purpose, strlen(purpose)) == 0);
    if (!purpose_ok) {
        snprintf(m, sizeof(m), "purpose '%s' is not in the manifest's purpose list", purpose);
        reply_error(e, r->id, CODE_REFUSED, m);
        return;
    }
    snprintf(g.purpose, sizeof(g.purpose), "%s", purpose);
    if ((g.basis = (uint8_t)proto_basis_parse(basis, strlen(basis))) == 0) {
        reply_error(e, r->id, CODE_USAGE,
            "basis must be public-task, legal-obligation, consent or explicit-consent");
        return;
    }
    if (!proto_access_parse(access, strlen(access), &g.access) || g.access == PROTO_ACCESS_NONE) {
        reply_error(e, r->id, CODE_USAGE, "access must be read or write");
        return;
    }
    if (until[0] != 0 && !until_ms(until, &g.until_ms)) {
        reply_error(e, r->id, CODE_USAGE, "until must be a date YYYY-MM-DD (a day that exists)");
        return;
    }
    if (evidence[0] != 0 && !proto_text_valid(evidence, strlen(evidence), sizeof(g.evidence) - 1)) {
        snprintf(m, sizeof(m),
            "evidence must be at most %zu bytes of text without control characters, and not "
            "only spaces",
            sizeof(g.evidence) - 1);
        reply_error(e, r->id, CODE_USAGE, m);
        return;
    }
    snprintf(g.operator_name, sizeof(g.operator_name), "%s", r->operator_name);
    memcpy(g.evidence, evidence, strlen(evidence) + 1); /* at most sizeof - 1: checked above */
    const char *list[64];
    size_t ns = grant_scopes(r, scopes, list, sizeof(list) / sizeof(list[0]));
    if (ns == 0)
        return;
    node_errmsg msg = { { 0 } };
    node_outs outs = { NULL, 0, 0 };
    node_err err = node_case_grant(e, &c, list, ns, &g, &outs, &msg);
    node__push(e, &outs);
    node_outs_free(&outs);
    if (err != NODE_OK) {
        reply_error(e, r->id, code_of(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE], end[32] = "none";
    proto_case_id_format(&c, id);
    if (g.until_ms != 0)
        rfc3339(g.until_ms, end);
    NODE_INFO("consent.grant",
        "case=%s to=%s scopes=%zu access=%s purpose=%s basis=%s until=%s operator=%s", id, to, ns,
        access, purpose, basis, end, r->operator_name);
    json_object *doc = json_object_new_object(), *sa = json_object_new_array();
    for (size_t i = 0; i < ns; i++)
        json_object_array_add(sa, json_object_new_string(list[i]));
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "to", json_object_new_string(to));
    json_object_object_add(doc, "scopes", sa);
    json_object_object_add(doc, "access", json_object_new_string(access));
    json_object_object_add(doc, "purpose", json_object_new_string(purpose));
    json_object_object_add(doc, "basis", json_object_new_string(basis));
    json_object_object_add(doc, "until", until[0] ? json_object_new_string(until) : NULL);
    reply_json(e, r->id, doc);
}

static void cmd_manifest_import(req *r)
{
    if (r->nargs < 2) {
        reply_error(r->e, r->id, CODE_USAGE, "manifest.import takes the manifest's bytes");
        return;
    }
    bool changed = false;
    node_errmsg msg = { { 0 } };
    node_err err = node_manifest_offer(r->e, r->args[1].p, r->args[1].len, &changed, &msg);
    if (err != NODE_OK) {
        reply_error(r->e, r->id, err == NODE_EINVAL ? CODE_REFUSED : CODE_INTERNAL, msg.text);
        return;
    }
    /* The one in force offered again is done already: automation may repeat its steps. */
    if (changed)
        node_peers_sync(r->e);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "version", json_object_new_int64((int64_t)r->e->manifest.version));
    json_object_object_add(doc, "members", json_object_new_int64((int64_t)r->e->nmembers));
    json_object_object_add(doc, "already_in_force", json_object_new_boolean(!changed));
    reply_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */
/* status, digest, schema                                                                    */

typedef struct status_ctx {
    node_engine *e;
    crdt_vv_entry *vv;
    size_t nvv;
    size_t cases, bodies;
    json_object *quarantined;
} status_ctx;

static bool quar_json_cb(const uint8_t origin[32], uint64_t seq, void *ctx)
{
    status_ctx *c = ctx;
    json_object *o = json_object_new_object();
    char hex[65];
    json_object_object_add(o, "org", json_object_new_string(org_of(c->e, origin, hex)));
    json_object_object_add(o, "origin", hexstr(origin, 32));
    json_object_object_add(o, "seq", json_object_new_int64((int64_t)seq));
    json_object_array_add(c->quarantined, o);
    return true;
}

static node_err status_cb(node_txn *t, void *ctx)
{
    status_ctx *c = ctx;
    node_err err;
    if ((err = ledger_vv_all(t, &c->vv, &c->nvv)) != NODE_OK
        || (err = ledger_count(t, NODE_DB_BODIES, NULL, &c->bodies)) != NODE_OK)
        return err;
    list_ctx l = { t, NULL, 0, 0, false };
    err = list_txn_cb(t, &l);
    for (size_t i = 0; i < l.n; i++)
        json_object_put(l.items[i].scopes);
    free(l.items);
    c->cases = l.n;
    if (err != NODE_OK)
        return err;
    return ledger_quarantine_list(t, &c->e->lim, quar_json_cb, c);
}

static json_object *vv_json(const crdt_vv_entry *vv, size_t n)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        proto_hex_encode(vv[i].origin.b, 32, hex);
        json_object_object_add(o, hex, json_object_new_int64((int64_t)vv[i].max));
    }
    return o;
}

static void cmd_status(req *r)
{
    node_engine *e = r->e;
    status_ctx c = { .e = e, .quarantined = json_object_new_array() };
    node_errmsg msg;
    node_err err = node_store_read(e->store, status_cb, &c, &msg);
    if (err != NODE_OK) {
        json_object_put(c.quarantined);
        free(c.vv);
        reply_error(e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    json_object *doc = json_object_new_object(), *versions = json_object_new_object();
    uint64_t now = node__now(e);
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
    json_object_object_add(versions, "schema", hexstr(e->schema_hash, 32));
    json_object_object_add(versions, "manifest",
        e->have_manifest ? json_object_new_int64((int64_t)e->manifest.version) : NULL);
    json_object_object_add(doc, "versions", versions);
    json_object *peers = json_object_new_array(), *members = json_object_new_array();
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        json_object *mo = json_object_new_object();
        json_object_object_add(mo, "org", json_object_new_string(m->org));
        json_object_object_add(mo, "role",
            json_object_new_string(proto_role_name(m->role) ? proto_role_name(m->role) : "?"));
        json_object_object_add(mo, "origin", hexstr(m->origin, 32));
        json_object_array_add(members, mo);
        if (m->self)
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
                if (memcmp(c.vv[j].origin.b, m->vv[k].origin.b, 32) == 0)
                    mine = c.vv[j].max;
            if (m->vv[k].max > mine)
                lag += m->vv[k].max - mine;
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
        headers += c.vv[i].max;
    json_object *counts = json_object_new_object();
    json_object_object_add(counts, "cases", json_object_new_int64((int64_t)c.cases));
    json_object_object_add(counts, "headers", json_object_new_int64((int64_t)headers));
    json_object_object_add(counts, "bodies", json_object_new_int64((int64_t)c.bodies));
    json_object_object_add(doc, "counts", counts);
    json_object_object_add(doc, "quarantined", c.quarantined);
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
    json_object_object_add(waiting, "bodies", json_object_new_int64((int64_t)e->wants.n));
    json_object_object_add(waiting, "headers", json_object_new_int64((int64_t)e->pending.n));
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
    reply_json(e, r->id, doc);
}

typedef struct digest_ctx {
    node_engine *e;
    node_txn *t;
    json_object *tags;
    crdt_vv_entry *vv;
    size_t nvv;
    node_err err;
} digest_ctx;

static bool digest_tag_cb(const uint8_t tag[32], void *ctx)
{
    digest_ctx *c = ctx;
    crdt_scope *s = NULL;
    if ((c->err = ledger_state_get(c->t, tag, &c->e->lim, &s)) != NODE_OK)
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
    json_object_object_add(c->tags, hex, hexstr(d, 32));
    return true;
}

static node_err digest_cb(node_txn *t, void *ctx)
{
    digest_ctx *c = ctx;
    c->t = t;
    node_err err = ledger_vv_all(t, &c->vv, &c->nvv);
    if (err == NODE_OK)
        err = ledger_key_tags(t, digest_tag_cb, c);
    return err != NODE_OK ? err : c->err;
}

static void cmd_digest(req *r)
{
    digest_ctx c = { .e = r->e, .tags = json_object_new_object() };
    node_errmsg msg;
    node_err err = node_store_read(r->e->store, digest_cb, &c, &msg);
    if (err != NODE_OK) {
        json_object_put(c.tags);
        free(c.vv);
        reply_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "vv", vv_json(c.vv, c.nvv));
    json_object_object_add(doc, "tags", c.tags);
    free(c.vv);
    reply_json(r->e, r->id, doc);
}

static void cmd_schema(req *r)
{
    node_engine *e = r->e;
    json_object *doc = json_object_new_object(), *scopes = json_object_new_array();
    json_object_object_add(doc, "schema", json_object_new_string(e->schema->name));
    json_object_object_add(doc, "version", json_object_new_int64(e->schema->version));
    json_object_object_add(doc, "hash", hexstr(e->schema_hash, 32));
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
            json_object_array_add(fields, fo);
        }
        json_object_object_add(so, "fields", fields);
        json_object_array_add(scopes, so);
    }
    json_object_object_add(doc, "scopes", scopes);
    reply_json(e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */

void node_ctl_handle(node_engine *e, const uint8_t *data, size_t len)
{
    proto_ctl_request m;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_ctl_request_decode(data, len, &e->lim, &m, &diag);
    if (perr != PROTO_OK) {
        char msg[300];
        snprintf(
            msg, sizeof(msg), "bad control request: %s (%s)", proto_strerror(perr), diag.reason);
        NODE_WARN("ctl.reject", "reason=\"%s\"", msg);
        reply_error(e, 0, CODE_USAGE, msg);
        return;
    }
    req r = { e, m.id, m.args, m.nargs, "" };
    char cmd[65];
    size_t cl = m.command.len < 64 ? m.command.len : 64;
    memcpy(cmd, m.command.p, cl);
    cmd[cl] = 0;
    if (m.nargs < 1) {
        reply_error(e, m.id, CODE_USAGE, "the request names no operator (args[0])");
        goto out;
    }
    if (m.args[0].len > 0
        && (!arg(&r, 0, r.operator_name, sizeof(r.operator_name))
            || !proto_text_valid(r.operator_name, strlen(r.operator_name), NODE_OPERATOR_MAX))) {
        char msg[200];
        snprintf(msg, sizeof(msg),
            "the operator name must be 1-%d bytes of text without control characters, and not "
            "only spaces",
            NODE_OPERATOR_MAX);
        reply_error(e, m.id, CODE_REFUSED, msg);
        goto out;
    }
    if (r.operator_name[0] == 0)
        snprintf(r.operator_name, sizeof(r.operator_name), "%s", e->cfg.operator_name);
    bool writes = strncmp(cmd, "case.", 5) == 0 || strcmp(cmd, "consent.grant") == 0;
    bool reads_only = strcmp(cmd, "case.show") == 0 || strcmp(cmd, "case.list") == 0;
    if (writes && !reads_only && r.operator_name[0] == 0) {
        char msg[sizeof(e->dir) + 300];
        snprintf(msg, sizeof(msg),
            "no operator: give --operator NAME (or set PATTO_OPERATOR), or give this node a "
            "default: add 'operator = NAME' under [node] in %s/pattod.conf and restart pattod",
            e->dir);
        reply_error(e, m.id, CODE_USAGE, msg);
        goto out;
    }
    if (!e->have_manifest && strcmp(cmd, "manifest.import") != 0 && strcmp(cmd, "status") != 0
        && strcmp(cmd, "schema") != 0 && strcmp(cmd, "digest") != 0) {
        reply_error(e, m.id, CODE_REFUSED,
            "this node has no network manifest yet: import one with patto manifest import FILE");
        goto out;
    }
    if (strcmp(cmd, "status") == 0)
        cmd_status(&r);
    else if (strcmp(cmd, "digest") == 0)
        cmd_digest(&r);
    else if (strcmp(cmd, "schema") == 0)
        cmd_schema(&r);
    else if (strcmp(cmd, "case.new") == 0)
        cmd_case_write(&r, true, false);
    else if (strcmp(cmd, "case.set") == 0)
        cmd_case_write(&r, false, false);
    else if (strcmp(cmd, "case.unset") == 0)
        cmd_case_write(&r, false, true);
    else if (strcmp(cmd, "case.show") == 0)
        cmd_case_show(&r);
    else if (strcmp(cmd, "case.list") == 0)
        cmd_case_list(&r);
    else if (strcmp(cmd, "consent.grant") == 0)
        cmd_consent_grant(&r);
    else if (strcmp(cmd, "manifest.import") == 0)
        cmd_manifest_import(&r);
    else {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown command '%s'", cmd);
        reply_error(e, m.id, CODE_USAGE, msg);
    }
out:
    proto_ctl_request_fini(&m);
}
