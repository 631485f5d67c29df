/*
 * node.sim: real node engines in one process on the simulation's fake clock and wire (sim.h),
 * deterministic from a seed:
 * - ingest order: headers that arrive beyond a gap are held, and chained once it is filled;
 * - causal waits: a write grantee's delta that arrives before the grant's access entry waits,
 *   then merges;
 * - wants: a body that did not come with its header is asked for after the grace period, and
 *   arrives;
 * - anti-entropy: a node that was partitioned (past the idle timeout) catches up through
 *   version vectors; while it is cut off the convergence check says what it lacks;
 * - clock-ahead waits: a delta stamped beyond [sync] max_clock_ahead_ms of the receiver's
 *   clock waits (its header is stored at once) and merges when the receiver's clock catches up;
 * - a seeded schedule: 3 to 5 nodes, a few hundred random writes and grants (invented names),
 *   random cuts, delays, reordering, duplicates and partitions, then healing: the nodes
 *   converge and no acknowledged write is lost;
 * - forks: a write grantee restored from an old backup forks its own log, and an owner restored
 *   from one forks the access log: every node voids both branches from the fork point and
 *   refuses what rests on a void entry, in any order of arrival;
 * - replay: a seed run twice delivers the same events (the same trace hash), another seed not.
 *
 * SIM_SEED=N runs the seeded schedule for seed N only, SIM_SEEDS=N for seeds 1..N (default: a
 * fixed ten), SIM_OPS=N sets its number of operations; SIM_TEST=name runs one test. A failure
 * prints the seed and the command that replays it. SIM_NO_TICKS=1 runs the seeded schedule
 * without node__tick (no anti-entropy, keepalives or timed retries): it must fail, naming the
 * headers each node lacks, which shows that the test can fail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COMUNE = 0, CPIA = 1, PREF = 2 };

/* Fail with the seed and the replay line printed (the message on stderr whole: cmocka cuts
 * long ones). */
#define CHECK(s, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sim_print_replay(s);                                                                   \
            fprintf(stderr, "sim: " __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                                 \
            fail_msg("see above");                                                                 \
        }                                                                                          \
    } while (0)

static int teardown(void **state)
{
    sim_free(*state);
    *state = NULL;
    return 0;
}

/* A network of n nodes whose links are all up. */
static sim *start(void **state, const sim_opts *o)
{
    sim *s = sim_new(o);
    assert_non_null(s);
    *state = s;
    assert_true(sim_run_for(s, 1000));
    for (size_t i = 0; i < sim_n(s); i++)
        CHECK(s, sim_peers_up(s, i) == sim_n(s) - 1, "node %zu has %zu peers up, not %zu", i,
            sim_peers_up(s, i), sim_n(s) - 1);
    return s;
}

static proto_case_id new_case(sim *s, size_t i, const char *edit)
{
    proto_case_id c;
    node_errmsg msg = { { 0 } };
    const char *e[] = { edit };
    node_err err = sim_case_new(s, i, e, 1, &c, &msg);
    CHECK(s, err == NODE_OK, "case.new at node %zu: %s", i, msg.text);
    return c;
}

static void set(sim *s, size_t i, const proto_case_id *c, const char *edit)
{
    node_errmsg msg = { { 0 } };
    const char *e[] = { edit };
    node_err err = sim_case_set(s, i, c, e, 1, &msg);
    CHECK(s, err == NODE_OK, "case.set %s at node %zu: %s", edit, i, msg.text);
}

static void grant(sim *s, size_t i, const proto_case_id *c, const char *scope, size_t to, bool w)
{
    node_errmsg msg = { { 0 } };
    const char *sc[] = { scope };
    node_err err = sim_grant(s, i, c, sc, 1, to, w, &msg);
    CHECK(s, err == NODE_OK, "grant of %s to node %zu at node %zu: %s", scope, to, i, msg.text);
}

/* The last acknowledged header (back = 0), or the one before it (back = 1), ... */
static sim_hdr last(const sim *s, size_t back)
{
    size_t n;
    const sim_hdr *h = sim_acked(s, &n);
    assert_true(n > back);
    return h[n - 1 - back];
}

static void converge(sim *s, uint64_t ms)
{
    char why[4096];
    bool ok = sim_converge(s, ms, why, sizeof(why));
    CHECK(s, ok, "%s", why);
    ok = sim_acked_ok(s, why, sizeof(why));
    CHECK(s, ok, "acknowledged writes lost:%s", why);
}

static sim_waiting waiting(sim *s, size_t i)
{
    sim_waiting w;
    CHECK(s, sim_waiting_read(s, i, &w), "node %zu does not answer status", i);
    return w;
}

/* Predicates for sim_run_until. */
typedef struct at_node {
    size_t node;
    size_t origin; /* for vv_at_least */
    uint64_t seq;
    const uint8_t *id, *tag;
} at_node;

static bool headers_held(sim *s, void *ctx)
{
    at_node *a = ctx;
    sim_waiting w;
    return sim_waiting_read(s, a->node, &w) && w.headers > 0;
}

static bool vv_at_least(sim *s, void *ctx)
{
    at_node *a = ctx;
    return sim_vv(s, a->node, a->origin) >= a->seq;
}

static bool merged(sim *s, void *ctx)
{
    at_node *a = ctx;
    return sim_applied(s, a->node, a->id) == 1;
}

static bool merged_with_key(sim *s, void *ctx)
{
    at_node *a = ctx;
    return sim_applied(s, a->node, a->id) == 1 && sim_has_key(s, a->node, a->tag);
}

/* ---------------------------------------------------------------------------------------- */

/* The comune's next header toward the Prefettura is lost with its connection; the headers after
 * it come on the pair's other connection, beyond the gap: held, not chained, until the gap
 * request brings the missing one, then all chained. */
static void ingest_order(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 11, "ingest_order");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "anagrafica.nome=Kalimo");
    converge(s, 10000);
    uint64_t base = sim_vv(s, PREF, COMUNE);
    CHECK(s, base == 1, "the Prefettura holds %" PRIu64 " headers of the comune, not 1", base);

    sim_lose_next(s, COMUNE, PREF);
    set(s, COMUNE, &c, "anagrafica.cognome=Teruna"); /* seq 2: lost toward the Prefettura */
    assert_true(sim_run_for(s, 0));                  /* both ends hear of the cut */
    set(s, COMUNE, &c, "anagrafica.sesso=F");
    set(s, COMUNE, &c, "anagrafica.stato_pratica=aperta"); /* seq 3 and 4, the other link */

    at_node held = { .node = PREF };
    CHECK(s, sim_run_until(s, headers_held, &held, 2000),
        "the Prefettura never held a header out of order");
    CHECK(s, sim_vv(s, PREF, COMUNE) == base,
        "a header beyond the gap was chained: the Prefettura holds %" PRIu64 " of the comune's",
        sim_vv(s, PREF, COMUNE));

    at_node all = { .node = PREF, .origin = COMUNE, .seq = 4 };
    CHECK(s, sim_run_until(s, vv_at_least, &all, 3000),
        "the gap was not filled: the Prefettura holds %" PRIu64 " of the comune's 4 headers",
        sim_vv(s, PREF, COMUNE));
    sim_waiting w = waiting(s, PREF);
    CHECK(s, w.headers == 0, "%lld headers still held out of order", w.headers);
    converge(s, 10000);
}

/* A grant of three scopes of a case is one key grant after its three access entries (protocol
 * version 5: a key grant carries keys of several scopes), its tag that of the last scope in name
 * order; the CPIA takes every scope's key from it and merges the three entries. */
