/* node.ledger: bodies and applied marks are found by header id through the header's place in
 * its origin's log; a store written by an older pattod (bodies and marks keyed by id) is
 * moved to that layout once, losing nothing, and a body without a stored header has no place. */
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

/* The old layout: 'I' records, bodies under the id, 'A' + id marks. */
static node_err old_store_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < N; i++) {
        uint8_t id[32], place[40], ik[33], ak[33], body[64], mark = (uint8_t)(1 + i % 2);
        id_of(i, id);
        place_of(i, place);
        ik[0] = 'I';
        memcpy(ik + 1, id, 32);
        ak[0] = 'A';
        memcpy(ak + 1, id, 32);
        memset(body, (int)(i & 0xff), sizeof(body));
        node_err err;
        if ((err = node_txn_put(t, NODE_DB_HEADERS, ik, 33, place, 40)) != NODE_OK
            || (err = node_txn_put(t, NODE_DB_BODIES, id, 32, body, 16 + i % 48)) != NODE_OK
            || (i % 3 != 0 && (err = node_txn_put(t, NODE_DB_STATE, ak, 33, &mark, 1)) != NODE_OK))
            return err;
    }
    return NODE_OK;
}

static node_err migrate_cb(node_txn *t, void *ctx)
{
    return node__ledger_migrate(t, ctx);
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

static void old_layout_moves_once(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, old_store_cb, NULL, &msg), NODE_OK);
    size_t moved = 0;
    assert_int_equal(node_store_write(f->st, migrate_cb, &moved, &msg), NODE_OK);
    assert_int_equal(moved, N + (N - (N + 2) / 3));
    check c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(node_store_read(f->st, check_cb, &c, &msg), NODE_OK);
    assert_int_equal(c.bodies.n32, 0);
    assert_int_equal(c.bodies.n40, N);
    assert_int_equal(c.marks.n32, 0);
    assert_int_equal(c.marks.n40, N - (N + 2) / 3);
    /* Once only: a second start moves nothing. */
    assert_int_equal(node_store_write(f->st, migrate_cb, &moved, &msg), NODE_OK);
    assert_int_equal(moved, 0);
}

/* New records go straight to their place; a body for an id without a header is refused. */
static node_err new_store_cb(node_txn *t, void *ctx)
{
    (void)ctx;
    size_t moved;
    node_err err = node__ledger_migrate(t, &moved); /* an empty store: only the layout mark */
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
        cmocka_unit_test_setup_teardown(old_layout_moves_once, setup, teardown),
        cmocka_unit_test_setup_teardown(new_records_by_place, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
