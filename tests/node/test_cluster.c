/*
 * node.cluster: three real pattod processes on 127.0.0.1 (a comune, a CPIA, a Prefettura),
 * driven with the patto CLI as operators would:
 * - a case opened at the comune with its lingua scope granted to the CPIA reaches the CPIA
 *   readable, and the Prefettura as headers only, whose bytes hold nothing of the case id;
 * - a partner with a read grant cannot write; with a write grant its edits reach the owner;
 * - a stopped node catches up after its restart;
 * - a node killed with SIGKILL in the middle of a stream of writes loses no acknowledged
 *   write, reuses no sequence number, and its peers accept its log after the restart.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <proto/proto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { COMUNE = 0, CPIA = 1, PREF = 2 };

static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };

static int setup(void **state)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    if (th_net_up(net, 3, orgs) != 0) {
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

/* Fail the test with the nodes' logs kept. */
#define CHECK(net, cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (net)->keep = true;                                                                    \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

static const char *jstr(json_object *o, const char *path)
{
    /* path: keys separated by '/' */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_object *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, "/", &save); k && cur;
         k = strtok_r(NULL, "/", &save))
        if (!json_object_object_get_ex(cur, k, &cur))
            return NULL;
    return cur ? json_object_get_string(cur) : NULL;
}

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

/* Open a case at the comune; returns its id in id. */
static void new_case(th_net *net, char id[64], const char *edit1, const char *edit2)
{
    th_out o = th_patto_write(net, COMUNE, "case", "new", edit1, edit2, NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case new: %d %s %s", o.status, o.out, o.err);
    snprintf(id, 64, "%s", jstr(o.json, "id"));
    th_out_free(&o);
}

static void grant_on(th_net *net, const char *id, const char *to, const char *scopes,
    const char *access, const char *basis)
{
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", to, "--scopes", scopes,
        "--purpose", "lingua", "--basis", basis, "--access", access, "--provision",
        "D.Lgs. 286/1998 art. 4-bis", NULL);
    CHECK(net, o.status == 0, "consent grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
}

static void grant(
    th_net *net, const char *id, const char *to, const char *scopes, const char *access)
{
    grant_on(net, id, to, scopes, access, "public-task");
}

typedef struct show_want {
    size_t node;
    const char *id;
    const char *path; /* e.g. "scopes/lingua/livello" */
    const char *value;
} show_want;

static bool shows(th_net *net, void *ctx)
{
    show_want *w = ctx;
    th_out o = th_patto(net, w->node, "case", "show", w->id, NULL);
    const char *v = o.status == 0 && o.json ? jstr(o.json, w->path) : NULL;
    bool ok = v != NULL && strcmp(v, w->value) == 0;
    th_out_free(&o);
    return ok;
}

static uint64_t headers_of(th_net *net, size_t node)
{
    th_out o = th_patto(net, node, "status", NULL);
    json_object *h = o.json ? jget(o.json, "counts/headers") : NULL;
    uint64_t n = h ? (uint64_t)json_object_get_int64(h) : 0;
    th_out_free(&o);
    return n;
}

/* A count of node's status (counts/NAME), -1 when missing. */
static int64_t count_of(th_net *net, size_t node, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "counts/%s", name);
    th_out o = th_patto(net, node, "status", NULL);
    json_object *c = o.json ? jget(o.json, path) : NULL;
    int64_t n = c ? json_object_get_int64(c) : -1;
    th_out_free(&o);
    return n;
}

typedef struct same_headers {
    size_t a, b;
} same_headers;

static bool has_all_headers(th_net *net, void *ctx)
{
    same_headers *s = ctx;
    uint64_t a = headers_of(net, s->a);
    return a > 0 && a == headers_of(net, s->b);
}

/* Whether a file contains a byte string. */
static bool file_has(const char *path, const uint8_t *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    size_t got = buf ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    bool found = false;
    for (size_t i = 0; i + n <= got && !found; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

static void consent_decides_who_reads(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "anagrafica.nome=Amina", "lingua.livello=A1");
    grant(net, id, "cpia-1", "lingua", "read");

    show_want w = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &w), "the CPIA never read lingua.livello=A1");
    th_out o = th_patto(net, CPIA, "case", "show", id, NULL);
    CHECK(net, o.json && jget(o.json, "scopes/anagrafica") == NULL,
        "the CPIA reads anagrafica without a grant: %s", o.out);
    th_out_free(&o);

    /* A second case, shared with nobody. */
    char other_id[64];
    new_case(net, other_id, "anagrafica.nome=Bilal", NULL);

    /* The Prefettura gets every header, and nothing it could read. */
    same_headers s = { PREF, COMUNE };
    CHECK(net, th_wait(net, 10000, has_all_headers, &s),
        "the Prefettura did not receive every header");

    /* status counts the cases each node lists (the comune opened both, the CPIA reads one, the
     * Prefettura none) and the bodies each holds (the comune all of its own). */
    int64_t headers = count_of(net, COMUNE, "headers");
    CHECK(net, count_of(net, COMUNE, "cases") == 2 && count_of(net, COMUNE, "bodies") == headers,
        "the comune's counts: %lld cases, %lld bodies of %lld headers",
        (long long)count_of(net, COMUNE, "cases"), (long long)count_of(net, COMUNE, "bodies"),
        (long long)headers);
    CHECK(net, count_of(net, CPIA, "cases") == 1 && count_of(net, CPIA, "bodies") > 0,
        "the CPIA's counts: %lld cases, %lld bodies", (long long)count_of(net, CPIA, "cases"),
        (long long)count_of(net, CPIA, "bodies"));
    CHECK(net, count_of(net, PREF, "cases") == 0 && count_of(net, PREF, "bodies") == 0,
        "the Prefettura's counts: %lld cases, %lld bodies", (long long)count_of(net, PREF, "cases"),
        (long long)count_of(net, PREF, "bodies"));
    o = th_patto(net, PREF, "case", "show", id, NULL);
    CHECK(net, o.status == 3, "prefettura case show: want exit 3, got %d %s", o.status, o.out);
    CHECK(net, strstr(o.out, "no readable scope of case") != NULL, "message: %s", o.out);
    th_out_free(&o);

    /* A case that does not exist gets the same answer. */
    proto_case_id other;
    proto_case_nonce nonce;
    assert_int_equal(proto_case_id_new("comune-1", 8, NULL, &other, &nonce), PROTO_OK);
    char other_text[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&other, other_text);
    o = th_patto(net, PREF, "case", "show", other_text, NULL);
    CHECK(net, o.status == 3 && strstr(o.out, "no readable scope of case") != NULL,
        "unknown case: %d %s", o.status, o.out);
    th_out_free(&o);

    /* Nothing of the case id is in the Prefettura's store (stop it so the file is final). */
    proto_case_id cid;
    assert_int_equal(proto_case_id_parse(id, strlen(id), &cid), PROTO_OK);
    assert_int_equal(th_stop(net, PREF, SIGTERM), 0);
    char db[700];
    snprintf(db, sizeof(db), "%s/data.mdb", net->nodes[PREF].dir);
    CHECK(net, !file_has(db, cid.b, 8), "the Prefettura's store holds the case id's bytes");
    CHECK(net, !file_has(db, (const uint8_t *)id + 3, 10),
        "the Prefettura's store holds the case id's text");
    /* The CPIA, which holds a key of the case, does index it by id (so the check above can
     * fail). */
    assert_int_equal(th_stop(net, CPIA, SIGTERM), 0);
    snprintf(db, sizeof(db), "%s/data.mdb", net->nodes[CPIA].dir);
    CHECK(net, file_has(db, cid.b, 8), "the CPIA's store lacks the case it may read");
}