static void grant_of_scopes_is_one_key_grant(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 13, "grant_of_scopes_is_one_key_grant");
    sim *s = start(state, &o);
    node_errmsg msg = { { 0 } };
    const char *e[]
        = { "lingua.livello=A1", "anagrafica.nome=Amina", "documenti.permesso_tipo=studio" };
    proto_case_id c;
    CHECK(s, sim_case_new(s, COMUNE, e, 3, &c, &msg) == NODE_OK, "case.new: %s", msg.text);
    const char *sc[] = { "lingua", "anagrafica", "documenti" };
    CHECK(s, sim_grant(s, COMUNE, &c, sc, 3, CPIA, false, &msg) == NODE_OK, "grant: %s", msg.text);
    sim_hdr key = last(s, 0);
    sim_hdr entry[3] = { last(s, 3), last(s, 2), last(s, 1) }; /* in the order given */
    assert_int_equal(key.kind, PROTO_HDR_KEY_GRANT);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(entry[i].kind, PROTO_HDR_DELTA);
        assert_int_equal(entry[i].seq + 3 - i, key.seq);
    }
    assert_int_equal(last(s, 4).kind, PROTO_HDR_DELTA); /* the case's creation, not a grant */
    assert_memory_equal(key.tag, entry[0].tag, 32);     /* lingua: the last of the three by name */
    for (size_t i = 0; i < 3; i++) {
        at_node cpia = { .node = CPIA, .id = entry[i].id, .tag = entry[i].tag };
        CHECK(s, sim_run_until(s, merged_with_key, &cpia, 5000),
            "the CPIA did not take the key of %s from the one grant", sc[i]);
    }
    converge(s, 10000);
}

/* The CPIA gets a write grant and writes at once; its delta reaches the Prefettura (a reader of
 * the scope) while the grant's access entry is still on its way there over a slow link: the
 * delta waits for its causal past, then merges when the entry arrives. */
static void causal_wait(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 12, "causal_wait");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    grant(s, COMUNE, &c, "lingua", PREF, false);
    sim_hdr first = last(s, 1);
    converge(s, 10000);

    sim_set_latency(s, COMUNE, PREF, 3000);
    grant(s, COMUNE, &c, "lingua", CPIA, true);
    sim_hdr access = last(s, 1), key = last(s, 0);
    assert_int_equal(access.kind, PROTO_HDR_DELTA);
    assert_int_equal(key.kind, PROTO_HDR_KEY_GRANT);
    at_node cpia = { .node = CPIA, .id = access.id, .tag = access.tag };
    CHECK(s, sim_run_until(s, merged_with_key, &cpia, 2000),
        "the CPIA did not merge its write grant");
    /* and the entry before it (the Prefettura's grant, wanted once the key came): a write
     * grant counts when the access log is held without a gap up to it */
    at_node before = { .node = CPIA, .id = first.id, .tag = first.tag };
    CHECK(s, sim_run_until(s, merged_with_key, &before, 2000),
        "the CPIA did not merge the access-log entry before its grant");
    set(s, CPIA, &c, "lingua.livello=B1");
    sim_hdr d = last(s, 0);

    at_node pref = { .node = PREF, .origin = CPIA, .seq = d.seq };
    CHECK(s, sim_run_until(s, vv_at_least, &pref, 2000),
        "the CPIA's delta did not reach the Prefettura");
    assert_true(sim_run_for(s, 50));
    CHECK(s, sim_applied(s, PREF, access.id) == 0,
        "the grant reached the Prefettura before the CPIA's delta: nothing to wait for");
    sim_waiting w = waiting(s, PREF);
    CHECK(s, w.causal == 1 && sim_applied(s, PREF, d.id) == 0,
        "the CPIA's delta does not wait for its causal past (causal=%lld, applied=%d)", w.causal,
        sim_applied(s, PREF, d.id));

    at_node done = { .node = PREF, .id = d.id };
    CHECK(s, sim_run_until(s, merged, &done, 10000),
        "the CPIA's delta never merged at the Prefettura (applied=%d)", sim_applied(s, PREF, d.id));
    CHECK(s, sim_applied(s, PREF, access.id) == 1, "merged before its grant");
    w = waiting(s, PREF);
    CHECK(s, w.causal == 0, "%lld deltas still wait for their causal past", w.causal);
    sim_set_latency(s, COMUNE, PREF, 10);
    converge(s, 10000);
}

/* The CPIA reads lingua. The comune's next write reaches it as a header only (its connection is
 * cut behind the header): the body is wanted, asked for once the grace period is over, and
 * arrives from the comune on the pair's other connection. */
static void wants_after_grace(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 13, "wants_after_grace");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    converge(s, 10000);

    sim_cut_after_next(s, COMUNE, CPIA);
    set(s, COMUNE, &c, "lingua.livello=A2");
    sim_hdr d = last(s, 0);
    at_node hdr = { .node = CPIA, .origin = COMUNE, .seq = d.seq };
    CHECK(s, sim_run_until(s, vv_at_least, &hdr, 1000), "the header did not reach the CPIA");
    uint64_t t0 = sim_now(s);
    sim_waiting w = waiting(s, CPIA);
    CHECK(s, w.bodies == 1 && sim_applied(s, CPIA, d.id) == 0,
        "the CPIA does not want the body (wants=%lld, applied=%d)", w.bodies,
        sim_applied(s, CPIA, d.id));

    uint64_t grace = sim_want_grace_ms();
    assert_true(sim_run_for(s, grace - 100));
    w = waiting(s, CPIA);
    CHECK(s, w.bodies == 1 && sim_applied(s, CPIA, d.id) == 0,
        "the body came within the grace period (wants=%lld)", w.bodies);

    at_node body = { .node = CPIA, .id = d.id };
    CHECK(s, sim_run_until(s, merged, &body, 3000), "the body never came");
    uint64_t took = sim_now(s) - t0;
    CHECK(s, took >= grace && took < grace + 200,
        "the body came %" PRIu64 " ms after its header (the grace period is %" PRIu64 " ms)", took,
        grace);
    w = waiting(s, CPIA);
    CHECK(s, w.bodies == 0, "%lld bodies still wanted", w.bodies);
    converge(s, 10000);
}

static bool waits_causal(sim *s, void *ctx)
{
    at_node *a = ctx;
    sim_waiting w;
    return sim_waiting_read(s, a->node, &w) && w.causal > 0;
}

/* The comune writes lingua twice, the first time before the CPIA may read it (the CPIA holds
 * the header only), the second right after granting it: the second comes with its body at once,
 * the first body only once the CPIA asks for it. The later delta waits for the causal past it
 * names, the owner's as anyone's, and both merge once the first body comes. Merged at once,
 * the later delta's context held the first one's dot, and the first looked like a second
 * creation of it: void until the scope was decided again. */
static void owner_delta_waits_for_its_past(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 14, "owner_delta_waits_for_its_past");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    set(s, COMUNE, &c, "lingua.livello=A2");
    sim_hdr first = last(s, 0);
    converge(s, 10000);
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    set(s, COMUNE, &c, "lingua.livello=B1");
    sim_hdr second = last(s, 0);

    at_node wait = { .node = CPIA };
    CHECK(s, sim_run_until(s, waits_causal, &wait, 1000) && sim_applied(s, CPIA, first.id) == 0,
        "the comune's later delta did not wait for the one it overwrote (applied %d and %d)",
        sim_applied(s, CPIA, first.id), sim_applied(s, CPIA, second.id));
    CHECK(s, sim_applied(s, CPIA, second.id) == 0, "the later delta merged before its past");

    at_node a = { .node = CPIA, .id = first.id }, b = { .node = CPIA, .id = second.id };
    CHECK(s, sim_run_until(s, merged, &a, 5000) && sim_run_until(s, merged, &b, 1000),
        "the two deltas did not both merge (applied %d and %d)", sim_applied(s, CPIA, first.id),
        sim_applied(s, CPIA, second.id));
    sim_waiting w = waiting(s, CPIA);
    CHECK(s, w.causal == 0, "%lld deltas still wait for their causal past", w.causal);
    converge(s, 10000);
}

