/*
 * node-bench - figures of real pattod processes on 127.0.0.1 (the node issue's targets, issue 8
 * section 7). A program run by hand, never a ctest test; it prints figures and whether each
 * target was met, and fails only when it cannot measure.
 *
 *   1. local durable writes per second: case.set requests of 12 fields (anagrafica + lingua)
 *      sent back to back over one control socket (nng req0, proto control messages), each
 *      acknowledged after its LMDB commit;
 *   2. ingest from a peer, applied and durable, in deltas per second: node A holds the deltas
 *      of (1) and B may read them all; B starts empty; from B's first connection until B's
 *      digest equals A's; printed as a ratio to the per-core ingest ceiling
 *      1 / (verify + decrypt + decode) of a typical 12-field delta measured in this run;
 *   3. bytes on the wire per delta during that sync, counted by TCP proxies between A and B
 *      (each node dials the other through one, by a [dial] override in its pattod.conf),
 *      against the body and header sizes of such a delta;
 *   4. a new node syncing --cases cases (each opened with 12 fields in one write, both scopes
 *      granted to it): from its first connection until it can read every case (each checked
 *      with case.show by one of 8 clients); and a node with no grants: until it holds every
 *      header;
 *   5. a 5-node network with nothing broken: a 12-field write at one node, time until the five
 *      digests (version vectors and the states of the shared tags) are equal; median and max.
 *
 * Usage: node-bench [--cases N] [--writes N] [--rounds N] [--grant-cases N] [--skip 1234|4|5]
 *                   [--perf DIR] [--keep]
 * Only synthetic data (invented names, dates); only 127.0.0.1.
 */
#include "harness.h"
#include "nb_common.h"
#include "node_bench_ctl.h"
#include "node_bench_proxy.h"

#include <proto/proto.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PATTO_BIN
#define PATTO_BIN "patto"
#endif
#ifndef PATTOD_BIN
#define PATTOD_BIN "pattod"
#endif

#define PURPOSE "integrazione"
#define NFIELDS NB_NFIELDS
#define TARGET_INGEST_RATIO 0.70
#define TARGET_SYNC_S 60.0
#define TARGET_CONVERGE_S 1.0

typedef struct opts {
    long cases, writes, rounds, grant_cases;
    bool skip_pair, skip_full, skip_five, keep;
    const char *perf;
} opts;

/* What the run found, for the summary. */
typedef struct results {
    double ceiling;        /* deltas/s */
    double body_b, hdr_b;  /* sizes of one 6-field delta of the benchmark's writes */
    double typ_body_b;     /* body of proto-bench's 12-field delta */
    double writes_s;       /* (1) */
    double ingest_s;       /* (2) */
    double wire_per_delta; /* (3) */
    double full_read_s, full_hdr_s, full_ingest_s, full_wire_per_delta, full_hdr_wire_per_delta;
    double full_polled_s; /* (4a) until the last case.show poll read its case */
    double conv_median, conv_max;
    long conv_n;
    bool have_pair, have_full, have_five;
} results;

static results res;

/* nb_now_s() of a wall-clock time written by a node ("YYYY-MM-DDTHH:MM:SS.mmmZ", UTC), or -1. */
static double node_time_s(const char *rfc3339)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = rfc3339 != NULL ? strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    unsigned ms = 0;
    if (rest == NULL || sscanf(rest, ".%3uZ", &ms) != 1)
        return -1;
    double wall = (double)timegm(&tm) + ms / 1000.0;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    double wall_now = (double)rt.tv_sec + (double)rt.tv_nsec * 1e-9;
    return nb_now_s() - (wall_now - wall);
}

static const char *pass(bool ok)
{
    return ok ? "PASS" : "MISS";
}

/* ---------------------------------------------------------------------------------------- */
/* Synthetic records                                                                          */

/* ---------------------------------------------------------------------------------------- */
/* The per-core ingest ceiling (as tests/bench/proto_bench.c measures it)                    */

