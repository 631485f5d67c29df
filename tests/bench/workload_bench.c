/*
 * workload-bench - the "cases" workload of the peer comparison (issue 18; README.md says what it
 * is and gives the peers' figures of the same sittings) run through real pattod processes on
 * 127.0.0.1, printing patto's row of that table. A program run by hand, never a ctest test.
 *
 *   W1  node A opens N records (12 fields over 6 scopes, values from a seeded PRNG, synthetic)
 *       with case.batch (up to 1000 items a batch), then applies U updates, one edit per
 *       batch item = one delta (40 % set one of 5 scalars, 30 % add a skill, 30 % append a
 *       timeline event), 1000 items a batch: durable group commits, every delta signed and
 *       encrypted. creates/s, updates/s, ops/s, A's RSS.
 *   W2  full sync: B (read on the 6 scopes of every case: one consent.grant a case, untimed,
 *       written after W1) starts empty; from its first connection (through a byte-counting
 *       proxy) until its digest (version vectors and every tag's state) equals the digest A had
 *       before B started (A writes nothing meanwhile); then every
 *       case.show of B is compared with A's (timed apart).
 *       concurrent + incremental: C (write on the 5 updated scopes, read on anagrafica) gets a
 *       full copy (untimed); B and C are stopped; A makes C updates; A is stopped and C started,
 *       C makes C updates (so they are apart: the other node is down); then A and B are started
 *       together: time from the first connection until the three digests are equal; wire bytes
 *       of all three links over 4C delivered updates (each side's C updates reach two nodes).
 *   W3  A's data.mdb (st_blocks * 512 and st_size) after W1 and after W2.
 *
 * Usage: workload-bench [--records N] [--updates U] [--concurrent C] [--seed S] [--keep]
 *                       [--debug] [--memory-mb MB] [--peer FILE]...
 * --memory-mb MB: every node's [node] memory_mb (default: pattod's, 128), to see what a bound
 * costs, e.g. the park's share in the full sync (README "Fifth stop").
 * --debug: the nodes log at level debug (with --keep, their logs stay in the network's
 * directory: sync.vv and sync.answer say who asked whom for what).
 * --peer FILE: the output of the peers' `node --expose-gc bench.mjs PEER` at the same N/U/C
 * (its RESULT line), to print the peer's row and patto/peer ratios.
 * Only synthetic data; only 127.0.0.1.
 */
#include "harness.h"
#include "nb_common.h"
#include "node_bench_ctl.h"
#include "node_bench_proxy.h"

#include <proto/proto.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PATTO_BIN
#define PATTO_BIN "patto"
#endif
#ifndef PATTOD_BIN
#define PATTOD_BIN "pattod"
#endif

#define PROG "workload-bench"
#define FAIL(...) nb_fail(PROG, __VA_ARGS__)
#define CALL(...) nb_call(PROG, __VA_ARGS__)
#define BATCH 1000
#define PURPOSE "integrazione"

enum { A = 0, B = 1, C = 2, NNODES = 3 };

/* ---------------------------------------------------------------------------------------- */
/* The seeded generator (splitmix64) and the records                                         */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned rn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

#define PICK(arr) (arr)[rn((unsigned)(sizeof(arr) / sizeof((arr)[0])))]

static const char *const nomi[20] = { "Amina", "Kwame", "Yusuf", "Mariam", "Ibrahim", "Fatou",
    "Samir", "Aisha", "Omar", "Nadia", "Tesfaye", "Lamin", "Chiara", "Giulia", "Mamadou", "Rahel",
    "Bilal", "Awa", "Karim", "Selam" };
static const char *const cognomi[20] = { "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
    "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Diallo", "Traore",
    "Mensah", "Haile", "Khan", "Hossain", "Benali", "Okafor" };
static const char *const paesi[20] = { "SEN", "NGA", "MAR", "EGY", "BGD", "PAK", "TUN", "GMB",
    "MLI", "CIV", "ERI", "AFG", "GHA", "ALB", "UKR", "PER", "ECU", "LKA", "IND", "CHN" };
static const char *const permessi[8] = { "lavoro-subordinato", "lavoro-autonomo", "famiglia",
    "studio", "asilo", "protezione-sussidiaria", "protezione-speciale", "attesa-occupazione" };
