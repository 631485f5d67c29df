/*
 * cli.compact: `patto store compact` against real pattod processes on 127.0.0.1
 * (tests/node/harness.c). The CPIA holds cases of the comune's under a consent grant; the comune
 * revokes it and the CPIA purges them, but their text is still in its data.mdb (checked, so the
 * test can fail). `patto store compact` answers with its figures (--json and a line for people),
 * the text is in no file of the CPIA's directory after it, every case it still reads reads back
 * the same, and the node goes on: it writes, it syncs, it stops cleanly and starts again. A copy
 * left by an interrupted compaction is removed at the next start and logged. Every node is
 * stopped at the end, also on failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "harness.h"

#ifndef PATTO_BIN
#error "PATTO_BIN and PATTOD_BIN must name the programs under test"
#endif

enum { COMUNE = 0, CPIA = 1 };
#define MARKER "Compattami-Marker-4e1d"
#define PURGED 5 /* cases whose lingua scope the CPIA purges */

/* Fail the test with the nodes' logs kept. */
#define CHECK(net, cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (net)->keep = true;                                                                    \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

static json_object *jget(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_object *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, "/", &save); k && cur;
         k = strtok_r(NULL, "/", &save))
        if (!json_object_object_get_ex(cur, k, &cur))
            return NULL;
    return cur;
}

static const char *jstr(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    return v != NULL ? json_object_get_string(v) : NULL;
}

static int setup(void **state)
{
    static th_net net;
    static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia" };
    th_programs(PATTO_BIN, PATTOD_BIN);
    if (th_net_up(&net, 2, orgs) != 0)
        return -1;
    *state = &net;
    return 0;
}

static int teardown(void **state)
{
    th_net *net = *state;
    return net != NULL ? th_net_down(net) : 0;
}

/* A case opened at node with two edits; its id into id. */
static void new_case(th_net *net, size_t node, char id[64], const char *e1, const char *e2)
{
    th_out o = th_patto_write(net, node, "case", "new", e1, e2, NULL);
    CHECK(net, o.status == 0 && jstr(o.json, "id") != NULL, "case new: %d %s %s", o.status, o.out,
        o.err);
    snprintf(id, 64, "%s", jstr(o.json, "id"));
    th_out_free(&o);
}

static void grant(th_net *net, const char *id, const char *scopes, const char *basis)
{
    th_out o
        = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", "cpia-1", "--scopes", scopes,
            "--purpose", "lingua", "--basis", basis, "--provision", "L. 328/2000 art. 22", NULL);
    CHECK(net, o.status == 0, "consent grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
}

typedef struct show_want {
    size_t node;
    const char *id, *path, *value;
} show_want;

static bool shows(th_net *net, void *ctx)
{
    show_want *w = ctx;
    th_out o = th_patto(net, w->node, "case", "show", w->id, NULL);
    const char *v = o.status == 0 ? jstr(o.json, w->path) : NULL;
    bool ok = v != NULL && strcmp(v, w->value) == 0;
    th_out_free(&o);
    return ok;
}

/* The CPIA lists PURGED scopes closed and purged. */
static bool all_purged(th_net *net, void *ctx)
{
    (void)ctx;
    th_out o = th_patto(net, CPIA, "status", NULL);
    json_object *closed = jget(o.json, "closed");
    int n = 0;
    for (size_t i = 0; closed != NULL && i < json_object_array_length(closed); i++)
        n += json_object_get_boolean(jget(json_object_array_get_idx(closed, i), "purged"));
    th_out_free(&o);
    return n == PURGED;
}

