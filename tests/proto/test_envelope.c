/*
 * proto.envelope - signed headers, encrypted bodies and key grants: round trips, tampering
 * with every bit, bodies moved under other headers, wrong keys, what headers reveal,
 * padding, and an independent check of PROTOCOL.md's construction with libsodium directly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tdecode.h"
#include "tutil.h"

typedef struct fx {
    proto_identity *alice, *bob, *carol, *dave;
    proto_case_id cid;
    proto_scope_key *key;
    crdt_scope *state, *delta;
    proto_buf dmsg; /* the encoded delta */
    proto_buf hdr, body;
    proto_header h;
} fx;

static const char *const secrets[]
    = { "sociale", "telefono", "+39 333 1234567", "vulnerabilita", "V07" };

static crdt_origin origin_of(const proto_identity *id)
{
    crdt_origin o;
    memcpy(o.b, proto_identity_origin(id), 32);
    return o;
}

static void make_delta(fx *f, uint64_t seq, const uint8_t prev[32], proto_buf *hdr, proto_buf *body)
{
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    const crdt_cc *cc = crdt_scope_cc(f->state);
    plain.vv = cc->vv;
    plain.nvv = cc->nvv;
    plain.delta = (proto_bytes) { f->dmsg.p, f->dmsg.len };
    proto_seal_info info = { seq, { 0 }, { 1700000000000 + seq, 0 } };
    if (prev != NULL)
        memcpy(info.prev, prev, 32);
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, tu_rng(), hdr, body), PROTO_OK);
}

static int setup(void **state)
{
    tu_seed();
    if (proto_init() != PROTO_OK)
        return -1;
    fx *f = calloc(1, sizeof *f);
    f->alice = tu_identity(0x01);
    f->bob = tu_identity(0x41);
    f->carol = tu_identity(0x81);
    f->dave = tu_identity(0x11);
    if (proto_case_id_new(tu_rng(), &f->cid) != PROTO_OK
        || proto_scope_key_new(&f->cid, "sociale", 1, tu_rng(), &f->key) != PROTO_OK
        || crdt_scope_new(NULL, &f->state) != CRDT_OK || crdt_scope_new(NULL, &f->delta) != CRDT_OK)
        return -1;
    crdt_origin oa = origin_of(f->alice);
    crdt_hlc h = { 1700000000000, 0 };
    if (crdt_register_set(f->state, f->delta, &oa, &h, "telefono", secrets[2], strlen(secrets[2]))
            != CRDT_OK
        || crdt_set_add(f->state, f->delta, &oa, "vulnerabilita", "V07", 3) != CRDT_OK
        || proto_scope_encode(f->delta, &f->dmsg) != PROTO_OK)
        return -1;
    *state = f;
    make_delta(f, 1, NULL, &f->hdr, &f->body);
    if (proto_header_decode(f->hdr.p, f->hdr.len, NULL, &f->h, NULL) != PROTO_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    proto_header_fini(&f->h);
    proto_buf_free(&f->hdr);
    proto_buf_free(&f->body);
    proto_buf_free(&f->dmsg);
    crdt_scope_free(f->state);
    crdt_scope_free(f->delta);
    proto_scope_key_free(f->key);
    proto_identity_free(f->alice);
    proto_identity_free(f->bob);
    proto_identity_free(f->carol);
    proto_identity_free(f->dave);
    free(f);
    return 0;
}

static void delta_round_trip(void **state)
{
    fx *f = *state;
    assert_int_equal(proto_header_verify(&f->h), PROTO_OK);
    assert_int_equal(f->h.kind, PROTO_HDR_DELTA);
    assert_int_equal(f->h.seq, 1);
    assert_memory_equal(f->h.origin, proto_identity_origin(f->alice), 32);
    assert_memory_equal(f->h.tag, proto_scope_key_tag(f->key), 32);
    assert_int_equal(f->h.body_len, f->body.len);
    proto_body b;
    proto_diag d;
    assert_int_equal(
        proto_body_open(&f->h, f->key, f->body.p, f->body.len, NULL, &b, &d), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_DELTA);
    assert_memory_equal(b.case_id.b, f->cid.b, 16);
    assert_string_equal(b.scope, "sociale");
    assert_int_equal(b.epoch, 1);
    const crdt_cc *cc = crdt_scope_cc(f->state);
    assert_int_equal(b.nvv, cc->nvv);
    assert_memory_equal(b.vv, cc->vv, cc->nvv * sizeof *cc->vv);
    crdt_scope *got;
    assert_int_equal(proto_scope_decode(b.delta.p, b.delta.len, NULL, NULL, &got, &d), PROTO_OK);
    assert_true(crdt_scope_equal(got, f->delta));
    crdt_scope_free(got);
    proto_body_fini(&b);
}

static void forget_round_trip(void **state)
{
    fx *f = *state;
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_FORGET;
    plain.forget_reason = PROTO_FORGET_RETENTION;
    plain.operator_name = (proto_bytes) { (const uint8_t *)"op.verdi", 8 };
    proto_seal_info info = { 2, { 0 }, { 1700000000009, 1 } };
    memcpy(info.prev, f->h.id, 32);
    proto_buf hb, bb;
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, tu_rng(), &hb, &bb), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(&h), PROTO_OK);
    assert_memory_equal(h.prev, f->h.id, 32); /* the hash chain */
    proto_body b;
    assert_int_equal(proto_body_open(&h, f->key, bb.p, bb.len, NULL, &b, NULL), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_FORGET);
    assert_int_equal(b.forget_reason, PROTO_FORGET_RETENTION);
    assert_int_equal(b.operator_name.len, 8);
    assert_memory_equal(b.operator_name.p, "op.verdi", 8);
    proto_body_fini(&b);
    proto_header_fini(&h);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Flip every bit of the HEADER message (fields and signature): never accepted. */
