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
    return memcmp(((const proto_vv_item *)a)->origin, ((const proto_vv_item *)b)->origin, 32);
}

static void sync_messages(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = tu_next() % 40;
        proto_vv_item vv[40];
        for (size_t i = 0; i < n; i++) {
            rand_bytes(vv[i].origin, 32);
            vv[i].seq = 1 + tu_next() % (round % 2 ? UINT64_MAX - 1 : 300);
            rand_bytes(vv[i].id, 32);
            /* every third origin known forked, at 1..seq */
            vv[i].fork = tu_next() % 3 == 0 ? 1 + tu_next() % vv[i].seq : 0;
        }
        qsort(vv, n, sizeof vv[0], vv_cmp);
        /* skip: origins ascending (the first byte of each is its index, so unique) */
        proto_hash_bytes skip[8];
        size_t ns = tu_next() % 9;
        for (size_t i = 0; i < ns; i++) {
            rand_bytes(skip[i].b, 32);
            skip[i].b[0] = (uint8_t)(i * 16);
        }
        proto_vv_msg m = { .entries = vv, .n = n, .skip = skip, .nskip = ns }, d;
        proto_buf a, b;
        assert_int_equal(proto_vv_encode(&m, &a), PROTO_OK);
        assert_int_equal(proto_vv_decode(a.p, a.len, NULL, &d, NULL), PROTO_OK);
        assert_int_equal(d.n, n);
        if (n > 0)
            assert_memory_equal(d.entries, vv, n * sizeof vv[0]);
        assert_int_equal(d.nskip, ns);
        if (ns > 0)
            assert_memory_equal(d.skip, skip, ns * sizeof skip[0]);
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
        proto_headers_msg hm = { .headers = hs, .n = k }, hd;
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
    /* unsorted, repeated or zero entries are refused on encode, and on decode */
    proto_vv_item bad[2];
    memset(bad, 0, sizeof bad);
    bad[0].seq = bad[1].seq = 1;
    proto_vv_msg m = { .entries = bad, .n = 2 };
    proto_buf a;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    m.n = 1;
    bad[0].seq = 0;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    for (int c = 0; c < 3; c++) {
        tb b = { 0 };
        tb_array(&b, 4);
        tb_uint(&b, PROTO_VERSION);
        tb_uint(&b, PROTO_K_VV);
        tb_array(&b, 2);
        for (int i = 0; i < 2; i++) {
            uint8_t o[32] = { 0 }, id[32] = { 0 };
            o[0] = (uint8_t)(c == 0 ? 2 - i : c == 1 ? 1 : 1 + i); /* down, same, up */
            tb_array(&b, 3);
            tb_bin(&b, o, 32);
            tb_uint(&b, c == 2 && i == 1 ? 0 : 1);
            tb_bin(&b, id, 32);
        }
        tb_array(&b, 0);
        proto_vv_msg d;
        proto_diag dg;
        static const proto_err want[3] = { PROTO_ENONCANON, PROTO_ENONCANON, PROTO_EVALUE };
        assert_int_equal(proto_vv_decode(b.p, b.len, NULL, &d, &dg), want[c]);
        tb_free(&b);
    }
    /* a fork point is 1..seq: beyond the seq on encode, 0 or beyond on decode, refused */
    bad[0].seq = 5;
    bad[0].fork = 6;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    for (uint64_t fork = 0; fork <= 6; fork += 6) {
        tb b = { 0 };
        tb_array(&b, 4);
        tb_uint(&b, PROTO_VERSION);
        tb_uint(&b, PROTO_K_VV);
        tb_array(&b, 1);
        uint8_t o[32] = { 0 }, id[32] = { 0 };
        tb_array(&b, 4);
        tb_bin(&b, o, 32);
        tb_uint(&b, 5);
        tb_bin(&b, id, 32);
        tb_uint(&b, fork);
        tb_array(&b, 0);
        proto_vv_msg d;
        proto_diag dg;
        assert_int_equal(proto_vv_decode(b.p, b.len, NULL, &d, &dg), PROTO_EVALUE);
        tb_free(&b);
    }
    /* skipped origins: unsorted or repeated refused on encode and on decode, a short one or a
     * missing skip array on decode */
    bad[0].fork = 0;
    proto_hash_bytes sk[2];
    memset(sk, 0, sizeof sk);
    m.skip = sk;
    m.nskip = 2;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    sk[0].b[0] = 2;
    assert_int_equal(proto_vv_encode(&m, &a), PROTO_EVALUE);
    for (int c = 0; c < 4; c++) {
        tb b = { 0 };
        tb_array(&b, c == 3 ? 3 : 4);
        tb_uint(&b, PROTO_VERSION);
        tb_uint(&b, PROTO_K_VV);
        tb_array(&b, 0);
        if (c < 3) {
            tb_array(&b, 2);
            for (int i = 0; i < 2; i++) {
                uint8_t o[32] = { 0 };
                o[0] = (uint8_t)(c == 0 ? 2 - i : 1); /* down, same, short */
                tb_bin(&b, o, c == 2 && i == 1 ? 31 : 32);
            }
        }
        proto_vv_msg d;
        proto_diag dg;
        static const proto_err want[4]
            = { PROTO_ENONCANON, PROTO_ENONCANON, PROTO_ESHAPE, PROTO_ESHAPE };
        assert_int_equal(proto_vv_decode(b.p, b.len, NULL, &d, &dg), want[c]);
        tb_free(&b);
    }
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

static proto_bytes txt(const char *s)
{
    return (proto_bytes) { (const uint8_t *)s, strlen(s) };
}

static void receipts(void **state)
{
    (void)state;
    proto_identity *alice = tu_identity(0x01), *bob = tu_identity(0x41);
    proto_receipt r, rd;
    proto_buf x;
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
    proto_identity_free(alice);
    proto_identity_free(bob);
}

/* A manifest with three orgs: comune-latina has had three keys (two retired), coop-aurora has
 * left (its one key retired), cpi-latina is active with one key. */
typedef struct man_fx {
    proto_identity *ids[5];
    proto_member_key keys[5];
    proto_member mem[3];
    proto_purpose pur[2];
    proto_manifest m;
} man_fx;

static void man_make(man_fx *x)
{
    memset(x, 0, sizeof *x);
    for (int i = 0; i < 5; i++) {
        x->ids[i] = tu_identity((uint8_t)(0x03 + 0x10 * i));
        memcpy(x->keys[i].origin, proto_identity_origin(x->ids[i]), 32);
        memcpy(x->keys[i].box_pk, proto_identity_box_pk(x->ids[i]), 32);
        x->keys[i].effective_ms = 1690000000000 + (uint64_t)i * 1000;
    }
    x->keys[0].retired = x->keys[1].retired = true;
    x->keys[0].last_seq = 17;
    x->keys[1].last_seq = 0; /* retired before it wrote anything */
    x->keys[3].retired = true;
    x->keys[3].last_seq = 99;
    const char *orgs[3] = { "comune-latina", "coop-aurora", "cpi-latina" };
    const size_t first[3] = { 0, 3, 4 }, nk[3] = { 3, 1, 1 };
    const uint8_t roles[3] = { PROTO_ROLE_COMUNE, PROTO_ROLE_COOP, PROTO_ROLE_CPI };
    for (int i = 0; i < 3; i++) {
        x->mem[i].org = txt(orgs[i]);
        x->mem[i].name = txt("Ente di Latina");
        x->mem[i].role = roles[i];
        x->mem[i].url = txt("tcp://[fe80::1]:7401");
        x->mem[i].keys = &x->keys[first[i]];
        x->mem[i].nkeys = nk[i];
    }
    x->pur[0] = (proto_purpose) { txt("integrazione"), txt("Percorso di integrazione") };
    x->pur[1] = (proto_purpose) { txt("lavoro"), txt("Inserimento lavorativo") };
    x->m.version = 7;
    x->m.signed_at_ms = 1699999999999;
    tu_pattern(x->m.schema_hash, 32, 0x44);
    x->m.max_clock_ahead_ms = PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS;
    x->m.counter_limit = PROTO_COUNTER_LIMIT_DEFAULT;
    x->m.members = x->mem;
    x->m.nmembers = 3;
    x->m.purposes = x->pur;
    x->m.npurposes = 2;
}

static void man_free(man_fx *x)
{
    for (int i = 0; i < 5; i++)
        proto_identity_free(x->ids[i]);
}

/* The MANIFEST message of m as given, checked by nothing (for the decoder's refusals). */
static void tb_manifest(tb *out, const proto_manifest *m)
{
    tb f = { 0 };
    tb_array(&f, 9);
    tb_uint(&f, PROTO_VERSION);
    tb_uint(&f, PROTO_K_MANIFEST_FIELDS);
    tb_uint(&f, m->version);
    tb_uint(&f, m->signed_at_ms);
    tb_bin(&f, m->schema_hash, 32);
    tb_uint(&f, m->max_clock_ahead_ms);
    tb_uint(&f, m->counter_limit);
    tb_array(&f, (uint32_t)m->nmembers);
    for (size_t i = 0; i < m->nmembers; i++) {
        const proto_member *e = &m->members[i];
        char buf[PROTO_TEXT_MAX + 1];
        tb_array(&f, 5);
        for (int k = 0; k < 4; k++) {
            proto_bytes b = k == 0 ? e->org : k == 1 ? e->name : k == 3 ? e->url : txt("");
            if (k == 2)
                b = txt(proto_role_name(e->role) != NULL ? proto_role_name(e->role) : "nobody");
            memcpy(buf, b.p, b.len);
            buf[b.len] = '\0';
            tb_str(&f, buf);
        }
        tb_array(&f, (uint32_t)e->nkeys);
        for (size_t k = 0; k < e->nkeys; k++) {
            const proto_member_key *x = &e->keys[k];
            tb_array(&f, 5);
            tb_bin(&f, x->origin, 32);
            tb_bin(&f, x->box_pk, 32);
            tb_uint(&f, x->effective_ms);
            tb_bool(&f, x->retired);
            tb_uint(&f, x->last_seq);
        }
    }
    tb_array(&f, (uint32_t)m->npurposes);
    for (size_t i = 0; i < m->npurposes; i++) {
        char a[64], d[PROTO_TEXT_MAX + 1];
        memcpy(a, m->purposes[i].id.p, m->purposes[i].id.len);
        a[m->purposes[i].id.len] = '\0';
        memcpy(d, m->purposes[i].description.p, m->purposes[i].description.len);
        d[m->purposes[i].description.len] = '\0';
        tb_array(&f, 2);
        tb_str(&f, a);
        tb_str(&f, d);
    }
    uint8_t sig[64] = { 0 };
    tb_array(out, 4);
    tb_uint(out, PROTO_VERSION);
    tb_uint(out, PROTO_K_MANIFEST);
    tb_bin(out, f.p, f.len);
    tb_bin(out, sig, 64);
    tb_free(&f);
}

static void manifest_round_trip_and_lookups(void **state)
{
    (void)state;
    man_fx x;
    man_make(&x);
    proto_identity *admin = tu_identity(0xc1);
    proto_buf a, b;
    proto_manifest md;
    assert_int_equal(proto_manifest_sign(&x.m, admin, &a), PROTO_OK);
    assert_int_equal(proto_manifest_decode(a.p, a.len, NULL, &md, NULL), PROTO_OK);
    assert_int_equal(proto_manifest_verify(&md, proto_identity_origin(admin)), PROTO_OK);
    assert_int_equal(proto_manifest_verify(&md, proto_identity_origin(x.ids[0])), PROTO_ESIG);
    assert_int_equal(proto_manifest_encode(&md, &b), PROTO_OK);
    same_bytes(&a, &b);
    proto_buf_free(&b);
    assert_int_equal(md.version, 7);
    assert_int_equal(md.signed_at_ms, 1699999999999);
    assert_int_equal(md.max_clock_ahead_ms, PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS);
    assert_int_equal(md.counter_limit, PROTO_COUNTER_LIMIT_DEFAULT);
    assert_memory_equal(md.schema_hash, x.m.schema_hash, 32);
    assert_int_equal(md.nmembers, 3);
    assert_int_equal(md.npurposes, 2);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(md.members[i].nkeys, x.mem[i].nkeys);
        assert_int_equal(md.members[i].role, x.mem[i].role);
        assert_memory_equal(
            md.members[i].keys, x.mem[i].keys, x.mem[i].nkeys * sizeof(proto_member_key));
    }
    /* every key finds its member, retired ones too, with its index */
    const size_t member_of[5] = { 0, 0, 0, 1, 2 }, index_of[5] = { 0, 1, 2, 0, 0 };
    for (size_t i = 0; i < 5; i++) {
        size_t k = 99;
        const proto_member *mb = proto_manifest_find(&md, x.keys[i].origin, &k);
        assert_ptr_equal(mb, &md.members[member_of[i]]);
        assert_int_equal(k, index_of[i]);
        assert_non_null(proto_manifest_find(&md, x.keys[i].origin, NULL));
    }
    assert_null(proto_manifest_find(&md, proto_identity_origin(admin), NULL));
    assert_ptr_equal(proto_manifest_find_org(&md, "coop-aurora", 11), &md.members[1]);
    assert_null(proto_manifest_find_org(&md, "coop-auror", 10));
    assert_null(proto_manifest_find_org(&md, "coop-aurora2", 12));
    /* current keys; who is still in the network */
    assert_memory_equal(proto_member_current(&md.members[0])->origin, x.keys[2].origin, 32);
    assert_true(proto_member_active(&md.members[0]));
    assert_false(proto_member_active(&md.members[1])); /* left: its last key is retired */
    assert_true(proto_member_active(&md.members[2]));
    assert_null(proto_member_current(NULL));
    assert_false(proto_member_active(NULL));
    proto_manifest_fini(&md);
    proto_buf_free(&a);
    proto_identity_free(admin);
    man_free(&x);
}

