/*
 * node.daemon: pattod as a partner's IT officer meets it - a bad config file or a key file
 * others can read stops the start with a message naming the file (and line); a second
 * pattod on the same data directory is refused; SIGTERM stops a node cleanly within 2 s;
 * a newer manifest imported at one node reaches the others by gossip, and an older or
 * foreign one is refused; many operators at once (more than the node's 8 control slots) are
 * all answered, each with its own case; a newer manifest that does not follow the one in force
 * (an org dropped, a stated key changed, a new key with less than the notice) is refused, and a
 * proper re-key is taken with an alert; a new schema file waits for a manifest that names it,
 * and a manifest naming a schema that narrows the one in force is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <proto/proto.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const orgs[] = { "comune-1:comune", "cpia-1:cpia", "prefettura-1:prefettura" };

static int setup_made(void **state)
{
    th_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return -1;
    *state = net;
    return th_net_make(net, 1, orgs);
}

static int setup_up(void **state)
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

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

/* Run pattod on node 0's directory to its end (with extra, an option, or NULL); returns its
 * exit status and what it wrote (stderr, then stdout). */
static int run_args(th_net *net, const char *extra, char *log, size_t logsize)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        close(fds[0]);
        execl(PATTOD_BIN, PATTOD_BIN, "--dir", net->nodes[0].dir, extra, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < logsize && (r = read(fds[0], log + n, logsize - 1 - n)) > 0)
        n += (size_t)r;
    log[n] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_to_end(th_net *net, char *log, size_t logsize)
{
    return run_args(net, NULL, log, logsize);
}

/* Replace the first occurrence of from by to in node i's pattod.conf. */
static void conf_replace(th_net *net, size_t i, const char *from, const char *to)
{
    char path[700], text[4096], out[4200];
    snprintf(path, sizeof(path), "%s/pattod.conf", net->nodes[i].dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    assert_int_equal(write_text(net->nodes[i].dir, "pattod.conf", out), 0);
}

static void bad_config_names_file_and_line(void **state)
{
    th_net *net = *state;
    /* pattod.conf ends with the [network] section: a typo in it is line N+1. */
    char conf[700];
    snprintf(conf, sizeof(conf), "%s/pattod.conf", net->nodes[0].dir);
    FILE *f = fopen(conf, "r");
    assert_non_null(f);
    int lines = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        lines += c == '\n';
    fclose(f);
    assert_int_equal(th_conf_append(net, 0, "admin_pubb = 00\n"), 0);
    char log[8192], want[800];
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    snprintf(
        want, sizeof(want), "pattod.conf:%d: unknown key 'admin_pubb' in [network]", lines + 1);
    if (strstr(log, want) == NULL)
        fail_msg("log lacks \"%s\":\n%s", want, log);
}

static void readable_identity_is_refused(void **state)
{
    th_net *net = *state;
    char key[700];
    snprintf(key, sizeof(key), "%s/identity.key", net->nodes[0].dir);
    assert_int_equal(chmod(key, 0644), 0);
    char log[8192];
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    if (strstr(log, "identity.key is readable by others (mode 644)") == NULL)
        fail_msg("log: %s", log);
    assert_int_equal(chmod(key, 0600), 0);
}

static void second_node_on_same_dir_is_refused(void **state)
{
    th_net *net = *state;
    char log[8192];
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    char want[700];
    snprintf(want, sizeof(want), "%s is in use by another pattod", net->nodes[0].dir);
    if (strstr(log, want) == NULL)
        fail_msg("log lacks \"%s\": %s", want, log);
    /* The first node still answers. */
    th_out o = th_patto(net, 0, "status", NULL);
    assert_int_equal(o.status, 0);
    th_out_free(&o);
}

/* Clients that go away at every point of the control socket's SP negotiation (nng 1.5.2's own
 * ipc listener stopped accepting for good after one of them): the node answers the next. */
static void control_socket_survives_clients_that_leave(void **state)
{
    th_net *net = *state;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    char path[600];
    snprintf(path, sizeof(path), "%s/control.sock", net->nodes[0].dir);
    assert_true(strlen(path) < sizeof(a.sun_path));
    memcpy(a.sun_path, path, strlen(path) + 1);
    static const uint8_t sp_req0[8] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };
    static const uint8_t not_sp[8] = { 'G', 'E', 'T', ' ', '/', ' ', 'H', 'T' };
    const struct {
        const uint8_t *bytes;
        size_t len;
    } sends[] = { { NULL, 0 }, { sp_req0, 3 }, { sp_req0, 8 }, { not_sp, 8 } };
    for (int round = 0; round < 3; round++) {
        for (size_t k = 0; k < sizeof(sends) / sizeof(sends[0]); k++) {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            assert_true(fd >= 0);
            assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
            if (sends[k].len > 0)
                assert_int_equal(write(fd, sends[k].bytes, sends[k].len), (ssize_t)sends[k].len);
            close(fd);
        }
    }
    th_out o = th_patto(net, 0, "status", NULL);
    if (o.status != 0)
        fail_msg("status after clients that left: exit %d: %s %s", o.status, o.out ? o.out : "",
            o.err ? o.err : "");
    th_out_free(&o);
}

