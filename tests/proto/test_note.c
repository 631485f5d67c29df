/*
 * proto.note - notes to an owner (PROTOCOL.md, "Notes to an owner"): round trips of both kinds
 * with 1 and 64 scopes and the largest note; the owner's slot found like a key grant's and
 * nobody else's; every rule refused on sealing and, in hand-made plaintexts sealed per the
 * spec with libsodium alone, on decoding (code, offset and reason); NOTE headers (4 hints, the
 * key grants' body lengths) by encoder and decoder; key-grant and note opening kept apart;
 * tampering; what a note shows; and vectors.txt's [note] and [note-drop] rebuilt from the spec.
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

#include "tutil.h"

typedef struct fx {
    proto_identity *alice, *bob, *carol, *dave; /* alice: the owner's key; carol: the author */
    proto_case_id cid;
    proto_case_nonce nonce;
    proto_scope_key *key; /* a key of the case, to show a note's tag is none of its tags */
} fx;

static int setup(void **state)
{
    tu_seed();
    if (proto_init() != PROTO_OK)
        return -1;
    fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->alice = tu_identity(0x01);
    f->bob = tu_identity(0x41);
    f->carol = tu_identity(0x81);
    f->dave = tu_identity(0x11);
    if (proto_case_id_new("comune-1", 8, tu_rng(), &f->cid, &f->nonce) != PROTO_OK
        || proto_scope_key_new(&f->cid, "sociale", 1, tu_rng(), &f->key) != PROTO_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    proto_scope_key_free(f->key);
    proto_identity_free(f->alice);
    proto_identity_free(f->bob);
    proto_identity_free(f->carol);
    proto_identity_free(f->dave);
    free(f);
    return 0;
}

/* Set a string field, every byte after the string zero (so that whole structs compare). */
#define SET(field, s)                                                                              \
    do {                                                                                           \
        memset(field, 0, sizeof field);                                                            \
        strcpy(field, s);                                                                          \
    } while (0)

/* A withdrawal to comune-1 about cpia-1's access to sociale (zeroed first: whole structs
 * compare). */
static proto_note *note_new(const fx *f, uint8_t kind)
{
    proto_note *n = calloc(1, sizeof *n);
    assert_non_null(n);
    n->kind = kind;
    n->case_id = f->cid;
    SET(n->owner_org, "comune-1");
    SET(n->grantee, "cpia-1");
    SET(n->scopes[0], "sociale");
    n->nscopes = 1;
    if (kind == PROTO_NOTE_WITHDRAWAL)
        SET(n->evidence, "modulo di revoca, prot. 41/2025");
    SET(n->operator_name, "l.verdi");
    SET(n->unix_user, "lverdi");
    return n;
}

static proto_recipient owner_of(const fx *f)
{
    proto_recipient rc;
    memcpy(rc.box_pk, proto_identity_box_pk(f->alice), 32);
    return rc;
}

static const proto_seal_info seal_info = { 5, { 9 }, { 1700000000000, 3 } };

static proto_err seal(const fx *f, const proto_note *n, proto_buf *hb, proto_buf *bb)
{
    proto_recipient rc = owner_of(f);
    return proto_note_seal(f->carol, n, &seal_info, &rc, tu_rng(), hb, bb);
}

/* Seal n, decode and verify the header, find alice's slot, open it into *out. */
static void seal_find_open(const fx *f, const proto_note *n, proto_note *out, proto_header *h,
    proto_buf *hb, proto_buf *bb)
{
    assert_int_equal(seal(f, n, hb, bb), PROTO_OK);
    assert_int_equal(proto_header_decode(hb->p, hb->len, NULL, h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(h), PROTO_OK);
    assert_int_equal(h->kind, PROTO_HDR_NOTE);
    assert_int_equal(h->nhints, PROTO_HINT_SLOTS);
    assert_int_equal(h->seq, seal_info.seq);
    assert_memory_equal(h->origin, proto_identity_origin(f->carol), 32);
    int slot = proto_key_grant_slot(h, f->alice, proto_identity_box_pk(f->carol));
    assert_int_equal(slot, 0);
    proto_diag d = { 0, NULL };
    proto_err err = proto_note_open_slot(h, f->alice, slot, bb->p, bb->len, NULL, out, &d);
    if (err != PROTO_OK)
        fail_msg("open: %s at %zu: %s", proto_strerror(err), d.offset, d.reason);
}

static void assert_note_equal(const proto_note *got, const proto_note *want)
{
    assert_int_equal(got->kind, want->kind);
    assert_memory_equal(got->case_id.b, want->case_id.b, 16);
    assert_string_equal(got->owner_org, want->owner_org);
    assert_string_equal(got->grantee, want->grantee);
    assert_int_equal(got->nscopes, want->nscopes);
    for (size_t i = 0; i < want->nscopes; i++)
        assert_string_equal(got->scopes[i], want->scopes[i]);
    assert_string_equal(got->evidence, want->evidence);
    assert_string_equal(got->operator_name, want->operator_name);
    assert_string_equal(got->unix_user, want->unix_user);
    assert_memory_equal(got, want, sizeof *got); /* nothing else written */
}

/* A body of four boxes of 48 + 256k bytes: 208 + 1024k bytes. */
static size_t body_blocks(size_t len)
{
    assert_true(len >= 208 + 1024);
    assert_int_equal((len - 208) % 1024, 0);
    return (len - 208) / 1024;
}

/* ---------------------------------------------------------------------------------------- */
/* Round trips                                                                               */

static void note_round_trip(void **state)
{
    fx *f = *state;
    const uint8_t kinds[2] = { PROTO_NOTE_WITHDRAWAL, PROTO_NOTE_DROP };
    const size_t counts[2] = { 1, PROTO_NOTE_SCOPES_MAX };
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++) {
            proto_note *n = note_new(f, kinds[k]), *got = malloc(sizeof *got);
            assert_non_null(got);
            n->nscopes = counts[c];
            for (size_t i = 0; i < n->nscopes; i++) /* in no order: scope-63 ... scope-00 */
                snprintf(n->scopes[i], sizeof n->scopes[i], "scope-%02zu", n->nscopes - 1 - i);
            if (kinds[k] == PROTO_NOTE_DROP)
                SET(n->unix_user, "");
            proto_header h;
            proto_buf hb, bb;
            seal_find_open(f, n, got, &h, &hb, &bb);
            assert_note_equal(got, n);
            /* the key grants' body length rule; a keyless member checks the body alike */
            assert_int_equal(h.body_len, bb.len);
            assert_int_equal(body_blocks(bb.len), c == 0 ? 1 : 3);
            assert_int_equal(proto_body_check(&h, bb.p, bb.len), PROTO_OK);
            /* the slot from the hint key a node keeps per author */
            uint8_t k_alice[32];
            assert_true(proto_hint_key(f->alice, proto_identity_box_pk(f->carol), k_alice));
            assert_int_equal(proto_key_grant_slot_k(&h, k_alice), 0);
            proto_wipe(k_alice, sizeof k_alice);
            free(n);
            free(got);
            proto_buf_free(&hb);
            proto_buf_free(&bb);
        }
}

/* The largest note: org ids of 32 bytes, 64 scopes of 32 bytes, evidence and operator of 1024
 * bytes (multi-byte UTF-8), a unix user of 64: 18 blocks, within the key grants' 54. */
static void largest_note_fits(void **state)
{
    fx *f = *state;
    proto_note *n = note_new(f, PROTO_NOTE_WITHDRAWAL), *got = malloc(sizeof *got);
    assert_non_null(got);
    SET(n->owner_org, "comune-di-sezze-romano-latina-lt");
    SET(n->grantee, "cooperativa-sociale-aurora-lt-01");
    assert_int_equal(strlen(n->owner_org), 32);
    assert_int_equal(strlen(n->grantee), 32);
    n->nscopes = PROTO_NOTE_SCOPES_MAX;
    for (size_t i = 0; i < n->nscopes; i++) {
        snprintf(n->scopes[i], sizeof n->scopes[i], "scope_%02zu", i);
        memset(n->scopes[i] + 8, 'x', 24);
        n->scopes[i][32] = '\0';
    }
    for (size_t i = 0; i < PROTO_TEXT_MAX; i += 2)
        memcpy(n->evidence + i, "\xc3\xa8", 2); /* è */
    n->evidence[PROTO_TEXT_MAX] = '\0';
    memset(n->operator_name, 'o', PROTO_TEXT_MAX);
    n->operator_name[PROTO_TEXT_MAX] = '\0';
    memset(n->unix_user, 'u', 64);
    n->unix_user[64] = '\0';
    proto_header h;
    proto_buf hb, bb;
    seal_find_open(f, n, got, &h, &hb, &bb);
    assert_note_equal(got, n);
    /* 4389 bytes of plaintext, padded to 18 blocks */
    assert_int_equal(body_blocks(bb.len), 18);
    free(n);
    free(got);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* Only the owner finds a slot, with the author's box key, at the header's place; a wrong slot
 * or identity does not open. */
static void only_the_owner_finds_a_slot(void **state)
{
    fx *f = *state;
    proto_note *n = note_new(f, PROTO_NOTE_DROP), *got = malloc(sizeof *got);
    assert_non_null(got);
    proto_header h;
    proto_buf hb, bb;
    seal_find_open(f, n, got, &h, &hb, &bb);
    const uint8_t *cpk = proto_identity_box_pk(f->carol);
    assert_int_equal(proto_key_grant_slot(&h, f->bob, cpk), -1);
    assert_int_equal(proto_key_grant_slot(&h, f->dave, cpk), -1);
    assert_int_equal(proto_key_grant_slot(&h, f->carol, cpk), -1); /* not even its author */
    assert_int_equal(proto_key_grant_slot(&h, f->alice, proto_identity_box_pk(f->bob)), -1);
    uint8_t zero[32] = { 0 };
    assert_int_equal(proto_key_grant_slot(&h, f->alice, zero), -1);
    proto_header moved = h;
    moved.seq++;
    assert_int_equal(proto_key_grant_slot(&moved, f->alice, cpk), -1);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            assert_memory_not_equal(h.hints[i].b, h.hints[j].b, PROTO_HINT_LEN);
    /* a non-recipient cannot open the owner's box, nor any other */
    for (int s = 0; s < 4; s++)
        assert_int_equal(
            proto_note_open_slot(&h, f->bob, s, bb.p, bb.len, NULL, got, NULL), PROTO_ESEAL);
    for (int s = 1; s < 4; s++) /* the others are filler bytes */
        assert_int_equal(
            proto_note_open_slot(&h, f->alice, s, bb.p, bb.len, NULL, got, NULL), PROTO_ESEAL);
    assert_int_equal(
        proto_note_open_slot(&h, f->alice, -1, bb.p, bb.len, NULL, got, NULL), PROTO_ENOTRECIPIENT);
    assert_int_equal(
        proto_note_open_slot(&h, f->alice, 4, bb.p, bb.len, NULL, got, NULL), PROTO_ENOTRECIPIENT);
    free(n);
    free(got);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
}

/* ---------------------------------------------------------------------------------------- */
/* Rules on sealing                                                                          */

#define SEAL_CASES 27

/* Case c of a broken note (into n, fresh from note_new) and the error sealing gives. */
static proto_err seal_variant(
    const fx *f, int c, proto_note *n, proto_seal_info *info, proto_recipient *rc)
{
    (void)f;
    switch (c) {
    case 0:
        n->kind = 0;
        return PROTO_EVALUE;
    case 1:
        n->kind = 3;
        return PROTO_EVALUE;
    case 2:
        SET(n->grantee, "comune-1"); /* owner == grantee */
        return PROTO_EVALUE;
    case 3:
        SET(n->owner_org, "Comune-1");
        return PROTO_EVALUE;
    case 4:
        SET(n->owner_org, "");
        return PROTO_EVALUE;
    case 5:
        SET(n->grantee, "cpia_1");
        return PROTO_EVALUE;
    case 6:
        SET(n->grantee, "");
        return PROTO_EVALUE;
    case 7:
        n->nscopes = 0;
        return PROTO_EVALUE;
    case 8:
        n->nscopes = PROTO_NOTE_SCOPES_MAX + 1;
        return PROTO_ELIMIT;
    case 9:
        SET(n->scopes[1], "documenti");
        SET(n->scopes[2], "sociale"); /* twice, not next to each other */
        n->nscopes = 3;
        return PROTO_EVALUE;
    case 10:
        SET(n->scopes[1], "Sociale");
        n->nscopes = 2;
        return PROTO_EVALUE;
    case 11:
        SET(n->scopes[0], "");
        return PROTO_EVALUE;
    case 12:
        SET(n->scopes[0], "sociale.note");
        return PROTO_EVALUE;
    case 13:
        SET(n->evidence, ""); /* a withdrawal without evidence */
        return PROTO_EVALUE;
    case 14:
        SET(n->evidence, "   ");
        return PROTO_EVALUE;
    case 15:
        SET(n->evidence, "prot.\t41");
        return PROTO_EVALUE;
    case 16:
        SET(n->operator_name, "");
        return PROTO_EVALUE;
    case 17:
        SET(n->operator_name, "  ");
        return PROTO_EVALUE;
    case 18:
        SET(n->operator_name, "l.verdi\xff");
        return PROTO_EVALUE;
    case 19:
        SET(n->unix_user, "luca verdi");
        return PROTO_EVALUE;
    case 20:
        SET(n->unix_user, "l\x7f");
        return PROTO_EVALUE;
    case 21:
        memset(n->owner_org, 'a', sizeof n->owner_org); /* no NUL */
        return PROTO_EINVAL;
    case 22:
        memset(n->scopes[0], 'a', sizeof n->scopes[0]);
        return PROTO_EINVAL;
    case 23:
        memset(n->evidence, 'a', sizeof n->evidence);
        return PROTO_EINVAL;
    case 24:
        info->seq = 0;
        return PROTO_EVALUE;
    case 25:
        info->seq = 1; /* with a prev */
        return PROTO_EVALUE;
    default:
        memset(rc->box_pk, 0, 32); /* an owner key of low order */
        return PROTO_EVALUE;
    }
}

static void note_rules_checked_on_sealing(void **state)
{
    fx *f = *state;
    for (int c = 0; c < SEAL_CASES; c++) {
        proto_note *n = note_new(f, PROTO_NOTE_WITHDRAWAL);
        proto_seal_info info = seal_info;
        proto_recipient rc = owner_of(f);
        proto_err want = seal_variant(f, c, n, &info, &rc);
        proto_buf hb = { (uint8_t *)1, 1 }, bb = { (uint8_t *)1, 1 };
        proto_err err = proto_note_seal(f->carol, n, &info, &rc, tu_rng(), &hb, &bb);
        if (err != want)
            fail_msg("note case %d sealed with %s, want %s", c, proto_strerror(err),
                proto_strerror(want));
        assert_null(hb.p);
        assert_null(bb.p);
        free(n);
    }
    /* what the rules allow: a drop without evidence or unix user, the same scope name as
     * another's prefix, a Unix user of any printable ASCII */
    proto_note *n = note_new(f, PROTO_NOTE_DROP);
    SET(n->unix_user, "");
    SET(n->scopes[1], "sociale_2");
    SET(n->scopes[2], "sociale-");
    n->nscopes = 3;
    proto_buf hb, bb;
    assert_int_equal(seal(f, n, &hb, &bb), PROTO_OK);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    SET(n->unix_user, "L.Verdi@COMUNE.local$");
    SET(n->evidence, "richiesta dell'ente, prot. 7");
    assert_int_equal(seal(f, n, &hb, &bb), PROTO_OK);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    proto_recipient rc = owner_of(f);
    assert_int_equal(proto_note_seal(NULL, n, &seal_info, &rc, NULL, &hb, &bb), PROTO_EINVAL);
    assert_int_equal(
        proto_note_seal(f->carol, NULL, &seal_info, &rc, NULL, &hb, &bb), PROTO_EINVAL);
    assert_int_equal(proto_note_seal(f->carol, n, NULL, &rc, NULL, &hb, &bb), PROTO_EINVAL);
    assert_int_equal(proto_note_seal(f->carol, n, &seal_info, NULL, NULL, &hb, &bb), PROTO_EINVAL);
    assert_int_equal(proto_note_seal(f->carol, n, &seal_info, &rc, NULL, NULL, &bb), PROTO_EINVAL);
    free(n);
}

/* ---------------------------------------------------------------------------------------- */
/* Rules on decoding: hand-made plaintexts sealed per PROTOCOL.md with libsodium alone        */

/* A NOTE_PLAIN as PROTOCOL.md lays it out, whatever its values. */
typedef struct hand {
    uint64_t version, kind, note_kind;
    uint32_t nfields; /* 10; fewer drops the last fields */
    size_t case_len;
    const char *owner, *grantee;
    const char *scopes[PROTO_NOTE_SCOPES_MAX + 2];
    uint32_t nscopes;
    bool scope_bin; /* scope 0 as bin instead of str */
    const char *evidence, *operator_name, *unix_user;
} hand;

static hand hand_good(void)
{
    hand x = { PROTO_VERSION, PROTO_K_NOTE_PLAIN, PROTO_NOTE_WITHDRAWAL, 10, 16, "comune-1",
        "cpia-1", { "sociale", "documenti" }, 2, false, "prot. 41/2025", "l.verdi", "lverdi" };
    return x;
}

/* off[i]: the offset of field i; soff[j]: of scope j. */
static void hand_plain(const fx *f, const hand *x, tb *b, size_t off[10], size_t *soff)
{
    uint8_t cid[20] = { 0 };
    memcpy(cid, f->cid.b, 16);
    tb_array(b, x->nfields);
    const uint32_t nf = x->nfields;
    for (uint32_t i = 0; i < nf && i < 10; i++) {
        off[i] = b->len;
        switch (i) {
        case 0:
            tb_uint(b, x->version);
            break;
        case 1:
            tb_uint(b, x->kind);
            break;
        case 2:
            tb_uint(b, x->note_kind);
            break;
        case 3:
            tb_bin(b, cid, x->case_len);
            break;
        case 4:
            tb_str(b, x->owner);
            break;
        case 5:
            tb_str(b, x->grantee);
            break;
        case 6:
            tb_array(b, x->nscopes);
            for (uint32_t j = 0; j < x->nscopes; j++) {
                soff[j] = b->len;
                if (j == 0 && x->scope_bin)
                    tb_bin(b, x->scopes[j], strlen(x->scopes[j]));
                else
                    tb_str(b, x->scopes[j]);
            }
            break;
        case 7:
            tb_str(b, x->evidence);
            break;
        case 8:
            tb_str(b, x->operator_name);
            break;
        default:
            tb_str(b, x->unix_user);
            break;
        }
    }
}

/* The hint of `to` in a note by `from` at seq, per PROTOCOL.md with libsodium alone. */
static void spec_hint(
    const proto_identity *from, const proto_identity *to, uint64_t seq, uint8_t out[PROTO_HINT_LEN])
{
    uint8_t sign_seed[32], box_seed[32], pk[32], sk[32], ss[32], k[32], h[32], be[8];
    proto_identity_seeds(to, sign_seed, box_seed);
    crypto_box_seed_keypair(pk, sk, box_seed);
    assert_int_equal(crypto_scalarmult(ss, sk, proto_identity_box_pk(from)), 0);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-key-v2", 17);
    crypto_generichash_update(&st, ss, 32);
    crypto_generichash_update(&st, proto_identity_box_pk(from), 32);
    crypto_generichash_update(&st, pk, 32);
    crypto_generichash_final(&st, k, 32);
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(seq >> (56 - 8 * i));
    crypto_generichash_init(&st, k, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"patto-hint-v2", 13);
    crypto_generichash_update(&st, proto_identity_origin(from), 32);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_final(&st, h, 32);
    memcpy(out, h, PROTO_HINT_LEN);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(ss, sizeof ss);
    sodium_memzero(k, sizeof k);
    sodium_memzero(box_seed, sizeof box_seed);
    sodium_memzero(sign_seed, sizeof sign_seed);
}

/* Seal m (n bytes) to alice per PROTOCOL.md (sodium_pad to 256 unless !pad, crypto_box_seal,
 * box 0 of a GRANT_BODY, random filler boxes) under a NOTE header by carol at seq 1 with alice's
 * hint in slot 0 and a random tag; alice finds slot 0 and opens it. */
static proto_err open_spec(
    const fx *f, const uint8_t *m, size_t n, bool pad, proto_note *out, proto_diag *d)
{
    size_t padded_max = (n / 256 + 1) * 256, padded = padded_max;
    size_t l = 48 + padded_max;
    uint8_t *pt = calloc(1, padded_max), *boxes = malloc(4 * l);
    assert_non_null(pt);
    assert_non_null(boxes);
    memcpy(pt, m, n);
    if (pad)
        assert_int_equal(sodium_pad(&padded, pt, n, 256, padded_max), 0);
    assert_int_equal(padded, padded_max);
    assert_int_equal(crypto_box_seal(boxes, pt, padded, proto_identity_box_pk(f->alice)), 0);
    randombytes_buf(boxes + l, 3 * l);
    tb b = { 0 };
    tb_array(&b, 3);
    tb_uint(&b, PROTO_VERSION);
    tb_uint(&b, 4);
    tb_array(&b, 4);
    for (int i = 0; i < 4; i++)
        tb_bin(&b, boxes + i * l, l);
    proto_header h;
    memset(&h, 0, sizeof h);
    h.kind = PROTO_HDR_NOTE;
    memcpy(h.origin, proto_identity_origin(f->carol), 32);
    h.seq = 1;
    h.hlc.wall = 1700000000000;
    randombytes_buf(h.tag, 32);
    h.nhints = 4;
    spec_hint(f->carol, f->alice, 1, h.hints[0].b);
    for (int i = 1; i < 4; i++)
        randombytes_buf(h.hints[i].b, 16);
    h.body_len = b.len;
    crypto_generichash(h.body_hash, 32, b.p, b.len, NULL, 0);
    int slot = proto_key_grant_slot(&h, f->alice, proto_identity_box_pk(f->carol));
    assert_int_equal(slot, 0);
    *d = (proto_diag) { 0, NULL };
    proto_err err = proto_note_open_slot(&h, f->alice, slot, b.p, b.len, NULL, out, d);
    tb_free(&b);
    free(pt);
    free(boxes);
    return err;
}

/* A broken hand-made note: case c changes x; returns the error and sets *field (0..9) or, for
 * a scope, *scope (its index), where the diagnostic must point. */
#define DECODE_CASES 28
static proto_err decode_variant(int c, hand *x, int *field, int *scope, char *big)
{
    *scope = -1;
    switch (c) {
    case 0:
        x->note_kind = 0;
        *field = 2;
        return PROTO_EVALUE;
    case 1:
        x->note_kind = 3;
        *field = 2;
        return PROTO_EVALUE;
    case 2:
        x->note_kind = 256;
        *field = 2;
        return PROTO_EVALUE;
    case 3:
        x->grantee = "comune-1"; /* owner == grantee */
        *field = 5;
        return PROTO_EVALUE;
    case 4:
        x->owner = "Comune-1";
        *field = 4;
        return PROTO_EVALUE;
    case 5:
        x->owner = "";
        *field = 4;
        return PROTO_EVALUE;
    case 6:
        x->grantee = "cpia_1";
        *field = 5;
        return PROTO_EVALUE;
    case 7:
        x->grantee = "abcdefghijklmnopqrstuvwxyz0123456"; /* 33 */
        *field = 5;
        return PROTO_ELIMIT;
    case 8:
        x->nscopes = 0;
        *field = 6;
        return PROTO_EVALUE;
    case 9:
        x->nscopes = PROTO_NOTE_SCOPES_MAX + 1;
        for (uint32_t i = 0; i < x->nscopes; i++)
            x->scopes[i] = "sociale";
        *field = 6;
        return PROTO_ELIMIT;
    case 10:
        x->scopes[2] = "sociale"; /* twice */
        x->nscopes = 3;
        *field = 6;
        *scope = 2;
        return PROTO_EVALUE;
    case 11:
        x->scopes[1] = "Documenti";
        *field = 6;
        *scope = 1;
        return PROTO_EVALUE;
    case 12:
        x->scopes[1] = "";
        *field = 6;
        *scope = 1;
        return PROTO_EVALUE;
    case 13:
        x->scopes[1] = "scope_with_a_name_of_33_bytes_xxx";
        *field = 6;
        *scope = 1;
        return PROTO_ELIMIT;
    case 14:
        x->scope_bin = true;
        *field = 6;
        *scope = 0;
        return PROTO_ESHAPE;
    case 15:
        x->evidence = ""; /* a withdrawal without evidence */
        *field = 7;
        return PROTO_EVALUE;
    case 16:
        x->evidence = " ";
        *field = 7;
        return PROTO_EVALUE;
    case 17:
        memset(big, 'e', 1025);
        big[1025] = '\0';
        x->evidence = big;
        *field = 7;
        return PROTO_ELIMIT;
    case 18:
        x->operator_name = "";
        *field = 8;
        return PROTO_EVALUE;
    case 19:
        x->operator_name = "   ";
        *field = 8;
        return PROTO_EVALUE;
    case 20:
        x->operator_name = "l.verdi\x1b[0m";
        *field = 8;
        return PROTO_EVALUE;
    case 21:
        x->unix_user = "luca verdi";
        *field = 9;
        return PROTO_EVALUE;
    case 22:
        memset(big, 'u', 65);
        big[65] = '\0';
        x->unix_user = big;
        *field = 9;
        return PROTO_ELIMIT;
    case 23:
        x->case_len = 15;
        *field = 3;
        return PROTO_ESHAPE;
    case 24:
        x->kind = PROTO_K_GRANT_PLAIN;
        *field = 1;
        return PROTO_EKIND;
    case 25:
        x->version = 1;
        *field = 0;
        return PROTO_EVERSION;
    case 26:
        x->nfields = 9; /* the unix user missing */
        *field = -1;    /* the whole message */
        return PROTO_ESHAPE;
    default:
        x->note_kind = PROTO_NOTE_DROP; /* a drop may name no evidence... */
        x->evidence = "";
        x->unix_user = "l.verdi\xc3\xa8"; /* ...but a unix user is ASCII */
        *field = 9;
        return PROTO_EVALUE;
    }
}

static void note_rules_checked_on_decoding(void **state)
{
    fx *f = *state;
    proto_note *got = malloc(sizeof *got);
    assert_non_null(got);
    size_t off[10], soff[PROTO_NOTE_SCOPES_MAX + 2];
    proto_diag d;
    /* the hand-made form of a good note is what proto_note_seal writes */
    hand x = hand_good();
    tb m = { 0 };
    hand_plain(f, &x, &m, off, soff);
    assert_int_equal(open_spec(f, m.p, m.len, true, got, &d), PROTO_OK);
    proto_note *want = note_new(f, PROTO_NOTE_WITHDRAWAL);
    SET(want->scopes[1], "documenti");
    want->nscopes = 2;
    SET(want->evidence, "prot. 41/2025");
    assert_note_equal(got, want);
    proto_buf hb, bb;
    assert_int_equal(seal(f, want, &hb, &bb), PROTO_OK);
    uint8_t sign_seed[32], seed[32], pk[32], sk[32];
    proto_identity_seeds(f->alice, sign_seed, seed);
    crypto_box_seed_keypair(pk, sk, seed);
    sodium_memzero(sign_seed, sizeof sign_seed);
    size_t l = (bb.len - 16) / 4, plen;
    uint8_t *pt = malloc(l);
    assert_non_null(pt);
    assert_int_equal(crypto_box_seal_open(pt, bb.p + 7, l, pk, sk), 0);
    assert_int_equal(sodium_unpad(&plen, pt, l - 48, 256), 0);
    assert_int_equal(plen, m.len);
    assert_memory_equal(pt, m.p, m.len);
    sodium_memzero(sk, sizeof sk);
    free(pt);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    tb_free(&m);
    free(want);

    char *big = malloc(2048);
    assert_non_null(big);
    for (int c = 0; c < DECODE_CASES; c++) {
        x = hand_good();
        int field, scope;
        proto_err want_err = decode_variant(c, &x, &field, &scope, big);
        m = (tb) { 0 };
        hand_plain(f, &x, &m, off, soff);
        proto_err err = open_spec(f, m.p, m.len, true, got, &d);
        if (err != want_err)
            fail_msg("note plaintext case %d: %s (%s), want %s", c, proto_strerror(err),
                d.reason != NULL ? d.reason : "-", proto_strerror(want_err));
        assert_non_null(d.reason);
        size_t at = field < 0 ? 0 : scope >= 0 ? soff[scope] : off[field];
        if (d.offset != at)
            fail_msg(
                "note plaintext case %d: offset %zu (%s), want %zu", c, d.offset, d.reason, at);
        /* nothing of a refused note is left */
        for (size_t i = 0; i < sizeof *got; i++)
            if (((const uint8_t *)got)[i] != 0)
                fail_msg("note plaintext case %d: refused note not wiped at byte %zu", c, i);
        tb_free(&m);
    }
    free(big);
    /* the padding: a box whose plaintext has no 0x80 marker */
    x = hand_good();
    m = (tb) { 0 };
    hand_plain(f, &x, &m, off, soff);
    assert_int_equal(open_spec(f, m.p, m.len, false, got, &d), PROTO_EPAD);
    tb_free(&m);
    free(got);
}

/* ---------------------------------------------------------------------------------------- */
/* Headers, kinds, tampering, what a note shows                                              */

/* HEADER_FIELDS of kind k with nh hints and body length len, signed by carol, as bytes; *kind_at
 * and *hints_at are the offsets of those fields in the whole HEADER. */
static void hand_header(
    const fx *f, uint64_t k, uint32_t nh, uint64_t len, tb *out, size_t *kind_at, size_t *hints_at)
{
    uint8_t z[32] = { 0 }, sig[64];
    tb in = { 0 };
    tb_array(&in, 12);
    tb_uint(&in, PROTO_VERSION);
    tb_uint(&in, 2);
    size_t k_off = in.len;
    tb_uint(&in, k);
    tb_bin(&in, proto_identity_origin(f->carol), 32);
    tb_uint(&in, 1);
    tb_bin(&in, z, 32);
    tb_uint(&in, 1700000000000);
    tb_uint(&in, 0);
    tb_bin(&in, proto_scope_key_tag(f->key), 32);
    size_t h_off = in.len;
    tb_array(&in, nh);
    for (uint32_t i = 0; i < nh; i++)
        tb_bin(&in, z, 16);
    tb_uint(&in, len);
    tb_bin(&in, z, 32);
    memset(sig, 0x55, sizeof sig);
    tb_array(out, 4);
    tb_uint(out, PROTO_VERSION);
    tb_uint(out, 1);
    tb_bin(out, in.p, in.len);
    size_t base = out->len - in.len;
    tb_bin(out, sig, 64);
    *kind_at = base + k_off;
    *hints_at = base + h_off;
    tb_free(&in);
}

static void note_headers_checked(void **state)
{
    fx *f = *state;
    const uint64_t one_block = 16 + 4 * (48 + 256);
    struct {
        uint64_t kind;
        uint32_t nh;
        uint64_t len;
        proto_err want;
        int at; /* 0: the kind, 1: the hints, 2: the body length (the field after the hints) */
    } cases[] = {
        { PROTO_HDR_NOTE, 4, one_block, PROTO_OK, 0 },
        { PROTO_HDR_NOTE, 4, 16 + 4 * (48 + 256 * 54), PROTO_OK, 0 },
        { PROTO_HDR_NOTE, 0, one_block, PROTO_EVALUE, 1 },
        { PROTO_HDR_NOTE, 3, one_block, PROTO_EVALUE, 1 },
        { PROTO_HDR_NOTE, 4, 40 + 256, PROTO_EVALUE, 2 }, /* a delta's length */
        { PROTO_HDR_NOTE, 4, one_block + 1, PROTO_EVALUE, 2 },
        { PROTO_HDR_NOTE, 4, 16 + 4 * (48 + 256 * 55), PROTO_EVALUE, 2 },
        { PROTO_HDR_KEY_GRANT, 4, one_block, PROTO_OK, 0 },
        { PROTO_HDR_KEY_GRANT, 0, one_block, PROTO_EVALUE, 1 },
        { PROTO_HDR_DELTA, 4, 40 + 256, PROTO_EVALUE, 1 },
        { PROTO_HDR_DELTA, 0, 40 + 256, PROTO_OK, 0 },
        { 0, 4, one_block, PROTO_EVALUE, 0 },
        { 4, 4, one_block, PROTO_EVALUE, 0 },
        { 255, 4, one_block, PROTO_EVALUE, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tb m = { 0 };
        size_t kind_at, hints_at;
        hand_header(f, cases[i].kind, cases[i].nh, cases[i].len, &m, &kind_at, &hints_at);
        proto_header h;
        proto_diag d = { 0, NULL };
        proto_err err = proto_header_decode(m.p, m.len, NULL, &h, &d);
        if (err != cases[i].want)
            fail_msg("header case %zu: %s, want %s", i, proto_strerror(err),
                proto_strerror(cases[i].want));
        if (err == PROTO_OK) {
            assert_int_equal(h.kind, cases[i].kind);
            /* the encoder takes what the decoder takes, byte for byte */
            proto_buf out;
            assert_int_equal(proto_header_encode(&h, &out), PROTO_OK);
            assert_int_equal(out.len, m.len);
            assert_memory_equal(out.p, m.p, m.len);
            proto_buf_free(&out);
        } else {
            size_t want_at = cases[i].at == 0 ? kind_at
                : cases[i].at == 1            ? hints_at
                                   : hints_at + 1 + 18 * cases[i].nh; /* bin 8 of 16 each */
            if (d.offset != want_at)
                fail_msg(
                    "header case %zu: offset %zu (%s), want %zu", i, d.offset, d.reason, want_at);
            if (cases[i].kind == PROTO_HDR_NOTE && cases[i].at == 1)
                assert_non_null(strstr(d.reason, "exactly 4 hints"));
            /* and the encoder refuses the same fields */
            memset(&h, 0, sizeof h);
            h.kind = (uint8_t)cases[i].kind;
            h.seq = 1;
            h.nhints = cases[i].nh;
            h.body_len = cases[i].len;
            proto_buf out;
            assert_int_equal(proto_header_encode(&h, &out), PROTO_EVALUE);
        }
        tb_free(&m);
    }
}

/* A NOTE header opens only as a note, a KEY_GRANT header only as a grant. */
static void note_and_grant_kept_apart(void **state)
{
    fx *f = *state;
    proto_note *n = note_new(f, PROTO_NOTE_WITHDRAWAL), *got = malloc(sizeof *got);
    assert_non_null(got);
    proto_header nh;
    proto_buf nhb, nbb;
    seal_find_open(f, n, got, &nh, &nhb, &nbb);
    proto_grant g;
    const uint8_t *cpk = proto_identity_box_pk(f->carol);
    assert_int_equal(
        proto_key_grant_open_slot(&nh, f->alice, 0, nbb.p, nbb.len, NULL, &g, NULL), PROTO_EKIND);
    assert_int_equal(
        proto_key_grant_open(&nh, f->alice, cpk, nbb.p, nbb.len, NULL, &g, NULL), PROTO_EKIND);
    /* a key grant by carol to alice: its slot is found the same way, it opens as a grant */
    proto_case_nonce cn;
    proto_case_id cc;
    proto_scope_key *k;
    assert_int_equal(proto_case_id_new("prefettura-lt", 13, tu_rng(), &cc, &cn), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&cc, "sociale", 1, tu_rng(), &k), PROTO_OK);
    proto_recipient rc = owner_of(f);
    const proto_scope_key *keys[1] = { k };
    proto_buf ghb, gbb;
    assert_int_equal(proto_key_grant_seal(f->carol, "prefettura-lt", &cn, keys, 1, &seal_info, &rc,
                         1, tu_rng(), &ghb, &gbb),
        PROTO_OK);
    proto_header gh;
    assert_int_equal(proto_header_decode(ghb.p, ghb.len, NULL, &gh, NULL), PROTO_OK);
    assert_int_equal(proto_key_grant_slot(&gh, f->alice, cpk), 0);
    assert_int_equal(
        proto_note_open_slot(&gh, f->alice, 0, gbb.p, gbb.len, NULL, got, NULL), PROTO_EKIND);
    assert_int_equal(
        proto_key_grant_open_slot(&gh, f->alice, 0, gbb.p, gbb.len, NULL, &g, NULL), PROTO_OK);
    proto_grant_fini(&g);
    /* a note body under a grant header (an insider re-signing kind, length and hash) does not
     * decode as a grant, nor a grant body as a note */
    proto_header forged = gh;
    forged.body_len = nbb.len;
    crypto_generichash(forged.body_hash, 32, nbb.p, nbb.len, NULL, 0);
    assert_int_equal(
        proto_key_grant_open_slot(&forged, f->alice, 0, nbb.p, nbb.len, NULL, &g, NULL),
        PROTO_EKIND);
    forged = nh;
    forged.body_len = gbb.len;
    crypto_generichash(forged.body_hash, 32, gbb.p, gbb.len, NULL, 0);
    assert_int_equal(
        proto_note_open_slot(&forged, f->alice, 0, gbb.p, gbb.len, NULL, got, NULL), PROTO_EKIND);
    /* the header's kind decides, before anything of the body: a grant body under a header
     * re-signed as a note, a note body under one re-signed as a grant */
    forged = gh;
    forged.kind = PROTO_HDR_NOTE;
    assert_int_equal(
        proto_key_grant_open_slot(&forged, f->alice, 0, gbb.p, gbb.len, NULL, &g, NULL),
        PROTO_EKIND);
    forged = nh;
    forged.kind = PROTO_HDR_KEY_GRANT;
    assert_int_equal(
        proto_note_open_slot(&forged, f->alice, 0, nbb.p, nbb.len, NULL, got, NULL), PROTO_EKIND);
    assert_int_equal(
        proto_key_grant_open_slot(&nh, f->alice, -1, nbb.p, nbb.len, NULL, &g, NULL), PROTO_EKIND);
    assert_int_equal(
        proto_note_open_slot(&gh, f->alice, -1, gbb.p, gbb.len, NULL, got, NULL), PROTO_EKIND);
    /* nor does a delta header serve */
    proto_header dh = nh;
    dh.kind = PROTO_HDR_DELTA;
    dh.nhints = 0;
    assert_int_equal(proto_key_grant_slot(&dh, f->alice, cpk), -1);
    assert_int_equal(
        proto_note_open_slot(&dh, f->alice, 0, nbb.p, nbb.len, NULL, got, NULL), PROTO_EKIND);
    assert_int_equal(
        proto_note_open_slot(NULL, f->alice, 0, nbb.p, nbb.len, NULL, got, NULL), PROTO_EINVAL);
    assert_int_equal(
        proto_note_open_slot(&nh, f->alice, 0, NULL, 5, NULL, got, NULL), PROTO_EINVAL);
    proto_scope_key_free(k);
    proto_buf_free(&ghb);
    proto_buf_free(&gbb);
    proto_buf_free(&nhb);
    proto_buf_free(&nbb);
    free(n);
    free(got);
}

static void note_tampering_rejected(void **state)
{
    fx *f = *state;
    proto_note *n = note_new(f, PROTO_NOTE_WITHDRAWAL), *got = malloc(sizeof *got);
    assert_non_null(got);
    proto_header h;
    proto_buf hb, bb;
    seal_find_open(f, n, got, &h, &hb, &bb);
    size_t l = (bb.len - 16) / 4;
    uint8_t *q = malloc(bb.len);
    assert_non_null(q);
    for (size_t bit = 0; bit < bb.len * 8; bit++) {
        memcpy(q, bb.p, bb.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(
            proto_note_open_slot(&h, f->alice, 0, q, bb.len, NULL, got, NULL), PROTO_EBODYHASH);
        /* with the hash recomputed: the owner's box fails to open, framing fails to decode,
         * and a change in another box does not concern the owner */
        proto_header h2 = h;
        crypto_generichash(h2.body_hash, 32, q, bb.len, NULL, 0);
        size_t byte = bit / 8, in_box = 4;
        for (size_t i = 0; i < 4; i++) {
            size_t start = 4 + i * (3 + l) + 3;
            if (byte >= start && byte < start + l)
                in_box = i;
        }
        proto_err err = proto_note_open_slot(&h2, f->alice, 0, q, bb.len, NULL, got, NULL);
        if (in_box == 0)
            assert_int_equal(err, PROTO_ESEAL);
        else if (in_box < 4)
            assert_int_equal(err, PROTO_OK);
        else
            assert_int_not_equal(err, PROTO_OK);
    }
    free(q);
    assert_int_equal(
        proto_note_open_slot(&h, f->alice, 0, bb.p, bb.len - 1, NULL, got, NULL), PROTO_EBODYLEN);
    /* every bit of the header: never a verified header that finds the owner's slot and opens */
    for (size_t bit = 0; bit < hb.len * 8; bit++) {
        uint8_t *x = malloc(hb.len);
        assert_non_null(x);
        memcpy(x, hb.p, hb.len);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        proto_header t;
        if (proto_header_decode(x, hb.len, NULL, &t, NULL) == PROTO_OK)
            assert_int_equal(proto_header_verify(&t), PROTO_ESIG);
        free(x);
    }
    free(n);
    free(got);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
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

/* A note shows no case id, org, scope or text; its tag is random (no key's, never twice); it
 * is as long as a key grant of one block. */
static void note_shows_nothing(void **state)
{
    fx *f = *state;
    proto_note *n = note_new(f, PROTO_NOTE_WITHDRAWAL);
    SET(n->scopes[1], "documenti");
    n->nscopes = 2;
    proto_buf hb[2], bb[2];
    proto_header h[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seal(f, n, &hb[i], &bb[i]), PROTO_OK);
        assert_int_equal(proto_header_decode(hb[i].p, hb[i].len, NULL, &h[i], NULL), PROTO_OK);
        const char *words[]
            = { "comune-1", "cpia-1", "sociale", "documenti", "prot. 41", "l.verdi", "lverdi" };
        for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
            assert_false(contains(hb[i].p, hb[i].len, words[w], strlen(words[w])));
            assert_false(contains(bb[i].p, bb[i].len, words[w], strlen(words[w])));
        }
        for (size_t k = 4; k <= 16; k += 4) {
            assert_false(contains(hb[i].p, hb[i].len, f->cid.b + k - 4, 4));
            assert_false(contains(bb[i].p, bb[i].len, f->cid.b + k - 4, 4));
        }
        assert_false(contains(hb[i].p, hb[i].len, proto_identity_box_pk(f->alice), 32));
        assert_false(contains(hb[i].p, hb[i].len, proto_identity_origin(f->alice), 32));
        assert_false(contains(bb[i].p, bb[i].len, proto_identity_box_pk(f->alice), 32));
        assert_memory_not_equal(h[i].tag, proto_scope_key_tag(f->key), 32);
    }
    /* the same note twice: other tags, other boxes (the owner's hint is bound to the header's
     * place, not to its contents: the same at the same seq, the random ones differ) */
    assert_memory_not_equal(h[0].tag, h[1].tag, 32);
    assert_memory_equal(h[0].hints[0].b, h[1].hints[0].b, 16);
    for (int i = 1; i < 4; i++)
        assert_memory_not_equal(h[0].hints[i].b, h[1].hints[i].b, 16);
    assert_int_equal(bb[0].len, bb[1].len);
    assert_memory_not_equal(bb[0].p, bb[1].p, bb[0].len);
    /* as long as a key grant of one key to one member */
    const proto_scope_key *keys[1] = { f->key };
    proto_recipient rc = owner_of(f);
    proto_buf ghb, gbb;
    assert_int_equal(proto_key_grant_seal(f->carol, "comune-1", &f->nonce, keys, 1, &seal_info, &rc,
                         1, tu_rng(), &ghb, &gbb),
        PROTO_OK);
    assert_int_equal(gbb.len, bb[0].len);
    assert_int_equal(ghb.len, hb[0].len);
    proto_buf_free(&ghb);
    proto_buf_free(&gbb);
    for (int i = 0; i < 2; i++) {
        proto_buf_free(&hb[i]);
        proto_buf_free(&bb[i]);
    }
    free(n);
}

/* ---------------------------------------------------------------------------------------- */
/* vectors.txt's notes, rebuilt from PROTOCOL.md with libsodium alone                        */

static const tu_vector *vec(const tu_vectors *vs, const char *name)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].name, name) == 0)
            return &vs->v[i];
    fail_msg("no [%s] vector", name);
    return NULL;
}

