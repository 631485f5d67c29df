/*
 * proto.envelope - signed headers, encrypted bodies (deltas, access-log entries, forgets) and
 * key grants: round trips, tampering with every bit, bodies moved under other headers, wrong
 * keys, what headers reveal, padding, hint slots, the Ed25519 edge cases, and an independent
 * check of PROTOCOL.md's construction with libsodium directly against vectors.txt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tdecode.h"
#include "tutil.h"

typedef struct fx {
    proto_identity *alice, *bob, *carol, *dave, *erin;
    proto_case_id cid;
    proto_case_nonce nonce;
    proto_scope_key *key;
    crdt_scope *state, *delta;
    proto_buf dmsg; /* the encoded delta */
    proto_buf hdr, body;
    proto_header h;
} fx;

static const char *const secrets[]
    = { "sociale", "telefono", "+39 333 1234567", "vulnerabilita", "V07", "comune-1" };

static crdt_origin origin_of(const proto_identity *id)
{
    crdt_origin o;
    memcpy(o.b, proto_identity_origin(id), 32);
    return o;
}

static proto_bytes txt(const char *s)
{
    return (proto_bytes) { (const uint8_t *)s, strlen(s) };
}

static void make_delta_by(fx *f, const proto_identity *author, uint64_t seq, const uint8_t prev[32],
    proto_buf *hdr, proto_buf *body);

static void make_delta(fx *f, uint64_t seq, const uint8_t prev[32], proto_buf *hdr, proto_buf *body)
{
    make_delta_by(f, f->alice, seq, prev, hdr, body);
}

static void make_delta_by(fx *f, const proto_identity *author, uint64_t seq, const uint8_t prev[32],
    proto_buf *hdr, proto_buf *body)
{
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    const crdt_cc *cc = crdt_scope_cc(f->state);
    plain.vv = cc->vv;
    plain.nvv = cc->nvv;
    plain.access_seen = 3;
    memset(plain.access_origin, 0xab, 32);
    plain.access_at = 7;
    plain.delta = (proto_bytes) { f->dmsg.p, f->dmsg.len };
    proto_seal_info info = { seq, { 0 }, { 1700000000000 + seq, 0 } };
    if (prev != NULL)
        memcpy(info.prev, prev, 32);
    assert_int_equal(
        proto_delta_seal(author, f->key, &info, &plain, tu_rng(), hdr, body), PROTO_OK);
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
    f->erin = tu_identity(0x91);
    if (proto_case_id_new("comune-1", 8, tu_rng(), &f->cid, &f->nonce) != PROTO_OK
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
    proto_identity_free(f->erin);
    tdec_cleanup();
    free(f);
    return 0;
}

/* Seal plain under key as alice at seq 1, decode and open it again. */
static proto_err seal_open(fx *f, const proto_scope_key *key, const proto_body *plain,
    proto_body *out, proto_header *h, proto_buf *hb, proto_buf *bb)
{
    proto_seal_info info = { 1, { 0 }, { 1700000000009, 1 } };
    proto_err err = proto_delta_seal(f->alice, key, &info, plain, tu_rng(), hb, bb);
    if (err != PROTO_OK)
        return err;
    assert_int_equal(proto_header_decode(hb->p, hb->len, NULL, h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(h), PROTO_OK);
    return proto_body_open(h, key, bb->p, bb->len, NULL, out, NULL);
}

static void delta_round_trip(void **state)
{
    fx *f = *state;
    assert_int_equal(proto_header_verify(&f->h), PROTO_OK);
    assert_int_equal(f->h.kind, PROTO_HDR_DELTA);
    assert_int_equal(f->h.seq, 1);
    assert_int_equal(f->h.nhints, 0);
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
    assert_int_equal(b.access_seen, 3);
    assert_int_equal(b.access_at, 7);
    uint8_t ab[32];
    memset(ab, 0xab, 32);
    assert_memory_equal(b.access_origin, ab, 32);
    const crdt_cc *cc = crdt_scope_cc(f->state);
    assert_int_equal(b.nvv, cc->nvv);
    assert_memory_equal(b.vv, cc->vv, cc->nvv * sizeof *cc->vv);
    crdt_scope *got;
    assert_int_equal(proto_scope_decode(b.delta.p, b.delta.len, NULL, NULL, &got, &d), PROTO_OK);
    assert_true(crdt_scope_equal(got, f->delta));
    crdt_scope_free(got);
    proto_body_fini(&b);
    /* No entry seen: access_seen 0 travels as [] and opens as 0 with no place. */
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = cc->vv;
    plain.nvv = cc->nvv;
    plain.delta = (proto_bytes) { f->dmsg.p, f->dmsg.len };
    proto_header h;
    proto_buf hb, bb;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.access_seen, 0);
    assert_int_equal(b.access_at, 0);
    proto_body_fini(&b);
    proto_header_fini(&h);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* An entry seen names the header that carried it: seq 0 is no place. */
    plain.access_seen = 2;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_EVALUE);
}

static void forget_round_trip(void **state)
{
    fx *f = *state;
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_FORGET;
    plain.forget_reason = PROTO_FORGET_RETENTION;
    plain.operator_name = txt("op.verdi");
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

static proto_body grant_entry(void)
{
    proto_body p;
    memset(&p, 0, sizeof p);
    p.kind = PROTO_BODY_ACCESS_GRANT;
    p.entry = 4;
    p.grant = (proto_access) { txt("coop-aurora"), PROTO_ACCESS_WRITE, txt("lavoro"),
        PROTO_BASIS_EXPLICIT_CONSENT, txt("Reg. UE 2016/679, art. 9.2.a"), UINT64_C(1767225599999),
        txt("Giulia Neri"), txt("gneri"), txt("consenso firmato, prot. 88/2025") };
    return p;
}

static void access_grant_round_trip(void **state)
{
    fx *f = *state;
    proto_body plain = grant_entry(), b;
    proto_header h;
    proto_buf hb, bb;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_ACCESS_GRANT);
    assert_int_equal(b.entry, 4);
    assert_int_equal(b.epoch, 1);
    const proto_access *a = &b.grant, *w = &plain.grant;
    assert_int_equal(a->access, PROTO_ACCESS_WRITE);
    assert_int_equal(a->basis, PROTO_BASIS_EXPLICIT_CONSENT);
    assert_int_equal(a->expiry_ms, w->expiry_ms);
    const proto_bytes got[]
        = { a->grantee, a->purpose, a->provision, a->operator_name, a->unix_user, a->evidence };
    const proto_bytes want[]
        = { w->grantee, w->purpose, w->provision, w->operator_name, w->unix_user, w->evidence };
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(got[i].len, want[i].len);
        assert_memory_equal(got[i].p, want[i].p, want[i].len);
    }
    assert_int_equal(b.nvv, 0);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* the optional fields may be empty */
    plain.grant.provision = plain.grant.unix_user = plain.grant.evidence = txt("");
    plain.grant.expiry_ms = 0;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.grant.provision.len + b.grant.unix_user.len + b.grant.evidence.len, 0);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

static void access_epoch_round_trip(void **state)
{
    fx *f = *state;
    proto_scope_key *k2;
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 2, tu_rng(), &k2), PROTO_OK);
    proto_body plain, b;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_ACCESS_EPOCH;
    plain.entry = 5;
    plain.new_epoch = 2;
    proto_epoch_key_hash(k2, plain.key_hash);
    proto_header h;
    proto_buf hb, bb;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_ACCESS_EPOCH);
    assert_int_equal(b.entry, 5);
    assert_int_equal(b.epoch, 1);
    assert_int_equal(b.new_epoch, 2);
    assert_memory_equal(b.key_hash, plain.key_hash, 32);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* the hash names the key: another key of the same epoch has another hash */
    proto_scope_key *k2b;
    uint8_t other[32];
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 2, tu_rng(), &k2b), PROTO_OK);
    proto_epoch_key_hash(k2b, other);
    assert_memory_not_equal(other, plain.key_hash, 32);
    /* and says nothing of the tag */
    assert_memory_not_equal(proto_scope_key_tag(k2), plain.key_hash, 32);
    proto_scope_key_free(k2b);
    /* an epoch announced must be later than the key's own */
    plain.new_epoch = 1;
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_EVALUE);
    assert_int_equal(seal_open(f, k2, &plain, &b, &h, &hb, &bb), PROTO_EVALUE);
    plain.new_epoch = 3;
    plain.entry = 0;
    assert_int_equal(seal_open(f, k2, &plain, &b, &h, &hb, &bb), PROTO_EVALUE);
    proto_scope_key_free(k2);
}

/* A narrowing entry: entry 6, coop-aurora's access down to read, with a cut of n origins from
 * cut[] (sorted by the caller). */
static proto_body narrow_entry(const proto_cut *cut, size_t n)
{
    proto_body p;
    memset(&p, 0, sizeof p);
    p.kind = PROTO_BODY_ACCESS_NARROW;
    p.entry = 6;
    p.narrow = (proto_narrow) { txt("coop-aurora"), PROTO_ACCESS_READ, PROTO_NARROW_WITHDRAWN, cut,
        n, txt("Giulia Neri"), txt("gneri"), txt("revoca del consenso, prot. 91/2025") };
    return p;
}

/* Two cut items, bob's and carol's origins in ascending order. */
static void two_cuts(const fx *f, proto_cut cut[2])
{
    memset(cut, 0, 2 * sizeof *cut);
    const uint8_t *ob = proto_identity_origin(f->bob), *oc = proto_identity_origin(f->carol);
    bool bob_first = memcmp(ob, oc, 32) < 0;
    memcpy(cut[0].origin, bob_first ? ob : oc, 32);
    memcpy(cut[1].origin, bob_first ? oc : ob, 32);
    cut[0].seq = 12;
    cut[1].seq = UINT64_C(1) << 40;
    memset(cut[0].id, 0x5c, 32);
    memset(cut[1].id, 0xc5, 32);
}

static void assert_bytes_equal(proto_bytes got, proto_bytes want)
{
    assert_int_equal(got.len, want.len);
    if (want.len > 0)
        assert_memory_equal(got.p, want.p, want.len);
}

