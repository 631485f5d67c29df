/*
 * messages.c - receipts, the manifest, peer sync and control messages (PROTOCOL.md, sections
 * "Receipts" to "Control messages").
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Receipts                                                                                  */

static void enc_receipt_fields(proto__w *w, const void *arg)
{
    const proto_receipt *r = arg;
    proto__w_head(w, 6, PROTO_K_RECEIPT_FIELDS);
    proto__w_uint(w, r->kind);
    proto__w_bin(w, r->signer, PROTO_ORIGIN_LEN);
    proto__w_bin(w, r->header_id, PROTO_HASH_LEN);
    proto__w_uint(w, r->time_ms);
}

static proto_err receipt_out(const proto_receipt *r, const proto_identity *signer, proto_buf *out)
{
    if (r->kind != PROTO_RECEIPT_DELIVERY && r->kind != PROTO_RECEIPT_ERASURE)
        return PROTO_EVALUE;
    proto_receipt tmp = *r;
    if (signer != NULL)
        memcpy(tmp.signer, signer->origin, PROTO_ORIGIN_LEN);
    proto_buf fields;
    proto_err err = proto__encode(enc_receipt_fields, &tmp, &fields);
    if (err != PROTO_OK)
        return err;
    if (signer != NULL)
        proto__sign(signer, fields.p, fields.len, tmp.sig);
    err = proto__encode_signed(
        PROTO_K_RECEIPT, (proto_bytes) { fields.p, fields.len }, tmp.sig, out);
    proto_buf_free(&fields);
    return err;
}

proto_err proto_receipt_sign(const proto_receipt *r, const proto_identity *signer, proto_buf *out)
{
    if (r == NULL || signer == NULL || out == NULL)
        return PROTO_EINVAL;
    return receipt_out(r, signer, out);
}

proto_err proto_receipt_encode(const proto_receipt *r, proto_buf *out)
{
    if (r == NULL || out == NULL)
        return PROTO_EINVAL;
    return receipt_out(r, NULL, out);
}

proto_err proto_receipt_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_receipt *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto_bytes fb;
    proto_err err = proto__decode_signed(msg, len, lim, PROTO_K_RECEIPT, &fb, out->sig, diag);
    if (err != PROTO_OK)
        return err;
    proto__d d;
    const msgpack_object *f;
    err = proto__d_open(
        &d, fb.p, fb.len, lim, (size_t)(fb.p - msg), PROTO_K_RECEIPT_FIELDS, 6, &f, diag);
    if (err != PROTO_OK)
        return err;
    uint64_t kind;
    if (!proto__d_uint(&d, &f[2], PROTO_RECEIPT_ERASURE, &kind,
            "receipt kind must be 1 (delivery) or 2 (erasure)")
        || !proto__d_fixed(&d, &f[3], PROTO_ORIGIN_LEN, out->signer, "signer must be bin of 32")
        || !proto__d_fixed(&d, &f[4], PROTO_HASH_LEN, out->header_id, "header id must be bin of 32")
        || !proto__d_uint(&d, &f[5], UINT64_MAX, &out->time_ms, "time"))
        return proto__d_fail(&d, diag);
    if (kind == 0) {
        proto__d_err(&d, &f[2], PROTO_EVALUE, "receipt kind must be 1 (delivery) or 2 (erasure)");
        return proto__d_fail(&d, diag);
    }
    out->kind = (uint8_t)kind;
    out->signed_bytes = fb;
    proto__d_close(&d);
    return PROTO_OK;
}

proto_err proto_receipt_verify(const proto_receipt *r)
{
    if (r == NULL || r->signed_bytes.p == NULL)
        return PROTO_EINVAL;
    return proto__verify(r->signer, r->signed_bytes.p, r->signed_bytes.len, r->sig) ? PROTO_OK
                                                                                    : PROTO_ESIG;
}

/* ---------------------------------------------------------------------------------------- */
/* Manifest                                                                                  */

#define MANIFEST_FIELDS 9
#define MEMBER_FIELDS 5
#define KEY_FIELDS 5
#define CLOCK_AHEAD_MIN 1000u
#define CLOCK_AHEAD_MAX 86400000u
#define COUNTER_LIMIT_MAX (UINT64_C(1) << 53)

