/*
 * testnet.*: patto-testnet driven as a program, as an integrator would, on 127.0.0.1:
 * - up, check and down on a three-node network;
 * - a partition blocks propagation (check fails naming the missing origin at the nodes on the
 *   other side) and heal restores convergence;
 * - a node killed with SIGKILL in the middle of a stream of acknowledged writes loses none of
 *   them after restart;
 * - a slow link holds deltas for its delay, a 100 % lossy one lets nothing through (and the
 *   proxies count the refused and dropped connections), heal restores convergence;
 * - a stopped node is named by status and check, and cont brings it back without a crash;
 * - check names a tag whose digest differs (a patto that lies about one node's digests);
 * - status measures lag as README.md says (headers behind the most advanced node, per node and
 *   per peer), status --json and check --json have the documented keys;
 * - node names, ports and [dial] sections of a six-node network, kept by a later up.
 * argv: patto-testnet patto [links|procs] (the group to run: links, the default, is
 * testnet.basic; procs is testnet.procs). Every test brings its network down in its teardown,
 * also when it fails (the directory is kept then, with the logs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *testnet_bin, *patto_bin;

typedef struct run_out {
    int status;
    char out[65536];
} run_out;

/* Run argv, stdout and stderr together in o->out. */
static void run(run_out *o, const char *const *argv)
{
    int p[2];
    o->status = -1;
    o->out[0] = '\0';
    if (pipe(p) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t got;
    while ((got = read(p[0], o->out + n, sizeof o->out - 1 - n)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0)
            n += (size_t)got;
    o->out[n] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static run_out *tn(const char *cmd, const char *dir, ...)
{
    static run_out o;
    const char *argv[24] = { testnet_bin, cmd, dir };
    size_t n = 3;
    va_list ap;
    va_start(ap, dir);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 23)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    run(&o, argv);
    return &o;
}

static run_out *patto(const char *dir, const char *node, ...)
{
    static run_out o;
    char d[600];
    snprintf(d, sizeof d, "%s/%s", dir, node);
    const char *argv[24] = { patto_bin, "--dir", d, "--json" };
    size_t n = 4;
    va_list ap;
    va_start(ap, node);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 23)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    run(&o, argv);
    return &o;
}

typedef struct net {
    char dir[256];
    bool keep;
} net;

static int setup(void **state)
{
    net *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    *state = t;
    snprintf(t->dir, sizeof t->dir, "/tmp/patto-testnet-XXXXXX");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    run_out *o = tn("up", t->dir, "--nodes", "3", NULL);
    if (o->status != 0) {
        fprintf(stderr, "up failed (%d): %s\n", o->status, o->out);
        tn("down", t->dir, NULL);
        return -1;
    }
    return 0;
}

/* A fresh directory and no network yet: the test brings it up itself. */
static int setup_empty(void **state)
{
    net *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    *state = t;
    snprintf(t->dir, sizeof t->dir, "/tmp/patto-testnet-XXXXXX");
    return mkdtemp(t->dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    net *t = *state;
    run_out *o = tn("down", t->dir, NULL);
    int rc = o->status == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "down failed (%d): %s\n", o->status, o->out);
    /* A node that died on its own, or a sanitizer report in any log, fails the test. */
    DIR *d = opendir(t->dir);
    for (struct dirent *e = d ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0)
            continue;
        char log[600];
        snprintf(log, sizeof log, "%s/%s", t->dir, e->d_name);
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (strstr(line, "expected=no") != NULL || strstr(line, "Sanitizer") != NULL
                || strstr(line, "runtime error:") != NULL) {
                fprintf(stderr, "%s: %s", e->d_name, line);
                rc = -1;
            }
        if (f != NULL)
            fclose(f);
    }
    if (d != NULL)
        closedir(d);
    if (rc != 0 || t->keep) {
        fprintf(stderr, "kept %s\n", t->dir);
    } else {
        const char *rm[] = { "/bin/rm", "-rf", t->dir, NULL };
        run_out r;
        run(&r, rm);
    }
    free(t);
    return rc;
}

#define CHECK(t, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (t)->keep = true;                                                                      \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