/* An operator name is the caller's say: logged quoted and escaped, it adds no key=value pair of
 * its own to a log line (a log reader must not see a grant that never happened). */
static void operator_name_cannot_forge_log_fields(void **state)
{
    th_net *net = *state;
    const char *op = "ana x\" event=consent.grant to=evil";
    th_out o
        = th_patto_write(net, 0, "--operator", op, "case", "new", "anagrafica.nome=Tamiro", NULL);
    if (o.status != 0)
        fail_msg("case new: exit %d: %s %s", o.status, o.out ? o.out : "", o.err ? o.err : "");
    th_out_free(&o);
    assert_true(th_log_has(net, 0, "event=case.write"));
    if (!th_log_has(net, 0, "operator=\"ana x\\\" event=consent.grant to=evil\""))
        fail_msg("the operator name was not logged quoted and escaped");
    assert_false(th_log_has(net, 0, "level=info event=consent.grant"));
}

/* The port pattod should listen on is taken: a clear error naming the URL, exit 1, and no
 * abort on the way out (every libuv handle is safe to close whatever failed). */
static void busy_port_is_a_clear_error(void **state)
{
    th_net *net = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(net->nodes[0].port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 1), 0);
    char log[8192], want[200];
    int st = run_to_end(net, log, sizeof(log));
    close(fd);
    if (st != 1)
        fail_msg("pattod exited %d, not 1:\n%s", st, log);
    snprintf(want, sizeof(want), "cannot listen on tcp://127.0.0.1:%u", net->nodes[0].port);
    if (strstr(log, want) == NULL || strstr(log, "Address in use") == NULL)
        fail_msg("log lacks \"%s: Address in use\":\n%s", want, log);
    if (strstr(log, "Assertion") != NULL)
        fail_msg("pattod asserted on the way out:\n%s", log);
}

/* A store that is not an LMDB file: the message names the data directory, not ".". */
static void bad_store_names_the_directory(void **state)
{
    th_net *net = *state;
    assert_int_equal(write_text(net->nodes[0].dir, "data.mdb", "this is not an LMDB file\n"), 0);
    char log[8192], want[700];
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    snprintf(want, sizeof(want), "cannot open the store in %s", net->nodes[0].dir);
    if (strstr(log, want) == NULL)
        fail_msg("log lacks \"%s\":\n%s", want, log);
}

static void sigterm_stops_cleanly_within_two_seconds(void **state)
{
    th_net *net = *state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int st = th_stop(net, 1, SIGTERM);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_int_equal(st, 0);
    if (secs >= 2.0)
        fail_msg("pattod took %.2f s to stop", secs);
    assert_true(th_log_has(net, 1, "event=node.stopped"));
    /* It starts again on the same directory (no stale lock). */
    assert_int_equal(th_start(net, 1), 0);
}

