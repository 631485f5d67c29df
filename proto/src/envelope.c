/*
 * envelope.c - headers, delta bodies and key grants (PROTOCOL.md, "Envelope").
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_FIELDS 12
#define BODY_OVERHEAD (PROTO_NONCE_LEN + PROTO__AEAD_ABYTES)
#define BODY_LEN_MAX UINT32_MAX

static const char ad_label[] = "patto-ad-v1";
#define AD_LEN                                                                                     \
    (sizeof ad_label - 1 + 1 + 1 + PROTO_ORIGIN_LEN + 8 + PROTO_HASH_LEN + 8 + 2 + PROTO_TAG_LEN)

/* ---------------------------------------------------------------------------------------- */
/* Header                                                                                    */

static void enc_fields(proto__w *w, const void *arg)
{
    const proto_header *h = arg;
    proto__w_head(w, HEADER_FIELDS, PROTO_K_HEADER_FIELDS);
    proto__w_uint(w, h->kind);
    proto__w_bin(w, h->origin, PROTO_ORIGIN_LEN);
    proto__w_uint(w, h->seq);
    proto__w_bin(w, h->prev, PROTO_HASH_LEN);
    proto__w_uint(w, h->hlc.wall);
    proto__w_uint(w, h->hlc.logical);
    proto__w_bin(w, h->tag, PROTO_TAG_LEN);
    proto__w_array(w, h->nrecipients);
    for (size_t i = 0; i < h->nrecipients; i++)
        proto__w_bin(w, h->recipients[i].b, PROTO_ORIGIN_LEN);
    proto__w_uint(w, h->body_len);
    proto__w_bin(w, h->body_hash, PROTO_HASH_LEN);
}

/* The outer HEADER message: [1, 1, fields bin, sig bin]. arg: {fields, sig}. */
struct signed_msg {
    unsigned kind;
    proto_bytes fields;
    const uint8_t *sig;
};

static void enc_signed(proto__w *w, const void *arg)
{
    const struct signed_msg *s = arg;
    proto__w_head(w, 4, s->kind);
    proto__w_bin(w, s->fields.p, s->fields.len);
    proto__w_bin(w, s->sig, PROTO_SIG_LEN);
}

proto_err proto__encode_signed(
    unsigned kind, proto_bytes fields, const uint8_t *sig, proto_buf *out)
{
    struct signed_msg s = { kind, fields, sig };
    return proto__encode(enc_signed, &s, out);
}

static bool header_fields_ok(const proto_header *h)
{
    if (h->kind != PROTO_HDR_DELTA && h->kind != PROTO_HDR_KEY_GRANT)
        return false;
    if (h->seq == 0 || h->hlc.wall > CRDT_HLC_WALL_MAX || h->body_len > BODY_LEN_MAX)
        return false;
    if (h->kind == PROTO_HDR_DELTA && h->nrecipients != 0)
        return false;
    if (h->kind == PROTO_HDR_KEY_GRANT
        && (h->nrecipients == 0 || h->nrecipients > PROTO_RECIPIENTS_MAX))
        return false;
    for (size_t i = 1; i < h->nrecipients; i++)
        if (memcmp(h->recipients[i - 1].b, h->recipients[i].b, PROTO_ORIGIN_LEN) >= 0)
            return false;
    return true;
}

proto_err proto_header_encode(const proto_header *h, proto_buf *out)
{
    if (h == NULL || out == NULL || (h->nrecipients > 0 && h->recipients == NULL))
        return PROTO_EINVAL;
    if (!header_fields_ok(h))
        return PROTO_EVALUE;
    proto_buf fields;
    proto_err err = proto__encode(enc_fields, h, &fields);
    if (err != PROTO_OK)
        return err;
    struct signed_msg s = { PROTO_K_HEADER, { fields.p, fields.len }, h->sig };
    err = proto__encode(enc_signed, &s, out);
    proto_buf_free(&fields);
    return err;
}