static int bytes_cmp(proto_bytes a, proto_bytes b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n > 0 ? memcmp(a.p, b.p, n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static void enc_manifest_fields(proto__w *w, const void *arg)
{
    const proto_manifest *m = arg;
    proto__w_head(w, MANIFEST_FIELDS, PROTO_K_MANIFEST_FIELDS);
    proto__w_uint(w, m->version);
    proto__w_uint(w, m->signed_at_ms);
    proto__w_bin(w, m->schema_hash, PROTO_HASH_LEN);
    proto__w_uint(w, m->max_clock_ahead_ms);
    proto__w_uint(w, m->counter_limit);
    proto__w_array(w, m->nmembers);
    for (size_t i = 0; i < m->nmembers; i++) {
        const proto_member *e = &m->members[i];
        const char *role = proto_role_name(e->role);
        proto__w_array(w, MEMBER_FIELDS);
        proto__w_str(w, e->org.p, e->org.len);
        proto__w_str(w, e->name.p, e->name.len);
        proto__w_str(w, role, role != NULL ? strlen(role) : 0);
        proto__w_str(w, e->url.p, e->url.len);
        proto__w_array(w, e->nkeys);
        for (size_t k = 0; k < e->nkeys; k++) {
            const proto_member_key *x = &e->keys[k];
            proto__w_array(w, KEY_FIELDS);
            proto__w_bin(w, x->origin, PROTO_ORIGIN_LEN);
            proto__w_bin(w, x->box_pk, PROTO_BOX_PK_LEN);
            proto__w_uint(w, x->effective_ms);
            proto__w_bool(w, x->retired);
            proto__w_uint(w, x->last_seq);
        }
    }
    proto__w_array(w, m->npurposes);
    for (size_t i = 0; i < m->npurposes; i++) {
        proto__w_array(w, 2);
        proto__w_str(w, m->purposes[i].id.p, m->purposes[i].id.len);
        proto__w_str(w, m->purposes[i].description.p, m->purposes[i].description.len);
    }
}

/* The rules of a manifest's scalar fields: NULL when they hold, else the reason and, in *field,
 * the position of the offending field in MANIFEST_FIELDS. */
static const char *manifest_head_rule(const proto_manifest *m, int *field)
{
    *field = 2;
    if (m->version == 0)
        return "manifest version starts at 1";
    *field = 5;
    if (m->max_clock_ahead_ms < CLOCK_AHEAD_MIN || m->max_clock_ahead_ms > CLOCK_AHEAD_MAX)
        return "max clock ahead must be 1000..86400000 ms";
    *field = 6;
    if (m->counter_limit == 0 || m->counter_limit > COUNTER_LIMIT_MAX)
        return "counter limit must be 1..2^53";
    return NULL;
}

/* The rules of one member's own fields (not its order among the others): NULL when they hold,
 * else the reason, *code the error, and in *field the member field (0..4) or, for a key,
 * 5 + the key's index. */
static const char *member_rule(const proto_member *e, proto_err *code, size_t *field)
{
    *code = PROTO_EVALUE;
    *field = 0;
    if (!proto__valid_org(e->org.p, e->org.len))
        return "member org id must match [a-z0-9-]{1,32}";
    *field = 1;
    if (!proto__text(e->name.p, e->name.len))
        return "member name must be text (UTF-8, no control characters, not blank)";
    *field = 2;
    if (proto_role_name(e->role) == NULL || e->role == 0)
        return "member role must be comune, cpia, cpi, prefettura, coop or coord";
    *field = 3;
    if (!proto_url_valid((const char *)e->url.p, e->url.len))
        return "member url must be tcp://HOST:PORT";
    *field = 4;
    if (e->nkeys == 0 || e->nkeys > PROTO_MEMBER_KEYS_MAX)
        return "a member has 1..16 keys";
    for (size_t k = 0; k < e->nkeys; k++) {
        const proto_member_key *x = &e->keys[k];
        *field = 5 + k;
        if (!x->retired && x->last_seq != 0) {
            *code = PROTO_ENONCANON;
            return "a key that is not retired has last seq 0";
        }
        if (k + 1 < e->nkeys && !x->retired)
            return "every key of a member but the last is retired";
        if (k > 0 && x->effective_ms < e->keys[k - 1].effective_ms)
            return "a member's keys are oldest first (effective times do not decrease)";
    }
    return NULL;
}

static int origin_ptr_cmp(const void *a, const void *b)
{
    return memcmp(*(const uint8_t *const *)a, *(const uint8_t *const *)b, PROTO_ORIGIN_LEN);
}

/* Are the n origins unique? *dup: one origin that appears twice. n <= 65536: sorted, not
 * compared pairwise. false with *dup NULL: out of memory. */
static bool origins_unique(const proto_member_key *keys, size_t n, const uint8_t **dup)
{
    *dup = NULL;
    const uint8_t **v = proto__calloc(n, sizeof *v);
    if (v == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        v[i] = keys[i].origin;
    qsort(v, n, sizeof *v, origin_ptr_cmp);
    for (size_t i = 1; i < n && *dup == NULL; i++)
        if (memcmp(v[i - 1], v[i], PROTO_ORIGIN_LEN) == 0)
            *dup = v[i];
    free(v);
    return *dup == NULL;
}

static proto_err manifest_ok(const proto_manifest *m)
{
    if ((m->nmembers > 0 && m->members == NULL) || (m->npurposes > 0 && m->purposes == NULL))
        return PROTO_EINVAL;
    if (m->nmembers > PROTO_MEMBERS_MAX || m->npurposes > PROTO_MEMBERS_MAX)
        return PROTO_ELIMIT;
    int hf;
    if (manifest_head_rule(m, &hf) != NULL)
        return PROTO_EVALUE;
    size_t total = 0;
    for (size_t i = 0; i < m->nmembers; i++) {
        const proto_member *e = &m->members[i];
        if (e->nkeys > 0 && e->keys == NULL)
            return PROTO_EINVAL;
        proto_err code;
        size_t field;
        if (member_rule(e, &code, &field) != NULL)
            return PROTO_EVALUE;
        if (i > 0 && bytes_cmp(m->members[i - 1].org, e->org) >= 0)
            return PROTO_EVALUE;
        total += e->nkeys;
    }
    proto_member_key *all = proto__calloc(total, sizeof *all);
    if (all == NULL)
        return PROTO_ENOMEM;
    for (size_t i = 0, o = 0; i < m->nmembers; i++)
        for (size_t k = 0; k < m->members[i].nkeys; k++)
            all[o++] = m->members[i].keys[k];
    const uint8_t *dup;
    bool unique = origins_unique(all, total, &dup);
    free(all);
    if (!unique)
        return dup == NULL ? PROTO_ENOMEM : PROTO_EVALUE;
    for (size_t i = 0; i < m->npurposes; i++) {
        const proto_purpose *p = &m->purposes[i];
        if (!proto__valid_org(p->id.p, p->id.len)
            || !proto__text(p->description.p, p->description.len))
            return PROTO_EVALUE;
        if (i > 0 && bytes_cmp(m->purposes[i - 1].id, p->id) >= 0)
            return PROTO_EVALUE;
    }
    return PROTO_OK;
}

static proto_err manifest_out(const proto_manifest *m, const proto_identity *admin, proto_buf *out)
{
    proto_err err = manifest_ok(m);
    if (err != PROTO_OK)
        return err;
    proto_buf fields;
    err = proto__encode(enc_manifest_fields, m, &fields);
    if (err != PROTO_OK)
        return err;
    uint8_t sig[PROTO_SIG_LEN];
    memcpy(sig, m->sig, PROTO_SIG_LEN);
    if (admin != NULL)
        proto__sign(admin, fields.p, fields.len, sig);
    err = proto__encode_signed(PROTO_K_MANIFEST, (proto_bytes) { fields.p, fields.len }, sig, out);
    proto_buf_free(&fields);
    return err;
}

proto_err proto_manifest_sign(const proto_manifest *m, const proto_identity *admin, proto_buf *out)
{
    if (m == NULL || admin == NULL || out == NULL)
        return PROTO_EINVAL;
    return manifest_out(m, admin, out);
}

proto_err proto_manifest_encode(const proto_manifest *m, proto_buf *out)
{
    if (m == NULL || out == NULL)
        return PROTO_EINVAL;
    return manifest_out(m, NULL, out);
}

void proto_manifest_fini(proto_manifest *m)
{
    if (m == NULL)
        return;
    free(m->members_);
    free(m->keys_);
    free(m->purposes_);
    memset(m, 0, sizeof *m);
}

/* Decode one member key [origin, box_pk, effective, retired, last seq] into x. */
static bool decode_member_key(proto__d *d, const msgpack_object *o, proto_member_key *x)
{
    const msgpack_object *y;
    return proto__d_tuple(d, o, KEY_FIELDS, &y,
               "member key is [origin, x25519 key, effective, retired, last seq]")
        && proto__d_fixed(d, &y[0], PROTO_ORIGIN_LEN, x->origin, "key origin must be bin of 32")
        && proto__d_fixed(d, &y[1], PROTO_BOX_PK_LEN, x->box_pk, "key x25519 key must be bin of 32")
        && proto__d_uint(d, &y[2], UINT64_MAX, &x->effective_ms, "key effective time")
        && proto__d_bool(d, &y[3], &x->retired, "key retired must be a boolean")
        && proto__d_uint(d, &y[4], UINT64_MAX, &x->last_seq, "key last seq");
}

/* Decode the members (f: the MANIFEST_FIELDS items) into out->members_ and out->keys_. */
static bool decode_members(proto__d *d, const msgpack_object *mem, size_t nm, proto_manifest *out)
{
    /* first pass: shapes and the number of keys, so that one array holds them all */
    size_t total = 0;
    for (size_t i = 0; i < nm; i++) {
        const msgpack_object *x, *ks;
        size_t nk;
        if (!proto__d_tuple(d, &mem[i], MEMBER_FIELDS, &x, "member is [org, name, role, url, keys]")
            || !proto__d_arr(d, &x[4], PROTO_MEMBER_KEYS_MAX, &ks, &nk,
                "member keys must be an array of at most 16"))
            return false;
        total += nk;
    }
    out->members_ = proto__calloc(nm, sizeof *out->members_);
    out->keys_ = proto__calloc(total, sizeof *out->keys_);
    if (out->members_ == NULL || out->keys_ == NULL)
        return proto__d_err(d, NULL, PROTO_ENOMEM, "out of memory for the manifest");
    /* the msgpack object of each key, to report a duplicate origin where it is */
    const msgpack_object **where = proto__calloc(total, sizeof *where);
    if (where == NULL)
        return proto__d_err(d, NULL, PROTO_ENOMEM, "out of memory for the manifest");
    size_t o = 0;
    for (size_t i = 0; i < nm && d->err == PROTO_OK; i++) {
        proto_member *e = &out->members_[i];
        const msgpack_object *x = mem[i].via.array.ptr, *ks = x[4].via.array.ptr;
        proto_bytes role;
        if (!proto__d_str(d, &x[0], PROTO_ORG_MAX, &e->org, "member org id")
            || !proto__d_str(d, &x[1], PROTO_TEXT_MAX, &e->name, "member name")
            || !proto__d_str(d, &x[2], 16, &role, "member role")
            || !proto__d_str(d, &x[3], PROTO_URL_MAX, &e->url, "member url"))
            break;
        e->role = (uint8_t)proto_role_parse((const char *)role.p, role.len);
        e->keys = out->keys_ + o;
        e->nkeys = x[4].via.array.size;
        for (size_t k = 0; k < e->nkeys; k++, o++) {
            where[o] = &ks[k];
            if (!decode_member_key(d, &ks[k], &out->keys_[o]))
                break;
        }
        if (d->err != PROTO_OK)
            break;
        proto_err code;
        size_t field;
        const char *why = member_rule(e, &code, &field);
        if (why != NULL)
            proto__d_err(d, field < 4 ? &x[field] : field == 4 ? &x[4] : &ks[field - 5], code, why);
        else if (i > 0 && bytes_cmp(out->members_[i - 1].org, e->org) >= 0)
            proto__d_err(
                d, &mem[i], PROTO_ENONCANON, "members must be sorted by org id without duplicates");
    }
    if (d->err == PROTO_OK) {
        const uint8_t *dup;
        if (!origins_unique(out->keys_, total, &dup)) {
            if (dup == NULL) {
                proto__d_err(d, NULL, PROTO_ENOMEM, "out of memory for the manifest");
            } else {
                size_t k = (size_t)(dup - out->keys_[0].origin) / sizeof out->keys_[0];
                proto__d_err(d, where[k], PROTO_EVALUE,
                    "an origin appears twice (origins are unique over all keys of all members)");
            }
        }
    }
    free(where);
    return d->err == PROTO_OK;
}

proto_err proto_manifest_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_manifest *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto_bytes fb;
    proto_err err = proto__decode_signed(msg, len, lim, PROTO_K_MANIFEST, &fb, out->sig, diag);
    if (err != PROTO_OK)
        return err;
    proto__d d;
    const msgpack_object *f, *mem, *pur;
    size_t nm, np;
    err = proto__d_open(&d, fb.p, fb.len, lim, (size_t)(fb.p - msg), PROTO_K_MANIFEST_FIELDS,
        MANIFEST_FIELDS, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(&d, &f[2], UINT64_MAX, &out->version, "manifest version")
        || !proto__d_uint(&d, &f[3], UINT64_MAX, &out->signed_at_ms, "signed at")
        || !proto__d_fixed(
            &d, &f[4], PROTO_HASH_LEN, out->schema_hash, "schema hash must be bin of 32")
        || !proto__d_uint(&d, &f[5], UINT64_MAX, &out->max_clock_ahead_ms, "max clock ahead")
        || !proto__d_uint(&d, &f[6], UINT64_MAX, &out->counter_limit, "counter limit")
        || !proto__d_arr(&d, &f[7], PROTO_MEMBERS_MAX, &mem, &nm, "members must be an array")
        || !proto__d_arr(&d, &f[8], PROTO_MEMBERS_MAX, &pur, &np, "purposes must be an array"))
        return proto__d_fail(&d, diag);
    int hf;
    const char *why = manifest_head_rule(out, &hf);
    if (why != NULL) {
        proto__d_err(&d, &f[hf], PROTO_EVALUE, why);
        return proto__d_fail(&d, diag);
    }
    out->purposes_ = proto__calloc(np, sizeof *out->purposes_);
    if (out->purposes_ == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    if (decode_members(&d, mem, nm, out)) {
        for (size_t i = 0; i < np && d.err == PROTO_OK; i++) {
            proto_purpose *p = &out->purposes_[i];
            const msgpack_object *x;
            if (!proto__d_tuple(&d, &pur[i], 2, &x, "purpose is [id, description]")
                || !proto__d_str(&d, &x[0], PROTO_ORG_MAX, &p->id, "purpose id")
                || !proto__d_str(&d, &x[1], PROTO_TEXT_MAX, &p->description, "purpose description"))
                break;
            if (!proto__valid_org(p->id.p, p->id.len))
                proto__d_err(&d, &x[0], PROTO_EVALUE, "purpose id must match [a-z0-9-]{1,32}");
            else if (!proto__text(p->description.p, p->description.len))
                proto__d_err(&d, &x[1], PROTO_EVALUE,
                    "purpose description must be text (UTF-8, no control characters, not blank)");
            else if (i > 0 && bytes_cmp(out->purposes_[i - 1].id, p->id) >= 0)
                proto__d_err(&d, &pur[i], PROTO_ENONCANON,
                    "purposes must be sorted by id without duplicates");
        }
    }
    if (d.err != PROTO_OK) {
        proto_manifest_fini(out);
        return proto__d_fail(&d, diag);
    }
    proto__d_close(&d);
    out->members = out->members_;
    out->nmembers = nm;
    out->purposes = out->purposes_;
    out->npurposes = np;
    out->signed_bytes = fb;
    return PROTO_OK;
}

proto_err proto_manifest_verify(const proto_manifest *m, const uint8_t admin_pk[PROTO_ORIGIN_LEN])
{
    if (m == NULL || admin_pk == NULL || m->signed_bytes.p == NULL)
        return PROTO_EINVAL;
    return proto__verify(admin_pk, m->signed_bytes.p, m->signed_bytes.len, m->sig) ? PROTO_OK
                                                                                   : PROTO_ESIG;
}

const proto_member *proto_manifest_find(
    const proto_manifest *m, const uint8_t origin[PROTO_ORIGIN_LEN], size_t *key_index)
{
    if (m == NULL || origin == NULL)
        return NULL;
    for (size_t i = 0; i < m->nmembers; i++)
        for (size_t k = 0; k < m->members[i].nkeys; k++)
            if (memcmp(m->members[i].keys[k].origin, origin, PROTO_ORIGIN_LEN) == 0) {
                if (key_index != NULL)
                    *key_index = k;
                return &m->members[i];
            }
    return NULL;
}

const proto_member *proto_manifest_find_org(const proto_manifest *m, const char *org, size_t len)
{
    if (m == NULL || org == NULL)
        return NULL;
    proto_bytes want = { (const uint8_t *)org, len };
    for (size_t i = 0; i < m->nmembers; i++)
        if (bytes_cmp(m->members[i].org, want) == 0)
            return &m->members[i];
    return NULL;
}

const proto_member_key *proto_member_current(const proto_member *mb)
{
    if (mb == NULL || mb->nkeys == 0 || mb->keys == NULL)
        return NULL;
    return &mb->keys[mb->nkeys - 1];
}

bool proto_member_active(const proto_member *mb)
{
    const proto_member_key *k = proto_member_current(mb);
    return k != NULL && !k->retired;
}

/* ---------------------------------------------------------------------------------------- */
/* Sync messages                                                                             */

static void enc_vv(proto__w *w, const void *arg)
{
    const proto_vv_msg *m = arg;
    proto__w_head(w, 4, PROTO_K_VV);
    proto__w_array(w, m->n);
    for (size_t i = 0; i < m->n; i++) {
        proto__w_array(w, m->entries[i].fork != 0 ? 4 : 3);
        proto__w_bin(w, m->entries[i].origin, PROTO_ORIGIN_LEN);
        proto__w_uint(w, m->entries[i].seq);
        proto__w_bin(w, m->entries[i].id, PROTO_HASH_LEN);
        if (m->entries[i].fork != 0)
            proto__w_uint(w, m->entries[i].fork);
    }
    proto__w_array(w, m->nskip);
    for (size_t i = 0; i < m->nskip; i++)
        proto__w_bin(w, m->skip[i].b, PROTO_ORIGIN_LEN);
}

proto_err proto_vv_encode(const proto_vv_msg *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->n > 0 && m->entries == NULL))
        return PROTO_EINVAL;
    if (m->n > PROTO_VV_MAX)
        return PROTO_ELIMIT;
    for (size_t i = 0; i < m->n; i++)
        if (m->entries[i].seq == 0 || m->entries[i].fork > m->entries[i].seq
            || (i > 0
                && memcmp(m->entries[i - 1].origin, m->entries[i].origin, PROTO_ORIGIN_LEN) >= 0))
            return PROTO_EVALUE;
    if (m->nskip > PROTO_VV_MAX || (m->nskip > 0 && m->skip == NULL))
        return m->nskip > PROTO_VV_MAX ? PROTO_ELIMIT : PROTO_EINVAL;
    for (size_t i = 1; i < m->nskip; i++)
        if (memcmp(m->skip[i - 1].b, m->skip[i].b, PROTO_ORIGIN_LEN) >= 0)
            return PROTO_EVALUE;
    return proto__encode(enc_vv, m, out);
}

proto_err proto_vv_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_vv_msg *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f, *items, *skips;
    size_t n, ns = 0;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_VV, 4, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_VV_MAX, &items, &n, "version vector must be an array"))
        return proto__d_fail(&d, diag);
    out->entries_ = proto__calloc(n, sizeof *out->entries_);
    if (out->entries_ == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < n && d.err == PROTO_OK; i++) {
        proto_vv_item *e = &out->entries_[i];
        const msgpack_object *x;
        bool forked = items[i].type == MSGPACK_OBJECT_ARRAY && items[i].via.array.size == 4;
        if (!proto__d_tuple(&d, &items[i], forked ? 4 : 3, &x,
                "version vector entry is [origin, seq, id] or [origin, seq, id, fork]")
            || !proto__d_fixed(&d, &x[0], PROTO_ORIGIN_LEN, e->origin, "origin must be bin of 32")
            || !proto__d_uint(&d, &x[1], UINT64_MAX, &e->seq, "seq")
            || !proto__d_fixed(&d, &x[2], PROTO_HASH_LEN, e->id, "header id must be bin of 32")
            || (forked && !proto__d_uint(&d, &x[3], UINT64_MAX, &e->fork, "fork")))
            break;
        if (e->seq == 0)
            proto__d_err(&d, &x[1], PROTO_EVALUE, "seq starts at 1");
        else if (forked && (e->fork == 0 || e->fork > e->seq))
            proto__d_err(&d, &x[3], PROTO_EVALUE, "a fork point is 1 to seq");
        else if (i > 0 && memcmp(out->entries_[i - 1].origin, e->origin, PROTO_ORIGIN_LEN) >= 0)
            proto__d_err(&d, &items[i], PROTO_ENONCANON,
                "version vector must be sorted by origin without duplicates");
    }
    if (d.err == PROTO_OK
        && proto__d_arr(&d, &f[3], PROTO_VV_MAX, &skips, &ns, "skip must be an array of origins")
        && (out->skip_ = proto__calloc(ns, sizeof *out->skip_)) == NULL) {
        proto_vv_fini(out);
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < ns && d.err == PROTO_OK; i++) {
        if (!proto__d_fixed(&d, &skips[i], PROTO_ORIGIN_LEN, out->skip_[i].b,
                "a skipped origin must be bin of 32"))
            break;
        if (i > 0 && memcmp(out->skip_[i - 1].b, out->skip_[i].b, PROTO_ORIGIN_LEN) >= 0)
            proto__d_err(&d, &skips[i], PROTO_ENONCANON,
                "skipped origins must be sorted without duplicates");
    }
    if (d.err != PROTO_OK) {
        proto_vv_fini(out);
        return proto__d_fail(&d, diag);
    }
    out->entries = out->entries_;
    out->n = n;
    out->skip = out->skip_;
    out->nskip = ns;
    proto__d_close(&d);
    return PROTO_OK;
}