/* How many times the marker is in the files of dir. */
static size_t marker_in_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    size_t n = 0, ml = strlen(MARKER);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        static uint8_t buf[1 << 16];
        size_t keep = 0, got;
        /* The last ml - 1 bytes stay at the front of the buffer: a marker across two reads. */
        while ((got = fread(buf + keep, 1, sizeof(buf) - keep, f)) > 0) {
            size_t len = keep + got;
            for (size_t i = 0; i + ml <= len; i++)
                n += buf[i] == (uint8_t)MARKER[0] && memcmp(buf + i, MARKER, ml) == 0;
            keep = len < ml - 1 ? len : ml - 1;
            memmove(buf, buf + len - keep, keep);
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* What a reader sees of the CPIA: its case list, the cases it reads, its counts. */
typedef struct view {
    char *list, *shows[2], *counts;
} view;

static char *dup_out(th_net *net, th_out *o, const char *what)
{
    CHECK(net, o->status == 0 && o->json != NULL, "%s: %d %s %s", what, o->status, o->out, o->err);
    char *s = strdup(o->out);
    th_out_free(o);
    return s;
}

static void view_take(th_net *net, view *v, const char *const ids[2])
{
    th_out o = th_patto(net, CPIA, "case", "list", NULL);
    v->list = dup_out(net, &o, "case list");
    for (int i = 0; i < 2; i++) {
        o = th_patto(net, CPIA, "case", "show", ids[i], NULL);
        v->shows[i] = dup_out(net, &o, "case show");
    }
    o = th_patto(net, CPIA, "status", NULL);
    json_object *c = jget(o.json, "counts");
    CHECK(net, c != NULL, "status: %s", o.out);
    v->counts = strdup(json_object_to_json_string(c));
    th_out_free(&o);
}

static void view_free(view *v)
{
    free(v->list);
    free(v->shows[0]);
    free(v->shows[1]);
    free(v->counts);
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    return v != NULL && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
}

static void purged_text_leaves_the_store(void **state)
{
    th_net *net = *state;
    /* PURGED cases with the marker in lingua, read by the CPIA on consent; one more it reads
     * on a public task (kept), and one of its own. */
    char gone[PURGED][64], kept[64], own[64], edit[128];
    for (int i = 0; i < PURGED; i++) {
        snprintf(edit, sizeof(edit), "lingua.cpia=%s-%d", MARKER, i);
        new_case(net, COMUNE, gone[i], "lingua.livello=A1", edit);
        grant(net, gone[i], "lingua", "consent");
    }
    new_case(net, COMUNE, kept, "anagrafica.nome=Kwame", "lingua.livello=B1");
    grant(net, kept, "anagrafica,lingua", "public-task");
    new_case(net, CPIA, own, "anagrafica.nome=Fatou", "lingua.livello=A2");
    for (int i = 0; i < PURGED; i++) {
        snprintf(edit, sizeof(edit), "%s-%d", MARKER, i);
        show_want w = { CPIA, gone[i], "scopes/lingua/cpia", edit };
        CHECK(net, th_wait(net, 15000, shows, &w), "the CPIA never read case %d", i);
    }
    show_want wk = { CPIA, kept, "scopes/lingua/livello", "B1" };
    CHECK(net, th_wait(net, 15000, shows, &wk), "the CPIA never read the kept case");

    /* Revoked: the CPIA purges the scopes, but their text stays in data.mdb. */
    for (int i = 0; i < PURGED; i++) {
        th_out o = th_patto_write(net, COMUNE, "consent", "revoke", gone[i], "--from", "cpia-1",
            "--scopes", "lingua", NULL);
        CHECK(net, o.status == 0, "revoke: %d %s %s", o.status, o.out, o.err);
        th_out_free(&o);
    }
    CHECK(net, th_wait(net, 15000, all_purged, NULL), "the CPIA did not purge the scopes");
    const char *dir = net->nodes[CPIA].dir;
    CHECK(net, marker_in_dir(dir) > 0,
        "the purged text is not in the CPIA's data.mdb before the compaction: the test proves "
        "nothing");

    const char *ids[2] = { kept, own };
    view before, after;
    view_take(net, &before, ids);

    /* The compaction, with its figures. */
    th_out o = th_patto(net, CPIA, "store", "compact", NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "store compact: %d %s %s", o.status, o.out, o.err);
    int64_t pause = jint(o.json, "pause_ms"), b0 = jint(o.json, "bytes_before"),
            b1 = jint(o.json, "bytes_after"), need = jint(o.json, "disk_needed_bytes");
    CHECK(net, pause >= 0 && b0 > 0 && b1 > 0 && b1 < b0 && need == b1, "store compact: %s", o.out);
    th_out_free(&o);
    CHECK(net, th_log_has(net, CPIA, "event=store.compact trigger=control"),
        "the CPIA did not log the compaction");
    char figures[200];
    snprintf(figures, sizeof(figures),
        "pause_ms=%lld bytes_before=%lld bytes_after=%lld disk_needed_bytes=%lld", (long long)pause,
        (long long)b0, (long long)b1, (long long)need);
    CHECK(net, th_log_has(net, CPIA, figures), "the log line lacks the figures %s", figures);
    CHECK(net, marker_in_dir(dir) == 0, "the purged text is still in the CPIA's directory");

    /* Everything it reads reads the same. */
    view_take(net, &after, ids);
    CHECK(net, strcmp(before.list, after.list) == 0, "case list changed:\n%s\n%s", before.list,
        after.list);
    for (int i = 0; i < 2; i++)
        CHECK(net, strcmp(before.shows[i], after.shows[i]) == 0, "case show changed:\n%s\n%s",
            before.shows[i], after.shows[i]);
    CHECK(net, strcmp(before.counts, after.counts) == 0, "counts changed: %s %s", before.counts,
        after.counts);
    view_free(&before);
    view_free(&after);

    /* For people: one line. */
    const char *argv[] = { "--dir", dir, "store", "compact", NULL };
    o = th_patto_raw(argv);
    CHECK(net,
        o.status == 0 && strncmp(o.out, "store compacted: data.mdb ", 26) == 0
            && strstr(o.out, " -> ") != NULL && strstr(o.out, "; the node paused ") != NULL
            && strstr(o.out, " of disk\n") != NULL
            && strchr(o.out, '\n') == o.out + strlen(o.out) - 1,
        "store compact for people: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    const char *extra[] = { "--dir", dir, "store", "compact", "now", NULL };
    o = th_patto_raw(extra);
    CHECK(net, o.status == 1, "store compact with an argument: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);

    /* It goes on: it writes, and it takes the comune's writes. */
    char more[64];
    new_case(net, CPIA, more, "anagrafica.nome=Samir", "lingua.livello=B2");
    o = th_patto_write(net, CPIA, "case", "set", own, "lingua.livello=B1", NULL);
    CHECK(net, o.status == 0, "case set at the CPIA: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    o = th_patto_write(net, COMUNE, "case", "set", kept, "lingua.livello=C1", NULL);
    CHECK(net, o.status == 0, "case set at the comune: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    show_want wc = { CPIA, kept, "scopes/lingua/livello", "C1" };
    CHECK(net, th_wait(net, 15000, shows, &wc), "the CPIA did not take the comune's write");
    show_want wo = { CPIA, own, "scopes/lingua/livello", "B1" };
    CHECK(net, shows(net, &wo), "the CPIA does not read its own write");

    /* A clean stop, a copy left as by a crash, a start: the leftover goes, the cases stay. */
    CHECK(net, th_stop(net, CPIA, SIGTERM) == 0, "the CPIA did not stop cleanly");
    char path[700];
    snprintf(path, sizeof(path), "%s/data.mdb.compact", dir);
    FILE *f = fopen(path, "w");
    CHECK(
        net, f != NULL && fputs("half a copy", f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    CHECK(net, th_start(net, CPIA) == 0, "the CPIA did not start again");
    CHECK(net, th_log_has(net, CPIA, "event=store.compact.leftover"),
        "the CPIA did not log the leftover copy");
    FILE *g = fopen(path, "r");
    CHECK(net, g == NULL, "the leftover copy is still there");
    CHECK(net, shows(net, &wc) && shows(net, &wo), "the CPIA lost cases across the restart");
    show_want wm = { CPIA, more, "scopes/anagrafica/nome", "Samir" };
    CHECK(net, shows(net, &wm), "the CPIA lost its new case across the restart");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(purged_text_leaves_the_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
