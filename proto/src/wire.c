/*
 * wire.c - msgpack writing (sizes counted before writing) and typed reading of pre-scanned
 * messages through msgpack_unpack_next.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
#define PROTO__KNAME(name, num, text) [num] = text,
    PROTO_KINDS(PROTO__KNAME)
#undef PROTO__KNAME
};

const char *proto_kind_name(unsigned kind)
{
    if (kind < sizeof kind_names / sizeof kind_names[0] && kind_names[kind] != NULL)
        return kind_names[kind];
    return "unknown";
}

static const char *const err_text[] = {
#define PROTO__ETEXT(name, text) [name] = text,
    PROTO_ERRORS(PROTO__ETEXT)
#undef PROTO__ETEXT
};

const char *proto_strerror(proto_err err)
{
    if ((unsigned)err < PROTO_ERR_COUNT)
        return err_text[err];
    return "unknown proto error";
}

void proto_buf_free(proto_buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

void *proto__calloc(size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    return calloc(n, size);
}

void proto__be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                   */

static int write_cb(void *data, const char *buf, size_t len)
{
    proto__w *w = data;
    if (w->p != NULL) {
        if (len > w->cap - w->len)
            return -1; /* cannot happen: the counting pass sized the buffer */
        memcpy(w->p + w->len, buf, len);
    }
    w->len += len;
    return 0;
}

void proto__w_raw(proto__w *w, const void *p, size_t n)
{
    (void)write_cb(w, p, n); /* fails only past the size the counting pass found */
}

proto_err proto__encode(proto__enc_fn fn, const void *arg, proto_buf *out)
{
    if (out == NULL)
        return PROTO_EINVAL;
    out->p = NULL;
    out->len = 0;
    proto__w w = { .p = NULL, .cap = 0, .len = 0 };
    msgpack_packer_init(&w.pk, &w, write_cb);
    fn(&w, arg);
    size_t need = w.len;
    uint8_t *p = malloc(need == 0 ? 1 : need);
    if (p == NULL)
        return PROTO_ENOMEM;
    w.p = p;
    w.cap = need;
    w.len = 0;
    fn(&w, arg);
    if (w.len != need) {
        free(p);
        return PROTO_EINVAL; /* an encoder that is not a function of its argument: a bug */
    }
    out->p = p;
    out->len = need;
    return PROTO_OK;
}

void proto__w_head(proto__w *w, size_t nfields, unsigned kind)
{
    msgpack_pack_array(&w->pk, nfields);
    msgpack_pack_uint64(&w->pk, PROTO_VERSION);
    msgpack_pack_uint64(&w->pk, kind);
}

void proto__w_array(proto__w *w, size_t n)
{
    msgpack_pack_array(&w->pk, n);
}

void proto__w_uint(proto__w *w, uint64_t v)
{
    msgpack_pack_uint64(&w->pk, v);
}

void proto__w_bool(proto__w *w, bool v)
{
    if (v)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void proto__w_bin(proto__w *w, const void *p, size_t n)
{
    msgpack_pack_bin(&w->pk, n);
    if (n > 0)
        msgpack_pack_bin_body(&w->pk, p, n);
}

void proto__w_str(proto__w *w, const void *p, size_t n)
{
    msgpack_pack_str(&w->pk, n);
    if (n > 0)
        msgpack_pack_str_body(&w->pk, p, n);
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                   */

/* Encoded size of an item in its canonical form (the pre-scan guarantees that form). */
static size_t len_hdr(size_t n, bool str)
{
    if (str && n < 32)
        return 1;
    if (n < 256)
        return 2;
    if (n < 65536)
        return 3;
    return 5;
}

static size_t item_size(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: {
        uint64_t v = o->via.u64;
        return v < 128 ? 1 : v < 256 ? 2 : v < 65536 ? 3 : v <= UINT32_MAX ? 5 : 9;
    }
    case MSGPACK_OBJECT_BOOLEAN:
        return 1;
    case MSGPACK_OBJECT_STR:
        return len_hdr(o->via.str.size, true) + o->via.str.size;
    case MSGPACK_OBJECT_BIN:
        return len_hdr(o->via.bin.size, false) + o->via.bin.size;
    case MSGPACK_OBJECT_ARRAY:
        return o->via.array.size < 16 ? 1 : o->via.array.size < 65536 ? 3 : 5;
    default:
        return 1;
    }
}

/* Offset of target in a pre-order walk from o, adding to *off; true once found. */
static bool locate(const msgpack_object *o, const msgpack_object *target, size_t *off, int depth)
{
    if (o == target)
        return true;
    *off += item_size(o);
    if (o->type == MSGPACK_OBJECT_ARRAY && depth < PROTO_MAX_DEPTH_LIMIT) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (locate(&o->via.array.ptr[i], target, off, depth + 1))
                return true;
    }
    return false;
}