/* Each refused manifest is refused by the encoder (EVALUE) and, made by hand, by the decoder
 * with the error given. */
static void manifest_refusals(void **state)
{
    (void)state;
    proto_identity *admin = tu_identity(0xc1);
    proto_member_key many[PROTO_MEMBER_KEYS_MAX + 1];
    enum { NCASES = 16 };
    static const proto_err want[NCASES] = {
        PROTO_EVALUE,    /* 0: a key before the last not retired */
        PROTO_ENONCANON, /* 1: retired = false with last_seq != 0 */
        PROTO_EVALUE,    /* 2: one origin in two members */
        PROTO_EVALUE,    /* 3: one origin twice in one member */
        PROTO_ELIMIT,    /* 4: 17 keys */
        PROTO_EVALUE,    /* 5: no key */
        PROTO_ENONCANON, /* 6: members out of order */
        PROTO_ENONCANON, /* 7: one org twice */
        PROTO_EVALUE,    /* 8: version 0 */
        PROTO_EVALUE,    /* 9: max clock ahead 999 */
        PROTO_EVALUE,    /* 10: max clock ahead over a day */
        PROTO_EVALUE,    /* 11: counter limit 0 */
        PROTO_EVALUE,    /* 12: counter limit 2^53 + 1 */
        PROTO_EVALUE,    /* 13: effective times going back */
        PROTO_EVALUE,    /* 14: a url that is not tcp://HOST:PORT */
        PROTO_EVALUE,    /* 15: a blank name */
    };
    for (int c = 0; c < NCASES; c++) {
        man_fx x;
        man_make(&x);
        switch (c) {
        case 0:
            x.keys[1].retired = false;
            x.keys[1].last_seq = 0;
            break;
        case 1:
            x.keys[2].last_seq = 5;
            break;
        case 2:
            memcpy(x.keys[4].origin, x.keys[0].origin, 32);
            break;
        case 3:
            memcpy(x.keys[2].origin, x.keys[1].origin, 32);
            break;
        case 4:
            for (size_t i = 0; i <= PROTO_MEMBER_KEYS_MAX; i++) {
                many[i] = x.keys[4];
                many[i].origin[31] = (uint8_t)i;
                many[i].retired = i < PROTO_MEMBER_KEYS_MAX;
                many[i].last_seq = many[i].retired ? 1 : 0;
            }
            x.mem[2].keys = many;
            x.mem[2].nkeys = PROTO_MEMBER_KEYS_MAX + 1;
            break;
        case 5:
            x.mem[2].nkeys = 0;
            break;
        case 6: {
            proto_member t = x.mem[0];
            x.mem[0] = x.mem[1];
            x.mem[1] = t;
            break;
        }
        case 7:
            x.mem[1].org = x.mem[0].org;
            break;
        case 8:
            x.m.version = 0;
            break;
        case 9:
            x.m.max_clock_ahead_ms = 999;
            break;
        case 10:
            x.m.max_clock_ahead_ms = 86400001;
            break;
        case 11:
            x.m.counter_limit = 0;
            break;
        case 12:
            x.m.counter_limit = (UINT64_C(1) << 53) + 1;
            break;
        case 13:
            x.keys[1].effective_ms = x.keys[0].effective_ms - 1;
            break;
        case 14:
            x.mem[1].url = txt("http://example.org");
            break;
        default:
            x.mem[1].name = txt("  ");
            break;
        }
        proto_buf out;
        proto_err e = proto_manifest_sign(&x.m, admin, &out);
        if (e != PROTO_EVALUE)
            fail_msg("manifest case %d: the encoder gave %s", c, proto_strerror(e));
        tb b = { 0 };
        tb_manifest(&b, &x.m);
        proto_manifest md;
        proto_diag dg = { 0, NULL };
        e = proto_manifest_decode(b.p, b.len, NULL, &md, &dg);
        if (e != want[c])
            fail_msg("manifest case %d: the decoder gave %s (%s), want %s", c, proto_strerror(e),
                dg.reason != NULL ? dg.reason : "", proto_strerror(want[c]));
        assert_true(dg.offset > 0 && dg.offset < b.len);
        tb_free(&b);
        man_free(&x);
    }
    /* the extremes of the ranges are fine; 2^53 counters and 16 keys */
    man_fx x;
    man_make(&x);
    for (size_t i = 0; i < PROTO_MEMBER_KEYS_MAX; i++) {
        many[i] = x.keys[4];
        many[i].origin[31] = (uint8_t)i;
        many[i].retired = i + 1 < PROTO_MEMBER_KEYS_MAX;
        many[i].last_seq = many[i].retired ? i : 0;
    }
    x.mem[2].keys = many;
    x.mem[2].nkeys = PROTO_MEMBER_KEYS_MAX;
    x.m.counter_limit = UINT64_C(1) << 53;
    x.m.max_clock_ahead_ms = 1000;
    proto_buf out;
    proto_manifest md;
    assert_int_equal(proto_manifest_sign(&x.m, admin, &out), PROTO_OK);
    assert_int_equal(proto_manifest_decode(out.p, out.len, NULL, &md, NULL), PROTO_OK);
    assert_int_equal(md.members[2].nkeys, PROTO_MEMBER_KEYS_MAX);
    proto_manifest_fini(&md);
    proto_buf_free(&out);
    man_free(&x);
    proto_identity_free(admin);
}

