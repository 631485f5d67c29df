/*
 * The control socket's commands (node/CONTROL.md): the dispatch of a request, and the commands
 * that write (case.new/set/unset, consent.grant/revoke/withdraw/drop, manifest.import) and
 * store.compact. May call: ctlread.c,
 * ctlreq.c, write.c, sync.c (push), link.c (dial), rebuild.c (retired keys), state.c.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EDITS_MAX 256

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                   */

/* A write, durable when it returns, then pushed to the peers. */
static node_err write_and_push(node_engine *e, const proto_case_id *c,
    const proto_case_nonce *nonce, const node_edit *edits, size_t n, node_errmsg *msg)
{
    node_outs outs = { NULL, 0, 0 };
    node_err err = node__case_write(e, c, nonce, edits, n, &outs, msg);
    node__push(e, &outs);
    node__outs_free(&outs);
    return err;
}

static void cmd_case_write(req *r, bool create, bool unset)
{
    size_t first = create ? 1 : 2;
    proto_case_id c;
    proto_case_nonce nonce;
    if (!create && !node__ctl_case(r, &c))
        return;
    if (create
        && proto_case_id_new(r->e->cfg.org, strlen(r->e->cfg.org), NULL, &c, &nonce) != PROTO_OK) {
        node__ctl_error(r->e, r->id, CODE_INTERNAL, "cannot draw a random case id");
        return;
    }
    size_t n = r->nargs > first ? r->nargs - first : 0;
    char all[4] = "";
    bool every = unset && n == 2 && node__ctl_arg(r, first + 1, all, sizeof all)
        && strcmp(all, "all") == 0;
    if (every)
        n = 1;
    if ((!create && n == 0) || n > EDITS_MAX || (unset && n != 1)) {
        node__ctl_error(r->e, r->id, CODE_USAGE,
            unset ? "unset takes one scope.field, and 'all' for a timeline"
                  : "give between 1 and 256 edits: scope.field=VALUE, +=VALUE, -=VALUE");
        return;
    }
    node_edit *edits = calloc(n ? n : 1, sizeof(*edits));
    if (edits == NULL) {
        node__ctl_error(r->e, r->id, CODE_INTERNAL, "out of memory");
        return;
    }
    node_errmsg msg = { { 0 } };
    node_err err = NODE_OK;
    for (size_t i = 0; i < n && err == NODE_OK; i++) {
        char text[16384 + 128];
        if (!node__ctl_arg(r, first + i, text, sizeof(text))) {
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
            const node_field *f = node_schema_field(r->e->schema, ed->scope, ed->field);
            if (f == NULL) {
                err = node__fail(&msg, NODE_EINVAL, "%s is not a field of the schema", text);
                break;
            }
            if (f->type == NODE_F_TIMELINE && !every) {
                /* (a usage error: the request lacks what it takes) */
                node__ctl_error(r->e, r->id, CODE_USAGE,
                    "this field is a timeline: unset removes every one of its events; give "
                    "--all to do that, or redact one event with patto case redact");
                free(edits);
                return;
            }
            ed->unset = true;
        } else {
            err = node__edit_parse(r->e, text, &edits[i], &msg);
        }
    }
    if (err == NODE_OK)
        err = write_and_push(r->e, &c, create ? &nonce : NULL, edits, n, &msg);
    free(edits);
    if (err != NODE_OK) {
        node__ctl_error(r->e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    NODE_INFO("case.write", "case=%s operator=\"%s\" user=\"%s\" edits=%zu created=%s", id,
        node__logq(r->operator_name), node__logq(r->unix_user), n, create ? "yes" : "no");
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    if (!create)
        json_object_object_add(doc, "edits", json_object_new_int64((int64_t)n));
    node__ctl_json(r->e, r->id, doc);
}

/* case.batch: args[1] a JSON document {"key_name": LABEL?, "items": [{"key": TEXT?, "case":
 * CASE_ID?, "edits": [EDIT, ...]}, ...]} (CONTROL.md); one durable commit for all. */
static const char batch_usage[]
    = "case.batch takes one JSON document: {\"key_name\": LABEL (with keys), \"items\": [{\"key\": "
      "TEXT or \"case\": CASE_ID or neither, \"edits\": [EDIT, ...]}, ...]}";

static const char *batch_state_name(node_batch_state s)
{
    switch (s) {
    case NODE_BATCH_CREATED:
        return "created";
    case NODE_BATCH_UPDATED:
        return "updated";
    case NODE_BATCH_EXISTS:
        return "exists";
    case NODE_BATCH_REFUSED:
        return "refused";
    case NODE_BATCH_PENDING:
    default:
        return "pending";
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Check one item of a batch and fill *it (edit texts borrowed from jit); false with m set. */
static bool batch_item(req *r, json_object *jit, const char *key_name, node_batch_item *it,
    const char **texts, char *m, size_t msize)
{
    json_object *jedits = NULL, *jkey = NULL, *jcase = NULL;
    if (!json_object_is_type(jit, json_type_object)
        || !json_object_object_get_ex(jit, "edits", &jedits)
        || !json_object_is_type(jedits, json_type_array)) {
        snprintf(m, msize, "an item is not an object with \"edits\": [EDIT, ...]");
        return false;
    }
    json_object_object_foreach(jit, k, v)
    {
        (void)v;
        if (strcmp(k, "edits") != 0 && strcmp(k, "key") != 0 && strcmp(k, "case") != 0) {
            snprintf(m, msize, "an item has an unknown member '%.64s'", k);
            return false;
        }
    }
    (void)json_object_object_get_ex(jit, "key", &jkey);
    (void)json_object_object_get_ex(jit, "case", &jcase);
    size_t n = json_object_array_length(jedits);
    for (size_t j = 0; j < n && j < NODE_BATCH_EDITS_MAX; j++) {
        json_object *x = json_object_array_get_idx(jedits, j);
        if (!json_object_is_type(x, json_type_string)) {
            snprintf(m, msize, "edit %zu of an item is not a string", j + 1);
            return false;
        }
        texts[j] = json_object_get_string(x);
    }
    it->edits = texts;
    it->n = n;
    if (jkey != NULL && jcase != NULL) {
        snprintf(m, msize, "an item has both \"key\" and \"case\"");
        return false;
    }
    if (jcase != NULL) {
        const char *t
            = json_object_is_type(jcase, json_type_string) ? json_object_get_string(jcase) : "";
        if (proto_case_id_parse(t, strlen(t), &it->c) != PROTO_OK) {
            snprintf(m, msize, "'%.64s' is not a case id", t);
            return false;
        }
        return true;
    }
    it->create = true;
    const char *org = r->e->cfg.org;
    if (jkey != NULL) {
        const char *t
            = json_object_is_type(jkey, json_type_string) ? json_object_get_string(jkey) : NULL;
        size_t tl = t != NULL ? (size_t)json_object_get_string_len(jkey) : 0;
        if (t == NULL || !proto_text_valid(t, tl, PROTO_TEXT_MAX)) {
            snprintf(m, msize, "an item's key must be 1-%d bytes of text", PROTO_TEXT_MAX);
            return false;
        }
        it->keyed = true;
        if (proto_import_nonce(
                r->e->me, key_name, strlen(key_name), (const uint8_t *)t, tl, &it->nonce)
                != PROTO_OK
            || proto_case_id_derive(org, strlen(org), &it->nonce, &it->c) != PROTO_OK) {
            snprintf(m, msize, "cannot derive a case id from a key");
            return false;
        }
        return true;
    }
    if (proto_case_id_new(org, strlen(org), NULL, &it->c, &it->nonce) != PROTO_OK) {
        snprintf(m, msize, "cannot draw a random case id");
        return false;
    }
    return true;
}

static void cmd_case_batch(req *r)
{
    node_engine *e = r->e;
    uint64_t t0 = mono_us();
    if (r->nargs != 2) {
        node__ctl_error(e, r->id, CODE_USAGE, batch_usage);
        return;
    }
    json_tokener *tok = json_tokener_new();
    json_object *doc = tok != NULL ? json_tokener_parse_ex(tok, (const char *)r->args[1].p,
                           (int)(r->args[1].len < INT32_MAX ? r->args[1].len : 0))
                                   : NULL;
    bool whole = tok != NULL && json_tokener_get_error(tok) == json_tokener_success
        && r->args[1].len < INT32_MAX && (size_t)json_tokener_get_parse_end(tok) == r->args[1].len;
    if (tok != NULL)
        json_tokener_free(tok);
    json_object *jitems = NULL, *jkn = NULL;
    if (doc == NULL || !whole || !json_object_is_type(doc, json_type_object)
        || !json_object_object_get_ex(doc, "items", &jitems)
        || !json_object_is_type(jitems, json_type_array)) {
        json_object_put(doc);
        node__ctl_error(e, r->id, CODE_USAGE, batch_usage);
        return;
    }
    char m[600] = "";
    const char *key_name = "";
    if (json_object_object_get_ex(doc, "key_name", &jkn)) {
        key_name = json_object_is_type(jkn, json_type_string) ? json_object_get_string(jkn) : "";
        if (!proto_text_valid(key_name, strlen(key_name), 255)) {
            json_object_put(doc);
            node__ctl_error(e, r->id, CODE_USAGE, "key_name must be 1-255 bytes of text");
            return;
        }
    }
    size_t n = json_object_array_length(jitems);
    if (n == 0 || n > NODE_BATCH_MAX) {
        snprintf(m, sizeof(m), "a batch holds between 1 and %d items", NODE_BATCH_MAX);
        json_object_put(doc);
        node__ctl_error(e, r->id, CODE_USAGE, m);
        return;
    }
    node_batch_item *items = calloc(n, sizeof(*items));
    const char **texts = calloc(n * NODE_BATCH_EDITS_MAX, sizeof(*texts));
    if (items == NULL || texts == NULL) {
        free(items);
        free(texts);
        json_object_put(doc);
        node__ctl_error(e, r->id, CODE_INTERNAL, "out of memory");
        return;
    }
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        json_object *jit = json_object_array_get_idx(jitems, i);
        json_object *jk = NULL;
        if (key_name[0] == 0 && json_object_is_type(jit, json_type_object)
            && json_object_object_get_ex(jit, "key", &jk)) {
            snprintf(m, sizeof(m), "item %zu has a key but the batch names no key_name", i);
            ok = false;
            break;
        }
        char im[400] = "";
        ok = batch_item(
            r, jit, key_name, &items[i], texts + i * NODE_BATCH_EDITS_MAX, im, sizeof(im));
        if (!ok)
            snprintf(m, sizeof(m), "item %zu: %s", i, im);
    }
    if (!ok) {
        free(items);
        free(texts);
        json_object_put(doc);
        node__ctl_error(e, r->id, CODE_USAGE, m);
        return;
    }
    node_errmsg msg = { { 0 } };
    node_outs outs = { NULL, 0, 0 };
    uint64_t t1 = mono_us();
    json_object *jdry = NULL;
    bool dry = json_object_object_get_ex(doc, "dry_run", &jdry) && json_object_get_boolean(jdry);
    node_err err = node__case_batch(e, items, n, dry, &outs, &msg);
    uint64_t t2 = mono_us();
    size_t deltas = outs.n;
    node__push_batch(e, &outs);
    node__outs_free(&outs);
    if (err != NODE_OK) {
        free(items);
        free(texts);
        json_object_put(doc);
        node__ctl_error(e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    size_t count[NODE_BATCH_REFUSED + 1] = { 0 };
    json_object *ans = json_object_new_object(), *res = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        node_batch_item *it = &items[i];
        count[it->state]++;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "index", json_object_new_int64((int64_t)i));
        json_object_object_add(o, "state",
            json_object_new_string(
                dry && it->state == NODE_BATCH_PENDING ? "valid" : batch_state_name(it->state)));
        if (it->state == NODE_BATCH_REFUSED) {
            json_object_object_add(o, "code", json_object_new_int(node__ctl_code(it->err)));
            json_object_object_add(o, "reason", json_object_new_string(it->reason));
        } else if (!dry) {
            char id[PROTO_CASE_ID_TEXT_SIZE];
            proto_case_id_format(&it->c, id);
            json_object_object_add(o, "id", json_object_new_string(id));
        }
        json_object_array_add(res, o);
    }
    uint64_t t3 = mono_us();
    NODE_INFO("case.batch",
        "operator=\"%s\" user=\"%s\" items=%zu created=%zu updated=%zu exists=%zu refused=%zu "
        "deltas=%zu write_ms=%.1f dry_run=%s",
        node__logq(r->operator_name), node__logq(r->unix_user), n, count[NODE_BATCH_CREATED],
        count[NODE_BATCH_UPDATED], count[NODE_BATCH_EXISTS], count[NODE_BATCH_REFUSED], deltas,
        (double)(t2 - t1) / 1000.0, dry ? "yes" : "no");
    json_object_object_add(ans, "dry_run", json_object_new_boolean(dry));
    json_object_object_add(ans, "results", res);
    json_object_object_add(
        ans, "created", json_object_new_int64((int64_t)count[NODE_BATCH_CREATED]));
    json_object_object_add(
        ans, "updated", json_object_new_int64((int64_t)count[NODE_BATCH_UPDATED]));
    json_object_object_add(ans, "exists", json_object_new_int64((int64_t)count[NODE_BATCH_EXISTS]));
    json_object_object_add(
        ans, "refused", json_object_new_int64((int64_t)count[NODE_BATCH_REFUSED]));
    json_object_object_add(ans, "deltas", json_object_new_int64((int64_t)deltas));
    json_object_object_add(ans, "write_us", json_object_new_int64((int64_t)(t2 - t1)));
    json_object_object_add(ans, "total_us", json_object_new_int64((int64_t)(t3 - t0)));
    free(items);
    free(texts);
    json_object_put(doc);
    node__ctl_json(e, r->id, ans);
}

/* case.redact: case id, scope.field (a timeline), event id (as case.show gives it). */
static void cmd_case_redact(req *r)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return;
    char field[PROTO_SCOPE_NAME_MAX + CRDT_FIELD_MAX + 2], event[NODE_EVENT_ID_SIZE + 1];
    node_edit *ed = calloc(1, sizeof(*ed));
    if (ed == NULL) {
        node__ctl_error(r->e, r->id, CODE_INTERNAL, "out of memory");
        return;
    }
    const char *dot = NULL;
    const node_field *f = NULL;
    if (r->nargs != 4 || !node__ctl_arg(r, 2, field, sizeof field)
        || !node__ctl_arg(r, 3, event, sizeof event) || (dot = strchr(field, '.')) == NULL
        || dot == field || (size_t)(dot - field) > PROTO_SCOPE_NAME_MAX) {
        free(ed);
        node__ctl_error(r->e, r->id, CODE_USAGE, "case.redact takes: case, scope.field, event id");
        return;
    }
    memcpy(ed->scope, field, (size_t)(dot - field));
    snprintf(ed->field, sizeof ed->field, "%s", dot + 1);
    char m[300];
    int code = 0;
    if ((f = node_schema_field(r->e->schema, ed->scope, ed->field)) == NULL) {
        snprintf(m, sizeof m, "%s is not a field of the schema", field);
        code = CODE_REFUSED;
    } else if (f->type != NODE_F_TIMELINE) {
        snprintf(m, sizeof m, "%s is not a timeline: only a timeline's events are redacted", field);
        code = CODE_REFUSED;
    } else if (!node__event_id_parse(event, ed)) {
        snprintf(m, sizeof m,
            "'%s' is not an event id: case show gives each event's, like 3fa94c1be20d.17", event);
        code = CODE_USAGE;
    }
    if (code != 0) {
        free(ed);
        node__ctl_error(r->e, r->id, code, m);
        return;
    }
    node_errmsg msg = { { 0 } };
    node_err err = write_and_push(r->e, &c, NULL, ed, 1, &msg);
    free(ed);
    if (err != NODE_OK) {
        node__ctl_error(r->e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    NODE_INFO("case.redact", "case=%s field=%s event=%s operator=\"%s\" user=\"%s\"", id, field,
        event, node__logq(r->operator_name), node__logq(r->unix_user));
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "field", json_object_new_string(field));
    json_object_object_add(doc, "event", json_object_new_string(event));
    node__ctl_json(r->e, r->id, doc);
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
            node__ctl_error(r->e, r->id, CODE_REFUSED, m);
            return 0;
        }
        for (size_t i = 0; i < ns; i++)
            if (strcmp(list[i], s) == 0) {
                snprintf(m, sizeof(m), "scope '%s' is named twice", s);
                node__ctl_error(r->e, r->id, CODE_USAGE, m);
                return 0;
            }
        if (ns == max) {
            snprintf(m, sizeof(m), "at most %zu scopes in one grant", max);
            node__ctl_error(r->e, r->id, CODE_USAGE, m);
            return 0;
        }
        list[ns++] = s;
    }
    if (ns == 0)
        node__ctl_error(r->e, r->id, CODE_USAGE, "give at least one scope to grant");
    return ns;
}

static void cmd_consent_grant(req *r)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return;
    char to[PROTO_ORG_MAX + 1], scopes[512], purpose[PROTO_ORG_MAX + 1], basis[32], access[16],
        until[16], evidence[PROTO_TEXT_MAX + 1];
    if (!node__ctl_arg(r, 2, to, sizeof(to)) || !node__ctl_arg(r, 3, scopes, sizeof(scopes))
        || !node__ctl_arg(r, 4, purpose, sizeof(purpose))
        || !node__ctl_arg(r, 5, basis, sizeof(basis))
        || !node__ctl_arg(r, 6, access, sizeof(access))
        || !node__ctl_arg(r, 7, until, sizeof(until))
        || !node__ctl_arg(r, 8, evidence, sizeof(evidence))) {
        node__ctl_error(r->e, r->id, CODE_USAGE,
            "consent.grant takes: case, org, scopes, purpose, basis, access, until, "
            "evidence");
        return;
    }
    node_engine *e = r->e;
    node_grant g;
    memset(&g, 0, sizeof(g));
    char m[400];
    node_member *mem = node__member_by_org(e, to);
    if (mem == NULL || !mem->active || mem->self) {
        snprintf(m, sizeof(m),
            mem == NULL ? "'%s' is not a member of the network (see 'patto status')"
                        : "'%s' is this node's own org: it reads every scope it writes",
            to);
        node__ctl_error(e, r->id, mem == NULL ? CODE_NOTFOUND : CODE_REFUSED, m);
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
        node__ctl_error(e, r->id, CODE_REFUSED, m);
        return;
    }
    snprintf(g.purpose, sizeof(g.purpose), "%s", purpose);
    if ((g.basis = (uint8_t)proto_basis_parse(basis, strlen(basis))) == 0) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "basis must be public-task, legal-obligation, consent or explicit-consent");
        return;
    }
    if (!proto_access_parse(access, strlen(access), &g.access) || g.access == PROTO_ACCESS_NONE) {
        node__ctl_error(e, r->id, CODE_USAGE, "access must be read or write");
        return;
    }
    if (until[0] != 0 && !until_ms(until, &g.until_ms)) {
        node__ctl_error(
            e, r->id, CODE_USAGE, "until must be a date YYYY-MM-DD (a day that exists)");
        return;
    }
    if (until[0] != 0 && g.until_ms < node__now(e)) {
        /* Only the operator's input is judged by this node's clock here: the grant entry
         * carries its end, and every holder judges writes by their signed clocks. */
        snprintf(m, sizeof(m),
            "until %s has passed (the day ended in Europe/Rome): the access would end before "
            "it starts; give today or a later day",
            until);
        node__ctl_error(e, r->id, CODE_REFUSED, m);
        return;
    }
    if (evidence[0] != 0 && !proto_text_valid(evidence, strlen(evidence), sizeof(g.evidence) - 1)) {
        snprintf(m, sizeof(m),
            "evidence must be at most %zu bytes of text without control characters, and not "
            "only spaces",
            sizeof(g.evidence) - 1);
        node__ctl_error(e, r->id, CODE_USAGE, m);
        return;
    }
    snprintf(g.operator_name, sizeof(g.operator_name), "%s", r->operator_name);
    snprintf(g.unix_user, sizeof(g.unix_user), "%s", r->unix_user);
    if (r->nargs > 9
        && (!node__ctl_arg(r, 9, g.provision, sizeof(g.provision))
            || (g.provision[0] != 0
                && !proto_text_valid(g.provision, strlen(g.provision), sizeof(g.provision) - 1)))) {
        snprintf(m, sizeof(m),
            "provision must be at most %zu bytes of text without control characters",
            sizeof(g.provision) - 1);
        node__ctl_error(e, r->id, CODE_USAGE, m);
        return;
    }
    if (g.provision[0] == 0
        && (g.basis == PROTO_BASIS_PUBLIC_TASK || g.basis == PROTO_BASIS_LEGAL_OBLIGATION)) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "a grant on public-task or legal-obligation names the legal provision it rests on "
            "(--provision TEXT, e.g. \"D.Lgs. 286/1998 art. 4-bis\")");
        return;
    }
    memcpy(g.evidence, evidence, strlen(evidence) + 1); /* at most sizeof - 1: checked above */
    const char *list[64];
    size_t ns = grant_scopes(r, scopes, list, sizeof(list) / sizeof(list[0]));
    if (ns == 0)
        return;
    node_errmsg msg = { { 0 } };
    node_outs outs = { NULL, 0, 0 };
    node_err err = node__case_grant(e, &c, list, ns, &g, &outs, &msg);
    node__push(e, &outs);
    node__outs_free(&outs);
    if (err != NODE_OK) {
        node__ctl_error(e, r->id, node__ctl_code(err), msg.text);
        return;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE], end[32] = "none";
    proto_case_id_format(&c, id);
    if (g.until_ms != 0)
        node__rfc3339(g.until_ms, end);
    NODE_INFO("consent.grant",
        "case=%s to=%s scopes=%zu access=%s purpose=%s basis=%s until=%s operator=\"%s\" "
        "user=\"%s\"",
        id, to, ns, access, purpose, basis, end, node__logq(r->operator_name),
        node__logq(r->unix_user));
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
    node__ctl_json(e, r->id, doc);
}

