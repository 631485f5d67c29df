/*
 * envelope.c - headers and the bodies of delta headers: deltas, access-log entries and forgets
 * (PROTOCOL.md, "Headers" and "Bodies"). Key grants and notes to an owner are in grant.c.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_FIELDS 12
#define BODY_OVERHEAD (PROTO_NONCE_LEN + PROTO__AEAD_ABYTES)
#define BODY_LEN_MAX UINT32_MAX

static const char ad_label[] = "patto-ad-v4";
/* The associated data's length: its label, the header's fixed fields, the key's case, scope
 * (its length byte and name) and epoch. */
#define AD_MAX                                                                                     \
    (sizeof ad_label - 1 + 1 + PROTO_ORIGIN_LEN + 8 + PROTO_HASH_LEN + 8 + 2 + PROTO_TAG_LEN       \
        + PROTO_CASE_ID_LEN + 1 + PROTO_SCOPE_NAME_MAX + 8)

/* Field positions in HEADER_FIELDS, for diagnostics. */
enum { HF_KIND = 2, HF_SEQ = 4, HF_PREV = 5, HF_HINTS = 9, HF_BODY_LEN = 10 };

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
    proto__w_array(w, h->nhints);
    for (size_t i = 0; i < h->nhints; i++)
        proto__w_bin(w, h->hints[i].b, PROTO_HINT_LEN);
    proto__w_uint(w, h->body_len);
    proto__w_bin(w, h->body_hash, PROTO_HASH_LEN);
}

/* The outer signed message: [2, kind, fields bin, sig bin64]. */
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

/* Is len the length of a GRANT_BODY: four boxes of 48 + 256k bytes, 1 <= k <= the most a
 * GRANT_PLAIN can need? Checked without the body, on the header alone. */
static bool grant_body_len_ok(uint64_t len)
{
    if (len < PROTO__GRANT_BODY_LEN(1) || len > PROTO__GRANT_BODY_LEN(PROTO__GRANT_BLOCKS_MAX))
        return false;
    return (len - PROTO__GRANT_BODY_LEN(0)) % (4u * PROTO_GRANT_PAD_BLOCK) == 0;
}

/* The value rules of a header's fields (the types and sizes are the decoder's). Returns NULL
 * when they hold, else the reason, with *field the position of the offending field. */
static const char *header_rule(const proto_header *h, int *field)
{
    /* Key grants and notes are sealed alike (grant.c): 4 hints, a GRANT_BODY of 4 boxes. */
    bool sealed = h->kind == PROTO_HDR_KEY_GRANT || h->kind == PROTO_HDR_NOTE;
    *field = HF_KIND;
    if (h->kind != PROTO_HDR_DELTA && !sealed)
        return "header kind must be 1 (delta), 2 (key grant) or 3 (note)";
    *field = HF_SEQ;
    if (h->seq == 0)
        return "seq starts at 1";
    *field = HF_PREV;
    if (h->seq == 1 && !proto__is_zero(h->prev, PROTO_HASH_LEN))
        return "prev of seq 1 must be 32 zero bytes";
    *field = HF_HINTS;
    if (h->kind == PROTO_HDR_DELTA && h->nhints != 0)
        return "a delta header has no hints";
    if (sealed && h->nhints != PROTO_HINT_SLOTS)
        return "a key-grant or note header has exactly 4 hints";
    *field = HF_BODY_LEN;
    if (h->kind == PROTO_HDR_DELTA
        && (h->body_len < BODY_OVERHEAD + PROTO_PAD_BLOCK
            || (h->body_len - BODY_OVERHEAD) % PROTO_PAD_BLOCK != 0))
        return "delta body length must be 40 + a positive multiple of 256";
    if (sealed && !grant_body_len_ok(h->body_len))
        return "key-grant or note body length must be that of four boxes of 48 + 256k bytes";
    return NULL;
}