void proto_vv_fini(proto_vv_msg *m)
{
    if (m == NULL)
        return;
    free(m->entries_);
    free(m->skip_);
    memset(m, 0, sizeof *m);
}

/*
 * HEADERS on the wire (PROTOCOL.md section 19): a header that follows the batch's previous one
 * in its origin's log (same origin, seq + 1, prev = the previous header's id) is carried
 * compact, without origin, seq and prev, which the receiver has from that previous header:
 * [header kind, hlc wall, hlc logical, tag, hints, body length, body hash, signature]; any
 * other header as the bin of its HEADER message. The compact form is required where it applies,
 * so the batch has one encoding.
 */
#define COMPACT_ITEMS 8

/* The place in a batch that a compact header continues: the last header's origin, seq and id. */
typedef struct run_place {
    bool ok; /* the previous element decoded as a header */
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint64_t seq;
    uint8_t id[PROTO_HASH_LEN];
} run_place;

static bool continues(const run_place *r, const proto_header *h)
{
    return r->ok && r->seq < UINT64_MAX && h->seq == r->seq + 1
        && memcmp(r->origin, h->origin, PROTO_ORIGIN_LEN) == 0
        && memcmp(r->id, h->prev, PROTO_HASH_LEN) == 0;
}

static void run_at(run_place *r, const proto_header *h)
{
    r->ok = true;
    memcpy(r->origin, h->origin, PROTO_ORIGIN_LEN);
    r->seq = h->seq;
    memcpy(r->id, h->id, PROTO_HASH_LEN);
}