/* Open a case at comune-1 with one edit and put its id in id. */
static void new_case_at_comune(net *t, const char *edit, char id[64])
{
    run_out *o = patto(t->dir, "comune-1", "case", "new", edit, NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    json_object *j = json_tokener_parse(o->out), *idj = NULL;
    CHECK(t, j && json_object_object_get_ex(j, "id", &idj), "case new: %s", o->out);
    snprintf(id, 64, "%s", json_object_get_string(idj));
    json_object_put(j);
}

static void up_check_down(void **state)
{
    net *t = *state;
    /* up printed the names in the documented order and every node answers. */
    run_out *o = tn("status", t->dir, NULL);
    CHECK(t, o->status == 0, "status: %d %s", o->status, o->out);
    CHECK(t,
        strstr(o->out, "comune-1") && strstr(o->out, "cpia-1") && strstr(o->out, "prefettura-1")
            && strstr(o->out, "faults: none"),
        "status: %s", o->out);
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Amina", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0 && strstr(o->out, "converged: 3 nodes agree"), "check: %d %s",
        o->status, o->out);
    /* up again is harmless: the same network, still connected. */
    o = tn("up", t->dir, NULL);
    CHECK(t, o->status == 0 && strncmp(o->out, "comune-1\ncpia-1\nprefettura-1\n", 29) == 0,
        "up again: %d %s", o->status, o->out);
}

static void partition_blocks_then_heals(void **state)
{
    net *t = *state;
    run_out *o = tn("partition", t->dir, "comune-1", "cpia-1,prefettura-1", NULL);
    CHECK(t, o->status == 0, "partition: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, strstr(o->out, "partition comune-1 cpia-1,prefettura-1"), "status: %s", o->out);
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Blocked", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    o = patto(t->dir, "cpia-1", "case", "new", "lingua.livello=A2", NULL);
    CHECK(t, o->status == 0, "case new at cpia-1: %s", o->out);
    /* cpia-1 and prefettura-1 agree with each other but miss comune-1's delta. */
    o = tn("check", t->dir, "--timeout", "3", NULL);
    CHECK(t, o->status == 6, "check during the partition: want 6, got %d %s", o->status, o->out);
    CHECK(t,
        strstr(o->out, "cpia-1 lacks deltas of origin comune-1")
            && strstr(o->out, "prefettura-1 lacks deltas of origin comune-1")
            && strstr(o->out, "comune-1 lacks deltas of origin cpia-1")
            && !strstr(o->out, "prefettura-1 lacks deltas of origin cpia-1"),
        "check names what is missing where: %s", o->out);
    /* At the socket level: no connection open across the cut, and the redials refused. */
    o = tn("status", t->dir, "--links", NULL);
    const char *l = strstr(o->out, "  comune-1 cpia-1 open=");
    CHECK(t,
        l != NULL && strncmp(l, "  comune-1 cpia-1 open=0 ", 24) == 0
            && strstr(l, "refused=0 ") != strstr(l, "refused="),
        "links during the partition: %s", o->out);
    o = tn("heal", t->dir, NULL);
    CHECK(t, o->status == 0, "heal: %s", o->out);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0, "check after heal: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, strstr(o->out, "faults: none"), "status after heal: %s", o->out);
}

static const char *node_line(const char *out, const char *name, char *buf, size_t size);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static long headers(net *t, const char *node)
{
    run_out *o = patto(t->dir, node, "status", NULL);
    json_object *j = o->status == 0 ? json_tokener_parse(o->out) : NULL, *v = NULL;
    long h = -1;
    if (j != NULL && json_object_object_get_ex(j, "counts", &v)
        && json_object_object_get_ex(v, "headers", &v))
        h = (long)json_object_get_int64(v);
    json_object_put(j);
    return h;
}

/* A slow link holds deltas for its delay; a lossy one (100 %) lets nothing through; heal
 * restores convergence. prefettura-1 is cut off so that nothing goes around the link. */
static void slow_and_lossy_links(void **state)
{
    net *t = *state;
    run_out *o = tn("partition", t->dir, "prefettura-1", NULL);
    CHECK(t, o->status == 0, "partition: %s", o->out);
    o = tn("slow", t->dir, "comune-1", "cpia-1", "--delay-ms", "2000", NULL);
    CHECK(t, o->status == 0, "slow: %s", o->out);
    long before = headers(t, "cpia-1");
    uint64_t t0 = now_ms();
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Lenta", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    long early = headers(t, "cpia-1");
    uint64_t looked = now_ms() - t0;
    if (looked < 1800)
        CHECK(t, early == before, "cpia-1 had the delta after %llu ms through a 2000 ms link",
            (unsigned long long)looked);
    long after = early;
    while (after == before && now_ms() - t0 < 20000) {
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        after = headers(t, "cpia-1");
    }
    uint64_t took = now_ms() - t0;
    CHECK(t, after > before, "cpia-1 never received the delta through the slow link");
    CHECK(t, took >= 1900, "the delta arrived after %llu ms through a 2000 ms link",
        (unsigned long long)took);
    /* Every connection between comune-1 and cpia-1 dies at its first byte. */
    o = tn("slow", t->dir, "comune-1", "cpia-1", "--delay-ms", "0", "--loss-pct", "100", NULL);
    CHECK(t, o->status == 0, "slow with loss: %s", o->out);
    before = headers(t, "cpia-1");
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Persa", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    o = tn("check", t->dir, "--timeout", "3", NULL);
    CHECK(t, o->status == 6 && strstr(o->out, "cpia-1 lacks deltas of origin comune-1"),
        "check through a lossy link: %d %s", o->status, o->out);
    CHECK(t, headers(t, "cpia-1") == before, "cpia-1 received a delta through a 100%% lossy link");
    o = tn("status", t->dir, "--links", NULL);
    const char *lk = strstr(o->out, "  comune-1 cpia-1 open=");
    unsigned long dropped = 0;
    CHECK(t,
        strstr(o->out, "slow comune-1 cpia-1 delay-ms=0 loss-pct=100") && lk != NULL
            && sscanf(strstr(lk, "dropped="), "dropped=%lu", &dropped) == 1 && dropped > 0,
        "status with loss: %s", o->out);
    o = tn("heal", t->dir, NULL);
    CHECK(t, o->status == 0, "heal: %s", o->out);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0, "check after heal: %d %s", o->status, o->out);
}

