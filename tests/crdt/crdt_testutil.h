/*
 * crdt_testutil.h - helpers shared by the crdt.* tests: origins, dots, a check of a scope's
 * structural invariants (SPEC.md I4-I7) through the public API, and a dump for failures.
 * Header-only: every function is static inline.
 */
#ifndef PATTO_CRDT_TESTUTIL_H
#define PATTO_CRDT_TESTUTIL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "crdt/crdt.h"

/* Origin i: 31 equal bytes then i, so ties must be broken on the last byte. */
static inline crdt_origin tu_origin(uint8_t i)
{
    crdt_origin o;
    memset(o.b, 0x5a, sizeof(o.b));
    o.b[CRDT_ORIGIN_LEN - 1] = i;
    return o;
}

/* A counter origin for (self, field) (SPEC.md I8): a deterministic 32-byte mix of both, never
 * self. patto's nodes use proto_counter_origin (a BLAKE2b hash); crdt/ is libc only, so its
 * tests use this splitmix64-based mix, which is all the CRDT laws need. */
static inline uint64_t tu_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline crdt_origin tu_counter_origin(const crdt_origin *self, const char *field)
{
    uint64_t lane[4] = { UINT64_C(0x7061747463747231), UINT64_C(0x636f756e74657221),
        UINT64_C(0x9e3779b97f4a7c15), UINT64_C(0xd1b54a32d192ed03) };
    size_t flen = strlen(field);
    size_t total = CRDT_ORIGIN_LEN + 8 + flen;
    for (size_t i = 0; i < total; i++) {
        uint8_t b;
        if (i < CRDT_ORIGIN_LEN)
            b = self->b[i];
        else if (i < CRDT_ORIGIN_LEN + 8)
            b = (uint8_t)((uint64_t)flen >> (8 * (i - CRDT_ORIGIN_LEN)));
        else
            b = (uint8_t)field[i - CRDT_ORIGIN_LEN - 8];
        uint64_t *l = &lane[i % 4];
        *l = tu_mix64(*l ^ ((uint64_t)b << (8 * ((i / 4) % 8))) ^ (uint64_t)i);
    }
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 4; k++)
            lane[k] = tu_mix64(lane[k] ^ lane[(k + 1) % 4] ^ (uint64_t)(r * 4 + k));
    crdt_origin out;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 8; j++)
            out.b[8 * k + j] = (uint8_t)(lane[k] >> (8 * j));
    return out;
}

/* crdt_counter_add by node `self`: its entry's dot is self's counter origin for the field, as a
 * node makes it. NULL self or field are passed through (for the argument checks). */
static inline crdt_err tu_counter_add(
    crdt_scope *s, crdt_scope *delta, const crdt_origin *self, const char *field, int64_t amount)
{
    if (self == NULL || field == NULL)
        return crdt_counter_add(s, delta, self, field, amount);
    crdt_origin co = tu_counter_origin(self, field);
    return crdt_counter_add(s, delta, &co, field, amount);
}

static inline crdt_dot tu_dot(uint8_t origin, uint64_t counter)
{
    crdt_dot d;
    d.origin = tu_origin(origin);
    d.counter = counter;
    return d;
}

static inline crdt_hlc tu_hlc(uint64_t wall, uint16_t logical)
{
    crdt_hlc h = { wall, logical };
    return h;
}

static inline bool tu_bytes_eq(crdt_bytes b, const void *p, size_t len)
{
    return b.len == len && (len == 0 || memcmp(b.p, p, len) == 0);
}

/* True when the context is canonical (I4): vector sorted by origin with max >= 1, cloud
 * sorted and strictly beyond vv max + 1 of its origin. */
static inline bool tu_cc_canonical(const crdt_cc *cc, char *why, size_t whylen)
{
    for (size_t i = 0; i < cc->nvv; i++) {
        if (cc->vv[i].max == 0) {
            snprintf(why, whylen, "vv entry %zu has max 0", i);
            return false;
        }
        if (i > 0 && crdt_origin_cmp(&cc->vv[i - 1].origin, &cc->vv[i].origin) >= 0) {
            snprintf(why, whylen, "vv not strictly sorted at %zu", i);
            return false;
        }
    }
    for (size_t i = 0; i < cc->ncloud; i++) {
        if (i > 0 && crdt_dot_cmp(&cc->cloud[i - 1], &cc->cloud[i]) >= 0) {
            snprintf(why, whylen, "cloud not strictly sorted at %zu", i);
            return false;
        }
        uint64_t vmax = crdt_cc_vv_max(cc, &cc->cloud[i].origin);
        if (cc->cloud[i].counter <= vmax + 1) {
            snprintf(why, whylen,
                "cloud dot %zu (counter %" PRIu64 ") not beyond vv max %" PRIu64 " + 1", i,
                cc->cloud[i].counter, vmax);
            return false;
        }
    }
    return true;
}

