/* Internal helpers shared by node/src files. Not part of the public interface. */
#ifndef NODE_INTERNAL_H
#define NODE_INTERNAL_H

#include "node/node.h"

#include <stdlib.h>

#ifndef _POSIX_C_SOURCE
#error "node/ is built with _POSIX_C_SOURCE=200809L (uv.h needs it)"
#endif

/* Fill msg (when not NULL) with a formatted sentence and return err. */
node_err node__fail(node_errmsg *msg, node_err err, const char *fmt, ...) NODE_PRINTF(3, 4);

/* ---------------------------------------------------------------------------------------- */
/* Growing arrays: every one in node/ is a NODE_VEC, which doubles its capacity as it grows
 * (from NODE_VEC_MIN) and never beyond the maximum its user states where it grows it.        */

#define NODE_VEC_MIN 8
/* A vector of T: v[0..n), room for cap. Zero-initialise it; free v when done. */
#define NODE_VEC(T)                                                                                \
    struct {                                                                                       \
        T *v;                                                                                      \
        size_t n, cap;                                                                             \
    }
/* Make room for `need` elements in vector vec, never beyond max: NODE_OK, NODE_EFULL (need >
 * max) or NODE_ENOMEM; on failure vec is untouched. */
#define NODE_VEC_RESERVE(vec, need, max)                                                           \
    node__vec_reserve(&(vec)->v, &(vec)->cap, (need), sizeof(*(vec)->v), (max))
/* A new element at the end of vec (uninitialised), or NULL when it holds max already or memory
 * is out. */
#define NODE_VEC_PUSH(vec, max)                                                                    \
    (NODE_VEC_RESERVE((vec), (vec)->n + 1, (max)) == NODE_OK ? &(vec)->v[(vec)->n++] : NULL)
/* Free the elements' array and empty the vector. */
#define NODE_VEC_FREE(vec) ((void)(free((vec)->v), (vec)->v = NULL, (vec)->n = (vec)->cap = 0))
/* field: the address of a vector's element pointer (any T **). */
node_err node__vec_reserve(void *field, size_t *cap, size_t need, size_t size, size_t max);

/* ---------------------------------------------------------------------------------------- */
/* config.c: the one memory budget, [node] memory_mb, and its split (node/CONFIG.md "Memory").
 * Every queue, list and buffer that grows with traffic draws its bound from one share; the
 * shares are fixed fractions of the budget, so that they add up to it.                      */

typedef struct node_budget {
    size_t total; /* [node] memory_mb in bytes */
    size_t inq;   /* 1/4: inbound messages read, decoded and checked, not stored yet */
    size_t park;  /* 3/16: bodies that came before their key, with their index */
    size_t held;  /* 1/16 (or less, [sync] held_headers_mb): headers held out of order */
    size_t rx;    /* 1/8: unread messages of the peer connections together */
    size_t tx;    /* 1/8: send queues of the peer connections together */
    size_t lists; /* 1/16: wanted and waiting bodies, with their indexes (half each) */
    size_t wants; /* how many wanted bodies lists/2 holds */
    size_t waits; /* how many waiting bodies lists/2 holds */
    /* the rest, 3/16: the store's write transaction (LMDB's dirty pages, one group commit),
     * the key caches, the member table and its version vectors, libraries' buffers */
} node_budget;
/* The split of cfg's budget (the config is valid: node_config_load checked it). */
void node__budget_split(const node_config *cfg, node_budget *b);

/* ---------------------------------------------------------------------------------------- */
/* log.c: values from outside the node (operator names, URLs, evidence) are logged inside double
 * quotes through node__logq, so that no value adds a key=value pair of its own; node_log itself
 * writes every control character of a line as \xNN, so that no value starts a line. */

#define NODE_LOGQ_MAX 256
/* s escaped for a quoted log value: " and \ backslashed, control characters as \xNN, cut at
 * NODE_LOGQ_MAX characters ("..." then). The text is in a buffer of this thread that the fourth
 * next call reuses: use it within one node_log call. */
const char *node__logq(const char *s);

