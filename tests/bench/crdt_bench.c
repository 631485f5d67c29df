/*
 * crdt-bench: merges per second and delta sizes for each CRDT type, on a realistic case scope
 * of 12 fields (9 registers, a set of skills, an hours counter written at 3 partners, and a
 * timeline of 20 events). Synthetic data only. A benchmark, not a test: it prints figures.
 *
 *   build/tests/bench/crdt-bench [ROUNDS]      (default 20000 deltas per type)
 *
 * "encoded bytes" is the delta's canonical SCOPE encoding (proto/PROTOCOL.md), before the
 * envelope (header, padding, encryption) that proto-bench measures.
 * "delta merge" joins one operator edit (a delta) into the full scope state, the ingest path
 * of a node (in batches of 200 edits per case, so the case keeps a realistic size); "state merge"
 * joins two whole diverged replicas, the anti-entropy path.
 */
#define _POSIX_C_SOURCE 200809L
#include "crdt/crdt.h"

#include <proto/proto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        crdt_err err_ = (call);                                                                    \
        if (err_ != CRDT_OK) {                                                                     \
            fprintf(stderr, "crdt-bench: %s failed: %s\n", #call, crdt_strerror(err_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static crdt_origin origin_of(int k)
{
    crdt_origin o;
    memset(o.b, 0x10 + k, sizeof(o.b));
    return o;
}

/* The origin of author k's counter entries (a node derives it from the author and the field
 * with proto_counter_origin; crdt/ has no hash, and any origin apart from the author's will
 * do here). */
static crdt_origin counter_origin_of(int k)
{
    crdt_origin o;
    memset(o.b, 0x60 + k, sizeof(o.b));
    return o;
}

static uint64_t wall = 1767225600000;

static crdt_hlc next_hlc(crdt_hlc *clock)
{
    crdt_hlc h;
    CHECK(crdt_hlc_send(clock, ++wall, &h));
    return h;
}

static const char *const registers[][2] = {
    { "nome", "Amina" },
    { "cognome", "Esempio" },
    { "data_nascita", "1994-03-12" },
    { "sesso", "F" },
    { "paese_nascita", "SEN" },
    { "cittadinanza", "SEN" },
    { "lingua_madre", "wol" },
    { "livello", "A2" },
    { "permesso_scadenza", "2027-06-30" },
};
#define NREG (sizeof(registers) / sizeof(registers[0]))
#define BATCH 200 /* edits per case before starting again from the base case */

/* The realistic 12-field scope, written by three partners. */
static crdt_scope *make_case(void)
{
    crdt_scope *s;
    CHECK(crdt_scope_new(NULL, &s));
    crdt_hlc clock = { 0, 0 };
    crdt_origin o0 = origin_of(0);
    for (size_t i = 0; i < NREG; i++) {
        crdt_hlc h = next_hlc(&clock);
        CHECK(crdt_register_set(
            s, NULL, &o0, &h, registers[i][0], registers[i][1], strlen(registers[i][1])));
    }
    const char *skills[] = { "cucina", "sartoria", "magazzino", "guida-b", "informatica-base",
        "assistenza-anziani" };
    for (size_t i = 0; i < 6; i++)
        CHECK(crdt_set_add(s, NULL, &o0, "competenze", skills[i], strlen(skills[i])));
    for (int k = 0; k < 3; k++) {
        crdt_origin o = counter_origin_of(k);
        CHECK(crdt_counter_add(s, NULL, &o, "ore_frequenza", 10 + k));
    }
    for (int i = 0; i < 20; i++) {
        crdt_hlc h = next_hlc(&clock);
        char ev[96];
        int n = snprintf(
            ev, sizeof(ev), "{\"tipo\":\"colloquio\",\"partner\":\"cpia-1\",\"n\":%d}", i);
        crdt_origin o = origin_of(i % 3);
        CHECK(crdt_timeline_add(s, NULL, &o, &h, "eventi", ev, (size_t)n, NULL));
    }
    return s;
}

typedef enum op { OP_REGISTER, OP_SET, OP_COUNTER, OP_TIMELINE, OP_COUNT } op;
static const char *const op_names[]
    = { "register write", "set add", "counter add", "timeline event" };

/* One operator edit of the given kind at `writer`, as a delta. */
static void edit(crdt_scope *s, crdt_scope *delta, op kind, int i, crdt_hlc *clock)
{
    crdt_origin o = origin_of(1);
    char buf[64];
    int n;
    crdt_hlc h = next_hlc(clock);
    switch (kind) {
    case OP_REGISTER:
        n = snprintf(buf, sizeof(buf), "A%d", i % 7);
        CHECK(crdt_register_set(s, delta, &o, &h, "livello", buf, (size_t)n));
        break;
    case OP_SET:
        n = snprintf(buf, sizeof(buf), "skill-%d", i % 11);
        CHECK(crdt_set_add(s, delta, &o, "competenze", buf, (size_t)n));
        break;
    case OP_COUNTER: {
        crdt_origin co = counter_origin_of(1);
        CHECK(crdt_counter_add(s, delta, &co, "ore_frequenza", 2));
        break;
    }
    case OP_TIMELINE:
        n = snprintf(buf, sizeof(buf), "{\"tipo\":\"lezione\",\"n\":%d}", i);
        CHECK(crdt_timeline_add(s, delta, &o, &h, "eventi", buf, (size_t)n, NULL));
        break;
    case OP_COUNT:
        break;
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    if (rounds <= 0) {
        fprintf(stderr, "usage: crdt-bench [ROUNDS > 0]\n");
        return 1;
    }
    crdt_scope *base = make_case();
    crdt_stats st;
    crdt_scope_stats(base, &st);
    printf("scope: %zu fields, %zu entries, %zu payload bytes, context %zu origins + %zu dots\n",
        st.fields, st.entries, st.payload_bytes, st.vv_entries, st.cloud_dots);
    printf("%-16s %14s %12s %14s %16s %14s\n", "delta merge", "merges/s", "delta entries",
        "context dots", "payload bytes", "encoded bytes");

    for (op kind = 0; kind < OP_COUNT; kind++) {
        /* The writer makes BATCH deltas on a fresh copy of the case, the reader ingests them;
         * repeated until `rounds` deltas, so the case stays the size a real one has (a
         * timeline of a few hundred events, not `rounds`). Only the joins are timed. */
        size_t entries = 0, dots = 0, bytes = 0, wire = 0;
        double dt = 0;
        crdt_scope *deltas[BATCH];
        for (int done = 0; done < rounds; done += BATCH) {
            int n = rounds - done < BATCH ? rounds - done : BATCH;
            crdt_scope *writer, *reader;
            CHECK(crdt_scope_clone(base, &writer));
            CHECK(crdt_scope_clone(base, &reader));
            crdt_hlc clock = { wall, 0 };
            for (int i = 0; i < n; i++) {
                CHECK(crdt_scope_new(NULL, &deltas[i]));
                edit(writer, deltas[i], kind, done + i, &clock);
                crdt_scope_stats(deltas[i], &st);
                proto_buf enc = { NULL, 0 };
                if (proto_scope_encode(deltas[i], &enc) != PROTO_OK) {
                    fprintf(stderr, "crdt-bench: cannot encode a delta\n");
                    return 1;
                }
                wire += enc.len;
                proto_buf_free(&enc);
                entries += st.entries;
                dots += st.vv_entries + st.cloud_dots;
                bytes += st.payload_bytes;
            }
            double t0 = now_s();
            for (int i = 0; i < n; i++)
                CHECK(crdt_scope_join(reader, deltas[i]));
            dt += now_s() - t0;
            if (!crdt_scope_equal(reader, writer)) {
                fprintf(stderr, "crdt-bench: %s: reader did not converge\n", op_names[kind]);
                return 1;
            }
            for (int i = 0; i < n; i++)
                crdt_scope_free(deltas[i]);
            crdt_scope_free(writer);
            crdt_scope_free(reader);
        }
        printf("%-16s %14.0f %12.1f %14.1f %16.1f %14.1f\n", op_names[kind], rounds / dt,
            (double)entries / rounds, (double)dots / rounds, (double)bytes / rounds,
            (double)wire / rounds);
    }

    /* State merge: two replicas diverge by 5 edits of each kind, then join whole states. */
    crdt_scope *a, *b;
    CHECK(crdt_scope_clone(base, &a));
    CHECK(crdt_scope_clone(base, &b));
    crdt_hlc clock = { wall, 0 };
    for (op kind = 0; kind < OP_COUNT; kind++)
        for (int i = 0; i < 5; i++)
            edit(a, NULL, kind, i, &clock);
    int srounds = rounds / 4 > 0 ? rounds / 4 : 1;
    double t0 = now_s();
    for (int i = 0; i < srounds; i++) {
        crdt_scope *m;
        CHECK(crdt_scope_clone(b, &m));
        CHECK(crdt_scope_join(m, a));
        crdt_scope_free(m);
    }
    double dt = now_s() - t0;
    crdt_scope_stats(a, &st);
    printf("state merge      %14.0f  (clone + join of two %zu-entry replicas)\n", srounds / dt,
        st.entries);
    crdt_scope_free(a);
    crdt_scope_free(b);
    crdt_scope_free(base);
    return 0;
}