/* The "headers H  lag L" of node name's line in `status`, and the lag of its peer's line
 * ("    peer PEER STATE lag L"); -2 when not found, -1 for "-". */
static void status_lags(
    const char *out, const char *name, long *headers, long *lag, const char *peer, long *peer_lag)
{
    char line[512];
    *headers = *lag = *peer_lag = -2;
    node_line(out, name, line, sizeof line);
    const char *h = strstr(line, "  headers ");
    if (h == NULL || sscanf(h, "  headers %ld  lag %ld", headers, lag) != 2)
        return;
    const char *l = strstr(out, line) + strlen(line);
    char want[64];
    snprintf(want, sizeof want, "    peer %s ", peer);
    for (l = strchr(l, '\n'); l != NULL && strncmp(l + 1, "    peer ", 9) == 0;
         l = strchr(l + 1, '\n'))
        if (strncmp(l + 1, want, strlen(want)) == 0) {
            const char *v = strstr(l + 1, " lag ");
            if (v != NULL && sscanf(v, " lag %ld", peer_lag) != 1)
                *peer_lag = v[5] == '-' ? -1 : -2;
            return;
        }
}

static json_object *jpath(json_object *o, const char *k1, const char *k2)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, k1, &v))
        return NULL;
    if (k2 != NULL && !json_object_object_get_ex(v, k2, &v))
        return NULL;
    return v;
}

/* The node object of name in `status --json`, or NULL. */
static json_object *json_node(json_object *doc, const char *name)
{
    json_object *nodes = jpath(doc, "nodes", NULL);
    for (size_t i = 0; nodes != NULL && i < json_object_array_length(nodes); i++) {
        json_object *n = json_object_array_get_idx(nodes, i);
        if (strcmp(json_object_get_string(jpath(n, "name", NULL)), name) == 0)
            return n;
    }
    return NULL;
}

static long json_peer_lag(json_object *node, const char *peer)
{
    json_object *peers = jpath(node, "peers", NULL);
    for (size_t i = 0; peers != NULL && i < json_object_array_length(peers); i++) {
        json_object *p = json_object_array_get_idx(peers, i), *lag = jpath(p, "lag", NULL);
        if (strcmp(json_object_get_string(jpath(p, "name", NULL)), peer) == 0)
            return lag == NULL ? -1 : (long)json_object_get_int64(lag);
    }
    return -2;
}

/* Whether the gaps of `check --json` hold a "lacks" entry: node lacks deltas of origin_node. */
static bool json_lacks(json_object *doc, const char *node, const char *origin_node)
{
    json_object *missing = jpath(doc, "missing", NULL);
    for (size_t i = 0; missing != NULL && i < json_object_array_length(missing); i++) {
        json_object *g = json_object_array_get_idx(missing, i);
        if (strcmp(json_object_get_string(jpath(g, "kind", NULL)), "lacks") == 0
            && strcmp(json_object_get_string(jpath(g, "node", NULL)), node) == 0
            && strcmp(json_object_get_string(jpath(g, "origin_node", NULL)), origin_node) == 0
            && jpath(g, "origin", NULL) != NULL && jpath(g, "has", NULL) != NULL
            && jpath(g, "of", NULL) != NULL)
            return true;
    }
    return false;
}

