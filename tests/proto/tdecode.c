/*
 * tdecode.c - every decoder entry point of proto/, callable on arbitrary bytes. Used by the
 * hostile-input tests and by the libFuzzer targets (one target per entry).
 *
 * Oracle: whenever a decoder accepts input and a public encoder exists, re-encoding must give
 * the input back byte for byte (canonical encodings: exactly one encoding per value).
 * A violation abort()s, which both cmocka and libFuzzer report.
 *
 * The body, access_grant, key-grant and note entries encrypt or seal the fuzz input with libsodium
 * directly, per PROTOCOL.md, so that the decoders behind the AEAD and the sealed box are reached
 * too; an accepted plaintext must seal back to the same bytes.
 */
#include "tdecode.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void same_or_abort(
    const char *what, const uint8_t *in, size_t n, proto_err err, proto_buf *out)
{
    if (err != PROTO_OK || out->len != n || memcmp(out->p, in, n) != 0) {
        fprintf(stderr, "%s: accepted input does not re-encode to itself (%s)\n", what,
            proto_strerror(err));
        abort();
    }
    proto_buf_free(out);
}

static proto_err d_peek(const uint8_t *p, size_t n)
{
    unsigned kind;
    return proto_peek(p, n, NULL, &kind, NULL);
}

static proto_err d_header(const uint8_t *p, size_t n)
{
    proto_header h;
    proto_diag dg;
    proto_err err = proto_header_decode(p, n, NULL, &h, &dg);
    if (err != PROTO_OK)
        return err;
    proto_buf out;
    same_or_abort("header", p, n, proto_header_encode(&h, &out), &out);
    err = proto_header_verify(&h);
    proto_header_fini(&h);
    return err;
}

static proto_err d_scope(const uint8_t *p, size_t n)
{
    crdt_scope *s;
    proto_err err = proto_scope_decode(p, n, NULL, NULL, &s, NULL);
    if (err != PROTO_OK)
        return err;
    proto_buf out;
    same_or_abort("scope", p, n, proto_scope_encode(s, &out), &out);
    crdt_scope_free(s);
    return PROTO_OK;
}

static proto_err d_receipt(const uint8_t *p, size_t n)
{
    proto_receipt r;
    proto_err err = proto_receipt_decode(p, n, NULL, &r, NULL);
    if (err != PROTO_OK)
        return err;
    proto_buf out;
    same_or_abort("receipt", p, n, proto_receipt_encode(&r, &out), &out);
    return proto_receipt_verify(&r);
}

static proto_err d_manifest(const uint8_t *p, size_t n)
{
    proto_manifest m;
    proto_err err = proto_manifest_decode(p, n, NULL, &m, NULL);
    if (err != PROTO_OK)
        return err;
    proto_buf out;
    same_or_abort("manifest", p, n, proto_manifest_encode(&m, &out), &out);
    uint8_t admin[32] = { 0 };
    err = proto_manifest_verify(&m, admin);
    proto_manifest_fini(&m);
    return err;
}

