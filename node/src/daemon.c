/*
 * pattod's life: open the data directory, run the loop, stop cleanly on SIGINT or SIGTERM.
 * Every LMDB write happens synchronously inside a loop callback, so by the time the signal
 * callback runs no transaction is in flight. The daemon is the engine's host (node_host):
 * libuv timers and idle handles for its deferred work, nng through net.c; the store's
 * compaction on its schedule ([store] compact_every_hours), on the loop thread like every other
 * store call, so the node does nothing else while it runs. May call: engine.c, net.c, state.c
 * (the manifest check of --check-config), config.c, schema.c, lock.c, store.c.
 */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENTITY_FILE "identity.key"

/* glibc's malloc, tuned below; not under AddressSanitizer, whose allocator ignores it. */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define HEAP_TUNED 1
#include <malloc.h>
/* A block this large or larger is mapped on its own and given back to the system when freed;
 * and once this much is free at the top of the heap, free() gives it back (the trim threshold). */
#define HEAP_MMAP_MIN (256u * 1024u)
/* The free pages inside the heap are given back once this many more bytes are free than after
 * the last time. */
#define HEAP_FREE_MAX ((size_t)4 << 20)
#endif

/* How the C library keeps the heap, set before any thread starts (node/CONFIG.md "Memory"):
 * large blocks (messages, answers) mapped apart, given back as soon as they are freed, whatever
 * sizes came before (a fixed threshold: glibc would otherwise raise it after each large free).
 * The workload's full sync: B's RssAnon peak 84 MiB with it, 100 MiB without. (One arena for
 * every thread as well was tried: the loop and the sealer then wait for each other's mallocs,
 * and local writes ran a quarter slower.) */
static void heap_setup(void)
{
#ifdef HEAP_TUNED
    if (mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_MIN) != 1
        || mallopt(M_TRIM_THRESHOLD, HEAP_MMAP_MIN) != 1)
        NODE_WARN("node.heap",
            "detail=\"the C library refused a heap setting; the heap may "
            "hold more free pages than the memory budget counts\"");
#endif
}

/* Give the free pages inside the heap back to the system once HEAP_FREE_MAX more bytes are free
 * than after the last time (a trim leaves its free blocks in the heap, their pages given back):
 * a catch-up frees many small blocks (parked bodies, decoded headers) among live ones, and
 * without this the process keeps their pages. */
static void heap_trim(size_t *last)
{
#ifdef HEAP_TUNED
    size_t free_now = mallinfo2().fordblks;
    if (free_now < *last)
        *last = free_now;
    if (free_now - *last > HEAP_FREE_MAX) {
        malloc_trim(0);
        *last = mallinfo2().fordblks;
    }
#else
    (void)last;
#endif
}

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
    if (err != NODE_OK) {
        free(buf);
        return err;
    }
    proto_schema_hash(buf, len, e->schema_hash);
    e->schema_bytes = buf; /* kept with the manifest that names it (state.c) */
    e->schema_len = len;
    return NODE_OK;
}

/* The daemon: the engine, and what it runs in (a libuv loop, nng through net.c). */
typedef struct daemon {
    node_engine e;
    uv_loop_t loop;
    node_net *net;
    uv_timer_t tick;
    uv_timer_t compact;                     /* [store] compact_every_hours */
    uv_timer_t work_timer[NODE_WORK_COUNT]; /* node_work after a delay */
    uv_idle_t work_idle[NODE_WORK_COUNT];   /* node_work in the next loop turn */
    uv_signal_t sigint, sigterm;
    bool handles_on;   /* every handle above is initialised */
    bool store_failed; /* a compaction left the store closed: stop, exit 1 */
    size_t heap_free;  /* the heap's free bytes after the last trim, or fewer since (heap_trim) */
} daemon;

/* Test builds only (CMake PATTO_TEST_CLOCK, off in Release builds): the node's wall clock moved
 * by PATTOD_TEST_CLOCK_OFFSET_MS (at most ten years either way), so that tests see expiries
 * pass without waiting a day. The start logs it at level warn. */
static int64_t clock_offset_ms;

static void test_clock_init(void)
{
#ifdef PATTO_TEST_CLOCK
    const char *v = getenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    if (v == NULL || *v == 0)
        return;
    char *end = NULL;
    errno = 0;
    long long ms = strtoll(v, &end, 10);
    const long long most = 10LL * 366 * 86400 * 1000;
    if (errno != 0 || *end != 0 || ms < -most || ms > most) {
        NODE_ERROR("clock.test",
            "detail=\"PATTOD_TEST_CLOCK_OFFSET_MS is not a whole number of "
            "milliseconds within ten years: ignored\"");
        return;
    }
    clock_offset_ms = ms;
    NODE_WARN(
        "clock.test", "offset_ms=%lld detail=\"a test build: this node's clock is moved\"", ms);
#endif
}

static uint64_t host_now(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return clock_offset_ms < 0 && (uint64_t)-clock_offset_ms > now
        ? 0
        : (uint64_t)((int64_t)now + clock_offset_ms);
}