/* Decode [1, kind, fields bin, sig bin64] and return the fields' bytes. */
proto_err proto__decode_signed(const uint8_t *msg, size_t len, const proto_limits *lim,
    unsigned kind, proto_bytes *fields, uint8_t sig[PROTO_SIG_LEN], proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, kind, 4, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_bin(&d, &f[2], len, fields, "signed fields must be bin")
        || !proto__d_fixed(&d, &f[3], PROTO_SIG_LEN, sig, "signature must be bin of 64 bytes"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    return PROTO_OK;
}

void proto_header_fini(proto_header *h)
{
    if (h == NULL)
        return;
    free(h->recipients);
    h->recipients = NULL;
    h->nrecipients = 0;
}

proto_err proto_header_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_header *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto_bytes fb;
    proto_err err = proto__decode_signed(msg, len, lim, PROTO_K_HEADER, &fb, out->sig, diag);
    if (err != PROTO_OK)
        return err;
    proto__d d;
    const msgpack_object *f;
    err = proto__d_open(&d, fb.p, fb.len, lim, (size_t)(fb.p - msg), PROTO_K_HEADER_FIELDS,
        HEADER_FIELDS, &f, diag);
    if (err != PROTO_OK)
        return err;
    uint64_t kind, logical;
    const msgpack_object *rc;
    size_t nr;
    if (!proto__d_uint(&d, &f[2], 255, &kind, "header kind must be 1 (delta) or 2 (key grant)")
        || !proto__d_fixed(&d, &f[3], PROTO_ORIGIN_LEN, out->origin, "origin must be bin of 32")
        || !proto__d_uint(&d, &f[4], UINT64_MAX, &out->seq, "seq must be an unsigned integer")
        || !proto__d_fixed(&d, &f[5], PROTO_HASH_LEN, out->prev, "prev must be bin of 32")
        || !proto__d_uint(&d, &f[6], CRDT_HLC_WALL_MAX, &out->hlc.wall,
            "hlc wall must be an unsigned integer < 2^48")
        || !proto__d_uint(&d, &f[7], CRDT_HLC_LOGICAL_MAX, &logical,
            "hlc logical must be an unsigned integer < 2^16")
        || !proto__d_fixed(&d, &f[8], PROTO_TAG_LEN, out->tag, "tag must be bin of 32")
        || !proto__d_arr(&d, &f[9], PROTO_RECIPIENTS_MAX, &rc, &nr,
            "recipients must be an array of at most 256 origins")
        || !proto__d_uint(&d, &f[10], BODY_LEN_MAX, &out->body_len,
            "body length must be an unsigned integer < 2^32")
        || !proto__d_fixed(
            &d, &f[11], PROTO_HASH_LEN, out->body_hash, "body hash must be bin of 32"))
        return proto__d_fail(&d, diag);
    out->kind = (uint8_t)kind;
    out->hlc.logical = (uint16_t)logical;
    if (kind != PROTO_HDR_DELTA && kind != PROTO_HDR_KEY_GRANT) {
        proto__d_err(&d, &f[2], PROTO_EVALUE, "header kind must be 1 (delta) or 2 (key grant)");
        return proto__d_fail(&d, diag);
    }
    if (out->seq == 0) {
        proto__d_err(&d, &f[4], PROTO_EVALUE, "seq starts at 1");
        return proto__d_fail(&d, diag);
    }
    if (out->seq == 1 && !proto__is_zero(out->prev, PROTO_HASH_LEN)) {
        proto__d_err(&d, &f[5], PROTO_EVALUE, "prev of seq 1 must be 32 zero bytes");
        return proto__d_fail(&d, diag);
    }
    if ((kind == PROTO_HDR_DELTA) != (nr == 0)) {
        proto__d_err(
            &d, &f[9], PROTO_EVALUE, "a delta header has no recipients, a key grant at least one");
        return proto__d_fail(&d, diag);
    }
    if (kind == PROTO_HDR_DELTA
        && (out->body_len < BODY_OVERHEAD + PROTO_PAD_BLOCK
            || (out->body_len - BODY_OVERHEAD) % PROTO_PAD_BLOCK != 0)) {
        proto__d_err(
            &d, &f[10], PROTO_EVALUE, "delta body length must be 40 + a positive multiple of 256");
        return proto__d_fail(&d, diag);
    }
    if (nr > 0) {
        out->recipients = proto__calloc(nr, sizeof *out->recipients);
        if (out->recipients == NULL) {
            proto__d_close(&d);
            return PROTO_ENOMEM;
        }
        out->nrecipients = nr;
        for (size_t i = 0; i < nr; i++) {
            if (!proto__d_fixed(&d, &rc[i], PROTO_ORIGIN_LEN, out->recipients[i].b,
                    "recipient must be bin of 32"))
                break;
            if (i > 0 && memcmp(out->recipients[i - 1].b, out->recipients[i].b, 32) >= 0) {
                proto__d_err(&d, &rc[i], PROTO_ENONCANON,
                    "recipients must be sorted ascending without duplicates");
                break;
            }
        }
        if (d.err != PROTO_OK) {
            proto_header_fini(out);
            return proto__d_fail(&d, diag);
        }
    }
    proto__d_close(&d);
    out->signed_bytes = fb;
    proto__hash(out->id, PROTO_HASH_LEN, NULL, 0, &fb, 1);
    return PROTO_OK;
}