/* The same wait where it cannot end: the prefettura writes lingua under its grant before the
 * CPIA may read it (the CPIA holds the header only); the comune grants the CPIA (public task),
 * writes over it, and revokes the CPIA before the CPIA asks for the prefettura's body. The
 * CPIA keeps what it received, closed, and no peer sends it the scope's bodies any more: the
 * comune's delta, which names the prefettura's dot, merges with what is there instead of
 * waiting for good. */
static void closed_scope_ends_causal_waits(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 15, "closed_scope_ends_causal_waits");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    grant(s, COMUNE, &c, "lingua", PREF, true);
    converge(s, 10000);
    set(s, PREF, &c, "lingua.livello=A2");
    sim_hdr pref = last(s, 0);
    converge(s, 10000);
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    set(s, COMUNE, &c, "lingua.livello=B1");
    sim_hdr over = last(s, 0);

    at_node wait = { .node = CPIA };
    CHECK(s, sim_run_until(s, waits_causal, &wait, 1000) && sim_applied(s, CPIA, pref.id) == 0,
        "the comune's delta did not wait for the prefettura's (applied %d and %d)",
        sim_applied(s, CPIA, pref.id), sim_applied(s, CPIA, over.id));
    node_errmsg msg = { { 0 } };
    const char *sc[] = { "lingua" };
    CHECK(s, sim_revoke(s, COMUNE, &c, sc, 1, CPIA, &msg) == NODE_OK, "revoke: %s", msg.text);

    at_node b = { .node = CPIA, .id = over.id };
    CHECK(s, sim_run_until(s, merged, &b, 5000),
        "the comune's delta still waits at the CPIA after its access ended (applied %d, %lld "
        "waiting for their causal past)",
        sim_applied(s, CPIA, over.id), waiting(s, CPIA).causal);
    CHECK(s, sim_applied(s, CPIA, pref.id) == 0,
        "the prefettura's body came to the CPIA after all: the test shows nothing");
    CHECK(s, waiting(s, CPIA).causal == 0, "%lld deltas still wait for their causal past",
        waiting(s, CPIA).causal);
    converge(s, 10000);
}

static bool key_gone(sim *s, void *ctx)
{
    at_node *a = ctx;
    return !sim_has_key(s, a->node, a->tag);
}

/* The CPIA (write on consent) writes; its connection to the comune is cut behind the header, so
 * the comune holds the header and not the body when it revokes the CPIA at once: its cut counts
 * the write in. The CPIA purges the scope before the comune asks for the body, keeps its own
 * write's body (ciphertext under a key gone from it) and serves it to the comune alone, which
 * merges it: the acknowledged write is not lost, and nobody waits for a body nobody holds. */
static void purged_author_serves_its_write(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 17, "purged_author_serves_its_write");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    sim_hdr created = last(s, 0);
    node_errmsg msg = { { 0 } };
    const char *sc[] = { "lingua" };
    CHECK(s,
        sim_grant_basis(s, COMUNE, &c, sc, 1, CPIA, true, PROTO_BASIS_CONSENT, &msg) == NODE_OK,
        "grant: %s", msg.text);
    converge(s, 10000);

    sim_cut_after_next(s, CPIA, COMUNE);
    set(s, CPIA, &c, "lingua.livello=B1");
    sim_hdr d = last(s, 0);
    at_node hdr = { .node = COMUNE, .origin = CPIA, .seq = d.seq };
    CHECK(s, sim_run_until(s, vv_at_least, &hdr, 1000), "the header did not reach the comune");
    CHECK(s, sim_applied(s, COMUNE, d.id) == 0, "the body came with its header");
    CHECK(s, sim_revoke(s, COMUNE, &c, sc, 1, CPIA, &msg) == NODE_OK, "revoke: %s", msg.text);
    at_node purged = { .node = CPIA, .tag = created.tag };
    CHECK(s, sim_run_until(s, key_gone, &purged, 5000), "the CPIA did not purge the scope");
    CHECK(s, sim_applied(s, COMUNE, d.id) == 0,
        "the comune had the body before the CPIA purged (the case this test is for did not "
        "happen)");
    at_node body = { .node = COMUNE, .id = d.id };
    CHECK(s, sim_run_until(s, merged, &body, 10000),
        "the comune never got the CPIA's write from the purged CPIA");
    converge(s, 10000);
}

/* The Prefettura is cut off for 30 s (its links die of the idle timeout, its redials get no
 * answer) while everyone writes; the check says what it lacks. Healed, it catches up. */
static void anti_entropy_after_partition(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 14, "anti_entropy_after_partition");
    sim *s = start(state, &o);
    proto_case_id a = new_case(s, COMUNE, "lingua.livello=A1");
    grant(s, COMUNE, &a, "lingua", PREF, false);
    proto_case_id p = new_case(s, PREF, "anagrafica.nome=Vorudi");
    converge(s, 10000);
    uint64_t before = sim_vv(s, PREF, COMUNE);

    sim_isolate(s, PREF);
    for (int k = 0; k < 10; k++) {
        set(s, COMUNE, &a, "lingua.ore_frequenza+=2");
        assert_true(sim_run_for(s, 300));
    }
    (void)new_case(s, CPIA, "competenze.anni_studio=8");
    set(s, PREF, &p, "anagrafica.cognome=Selani");
    assert_true(sim_run_for(s, 30000));
    CHECK(s, sim_vv(s, PREF, COMUNE) == before, "headers crossed the partition");
    CHECK(s, sim_peers_up(s, PREF) == 0, "the Prefettura still has %zu sessions after 30 s",
        sim_peers_up(s, PREF));
    char why[4096], expect[128];
    snprintf(expect, sizeof(expect),
        "node 2 (prefettura-1) lacks headers %" PRIu64 "..%" PRIu64 " of origin comune-1",
        before + 1, before + 10);
    bool ok = sim_converged(s, why, sizeof(why));
    CHECK(s, !ok, "a partitioned network passes the convergence check");
    CHECK(s,
        strstr(why, expect) != NULL && strstr(why, "lacks headers 2..2 of origin prefettura-1"),
        "the check does not say what is missing: %s", why);

    sim_heal(s);
    converge(s, 30000);
    CHECK(s, sim_vv(s, PREF, COMUNE) == before + 10, "the Prefettura holds %" PRIu64,
        sim_vv(s, PREF, COMUNE));
}

/* The CPIA is away while the comune writes three cases and only then grants it lingua of each
 * (the workload's order: every write before the grants). When it is back, the comune's answer
 * to its version vector brings the 12 headers, but of the bodies only the grants' own (their
 * access entries and key grants): the writes' bodies, which the CPIA may read only once it
 * holds those grants' keys, are left out (sync.c grant_ahead), and the CPIA asks for them after
 * the want grace, once the keys came. In a large catch-up they came first, split from their keys
 * over several messages, and filled the park (README "Fifth stop"). */
static bool lacks_six(sim *s, void *ctx)
{
    at_node *a = ctx;
    sim_waiting w;
    return sim_waiting_read(s, a->node, &w) && w.bodies >= 6;
}