static const char *const livelli[6] = { "pre-A1", "A1", "A2", "B1", "B2", "C1" };
static const char *const comuni[12] = { "058091", "015146", "001272", "063049", "082053", "048017",
    "037006", "027042", "010025", "072006", "087015", "092009" };
static const char *const skills[24] = { "saldatura", "cucina", "pulizie", "magazzino", "muratura",
    "elettricista", "idraulica", "giardinaggio", "assistenza-anziani", "sartoria", "guida-muletto",
    "informatica-base", "contabilita", "vendita", "agricoltura", "panificazione", "falegnameria",
    "meccanica", "verniciatura", "logistica", "ristorazione", "traduzione", "cura-bambini",
    "imbianchino" };
static const char *const ev_types[10] = { "colloquio", "orientamento", "corso", "tirocinio",
    "visita", "invio", "rinnovo", "verifica", "mediazione", "chiusura" };
static const char *const ev_orgs[6]
    = { "comune-1", "cpia-1", "prefettura-1", "cpi-1", "coop-1", "asl-1" };
static const char *const words[16] = { "incontro", "svolto", "documenti", "consegnati", "richiesta",
    "inviata", "esito", "positivo", "da", "rivedere", "con", "mediatore", "appuntamento", "fissato",
    "per", "gennaio" };

/* Append "servizi.eventi+={...}" with a random event to out. */
static void event_edit(char *out, size_t len)
{
    char note[160] = "";
    unsigned nw = 3 + rn(4);
    for (unsigned w = 0; w < nw; w++) {
        strcat(note, w ? " " : "");
        strcat(note, PICK(words));
    }
    snprintf(out, len,
        "servizi.eventi+={\"at\":\"2025-%02u-%02uT%02u:%02u:00Z\",\"type\":\"%s\",\"by\":\"%s\","
        "\"note\":\"%s\"}",
        1 + rn(12), 1 + rn(28), 8 + rn(10), rn(60), PICK(ev_types), PICK(ev_orgs), note);
}

/* One update of the W1 mix (40 % scalar, 30 % skill, 30 % event), as one edit. */
static void update_edit(char *out, size_t len)
{
    unsigned r = rn(100);
    if (r < 40) {
        switch (rn(5)) {
        case 0:
            snprintf(out, len, "documenti.permesso_tipo=%s", PICK(permessi));
            break;
        case 1:
            snprintf(out, len, "documenti.permesso_scadenza=%u-%02u-%02u", 2025 + rn(4), 1 + rn(12),
                1 + rn(28));
            break;
        case 2:
            snprintf(out, len, "lingua.livello=%s", PICK(livelli));
            break;
        case 3:
            snprintf(out, len, "lingua.ore_previste=%u", rn(400));
            break;
        default:
            snprintf(out, len, "contatti.comune_residenza=%s", PICK(comuni));
            break;
        }
    } else if (r < 70) {
        snprintf(out, len, "competenze.competenze+=%s", PICK(skills));
    } else {
        event_edit(out, len);
    }
}