proto_err proto_header_verify(const proto_header *h)
{
    if (h == NULL || h->signed_bytes.p == NULL)
        return PROTO_EINVAL;
    if (!proto__verify(h->origin, h->signed_bytes.p, h->signed_bytes.len, h->sig))
        return PROTO_ESIG;
    return PROTO_OK;
}

/* Sign h's fields with id and write the HEADER message; sets h->sig and h->id. */
static proto_err header_sign(proto_header *h, const proto_identity *id, proto_buf *out)
{
    proto_buf fields;
    proto_err err = proto__encode(enc_fields, h, &fields);
    if (err != PROTO_OK)
        return err;
    proto__sign(id, fields.p, fields.len, h->sig);
    proto_bytes fb = { fields.p, fields.len };
    proto__hash(h->id, PROTO_HASH_LEN, NULL, 0, &fb, 1);
    struct signed_msg s = { PROTO_K_HEADER, fb, h->sig };
    err = proto__encode(enc_signed, &s, out);
    proto_buf_free(&fields);
    return err;
}

/* The header fields an author fixes before its body is sealed: kind, origin, seq, prev, clock,
 * and the tag of the key (the body's length and hash come after). */
static void header_fixed(proto_header *h, uint8_t kind, const proto_identity *author,
    const proto_seal_info *info, const proto_scope_key *key)
{
    h->kind = kind;
    memcpy(h->origin, author->origin, PROTO_ORIGIN_LEN);
    h->seq = info->seq;
    memcpy(h->prev, info->prev, PROTO_HASH_LEN);
    h->hlc = info->hlc;
    memcpy(h->tag, key->tag, PROTO_TAG_LEN);
}

/* The associated data of a delta body: fixed-width header fields (PROTOCOL.md). */
static void header_ad(const proto_header *h, uint8_t ad[AD_LEN])
{
    size_t o = 0;
    memcpy(ad, ad_label, sizeof ad_label - 1);
    o += sizeof ad_label - 1;
    ad[o++] = PROTO_VERSION;
    ad[o++] = h->kind;
    memcpy(ad + o, h->origin, PROTO_ORIGIN_LEN);
    o += PROTO_ORIGIN_LEN;
    proto__be64(ad + o, h->seq);
    o += 8;
    memcpy(ad + o, h->prev, PROTO_HASH_LEN);
    o += PROTO_HASH_LEN;
    proto__be64(ad + o, h->hlc.wall);
    o += 8;
    ad[o++] = (uint8_t)(h->hlc.logical >> 8);
    ad[o++] = (uint8_t)h->hlc.logical;
    memcpy(ad + o, h->tag, PROTO_TAG_LEN);
}

/* ---------------------------------------------------------------------------------------- */
/* Delta and forget plaintexts                                                               */

void proto__w_vv(proto__w *w, const crdt_vv_entry *vv, size_t n)
{
    proto__w_array(w, n);
    for (size_t i = 0; i < n; i++) {
        proto__w_array(w, 2);
        proto__w_bin(w, vv[i].origin.b, CRDT_ORIGIN_LEN);
        proto__w_uint(w, vv[i].max);
    }
}

struct plain_arg {
    const proto_body *b;
    const proto_scope_key *k;
};

