/*
 * The nng wrapper: the only file of node/ that calls nng.
 *
 * - peers: nng byte streams (nng_stream_listener / nng_stream_dialer, tcp://). On them this
 *   file speaks the SP wire format of nng's pair1 protocol over TCP, so that any SP pair1
 *   socket can talk to a node: an 8-byte header (00 'S' 'P' 00, protocol 0x0011, two zero
 *   bytes) each way, then messages, each a 64-bit big-endian length, a 4-byte pair1 hop
 *   count and the payload. nng's own pair1 socket is not used because, in polyamorous mode,
 *   it silently drops a message when a pipe's two-slot send queue is full, which breaks the
 *   session's frame sequence. Here every connection has its own unbounded-by-count but
 *   byte-limited send queue (node_net_send fails instead of dropping), partial writes are
 *   resumed, and a length over [sync] max_message_bytes is rejected before anything is
 *   allocated (STYLE.md, trap 2).
 * - control: a rep0 socket on ipc://control.sock in the data directory, mode 0660.
 *
 * nng calls back on its own threads. Callbacks touch the connection under the net lock and
 * hand events to the libuv loop through a locked queue and uv_async_send (STYLE.md, rule 8).
 * Re-arming: a callback marks its operation idle under the lock and only then returns, so
 * the loop thread can see an idle operation whose callback is still running. Starting the
 * next operation on that aio from the loop at that moment races with nng's completion of the
 * callback (a dialer stalled for good that way in a chaos run), so the loop first waits for
 * the callback to finish (nng_aio_wait) before it re-arms a read, a send or a redial.
 *
 * Event order per connection is the order of the queue: UP, then its messages, then DOWN
 * (with the reason as data). A connection is freed on the loop thread when its DOWN event is
 * handled, once neither of its operations is running. A reader whose undelivered messages
 * pass RX_PAUSE_BYTES stops reading until the loop catches up.
 */
#include "internal.h"

#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_HEADER_LEN 8
#define SP_PAIR1 0x11
#define FRAME_PREFIX 12 /* 64-bit length + 32-bit pair1 hop count */
#define TX_QUEUE_MAX ((size_t)96 << 20)
#define RX_PAUSE_BYTES ((size_t)32 << 20)
#define REDIAL_MIN_MS 100
#define REDIAL_MAX_MS 2000
#define STABLE_MS 10000 /* a connection that lived this long resets its dialer's backoff */
/* A connect that has not completed by then is abandoned and tried again: a listener whose
 * backlog is full (a stopped process, a proxy not accepting) leaves SYNs unanswered, and the
 * kernel's own retries would stretch one attempt over minutes. */
#define DIAL_TIMEOUT_MS 5000
#define CTL_SEND_MS 2000

typedef struct net_ev {
    struct net_ev *next;
    node_net_ev kind;
    uint32_t pipe, dialer;
    nng_msg *msg; /* control requests */
    uint8_t *buf; /* peer messages (payload at buf + 4) and DOWN reasons */
    size_t off, len;
} net_ev;

typedef struct tx_item {
    struct tx_item *next;
    size_t len, off;
    uint8_t data[];
} tx_item;

typedef enum { RX_SP, RX_LEN, RX_BODY } rx_state;

typedef struct conn {
    struct conn *next;
    node_net *net;
    uint32_t id, dialer;
    uint64_t born_ms;
    nng_stream *s;
    nng_aio *rx, *tx;

    rx_state rs;
    uint8_t hdr[8];
    size_t hdr_got;
    uint8_t *body;
    size_t body_len, body_got;
    size_t rx_pending; /* bytes handed to the loop and not yet consumed */
    bool rx_busy, rx_paused;

    tx_item *txq, *txq_tail;
    size_t txq_bytes;
    bool tx_busy;

    bool dead, down_sent;
    bool starting; /* conn_start has not finished starting its operations */
    char why[192];
} conn;

