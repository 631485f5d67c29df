/* The LMDB wrapper: the only file of patto that calls LMDB. One environment per data
 * directory, one named database per kind of record, commits durable (LMDB's default
 * fsync on commit), a full map grown and the transaction rerun instead of failing, and the
 * compaction that rewrites the file without its free pages (node.h, node_store_compact).
 * May call: LMDB, the file system (POSIX), common.c, log.c. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct node_store {
    MDB_env *env; /* NULL once a compaction could not open it again */
    MDB_dbi dbi[NODE_DB_COUNT];
    uint64_t map_size, map_max;
    char *dir;     /* the data directory, as node_store_open was given it (owned) */
    unsigned txns; /* transaction bodies running (nested reads too): no compaction then */
};

struct node_txn {
    node_store *st;
    MDB_txn *txn;
    int lmdb_err; /* the first LMDB failure inside the body, 0 if none */
    _Alignas(8) uint8_t memo[NODE_TXN_MEMO_BYTES]; /* node_txn_memo: zero at each begin */
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
    "find",
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

/* Create and open st->env on st->dir with st->map_size, and open every database. On failure
 * st->env is NULL again. */
static node_err env_open(node_store *st, node_errmsg *msg)
{
    MDB_txn *txn = NULL;
    node_err err;
    int rc = mdb_env_create(&st->env);
    if (rc != 0) {
        st->env = NULL;
        return lmdb_fail(msg, "cannot create the LMDB environment", rc);
    }
    if ((rc = mdb_env_set_maxdbs(st->env, NODE_DB_COUNT)) != 0
        || (rc = mdb_env_set_mapsize(st->env, (size_t)st->map_size)) != 0) {
        err = lmdb_fail(msg, "cannot configure the LMDB environment", rc);
        goto fail;
    }
    if ((rc = mdb_env_open(st->env, st->dir, MDB_NOTLS, 0600)) != 0) {
        char what[4200];
        snprintf(what, sizeof(what), "cannot open the store in %s", st->dir);
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
    return NODE_OK;

fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    mdb_env_close(st->env);
    st->env = NULL;
    return err;
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
    size_t dlen = strlen(dir);
    if ((st->dir = malloc(dlen + 1)) == NULL) {
        free(st);
        return NODE_ENOMEM;
    }
    memcpy(st->dir, dir, dlen + 1);
    node_err err = env_open(st, msg);
    if (err != NODE_OK) {
        free(st->dir);
        free(st);
        return err;
    }
    *out = st;
    return NODE_OK;
}

void node_store_close(node_store *st)
{
    if (st == NULL)
        return;
    mdb_env_close(st->env);
    free(st->dir);
    free(st);
}

bool node_store_is_open(const node_store *st)
{
    return st != NULL && st->env != NULL;
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
    if (st->env == NULL)
        return node__fail(msg, NODE_ESTORE,
            "the store is closed: a compaction could not open it again (its log line says why); "
            "restart pattod, the data on disk is whole");
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

void *node_txn_memo(node_txn *t)
{
    return t->memo;
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
        st->txns++;
        err = fn(&t, ctx);
        st->txns--;
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
    st->txns++;
    err = fn(&t, ctx);
    st->txns--;
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
    return node_txn_scan_from(t, db, prefix, plen, prefix, plen, fn, ctx);
}

node_err node_txn_scan_from(node_txn *t, node_db db, const void *prefix, size_t plen,
    const void *from, size_t flen, node_iter_cb fn, void *ctx)
{
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT || fn == NULL || (plen && prefix == NULL)
        || plen > 511 || (flen && from == NULL) || flen > 511)
        return NODE_EINVAL;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->st->dbi[db], &cur);
    if (rc != 0)
        return txn_fail(t, rc);
    MDB_val k = { flen, (void *)(uintptr_t)from }, v;
    rc = mdb_cursor_get(cur, &k, &v, flen ? MDB_SET_RANGE : MDB_FIRST);
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

node_err node_txn_count(node_txn *t, node_db db, size_t *n)
{
    *n = 0;
    if (t == NULL || (unsigned)db >= NODE_DB_COUNT)
        return NODE_EINVAL;
    MDB_stat st;
    int rc = mdb_stat(t->txn, t->st->dbi[db], &st);
    if (rc != 0)
        return txn_fail(t, rc);
    *n = st.ms_entries;
    return NODE_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Compaction (node.h, node_store_compact)                                                   */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "DIR/name" into out; false when it does not fit. */
static bool path_in(const char *dir, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n > 0 && (size_t)n < size;
}

static unsigned long long mib(uint64_t bytes)
{
    return (unsigned long long)((bytes + (UINT64_C(1) << 20) - 1) >> 20);
}

/* The bytes the compacting copy will write, counted as LMDB's mdb_env_copyfd1 counts them:
 * every page up to the last one in use, less the free ones (those the free list names, and the
 * free list's own pages). */
static node_err copy_bytes(node_store *st, uint64_t *out, node_errmsg *msg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_envinfo info;
    MDB_stat env_st, free_st;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return lmdb_fail(msg, "cannot begin a transaction to measure the store", rc);
    uint64_t free_pages = 0;
    if ((rc = mdb_env_info(st->env, &info)) != 0 || (rc = mdb_env_stat(st->env, &env_st)) != 0
        || (rc = mdb_stat(txn, 0, &free_st)) != 0 || (rc = mdb_cursor_open(txn, 0, &cur)) != 0)
        goto out;
    free_pages
        = (uint64_t)free_st.ms_branch_pages + free_st.ms_leaf_pages + free_st.ms_overflow_pages;
    MDB_val k, v;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        /* A free-list record is a list of page numbers, its count first. */
        size_t count;
        if (v.mv_size < sizeof(count)) {
            rc = MDB_CORRUPTED;
            goto out;
        }
        memcpy(&count, v.mv_data, sizeof(count));
        free_pages += count;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != 0)
        return lmdb_fail(msg, "cannot measure the store's free pages", rc);
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    if (free_pages > pages)
        return node__fail(msg, NODE_ECORRUPT,
            "the store's free list names %llu pages, more than the %llu it has: the store is "
            "unchanged; check it with mdb_stat -f",
            (unsigned long long)free_pages, (unsigned long long)pages);
    *out = (pages - free_pages) * env_st.ms_psize;
    return NODE_OK;
}

/* Write the compacting copy of st into a new file at path (which must not exist), fsync'd;
 * *size gets its size. The caller removes the file on failure. */
static node_err write_copy(node_store *st, const char *path, uint64_t *size, node_errmsg *msg)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return node__fail(
            msg, NODE_EIO, "cannot create the compacted copy %s: %s", path, strerror(errno));
    node_err err = NODE_OK;
    struct stat sb;
    int rc = mdb_env_copyfd2(st->env, fd, MDB_CP_COMPACT);
    if (rc == MDB_INCOMPATIBLE)
        err = node__fail(msg, NODE_ECORRUPT,
            "LMDB cannot compact this store: its free list does not account for every page (a "
            "page leak); the store is unchanged, copy it without compacting (mdb_copy DATA "
            "BACKUP) and report it");
    else if (rc > 0) /* an errno value: a write that failed */
        err = node__fail(
            msg, NODE_EIO, "cannot write the compacted copy %s: %s", path, mdb_strerror(rc));
    else if (rc != 0)
        err = lmdb_fail(msg, "cannot make the compacted copy", rc);
    else if (fsync(fd) != 0)
        err = node__fail(
            msg, NODE_EIO, "cannot flush the compacted copy %s to disk: %s", path, strerror(errno));
    else if (fstat(fd, &sb) != 0)
        err = node__fail(msg, NODE_EIO, "cannot read the size of the compacted copy %s: %s", path,
            strerror(errno));
    else
        *size = (uint64_t)sb.st_size;
    if (close(fd) != 0 && err == NODE_OK)
        err = node__fail(
            msg, NODE_EIO, "cannot close the compacted copy %s: %s", path, strerror(errno));
    return err;
}

/* Open the copy at path on its own (read-only, no lock file) and check that each database holds
 * as many records as in the store: a copy that LMDB cannot open, or that lost records, never
 * replaces data.mdb. */
static node_err check_copy(node_store *st, const char *path, node_errmsg *msg)
{
    MDB_env *env = NULL;
    MDB_txn *ct = NULL, *lt = NULL;
    const char *what = "cannot open the compacted copy";
    node_err err = NODE_OK;
    int rc = mdb_env_create(&env);
    if (rc != 0)
        return lmdb_fail(msg, what, rc);
    if ((rc = mdb_env_set_maxdbs(env, NODE_DB_COUNT)) != 0
        || (rc = mdb_env_set_mapsize(env, (size_t)st->map_size)) != 0
        || (rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600))
            != 0
        || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &ct)) != 0
        || (rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &lt)) != 0) {
        err = lmdb_fail(msg, what, rc);
        goto out;
    }
    for (int i = 0; i < NODE_DB_COUNT && err == NODE_OK; i++) {
        MDB_dbi d;
        MDB_stat a, b;
        if ((rc = mdb_dbi_open(ct, db_names[i], 0, &d)) != 0 || (rc = mdb_stat(ct, d, &a)) != 0
            || (rc = mdb_stat(lt, st->dbi[i], &b)) != 0)
            err = node__fail(msg, NODE_ECORRUPT,
                "the compacted copy cannot be read (database '%s': %s); the store is unchanged",
                db_names[i], mdb_strerror(rc));
        else if (a.ms_entries != b.ms_entries)
            err = node__fail(msg, NODE_ECORRUPT,
                "the compacted copy holds %zu records in database '%s', the store %zu; the store "
                "is unchanged",
                a.ms_entries, db_names[i], b.ms_entries);
    }