static void enc_plain(proto__w *w, const void *arg)
{
    const struct plain_arg *a = arg;
    const proto_body *b = a->b;
    bool forget = b->kind == PROTO_BODY_FORGET;
    proto__w_head(w, forget ? 8 : 7, b->kind);
    proto__w_bin(w, a->k->case_id.b, PROTO_CASE_ID_LEN);
    proto__w_str(w, a->k->scope, strlen(a->k->scope));
    proto__w_uint(w, a->k->epoch);
    proto__w_vv(w, b->vv, b->nvv);
    if (forget) {
        proto__w_uint(w, b->forget_reason);
        proto__w_str(w, b->operator_name.p, b->operator_name.len);
    } else {
        proto__w_bin(w, b->delta.p, b->delta.len);
    }
}

bool proto__vv_ok(const crdt_vv_entry *vv, size_t n)
{
    if (n > PROTO_VV_MAX || (n > 0 && vv == NULL))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (vv[i].max == 0)
            return false;
        if (i > 0 && crdt_origin_cmp(&vv[i - 1].origin, &vv[i].origin) >= 0)
            return false;
    }
    return true;
}

static proto_err plain_check(const proto_body *b)
{
    if (b->kind == PROTO_BODY_DELTA) {
        if (b->delta.p == NULL && b->delta.len > 0)
            return PROTO_EINVAL;
    } else if (b->kind == PROTO_BODY_FORGET) {
        if (b->forget_reason < PROTO_FORGET_REQUEST || b->forget_reason > PROTO_FORGET_PARTNER)
            return PROTO_EVALUE;
        if (!proto__valid_text(b->operator_name.p, b->operator_name.len))
            return PROTO_EVALUE;
    } else {
        return PROTO_EVALUE;
    }
    return proto__vv_ok(b->vv, b->nvv) ? PROTO_OK : PROTO_EVALUE;
}