/* consent.revoke: case, org, scopes ("" for every scope org holds), access left ("none" to
 * revoke, "read" to downgrade), note. */
static void cmd_consent_revoke(req *r)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return;
    node_engine *e = r->e;
    char scopes[512], access[16];
    node_revoke *rv = calloc(1, sizeof(*rv));
    if (rv == NULL) {
        node__ctl_error(e, r->id, CODE_INTERNAL, "out of memory");
        return;
    }
    if (!node__ctl_arg(r, 2, rv->from, sizeof(rv->from))
        || !node__ctl_arg(r, 3, scopes, sizeof(scopes))
        || !node__ctl_arg(r, 4, access, sizeof(access))
        || !node__ctl_arg(r, 5, rv->note, sizeof(rv->note))) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "consent.revoke takes: case, org, scopes (empty: all), access left (none or read), "
            "reason (at most 255 bytes)");
        goto out;
    }
    char m[400];
    if (!proto_access_parse(access, strlen(access), &rv->access)
        || rv->access == PROTO_ACCESS_WRITE) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "the access left must be none (revoke) or read (downgrade a writer)");
        goto out;
    }
    if (node__member_by_org(e, rv->from) == NULL || strcmp(rv->from, e->cfg.org) == 0) {
        snprintf(m, sizeof(m),
            strcmp(rv->from, e->cfg.org) == 0
                ? "'%s' is this node's own org: the owner's access cannot be revoked"
                : "'%s' is not a member of the network (see 'patto status')",
            rv->from);
        node__ctl_error(e, r->id, CODE_NOTFOUND, m);
        goto out;
    }
    if (rv->note[0] != 0 && !proto_text_valid(rv->note, strlen(rv->note), sizeof(rv->note) - 1)) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "the reason must be text without control characters, and not only spaces");
        goto out;
    }
    rv->reason = PROTO_NARROW_REVOKED;
    snprintf(rv->operator_name, sizeof(rv->operator_name), "%s", r->operator_name);
    snprintf(rv->unix_user, sizeof(rv->unix_user), "%s", r->unix_user);
    const char *list[NODE_REVOKE_SCOPES_MAX];
    size_t ns = 0;
    if (scopes[0] != 0 && (ns = grant_scopes(r, scopes, list, NODE_REVOKE_SCOPES_MAX)) == 0)
        goto out;
    node_errmsg msg = { { 0 } };
    node_outs outs = { NULL, 0, 0 };
    node_err err = node__case_revoke(e, &c, list, ns, rv, &outs, &msg);
    node__push(e, &outs);
    node__outs_free(&outs);
    if (err != NODE_OK) {
        node__ctl_error(e, r->id, node__ctl_code(err), msg.text);
        goto out;
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    json_object *doc = json_object_new_object(), *sa = json_object_new_array();
    for (size_t i = 0; i < rv->ndone; i++) {
        NODE_INFO("consent.revoke",
            "case=%s from=%s scope=%s access=%s entry=%" PRIu64 " new_epoch=%" PRIu64
            " operator=\"%s\" user=\"%s\"",
            id, rv->from, rv->done[i].scope, access, rv->done[i].entry, rv->done[i].epoch,
            node__logq(r->operator_name), node__logq(r->unix_user));
        json_object *o = json_object_new_object();
        json_object_object_add(o, "scope", json_object_new_string(rv->done[i].scope));
        json_object_object_add(o, "entry", json_object_new_int64((int64_t)rv->done[i].entry));
        json_object_object_add(o, "new_epoch",
            rv->done[i].epoch ? json_object_new_int64((int64_t)rv->done[i].epoch) : NULL);
        json_object_array_add(sa, o);
    }
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "from", json_object_new_string(rv->from));
    json_object_object_add(doc, "access", json_object_new_string(access));
    json_object_object_add(doc, "scopes", sa);
    node__ctl_json(e, r->id, doc);
