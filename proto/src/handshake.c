/*
 * handshake.c - the three-message member handshake and the session frames that follow it
 * (PROTOCOL.md, "Handshake" and "Session frames").
 *
 * Ephemeral crypto_kx keys give forward-secret session keys; each side signs the transcript
 * with its identity (Ed25519) key, so the keys are bound to both members. Each side's
 * signature covers the other side's fresh ephemeral key, so no recorded message can be
 * replayed into a new handshake.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define HELLO_MAX 80  /* [2,10,bin32,bin32] = 71 bytes */
#define REPLY_MAX 144 /* [2,11,bin32,bin32,bin64] = 137 bytes */

static const char reply_label[] = "patto-hs-reply-v1";
static const char finish_label[] = "patto-hs-finish-v1";
static const char session_label[] = "patto-session-v1";

enum hs_state { HS_SENT_HELLO = 1, HS_SENT_REPLY, HS_DONE, HS_FAILED };

struct proto_handshake {
    int state;
    bool initiator;
    const proto_identity *me;
    uint8_t peer[PROTO_ORIGIN_LEN];
    uint8_t eph_pk[PROTO__KX_LEN];
    uint8_t eph_sk[PROTO__KX_LEN];
    uint8_t peer_eph[PROTO__KX_LEN];
    uint8_t hello[HELLO_MAX];
    size_t hello_len;
    uint8_t reply[REPLY_MAX];
    size_t reply_len;
};

struct proto_session {
    uint8_t tx[PROTO_KEY_LEN];
    uint8_t rx[PROTO_KEY_LEN];
    uint64_t tx_next, rx_next;
    uint8_t peer[PROTO_ORIGIN_LEN];
};

void proto_handshake_free(proto_handshake *hs)
{
    proto__secret_free(hs);
}

void proto_session_free(proto_session *s)
{
    proto__secret_free(s);
}

const uint8_t *proto_session_peer(const proto_session *s)
{
    return s->peer;
}

static void enc_hello(proto__w *w, const void *arg)
{
    const proto_handshake *hs = arg;
    proto__w_head(w, 4, PROTO_K_HELLO);
    proto__w_bin(w, hs->me->origin, PROTO_ORIGIN_LEN);
    proto__w_bin(w, hs->eph_pk, PROTO__KX_LEN);
}

struct reply_arg {
    const proto_handshake *hs;
    const uint8_t *sig;
};

static void enc_reply(proto__w *w, const void *arg)
{
    const struct reply_arg *a = arg;
    proto__w_head(w, 5, PROTO_K_HELLO_REPLY);
    proto__w_bin(w, a->hs->me->origin, PROTO_ORIGIN_LEN);
    proto__w_bin(w, a->hs->eph_pk, PROTO__KX_LEN);
    proto__w_bin(w, a->sig, PROTO_SIG_LEN);
}

static void enc_finish(proto__w *w, const void *arg)
{
    proto__w_head(w, 3, PROTO_K_HELLO_FINISH);
    proto__w_bin(w, arg, PROTO_SIG_LEN);
}

/* BLAKE2b-256(label || hello || origin || eph) : what the responder signs. */
static void reply_digest(const uint8_t *hello, size_t hello_len, const uint8_t *origin,
    const uint8_t *eph, uint8_t out[PROTO_HASH_LEN])
{
    proto_bytes parts[] = { { (const uint8_t *)reply_label, sizeof reply_label - 1 },
        { hello, hello_len }, { origin, PROTO_ORIGIN_LEN }, { eph, PROTO__KX_LEN } };
    proto__hash(out, PROTO_HASH_LEN, NULL, 0, parts, 4);
}

/* BLAKE2b-256(label || hello || reply) : what the initiator signs, and the transcript hash. */
static void finish_digest(
    const proto_handshake *hs, const char *label, size_t label_len, uint8_t out[PROTO_HASH_LEN])
{
    proto_bytes parts[] = { { (const uint8_t *)label, label_len }, { hs->hello, hs->hello_len },
        { hs->reply, hs->reply_len } };
    proto__hash(out, PROTO_HASH_LEN, NULL, 0, parts, 3);
}

