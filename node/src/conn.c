/*
 * conn.c - one connection to a peer over an nng byte stream (see net.c's opening comment):
 * the SP header and framing, the byte-limited send queue with partial writes resumed, reads
 * that refuse a frame over [sync] max_message_bytes before allocating it, and the end of a
 * connection (one DOWN event with its reason, once no operation runs). May call: nng, the
 * loop's async handle (libuv), log.c.
 */
#include "net_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t net__mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Queue an event (lock held). On allocation failure a message is dropped (anti-entropy
 * repairs it); an UP or DOWN is not droppable, so the caller's conn is failed instead. */
bool net__push_locked(node_net *n, net_ev ev)
{
    net_ev *e = malloc(sizeof(*e));
    if (e == NULL)
        return false;
    *e = ev;
    e->next = NULL;
    if (n->tail != NULL)
        n->tail->next = e;
    else
        n->head = e;
    n->tail = e;
    return true;
}

conn *net__conn_find_locked(node_net *n, uint32_t id)
{
    for (conn *c = n->conns; c != NULL; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

/* Lock held: when a dead conn has no operation running, announce its end (once). Returns
 * true when the loop must be woken. */
bool net__maybe_down_locked(conn *c)
{
    if (!c->dead || c->rx_busy || c->tx_busy || c->down_sent || c->starting)
        return false;
    size_t len = strlen(c->why);
    uint8_t *why = malloc(len + 1);
    if (why != NULL)
        memcpy(why, c->why, len + 1);
    net_ev ev
        = { NULL, NODE_NET_PIPE_DOWN, c->id, c->dialer, c->ctl, false, 0, why, 0, why ? len : 0 };
    if (!net__push_locked(c->net, ev)) {
        free(why);
        return false; /* out of memory: the conn stays until the node stops */
    }
    c->down_sent = true;
    return true;
}

/* Mark a conn dead with a reason (lock held). Returns true when the stream must be closed. */
bool net__kill_locked(conn *c, const char *why)
{
    if (c->dead)
        return false;
    c->dead = true;
    snprintf(c->why, sizeof(c->why), "%s", why);
    return true;
}

/* An operation of c failed or the conn must end. from_rx / from_tx: which op is reporting. */
static void conn_fail(conn *c, const char *why, bool from_rx, bool from_tx)
{
    node_net *n = c->net;
    pthread_mutex_lock(&n->lock);
    bool close = net__kill_locked(c, why);
    if (from_rx)
        c->rx_busy = false;
    if (from_tx)
        c->tx_busy = false;
    bool wake = net__maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    if (close)
        nng_stream_close(c->s); /* aborts the other operation, which then reports */
    if (wake)
        uv_async_send(&n->wake);
}

/* ---------------------------------------------------------------------------------------- */
/* Receiving                                                                                 */

/* After starting an operation on c's stream (no lock held): if c died meanwhile, abort it.
 * nng 1.5.2's TCP stream queues a send or receive started after nng_stream_close and never
 * completes it (tcp_dowrite / tcp_doread return at once on a closed connection), so an
 * operation started on one thread while another closed the stream would keep its busy flag
 * forever and the conn's DOWN would never come. Either the killer's dead flag is seen here
 * (and the operation is aborted), or the operation was queued before the close, which
 * completes it with NNG_ECLOSED. Aborting an operation that has finished is a no-op. */
static void abort_if_dead(conn *c, nng_aio *aio)
{
    pthread_mutex_lock(&c->net->lock);
    bool dead = c->dead;
    pthread_mutex_unlock(&c->net->lock);
    if (dead)
        nng_aio_abort(aio, NNG_ECLOSED);
}

/* Start the next read (no lock; rx_busy is set). */
/* The bytes read before a message: the SP header first, then each message's length (over ipc,
 * after a message-type byte). */
static size_t prefix_len(const conn *c)
{
    return c->rs == RX_SP ? SP_HEADER_LEN : c->ctl ? 9 : 8;
}

void net__rx_submit(conn *c)
{
    nng_iov iov;
    if (c->rs == RX_BODY) {
        iov.iov_buf = c->body + c->body_got;
        iov.iov_len = c->body_len - c->body_got;
    } else {
        iov.iov_buf = c->hdr + c->hdr_got;
        iov.iov_len = prefix_len(c) - c->hdr_got;
    }
    nng_aio_set_iov(c->rx, 1, &iov);
    nng_stream_recv(c->s, c->rx);
    abort_if_dead(c, c->rx);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void rx_cb(void *arg)
{
    conn *c = arg;
    node_net *n = c->net;
    int rv = nng_aio_result(c->rx);
    if (rv != 0) {
        conn_fail(c,
            rv == NNG_ECONNSHUT || rv == NNG_ECLOSED ? "connection closed" : nng_strerror(rv), true,
            false);
        return;
    }
    size_t got = nng_aio_count(c->rx);
    char why[192];
    if (c->rs != RX_BODY) {
        c->hdr_got += got;
        if (c->hdr_got < prefix_len(c)) {
            net__rx_submit(c);
            return;
        }
        c->hdr_got = 0;
        if (c->rs == RX_SP) {
            const uint8_t *h = c->hdr;
            if (h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[3] != 0 || h[4] != 0
                || h[5] != (c->ctl ? SP_REQ0 : SP_PAIR1)) {
                conn_fail(c,
                    c->ctl ? "not a patto client (no SP req0 header)"
                           : "not a patto peer (no SP pair1 header)",
                    true, false);
                return;
            }
            c->rs = RX_LEN;
            net__rx_submit(c);
            return;
        }
        if (c->ctl && c->hdr[0] != IPC_MSG_TYPE) {
            conn_fail(c, "not an SP ipc message", true, false);
            return;
        }
        uint64_t len = get_be64(c->ctl ? c->hdr + 1 : c->hdr);
        if (len < 4) {
            conn_fail(c, "a message without its SP header", true, false);
            return;
        }
        pthread_mutex_lock(&n->lock);
        size_t max = c->trusted ? n->max_message : HANDSHAKE_MSG_MAX;
        pthread_mutex_unlock(&n->lock);
        if (len - 4 > max) {
            snprintf(why, sizeof(why),
                c->trusted ? "announced a %llu-byte message, over [sync] max_message_bytes (%zu)"
                           : "announced a %llu-byte message before its handshake (at most %zu)",
                (unsigned long long)(len - 4), max);
            conn_fail(c, why, true, false);
            return;
        }
        if ((c->body = malloc((size_t)len)) == NULL) {
            conn_fail(c, "out of memory for a message", true, false);
            return;
        }
        c->body_len = (size_t)len;
        c->body_got = 0;
        c->rs = RX_BODY;
        net__rx_submit(c);
        return;
    }
    c->body_got += got;
    if (c->body_got < c->body_len) {
        net__rx_submit(c);
        return;
    }
    /* A whole message: hand it to the loop. A peer's SP header (pair1's hop count) is not
     * used, links being direct; a client's (req0) is the request id, its first byte's high bit
     * set when it comes straight from the client, and it is echoed in the answer. */
    if (c->ctl && (c->body[0] & 0x80) == 0) {
        conn_fail(c, "a request through an SP device (not a patto client)", true, false);
        return;
    }
    net_ev ev = { NULL, c->ctl ? NODE_NET_CONTROL : NODE_NET_MESSAGE, c->id, c->dialer, c->ctl,
        c->uid_known, c->uid, c->body, 4, c->body_len - 4 };
    pthread_mutex_lock(&n->lock);
    bool ok = net__push_locked(n, ev);
    if (ok) {
        c->rx_pending += c->body_len;
        c->body = NULL;
    }
    c->rs = RX_LEN;
    bool go = !c->dead;
    /* Before its handshake a connection has one message at the loop at a time: the next is
     * read once the loop has taken this one, so that a session frame sent right after
     * HELLO_FINISH is read under the limit the handshake's outcome sets (node__net_trust is
     * called while the loop takes HELLO_FINISH), not the handshake's. */
    if (go && (c->rx_pending > net__rx_limit_locked(n, c) || (ok && !c->trusted))) {
        c->rx_paused = true;
        go = false;
    }
    if (!go)
        c->rx_busy = false;
    net__maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    if (!ok) {
        free(c->body); /* dropped for want of memory; anti-entropy repairs it */
        c->body = NULL;
    }
    uv_async_send(&n->wake);
    if (go)
        net__rx_submit(c);
}

/* ---------------------------------------------------------------------------------------- */
/* Sending                                                                                   */

static void tx_submit(conn *c)
{
    pthread_mutex_lock(&c->net->lock);
    tx_item *t = c->txq;
    pthread_mutex_unlock(&c->net->lock);
    nng_iov iov = { t->data + t->off, t->len - t->off };
    nng_aio_set_iov(c->tx, 1, &iov);
    nng_stream_send(c->s, c->tx);
    abort_if_dead(c, c->tx);
}

static void tx_cb(void *arg)
{
    conn *c = arg;
    node_net *n = c->net;
    int rv = nng_aio_result(c->tx);
    if (rv != 0) {
        conn_fail(c, rv == NNG_ECLOSED ? "connection closed" : nng_strerror(rv), false, true);
        return;
    }
    size_t sent = nng_aio_count(c->tx);
    tx_item *done = NULL;
    pthread_mutex_lock(&n->lock);
    tx_item *t = c->txq;
    t->off += sent;
    if (t->off == t->len) {
        done = t;
        c->txq = t->next;
        if (c->txq == NULL)
            c->txq_tail = NULL;
        c->txq_bytes -= t->len;
        if (!c->ctl)
            n->tx_queued -= t->len;
    }
    bool more = c->txq != NULL && !c->dead;
    if (!more)
        c->tx_busy = false;
    bool wake = net__maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    free(done);
    if (wake)
        uv_async_send(&n->wake);
    if (more)
        tx_submit(c);
}

/* Append an item to c's queue (lock held); returns true when the caller must start sending. */
static bool enqueue_locked(conn *c, tx_item *t)
{
    if (c->txq_tail != NULL)
        c->txq_tail->next = t;
    else
        c->txq = t;
    c->txq_tail = t;
    c->txq_bytes += t->len;
    if (!c->ctl)
        c->net->tx_queued += t->len;
    if (c->tx_busy)
        return false;
    c->tx_busy = true;
    return true;
}

size_t net__rx_limit_locked(const node_net *n, const conn *c)
{
    if (c->ctl)
        return 0; /* one request at a time: the loop answers them in turn */
    size_t peers = n->nconns - n->nctl;
    return n->rx_share / (peers > 0 ? peers : 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                               */

void net__conn_free(conn *c)
{
    if (c->rx != NULL)
        nng_aio_free(c->rx);
    if (c->tx != NULL)
        nng_aio_free(c->tx);
    if (c->s != NULL)
        nng_stream_free(c->s);
    for (tx_item *t = c->txq; t != NULL;) {
        tx_item *next = t->next;
        free(t);
        t = next;
    }
    free(c->body);
    free(c);
}

/* The remote address of a stream as text, "IP:PORT" ("?" when nng cannot tell). */
static void remote_addr(nng_stream *s, char *out, size_t size)
{
    nng_sockaddr sa;
    snprintf(out, size, "?");
    if (nng_stream_get_addr(s, NNG_OPT_REMADDR, &sa) != 0)
        return;
    if (sa.s_family == NNG_AF_INET) {
        const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
        const uint8_t *p = (const uint8_t *)&sa.s_in.sa_port;
        snprintf(out, size, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], (unsigned)(p[0] << 8 | p[1]));
    } else if (sa.s_family == NNG_AF_INET6) {
        const uint8_t *a = sa.s_in6.sa_addr, *p = (const uint8_t *)&sa.s_in6.sa_port;
        size_t o = (size_t)snprintf(out, size, "[");
        for (int i = 0; i < 16 && o < size; i += 2)
            o += (size_t)snprintf(
                out + o, size - o, "%s%x", i ? ":" : "", (unsigned)(a[i] << 8 | a[i + 1]));
        if (o < size)
            snprintf(out + o, size - o, "]:%u", (unsigned)(p[0] << 8 | p[1]));
    }
}

/* A stream is connected (nng thread): announce it, send our SP header, start reading. On
 * failure the stream is closed and false returned. */
bool net__conn_start(node_net *n, nng_stream *s, uint32_t dialer_id, bool ctl)
{
    conn *c = calloc(1, sizeof(*c));
    tx_item *t = malloc(sizeof(*t) + SP_HEADER_LEN);
    if (c == NULL || t == NULL || nng_aio_alloc(&c->rx, rx_cb, c) != 0
        || nng_aio_alloc(&c->tx, tx_cb, c) != 0) {
        free(t);
        if (c != NULL) {
            c->s = NULL;
            net__conn_free(c);
        }
        nng_stream_close(s);
        nng_stream_free(s);
        return false;
    }
    c->net = n;
    c->s = s;
    c->dialer = dialer_id;
    c->ctl = ctl;
    c->trusted = ctl;
    /* Who is at the other end of a control connection, as the kernel says: for the access log
     * and the log lines of what it asks (nng reads SO_PEERCRED on Linux). */
    c->uid_known = ctl && nng_stream_get_uint64(s, NNG_OPT_IPC_PEER_UID, &c->uid) == 0;
    c->born_ms = net__mono_ms();
    c->rs = RX_SP;
    const uint8_t sp[SP_HEADER_LEN]
        = { 0x00, 'S', 'P', 0x00, 0x00, ctl ? SP_REP0 : SP_PAIR1, 0x00, 0x00 };
    t->next = NULL;
    t->len = SP_HEADER_LEN;
    t->off = 0;
    memcpy(t->data, sp, SP_HEADER_LEN);

    pthread_mutex_lock(&n->lock);
    if (n->closing) {
        pthread_mutex_unlock(&n->lock);
        free(t);
        net__conn_free(c);
        return false;
    }
    do
        c->id = ++n->next_conn;
    while (c->id == 0 || net__conn_find_locked(n, c->id) != NULL);
    if (ctl && n->nctl >= CTL_CONNS_MAX) {
        pthread_mutex_unlock(&n->lock);
        NODE_WARN(
            "ctl.refuse", "reason=\"%d control connections are open already\"", CTL_CONNS_MAX);
        free(t);
        net__conn_free(c);
        return false;
    }
    if (!ctl) {
        char addr[64];
        remote_addr(s, addr, sizeof(addr));
        net_ev ev = { NULL, NODE_NET_PIPE_UP, c->id, dialer_id, false, false, 0,
            (uint8_t *)strdup(addr), 0, strlen(addr) };
        if (ev.buf == NULL || !net__push_locked(n, ev)) {
            pthread_mutex_unlock(&n->lock);
            free(ev.buf);
            free(t);
            net__conn_free(c);
            return false;
        }
    }
    n->nctl += ctl;
    n->nconns++;
    c->next = n->conns;
    n->conns = c;
    enqueue_locked(c, t);
    c->rx_busy = true;
    /* Until both operations are started, no DOWN: the loop frees a conn when it handles its
     * DOWN, and this thread still uses c after starting the read. */
    c->starting = true;
    pthread_mutex_unlock(&n->lock);
    uv_async_send(&n->wake);
    tx_submit(c);
    net__rx_submit(c);
    pthread_mutex_lock(&n->lock);
    c->starting = false;
    bool wake = net__maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    if (wake)
        uv_async_send(&n->wake);
    return true;
}

node_err net__send(node_net *n, uint32_t pipe, const uint8_t hdr[4], const uint8_t *buf, size_t len)
{
    if (len > n->max_message)
        return NODE_EIO;
    pthread_mutex_lock(&n->lock);
    conn *c = net__conn_find_locked(n, pipe);
    bool ipc = c != NULL && c->ctl;
    pthread_mutex_unlock(&n->lock);
    /* [ipc: type byte] 64-bit length of what follows, the 4-byte SP header, the message */
    size_t pre = ipc ? 1 : 0;
    tx_item *t = malloc(sizeof(*t) + pre + FRAME_PREFIX + len);
    if (t == NULL)
        return NODE_ENOMEM;
    t->next = NULL;
    t->len = pre + FRAME_PREFIX + len;
    t->off = 0;
    if (ipc)
        t->data[0] = IPC_MSG_TYPE;
    uint64_t wire = (uint64_t)len + 4;
    for (int i = 0; i < 8; i++)
        t->data[pre + (size_t)i] = (uint8_t)(wire >> (56 - 8 * i));
    memcpy(t->data + pre + 8, hdr, 4);
    if (len > 0)
        memcpy(t->data + pre + FRAME_PREFIX, buf, len);

    pthread_mutex_lock(&n->lock);
    c = net__conn_find_locked(n, pipe);
    node_err why = c == NULL || c->dead ? NODE_ENOTFOUND
        : c->ctl ? (c->txq_bytes + t->len > TX_QUEUE_MAX ? NODE_EIO : NODE_OK)
        : n->tx_queued + t->len > n->tx_share ? NODE_EIO
                                              : NODE_OK;
    if (why != NODE_OK) {
        pthread_mutex_unlock(&n->lock);
        free(t);
        return why;
    }
    bool start = enqueue_locked(c, t);
    pthread_mutex_unlock(&n->lock);
    if (start) {
        nng_aio_wait(c->tx); /* see "Re-arming" in net.c */
        tx_submit(c);
    }
    return NODE_OK;
}

node_err node__net_send(node_net *n, uint32_t pipe, const uint8_t *buf, size_t len)
{
    static const uint8_t hop[4] = { 0, 0, 0, 1 }; /* pair1's hop count */
    return net__send(n, pipe, hop, buf, len);
}

void node__net_drop(node_net *n, uint32_t pipe)
{
    pthread_mutex_lock(&n->lock);
    conn *c = net__conn_find_locked(n, pipe);
    bool close = c != NULL && net__kill_locked(c, "dropped by this node");
    bool wake = c != NULL && net__maybe_down_locked(c);
    NODE_DEBUG("net.drop", "pipe=%" PRIu32 " found=%d rx_busy=%d tx_busy=%d down=%d", pipe,
        c != NULL, c != NULL && c->rx_busy, c != NULL && c->tx_busy, c != NULL && c->down_sent);
    pthread_mutex_unlock(&n->lock);
    if (close)
        nng_stream_close(c->s);
    if (wake)
        uv_async_send(&n->wake);
}

void node__net_trust(node_net *n, uint32_t pipe)
{
    pthread_mutex_lock(&n->lock);
    conn *c = net__conn_find_locked(n, pipe);
    if (c != NULL)
        c->trusted = true;
    pthread_mutex_unlock(&n->lock);
}