static uint64_t host_mono(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1;
}

static node_err host_send(void *ctx, uint32_t pipe, const uint8_t *buf, size_t len)
{
    daemon *d = ctx;
    return d->net != NULL ? node__net_send(d->net, pipe, buf, len) : NODE_ENOTFOUND;
}

static void host_net_queued(void *ctx, size_t *unread, size_t *send)
{
    daemon *d = ctx;
    *unread = *send = 0;
    if (d->net != NULL)
        node__net_queued(d->net, unread, send);
}

static void host_drop(void *ctx, uint32_t pipe)
{
    daemon *d = ctx;
    if (d->net != NULL)
        node__net_drop(d->net, pipe);
}

static void host_trust(void *ctx, uint32_t pipe)
{
    daemon *d = ctx;
    if (d->net != NULL)
        node__net_trust(d->net, pipe);
}

static node_err host_dial(void *ctx, const char *url, uint32_t *dialer, node_errmsg *msg)
{
    daemon *d = ctx;
    return d->net != NULL ? node__net_dial(d->net, url, dialer, msg) : NODE_EIO;
}

static void host_undial(void *ctx, uint32_t dialer)
{
    daemon *d = ctx;
    if (d->net != NULL)
        node__net_undial(d->net, dialer);
}

static void host_ctl_reply(void *ctx, const uint8_t *buf, size_t len)
{
    daemon *d = ctx;
    if (d->net != NULL)
        (void)node__net_ctl_reply(d->net, buf, len);
}

static void host_ctl_user(void *ctx, char *out, size_t size)
{
    daemon *d = ctx;
    out[0] = 0;
    if (d->net != NULL)
        node__net_ctl_user(d->net, out, size);
}

static void work_idle_cb(uv_idle_t *h)
{
    daemon *d = h->data;
    uv_idle_stop(h);
    node__work_run(&d->e, (node_work)(h - d->work_idle));
}

static void work_timer_cb(uv_timer_t *t)
{
    daemon *d = t->data;
    node__work_run(&d->e, (node_work)(t - d->work_timer));
}

/* node_work(w) no later than delay_ms from now: an earlier request that is due sooner stays. */
static void host_schedule(void *ctx, node_work w, uint64_t delay_ms)
{
    daemon *d = ctx;
    if (!d->handles_on || d->e.stopping || (unsigned)w >= NODE_WORK_COUNT)
        return;
    if (delay_ms == 0) {
        if (!uv_is_active((uv_handle_t *)&d->work_idle[w]))
            uv_idle_start(&d->work_idle[w], work_idle_cb);
        return;
    }
    uv_timer_t *t = &d->work_timer[w];
    if (uv_is_active((uv_handle_t *)t) && uv_timer_get_due_in(t) <= delay_ms)
        return;
    uv_timer_start(t, work_timer_cb, delay_ms, 0);
}

static void stop(daemon *d, const char *why);

/* A compaction (a control request's or the schedule's) that could not open the store again
 * leaves the node without one: it stops, and exits 1 so that its service manager restarts it. */
static void check_store(daemon *d)
{
    if (d->e.store != NULL && !node_store_is_open(d->e.store) && !d->store_failed) {
        d->store_failed = true;
        NODE_ERROR("node.fail",
            "error=\"the store is closed after a compaction that could not open it again: "
            "stopping; start pattod again\"");
        stop(d, "store");
    }
}