proto_err proto_delta_seal(const proto_identity *author, const proto_scope_key *key,
    const proto_seal_info *info, const proto_body *plain, const proto_rng *rng, proto_buf *header,
    proto_buf *body)
{
    if (author == NULL || key == NULL || info == NULL || plain == NULL || header == NULL
        || body == NULL)
        return PROTO_EINVAL;
    header->p = body->p = NULL;
    header->len = body->len = 0;
    proto_err err = plain_check(plain);
    if (err != PROTO_OK)
        return err;
    if (info->seq == 0 || info->hlc.wall > CRDT_HLC_WALL_MAX
        || (info->seq == 1 && !proto__is_zero(info->prev, PROTO_HASH_LEN)))
        return PROTO_EVALUE;

    struct plain_arg pa = { plain, key };
    proto_buf pt = { 0 };
    uint8_t *buf = NULL;
    err = proto__encode(enc_plain, &pa, &pt);
    if (err != PROTO_OK)
        goto fail;
    size_t padded_max = (pt.len / PROTO_PAD_BLOCK + 1) * PROTO_PAD_BLOCK;
    if (padded_max > BODY_LEN_MAX - BODY_OVERHEAD) {
        err = PROTO_ELIMIT;
        goto fail;
    }
    /* One buffer: plaintext padded in place, then the body nonce || ciphertext. */
    buf = malloc(padded_max);
    body->p = malloc(BODY_OVERHEAD + padded_max);
    if (buf == NULL || body->p == NULL) {
        err = PROTO_ENOMEM;
        goto fail;
    }
    memcpy(buf, pt.p, pt.len);
    size_t padded;
    if (!proto__pad(buf, pt.len, PROTO_PAD_BLOCK, padded_max, &padded)) {
        err = PROTO_EPAD;
        goto fail;
    }
    proto_header h = { 0 };
    header_fixed(&h, PROTO_HDR_DELTA, author, info, key);
    uint8_t ad[AD_LEN];
    header_ad(&h, ad);
    proto__random(rng, body->p, PROTO_NONCE_LEN);
    proto__aead_seal(
        body->p + PROTO_NONCE_LEN, buf, padded, ad, AD_LEN, body->p, key->sec->body_key);
    body->len = PROTO_NONCE_LEN + padded + PROTO__AEAD_ABYTES;
    h.body_len = body->len;
    proto_bytes bb = { body->p, body->len };
    proto__hash(h.body_hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    err = header_sign(&h, author, header);
    if (err != PROTO_OK)
        goto fail;
    proto__wipe(buf, padded_max);
    free(buf);
    proto__wipe(pt.p, pt.len);
    proto_buf_free(&pt);
    return PROTO_OK;
fail:
    if (buf != NULL)
        proto__wipe(buf, padded_max);
    free(buf);
    if (pt.p != NULL)
        proto__wipe(pt.p, pt.len);
    proto_buf_free(&pt);
    proto_buf_free(body);
    proto_buf_free(header);
    return err;
}

void proto_body_fini(proto_body *b)
{
    if (b == NULL)
        return;
    if (b->plain_ != NULL)
        proto__wipe(b->plain_, b->plain_len_);
    free(b->plain_);
    free(b->vv_);
    memset(b, 0, sizeof *b);
}

/* Decode a version vector [[origin, max]...]: sorted, unique, max >= 1. */
bool proto__decode_vv(proto__d *d, const msgpack_object *o, crdt_vv_entry **out, size_t *n)
{
    const msgpack_object *items;
    *out = NULL;
    *n = 0;
    if (!proto__d_arr(d, o, PROTO_VV_MAX, &items, n, "version vector must be an array"))
        return false;
    crdt_vv_entry *vv = proto__calloc(*n, sizeof *vv);
    if (vv == NULL)
        return proto__d_err(d, o, PROTO_ENOMEM, "out of memory for the version vector");
    for (size_t i = 0; i < *n; i++) {
        const msgpack_object *e;
        if (!proto__d_tuple(d, &items[i], 2, &e, "version vector entry is [origin, max]")
            || !proto__d_fixed(d, &e[0], CRDT_ORIGIN_LEN, vv[i].origin.b,
                "version vector origin must be bin of 32")
            || !proto__d_uint(d, &e[1], UINT64_MAX, &vv[i].max, "version vector max"))
            goto fail;
        if (vv[i].max == 0) {
            proto__d_err(d, &e[1], PROTO_EVALUE, "version vector max must be >= 1");
            goto fail;
        }
        if (i > 0 && crdt_origin_cmp(&vv[i - 1].origin, &vv[i].origin) >= 0) {
            proto__d_err(d, &items[i], PROTO_ENONCANON,
                "version vector must be sorted by origin without duplicates");
            goto fail;
        }
    }
    *out = vv;
    return true;
fail:
    free(vv);
    *n = 0;
    return false;
}

/* Decode a delta or forget plaintext (borrowing from msg) into out. */
static proto_err decode_plain(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_body *out, proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, 0, 0, &f, diag);
    if (err != PROTO_OK)
        return err;
    uint64_t kind = d.u.data.via.array.ptr[1].via.u64;
    size_t nf = d.u.data.via.array.size;
    if (kind != PROTO_K_DELTA_PLAIN && kind != PROTO_K_FORGET_PLAIN) {
        proto__d_err(&d, &f[1], PROTO_EKIND, "body plaintext must be a delta or a forget");
        return proto__d_fail(&d, diag);
    }
    if (nf != (kind == PROTO_K_DELTA_PLAIN ? 7u : 8u)) {
        proto__d_err(&d, &d.u.data, PROTO_ESHAPE, "wrong number of fields in body plaintext");
        return proto__d_fail(&d, diag);
    }
    out->kind = (uint8_t)kind;
    proto_bytes scope;
    if (!proto__d_fixed(&d, &f[2], PROTO_CASE_ID_LEN, out->case_id.b, "case id must be bin of 16")
        || !proto__d_str(
            &d, &f[3], PROTO_SCOPE_NAME_MAX, &scope, "scope must be str of at most 32 bytes")
        || !proto__d_uint(&d, &f[4], UINT64_MAX, &out->epoch, "epoch"))
        return proto__d_fail(&d, diag);
    if (!proto__valid_scope(scope.p, scope.len)) {
        proto__d_err(&d, &f[3], PROTO_EVALUE, "scope name must match [a-z0-9_-]{1,32}");
        return proto__d_fail(&d, diag);
    }
    memcpy(out->scope, scope.p, scope.len);
    out->scope[scope.len] = '\0';
    if (!proto__decode_vv(&d, &f[5], &out->vv_, &out->nvv))
        return proto__d_fail(&d, diag);
    out->vv = out->vv_;
    if (kind == PROTO_K_DELTA_PLAIN) {
        if (!proto__d_bin(&d, &f[6], len, &out->delta, "delta must be bin (a SCOPE message)"))
            return proto__d_fail(&d, diag);
    } else {
        uint64_t reason;
        if (!proto__d_uint(
                &d, &f[6], PROTO_FORGET_PARTNER, &reason, "forget reason must be 1, 2 or 3")
            || !proto__d_str(&d, &f[7], PROTO_TEXT_MAX, &out->operator_name,
                "operator must be str of at most 1024 bytes"))
            return proto__d_fail(&d, diag);
        if (reason == 0) {
            proto__d_err(&d, &f[6], PROTO_EVALUE, "forget reason must be 1, 2 or 3");
            return proto__d_fail(&d, diag);
        }
        out->forget_reason = (uint8_t)reason;
    }
    proto__d_close(&d);
    return PROTO_OK;
}