/* The edits opening one record: 12 fields over 6 scopes (a set of 2-4, a timeline of 1-3). */
static json_object *record_edits(void)
{
    json_object *e = json_object_new_array();
    char buf[400];
#define ADD(...)                                                                                   \
    do {                                                                                           \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                                   \
        json_object_array_add(e, json_object_new_string(buf));                                     \
    } while (0)
    ADD("anagrafica.nome=%s", PICK(nomi));
    ADD("anagrafica.cognome=%s", PICK(cognomi));
    unsigned y = 1960 + rn(45), m = 1 + rn(12), d = 1 + rn(28);
    ADD("anagrafica.data_nascita=%u-%02u-%02u", y, m, d);
    ADD("anagrafica.paese_nascita=%s", PICK(paesi));
    static const char cons[] = "BCDFGLMNPRSTVZ";
    char cf[17];
    snprintf(cf, sizeof(cf), "%c%c%c%c%c%c%02u%c%02uZ%03u", cons[rn(14)], cons[rn(14)],
        cons[rn(14)], cons[rn(14)], cons[rn(14)], cons[rn(14)], y % 100, "ABCDEHLMPRST"[m - 1],
        d + (rn(2) ? 40 : 0), 100 + rn(900));
    th_cf_check(cf);
    ADD("anagrafica.codice_fiscale=%s", cf);
    ADD("documenti.permesso_tipo=%s", PICK(permessi));
    ADD("documenti.permesso_scadenza=%u-%02u-%02u", 2025 + rn(4), 1 + rn(12), 1 + rn(28));
    ADD("lingua.livello=%s", PICK(livelli));
    ADD("lingua.ore_previste=%u", rn(400));
    ADD("contatti.comune_residenza=%s", PICK(comuni));
    unsigned ns = 2 + rn(3), picked = 0;
    for (unsigned s = 0; s < ns; s++) {
        unsigned k;
        do
            k = rn(24);
        while (picked & (1u << k));
        picked |= 1u << k;
        ADD("competenze.competenze+=%s", skills[k]);
    }
    unsigned nev = 1 + rn(3);
    for (unsigned v = 0; v < nev; v++) {
        event_edit(buf, sizeof(buf));
        json_object_array_add(e, json_object_new_string(buf));
    }
#undef ADD
    return e;
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes                                                                                      */

/* Send one case.batch of items; fail unless every item was created/updated. Returns the
 * answer (owned). */
static json_object *batch(nb_ctl *c, json_object *items, long *deltas)
{
    json_object *req = json_object_new_object();
    json_object_object_add(req, "dry_run", json_object_new_boolean(0));
    json_object_object_add(req, "items", items);
    const char *arg = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    json_object *doc = CALL(c, "case.batch", &arg, 1);
    json_object_put(req);
    if (nb_jint(doc, "refused") != 0 || nb_jint(doc, "exists") != 0) {
        json_object *r = nb_json_at(doc, "results");
        for (size_t i = 0; r != NULL && i < json_object_array_length(r); i++) {
            json_object *x = json_object_array_get_idx(r, i);
            const char *st = json_object_get_string(nb_json_at(x, "state"));
            if (st != NULL && strcmp(st, "created") != 0 && strcmp(st, "updated") != 0)
                FAIL("case.batch item %zu %s: %s", i, st,
                    json_object_get_string(nb_json_at(x, "reason")));
        }
        FAIL("case.batch refused items");
    }
    *deltas += nb_jint(doc, "deltas");
    return doc;
}

/* n updates of the mix to random cases, in batches; returns deltas written. */
static long updates(nb_ctl *c, char (*ids)[PROTO_CASE_ID_TEXT_SIZE], long nids, long n)
{
    long deltas = 0;
    char buf[400];
    for (long done = 0; done < n;) {
        long k = n - done < BATCH ? n - done : BATCH;
        json_object *items = json_object_new_array();
        for (long j = 0; j < k; j++) {
            json_object *it = json_object_new_object();
            json_object_object_add(it, "case", json_object_new_string(ids[rnd() % (uint64_t)nids]));
            update_edit(buf, sizeof(buf));
            json_object *e = json_object_new_array();
            json_object_array_add(e, json_object_new_string(buf));
            json_object_object_add(it, "edits", e);
            json_object_array_add(items, it);
        }
        json_object *doc = batch(c, items, &deltas);
        if (nb_jint(doc, "updated") != k)
            FAIL("case.batch updated %lld of %ld", (long long)nb_jint(doc, "updated"), k);
        json_object_put(doc);
        done += k;
    }
    return deltas;
}

static void grant(nb_ctl *c, const char *id, const char *org, const char *scopes, const char *acc)
{
    const char *args[]
        = { id, org, scopes, PURPOSE, "public-task", acc, "", "", "L. 328/2000 art. 22" };
    json_object_put(CALL(c, "consent.grant", args, 9));
}

static void mdb_size(th_net *net, size_t i, long long *disk, long long *size)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/data.mdb", net->nodes[i].dir);
    struct stat st;
    if (stat(path, &st) != 0)
        FAIL("cannot stat %s", path);
    *disk = (long long)st.st_blocks * 512;
    *size = (long long)st.st_size;
}

/* Whether the digests of the nodes in which[] are equal: version vectors and tag states, or
 * (cheap) with vv_only the version vectors, with nothing in hand at any of them. */
