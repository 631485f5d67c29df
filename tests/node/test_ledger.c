/* node.ledger: bodies and applied marks are found by header id through the header's place in
 * its origin's log, and a body without a stored header has no place; a new store is marked with
 * the layout of protocol version 5 and a store of an earlier one is refused; key records keep their
 * owner org, nonce and confirmation, and only a confirmed key becomes a scope's current one;
 * access-log entries round-trip and their contiguous run is counted. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ledger.h"
#include "tmpdir.h"

#include <string.h>

#define MIB (UINT64_C(1) << 20)
#define N 300

typedef struct fixture {
    char *dir;
    node_store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->dir = tmpdir_new()) == NULL)
        return -1;
    node_log_set_level(NODE_LOG_WARN);
    node_errmsg msg;
    if (node_store_open(f->dir, MIB, 64 * MIB, &f->st, &msg) != NODE_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    node_store_close(f->st);
    tmpdir_free(f->dir);
    free(f);
    return 0;
}

/* Header i: id = i-th synthetic hash, at (origin o, seq i + 1), o alternating. */
static void id_of(size_t i, uint8_t id[32])
{
    for (int k = 0; k < 32; k++)
        id[k] = (uint8_t)(i * 131 + (size_t)k * 7 + (i >> 3));
    id[0] = (uint8_t)i;
    id[1] = (uint8_t)(i >> 8);
}

static void place_of(size_t i, uint8_t place[40])
{
    memset(place, (int)(0x10 + i % 2), 32);
    node__ledger_be64(place + 32, (uint64_t)i + 1);
}

static node_err layout_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    return node__ledger_layout(t);
}

/* A store of protocol version 1 to 4 (its layout mark says 2 to 5) is refused; a new one is
 * marked and then accepted at every start. */
static node_err old_store_cb(node_txn *t, void *ctx)
{
    uint8_t layout = *(const uint8_t *)ctx;
    return node_txn_put(t, NODE_DB_META, "layout", 6, &layout, 1);
}

static void layout_of_version_5(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, layout_cb, NULL, &msg), NODE_OK);
    assert_int_equal(node_store_write(f->st, layout_cb, NULL, &msg), NODE_OK);
    for (uint8_t old = 2; old <= 5; old++) {
        assert_int_equal(node_store_write(f->st, old_store_cb, &old, &msg), NODE_OK);
        assert_int_equal(node_store_write(f->st, layout_cb, NULL, &msg), NODE_ECONFIG);
    }
}

static node_err unmarked_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    uint8_t own[40] = { 0 };
    return node_txn_put(t, NODE_DB_META, "own", 3, own, sizeof(own));
}

/* A store that holds records but no layout mark was written before marks existed: refused. */
static void unmarked_store_refused(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, unmarked_cb, NULL, &msg), NODE_OK);
    assert_int_equal(node_store_write(f->st, layout_cb, NULL, &msg), NODE_ECONFIG);
}

static void key_of(ledger_key *k, uint64_t epoch, bool confirmed, uint8_t fill)
{
    memset(k, 0, sizeof(*k));
    memset(k->tag, fill, 32);
    memset(k->case_id.b, 0x11, 16);
    memset(k->nonce.b, 0x22, 16);
    snprintf(k->scope, sizeof(k->scope), "lingua");
    snprintf(k->owner_org, sizeof(k->owner_org), "comune-latina");
    k->epoch = epoch;
    k->confirmed = confirmed;
    memset(k->key, fill ^ 0x5a, 32);
}

typedef struct keys_seen {
    uint64_t epochs[8];
    size_t n;
} keys_seen;

static bool keys_seen_cb(const ledger_key *k, void *ctx)
{
    keys_seen *s = ctx;
    s->epochs[s->n++] = k->epoch;
    return true;
}