/* Bytes of a canonical msgpack uint. */
static size_t uint_len(uint64_t v)
{
    return v < 128 ? 1 : v <= UINT8_MAX ? 2 : v <= UINT16_MAX ? 3 : v <= UINT32_MAX ? 5 : 9;
}

/* How the encoder carries each header: whole (tail 0), or compact: the fields from hlc wall to
 * body hash are copied as they are (their encoding is the same in both forms) from `tail`
 * bytes into the signed fields, which begin `at` bytes into the HEADER message. */
typedef struct enc_form {
    uint8_t at, tail;
} enc_form;

typedef struct enc_plan {
    const proto_headers_msg *m;
    enc_form *form; /* per header */
} enc_plan;

static void enc_headers(proto__w *w, const void *arg)
{
    const enc_plan *pl = arg;
    const proto_headers_msg *m = pl->m;
    proto__w_head(w, 3, PROTO_K_HEADERS);
    proto__w_array(w, m->n);
    for (size_t i = 0; i < m->n; i++) {
        const proto_bytes *hb = &m->headers[i];
        if (pl->form[i].tail == 0) {
            proto__w_bin(w, hb->p, hb->len);
            continue;
        }
        /* HEADER = [4, 1, fields bin, sig bin64]: the signature is the last 64 bytes and the
         * fields end at its 2-byte bin head */
        const uint8_t *sig = hb->p + hb->len - PROTO_SIG_LEN;
        const uint8_t *fields = hb->p + pl->form[i].at;
        const uint8_t *tail = fields + pl->form[i].tail;
        proto__w_array(w, COMPACT_ITEMS);
        proto__w_raw(w, fields + 3, 1); /* header kind: 1 to 3, one byte */
        proto__w_raw(w, tail, (size_t)(sig - 2 - tail));
        proto__w_bin(w, sig, PROTO_SIG_LEN);
    }
}