static void header_bit_flips_rejected(void **state)
{
    fx *f = *state;
    uint8_t *q = malloc(f->hdr.len);
    assert_non_null(q);
    for (size_t bit = 0; bit < f->hdr.len * 8; bit++) {
        memcpy(q, f->hdr.p, f->hdr.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        proto_header h;
        proto_err err = proto_header_decode(q, f->hdr.len, NULL, &h, NULL);
        if (err == PROTO_OK) {
            err = proto_header_verify(&h);
            proto_header_fini(&h);
            assert_int_equal(err, PROTO_ESIG);
        }
    }
    free(q);
}

/* Flip every bit of the body: rejected (hash), and also by the AEAD itself when the hash is
 * recomputed as a re-signing insider would. */
static void body_bit_flips_rejected(void **state)
{
    fx *f = *state;
    uint8_t *q = malloc(f->body.len);
    assert_non_null(q);
    for (size_t bit = 0; bit < f->body.len * 8; bit++) {
        memcpy(q, f->body.p, f->body.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        proto_body b;
        assert_int_equal(
            proto_body_open(&f->h, f->key, q, f->body.len, NULL, &b, NULL), PROTO_EBODYHASH);
        proto_header h = f->h;
        crypto_generichash(h.body_hash, 32, q, f->body.len, NULL, 0);
        assert_int_equal(
            proto_body_open(&h, f->key, q, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    }
    free(q);
}

/* Change any bit of any associated-data field (keeping hash and length right, as an insider
 * re-signing the header could): the AEAD rejects the body. */
static void associated_data_bit_flips_rejected(void **state)
{
    fx *f = *state;
    proto_body b;
    for (int bit = 0; bit < 256; bit++) {
        proto_header h = f->h;
        h.origin[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
        h = f->h;
        h.prev[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
        h = f->h;
        h.tag[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EKEY);
    }
    for (int bit = 0; bit < 64; bit++) {
        proto_header h = f->h;
        h.seq ^= UINT64_C(1) << bit;
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    }
    for (int bit = 0; bit < 48; bit++) {
        proto_header h = f->h;
        h.hlc.wall ^= UINT64_C(1) << bit;
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    }
    for (int bit = 0; bit < 16; bit++) {
        proto_header h = f->h;
        h.hlc.logical ^= (uint16_t)(1u << bit);
        assert_int_equal(
            proto_body_open(&h, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    }
}

static void body_swapped_under_other_header_rejected(void **state)
{
    fx *f = *state;
    proto_buf h2b, b2;
    make_delta(f, 2, f->h.id, &h2b, &b2);
    proto_header h2;
    assert_int_equal(proto_header_decode(h2b.p, h2b.len, NULL, &h2, NULL), PROTO_OK);
    proto_body b;
    /* as sent: rejected by length or hash */
    proto_err err = proto_body_open(&h2, f->key, f->body.p, f->body.len, NULL, &b, NULL);
    assert_true(err == PROTO_EBODYHASH || err == PROTO_EBODYLEN);
    /* with the header's hash and length made to match: rejected by the AEAD */
    proto_header forged = h2;
    forged.body_len = f->body.len;
    memcpy(forged.body_hash, f->h.body_hash, 32);
    assert_int_equal(
        proto_body_open(&forged, f->key, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    /* and the other way round */
    forged = f->h;
    forged.body_len = b2.len;
    memcpy(forged.body_hash, h2.body_hash, 32);
    assert_int_equal(
        proto_body_open(&forged, f->key, b2.p, b2.len, NULL, &b, NULL), PROTO_EDECRYPT);
    proto_header_fini(&h2);
    proto_buf_free(&h2b);
    proto_buf_free(&b2);
}

static void wrong_key_rejected(void **state)
{
    fx *f = *state;
    proto_scope_key *other;
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 1, tu_rng(), &other), PROTO_OK);
    proto_body b;
    assert_int_equal(
        proto_body_open(&f->h, other, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EKEY);
    /* a header claiming the other key's tag over this body: the AEAD still says no */
    proto_header h = f->h;
    memcpy(h.tag, proto_scope_key_tag(other), 32);
    assert_int_equal(
        proto_body_open(&h, other, f->body.p, f->body.len, NULL, &b, NULL), PROTO_EDECRYPT);
    proto_scope_key_free(other);
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    if (m == 0 || m > n)
        return false;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

static void assert_names_nothing(const fx *f, const uint8_t *p, size_t n)
{
    char text[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&f->cid, text);
    assert_false(contains(p, n, f->cid.b, 16));
    for (size_t k = 4; k <= 16; k += 4) /* nor any 4-byte window of it */
        assert_false(contains(p, n, f->cid.b + k - 4, 4));
    assert_false(contains(p, n, text, strlen(text)));
    assert_false(contains(p, n, text + 3, 10));
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_false(contains(p, n, secrets[i], strlen(secrets[i])));
}

static void headers_name_nothing(void **state)
{
    fx *f = *state;
    assert_names_nothing(f, f->hdr.p, f->hdr.len);
    proto_recipient rc;
    memcpy(rc.origin, proto_identity_origin(f->bob), 32);
    memcpy(rc.box_pk, proto_identity_box_pk(f->bob), 32);
    proto_seal_info info = { 5, { 1 }, { 1700000000000, 0 } };
    proto_buf gh, gb;
    assert_int_equal(
        proto_key_grant_seal(f->alice, f->key, &info, &rc, 1, tu_rng(), &gh, &gb), PROTO_OK);
    assert_names_nothing(f, gh.p, gh.len);
    /* nor does the grant body show the scope in clear */
    assert_names_nothing(f, gb.p, gb.len);
    proto_buf_free(&gh);
    proto_buf_free(&gb);
}

static void tags_differ_and_need_the_key(void **state)
{
    fx *f = *state;
    uint8_t k[32];
    proto_scope_key_export(f->key, k);
    proto_case_id c2 = f->cid;
    c2.b[15] ^= 1;
    proto_scope_key *ks[5];
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "sociale", 1, k, &ks[0]), PROTO_OK);
    assert_int_equal(proto_scope_key_from_bytes(&c2, "sociale", 1, k, &ks[1]), PROTO_OK);
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "documenti", 1, k, &ks[2]), PROTO_OK);
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "sociale", 2, k, &ks[3]), PROTO_OK);
    k[0] ^= 1; /* same case, scope, epoch, another key: the tag cannot be computed without it */
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "sociale", 1, k, &ks[4]), PROTO_OK);
    assert_memory_equal(proto_scope_key_tag(ks[0]), proto_scope_key_tag(f->key), 32);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_memory_not_equal(proto_scope_key_tag(ks[i]), proto_scope_key_tag(ks[j]), 32);
    for (int i = 0; i < 5; i++)
        proto_scope_key_free(ks[i]);
    proto_scope_key *bad;
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "Sociale", 1, k, &bad), PROTO_EVALUE);
    assert_int_equal(proto_scope_key_from_bytes(&f->cid, "", 1, k, &bad), PROTO_EVALUE);
}