static void answer_leaves_bodies_ahead_of_grants(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 16, "answer_leaves_bodies_ahead_of_grants");
    sim *s = start(state, &o);
    sim_isolate(s, CPIA);
    proto_case_id c[3];
    for (size_t k = 0; k < 3; k++) {
        c[k] = new_case(s, COMUNE, "lingua.livello=A1");
        set(s, COMUNE, &c[k], "lingua.livello=A2");
    }
    for (size_t k = 0; k < 3; k++)
        grant(s, COMUNE, &c[k], "lingua", CPIA, false);
    uint64_t logged = sim_vv(s, COMUNE, COMUNE);
    assert_true(sim_run_for(s, 5000));
    sim_heal(s);
    CHECK(s, sim_restart(s, CPIA), "the CPIA did not start again");
    at_node all = { .node = CPIA, .origin = COMUNE, .seq = logged };
    CHECK(s, sim_run_until(s, vv_at_least, &all, 3000), "the CPIA did not get the comune's log");
    at_node cpia = { .node = CPIA };
    CHECK(s, sim_run_until(s, lacks_six, &cpia, 3000),
        "the CPIA never lacked the 6 bodies written before its grants: the comune's answer "
        "brought them with their headers, before their keys");
    converge(s, 30000);
    sim_traffic t = sim_traffic_read(s, CPIA);
    CHECK(s, t.parked == 0 && t.bodies_got == 12,
        "the CPIA parked %lld bodies and got %lld in all (want 0 and 12)", t.parked, t.bodies_got);
}

/* The CPIA is away while the comune and the Prefettura each write 40 deltas, which they trade.
 * When the CPIA starts again, both are up: its version vector asks each for its own log only
 * (the other's is skipped), so it gets each header once; before, both answered with both logs
 * and 80 of the 160 headers came twice. The comune and the Prefettura get nothing twice
 * either. Then the Prefettura is away when the CPIA starts again after missing 10 more of its
 * writes: the CPIA skips the Prefettura's log at the comune for the first second (its link
 * could be a moment behind), then asks the comune for it. */
static void each_log_from_its_author(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 21, "each_log_from_its_author");
    sim *s = start(state, &o);
    proto_case_id a = new_case(s, COMUNE, "lingua.livello=A1");
    proto_case_id p = new_case(s, PREF, "anagrafica.nome=Vorudi");
    converge(s, 10000);
    sim_isolate(s, CPIA);
    for (int k = 0; k < 40; k++) {
        char edit[64];
        snprintf(edit, sizeof(edit), "anagrafica.cognome=Selani%d", k);
        set(s, COMUNE, &a, "lingua.ore_frequenza+=1");
        set(s, PREF, &p, edit);
        assert_true(sim_run_for(s, 50));
    }
    assert_true(sim_run_for(s, 5000));
    CHECK(s,
        sim_vv(s, COMUNE, PREF) == sim_vv(s, PREF, PREF)
            && sim_vv(s, PREF, COMUNE) == sim_vv(s, COMUNE, COMUNE),
        "the comune and the Prefettura did not trade their writes");
    sim_traffic ca = sim_traffic_read(s, COMUNE), pa = sim_traffic_read(s, PREF);
    sim_heal(s);
    CHECK(s, sim_restart(s, CPIA), "the CPIA did not start again");
    converge(s, 30000);
    sim_traffic cb = sim_traffic_read(s, CPIA), cz = sim_traffic_read(s, COMUNE),
                pz = sim_traffic_read(s, PREF);
    CHECK(s, cb.headers_got == 80 && cb.headers_dup == 0,
        "the CPIA got %lld headers after its restart, %lld of them twice (want 80, none twice)",
        cb.headers_got, cb.headers_dup);
    CHECK(s, cz.headers_dup == ca.headers_dup && pz.headers_dup == pa.headers_dup,
        "the comune got %lld headers twice and the Prefettura %lld while the CPIA caught up",
        cz.headers_dup - ca.headers_dup, pz.headers_dup - pa.headers_dup);

    sim_isolate(s, CPIA);
    for (int k = 0; k < 10; k++) {
        set(s, PREF, &p, "anagrafica.nome=Teruna");
        assert_true(sim_run_for(s, 50));
    }
    assert_true(sim_run_for(s, 3000));
    uint64_t pref_log = sim_vv(s, PREF, PREF);
    CHECK(s, sim_vv(s, COMUNE, PREF) == pref_log, "the comune lacks the Prefettura's writes");
    const unsigned away[3] = { 0, 0, 1 }; /* the comune and the CPIA, the Prefettura apart */
    sim_partition(s, away);
    CHECK(s, sim_restart(s, CPIA), "the CPIA did not start again");
    assert_true(sim_run_for(s, 6000));
    CHECK(s, sim_vv(s, CPIA, PREF) == pref_log,
        "6 s after its start the CPIA holds %" PRIu64 " of the Prefettura's log, not %" PRIu64
        " (the comune has it, the Prefettura is away)",
        sim_vv(s, CPIA, PREF), pref_log);
}

/* The lists of wanted and waiting bodies hold 16 each, and nothing is parked: the CPIA, away
 * while the comune writes 120 times to a scope and then grants it that scope, gets the bodies
 * before the key, drops them, and wants all 120 once the key comes. It lists 16 (the rest stay
 * in its store, headers without bodies), and each time a list is down to half it lists more
 * from the store, until it holds them all; its list never holds more than 16. */
typedef struct lists_watch {
    long long most; /* the most bodies the CPIA listed as wanted at once */
} lists_watch;

static bool lists_done(sim *s, void *ctx)
{
    lists_watch *lw = ctx;
    sim_waiting w;
    if (!sim_waiting_read(s, CPIA, &w))
        return false;
    if (w.bodies > lw->most)
        lw->most = w.bodies;
    char why[256];
    return w.bodies == 0 && w.causal + w.clock + w.key == 0 && sim_converged(s, why, sizeof(why));
}

static void lists_refilled_from_the_store(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 2, 31, "lists_refilled_from_the_store");
    o.lists_max = 16;
    o.no_park = true;
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    converge(s, 10000);
    sim_isolate(s, CPIA);
    for (int k = 0; k < 120; k++)
        set(s, COMUNE, &c, "lingua.ore_frequenza+=1");
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    assert_true(sim_run_for(s, 100));
    sim_heal(s);
    lists_watch lw = { 0 };
    CHECK(s, sim_run_until(s, lists_done, &lw, 300000),
        "the CPIA did not get every body of the scope it was granted");
    sim_waiting w = waiting(s, CPIA);
    CHECK(s, lw.most > 0 && lw.most <= 16, "the CPIA listed up to %lld wanted bodies (bound 16)",
        lw.most);
    CHECK(s, w.refills >= 2, "the CPIA refilled its lists %lld times (120 wants, 16 at a time)",
        w.refills);
    converge(s, 10000);
}

/* The CPIA holds the headers of 120 deltas of a scope it may not read; a grant of the scope
 * makes it want their 120 bodies at once, 16 at a time (the lists' bound). Each refill comes as
 * soon as the wants are down to half, not at the next tick: the bodies take a few round trips,
 * not a tick (anti_entropy_ms, 2 s) for each 8 of them (about 30 s). */
