/*
 * scope.c - the canonical SCOPE encoding of crdt scopes (states and deltas), PROTOCOL.md
 * "Scope encoding":
 *
 *   [2, 20, origins, vv, cloud, fields]
 *   origins = [bin32 ...]            every origin the scope mentions, sorted, unique
 *   vv      = [[oi, max] ...]        by origin index
 *   cloud   = [[oi, counter] ...]    by (origin index, counter)
 *   fields  = [[name str, type, items] ...]   by name bytes
 *
 * Everything is in one order only, and the decoder rejects any other encoding, so a scope's
 * bytes (and their digest) are its identity.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct origin_table {
    crdt_origin *o;
    size_t n, cap;
} origin_table;

static int origin_qcmp(const void *a, const void *b)
{
    return crdt_origin_cmp(a, b);
}

static bool table_push(origin_table *t, const crdt_origin *o)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        crdt_origin *p = realloc(t->o, cap * sizeof *p);
        if (p == NULL)
            return false;
        t->o = p;
        t->cap = cap;
    }
    t->o[t->n++] = *o;
    return true;
}

static size_t table_index(const origin_table *t, const crdt_origin *o)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = crdt_origin_cmp(&t->o[mid], o);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX; /* cannot happen: the table holds every origin */
}

struct scope_arg {
    const crdt_scope *s;
    const origin_table *t;
};

static bool same_field(const crdt_entry *a, const crdt_entry *b)
{
    return a->field.len == b->field.len && memcmp(a->field.p, b->field.p, a->field.len) == 0;
}

static void enc_entry(proto__w *w, const origin_table *t, const crdt_entry *e)
{
    uint64_t oi = table_index(t, &e->dot.origin);
    switch (e->type) {
    case CRDT_REGISTER:
        proto__w_array(w, 5);
        proto__w_uint(w, oi);
        proto__w_uint(w, e->dot.counter);
        proto__w_uint(w, e->hlc.wall);
        proto__w_uint(w, e->hlc.logical);
        proto__w_bin(w, e->value.p, e->value.len);
        break;
    case CRDT_SET:
        proto__w_array(w, 3);
        proto__w_bin(w, e->elem.p, e->elem.len);
        proto__w_uint(w, oi);
        proto__w_uint(w, e->dot.counter);
        break;
    case CRDT_COUNTER:
        proto__w_array(w, 4);
        proto__w_uint(w, oi);
        proto__w_uint(w, e->dot.counter);
        proto__w_uint(w, e->pos);
        proto__w_uint(w, e->neg);
        break;
    case CRDT_TIMELINE:
        proto__w_array(w, 6);
        proto__w_uint(w, oi);
        proto__w_uint(w, e->dot.counter);
        proto__w_uint(w, e->hlc.wall);
        proto__w_uint(w, e->hlc.logical);
        proto__w_bool(w, e->redacted);
        proto__w_bin(w, e->value.p, e->value.len);
        break;
    }
}

static void enc_scope(proto__w *w, const void *arg)
{
    const struct scope_arg *a = arg;
    const crdt_scope *s = a->s;
    const origin_table *t = a->t;
    const crdt_cc *cc = crdt_scope_cc(s);
    proto__w_head(w, 6, PROTO_K_SCOPE);
    proto__w_array(w, t->n);
    for (size_t i = 0; i < t->n; i++)
        proto__w_bin(w, t->o[i].b, CRDT_ORIGIN_LEN);
    proto__w_array(w, cc->nvv);
    for (size_t i = 0; i < cc->nvv; i++) {
        proto__w_array(w, 2);
        proto__w_uint(w, table_index(t, &cc->vv[i].origin));
        proto__w_uint(w, cc->vv[i].max);
    }
    proto__w_array(w, cc->ncloud);
    for (size_t i = 0; i < cc->ncloud; i++) {
        proto__w_array(w, 2);
        proto__w_uint(w, table_index(t, &cc->cloud[i].origin));
        proto__w_uint(w, cc->cloud[i].counter);
    }
    size_t n = crdt_scope_entry_count(s);
    /* Count fields, then write each field's run of entries. */
    size_t nfields = 0;
    crdt_entry prev, e;
    for (size_t i = 0; i < n; i++) {
        if (crdt_scope_entry_at(s, i, &e) != CRDT_OK)
            return;
        if (i == 0 || !same_field(&prev, &e))
            nfields++;
        prev = e;
    }
    proto__w_array(w, nfields);
    size_t i = 0;
    while (i < n) {
        crdt_entry first;
        if (crdt_scope_entry_at(s, i, &first) != CRDT_OK)
            return;
        size_t j = i + 1;
        while (j < n) {
            if (crdt_scope_entry_at(s, j, &e) != CRDT_OK || !same_field(&first, &e))
                break;
            j++;
        }
        proto__w_array(w, 3);
        proto__w_str(w, first.field.p, first.field.len);
        proto__w_uint(w, (uint64_t)first.type);
        proto__w_array(w, j - i);
        for (size_t k = i; k < j; k++) {
            if (crdt_scope_entry_at(s, k, &e) != CRDT_OK)
                return;
            enc_entry(w, t, &e);
        }
        i = j;
    }
}

