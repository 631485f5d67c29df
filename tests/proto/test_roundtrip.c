/*
 * proto.roundtrip - every message kind encodes, decodes to the same values and re-encodes to
 * the same bytes, on seeded random content (TEST_SEED); canonical scope encoding (same state,
 * same bytes; every other encoding rejected); case id text; manifest and receipt signatures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tutil.h"

#define ROUNDS 200

static int setup(void **state)
{
    (void)state;
    tu_seed();
    return proto_init() == PROTO_OK ? 0 : -1;
}

static void rand_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)tu_next();
}

static void same_bytes(const proto_buf *a, const proto_buf *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

static int vv_cmp(const void *a, const void *b)
{
    return crdt_origin_cmp(
        &((const crdt_vv_entry *)a)->origin, &((const crdt_vv_entry *)b)->origin);
}

static void sync_messages(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = tu_next() % 40;
        crdt_vv_entry vv[40];
        for (size_t i = 0; i < n; i++) {
            rand_bytes(vv[i].origin.b, 32);
            vv[i].max = 1 + tu_next() % (round % 2 ? UINT64_MAX - 1 : 300);
        }
        qsort(vv, n, sizeof vv[0], vv_cmp);
        proto_vv_msg m = { vv, n, NULL }, d;
        proto_buf a, b;
        assert_int_equal(proto_vv_encode(&m, &a), PROTO_OK);
        assert_int_equal(proto_vv_decode(a.p, a.len, NULL, &d, NULL), PROTO_OK);
        assert_int_equal(d.n, n);
        if (n > 0)
            assert_memory_equal(d.entries, vv, n * sizeof vv[0]);
        assert_int_equal(proto_vv_encode(&d, &b), PROTO_OK);
        same_bytes(&a, &b);
        proto_vv_fini(&d);
        proto_buf_free(&a);
        proto_buf_free(&b);

        uint8_t blobs[8][300];
        proto_bytes hs[8];
        proto_body_item items[8];
        proto_hash_bytes ids[8];
        size_t k = tu_next() % 9;
        for (size_t i = 0; i < k; i++) {
            size_t len = tu_next() % 300;
            rand_bytes(blobs[i], len);
            hs[i] = (proto_bytes) { blobs[i], len };
            rand_bytes(items[i].header_id, 32);
            items[i].body = hs[i];
            rand_bytes(ids[i].b, 32);
        }
        proto_headers_msg hm = { hs, k, NULL }, hd;
        assert_int_equal(proto_headers_encode(&hm, &a), PROTO_OK);
        assert_int_equal(proto_headers_decode(a.p, a.len, NULL, &hd, NULL), PROTO_OK);
        assert_int_equal(hd.n, k);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(hd.headers[i].len, hs[i].len);
            if (hs[i].len)
                assert_memory_equal(hd.headers[i].p, hs[i].p, hs[i].len);
        }
        proto_headers_fini(&hd);
        proto_buf_free(&a);
        proto_bodies_msg bm = { items, k, NULL }, bd;
        assert_int_equal(proto_bodies_encode(&bm, &a), PROTO_OK);
        assert_int_equal(proto_bodies_decode(a.p, a.len, NULL, &bd, NULL), PROTO_OK);
        assert_int_equal(bd.n, k);
        for (size_t i = 0; i < k; i++) {
            assert_memory_equal(bd.items[i].header_id, items[i].header_id, 32);
            assert_int_equal(bd.items[i].body.len, items[i].body.len);
        }
        proto_bodies_fini(&bd);
        proto_buf_free(&a);
        proto_want_msg wm = { ids, k, NULL }, wd;
        assert_int_equal(proto_want_encode(&wm, &a), PROTO_OK);
        assert_int_equal(proto_want_decode(a.p, a.len, NULL, &wd, NULL), PROTO_OK);
        assert_int_equal(wd.n, k);
        if (k)
            assert_memory_equal(wd.ids, ids, k * 32);
        proto_want_fini(&wd);
        proto_buf_free(&a);
    }
    /* unsorted or zero version vectors are refused on encode */
    crdt_vv_entry bad[2];
    memset(bad, 0, sizeof bad);
    bad[0].max = bad[1].max = 1;
    proto_vv_msg m = { bad, 2, NULL };
    proto_buf a;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    m.n = 1;
    bad[0].max = 0;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
}