/* Lag is what README.md says: the headers a node is behind the most advanced node, on its
 * line and on every peer line that names it; --json says the same with the documented keys;
 * check --json lists what is missing where. comune-1, cut off, writes two cases and cpia-1
 * one: comune-1 holds the most headers (lag 0) though it lacks cpia-1's delta. */
static void status_lag_and_json(void **state)
{
    net *t = *state;
    run_out *o = tn("partition", t->dir, "comune-1", "cpia-1,prefettura-1", NULL);
    CHECK(t, o->status == 0, "partition: %d %s", o->status, o->out);
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Uno", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Due", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    o = patto(t->dir, "cpia-1", "case", "new", "anagrafica.nome=Tre", NULL);
    CHECK(t, o->status == 0, "case new at cpia-1: %s", o->out);
    /* prefettura-1 gets cpia-1's delta; nothing crosses the cut. */
    uint64_t t0 = now_ms();
    long hc = headers(t, "comune-1"), hp = headers(t, "cpia-1"), hf = headers(t, "prefettura-1");
    while (hf != hp && now_ms() - t0 < 20000) {
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        hf = headers(t, "prefettura-1");
    }
    CHECK(t, hf == hp && hc > hp && hp > 0, "headers comune-1 %ld cpia-1 %ld prefettura-1 %ld", hc,
        hp, hf);
    long h, lag, peer_lag;
    o = tn("status", t->dir, NULL);
    CHECK(t, o->status == 0, "status: %d %s", o->status, o->out);
    status_lags(o->out, "comune-1", &h, &lag, "cpia-1", &peer_lag);
    CHECK(t, h == hc && lag == 0 && peer_lag == hc - hp,
        "comune-1 holds the most headers: want headers %ld lag 0, peer cpia-1 lag %ld; got "
        "headers %ld lag %ld, peer lag %ld:\n%s",
        hc, hc - hp, h, lag, peer_lag, o->out);
    status_lags(o->out, "cpia-1", &h, &lag, "comune-1", &peer_lag);
    CHECK(t, h == hp && lag == hc - hp && peer_lag == 0,
        "cpia-1: want headers %ld lag %ld, peer comune-1 lag 0; got headers %ld lag %ld, peer "
        "lag %ld:\n%s",
        hp, hc - hp, h, lag, peer_lag, o->out);
    status_lags(o->out, "prefettura-1", &h, &lag, "cpia-1", &peer_lag);
    CHECK(t, h == hp && lag == hc - hp && peer_lag == hc - hp, "prefettura-1: %s", o->out);

    o = tn("status", t->dir, "--json", "--links", NULL);
    json_object *doc = json_tokener_parse(o->out);
    CHECK(t, o->status == 0 && doc != NULL, "status --json: %d %s", o->status, o->out);
    static const char *const keys[] = { "name", "state", "pid", "starts", "crashes", "last_exit",
        "answers", "headers", "lag", "peers" };
    json_object *cn = json_node(doc, "comune-1"), *cp = json_node(doc, "cpia-1");
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_object *v = NULL;
        CHECK(t, cn != NULL && json_object_object_get_ex(cn, keys[k], &v),
            "status --json: no \"%s\" in %s", keys[k], o->out);
    }
    CHECK(t,
        strcmp(json_object_get_string(jpath(cn, "state", NULL)), "running") == 0
            && json_object_get_int64(jpath(cn, "pid", NULL)) > 0
            && json_object_get_int64(jpath(cn, "starts", NULL)) == 1
            && json_object_get_int64(jpath(cn, "crashes", NULL)) == 0
            && jpath(cn, "last_exit", NULL) == NULL
            && json_object_get_int64(jpath(cn, "headers", NULL)) == hc
            && json_object_get_int64(jpath(cn, "lag", NULL)) == 0
            && json_object_get_int64(jpath(cp, "lag", NULL)) == hc - hp
            && json_peer_lag(cn, "cpia-1") == hc - hp && json_peer_lag(cp, "comune-1") == 0,
        "status --json: %s", o->out);
    json_object *peer0 = json_object_array_get_idx(jpath(cn, "peers", NULL), 0), *v = NULL;
    CHECK(t,
        peer0 != NULL && json_object_object_get_ex(peer0, "state", &v)
            && json_object_object_get_ex(peer0, "last_heard_s", &v),
        "status --json peers: %s", o->out);
    json_object *faults = jpath(doc, "faults", NULL), *f0 = json_object_array_get_idx(faults, 0);
    json_object *groups = jpath(f0, "groups", NULL);
    CHECK(t,
        json_object_array_length(faults) == 1
            && strcmp(json_object_get_string(jpath(f0, "kind", NULL)), "partition") == 0
            && json_object_array_length(groups) == 2
            && json_object_array_length(json_object_array_get_idx(groups, 1)) == 2,
        "status --json faults: %s", o->out);
    json_object *links = jpath(doc, "links", NULL), *l0 = json_object_array_get_idx(links, 0);
    CHECK(t,
        json_object_array_length(links) == 6 && jpath(l0, "from", NULL) && jpath(l0, "to", NULL)
            && jpath(l0, "open", NULL) && jpath(l0, "accepted", NULL) && jpath(l0, "refused", NULL)
            && jpath(l0, "dropped", NULL),
        "status --json links: %s", o->out);
    json_object_put(doc);

    o = tn("check", t->dir, "--timeout", "2", "--json", NULL);
    doc = json_tokener_parse(o->out);
    CHECK(t,
        o->status == 6 && doc != NULL && !json_object_get_boolean(jpath(doc, "converged", NULL))
            && json_object_get_int64(jpath(doc, "took_ms", NULL)) >= 2000
            && json_lacks(doc, "cpia-1", "comune-1") && json_lacks(doc, "prefettura-1", "comune-1")
            && json_lacks(doc, "comune-1", "cpia-1") && !json_lacks(doc, "prefettura-1", "cpia-1"),
        "check --json during the partition: %d %s", o->status, o->out);
    json_object_put(doc);
    o = tn("heal", t->dir, NULL);
    CHECK(t, o->status == 0, "heal: %s", o->out);
    o = tn("check", t->dir, "--timeout", "30", "--json", NULL);
    doc = json_tokener_parse(o->out);
    CHECK(t,
        o->status == 0 && doc != NULL && json_object_get_boolean(jpath(doc, "converged", NULL))
            && jpath(doc, "took_ms", NULL) != NULL && jpath(doc, "missing", NULL) == NULL,
        "check --json after heal: %d %s", o->status, o->out);
    json_object_put(doc);
}

