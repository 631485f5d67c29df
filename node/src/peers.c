/*
 * Peers: the handshake on every connection, then the session (ARCHITECTURE.md, section 5),
 * keepalives and redials. A connection that has not finished the handshake within [sync]
 * handshake_timeout_ms, or that sends anything else first, is dropped. A non-member gets
 * nothing: the responder answers every HELLO (whether it answers must not tell which origins
 * are members) and checks membership once HELLO_FINISH proves the initiator's key. Session messages
 * go to the inbound queue (inq.c) or straight to the sync protocol (sync.c). May call: sync.c,
 * inq.c, link.c, state.c, proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* HELLO is answered whoever it names: whether a reply comes must not tell a stranger which
 * origins are members (the reply is this node's own signature, the same for every name).
 * Membership is checked once HELLO_FINISH has proven the initiator holds its key. */
static bool any_origin_cb(void *ctx, const uint8_t origin[PROTO_ORIGIN_LEN])
{
    (void)ctx;
    (void)origin;
    return true;
}

static void peer_reject(node_engine *e, node_link *l, proto_err perr, const proto_diag *diag);

static void established(node_engine *e, node_link *l)
{
    memcpy(l->peer, proto_session_peer(l->sess), 32);
    node_member *m = node__member_by_origin(e, l->peer);
    const proto_member_key *key = NULL;
    node_member *former = m == NULL ? node__author(e, l->peer, &key) : NULL;
    if (former != NULL && key != NULL && key->retired && !former->self && e->have_manifest) {
        /* A node the manifest in force removed (its key retired) proved its key: it is handed
         * that manifest, which tells it so (it stops writing and dialling), and nothing else. */
        proto_buf mb = { e->manifest_bytes, e->manifest_len };
        if (node__link_send(e, l, &mb)) {
            uint64_t held;
            char cause[PROTO_ORG_MAX + 16];
            snprintf(cause, sizeof(cause), "farewell %s", former->org); /* one line per org */
            node_log(node__link_log_level(e, l, cause, NODE_LOG_INFO, &held), "peer.farewell",
                "org=%s addr=%s version=%" PRIu64 " detail=\"removed from the network: sent the "
                "manifest, then closing\" held=%" PRIu64,
                former->org, l->addr, e->manifest.version, held);
            l->farewell = true;
            l->born_ms = node__mono(e);
            e->host.schedule(e->host.ctx, NODE_WORK_LINKS, e->cfg.handshake_timeout_ms);
        }
        return;
    }
    if (m == NULL || m->self) {
        /* Refused without a word: the stranger proved its key, and learns nothing more. */
        proto_diag none = { 0, "" };
        peer_reject(e, l, PROTO_ENOTMEMBER, &none);
        return;
    }
    l->state = LINK_UP;
    if (e->first_up_ms == 0)
        e->first_up_ms = node__mono(e);
    e->host.trust(e->host.ctx, l->pipe);
    m->last_heard_ms = l->rx_ms = l->tx_ms = node__mono(e);
    NODE_INFO(
        "peer.up", "org=%s pipe=%" PRIu32 " dialled=%s", m->org, l->pipe, l->dialer ? "yes" : "no");
    /* Both sides dial, so a pair usually has two links. Version vectors are exchanged on the
     * first to come up only: each would be answered with the same headers and bodies. */
    bool second = false;
    for (node_link *o = e->links; o != NULL && !second; o = o->next)
        second = o != l && o->state == LINK_UP && !o->closing && memcmp(o->peer, l->peer, 32) == 0;
    if (m->pipe == 0)
        m->pipe = l->pipe;
    if (e->have_manifest) {
        proto_buf mb = { e->manifest_bytes, e->manifest_len };
        if (!node__link_send(e, l, &mb))
            return;
    }
    if (!second)
        node__send_vv(e, m, l, false);
    if (!m->vv_seen)
        node__send_ping(e, l); /* its answer bounds how long m's version vector may take */
}

