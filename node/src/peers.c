/*
 * Peers: the handshake on every pipe, then the sync protocol inside the session
 * (DESIGN.md, "Gossip"): eager push of new deltas, anti-entropy by version vectors, bodies
 * only to members that hold the key of their tag, and wants for bodies this node lacks.
 *
 * A pipe that has not finished the handshake within [sync] handshake_timeout_ms, or that
 * sends anything else first, is closed. A non-member gets nothing: the responder checks
 * membership before it answers HELLO.
 */
#include "engine.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_BYTES (1u << 20)    /* one HEADERS or BODIES message */
#define RESPONSE_BYTES (4u << 20) /* all the messages answering one VV or WANT */
#define WANT_MAX 4096
/* A want is asked only when its body has not come this long after its header (it usually
 * follows in the next message), and asked again at most this often. */
#define WANT_GRACE_MS 500
#define WANT_RETRY_MS 2000
/* A gap seen in pushed headers asks the pusher for its log at most this often. */
#define GAP_VV_MS 1000
/* The same version vector is not sent to a member again within this time only to ask for
 * what it has: the answer to the first one is on its way (the two links of a pair each carry
 * a version vector when they come up, and each would be answered in full). */
#define VV_REPEAT_MS 2000

static node_link *link_find(node_engine *e, uint32_t pipe)
{
    for (node_link *l = e->links; l != NULL; l = l->next)
        if (l->pipe == pipe)
            return l;
    return NULL;
}

static node_link *link_up_to(node_engine *e, const node_member *m)
{
    for (node_link *l = e->links; l != NULL; l = l->next)
        if (l->state == LINK_UP && !l->closing && memcmp(l->peer, m->origin, 32) == 0)
            return l;
    return NULL;
}

static void link_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Forget a link (its pipe is gone or being dropped). */
static void link_free(node_engine *e, node_link *l)
{
    node_link **pp = &e->links;
    while (*pp != NULL && *pp != l)
        pp = &(*pp)->next;
    if (*pp == l)
        *pp = l->next;
    for (size_t i = 0; i < e->nmembers; i++) {
        if (e->members[i].pipe == l->pipe) {
            e->members[i].pipe = 0;
            node_link *other = link_up_to(e, &e->members[i]);
            e->members[i].pipe = other ? other->pipe : 0;
        }
    }
    proto_handshake_free(l->hs);
    proto_session_free(l->sess);
    l->hs = NULL;
    l->sess = NULL;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, link_closed_cb);
}

/* A line about a link that could repeat for as long as its peer keeps trying (a stranger, a
 * member with another manifest): once per address and cause, then backing off (log.c). The
 * key is the address without its port, which changes with every connection. */
static bool peer_log_pass(node_engine *e, const node_link *l, const char *cause, uint64_t *held)
{
    char key[96];
    const char *colon = strrchr(l->addr, ':');
    int n = colon != NULL ? (int)(colon - l->addr) : (int)strlen(l->addr);
    snprintf(key, sizeof(key), "%.*s %s", n, l->addr, cause);
    return node_loglimit_pass(&e->peer_log, key, node_now_ms(), held);
}

/* The org of the member at the other end, once known (dialled or authenticated). */
static const char *link_org(node_engine *e, const node_link *l)
{
    node_member *m = node_member_by_origin(e, l->peer);
    return m != NULL ? m->org : "unknown";
}

/* The level of a line that peer_log_pass may hold back: held lines still go to debug. */
static node_log_level peer_log_level(
    node_engine *e, const node_link *l, const char *cause, node_log_level level, uint64_t *held)
{
    *held = 0;
    return peer_log_pass(e, l, cause, held) ? level : NODE_LOG_DEBUG;
}

static void link_drop(node_engine *e, node_link *l, const char *why)
{
    uint64_t held = 0;
    node_log_level lv
        = l->state == LINK_UP ? NODE_LOG_INFO : peer_log_level(e, l, why, NODE_LOG_INFO, &held);
    node_log(lv, "peer.drop", "addr=%s org=%s reason=\"%s\" held=%" PRIu64, l->addr, link_org(e, l),
        why, held);
    uint32_t pipe = l->pipe;
    link_free(e, l);
    node_net_drop(e->net, pipe);
}

static void timer_cb(uv_timer_t *t)
{
    node_link *l = t->data;
    if (l->state != LINK_UP)
        link_drop(l->eng, l, "handshake not completed in time");
}

/* Seal and send one message on an established link. A message that cannot be queued breaks
 * the session's frame sequence, so the link is dropped and made again. */
static bool link_send(node_engine *e, node_link *l, const proto_buf *m)
{
    if (l->sess == NULL)
        return false; /* dropped by an earlier send of the same answer */
    proto_buf frame = { NULL, 0 };
    if (proto_session_seal(l->sess, m->p, m->len, &frame) != PROTO_OK) {
        link_drop(e, l, "cannot seal a frame");
        return false;
    }
    node_err err = node_net_send(e->net, l->pipe, frame.p, frame.len);
    proto_buf_free(&frame);
    if (err == NODE_ENOTFOUND) {
        /* The connection is ending: its DOWN event frees the link and logs the reason. */
        l->closing = true;
        return false;
    }
    if (err != NODE_OK) {
        link_drop(e, l, "send queue full");
        return false;
    }
    l->tx_ms = node_now_ms();
    return true;
}

static bool send_to(node_engine *e, node_member *m, const proto_buf *msg)
{
    node_link *l = link_up_to(e, m);
    return l != NULL && link_send(e, l, msg);
}

/* ---------------------------------------------------------------------------------------- */
/* Dialling                                                                                  */

