/*
 * find-bench - `patto case find` on a real pattod on 127.0.0.1 (node/CONTROL.md, case.find).
 * A program run by hand, never a ctest test; it prints figures and fails only when it cannot
 * measure.
 *
 *   1. fills one node with --cases cases (default 100000) over one control socket, one
 *      case.new each: nome, cognome (invented: two syllables and an ending, about 13,000
 *      surnames), nomi_varianti, data_nascita, a codice fiscale with its check character, and
 *      documenti.permesso_numero;
 *   2. sends --queries requests of each kind (default 2000), back to back from one client, and
 *      prints p50, p99 and max of the round trip (request to answer over the control socket:
 *      it includes the IPC and the JSON, so it bounds the node's own time from above):
 *      surname; surname and first name; codice fiscale; birth date (dd/mm/yyyy); permit
 *      number; --fuzzy variant spelling of a first name with its surname; and, as a worst
 *      case, --fuzzy variant spelling of a common first name alone (thousands of matches; the
 *      node looks at 1,000 at most).
 *
 * Usage: find-bench [--cases N] [--queries N] [--keep]
 * Only synthetic data; only 127.0.0.1.
 */
#include "harness.h"
#include "nb_common.h"
#include "node_bench_ctl.h"

#include <proto/proto.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PATTO_BIN
#define PATTO_BIN "patto"
#endif
#ifndef PATTOD_BIN
#define PATTOD_BIN "pattod"
#endif

#define FAIL(...) nb_fail("find-bench", __VA_ARGS__)
#define CALL(...) nb_call("find-bench", __VA_ARGS__)

static const char *const nomi[] = { "Mohamed", "Amina", "Kwame", "Yusuf", "Mariam", "Ibrahim",
    "Fatou", "Samir", "Aisha", "Omar", "Nadia", "Tesfaye", "Lamin", "Chiara", "Giulia", "Mamadou",
    "Rahel", "Ahmed", "Hussein", "Fatima", "Youssef", "Abdou", "Binta", "Kofi", "Esi", "Tariq",
    "Leila", "Ousmane", "Awa", "Bilal", "Hana", "Idris", "Jamal", "Karim", "Luca", "Marco", "Sara",
    "Elena", "Nour", "Zainab" };
/* spellings of the first names above as other documents write them */
static const char *const varianti[] = { "Muhammad", "Aminah", "Kuame", "Jusuf", "Maryam", "Ebrahim",
    "Fatu", "Sameer", "Ayesha", "Umar", "Nadiya", "Tesfay", "Lamine", "Kiara", "Julia", "Mamadu",
    "Rahael", "Ahmad", "Husain", "Fatimah", "Yusef", "Abdu", "Binto", "Kophi", "Essi", "Tareq",
    "Layla", "Usman", "Aua", "Bilaal", "Hanna", "Edris", "Djamal", "Kareem", "Lucas", "Marko",
    "Sarah", "Helena", "Nur", "Zaynab" };
#define NNOMI (sizeof(nomi) / sizeof(nomi[0]))
static const char *const syl[] = { "ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra",
    "se", "ti", "vo", "za", "be", "co", "da", "fe", "gi", "ko", "la", "me", "na", "po", "ri", "so",
    "tu", "va", "ze", "bo", "cu", "de", "fi", "ga", "ku", "lo", "mu", "ne", "pi" };
#define NSYL (sizeof(syl) / sizeof(syl[0]))
static const char *const ends[] = { "ni", "lli", "tti", "ssi", "ro", "no", "lo", "ri" };

typedef struct person {
    char cognome[32], cf[17], birth[11], permit[24];
    unsigned nome;
} person;

static void make_person(person *p, unsigned long i)
{
    unsigned long h = i * 2654435761u;
    unsigned long s = (h >> 7) % (NSYL * NSYL * 8);
    snprintf(p->cognome, sizeof(p->cognome), "%s%s%s", syl[s % NSYL], syl[(s / NSYL) % NSYL],
        ends[s / (NSYL * NSYL)]);
    p->cognome[0] = (char)(p->cognome[0] - 'a' + 'A');
    p->nome = (unsigned)((h >> 3) % NNOMI);
    snprintf(p->birth, sizeof(p->birth), "%04lu-%02lu-%02lu", 1950 + (h >> 11) % 55,
        1 + (h >> 17) % 12, 1 + (h >> 21) % 28);
    static const char cons[] = "BCDFGLMNPRSTVZ";
    snprintf(p->cf, sizeof(p->cf), "%c%c%c%c%c%c%02lu%c%02luZ%03luX", cons[i % 14],
        cons[(i / 14) % 14], cons[(i / 196) % 14], cons[(i / 2744) % 14], cons[(h >> 5) % 14],
        cons[(h >> 9) % 14], (50 + (h >> 11) % 55) % 100, "ABCDEHLMPRST"[(h >> 17) % 12],
        1 + (h >> 21) % 28, i % 1000);
    th_cf_check(p->cf);
    snprintf(p->permit, sizeof(p->permit), "I%08lu", i);
}

typedef enum {
    Q_SURNAME,
    Q_FULL,
    Q_CF,
    Q_BIRTH,
    Q_PERMIT,
    Q_FUZZY_FULL,
    Q_FUZZY_COMMON,
    Q_KINDS
} qkind;
static const char *const qnames[Q_KINDS]
    = { "surname", "surname + first name", "codice fiscale", "birth date (dd/mm/yyyy)",
          "permit number", "--fuzzy variant + surname", "--fuzzy variant alone (worst)" };