out:
    if (lt != NULL)
        mdb_txn_abort(lt);
    if (ct != NULL)
        mdb_txn_abort(ct);
    mdb_env_close(env);
    return err;
}

static node_err sync_dir(const char *dir, node_errmsg *msg)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return node__fail(msg, NODE_EIO, "cannot open %s to flush it: %s", dir, strerror(errno));
    node_err err = NODE_OK;
    if (fsync(fd) != 0)
        err = node__fail(msg, NODE_EIO, "cannot flush %s to disk: %s", dir, strerror(errno));
    if (close(fd) != 0 && err == NODE_OK)
        err = node__fail(msg, NODE_EIO, "cannot close %s: %s", dir, strerror(errno));
    return err;
}

/*
 * With the environment closed: rename the copy over data.mdb. Every process that has the store
 * open holds a read lock on byte 0 of lock.mdb (LMDB's rule; the first to open takes it for
 * writing and sets the file up), and lock.mdb carries the last transaction id of the file it
 * was set up for. So no process may have it open here (it would go on through the old file's
 * transaction ids into the new file): the write lock is taken, or nothing is done. Holding it,
 * the copy is renamed, then lock.mdb is emptied and removed, so that the next open sets up a new
 * one from the new file, and a process that was waiting for the lock finds an empty file and
 * fails rather than reading. *swapped tells whether the rename happened. The lock's own
 * descriptor is closed before returning: closing any descriptor of a file drops every fcntl
 * lock this process holds on it, LMDB's included, so none may be open when LMDB opens it.
 */
