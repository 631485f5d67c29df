/*
 * The engine's life and its entry points from the host: open (the store and what it holds),
 * run, stop, free; wire events and control requests; scheduled work; the periodic tick. The
 * host is the daemon (daemon.c: libuv and nng) or a test's simulation (a fake clock and wire):
 * both drive the engine through these functions only. May call: ctl.c, peers.c, sync.c,
 * apply.c, rebuild.c, ingest.c, load.c, state.c, link.c, ledger.c, store.c, vpool.c.
 */
#include "core.h"
#include "findidx.h"

#include <stdlib.h>
#include <string.h>

static node_err layout_cb(node_txn *t, void *ctx)
{
    node_engine *e = ctx;
    node_err err = node__ledger_layout(t);
    /* a store from before the find index: index what it holds, once */
    return err == NODE_OK ? node__ledger_find_build(t, &e->lim) : err;
}

node_err node__engine_open(node_engine *e, unsigned workers, node_errmsg *msg)
{
    node__budget_split(&e->cfg, &e->budget);
    node_err err = node_store_open(e->dir, e->cfg.map_size, e->cfg.map_size_max, &e->store, msg);
    if (err != NODE_OK)
        return err;
    if ((err = node_store_write(e->store, layout_cb, e, msg)) == NODE_ECONFIG)
        return node__fail(msg, NODE_ECONFIG,
            "the store in %s was written by a pattod of an earlier protocol version, which "
            "this pattod (protocol version %d) cannot read: move data.mdb and lock.mdb away and "
            "let the node sync again from its peers",
            e->dir, PROTO_VERSION);
    if (err != NODE_OK)
        return err;
    err = node__manifest_load(e, msg);
    if (err == NODE_OK && (err = node__config_dials_fit(e, &e->manifest, msg)) == NODE_OK)
        err = node__members_rebuild(e);
    if (err != NODE_OK && err != NODE_ENOTFOUND)
        return err;
    if ((err = node__load_store(e, msg)) != NODE_OK)
        return err;
    (void)node__retired_voids(e); /* a manifest taken just before a crash: logged if it fails */
    if ((e->scope_gen = calloc(NODE_SCOPE_SLOTS, sizeof(*e->scope_gen))) == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory");
    return node__vpool_new(workers, &e->vpool, msg);
}

void node__engine_run(node_engine *e)
{
    if (e->wants.n > 0)
        node__wants_schedule(e);
    if (e->waits.n > 0)
        node__retry_waits(e); /* what the store left */
    node__peers_sync(e);
}

void node__engine_stop(node_engine *e)
{
    e->stopping = true;
    node__links_close(e);
    node__inq_free(e);
}

void node__engine_free(node_engine *e)
{
    node__links_close(e);
    node__inq_free(e);
    for (size_t i = 0; i < e->nmembers; i++) {
        free(e->members[i].vv);
        free(e->members[i].skip);
    }
    free(e->members);
    for (size_t i = 0; i < e->pending.n; i++)
        free(e->pending.v[i].bytes);
    NODE_VEC_FREE(&e->pending);
    NODE_VEC_FREE(&e->pending_stats);
    NODE_VEC_FREE(&e->held_back);
    NODE_VEC_FREE(&e->waits);
    NODE_VEC_FREE(&e->wants);
    node__idset_free(&e->want_ix);
    node__idset_free(&e->gopened);
    node__park_free(e);
    node__idset_free(&e->wait_ix);
    if (e->have_manifest)
        proto_manifest_fini(&e->manifest);
    free(e->manifest_bytes);
    free(e->scope_gen);
    node_schema_free(e->schema);
    node_schema_free(e->schema_next);
    free(e->schema_bytes);
    free(e->schema_next_bytes);
    node__keycache_free(e);
    node__hintkeys_free(e);
    node__vpool_free(e->vpool);
    proto_identity_free(e->me);
    node_store_close(e->store);
    node_config_fini(&e->cfg);
}

void node__event(
    node_engine *e, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data, size_t len)
{
    if (e->stopping)
        return;
    if (ev == NODE_NET_CONTROL)
        node__ctl_handle(e, data, len);
    else
        node__peers_event(e, ev, pipe, dialer, data, len);
    node__links_reap(e);
}

void node__work_run(node_engine *e, node_work w)
{
    if (e->stopping)
        return;
    switch (w) {
    case NODE_WORK_INQ:
        if (node__sync_step(e))
            e->host.schedule(e->host.ctx, NODE_WORK_INQ, 0);
        break;
    case NODE_WORK_APPLY:
        node__retry_waits(e);
        node__ingest_parked(e);
        break;
    case NODE_WORK_WANTS:
        node__wants_due(e);
        break;
    case NODE_WORK_LISTS:
        node__lists_refill(e);
        break;
    case NODE_WORK_LINKS:
        node__links_due(e);
        break;
    case NODE_WORK_COUNT:
        break;
    }
    node__links_reap(e);
}

void node__ended_tick(node_engine *e)
{
    uint64_t now = node__mono(e);
    if (!e->have_manifest || e->removed || (e->ended_due_ms != 0 && now < e->ended_due_ms))
        return;
    node_errmsg settle;
    if (node__own_log_settled(e, &settle) != NODE_OK) {
        e->ended_due_ms = now + 2000; /* a peer has not said yet what it holds of this log */
        return;
    }
    e->ended_due_ms = now + NODE_ENDED_EVERY_MS;
    size_t closed = 0, total = 0;
    bool more = false;
    node_err err = NODE_OK;
    do {
        node_outs outs = { NULL, 0, 0 };
        node_errmsg msg = { { 0 } };
        err = node__close_ended(e, 1000, &closed, &more, &outs, &msg);
        node__push(e, &outs);
        node__outs_free(&outs);
        total += err == NODE_OK ? closed : 0;
        if (err != NODE_OK) {
            NODE_WARN("consent.close", "error=\"%s\" detail=\"tried again in 30 s\"",
                node__logq(msg.text));
            e->ended_due_ms = now + 30 * 1000;
        }
    } while (err == NODE_OK && more && closed > 0);
    if (total > 0)
        NODE_INFO(
            "consent.closed", "scopes=%zu detail=\"grants that ended: narrowed, re-keyed\"", total);
}

void node__tick(node_engine *e)
{
    if (e->stopping)
        return;
    node__ended_tick(e);
    node__park_expire(e);
    node__lists_refill(e);
    node__alerts_tick(e);
    node__peers_tick(e);
    node__anti_entropy(e);
    node__links_reap(e);
}