out:
    free(rv);
}

/* consent.withdraw (case, scopes, grantee, evidence, owner or empty) and consent.drop (case,
 * scopes): a note to the case's owner, or at the owner's own desk a withdrawal applied at once
 * (a revocation, reason withdrawn). */
static void cmd_consent_note(req *r, bool drop)
{
    proto_case_id c;
    if (!node__ctl_case(r, &c))
        return;
    node_engine *e = r->e;
    char scopes[512], given_owner[PROTO_ORG_MAX + 1] = "", m[600];
    proto_note *n = calloc(1, sizeof(*n));
    node_revoke *rv = calloc(1, sizeof(*rv));
    if (n == NULL || rv == NULL) {
        node__ctl_error(e, r->id, CODE_INTERNAL, "out of memory");
        goto out;
    }
    if (!node__ctl_arg(r, 2, scopes, sizeof(scopes))
        || (!drop
            && (!node__ctl_arg(r, 3, n->grantee, sizeof(n->grantee))
                || !node__ctl_arg(r, 4, n->evidence, 256)
                || !node__ctl_arg(r, 5, given_owner, sizeof(given_owner))))) {
        node__ctl_error(e, r->id, CODE_USAGE,
            drop ? "consent.drop takes: case, scopes"
                 : "consent.withdraw takes: case, scopes, org, evidence (at most 255 bytes), "
                   "owner org or empty");
        goto out;
    }
    n->kind = drop ? PROTO_NOTE_DROP : PROTO_NOTE_WITHDRAWAL;
    n->case_id = c;
    if (drop)
        snprintf(n->grantee, sizeof(n->grantee), "%s", e->cfg.org);
    if (!drop
        && (n->evidence[0] == 0 || !proto_text_valid(n->evidence, strlen(n->evidence), 255))) {
        node__ctl_error(e, r->id, CODE_USAGE,
            "a withdrawal needs its evidence: a reference to the signed form or protocol number "
            "(text, at most 255 bytes)");
        goto out;
    }
    if (!drop && (node__member_by_org(e, n->grantee) == NULL)) {
        snprintf(
            m, sizeof(m), "'%s' is not a member of the network (see 'patto status')", n->grantee);
        node__ctl_error(e, r->id, CODE_NOTFOUND, m);
        goto out;
    }
    const char *list[PROTO_NOTE_SCOPES_MAX];
    size_t ns = grant_scopes(r, scopes, list, PROTO_NOTE_SCOPES_MAX);
    if (ns == 0)
        goto out;
    for (size_t i = 0; i < ns; i++)
        snprintf(n->scopes[i], sizeof(n->scopes[i]), "%s", list[i]);
    n->nscopes = ns;
    snprintf(n->operator_name, sizeof(n->operator_name), "%s", r->operator_name);
    snprintf(n->unix_user, sizeof(n->unix_user), "%s", r->unix_user);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&c, id);
    node_err err = node__case_owner(e, &c, n->owner_org);
    if (err == NODE_ENOTFOUND && given_owner[0] != 0) {
        snprintf(n->owner_org, sizeof(n->owner_org), "%s", given_owner);
    } else if (err == NODE_ENOTFOUND) {
        snprintf(m, sizeof(m),
            drop ? "this node holds no grant on case %s: nothing to drop"
                 : "this node holds no scope of case %s, so it does not know its owner: give "
                   "--owner ORG (the org that opened the case; the beneficiary's copy names it)",
            id);
        node__ctl_error(e, r->id, CODE_NOTFOUND, m);
        goto out;
    } else if (err != NODE_OK) {
        node__ctl_error(e, r->id, CODE_INTERNAL, node_strerror(err));
        goto out;
    } else if (given_owner[0] != 0 && strcmp(given_owner, n->owner_org) != 0) {
        snprintf(m, sizeof(m), "case %s is owned by %s, not %s", id, n->owner_org, given_owner);
        node__ctl_error(e, r->id, CODE_REFUSED, m);
        goto out;
    }
    node_errmsg msg = { { 0 } };
    node_outs outs = { NULL, 0, 0 };
    bool here = strcmp(n->owner_org, e->cfg.org) == 0;
    if (here && drop) {
        node__ctl_error(e, r->id, CODE_REFUSED,
            "this node owns the case: it holds no grant to drop (use patto consent revoke)");
        goto out;
    }
    if (here) {
        /* At the owner's desk a withdrawal is applied at once, whatever the basis. */
        snprintf(rv->from, sizeof(rv->from), "%s", n->grantee);
        rv->access = PROTO_ACCESS_NONE;
        rv->reason = PROTO_NARROW_WITHDRAWN;
        snprintf(rv->operator_name, sizeof(rv->operator_name), "%s", r->operator_name);
        snprintf(rv->unix_user, sizeof(rv->unix_user), "%s", r->unix_user);
        snprintf(rv->note, sizeof(rv->note), "consent withdrawn, evidence %.200s", n->evidence);
        err = node__case_revoke(e, &c, list, ns, rv, &outs, &msg);
    } else {
        err = node__case_note(e, n, &outs, &msg);
    }
    node__push(e, &outs);
    node__outs_free(&outs);
    if (err != NODE_OK) {
        node__ctl_error(e, r->id, node__ctl_code(err), msg.text);
        goto out;
    }
    NODE_INFO(drop ? "consent.drop" : "consent.withdraw",
        "case=%s owner=%s grantee=%s scopes=%zu applied=%s operator=\"%s\" user=\"%s\"", id,
        n->owner_org, n->grantee, ns, here ? "yes" : "no", node__logq(r->operator_name),
        node__logq(r->unix_user));
    json_object *doc = json_object_new_object(), *sa = json_object_new_array();
    for (size_t i = 0; i < ns; i++)
        json_object_array_add(sa, json_object_new_string(list[i]));
    json_object_object_add(doc, "id", json_object_new_string(id));
    json_object_object_add(doc, "owner", json_object_new_string(n->owner_org));
    json_object_object_add(doc, "grantee", json_object_new_string(n->grantee));
    json_object_object_add(doc, "scopes", sa);
    json_object_object_add(
        doc, "state", json_object_new_string(here ? "applied" : "sent to the owner"));
    node__ctl_json(e, r->id, doc);
