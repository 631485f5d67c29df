/*
 * node.find: `patto case find` and the find index on real pattod processes (a comune and a
 * CPIA on 127.0.0.1), and the folding and phonetic keys it rests on:
 * - names match whatever their case and accents, every query word the start of a name word;
 * - --fuzzy matches transliteration variants (Mohamed / Mohammed / Muhammad), closest first;
 * - a codice fiscale (16 characters, 11-digit provisional), a birth date typed YYYY-MM-DD or
 *   dd/mm/yyyy, a permit number;
 * - a grantee finds a case it reads (the index follows merged deltas); once a revocation purges
 *   its anagrafica, find there no longer returns it and its store's find database holds none
 *   of its terms.
 * All names are invented.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "findidx.h"
#include "harness.h"

#include <node/node.h>
#include <proto/proto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { COMUNE = 0, CPIA = 1 };

static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia" };

static int setup(void **state)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    if (th_net_up(net, 2, orgs) != 0) {
        net->keep = true;
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    th_net *net = *state;
    int rc = th_net_down(net);
    free(net);
    return rc;
}

#define CHECK(net, cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (net)->keep = true;                                                                    \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return o != NULL && json_object_object_get_ex(o, key, &v) && v != NULL
        ? json_object_get_string(v)
        : NULL;
}

/* Open a case at the comune with up to four edits; its id in id. */
static void new_case(
    th_net *net, char id[64], const char *e1, const char *e2, const char *e3, const char *e4)
{
    th_out o = th_patto_write(net, COMUNE, "case", "new", e1, e2, e3, e4, NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case new: %d %s %s", o.status, o.out, o.err);
    snprintf(id, 64, "%s", jstr(o.json, "id"));
    th_out_free(&o);
}

/* The ids `patto case find` answers at node i (args NULL-terminated after the query), in
 * order, joined by spaces; the matched kind of the first in matched. */
static void find_ids(th_net *net, size_t i, char *out, size_t size, char *matched, ...)
{
    const char *a[6] = { NULL };
    va_list ap;
    va_start(ap, matched);
    for (size_t k = 0; k < 5; k++)
        if ((a[k] = va_arg(ap, const char *)) == NULL)
            break;
    va_end(ap);
    th_out o = th_patto(net, i, "case", "find", a[0], a[1], a[2], a[3], a[4], NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case find %s: %d %s %s", a[0], o.status, o.out,
        o.err);
    json_object *cases;
    out[0] = 0;
    if (matched != NULL)
        matched[0] = 0;
    if (json_object_object_get_ex(o.json, "cases", &cases))
        for (size_t k = 0; k < json_object_array_length(cases); k++) {
            json_object *c = json_object_array_get_idx(cases, k);
            size_t l = strlen(out);
            snprintf(out + l, size - l, "%s%s", l ? " " : "", jstr(c, "id"));
            if (k == 0 && matched != NULL)
                snprintf(matched, 32, "%s", jstr(c, "matched"));
        }
    th_out_free(&o);
}

/* ---------------------------------------------------------------------------------------- */

static void fold_and_phonetic(void **state)
{
    (void)state;
    char f[128], k1[16], k2[16];
    node__find_fold("Núñez-García, JOSÉ Luís", strlen("Núñez-García, JOSÉ Luís"), f, sizeof f);
    assert_string_equal(f, "nunez garcia jose luis");
    node__find_fold("Łukasz Żółć", strlen("Łukasz Żółć"), f, sizeof f);
    assert_string_equal(f, "lukasz zolc");
    static const char *const same[][2] = { { "mohamed", "muhammad" }, { "mohamed", "mohammed" },
        { "mohamed", "mouhamed" }, { "youssef", "yusuf" }, { "yusuf", "jusuf" },
        { "aisha", "aicha" }, { "aisha", "ayesha" }, { "hussein", "husain" }, { "ahmed", "ahmad" },
        { "fatima", "fatimah" } };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        node__find_phonetic(same[i][0], k1, sizeof k1);
        node__find_phonetic(same[i][1], k2, sizeof k2);
        if (strcmp(k1, k2) != 0)
            fail_msg("%s (%s) and %s (%s) should share a key", same[i][0], k1, same[i][1], k2);
    }
    node__find_phonetic("mohamed", k1, sizeof k1);
    node__find_phonetic("martina", k2, sizeof k2);
    assert_string_not_equal(k1, k2);
    assert_int_equal(node__find_phonetic("ab12", k1, sizeof k1), 0);
    assert_int_equal(node__find_distance("mohamed", "muhammad"), 3);
    assert_int_equal(node__find_distance("", "abc"), 3);
}