static node_err keys_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    ledger_key a, b, c, got;
    key_of(&a, 1, true, 0xa1);
    key_of(&b, 3, false, 0xb3); /* announced later: not current */
    key_of(&c, 2, true, 0xc2);
    assert_int_equal(node__ledger_key_put(t, &a), NODE_OK);
    assert_int_equal(node__ledger_key_put(t, &b), NODE_OK);
    assert_int_equal(node__ledger_key_put(t, &c), NODE_OK);
    assert_int_equal(node__ledger_key_get(t, b.tag, &got), NODE_OK);
    assert_int_equal(got.epoch, 3);
    assert_false(got.confirmed);
    assert_string_equal(got.owner_org, "comune-latina");
    assert_string_equal(got.scope, "lingua");
    assert_memory_equal(got.nonce.b, b.nonce.b, 16);
    assert_memory_equal(got.key, b.key, 32);
    /* The current key of the scope: the newest confirmed one. */
    assert_int_equal(node__ledger_key_for(t, &a.case_id, "lingua", &got), NODE_OK);
    assert_int_equal(got.epoch, 2);
    keys_seen seen = { { 0 }, 0 };
    assert_int_equal(
        node__ledger_scope_keys(t, &a.case_id, "lingua", keys_seen_cb, &seen), NODE_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.epochs[0], 1);
    assert_int_equal(seen.epochs[1], 2);
    assert_int_equal(seen.epochs[2], 3);
    /* Confirmed at last: current. */
    b.confirmed = true;
    assert_int_equal(node__ledger_key_put(t, &b), NODE_OK);
    assert_int_equal(node__ledger_key_for(t, &a.case_id, "lingua", &got), NODE_OK);
    assert_int_equal(got.epoch, 3);
    return NODE_OK;
}

static void keys_keep_owner_and_confirmation(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, keys_cb, NULL, &msg), NODE_OK);
}

static void entry_of(ledger_entry *en, uint64_t number, const char *to, uint8_t access)
{
    memset(en, 0, sizeof(*en));
    en->number = number;
    en->kind = PROTO_BODY_ACCESS_GRANT;
    memset(en->id, (int)number, 32);
    en->hlc.wall = 1700000000000u + number;
    en->hlc.logical = (uint16_t)number;
    en->epoch = 1;
    snprintf(en->grantee, sizeof(en->grantee), "%s", to);
    en->access = access;
    snprintf(en->purpose, sizeof(en->purpose), "lingua");
    en->basis = PROTO_BASIS_PUBLIC_TASK;
    en->expiry_ms = number == 2 ? 1800000000000u : 0;
    snprintf(en->provision, sizeof(en->provision), "D.Lgs. 286/1998 art. 4-bis");
    snprintf(en->operator_name, sizeof(en->operator_name), "sportello %u", (unsigned)number);
    snprintf(en->evidence, sizeof(en->evidence), "%s", number == 1 ? "" : "modulo 12");
}

typedef struct entries_seen {
    uint64_t numbers[8];
    size_t n;
} entries_seen;

static bool entries_seen_cb(const ledger_entry *en, void *ctx)
{
    entries_seen *s = ctx;
    s->numbers[s->n++] = en->number;
    return true;
}

static node_err entries_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    proto_case_id c;
    memset(c.b, 0x33, 16);
    ledger_entry a, b, d, got;
    entry_of(&a, 1, "cpia-1", PROTO_ACCESS_READ);
    entry_of(&b, 2, "cpi-2", PROTO_ACCESS_WRITE);
    entry_of(&d, 4, "cpia-1", PROTO_ACCESS_WRITE);
    assert_int_equal(node__ledger_entries_contiguous(t, &c, "lingua"), 0);
    assert_int_equal(node__ledger_entry_put(t, &c, "lingua", &a), NODE_OK);
    assert_int_equal(node__ledger_entry_put(t, &c, "lingua", &b), NODE_OK);
    assert_int_equal(node__ledger_entry_put(t, &c, "lingua", &d), NODE_OK);
    /* Another scope's log, whose name starts like this one's, is apart. */
    assert_int_equal(node__ledger_entry_put(t, &c, "lingua2", &a), NODE_OK);
    assert_int_equal(node__ledger_entries_contiguous(t, &c, "lingua"), 2);
    assert_int_equal(node__ledger_entry_get(t, &c, "lingua", 3, &got), NODE_ENOTFOUND);
    assert_int_equal(node__ledger_entry_get(t, &c, "lingua", 2, &got), NODE_OK);
    assert_int_equal(got.number, 2);
    assert_int_equal(got.kind, PROTO_BODY_ACCESS_GRANT);
    assert_memory_equal(got.id, b.id, 32);
    assert_int_equal(got.hlc.wall, b.hlc.wall);
    assert_int_equal(got.hlc.logical, b.hlc.logical);
    assert_string_equal(got.grantee, "cpi-2");
    assert_int_equal(got.access, PROTO_ACCESS_WRITE);
    assert_int_equal(got.expiry_ms, 1800000000000u);
    assert_string_equal(got.provision, "D.Lgs. 286/1998 art. 4-bis");
    assert_string_equal(got.operator_name, "sportello 2");
    assert_string_equal(got.evidence, "modulo 12");
    entries_seen seen = { { 0 }, 0 };
    assert_int_equal(node__ledger_entries(t, &c, "lingua", entries_seen_cb, &seen), NODE_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.numbers[2], 4);
    /* An epoch announcement. */
    ledger_entry ep;
    memset(&ep, 0, sizeof(ep));
    ep.number = 3;
    ep.kind = PROTO_BODY_ACCESS_EPOCH;
    ep.epoch = 1;
    ep.new_epoch = 2;
    memset(ep.key_hash, 0x77, 32);
    assert_int_equal(node__ledger_entry_put(t, &c, "lingua", &ep), NODE_OK);
    assert_int_equal(node__ledger_entries_contiguous(t, &c, "lingua"), 4);
    assert_int_equal(node__ledger_entry_get(t, &c, "lingua", 3, &got), NODE_OK);
    assert_int_equal(got.kind, PROTO_BODY_ACCESS_EPOCH);
    assert_int_equal(got.new_epoch, 2);
    assert_memory_equal(got.key_hash, ep.key_hash, 32);
    return NODE_OK;
}

