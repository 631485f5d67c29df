/*
 * proto.decode - strict, bounded decoding of untrusted bytes: every limit, every forbidden
 * form, truncation at every offset, single-byte corruption and random bytes against every
 * decoder entry point; error codes and diagnostic offsets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tdecode.h"
#include "tutil.h"

static tu_vectors vs;

static int setup(void **state)
{
    (void)state;
    tu_seed();
    return tu_vectors_load(PROTO_VECTORS_FILE, &vs) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_vectors_free(&vs);
    tdec_cleanup();
    return 0;
}

/* Every message-like value in the vectors file. */
typedef void (*each_cb)(const char *where, const uint8_t *p, size_t n);
static void each_vector_value(each_cb cb)
{
    for (size_t i = 0; i < vs.n; i++)
        for (size_t j = 0; j < vs.v[i].nkv; j++) {
            size_t n;
            uint8_t *p = tu_unhex(vs.v[i].kv[j].value, &n);
            if (p == NULL || n == 0) {
                free(p);
                continue;
            }
            cb(vs.v[i].kv[j].key, p, n);
            free(p);
        }
}

static proto_err scan(const uint8_t *p, size_t n, const proto_limits *lim, proto_diag *d)
{
    unsigned kind;
    return proto_peek(p, n, lim, &kind, d);
}

/* A few bytes that claim billions of elements or bytes are rejected before any allocation:
 * the pre-scan sees that the bytes cannot hold them (msgpack-c would allocate first). */
static void huge_claims_rejected(void **state)
{
    (void)state;
    static const uint8_t claims[][16] = {
        { 0xdd, 0xff, 0xff, 0xff, 0xff },                   /* array32 of 4 G items */
        { 0x93, 0x02, 0x0e, 0xdd, 0x7f, 0xff, 0xff, 0xff }, /* headers batch of 2 G */
        { 0x93, 0x02, 0x0e, 0xc6, 0xff, 0xff, 0xff, 0xf0 }, /* bin32 of 4 GB */
        { 0x93, 0x02, 0x0e, 0xdb, 0xff, 0xff, 0xff, 0xf0 }, /* str32 of 4 GB */
        { 0x93, 0x02, 0x0e, 0xdc, 0xff, 0xff },             /* array16 of 65535 */
        { 0x9f, 0x02, 0x0e, 0x9f, 0x9f, 0x9f, 0x9f },       /* nested arrays owing 70 items */
    };
    static const size_t lens[] = { 5, 8, 8, 8, 6, 7 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        proto_diag d = { 0, NULL };
        assert_int_equal(scan(claims[i], lens[i], NULL, &d), PROTO_ETRUNC);
        assert_non_null(d.reason);
        for (size_t k = 0; k < ntdecoders; k++) {
            proto_err err = tdecoders[k].fn(claims[i], lens[i]);
            assert_int_not_equal(err, PROTO_OK);
            assert_int_not_equal(err, PROTO_ENOMEM);
        }
    }
}

/* The top-level array counts: max_depth 8 allows eight nested arrays in all. */
static void depth_limit(void **state)
{
    (void)state;
    tb b = { 0 };
    for (int i = 0; i < 9; i++)
        tb_array(&b, 1);
    tb_uint(&b, 1);
    proto_diag d;
    assert_int_equal(scan(b.p, b.len, NULL, &d), PROTO_EDEPTH);
    assert_int_equal(d.offset, 8); /* the ninth array */
    proto_limits lim;
    proto_limits_default(&lim);
    lim.max_depth = 9;
    /* deep enough now; then it fails as a message, not as a limit */
    assert_int_equal(scan(b.p, b.len, &lim, &d), PROTO_ESHAPE);
    lim.max_depth = 1000; /* clamped to PROTO_MAX_DEPTH_LIMIT */
    tb c = { 0 };
    for (int i = 0; i < 40; i++)
        tb_array(&c, 1);
    tb_uint(&c, 1);
    assert_int_equal(scan(c.p, c.len, &lim, &d), PROTO_EDEPTH);
    tb_free(&b);
    tb_free(&c);
}

