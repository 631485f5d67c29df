/*
 * cli.import: patto import, patto case export and patto export --all against real pattod
 * processes (tests/node/harness.c). A Windows-1252 CSV as Excel writes it in Italy (semicolons,
 * quoted fields with ';', '""' and a line break, dd/mm/yyyy) with refused rows reported by line,
 * column and reason; --dry-run writes nothing; a re-run creates no case twice; an import killed
 * once the node holds its first batch leaves whole batches of whole rows, and a re-run finishes
 * it; export --all re-imported on a fresh node gives the same fields. Every node is stopped at
 * the end, also on failure. Synthetic data only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "harness.h"

#ifndef PATTO_BIN
#error "PATTO_BIN and PATTOD_BIN must name the programs under test"
#endif

static const char *const one[] = { "comune-1:comune" };

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v != NULL ? json_object_get_int64(v) : -1;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static void write_file(th_net *net, const char *path, const char *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        net->keep = true;
        fail_msg("cannot write %s", path);
    }
}

static void expect(th_net *net, const th_out *o, int status)
{
    if (o->status != status) {
        net->keep = true;
        fail_msg("want exit %d, got %d:\n%s%s", status, o->status, o->out, o->err);
    }
}

static int64_t case_count(th_net *net, size_t i)
{
    th_out o = th_patto(net, i, "case", "list", NULL);
    int64_t n = -1;
    json_object *cases = jget(o.json, "cases");
    if (o.status == 0 && cases != NULL)
        n = (int64_t)json_object_array_length(cases);
    th_out_free(&o);
    return n;
}

/* The case whose anagrafica.codice_fiscale is cf, shown (owned), or NULL. */
static json_object *case_by_cf(th_net *net, size_t i, const char *cf)
{
    th_out l = th_patto(net, i, "case", "list", NULL);
    json_object *cases = jget(l.json, "cases"), *found = NULL;
    for (size_t k = 0; cases != NULL && k < json_object_array_length(cases) && found == NULL; k++) {
        const char *id = jstr(json_object_array_get_idx(cases, k), "id");
        th_out s = th_patto(net, i, "case", "show", id, NULL);
        json_object *ana = jget(jget(s.json, "scopes"), "anagrafica");
        if (strcmp(jstr(ana, "codice_fiscale"), cf) == 0)
            found = json_object_get(s.json);
        th_out_free(&s);
    }
    th_out_free(&l);
    return found;
}

static const char map_json[]
    = "{\"columns\": [\n"
      " {\"column\": \"Codice fiscale\", \"field\": \"anagrafica.codice_fiscale\", \"key\": true,"
      " \"upper\": true},\n"
      " {\"column\": \"Nome\", \"field\": \"anagrafica.nome\"},\n"
      " {\"column\": \"Cognome\", \"field\": \"anagrafica.cognome\"},\n"
      " {\"column\": \"Data di nascita\", \"field\": \"anagrafica.data_nascita\","
      " \"date\": \"dd/mm/yyyy\"},\n"
      " {\"column\": \"Sesso\", \"field\": \"anagrafica.sesso\","
      " \"values\": {\"Femmina\": \"F\", \"Maschio\": \"M\"}},\n"
      " {\"column\": \"Telefoni\", \"field\": \"contatti.telefono\", \"split\": \",\"},\n"
      " {\"column\": \"Domicilio\", \"field\": \"contatti.domicilio\"},\n"
      " {\"column\": \"Ore\", \"field\": \"lingua.ore_frequenza\"}\n"
      "]}\n";

/* Windows-1252: 0xF2 is ò, 0xE0 is à. Line 1 header; line 2 a whole row with a quoted ';' and a
 * quoted '""'; lines 3-4 one row whose quoted field (not imported) holds a line break; line 5 a day
 * that does not exist; line 6 a sex the schema does not have; line 7 a good row in lower case. */
static const char csv_1252[]
    = "Codice fiscale;Nome;Cognome;Data di nascita;Sesso;Telefoni;Domicilio;Ore;Note\r\n"
      "TSTAMN80A41Z999V;Amina;Diallo;01/02/1980;Femmina;\"333 111, 347 222\";\"via Roma 1; "
      "int. 2\";12;\"detta \"\"Mina\"\"\"\r\n"
      "TSTNCC90B02Z999M; Niccol\xF2 ;Bianchi;02/02/1990;Maschio;;presso Caritas;;\"in carico "
      "dal 2025\r\nvia Po 3\"\r\n"
      "TSTFTU75C43Z999R;Fatou;Sow;31/02/1975;F;;;;\r\n"
      "TSTOMR85D04Z999D;Omar;Haddad;04/04/1985;Q;;;;\r\n"
      "tstlca70e05z999v;Luca;Verd\xE0;05/05/1970;M;340 9;;3;\r\n";

