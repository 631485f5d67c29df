/*
 * node.compact: the store's compaction (node.h, node_store_compact). Records deleted from the
 * store leave data.mdb: their bytes are in the file before (LMDB never zeroes freed pages, so
 * the test could fail) and in no file of the directory after, while every other record reads
 * back unchanged and the store goes on taking writes (growing its map too). A copy that
 * cannot be written (the file size limit), another process with the store open, and a crash
 * while the copy is written (the process killed by SIGXFSZ) leave data.mdb byte for byte as it
 * was and the store usable; a leftover copy is removed at the next start and logged. And the
 * schedule's key, [store] compact_every_hours.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/node.h"
#include "tmpdir.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define MIB (UINT64_C(1) << 20)
#define MARKER "PURGED-MARKER-5c1e9a"
#define KEEP 400 /* records that stay */
#define GONE 300 /* records with the marker, deleted before the compaction */

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
    if (node_store_open(f->dir, MIB, 256 * MIB, &f->st, &msg) != NODE_OK) {
        fprintf(stderr, "open: %s\n", msg.text);
        return -1;
    }
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

/* ---------------------------------------------------------------------------------------- */
/* Records: KEEP in two databases, GONE with the marker; some of each larger than a page (LMDB
 * keeps those on overflow pages), the others inline in leaf pages. */

static size_t keep_len(int i)
{
    return i % 10 == 0 ? 6000 + (size_t)i : 60 + (size_t)(i * 7) % 900;
}

static void keep_value(int i, char *buf, size_t len)
{
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (i * 31 + (int)k * 7) % 26);
}

static int keep_key(int i, char key[32])
{
    return snprintf(key, 32, "keep-%05d", i);
}

static node_db keep_db(int i)
{
    return i % 2 ? NODE_DB_STATE : NODE_DB_BODIES;
}

static node_err put_keep(node_txn *t, void *ctx)
{
    (void)ctx;
    static char buf[8000];
    node_err err = NODE_OK;
    for (int i = 0; i < KEEP && err == NODE_OK; i++) {
        char key[32];
        int n = keep_key(i, key);
        keep_value(i, buf, keep_len(i));
        err = node_txn_put(t, keep_db(i), key, (size_t)n, buf, keep_len(i));
    }
    return err;
}

static node_err put_gone(node_txn *t, void *ctx)
{
    (void)ctx;
    static char buf[9000];
    node_err err = NODE_OK;
    for (int i = 0; i < GONE && err == NODE_OK; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "gone-%05d", i);
        size_t len = i % 5 == 0 ? 8000 : 200;
        for (size_t k = 0; k + sizeof(MARKER) <= len; k += sizeof(MARKER))
            memcpy(buf + k, MARKER "|", sizeof(MARKER));
        err = node_txn_put(t, i % 2 ? NODE_DB_STATE : NODE_DB_BODIES, key, (size_t)n, buf, len);
    }
    return err;
}

static node_err del_gone(node_txn *t, void *ctx)
{
    (void)ctx;
    node_err err = NODE_OK;
    for (int i = 0; i < GONE && err == NODE_OK; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "gone-%05d", i);
        err = node_txn_del(t, i % 2 ? NODE_DB_STATE : NODE_DB_BODIES, key, (size_t)n);
    }
    return err;
}

typedef struct check {
    int bad, found, gone_found;
} check;

static node_err check_cb(node_txn *t, void *ctx)
{
    check *c = ctx;
    static char want[8000];
    for (int i = 0; i < KEEP; i++) {
        char key[32];
        int n = keep_key(i, key);
        const void *v;
        size_t len;
        node_err err = node_txn_get(t, keep_db(i), key, (size_t)n, &v, &len);
        if (err == NODE_ENOTFOUND)
            continue;
        if (err != NODE_OK)
            return err;
        c->found++;
        keep_value(i, want, keep_len(i));
        if (len != keep_len(i) || memcmp(v, want, len) != 0)
            c->bad++;
    }
    for (int i = 0; i < GONE; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "gone-%05d", i);
        const void *v;
        size_t len;
        if (node_txn_get(t, i % 2 ? NODE_DB_STATE : NODE_DB_BODIES, key, (size_t)n, &v, &len)
            == NODE_OK)
            c->gone_found++;
    }
    return NODE_OK;
}