typedef enum { DIAL_DIALLING, DIAL_CONNECTED, DIAL_SLEEPING } dial_state;

typedef struct dialer {
    struct dialer *next;
    node_net *net;
    uint32_t id;
    nng_stream_dialer *d;
    nng_aio *aio;
    dial_state state;
    nng_duration backoff;
    bool closed;
} dialer;

/* One request of the control socket at a time per slot (a rep0 context): several operators'
 * (or a benchmark's) requests wait for the same loop turn instead of one turn each. */
#define CTL_SLOTS 8
typedef struct ctl_slot {
    node_net *n;
    nng_ctx ctx;
    nng_aio *rx, *tx;
} ctl_slot;

struct node_net {
    nng_stream_listener *lst;
    nng_aio *accept;
    bool accept_sleeping;
    nng_socket ctl;
    ctl_slot slots[CTL_SLOTS];
    int ctl_cur; /* the slot of the request being handled on the loop, -1 when none */
    bool ctl_open, closing;
    uint16_t port;
    size_t max_message;

    pthread_mutex_t lock; /* everything below, and the fields of conns and dialers */
    conn *conns;
    dialer *dialers;
    uint32_t next_conn, next_dialer;
    net_ev *head, *tail;

    uv_async_t wake;
    node_net_cb cb;
    void *cb_ctx;
    void (*closed_cb)(void *);
    void *closed_ctx;
};