void node_peers_sync(node_engine *e)
{
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        if (m->self || m->dialer != 0)
            continue;
        const char *url = node_config_dial_url(&e->cfg, m->org);
        if (url == NULL)
            url = m->url;
        node_errmsg msg;
        m->dialled_ms = node_now_ms();
        if (node_net_dial(e->net, url, &m->dialer, &msg) != NODE_OK)
            NODE_WARN("peer.dial", "org=%s url=%s error=\"%s\"", m->org, url, msg.text);
        else
            NODE_DEBUG("peer.dial", "org=%s url=%s", m->org, url);
    }
}

static bool is_member_cb(void *ctx, const uint8_t origin[PROTO_ORIGIN_LEN])
{
    node_engine *e = ctx;
    node_member *m = node_member_by_origin(e, origin);
    return m != NULL && !m->self;
}

/* ---------------------------------------------------------------------------------------- */
/* Version vectors and the headers a peer lacks                                              */

typedef struct vv_read {
    crdt_vv_entry *vv;
    size_t n;
} vv_read;

static node_err vv_read_cb(node_txn *t, void *ctx)
{
    vv_read *r = ctx;
    return ledger_vv_all(t, &r->vv, &r->n);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static void vv_add_queue(node_engine *e, vv_read *r, const node_member *to);

/* Send m our version vector on link l (NULL: the link send_to picks): what is stored, and the
 * headers in the inbound queue that follow it (vv_add_queue). With only_new, not when the same
 * one went to m within VV_REPEAT_MS. */
static void send_vv(node_engine *e, node_member *m, node_link *l, bool only_new)
{
    vv_read r = { NULL, 0 };
    node_errmsg msg;
    if (node_store_read(e->store, vv_read_cb, &r, &msg) != NODE_OK)
        return;
    vv_add_queue(e, &r, m);
    proto_vv_msg v = { r.vv, r.n, NULL };
    proto_buf out = { NULL, 0 };
    uint64_t now = node_now_ms();
    if (proto_vv_encode(&v, &out) == PROTO_OK) {
        uint64_t h = fnv1a(out.p, out.len);
        if (!only_new || h != m->vv_sent_hash || now - m->vv_sent_ms >= VV_REPEAT_MS) {
            m->vv_sent_ms = now;
            m->vv_sent_hash = h;
            (void)(l != NULL ? link_send(e, l, &out) : send_to(e, m, &out));
        }
    }
    proto_buf_free(&out);
    free(r.vv);
}

static uint64_t vv_lookup(const crdt_vv_entry *vv, size_t n, const uint8_t origin[32])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(vv[i].origin.b, origin, 32) == 0)
            return vv[i].max;
    return 0;
}

/* May member m receive the body of header h? */
static bool may_receive(node_txn *t, const proto_header *h, const node_member *m)
{
    if (h->kind == PROTO_HDR_KEY_GRANT) {
        for (size_t r = 0; r < h->nrecipients; r++)
            if (memcmp(h->recipients[r].b, m->origin, 32) == 0)
                return true;
        return false;
    }
    return ledger_holds(t, h->tag, m->origin);
}

/* A growing batch of HEADERS or BODIES, flushed as messages of at most BATCH_BYTES. */
typedef struct batch {
    proto_bytes *items;
    proto_body_item *bodies;
    size_t n, cap, bytes;
} batch;

static bool batch_add(batch *b, const uint8_t *p, size_t len, const uint8_t *id)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        proto_bytes *it = realloc(b->items, cap * sizeof(*it));
        if (it == NULL)
            return false;
        b->items = it;
        proto_body_item *bd = realloc(b->bodies, cap * sizeof(*bd));
        if (bd == NULL)
            return false;
        b->bodies = bd;
        b->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return false;
    memcpy(copy, p, len);
    b->items[b->n].p = copy;
    b->items[b->n].len = len;
    if (id != NULL)
        memcpy(b->bodies[b->n].header_id, id, 32);
    b->bodies[b->n].body.p = copy;
    b->bodies[b->n].body.len = len;
    b->n++;
    b->bytes += len + 48;
    return true;
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free((void *)(uintptr_t)b->items[i].p);
    b->n = 0;
    b->bytes = 0;
}

static void batch_free(batch *b)
{
    batch_clear(b);
    free(b->items);
    free(b->bodies);
}

/* Answers go back on the link the request came on (l). */
static void flush_headers(node_engine *e, node_link *l, batch *b)
{
    if (b->n == 0)
        return;
    proto_headers_msg hm = { b->items, b->n, NULL };
    proto_buf out = { NULL, 0 };
    if (proto_headers_encode(&hm, &out) == PROTO_OK)
        (void)link_send(e, l, &out);
    proto_buf_free(&out);
    batch_clear(b);
}

static void flush_bodies(node_engine *e, node_link *l, batch *b)
{
    if (b->n == 0)
        return;
    proto_bodies_msg bm = { b->bodies, b->n, NULL };
    proto_buf out = { NULL, 0 };
    if (proto_bodies_encode(&bm, &out) == PROTO_OK)
        (void)link_send(e, l, &out);
    proto_buf_free(&out);
    batch_clear(b);
}

typedef struct lack_ctx {
    node_engine *e;
    node_member *m;
    node_link *l;
    batch headers, bodies;
    size_t sent;
    bool truncated; /* more to send than one answer holds */
    bool ahead;     /* m has headers this node lacks */
} lack_ctx;