static const char *const stage_names[] = { "hello-reply", "hello", "hello-finish", "session" };

/* A handshake or session frame refused: one readable line per address and cause (then
 * backing off), and the link dropped without a line of its own. A node that has no manifest
 * yet refuses everyone: that is said once as what it is. */
static void peer_reject(node_engine *e, node_link *l, proto_err perr, const proto_diag *diag)
{
    const char *reason = proto_strerror(perr);
    if (!e->have_manifest && perr == PROTO_ENOTMEMBER)
        reason = "this node has no manifest yet, so it knows no member: import one with "
                 "'patto manifest import FILE'";
    uint64_t held;
    node_log_level lv = node__link_log_level(e, l, reason, NODE_LOG_WARN, &held);
    char detail[160] = "";
    if (diag->reason[0] != 0)
        snprintf(detail, sizeof(detail), " detail=\"%s at byte %zu\"", diag->reason, diag->offset);
    node_log(lv, "peer.reject", "addr=%s org=%s stage=%s reason=\"%s\"%s held=%" PRIu64, l->addr,
        node__link_org(e, l), stage_names[l->state], reason, detail, held);
    uint32_t pipe = l->pipe;
    node__link_free(e, l);
    e->host.drop(e->host.ctx, pipe);
}

static void on_pipe_message(node_engine *e, node_link *l, const uint8_t *data, size_t len)
{
    proto_diag diag = { 0, "" };
    proto_buf out = { NULL, 0 };
    proto_err perr = PROTO_OK;
    if (l->farewell)
        return; /* a removed node: told, nothing more is read from it */
    switch (l->state) {
    case LINK_WAIT_HELLO:
        perr = proto_hs_respond(e->me, any_origin_cb, e, data, len, NULL, &l->hs, &out, &diag);
        if (perr == PROTO_OK) {
            node_err err = e->host.send(e->host.ctx, l->pipe, out.p, out.len);
            proto_buf_free(&out);
            if (err != NODE_OK) {
                node__link_drop(e, l, "cannot send HELLO_REPLY");
                return;
            }
            l->state = LINK_WAIT_FINISH;
            return;
        }
        break;
    case LINK_WAIT_REPLY:
        perr = proto_hs_finish(l->hs, data, len, &out, &l->sess, &diag);
        if (perr == PROTO_OK) {
            node_err err = e->host.send(e->host.ctx, l->pipe, out.p, out.len);
            proto_buf_free(&out);
            if (err != NODE_OK) {
                node__link_drop(e, l, "cannot send HELLO_FINISH");
                return;
            }
            established(e, l);
            return;
        }
        break;
    case LINK_WAIT_FINISH:
        perr = proto_hs_accept(l->hs, data, len, &l->sess, &diag);
        if (perr == PROTO_OK) {
            established(e, l);
            return;
        }
        break;
    case LINK_UP: {
        node_member *m = node__member_by_origin(e, l->peer);
        if (m == NULL) {
            node__link_drop(e, l, "no longer a member");
            return;
        }
        perr = proto_session_open(l->sess, data, len, &e->lim, &out, &diag);
        if (perr != PROTO_OK)
            break;
        m->last_heard_ms = l->rx_ms = node__mono(e);
        unsigned kind = 0;
        perr = proto_peek(out.p, out.len, &e->lim, &kind, &diag);
        if (perr != PROTO_OK) {
            /* A member's message that is not one: refused, the session goes on. */
            uint64_t held;
            node_log(node__link_log_level(e, l, proto_strerror(perr), NODE_LOG_WARN, &held),
                "peer.reject",
                "addr=%s org=%s stage=session reason=\"%s\" detail=\"%s at byte %zu\" "
                "held=%" PRIu64,
                l->addr, m->org, proto_strerror(perr), diag.reason, diag.offset, held);
        } else {
            /* The queue's bound: beyond it, work it down before taking more (reading waits
             * meanwhile). What that runs may change the member table (a newer manifest) or
             * drop this link, so both are looked up again after it. */
            while (node__inq_full(e) && !e->stopping)
                (void)node__sync_step(e);
            m = node__member_by_origin(e, l->peer);
            if (m == NULL || l->sess == NULL || e->stopping) {
                /* the member left, or the link went: the message goes with it */
            } else if (!node__inq_take(e, l, m, kind, &out)) {
                node__sync_message(e, l, m, kind, out.p, out.len);
            }
        }
        proto_buf_free(&out);
        return;
    }
    }
    peer_reject(e, l, perr, &diag);
}