proto_err proto_headers_encode(const proto_headers_msg *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->n > 0 && m->headers == NULL))
        return PROTO_EINVAL;
    if (m->n > PROTO_BATCH_MAX)
        return PROTO_ELIMIT;
    enc_plan pl = { m, proto__calloc(m->n, sizeof *pl.form) };
    if (pl.form == NULL)
        return PROTO_ENOMEM;
    run_place r = { 0 };
    for (size_t i = 0; i < m->n; i++) {
        proto_header h;
        if (proto_header_decode(m->headers[i].p, m->headers[i].len, NULL, &h, NULL) != PROTO_OK) {
            r.ok = false; /* carried whole, as it is; the receiver refuses it */
            continue;
        }
        if (continues(&r, &h)) {
            /* the fields' array head, version, kind, header kind, origin, seq, prev */
            pl.form[i].tail
                = (uint8_t)(4 + 2 + PROTO_ORIGIN_LEN + uint_len(h.seq) + 2 + PROTO_HASH_LEN);
            pl.form[i].at = (uint8_t)(h.signed_bytes.p - m->headers[i].p);
        }
        run_at(&r, &h);
    }
    proto_err err = proto__encode(enc_headers, &pl, out);
    free(pl.form);
    return err;
}

/* n bin items, borrowed from the input, into a new array (*out, owned). On failure nothing is
 * left allocated and the decoder is closed with the error. */