static void access_narrow_round_trip(void **state)
{
    fx *f = *state;
    proto_cut cut[PROTO_CUT_MAX];
    two_cuts(f, cut);
    proto_body plain = narrow_entry(cut, 2), b;
    proto_header h;
    proto_buf hb, bb;
    /* two cut items, access read, every field set */
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_ACCESS_NARROW);
    assert_memory_equal(b.case_id.b, f->cid.b, 16);
    assert_string_equal(b.scope, "sociale");
    assert_int_equal(b.epoch, 1);
    assert_int_equal(b.entry, 6);
    assert_int_equal(b.nvv, 0);
    const proto_narrow *n = &b.narrow, *w = &plain.narrow;
    assert_int_equal(n->access, PROTO_ACCESS_READ);
    assert_int_equal(n->reason, PROTO_NARROW_WITHDRAWN);
    assert_bytes_equal(n->grantee, w->grantee);
    assert_bytes_equal(n->operator_name, w->operator_name);
    assert_bytes_equal(n->unix_user, w->unix_user);
    assert_bytes_equal(n->note, w->note);
    assert_int_equal(n->ncut, 2);
    assert_non_null(n->cut);
    for (size_t i = 0; i < 2; i++) {
        assert_memory_equal(n->cut[i].origin, cut[i].origin, 32);
        assert_int_equal(n->cut[i].seq, cut[i].seq);
        assert_memory_equal(n->cut[i].id, cut[i].id, 32);
    }
    assert_ptr_not_equal(n->cut, cut); /* the decoded body's own array */
    proto_body_fini(&b);
    assert_null(b.narrow.cut);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* no cut, access none, every reason, the optional fields empty */
    for (uint8_t r = PROTO_NARROW_REVOKED; r <= PROTO_NARROW_EXPIRED; r++) {
        plain = narrow_entry(NULL, 0);
        plain.narrow.access = PROTO_ACCESS_NONE;
        plain.narrow.reason = r;
        plain.narrow.unix_user = plain.narrow.note = txt("");
        assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
        assert_int_equal(b.kind, PROTO_BODY_ACCESS_NARROW);
        assert_int_equal(b.entry, 6);
        assert_int_equal(b.narrow.access, PROTO_ACCESS_NONE);
        assert_int_equal(b.narrow.reason, r);
        assert_int_equal(b.narrow.ncut, 0);
        assert_int_equal(b.narrow.unix_user.len + b.narrow.note.len, 0);
        assert_bytes_equal(b.narrow.grantee, plain.narrow.grantee);
        assert_bytes_equal(b.narrow.operator_name, plain.narrow.operator_name);
        proto_body_fini(&b);
        proto_buf_free(&hb);
        proto_buf_free(&bb);
    }
    /* the largest cut: PROTO_CUT_MAX origins */
    for (size_t i = 0; i < PROTO_CUT_MAX; i++) {
        memset(&cut[i], 0, sizeof cut[i]);
        memset(cut[i].origin, (int)(0x10 + i), 32);
        cut[i].seq = i + 1;
        memset(cut[i].id, (int)(0x80 + i), 32);
    }
    plain = narrow_entry(cut, PROTO_CUT_MAX);
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(b.narrow.ncut, PROTO_CUT_MAX);
    assert_memory_equal(b.narrow.cut, cut, sizeof cut);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* a cut of some items and no array is a caller's bug */
    plain = narrow_entry(NULL, 1);
    assert_int_equal(seal_open(f, f->key, &plain, &b, &h, &hb, &bb), PROTO_EINVAL);
}

/* The refused narrowings: each case as a proto_narrow variant of narrow_entry, the field it
 * breaks (position in ACCESS_NARROW), and the errors of sealing and of decoding. */
enum { NARROW_CASES = 15 };
static int narrow_variant(const fx *f, int c, proto_body *p, proto_cut cut[PROTO_CUT_MAX + 1],
    proto_err *seal_err, proto_err *decode_err)
{
    two_cuts(f, cut);
    *p = narrow_entry(cut, 2);
    *seal_err = *decode_err = PROTO_EVALUE;
    switch (c) {
    case 0:
        p->narrow.access = PROTO_ACCESS_WRITE;
        return 4;
    case 1:
        p->narrow.access = 3;
        return 4;
    case 2:
        p->narrow.reason = 0;
        return 5;
    case 3:
        p->narrow.reason = 5;
        return 5;
    case 4:
        p->entry = 0;
        return 2;
    case 5: { /* unsorted */
        proto_cut t = cut[0];
        cut[0] = cut[1];
        cut[1] = t;
        *decode_err = PROTO_ENONCANON;
        return 6;
    }
    case 6: /* one origin twice */
        memcpy(cut[1].origin, cut[0].origin, 32);
        *decode_err = PROTO_ENONCANON;
        return 6;
    case 7:
        cut[1].seq = 0;
        return 6;
    case 8: /* PROTO_CUT_MAX + 1 items, sorted */
        for (size_t i = 0; i <= PROTO_CUT_MAX; i++) {
            memset(&cut[i], 0, sizeof cut[i]);
            memset(cut[i].origin, (int)(0x10 + i), 32);
            cut[i].seq = 1;
        }
        p->narrow.ncut = PROTO_CUT_MAX + 1;
        *seal_err = *decode_err = PROTO_ELIMIT;
        return 6;
    case 9:
        p->narrow.grantee = txt("Coop Aurora");
        return 3;
    case 10:
        p->narrow.grantee = txt("");
        return 3;
    case 11:
        p->narrow.operator_name = txt("   ");
        return 7;
    case 12:
        p->narrow.operator_name = txt("");
        return 7;
    case 13:
        p->narrow.unix_user = txt("mario rossi");
        return 8;
    default:
        p->narrow.note = txt("a\tb");
        return 9;
    }
}

/* Every rule of a narrowing entry is checked on sealing. */
static void access_narrow_values_checked(void **state)
{
    fx *f = *state;
    proto_body p, b;
    proto_header h;
    proto_buf hb, bb;
    proto_cut cut[PROTO_CUT_MAX + 1];
    for (int c = 0; c < NARROW_CASES; c++) {
        proto_err want, unused;
        (void)narrow_variant(f, c, &p, cut, &want, &unused);
        proto_err err = seal_open(f, f->key, &p, &b, &h, &hb, &bb);
        if (err != want)
            fail_msg("narrowing case %d sealed with %s, want %s", c, proto_strerror(err),
                proto_strerror(want));
        assert_null(hb.p);
        assert_null(bb.p);
    }
}

static void tb_bytes(tb *b, proto_bytes s)
{
    uint8_t head[3];
    size_t hl;
    if (s.len < 32) {
        head[0] = (uint8_t)(0xa0 | s.len);
        hl = 1;
    } else if (s.len < 256) {
        head[0] = 0xd9;
        head[1] = (uint8_t)s.len;
        hl = 2;
    } else {
        head[0] = 0xda;
        head[1] = (uint8_t)(s.len >> 8);
        head[2] = (uint8_t)s.len;
        hl = 3;
    }
    tb_raw(b, head, hl);
    tb_raw(b, s.p, s.len);
}

/* An ACCESS_NARROW plaintext as PROTOCOL.md lays it out, whatever its values;
 * off[i] is the offset of field i. */
static void narrow_plain(const proto_body *p, tb *b, size_t off[10])
{
    const proto_narrow *n = &p->narrow;
    tb_array(b, 10);
    off[0] = b->len;
    tb_uint(b, PROTO_VERSION);
    off[1] = b->len;
    tb_uint(b, PROTO_K_ACCESS_NARROW);
    off[2] = b->len;
    tb_uint(b, p->entry);
    off[3] = b->len;
    tb_bytes(b, n->grantee);
    off[4] = b->len;
    tb_uint(b, n->access);
    off[5] = b->len;
    tb_uint(b, n->reason);
    off[6] = b->len;
    tb_array(b, (uint32_t)n->ncut);
    for (size_t i = 0; i < n->ncut; i++) {
        tb_array(b, 3);
        tb_bin(b, n->cut[i].origin, 32);
        tb_uint(b, n->cut[i].seq);
        tb_bin(b, n->cut[i].id, 32);
    }
    off[7] = b->len;
    tb_bytes(b, n->operator_name);
    off[8] = b->len;
    tb_bytes(b, n->unix_user);
    off[9] = b->len;
    tb_bytes(b, n->note);
}

/* Encrypt plaintext m under f->key and a header of alice's, per PROTOCOL.md with libsodium
 * alone, with the associated data of (case, scope, epoch), and open it with proto_body_open. */
static proto_err open_spec_as(const fx *f, const uint8_t *m, size_t n, const proto_case_id *cid,
    const char *scope, uint64_t epoch, proto_body *out, proto_diag *diag)
{
    size_t padded_max = (n / PROTO_PAD_BLOCK + 1) * PROTO_PAD_BLOCK, padded;
    uint8_t *buf = malloc(padded_max), *body = malloc(24 + padded_max + 16);
    assert_non_null(buf);
    assert_non_null(body);
    memcpy(buf, m, n);
    assert_int_equal(sodium_pad(&padded, buf, n, PROTO_PAD_BLOCK, padded_max), 0);
    proto_header h;
    memset(&h, 0, sizeof h);
    h.kind = PROTO_HDR_DELTA;
    memcpy(h.origin, proto_identity_origin(f->alice), 32);
    h.seq = 3;
    memset(h.prev, 0x77, 32);
    h.hlc.wall = 1700000000000;
    memcpy(h.tag, proto_scope_key_tag(f->key), 32);
    uint8_t ad[TDEC_AD_MAX], k[32], bodykey[32];
    size_t adlen = tdec_spec_ad(&h, cid, scope, epoch, ad);
    proto_scope_key_export(f->key, k);
    crypto_kdf_derive_from_key(bodykey, 32, 2, "pattoscp", k);
    randombytes_buf(body, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        body + 24, NULL, buf, padded, ad, adlen, NULL, body, bodykey);
    h.body_len = 24 + padded + 16;
    crypto_generichash(h.body_hash, 32, body, h.body_len, NULL, 0);
    proto_err err = proto_body_open(&h, f->key, body, h.body_len, NULL, out, diag);
    sodium_memzero(k, sizeof k);
    sodium_memzero(bodykey, sizeof bodykey);
    free(buf);
    free(body);
    return err;
}

/* The same with the key's own case, scope and epoch (f->key is of (f->cid, sociale, 1)). */
static proto_err open_spec(
    const fx *f, const uint8_t *m, size_t n, proto_body *out, proto_diag *diag)
{
    return open_spec_as(f, m, n, &f->cid, "sociale", 1, out, diag);
}

/* Every rule of a narrowing entry is checked on decoding too, at the offending field: the
 * plaintexts made by hand, encrypted under the right key and header. */