/* Send m the headers it lacks (and the bodies it may hold), up to RESPONSE_BYTES. */
static node_err lack_cb(node_txn *t, void *ctx)
{
    lack_ctx *c = ctx;
    node_engine *e = c->e;
    crdt_vv_entry *mine = NULL;
    size_t n = 0;
    node_err err = ledger_vv_all(t, &mine, &n);
    if (err != NODE_OK)
        return err;
    for (size_t i = 0; i < c->m->nvv; i++)
        if (vv_lookup(mine, n, c->m->vv[i].origin.b) < c->m->vv[i].max)
            c->ahead = true;
    for (size_t i = 0; i < n; i++) {
        uint64_t theirs = vv_lookup(c->m->vv, c->m->nvv, mine[i].origin.b);
        if (theirs < mine[i].max && c->sent >= RESPONSE_BYTES) {
            c->truncated = true;
            break;
        }
        for (uint64_t s = theirs + 1; s <= mine[i].max; s++) {
            if (c->sent >= RESPONSE_BYTES) {
                c->truncated = true;
                break;
            }
            const void *hb;
            size_t hl;
            if (ledger_header_get(t, mine[i].origin.b, s, &hb, &hl) != NODE_OK)
                break;
            proto_header h;
            if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
                break;
            if (!batch_add(&c->headers, hb, hl, NULL)) {
                proto_header_fini(&h);
                err = NODE_ENOMEM;
                goto out;
            }
            c->sent += hl;
            const void *bb;
            size_t bl;
            if (may_receive(t, &h, c->m) && ledger_body_get(t, h.id, &bb, &bl) == NODE_OK) {
                if (!batch_add(&c->bodies, bb, bl, h.id)) {
                    proto_header_fini(&h);
                    err = NODE_ENOMEM;
                    goto out;
                }
                c->sent += bl;
            }
            proto_header_fini(&h);
            /* Headers go first, so that bodies always find theirs at the peer. */
            if (c->headers.bytes >= BATCH_BYTES || c->bodies.bytes >= BATCH_BYTES) {
                flush_headers(e, c->l, &c->headers);
                flush_bodies(e, c->l, &c->bodies);
            }
        }
    }
out:
    free(mine);
    return err;
}

/* Answer m's version vector on l. *truncated: the answer was cut at RESPONSE_BYTES; *ahead:
 * m has headers this node lacks. */
static void send_lacking(node_engine *e, node_link *l, node_member *m, bool *truncated, bool *ahead)
{
    lack_ctx c = { .e = e, .m = m, .l = l };
    node_errmsg msg;
    if (node_store_read(e->store, lack_cb, &c, &msg) == NODE_OK) {
        flush_headers(e, l, &c.headers);
        flush_bodies(e, l, &c.bodies);
    }
    batch_free(&c.headers);
    batch_free(&c.bodies);
    *truncated = c.truncated;
    *ahead = c.ahead;
}

/* ---------------------------------------------------------------------------------------- */
/* Wants                                                                                     */

/* Ask holders for the bodies this node lacks: each want goes to its header's author when it
 * is up, else to any up member that holds the tag. */
typedef struct want_ctx {
    node_engine *e;
    node_member **target; /* per want */
} want_ctx;

/* Is want w to be asked now? Not within its grace (the body is probably in the next message)
 * nor again within WANT_RETRY_MS of the last time. */
static bool want_due(const node_want *w, uint64_t now)
{
    return now - w->since_ms >= WANT_GRACE_MS
        && (w->asked_ms == 0 || now - w->asked_ms >= WANT_RETRY_MS);
}

static node_err want_cb(node_txn *t, void *ctx)
{
    want_ctx *c = ctx;
    node_engine *e = c->e;
    uint64_t now = node_now_ms();
    for (size_t i = 0; i < e->nwants; i++) {
        c->target[i] = NULL;
        if (!want_due(&e->wants[i], now))
            continue;
        e->wants[i].asked_ms = now; /* tried now, whether a holder is up or not */
        node_member *a = node_member_by_origin(e, e->wants[i].origin);
        if (a != NULL && !a->self && link_up_to(e, a) != NULL) {
            c->target[i] = a;
            continue;
        }
        for (size_t k = 0; k < e->nmembers && c->target[i] == NULL; k++) {
            node_member *m = &e->members[k];
            if (!m->self && link_up_to(e, m) != NULL && ledger_holds(t, e->wants[i].tag, m->origin))
                c->target[i] = m;
        }
    }
    return NODE_OK;
}

static void want_timer_next(node_engine *e);

static void send_wants(node_engine *e)
{
    if (e->nwants == 0)
        return;
    want_ctx c = { e, calloc(e->nwants, sizeof(node_member *)) };
    proto_hash_bytes *ids = calloc(e->nwants < WANT_MAX ? e->nwants : WANT_MAX, sizeof(*ids));
    node_errmsg msg;
    if (c.target == NULL || ids == NULL || node_store_read(e->store, want_cb, &c, &msg) != NODE_OK)
        goto out;
    for (size_t k = 0; k < e->nmembers; k++) {
        node_member *m = &e->members[k];
        size_t n = 0;
        for (size_t i = 0; i < e->nwants && n < WANT_MAX; i++) {
            if (c.target[i] == m)
                memcpy(ids[n++].b, e->wants[i].id, 32);
        }
        if (n == 0)
            continue;
        proto_want_msg w = { ids, n, NULL };
        proto_buf out = { NULL, 0 };
        if (proto_want_encode(&w, &out) == PROTO_OK)
            send_to(e, m, &out);
        proto_buf_free(&out);
    }
out:
    free(c.target);
    free(ids);
    want_timer_next(e);
}

static void want_timer_cb(uv_timer_t *t)
{
    send_wants(t->data);
}

/* Set the want timer to the earliest moment a want falls due. */
static void want_timer_next(node_engine *e)
{
    if (!e->timers_on || e->stopping)
        return;
    uv_timer_stop(&e->want_timer);
    if (e->nwants == 0)
        return;
    uint64_t now = node_now_ms(), wait = WANT_RETRY_MS;
    for (size_t i = 0; i < e->nwants && wait > 0; i++) {
        const node_want *w = &e->wants[i];
        uint64_t due = w->since_ms + WANT_GRACE_MS;
        if (w->asked_ms != 0 && w->asked_ms + WANT_RETRY_MS > due)
            due = w->asked_ms + WANT_RETRY_MS;
        uint64_t left = due > now ? due - now : 0;
        if (left < wait)
            wait = left;
    }
    uv_timer_start(&e->want_timer, want_timer_cb, wait ? wait : 1, 0);
}

