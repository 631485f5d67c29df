/*
 * tvgen.c - builds every test vector of proto/vectors.txt from fixed inputs (fixed key seeds,
 * nonces and ephemeral seeds injected through proto_rng). test_vectors.c checks that the file
 * equals what this produces, entry by entry; `test-proto-vectors --write FILE` rewrites it.
 *
 * The Ed25519 edge cases are made here with libsodium's group operations (tests may call
 * libsodium directly; proto/ may not outside crypto.c).
 */
#include "tvgen.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const scope_name = "sociale";
static const char *const owner_org = "comune-1";

static void put_identity(tu_vector *v, const char *who, uint8_t base, const proto_identity *id)
{
    char k[64];
    uint8_t s[32];
    tu_pattern(s, 32, base);
    snprintf(k, sizeof k, "%s_sign_seed", who);
    tu_vector_put_hex(v, k, s, 32);
    tu_pattern(s, 32, (uint8_t)(base + 0x20));
    snprintf(k, sizeof k, "%s_box_seed", who);
    tu_vector_put_hex(v, k, s, 32);
    snprintf(k, sizeof k, "%s_origin", who);
    tu_vector_put_hex(v, k, proto_identity_origin(id), 32);
    snprintf(k, sizeof k, "%s_box_pk", who);
    tu_vector_put_hex(v, k, proto_identity_box_pk(id), 32);
}

static crdt_origin origin_of(const proto_identity *id)
{
    crdt_origin o;
    memcpy(o.b, proto_identity_origin(id), 32);
    return o;
}

static void put_buf(tu_vector *v, const char *key, const proto_buf *b)
{
    tu_vector_put_hex(v, key, b->p, b->len);
}

static proto_bytes txt(const char *s)
{
    return (proto_bytes) { (const uint8_t *)s, strlen(s) };
}

/* A stream of deterministic bytes (libsodium's randombytes_buf_deterministic of a seed), drawn
 * in order: the "seeded rng" of the key-grant vector. */
typedef struct stream_rng {
    uint8_t buf[8192];
    size_t off;
} stream_rng;

static void stream_fill(void *ctx, uint8_t *out, size_t n)
{
    stream_rng *s = ctx;
    if (n > sizeof s->buf - s->off)
        abort();
    memcpy(out, s->buf + s->off, n);
    s->off += n;
}

/* Seal one body of alice's log under key; returns the decoded header (id in h->id). */
static void seal_body(const proto_identity *author, const proto_scope_key *key, uint64_t seq,
    const uint8_t prev[32], crdt_hlc hlc, const proto_body *plain, uint8_t nonce_base,
    proto_buf *hdr, proto_buf *body, proto_header *h, uint8_t nonce[24])
{
    proto_seal_info info = { seq, { 0 }, hlc };
    if (prev != NULL)
        memcpy(info.prev, prev, 32);
    tu_pattern(nonce, 24, nonce_base);
    tu_fixed fx = { nonce, 24, 0 };
    proto_rng rng = tu_fixed_rng(&fx);
    CHECK(proto_delta_seal(author, key, &info, plain, &rng, hdr, body));
    CHECK(proto_header_decode(hdr->p, hdr->len, NULL, h, NULL));
    CHECK(proto_header_verify(h));
}

/* The opened plaintext (padded) of a body, for the vectors. */
static void put_plaintext(tu_vector *v, const proto_header *h, const proto_scope_key *key,
    const proto_buf *body, proto_body *out)
{
    CHECK(proto_body_open(h, key, body->p, body->len, NULL, out, NULL));
    tu_vector_put_hex(v, "plaintext_padded", out->plain_, out->plain_len_);
}

/* A note to the owner ([note], [note-drop]): sealed by author to owner (box seed pattern
 * owner_box_base) with random bytes from the stream of seed pattern stream_base; the owner finds
 * slot 0 and reads the note back; box 0 is opened here with libsodium alone. */
