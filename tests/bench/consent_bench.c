/*
 * consent-bench - what ending access costs on real pattod processes on 127.0.0.1
 * (ARCHITECTURE.md section 4, "Revoking and downgrading" and "Expiry"). A program run by hand,
 * never a ctest test; it prints figures and whether each target was met, and fails only when
 * it cannot measure.
 *
 *   1. revocation latency on a 5-node network (comune-1, cpia-1, prefettura-1, cpi-1, coop-1):
 *      a case at the comune whose lingua scope the four others read (basis consent); each of
 *      --rounds rounds revokes one of them (in turn) with consent.revoke, writes at once a new
 *      lingua value at the comune, and times from just before the revoke until each of the
 *      three remaining holders shows that value (case.show polls 2 ms apart); the revoked node
 *      must stop reading the scope within the round; it is then granted again (not timed);
 *   2. the rebuild of a scope of --deltas deltas after a narrowing: 3 nodes; the CPIA may
 *      write lingua and writes N counter increments (one case.set each), the Prefettura reads
 *      it; then the comune downgrades the CPIA to read: every holder decides the scope again
 *      (one rebuild, `event=rebuild.done ... ms=M` in its log); M per node and the wall time
 *      until the Prefettura's log has the line;
 *   3. removing a member that holds grants on --scopes scopes (S/2 cases at the comune, both
 *      scopes of each granted read to coop-1 and to cpia-1): the admin retires coop-1, the
 *      new manifest is imported at the comune and at the CPIA; from the import at the comune
 *      until the comune has closed every grant to coop-1 (the scopes= of its
 *      `event=consent.closed` lines reach S) and the CPIA holds the new key of every scope (its
 *      digest lists 2 tags per scope); the bytes the comune sent the CPIA meanwhile, counted by
 *      TCP proxies on the links between them (node_bench_proxy.c).
 *
 * Usage: consent-bench [--rounds N] [--deltas N] [--scopes N] [--skip 123] [--keep]
 * Only synthetic data (invented names, dates); only 127.0.0.1. Every pattod it starts is
 * stopped at the end, also when it fails (the network's directory is then kept, with the logs).
 */
#include "harness.h"
#include "nb_common.h"
#include "node_bench_ctl.h"
#include "node_bench_proxy.h"

#include <proto/proto.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef PATTO_BIN
#define PATTO_BIN "patto"
#endif
#ifndef PATTOD_BIN
#define PATTOD_BIN "pattod"
#endif

#define PURPOSE "integrazione"
#define TARGET_REVOKE_S 1.0
#define TARGET_RETIRE_S 30.0
#define RETIRE_TIMEOUT_S 120.0
#define IDLE_S 10

typedef struct opts {
    long rounds, deltas, scopes;
    bool skip_revoke, skip_rebuild, skip_retire, keep;
} opts;

/* What the run found, for the summary. */
typedef struct results {
    bool have_revoke, have_rebuild, have_retire;
    double rev_median, rev_max, rev_gone_max;
    long rev_still_read; /* rounds whose revoked node still read the scope at their end */
    double reb_wall, reb_ms[3];
    long reb_voided[3];
    bool reb_logged[3];
    bool ret_done;
    double ret_s, ret_closed_s, ret_keys_s;
    uint64_t ret_bytes;
    double ret_idle; /* bytes the idle links would have carried over the window */
    long ret_closed, ret_tags;
} results;

static results res;

static const char *pass(bool ok)
{
    return ok ? "PASS" : "MISS";
}

/* The monotonic time (now_s) of a node's log time stamp "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC), or
 * -1 when it is not one. */
static double log_time_s(const char *stamp)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned ms = 0;
    if (rest == NULL || sscanf(rest, ".%3uZ", &ms) != 1)
        return -1;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    double wall = (double)timegm(&tm) + ms / 1000.0;
    return nb_now_s() - ((double)rt.tv_sec + (double)rt.tv_nsec * 1e-9 - wall);
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes and their control sockets                                                           */

#define FAIL(...) nb_fail("consent-bench", __VA_ARGS__)

static long write_retries; /* writes a node asked to retry (a peer had just connected) */

/* One request: 0 with *doc owned, or the node's error code (1..5). A write refused with
 * "retry ..." (a peer has just connected and not yet said what it holds of the node's log) is
 * sent again every 20 ms for up to 10 s. No answer in time (600 s for status and digest, 60 s
 * for anything else) or a broken exchange fails the run: a write is never sent twice. */
static int ask(nb_ctl *c, const char *cmd, const char *const *args, size_t nargs, json_object **doc)
{
    bool slow = strcmp(cmd, "status") == 0 || strcmp(cmd, "digest") == 0;
    for (int attempt = 0;; attempt++) {
        int rc = nb_ctl_call(c, cmd, args, nargs, slow ? 600000 : 60000, doc);
        if (rc < 0)
            FAIL("%s failed (%d): %s", cmd, rc, c->err);
        if (rc == 5 && strstr(c->err, "retry") != NULL && attempt < 500) {
            write_retries++;
            nb_sleep_ms(20);
            continue;
        }
        return rc;
    }
}

/* A request that must succeed. */
static json_object *call(nb_ctl *c, const char *cmd, const char *const *args, size_t nargs)
{
    json_object *doc = NULL;
    int rc = ask(c, cmd, args, nargs, &doc);
    if (rc != 0)
        FAIL("%s failed (code %d): %s", cmd, rc, c->err);
    return doc;
}

