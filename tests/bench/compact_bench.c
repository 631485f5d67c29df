/*
 * compact-bench - the store's compaction on a real pattod on 127.0.0.1 (node.h,
 * node_store_compact; `patto store compact`). A program run by hand, never a ctest test; it
 * prints figures and fails only when it cannot measure.
 *
 *   1. builds a store of --cases cases (default 100000), each opened with 12 fields in one
 *      case.new (6 of anagrafica, 6 of lingua, invented values as node-bench writes them), over
 *      one control socket (node_bench_ctl.c), then --sets case.set writes of 6 fields spread
 *      over them (the store's churn: LMDB frees the pages each write replaces);
 *   2. writes alone: a client sends case.set requests back to back for --base seconds; the
 *      latency of each (request to durable answer) is the baseline;
 *   3. the compaction under the same writes: the client keeps writing, and after a second
 *      store.compact is sent on another socket. Printed: the node's pause_ms, bytes_before,
 *      bytes_after and disk_needed_bytes, the compaction's round trip, and how long writes
 *      waited: the longest write latency while it ran, how many writes it held up, and the
 *      writes' latencies before and after it;
 *   4. a second compaction of the compacted store (the cost when nothing is to be gained).
 *
 * Usage: compact-bench [--cases N] [--sets N] [--base S] [--debug] [--keep]
 * --debug runs the node at log_level debug and prints its store.compact.steps lines (where the
 * pause went: measuring, the copy written and fsync'd, its check, the swap and reopen); the
 * debug log slows the node's writes, so the write figures of such a run are not the node's.
 * Only synthetic data; only 127.0.0.1.
 */
#include "harness.h"
#include "nb_common.h"
#include "node_bench_ctl.h"

#include <proto/proto.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef PATTO_BIN
#define PATTO_BIN "patto"
#endif
#ifndef PATTOD_BIN
#define PATTOD_BIN "pattod"
#endif

#define NFIELDS NB_NFIELDS
#define LAT_MAX (1u << 22) /* write latencies kept, at most */

#define FAIL(...) nb_fail("compact-bench", __VA_ARGS__)
#define CALL(...) nb_call("compact-bench", __VA_ARGS__)

/* ---------------------------------------------------------------------------------------- */
/* Synthetic records (node-bench's kind: invented names, dates and codes)                   */

/* ---------------------------------------------------------------------------------------- */