static void note_vector(tu_vectors *vs, const char *name, const char *what,
    const proto_identity *author, const proto_identity *owner, uint8_t owner_box_base,
    const proto_note *note, const proto_seal_info *info, uint8_t stream_base)
{
    stream_rng sr;
    uint8_t stream_seed[randombytes_SEEDBYTES];
    tu_pattern(stream_seed, sizeof stream_seed, stream_base);
    randombytes_buf_deterministic(sr.buf, sizeof sr.buf, stream_seed);
    sr.off = 0;
    proto_rng rng = { stream_fill, &sr };
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(owner), 32);
    proto_buf nh, nb;
    CHECK(proto_note_seal(author, note, info, &rc, &rng, &nh, &nb));
    proto_header h;
    CHECK(proto_header_decode(nh.p, nh.len, NULL, &h, NULL));
    CHECK(proto_header_verify(&h));
    CHECK(h.kind != PROTO_HDR_NOTE);
    CHECK(memcmp(h.tag, sr.buf, 32)); /* the tag is drawn first */
    CHECK(proto_key_grant_slot(&h, owner, proto_identity_box_pk(author)) != 0);
    proto_note *got = malloc(sizeof *got);
    CHECK(got == NULL);
    CHECK(proto_note_open_slot(&h, owner, 0, nb.p, nb.len, NULL, got, NULL));
    CHECK(memcmp(got, note, sizeof *got) != 0);
    free(got);
    uint8_t seed[32], pk[32], sk[32];
    tu_pattern(seed, 32, owner_box_base);
    crypto_box_seed_keypair(pk, sk, seed);
    size_t box_len = (nb.len - 4) / 4 - 3;
    uint8_t *padded = malloc(box_len - 48);
    CHECK(padded == NULL);
    CHECK(crypto_box_seal_open(padded, nb.p + 4 + 3, box_len, pk, sk));
    tu_vector *v = tu_vectors_add(vs, name);
    tu_vector_put(v, "what", what);
    tu_vector_put(v, "rng",
        "randombytes_buf_deterministic(8192 bytes, seed = stream_seed), drawn in order: the tag "
        "(32), slot 0 ephemeral seed (32), slot 1 filler box (L) and hint (16), slot 2 the same, "
        "slot 3 the same");
    tu_vector_put_hex(v, "stream_seed", stream_seed, sizeof stream_seed);
    tu_vector_put_hex(v, "tag", h.tag, 32);
    tu_vector_put_hex(v, "ephemeral_seed", sr.buf + 32, 32);
    tu_vector_put_hex(v, "note_plain_padded", padded, box_len - 48);
    tu_vector_put_u64(v, "box_len", box_len);
    for (int i = 0; i < PROTO_HINT_SLOTS; i++) {
        char k[16];
        snprintf(k, sizeof k, "hint_%d", i);
        tu_vector_put_hex(v, k, h.hints[i].b, PROTO_HINT_LEN);
    }
    put_buf(v, "body", &nb);
    tu_vector_put_hex(v, "header_id", h.id, 32);
    put_buf(v, "header", &nh);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(padded, box_len - 48);
    free(padded);
    proto_buf_free(&nh);
    proto_buf_free(&nb);
}

/* Ed25519 edge cases ([ed25519-edge]): signatures that satisfy the verification equation, or
 * would to a lax verifier, and that libsodium 1.0.18 (so patto) refuses. */
static void ed25519_edges(
    tu_vectors *vs, const proto_identity *alice, proto_bytes msg, const proto_buf *header)
{
    static const uint8_t L[32] = { 0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
        0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10 };
    /* the order-8 point with x positive (one of the encodings libsodium's list of small-order
     * points holds), and the identity */
    static const uint8_t order8[32] = { 0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3,
        0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1,
        0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05 };
    static const uint8_t identity[32] = { 1 };
    const uint8_t *pk = proto_identity_origin(alice);
    proto_header h;
    CHECK(proto_header_decode(header->p, header->len, NULL, &h, NULL));
    const uint8_t *sig = h.sig;
    tu_vector *v = tu_vectors_add(vs, "ed25519-edge");
    tu_vector_put(v, "what",
        "alice's signature of the delta's header_signed, and variants libsodium 1.0.18 refuses: "
        "S + L; A the identity or an order-8 point (R = [5]B, S = 5: the equation holds for every "
        "message, cofactored for the order-8 point); R the identity (S = h a mod L: the equation "
        "holds); A with y = p + 3");
    tu_vector_put_hex(v, "pk", pk, 32);
    tu_vector_put_hex(v, "signed_bytes", msg.p, msg.len);
    tu_vector_put_hex(v, "sig", sig, 64);

    /* S + L, as 256-bit little-endian integers (S < L < 2^253: no carry out) */
    uint8_t s_plus_l[64];
    memcpy(s_plus_l, sig, 64);
    unsigned carry = 0;
    for (int i = 0; i < 32; i++) {
        unsigned t = (unsigned)s_plus_l[32 + i] + L[i] + carry;
        s_plus_l[32 + i] = (uint8_t)t;
        carry = t >> 8;
    }
    CHECK(carry != 0);
    tu_vector_put_hex(v, "sig_s_plus_l", s_plus_l, 64);
    memcpy(h.sig, s_plus_l, 64);
    proto_buf bad;
    CHECK(proto_header_encode(&h, &bad));
    put_buf(v, "header_s_plus_l", &bad);
    proto_buf_free(&bad);

    /* small-order A: R = [5]B, S = 5 */
    uint8_t five[32] = { 5 }, r5[32], sig5[64];
    CHECK(crypto_scalarmult_ed25519_base_noclamp(r5, five));
    memcpy(sig5, r5, 32);
    memcpy(sig5 + 32, five, 32);
    tu_vector_put_hex(v, "pk_identity", identity, 32);
    tu_vector_put_hex(v, "sig_identity", sig5, 64);
    tu_vector_put_hex(v, "pk_order8", order8, 32);
    tu_vector_put_hex(v, "sig_order8", sig5, 64);

    /* small-order R: R = identity, S = h a mod L with a alice's secret scalar */
    uint8_t seed[32], az[64], a[64] = { 0 }, ared[32], hram[64], hred[32], s[32], sig_r[64];
    tu_pattern(seed, 32, 0x01);
    crypto_hash_sha512(az, seed, 32);
    az[0] &= 248;
    az[31] &= 127;
    az[31] |= 64;
    memcpy(a, az, 32);
    crypto_core_ed25519_scalar_reduce(ared, a);
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, identity, 32);
    crypto_hash_sha512_update(&st, pk, 32);
    crypto_hash_sha512_update(&st, msg.p, msg.len);
    crypto_hash_sha512_final(&st, hram);
    crypto_core_ed25519_scalar_reduce(hred, hram);
    crypto_core_ed25519_scalar_mul(s, hred, ared);
    memcpy(sig_r, identity, 32);
    memcpy(sig_r + 32, s, 32);
    uint8_t sb[32], ha[32];
    CHECK(crypto_scalarmult_ed25519_base_noclamp(sb, s));
    CHECK(crypto_scalarmult_ed25519_noclamp(ha, hred, pk));
    CHECK(memcmp(sb, ha, 32)); /* [S]B = R + [h]A with R the identity */
    tu_vector_put_hex(v, "sig_small_r", sig_r, 64);

    /* A with a non-canonical y: p + 3 (a curve point, not of small order; canonical 03 00..) */
    uint8_t noncanon[32];
    memset(noncanon, 0xff, 32);
    noncanon[0] = 0xf0;
    noncanon[31] = 0x7f;
    tu_vector_put_hex(v, "pk_noncanonical", noncanon, 32);
    sodium_memzero(az, sizeof az);
    sodium_memzero(a, sizeof a);
    sodium_memzero(ared, sizeof ared);
}