static int64_t hours(net *t, const char *node, const char *id)
{
    run_out *o = patto(t->dir, node, "case", "show", id, NULL);
    json_object *j = o->status == 0 ? json_tokener_parse(o->out) : NULL, *v = NULL;
    int64_t h = -1;
    if (j != NULL && json_object_object_get_ex(j, "scopes", &v)
        && json_object_object_get_ex(v, "lingua", &v)
        && json_object_object_get_ex(v, "ore_frequenza", &v))
        h = json_object_get_int64(v);
    json_object_put(j);
    return h;
}

static void kill_restart_loses_nothing(void **state)
{
    net *t = *state;
    char id[64];
    new_case_at_comune(t, "lingua.ore_frequenza+=1", id);
    run_out *o;
    /* A writer adds 1 hour per acknowledged write until the node is gone; the parent kills
     * the node after the fifth acknowledged write. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t w = fork();
    if (w == 0) {
        close(p[0]);
        long acked = 1;
        for (int k = 0; k < 2000; k++) {
            run_out *r
                = patto(t->dir, "comune-1", "case", "set", id, "lingua.ore_frequenza+=1", NULL);
            if (r->status != 0)
                break;
            acked++;
            if (write(p[1], "+", 1) != 1)
                break;
        }
        dprintf(p[1], "=%ld\n", acked);
        _exit(0);
    }
    close(p[1]);
    char buf[64];
    int plus = 0;
    while (plus < 5 && read(p[0], buf, 1) == 1)
        plus++;
    o = tn("kill", t->dir, "comune-1", NULL);
    CHECK(t, o->status == 0, "kill: %s", o->out);
    char tail[4096] = "";
    size_t n = 0;
    ssize_t got;
    while ((got = read(p[0], tail + n, sizeof tail - 1 - n)) > 0)
        n += (size_t)got;
    tail[n] = '\0';
    close(p[0]);
    waitpid(w, NULL, 0);
    char *eq = strchr(tail, '=');
    CHECK(t, eq != NULL, "the writer reported nothing: %s", tail);
    long acked = strtol(eq + 1, NULL, 10);
    o = tn("restart", t->dir, "comune-1", NULL);
    CHECK(t, o->status == 0, "restart: %s", o->out);
    int64_t h = hours(t, "comune-1", id);
    /* Every acknowledged write is there; at most the one in flight at the kill is extra. */
    CHECK(t, h >= acked && h <= acked + 1, "hours %lld after %ld acknowledged writes", (long long)h,
        acked);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0, "check after restart: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, strstr(o->out, "last-exit=signal-9") && strstr(o->out, "starts=2"), "status: %s",
        o->out);
}