static double mib(int64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

static uint64_t file_bytes(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* The writer: case.set of 6 fields on the cases in turn, back to back, each latency kept with
 * the time it was sent. */
typedef struct writer {
    nb_ctl c;
    char (*ids)[PROTO_CASE_ID_TEXT_SIZE];
    long cases;
    unsigned long gen;
    atomic_bool stop;
    double *sent, *lat; /* [LAT_MAX] */
    size_t n;
    char failed[1200];
} writer;

static void *write_loop(void *arg)
{
    writer *w = arg;
    for (unsigned long k = 0; !atomic_load(&w->stop) && w->n < LAT_MAX; k++) {
        edits e;
        unsigned long i = (k * 7919) % (unsigned long)w->cases;
        make_edits(&e, i, w->gen + k);
        e.args[0] = w->ids[i];
        /* 6 fields: the case id and lingua's edits */
        const char *args[7]
            = { e.args[0], e.args[7], e.args[8], e.args[9], e.args[10], e.args[11], e.args[12] };
        json_object *doc = NULL;
        double t0 = nb_now_s();
        int rc = nb_ctl_call(&w->c, "case.set", args, 7, 600000, &doc);
        double t1 = nb_now_s();
        json_object_put(doc);
        if (rc != 0) {
            snprintf(w->failed, sizeof(w->failed), "case.set failed (%d): %s", rc, w->c.err);
            break;
        }
        w->sent[w->n] = t0;
        w->lat[w->n] = t1 - t0;
        w->n++;
    }
    return NULL;
}

static void writer_start(writer *w, pthread_t *t)
{
    w->n = 0;
    atomic_store(&w->stop, false);
    w->failed[0] = 0;
    if (pthread_create(t, NULL, write_loop, w) != 0)
        FAIL("cannot start the writer");
}

static void writer_stop(writer *w, pthread_t t)
{
    atomic_store(&w->stop, true);
    pthread_join(t, NULL);
    if (w->failed[0] != 0)
        FAIL("%s", w->failed);
}

/* Median, 99th percentile and maximum of lat[from..to) (ms), and how many. */
typedef struct stats {
    size_t n;
    double median, p99, max;
} stats;

static stats stats_of(const writer *w, double from, double to)
{
    stats s = { 0, 0, 0, 0 };
    double *v = malloc((w->n ? w->n : 1) * sizeof(*v));
    if (v == NULL)
        FAIL("out of memory");
    for (size_t i = 0; i < w->n; i++)
        if (w->sent[i] >= from && w->sent[i] < to)
            v[s.n++] = w->lat[i] * 1e3;
    if (s.n > 0) {
        qsort(v, s.n, sizeof(*v), nb_cmp_double);
        s.median = v[s.n / 2];
        s.p99 = v[(size_t)((double)(s.n - 1) * 0.99)];
        s.max = v[s.n - 1];
    }
    free(v);
    return s;
}

static void print_stats(const char *what, stats s)
{
    printf("  %s: %zu writes, median %.2f ms, p99 %.2f ms, max %.2f ms\n", what, s.n, s.median,
        s.p99, s.max);
}

/* One compaction while the writer writes: its figures and what the writes saw. */
static void compact_under_writes(
    nb_ctl *c, writer *w, const char *dir, const char *title, double lead_s)
{
    printf("\n== %s ==\n", title);
    uint64_t file0 = file_bytes(dir, "data.mdb");
    pthread_t t;
    writer_start(w, &t);
    nb_sleep_ms((int)(lead_s * 1000));
    double t0 = nb_now_s();
    json_object *doc = CALL(c, "store.compact", NULL, 0);
    double t1 = nb_now_s();
    nb_sleep_ms((int)(lead_s * 1000));
    writer_stop(w, t);
    int64_t pause = nb_jint(doc, "pause_ms"), b0 = nb_jint(doc, "bytes_before"),
            b1 = nb_jint(doc, "bytes_after"), need = nb_jint(doc, "disk_needed_bytes");
    json_object_put(doc);
    printf("compaction: the node paused %lld ms (round trip %.0f ms); data.mdb %lld -> %lld bytes "
           "(%.1f -> %.1f MiB, %.0f%% of it freed); the copy needed %lld bytes (%.1f MiB) of "
           "disk beside data.mdb\n",
        (long long)pause, (t1 - t0) * 1e3, (long long)b0, (long long)b1, mib(b0), mib(b1),
        b0 > 0 ? 100.0 * (double)(b0 - b1) / (double)b0 : 0.0, (long long)need, mib(need));
    if ((uint64_t)b0 != file0)
        printf("  (data.mdb was %llu bytes when the writes started)\n", (unsigned long long)file0);
    /* The writes sent while it ran waited for it; the one sent just before it waited most. */
    stats before = stats_of(w, 0, t0), during = stats_of(w, t0, t1), after = stats_of(w, t1, 1e18);
    double longest = 0;
    size_t held = 0;
    for (size_t i = 0; i < w->n; i++) {
        double end = w->sent[i] + w->lat[i];
        if (end > t0 && w->sent[i] < t1) {
            held++;
            if (w->lat[i] > longest)
                longest = w->lat[i];
        }
    }
    printf("writes: the longest wait of a write that overlapped the compaction %.0f ms (%zu "
           "writes overlapped it; one client writing back to back)\n",
        longest * 1e3, held);
    print_stats("before it", before);
    print_stats("sent while it ran", during);
    print_stats("after it", after);
}

int main(int argc, char **argv)
{
    long cases = 100000, sets = 20000;
    double base = 5;
    bool keep = false, debug = false;
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--cases") == 0 && has)
            cases = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--sets") == 0 && has)
            sets = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--base") == 0 && has)
            base = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else if (strcmp(argv[i], "--debug") == 0)
            debug = true;
        else {
            fprintf(stderr,
                "usage: compact-bench [--cases N] [--sets N] [--base S] [--debug] [--keep]\n");
            return 1;
        }
    }
    if (cases < 1 || sets < 0 || base <= 0) {
        fprintf(stderr, "compact-bench: --cases >= 1, --sets >= 0, --base > 0\n");
        return 1;
    }
    if (!nb_begin(argc, argv, PATTO_BIN, PATTOD_BIN))
        return 1;
    printf("programs: %s, %s\n", PATTO_BIN, PATTOD_BIN);

    static const char *const orgs[] = { "comune-1:comune" };
    th_net net;
    nb_cur_net = &net;
    if (th_net_make(&net, 1, orgs) != 0
        || (debug && th_conf_append(&net, 0, "\n[node]\nlog_level = debug\n") != 0)
        || th_join(&net, 0) != 0)
        FAIL("cannot set up the node");
    net.keep = keep;
    const char *dir = net.nodes[0].dir;
    printf("node %s in %s\n", net.nodes[0].org, dir);

    /* 1. The store. */
    nb_ctl c;
    if (nb_ctl_open(&c, dir) != 0)
        FAIL("%s", c.err);
    char(*ids)[PROTO_CASE_ID_TEXT_SIZE] = calloc((size_t)cases, sizeof(*ids));
    if (ids == NULL)
        FAIL("out of memory");
    double t0 = nb_now_s(), last = t0;
    for (long i = 0; i < cases; i++) {
        edits e;
        make_edits(&e, (unsigned long)i, 0);
        json_object *doc = CALL(&c, "case.new", e.args + 1, NFIELDS);
        snprintf(
            ids[i], PROTO_CASE_ID_TEXT_SIZE, "%s", json_object_get_string(nb_json_at(doc, "id")));
        json_object_put(doc);
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            printf("  case.new: %ld/%ld, %.0f/s\n", i + 1, cases, (double)(i + 1) / (last - t0));
        }
    }
    double t_new = nb_now_s() - t0;
    t0 = nb_now_s();
    for (long k = 0; k < sets; k++) {
        edits e;
        unsigned long i = ((unsigned long)k * 104729u) % (unsigned long)cases;
        make_edits(&e, i, 1 + (unsigned long)k);
        const char *args[7]
            = { ids[i], e.args[1], e.args[2], e.args[3], e.args[4], e.args[5], e.args[6] };
        json_object_put(CALL(&c, "case.set", args, 7));
    }
    double t_set = nb_now_s() - t0;
    json_object *st = CALL(&c, "status", NULL, 0);
    printf("store: %ld cases (case.new of 12 fields, %.2f ms each), then %ld case.set of 6 fields "
           "(%.2f ms each); %lld headers, %lld bodies; data.mdb %.1f MiB\n",
        cases, 1e3 * t_new / (double)cases, sets, sets > 0 ? 1e3 * t_set / (double)sets : 0.0,
        (long long)nb_jint(st, "counts/headers"), (long long)nb_jint(st, "counts/bodies"),
        mib((int64_t)file_bytes(dir, "data.mdb")));
    json_object_put(st);

    /* 2. Writes alone. */
    writer w;
    memset(&w, 0, sizeof(w));
    w.ids = ids;
    w.cases = cases;
    w.gen = 1000000;
    w.sent = malloc(LAT_MAX * sizeof(double));
    w.lat = malloc(LAT_MAX * sizeof(double));
    if (w.sent == NULL || w.lat == NULL || nb_ctl_open(&w.c, dir) != 0)
        FAIL("cannot start the writer: %s", w.c.err);
    pthread_t t;
    printf("\n== writes alone (%.0f s) ==\n", base);
    writer_start(&w, &t);
    nb_sleep_ms((int)(base * 1000));
    writer_stop(&w, t);
    print_stats("case.set of 6 fields", stats_of(&w, 0, 1e18));

    /* 3 and 4. */
    w.gen = 2000000;
    compact_under_writes(&c, &w, dir, "the compaction, with a client writing", 1.0);
    w.gen = 3000000;
    compact_under_writes(&c, &w, dir, "a second compaction, of the compacted store", 1.0);

    if (debug) {
        FILE *lf = fopen(net.nodes[0].log, "r");
        char line[1024];
        while (lf != NULL && fgets(line, sizeof(line), lf) != NULL)
            if (strstr(line, "event=store.compact") != NULL)
                printf("node log: %s", line);
        if (lf != NULL)
            fclose(lf);
    }
    nb_ctl_close(&w.c);
    nb_ctl_close(&c);
    free(w.sent);
    free(w.lat);
    free(ids);
    int rc = th_net_down(&net);
    nb_cur_net = NULL;
    return rc == 0 ? 0 : 1;
}