static void access_narrow_decode_checked(void **state)
{
    fx *f = *state;
    proto_body p, b;
    proto_diag d;
    size_t off[10];
    proto_cut cut[PROTO_CUT_MAX + 1];
    /* the hand-made form of a good narrowing is what proto_delta_seal writes */
    two_cuts(f, cut);
    p = narrow_entry(cut, 2);
    tb m = { 0 };
    narrow_plain(&p, &m, off);
    assert_int_equal(open_spec(f, m.p, m.len, &b, &d), PROTO_OK);
    assert_int_equal(b.kind, PROTO_BODY_ACCESS_NARROW);
    assert_int_equal(b.narrow.ncut, 2);
    assert_memory_equal(b.narrow.cut, cut, 2 * sizeof *cut);
    proto_body again;
    proto_header h;
    proto_buf hb, bb;
    assert_int_equal(seal_open(f, f->key, &b, &again, &h, &hb, &bb), PROTO_OK);
    assert_int_equal(again.plain_len_, b.plain_len_);
    assert_memory_equal(again.plain_, b.plain_, b.plain_len_);
    proto_body_fini(&again);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    tb_free(&m);
    for (int c = 0; c < NARROW_CASES; c++) {
        proto_err unused, want;
        int field = narrow_variant(f, c, &p, cut, &unused, &want);
        m = (tb) { 0 };
        narrow_plain(&p, &m, off);
        d = (proto_diag) { 0, NULL };
        proto_err err = open_spec(f, m.p, m.len, &b, &d);
        if (err != want)
            fail_msg("narrowing case %d decoded with %s, want %s", c, proto_strerror(err),
                proto_strerror(want));
        assert_non_null(d.reason);
        /* the offending field, or for the cut's order and seqs an item inside it */
        if (field == 6 && (c == 5 || c == 6 || c == 7))
            assert_true(d.offset > off[6] && d.offset < off[7]);
        else if (d.offset != off[field])
            fail_msg(
                "narrowing case %d: offset %zu (%s), want %zu", c, d.offset, d.reason, off[field]);
        tb_free(&m);
    }
    /* a cut item that is not [origin, seq, id] */
    m = (tb) { 0 };
    tb_array(&m, 10);
    tb_uint(&m, PROTO_VERSION);
    tb_uint(&m, PROTO_K_ACCESS_NARROW);
    tb_uint(&m, 6);
    tb_str(&m, "coop-aurora");
    tb_uint(&m, 0);
    tb_uint(&m, 1);
    tb_array(&m, 1);
    tb_array(&m, 2);
    tb_bin(&m, cut[0].origin, 32);
    tb_uint(&m, 1);
    tb_str(&m, "op");
    tb_str(&m, "");
    tb_str(&m, "");
    assert_int_equal(open_spec(f, m.p, m.len, &b, &d), PROTO_ESHAPE);
    tb_free(&m);
    /* 9 elements (the note missing) */
    two_cuts(f, cut);
    p = narrow_entry(cut, 2);
    m = (tb) { 0 };
    narrow_plain(&p, &m, off);
    m.p[0] = 0x99;
    m.len = off[9];
    assert_int_equal(open_spec(f, m.p, m.len, &b, &d), PROTO_ESHAPE);
    tb_free(&m);
}

/* Every rule of a grant entry is checked on sealing. */
static void access_grant_values_checked(void **state)
{
    fx *f = *state;
    proto_body b;
    proto_header h;
    proto_buf hb, bb;
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int c = 0; c < 13; c++) {
        proto_body p = grant_entry();
        switch (c) {
        case 0:
            p.entry = 0;
            break;
        case 1:
            p.grant.grantee = txt("Coop");
            break;
        case 2:
            p.grant.access = PROTO_ACCESS_NONE;
            break;
        case 3:
            p.grant.access = 3;
            break;
        case 4:
            p.grant.purpose = txt("");
            break;
        case 5:
            p.grant.basis = 0;
            break;
        case 6:
            p.grant.basis = 5;
            break;
        case 7:
            p.grant.provision = txt("   ");
            break;
        case 8:
            p.grant.operator_name = txt("");
            break;
        case 9:
            p.grant.operator_name = txt("a\nb");
            break;
        case 10:
            p.grant.unix_user = txt("mario rossi");
            break;
        case 11:
            p.grant.unix_user = (proto_bytes) { (const uint8_t *)big, 65 };
            break;
        default:
            p.grant.evidence = txt(big);
            break;
        }
        if (seal_open(f, f->key, &p, &b, &h, &hb, &bb) != PROTO_EVALUE)
            fail_msg("grant entry case %d was sealed", c);
    }
    /* a Unix user is any printable ASCII without space: dots, @ and upper case included */
    proto_body p = grant_entry();
    p.grant.unix_user = txt("Mario.Rossi@COMUNE.local$");
    assert_int_equal(seal_open(f, f->key, &p, &b, &h, &hb, &bb), PROTO_OK);
    proto_body_fini(&b);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Flip every bit of the HEADER message (fields and signature): never accepted. */
/* A HEADERS batch per PROTOCOL.md section 19, written by hand: a header that follows the
 * previous one of its origin in the batch is [kind, wall, logical, tag, hints, body length,
 * body hash, signature]; any other one the bin of its HEADER message. */
static void tb_compact(tb *b, const proto_header *h)
{
    tb_array(b, 8);
    tb_uint(b, h->kind);
    tb_uint(b, h->hlc.wall);
    tb_uint(b, h->hlc.logical);
    tb_bin(b, h->tag, 32);
    tb_array(b, (uint32_t)h->nhints);
    for (size_t i = 0; i < h->nhints; i++)
        tb_bin(b, h->hints[i].b, 16);
    tb_uint(b, h->body_len);
    tb_bin(b, h->body_hash, 32);
    tb_bin(b, h->sig, 64);
}

static proto_err headers_decode_at(const tb *b, proto_headers_msg *out, size_t *off)
{
    proto_diag d = { 0, NULL };
    proto_err err = proto_headers_decode(b->p, b->len, NULL, out, &d);
    *off = d.offset;
    return err;
}

/* Runs of an origin's chained headers travel compact and come back whole, byte for byte; a
 * header that does not follow the one before it in the batch (another origin, a gap, another
 * prev, after bytes that are no header) travels whole; the decoder refuses a compact header
 * with nothing to follow, a whole one where the compact form applies, and a compact one that
 * breaks a header rule; it rebuilds but vouches for nothing (the signature is checked after). */
static void headers_batch_carries_runs_compact(void **state)
{
    fx *f = *state;
    /* alice 1..4 chained; bob 1, 2; a second alice 2 whose prev is not alice 1's id */
    proto_buf a[5], b[2], bodies[7];
    proto_header ha[5], hbob[2];
    for (int i = 0; i < 4; i++) {
        make_delta(f, (uint64_t)i + 1, i > 0 ? ha[i - 1].id : NULL, &a[i], &bodies[i]);
        assert_int_equal(proto_header_decode(a[i].p, a[i].len, NULL, &ha[i], NULL), PROTO_OK);
    }
    uint8_t other[32];
    memset(other, 0x5a, 32);
    make_delta(f, 2, other, &a[4], &bodies[4]);
    assert_int_equal(proto_header_decode(a[4].p, a[4].len, NULL, &ha[4], NULL), PROTO_OK);
    for (int i = 0; i < 2; i++) {
        make_delta_by(f, f->bob, (uint64_t)i + 1, i > 0 ? hbob[0].id : NULL, &b[i], &bodies[5 + i]);
        assert_int_equal(proto_header_decode(b[i].p, b[i].len, NULL, &hbob[i], NULL), PROTO_OK);
    }
    static const uint8_t junk[] = { 0x93, 0x04, 0x01 };
    /* a1 a2 a3 b1 b2 a4 | junk a2' a1 a3 */
    const proto_bytes in[] = { { a[0].p, a[0].len }, { a[1].p, a[1].len }, { a[2].p, a[2].len },
        { b[0].p, b[0].len }, { b[1].p, b[1].len }, { a[3].p, a[3].len }, { junk, sizeof junk },
        { a[4].p, a[4].len }, { a[0].p, a[0].len }, { a[2].p, a[2].len } };
    const size_t n = sizeof in / sizeof in[0];
    const proto_header *cmp[]
        = { NULL, &ha[1], &ha[2], NULL, &hbob[1], NULL, NULL, NULL, NULL, NULL };
    tb want = { 0 };
    tb_array(&want, 3);
    tb_uint(&want, PROTO_VERSION);
    tb_uint(&want, PROTO_K_HEADERS);
    tb_array(&want, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (cmp[i] != NULL)
            tb_compact(&want, cmp[i]);
        else
            tb_bin(&want, in[i].p, in[i].len);
    }
    proto_headers_msg hm = { .headers = in, .n = n }, hd;
    proto_buf enc;
    assert_int_equal(proto_headers_encode(&hm, &enc), PROTO_OK);
    assert_int_equal(enc.len, want.len);
    assert_memory_equal(enc.p, want.p, want.len);
    /* each compact header is 78 bytes shorter than its whole form (seq < 128, no hints) */
    tb all = { 0 };
    tb_array(&all, 3);
    tb_uint(&all, PROTO_VERSION);
    tb_uint(&all, PROTO_K_HEADERS);
    tb_array(&all, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        tb_bin(&all, in[i].p, in[i].len);
    assert_int_equal(enc.len + 3 * 78, all.len);
    tb_free(&all);
    assert_int_equal(proto_headers_decode(enc.p, enc.len, NULL, &hd, NULL), PROTO_OK);
    assert_int_equal(hd.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hd.headers[i].len, in[i].len);
        assert_memory_equal(hd.headers[i].p, in[i].p, in[i].len);
    }
    assert_int_equal(hd.built_bytes, a[1].len + a[2].len + b[1].len);
    proto_headers_fini(&hd);
    proto_buf_free(&enc);

    size_t off;
    /* a compact header first, and one after bytes that are no header */
    tb t = { 0 };
    tb_array(&t, 3);
    tb_uint(&t, PROTO_VERSION);
    tb_uint(&t, PROTO_K_HEADERS);
    tb_array(&t, 1);
    tb_compact(&t, &ha[1]);
    assert_int_equal(headers_decode_at(&t, &hd, &off), PROTO_ESHAPE);
    assert_int_equal(off, 4);
    tb_free(&t);
    tb_array(&t, 3);
    tb_uint(&t, PROTO_VERSION);
    tb_uint(&t, PROTO_K_HEADERS);
    tb_array(&t, 2);
    tb_bin(&t, junk, sizeof junk);
    tb_compact(&t, &ha[0]);
    assert_int_equal(headers_decode_at(&t, &hd, &off), PROTO_ESHAPE);
    assert_int_equal(off, 4 + 2 + sizeof junk);
    tb_free(&t);
    /* alice 2 whole after alice 1: not canonical, at its offset */
    tb_array(&t, 3);
    tb_uint(&t, PROTO_VERSION);
    tb_uint(&t, PROTO_K_HEADERS);
    tb_array(&t, 2);
    tb_bin(&t, a[0].p, a[0].len);
    size_t at = t.len;
    tb_bin(&t, a[1].p, a[1].len);
    assert_int_equal(headers_decode_at(&t, &hd, &off), PROTO_ENONCANON);
    assert_int_equal(off, at);
    tb_free(&t);
    /* a compact header of seven items, and one whose body length breaks the delta rule */
    proto_header bad = ha[1];
    for (int c = 0; c < 2; c++) {
        tb_array(&t, 3);
        tb_uint(&t, PROTO_VERSION);
        tb_uint(&t, PROTO_K_HEADERS);
        tb_array(&t, 2);
        tb_bin(&t, a[0].p, a[0].len);
        at = t.len;
        if (c == 0) {
            tb_array(&t, 7);
            tb_uint(&t, bad.kind);
            tb_uint(&t, bad.hlc.wall);
            tb_uint(&t, bad.hlc.logical);
            tb_bin(&t, bad.tag, 32);
            tb_array(&t, 0);
            tb_uint(&t, bad.body_len);
            tb_bin(&t, bad.body_hash, 32);
        } else {
            bad.body_len = 41;
            tb_compact(&t, &bad);
        }
        assert_int_equal(headers_decode_at(&t, &hd, &off), c == 0 ? PROTO_ESHAPE : PROTO_EVALUE);
        assert_int_equal(off, at);
        tb_free(&t);
    }
    /* a compact header with another signature is rebuilt; its signature then fails */
    bad = ha[1];
    bad.sig[0] ^= 1;
    tb_array(&t, 3);
    tb_uint(&t, PROTO_VERSION);
    tb_uint(&t, PROTO_K_HEADERS);
    tb_array(&t, 2);
    tb_bin(&t, a[0].p, a[0].len);
    tb_compact(&t, &bad);
    assert_int_equal(headers_decode_at(&t, &hd, &off), PROTO_OK);
    proto_header rh;
    assert_int_equal(
        proto_header_decode(hd.headers[1].p, hd.headers[1].len, NULL, &rh, NULL), PROTO_OK);
    assert_int_equal(rh.seq, 2);
    assert_memory_equal(rh.prev, ha[0].id, 32);
    assert_int_equal(proto_header_verify(&rh), PROTO_ESIG);
    proto_headers_fini(&hd);
    tb_free(&t);
    tb_free(&want);
    for (int i = 0; i < 5; i++)
        proto_buf_free(&a[i]);
    for (int i = 0; i < 2; i++)
        proto_buf_free(&b[i]);
    for (int i = 0; i < 7; i++)
        proto_buf_free(&bodies[i]);
}

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