static void control_messages(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        uint8_t blob[3][100];
        proto_bytes args[3];
        size_t na = tu_next() % 4;
        for (size_t i = 0; i < na; i++) {
            size_t l = tu_next() % 100;
            rand_bytes(blob[i], l);
            args[i] = (proto_bytes) { blob[i], l };
        }
        uint64_t id = tu_next() >> (tu_next() % 64);
        proto_ctl_request rq = { id, { (const uint8_t *)"case.grant", 10 }, args, na, NULL }, rd;
        proto_buf a, b;
        assert_int_equal(proto_ctl_request_encode(&rq, &a), PROTO_OK);
        assert_int_equal(proto_ctl_request_decode(a.p, a.len, NULL, &rd, NULL), PROTO_OK);
        assert_int_equal(rd.id, id);
        assert_int_equal(rd.nargs, na);
        assert_int_equal(rd.command.len, 10);
        assert_int_equal(proto_ctl_request_encode(&rd, &b), PROTO_OK);
        same_bytes(&a, &b);
        proto_ctl_request_fini(&rd);
        proto_buf_free(&a);
        proto_buf_free(&b);

        proto_ctl_response rs = { id, { blob[0], na ? args[0].len : 0 } }, rsd;
        assert_int_equal(proto_ctl_response_encode(&rs, &a), PROTO_OK);
        assert_int_equal(proto_ctl_response_decode(a.p, a.len, NULL, &rsd, NULL), PROTO_OK);
        assert_int_equal(rsd.id, id);
        assert_int_equal(rsd.payload.len, rs.payload.len);
        proto_buf_free(&a);

        proto_ctl_error er = { id, tu_next() % 6, { (const uint8_t *)"node unreachable", 16 } },
                        erd;
        assert_int_equal(proto_ctl_error_encode(&er, &a), PROTO_OK);
        assert_int_equal(proto_ctl_error_decode(a.p, a.len, NULL, &erd, NULL), PROTO_OK);
        assert_int_equal(erd.code, er.code);
        assert_memory_equal(erd.message.p, "node unreachable", 16);
        proto_buf_free(&a);
    }
    proto_ctl_request bad = { 1, { (const uint8_t *)"Case Show", 9 }, NULL, 0, NULL };
    proto_buf a;
    assert_int_equal(proto_ctl_request_encode(&bad, &a), PROTO_EVALUE);
}