/* The line of `status` that describes node name (its name padded to 14 columns), or "". */
static const char *node_line(const char *out, const char *name, char *buf, size_t size)
{
    buf[0] = '\0';
    size_t len = strlen(name);
    for (const char *l = out; l != NULL && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, len) == 0 && l[len] == ' ') {
            size_t n = strcspn(l, "\n");
            snprintf(buf, size, "%.*s", (int)n, l);
            break;
        }
    return buf;
}

/* A stopped (hung) node: status says so, check fails naming it while the others still get
 * every delta; cont resumes it, the network converges, and no crash is counted. */
static void stop_cont_hung_node(void **state)
{
    net *t = *state;
    char line[512];
    long before = headers(t, "prefettura-1");
    run_out *o = tn("stop", t->dir, "cpia-1", NULL);
    CHECK(t, o->status == 0, "stop: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, strstr(node_line(o->out, "cpia-1", line, sizeof line), " stopped pid=") != NULL,
        "status of a stopped node: %s", o->out);
    o = patto(t->dir, "comune-1", "case", "new", "anagrafica.nome=Ferma", NULL);
    CHECK(t, o->status == 0, "case new: %s", o->out);
    /* The delta reaches prefettura-1 while cpia-1 hangs. */
    uint64_t t0 = now_ms();
    long after = headers(t, "prefettura-1");
    while (after <= before && now_ms() - t0 < 20000) {
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
        after = headers(t, "prefettura-1");
    }
    CHECK(t, after > before, "prefettura-1 never received the delta while cpia-1 was stopped");
    o = tn("check", t->dir, "--timeout", "2", NULL);
    CHECK(t, o->status == 6 && strstr(o->out, "cpia-1 is stopped: it cannot be compared"),
        "check with a stopped node: %d %s", o->status, o->out);
    /* The supervisor refuses what makes no sense (exit 2, input refused); a name that is no
     * node of this testnet is not found (exit 3), whichever command names it. */
    o = tn("stop", t->dir, "cpia-1", NULL);
    CHECK(
        t, o->status == 2 && strstr(o->out, "not running"), "stop twice: %d %s", o->status, o->out);
    o = tn("cont", t->dir, "nobody-1", NULL);
    CHECK(t, o->status == 3 && strstr(o->out, "no node nobody-1"), "cont of an unknown node: %d %s",
        o->status, o->out);
    o = tn("partition", t->dir, "comune-1,nobody-1", NULL);
    CHECK(t, o->status == 3 && strstr(o->out, "no node nobody-1"),
        "partition with an unknown node: %d %s", o->status, o->out);
    o = tn("slow", t->dir, "comune-1", "nobody-1", "--delay-ms", "10", NULL);
    CHECK(t, o->status == 3 && strstr(o->out, "no node nobody-1"),
        "slow with an unknown node: %d %s", o->status, o->out);
    o = tn("slow", t->dir, "comune-1", "comune-1", "--delay-ms", "10", NULL);
    CHECK(t, o->status == 2, "slow from a node to itself: %d %s", o->status, o->out);
    o = tn("cont", t->dir, "cpia-1", NULL);
    CHECK(t, o->status == 0, "cont: %d %s", o->status, o->out);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0 && strstr(o->out, "converged: 3 nodes agree (took "),
        "check after cont: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    node_line(o->out, "cpia-1", line, sizeof line);
    CHECK(t, strstr(line, " running pid=") && strstr(line, "starts=1 crashes=0 last-exit=none"),
        "status after cont: %s", o->out);
}

/* check names a tag whose state digest differs between two nodes that hold it. Converged
 * nodes never differ, so this test runs `check` with a patto (this program, see main) that
 * changes every digest cpia-1 reports. */
static const char *self_exe(void)
{
    static char path[1024];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    path[n > 0 ? n : 0] = '\0';
    return path;
}