static void padding_hides_lengths(void **state)
{
    fx *f = *state;
    size_t first = 0;
    size_t sizes[600];
    for (size_t n = 0; n < 600; n++) {
        char op[600];
        memset(op, 'x', n);
        proto_body plain;
        memset(&plain, 0, sizeof plain);
        plain.kind = PROTO_BODY_FORGET;
        plain.forget_reason = 1;
        plain.operator_name = (proto_bytes) { (const uint8_t *)op, n };
        proto_seal_info info = { 1, { 0 }, { 1, 0 } };
        proto_buf hb, bb;
        assert_int_equal(
            proto_delta_seal(f->alice, f->key, &info, &plain, tu_rng(), &hb, &bb), PROTO_OK);
        sizes[n] = bb.len;
        assert_int_equal((bb.len - 40) % PROTO_PAD_BLOCK, 0);
        if (n == 0)
            first = bb.len;
        proto_buf_free(&hb);
        proto_buf_free(&bb);
    }
    /* a step function: sizes never shrink, grow by exactly one block at a time, and every
     * size is shared by a whole block's worth of consecutive lengths (less one or two where
     * the msgpack str header of the operator field grows by a byte) */
    size_t run = 1, steps = 0;
    for (size_t n = 1; n < 600; n++) {
        if (sizes[n] == sizes[n - 1]) {
            run++;
            continue;
        }
        assert_int_equal(sizes[n], sizes[n - 1] + PROTO_PAD_BLOCK);
        if (steps > 0)
            assert_in_range(run, PROTO_PAD_BLOCK - 2, PROTO_PAD_BLOCK);
        steps++;
        run = 1;
    }
    assert_int_equal(steps, 2);
    assert_int_equal(sizes[599] - first, 2 * PROTO_PAD_BLOCK);
}