static node_err nng_fail(node_errmsg *msg, const char *what, int rv)
{
    return node__fail(msg, NODE_EIO, "%s: %s", what, nng_strerror(rv));
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Queue an event (lock held). On allocation failure a message is dropped (anti-entropy
 * repairs it); an UP or DOWN is not droppable, so the caller's conn is failed instead. */
static bool push_locked(node_net *n, net_ev ev)
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

static conn *conn_find_locked(node_net *n, uint32_t id)
{
    for (conn *c = n->conns; c != NULL; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static dialer *dialer_find_locked(node_net *n, uint32_t id)
{
    for (dialer *d = n->dialers; d != NULL; d = d->next)
        if (d->id == id)
            return d;
    return NULL;
}

/* Lock held: when a dead conn has no operation running, announce its end (once). Returns
 * true when the loop must be woken. */
static bool maybe_down_locked(conn *c)
{
    if (!c->dead || c->rx_busy || c->tx_busy || c->down_sent || c->starting)
        return false;
    size_t len = strlen(c->why);
    uint8_t *why = malloc(len + 1);
    if (why != NULL)
        memcpy(why, c->why, len + 1);
    net_ev ev = { NULL, NODE_NET_PIPE_DOWN, c->id, c->dialer, NULL, why, 0, why ? len : 0 };
    if (!push_locked(c->net, ev)) {
        free(why);
        return false; /* out of memory: the conn stays until the node stops */
    }
    c->down_sent = true;
    return true;
}

/* Mark a conn dead with a reason (lock held). Returns true when the stream must be closed. */
static bool kill_locked(conn *c, const char *why)
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
    bool close = kill_locked(c, why);
    if (from_rx)
        c->rx_busy = false;
    if (from_tx)
        c->tx_busy = false;
    bool wake = maybe_down_locked(c);
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
static void rx_submit(conn *c)
{
    nng_iov iov;
    if (c->rs == RX_BODY) {
        iov.iov_buf = c->body + c->body_got;
        iov.iov_len = c->body_len - c->body_got;
    } else {
        iov.iov_buf = c->hdr + c->hdr_got;
        iov.iov_len = sizeof(c->hdr) - c->hdr_got;
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
        if (c->hdr_got < sizeof(c->hdr)) {
            rx_submit(c);
            return;
        }
        c->hdr_got = 0;
        if (c->rs == RX_SP) {
            const uint8_t *h = c->hdr;
            if (h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[3] != 0 || h[4] != 0
                || h[5] != SP_PAIR1) {
                conn_fail(c, "not a patto peer (no SP pair1 header)", true, false);
                return;
            }
            c->rs = RX_LEN;
            rx_submit(c);
            return;
        }
        uint64_t len = get_be64(c->hdr);
        if (len < 4) {
            conn_fail(c, "a message without its pair1 header", true, false);
            return;
        }
        if (len - 4 > n->max_message) {
            snprintf(why, sizeof(why),
                "announced a %llu-byte message, over [sync] max_message_bytes (%zu)",
                (unsigned long long)(len - 4), n->max_message);
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
        rx_submit(c);
        return;
    }
    c->body_got += got;
    if (c->body_got < c->body_len) {
        rx_submit(c);
        return;
    }
    /* A whole message: hand it to the loop (the hop count is not used: links are direct). */
    net_ev ev = { NULL, NODE_NET_MESSAGE, c->id, c->dialer, NULL, c->body, 4, c->body_len - 4 };
    pthread_mutex_lock(&n->lock);
    bool ok = push_locked(n, ev);
    if (ok) {
        c->rx_pending += c->body_len;
        c->body = NULL;
    }
    c->rs = RX_LEN;
    bool go = !c->dead;
    if (go && c->rx_pending > RX_PAUSE_BYTES) {
        c->rx_paused = true;
        go = false;
    }
    if (!go)
        c->rx_busy = false;
    maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    if (!ok) {
        free(c->body); /* dropped for want of memory; anti-entropy repairs it */
        c->body = NULL;
    }
    uv_async_send(&n->wake);
    if (go)
        rx_submit(c);
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
    }
    bool more = c->txq != NULL && !c->dead;
    if (!more)
        c->tx_busy = false;
    bool wake = maybe_down_locked(c);
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
    if (c->tx_busy)
        return false;
    c->tx_busy = true;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                               */

static void conn_free(conn *c)
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
static bool conn_start(node_net *n, nng_stream *s, uint32_t dialer_id)
{
    conn *c = calloc(1, sizeof(*c));
    tx_item *t = malloc(sizeof(*t) + SP_HEADER_LEN);
    if (c == NULL || t == NULL || nng_aio_alloc(&c->rx, rx_cb, c) != 0
        || nng_aio_alloc(&c->tx, tx_cb, c) != 0) {
        free(t);
        if (c != NULL) {
            c->s = NULL;
            conn_free(c);
        }
        nng_stream_close(s);
        nng_stream_free(s);
        return false;
    }
    c->net = n;
    c->s = s;
    c->dialer = dialer_id;
    c->born_ms = mono_ms();
    c->rs = RX_SP;
    static const uint8_t sp[SP_HEADER_LEN] = { 0x00, 'S', 'P', 0x00, 0x00, SP_PAIR1, 0x00, 0x00 };
    t->next = NULL;
    t->len = SP_HEADER_LEN;
    t->off = 0;
    memcpy(t->data, sp, SP_HEADER_LEN);

    pthread_mutex_lock(&n->lock);
    if (n->closing) {
        pthread_mutex_unlock(&n->lock);
        free(t);
        conn_free(c);
        return false;
    }
    do
        c->id = ++n->next_conn;
    while (c->id == 0 || conn_find_locked(n, c->id) != NULL);
    char addr[64];
    remote_addr(s, addr, sizeof(addr));
    net_ev ev = { NULL, NODE_NET_PIPE_UP, c->id, dialer_id, NULL, (uint8_t *)strdup(addr), 0,
        strlen(addr) };
    if (ev.buf == NULL || !push_locked(n, ev)) {
        pthread_mutex_unlock(&n->lock);
        free(ev.buf);
        free(t);
        conn_free(c);
        return false;
    }
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
    rx_submit(c);
    pthread_mutex_lock(&n->lock);
    c->starting = false;
    bool wake = maybe_down_locked(c);
    pthread_mutex_unlock(&n->lock);
    if (wake)
        uv_async_send(&n->wake);
    return true;
}

static void accept_cb(void *arg)
{
    node_net *n = arg;
    int rv = nng_aio_result(n->accept);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (n->accept_sleeping) {
        n->accept_sleeping = false;
    } else if (rv == 0) {
        conn_start(n, nng_aio_get_output(n->accept, 0), 0);
    } else {
        /* Out of descriptors or memory: pause instead of spinning. */
        n->accept_sleeping = true;
        nng_sleep_aio(100, n->accept);
        return;
    }
    nng_stream_listener_accept(n->lst, n->accept);
}

/* Start one connect attempt, bounded in time. */
static void dial(dialer *d)
{
    nng_aio_set_timeout(d->aio, DIAL_TIMEOUT_MS);
    nng_stream_dialer_dial(d->d, d->aio);
}

/* Wait before the next attempt (the aio's timeout must not cut the sleep short). */
static void dial_later(dialer *d, nng_duration ms)
{
    nng_aio_set_timeout(d->aio, NNG_DURATION_INFINITE);
    nng_sleep_aio(ms, d->aio);
}

static void dial_cb(void *arg)
{
    dialer *d = arg;
    node_net *n = d->net;
    int rv = nng_aio_result(d->aio);
    pthread_mutex_lock(&n->lock);
    bool closed = d->closed || n->closing;
    pthread_mutex_unlock(&n->lock);
    /* Only our own closing ends a dialer. NNG_ECANCELED or NNG_ECLOSED while it is open is
     * a failed attempt like any other: nng 1.5.2's TCP stream dialer, after an attempt timed
     * out, aborts its internal connect and hands that stale cancellation to whichever dial
     * is queued first when the abort lands (tcp_dial_con_cb), which can be the next attempt.
     * Returning on it left the pair without a connection until the peer table's redial. */
    static const char *const states[] = { "dialling", "connected", "sleeping" };
    NODE_DEBUG("net.dial", "dialer=%" PRIu32 " state=%s result=\"%s\" closed=%d", d->id,
        states[d->state], rv == 0 ? "ok" : nng_strerror(rv), (int)closed);
    if (closed) {
        if (d->state == DIAL_DIALLING && rv == 0) {
            nng_stream *s = nng_aio_get_output(d->aio, 0);
            nng_stream_close(s);
            nng_stream_free(s);
        }
        return;
    }
    if (d->state == DIAL_SLEEPING) {
        d->state = DIAL_DIALLING;
        dial(d);
        return;
    }
    if (rv == 0) {
        d->state = DIAL_CONNECTED;
        if (conn_start(n, nng_aio_get_output(d->aio, 0), d->id))
            return;
    }
    d->state = DIAL_SLEEPING;
    nng_duration wait = d->backoff;
    d->backoff = d->backoff * 2 > REDIAL_MAX_MS ? REDIAL_MAX_MS : d->backoff * 2;
    dial_later(d, wait);
}

/* ---------------------------------------------------------------------------------------- */
/* Control socket                                                                            */

static void ctl_rx_cb(void *arg)
{
    ctl_slot *sl = arg;
    node_net *n = sl->n;
    int rv = nng_aio_result(sl->rx);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv == 0) {
        /* The slot's next receive is armed when its reply has gone (ctl_tx_cb). */
        net_ev ev = { NULL, NODE_NET_CONTROL, (uint32_t)(sl - n->slots), 0, nng_aio_get_msg(sl->rx),
            NULL, 0, 0 };
        pthread_mutex_lock(&n->lock);
        bool ok = push_locked(n, ev);
        pthread_mutex_unlock(&n->lock);
        if (ok) {
            uv_async_send(&n->wake);
            return;
        }
        nng_msg_free(ev.msg);
    }
    nng_ctx_recv(sl->ctx, sl->rx);
}

static void ctl_tx_cb(void *arg)
{
    ctl_slot *sl = arg;
    int rv = nng_aio_result(sl->tx);
    if (rv != 0) {
        nng_msg *m = nng_aio_get_msg(sl->tx);
        if (m != NULL)
            nng_msg_free(m);
    }
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    nng_ctx_recv(sl->ctx, sl->rx);
}

/* ---------------------------------------------------------------------------------------- */
/* The loop side                                                                             */

/* A DOWN was handled: unlink and free the conn, and let its dialer try again. */
static void reap(node_net *n, uint32_t id)
{
    pthread_mutex_lock(&n->lock);
    conn **pp = &n->conns;
    while (*pp != NULL && (*pp)->id != id)
        pp = &(*pp)->next;
    conn *c = *pp;
    if (c != NULL)
        *pp = c->next;
    dialer *d = c != NULL && c->dialer != 0 ? dialer_find_locked(n, c->dialer) : NULL;
    bool redial = d != NULL && !d->closed && d->state == DIAL_CONNECTED;
    nng_duration wait = 0;
    if (redial) {
        if (mono_ms() - c->born_ms >= STABLE_MS)
            d->backoff = REDIAL_MIN_MS;
        wait = d->backoff;
        d->backoff = d->backoff * 2 > REDIAL_MAX_MS ? REDIAL_MAX_MS : d->backoff * 2;
        d->state = DIAL_SLEEPING;
    }
    pthread_mutex_unlock(&n->lock);
    NODE_DEBUG("net.reap", "pipe=%" PRIu32 " found=%d dialer=%" PRIu32 " redial=%d wait=%d", id,
        c != NULL, c != NULL ? c->dialer : 0, (int)redial, (int)wait);
    if (c != NULL)
        conn_free(c); /* waits for a callback that is still returning */
    if (redial) {
        nng_aio_wait(d->aio); /* see "Re-arming" above */
        dial_later(d, wait);
    }
}

static void wake_cb(uv_async_t *h)
{
    node_net *n = h->data;
    pthread_mutex_lock(&n->lock);
    net_ev *ev = n->head;
    n->head = n->tail = NULL;
    pthread_mutex_unlock(&n->lock);
    while (ev != NULL) {
        net_ev *next = ev->next;
        if (!n->closing) {
            if (ev->kind == NODE_NET_CONTROL) {
                n->ctl_cur = (int)ev->pipe;
                n->cb(n->cb_ctx, ev->kind, 0, 0, nng_msg_body(ev->msg), nng_msg_len(ev->msg));
                if (n->ctl_cur >= 0) /* not answered: take the slot's next request */
                    nng_ctx_recv(n->slots[n->ctl_cur].ctx, n->slots[n->ctl_cur].rx);
                n->ctl_cur = -1;
            } else {
                n->cb(n->cb_ctx, ev->kind, ev->pipe, ev->dialer, ev->buf ? ev->buf + ev->off : NULL,
                    ev->len);
            }
            if (ev->kind == NODE_NET_MESSAGE) {
                bool resume = false;
                pthread_mutex_lock(&n->lock);
                conn *c = conn_find_locked(n, ev->pipe);
                if (c != NULL) {
                    c->rx_pending -= ev->off + ev->len;
                    if (c->rx_paused && !c->dead && c->rx_pending <= RX_PAUSE_BYTES / 2) {
                        c->rx_paused = false;
                        c->rx_busy = true;
                        resume = true;
                    }
                }
                pthread_mutex_unlock(&n->lock);
                if (resume) {
                    nng_aio_wait(c->rx); /* see "Re-arming" above */
                    rx_submit(c);
                }
            } else if (ev->kind == NODE_NET_PIPE_DOWN) {
                reap(n, ev->pipe);
            }
        }
        if (ev->msg != NULL)
            nng_msg_free(ev->msg);
        free(ev->buf);
        free(ev);
        ev = next;
    }
}

static void net_closed_cb(uv_handle_t *h);
static void shut(node_net *n);

node_err node_net_open(uv_loop_t *loop, const char *listen_url, size_t max_message, node_net_cb cb,
    void *ctx, node_net **out, node_errmsg *msg)
{
    node_net *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NODE_ENOMEM;
    n->cb = cb;
    n->cb_ctx = ctx;
    n->max_message = max_message;
    pthread_mutex_init(&n->lock, NULL);
    n->wake.data = n;
    int rv = uv_async_init(loop, &n->wake, wake_cb);
    if (rv != 0) {
        pthread_mutex_destroy(&n->lock);
        free(n);
        return node__fail(msg, NODE_EIO, "uv_async_init: %s", uv_strerror(rv));
    }
    node_err err;
    n->ctl_cur = -1;
    if ((rv = nng_aio_alloc(&n->accept, accept_cb, n)) != 0) {
        err = nng_fail(msg, "cannot allocate network operations", rv);
        goto fail;
    }
    for (int i = 0; i < CTL_SLOTS; i++) {
        n->slots[i].n = n;
        if ((rv = nng_aio_alloc(&n->slots[i].rx, ctl_rx_cb, &n->slots[i])) != 0
            || (rv = nng_aio_alloc(&n->slots[i].tx, ctl_tx_cb, &n->slots[i])) != 0) {
            err = nng_fail(msg, "cannot allocate network operations", rv);
            goto fail;
        }
        nng_aio_set_timeout(n->slots[i].tx, CTL_SEND_MS);
    }
    if ((rv = nng_stream_listener_alloc(&n->lst, listen_url)) != 0
        || (rv = nng_stream_listener_listen(n->lst)) != 0) {
        char what[NODE_URL_MAX + 64];
        snprintf(what, sizeof(what), "cannot listen on %s", listen_url);
        err = nng_fail(msg, what, rv);
        goto fail;
    }
    int port = 0;
    if (nng_stream_listener_get_int(n->lst, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
        n->port = (uint16_t)port;

    if ((rv = nng_rep0_open(&n->ctl)) != 0) {
        err = nng_fail(msg, "cannot open the control socket", rv);
        goto fail;
    }
    n->ctl_open = true;
    nng_listener cl;
    if ((rv = nng_socket_set_size(n->ctl, NNG_OPT_RECVMAXSZ, max_message)) != 0
        || (rv = nng_listener_create(&cl, n->ctl, "ipc://control.sock")) != 0
        || (rv = nng_listener_set_size(cl, NNG_OPT_RECVMAXSZ, max_message)) != 0
        || (rv = nng_listener_set_int(cl, NNG_OPT_IPC_PERMISSIONS, 0660)) != 0
        || (rv = nng_listener_start(cl, 0)) != 0) {
        err = nng_fail(msg, "cannot listen on the control socket control.sock", rv);
        goto fail;
    }
    for (int i = 0; i < CTL_SLOTS; i++) {
        if ((rv = nng_ctx_open(&n->slots[i].ctx, n->ctl)) != 0) {
            err = nng_fail(msg, "cannot open the control socket", rv);
            goto fail;
        }
    }
    nng_stream_listener_accept(n->lst, n->accept);
    for (int i = 0; i < CTL_SLOTS; i++)
        nng_ctx_recv(n->slots[i].ctx, n->slots[i].rx);
    *out = n;
    return NODE_OK;

fail:
    /* n is freed in the close callback of its async handle, when the caller's loop runs. */
    shut(n);
    return err;
}

uint16_t node_net_port(const node_net *n)
{
    return n->port;
}

static void dialer_free(dialer *d)
{
    if (d->aio != NULL) {
        nng_aio_stop(d->aio);
        nng_aio_free(d->aio);
    }
    if (d->d != NULL) {
        nng_stream_dialer_close(d->d);
        nng_stream_dialer_free(d->d);
    }
    free(d);
}

node_err node_net_dial(node_net *n, const char *url, uint32_t *id, node_errmsg *msg)
{
    dialer *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NODE_ENOMEM;
    d->net = n;
    d->backoff = REDIAL_MIN_MS;
    d->state = DIAL_DIALLING;
    int rv = nng_stream_dialer_alloc(&d->d, url);
    if (rv == 0)
        rv = nng_aio_alloc(&d->aio, dial_cb, d);
    if (rv != 0) {
        dialer_free(d);
        char what[NODE_URL_MAX + 32];
        snprintf(what, sizeof(what), "cannot dial %s", url);
        return nng_fail(msg, what, rv);
    }
    pthread_mutex_lock(&n->lock);
    do
        d->id = ++n->next_dialer;
    while (d->id == 0 || dialer_find_locked(n, d->id) != NULL);
    d->next = n->dialers;
    n->dialers = d;
    pthread_mutex_unlock(&n->lock);
    *id = d->id;
    dial(d);
    return NODE_OK;
}

void node_net_undial(node_net *n, uint32_t id)
{
    pthread_mutex_lock(&n->lock);
    dialer **pp = &n->dialers;
    while (*pp != NULL && (*pp)->id != id)
        pp = &(*pp)->next;
    dialer *d = *pp;
    if (d != NULL) {
        *pp = d->next;
        d->closed = true;
    }
    pthread_mutex_unlock(&n->lock);
    if (d == NULL)
        return;
    dialer_free(d); /* stops its operation: no conn of it starts after this */
    /* Like closing an nng dialer, close the connection it made. */
    pthread_mutex_lock(&n->lock);
    uint32_t ids[8];
    size_t k = 0;
    for (conn *c = n->conns; c != NULL && k < 8; c = c->next)
        if (c->dialer == id && !c->dead)
            ids[k++] = c->id;
    pthread_mutex_unlock(&n->lock);
    for (size_t i = 0; i < k; i++)
        node_net_drop(n, ids[i]);
}

node_err node_net_send(node_net *n, uint32_t pipe, const uint8_t *buf, size_t len)
{
    if (len > n->max_message)
        return NODE_EIO;
    tx_item *t = malloc(sizeof(*t) + FRAME_PREFIX + len);
    if (t == NULL)
        return NODE_ENOMEM;
    t->next = NULL;
    t->len = FRAME_PREFIX + len;
    t->off = 0;
    uint64_t wire = (uint64_t)len + 4;
    for (int i = 0; i < 8; i++)
        t->data[i] = (uint8_t)(wire >> (56 - 8 * i));
    static const uint8_t hop[4] = { 0, 0, 0, 1 };
    memcpy(t->data + 8, hop, 4);
    if (len > 0)
        memcpy(t->data + FRAME_PREFIX, buf, len);

    pthread_mutex_lock(&n->lock);
    conn *c = conn_find_locked(n, pipe);
    node_err why = c == NULL || c->dead        ? NODE_ENOTFOUND
        : c->txq_bytes + t->len > TX_QUEUE_MAX ? NODE_EIO
                                               : NODE_OK;
    if (why != NODE_OK) {
        pthread_mutex_unlock(&n->lock);
        free(t);
        return why;
    }
    bool start = enqueue_locked(c, t);
    pthread_mutex_unlock(&n->lock);
    if (start) {
        nng_aio_wait(c->tx); /* see "Re-arming" above */
        tx_submit(c);
    }
    return NODE_OK;
}

void node_net_drop(node_net *n, uint32_t pipe)
{
    pthread_mutex_lock(&n->lock);
    conn *c = conn_find_locked(n, pipe);
    bool close = c != NULL && kill_locked(c, "dropped by this node");
    bool wake = c != NULL && maybe_down_locked(c);
    NODE_DEBUG("net.drop", "pipe=%" PRIu32 " found=%d rx_busy=%d tx_busy=%d down=%d", pipe,
        c != NULL, c != NULL && c->rx_busy, c != NULL && c->tx_busy, c != NULL && c->down_sent);
    pthread_mutex_unlock(&n->lock);
    if (close)
        nng_stream_close(c->s);
    if (wake)
        uv_async_send(&n->wake);
}

node_err node_net_ctl_reply(node_net *n, const uint8_t *buf, size_t len)
{
    if (n->ctl_cur < 0)
        return NODE_EINVAL; /* no request in hand, or it was answered already */
    ctl_slot *sl = &n->slots[n->ctl_cur];
    n->ctl_cur = -1;
    nng_msg *m;
    int rv = nng_msg_alloc(&m, 0);
    if (rv == 0 && (rv = nng_msg_append(m, buf, len)) != 0)
        nng_msg_free(m);
    if (rv != 0) {
        nng_ctx_recv(sl->ctx, sl->rx);
        return NODE_ENOMEM;
    }
    /* Sent without blocking the loop, bounded by CTL_SEND_MS; the slot takes its next
     * request once the reply has gone (ctl_tx_cb). */
    nng_aio_set_msg(sl->tx, m);
    nng_ctx_send(sl->ctx, sl->tx);
    return NODE_OK;
}

static void net_closed_cb(uv_handle_t *h)
{
    node_net *n = h->data;
    void (*done)(void *) = n->closed_cb;
    void *ctx = n->closed_ctx;
    /* Drop whatever arrived during shutdown. */
    net_ev *ev = n->head;
    while (ev != NULL) {
        net_ev *next = ev->next;
        if (ev->msg)
            nng_msg_free(ev->msg);
        free(ev->buf);
        free(ev);
        ev = next;
    }
    pthread_mutex_destroy(&n->lock);
    free(n);
    if (done != NULL)
        done(ctx);
}

/* Stop every operation and free every connection and dialer; the loop frees n. */
static void shut(node_net *n)
{
    pthread_mutex_lock(&n->lock);
    n->closing = true;
    dialer *ds = n->dialers;
    n->dialers = NULL;
    for (dialer *d = ds; d != NULL; d = d->next)
        d->closed = true;
    pthread_mutex_unlock(&n->lock);

    /* No new connections: stop accepting and dialling first. */
    if (n->lst != NULL)
        nng_stream_listener_close(n->lst);
    if (n->accept != NULL)
        nng_aio_stop(n->accept);
    while (ds != NULL) {
        dialer *next = ds->next;
        dialer_free(ds);
        ds = next;
    }
    if (n->ctl_open)
        nng_close(n->ctl); /* closes the contexts too */
    for (int i = 0; i < CTL_SLOTS; i++) {
        if (n->slots[i].rx != NULL)
            nng_aio_stop(n->slots[i].rx);
        if (n->slots[i].tx != NULL)
            nng_aio_stop(n->slots[i].tx);
    }

    pthread_mutex_lock(&n->lock);
    conn *cs = n->conns;
    n->conns = NULL;
    for (conn *c = cs; c != NULL; c = c->next)
        kill_locked(c, "node stopping");
    pthread_mutex_unlock(&n->lock);
    for (conn *c = cs; c != NULL; c = c->next)
        nng_stream_close(c->s);
    while (cs != NULL) {
        conn *next = cs->next;
        nng_aio_stop(cs->rx);
        nng_aio_stop(cs->tx);
        conn_free(cs);
        cs = next;
    }
    if (n->accept != NULL)
        nng_aio_free(n->accept);
    for (int i = 0; i < CTL_SLOTS; i++) {
        if (n->slots[i].rx != NULL)
            nng_aio_free(n->slots[i].rx);
        if (n->slots[i].tx != NULL)
            nng_aio_free(n->slots[i].tx);
    }
    if (n->lst != NULL)
        nng_stream_listener_free(n->lst);
    uv_close((uv_handle_t *)&n->wake, net_closed_cb);
}

void node_net_close(node_net *n, void (*done)(void *), void *ctx)
{
    n->closed_cb = done;
    n->closed_ctx = ctx;
    shut(n);
}