/* Every KEEP record is there with its bytes, and no GONE record. */
static void expect_kept(node_store *st)
{
    check c = { 0, 0, 0 };
    node_errmsg msg;
    assert_int_equal(node_store_read(st, check_cb, &c, &msg), NODE_OK);
    assert_int_equal(c.found, KEEP);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.gone_found, 0);
}

/* The store as the tests start from: KEEP and GONE written, then GONE deleted. */
static void fill(fixture *f)
{
    node_errmsg msg;
    assert_int_equal(node_store_write(f->st, put_keep, NULL, &msg), NODE_OK);
    assert_int_equal(node_store_write(f->st, put_gone, NULL, &msg), NODE_OK);
    assert_int_equal(node_store_write(f->st, del_gone, NULL, &msg), NODE_OK);
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                     */

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf != NULL && n > 0 ? fread(buf, 1, (size_t)n, fp) : 0;
    fclose(fp);
    if (buf == NULL || got != (size_t)(n > 0 ? n : 0)) {
        free(buf);
        return NULL;
    }
    *len = got;
    return buf;
}

static size_t count_in(const uint8_t *p, size_t len, const char *needle)
{
    size_t nl = strlen(needle), n = 0;
    for (size_t i = 0; i + nl <= len; i++)
        if (p[i] == (uint8_t)needle[0] && memcmp(p + i, needle, nl) == 0)
            n++;
    return n;
}

/* How many times the marker is in the files of dir (data.mdb, lock.mdb, any other). */
static size_t marker_in_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *buf = slurp(path, &len);
        assert_non_null(buf);
        n += count_in(buf, len, MARKER);
        free(buf);
    }
    closedir(d);
    return n;
}

static bool exists(const char *dir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static uint64_t file_size(const char *dir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

static uint8_t *data_mdb(const char *dir, size_t *len)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    uint8_t *b = slurp(path, len);
    assert_non_null(b);
    return b;
}

/* ---------------------------------------------------------------------------------------- */

static node_err put_big(node_txn *t, void *ctx)
{
    (void)ctx;
    static char buf[4096];
    memset(buf, 'z', sizeof(buf));
    node_err err = NODE_OK;
    for (int i = 0; i < 4096 && err == NODE_OK; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "after-%05d", i);
        err = node_txn_put(t, NODE_DB_HEADERS, key, (size_t)n, buf, sizeof(buf));
    }
    return err;
}

static bool count_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k, (void)kl, (void)v, (void)vl;
    (*(int *)ctx)++;
    return true;
}

static node_err count_after(node_txn *t, void *ctx)
{
    return node_txn_scan(t, NODE_DB_HEADERS, "after-", 6, count_cb, ctx);
}

