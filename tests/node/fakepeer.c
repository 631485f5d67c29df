/* A test-side peer that dials a real pattod (see fakepeer.h). */
#include "fakepeer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FP_KINDS 32

struct fp_peer {
    int fd; /* the TCP connection, speaking SP over TCP as a pair1 peer */
    size_t recv_max;
    proto_session *sess;
    proto_limits lim;
    char err[256];
    size_t received;
    size_t kinds[FP_KINDS];
    uint64_t up_ms; /* monotonic, end of fp_dial */

    size_t closed;
    uint64_t closed_ms;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static fp_result proto_failed(fp_peer *p, const char *what, proto_err perr, const proto_diag *d)
{
    snprintf(p->err, sizeof(p->err), "%s: %s (%s at byte %zu)", what, proto_strerror(perr),
        d != NULL && d->reason != NULL ? d->reason : "-", d != NULL ? d->offset : 0);
    return FP_EPROTO;
}

/* ---------------------------------------------------------------------------------------- */
/* Raw SP over TCP (nng's wire format for the tcp transport, pair1 protocol)                 */

#define SP_PAIR1 0x11 /* protocol number of pair1: 1 << 4 | 1 */

static void tcp_mark_closed(fp_peer *p)
{
    if (p->closed++ == 0)
        p->closed_ms = mono_ms();
}

/* Read exactly n bytes before deadline (monotonic ms). 0 done, 1 timed out, -1 closed. */
static int tcp_read(fp_peer *p, uint8_t *buf, size_t n, uint64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return 1;
        struct pollfd pfd = { p->fd, POLLIN, 0 };
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return 1;
        ssize_t r = recv(p->fd, buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            tcp_mark_closed(p);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static fp_result tcp_write(fp_peer *p, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    while (len > 0) {
        ssize_t w = send(p->fd, b, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(p->err, sizeof(p->err), "send: %s", strerror(errno));
            tcp_mark_closed(p);
            return FP_ENNG;
        }
        b += w;
        len -= (size_t)w;
    }
    return FP_OK;
}

fp_result fp_dial_tcp(uint16_t port, size_t recv_max, fp_peer **out)
{
    *out = NULL;
    fp_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return FP_ENNG;
    proto_limits_default(&p->lim);
    p->recv_max = recv_max;
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint8_t hdr[8] = { 0x00, 'S', 'P', 0x00, 0x00, SP_PAIR1, 0x00, 0x00 }, peer[8];
    if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        snprintf(p->err, sizeof(p->err), "connect: %s", strerror(errno));
        goto fail;
    }
    if (tcp_write(p, hdr, sizeof(hdr)) != FP_OK)
        goto fail;
    if (tcp_read(p, peer, sizeof(peer), mono_ms() + 5000) != 0 || peer[0] != 0 || peer[1] != 'S'
        || peer[2] != 'P' || peer[3] != 0 || peer[5] != SP_PAIR1) {
        snprintf(p->err, sizeof(p->err), "no SP pair1 header from the node");
        goto fail;
    }
    p->up_ms = mono_ms();
    *out = p;
    return FP_OK;
fail:
    fprintf(stderr, "fakepeer: %s (tcp port %u)\n", p->err, (unsigned)port);
    fp_close(p);
    return FP_ENNG;
}

fp_result fp_dial(const char *url, size_t recv_max, fp_peer **out)
{
    static const char prefix[] = "tcp://127.0.0.1:";
    *out = NULL;
    char *end = NULL;
    unsigned long port = 0;
    if (strncmp(url, prefix, sizeof(prefix) - 1) == 0) {
        errno = 0;
        port = strtoul(url + sizeof(prefix) - 1, &end, 10);
    }
    if (end == NULL || *end != '\0' || errno != 0 || port == 0 || port > 65535) {
        fprintf(stderr, "fakepeer: %s is not tcp://127.0.0.1:PORT\n", url);
        return FP_ENNG;
    }
    return fp_dial_tcp((uint16_t)port, recv_max, out);
}

fp_result fp_dial_send(
    const char *url, size_t recv_max, const void *first, size_t first_len, fp_peer **out)
{
    fp_result r = fp_dial(url, recv_max, out);
    if (r == FP_OK && (r = fp_send_raw(*out, first, first_len)) != FP_OK) {
        fprintf(stderr, "fakepeer: %s (%s)\n", fp_error(*out), url);
        fp_close(*out);
        *out = NULL;
    }
    return r;
}

fp_result fp_send_announced(fp_peer *p, uint64_t announced, const void *some, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(announced >> (56 - 8 * i));
    fp_result r = tcp_write(p, len, sizeof(len));
    return r == FP_OK && n > 0 ? tcp_write(p, some, n) : r;
}

fp_result fp_send_raw(fp_peer *p, const void *buf, size_t len)
{
    uint8_t hop[4] = { 0, 0, 0, 1 }; /* pair1's hop count header */
    fp_result r = fp_send_announced(p, (uint64_t)len + 4, hop, sizeof(hop));
    return r == FP_OK ? tcp_write(p, buf, len) : r;
}

fp_result fp_recv_raw(fp_peer *p, int timeout_ms, proto_buf *out)
{
    out->p = NULL;
    out->len = 0;
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    uint8_t len[8];
    int rv = p->closed > 0 ? -1 : tcp_read(p, len, sizeof(len), deadline);
    if (rv != 0) {
        /* Closed before a message began: nothing arrives, now or later (as with an nng socket
         * whose only pipe is gone, FP_TIMEOUT). */
        snprintf(p->err, sizeof(p->err), "%s",
            rv > 0 ? "receive: timed out" : "receive: the node closed the connection");
        return FP_TIMEOUT;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = n << 8 | len[i];
    if (n < 4 || n > p->recv_max) {
        snprintf(p->err, sizeof(p->err), "the node announced a %llu-byte message",
            (unsigned long long)n);
        return FP_EPROTO;
    }
    uint8_t *buf = malloc((size_t)n);
    if (buf == NULL)
        return FP_ENNG;
    /* A message that has begun arrives whole: allow it a generous deadline of its own. */
    if ((rv = tcp_read(p, buf, (size_t)n, mono_ms() + 10000)) != 0) {
        free(buf);
        snprintf(p->err, sizeof(p->err), "receive: message cut short");
        return FP_ENNG;
    }
    p->received++;
    out->len = (size_t)n - 4;
    memmove(buf, buf + 4, out->len);
    out->p = buf;
    return FP_OK;
}

void fp_close(fp_peer *p)
{
    if (p == NULL)
        return;
    if (p->fd >= 0)
        close(p->fd);
    proto_session_free(p->sess);
    free(p);
}

const char *fp_error(const fp_peer *p)
{
    return p->err;
}

size_t fp_received(const fp_peer *p)
{
    return p->received;
}

fp_result fp_send_hello(fp_peer *p, const proto_identity *me, const uint8_t peer[PROTO_ORIGIN_LEN])
{
    proto_handshake *hs = NULL;
    proto_buf hello = { NULL, 0 };
    proto_err perr = proto_hs_initiate(me, peer, NULL, &hs, &hello);
    if (perr != PROTO_OK)
        return proto_failed(p, "proto_hs_initiate", perr, NULL);
    fp_result r = fp_send_raw(p, hello.p, hello.len);
    proto_buf_free(&hello);
    proto_handshake_free(hs);
    return r;
}

fp_result fp_handshake(fp_peer *p, const proto_identity *me, const uint8_t peer[PROTO_ORIGIN_LEN],
    int timeout_ms, proto_err *perr_out)
{
    proto_handshake *hs = NULL;
    proto_buf hello = { NULL, 0 }, reply = { NULL, 0 }, finish = { NULL, 0 };
    proto_diag diag = { 0, NULL };
    fp_result r;
    proto_err perr = proto_hs_initiate(me, peer, NULL, &hs, &hello);
    if (perr != PROTO_OK) {
        r = proto_failed(p, "proto_hs_initiate", perr, NULL);
        goto out;
    }
    if ((r = fp_send_raw(p, hello.p, hello.len)) != FP_OK
        || (r = fp_recv_raw(p, timeout_ms, &reply)) != FP_OK)
        goto out;
    proto_session_free(p->sess);
    p->sess = NULL;
    perr = proto_hs_finish(hs, reply.p, reply.len, &finish, &p->sess, &diag);
    if (perr != PROTO_OK) {
        r = proto_failed(p, "proto_hs_finish", perr, &diag);
        goto out;
    }
    r = fp_send_raw(p, finish.p, finish.len);
out:
    if (perr_out != NULL)
        *perr_out = perr;
    proto_buf_free(&hello);
    proto_buf_free(&reply);
    proto_buf_free(&finish);
    proto_handshake_free(hs);
    return r;
}

fp_result fp_seal(fp_peer *p, const uint8_t *msg, size_t len, proto_buf *frame)
{
    if (p->sess == NULL) {
        snprintf(p->err, sizeof(p->err), "no session: handshake first");
        return FP_EPROTO;
    }
    proto_err perr = proto_session_seal(p->sess, msg, len, frame);
    return perr == PROTO_OK ? FP_OK : proto_failed(p, "proto_session_seal", perr, NULL);
}

fp_result fp_send(fp_peer *p, const uint8_t *msg, size_t len)
{
    proto_buf frame = { NULL, 0 };
    fp_result r = fp_seal(p, msg, len, &frame);
    if (r == FP_OK)
        r = fp_send_raw(p, frame.p, frame.len);
    proto_buf_free(&frame);
    return r;
}

fp_result fp_recv(fp_peer *p, int timeout_ms, proto_buf *msg, unsigned *kind)
{
    msg->p = NULL;
    msg->len = 0;
    if (p->sess == NULL) {
        snprintf(p->err, sizeof(p->err), "no session: handshake first");
        return FP_EPROTO;
    }
    proto_buf frame = { NULL, 0 };
    fp_result r = fp_recv_raw(p, timeout_ms, &frame);
    if (r != FP_OK)
        return r;
    proto_diag diag = { 0, NULL };
    proto_err perr = proto_session_open(p->sess, frame.p, frame.len, &p->lim, msg, &diag);
    proto_buf_free(&frame);
    if (perr != PROTO_OK)
        return proto_failed(p, "proto_session_open", perr, &diag);
    unsigned k = 0;
    if ((perr = proto_peek(msg->p, msg->len, &p->lim, &k, &diag)) != PROTO_OK) {
        proto_buf_free(msg);
        return proto_failed(p, "proto_peek", perr, &diag);
    }
    if (k < FP_KINDS)
        p->kinds[k]++;
    if (kind != NULL)
        *kind = k;
    return FP_OK;
}

fp_result fp_recv_kind(fp_peer *p, unsigned kind, int timeout_ms, proto_buf *msg)
{
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        uint64_t now = mono_ms();
        int left = now >= deadline ? 0 : (int)(deadline - now);
        unsigned k = 0;
        fp_result r = fp_recv(p, left, msg, &k);
        if (r != FP_OK || k == kind)
            return r;
        proto_buf_free(msg);
        if (left == 0) {
            snprintf(
                p->err, sizeof(p->err), "no message of kind %s in time", proto_kind_name(kind));
            return FP_TIMEOUT;
        }
    }
}

size_t fp_kind_count(const fp_peer *p, unsigned kind)
{
    return kind < FP_KINDS ? p->kinds[kind] : 0;
}

size_t fp_closed_count(fp_peer *p)
{
    return p->closed;
}

bool fp_wait_closed(fp_peer *p, int timeout_ms)
{
    /* Read what the node still sends until it closes the connection. Whole messages count
     * as received (fp_received), so that "nothing came back" stays checkable. */
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    while (p->closed == 0) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return false;
        proto_buf m = { NULL, 0 };
        fp_result r = fp_recv_raw(p, (int)(deadline - now), &m);
        proto_buf_free(&m);
        if (r == FP_TIMEOUT)
            return p->closed > 0;
        if (r == FP_EPROTO) {
            /* A length prefix over recv_max: something came back; drop the connection. */
            p->received++;
            tcp_mark_closed(p);
        }
    }
    return true;
}

long fp_closed_after_ms(fp_peer *p)
{
    return p->closed > 0 ? (long)(p->closed_ms - p->up_ms) : -1;
}