static void check_names_differing_tags(void **state)
{
    net *t = *state;
    char id[64];
    new_case_at_comune(t, "anagrafica.nome=Dora", id);
    run_out *o;
    o = patto(t->dir, "comune-1", "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "anagrafica", "--purpose", "integrazione", "--basis", "public-task", "--access", "read",
        "--provision", "L. 328/2000 art. 22", NULL);
    CHECK(t, o->status == 0, "grant: %s", o->out);
    o = tn("check", t->dir, "--timeout", "30", NULL);
    CHECK(t, o->status == 0, "check: %d %s", o->status, o->out);
    setenv("PATTO_BIN", self_exe(), 1);
    setenv("TN_TEST_REAL_PATTO", patto_bin, 1);
    setenv("TN_TEST_FAKE_DIGEST", "cpia-1", 1);
    o = tn("check", t->dir, "--timeout", "1", NULL);
    unsetenv("PATTO_BIN");
    unsetenv("TN_TEST_FAKE_DIGEST");
    const char *tag = strstr(o->out, "\ntag ");
    char tagline[512] = "";
    if (tag != NULL)
        snprintf(tagline, sizeof tagline, "%.*s", (int)strcspn(tag + 1, "\n"), tag + 1);
    /* The tag of the anagrafica scope: comune-1 and cpia-1 hold it, prefettura-1 does not. */
    CHECK(t,
        o->status == 6 && strstr(tagline, " differs: comune-1=") && strstr(tagline, " cpia-1=")
            && !strstr(tagline, "prefettura-1") && !strstr(o->out, "lacks deltas"),
        "check with a differing tag: %d %s", o->status, o->out);
}

/* Node names in the documented order, ports from --base-port as documented, every node's
 * [dial] section through its proxies, and a later `up` keeps all of it. */
static void names_and_ports(void **state)
{
    net *t = *state;
    const unsigned n = 6;
    /* Below the kernel's ephemeral ports (32768 and up): there, any outgoing connection of a
     * test running beside this one may hold a port of the range. */
    unsigned base = 20000 + (unsigned)(getpid() % 250) * 50;
    char b[16];
    snprintf(b, sizeof b, "%u", base);
    static const char names[] = "comune-1\ncpia-1\nprefettura-1\ncomune-2\ncpi-1\ncoop-1\n";
    run_out *o = tn("up", t->dir, "--nodes", "6", "--base-port", b, NULL);
    CHECK(
        t, o->status == 0 && strcmp(o->out, names) == 0, "up --nodes 6: %d %s", o->status, o->out);
    char path[600];
    snprintf(path, sizeof path, "%s/testnet.json", t->dir);
    json_object *doc = json_object_from_file(path), *nodes = NULL, *proxies = NULL;
    CHECK(t,
        doc && json_object_object_get_ex(doc, "nodes", &nodes)
            && json_object_object_get_ex(doc, "proxies", &proxies)
            && json_object_array_length(nodes) == n,
        "testnet.json");
    for (unsigned i = 0; i < n; i++) {
        json_object *port = NULL;
        json_object_object_get_ex(json_object_array_get_idx(nodes, i), "port", &port);
        CHECK(t, json_object_get_int(port) == (int)(base + i), "node %u listens on %d", i,
            json_object_get_int(port));
        for (unsigned k = 0; k < n; k++)
            if (k != i) {
                int p = json_object_get_int(
                    json_object_array_get_idx(json_object_array_get_idx(proxies, i), k));
                CHECK(t, p == (int)(base + n + i * n + k), "proxy %u->%u on %d", i, k, p);
            }
    }
    json_object_put(doc);
    /* comune-2 (node 3) dials cpi-1 (node 4) through proxy 3->4. */
    snprintf(path, sizeof path, "%s/comune-2/pattod.conf", t->dir);
    FILE *f = fopen(path, "r");
    char conf[8192] = "", want[80];
    size_t got = f ? fread(conf, 1, sizeof conf - 1, f) : 0;
    conf[got] = '\0';
    if (f != NULL)
        fclose(f);
    snprintf(want, sizeof want, "\ncpi-1 = tcp://127.0.0.1:%u\n", base + n + 3 * n + 4);
    CHECK(t, strstr(conf, "[dial]") && strstr(conf, want), "pattod.conf of comune-2: %s", conf);
    /* patto works against any node, and every node sees every other one up. */
    o = patto(t->dir, "coop-1", "status", NULL);
    json_object *st = o->status == 0 ? json_tokener_parse(o->out) : NULL, *peers = NULL;
    CHECK(t,
        st && json_object_object_get_ex(st, "peers", &peers)
            && json_object_array_length(peers) == n - 1,
        "status of coop-1: %s", o->out);
    for (size_t k = 0; k < n - 1; k++) {
        json_object *ps = NULL;
        json_object_object_get_ex(json_object_array_get_idx(peers, k), "state", &ps);
        CHECK(t, strcmp(json_object_get_string(ps), "up") == 0, "coop-1's peers: %s", o->out);
    }
    json_object_put(st);
    o = tn("up", t->dir, "--nodes", "3", NULL);
    CHECK(t, o->status == 2, "up with another --nodes on an existing testnet: %d %s", o->status,
        o->out);
    o = tn("down", t->dir, NULL);
    CHECK(t, o->status == 0, "down: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, o->status == 4, "status of a testnet that is down: %d %s", o->status, o->out);
    o = tn("up", t->dir, NULL);
    CHECK(t, o->status == 0 && strcmp(o->out, names) == 0, "up again: %d %s", o->status, o->out);
    o = patto(t->dir, "comune-1", "status", NULL);
    CHECK(t, o->status == 0, "patto after the second up: %s", o->out);
}

/* A proxy port another process holds: `up` says at once why the supervisor stopped (before, it
 * waited 10 s and said the supervisor did not answer), and nothing is left running. */
static void port_in_use_says_why(void **state)
{
    net *t = *state;
    /* --base-port B: nodes on B and B+1, proxy 0->1 on B+3 (names_and_ports), held here. */
    unsigned base = 20000 + (unsigned)(getpid() % 250) * 50 + 40;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(base + 3)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(t, fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0,
        "cannot hold 127.0.0.1:%u for the test: %s", base + 3, strerror(errno));
    char b[16];
    snprintf(b, sizeof b, "%u", base);
    run_out *o = tn("up", t->dir, "--nodes", "2", "--base-port", b, NULL);
    close(fd);
    CHECK(t,
        o->status != 0 && strstr(o->out, "stopped at once") != NULL
            && strstr(o->out, "address already in use") != NULL,
        "up with a proxy port held elsewhere: %d %s", o->status, o->out);
    o = tn("status", t->dir, NULL);
    CHECK(t, o->status == 4, "status after the failed up: %d %s", o->status, o->out);
}

/* Called as patto by check_names_differing_tags: run the real patto and, for the node named
 * in TN_TEST_FAKE_DIGEST, change the digest of every tag that `digest` reports. */
static int fake_patto(int argc, char **argv)
{
    const char *real = getenv("TN_TEST_REAL_PATTO"), *node = getenv("TN_TEST_FAKE_DIGEST");
    bool fake = false;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--dir") == 0) {
            const char *slash = strrchr(argv[i + 1], '/');
            fake = slash != NULL && strcmp(slash + 1, node) == 0;
        }
    fake = fake && strcmp(argv[argc - 1], "digest") == 0;
    argv[0] = (char *)(uintptr_t)real;
    if (!fake) {
        execv(real, argv);
        return 127;
    }
    static run_out o;
    run(&o, (const char *const *)argv);
    json_object *j = json_tokener_parse(o.out), *tags = NULL;
    if (o.status != 0 || j == NULL || !json_object_object_get_ex(j, "tags", &tags)) {
        fputs(o.out, stdout);
        return o.status;
    }
    json_object *changed = json_object_new_object();
    json_object_object_foreach(tags, tag, digest)
    {
        char d[256];
        snprintf(d, sizeof d, "%s", json_object_get_string(digest));
        d[0] = d[0] == '0' ? '1' : '0';
        json_object_object_add(changed, tag, json_object_new_string(d));
    }
    json_object_object_add(j, "tags", changed);
    puts(json_object_to_json_string(j));
    json_object_put(j);
    return 0;
}