static proto_err dec_bins(proto__d *d, const msgpack_object *items, size_t n, size_t len,
    proto_bytes **out, const char *what, proto_diag *diag)
{
    proto_bytes *v = proto__calloc(n, sizeof *v);
    if (v == NULL) {
        proto__d_close(d);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (!proto__d_bin(d, &items[i], len, &v[i], what)) {
            free(v);
            return proto__d_fail(d, diag);
        }
    *out = v;
    return PROTO_OK;
}

/* Rebuild the compact header o (after the place r, which moves to it) into *hb (owned by the
 * caller); false with the failure recorded in d. */
static bool rebuild(proto__d *d, const msgpack_object *o, run_place *r, proto_buf *hb)
{
    const msgpack_object *f;
    if (!r->ok)
        return proto__d_err(
            d, o, PROTO_ESHAPE, "a compact header must follow a header of its origin in the batch");
    if (!proto__d_tuple(d, o, COMPACT_ITEMS, &f,
            "a compact header is [kind, wall, logical, tag, hints, body length, body hash, "
            "signature]"))
        return false;
    proto_header h = { 0 };
    const msgpack_object *rest[7] = { &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6] };
    if (!proto__header_rest(d, rest, &h)
        || !proto__d_fixed(d, &f[7], PROTO_SIG_LEN, h.sig, "signature must be bin of 64"))
        return false;
    if (r->seq == UINT64_MAX)
        return proto__d_err(d, o, PROTO_EVALUE, "seq must be an unsigned integer");
    memcpy(h.origin, r->origin, PROTO_ORIGIN_LEN);
    h.seq = r->seq + 1;
    memcpy(h.prev, r->id, PROTO_HASH_LEN);
    proto_err err = proto_header_encode(&h, hb);
    if (err != PROTO_OK)
        return proto__d_err(d, o, err, "a compact header breaks a rule of header fields");
    proto_bytes whole = { hb->p, hb->len };
    proto__hash(r->id, PROTO_HASH_LEN, NULL, 0, &whole, 1);
    r->seq = h.seq;
    return true;
}