static void write_needs_a_write_grant(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "lingua.ore_previste=100");
    grant(net, id, "cpia-1", "lingua", "read");
    show_want w = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &w), "the CPIA never read the case");

    th_out o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=A2", NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "no write grant") != NULL,
        "a read grant let the CPIA write: %d %s", o.status, o.out);
    th_out_free(&o);

    grant(net, id, "cpia-1", "lingua", "write");
    /* The CPIA may write once the write grant has reached it. */
    bool written = false;
    for (int k = 0; k < 500 && !written; k++) {
        o = th_patto(net, CPIA, "case", "set", id, "lingua.livello=B1", NULL);
        written = o.status == 0;
        th_out_free(&o);
        if (!written) {
            struct timespec ts = { 0, 20000000L };
            nanosleep(&ts, NULL);
        }
    }
    CHECK(net, written, "the CPIA could not write with a write grant");
    show_want back = { COMUNE, id, "scopes/lingua/livello", "B1" };
    CHECK(net, th_wait(net, 10000, shows, &back), "the owner never merged the CPIA's write");
}

static void stopped_node_catches_up(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "lingua.ore_previste=10");
    grant(net, id, "cpia-1", "lingua", "read");
    show_want w = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &w), "the CPIA never read the case");
    assert_int_equal(th_stop(net, CPIA, SIGTERM), 0);
    for (int i = 0; i < 20; i++) {
        th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.ore_frequenza+=2", NULL);
        CHECK(net, o.status == 0, "write %d: %s", i, o.out);
        th_out_free(&o);
    }
    th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    th_out_free(&o);
    assert_int_equal(th_start(net, CPIA), 0);
    show_want done = { CPIA, id, "scopes/lingua/livello", "B2" };
    CHECK(net, th_wait(net, 15000, shows, &done), "the restarted CPIA did not catch up");
    show_want hours = { CPIA, id, "scopes/lingua/ore_frequenza", "40" };
    CHECK(net, th_wait(net, 5000, shows, &hours), "the restarted CPIA lacks some hours");
}