/* case.show at c: the document (owned, NULL when the node reads no scope of it: code 3). */
static json_object *show(nb_ctl *c, const char *id)
{
    const char *args[] = { id };
    json_object *doc = NULL;
    int rc = ask(c, "case.show", args, 1, &doc);
    if (rc == 3)
        return NULL;
    if (rc != 0)
        FAIL("case.show %s failed (code %d): %s", id, rc, c->err);
    return doc;
}

/* Whether c shows scope/field of the case with this text (NULL: with any value). */
static bool shows(nb_ctl *c, const char *id, const char *path, const char *text)
{
    json_object *doc = show(c, id);
    json_object *v = doc != NULL ? nb_json_at(doc, path) : NULL;
    bool ok = v != NULL && (text == NULL || strcmp(json_object_get_string(v), text) == 0);
    json_object_put(doc);
    return ok;
}

/* Every node of c[0..n) up with n - 1 peers (within 30 s). */
static void wait_links(nb_ctl *c, size_t n)
{
    double t0 = nb_now_s();
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n && all; i++) {
            json_object *st = call(&c[i], "status", NULL, 0);
            json_object *peers = nb_json_at(st, "peers");
            size_t np = peers != NULL ? json_object_array_length(peers) : 0, up = 0;
            for (size_t k = 0; k < np; k++) {
                const char *s = json_object_get_string(
                    nb_json_at(json_object_array_get_idx(peers, k), "state"));
                up += s != NULL && strcmp(s, "up") == 0;
            }
            all = up == n - 1;
            json_object_put(st);
        }
        if (all)
            return;
        if (nb_now_s() - t0 > 30)
            FAIL("the nodes did not all connect within 30 s");
        nb_sleep_ms(20);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Synthetic records: invented people, 6 fields of anagrafica and 6 of lingua                */

static const char *const first_names[]
    = { "Awa", "Kofi", "Halima", "Tariq", "Selam", "Bakary", "Noura", "Idris", "Mariama", "Youssef",
          "Aminata", "Dawit", "Sara", "Elena", "Moussa", "Rokia" };
static const char *const last_names[] = { "Ferri", "Valli", "Sartori", "Lombardi", "Pace",
    "Fontana", "Rinaldi", "Caruso", "Benedetti", "Sanna", "Coulibaly", "Keita", "Toure", "Bah" };
static const char *const countries[]
    = { "GHA", "ETH", "SDN", "MAR", "SEN", "GIN", "NGA", "BFA", "SOM", "TUN", "MLI", "PAK" };
static const char *const levels[] = { "pre-A1", "A1", "A2", "B1", "B2", "C1", "C2" };
static const char *const courses[] = { "alfabetizzazione", "pre-A1", "A1", "A2", "B1" };

#define NTH(arr, k) (arr)[(k) % (sizeof(arr) / sizeof((arr)[0]))]
#define NEDITS 12

typedef struct record {
    char text[NEDITS][96];
    const char *args[NEDITS];
} record;

/* The 12 edits that open case i. */
static void record_make(record *r, unsigned long i)
{
    unsigned long h = i * 2654435761u;
    int n = 0;
    snprintf(r->text[n++], 96, "anagrafica.nome=%s", NTH(first_names, h >> 3));
    snprintf(r->text[n++], 96, "anagrafica.cognome=%s", NTH(last_names, h >> 7));
    snprintf(r->text[n++], 96, "anagrafica.sesso=%s", (h >> 11) % 2 ? "F" : "M");
    snprintf(r->text[n++], 96, "anagrafica.data_nascita=%04lu-%02lu-%02lu", 1965 + (h >> 5) % 40,
        1 + (h >> 9) % 12, 1 + (h >> 13) % 28);
    snprintf(r->text[n++], 96, "anagrafica.paese_nascita=%s", NTH(countries, h >> 17));
    char cf[17];
    snprintf(cf, sizeof(cf), "XXXSYN%02lu%c%02luZ%03luX", i % 100, "ABCDEHLMPRST"[h % 12],
        1 + i % 28, i % 1000);
    th_cf_check(cf);
    snprintf(r->text[n++], 96, "anagrafica.codice_fiscale=%s", cf);
    snprintf(r->text[n++], 96, "lingua.livello=%s", NTH(levels, h >> 19));
    snprintf(r->text[n++], 96, "lingua.data_valutazione=2025-%02lu-%02lu", 1 + i % 12,
        1 + (h >> 21) % 28);
    snprintf(r->text[n++], 96, "lingua.cpia=cpia-%lu", 1 + i % 3);
    snprintf(r->text[n++], 96, "lingua.corso=%s", NTH(courses, h >> 23));
    snprintf(r->text[n++], 96, "lingua.ore_previste=%lu", 80 + (h >> 4) % 320);
    snprintf(r->text[n++], 96, "lingua.attestato=nessuno");
    for (int k = 0; k < NEDITS; k++)
        r->args[k] = r->text[k];
}

/* Open case i at c; its id into id. */
static void open_case(nb_ctl *c, unsigned long i, char id[PROTO_CASE_ID_TEXT_SIZE])
{
    record r;
    record_make(&r, i);
    json_object *doc = call(c, "case.new", r.args, NEDITS);
    snprintf(id, PROTO_CASE_ID_TEXT_SIZE, "%s", json_object_get_string(nb_json_at(doc, "id")));
    json_object_put(doc);
}

/* consent.grant of scopes to org, basis consent, no end, a synthetic evidence reference. */
static void grant(
    nb_ctl *c, const char *id, const char *org, const char *scopes, const char *access)
{
    const char *args[]
        = { id, org, scopes, PURPOSE, "consent", access, "", "modulo-consenso-SINTETICO" };
    json_object_put(call(c, "consent.grant", args, 8));
}

