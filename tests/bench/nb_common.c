/*
 * nb_common.c - what the benchmarks share (nb_common.h).
 */
#include "nb_common.h"

#include <proto/proto.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

th_net *nb_cur_net;

void nb_fail(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (nb_cur_net != NULL) {
        nb_cur_net->keep = true;
        th_net_down(nb_cur_net);
    }
    exit(1);
}

double nb_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nb_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int nb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

long nb_positive(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *end != 0 || end == s || v < 1 ? -1 : v;
}

void nb_ctl_open_wait(const char *prog, th_net *net, size_t i, nb_ctl *c)
{
    for (int k = 0; k < 4000; k++) {
        if (nb_ctl_open(c, net->nodes[i].dir) == 0)
            return;
        nb_sleep_ms(5);
    }
    nb_fail(prog, "cannot reach %s's control socket: %s", net->nodes[i].org, c->err);
}

static const char *const nomi[] = { "Amina", "Kwame", "Yusuf", "Mariam", "Ibrahim", "Fatou",
    "Samir", "Aisha", "Omar", "Nadia", "Tesfaye", "Lamin", "Chiara", "Giulia", "Mamadou", "Rahel" };
static const char *const cognomi[] = { "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
    "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Diallo", "Traore" };
static const char *const paesi[]
    = { "SEN", "NGA", "MAR", "EGY", "BGD", "PAK", "TUN", "GMB", "MLI", "CIV", "ERI", "AFG" };
static const char *const sessi[] = { "F", "M", "X", "non-indicato" };
static const char *const livelli[] = { "pre-A1", "A1", "A2", "B1", "B2", "C1", "C2" };
static const char *const corsi[] = { "alfabetizzazione", "pre-A1", "A1", "A2", "B1" };
static const char *const attestati[] = { "nessuno", "A1", "A2", "B1", "B2" };

#define PICK(arr, k) (arr)[(k) % (sizeof(arr) / sizeof((arr)[0]))]

/* The 12 edits of case i at generation gen (0: opening the case), 6 of anagrafica and 6 of
 * lingua, all registers. Fills e->args[1..12]. */
void make_edits(edits *e, unsigned long i, unsigned long gen)
{
    unsigned long k = i * 7 + gen * 13;
    static const char cons[] = "BCDFGLMNPRSTVZ";
    char cf[17];
    snprintf(cf, sizeof(cf), "%c%c%c%c%c%c%02lu%c%02luZ%03lu%c", cons[k % 14], cons[(k / 3) % 14],
        cons[(k / 5) % 14], cons[(i / 7) % 14], cons[(i / 11) % 14], cons[(i / 13) % 14],
        60 + i % 40, "ABCDEHLMPRST"[i % 12], 1 + i % 28, (i * 37) % 1000, 'A' + (int)(k % 26));
    th_cf_check(cf);
    snprintf(e->text[0], 96, "anagrafica.nome=%s", PICK(nomi, k));
    snprintf(e->text[1], 96, "anagrafica.cognome=%s", PICK(cognomi, k / 3));
    snprintf(e->text[2], 96, "anagrafica.sesso=%s", PICK(sessi, k));
    snprintf(e->text[3], 96, "anagrafica.data_nascita=%04lu-%02lu-%02lu", 1960 + i % 45, 1 + i % 12,
        1 + (i + gen) % 28);
    snprintf(e->text[4], 96, "anagrafica.paese_nascita=%s", PICK(paesi, k));
    snprintf(e->text[5], 96, "anagrafica.codice_fiscale=%s", cf);
    snprintf(e->text[6], 96, "lingua.livello=%s", PICK(livelli, k));
    snprintf(e->text[7], 96, "lingua.data_valutazione=%04lu-%02lu-%02lu", 2023 + gen % 3,
        1 + (i + gen) % 12, 1 + (i * 3 + gen) % 28);
    snprintf(e->text[8], 96, "lingua.cpia=cpia-%lu", 1 + k % 4);
    snprintf(e->text[9], 96, "lingua.corso=%s", PICK(corsi, k));
    snprintf(e->text[10], 96, "lingua.ore_previste=%lu", 100 + (i + gen * 10) % 400);
    snprintf(e->text[11], 96, "lingua.attestato=%s", PICK(attestati, k));
    for (int f = 0; f < NB_NFIELDS; f++)
        e->args[f + 1] = e->text[f];
}

json_object *nb_call(
    const char *prog, nb_ctl *c, const char *cmd, const char *const *args, size_t nargs)
{
    json_object *doc = NULL;
    int rc = nb_ctl_call(c, cmd, args, nargs, 600000, &doc);
    if (rc != 0)
        nb_fail(prog, "%s failed (%d): %s", cmd, rc, c->err);
    return doc;
}

int64_t nb_jint(json_object *doc, const char *path)
{
    json_object *v = nb_json_at(doc, path);
    return v != NULL ? json_object_get_int64(v) : -1;
}

uint64_t nb_vv_sum(json_object *vv)
{
    uint64_t n = 0;
    if (vv == NULL)
        return 0;
    json_object_object_foreach(vv, key, val)
    {
        (void)key;
        n += (uint64_t)json_object_get_int64(val);
    }
    return n;
}

long nb_proc_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key) + 1, NULL, 10);
    fclose(f);
    return v;
}

double nb_wait_same(const char *prog, nb_ctl *c, json_object *ref, double limit_s, int poll_ms,
    const char *what, pid_t pid, long *heap_kib)
{
    static const char *const vv_only[] = { "vv" };
    double t0 = nb_now_s();
    for (;;) {
        if (heap_kib != NULL) {
            long k = nb_proc_kib(pid, "RssAnon:");
            if (k > *heap_kib)
                *heap_kib = k;
        }
        json_object *d = nb_call(prog, c, "digest", vv_only, 1);
        bool near = nb_json_same(nb_json_at(ref, "vv"), nb_json_at(d, "vv"))
            && nb_jint(d, "in_hand") == 0;
        json_object_put(d);
        double seen = nb_now_s();
        if (near) {
            d = nb_call(prog, c, "digest", NULL, 0);
            bool same = nb_json_same(nb_json_at(ref, "vv"), nb_json_at(d, "vv"))
                && nb_json_same(nb_json_at(ref, "tags"), nb_json_at(d, "tags"));
            json_object_put(d);
            if (same)
                return seen; /* not counting the whole digest, which only confirms it */
        }
        if (nb_now_s() - t0 > limit_s)
            nb_fail(prog, "%s: no convergence within %.0f s", what, limit_s);
        nb_sleep_ms(near ? 100 : poll_ms);
    }
}

bool nb_begin(int argc, char **argv, const char *patto, const char *pattod)
{
    th_programs(patto, pattod);
    if (proto_init() != PROTO_OK)
        return false;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    return true;
}