static void key_grant_round_trip_and_tamper(void **state)
{
    fx *f = *state;
    proto_recipient rc[2];
    memcpy(rc[0].origin, proto_identity_origin(f->carol), 32);
    memcpy(rc[0].box_pk, proto_identity_box_pk(f->carol), 32);
    memcpy(rc[1].origin, proto_identity_origin(f->bob), 32);
    memcpy(rc[1].box_pk, proto_identity_box_pk(f->bob), 32);
    proto_seal_info info = { 3, { 7 }, { 1700000000000, 2 } };
    proto_buf hb, bb;
    assert_int_equal(
        proto_key_grant_seal(f->alice, f->key, &info, rc, 2, tu_rng(), &hb, &bb), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(&h), PROTO_OK);
    assert_int_equal(h.kind, PROTO_HDR_KEY_GRANT);
    assert_int_equal(h.nrecipients, 2);
    assert_true(memcmp(h.recipients[0].b, h.recipients[1].b, 32) < 0);
    assert_memory_equal(h.tag, proto_scope_key_tag(f->key), 32);
    const proto_identity *who[2] = { f->bob, f->carol };
    uint8_t want[32], got_b[32];
    proto_scope_key_export(f->key, want);
    for (int i = 0; i < 2; i++) {
        proto_scope_key *got;
        assert_int_equal(
            proto_key_grant_open(&h, who[i], bb.p, bb.len, NULL, &got, NULL), PROTO_OK);
        proto_scope_key_export(got, got_b);
        assert_memory_equal(got_b, want, 32);
        assert_string_equal(proto_scope_key_scope(got), "sociale");
        assert_int_equal(proto_scope_key_epoch(got), 1);
        assert_memory_equal(proto_scope_key_case(got)->b, f->cid.b, 16);
        proto_scope_key_free(got);
    }
    proto_scope_key *got = NULL;
    assert_int_equal(
        proto_key_grant_open(&h, f->dave, bb.p, bb.len, NULL, &got, NULL), PROTO_ENOTRECIPIENT);
    /* every bit of the body */
    assert_int_equal(bb.len, 4 + 2 * 307);
    size_t bob_i = memcmp(h.recipients[0].b, proto_identity_origin(f->bob), 32) == 0 ? 0 : 1;
    uint8_t *q = malloc(bb.len);
    for (size_t bit = 0; bit < bb.len * 8; bit++) {
        memcpy(q, bb.p, bb.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_key_grant_open(&h, f->bob, q, bb.len, NULL, &got, NULL), PROTO_EBODYHASH);
        /* with the hash recomputed: bob's box fails to open, framing fails to decode, and a
         * change in carol's box does not concern bob */
        proto_header h2 = h;
        crypto_generichash(h2.body_hash, 32, q, bb.len, NULL, 0);
        size_t byte = bit / 8;
        size_t bob_box = 4 + bob_i * 307 + 3, other_box = 4 + (1 - bob_i) * 307 + 3;
        proto_err err = proto_key_grant_open(&h2, f->bob, q, bb.len, NULL, &got, NULL);
        if (byte >= bob_box && byte < bob_box + 304)
            assert_int_equal(err, PROTO_ESEAL);
        else if (byte >= other_box && byte < other_box + 304)
            assert_int_equal(err, PROTO_OK);
        else
            assert_int_not_equal(err, PROTO_OK);
        proto_scope_key_free(got);
        got = NULL;
    }
    free(q);
    /* a header (re-signed by an insider) claiming another tag or another grantor */
    proto_header h2 = h;
    h2.tag[0] ^= 1;
    assert_int_equal(
        proto_key_grant_open(&h2, f->bob, bb.p, bb.len, NULL, &got, NULL), PROTO_EMISMATCH);
    h2 = h;
    memcpy(h2.origin, proto_identity_origin(f->carol), 32);
    assert_int_equal(
        proto_key_grant_open(&h2, f->bob, bb.p, bb.len, NULL, &got, NULL), PROTO_EMISMATCH);
    /* a delta header is not a grant */
    assert_int_equal(
        proto_key_grant_open(&f->h, f->bob, bb.p, bb.len, NULL, &got, NULL), PROTO_EKIND);
    /* duplicates refused */
    rc[1] = rc[0];
    proto_buf x, y;
    assert_int_equal(
        proto_key_grant_seal(f->alice, f->key, &info, rc, 2, tu_rng(), &x, &y), PROTO_EVALUE);
    proto_header_fini(&h);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* PROTOCOL.md's construction, redone here with libsodium and checked against vectors.txt. */
static void spec_reimplementation_matches_vectors(void **state)
{
    (void)state;
    tu_vectors vs;
    assert_true(tu_vectors_load(PROTO_VECTORS_FILE, &vs));
    const tu_vector *tag = NULL, *dl = NULL, *kg = NULL, *ids = NULL;
    for (size_t i = 0; i < vs.n; i++) {
        if (strcmp(vs.v[i].name, "routing-tag") == 0)
            tag = &vs.v[i];
        if (strcmp(vs.v[i].name, "delta") == 0)
            dl = &vs.v[i];
        if (strcmp(vs.v[i].name, "key-grant") == 0)
            kg = &vs.v[i];
        if (strcmp(vs.v[i].name, "identities") == 0)
            ids = &vs.v[i];
    }
    assert_non_null(tag);
    assert_non_null(dl);
    assert_non_null(kg);
    assert_non_null(ids);
    size_t n;
    uint8_t *key = tu_unhex(tu_vector_get(tag, "scope_key"), &n);
    uint8_t *cid = tu_unhex(tu_vector_get(tag, "case_id"), &n);
    uint8_t *want_tag = tu_unhex(tu_vector_get(tag, "tag"), &n);
    uint8_t tagkey[32], bodykey[32], t[32];
    crypto_kdf_derive_from_key(tagkey, 32, 1, "pattoscp", key);
    crypto_kdf_derive_from_key(bodykey, 32, 2, "pattoscp", key);
    crypto_generichash_state st;
    crypto_generichash_init(&st, tagkey, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-tag-v1", 12);
    crypto_generichash_update(&st, cid, 16);
    const uint8_t mid[] = { 7, 's', 'o', 'c', 'i', 'a', 'l', 'e', 0, 0, 0, 0, 0, 0, 0, 1 };
    crypto_generichash_update(&st, mid, sizeof mid);
    crypto_generichash_final(&st, t, 32);
    assert_memory_equal(t, want_tag, 32);

    /* header: signature over the signed bytes, id, body hash, AEAD with the AD */
    size_t hl, bl, sl, pl;
    uint8_t *hdr = tu_unhex(tu_vector_get(dl, "header"), &hl);
    uint8_t *body = tu_unhex(tu_vector_get(dl, "body"), &bl);
    uint8_t *sgn = tu_unhex(tu_vector_get(dl, "header_signed"), &sl);
    uint8_t *pad = tu_unhex(tu_vector_get(dl, "plaintext_padded"), &pl);
    uint8_t *sig = tu_unhex(tu_vector_get(dl, "signature"), &n);
    uint8_t *origin = tu_unhex(tu_vector_get(ids, "alice_origin"), &n);
    assert_int_equal(crypto_sign_verify_detached(sig, sgn, sl, origin), 0);
    uint8_t hid[32], bh[32];
    crypto_generichash(hid, 32, sgn, sl, NULL, 0);
    uint8_t *want_id = tu_unhex(tu_vector_get(dl, "header_id"), &n);
    assert_memory_equal(hid, want_id, 32);
    crypto_generichash(bh, 32, body, bl, NULL, 0);
    proto_header h;
    assert_int_equal(proto_header_decode(hdr, hl, NULL, &h, NULL), PROTO_OK);
    assert_memory_equal(bh, h.body_hash, 32);
    uint8_t ad[127];
    assert_int_equal(tdec_spec_ad(&h, ad), 127);
    uint8_t *pt = malloc(bl);
    unsigned long long ptl;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         pt, &ptl, NULL, body + 24, bl - 24, ad, 127, body, bodykey),
        0);
    assert_int_equal(ptl, pl);
    assert_memory_equal(pt, pad, pl);
    size_t unpadded;
    assert_int_equal(sodium_unpad(&unpadded, pt, ptl, 256), 0);
    assert_true(unpadded < ptl);

    /* key grant: bob opens his sealed box with crypto_box_seal_open */
    size_t gl;
    uint8_t *gb = tu_unhex(tu_vector_get(kg, "body"), &gl);
    proto_bodies_msg dummy;
    (void)dummy;
    proto_identity *bob = tu_identity(0x41);
    uint8_t bob_sk[32], bob_sign[32];
    proto_identity_seeds(bob, bob_sign, bob_sk);
    uint8_t bpk[32], bsk[32];
    crypto_box_seed_keypair(bpk, bsk, bob_sk);
    /* bob is recipient 0 or 1 (sorted by origin): one of the two boxes opens */
    int opened = 0;
    for (size_t off = 0; off + 304 <= gl; off++) {
        uint8_t m[256];
        if (crypto_box_seal_open(m, gb + off, 304, bpk, bsk) == 0) {
            size_t ml;
            assert_int_equal(sodium_unpad(&ml, m, 256, 256), 0);
            assert_true(contains(m, ml, key, 32));
            opened++;
        }
    }
    assert_int_equal(opened, 1);
    proto_identity_free(bob);
    proto_header_fini(&h);
    free(gb);
    free(pt);
    free(want_id);
    free(origin);
    free(sig);
    free(pad);
    free(sgn);
    free(body);
    free(hdr);
    free(want_tag);
    free(cid);
    free(key);
    tu_vectors_free(&vs);
}

