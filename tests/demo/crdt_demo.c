/*
 * crdt-demo: two partner replicas of one case scope edit concurrently while apart, exchange
 * their deltas in opposite orders, and end in the same state. Synthetic data only.
 *
 * This is the demo of the CRDT core that `make demo` runs until the node and the testnet
 * exist. Exit status 0 when the replicas converged, 1 otherwise.
 */
#include "crdt/crdt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        crdt_err err_ = (call);                                                                    \
        if (err_ != CRDT_OK) {                                                                     \
            fprintf(stderr, "crdt-demo: %s failed: %s\n", #call, crdt_strerror(err_));             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct replica {
    const char *name;
    crdt_origin origin;
    /* The origin of this replica's ore_frequenza entries (crdt SPEC.md I8): its own, apart
     * from `origin`. A node computes it with proto_counter_origin; this demo of the CRDT core
     * alone takes a fixed value. */
    crdt_origin hours_origin;
    crdt_hlc clock;
    crdt_scope *state;
} replica;

static uint64_t now_ms = 1767225600000; /* 2026-01-01T00:00:00Z, advanced by hand */

static crdt_hlc tick(replica *r)
{
    crdt_hlc h;
    now_ms += 7;
    CHECK(crdt_hlc_send(&r->clock, now_ms, &h));
    return h;
}

static void set_text(replica *r, crdt_scope *delta, const char *field, const char *v)
{
    crdt_hlc h = tick(r);
    CHECK(crdt_register_set(r->state, delta, &r->origin, &h, field, v, strlen(v)));
}

static void print_scope(const replica *r)
{
    printf("  %s:\n", r->name);
    size_t nf = crdt_scope_field_count(r->state);
    for (size_t i = 0; i < nf; i++) {
        const char *name;
        crdt_type type;
        CHECK(crdt_scope_field_at(r->state, i, &name, &type));
        printf("    %-18s ", name);
        size_t n;
        switch (type) {
        case CRDT_REGISTER: {
            CHECK(crdt_register_count(r->state, name, &n));
            for (size_t k = 0; k < n; k++) {
                crdt_reg_value v;
                CHECK(crdt_register_at(r->state, name, k, &v));
                printf("%s\"%.*s\"",
                    k == 0       ? ""
                        : k == 1 ? "  (conflict, also: "
                                 : ", ",
                    (int)v.value.len, (const char *)v.value.p);
            }
            printf("%s\n", n > 1 ? ")" : "");
            break;
        }
        case CRDT_SET:
            CHECK(crdt_set_count(r->state, name, &n));
            printf("{");
            for (size_t k = 0; k < n; k++) {
                crdt_bytes b;
                CHECK(crdt_set_at(r->state, name, k, &b));
                printf("%s%.*s", k ? ", " : "", (int)b.len, (const char *)b.p);
            }
            printf("}\n");
            break;
        case CRDT_COUNTER: {
            int64_t v;
            CHECK(crdt_counter_value(r->state, name, &v));
            printf("%" PRId64 "\n", v);
            break;
        }
        case CRDT_TIMELINE:
            CHECK(crdt_timeline_count(r->state, name, &n));
            printf("%zu events\n", n);
            for (size_t k = 0; k < n; k++) {
                crdt_event ev;
                CHECK(crdt_timeline_at(r->state, name, k, &ev));
                printf("      %" PRIu64 ".%u  %.*s\n", ev.hlc.wall, (unsigned)ev.hlc.logical,
                    ev.redacted ? 10 : (int)ev.content.len,
                    ev.redacted ? "[redacted]" : (const char *)ev.content.p);
            }
            break;
        }
    }
}

int main(void)
{
    replica a = { .name = "comune-1" }, b = { .name = "cpia-1" };
    memset(a.origin.b, 0xA1, CRDT_ORIGIN_LEN);
    memset(b.origin.b, 0xB2, CRDT_ORIGIN_LEN);
    memset(a.hours_origin.b, 0xA3, CRDT_ORIGIN_LEN);
    memset(b.hours_origin.b, 0xB4, CRDT_ORIGIN_LEN);
    CHECK(crdt_scope_new(NULL, &a.state));
    CHECK(crdt_scope_new(NULL, &b.state));

    /* The comune opens the case; the CPIA receives the first delta. */
    crdt_scope *d0;
    CHECK(crdt_scope_new(NULL, &d0));
    set_text(&a, d0, "livello", "A1");
    CHECK(crdt_counter_add(a.state, d0, &a.hours_origin, "ore_frequenza", 10));
    CHECK(crdt_set_add(a.state, d0, &a.origin, "competenze", "cucina", 6));
    CHECK(crdt_scope_join(b.state, d0));
    printf("after the first sync, both replicas hold:\n");
    print_scope(&b);

    /* Apart, both edit: a conflict on livello, concurrent add and remove, hours at both. */
    crdt_scope *da, *db;
    CHECK(crdt_scope_new(NULL, &da));
    CHECK(crdt_scope_new(NULL, &db));
    set_text(&a, da, "livello", "A2");
    CHECK(crdt_counter_add(a.state, da, &a.hours_origin, "ore_frequenza", 4));
    CHECK(crdt_set_add(a.state, da, &a.origin, "competenze", "cucina", 6));
    crdt_hlc h = tick(&a);
    CHECK(crdt_timeline_add(
        a.state, da, &a.origin, &h, "eventi", "{\"tipo\":\"colloquio\"}", 20, NULL));

    set_text(&b, db, "livello", "A2+");
    CHECK(crdt_counter_add(b.state, db, &b.hours_origin, "ore_frequenza", 12));
    CHECK(crdt_set_remove(b.state, db, "competenze", "cucina", 6));
    CHECK(crdt_set_add(b.state, db, &b.origin, "competenze", "sartoria", 8));
    h = tick(&b);
    CHECK(crdt_timeline_add(
        b.state, db, &b.origin, &h, "eventi", "{\"tipo\":\"test di ingresso\"}", 27, NULL));

    /* Exchange: each applies the other's delta, one of them twice (a duplicate). */
    CHECK(crdt_scope_join(a.state, db));
    CHECK(crdt_scope_join(b.state, da));
    CHECK(crdt_scope_join(b.state, da));
    printf("\nafter concurrent edits and a delta exchange:\n");
    print_scope(&a);
    print_scope(&b);
    bool same = crdt_scope_equal(a.state, b.state);
    printf("\nreplicas equal: %s\n", same ? "yes" : "no");

    /* The CPIA resolves the conflict by writing over both values. */
    crdt_scope *dr;
    CHECK(crdt_scope_new(NULL, &dr));
    set_text(&b, dr, "livello", "A2");
    CHECK(crdt_scope_join(a.state, dr));
    printf("\nafter cpia-1 writes livello=A2 over the conflict:\n");
    print_scope(&a);
    same = same && crdt_scope_equal(a.state, b.state);
    printf("\nreplicas equal: %s\n", same ? "yes" : "no");

    crdt_scope_free(d0);
    crdt_scope_free(da);
    crdt_scope_free(db);
    crdt_scope_free(dr);
    crdt_scope_free(a.state);
    crdt_scope_free(b.state);
    return same ? 0 : 1;
}