void node_wants_schedule(node_engine *e)
{
    if (!e->timers_on || e->stopping || e->nwants == 0)
        return;
    if (uv_is_active((uv_handle_t *)&e->want_timer)
        && uv_timer_get_due_in(&e->want_timer) <= WANT_GRACE_MS)
        return;
    uv_timer_start(&e->want_timer, want_timer_cb, WANT_GRACE_MS, 0);
}

void node_wants_due(node_engine *e)
{
    send_wants(e);
}

typedef struct serve_ctx {
    node_engine *e;
    node_link *l;
    node_member *m;
    const proto_want_msg *want;
    batch bodies;
} serve_ctx;

static node_err serve_cb(node_txn *t, void *ctx)
{
    serve_ctx *c = ctx;
    size_t sent = 0;
    for (size_t i = 0; i < c->want->n && sent < RESPONSE_BYTES; i++) {
        const uint8_t *id = c->want->ids[i].b;
        const void *hb, *bb;
        size_t hl, bl;
        if (ledger_header_by_id(t, id, &hb, &hl) != NODE_OK
            || ledger_body_get(t, id, &bb, &bl) != NODE_OK)
            continue;
        proto_header h;
        if (proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
            continue;
        bool ok = may_receive(t, &h, c->m);
        proto_header_fini(&h);
        if (!ok)
            continue; /* filter at the sender: never ship a body to a non-holder */
        if (!batch_add(&c->bodies, bb, bl, id))
            return NODE_ENOMEM;
        sent += bl;
        if (c->bodies.bytes >= BATCH_BYTES)
            flush_bodies(c->e, c->l, &c->bodies);
    }
    return NODE_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Messages inside a session                                                                 */

/* After headers from m were ingested: answers to our version vector are followed by the
 * sender's own, which makes us ask for the rest. A gap in pushed headers (held out of order,
 * e->npending grew) asks at once, at most every GAP_VV_MS; bodies usually follow their
 * headers, so wants wait (WANT_GRACE_MS). */
static void gap_vv(node_engine *e, node_link *l, node_member *m, size_t pending_before)
{
    uint64_t now = node_now_ms();
    if (e->npending > pending_before && now - m->vv_sent_ms >= GAP_VV_MS)
        send_vv(e, m, l, false);
}

static void headers_in(node_engine *e, node_link *l, node_member *m, const proto_headers_msg *hm)
{
    size_t pending = e->npending;
    (void)node_ingest_headers(e, hm->headers, hm->n, NULL, m);
    gap_vv(e, l, m, pending);
}

static void on_message(node_engine *e, node_link *l, node_member *m, const uint8_t *p, size_t len)
{
    unsigned kind = 0;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_peek(p, len, &e->lim, &kind, &diag);
    if (perr != PROTO_OK) {
        NODE_WARN("peer.reject", "org=%s reason=\"%s\" detail=\"%s\" offset=%zu", m->org,
            proto_strerror(perr), diag.reason, diag.offset);
        return;
    }
    switch (kind) {
    case PROTO_K_VV: {
        proto_vv_msg v;
        if ((perr = proto_vv_decode(p, len, &e->lim, &v, &diag)) != PROTO_OK)
            break;
        crdt_vv_entry *copy = malloc(v.n ? v.n * sizeof(*copy) : 1);
        if (copy != NULL) {
            memcpy(copy, v.entries, v.n * sizeof(*copy));
            free(m->vv);
            m->vv = copy;
            m->nvv = v.n;
        }
        proto_vv_fini(&v);
        /* Our version vector asks m for what we lack, or, after an answer cut short, makes m
         * ask again for the rest once it has taken this part: one answer in flight at a time.
         * When neither holds, both sides are done. */
        bool truncated = false, ahead = false;
        send_lacking(e, l, m, &truncated, &ahead);
        if (truncated || ahead)
            send_vv(e, m, l, !truncated);
        return;
    }
    case PROTO_K_HEADERS: {
        proto_headers_msg hm;
        if ((perr = proto_headers_decode(p, len, &e->lim, &hm, &diag)) != PROTO_OK)
            break;
        headers_in(e, l, m, &hm);
        proto_headers_fini(&hm);
        return;
    }
    case PROTO_K_BODIES: {
        proto_bodies_msg bm;
        if ((perr = proto_bodies_decode(p, len, &e->lim, &bm, &diag)) != PROTO_OK)
            break;
        (void)node_ingest_bodies(e, bm.items, bm.n, m);
        proto_bodies_fini(&bm);
        return;
    }
    case PROTO_K_WANT: {
        proto_want_msg w;
        if ((perr = proto_want_decode(p, len, &e->lim, &w, &diag)) != PROTO_OK)
            break;
        if (w.n == 0) {
            /* A ping (keepalive): answered with an empty BODIES. */
            proto_bodies_msg pong = { NULL, 0, NULL };
            proto_buf out = { NULL, 0 };
            if (proto_bodies_encode(&pong, &out) == PROTO_OK)
                (void)link_send(e, l, &out);
            proto_buf_free(&out);
            proto_want_fini(&w);
            return;
        }
        serve_ctx c = { .e = e, .l = l, .m = m, .want = &w };
        node_errmsg msg;
        if (node_store_read(e->store, serve_cb, &c, &msg) == NODE_OK)
            flush_bodies(e, l, &c.bodies);
        batch_free(&c.bodies);
        proto_want_fini(&w);
        return;
    }
    case PROTO_K_MANIFEST: {
        bool changed = false;
        node_errmsg msg;
        if (node_manifest_offer(e, p, len, &changed, &msg) == NODE_OK && changed)
            node_peers_sync(e);
        return;
    }
    default:
        NODE_WARN("peer.reject", "org=%s reason=\"unexpected message kind %s\"", m->org,
            proto_kind_name(kind));
        return;
    }
    NODE_WARN("peer.reject", "org=%s kind=%s reason=\"%s\" detail=\"%s\" offset=%zu", m->org,
        proto_kind_name(kind), proto_strerror(perr), diag.reason, diag.offset);
}

/* ---------------------------------------------------------------------------------------- */
/* The inbound queue                                                                         */

/*
 * A HEADERS message starts the signature checks of its headers on the worker threads as soon
 * as it is read, and waits in this queue; every session message read after it, from any peer,
 * queues behind it, so that bodies still find their headers, except version vectors: they are
 * answered at once, and the version vector this node sends counts the queued headers, so that
 * the next answer of a peer is on its way while this one is ingested. The loop takes one group off
 * the queue per turn (an idle handle), so that it reads what arrived meanwhile in between: the loop
 * ingests one group while the workers check the next headers. A group is a run of HEADERS and
 * BODIES messages (from any peers, up to GROUP_BYTES), stored in one transaction: a peer answers a
 * version vector with alternating HEADERS and BODIES of about 1 MiB each, and one commit (and
 * fsync) per message was most of a syncing node's waiting. A HEADERS message whose checks are still
 * running ends the group unless it is the first. At stop the queue is dropped: nothing in it
 * was acknowledged, and the peers send it again.
 *
 * A message in the queue no longer counts against its connection's receive buffer (net.c
 * pauses reading a connection that is that far ahead), so the queue has its own bound: beyond
 * INQ_MAX_BYTES of messages, the loop works the queue down before it takes another one, and
 * reading waits meanwhile as it did before the queue.
 */
#define INQ_MAX_BYTES (32u << 20)
#define GROUP_BYTES (6u << 20)    /* a whole answer (RESPONSE_BYTES) and its framing */
#define GROUP_HEADERS (2 * 4096u) /* headers per group (a first message may hold more) */
struct node_inmsg {
    node_inmsg *next;
    uint8_t origin[32];
    uint32_t pipe;
    proto_buf plain; /* the message (owned) */
    bool is_headers, is_bodies;
    proto_headers_msg hm; /* decoded from plain when is_headers */
    proto_bodies_msg bm;  /* decoded from plain when is_bodies */
    node_hcheck *chk;
};

static void inmsg_free(node_engine *e, node_inmsg *q)
{
    node_hcheck_free(e, q->chk);
    if (q->is_headers)
        proto_headers_fini(&q->hm);
    if (q->is_bodies)
        proto_bodies_fini(&q->bm);
    proto_buf_free(&q->plain);
    free(q);
}

static void inq_idle_cb(uv_idle_t *h);
static void inq_step(node_engine *e);

/* A push (a HEADERS message of a few headers) carries its author's newest headers at once:
 * their clocks sample the author's clock offset. Answers to version vectors carry old headers,
 * whose samples would only be smaller: they are not decoded for this. */
#define CLOCK_SAMPLE_HEADERS 4
static void clock_samples(node_engine *e, node_member *m, const proto_headers_msg *hm)
{
    if (hm->n > CLOCK_SAMPLE_HEADERS)
        return;
    uint64_t now = node_now_ms();
    for (size_t i = 0; i < hm->n; i++) {
        proto_header h;
        if (proto_header_decode(hm->headers[i].p, hm->headers[i].len, &e->lim, &h, NULL)
            != PROTO_OK)
            continue;
        if (memcmp(h.origin, m->origin, 32) == 0)
            node_clock_sample(m, h.hlc.wall, now);
        proto_header_fini(&h);
    }
}

/* Take the message, HEADERS always, anything else when the queue is not empty; false when it
 * is for on_message at once. */
static bool inq_take(node_engine *e, node_link *l, node_member *m, proto_buf *plain)
{
    unsigned kind = 0;
    if (proto_peek(plain->p, plain->len, &e->lim, &kind, NULL) != PROTO_OK)
        return false;
    /* A version vector is answered at once: what it asks for is what this node has stored,
     * and the one this node sends back counts the queue (vv_add_queue). The queue's bound
     * (INQ_MAX_BYTES) is what limits how far ahead a peer's answers run. */
    if (kind == PROTO_K_VV || (kind != PROTO_K_HEADERS && e->inq_head == NULL))
        return false;
    while (e->inq_head != NULL && e->inq_bytes >= INQ_MAX_BYTES)
        inq_step(e);
    node_inmsg *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return false;
    if (kind == PROTO_K_HEADERS) {
        if (proto_headers_decode(plain->p, plain->len, &e->lim, &q->hm, NULL) == PROTO_OK) {
            q->is_headers = true;
            clock_samples(e, m, &q->hm);
        } else if (e->inq_head == NULL) {
            free(q);
            return false; /* on_message says why */
        }
    } else if (kind == PROTO_K_BODIES) {
        /* Not decodable: on_message says why in its turn. */
        q->is_bodies = proto_bodies_decode(plain->p, plain->len, &e->lim, &q->bm, NULL) == PROTO_OK;
    }
    memcpy(q->origin, m->origin, 32);
    q->pipe = l->pipe;
    q->plain = *plain;
    plain->p = NULL;
    plain->len = 0;
    if (q->is_headers)
        q->chk = node_hcheck_start(e, q->hm.headers, q->hm.n);
    if (e->inq_tail != NULL)
        e->inq_tail->next = q;
    else
        e->inq_head = q;
    e->inq_tail = q;
    e->inq_bytes += q->plain.len;
    if (e->timers_on && !e->stopping && !uv_is_active((uv_handle_t *)&e->inq_idle))
        uv_idle_start(&e->inq_idle, inq_idle_cb);
    return true;
}

static int vv_entry_cmp(const void *a, const void *b)
{
    return memcmp(((const crdt_vv_entry *)a)->origin.b, ((const crdt_vv_entry *)b)->origin.b, 32);
}

/* Raise r (the stored version vector, to be sent to member `to`) by the queued headers that
 * continue it: a peer that answers it sends what comes after the queue, so the next answer
 * travels while this node ingests the last one, and the workers always have headers to
 * check. A queued header that is then refused (or a queue dropped at stop) only means a later
 * version vector asks for it again. Queued headers are not verified yet, so for `to`'s own
 * log only those `to` sent count: a peer refuses local writes while another holds more of
 * its log than it does (write.c), and a third member's forged headers in this queue must not
 * make this node claim that. On allocation failure r stays as stored. */
static void vv_add_queue(node_engine *e, vv_read *r, const node_member *to)
{
    bool added = false;
    for (node_inmsg *q = e->inq_head; q != NULL; q = q->next) {
        size_t nruns;
        const node_vvrun *runs = node_hcheck_runs(q->chk, &nruns);
        bool from_to = memcmp(q->origin, to->origin, 32) == 0;
        for (size_t k = 0; k < nruns; k++) {
            if (!from_to && memcmp(runs[k].origin, to->origin, 32) == 0)
                continue;
            size_t i = 0;
            while (i < r->n && memcmp(r->vv[i].origin.b, runs[k].origin, 32) != 0)
                i++;
            if (i == r->n) {
                if (runs[k].first != 1)
                    continue;
                crdt_vv_entry *more = realloc(r->vv, (r->n + 1) * sizeof(*more));
                if (more == NULL)
                    continue;
                r->vv = more;
                memcpy(r->vv[i].origin.b, runs[k].origin, 32);
                r->vv[i].max = 0;
                r->n++;
                added = true;
            }
            if (runs[k].first <= r->vv[i].max + 1 && runs[k].last > r->vv[i].max)
                r->vv[i].max = runs[k].last;
        }
    }
    if (added)
        qsort(r->vv, r->n, sizeof(*r->vv), vv_entry_cmp);
}

/* The link an answer to q would go back on (NULL when gone), and q's member (NULL when it
 * left the manifest). */
static node_member *inmsg_sender(node_engine *e, const node_inmsg *q, node_link **lp)
{
    node_member *m = node_member_by_origin(e, q->origin);
    node_link *l = link_find(e, q->pipe);
    if (l != NULL && (l->state != LINK_UP || l->closing))
        l = NULL;
    if (m != NULL && l == NULL)
        l = link_up_to(e, m);
    *lp = l;
    return m;
}

static void inq_unlink(node_engine *e, node_inmsg *q)
{
    e->inq_head = q->next;
    if (e->inq_head == NULL)
        e->inq_tail = NULL;
    e->inq_bytes -= q->plain.len;
}

/* The head of the queue, handed to on_message. */
static void inq_one(node_engine *e)
{
    node_inmsg *q = e->inq_head;
    inq_unlink(e, q);
    node_link *l;
    node_member *m = inmsg_sender(e, q, &l);
    if (m != NULL && l != NULL)
        on_message(e, l, m, q->plain.p, q->plain.len);
    /* else: the member left, or the link an answer would go back on is gone */
    inmsg_free(e, q);
}

/* A group from the head of the queue (see above), ingested in one transaction. */
static void inq_group(node_engine *e)
{
    size_t nmsg = 0, nh = 0, nb = 0, bytes = 0;
    for (node_inmsg *q = e->inq_head; q != NULL && (q->is_headers || q->is_bodies); q = q->next) {
        size_t qh = q->is_headers ? q->hm.n : 0;
        if (nmsg > 0
            && (bytes + q->plain.len > GROUP_BYTES || nh + qh > GROUP_HEADERS
                || (q->is_headers && !node_hcheck_ready(e, q->chk))))
            break;
        nmsg++;
        nh += qh;
        nb += q->is_bodies ? q->bm.n : 0;
        bytes += q->plain.len;
    }
    node_inmsg **msgs = calloc(nmsg, sizeof(*msgs));
    proto_bytes *headers = calloc(nh ? nh : 1, sizeof(*headers));
    uint8_t *sig = calloc(nh ? nh : 1, 1); /* 0: not checked yet */
    proto_body_item *bodies = calloc(nb ? nb : 1, sizeof(*bodies));
    if (msgs == NULL || headers == NULL || sig == NULL || bodies == NULL) {
        free(msgs);
        free(headers);
        free(sig);
        free(bodies);
        inq_one(e); /* out of memory: one message the old way */
        return;
    }
    nh = nb = 0;
    node_member *from = NULL;
    for (size_t i = 0; i < nmsg; i++) {
        node_inmsg *q = msgs[i] = e->inq_head;
        inq_unlink(e, q);
        node_link *l;
        node_member *m = inmsg_sender(e, q, &l);
        if (m == NULL)
            continue; /* the member left */
        if (from == NULL)
            from = m;
        if (q->is_headers) {
            const uint8_t *r = node_hcheck_results(e, q->chk);
            memcpy(headers + nh, q->hm.headers, q->hm.n * sizeof(*headers));
            if (r != NULL)
                memcpy(sig + nh, r, q->hm.n);
            nh += q->hm.n;
        } else {
            memcpy(bodies + nb, q->bm.items, q->bm.n * sizeof(*bodies));
            nb += q->bm.n;
        }
    }
    size_t pending = e->npending;
    if (nh > GROUP_HEADERS) {
        /* A first message larger than a group (a peer with a larger max_message_bytes) is
         * alone in it, and taken in several transactions. */
        (void)node_ingest_headers(e, headers, nh, sig, from);
    } else {
        node_ingest_in in = { headers, nh, sig, bodies, nb };
        (void)node_ingest(e, &in, from);
    }
    for (size_t i = 0; i < nmsg; i++) {
        node_inmsg *q = msgs[i];
        node_link *l;
        node_member *m;
        /* Each sender of headers once (the first of its messages). */
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = !msgs[j]->is_headers || memcmp(msgs[j]->origin, q->origin, 32) != 0;
        if (q->is_headers && first && (m = inmsg_sender(e, q, &l)) != NULL)
            gap_vv(e, l, m, pending);
    }
    for (size_t i = 0; i < nmsg; i++)
        inmsg_free(e, msgs[i]);
    free(msgs);
    free(headers);
    free(sig);
    free(bodies);
}

/* The head of the queue: a group of HEADERS and BODIES, or another message for on_message. */
static void inq_step(node_engine *e)
{
    node_inmsg *q = e->inq_head;
    if (q == NULL)
        return;
    if (q->is_headers || q->is_bodies)
        inq_group(e);
    else
        inq_one(e);
}

static void inq_idle_cb(uv_idle_t *h)
{
    node_engine *e = h->data;
    if (!e->stopping)
        inq_step(e);
    if (e->inq_head == NULL || e->stopping)
        uv_idle_stop(h);
}

void node_inq_free(node_engine *e)
{
    while (e->inq_head != NULL) {
        node_inmsg *q = e->inq_head;
        e->inq_head = q->next;
        inmsg_free(e, q);
    }
    e->inq_tail = NULL;
    e->inq_bytes = 0;
}

static void established(node_engine *e, node_link *l)
{
    l->state = LINK_UP;
    uv_timer_stop(&l->timer);
    memcpy(l->peer, proto_session_peer(l->sess), 32);
    node_member *m = node_member_by_origin(e, l->peer);
    if (m == NULL || m->self) {
        link_drop(e, l, "not a member");
        return;
    }
    m->last_heard_ms = l->rx_ms = l->tx_ms = node_now_ms();
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
        if (!link_send(e, l, &mb))
            return;
    }
    if (!second)
        send_vv(e, m, l, false);
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
    node_log_level lv = peer_log_level(e, l, reason, NODE_LOG_WARN, &held);
    char detail[160] = "";
    if (diag->reason[0] != 0)
        snprintf(detail, sizeof(detail), " detail=\"%s at byte %zu\"", diag->reason, diag->offset);
    node_log(lv, "peer.reject", "addr=%s org=%s stage=%s reason=\"%s\"%s held=%" PRIu64, l->addr,
        link_org(e, l), stage_names[l->state], reason, detail, held);
    uint32_t pipe = l->pipe;
    link_free(e, l);
    node_net_drop(e->net, pipe);
}

static void on_pipe_message(node_engine *e, node_link *l, const uint8_t *data, size_t len)
{
    proto_diag diag = { 0, "" };
    proto_buf out = { NULL, 0 };
    proto_err perr = PROTO_OK;
    switch (l->state) {
    case LINK_WAIT_HELLO:
        perr = proto_hs_respond(e->me, is_member_cb, e, data, len, NULL, &l->hs, &out, &diag);
        if (perr == PROTO_OK) {
            node_err err = node_net_send(e->net, l->pipe, out.p, out.len);
            proto_buf_free(&out);
            if (err != NODE_OK) {
                link_drop(e, l, "cannot send HELLO_REPLY");
                return;
            }
            l->state = LINK_WAIT_FINISH;
            return;
        }
        break;
    case LINK_WAIT_REPLY:
        perr = proto_hs_finish(l->hs, data, len, &out, &l->sess, &diag);
        if (perr == PROTO_OK) {
            node_err err = node_net_send(e->net, l->pipe, out.p, out.len);
            proto_buf_free(&out);
            if (err != NODE_OK) {
                link_drop(e, l, "cannot send HELLO_FINISH");
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
        node_member *m = node_member_by_origin(e, l->peer);
        if (m == NULL) {
            link_drop(e, l, "no longer a member");
            return;
        }
        perr = proto_session_open(l->sess, data, len, &e->lim, &out, &diag);
        if (perr != PROTO_OK)
            break;
        m->last_heard_ms = l->rx_ms = node_now_ms();
        if (!inq_take(e, l, m, &out))
            on_message(e, l, m, out.p, out.len);
        proto_buf_free(&out);
        return;
    }
    }
    peer_reject(e, l, perr, &diag);
}

void node_net_event(
    void *ctx, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data, size_t len)
{
    node_engine *e = ctx;
    if (e->stopping)
        return;
    if (ev == NODE_NET_CONTROL) {
        node_ctl_handle(e, data, len);
        return;
    }
    node_link *l = link_find(e, pipe);
    if (ev == NODE_NET_PIPE_UP) {
        if (l != NULL)
            return;
        if ((l = calloc(1, sizeof(*l))) == NULL) {
            node_net_drop(e->net, pipe);
            return;
        }
        l->eng = e;
        l->pipe = pipe;
        l->dialer = dialer;
        snprintf(l->addr, sizeof(l->addr), "%.*s", (int)(len < 63 ? len : 63),
            data != NULL ? (const char *)data : "?");
        l->timer.data = l;
        uv_timer_init(e->loop, &l->timer);
        uv_timer_start(&l->timer, timer_cb, e->cfg.handshake_timeout_ms, 0);
        l->next = e->links;
        e->links = l;
        l->state = LINK_WAIT_HELLO;
        if (dialer != 0) {
            node_member *m = NULL;
            for (size_t i = 0; i < e->nmembers && m == NULL; i++)
                if (e->members[i].dialer == dialer)
                    m = &e->members[i];
            if (m == NULL) {
                link_drop(e, l, "dialled a member that left the manifest");
                return;
            }
            memcpy(l->peer, m->origin, 32);
            proto_buf hello = { NULL, 0 };
            if (proto_hs_initiate(e->me, m->origin, NULL, &l->hs, &hello) != PROTO_OK
                || node_net_send(e->net, pipe, hello.p, hello.len) != NODE_OK) {
                proto_buf_free(&hello);
                link_drop(e, l, "cannot start the handshake");
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
        node_member *m = node_member_by_origin(e, l->peer);
        int wl = (int)(len < 160 ? len : 160);
        const char *why = data != NULL ? (const char *)data : "";
        uint64_t held = 0;
        if (l->state == LINK_UP)
            NODE_INFO(
                "peer.down", "org=%s addr=%s reason=\"%.*s\"", m ? m->org : "?", l->addr, wl, why);
        else
            node_log(peer_log_level(e, l, "closed during the handshake", NODE_LOG_INFO, &held),
                "peer.drop",
                "addr=%s org=%s stage=%s reason=\"closed during the handshake: %.*s\" "
                "held=%" PRIu64,
                l->addr, m ? m->org : "unknown", stage_names[l->state], wl, why, held);
        link_free(e, l);
        return;
    }
    on_pipe_message(e, l, data, len);
}

/* ---------------------------------------------------------------------------------------- */
/* Push and anti-entropy                                                                     */

typedef struct push_ctx {
    node_engine *e;
    const proto_header *h;
    bool *may; /* per member */
} push_ctx;

static node_err push_cb(node_txn *t, void *ctx)
{
    push_ctx *c = ctx;
    for (size_t i = 0; i < c->e->nmembers; i++)
        c->may[i] = may_receive(t, c->h, &c->e->members[i]);
    return NODE_OK;
}

void node_push(
    node_engine *e, const proto_buf *header, const proto_buf *body, const uint8_t tag[32])
{
    (void)tag;
    proto_header h;
    if (proto_header_decode(header->p, header->len, &e->lim, &h, NULL) != PROTO_OK)
        return;
    push_ctx c = { e, &h, calloc(e->nmembers ? e->nmembers : 1, sizeof(bool)) };
    node_errmsg msg;
    if (c.may == NULL || node_store_read(e->store, push_cb, &c, &msg) != NODE_OK)
        goto out;
    proto_bytes hb = { header->p, header->len };
    proto_headers_msg hm = { &hb, 1, NULL };
    proto_buf hmsg = { NULL, 0 }, bmsg = { NULL, 0 };
    proto_body_item item;
    memcpy(item.header_id, h.id, 32);
    item.body.p = body->p;
    item.body.len = body->len;
    proto_bodies_msg bm = { &item, 1, NULL };
    if (proto_headers_encode(&hm, &hmsg) == PROTO_OK
        && proto_bodies_encode(&bm, &bmsg) == PROTO_OK) {
        for (size_t i = 0; i < e->nmembers; i++) {
            node_member *m = &e->members[i];
            if (m->self || link_up_to(e, m) == NULL)
                continue;
            if (send_to(e, m, &hmsg) && c.may[i])
                send_to(e, m, &bmsg);
        }
    }
    proto_buf_free(&hmsg);
    proto_buf_free(&bmsg);
out:
    free(c.may);
    proto_header_fini(&h);
}

/* A link on which nothing arrived for idle_timeout_ms is dropped (and made again by the
 * dialler): after a partition a half-open TCP connection reports no error, and the link
 * would carry pushes into the void while the dialler never redials. A link quiet for a third
 * of that gets a ping (an empty WANT, which the peer answers with an empty BODIES), so a
 * healthy idle link always has something arriving, whatever the peer's own settings. */
static void keepalive(node_engine *e)
{
    uint64_t now = node_now_ms(), idle = e->cfg.idle_timeout_ms;
    node_link *next;
    for (node_link *l = e->links; l != NULL; l = next) {
        next = l->next; /* link_drop frees l */
        if (l->state != LINK_UP || l->closing)
            continue;
        if (now - l->rx_ms >= idle) {
            char why[96];
            snprintf(why, sizeof(why), "nothing heard for %" PRIu64 " ms", now - l->rx_ms);
            link_drop(e, l, why);
        } else if (now - l->rx_ms >= idle / 3 && now - l->ping_ms >= idle / 3) {
            l->ping_ms = now;
            proto_want_msg w = { NULL, 0, NULL };
            proto_buf out = { NULL, 0 };
            if (proto_want_encode(&w, &out) == PROTO_OK)
                (void)link_send(e, l, &out);
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
    uint64_t now = node_now_ms();
    bool any = false;
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        if (m->self || m->dialer == 0 || link_up_to(e, m) != NULL)
            continue;
        uint64_t since = m->last_heard_ms > m->dialled_ms ? m->last_heard_ms : m->dialled_ms;
        if (now - since < REDIAL_AFTER_MS)
            continue;
        NODE_INFO("peer.redial", "org=%s reason=\"no session for %" PRIu64 " ms; new dialler\"",
            m->org, now - since);
        node_net_undial(e->net, m->dialer);
        m->dialer = 0;
        any = true;
    }
    if (any)
        node_peers_sync(e);
}

void node_anti_entropy(node_engine *e)
{
    keepalive(e);
    redial_stuck(e);
    size_t up = 0;
    for (size_t i = 0; i < e->nmembers; i++)
        if (!e->members[i].self && link_up_to(e, &e->members[i]) != NULL)
            up++;
    if (up > 0) {
        /* Which peer does not need to be unpredictable, only spread: xorshift64. */
        e->rng ^= e->rng << 13;
        e->rng ^= e->rng >> 7;
        e->rng ^= e->rng << 17;
        size_t pick = (size_t)(e->rng % up);
        for (size_t i = 0; i < e->nmembers; i++) {
            if (e->members[i].self || link_up_to(e, &e->members[i]) == NULL)
                continue;
            if (pick-- == 0) {
                /* A peer we sent a version vector to within the round is syncing with us
                 * already (each answer makes us ask again): another one would cross it and
                 * be answered with what is already on the way. */
                node_member *m = &e->members[i];
                if (node_now_ms() - m->vv_sent_ms >= e->cfg.anti_entropy_ms)
                    send_vv(e, m, NULL, false);
                break;
            }
        }
    }
    send_wants(e);
    for (size_t i = 0; i < e->nwaits; i++) {
        if (e->waits[i].why == WAIT_CLOCK || e->waits[i].why == WAIT_CAUSAL) {
            node_retry_waits(e);
            break;
        }
    }
}

void node_links_close(node_engine *e)
{
    while (e->links != NULL)
        link_free(e, e->links);
}