static void seal_arguments_checked(void **state)
{
    fx *f = *state;
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    proto_buf hb, bb;
    proto_seal_info info = { 0, { 0 }, { 1, 0 } };
    assert_int_equal(proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb),
        PROTO_EVALUE); /* seq 0 */
    info.seq = 1;
    info.prev[0] = 1;
    assert_int_equal(proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb),
        PROTO_EVALUE); /* seq 1 with a prev */
    info.prev[0] = 0;
    plain.kind = 99;
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb), PROTO_EVALUE);
    plain.kind = PROTO_BODY_DELTA;
    crdt_vv_entry vv[2];
    memset(vv, 0, sizeof vv);
    vv[0].max = vv[1].max = 1; /* same origin twice */
    plain.vv = vv;
    plain.nvv = 2;
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb), PROTO_EVALUE);
    assert_int_equal(proto_delta_seal(NULL, f->key, &info, &plain, NULL, &hb, &bb), PROTO_EINVAL);
}

/* Helpers the node uses: body check without a key, schema hash, wipe. */
static void keyless_body_check_schema_hash_wipe(void **state)
{
    fx *f = *state;
    assert_int_equal(proto_body_check(&f->h, f->body.p, f->body.len), PROTO_OK);
    assert_int_equal(proto_body_check(&f->h, f->body.p, f->body.len - 1), PROTO_EBODYLEN);
    f->body.p[7] ^= 0x10;
    assert_int_equal(proto_body_check(&f->h, f->body.p, f->body.len), PROTO_EBODYHASH);
    f->body.p[7] ^= 0x10;
    assert_int_equal(proto_body_check(NULL, f->body.p, f->body.len), PROTO_EINVAL);

    const char schema[] = "{\"scopes\":[]}";
    uint8_t h1[32], h2[32];
    proto_schema_hash((const uint8_t *)schema, sizeof schema - 1, h1);
    crypto_generichash(h2, 32, (const uint8_t *)schema, sizeof schema - 1, NULL, 0);
    assert_memory_equal(h1, h2, 32);

    uint8_t secret[48], zero[48] = { 0 };
    memset(secret, 0xa5, sizeof secret);
    proto_wipe(secret, sizeof secret);
    assert_memory_equal(secret, zero, sizeof secret);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delta_round_trip),
        cmocka_unit_test(forget_round_trip),
        cmocka_unit_test(header_bit_flips_rejected),
        cmocka_unit_test(body_bit_flips_rejected),
        cmocka_unit_test(associated_data_bit_flips_rejected),
        cmocka_unit_test(body_swapped_under_other_header_rejected),
        cmocka_unit_test(wrong_key_rejected),
        cmocka_unit_test(headers_name_nothing),
        cmocka_unit_test(tags_differ_and_need_the_key),
        cmocka_unit_test(padding_hides_lengths),
        cmocka_unit_test(key_grant_round_trip_and_tamper),
        cmocka_unit_test(spec_reimplementation_matches_vectors),
        cmocka_unit_test(seal_arguments_checked),
        cmocka_unit_test(keyless_body_check_schema_hash_wipe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