static void deleted_bytes_leave_the_file(void **state)
{
    fixture *f = *state;
    fill(f);
    if (marker_in_dir(f->dir) == 0)
        fail_msg("the marker is not in data.mdb after the delete: the test proves nothing");
    uint64_t before = file_size(f->dir, "data.mdb");

    /* The debug line says what the copy was expected to take: the figure the disk space is
     * checked against. */
    char logpath[4400];
    snprintf(logpath, sizeof(logpath), "%s.log", f->dir);
    FILE *log = fopen(logpath, "w+");
    assert_non_null(log);
    node_log_set_output(log);
    node_log_set_level(NODE_LOG_DEBUG);
    node_compact c;
    node_errmsg msg = { { 0 } };
    node_err err = node_store_compact(f->st, &c, &msg);
    node_log_set_level(NODE_LOG_WARN);
    node_log_set_output(NULL);
    if (err != NODE_OK)
        fail_msg("compact: %s", msg.text);
    fseek(log, 0, SEEK_SET);
    char line[1024] = "";
    assert_non_null(fgets(line, sizeof(line), log));
    fclose(log);
    unlink(logpath);
    assert_non_null(strstr(line, "event=store.compact.steps"));
    const char *exp = strstr(line, "copy_bytes_expected=");
    assert_non_null(exp);
    assert_int_equal(strtoull(exp + 20, NULL, 10), c.disk_needed);
    assert_int_equal(marker_in_dir(f->dir), 0);
    assert_false(exists(f->dir, NODE_STORE_COMPACT_FILE));
    assert_true(node_store_is_open(f->st));
    /* The figures: the sizes of the file before and after, and the copy was the new file. */
    assert_int_equal(c.bytes_before, before);
    assert_int_equal(c.bytes_after, file_size(f->dir, "data.mdb"));
    assert_true(c.bytes_after < c.bytes_before);
    assert_int_equal(c.disk_needed, c.bytes_after);
    assert_true(c.pause_ms < 60000);
    expect_kept(f->st);

    /* The store goes on: 16 MiB more in one write makes the map grow past its start. */
    uint64_t map = node_store_map_size(f->st);
    assert_int_equal(node_store_write(f->st, put_big, NULL, &msg), NODE_OK);
    assert_true(node_store_map_size(f->st) > map);
    int n = 0;
    assert_int_equal(node_store_read(f->st, count_after, &n, &msg), NODE_OK);
    assert_int_equal(n, 4096);
    /* And what it holds survives a close and an open. */
    node_store_close(f->st);
    f->st = NULL;
    assert_int_equal(node_store_open(f->dir, MIB, 256 * MIB, &f->st, &msg), NODE_OK);
    expect_kept(f->st);
    n = 0;
    assert_int_equal(node_store_read(f->st, count_after, &n, &msg), NODE_OK);
    assert_int_equal(n, 4096);
    /* A second compaction of a compact store works too. */
    assert_int_equal(node_store_compact(f->st, &c, &msg), NODE_OK);
    expect_kept(f->st);
}

static node_err compact_inside(node_txn *t, void *ctx)
{
    (void)t;
    node_compact c;
    node_errmsg msg = { { 0 } };
    node_err err = node_store_compact(ctx, &c, &msg);
    assert_non_null(strstr(msg.text, "inside a transaction"));
    return err == NODE_EINVAL ? NODE_OK : NODE_EIO;
}

static void not_inside_a_transaction(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(node_store_read(f->st, compact_inside, f->st, &msg), NODE_OK);
    assert_int_equal(node_store_write(f->st, compact_inside, f->st, &msg), NODE_OK);
}

/* Writes a marker-free record and reads it back: the store takes writes. */
static node_err put_probe(node_txn *t, void *ctx)
{
    (void)ctx;
    return node_txn_put(t, NODE_DB_META, "probe", 5, "1", 1);
}

static void expect_usable(fixture *f)
{
    node_errmsg msg;
    assert_true(node_store_is_open(f->st));
    expect_kept(f->st);
    assert_int_equal(node_store_write(f->st, put_probe, NULL, &msg), NODE_OK);
}