/* The header id covers the signature: the same fields under another signature are another
 * header, so a chain (prev) commits to every signature before it. */
static void header_id_covers_the_signature(void **state)
{
    fx *f = *state;
    uint8_t want[32];
    crypto_generichash(want, 32, f->hdr.p, f->hdr.len, NULL, 0);
    assert_memory_equal(f->h.id, want, 32);
    proto_header h = f->h;
    h.sig[5] ^= 0x40;
    proto_buf other;
    assert_int_equal(proto_header_encode(&h, &other), PROTO_OK);
    proto_header d;
    assert_int_equal(proto_header_decode(other.p, other.len, NULL, &d, NULL), PROTO_OK);
    assert_int_equal(d.signed_bytes.len, f->h.signed_bytes.len);
    assert_memory_equal(d.signed_bytes.p, f->h.signed_bytes.p, d.signed_bytes.len);
    assert_memory_not_equal(d.id, f->h.id, 32);
    proto_buf_free(&other);
}

/* Hints: none in a delta header, exactly 4 in a key grant; body lengths by kind. */
static void header_hints_and_lengths_checked(void **state)
{
    fx *f = *state;
    proto_header h = f->h;
    proto_buf out;
    h.nhints = 1;
    assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
    h.nhints = 0;
    h.body_len = f->h.body_len + 1;
    assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
    h.body_len = 40;
    assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
    h = f->h;
    h.kind = PROTO_HDR_KEY_GRANT;
    h.nhints = 4;
    h.body_len = 16 + 4 * (48 + 256); /* one block */
    assert_int_equal(proto_header_encode(&h, &out), PROTO_OK);
    proto_header d;
    assert_int_equal(proto_header_decode(out.p, out.len, NULL, &d, NULL), PROTO_OK);
    proto_buf_free(&out);
    h.nhints = 3;
    assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
    h.nhints = 4;
    const uint64_t bad[]
        = { 16 + 4 * 560 + 1, 16 + 4 * 48, 16 + 4 * (48 + 128), 2048, 16 + 4 * (48 + 256 * 55) };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h.body_len = bad[i];
        assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
    }
    h.body_len = 16 + 4 * (48 + 256 * 54); /* the most a grant of 256 keys in 64 scopes needs */
    assert_int_equal(proto_header_encode(&h, &out), PROTO_OK);
    proto_buf_free(&out);
    /* and the decoder refuses the same: a delta header with a hint, made by hand */
    tb in = { 0 };
    tb_array(&in, 12);
    tb_uint(&in, PROTO_VERSION);
    tb_uint(&in, PROTO_K_HEADER_FIELDS);
    tb_uint(&in, PROTO_HDR_DELTA);
    tb_bin(&in, f->h.origin, 32);
    tb_uint(&in, 1);
    tb_bin(&in, f->h.prev, 32);
    tb_uint(&in, 5);
    tb_uint(&in, 0);
    tb_bin(&in, f->h.tag, 32);
    tb_array(&in, 1);
    tb_bin(&in, f->h.tag, 16);
    tb_uint(&in, f->h.body_len);
    tb_bin(&in, f->h.body_hash, 32);
    tb outer = { 0 };
    tb_array(&outer, 4);
    tb_uint(&outer, PROTO_VERSION);
    tb_uint(&outer, PROTO_K_HEADER);
    tb_bin(&outer, in.p, in.len);
    tb_bin(&outer, f->h.sig, 64);
    proto_diag dg;
    assert_int_equal(proto_header_decode(outer.p, outer.len, NULL, &d, &dg), PROTO_EVALUE);
    assert_non_null(strstr(dg.reason, "no hints"));
    tb_free(&in);
    tb_free(&outer);
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

/* A body sealed with the right key bytes under the right header, but with the associated data
 * of another case, scope or epoch, is refused by the AEAD: the key's case, scope and epoch are
 * bound without being in the plaintext, which opens with the key's. And the value rules of an
 * ACCESS_EPOCH, whose new epoch must be above the key's. */
static void body_case_scope_epoch_checked(void **state)
{
    fx *f = *state;
    uint8_t hash[32];
    tu_pattern(hash, 32, 0x99);
    proto_case_id other = f->cid;
    other.b[3] ^= 1;
    static const proto_err want[] = { PROTO_OK, PROTO_EDECRYPT, PROTO_EDECRYPT, PROTO_EDECRYPT,
        PROTO_EVALUE, PROTO_EVALUE, PROTO_EKIND, PROTO_ESHAPE };
    for (int c = 0; c < 8; c++) {
        tb b = { 0 };
        tb_array(&b, c == 7 ? 4 : 5);
        tb_uint(&b, PROTO_VERSION);
        tb_uint(&b, c == 6 ? PROTO_K_GRANT_PLAIN : PROTO_K_ACCESS_EPOCH);
        tb_uint(&b, c == 4 ? 0 : 1); /* entry */
        tb_uint(&b, c == 5 ? 1 : 3); /* new epoch */
        if (c != 7)
            tb_bin(&b, hash, 32);
        proto_body got;
        proto_diag d;
        proto_err err = open_spec_as(f, b.p, b.len, c == 1 ? &other : &f->cid,
            c == 2 ? "lavoro" : "sociale", c == 3 ? 2 : 1, &got, &d);
        if (err != want[c])
            fail_msg("access epoch case %d: %s, want %s", c, proto_strerror(err),
                proto_strerror(want[c]));
        if (err == PROTO_OK) {
            assert_memory_equal(got.case_id.b, f->cid.b, 16);
            assert_string_equal(got.scope, "sociale");
            assert_int_equal(got.epoch, 1);
            assert_int_equal(got.new_epoch, 3);
            proto_body_fini(&got);
        }
        tb_free(&b);
    }
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
    for (size_t k = 4; k <= 16; k += 4) /* nor any 4-byte window of it, nor of its nonce */
        assert_false(contains(p, n, f->cid.b + k - 4, 4));
    for (size_t k = 4; k <= 16; k += 4)
        assert_false(contains(p, n, f->nonce.b + k - 4, 4));
    assert_false(contains(p, n, text, strlen(text)));
    assert_false(contains(p, n, text + 3, 10));
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_false(contains(p, n, secrets[i], strlen(secrets[i])));
}

static proto_err grant_to(fx *f, const proto_identity *const *to, size_t n,
    const proto_scope_key *const *keys, size_t nkeys, proto_buf *hb, proto_buf *bb)
{
    proto_recipient rc[8];
    for (size_t i = 0; i < n && i < 8; i++)
        memcpy(rc[i].box_pk, proto_identity_box_pk(to[i]), 32);
    proto_seal_info info = { 5, { 1 }, { 1700000000000, 0 } };
    return proto_key_grant_seal(
        f->alice, "comune-1", &f->nonce, keys, nkeys, &info, rc, n, tu_rng(), hb, bb);
}