proto_err proto__d_open(proto__d *d, const uint8_t *msg, size_t len, const proto_limits *lim,
    size_t base, unsigned kind, size_t nfields, const msgpack_object **fields, proto_diag *diag)
{
    memset(d, 0, sizeof *d);
    d->msg = msg;
    d->len = len;
    d->base = base;
    proto_err err = proto__scan(msg, len, lim, base, diag);
    if (err != PROTO_OK)
        return err;
    msgpack_unpacked_init(&d->u);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&d->u, (const char *)msg, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(&d->u);
        if (diag != NULL) {
            diag->offset = base + off;
            diag->reason = "msgpack-c rejected a pre-scanned message";
        }
        return ur == MSGPACK_UNPACK_NOMEM_ERROR ? PROTO_ENOMEM : PROTO_EMSGPACK;
    }
    d->open = true;
    const msgpack_object *root = &d->u.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 2) {
        proto__d_err(d, root, PROTO_ESHAPE, "a message is an array starting [version, kind]");
        return proto__d_fail(d, diag);
    }
    const msgpack_object *f = root->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        proto__d_err(d, &f[0], PROTO_ESHAPE, "version must be an unsigned integer");
        return proto__d_fail(d, diag);
    }
    if (f[0].via.u64 != PROTO_VERSION) {
        proto__d_err(
            d, &f[0], PROTO_EVERSION, "protocol version is not " PROTO__STR(PROTO_VERSION));
        return proto__d_fail(d, diag);
    }
    if (f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        proto__d_err(d, &f[1], PROTO_ESHAPE, "kind must be an unsigned integer");
        return proto__d_fail(d, diag);
    }
    if (kind != 0 && f[1].via.u64 != kind) {
        proto__d_err(d, &f[1], PROTO_EKIND, "message kind is not the one this decoder reads");
        return proto__d_fail(d, diag);
    }
    if (nfields != 0 && root->via.array.size != nfields) {
        proto__d_err(d, root, PROTO_ESHAPE, "wrong number of fields for this message kind");
        return proto__d_fail(d, diag);
    }
    *fields = f;
    return PROTO_OK;
}

void proto__d_close(proto__d *d)
{
    if (d->open)
        msgpack_unpacked_destroy(&d->u);
    d->open = false;
}

bool proto__d_err(proto__d *d, const msgpack_object *o, proto_err err, const char *reason)
{
    if (d->err == PROTO_OK) {
        d->err = err;
        d->bad = o;
        d->reason = reason;
    }
    return false;
}

proto_err proto__d_fail(proto__d *d, proto_diag *diag)
{
    proto_err err = d->err == PROTO_OK ? PROTO_ESHAPE : d->err;
    if (diag != NULL) {
        size_t off = 0;
        if (d->open && d->bad != NULL && !locate(&d->u.data, d->bad, &off, 0))
            off = 0;
        diag->offset = d->base + off;
        diag->reason = d->reason != NULL ? d->reason : "malformed message";
    }
    proto__d_close(d);
    return err;
}

bool proto__d_uint(
    proto__d *d, const msgpack_object *o, uint64_t max, uint64_t *v, const char *what)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    if (o->via.u64 > max)
        return proto__d_err(d, o, PROTO_EVALUE, what);
    *v = o->via.u64;
    return true;
}

bool proto__d_bool(proto__d *d, const msgpack_object *o, bool *v, const char *what)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    *v = o->via.boolean;
    return true;
}

bool proto__d_fixed(proto__d *d, const msgpack_object *o, size_t n, uint8_t *out, const char *what)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    memcpy(out, o->via.bin.ptr, n);
    return true;
}

bool proto__d_bin(
    proto__d *d, const msgpack_object *o, size_t max, proto_bytes *out, const char *what)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    if (o->via.bin.size > max)
        return proto__d_err(d, o, PROTO_ELIMIT, what);
    out->p = (const uint8_t *)o->via.bin.ptr;
    out->len = o->via.bin.size;
    return true;
}

bool proto__d_str(
    proto__d *d, const msgpack_object *o, size_t max, proto_bytes *out, const char *what)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    if (o->via.str.size > max)
        return proto__d_err(d, o, PROTO_ELIMIT, what);
    out->p = (const uint8_t *)o->via.str.ptr;
    out->len = o->via.str.size;
    return true;
}

bool proto__d_arr(proto__d *d, const msgpack_object *o, size_t max, const msgpack_object **items,
    size_t *n, const char *what)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    if (o->via.array.size > max)
        return proto__d_err(d, o, PROTO_ELIMIT, what);
    *items = o->via.array.ptr;
    *n = o->via.array.size;
    return true;
}

bool proto__d_tuple(
    proto__d *d, const msgpack_object *o, size_t n, const msgpack_object **items, const char *what)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
        return proto__d_err(d, o, PROTO_ESHAPE, what);
    *items = o->via.array.ptr;
    return true;
}

proto_err proto_peek(
    const uint8_t *msg, size_t len, const proto_limits *lim, unsigned *kind, proto_diag *diag)
{
    if (kind == NULL)
        return PROTO_EINVAL;
    proto__d d;
    const msgpack_object *f;
    proto_err err = proto__d_open(&d, msg, len, lim, 0, 0, 0, &f, diag);
    if (err != PROTO_OK)
        return err;
    *kind = (unsigned)(f[1].via.u64 > 0xffff ? 0 : f[1].via.u64);
    proto__d_close(&d);
    return PROTO_OK;
}