proto_err proto_header_encode(const proto_header *h, proto_buf *out)
{
    if (h == NULL || out == NULL)
        return PROTO_EINVAL;
    int field;
    if (h->nhints > PROTO_HINT_SLOTS || h->hlc.wall > CRDT_HLC_WALL_MAX
        || h->body_len > BODY_LEN_MAX || header_rule(h, &field) != NULL)
        return PROTO_EVALUE;
    proto_buf fields;
    proto_err err = proto__encode(enc_fields, h, &fields);
    if (err != PROTO_OK)
        return err;
    err = proto__encode_signed(PROTO_K_HEADER, (proto_bytes) { fields.p, fields.len }, h->sig, out);
    proto_buf_free(&fields);
    return err;
}

/* Decode [2, kind, fields bin, sig bin64] and return the fields' bytes. */
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
    (void)h; /* a header owns nothing since version 2 */
}

/* The fields of a header that its compact form in a HEADERS batch carries too (messages.c):
 * kind, hlc wall, hlc logical, tag, hints, body length, body hash, in that order in f. */
bool proto__header_rest(proto__d *d, const msgpack_object *const f[7], proto_header *out)
{
    uint64_t kind, logical;
    const msgpack_object *hints;
    size_t nh;
    if (!proto__d_uint(
            d, f[0], 255, &kind, "header kind must be 1 (delta), 2 (key grant) or 3 (note)")
        || !proto__d_uint(d, f[1], CRDT_HLC_WALL_MAX, &out->hlc.wall,
            "hlc wall must be an unsigned integer < 2^48")
        || !proto__d_uint(d, f[2], CRDT_HLC_LOGICAL_MAX, &logical,
            "hlc logical must be an unsigned integer < 2^16")
        || !proto__d_fixed(d, f[3], PROTO_TAG_LEN, out->tag, "tag must be bin of 32")
        || !proto__d_arr(d, f[4], PROTO_HINT_SLOTS, &hints, &nh,
            "hints must be an array of at most 4 bins of 16")
        || !proto__d_uint(
            d, f[5], BODY_LEN_MAX, &out->body_len, "body length must be an unsigned integer < 2^32")
        || !proto__d_fixed(d, f[6], PROTO_HASH_LEN, out->body_hash, "body hash must be bin of 32"))
        return false;
    for (size_t i = 0; i < nh; i++)
        if (!proto__d_fixed(d, &hints[i], PROTO_HINT_LEN, out->hints[i].b, "a hint is bin of 16"))
            return false;
    out->kind = (uint8_t)kind;
    out->hlc.logical = (uint16_t)logical;
    out->nhints = nh;
    return true;
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
    const msgpack_object *rest[7] = { &f[2], &f[6], &f[7], &f[8], &f[9], &f[10], &f[11] };
    if (!proto__d_fixed(&d, &f[3], PROTO_ORIGIN_LEN, out->origin, "origin must be bin of 32")
        || !proto__d_uint(&d, &f[4], UINT64_MAX, &out->seq, "seq must be an unsigned integer")
        || !proto__d_fixed(&d, &f[5], PROTO_HASH_LEN, out->prev, "prev must be bin of 32")
        || !proto__header_rest(&d, rest, out))
        return proto__d_fail(&d, diag);
    int field;
    const char *why = header_rule(out, &field);
    if (why != NULL) {
        proto__d_err(&d, &f[field], PROTO_EVALUE, why);
        return proto__d_fail(&d, diag);
    }
    proto__d_close(&d);
    out->signed_bytes = fb;
    /* The id covers the whole message, signature included: prev commits to every signature. */
    proto_bytes whole = { msg, len };
    proto__hash(out->id, PROTO_HASH_LEN, NULL, 0, &whole, 1);
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

proto_err proto__header_sign(proto_header *h, const proto_identity *id, proto_buf *out)
{
    proto_buf fields;
    proto_err err = proto__encode(enc_fields, h, &fields);
    if (err != PROTO_OK)
        return err;
    proto__sign(id, fields.p, fields.len, h->sig);
    err = proto__encode_signed(PROTO_K_HEADER, (proto_bytes) { fields.p, fields.len }, h->sig, out);
    proto_buf_free(&fields);
    if (err != PROTO_OK)
        return err;
    proto_bytes whole = { out->p, out->len };
    proto__hash(h->id, PROTO_HASH_LEN, NULL, 0, &whole, 1);
    return PROTO_OK;
}

bool proto__seal_info_ok(const proto_seal_info *info)
{
    return info->seq != 0 && info->hlc.wall <= CRDT_HLC_WALL_MAX
        && (info->seq != 1 || proto__is_zero(info->prev, PROTO_HASH_LEN));
}

void proto__header_fixed(proto_header *h, uint8_t kind, const proto_identity *author,
    const proto_seal_info *info, const uint8_t tag[PROTO_TAG_LEN])
{
    h->kind = kind;
    memcpy(h->origin, author->origin, PROTO_ORIGIN_LEN);
    h->seq = info->seq;
    memcpy(h->prev, info->prev, PROTO_HASH_LEN);
    h->hlc = info->hlc;
    memcpy(h->tag, tag, PROTO_TAG_LEN);
}

/* The associated data of a body (PROTOCOL.md section 10): the header fields fixed before it is
 * sealed, and the case, scope and epoch of the key it is sealed under. Returns its length. */
static size_t header_ad(const proto_header *h, const proto_scope_key *key, uint8_t ad[AD_MAX])
{
    size_t o = 0;
    memcpy(ad, ad_label, sizeof ad_label - 1);
    o += sizeof ad_label - 1;
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
    o += PROTO_TAG_LEN;
    memcpy(ad + o, key->case_id.b, PROTO_CASE_ID_LEN);
    o += PROTO_CASE_ID_LEN;
    size_t sl = strlen(key->scope); /* 1..32, a scope name */
    ad[o++] = (uint8_t)sl;
    memcpy(ad + o, key->scope, sl);
    o += sl;
    proto__be64(ad + o, key->epoch);
    return o + 8;
}

/* ---------------------------------------------------------------------------------------- */
/* Body plaintexts                                                                           */

/* Field positions in the plaintexts, for diagnostics and arity. */
enum {
    BF_VV = 2,
    BF_ACCESS_SEEN = 3, /* DELTA */
    BF_DELTA = 4,
    BF_REASON = 3, /* FORGET */
    BF_OPERATOR = 4,
    BF_ENTRY = 2, /* ACCESS_GRANT, ACCESS_EPOCH */
    BF_GRANTEE = 3,
    BF_ACCESS = 4,
    BF_PURPOSE = 5,
    BF_BASIS = 6,
    BF_PROVISION = 7,
    BF_EXPIRY = 8,
    BF_G_OPERATOR = 9,
    BF_UNIX_USER = 10,
    BF_EVIDENCE = 11,
    BF_NEW_EPOCH = 3, /* ACCESS_EPOCH */
    BF_KEY_HASH = 4,
    BF_N_GRANTEE = 3, /* ACCESS_NARROW */
    BF_N_ACCESS = 4,
    BF_N_REASON = 5,
    BF_CUT = 6,
    BF_N_OPERATOR = 7,
    BF_N_UNIX_USER = 8,
    BF_NOTE = 9,
};

static size_t plain_fields(unsigned kind)
{
    switch (kind) {
    case PROTO_K_DELTA_PLAIN:
    case PROTO_K_FORGET_PLAIN:
    case PROTO_K_ACCESS_EPOCH:
        return 5;
    case PROTO_K_ACCESS_NARROW:
        return 10;
    case PROTO_K_ACCESS_GRANT:
        return 12;
    default:
        return 0;
    }
}

void proto__w_vv(proto__w *w, const crdt_vv_entry *vv, size_t n)
{
    proto__w_array(w, n);
    for (size_t i = 0; i < n; i++) {
        proto__w_array(w, 2);
        proto__w_bin(w, vv[i].origin.b, CRDT_ORIGIN_LEN);
        proto__w_uint(w, vv[i].max);
    }
}

static void w_bytes_str(proto__w *w, proto_bytes b)
{
    proto__w_str(w, b.p, b.len);
}

/* A body's plaintext; its case, scope and epoch are the key's, in the associated data. */
static void enc_plain(proto__w *w, const void *arg)
{
    const proto_body *b = arg;
    proto__w_head(w, plain_fields(b->kind), b->kind);
    switch (b->kind) {
    case PROTO_BODY_DELTA:
        proto__w_vv(w, b->vv, b->nvv);
        proto__w_array(w, b->access_seen != 0 ? 3 : 0);
        if (b->access_seen != 0) {
            proto__w_uint(w, b->access_seen);
            proto__w_bin(w, b->access_origin, PROTO_ORIGIN_LEN);
            proto__w_uint(w, b->access_at);
        }
        proto__w_bin(w, b->delta.p, b->delta.len);
        break;
    case PROTO_BODY_FORGET:
        proto__w_vv(w, b->vv, b->nvv);
        proto__w_uint(w, b->forget_reason);
        w_bytes_str(w, b->operator_name);
        break;
    case PROTO_BODY_ACCESS_GRANT:
        proto__w_uint(w, b->entry);
        w_bytes_str(w, b->grant.grantee);
        proto__w_uint(w, b->grant.access);
        w_bytes_str(w, b->grant.purpose);
        proto__w_uint(w, b->grant.basis);
        w_bytes_str(w, b->grant.provision);
        proto__w_uint(w, b->grant.expiry_ms);
        w_bytes_str(w, b->grant.operator_name);
        w_bytes_str(w, b->grant.unix_user);
        w_bytes_str(w, b->grant.evidence);
        break;
    case PROTO_BODY_ACCESS_NARROW:
        proto__w_uint(w, b->entry);
        w_bytes_str(w, b->narrow.grantee);
        proto__w_uint(w, b->narrow.access);
        proto__w_uint(w, b->narrow.reason);
        proto__w_array(w, b->narrow.ncut);
        for (size_t i = 0; i < b->narrow.ncut; i++) {
            proto__w_array(w, 3);
            proto__w_bin(w, b->narrow.cut[i].origin, PROTO_ORIGIN_LEN);
            proto__w_uint(w, b->narrow.cut[i].seq);
            proto__w_bin(w, b->narrow.cut[i].id, PROTO_HASH_LEN);
        }
        w_bytes_str(w, b->narrow.operator_name);
        w_bytes_str(w, b->narrow.unix_user);
        w_bytes_str(w, b->narrow.note);
        break;
    default: /* PROTO_BODY_ACCESS_EPOCH */
        proto__w_uint(w, b->entry);
        proto__w_uint(w, b->new_epoch);
        proto__w_bin(w, b->key_hash, PROTO_HASH_LEN);
        break;
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

/* The value rules of a grant entry (PROTOCOL.md, "The access log"). NULL when they hold, else
 * the reason, with *field the position of the offending field in ACCESS_GRANT. */
static const char *access_rule(const proto_access *a, int *field)
{
    *field = BF_GRANTEE;
    if (!proto__valid_org(a->grantee.p, a->grantee.len))
        return "grantee must be an org id [a-z0-9-]{1,32}";
    *field = BF_ACCESS;
    if (a->access != PROTO_ACCESS_READ && a->access != PROTO_ACCESS_WRITE)
        return "access must be 1 (read) or 2 (write)";
    *field = BF_PURPOSE;
    if (!proto__valid_org(a->purpose.p, a->purpose.len))
        return "purpose must be a purpose id [a-z0-9-]{1,32}";
    *field = BF_BASIS;
    if (a->basis < PROTO_BASIS_PUBLIC_TASK || a->basis > PROTO_BASIS_EXPLICIT_CONSENT)
        return "legal basis must be 1..4";
    *field = BF_PROVISION;
    if (!proto__text_or_empty(a->provision.p, a->provision.len))
        return "provision must be empty or text (UTF-8, no control characters, not blank)";
    *field = BF_G_OPERATOR;
    if (!proto__text(a->operator_name.p, a->operator_name.len))
        return "operator must be text (UTF-8, no control characters, not blank)";
    *field = BF_UNIX_USER;
    if (!proto__valid_unix_user(a->unix_user.p, a->unix_user.len))
        return "unix user must be empty or 1..64 bytes of printable ASCII without space";
    *field = BF_EVIDENCE;
    if (!proto__text_or_empty(a->evidence.p, a->evidence.len))
        return "evidence must be empty or text (UTF-8, no control characters, not blank)";
    return NULL;
}

/* The value rules of a narrowing entry (PROTOCOL.md, "The access log"). NULL when they hold,
 * else the reason, with *field the position of the offending field in ACCESS_NARROW. The cut's
 * length and order are checked here too; a decoder refuses them first (ELIMIT, ENONCANON). */
static const char *narrow_rule(const proto_narrow *n, int *field)
{
    *field = BF_N_GRANTEE;
    if (!proto__valid_org(n->grantee.p, n->grantee.len))
        return "grantee must be an org id [a-z0-9-]{1,32}";
    *field = BF_N_ACCESS;
    if (n->access != PROTO_ACCESS_NONE && n->access != PROTO_ACCESS_READ)
        return "narrowed access must be 0 (none) or 1 (read)";
    *field = BF_N_REASON;
    if (n->reason < PROTO_NARROW_REVOKED || n->reason > PROTO_NARROW_EXPIRED)
        return "narrowing reason must be 1..4";
    *field = BF_CUT;
    if (n->ncut > PROTO_CUT_MAX)
        return "a cut holds at most 16 origins";
    for (size_t i = 0; i < n->ncut; i++) {
        if (n->cut[i].seq == 0)
            return "cut seqs start at 1";
        if (i > 0 && memcmp(n->cut[i - 1].origin, n->cut[i].origin, PROTO_ORIGIN_LEN) >= 0)
            return "cut must be sorted by origin without duplicates";
    }
    *field = BF_N_OPERATOR;
    if (!proto__text(n->operator_name.p, n->operator_name.len))
        return "operator must be text (UTF-8, no control characters, not blank)";
    *field = BF_N_UNIX_USER;
    if (!proto__valid_unix_user(n->unix_user.p, n->unix_user.len))
        return "unix user must be empty or 1..64 bytes of printable ASCII without space";
    *field = BF_NOTE;
    if (!proto__text_or_empty(n->note.p, n->note.len))
        return "note must be empty or text (UTF-8, no control characters, not blank)";
    return NULL;
}

static bool bytes_arg_ok(proto_bytes b)
{
    return b.len == 0 || b.p != NULL;
}

static proto_err plain_check(const proto_body *b, const proto_scope_key *key)
{
    int field;
    switch (b->kind) {
    case PROTO_BODY_DELTA:
        if (!bytes_arg_ok(b->delta))
            return PROTO_EINVAL;
        if (b->access_seen != 0 && b->access_at == 0)
            return PROTO_EVALUE;
        return proto__vv_ok(b->vv, b->nvv) ? PROTO_OK : PROTO_EVALUE;
    case PROTO_BODY_FORGET:
        if (!bytes_arg_ok(b->operator_name))
            return PROTO_EINVAL;
        if (b->forget_reason < PROTO_FORGET_REQUEST || b->forget_reason > PROTO_FORGET_PARTNER
            || !proto__text(b->operator_name.p, b->operator_name.len))
            return PROTO_EVALUE;
        return proto__vv_ok(b->vv, b->nvv) ? PROTO_OK : PROTO_EVALUE;
    case PROTO_BODY_ACCESS_GRANT: {
        const proto_access *a = &b->grant;
        if (!bytes_arg_ok(a->grantee) || !bytes_arg_ok(a->purpose) || !bytes_arg_ok(a->provision)
            || !bytes_arg_ok(a->operator_name) || !bytes_arg_ok(a->unix_user)
            || !bytes_arg_ok(a->evidence))
            return PROTO_EINVAL;
        return b->entry >= 1 && access_rule(a, &field) == NULL ? PROTO_OK : PROTO_EVALUE;
    }
    case PROTO_BODY_ACCESS_EPOCH:
        return b->entry >= 1 && b->new_epoch > key->epoch ? PROTO_OK : PROTO_EVALUE;
    case PROTO_BODY_ACCESS_NARROW: {
        const proto_narrow *n = &b->narrow;
        if (!bytes_arg_ok(n->grantee) || !bytes_arg_ok(n->operator_name)
            || !bytes_arg_ok(n->unix_user) || !bytes_arg_ok(n->note)
            || (n->ncut > 0 && n->cut == NULL))
            return PROTO_EINVAL;
        if (n->ncut > PROTO_CUT_MAX)
            return PROTO_ELIMIT;
        return b->entry >= 1 && narrow_rule(n, &field) == NULL ? PROTO_OK : PROTO_EVALUE;
    }
    default:
        return PROTO_EVALUE;
    }
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
    proto_err err = plain_check(plain, key);
    if (err != PROTO_OK)
        return err;
    if (!proto__seal_info_ok(info) || key->epoch < PROTO_EPOCH_FIRST)
        return PROTO_EVALUE;

    proto_buf pt = { 0 };
    uint8_t *buf = NULL;
    err = proto__encode(enc_plain, plain, &pt);
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
    proto__header_fixed(&h, PROTO_HDR_DELTA, author, info, key->tag);
    uint8_t ad[AD_MAX];
    size_t adlen = header_ad(&h, key, ad);
    proto__random(rng, body->p, PROTO_NONCE_LEN);
    proto__aead_seal(
        body->p + PROTO_NONCE_LEN, buf, padded, ad, adlen, body->p, key->sec->body_key);
    body->len = PROTO_NONCE_LEN + padded + PROTO__AEAD_ABYTES;
    h.body_len = body->len;
    proto_bytes bb = { body->p, body->len };
    proto__hash(h.body_hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    err = proto__header_sign(&h, author, header);
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
    free(b->cut_);
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

/* The fields of an ACCESS_GRANT after its entry number, borrowed from the plaintext. */
static bool decode_access(proto__d *d, const msgpack_object *f, proto_access *a)
{
    uint64_t access, basis;
    if (!proto__d_str(d, &f[BF_GRANTEE], PROTO_ORG_MAX, &a->grantee, "grantee must be an org id")
        || !proto__d_uint(d, &f[BF_ACCESS], 255, &access, "access must be 1 (read) or 2 (write)")
        || !proto__d_str(
            d, &f[BF_PURPOSE], PROTO_ORG_MAX, &a->purpose, "purpose must be a purpose id")
        || !proto__d_uint(d, &f[BF_BASIS], 255, &basis, "legal basis must be 1..4")
        || !proto__d_str(d, &f[BF_PROVISION], PROTO_TEXT_MAX, &a->provision,
            "provision must be str of at most 1024 bytes")
        || !proto__d_uint(d, &f[BF_EXPIRY], UINT64_MAX, &a->expiry_ms, "expiry")
        || !proto__d_str(d, &f[BF_G_OPERATOR], PROTO_TEXT_MAX, &a->operator_name,
            "operator must be str of at most 1024 bytes")
        || !proto__d_str(d, &f[BF_UNIX_USER], PROTO__UNIX_USER_MAX, &a->unix_user,
            "unix user must be str of at most 64 bytes")
        || !proto__d_str(d, &f[BF_EVIDENCE], PROTO_TEXT_MAX, &a->evidence,
            "evidence must be str of at most 1024 bytes"))
        return false;
    a->access = (uint8_t)access;
    a->basis = (uint8_t)basis;
    int field;
    const char *why = access_rule(a, &field);
    if (why != NULL)
        return proto__d_err(d, &f[field], PROTO_EVALUE, why);
    return true;
}

/* A narrowing's cut [[origin, seq, id]...]: at most PROTO_CUT_MAX, sorted by origin, unique,
 * seq >= 1. Allocated into *out (also on failure: the body's fini frees it). */
static bool decode_cut(proto__d *d, const msgpack_object *o, proto_cut **out, size_t *n)
{
    const msgpack_object *items;
    if (!proto__d_arr(d, o, PROTO_CUT_MAX, &items, n, "cut must be an array of at most 16 items"))
        return false;
    proto_cut *cut = proto__calloc(*n, sizeof *cut);
    *out = cut;
    if (cut == NULL)
        return proto__d_err(d, o, PROTO_ENOMEM, "out of memory for the cut");
    for (size_t i = 0; i < *n; i++) {
        const msgpack_object *e;
        if (!proto__d_tuple(d, &items[i], 3, &e, "cut item is [origin, seq, id]")
            || !proto__d_fixed(
                d, &e[0], PROTO_ORIGIN_LEN, cut[i].origin, "cut origin must be bin of 32")
            || !proto__d_uint(d, &e[1], UINT64_MAX, &cut[i].seq, "cut seq")
            || !proto__d_fixed(d, &e[2], PROTO_HASH_LEN, cut[i].id, "cut id must be bin of 32"))
            return false;
        if (cut[i].seq == 0)
            return proto__d_err(d, &e[1], PROTO_EVALUE, "cut seqs start at 1");
        if (i > 0 && memcmp(cut[i - 1].origin, cut[i].origin, PROTO_ORIGIN_LEN) >= 0)
            return proto__d_err(
                d, &items[i], PROTO_ENONCANON, "cut must be sorted by origin without duplicates");
    }
    return true;
}

/* The fields of an ACCESS_NARROW after its entry number, borrowed from the plaintext (the cut
 * allocated into out->cut_). */
static bool decode_narrow(proto__d *d, const msgpack_object *f, proto_body *out)
{
    proto_narrow *n = &out->narrow;
    uint64_t access, reason;
    if (!proto__d_str(d, &f[BF_N_GRANTEE], PROTO_ORG_MAX, &n->grantee, "grantee must be an org id")
        || !proto__d_uint(
            d, &f[BF_N_ACCESS], 255, &access, "narrowed access must be 0 (none) or 1 (read)")
        || !proto__d_uint(d, &f[BF_N_REASON], 255, &reason, "narrowing reason must be 1..4")
        || !decode_cut(d, &f[BF_CUT], &out->cut_, &n->ncut)
        || !proto__d_str(d, &f[BF_N_OPERATOR], PROTO_TEXT_MAX, &n->operator_name,
            "operator must be str of at most 1024 bytes")
        || !proto__d_str(d, &f[BF_N_UNIX_USER], PROTO__UNIX_USER_MAX, &n->unix_user,
            "unix user must be str of at most 64 bytes")
        || !proto__d_str(
            d, &f[BF_NOTE], PROTO_TEXT_MAX, &n->note, "note must be str of at most 1024 bytes"))
        return false;
    n->cut = out->cut_;
    n->access = (uint8_t)access;
    n->reason = (uint8_t)reason;
    int field;
    const char *why = narrow_rule(n, &field);
    if (why != NULL)
        return proto__d_err(d, &f[field], PROTO_EVALUE, why);
    return true;
}

/* A delta's access_seen: [] (no entry seen) or [number, origin, seq], number and seq >= 1. */
static bool decode_access_seen(proto__d *d, const msgpack_object *o, proto_body *out)
{
    const char *what = "access seen must be [] or [entry number, origin, seq]";
    bool some = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3;
    const msgpack_object *x;
    if (!proto__d_tuple(d, o, some ? 3 : 0, &x, what))
        return false;
    if (!some)
        return true;
    if (!proto__d_uint(d, &x[0], UINT64_MAX, &out->access_seen, what)
        || !proto__d_fixed(d, &x[1], PROTO_ORIGIN_LEN, out->access_origin, what)
        || !proto__d_uint(d, &x[2], UINT64_MAX, &out->access_at, what))
        return false;
    if (out->access_seen == 0 || out->access_at == 0)
        return proto__d_err(d, o, PROTO_EVALUE, "access seen: entry numbers and seqs start at 1");
    return true;
}

/* Decode a body plaintext (borrowing from msg) into out; its case, scope and epoch are key's. */
static proto_err decode_plain(const uint8_t *msg, size_t len, const proto_limits *lim,
    const proto_scope_key *key, proto_body *out, proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, 0, 0, &f, diag);
    if (err != PROTO_OK)
        return err;
    uint64_t kind = f[1].via.u64;
    size_t nf = d.u.data.via.array.size;
    if (plain_fields(kind > 255 ? 0 : (unsigned)kind) == 0) {
        proto__d_err(&d, &f[1], PROTO_EKIND,
            "body plaintext must be a delta, an access grant, a forget, an access epoch or an "
            "access narrowing");
        return proto__d_fail(&d, diag);
    }
    if (nf != plain_fields((unsigned)kind)) {
        proto__d_err(&d, &d.u.data, PROTO_ESHAPE, "wrong number of fields in body plaintext");
        return proto__d_fail(&d, diag);
    }
    out->kind = (uint8_t)kind;
    out->case_id = key->case_id;
    snprintf(out->scope, sizeof out->scope, "%s", key->scope);
    out->epoch = key->epoch;
    uint64_t reason;
    switch (kind) {
    case PROTO_K_DELTA_PLAIN:
        if (!proto__decode_vv(&d, &f[BF_VV], &out->vv_, &out->nvv)
            || !decode_access_seen(&d, &f[BF_ACCESS_SEEN], out)
            || !proto__d_bin(&d, &f[BF_DELTA], len, &out->delta, "delta must be bin (a SCOPE)"))
            return proto__d_fail(&d, diag);
        break;
    case PROTO_K_FORGET_PLAIN:
        if (!proto__decode_vv(&d, &f[BF_VV], &out->vv_, &out->nvv)
            || !proto__d_uint(
                &d, &f[BF_REASON], PROTO_FORGET_PARTNER, &reason, "forget reason must be 1, 2 or 3")
            || !proto__d_str(&d, &f[BF_OPERATOR], PROTO_TEXT_MAX, &out->operator_name,
                "operator must be str of at most 1024 bytes"))
            return proto__d_fail(&d, diag);
        if (reason == 0) {
            proto__d_err(&d, &f[BF_REASON], PROTO_EVALUE, "forget reason must be 1, 2 or 3");
            return proto__d_fail(&d, diag);
        }
        if (!proto__text(out->operator_name.p, out->operator_name.len)) {
            proto__d_err(&d, &f[BF_OPERATOR], PROTO_EVALUE,
                "operator must be text (UTF-8, no control characters, not blank)");
            return proto__d_fail(&d, diag);
        }
        out->forget_reason = (uint8_t)reason;
        break;
    case PROTO_K_ACCESS_GRANT:
        if (!proto__d_uint(&d, &f[BF_ENTRY], UINT64_MAX, &out->entry, "entry number")
            || !decode_access(&d, f, &out->grant))
            return proto__d_fail(&d, diag);
        break;
    case PROTO_K_ACCESS_NARROW:
        if (!proto__d_uint(&d, &f[BF_ENTRY], UINT64_MAX, &out->entry, "entry number")
            || !decode_narrow(&d, f, out))
            return proto__d_fail(&d, diag);
        break;
    default: /* PROTO_K_ACCESS_EPOCH */
        if (!proto__d_uint(&d, &f[BF_ENTRY], UINT64_MAX, &out->entry, "entry number")
            || !proto__d_uint(&d, &f[BF_NEW_EPOCH], UINT64_MAX, &out->new_epoch, "new epoch")
            || !proto__d_fixed(
                &d, &f[BF_KEY_HASH], PROTO_HASH_LEN, out->key_hash, "key hash must be bin of 32"))
            return proto__d_fail(&d, diag);
        if (out->new_epoch <= out->epoch) {
            proto__d_err(&d, &f[BF_NEW_EPOCH], PROTO_EVALUE,
                "the new epoch must be greater than the epoch of the key it is sealed under");
            return proto__d_fail(&d, diag);
        }
        break;
    }
    if ((kind == PROTO_K_ACCESS_GRANT || kind == PROTO_K_ACCESS_EPOCH
            || kind == PROTO_K_ACCESS_NARROW)
        && out->entry == 0) {
        proto__d_err(&d, &f[BF_ENTRY], PROTO_EVALUE, "access-log entries are numbered from 1");
        return proto__d_fail(&d, diag);
    }
    out->vv = out->vv_;
    out->narrow.cut = out->cut_;
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
    uint8_t ad[AD_MAX];
    size_t adlen = header_ad(h, key, ad);
    proto_err err;
    size_t plen;
    if (!proto__aead_open(pt, body + PROTO_NONCE_LEN, len - PROTO_NONCE_LEN, ad, adlen, body,
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
    /* The case, scope and epoch are the key's: the associated data bound them. */
    err = decode_plain(pt, plen, lim, key, out, diag);
    if (err != PROTO_OK)
        proto_body_fini(out);
    return err;
fail:
    proto__wipe(pt, padded);
    free(pt);
    return err;
}