/* The copy cannot be written (the file size limit is below its size): nothing changes. */
static void copy_that_cannot_be_written(void **state)
{
    fixture *f = *state;
    fill(f);
    size_t len0;
    uint8_t *before = data_mdb(f->dir, &len0);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    low = old;
    low.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    node_compact c;
    node_errmsg msg = { { 0 } };
    node_err err = node_store_compact(f->st, &c, &msg);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(err, NODE_EIO);
    if (strstr(msg.text, "cannot write the compacted copy") == NULL)
        fail_msg("unexpected message: %s", msg.text);
    assert_false(exists(f->dir, NODE_STORE_COMPACT_FILE));
    size_t len1;
    uint8_t *after = data_mdb(f->dir, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    expect_usable(f);
    /* With room again it works. */
    assert_int_equal(node_store_compact(f->st, &c, &msg), NODE_OK);
    assert_int_equal(marker_in_dir(f->dir), 0);
    expect_usable(f);
}

/* Another process has the store open: the swap is refused, nothing changes, and once it has
 * closed the store the compaction works. */
static void another_process_has_the_store_open(void **state)
{
    fixture *f = *state;
    fill(f);
    int ready[2], done[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(done[1]);
        node_store *st;
        node_errmsg m;
        char b = 1;
        if (node_store_open(f->dir, MIB, 256 * MIB, &st, &m) != NODE_OK)
            _exit(2);
        if (write(ready[1], &b, 1) != 1 || read(done[0], &b, 1) != 1)
            _exit(3);
        node_store_close(st);
        _exit(0);
    }
    close(ready[1]);
    close(done[0]);
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    size_t len0;
    uint8_t *before = data_mdb(f->dir, &len0);
    node_compact c;
    node_errmsg msg = { { 0 } };
    assert_int_equal(node_store_compact(f->st, &c, &msg), NODE_EIO);
    if (strstr(msg.text, "another process has the store open") == NULL)
        fail_msg("unexpected message: %s", msg.text);
    assert_false(exists(f->dir, NODE_STORE_COMPACT_FILE));
    size_t len1;
    uint8_t *after = data_mdb(f->dir, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    expect_usable(f);
    b = 1;
    assert_int_equal(write(done[1], &b, 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(done[1]);
    assert_int_equal(node_store_compact(f->st, &c, &msg), NODE_OK);
    assert_int_equal(marker_in_dir(f->dir), 0);
    expect_usable(f);
}

/* A crash while the copy is written: a child compacts with a file size limit below the copy's
 * size and SIGXFSZ's default action, which kills it in the middle of the copy. data.mdb is byte
 * for byte what it was, the partial copy is removed at the next start (and logged), and the
 * store opens with everything in it. */
static void crash_while_copying(void **state)
{
    fixture *f = *state;
    fill(f);
    node_store_close(f->st);
    f->st = NULL;
    size_t len0;
    uint8_t *before = data_mdb(f->dir, &len0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit low = { 0, 0 };
        setrlimit(RLIMIT_CORE, &low);
        node_store *st;
        node_errmsg m;
        node_compact c;
        if (node_store_open(f->dir, MIB, 256 * MIB, &st, &m) != NODE_OK)
            _exit(2);
        getrlimit(RLIMIT_FSIZE, &low);
        low.rlim_cur = 64 * 1024;
        signal(SIGXFSZ, SIG_DFL);
        if (setrlimit(RLIMIT_FSIZE, &low) != 0)
            _exit(3);
        /* Not returning: SIGXFSZ ends the process in the middle of the copy. */
        _exit(node_store_compact(st, &c, &m) == NODE_OK ? 4 : 5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGXFSZ)
        fail_msg("the child was not killed in the middle of the copy (status %d)", status);
    assert_true(exists(f->dir, NODE_STORE_COMPACT_FILE));
    size_t len1;
    uint8_t *after = data_mdb(f->dir, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);

    /* The next start: the leftover is removed and logged. */
    char logpath[4400];
    snprintf(logpath, sizeof(logpath), "%s.log", f->dir);
    FILE *log = fopen(logpath, "w+");
    assert_non_null(log);
    node_log_set_output(log);
    uint64_t removed = 0;
    node_errmsg msg = { { 0 } };
    assert_int_equal(node_store_remove_leftover(f->dir, &removed, &msg), NODE_OK);
    node_log_set_output(NULL);
    assert_true(removed > 0);
    assert_false(exists(f->dir, NODE_STORE_COMPACT_FILE));
    fseek(log, 0, SEEK_SET);
    char line[1024] = "";
    assert_non_null(fgets(line, sizeof(line), log));
    fclose(log);
    unlink(logpath);
    assert_non_null(strstr(line, "level=warn event=store.compact.leftover"));
    assert_non_null(strstr(line, NODE_STORE_COMPACT_FILE));
    char bytes[64];
    snprintf(bytes, sizeof(bytes), " bytes=%llu ", (unsigned long long)removed);
    assert_non_null(strstr(line, bytes));
    /* None left: nothing to do, nothing logged. */
    assert_int_equal(node_store_remove_leftover(f->dir, &removed, &msg), NODE_OK);
    assert_int_equal(removed, 0);

    assert_int_equal(node_store_open(f->dir, MIB, 256 * MIB, &f->st, &msg), NODE_OK);
    expect_usable(f);
    assert_true(marker_in_dir(f->dir) > 0); /* never compacted */
}

/* A leftover found by the compaction itself (a copy that could not be removed before) is
 * replaced, not refused. */
static void leftover_at_compaction(void **state)
{
    fixture *f = *state;
    fill(f);
    assert_int_equal(write_file(f->dir, NODE_STORE_COMPACT_FILE, "half a copy"), 0);
    node_compact c;
    node_errmsg msg = { { 0 } };
    assert_int_equal(node_store_compact(f->st, &c, &msg), NODE_OK);
    assert_false(exists(f->dir, NODE_STORE_COMPACT_FILE));
    assert_int_equal(marker_in_dir(f->dir), 0);
    expect_usable(f);
}

/* ---------------------------------------------------------------------------------------- */
/* [store] compact_every_hours                                                               */

static node_err load_conf(const char *dir, const char *store, node_config *cfg, node_errmsg *msg)
{
    char text[1024], path[4400];
    snprintf(text, sizeof(text),
        "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:7401\n"
        "[network]\nadmin_pub = 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
        "%s",
        store);
    assert_int_equal(write_file(dir, "pattod.conf", text), 0);
    snprintf(path, sizeof(path), "%s/pattod.conf", dir);
    node_config_defaults(cfg);
    return node_config_load(path, cfg, msg);
}

static void compact_every_hours(void **state)
{
    fixture *f = *state;
    node_config cfg;
    node_errmsg msg = { { 0 } };
    assert_int_equal(load_conf(f->dir, "", &cfg, &msg), NODE_OK);
    assert_int_equal(cfg.compact_every_ms, UINT64_C(24) * 3600 * 1000);
    node_config_fini(&cfg);
    assert_int_equal(load_conf(f->dir, "[store]\ncompact_every_hours = 0\n", &cfg, &msg), NODE_OK);
    assert_int_equal(cfg.compact_every_ms, 0);
    node_config_fini(&cfg);
    assert_int_equal(
        load_conf(f->dir, "[store]\ncompact_every_hours = 8760\n", &cfg, &msg), NODE_OK);
    assert_int_equal(cfg.compact_every_ms, UINT64_C(8760) * 3600 * 1000);
    node_config_fini(&cfg);
    const char *bad[] = { "8761", "-1", "1.5", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char store[128];
        snprintf(store, sizeof(store), "[store]\ncompact_every_hours = %s\n", bad[i]);
        assert_int_equal(load_conf(f->dir, store, &cfg, &msg), NODE_ECONFIG);
        if (strstr(msg.text,
                "pattod.conf:8: compact_every_hours must be a whole number from 0 to "
                "8760")
            == NULL)
            fail_msg("'%s': %s", bad[i], msg.text);
        node_config_fini(&cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(deleted_bytes_leave_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(not_inside_a_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_that_cannot_be_written, setup, teardown),
        cmocka_unit_test_setup_teardown(another_process_has_the_store_open, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_while_copying, setup, teardown),
        cmocka_unit_test_setup_teardown(leftover_at_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(compact_every_hours, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
