/*
 * The nng wrapper: net.c and conn.c (one connection) are the only files of node/ that call nng.
 *
 * - peers: nng byte streams (nng_stream_listener / nng_stream_dialer, tcp://). On them this
 *   wrapper speaks the SP wire format of nng's pair1 protocol over TCP, so that any SP pair1
 *   socket can talk to a node: an 8-byte header (00 'S' 'P' 00, protocol 0x0011, two zero
 *   bytes) each way, then messages, each a 64-bit big-endian length, a 4-byte pair1 hop
 *   count and the payload. nng's own pair1 socket is not used because, in polyamorous mode,
 *   it silently drops a message when a pipe's two-slot send queue is full, which breaks the
 *   session's frame sequence. Here every connection has its own unbounded-by-count but
 *   byte-limited send queue (node__net_send fails instead of dropping), partial writes are
 *   resumed, and a length over [sync] max_message_bytes is rejected before anything is
 *   allocated (ARCHITECTURE.md, house rule 3).
 * - control: ipc://control.sock in the data directory, mode 0660, an nng stream listener on
 *   which conn.c speaks SP rep0 to the CLI's req0 sockets (the SP header with protocol 0x31,
 *   then each request's 4-byte id echoed before its answer), one connection per client, at
 *   most CTL_CONNS_MAX at once.
 *
 * nng calls back on its own threads. Callbacks touch the connection under the net lock and
 * hand events to the libuv loop through a locked queue and uv_async_send (ARCHITECTURE.md, house
 * rule 4). Re-arming: a callback marks its operation idle under the lock and only then returns, so
 * the loop thread can see an idle operation whose callback is still running. Starting the
 * next operation on that aio from the loop at that moment races with nng's completion of the
 * callback (a dialer stalled for good that way in a chaos run), so the loop first waits for
 * the callback to finish (nng_aio_wait) before it re-arms a read, a send or a redial.
 *
 * Event order per connection is the order of the queue: UP, then its messages, then DOWN
 * (with the reason as data). A connection is freed on the loop thread when its DOWN event is
 * handled, once neither of its operations is running. A reader whose undelivered messages
 * pass RX_PAUSE_BYTES stops reading until the loop catches up.
 *
 * May call: conn.c, nng, libuv (the async handle), log.c.
 */
#include "net_int.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static node_err nng_fail(node_errmsg *msg, const char *what, int rv)
{
    return node__fail(msg, NODE_EIO, "%s: %s", what, nng_strerror(rv));
}

dialer *net__dialer_find_locked(node_net *n, uint32_t id)
{
    for (dialer *d = n->dialers; d != NULL; d = d->next)
        if (d->id == id)
            return d;
    return NULL;
}

/* A listener's next connection (nng thread): a peer's (listen URL) or a client's (control
 * socket). */
static void accepted(node_net *n, nng_stream_listener *l, nng_aio *aio, bool *sleeping, bool ctl)
{
    int rv = nng_aio_result(aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (*sleeping) {
        *sleeping = false;
    } else if (rv == 0) {
        net__conn_start(n, nng_aio_get_output(aio, 0), 0, ctl);
    } else {
        /* Out of descriptors or memory: pause instead of spinning. */
        *sleeping = true;
        nng_sleep_aio(100, aio);
        return;
    }
    nng_stream_listener_accept(l, aio);
}

static void accept_cb(void *arg)
{
    node_net *n = arg;
    accepted(n, n->lst, n->accept, &n->accept_sleeping, false);
}

static void ctl_accept_cb(void *arg)
{
    node_net *n = arg;
    accepted(n, n->ctl_lst, n->ctl_accept, &n->ctl_accept_sleeping, true);
}

/* Start one connect attempt, bounded in time. */
static void dial(dialer *d)
{
    nng_aio_set_timeout(d->aio, DIAL_TIMEOUT_MS);
    nng_stream_dialer_dial(d->d, d->aio);
}

/* Wait before the next attempt (the aio's timeout must not cut the sleep short). */
void net__dial_later(dialer *d, nng_duration ms)
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
        if (net__conn_start(n, nng_aio_get_output(d->aio, 0), d->id, false))
            return;
    }
    d->state = DIAL_SLEEPING;
    nng_duration wait = d->backoff;
    d->backoff = d->backoff * 2 > REDIAL_MAX_MS ? REDIAL_MAX_MS : d->backoff * 2;
    net__dial_later(d, wait);
}

