/*
 * import-bench - patto import of a synthetic CSV through a real pattod on 127.0.0.1
 * (tests/node/harness.c), against the signing rate of this machine measured in the same run.
 *
 *   build/tests/bench/import-bench [--rows N] [--batch N] [--nodes 1-5] [--keep]
 *
 * The CSV has 12 fields over 6 scopes (anagrafica 4, contatti 2, documenti 2, lingua 2,
 * lavoro 1, alloggio 1), semicolons, dd/mm/yyyy dates and a key column, invented values only:
 * each row is one new case of 6 deltas, each delta signed and encrypted, every batch one durable
 * commit. Printed: the whole command (reading, the node's check of every row, the writes), the
 * write phase alone, the node's own time in its write transactions, rows/s and deltas/s of
 * each, and the signing rate (Ed25519 over a header's signed bytes, and proto_delta_seal of a
 * 2-field delta: sign and encrypt) measured before and after the import, with the ratio of the
 * node's deltas/s to it. A benchmark: it prints figures and is never a ctest test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include <crdt/crdt.h>
#include <proto/proto.h>

#include "harness.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static th_net net;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "import-bench: %s\n", what);
    if (net.n > 0) {
        net.keep = true;
        th_dump_logs(&net);
        (void)th_net_down(&net);
    }
    exit(1);
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            die(#x);                                                                               \
    } while (0)

/* Signatures per second: Ed25519 over a typical header's signed bytes, and whole seals of a
 * 2-field delta (what one scope of one imported row costs), each for about budget s. */
static void sign_rates(double budget, double *sign_per_s, double *seal_per_s)
{
    proto_identity *id = NULL;
    proto_scope_key *key = NULL;
    proto_case_id cid;
    proto_case_nonce nonce;
    CHECK(proto_identity_new(NULL, &id) == PROTO_OK);
    CHECK(proto_case_id_new("comune-1", 8, NULL, &cid, &nonce) == PROTO_OK);
    CHECK(proto_scope_key_new(&cid, "anagrafica", 1, NULL, &key) == PROTO_OK);
    crdt_scope *state = NULL, *delta = NULL;
    CHECK(crdt_scope_new(NULL, &state) == CRDT_OK && crdt_scope_new(NULL, &delta) == CRDT_OK);
    crdt_origin o;
    memcpy(o.b, proto_identity_origin(id), 32);
    crdt_hlc h = { 1700000000000, 0 };
    CHECK(crdt_register_set(state, delta, &o, &h, "nome", "Amina", 5) == CRDT_OK);
    h.wall++;
    CHECK(crdt_register_set(state, delta, &o, &h, "cognome", "Diallo", 6) == CRDT_OK);
    proto_buf enc;
    CHECK(proto_scope_encode(delta, &enc) == PROTO_OK);
    proto_body plain;
    memset(&plain, 0, sizeof plain);
    plain.kind = PROTO_BODY_DELTA;
    plain.delta = (proto_bytes) { enc.p, enc.len };
    proto_seal_info info = { 1, { 0 }, { 1700000000000, 0 } };
    proto_buf hb, bb;
    CHECK(proto_delta_seal(id, key, &info, &plain, NULL, &hb, &bb) == PROTO_OK);
    proto_header hd;
    CHECK(proto_header_decode(hb.p, hb.len, NULL, &hd, NULL) == PROTO_OK);
    uint8_t seed[32], box[32], pk[32], sk[64], sig[64];
    proto_identity_seeds(id, seed, box);
    crypto_sign_seed_keypair(pk, sk, seed);
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 64; i++)
            crypto_sign_detached(sig, NULL, hd.signed_bytes.p, hd.signed_bytes.len, sk);
        n += 64;
        t = now_s() - t0;
    } while (t < budget);
    *sign_per_s = (double)n / t;
    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 16; i++) {
            proto_buf h2, b2;
            info.seq++;
            CHECK(proto_delta_seal(id, key, &info, &plain, NULL, &h2, &b2) == PROTO_OK);
            proto_buf_free(&h2);
            proto_buf_free(&b2);
        }
        n += 16;
        t = now_s() - t0;
    } while (t < budget);
    *seal_per_s = (double)n / t;
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(box, sizeof box);
    proto_header_fini(&hd);
    proto_buf_free(&hb);
    proto_buf_free(&bb);
    proto_buf_free(&enc);
    crdt_scope_free(state);
    crdt_scope_free(delta);
    proto_scope_key_free(key);
    proto_identity_free(id);
}