static void headers_name_nothing(void **state)
{
    fx *f = *state;
    assert_names_nothing(f, f->hdr.p, f->hdr.len);
    const proto_identity *to[1] = { f->bob };
    const proto_scope_key *keys[1] = { f->key };
    proto_buf gh, gb;
    assert_int_equal(grant_to(f, to, 1, keys, 1, &gh, &gb), PROTO_OK);
    assert_names_nothing(f, gh.p, gh.len);
    /* nor does the grant body show the scope, the owner or the nonce in clear */
    assert_names_nothing(f, gb.p, gb.len);
    /* nor a recipient's keys */
    proto_header h;
    assert_int_equal(proto_header_decode(gh.p, gh.len, NULL, &h, NULL), PROTO_OK);
    assert_false(contains(gh.p, gh.len, proto_identity_origin(f->bob), 32));
    assert_false(contains(gh.p, gh.len, proto_identity_box_pk(f->bob), 32));
    assert_false(contains(gb.p, gb.len, proto_identity_box_pk(f->bob), 32));
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
        char op[601];
        memset(op, 'x', sizeof op); /* operator text of 1..600 bytes (never empty) */
        proto_body plain;
        memset(&plain, 0, sizeof plain);
        plain.kind = PROTO_BODY_FORGET;
        plain.forget_reason = 1;
        plain.operator_name = (proto_bytes) { (const uint8_t *)op, n + 1 };
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

/* ---------------------------------------------------------------------------------------- */
/* Key grants                                                                                */

static void key_grant_round_trip(void **state)
{
    fx *f = *state;
    proto_scope_key *k2, *k5;
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 2, tu_rng(), &k2), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 5, tu_rng(), &k5), PROTO_OK);
    const proto_scope_key *keys[3] = { f->key, k2, k5 };
    const proto_identity *to[2] = { f->carol, f->bob };
    proto_buf hb, bb;
    assert_int_equal(grant_to(f, to, 2, keys, 3, &hb, &bb), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(&h), PROTO_OK);
    assert_int_equal(h.kind, PROTO_HDR_KEY_GRANT);
    assert_int_equal(h.nhints, PROTO_HINT_SLOTS);
    assert_memory_equal(h.tag, proto_scope_key_tag(k5), 32); /* the newest key's */
    const uint8_t *apk = proto_identity_box_pk(f->alice);
    /* recipients in the order given: carol in slot 0, bob in slot 1 */
    assert_int_equal(proto_key_grant_slot(&h, f->carol, apk), 0);
    assert_int_equal(proto_key_grant_slot(&h, f->bob, apk), 1);
    /* The same slots from the hint keys a node keeps per grantor; a grant opens at its slot
     * only. */
    uint8_t kc[32], kb[32];
    assert_true(proto_hint_key(f->carol, apk, kc));
    assert_true(proto_hint_key(f->bob, apk, kb));
    assert_int_equal(proto_key_grant_slot_k(&h, kc), 0);
    assert_int_equal(proto_key_grant_slot_k(&h, kb), 1);
    proto_grant wrong;
    assert_int_not_equal(
        proto_key_grant_open_slot(&h, f->bob, 0, bb.p, bb.len, NULL, &wrong, NULL), PROTO_OK);
    assert_int_equal(proto_key_grant_open_slot(&h, f->bob, -1, bb.p, bb.len, NULL, &wrong, NULL),
        PROTO_ENOTRECIPIENT);
    for (int i = 0; i < 2; i++) {
        proto_grant g;
        assert_int_equal(
            proto_key_grant_open(&h, to[i], apk, bb.p, bb.len, NULL, &g, NULL), PROTO_OK);
        assert_memory_equal(g.case_id.b, f->cid.b, 16);
        assert_memory_equal(g.nonce.b, f->nonce.b, 16);
        assert_string_equal(g.owner_org, "comune-1");
        assert_string_equal(proto_scope_key_scope(g.keys[0]), "sociale");
        assert_int_equal(g.nkeys, 3);
        for (size_t k = 0; k < 3; k++) {
            uint8_t a[32], b[32];
            proto_scope_key_export(g.keys[k], a);
            proto_scope_key_export(keys[k], b);
            assert_memory_equal(a, b, 32);
            assert_int_equal(proto_scope_key_epoch(g.keys[k]), proto_scope_key_epoch(keys[k]));
            assert_memory_equal(proto_scope_key_tag(g.keys[k]), proto_scope_key_tag(keys[k]), 32);
        }
        proto_grant_fini(&g);
    }
    proto_header_fini(&h);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    proto_scope_key_free(k2);
    proto_scope_key_free(k5);
}

/* A hint matches only its recipient: a non-recipient, or a recipient told the wrong grantor
 * key, finds no slot; the slots of a grant to one recipient are all different. */
static void hints_match_only_the_recipient(void **state)
{
    fx *f = *state;
    const proto_identity *to[1] = { f->bob };
    const proto_scope_key *keys[1] = { f->key };
    proto_buf hb, bb;
    assert_int_equal(grant_to(f, to, 1, keys, 1, &hb, &bb), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    const uint8_t *apk = proto_identity_box_pk(f->alice);
    assert_int_equal(proto_key_grant_slot(&h, f->bob, apk), 0);
    assert_int_equal(proto_key_grant_slot(&h, f->carol, apk), -1);
    assert_int_equal(proto_key_grant_slot(&h, f->dave, apk), -1);
    assert_int_equal(proto_key_grant_slot(&h, f->alice, apk), -1);
    assert_int_equal(proto_key_grant_slot(&h, f->bob, proto_identity_box_pk(f->carol)), -1);
    uint8_t zero[32] = { 0 }; /* a low-order grantor key: no slot for anyone */
    assert_int_equal(proto_key_grant_slot(&h, f->bob, zero), -1);
    proto_grant g;
    assert_int_equal(
        proto_key_grant_open(&h, f->carol, apk, bb.p, bb.len, NULL, &g, NULL), PROTO_ENOTRECIPIENT);
    /* the hint is bound to the header's place: the same hints at another seq match nobody */
    proto_header moved = h;
    moved.seq++;
    assert_int_equal(proto_key_grant_slot(&moved, f->bob, apk), -1);
    memcpy(moved.origin, proto_identity_origin(f->carol), 32);
    moved.seq = h.seq;
    assert_int_equal(proto_key_grant_slot(&moved, f->bob, apk), -1);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            assert_memory_not_equal(h.hints[i].b, h.hints[j].b, PROTO_HINT_LEN);
    /* a delta header has no slots */
    assert_int_equal(proto_key_grant_slot(&f->h, f->bob, apk), -1);
    assert_int_equal(
        proto_key_grant_open(&f->h, f->bob, apk, bb.p, bb.len, NULL, &g, NULL), PROTO_EKIND);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Whatever the number of recipients, a grant body is four boxes of one length. */
static void grant_shape_hides_the_recipients(void **state)
{
    fx *f = *state;
    const proto_identity *to[4] = { f->bob, f->carol, f->dave, f->erin };
    const proto_scope_key *keys[1] = { f->key };
    size_t lens[4];
    for (size_t n = 1; n <= 4; n++) {
        proto_buf hb, bb;
        assert_int_equal(grant_to(f, to, n, keys, 1, &hb, &bb), PROTO_OK);
        lens[n - 1] = bb.len;
        proto_header h;
        assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
        /* [2, 4, [4 x bin16 of L]]: 4 header bytes, then boxes at 4 + 3 + i (3 + L) */
        size_t l = (bb.len - 16) / 4;
        assert_int_equal(bb.len, 16 + 4 * l);
        assert_int_equal(l, 48 + 256);
        for (size_t i = 0; i < 4; i++) {
            const uint8_t *hdr = bb.p + 4 + i * (3 + l);
            assert_int_equal(hdr[0], 0xc5);
            assert_int_equal((size_t)hdr[1] << 8 | hdr[2], l);
        }
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(
                proto_key_grant_slot(&h, to[i], proto_identity_box_pk(f->alice)), (int)i);
            proto_grant g;
            assert_int_equal(proto_key_grant_open(&h, to[i], proto_identity_box_pk(f->alice), bb.p,
                                 bb.len, NULL, &g, NULL),
                PROTO_OK);
            proto_grant_fini(&g);
        }
        proto_buf_free(&hb);
        proto_buf_free(&bb);
    }
    assert_int_equal(lens[0], lens[3]);
    assert_int_equal(lens[1], lens[2]);
    assert_int_equal(lens[0], lens[1]);
}

/* The largest grant: 256 keys with 9-byte epochs, 4 in each of 64 scopes of 32-byte names, an
 * owner of 32 bytes. Its body length is the largest the header rule allows (54 blocks), and it
 * opens with its keys in (scope, epoch) order. A key more, or a scope more, is refused. */
static void largest_grant_fits(void **state)
{
    fx *f = *state;
    const char *owner = "comune-di-sezze-romano-latina-lt"; /* 32 */
    assert_int_equal(strlen(owner), 32);
    proto_case_nonce nonce;
    proto_case_id cid;
    assert_int_equal(proto_case_id_new(owner, 32, tu_rng(), &cid, &nonce), PROTO_OK);
    enum { PER = PROTO_GRANT_EPOCHS_MAX / PROTO_GRANT_SCOPES_MAX };
    proto_scope_key *keys[PROTO_GRANT_EPOCHS_MAX + 1];
    /* given from the last scope to the first: sealing sorts them */
    for (size_t i = 0; i < PROTO_GRANT_EPOCHS_MAX; i++) {
        char scope[33];
        snprintf(scope, sizeof scope, "scope_with_a_name_of_32_bytes_%02zu",
            PROTO_GRANT_SCOPES_MAX - 1 - i / PER);
        assert_int_equal(strlen(scope), 32);
        assert_int_equal(
            proto_scope_key_new(&cid, scope, UINT64_MAX - PER + i % PER, tu_rng(), &keys[i]),
            PROTO_OK);
    }
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(f->bob), 32);
    proto_seal_info info = { 9, { 1 }, { 1700000000000, 0 } };
    proto_buf hb, bb;
    assert_int_equal(
        proto_key_grant_seal(f->alice, owner, &nonce, (const proto_scope_key *const *)keys,
            PROTO_GRANT_EPOCHS_MAX, &info, &rc, 1, tu_rng(), &hb, &bb),
        PROTO_OK);
    assert_int_equal(bb.len, 16 + 4 * (48 + 256 * 54));
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    /* the tag is the last scope's newest key's */
    assert_memory_equal(h.tag, proto_scope_key_tag(keys[PER - 1]), 32);
    proto_grant g;
    assert_int_equal(proto_key_grant_open(
                         &h, f->bob, proto_identity_box_pk(f->alice), bb.p, bb.len, NULL, &g, NULL),
        PROTO_OK);
    assert_int_equal(g.nkeys, PROTO_GRANT_EPOCHS_MAX);
    assert_string_equal(proto_scope_key_scope(g.keys[0]), "scope_with_a_name_of_32_bytes_00");
    assert_string_equal(proto_scope_key_scope(g.keys[255]), "scope_with_a_name_of_32_bytes_63");
    for (size_t i = 0; i < PROTO_GRANT_EPOCHS_MAX; i++)
        assert_int_equal(proto_scope_key_epoch(g.keys[i]), UINT64_MAX - PER + i % PER);
    proto_grant_fini(&g);
    proto_buf x, y;
    /* one key more */
    keys[PROTO_GRANT_EPOCHS_MAX] = keys[0];
    assert_int_equal(
        proto_key_grant_seal(f->alice, owner, &nonce, (const proto_scope_key *const *)keys,
            PROTO_GRANT_EPOCHS_MAX + 1, &info, &rc, 1, tu_rng(), &x, &y),
        PROTO_ELIMIT);
    /* one scope more: 65 scopes of one key each */
    proto_scope_key *many[PROTO_GRANT_SCOPES_MAX + 1];
    for (size_t i = 0; i <= PROTO_GRANT_SCOPES_MAX; i++) {
        char scope[33];
        snprintf(scope, sizeof scope, "s%02zu", i);
        assert_int_equal(proto_scope_key_new(&cid, scope, 1, tu_rng(), &many[i]), PROTO_OK);
    }
    assert_int_equal(
        proto_key_grant_seal(f->alice, owner, &nonce, (const proto_scope_key *const *)many,
            PROTO_GRANT_SCOPES_MAX + 1, &info, &rc, 1, tu_rng(), &x, &y),
        PROTO_ELIMIT);
    for (size_t i = 0; i <= PROTO_GRANT_SCOPES_MAX; i++)
        proto_scope_key_free(many[i]);
    for (size_t i = 0; i < PROTO_GRANT_EPOCHS_MAX; i++)
        proto_scope_key_free(keys[i]);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

static void grant_seal_arguments_checked(void **state)
{
    fx *f = *state;
    proto_scope_key *k2, *other_scope, *other_case, *k2b;
    proto_case_id c2;
    proto_case_nonce n2;
    assert_int_equal(proto_case_id_new("cpia-1", 6, tu_rng(), &c2, &n2), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 2, tu_rng(), &k2), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&f->cid, "sociale", 2, tu_rng(), &k2b), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&f->cid, "lavoro", 2, tu_rng(), &other_scope), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&c2, "sociale", 2, tu_rng(), &other_case), PROTO_OK);
    proto_recipient rc[5];
    const proto_identity *who[5] = { f->bob, f->carol, f->dave, f->erin, f->alice };
    for (int i = 0; i < 5; i++)
        memcpy(rc[i].box_pk, proto_identity_box_pk(who[i]), 32);
    proto_seal_info info = { 3, { 7 }, { 1700000000000, 2 } };
    proto_buf hb, bb;