static proto_err build_table(const crdt_scope *s, origin_table *t)
{
    const crdt_cc *cc = crdt_scope_cc(s);
    size_t n = crdt_scope_entry_count(s);
    for (size_t i = 0; i < cc->nvv; i++)
        if (!table_push(t, &cc->vv[i].origin))
            return PROTO_ENOMEM;
    for (size_t i = 0; i < cc->ncloud; i++)
        if (!table_push(t, &cc->cloud[i].origin))
            return PROTO_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        crdt_entry e;
        if (crdt_scope_entry_at(s, i, &e) != CRDT_OK)
            return PROTO_EINVAL;
        if (!table_push(t, &e.dot.origin))
            return PROTO_ENOMEM;
    }
    if (t->n > 0) {
        qsort(t->o, t->n, sizeof *t->o, origin_qcmp);
        size_t u = 1;
        for (size_t i = 1; i < t->n; i++)
            if (crdt_origin_cmp(&t->o[u - 1], &t->o[i]) != 0)
                t->o[u++] = t->o[i];
        t->n = u;
    }
    return PROTO_OK;
}

proto_err proto_scope_encode(const crdt_scope *s, proto_buf *out)
{
    if (s == NULL || out == NULL)
        return PROTO_EINVAL;
    out->p = NULL;
    out->len = 0;
    origin_table t = { 0 };
    proto_err err = build_table(s, &t);
    if (err == PROTO_OK) {
        struct scope_arg a = { s, &t };
        err = proto__encode(enc_scope, &a, out);
    }
    free(t.o);
    return err;
}