static void sigkill_loses_no_acknowledged_write(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "lingua.ore_previste=10");
    grant(net, id, "cpia-1", "lingua", "read");

    /* A writer process counts the writes the comune acknowledged, until one fails. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        close(fds[0]);
        for (int i = 0; i < 100000; i++) {
            th_out o
                = th_patto_write(net, COMUNE, "case", "set", id, "lingua.ore_frequenza+=1", NULL);
            int st = o.status;
            th_out_free(&o);
            if (st != 0)
                _exit(0);
            if (write(fds[1], "+", 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    int acked = 0;
    char c;
    while (acked < 25 && read(fds[0], &c, 1) == 1)
        acked++;
    assert_int_equal(th_stop(net, COMUNE, SIGKILL), 128 + SIGKILL);
    while (read(fds[0], &c, 1) == 1)
        acked++;
    close(fds[0]);
    int st;
    waitpid(writer, &st, 0);
    CHECK(net, acked >= 25, "only %d writes were acknowledged", acked);

    assert_int_equal(th_start(net, COMUNE), 0);
    th_out o = th_patto(net, COMUNE, "case", "show", id, NULL);
    json_object *v = o.json ? jget(o.json, "scopes/lingua/ore_frequenza") : NULL;
    int64_t have = v ? json_object_get_int64(v) : -1;
    th_out_free(&o);
    /* Every acknowledged write is there; at most one more (committed, reply lost). */
    CHECK(net, have >= acked && have <= acked + 1, "acked %d writes, the comune has %lld", acked,
        (long long)have);

    /* New writes after the restart continue the log: peers accept them, nobody sees two
     * headers for one sequence number. */
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=C1", NULL);
    CHECK(net, o.status == 0, "write after restart: %s", o.out);
    th_out_free(&o);
    show_want w = { CPIA, id, "scopes/lingua/livello", "C1" };
    CHECK(net, th_wait(net, 15000, shows, &w), "the CPIA did not accept the restarted log");
    char want[32];
    snprintf(want, sizeof(want), "%lld", (long long)have);
    show_want hours = { CPIA, id, "scopes/lingua/ore_frequenza", want };
    CHECK(net, th_wait(net, 5000, shows, &hours), "the CPIA's hours differ from the comune's");
    for (size_t i = 0; i < 3; i++) {
        o = th_patto(net, i, "status", NULL);
        json_object *q = o.json ? jget(o.json, "quarantined") : NULL;
        CHECK(net, q != NULL && json_object_array_length(q) == 0,
            "node %zu quarantined an origin: %s", i, o.out);
        th_out_free(&o);
        CHECK(net, !th_log_has(net, i, "origin.equivocation"), "node %zu saw an equivocation", i);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Revocation and downgrade                                                                  */

typedef struct unreadable {
    size_t node;
    const char *id;
} unreadable;

static bool cannot_read(th_net *net, void *ctx)
{
    unreadable *u = ctx;
    th_out o = th_patto(net, u->node, "case", "show", u->id, NULL);
    bool gone = o.status == 3;
    th_out_free(&o);
    return gone;
}

/* node's status: its first closed scope (a new reference; NULL when none) and its body count. */
static json_object *first_closed(th_net *net, size_t node, int64_t *bodies)
{
    th_out o = th_patto(net, node, "status", NULL);
    json_object *c = o.json ? jget(o.json, "closed") : NULL,
                *b = o.json ? jget(o.json, "counts/bodies") : NULL;
    json_object *x = c != NULL && json_object_array_length(c) > 0
        ? json_object_get(json_object_array_get_idx(c, 0))
        : NULL;
    if (bodies != NULL)
        *bodies = b != NULL ? json_object_get_int64(b) : -1;
    th_out_free(&o);
    return x;
}

/* Write at node until it takes the edit (its grant may still be on its way): exit 0. */
static void write_when_granted(th_net *net, size_t node, const char *id, const char *edit)
{
    bool written = false;
    for (int k = 0; k < 500 && !written; k++) {
        th_out o = th_patto(net, node, "case", "set", id, edit, NULL);
        written = o.status == 0;
        th_out_free(&o);
        if (!written) {
            struct timespec ts = { 0, 20000000L };
            nanosleep(&ts, NULL);
        }
    }
    CHECK(net, written, "node %zu could not write %s", node, edit);
}

/* A consent-based reader revoked: the owner's narrowing reaches it, its copy of the scope is
 * purged (case show answers as for a case it cannot read; status lists the scope closed and
 * purged), and what the owner writes next goes under a new key to the remaining holder only:
 * the revoked node holds every header and no body. A later grant lets it read again. */
static void revocation_purges_and_rekeys(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "lingua.cpia=MARKER-ONE-7f3a");
    grant_on(net, id, "cpia-1", "lingua", "read", "consent");
    grant(net, id, "prefettura-1", "lingua", "read");
    show_want w = { CPIA, id, "scopes/lingua/cpia", "MARKER-ONE-7f3a" };
    CHECK(net, th_wait(net, 10000, shows, &w), "the CPIA never read the case");
    w.node = PREF;
    CHECK(net, th_wait(net, 10000, shows, &w), "the Prefettura never read the case");
    char db[700];
    snprintf(db, sizeof(db), "%s/data.mdb", net->nodes[CPIA].dir);
    CHECK(net, file_has(db, (const uint8_t *)"MARKER-ONE-7f3a", 15),
        "the marker is not in the CPIA's store before the revocation: the test proves nothing");

    th_out o = th_patto_write(net, COMUNE, "consent", "revoke", id, "--from", "cpia-1", "--reason",
        "consenso revocato dalla beneficiaria", NULL);
    json_object *sc = o.json ? jget(o.json, "scopes") : NULL;
    json_object *first
        = sc != NULL && json_object_array_length(sc) == 1 ? json_object_array_get_idx(sc, 0) : NULL;
    CHECK(net,
        o.status == 0 && first != NULL && strcmp(jstr(first, "scope"), "lingua") == 0
            && json_object_get_int64(jget(first, "new_epoch")) == 2,
        "revoke: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.cpia=MARKER-TWO-91bc", NULL);
    CHECK(net, o.status == 0, "write after the revocation: %s", o.out);
    th_out_free(&o);
    show_want two = { PREF, id, "scopes/lingua/cpia", "MARKER-TWO-91bc" };
    CHECK(net, th_wait(net, 10000, shows, &two), "the remaining holder never read the new epoch");
    /* one state for every epoch: what was written under the first key is still there */
    show_want before = { PREF, id, "scopes/lingua/livello", "A1" };
    CHECK(net, shows(net, &before), "the new epoch lost what the first one held");
    before.node = COMUNE;
    CHECK(net, shows(net, &before), "the owner's new epoch lost what the first one held");

    unreadable u = { CPIA, id };
    CHECK(net, th_wait(net, 10000, cannot_read, &u), "the revoked CPIA still reads the case");
    same_headers sh = { COMUNE, CPIA };
    CHECK(net, th_wait(net, 10000, has_all_headers, &sh), "the CPIA lacks headers");
    int64_t bodies = -1;
    json_object *x = first_closed(net, CPIA, &bodies);
    CHECK(net,
        x != NULL && strcmp(jstr(x, "scope"), "lingua") == 0
            && strcmp(jstr(x, "reason"), "revoked") == 0
            && strcmp(jstr(x, "owner"), "comune-1") == 0
            && json_object_get_boolean(jget(x, "purged")),
        "the CPIA does not list the scope closed and purged: %s",
        x ? json_object_to_json_string(x) : "none");
    json_object_put(x);
    CHECK(net, bodies == 0, "the revoked CPIA holds %lld bodies (want none)", (long long)bodies);
    CHECK(
        net, th_log_has(net, CPIA, "event=access.narrowed"), "the CPIA did not log the revocation");

    /* The owner's consent list: the CPIA's grant and its narrowing revoked, the other active. */
    o = th_patto(net, COMUNE, "consent", "list", id, NULL);
    json_object *rows = o.json ? jget(o.json, "grants") : NULL;
    int revoked = 0, active = 0;
    for (size_t i = 0; rows != NULL && i < json_object_array_length(rows); i++) {
        json_object *r = json_object_array_get_idx(rows, i);
        revoked += strcmp(jstr(r, "to"), "cpia-1") == 0 && strcmp(jstr(r, "state"), "revoked") == 0;
        active += strcmp(jstr(r, "to"), "prefettura-1") == 0
            && strcmp(jstr(r, "state"), "active") == 0;
    }
    CHECK(net, revoked == 2 && active == 1, "consent list: %s", o.out);
    th_out_free(&o);
    /* Revoking again: nothing left to revoke. */
    o = th_patto_write(net, COMUNE, "consent", "revoke", id, "--from", "cpia-1", NULL);
    CHECK(net,
        o.status == 3 && strstr(o.out, "cpia-1 holds no access to case") != NULL
            && strstr(o.out, "nothing to revoke") != NULL,
        "revoking twice: %d %s", o.status, o.out);
    th_out_free(&o);

    /* Granted again: every epoch's key comes, and the CPIA reads what was written since. */
    grant_on(net, id, "cpia-1", "lingua", "read", "consent");
    show_want back = { CPIA, id, "scopes/lingua/cpia", "MARKER-TWO-91bc" };
    CHECK(net, th_wait(net, 15000, shows, &back), "the CPIA granted again does not read");
    x = first_closed(net, CPIA, NULL);
    CHECK(net, x == NULL, "the CPIA granted again still lists the scope closed");
    json_object_put(x);
}