static bool digests_equal(nb_ctl *c, const size_t *which, size_t n, bool vv_only)
{
    static const char *const vv[] = { "vv" };
    const char *const *args = vv_only ? vv : NULL;
    json_object *d0 = CALL(&c[which[0]], "digest", args, vv_only ? 1 : 0);
    bool same = !vv_only || nb_jint(d0, "in_hand") == 0;
    for (size_t k = 1; k < n && same; k++) {
        json_object *d = CALL(&c[which[k]], "digest", args, vv_only ? 1 : 0);
        same = nb_json_same(nb_json_at(d0, "vv"), nb_json_at(d, "vv"))
            && (vv_only ? nb_jint(d, "in_hand") == 0
                        : nb_json_same(nb_json_at(d0, "tags"), nb_json_at(d, "tags")));
        json_object_put(d);
    }
    json_object_put(d0);
    return same;
}

/* Wait until the nodes in which[] are equal: the cheap probe first, then whole digests (which
 * read and hash every scope state: polling them would slow the sync being measured). Returns
 * the time just after the probe of the round whose whole digests agreed. */
static double wait_equal(nb_ctl *c, const size_t *which, size_t n, double limit_s, const char *what)
{
    double t0 = nb_now_s();
    for (;;) {
        bool near = digests_equal(c, which, n, true);
        double seen = nb_now_s();
        if (near && digests_equal(c, which, n, false))
            return seen; /* when the probe saw them equal: the whole digests only confirm it */
        if (nb_now_s() - t0 > limit_s)
            FAIL("%s: no convergence within %.0f s", what, limit_s);
        nb_sleep_ms(near ? 100 : 5);
    }
}

/* The node's traffic since its start (status "traffic"): what it sent, and the headers and
 * bodies it got that it held already. */
static void traffic_line(nb_ctl *c, const char *who)
{
    json_object *st = CALL(c, "status", NULL, 0);
    json_object *tr = nb_json_at(st, "traffic");
    printf("traffic of %s: sent %lld frames, %lld bytes, %lld headers, %lld bodies; got %lld "
           "headers (%lld held already), %lld bodies (%lld held already); parked %lld bodies "
           "that came before their key, %lld of them taken once it came, %lld dropped\n",
        who, (long long)nb_jint(tr, "frames_sent"), (long long)nb_jint(tr, "bytes_sent"),
        (long long)nb_jint(tr, "headers_sent"), (long long)nb_jint(tr, "bodies_sent"),
        (long long)nb_jint(tr, "headers_got"), (long long)nb_jint(tr, "headers_dup"),
        (long long)nb_jint(tr, "bodies_got"), (long long)nb_jint(tr, "bodies_dup"),
        (long long)nb_jint(tr, "parked"), (long long)nb_jint(tr, "unparked"),
        (long long)nb_jint(tr, "park_dropped"));
    json_object_put(st);
}

static uint64_t sum_bytes(nb_proxy *const *p, size_t n, double *first)
{
    uint64_t b = 0;
    *first = 0;
    for (size_t i = 0; i < n; i++) {
        nb_proxy_counts k;
        nb_proxy_get(p[i], &k);
        b += k.to_target + k.from_target;
        if (k.first_s > 0 && (*first == 0 || k.first_s < *first))
            *first = k.first_s;
    }
    return b;
}

static double jdbl(json_object *doc, const char *path)
{
    json_object *v = nb_json_at(doc, path);
    return v != NULL ? json_object_get_double(v) : -1;
}

/* The peer's figures from a file holding bench.mjs's "RESULT {...}" line, and patto's ratios
 * to them (time: patto / peer, so above 1 is patto slower; bytes: patto / peer). */