static proto_err make_session(proto_handshake *hs, proto_session **out)
{
    proto_session *s = proto__secret_alloc(sizeof *s);
    if (s == NULL)
        return PROTO_ENOMEM;
    uint8_t *kx = proto__secret_alloc(2 * PROTO_KEY_LEN); /* rx || tx */
    if (kx == NULL) {
        proto__secret_free(s);
        return PROTO_ENOMEM;
    }
    if (!proto__kx_session(
            hs->initiator, hs->eph_pk, hs->eph_sk, hs->peer_eph, kx, kx + PROTO_KEY_LEN)) {
        proto__secret_free(kx);
        proto__secret_free(s);
        return PROTO_EVALUE; /* the peer's ephemeral key is a low-order point */
    }
    uint8_t th[PROTO_HASH_LEN];
    finish_digest(hs, session_label, sizeof session_label - 1, th);
    proto_bytes part = { th, sizeof th };
    proto__hash(s->rx, PROTO_KEY_LEN, kx, PROTO_KEY_LEN, &part, 1);
    proto__hash(s->tx, PROTO_KEY_LEN, kx + PROTO_KEY_LEN, PROTO_KEY_LEN, &part, 1);
    memcpy(s->peer, hs->peer, PROTO_ORIGIN_LEN);
    proto__secret_free(kx);
    proto__wipe(hs->eph_sk, sizeof hs->eph_sk);
    hs->state = HS_DONE;
    *out = s;
    return PROTO_OK;
}

static proto_err hs_new(
    const proto_identity *me, bool initiator, const proto_rng *rng, proto_handshake **out)
{
    proto_handshake *hs = proto__secret_alloc(sizeof *hs);
    if (hs == NULL)
        return PROTO_ENOMEM;
    uint8_t seed[PROTO_SEED_LEN];
    proto__random(rng, seed, sizeof seed);
    proto__kx_keypair(seed, hs->eph_pk, hs->eph_sk);
    proto__wipe(seed, sizeof seed);
    hs->me = me;
    hs->initiator = initiator;
    *out = hs;
    return PROTO_OK;
}

proto_err proto_hs_initiate(const proto_identity *me, const uint8_t peer[PROTO_ORIGIN_LEN],
    const proto_rng *rng, proto_handshake **hs, proto_buf *hello)
{
    if (me == NULL || peer == NULL || hs == NULL || hello == NULL)
        return PROTO_EINVAL;
    *hs = NULL;
    proto_err err = hs_new(me, true, rng, hs);
    if (err != PROTO_OK)
        return err;
    memcpy((*hs)->peer, peer, PROTO_ORIGIN_LEN);
    err = proto__encode(enc_hello, *hs, hello);
    if (err != PROTO_OK || hello->len > HELLO_MAX) {
        proto_buf_free(hello);
        proto_handshake_free(*hs);
        *hs = NULL;
        return err != PROTO_OK ? err : PROTO_EINVAL;
    }
    memcpy((*hs)->hello, hello->p, hello->len);
    (*hs)->hello_len = hello->len;
    (*hs)->state = HS_SENT_HELLO;
    return PROTO_OK;
}

