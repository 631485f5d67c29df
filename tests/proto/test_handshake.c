/*
 * proto.handshake - the member handshake and session frames: success both ways, non-members,
 * wrong peers, replayed and tampered handshake messages, replayed and reordered frames.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tutil.h"

typedef struct fx {
    proto_identity *alice, *bob, *eve;
} fx;

/* Members: alice and bob; eve is not. */
static bool is_member(void *ctx, const uint8_t origin[32])
{
    fx *f = ctx;
    return memcmp(origin, proto_identity_origin(f->alice), 32) == 0
        || memcmp(origin, proto_identity_origin(f->bob), 32) == 0;
}

static int setup(void **state)
{
    tu_seed();
    fx *f = calloc(1, sizeof *f);
    f->alice = tu_identity(0x01);
    f->bob = tu_identity(0x41);
    f->eve = tu_identity(0x21);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    proto_identity_free(f->alice);
    proto_identity_free(f->bob);
    proto_identity_free(f->eve);
    free(f);
    return 0;
}

typedef struct run {
    proto_handshake *hi, *hr;
    proto_buf hello, reply, fin;
    proto_session *si, *sr;
} run;

static void run_ok(fx *f, run *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(
        proto_hs_initiate(f->alice, proto_identity_origin(f->bob), tu_rng(), &r->hi, &r->hello),
        PROTO_OK);
    assert_int_equal(proto_hs_respond(f->bob, is_member, f, r->hello.p, r->hello.len, tu_rng(),
                         &r->hr, &r->reply, NULL),
        PROTO_OK);
    assert_int_equal(
        proto_hs_finish(r->hi, r->reply.p, r->reply.len, &r->fin, &r->si, NULL), PROTO_OK);
    assert_int_equal(proto_hs_accept(r->hr, r->fin.p, r->fin.len, &r->sr, NULL), PROTO_OK);
}

static void run_free(run *r)
{
    proto_handshake_free(r->hi);
    proto_handshake_free(r->hr);
    proto_session_free(r->si);
    proto_session_free(r->sr);
    proto_buf_free(&r->hello);
    proto_buf_free(&r->reply);
    proto_buf_free(&r->fin);
}

static void send_ok(proto_session *from, proto_session *to, const char *msg)
{
    proto_buf frame, out;
    assert_int_equal(proto_session_seal(from, (const uint8_t *)msg, strlen(msg), &frame), PROTO_OK);
    assert_int_equal(proto_session_open(to, frame.p, frame.len, NULL, &out, NULL), PROTO_OK);
    assert_int_equal(out.len, strlen(msg));
    assert_memory_equal(out.p, msg, out.len);
    proto_buf_free(&frame);
    proto_buf_free(&out);
}

static void members_get_sessions(void **state)
{
    fx *f = *state;
    run r;
    run_ok(f, &r);
    assert_memory_equal(proto_session_peer(r.si), proto_identity_origin(f->bob), 32);
    assert_memory_equal(proto_session_peer(r.sr), proto_identity_origin(f->alice), 32);
    for (int i = 0; i < 5; i++) {
        send_ok(r.si, r.sr, "headers batch");
        send_ok(r.sr, r.si, "bodies batch");
    }
    send_ok(r.si, r.sr, ""); /* empty frames work too */
    /* finished handshakes cannot be stepped again */
    proto_buf fin2;
    proto_session *s2;
    assert_int_equal(proto_hs_finish(r.hi, r.reply.p, r.reply.len, &fin2, &s2, NULL), PROTO_ESTATE);
    assert_int_equal(proto_hs_accept(r.hr, r.fin.p, r.fin.len, &s2, NULL), PROTO_ESTATE);
    run_free(&r);
}

static void non_member_fails_and_learns_nothing(void **state)
{
    fx *f = *state;
    proto_handshake *hi, *hr = NULL;
    proto_buf hello, reply = { NULL, 0 };
    assert_int_equal(
        proto_hs_initiate(f->eve, proto_identity_origin(f->bob), tu_rng(), &hi, &hello), PROTO_OK);
    assert_int_equal(
        proto_hs_respond(f->bob, is_member, f, hello.p, hello.len, tu_rng(), &hr, &reply, NULL),
        PROTO_ENOTMEMBER);
    assert_null(hr);
    assert_null(reply.p); /* nothing revealed, not even bob's origin */
    /* eve claiming alice's origin: bob replies, but eve cannot sign the finish as alice */
    proto_handshake_free(hi);
    proto_buf_free(&hello);
}