static void item_and_size_limits(void **state)
{
    (void)state;
    proto_limits lim;
    proto_limits_default(&lim);
    assert_int_equal(lim.max_message, 16u * 1024 * 1024);
    /* 100 ids: 3 + 100 items */
    tb b = { 0 };
    tb_array(&b, 3);
    tb_uint(&b, PROTO_VERSION);
    tb_uint(&b, PROTO_K_WANT);
    tb_array(&b, 100);
    uint8_t id[32] = { 0 };
    for (int i = 0; i < 100; i++)
        tb_bin(&b, id, 32);
    proto_want_msg w;
    proto_diag d;
    assert_int_equal(proto_want_decode(b.p, b.len, NULL, &w, &d), PROTO_OK);
    proto_want_fini(&w);
    lim.max_items = 103;
    assert_int_equal(proto_want_decode(b.p, b.len, &lim, &w, &d), PROTO_EITEMS);
    lim.max_items = 104;
    assert_int_equal(proto_want_decode(b.p, b.len, &lim, &w, &d), PROTO_OK);
    proto_want_fini(&w);
    lim.max_message = b.len - 1;
    assert_int_equal(proto_want_decode(b.p, b.len, &lim, &w, &d), PROTO_ETOOBIG);
    tb_free(&b);

    /* The 16 MiB default: a 16 MiB + 1 control response is refused, accepted when raised. */
    size_t big = 16u * 1024 * 1024 + 1;
    uint8_t *payload = calloc(1, big);
    assert_non_null(payload);
    proto_ctl_response r = { 1, { payload, big } };
    proto_buf m;
    assert_int_equal(proto_ctl_response_encode(&r, &m), PROTO_OK);
    assert_true(m.len > 16u * 1024 * 1024);
    proto_ctl_response out;
    assert_int_equal(proto_ctl_response_decode(m.p, m.len, NULL, &out, &d), PROTO_ETOOBIG);
    proto_limits_default(&lim);
    lim.max_message = 32u * 1024 * 1024;
    assert_int_equal(proto_ctl_response_decode(m.p, m.len, &lim, &out, &d), PROTO_OK);
    assert_int_equal(out.payload.len, big);
    proto_buf_free(&m);
    free(payload);
}

/* A message of n bytes that a decoder refuses at byte offset off. */
typedef struct bad_bytes {
    uint8_t b[16];
    size_t n;
    size_t off;
} bad_bytes;