proto_err proto_hs_respond(const proto_identity *me, proto_member_cb is_member, void *ctx,
    const uint8_t *hello, size_t len, const proto_rng *rng, proto_handshake **hs, proto_buf *reply,
    proto_diag *diag)
{
    if (me == NULL || is_member == NULL || hello == NULL || hs == NULL || reply == NULL)
        return PROTO_EINVAL;
    *hs = NULL;
    reply->p = NULL;
    reply->len = 0;
    proto_limits lim = { HELLO_MAX, 2, 8 };
    proto__d d;
    const msgpack_object *f;
    uint8_t origin[PROTO_ORIGIN_LEN], eph[PROTO__KX_LEN];
    proto_err err = proto__d_open(&d, hello, len, &lim, 0, PROTO_K_HELLO, 4, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_fixed(&d, &f[2], PROTO_ORIGIN_LEN, origin, "origin must be bin of 32")
        || !proto__d_fixed(&d, &f[3], PROTO__KX_LEN, eph, "ephemeral key must be bin of 32"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    if (!is_member(ctx, origin))
        return PROTO_ENOTMEMBER;
    err = hs_new(me, false, rng, hs);
    if (err != PROTO_OK)
        return err;
    proto_handshake *h = *hs;
    memcpy(h->peer, origin, PROTO_ORIGIN_LEN);
    memcpy(h->peer_eph, eph, PROTO__KX_LEN);
    memcpy(h->hello, hello, len);
    h->hello_len = len;
    uint8_t digest[PROTO_HASH_LEN], sig[PROTO_SIG_LEN];
    reply_digest(hello, len, me->origin, h->eph_pk, digest);
    proto__sign(me, digest, sizeof digest, sig);
    struct reply_arg ra = { h, sig };
    err = proto__encode(enc_reply, &ra, reply);
    if (err != PROTO_OK || reply->len > REPLY_MAX) {
        proto_buf_free(reply);
        proto_handshake_free(h);
        *hs = NULL;
        return err != PROTO_OK ? err : PROTO_EINVAL;
    }
    memcpy(h->reply, reply->p, reply->len);
    h->reply_len = reply->len;
    h->state = HS_SENT_REPLY;
    return PROTO_OK;
}

proto_err proto_hs_finish(proto_handshake *hs, const uint8_t *reply, size_t len, proto_buf *finish,
    proto_session **out, proto_diag *diag)
{
    if (hs == NULL || reply == NULL || finish == NULL || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    finish->p = NULL;
    finish->len = 0;
    if (!hs->initiator || hs->state != HS_SENT_HELLO)
        return PROTO_ESTATE;
    hs->state = HS_FAILED; /* until proven otherwise */
    proto_limits lim = { REPLY_MAX, 2, 8 };
    proto__d d;
    const msgpack_object *f;
    uint8_t origin[PROTO_ORIGIN_LEN], sig[PROTO_SIG_LEN];
    proto_err err = proto__d_open(&d, reply, len, &lim, 0, PROTO_K_HELLO_REPLY, 5, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_fixed(&d, &f[2], PROTO_ORIGIN_LEN, origin, "origin must be bin of 32")
        || !proto__d_fixed(
            &d, &f[3], PROTO__KX_LEN, hs->peer_eph, "ephemeral key must be bin of 32")
        || !proto__d_fixed(&d, &f[4], PROTO_SIG_LEN, sig, "signature must be bin of 64"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    if (memcmp(origin, hs->peer, PROTO_ORIGIN_LEN) != 0)
        return PROTO_EPEER;
    uint8_t digest[PROTO_HASH_LEN];
    reply_digest(hs->hello, hs->hello_len, origin, hs->peer_eph, digest);
    if (!proto__verify(origin, digest, sizeof digest, sig))
        return PROTO_ESIG;
    memcpy(hs->reply, reply, len);
    hs->reply_len = len;
    finish_digest(hs, finish_label, sizeof finish_label - 1, digest);
    proto__sign(hs->me, digest, sizeof digest, sig);
    err = proto__encode(enc_finish, sig, finish);
    if (err != PROTO_OK)
        return err;
    err = make_session(hs, out);
    if (err != PROTO_OK)
        proto_buf_free(finish);
    return err;
}

proto_err proto_hs_accept(
    proto_handshake *hs, const uint8_t *finish, size_t len, proto_session **out, proto_diag *diag)
{
    if (hs == NULL || finish == NULL || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    if (hs->initiator || hs->state != HS_SENT_REPLY)
        return PROTO_ESTATE;
    hs->state = HS_FAILED;
    proto_limits lim = { HELLO_MAX, 2, 8 };
    proto__d d;
    const msgpack_object *f;
    uint8_t sig[PROTO_SIG_LEN], digest[PROTO_HASH_LEN];
    proto_err err = proto__d_open(&d, finish, len, &lim, 0, PROTO_K_HELLO_FINISH, 3, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_fixed(&d, &f[2], PROTO_SIG_LEN, sig, "signature must be bin of 64"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    finish_digest(hs, finish_label, sizeof finish_label - 1, digest);
    if (!proto__verify(hs->peer, digest, sizeof digest, sig))
        return PROTO_ESIG;
    return make_session(hs, out);
}

/* ---------------------------------------------------------------------------------------- */
/* Session frames: [2, 23, counter, ciphertext bin]; nonce = 16 zero bytes || be64(counter). */

struct frame_arg {
    uint64_t counter;
    proto_bytes ct;
};

static void enc_frame(proto__w *w, const void *arg)
{
    const struct frame_arg *a = arg;
    proto__w_head(w, 4, PROTO_K_FRAME);
    proto__w_uint(w, a->counter);
    proto__w_bin(w, a->ct.p, a->ct.len);
}

static void frame_nonce(uint64_t counter, uint8_t nonce[PROTO_NONCE_LEN])
{
    memset(nonce, 0, PROTO_NONCE_LEN);
    proto__be64(nonce + 16, counter);
}

proto_err proto_session_seal(proto_session *s, const uint8_t *m, size_t len, proto_buf *frame)
{
    if (s == NULL || (m == NULL && len > 0) || frame == NULL)
        return PROTO_EINVAL;
    frame->p = NULL;
    frame->len = 0;
    if (s->tx_next == UINT64_MAX)
        return PROTO_ESTATE;
    if (len > PROTO_MAX_MESSAGE_DEFAULT * (size_t)16)
        return PROTO_ELIMIT;
    uint8_t *ct = malloc(len + PROTO__AEAD_ABYTES);
    if (ct == NULL)
        return PROTO_ENOMEM;
    uint8_t nonce[PROTO_NONCE_LEN];
    frame_nonce(s->tx_next, nonce);
    proto__aead_seal(ct, m, len, NULL, 0, nonce, s->tx);
    struct frame_arg a = { s->tx_next, { ct, len + PROTO__AEAD_ABYTES } };
    proto_err err = proto__encode(enc_frame, &a, frame);
    free(ct);
    if (err == PROTO_OK)
        s->tx_next++;
    return err;
}

proto_err proto_session_open(proto_session *s, const uint8_t *frame, size_t len,
    const proto_limits *lim, proto_buf *out, proto_diag *diag)
{
    if (s == NULL || frame == NULL || out == NULL)
        return PROTO_EINVAL;
    out->p = NULL;
    out->len = 0;
    proto__d d;
    const msgpack_object *f;
    uint64_t counter;
    proto_bytes ct;
    proto_err err = proto__d_open(&d, frame, len, lim, 0, PROTO_K_FRAME, 4, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(&d, &f[2], UINT64_MAX, &counter, "frame counter")
        || !proto__d_bin(&d, &f[3], len, &ct, "frame ciphertext must be bin"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    if (counter != s->rx_next)
        return PROTO_EREPLAY;
    if (ct.len < PROTO__AEAD_ABYTES)
        return PROTO_EDECRYPT;
    uint8_t *m = malloc(ct.len - PROTO__AEAD_ABYTES + 1);
    if (m == NULL)
        return PROTO_ENOMEM;
    uint8_t nonce[PROTO_NONCE_LEN];
    frame_nonce(counter, nonce);
    if (!proto__aead_open(m, ct.p, ct.len, NULL, 0, nonce, s->rx)) {
        free(m);
        return PROTO_EDECRYPT;
    }
    s->rx_next++;
    out->p = m;
    out->len = ct.len - PROTO__AEAD_ABYTES;
    return PROTO_OK;
}