static void impostor_initiator_fails(void **state)
{
    fx *f = *state;
    /* eve sends a hello naming alice's origin */
    tb b = { 0 };
    uint8_t eph[32];
    tu_pattern(eph, 32, 9);
    tb_array(&b, 4);
    tb_uint(&b, PROTO_VERSION);
    tb_uint(&b, PROTO_K_HELLO);
    tb_bin(&b, proto_identity_origin(f->alice), 32);
    tb_bin(&b, eph, 32);
    proto_handshake *hr;
    proto_buf reply;
    /* the same hello in version 1: refused, nothing produced */
    b.p[1] = 1;
    proto_diag dg;
    assert_int_equal(proto_hs_respond(f->bob, is_member, f, b.p, b.len, tu_rng(), &hr, &reply, &dg),
        PROTO_EVERSION);
    assert_null(hr);
    assert_null(reply.p);
    assert_int_equal(dg.offset, 1);
    b.p[1] = PROTO_VERSION;
    assert_int_equal(
        proto_hs_respond(f->bob, is_member, f, b.p, b.len, tu_rng(), &hr, &reply, NULL), PROTO_OK);
    /* eve signs the finish with her own key */
    proto_handshake *he;
    proto_buf he_hello, fin;
    proto_session *s;
    assert_int_equal(
        proto_hs_initiate(f->eve, proto_identity_origin(f->bob), tu_rng(), &he, &he_hello),
        PROTO_OK);
    assert_int_equal(proto_hs_finish(he, reply.p, reply.len, &fin, &s, NULL), PROTO_ESIG);
    /* a finish from a real alice session does not fit this transcript either */
    run r;
    run_ok(f, &r);
    assert_int_equal(proto_hs_accept(hr, r.fin.p, r.fin.len, &s, NULL), PROTO_ESIG);
    run_free(&r);
    proto_handshake_free(hr);
    proto_handshake_free(he);
    proto_buf_free(&reply);
    proto_buf_free(&he_hello);
    tb_free(&b);
}

static void wrong_peer_detected(void **state)
{
    fx *f = *state;
    /* alice dials eve's origin, bob answers */
    proto_handshake *hi, *hr;
    proto_buf hello, reply, fin;
    proto_session *s;
    assert_int_equal(
        proto_hs_initiate(f->alice, proto_identity_origin(f->eve), tu_rng(), &hi, &hello),
        PROTO_OK);
    assert_int_equal(
        proto_hs_respond(f->bob, is_member, f, hello.p, hello.len, tu_rng(), &hr, &reply, NULL),
        PROTO_OK);
    assert_int_equal(proto_hs_finish(hi, reply.p, reply.len, &fin, &s, NULL), PROTO_EPEER);
    /* a failed step poisons the handshake */
    assert_int_equal(proto_hs_finish(hi, reply.p, reply.len, &fin, &s, NULL), PROTO_ESTATE);
    proto_handshake_free(hi);
    proto_handshake_free(hr);
    proto_buf_free(&hello);
    proto_buf_free(&reply);
}

static void replayed_handshake_messages_fail(void **state)
{
    fx *f = *state;
    run old;
    run_ok(f, &old);
    /* replaying the old hello makes bob answer with a fresh key; the old finish then fails */
    proto_handshake *hr;
    proto_buf reply;
    proto_session *s;
    assert_int_equal(proto_hs_respond(f->bob, is_member, f, old.hello.p, old.hello.len, tu_rng(),
                         &hr, &reply, NULL),
        PROTO_OK);
    assert_memory_not_equal(reply.p, old.reply.p, reply.len);
    assert_int_equal(proto_hs_accept(hr, old.fin.p, old.fin.len, &s, NULL), PROTO_ESIG);
    proto_handshake_free(hr);
    proto_buf_free(&reply);
    /* replaying the old reply to a new initiator fails */
    proto_handshake *hi;
    proto_buf hello, fin;
    assert_int_equal(
        proto_hs_initiate(f->alice, proto_identity_origin(f->bob), tu_rng(), &hi, &hello),
        PROTO_OK);
    assert_int_equal(proto_hs_finish(hi, old.reply.p, old.reply.len, &fin, &s, NULL), PROTO_ESIG);
    proto_handshake_free(hi);
    proto_buf_free(&hello);
    /* frames of the old session do not open in a new one */
    run now;
    run_ok(f, &now);
    proto_buf frame, out;
    assert_int_equal(proto_session_seal(old.si, (const uint8_t *)"x", 1, &frame), PROTO_OK);
    assert_int_equal(
        proto_session_open(now.sr, frame.p, frame.len, NULL, &out, NULL), PROTO_EDECRYPT);
    proto_buf_free(&frame);
    run_free(&now);
    run_free(&old);
}