#define SEAL(owner, nonce, keys, nkeys, rcs, n)                                                    \
    proto_key_grant_seal(f->alice, owner, nonce, keys, nkeys, &info, rcs, n, tu_rng(), &hb, &bb)
    const proto_scope_key *ok[2] = { f->key, k2 };
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, rc, 4), PROTO_OK);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    /* a case id that is not owner_org's: another org, another nonce */
    assert_int_equal(SEAL("cpia-1", &f->nonce, ok, 2, rc, 1), PROTO_EVALUE);
    assert_int_equal(SEAL("comune-1", &n2, ok, 2, rc, 1), PROTO_EVALUE);
    assert_int_equal(SEAL("Comune-1", &f->nonce, ok, 2, rc, 1), PROTO_EVALUE);
    /* keys of several scopes of the case, in any order, are one grant; of another case, or an
     * epoch of a scope twice, are refused */
    const proto_scope_key *scopes[3] = { k2, other_scope, f->key };
    const proto_scope_key *mixed2[2] = { f->key, other_case };
    const proto_scope_key *same[3] = { k2, other_scope, k2b };
    assert_int_equal(SEAL("comune-1", &f->nonce, scopes, 3, rc, 1), PROTO_OK);
    proto_header sh;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &sh, NULL), PROTO_OK);
    assert_memory_equal(sh.tag, proto_scope_key_tag(k2), 32); /* sociale's newest: the last */
    proto_grant sg;
    assert_int_equal(proto_key_grant_open(&sh, f->bob, proto_identity_box_pk(f->alice), bb.p,
                         bb.len, NULL, &sg, NULL),
        PROTO_OK);
    assert_int_equal(sg.nkeys, 3);
    assert_string_equal(proto_scope_key_scope(sg.keys[0]), "lavoro");
    assert_string_equal(proto_scope_key_scope(sg.keys[1]), "sociale");
    assert_int_equal(proto_scope_key_epoch(sg.keys[1]), 1);
    assert_int_equal(proto_scope_key_epoch(sg.keys[2]), 2);
    proto_grant_fini(&sg);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    assert_int_equal(SEAL("comune-1", &f->nonce, mixed2, 2, rc, 1), PROTO_EVALUE);
    assert_int_equal(SEAL("comune-1", &f->nonce, same, 3, rc, 1), PROTO_EVALUE);
    /* recipients: 1..4, distinct, not of low order */
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, rc, 5), PROTO_ELIMIT);
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, rc, 0), PROTO_ELIMIT);
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 0, rc, 1), PROTO_ELIMIT);
    proto_recipient dup[2] = { rc[1], rc[1] };
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, dup, 2), PROTO_EVALUE);
    proto_recipient low[1];
    memset(low, 0, sizeof low);
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, low, 1), PROTO_EVALUE);
    assert_null(hb.p);
    assert_null(bb.p);
    /* seq 1 takes no prev; seq 0 does not exist */
    info.seq = 1;
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, rc, 1), PROTO_EVALUE);
    info.seq = 0;
    assert_int_equal(SEAL("comune-1", &f->nonce, ok, 2, rc, 1), PROTO_EVALUE);
    assert_int_equal(SEAL(NULL, &f->nonce, ok, 2, rc, 1), PROTO_EINVAL);
#undef SEAL
    proto_scope_key_free(k2);
    proto_scope_key_free(k2b);
    proto_scope_key_free(other_scope);
    proto_scope_key_free(other_case);
}

/* One scope's item of a GRANT_PLAIN made by hand: [scope, [[epoch, key]...]]. */
static void tb_grant_scope(
    tb *b, const char *scope, const uint64_t *epochs, uint8_t (*keys)[32], size_t n)
{
    tb_array(b, 2);
    tb_str(b, scope);
    tb_array(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        tb_array(b, 2);
        tb_uint(b, epochs[i]);
        tb_bin(b, keys[i], 32);
    }
}

/* A GRANT_PLAIN sealed by hand (tdecode's grant_plain entry: padded, sealed to bob in slot 0 of
 * four boxes, under a header by alice with the tag of vectors.txt's epoch-2 key of sociale): the
 * case id must derive from the owner org and nonce, the last scope's newest key's tag be the
 * header's, the scopes be in ascending name order, each once, with at least one key each in
 * strictly ascending epochs. */
static void grant_case_id_checked_on_open(void **state)
{
    (void)state;
    const tdec *gp = tdec_find("grant_plain");
    assert_non_null(gp);
    uint8_t cid[16], nonce[16], keys[2][32];
    proto_case_nonce cn;
    proto_case_id id;
    tu_pattern(cn.b, 16, 0x00);
    assert_int_equal(proto_case_id_derive("comune-1", 8, &cn, &id), PROTO_OK);
    memcpy(cid, id.b, 16);
    memcpy(nonce, cn.b, 16);
    tu_pattern(keys[0], 32, 0x50);
    tu_pattern(keys[1], 32, 0x70);
    static const proto_err want[] = { PROTO_OK, PROTO_EMISMATCH, PROTO_EMISMATCH, PROTO_EMISMATCH,
        PROTO_EMISMATCH, PROTO_ENONCANON, PROTO_OK, PROTO_EVALUE, PROTO_ENONCANON, PROTO_ENONCANON,
        PROTO_EVALUE, PROTO_EVALUE, PROTO_EMISMATCH, PROTO_EVALUE, PROTO_ESHAPE };
    for (int c = 0; c < (int)(sizeof want / sizeof want[0]); c++) {
        tb b = { 0 };
        tb_array(&b, c == 14 ? 7 : 6);
        tb_uint(&b, PROTO_VERSION);
        tb_uint(&b, PROTO_K_GRANT_PLAIN);
        uint8_t x[16];
        memcpy(x, cid, 16);
        if (c == 3)
            x[0] ^= 1;
        tb_bin(&b, x, 16);
        memcpy(x, nonce, 16);
        if (c == 2)
            x[15] ^= 1;
        tb_bin(&b, x, 16);
        tb_str(&b, c == 1 ? "comune-2" : "comune-1");
        if (c == 14) /* version 3's layout: one scope, then its keys */
            tb_str(&b, "sociale");
        uint64_t ep[2] = { c == 5 ? 2 : 1, c == 7 ? 0 : 2 };
        uint8_t k[2][32];
        memcpy(k, keys, sizeof k);
        if (c == 4)
            k[1][9] ^= 1;
        /* documenti [1] and sociale [1, 2], or as each case breaks it */
        tb_array(&b, c == 10 ? 0 : c == 9 || c == 12 ? 3 : 2);
        if (c == 8) {
            tb_grant_scope(&b, "sociale", ep, k, 2);
            tb_grant_scope(&b, "documenti", ep, k, 1);
        } else if (c == 14) {
            for (int i = 0; i < 2; i++) {
                tb_array(&b, 2);
                tb_uint(&b, ep[i]);
                tb_bin(&b, k[i], 32);
            }
        } else if (c != 10) {
            tb_grant_scope(&b, c == 13 ? "Documenti" : "documenti", ep, k, c == 11 ? 0 : 1);
            if (c == 9)
                tb_grant_scope(&b, "documenti", ep, k, 1);
            if (c == 6)
                tb_grant_scope(&b, "sociale", ep + 1, k + 1, 1);
            else
                tb_grant_scope(&b, "sociale", ep, k, 2);
            if (c == 12) /* a last scope whose newest key is not the header's tag's */
                tb_grant_scope(&b, "zeta", ep, k, 1);
        }
        proto_err err = gp->fn(b.p, b.len);
        if (err != want[c])
            fail_msg("grant plaintext case %d: %s, want %s", c, proto_strerror(err),
                proto_strerror(want[c]));
        tb_free(&b);
    }
}

static void key_grant_tampering_rejected(void **state)
{
    fx *f = *state;
    const proto_identity *to[2] = { f->bob, f->carol };
    const proto_scope_key *keys[1] = { f->key };
    proto_buf hb, bb;
    assert_int_equal(grant_to(f, to, 2, keys, 1, &hb, &bb), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(hb.p, hb.len, NULL, &h, NULL), PROTO_OK);
    const uint8_t *apk = proto_identity_box_pk(f->alice);
    proto_grant g;
    size_t l = (bb.len - 16) / 4;
    uint8_t *q = malloc(bb.len);
    for (size_t bit = 0; bit < bb.len * 8; bit++) {
        memcpy(q, bb.p, bb.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_key_grant_open(&h, f->bob, apk, q, bb.len, NULL, &g, NULL), PROTO_EBODYHASH);
        /* with the hash recomputed: bob's box fails to open, framing fails to decode, and a
         * change in another box does not concern bob */
        proto_header h2 = h;
        crypto_generichash(h2.body_hash, 32, q, bb.len, NULL, 0);
        size_t byte = bit / 8, box = 4, in_box = 4;
        for (size_t i = 0; i < 4; i++) {
            size_t start = 4 + i * (3 + l) + 3; /* box i's bytes after its bin16 header */
            if (byte >= start && byte < start + l)
                in_box = i;
        }
        proto_err err = proto_key_grant_open(&h2, f->bob, apk, q, bb.len, NULL, &g, NULL);
        if (in_box == 0) /* bob's */
            assert_int_equal(err, PROTO_ESEAL);
        else if (in_box < box)
            assert_int_equal(err, PROTO_OK);
        else
            assert_int_not_equal(err, PROTO_OK);
        if (err == PROTO_OK)
            proto_grant_fini(&g);
    }
    free(q);
    /* a header (re-signed by an insider) claiming another tag */
    proto_header h2 = h;
    h2.tag[0] ^= 1;
    assert_int_equal(
        proto_key_grant_open(&h2, f->bob, apk, bb.p, bb.len, NULL, &g, NULL), PROTO_EMISMATCH);
    /* a body of the wrong length */
    assert_int_equal(
        proto_key_grant_open(&h, f->bob, apk, bb.p, bb.len - 1, NULL, &g, NULL), PROTO_EBODYLEN);
    proto_header_fini(&h);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* ---------------------------------------------------------------------------------------- */
/* Against vectors.txt with libsodium alone                                                  */

static const tu_vector *vec(const tu_vectors *vs, const char *name)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].name, name) == 0)
            return &vs->v[i];
    fail_msg("no vector [%s]", name);
    return NULL;
}

