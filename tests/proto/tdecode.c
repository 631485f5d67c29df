/*
 * tdecode.c - every decoder entry point of proto/, callable on arbitrary bytes. Used by the
 * hostile-input tests and by the libFuzzer targets (one target per entry).
 *
 * Oracle: whenever a decoder accepts input and a public encoder exists, re-encoding must give
 * the input back byte for byte (canonical encodings: exactly one encoding per value).
 * A violation abort()s, which both cmocka and libFuzzer report.
 *
 * The body and key-grant entries encrypt or seal the fuzz input with libsodium directly, per
 * PROTOCOL.md, so that the decoders behind the AEAD and the sealed box are reached too.
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

static proto_err d_access(const uint8_t *p, size_t n)
{
    proto_access a;
    proto_err err = proto_access_decode(p, n, NULL, &a, NULL);
    if (err != PROTO_OK)
        return err;
    proto_buf out;
    same_or_abort("access", p, n, proto_access_encode(&a, &out), &out);
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
/* Fixed keys shared by the stateful entries.                                                */

static proto_identity *alice, *bob;
static proto_scope_key *key;

static void fixed_init(void)
{
    if (alice != NULL)
        return;
    if (proto_init() != PROTO_OK)
        abort();
    alice = tu_identity(0x01);
    bob = tu_identity(0x41);
    proto_case_id cid;
    tu_pattern(cid.b, 16, 0x10);
    uint8_t k[32];
    tu_pattern(k, 32, 0x50);
    if (proto_scope_key_from_bytes(&cid, "sociale", 1, k, &key) != PROTO_OK)
        abort();
}

/* The AD of PROTOCOL.md, built independently of proto/src. */
static size_t spec_ad(const proto_header *h, uint8_t ad[127])
{
    size_t o = 0;
    memcpy(ad, "patto-ad-v1", 11);
    o = 11;
    ad[o++] = 1;
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
    return o + 32;
}

size_t tdec_spec_ad(const proto_header *h, uint8_t ad[127])
{
    return spec_ad(h, ad);
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
    uint8_t ad[127], bodykey[32], k[32];
    spec_ad(&h, ad);
    proto_scope_key_export(key, k);
    crypto_kdf_derive_from_key(bodykey, 32, 2, "pattoscp", k);
    memset(body, 0x24, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        body + 24, NULL, buf, padded, ad, sizeof ad, NULL, body, bodykey);
    size_t blen = 24 + padded + 16;
    h.body_len = blen;
    crypto_generichash(h.body_hash, 32, body, blen, NULL, 0);
    proto_body b;
    proto_err err = proto_body_open(&h, key, body, blen, NULL, &b, NULL);
    if (err == PROTO_OK)
        proto_body_fini(&b);
    free(buf);
    free(body);
    return err;
}

static proto_err grant_open_body(const uint8_t *body, size_t n)
{
    proto_header h;
    memset(&h, 0, sizeof h);
    proto_origin_bytes rc;
    memcpy(rc.b, proto_identity_origin(bob), 32);
    h.kind = PROTO_HDR_KEY_GRANT;
    memcpy(h.origin, proto_identity_origin(alice), 32);
    h.seq = 1;
    memcpy(h.tag, proto_scope_key_tag(key), 32);
    h.recipients = &rc;
    h.nrecipients = 1;
    h.body_len = n;
    crypto_generichash(h.body_hash, 32, body, n, NULL, 0);
    proto_scope_key *out = NULL;
    proto_err err = proto_key_grant_open(&h, bob, body, n, NULL, &out, NULL);
    proto_scope_key_free(out);
    return err;
}

static proto_err d_grant_body(const uint8_t *p, size_t n)
{
    fixed_init();
    return grant_open_body(p, n);
}

/* Pad p to 256 bytes, seal it to bob, and wrap it in a GRANT_BODY. */
static proto_err d_grant_plain(const uint8_t *p, size_t n)
{
    fixed_init();
    if (n >= PROTO_GRANT_PAD_BLOCK)
        return PROTO_ELIMIT;
    uint8_t pt[PROTO_GRANT_PAD_BLOCK], sealed[48 + PROTO_GRANT_PAD_BLOCK];
    size_t padded;
    if (n > 0)
        memcpy(pt, p, n);
    if (sodium_pad(&padded, pt, n, PROTO_GRANT_PAD_BLOCK, sizeof pt) != 0)
        abort();
    crypto_box_seal(sealed, pt, padded, proto_identity_box_pk(bob));
    tb b = { 0 };
    tb_array(&b, 3);
    tb_uint(&b, 1);
    tb_uint(&b, PROTO_K_GRANT_BODY);
    tb_array(&b, 1);
    tb_bin(&b, sealed, sizeof sealed);
    proto_err err = grant_open_body(b.p, b.len);
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
    { "scope", d_scope },
    { "access", d_access },
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
    alice = bob = NULL;
    key = NULL;
}