static void find_by_name_code_date_permit(void **state)
{
    th_net *net = *state;
    char a[64], b[64], c[64], d[64], got[512], m[32], want[200];
    new_case(net, a, "anagrafica.nome=José Luis", "anagrafica.cognome=Núñez Ferrà",
        "anagrafica.data_nascita=1990-01-01", "anagrafica.codice_fiscale=NNZJSL90A01Z131I");
    new_case(net, b, "anagrafica.nome=Mohamed", "anagrafica.cognome=Benali",
        "anagrafica.codice_fiscale=12345678903", "documenti.permesso_numero=I-ab 1234567");
    new_case(net, c, "anagrafica.nome=Yusuf", "anagrafica.cognome=Okonkwo",
        "anagrafica.nomi_varianti+=Youssef", "anagrafica.data_nascita=1985-12-10");
    new_case(net, d, "anagrafica.nome=Mohammed", "anagrafica.cognome=Rossi", NULL, NULL);

    /* names: case and accents do not matter; every word the start of a name word */
    find_ids(net, COMUNE, got, sizeof got, m, "nunez", NULL);
    CHECK(net, strcmp(got, a) == 0 && strcmp(m, "name") == 0, "nunez: %s (%s)", got, m);
    find_ids(net, COMUNE, got, sizeof got, NULL, "NÚÑEZ josé", NULL);
    CHECK(net, strcmp(got, a) == 0, "NÚÑEZ josé: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "ferra jos", NULL);
    CHECK(net, strcmp(got, a) == 0, "ferra jos (prefixes): %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "nunez mohamed", NULL);
    CHECK(net, got[0] == 0, "nunez mohamed matched %s (every word must match)", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "youssef", NULL);
    CHECK(net, strcmp(got, c) == 0, "a name variant: %s", got);

    /* --fuzzy: transliteration variants, the exact spelling first */
    find_ids(net, COMUNE, got, sizeof got, NULL, "Muhammad", NULL);
    CHECK(net, got[0] == 0, "Muhammad without --fuzzy matched %s", got);
    find_ids(net, COMUNE, got, sizeof got, m, "Muhammad", "--fuzzy", NULL);
    snprintf(want, sizeof want, "%s %s", d, b); /* Mohammed is closer to Muhammad */
    CHECK(net, strcmp(got, want) == 0 && strcmp(m, "name (phonetic)") == 0,
        "Muhammad --fuzzy: %s (%s), want %s", got, m, want);
    find_ids(net, COMUNE, got, sizeof got, m, "mohamed", "--fuzzy", NULL);
    snprintf(want, sizeof want, "%s %s", b, d); /* the exact spelling first */
    CHECK(
        net, strcmp(got, want) == 0 && strcmp(m, "name") == 0, "mohamed --fuzzy: %s (%s)", got, m);
    find_ids(net, COMUNE, got, sizeof got, NULL, "mohammed benali", "--fuzzy", NULL);
    CHECK(net, strcmp(got, b) == 0, "mohammed benali --fuzzy: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "Jusuf", "--fuzzy", NULL);
    CHECK(net, strcmp(got, c) == 0, "Jusuf --fuzzy: %s", got);
    /* keys one edit apart, words at most two: a typo or a consonant more */
    char e[64];
    new_case(net, e, "anagrafica.nome=Ibrahim", "anagrafica.cognome=Sow", NULL, NULL);
    find_ids(net, COMUNE, got, sizeof got, m, "Ibragim", "--fuzzy", NULL);
    CHECK(net, strcmp(got, e) == 0 && strcmp(m, "name (phonetic)") == 0, "Ibragim --fuzzy: %s (%s)",
        got, m);
    find_ids(net, COMUNE, got, sizeof got, NULL, "Ibraim sow", "--fuzzy", NULL);
    CHECK(net, strcmp(got, e) == 0, "Ibraim sow --fuzzy: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "Abraham", "--fuzzy", NULL);
    CHECK(net, strcmp(got, e) == 0, "Abraham --fuzzy (the same key as Ibrahim): %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "Rahim", "--fuzzy", NULL);
    CHECK(net, got[0] == 0, "Rahim --fuzzy is two key edits from Ibrahim: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "Martina", "--fuzzy", NULL);
    CHECK(net, got[0] == 0, "Martina --fuzzy: %s", got);

    /* codes: 16-character and provisional codice fiscale, permit number (spaces and dashes
     * do not matter) */
    find_ids(net, COMUNE, got, sizeof got, m, "nnzjsl90a01z131i", NULL);
    CHECK(net, strcmp(got, a) == 0 && strcmp(m, "codice_fiscale") == 0, "cf: %s (%s)", got, m);
    find_ids(net, COMUNE, got, sizeof got, NULL, "NNZ JSL 90A01 Z131I", NULL);
    CHECK(net, strcmp(got, a) == 0, "cf in groups: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "12345678903", NULL);
    CHECK(net, strcmp(got, b) == 0, "provisional cf: %s", got);
    find_ids(net, COMUNE, got, sizeof got, m, "IAB1234567", NULL);
    CHECK(net, strcmp(got, b) == 0 && strcmp(m, "permesso_numero") == 0, "permit: %s (%s)", got, m);

    /* birth dates, both ways of typing them */
    find_ids(net, COMUNE, got, sizeof got, m, "1985-12-10", NULL);
    CHECK(net, strcmp(got, c) == 0 && strcmp(m, "data_nascita") == 0, "date: %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "10/12/1985", NULL);
    CHECK(net, strcmp(got, c) == 0, "dd/mm/yyyy: %s", got);

    /* an edit moves the case in the index */
    th_out o = th_patto_write(net, COMUNE, "case", "set", c, "anagrafica.cognome=Adeyemi", NULL);
    CHECK(net, o.status == 0, "case set: %s %s", o.out, o.err);
    th_out_free(&o);
    find_ids(net, COMUNE, got, sizeof got, NULL, "okonkwo", NULL);
    CHECK(net, got[0] == 0, "the old surname still finds %s", got);
    find_ids(net, COMUNE, got, sizeof got, NULL, "adeyemi yusuf", NULL);
    CHECK(net, strcmp(got, c) == 0, "the new surname: %s", got);

    /* --limit, and a query with nothing to look for */
    o = th_patto(net, COMUNE, "case", "find", "mohamed", "--fuzzy", "--limit", "1", NULL);
    json_object *cases = NULL;
    CHECK(net,
        o.status == 0 && json_object_object_get_ex(o.json, "cases", &cases)
            && json_object_array_length(cases) == 1 && strcmp(jstr(o.json, "more"), "true") == 0,
        "--limit 1: %s", o.out);
    th_out_free(&o);
    o = th_patto(net, COMUNE, "case", "find", "--limit", "0", "x", NULL);
    CHECK(net, o.status == 1, "--limit 0: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto(net, COMUNE, "case", "find", " ,;", NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "nothing") == NULL && strstr(o.out, "look for"),
        "an empty query: %d %s", o.status, o.out);
    th_out_free(&o);
}

/* The schema's semantic checks refuse an operator's bad value with exit 2 and a sentence, and
 * write nothing. */
static void local_checks_refuse(void **state)
{
    th_net *net = *state;
    static const struct {
        const char *edit, *says;
    } bad[] = {
        { "anagrafica.codice_fiscale=RSSMRA85T10A562X", "its check character should be S, not X" },
        { "anagrafica.codice_fiscale=12345678901", "its last digit should be 3, not 1" },
        { "anagrafica.data_nascita=2199-01-01", "cannot be in the future" },
        { "contatti.email=amina.example.it", "is not an e-mail address" },
    };
    th_out o = th_patto(net, COMUNE, "status", NULL);
    json_object *counts = NULL, *cases = NULL;
    CHECK(net,
        o.json != NULL && json_object_object_get_ex(o.json, "counts", &counts)
            && json_object_object_get_ex(counts, "cases", &cases),
        "status: %s", o.out);
    int64_t before = json_object_get_int64(cases);
    th_out_free(&o);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = th_patto_write(net, COMUNE, "case", "new", "anagrafica.nome=Ilaria", bad[i].edit, NULL);
        CHECK(net, o.status == 2 && strstr(o.out, bad[i].says) != NULL,
            "%s: exit %d, %s %s (want 2 saying '%s')", bad[i].edit, o.status, o.out, o.err,
            bad[i].says);
        th_out_free(&o);
    }
    o = th_patto(net, COMUNE, "status", NULL);
    CHECK(net,
        o.json != NULL && json_object_object_get_ex(o.json, "counts", &counts)
            && json_object_object_get_ex(counts, "cases", &cases)
            && json_object_get_int64(cases) == before,
        "a refused case was written: %s", o.out);
    th_out_free(&o);
    char id[64];
    new_case(net, id, "anagrafica.codice_fiscale=RSSMRA85T10A562S",
        "anagrafica.data_nascita=1985-12-10", "contatti.email=ilaria.rossi@example.it", NULL);
    /* the field can still be removed */
    o = th_patto_write(net, COMUNE, "case", "unset", id, "anagrafica.codice_fiscale", NULL);
    CHECK(net, o.status == 0, "unset: %d %s", o.status, o.out);
    th_out_free(&o);
}

/* A store from before the find index: its find database empty and without the mark. */
typedef struct wipe_ctx {
    uint8_t keys[4096][96];
    size_t klen[4096], n;
} wipe_ctx;

static bool wipe_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ctx)
{
    (void)val;
    (void)vlen;
    wipe_ctx *w = ctx;
    if (w->n < 4096 && klen <= 96) {
        memcpy(w->keys[w->n], key, klen);
        w->klen[w->n++] = klen;
    }
    return true;
}

static node_err wipe_txn(node_txn *t, void *ctx)
{
    wipe_ctx *w = ctx;
    w->n = 0;
    node_err err = node_txn_scan(t, NODE_DB_FIND, NULL, 0, wipe_cb, w);
    for (size_t i = 0; err == NODE_OK && i < w->n; i++)
        err = node_txn_del(t, NODE_DB_FIND, w->keys[i], w->klen[i]);
    if (err == NODE_OK)
        err = node_txn_del(t, NODE_DB_META, "find", 4);
    return err;
}

static void index_built_for_an_old_store(void **state)
{
    th_net *net = *state;
    char id[64], got[512];
    new_case(net, id, "anagrafica.nome=Giacomo", "anagrafica.cognome=Lévêque", NULL, NULL);
    CHECK(net, th_stop(net, COMUNE, SIGTERM) == 0, "stop the comune");
    node_store *st = NULL;
    node_errmsg msg;
    CHECK(net,
        node_store_open(net->nodes[COMUNE].dir, 1 << 20, (uint64_t)1 << 30, &st, &msg) == NODE_OK,
        "open the store: %s", msg.text);
    wipe_ctx *w = calloc(1, sizeof(*w));
    CHECK(net, w != NULL && node_store_write(st, wipe_txn, w, &msg) == NODE_OK && w->n > 0,
        "empty the find database: %s", msg.text);
    free(w);
    node_store_close(st);
    CHECK(net, th_start(net, COMUNE) == 0, "restart the comune");
    find_ids(net, COMUNE, got, sizeof got, NULL, "leveque giacomo", NULL);
    CHECK(net, strcmp(got, id) == 0, "the index was not built at the start: %s", got);
}

/* The ids of `patto case list ARGS` at the comune, in order, joined by spaces. */
static void list_ids(th_net *net, char *out, size_t size, json_object **first, ...)
{
    const char *a[6] = { NULL };
    va_list ap;
    va_start(ap, first);
    for (size_t k = 0; k < 5; k++)
        if ((a[k] = va_arg(ap, const char *)) == NULL)
            break;
    va_end(ap);
    th_out o = th_patto(net, COMUNE, "case", "list", a[0], a[1], a[2], a[3], a[4], NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case list: %d %s %s", o.status, o.out, o.err);
    json_object *cases;
    out[0] = 0;
    if (json_object_object_get_ex(o.json, "cases", &cases))
        for (size_t k = 0; k < json_object_array_length(cases); k++) {
            json_object *c = json_object_array_get_idx(cases, k);
            size_t l = strlen(out);
            snprintf(out + l, size - l, "%s%s", l ? " " : "", jstr(c, "id"));
            if (k == 0 && first != NULL)
                *first = json_object_get(c);
        }
    th_out_free(&o);
}

static void list_columns_where_sort(void **state)
{
    th_net *net = *state;
    char z[64], a[64], m[64], got[512], want[512];
    new_case(net, z, "anagrafica.cognome=Zanetti", "anagrafica.nome=Bruno",
        "anagrafica.data_nascita=1970-05-01", "lingua.livello=A1");
    new_case(net, a, "anagrafica.cognome=Abate", "anagrafica.nome=Carla",
        "anagrafica.data_nascita=1999-01-02", "lingua.livello=B1");
    new_case(net, m, "anagrafica.cognome=Mancini", "anagrafica.nome=Àlvaro",
        "anagrafica.data_nascita=1985-03-03", "lingua.livello=A1");

    json_object *first = NULL;
    list_ids(net, got, sizeof got, &first, NULL);
    snprintf(want, sizeof want, "%s %s %s", m, a, z); /* newest change first */
    CHECK(net, strcmp(got, want) == 0, "case list: %s, want %s", got, want);
    CHECK(net,
        first != NULL && strcmp(jstr(first, "owner"), "comune-1") == 0
            && strcmp(jstr(first, "cognome"), "Mancini") == 0
            && strcmp(jstr(first, "nome"), "Àlvaro") == 0
            && strcmp(jstr(first, "data_nascita"), "1985-03-03") == 0
            && jstr(first, "last_change") != NULL && jstr(first, "scopes") != NULL,
        "case list row: %s", first ? json_object_to_json_string(first) : "none");
    json_object_put(first);
    list_ids(net, got, sizeof got, NULL, "--sort", "name", NULL);
    snprintf(want, sizeof want, "%s %s %s", a, m, z);
    CHECK(net, strcmp(got, want) == 0, "--sort name: %s, want %s", got, want);
    list_ids(net, got, sizeof got, NULL, "--sort", "birth", NULL);
    snprintf(want, sizeof want, "%s %s %s", z, m, a);
    CHECK(net, strcmp(got, want) == 0, "--sort birth: %s, want %s", got, want);
    list_ids(net, got, sizeof got, NULL, "--where", "lingua.livello=A1", "--sort", "name", NULL);
    snprintf(want, sizeof want, "%s %s", m, z);
    CHECK(net, strcmp(got, want) == 0, "--where lingua.livello=A1: %s, want %s", got, want);
    list_ids(net, got, sizeof got, NULL, "--where", "anagrafica.nome=ALVARO", NULL);
    CHECK(net, strcmp(got, m) == 0, "--where a name, case and accents aside: %s", got);
    list_ids(net, got, sizeof got, NULL, "--where", "lingua.livello=a1", NULL);
    CHECK(net, got[0] == 0, "an enum is compared exactly: %s", got);
    list_ids(net, got, sizeof got, NULL, "--sort", "name", "--limit", "1", NULL);
    CHECK(net, strcmp(got, a) == 0, "--limit 1: %s", got);

    th_out o = th_patto(net, COMUNE, "case", "list", "--where", "lingua.colore=blu", NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "not a field of the schema"),
        "--where an unknown field: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto(net, COMUNE, "case", "list", "--sort", "eta", NULL);
    CHECK(net, o.status == 1, "--sort eta: %d %s", o.status, o.out);
    th_out_free(&o);

    /* what a person reads: the columns, a row, the time in Europe/Rome */
    const char *argv[]
        = { "--dir", net->nodes[COMUNE].dir, "case", "list", "--sort", "name", NULL };
    o = th_patto_raw(argv);
    CHECK(net,
        o.status == 0 && strstr(o.out, "NAME") && strstr(o.out, "BORN") && strstr(o.out, "OWNER")
            && strstr(o.out, "LAST CHANGE") && strstr(o.out, "Abate Carla     1999-01-02  comune-1")
            && (strstr(o.out, " CET ") || strstr(o.out, " CEST ")),
        "case list for people:\n%s", o.out);
    th_out_free(&o);
}

/* The checks bind local writes only: a birth date that is today at its author, and tomorrow by
 * the clock of the node that receives it (test clocks, PATTOD_TEST_CLOCK_OFFSET_MS, put the two
 * on either side of midnight in Rome), is merged there, while that node refuses the same value
 * from its own operator. */
static int setup_split_days(void **state)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    static const char *const sign[] = { "--max-clock-ahead-ms", "86400000", NULL };
    if (th_net_make_opts(net, 2, orgs, sign) != 0) {
        net->keep = true;
        return -1;
    }
    return 0;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool cpia_shows_birth(th_net *net, void *ctx)
{
    const char *const *w = ctx; /* id, date */
    th_out o = th_patto(net, CPIA, "case", "show", w[0], NULL);
    json_object *scopes, *ana, *d;
    bool ok = o.status == 0 && o.json != NULL
        && json_object_object_get_ex(o.json, "scopes", &scopes)
        && json_object_object_get_ex(scopes, "anagrafica", &ana)
        && json_object_object_get_ex(ana, "data_nascita", &d)
        && strcmp(json_object_get_string(d), w[1]) == 0;
    th_out_free(&o);
    return ok;
}

static void peer_values_are_not_checked(void **state)
{
    th_net *net = *state;
    uint64_t now = wall_ms();
    proto_civil rome;
    proto_rome_civil(now, &rome);
    int64_t since = (((int64_t)rome.hour * 60 + rome.minute) * 60 + rome.second) * 1000 + rome.ms;
    int64_t to_midnight = 86400000 - since, margin = 5 * 60 * 1000;
    /* the shorter way across midnight: the CPIA behind (still yesterday), or the comune ahead
     * (already tomorrow) */
    int64_t cpia_off = since <= to_midnight ? -(since + margin) : 0;
    int64_t comune_off = since <= to_midnight ? 0 : to_midnight + margin;
    char off[32];
    snprintf(off, sizeof off, "%lld", (long long)comune_off);
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", off, 1);
    int rc = th_join(net, COMUNE);
    snprintf(off, sizeof off, "%lld", (long long)cpia_off);
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", off, 1);
    rc = rc == 0 ? th_join(net, CPIA) : rc;
    unsetenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    CHECK(net, rc == 0, "start the nodes with test clocks");
    CHECK(net, th_log_has(net, CPIA, "event=clock.test") || cpia_off == 0,
        "the CPIA's clock is not moved (is this a test build?)");
    proto_civil at_author;
    proto_rome_civil((uint64_t)((int64_t)now + comune_off), &at_author);
    char day[16], edit[64];
    snprintf(day, sizeof day, "%04d-%02d-%02d", at_author.year, at_author.month, at_author.day);
    snprintf(edit, sizeof edit, "anagrafica.data_nascita=%s", day);

    char id[64];
    new_case(net, id, "anagrafica.nome=Sara", edit, NULL, NULL);
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "anagrafica", "--purpose", "lingua", "--basis", "consent", NULL);
    CHECK(net, o.status == 0, "grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    const char *want[2] = { id, day };
    CHECK(net, th_wait(net, 15000, cpia_shows_birth, (void *)want),
        "the CPIA did not merge the birth date %s of its peer", day);
    o = th_patto_write(net, CPIA, "case", "new", edit, NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "cannot be in the future"),
        "at the CPIA %s should be in the future for its own operator: %d %s", day, o.status, o.out);
    th_out_free(&o);
}

/* ---------------------------------------------------------------------------------------- */
/* A grantee finds what it reads, and nothing once a revocation purged it                     */

typedef struct find_want {
    const char *query, *id;
    bool present;
} find_want;

static bool cpia_finds(th_net *net, void *ctx)
{
    find_want *w = ctx;
    char got[512];
    th_out o = th_patto(net, CPIA, "case", "find", w->query, NULL);
    bool ok = o.status == 0 && o.json != NULL;
    th_out_free(&o);
    if (!ok)
        return false;
    find_ids(net, CPIA, got, sizeof got, NULL, w->query, NULL);
    return (strstr(got, w->id) != NULL) == w->present;
}

typedef struct id_scan {
    const uint8_t *id;
    size_t hits, keys;
} id_scan;

static bool id_scan_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ctx)
{
    id_scan *s = ctx;
    s->keys++;
    const uint8_t *k = key;
    for (size_t i = 0; i + 16 <= klen; i++)
        if (memcmp(k + i, s->id, 16) == 0) {
            s->hits++;
            break;
        }
    (void)val;
    (void)vlen;
    return true;
}

static node_err id_scan_txn(node_txn *t, void *ctx)
{
    return node_txn_scan(t, NODE_DB_FIND, NULL, 0, id_scan_cb, ctx);
}

/* Records of the find database of node i's store that name the case (the node stopped). */
static size_t index_records(th_net *net, size_t i, const char *id_text, size_t *keys)
{
    proto_case_id c;
    assert_int_equal(proto_case_id_parse(id_text, strlen(id_text), &c), PROTO_OK);
    node_store *st = NULL;
    node_errmsg msg;
    CHECK(net, node_store_open(net->nodes[i].dir, 1 << 20, (uint64_t)1 << 30, &st, &msg) == NODE_OK,
        "open the store: %s", msg.text);
    id_scan s = { c.b, 0, 0 };
    CHECK(net, node_store_read(st, id_scan_txn, &s, &msg) == NODE_OK, "scan: %s", msg.text);
    node_store_close(st);
    *keys = s.keys;
    return s.hits;
}

static void purge_leaves_no_terms(void **state)
{
    th_net *net = *state;
    char id[64], other[64];
    new_case(net, id, "anagrafica.nome=Amina", "anagrafica.cognome=Traorè",
        "anagrafica.codice_fiscale=BNCLRA92D45H501A", "documenti.permesso_numero=ZX9876543");
    new_case(net, other, "anagrafica.nome=Amina", "anagrafica.cognome=Diallo", NULL, NULL);
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "anagrafica,documenti", "--purpose", "lingua", "--basis", "consent", NULL);
    CHECK(net, o.status == 0, "grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    o = th_patto_write(net, COMUNE, "consent", "grant", other, "--to", "cpia-1", "--scopes",
        "anagrafica", "--purpose", "lingua", "--basis", "consent", NULL);
    CHECK(net, o.status == 0, "grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);

    /* the grantee's index follows the deltas it merges */
    find_want w = { "traore amina", id, true };
    CHECK(net, th_wait(net, 10000, cpia_finds, &w), "the CPIA never found the case by name");
    find_want by_cf = { "BNCLRA92D45H501A", id, true };
    CHECK(net, cpia_finds(net, &by_cf), "the CPIA does not find the case by codice fiscale");
    find_want by_permit = { "ZX9876543", id, true };
    CHECK(net, th_wait(net, 10000, cpia_finds, &by_permit),
        "the CPIA does not find the case by permit");
    find_want kept = { "diallo", other, true };
    CHECK(net, th_wait(net, 10000, cpia_finds, &kept), "the CPIA never found the other case");

    o = th_patto_write(net, COMUNE, "consent", "revoke", id, "--from", "cpia-1", NULL);
    CHECK(net, o.status == 0, "revoke: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    w.present = false;
    CHECK(net, th_wait(net, 10000, cpia_finds, &w), "the CPIA still finds the revoked case");
    by_cf.present = false;
    by_permit.present = false;
    CHECK(net, cpia_finds(net, &by_cf) && cpia_finds(net, &by_permit),
        "the CPIA still finds the revoked case by a code");
    CHECK(net, cpia_finds(net, &kept), "the CPIA lost the other case");

    /* its store's find database holds nothing of the case, and still the other case */
    CHECK(net, th_stop(net, CPIA, SIGTERM) == 0, "stop the CPIA");
    size_t keys = 0, left = index_records(net, CPIA, id, &keys);
    CHECK(net, left == 0, "the CPIA's find index still holds %zu records of the case", left);
    size_t other_keys = 0, others = index_records(net, CPIA, other, &other_keys);
    CHECK(net, others > 0, "the CPIA's find index lost the other case (the scan proves nothing)");
    CHECK(net, th_start(net, CPIA) == 0, "restart the CPIA");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    th_programs(PATTO_BIN, PATTOD_BIN);
    if (proto_init() != PROTO_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fold_and_phonetic),
        cmocka_unit_test_setup_teardown(find_by_name_code_date_permit, setup, teardown),
        cmocka_unit_test_setup_teardown(local_checks_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(list_columns_where_sort, setup, teardown),
        cmocka_unit_test_setup_teardown(index_built_for_an_old_store, setup, teardown),
        cmocka_unit_test_setup_teardown(peer_values_are_not_checked, setup_split_days, teardown),
        cmocka_unit_test_setup_teardown(purge_leaves_no_terms, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