static void peer_ratios(const char *path, long n, long u, long cc, double ops, double full_s,
    double full_b, double inc_s, double inc_b, double per_update)
{
    FILE *f = fopen(path, "r");
    static char buf[1 << 16];
    size_t len = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[len] = 0;
    const char *j = strstr(buf, "RESULT ");
    json_object *doc = j != NULL ? json_tokener_parse(j + 7) : NULL;
    if (doc == NULL) {
        printf("peer %s: no RESULT line\n", path);
        return;
    }
    const char *name = json_object_get_string(nb_json_at(doc, "peer"));
    if (nb_jint(doc, "N") != n || nb_jint(doc, "U") != u || nb_jint(doc, "C") != cc)
        printf("peer %s: N/U/C %lld/%lld/%lld differ from this run's: not comparable\n", path,
            (long long)nb_jint(doc, "N"), (long long)nb_jint(doc, "U"),
            (long long)nb_jint(doc, "C"));
    double p_ops = jdbl(doc, "w1/opsPerS"), p_full = jdbl(doc, "w2/full/ms") / 1e3,
           p_fullb = jdbl(doc, "w2/full/bytes"), p_inc = jdbl(doc, "w2/incremental/ms") / 1e3,
           p_incb = jdbl(doc, "w2/incremental/bytes");
    double p_per = p_incb / (double)(4 * cc);
    printf("| %s (same sitting) | %.1fk | %.2f s, %.2f MB | %.2f s, %.2f MB | %.0f | no / no / no "
           "|\n",
        name, p_ops / 1e3, p_full, p_fullb / 1e6, p_inc, p_incb / 1e6, p_per);
    printf("RATIO patto/%s: W1 ops/s %.2f; W2 full sync time %.2f, bytes %.2f; W2 incremental "
           "time %.2f, bytes %.2f; bytes per delivered update %.2f\n",
        name, ops / p_ops, full_s / p_full, full_b / p_fullb, inc_s / p_inc, inc_b / p_incb,
        per_update / p_per);
    json_object_put(doc);
}