static void non_canonical_rejected(void **state)
{
    (void)state;
    /* [2, 19, id, code, message] with one field in a longer form than needed */
    static const bad_bytes cases[] = {
        { { 0x95, 0x02, 0x13, 0xcc, 0x05, 0x03, 0xa1, 'x' }, 8, 3 },       /* uint8 for 5 */
        { { 0x95, 0x02, 0x13, 0xcd, 0x00, 0xc8, 0x03, 0xa1, 'x' }, 9, 3 }, /* uint16 for 200 */
        { { 0x95, 0x02, 0x13, 0xce, 0x00, 0x00, 0xff, 0xff, 0x03, 0xa0 }, 10, 3 }, /* uint32 */
        { { 0x95, 0x02, 0x13, 0x07, 0x03, 0xd9, 0x01, 'x' }, 8, 5 },               /* str8 for 1 */
        { { 0xdc, 0x00, 0x05, 0x02, 0x13, 0x07, 0x03, 0xa0 }, 8, 0 }, /* array16 for 5 */
        { { 0x94, 0x02, 0x12, 0x07, 0xc5, 0x00, 0x01, 'x' }, 8, 4 },  /* bin16 for 1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        proto_diag d = { 0, NULL };
        assert_int_equal(scan(cases[i].b, cases[i].n, NULL, &d), PROTO_ENONCANON);
        assert_int_equal(d.offset, cases[i].off);
    }
}

/* A SCOPE whose vv or cloud names origin index 0 while the origin table is empty (found by
 * the scope fuzzer: index 0 passed the bound check of an empty table). */
static void empty_origin_table_has_no_index(void **state)
{
    (void)state;
    static const bad_bytes cases[] = {
        /* [4, 20, [], [], [[0, 20]], []]: a cloud dot */
        { { 0x96, 0x05, 0x14, 0x90, 0x90, 0x91, 0x92, 0x00, 0x14, 0x90 }, 10, 7 },
        /* [4, 20, [], [[0, 3]], [], []]: a vv entry */
        { { 0x96, 0x05, 0x14, 0x90, 0x91, 0x92, 0x00, 0x03, 0x90, 0x90 }, 10, 6 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        crdt_scope *sc = NULL;
        proto_diag d = { 0, NULL };
        assert_int_equal(
            proto_scope_decode(cases[i].b, cases[i].n, NULL, NULL, &sc, &d), PROTO_EVALUE);
        assert_null(sc);
        assert_int_equal(d.offset, cases[i].off);
    }
}

static void forbidden_types_rejected(void **state)
{
    (void)state;
    static const uint8_t forms[]
        = { 0x80, 0xde, 0xc0, 0xc1, 0xca, 0xcb, 0xd0, 0xe0, 0xff, 0xd4, 0xc7 };
    for (size_t i = 0; i < sizeof forms; i++) {
        uint8_t m[16] = { 0x93, 0x02, 0x13 };
        m[3] = forms[i];
        proto_diag d = { 0, NULL };
        proto_err err = scan(m, sizeof m, NULL, &d);
        assert_int_equal(err, PROTO_EMSGPACK);
        assert_int_equal(d.offset, 3);
    }
}

static void framing_errors(void **state)
{
    (void)state;
    proto_diag d;
    proto_ctl_error e;
    /* trailing byte */
    static const uint8_t trailing[] = { 0x95, 0x05, 0x13, 0x07, 0x03, 0xa1, 'x', 0x00 };
    assert_int_equal(
        proto_ctl_error_decode(trailing, sizeof trailing, NULL, &e, &d), PROTO_ETRAILING);
    assert_int_equal(d.offset, 7);
    /* versions 1 to 4, and an unknown version */
    static const uint8_t v1[] = { 0x95, 0x01, 0x13, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(v1, sizeof v1, NULL, &e, &d), PROTO_EVERSION);
    assert_int_equal(d.offset, 1);
    static const uint8_t v2[] = { 0x95, 0x02, 0x13, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(v2, sizeof v2, NULL, &e, &d), PROTO_EVERSION);
    static const uint8_t v3[] = { 0x95, 0x03, 0x13, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(v3, sizeof v3, NULL, &e, &d), PROTO_EVERSION);
    static const uint8_t v4[] = { 0x95, 0x04, 0x13, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(v4, sizeof v4, NULL, &e, &d), PROTO_EVERSION);
    static const uint8_t v6[] = { 0x95, 0x06, 0x13, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(v6, sizeof v6, NULL, &e, &d), PROTO_EVERSION);
    /* another kind */
    static const uint8_t k18[] = { 0x95, 0x05, 0x12, 0x07, 0x03, 0xa1, 'x' };
    assert_int_equal(proto_ctl_error_decode(k18, sizeof k18, NULL, &e, &d), PROTO_EKIND);
    assert_int_equal(d.offset, 2);
    /* wrong arity */
    static const uint8_t ar[] = { 0x94, 0x05, 0x13, 0x07, 0x03 };
    assert_int_equal(proto_ctl_error_decode(ar, sizeof ar, NULL, &e, &d), PROTO_ESHAPE);
    /* a field of the wrong type: offset points at it */
    static const uint8_t ty[] = { 0x95, 0x05, 0x13, 0x07, 0xc4, 0x00, 0xa0 };
    assert_int_equal(proto_ctl_error_decode(ty, sizeof ty, NULL, &e, &d), PROTO_ESHAPE);
    assert_int_equal(d.offset, 4);
    assert_non_null(strstr(d.reason, "error code"));
    /* NUL in a text field */
    static const uint8_t nul[] = { 0x95, 0x05, 0x13, 0x07, 0x03, 0xa2, 'a', 0x00 };
    assert_int_equal(proto_ctl_error_decode(nul, sizeof nul, NULL, &e, &d), PROTO_EVALUE);
    assert_int_equal(d.offset, 5);
    /* every error code has its own sentence */
    for (int i = 0; i < PROTO_ERR_COUNT; i++)
        for (int j = i + 1; j < PROTO_ERR_COUNT; j++)
            assert_string_not_equal(proto_strerror((proto_err)i), proto_strerror((proto_err)j));
    assert_string_equal(proto_strerror((proto_err)999), "unknown proto error");
}

/* Diagnostics inside a nested signed encoding are offsets into the outer message. */
static void nested_offsets(void **state)
{
    (void)state;
    tb in = { 0 };
    tb_array(&in, 6);
    tb_uint(&in, PROTO_VERSION);
    tb_uint(&in, PROTO_K_RECEIPT_FIELDS);
    tb_uint(&in, 9); /* bad receipt kind */
    uint8_t z[64] = { 0 };
    tb_bin(&in, z, 32);
    tb_bin(&in, z, 32);
    tb_uint(&in, 5);
    tb out = { 0 };
    tb_array(&out, 4);
    tb_uint(&out, PROTO_VERSION);
    tb_uint(&out, PROTO_K_RECEIPT);
    tb_bin(&out, in.p, in.len);
    tb_bin(&out, z, 64);
    proto_receipt r;
    proto_diag d;
    assert_int_equal(proto_receipt_decode(out.p, out.len, NULL, &r, &d), PROTO_EVALUE);
    assert_int_equal(d.offset, 3 + 2 + 3); /* outer head, bin8 header, inner head */
    tb_free(&in);
    tb_free(&out);
}

/* Every top-level message of the vectors, its version changed to 1 (the previous protocol):
 * refused with PROTO_EVERSION by its decoder, at offset 1. */
static const char *const wrapped[]
    = { "body", "access_grant", "grant_plain", "note_plain", "case_id" };
static size_t n_v1;
static void version_1_refused(const char *where, const uint8_t *p, size_t n)
{
    unsigned kind;
    if (n < 2 || (p[0] & 0xf0) != 0x90 || proto_peek(p, n, NULL, &kind, NULL) != PROTO_OK)
        return;
    if (kind == PROTO_K_HEADER_FIELDS || kind == PROTO_K_DELTA_PLAIN || kind == PROTO_K_GRANT_PLAIN
        || kind == PROTO_K_ACCESS_GRANT || kind == PROTO_K_ACCESS_EPOCH
        || kind == PROTO_K_ACCESS_NARROW || kind == PROTO_K_FORGET_PLAIN
        || kind == PROTO_K_NOTE_PLAIN)
        return; /* found only inside others (their versions: below) */
    uint8_t *q = malloc(n);
    assert_non_null(q);
    memcpy(q, p, n);
    q[1] = 1;
    proto_diag d = { 0, NULL };
    assert_int_equal(proto_peek(q, n, NULL, &kind, &d), PROTO_EVERSION);
    assert_int_equal(d.offset, 1);
    for (size_t k = 0; k < ntdecoders; k++) {
        bool skip = false;
        for (size_t w = 0; w < sizeof wrapped / sizeof wrapped[0]; w++)
            skip = skip || strcmp(tdecoders[k].name, wrapped[w]) == 0;
        proto_err err = tdecoders[k].fn(q, n);
        /* the handshake decoders' own limits (size, depth 2, 8 items) may refuse it first */
        bool limited = strncmp(tdecoders[k].name, "hs_", 3) == 0
            && (err == PROTO_ETOOBIG || err == PROTO_EDEPTH || err == PROTO_EITEMS);
        if (!skip && err != PROTO_EVERSION && !limited)
            fail_msg("%s: %s of version 1 gave %s", tdecoders[k].name, where, proto_strerror(err));
    }
    free(q);
    n_v1++;
}

static void version_1_everywhere(void **state)
{
    (void)state;
    each_vector_value(version_1_refused);
    assert_true(n_v1 >= 20);
    /* inside: a plaintext of version 1 under the right key and header */
    const tdec *body = tdec_find("body");
    static const uint8_t want_v1[] = { 0x93, 0x01, 0x10, 0x90 };
    assert_int_equal(body->fn(want_v1, sizeof want_v1), PROTO_EVERSION);
}

static size_t n_trunc;
static void truncate_everywhere(const char *where, const uint8_t *p, size_t n)
{
    if (strcmp(where, "plaintext_padded") == 0 || strcmp(where, "grant_plain_padded") == 0
        || strcmp(where, "note_plain_padded") == 0)
        return; /* padding: a prefix of it is the (valid) plaintext */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *q = malloc(cut + 1);
        assert_non_null(q);
        memcpy(q, p, cut);
        for (size_t k = 0; k < ntdecoders; k++)
            if (strcmp(tdecoders[k].name, "case_id") != 0 && strcmp(tdecoders[k].name, "body") != 0
                && strcmp(tdecoders[k].name, "grant_plain") != 0
                && strcmp(tdecoders[k].name, "note_plain") != 0)
                if (tdecoders[k].fn(q, cut) == PROTO_OK)
                    fail_msg(
                        "%s accepted %s cut to %zu of %zu bytes", tdecoders[k].name, where, cut, n);
        free(q);
        n_trunc++;
    }
}

static void truncation_at_every_offset(void **state)
{
    (void)state;
    each_vector_value(truncate_everywhere);
    assert_true(n_trunc > 1000);
}

/* Any single-byte change: no crash, and whatever is still accepted re-encodes to itself
 * (tdecode's oracle aborts otherwise). */
static size_t n_mut;
static void mutate_bytes(const char *where, const uint8_t *p, size_t n)
{
    (void)where;
    if (n > 4096)
        return;
    uint8_t *q = malloc(n);
    assert_non_null(q);
    for (size_t i = 0; i < n; i++) {
        memcpy(q, p, n);
        q[i] = (uint8_t)(q[i] ^ (uint8_t)(1 + tu_next() % 255));
        for (size_t k = 0; k < ntdecoders; k++)
            (void)tdecoders[k].fn(q, n);
        n_mut++;
    }
    free(q);
}

static void single_byte_corruption(void **state)
{
    (void)state;
    each_vector_value(mutate_bytes);
    assert_true(n_mut > 1000);
}

static void random_bytes(void **state)
{
    (void)state;
    uint8_t buf[512];
    for (int i = 0; i < 3000; i++) {
        size_t n = tu_next() % sizeof buf;
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)tu_next();
        if (n > 0 && i % 2 == 0)
            buf[0] = (uint8_t)(0x90 | (tu_next() % 8)); /* look like a message */
        if (n > 1 && i % 2 == 0)
            buf[1] = 1;
        for (size_t k = 0; k < ntdecoders; k++)
            (void)tdecoders[k].fn(buf, n);
    }
}

/* A large valid scope (100k origins, each with a vv entry and a cloud dot, plus 100k set
 * entries) decodes: every canonical check is a linear pass (a quadratic one would take
 * minutes here and trip the ctest timeout). */
static void large_scope_decodes(void **state)
{
    (void)state;
    const uint32_t n = 100000;
    tb b = { 0 };
    tb_array(&b, 6);
    tb_uint(&b, PROTO_VERSION);
    tb_uint(&b, PROTO_K_SCOPE);
    tb_array(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t o[32] = { (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };
        tb_bin(&b, o, 32);
    }
    tb_array(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        tb_array(&b, 2);
        tb_uint(&b, i);
        tb_uint(&b, 1);
    }
    tb_array(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        tb_array(&b, 2);
        tb_uint(&b, i);
        tb_uint(&b, 3);
    }
    tb_array(&b, 1);
    tb_array(&b, 3);
    tb_str(&b, "lingue");
    tb_uint(&b, CRDT_SET);
    tb_array(&b, n);
    for (uint32_t i = 0; i < n; i++) { /* element "x", one add per origin: (x, origin i, 1) */
        tb_array(&b, 3);
        tb_bin(&b, "x", 1);
        tb_uint(&b, i);
        tb_uint(&b, 1);
    }
    crdt_scope *sc = NULL;
    proto_diag d = { 0, NULL };
    proto_err err = proto_scope_decode(b.p, b.len, NULL, NULL, &sc, &d);
    if (err != PROTO_OK)
        fail_msg("%s at %zu: %s", proto_strerror(err), d.offset, d.reason);
    assert_int_equal(crdt_scope_entry_count(sc), n);
    proto_buf out;
    assert_int_equal(proto_scope_encode(sc, &out), PROTO_OK);
    assert_int_equal(out.len, b.len);
    assert_memory_equal(out.p, b.p, b.len);
    proto_buf_free(&out);
    crdt_scope_free(sc);
    tb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(huge_claims_rejected),
        cmocka_unit_test(depth_limit),
        cmocka_unit_test(item_and_size_limits),
        cmocka_unit_test(non_canonical_rejected),
        cmocka_unit_test(empty_origin_table_has_no_index),
        cmocka_unit_test(forbidden_types_rejected),
        cmocka_unit_test(framing_errors),
        cmocka_unit_test(nested_offsets),
        cmocka_unit_test(version_1_everywhere),
        cmocka_unit_test(truncation_at_every_offset),
        cmocka_unit_test(single_byte_corruption),
        cmocka_unit_test(random_bytes),
        cmocka_unit_test(large_scope_decodes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