/* Connections waiting for their handshake: at most PENDING_LINKS_MAX in all and
 * PENDING_LINKS_PER_ADDR from one address (its IP), so that strangers opening connections
 * cannot hold more than that many handshake-sized buffers (conn.c) or deadlines. NULL when l
 * may wait, else why it is dropped. */
#define PENDING_LINKS_MAX 64
#define PENDING_LINKS_PER_ADDR 16

static size_t ip_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon != NULL ? (size_t)(colon - addr) : strlen(addr);
}

static const char *too_many_waiting(node_engine *e, const node_link *l)
{
    size_t all = 0, same = 0, n = ip_len(l->addr);
    for (const node_link *o = e->links; o != NULL; o = o->next) {
        if (o->state == LINK_UP || o->closing || o->dialer != 0)
            continue;
        all++;
        same += ip_len(o->addr) == n && memcmp(o->addr, l->addr, n) == 0;
    }
    if (all > PENDING_LINKS_MAX)
        return "too many connections waiting for their handshake";
    if (same > PENDING_LINKS_PER_ADDR)
        return "too many connections from one address waiting for their handshake";
    return NULL;
}

void node__peers_event(
    node_engine *e, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data, size_t len)
{
    node_link *l = node__link_find(e, pipe);
    if (ev == NODE_NET_PIPE_UP) {
        if (l != NULL)
            return;
        if ((l = calloc(1, sizeof(*l))) == NULL) {
            e->host.drop(e->host.ctx, pipe);
            return;
        }
        l->eng = e;
        l->pipe = pipe;
        l->dialer = dialer;
        snprintf(l->addr, sizeof(l->addr), "%.*s", (int)(len < 63 ? len : 63),
            data != NULL ? (const char *)data : "?");
        l->born_ms = node__mono(e);
        e->host.schedule(e->host.ctx, NODE_WORK_LINKS, e->cfg.handshake_timeout_ms);
        l->next = e->links;
        e->links = l;
        l->state = LINK_WAIT_HELLO;
        const char *crowd = e->removed ? "this node was removed from the network"
            : dialer == 0              ? too_many_waiting(e, l)
                                       : NULL;
        if (crowd != NULL) {
            node__link_drop(e, l, crowd);
            return;
        }
        if (dialer != 0) {
            node_member *m = NULL;
            for (size_t i = 0; i < e->nmembers && m == NULL; i++)
                if (e->members[i].dialer == dialer)
                    m = &e->members[i];
            if (m == NULL) {
                node__link_drop(e, l, "dialled a member that left the manifest");
                return;
            }
            memcpy(l->peer, m->origin, 32);
            proto_buf hello = { NULL, 0 };
            if (proto_hs_initiate(e->me, m->origin, NULL, &l->hs, &hello) != PROTO_OK
                || e->host.send(e->host.ctx, pipe, hello.p, hello.len) != NODE_OK) {
                proto_buf_free(&hello);
                node__link_drop(e, l, "cannot start the handshake");
                return;
            }
            proto_buf_free(&hello);
            l->state = LINK_WAIT_REPLY;
        }
        return;
    }
    if (l == NULL)
        return;
    if (ev == NODE_NET_PIPE_DOWN) {
        node_member *m = node__member_by_origin(e, l->peer);
        int wl = (int)(len < 160 ? len : 160);
        const char *why = data != NULL ? (const char *)data : "";
        uint64_t held = 0;
        if (l->state == LINK_UP)
            NODE_INFO(
                "peer.down", "org=%s addr=%s reason=\"%.*s\"", m ? m->org : "?", l->addr, wl, why);
        else
            node_log(
                node__link_log_level(e, l, "closed during the handshake", NODE_LOG_INFO, &held),
                "peer.drop",
                "addr=%s org=%s stage=%s reason=\"closed during the handshake: %.*s\" "
                "held=%" PRIu64,
                l->addr, m ? m->org : "unknown", stage_names[l->state], wl, why, held);
        node__link_free(e, l);
        return;
    }
    on_pipe_message(e, l, data, len);
}