/* Twelve operators (CLI processes) at once, five requests each, each about its own case. */
static void concurrent_operators_all_answered(void **state)
{
    th_net *net = *state;
    enum { OPS = 12, ROUNDS = 5 };
    char ids[OPS][64];
    for (int k = 0; k < OPS; k++) {
        char edit[64];
        snprintf(edit, sizeof(edit), "anagrafica.nome=Persona%d", k);
        th_out o = th_patto_write(net, 0, "case", "new", edit, NULL);
        assert_int_equal(o.status, 0);
        assert_non_null(o.json);
        json_object *id = NULL;
        assert_true(json_object_object_get_ex(o.json, "id", &id));
        snprintf(ids[k], sizeof(ids[k]), "%s", json_object_get_string(id));
        th_out_free(&o);
    }
    pid_t kids[OPS];
    for (int k = 0; k < OPS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            char want[64];
            snprintf(want, sizeof(want), "Persona%d", k);
            for (int r = 0; r < ROUNDS; r++) {
                th_out o = th_patto(net, 0, "case", "show", ids[k], NULL);
                bool ok = o.status == 0 && o.out != NULL && strstr(o.out, ids[k]) != NULL
                    && strstr(o.out, want) != NULL;
                if (!ok)
                    fprintf(stderr, "operator %d round %d: %d %s %s\n", k, r, o.status,
                        o.out ? o.out : "", o.err ? o.err : "");
                th_out_free(&o);
                if (!ok)
                    _exit(1);
            }
            _exit(0);
        }
    }
    int failed = 0;
    for (int k = 0; k < OPS; k++) {
        int st = 0;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(failed, 0);
}

typedef struct version_want {
    size_t node;
    int64_t version;
} version_want;

static bool has_version(th_net *net, void *ctx)
{
    version_want *w = ctx;
    th_out o = th_patto(net, w->node, "status", NULL);
    json_object *v = NULL, *versions = NULL;
    bool ok = o.json && json_object_object_get_ex(o.json, "versions", &versions)
        && json_object_object_get_ex(versions, "manifest", &v)
        && json_object_get_int64(v) == w->version;
    th_out_free(&o);
    return ok;
}

/* --check-config reads everything a start reads and says whether it fits, without starting. */
static void check_config_without_starting(void **state)
{
    th_net *net = *state;
    char out[8192];
    /* A stopped node that holds a store and a manifest. */
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    assert_int_equal(run_args(net, "--check-config", out, sizeof(out)), 0);
    if (strstr(out, "manifest version 1 fits this node (org comune-1)") == NULL)
        fail_msg("output: %s", out);
    /* It takes no lock: a running node can be checked. */
    assert_int_equal(th_start(net, 0), 0);
    assert_int_equal(run_args(net, "--check-config", out, sizeof(out)), 0);
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    /* A typo stops it with the file and line. */
    assert_int_equal(th_conf_append(net, 0, "admin_pubb = 00\n"), 0);
    assert_int_equal(run_args(net, "--check-config", out, sizeof(out)), 1);
    if (strstr(out, "unknown key 'admin_pubb' in [network]") == NULL)
        fail_msg("output: %s", out);
}

/* A directory fresh from patto init (no store yet) is checked as far as it goes. */
static void check_config_before_first_start(void **state)
{
    th_net *net = *state;
    char out[8192];
    assert_int_equal(run_args(net, "--check-config", out, sizeof(out)), 0);
    if (strstr(out, "are valid; no manifest imported yet") == NULL)
        fail_msg("output: %s", out);
    char data[700];
    snprintf(data, sizeof(data), "%s/data.mdb", net->nodes[0].dir);
    assert_int_equal(access(data, F_OK), -1); /* the check created no store */
}

/* A [dial] line for an org that is not a member is a typo: never ignored. */
static void dial_for_non_member_is_refused(void **state)
{
    th_net *net = *state;
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    assert_int_equal(th_conf_append(net, 0, "[dial]\ncpia-2 = tcp://127.0.0.1:9\n"), 0);
    char log[8192];
    const char *want = "[dial] names org cpia-2, which is not a member of manifest version 1";
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    if (strstr(log, want) == NULL)
        fail_msg("start: log lacks \"%s\":\n%s", want, log);
    assert_int_equal(run_args(net, "--check-config", log, sizeof(log)), 1);
    if (strstr(log, want) == NULL)
        fail_msg("check: output lacks \"%s\":\n%s", want, log);
}

