/*
 * crdt.property: seeded property tests of the CRDT laws (SPEC.md I1, I2, I8, I9), for each
 * type alone and for the mixed scope.
 *
 *   P1  join is commutative, associative and idempotent on random states;
 *   P2  random concurrent histories at 2-4 replicas: the deltas applied to a fresh scope in
 *       a random order, with duplicates and with drops re-delivered later, give the join of
 *       all full states, and so does every replica once it has every delta;
 *   P3  concurrent register writes show as siblings in (HLC, origin, counter) order, and a
 *       later write that has seen them resolves them;
 *   P4  an add concurrent with a remove of the same element survives (and without the
 *       concurrent add the element stays removed);
 *   P5  models: the counter value is the sum of the increments each replica knows of when
 *       there are no removes; one replica's register, set and timeline read as a plain model.
 *
 * Every case has its own seed derived from the run's seed (TEST_SEED) and its index, so
 * TEST_SEED=<seed> CRDT_PROPERTY_CASE=<index> replays one failing case alone.
 * CRDT_PROPERTY_CASES sets the number of cases per property (default 10000).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crdt/crdt.h"
#include "crdt_testutil.h"
#include "test_rng.h"

#define MAXREP 4
#define MAXDELTAS 128
#define MAXPOOL 64

static uint64_t g_seed;
static uint64_t g_cases = 10000;
static long long g_only = -1; /* CRDT_PROPERTY_CASE: run this case index only */
static const char *g_prop = "";
static uint64_t g_case;
static uint64_t g_ran[32]; /* cases run per property id, for the summary */
/* Size of what the cases exercised, printed with each property's count. */
static uint64_t g_stat_ops, g_stat_deltas, g_stat_entries;

static void prop_fail(int line, const char *what, const char *detail)
{
    fail_msg("%s: case %" PRIu64 " failed at line %d: %s %s\n"
             "  replay: TEST_SEED=0x%016" PRIx64 " CRDT_PROPERTY_CASE=%" PRIu64
             " ./test-crdt-property",
        g_prop, g_case, line, what, detail ? detail : "", g_seed, g_case);
}

#define PCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            prop_fail(__LINE__, #cond, NULL);                                                      \
    } while (0)