/* ---------------------------------------------------------------------------------------- */
/* Control socket                                                                            */

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
    if (c != NULL) {
        *pp = c->next;
        n->nctl -= c->ctl;
        n->nconns--;
        if (!c->ctl)
            n->tx_queued -= c->txq_bytes;
    }
    dialer *d = c != NULL && c->dialer != 0 ? net__dialer_find_locked(n, c->dialer) : NULL;
    bool redial = d != NULL && !d->closed && d->state == DIAL_CONNECTED;
    nng_duration wait = 0;
    if (redial) {
        if (net__mono_ms() - c->born_ms >= STABLE_MS)
            d->backoff = REDIAL_MIN_MS;
        wait = d->backoff;
        d->backoff = d->backoff * 2 > REDIAL_MAX_MS ? REDIAL_MAX_MS : d->backoff * 2;
        d->state = DIAL_SLEEPING;
    }
    pthread_mutex_unlock(&n->lock);
    NODE_DEBUG("net.reap", "pipe=%" PRIu32 " found=%d dialer=%" PRIu32 " redial=%d wait=%d", id,
        c != NULL, c != NULL ? c->dialer : 0, (int)redial, (int)wait);
    if (c != NULL)
        net__conn_free(c); /* waits for a callback that is still returning */
    if (redial) {
        nng_aio_wait(d->aio); /* see "Re-arming" above */
        net__dial_later(d, wait);
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
                /* Answered through node__net_ctl_reply, within the callback. */
                n->ctl_pipe = ev->pipe;
                memcpy(n->ctl_hdr, ev->buf, 4);
                n->ctl_uid_known = ev->uid_known;
                n->ctl_uid = ev->uid;
                n->cb(n->cb_ctx, ev->kind, 0, 0, ev->buf + ev->off, ev->len);
                n->ctl_pipe = 0;
            } else if (ev->ctl && ev->kind == NODE_NET_PIPE_DOWN) {
                NODE_DEBUG("ctl.down", "pipe=%" PRIu32 " reason=\"%.*s\"", ev->pipe,
                    (int)(ev->len < 160 ? ev->len : 160), ev->buf ? (const char *)ev->buf : "");
            } else if (!ev->ctl) {
                n->cb(n->cb_ctx, ev->kind, ev->pipe, ev->dialer, ev->buf ? ev->buf + ev->off : NULL,
                    ev->len);
            }
            if (ev->kind == NODE_NET_MESSAGE || ev->kind == NODE_NET_CONTROL) {
                bool resume = false;
                pthread_mutex_lock(&n->lock);
                conn *c = net__conn_find_locked(n, ev->pipe);
                if (c != NULL) {
                    c->rx_pending -= ev->off + ev->len;
                    if (c->rx_paused && !c->dead
                        && c->rx_pending <= net__rx_limit_locked(n, c) / 2) {
                        c->rx_paused = false;
                        c->rx_busy = true;
                        resume = true;
                    }
                }
                pthread_mutex_unlock(&n->lock);
                if (resume) {
                    nng_aio_wait(c->rx); /* see "Re-arming" above */
                    net__rx_submit(c);
                }
            } else if (ev->kind == NODE_NET_PIPE_DOWN) {
                reap(n, ev->pipe);
            }
        }
        free(ev->buf);
        free(ev);
        ev = next;
    }
}

static void net_closed_cb(uv_handle_t *h);
static void shut(node_net *n);

void node__net_queued(node_net *n, size_t *unread, size_t *send)
{
    pthread_mutex_lock(&n->lock);
    *unread = 0;
    for (const conn *c = n->conns; c != NULL; c = c->next)
        if (!c->ctl)
            *unread += c->rx_pending;
    *send = n->tx_queued;
    pthread_mutex_unlock(&n->lock);
}