/* pattod.conf naming another org than the one the manifest lists for this node's key. */
static void org_must_match_identity_key(void **state)
{
    th_net *net = *state;
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    conf_replace(net, 0, "org = comune-1", "org = cpia-1");
    char log[8192];
    const char *want = "pattod.conf says org cpia-1, role comune, but manifest version 1 lists "
                       "this node's key (identity.key) as org comune-1, role comune";
    assert_int_equal(run_to_end(net, log, sizeof(log)), 1);
    if (strstr(log, want) == NULL)
        fail_msg("log lacks \"%s\":\n%s", want, log);
    assert_int_equal(run_args(net, "--check-config", log, sizeof(log)), 1);
    if (strstr(log, want) == NULL)
        fail_msg("check: output lacks \"%s\":\n%s", want, log);
}

/* Importing the manifest in force again is a no-op that succeeds (automation repeats steps). */
static void same_manifest_again_is_a_no_op(void **state)
{
    th_net *net = *state;
    th_out o = th_patto(net, 0, "manifest", "import", net->manifest, NULL);
    if (o.status != 0)
        fail_msg("exit %d: %s %s", o.status, o.out ? o.out : "", o.err ? o.err : "");
    th_out_free(&o);
    version_want still = { 0, 1 };
    assert_true(has_version(net, &still));
}

static void manifest_spreads_by_gossip(void **state)
{
    th_net *net = *state;
    char v2[400];
    snprintf(v2, sizeof(v2), "%s/manifest-v2.bin", net->root);
    const char *purpose[]
        = { "network", "purpose", net->admin, "sanita", "Accesso ai servizi sanitari", NULL };
    th_out o = th_patto_raw(purpose);
    assert_int_equal(o.status, 0);
    th_out_free(&o);
    const char *sign[] = { "network", "sign", net->admin, "--out", v2, NULL };
    o = th_patto_raw(sign);
    assert_int_equal(o.status, 0);
    th_out_free(&o);

    o = th_patto(net, 0, "manifest", "import", v2, NULL);
    assert_int_equal(o.status, 0);
    th_out_free(&o);
    for (size_t i = 1; i < 3; i++) {
        version_want w = { i, 2 };
        if (!th_wait(net, 10000, has_version, &w)) {
            net->keep = true;
            fail_msg("node %zu did not receive manifest version 2 by gossip", i);
        }
    }
    /* An older manifest is refused and changes nothing. */
    o = th_patto(net, 1, "manifest", "import", net->manifest, NULL);
    assert_int_equal(o.status, 2);
    assert_non_null(strstr(o.out, "is not newer than version 2"));
    th_out_free(&o);

    /* A manifest signed by another admin is refused. */
    char other[400], other_manifest[400], entry[700];
    snprintf(other, sizeof(other), "%s/other-admin", net->root);
    snprintf(other_manifest, sizeof(other_manifest), "%s/other.bin", net->root);
    snprintf(entry, sizeof(entry), "%s/%s.entry.json", net->root, net->nodes[1].org);
    const char *init[] = { "network", "init", other, NULL };
    const char *add[] = { "network", "add", other, entry, NULL };
    const char *sign2[] = { "network", "sign", other, "--out", other_manifest, NULL };
    const char *const *steps[] = { init, add, sign2, sign2, sign2 };
    for (size_t k = 0; k < 5; k++) {
        o = th_patto_raw(steps[k]);
        assert_int_equal(o.status, 0);
        th_out_free(&o);
    }
    o = th_patto(net, 1, "manifest", "import", other_manifest, NULL);
    assert_int_equal(o.status, 2);
    assert_non_null(strstr(o.out, "not signed by this network's admin key"));
    th_out_free(&o);
    version_want still = { 1, 2 };
    assert_true(has_version(net, &still));
}