int main(int argc, char **argv)
{
    if (getenv("TN_TEST_FAKE_DIGEST") != NULL)
        return fake_patto(argc, argv);
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATTO_TESTNET PATTO\n", argv[0]);
        return 2;
    }
    testnet_bin = argv[1];
    patto_bin = argv[2];
    /* Two groups, each its own ctest test, so that each stays well under two minutes. */
    const struct CMUnitTest links[] = {
        cmocka_unit_test_setup_teardown(up_check_down, setup, teardown),
        cmocka_unit_test_setup_teardown(partition_blocks_then_heals, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_and_lossy_links, setup, teardown),
        cmocka_unit_test_setup_teardown(check_names_differing_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(status_lag_and_json, setup, teardown),
    };
    const struct CMUnitTest procs[] = {
        cmocka_unit_test_setup_teardown(kill_restart_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_cont_hung_node, setup, teardown),
        cmocka_unit_test_setup_teardown(names_and_ports, setup_empty, teardown),
        cmocka_unit_test_setup_teardown(port_in_use_says_why, setup_empty, teardown),
    };
    if (argc > 3 && strcmp(argv[3], "procs") == 0)
        return cmocka_run_group_tests(procs, NULL, NULL);
    return cmocka_run_group_tests(links, NULL, NULL);
}
