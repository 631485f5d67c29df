/* The LMDB wrapper: the only file of patto that calls LMDB. One environment per data
 * directory, one named database per kind of record, commits durable (LMDB's default
 * fsync on commit), and a full map grown and the transaction rerun instead of failing.
 * May call: LMDB, common.c, log.c. */
#include "internal.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

struct node_store {
    MDB_env *env;
    MDB_dbi dbi[NODE_DB_COUNT];
    uint64_t map_size, map_max;
};

struct node_txn {
    node_store *st;
    MDB_txn *txn;
    int lmdb_err; /* the first LMDB failure inside the body, 0 if none */
};

static const char *const db_names[NODE_DB_COUNT] = {
    "headers",
    "bodies",
    "vv",
    "state",
    "keys",
    "consents",
    "manifest",
    "audit",
    "meta",
};

const char *node_db_name(node_db db)
{
    return (unsigned)db < NODE_DB_COUNT ? db_names[db] : "?";
}

static node_err lmdb_fail(node_errmsg *msg, const char *what, int rc)
{
    if (rc == MDB_MAP_FULL)
        return node__fail(msg, NODE_EFULL, "%s: %s", what, mdb_strerror(rc));
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        return node__fail(msg, NODE_ECORRUPT, "%s: %s", what, mdb_strerror(rc));
    return node__fail(msg, NODE_ESTORE, "%s: %s", what, mdb_strerror(rc));
}

node_err node_store_open(
    const char *dir, uint64_t map_size, uint64_t map_size_max, node_store **out, node_errmsg *msg)
{
    if (dir == NULL || out == NULL || map_size == 0 || map_size > map_size_max
        || map_size_max > SIZE_MAX)
        return NODE_EINVAL;
    node_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NODE_ENOMEM;
    st->map_size = map_size;
    st->map_max = map_size_max;
    MDB_txn *txn = NULL;
    node_err err;
    int rc = mdb_env_create(&st->env);
    if (rc != 0) {
        err = lmdb_fail(msg, "cannot create the LMDB environment", rc);
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(st->env, NODE_DB_COUNT)) != 0
        || (rc = mdb_env_set_mapsize(st->env, (size_t)map_size)) != 0) {
        err = lmdb_fail(msg, "cannot configure the LMDB environment", rc);
        goto fail;
    }
    if ((rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0600)) != 0) {
        char what[4200];
        snprintf(what, sizeof(what), "cannot open the store in %s", dir);
        err = lmdb_fail(msg, what, rc);
        goto fail;
    }
    /* The map may already be larger than asked (grown earlier): keep the larger size. */
    MDB_envinfo info;
    if (mdb_env_info(st->env, &info) == 0 && info.me_mapsize > st->map_size)
        st->map_size = info.me_mapsize;
    if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0) {
        err = lmdb_fail(msg, "cannot begin the first transaction", rc);
        goto fail;
    }
    for (int i = 0; i < NODE_DB_COUNT; i++) {
        if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &st->dbi[i])) != 0) {
            char what[128];
            snprintf(what, sizeof(what), "cannot open database '%s'", db_names[i]);
            err = lmdb_fail(msg, what, rc);
            goto fail;
        }
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        err = lmdb_fail(msg, "cannot create the databases", rc);
        goto fail;
    }
    *out = st;
    return NODE_OK;

fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (st->env != NULL)
        mdb_env_close(st->env);
    free(st);
    return err;
}

void node_store_close(node_store *st)
{
    if (st == NULL)
        return;
    mdb_env_close(st->env);
    free(st);
}

uint64_t node_store_map_size(const node_store *st)
{
    return st->map_size;
}

/* Double the map, up to its maximum. Only called with no transaction open. */
static node_err grow(node_store *st, node_errmsg *msg)
{
    if (st->map_size >= st->map_max)
        return node__fail(msg, NODE_EFULL,
            "the store is full at its maximum of %llu MiB ([store] max_size_mb)",
            (unsigned long long)(st->map_max >> 20));
    uint64_t next = st->map_size * 2 < st->map_max ? st->map_size * 2 : st->map_max;
    int rc = mdb_env_set_mapsize(st->env, (size_t)next);
    if (rc != 0)
        return lmdb_fail(msg, "cannot grow the store", rc);
    NODE_INFO("store.grow", "from_mb=%llu to_mb=%llu", (unsigned long long)(st->map_size >> 20),
        (unsigned long long)(next >> 20));
    st->map_size = next;
    return NODE_OK;
}