proto_err proto_scope_digest(const crdt_scope *s, uint8_t out[PROTO_HASH_LEN])
{
    if (out == NULL)
        return PROTO_EINVAL;
    proto_buf b;
    proto_err err = proto_scope_encode(s, &b);
    if (err != PROTO_OK)
        return err;
    proto_bytes part = { b.p, b.len };
    proto__hash(out, PROTO_HASH_LEN, NULL, 0, &part, 1);
    proto_buf_free(&b);
    return PROTO_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Decoding                                                                                  */

static proto_err crdt_to_proto(crdt_err e)
{
    switch (e) {
    case CRDT_OK:
        return PROTO_OK;
    case CRDT_ENOMEM:
        return PROTO_ENOMEM;
    case CRDT_EORDER:
        return PROTO_ENONCANON;
    case CRDT_ELIMIT:
        return PROTO_ELIMIT;
    case CRDT_EINVAL:
    case CRDT_ETYPE:
    case CRDT_EOVERFLOW:
        return PROTO_EVALUE;
    default:
        return PROTO_ECRDT;
    }
}

struct dec {
    proto__d *d;
    const crdt_origin *origins;
    size_t norigins;
    bool *used;
};

/* An index into the origin table of n entries (none is valid when the table is empty). */
static bool dec_index(proto__d *d, const msgpack_object *o, size_t n, uint64_t *i)
{
    if (n == 0)
        return proto__d_err(
            d, o, PROTO_EVALUE, "origin index must point into the origin table (it is empty)");
    return proto__d_uint(d, o, n - 1, i, "origin index must point into the origin table");
}

static bool dec_oi(struct dec *x, const msgpack_object *o, crdt_origin *out)
{
    uint64_t i;
    if (!dec_index(x->d, o, x->norigins, &i))
        return false;
    *out = x->origins[i];
    x->used[i] = true;
    return true;
}

static bool dec_counter(struct dec *x, const msgpack_object *o, uint64_t *v)
{
    if (!proto__d_uint(x->d, o, UINT64_MAX, v, "dot counter"))
        return false;
    if (*v == 0)
        return proto__d_err(x->d, o, PROTO_EVALUE, "dot counters start at 1");
    return true;
}

static bool dec_hlc(struct dec *x, const msgpack_object *o, crdt_hlc *h)
{
    uint64_t logical;
    if (!proto__d_uint(x->d, &o[0], CRDT_HLC_WALL_MAX, &h->wall, "hlc wall must be < 2^48")
        || !proto__d_uint(
            x->d, &o[1], CRDT_HLC_LOGICAL_MAX, &logical, "hlc logical must be < 2^16"))
        return false;
    h->logical = (uint16_t)logical;
    return true;
}

static bool dec_entry(struct dec *x, const msgpack_object *o, crdt_type type, crdt_entry *e)
{
    const msgpack_object *it;
    proto_bytes b;
    switch (type) {
    case CRDT_REGISTER:
        if (!proto__d_tuple(
                x->d, o, 5, &it, "register entry is [oi, counter, wall, logical, value]")
            || !dec_oi(x, &it[0], &e->dot.origin) || !dec_counter(x, &it[1], &e->dot.counter)
            || !dec_hlc(x, &it[2], &e->hlc)
            || !proto__d_bin(x->d, &it[4], CRDT_VALUE_MAX, &b, "register value must be bin"))
            return false;
        e->value = (crdt_bytes) { b.p, b.len };
        return true;
    case CRDT_SET:
        if (!proto__d_tuple(x->d, o, 3, &it, "set entry is [element, oi, counter]")
            || !proto__d_bin(x->d, &it[0], CRDT_VALUE_MAX, &b, "set element must be bin")
            || !dec_oi(x, &it[1], &e->dot.origin) || !dec_counter(x, &it[2], &e->dot.counter))
            return false;
        e->elem = (crdt_bytes) { b.p, b.len };
        return true;
    case CRDT_COUNTER:
        if (!proto__d_tuple(x->d, o, 4, &it, "counter entry is [oi, counter, pos, neg]")
            || !dec_oi(x, &it[0], &e->dot.origin) || !dec_counter(x, &it[1], &e->dot.counter)
            || !proto__d_uint(x->d, &it[2], UINT64_MAX, &e->pos, "counter increments")
            || !proto__d_uint(x->d, &it[3], UINT64_MAX, &e->neg, "counter decrements"))
            return false;
        return true;
    case CRDT_TIMELINE:
        if (!proto__d_tuple(x->d, o, 6, &it,
                "timeline entry is [oi, counter, wall, logical, redacted, content]")
            || !dec_oi(x, &it[0], &e->dot.origin) || !dec_counter(x, &it[1], &e->dot.counter)
            || !dec_hlc(x, &it[2], &e->hlc)
            || !proto__d_bool(x->d, &it[4], &e->redacted, "redacted must be a boolean")
            || !proto__d_bin(x->d, &it[5], CRDT_VALUE_MAX, &b, "event content must be bin"))
            return false;
        if (e->redacted && b.len > 0)
            return proto__d_err(x->d, &it[5], PROTO_EVALUE, "a redacted event has no content");
        e->value = (crdt_bytes) { b.p, b.len };
        return true;
    }
    return proto__d_err(x->d, o, PROTO_EVALUE, "unknown field type");
}

/* The origin table: bin32 each, strictly ascending. */
static bool dec_origins(proto__d *d, const msgpack_object *arr, size_t n, crdt_origin *origins)
{
    for (size_t i = 0; i < n; i++) {
        if (!proto__d_fixed(d, &arr[i], CRDT_ORIGIN_LEN, origins[i].b, "origin must be bin of 32"))
            return false;
        if (i > 0 && crdt_origin_cmp(&origins[i - 1], &origins[i]) >= 0)
            return proto__d_err(d, &arr[i], PROTO_ENONCANON,
                "origin table must be sorted ascending without duplicates");
    }
    return true;
}

/* The context's version vector, checked canonical here (crdt_scope_set_cc copies it as given):
 * [oi, max] entries strictly ascending by origin. */
static bool dec_vv(struct dec *x, const msgpack_object *at, const msgpack_object *arr, size_t n,
    const crdt_mem *mem, crdt_cc *cc)
{
    if (n > 0) {
        if ((cc->vv = mem->realloc_fn(mem->ctx, NULL, n * sizeof *cc->vv)) == NULL)
            return proto__d_err(x->d, at, PROTO_ENOMEM, "out of memory");
        cc->capvv = n;
    }
    uint64_t prev_oi = 0;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *it;
        uint64_t oi;
        if (!proto__d_tuple(x->d, &arr[i], 2, &it, "vv entry is [oi, max]")
            || !dec_index(x->d, &it[0], x->norigins, &oi)
            || !dec_counter(x, &it[1], &cc->vv[i].max))
            return false;
        if (i > 0 && oi <= prev_oi)
            return proto__d_err(
                x->d, &arr[i], PROTO_ENONCANON, "vv must be sorted by origin, unique");
        prev_oi = oi;
        x->used[oi] = true;
        cc->vv[i].origin = x->origins[oi];
        cc->nvv = i + 1;
    }
    return true;
}