static void usage(void)
{
    fprintf(stderr,
        "usage: " PROG " [--records N] [--updates U] [--concurrent C] [--seed S] [--keep]\n"
        "       [--debug] [--memory-mb MB] [--peer FILE]...\n"
        "  --records N     records created in W1; default 10000\n"
        "  --updates U     updates in W1; default 50000\n"
        "  --concurrent C  updates made by A and by C each while apart; default U/10\n"
        "  --seed S        seed of the generator; default 20240611\n"
        "  --keep          keep the network's directory\n"
        "  --debug         the nodes log at level debug (their logs are kept with --keep)\n"
        "  --memory-mb MB  every node's [node] memory_mb (32-1048576); default pattod's (128)\n"
        "  --peer FILE     a result of the peers' harness (bench.mjs's RESULT line) to print\n"
        "                  patto/peer ratios against (repeatable, up to 8)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long n = 10000, u = 50000, cc = -1, seed = 20240611, memory_mb = 0;
    bool keep = false, debug = false;
    const char *peers[8];
    size_t npeers = 0;
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        long *dst = NULL;
        if (strcmp(argv[i], "--records") == 0 && has)
            dst = &n;
        else if (strcmp(argv[i], "--updates") == 0 && has)
            dst = &u;
        else if (strcmp(argv[i], "--concurrent") == 0 && has)
            dst = &cc;
        else if (strcmp(argv[i], "--seed") == 0 && has)
            dst = &seed;
        else if (strcmp(argv[i], "--memory-mb") == 0 && has)
            dst = &memory_mb;
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else if (strcmp(argv[i], "--debug") == 0)
            debug = true;
        else if (strcmp(argv[i], "--peer") == 0 && has && npeers < 8)
            peers[npeers++] = argv[++i];
        else
            usage();
        if (dst != NULL && (*dst = nb_positive(argv[++i])) < 0)
            usage();
    }
    if (cc < 0)
        cc = u / 10 > 0 ? u / 10 : 1;
    if (memory_mb != 0 && (memory_mb < 32 || memory_mb > 1048576))
        usage();
    rng_state = (uint64_t)seed;
    th_programs(PATTO_BIN, PATTOD_BIN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    static const char *const orgs[NNODES]
        = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };
    static const char *const names[NNODES] = { "comune-1", "cpia-1", "prefettura-1" };
    th_net net;
    nb_cur_net = &net;
    if (th_net_make(&net, NNODES, orgs) != 0)
        FAIL("cannot set up the network");
    net.keep = keep;
    /* p[x][y]: x dials y through it (x != y). */
    nb_proxy *p[NNODES][NNODES] = { { NULL } }, *all[6];
    size_t np = 0;
    for (size_t x = 0; x < NNODES; x++) {
        char conf[300] = "\n[dial]\n";
        for (size_t y = 0; y < NNODES; y++) {
            if (x == y)
                continue;
            if ((p[x][y] = nb_proxy_new(net.nodes[y].port)) == NULL)
                FAIL("cannot start a proxy");
            all[np++] = p[x][y];
            char line[100];
            snprintf(line, sizeof(line), "%s = tcp://127.0.0.1:%u\n", names[y],
                (unsigned)nb_proxy_port(p[x][y]));
            strcat(conf, line);
        }
        char node_conf[80] = "";
        if (memory_mb != 0)
            snprintf(node_conf, sizeof(node_conf), "\n[node]\nmemory_mb = %ld\n", memory_mb);
        if (th_conf_append(&net, x, conf) != 0 || th_conf_append(&net, x, node_conf) != 0
            || (debug && th_conf_append(&net, x, "\n[node]\nlog_level = debug\n") != 0))
            FAIL("cannot edit a pattod.conf");
    }
    for (size_t x = 0; x < NNODES; x++)
        if (th_join(&net, x) != 0)
            FAIL("cannot start the nodes");
    if (th_stop(&net, B, SIGTERM) != 0 || th_stop(&net, C, SIGTERM) != 0)
        FAIL("cannot stop B and C");
    printf("network %s: A=comune-1 writes; B=cpia-1 (read, 6 scopes); C=prefettura-1 (write on "
           "5 scopes, read anagrafica); every link through a byte-counting proxy\n",
        net.root);
    printf("N=%ld records, U=%ld updates, C=%ld concurrent updates each, seed %ld, memory_mb %ld\n",
        n, u, cc, seed, memory_mb != 0 ? memory_mb : 128);

    nb_ctl ctl[NNODES];
    memset(ctl, 0, sizeof(ctl));
    nb_ctl_open_wait(PROG, &net, A, &ctl[A]);
    char(*ids)[PROTO_CASE_ID_TEXT_SIZE] = calloc((size_t)n, sizeof(*ids));
    if (ids == NULL)
        FAIL("out of memory");

    /* W1: creates. */
    long create_deltas = 0;
    double t0 = nb_now_s();
    for (long done = 0; done < n;) {
        long k = n - done < BATCH ? n - done : BATCH;
        json_object *items = json_object_new_array();
        for (long j = 0; j < k; j++) {
            json_object *it = json_object_new_object();
            json_object_object_add(it, "edits", record_edits());
            json_object_array_add(items, it);
        }
        json_object *doc = batch(&ctl[A], items, &create_deltas);
        json_object *r = nb_json_at(doc, "results");
        if (nb_jint(doc, "created") != k || r == NULL)
            FAIL("case.batch created %lld of %ld", (long long)nb_jint(doc, "created"), k);
        for (long j = 0; j < k; j++) {
            json_object *x = json_object_array_get_idx(r, (size_t)j);
            long idx = (long)nb_jint(x, "index");
            if (idx < 0 || idx >= k)
                idx = j;
            snprintf(ids[done + idx], PROTO_CASE_ID_TEXT_SIZE, "%s",
                json_object_get_string(nb_json_at(x, "id")));
        }
        json_object_put(doc);
        done += k;
    }
    double t_create = nb_now_s() - t0;
    double t1 = nb_now_s();
    long update_deltas = updates(&ctl[A], ids, n, u);
    double t_update = nb_now_s() - t1;
    double t_w1 = t_create + t_update;
    long rss = nb_proc_kib(net.nodes[A].pid, "VmRSS:"),
         hwm = nb_proc_kib(net.nodes[A].pid, "VmHWM:");
    long long w1_disk, w1_size;
    mdb_size(&net, A, &w1_disk, &w1_size);
    printf("W1 local writes on A: %ld creates (%ld deltas, case.batch of up to %d items) in %.2f s "
           "= %.0f creates/s; %ld updates (one edit = one delta a batch item, %ld deltas, "
           "batches of %d: durable group commits, every delta signed and encrypted) in %.2f s = "
           "%.0f updates/s; %.0f ops/s overall; A's RSS %ld KiB (peak %ld KiB)\n",
        n, create_deltas, BATCH, t_create, (double)n / t_create, u, update_deltas, BATCH, t_update,
        (double)u / t_update, (double)(n + u) / t_w1, rss, hwm);
    printf("W3 A's data.mdb after W1: %lld bytes on disk (st_blocks*512), st_size %lld\n", w1_disk,
        w1_size);

    /* Grants (untimed). */
    double tg = nb_now_s();
    for (long i = 0; i < n; i++) {
        grant(&ctl[A], ids[i], "cpia-1", "anagrafica,documenti,lingua,contatti,competenze,servizi",
            "read");
        grant(&ctl[A], ids[i], "prefettura-1", "documenti,lingua,contatti,competenze,servizi",
            "write");
        grant(&ctl[A], ids[i], "prefettura-1", "anagrafica", "read");
    }
    printf("setup (untimed): %ld consent.grant in %.1f s (each case: B read on 6 scopes; C write "
           "on 5, read on anagrafica)\n",
        3 * n, nb_now_s() - tg);
    json_object *da = CALL(&ctl[A], "digest", NULL, 0);
    uint64_t total = nb_vv_sum(nb_json_at(da, "vv"));

    /* W2 full sync A -> B. */
    for (size_t i = 0; i < np; i++)
        nb_proxy_reset(all[i]);
    double spawn = nb_now_s();
    if (th_spawn(&net, B) != 0)
        FAIL("cannot start B");
    nb_ctl_open_wait(PROG, &net, B, &ctl[B]);
    long heap_b = 0;
    double done = nb_wait_same(PROG, &ctl[B], da, 1800, 5, "full sync", net.nodes[B].pid, &heap_b);
    double first;
    json_object_put(da);
    nb_proxy *abp[2] = { p[A][B], p[B][A] };
    uint64_t full_bytes = sum_bytes(abp, 2, &first);
    nb_proxy_counts k1, k2;
    nb_proxy_get(p[A][B], &k1);
    nb_proxy_get(p[B][A], &k2);
    if (first == 0)
        FAIL("no connection went through the proxies");
    double t_full = done - first;
    printf("B's heap during the full sync: RssAnon peak %.1f MiB (sampled at each 5 ms poll; "
           "LMDB's mapped file not counted)\n",
        (double)heap_b / 1024);
    traffic_line(&ctl[A], "A after the full sync");
    traffic_line(&ctl[B], "B after the full sync");
    /* B can read every record as A does. */
    double ts = nb_now_s();
    for (long i = 0; i < n; i++) {
        const char *a1[] = { ids[i] };
        json_object *sa = CALL(&ctl[A], "case.show", a1, 1);
        json_object *sb = CALL(&ctl[B], "case.show", a1, 1);
        const char *ja = json_object_to_json_string(nb_json_at(sa, "scopes"));
        const char *jb = json_object_to_json_string(nb_json_at(sb, "scopes"));
        if (strcmp(ja, jb) != 0)
            FAIL("B reads case %s otherwise than A:\nA %s\nB %s", ids[i], ja, jb);
        json_object_put(sa);
        json_object_put(sb);
    }
    double t_show = nb_now_s() - ts;
    uint64_t other = total - (uint64_t)create_deltas - (uint64_t)update_deltas;
    printf("W2 full sync A->B: %.2f s from B's first connection until B's digest equals A's "
           "(%.2f s from B's start); %llu bytes on the wire (%llu A->B, %llu B->A payload, both "
           "links), %llu deltas/headers = %ld create deltas + %ld updates + %llu access entries "
           "and key grants; then every one of the %ld records read on B equal to A's (case.show "
           "of both, %.1f s, untimed)\n",
        t_full, done - spawn, (unsigned long long)full_bytes,
        (unsigned long long)(k1.to_target + k2.from_target),
        (unsigned long long)(k1.from_target + k2.to_target), (unsigned long long)total,
        create_deltas, update_deltas, (unsigned long long)other, n, t_show);

    /* C's full copy (untimed). */
    double tc = nb_now_s();
    if (th_spawn(&net, C) != 0)
        FAIL("cannot start C");
    nb_ctl_open_wait(PROG, &net, C, &ctl[C]);
    const size_t abc[3] = { A, B, C };
    (void)wait_equal(ctl, abc, 3, 1800, "C's full copy");
    printf("setup (untimed): C's full copy in %.1f s\n", nb_now_s() - tc);

    /* Apart: B and C down, A writes; A down, C writes. */
    nb_ctl_close(&ctl[B]);
    nb_ctl_close(&ctl[C]);
    if (th_stop(&net, B, SIGTERM) != 0 || th_stop(&net, C, SIGTERM) != 0)
        FAIL("cannot stop B and C");
    double ta = nb_now_s();
    updates(&ctl[A], ids, n, cc);
    double t_conc_a = nb_now_s() - ta;
    nb_ctl_close(&ctl[A]);
    if (th_stop(&net, A, SIGTERM) != 0)
        FAIL("cannot stop A");
    if (th_start(&net, C) != 0)
        FAIL("cannot start C");
    nb_ctl_open_wait(PROG, &net, C, &ctl[C]);
    double tcw = nb_now_s();
    updates(&ctl[C], ids, n, cc);
    double t_conc_c = nb_now_s() - tcw;
    printf("W2 concurrent: A made %ld updates with B and C stopped (%.2f s); then A was stopped "
           "and C made %ld updates (%.2f s)\n",
        cc, t_conc_a, cc, t_conc_c);

    for (size_t i = 0; i < np; i++)
        nb_proxy_reset(all[i]);
    double spawn2 = nb_now_s();
    if (th_spawn(&net, A) != 0 || th_spawn(&net, B) != 0)
        FAIL("cannot start A and B");
    nb_ctl_open_wait(PROG, &net, A, &ctl[A]);
    nb_ctl_open_wait(PROG, &net, B, &ctl[B]);
    double done2 = wait_equal(ctl, abc, 3, 1800, "incremental sync");
    uint64_t inc_bytes = sum_bytes(all, np, &first);
    if (first == 0)
        FAIL("no connection went through the proxies");
    double t_inc = done2 - first;
    for (size_t x = 0; x < NNODES; x++)
        traffic_line(&ctl[x],
            x == A       ? "A after the incremental sync"
                : x == B ? "B after the incremental sync"
                         : "C after the incremental sync");
    double per_update = (double)inc_bytes / (double)(4 * cc);
    printf("W2 incremental: A and B started together (C running): the three digests equal %.2f s "
           "after the first connection (%.2f s after the starts); %llu bytes on the wire (all "
           "three links, both ways) for %ld delivered updates (each side's %ld reach two nodes) "
           "= %.0f B per delivered update\n",
        t_inc, done2 - spawn2, (unsigned long long)inc_bytes, 4 * cc, cc, per_update);

    long long w2_disk, w2_size;
    mdb_size(&net, A, &w2_disk, &w2_size);
    printf("W3 A's data.mdb after W2: %lld bytes on disk (st_blocks*512), st_size %lld\n", w2_disk,
        w2_size);

    printf("\n| peer | W1 ops/s | W2 full sync | W2 incremental | bytes per delivered update | "
           "signed / encrypted / durable |\n");
    printf("| patto (N=%ld, U=%ld, C=%ld; 3 pattod on loopback) | %.1fk | %.2f s, %.1f MB | "
           "%.2f s, %.2f MB | %.0f | yes / yes / yes |\n",
        n, u, cc, (double)(n + u) / t_w1 / 1e3, t_full, (double)full_bytes / 1e6, t_inc,
        (double)inc_bytes / 1e6, per_update);
    printf("RAW n=%ld u=%ld c=%ld create_s=%.3f update_s=%.3f creates_per_s=%.0f "
           "updates_per_s=%.0f ops_per_s=%.0f rss_kib=%ld full_s=%.3f full_bytes=%llu "
           "full_deltas=%llu heap_b_kib=%ld inc_s=%.3f inc_bytes=%llu bytes_per_update=%.1f "
           "w1_mdb_disk=%lld "
           "w2_mdb_disk=%lld\n",
        n, u, cc, t_create, t_update, (double)n / t_create, (double)u / t_update,
        (double)(n + u) / t_w1, rss, t_full, (unsigned long long)full_bytes,
        (unsigned long long)total, heap_b, t_inc, (unsigned long long)inc_bytes, per_update,
        w1_disk, w2_disk);

    for (size_t i = 0; i < npeers; i++)
        peer_ratios(peers[i], n, u, cc, (double)(n + u) / t_w1, t_full, (double)full_bytes, t_inc,
            (double)inc_bytes, per_update);

    for (size_t x = 0; x < NNODES; x++)
        nb_ctl_close(&ctl[x]);
    free(ids);
    int rc = th_net_down(&net);
    nb_cur_net = NULL;
    for (size_t i = 0; i < np; i++)
        nb_proxy_free(all[i]);
    return rc == 0 ? 0 : 1;
}