static uint8_t *hexv(const tu_vector *v, const char *key, size_t *n)
{
    const char *s = tu_vector_get(v, key);
    if (s == NULL)
        fail_msg("[%s] lacks %s", v->name, key);
    size_t len;
    uint8_t *p = tu_unhex(s, &len);
    assert_non_null(p);
    if (n != NULL)
        *n = len;
    return p;
}

static void spec_note_vector(const fx *f, const tu_vector *v, const proto_identity *author,
    const hand *x, const proto_note *want)
{
    size_t hl, bl, pl, sl;
    uint8_t *hdr = hexv(v, "header", &hl), *body = hexv(v, "body", &bl);
    uint8_t *ppad = hexv(v, "note_plain_padded", &pl), *sseed = hexv(v, "stream_seed", &sl);
    uint8_t *tag = hexv(v, "tag", NULL), *eph = hexv(v, "ephemeral_seed", NULL);
    assert_int_equal(sl, randombytes_SEEDBYTES);
    /* the random bytes, drawn in order: tag, seed of slot 0, (filler box, hint) of slots 1..3 */
    size_t l = (bl - 16) / 4;
    size_t need = 64 + 3 * (l + 16);
    uint8_t *stream = malloc(need);
    assert_non_null(stream);
    randombytes_buf_deterministic(stream, need, sseed);
    assert_memory_equal(stream, tag, 32);
    assert_memory_equal(stream + 32, eph, 32);
    proto_header h;
    assert_int_equal(proto_header_decode(hdr, hl, NULL, &h, NULL), PROTO_OK);
    assert_int_equal(proto_header_verify(&h), PROTO_OK);
    assert_int_equal(h.kind, PROTO_HDR_NOTE);
    assert_memory_equal(h.origin, proto_identity_origin(author), 32);
    assert_memory_equal(h.tag, tag, 32);
    uint8_t hint[16];
    spec_hint(author, f->alice, h.seq, hint);
    assert_memory_equal(h.hints[0].b, hint, 16);
    for (int i = 1; i < 4; i++) {
        const uint8_t *filler = stream + 64 + (size_t)(i - 1) * (l + 16);
        assert_memory_equal(body + 4 + (size_t)i * (3 + l) + 3, filler, l);
        assert_memory_equal(h.hints[i].b, filler + l, 16);
    }
    /* body: [2, 4, [4 x bin16 of L]]; box 0 = epk || crypto_box_easy, epk from the seed */
    assert_int_equal(bl, 16 + 4 * l);
    assert_int_equal(h.body_len, bl);
    uint8_t bh[32];
    crypto_generichash(bh, 32, body, bl, NULL, 0);
    assert_memory_equal(bh, h.body_hash, 32);
    assert_int_equal(body[0], 0x93);
    assert_int_equal(body[1], PROTO_VERSION);
    assert_int_equal(body[2], 4);
    assert_int_equal(body[3], 0x94);
    uint8_t epk[32], esk[32], seed[32], pk[32], sk[32];
    crypto_box_seed_keypair(epk, esk, eph);
    assert_memory_equal(body + 7, epk, 32);
    tu_pattern(seed, 32, 0x21); /* alice's box seed */
    crypto_box_seed_keypair(pk, sk, seed);
    uint8_t *m = malloc(l);
    assert_non_null(m);
    assert_int_equal(l, 48 + pl);
    assert_int_equal(crypto_box_seal_open(m, body + 7, l, pk, sk), 0);
    assert_memory_equal(m, ppad, pl);
    /* the plaintext is the NOTE_PLAIN of PROTOCOL.md, padded */
    size_t ml, off[10], soff[PROTO_NOTE_SCOPES_MAX + 2];
    assert_int_equal(sodium_unpad(&ml, m, pl, 256), 0);
    tb expect = { 0 };
    hand_plain(f, x, &expect, off, soff);
    assert_int_equal(ml, expect.len);
    assert_memory_equal(m, expect.p, ml);
    /* and proto reads it back */
    proto_note *got = malloc(sizeof *got);
    assert_non_null(got);
    int slot = proto_key_grant_slot(&h, f->alice, proto_identity_box_pk(author));
    assert_int_equal(slot, 0);
    assert_int_equal(proto_note_open_slot(&h, f->alice, slot, body, bl, NULL, got, NULL), PROTO_OK);
    assert_note_equal(got, want);
    sodium_memzero(sk, sizeof sk);
    tb_free(&expect);
    free(got);
    free(m);
    free(stream);
    free(hdr);
    free(body);
    free(ppad);
    free(sseed);
    free(tag);
    free(eph);
}