static void net_cb(
    void *ctx, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data, size_t len)
{
    daemon *d = ctx;
    node__event(&d->e, ev, pipe, dialer, data, len);
    if (ev == NODE_NET_CONTROL)
        check_store(d);
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void net_closed(void *ctx)
{
    daemon *d = ctx;
    d->net = NULL;
}

static void stop(daemon *d, const char *why)
{
    if (d->e.stopping)
        return;
    NODE_INFO("node.stop", "reason=%s", why);
    node__engine_stop(&d->e);
    if (d->handles_on) {
        uv_timer_stop(&d->tick);
        uv_close((uv_handle_t *)&d->tick, closed_cb);
        uv_timer_stop(&d->compact);
        uv_close((uv_handle_t *)&d->compact, closed_cb);
        for (int w = 0; w < NODE_WORK_COUNT; w++) {
            uv_timer_stop(&d->work_timer[w]);
            uv_close((uv_handle_t *)&d->work_timer[w], closed_cb);
            uv_idle_stop(&d->work_idle[w]);
            uv_close((uv_handle_t *)&d->work_idle[w], closed_cb);
        }
        uv_signal_stop(&d->sigint);
        uv_signal_stop(&d->sigterm);
        uv_close((uv_handle_t *)&d->sigint, closed_cb);
        uv_close((uv_handle_t *)&d->sigterm, closed_cb);
        d->handles_on = false;
    }
    if (d->net != NULL)
        node__net_close(d->net, net_closed, d);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void tick_cb(uv_timer_t *t)
{
    daemon *d = t->data;
    node__tick(&d->e);
    heap_trim(&d->heap_free);
}

/* [store] compact_every_hours: the store file rewritten without its free pages (node.h,
 * node_store_compact). It runs here, on the loop thread, between two callbacks: no transaction
 * is open, and nothing else runs until it is done (logged as pause_ms). */
static void compact_cb(uv_timer_t *t)
{
    daemon *d = t->data;
    if (d->e.stopping)
        return;
    node_compact c;
    node_errmsg msg = { { 0 } };
    node_err err = node_store_compact(d->e.store, &c, &msg);
    if (err == NODE_OK)
        NODE_INFO("store.compact",
            "trigger=schedule pause_ms=%llu bytes_before=%llu bytes_after=%llu "
            "disk_needed_bytes=%llu",
            (unsigned long long)c.pause_ms, (unsigned long long)c.bytes_before,
            (unsigned long long)c.bytes_after, (unsigned long long)c.disk_needed);
    else
        NODE_ERROR("store.compact", "trigger=schedule error=\"%s\"", node__logq(msg.text));
    check_store(d);
}

/* Every handle is initialised before anything can fail, so that stop() may close them all
 * whatever the point of failure. */
static void handles_init(daemon *d)
{
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_init(&d->loop, &d->compact);
    d->compact.data = d;
    for (int w = 0; w < NODE_WORK_COUNT; w++) {
        uv_timer_init(&d->loop, &d->work_timer[w]);
        d->work_timer[w].data = d;
        uv_idle_init(&d->loop, &d->work_idle[w]);
        d->work_idle[w].data = d;
    }
    d->handles_on = true;
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
            err = node__manifest_load(e, &msg);
        if (err == NODE_OK)
            err = node__config_dials_fit(e, &e->manifest, &msg);
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
    node__engine_free(e);
    return code;
}

int node_run(const char *dir)
{
    daemon *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        NODE_ERROR("node.fail", "error=\"out of memory\"");
        return 1;
    }
    node_engine *e = &d->e;
    node_errmsg msg = { { 0 } };
    int lock = -1;
    int code = 1;
    bool loop_ok = false;

    test_clock_init();
    heap_setup();
    e->host = (node_host) { d, host_now, host_mono, host_send, host_drop, host_trust, host_dial,
        host_undial, host_ctl_reply, host_schedule, host_ctl_user, host_net_queued };
    e->started_ms = host_mono(d);
    node_err err = open_dir(e, dir, &lock, &msg);
    if (err == NODE_EINVAL) {
        node__engine_free(e);
        free(d);
        return 1; /* said already */
    }
    /* The copy of a compaction that a crash or a kill interrupted (logged when there is one):
     * removed here, with the directory's lock held, never by a process that may run beside
     * the node (--check-config). */
    if (err == NODE_OK)
        err = node_store_remove_leftover(e->dir, NULL, &msg);
    if (err != NODE_OK
        || (err = node__engine_open(e, node__vpool_default_workers(), &msg)) != NODE_OK)
        goto fail;
    if (uv_loop_init(&d->loop) != 0) {
        node__fail(&msg, NODE_EIO, "cannot start the event loop");
        goto fail;
    }
    loop_ok = true;
    e->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
    handles_init(d);
    if ((err = node__net_open(&d->loop, e->cfg.listen, e->cfg.max_message_bytes, &e->budget, net_cb,
             d, &d->net, &msg))
        != NODE_OK) {
        d->net = NULL;
        goto fail;
    }
    uv_signal_start(&d->sigint, signal_cb, SIGINT);
    uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
    uv_timer_start(&d->tick, tick_cb, e->cfg.anti_entropy_ms, e->cfg.anti_entropy_ms);
    /* The first compaction comes compact_every_hours after the start, then as often. */
    if (e->cfg.compact_every_ms > 0)
        uv_timer_start(&d->compact, compact_cb, e->cfg.compact_every_ms, e->cfg.compact_every_ms);
    node__engine_run(e);
    char origin[65];
    proto_hex_encode(proto_identity_origin(e->me), 32, origin);
    NODE_INFO("node.start", "org=%s role=%s listen=%s port=%u origin=%s manifest=%llu pid=%ld",
        e->cfg.org, e->cfg.role, e->cfg.listen, (unsigned)node__net_port(d->net), origin,
        e->have_manifest ? (unsigned long long)e->manifest.version : 0ULL, (long)getpid());
    uv_run(&d->loop, UV_RUN_DEFAULT);
    code = d->store_failed ? 1 : 0;
    goto done;

fail:
    NODE_ERROR("node.fail", "error=\"%s\"", msg.text);
done:
    if (loop_ok) {
        if (!e->stopping)
            stop(d, "error");
        uv_run(&d->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&d->loop) != 0)
            NODE_WARN("node.stop", "detail=\"event loop closed with handles open\"");
    }
    char org[NODE_ORG_MAX + 1];
    snprintf(org, sizeof(org), "%s", e->cfg.org[0] ? e->cfg.org : "?");
    node__engine_free(e);
    node_lock_release(lock);
    free(d);
    if (code == 0)
        NODE_INFO("node.stopped", "org=%s", org);
    return code;
}