#define PCALL(call)                                                                                \
    do {                                                                                           \
        crdt_err err_ = (call);                                                                    \
        if (err_ != CRDT_OK)                                                                       \
            prop_fail(__LINE__, #call, crdt_strerror(err_));                                       \
    } while (0)

#define PEQUAL(a, b)                                                                               \
    do {                                                                                           \
        if (!crdt_scope_equal((a), (b))) {                                                         \
            tu_scope_dump(stderr, #a, (a));                                                        \
            tu_scope_dump(stderr, #b, (b));                                                        \
            prop_fail(__LINE__, "crdt_scope_equal(" #a ", " #b ")", NULL);                         \
        }                                                                                          \
    } while (0)

static void pinvariants(int line, const crdt_scope *s)
{
    char why[200];
    if (!tu_scope_invariants(s, why, sizeof(why))) {
        tu_scope_dump(stderr, "scope", s);
        prop_fail(line, "invariants", why);
    }
}
#define PINVARIANTS(s) pinvariants(__LINE__, (s))

static crdt_scope *pnew(void)
{
    crdt_scope *s = NULL;
    PCALL(crdt_scope_new(NULL, &s));
    return s;
}

static crdt_scope *pclone(const crdt_scope *s)
{
    crdt_scope *c = NULL;
    PCALL(crdt_scope_clone(s, &c));
    return c;
}

static crdt_scope *pjoin2(const crdt_scope *a, const crdt_scope *b)
{
    crdt_scope *c = pclone(a);
    PCALL(crdt_scope_join(c, b));
    return c;
}

/* ---------------------------------------------------------------------------------------- */
/* Random concurrent histories                                                               */

typedef enum mix { MIX_REGISTER, MIX_SET, MIX_COUNTER, MIX_TIMELINE, MIX_ALL, MIX_COUNT } mix;
static const char *const mix_names[] = { "register", "set", "counter", "timeline", "mixed" };

static const char *const reg_fields[] = { "r0", "r1" };
static const char *const set_fields[] = { "s0", "s1" };
static const char *const ctr_fields[] = { "c0", "c1" };
static const char *const tl_fields[] = { "t0", "t1" };
static const char *const elems[] = { "a", "b", "cc", "" };

typedef struct replica {
    crdt_scope *s;
    crdt_scope *open; /* delta being gathered, not shipped yet; NULL if none */
    crdt_origin origin;
    crdt_hlc clock;
} replica;

typedef struct history {
    test_rng r;
    mix m;
    int nrep;
    replica rep[MAXREP];
    crdt_scope *deltas[MAXDELTAS]; /* shipped deltas */
    size_t nd;
    crdt_scope *pool[MAXPOOL]; /* snapshots of states and deltas, for P1 */
    size_t np;
    uint64_t now;
    bool check_delta_law;
} history;

static void hist_init(history *h, uint64_t seed, mix m, int nrep)
{
    memset(h, 0, sizeof(*h));
    test_rng_seed(&h->r, seed);
    h->m = m;
    h->nrep = nrep;
    h->now = 1000 + test_rng_below(&h->r, 100);
    h->check_delta_law = true;
    /* Origins in a random order of their bytes, so replica index and origin order differ. */
    uint8_t ids[MAXREP] = { 1, 2, 3, 4 };
    for (int i = MAXREP - 1; i > 0; i--) {
        int j = (int)test_rng_below(&h->r, (uint64_t)i + 1);
        uint8_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    for (int i = 0; i < nrep; i++) {
        h->rep[i].s = pnew();
        h->rep[i].origin = tu_origin((uint8_t)(ids[i] * 16 + test_rng_below(&h->r, 16)));
    }
}

static void hist_free(history *h)
{
    for (int i = 0; i < h->nrep; i++) {
        crdt_scope_free(h->rep[i].s);
        crdt_scope_free(h->rep[i].open);
    }
    for (size_t i = 0; i < h->nd; i++)
        crdt_scope_free(h->deltas[i]);
    for (size_t i = 0; i < h->np; i++)
        crdt_scope_free(h->pool[i]);
}

static void pool_add(history *h, const crdt_scope *s)
{
    if (h->np < MAXPOOL)
        h->pool[h->np++] = pclone(s);
}

static void ship(history *h, replica *rp)
{
    if (rp->open == NULL)
        return;
    if (h->nd < MAXDELTAS && !crdt_scope_empty(rp->open)) {
        h->deltas[h->nd++] = rp->open;
        if (test_rng_chance(&h->r, 30))
            pool_add(h, rp->open);
    } else {
        crdt_scope_free(rp->open);
    }
    rp->open = NULL;
}

static const char *pick(test_rng *r, const char *const *v, size_t n)
{
    return v[test_rng_below(r, n)];
}
#define PICK(r, v) pick((r), (v), sizeof(v) / sizeof((v)[0]))

static size_t random_bytes(test_rng *r, uint8_t *buf)
{
    static const char *const vals[] = { "", "x", "yy", "Latina", "Roma" };
    if (test_rng_chance(r, 70)) {
        const char *v = PICK(r, vals);
        memcpy(buf, v, strlen(v));
        return strlen(v);
    }
    size_t n = (size_t)test_rng_below(r, 17);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)test_rng_next(r);
    return n;
}

static crdt_type pick_type(history *h)
{
    switch (h->m) {
    case MIX_REGISTER:
        return CRDT_REGISTER;
    case MIX_SET:
        return CRDT_SET;
    case MIX_COUNTER:
        return CRDT_COUNTER;
    case MIX_TIMELINE:
        return CRDT_TIMELINE;
    default:
        return (crdt_type)(1 + test_rng_below(&h->r, 4));
    }
}

static const char *pick_field(history *h, crdt_type t)
{
    switch (t) {
    case CRDT_REGISTER:
        return PICK(&h->r, reg_fields);
    case CRDT_SET:
        return PICK(&h->r, set_fields);
    case CRDT_COUNTER:
        return PICK(&h->r, ctr_fields);
    default:
        return PICK(&h->r, tl_fields);
    }
}

/* One random mutator at replica i. Returns false when the op found nothing to act on. */
static bool do_mutation(history *h, int i, bool allow_remove)
{
    replica *rp = &h->rep[i];
    test_rng *r = &h->r;
    crdt_type t = pick_type(h);
    const char *f = pick_field(h, t);
    uint8_t buf[32];
    size_t len;
    crdt_hlc hlc;
    h->now += test_rng_below(r, 3);
    PCALL(crdt_hlc_send(&rp->clock, h->now, &hlc));

    crdt_scope *before = h->check_delta_law ? pclone(rp->s) : NULL;
    crdt_scope *obefore = h->check_delta_law && rp->open ? pclone(rp->open) : NULL;
    if (rp->open == NULL)
        rp->open = pnew();
    crdt_scope *single = h->check_delta_law ? pnew() : NULL;
    crdt_scope *twin = h->check_delta_law ? pclone(rp->s) : NULL;
    crdt_err err = CRDT_OK, err2 = CRDT_OK;

    int op = (int)test_rng_below(r, 100);
    if (allow_remove && op < 6) {
        err = crdt_field_remove(rp->s, rp->open, f);
        if (twin)
            err2 = crdt_field_remove(twin, single, f);
        crdt_type ft;
        if (err == CRDT_ENOTFOUND)
            PCHECK(crdt_scope_field_type(before ? before : rp->s, f, &ft) == CRDT_ENOTFOUND);
        else
            PCHECK(crdt_scope_field_type(rp->s, f, &ft) == CRDT_ENOTFOUND);
    } else if (t == CRDT_REGISTER) {
        len = random_bytes(r, buf);
        err = crdt_register_set(rp->s, rp->open, &rp->origin, &hlc, f, buf, len);
        if (twin)
            err2 = crdt_register_set(twin, single, &rp->origin, &hlc, f, buf, len);
        size_t n;
        PCALL(crdt_register_count(rp->s, f, &n));
        PCHECK(n == 1); /* a local write has seen every sibling */
    } else if (t == CRDT_SET) {
        const char *e = PICK(r, elems);
        bool removing = allow_remove && test_rng_chance(r, 40);
        if (removing) {
            bool member = crdt_set_contains(rp->s, f, e, strlen(e));
            err = crdt_set_remove(rp->s, rp->open, f, e, strlen(e));
            if (twin)
                err2 = crdt_set_remove(twin, single, f, e, strlen(e));
            PCHECK(member ? err == CRDT_OK : err == CRDT_ENOTFOUND);
        } else {
            err = crdt_set_add(rp->s, rp->open, &rp->origin, f, e, strlen(e));
            if (twin)
                err2 = crdt_set_add(twin, single, &rp->origin, f, e, strlen(e));
        }
        if (err == CRDT_OK)
            PCHECK(crdt_set_contains(rp->s, f, e, strlen(e)) == (removing ? false : true));
    } else if (t == CRDT_COUNTER) {
        int64_t amount = test_rng_range(r, -50, 50);
        int64_t v0 = 0, v1 = 0;
        crdt_err e0 = crdt_counter_value(rp->s, f, &v0);
        err = tu_counter_add(rp->s, rp->open, &rp->origin, f, amount);
        if (twin)
            err2 = tu_counter_add(twin, single, &rp->origin, f, amount);
        PCALL(crdt_counter_value(rp->s, f, &v1));
        PCHECK(v1 == (e0 == CRDT_OK ? v0 : 0) + amount);
    } else {
        size_t n = 0;
        if (test_rng_chance(r, 30) && crdt_timeline_count(rp->s, f, &n) == CRDT_OK && n > 0) {
            crdt_event ev;
            PCALL(crdt_timeline_at(rp->s, f, (size_t)test_rng_below(r, n), &ev));
            crdt_dot id = ev.id;
            err = crdt_timeline_redact(rp->s, rp->open, f, &id);
            if (twin)
                err2 = crdt_timeline_redact(twin, single, f, &id);
        } else {
            len = random_bytes(r, buf);
            crdt_dot id;
            err = crdt_timeline_add(rp->s, rp->open, &rp->origin, &hlc, f, buf, len, &id);
            if (twin)
                err2 = crdt_timeline_add(twin, single, &rp->origin, &hlc, f, buf, len, NULL);
            PCHECK(crdt_origin_cmp(&id.origin, &rp->origin) == 0);
            PCHECK(id.counter == crdt_cc_max(crdt_scope_cc(rp->s), &rp->origin));
        }
    }
    PCHECK(err == CRDT_OK || err == CRDT_ENOTFOUND);
    PCHECK(err == err2 || twin == NULL);
    g_stat_ops += err == CRDT_OK;
    if (err == CRDT_OK) {
        PINVARIANTS(rp->s);
        if (h->check_delta_law) {
            /* The mutator is deterministic: twin made the same change, with a fresh delta. */
            PEQUAL(twin, rp->s);
            PCHECK(crdt_scope_entry_count(single) <= 1); /* small */
            /* state after = state before ⊔ delta; gathered delta = old gathered ⊔ delta. */
            crdt_scope *x = pjoin2(before, single);
            PEQUAL(x, rp->s);
            crdt_scope_free(x);
            if (obefore) {
                x = pjoin2(obefore, single);
                PEQUAL(x, rp->open);
                crdt_scope_free(x);
            } else {
                PEQUAL(single, rp->open);
            }
        }
    } else if (h->check_delta_law) {
        PEQUAL(before, rp->s);
        if (obefore)
            PEQUAL(obefore, rp->open);
    }
    crdt_scope_free(before);
    crdt_scope_free(obefore);
    crdt_scope_free(single);
    crdt_scope_free(twin);
    if (test_rng_chance(r, 60))
        ship(h, rp);
    return err == CRDT_OK;
}

/* Replica j receives something: some shipped deltas in a random order, or i's full state. */
static void do_exchange(history *h)
{
    test_rng *r = &h->r;
    int i = (int)test_rng_below(r, (uint64_t)h->nrep);
    int j = (int)test_rng_below(r, (uint64_t)h->nrep);
    if (i == j)
        j = (j + 1) % h->nrep;
    if (test_rng_chance(r, 30)) {
        PCALL(crdt_scope_join(h->rep[j].s, h->rep[i].s));
    } else if (h->nd > 0) {
        size_t k = 1 + (size_t)test_rng_below(r, h->nd < 6 ? h->nd : 6);
        while (k--) {
            PCALL(crdt_scope_join(h->rep[j].s, h->deltas[test_rng_below(r, h->nd)]));
        }
    }
    PINVARIANTS(h->rep[j].s);
}

static void run_history(history *h, int steps, bool allow_remove)
{
    for (int k = 0; k < steps; k++) {
        if (test_rng_chance(&h->r, 25))
            do_exchange(h);
        else
            do_mutation(h, (int)test_rng_below(&h->r, (uint64_t)h->nrep), allow_remove);
        if (test_rng_chance(&h->r, 15))
            pool_add(h, h->rep[test_rng_below(&h->r, (uint64_t)h->nrep)].s);
    }
    for (int i = 0; i < h->nrep; i++)
        ship(h, &h->rep[i]);
}

/* The join of every replica's full state. */
static crdt_scope *join_all_states(history *h)
{
    crdt_scope *j = pclone(h->rep[0].s);
    for (int i = 1; i < h->nrep; i++)
        PCALL(crdt_scope_join(j, h->rep[i].s));
    return j;
}

/* ---------------------------------------------------------------------------------------- */
/* Case driver                                                                               */

typedef void (*case_fn)(uint64_t seed, int variant);

static void run_cases(const char *name, int prop_id, case_fn fn, int variant)
{
    g_prop = name;
    uint64_t n = 0;
    g_stat_ops = g_stat_deltas = g_stat_entries = 0;
    for (uint64_t c = 0; c < g_cases; c++) {
        if (g_only >= 0 && (uint64_t)g_only != c)
            continue;
        g_case = c;
        fn(test_case_seed(g_seed, (uint64_t)prop_id, c), variant);
        n++;
    }
    g_ran[prop_id] = n;
    if (g_stat_ops > 0)
        fprintf(stderr,
            "%s: %" PRIu64 " cases (%" PRIu64 " mutations, %" PRIu64 " deltas, %" PRIu64
            " entries in final states)\n",
            name, n, g_stat_ops, g_stat_deltas, g_stat_entries);
    else
        fprintf(stderr, "%s: %" PRIu64 " cases\n", name, n);
}

/* P1: join laws on random states (snapshots and deltas of one random history). */
static void case_join_laws(uint64_t seed, int variant)
{
    history h;
    hist_init(&h, seed, (mix)variant, 2 + (int)(seed % 3));
    h.check_delta_law = false; /* P2 checks it; here the states are what matter */
    run_history(&h, 4 + (int)test_rng_below(&h.r, 40), true);
    for (int i = 0; i < h.nrep; i++)
        pool_add(&h, h.rep[i].s);
    g_stat_deltas += h.nd;
    crdt_scope *empty = pnew();
    pool_add(&h, empty);
    crdt_scope_free(empty);

    const crdt_scope *a = h.pool[test_rng_below(&h.r, h.np)];
    const crdt_scope *b = h.pool[test_rng_below(&h.r, h.np)];
    const crdt_scope *c = h.pool[test_rng_below(&h.r, h.np)];
    /* Commutative. */
    crdt_scope *ab = pjoin2(a, b), *ba = pjoin2(b, a);
    PEQUAL(ab, ba);
    PINVARIANTS(ab);
    /* Associative. */
    crdt_scope *ab_c = pjoin2(ab, c);
    crdt_scope *bc = pjoin2(b, c);
    crdt_scope *a_bc = pjoin2(a, bc);
    PEQUAL(ab_c, a_bc);
    /* Idempotent, and an upper bound of both sides. */
    crdt_scope *aa = pjoin2(a, a);
    PEQUAL(aa, a);
    crdt_scope *aba = pjoin2(ab, a), *abb = pjoin2(ab, b);
    PEQUAL(aba, ab);
    PEQUAL(abb, ab);
    PCHECK(crdt_cc_includes(crdt_scope_cc(ab), crdt_scope_cc(a)));
    PCHECK(crdt_cc_includes(crdt_scope_cc(ab), crdt_scope_cc(b)));
    g_stat_entries += crdt_scope_entry_count(ab_c);
    crdt_scope *all[] = { ab, ba, ab_c, bc, a_bc, aa, aba, abb };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        crdt_scope_free(all[i]);
    hist_free(&h);
}

/* P2: delivery order, duplicates and drops do not matter. */
static void case_delivery(uint64_t seed, int variant)
{
    history h;
    hist_init(&h, seed, (mix)variant, 2 + (int)(seed % 3));
    h.check_delta_law = test_rng_chance(&h.r, 50);
    run_history(&h, 4 + (int)test_rng_below(&h.r, 60), true);
    crdt_scope *j = join_all_states(&h);
    PINVARIANTS(j);
    g_stat_deltas += h.nd;
    g_stat_entries += crdt_scope_entry_count(j);

    /* A schedule: a random order, some duplicated, some dropped and re-delivered later. */
    size_t order[MAXDELTAS], late[MAXDELTAS], nlate = 0;
    for (size_t i = 0; i < h.nd; i++)
        order[i] = i;
    test_rng_shuffle(&h.r, order, h.nd);
    crdt_scope *f = pnew();
    for (size_t i = 0; i < h.nd; i++) {
        if (test_rng_chance(&h.r, 25)) {
            late[nlate++] = order[i]; /* dropped */
            continue;
        }
        PCALL(crdt_scope_join(f, h.deltas[order[i]]));
        if (test_rng_chance(&h.r, 20)) /* duplicate, now or later */
            late[nlate++] = order[i];
        if (test_rng_chance(&h.r, 10))
            PCALL(crdt_scope_join(f, h.deltas[order[i]]));
    }
    test_rng_shuffle(&h.r, late, nlate);
    for (size_t i = 0; i < nlate; i++)
        PCALL(crdt_scope_join(f, h.deltas[late[i]]));
    PINVARIANTS(f);
    PEQUAL(f, j);

    /* Every replica, given every delta in its own random order, reaches the same state. */
    for (int i = 0; i < h.nrep; i++) {
        test_rng_shuffle(&h.r, order, h.nd);
        for (size_t k = 0; k < h.nd; k++)
            PCALL(crdt_scope_join(h.rep[i].s, h.deltas[order[k]]));
        PEQUAL(h.rep[i].s, j);
    }
    crdt_scope_free(f);
    crdt_scope_free(j);
    hist_free(&h);
}

/* ---------------------------------------------------------------------------------------- */

static void sync_all(history *h)
{
    crdt_scope *j = join_all_states(h);
    for (int i = 0; i < h->nrep; i++)
        PCALL(crdt_scope_join(h->rep[i].s, j));
    crdt_scope_free(j);
}

typedef struct written {
    crdt_hlc hlc;
    crdt_dot dot;
    uint8_t val[32];
    size_t len;
} written;

/* Register order, winner first: highest HLC, then origin bytes, then counter. */
static int written_rank(const written *a, const written *b)
{
    int c = crdt_hlc_cmp(&a->hlc, &b->hlc);
    if (c == 0)
        c = crdt_dot_cmp(&a->dot, &b->dot);
    return -c;
}

/* P3: concurrent register writes are siblings; a write that has seen them resolves them. */
static void case_register_siblings(uint64_t seed, int variant)
{
    (void)variant;
    history h;
    int k = 2 + (int)(seed % 3);
    hist_init(&h, seed, MIX_REGISTER, k);
    h.check_delta_law = false;
    run_history(&h, (int)test_rng_below(&h.r, 10), true);
    sync_all(&h);
    const char *f = PICK(&h.r, reg_fields);

    /* Every replica writes f concurrently; HLCs from a narrow range, so ties happen. */
    written w[MAXREP];
    crdt_scope *d[MAXREP];
    for (int i = 0; i < k; i++) {
        w[i].hlc = tu_hlc(5000 + test_rng_below(&h.r, 3), (uint16_t)test_rng_below(&h.r, 2));
        w[i].len = random_bytes(&h.r, w[i].val);
        d[i] = pnew();
        PCALL(crdt_register_set(
            h.rep[i].s, d[i], &h.rep[i].origin, &w[i].hlc, f, w[i].val, w[i].len));
        crdt_reg_value rv;
        PCALL(crdt_register_at(h.rep[i].s, f, 0, &rv));
        w[i].dot = rv.dot;
    }
    /* Exchange every delta in a random order. */
    for (int i = 0; i < k; i++) {
        size_t ord[MAXREP];
        for (int m = 0; m < k; m++)
            ord[m] = (size_t)m;
        test_rng_shuffle(&h.r, ord, (size_t)k);
        for (int m = 0; m < k; m++)
            PCALL(crdt_scope_join(h.rep[i].s, d[ord[m]]));
    }
    /* Expected order of the siblings. */
    int rank[MAXREP];
    for (int i = 0; i < k; i++)
        rank[i] = i;
    for (int a = 1; a < k; a++)
        for (int b = a; b > 0 && written_rank(&w[rank[b]], &w[rank[b - 1]]) < 0; b--) {
            int t = rank[b];
            rank[b] = rank[b - 1];
            rank[b - 1] = t;
        }
    for (int i = 0; i < k; i++) {
        PEQUAL(h.rep[i].s, h.rep[0].s);
        size_t n;
        PCALL(crdt_register_count(h.rep[i].s, f, &n));
        PCHECK(n == (size_t)k);
        for (int m = 0; m < k; m++) {
            crdt_reg_value rv;
            PCALL(crdt_register_at(h.rep[i].s, f, (size_t)m, &rv));
            const written *x = &w[rank[m]];
            PCHECK(crdt_dot_cmp(&rv.dot, &x->dot) == 0);
            PCHECK(crdt_hlc_cmp(&rv.hlc, &x->hlc) == 0);
            PCHECK(tu_bytes_eq(rv.value, x->val, x->len));
        }
    }
    /* One replica writes again, with any HLC (even an older one): one value everywhere. */
    int wi = (int)test_rng_below(&h.r, (uint64_t)k);
    crdt_hlc lh = tu_hlc(test_rng_below(&h.r, 6000), 0);
    uint8_t val[32];
    size_t len = random_bytes(&h.r, val);
    crdt_scope *dw = pnew();
    PCALL(crdt_register_set(h.rep[wi].s, dw, &h.rep[wi].origin, &lh, f, val, len));
    for (int i = 0; i < k; i++) {
        PCALL(crdt_scope_join(h.rep[i].s, dw));
        /* Old deltas re-delivered do not bring siblings back. */
        PCALL(crdt_scope_join(h.rep[i].s, d[test_rng_below(&h.r, (uint64_t)k)]));
        size_t n;
        PCALL(crdt_register_count(h.rep[i].s, f, &n));
        PCHECK(n == 1);
        crdt_reg_value rv;
        PCALL(crdt_register_at(h.rep[i].s, f, 0, &rv));
        PCHECK(tu_bytes_eq(rv.value, val, len));
        PCHECK(crdt_hlc_cmp(&rv.hlc, &lh) == 0);
        PEQUAL(h.rep[i].s, h.rep[0].s);
    }
    for (int i = 0; i < k; i++)
        crdt_scope_free(d[i]);
    crdt_scope_free(dw);
    hist_free(&h);
}

/* P4: an add concurrent with a remove of the same element survives. */
static void case_add_wins(uint64_t seed, int variant)
{
    (void)variant;
    history h;
    int k = 2 + (int)(seed % 3);
    hist_init(&h, seed, MIX_SET, k);
    h.check_delta_law = false;
    run_history(&h, (int)test_rng_below(&h.r, 12), true);
    const char *f = PICK(&h.r, set_fields);
    const char *e = PICK(&h.r, elems);
    size_t el = strlen(e);
    /* e is a member, added by one or more replicas; then everyone syncs. */
    int adds = 1 + (int)test_rng_below(&h.r, 3);
    for (int a = 0; a < adds; a++) {
        replica *rp = &h.rep[test_rng_below(&h.r, (uint64_t)k)];
        PCALL(crdt_set_add(rp->s, NULL, &rp->origin, f, e, el));
    }
    sync_all(&h);
    PCHECK(crdt_set_contains(h.rep[0].s, f, e, el));

    /* Replica rm removes e (maybe through a field remove); replica ad adds it concurrently,
     * unless this is a control case; the others do unrelated things or also remove e. */
    int rm = (int)test_rng_below(&h.r, (uint64_t)k);
    int ad = (rm + 1 + (int)test_rng_below(&h.r, (uint64_t)k - 1)) % k;
    bool control = test_rng_chance(&h.r, 25);
    crdt_scope *d[MAXREP];
    for (int i = 0; i < k; i++) {
        replica *rp = &h.rep[i];
        d[i] = pnew();
        if (i == rm || (i != ad && test_rng_chance(&h.r, 30))) {
            if (test_rng_chance(&h.r, 20))
                PCALL(crdt_field_remove(rp->s, d[i], f));
            else
                PCALL(crdt_set_remove(rp->s, d[i], f, e, el));
            PCHECK(!crdt_set_contains(rp->s, f, e, el));
        } else if (i == ad && !control) {
            PCALL(crdt_set_add(rp->s, d[i], &rp->origin, f, e, el));
        } else {
            const char *o = PICK(&h.r, elems);
            if (strcmp(o, e) != 0)
                PCALL(crdt_set_add(rp->s, d[i], &rp->origin, f, o, strlen(o)));
        }
    }
    /* Deliver every delta everywhere, in random orders, with a duplicate. */
    for (int i = 0; i < k; i++) {
        size_t ord[MAXREP];
        for (int m = 0; m < k; m++)
            ord[m] = (size_t)m;
        test_rng_shuffle(&h.r, ord, (size_t)k);
        for (int m = 0; m < k; m++)
            PCALL(crdt_scope_join(h.rep[i].s, d[ord[m]]));
        PCALL(crdt_scope_join(h.rep[i].s, d[ord[0]]));
    }
    for (int i = 0; i < k; i++) {
        PEQUAL(h.rep[i].s, h.rep[0].s);
        PCHECK(crdt_set_contains(h.rep[i].s, f, e, el) == !control);
    }
    for (int i = 0; i < k; i++)
        crdt_scope_free(d[i]);
    hist_free(&h);
}

/* P5a: counter model with no removes: every replica's value is the sum of the increments it
 * knows of (each origin's entry carries its cumulative totals), and after a full exchange the
 * sum of all increments. */
static void case_counter_model(uint64_t seed, int variant)
{
    (void)variant;
    history h;
    int k = 2 + (int)(seed % 3);
    hist_init(&h, seed, MIX_COUNTER, k);
    h.check_delta_law = false;
    const char *f = "c0";
    /* prefix[o][q]: the sum of origin o's first q increments; known[i][o]: how many of o's
     * increments replica i knows (a prefix, since each entry is cumulative). */
    int64_t prefix[MAXREP][64];
    int nops[MAXREP] = { 0 };
    int known[MAXREP][MAXREP] = { { 0 } };
    struct {
        int origin, seq;
    } dinfo[MAXDELTAS];
    size_t nd = 0;
    crdt_scope *ds[MAXDELTAS];
    int steps = 5 + (int)test_rng_below(&h.r, 40);
    int64_t total = 0;
    for (int s = 0; s < steps; s++) {
        int i = (int)test_rng_below(&h.r, (uint64_t)k);
        if (test_rng_chance(&h.r, 60) && nops[i] < 63 && nd < MAXDELTAS) {
            int64_t amount = test_rng_chance(&h.r, 5)
                ? test_rng_range(&h.r, -(INT64_C(1) << 40), INT64_C(1) << 40)
                : test_rng_range(&h.r, -100, 100);
            crdt_scope *d = pnew();
            PCALL(tu_counter_add(h.rep[i].s, d, &h.rep[i].origin, f, amount));
            prefix[i][nops[i] + 1] = (nops[i] ? prefix[i][nops[i]] : 0) + amount;
            nops[i]++;
            known[i][i] = nops[i];
            total += amount;
            dinfo[nd].origin = i;
            dinfo[nd].seq = nops[i];
            ds[nd++] = d;
        } else if (nd > 0 && test_rng_chance(&h.r, 70)) {
            size_t x = (size_t)test_rng_below(&h.r, nd);
            PCALL(crdt_scope_join(h.rep[i].s, ds[x]));
            int o = dinfo[x].origin;
            if (known[i][o] < dinfo[x].seq)
                known[i][o] = dinfo[x].seq;
        } else {
            int j = (int)test_rng_below(&h.r, (uint64_t)k);
            PCALL(crdt_scope_join(h.rep[i].s, h.rep[j].s));
            for (int o = 0; o < k; o++)
                if (known[i][o] < known[j][o])
                    known[i][o] = known[j][o];
        }
        for (int r = 0; r < k; r++) {
            int64_t want = 0;
            bool any = false;
            for (int o = 0; o < k; o++) {
                if (known[r][o] > 0) {
                    want += prefix[o][known[r][o]];
                    any = true;
                }
            }
            int64_t v = 0;
            crdt_err err = crdt_counter_value(h.rep[r].s, f, &v);
            if (!any) {
                PCHECK(err == CRDT_ENOTFOUND);
            } else {
                PCALL(err);
                PCHECK(v == want);
                /* One live entry per origin it knows of (SPEC.md I8). */
                int origins = 0;
                for (int o = 0; o < k; o++)
                    origins += known[r][o] > 0;
                PCHECK(crdt_scope_entry_count(h.rep[r].s) == (size_t)origins);
            }
        }
    }
    sync_all(&h);
    if (nd > 0) {
        int64_t v;
        PCALL(crdt_counter_value(h.rep[0].s, f, &v));
        PCHECK(v == total);
    }
    for (size_t x = 0; x < nd; x++)
        crdt_scope_free(ds[x]);
    hist_free(&h);
}

/* P5b: one replica, random ops of every type, reads checked against a plain model. */
typedef struct model {
    bool reg_set;
    uint8_t reg[32];
    size_t reglen;
    bool member[4];
    int64_t ctr;
    bool ctr_set;
    int nev;
    crdt_dot ev[64];
    bool redacted[64];
    uint8_t content[64][32];
    size_t clen[64];
    crdt_hlc evhlc[64];
} model;

static void case_sequential_model(uint64_t seed, int variant)
{
    (void)variant;
    test_rng r;
    test_rng_seed(&r, seed);
    crdt_scope *s = pnew();
    crdt_origin o = tu_origin((uint8_t)test_rng_below(&r, 256));
    model m;
    memset(&m, 0, sizeof(m));
    crdt_hlc clock = { 0, 0 };
    uint64_t now = 1;
    int steps = 5 + (int)test_rng_below(&r, 40);
    for (int step = 0; step < steps; step++) {
        crdt_hlc hlc;
        now += test_rng_below(&r, 2);
        PCALL(crdt_hlc_send(&clock, now, &hlc));
        int op = (int)test_rng_below(&r, 9);
        size_t ei = (size_t)test_rng_below(&r, 4);
        const char *e = elems[ei];
        switch (op) {
        case 0:
            m.reglen = random_bytes(&r, m.reg);
            PCALL(crdt_register_set(s, NULL, &o, &hlc, "r", m.reg, m.reglen));
            m.reg_set = true;
            break;
        case 1:
            PCALL(crdt_set_add(s, NULL, &o, "s", e, strlen(e)));
            m.member[ei] = true;
            break;
        case 2: {
            crdt_err err = crdt_set_remove(s, NULL, "s", e, strlen(e));
            PCHECK(err == (m.member[ei] ? CRDT_OK : CRDT_ENOTFOUND));
            m.member[ei] = false;
            break;
        }
        case 3: {
            int64_t a = test_rng_range(&r, -1000, 1000);
            PCALL(tu_counter_add(s, NULL, &o, "c", a));
            m.ctr += a;
            m.ctr_set = true;
            break;
        }
        case 4:
        case 5:
            if (m.nev < 64) {
                m.clen[m.nev] = random_bytes(&r, m.content[m.nev]);
                /* Timeline HLCs need not follow the clock: events may be back-dated. */
                m.evhlc[m.nev] = test_rng_chance(&r, 30) ? tu_hlc(test_rng_below(&r, 50), 0) : hlc;
                PCALL(crdt_timeline_add(s, NULL, &o, &m.evhlc[m.nev], "t", m.content[m.nev],
                    m.clen[m.nev], &m.ev[m.nev]));
                m.redacted[m.nev] = false;
                m.nev++;
            }
            break;
        case 6:
            if (m.nev > 0) {
                int x = (int)test_rng_below(&r, (uint64_t)m.nev);
                PCALL(crdt_timeline_redact(s, NULL, "t", &m.ev[x]));
                m.redacted[x] = true;
            }
            break;
        case 7: {
            static const char *const fs[] = { "r", "s", "c", "t" };
            int fi = (int)test_rng_below(&r, 4);
            bool has = (fi == 0 && m.reg_set) || (fi == 2 && m.ctr_set) || (fi == 3 && m.nev > 0)
                || (fi == 1 && (m.member[0] || m.member[1] || m.member[2] || m.member[3]));
            crdt_err err = crdt_field_remove(s, NULL, fs[fi]);
            PCHECK(err == (has ? CRDT_OK : CRDT_ENOTFOUND));
            if (fi == 0)
                m.reg_set = false;
            else if (fi == 1)
                memset(m.member, 0, sizeof(m.member));
            else if (fi == 2)
                m.ctr_set = false, m.ctr = 0;
            else
                m.nev = 0;
            break;
        }
        default: {
            /* A round trip through the raw entries gives an equal scope. */
            crdt_scope *c = pnew();
            crdt_entry en;
            for (size_t i = 0; i < crdt_scope_entry_count(s); i++) {
                PCALL(crdt_scope_entry_at(s, i, &en));
                PCALL(crdt_scope_append(c, &en));
            }
            PCALL(crdt_scope_set_cc(c, crdt_scope_cc(s)));
            PEQUAL(c, s);
            crdt_scope_free(c);
            break;
        }
        }
        PINVARIANTS(s);
        /* Reads against the model. */
        size_t n;
        crdt_err err = crdt_register_count(s, "r", &n);
        if (m.reg_set) {
            PCALL(err);
            PCHECK(n == 1);
            crdt_reg_value rv;
            PCALL(crdt_register_at(s, "r", 0, &rv));
            PCHECK(tu_bytes_eq(rv.value, m.reg, m.reglen));
        } else {
            PCHECK(err == CRDT_ENOTFOUND);
        }
        size_t members = 0;
        for (size_t i = 0; i < 4; i++) {
            PCHECK(crdt_set_contains(s, "s", elems[i], strlen(elems[i])) == m.member[i]);
            members += m.member[i];
        }
        err = crdt_set_count(s, "s", &n);
        PCHECK(members ? (err == CRDT_OK && n == members) : err == CRDT_ENOTFOUND);
        int64_t v;
        err = crdt_counter_value(s, "c", &v);
        PCHECK(m.ctr_set ? (err == CRDT_OK && v == m.ctr) : err == CRDT_ENOTFOUND);
        err = crdt_timeline_count(s, "t", &n);
        PCHECK(m.nev ? (err == CRDT_OK && n == (size_t)m.nev) : err == CRDT_ENOTFOUND);
        crdt_event prev;
        for (int i = 0; i < m.nev; i++) {
            crdt_event ev;
            PCALL(crdt_timeline_at(s, "t", (size_t)i, &ev));
            if (i > 0) {
                int c = crdt_hlc_cmp(&prev.hlc, &ev.hlc);
                PCHECK(c < 0 || (c == 0 && crdt_dot_cmp(&prev.id, &ev.id) < 0));
            }
            int x = -1;
            for (int y = 0; y < m.nev; y++)
                if (crdt_dot_cmp(&m.ev[y], &ev.id) == 0)
                    x = y;
            PCHECK(x >= 0);
            PCHECK(crdt_hlc_cmp(&ev.hlc, &m.evhlc[x]) == 0);
            PCHECK(ev.redacted == m.redacted[x]);
            if (m.redacted[x])
                PCHECK(ev.content.len == 0);
            else
                PCHECK(tu_bytes_eq(ev.content, m.content[x], m.clen[x]));
            prev = ev;
        }
    }
    crdt_scope_free(s);
}

/* ---------------------------------------------------------------------------------------- */

#define MIX_TESTS(prefix, fn, id, label)                                                           \
    static void prefix##_register(void **state)                                                    \
    {                                                                                              \
        (void)state;                                                                               \
        run_cases(label " (register)", id, fn, MIX_REGISTER);                                      \
    }                                                                                              \
    static void prefix##_set(void **state)                                                         \
    {                                                                                              \
        (void)state;                                                                               \
        run_cases(label " (set)", id + 1, fn, MIX_SET);                                            \
    }                                                                                              \
    static void prefix##_counter(void **state)                                                     \
    {                                                                                              \
        (void)state;                                                                               \
        run_cases(label " (counter)", id + 2, fn, MIX_COUNTER);                                    \
    }                                                                                              \
    static void prefix##_timeline(void **state)                                                    \
    {                                                                                              \
        (void)state;                                                                               \
        run_cases(label " (timeline)", id + 3, fn, MIX_TIMELINE);                                  \
    }                                                                                              \
    static void prefix##_mixed(void **state)                                                       \
    {                                                                                              \
        (void)state;                                                                               \
        run_cases(label " (mixed)", id + 4, fn, MIX_ALL);                                          \
    }

MIX_TESTS(test_p1_join_laws, case_join_laws, 0, "P1 join laws")
MIX_TESTS(test_p2_delivery, case_delivery, 5, "P2 delivery")

static void test_p3_register_siblings(void **state)
{
    (void)state;
    run_cases("P3 register siblings", 10, case_register_siblings, 0);
}

static void test_p4_add_wins(void **state)
{
    (void)state;
    run_cases("P4 add wins", 11, case_add_wins, 0);
}

static void test_p5_counter_model(void **state)
{
    (void)state;
    run_cases("P5 counter model", 12, case_counter_model, 0);
}

static void test_p5_sequential_model(void **state)
{
    (void)state;
    run_cases("P5 sequential model", 13, case_sequential_model, 0);
}

int main(void)
{
    g_seed = test_seed();
    g_cases = test_env_u64("CRDT_PROPERTY_CASES", 10000);
    if (getenv("CRDT_PROPERTY_CASE") != NULL) {
        g_only = (long long)test_env_u64("CRDT_PROPERTY_CASE", 0);
        if ((uint64_t)g_only >= g_cases)
            g_cases = (uint64_t)g_only + 1;
    }
    (void)mix_names;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_p1_join_laws_register),
        cmocka_unit_test(test_p1_join_laws_set),
        cmocka_unit_test(test_p1_join_laws_counter),
        cmocka_unit_test(test_p1_join_laws_timeline),
        cmocka_unit_test(test_p1_join_laws_mixed),
        cmocka_unit_test(test_p2_delivery_register),
        cmocka_unit_test(test_p2_delivery_set),
        cmocka_unit_test(test_p2_delivery_counter),
        cmocka_unit_test(test_p2_delivery_timeline),
        cmocka_unit_test(test_p2_delivery_mixed),
        cmocka_unit_test(test_p3_register_siblings),
        cmocka_unit_test(test_p4_add_wins),
        cmocka_unit_test(test_p5_counter_model),
        cmocka_unit_test(test_p5_sequential_model),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc != 0)
        fprintf(stderr, "replay with TEST_SEED=0x%016" PRIx64 " (and CRDT_PROPERTY_CASE=<case>)\n",
            g_seed);
    return rc;
}