static void wants_refilled_without_the_tick(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 2, 37, "wants_refilled_without_the_tick");
    o.lists_max = 16;
    o.no_park = true;
    o.anti_entropy_ms = 2000;
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    for (int k = 0; k < 120; k++)
        set(s, COMUNE, &c, "lingua.ore_frequenza+=1");
    converge(s, 10000);
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    uint64_t granted = sim_now(s);
    lists_watch lw = { 0 };
    CHECK(s, sim_run_until(s, lists_done, &lw, 300000),
        "the CPIA did not get every body of the scope it was granted");
    uint64_t took = sim_now(s) - granted;
    sim_waiting w = waiting(s, CPIA);
    CHECK(s, lw.most > 0 && lw.most <= 16, "the CPIA listed up to %lld wanted bodies (bound 16)",
        lw.most);
    CHECK(s, w.refills >= 2, "the CPIA refilled its lists %lld times (120 wants, 16 at a time)",
        w.refills);
    CHECK(s, took < o.anti_entropy_ms * 2,
        "the CPIA took %llu ms of simulated time for 120 bodies 16 at a time (a tick is %llu ms)",
        (unsigned long long)took, (unsigned long long)o.anti_entropy_ms);
    converge(s, 10000);
}

/* The CPIA holds the headers of 60 deltas of a scope it may not read. Then it works its inbound
 * queue 1 s late each time (a node busy with a long queue), and the comune grants it the scope
 * and at once writes 6 deltas of another case: the CPIA takes the grant and asks for the 60
 * bodies, and their answer comes behind the 6 headers in its queue, where it waits about 6 s,
 * past the retry time (2 s). The CPIA asks again only once its queue was seen empty since the
 * retry time, so it gets every body once. (Asked again at the retry time alone, with the answer
 * still queued, it got 183 second copies.) */
static void want_not_asked_again_while_queued(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 2, 41, "want_not_asked_again_while_queued");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "lingua.livello=A1");
    for (int k = 0; k < 60; k++)
        set(s, COMUNE, &c, "lingua.ore_frequenza+=1");
    proto_case_id other = new_case(s, COMUNE, "lingua.livello=B1");
    converge(s, 20000);
    sim_traffic before = sim_traffic_read(s, CPIA);
    sim_set_inq_delay(s, CPIA, 1000);
    grant(s, COMUNE, &c, "lingua", CPIA, false);
    for (int k = 0; k < 6; k++)
        set(s, COMUNE, &other, "lingua.ore_frequenza+=1");
    converge(s, 30000);
    sim_traffic after = sim_traffic_read(s, CPIA);
    CHECK(s, before.bodies_dup >= 0 && after.bodies_got - before.bodies_got >= 60,
        "the CPIA got %lld bodies after the grant (60 wanted)",
        after.bodies_got - before.bodies_got);
    CHECK(s, after.bodies_dup == before.bodies_dup,
        "the CPIA got %lld bodies twice: it asked again while their answer waited in its queue",
        after.bodies_dup - before.bodies_dup);
}

/* max_clock_ahead_ms = 1000 and the CPIA's clock 5 s ahead: the comune stores its headers at
 * once, its deltas wait until the comune's clock is within 1 s of their stamps, then merge. */
static void clock_ahead_waits(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 2, 15, "clock_ahead_waits");
    o.max_clock_ahead_ms = 1000;
    o.clock_offset_ms[CPIA] = 5000;
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, CPIA, "lingua.livello=A1");
    grant(s, CPIA, &c, "lingua", COMUNE, false);
    sim_hdr key = last(s, 0);
    at_node got = { .node = COMUNE, .id = key.id, .tag = key.tag };
    CHECK(s, sim_run_until(s, merged_with_key, &got, 2000), "the comune did not open its grant");

    set(s, CPIA, &c, "lingua.livello=A2");
    sim_hdr d = last(s, 0);
    uint64_t stamp = d.acked_ms + 5000; /* the CPIA's clock when it wrote */
    at_node hdr = { .node = COMUNE, .origin = CPIA, .seq = d.seq };
    CHECK(s, sim_run_until(s, vv_at_least, &hdr, 1000), "the header did not reach the comune");
    assert_true(sim_run_for(s, 100));
    CHECK(s, sim_vv(s, COMUNE, CPIA) == d.seq, "the header was not stored at once");
    sim_waiting w = waiting(s, COMUNE);
    CHECK(s, w.clock >= 1 && sim_applied(s, COMUNE, d.id) == 0,
        "a delta 5 s ahead does not wait for the clock (clock=%lld, applied=%d)", w.clock,
        sim_applied(s, COMUNE, d.id));

    uint64_t due = stamp - 1000; /* the comune's clock may merge it from then on */
    assert_true(sim_run_for(s, due - 1 - sim_node_now(s, COMUNE)));
    CHECK(s, sim_applied(s, COMUNE, d.id) == 0, "merged %" PRIu64 " ms too early",
        due - sim_node_now(s, COMUNE));
    at_node m = { .node = COMUNE, .id = d.id };
    CHECK(s, sim_run_until(s, merged, &m, 5000), "the delta never merged");
    CHECK(s, sim_node_now(s, COMUNE) >= due, "merged before its time");
    converge(s, 5000);
    w = waiting(s, COMUNE);
    CHECK(s, w.clock == 0, "%lld deltas still wait for the clock", w.clock);
}

/* The CPIA's wall clock steps back by 1 s (an NTP correction) just after it heard from its peers:
 * its links and dialers should carry on as they were. */
static void clock_step_back(void **state)
{
    sim_opts o;
    sim_opts_default(&o, 3, 16, "clock_step_back");
    sim *s = start(state, &o);
    proto_case_id c = new_case(s, COMUNE, "anagrafica.nome=Temalu");
    converge(s, 10000);
    set(s, COMUNE, &c, "anagrafica.cognome=Rivadi");
    assert_true(sim_run_for(s, 200)); /* the CPIA has just heard from the comune */
    sim_stats before, after;
    sim_get_stats(s, &before);
    sim_set_clock_offset(s, CPIA, -1000);
    assert_true(sim_run_for(s, 5000));
    sim_get_stats(s, &after);
    converge(s, 10000); /* it recovers either way */
    /* Elapsed times run on the host's monotonic clock (node_host.mono_ms): a wall clock stepped
     * back must not make "now - then" wrap and drop links (as it did before, in keepalive,
     * redial_stuck and node__links_due). */
    CHECK(s, after.drops == before.drops,
        "a backward step of the CPIA's wall clock dropped %" PRIu64 " links",
        after.drops - before.drops);
}

/* ---------------------------------------------------------------------------------------- */
/* The seeded schedule                                                                       */

#define WL_SCOPES 4
static const char *const wl_scope[WL_SCOPES] = { "anagrafica", "lingua", "competenze", "servizi" };

typedef struct wl_case {
    proto_case_id id;
    size_t owner;
    uint8_t access[SIM_MAX_NODES][WL_SCOPES]; /* 0 none, 1 read, 2 write: the newest grant */
} wl_case;

typedef struct wl_stats {
    size_t ops, acked, refused, cases, grants, partitions;
    uint64_t healed_ms, converged_ms, steps, trace;
    sim_stats wire;
} wl_stats;

/* An invented name: two or three syllables. */
static void wl_name(sim *s, char *out, size_t len)
{
    static const char *const syl[]
        = { "ka", "li", "mo", "te", "ru", "na", "si", "vo", "de", "la", "bi", "zu", "ne", "ta" };
    size_t n = 2 + (size_t)sim_rand(s, 2), off = 0;
    for (size_t k = 0; k < n && off + 3 < len; k++)
        off += (size_t)snprintf(out + off, len - off, "%s", syl[sim_rand(s, 14)]);
    out[0] = (char)(out[0] - 'a' + 'A');
}

