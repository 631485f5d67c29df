/*
 * pattod's life: open the data directory, run the loop, stop cleanly on SIGINT or SIGTERM.
 * Every LMDB write happens synchronously inside a loop callback, so by the time the signal
 * callback runs no transaction is in flight.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENTITY_FILE "identity.key"

/* Read a whole small file into a malloc'd buffer (NUL-terminated, not counted). */
static node_err slurp(const char *path, size_t max, uint8_t **out, size_t *len, node_errmsg *msg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return node__fail(msg, NODE_EIO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return node__fail(
            msg, NODE_EIO, "%s is not a regular file of at most %zu bytes", path, max);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return NODE_ENOMEM;
    }
    ssize_t n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) {
        free(buf);
        return node__fail(msg, NODE_EIO, "cannot read %s: short read", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return NODE_OK;
}

static node_err load_identity(node_engine *e, node_errmsg *msg)
{
    struct stat st;
    if (stat(IDENTITY_FILE, &st) == 0 && (st.st_mode & 077) != 0)
        return node__fail(msg, NODE_ECONFIG,
            "%s is readable by others (mode %03o): chmod 600 it; it holds this "
            "node's secret keys",
            IDENTITY_FILE, (unsigned)(st.st_mode & 0777));
    uint8_t *buf = NULL;
    size_t len = 0;
    node_err err = slurp(IDENTITY_FILE, 64, &buf, &len, msg);
    if (err != NODE_OK)
        return err;
    if (len != 64) {
        proto_wipe(buf, len);
        free(buf);
        return node__fail(msg, NODE_ECONFIG,
            "%s must hold 64 bytes (two 32-byte seeds), it holds %zu", IDENTITY_FILE, len);
    }
    proto_err perr = proto_identity_from_seeds(buf, buf + 32, &e->me);
    proto_wipe(buf, len);
    free(buf);
    if (perr != PROTO_OK)
        return node__fail(msg, NODE_ECONFIG, "%s: %s", IDENTITY_FILE, proto_strerror(perr));
    return NODE_OK;
}

static node_err load_schema(node_engine *e, node_errmsg *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    node_err err = slurp(e->cfg.schema, 1 << 20, &buf, &len, msg);
    if (err != NODE_OK)
        return err;
    err = node_schema_parse((const char *)buf, len, e->cfg.schema, &e->schema, msg);
    if (err == NODE_OK)
        proto_schema_hash(buf, len, e->schema_hash);
    free(buf);
    return err;
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void net_closed(void *ctx)
{
    node_engine *e = ctx;
    e->net = NULL;
}

static void stop(node_engine *e, const char *why)
{
    if (e->stopping)
        return;
    e->stopping = true;
    NODE_INFO("node.stop", "reason=%s", why);
    if (e->timers_on) {
        uv_timer_stop(&e->tick);
        uv_close((uv_handle_t *)&e->tick, closed_cb);
        uv_timer_stop(&e->want_timer);
        uv_close((uv_handle_t *)&e->want_timer, closed_cb);
        uv_idle_stop(&e->retry_idle);
        uv_close((uv_handle_t *)&e->retry_idle, closed_cb);
        uv_idle_stop(&e->inq_idle);
        uv_close((uv_handle_t *)&e->inq_idle, closed_cb);
        uv_signal_stop(&e->sigint);
        uv_signal_stop(&e->sigterm);
        uv_close((uv_handle_t *)&e->sigint, closed_cb);
        uv_close((uv_handle_t *)&e->sigterm, closed_cb);
        e->timers_on = false;
    }
    node_links_close(e);
    node_inq_free(e);
    if (e->net != NULL)
        node_net_close(e->net, net_closed, e);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void tick_cb(uv_timer_t *t)
{
    node_anti_entropy(t->data);
}

static void engine_free(node_engine *e)
{
    for (size_t i = 0; i < e->nmembers; i++)
        free(e->members[i].vv);
    free(e->members);
    for (size_t i = 0; i < e->npending; i++)
        free(e->pending[i].bytes);
    free(e->pending);
    free(e->waits);
    free(e->wants);
    idset_free(&e->want_ix);
    idset_free(&e->wait_ix);
    if (e->have_manifest)
        proto_manifest_fini(&e->manifest);
    free(e->manifest_bytes);
    node_schema_free(e->schema);
    node_keycache_free(e);
    node_vpool_free(e->vpool);
    proto_identity_free(e->me);
    node_store_close(e->store);
    node_config_fini(&e->cfg);
}

/* The steps of a start that read the data directory: enter it, take its lock (when lock is not
 * NULL), read pattod.conf, identity.key and the schema. NODE_EINVAL: the directory could not
 * be entered or locked (logged here); other errors are in msg. */
static node_err open_dir(node_engine *e, const char *dir, int *lock, node_errmsg *msg)
{
    if (chdir(dir) != 0) {
        NODE_ERROR(
            "node.fail", "error=\"cannot enter the data directory %s: %s\"", dir, strerror(errno));
        return NODE_EINVAL;
    }
    if (getcwd(e->dir, sizeof(e->dir)) == NULL) {
        NODE_ERROR("node.fail", "error=\"cannot tell the path of the data directory %s: %s\"", dir,
            strerror(errno));
        return NODE_EINVAL;
    }
    node_config_defaults(&e->cfg);
    node_err err;
    /* The data directory is named by its absolute path in messages: "." tells nobody which. */
    if (lock != NULL && (err = node_lock_acquire(e->dir, lock, msg)) != NODE_OK) {
        NODE_ERROR("node.fail", "error=\"%s\"", msg->text);
        return NODE_EINVAL;
    }
    if ((err = node_config_load("pattod.conf", &e->cfg, msg)) != NODE_OK)
        return err;
    node_log_set_level(e->cfg.log_level);
    if (proto_init() != PROTO_OK)
        return node__fail(msg, NODE_EIO, "libsodium cannot start (no entropy source?)");
    if ((err = load_identity(e, msg)) != NODE_OK || (err = load_schema(e, msg)) != NODE_OK)
        return err;
    proto_limits_default(&e->lim);
    e->lim.max_message = e->cfg.max_message_bytes;
    return NODE_OK;
}

int node_check(const char *dir)
{
    node_engine eng;
    node_engine *e = &eng;
    memset(e, 0, sizeof(*e));
    node_errmsg msg = { { 0 } };
    node_err err = open_dir(e, dir, NULL, &msg);
    if (err == NODE_EINVAL)
        return 1; /* said already */
    /* A node that never ran has no store yet: nothing more to check. */
    if (err == NODE_OK && access("data.mdb", F_OK) == 0) {
        err = node_store_open(e->dir, e->cfg.map_size, e->cfg.map_size_max, &e->store, &msg);
        if (err == NODE_OK)
            err = node_manifest_load(e, &msg);
        if (err == NODE_OK)
            err = node_config_dials_fit(e, &e->manifest, &msg);
    }
    int code = 0;
    if (err == NODE_OK || err == NODE_ENOTFOUND) {
        char hash[65];
        proto_hex_encode(e->schema_hash, 32, hash);
        printf("pattod: %s: pattod.conf, %s and %s (schema %.16s) are valid", e->dir, IDENTITY_FILE,
            e->cfg.schema, hash);
        if (e->have_manifest)
            printf("; manifest version %llu fits this node (org %s)\n",
                (unsigned long long)e->manifest.version, e->cfg.org);
        else
            printf("; no manifest imported yet\n");
    } else {
        NODE_ERROR("node.check", "dir=%s error=\"%s\"", e->dir, msg.text);
        code = 1;
    }
    engine_free(e);
    return code;
}

int node_run(const char *dir)
{
    node_engine eng;
    node_engine *e = &eng;
    memset(e, 0, sizeof(*e));
    node_errmsg msg = { { 0 } };
    int lock = -1;
    int code = 1;
    uv_loop_t loop;
    bool loop_ok = false;

    e->started_ms = node_now_ms();
    node_err err = open_dir(e, dir, &lock, &msg);
    if (err == NODE_EINVAL)
        return 1; /* said already */
    if (err != NODE_OK)
        goto fail;
    if ((err = node_store_open(e->dir, e->cfg.map_size, e->cfg.map_size_max, &e->store, &msg))
        != NODE_OK)
        goto fail;
    if ((err = node_engine_load(e, &msg)) != NODE_OK
        || (err = node_vpool_new(node_vpool_default_workers(), &e->vpool, &msg)) != NODE_OK)
        goto fail;
    if (uv_loop_init(&loop) != 0) {
        node__fail(&msg, NODE_EIO, "cannot start the event loop");
        goto fail;
    }
    loop_ok = true;
    e->loop = &loop;
    e->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
    /* Every handle is initialised before anything can fail, so that stop() may close them all
     * whatever the point of failure. */
    uv_signal_init(&loop, &e->sigint);
    uv_signal_init(&loop, &e->sigterm);
    e->sigint.data = e->sigterm.data = e;
    uv_timer_init(&loop, &e->tick);
    e->tick.data = e;
    uv_timer_init(&loop, &e->want_timer);
    e->want_timer.data = e;
    uv_idle_init(&loop, &e->retry_idle);
    e->retry_idle.data = e;
    uv_idle_init(&loop, &e->inq_idle);
    e->inq_idle.data = e;
    e->timers_on = true;
    if ((err = node_net_open(
             &loop, e->cfg.listen, e->cfg.max_message_bytes, node_net_event, e, &e->net, &msg))
        != NODE_OK) {
        e->net = NULL;
        goto fail;
    }
    uv_signal_start(&e->sigint, signal_cb, SIGINT);
    uv_signal_start(&e->sigterm, signal_cb, SIGTERM);
    uv_timer_start(&e->tick, tick_cb, e->cfg.anti_entropy_ms, e->cfg.anti_entropy_ms);
    node_wants_schedule(e);
    if (e->nwaits > 0)
        node_retry_waits(e); /* what node_engine_load left for the loop */
    node_peers_sync(e);
    char origin[65];
    proto_hex_encode(proto_identity_origin(e->me), 32, origin);
    NODE_INFO("node.start", "org=%s role=%s listen=%s port=%u origin=%s manifest=%llu pid=%ld",
        e->cfg.org, e->cfg.role, e->cfg.listen, (unsigned)node_net_port(e->net), origin,
        e->have_manifest ? (unsigned long long)e->manifest.version : 0ULL, (long)getpid());
    uv_run(&loop, UV_RUN_DEFAULT);
    code = 0;
    goto done;

fail:
    NODE_ERROR("node.fail", "error=\"%s\"", msg.text);
done:
    if (loop_ok) {
        if (!e->stopping)
            stop(e, "error");
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            NODE_WARN("node.stop", "detail=\"event loop closed with handles open\"");
    }
    engine_free(e);
    node_lock_release(lock);
    if (code == 0)
        NODE_INFO("node.stopped", "org=%s", e->cfg.org[0] ? e->cfg.org : "?");
    return code;
}