proto_err proto_headers_decode(const uint8_t *msg, size_t len, const proto_limits *lim,
    proto_headers_msg *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f, *items;
    size_t n;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_HEADERS, 3, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_BATCH_MAX, &items, &n, "headers must be an array"))
        return proto__d_fail(&d, diag);
    proto_bytes *v = proto__calloc(n, sizeof *v);
    size_t *off = proto__calloc(n, sizeof *off); /* of a rebuilt header in `built`, plus 1 */
    proto_buf built = { 0 };
    size_t cap = 0;
    run_place r = { 0 };
    if (v == NULL || off == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (items[i].type == MSGPACK_OBJECT_ARRAY) {
            proto_buf hb;
            if (!rebuild(&d, &items[i], &r, &hb))
                goto fail;
            if (built.len + hb.len > cap) {
                size_t ncap = cap > 0 ? cap * 2 : 4096;
                while (ncap < built.len + hb.len)
                    ncap *= 2;
                uint8_t *p = realloc(built.p, ncap);
                if (p == NULL) {
                    proto_buf_free(&hb);
                    goto nomem;
                }
                built.p = p;
                cap = ncap;
            }
            memcpy(built.p + built.len, hb.p, hb.len);
            off[i] = built.len + 1;
            v[i].len = hb.len;
            built.len += hb.len;
            proto_buf_free(&hb);
            continue;
        }
        if (!proto__d_bin(&d, &items[i], len, &v[i], "each header is carried as bin or compact"))
            goto fail;
        proto_header h;
        if (proto_header_decode(v[i].p, v[i].len, lim, &h, NULL) != PROTO_OK) {
            r.ok = false; /* passed on as it is: the receiver refuses it with its own reason */
            continue;
        }
        if (continues(&r, &h)) {
            proto__d_err(&d, &items[i], PROTO_ENONCANON,
                "a header that follows the previous one of its origin must be carried compact");
            goto fail;
        }
        run_at(&r, &h);
    }
    if (built.len > 0 && built.len < cap) { /* exactly what built_bytes says */
        uint8_t *p = realloc(built.p, built.len);
        if (p != NULL)
            built.p = p;
    }
    for (size_t i = 0; i < n; i++)
        if (off[i] != 0)
            v[i].p = built.p + off[i] - 1;
    free(off);
    out->headers_ = v;
    out->built_ = built.p;
    out->built_bytes = built.len;
    out->headers = out->headers_;
    out->n = n;
    proto__d_close(&d);
    return PROTO_OK;
nomem:
    proto__d_close(&d);
    err = PROTO_ENOMEM;
    goto out;
fail:
    err = proto__d_fail(&d, diag);
out:
    free(v);
    free(off);
    free(built.p);
    return err;
}

void proto_headers_fini(proto_headers_msg *m)
{
    if (m == NULL)
        return;
    free(m->headers_);
    free(m->built_);
    memset(m, 0, sizeof *m);
}

static void enc_bodies(proto__w *w, const void *arg)
{
    const proto_bodies_msg *m = arg;
    proto__w_head(w, 3, PROTO_K_BODIES);
    proto__w_array(w, m->n);
    for (size_t i = 0; i < m->n; i++) {
        proto__w_array(w, 2);
        proto__w_bin(w, m->items[i].header_id, PROTO_HASH_LEN);
        proto__w_bin(w, m->items[i].body.p, m->items[i].body.len);
    }
}

proto_err proto_bodies_encode(const proto_bodies_msg *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->n > 0 && m->items == NULL))
        return PROTO_EINVAL;
    if (m->n > PROTO_BATCH_MAX)
        return PROTO_ELIMIT;
    return proto__encode(enc_bodies, m, out);
}

proto_err proto_bodies_decode(const uint8_t *msg, size_t len, const proto_limits *lim,
    proto_bodies_msg *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f, *items;
    size_t n;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_BODIES, 3, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_BATCH_MAX, &items, &n, "bodies must be an array"))
        return proto__d_fail(&d, diag);
    out->items_ = proto__calloc(n, sizeof *out->items_);
    if (out->items_ == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *x;
        if (!proto__d_tuple(&d, &items[i], 2, &x, "body item is [header id, body]")
            || !proto__d_fixed(
                &d, &x[0], PROTO_HASH_LEN, out->items_[i].header_id, "header id must be bin of 32")
            || !proto__d_bin(&d, &x[1], len, &out->items_[i].body, "body must be bin")) {
            proto_bodies_fini(out);
            return proto__d_fail(&d, diag);
        }
    }
    out->items = out->items_;
    out->n = n;
    proto__d_close(&d);
    return PROTO_OK;
}

void proto_bodies_fini(proto_bodies_msg *m)
{
    if (m == NULL)
        return;
    free(m->items_);
    memset(m, 0, sizeof *m);
}

static void enc_want(proto__w *w, const void *arg)
{
    const proto_want_msg *m = arg;
    proto__w_head(w, 3, PROTO_K_WANT);
    proto__w_array(w, m->n);
    for (size_t i = 0; i < m->n; i++)
        proto__w_bin(w, m->ids[i].b, PROTO_HASH_LEN);
}