static uint8_t *hexv(const tu_vector *v, const char *key, size_t *n)
{
    const char *s = tu_vector_get(v, key);
    if (s == NULL)
        fail_msg("no %s in [%s]", key, v->name);
    size_t dummy;
    uint8_t *p = tu_unhex(s, n != NULL ? n : &dummy);
    assert_non_null(p);
    return p;
}

/* PROTOCOL.md's construction, redone here with libsodium and checked against vectors.txt. */
static void spec_reimplementation_matches_vectors(void **state)
{
    (void)state;
    tu_vectors vs;
    assert_true(tu_vectors_load(PROTO_VECTORS_FILE, &vs));
    const tu_vector *cv = vec(&vs, "case-id"), *tag = vec(&vs, "routing-tag");
    const tu_vector *dl = vec(&vs, "delta"), *kg = vec(&vs, "key-grant");
    const tu_vector *ids = vec(&vs, "identities"), *ek = vec(&vs, "epoch-key");
    const tu_vector *co = vec(&vs, "counter-origin");
    size_t n;

    /* case id: first 16 bytes of H("patto-case-id-v2" || u8 len || org || nonce) */
    uint8_t *nonce = hexv(cv, "nonce", NULL), *want_cid = hexv(cv, "case_id", NULL), h32[32];
    const char *org = tu_vector_get(cv, "org");
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-case-id-v2", 16);
    uint8_t ol = (uint8_t)strlen(org);
    crypto_generichash_update(&st, &ol, 1);
    crypto_generichash_update(&st, (const uint8_t *)org, ol);
    crypto_generichash_update(&st, nonce, 16);
    crypto_generichash_final(&st, h32, 32);
    assert_memory_equal(h32, want_cid, 16);

    /* routing tag */
    uint8_t *key = hexv(tag, "scope_key", NULL), *cid = hexv(tag, "case_id", NULL);
    uint8_t *want_tag = hexv(tag, "tag", NULL);
    uint8_t tagkey[32], bodykey[32], t[32];
    crypto_kdf_derive_from_key(tagkey, 32, 1, "pattoscp", key);
    crypto_kdf_derive_from_key(bodykey, 32, 2, "pattoscp", key);
    crypto_generichash_init(&st, tagkey, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-tag-v1", 12);
    crypto_generichash_update(&st, cid, 16);
    const uint8_t mid[] = { 7, 's', 'o', 'c', 'i', 'a', 'l', 'e', 0, 0, 0, 0, 0, 0, 0, 1 };
    crypto_generichash_update(&st, mid, sizeof mid);
    crypto_generichash_final(&st, t, 32);
    assert_memory_equal(t, want_tag, 32);

    /* epoch key hash: H("patto-epoch-key-v2" || case || u8 len || scope || be64 epoch || key) */
    uint8_t *k2 = hexv(ek, "scope_key", NULL), *want_kh = hexv(ek, "key_hash", NULL);
    const uint8_t mid2[] = { 7, 's', 'o', 'c', 'i', 'a', 'l', 'e', 0, 0, 0, 0, 0, 0, 0, 2 };
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-epoch-key-v2", 18);
    crypto_generichash_update(&st, cid, 16);
    crypto_generichash_update(&st, mid2, sizeof mid2);
    crypto_generichash_update(&st, k2, 32);
    crypto_generichash_final(&st, h32, 32);
    assert_memory_equal(h32, want_kh, 32);

    /* counter origin: H("patto-counter-origin-v2" || author || u8 len || field) */
    uint8_t *author = hexv(co, "author", NULL), *want_co = hexv(co, "counter_origin", NULL);
    const char *field = tu_vector_get(co, "field");
    uint8_t fl = (uint8_t)strlen(field);
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-counter-origin-v2", 23);
    crypto_generichash_update(&st, author, 32);
    crypto_generichash_update(&st, &fl, 1);
    crypto_generichash_update(&st, (const uint8_t *)field, fl);
    crypto_generichash_final(&st, h32, 32);
    assert_memory_equal(h32, want_co, 32);

    /* header: signature over the signed bytes, id over the whole message, body hash, AEAD */
    size_t hl, bl, sl, pl;
    uint8_t *hdr = hexv(dl, "header", &hl), *body = hexv(dl, "body", &bl);
    uint8_t *sgn = hexv(dl, "header_signed", &sl), *pad = hexv(dl, "plaintext_padded", &pl);
    uint8_t *sig = hexv(dl, "signature", NULL), *origin = hexv(ids, "alice_origin", NULL);
    assert_int_equal(crypto_sign_verify_detached(sig, sgn, sl, origin), 0);
    uint8_t hid[32], bh[32];
    crypto_generichash(hid, 32, hdr, hl, NULL, 0);
    uint8_t *want_id = hexv(dl, "header_id", NULL);
    assert_memory_equal(hid, want_id, 32);
    crypto_generichash(bh, 32, body, bl, NULL, 0);
    proto_header h;
    assert_int_equal(proto_header_decode(hdr, hl, NULL, &h, NULL), PROTO_OK);
    assert_memory_equal(bh, h.body_hash, 32);
    /* the delta is sealed under the routing tag's key, of (case, sociale, 1) */
    uint8_t ad[TDEC_AD_MAX];
    proto_case_id dcid;
    memcpy(dcid.b, cid, 16);
    size_t adlen = tdec_spec_ad(&h, &dcid, "sociale", 1, ad);
    assert_int_equal(adlen, 151 + 7);
    uint8_t *pt = malloc(bl);
    unsigned long long ptl;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         pt, &ptl, NULL, body + 24, bl - 24, ad, adlen, body, bodykey),
        0);
    assert_int_equal(ptl, pl);
    assert_memory_equal(pt, pad, pl);
    size_t unpadded;
    assert_int_equal(sodium_unpad(&unpadded, pt, ptl, 256), 0);
    assert_true(unpadded < ptl);

    /* key grant: bob opens box 0 with crypto_box_seal_open; the hints of PROTOCOL.md */
    size_t gl, ghl, ppl;
    uint8_t *gb = hexv(kg, "body", &gl), *gh = hexv(kg, "header", &ghl);
    uint8_t *gpp = hexv(kg, "grant_plain_padded", &ppl), *eph = hexv(kg, "ephemeral_seed", NULL);
    uint8_t *want_ss = hexv(kg, "hint_shared_secret", NULL), *want_hk = hexv(kg, "hint_key", NULL);
    uint8_t *hint0 = hexv(kg, "hint_0", NULL);
    uint8_t bpk[32], bsk[32], apk[32], ask[32], seed[32];
    tu_pattern(seed, 32, 0x61);
    crypto_box_seed_keypair(bpk, bsk, seed);
    tu_pattern(seed, 32, 0x21);
    crypto_box_seed_keypair(apk, ask, seed);
    size_t l = (gl - 16) / 4;
    assert_int_equal(l, 48 + ppl);
    assert_int_equal(ppl % 256, 0);
    uint8_t *m = malloc(ppl);
    assert_int_equal(crypto_box_seal_open(m, gb + 7, l, bpk, bsk), 0);
    assert_memory_equal(m, gpp, ppl);
    size_t ml;
    assert_int_equal(sodium_unpad(&ml, m, ppl, 256), 0);
    assert_true(contains(m, ml, key, 32)); /* epoch 1's key */
    assert_true(contains(m, ml, k2, 32));  /* epoch 2's key */
    /* box 0 is epk || crypto_box_easy with epk from crypto_box_seed_keypair(seed) */
    uint8_t epk[32], esk[32];
    crypto_box_seed_keypair(epk, esk, eph);
    assert_memory_equal(gb + 7, epk, 32);
    uint8_t ss[32], hk[32], hint[32];
    assert_int_equal(crypto_scalarmult(ss, bsk, apk), 0); /* bob's side */
    assert_memory_equal(ss, want_ss, 32);
    assert_int_equal(crypto_scalarmult(ss, ask, bpk), 0); /* alice's side: the same */
    assert_memory_equal(ss, want_ss, 32);
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-key-v2", 17);
    crypto_generichash_update(&st, ss, 32);
    crypto_generichash_update(&st, apk, 32);
    crypto_generichash_update(&st, bpk, 32);
    crypto_generichash_final(&st, hk, 32);
    assert_memory_equal(hk, want_hk, 32);
    proto_header g;
    assert_int_equal(proto_header_decode(gh, ghl, NULL, &g, NULL), PROTO_OK);
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(g.seq >> (56 - 8 * i));
    crypto_generichash_init(&st, hk, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-v2", 13);
    crypto_generichash_update(&st, g.origin, 32);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_final(&st, hint, 32);
    assert_memory_equal(hint, hint0, 16);
    assert_memory_equal(g.hints[0].b, hint0, 16);

    uint8_t *all[] = { nonce, want_cid, key, cid, want_tag, k2, want_kh, author, want_co, hdr, body,
        sgn, pad, sig, origin, want_id, pt, gb, gh, gpp, eph, want_ss, want_hk, hint0, m };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    (void)n;
    tu_vectors_free(&vs);
}

/* The Ed25519 rules (libsodium 1.0.18's crypto_sign_verify_detached): every variant of
 * [ed25519-edge] is refused by proto_header_verify, including a whole HEADER message signed
 * with S + L; and each variant is what it claims to be. */