/* ---------------------------------------------------------------------------------------- */
/* log.c: a line that could repeat without end (a stranger dialling again and again) is logged
 * once per key, then at most once per interval, the interval doubling from NODE_LOGLIMIT_MIN_MS
 * to NODE_LOGLIMIT_MAX_MS (and starting again after that long without the key), with the
 * count of lines held back. At most NODE_LOGLIMIT_KEYS keys are remembered; a new key takes
 * the place of the one seen least recently. Not synchronised: one thread per limiter. */

#define NODE_LOGLIMIT_KEYS 64
#define NODE_LOGLIMIT_MIN_MS 10000u
#define NODE_LOGLIMIT_MAX_MS 3600000u

typedef struct node_loglimit_slot {
    char key[96];
    uint64_t seen_ms, next_ms, interval_ms;
    uint64_t held;
} node_loglimit_slot;

typedef struct node_loglimit {
    node_loglimit_slot slot[NODE_LOGLIMIT_KEYS];
} node_loglimit;

/* Should the line of this key be logged at now_ms? When true, *held is how many were held
 * back since the last one logged. */
bool node__loglimit_pass(node_loglimit *l, const char *key, uint64_t now_ms, uint64_t *held);

/* ---------------------------------------------------------------------------------------- */
/* net.c: nng sockets (peers: pair1 poly; control: rep0 on ipc://control.sock)               */

#include <uv.h>

typedef struct node_net node_net;

typedef enum node_net_ev {
    NODE_NET_PIPE_UP,   /* a peer connection is up (dialer != 0 when we dialled it); data is
                         * the remote address, "IP:PORT" */
    NODE_NET_PIPE_DOWN, /* a peer connection is gone */
    NODE_NET_MESSAGE,   /* a message from a peer pipe */
    NODE_NET_CONTROL,   /* a control request; answer with node__net_ctl_reply */
} node_net_ev;

/* Runs on the loop thread. data is borrowed for the call. */
typedef void (*node_net_cb)(
    void *ctx, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data, size_t len);

/* Open both sockets, listen on listen_url and on ipc://control.sock (relative to the current
 * directory, the data directory). On error the loop must run once more to free what was
 * made. */
node_err node__net_open(uv_loop_t *loop, const char *listen_url, size_t max_message,
    const node_budget *budget, node_net_cb cb, void *ctx, node_net **out, node_errmsg *msg);
uint16_t node__net_port(const node_net *n);
/* Dial url in the background, reconnecting with backoff; *dialer names the pipes it makes. */
node_err node__net_dial(node_net *n, const char *url, uint32_t *dialer, node_errmsg *msg);
void node__net_undial(node_net *n, uint32_t dialer);
/* Queue a message to one pipe without blocking; NODE_EIO when the send queues are full (the
 * peers' send share of the memory budget, a control connection's TX_QUEUE_MAX),
 * NODE_ENOTFOUND when the connection is gone or going (its DOWN event, with the reason, is on
 * the way). */
node_err node__net_send(node_net *n, uint32_t pipe, const uint8_t *buf, size_t len);
/* The bytes of unread messages of the peer connections (handed to the loop, not taken yet; the
 * budget's unread share bounds them) and in the send queues of all peer connections (the send
 * share bounds them: a send that would take them past it fails with NODE_EIO). */
void node__net_queued(node_net *n, size_t *unread, size_t *send);
void node__net_drop(node_net *n, uint32_t pipe);
/* The peer on this connection proved its identity: its messages may be as large as
 * max_message (until then, at most a handshake message's size). */
void node__net_trust(node_net *n, uint32_t pipe);
/* Answer the control request in progress and wait for the next one. */
node_err node__net_ctl_reply(node_net *n, const uint8_t *buf, size_t len);
/* The Unix user who sent the control request being handled, as the kernel says: its name, or
 * "uid:N" when the system has no printable name for it, or "" when not known. */
void node__net_ctl_user(node_net *n, char *out, size_t size);
/* Close everything; done(ctx) runs on the loop once n is freed. */
void node__net_close(node_net *n, void (*done)(void *), void *ctx);

#endif /* NODE_INTERNAL_H */