/* ---------------------------------------------------------------------------------------- */
/* Scopes                                                                                    */

static const char *const fields[] = { "nome", "cognome", "lingue", "competenze", "ore", "eventi" };

/* Random edits by three origins on three replicas, joined in a random order. */
static crdt_scope *random_scope(void)
{
    crdt_origin o[3], co[3]; /* origins, and their counter origins for "ore" */
    for (int i = 0; i < 3; i++) {
        rand_bytes(o[i].b, 32);
        proto_counter_origin(o[i].b, "ore", 3, co[i].b);
    }
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
            err = crdt_counter_add(r[who], NULL, &co[who], "ore", (int64_t)(tu_next() % 20) - 5);
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

/* Hand-made SCOPE messages: [2, 20, origins, vv, cloud, fields]. */
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
    tb_uint(b, PROTO_VERSION);
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
    tb_uint(&b, PROTO_VERSION);
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
        proto_case_id id, back, again;
        proto_case_nonce nonce;
        assert_int_equal(proto_case_id_new("comune-1", 8, tu_rng(), &id, &nonce), PROTO_OK);
        /* the id is a function of (org, nonce): the same again, another for another org */
        assert_int_equal(proto_case_id_derive("comune-1", 8, &nonce, &again), PROTO_OK);
        assert_memory_equal(again.b, id.b, 16);
        assert_int_equal(proto_case_id_derive("comune-10", 9, &nonce, &again), PROTO_OK);
        assert_memory_not_equal(again.b, id.b, 16);
        assert_int_equal(proto_case_id_derive("comune-1", 7, &nonce, &again), PROTO_OK);
        assert_memory_not_equal(again.b, id.b, 16); /* "comune-" */
        nonce.b[round % 16] ^= 1;
        assert_int_equal(proto_case_id_derive("comune-1", 8, &nonce, &again), PROTO_OK);
        assert_memory_not_equal(again.b, id.b, 16);
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
    proto_case_nonce nonce;
    memset(&nonce, 0, sizeof nonce);
    assert_int_equal(proto_case_id_derive("Comune-1", 8, &nonce, &id), PROTO_EVALUE);
    assert_int_equal(proto_case_id_derive("", 0, &nonce, &id), PROTO_EVALUE);
    assert_int_equal(proto_case_id_new("comune 1", 8, tu_rng(), &id, &nonce), PROTO_EVALUE);
    assert_int_equal(proto_case_id_derive(NULL, 0, &nonce, &id), PROTO_EINVAL);
    /* the nonce is the rng's 16 bytes */
    uint8_t fixed[16];
    tu_pattern(fixed, 16, 0x20);
    tu_fixed fx = { fixed, 16, 0 };
    proto_rng rng = tu_fixed_rng(&fx);
    assert_int_equal(proto_case_id_new("cpia-1", 6, &rng, &id, &nonce), PROTO_OK);
    assert_memory_equal(nonce.b, fixed, 16);
    assert_int_equal(fx.off, 16);
    /* the parser: PC- in upper case and dashes anywhere after the prefix; nothing else */
    char text[PROTO_CASE_ID_TEXT_SIZE], t2[64];
    proto_case_id_format(&id, text);
    snprintf(t2, sizeof t2, "PC-%s", text + 3);
    proto_case_id back;
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_OK);
    assert_memory_equal(back.b, id.b, 16);
    snprintf(t2, sizeof t2, "pc--%s-", text + 3);
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_OK);
    snprintf(t2, sizeof t2, "pc%s", text + 3); /* no dash after the prefix */
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_ECASEID);
    snprintf(t2, sizeof t2, " %s", text); /* a space before */
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_ECASEID);
    snprintf(t2, sizeof t2, "%s", text);
    t2[4] = 'u'; /* outside the alphabet */
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_ECASEID);
    t2[4] = '*';
    assert_int_equal(proto_case_id_parse(t2, strlen(t2), &back), PROTO_ECASEID);
    assert_int_equal(proto_case_id_parse("xx-123", 6, &id), PROTO_ECASEID);
    assert_int_equal(proto_case_id_parse("pc-", 3, &id), PROTO_ECASEID);
    assert_int_equal(proto_case_id_parse("pc-uuuuu", 8, &id), PROTO_ECASEID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sync_messages),
        cmocka_unit_test(control_messages),
        cmocka_unit_test(receipts),
        cmocka_unit_test(manifest_round_trip_and_lookups),
        cmocka_unit_test(manifest_refusals),
        cmocka_unit_test(scopes_round_trip_canonically),
        cmocka_unit_test(scope_non_canonical_rejected),
        cmocka_unit_test(case_ids),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