/* A writer downgraded to read while it was away: its write made after the owner's cut, resting
 * on its old grant, is refused at every node (the writer's own too, once the narrowing reaches
 * it), its write within the cut stays everywhere, and it can no longer write; a new write grant
 * lets it write again. */
static void downgrade_cuts_writes(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "lingua.ore_previste=10");
    grant(net, id, "cpia-1", "lingua", "write");
    grant(net, id, "prefettura-1", "lingua", "read");
    write_when_granted(net, CPIA, id, "lingua.livello=A2");
    show_want a2 = { COMUNE, id, "scopes/lingua/livello", "A2" };
    CHECK(net, th_wait(net, 10000, shows, &a2), "the owner never merged the CPIA's write");
    a2.node = PREF;
    CHECK(net, th_wait(net, 10000, shows, &a2), "the Prefettura never merged the CPIA's write");

    assert_int_equal(th_stop(net, CPIA, SIGTERM), 0);
    th_out o = th_patto_write(net, COMUNE, "consent", "downgrade", id, "--from", "cpia-1", NULL);
    CHECK(net, o.status == 0 && o.json != NULL && strcmp(jstr(o.json, "access"), "read") == 0,
        "downgrade: %d %s", o.status, o.out);
    th_out_free(&o);
    /* The CPIA, alone, writes on its old grant: beyond the owner's cut. */
    assert_int_equal(th_stop(net, COMUNE, SIGTERM), 0);
    assert_int_equal(th_stop(net, PREF, SIGTERM), 0);
    assert_int_equal(th_start(net, CPIA), 0);
    o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "the CPIA, unaware, could not write: %d %s", o.status, o.out);
    th_out_free(&o);
    assert_int_equal(th_start(net, COMUNE), 0);
    assert_int_equal(th_start(net, PREF), 0);

    same_headers sc = { COMUNE, CPIA }, sp = { PREF, CPIA };
    CHECK(net, th_wait(net, 15000, has_all_headers, &sc), "the comune lacks headers");
    CHECK(net, th_wait(net, 15000, has_all_headers, &sp), "the Prefettura lacks headers");
    a2.node = CPIA;
    CHECK(net, th_wait(net, 15000, shows, &a2), "the CPIA kept its write beyond the cut");
    for (size_t i = 0; i < 3; i++) {
        show_want w = { i, id, "scopes/lingua/livello", "A2" };
        CHECK(net, shows(net, &w), "node %zu took the write beyond the cut", i);
    }
    CHECK(net, th_log_has(net, COMUNE, "beyond the cut"), "the comune logged no refusal");
    json_object *x = first_closed(net, CPIA, NULL);
    CHECK(net,
        x != NULL && strcmp(jstr(x, "access"), "read") == 0
            && json_object_get_int64(jget(x, "own_writes_refused")) == 1
            && !json_object_get_boolean(jget(x, "purged")),
        "the CPIA does not say it was downgraded: %s", x ? json_object_to_json_string(x) : "none");
    json_object_put(x);
    o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=B1", NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "no write grant") != NULL,
        "a downgraded writer wrote: %d %s", o.status, o.out);
    th_out_free(&o);

    grant(net, id, "cpia-1", "lingua", "write");
    write_when_granted(net, CPIA, id, "lingua.livello=C1");
    show_want c1 = { PREF, id, "scopes/lingua/livello", "C1" };
    CHECK(net, th_wait(net, 10000, shows, &c1), "a write after a new grant did not reach");
}

/* consent list of node: does a row for org on scope have this state (and kind, when given)? */
typedef struct row_want {
    size_t node;
    const char *id, *scope, *to, *kind, *state;
} row_want;

static bool has_row(th_net *net, void *ctx)
{
    row_want *w = ctx;
    th_out o = th_patto(net, w->node, "consent", "list", w->id, NULL);
    json_object *rows = o.status == 0 && o.json ? jget(o.json, "grants") : NULL;
    bool found = false;
    for (size_t i = 0; rows != NULL && i < json_object_array_length(rows) && !found; i++) {
        json_object *r = json_object_array_get_idx(rows, i);
        found = strcmp(jstr(r, "scope"), w->scope) == 0 && strcmp(jstr(r, "to"), w->to) == 0
            && (w->kind == NULL || strcmp(jstr(r, "kind"), w->kind) == 0)
            && strcmp(jstr(r, "state"), w->state) == 0;
    }
    th_out_free(&o);
    return found;
}

static bool documenti_gone(th_net *net, void *ctx)
{
    th_out o = th_patto(net, CPIA, "case", "show", (const char *)ctx, NULL);
    bool ok = o.status == 0 && o.json != NULL && jget(o.json, "scopes/documenti") == NULL
        && jget(o.json, "scopes/lingua") != NULL;
    th_out_free(&o);
    return ok;
}

static bool shows_closed(th_net *net, void *ctx)
{
    th_out o = th_patto(net, PREF, "case", "show", (const char *)ctx, NULL);
    bool ok = o.status == 0 && o.json != NULL && jget(o.json, "closed/lingua") != NULL
        && jget(o.json, "scopes/lingua") == NULL;
    th_out_free(&o);
    return ok;
}

static bool pending_gone(th_net *net, void *ctx)
{
    return !has_row(net, ctx);
}

/* Withdrawal at any desk and a grantee's drop: notes sealed to the owner, which ends the
 * consent-based grants they name (the grantee purges) and keeps the others pending for an
 * operator; a node that holds no scope of the case names the owner itself. */