proto_err proto_want_encode(const proto_want_msg *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->n > 0 && m->ids == NULL))
        return PROTO_EINVAL;
    if (m->n > PROTO_BATCH_MAX)
        return PROTO_ELIMIT;
    return proto__encode(enc_want, m, out);
}

proto_err proto_want_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_want_msg *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f, *items;
    size_t n;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_WANT, 3, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_BATCH_MAX, &items, &n, "want must be an array"))
        return proto__d_fail(&d, diag);
    out->ids_ = proto__calloc(n, sizeof *out->ids_);
    if (out->ids_ == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (!proto__d_fixed(
                &d, &items[i], PROTO_HASH_LEN, out->ids_[i].b, "header id must be bin of 32")) {
            proto_want_fini(out);
            return proto__d_fail(&d, diag);
        }
    out->ids = out->ids_;
    out->n = n;
    proto__d_close(&d);
    return PROTO_OK;
}

void proto_want_fini(proto_want_msg *m)
{
    if (m == NULL)
        return;
    free(m->ids_);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------- */
/* Control messages                                                                          */

static void enc_ctl_request(proto__w *w, const void *arg)
{
    const proto_ctl_request *m = arg;
    proto__w_head(w, 5, PROTO_K_CTL_REQUEST);
    proto__w_uint(w, m->id);
    proto__w_str(w, m->command.p, m->command.len);
    proto__w_array(w, m->nargs);
    for (size_t i = 0; i < m->nargs; i++)
        proto__w_bin(w, m->args[i].p, m->args[i].len);
}

proto_err proto_ctl_request_encode(const proto_ctl_request *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->nargs > 0 && m->args == NULL))
        return PROTO_EINVAL;
    if (!proto__valid_command(m->command.p, m->command.len))
        return PROTO_EVALUE;
    if (m->nargs > PROTO_BATCH_MAX)
        return PROTO_ELIMIT;
    return proto__encode(enc_ctl_request, m, out);
}

proto_err proto_ctl_request_decode(const uint8_t *msg, size_t len, const proto_limits *lim,
    proto_ctl_request *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f, *items;
    size_t n;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_CTL_REQUEST, 5, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(&d, &f[2], UINT64_MAX, &out->id, "request id")
        || !proto__d_str(&d, &f[3], 64, &out->command, "command must be str of at most 64")
        || !proto__d_arr(&d, &f[4], PROTO_BATCH_MAX, &items, &n, "arguments must be an array"))
        return proto__d_fail(&d, diag);
    if (!proto__valid_command(out->command.p, out->command.len)) {
        proto__d_err(&d, &f[3], PROTO_EVALUE, "command must match [a-z0-9._-]{1,64}");
        return proto__d_fail(&d, diag);
    }
    if ((err = dec_bins(&d, items, n, len, &out->args_, "each argument is bin", diag)) != PROTO_OK)
        return err;
    out->args = out->args_;
    out->nargs = n;
    proto__d_close(&d);
    return PROTO_OK;
}

void proto_ctl_request_fini(proto_ctl_request *m)
{
    if (m == NULL)
        return;
    free(m->args_);
    memset(m, 0, sizeof *m);
}

static void enc_ctl_response(proto__w *w, const void *arg)
{
    const proto_ctl_response *m = arg;
    proto__w_head(w, 4, PROTO_K_CTL_RESPONSE);
    proto__w_uint(w, m->id);
    proto__w_bin(w, m->payload.p, m->payload.len);
}

proto_err proto_ctl_response_encode(const proto_ctl_response *m, proto_buf *out)
{
    if (m == NULL || out == NULL || (m->payload.len > 0 && m->payload.p == NULL))
        return PROTO_EINVAL;
    return proto__encode(enc_ctl_response, m, out);
}

proto_err proto_ctl_response_decode(const uint8_t *msg, size_t len, const proto_limits *lim,
    proto_ctl_response *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_CTL_RESPONSE, 4, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(&d, &f[2], UINT64_MAX, &out->id, "request id")
        || !proto__d_bin(&d, &f[3], len, &out->payload, "payload must be bin"))
        return proto__d_fail(&d, diag);
    proto__d_close(&d);
    return PROTO_OK;
}

static void enc_ctl_error(proto__w *w, const void *arg)
{
    const proto_ctl_error *m = arg;
    proto__w_head(w, 5, PROTO_K_CTL_ERROR);
    proto__w_uint(w, m->id);
    proto__w_uint(w, m->code);
    proto__w_str(w, m->message.p, m->message.len);
}

proto_err proto_ctl_error_encode(const proto_ctl_error *m, proto_buf *out)
{
    if (m == NULL || out == NULL)
        return PROTO_EINVAL;
    if (!proto__valid_text(m->message.p, m->message.len))
        return PROTO_EVALUE;
    return proto__encode(enc_ctl_error, m, out);
}

proto_err proto_ctl_error_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_ctl_error *out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_CTL_ERROR, 5, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(&d, &f[2], UINT64_MAX, &out->id, "request id")
        || !proto__d_uint(&d, &f[3], UINT64_MAX, &out->code, "error code")
        || !proto__d_str(&d, &f[4], PROTO_TEXT_MAX, &out->message,
            "error message must be str of at most 1024 bytes"))
        return proto__d_fail(&d, diag);
    if (!proto__valid_text(out->message.p, out->message.len)) {
        proto__d_err(&d, &f[4], PROTO_EVALUE, "error message must not contain NUL");
        return proto__d_fail(&d, diag);
    }
    proto__d_close(&d);
    return PROTO_OK;
}
