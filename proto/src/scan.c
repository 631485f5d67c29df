/*
 * scan.c - the pre-scan that runs before msgpack-c sees a single byte.
 *
 * msgpack-c 4.0.0 allocates whatever an array header claims before any element arrives
 * (ARCHITECTURE.md, house rule 2). This pass walks the encoding without allocating and rejects:
 * lengths and counts larger than the bytes that remain (counting every element still owed by every
 * open array), nesting beyond max_depth, more than max_items items, msgpack types patto never
 * sends, and non-minimal forms. After it, msgpack-c allocates at most one msgpack_object per
 * input byte.
 */
#include "internal.h"

#include <string.h>

void proto_limits_default(proto_limits *l)
{
    if (l == NULL)
        return;
    l->max_message = PROTO_MAX_MESSAGE_DEFAULT;
    l->max_depth = PROTO_MAX_DEPTH_DEFAULT;
    l->max_items = PROTO_MAX_ITEMS_DEFAULT;
}

void proto__limits(const proto_limits *in, proto_limits *out)
{
    if (in == NULL) {
        proto_limits_default(out);
        return;
    }
    *out = *in;
    if (out->max_depth > PROTO_MAX_DEPTH_LIMIT)
        out->max_depth = PROTO_MAX_DEPTH_LIMIT;
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static proto_err fail(proto_diag *diag, size_t off, proto_err err, const char *reason)
{
    if (diag != NULL) {
        diag->offset = off;
        diag->reason = reason;
    }
    return err;
}

proto_err proto__scan(
    const uint8_t *msg, size_t len, const proto_limits *lim_in, size_t base, proto_diag *diag)
{
    proto_limits lim;
    proto__limits(lim_in, &lim);
    if (msg == NULL && len > 0)
        return PROTO_EINVAL;
    if (len > lim.max_message)
        return fail(diag, base, PROTO_ETOOBIG, "message longer than max_message");
    if (len == 0)
        return fail(diag, base, PROTO_ETRUNC, "empty message");

    /* remain[d]: items still owed by the array open at depth d; remain[0] is the top level. */
    uint64_t remain[PROTO_MAX_DEPTH_LIMIT + 1];
    unsigned depth = 0;
    uint64_t pending = 1; /* sum of remain[] */
    size_t items = 0;
    size_t off = 0;
    remain[0] = 1;

    while (pending > 0) {
        if (off >= len)
            return fail(diag, base + off, PROTO_ETRUNC, "message ends before its last item");
        size_t at = off;
        uint8_t b = msg[off];
        size_t hdr = 1;     /* header bytes */
        uint64_t body = 0;  /* payload bytes after the header */
        uint64_t count = 0; /* elements of an array */
        bool is_array = false;
        if (++items > lim.max_items)
            return fail(diag, base + at, PROTO_EITEMS, "more items than max_items");

        if (b <= 0x7f) {
            /* positive fixint */
        } else if (b >= 0x90 && b <= 0x9f) {
            is_array = true;
            count = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            body = b & 0x1f;
        } else if (b == 0xc2 || b == 0xc3) {
            /* false, true */
        } else if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
            hdr = 1 + ((size_t)1 << (b - 0xc4));
        } else if (b >= 0xcc && b <= 0xcf) { /* uint 8/16/32/64 */
            hdr = 1;
            body = (uint64_t)1 << (b - 0xcc);
        } else if (b >= 0xd9 && b <= 0xdb) { /* str 8/16/32 */
            hdr = 1 + ((size_t)1 << (b - 0xd9));
        } else if (b == 0xdc || b == 0xdd) { /* array 16/32 */
            hdr = b == 0xdc ? 3 : 5;
            is_array = true;
        } else if (b == 0xc0) {
            return fail(diag, base + at, PROTO_EMSGPACK, "nil is never used by patto");
        } else if (b == 0xc1) {
            return fail(diag, base + at, PROTO_EMSGPACK, "0xc1 is not a msgpack type");
        } else if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf) {
            return fail(diag, base + at, PROTO_EMSGPACK, "maps are never used by patto");
        } else if (b == 0xca || b == 0xcb) {
            return fail(diag, base + at, PROTO_EMSGPACK, "floats are never used by patto");
        } else if (b >= 0xd0 && b <= 0xd3) {
            return fail(diag, base + at, PROTO_EMSGPACK, "signed integers are never used by patto");
        } else if (b >= 0xe0) {
            return fail(
                diag, base + at, PROTO_EMSGPACK, "negative fixints are never used by patto");
        } else {
            return fail(diag, base + at, PROTO_EMSGPACK, "ext types are never used by patto");
        }

        if (hdr > len - off)
            return fail(diag, base + at, PROTO_ETRUNC, "item header cut short");
        uint64_t n = be(msg + off + 1, hdr - 1);
        off += hdr;
        size_t left = len - off;

        if (b >= 0xcc && b <= 0xcf) {
            if (body > left)
                return fail(diag, base + at, PROTO_ETRUNC, "integer cut short");
            uint64_t v = be(msg + off, (size_t)body);
            static const uint64_t minimum[4] = { 0x80, 0x100, 0x10000, UINT64_C(0x100000000) };
            if (v < minimum[b - 0xcc])
                return fail(diag, base + at, PROTO_ENONCANON, "integer not in its shortest form");
        } else if (b >= 0xc4 && b <= 0xc6) {
            static const uint64_t minimum[3] = { 0, 0x100, 0x10000 };
            if (n < minimum[b - 0xc4])
                return fail(diag, base + at, PROTO_ENONCANON, "bin length not in shortest form");
            body = n;
        } else if (b >= 0xd9 && b <= 0xdb) {
            static const uint64_t minimum[3] = { 32, 0x100, 0x10000 };
            if (n < minimum[b - 0xd9])
                return fail(diag, base + at, PROTO_ENONCANON, "str length not in shortest form");
            body = n;
        } else if (b == 0xdc || b == 0xdd) {
            if (n < (b == 0xdc ? 16u : 0x10000u))
                return fail(diag, base + at, PROTO_ENONCANON, "array count not in shortest form");
            count = n;
        }

        if (body > left)
            return fail(diag, base + at, PROTO_ETRUNC, "length claims more bytes than remain");
        off += (size_t)body;

        /* This item settles one owed element. */
        remain[depth]--;
        pending--;
        if (is_array) {
            /* Every element owed by every open array needs at least one byte. */
            if (count > len - off || pending + count > len - off)
                return fail(diag, base + at, PROTO_ETRUNC,
                    "array count claims more elements than bytes remain");
            if (count > 0) {
                if (depth + 1 > lim.max_depth)
                    return fail(
                        diag, base + at, PROTO_EDEPTH, "arrays nested deeper than max_depth");
                remain[++depth] = count;
                pending += count;
            } else if (depth + 1 > lim.max_depth) {
                return fail(diag, base + at, PROTO_EDEPTH, "arrays nested deeper than max_depth");
            }
        }
        while (depth > 0 && remain[depth] == 0)
            depth--;
    }
    if (off != len)
        return fail(diag, base + off, PROTO_ETRAILING, "bytes after the end of the message");
    return PROTO_OK;
}