out:
    free(rv);
    free(n);
}

static void cmd_manifest_import(req *r)
{
    if (r->nargs < 2) {
        node__ctl_error(r->e, r->id, CODE_USAGE, "manifest.import takes the manifest's bytes");
        return;
    }
    bool changed = false;
    node_errmsg msg = { { 0 } };
    node_err err = node__manifest_offer(r->e, r->args[1].p, r->args[1].len, &changed, &msg);
    if (err != NODE_OK) {
        node__ctl_error(r->e, r->id, err == NODE_EINVAL ? CODE_REFUSED : CODE_INTERNAL, msg.text);
        return;
    }
    /* The one in force offered again is done already: automation may repeat its steps. */
    if (changed) {
        (void)node__retired_voids(r->e); /* logged; tried again at the next start */
        node__peers_sync(r->e);
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "version", json_object_new_int64((int64_t)r->e->manifest.version));
    json_object_object_add(doc, "members", json_object_new_int64((int64_t)r->e->nmembers));
    json_object_object_add(doc, "already_in_force", json_object_new_boolean(!changed));
    node__ctl_json(r->e, r->id, doc);
}

/* store.compact: the store file rewritten without its free pages (node.h, node_store_compact),
 * here on the loop thread: nothing else runs until it is done. */
static void cmd_store_compact(req *r)
{
    node_compact c;
    node_errmsg msg = { { 0 } };
    node_err err = node_store_compact(r->e->store, &c, &msg);
    if (err != NODE_OK) {
        NODE_ERROR("store.compact", "trigger=control operator=\"%s\" user=\"%s\" error=\"%s\"",
            node__logq(r->operator_name), node__logq(r->unix_user), node__logq(msg.text));
        node__ctl_error(r->e, r->id, CODE_INTERNAL, msg.text);
        return;
    }
    NODE_INFO("store.compact",
        "trigger=control operator=\"%s\" user=\"%s\" pause_ms=%llu bytes_before=%llu "
        "bytes_after=%llu disk_needed_bytes=%llu",
        node__logq(r->operator_name), node__logq(r->unix_user), (unsigned long long)c.pause_ms,
        (unsigned long long)c.bytes_before, (unsigned long long)c.bytes_after,
        (unsigned long long)c.disk_needed);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "pause_ms", json_object_new_int64((int64_t)c.pause_ms));
    json_object_object_add(doc, "bytes_before", json_object_new_int64((int64_t)c.bytes_before));
    json_object_object_add(doc, "bytes_after", json_object_new_int64((int64_t)c.bytes_after));
    json_object_object_add(doc, "disk_needed_bytes", json_object_new_int64((int64_t)c.disk_needed));
    node__ctl_json(r->e, r->id, doc);
}