#define SIMPLE(name, type, dec, enc, fini)                                                         \
    static proto_err d_##name(const uint8_t *p, size_t n)                                          \
    {                                                                                              \
        type m;                                                                                    \
        proto_err err = dec(p, n, NULL, &m, NULL);                                                 \
        if (err != PROTO_OK)                                                                       \
            return err;                                                                            \
        proto_buf out;                                                                             \
        same_or_abort(#name, p, n, enc(&m, &out), &out);                                           \
        fini;                                                                                      \
        return PROTO_OK;                                                                           \
    }

SIMPLE(vv, proto_vv_msg, proto_vv_decode, proto_vv_encode, proto_vv_fini(&m))
SIMPLE(
    headers, proto_headers_msg, proto_headers_decode, proto_headers_encode, proto_headers_fini(&m))
SIMPLE(bodies, proto_bodies_msg, proto_bodies_decode, proto_bodies_encode, proto_bodies_fini(&m))
SIMPLE(want, proto_want_msg, proto_want_decode, proto_want_encode, proto_want_fini(&m))
SIMPLE(ctl_request, proto_ctl_request, proto_ctl_request_decode, proto_ctl_request_encode,
    proto_ctl_request_fini(&m))
SIMPLE(
    ctl_response, proto_ctl_response, proto_ctl_response_decode, proto_ctl_response_encode, (void)0)
SIMPLE(ctl_error, proto_ctl_error, proto_ctl_error_decode, proto_ctl_error_encode, (void)0)

/* ---------------------------------------------------------------------------------------- */
/* Fixed keys shared by the stateful entries: those of vectors.txt.                          */

static proto_identity *alice, *bob;
static proto_scope_key *key, *key2; /* (case, sociale) epochs 1 and 2 */
static proto_case_id cid;

static void fixed_init(void)
{
    if (alice != NULL)
        return;
    if (proto_init() != PROTO_OK)
        abort();
    alice = tu_identity(0x01);
    bob = tu_identity(0x41);
    proto_case_nonce nonce;
    tu_pattern(nonce.b, 16, 0x00);
    uint8_t k[32], k2[32];
    tu_pattern(k, 32, 0x50);
    tu_pattern(k2, 32, 0x70);
    if (proto_case_id_derive("comune-1", 8, &nonce, &cid) != PROTO_OK
        || proto_scope_key_from_bytes(&cid, "sociale", 1, k, &key) != PROTO_OK
        || proto_scope_key_from_bytes(&cid, "sociale", 2, k2, &key2) != PROTO_OK)
        abort();
}

/* The AD of PROTOCOL.md, built independently of proto/src. */
size_t tdec_spec_ad(const proto_header *h, const proto_case_id *c, const char *scope,
    uint64_t epoch, uint8_t ad[TDEC_AD_MAX])
{
    size_t o = 0;
    memcpy(ad, "patto-ad-v4", 11);
    o = 11;
    ad[o++] = h->kind;
    memcpy(ad + o, h->origin, 32);
    o += 32;
    for (int i = 7; i >= 0; i--)
        ad[o++] = (uint8_t)(h->seq >> (8 * i));
    memcpy(ad + o, h->prev, 32);
    o += 32;
    for (int i = 7; i >= 0; i--)
        ad[o++] = (uint8_t)(h->hlc.wall >> (8 * i));
    ad[o++] = (uint8_t)(h->hlc.logical >> 8);
    ad[o++] = (uint8_t)h->hlc.logical;
    memcpy(ad + o, h->tag, 32);
    o += 32;
    memcpy(ad + o, c->b, 16);
    o += 16;
    size_t sl = strlen(scope);
    ad[o++] = (uint8_t)sl;
    memcpy(ad + o, scope, sl);
    o += sl;
    for (int i = 7; i >= 0; i--)
        ad[o++] = (uint8_t)(epoch >> (8 * i));
    return o;
}

/* Oracle of an opened body: sealing what was decoded again gives the same plaintext. */
static void reseal_same(const proto_body *b, const uint8_t *padded, size_t padded_len)
{
    proto_seal_info info = { 1, { 0 }, { 1700000000000, 0 } };
    proto_buf hb, bb;
    proto_header h;
    proto_body again;
    if (proto_delta_seal(alice, key, &info, b, NULL, &hb, &bb) != PROTO_OK
        || proto_header_decode(hb.p, hb.len, NULL, &h, NULL) != PROTO_OK
        || proto_body_open(&h, key, bb.p, bb.len, NULL, &again, NULL) != PROTO_OK
        || again.plain_len_ != padded_len || memcmp(again.plain_, padded, padded_len) != 0) {
        fprintf(stderr, "body: an accepted plaintext does not seal back to itself\n");
        abort();
    }
    proto_body_fini(&again);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Encrypt plaintext p as a delta body under the fixed key, per PROTOCOL.md, and open it. */
static proto_err d_body(const uint8_t *p, size_t n)
{
    fixed_init();
    if (n > 1u << 20)
        return PROTO_ELIMIT;
    size_t padded_max = (n / PROTO_PAD_BLOCK + 1) * PROTO_PAD_BLOCK, padded;
    uint8_t *buf = malloc(padded_max);
    uint8_t *body = malloc(24 + padded_max + 16);
    if (buf == NULL || body == NULL)
        abort();
    if (n > 0)
        memcpy(buf, p, n);
    if (sodium_pad(&padded, buf, n, PROTO_PAD_BLOCK, padded_max) != 0)
        abort();
    proto_header h;
    memset(&h, 0, sizeof h);
    h.kind = PROTO_HDR_DELTA;
    memcpy(h.origin, proto_identity_origin(alice), 32);
    h.seq = 1;
    h.hlc.wall = 1700000000000;
    memcpy(h.tag, proto_scope_key_tag(key), 32);
    uint8_t ad[TDEC_AD_MAX], bodykey[32], k[32];
    size_t adlen = tdec_spec_ad(&h, &cid, "sociale", 1, ad);
    proto_scope_key_export(key, k);
    crypto_kdf_derive_from_key(bodykey, 32, 2, "pattoscp", k);
    memset(body, 0x24, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        body + 24, NULL, buf, padded, ad, adlen, NULL, body, bodykey);
    size_t blen = 24 + padded + 16;
    h.body_len = blen;
    crypto_generichash(h.body_hash, 32, body, blen, NULL, 0);
    proto_body b;
    proto_err err = proto_body_open(&h, key, body, blen, NULL, &b, NULL);
    if (err == PROTO_OK) {
        reseal_same(&b, buf, padded);
        proto_body_fini(&b);
    }
    free(buf);
    free(body);
    return err;
}

size_t tdec_access_grant_head(uint8_t out[32])
{
    fixed_init();
    size_t o = 0;
    out[o++] = 0x9c; /* fixarray of 12 */
    out[o++] = PROTO_VERSION;
    out[o++] = PROTO_K_ACCESS_GRANT;
    return o;
}

/* An ACCESS_GRANT plaintext of the fixed key whose fields from the entry number on are p. */
static proto_err d_access_grant(const uint8_t *p, size_t n)
{
    if (n > 1u << 16)
        return PROTO_ELIMIT;
    uint8_t head[32];
    size_t hl = tdec_access_grant_head(head);
    uint8_t *m = malloc(hl + n + 1);
    if (m == NULL)
        abort();
    memcpy(m, head, hl);
    if (n > 0)
        memcpy(m + hl, p, n);
    proto_err err = d_body(m, hl + n);
    free(m);
    return err;
}

/* The hint of recipient in a grant (or note) by grantor at seq 1, per PROTOCOL.md with libsodium
 * alone. */
static void spec_hint(
    const proto_identity *grantor, const proto_identity *recipient, uint8_t out[16])
{
    uint8_t sign_seed[32], box_seed[32], pk[32], sk[32], ss[32], k[32], h[32];
    proto_identity_seeds(recipient, sign_seed, box_seed);
    crypto_box_seed_keypair(pk, sk, box_seed);
    if (crypto_scalarmult(ss, sk, proto_identity_box_pk(grantor)) != 0)
        abort();
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-key-v2", 17);
    crypto_generichash_update(&st, ss, 32);
    crypto_generichash_update(&st, proto_identity_box_pk(grantor), 32);
    crypto_generichash_update(&st, pk, 32);
    crypto_generichash_final(&st, k, 32);
    const uint8_t seq1[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
    crypto_generichash_init(&st, k, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-v2", 13);
    crypto_generichash_update(&st, proto_identity_origin(grantor), 32);
    crypto_generichash_update(&st, seq1, 8);
    crypto_generichash_final(&st, h, 32);
    memcpy(out, h, 16);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(ss, sizeof ss);
    sodium_memzero(sign_seed, sizeof sign_seed);
    sodium_memzero(box_seed, sizeof box_seed);
}

/* Open slot 0 of a grant (or note) body with me's key and libsodium alone; the unpadded
 * plaintext. */
static uint8_t *spec_open_slot0(
    const proto_identity *me, const uint8_t *body, size_t n, size_t *plen)
{
    uint8_t sign_seed[32], box_seed[32], pk[32], sk[32];
    proto_identity_seeds(me, sign_seed, box_seed);
    crypto_box_seed_keypair(pk, sk, box_seed);
    size_t l = (n - 16) / 4; /* four bin16 boxes: 16 + 4L bytes */
    uint8_t *m = malloc(l);
    if (m == NULL || l < 48 + 256 || crypto_box_seal_open(m, body + 7, l, pk, sk) != 0
        || sodium_unpad(plen, m, l - 48, PROTO_GRANT_PAD_BLOCK) != 0)
        abort();
    sodium_memzero(sk, sizeof sk);
    return m;
}

/* Oracle of an opened grant: sealing what was decoded again gives the same plaintext. */
static void reseal_grant_same(const proto_grant *g, const uint8_t *body, size_t n)
{
    size_t l1, l2;
    uint8_t *p1 = spec_open_slot0(bob, body, n, &l1);
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(bob), 32);
    proto_seal_info info = { 1, { 0 }, { 1700000000000, 0 } };
    proto_buf hb, bb;
    if (proto_key_grant_seal(alice, g->owner_org, &g->nonce,
            (const proto_scope_key *const *)g->keys, g->nkeys, &info, &rc, 1, NULL, &hb, &bb)
        != PROTO_OK)
        abort();
    uint8_t *p2 = spec_open_slot0(bob, bb.p, bb.len, &l2);
    if (l1 != l2 || memcmp(p1, p2, l1) != 0) {
        fprintf(stderr, "grant: an accepted plaintext does not seal back to itself\n");
        abort();
    }
    free(p1);
    free(p2);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Open body as a key grant from alice to bob (bob's hint in slot 0, the tag of epoch 2). */
static proto_err grant_open_body(const uint8_t *body, size_t n)
{
    proto_header h;
    memset(&h, 0, sizeof h);
    h.kind = PROTO_HDR_KEY_GRANT;
    memcpy(h.origin, proto_identity_origin(alice), 32);
    h.seq = 1;
    memcpy(h.tag, proto_scope_key_tag(key2), 32);
    h.nhints = PROTO_HINT_SLOTS;
    spec_hint(alice, bob, h.hints[0].b);
    for (int i = 1; i < PROTO_HINT_SLOTS; i++)
        memset(h.hints[i].b, 0xe0 + i, PROTO_HINT_LEN);
    h.body_len = n;
    crypto_generichash(h.body_hash, 32, body, n, NULL, 0);
    proto_grant g;
    proto_err err
        = proto_key_grant_open(&h, bob, proto_identity_box_pk(alice), body, n, NULL, &g, NULL);
    if (err == PROTO_OK) {
        reseal_grant_same(&g, body, n);
        proto_grant_fini(&g);
    }
    return err;
}

static proto_err d_grant_body(const uint8_t *p, size_t n)
{
    fixed_init();
    return grant_open_body(p, n);
}

/* Pad p to a multiple of 256, seal it to `to` with crypto_box_seal, and wrap it in a GRANT_BODY
 * as box 0 of 4 (the others filler bytes), per PROTOCOL.md. */
static void spec_sealed_body(const proto_identity *to, const uint8_t *p, size_t n, tb *b)
{
    size_t padded_max = (n / PROTO_GRANT_PAD_BLOCK + 1) * PROTO_GRANT_PAD_BLOCK, padded;
    size_t l = 48 + padded_max;
    uint8_t *pt = malloc(padded_max), *boxes = malloc(4 * l);
    if (pt == NULL || boxes == NULL)
        abort();
    if (n > 0)
        memcpy(pt, p, n);
    if (sodium_pad(&padded, pt, n, PROTO_GRANT_PAD_BLOCK, padded_max) != 0)
        abort();
    crypto_box_seal(boxes, pt, padded, proto_identity_box_pk(to));
    memset(boxes + l, 0x5a, 3 * l);
    tb_array(b, 3);
    tb_uint(b, PROTO_VERSION);
    tb_uint(b, PROTO_K_GRANT_BODY);
    tb_array(b, 4);
    for (int i = 0; i < 4; i++)
        tb_bin(b, boxes + i * l, l);
    free(pt);
    free(boxes);
}

/* Seal p to bob as box 0 of a GRANT_BODY and open it as a key grant. */
static proto_err d_grant_plain(const uint8_t *p, size_t n)
{
    fixed_init();
    if (n > 16384) /* a GRANT_PLAIN is at most 13772 bytes */
        return PROTO_ELIMIT;
    tb b = { 0 };
    spec_sealed_body(bob, p, n, &b);
    proto_err err = grant_open_body(b.p, b.len);
    tb_free(&b);
    return err;
}

/* Oracle of an opened note: sealing what was decoded again gives the same plaintext. */
static void reseal_note_same(const proto_note *nt, const uint8_t *p, size_t n)
{
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(alice), 32);
    proto_seal_info info = { 1, { 0 }, { 1700000000000, 0 } };
    proto_buf hb, bb;
    if (proto_note_seal(bob, nt, &info, &rc, NULL, &hb, &bb) != PROTO_OK)
        abort();
    size_t l;
    uint8_t *q = spec_open_slot0(alice, bb.p, bb.len, &l);
    if (l != n || memcmp(p, q, n) != 0) {
        fprintf(stderr, "note: an accepted plaintext does not seal back to itself\n");
        abort();
    }
    free(q);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Seal p to alice as box 0 of a GRANT_BODY and open it as a note from bob to alice: a NOTE
 * header by bob at seq 1 (alice's hint in slot 0, a random-looking tag). */
static proto_err d_note_plain(const uint8_t *p, size_t n)
{
    fixed_init();
    if (n > 16384) /* a NOTE_PLAIN is at most 4389 bytes */
        return PROTO_ELIMIT;
    tb b = { 0 };
    spec_sealed_body(alice, p, n, &b);
    proto_header h;
    memset(&h, 0, sizeof h);
    h.kind = PROTO_HDR_NOTE;
    memcpy(h.origin, proto_identity_origin(bob), 32);
    h.seq = 1;
    memset(h.tag, 0x7e, 32);
    h.nhints = PROTO_HINT_SLOTS;
    spec_hint(bob, alice, h.hints[0].b);
    for (int i = 1; i < PROTO_HINT_SLOTS; i++)
        memset(h.hints[i].b, 0xe0 + i, PROTO_HINT_LEN);
    h.body_len = b.len;
    crypto_generichash(h.body_hash, 32, b.p, b.len, NULL, 0);
    if (proto_key_grant_slot(&h, alice, proto_identity_box_pk(bob)) != 0)
        abort(); /* the owner finds its slot in a note as in a key grant */
    proto_note *nt = malloc(sizeof *nt);
    if (nt == NULL)
        abort();
    proto_err err = proto_note_open_slot(&h, alice, 0, b.p, b.len, NULL, nt, NULL);
    if (err == PROTO_OK)
        reseal_note_same(nt, p, n);
    free(nt);
    tb_free(&b);
    return err;
}

static bool member_any(void *ctx, const uint8_t origin[32])
{
    (void)ctx;
    (void)origin;
    return true;
}

static proto_err d_hs_hello(const uint8_t *p, size_t n)
{
    fixed_init();
    proto_handshake *hs;
    proto_buf reply;
    proto_err err = proto_hs_respond(bob, member_any, NULL, p, n, NULL, &hs, &reply, NULL);
    if (err == PROTO_OK) {
        proto_buf_free(&reply);
        proto_handshake_free(hs);
    }
    return err;
}

static proto_err d_hs_reply(const uint8_t *p, size_t n)
{
    fixed_init();
    proto_handshake *hs;
    proto_buf hello, fin;
    proto_session *s;
    if (proto_hs_initiate(alice, proto_identity_origin(bob), NULL, &hs, &hello) != PROTO_OK)
        abort();
    proto_err err = proto_hs_finish(hs, p, n, &fin, &s, NULL);
    if (err == PROTO_OK) {
        proto_buf_free(&fin);
        proto_session_free(s);
    }
    proto_buf_free(&hello);
    proto_handshake_free(hs);
    return err;
}

static proto_err d_hs_finish(const uint8_t *p, size_t n)
{
    fixed_init();
    proto_handshake *hi, *hr;
    proto_buf hello, reply;
    proto_session *s;
    if (proto_hs_initiate(alice, proto_identity_origin(bob), NULL, &hi, &hello) != PROTO_OK
        || proto_hs_respond(bob, member_any, NULL, hello.p, hello.len, NULL, &hr, &reply, NULL)
            != PROTO_OK)
        abort();
    proto_err err = proto_hs_accept(hr, p, n, &s, NULL);
    if (err == PROTO_OK)
        proto_session_free(s);
    proto_buf_free(&hello);
    proto_buf_free(&reply);
    proto_handshake_free(hi);
    proto_handshake_free(hr);
    return err;
}

static proto_err d_frame(const uint8_t *p, size_t n)
{
    fixed_init();
    proto_handshake *hi, *hr;
    proto_buf hello, reply, fin, out;
    proto_session *si, *sr;
    if (proto_hs_initiate(alice, proto_identity_origin(bob), NULL, &hi, &hello) != PROTO_OK
        || proto_hs_respond(bob, member_any, NULL, hello.p, hello.len, NULL, &hr, &reply, NULL)
            != PROTO_OK
        || proto_hs_finish(hi, reply.p, reply.len, &fin, &si, NULL) != PROTO_OK
        || proto_hs_accept(hr, fin.p, fin.len, &sr, NULL) != PROTO_OK)
        abort();
    proto_err err = proto_session_open(sr, p, n, NULL, &out, NULL);
    if (err == PROTO_OK)
        abort(); /* nobody can forge a frame for a fresh session */
    proto_buf_free(&hello);
    proto_buf_free(&reply);
    proto_buf_free(&fin);
    proto_handshake_free(hi);
    proto_handshake_free(hr);
    proto_session_free(si);
    proto_session_free(sr);
    return err;
}

static proto_err d_case_id(const uint8_t *p, size_t n)
{
    proto_case_id id;
    proto_err err = proto_case_id_parse((const char *)p, n, &id);
    if (err == PROTO_OK) {
        char text[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(&id, text);
        proto_case_id back;
        if (proto_case_id_parse(text, strlen(text), &back) != PROTO_OK
            || memcmp(back.b, id.b, 16) != 0)
            abort();
    }
    return err;
}

const tdec tdecoders[] = {
    { "peek", d_peek },
    { "header", d_header },
    { "body", d_body },
    { "grant_body", d_grant_body },
    { "grant_plain", d_grant_plain },
    { "note_plain", d_note_plain },
    { "scope", d_scope },
    { "access_grant", d_access_grant },
    { "receipt", d_receipt },
    { "manifest", d_manifest },
    { "vv", d_vv },
    { "headers", d_headers },
    { "bodies", d_bodies },
    { "want", d_want },
    { "ctl_request", d_ctl_request },
    { "ctl_response", d_ctl_response },
    { "ctl_error", d_ctl_error },
    { "hs_hello", d_hs_hello },
    { "hs_reply", d_hs_reply },
    { "hs_finish", d_hs_finish },
    { "frame", d_frame },
    { "case_id", d_case_id },
};
const size_t ntdecoders = sizeof tdecoders / sizeof tdecoders[0];

const tdec *tdec_find(const char *name)
{
    for (size_t i = 0; i < ntdecoders; i++)
        if (strcmp(tdecoders[i].name, name) == 0)
            return &tdecoders[i];
    return NULL;
}

void tdec_cleanup(void)
{
    proto_identity_free(alice);
    proto_identity_free(bob);
    proto_scope_key_free(key);
    proto_scope_key_free(key2);
    alice = bob = NULL;
    key = key2 = NULL;
}