#define DIE(x)                                                                                     \
    do {                                                                                           \
        if ((x) != 0) {                                                                            \
            fprintf(stderr, "node-bench: %s failed (line %d)\n", #x, __LINE__);                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct sealed {
    proto_identity *id;
    proto_scope_key *key;
    crdt_scope *state, *delta;
    proto_buf dmsg, hdr, body;
    proto_header h;
} sealed;

/* A delta of nf register writes by one origin on a scope that already holds `history` earlier
 * rounds of the same fields (by `origins` origins), sealed. */
static void seal_delta(sealed *s, const char *const *fields, const char *const *values, int nf,
    int history, int origins)
{
    memset(s, 0, sizeof(*s));
    DIE(proto_identity_new(NULL, &s->id));
    proto_case_id cid;
    proto_case_nonce nonce;
    DIE(proto_case_id_new("comune-1", 8, NULL, &cid, &nonce));
    DIE(proto_scope_key_new(&cid, "anagrafica", PROTO_EPOCH_FIRST, NULL, &s->key));
    DIE(crdt_scope_new(NULL, &s->state));
    DIE(crdt_scope_new(NULL, &s->delta));
    crdt_origin o[4];
    for (int i = 0; i < origins && i < 4; i++) {
        memcpy(o[i].b, proto_identity_origin(s->id), 32);
        o[i].b[0] ^= (uint8_t)i;
    }
    crdt_hlc h = { 1700000000000, 0 };
    for (int round = 0; round <= history; round++)
        for (int f = 0; f < nf; f++) {
            char v[96];
            snprintf(v, sizeof v, "%s%s", values[f], round == history ? "" : "-old");
            h.wall++;
            DIE(crdt_register_set(s->state, round == history ? s->delta : NULL, &o[round % origins],
                &h, fields[f], v, strlen(v)));
        }
    DIE(proto_scope_encode(s->delta, &s->dmsg));
    const crdt_cc *cc = crdt_scope_cc(s->state);
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_DELTA;
    plain.vv = cc->vv;
    plain.nvv = cc->nvv;
    plain.delta = (proto_bytes) { s->dmsg.p, s->dmsg.len };
    proto_seal_info info = { 2, { 1 }, h };
    DIE(proto_delta_seal(s->id, s->key, &info, &plain, NULL, &s->hdr, &s->body));
    DIE(proto_header_decode(s->hdr.p, s->hdr.len, NULL, &s->h, NULL));
}

static void sealed_fini(sealed *s)
{
    proto_header_fini(&s->h);
    proto_buf_free(&s->hdr);
    proto_buf_free(&s->body);
    proto_buf_free(&s->dmsg);
    crdt_scope_free(s->state);
    crdt_scope_free(s->delta);
    proto_scope_key_free(s->key);
    proto_identity_free(s->id);
}

typedef enum { OP_VERIFY, OP_DECRYPT, OP_DECODE } ceiling_op;

static void run_op(sealed *s, ceiling_op op)
{
    if (op == OP_VERIFY) {
        DIE(proto_header_verify(&s->h));
    } else if (op == OP_DECRYPT) {
        proto_body b;
        DIE(proto_body_open(&s->h, s->key, s->body.p, s->body.len, NULL, &b, NULL));
        proto_body_fini(&b);
    } else {
        crdt_scope *d;
        DIE(proto_scope_decode(s->dmsg.p, s->dmsg.len, NULL, NULL, &d, NULL));
        crdt_scope_free(d);
    }
}

static double per_op(sealed *s, ceiling_op op, double budget)
{
    for (int i = 0; i < 50; i++)
        run_op(s, op);
    long n = 0;
    double t0 = nb_now_s(), t;
    do {
        for (int i = 0; i < 64; i++)
            run_op(s, op);
        n += 64;
        t = nb_now_s() - t0;
    } while (t < budget);
    return t / (double)n;
}

static void measure_ceiling(void)
{
    /* proto-bench's typical delta: 12 register writes by one origin on a scope with history
     * from three origins. */
    static const char *const f12[NFIELDS] = { "nome", "cognome", "nome_variante", "data_nascita",
        "luogo_nascita", "cittadinanza", "sesso", "codice_fiscale", "permesso_tipo",
        "permesso_numero", "permesso_scadenza", "telefono" };
    const char *v12[NFIELDS];
    char vbuf[NFIELDS][64];
    for (int f = 0; f < NFIELDS; f++) {
        snprintf(vbuf[f], sizeof vbuf[f], "valore 2 del campo %s", f12[f]);
        v12[f] = vbuf[f];
    }
    sealed s;
    seal_delta(&s, f12, v12, NFIELDS, 2, 3);
    double verify = per_op(&s, OP_VERIFY, 0.3), decrypt = per_op(&s, OP_DECRYPT, 0.3),
           decode = per_op(&s, OP_DECODE, 0.3);
    res.ceiling = 1.0 / (verify + decrypt + decode);
    res.typ_body_b = (double)s.body.len;
    printf("ceiling: typical 12-field delta (body %zu B, header %zu B): verify %.2f us + decrypt "
           "%.2f us + decode %.2f us = %.2f us -> %.0f deltas/s per core\n",
        s.body.len, s.hdr.len, verify * 1e6, decrypt * 1e6, decode * 1e6,
        (verify + decrypt + decode) * 1e6, res.ceiling);
    sealed_fini(&s);

    /* One delta of the benchmark's own writes: 6 anagrafica registers overwriting the values
     * the case was opened with, by the same origin (what case.set sends per scope). */
    static const char *const f6[6]
        = { "nome", "cognome", "sesso", "data_nascita", "paese_nascita", "codice_fiscale" };
    static const char *const v6[6]
        = { "Mariam", "De Luca", "non-indicato", "1987-04-12", "GMB", "BCDFGL87D12Z345K" };
    seal_delta(&s, f6, v6, 6, 1, 1);
    res.body_b = (double)s.body.len;
    res.hdr_b = (double)s.hdr.len;
    printf("ceiling: a delta of this benchmark's writes (6 registers of one scope): body %zu B "
           "(padded to %d), header %zu B\n",
        s.body.len, PROTO_PAD_BLOCK, s.hdr.len);
    sealed_fini(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes                                                                                      */

#define FAIL(...) nb_fail("node-bench", __VA_ARGS__)

static long lost_answers; /* requests the node never answered (retried) */

/* A request that must succeed. Status and digest of a large store may take long; anything
 * else answers within milliseconds, so after 10 s without an answer the request is sent again
 * on a new socket (a write may then be applied twice; counted and printed). */
static json_object *call(nb_ctl *c, const char *cmd, const char *const *args, size_t nargs)
{
    bool slow = strcmp(cmd, "status") == 0 || strcmp(cmd, "digest") == 0;
    for (int attempt = 0;; attempt++) {
        json_object *doc = NULL;
        int rc = nb_ctl_call(c, cmd, args, nargs, slow ? 600000 : 10000, &doc);
        if (rc == 0)
            return doc;
        if (rc != -2 || attempt == 3)
            FAIL("%s failed (%d): %s", cmd, rc, c->err);
        lost_answers++;
        fprintf(
            stderr, "node-bench: no answer to %s within %d s; sent again\n", cmd, slow ? 600 : 10);
    }
}

/* Open a case with 12 fields at c; its id into id. */
static void open_case(nb_ctl *c, unsigned long i, char id[PROTO_CASE_ID_TEXT_SIZE])
{
    edits e;
    make_edits(&e, i, 0);
    json_object *doc = call(c, "case.new", e.args + 1, NFIELDS);
    snprintf(id, PROTO_CASE_ID_TEXT_SIZE, "%s", json_object_get_string(nb_json_at(doc, "id")));
    json_object_put(doc);
}

static void grant(nb_ctl *c, const char *id, const char *org)
{
    const char *args[] = { id, org, "anagrafica,lingua", PURPOSE, "public-task", "read", "", "",
        "L. 328/2000 art. 22" };
    json_object_put(call(c, "consent.grant", args, 9));
}

/* Proxies between a and b both ways: a dials b through ab, b dials a through ba. */
static void proxy_pair(th_net *net, size_t a, size_t b, nb_proxy **ab, nb_proxy **ba)
{
    *ab = nb_proxy_new(net->nodes[b].port);
    *ba = nb_proxy_new(net->nodes[a].port);
    if (*ab == NULL || *ba == NULL)
        FAIL("cannot start the proxies");
}

/* Byte counts and the first connection of a set of proxies. */
static void proxies_sum(nb_proxy *const *p, size_t n, uint64_t *bytes, double *first)
{
    *bytes = 0;
    *first = 0;
    for (size_t i = 0; i < n; i++) {
        nb_proxy_counts c;
        nb_proxy_get(p[i], &c);
        *bytes += c.to_target + c.from_target;
        if (c.first_s > 0 && (*first == 0 || c.first_s < *first))
            *first = c.first_s;
    }
}

/* perf record -g of a running node, when --perf DIR was given (NODE_BENCH_CALLGRAPH=dwarf
 * unwinds through libraries built without frame pointers, at a higher cost). */
static pid_t perf_start(const opts *o, pid_t target, const char *name)
{
    if (o->perf == NULL)
        return 0;
    char out[600], pid[32];
    snprintf(out, sizeof(out), "%s/%s.perf.data", o->perf, name);
    snprintf(pid, sizeof(pid), "%d", (int)target);
    pid_t p = fork();
    if (p == 0) {
        const char *cg = getenv("NODE_BENCH_CALLGRAPH");
        execlp("perf", "perf", "record", "--call-graph", cg != NULL && *cg ? cg : "fp", "-q", "-o",
            out, "-p", pid, (char *)NULL);
        _exit(127);
    }
    printf("  perf record -g -p %s -> %s\n", pid, out);
    return p;
}

static void perf_stop(pid_t p)
{
    if (p <= 0)
        return;
    kill(p, SIGINT);
    int st;
    waitpid(p, &st, 0);
}

static void progress(const char *what, long done, long total, double t0)
{
    double t = nb_now_s() - t0;
    double rate = t > 0 ? (double)done / t : 0;
    printf("  %s: %ld/%ld, %.0f/s, %.1f s elapsed, ETA %.0f s\n", what, done, total, rate, t,
        rate > 0 ? (double)(total - done) / rate : 0.0);
    fflush(stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* 1-3: local writes, ingest from a peer, bytes on the wire                                  */

static void phase_pair(const opts *o)
{
    enum { A = 0, B = 1 };
    static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia" };
    th_net net;
    nb_cur_net = &net;
    printf("\n== 1-3: one node's durable writes, then a peer's ingest of them ==\n");
    if (th_net_make(&net, 2, orgs) != 0)
        FAIL("cannot set up the network");
    net.keep = o->keep;
    nb_proxy *p[2];
    proxy_pair(&net, A, B, &p[0], &p[1]);
    char conf[200];
    snprintf(conf, sizeof(conf), "\n[dial]\ncpia-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(p[0]));
    if (th_conf_append(&net, A, conf) != 0)
        FAIL("cannot edit A's pattod.conf");
    snprintf(conf, sizeof(conf), "\n[dial]\ncomune-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(p[1]));
    if (th_conf_append(&net, B, conf) != 0)
        FAIL("cannot edit B's pattod.conf");
    if (th_join(&net, A) != 0 || th_join(&net, B) != 0)
        FAIL("cannot start the nodes");
    /* B knows the network (manifest) but holds no delta; it stays down while A is written. */
    if (th_stop(&net, B, SIGTERM) != 0)
        FAIL("cannot stop B");
    printf("network %s: A=%s (dials B via proxy :%u), B=%s (dials A via proxy :%u)\n", net.root,
        net.nodes[A].org, (unsigned)nb_proxy_port(p[0]), net.nodes[B].org,
        (unsigned)nb_proxy_port(p[1]));

    nb_ctl ca;
    nb_ctl_open_wait("node-bench", &net, A, &ca);
    long ng = o->grant_cases;
    char(*ids)[PROTO_CASE_ID_TEXT_SIZE] = calloc((size_t)ng, sizeof(*ids));
    if (ids == NULL)
        FAIL("out of memory");
    for (long i = 0; i < ng; i++) {
        open_case(&ca, (unsigned long)i, ids[i]);
        grant(&ca, ids[i], "cpia-1");
    }

    /* 1. Writes back to back, each acknowledged after its commit. */
    double *lat = calloc((size_t)o->writes, sizeof(double));
    if (lat == NULL)
        FAIL("out of memory");
    double t0 = nb_now_s(), last = t0;
    for (long w = 0; w < o->writes; w++) {
        edits e;
        long i = w % ng;
        make_edits(&e, (unsigned long)i, (unsigned long)(w / ng + 1));
        e.args[0] = ids[i];
        double s = nb_now_s();
        json_object_put(call(&ca, "case.set", e.args, NFIELDS + 1));
        lat[w] = nb_now_s() - s;
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            progress("writes", w + 1, o->writes, t0);
        }
    }
    double took = nb_now_s() - t0;
    qsort(lat, (size_t)o->writes, sizeof(double), nb_cmp_double);
    res.writes_s = (double)o->writes / took;
    printf("1. local durable writes: %ld case.set of %d fields (2 deltas each: anagrafica, lingua) "
           "over %ld cases in %.2f s = %.0f writes/s (%.0f deltas/s); latency p50 %.2f ms, "
           "p99 %.2f ms, max %.2f ms\n",
        o->writes, NFIELDS, ng, took, res.writes_s, 2 * res.writes_s, lat[o->writes / 2] * 1e3,
        lat[o->writes * 99 / 100] * 1e3, lat[o->writes - 1] * 1e3);
    free(lat);

    json_object *da = call(&ca, "digest", NULL, 0);
    uint64_t deltas = nb_vv_sum(nb_json_at(da, "vv"));
    size_t ntags = (size_t)json_object_object_length(nb_json_at(da, "tags"));

    /* 2, 3. B starts empty and catches up through the proxies. */
    nb_proxy_reset(p[0]);
    nb_proxy_reset(p[1]);
    double spawn = nb_now_s();
    if (th_spawn(&net, B) != 0)
        FAIL("cannot start B");
    nb_ctl cb;
    nb_ctl_open_wait("node-bench", &net, B, &cb);
    pid_t perf = perf_start(o, net.nodes[B].pid, "ingest-B");
    pid_t perf_a = perf_start(o, net.nodes[A].pid, "ingest-A");
    long heap_b = 0;
    double done
        = nb_wait_same("node-bench", &cb, da, 600, 5, "B's catch-up", net.nodes[B].pid, &heap_b);
    perf_stop(perf);
    perf_stop(perf_a);
    uint64_t bytes;
    double first;
    proxies_sum(p, 2, &bytes, &first);
    if (first == 0)
        FAIL("no connection went through the proxies");
    double sync = done - first;
    res.ingest_s = (double)deltas / sync;
    res.wire_per_delta = (double)bytes / (double)deltas;
    res.have_pair = true;
    printf("2. ingest from a peer: B applied %llu deltas (%zu tags; %ld cases opened and granted, "
           "%ld writes) in %.3f s from its first connection (%.3f s after its process started) "
           "= %.0f deltas/s = %.0f%% of the one-core ceiling (%.0f/s) [target >= %.0f%%: %s]\n",
        (unsigned long long)deltas, ntags, ng, o->writes, sync, done - spawn, res.ingest_s,
        100 * res.ingest_s / res.ceiling, res.ceiling, 100 * TARGET_INGEST_RATIO,
        pass(res.ingest_s >= TARGET_INGEST_RATIO * res.ceiling));
    printf("2. B's heap during the catch-up: RssAnon peak %.1f MiB (sampled at each 5 ms poll; "
           "LMDB's mapped file not counted)\n",
        (double)heap_b / 1024);
    printf("3. bytes on the wire (TCP payload, both ways, both connections): %llu B for %llu "
           "deltas = %.0f B/delta, against a body of %.0f B + header of %.0f B (%.2fx)\n",
        (unsigned long long)bytes, (unsigned long long)deltas, res.wire_per_delta, res.body_b,
        res.hdr_b, res.wire_per_delta / (res.body_b + res.hdr_b));
    json_object_put(da);
    nb_ctl_close(&ca);
    nb_ctl_close(&cb);
    free(ids);
    th_net_down(&net);
    nb_cur_net = NULL;
    nb_proxy_free(p[0]);
    nb_proxy_free(p[1]);
}

/* ---------------------------------------------------------------------------------------- */
/* 4: a new node syncing many cases                                                          */

#define POLLERS 8

/* One of the clients that check, case by case, that B reads a case with both scopes. */
typedef struct poller {
    nb_ctl c;
    pthread_t thread;
    char (*ids)[PROTO_CASE_ID_TEXT_SIZE];
    long cases, first; /* checks cases first, first + POLLERS, ... */
    double spawn;
    double done; /* when its last case read */
    long polls, lost;
    atomic_long read;
    atomic_bool finished;
    char failed[1200]; /* why it stopped, when it could not measure */
} poller;

static void *poll_cases(void *arg)
{
    poller *p = arg;
    for (long next = p->first; next < p->cases;) {
        const char *arg1[] = { p->ids[next] };
        json_object *doc = NULL;
        int rc = nb_ctl_call(&p->c, "case.show", arg1, 1, 10000, &doc);
        p->polls++;
        if (rc == -2) {
            p->lost++;
            fprintf(stderr, "node-bench: no answer to case.show within 10 s; sent again\n");
            continue;
        }
        if (rc < 0) {
            snprintf(p->failed, sizeof(p->failed), "case.show at B: %s", p->c.err);
            break;
        }
        bool ok = rc == 0 && nb_json_at(doc, "scopes/anagrafica/nome") != NULL
            && nb_json_at(doc, "scopes/lingua/livello") != NULL;
        json_object_put(doc);
        if (ok) {
            next += POLLERS;
            atomic_fetch_add(&p->read, 1);
            continue;
        }
        if (nb_now_s() - p->spawn > 3600) {
            snprintf(p->failed, sizeof(p->failed),
                "B could not read case %ld of %ld within an hour", next, p->cases);
            break;
        }
        nb_sleep_ms(20);
    }
    p->done = nb_now_s();
    atomic_store(&p->finished, true);
    return NULL;
}

static void phase_full(const opts *o)
{
    enum { A = 0, B = 1, C = 2 };
    static const char *const orgs[]
        = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };
    th_net net;
    nb_cur_net = &net;
    printf("\n== 4: a new node syncing %ld cases ==\n", o->cases);
    if (th_net_make(&net, 3, orgs) != 0)
        FAIL("cannot set up the network");
    net.keep = o->keep;
    nb_proxy *pb[2], *pc[2];
    proxy_pair(&net, A, B, &pb[0], &pb[1]);
    proxy_pair(&net, A, C, &pc[0], &pc[1]);
    char conf[300];
    snprintf(conf, sizeof(conf),
        "\n[dial]\ncpia-1 = tcp://127.0.0.1:%u\nprefettura-1 = "
        "tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(pb[0]), (unsigned)nb_proxy_port(pc[0]));
    if (th_conf_append(&net, A, conf) != 0)
        FAIL("cannot edit A's pattod.conf");
    snprintf(conf, sizeof(conf), "\n[dial]\ncomune-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(pb[1]));
    if (th_conf_append(&net, B, conf) != 0)
        FAIL("cannot edit B's pattod.conf");
    snprintf(conf, sizeof(conf), "\n[dial]\ncomune-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(pc[1]));
    if (th_conf_append(&net, C, conf) != 0)
        FAIL("cannot edit C's pattod.conf");
    for (size_t i = 0; i < 3; i++)
        if (th_join(&net, i) != 0)
            FAIL("cannot start %s", net.nodes[i].org);
    if (th_stop(&net, B, SIGTERM) != 0 || th_stop(&net, C, SIGTERM) != 0)
        FAIL("cannot stop B and C");
    printf("network %s: A=%s owns the cases; B=%s may read both scopes; C=%s has no grant\n",
        net.root, net.nodes[A].org, net.nodes[B].org, net.nodes[C].org);

    nb_ctl ca;
    nb_ctl_open_wait("node-bench", &net, A, &ca);
    char(*ids)[PROTO_CASE_ID_TEXT_SIZE] = calloc((size_t)o->cases, sizeof(*ids));
    if (ids == NULL)
        FAIL("out of memory");
    uint64_t per_case = 0;
    double t0 = nb_now_s(), last = t0, t_new = 0, t_grant = 0;
    for (long i = 0; i < o->cases; i++) {
        double s = nb_now_s();
        open_case(&ca, (unsigned long)i, ids[i]);
        double m = nb_now_s();
        grant(&ca, ids[i], "cpia-1");
        t_new += m - s;
        t_grant += nb_now_s() - m;
        if (i == 0) {
            json_object *st = call(&ca, "status", NULL, 0);
            per_case = (uint64_t)nb_jint(st, "counts/headers");
            json_object_put(st);
        }
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            progress("setup (case.new + consent.grant)", i + 1, o->cases, t0);
        }
    }
    uint64_t headers = per_case * (uint64_t)o->cases;
    printf("setup: %ld cases in %.1f s: case.new of 12 fields %.2f ms, consent.grant of 2 scopes "
           "%.2f ms on average; %llu headers per case, %llu in all\n",
        o->cases, nb_now_s() - t0, 1e3 * t_new / (double)o->cases, 1e3 * t_grant / (double)o->cases,
        (unsigned long long)per_case, (unsigned long long)headers);

    /* B: from its first connection until every case reads with both scopes. */
    nb_proxy_reset(pb[0]);
    nb_proxy_reset(pb[1]);
    double spawn = nb_now_s();
    if (th_spawn(&net, B) != 0)
        FAIL("cannot start B");
    nb_ctl cb;
    nb_ctl_open_wait("node-bench", &net, B, &cb);
    pid_t perf = perf_start(o, net.nodes[B].pid, "sync-B");
    pid_t perf_a = perf_start(o, net.nodes[A].pid, "sync-B-A");
    /* Every case is checked with case.show until it reads. One client in order was limited by
     * its own round trips once B had caught up (the last seconds were the client's, not B's),
     * so POLLERS clients each check every POLLERS-th case, in order. */
    poller pl[POLLERS];
    for (int k = 0; k < POLLERS; k++) {
        pl[k] = (poller) { .ids = ids, .cases = o->cases, .first = k, .spawn = spawn };
        nb_ctl_open_wait("node-bench", &net, B, &pl[k].c);
        if (pthread_create(&pl[k].thread, NULL, poll_cases, &pl[k]) != 0)
            FAIL("cannot start a polling thread");
    }
    last = spawn;
    long heap_4a = 0; /* B's RssAnon peak, sampled every 50 ms */
    for (;;) {
        long read = 0, heap = nb_proc_kib(net.nodes[B].pid, "RssAnon:");
        heap_4a = heap > heap_4a ? heap : heap_4a;
        bool all = true;
        for (int k = 0; k < POLLERS; k++) {
            read += atomic_load(&pl[k].read);
            all = all && atomic_load(&pl[k].finished);
        }
        if (all)
            break;
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            progress("B reads", read, o->cases, spawn);
        }
        nb_sleep_ms(50);
    }
    double done = 0;
    long polls = 0;
    for (int k = 0; k < POLLERS; k++) {
        pthread_join(pl[k].thread, NULL);
        nb_ctl_close(&pl[k].c);
        if (pl[k].failed[0] != 0)
            FAIL("%s", pl[k].failed);
        done = pl[k].done > done ? pl[k].done : done;
        polls += pl[k].polls;
        lost_answers += pl[k].lost;
    }
    perf_stop(perf);
    perf_stop(perf_a);
    uint64_t bytes;
    double first;
    proxies_sum(pb, 2, &bytes, &first);
    if (first == 0)
        FAIL("no connection went through B's proxies");
    /* When B could read every case: the newest merge among its cases (case.list's first
     * last_change; B stamps a scope when it merges a delta into it, in the transaction that
     * then commits in the same loop turn). The pollers above prove each case reads, but they
     * are answered a few per loop turn while B ingests, so they trail it: their last read is
     * printed too. */
    /* The newest change first, one row: the whole list of 100,000 cases with their names
     * takes seconds to build and send, and the total says how many there are. */
    static const char *const newest_only[] = { "", "change", "1" };
    json_object *cl = call(&cb, "case.list", newest_only, 3);
    json_object *cases = nb_json_at(cl, "cases");
    size_t listed = (size_t)nb_jint(cl, "total");
    json_object *newest = cases != NULL && json_object_array_length(cases) > 0
        ? json_object_array_get_idx(cases, 0)
        : NULL;
    json_object *lc = newest != NULL ? nb_json_at(newest, "last_change") : NULL;
    double merged = node_time_s(lc != NULL ? json_object_get_string(lc) : NULL);
    if (listed != (size_t)o->cases || merged < 0)
        FAIL("B's case.list has %zu cases (want %ld) or no last change", listed, o->cases);
    json_object_put(cl);
    res.full_polled_s = done - first;
    res.full_read_s = merged - first;
    res.full_ingest_s = (double)headers / res.full_read_s;
    res.full_wire_per_delta = (double)bytes / (double)headers;
    double ts = nb_now_s();
    json_object *st = call(&cb, "status", NULL, 0);
    double status_s = nb_now_s() - ts;
    printf("4a. B (granted) could read all %ld cases %.2f s after its first connection (its "
           "last merge; %.2f s after its process started) [target < %.0f s: %s]; the case.show "
           "polls had read every case at %.2f s; %llu deltas = %.0f deltas/s (%.0f%% of "
           "the one-core ceiling); %llu B on the wire = %.0f B/delta; %ld case.show polls; B's "
           "status then reports %lld headers, %lld bodies, %lld cases (the status call took "
           "%.2f s)\n",
        o->cases, res.full_read_s, merged - spawn, TARGET_SYNC_S,
        pass(res.full_read_s < TARGET_SYNC_S), res.full_polled_s, (unsigned long long)headers,
        res.full_ingest_s, 100 * res.full_ingest_s / res.ceiling, (unsigned long long)bytes,
        res.full_wire_per_delta, polls, (long long)nb_jint(st, "counts/headers"),
        (long long)nb_jint(st, "counts/bodies"), (long long)nb_jint(st, "counts/cases"), status_s);
    json_object_put(st);
    printf("4a. B's heap during the sync: RssAnon peak %.1f MiB (sampled every 50 ms; LMDB's "
           "mapped file not counted)\n",
        (double)heap_4a / 1024);
    nb_ctl_close(&cb);
    if (th_stop(&net, B, SIGTERM) != 0)
        FAIL("cannot stop B");

    /* C: from its first connection until it holds every header (B is down: only A serves). */
    nb_proxy_reset(pc[0]);
    nb_proxy_reset(pc[1]);
    spawn = nb_now_s();
    if (th_spawn(&net, C) != 0)
        FAIL("cannot start C");
    nb_ctl cc;
    nb_ctl_open_wait("node-bench", &net, C, &cc);
    perf = perf_start(o, net.nodes[C].pid, "sync-C");
    perf_a = perf_start(o, net.nodes[A].pid, "sync-C-A");
    last = spawn;
    for (;;) {
        json_object *sc = call(&cc, "status", NULL, 0);
        int64_t have = nb_jint(sc, "counts/headers");
        json_object_put(sc);
        if (have >= (int64_t)headers)
            break;
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            progress("C headers", (long)have, (long)headers, spawn);
        }
        if (nb_now_s() - spawn > 3600)
            FAIL("C did not receive every header within an hour");
        nb_sleep_ms(10);
    }
    done = nb_now_s();
    perf_stop(perf);
    perf_stop(perf_a);
    proxies_sum(pc, 2, &bytes, &first);
    if (first == 0)
        FAIL("no connection went through C's proxies");
    res.full_hdr_s = done - first;
    res.full_hdr_wire_per_delta = (double)bytes / (double)headers;
    res.have_full = true;
    printf("4b. C (no grant) held all %llu headers %.2f s after its first connection (%.2f s "
           "after its process started) = %.0f headers/s; %llu B on the wire = %.0f B/header\n",
        (unsigned long long)headers, res.full_hdr_s, done - spawn, (double)headers / res.full_hdr_s,
        (unsigned long long)bytes, res.full_hdr_wire_per_delta);
    nb_ctl_close(&cc);
    nb_ctl_close(&ca);
    free(ids);
    th_net_down(&net);
    nb_cur_net = NULL;
    for (int i = 0; i < 2; i++) {
        nb_proxy_free(pb[i]);
        nb_proxy_free(pc[i]);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* 5: convergence of five nodes                                                              */

#define FIVE 5

/* Whether the five digests are equal: version vectors and the state of every tag. */
static bool converged(nb_ctl *c)
{
    json_object *d[FIVE];
    for (int i = 0; i < FIVE; i++)
        d[i] = call(&c[i], "digest", NULL, 0);
    bool same = true;
    for (int i = 1; i < FIVE && same; i++)
        same = nb_json_same(nb_json_at(d[0], "vv"), nb_json_at(d[i], "vv"))
            && nb_json_same(nb_json_at(d[0], "tags"), nb_json_at(d[i], "tags"));
    for (int i = 0; i < FIVE; i++)
        json_object_put(d[i]);
    return same;
}

static void phase_five(const opts *o)
{
    static const char *const orgs[FIVE] = { "comune-1:comune", "cpia-1:cpia",
        "prefettura-1:prefettura", "cpi-1:cpi", "coop-1:coop" };
    th_net net;
    nb_cur_net = &net;
    printf("\n== 5: five nodes, a write at one, time until all five have converged ==\n");
    if (th_net_up(&net, FIVE, orgs) != 0)
        FAIL("cannot start the network");
    net.keep = o->keep;
    nb_ctl c[FIVE];
    for (size_t i = 0; i < FIVE; i++)
        nb_ctl_open_wait("node-bench", &net, i, &c[i]);
    /* Every node up with every peer. */
    double t0 = nb_now_s();
    for (bool all = false; !all;) {
        all = true;
        for (int i = 0; i < FIVE && all; i++) {
            json_object *st = call(&c[i], "status", NULL, 0);
            json_object *peers = nb_json_at(st, "peers");
            size_t n = peers ? json_object_array_length(peers) : 0;
            for (size_t k = 0; k < n; k++) {
                const char *s = json_object_get_string(
                    nb_json_at(json_object_array_get_idx(peers, k), "state"));
                all = all && s != NULL && strcmp(s, "up") == 0;
            }
            all = all && n == FIVE - 1;
            json_object_put(st);
        }
        if (!all && nb_now_s() - t0 > 30)
            FAIL("the five nodes did not all connect within 30 s");
        if (!all)
            nb_sleep_ms(20);
    }
    char id[PROTO_CASE_ID_TEXT_SIZE];
    open_case(&c[0], 0, id);
    for (int i = 1; i < FIVE; i++)
        grant(&c[0], id, net.nodes[i].org);
    t0 = nb_now_s();
    while (!converged(c)) {
        if (nb_now_s() - t0 > 30)
            FAIL("the five nodes did not converge on the granted case within 30 s");
        nb_sleep_ms(10);
    }
    printf("network %s up; case %s granted to the four others; converged %.3f s after the "
           "grants\n",
        net.root, id, nb_now_s() - t0);
    double *t = calloc((size_t)o->rounds, sizeof(double));
    if (t == NULL)
        FAIL("out of memory");
    for (long r = 0; r < o->rounds; r++) {
        edits e;
        make_edits(&e, 0, (unsigned long)r + 1);
        e.args[0] = id;
        json_object_put(call(&c[0], "case.set", e.args, NFIELDS + 1));
        double s = nb_now_s();
        while (!converged(c)) {
            if (nb_now_s() - s > 60)
                FAIL("no convergence within 60 s of write %ld", r + 1);
            nb_sleep_ms(2);
        }
        t[r] = nb_now_s() - s;
        nb_sleep_ms(100);
    }
    qsort(t, (size_t)o->rounds, sizeof(double), nb_cmp_double);
    res.conv_median = t[o->rounds / 2];
    res.conv_max = t[o->rounds - 1];
    res.conv_n = o->rounds;
    res.have_five = true;
    printf("5. five nodes converged after each of %ld writes (12 fields, acknowledged at %s): "
           "median %.1f ms, max %.1f ms, min %.1f ms [target <= %.0f s: %s]\n",
        o->rounds, net.nodes[0].org, res.conv_median * 1e3, res.conv_max * 1e3, t[0] * 1e3,
        TARGET_CONVERGE_S, pass(res.conv_max <= TARGET_CONVERGE_S));
    free(t);
    for (size_t i = 0; i < FIVE; i++)
        nb_ctl_close(&c[i]);
    th_net_down(&net);
    nb_cur_net = NULL;
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
        "usage: node-bench [--cases N] [--writes N] [--rounds N] [--grant-cases N]\n"
        "                  [--skip 123|4|5 (repeatable)] [--perf DIR] [--keep]\n"
        "  --cases N        cases for the full sync (4); default 100000\n"
        "  --writes N       case.set writes for (1), the deltas of (2) and (3); default 5000\n"
        "  --grant-cases N  cases those writes go to; default 20\n"
        "  --rounds N       writes timed in the five-node network (5); default 20\n"
        "  --perf DIR       record the syncing nodes with perf record -g into DIR\n"
        "  --keep           keep the networks' directories (and logs)\n");
    exit(1);
}

static long num(const char *s)
{
    long v = nb_positive(s);
    if (v < 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    opts o = { .cases = 100000, .writes = 5000, .rounds = 20, .grant_cases = 20 };
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--cases") == 0 && has)
            o.cases = num(argv[++i]);
        else if (strcmp(argv[i], "--writes") == 0 && has)
            o.writes = num(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && has)
            o.rounds = num(argv[++i]);
        else if (strcmp(argv[i], "--grant-cases") == 0 && has)
            o.grant_cases = num(argv[++i]);
        else if (strcmp(argv[i], "--perf") == 0 && has)
            o.perf = argv[++i];
        else if (strcmp(argv[i], "--skip") == 0 && has) {
            const char *s = argv[++i];
            o.skip_pair = o.skip_pair || strchr(s, '1') || strchr(s, '2') || strchr(s, '3');
            o.skip_full = o.skip_full || strchr(s, '4');
            o.skip_five = o.skip_five || strchr(s, '5');
        } else if (strcmp(argv[i], "--keep") == 0)
            o.keep = true;
        else
            usage();
    }
    if (o.perf != NULL && mkdir(o.perf, 0755) != 0 && errno != EEXIST) {
        fprintf(
            stderr, "node-bench: cannot create --perf directory %s: %s\n", o.perf, strerror(errno));
        return 2;
    }
    if (!nb_begin(argc, argv, PATTO_BIN, PATTOD_BIN))
        return 1;
    printf("programs: %s, %s\n", PATTO_BIN, PATTOD_BIN);
    measure_ceiling();
    if (!o.skip_pair)
        phase_pair(&o);
    if (!o.skip_full)
        phase_full(&o);
    if (!o.skip_five)
        phase_five(&o);

    printf("\n== summary ==\ncommand:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\nper-core ingest ceiling (verify + decrypt + decode): %.0f deltas/s\n", res.ceiling);
    if (res.have_pair) {
        printf("1. local durable writes: %.0f writes/s of 12 fields (%.0f deltas/s)\n",
            res.writes_s, 2 * res.writes_s);
        printf("2. ingest from a peer: %.0f deltas/s = %.0f%% of the ceiling [target >= %.0f%%: "
               "%s]\n",
            res.ingest_s, 100 * res.ingest_s / res.ceiling, 100 * TARGET_INGEST_RATIO,
            pass(res.ingest_s >= TARGET_INGEST_RATIO * res.ceiling));
        printf("3. wire: %.0f B/delta against a body of %.0f B and a header of %.0f B\n",
            res.wire_per_delta, res.body_b, res.hdr_b);
    }
    if (res.have_full) {
        printf("4. %ld cases: granted node can read all in %.2f s [target < %.0f s: %s] (%.0f "
               "deltas/s = %.0f%% of the ceiling, %.0f B/delta; confirmed by case.show polls at "
               "%.2f s); node without grants holds all headers in %.2f s (%.0f B/header)\n",
            o.cases, res.full_read_s, TARGET_SYNC_S, pass(res.full_read_s < TARGET_SYNC_S),
            res.full_ingest_s, 100 * res.full_ingest_s / res.ceiling, res.full_wire_per_delta,
            res.full_polled_s, res.full_hdr_s, res.full_hdr_wire_per_delta);
        if (o.cases != 100000)
            printf("   (the target is stated for 100000 cases; this run used %ld)\n", o.cases);
    }
    if (lost_answers > 0)
        printf("the nodes left %ld control requests unanswered (each sent again after its "
               "timeout; see stderr)\n",
            lost_answers);
    if (res.have_five)
        printf("5. five-node convergence over %ld writes: median %.1f ms, max %.1f ms [target <= "
               "%.0f s: %s]\n",
            res.conv_n, res.conv_median * 1e3, res.conv_max * 1e3, TARGET_CONVERGE_S,
            pass(res.conv_max <= TARGET_CONVERGE_S));
    return 0;
}