/* ---------------------------------------------------------------------------------------- */
/* A newer manifest must follow the one in force (ARCHITECTURE.md, section 3)                */

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = buf != NULL && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    return buf;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A copy of the manifest in force that a test may change, member by member and key by key,
 * then sign with the network's admin key as a later version. */
typedef struct man_copy {
    uint8_t *bytes;
    size_t len;
    proto_manifest m;
    proto_member members[8];
    proto_member_key keys[8][PROTO_MEMBER_KEYS_MAX];
} man_copy;

static void man_load(th_net *net, man_copy *c)
{
    memset(c, 0, sizeof(*c));
    c->bytes = slurp(net->manifest, &c->len);
    assert_non_null(c->bytes);
    assert_int_equal(proto_manifest_decode(c->bytes, c->len, NULL, &c->m, NULL), PROTO_OK);
    assert_true(c->m.nmembers <= 8);
    for (size_t i = 0; i < c->m.nmembers; i++) {
        c->members[i] = c->m.members[i];
        memcpy(c->keys[i], c->m.members[i].keys, c->m.members[i].nkeys * sizeof(proto_member_key));
        c->members[i].keys = c->keys[i];
    }
}

static void man_free(man_copy *c)
{
    proto_manifest_fini(&c->m);
    free(c->bytes);
}

/* Sign members[0..n) (the rest of the manifest as in force) as the next version and write it
 * to DIR/name; returns the path in path. */
static void man_sign(th_net *net, const man_copy *c, size_t n, const char *name, char path[400])
{
    proto_manifest m;
    memset(&m, 0, sizeof(m));
    m.version = c->m.version + 1;
    m.signed_at_ms = wall_ms();
    memcpy(m.schema_hash, c->m.schema_hash, sizeof(m.schema_hash));
    m.max_clock_ahead_ms = c->m.max_clock_ahead_ms;
    m.counter_limit = c->m.counter_limit;
    m.members = c->members;
    m.nmembers = n;
    m.purposes = c->m.purposes;
    m.npurposes = c->m.npurposes;
    char keypath[400];
    snprintf(keypath, sizeof(keypath), "%s/admin.key", net->admin);
    size_t len = 0;
    uint8_t *seeds = slurp(keypath, &len);
    assert_true(seeds != NULL && len == 64);
    proto_identity *admin = NULL;
    assert_int_equal(proto_identity_from_seeds(seeds, seeds + 32, &admin), PROTO_OK);
    proto_wipe(seeds, len);
    free(seeds);
    proto_buf out = { NULL, 0 };
    assert_int_equal(proto_manifest_sign(&m, admin, &out), PROTO_OK);
    proto_identity_free(admin);
    snprintf(path, 400, "%s/%s", net->root, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(out.p, 1, out.len, f), out.len);
    assert_int_equal(fclose(f), 0);
    proto_buf_free(&out);
}

/* `patto manifest import` of path at node 0: refused with exit 2 and a sentence holding want,
 * and the manifest in force stays. */
static void import_refused(th_net *net, const char *path, const char *want)
{
    th_out o = th_patto(net, 0, "manifest", "import", path, NULL);
    if (o.status != 2 || o.out == NULL || strstr(o.out, want) == NULL) {
        net->keep = true;
        fail_msg("import of %s: want exit 2 saying \"%s\", got %d: %s %s", path, want, o.status,
            o.out ? o.out : "", o.err ? o.err : "");
    }
    th_out_free(&o);
    version_want still = { 0, 1 };
    if (!has_version(net, &still)) {
        net->keep = true;
        fail_msg("node 0 no longer has manifest version 1 after a refused import of %s", path);
    }
}

static size_t member_of(const man_copy *c, const char *org)
{
    for (size_t i = 0; i < c->m.nmembers; i++)
        if (c->members[i].org.len == strlen(org)
            && memcmp(c->members[i].org.p, org, c->members[i].org.len) == 0)
            return i;
    fail_msg("no member %s in the manifest", org);
    return 0;
}