/* The context's cloud: [oi, counter] dots strictly ascending, each beyond its origin's vv max
 * + 1 (a dot right after it belongs in the vv). */
static bool dec_cloud(struct dec *x, const msgpack_object *at, const msgpack_object *arr, size_t n,
    const crdt_mem *mem, crdt_cc *cc)
{
    if (n > 0) {
        if ((cc->cloud = mem->realloc_fn(mem->ctx, NULL, n * sizeof *cc->cloud)) == NULL)
            return proto__d_err(x->d, at, PROTO_ENOMEM, "out of memory");
        cc->capcloud = n;
    }
    size_t vk = 0;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *it;
        crdt_dot dot;
        if (!proto__d_tuple(x->d, &arr[i], 2, &it, "cloud entry is [oi, counter]")
            || !dec_oi(x, &it[0], &dot.origin) || !dec_counter(x, &it[1], &dot.counter))
            return false;
        if (i > 0 && crdt_dot_cmp(&cc->cloud[i - 1], &dot) >= 0)
            return proto__d_err(x->d, &arr[i], PROTO_ENONCANON, "cloud must be sorted, unique");
        /* vv and cloud are both sorted by origin: one merge pass, not a search per dot
         * (a hostile message could hold a million of each) */
        while (vk < cc->nvv && crdt_origin_cmp(&cc->vv[vk].origin, &dot.origin) < 0)
            vk++;
        uint64_t vmax = 0;
        if (vk < cc->nvv && crdt_origin_cmp(&cc->vv[vk].origin, &dot.origin) == 0)
            vmax = cc->vv[vk].max;
        if (vmax == UINT64_MAX || dot.counter <= vmax + 1)
            return proto__d_err(x->d, &arr[i], PROTO_ENONCANON,
                "a cloud dot must lie beyond its origin's vv max + 1");
        cc->cloud[i] = dot;
        cc->ncloud = i + 1;
    }
    return true;
}

/* One field [name, type, entries]: its name after prev_name (strictly, by bytes), at least one
 * entry, each appended to s in canonical order. */