static void test_csv(void **state)
{
    th_net *net = *state;
    assert_int_equal(th_net_up(net, 1, one), 0);
    char csv[400], map[400];
    snprintf(csv, sizeof csv, "%s/assistiti.csv", net->root);
    snprintf(map, sizeof map, "%s/map.json", net->root);
    write_file(net, csv, csv_1252, sizeof csv_1252 - 1);
    write_file(net, map, map_json, sizeof map_json - 1);

    /* Not UTF-8 without --encoding: refused, naming the line and the option. */
    th_out o = th_patto(net, 0, "import", csv, "--map", map, NULL);
    expect(net, &o, 2);
    assert_non_null(strstr(o.out, "line 3 is not UTF-8"));
    assert_non_null(strstr(o.out, "--encoding windows-1252"));
    th_out_free(&o);

    /* --dry-run: every row checked, the refused reported, nothing written. */
    o = th_patto(
        net, 0, "import", csv, "--map", map, "--encoding", "windows-1252", "--dry-run", NULL);
    expect(net, &o, 2);
    assert_int_equal(jint(o.json, "rows"), 5);
    assert_int_equal(jint(o.json, "valid"), 3);
    assert_int_equal(jint(o.json, "refused"), 2);
    assert_int_equal(jint(o.json, "created"), 0);
    json_object *rr = jget(o.json, "refused_rows");
    assert_int_equal(json_object_array_length(rr), 2);
    json_object *r0 = json_object_array_get_idx(rr, 0), *r1 = json_object_array_get_idx(rr, 1);
    assert_int_equal(jint(r0, "line"), 5);
    assert_string_equal(jstr(r0, "column"), "Data di nascita");
    assert_non_null(strstr(jstr(r0, "reason"), "31/02/1975"));
    assert_int_equal(jint(r1, "line"), 6);
    assert_string_equal(jstr(r1, "column"), "Sesso");
    assert_non_null(strstr(jstr(r1, "reason"), "must be one of"));
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), 0);

    /* The import: the valid rows written, the refused reported again, exit 2. */
    o = th_patto(net, 0, "import", csv, "--map", map, "--encoding", "windows-1252", NULL);
    expect(net, &o, 2);
    assert_int_equal(jint(o.json, "created"), 3);
    assert_int_equal(jint(o.json, "exists"), 0);
    assert_int_equal(jint(o.json, "refused"), 2);
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), 3);

    json_object *c = case_by_cf(net, 0, "TSTAMN80A41Z999V");
    assert_non_null(c);
    json_object *ana = jget(jget(c, "scopes"), "anagrafica");
    json_object *con = jget(jget(c, "scopes"), "contatti");
    assert_string_equal(jstr(ana, "nome"), "Amina");
    assert_string_equal(jstr(ana, "data_nascita"), "1980-02-01");
    assert_string_equal(jstr(ana, "sesso"), "F");
    assert_string_equal(jstr(con, "domicilio"), "via Roma 1; int. 2");
    json_object *tel = jget(con, "telefono");
    assert_int_equal(json_object_array_length(tel), 2);
    assert_int_equal(jint(jget(jget(c, "scopes"), "lingua"), "ore_frequenza"), 12);
    json_object_put(c);
    c = case_by_cf(net, 0, "TSTNCC90B02Z999M");
    assert_non_null(c);
    ana = jget(jget(c, "scopes"), "anagrafica");
    assert_string_equal(jstr(ana, "nome"), "Niccol\xC3\xB2"); /* trimmed, UTF-8 */
    assert_string_equal(jstr(ana, "sesso"), "M");
    assert_string_equal(jstr(jget(jget(c, "scopes"), "contatti"), "domicilio"), "presso Caritas");
    json_object_put(c);
    c = case_by_cf(net, 0, "TSTLCA70E05Z999V"); /* upper-cased key column */
    assert_non_null(c);
    assert_string_equal(jstr(jget(jget(c, "scopes"), "anagrafica"), "cognome"), "Verd\xC3\xA0");
    json_object_put(c);

    /* Again: nothing created twice. */
    o = th_patto(net, 0, "import", csv, "--map", map, "--encoding", "windows-1252", NULL);
    expect(net, &o, 2);
    assert_int_equal(jint(o.json, "created"), 0);
    assert_int_equal(jint(o.json, "exists"), 3);
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), 3);

    /* The same rows as UTF-8 with a BOM and commas, without the refused ones: all exist. */
    static const char utf8[] = "\xEF\xBB\xBF"
                               "Codice fiscale,Nome,Cognome,Data di nascita,Sesso,Telefoni,"
                               "Domicilio,Ore\n"
                               "TSTAMN80A41Z999V,Amina,Diallo,01/02/1980,F,,,\n";
    char csv2[400];
    snprintf(csv2, sizeof csv2, "%s/utf8.csv", net->root);
    write_file(net, csv2, utf8, sizeof utf8 - 1);
    o = th_patto(net, 0, "import", csv2, "--map", map, NULL);
    expect(net, &o, 0);
    assert_int_equal(jint(o.json, "exists"), 1);
    th_out_free(&o);

    /* A map naming a column the header lacks, or a field the schema lacks: exit 2, nothing. */
    static const char bad_map[] = "{\"columns\": [{\"column\": \"Nome\", \"field\": "
                                  "\"anagrafica.nomignolo\"}]}";
    write_file(net, map, bad_map, sizeof bad_map - 1);
    o = th_patto(net, 0, "import", csv2, "--map", map, NULL);
    expect(net, &o, 2);
    assert_non_null(strstr(o.out, "anagrafica.nomignolo"));
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), 3);
}