/* The node refuses a newer manifest, signed by the admin key, that does not follow the one in
 * force: one that drops an org, one that changes a key it stated (origin, X25519 key, effective
 * time), one that gives an org a new key effective sooner than [network] rekey_notice_hours
 * after its signing; a proper re-key is taken and alerted at level error. (cli.node covers what
 * the CLI refuses to sign; these are signed by hand, as a stolen or careless admin key could.) */
static void manifest_must_follow(void **state)
{
    th_net *net = *state;
    char path[400];
    man_copy c;
    assert_int_equal(proto_init(), PROTO_OK);

    /* An org dropped (prefettura-1, the last one). */
    man_load(net, &c);
    size_t pref = member_of(&c, "prefettura-1");
    assert_int_equal(pref, c.m.nmembers - 1);
    man_sign(net, &c, c.m.nmembers - 1, "drop.bin", path);
    import_refused(net, path, "no longer lists org prefettura-1: an org stays listed for ever");
    man_free(&c);

    /* A stated key changed: its origin; its X25519 key; its effective time. */
    static const char *const what[] = { "origin", "box", "effective" };
    for (size_t k = 0; k < 3; k++) {
        man_load(net, &c);
        size_t cpia = member_of(&c, "cpia-1");
        proto_member_key *key = &c.keys[cpia][0];
        if (k == 0)
            key->origin[5] ^= 0x01;
        else if (k == 1)
            key->box_pk[5] ^= 0x01;
        else
            key->effective_ms += 1;
        char name[32];
        snprintf(name, sizeof(name), "change-%s.bin", what[k]);
        man_sign(net, &c, c.m.nmembers, name, path);
        import_refused(net, path, "changes key 1 of org cpia-1");
        man_free(&c);
    }

    /* A new key for cpia-1 effective one hour after signing (the notice is 72 h). */
    man_load(net, &c);
    size_t cpia = member_of(&c, "cpia-1");
    proto_member *mb = &c.members[cpia];
    proto_identity *fresh = NULL;
    assert_int_equal(proto_identity_new(NULL, &fresh), PROTO_OK);
    c.keys[cpia][0].retired = true;
    c.keys[cpia][0].last_seq = 0;
    proto_member_key *nk = &c.keys[cpia][mb->nkeys];
    memset(nk, 0, sizeof(*nk));
    memcpy(nk->origin, proto_identity_origin(fresh), 32);
    memcpy(nk->box_pk, proto_identity_box_pk(fresh), 32);
    nk->effective_ms = wall_ms() + 3600000u;
    mb->nkeys++;
    man_sign(net, &c, c.m.nmembers, "soon.bin", path);
    import_refused(net, path, "gives org cpia-1 a new key effective sooner than 72 h");
    man_free(&c);
    proto_identity_free(fresh);

    /* A proper re-key (patto network rekey, 72 h of notice): taken and alerted. */
    char dir[400], entry[400], v2[400];
    snprintf(dir, sizeof(dir), "%s/cpia-1-new", net->root);
    snprintf(entry, sizeof(entry), "%s/cpia-1-new.entry.json", net->root);
    snprintf(v2, sizeof(v2), "%s/rekey.bin", net->root);
    const char *init[] = { "init", "--dir", dir, "--org", "cpia-1", "--role", "cpia", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", "0", "--operator", "op", NULL };
    /* --admin-pub: the network's (admin.pub). */
    char pubpath[400];
    snprintf(pubpath, sizeof(pubpath), "%s/admin.pub", net->admin);
    size_t publen = 0;
    uint8_t *pub = slurp(pubpath, &publen);
    assert_true(pub != NULL && publen >= 64);
    char pubhex[65];
    memcpy(pubhex, pub, 64);
    pubhex[64] = 0;
    free(pub);
    init[10] = pubhex;
    th_out o = th_patto_raw(init);
    assert_int_equal(o.status, 0);
    FILE *f = fopen(entry, "w");
    assert_non_null(f);
    fputs(o.out, f);
    fclose(f);
    th_out_free(&o);
    const char *rekey[] = { "network", "rekey", net->admin, entry, "--last-seq", "0", NULL };
    o = th_patto_raw(rekey);
    if (o.status != 0)
        fail_msg("network rekey: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    const char *sign[] = { "network", "sign", net->admin, "--out", v2, NULL };
    o = th_patto_raw(sign);
    assert_int_equal(o.status, 0);
    th_out_free(&o);
    o = th_patto(net, 0, "manifest", "import", v2, NULL);
    if (o.status != 0)
        fail_msg("import of a proper re-key: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    version_want two = { 0, 2 };
    assert_true(has_version(net, &two));
    if (!th_log_has(net, 0, "level=error event=member.rekey org=cpia-1 version=2")) {
        net->keep = true;
        fail_msg("node 0 took the re-key without an alert at level error");
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The network's schema only grows (ARCHITECTURE.md, section 3)                              */

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void hash_hex(const void *p, size_t n, char out[65])
{
    uint8_t h[32];
    proto_schema_hash(p, n, h);
    proto_hex_encode(h, 32, out);
}

/* versions.schema and versions.schema_file of node i's status ("" for null). */
static void schema_versions(th_net *net, size_t i, char in_force[65], char file[65])
{
    th_out o = th_patto(net, i, "status", NULL);
    json_object *versions = NULL, *a = NULL, *b = NULL;
    assert_true(o.json && json_object_object_get_ex(o.json, "versions", &versions)
        && json_object_object_get_ex(versions, "schema", &a)
        && json_object_object_get_ex(versions, "schema_file", &b));
    snprintf(in_force, 65, "%s", json_object_get_string(a));
    snprintf(file, 65, "%s", b != NULL ? json_object_get_string(b) : "");
    th_out_free(&o);
}

static bool schema_lists(th_net *net, size_t i, const char *field)
{
    th_out o = th_patto(net, i, "schema", NULL);
    bool has = o.status == 0 && o.out != NULL && strstr(o.out, field) != NULL;
    th_out_free(&o);
    return has;
}

static bool refused_manifest_logged(th_net *net, void *ctx)
{
    (void)ctx;
    return th_log_has(net, 1, "event=manifest.refuse org=comune-1 version=2");
}

/* A node given a newer schema file keeps the schema in force until a manifest names the file's
 * (status says so), then switches to it; a manifest naming a schema that narrows the one in
 * force (a field dropped) is refused, and so is, by a node whose file is still the old one, a
 * manifest naming another schema (logged once when a peer brings it). */
static void schema_changes_only_grow(void **state)
{
    th_net *net = *state;
    assert_int_equal(proto_init(), PROTO_OK);
    char path[600], man[400];
    snprintf(path, sizeof(path), "%s/schema.json", net->nodes[0].dir);
    size_t len = 0;
    uint8_t *orig = slurp(path, &len);
    assert_non_null(orig);
    /* Grown: a text field added to the first scope. */
    static const char mark[] = "\"fields\": [";
    static const char extra[] = " { \"name\": \"nota_extra\", \"type\": \"text\", \"max\": 50 },";
    const char *at = strstr((const char *)orig, mark);
    assert_non_null(at);
    size_t head = (size_t)(at - (const char *)orig) + strlen(mark), glen = len + strlen(extra);
    char *grown = malloc(glen);
    assert_non_null(grown);
    memcpy(grown, orig, head);
    memcpy(grown + head, extra, strlen(extra));
    memcpy(grown + head + strlen(extra), orig + head, len - head);
    char h_orig[65], h_grown[65], in_force[65], file[65];
    hash_hex(orig, len, h_orig);
    hash_hex(grown, glen, h_grown);

    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    write_bytes(path, grown, glen);
    assert_int_equal(th_start(net, 0), 0);
    schema_versions(net, 0, in_force, file);
    if (strcmp(in_force, h_orig) != 0 || strcmp(file, h_grown) != 0)
        fail_msg("a node given a new schema file: in force %s, file %s (want %s, %s)", in_force,
            file, h_orig, h_grown);
    assert_true(th_log_has(net, 0, "event=schema.pending"));
    assert_false(schema_lists(net, 0, "nota_extra"));

    /* Manifest version 2 names the grown schema: taken, and the node switches to it. */
    man_copy c;
    man_load(net, &c);
    assert_true(proto_hex_decode(h_grown, 64, c.m.schema_hash, 32));
    man_sign(net, &c, c.m.nmembers, "grown.bin", man);
    man_free(&c);
    th_out o = th_patto(net, 0, "manifest", "import", man, NULL);
    if (o.status != 0)
        fail_msg("import of a manifest naming a grown schema: %d %s %s", o.status, o.out, o.err);
    th_out_free(&o);
    schema_versions(net, 0, in_force, file);
    assert_string_equal(in_force, h_grown);
    assert_string_equal(file, "");
    assert_true(schema_lists(net, 0, "nota_extra"));
    assert_true(th_log_has(net, 0, "event=schema.accept"));
    /* The CPIA's file is the old schema: it refuses version 2 when the comune gossips it. */
    if (!th_wait(net, 15000, refused_manifest_logged, NULL)) {
        net->keep = true;
        fail_msg("the CPIA did not log the manifest it refused");
    }

    /* The old file again: it drops nota_extra, so a manifest naming it is refused. */
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    write_bytes(path, orig, len);
    assert_int_equal(th_start(net, 0), 0);
    schema_versions(net, 0, in_force, file);
    assert_string_equal(in_force, h_grown);
    assert_string_equal(file, h_orig);
    man_load(net, &c);
    c.m.version = 2; /* signed as version 3 */
    man_sign(net, &c, c.m.nmembers, "narrow.bin", man);
    man_free(&c);
    o = th_patto(net, 0, "manifest", "import", man, NULL);
    if (o.status != 2 || o.out == NULL
        || strstr(o.out,
               "narrows the schema in force (version 1): it drops field "
               "anagrafica.nota_extra")
            == NULL) {
        net->keep = true;
        fail_msg("import of a manifest naming a narrower schema: %d %s %s", o.status,
            o.out ? o.out : "", o.err ? o.err : "");
    }
    th_out_free(&o);
    version_want two = { 0, 2 };
    assert_true(has_version(net, &two));
    assert_true(schema_lists(net, 0, "nota_extra"));
    free(grown);
    free(orig);
}

int main(void)
{
    th_programs(PATTO_BIN, PATTOD_BIN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bad_config_names_file_and_line, setup_made, teardown),
        cmocka_unit_test_setup_teardown(readable_identity_is_refused, setup_made, teardown),
        cmocka_unit_test_setup_teardown(busy_port_is_a_clear_error, setup_made, teardown),
        cmocka_unit_test_setup_teardown(bad_store_names_the_directory, setup_made, teardown),
        cmocka_unit_test_setup_teardown(second_node_on_same_dir_is_refused, setup_up, teardown),
        cmocka_unit_test_setup_teardown(
            control_socket_survives_clients_that_leave, setup_up, teardown),
        cmocka_unit_test_setup_teardown(operator_name_cannot_forge_log_fields, setup_up, teardown),
        cmocka_unit_test_setup_teardown(
            sigterm_stops_cleanly_within_two_seconds, setup_up, teardown),
        cmocka_unit_test_setup_teardown(manifest_spreads_by_gossip, setup_up, teardown),
        cmocka_unit_test_setup_teardown(check_config_without_starting, setup_up, teardown),
        cmocka_unit_test_setup_teardown(check_config_before_first_start, setup_made, teardown),
        cmocka_unit_test_setup_teardown(dial_for_non_member_is_refused, setup_up, teardown),
        cmocka_unit_test_setup_teardown(org_must_match_identity_key, setup_up, teardown),
        cmocka_unit_test_setup_teardown(same_manifest_again_is_a_no_op, setup_up, teardown),
        cmocka_unit_test_setup_teardown(concurrent_operators_all_answered, setup_up, teardown),
        cmocka_unit_test_setup_teardown(manifest_must_follow, setup_up, teardown),
        cmocka_unit_test_setup_teardown(schema_changes_only_grow, setup_up, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