static void access_receipt_manifest(void **state)
{
    (void)state;
    proto_identity *alice = tu_identity(0x01), *bob = tu_identity(0x41), *admin = tu_identity(0xc1);
    for (uint8_t access = 0; access <= 2; access++)
        for (uint8_t basis = 1; basis <= 4; basis++) {
            proto_access a = { { (const uint8_t *)"coop-aurora", 11 }, access,
                { (const uint8_t *)"lavoro", 6 }, basis, tu_next(),
                { (const uint8_t *)"g.neri", 6 }, { (const uint8_t *)"", 0 } },
                         d;
            proto_buf x, y;
            assert_int_equal(proto_access_encode(&a, &x), PROTO_OK);
            assert_int_equal(proto_access_decode(x.p, x.len, NULL, &d, NULL), PROTO_OK);
            assert_int_equal(d.access, access);
            assert_int_equal(d.basis, basis);
            assert_int_equal(d.expiry_ms, a.expiry_ms);
            assert_int_equal(proto_access_encode(&d, &y), PROTO_OK);
            same_bytes(&x, &y);
            proto_buf_free(&x);
            proto_buf_free(&y);
        }
    proto_access bad = { { (const uint8_t *)"Coop", 4 }, 1, { (const uint8_t *)"lavoro", 6 }, 1, 0,
        { NULL, 0 }, { NULL, 0 } };
    proto_buf x;
    assert_int_equal(proto_access_encode(&bad, &x), PROTO_EVALUE);

    proto_receipt r, rd;
    memset(&r, 0, sizeof r);
    r.kind = PROTO_RECEIPT_ERASURE;
    rand_bytes(r.header_id, 32);
    r.time_ms = 1700000000000;
    assert_int_equal(proto_receipt_sign(&r, bob, &x), PROTO_OK);
    assert_int_equal(proto_receipt_decode(x.p, x.len, NULL, &rd, NULL), PROTO_OK);
    assert_int_equal(proto_receipt_verify(&rd), PROTO_OK);
    assert_memory_equal(rd.signer, proto_identity_origin(bob), 32);
    assert_memory_equal(rd.header_id, r.header_id, 32);
    memcpy(rd.signer, proto_identity_origin(alice), 32); /* claimed by someone else */
    assert_int_equal(proto_receipt_verify(&rd), PROTO_ESIG);
    proto_buf_free(&x);

    proto_member mem[2];
    memset(mem, 0, sizeof mem);
    mem[0].org = (proto_bytes) { (const uint8_t *)"comune-latina", 13 };
    mem[0].name = (proto_bytes) { (const uint8_t *)"Comune", 6 };
    mem[0].role = PROTO_ROLE_COMUNE;
    memcpy(mem[0].origin, proto_identity_origin(alice), 32);
    mem[1] = mem[0];
    mem[1].org = (proto_bytes) { (const uint8_t *)"coop-aurora", 11 };
    mem[1].role = PROTO_ROLE_COOP;
    memcpy(mem[1].origin, proto_identity_origin(bob), 32);
    proto_manifest m, md;
    memset(&m, 0, sizeof m);
    m.version = 1;
    m.members = mem;
    m.nmembers = 2;
    assert_int_equal(proto_manifest_sign(&m, admin, &x), PROTO_OK);
    assert_int_equal(proto_manifest_decode(x.p, x.len, NULL, &md, NULL), PROTO_OK);
    assert_int_equal(proto_manifest_verify(&md, proto_identity_origin(admin)), PROTO_OK);
    assert_int_equal(proto_manifest_verify(&md, proto_identity_origin(alice)), PROTO_ESIG);
    assert_int_equal(md.nmembers, 2);
    assert_int_equal(md.members[1].role, PROTO_ROLE_COOP);
    assert_non_null(proto_manifest_find(&md, proto_identity_origin(bob)));
    assert_null(proto_manifest_find(&md, proto_identity_origin(admin)));
    proto_manifest_fini(&md);
    proto_buf_free(&x);
    /* unsorted members and duplicate origins are refused */
    proto_member t = mem[0];
    mem[0] = mem[1];
    mem[1] = t;
    assert_int_equal(proto_manifest_sign(&m, admin, &x), PROTO_EVALUE);
    mem[1] = mem[0];
    mem[1].org = (proto_bytes) { (const uint8_t *)"cpi-latina", 10 };
    assert_int_equal(proto_manifest_sign(&m, admin, &x), PROTO_EVALUE);
    proto_identity_free(alice);
    proto_identity_free(bob);
    proto_identity_free(admin);
}

/* ---------------------------------------------------------------------------------------- */
/* Scopes                                                                                    */

static const char *const fields[] = { "nome", "cognome", "lingue", "competenze", "ore", "eventi" };