void tv_generate(tu_vectors *vs)
{
    CHECK(proto_init());
    proto_identity *alice = tu_identity(0x01), *bob = tu_identity(0x41);
    proto_identity *carol = tu_identity(0x81), *admin = tu_identity(0xc1);
    proto_identity *alice_old = tu_identity(0x11);
    crdt_origin oa = origin_of(alice), ob = origin_of(bob);
    tu_vector *v;

    v = tu_vectors_add(vs, "identities");
    tu_vector_put(v, "what", "Ed25519 seed -> origin; X25519 seed -> box public key");
    put_identity(v, "alice", 0x01, alice);
    put_identity(v, "bob", 0x41, bob);
    put_identity(v, "carol", 0x81, carol);
    put_identity(v, "admin", 0xc1, admin);
    put_identity(v, "alice_old", 0x11, alice_old);

    /* The case: comune-1's, nonce 00..0f. */
    proto_case_nonce cnonce;
    tu_pattern(cnonce.b, 16, 0x00);
    proto_case_id cid;
    CHECK(proto_case_id_derive(owner_org, strlen(owner_org), &cnonce, &cid));
    char text[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&cid, text);
    v = tu_vectors_add(vs, "case-id");
    tu_vector_put(v, "what", "the case id of org comune-1 with nonce 00..0f, and its text");
    tu_vector_put(v, "org", owner_org);
    tu_vector_put_hex(v, "nonce", cnonce.b, 16);
    tu_vector_put_hex(v, "case_id", cid.b, 16);
    tu_vector_put(v, "text", text);

    uint8_t keyb[32], key2b[32];
    tu_pattern(keyb, 32, 0x50);
    tu_pattern(key2b, 32, 0x70);
    proto_scope_key *key, *key2, *key3;
    CHECK(proto_scope_key_from_bytes(&cid, scope_name, 1, keyb, &key));
    CHECK(proto_scope_key_from_bytes(&cid, scope_name, 2, key2b, &key2));
    CHECK(proto_scope_key_from_bytes(&cid, "documenti", 1, keyb, &key3));
    v = tu_vectors_add(vs, "routing-tag");
    tu_vector_put(v, "what",
        "the routing tag of (case, sociale, 1); of epoch 2 (its own key); of "
        "scope documenti with the same key bytes");
    tu_vector_put_hex(v, "scope_key", keyb, 32);
    tu_vector_put_hex(v, "case_id", cid.b, 16);
    tu_vector_put(v, "scope", scope_name);
    tu_vector_put_u64(v, "epoch", 1);
    tu_vector_put_hex(v, "tag", proto_scope_key_tag(key), 32);
    tu_vector_put_hex(v, "scope_key_epoch_2", key2b, 32);
    tu_vector_put_hex(v, "tag_epoch_2", proto_scope_key_tag(key2), 32);
    tu_vector_put_hex(v, "tag_scope_documenti", proto_scope_key_tag(key3), 32);

    uint8_t khash[32];
    proto_epoch_key_hash(key2, khash);
    v = tu_vectors_add(vs, "epoch-key");
    tu_vector_put(v, "what", "the key hash an ACCESS_EPOCH carries for epoch 2 of (case, sociale)");
    tu_vector_put_hex(v, "case_id", cid.b, 16);
    tu_vector_put(v, "scope", scope_name);
    tu_vector_put_u64(v, "epoch", 2);
    tu_vector_put_hex(v, "scope_key", key2b, 32);
    tu_vector_put_hex(v, "key_hash", khash, 32);

    crdt_origin co;
    proto_counter_origin(ob.b, "ore_frequenza", 13, co.b);
    v = tu_vectors_add(vs, "counter-origin");
    tu_vector_put(v, "what", "the origin of bob's entries of counter field ore_frequenza");
    tu_vector_put_hex(v, "author", ob.b, 32);
    tu_vector_put(v, "field", "ore_frequenza");
    tu_vector_put_hex(v, "counter_origin", co.b, 32);

    /* A scope state: a register with two concurrent values, a set, a counter, a timeline. */
    crdt_scope *s, *s2, *base, *delta;
    CHECK(crdt_scope_new(NULL, &s));
    CHECK(crdt_scope_new(NULL, &s2));
    crdt_hlc h1 = { 1700000000000, 0 }, h2 = { 1700000000000, 1 }, h3 = { 1700000050000, 0 };
    CHECK(crdt_register_set(s, NULL, &oa, &h1, "nome", "Amina", 5));
    CHECK(crdt_set_add(s, NULL, &oa, "lingue", "ar", 2));
    CHECK(crdt_set_add(s, NULL, &oa, "lingue", "fr", 2));
    CHECK(crdt_register_set(s2, NULL, &ob, &h2, "nome", "Aminah", 6));
    CHECK(crdt_counter_add(s2, NULL, &co, "ore_frequenza", 12));
    CHECK(crdt_timeline_add(s2, NULL, &ob, &h3, "servizi", "{\"tipo\":\"colloquio\"}", 20, NULL));
    CHECK(crdt_scope_join(s, s2));
    proto_buf state;
    uint8_t digest[32];
    CHECK(proto_scope_encode(s, &state));
    CHECK(proto_scope_digest(s, digest));
    v = tu_vectors_add(vs, "scope-state");
    tu_vector_put(v, "what",
        "alice: nome=Amina, lingue+=ar, lingue+=fr; bob concurrently: nome=Aminah, "
        "ore_frequenza+=12 (under bob's counter origin), servizi+={\"tipo\":\"colloquio\"}; "
        "joined");
    put_buf(v, "msg", &state);
    tu_vector_put_hex(v, "digest", digest, 32);
    const crdt_cc *cc = crdt_scope_cc(s);

    /* alice's log: 1 access grant, 2 delta, 3 access epoch, 4 key grant, 5 forget, 6 access
     * narrowing */
    proto_header hdr;
    proto_body opened;
    uint8_t nonce[24];

    proto_body ag;
    memset(&ag, 0, sizeof ag);
    ag.kind = PROTO_BODY_ACCESS_GRANT;
    ag.entry = 1;
    ag.grant = (proto_access) { txt("cpia-1"), PROTO_ACCESS_READ, txt("integrazione"),
        PROTO_BASIS_PUBLIC_TASK, txt("L. 328/2000, art. 22"), UINT64_C(1735689599999),
        txt("m.bianchi"), txt("mbianchi"), txt("verbale 12/2024") };
    proto_buf agh, agb;
    seal_body(
        alice, key, 1, NULL, (crdt_hlc) { 1700000090000, 0 }, &ag, 0x30, &agh, &agb, &hdr, nonce);
    uint8_t grant_entry_id[32];
    memcpy(grant_entry_id, hdr.id, 32);
    v = tu_vectors_add(vs, "access-grant");
    tu_vector_put(v, "what",
        "alice (seq 1) records access-log entry 1 of (case, sociale): cpia-1 may read for "
        "integrazione, public task, until 2024-12-31T23:59:59.999Z");
    tu_vector_put_u64(v, "seq", 1);
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_plaintext(v, &hdr, key, &agb, &opened);
    proto_body_fini(&opened);
    put_buf(v, "body", &agb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &agh);

    /* A delta: alice sets one register on top of the state, having seen access entry 1. */
    CHECK(crdt_scope_clone(s, &base));
    CHECK(crdt_scope_new(NULL, &delta));
    crdt_hlc hd = { 1700000100000, 3 };
    CHECK(crdt_register_set(base, delta, &oa, &hd, "telefono", "+39 333 0000000", 15));
    proto_buf dmsg;
    CHECK(proto_scope_encode(delta, &dmsg));
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = cc->vv; /* the version vector of the scope before the delta */
    plain.nvv = cc->nvv;
    plain.access_seen = 1; /* entry 1, carried by alice's header seq 1 (the access grant) */
    memcpy(plain.access_origin, proto_identity_origin(alice), 32);
    plain.access_at = 1;
    plain.delta = (proto_bytes) { dmsg.p, dmsg.len };
    proto_buf dh, db;
    seal_body(alice, key, 2, grant_entry_id, hd, &plain, 0x70, &dh, &db, &hdr, nonce);
    v = tu_vectors_add(vs, "delta");
    tu_vector_put(v, "what",
        "alice (seq 2, prev = the access grant) sets telefono, having seen access entry 1, "
        "which alice's header seq 1 carried; header_id = H(header), the whole HEADER message");
    tu_vector_put_hex(v, "scope_key", keyb, 32);
    tu_vector_put_u64(v, "seq", 2);
    tu_vector_put_u64(v, "hlc_wall", hd.wall);
    tu_vector_put_u64(v, "hlc_logical", hd.logical);
    tu_vector_put_u64(v, "access_seen", 1);
    tu_vector_put_u64(v, "access_at", 1);
    put_buf(v, "delta_scope", &dmsg);
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_plaintext(v, &hdr, key, &db, &opened);
    proto_body_fini(&opened);
    put_buf(v, "body", &db);
    tu_vector_put_hex(v, "body_hash", hdr.body_hash, 32);
    tu_vector_put_hex(v, "header_signed", hdr.signed_bytes.p, hdr.signed_bytes.len);
    tu_vector_put_hex(v, "signature", hdr.sig, 64);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &dh);
    uint8_t delta_id[32];
    memcpy(delta_id, hdr.id, 32);
    proto_bytes dsigned = hdr.signed_bytes; /* points into dh */

    /* Access-log entry 2: epoch 2 announced, under the epoch-1 key. */
    proto_body ae;
    memset(&ae, 0, sizeof ae);
    ae.kind = PROTO_BODY_ACCESS_EPOCH;
    ae.entry = 2;
    ae.new_epoch = 2;
    memcpy(ae.key_hash, khash, 32);
    proto_buf aeh, aeb;
    seal_body(alice, key, 3, delta_id, (crdt_hlc) { 1700000150000, 0 }, &ae, 0xb0, &aeh, &aeb, &hdr,
        nonce);
    uint8_t epoch_entry_id[32];
    memcpy(epoch_entry_id, hdr.id, 32);
    v = tu_vectors_add(vs, "access-epoch");
    tu_vector_put(v, "what",
        "alice (seq 3, prev = the delta) records access-log entry 2: epoch 2 of (case, sociale), "
        "its key hash as in [epoch-key]");
    tu_vector_put_u64(v, "seq", 3);
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_plaintext(v, &hdr, key, &aeb, &opened);
    proto_body_fini(&opened);
    put_buf(v, "body", &aeb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &aeh);

    /* A key grant of sociale's epochs 1 and 2 and documenti's epoch 1 to bob alone, seq 4; slots
     * 1..3 from the seeded stream. */
    stream_rng sr;
    uint8_t stream_seed[randombytes_SEEDBYTES];
    tu_pattern(stream_seed, sizeof stream_seed, 0xa0);
    randombytes_buf_deterministic(sr.buf, sizeof sr.buf, stream_seed);
    sr.off = 0;
    proto_rng grng = { stream_fill, &sr };
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(bob), 32);
    proto_seal_info info4 = { 4, { 0 }, { 1700000200000, 0 } };
    memcpy(info4.prev, epoch_entry_id, 32);
    const proto_scope_key *gkeys[3] = { key, key2, key3 };
    proto_buf gh, gb;
    CHECK(
        proto_key_grant_seal(alice, owner_org, &cnonce, gkeys, 3, &info4, &rc, 1, &grng, &gh, &gb));
    CHECK(proto_header_decode(gh.p, gh.len, NULL, &hdr, NULL));
    CHECK(proto_header_verify(&hdr));
    CHECK(proto_key_grant_slot(&hdr, bob, proto_identity_box_pk(alice)) != 0);
    proto_grant got;
    CHECK(proto_key_grant_open(
        &hdr, bob, proto_identity_box_pk(alice), gb.p, gb.len, NULL, &got, NULL));
    proto_grant_fini(&got);
    /* bob's box, opened here with libsodium alone, and the hint's intermediate values */
    uint8_t bob_seed[32], bob_pk[32], bob_sk[32];
    uint8_t alice_box_seed[32], alice_box_pk[32], alice_box_sk[32];
    tu_pattern(bob_seed, 32, 0x61);
    tu_pattern(alice_box_seed, 32, 0x21);
    crypto_box_seed_keypair(bob_pk, bob_sk, bob_seed);
    crypto_box_seed_keypair(alice_box_pk, alice_box_sk, alice_box_seed);
    size_t box_len = (gb.len - 4) / 4 - 3;
    uint8_t *padded = malloc(box_len - 48);
    CHECK(padded == NULL);
    CHECK(crypto_box_seal_open(padded, gb.p + 4 + 3, box_len, bob_pk, bob_sk));
    uint8_t ss[32], hk[32];
    CHECK(crypto_scalarmult(ss, alice_box_sk, bob_pk));
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    crypto_generichash_update(&hs, (const uint8_t *)"patto-hint-key-v2", 17);
    crypto_generichash_update(&hs, ss, 32);
    crypto_generichash_update(&hs, alice_box_pk, 32);
    crypto_generichash_update(&hs, bob_pk, 32);
    crypto_generichash_final(&hs, hk, 32);
    v = tu_vectors_add(vs, "key-grant");
    tu_vector_put(v, "what",
        "alice (seq 4, prev = the access epoch) grants the keys of epoch 1 of (case, documenti) "
        "and of epochs 1 and 2 of (case, sociale) to bob alone, in one grant: the scopes in "
        "name order, the header's tag sociale's epoch 2's (the last scope's newest key); slot 0 "
        "bob's, slots 1..3 random");
    tu_vector_put(v, "owner_org", owner_org);
    tu_vector_put_hex(v, "case_nonce", cnonce.b, 16);
    tu_vector_put(v, "rng",
        "randombytes_buf_deterministic(8192 bytes, seed = stream_seed), drawn in order: slot 0 "
        "ephemeral seed (32), slot 1 filler box (L) and hint (16), slot 2 the same, slot 3 the "
        "same");
    tu_vector_put_hex(v, "stream_seed", stream_seed, sizeof stream_seed);
    tu_vector_put_hex(v, "ephemeral_seed", sr.buf, 32);
    tu_vector_put_hex(v, "grant_plain_padded", padded, box_len - 48);
    tu_vector_put_u64(v, "box_len", box_len);
    tu_vector_put_hex(v, "hint_shared_secret", ss, 32);
    tu_vector_put_hex(v, "hint_key", hk, 32);
    for (int i = 0; i < PROTO_HINT_SLOTS; i++) {
        char k[16];
        snprintf(k, sizeof k, "hint_%d", i);
        tu_vector_put_hex(v, k, hdr.hints[i].b, PROTO_HINT_LEN);
    }
    put_buf(v, "body", &gb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &gh);
    uint8_t grant_id[32];
    memcpy(grant_id, hdr.id, 32);
    sodium_memzero(ss, sizeof ss);
    sodium_memzero(hk, sizeof hk);
    sodium_memzero(alice_box_sk, sizeof alice_box_sk);
    sodium_memzero(bob_sk, sizeof bob_sk);
    sodium_memzero(padded, box_len - 48);
    free(padded);

    /* A forget (erasure) delta under the epoch-2 key, seq 5. */
    proto_body fg;
    memset(&fg, 0, sizeof fg);
    fg.kind = PROTO_BODY_FORGET;
    fg.vv = cc->vv;
    fg.nvv = cc->nvv;
    fg.forget_reason = PROTO_FORGET_REQUEST;
    fg.operator_name = txt("op.rossi");
    proto_buf fh, fb;
    seal_body(alice, key2, 5, grant_id, (crdt_hlc) { 1700000300000, 0 }, &fg, 0x90, &fh, &fb, &hdr,
        nonce);
    uint8_t forget_id[32];
    memcpy(forget_id, hdr.id, 32);
    v = tu_vectors_add(vs, "forget");
    tu_vector_put(v, "what",
        "alice (seq 5, prev = the key grant) erases the scope under the epoch-2 key: reason 1, "
        "op.rossi");
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_plaintext(v, &hdr, key2, &fb, &opened);
    proto_body_fini(&opened);
    put_buf(v, "body", &fb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &fh);

    /* Access-log entry 3, seq 6 under the epoch-2 key: cpia-1's access narrowed to none, with a
     * cut of two origins (carol at seq 1, bob at seq 7, the ids of [vv] below). */
    proto_cut cut[2];
    memset(cut, 0, sizeof cut);
    memcpy(cut[0].origin, proto_identity_origin(carol), 32);
    cut[0].seq = 1;
    tu_pattern(cut[0].id, 32, 0xc0);
    memcpy(cut[1].origin, proto_identity_origin(bob), 32);
    cut[1].seq = 7;
    tu_pattern(cut[1].id, 32, 0xe0);
    CHECK(memcmp(cut[0].origin, cut[1].origin, 32) >= 0);
    proto_body an;
    memset(&an, 0, sizeof an);
    an.kind = PROTO_BODY_ACCESS_NARROW;
    an.entry = 3;
    an.narrow = (proto_narrow) { txt("cpia-1"), PROTO_ACCESS_NONE, PROTO_NARROW_REVOKED, cut, 2,
        txt("m.bianchi"), txt("mbianchi"), txt("revoca, prot. 15/2025") };
    proto_buf anh, anb;
    seal_body(alice, key2, 6, forget_id, (crdt_hlc) { 1700000400000, 0 }, &an, 0x10, &anh, &anb,
        &hdr, nonce);
    v = tu_vectors_add(vs, "access-narrow");
    tu_vector_put(v, "what",
        "alice (seq 6, prev = the forget) records access-log entry 3 of (case, sociale) under the "
        "epoch-2 key: cpia-1's access becomes none, reason 1 (revoked), with a cut of carol at "
        "seq 1 and bob at seq 7 (ids as in [vv]); m.bianchi, unix user mbianchi");
    tu_vector_put_u64(v, "seq", 6);
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_plaintext(v, &hdr, key2, &anb, &opened);
    CHECK(opened.narrow.ncut != 2 || memcmp(opened.narrow.cut, cut, sizeof cut) != 0);
    proto_body_fini(&opened);
    put_buf(v, "body", &anb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &anh);
    proto_buf_free(&anh);
    proto_buf_free(&anb);

    /* Notes to the owner, comune-1 (alice's box key): carol (prefettura-lt) records that the
     * beneficiary withdrew consent to cpia-1's access, at carol's seq 2; bob (cpia-1) drops its
     * grant of sociale, at bob's seq 8 (prevs: the ids of [vv] below). */
    proto_note *note = calloc(1, sizeof *note);
    CHECK(note == NULL);
    note->kind = PROTO_NOTE_WITHDRAWAL;
    note->case_id = cid;
    strcpy(note->owner_org, owner_org);
    strcpy(note->grantee, "cpia-1");
    strcpy(note->scopes[0], scope_name);
    strcpy(note->scopes[1], "documenti");
    note->nscopes = 2;
    strcpy(note->evidence, "modulo di revoca del consenso, prot. 41/2025");
    strcpy(note->operator_name, "l.verdi");
    strcpy(note->unix_user, "lverdi");
    proto_seal_info ninfo = { 2, { 0 }, { 1700000500000, 0 } };
    tu_pattern(ninfo.prev, 32, 0xc0);
    note_vector(vs, "note",
        "carol (prefettura-lt, seq 2, prev = carol's seq-1 id of [vv]) tells comune-1 (alice) that "
        "the beneficiary withdrew consent to cpia-1's access to sociale and documenti: note kind "
        "1, one recipient (alice, slot 0); l.verdi, unix user lverdi",
        carol, alice, 0x21, note, &ninfo, 0xc0);
    memset(note, 0, sizeof *note);
    note->kind = PROTO_NOTE_DROP;
    note->case_id = cid;
    strcpy(note->owner_org, owner_org);
    strcpy(note->grantee, "cpia-1");
    strcpy(note->scopes[0], scope_name);
    note->nscopes = 1;
    strcpy(note->operator_name, "a.neri");
    ninfo = (proto_seal_info) { 8, { 0 }, { 1700000600000, 0 } };
    tu_pattern(ninfo.prev, 32, 0xe0);
    note_vector(vs, "note-drop",
        "bob (cpia-1, seq 8, prev = bob's seq-7 id of [vv]) tells comune-1 (alice) that cpia-1 "
        "gives up its grant of sociale: note kind 2, no evidence, a.neri, no unix user",
        bob, alice, 0x21, note, &ninfo, 0xe0);
    free(note);

    ed25519_edges(vs, alice, dsigned, &dh);

    proto_buf m;
    proto_receipt r;
    memset(&r, 0, sizeof r);
    r.kind = PROTO_RECEIPT_DELIVERY;
    memcpy(r.header_id, delta_id, 32);
    r.time_ms = 1700000101000;
    CHECK(proto_receipt_sign(&r, bob, &m));
    v = tu_vectors_add(vs, "receipt");
    tu_vector_put(v, "what", "bob's delivery receipt for the delta");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    r.kind = PROTO_RECEIPT_ERASURE;
    memcpy(r.header_id, forget_id, 32);
    r.time_ms = 1700000301000;
    CHECK(proto_receipt_sign(&r, carol, &m));
    v = tu_vectors_add(vs, "receipt-erasure");
    tu_vector_put(v, "what", "carol's erasure receipt for the forget delta");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    /* Manifest: comune-1 has had two keys (alice_old, retired after seq 42, then alice). */
    proto_member_key mk[4];
    memset(mk, 0, sizeof mk);
    const proto_identity *kid[4] = { alice_old, alice, bob, carol };
    const uint64_t eff[4] = { 1690000000000, 1699000000000, 1690000000000, 1690000000000 };
    for (int i = 0; i < 4; i++) {
        memcpy(mk[i].origin, proto_identity_origin(kid[i]), 32);
        memcpy(mk[i].box_pk, proto_identity_box_pk(kid[i]), 32);
        mk[i].effective_ms = eff[i];
    }
    mk[0].retired = true;
    mk[0].last_seq = 42;
    proto_member mem[3];
    memset(mem, 0, sizeof mem);
    const char *orgs[3] = { "comune-1", "cpia-1", "prefettura-lt" };
    const char *names[3] = { "Comune di Latina", "CPIA 1 Latina", "Prefettura di Latina" };
    const char *urls[3] = { "tcp://10.0.0.1:7400", "tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400" };
    const uint8_t roles[3] = { PROTO_ROLE_COMUNE, PROTO_ROLE_CPIA, PROTO_ROLE_PREFETTURA };
    const size_t first[3] = { 0, 2, 3 }, nk[3] = { 2, 1, 1 };
    for (int i = 0; i < 3; i++) {
        mem[i].org = txt(orgs[i]);
        mem[i].name = txt(names[i]);
        mem[i].role = roles[i];
        mem[i].url = txt(urls[i]);
        mem[i].keys = &mk[first[i]];
        mem[i].nkeys = nk[i];
    }
    proto_purpose pur[2] = {
        { txt("integrazione"), txt("Percorso di integrazione") },
        { txt("lavoro"), txt("Inserimento lavorativo") },
    };
    proto_manifest man;
    memset(&man, 0, sizeof man);
    man.version = 3;
    man.signed_at_ms = 1699500000000;
    tu_pattern(man.schema_hash, 32, 0x33);
    man.max_clock_ahead_ms = PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS;
    man.counter_limit = PROTO_COUNTER_LIMIT_DEFAULT;
    man.members = mem;
    man.nmembers = 3;
    man.purposes = pur;
    man.npurposes = 2;
    CHECK(proto_manifest_sign(&man, admin, &m));
    v = tu_vectors_add(vs, "manifest");
    tu_vector_put(v, "what",
        "version 3 signed by admin: comune-1 with a retired key (alice_old, last seq 42) and its "
        "current key (alice), cpia-1 (bob), prefettura-lt (carol); two purposes");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    /* VV: alice's log up to the forget, bob's and carol's up to made-up ids. */
    proto_vv_item vi[3];
    memset(vi, 0, sizeof vi);
    const proto_identity *vid[3] = { carol, alice, bob }; /* ascending origins: 02.., 79.., ad.. */
    const uint64_t vseq[3] = { 1, 5, 7 };
    for (int i = 0; i < 3; i++) {
        memcpy(vi[i].origin, proto_identity_origin(vid[i]), 32);
        vi[i].seq = vseq[i];
        tu_pattern(vi[i].id, 32, (uint8_t)(0xc0 + 0x10 * i));
    }
    memcpy(vi[1].id, forget_id, 32);
    CHECK(
        memcmp(vi[0].origin, vi[1].origin, 32) >= 0 || memcmp(vi[1].origin, vi[2].origin, 32) >= 0);
    proto_vv_msg vm = { .entries = vi, .n = 3 };
    CHECK(proto_vv_encode(&vm, &m));
    v = tu_vectors_add(vs, "vv");
    tu_vector_put(v, "what",
        "carol seq 1, alice seq 5 (the forget's id), bob seq 7: the last contiguous header of "
        "each origin and its id; nothing skipped");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    vi[2].fork = 4; /* bob's log known forked at seq 4 */
    proto_hash_bytes skip;
    memcpy(skip.b, vi[0].origin, 32);
    vm.skip = &skip;
    vm.nskip = 1;
    CHECK(proto_vv_encode(&vm, &m));
    v = tu_vectors_add(vs, "vv_fork");
    tu_vector_put(v, "what",
        "the same, with bob's origin quarantined: the sender holds a proof of two headers at "
        "bob's seq 4 (the fork point), so bob's entry has a fourth element; and carol's "
        "origin skipped: the receiver sends none of carol's headers in its answer");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_bytes hb[5] = { { agh.p, agh.len }, { dh.p, dh.len }, { aeh.p, aeh.len },
        { gh.p, gh.len }, { fh.p, fh.len } };
    proto_headers_msg hm = { .headers = hb, .n = 5 };
    CHECK(proto_headers_encode(&hm, &m));
    v = tu_vectors_add(vs, "headers");
    tu_vector_put(v, "what",
        "alice's five headers above, in seq order: the first whole, the other four compact (each "
        "follows the one before it)");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_body_item bi[1];
    memcpy(bi[0].header_id, delta_id, 32);
    bi[0].body = (proto_bytes) { db.p, db.len };
    proto_bodies_msg bm = { bi, 1, NULL };
    CHECK(proto_bodies_encode(&bm, &m));
    v = tu_vectors_add(vs, "bodies");
    tu_vector_put(v, "what", "the delta's body under its header id");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_hash_bytes wid[2];
    memcpy(wid[0].b, delta_id, 32);
    memcpy(wid[1].b, grant_id, 32);
    proto_want_msg wm = { wid, 2, NULL };
    CHECK(proto_want_encode(&wm, &m));
    v = tu_vectors_add(vs, "want");
    tu_vector_put(v, "what", "want the bodies of the delta and the key grant");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_bytes arg = { (const uint8_t *)text, strlen(text) };
    proto_ctl_request cr = { 7, txt("case.show"), &arg, 1, NULL };
    CHECK(proto_ctl_request_encode(&cr, &m));
    v = tu_vectors_add(vs, "ctl-request");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    proto_ctl_response cs = { 7, txt("{\"ok\":true}") };
    CHECK(proto_ctl_response_encode(&cs, &m));
    v = tu_vectors_add(vs, "ctl-response");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    char emsg[128];
    snprintf(emsg, sizeof emsg, "no readable scope of case %s on this node", text);
    proto_ctl_error ce = { 7, 3, txt(emsg) };
    CHECK(proto_ctl_error_encode(&ce, &m));
    v = tu_vectors_add(vs, "ctl-error");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    /* Handshake alice -> bob, then a ping (an empty WANT) and its answer (an empty BODIES). */
    uint8_t ea[32], eb[32];
    tu_pattern(ea, 32, 0xb0);
    tu_pattern(eb, 32, 0xd0);
    tu_fixed fa = { ea, 32, 0 }, fbx = { eb, 32, 0 };
    proto_rng ra = tu_fixed_rng(&fa), rb = tu_fixed_rng(&fbx);
    proto_handshake *hi, *hr;
    proto_session *si, *sr2;
    proto_buf hello, reply, fin, f1, f2, ping, pong;
    proto_want_msg pw = { NULL, 0, NULL };
    proto_bodies_msg pb = { NULL, 0, NULL };
    CHECK(proto_want_encode(&pw, &ping));
    CHECK(proto_bodies_encode(&pb, &pong));
    CHECK(proto_hs_initiate(alice, proto_identity_origin(bob), &ra, &hi, &hello));
    CHECK(proto_hs_respond(bob, tv_member_any, NULL, hello.p, hello.len, &rb, &hr, &reply, NULL));
    CHECK(proto_hs_finish(hi, reply.p, reply.len, &fin, &si, NULL));
    CHECK(proto_hs_accept(hr, fin.p, fin.len, &sr2, NULL));
    CHECK(proto_session_seal(si, ping.p, ping.len, &f1));
    CHECK(proto_session_seal(sr2, pong.p, pong.len, &f2));
    v = tu_vectors_add(vs, "handshake");
    tu_vector_put(v, "what",
        "alice initiates to bob; then alice sends a ping (WANT with no ids), bob answers with a "
        "BODIES with no items");
    tu_vector_put_hex(v, "alice_ephemeral_seed", ea, 32);
    tu_vector_put_hex(v, "bob_ephemeral_seed", eb, 32);
    put_buf(v, "hello", &hello);
    put_buf(v, "reply", &reply);
    put_buf(v, "finish", &fin);
    put_buf(v, "ping", &ping);
    put_buf(v, "pong", &pong);
    put_buf(v, "frame_alice_to_bob", &f1);
    put_buf(v, "frame_bob_to_alice", &f2);
    proto_buf_free(&hello);
    proto_buf_free(&reply);
    proto_buf_free(&fin);
    proto_buf_free(&f1);
    proto_buf_free(&f2);
    proto_buf_free(&ping);
    proto_buf_free(&pong);
    proto_handshake_free(hi);
    proto_handshake_free(hr);
    proto_session_free(si);
    proto_session_free(sr2);

    proto_buf_free(&agh);
    proto_buf_free(&agb);
    proto_buf_free(&dh);
    proto_buf_free(&db);
    proto_buf_free(&aeh);
    proto_buf_free(&aeb);
    proto_buf_free(&fh);
    proto_buf_free(&fb);
    proto_buf_free(&gh);
    proto_buf_free(&gb);
    proto_buf_free(&dmsg);
    proto_buf_free(&state);
    crdt_scope_free(s);
    crdt_scope_free(s2);
    crdt_scope_free(base);
    crdt_scope_free(delta);
    proto_scope_key_free(key);
    proto_scope_key_free(key2);
    proto_scope_key_free(key3);
    proto_identity_free(alice);
    proto_identity_free(alice_old);
    proto_identity_free(bob);
    proto_identity_free(carol);
    proto_identity_free(admin);
}

bool tv_member_any(void *ctx, const uint8_t origin[PROTO_ORIGIN_LEN])
{
    (void)ctx;
    (void)origin;
    return true;
}