/* The synthetic codice fiscale of row i: six letters from i, then a valid rest and check. */
static const char *big_cf(size_t i)
{
    static char cf[17];
    size_t k = i;
    for (int p = 5; p >= 0; p--, k /= 26)
        cf[p] = (char)('A' + k % 26);
    snprintf(cf + 6, sizeof cf - 6, "80A01Z999");
    th_cf_check(cf);
    return cf;
}

/* Rows whose fields must all be there: 4 over 3 scopes. */
static void big_csv(th_net *net, const char *path, size_t rows)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "CF;Nome;Cognome;Email;Livello\n");
    for (size_t i = 0; i < rows; i++)
        fprintf(f, "%s;Nome%zu;Cognome%zu;p%zu@example.invalid;A2\n", big_cf(i), i, i, i);
    if (fclose(f) != 0) {
        net->keep = true;
        fail_msg("cannot write %s", path);
    }
}

static const char big_map[]
    = "{\"columns\": [{\"column\": \"CF\", \"field\": \"anagrafica.codice_fiscale\", \"key\": "
      "true}, {\"column\": \"Nome\", \"field\": \"anagrafica.nome\"}, {\"column\": \"Cognome\", "
      "\"field\": \"anagrafica.cognome\"}, {\"column\": \"Email\", \"field\": \"contatti.email\"},"
      " {\"column\": \"Livello\", \"field\": \"lingua.livello\"}]}";

static bool has_cases(th_net *net, void *ctx)
{
    (void)ctx;
    th_out o = th_patto(net, 0, "status", NULL);
    int64_t n = jint(jget(o.json, "counts"), "cases");
    th_out_free(&o);
    return n > 0;
}

/* Every case the node holds has its five fields over three scopes; their number. */
static size_t whole_cases(th_net *net, const char *out_path)
{
    const char *argv[] = { PATTO_BIN, "--dir", net->nodes[0].dir, "export", "--all", NULL };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(127);
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0)
            dup2(nul, 2);
        execl(argv[0], argv[0], argv[1], argv[2], argv[3], argv[4], (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        const char *cf = jstr(o, "anagrafica.codice_fiscale"), *nome = jstr(o, "anagrafica.nome");
        size_t row = strncmp(nome, "Nome", 4) == 0 ? (size_t)strtoull(nome + 4, NULL, 10) : 0;
        if (strcmp(cf, big_cf(row)) != 0 || strncmp(nome, "Nome", 4) != 0
            || jget(o, "anagrafica.cognome") == NULL || jget(o, "contatti.email") == NULL
            || strcmp(jstr(o, "lingua.livello"), "A2") != 0) {
            net->keep = true;
            fail_msg("a case is not whole: %s", line);
        }
        json_object_put(o);
        n++;
    }
    fclose(f);
    return n;
}