static void tampered_handshake_messages_fail(void **state)
{
    fx *f = *state;
    run r;
    run_ok(f, &r);
    for (size_t bit = 0; bit < r.reply.len * 8; bit++) {
        proto_handshake *hi;
        proto_buf hello, fin;
        proto_session *s;
        assert_int_equal(
            proto_hs_initiate(f->alice, proto_identity_origin(f->bob), tu_rng(), &hi, &hello),
            PROTO_OK);
        /* a fresh responder to this hello, then its reply tampered */
        proto_handshake *hr;
        proto_buf reply;
        assert_int_equal(
            proto_hs_respond(f->bob, is_member, f, hello.p, hello.len, tu_rng(), &hr, &reply, NULL),
            PROTO_OK);
        reply.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(proto_hs_finish(hi, reply.p, reply.len, &fin, &s, NULL), PROTO_OK);
        proto_handshake_free(hi);
        proto_handshake_free(hr);
        proto_buf_free(&hello);
        proto_buf_free(&reply);
    }
    for (size_t bit = 0; bit < r.fin.len * 8; bit++) {
        run x;
        memset(&x, 0, sizeof x);
        assert_int_equal(
            proto_hs_initiate(f->alice, proto_identity_origin(f->bob), tu_rng(), &x.hi, &x.hello),
            PROTO_OK);
        assert_int_equal(proto_hs_respond(f->bob, is_member, f, x.hello.p, x.hello.len, tu_rng(),
                             &x.hr, &x.reply, NULL),
            PROTO_OK);
        assert_int_equal(
            proto_hs_finish(x.hi, x.reply.p, x.reply.len, &x.fin, &x.si, NULL), PROTO_OK);
        x.fin.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(proto_hs_accept(x.hr, x.fin.p, x.fin.len, &x.sr, NULL), PROTO_OK);
        run_free(&x);
    }
    /* a hello with its bits flipped: rejected, or answered for another (member) origin */
    for (size_t bit = 0; bit < r.hello.len * 8; bit++) {
        uint8_t q[128];
        memcpy(q, r.hello.p, r.hello.len);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        proto_handshake *hr = NULL;
        proto_buf reply = { NULL, 0 };
        proto_err err
            = proto_hs_respond(f->bob, is_member, f, q, r.hello.len, tu_rng(), &hr, &reply, NULL);
        if (err == PROTO_OK) {
            /* only the ephemeral key can change unnoticed here; the finish then fails */
            proto_session *s;
            assert_int_equal(proto_hs_accept(hr, r.fin.p, r.fin.len, &s, NULL), PROTO_ESIG);
        }
        proto_handshake_free(hr);
        proto_buf_free(&reply);
    }
    run_free(&r);
}

static void frames_replayed_reordered_tampered(void **state)
{
    fx *f = *state;
    run r;
    run_ok(f, &r);
    proto_buf f0, f1, f2, out;
    assert_int_equal(proto_session_seal(r.si, (const uint8_t *)"zero", 4, &f0), PROTO_OK);
    assert_int_equal(proto_session_seal(r.si, (const uint8_t *)"one", 3, &f1), PROTO_OK);
    assert_int_equal(proto_session_seal(r.si, (const uint8_t *)"two", 3, &f2), PROTO_OK);
    /* a frame for the other direction (same counter) does not open here */
    proto_buf back;
    assert_int_equal(proto_session_seal(r.sr, (const uint8_t *)"two", 3, &back), PROTO_OK);
    assert_int_equal(proto_session_open(r.sr, back.p, back.len, NULL, &out, NULL), PROTO_EDECRYPT);
    /* out of order */
    assert_int_equal(proto_session_open(r.sr, f1.p, f1.len, NULL, &out, NULL), PROTO_EREPLAY);
    /* tampered: every bit; the counter does not advance */
    for (size_t bit = 0; bit < f0.len * 8; bit++) {
        f0.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(proto_session_open(r.sr, f0.p, f0.len, NULL, &out, NULL), PROTO_OK);
        f0.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(proto_session_open(r.sr, f0.p, f0.len, NULL, &out, NULL), PROTO_OK);
    assert_memory_equal(out.p, "zero", 4);
    proto_buf_free(&out);
    /* replayed */
    assert_int_equal(proto_session_open(r.sr, f0.p, f0.len, NULL, &out, NULL), PROTO_EREPLAY);
    assert_int_equal(proto_session_open(r.sr, f1.p, f1.len, NULL, &out, NULL), PROTO_OK);
    proto_buf_free(&out);
    assert_int_equal(proto_session_open(r.sr, f2.p, f2.len, NULL, &out, NULL), PROTO_OK);
    proto_buf_free(&out);
    proto_buf_free(&back);
    proto_buf_free(&f0);
    proto_buf_free(&f1);
    proto_buf_free(&f2);
    run_free(&r);
}

int main(void)
{
    if (proto_init() != PROTO_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(members_get_sessions),
        cmocka_unit_test(non_member_fails_and_learns_nothing),
        cmocka_unit_test(impostor_initiator_fails),
        cmocka_unit_test(wrong_peer_detected),
        cmocka_unit_test(replayed_handshake_messages_fail),
        cmocka_unit_test(tampered_handshake_messages_fail),
        cmocka_unit_test(frames_replayed_reordered_tampered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