/* ---------------------------------------------------------------------------------------- */

void node__ctl_handle(node_engine *e, const uint8_t *data, size_t len)
{
    proto_ctl_request m;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_ctl_request_decode(data, len, &e->lim, &m, &diag);
    if (perr != PROTO_OK) {
        char msg[300];
        snprintf(
            msg, sizeof(msg), "bad control request: %s (%s)", proto_strerror(perr), diag.reason);
        NODE_WARN("ctl.reject", "reason=\"%s\"", msg);
        node__ctl_error(e, 0, CODE_USAGE, msg);
        return;
    }
    req r = { e, m.id, m.args, m.nargs, "", "" };
    if (e->host.ctl_user != NULL)
        e->host.ctl_user(e->host.ctx, r.unix_user, sizeof(r.unix_user));
    char cmd[65];
    size_t cl = m.command.len < 64 ? m.command.len : 64;
    memcpy(cmd, m.command.p, cl);
    cmd[cl] = 0;
    if (m.nargs < 1) {
        node__ctl_error(e, m.id, CODE_USAGE, "the request names no operator (args[0])");
        goto out;
    }
    if (m.args[0].len > 0
        && (!node__ctl_arg(&r, 0, r.operator_name, sizeof(r.operator_name))
            || !proto_text_valid(r.operator_name, strlen(r.operator_name), NODE_OPERATOR_MAX))) {
        char msg[200];
        snprintf(msg, sizeof(msg),
            "the operator name must be 1-%d bytes of text without control characters, and not "
            "only spaces",
            NODE_OPERATOR_MAX);
        node__ctl_error(e, m.id, CODE_REFUSED, msg);
        goto out;
    }
    if (r.operator_name[0] == 0)
        snprintf(r.operator_name, sizeof(r.operator_name), "%s", e->cfg.operator_name);
    bool writes = strncmp(cmd, "case.", 5) == 0 || strcmp(cmd, "consent.grant") == 0
        || strcmp(cmd, "consent.revoke") == 0 || strcmp(cmd, "consent.withdraw") == 0
        || strcmp(cmd, "consent.drop") == 0;
    bool reads_only = strcmp(cmd, "case.show") == 0 || strcmp(cmd, "case.list") == 0
        || strcmp(cmd, "case.log") == 0 || strcmp(cmd, "case.find") == 0;
    if (writes && !reads_only && r.operator_name[0] == 0) {
        char msg[sizeof(e->dir) + 300];
        snprintf(msg, sizeof(msg),
            "no operator: give --operator NAME (or set PATTO_OPERATOR), or give this node a "
            "default: add 'operator = NAME' under [node] in %s/pattod.conf and restart pattod",
            e->dir);
        node__ctl_error(e, m.id, CODE_USAGE, msg);
        goto out;
    }
    if (!e->have_manifest && strcmp(cmd, "manifest.import") != 0 && strcmp(cmd, "status") != 0
        && strcmp(cmd, "schema") != 0 && strcmp(cmd, "digest") != 0) {
        node__ctl_error(e, m.id, CODE_REFUSED,
            "this node has no network manifest yet: import one with patto manifest import FILE");
        goto out;
    }
    if (strcmp(cmd, "status") == 0)
        node__cmd_status(&r);
    else if (strcmp(cmd, "digest") == 0)
        node__cmd_digest(&r);
    else if (strcmp(cmd, "schema") == 0)
        node__cmd_schema(&r);
    else if (strcmp(cmd, "case.new") == 0)
        cmd_case_write(&r, true, false);
    else if (strcmp(cmd, "case.set") == 0)
        cmd_case_write(&r, false, false);
    else if (strcmp(cmd, "case.unset") == 0)
        cmd_case_write(&r, false, true);
    else if (strcmp(cmd, "case.log") == 0)
        node__cmd_case_log(&r);
    else if (strcmp(cmd, "case.redact") == 0)
        cmd_case_redact(&r);
    else if (strcmp(cmd, "case.batch") == 0)
        cmd_case_batch(&r);
    else if (strcmp(cmd, "case.show") == 0)
        node__cmd_case_show(&r);
    else if (strcmp(cmd, "consent.list") == 0)
        node__cmd_consent_list(&r);
    else if (strcmp(cmd, "case.list") == 0)
        node__cmd_case_list(&r);
    else if (strcmp(cmd, "case.find") == 0)
        node__cmd_case_find(&r);
    else if (strcmp(cmd, "consent.grant") == 0)
        cmd_consent_grant(&r);
    else if (strcmp(cmd, "consent.revoke") == 0)
        cmd_consent_revoke(&r);
    else if (strcmp(cmd, "consent.withdraw") == 0)
        cmd_consent_note(&r, false);
    else if (strcmp(cmd, "consent.drop") == 0)
        cmd_consent_note(&r, true);
    else if (strcmp(cmd, "manifest.import") == 0)
        cmd_manifest_import(&r);
    else if (strcmp(cmd, "store.compact") == 0)
        cmd_store_compact(&r);
    else if (strcmp(cmd, "inbox") == 0)
        node__cmd_inbox(&r);
    else if (strcmp(cmd, "inbox.ack") == 0)
        node__cmd_inbox_ack(&r);
    else {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown command '%s'", cmd);
        node__ctl_error(e, m.id, CODE_USAGE, msg);
    }
out:
    proto_ctl_request_fini(&m);
}