/* One random edit of a scope of the schema, valid by construction. */
static void wl_edit(sim *s, size_t scope, char *out, size_t len)
{
    char name[16];
    wl_name(s, name, sizeof(name));
    static const char *const sesso[] = { "F", "M", "X" };
    static const char *const stato[] = { "aperta", "sospesa", "chiusa" };
    static const char *const livello[] = { "pre-A1", "A1", "A2", "B1", "B2" };
    static const char *const patente[] = { "AM", "A", "B", "C" };
    unsigned r = (unsigned)sim_rand(s, 4);
    switch (scope) {
    case 0:
        if (r == 0)
            snprintf(out, len, "anagrafica.nome=%s", name);
        else if (r == 1)
            snprintf(out, len, "anagrafica.nomi_varianti+=%s", name);
        else if (r == 2)
            snprintf(out, len, "anagrafica.sesso=%s", sesso[sim_rand(s, 3)]);
        else
            snprintf(out, len, "anagrafica.stato_pratica=%s", stato[sim_rand(s, 3)]);
        break;
    case 1:
        if (r == 0)
            snprintf(out, len, "lingua.livello=%s", livello[sim_rand(s, 5)]);
        else if (r == 1)
            snprintf(out, len, "lingua.ore_frequenza+=%u", 1 + (unsigned)sim_rand(s, 20));
        else if (r == 2)
            snprintf(out, len, "lingua.ore_previste=%u", (unsigned)sim_rand(s, 400));
        else
            snprintf(out, len, "lingua.data_valutazione=2025-%02u-%02u",
                1 + (unsigned)sim_rand(s, 12), 1 + (unsigned)sim_rand(s, 28));
        break;
    case 2:
        if (r == 0)
            snprintf(out, len, "competenze.competenze+=cucina %s", name);
        else if (r == 1)
            snprintf(out, len, "competenze.anni_studio=%u", (unsigned)sim_rand(s, 20));
        else
            snprintf(out, len, "competenze.patente+=%s", patente[sim_rand(s, 4)]);
        break;
    default:
        snprintf(out, len, "servizi.eventi+={\"tipo\":\"colloquio\",\"con\":\"%s\",\"n\":%u}", name,
            (unsigned)sim_rand(s, 100));
        break;
    }
}

/* Was a write refused by the own-log check of a node that has just started (node__own_log_settled)?
 */
static bool own_log_check(const node_errmsg *msg)
{
    return strstr(msg->text, "this node's log") != NULL;
}

/* A few hundred random writes and grants under faults, then healing: converged, nothing
 * acknowledged lost. */
static void run_schedule(void **state, uint64_t seed, size_t ops, wl_stats *st)
{
    memset(st, 0, sizeof(*st));
    sim_opts o;
    const char *nt = getenv("SIM_NO_TICKS");
    bool no_ticks = nt != NULL && strcmp(nt, "1") == 0;
    char env[64];
    snprintf(env, sizeof(env), "SIM_OPS=%zu%s", ops, no_ticks ? " SIM_NO_TICKS=1" : "");
    sim_opts_default(&o, 3 + (size_t)(seed % 3), seed, "seeded_schedule");
    o.replay_env = env;
    o.lat_min_ms = 1;
    o.lat_max_ms = 60;
    o.jitter_ms = 30;
    o.cut_ppm = 10000;
    o.dup_ppm = 5000;
    o.max_clock_ahead_ms = 1000;
    /* Clocks up to 3 s apart: deltas from a clock ahead wait at the others (limit 1 s). */
    for (size_t i = 0; i < o.n; i++)
        o.clock_offset_ms[i] = (int64_t)((seed * 7919 + i * 104729) % 3001) - 1500;
    sim *s = sim_new(&o);
    assert_non_null(s);
    *state = s;
    sim_set_ticks(s, !no_ticks);
    size_t n = sim_n(s);
    wl_case *cases = calloc(ops, sizeof(*cases));
    assert_non_null(cases);
    bool parted = false;
    uint64_t heal_at = 0;
    for (size_t op = 0; op < ops; op++) {
        CHECK(s, sim_run_for(s, sim_rand(s, 120)), "step limit");
        if (parted && sim_now(s) >= heal_at) {
            sim_heal(s);
            parted = false;
        } else if (!parted && sim_rand(s, 100) < 3) {
            unsigned g[SIM_MAX_NODES];
            for (size_t i = 0; i < n; i++)
                g[i] = (unsigned)sim_rand(s, 2);
            g[sim_rand(s, n)] = 2; /* at least one node apart */
            sim_partition(s, g);
            parted = true;
            /* Mostly short; one in five outlasts [sync] idle_timeout_ms (20 s). */
            heal_at = sim_now(s)
                + (sim_rand(s, 5) == 0 ? 21000 + sim_rand(s, 5000) : 200 + sim_rand(s, 4000));
            st->partitions++;
        }
        if (sim_rand(s, 100) < 2) {
            size_t i = (size_t)sim_rand(s, n);
            CHECK(s, sim_restart(s, i), "node %zu did not start again", i);
        }
        char e1[200], e2[200];
        const char *edits[2] = { e1, e2 };
        node_errmsg msg = { { 0 } };
        node_err err;
        unsigned r = (unsigned)sim_rand(s, 100);
        if (st->cases == 0 || r < 12) {
            wl_case *c = &cases[st->cases];
            c->owner = (size_t)sim_rand(s, n);
            size_t sc = (size_t)sim_rand(s, WL_SCOPES);
            wl_edit(s, sc, e1, sizeof(e1));
            wl_edit(s, (size_t)sim_rand(s, WL_SCOPES), e2, sizeof(e2));
            err = sim_case_new(s, c->owner, edits, 1 + (size_t)sim_rand(s, 2), &c->id, &msg);
            CHECK(s, err == NODE_OK || own_log_check(&msg), "case.new at node %zu: %s", c->owner,
                msg.text);
            if (err == NODE_OK)
                st->cases++;
        } else if (r < 27) {
            wl_case *c = &cases[sim_rand(s, st->cases)];
            size_t to = (c->owner + 1 + (size_t)sim_rand(s, n - 1)) % n;
            size_t a = (size_t)sim_rand(s, WL_SCOPES), b = (size_t)sim_rand(s, WL_SCOPES);
            const char *sc[2] = { wl_scope[a], wl_scope[b] };
            size_t ns = a == b ? 1 : 2;
            bool write = sim_rand(s, 2) == 0;
            err = sim_grant(s, c->owner, &c->id, sc, ns, to, write, &msg);
            CHECK(s, err == NODE_OK || own_log_check(&msg), "grant at node %zu: %s", c->owner,
                msg.text);
            if (err == NODE_OK) {
                c->access[to][a] = c->access[to][b] = write ? 2 : 1;
                st->grants++;
            }
        } else {
            wl_case *c = &cases[sim_rand(s, st->cases)];
            size_t sc = (size_t)sim_rand(s, WL_SCOPES);
            size_t writers[SIM_MAX_NODES], nw = 0;
            for (size_t i = 0; i < n; i++)
                if (i == c->owner || c->access[i][sc] == 2)
                    writers[nw++] = i;
            size_t w = writers[sim_rand(s, nw)];
            wl_edit(s, sc, e1, sizeof(e1));
            wl_edit(s, sc, e2, sizeof(e2));
            err = sim_case_set(s, w, &c->id, edits, 1 + (size_t)sim_rand(s, 2), &msg);
            /* A grantee refuses to write until its grant has reached it, and every node right
             * after its start until its peers said what they hold of its log: not
             * acknowledged. */
            CHECK(s, err == NODE_OK || w != c->owner || own_log_check(&msg),
                "case.set at the owner, node %zu: %s", w, msg.text);
        }
        if (err == NODE_OK)
            st->acked++;
        else
            st->refused++;
        st->ops++;
    }
    sim_set_faults(s, 0, 0, o.jitter_ms);
    sim_heal(s);
    st->healed_ms = sim_now(s);
    /* Once the links are back, each node's last write loses its push to one peer, with its
     * connection: no later push reveals the gap and the pair's other link carries no version
     * vector, so only anti-entropy can bring it. */
    CHECK(s, sim_run_for(s, 5000), "step limit");
    for (size_t i = 0; i < n; i++) {
        char e1[200];
        const char *edits[1] = { e1 };
        node_errmsg msg = { { 0 } };
        wl_edit(s, 1, e1, sizeof(e1));
        proto_case_id c;
        sim_lose_next(s, i, (i + 1 + (size_t)sim_rand(s, n - 1)) % n);
        node_err err = sim_case_new(s, i, edits, 1, &c, &msg);
        CHECK(s, err == NODE_OK, "case.new at node %zu: %s", i, msg.text);
        st->acked++;
        st->ops++;
    }
    free(cases);
    char why[4096];
    bool ok = sim_converge(s, 120000, why, sizeof(why));
    CHECK(s, ok, "seed %" PRIu64 ": %s", seed, why);
    st->converged_ms = sim_now(s) - st->healed_ms;
    ok = sim_acked_ok(s, why, sizeof(why));
    CHECK(s, ok, "seed %" PRIu64 ": acknowledged writes lost:%s", seed, why);
    sim_get_stats(s, &st->wire);
    st->steps = sim_steps(s);
    st->trace = sim_trace_hash(s);
    sim_free(s);
    *state = NULL;
}