static void access_log_round_trip(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, entries_cb, NULL, &msg), NODE_OK);
}

typedef struct counted {
    size_t n32, n40;
} counted;

static bool count_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k, (void)v, (void)vl;
    counted *c = ctx;
    c->n32 += kl == 32 || kl == 33;
    c->n40 += kl == 40 || kl == 41;
    return true;
}

typedef struct check {
    counted bodies, marks;
} check;

static node_err check_cb(node_txn *t, void *ctx)
{
    check *c = ctx;
    for (size_t i = 0; i < N; i++) {
        uint8_t id[32];
        id_of(i, id);
        const void *b;
        size_t n;
        assert_int_equal(node__ledger_body_get(t, id, &b, &n), NODE_OK);
        assert_int_equal(n, 16 + i % 48);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(((const uint8_t *)b)[k], (uint8_t)(i & 0xff));
        assert_true(node__ledger_body_has(t, id));
        assert_int_equal(node__ledger_applied_get(t, id), i % 3 != 0 ? (int)(1 + i % 2) : 0);
    }
    /* An id without a header: no body, no mark. */
    uint8_t stray[32];
    memset(stray, 0xee, 32);
    assert_false(node__ledger_body_has(t, stray));
    assert_int_equal(node__ledger_applied_get(t, stray), 0);
    node_err err = node_txn_scan(t, NODE_DB_BODIES, NULL, 0, count_cb, &c->bodies);
    if (err == NODE_OK)
        err = node_txn_scan(t, NODE_DB_STATE, "A", 1, count_cb, &c->marks);
    return err;
}

/* New records go straight to their place; a body for an id without a header is refused. */
static node_err new_store_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    node_err err = node__ledger_layout(t); /* an empty store: only the layout mark */
    for (size_t i = 0; i < N && err == NODE_OK; i++) {
        uint8_t id[32], place[40], ik[33], body[64];
        id_of(i, id);
        place_of(i, place);
        ik[0] = 'I';
        memcpy(ik + 1, id, 32);
        memset(body, (int)(i & 0xff), sizeof(body));
        if ((err = node_txn_put(t, NODE_DB_HEADERS, ik, 33, place, 40)) == NODE_OK
            && (err = node__ledger_body_put(t, id, body, 16 + i % 48)) == NODE_OK && i % 3 != 0)
            err = node__ledger_applied_put(t, id, (ledger_applied)(1 + i % 2));
    }
    uint8_t stray[32], body[8] = { 0 };
    memset(stray, 0xee, 32);
    assert_int_equal(node__ledger_body_put(t, stray, body, sizeof(body)), NODE_ENOTFOUND);
    return err;
}

static void new_records_by_place(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, new_store_cb, NULL, &msg), NODE_OK);
    check c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(node_store_read(f->st, check_cb, &c, &msg), NODE_OK);
    assert_int_equal(c.bodies.n32, 0);
    assert_int_equal(c.bodies.n40, N);
    assert_int_equal(c.marks.n40, N - (N + 2) / 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(layout_of_version_5, setup, teardown),
        cmocka_unit_test_setup_teardown(unmarked_store_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(keys_keep_owner_and_confirmation, setup, teardown),
        cmocka_unit_test_setup_teardown(access_log_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(new_records_by_place, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