static void ed25519_edges_refused(void **state)
{
    (void)state;
    tu_vectors vs;
    assert_true(tu_vectors_load(PROTO_VECTORS_FILE, &vs));
    const tu_vector *e = vec(&vs, "ed25519-edge");
    size_t ml, hl;
    uint8_t *pk = hexv(e, "pk", NULL), *msg = hexv(e, "signed_bytes", &ml);
    uint8_t *sig = hexv(e, "sig", NULL), *spl = hexv(e, "sig_s_plus_l", NULL);
    uint8_t *hspl = hexv(e, "header_s_plus_l", &hl);
    uint8_t *pki = hexv(e, "pk_identity", NULL), *sigi = hexv(e, "sig_identity", NULL);
    uint8_t *pk8 = hexv(e, "pk_order8", NULL), *sig8 = hexv(e, "sig_order8", NULL);
    uint8_t *sigr = hexv(e, "sig_small_r", NULL), *pkn = hexv(e, "pk_noncanonical", NULL);

    proto_header h;
    memset(&h, 0, sizeof h);
    h.signed_bytes = (proto_bytes) { msg, ml };
    struct {
        const uint8_t *pk, *sig;
        proto_err want;
    } cases[] = {
        { pk, sig, PROTO_OK },
        { pk, spl, PROTO_ESIG },
        { pki, sigi, PROTO_ESIG },
        { pk8, sig8, PROTO_ESIG },
        { pk, sigr, PROTO_ESIG },
        { pkn, sig, PROTO_ESIG },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(h.origin, cases[i].pk, 32);
        memcpy(h.sig, cases[i].sig, 64);
        if (proto_header_verify(&h) != cases[i].want)
            fail_msg("ed25519 case %zu", i);
    }
    /* the S + L header decodes (its signature is 64 bytes like any) and does not verify */
    proto_header d;
    assert_int_equal(proto_header_decode(hspl, hl, NULL, &d, NULL), PROTO_OK);
    assert_memory_equal(d.origin, pk, 32);
    assert_memory_equal(d.sig, spl, 64);
    assert_int_equal(proto_header_verify(&d), PROTO_ESIG);

    /* S + L reduces to S: a verifier that reduced S would accept it */
    uint8_t wide[64] = { 0 }, red[32];
    memcpy(wide, spl + 32, 32);
    crypto_core_ed25519_scalar_reduce(red, wide);
    assert_memory_equal(red, sig + 32, 32);
    assert_memory_not_equal(spl + 32, sig + 32, 32);
    /* identity and order-8 keys: R = [S]B, so [S]B = R + [h]A whenever [h]A is the identity */
    uint8_t sb[32];
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(sb, sigi + 32), 0);
    assert_memory_equal(sb, sigi, 32);
    assert_int_equal(crypto_core_ed25519_is_valid_point(pki), 0);
    assert_int_equal(crypto_core_ed25519_is_valid_point(pk8), 0);
    uint8_t acc[32], next[32]; /* [8]A8 is the identity, [4]A8 is not */
    memcpy(acc, pk8, 32);
    for (int k = 2; k <= 8; k++) {
        assert_int_equal(crypto_core_ed25519_add(next, acc, pk8), 0);
        memcpy(acc, next, 32);
        if (k == 4)
            assert_memory_not_equal(acc, pki, 32);
    }
    assert_memory_equal(acc, pki, 32);
    /* small-order R: [S]B = R + [h]A holds exactly, R being the identity */
    uint8_t hram[64], hred[32], ha[32];
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, sigr, 32);
    crypto_hash_sha512_update(&st, pk, 32);
    crypto_hash_sha512_update(&st, msg, ml);
    crypto_hash_sha512_final(&st, hram);
    crypto_core_ed25519_scalar_reduce(hred, hram);
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(sb, sigr + 32), 0);
    assert_int_equal(crypto_scalarmult_ed25519_noclamp(ha, hred, pk), 0);
    assert_memory_equal(sb, ha, 32);
    assert_memory_equal(sigr, pki, 32);
    /* the non-canonical key is y = p + 3: a point whose canonical encoding decodes too */
    uint8_t canon[32] = { 3 }, base[32], sum[32];
    uint8_t one[32] = { 1 };
    assert_int_equal(crypto_scalarmult_ed25519_base_noclamp(base, one), 0);
    assert_int_equal(crypto_core_ed25519_add(sum, canon, base), 0);
    assert_int_equal(pkn[0], 0xf0);
    assert_int_equal(pkn[31], 0x7f);
    for (int i = 1; i < 31; i++)
        assert_int_equal(pkn[i], 0xff);

    uint8_t *all[] = { pk, msg, sig, spl, hspl, pki, sigi, pk8, sig8, sigr, pkn };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
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
    plain.kind = PROTO_K_GRANT_PLAIN; /* a kind, but not of a body */
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
    /* forget: reason 1..3, the operator is text */
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_FORGET;
    plain.forget_reason = 4;
    plain.operator_name = txt("op");
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb), PROTO_EVALUE);
    plain.forget_reason = 1;
    plain.operator_name = txt(" ");
    assert_int_equal(
        proto_delta_seal(f->alice, f->key, &info, &plain, NULL, &hb, &bb), PROTO_EVALUE);
}

/* Helpers the node uses: body check without a key, schema hash, wipe, counter origins. */
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

    /* counter origins: one per (author, field), none an author's own origin */
    uint8_t a[32], b[32], c[32], d[32];
    proto_counter_origin(proto_identity_origin(f->alice), "ore", 3, a);
    proto_counter_origin(proto_identity_origin(f->alice), "ore", 3, b);
    proto_counter_origin(proto_identity_origin(f->bob), "ore", 3, c);
    proto_counter_origin(proto_identity_origin(f->alice), "ore2", 4, d);
    assert_memory_equal(a, b, 32);
    assert_memory_not_equal(a, c, 32);
    assert_memory_not_equal(a, d, 32);
    assert_memory_not_equal(a, proto_identity_origin(f->alice), 32);
    /* the field is len bytes, not a C string */
    proto_counter_origin(proto_identity_origin(f->alice), "ore2", 3, d);
    assert_memory_equal(a, d, 32);
}

/* proto_import_nonce: PROTOCOL.md's construction recomputed with libsodium; the same identifier
 * on the same node gives the same nonce; another node, label or value another; without the
 * node's seed (a plain hash) nobody gets it. */
static void import_nonce_keyed(void **state)
{
    (void)state;
    uint8_t s1[32], b1[32], s2[32], b2[32];
    memset(s1, 0x11, 32);
    memset(b1, 0x22, 32);
    memset(s2, 0x33, 32);
    memset(b2, 0x44, 32);
    proto_identity *id1 = NULL, *id2 = NULL;
    assert_int_equal(proto_identity_from_seeds(s1, b1, &id1), PROTO_OK);
    assert_int_equal(proto_identity_from_seeds(s2, b2, &id2), PROTO_OK);
    static const char label[] = "anagrafica.codice_fiscale", cf[] = "TSTMRA80A01Z999X";
    proto_case_nonce a, b, c, d, e;
    assert_int_equal(
        proto_import_nonce(id1, label, strlen(label), (const uint8_t *)cf, strlen(cf), &a),
        PROTO_OK);
    assert_int_equal(
        proto_import_nonce(id1, label, strlen(label), (const uint8_t *)cf, strlen(cf), &b),
        PROTO_OK);
    assert_memory_equal(a.b, b.b, sizeof a.b);
    assert_int_equal(
        proto_import_nonce(id2, label, strlen(label), (const uint8_t *)cf, strlen(cf), &c),
        PROTO_OK);
    assert_memory_not_equal(a.b, c.b, sizeof a.b);
    assert_int_equal(
        proto_import_nonce(id1, "_key", 4, (const uint8_t *)cf, strlen(cf), &d), PROTO_OK);
    assert_memory_not_equal(a.b, d.b, sizeof a.b);
    assert_int_equal(
        proto_import_nonce(id1, label, strlen(label), (const uint8_t *)cf, strlen(cf) - 1, &e),
        PROTO_OK);
    assert_memory_not_equal(a.b, e.b, sizeof a.b);

    /* The construction: BLAKE2b-256 keyed with the Ed25519 seed, the first 16 bytes. */
    crypto_generichash_state st;
    uint8_t h[32], len8 = (uint8_t)strlen(label);
    crypto_generichash_init(&st, s1, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-import-nonce-v1", 21);
    crypto_generichash_update(&st, &len8, 1);
    crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&st, (const uint8_t *)cf, strlen(cf));
    crypto_generichash_final(&st, h, 32);
    assert_memory_equal(a.b, h, sizeof a.b);
    /* Unkeyed, the same input gives something else: the seed is what hides the identifier. */
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-import-nonce-v1", 21);
    crypto_generichash_update(&st, &len8, 1);
    crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&st, (const uint8_t *)cf, strlen(cf));
    crypto_generichash_final(&st, h, 32);
    assert_memory_not_equal(a.b, h, sizeof a.b);

    assert_int_equal(
        proto_import_nonce(id1, "", 0, (const uint8_t *)cf, strlen(cf), &e), PROTO_EINVAL);
    assert_int_equal(
        proto_import_nonce(NULL, label, strlen(label), (const uint8_t *)cf, strlen(cf), &e),
        PROTO_EINVAL);
    proto_identity_free(id1);
    proto_identity_free(id2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delta_round_trip),
        cmocka_unit_test(headers_batch_carries_runs_compact),
        cmocka_unit_test(import_nonce_keyed),
        cmocka_unit_test(forget_round_trip),
        cmocka_unit_test(access_grant_round_trip),
        cmocka_unit_test(access_epoch_round_trip),
        cmocka_unit_test(access_grant_values_checked),
        cmocka_unit_test(access_narrow_round_trip),
        cmocka_unit_test(access_narrow_values_checked),
        cmocka_unit_test(access_narrow_decode_checked),
        cmocka_unit_test(header_bit_flips_rejected),
        cmocka_unit_test(header_id_covers_the_signature),
        cmocka_unit_test(header_hints_and_lengths_checked),
        cmocka_unit_test(body_bit_flips_rejected),
        cmocka_unit_test(associated_data_bit_flips_rejected),
        cmocka_unit_test(body_swapped_under_other_header_rejected),
        cmocka_unit_test(wrong_key_rejected),
        cmocka_unit_test(body_case_scope_epoch_checked),
        cmocka_unit_test(headers_name_nothing),
        cmocka_unit_test(tags_differ_and_need_the_key),
        cmocka_unit_test(padding_hides_lengths),
        cmocka_unit_test(key_grant_round_trip),
        cmocka_unit_test(hints_match_only_the_recipient),
        cmocka_unit_test(grant_shape_hides_the_recipients),
        cmocka_unit_test(largest_grant_fits),
        cmocka_unit_test(grant_seal_arguments_checked),
        cmocka_unit_test(grant_case_id_checked_on_open),
        cmocka_unit_test(key_grant_tampering_rejected),
        cmocka_unit_test(spec_reimplementation_matches_vectors),
        cmocka_unit_test(ed25519_edges_refused),
        cmocka_unit_test(seal_arguments_checked),
        cmocka_unit_test(keyless_body_check_schema_hash_wipe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