static size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != 0 ? (size_t)strtoull(v, NULL, 10) : dflt;
}

static void seeded_schedule(void **state)
{
    static const uint64_t fixed[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    size_t ops = env_size("SIM_OPS", 400);
    const char *one = getenv("SIM_SEED");
    size_t count = env_size("SIM_SEEDS", 0);
    size_t nseeds = one != NULL && *one != 0 ? 1
        : count > 0                          ? count
                                             : sizeof(fixed) / sizeof(fixed[0]);
    for (size_t k = 0; k < nseeds; k++) {
        uint64_t seed = one != NULL && *one != 0 ? strtoull(one, NULL, 10)
            : count > 0                          ? k + 1
                                                 : fixed[k];
        wl_stats st;
        run_schedule(state, seed, ops, &st);
        printf("sim: seed %" PRIu64 ": %zu nodes, %zu ops (%zu acknowledged: %zu cases, %zu "
               "grants; %zu refused); wire: %" PRIu64 " frames, %" PRIu64 " connections, %" PRIu64
               " cuts (%" PRIu64 " frames lost), %" PRIu64 " duplicates, %zu partitions (%" PRIu64
               " frames held), %" PRIu64 " restarts; converged %.1f s after healing; %" PRIu64
               " events, trace %016" PRIx64 "\n",
            seed, 3 + (size_t)(seed % 3), st.ops, st.acked, st.cases, st.grants, st.refused,
            st.wire.frames, st.wire.conns, st.wire.cuts, st.wire.lost, st.wire.dups, st.partitions,
            st.wire.stalled, st.wire.restarts, (double)st.converged_ms / 1000.0, st.steps,
            st.trace);
    }
}

/* Node i restarts from the copy of its store sim_backup made and writes edit on case c once it
 * may (a restored node writes nothing until its peers said what they hold of its log). */
static sim_hdr restore_and_write(sim *s, size_t i, const proto_case_id *c, const char *edit)
{
    CHECK(s, sim_restore(s, i), "node %zu does not start from its backup", i);
    bool written = false;
    char last_err[sizeof(((node_errmsg *)0)->text)] = "";
    for (int k = 0; k < 60 && !written; k++) {
        node_errmsg msg = { { 0 } };
        const char *e[] = { edit };
        written = sim_case_set(s, i, c, e, 1, &msg) == NODE_OK;
        snprintf(last_err, sizeof(last_err), "%s", msg.text);
        if (!written)
            assert_true(sim_run_for(s, 500));
    }
    CHECK(s, written, "the restored node %zu cannot write: %s", i, last_err);
    return last(s, 0);
}

/* A write grantee restored from an old backup forks its own log: the CPIA writes livello=B1
 * and then B2 while the Prefettura is cut off, is restored from a copy of its store made
 * before, and (cut off from the comune now, with the Prefettura telling it nothing more of its
 * log) writes livello=C1 and C2 under the same two seqs. Healed, the version vectors bring
 * every node the other branch's last header: a proof at the second seq, whose branch does not
 * chain to the node's own below it, so the nodes send each other their headers below until
 * they hold the proof at the lowest differing seq, the fork point, and void both branches from
 * there: whatever order the headers, bodies and proofs arrive in (the seeds change every
 * latency), every node ends with all four writes void where it holds them and one digest per
 * tag. */
static void fork_voided_in_any_order(void **state)
{
    for (uint64_t seed = 21; seed < 27; seed++) {
        sim_free(*state);
        *state = NULL;
        sim_opts o;
        sim_opts_default(&o, 3, seed, "fork_voided_in_any_order");
        o.lat_max_ms = 80;
        o.jitter_ms = 15;
        sim *s = start(state, &o);
        proto_case_id a = new_case(s, COMUNE, "lingua.livello=A1");
        grant(s, COMUNE, &a, "lingua", CPIA, true);
        grant(s, COMUNE, &a, "lingua", PREF, false);
        converge(s, 10000);
        CHECK(s, sim_backup(s, CPIA), "no backup of the CPIA's store");
        unsigned cut_pref[SIM_MAX_NODES] = { 0, 0, 1 };
        sim_partition(s, cut_pref);
        set(s, CPIA, &a, "lingua.livello=B1");
        sim_hdr b1 = last(s, 0);
        set(s, CPIA, &a, "lingua.livello=B2");
        sim_hdr b2 = last(s, 0);
        assert_true(sim_run_for(s, 2000));
        unsigned cut_comune[SIM_MAX_NODES] = { 1, 0, 0 };
        sim_partition(s, cut_comune);
        sim_hdr c1 = restore_and_write(s, CPIA, &a, "lingua.livello=C1");
        set(s, CPIA, &a, "lingua.livello=C2");
        sim_hdr c2 = last(s, 0);
        CHECK(s, c1.seq == b1.seq && memcmp(c1.id, b1.id, 32) != 0,
            "the restored CPIA did not write at the seq it had written before (%" PRIu64
            " and %" PRIu64 ")",
            b1.seq, c1.seq);
        assert_true(sim_run_for(s, 2000));
        sim_heal(s);
        char why[4096];
        CHECK(s, sim_converge(s, 60000, why, sizeof(why)), "seed %" PRIu64 ": %s", seed, why);
        CHECK(s,
            sim_applied(s, COMUNE, b1.id) == 3 && sim_applied(s, COMUNE, b2.id) == 3
                && sim_applied(s, PREF, c1.id) == 3 && sim_applied(s, PREF, c2.id) == 3
                && sim_applied(s, CPIA, c1.id) == 3 && sim_applied(s, CPIA, c2.id) == 3,
            "seed %" PRIu64 ": the branches are not void everywhere (comune %d %d, Prefettura "
            "%d %d, CPIA %d %d)",
            seed, sim_applied(s, COMUNE, b1.id), sim_applied(s, COMUNE, b2.id),
            sim_applied(s, PREF, c1.id), sim_applied(s, PREF, c2.id), sim_applied(s, CPIA, c1.id),
            sim_applied(s, CPIA, c2.id));
        for (size_t i = 0; i < 3; i++) {
            sim_quarantine q;
            CHECK(s, sim_quarantine_read(s, i, CPIA, &q) && q.seq == (long long)b1.seq,
                "seed %" PRIu64 ": node %zu does not list the CPIA's fork at seq %" PRIu64, seed, i,
                b1.seq);
            CHECK(s, q.self == (i == CPIA) && (i != CPIA || q.void_own == 2),
                "seed %" PRIu64 ": node %zu: self %d, void_own %lld", seed, i, q.self, q.void_own);
            /* and lists them: C1 and C2, in lingua */
            CHECK(s,
                i != CPIA
                    || (q.nlisted == 2 && q.listed[0].seq == (long long)c1.seq
                        && q.listed[1].seq == (long long)c2.seq
                        && strcmp(q.listed[0].scope, "lingua") == 0
                        && strcmp(q.listed[1].scope, "lingua") == 0),
                "seed %" PRIu64 ": the CPIA lists %zu void writes of its own", seed, q.nlisted);
        }
    }
}

/* The owner forks: the comune grants the CPIA write on lingua while the Prefettura is cut off,
 * the CPIA writes livello=B1 on that grant, and the comune is restored from a copy of its store
 * made before the grant; cut off from the CPIA, it writes livello=C1 at the seq of the grant.
 * Healed, every node finds the fork at that seq and agrees on it (version vectors carry it),
 * though the branches beyond it differ in length: the access-log entry and C1 are void where
 * held, and B1, which names the void entry, is refused everywhere, whether a node merged it
 * before it knew of the fork (the CPIA) or got it after, never holding that entry (the comune
 * restored, and the Prefettura when C1 reaches it first: the seed decides). The nodes converge:
 * one fork point, equal logs below it, one digest per tag. */
static void owner_fork_voids_access_entries(void **state)
{
    for (uint64_t seed = 31; seed < 35; seed++) {
        sim_free(*state);
        *state = NULL;
        sim_opts o;
        sim_opts_default(&o, 3, seed, "owner_fork_voids_access_entries");
        o.lat_max_ms = 80;
        o.jitter_ms = 15;
        sim *s = start(state, &o);
        proto_case_id a = new_case(s, COMUNE, "lingua.livello=A1");
        grant(s, COMUNE, &a, "lingua", PREF, false);
        converge(s, 10000);
        CHECK(s, sim_backup(s, COMUNE), "no backup of the comune's store");
        unsigned cut_pref[SIM_MAX_NODES] = { 0, 0, 1 };
        sim_partition(s, cut_pref);
        grant(s, COMUNE, &a, "lingua", CPIA, true);
        sim_hdr entry = last(s, 1), key_grant = last(s, 0);
        CHECK(s, key_grant.kind == PROTO_HDR_KEY_GRANT && entry.kind == PROTO_HDR_DELTA,
            "the grant did not write an entry and then a key grant (%u %u)", entry.kind,
            key_grant.kind);
        assert_true(sim_run_for(s, 2000));
        set(s, CPIA, &a, "lingua.livello=B1");
        sim_hdr b1 = last(s, 0);
        assert_true(sim_run_for(s, 2000));
        CHECK(s, sim_applied(s, COMUNE, b1.id) == 1,
            "seed %" PRIu64 ": the comune did not merge B1", seed);
        unsigned cut_cpia[SIM_MAX_NODES] = { 0, 1, 0 };
        sim_partition(s, cut_cpia);
        sim_hdr c1 = restore_and_write(s, COMUNE, &a, "lingua.livello=C1");
        CHECK(s, c1.seq == entry.seq,
            "the restored comune wrote at seq %" PRIu64 ", not at the grant's %" PRIu64, c1.seq,
            entry.seq);
        assert_true(sim_run_for(s, 2000));
        sim_heal(s);
        char why[4096];
        CHECK(s, sim_converge(s, 60000, why, sizeof(why)), "seed %" PRIu64 ": %s", seed, why);
        for (size_t i = 0; i < 3; i++) {
            int me = sim_applied(s, i, entry.id), mb = sim_applied(s, i, b1.id),
                mc = sim_applied(s, i, c1.id);
            /* Each node holds one of the two headers at the fork point (the CPIA the grant's,
             * the comune C1, the Prefettura whichever came first) and the other in its proof. */
            CHECK(s,
                (me == 3 || (me == 0 && i != CPIA)) && mb == 2
                    && (mc == 3 || (mc == 0 && i != COMUNE)) && (me == 3) != (mc == 3),
                "seed %" PRIu64 ": node %zu: entry %d, B1 %d, C1 %d (want void or not held, "
                "refused, void or not held; one of the two)",
                seed, i, me, mb, mc);
            sim_quarantine q;
            CHECK(s, sim_quarantine_read(s, i, COMUNE, &q) && q.seq == (long long)entry.seq,
                "seed %" PRIu64 ": node %zu does not list the comune's fork at seq %" PRIu64, seed,
                i, entry.seq);
            CHECK(
                s, q.self == (i == COMUNE), "seed %" PRIu64 ": node %zu: self %d", seed, i, q.self);
        }
    }
}

/* A seed run twice delivers the same events in the same order, to the byte. */
static void replay_is_exact(void **state)
{
    wl_stats a, b, c;
    run_schedule(state, 7, 80, &a);
    run_schedule(state, 7, 80, &b);
    run_schedule(state, 8, 80, &c);
    printf("sim: replay: seed 7 twice: %" PRIu64 " events, trace %016" PRIx64 " and %" PRIu64
           " events, trace %016" PRIx64 "; seed 8: trace %016" PRIx64 "\n",
        a.steps, a.trace, b.steps, b.trace, c.trace);
    assert_int_equal(a.steps, b.steps);
    assert_int_equal(a.trace, b.trace);
    assert_int_equal(a.acked, b.acked);
    assert_true(a.trace != c.trace);
}

int main(int argc, char **argv)
{
    (void)argc;
    sim_global_init(argv[0]);
    const char *only = getenv("SIM_TEST");
    if (only != NULL && *only != 0)
        cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(ingest_order, teardown),
        cmocka_unit_test_teardown(grant_of_scopes_is_one_key_grant, teardown),
        cmocka_unit_test_teardown(causal_wait, teardown),
        cmocka_unit_test_teardown(wants_after_grace, teardown),
        cmocka_unit_test_teardown(owner_delta_waits_for_its_past, teardown),
        cmocka_unit_test_teardown(closed_scope_ends_causal_waits, teardown),
        cmocka_unit_test_teardown(purged_author_serves_its_write, teardown),
        cmocka_unit_test_teardown(anti_entropy_after_partition, teardown),
        cmocka_unit_test_teardown(answer_leaves_bodies_ahead_of_grants, teardown),
        cmocka_unit_test_teardown(each_log_from_its_author, teardown),
        cmocka_unit_test_teardown(lists_refilled_from_the_store, teardown),
        cmocka_unit_test_teardown(wants_refilled_without_the_tick, teardown),
        cmocka_unit_test_teardown(want_not_asked_again_while_queued, teardown),
        cmocka_unit_test_teardown(clock_ahead_waits, teardown),
        cmocka_unit_test_teardown(clock_step_back, teardown),
        cmocka_unit_test_teardown(seeded_schedule, teardown),
        cmocka_unit_test_teardown(fork_voided_in_any_order, teardown),
        cmocka_unit_test_teardown(owner_fork_voids_access_entries, teardown),
        cmocka_unit_test_teardown(replay_is_exact, teardown),
    };
    return cmocka_run_group_tests_name("node.sim", tests, NULL, NULL);
}