static void test_interrupted(void **state)
{
    th_net *net = *state;
    assert_int_equal(th_net_up(net, 1, one), 0);
    enum { ROWS = 4000, BATCH = 25 };
    char csv[400], map[400], out[400];
    snprintf(csv, sizeof csv, "%s/big.csv", net->root);
    snprintf(map, sizeof map, "%s/map.json", net->root);
    snprintf(out, sizeof out, "%s/export.ndjson", net->root);
    big_csv(net, csv, ROWS);
    write_file(net, map, big_map, sizeof big_map - 1);

    /* Start the import, wait until the node holds its first batch, then kill it. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        execl(PATTO_BIN, PATTO_BIN, "--dir", net->nodes[0].dir, "import", csv, "--map", map,
            "--batch", "25", (char *)NULL);
        _exit(127);
    }
    bool seen = th_wait(net, 30000, has_cases, NULL);
    kill(pid, SIGKILL);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(seen);
    assert_true(WIFSIGNALED(st)); /* killed mid-way, not finished */

    /* What is there is whole batches of whole rows. */
    int64_t held = case_count(net, 0);
    assert_true(held > 0 && held < ROWS);
    assert_int_equal(held % BATCH, 0);
    assert_int_equal((int64_t)whole_cases(net, out), held);

    /* Again: the rest, and no case twice. */
    th_out o = th_patto(net, 0, "import", csv, "--map", map, NULL);
    expect(net, &o, 0);
    assert_int_equal(jint(o.json, "created"), ROWS - held);
    assert_int_equal(jint(o.json, "exists"), held);
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), ROWS);
    assert_int_equal(whole_cases(net, out), ROWS);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An export in a form that does not depend on case ids, owners, order, or the time and author
 * of timeline events (appended anew by an import): per case its "scope.field=VALUE" sorted and
 * joined by tabs, a timeline as its events alone; the cases sorted, one a line. */
static char *normal_form(const char *ndjson)
{
    char *copy = strdup(ndjson);
    char **lines = calloc(strlen(ndjson) + 1, sizeof(char *));
    assert_non_null(copy);
    assert_non_null(lines);
    size_t nl = 0, total = 1;
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(l);
        assert_non_null(o);
        char *kv[64];
        size_t n = 0, len = 1;
        json_object_object_foreach(o, k, v)
        {
            if (k[0] == '_')
                continue;
            json_object *val = v;
            json_object *events = NULL;
            if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0
                && jget(json_object_array_get_idx(v, 0), "event") != NULL) {
                events = json_object_new_array();
                for (size_t i = 0; i < json_object_array_length(v); i++)
                    json_object_array_add(
                        events, json_object_get(jget(json_object_array_get_idx(v, i), "event")));
                val = events;
            }
            const char *t = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
            assert_true(n < 64);
            kv[n] = malloc(strlen(k) + strlen(t) + 2);
            assert_non_null(kv[n]);
            sprintf(kv[n], "%s=%s", k, t);
            len += strlen(kv[n]) + 1;
            n++;
            json_object_put(events);
        }
        json_object_put(o);
        qsort(kv, n, sizeof(kv[0]), str_cmp);
        char *line = malloc(len);
        assert_non_null(line);
        line[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            strcat(line, kv[i]);
            strcat(line, "\t");
            free(kv[i]);
        }
        lines[nl++] = line;
        total += len + 1;
    }
    free(copy);
    qsort(lines, nl, sizeof(lines[0]), str_cmp);
    char *out = malloc(total);
    assert_non_null(out);
    out[0] = '\0';
    for (size_t i = 0; i < nl; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
        free(lines[i]);
    }
    free(lines);
    return out;
}