/* Structural invariants of a scope: I4 (canonical context), I5 (entries strictly sorted),
 * I6 (covered by the context), I7 (one type per field, well-formed payloads). */
static inline bool tu_scope_invariants(const crdt_scope *s, char *why, size_t whylen)
{
    const crdt_cc *cc = crdt_scope_cc(s);
    if (cc == NULL) {
        snprintf(why, whylen, "no context");
        return false;
    }
    if (!tu_cc_canonical(cc, why, whylen))
        return false;
    size_t n = crdt_scope_entry_count(s);
    crdt_entry prev;
    memset(&prev, 0, sizeof(prev));
    for (size_t i = 0; i < n; i++) {
        crdt_entry e;
        if (crdt_scope_entry_at(s, i, &e) != CRDT_OK) {
            snprintf(why, whylen, "entry_at(%zu) failed", i);
            return false;
        }
        if (i > 0 && crdt_entry_cmp(&prev, &e) >= 0) {
            snprintf(why, whylen, "entries %zu and %zu out of order", i - 1, i);
            return false;
        }
        if (i > 0 && prev.field.len == e.field.len
            && memcmp(prev.field.p, e.field.p, e.field.len) == 0 && prev.type != e.type) {
            snprintf(why, whylen, "field of entry %zu mixes types", i);
            return false;
        }
        if (!crdt_cc_contains(cc, &e.dot)) {
            snprintf(why, whylen, "entry %zu not covered by the context", i);
            return false;
        }
        if (e.field.len == 0 || e.field.len > CRDT_FIELD_MAX) {
            snprintf(why, whylen, "entry %zu has a bad field length", i);
            return false;
        }
        bool ok = true;
        switch (e.type) {
        case CRDT_REGISTER:
            ok = e.elem.len == 0 && e.pos == 0 && e.neg == 0 && !e.redacted;
            break;
        case CRDT_SET:
            ok = e.value.len == 0 && e.pos == 0 && e.neg == 0 && !e.redacted;
            break;
        case CRDT_COUNTER:
            ok = e.elem.len == 0 && e.value.len == 0 && e.pos <= (uint64_t)INT64_MAX
                && e.neg <= (uint64_t)INT64_MAX && !e.redacted;
            break;
        case CRDT_TIMELINE:
            ok = e.elem.len == 0 && e.pos == 0 && e.neg == 0 && (!e.redacted || e.value.len == 0);
            break;
        default:
            ok = false;
        }
        if (!ok) {
            snprintf(why, whylen, "entry %zu has a payload not valid for type %d", i, (int)e.type);
            return false;
        }
        prev = e;
    }
    return true;
}

static inline void tu_print_bytes(FILE *f, crdt_bytes b)
{
    fputc('"', f);
    for (size_t i = 0; i < b.len && i < 24; i++) {
        if (b.p[i] >= 0x20 && b.p[i] < 0x7f && b.p[i] != '"')
            fputc(b.p[i], f);
        else
            fprintf(f, "\\x%02x", b.p[i]);
    }
    fputs(b.len > 24 ? "...\"" : "\"", f);
}

/* Print a scope's entries and context, for failure messages. */
static inline void tu_scope_dump(FILE *f, const char *label, const crdt_scope *s)
{
    fprintf(f, "%s: %zu entries\n", label, crdt_scope_entry_count(s));
    for (size_t i = 0; i < crdt_scope_entry_count(s); i++) {
        crdt_entry e;
        if (crdt_scope_entry_at(s, i, &e) != CRDT_OK)
            break;
        fprintf(f, "  ");
        tu_print_bytes(f, e.field);
        fprintf(f, " t%d elem=", (int)e.type);
        tu_print_bytes(f, e.elem);
        fprintf(f, " dot=(%u,%" PRIu64 ") hlc=(%" PRIu64 ",%u) val=", e.dot.origin.b[31],
            e.dot.counter, e.hlc.wall, e.hlc.logical);
        tu_print_bytes(f, e.value);
        fprintf(
            f, " pos=%" PRIu64 " neg=%" PRIu64 "%s\n", e.pos, e.neg, e.redacted ? " redacted" : "");
    }
    const crdt_cc *cc = crdt_scope_cc(s);
    fprintf(f, "  cc vv:");
    for (size_t i = 0; i < cc->nvv; i++)
        fprintf(f, " %u:%" PRIu64, cc->vv[i].origin.b[31], cc->vv[i].max);
    fprintf(f, " cloud:");
    for (size_t i = 0; i < cc->ncloud; i++)
        fprintf(f, " (%u,%" PRIu64 ")", cc->cloud[i].origin.b[31], cc->cloud[i].counter);
    fprintf(f, "\n");
}

#endif /* PATTO_CRDT_TESTUTIL_H */