static node_err begin(node_store *st, unsigned flags, node_txn *t, node_errmsg *msg)
{
    memset(t, 0, sizeof(*t));
    t->st = st;
    int rc = mdb_txn_begin(st->env, NULL, flags, &t->txn);
    if (rc == MDB_MAP_RESIZED) {
        /* Another process grew the map: adopt its size and try again. */
        if ((rc = mdb_env_set_mapsize(st->env, 0)) == 0)
            rc = mdb_txn_begin(st->env, NULL, flags, &t->txn);
    }
    if (rc != 0)
        return lmdb_fail(msg, "cannot begin a transaction", rc);
    return NODE_OK;
}

node_err node_store_write(node_store *st, node_txn_cb fn, void *ctx, node_errmsg *msg)
{
    if (st == NULL || fn == NULL)
        return NODE_EINVAL;
    for (;;) {
        node_txn t;
        node_err err = begin(st, 0, &t, msg);
        if (err != NODE_OK)
            return err;
        err = fn(&t, ctx);
        if (t.lmdb_err == MDB_MAP_FULL) {
            mdb_txn_abort(t.txn);
            if ((err = grow(st, msg)) != NODE_OK)
                return err;
            continue;
        }
        if (err != NODE_OK || t.lmdb_err != 0) {
            mdb_txn_abort(t.txn);
            if (t.lmdb_err != 0)
                return lmdb_fail(msg, "write failed", t.lmdb_err);
            return err;
        }
        int rc = mdb_txn_commit(t.txn);
        if (rc == MDB_MAP_FULL) {
            if ((err = grow(st, msg)) != NODE_OK)
                return err;
            continue;
        }
        if (rc != 0)
            return lmdb_fail(msg, "commit failed", rc);
        return NODE_OK;
    }
}

node_err node_store_read(node_store *st, node_txn_cb fn, void *ctx, node_errmsg *msg)
{
    if (st == NULL || fn == NULL)
        return NODE_EINVAL;
    node_txn t;
    node_err err = begin(st, MDB_RDONLY, &t, msg);
    if (err != NODE_OK)
        return err;
    err = fn(&t, ctx);
    int lerr = t.lmdb_err;
    mdb_txn_abort(t.txn);
    if (err == NODE_OK && lerr != 0)
        return lmdb_fail(msg, "read failed", lerr);
    return err;
}

static bool key_ok(const void *key, size_t klen)
{
    return key != NULL && klen > 0 && klen <= 511;
}

/* Remember the first LMDB failure of a body, so the transaction's owner can act on it. */
static node_err txn_fail(node_txn *t, int rc)
{
    if (t->lmdb_err == 0)
        t->lmdb_err = rc;
    return rc == MDB_MAP_FULL ? NODE_EFULL : NODE_ESTORE;
}

node_err node_txn_put(
    node_txn *t, node_db db, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT || !key_ok(key, klen)
        || (val == NULL && vlen > 0))
        return NODE_EINVAL;
    MDB_val k = { klen, (void *)(uintptr_t)key };
    MDB_val v = { vlen, (void *)(uintptr_t)val };
    int rc = mdb_put(t->txn, t->st->dbi[db], &k, &v, 0);
    return rc == 0 ? NODE_OK : txn_fail(t, rc);
}

node_err node_txn_get(
    node_txn *t, node_db db, const void *key, size_t klen, const void **val, size_t *vlen)
{
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT || !key_ok(key, klen) || val == NULL
        || vlen == NULL)
        return NODE_EINVAL;
    MDB_val k = { klen, (void *)(uintptr_t)key }, v;
    int rc = mdb_get(t->txn, t->st->dbi[db], &k, &v);
    if (rc == MDB_NOTFOUND)
        return NODE_ENOTFOUND;
    if (rc != 0)
        return txn_fail(t, rc);
    *val = v.mv_data;
    *vlen = v.mv_size;
    return NODE_OK;
}

node_err node_txn_del(node_txn *t, node_db db, const void *key, size_t klen)
{
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT || !key_ok(key, klen))
        return NODE_EINVAL;
    MDB_val k = { klen, (void *)(uintptr_t)key };
    int rc = mdb_del(t->txn, t->st->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return NODE_ENOTFOUND;
    return rc == 0 ? NODE_OK : txn_fail(t, rc);
}

node_err node_txn_scan(
    node_txn *t, node_db db, const void *prefix, size_t plen, node_iter_cb fn, void *ctx)
{
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT || fn == NULL || (plen && prefix == NULL)
        || plen > 511)
        return NODE_EINVAL;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->st->dbi[db], &cur);
    if (rc != 0)
        return txn_fail(t, rc);
    MDB_val k = { plen, (void *)(uintptr_t)prefix }, v;
    rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if (!fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, ctx))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return txn_fail(t, rc);
    return NODE_OK;
}
