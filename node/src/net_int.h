/*
 * net_int.h - the private structures of the nng wrapper, shared by net.c (the object: listener,
 * dialers, control socket, the hand-off of events to the loop) and conn.c (one connection: SP
 * framing, its send queue and reads). Only these two files of node/ call nng.
 */
#ifndef NODE_NET_INT_H
#define NODE_NET_INT_H

#include "internal.h"

#include <nng/nng.h>
#include <pthread.h>

#define SP_HEADER_LEN 8
#define SP_PAIR1 0x11
#define FRAME_PREFIX 12 /* 64-bit length + 32-bit pair1 hop count */
/* A control connection's send queue (its answers: at most 16 MiB each, CLI side) */
#define TX_QUEUE_MAX ((size_t)96 << 20)
#define REDIAL_MIN_MS 100
#define REDIAL_MAX_MS 2000
#define STABLE_MS 10000 /* a connection that lived this long resets its dialer's backoff */
/* A connect that has not completed by then is abandoned and tried again: a listener whose
 * backlog is full (a stopped process, a proxy not accepting) leaves SYNs unanswered, and the
 * kernel's own retries would stretch one attempt over minutes. */
#define DIAL_TIMEOUT_MS 5000
/* Control connections open at once (CLI processes, scripts, the testnet); one more is closed
 * at once. */
#define CTL_CONNS_MAX 64
/* The largest message of a connection whose peer has not proven its identity yet: the
 * handshake's messages (PROTOCOL.md "Handshake and session frames": at most 144 bytes), with room
 * to spare. */
#define HANDSHAKE_MSG_MAX 256
#define SP_REQ0 0x30
#define SP_REP0 0x31
/* nng's ipc transport puts a message-type byte (1) before each message's 64-bit length. */
#define IPC_MSG_TYPE 1

typedef struct net_ev {
    struct net_ev *next;
    node_net_ev kind;
    uint32_t pipe, dialer;
    bool ctl;       /* of a control connection */
    bool uid_known; /* a control connection's peer user id (the kernel's word), when known */
    uint64_t uid;
    uint8_t *buf; /* messages (payload at buf + 4, after the SP header) and DOWN reasons */
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
    uint8_t hdr[9]; /* the SP header (8 bytes), then each message's length prefix */
    size_t hdr_got;
    uint8_t *body;
    size_t body_len, body_got;
    size_t rx_pending; /* bytes handed to the loop and not yet consumed */
    bool rx_busy, rx_paused;

    tx_item *txq, *txq_tail;
    size_t txq_bytes;
    bool tx_busy;

    bool ctl;       /* a control connection (SP rep0 to a req0 client), else a peer's (pair1) */
    bool uid_known; /* a control connection's peer user id, from the kernel (SO_PEERCRED) */
    uint64_t uid;
    bool trusted; /* a peer's whose handshake is done: messages up to max_message, else
                   * HANDSHAKE_MSG_MAX (control connections are local and always trusted) */
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

struct node_net {
    nng_stream_listener *lst;
    nng_aio *accept;
    bool accept_sleeping;
    nng_stream_listener *ctl_lst; /* ipc://control.sock */
    nng_aio *ctl_accept;
    bool ctl_accept_sleeping;
    size_t nctl;        /* control connections open (at most CTL_CONNS_MAX) */
    uint32_t ctl_pipe;  /* the control connection whose request the loop handles, or 0 */
    uint8_t ctl_hdr[4]; /* and that request's SP request id, echoed in the answer */
    bool ctl_uid_known; /* and its peer's user id, when the kernel told it */
    uint64_t ctl_uid;
    bool closing;
    uint16_t port;
    size_t max_message;
    size_t rx_share; /* the memory budget's share for unread messages of all connections */
    size_t tx_share; /* and for the send queues of the peer connections */

    pthread_mutex_t lock; /* everything below, and the fields of conns and dialers */
    conn *conns;
    size_t nconns;    /* in conns */
    size_t tx_queued; /* bytes in the send queues of the peer connections */
    dialer *dialers;
    uint32_t next_conn, next_dialer;
    net_ev *head, *tail;

    uv_async_t wake;
    node_net_cb cb;
    void *cb_ctx;
    void (*closed_cb)(void *);
    void *closed_ctx;
};

/* net.c */
dialer *net__dialer_find_locked(node_net *n, uint32_t id);
void net__dial_later(dialer *d, nng_duration ms);

/* conn.c */
/* How far connection c's unread messages may run ahead of the loop before its reading pauses
 * (lock held): for a peer's, the unread share split over the peer connections open, so that all
 * of them together stay within it (each may go over by the one message that crossed the line);
 * a control connection reads its next request once the loop took the last one. */
size_t net__rx_limit_locked(const node_net *n, const conn *c);
uint64_t net__mono_ms(void);
/* Queue an event for the loop (lock held); false when out of memory. */
bool net__push_locked(node_net *n, net_ev ev);
conn *net__conn_find_locked(node_net *n, uint32_t id);
/* Mark a conn dead with a reason (lock held). Returns true when the stream must be closed. */
bool net__kill_locked(conn *c, const char *why);
/* Lock held: when a dead conn has no operation running, announce its end (once). Returns true
 * when the loop must be woken. */
bool net__maybe_down_locked(conn *c);
void net__conn_free(conn *c);
/* A stream is connected (nng thread): announce it (a peer's: its control connections are the
 * net's own), send our SP header, start reading. On failure the stream is closed and false
 * returned. */
bool net__conn_start(node_net *n, nng_stream *s, uint32_t dialer_id, bool ctl);
/* Queue a message with its 4-byte SP header on connection pipe (see node__net_send). */
node_err net__send(
    node_net *n, uint32_t pipe, const uint8_t hdr[4], const uint8_t *buf, size_t len);
/* Resume reading a conn the loop caught up with. */
void net__rx_submit(conn *c);

#endif