int main(int argc, char **argv)
{
    long cases = 100000, queries = 2000;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cases") == 0 && i + 1 < argc)
            cases = nb_positive(argv[++i]);
        else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc)
            queries = nb_positive(argv[++i]);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else {
            fprintf(stderr, "usage: find-bench [--cases N] [--queries N] [--keep]\n");
            return 1;
        }
    }
    if (cases < 1 || queries < 1) {
        fprintf(stderr, "find-bench: --cases and --queries are whole numbers >= 1\n");
        return 1;
    }
    if (!nb_begin(argc, argv, PATTO_BIN, PATTOD_BIN))
        return 1;

    static const char *const orgs[] = { "comune-1:comune" };
    th_net net;
    nb_cur_net = &net;
    if (th_net_up(&net, 1, orgs) != 0)
        FAIL("cannot set up the node");
    net.keep = keep;
    nb_ctl c;
    nb_ctl_open_wait("find-bench", &net, 0, &c);

    /* 1. The store. */
    double t0 = nb_now_s(), last = t0;
    for (long i = 0; i < cases; i++) {
        person p;
        make_person(&p, (unsigned long)i);
        char e[6][96];
        snprintf(e[0], 96, "anagrafica.nome=%s", nomi[p.nome]);
        snprintf(e[1], 96, "anagrafica.cognome=%s", p.cognome);
        snprintf(e[2], 96, "anagrafica.nomi_varianti+=%s", varianti[p.nome]);
        snprintf(e[3], 96, "anagrafica.data_nascita=%s", p.birth);
        snprintf(e[4], 96, "anagrafica.codice_fiscale=%s", p.cf);
        snprintf(e[5], 96, "documenti.permesso_numero=%s", p.permit);
        const char *args[6] = { e[0], e[1], e[2], e[3], e[4], e[5] };
        json_object_put(CALL(&c, "case.new", args, 6));
        if (nb_now_s() - last > 10) {
            last = nb_now_s();
            printf("  case.new: %ld/%ld, %.0f/s\n", i + 1, cases, (double)(i + 1) / (last - t0));
        }
    }
    printf("store: %ld cases in %.1f s\n", cases, nb_now_s() - t0);

    /* 2. Queries. */
    double *lat = calloc((size_t)queries, sizeof(*lat)), *all = NULL;
    size_t nall = 0;
    if (lat == NULL || (all = calloc((size_t)queries * Q_KINDS, sizeof(*all))) == NULL)
        FAIL("out of memory");
    printf("%-32s  %8s  %8s  %8s  %12s\n", "query", "p50 ms", "p99 ms", "max ms", "cases/answer");
    for (int k = 0; k < Q_KINDS; k++) {
        long found = 0;
        for (long q = 0; q < queries; q++) {
            unsigned long i
                = ((unsigned long)q * 7919u + (unsigned long)k * 104729u) % (unsigned long)cases;
            person p;
            make_person(&p, i);
            char text[128];
            const char *mode = "";
            switch ((qkind)k) {
            case Q_SURNAME:
                snprintf(text, sizeof text, "%s", p.cognome);
                break;
            case Q_FULL:
                snprintf(text, sizeof text, "%s %s", p.cognome, nomi[p.nome]);
                break;
            case Q_CF:
                snprintf(text, sizeof text, "%s", p.cf);
                break;
            case Q_BIRTH:
                snprintf(text, sizeof text, "%.2s/%.2s/%.4s", p.birth + 8, p.birth + 5, p.birth);
                break;
            case Q_PERMIT:
                snprintf(text, sizeof text, "%s", p.permit);
                break;
            case Q_FUZZY_FULL:
                snprintf(text, sizeof text, "%s %s", varianti[p.nome], p.cognome);
                mode = "fuzzy";
                break;
            case Q_FUZZY_COMMON:
            case Q_KINDS:
                snprintf(text, sizeof text, "%s", varianti[p.nome]);
                mode = "fuzzy";
                break;
            }
            const char *args[3] = { text, mode, "20" };
            double s = nb_now_s();
            json_object *doc = CALL(&c, "case.find", args, 3);
            lat[q] = 1e3 * (nb_now_s() - s);
            json_object *cs = nb_json_at(doc, "cases");
            size_t n = cs != NULL ? json_object_array_length(cs) : 0;
            if (n == 0)
                FAIL("%s '%s' found nothing (case %lu should match)", qnames[k], text, i);
            found += (long)n;
            json_object_put(doc);
        }
        memcpy(all + nall, lat, (size_t)queries * sizeof(*lat));
        nall += (size_t)queries;
        qsort(lat, (size_t)queries, sizeof(*lat), nb_cmp_double);
        printf("%-32s  %8.2f  %8.2f  %8.2f  %12.1f\n", qnames[k], lat[queries / 2],
            lat[(size_t)((double)queries * 0.99)], lat[queries - 1],
            (double)found / (double)queries);
    }
    qsort(all, nall, sizeof(*all), nb_cmp_double);
    printf("%-32s  %8.2f  %8.2f  %8.2f\n", "all kinds", all[nall / 2],
        all[(size_t)((double)nall * 0.99)], all[nall - 1]);
    free(lat);
    free(all);
    nb_ctl_close(&c);
    nb_cur_net = NULL;
    return th_net_down(&net) == 0 ? 0 : 1;
}