static void vectors_match_the_spec(void **state)
{
    fx *f = *state;
    tu_vectors vs;
    assert_true(tu_vectors_load(PROTO_VECTORS_FILE, &vs));
    /* the vectors' case: comune-1 with nonce 00..0f */
    fx g = *f;
    proto_case_nonce cn;
    tu_pattern(cn.b, 16, 0x00);
    assert_int_equal(proto_case_id_derive("comune-1", 8, &cn, &g.cid), PROTO_OK);

    hand x = hand_good();
    x.evidence = "modulo di revoca del consenso, prot. 41/2025";
    proto_note *want = note_new(&g, PROTO_NOTE_WITHDRAWAL);
    SET(want->scopes[1], "documenti");
    want->nscopes = 2;
    SET(want->evidence, x.evidence);
    spec_note_vector(&g, vec(&vs, "note"), f->carol, &x, want);
    free(want);

    x = hand_good();
    x.note_kind = PROTO_NOTE_DROP;
    x.nscopes = 1;
    x.evidence = "";
    x.operator_name = "a.neri";
    x.unix_user = "";
    want = note_new(&g, PROTO_NOTE_DROP);
    SET(want->operator_name, "a.neri");
    SET(want->unix_user, "");
    spec_note_vector(&g, vec(&vs, "note-drop"), f->bob, &x, want);
    free(want);
    tu_vectors_free(&vs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(note_round_trip),
        cmocka_unit_test(largest_note_fits),
        cmocka_unit_test(only_the_owner_finds_a_slot),
        cmocka_unit_test(note_rules_checked_on_sealing),
        cmocka_unit_test(note_rules_checked_on_decoding),
        cmocka_unit_test(note_headers_checked),
        cmocka_unit_test(note_and_grant_kept_apart),
        cmocka_unit_test(note_tampering_rejected),
        cmocka_unit_test(note_shows_nothing),
        cmocka_unit_test(vectors_match_the_spec),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