/* CPU seconds (user + system) pattod process pid has used, from /proc/PID/stat. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (p == NULL
        || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static const char *loadavg(void)
{
    static char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL)
            snprintf(buf, sizeof buf, "?");
        buf[strcspn(buf, "\n")] = '\0';
        fclose(f);
    }
    return buf;
}

static const char *const nomi[] = { "Amina", "Luca", "Fatou", "Giovanni", "Sara", "Omar", "Elena",
    "Karim", "Marta", "Yusuf", "Aisha", "Paolo" };
static const char *const cognomi[] = { "Diallo", "Rossi", "Sow", "Bianchi", "Verdi", "Haddad",
    "Conti", "Mensah", "Greco", "Kaya", "Traore", "Russo" };
static const char *const livelli[] = { "pre-A1", "A1", "A2", "B1", "B2" };
static const char *const stati[] = { "disoccupato", "occupato", "inattivo", "studente" };
static const char *const alloggi[] = { "affitto", "condiviso", "ospite", "accoglienza-cas" };

static void write_csv(const char *path, long rows)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f,
        "Codice fiscale;Nome;Cognome;Data di nascita;Email;Comune di residenza;"
        "Numero permesso;Scadenza permesso;Livello;CPIA;Stato occupazionale;Alloggio\r\n");
    for (long i = 0; i < rows; i++) {
        unsigned long k = (unsigned long)i * 2654435761u;
        fprintf(f,
            "TSTBCH%010ld;%s;%s;%02lu/%02lu/%lu;persona%ld@example.invalid;Latina;"
            "PS%08ld;%02lu/%02lu/2027;%s;\"CPIA 1; Latina\";%s;%s\r\n",
            i, nomi[k % 12], cognomi[(k >> 8) % 12], 1 + (k >> 3) % 28, 1 + (k >> 5) % 12,
            1960 + (k >> 7) % 45, i, i, 1 + (k >> 9) % 28, 1 + (k >> 11) % 12,
            livelli[(k >> 13) % 5], stati[(k >> 15) % 4], alloggi[(k >> 17) % 4]);
    }
    CHECK(fclose(f) == 0);
}

static const char map_json[]
    = "{\"columns\": [\n"
      " {\"column\": \"Codice fiscale\", \"field\": \"anagrafica.codice_fiscale\", \"key\": "
      "true},\n"
      " {\"column\": \"Nome\", \"field\": \"anagrafica.nome\"},\n"
      " {\"column\": \"Cognome\", \"field\": \"anagrafica.cognome\"},\n"
      " {\"column\": \"Data di nascita\", \"field\": \"anagrafica.data_nascita\", \"date\": "
      "\"dd/mm/yyyy\"},\n"
      " {\"column\": \"Email\", \"field\": \"contatti.email\"},\n"
      " {\"column\": \"Comune di residenza\", \"field\": \"contatti.comune_residenza\"},\n"
      " {\"column\": \"Numero permesso\", \"field\": \"documenti.permesso_numero\"},\n"
      " {\"column\": \"Scadenza permesso\", \"field\": \"documenti.permesso_scadenza\", "
      "\"date\": \"dd/mm/yyyy\"},\n"
      " {\"column\": \"Livello\", \"field\": \"lingua.livello\"},\n"
      " {\"column\": \"CPIA\", \"field\": \"lingua.cpia\"},\n"
      " {\"column\": \"Stato occupazionale\", \"field\": \"lavoro.stato_occupazionale\"},\n"
      " {\"column\": \"Alloggio\", \"field\": \"alloggio.situazione\"}\n"
      "]}\n";

static double jnum(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v))
        die("the import's summary lacks a figure");
    return json_object_get_double(v);
}

int main(int argc, char **argv)
{
    long rows = 10000;
    const char *batch = "1000";
    bool keep = false;
    long nodes = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            rows = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = argv[++i];
        else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
            nodes = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else {
            fprintf(stderr, "usage: import-bench [--rows N] [--batch N] [--nodes 1-5] [--keep]\n");
            return 1;
        }
    }
    if (rows < 1)
        die("--rows takes a whole number >= 1");
    CHECK(proto_init() == PROTO_OK);
    th_programs(PATTO_BIN, PATTOD_BIN);
    static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura",
        "cpi-1:cpi", "coop-1:coop" };
    if (nodes < 1 || nodes > 5)
        die("--nodes takes 1 to 5");
    if (th_net_up(&net, (size_t)nodes, orgs) != 0)
        die("cannot start the nodes");
    char csv[400], map[400];
    snprintf(csv, sizeof csv, "%s/bench.csv", net.root);
    snprintf(map, sizeof map, "%s/map.json", net.root);
    write_csv(csv, rows);
    FILE *f = fopen(map, "w");
    CHECK(f != NULL && fputs(map_json, f) >= 0 && fclose(f) == 0);

    double sign0, seal0, sign1, seal1;
    sign_rates(1.0, &sign0, &seal0);
    double c0 = cpu_s(net.nodes[0].pid), t0 = now_s();
    th_out o = th_patto(&net, 0, "import", csv, "--map", map, "--batch", batch, NULL);
    double whole = now_s() - t0, cpu = cpu_s(net.nodes[0].pid) - c0;
    if (o.status != 0 || o.json == NULL) {
        fprintf(stderr, "%s%s", o.out, o.err);
        die("patto import failed");
    }
    sign_rates(1.0, &sign1, &seal1);
    double created = jnum(o.json, "created"), deltas = jnum(o.json, "deltas");
    double writes = jnum(o.json, "seconds"), node = jnum(o.json, "node_write_seconds");
    th_out_free(&o);
    if (created != (double)rows)
        die("not every row was created");
    double sign = (sign0 + sign1) / 2, seal = (seal0 + seal1) / 2;
    printf("import-bench: %ld rows of 12 fields over 6 scopes, batches of %s, into the first "
           "of %ld pattod (durable: one fsync'd LMDB commit per batch; the others take the "
           "headers pushed)\n",
        rows, batch, nodes);
    printf("  %-34s %8.2f s  %8.0f rows/s  %8.0f deltas/s\n", "whole command (check + write)",
        whole, (double)rows / whole, deltas / whole);
    printf("  %-34s %8.2f s  %8.0f rows/s  %8.0f deltas/s\n", "write phase (CLI)", writes,
        (double)rows / writes, deltas / writes);
    printf("  %-34s %8.2f s  %8.0f rows/s  %8.0f deltas/s\n", "node's write transactions", node,
        (double)rows / node, deltas / node);
    printf("  %-34s %8.2f s  (pattod's user + system time over the whole command)\n",
        "node CPU time", cpu);
    printf("  signing on this machine: Ed25519 %.0f/s (before %.0f, after %.0f); "
           "proto_delta_seal (sign + encrypt) %.0f/s (before %.0f, after %.0f)\n",
        sign, sign0, sign1, seal, seal0, seal1);
    printf("  node deltas/s against Ed25519 signing: %.2f; against proto_delta_seal: %.2f; "
           "signing's share of the node's CPU time: %.0f %%\n",
        deltas / node / sign, deltas / node / seal, 100.0 * deltas / sign / cpu);
    printf("  load average at the end: %s\n", loadavg());
    printf("  %.0f deltas; targets: 10,000 cases in <= 3 s (whole command: %s), >= 20,000 "
           "deltas/s durable at the node (%s)\n",
        deltas,
        rows != 10000      ? "not measured: --rows is not 10000"
            : whole <= 3.0 ? "met"
                           : "missed",
        deltas / node >= 20000 ? "met" : "missed");
    net.keep = keep;
    if (keep)
        printf("  kept: %s\n", net.root);
    return th_net_down(&net) == 0 ? 0 : 1;
}