proto_err proto_body_open(const proto_header *h, const proto_scope_key *key, const uint8_t *body,
    size_t len, const proto_limits *lim, proto_body *out, proto_diag *diag)
{
    if (h == NULL || key == NULL || (body == NULL && len > 0) || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    if (h->kind != PROTO_HDR_DELTA)
        return PROTO_EKIND;
    if (proto__memcmp_ct(h->tag, key->tag, PROTO_TAG_LEN) != 0)
        return PROTO_EKEY;
    if (len != h->body_len)
        return PROTO_EBODYLEN;
    if (len < BODY_OVERHEAD + PROTO_PAD_BLOCK)
        return PROTO_EBODYLEN;
    uint8_t hash[PROTO_HASH_LEN];
    proto_bytes bb = { body, len };
    proto__hash(hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    if (proto__memcmp_ct(hash, h->body_hash, PROTO_HASH_LEN) != 0)
        return PROTO_EBODYHASH;
    size_t padded = len - BODY_OVERHEAD;
    uint8_t *pt = malloc(padded);
    if (pt == NULL)
        return PROTO_ENOMEM;
    uint8_t ad[AD_LEN];
    header_ad(h, ad);
    proto_err err;
    size_t plen;
    if (!proto__aead_open(pt, body + PROTO_NONCE_LEN, len - PROTO_NONCE_LEN, ad, AD_LEN, body,
            key->sec->body_key)) {
        err = PROTO_EDECRYPT;
        goto fail;
    }
    if (!proto__unpad(pt, padded, PROTO_PAD_BLOCK, &plen)) {
        err = PROTO_EPAD;
        goto fail;
    }
    out->plain_ = pt;
    out->plain_len_ = padded;
    err = decode_plain(pt, plen, lim, out, diag);
    if (err != PROTO_OK) {
        proto_body_fini(out);
        return err;
    }
    if (memcmp(out->case_id.b, key->case_id.b, PROTO_CASE_ID_LEN) != 0
        || strcmp(out->scope, key->scope) != 0 || out->epoch != key->epoch) {
        proto_body_fini(out);
        if (diag != NULL) {
            diag->offset = 0;
            diag->reason = "case, scope or epoch in the body differ from the key's";
        }
        return PROTO_EMISMATCH;
    }
    return PROTO_OK;
fail:
    proto__wipe(pt, padded);
    free(pt);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Key grants                                                                                */

struct grant_plain_arg {
    const uint8_t *grantor;
    const proto_scope_key *k;
};

static void enc_grant_plain(proto__w *w, const void *arg)
{
    const struct grant_plain_arg *a = arg;
    proto__w_head(w, 7, PROTO_K_GRANT_PLAIN);
    proto__w_bin(w, a->grantor, PROTO_ORIGIN_LEN);
    proto__w_bin(w, a->k->case_id.b, PROTO_CASE_ID_LEN);
    proto__w_str(w, a->k->scope, strlen(a->k->scope));
    proto__w_uint(w, a->k->epoch);
    proto__w_bin(w, a->k->sec->key, PROTO_KEY_LEN);
}

struct grant_body_arg {
    const uint8_t *boxes; /* n * PROTO__SEALED_LEN */
    size_t n;
};

static void enc_grant_body(proto__w *w, const void *arg)
{
    const struct grant_body_arg *a = arg;
    proto__w_head(w, 3, PROTO_K_GRANT_BODY);
    proto__w_array(w, a->n);
    for (size_t i = 0; i < a->n; i++)
        proto__w_bin(w, a->boxes + i * PROTO__SEALED_LEN, PROTO__SEALED_LEN);
}

static int recipient_cmp(const void *a, const void *b)
{
    return memcmp(((const proto_recipient *)a)->origin, ((const proto_recipient *)b)->origin,
        PROTO_ORIGIN_LEN);
}

proto_err proto_key_grant_seal(const proto_identity *grantor, const proto_scope_key *key,
    const proto_seal_info *info, const proto_recipient *recipients, size_t n, const proto_rng *rng,
    proto_buf *header, proto_buf *body)
{
    if (grantor == NULL || key == NULL || info == NULL || recipients == NULL || header == NULL
        || body == NULL)
        return PROTO_EINVAL;
    header->p = body->p = NULL;
    header->len = body->len = 0;
    if (n == 0 || n > PROTO_RECIPIENTS_MAX)
        return PROTO_ELIMIT;
    if (info->seq == 0 || info->hlc.wall > CRDT_HLC_WALL_MAX
        || (info->seq == 1 && !proto__is_zero(info->prev, PROTO_HASH_LEN)))
        return PROTO_EVALUE;

    proto_err err;
    proto_recipient *sorted = proto__calloc(n, sizeof *sorted);
    uint8_t *boxes = proto__calloc(n, PROTO__SEALED_LEN);
    uint8_t *pt = proto__secret_alloc(PROTO_GRANT_PAD_BLOCK);
    uint8_t *seed = proto__secret_alloc(PROTO_SEED_LEN);
    proto_buf plain = { 0 };
    proto_header h = { 0 };
    if (sorted == NULL || boxes == NULL || pt == NULL || seed == NULL) {
        err = PROTO_ENOMEM;
        goto fail;
    }
    memcpy(sorted, recipients, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, recipient_cmp);
    for (size_t i = 1; i < n; i++)
        if (memcmp(sorted[i - 1].origin, sorted[i].origin, PROTO_ORIGIN_LEN) == 0) {
            err = PROTO_EVALUE;
            goto fail;
        }
    struct grant_plain_arg ga = { grantor->origin, key };
    err = proto__encode(enc_grant_plain, &ga, &plain);
    if (err != PROTO_OK)
        goto fail;
    memcpy(pt, plain.p, plain.len);
    size_t padded;
    if (plain.len >= PROTO_GRANT_PAD_BLOCK
        || !proto__pad(pt, plain.len, PROTO_GRANT_PAD_BLOCK, PROTO_GRANT_PAD_BLOCK, &padded)
        || padded != PROTO_GRANT_PAD_BLOCK) {
        err = PROTO_EPAD;
        goto fail;
    }
    h.recipients = proto__calloc(n, sizeof *h.recipients);
    if (h.recipients == NULL) {
        err = PROTO_ENOMEM;
        goto fail;
    }
    h.nrecipients = n;
    for (size_t i = 0; i < n; i++) {
        memcpy(h.recipients[i].b, sorted[i].origin, PROTO_ORIGIN_LEN);
        proto__random(rng, seed, PROTO_SEED_LEN);
        if (!proto__seal(
                boxes + i * PROTO__SEALED_LEN, pt, PROTO_GRANT_PAD_BLOCK, sorted[i].box_pk, seed)) {
            err = PROTO_EVALUE;
            goto fail;
        }
    }
    struct grant_body_arg gb = { boxes, n };
    err = proto__encode(enc_grant_body, &gb, body);
    if (err != PROTO_OK)
        goto fail;
    header_fixed(&h, PROTO_HDR_KEY_GRANT, grantor, info, key);
    h.body_len = body->len;
    proto_bytes bb = { body->p, body->len };
    proto__hash(h.body_hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    err = header_sign(&h, grantor, header);
    if (err != PROTO_OK)
        goto fail;
    goto done;
fail:
    proto_buf_free(body);
    proto_buf_free(header);
done:
    if (plain.p != NULL)
        proto__wipe(plain.p, plain.len);
    proto_buf_free(&plain);
    proto_header_fini(&h);
    free(sorted);
    free(boxes);
    proto__secret_free(pt);
    proto__secret_free(seed);
    return err;
}

proto_err proto_key_grant_open(const proto_header *h, const proto_identity *me, const uint8_t *body,
    size_t len, const proto_limits *lim, proto_scope_key **out, proto_diag *diag)
{
    if (h == NULL || me == NULL || (body == NULL && len > 0) || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    if (h->kind != PROTO_HDR_KEY_GRANT)
        return PROTO_EKIND;
    size_t mine = h->nrecipients;
    for (size_t i = 0; i < h->nrecipients; i++)
        if (memcmp(h->recipients[i].b, me->origin, PROTO_ORIGIN_LEN) == 0)
            mine = i;
    if (mine == h->nrecipients)
        return PROTO_ENOTRECIPIENT;
    if (len != h->body_len)
        return PROTO_EBODYLEN;
    uint8_t hash[PROTO_HASH_LEN];
    proto_bytes bb = { body, len };
    proto__hash(hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    if (proto__memcmp_ct(hash, h->body_hash, PROTO_HASH_LEN) != 0)
        return PROTO_EBODYHASH;

    proto__d d;
    const msgpack_object *f, *boxes;
    size_t nb;
    proto_err err = proto__d_open(&d, body, len, lim, 0, PROTO_K_GRANT_BODY, 3, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_RECIPIENTS_MAX, &boxes, &nb, "sealed keys must be an array"))
        return proto__d_fail(&d, diag);
    if (nb != h->nrecipients) {
        proto__d_err(&d, &f[2], PROTO_EMISMATCH, "one sealed key per recipient in the header");
        return proto__d_fail(&d, diag);
    }
    for (size_t i = 0; i < nb; i++)
        if (boxes[i].type != MSGPACK_OBJECT_BIN || boxes[i].via.bin.size != PROTO__SEALED_LEN) {
            proto__d_err(&d, &boxes[i], PROTO_ESHAPE, "a sealed key is bin of 304 bytes");
            return proto__d_fail(&d, diag);
        }
    uint8_t *pt = proto__secret_alloc(PROTO_GRANT_PAD_BLOCK);
    if (pt == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    bool opened
        = proto__seal_open(pt, (const uint8_t *)boxes[mine].via.bin.ptr, PROTO__SEALED_LEN, me);
    proto__d_close(&d);
    if (!opened) {
        proto__secret_free(pt);
        return PROTO_ESEAL;
    }
    size_t plen;
    if (!proto__unpad(pt, PROTO_GRANT_PAD_BLOCK, PROTO_GRANT_PAD_BLOCK, &plen)) {
        proto__secret_free(pt);
        return PROTO_EPAD;
    }
    uint8_t grantor[PROTO_ORIGIN_LEN];
    proto_case_id cid;
    proto_bytes scope;
    uint64_t epoch;
    uint8_t *key = proto__secret_alloc(PROTO_KEY_LEN);
    char sname[PROTO_SCOPE_NAME_MAX + 1];
    err = key == NULL ? PROTO_ENOMEM
                      : proto__d_open(&d, pt, plen, lim, 0, PROTO_K_GRANT_PLAIN, 7, &f, diag);
    if (err != PROTO_OK)
        goto done;
    if (!proto__d_fixed(&d, &f[2], PROTO_ORIGIN_LEN, grantor, "grantor must be bin of 32")
        || !proto__d_fixed(&d, &f[3], PROTO_CASE_ID_LEN, cid.b, "case id must be bin of 16")
        || !proto__d_str(&d, &f[4], PROTO_SCOPE_NAME_MAX, &scope, "scope must be str")
        || !proto__d_uint(&d, &f[5], UINT64_MAX, &epoch, "epoch")
        || !proto__d_fixed(&d, &f[6], PROTO_KEY_LEN, key, "key must be bin of 32")) {
        err = proto__d_fail(&d, diag);
        goto done;
    }
    memcpy(sname, scope.p, scope.len);
    sname[scope.len] = '\0';
    proto__d_close(&d);
    if (memcmp(grantor, h->origin, PROTO_ORIGIN_LEN) != 0) {
        err = PROTO_EMISMATCH;
        goto done;
    }
    if (!proto__valid_scope(scope.p, scope.len)) {
        err = PROTO_EVALUE;
        goto done;
    }
    err = proto_scope_key_from_bytes(&cid, sname, epoch, key, out);
    if (err != PROTO_OK)
        goto done;
    if (proto__memcmp_ct((*out)->tag, h->tag, PROTO_TAG_LEN) != 0) {
        proto_scope_key_free(*out);
        *out = NULL;
        err = PROTO_EMISMATCH;
    }
done:
    proto__secret_free(key);
    proto__secret_free(pt);
    return err;
}