/* ---------------------------------------------------------------------------------------- */
/* Node logs                                                                                  */

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/* The next whole line of the log at or after *pos that contains pat, into line (with its
 * newline); *pos moves past every whole line read. false when none yet. */
static bool log_next(const char *path, long *pos, const char *pat, char *line, size_t size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool found = false;
    if (fseek(f, *pos, SEEK_SET) == 0)
        while (!found && fgets(line, (int)size, f) != NULL) {
            size_t len = strlen(line);
            if (len == 0 || line[len - 1] != '\n')
                break; /* a line being written, or too long: read again later */
            *pos += (long)len;
            found = strstr(line, pat) != NULL;
        }
    fclose(f);
    return found;
}

/* The number after key (e.g. " ms=") in a log line, or -1. */
static long log_num(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p != NULL ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The time stamp of a log line ("ts=... level=..."), as nb_now_s() time, or -1. */
static double log_line_time(const char *line)
{
    return strncmp(line, "ts=", 3) == 0 ? log_time_s(line + 3) : -1;
}

/* Print the lines of node i's log after pos that contain any of pats (at most max). */
static void log_print(th_net *net, size_t i, long pos, const char *const *pats, int max)
{
    char line[8192];
    long at = pos;
    int printed = 0;
    FILE *f = fopen(net->nodes[i].log, "r");
    if (f == NULL)
        return;
    if (fseek(f, at, SEEK_SET) == 0)
        while (printed < max && fgets(line, sizeof(line), f) != NULL)
            for (const char *const *p = pats; *p != NULL; p++)
                if (strstr(line, *p) != NULL) {
                    printf("    %s: %s", net->nodes[i].org, line);
                    printed++;
                    break;
                }
    fclose(f);
}

/* ---------------------------------------------------------------------------------------- */
/* 1: revocation latency on five nodes                                                       */

#define FIVE 5

static void phase_revoke(const opts *o)
{
    static const char *const orgs[FIVE] = { "comune-1:comune", "cpia-1:cpia",
        "prefettura-1:prefettura", "cpi-1:cpi", "coop-1:coop" };
    th_net net;
    nb_cur_net = &net;
    printf("\n== 1: revocation latency on five nodes ==\n");
    if (th_net_up(&net, FIVE, orgs) != 0)
        FAIL("cannot start the network");
    net.keep = o->keep;
    nb_ctl c[FIVE];
    for (size_t i = 0; i < FIVE; i++)
        nb_ctl_open_wait("consent-bench", &net, i, &c[i]);
    wait_links(c, FIVE);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    open_case(&c[0], 1, id);
    for (size_t i = 1; i < FIVE; i++)
        grant(&c[0], id, net.nodes[i].org, "lingua", "read");
    double t0 = nb_now_s();
    for (size_t i = 1; i < FIVE; i++)
        while (!shows(&c[i], id, "scopes/lingua/livello", NULL)) {
            if (nb_now_s() - t0 > 30)
                FAIL("%s could not read the granted lingua within 30 s", net.nodes[i].org);
            nb_sleep_ms(10);
        }
    printf("network %s up; case %s opened at %s, lingua granted read (basis consent) to the four "
           "others; all four read it %.3f s after the grants\n",
        net.root, id, net.nodes[0].org, nb_now_s() - t0);

    double *lat = calloc((size_t)o->rounds, sizeof(double));
    if (lat == NULL)
        FAIL("out of memory");
    double gone_max = 0;
    long still = 0;
    for (long r = 0; r < o->rounds; r++) {
        size_t k = 1 + (size_t)(r % (FIVE - 1));
        const char *who = net.nodes[k].org;
        char value[40], edit[64], reason[64];
        snprintf(value, sizeof(value), "revoca-%ld-%04x", r + 1, (unsigned)(rand() & 0xffff));
        snprintf(edit, sizeof(edit), "lingua.cpia=%s", value);
        snprintf(reason, sizeof(reason), "consent-bench round %ld", r + 1);
        const char *rev[] = { id, who, "lingua", "none", reason };
        const char *set[] = { id, edit };
        double s = nb_now_s();
        json_object *doc = call(&c[0], "consent.revoke", rev, 5);
        double revoked = nb_now_s() - s;
        int64_t epoch
            = nb_jint(json_object_array_get_idx(nb_json_at(doc, "scopes"), 0), "new_epoch");
        json_object_put(doc);
        json_object_put(call(&c[0], "case.set", set, 2));
        double written = nb_now_s() - s;
        double seen[FIVE] = { 0 }, gone = 0;
        size_t left = FIVE - 2; /* the remaining holders yet to show the value */
        while (left > 0 || gone == 0) {
            for (size_t i = 1; i < FIVE; i++) {
                if (i == k && gone == 0) {
                    json_object *d = show(&c[i], id);
                    if (d == NULL || nb_json_at(d, "scopes/lingua") == NULL)
                        gone = nb_now_s() - s;
                    json_object_put(d);
                } else if (i != k && seen[i] == 0
                    && shows(&c[i], id, "scopes/lingua/cpia", value)) {
                    seen[i] = nb_now_s() - s;
                    left--;
                }
            }
            double t = nb_now_s() - s;
            if (left > 0 && t > 60)
                FAIL("round %ld: the remaining holders did not all show the new value within 60 s",
                    r + 1);
            if (left == 0 && gone == 0 && t > 10)
                break; /* the revoked node still reads, 10 s on: said below */
            nb_sleep_ms(2);
        }
        double round = 0;
        for (size_t i = 1; i < FIVE; i++)
            round = seen[i] > round ? seen[i] : round;
        lat[r] = round;
        if (gone == 0)
            still++;
        else if (gone > gone_max)
            gone_max = gone;
        printf("round %2ld: revoked %-12s (consent.revoke answered in %.1f ms, new epoch %lld; "
               "case.set at %.1f ms); new value shown at",
            r + 1, who, revoked * 1e3, (long long)epoch, written * 1e3);
        for (size_t i = 1; i < FIVE; i++)
            if (i != k)
                printf(" %s %.1f ms,", net.nodes[i].org, seen[i] * 1e3);
        if (gone > 0)
            printf(" all three %.1f ms; %s stopped reading lingua at %.1f ms\n", round * 1e3, who,
                gone * 1e3);
        else
            printf(" all three %.1f ms; %s STILL READS lingua 10 s after the revocation\n",
                round * 1e3, who);

        /* Granted again (not timed), and read again before the next round. */
        grant(&c[0], id, who, "lingua", "read");
        double g = nb_now_s();
        while (!shows(&c[k], id, "scopes/lingua/cpia", value)) {
            if (nb_now_s() - g > 30)
                FAIL("round %ld: %s did not read lingua again within 30 s of its new grant", r + 1,
                    who);
            nb_sleep_ms(5);
        }
        printf("          %s granted lingua again: reads it (with every epoch's key) %.1f ms "
               "after the grant\n",
            who, (nb_now_s() - g) * 1e3);
    }
    qsort(lat, (size_t)o->rounds, sizeof(double), nb_cmp_double);
    res.rev_median = lat[o->rounds / 2];
    res.rev_max = lat[o->rounds - 1];
    res.rev_gone_max = gone_max;
    res.rev_still_read = still;
    res.have_revoke = true;
    printf("1. revocation: from consent.revoke at %s until the three remaining holders show the "
           "value written right after it, over %ld rounds: median %.1f ms, max %.1f ms, min "
           "%.1f ms [target < %.0f s: %s]; the revoked node stopped reading lingua within %.1f "
           "ms at most%s\n",
        net.nodes[0].org, o->rounds, res.rev_median * 1e3, res.rev_max * 1e3, lat[0] * 1e3,
        TARGET_REVOKE_S, pass(res.rev_max < TARGET_REVOKE_S), gone_max * 1e3,
        still > 0 ? "; IN SOME ROUNDS IT STILL READ IT (see above)" : "");
    free(lat);
    for (size_t i = 0; i < FIVE; i++)
        nb_ctl_close(&c[i]);
    if (th_net_down(&net) != 0)
        fprintf(stderr, "consent-bench: a node of section 1 did not stop cleanly (see above)\n");
    nb_cur_net = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* 2: rebuilding a scope after a narrowing                                                    */

static void phase_rebuild(const opts *o)
{
    enum { COMUNE = 0, CPIA = 1, PREF = 2, N3 = 3 };
    static const char *const orgs[N3]
        = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };
    th_net net;
    nb_cur_net = &net;
    printf("\n== 2: the rebuild of a scope of %ld deltas after a narrowing ==\n", o->deltas);
    if (th_net_up(&net, N3, orgs) != 0)
        FAIL("cannot start the network");
    net.keep = o->keep;
    nb_ctl c[N3];
    for (size_t i = 0; i < N3; i++)
        nb_ctl_open_wait("consent-bench", &net, i, &c[i]);
    wait_links(c, N3);
    char id[PROTO_CASE_ID_TEXT_SIZE];
    open_case(&c[COMUNE], 2, id);
    grant(&c[COMUNE], id, net.nodes[CPIA].org, "lingua", "write");
    grant(&c[COMUNE], id, net.nodes[PREF].org, "lingua", "read");
    double t0 = nb_now_s();
    while (!shows(&c[CPIA], id, "scopes/lingua/livello", NULL)
        || !shows(&c[PREF], id, "scopes/lingua/livello", NULL)) {
        if (nb_now_s() - t0 > 30)
            FAIL("the CPIA and the Prefettura could not read lingua within 30 s");
        nb_sleep_ms(10);
    }
    printf("network %s up; case %s: lingua granted write to %s, read to %s (basis consent)\n",
        net.root, id, net.nodes[CPIA].org, net.nodes[PREF].org);

    const char *inc[] = { id, "lingua.ore_frequenza+=1" };
    t0 = nb_now_s();
    double last = t0;
    for (long d = 0; d < o->deltas; d++) {
        json_object_put(call(&c[CPIA], "case.set", inc, 2));
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            printf("  CPIA writes: %ld/%ld\n", d + 1, o->deltas);
        }
    }
    double wrote = nb_now_s() - t0;
    char want[32];
    snprintf(want, sizeof(want), "%ld", o->deltas);
    double s = nb_now_s();
    /* The owner too: its narrowing's cut is the last header of the CPIA it holds, and a write
     * beyond it is refused at every holder (ARCHITECTURE.md section 4), so the downgrade waits
     * until the comune holds every one. */
    double pref_s = 0;
    for (;;) {
        if (pref_s == 0 && shows(&c[PREF], id, "scopes/lingua/ore_frequenza", want))
            pref_s = nb_now_s() - s;
        if (pref_s > 0 && shows(&c[COMUNE], id, "scopes/lingua/ore_frequenza", want))
            break;
        if (nb_now_s() - s > 600)
            FAIL("the Prefettura and the comune did not show ore_frequenza = %ld within 600 s",
                o->deltas);
        nb_sleep_ms(20);
    }
    json_object *st = call(&c[PREF], "status", NULL, 0);
    printf("the CPIA wrote %ld deltas (case.set lingua.ore_frequenza+=1, one per request) in "
           "%.2f s (%.0f/s); the Prefettura showed ore_frequenza = %ld %.2f s after the last (the "
           "comune %.2f s); the Prefettura holds %lld headers, %lld bodies\n",
        o->deltas, wrote, (double)o->deltas / wrote, o->deltas, pref_s, nb_now_s() - s,
        (long long)nb_jint(st, "counts/headers"), (long long)nb_jint(st, "counts/bodies"));
    json_object_put(st);

    /* The downgrade, and the rebuild it makes at every holder. */
    long pos[N3];
    for (size_t i = 0; i < N3; i++)
        pos[i] = file_size(net.nodes[i].log);
    const char *down[] = { id, net.nodes[CPIA].org, "lingua", "read", "consent-bench downgrade" };
    double cmd = nb_now_s();
    json_object_put(call(&c[COMUNE], "consent.revoke", down, 5));
    double answered = nb_now_s() - cmd;
    char line[N3][8192];
    bool got[N3] = { false };
    double seen_pref = 0;
    while (!got[PREF]) {
        got[PREF] = log_next(
            net.nodes[PREF].log, &pos[PREF], "event=rebuild.done", line[PREF], sizeof(line[PREF]));
        if (got[PREF])
            seen_pref = nb_now_s() - cmd;
        else if (nb_now_s() - cmd > 120)
            FAIL("no event=rebuild.done in the Prefettura's log within 120 s of the downgrade");
        else
            nb_sleep_ms(2);
    }
    /* The others, within 10 s more (the owner writes the narrowing: it has no rebuild to log). */
    for (double w = nb_now_s(); nb_now_s() - w < 10 && (!got[COMUNE] || !got[CPIA]);) {
        for (size_t i = 0; i < N3; i++)
            if (!got[i])
                got[i] = log_next(net.nodes[i].log, &pos[i], "event=rebuild.done", line[i], 8192);
        nb_sleep_ms(5);
    }
    printf("2. rebuild after the downgrade of %s to read (consent.revoke access read, answered "
           "in %.1f ms): a scope of %ld deltas of the CPIA plus the owner's opening delta and "
           "access-log entries\n",
        net.nodes[CPIA].org, answered * 1e3, o->deltas);
    long voided_all = 0;
    for (size_t i = 0; i < N3; i++) {
        res.reb_logged[i] = got[i];
        if (!got[i]) {
            printf("   %-13s no event=rebuild.done in its log within 10 s%s\n", net.nodes[i].org,
                i == COMUNE ? " (the owner wrote the narrowing: it decides nothing again)" : "");
            continue;
        }
        line[i][strcspn(line[i], "\n")] = 0;
        res.reb_ms[i] = (double)log_num(line[i], " ms=");
        res.reb_voided[i] = log_num(line[i], " voided=");
        voided_all += res.reb_voided[i];
        double at = log_line_time(line[i]);
        printf("   %-13s rebuild of %ld scope(s): ms=%.0f, voided=%ld; logged %.0f ms after the "
               "command (by its time stamp)\n      log: %s\n",
            net.nodes[i].org, log_num(line[i], " scopes="), res.reb_ms[i], res.reb_voided[i],
            at > 0 ? (at - cmd) * 1e3 : -1.0, line[i]);
    }
    res.reb_wall = seen_pref;
    res.have_rebuild = true;
    printf("   wall time from the command until the Prefettura's log had the line: %.1f ms (log "
           "polled 2 ms apart)\n",
        seen_pref * 1e3);
    printf("   voided: %ld in all. None is voided in this setup (every write of the CPIA lies "
           "within the cut): the rebuild's cost is O(bodies of the scope) whatever is voided\n",
        voided_all);
    /* Nothing was lost: both readers still show every increment. */
    for (size_t i = CPIA; i <= PREF; i++) {
        json_object *doc = show(&c[i], id);
        json_object *v = doc != NULL ? nb_json_at(doc, "scopes/lingua/ore_frequenza") : NULL;
        const char *got_v = v != NULL ? json_object_get_string(v) : "(nothing)";
        if (strcmp(got_v, want) != 0)
            printf("   WARNING: %s shows ore_frequenza = %s after the rebuild, not %ld: %s\n",
                net.nodes[i].org, got_v, o->deltas,
                doc != NULL ? json_object_to_json_string(doc) : "(code 3: reads nothing)");
        json_object_put(doc);
    }
    for (size_t i = 0; i < N3; i++)
        nb_ctl_close(&c[i]);
    if (th_net_down(&net) != 0)
        fprintf(stderr, "consent-bench: a node of section 2 did not stop cleanly (see above)\n");
    nb_cur_net = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* 3: removing a member that holds grants on many scopes                                     */

static void progress(const char *what, long done, long total, double t0)
{
    double t = nb_now_s() - t0, rate = t > 0 ? (double)done / t : 0;
    printf("  %s: %ld/%ld, %.0f/s, %.1f s elapsed, ETA %.0f s\n", what, done, total, rate, t,
        rate > 0 ? (double)(total - done) / rate : 0.0);
}

static size_t tag_count(nb_ctl *c, double *took)
{
    double t = nb_now_s();
    json_object *d = call(c, "digest", NULL, 0);
    json_object *tags = nb_json_at(d, "tags");
    size_t n = tags != NULL ? (size_t)json_object_object_length(tags) : 0;
    json_object_put(d);
    if (took != NULL)
        *took = nb_now_s() - t;
    return n;
}

/* Run a patto command in the network's root (no --dir); it must succeed. */
static void patto_ok(const char *const *args, const char *what)
{
    th_out out = th_patto_raw(args);
    if (out.status != 0) {
        fprintf(stderr, "%s%s", out.out ? out.out : "", out.err ? out.err : "");
        int st = out.status;
        th_out_free(&out);
        FAIL("%s failed (exit %d)", what, st);
    }
    th_out_free(&out);
}

static void phase_retire(const opts *o)
{
    enum { COMUNE = 0, CPIA = 1, COOP = 2, N3 = 3 };
    static const char *const orgs[N3] = { "comune-1:comune", "cpia-1:cpia", "coop-1:coop" };
    const long S = o->scopes, ncases = o->scopes / 2;
    th_net net;
    nb_cur_net = &net;
    printf("\n== 3: removing a member that holds grants on %ld scopes ==\n", S);
    if (th_net_make(&net, N3, orgs) != 0)
        FAIL("cannot set up the network");
    net.keep = o->keep;
    /* The comune and the CPIA reach each other only through the proxies: the comune dials the
     * CPIA through px[0], the CPIA dials the comune through px[1]. */
    nb_proxy *px[2] = { nb_proxy_new(net.nodes[CPIA].port), nb_proxy_new(net.nodes[COMUNE].port) };
    if (px[0] == NULL || px[1] == NULL)
        FAIL("cannot start the proxies");
    char conf[200];
    snprintf(conf, sizeof(conf), "\n[dial]\ncpia-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(px[0]));
    if (th_conf_append(&net, COMUNE, conf) != 0)
        FAIL("cannot edit the comune's pattod.conf");
    snprintf(conf, sizeof(conf), "\n[dial]\ncomune-1 = tcp://127.0.0.1:%u\n",
        (unsigned)nb_proxy_port(px[1]));
    if (th_conf_append(&net, CPIA, conf) != 0)
        FAIL("cannot edit the CPIA's pattod.conf");
    for (size_t i = 0; i < N3; i++)
        if (th_join(&net, i) != 0)
            FAIL("cannot start %s", net.nodes[i].org);
    nb_ctl c[N3];
    for (size_t i = 0; i < N3; i++)
        nb_ctl_open_wait("consent-bench", &net, i, &c[i]);
    wait_links(c, N3);
    printf("network %s: %s owns the cases; %s (dials the comune via proxy :%u, dialled via :%u) "
           "and %s read both scopes of each\n",
        net.root, net.nodes[COMUNE].org, net.nodes[CPIA].org, (unsigned)nb_proxy_port(px[1]),
        (unsigned)nb_proxy_port(px[0]), net.nodes[COOP].org);

    double t0 = nb_now_s(), last = t0;
    for (long i = 0; i < ncases; i++) {
        char id[PROTO_CASE_ID_TEXT_SIZE];
        open_case(&c[COMUNE], (unsigned long)i + 100, id);
        grant(&c[COMUNE], id, net.nodes[COOP].org, "anagrafica,lingua", "read");
        grant(&c[COMUNE], id, net.nodes[CPIA].org, "anagrafica,lingua", "read");
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            progress("setup (case.new + 2 consent.grant of 2 scopes)", i + 1, ncases, t0);
        }
    }
    printf("setup: %ld cases, %ld scopes granted read to %s and %s (basis consent) in %.1f s\n",
        ncases, S, net.nodes[COOP].org, net.nodes[CPIA].org, nb_now_s() - t0);
    /* Both grantees hold every scope's key, and the CPIA has merged all the comune wrote (their
     * digests are equal: version vectors and the state of every tag), before the window opens:
     * its traffic is then the re-key's. */
    t0 = nb_now_s();
    last = t0;
    json_object *dc = call(&c[COMUNE], "digest", NULL, 0);
    for (size_t i = CPIA; i <= COOP; i++)
        for (;;) {
            json_object *d = call(&c[i], "digest", NULL, 0);
            json_object *tags = nb_json_at(d, "tags");
            size_t n = tags != NULL ? (size_t)json_object_object_length(tags) : 0;
            bool same = nb_json_same(nb_json_at(dc, "vv"), nb_json_at(d, "vv"))
                && nb_json_same(nb_json_at(dc, "tags"), tags);
            json_object_put(d);
            if (n >= (size_t)S && (i != CPIA || same))
                break;
            if (nb_now_s() - t0 > 1800)
                FAIL("%s did not catch up within 1800 s (%zu tags of %ld)", net.nodes[i].org, n, S);
            if (nb_now_s() - last > 10) {
                last = nb_now_s();
                progress("grantees catch up (tags)", (long)n, S, t0);
            }
            nb_sleep_ms(200);
        }
    json_object_put(dc);
    printf(
        "both grantees hold the key of every scope (%ld tags each), and the CPIA's digest equals "
        "the comune's, %.1f s after the setup\n",
        S, nb_now_s() - t0);

    /* coop-1 leaves: its node stops, the admin retires it and signs manifest version 2. */
    if (th_stop(&net, COOP, SIGTERM) != 0)
        FAIL("cannot stop coop-1");
    nb_ctl_close(&c[COOP]);
    json_object *st = call(&c[COMUNE], "status", NULL, 0);
    char vvpath[100];
    snprintf(vvpath, sizeof(vvpath), "vv/%s", net.nodes[COOP].origin);
    int64_t coop_seq = nb_jint(st, vvpath);
    json_object_put(st);
    char seq[32], m2[400];
    snprintf(seq, sizeof(seq), "%lld", (long long)(coop_seq > 0 ? coop_seq : 0));
    snprintf(m2, sizeof(m2), "%s/manifest-2.bin", net.root);
    const char *retire[]
        = { "network", "retire", net.admin, net.nodes[COOP].org, "--last-seq", seq, NULL };
    const char *sign[] = { "network", "sign", net.admin, "--out", m2, NULL };
    patto_ok(retire, "patto network retire");
    patto_ok(sign, "patto network sign");
    printf("coop-1 stopped; patto network retire ADMIN coop-1 --last-seq %s (its seq in the "
           "comune's vv: %s); patto network sign ADMIN --out %s\n",
        seq, coop_seq > 0 ? "as shown" : "none, it never wrote", m2);

    /* What the links carry with nothing to do (anti-entropy rounds, keepalives), for
     * comparison with the window. */
    nb_proxy_counts a, b;
    nb_proxy_reset(px[0]);
    nb_proxy_reset(px[1]);
    double idle0 = nb_now_s();
    nb_sleep_ms(IDLE_S * 1000);
    nb_proxy_get(px[0], &a);
    nb_proxy_get(px[1], &b);
    double idle_rate = (double)(a.to_target + b.from_target) / (nb_now_s() - idle0);
    printf("idle, before the import: the comune sent the CPIA %.0f B/s over %d s (anti-entropy, "
           "keepalives)\n",
        idle_rate, IDLE_S);

    long pos = file_size(net.nodes[COMUNE].log), pos0 = pos;
    size_t tags0 = tag_count(&c[CPIA], NULL);
    nb_proxy_reset(px[0]);
    nb_proxy_reset(px[1]);
    double imp = nb_now_s();
    th_out out = th_patto(&net, COMUNE, "manifest", "import", m2, NULL);
    double imp_c = nb_now_s() - imp;
    if (out.status != 0)
        FAIL("manifest import at the comune failed (%d): %s%s", out.status, out.out, out.err);
    th_out_free(&out);
    out = th_patto(&net, CPIA, "manifest", "import", m2, NULL);
    double imp_p = nb_now_s() - imp;
    if (out.status != 0)
        FAIL("manifest import at the CPIA failed (%d): %s%s", out.status, out.out, out.err);
    th_out_free(&out);
    printf("manifest version 2 imported at the comune (patto manifest import, %.1f ms) and at "
           "the CPIA (done %.1f ms after the first)\n",
        imp_c * 1e3, imp_p * 1e3);

    long closed = 0, errors = 0;
    size_t tags = tags0;
    double closed_at = 0, keys_at = 0, closed_logged = 0, digest_max = 0;
    long polls = 0;
    double last_poll = 0;
    char line[8192];
    while (closed_at == 0 || keys_at == 0) {
        while (closed_at == 0
            && log_next(net.nodes[COMUNE].log, &pos, "event=consent.close", line, sizeof(line))) {
            if (strstr(line, "event=consent.closed ") != NULL) {
                closed += log_num(line, " scopes=");
                if (closed >= S) {
                    closed_at = nb_now_s() - imp;
                    double at = log_line_time(line);
                    closed_logged = at > 0 ? at - imp : closed_at;
                }
            } else if (strstr(line, "error=") != NULL) {
                errors++;
            }
        }
        /* A digest of 20,000 tags costs the CPIA about 200 ms of its loop: polled once a
         * second, so that the measuring does not slow what it measures (the figure is then
         * within a second). */
        if (keys_at == 0 && nb_now_s() - last_poll >= 1.0) {
            last_poll = nb_now_s();
            double took;
            tags = tag_count(&c[CPIA], &took);
            polls++;
            digest_max = took > digest_max ? took : digest_max;
            if (tags >= 2 * (size_t)S)
                keys_at = nb_now_s() - imp;
        }
        if (nb_now_s() - imp > RETIRE_TIMEOUT_S)
            break;
        nb_sleep_ms(50);
    }
    double window = nb_now_s() - imp;
    nb_proxy_get(px[0], &a);
    nb_proxy_get(px[1], &b);
    uint64_t down = a.to_target + b.from_target, up = a.from_target + b.to_target;
    res.ret_done = closed_at > 0 && keys_at > 0;
    res.ret_closed_s = closed_logged;
    res.ret_keys_s = keys_at;
    res.ret_s = res.ret_done ? (closed_at > keys_at ? closed_at : keys_at) : window;
    res.ret_bytes = down;
    res.ret_idle = idle_rate * window;
    res.ret_closed = closed;
    res.ret_tags = (long)tags;
    res.have_retire = true;
    printf("the comune logged consent.closed for %ld of %ld scopes%s (%ld consent.close errors); "
           "the CPIA's digest lists %zu tags of %ld (%zu before the import; %ld digest polls, the "
           "longest %.0f ms)\n",
        closed, S, closed_at > 0 ? "" : " BEFORE THE TIMEOUT", errors, tags, 2 * S, tags0, polls,
        digest_max * 1e3);
    if (res.ret_done)
        printf("3. removing %s: from the manifest import at the comune, every grant to it was "
               "closed at %.2f s (the consent.closed line's time stamp; seen in the log at %.2f "
               "s) and the CPIA held the new key of all %ld scopes at %.2f s: %.2f s in all "
               "[target within %.0f s: %s]; the comune sent the CPIA %llu B in that window = "
               "%.0f B per scope (the CPIA sent %llu B; the idle rate over as long a window: "
               "%.0f B)\n",
            net.nodes[COOP].org, closed_logged, closed_at, S, keys_at, res.ret_s, TARGET_RETIRE_S,
            pass(res.ret_s <= TARGET_RETIRE_S), (unsigned long long)down, (double)down / (double)S,
            (unsigned long long)up, res.ret_idle);
    else
        printf("3. removing %s: NOT DONE within %.0f s of the import: the comune closed %ld of %ld "
               "scopes, the CPIA holds %zu of %ld tags [target within %.0f s: MISS]; the comune "
               "sent the CPIA %llu B meanwhile (the CPIA sent %llu B; the idle rate over as long a "
               "window: %.0f B)\n",
            net.nodes[COOP].org, RETIRE_TIMEOUT_S, closed, S, tags, 2 * S, TARGET_RETIRE_S,
            (unsigned long long)down, (unsigned long long)up, res.ret_idle);
    /* What the nodes logged of it (the close pass, the manifest, warnings). */
    static const char *const pats[]
        = { "event=consent.closed", "event=manifest", "level=warn", "level=error", NULL };
    printf("  the comune's log since the import (manifest, consent.closed, warnings):\n");
    log_print(&net, COMUNE, pos0, pats, 30);
    for (size_t i = 0; i < N3; i++)
        nb_ctl_close(&c[i]);
    if (th_net_down(&net) != 0)
        fprintf(stderr, "consent-bench: a node of section 3 did not stop cleanly (see above)\n");
    nb_cur_net = NULL;
    nb_proxy_free(px[0]);
    nb_proxy_free(px[1]);
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
        "usage: consent-bench [--rounds N] [--deltas N] [--scopes N] [--skip 123] [--keep]\n"
        "  --rounds N   revocations timed on five nodes (1); default 10\n"
        "  --deltas N   deltas of the scope rebuilt after a downgrade (2); default 1000\n"
        "  --scopes N   scopes granted to the member removed (3), even; default 10000\n"
        "  --skip 123   skip sections (repeatable)\n"
        "  --keep       keep the networks' directories (and logs)\n");
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
    opts o = { .rounds = 10, .deltas = 1000, .scopes = 10000 };
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--rounds") == 0 && has)
            o.rounds = num(argv[++i]);
        else if (strcmp(argv[i], "--deltas") == 0 && has)
            o.deltas = num(argv[++i]);
        else if (strcmp(argv[i], "--scopes") == 0 && has)
            o.scopes = num(argv[++i]);
        else if (strcmp(argv[i], "--skip") == 0 && has) {
            const char *s = argv[++i];
            o.skip_revoke = o.skip_revoke || strchr(s, '1') != NULL;
            o.skip_rebuild = o.skip_rebuild || strchr(s, '2') != NULL;
            o.skip_retire = o.skip_retire || strchr(s, '3') != NULL;
        } else if (strcmp(argv[i], "--keep") == 0)
            o.keep = true;
        else
            usage();
    }
    if (o.scopes % 2 != 0) {
        fprintf(stderr, "consent-bench: --scopes must be even (two scopes per case)\n");
        return 1;
    }
    if (!nb_begin(argc, argv, PATTO_BIN, PATTOD_BIN))
        return 1;
    srand((unsigned)time(NULL));
    printf("programs: %s, %s\n", PATTO_BIN, PATTOD_BIN);
    if (!o.skip_revoke)
        phase_revoke(&o);
    if (!o.skip_rebuild)
        phase_rebuild(&o);
    if (!o.skip_retire)
        phase_retire(&o);

    printf("\n== summary ==\ncommand:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    if (res.have_revoke)
        printf("1. revocation, %ld rounds on 5 nodes: the 3 remaining holders show a write made "
               "right after the revoke in median %.1f ms, max %.1f ms [target < %.0f s: %s]; "
               "the revoked node stopped reading within %.1f ms%s\n",
            o.rounds, res.rev_median * 1e3, res.rev_max * 1e3, TARGET_REVOKE_S,
            pass(res.rev_max < TARGET_REVOKE_S), res.rev_gone_max * 1e3,
            res.rev_still_read > 0 ? " (BUT STILL READ IT IN SOME ROUNDS)" : "");
    if (res.have_rebuild) {
        static const char *const names[3] = { "comune-1", "cpia-1", "prefettura-1" };
        printf("2. rebuild of a scope of %ld deltas after a downgrade:", o.deltas);
        for (int i = 0; i < 3; i++) {
            if (res.reb_logged[i])
                printf(" %s ms=%.0f (voided %ld);", names[i], res.reb_ms[i], res.reb_voided[i]);
            else
                printf(" %s no rebuild logged;", names[i]);
        }
        printf(" the Prefettura's line %.1f ms after the command\n", res.reb_wall * 1e3);
    }
    if (res.have_retire) {
        if (res.ret_done)
            printf("3. removing a member holding %ld scopes: every grant closed at %.2f s, the "
                   "CPIA holds every new key at %.2f s: %.2f s [target within %.0f s: %s]; %llu B "
                   "from the comune to the CPIA = %.0f B/scope\n",
                o.scopes, res.ret_closed_s, res.ret_keys_s, res.ret_s, TARGET_RETIRE_S,
                pass(res.ret_s <= TARGET_RETIRE_S), (unsigned long long)res.ret_bytes,
                (double)res.ret_bytes / (double)o.scopes);
        else
            printf("3. removing a member holding %ld scopes: not done within %.0f s (%ld scopes "
                   "closed, %ld of %ld tags at the CPIA) [target within %.0f s: MISS]; %llu B from "
                   "the comune to the CPIA\n",
                o.scopes, RETIRE_TIMEOUT_S, res.ret_closed, res.ret_tags, 2 * o.scopes,
                TARGET_RETIRE_S, (unsigned long long)res.ret_bytes);
    }
    if (write_retries > 0)
        printf("writes the nodes asked to retry (a peer had just connected): %ld\n", write_retries);
    return 0;
}
