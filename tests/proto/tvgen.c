/*
 * tvgen.c - builds every test vector of proto/vectors.txt from fixed inputs (fixed key seeds,
 * nonces and ephemeral seeds injected through proto_rng). test_vectors.c checks that the file
 * equals what this produces, entry by entry; `test-proto-vectors --write FILE` rewrites it.
 */
#include "tvgen.h"

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

static void put_buf(tu_vector *v, const char *key, proto_buf *b)
{
    tu_vector_put_hex(v, key, b->p, b->len);
}

void tv_generate(tu_vectors *vs)
{
    CHECK(proto_init());
    proto_identity *alice = tu_identity(0x01), *bob = tu_identity(0x41);
    proto_identity *carol = tu_identity(0x81), *admin = tu_identity(0xc1);
    crdt_origin oa = origin_of(alice), ob = origin_of(bob);
    tu_vector *v;

    v = tu_vectors_add(vs, "identities");
    tu_vector_put(v, "what", "Ed25519 seed -> origin; X25519 seed -> box public key");
    put_identity(v, "alice", 0x01, alice);
    put_identity(v, "bob", 0x41, bob);
    put_identity(v, "carol", 0x81, carol);
    put_identity(v, "admin", 0xc1, admin);

    proto_case_id cid;
    tu_pattern(cid.b, 16, 0x10);
    char text[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&cid, text);
    v = tu_vectors_add(vs, "case-id");
    tu_vector_put_hex(v, "case_id", cid.b, 16);
    tu_vector_put(v, "text", text);

    uint8_t keyb[32];
    tu_pattern(keyb, 32, 0x50);
    proto_scope_key *key, *key2, *key3;
    CHECK(proto_scope_key_from_bytes(&cid, scope_name, 1, keyb, &key));
    CHECK(proto_scope_key_from_bytes(&cid, scope_name, 2, keyb, &key2));
    CHECK(proto_scope_key_from_bytes(&cid, "documenti", 1, keyb, &key3));
    v = tu_vectors_add(vs, "routing-tag");
    tu_vector_put_hex(v, "scope_key", keyb, 32);
    tu_vector_put_hex(v, "case_id", cid.b, 16);
    tu_vector_put(v, "scope", scope_name);
    tu_vector_put_u64(v, "epoch", 1);
    tu_vector_put_hex(v, "tag", proto_scope_key_tag(key), 32);
    tu_vector_put_hex(v, "tag_epoch_2", proto_scope_key_tag(key2), 32);
    tu_vector_put_hex(v, "tag_scope_documenti", proto_scope_key_tag(key3), 32);

    /* A scope state: a register with two concurrent values, a set, a counter, a timeline. */
    crdt_scope *s, *s2, *base, *delta;
    CHECK(crdt_scope_new(NULL, &s));
    CHECK(crdt_scope_new(NULL, &s2));
    crdt_hlc h1 = { 1700000000000, 0 }, h2 = { 1700000000000, 1 }, h3 = { 1700000050000, 0 };
    CHECK(crdt_register_set(s, NULL, &oa, &h1, "nome", "Amina", 5));
    CHECK(crdt_set_add(s, NULL, &oa, "lingue", "ar", 2));
    CHECK(crdt_set_add(s, NULL, &oa, "lingue", "fr", 2));
    CHECK(crdt_register_set(s2, NULL, &ob, &h2, "nome", "Aminah", 6));
    CHECK(crdt_counter_add(s2, NULL, &ob, "ore_frequenza", 12));
    CHECK(crdt_timeline_add(s2, NULL, &ob, &h3, "servizi", "{\"tipo\":\"colloquio\"}", 20, NULL));
    CHECK(crdt_scope_join(s, s2));
    proto_buf state;
    uint8_t digest[32];
    CHECK(proto_scope_encode(s, &state));
    CHECK(proto_scope_digest(s, digest));
    v = tu_vectors_add(vs, "scope-state");
    tu_vector_put(v, "what",
        "alice: nome=Amina, lingue+=ar, lingue+=fr; bob concurrently: nome=Aminah, "
        "ore_frequenza+=12, servizi+={\"tipo\":\"colloquio\"}; joined");
    put_buf(v, "msg", &state);
    tu_vector_put_hex(v, "digest", digest, 32);

    /* A delta: alice sets one register on top of the state. */
    CHECK(crdt_scope_clone(s, &base));
    CHECK(crdt_scope_new(NULL, &delta));
    crdt_hlc hd = { 1700000100000, 3 };
    CHECK(crdt_register_set(base, delta, &oa, &hd, "telefono", "+39 333 0000000", 15));
    proto_buf dmsg;
    CHECK(proto_scope_encode(delta, &dmsg));
    const crdt_cc *cc = crdt_scope_cc(base);
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = cc->vv;
    plain.nvv = cc->nvv;
    plain.delta = (proto_bytes) { dmsg.p, dmsg.len };
    proto_seal_info info = { 1, { 0 }, hd };
    uint8_t nonce[24];
    tu_pattern(nonce, 24, 0x70);
    tu_fixed fx = { nonce, 24, 0 };
    proto_rng rng = tu_fixed_rng(&fx);
    proto_buf dh, db;
    CHECK(proto_delta_seal(alice, key, &info, &plain, &rng, &dh, &db));
    proto_header hdr;
    CHECK(proto_header_decode(dh.p, dh.len, NULL, &hdr, NULL));
    proto_body opened;
    CHECK(proto_body_open(&hdr, key, db.p, db.len, NULL, &opened, NULL));
    v = tu_vectors_add(vs, "delta");
    tu_vector_put(v, "what", "alice (seq 1) sets telefono under the routing-tag key");
    tu_vector_put_hex(v, "scope_key", keyb, 32);
    tu_vector_put_u64(v, "seq", 1);
    tu_vector_put_u64(v, "hlc_wall", hd.wall);
    tu_vector_put_u64(v, "hlc_logical", hd.logical);
    put_buf(v, "delta_scope", &dmsg);
    tu_vector_put_hex(v, "nonce", nonce, 24);
    tu_vector_put_hex(v, "plaintext_padded", opened.plain_, opened.plain_len_);
    put_buf(v, "body", &db);
    tu_vector_put_hex(v, "body_hash", hdr.body_hash, 32);
    tu_vector_put_hex(v, "header_signed", hdr.signed_bytes.p, hdr.signed_bytes.len);
    tu_vector_put_hex(v, "signature", hdr.sig, 64);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &dh);
    uint8_t delta_id[32];
    memcpy(delta_id, hdr.id, 32);
    proto_body_fini(&opened);
    proto_header_fini(&hdr);

    /* A forget (erasure) delta, seq 2. */
    proto_body fg;
    memset(&fg, 0, sizeof fg);
    fg.kind = PROTO_BODY_FORGET;
    fg.vv = cc->vv;
    fg.nvv = cc->nvv;
    fg.forget_reason = PROTO_FORGET_REQUEST;
    fg.operator_name = (proto_bytes) { (const uint8_t *)"op.rossi", 8 };
    proto_seal_info info2 = { 2, { 0 }, { 1700000200000, 0 } };
    memcpy(info2.prev, delta_id, 32);
    tu_pattern(nonce, 24, 0x90);
    fx = (tu_fixed) { nonce, 24, 0 };
    proto_buf fh, fb;
    CHECK(proto_delta_seal(alice, key, &info2, &fg, &rng, &fh, &fb));
    CHECK(proto_header_decode(fh.p, fh.len, NULL, &hdr, NULL));
    uint8_t forget_id[32];
    memcpy(forget_id, hdr.id, 32);
    v = tu_vectors_add(vs, "forget");
    tu_vector_put(v, "what", "alice (seq 2, prev = delta) erases the scope: reason 1, op.rossi");
    tu_vector_put_hex(v, "nonce", nonce, 24);
    put_buf(v, "body", &fb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &fh);
    proto_header_fini(&hdr);

    /* A key grant to bob and carol, seq 3; ephemeral seeds in recipient (sorted) order. */
    proto_recipient rc[2];
    memcpy(rc[0].origin, proto_identity_origin(bob), 32);
    memcpy(rc[0].box_pk, proto_identity_box_pk(bob), 32);
    memcpy(rc[1].origin, proto_identity_origin(carol), 32);
    memcpy(rc[1].box_pk, proto_identity_box_pk(carol), 32);
    proto_seal_info info3 = { 3, { 0 }, { 1700000300000, 0 } };
    memcpy(info3.prev, forget_id, 32);
    uint8_t eph[64];
    tu_pattern(eph, 64, 0xa0);
    fx = (tu_fixed) { eph, 64, 0 };
    proto_buf gh, gb;
    CHECK(proto_key_grant_seal(alice, key, &info3, rc, 2, &rng, &gh, &gb));
    CHECK(proto_header_decode(gh.p, gh.len, NULL, &hdr, NULL));
    proto_scope_key *got;
    CHECK(proto_key_grant_open(&hdr, bob, gb.p, gb.len, NULL, &got, NULL));
    proto_scope_key_free(got);
    uint8_t grant_id[32];
    memcpy(grant_id, hdr.id, 32);
    v = tu_vectors_add(vs, "key-grant");
    tu_vector_put(v, "what", "alice (seq 3, prev = forget) seals the scope key to bob and carol");
    tu_vector_put_hex(v, "ephemeral_seeds", eph, 64);
    put_buf(v, "body", &gb);
    tu_vector_put_hex(v, "header_id", hdr.id, 32);
    put_buf(v, "header", &gh);
    proto_header_fini(&hdr);

    proto_buf m;
    proto_access acc = { { (const uint8_t *)"cpia-1", 6 }, PROTO_ACCESS_READ,
        { (const uint8_t *)"integrazione", 12 }, PROTO_BASIS_PUBLIC_TASK, UINT64_C(1735689600000),
        { (const uint8_t *)"m.bianchi", 9 }, { (const uint8_t *)"verbale 12/2024", 15 } };
    CHECK(proto_access_encode(&acc, &m));
    v = tu_vectors_add(vs, "access");
    tu_vector_put(v, "what", "register value of field @access/cpia-1: read, public task");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_receipt r;
    memset(&r, 0, sizeof r);
    r.kind = PROTO_RECEIPT_DELIVERY;
    memcpy(r.header_id, delta_id, 32);
    r.time_ms = 1700000001000;
    CHECK(proto_receipt_sign(&r, bob, &m));
    v = tu_vectors_add(vs, "receipt");
    tu_vector_put(v, "what", "bob's delivery receipt for the delta");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    r.kind = PROTO_RECEIPT_ERASURE;
    memcpy(r.header_id, forget_id, 32);
    r.time_ms = 1700000201000;
    CHECK(proto_receipt_sign(&r, carol, &m));
    v = tu_vectors_add(vs, "receipt-erasure");
    tu_vector_put(v, "what", "carol's erasure receipt for the forget delta");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_member mem[3];
    memset(mem, 0, sizeof mem);
    const char *orgs[3] = { "comune-latina", "cpia-1", "prefettura-lt" };
    const char *names[3] = { "Comune di Latina", "CPIA 1 Latina", "Prefettura di Latina" };
    const char *urls[3] = { "tcp://10.0.0.1:7400", "tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400" };
    const uint8_t roles[3] = { PROTO_ROLE_COMUNE, PROTO_ROLE_CPIA, PROTO_ROLE_PREFETTURA };
    const proto_identity *ids[3] = { alice, bob, carol };
    for (int i = 0; i < 3; i++) {
        mem[i].org = (proto_bytes) { (const uint8_t *)orgs[i], strlen(orgs[i]) };
        mem[i].name = (proto_bytes) { (const uint8_t *)names[i], strlen(names[i]) };
        mem[i].role = roles[i];
        memcpy(mem[i].origin, proto_identity_origin(ids[i]), 32);
        memcpy(mem[i].box_pk, proto_identity_box_pk(ids[i]), 32);
        mem[i].url = (proto_bytes) { (const uint8_t *)urls[i], strlen(urls[i]) };
    }
    proto_purpose pur[2] = {
        { { (const uint8_t *)"integrazione", 12 },
            { (const uint8_t *)"Percorso di integrazione", 24 } },
        { { (const uint8_t *)"lavoro", 6 }, { (const uint8_t *)"Inserimento lavorativo", 22 } },
    };
    proto_manifest man;
    memset(&man, 0, sizeof man);
    man.version = 3;
    tu_pattern(man.schema_hash, 32, 0x33);
    man.members = mem;
    man.nmembers = 3;
    man.purposes = pur;
    man.npurposes = 2;
    CHECK(proto_manifest_sign(&man, admin, &m));
    v = tu_vectors_add(vs, "manifest");
    tu_vector_put(v, "what", "version 3, members alice/bob/carol, two purposes, signed by admin");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_vv_msg vm = { cc->vv, cc->nvv, NULL };
    CHECK(proto_vv_encode(&vm, &m));
    v = tu_vectors_add(vs, "vv");
    tu_vector_put(v, "what", "the version vector of the delta's base scope");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    proto_bytes hb[3] = { { dh.p, dh.len }, { fh.p, fh.len }, { gh.p, gh.len } };
    proto_headers_msg hm = { hb, 3, NULL };
    CHECK(proto_headers_encode(&hm, &m));
    v = tu_vectors_add(vs, "headers");
    tu_vector_put(v, "what", "the three headers above");
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
    proto_ctl_request cr = { 7, { (const uint8_t *)"case.show", 9 }, &arg, 1, NULL };
    CHECK(proto_ctl_request_encode(&cr, &m));
    v = tu_vectors_add(vs, "ctl-request");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    proto_ctl_response cs = { 7, { (const uint8_t *)"{\"ok\":true}", 11 } };
    CHECK(proto_ctl_response_encode(&cs, &m));
    v = tu_vectors_add(vs, "ctl-response");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);
    char emsg[128];
    snprintf(emsg, sizeof emsg, "no readable scope of case %s on this node", text);
    proto_ctl_error ce = { 7, 3, { (const uint8_t *)emsg, strlen(emsg) } };
    CHECK(proto_ctl_error_encode(&ce, &m));
    v = tu_vectors_add(vs, "ctl-error");
    put_buf(v, "msg", &m);
    proto_buf_free(&m);

    /* Handshake alice -> bob and one frame each way. */
    uint8_t ea[32], eb[32];
    tu_pattern(ea, 32, 0xb0);
    tu_pattern(eb, 32, 0xd0);
    tu_fixed fa = { ea, 32, 0 }, fbx = { eb, 32, 0 };
    proto_rng ra = tu_fixed_rng(&fa), rb = tu_fixed_rng(&fbx);
    proto_handshake *hi, *hr;
    proto_session *si, *sr;
    proto_buf hello, reply, fin, f1, f2;
    CHECK(proto_hs_initiate(alice, proto_identity_origin(bob), &ra, &hi, &hello));
    CHECK(proto_hs_respond(bob, tv_member_any, NULL, hello.p, hello.len, &rb, &hr, &reply, NULL));
    CHECK(proto_hs_finish(hi, reply.p, reply.len, &fin, &si, NULL));
    CHECK(proto_hs_accept(hr, fin.p, fin.len, &sr, NULL));
    CHECK(proto_session_seal(si, (const uint8_t *)"ping", 4, &f1));
    CHECK(proto_session_seal(sr, (const uint8_t *)"pong", 4, &f2));
    v = tu_vectors_add(vs, "handshake");
    tu_vector_put(v, "what", "alice initiates to bob; then alice sends ping, bob sends pong");
    tu_vector_put_hex(v, "alice_ephemeral_seed", ea, 32);
    tu_vector_put_hex(v, "bob_ephemeral_seed", eb, 32);
    put_buf(v, "hello", &hello);
    put_buf(v, "reply", &reply);
    put_buf(v, "finish", &fin);
    put_buf(v, "frame_alice_to_bob", &f1);
    put_buf(v, "frame_bob_to_alice", &f2);
    proto_buf_free(&hello);
    proto_buf_free(&reply);
    proto_buf_free(&fin);
    proto_buf_free(&f1);
    proto_buf_free(&f2);
    proto_handshake_free(hi);
    proto_handshake_free(hr);
    proto_session_free(si);
    proto_session_free(sr);

    proto_buf_free(&dh);
    proto_buf_free(&db);
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