/* Random edits by three origins on three replicas, joined in a random order. */
static crdt_scope *random_scope(void)
{
    crdt_origin o[3];
    for (int i = 0; i < 3; i++)
        rand_bytes(o[i].b, 32);
    crdt_scope *r[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(crdt_scope_new(NULL, &r[i]), CRDT_OK);
    size_t edits = tu_next() % 30;
    for (size_t e = 0; e < edits; e++) {
        int who = (int)(tu_next() % 3);
        crdt_hlc h = { 1700000000000 + tu_next() % 1000, (uint16_t)(tu_next() % 3) };
        char val[16];
        snprintf(val, sizeof val, "v%u", (unsigned)(tu_next() % 5));
        crdt_err err;
        switch (tu_next() % 7) {
        case 0:
        case 1:
            err = crdt_register_set(
                r[who], NULL, &o[who], &h, fields[tu_next() % 2], val, strlen(val));
            break;
        case 2:
            err = crdt_set_add(r[who], NULL, &o[who], fields[2 + tu_next() % 2], val, strlen(val));
            break;
        case 3:
            err = crdt_set_remove(r[who], NULL, fields[2 + tu_next() % 2], val, strlen(val));
            break;
        case 4:
            err = crdt_counter_add(r[who], NULL, &o[who], "ore", (int64_t)(tu_next() % 20) - 5);
            break;
        case 5:
            err = crdt_timeline_add(r[who], NULL, &o[who], &h, "eventi", val, strlen(val), NULL);
            break;
        default:
            err = crdt_scope_join(r[who], r[(who + 1) % 3]);
            break;
        }
        assert_true(err == CRDT_OK || err == CRDT_ENOTFOUND);
    }
    assert_int_equal(crdt_scope_join(r[0], r[1]), CRDT_OK);
    assert_int_equal(crdt_scope_join(r[0], r[2]), CRDT_OK);
    crdt_scope_free(r[1]);
    crdt_scope_free(r[2]);
    return r[0];
}

static void scopes_round_trip_canonically(void **state)
{
    (void)state;
    size_t entries = 0, types = 0;
    for (int round = 0; round < ROUNDS; round++) {
        crdt_scope *s = random_scope(), *d;
        entries += crdt_scope_entry_count(s);
        types += crdt_scope_field_count(s);
        proto_buf a, b;
        proto_diag dg = { 0, NULL };
        assert_int_equal(proto_scope_encode(s, &a), PROTO_OK);
        proto_err err = proto_scope_decode(a.p, a.len, NULL, NULL, &d, &dg);
        if (err != PROTO_OK)
            fail_msg("round %d: %s at %zu: %s", round, proto_strerror(err), dg.offset, dg.reason);
        assert_true(crdt_scope_equal(s, d));
        assert_int_equal(proto_scope_encode(d, &b), PROTO_OK);
        same_bytes(&a, &b);
        /* the same state reached another way (a clone, a join with itself) encodes the same */
        crdt_scope *c;
        assert_int_equal(crdt_scope_clone(s, &c), CRDT_OK);
        assert_int_equal(crdt_scope_join(c, d), CRDT_OK);
        uint8_t h1[32], h2[32];
        assert_int_equal(proto_scope_digest(s, h1), PROTO_OK);
        assert_int_equal(proto_scope_digest(c, h2), PROTO_OK);
        assert_memory_equal(h1, h2, 32);
        crdt_scope_free(c);
        crdt_scope_free(d);
        crdt_scope_free(s);
        proto_buf_free(&a);
        proto_buf_free(&b);
    }
    print_message("scopes: %zu entries, %zu fields in %d rounds\n", entries, types, ROUNDS);
    /* the generator really exercised the encoder */
    assert_true(entries > 5 * ROUNDS);
    assert_true(types > 3 * ROUNDS);
}

/* Hand-made SCOPE messages: [1, 20, origins, vv, cloud, fields]. */
typedef struct sb {
    tb b;
} sb;

static const uint8_t O1[32] = { 1 }, O2[32] = { 2 };

static proto_err decode_scope(const tb *b, proto_diag *dg)
{
    crdt_scope *s = NULL;
    proto_err err = proto_scope_decode(b->p, b->len, NULL, NULL, &s, dg);
    crdt_scope_free(s);
    return err;
}

/* A register field "a" with one entry of origin index oi, counter c. */
static void reg_field(tb *b, const char *name, uint64_t oi, uint64_t c)
{
    tb_array(b, 3);
    tb_str(b, name);
    tb_uint(b, CRDT_REGISTER);
    tb_array(b, 1);
    tb_array(b, 5);
    tb_uint(b, oi);
    tb_uint(b, c);
    tb_uint(b, 5);
    tb_uint(b, 0);
    tb_bin(b, "x", 1);
}

static void head(tb *b, int norigins)
{
    tb_array(b, 6);
    tb_uint(b, 1);
    tb_uint(b, PROTO_K_SCOPE);
    tb_array(b, (uint32_t)norigins);
    if (norigins >= 1)
        tb_bin(b, O1, 32);
    if (norigins >= 2)
        tb_bin(b, O2, 32);
}

static void scope_non_canonical_rejected(void **state)
{
    (void)state;
    proto_diag dg;
    tb b = { 0 };
    /* the valid base: origin O1, vv [[0,1]], field a */
    head(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 1);
    reg_field(&b, "a", 0, 1);
    assert_int_equal(decode_scope(&b, &dg), PROTO_OK);
    tb_free(&b);

    /* an origin listed but never used */
    head(&b, 2);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 1);
    reg_field(&b, "a", 0, 1);
    assert_int_equal(decode_scope(&b, &dg), PROTO_ENONCANON);
    assert_non_null(strstr(dg.reason, "unused origin"));
    tb_free(&b);

    /* origins out of order */
    tb_array(&b, 6);
    tb_uint(&b, 1);
    tb_uint(&b, PROTO_K_SCOPE);
    tb_array(&b, 2);
    tb_bin(&b, O2, 32);
    tb_bin(&b, O1, 32);
    tb_array(&b, 2);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 1);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 0);
    assert_int_equal(decode_scope(&b, &dg), PROTO_ENONCANON);
    tb_free(&b);

    /* a cloud dot right after the vv max (must have been folded into the vv) */
    head(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 2);
    tb_array(&b, 0);
    assert_int_equal(decode_scope(&b, &dg), PROTO_ENONCANON);
    tb_free(&b);

    /* fields out of order, and a field repeated */
    const char *orders[2][2] = { { "b", "a" }, { "a", "a" } };
    for (int i = 0; i < 2; i++) {
        head(&b, 1);
        tb_array(&b, 1);
        tb_array(&b, 2);
        tb_uint(&b, 0);
        tb_uint(&b, 2);
        tb_array(&b, 0);
        tb_array(&b, 2);
        reg_field(&b, orders[i][0], 0, 1);
        reg_field(&b, orders[i][1], 0, 2);
        assert_int_equal(decode_scope(&b, &dg), PROTO_ENONCANON);
        tb_free(&b);
    }

    /* an entry not covered by the context */
    head(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 1);
    reg_field(&b, "a", 0, 5);
    assert_int_not_equal(decode_scope(&b, &dg), PROTO_OK);
    tb_free(&b);

    /* an origin index past the table */
    head(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 1);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 0);
    assert_int_equal(decode_scope(&b, &dg), PROTO_EVALUE);
    tb_free(&b);

    /* a field with no entries */
    head(&b, 1);
    tb_array(&b, 1);
    tb_array(&b, 2);
    tb_uint(&b, 0);
    tb_uint(&b, 1);
    tb_array(&b, 0);
    tb_array(&b, 2);
    reg_field(&b, "a", 0, 1);
    tb_array(&b, 3);
    tb_str(&b, "b");
    tb_uint(&b, CRDT_SET);
    tb_array(&b, 0);
    assert_int_equal(decode_scope(&b, &dg), PROTO_ENONCANON);
    tb_free(&b);
}