node_err node__net_open(uv_loop_t *loop, const char *listen_url, size_t max_message,
    const node_budget *budget, node_net_cb cb, void *ctx, node_net **out, node_errmsg *msg)
{
    node_net *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NODE_ENOMEM;
    n->cb = cb;
    n->cb_ctx = ctx;
    n->max_message = max_message;
    n->rx_share = budget->rx;
    n->tx_share = budget->tx;
    pthread_mutex_init(&n->lock, NULL);
    n->wake.data = n;
    int rv = uv_async_init(loop, &n->wake, wake_cb);
    if (rv != 0) {
        pthread_mutex_destroy(&n->lock);
        free(n);
        return node__fail(msg, NODE_EIO, "uv_async_init: %s", uv_strerror(rv));
    }
    node_err err;
    if ((rv = nng_aio_alloc(&n->accept, accept_cb, n)) != 0
        || (rv = nng_aio_alloc(&n->ctl_accept, ctl_accept_cb, n)) != 0) {
        err = nng_fail(msg, "cannot allocate network operations", rv);
        goto fail;
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

    /* The control socket speaks SP req/rep over plain ipc streams (conn.c), not through an
     * nng rep0 socket: nng 1.5.2's ipc listener stops accepting for good when a client goes
     * away during its SP negotiation (nng issue #1518, fixed after 1.5.2), which a CLI
     * interrupted at the wrong moment would do. */
    if ((rv = nng_stream_listener_alloc(&n->ctl_lst, "ipc://control.sock")) != 0
        || (rv = nng_stream_listener_set_int(n->ctl_lst, NNG_OPT_IPC_PERMISSIONS, 0660)) != 0
        || (rv = nng_stream_listener_listen(n->ctl_lst)) != 0) {
        err = nng_fail(msg, "cannot listen on the control socket control.sock", rv);
        goto fail;
    }
    nng_stream_listener_accept(n->lst, n->accept);
    nng_stream_listener_accept(n->ctl_lst, n->ctl_accept);
    *out = n;
    return NODE_OK;

fail:
    /* n is freed in the close callback of its async handle, when the caller's loop runs. */
    shut(n);
    return err;
}

uint16_t node__net_port(const node_net *n)
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

node_err node__net_dial(node_net *n, const char *url, uint32_t *id, node_errmsg *msg)
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
    while (d->id == 0 || net__dialer_find_locked(n, d->id) != NULL);
    d->next = n->dialers;
    n->dialers = d;
    pthread_mutex_unlock(&n->lock);
    *id = d->id;
    dial(d);
    return NODE_OK;
}

void node__net_undial(node_net *n, uint32_t id)
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
        node__net_drop(n, ids[i]);
}

void node__net_ctl_user(node_net *n, char *out, size_t size)
{
    out[0] = 0;
    if (n->ctl_pipe == 0 || !n->ctl_uid_known || size == 0)
        return;
    struct passwd pw, *found = NULL;
    char buf[4096];
    /* The access log carries printable ASCII without spaces (PROTOCOL.md, ACCESS_GRANT): a
     * name that is not, or none, is given as the number. */
    bool named = getpwuid_r((uid_t)n->ctl_uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL
        && found->pw_name[0] != 0 && strlen(found->pw_name) < size;
    for (const char *p = named ? found->pw_name : ""; *p != 0 && named; p++)
        named = *p >= 0x21 && *p <= 0x7e;
    if (named)
        snprintf(out, size, "%s", found->pw_name);
    else
        snprintf(out, size, "uid:%" PRIu64, n->ctl_uid);
}

node_err node__net_ctl_reply(node_net *n, const uint8_t *buf, size_t len)
{
    if (n->ctl_pipe == 0)
        return NODE_EINVAL; /* no request in hand, or it was answered already */
    uint32_t pipe = n->ctl_pipe;
    n->ctl_pipe = 0;
    /* Queued without blocking the loop, with the request's id (rep0's answer). */
    return net__send(n, pipe, n->ctl_hdr, buf, len);
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
    if (n->ctl_lst != NULL)
        nng_stream_listener_close(n->ctl_lst);
    if (n->accept != NULL)
        nng_aio_stop(n->accept);
    if (n->ctl_accept != NULL)
        nng_aio_stop(n->ctl_accept);
    while (ds != NULL) {
        dialer *next = ds->next;
        dialer_free(ds);
        ds = next;
    }

    pthread_mutex_lock(&n->lock);
    conn *cs = n->conns;
    n->conns = NULL;
    for (conn *c = cs; c != NULL; c = c->next)
        net__kill_locked(c, "node stopping");
    pthread_mutex_unlock(&n->lock);
    for (conn *c = cs; c != NULL; c = c->next)
        nng_stream_close(c->s);
    while (cs != NULL) {
        conn *next = cs->next;
        nng_aio_stop(cs->rx);
        nng_aio_stop(cs->tx);
        net__conn_free(cs);
        cs = next;
    }
    if (n->accept != NULL)
        nng_aio_free(n->accept);
    if (n->ctl_accept != NULL)
        nng_aio_free(n->ctl_accept);
    if (n->lst != NULL)
        nng_stream_listener_free(n->lst);
    if (n->ctl_lst != NULL)
        nng_stream_listener_free(n->ctl_lst);
    uv_close((uv_handle_t *)&n->wake, net_closed_cb);
}

void node__net_close(node_net *n, void (*done)(void *), void *ctx)
{
    n->closed_cb = done;
    n->closed_ctx = ctx;
    shut(n);
}