static void test_round_trip(void **state)
{
    th_net *net = *state;
    th_net *fresh = calloc(1, sizeof *fresh);
    assert_non_null(fresh);
    assert_int_equal(th_net_up(net, 1, one), 0);
    char csv[400], map[400], nd[400];
    snprintf(csv, sizeof csv, "%s/assistiti.csv", net->root);
    snprintf(map, sizeof map, "%s/map.json", net->root);
    snprintf(nd, sizeof nd, "%s/all.ndjson", net->root);
    write_file(net, csv, csv_1252, sizeof csv_1252 - 1);
    write_file(net, map, map_json, sizeof map_json - 1);
    th_out o = th_patto(net, 0, "import", csv, "--map", map, "--encoding", "windows-1252", NULL);
    expect(net, &o, 2);
    th_out_free(&o);
    /* a timeline event too */
    o = th_patto(net, 0, "case", "list", NULL);
    const char *first = jstr(json_object_array_get_idx(jget(o.json, "cases"), 0), "id");
    char id[64];
    snprintf(id, sizeof id, "%s", first);
    th_out_free(&o);
    o = th_patto_write(net, 0, "case", "set", id,
        "lavoro.tirocini+={\"ente\":\"Coop Alfa\",\"inizio\":\"2026-10-01\"}", NULL);
    expect(net, &o, 0);
    th_out_free(&o);

    /* The beneficiary's copy: labels, owner, access log. */
    o = th_patto(net, 0, "case", "export", id, NULL);
    expect(net, &o, 0);
    assert_string_equal(jstr(o.json, "owner"), "comune-1");
    assert_string_equal(jstr(o.json, "case"), id);
    json_object *scopes = jget(o.json, "scopes");
    assert_true(json_object_array_length(scopes) >= 2);
    json_object *s0 = json_object_array_get_idx(scopes, 0);
    assert_true(strlen(jstr(s0, "label")) > 0);
    assert_true(strlen(jstr(json_object_array_get_idx(jget(s0, "fields"), 0), "label")) > 0);
    assert_non_null(jget(o.json, "access"));
    th_out_free(&o);
    const char *argv_csv[]
        = { "--dir", net->nodes[0].dir, "case", "export", id, "--format", "csv", NULL };
    o = th_patto_raw(argv_csv);
    expect(net, &o, 0);
    assert_memory_equal(o.out, "\xEF\xBB\xBF\"caso\";\"titolare\"", 20);
    assert_non_null(strstr(o.out, "\"comune-1\";\"anagrafica\""));
    th_out_free(&o);

    /* export --all, re-imported on a fresh network, exported again: the same fields. */
    const char *argv_all[] = { "--dir", net->nodes[0].dir, "export", "--all", NULL };
    o = th_patto_raw(argv_all);
    expect(net, &o, 0);
    write_file(net, nd, o.out, strlen(o.out));
    char *before = normal_form(o.out);
    th_out_free(&o);
    assert_int_equal(th_net_up(fresh, 1, one), 0);
    o = th_patto(fresh, 0, "import", nd, NULL);
    expect(fresh, &o, 0);
    assert_int_equal(jint(o.json, "created"), 3);
    th_out_free(&o);
    o = th_patto(fresh, 0, "import", nd, "--format", "ndjson", NULL); /* twice: none twice */
    expect(fresh, &o, 0);
    assert_int_equal(jint(o.json, "exists"), 3);
    th_out_free(&o);
    const char *argv_all2[] = { "--dir", fresh->nodes[0].dir, "export", "--all", NULL };
    o = th_patto_raw(argv_all2);
    expect(fresh, &o, 0);
    /* Timeline events are appended anew (new time, new author): compared by content. */
    char *after = normal_form(o.out);
    th_out_free(&o);
    assert_true(strlen(before) > 100);
    assert_non_null(strstr(before, "lavoro.tirocini=[{"));
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(th_net_down(fresh), 0);
    free(fresh);
}

static int setup(void **state)
{
    th_net *net = calloc(1, sizeof *net);
    *state = net;
    return net != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    th_net *net = *state;
    int rc = net != NULL && net->n > 0 ? th_net_down(net) : 0;
    free(net);
    return rc;
}

/* Grants from the map: a "CPIA" column whose cell says yes (x, sì, si, 1...) grants lingua to
 * the CPIA on consent with the row's evidence; a grant to every row gives anagrafica read to
 * the Prefettura on public task with its provision; a re-run gives none again (in force); a
 * grant the node refuses (the provision missing) is a refused row and its case stays. */
static const char grants_csv[] = "CF;Cognome;Livello;CPIA\n"
                                 "TSTAMN80A41Z999V;Diallo;A1;x\n"
                                 "TSTNCC90B02Z999M;Bianchi;A2;\n"
                                 "TSTFTU75C43Z999R;Sow;B1;S\xc3\xac\n";

static const char grants_map[]
    = "{\"columns\": [{\"column\": \"CF\", \"field\": \"anagrafica.codice_fiscale\", \"key\": "
      "true}, {\"column\": \"Cognome\", \"field\": \"anagrafica.cognome\"}, {\"column\": "
      "\"Livello\", \"field\": \"lingua.livello\"}],"
      " \"grants\": [{\"column\": \"CPIA\", \"to\": \"cpia-1\", \"scopes\": \"lingua\", "
      "\"purpose\": \"lingua\", \"basis\": \"consent\", \"access\": \"write\", \"evidence\": "
      "\"modulo di consenso\"}, {\"to\": \"prefettura-1\", \"scopes\": \"anagrafica\", "
      "\"purpose\": \"lingua\", \"basis\": \"public-task\", \"provision\": \"D.Lgs. 286/1998 "
      "art. 4-bis\"}]}";

