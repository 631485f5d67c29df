/*
 * node.hostile: hostile peers against real pattod processes (issue 8, section 6). Each
 * scenario starts its own network of three nodes on 127.0.0.1 (comune-1, cpia-1,
 * prefettura-1) and talks to the comune through fakepeer.h: a test-side pair1 peer (plain TCP
 * speaking nng's SP framing) that can handshake under any identity and send any bytes.
 *
 * 1. A stranger (keys not in the manifest) gets nothing, not even a HELLO_REPLY; an
 *    impersonator that names a member's origin gets the reply but fails HELLO_FINISH.
 * 2. Garbage, a non-HELLO message, or a member's plaintext HEADERS as the first message close
 *    the pipe; so does silence, or a HELLO never finished, after handshake_timeout_ms.
 * 3. An oversized message ([sync] max_message_bytes) and truncated, bit-flipped or replayed
 *    session frames close the session; a sealed frame holding garbage or an unexpected kind
 *    is refused and logged while the session stays up. An oversized message before the
 *    handshake must be logged too (oversized_is_logged).
 * 4. Forged and replayed headers under a member's identity (read from its data directory
 *    while it is stopped; its store is read through the ledger API, node/src/ledger.h): bad
 * signature, a stranger's header, broken chain, duplicates, an equivocation (quarantine, and
 * nothing more taken from that origin); a replayed delta is merged once (a counter does not count
 * it twice).
 * 5. Causal write authorisation: a delta from a partner that holds only a read grant is not
 *    merged by any holder; once a write grant reaches it, its later deltas are.
 * 6. A delta whose HLC is far ahead of the receiver's clock waits (and does not move the
 *    receiver's clock); with a small max_clock_ahead_ms (the manifest's) it is merged once its
 *    time comes.
 * 7. The findings of the security review on protocol version 2 (ARCHITECTURE.md, section 6),
 *    each as a member's modified node would act, with its own valid keys: re-sealing a key it
 *    reads or making keys for another scope (findings 1, 2), naming the owner's future dot or
 *    redacting the owner's event (3), a key-grant header of its own (4), claiming the node's
 *    own log, or never saying what it holds (5), equivocating to two nodes (6), deltas outside
 *    the schema or stamped after their header (8, 9), floods of out-of-order or badly signed
 *    headers (11). What proto/ refuses to build (a key grant naming an owner the case id does
 *    not derive from, a key-grant header for another's tag) is built here with libsodium.
 *
 * 8. A retirement is a cut: a write of a key beyond its retirement, merged before the manifest
 *    came, is void once it comes.
 * 9. Expiry while the owner is offline: a holder (with a test clock two days on) refuses the
 *    grantee's write stamped after its grant ended; the grantee's node no longer shows it.
 * 10. A member that claims its own log and sends none of it, while another node holds it (a
 *    version vector skips an author's log at the other peers): the node gets it from the
 *    other once the author has been slow for two anti-entropy ticks.
 *
 * After each attack the node must keep serving: `patto status` answers and a new case still
 * reaches the other nodes. Every node must stop cleanly at the end, and under the sanitizers
 * a report in a node's log fails the scenario.
 *
 * PATTO_TEST_KEEP=1 keeps every network's directory (logs) of a passing run;
 * HOSTILE_FILTER=pattern runs only the matching scenarios.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fakepeer.h"
#include "harness.h"
#include "ledger.h"

#include <node/node.h>
#include <proto/proto.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { COMUNE = 0, CPIA = 1, PREF = 2 };

static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };

/* What the fake peer accepts from the node: a little more than the node's largest message. */
#define FP_RECV_MAX (PROTO_MAX_MESSAGE_DEFAULT + 65536u)
#define HOUR_MS 3600000u

/* A network whose comune starts with extra pattod.conf lines (conf). The comune logs at debug
 * level: a line a peer could repeat without end is logged at its own level once per address
 * and cause, then at debug level while it is held back, and the scenarios count every one. */
static int setup_with_opts(void **state, const char *conf, const char *const *sign_args)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    int rc = th_net_make_opts(net, 3, orgs, sign_args);
    if (rc == 0)
        rc = th_conf_append(net, COMUNE, "\n[node]\nlog_level = debug\n");
    if (rc == 0)
        rc = th_conf_append(net, COMUNE, conf);
    for (size_t i = 0; rc == 0 && i < net->n; i++)
        rc = th_join(net, i);
    if (rc != 0) {
        net->keep = true;
        th_dump_logs(net);
    }
    return rc;
}

static int setup_with(void **state, const char *conf)
{
    return setup_with_opts(state, conf, NULL);
}

static int setup(void **state)
{
    return setup_with(state, "");
}

/* The pending quota is tested with 20 bodies per author. */
static int setup_small_quota(void **state)
{
    return setup_with(state, "\n[sync]\npending_per_author = 20\n");
}

/* Silence is tested with a 1 s handshake deadline. */
static int setup_short_handshake(void **state)
{
    return setup_with(state, "\n[sync]\nhandshake_timeout_ms = 1000\n");
}

/* Idle links are tested with a 1.5 s idle timeout at the comune (pings every 0.5 s). */
static int setup_short_idle(void **state)
{
    return setup_with(state, "\n[sync]\nidle_timeout_ms = 1500\nanti_entropy_ms = 250\n");
}

/* Time coming into bounds is tested with a 1 s maximum clock offset (the manifest's). */
static int setup_tight_clock(void **state)
{
    static const char *const sign[] = { "--max-clock-ahead-ms", "1000", NULL };
    return setup_with_opts(state, "", sign);
}

/* The schema scenario signs a counter limit of 1000 per author. */
static int setup_counter_limit(void **state)
{
    static const char *const sign[] = { "--counter-limit", "1000", NULL };
    return setup_with_opts(state, "", sign);
}

static int teardown(void **state)
{
    th_net *net = *state;
    if (getenv("PATTO_TEST_KEEP") != NULL)
        net->keep = true; /* to read the nodes' logs of a passing run */
    /* Bad input must never crash a node: under the sanitizers, a report in a node's log (it
     * is the node's stderr) fails the scenario. Stop the nodes first so their logs are whole;
     * a node that does not stop cleanly fails it too. */
    int rc = 0;
    for (size_t i = 0; i < net->n; i++) {
        int st = th_stop(net, i, SIGTERM);
        if (st != 0) {
            fprintf(
                stderr, "%s did not stop cleanly on SIGTERM (status %d)\n", net->nodes[i].org, st);
            rc = -1;
        }
    }
    static const char *const reports[]
        = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
    for (size_t i = 0; i < net->n; i++)
        for (size_t k = 0; k < sizeof(reports) / sizeof(reports[0]); k++)
            if (th_log_has(net, i, reports[k])) {
                fprintf(stderr, "%s's log holds a sanitizer report (%s)\n", net->nodes[i].org,
                    reports[k]);
                rc = -1;
            }
    if (rc != 0)
        net->keep = true;
    th_net_down(net);
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

/* ---------------------------------------------------------------------------------------- */
/* Small helpers: JSON, hex, files, logs                                                     */

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
    return v ? json_object_get_string(v) : NULL;
}

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    size_t got = buf != NULL && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[got] = 0;
    if (len != NULL)
        *len = got;
    return buf;
}

/* Lines of node i's log that contain every one of the (NULL-terminated) strings. */
static size_t log_count(th_net *net, size_t i, ...)
{
    char *log = read_file(net->nodes[i].log, NULL);
    if (log == NULL)
        return 0;
    /* Whole lines only: the node may be writing the last one (a half-written "org=cpia-" would
     * count as no member's). */
    char *end = strrchr(log, '\n');
    if (end != NULL)
        end[1] = 0;
    else
        log[0] = 0;
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(log, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        va_list ap;
        va_start(ap, i);
        bool all = true;
        for (const char *s; all && (s = va_arg(ap, const char *)) != NULL;)
            all = strstr(line, s) != NULL;
        va_end(ap);
        n += all;
    }
    free(log);
    return n;
}

/* Lines of node i's log with an event=peer.* event that names no member's org: what the node
 * says about pipes that never authenticated. */
static size_t log_count_unknown_peers(th_net *net, size_t i)
{
    size_t all = log_count(net, i, "event=peer.", (const char *)NULL);
    for (size_t k = 0; k < net->n; k++) {
        char org[48];
        snprintf(org, sizeof(org), "org=%s ", net->nodes[k].org);
        all -= log_count(net, i, "event=peer.", org, (const char *)NULL);
    }
    return all;
}

/* Each member's links with the comune are both up (it dials each member and each dials it). */
static bool member_links_up(th_net *net, void *ctx)
{
    (void)ctx;
    for (size_t k = 0; k < net->n; k++) {
        char org[48];
        snprintf(org, sizeof(org), "org=%s ", net->nodes[k].org);
        if (k != COMUNE
            && (log_count(net, COMUNE, "event=peer.up", org, "dialled=yes", (const char *)NULL) == 0
                || log_count(net, COMUNE, "event=peer.up", org, "dialled=no", (const char *)NULL)
                    == 0))
            return false;
    }
    return true;
}

typedef struct log_want {
    size_t node;
    size_t more_than;
    const char *a, *b, *c;
} log_want;

static bool log_grew(th_net *net, void *ctx)
{
    log_want *w = ctx;
    return log_count(net, w->node, w->a, w->b, w->c, (const char *)NULL) > w->more_than;
}

/* Wait up to timeout_ms for a new line of node's log holding a, b and c (b, c may be NULL). */
static bool wait_log(th_net *net, size_t node, size_t before, int timeout_ms, const char *a,
    const char *b, const char *c)
{
    log_want w = { node, before, a, b, c };
    return th_wait(net, timeout_ms, log_grew, &w);
}

static size_t count3(th_net *net, size_t node, const char *a, const char *b, const char *c)
{
    return log_count(net, node, a, b, c, (const char *)NULL);
}

/* Stop node i with SIGTERM; it must stop cleanly (exit 0, within the harness's 5 s). */
static void stop_node(th_net *net, size_t i)
{
    int st = th_stop(net, i, SIGTERM);
    CHECK(net, st == 0, "%s did not stop cleanly on SIGTERM (status %d)", net->nodes[i].org, st);
}

static void node_url(th_net *net, size_t i, char url[64])
{
    snprintf(url, 64, "tcp://127.0.0.1:%u", (unsigned)net->nodes[i].port);
}