static void case_ids(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        proto_case_id id, back;
        assert_int_equal(proto_case_id_new(tu_rng(), &id), PROTO_OK);
        char text[PROTO_CASE_ID_TEXT_SIZE];
        proto_case_id_format(&id, text);
        assert_int_equal(strlen(text), PROTO_CASE_ID_TEXT_SIZE - 1);
        assert_memory_equal(text, "pc-", 3);
        assert_int_equal(proto_case_id_parse(text, strlen(text), &back), PROTO_OK);
        assert_memory_equal(back.b, id.b, 16);
        /* upper case, no dashes */
        char loose[64];
        size_t n = 0;
        for (size_t i = 0; text[i]; i++)
            if (i < 3 || text[i] != '-')
                loose[n++] = (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]);
        assert_int_equal(proto_case_id_parse(loose, n, &back), PROTO_OK);
        assert_memory_equal(back.b, id.b, 16);
        /* any one character changed: refused */
        for (size_t i = 3; text[i]; i++) {
            if (text[i] == '-')
                continue;
            char t[PROTO_CASE_ID_TEXT_SIZE];
            memcpy(t, text, sizeof t);
            t[i] = t[i] == 'z' ? 'y' : (t[i] == '9' ? 'a' : (char)(t[i] + 1));
            if (t[i] == 'i' || t[i] == 'l' || t[i] == 'o' || t[i] == 'u')
                t[i] = (char)(t[i] + 1);
            proto_err err = proto_case_id_parse(t, strlen(t), &back);
            assert_true(err == PROTO_ECHECKSUM || err == PROTO_ECASEID);
        }
    }
    proto_case_id id;
    assert_int_equal(proto_case_id_parse("xx-123", 6, &id), PROTO_ECASEID);
    assert_int_equal(proto_case_id_parse("pc-", 3, &id), PROTO_ECASEID);
    assert_int_equal(proto_case_id_parse("pc-uuuuu", 8, &id), PROTO_ECASEID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sync_messages),
        cmocka_unit_test(control_messages),
        cmocka_unit_test(access_receipt_manifest),
        cmocka_unit_test(scopes_round_trip_canonically),
        cmocka_unit_test(scope_non_canonical_rejected),
        cmocka_unit_test(case_ids),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