static void withdrawal_at_any_desk(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "documenti.permesso_numero=PX-0001");
    grant_on(net, id, "cpia-1", "lingua,documenti", "read", "consent");
    grant(net, id, "prefettura-1", "lingua", "read");
    show_want w = { CPIA, id, "scopes/documenti/permesso_numero", "PX-0001" };
    CHECK(net, th_wait(net, 10000, shows, &w), "the CPIA never read the case");
    show_want p = { PREF, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &p), "the Prefettura never read the case");

    /* The CPIA drops documenti: the owner ends the grant, the CPIA keeps lingua only. */
    th_out o = th_patto_write(net, CPIA, "consent", "drop", id, "--scopes", "documenti", NULL);
    CHECK(net, o.status == 0 && strcmp(jstr(o.json, "owner"), "comune-1") == 0, "drop: %d %s",
        o.status, o.out);
    th_out_free(&o);
    row_want dropped = { COMUNE, id, "documenti", "cpia-1", "narrowing", "revoked" };
    CHECK(net, th_wait(net, 10000, has_row, &dropped), "the owner did not end the dropped grant");
    CHECK(net, th_log_has(net, COMUNE, "reason=dropped"), "the owner's log does not say why");
    CHECK(net, th_wait(net, 10000, shows, &(show_want) { CPIA, id, "scopes/lingua/livello", "A1" }),
        "the CPIA lost lingua");
    CHECK(net, th_wait(net, 10000, documenti_gone, id),
        "the CPIA still shows documenti after its drop");

    /* At the Prefettura's desk the beneficiary withdraws the CPIA's consent to lingua. */
    o = th_patto_write(net, PREF, "consent", "withdraw", id, "--scopes", "lingua", "--to", "cpia-1",
        "--evidence", "modulo revoca 3/2026", NULL);
    CHECK(net, o.status == 0 && strcmp(jstr(o.json, "state"), "sent to the owner") == 0,
        "withdraw at the Prefettura: %d %s", o.status, o.out);
    th_out_free(&o);
    unreadable u = { CPIA, id };
    CHECK(
        net, th_wait(net, 10000, cannot_read, &u), "the withdrawal did not end the CPIA's access");
    row_want withdrawn = { COMUNE, id, "lingua", "cpia-1", "narrowing", "revoked" };
    CHECK(net, has_row(net, &withdrawn), "the owner's consent list lacks the withdrawal");

    /* At the CPIA's desk, which holds nothing of the case now, a withdrawal of the
     * Prefettura's public-task grant: the owner must be named, and the grant, not resting on
     * consent, waits for an operator at the owner. */
    o = th_patto_write(net, CPIA, "consent", "withdraw", id, "--scopes", "lingua", "--to",
        "prefettura-1", "--evidence", "modulo 4/2026", NULL);
    CHECK(net, o.status == 3 && strstr(o.out, "give --owner") != NULL, "no owner: %d %s", o.status,
        o.out);
    th_out_free(&o);
    o = th_patto_write(net, CPIA, "consent", "withdraw", id, "--scopes", "lingua", "--to",
        "prefettura-1", "--evidence", "modulo 4/2026", "--owner", "comune-1", NULL);
    CHECK(net, o.status == 0, "withdraw with --owner: %d %s", o.status, o.out);
    th_out_free(&o);
    row_want pending = { COMUNE, id, "lingua", "prefettura-1", "withdrawal", "withdrawal pending" };
    CHECK(net, th_wait(net, 10000, has_row, &pending), "the owner shows no pending withdrawal");
    CHECK(net, shows(net, &p), "a public-task grant ended without an operator");
    o = th_patto_write(net, COMUNE, "consent", "revoke", id, "--from", "prefettura-1", NULL);
    CHECK(net, o.status == 0, "revoke: %d %s", o.status, o.out);
    th_out_free(&o);
    /* the Prefettura keeps what it received (public task), closed */
    CHECK(net, th_wait(net, 10000, shows_closed, (void *)id),
        "the Prefettura does not show lingua closed");
    row_want closed = { COMUNE, id, "lingua", "prefettura-1", "narrowing", "revoked" };
    CHECK(net, has_row(net, &closed), "the operator's revocation is not in the log");
    CHECK(net, th_wait(net, 15000, pending_gone, &pending), "the withdrawal is still pending");
}

/* The comune's status has a clock alert for the Prefettura. */
static bool clock_alert(th_net *net, void *ctx)
{
    (void)ctx;
    th_out o = th_patto(net, COMUNE, "status", NULL);
    json_object *a = o.status == 0 && o.json ? jget(o.json, "alerts") : NULL;
    bool ok = false;
    for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
        json_object *x = json_object_array_get_idx(a, i);
        ok = ok
            || (strcmp(jstr(x, "kind"), "clock") == 0
                && strcmp(jstr(x, "org"), "prefettura-1") == 0);
    }
    th_out_free(&o);
    return ok;
}

/* What to look for in node's inbox (as operator op, or the node's default when NULL): a row
 * of kind for case id and scope (NULL: any), new when fresh; all: the rows read too. */
typedef struct inbox_want {
    size_t node;
    const char *op;
    const char *kind, *id, *scope;
    bool fresh, all;
} inbox_want;

static th_out inbox_of(th_net *net, size_t node, const char *op, bool all)
{
    const char *a = all ? "--all" : "--limit";
    const char *b = all ? "--limit" : "1000";
    const char *c = all ? "1000" : NULL;
    return op != NULL ? th_patto(net, node, "--operator", op, "inbox", a, b, c, NULL)
                      : th_patto(net, node, "inbox", a, b, c, NULL);
}

static json_object *inbox_row(th_net *net, const inbox_want *w, th_out *o)
{
    *o = inbox_of(net, w->node, w->op, w->all);
    json_object *items = o->status == 0 && o->json ? jget(o->json, "items") : NULL;
    for (size_t i = 0; items != NULL && i < json_object_array_length(items); i++) {
        json_object *it = json_object_array_get_idx(items, i);
        if (strcmp(jstr(it, "kind"), w->kind) == 0 && strcmp(jstr(it, "case"), w->id) == 0
            && (w->scope == NULL
                || (jstr(it, "scope") != NULL && strcmp(jstr(it, "scope"), w->scope) == 0))
            && (!w->fresh || json_object_get_boolean(jget(it, "new"))))
            return it;
    }
    return NULL;
}

static bool inbox_has(th_net *net, void *ctx)
{
    th_out o;
    bool ok = inbox_row(net, ctx, &o) != NULL;
    th_out_free(&o);
    return ok;
}