static bool dec_field(
    struct dec *x, const msgpack_object *fo, const msgpack_object **prev_name, crdt_scope *s)
{
    proto__d *d = x->d;
    const msgpack_object *it, *items;
    proto_bytes name;
    uint64_t type;
    size_t nit;
    if (!proto__d_tuple(d, fo, 3, &it, "field is [name, type, entries]")
        || !proto__d_str(d, &it[0], CRDT_FIELD_MAX, &name, "field name must be str <= 64")
        || !proto__d_uint(d, &it[1], CRDT_TIMELINE, &type, "field type must be 1..4")
        || !proto__d_arr(
            d, &it[2], CRDT_ENTRIES_MAX, &items, &nit, "field entries must be an array"))
        return false;
    if (type == 0 || name.len == 0 || memchr(name.p, 0, name.len) != NULL)
        return proto__d_err(d, fo, PROTO_EVALUE, "field needs a name (no NUL) and type 1..4");
    if (nit == 0)
        return proto__d_err(d, &it[2], PROTO_ENONCANON, "a field with no entries is not encoded");
    if (*prev_name != NULL) {
        proto_bytes pn = { (const uint8_t *)(*prev_name)->via.str.ptr, (*prev_name)->via.str.size };
        size_t m = pn.len < name.len ? pn.len : name.len;
        int c = memcmp(pn.p, name.p, m);
        if (c > 0 || (c == 0 && pn.len >= name.len))
            return proto__d_err(d, fo, PROTO_ENONCANON, "fields must be sorted by name, unique");
    }
    *prev_name = &it[0];
    for (size_t k = 0; k < nit; k++) {
        crdt_entry e;
        memset(&e, 0, sizeof e);
        e.field = (crdt_bytes) { name.p, name.len };
        e.type = (crdt_type)type;
        if (!dec_entry(x, &items[k], e.type, &e))
            return false;
        crdt_err ce = crdt_scope_append(s, &e);
        if (ce != CRDT_OK)
            return proto__d_err(d, &items[k], crdt_to_proto(ce),
                ce == CRDT_EORDER ? "entries must be in canonical order"
                                  : "entry rejected by the CRDT core");
    }
    return true;
}

proto_err proto_scope_decode(const uint8_t *msg, size_t len, const proto_limits *lim,
    const crdt_mem *mem, crdt_scope **out, proto_diag *diag)
{
    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    if (mem == NULL)
        mem = crdt_mem_default();
    proto__d d;
    const msgpack_object *f, *origin_arr, *vv, *cl, *fl;
    size_t norigins, nvv, ncl, nfl;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, PROTO_K_SCOPE, 6, &f, diag);
    if (err != PROTO_OK)
        return err;
    crdt_origin *origins = NULL;
    bool *used = NULL;
    crdt_scope *s = NULL;
    crdt_cc cc;
    crdt_cc_init(&cc, mem);
    if (!proto__d_arr(&d, &f[2], SIZE_MAX, &origin_arr, &norigins, "origins must be an array")
        || !proto__d_arr(&d, &f[3], SIZE_MAX, &vv, &nvv, "vv must be an array")
        || !proto__d_arr(&d, &f[4], SIZE_MAX, &cl, &ncl, "cloud must be an array")
        || !proto__d_arr(&d, &f[5], SIZE_MAX, &fl, &nfl, "fields must be an array"))
        goto fail;
    origins = proto__calloc(norigins, sizeof *origins);
    used = proto__calloc(norigins, sizeof *used);
    if (origins == NULL || used == NULL) {
        proto__d_err(&d, &f[2], PROTO_ENOMEM, "out of memory");
        goto fail;
    }
    struct dec x = { &d, origins, norigins, used };
    if (!dec_origins(&d, origin_arr, norigins, origins) || !dec_vv(&x, &f[3], vv, nvv, mem, &cc)
        || !dec_cloud(&x, &f[4], cl, ncl, mem, &cc))
        goto fail;
    crdt_err ce = crdt_scope_new(mem, &s);
    if (ce != CRDT_OK) {
        proto__d_err(&d, &f[5], crdt_to_proto(ce), "could not create the scope");
        goto fail;
    }
    const msgpack_object *prev_name = NULL;
    for (size_t i = 0; i < nfl; i++)
        if (!dec_field(&x, &fl[i], &prev_name, s))
            goto fail;
    for (size_t i = 0; i < norigins; i++)
        if (!used[i]) {
            proto__d_err(
                &d, &origin_arr[i], PROTO_ENONCANON, "origin table lists an unused origin");
            goto fail;
        }
    ce = crdt_scope_set_cc(s, &cc);
    if (ce != CRDT_OK) {
        proto__d_err(
            &d, &f[4], crdt_to_proto(ce), "an entry's dot is not covered by the causal context");
        goto fail;
    }
    proto__d_close(&d);
    crdt_cc_fini(&cc);
    free(origins);
    free(used);
    *out = s;
    return PROTO_OK;
fail:
    crdt_cc_fini(&cc);
    free(origins);
    free(used);
    crdt_scope_free(s);
    return proto__d_fail(&d, diag);
}