static node_err swap_in(
    node_store *st, const char *copy, const char *live, bool *swapped, node_errmsg *msg)
{
    char lockp[4200];
    *swapped = false;
    if (!path_in(st->dir, "lock.mdb", lockp, sizeof(lockp)))
        return node__fail(msg, NODE_EINVAL, "the data directory's path is too long");
    int lfd = open(lockp, O_RDWR | O_CLOEXEC);
    if (lfd < 0 && errno != ENOENT)
        return node__fail(msg, NODE_EIO, "cannot open %s: %s", lockp, strerror(errno));
    if (lfd >= 0) {
        struct flock fl;
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 1;
        if (fcntl(lfd, F_SETLK, &fl) != 0) {
            int e = errno;
            (void)close(lfd); /* nothing was written through it */
            if (e == EACCES || e == EAGAIN)
                return node__fail(msg, NODE_EIO,
                    "another process has the store open (an mdb_copy or mdb_stat, or pattod "
                    "--check-config): nothing was changed; compact again once it has finished");
            return node__fail(msg, NODE_EIO, "cannot lock %s: %s", lockp, strerror(e));
        }
    }
    node_err err = NODE_OK;
    if (rename(copy, live) != 0) {
        err = node__fail(msg, NODE_EIO, "cannot rename the compacted copy %s to %s: %s", copy, live,
            strerror(errno));
    } else {
        *swapped = true;
        /* Not fatal: the next open by the only holder of the lock sets lock.mdb up afresh. */
        if (lfd >= 0 && (ftruncate(lfd, 0) != 0 || unlink(lockp) != 0))
            NODE_WARN("store.compact", "detail=\"cannot empty and remove %s: %s\"",
                node__logq(lockp), strerror(errno));
        node_errmsg dmsg = { { 0 } };
        if (sync_dir(st->dir, &dmsg) != NODE_OK)
            err = node__fail(msg, NODE_EIO,
                "the compacted copy is in place of data.mdb, but the rename may not survive a "
                "crash: %s",
                dmsg.text);
    }
    if (lfd >= 0 && close(lfd) != 0 && err == NODE_OK)
        err = node__fail(msg, NODE_EIO, "cannot close %s: %s", lockp, strerror(errno));
    return err;
}

static void remove_copy(const char *copy)
{
    if (unlink(copy) != 0 && errno != ENOENT)
        NODE_WARN("store.compact",
            "detail=\"cannot remove the compacted copy %s: %s; pattod removes it at its next "
            "start\"",
            node__logq(copy), strerror(errno));
}