static void node_origin(th_net *net, size_t i, uint8_t origin[32])
{
    unhex(net->nodes[i].origin, origin, 32);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Replace every occurrence of a 32-byte string in buf. Returns how many. */
static size_t replace32(uint8_t *buf, size_t len, const uint8_t *from, const uint8_t *to)
{
    size_t n = 0;
    for (size_t i = 0; i + 32 <= len; i++) {
        if (memcmp(buf + i, from, 32) == 0) {
            memcpy(buf + i, to, 32);
            n++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* The CLI                                                                                   */

/* `case new` at the comune (th_patto_write: a fake peer's session that the test has just closed
 * may still be up there for a moment, one whose version vector never came). */
static void new_case2(th_net *net, char id[64], const char *edit1, const char *edit2)
{
    th_out o = th_patto_write(net, COMUNE, "case", "new", edit1, edit2, NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case new: %d %s %s", o.status, o.out, o.err);
    snprintf(id, 64, "%s", jstr(o.json, "id"));
    th_out_free(&o);
}

static void new_case(th_net *net, char id[64], const char *edit)
{
    new_case2(net, id, edit, NULL);
}

static void grant(th_net *net, const char *id, const char *to, const char *access)
{
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", to, "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "public-task", "--provision",
        "D.Lgs. 286/1998 art. 4-bis", "--access", access, NULL);
    CHECK(net, o.status == 0, "consent grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
}

typedef struct show_want {
    size_t node;
    const char *id;
    const char *path;
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

/* The value node shows at path ("" when unreadable); copied into out. */
static void show_value(th_net *net, size_t node, const char *id, const char *path, char out[64])
{
    th_out o = th_patto(net, node, "case", "show", id, NULL);
    const char *v = o.status == 0 && o.json ? jstr(o.json, path) : NULL;
    snprintf(out, 64, "%s", v ? v : "");
    th_out_free(&o);
}

/* A number from node's `patto status --json` (-1 when status fails or the path is absent). */
static int64_t status_num(th_net *net, size_t node, const char *path)
{
    th_out o = th_patto(net, node, "status", NULL);
    json_object *v = o.status == 0 && o.json ? jget(o.json, path) : NULL;
    int64_t n = v ? json_object_get_int64(v) : -1;
    th_out_free(&o);
    return n;
}

/* Node's header version vector entry for the origin of node `of` (0 when absent). */
static int64_t vv_of(th_net *net, size_t node, size_t of)
{
    th_out o = th_patto(net, node, "status", NULL);
    int64_t n = -1;
    if (o.status == 0 && o.json != NULL) {
        json_object *vv = jget(o.json, "vv"), *v = NULL;
        n = vv != NULL && json_object_object_get_ex(vv, net->nodes[of].origin, &v)
            ? json_object_get_int64(v)
            : 0;
    }
    th_out_free(&o);
    return n;
}

static bool quarantined(th_net *net, size_t node, const char *org)
{
    th_out o = th_patto(net, node, "status", NULL);
    json_object *q = o.status == 0 && o.json ? jget(o.json, "quarantined") : NULL;
    bool found = false;
    for (size_t i = 0; q != NULL && i < json_object_array_length(q); i++) {
        const char *s = jstr(json_object_array_get_idx(q, i), "org");
        found = found || (s != NULL && strcmp(s, org) == 0);
    }
    th_out_free(&o);
    return found;
}

typedef struct vv_want {
    size_t node, of;
    int64_t value;
} vv_want;

static bool vv_is(th_net *net, void *ctx)
{
    vv_want *w = ctx;
    return vv_of(net, w->node, w->of) == w->value;
}

/* A number of a node's status at path equals value. */
typedef struct num_want {
    size_t node;
    const char *path;
    int64_t value;
} num_want;

static bool num_is(th_net *net, void *ctx)
{
    num_want *w = ctx;
    return status_num(net, w->node, w->path) == w->value;
}

/* Node holds every header the comune wrote, and waits for nothing (bodies, keys, causal
 * past, clock, out-of-order headers). */
static bool settled(th_net *net, void *ctx)
{
    size_t node = *(size_t *)ctx;
    int64_t want = vv_of(net, COMUNE, COMUNE);
    if (want <= 0 || vv_of(net, node, COMUNE) != want)
        return false;
    th_out o = th_patto(net, node, "status", NULL);
    bool idle = o.status == 0 && o.json != NULL;
    static const char *const keys[] = { "causal", "clock", "key", "bodies", "headers" };
    for (size_t i = 0; idle && i < sizeof(keys) / sizeof(keys[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "waiting/%s", keys[i]);
        json_object *v = jget(o.json, path);
        idle = v != NULL && json_object_get_int64(v) == 0;
    }
    th_out_free(&o);
    return idle;
}

/* The comune still answers and a new case still reaches every other running node: the CPIA
 * reads it (when it runs and may be granted), the Prefettura holds its headers. */
static void still_serving(th_net *net, bool grant_cpia)
{
    th_out o = th_patto(net, COMUNE, "status", NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "the comune's status no longer answers: %d %s %s",
        o.status, o.out, o.err);
    th_out_free(&o);
    char id[64];
    new_case(net, id, "lingua.livello=B2");
    if (grant_cpia && net->nodes[CPIA].pid > 0) {
        grant(net, id, "cpia-1", "read");
        show_want w = { CPIA, id, "scopes/lingua/livello", "B2" };
        CHECK(net, th_wait(net, 15000, shows, &w), "a new case no longer reaches the CPIA");
    }
    if (net->nodes[PREF].pid > 0) {
        vv_want w = { PREF, COMUNE, vv_of(net, COMUNE, COMUNE) };
        CHECK(net, w.value > 0 && th_wait(net, 15000, vv_is, &w),
            "the Prefettura no longer receives the comune's headers (wants %lld, has %lld)",
            (long long)w.value, (long long)vv_of(net, PREF, COMUNE));
    }
}

/* ---------------------------------------------------------------------------------------- */
/* A member's secrets, read from its data directory while it is stopped                      */

static proto_identity *member_identity(th_net *net, size_t i)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/identity.key", net->nodes[i].dir);
    size_t len = 0;
    char *buf = read_file(path, &len);
    proto_identity *id = NULL;
    bool ok = buf != NULL && len == 64
        && proto_identity_from_seeds((const uint8_t *)buf, (const uint8_t *)buf + 32, &id)
            == PROTO_OK;
    if (buf != NULL) {
        proto_wipe(buf, len);
        free(buf);
    }
    CHECK(net, ok, "cannot read %s (64 bytes: sign seed, box seed)", path);
    return id;
}

/* What a member's store holds of one (case, scope), its access log and its own log: read
 * through the ledger API (node/src/ledger.h) while the member is stopped. */
/* The access-log entry a delta says its author had seen last: its number (0: none) and the
 * place of the owner's header that carried it. */
typedef struct seen_entry {
    uint64_t n;
    uint8_t origin[32];
    uint64_t at;
} seen_entry;

typedef struct member_view {
    const proto_case_id *case_id;
    const char *scope;
    const char *org; /* whose newest grant to look up in the access log */
    /* out */
    proto_scope_key *key; /* the newest confirmed epoch's key */
    proto_case_nonce nonce;
    char owner[PROTO_ORG_MAX + 1];
    crdt_scope *state;
    seen_entry seen;  /* entries 1..seen.n held without a gap, and where n came from */
    uint64_t entries; /* entries held */
    uint8_t access;   /* org's access by its newest grant among them (PROTO_ACCESS_*) */
    uint64_t own_seq;
    uint8_t own_last[32];
    char why[200];
} member_view;

static bool view_entry_cb(const ledger_entry *en, void *ctx)
{
    member_view *v = ctx;
    v->entries++;
    if (en->kind == PROTO_BODY_ACCESS_GRANT && v->org != NULL && strcmp(en->grantee, v->org) == 0)
        v->access = en->access;
    return true;
}

static node_err view_cb(node_txn *t, void *ctx)
{
    member_view *v = ctx;
    ledger_key k;
    node_err err = node__ledger_key_for(t, v->case_id, v->scope, &k);
    if (err != NODE_OK) {
        snprintf(v->why, sizeof(v->why), "no key of scope %s of that case", v->scope);
        return err;
    }
    v->nonce = k.nonce;
    snprintf(v->owner, sizeof(v->owner), "%s", k.owner_org);
    proto_err perr = proto_scope_key_from_bytes(v->case_id, v->scope, k.epoch, k.key, &v->key);
    if (perr != PROTO_OK || memcmp(proto_scope_key_tag(v->key), k.tag, 32) != 0) {
        proto_wipe(&k, sizeof(k));
        snprintf(v->why, sizeof(v->why), "the stored key does not give the stored tag");
        return NODE_ECORRUPT;
    }
    err = node__ledger_state_get(t, k.tag, NULL, &v->state);
    proto_wipe(&k, sizeof(k));
    if (err != NODE_OK) {
        snprintf(v->why, sizeof(v->why), "no readable state for the tag");
        return err;
    }
    v->entries = 0;
    v->access = PROTO_ACCESS_NONE;
    if ((err = node__ledger_entries(t, v->case_id, v->scope, view_entry_cb, v)) != NODE_OK) {
        snprintf(v->why, sizeof(v->why), "the access log does not read");
        return err;
    }
    memset(&v->seen, 0, sizeof(v->seen));
    v->seen.n = node__ledger_entries_contiguous(t, v->case_id, v->scope);
    ledger_entry *en = v->seen.n != 0 ? malloc(sizeof(*en)) : NULL;
    if (en != NULL
        && (node__ledger_entry_get(t, v->case_id, v->scope, v->seen.n, en) != NODE_OK
            || node__ledger_place(t, en->id, v->seen.origin, &v->seen.at) != NODE_OK)) {
        free(en);
        snprintf(v->why, sizeof(v->why), "entry %" PRIu64 " has no header", v->seen.n);
        return NODE_ECORRUPT;
    }
    free(en);
    v->own_seq = 0;
    memset(v->own_last, 0, 32);
    err = node__ledger_own_get(t, &v->own_seq, v->own_last);
    if (err == NODE_ENOTFOUND)
        err = NODE_OK;
    if (err != NODE_OK)
        snprintf(v->why, sizeof(v->why), "its own log position does not read");
    return err;
}

static void member_store_read(th_net *net, size_t i, node_txn_cb fn, void *ctx, const char *why)
{
    CHECK(
        net, net->nodes[i].pid == 0, "read %s's store only while it is stopped", net->nodes[i].org);
    node_store *st = NULL;
    node_errmsg msg;
    node_err err = node_store_open(net->nodes[i].dir, 256u << 20, 1ull << 40, &st, &msg);
    CHECK(net, err == NODE_OK, "cannot open %s's store: %s", net->nodes[i].org, msg.text);
    err = node_store_read(st, fn, ctx, &msg);
    node_store_close(st);
    CHECK(net, err == NODE_OK, "%s's store: %s", net->nodes[i].org, why);
}

static void member_view_read(th_net *net, size_t i, member_view *v)
{
    member_store_read(net, i, view_cb, v, v->why);
}

static void member_view_fini(member_view *v)
{
    proto_scope_key_free(v->key);
    crdt_scope_free(v->state);
    v->key = NULL;
    v->state = NULL;
}

typedef struct own_pos {
    uint64_t seq;
    uint8_t id[32];
} own_pos;

static node_err own_put_cb(node_txn *t, void *ctx)
{
    own_pos *o = ctx;
    return node__ledger_own_put(t, o->seq, o->id);
}

/* Record (seq, id) as the last header of member i's own log, as if it had written it itself
 * (a modified node that wrote the forged delta): its next write then continues the chain
 * instead of forking it. */
static void member_own_put(th_net *net, size_t i, uint64_t seq, const uint8_t id[32])
{
    node_store *st = NULL;
    node_errmsg msg;
    node_err err = node_store_open(net->nodes[i].dir, 256u << 20, 1ull << 40, &st, &msg);
    CHECK(net, err == NODE_OK, "cannot open %s's store: %s", net->nodes[i].org, msg.text);
    own_pos o = { seq, { 0 } };
    memcpy(o.id, id, 32);
    err = node_store_write(st, own_put_cb, &o, &msg);
    node_store_close(st);
    CHECK(net, err == NODE_OK, "cannot write %s's store: %s", net->nodes[i].org, msg.text);
}

/* The access org holds in a member's view of a scope: by the newest grant for it in the
 * scope's access log (the consents database), PROTO_ACCESS_NONE without one. */
static uint8_t access_in(const member_view *v)
{
    return v->access;
}

/* ---------------------------------------------------------------------------------------- */
/* Forging                                                                                   */

typedef struct forged {
    proto_buf header, body;
    uint8_t id[32];
} forged;

static void forged_free(forged *f)
{
    proto_buf_free(&f->header);
    proto_buf_free(&f->body);
}

static void forged_id(forged *f)
{
    proto_header h;
    memset(f->id, 0, 32);
    if (proto_header_decode(f->header.p, f->header.len, NULL, &h, NULL) == PROTO_OK)
        memcpy(f->id, h.id, 32);
}

/* Seal a body (already filled: kind and that kind's fields) by `author` under `key`, at
 * (seq, prev) with HLC (wall, 0). */
static proto_err forge_body(const proto_identity *author, const proto_scope_key *key,
    const proto_body *plain, uint64_t seq, const uint8_t prev[32], uint64_t wall, forged *out)
{
    memset(out, 0, sizeof(*out));
    proto_seal_info info;
    memset(&info, 0, sizeof(info));
    info.seq = seq;
    memcpy(info.prev, prev, 32);
    info.hlc.wall = wall;
    proto_err err = proto_delta_seal(author, key, &info, plain, NULL, &out->header, &out->body);
    if (err != PROTO_OK) {
        forged_free(out);
        return err;
    }
    forged_id(out);
    return PROTO_OK;
}

/* Seal a CRDT delta: its causal past is `vv_of` (a state: its version vector), its author states
 * the access-log entry it had seen last (NULL: none). */
static proto_err forge_delta_of(const proto_identity *author, const proto_scope_key *key,
    const crdt_scope *vv_of, const crdt_scope *delta, const seen_entry *seen, uint64_t seq,
    const uint8_t prev[32], uint64_t wall, forged *out)
{
    memset(out, 0, sizeof(*out));
    proto_buf enc = { NULL, 0 };
    proto_err err = proto_scope_encode(delta, &enc);
    if (err != PROTO_OK)
        return err;
    proto_body plain;
    memset(&plain, 0, sizeof(plain));
    plain.kind = PROTO_BODY_DELTA;
    if (vv_of != NULL) {
        const crdt_cc *cc = crdt_scope_cc(vv_of);
        plain.vv = cc->vv;
        plain.nvv = cc->nvv;
    }
    if (seen != NULL && seen->n != 0) {
        plain.access_seen = seen->n;
        memcpy(plain.access_origin, seen->origin, 32);
        plain.access_at = seen->at;
    }
    plain.delta.p = enc.p;
    plain.delta.len = enc.len;
    err = forge_body(author, key, &plain, seq, prev, wall, out);
    proto_buf_free(&enc);
    return err;
}

/* A delta sealed by `author` under `key`, made on `s` (changed in place: the author's state
 * after the write; the delta's causal past is s's version vector before it) stating the
 * entry seen, at (seq, prev) with HLC wall: field=value on a register, or (value NULL)
 * field += amount on a counter (under the author's counter origin for the field), or (field
 * NULL) no change at all. */
static proto_err forge_delta_on(const proto_identity *author, const proto_scope_key *key,
    crdt_scope *s, const seen_entry *seen, const char *field, const char *value, int64_t amount,
    uint64_t seq, const uint8_t prev[32], uint64_t wall, forged *out)
{
    memset(out, 0, sizeof(*out));
    crdt_scope *before = NULL, *delta = NULL;
    proto_err err = PROTO_ENOMEM;
    if (crdt_scope_clone(s, &before) != CRDT_OK || crdt_scope_new(NULL, &delta) != CRDT_OK)
        goto out;
    crdt_hlc hlc = { wall, 0 };
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(author);
    crdt_err cerr = CRDT_OK;
    if (field != NULL && value != NULL) {
        cerr = crdt_register_set(s, delta, me, &hlc, field, value, strlen(value));
    } else if (field != NULL) {
        crdt_origin co;
        proto_counter_origin(me->b, field, strlen(field), co.b);
        cerr = crdt_counter_add(s, delta, &co, field, amount);
    }
    if (cerr != CRDT_OK) {
        err = PROTO_EVALUE;
        goto out;
    }
    err = forge_delta_of(author, key, before, delta, seen, seq, prev, wall, out);
out:
    crdt_scope_free(before);
    crdt_scope_free(delta);
    return err;
}

/* forge_delta_on a copy of `state` (NULL: an empty scope), which stays as it is. */
static proto_err forge_delta(const proto_identity *author, const proto_scope_key *key,
    const crdt_scope *state, const seen_entry *seen, const char *field, const char *value,
    int64_t amount, uint64_t seq, const uint8_t prev[32], uint64_t wall, forged *out)
{
    memset(out, 0, sizeof(*out));
    crdt_scope *s = NULL;
    if (state != NULL ? crdt_scope_clone(state, &s) != CRDT_OK
                      : crdt_scope_new(NULL, &s) != CRDT_OK)
        return PROTO_ENOMEM;
    proto_err err
        = forge_delta_on(author, key, s, seen, field, value, amount, seq, prev, wall, out);
    crdt_scope_free(s);
    return err;
}

/* A delta header of `author` on a random case nobody else knows (an empty delta). */
static proto_err forge_header(
    const proto_identity *author, uint64_t seq, const uint8_t prev[32], uint64_t wall, forged *out)
{
    proto_case_id c;
    proto_case_nonce nonce;
    proto_scope_key *key = NULL;
    proto_err err = proto_case_id_new("nobody", 6, NULL, &c, &nonce);
    if (err == PROTO_OK)
        err = proto_scope_key_new(&c, "lingua", PROTO_EPOCH_FIRST, NULL, &key);
    if (err == PROTO_OK)
        err = forge_delta(author, key, NULL, 0, NULL, NULL, 0, seq, prev, wall, out);
    proto_scope_key_free(key);
    return err;
}

/* A header of `author` at seq after prev whose signature does not verify (one bit of it
 * flipped, after signing): its id is the hash of those bytes, as any header's. */
static void forge_badly_signed(
    const proto_identity *author, uint64_t seq, const uint8_t prev[32], forged *out)
{
    assert_int_equal(forge_header(author, seq, prev, now_ms(), out), PROTO_OK);
    proto_header h;
    assert_int_equal(proto_header_decode(out->header.p, out->header.len, NULL, &h, NULL), PROTO_OK);
    uint8_t sig[PROTO_SIG_LEN];
    memcpy(sig, h.sig, sizeof(sig));
    proto_header_fini(&h);
    size_t at = out->header.len;
    for (size_t i = 0; at == out->header.len && i + sizeof(sig) <= out->header.len; i++)
        if (memcmp(out->header.p + i, sig, sizeof(sig)) == 0)
            at = i;
    assert_true(at < out->header.len);
    out->header.p[at + 10] ^= 0x01;
    assert_int_equal(proto_header_decode(out->header.p, out->header.len, NULL, &h, NULL), PROTO_OK);
    assert_int_not_equal(proto_header_verify(&h), PROTO_OK);
    memcpy(out->id, h.id, 32);
    proto_header_fini(&h);
}

static proto_buf headers_msg(const proto_buf *const *h, size_t n)
{
    proto_bytes items[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        items[i].p = h[i]->p;
        items[i].len = h[i]->len;
    }
    proto_headers_msg m = { .headers = items, .n = n };
    proto_buf out = { NULL, 0 };
    assert_int_equal(proto_headers_encode(&m, &out), PROTO_OK);
    return out;
}

/* One BODIES message holding the bodies of f[0..n). */
static proto_buf bodies_msg_n(const forged *f, size_t n)
{
    proto_body_item it[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        memcpy(it[i].header_id, f[i].id, 32);
        it[i].body.p = f[i].body.p;
        it[i].body.len = f[i].body.len;
    }
    proto_bodies_msg m = { it, n, NULL };
    proto_buf out = { NULL, 0 };
    assert_int_equal(proto_bodies_encode(&m, &out), PROTO_OK);
    return out;
}

static proto_buf bodies_msg(const forged *f)
{
    return bodies_msg_n(f, 1);
}

static proto_buf empty_vv_msg(void)
{
    proto_vv_msg m = { .entries = NULL };
    proto_buf out = { NULL, 0 };
    assert_int_equal(proto_vv_encode(&m, &out), PROTO_OK);
    return out;
}

/* Send in the session and fail the test if the send fails. */
static void send_msg(th_net *net, fp_peer *p, const proto_buf *m)
{
    fp_result r = fp_send(p, m->p, m->len);
    CHECK(net, r == FP_OK, "fake peer send: %s", fp_error(p));
}

/* Everything sent on this session before now has been handled by the node: the node answers
 * a VV claiming nothing with the HEADERS the peer lacks, in order after earlier messages
 * (the node must hold at least one header). */
static void barrier_get(th_net *net, fp_peer *p, proto_buf *headers)
{
    proto_buf vv = empty_vv_msg();
    send_msg(net, p, &vv);
    proto_buf_free(&vv);
    proto_buf m;
    fp_result r = fp_recv_kind(p, PROTO_K_HEADERS, 10000, &m);
    CHECK(net, r == FP_OK, "no HEADERS answered an empty VV: %s", fp_error(p));
    if (headers != NULL)
        *headers = m;
    else
        proto_buf_free(&m);
}

static void barrier(th_net *net, fp_peer *p)
{
    barrier_get(net, p, NULL);
}

/* Connect to node `to` as member `as` (identity given) and finish the handshake. */
static fp_peer *connect_as(th_net *net, size_t to, const proto_identity *me)
{
    char url[64];
    node_url(net, to, url);
    uint8_t peer[32];
    node_origin(net, to, peer);
    fp_peer *p = NULL;
    fp_result dr = fp_dial(url, FP_RECV_MAX, &p);
    CHECK(net, dr == FP_OK, "cannot dial %s", url);
    proto_err perr = PROTO_OK;
    fp_result r = fp_handshake(p, me, peer, 10000, &perr);
    if (r != FP_OK) {
        char why[300];
        snprintf(why, sizeof(why), "%s", fp_error(p));
        fp_close(p);
        CHECK(net, false, "handshake with %s failed: %s", net->nodes[to].org, why);
    }
    /* The node sends its manifest first once the session is up. */
    proto_buf m;
    r = fp_recv_kind(p, PROTO_K_MANIFEST, 10000, &m);
    proto_buf_free(&m);
    CHECK(net, r == FP_OK, "no manifest after the handshake: %s", fp_error(p));
    return p;
}

/* The length a message over [sync] max_message_bytes announces (with pair1's 4-byte header,
 * whichever way the limit counts it). */
#define OVERSIZED ((uint64_t)PROTO_MAX_MESSAGE_DEFAULT + 5u)

/* ---------------------------------------------------------------------------------------- */
/* 1. Strangers                                                                              */

/* A stranger learns nothing about membership: every HELLO gets the same kind of answer, the
 * node's own signed HELLO_REPLY, whichever origin it names; a stranger that then proves its own
 * key is refused without a word, and a stranger that names a member's origin cannot prove it. */
static void stranger_gets_nothing(void **state)
{
    th_net *net = *state;
    char url[64];
    node_url(net, COMUNE, url);
    uint8_t comune[32], cpia[32];
    node_origin(net, COMUNE, comune);
    node_origin(net, CPIA, cpia);
    /* Some data at the comune, so that there would be something to leak. */
    char id[64];
    new_case(net, id, "lingua.livello=A1");

    proto_identity *stranger = NULL;
    assert_int_equal(proto_identity_new(NULL, &stranger), PROTO_OK);
    size_t rejects = count3(net, COMUNE, "event=peer.reject", "not a member", NULL);

    /* The full handshake as a stranger: a reply comes (as to anyone), then, once the stranger
     * has proven its key, the pipe is closed and nothing else arrives. */
    fp_peer *p = NULL;
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    proto_err perr = PROTO_OK;
    fp_result r = fp_handshake(p, stranger, comune, 5000, &perr);
    CHECK(net, r == FP_OK, "no HELLO_REPLY to a stranger's HELLO (%d: %s)", (int)r, fp_error(p));
    CHECK(net, fp_wait_closed(p, 8000), "the comune kept a stranger's pipe open");
    proto_buf m;
    r = fp_recv_raw(p, 300, &m);
    CHECK(net, r != FP_OK && fp_received(p) == 1,
        "the stranger received %zu messages (the reply, then more)", fp_received(p));
    CHECK(net, wait_log(net, COMUNE, rejects, 5000, "event=peer.reject", "not a member", NULL),
        "the comune did not log peer.reject for the stranger");
    CHECK(net, count3(net, COMUNE, "event=peer.up", "dialled=no", "org=?") == 0,
        "a stranger's session came up");
    fp_close(p);

    /* A HELLO naming a member's origin and one naming a stranger's get the same answer: a
     * HELLO_REPLY of the same size from the comune's own key. */
    size_t sizes[2] = { 0, 0 };
    const uint8_t *named[2] = { proto_identity_origin(stranger), cpia };
    for (int k = 0; k < 2; k++) {
        proto_handshake *hs = NULL;
        proto_buf hello = { NULL, 0 };
        assert_int_equal(proto_hs_initiate(stranger, comune, NULL, &hs, &hello), PROTO_OK);
        proto_handshake_free(hs);
        if (k == 1)
            assert_int_equal(
                replace32(hello.p, hello.len, proto_identity_origin(stranger), cpia), 1);
        CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
        CHECK(net, fp_send_raw(p, hello.p, hello.len) == FP_OK, "HELLO: %s", fp_error(p));
        proto_buf_free(&hello);
        unsigned kind = 0;
        CHECK(net,
            fp_recv_raw(p, 5000, &m) == FP_OK
                && proto_peek(m.p, m.len, NULL, &kind, NULL) == PROTO_OK
                && kind == PROTO_K_HELLO_REPLY,
            "no HELLO_REPLY to a HELLO naming %s", k == 0 ? "a stranger" : "a member");
        sizes[k] = m.len;
        proto_buf_free(&m);
        fp_close(p);
        (void)named[k];
    }
    CHECK(net, sizes[0] == sizes[1], "the replies differ in size (%zu, %zu)", sizes[0], sizes[1]);

    /* An impersonator names cpia-1's origin in HELLO: the reply is public (the comune's own
     * origin and signature), but without cpia-1's key HELLO_FINISH cannot be signed. */
    proto_handshake *hs = NULL;
    proto_buf hello = { NULL, 0 };
    assert_int_equal(proto_hs_initiate(stranger, comune, NULL, &hs, &hello), PROTO_OK);
    proto_handshake_free(hs);
    assert_int_equal(replace32(hello.p, hello.len, proto_identity_origin(stranger), cpia), 1);
    size_t bad_finish = count3(net, COMUNE, "event=peer.reject", "stage=hello-finish", "signature");
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    CHECK(net, fp_send_raw(p, hello.p, hello.len) == FP_OK, "HELLO: %s", fp_error(p));
    proto_buf_free(&hello);
    r = fp_recv_raw(p, 5000, &m);
    unsigned kind = 0;
    CHECK(net,
        r == FP_OK && proto_peek(m.p, m.len, NULL, &kind, NULL) == PROTO_OK
            && kind == PROTO_K_HELLO_REPLY,
        "no HELLO_REPLY to a member's HELLO: %s", fp_error(p));
    proto_buf_free(&m);
    uint8_t finish[5 + 64] = { 0x93, PROTO_VERSION, 0x0c, 0xc4, 0x40 };
    for (size_t i = 5; i < sizeof(finish); i++)
        finish[i] = (uint8_t)(i * 37u + 11u);
    CHECK(net, fp_send_raw(p, finish, sizeof(finish)) == FP_OK, "FINISH: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 8000), "the comune kept the impersonator's pipe open");
    CHECK(net, fp_recv_raw(p, 300, &m) == FP_TIMEOUT && fp_received(p) == 1,
        "the impersonator received %zu messages", fp_received(p));
    CHECK(net,
        wait_log(
            net, COMUNE, bad_finish, 5000, "event=peer.reject", "stage=hello-finish", "signature"),
        "the comune did not log the bad HELLO_FINISH");
    fp_close(p);
    proto_identity_free(stranger);
    still_serving(net, true);
}

/* Before its handshake a connection may hold only a handshake-sized message: a stranger that
 * announces a large one is dropped before anything is allocated. Connections waiting for their
 * handshake are bounded too: at most 16 from one address. */
static void waiting_connections_are_bounded(void **state)
{
    th_net *net = *state;
    char url[64];
    node_url(net, COMUNE, url);
    size_t big = count3(net, COMUNE, "before its handshake", NULL, NULL);
    fp_peer *p = NULL;
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    uint8_t some[16] = { 0 };
    CHECK(
        net, fp_send_announced(p, 1u << 20, some, sizeof(some)) == FP_OK, "send: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 5000), "a 1 MiB message before the handshake kept its pipe open");
    CHECK(net, fp_closed_after_ms(p) < 900, "it was dropped only at the handshake deadline");
    CHECK(net, wait_log(net, COMUNE, big, 5000, "before its handshake", NULL, NULL),
        "the comune did not say why it dropped the connection");
    fp_close(p);

    /* The members' own links come up from this address too: wait until each pair has its two
     * links, so that only this test's connections wait for their handshake. */
    CHECK(net, th_wait(net, 10000, member_links_up, NULL), "the members' links did not come up");
    enum { OPEN = 24 };
    fp_peer *q[OPEN] = { NULL };
    uint64_t t0 = now_ms();
    size_t closed = 0;
    /* A connection beyond the bound may be closed before its SP header is even answered: it
     * then fails to dial, and counts as closed. */
    for (int k = 0; k < OPEN; k++)
        closed += fp_dial(url, FP_RECV_MAX, &q[k]) != FP_OK;
    /* Those beyond the bound are closed at once, long before the handshake deadline (5 s);
     * which ones depends on the order the node sees them, so count. */
    for (int k = 0; k < OPEN; k++)
        closed += q[k] != NULL && fp_wait_closed(q[k], 100);
    uint64_t took = now_ms() - t0;
    CHECK(net, closed == OPEN - 16 && took < 4000,
        "%zu of %d connections waiting for their handshake from one address were closed within "
        "%llu ms (%d expected: at most 16 may wait)",
        closed, OPEN, (unsigned long long)took, OPEN - 16);
    for (int k = 0; k < OPEN; k++)
        fp_close(q[k]);
    still_serving(net, true);
}

/* A stranger that dials again and again: one warn line for its address and cause, the rest
 * held back to debug level (the log of a node under a redialling stranger stays readable). */
static void stranger_redialling_is_logged_once(void **state)
{
    th_net *net = *state;
    char url[64];
    node_url(net, COMUNE, url);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    proto_identity *stranger = NULL;
    assert_int_equal(proto_identity_new(NULL, &stranger), PROTO_OK);
    const char *reason = "reason=\"peer is not a member of the current manifest\"";
    size_t warn = count3(net, COMUNE, "level=warn event=peer.reject", reason, "addr=127.0.0.1:");
    size_t all = count3(net, COMUNE, "event=peer.reject", reason, "addr=127.0.0.1:");
    enum { TRIES = 12 };
    for (int k = 0; k < TRIES; k++) {
        fp_peer *p = NULL;
        CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
        CHECK(net, fp_handshake(p, stranger, comune, 5000, NULL) == FP_OK, "handshake: %s",
            fp_error(p));
        CHECK(net, fp_wait_closed(p, 8000), "the comune kept a stranger's pipe open");
        fp_close(p);
    }
    CHECK(net,
        wait_log(
            net, COMUNE, all + TRIES - 1, 5000, "event=peer.reject", reason, "addr=127.0.0.1:"),
        "the comune did not refuse the stranger %d times", TRIES);
    size_t warned = count3(net, COMUNE, "level=warn event=peer.reject", reason, "addr=127.0.0.1:");
    CHECK(net, warned == warn + 1, "%zu warn lines for %d refusals of one stranger", warned - warn,
        TRIES);
    proto_identity_free(stranger);
    still_serving(net, true);
}

/* A node without a manifest refuses every peer, and says why as what it is. */
static void no_manifest_says_so(void **state)
{
    th_net *net = *state;
    CHECK(net, th_start(net, COMUNE) == 0, "the comune did not start");
    char url[64];
    node_url(net, COMUNE, url);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    proto_identity *cpia = member_identity(net, CPIA);
    fp_peer *p = NULL;
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    CHECK(net, fp_handshake(p, cpia, comune, 5000, NULL) == FP_OK, "handshake: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 8000), "the comune kept the pipe open");
    CHECK(net, fp_received(p) == 1, "the comune sent more than its HELLO_REPLY without a manifest");
    fp_close(p);
    CHECK(net,
        wait_log(net, COMUNE, 0, 5000, "level=warn event=peer.reject",
            "this node has no manifest yet", "patto manifest import"),
        "the comune did not say it has no manifest");
    CHECK(net, count3(net, COMUNE, "not a member of the current manifest", NULL, NULL) == 0,
        "the comune blamed the peer for its own missing manifest");
    proto_identity_free(cpia);
}

static int setup_no_manifest(void **state)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    int rc = th_net_make(net, 3, orgs);
    if (rc != 0)
        net->keep = true;
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* 2. The first message must be HELLO, within handshake_timeout_ms                           */

static void handshake_or_nothing(void **state)
{
    th_net *net = *state;
    char url[64];
    node_url(net, COMUNE, url);
    char id[64];
    new_case(net, id, "lingua.livello=A1");

    /* Garbage first. */
    size_t before = count3(net, COMUNE, "event=peer.reject", "stage=hello", NULL);
    fp_peer *p = NULL;
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    uint8_t junk[200];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131u + 7u);
    CHECK(net, fp_send_raw(p, junk, sizeof(junk)) == FP_OK, "send: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 5000), "garbage first did not close the pipe");
    long ms = fp_closed_after_ms(p);
    CHECK(net, ms < 900, "garbage first was dropped only after %ld ms (the deadline?)", ms);
    CHECK(net, fp_received(p) == 0, "garbage got %zu answers", fp_received(p));
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=peer.reject", "stage=hello", NULL),
        "no peer.reject logged for garbage");
    fp_close(p);

    /* A well-formed message of another kind first: a VV. */
    before = count3(net, COMUNE, "event=peer.reject", "stage=hello", NULL);
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    proto_buf vv = empty_vv_msg();
    CHECK(net, fp_send_raw(p, vv.p, vv.len) == FP_OK, "send: %s", fp_error(p));
    proto_buf_free(&vv);
    CHECK(net, fp_wait_closed(p, 5000), "a VV first did not close the pipe");
    CHECK(net, fp_closed_after_ms(p) < 900, "a VV first was dropped only at the deadline");
    CHECK(net, fp_received(p) == 0, "a VV first got %zu answers", fp_received(p));
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=peer.reject", "stage=hello", NULL),
        "no peer.reject logged for a VV first");
    fp_close(p);

    /* A member's validly signed header, in plaintext HEADERS without a session: not taken. */
    proto_identity *cpia = member_identity(net, CPIA);
    forged f;
    uint8_t zero[32] = { 0 };
    assert_int_equal(forge_header(cpia, 1, zero, now_ms(), &f), PROTO_OK);
    const proto_buf *one[] = { &f.header };
    proto_buf hm = headers_msg(one, 1);
    before = count3(net, COMUNE, "event=peer.reject", "stage=hello", NULL);
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    CHECK(net, fp_send_raw(p, hm.p, hm.len) == FP_OK, "send: %s", fp_error(p));
    proto_buf_free(&hm);
    CHECK(net, fp_wait_closed(p, 5000), "plaintext HEADERS first did not close the pipe");
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=peer.reject", "stage=hello", NULL),
        "no peer.reject logged for plaintext HEADERS");
    CHECK(net, vv_of(net, COMUNE, CPIA) == 0, "the comune stored a header sent before HELLO");
    fp_close(p);
    forged_free(&f);
    proto_identity_free(cpia);

    /* Nothing at all: closed at the deadline, not before. */
    before = count3(net, COMUNE, "event=peer.drop", "handshake not completed in time", NULL);
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    CHECK(net, fp_wait_closed(p, 8000), "a silent pipe was never closed");
    ms = fp_closed_after_ms(p);
    CHECK(
        net, ms >= 800 && ms <= 4000, "a silent pipe was closed after %ld ms (deadline 1000)", ms);
    CHECK(net,
        wait_log(
            net, COMUNE, before, 5000, "event=peer.drop", "handshake not completed in time", NULL),
        "the comune did not log the handshake deadline");
    fp_close(p);

    /* HELLO from a member, then silence: the half-done handshake hits the same deadline. */
    proto_identity *pref = member_identity(net, PREF);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    before = count3(net, COMUNE, "event=peer.drop", "handshake not completed in time", NULL);
    CHECK(net, fp_dial(url, FP_RECV_MAX, &p) == FP_OK, "cannot dial the comune");
    CHECK(net, fp_send_hello(p, pref, comune) == FP_OK, "HELLO: %s", fp_error(p));
    proto_buf m;
    CHECK(net, fp_recv_raw(p, 5000, &m) == FP_OK, "no HELLO_REPLY to a member");
    proto_buf_free(&m);
    CHECK(net, fp_wait_closed(p, 8000), "a handshake left half done was never closed");
    ms = fp_closed_after_ms(p);
    CHECK(net, ms >= 800 && ms <= 4000, "a half handshake was closed after %ld ms", ms);
    CHECK(net,
        wait_log(
            net, COMUNE, before, 5000, "event=peer.drop", "handshake not completed in time", NULL),
        "the comune did not log the handshake deadline");
    fp_close(p);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* A member's HELLO sent the moment the connection is up must be answered: the node may read
 * the first message of a connection on an nng thread before its loop has handled the
 * connection's arrival. */
static void hello_at_once_is_answered(void **state)
{
    th_net *net = *state;
    char url[64];
    node_url(net, COMUNE, url);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    proto_identity *pref = member_identity(net, PREF);
    enum { TRIES = 300 };
    int lost = 0, first_lost = -1;
    for (int i = 0; i < TRIES && lost == 0; i++) {
        proto_handshake *hs = NULL;
        proto_buf hello = { NULL, 0 };
        assert_int_equal(proto_hs_initiate(pref, comune, NULL, &hs, &hello), PROTO_OK);
        proto_handshake_free(hs);
        fp_peer *p = NULL;
        fp_result dr = fp_dial_send(url, FP_RECV_MAX, hello.p, hello.len, &p);
        proto_buf_free(&hello);
        CHECK(net, dr == FP_OK, "cannot dial the comune and send HELLO");
        proto_buf m;
        fp_result r = fp_recv_raw(p, 3000, &m);
        proto_buf_free(&m);
        if (r != FP_OK) {
            lost++;
            if (first_lost < 0)
                first_lost = i;
        }
        fp_close(p);
    }
    proto_identity_free(pref);
    CHECK(net, lost == 0,
        "the HELLO of connection %d of %d, sent right after connecting, got no HELLO_REPLY "
        "within 3 s: the node dropped it without a log line and closed the pipe at the "
        "handshake deadline",
        first_lost + 1, TRIES);
    still_serving(net, true);
}

/* ---------------------------------------------------------------------------------------- */
/* 3. Oversized messages and bad session frames                                              */

static void bad_frames(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    /* Speak as the Prefettura while it is stopped, so every log line about prefettura-1 is
     * about the fake peer. */
    stop_node(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    uint8_t some[64] = { 0 };

    /* Oversized before the handshake: a length prefix over [sync] max_message_bytes
     * drops the pipe at once, without waiting for the bytes; so does one announcing 1 TiB,
     * which a node without the limit would try to allocate. */
    static const uint64_t announced[] = { OVERSIZED, (uint64_t)1 << 40 };
    fp_peer *p = NULL;
    for (size_t i = 0; i < sizeof(announced) / sizeof(announced[0]); i++) {
        CHECK(net, fp_dial_tcp(net->nodes[COMUNE].port, FP_RECV_MAX, &p) == FP_OK,
            "cannot connect to the comune");
        CHECK(net, fp_send_announced(p, announced[i], some, sizeof(some)) == FP_OK, "send: %s",
            fp_error(p));
        CHECK(net, fp_wait_closed(p, 5000), "announcing %llu bytes did not close the pipe",
            (unsigned long long)announced[i]);
        CHECK(net, fp_closed_after_ms(p) < 900, "the oversized message was not dropped at once");
        CHECK(net, fp_received(p) == 0, "the oversized message got an answer");
        fp_close(p);
    }

    /* Oversized inside a session. */
    size_t downs = count3(net, COMUNE, "event=peer.down", "org=prefettura-1", NULL);
    p = connect_as(net, COMUNE, pref);
    CHECK(
        net, fp_send_announced(p, OVERSIZED, some, sizeof(some)) == FP_OK, "send: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 5000), "an oversized frame did not close the session");
    CHECK(net, wait_log(net, COMUNE, downs, 5000, "event=peer.down", "org=prefettura-1", NULL),
        "the comune did not log the session going down");
    fp_close(p);

    proto_buf vv = empty_vv_msg();
    proto_buf frame = { NULL, 0 };

    /* Truncated frame. */
    size_t rej = count3(net, COMUNE, "event=peer.reject", "stage=session", "truncated");
    p = connect_as(net, COMUNE, pref);
    CHECK(net, fp_seal(p, vv.p, vv.len, &frame) == FP_OK, "seal: %s", fp_error(p));
    CHECK(net, fp_send_raw(p, frame.p, frame.len - 1) == FP_OK, "send: %s", fp_error(p));
    proto_buf_free(&frame);
    CHECK(net, fp_wait_closed(p, 5000), "a truncated frame did not close the session");
    CHECK(net, wait_log(net, COMUNE, rej, 5000, "event=peer.reject", "stage=session", "truncated"),
        "no peer.reject logged for a truncated frame");
    CHECK(net, fp_kind_count(p, PROTO_K_HEADERS) == 0, "headers answered a truncated frame");
    fp_close(p);

    /* Bit-flipped frame (one bit of the authentication tag). */
    rej = count3(net, COMUNE, "event=peer.reject", "stage=session", "authenticated decryption");
    p = connect_as(net, COMUNE, pref);
    CHECK(net, fp_seal(p, vv.p, vv.len, &frame) == FP_OK, "seal: %s", fp_error(p));
    frame.p[frame.len - 1] ^= 0x10;
    CHECK(net, fp_send_raw(p, frame.p, frame.len) == FP_OK, "send: %s", fp_error(p));
    proto_buf_free(&frame);
    CHECK(net, fp_wait_closed(p, 5000), "a bit-flipped frame did not close the session");
    CHECK(net,
        wait_log(net, COMUNE, rej, 5000, "event=peer.reject", "stage=session",
            "authenticated decryption"),
        "no peer.reject logged for a bit-flipped frame");
    CHECK(net, fp_kind_count(p, PROTO_K_HEADERS) == 0, "headers answered a bit-flipped frame");
    fp_close(p);

    /* Replayed frame: the first copy is answered, the second closes the session. */
    rej = count3(net, COMUNE, "event=peer.reject", "stage=session", "replayed");
    p = connect_as(net, COMUNE, pref);
    CHECK(net, fp_seal(p, vv.p, vv.len, &frame) == FP_OK, "seal: %s", fp_error(p));
    CHECK(net, fp_send_raw(p, frame.p, frame.len) == FP_OK, "send: %s", fp_error(p));
    proto_buf m;
    CHECK(net, fp_recv_kind(p, PROTO_K_HEADERS, 10000, &m) == FP_OK,
        "the original frame was not answered: %s", fp_error(p));
    proto_buf_free(&m);
    CHECK(net, fp_send_raw(p, frame.p, frame.len) == FP_OK, "send: %s", fp_error(p));
    proto_buf_free(&frame);
    CHECK(net, fp_wait_closed(p, 5000), "a replayed frame did not close the session");
    CHECK(net, wait_log(net, COMUNE, rej, 5000, "event=peer.reject", "stage=session", "replayed"),
        "no peer.reject logged for a replayed frame");
    fp_close(p);

    /* Well-sealed frames holding garbage, or a kind that has no place in a session: refused
     * and logged, and the session stays up. */
    rej = count3(net, COMUNE, "event=peer.reject", "org=prefettura-1", NULL);
    p = connect_as(net, COMUNE, pref);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(0xc1 ^ i); /* 0xc1 is never valid msgpack */
    CHECK(net, fp_send(p, junk, sizeof(junk)) == FP_OK, "send: %s", fp_error(p));
    uint8_t hello_in_session[] = { 0x92, 0x01, 0x0a };
    CHECK(net, fp_send(p, hello_in_session, sizeof(hello_in_session)) == FP_OK, "send: %s",
        fp_error(p));
    proto_ctl_request ctl = { 1, { (const uint8_t *)"status", 6 }, NULL, 0, NULL };
    proto_buf cm = { NULL, 0 };
    assert_int_equal(proto_ctl_request_encode(&ctl, &cm), PROTO_OK);
    send_msg(net, p, &cm);
    proto_buf_free(&cm);
    barrier(net, p);
    CHECK(net, fp_closed_count(p) == 0, "a bad message inside a session closed it");
    CHECK(net, wait_log(net, COMUNE, rej + 2, 5000, "event=peer.reject", "org=prefettura-1", NULL),
        "the comune logged %zu of 3 refused messages",
        count3(net, COMUNE, "event=peer.reject", "org=prefettura-1", NULL) - rej);
    CHECK(net, count3(net, COMUNE, "unexpected message kind control-request", NULL, NULL) == 1,
        "a control request from a peer was not refused as such");
    CHECK(net, fp_kind_count(p, PROTO_K_CTL_RESPONSE) == 0, "a peer got a control response");
    fp_close(p);
    proto_buf_free(&vv);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* An oversized message from a pipe that has not finished the handshake is refused by the
 * node's reader before anything is allocated; issue 8 asks that it also be logged: the drop of
 * a pipe that never completed the handshake is. */
static void oversized_is_logged(void **state)
{
    th_net *net = *state;
    uint8_t some[64] = { 0 };
    /* Counted by what the line says (the reason, from a pipe that named no member), not by
     * all lines about unknown pipes: the members' own links may come and go meanwhile. */
    char oversized[64];
    snprintf(oversized, sizeof(oversized), "announced a %llu-byte message",
        (unsigned long long)OVERSIZED - 4);
    size_t before = count3(net, COMUNE, "event=peer.", "org=unknown", oversized);
    fp_peer *p = NULL;
    CHECK(net, fp_dial_tcp(net->nodes[COMUNE].port, FP_RECV_MAX, &p) == FP_OK,
        "cannot connect to the comune");
    CHECK(
        net, fp_send_announced(p, OVERSIZED, some, sizeof(some)) == FP_OK, "send: %s", fp_error(p));
    CHECK(net, fp_wait_closed(p, 5000), "an oversized message did not close the pipe");
    fp_close(p);
    CHECK(net, wait_log(net, COMUNE, before, 3000, "event=peer.", "org=unknown", oversized),
        "the comune dropped a pipe that announced a message over [sync] max_message_bytes (16 MiB "
        "+ 5 bytes, before the handshake) without logging it (%zu lines about unknown pipes)",
        log_count_unknown_peers(net, COMUNE));
    still_serving(net, true);
}

/* A session ended by the peer's oversized frame while the node is sending on it: each time,
 * the node logs the session going down. (nng 1.5.2 never completes a send started on a
 * stream another thread has just closed; the node aborts such a send. Before it did, the
 * connection stayed half-dead without a peer.down, seen once in CI under ASan.) Each round
 * asks for everything the comune holds and at once sends the oversized frame, so that the
 * frame is read while the node is queueing its answer. */
static void session_ends_while_node_sends(void **state)
{
    th_net *net = *state;
    enum { CASES = 20, ROUNDS = 30 };
    for (int i = 0; i < CASES; i++) {
        char id[64];
        new_case(net, id, "lingua.livello=A2");
    }
    stop_node(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    proto_buf vv = empty_vv_msg();
    uint8_t some[64] = { 0 };
    for (int round = 0; round < ROUNDS; round++) {
        size_t downs = count3(net, COMUNE, "event=peer.down", "org=prefettura-1", NULL);
        fp_peer *p = connect_as(net, COMUNE, pref);
        send_msg(net, p, &vv);
        CHECK(net, fp_send_announced(p, OVERSIZED, some, sizeof(some)) == FP_OK, "send: %s",
            fp_error(p));
        CHECK(net, fp_wait_closed(p, 5000),
            "round %d: an oversized frame did not close the session", round);
        fp_close(p);
        CHECK(net, wait_log(net, COMUNE, downs, 5000, "event=peer.down", "org=prefettura-1", NULL),
            "round %d of %d: the comune closed the session without logging it going down",
            round + 1, ROUNDS);
    }
    proto_buf_free(&vv);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* ---------------------------------------------------------------------------------------- */
/* 4. Forged and replayed headers                                                            */

/* PROTOCOL.md section 9: a header is authentic when its signature verifies or when the next
 * header of its origin is authentic and names its id. A node that checks one signature per run
 * of chained headers (the default) and one that checks every header ([sync]
 * verify_each_signature = 1: the second setup) take exactly the same headers: a bad signature
 * under a good one is taken, a bad one on top of a run is not (until a good one comes to vouch
 * for it, in its message or held out of order). */
static void runs_of_headers_same_verdict(void **state)
{
    th_net *net = *state;
    stop_node(net, CPIA);
    proto_identity *cpia = member_identity(net, CPIA);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    CHECK(net, vv_of(net, COMUNE, CPIA) == 0, "cpia-1 has a log before the test");
    uint8_t zero[32] = { 0 };
    forged h[9];
    memset(h, 0, sizeof(h));

    /* 1 badly signed, 2 good above it: both taken. */
    forge_badly_signed(cpia, 1, zero, &h[1]);
    assert_int_equal(forge_header(cpia, 2, h[1].id, now_ms(), &h[2]), PROTO_OK);
    const proto_buf *m1[] = { &h[1].header, &h[2].header };
    proto_buf hm = headers_msg(m1, 2);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    vv_want w = { COMUNE, CPIA, 2 };
    CHECK(net, th_wait(net, 5000, vv_is, &w),
        "a badly signed header under a good one was not taken (vv %lld, want 2)",
        (long long)vv_of(net, COMUNE, CPIA));

    /* 3 good, 4 and 5 badly signed on top: 3 taken, 4 and 5 refused. */
    assert_int_equal(forge_header(cpia, 3, h[2].id, now_ms(), &h[3]), PROTO_OK);
    forge_badly_signed(cpia, 4, h[3].id, &h[4]);
    forge_badly_signed(cpia, 5, h[4].id, &h[5]);
    size_t before = count3(net, COMUNE, "event=header.reject", "bad signature", NULL);
    const proto_buf *m2[] = { &h[3].header, &h[4].header, &h[5].header };
    hm = headers_msg(m2, 3);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=header.reject", "bad signature", NULL),
        "no header.reject for badly signed headers on top of a run");
    w.value = 3;
    CHECK(net, th_wait(net, 5000, vv_is, &w), "header 3 was not taken (vv %lld)",
        (long long)vv_of(net, COMUNE, CPIA));
    CHECK(net, vv_of(net, COMUNE, CPIA) == 3, "a badly signed header on top was taken");

    /* 4 and 5 again, with a good 6 above them: all three taken. */
    assert_int_equal(forge_header(cpia, 6, h[5].id, now_ms(), &h[6]), PROTO_OK);
    const proto_buf *m3[] = { &h[4].header, &h[5].header, &h[6].header };
    hm = headers_msg(m3, 3);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    w.value = 6;
    CHECK(net, th_wait(net, 5000, vv_is, &w),
        "badly signed headers under a good one were not taken (vv %lld, want 6)",
        (long long)vv_of(net, COMUNE, CPIA));

    /* 7 badly signed alone: refused; 8 good alone: held out of order; 7 again: taken, vouched
     * for by the held 8, and 8 with it. */
    forge_badly_signed(cpia, 7, h[6].id, &h[7]);
    assert_int_equal(forge_header(cpia, 8, h[7].id, now_ms(), &h[8]), PROTO_OK);
    before = count3(net, COMUNE, "event=header.reject", "bad signature", NULL);
    const proto_buf *m4[] = { &h[7].header };
    hm = headers_msg(m4, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=header.reject", "bad signature", NULL),
        "no header.reject for a badly signed header alone");
    const proto_buf *m5[] = { &h[8].header };
    hm = headers_msg(m5, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    num_want held = { COMUNE, "waiting/headers", 1 };
    CHECK(net, th_wait(net, 5000, num_is, &held), "header 8 was not held out of order");
    hm = headers_msg(m4, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    w.value = 8;
    CHECK(net, th_wait(net, 5000, vv_is, &w),
        "a badly signed header vouched for by a held one was not taken (vv %lld, want 8)",
        (long long)vv_of(net, COMUNE, CPIA));
    CHECK(net, !quarantined(net, COMUNE, "cpia-1"), "cpia-1 was taken for an equivocation");
    CHECK(net, fp_closed_count(p) == 0, "the session was closed");
    fp_close(p);
    for (size_t i = 0; i < 9; i++)
        forged_free(&h[i]);
    proto_identity_free(cpia);
}

static int setup_verify_each(void **state)
{
    return setup_with(state, "\n[sync]\nverify_each_signature = 1\n");
}

/* A member whose session goes silent (a half-open connection after a partition looks the
 * same: no error, nothing arriving) is pinged and then dropped, while the comune's healthy
 * but idle links to the real nodes, pinged the same way, stay up. */
static void silent_peer_is_dropped(void **state)
{
    th_net *net = *state;
    proto_identity *pref = member_identity(net, PREF);
    size_t idle_before = count3(net, COMUNE, "event=peer.drop", "nothing heard", NULL);
    fp_peer *p = connect_as(net, COMUNE, pref);
    proto_identity_free(pref);
    /* The node pings the quiet session with an empty WANT. */
    proto_buf m = { NULL, 0 };
    fp_result r = fp_recv_kind(p, PROTO_K_WANT, 3000, &m);
    proto_want_msg w = { NULL, 0, NULL };
    bool ping = r == FP_OK && proto_want_decode(m.p, m.len, NULL, &w, NULL) == PROTO_OK && w.n == 0;
    proto_want_fini(&w);
    proto_buf_free(&m);
    CHECK(net, ping, "no ping (empty WANT) on a quiet session within 3 s: %s", fp_error(p));
    /* We never answer: the node must end the session. */
    CHECK(net, fp_wait_closed(p, 5000), "a silent session was not closed within 5 s");
    fp_close(p);
    CHECK(net, wait_log(net, COMUNE, idle_before, 3000, "event=peer.drop", "nothing heard", NULL),
        "no peer.drop with reason \"nothing heard\" for the silent session");
    /* Three more idle timeouts with no writes anywhere: the real links answer the pings. */
    struct timespec ts = { 4, 500000000 };
    nanosleep(&ts, NULL);
    CHECK(net, count3(net, COMUNE, "nothing heard", "org=cpia-1", NULL) == 0,
        "the comune dropped its idle but healthy link to cpia-1");
    still_serving(net, true);
}

static void forged_headers(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, CPIA);
    proto_identity *cpia = member_identity(net, CPIA), *stranger = NULL;
    assert_int_equal(proto_identity_new(NULL, &stranger), PROTO_OK);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    int64_t base = status_num(net, COMUNE, "counts/headers");
    CHECK(net, vv_of(net, COMUNE, CPIA) == 0, "cpia-1 has a log before the test");
    uint8_t zero[32] = { 0 };

    /* (a) cpia-1's origin, signed by another key. */
    forged bad;
    assert_int_equal(forge_header(stranger, 1, zero, now_ms(), &bad), PROTO_OK);
    assert_int_equal(replace32(bad.header.p, bad.header.len, proto_identity_origin(stranger),
                         proto_identity_origin(cpia)),
        1);
    size_t before = count3(net, COMUNE, "event=header.reject", "bad signature", NULL);
    const proto_buf *one[] = { &bad.header };
    proto_buf hm = headers_msg(one, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=header.reject", "bad signature", NULL),
        "no header.reject for a bad signature");
    CHECK(net, vv_of(net, COMUNE, CPIA) == 0, "a badly signed header moved cpia-1's vv");
    forged_free(&bad);

    /* (a') a stranger's own, validly signed header. */
    assert_int_equal(forge_header(stranger, 1, zero, now_ms(), &bad), PROTO_OK);
    before = count3(net, COMUNE, "event=header.reject", "not a member", NULL);
    hm = headers_msg(one, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net, wait_log(net, COMUNE, before, 5000, "event=header.reject", "not a member", NULL),
        "no header.reject for a stranger's header");
    forged_free(&bad);
    CHECK(net, status_num(net, COMUNE, "counts/headers") == base, "a rejected header was stored");

    /* (c) the correct next header, twice in one batch and again in another: stored once. */
    forged h1, h2;
    assert_int_equal(forge_header(cpia, 1, zero, now_ms(), &h1), PROTO_OK);
    const proto_buf *twice[] = { &h1.header, &h1.header };
    hm = headers_msg(twice, 2);
    send_msg(net, p, &hm);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    /* ... and then its successor, which shows that both copies were handled. */
    assert_int_equal(forge_header(cpia, 2, h1.id, now_ms(), &h2), PROTO_OK);
    const proto_buf *next[] = { &h2.header };
    hm = headers_msg(next, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    vv_want w = { COMUNE, CPIA, 2 };
    CHECK(net, th_wait(net, 5000, vv_is, &w), "cpia-1's chain did not reach seq 2 (vv %lld)",
        (long long)vv_of(net, COMUNE, CPIA));
    CHECK(net, status_num(net, COMUNE, "counts/headers") == base + 2,
        "the replayed header changed the log (%lld headers, want %lld)",
        (long long)status_num(net, COMUNE, "counts/headers"), (long long)base + 2);
    CHECK(net,
        !quarantined(net, COMUNE, "cpia-1")
            && count3(net, COMUNE, "origin.equivocation", NULL, NULL) == 0,
        "the same header twice was taken for an equivocation");

    /* Headers the comune sent, replayed back to it, change nothing either. */
    proto_buf echo;
    barrier_get(net, p, &echo);
    send_msg(net, p, &echo);
    proto_buf_free(&echo);
    barrier(net, p);
    CHECK(net, status_num(net, COMUNE, "counts/headers") == base + 2,
        "headers replayed to their sender were stored again");
    CHECK(net, !quarantined(net, COMUNE, "comune-1") && !quarantined(net, COMUNE, "cpia-1"),
        "a replay was taken for an equivocation");

    /* (b) a header whose prev is not the id of the previous one. */
    forged broken;
    uint8_t wrong[32];
    memset(wrong, 0x5a, sizeof(wrong));
    assert_int_equal(forge_header(cpia, 3, wrong, now_ms(), &broken), PROTO_OK);
    before = count3(net, COMUNE, "event=header.reject", "hash chain broken", NULL);
    const proto_buf *b1[] = { &broken.header };
    hm = headers_msg(b1, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net,
        wait_log(net, COMUNE, before, 5000, "event=header.reject", "hash chain broken", NULL),
        "no header.reject for a broken chain");
    CHECK(net, vv_of(net, COMUNE, CPIA) == 2, "a header off the chain was stored");
    forged_free(&broken);

    /* (d) a second, different, validly signed header for seq 2: equivocation. */
    forged fork;
    assert_int_equal(forge_header(cpia, 2, h1.id, now_ms() + 1, &fork), PROTO_OK);
    CHECK(net, memcmp(fork.id, h2.id, 32) != 0, "the fork is the same header");
    const proto_buf *f1[] = { &fork.header };
    hm = headers_msg(f1, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    CHECK(net, wait_log(net, COMUNE, 0, 5000, "event=origin.equivocation", "org=cpia-1", "seq=2"),
        "no origin.equivocation logged");
    CHECK(net, quarantined(net, COMUNE, "cpia-1"), "status does not list cpia-1 as quarantined");

    /* A quarantined origin's headers are no longer taken, even correct ones. */
    forged h3;
    assert_int_equal(forge_header(cpia, 3, h2.id, now_ms(), &h3), PROTO_OK);
    const proto_buf *n3[] = { &h3.header };
    hm = headers_msg(n3, 1);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    barrier(net, p);
    CHECK(net, vv_of(net, COMUNE, CPIA) == 2, "a quarantined origin's header was stored");
    CHECK(net, fp_closed_count(p) == 0, "the session was closed");

    fp_close(p);
    forged_free(&h1);
    forged_free(&h2);
    forged_free(&h3);
    forged_free(&fork);
    proto_identity_free(cpia);
    proto_identity_free(stranger);
    still_serving(net, false);
}

/* ---------------------------------------------------------------------------------------- */
/* 5. Causal write authorisation over the network                                            */

static void read_grant_cannot_write(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "read");
    size_t cpia_node = CPIA;
    CHECK(net, th_wait(net, 15000, settled, &cpia_node), "the CPIA did not settle");
    show_want a1 = { CPIA, id, "scopes/lingua/livello", "A1" };
    CHECK(net, shows(net, &a1), "the CPIA cannot read the case");
    stop_node(net, CPIA);

    proto_case_id cid;
    assert_int_equal(proto_case_id_parse(id, strlen(id), &cid), PROTO_OK);
    member_view v = { .case_id = &cid, .scope = "lingua", .org = "cpia-1" };
    member_view_read(net, CPIA, &v);
    CHECK(net, access_in(&v) == PROTO_ACCESS_READ, "the CPIA's state does not hold its read grant");
    proto_identity *cpia = member_identity(net, CPIA);

    /* cpia-1 writes with a read grant only: correctly chained, signed and encrypted. */
    forged f;
    uint64_t seq = v.own_seq + 1;
    assert_int_equal(forge_delta(cpia, v.key, v.state, &v.seen, "livello", "C2", 0, seq, v.own_last,
                         now_ms(), &f),
        PROTO_OK);
    size_t refuse = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", NULL);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    const proto_buf *one[] = { &f.header };
    proto_buf hm = headers_msg(one, 1), bm = bodies_msg(&f);
    send_msg(net, p, &hm);
    send_msg(net, p, &bm);
    proto_buf_free(&hm);
    proto_buf_free(&bm);
    CHECK(net,
        wait_log(net, COMUNE, refuse, 10000, "event=delta.refuse", "org=cpia-1", "scope=lingua"),
        "the comune did not refuse a delta written with a read grant");
    char val[64];
    show_value(net, COMUNE, id, "scopes/lingua/livello", val);
    CHECK(net, strcmp(val, "A1") == 0, "the comune merged it: lingua.livello is '%s'", val);
    CHECK(net, vv_of(net, COMUNE, CPIA) == (int64_t)seq,
        "the refused delta's header is not kept as a verified header");
    fp_close(p);

    /* The Prefettura holds no key: it stores the header, nothing more. */
    vv_want pw = { PREF, CPIA, (int64_t)seq };
    CHECK(net, th_wait(net, 10000, vv_is, &pw), "the Prefettura did not store the header");

    /* Now a write grant; cpia-1 restarts with the forged delta as the last of its own log (as
     * if it had written it itself), so its next write continues the chain. */
    member_own_put(net, CPIA, seq, f.id);
    grant(net, id, "cpia-1", "write");
    size_t cpia_refuse = count3(net, CPIA, "event=delta.refuse", "org=cpia-1", NULL);
    CHECK(net, th_start(net, CPIA) == 0, "the CPIA did not restart");
    vv_want own = { CPIA, CPIA, (int64_t)seq };
    CHECK(net, th_wait(net, 15000, vv_is, &own), "the CPIA did not get its own header back");
    CHECK(net, th_wait(net, 15000, settled, &cpia_node), "the CPIA did not settle");
    /* Every holder decides alike: the CPIA refuses its own old delta too. */
    CHECK(net,
        wait_log(net, CPIA, cpia_refuse, 10000, "event=delta.refuse", "org=cpia-1", "scope=lingua"),
        "the CPIA did not refuse the delta made with a read grant");
    show_value(net, CPIA, id, "scopes/lingua/livello", val);
    CHECK(net, strcmp(val, "A1") == 0, "the CPIA merged its read-grant delta: '%s'", val);

    th_out o = th_patto_write(net, CPIA, "case", "set", id, "lingua.livello=B1", NULL);
    CHECK(net, o.status == 0, "the CPIA could not write with a write grant: %d %s %s", o.status,
        o.out, o.err);
    th_out_free(&o);
    show_want b1 = { COMUNE, id, "scopes/lingua/livello", "B1" };
    CHECK(net, th_wait(net, 10000, shows, &b1), "the comune did not merge the CPIA's write");
    o = th_patto(net, COMUNE, "case", "show", id, NULL);
    json_object *conf = o.json ? jget(o.json, "conflicts") : NULL;
    CHECK(net, conf != NULL && json_object_object_length(conf) == 0,
        "the refused value shows up as a conflict: %s", o.out);
    th_out_free(&o);
    vv_want pw2 = { PREF, CPIA, (int64_t)seq + 1 };
    CHECK(net, th_wait(net, 10000, vv_is, &pw2), "the Prefettura lacks the CPIA's new header");
    o = th_patto(net, PREF, "case", "show", id, NULL);
    CHECK(net, o.status == 3, "the Prefettura reads the case: %d %s", o.status, o.out);
    th_out_free(&o);
    for (size_t i = 0; i < 3; i++)
        CHECK(net, !quarantined(net, i, "cpia-1"), "node %zu quarantined cpia-1", i);

    forged_free(&f);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, true);
}

/* As a stopped cpia-1 holding a write grant on the case's lingua scope, forge a delta (see
 * forge_delta for field, value and amount) with HLC wall `wall`. */
static void forge_as_cpia(th_net *net, const char *id, const char *field, const char *value,
    int64_t amount, uint64_t wall, forged *f, proto_identity **cpia_out)
{
    size_t cpia_node = CPIA;
    CHECK(net, th_wait(net, 15000, settled, &cpia_node), "the CPIA did not settle");
    stop_node(net, CPIA);
    proto_case_id cid;
    assert_int_equal(proto_case_id_parse(id, strlen(id), &cid), PROTO_OK);
    member_view v = { .case_id = &cid, .scope = "lingua", .org = "cpia-1" };
    member_view_read(net, CPIA, &v);
    CHECK(
        net, access_in(&v) == PROTO_ACCESS_WRITE, "the CPIA's state does not hold its write grant");
    proto_identity *cpia = member_identity(net, CPIA);
    proto_err perr = forge_delta(
        cpia, v.key, v.state, &v.seen, field, value, amount, v.own_seq + 1, v.own_last, wall, f);
    member_view_fini(&v);
    CHECK(net, perr == PROTO_OK, "cannot forge: %s", proto_strerror(perr));
    *cpia_out = cpia;
}

/* Send a forged delta's header, then its body. */
static void push_delta(th_net *net, fp_peer *p, const forged *f)
{
    const proto_buf *one[] = { &f->header };
    proto_buf hm = headers_msg(one, 1), bm = bodies_msg(f);
    send_msg(net, p, &hm);
    send_msg(net, p, &bm);
    proto_buf_free(&hm);
    proto_buf_free(&bm);
}

/* Forge as cpia-1 (write grant) a delta setting lingua.livello=value at HLC wall, and push it
 * to the comune. Returns the open session (as cpia-1) for the caller. */
static fp_peer *push_write_as_cpia(
    th_net *net, const char *id, const char *value, uint64_t wall, proto_identity **cpia_out)
{
    forged f;
    forge_as_cpia(net, id, "livello", value, 0, wall, &f, cpia_out);
    fp_peer *p = connect_as(net, COMUNE, *cpia_out);
    push_delta(net, p, &f);
    forged_free(&f);
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* 4b. A replayed delta is merged once                                                       */

typedef struct counter_want {
    size_t node;
    const char *id;
    int64_t value;
} counter_want;

static bool counter_is(th_net *net, void *ctx)
{
    counter_want *w = ctx;
    th_out o = th_patto(net, w->node, "case", "show", w->id, NULL);
    json_object *v = o.status == 0 && o.json ? jget(o.json, "scopes/lingua/ore_frequenza") : NULL;
    bool ok = v != NULL && json_object_get_int64(v) == w->value;
    th_out_free(&o);
    return ok;
}

static void replayed_delta_merged_once(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "write");
    forged f;
    proto_identity *cpia = NULL;
    forge_as_cpia(net, id, "ore_frequenza", NULL, 5, now_ms(), &f, &cpia);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_delta(net, p, &f);
    counter_want w = { COMUNE, id, 5 };
    CHECK(net, th_wait(net, 10000, counter_is, &w), "the comune did not merge +5 hours");
    /* The same delta again: in new frames, twice in one HEADERS batch, on a new session. */
    push_delta(net, p, &f);
    const proto_buf *twice[] = { &f.header, &f.header };
    proto_buf hm = headers_msg(twice, 2);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    barrier(net, p);
    fp_close(p);
    p = connect_as(net, COMUNE, cpia);
    push_delta(net, p, &f);
    barrier(net, p);
    CHECK(net, counter_is(net, &w), "a replayed +5 was counted again");
    CHECK(net, vv_of(net, COMUNE, CPIA) == 1, "a replayed header moved cpia-1's log");
    CHECK(net, !quarantined(net, COMUNE, "cpia-1"), "a replay was taken for an equivocation");
    fp_close(p);
    forged_free(&f);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* ---------------------------------------------------------------------------------------- */
/* 6. A clock far ahead                                                                      */

static void clock_ahead_waits(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "write");
    size_t waits = count3(net, COMUNE, "event=delta.wait", "reason=\"clock ahead\"", NULL);
    proto_identity *cpia = NULL;
    fp_peer *p = push_write_as_cpia(net, id, "C2", now_ms() + HOUR_MS, &cpia);
    CHECK(net,
        wait_log(net, COMUNE, waits, 10000, "event=delta.wait", "reason=\"clock ahead\"", NULL),
        "the comune did not report a delta an hour ahead");
    num_want w = { COMUNE, "waiting/clock", 1 };
    CHECK(net, th_wait(net, 5000, num_is, &w), "status waiting.clock is %lld, not 1",
        (long long)status_num(net, COMUNE, "waiting/clock"));
    char val[64];
    show_value(net, COMUNE, id, "scopes/lingua/livello", val);
    CHECK(net, strcmp(val, "A1") == 0, "the comune merged a delta an hour ahead: '%s'", val);

    /* The comune's clock did not jump: its next header is stamped with the present. */
    th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B1", NULL);
    CHECK(net, o.status == 0, "write at the comune: %s", o.out);
    th_out_free(&o);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    bool seen = false;
    for (int k = 0; k < 20 && !seen; k++) {
        proto_buf m;
        if (fp_recv_kind(p, PROTO_K_HEADERS, 5000, &m) != FP_OK)
            break;
        proto_headers_msg hm;
        if (proto_headers_decode(m.p, m.len, NULL, &hm, NULL) == PROTO_OK) {
            for (size_t i = 0; i < hm.n; i++) {
                proto_header h;
                if (proto_header_decode(hm.headers[i].p, hm.headers[i].len, NULL, &h, NULL)
                    != PROTO_OK)
                    continue;
                if (memcmp(h.origin, comune, 32) == 0
                    && h.seq == (uint64_t)vv_of(net, COMUNE, COMUNE)) {
                    seen = true;
                    CHECK(net, h.hlc.wall < now_ms() + 60000,
                        "the comune's clock jumped ahead: its new header says %llu ms ahead",
                        (unsigned long long)(h.hlc.wall - now_ms()));
                }
                proto_header_fini(&h);
            }
            proto_headers_fini(&hm);
        }
        proto_buf_free(&m);
    }
    CHECK(net, seen, "the comune did not push its new header to the (fake) CPIA");
    CHECK(net, status_num(net, COMUNE, "waiting/clock") == 1, "the delta stopped waiting");
    fp_close(p);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* With max_clock_ahead_ms = 1000, a delta 4 s ahead waits, then is merged once in bounds. */
static void clock_ahead_merges_in_time(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "write");
    size_t waits = count3(net, COMUNE, "event=delta.wait", "reason=\"clock ahead\"", NULL);
    proto_identity *cpia = NULL;
    fp_peer *p = push_write_as_cpia(net, id, "C1", now_ms() + 4000, &cpia);
    CHECK(net,
        wait_log(net, COMUNE, waits, 3000, "event=delta.wait", "reason=\"clock ahead\"", NULL),
        "the comune did not hold a delta 4 s ahead (limit 1 s)");
    show_want c1 = { COMUNE, id, "scopes/lingua/livello", "C1" };
    CHECK(net, th_wait(net, 15000, shows, &c1), "the delta was never merged once in bounds");
    num_want w = { COMUNE, "waiting/clock", 0 };
    CHECK(net, th_wait(net, 5000, num_is, &w), "status still counts it as waiting");
    fp_close(p);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* ---------------------------------------------------------------------------------------- */
/* 7. The security review's findings on protocol version 2 (ARCHITECTURE.md, section 6)      */

/* A member's own log as a modified node would continue it: the next seq and the previous id. */
typedef struct chain {
    uint64_t seq; /* of the next header */
    uint8_t prev[32];
} chain;

static void chain_next(chain *c, const forged *f)
{
    c->seq++;
    memcpy(c->prev, f->id, 32);
}

/* ---------------------------------------------------------------------------------------- */
/* Forging what proto/ would refuse to make: signed headers of any fields, key grants of any  */
/* owner (PROTOCOL.md, sections 7, 13 and 14, built here with libsodium)                     */

/* A member's two seeds (identity.key: the Ed25519 seed, then the X25519 seed). */
static void member_seeds(th_net *net, size_t i, uint8_t seeds[64])
{
    char path[700];
    snprintf(path, sizeof(path), "%s/identity.key", net->nodes[i].dir);
    size_t len = 0;
    char *buf = read_file(path, &len);
    bool ok = buf != NULL && len == 64;
    if (ok)
        memcpy(seeds, buf, 64);
    if (buf != NULL) {
        proto_wipe(buf, len);
        free(buf);
    }
    CHECK(net, ok, "cannot read %s", path);
}

/* Encode h signed with the Ed25519 key of sign_seed (h->sig is set). */
static proto_err sign_header(const uint8_t sign_seed[32], proto_header *h, proto_buf *out)
{
    memset(h->sig, 0, sizeof(h->sig));
    proto_buf tmp = { NULL, 0 };
    proto_err err = proto_header_encode(h, &tmp);
    proto_header d;
    if (err == PROTO_OK)
        err = proto_header_decode(tmp.p, tmp.len, NULL, &d, NULL);
    if (err == PROTO_OK) {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
        crypto_sign_seed_keypair(pk, sk, sign_seed);
        crypto_sign_detached(h->sig, NULL, d.signed_bytes.p, d.signed_bytes.len, sk);
        sodium_memzero(sk, sizeof(sk));
        err = proto_header_encode(h, out);
    }
    proto_buf_free(&tmp);
    return err;
}

static size_t mp_str(uint8_t *o, const char *s)
{
    size_t n = strlen(s), k = 0;
    if (n < 32) {
        o[k++] = (uint8_t)(0xa0 | n);
    } else {
        o[k++] = 0xd9;
        o[k++] = (uint8_t)n;
    }
    memcpy(o + k, s, n);
    return k + n;
}

/* The hint of recipient rpk in a grant of (origin, seq) by the grantor with box seed gseed. */
static void grant_hint(const uint8_t gseed[32], const uint8_t rpk[32], const uint8_t origin[32],
    uint64_t seq, uint8_t hint[PROTO_HINT_LEN])
{
    uint8_t gpk[32], gsk[32], ss[32], k[32], h[32], be[8];
    crypto_box_seed_keypair(gpk, gsk, gseed);
    assert_int_equal(crypto_scalarmult(ss, gsk, rpk), 0);
    crypto_generichash_state st;
    static const char kl[] = "patto-hint-key-v2", hl[] = "patto-hint-v2";
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)kl, sizeof(kl) - 1);
    crypto_generichash_update(&st, ss, 32);
    crypto_generichash_update(&st, gpk, 32);
    crypto_generichash_update(&st, rpk, 32);
    crypto_generichash_final(&st, k, 32);
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(seq >> (56 - 8 * i));
    crypto_generichash_init(&st, k, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)hl, sizeof(hl) - 1);
    crypto_generichash_update(&st, origin, 32);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_final(&st, h, 32);
    memcpy(hint, h, PROTO_HINT_LEN);
    sodium_memzero(gsk, sizeof(gsk));
    sodium_memzero(ss, sizeof(ss));
    sodium_memzero(k, sizeof(k));
}

/* A key grant as PROTOCOL.md section 13 builds it, with whatever owner, case, nonce and keys the
 * grantor claims (proto_key_grant_seal refuses a case id that does not derive from the owner and
 * the nonce; a hostile member need not ask it): the GRANT_PLAIN sealed to each recipient's box
 * key with its hint, random boxes and hints in the other slots, signed by the grantor (seeds:
 * its identity.key). nkeys 0 makes a grant of random boxes only; tag is the header's. */
typedef struct raw_key {
    uint64_t epoch;
    uint8_t key[32];
} raw_key;

static proto_err forge_grant_raw(const uint8_t seeds[64], const char *owner,
    const proto_case_id *cid, const proto_case_nonce *nonce, const char *scope, const raw_key *keys,
    size_t nkeys, uint8_t (*rpk)[32], size_t nrec, const uint8_t tag[32], uint64_t seq,
    const uint8_t prev[32], uint64_t wall, forged *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t plain[2048];
    size_t n = 0;
    plain[n++] = 0x96;
    plain[n++] = PROTO_VERSION;
    plain[n++] = PROTO_K_GRANT_PLAIN;
    plain[n++] = 0xc4;
    plain[n++] = 16;
    memcpy(plain + n, cid->b, 16);
    n += 16;
    plain[n++] = 0xc4;
    plain[n++] = 16;
    memcpy(plain + n, nonce->b, 16);
    n += 16;
    n += mp_str(plain + n, owner);
    plain[n++] = 0x91; /* one scope: [scope, keys] */
    plain[n++] = 0x92;
    n += mp_str(plain + n, scope);
    assert_true(nkeys < 16);
    plain[n++] = (uint8_t)(0x90 | nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        assert_true(keys[i].epoch < 128);
        plain[n++] = 0x92;
        plain[n++] = (uint8_t)keys[i].epoch;
        plain[n++] = 0xc4;
        plain[n++] = 32;
        memcpy(plain + n, keys[i].key, 32);
        n += 32;
    }
    /* sodium_pad to 512: 0x80, then zeros. */
    size_t padded = (n / PROTO_GRANT_PAD_BLOCK + 1) * PROTO_GRANT_PAD_BLOCK;
    memset(plain + n, 0, padded - n);
    plain[n] = 0x80;
    size_t box_len = padded + crypto_box_SEALBYTES;
    size_t body_len = 4 + 4 * (3 + box_len);
    uint8_t *body = malloc(body_len);
    assert_non_null(body);
    proto_header h;
    memset(&h, 0, sizeof(h));
    h.kind = PROTO_HDR_KEY_GRANT;
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(h.origin, sk, seeds);
    sodium_memzero(sk, sizeof(sk));
    h.seq = seq;
    memcpy(h.prev, prev, 32);
    h.hlc.wall = wall;
    memcpy(h.tag, tag, 32);
    h.nhints = PROTO_HINT_SLOTS;
    size_t b = 0;
    body[b++] = 0x93;
    body[b++] = PROTO_VERSION;
    body[b++] = PROTO_K_GRANT_BODY;
    body[b++] = 0x94;
    for (size_t slot = 0; slot < PROTO_HINT_SLOTS; slot++) {
        body[b++] = 0xc5;
        body[b++] = (uint8_t)(box_len >> 8);
        body[b++] = (uint8_t)box_len;
        if (slot < nrec && nkeys > 0) {
            assert_int_equal(crypto_box_seal(body + b, plain, padded, rpk[slot]), 0);
            grant_hint(seeds + 32, rpk[slot], h.origin, seq, h.hints[slot].b);
        } else {
            randombytes_buf(body + b, box_len);
            randombytes_buf(h.hints[slot].b, PROTO_HINT_LEN);
        }
        b += box_len;
    }
    assert_int_equal(b, body_len);
    h.body_len = body_len;
    crypto_generichash(h.body_hash, 32, body, body_len, NULL, 0);
    sodium_memzero(plain, sizeof(plain));
    proto_err err = sign_header(seeds, &h, &out->header);
    if (err != PROTO_OK) {
        free(body);
        return err;
    }
    out->body.p = body;
    out->body.len = body_len;
    forged_id(out);
    return PROTO_OK;
}

/* A HEADERS message of any number of headers. */
static proto_buf headers_msg_n(const forged *f, size_t from, size_t n)
{
    proto_bytes *items = calloc(n ? n : 1, sizeof(*items));
    assert_non_null(items);
    for (size_t i = 0; i < n; i++) {
        items[i].p = f[from + i].header.p;
        items[i].len = f[from + i].header.len;
    }
    proto_headers_msg m = { .headers = items, .n = n };
    proto_buf out = { NULL, 0 };
    assert_int_equal(proto_headers_encode(&m, &out), PROTO_OK);
    free(items);
    return out;
}

/* Send forged headers and then their bodies (those that have one). */
static void push_all(th_net *net, fp_peer *p, const forged *f, size_t n)
{
    proto_buf hm = headers_msg_n(f, 0, n);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    for (size_t i = 0; i < n; i++) {
        if (f[i].body.p == NULL)
            continue;
        proto_buf bm = bodies_msg(&f[i]);
        send_msg(net, p, &bm);
        proto_buf_free(&bm);
    }
}

/* Read for ms milliseconds what the node sends on p, answering its pings (an empty WANT) with an
 * empty BODIES as every node does; the rest is dropped. */
static void pump(th_net *net, fp_peer *p, int ms)
{
    uint64_t until = now_ms() + (uint64_t)ms;
    for (uint64_t t = now_ms(); t < until; t = now_ms()) {
        proto_buf m;
        unsigned kind = 0;
        if (fp_recv(p, (int)(until - t), &m, &kind) != FP_OK)
            break;
        proto_want_msg w;
        if (kind == PROTO_K_WANT && proto_want_decode(m.p, m.len, NULL, &w, NULL) == PROTO_OK) {
            if (w.n == 0) {
                proto_bodies_msg pong = { NULL, 0, NULL };
                proto_buf out = { NULL, 0 };
                assert_int_equal(proto_bodies_encode(&pong, &out), PROTO_OK);
                send_msg(net, p, &out);
                proto_buf_free(&out);
            }
            proto_want_fini(&w);
        }
        proto_buf_free(&m);
    }
}

/* Member i's own log position, read from its store (it is stopped). */
static node_err own_cb(node_txn *t, void *ctx)
{
    chain *c = ctx;
    uint64_t seq = 0;
    node_err err = node__ledger_own_get(t, &seq, c->prev);
    if (err == NODE_ENOTFOUND) {
        memset(c->prev, 0, 32);
        err = NODE_OK;
    }
    c->seq = seq + 1;
    return err;
}

static chain member_chain(th_net *net, size_t i)
{
    chain c = { 1, { 0 } };
    member_store_read(net, i, own_cb, &c, "its own log position");
    return c;
}

/* Stop member i once it holds every header the comune wrote and waits for nothing, and read its
 * view of (case id, scope) and its identity. */
static proto_identity *stopped_member(
    th_net *net, size_t i, const char *id, proto_case_id *cid, const char *scope, member_view *v)
{
    size_t node = i;
    CHECK(net, th_wait(net, 15000, settled, &node), "%s did not settle", net->nodes[i].org);
    stop_node(net, i);
    assert_int_equal(proto_case_id_parse(id, strlen(id), cid), PROTO_OK);
    memset(v, 0, sizeof(*v));
    v->case_id = cid;
    v->scope = scope;
    v->org = net->nodes[i].org;
    member_view_read(net, i, v);
    return member_identity(net, i);
}

/* A case the comune opened (lingua.livello=A1) with write on lingua granted to the CPIA, which
 * is then stopped: its view of lingua (*v), the next place in its chain (*c), its identity. */
static proto_identity *writer_cpia(
    th_net *net, char id[64], proto_case_id *cid, member_view *v, chain *c)
{
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "write");
    proto_identity *cpia = stopped_member(net, CPIA, id, cid, "lingua", v);
    CHECK(net, access_in(v) == PROTO_ACCESS_WRITE, "the CPIA does not hold its write grant");
    c->seq = v->own_seq + 1;
    memcpy(c->prev, v->own_last, 32);
    return cpia;
}

/* A delta of one register (or, value NULL, counter) write, sealed as cpia-1 next in its chain
 * and made on v's state (which then holds it: the next one follows it, as a node's writes
 * do), pushed on p. */
static void push_write(th_net *net, fp_peer *p, const proto_identity *me, member_view *v, chain *c,
    const char *field, const char *value, int64_t amount, forged *keep)
{
    forged f;
    proto_err perr = forge_delta_on(
        me, v->key, v->state, &v->seen, field, value, amount, c->seq, c->prev, now_ms(), &f);
    CHECK(net, perr == PROTO_OK, "cannot forge %s: %s", field, proto_strerror(perr));
    push_delta(net, p, &f);
    chain_next(c, &f);
    if (keep != NULL)
        *keep = f;
    else
        forged_free(&f);
}

/* Finding 8: a write grantee's deltas are checked against the network's schema and the
 * manifest's counter limit at every holder; the owner refuses each one and shows none. */
static void merged_deltas_follow_the_schema(void **state)
{
    th_net *net = *state;
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    size_t big_len = 60 * 1024;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    memset(big, 'x', big_len);
    big[big_len] = 0;
    static const char *const value_reason = "a value the network's schema does not admit";
    static const char *const field_reason
        = "a field the network's schema does not have, or of another type";
    static const char *const counter_reason = "a counter beyond the network's per-author limit";
    size_t before_value = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", value_reason);
    size_t before_field = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", field_reason);
    size_t before_counter = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", counter_reason);

    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_write(net, p, cpia, &v, &c, "livello", "Z9", 0, NULL);          /* not an enum value */
    push_write(net, p, cpia, &v, &c, "cpia", big, 0, NULL);              /* text max 32, 60 KB */
    push_write(net, p, cpia, &v, &c, "diagnosi", "riservata", 0, NULL);  /* no such field */
    push_write(net, p, cpia, &v, &c, "diagnosi", big, 0, NULL);          /* and 60 KB of it */
    push_write(net, p, cpia, &v, &c, "ore_frequenza", NULL, 1001, NULL); /* limit 1000 */
    CHECK(net,
        wait_log(
            net, COMUNE, before_value + 1, 15000, "event=delta.refuse", "org=cpia-1", value_reason),
        "the comune did not refuse an enum value outside the schema and a 60 KB text (%zu of 2 "
        "refused)",
        count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", value_reason) - before_value);
    CHECK(net,
        wait_log(
            net, COMUNE, before_field + 1, 15000, "event=delta.refuse", "org=cpia-1", field_reason),
        "the comune did not refuse two deltas on a field the schema does not have (%zu of 2)",
        count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", field_reason) - before_field);
    CHECK(net,
        wait_log(
            net, COMUNE, before_counter, 15000, "event=delta.refuse", "org=cpia-1", counter_reason),
        "the comune did not refuse a counter of 1001 with a limit of 1000");

    /* A delta within the schema, made after the refused ones (their dots are its past), is
     * merged: the refusals were for the reasons given, not for the author, and a refused
     * delta's dots hold back none of its author's later ones. */
    push_write(net, p, cpia, &v, &c, "livello", "B1", 0, NULL);
    show_want b1 = { COMUNE, id, "scopes/lingua/livello", "B1" };
    CHECK(net, th_wait(net, 15000, shows, &b1), "the comune did not merge livello=B1 after them");
    counter_want cw = { COMUNE, id, 1001 };
    CHECK(net, !counter_is(net, &cw), "the comune counts the refused 1001 hours");
    th_out o = th_patto(net, COMUNE, "case", "show", id, NULL);
    CHECK(net, o.status == 0 && o.json != NULL, "case show: %d %s", o.status, o.out);
    CHECK(net, jget(o.json, "scopes/lingua/cpia") == NULL, "the 60 KB text shows: %.200s", o.out);
    CHECK(net, jget(o.json, "scopes/lingua/diagnosi") == NULL,
        "a field outside the schema shows: %.200s", o.out);
    /* livello may show A1 beside B1: the CPIA's refused Z9 had replaced A1 only in its own
     * view. No refused value shows, as a value or a conflict. */
    json_object *conf = jget(o.json, "conflicts");
    const char *conf_text = conf != NULL ? json_object_to_json_string(conf) : "";
    CHECK(net,
        conf != NULL && strstr(conf_text, "Z9") == NULL && strstr(conf_text, "xxxx") == NULL
            && strstr(conf_text, "riservata") == NULL,
        "a refused value shows as a conflict: %.300s", o.out);
    th_out_free(&o);
    free(big);
    fp_close(p);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* The comune's headers as a peer gets them (the answer to an empty VV): their ids and tags. */
typedef struct seen_header {
    uint8_t id[32], tag[32], origin[32];
    uint64_t seq;
    uint8_t kind;
} seen_header;

static size_t decode_headers(const proto_buf *m, seen_header *out, size_t max)
{
    proto_headers_msg hm;
    size_t n = 0;
    if (proto_headers_decode(m->p, m->len, NULL, &hm, NULL) != PROTO_OK)
        return 0;
    for (size_t i = 0; i < hm.n && n < max; i++) {
        proto_header h;
        if (proto_header_decode(hm.headers[i].p, hm.headers[i].len, NULL, &h, NULL) != PROTO_OK)
            continue;
        memcpy(out[n].id, h.id, 32);
        memcpy(out[n].tag, h.tag, 32);
        memcpy(out[n].origin, h.origin, 32);
        out[n].seq = h.seq;
        out[n].kind = h.kind;
        n++;
    }
    proto_headers_fini(&hm);
    return n;
}

/* Everything sent on p before now has been handled: a ping (an empty WANT) is answered with an
 * empty BODIES after it. The node's own pings meanwhile are answered. */
static void barrier_ping(th_net *net, fp_peer *p)
{
    proto_want_msg w = { NULL, 0, NULL };
    proto_buf m = { NULL, 0 };
    assert_int_equal(proto_want_encode(&w, &m), PROTO_OK);
    send_msg(net, p, &m);
    proto_buf_free(&m);
    for (;;) {
        unsigned kind = 0;
        fp_result r = fp_recv(p, 10000, &m, &kind);
        CHECK(net, r == FP_OK, "no answer to a ping: %s", fp_error(p));
        bool done = false;
        proto_bodies_msg bm;
        proto_want_msg nw;
        if (kind == PROTO_K_BODIES
            && proto_bodies_decode(m.p, m.len, NULL, &bm, NULL) == PROTO_OK) {
            done = bm.n == 0;
            proto_bodies_fini(&bm);
        } else if (kind == PROTO_K_WANT
            && proto_want_decode(m.p, m.len, NULL, &nw, NULL) == PROTO_OK) {
            if (nw.n == 0) {
                proto_bodies_msg pong = { NULL, 0, NULL };
                proto_buf out = { NULL, 0 };
                assert_int_equal(proto_bodies_encode(&pong, &out), PROTO_OK);
                send_msg(net, p, &out);
                proto_buf_free(&out);
            }
            proto_want_fini(&nw);
        }
        proto_buf_free(&m);
        if (done)
            return;
    }
}

/* Send WANT for these ids, then a barrier; count the bodies that came before the barrier's
 * answer. */
static size_t want_bodies(th_net *net, fp_peer *p, const proto_hash_bytes *ids, size_t n)
{
    proto_want_msg w = { ids, n, NULL };
    proto_buf m = { NULL, 0 };
    assert_int_equal(proto_want_encode(&w, &m), PROTO_OK);
    send_msg(net, p, &m);
    proto_buf_free(&m);
    proto_buf vv = empty_vv_msg();
    send_msg(net, p, &vv);
    proto_buf_free(&vv);
    size_t bodies = 0;
    for (;;) {
        unsigned kind = 0;
        fp_result r = fp_recv(p, 10000, &m, &kind);
        CHECK(net, r == FP_OK, "no HEADERS answered an empty VV: %s", fp_error(p));
        proto_bodies_msg bm;
        if (kind == PROTO_K_BODIES
            && proto_bodies_decode(m.p, m.len, NULL, &bm, NULL) == PROTO_OK) {
            for (size_t i = 0; i < bm.n; i++)
                for (size_t k = 0; k < n; k++)
                    bodies += memcmp(bm.items[i].header_id, ids[k].b, 32) == 0;
            proto_bodies_fini(&bm);
        }
        proto_buf_free(&m);
        if (kind == PROTO_K_HEADERS)
            return bodies;
    }
}

/* Finding 4: a key-grant header names no recipient and adds none. The Prefettura, which holds no
 * grant, signs a key-grant header of its own with the tag of the lingua scope the comune wrote
 * (hints and boxes random) and asks for the bodies of that tag's headers: the comune sends none.
 * The CPIA, granted read by the owner, gets them with the same request. */
static void key_grant_header_adds_no_recipient(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=A2", NULL);
    CHECK(net, o.status == 0, "case set: %d %s", o.status, o.out);
    th_out_free(&o);
    grant(net, id, "cpia-1", "read");
    size_t cpia_node = CPIA;
    CHECK(net, th_wait(net, 15000, settled, &cpia_node), "the CPIA did not settle");
    stop_node(net, PREF);
    uint8_t seeds[64];
    member_seeds(net, PREF, seeds);
    chain c = member_chain(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    fp_peer *p = connect_as(net, COMUNE, pref);

    /* The comune's headers: the tag of its first delta is lingua's (case new). */
    proto_buf hm;
    barrier_get(net, p, &hm);
    seen_header *seen = calloc(64, sizeof(*seen));
    assert_non_null(seen);
    size_t n = decode_headers(&hm, seen, 64);
    proto_buf_free(&hm);
    uint8_t comune[32];
    node_origin(net, COMUNE, comune);
    const uint8_t *tag = NULL;
    for (size_t i = 0; i < n && tag == NULL; i++)
        if (memcmp(seen[i].origin, comune, 32) == 0 && seen[i].kind == PROTO_HDR_DELTA)
            tag = seen[i].tag;
    CHECK(net, tag != NULL, "no delta header of the comune in the answer");
    proto_hash_bytes ids[64];
    size_t nids = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(seen[i].tag, tag, 32) == 0)
            memcpy(ids[nids++].b, seen[i].id, 32);
    CHECK(net, nids >= 2, "the comune's lingua tag has %zu headers (2 deltas, an entry, a grant)",
        nids);

    /* The Prefettura's own key-grant header for that tag. */
    forged g;
    proto_case_id any_case;
    proto_case_nonce any_nonce;
    randombytes_buf(any_case.b, sizeof(any_case.b));
    randombytes_buf(any_nonce.b, sizeof(any_nonce.b));
    assert_int_equal(forge_grant_raw(seeds, "prefettura-1", &any_case, &any_nonce, "lingua", NULL,
                         0, NULL, 0, tag, c.seq, c.prev, now_ms(), &g),
        PROTO_OK);
    push_all(net, p, &g, 1);
    barrier(net, p);
    CHECK(net, vv_of(net, COMUNE, PREF) == (int64_t)c.seq,
        "the comune did not store the Prefettura's key-grant header");
    size_t got = want_bodies(net, p, ids, nids);
    CHECK(net, got == 0,
        "the comune sent the Prefettura %zu bodies of a scope it may not read after the "
        "Prefettura's own key-grant header for its tag",
        got);
    fp_close(p);

    /* The same request from the CPIA, which the owner granted read: answered. */
    stop_node(net, CPIA);
    proto_identity *cpia = member_identity(net, CPIA);
    p = connect_as(net, COMUNE, cpia);
    got = want_bodies(net, p, ids, nids);
    CHECK(net, got >= 2, "the CPIA got %zu of %zu bodies it may read", got, nids);
    fp_close(p);
    forged_free(&g);
    free(seen);
    proto_wipe(seeds, sizeof(seeds));
    proto_identity_free(pref);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* Send a version vector that claims node `of`'s log up to seq (its last id given), and nothing
 * else; then a ping as the barrier (an empty VV would replace the claim): its answer comes
 * after the claim was read. */
static void send_claim(th_net *net, fp_peer *p, size_t of, uint64_t seq, const uint8_t id[32])
{
    proto_vv_item item;
    memset(&item, 0, sizeof(item));
    node_origin(net, of, item.origin);
    item.seq = seq;
    memcpy(item.id, id, 32);
    proto_vv_msg vm = { .entries = &item, .n = 1 };
    proto_buf m = { NULL, 0 };
    assert_int_equal(proto_vv_encode(&vm, &m), PROTO_OK);
    send_msg(net, p, &m);
    proto_buf_free(&m);
    barrier_ping(net, p);
}

/* Finding 5: a member's version vector claims the comune's own log up to 2^62 and no header
 * comes: the claim is probed (the comune's VV and a ping, twice) and disbelieved, and the
 * comune writes again. */
static void own_log_claim_is_probed_not_believed(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    size_t claims = count3(net, COMUNE, "event=own.claim", "org=prefettura-1", NULL);
    fp_peer *p = connect_as(net, COMUNE, pref);
    uint8_t fake_id[32];
    memset(fake_id, 0x42, sizeof(fake_id));
    send_claim(net, p, COMUNE, UINT64_C(1) << 62, fake_id);

    /* `case new` until it succeeds (the first may be refused with "retry once it has synced"),
     * answering the comune's pings meanwhile, for at most 20 s. */
    bool written = false;
    int refused = 0;
    char first[400] = "";
    uint64_t until = now_ms() + 20000;
    while (!written && now_ms() < until) {
        th_out o = th_patto(net, COMUNE, "case", "new", "lingua.livello=B1", NULL);
        written = o.status == 0;
        if (!written) {
            CHECK(net, o.status == 5 && strstr(o.out, "retry") != NULL,
                "case new refused otherwise than with a retry: %d %s", o.status, o.out);
            if (refused++ == 0)
                snprintf(first, sizeof(first), "%s", o.out);
        }
        th_out_free(&o);
        if (!written)
            pump(net, p, 200);
    }
    CHECK(net, refused > 0 && strstr(first, "retry once it has synced") != NULL,
        "the comune did not hold its writes while probing the claim (%d refusals: %s)", refused,
        first);
    CHECK(net, written,
        "the comune never wrote again under a claim of 2^62 of its own log (%d "
        "refusals, the first: %s)",
        refused, first);
    CHECK(net, wait_log(net, COMUNE, claims, 5000, "event=own.claim", "org=prefettura-1", NULL),
        "the comune wrote again without logging event=own.claim");
    CHECK(net, fp_closed_count(p) == 0, "the comune closed the session");
    fp_close(p);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* Finding 6: two different, validly signed headers at one (origin, seq) of the Prefettura's
 * identity, one given to the comune and the other to the CPIA; the two trade them when they
 * exchange version vectors (which name the last id), and both quarantine the origin. */
static void equivocation_found_by_version_vectors(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, PREF);
    chain c = member_chain(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    forged a, b;
    uint64_t t = now_ms();
    assert_int_equal(forge_header(pref, c.seq, c.prev, t, &a), PROTO_OK);
    assert_int_equal(forge_header(pref, c.seq, c.prev, t + 1, &b), PROTO_OK);
    CHECK(net, memcmp(a.id, b.id, 32) != 0, "the two headers are one");
    /* Both sessions first, then one header to each at once: each node stores its own before
     * anti-entropy (every 2 s) could bring it the other. */
    fp_peer *pa = connect_as(net, COMUNE, pref), *pb = connect_as(net, CPIA, pref);
    const proto_buf *one[] = { &a.header };
    proto_buf hm = headers_msg(one, 1);
    send_msg(net, pa, &hm);
    proto_buf_free(&hm);
    one[0] = &b.header;
    hm = headers_msg(one, 1);
    send_msg(net, pb, &hm);
    proto_buf_free(&hm);
    barrier(net, pa);
    barrier(net, pb);
    fp_close(pa);
    fp_close(pb);
    vv_want wa = { COMUNE, PREF, (int64_t)c.seq }, wb = { CPIA, PREF, (int64_t)c.seq };
    CHECK(net, th_wait(net, 5000, vv_is, &wa) && th_wait(net, 5000, vv_is, &wb),
        "the comune and the CPIA did not each store one of the headers");
    for (size_t i = COMUNE; i <= CPIA; i++) {
        char org[64];
        snprintf(org, sizeof(org), "org=prefettura-1");
        CHECK(net, wait_log(net, i, 0, 20000, "event=origin.equivocation", org, NULL),
            "%s did not find the equivocation through version vectors", net->nodes[i].org);
        CHECK(net, quarantined(net, i, "prefettura-1"), "%s's status does not list the origin",
            net->nodes[i].org);
    }
    forged_free(&a);
    forged_free(&b);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* A member that claims its own log and sends none of it: the Prefettura (a fake peer with its
 * identity) tells the comune it holds three headers of its log that the comune lacks, and
 * never sends them; the CPIA holds them. The comune asks the CPIA with the Prefettura's log
 * skipped (it comes from its author), then, after two anti-entropy ticks without progress,
 * marks the Prefettura slow and gets the three headers from the CPIA, while the Prefettura's
 * session stays up. Without that, the author could keep any node from its log for as long as
 * it stays connected. */
static void withheld_own_log_comes_from_others(void **state)
{
    th_net *net = *state;
    stop_node(net, PREF);
    chain c = member_chain(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    forged f[3];
    const proto_buf *hs[3];
    uint8_t prev[32];
    memcpy(prev, c.prev, 32);
    uint64_t t = now_ms();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            forge_header(pref, c.seq + (uint64_t)i, prev, t + (uint64_t)i, &f[i]), PROTO_OK);
        memcpy(prev, f[i].id, 32);
        hs[i] = &f[i].header;
    }
    int64_t held = vv_of(net, COMUNE, PREF), last = (int64_t)c.seq + 2;
    CHECK(net, held == (int64_t)c.seq - 1,
        "the comune holds %lld of the Prefettura's log, not %llu", (long long)held,
        (unsigned long long)(c.seq - 1));

    /* The Prefettura claims its log up to the third header at the comune, and stays silent. */
    size_t slow = count3(net, COMUNE, "event=sync.slow", "org=prefettura-1", NULL);
    fp_peer *p = connect_as(net, COMUNE, pref);
    send_claim(net, p, PREF, (uint64_t)last, f[2].id);

    /* The CPIA gets the three headers (from another session with the same identity). */
    fp_peer *q = connect_as(net, CPIA, pref);
    proto_buf hm = headers_msg(hs, 3);
    send_msg(net, q, &hm);
    proto_buf_free(&hm);
    vv_want wc = { CPIA, PREF, last };
    CHECK(net, th_wait(net, 10000, vv_is, &wc), "the CPIA did not store the three headers");

    /* The comune gets them from the CPIA, the silent author's session up all along. */
    bool got = false;
    for (uint64_t until = now_ms() + 30000; !got && now_ms() < until;) {
        pump(net, p, 250);
        got = vv_of(net, COMUNE, PREF) == last;
    }
    CHECK(net, got, "the comune holds %lld of the Prefettura's log after 30 s, not %lld",
        (long long)vv_of(net, COMUNE, PREF), (long long)last);
    CHECK(net, fp_closed_count(p) == 0, "the comune closed the silent author's session");
    CHECK(net, count3(net, COMUNE, "event=sync.slow", "org=prefettura-1", NULL) > slow,
        "the comune got the log without logging event=sync.slow for its author");
    fp_close(p);
    fp_close(q);
    for (int i = 0; i < 3; i++)
        forged_free(&f[i]);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* The digest node holds of the scope state under tag ("" when it holds none); out[65]. */
static void tag_digest(th_net *net, size_t node, const uint8_t tag[32], char out[65])
{
    char hex[65];
    proto_hex_encode(tag, 32, hex);
    char path[80];
    snprintf(path, sizeof(path), "tags/%s", hex);
    th_out o = th_patto(net, node, "digest", NULL);
    const char *d = o.status == 0 && o.json ? jstr(o.json, path) : NULL;
    snprintf(out, 65, "%s", d ? d : "");
    th_out_free(&o);
}

typedef struct same_digest {
    const uint8_t *tag;
} same_digest;

static bool digests_agree(th_net *net, void *ctx)
{
    same_digest *s = ctx;
    char a[65], b[65];
    tag_digest(net, COMUNE, s->tag, a);
    tag_digest(net, PREF, s->tag, b);
    return a[0] != 0 && strcmp(a, b) == 0;
}

/* Finding 6, to its end: the CPIA (write grant on lingua) signs two different deltas at one
 * seq, livello=B1 to the comune and livello=C1 to the Prefettura (read grant), and each merges
 * the one it got. Version vectors bring each node the other header: both keep the proof,
 * quarantine the CPIA's origin from that seq, and decide the scope again (the one rebuild): both
 * branches are void, both nodes show the value before the fork, A1, and their states of the
 * scope have one digest. The owner's next write merges at the Prefettura. */
static void fork_voids_both_branches(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "write");
    grant(net, id, "prefettura-1", "read");
    show_want a1 = { PREF, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 15000, shows, &a1), "the Prefettura does not show lingua");
    proto_case_id cid;
    member_view v;
    proto_identity *cpia = stopped_member(net, CPIA, id, &cid, "lingua", &v);
    CHECK(net, access_in(&v) == PROTO_ACCESS_WRITE, "the CPIA does not hold its write grant");
    uint64_t t = now_ms();
    forged a, b;
    assert_int_equal(forge_delta(cpia, v.key, v.state, &v.seen, "livello", "B1", 0, v.own_seq + 1,
                         v.own_last, t, &a),
        PROTO_OK);
    assert_int_equal(forge_delta(cpia, v.key, v.state, &v.seen, "livello", "C1", 0, v.own_seq + 1,
                         v.own_last, t + 1, &b),
        PROTO_OK);
    CHECK(net, memcmp(a.id, b.id, 32) != 0, "the two deltas are one");
    fp_peer *pa = connect_as(net, COMUNE, cpia), *pb = connect_as(net, PREF, cpia);
    push_all(net, pa, &a, 1);
    push_all(net, pb, &b, 1);
    barrier(net, pa);
    barrier(net, pb);
    fp_close(pa);
    fp_close(pb);
    for (size_t i = COMUNE; i <= PREF; i += PREF - COMUNE) {
        CHECK(net, wait_log(net, i, 0, 20000, "event=origin.equivocation", "org=cpia-1", NULL),
            "%s did not find the CPIA's equivocation", net->nodes[i].org);
        CHECK(net, quarantined(net, i, "cpia-1"), "%s's status does not list the CPIA",
            net->nodes[i].org);
        a1.node = i;
        CHECK(net, th_wait(net, 10000, shows, &a1),
            "%s does not show the value from before the fork", net->nodes[i].org);
    }
    same_digest sd = { proto_scope_key_tag(v.key) };
    CHECK(net, th_wait(net, 10000, digests_agree, &sd),
        "the comune and the Prefettura hold different states of lingua after the fork");
    th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "case set at the comune: %d %s", o.status, o.out);
    th_out_free(&o);
    show_want b2 = { PREF, id, "scopes/lingua/livello", "B2" };
    CHECK(net, th_wait(net, 15000, shows, &b2), "the Prefettura did not merge the comune's write");
    forged_free(&a);
    forged_free(&b);
    member_view_fini(&v);
    proto_identity_free(cpia);
}

/* Finding 11: 12,000 signed out-of-order headers of the Prefettura's origin (seq 3..12002, with
 * 1 and 2 withheld): the comune holds at most 10,000 of them; once 1 and 2 come, the chain fills
 * and the comune's version vectors ask for the dropped ones again. */
typedef struct fill_ctx {
    const forged *f;
    size_t n;
    uint64_t first; /* seq of f[0] */
    uint8_t origin[32];
} fill_ctx;

/* Answer the comune's version vectors on p with the Prefettura's headers it lacks (at most 2000
 * a message), and its pings, for ms milliseconds. */
static void serve_chain(th_net *net, fp_peer *p, const fill_ctx *fc, int ms)
{
    uint64_t until = now_ms() + (uint64_t)ms;
    for (uint64_t t = now_ms(); t < until; t = now_ms()) {
        proto_buf m;
        unsigned kind = 0;
        if (fp_recv(p, (int)(until - t), &m, &kind) != FP_OK)
            break;
        proto_vv_msg v;
        proto_want_msg w;
        if (kind == PROTO_K_VV && proto_vv_decode(m.p, m.len, NULL, &v, NULL) == PROTO_OK) {
            uint64_t have = 0;
            for (size_t i = 0; i < v.n; i++)
                if (memcmp(v.entries[i].origin, fc->origin, 32) == 0)
                    have = v.entries[i].seq;
            proto_vv_fini(&v);
            if (have + 1 >= fc->first && have + 1 < fc->first + fc->n) {
                size_t from = (size_t)(have + 1 - fc->first), k = fc->n - from;
                if (k > 2000)
                    k = 2000;
                proto_buf hm = headers_msg_n(fc->f, from, k);
                send_msg(net, p, &hm);
                proto_buf_free(&hm);
            }
        } else if (kind == PROTO_K_WANT
            && proto_want_decode(m.p, m.len, NULL, &w, NULL) == PROTO_OK) {
            if (w.n == 0) {
                proto_bodies_msg pong = { NULL, 0, NULL };
                proto_buf out = { NULL, 0 };
                assert_int_equal(proto_bodies_encode(&pong, &out), PROTO_OK);
                send_msg(net, p, &out);
                proto_buf_free(&out);
            }
            proto_want_fini(&w);
        }
        proto_buf_free(&m);
    }
}

static void held_headers_are_bounded(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, PREF);
    chain c = member_chain(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    enum { N = 12002, HELD_MAX = 10000 };
    forged *f = calloc(N, sizeof(*f));
    assert_non_null(f);
    uint64_t t = now_ms();
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(forge_header(pref, c.seq, c.prev, t, &f[i]), PROTO_OK);
        proto_buf_free(&f[i].body); /* headers only: their bodies are nobody's to hold */
        chain_next(&c, &f[i]);
    }
    uint64_t first = c.seq - N;
    fp_peer *p = connect_as(net, COMUNE, pref);
    for (size_t from = 2; from < N; from += 1000) {
        size_t k = N - from < 1000 ? N - from : 1000;
        proto_buf hm = headers_msg_n(f, from, k);
        send_msg(net, p, &hm);
        proto_buf_free(&hm);
    }
    barrier(net, p);
    int64_t held = status_num(net, COMUNE, "waiting/headers");
    CHECK(net, held > 0 && held <= HELD_MAX,
        "the comune holds %lld out-of-order headers of one origin (at most %d)", (long long)held,
        HELD_MAX);
    CHECK(net, vv_of(net, COMUNE, PREF) == (int64_t)first - 1,
        "the comune stored headers after a gap");
    /* Still serving while it holds them. */
    char id2[64];
    new_case(net, id2, "lingua.livello=A2");

    /* Now seq 1 and 2: the held ones follow, the dropped ones are asked for again. */
    proto_buf hm = headers_msg_n(f, 0, 2);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    fill_ctx fc = { f, N, first, { 0 } };
    node_origin(net, PREF, fc.origin);
    uint64_t until = now_ms() + 60000;
    while (vv_of(net, COMUNE, PREF) != (int64_t)(first + N - 1) && now_ms() < until) {
        serve_chain(net, p, &fc, 500);
        held = status_num(net, COMUNE, "waiting/headers");
        CHECK(net, held <= HELD_MAX, "the comune holds %lld out-of-order headers", (long long)held);
    }
    CHECK(net, vv_of(net, COMUNE, PREF) == (int64_t)(first + N - 1),
        "the Prefettura's chain did not fill at the comune (vv %lld of %llu)",
        (long long)vv_of(net, COMUNE, PREF), (unsigned long long)(first + N - 1));
    num_want w = { COMUNE, "waiting/headers", 0 };
    CHECK(net, th_wait(net, 5000, num_is, &w), "the comune still holds %lld headers",
        (long long)status_num(net, COMUNE, "waiting/headers"));
    fp_close(p);
    for (size_t i = 0; i < N; i++)
        forged_free(&f[i]);
    free(f);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* Finding 11: one HEADERS message of 5,000 headers of a member's origin with garbage
 * signatures: a handful of header.reject lines, one of them with count=5000. */
static void refused_headers_one_line_per_reason(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, PREF);
    chain c = member_chain(net, PREF);
    proto_identity *pref = member_identity(net, PREF);
    enum { N = 5000 };
    forged *f = calloc(N, sizeof(*f));
    assert_non_null(f);
    forged one;
    assert_int_equal(forge_header(pref, c.seq, c.prev, now_ms(), &one), PROTO_OK);
    for (size_t i = 0; i < N; i++) {
        f[i].header.p = malloc(one.header.len);
        assert_non_null(f[i].header.p);
        f[i].header.len = one.header.len;
        memcpy(f[i].header.p, one.header.p, one.header.len);
        /* The signature is the last 64 bytes of a HEADER: garbage, a different one each. */
        randombytes_buf(f[i].header.p + one.header.len - 64, 64);
    }
    size_t lines = count3(net, COMUNE, "event=header.reject", NULL, NULL);
    fp_peer *p = connect_as(net, COMUNE, pref);
    proto_buf hm = headers_msg_n(f, 0, N);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    barrier(net, p);
    CHECK(net, wait_log(net, COMUNE, 0, 5000, "event=header.reject", "count=5000", "bad signature"),
        "no header.reject line with count=5000 for 5000 badly signed headers");
    size_t more = count3(net, COMUNE, "event=header.reject", NULL, NULL) - lines;
    CHECK(net, more <= 4, "%zu header.reject lines for one message of 5000 bad headers", more);
    CHECK(net, vv_of(net, COMUNE, PREF) == (int64_t)c.seq - 1, "a badly signed header was stored");
    fp_close(p);
    for (size_t i = 0; i < N; i++)
        forged_free(&f[i]);
    free(f);
    forged_free(&one);
    proto_identity_free(pref);
    still_serving(net, true);
}

/* Finding 9: a write grantee's register entry stamped in the year 10889 (the largest HLC wall)
 * inside a delta whose header is stamped now: refused, never merged. */
static void entry_clocks_not_after_header(void **state)
{
    th_net *net = *state;
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    crdt_scope *s = NULL, *delta = NULL;
    assert_int_equal(crdt_scope_clone(v.state, &s), CRDT_OK);
    assert_int_equal(crdt_scope_new(NULL, &delta), CRDT_OK);
    crdt_hlc far = { CRDT_HLC_WALL_MAX, 0 };
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(cpia);
    assert_int_equal(crdt_register_set(s, delta, me, &far, "livello", "C2", 2), CRDT_OK);
    forged f;
    assert_int_equal(forge_delta_of(cpia, v.key, v.state, delta, &v.seen, v.own_seq + 1, v.own_last,
                         now_ms(), &f),
        PROTO_OK);
    const char *reason = "an entry stamped later than its header";
    size_t before = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", reason);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_delta(net, p, &f);
    CHECK(net, wait_log(net, COMUNE, before, 10000, "event=delta.refuse", "org=cpia-1", reason),
        "the comune did not refuse an entry stamped in the year 10889");
    char val[64];
    show_value(net, COMUNE, id, "scopes/lingua/livello", val);
    CHECK(net, strcmp(val, "A1") == 0, "the comune merged it: lingua.livello is '%s'", val);
    /* The owner still writes, and its value wins. */
    th_out o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "case set: %d %s", o.status, o.out);
    th_out_free(&o);
    show_value(net, COMUNE, id, "scopes/lingua/livello", val);
    CHECK(net, strcmp(val, "B2") == 0, "the owner's new value does not show: '%s'", val);
    fp_close(p);
    forged_free(&f);
    crdt_scope_free(s);
    crdt_scope_free(delta);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* A member's box key (the manifest's box_pk of its current key), from its identity. */
static void member_box_pk(th_net *net, size_t i, uint8_t out[32])
{
    proto_identity *id = member_identity(net, i);
    memcpy(out, proto_identity_box_pk(id), 32);
    proto_identity_free(id);
}

/* The org's access-log entries of a scope in node's `case show --json` ("access"), or -1. */
static int access_entries(th_net *net, size_t node, const char *id, const char *scope)
{
    th_out o = th_patto(net, node, "case", "show", id, NULL);
    char path[64];
    snprintf(path, sizeof(path), "access/%s", scope);
    json_object *a = o.status == 0 && o.json ? jget(o.json, path) : NULL;
    int n = a != NULL ? (int)json_object_array_length(a) : -1;
    th_out_free(&o);
    return n;
}

/* Restart cpia-1 with the forged headers as the end of its own log (a modified node that wrote
 * them) and wait until it holds them back from its peers. */
static void cpia_restart_after(th_net *net, const chain *c)
{
    member_own_put(net, CPIA, c->seq - 1, c->prev);
    CHECK(net, th_start(net, CPIA) == 0, "the CPIA did not restart");
    vv_want own = { CPIA, CPIA, (int64_t)c->seq - 1 };
    CHECK(net, th_wait(net, 15000, vv_is, &own), "the CPIA did not get its own headers back");
}

/* Finding 1: the CPIA, granted read on lingua, cannot take the scope over. (a) It re-seals the
 * lingua key it holds, once naming itself the owner (with the nonce from its grant: "cpia-1"
 * does not derive the case id) and once naming comune-1 (its signature is no key of comune-1),
 * to the comune and the Prefettura: both refuse both grants. (b) It writes an owner-style delta
 * (no access-log entry stated) and an access-log entry granting itself write: refused by every
 * holder. The comune's later writes still merge everywhere. */
static void reader_cannot_take_over_a_scope(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    grant(net, id, "cpia-1", "read");
    proto_case_id cid;
    member_view v;
    proto_identity *cpia = stopped_member(net, CPIA, id, &cid, "lingua", &v);
    CHECK(net, access_in(&v) == PROTO_ACCESS_READ && v.entries == 1,
        "the CPIA does not hold its read grant alone (%u, %llu entries)", (unsigned)v.access,
        (unsigned long long)v.entries);
    CHECK(net, strcmp(v.owner, "comune-1") == 0, "the CPIA's key record names owner %s", v.owner);
    uint8_t seeds[64], rpk[2][32];
    member_seeds(net, CPIA, seeds);
    member_box_pk(net, COMUNE, rpk[0]);
    member_box_pk(net, PREF, rpk[1]);
    chain c = { v.own_seq + 1, { 0 } };
    memcpy(c.prev, v.own_last, 32);
    forged f[4];
    uint64_t t = now_ms();

    /* (a) The key re-sealed: owner cpia-1 (built by hand: proto/ refuses to seal it). */
    raw_key rk = { proto_scope_key_epoch(v.key), { 0 } };
    proto_scope_key_export(v.key, rk.key);
    assert_int_equal(forge_grant_raw(seeds, "cpia-1", &cid, &v.nonce, "lingua", &rk, 1, rpk, 2,
                         proto_scope_key_tag(v.key), c.seq, c.prev, t, &f[0]),
        PROTO_OK);
    chain_next(&c, &f[0]);
    /* ... and owner comune-1, sealed by proto/ as a real owner would, signed by cpia-1. */
    proto_recipient rec[2];
    memcpy(rec[0].box_pk, rpk[0], 32);
    memcpy(rec[1].box_pk, rpk[1], 32);
    const proto_scope_key *keys[] = { v.key };
    proto_seal_info info;
    memset(&info, 0, sizeof(info));
    info.seq = c.seq;
    memcpy(info.prev, c.prev, 32);
    info.hlc.wall = t;
    memset(&f[1], 0, sizeof(f[1]));
    assert_int_equal(proto_key_grant_seal(cpia, "comune-1", &v.nonce, keys, 1, &info, rec, 2, NULL,
                         &f[1].header, &f[1].body),
        PROTO_OK);
    forged_id(&f[1]);
    chain_next(&c, &f[1]);
    /* (b) An owner-style delta, and an access-log entry giving cpia-1 write. */
    assert_int_equal(
        forge_delta(cpia, v.key, v.state, 0, "livello", "C2", 0, c.seq, c.prev, t, &f[2]),
        PROTO_OK);
    chain_next(&c, &f[2]);
    proto_body entry;
    memset(&entry, 0, sizeof(entry));
    entry.kind = PROTO_BODY_ACCESS_GRANT;
    entry.entry = v.entries + 1;
    entry.grant.grantee = (proto_bytes) { (const uint8_t *)"cpia-1", 6 };
    entry.grant.access = PROTO_ACCESS_WRITE;
    entry.grant.purpose = (proto_bytes) { (const uint8_t *)"lingua", 6 };
    entry.grant.basis = PROTO_BASIS_PUBLIC_TASK;
    entry.grant.operator_name = (proto_bytes) { (const uint8_t *)"op-cpia-1", 9 };
    assert_int_equal(forge_body(cpia, v.key, &entry, c.seq, c.prev, t, &f[3]), PROTO_OK);
    chain_next(&c, &f[3]);

    size_t rej[3], refuse = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", NULL),
                   access = count3(net, COMUNE, "event=access.reject", "org=cpia-1", NULL);
    for (size_t i = 0; i < 3; i++)
        rej[i] = count3(net, i, "event=grant.reject", "org=cpia-1", NULL);
    fp_peer *pc = connect_as(net, COMUNE, cpia), *pp = connect_as(net, PREF, cpia);
    push_all(net, pc, f, 4);
    push_all(net, pp, f, 4);
    barrier(net, pc);
    barrier(net, pp);
    static const size_t judges[] = { COMUNE, PREF };
    for (size_t k = 0; k < 2; k++) {
        size_t i = judges[k];
        CHECK(net, wait_log(net, i, rej[i] + 1, 10000, "event=grant.reject", "org=cpia-1", NULL),
            "%s refused %zu of the CPIA's 2 re-sealed grants", net->nodes[i].org,
            count3(net, i, "event=grant.reject", "org=cpia-1", NULL) - rej[i]);
        CHECK(net,
            count3(net, i, "event=grant.reject", "org=cpia-1", "a case another org owns") > 0,
            "%s did not refuse the grant naming comune-1 as a grant of another org's case",
            net->nodes[i].org);
    }
    CHECK(net, wait_log(net, COMUNE, refuse, 10000, "event=delta.refuse", "org=cpia-1", NULL),
        "the comune did not refuse the CPIA's owner-style delta");
    CHECK(net,
        wait_log(net, COMUNE, access, 10000, "event=access.reject", "org=cpia-1",
            "does not own the case"),
        "the comune did not refuse the CPIA's access-log entry");
    fp_close(pc);
    fp_close(pp);
    th_out o = th_patto(net, PREF, "case", "show", id, NULL);
    CHECK(net, o.status == 3, "the Prefettura reads the case after the CPIA's grants: %d %s",
        o.status, o.out);
    th_out_free(&o);

    /* Every holder decides alike: the CPIA, back with these headers as its own, refuses its own
     * delta and entry too. */
    size_t cref = count3(net, CPIA, "event=delta.refuse", "org=cpia-1", NULL),
           cacc = count3(net, CPIA, "event=access.reject", "org=cpia-1", NULL);
    cpia_restart_after(net, &c);
    CHECK(net, wait_log(net, CPIA, cref, 10000, "event=delta.refuse", "org=cpia-1", NULL),
        "the CPIA did not refuse its own owner-style delta");
    CHECK(net, wait_log(net, CPIA, cacc, 10000, "event=access.reject", "org=cpia-1", NULL),
        "the CPIA did not refuse its own access-log entry");

    /* The comune's writes merge at every holder, and it shows its own values and log. */
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "case set at the comune: %d %s", o.status, o.out);
    th_out_free(&o);
    show_want b2 = { CPIA, id, "scopes/lingua/livello", "B2" };
    CHECK(net, th_wait(net, 15000, shows, &b2), "the CPIA did not merge the comune's write");
    show_want own = { COMUNE, id, "scopes/lingua/livello", "B2" };
    CHECK(net, shows(net, &own), "the comune does not show its own value");
    show_want owner = { COMUNE, id, "owner", "comune-1" };
    CHECK(net, shows(net, &owner), "the comune does not show itself as the owner");
    owner.node = CPIA;
    CHECK(net, shows(net, &owner), "the CPIA does not show comune-1 as the owner");
    CHECK(net, access_entries(net, COMUNE, id, "lingua") == 1,
        "the comune's lingua access log holds %d entries (1: the read grant)",
        access_entries(net, COMUNE, id, "lingua"));
    CHECK(net, access_entries(net, CPIA, id, "lingua") == 1,
        "the CPIA's lingua access log holds %d entries (1: the read grant)",
        access_entries(net, CPIA, id, "lingua"));
    for (size_t i = 0; i < 4; i++)
        forged_free(&f[i]);
    proto_wipe(seeds, sizeof(seeds));
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, true);
}

/* Finding 2: the CPIA, which reads lingua and so knows the case id and its nonce, makes its own
 * keys for the case's sociale scope (epochs 1 and 2) and grants them to the comune and the
 * Prefettura: refused at both (an owner check: the grant's signer is no key of the case's
 * owner). The comune's next sociale write is under its own key, and nothing of it reaches the
 * CPIA, which holds no sociale grant. */
typedef struct body_check {
    uint8_t origin[32];
    uint64_t seq;
    const proto_case_id *cid;
    /* out */
    bool header, body;
    uint8_t tag[32], own_tag[32];
    bool own_key;
} body_check;

static node_err body_check_cb(node_txn *t, void *ctx)
{
    body_check *b = ctx;
    const void *hb;
    size_t hl;
    b->header = node__ledger_header_get(t, b->origin, b->seq, &hb, &hl) == NODE_OK;
    if (b->header) {
        proto_header h;
        if (proto_header_decode(hb, hl, NULL, &h, NULL) != PROTO_OK)
            return NODE_ECORRUPT;
        memcpy(b->tag, h.tag, 32);
        b->body = node__ledger_body_has(t, h.id);
    }
    ledger_key k;
    b->own_key = node__ledger_key_for(t, b->cid, "sociale", &k) == NODE_OK;
    if (b->own_key)
        memcpy(b->own_tag, k.tag, 32);
    proto_wipe(&k, sizeof(k));
    return NODE_OK;
}

static void member_cannot_hijack_another_scope(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case2(net, id, "lingua.livello=A1", "sociale.fascia_isee=0-6000");
    grant(net, id, "cpia-1", "read");
    proto_case_id cid;
    member_view v;
    proto_identity *cpia = stopped_member(net, CPIA, id, &cid, "lingua", &v);
    proto_scope_key *k1 = NULL, *k2 = NULL;
    assert_int_equal(proto_scope_key_new(&cid, "sociale", 1, NULL, &k1), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&cid, "sociale", 2, NULL, &k2), PROTO_OK);
    const proto_scope_key *keys[] = { k1, k2 };
    proto_recipient rec[2];
    member_box_pk(net, COMUNE, rec[0].box_pk);
    member_box_pk(net, PREF, rec[1].box_pk);
    chain c = { v.own_seq + 1, { 0 } };
    memcpy(c.prev, v.own_last, 32);
    proto_seal_info info;
    memset(&info, 0, sizeof(info));
    info.seq = c.seq;
    memcpy(info.prev, c.prev, 32);
    info.hlc.wall = now_ms();
    forged g;
    memset(&g, 0, sizeof(g));
    assert_int_equal(proto_key_grant_seal(cpia, "comune-1", &v.nonce, keys, 2, &info, rec, 2, NULL,
                         &g.header, &g.body),
        PROTO_OK);
    forged_id(&g);
    chain_next(&c, &g);
    size_t rej[3];
    for (size_t i = 0; i < 3; i++)
        rej[i] = count3(net, i, "event=grant.reject", "org=cpia-1", "scope=sociale");
    fp_peer *pc = connect_as(net, COMUNE, cpia), *pp = connect_as(net, PREF, cpia);
    push_all(net, pc, &g, 1);
    push_all(net, pp, &g, 1);
    barrier(net, pc);
    barrier(net, pp);
    CHECK(net,
        wait_log(
            net, COMUNE, rej[COMUNE], 10000, "event=grant.reject", "org=cpia-1", "scope=sociale"),
        "the comune took the CPIA's keys for its own case's sociale scope");
    CHECK(net,
        wait_log(net, PREF, rej[PREF], 10000, "event=grant.reject", "org=cpia-1", "scope=sociale"),
        "the Prefettura did not refuse the CPIA's sociale grant");
    fp_close(pc);
    fp_close(pp);
    th_out o = th_patto(net, PREF, "case", "show", id, NULL);
    CHECK(net, o.status == 3, "the Prefettura reads the case: %d %s", o.status, o.out);
    th_out_free(&o);
    cpia_restart_after(net, &c);

    /* The comune's next sociale write, then a lingua write (which the CPIA merges: anything of
     * the sociale write for the CPIA would have come before it on the same link). */
    o = th_patto_write(net, COMUNE, "case", "set", id, "sociale.fascia_isee=6000-9360", NULL);
    CHECK(net, o.status == 0, "case set sociale: %d %s", o.status, o.out);
    th_out_free(&o);
    int64_t sociale_seq = vv_of(net, COMUNE, COMUNE);
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=A2", NULL);
    CHECK(net, o.status == 0, "case set lingua: %d %s", o.status, o.out);
    th_out_free(&o);
    show_want a2 = { CPIA, id, "scopes/lingua/livello", "A2" };
    CHECK(net, th_wait(net, 15000, shows, &a2), "the CPIA did not merge the lingua write");
    show_want soc = { COMUNE, id, "scopes/sociale/fascia_isee", "6000-9360" };
    CHECK(net, shows(&*net, &soc), "the comune does not show its sociale write");
    o = th_patto(net, CPIA, "case", "show", id, NULL);
    CHECK(net, o.status == 0 && o.json != NULL && jget(o.json, "scopes/sociale") == NULL,
        "the CPIA reads sociale: %d %.300s", o.status, o.out);
    th_out_free(&o);
    still_serving(net, true);

    /* In the stores: the CPIA holds the sociale header and no body of it; its tag is the comune's
     * own sociale key's, neither of the CPIA's. */
    stop_node(net, CPIA);
    stop_node(net, COMUNE);
    body_check bc;
    memset(&bc, 0, sizeof(bc));
    node_origin(net, COMUNE, bc.origin);
    bc.seq = (uint64_t)sociale_seq;
    bc.cid = &cid;
    member_store_read(net, CPIA, body_check_cb, &bc, "the comune's sociale header");
    CHECK(net, bc.header, "the CPIA lacks the comune's sociale header");
    CHECK(net, !bc.body, "the CPIA holds the body of the comune's sociale write");
    CHECK(net, !bc.own_key, "the CPIA holds a sociale key of the case (its own grant's)");
    uint8_t tag[32];
    memcpy(tag, bc.tag, 32);
    member_store_read(net, COMUNE, body_check_cb, &bc, "its sociale key");
    CHECK(net, bc.own_key && memcmp(bc.own_tag, tag, 32) == 0,
        "the comune's sociale write is not under its own key");
    CHECK(net,
        memcmp(tag, proto_scope_key_tag(k1), 32) != 0
            && memcmp(tag, proto_scope_key_tag(k2), 32) != 0,
        "the comune wrote sociale under a key the CPIA made");
    forged_free(&g);
    proto_scope_key_free(k1);
    proto_scope_key_free(k2);
    member_view_fini(&v);
    proto_identity_free(cpia);
}

/* Finding 3: a write grantee's delta whose causal context names the owner's dot 2^64-1 (which
 * would delete every later write of the owner's) waits and is never merged; the owner's next
 * writes merge everywhere. A non-owner's redaction of the owner's timeline event is refused. */
static void future_dot_in_context_waits(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case2(net, id, "lingua.livello=A1", "servizi.eventi+={\"tipo\":\"colloquio\"}");
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "lingua,servizi", "--purpose", "lingua", "--basis", "public-task", "--provision",
        "D.Lgs. 286/1998 art. 4-bis", "--access", "write", NULL);
    CHECK(net, o.status == 0, "consent grant: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    proto_case_id cid;
    member_view v, sv;
    proto_identity *cpia = stopped_member(net, CPIA, id, &cid, "lingua", &v);
    memset(&sv, 0, sizeof(sv));
    sv.case_id = &cid;
    sv.scope = "servizi";
    sv.org = "cpia-1";
    member_view_read(net, CPIA, &sv);
    CHECK(net, access_in(&v) == PROTO_ACCESS_WRITE && access_in(&sv) == PROTO_ACCESS_WRITE,
        "the CPIA does not hold its write grants");
    chain c = { v.own_seq + 1, { 0 } };
    memcpy(c.prev, v.own_last, 32);
    uint64_t t = now_ms();
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(cpia);

    /* lingua.livello=C2 with a context that also names (comune, 2^64-1). */
    crdt_scope *s = NULL, *delta = NULL;
    assert_int_equal(crdt_scope_clone(v.state, &s), CRDT_OK);
    assert_int_equal(crdt_scope_new(NULL, &delta), CRDT_OK);
    crdt_hlc hlc = { t, 0 };
    assert_int_equal(crdt_register_set(s, delta, me, &hlc, "livello", "C2", 2), CRDT_OK);
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    assert_int_equal(crdt_cc_copy(&cc, crdt_scope_cc(delta)), CRDT_OK);
    crdt_dot future;
    node_origin(net, COMUNE, future.origin.b);
    future.counter = UINT64_MAX;
    assert_int_equal(crdt_cc_add(&cc, &future), CRDT_OK);
    assert_int_equal(crdt_scope_set_cc(delta, &cc), CRDT_OK);
    crdt_cc_fini(&cc);
    forged f[2];
    assert_int_equal(
        forge_delta_of(cpia, v.key, v.state, delta, &v.seen, c.seq, c.prev, t, &f[0]), PROTO_OK);
    chain_next(&c, &f[0]);
    crdt_scope_free(s);
    crdt_scope_free(delta);

    /* The comune's event redacted by cpia-1. */
    crdt_event ev;
    assert_int_equal(crdt_timeline_at(sv.state, "eventi", 0, &ev), CRDT_OK);
    CHECK(net, memcmp(ev.id.origin.b, future.origin.b, 32) == 0, "the event is not the comune's");
    assert_int_equal(crdt_scope_clone(sv.state, &s), CRDT_OK);
    assert_int_equal(crdt_scope_new(NULL, &delta), CRDT_OK);
    assert_int_equal(crdt_timeline_redact(s, delta, "eventi", &ev.id), CRDT_OK);
    assert_int_equal(
        forge_delta_of(cpia, sv.key, sv.state, delta, &sv.seen, c.seq, c.prev, t, &f[1]), PROTO_OK);
    chain_next(&c, &f[1]);
    crdt_scope_free(s);
    crdt_scope_free(delta);

    const char *redact = "a redaction of another member's event";
    size_t before = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", redact);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_all(net, p, f, 2);
    barrier(net, p);
    CHECK(net, wait_log(net, COMUNE, before, 10000, "event=delta.refuse", "org=cpia-1", redact),
        "the comune did not refuse the CPIA's redaction of its event");
    num_want waits = { COMUNE, "waiting/causal", 1 };
    CHECK(net, th_wait(net, 10000, num_is, &waits),
        "the delta naming a future dot of the comune's does not wait (waiting.causal %lld)",
        (long long)status_num(net, COMUNE, "waiting/causal"));
    fp_close(p);
    cpia_restart_after(net, &c);

    /* The owner's next writes merge at the owner and at the CPIA. */
    o = th_patto_write(
        net, COMUNE, "case", "set", id, "lingua.livello=B1", "lingua.ore_frequenza+=3", NULL);
    CHECK(net, o.status == 0, "case set at the comune: %d %s", o.status, o.out);
    th_out_free(&o);
    o = th_patto_write(net, COMUNE, "case", "set", id, "lingua.livello=B2", NULL);
    CHECK(net, o.status == 0, "case set at the comune: %d %s", o.status, o.out);
    th_out_free(&o);
    show_want b2 = { CPIA, id, "scopes/lingua/livello", "B2" };
    CHECK(net, th_wait(net, 15000, shows, &b2), "the CPIA did not merge the comune's writes");
    b2.node = COMUNE;
    CHECK(net, shows(net, &b2), "the comune does not show its own write");
    counter_want hours = { CPIA, id, 3 };
    CHECK(net, th_wait(net, 10000, counter_is, &hours), "the CPIA does not count the 3 hours");
    hours.node = COMUNE;
    CHECK(net, counter_is(net, &hours), "the comune does not count its 3 hours");
    CHECK(net, status_num(net, COMUNE, "waiting/causal") >= 1,
        "the delta naming a future dot stopped waiting at the comune");
    o = th_patto(net, COMUNE, "case", "show", id, NULL);
    json_object *e0 = o.json ? jget(o.json, "scopes/servizi/eventi") : NULL;
    e0 = e0 != NULL && json_object_array_length(e0) == 1 ? json_object_array_get_idx(e0, 0) : NULL;
    json_object *red = e0 != NULL ? jget(e0, "redacted") : NULL;
    CHECK(net, e0 != NULL && (red == NULL || !json_object_get_boolean(red)),
        "the comune's event is redacted or gone: %.300s", o.out);
    th_out_free(&o);
    forged_free(&f[0]);
    forged_free(&f[1]);
    member_view_fini(&v);
    member_view_fini(&sv);
    proto_identity_free(cpia);
    still_serving(net, true);
}

/* Finding 3, its last part: a write grantee's new dots must follow those it had seen without
 * a gap. A delta of cpia-1 whose register entry carries its dot 11 (its version vector says it
 * had seen none of its dots) is refused at the owner and shows nothing; its next delta, made
 * right, merges. */
static void new_dots_must_be_consecutive(void **state)
{
    th_net *net = *state;
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(cpia);
    CHECK(net, crdt_cc_vv_max(crdt_scope_cc(v.state), me) == 0,
        "the CPIA wrote lingua before the test did");

    /* livello=C2 on a state whose context pretends the CPIA's dot 10 was made already. */
    crdt_scope *s = NULL, *delta = NULL;
    assert_int_equal(crdt_scope_clone(v.state, &s), CRDT_OK);
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    assert_int_equal(crdt_cc_copy(&cc, crdt_scope_cc(s)), CRDT_OK);
    crdt_dot ten = { *me, 10 };
    assert_int_equal(crdt_cc_add(&cc, &ten), CRDT_OK);
    assert_int_equal(crdt_scope_set_cc(s, &cc), CRDT_OK);
    crdt_cc_fini(&cc);
    assert_int_equal(crdt_scope_new(NULL, &delta), CRDT_OK);
    crdt_hlc hlc = { now_ms(), 0 };
    assert_int_equal(crdt_register_set(s, delta, me, &hlc, "livello", "C2", 2), CRDT_OK);
    const crdt_cc *dcc = crdt_scope_cc(delta);
    CHECK(net, crdt_cc_vv_max(dcc, me) == 0 && dcc->ncloud > 0,
        "the forged delta does not carry a dot beyond a gap");
    forged gap;
    assert_int_equal(
        forge_delta_of(cpia, v.key, v.state, delta, &v.seen, c.seq, c.prev, hlc.wall, &gap),
        PROTO_OK);
    chain_next(&c, &gap);
    crdt_scope_free(s);
    crdt_scope_free(delta);

    static const char *const why = "its new dots skip numbers";
    size_t before = count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", why);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_all(net, p, &gap, 1);
    CHECK(net, wait_log(net, COMUNE, before, 15000, "event=delta.refuse", "org=cpia-1", why),
        "the comune did not refuse a delta whose new dot skips numbers");
    show_want c2 = { COMUNE, id, "scopes/lingua/livello", "C2" };
    CHECK(net, !shows(net, &c2), "the comune shows the refused value");
    /* A delta made right (the CPIA's dot 1) merges. */
    push_write(net, p, cpia, &v, &c, "livello", "B1", 0, NULL);
    show_want b1 = { COMUNE, id, "scopes/lingua/livello", "B1" };
    CHECK(net, th_wait(net, 15000, shows, &b1),
        "the comune did not merge the CPIA's next delta, made right");
    forged_free(&gap);
    fp_close(p);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* Four deltas of the CPIA (write grant) that create one dot, livello=B1, C1, B2, C2, all made
 * on the same state (its dot 1 four times, at four seqs), their bodies in one message: all are
 * void at the owner, which shows the value from before them, A1, says so, and decides the scope
 * again once, not once per delta; the CPIA's next delta, made after them, merges. */
static void one_dot_twice_voids_both(void **state)
{
    th_net *net = *state;
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    uint64_t t = now_ms();
    enum { N = 4 };
    static const char *const values[N] = { "B1", "C1", "B2", "C2" };
    forged f[N];
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(forge_delta(cpia, v.key, v.state, &v.seen, "livello", values[i], 0, c.seq,
                             c.prev, t + i, &f[i]),
            PROTO_OK);
        chain_next(&c, &f[i]);
    }
    size_t before = count3(net, COMUNE, "event=delta.redecided", "org=cpia-1", "now=void");
    size_t rebuilds = count3(net, COMUNE, "event=rebuild.done", "a dot created twice", "");
    /* The headers in one message, the bodies in another: the comune takes the bodies in one
     * transaction, and decides the scope again once for the three that create B1's dot again. */
    fp_peer *p = connect_as(net, COMUNE, cpia);
    proto_buf hm = headers_msg_n(f, 0, N);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    proto_buf bm = bodies_msg_n(f, N);
    send_msg(net, p, &bm);
    proto_buf_free(&bm);
    barrier(net, p);
    CHECK(net,
        wait_log(net, COMUNE, before, 15000, "event=delta.redecided", "org=cpia-1", "now=void"),
        "the comune did not void the first delta once the others created its dot again");
    CHECK(net,
        count3(net, COMUNE, "event=delta.void", "org=cpia-1", "another delta of its author")
            == N - 1,
        "the comune did not log the other %d deltas as void", N - 1);
    CHECK(net, count3(net, COMUNE, "event=rebuild.done", "a dot created twice", "") == rebuilds + 1,
        "the comune decided the scope again %zu times for one message (once is enough)",
        count3(net, COMUNE, "event=rebuild.done", "a dot created twice", "") - rebuilds);
    show_want a1 = { COMUNE, id, "scopes/lingua/livello", "A1" };
    CHECK(net, shows(net, &a1), "the comune shows a value of a delta that created a dot twice");
    /* Made after both (their dots are its past), the CPIA's next delta merges. */
    crdt_scope *s = NULL, *d = NULL;
    assert_int_equal(crdt_scope_clone(v.state, &s), CRDT_OK);
    assert_int_equal(crdt_scope_new(NULL, &d), CRDT_OK);
    crdt_hlc hlc = { t + 2, 0 };
    const crdt_origin *me = (const crdt_origin *)(const void *)proto_identity_origin(cpia);
    assert_int_equal(crdt_register_set(s, d, me, &hlc, "livello", "B1", 2), CRDT_OK);
    crdt_scope_free(d);
    crdt_scope_free(v.state);
    v.state = s;
    push_write(net, p, cpia, &v, &c, "livello", "A2", 0, NULL);
    show_want a2 = { COMUNE, id, "scopes/lingua/livello", "A2" };
    CHECK(net, th_wait(net, 15000, shows, &a2), "the comune did not merge the CPIA's next delta");
    fp_close(p);
    for (size_t i = 0; i < N; i++)
        forged_free(&f[i]);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, false);
}

/* Read what the node sends on p for up to ms milliseconds, answering its pings (an empty
 * WANT) and its wants of forged bodies (f[0..n)) as the bodies' author would; the rest is
 * dropped. Returns how many bodies were asked for. */
static size_t serve_wants(th_net *net, fp_peer *p, const forged *f, size_t n, int ms)
{
    size_t asked = 0;
    uint64_t until = now_ms() + (uint64_t)ms;
    for (uint64_t t = now_ms(); t < until; t = now_ms()) {
        proto_buf m;
        unsigned kind = 0;
        if (fp_recv(p, (int)(until - t), &m, &kind) != FP_OK)
            break;
        proto_want_msg w;
        if (kind == PROTO_K_WANT && proto_want_decode(m.p, m.len, NULL, &w, NULL) == PROTO_OK) {
            if (w.n == 0) {
                proto_bodies_msg pong = { NULL, 0, NULL };
                proto_buf out = { NULL, 0 };
                assert_int_equal(proto_bodies_encode(&pong, &out), PROTO_OK);
                send_msg(net, p, &out);
                proto_buf_free(&out);
            }
            for (size_t i = 0; i < w.n; i++)
                for (size_t k = 0; k < n; k++) {
                    if (memcmp(w.ids[i].b, f[k].id, 32) != 0)
                        continue;
                    proto_buf bm = bodies_msg(&f[k]);
                    send_msg(net, p, &bm);
                    proto_buf_free(&bm);
                    asked++;
                }
            proto_want_fini(&w);
        }
        proto_buf_free(&m);
    }
    return asked;
}

/* Findings 3 and 11, the pending quota: a write grantee's deltas that state an access-log entry
 * the owner has not written yet wait (they are never refused for waiting), but at most
 * [sync] pending_per_author of them (20 here) at once: the highest seqs are dropped, logged once.
 * Unrelated cases merged meanwhile do not make the node decrypt them again. When the owner
 * writes that entry, the waiting ones merge and the dropped ones are asked for
 * again, in seq order, and merge too: each delta adds one hour on top of the one before, so the
 * count reaches N only when all of them merged. */
static void waiting_deltas_within_quota(void **state)
{
    th_net *net = *state;
    enum { N = 50, QUOTA = 20 };
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    crdt_origin co;
    proto_counter_origin(proto_identity_origin(cpia), "ore_frequenza", 13, co.b);
    crdt_scope *s = NULL;
    assert_int_equal(crdt_scope_clone(v.state, &s), CRDT_OK);
    forged *f = calloc(N, sizeof(*f));
    assert_non_null(f);
    /* The entry the comune writes next, at its next seq (the grant below). */
    seen_entry next = { v.seen.n + 1, { 0 }, (uint64_t)vv_of(net, COMUNE, COMUNE) + 1 };
    node_origin(net, COMUNE, next.origin);
    uint64_t t = now_ms();
    for (size_t i = 0; i < N; i++) {
        crdt_scope *before = NULL, *delta = NULL;
        assert_int_equal(crdt_scope_clone(s, &before), CRDT_OK);
        assert_int_equal(crdt_scope_new(NULL, &delta), CRDT_OK);
        assert_int_equal(crdt_counter_add(s, delta, &co, "ore_frequenza", 1), CRDT_OK);
        assert_int_equal(
            forge_delta_of(cpia, v.key, before, delta, &next, c.seq, c.prev, t, &f[i]), PROTO_OK);
        chain_next(&c, &f[i]);
        crdt_scope_free(before);
        crdt_scope_free(delta);
    }
    crdt_scope_free(s);

    size_t drops = count3(net, COMUNE, "event=delta.drop", "org=cpia-1", "quota=20");
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_all(net, p, f, N);
    barrier(net, p);
    num_want waiting = { COMUNE, "waiting/causal", QUOTA };
    CHECK(net, th_wait(net, 10000, num_is, &waiting),
        "the comune does not hold exactly its quota of the CPIA's waiting deltas (%lld)",
        (long long)status_num(net, COMUNE, "waiting/causal"));
    CHECK(net, wait_log(net, COMUNE, drops, 10000, "event=delta.drop", "org=cpia-1", "quota=20"),
        "the comune did not log that it dropped the CPIA's deltas beyond the quota");
    CHECK(net, status_num(net, COMUNE, "waiting/held_back_authors") == 1,
        "the comune does not hold the CPIA back");
    CHECK(net, count3(net, COMUNE, "event=delta.refuse", "org=cpia-1", "") == 0,
        "the comune refused a waiting delta of the CPIA's");
    /* More of them, pushed again, do not grow what waits. */
    push_all(net, p, f, N);
    barrier(net, p);
    CHECK(net, status_num(net, COMUNE, "waiting/causal") == QUOTA,
        "the comune holds %lld of the CPIA's waiting deltas after a second push (at most %d)",
        (long long)status_num(net, COMUNE, "waiting/causal"), QUOTA);

    /* Unrelated work does not make the comune try them again: the Prefettura opens three
     * cases and grants each to the comune, which merges them and tries none of the waiting
     * ones again (their scope took nothing in). */
    int64_t retried = status_num(net, COMUNE, "counts/waits_retried");
    for (int k = 0; k < 3; k++) {
        char other[64];
        th_out o = th_patto_write(net, PREF, "case", "new", "lingua.livello=B2", NULL);
        CHECK(net, o.status == 0 && o.json != NULL, "case new at the Prefettura: %d %s", o.status,
            o.out);
        snprintf(other, sizeof(other), "%s", jstr(o.json, "id"));
        th_out_free(&o);
        o = th_patto_write(net, PREF, "consent", "grant", other, "--to", "comune-1", "--scopes",
            "lingua", "--purpose", "lingua", "--basis", "public-task", "--provision",
            "D.Lgs. 286/1998 art. 4-bis", "--access", "read", NULL);
        CHECK(net, o.status == 0, "consent grant at the Prefettura: %d %s", o.status, o.out);
        th_out_free(&o);
        show_want b2 = { COMUNE, other, "scopes/lingua/livello", "B2" };
        CHECK(
            net, th_wait(net, 15000, shows, &b2), "the comune did not merge the Prefettura's case");
    }
    int64_t again = status_num(net, COMUNE, "counts/waits_retried");
    printf("hostile: %d waiting deltas tried again %lld times while 3 unrelated cases merged\n",
        QUOTA, (long long)(again - retried));
    CHECK(net, again - retried < QUOTA,
        "the comune tried the CPIA's waiting deltas again %lld times while merging unrelated "
        "cases",
        (long long)(again - retried));

    /* The owner writes the entry they stated: all N merge, the dropped ones asked for again. */
    grant(net, id, "prefettura-1", "read");
    counter_want hours = { COMUNE, id, N };
    size_t asked = 0;
    uint64_t until = now_ms() + 30000;
    while (!counter_is(net, &hours) && now_ms() < until)
        asked += serve_wants(net, p, f, N, 300);
    CHECK(net, counter_is(net, &hours), "the comune did not merge all %d deltas (asked for %zu)", N,
        asked);
    CHECK(net, asked >= N - QUOTA, "the comune asked for %zu dropped deltas again (%d dropped)",
        asked, N - QUOTA);
    CHECK(net,
        status_num(net, COMUNE, "waiting/causal") == 0
            && status_num(net, COMUNE, "waiting/held_back_authors") == 0,
        "the comune still holds the CPIA back or waits");
    fp_close(p);
    for (size_t i = 0; i < N; i++)
        forged_free(&f[i]);
    free(f);
    member_view_fini(&v);
    proto_identity_free(cpia);
    still_serving(net, true);
}

/* The CPIA's status lists lingua closed because it expired, purged. */
static bool closed_as_expired(th_net *net, void *ctx)
{
    (void)ctx;
    th_out o = th_patto(net, CPIA, "status", NULL);
    json_object *c = o.status == 0 && o.json ? jget(o.json, "closed") : NULL;
    json_object *x
        = c != NULL && json_object_array_length(c) == 1 ? json_object_array_get_idx(c, 0) : NULL;
    bool ok = x != NULL && strcmp(jstr(x, "scope"), "lingua") == 0
        && strcmp(jstr(x, "reason"), "expired") == 0 && json_object_get_boolean(jget(x, "purged"));
    th_out_free(&o);
    return ok;
}

/* The Prefettura's consent list of case ctx holds the owner's narrowing of the CPIA, reason
 * expired. */
static bool pref_has_expiry_narrowing(th_net *net, void *ctx)
{
    th_out o = th_patto(net, PREF, "consent", "list", (const char *)ctx, NULL);
    json_object *grants = o.status == 0 && o.json ? jget(o.json, "grants") : NULL;
    bool narrowed = false;
    for (size_t k = 0; grants != NULL && k < json_object_array_length(grants); k++) {
        json_object *g = json_object_array_get_idx(grants, k);
        narrowed = narrowed
            || (strcmp(jstr(g, "kind"), "narrowing") == 0 && strcmp(jstr(g, "to"), "cpia-1") == 0
                && strcmp(jstr(g, "reason"), "expired") == 0
                && strcmp(jstr(g, "state"), "expired") == 0);
    }
    th_out_free(&o);
    return narrowed;
}

/* Expiry with the owner offline: the comune grants the CPIA write on lingua until today and the
 * Prefettura read, then goes offline. Two days on (the test clock of a test build,
 * PATTOD_TEST_CLOCK_OFFSET_MS), a delta of the CPIA's stamped then is refused by the Prefettura
 * ("stamped after its write grant expired"), which shows the grant as expired in consent list;
 * the CPIA's own node, two days on too, no longer shows the scope. */
static void expiry_enforced_while_owner_offline(void **state)
{
    th_net *net = *state;
    char id[64], today[16];
    proto_civil rome;
    proto_rome_civil(now_ms(), &rome);
    snprintf(today, sizeof(today), "%04d-%02d-%02d", rome.year, rome.month, rome.day);
    new_case(net, id, "lingua.livello=A1");
    th_out o = th_patto_write(net, COMUNE, "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "lingua", "--purpose", "lingua", "--basis", "consent", "--access", "write", "--until",
        today, NULL);
    CHECK(net, o.status == 0, "consent grant until today: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    grant(net, id, "prefettura-1", "read");
    show_want a1 = { PREF, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 15000, shows, &a1), "the Prefettura does not show lingua");
    proto_case_id cid;
    member_view v;
    proto_identity *cpia = stopped_member(net, CPIA, id, &cid, "lingua", &v);
    CHECK(net, access_in(&v) == PROTO_ACCESS_WRITE, "the CPIA does not hold its write grant");
    stop_node(net, COMUNE); /* the owner is offline from here on */

    const uint64_t two_days = 2ull * 86400 * 1000;
    stop_node(net, PREF);
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", "172800000", 1);
    int started = th_start(net, PREF);
    unsetenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    CHECK(net, started == 0, "the Prefettura does not start with a test clock");
    CHECK(net, wait_log(net, PREF, 0, 5000, "event=clock.test", "offset_ms=172800000", NULL),
        "the Prefettura does not say its clock is moved (is this a test build?)");
    forged f;
    assert_int_equal(forge_delta(cpia, v.key, v.state, &v.seen, "livello", "C2", 0, v.own_seq + 1,
                         v.own_last, now_ms() + two_days, &f),
        PROTO_OK);
    size_t before = count3(net, PREF, "event=delta.refuse", "org=cpia-1", "");
    fp_peer *p = connect_as(net, PREF, cpia);
    push_delta(net, p, &f);
    barrier(net, p);
    CHECK(net,
        wait_log(net, PREF, before, 10000, "event=delta.refuse", "org=cpia-1",
            "stamped after its write grant expired"),
        "the Prefettura did not refuse a write stamped after the grant's end");
    CHECK(net, shows(net, &a1), "the Prefettura shows a write stamped after the grant's end");
    o = th_patto(net, PREF, "consent", "list", id, NULL);
    json_object *grants = o.status == 0 && o.json ? jget(o.json, "grants") : NULL;
    bool expired = false;
    for (size_t k = 0; grants != NULL && k < json_object_array_length(grants); k++) {
        json_object *g = json_object_array_get_idx(grants, k);
        expired = expired
            || (strcmp(jstr(g, "to"), "cpia-1") == 0 && strcmp(jstr(g, "state"), "expired") == 0);
    }
    CHECK(net, expired, "consent list at the Prefettura: %d %s", o.status, o.out);
    th_out_free(&o);
    fp_close(p);

    /* The CPIA two days on: lingua, its only scope of the case, is no longer shown. */
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", "172800000", 1);
    started = th_start(net, CPIA);
    unsetenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    CHECK(net, started == 0, "the CPIA does not start with a test clock");
    o = th_patto(net, CPIA, "case", "show", id, NULL);
    CHECK(net, o.status == 3, "the CPIA still shows a scope whose grant ended: %d %s", o.status,
        o.out);
    th_out_free(&o);

    /* The owner back, two days on too: it closes the ended grant itself (a narrowing, reason
     * expired, with its cut, and a new key for the Prefettura alone), and the CPIA, whose grant
     * rested on consent, purges its copy. */
    setenv("PATTOD_TEST_CLOCK_OFFSET_MS", "172800000", 1);
    started = th_start(net, COMUNE);
    unsetenv("PATTOD_TEST_CLOCK_OFFSET_MS");
    CHECK(net, started == 0, "the comune does not start with a test clock");
    CHECK(net,
        wait_log(net, COMUNE, 0, 15000, "event=consent.close", "org=cpia-1", "reason=expired"),
        "the owner did not close the grant that ended");
    CHECK(net, th_wait(net, 15000, closed_as_expired, NULL),
        "the CPIA did not purge the scope whose grant the owner closed");
    /* The Prefettura takes the narrowing by gossip, in its own time: wait for it. */
    CHECK(net, th_wait(net, 15000, pref_has_expiry_narrowing, id),
        "the Prefettura lacks the owner's narrowing of the CPIA (reason expired)");
    forged_free(&f);
    member_view_fini(&v);
    proto_identity_free(cpia);
}

/* A retirement is a cut for every scope: the CPIA (write grant) writes livello=B2 and the
 * comune merges it; then the admin retires the CPIA's key after a seq before that write. Once
 * the comune takes that manifest, the write is void (decided again through the rebuild) and the
 * comune shows A1 again, also after a restart. */
static void retired_key_voids_what_came_before_the_manifest(void **state)
{
    th_net *net = *state;
    char id[64];
    proto_case_id cid;
    member_view v;
    chain c;
    proto_identity *cpia = writer_cpia(net, id, &cid, &v, &c);
    char seq[32], man[400];
    snprintf(seq, sizeof(seq), "%" PRIu64, v.own_seq);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    push_write(net, p, cpia, &v, &c, "livello", "B2", 0, NULL);
    show_want b2 = { COMUNE, id, "scopes/lingua/livello", "B2" };
    CHECK(net, th_wait(net, 15000, shows, &b2), "the comune did not merge the CPIA's write");
    fp_close(p);

    const char *retire[] = { "network", "retire", net->admin, "cpia-1", "--last-seq", seq, NULL };
    th_out o = th_patto_raw(retire);
    CHECK(net, o.status == 0, "network retire: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    snprintf(man, sizeof(man), "%s/retire.bin", net->root);
    const char *sign[] = { "network", "sign", net->admin, "--out", man, NULL };
    o = th_patto_raw(sign);
    CHECK(net, o.status == 0, "network sign: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    size_t before = count3(net, COMUNE, "event=delta.redecided", "org=cpia-1", "now=void");
    o = th_patto(net, COMUNE, "manifest", "import", man, NULL);
    CHECK(net, o.status == 0, "manifest import: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    show_want a1 = { COMUNE, id, "scopes/lingua/livello", "A1" };
    CHECK(net, th_wait(net, 10000, shows, &a1),
        "the comune still shows a write of a key retired before it");
    CHECK(net,
        count3(net, COMUNE, "event=delta.redecided", "org=cpia-1", "now=void") == before + 1
            && count3(net, COMUNE, "event=rebuild.retired", "org=cpia-1", "") == 1,
        "the comune did not say it voided the CPIA's write once");
    stop_node(net, COMUNE);
    CHECK(net, th_start(net, COMUNE) == 0, "the comune does not start again");
    CHECK(net, shows(net, &a1), "after a restart the comune shows the retired key's write");
    CHECK(net, count3(net, COMUNE, "event=rebuild.retired", "org=cpia-1", "") == 1,
        "the comune decided the scope again at its restart, with nothing left to decide");
    member_view_fini(&v);
    proto_identity_free(cpia);
}

/* Finding 5, by silence: after a start the comune writes nothing until every member whose link
 * is up has sent its version vector. A member that connects right after the start, answers
 * every ping and never sends a version vector must not stop the comune's writes for long any
 * more than one that claims too much of its log (own_log_claim_is_probed_not_believed). */
static void silent_member_cannot_stop_writes(void **state)
{
    th_net *net = *state;
    char id[64];
    new_case(net, id, "lingua.livello=A1");
    stop_node(net, PREF);
    stop_node(net, COMUNE);
    proto_identity *pref = member_identity(net, PREF);
    CHECK(net, th_start(net, COMUNE) == 0, "the comune did not restart");
    fp_peer *p = connect_as(net, COMUNE, pref);
    barrier_ping(net, p);
    bool written = false;
    int refused = 0;
    char last[400] = "";
    uint64_t until = now_ms() + 20000;
    while (!written && now_ms() < until) {
        th_out o = th_patto(net, COMUNE, "case", "new", "lingua.livello=B1", NULL);
        written = o.status == 0;
        if (!written) {
            refused++;
            snprintf(last, sizeof(last), "%s", o.out);
        }
        th_out_free(&o);
        if (!written)
            pump(net, p, 200);
    }
    bool up = fp_closed_count(p) == 0;
    fp_close(p);
    proto_identity_free(pref);
    CHECK(net, up, "the comune closed the silent member's session");
    CHECK(net, written,
        "a member connected without sending its version vector stopped every write at the comune "
        "for 20 s (%d refusals, the last: %s)",
        refused, last);
    still_serving(net, true);
}

/* A body that comes before any key of its tag (an owner's writes come before the grants that
 * share them) is kept in memory, not dropped: once its key grant comes, it is merged without
 * being asked for again. The CPIA, owner of a case of its own, sends the comune a write and
 * the key grant that shares it, the write's body first in a message of its own. */
static void body_before_its_key_is_parked(void **state)
{
    th_net *net = *state;
    stop_node(net, CPIA);
    proto_identity *cpia = member_identity(net, CPIA);
    fp_peer *p = connect_as(net, COMUNE, cpia);
    CHECK(net, vv_of(net, COMUNE, CPIA) == 0, "cpia-1 has a log before the test");
    proto_case_id cid;
    proto_case_nonce nonce;
    proto_scope_key *key = NULL;
    assert_int_equal(proto_case_id_new("cpia-1", 6, NULL, &cid, &nonce), PROTO_OK);
    assert_int_equal(proto_scope_key_new(&cid, "lingua", PROTO_EPOCH_FIRST, NULL, &key), PROTO_OK);
    uint8_t zero[32] = { 0 };
    forged f[2];
    uint64_t t = now_ms();
    assert_int_equal(
        forge_delta(cpia, key, NULL, 0, "livello", "B2", 0, 1, zero, t, &f[0]), PROTO_OK);
    proto_recipient rec[1];
    member_box_pk(net, COMUNE, rec[0].box_pk);
    const proto_scope_key *keys[] = { key };
    proto_seal_info info;
    memset(&info, 0, sizeof(info));
    info.seq = 2;
    memcpy(info.prev, f[0].id, 32);
    info.hlc.wall = t;
    memset(&f[1], 0, sizeof(f[1]));
    assert_int_equal(proto_key_grant_seal(cpia, "cpia-1", &nonce, keys, 1, &info, rec, 1, NULL,
                         &f[1].header, &f[1].body),
        PROTO_OK);
    forged_id(&f[1]);

    const proto_buf *hs[] = { &f[0].header, &f[1].header };
    proto_buf hm = headers_msg(hs, 2);
    send_msg(net, p, &hm);
    proto_buf_free(&hm);
    proto_buf bm = bodies_msg(&f[0]);
    send_msg(net, p, &bm);
    proto_buf_free(&bm);
    num_want parked = { COMUNE, "traffic/parked", 1 };
    CHECK(net, th_wait(net, 5000, num_is, &parked), "the write's body was not parked (%lld)",
        (long long)status_num(net, COMUNE, "traffic/parked"));
    bm = bodies_msg(&f[1]);
    send_msg(net, p, &bm);
    proto_buf_free(&bm);
    num_want taken = { COMUNE, "traffic/unparked", 1 };
    CHECK(net, th_wait(net, 5000, num_is, &taken), "the parked body was not taken (%lld)",
        (long long)status_num(net, COMUNE, "traffic/unparked"));
    char id[64];
    proto_case_id_format(&cid, id);
    th_out o = th_patto(net, COMUNE, "case", "show", id, NULL);
    CHECK(net, o.status == 0 && o.out != NULL && strstr(o.out, "B2") != NULL,
        "the comune does not read the CPIA's write: %d %s", o.status, o.out ? o.out : "");
    th_out_free(&o);
    /* Nothing was asked for: every WANT the comune sent is a ping (no ids). */
    for (;;) {
        proto_buf m;
        unsigned kind;
        if (fp_recv(p, 300, &m, &kind) != FP_OK)
            break;
        if (kind == PROTO_K_WANT) {
            proto_want_msg w;
            assert_int_equal(proto_want_decode(m.p, m.len, NULL, &w, NULL), PROTO_OK);
            CHECK(net, w.n == 0, "the comune asked for %zu bodies again", w.n);
            proto_want_fini(&w);
        }
        proto_buf_free(&m);
    }
    CHECK(net, fp_closed_count(p) == 0, "the session was closed");
    fp_close(p);
    forged_free(&f[0]);
    forged_free(&f[1]);
    proto_scope_key_free(key);
    proto_identity_free(cpia);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    th_programs(PATTO_BIN, PATTOD_BIN);
    /* HOSTILE_FILTER=name runs the scenarios whose names match (cmocka's pattern). */
    if (getenv("HOSTILE_FILTER") != NULL)
        cmocka_set_test_filter(getenv("HOSTILE_FILTER"));
    if (proto_init() != PROTO_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stranger_gets_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(stranger_redialling_is_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_connections_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(no_manifest_says_so, setup_no_manifest, teardown),
        cmocka_unit_test_setup_teardown(handshake_or_nothing, setup_short_handshake, teardown),
        cmocka_unit_test_setup_teardown(hello_at_once_is_answered, setup_short_handshake, teardown),
        cmocka_unit_test_setup_teardown(bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(oversized_is_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(session_ends_while_node_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(silent_peer_is_dropped, setup_short_idle, teardown),
        cmocka_unit_test_setup_teardown(forged_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(runs_of_headers_same_verdict, setup, teardown),
        cmocka_unit_test_setup_teardown(runs_of_headers_same_verdict, setup_verify_each, teardown),
        cmocka_unit_test_setup_teardown(body_before_its_key_is_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(replayed_delta_merged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(read_grant_cannot_write, setup, teardown),
        cmocka_unit_test_setup_teardown(clock_ahead_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(clock_ahead_merges_in_time, setup_tight_clock, teardown),
        cmocka_unit_test_setup_teardown(reader_cannot_take_over_a_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(member_cannot_hijack_another_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(future_dot_in_context_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_deltas_within_quota, setup_small_quota, teardown),
        cmocka_unit_test_setup_teardown(expiry_enforced_while_owner_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(
            retired_key_voids_what_came_before_the_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(new_dots_must_be_consecutive, setup, teardown),
        cmocka_unit_test_setup_teardown(fork_voids_both_branches, setup, teardown),
        cmocka_unit_test_setup_teardown(one_dot_twice_voids_both, setup, teardown),
        cmocka_unit_test_setup_teardown(key_grant_header_adds_no_recipient, setup, teardown),
        cmocka_unit_test_setup_teardown(own_log_claim_is_probed_not_believed, setup, teardown),
        cmocka_unit_test_setup_teardown(equivocation_found_by_version_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(withheld_own_log_comes_from_others, setup, teardown),
        cmocka_unit_test_setup_teardown(silent_member_cannot_stop_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            merged_deltas_follow_the_schema, setup_counter_limit, teardown),
        cmocka_unit_test_setup_teardown(entry_clocks_not_after_header, setup, teardown),
        cmocka_unit_test_setup_teardown(held_headers_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_headers_one_line_per_reason, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