static size_t inbox_new(th_net *net, size_t node, const char *op)
{
    th_out o = inbox_of(net, node, op, false);
    size_t n = o.status == 0 && o.json ? json_object_array_length(jget(o.json, "items")) : 999;
    th_out_free(&o);
    return n;
}

/* The CPIA's inbox: a case shared with it (scope, access, purpose, basis), marked read per
 * operator; the owner's later changes as one new row of the case; the revocation, with the
 * changes row gone with the purged scope; a withdrawal in the owner's inbox. A peer whose
 * clock runs beyond the network's bound is an alert in status and in the inbox. */
static void inbox_tells_what_is_new(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "documenti.permesso_numero=X0000001");
    grant_on(net, id, "cpia-1", "lingua", "write", "consent");
    inbox_want shared = { CPIA, NULL, "shared", id, "lingua", true, false };
    CHECK(net, th_wait(net, 10000, inbox_has, &shared), "the CPIA's inbox lacks the shared case");
    th_out o;
    json_object *it = inbox_row(net, &shared, &o);
    CHECK(net,
        it != NULL && strcmp(jstr(it, "org"), "comune-1") == 0
            && strcmp(jstr(it, "access"), "write") == 0 && strcmp(jstr(it, "basis"), "consent") == 0
            && strcmp(jstr(it, "purpose"), "lingua") == 0,
        "the shared row: %s", o.out);
    th_out_free(&o);
    /* Marked read by the default operator; another operator still sees it new. */
    o = th_patto(net, CPIA, "inbox", "ack", NULL);
    CHECK(net, o.status == 0, "inbox ack: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    CHECK(net, inbox_new(net, CPIA, NULL) == 0, "rows still new after inbox ack");
    inbox_want other = { CPIA, "teacher-b", "shared", id, "lingua", true, false };
    CHECK(net, inbox_has(net, &other), "another operator's inbox lost the shared case");
    inbox_want old = { CPIA, NULL, "shared", id, "lingua", false, true };
    CHECK(net, inbox_has(net, &old), "inbox --all lost the row read");

    /* The owner changes the case: one new row of changes at the CPIA. */
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=A2", NULL);
    CHECK(net, o.status == 0, "case set: %d %s", o.status, o.out);
    th_out_free(&o);
    inbox_want changed = { CPIA, NULL, "changed", id, NULL, true, false };
    CHECK(net, th_wait(net, 10000, inbox_has, &changed), "the CPIA's inbox lacks the change");
    it = inbox_row(net, &changed, &o);
    CHECK(net,
        it != NULL && strcmp(jstr(it, "org"), "comune-1") == 0 && jget(it, "changes") != NULL
            && json_object_get_int64(jget(it, "changes")) >= 1,
        "the changes row: %s", o.out);
    th_out_free(&o);
    CHECK(net, inbox_new(net, CPIA, NULL) == 1, "not one row a case for changes");
    /* The Prefettura, which reads nothing of the case, has no row of it. */
    inbox_want none = { PREF, NULL, "changed", id, NULL, false, true };
    CHECK(net, !inbox_has(net, &none), "a node that reads nothing of the case has its changes");

    /* Revoked: a narrowed row; the consent-based scope purged, its changes row with it. */
    o = th_patto_write(net, COMUNE, "consent", "revoke", id, "--from", "cpia-1", NULL);
    CHECK(net, o.status == 0, "revoke: %d %s", o.status, o.out);
    th_out_free(&o);
    inbox_want narrowed = { CPIA, NULL, "narrowed", id, "lingua", true, false };
    CHECK(net, th_wait(net, 10000, inbox_has, &narrowed), "the CPIA's inbox lacks the revocation");
    it = inbox_row(net, &narrowed, &o);
    CHECK(net,
        it != NULL && strcmp(jstr(it, "reason"), "revoked") == 0
            && strcmp(jstr(it, "access"), "none") == 0,
        "the narrowed row: %s", o.out);
    th_out_free(&o);
    inbox_want gone = { CPIA, NULL, "changed", id, NULL, false, true };
    CHECK(net, !inbox_has(net, &gone), "the purged case's changes row stayed");

    /* A withdrawal received: a row at the owner. */
    grant_on(net, id, "prefettura-1", "documenti", "read", "consent");
    show_want p = { PREF, id, "scopes/documenti/permesso_numero", "X0000001" };
    CHECK(net, th_wait(net, 10000, shows, &p), "the Prefettura never read the case");
    o = th_patto_write(net, PREF, "consent", "withdraw", id, "--scopes", "documenti", "--to",
        "prefettura-1", "--evidence", "modulo 12/2026", NULL);
    CHECK(net, o.status == 0, "withdraw: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    inbox_want wd = { COMUNE, NULL, "withdrawal", id, "documenti", true, false };
    CHECK(net, th_wait(net, 10000, inbox_has, &wd), "the owner's inbox lacks the withdrawal");

    /* A peer two days ahead: an alert at the comune, in status and in the inbox. */
    CHECK(net, th_stop(net, PREF, SIGTERM) == 0, "the Prefettura did not stop");
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", "172800000", 1);
    int started = th_start(net, PREF);
    unsetenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    CHECK(net, started == 0, "the Prefettura did not start with a test clock");
    /* (a peer's clock is read from the headers it writes) */
    o = th_patto_write(net, PREF, "consent", "withdraw", id, "--scopes", "lingua", "--to", "cpia-1",
        "--evidence", "modulo 13/2026", "--owner", "comune-1", NULL);
    CHECK(net, o.status == 0, "withdraw two days on: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    CHECK(net, th_wait(net, 15000, clock_alert, NULL), "the comune shows no clock alert");
    o = th_patto(net, COMUNE, "inbox", NULL);
    json_object *alerts = o.status == 0 && o.json ? jget(o.json, "alerts") : NULL;
    CHECK(net, alerts != NULL && json_object_array_length(alerts) >= 1,
        "the inbox shows no alert: %s", o.out);
    th_out_free(&o);
}

/* The id of event i of servizi.eventi at node, by case show, or "" when there is none. */
static void event_id(th_net *net, size_t node, const char *id, size_t i, char out[64])
{
    th_out o = th_patto(net, node, "case", "show", id, NULL);
    json_object *a = o.status == 0 && o.json ? jget(o.json, "scopes/servizi/eventi") : NULL;
    json_object *e
        = a != NULL && json_object_array_length(a) > i ? json_object_array_get_idx(a, i) : NULL;
    snprintf(out, 64, "%s", e != NULL && jstr(e, "id") != NULL ? jstr(e, "id") : "");
    th_out_free(&o);
}

typedef struct redacted_want {
    size_t node;
    const char *id;
    size_t i;
} redacted_want;

static bool event_redacted(th_net *net, void *ctx)
{
    redacted_want *w = ctx;
    th_out o = th_patto(net, w->node, "case", "show", w->id, NULL);
    json_object *a = o.status == 0 && o.json ? jget(o.json, "scopes/servizi/eventi") : NULL;
    json_object *e = a != NULL && json_object_array_length(a) > w->i
        ? json_object_array_get_idx(a, w->i)
        : NULL;
    bool ok = e != NULL && json_object_get_boolean(jget(e, "redacted")) && jget(e, "by") != NULL
        && jget(e, "at") != NULL;
    th_out_free(&o);
    return ok;
}

static bool has_event(th_net *net, void *ctx)
{
    redacted_want *w = ctx;
    char eid[64];
    event_id(net, w->node, w->id, w->i, eid);
    return eid[0] != '\0';
}

/* Timelines: a member with a write grant redacts its own event (the redaction reaches the
 * owner); it cannot redact the owner's (refused at its own desk, exit 2); the owner may redact
 * any; an event id that names nothing is exit 3 and a malformed one exit 1; unset of a timeline
 * needs --all (exit 1 without it, nothing removed). */
static void timeline_redact_and_unset(void **state)
{
    th_net *net = *state;
    char id[64], mine[64], theirs[64];
    new_case(net, id, "servizi.eventi+={\"tipo\":\"colloquio\"}", "lingua.livello=A1");
    grant_on(net, id, "cpia-1", "servizi", "write", "consent");
    redacted_want seen = { CPIA, id, 0 };
    CHECK(net, th_wait(net, 10000, has_event, &seen), "the CPIA never read the timeline");
    th_out o = th_patto_write(
        net, CPIA, "case", "set", id, "servizi.eventi+={\"tipo\":\"corso\"}", NULL);
    CHECK(net, o.status == 0, "the CPIA's event: %d %s", o.status, o.out);
    th_out_free(&o);
    event_id(net, CPIA, id, 0, theirs);
    event_id(net, CPIA, id, 1, mine);
    CHECK(net, theirs[0] != '\0' && mine[0] != '\0', "events without ids");

    o = th_patto_write(net, CPIA, "case", "redact", id, "servizi.eventi", theirs, NULL);
    CHECK(net, o.status == 2 && strstr(o.out, "only its author or the case's owner") != NULL,
        "the CPIA redacting the owner's event: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto_write(net, CPIA, "case", "redact", id, "servizi.eventi", "000000000000.99", NULL);
    CHECK(net, o.status == 3, "an event that is not there: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto_write(net, CPIA, "case", "redact", id, "servizi.eventi", "nope", NULL);
    CHECK(net, o.status == 1, "a malformed event id: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto_write(net, CPIA, "case", "redact", id, "servizi.eventi", mine, NULL);
    CHECK(net, o.status == 0, "the CPIA redacting its own event: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    redacted_want at_owner = { COMUNE, id, 1 };
    CHECK(net, th_wait(net, 10000, event_redacted, &at_owner),
        "the owner did not take the CPIA's redaction of its own event");
    o = th_patto_write(net, COMUNE, "case", "redact", id, "servizi.eventi", theirs, NULL);
    CHECK(net, o.status == 0, "the owner redacting its event: %d %s", o.status, o.out);
    th_out_free(&o);
    redacted_want at_cpia = { CPIA, id, 0 };
    CHECK(net, th_wait(net, 10000, event_redacted, &at_cpia),
        "the CPIA did not take the owner's redaction");

    o = th_patto_write(net, COMUNE, "case", "unset", id, "servizi.eventi", NULL);
    CHECK(net, o.status == 1 && strstr(o.out, "--all") != NULL, "unset of a timeline: %d %s",
        o.status, o.out);
    th_out_free(&o);
    event_id(net, COMUNE, id, 1, mine);
    CHECK(net, mine[0] != '\0', "a refused unset removed events");
    o = th_patto_write(net, COMUNE, "case", "unset", id, "servizi.eventi", "--all", NULL);
    CHECK(net, o.status == 0, "unset --all: %d %s", o.status, o.out);
    th_out_free(&o);
    event_id(net, COMUNE, id, 0, mine);
    CHECK(net, mine[0] == '\0', "unset --all left events");
}

typedef struct log_want {
    size_t node;
    const char *id, *by, *old, *new_; /* old NULL: none */
    bool conflict;
} log_want;

/* node's case log of id has a change of lingua.livello by `by` from old to new_. */
static bool log_has(th_net *net, void *ctx)
{
    log_want *w = ctx;
    th_out o = th_patto(net, w->node, "case", "log", w->id, "lingua.livello", NULL);
    json_object *ch = o.status == 0 && o.json ? jget(o.json, "changes") : NULL;
    bool ok = false;
    for (size_t i = 0; ch != NULL && i < json_object_array_length(ch) && !ok; i++) {
        json_object *c = json_object_array_get_idx(ch, i);
        const char *old = jstr(c, "old");
        ok = strcmp(jstr(c, "by"), w->by) == 0 && strcmp(jstr(c, "new"), w->new_) == 0
            && (w->old == NULL ? old == NULL : old != NULL && strcmp(old, w->old) == 0)
            && (!w->conflict || json_object_array_length(jget(c, "conflict")) == 2);
    }
    th_out_free(&o);
    return ok;
}

/* case log: the creation (none -> A1 by the comune), the CPIA's write (A1 -> A2 by the CPIA),
 * newest first; two writes made apart (each node stopped while the other wrote) are a conflict
 * at the owner once both are in, each side with its author; a node that reads nothing of the
 * case answers exit 3; a field that is not in the schema exit 2. */
static void case_log_tells_who_changed_what(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", "anagrafica.nome=Zaira");
    grant_on(net, id, "cpia-1", "lingua", "write", "consent");
    show_want a1 = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &a1), "the CPIA never read the case");
    th_out o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=A2", NULL);
    CHECK(net, o.status == 0, "the CPIA's write: %d %s", o.status, o.out);
    th_out_free(&o);
    log_want made = { COMUNE, id, "comune-1", NULL, "A1", false };
    log_want changed = { COMUNE, id, "cpia-1", "A1", "A2", false };
    CHECK(net, th_wait(net, 10000, log_has, &changed), "the owner's log lacks the CPIA's change");
    CHECK(net, log_has(net, &made), "the owner's log lacks the creation");
    o = th_patto(net, COMUNE, "case", "log", id, NULL);
    json_object *ch = o.status == 0 && o.json ? jget(o.json, "changes") : NULL;
    CHECK(net,
        ch != NULL && json_object_array_length(ch) >= 3
            && strcmp(jstr(json_object_array_get_idx(ch, 0), "by"), "cpia-1") == 0,
        "the log is not newest first: %s", o.out);
    th_out_free(&o);

    /* Apart: the comune writes B2 while the CPIA is down, the CPIA B1 while the comune is. */
    CHECK(net, th_stop(net, CPIA, SIGTERM) == 0, "the CPIA did not stop");
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "the comune's write: %d %s", o.status, o.out);
    th_out_free(&o);
    CHECK(net, th_stop(net, COMUNE, SIGTERM) == 0, "the comune did not stop");
    CHECK(net, th_start(net, CPIA) == 0, "the CPIA did not start");
    o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=B1", NULL);
    CHECK(net, o.status == 0, "the CPIA's write apart: %d %s", o.status, o.out);
    th_out_free(&o);
    CHECK(net, th_start(net, COMUNE) == 0, "the comune did not start");
    log_want both = { COMUNE, id, "cpia-1", "B2", "B1", true };
    log_want both2 = { COMUNE, id, "comune-1", "A2", "B2", true };
    CHECK(net, th_wait(net, 15000, log_has, &both) || th_wait(net, 100, log_has, &both2),
        "the owner's log shows no conflict of the two writes made apart");

    /* case show --labels names the fields by the schema's labels */
    o = th_patto(net, COMUNE, "case", "show", id, "--labels", NULL);
    CHECK(net,
        o.status == 0 && o.json != NULL && jstr(o.json, "labels") != NULL
            && jget(jget(o.json, "labels"), "lingua.livello") != NULL
            && strlen(json_object_get_string(jget(jget(o.json, "labels"), "lingua.livello"))) > 0,
        "case show --labels: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto(net, PREF, "case", "log", id, NULL);
    CHECK(net, o.status == 3, "a node that reads nothing: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto(net, COMUNE, "case", "log", id, "lingua.nope", NULL);
    CHECK(net, o.status == 2, "a field not in the schema: %d %s", o.status, o.out);
    th_out_free(&o);
}

/* A withdrawal ends the grants recorded before it, not one the owner records after it: the
 * beneficiary withdraws at the Prefettura's desk while the comune is down; the comune, back
 * but not reached yet by the note, records a new consent-based grant to the CPIA; when the note
 * arrives (the comune's inbox shows it), the new grant stands: no narrowing, the CPIA reads. */
static void withdrawal_spares_a_later_grant(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1", NULL);
    grant_on(net, id, "cpia-1", "lingua", "read", "consent");
    show_want a1 = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &a1), "the CPIA never read the case");
    CHECK(net, th_stop(net, COMUNE, SIGTERM) == 0, "the comune did not stop");
    th_out o = th_patto_write(net, PREF, "consent", "withdraw", id, "--scopes", "lingua", "--to",
        "cpia-1", "--evidence", "modulo 14/2026", "--owner", "comune-1", NULL);
    CHECK(net, o.status == 0, "withdraw: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    CHECK(net, th_stop(net, PREF, SIGTERM) == 0, "the Prefettura did not stop");
    CHECK(net, th_start(net, COMUNE) == 0, "the comune did not start");
    grant_on(net, id, "cpia-1", "lingua", "read", "consent"); /* new consent, after the note */
    CHECK(net, th_start(net, PREF) == 0, "the Prefettura did not start");
    inbox_want wd = { COMUNE, NULL, "withdrawal", id, "lingua", false, true };
    CHECK(net, th_wait(net, 15000, inbox_has, &wd), "the note never reached the owner");
    /* The close pass has run on the note (it runs at the tick after a note is taken). */
    row_want pending = { COMUNE, id, "lingua", "cpia-1", "withdrawal", "withdrawal pending" };
    CHECK(net, th_wait(net, 10000, pending_gone, &pending), "the owner never settled the note");
    o = th_patto(net, COMUNE, "consent", "list", id, NULL);
    json_object *g = o.status == 0 && o.json ? jget(o.json, "grants") : NULL;
    size_t narrowings = 0, active = 0;
    for (size_t i = 0; g != NULL && i < json_object_array_length(g); i++) {
        json_object *r = json_object_array_get_idx(g, i);
        narrowings += strcmp(jstr(r, "kind"), "narrowing") == 0;
        active += strcmp(jstr(r, "kind"), "grant") == 0 && strcmp(jstr(r, "state"), "active") == 0;
    }
    CHECK(net, narrowings == 0 && active == 1, "consent list after the note: %s", o.out);
    th_out_free(&o);
    CHECK(net, shows(net, &a1), "the CPIA lost the grant recorded after the withdrawal");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    th_programs(PATTO_BIN, PATTOD_BIN);
    if (proto_init() != PROTO_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(consent_decides_who_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(write_needs_a_write_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(stopped_node_catches_up, setup, teardown),
        cmocka_unit_test_setup_teardown(sigkill_loses_no_acknowledged_write, setup, teardown),
        cmocka_unit_test_setup_teardown(revocation_purges_and_rekeys, setup, teardown),
        cmocka_unit_test_setup_teardown(downgrade_cuts_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(withdrawal_at_any_desk, setup, teardown),
        cmocka_unit_test_setup_teardown(inbox_tells_what_is_new, setup, teardown),
        cmocka_unit_test_setup_teardown(timeline_redact_and_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(case_log_tells_who_changed_what, setup, teardown),
        cmocka_unit_test_setup_teardown(withdrawal_spares_a_later_grant, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