static const char grants_bad_map[]
    = "{\"columns\": [{\"column\": \"CF\", \"field\": \"anagrafica.codice_fiscale\", \"key\": "
      "true}, {\"column\": \"Cognome\", \"field\": \"anagrafica.cognome\"}],"
      " \"grants\": [{\"to\": \"prefettura-1\", \"scopes\": \"lingua\", \"purpose\": "
      "\"lingua\", \"basis\": \"public-task\"}]}";

/* How many grant rows of case (found by cf at node 0) go to org on scope. */
static size_t grants_to(th_net *net, const char *cf, const char *org, const char *scope)
{
    json_object *c = case_by_cf(net, 0, cf);
    size_t n = 0;
    if (c == NULL)
        return 999;
    th_out o = th_patto(net, 0, "consent", "list", jstr(c, "id"), NULL);
    json_object *g = jget(o.json, "grants");
    for (size_t i = 0; g != NULL && i < json_object_array_length(g); i++) {
        json_object *r = json_object_array_get_idx(g, i);
        n += strcmp(jstr(r, "kind"), "grant") == 0 && strcmp(jstr(r, "to"), org) == 0
            && strcmp(jstr(r, "scope"), scope) == 0;
    }
    th_out_free(&o);
    json_object_put(c);
    return n;
}

static void test_grants(void **state)
{
    th_net *net = *state;
    static const char *const three[]
        = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };
    assert_int_equal(th_net_up(net, 3, three), 0);
    char csv[400], map[400], bad[400];
    snprintf(csv, sizeof csv, "%s/grants.csv", net->root);
    snprintf(map, sizeof map, "%s/grants.json", net->root);
    snprintf(bad, sizeof bad, "%s/bad.json", net->root);
    write_file(net, csv, grants_csv, sizeof grants_csv - 1);
    write_file(net, map, grants_map, sizeof grants_map - 1);
    write_file(net, bad, grants_bad_map, sizeof grants_bad_map - 1);

    th_out o = th_patto_write(net, 0, "import", csv, "--map", map, NULL);
    expect(net, &o, 0);
    assert_int_equal(jint(o.json, "created"), 3);
    assert_int_equal(jint(o.json, "granted"), 5); /* 2 to the CPIA, 3 to the Prefettura */
    th_out_free(&o);
    assert_int_equal(grants_to(net, "TSTAMN80A41Z999V", "cpia-1", "lingua"), 1);
    assert_int_equal(grants_to(net, "TSTNCC90B02Z999M", "cpia-1", "lingua"), 0);
    assert_int_equal(grants_to(net, "TSTFTU75C43Z999R", "cpia-1", "lingua"), 1);
    assert_int_equal(grants_to(net, "TSTNCC90B02Z999M", "prefettura-1", "anagrafica"), 1);

    /* Again: every case exists, every grant stands. */
    o = th_patto_write(net, 0, "import", csv, "--map", map, NULL);
    expect(net, &o, 0);
    assert_int_equal(jint(o.json, "exists"), 3);
    assert_int_equal(jint(o.json, "granted"), 0);
    assert_int_equal(jint(o.json, "grants_in_force"), 5);
    th_out_free(&o);
    assert_int_equal(grants_to(net, "TSTAMN80A41Z999V", "cpia-1", "lingua"), 1);

    /* A grant the node refuses: public task without a provision. */
    o = th_patto_write(net, 0, "import", csv, "--map", bad, NULL);
    expect(net, &o, 2);
    assert_int_equal(jint(o.json, "granted"), 0);
    json_object *rr = jget(o.json, "refused_rows");
    assert_true(rr != NULL && json_object_array_length(rr) == 3);
    assert_non_null(strstr(jstr(json_object_array_get_idx(rr, 0), "reason"), "grant to"));
    th_out_free(&o);
    assert_int_equal(case_count(net, 0), 3);
}

int main(void)
{
    th_programs(PATTO_BIN, PATTOD_BIN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
    };
    return cmocka_run_group_tests_name("import", tests, NULL, NULL);
}