node_err node_store_compact(node_store *st, node_compact *out, node_errmsg *msg)
{
    if (st == NULL || out == NULL)
        return NODE_EINVAL;
    if (st->txns > 0)
        return node__fail(msg, NODE_EINVAL, "the store cannot be compacted inside a transaction");
    if (st->env == NULL)
        return node__fail(msg, NODE_ESTORE,
            "the store is closed: a compaction could not open it again; restart pattod");
    memset(out, 0, sizeof(*out));
    uint64_t t0 = mono_ms();
    char copy[4200], live[4200];
    if (!path_in(st->dir, NODE_STORE_COMPACT_FILE, copy, sizeof(copy))
        || !path_in(st->dir, "data.mdb", live, sizeof(live)))
        return node__fail(msg, NODE_EINVAL, "the data directory's path is too long");
    struct stat sb;
    if (stat(live, &sb) != 0)
        return node__fail(msg, NODE_EIO, "cannot read the size of %s: %s", live, strerror(errno));
    out->bytes_before = (uint64_t)sb.st_size;

    /* Room for the copy beside data.mdb, and some to spare. */
    uint64_t need = 0;
    node_err err = copy_bytes(st, &need, msg);
    if (err != NODE_OK)
        return err;
    struct statvfs vfs;
    if (statvfs(st->dir, &vfs) != 0)
        return node__fail(
            msg, NODE_EIO, "cannot read the free space of %s: %s", st->dir, strerror(errno));
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (avail < need + NODE_STORE_COMPACT_SLACK)
        return node__fail(msg, NODE_EIO,
            "not enough free disk to compact the store: the copy needs %llu MiB beside data.mdb "
            "and %llu MiB more are kept free, but %s has %llu MiB free; free some space there "
            "and compact again (nothing was changed)",
            mib(need), mib(NODE_STORE_COMPACT_SLACK), st->dir, mib(avail));

    /* The copy, whole and fsync'd, checked before it may replace anything. */
    if ((err = node_store_remove_leftover(st->dir, NULL, msg)) != NODE_OK)
        return err;
    uint64_t t1 = mono_ms();
    if ((err = write_copy(st, copy, &out->disk_needed, msg)) != NODE_OK) {
        remove_copy(copy);
        return err;
    }
    uint64_t t2 = mono_ms();
    if ((err = check_copy(st, copy, msg)) != NODE_OK) {
        remove_copy(copy);
        return err;
    }
    uint64_t t3 = mono_ms();

    /* The swap: from here until the environment is open again, st has none. */
    mdb_env_close(st->env);
    st->env = NULL;
    bool swapped = false;
    err = swap_in(st, copy, live, &swapped, msg);
    if (!swapped)
        remove_copy(copy);
    node_errmsg omsg = { { 0 } };
    node_err oerr = env_open(st, &omsg);
    if (oerr != NODE_OK) {
        if (err == NODE_OK || swapped)
            return node__fail(msg, oerr,
                "the store was compacted but cannot be opened again: %s; restart pattod (the "
                "compacted data.mdb is whole)",
                omsg.text);
        return node__fail(msg, oerr,
            "the compaction was not done (see before) and the store cannot be opened again: %s; "
            "restart pattod (data.mdb is unchanged)",
            omsg.text);
    }
    if (err != NODE_OK)
        return err;
    if (stat(live, &sb) != 0)
        return node__fail(msg, NODE_EIO, "cannot read the size of %s: %s", live, strerror(errno));
    out->bytes_after = (uint64_t)sb.st_size;
    uint64_t t4 = mono_ms();
    out->pause_ms = t4 - t0;
    NODE_DEBUG("store.compact.steps",
        "measure_ms=%llu copy_ms=%llu check_ms=%llu swap_ms=%llu copy_bytes_expected=%llu",
        (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1), (unsigned long long)(t3 - t2),
        (unsigned long long)(t4 - t3), (unsigned long long)need);
    return NODE_OK;
}

node_err node_store_remove_leftover(const char *dir, uint64_t *removed, node_errmsg *msg)
{
    char copy[4200];
    if (removed != NULL)
        *removed = 0;
    if (dir == NULL || !path_in(dir, NODE_STORE_COMPACT_FILE, copy, sizeof(copy)))
        return node__fail(msg, NODE_EINVAL, "the data directory's path is too long");
    struct stat sb;
    if (lstat(copy, &sb) != 0) {
        if (errno == ENOENT)
            return NODE_OK;
        return node__fail(msg, NODE_EIO, "cannot look at %s: %s", copy, strerror(errno));
    }
    if (unlink(copy) != 0)
        return node__fail(msg, NODE_EIO,
            "cannot remove %s, the copy of a compaction that did not finish: %s; remove it by "
            "hand",
            copy, strerror(errno));
    NODE_WARN("store.compact.leftover",
        "file=\"%s\" bytes=%llu detail=\"the copy of a compaction that did not finish was "
        "removed; data.mdb was not touched by it\"",
        node__logq(copy), (unsigned long long)sb.st_size);
    if (removed != NULL)
        *removed = (uint64_t)sb.st_size;
    return NODE_OK;
}