/* A link on which nothing arrived for idle_timeout_ms is dropped (and made again by the
 * dialler): after a partition a half-open TCP connection reports no error, and the link
 * would carry pushes into the void while the dialler never redials. A link quiet for a third
 * of that gets a ping (an empty WANT, which the peer answers with an empty BODIES), so a
 * healthy idle link always has something arriving, whatever the peer's own settings. */
static void keepalive(node_engine *e)
{
    uint64_t now = node__mono(e), idle = e->cfg.idle_timeout_ms;
    node_link *next;
    for (node_link *l = e->links; l != NULL; l = next) {
        next = l->next;
        if (l->state != LINK_UP || l->closing)
            continue;
        if (now - l->rx_ms >= idle) {
            char why[96];
            snprintf(why, sizeof(why), "nothing heard for %" PRIu64 " ms", now - l->rx_ms);
            node__link_drop(e, l, why);
        } else if (now - l->rx_ms >= idle / 3 && now - l->ping_ms >= idle / 3) {
            l->ping_ms = now;
            proto_want_msg w = { NULL, 0, NULL };
            proto_buf out = { NULL, 0 };
            if (proto_want_encode(&w, &out) == PROTO_OK)
                (void)node__link_send(e, l, &out);
            proto_buf_free(&out);
        }
    }
}

/* A member with no session for REDIAL_AFTER_MS although we dial it gets a new dialler. The
 * dialler retries on its own with backoff; this is the safety net for a dialler that stops
 * trying (seen once in a chaos run, cause not found), logged so that it can be traced. */
#define REDIAL_AFTER_MS 60000

static void redial_stuck(node_engine *e)
{
    uint64_t now = node__mono(e);
    bool any = false;
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        if (m->self || m->dialer == 0 || node__link_up_to(e, m) != NULL)
            continue;
        uint64_t since = m->last_heard_ms > m->dialled_ms ? m->last_heard_ms : m->dialled_ms;
        if (now - since < REDIAL_AFTER_MS)
            continue;
        NODE_INFO("peer.redial", "org=%s reason=\"no session for %" PRIu64 " ms; new dialler\"",
            m->org, now - since);
        e->host.undial(e->host.ctx, m->dialer);
        m->dialer = 0;
        any = true;
    }
    if (any)
        node__peers_sync(e);
}

void node__peers_tick(node_engine *e)
{
    if (e->removed) {
        /* removed from the network (state.c): no link stays, none is made */
        node_link *after;
        for (node_link *l = e->links; l != NULL; l = after) {
            after = l->next;
            if (!l->closing)
                node__link_drop(e, l, "this node was removed from the network");
        }
        return;
    }
    keepalive(e);
    redial_stuck(e);
}

void node__links_due(node_engine *e)
{
    uint64_t now = node__mono(e), limit = e->cfg.handshake_timeout_ms, next = UINT64_MAX;
    node_link *after;
    for (node_link *l = e->links; l != NULL; l = after) {
        after = l->next;
        if (l->state == LINK_UP || l->closing)
            continue;
        if (now - l->born_ms >= limit)
            node__link_drop(e, l,
                l->farewell ? "a removed node was told, and did not close"
                            : "handshake not completed in time");
        else if (limit - (now - l->born_ms) < next)
            next = limit - (now - l->born_ms);
    }
    if (next != UINT64_MAX)
        e->host.schedule(e->host.ctx, NODE_WORK_LINKS, next);
}
