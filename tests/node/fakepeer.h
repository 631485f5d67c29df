/*
 * fakepeer: a test-side peer for hostile-peer scenarios. It connects to a real pattod on its
 * listen address (tcp://127.0.0.1:PORT) with a plain TCP socket that speaks nng's SP-over-TCP
 * framing as a pair1 peer (the 8-byte SP header, then 64-bit big-endian length prefixes and
 * pair1's 4-byte hop header), which is what pattod's own dialler sends. It lets a test send
 * what a well-behaved node would never send: raw bytes before or instead of the handshake, a
 * length prefix that lies, a handshake under any proto_identity (a stranger's, or a member's
 * read from its data directory), and session frames built, altered or replayed at will.
 *
 * Why not an nng socket: nng's pair1 polyamorous socket queues two messages per pipe and
 * silently drops the rest of a burst, and nng 1.5.2 now and then leaked a closed socket's
 * dialler and pipe (LeakSanitizer, in CI) or hung in nng_close when the node dropped the pipe
 * mid-write. A plain socket has one connection, never redials, and closes at once, so a test
 * can watch the node close it (fp_wait_closed).
 *
 * Threads: one fp_peer belongs to one test thread; nothing runs in the background.
 */
#ifndef TESTS_NODE_FAKEPEER_H
#define TESTS_NODE_FAKEPEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proto/proto.h>

typedef enum fp_result {
    FP_OK = 0,
    FP_TIMEOUT, /* nothing arrived in time */
    FP_ENNG,    /* the connection failed or was closed (fp_error says which) */
    FP_EPROTO,  /* proto/ refused what arrived, or could not build what was asked */
} fp_result;

typedef struct fp_peer fp_peer;

/* Connect to url (tcp://127.0.0.1:PORT only) and exchange SP headers (at most 5 s).
 * recv_max: the largest message this peer accepts. Returns owned, free with fp_close.
 * FP_ENNG when the connection fails. */
fp_result fp_dial(const char *url, size_t recv_max, fp_peer **out);
/* The same, then `first` sent the moment the connection is up (the earliest any peer could
 * send); returns once it was written. */
fp_result fp_dial_send(
    const char *url, size_t recv_max, const void *first, size_t first_len, fp_peer **out);
/* fp_dial by port. "The pipe" is the TCP connection, seen closed when the node ends it
 * (fp_wait_closed reads and counts what the node sends until then). */
fp_result fp_dial_tcp(uint16_t port, size_t recv_max, fp_peer **out);
/* Send a message length prefix announcing `announced` bytes, followed by
 * only the n bytes of `some`. */
fp_result fp_send_announced(fp_peer *p, uint64_t announced, const void *some, size_t n);
/* Close the socket (its pipe goes down at the node) and free the peer. NULL is fine. */
void fp_close(fp_peer *p);

/* The last failure, as a sentence (static storage inside p). */
const char *fp_error(const fp_peer *p);

/* Send bytes as one SP message on the connection, whatever they are. */
fp_result fp_send_raw(fp_peer *p, const void *buf, size_t len);
/* Receive one SP message within timeout_ms into *out (owned: proto_buf_free). */
fp_result fp_recv_raw(fp_peer *p, int timeout_ms, proto_buf *out);
/* How many messages arrived on this peer so far (raw or in session). */
size_t fp_received(const fp_peer *p);

/* Initiator handshake as `me` with the member `peer`: send HELLO, wait up to timeout_ms for
 * HELLO_REPLY, check it and send HELLO_FINISH. `me` is borrowed for the call only. On
 * FP_EPROTO, *perr (optional) says what proto/ refused. */
fp_result fp_handshake(fp_peer *p, const proto_identity *me, const uint8_t peer[PROTO_ORIGIN_LEN],
    int timeout_ms, proto_err *perr);
/* Send HELLO only (step 1), leaving the handshake half done. */
fp_result fp_send_hello(fp_peer *p, const proto_identity *me, const uint8_t peer[PROTO_ORIGIN_LEN]);

/* Inside an established session: seal msg as the next FRAME and send it. */
fp_result fp_send(fp_peer *p, const uint8_t *msg, size_t len);
/* Seal msg as the next FRAME without sending it (*frame owned); the send counter advances, as
 * it would on a real send. For tests that alter, truncate or replay frames. */
fp_result fp_seal(fp_peer *p, const uint8_t *msg, size_t len, proto_buf *frame);
/* Receive and open the next FRAME within timeout_ms; *msg owned, *kind its message kind. */
fp_result fp_recv(fp_peer *p, int timeout_ms, proto_buf *msg, unsigned *kind);
/* Receive frames until one of kind `kind` arrives (others are counted and dropped). */
fp_result fp_recv_kind(fp_peer *p, unsigned kind, int timeout_ms, proto_buf *msg);
/* How many session messages of this kind arrived so far. */
size_t fp_kind_count(const fp_peer *p, unsigned kind);

/* Pipes of this peer that went down so far (0 or 1: the dialer never redials). */
size_t fp_closed_count(fp_peer *p);
/* Wait up to timeout_ms for the pipe to go down. */
bool fp_wait_closed(fp_peer *p, int timeout_ms);
/* Milliseconds from the end of fp_dial to the pipe going down; -1 while it is up. */
long fp_closed_after_ms(fp_peer *p);

#endif
