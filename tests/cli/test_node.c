/*
 * cli.node: the CLI against real pattod processes on 127.0.0.1 (tests/node/harness.c): what
 * `patto status` shows, a manifest imported again, the rules of a consent grant as the node
 * applies them (also to requests sent straight to its control socket, as another client could),
 * a grant's provision in the access log that case show prints, members in status, a rekey and
 * a retirement taken by a node, the "no operator" sentence, a node without a manifest, and a
 * hung node. Every node is stopped at the end, also on failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <proto/proto.h>

#include "harness.h"

#ifndef PATTO_BIN
#error "PATTO_BIN and PATTOD_BIN must name the programs under test"
#endif

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                   */

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (o == NULL || !json_object_object_get_ex(o, key, &v)
        || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The JSON error message of a failed run (--json), or "". */
static const char *error_message(const th_out *o)
{
    json_object *e;
    if (o->json == NULL || !json_object_object_get_ex(o->json, "error", &e))
        return "";
    const char *m = jstr(e, "message");
    return m != NULL ? m : "";
}

static void expect_status(th_net *net, const th_out *o, int status, const char *needle)
{
    if (o->status != status
        || (needle != NULL && strstr(o->out, needle) == NULL && strstr(o->err, needle) == NULL)) {
        net->keep = true;
        fail_msg("want exit %d with \"%s\", got %d:\n%s%s", status, needle ? needle : "", o->status,
            o->out, o->err);
    }
}

/* `patto --dir DIR ARGS...` without --json (th_patto always adds it). */
static th_out patto_text(th_net *net, size_t i, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = { "--dir", net->nodes[i].dir, a1, a2, a3, NULL };
    return th_patto_raw(argv);
}

/* A new case at node i; its id into id. */
static void new_case(th_net *net, size_t i, char id[PROTO_CASE_ID_TEXT_SIZE])
{
    th_out o = th_patto_write(net, i, "case", "new", "anagrafica.nome=Amina", NULL);
    expect_status(net, &o, 0, NULL);
    const char *s = jstr(o.json, "id");
    assert_non_null(s);
    snprintf(id, PROTO_CASE_ID_TEXT_SIZE, "%s", s);
    th_out_free(&o);
}

typedef struct ctl_answer {
    uint64_t code; /* 0: a control-response */
    char message[PROTO_TEXT_MAX + 1];
    json_object *payload; /* owned, for a control-response */
} ctl_answer;

/* One request straight to node i's control socket (node/CONTROL.md), as any client could send
 * it: args[0] is the operator. */
static void ctl_raw(th_net *net, size_t i, const char *command, const char *const *args,
    size_t nargs, ctl_answer *a)
{
    memset(a, 0, sizeof *a);
    char url[700];
    snprintf(url, sizeof url, "ipc://%s/control.sock", net->nodes[i].dir);
    proto_bytes b[16];
    assert_true(nargs <= 16);
    for (size_t k = 0; k < nargs; k++)
        b[k] = (proto_bytes) { (const uint8_t *)args[k], strlen(args[k]) };
    proto_ctl_request r = { .id = 77,
        .command = { (const uint8_t *)command, strlen(command) },
        .args = b,
        .nargs = nargs };
    proto_buf req = { NULL, 0 };
    assert_int_equal(proto_ctl_request_encode(&r, &req), PROTO_OK);
    nng_socket s;
    assert_int_equal(nng_req0_open(&s), 0);
    void *msg = NULL;
    size_t len = 0;
    int rv;
    if ((rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 20000)) != 0
        || (rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 20000)) != 0
        || (rv = nng_dial(s, url, NULL, 0)) != 0 || (rv = nng_send(s, req.p, req.len, 0)) != 0
        || (rv = nng_recv(s, &msg, &len, NNG_FLAG_ALLOC)) != 0) {
        nng_close(s);
        proto_buf_free(&req);
        fail_msg("control request %s: %s", command, nng_strerror(rv));
    }
    nng_close(s);
    proto_buf_free(&req);
    unsigned kind = 0;
    proto_err perr = proto_peek(msg, len, NULL, &kind, NULL);
    if (perr == PROTO_OK && kind == PROTO_K_CTL_ERROR) {
        proto_ctl_error e;
        perr = proto_ctl_error_decode(msg, len, NULL, &e, NULL);
        if (perr == PROTO_OK) {
            a->code = e.code;
            snprintf(a->message, sizeof a->message, "%.*s", (int)e.message.len,
                (const char *)e.message.p);
        }
    } else if (perr == PROTO_OK) {
        proto_ctl_response resp;
        perr = proto_ctl_response_decode(msg, len, NULL, &resp, NULL);
        if (perr == PROTO_OK) {
            char *text = strndup((const char *)resp.payload.p, resp.payload.len);
            a->payload = text != NULL ? json_tokener_parse(text) : NULL;
            free(text);
        }
    }
    nng_free(msg, len);
    assert_int_equal(perr, PROTO_OK);
}

static void expect_refusal(th_net *net, size_t i, const char *command, const char *const *args,
    size_t nargs, uint64_t code, const char *needle)
{
    ctl_answer a;
    ctl_raw(net, i, command, args, nargs, &a);
    json_object_put(a.payload);
    if (a.code != code || strstr(a.message, needle) == NULL) {
        net->keep = true;
        fail_msg("%s: want code %llu with \"%s\", got %llu \"%s\"", command,
            (unsigned long long)code, needle, (unsigned long long)a.code, a.message);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------- */
/* A three-node network: comune-1, cpia-1, and coop-1 without a configured operator          */

static int setup_net(void **state)
{
    static th_net net;
    const char *nodes[] = { "comune-1:comune", "cpia-1:cpia", "coop-1:coop" };
    if (proto_init() != PROTO_OK || th_net_make(&net, 3, nodes) != 0)
        return -1;
    *state = &net;
    /* coop-1 as `patto init` without --operator writes it: no [node] operator line. */
    char path[700];
    snprintf(path, sizeof path, "%s/pattod.conf", net.nodes[2].dir);
    FILE *f = fopen(path, "r");
    char conf[4096] = "", line[512];
    size_t n = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "operator", 8) != 0)
            n += (size_t)snprintf(conf + n, sizeof conf - n, "%s", line);
    if (f == NULL || fclose(f) != 0 || (f = fopen(path, "w")) == NULL)
        return -1;
    if (fputs(conf, f) < 0 || fclose(f) != 0)
        return -1;
    for (size_t i = 0; i < 3; i++)
        if (th_join(&net, i) != 0)
            return -1;
    return 0;
}

static int teardown_net(void **state)
{
    th_net *net = *state;
    return net != NULL ? th_net_down(net) : 0;
}

static bool has_clock_offset(th_net *net, void *ctx)
{
    (void)ctx;
    th_out o = th_patto(net, 1, "status", NULL);
    json_object *peers;
    bool ok = false;
    if (o.json != NULL && json_object_object_get_ex(o.json, "peers", &peers))
        for (size_t k = 0; k < json_object_array_length(peers); k++) {
            json_object *p = json_object_array_get_idx(peers, k), *off;
            const char *org = jstr(p, "org");
            if (org != NULL && strcmp(org, "comune-1") == 0
                && json_object_object_get_ex(p, "clock_offset_ms", &off)
                && json_object_is_type(off, json_type_int))
                ok = llabs((long long)json_object_get_int64(off)) < 60000;
        }
    th_out_free(&o);
    return ok;
}

static void test_status(void **state)
{
    th_net *net = *state;
    th_out o = th_patto(net, 0, "status", NULL);
    expect_status(net, &o, 0, NULL);
    json_object *v;
    char real[PATH_MAX], listen[64];
    assert_non_null(realpath(net->nodes[0].dir, real));
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%u", (unsigned)net->nodes[0].port);
    assert_true(json_object_object_get_ex(o.json, "pid", &v));
    assert_int_equal(json_object_get_int64(v), net->nodes[0].pid);
    assert_true(json_object_object_get_ex(o.json, "uptime_s", &v));
    assert_true(json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0);
    assert_string_equal(jstr(o.json, "dir"), real);
    assert_string_equal(jstr(o.json, "listen"), listen);
    assert_string_equal(jstr(o.json, "advertise"), listen);
    /* members carry their origins, which name them in vv */
    json_object *members, *peers;
    assert_true(json_object_object_get_ex(o.json, "members", &members));
    assert_int_equal(json_object_array_length(members), 3);
    for (size_t k = 0; k < 3; k++) {
        json_object *m = json_object_array_get_idx(members, k);
        for (size_t i = 0; i < 3; i++)
            if (strcmp(jstr(m, "org"), net->nodes[i].org) == 0)
                assert_string_equal(jstr(m, "origin"), net->nodes[i].origin);
    }
    /* whole seconds (or null) and a clock offset (or null) for every peer */
    assert_true(json_object_object_get_ex(o.json, "peers", &peers));
    assert_int_equal(json_object_array_length(peers), 2);
    for (size_t k = 0; k < 2; k++) {
        json_object *p = json_object_array_get_idx(peers, k), *heard, *off;
        assert_true(json_object_object_get_ex(p, "last_heard_s", &heard));
        assert_true(heard == NULL || json_object_is_type(heard, json_type_int));
        assert_true(json_object_object_get_ex(p, "clock_offset_ms", &off));
        assert_true(off == NULL || json_object_is_type(off, json_type_int));
    }
    th_out_free(&o);

    /* A write at the comune pushes its headers: the CPIA estimates the comune's clock. */
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, id);
    if (!th_wait(net, 15000, has_clock_offset, NULL)) {
        net->keep = true;
        fail_msg("cpia-1 has no clock offset for comune-1 after its write");
    }

    /* For people: the node, its addresses, waiting in full, the vv by org name. */
    o = patto_text(net, 0, "status", NULL, NULL);
    expect_status(net, &o, 0, NULL);
    char want[PATH_MAX + 200];
    snprintf(want, sizeof want, "node         pid %d, up ", (int)net->nodes[0].pid);
    assert_non_null(strstr(o.out, want));
    snprintf(want, sizeof want, ", data %s\n", real);
    assert_non_null(strstr(o.out, want));
    snprintf(want, sizeof want, "address      listen %s, advertised %s\n", listen, listen);
    assert_non_null(strstr(o.out, want));
    assert_non_null(strstr(o.out, "waiting      causal 0, clock 0, key 0, bodies "));
    assert_non_null(strstr(o.out, ", headers 0\n"));
    assert_non_null(strstr(o.out, "LAST HEARD    CLOCK\n"));
    const char *vv = strstr(o.out, "\nORIGIN");
    assert_non_null(vv);
    assert_non_null(strstr(vv, "\ncomune-1 "));
    for (size_t i = 0; i < 3; i++)
        assert_null(strstr(o.out, net->nodes[i].origin)); /* no origin as 64 hex digits */
    assert_null(strstr(o.out, "no manifest yet"));
    th_out_free(&o);
    /* The same in Italian (cli/README.md, "Language"): the labels, columns and sentences
     * translated, the node's values (org, role, peer states) as they are. Whether or not
     * it_IT.UTF-8 is generated here. */
    const char *lc_all = getenv("LC_ALL");
    char saved[64];
    snprintf(saved, sizeof saved, "%s", lc_all != NULL ? lc_all : "");
    setenv("LC_ALL", "it_IT.UTF-8", 1);
    o = patto_text(net, 0, "status", NULL, NULL);
    if (lc_all != NULL)
        setenv("LC_ALL", saved, 1);
    else
        unsetenv("LC_ALL");
    expect_status(net, &o, 0, NULL);
    snprintf(want, sizeof want, "ente         comune-1 (comune)\nnodo         pid %d, attivo da ",
        (int)net->nodes[0].pid);
    assert_non_null(strstr(o.out, want));
    snprintf(want, sizeof want, "indirizzo    ascolto %s, pubblicato %s\n", listen, listen);
    assert_non_null(strstr(o.out, want));
    assert_non_null(strstr(o.out, "in attesa    causali 0, orologio 0, chiave 0, corpi "));
    assert_non_null(strstr(o.out, "ULTIMO SEGNO  OROLOGIO\n"));
    assert_non_null(strstr(o.out, "\nORIGINE"));
    assert_non_null(strstr(o.out, "\nmembri      "));
    assert_null(strstr(o.out, "waiting"));
    th_out_free(&o);
    o = patto_text(net, 1, "status", NULL, NULL);
    expect_status(net, &o, 0, NULL);
    /* the peers table comes first: comune-1's line ends with its clock offset, "+0.0 s" */
    const char *line = strstr(o.out, "\ncomune-1 ");
    assert_non_null(line);
    const char *eol = strchr(line + 1, '\n');
    assert_non_null(eol);
    char row[200];
    snprintf(row, sizeof row, "%.*s", (int)(eol - line), line);
    assert_null(strstr(row, "unknown"));
    assert_true(strlen(row) > 2 && strcmp(row + strlen(row) - 2, " s") == 0);
    assert_true(strchr(row, '.') != NULL);
    th_out_free(&o);
}

static void test_manifest_again(void **state)
{
    th_net *net = *state;
    th_out o = th_patto(net, 0, "manifest", "import", net->manifest, NULL);
    expect_status(net, &o, 0, NULL);
    json_object *v;
    assert_true(json_object_object_get_ex(o.json, "already_in_force", &v));
    assert_true(json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(o.json, "version", &v));
    assert_int_equal(json_object_get_int64(v), 1);
    th_out_free(&o);
    o = patto_text(net, 0, "manifest", "import", net->manifest);
    expect_status(net, &o, 0, "manifest version 1 is already in force (3 members)");
    th_out_free(&o);
}

static void test_grant_rules(void **state)
{
    th_net *net = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, id);

    /* to an org that is no member: not found (3) */
    th_out o = th_patto(net, 0, "consent", "grant", id, "--to", "nobody-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", NULL);
    expect_status(net, &o, 3, "'nobody-1' is not a member of the network");
    th_out_free(&o);

    /* until: the last millisecond of the day in Rome (CET, then CEST), computed by the node */
    o = th_patto(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", "--until", "2030-12-31", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
    assert_true(th_log_has(net, 0, "until=2030-12-31T22:59:59.999Z"));
    o = th_patto(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "documenti",
        "--purpose", "documenti", "--basis", "consent", "--until", "2030-07-15", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
    assert_true(th_log_has(net, 0, "until=2030-07-15T21:59:59.999Z"));
    /* a day that has passed is refused (input error, exit 2), before 1970 too; today is not */
    static const char *const past[] = { "2000-01-01", "1950-01-01" };
    for (size_t k = 0; k < 2; k++) {
        o = th_patto(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
            "--purpose", "lingua", "--basis", "consent", "--until", past[k], NULL);
        expect_status(net, &o, 2, "has passed (the day ended in Europe/Rome)");
        th_out_free(&o);
    }
    char today[16];
    proto_civil rome;
    proto_rome_civil((uint64_t)time(NULL) * 1000u, &rome);
    snprintf(today, sizeof today, "%04d-%02d-%02d", rome.year, rome.month, rome.day);
    o = th_patto(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", "--until", today, NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);

    /* The same rules on the control socket itself, whoever the client is. */
    const char *no_day[]
        = { "op", id, "cpia-1", "lingua", "lingua", "consent", "read", "2026-02-31", "" };
    expect_refusal(net, 0, "consent.grant", no_day, 9, 1, "until must be a date");
    const char *twice[]
        = { "op", id, "cpia-1", "lingua,anagrafica,lingua", "lingua", "consent", "read", "", "" };
    expect_refusal(net, 0, "consent.grant", twice, 9, 1, "scope 'lingua' is named twice");
    const char *blank[] = { "op", id, "cpia-1", "lingua", "lingua", "consent", "read", "", " " };
    expect_refusal(net, 0, "consent.grant", blank, 9, 1, "evidence must be");
    const char *none[] = { "op", id, "cpia-1", "lingua", "lingua", "consent", "none", "", "" };
    expect_refusal(net, 0, "consent.grant", none, 9, 1, "access must be read or write");
    const char *no_law[]
        = { "op", id, "cpia-1", "lingua", "lingua", "public-task", "read", "", "" };
    expect_refusal(net, 0, "consent.grant", no_law, 9, 1, "names the legal provision it rests on");
    const char *blank_op[] = { "  ", id };
    expect_refusal(net, 0, "case.show", blank_op, 2, 2, "the operator name must be");
    char typo[PROTO_CASE_ID_TEXT_SIZE];
    memcpy(typo, id, sizeof typo);
    typo[5] = typo[5] == 'a' ? 'b' : 'a';
    const char *mistyped[] = { "op", typo };
    expect_refusal(net, 0, "case.show", mistyped, 2, 2,
        "its checksum does not match (a character is mistyped)");
    const char *shape[] = { "op", "pc-hello" };
    expect_refusal(net, 0, "case.show", shape, 2, 1, "expected pc- followed by 29");

    /* a text value of only spaces is refused like an empty one */
    o = th_patto(net, 0, "case", "set", id, "anagrafica.cognome= ", NULL);
    expect_status(net, &o, 2, "anagrafica.cognome cannot be only spaces");
    th_out_free(&o);
}

/* The legal provision of a grant reaches the access log; case show tells owner and access. */
static void test_grant_provision_and_access(void **state)
{
    th_net *net = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, id);
    th_out o = th_patto(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "legal-obligation", "--until", "2030-12-31", "--evidence",
        "prot. 12/2026", "--provision", "D.Lgs. 286/1998 art. 4-bis", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);

    o = th_patto(net, 0, "case", "show", id, NULL);
    expect_status(net, &o, 0, NULL);
    assert_string_equal(jstr(o.json, "owner"), "comune-1");
    json_object *access, *lingua;
    assert_true(json_object_object_get_ex(o.json, "access", &access));
    assert_true(json_object_object_get_ex(access, "lingua", &lingua));
    json_object *grant = NULL;
    for (size_t k = 0; k < json_object_array_length(lingua); k++) {
        json_object *e = json_object_array_get_idx(lingua, k);
        if (jstr(e, "kind") != NULL && strcmp(jstr(e, "kind"), "grant") == 0)
            grant = e;
    }
    if (grant == NULL) {
        net->keep = true;
        fail_msg("no grant in the access log of lingua: %s", o.out);
    }
    assert_string_equal(jstr(grant, "to"), "cpia-1");
    assert_string_equal(jstr(grant, "access"), "read");
    assert_string_equal(jstr(grant, "purpose"), "lingua");
    assert_string_equal(jstr(grant, "basis"), "legal-obligation");
    assert_string_equal(jstr(grant, "provision"), "D.Lgs. 286/1998 art. 4-bis");
    assert_string_equal(jstr(grant, "evidence"), "prot. 12/2026");
    assert_string_equal(jstr(grant, "until"), "2030-12-31T22:59:59.999Z");
    assert_string_equal(jstr(grant, "operator"), "op-comune-1");
    /* The Unix user is the kernel's word for who sent the request (this test's user), not
     * anything the client said. */
    const struct passwd *pw = getpwuid(getuid());
    assert_non_null(pw);
    assert_non_null(jstr(grant, "unix_user"));
    assert_string_equal(jstr(grant, "unix_user"), pw->pw_name);
    th_out_free(&o);

    o = patto_text(net, 0, "case", "show", id);
    expect_status(net, &o, 0, "\nlingua access ");
    expect_status(net, &o, 0,
        "grant to cpia-1: read, purpose lingua, basis legal-obligation, "
        "provision D.Lgs. 286/1998 art. 4-bis, until 2030-12-31 23:59:59 "
        "CET, by op-comune-1");
    const char *owner = strstr(o.out, "\nowner ");
    assert_non_null(owner);
    assert_non_null(strstr(owner, " comune-1\n"));
    th_out_free(&o);

    /* the node's bound on the provision is the CLI's: 255 bytes */
    char longest[257];
    memset(longest, 'x', 256);
    longest[256] = '\0';
    const char *too_long[]
        = { "op", id, "cpia-1", "lingua", "lingua", "consent", "read", "", "", longest };
    expect_refusal(net, 0, "consent.grant", too_long, 10, 1, "provision must be at most 255 bytes");
}

/* consent list: every grant of the case's access logs, a row per scope and grant, with its
 * state; a grant to the same org again replaces the earlier one in the same scope. */
static const char *batch_state(json_object *results, size_t i, const char **id)
{
    json_object *r = json_object_array_get_idx(results, i);
    *id = jstr(r, "id");
    const char *st = jstr(r, "state");
    return st != NULL ? st : "";
}

/* Node i's vv entry for node 0's origin (0 when none). */
static int64_t vv_of_first(th_net *net, size_t i)
{
    th_out o = th_patto(net, i, "status", NULL);
    json_object *vv = NULL, *v = NULL;
    int64_t seq = 0;
    if (o.json != NULL && json_object_object_get_ex(o.json, "vv", &vv)
        && json_object_object_get_ex(vv, net->nodes[0].origin, &v))
        seq = json_object_get_int64(v);
    th_out_free(&o);
    return seq;
}

static bool peers_hold_all_of_first(th_net *net, void *ctx)
{
    (void)ctx;
    int64_t own = vv_of_first(net, 0);
    return own > 0 && vv_of_first(net, 1) == own && vv_of_first(net, 2) == own;
}

/* case.batch straight on the control socket: keyed, random and existing cases in one commit,
 * each item all or nothing (refused by the schema before the transaction, or by the write inside
 * it), a key seen twice, and malformed batches. */
static void test_case_batch(void **state)
{
    th_net *net = *state;
    char existing[PROTO_CASE_ID_TEXT_SIZE], missing[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, existing); /* also waits until the node may write */
    proto_case_id cid;
    proto_case_nonce nonce;
    assert_int_equal(proto_case_id_new("comune-1", 8, NULL, &cid, &nonce), PROTO_OK);
    proto_case_id_format(&cid, missing);
    char doc[2048];
    snprintf(doc, sizeof doc,
        "{\"key_name\": \"anagrafica.codice_fiscale\", \"items\": ["
        "{\"key\": \"TSTBTC80A01Z999A\", \"edits\": [\"anagrafica.nome=Amina\", "
        "\"contatti.telefono+=333 111\", \"lingua.livello=A2\"]},"
        "{\"case\": \"%s\", \"edits\": [\"anagrafica.nome=Nessuno\"]},"
        "{\"edits\": [\"anagrafica.nome=Luca\", \"anagrafica.sesso=Z\"]},"
        "{\"edits\": [\"anagrafica.nome=Fatou\"]},"
        "{\"key\": \"TSTBTC80A01Z999A\", \"edits\": [\"anagrafica.nome=Altra\"]},"
        "{\"case\": \"%s\", \"edits\": [\"lingua.livello=B1\"]}]}",
        missing, existing);
    const char *args[] = { "sportello-1", doc };
    ctl_answer a;
    ctl_raw(net, 0, "case.batch", args, 2, &a);
    assert_int_equal(a.code, 0);
    json_object *p = a.payload, *res = NULL;
    assert_non_null(p);
    assert_true(json_object_object_get_ex(p, "results", &res));
    assert_int_equal(json_object_array_length(res), 6);
    const char *id0, *id1, *id2, *id3, *id4, *id5;
    assert_string_equal(batch_state(res, 0, &id0), "created");
    assert_string_equal(batch_state(res, 1, &id1), "refused");
    assert_string_equal(batch_state(res, 2, &id2), "refused");
    assert_string_equal(batch_state(res, 3, &id3), "created");
    assert_string_equal(batch_state(res, 4, &id4), "exists");
    assert_string_equal(batch_state(res, 5, &id5), "updated");
    assert_non_null(id0);
    assert_non_null(id4);
    assert_string_equal(id0, id4); /* the same key names the same case */
    json_object *r1 = json_object_array_get_idx(res, 1), *r2 = json_object_array_get_idx(res, 2);
    assert_non_null(strstr(jstr(r1, "reason"), "no readable scope of case"));
    assert_non_null(strstr(jstr(r2, "reason"), "edit 2: anagrafica.sesso must be one of"));
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(r1, "code", &v) && json_object_get_int(v) == 3);
    assert_true(json_object_object_get_ex(r2, "code", &v) && json_object_get_int(v) == 2);
    assert_true(json_object_object_get_ex(p, "deltas", &v));
    assert_int_equal(json_object_get_int(v), 3 + 1 + 1); /* 3 scopes, 1 scope, 1 scope */
    char keyed[PROTO_CASE_ID_TEXT_SIZE];
    snprintf(keyed, sizeof keyed, "%s", id0);
    json_object_put(p);

    /* What was written is whole; what was refused left nothing. */
    th_out o = th_patto(net, 0, "case", "show", keyed, NULL);
    expect_status(net, &o, 0, "\"livello\": \"A2\"");
    assert_non_null(strstr(o.out, "\"nome\": \"Amina\""));
    assert_null(strstr(o.out, "Altra"));
    th_out_free(&o);
    o = th_patto(net, 0, "case", "show", existing, NULL);
    expect_status(net, &o, 0, "\"livello\": \"B1\"");
    th_out_free(&o);
    o = th_patto(net, 0, "case", "show", missing, NULL);
    expect_status(net, &o, 3, "no readable scope");
    th_out_free(&o);
    o = th_patto(net, 0, "case", "list", NULL);
    assert_null(strstr(o.out, "Luca"));
    th_out_free(&o);

    /* Again: the key finds its case; a dry run writes nothing and answers "valid". */
    snprintf(doc, sizeof doc,
        "{\"key_name\": \"anagrafica.codice_fiscale\", \"dry_run\": true, \"items\": ["
        "{\"key\": \"TSTBTC80A01Z999B\", \"edits\": [\"anagrafica.nome=Omar\"]}]}");
    ctl_raw(net, 0, "case.batch", args, 2, &a);
    assert_int_equal(a.code, 0);
    assert_true(json_object_object_get_ex(a.payload, "results", &res));
    assert_string_equal(batch_state(res, 0, &id0), "valid");
    json_object_put(a.payload);
    snprintf(doc, sizeof doc,
        "{\"key_name\": \"anagrafica.codice_fiscale\", \"items\": ["
        "{\"key\": \"TSTBTC80A01Z999A\", \"edits\": [\"anagrafica.nome=Amina\"]}]}");
    ctl_raw(net, 0, "case.batch", args, 2, &a);
    assert_int_equal(a.code, 0);
    assert_true(json_object_object_get_ex(a.payload, "results", &res));
    assert_string_equal(batch_state(res, 0, &id0), "exists");
    assert_string_equal(id0, keyed);
    json_object_put(a.payload);
    o = th_patto(net, 0, "case", "show", keyed, NULL);
    expect_status(net, &o, 0, "\"nome\": \"Amina\"");
    th_out_free(&o);

    /* The peers took the batch's chain of headers (sealed on the node's sealer thread): each
     * checked its signature and its place after the one before; none is quarantined. */
    new_case(net, 0, existing);
    if (!th_wait(net, 20000, peers_hold_all_of_first, NULL)) {
        net->keep = true;
        fail_msg("the peers do not hold comune-1's headers up to seq %lld: %lld and %lld",
            (long long)vv_of_first(net, 0), (long long)vv_of_first(net, 1),
            (long long)vv_of_first(net, 2));
    }
    o = th_patto(net, 1, "status", NULL);
    json_object *q = NULL;
    assert_true(json_object_object_get_ex(o.json, "quarantined", &q));
    assert_int_equal(json_object_array_length(q), 0);
    th_out_free(&o);

    /* Malformed batches: nothing written. */
    const char *bad[] = { "not json", "{\"items\": []}",
        "{\"items\": [{\"key\": \"x\", \"edits\": [\"anagrafica.nome=A\"]}]}",
        "{\"items\": [{\"edits\": [\"anagrafica.nome=A\"], \"extra\": 1}]}",
        "{\"items\": [{\"case\": \"pc-nope\", \"edits\": [\"anagrafica.nome=A\"]}]}" };
    const char *need[] = { "case.batch takes one JSON document", "between 1 and 1000 items",
        "names no key_name", "unknown member 'extra'", "is not a case id" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *b[] = { "sportello-1", bad[i] };
        expect_refusal(net, 0, "case.batch", b, 2, 1, need[i]);
    }
}

static void test_consent_list(void **state)
{
    th_net *net = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, id);
    th_out o = th_patto_write(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes",
        "lingua,documenti", "--purpose", "lingua", "--basis", "consent", "--until", "2030-06-30",
        "--evidence", "modulo 7/2026", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
    o = th_patto_write(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", "--access", "write", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);

    o = th_patto(net, 0, "consent", "list", id, NULL);
    expect_status(net, &o, 0, NULL);
    assert_string_equal(jstr(o.json, "owner"), "comune-1");
    json_object *grants;
    assert_true(json_object_object_get_ex(o.json, "grants", &grants));
    assert_int_equal(json_object_array_length(grants), 3);
    int replaced = 0, active_write = 0, active_doc = 0;
    for (size_t k = 0; k < 3; k++) {
        json_object *g = json_object_array_get_idx(grants, k);
        const char *scope = jstr(g, "scope"), *st = jstr(g, "state"), *acc = jstr(g, "access");
        assert_string_equal(jstr(g, "to"), "cpia-1");
        replaced += strcmp(scope, "lingua") == 0 && strcmp(st, "replaced") == 0
            && strcmp(acc, "read") == 0;
        active_write += strcmp(scope, "lingua") == 0 && strcmp(st, "active") == 0
            && strcmp(acc, "write") == 0;
        active_doc += strcmp(scope, "documenti") == 0 && strcmp(st, "active") == 0
            && strcmp(jstr(g, "evidence"), "modulo 7/2026") == 0;
    }
    if (replaced != 1 || active_write != 1 || active_doc != 1) {
        net->keep = true;
        fail_msg("consent list: %s", o.out);
    }
    th_out_free(&o);
    o = patto_text(net, 0, "consent", "list", id);
    expect_status(net, &o, 0, "owner comune-1\nSTATE               SCOPE         ENTRY\n");
    expect_status(net, &o, 0, "replaced            lingua        #1  ");
    expect_status(net, &o, 0,
        "grant to cpia-1: read, purpose lingua, basis consent, until "
        "2030-06-30 23:59:59 CEST, by op-comune-1");
    th_out_free(&o);
    /* A new grant that narrows the one in force (write to read, and an end sooner) comes
     * after a narrowing with a cut: the writer cannot go on writing on the old grant. */
    o = th_patto_write(net, 0, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", "--until", "2029-01-31", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
    o = th_patto(net, 0, "consent", "list", id, NULL);
    expect_status(net, &o, 0, "narrowed by the grant that follows");
    th_out_free(&o);
    /* at a node that reads no scope of the case: not found */
    o = th_patto(net, 2, "consent", "list", id, NULL);
    expect_status(net, &o, 3, "no readable scope of case");
    th_out_free(&o);
}

/* Every member in status says whether it is in the network and how many keys it has had. */
static void test_members_in_status(void **state)
{
    th_net *net = *state;
    th_out o = th_patto(net, 0, "status", NULL);
    expect_status(net, &o, 0, NULL);
    json_object *members;
    assert_true(json_object_object_get_ex(o.json, "members", &members));
    assert_int_equal(json_object_array_length(members), 3);
    for (size_t k = 0; k < 3; k++) {
        json_object *m = json_object_array_get_idx(members, k), *v;
        assert_true(json_object_object_get_ex(m, "active", &v));
        assert_true(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(m, "keys", &v));
        assert_int_equal(json_object_get_int64(v), 1);
        assert_true(json_object_object_get_ex(m, "key_effective_ms", &v));
        assert_int_equal(json_object_get_int64(v), 0);
    }
    th_out_free(&o);
}

/* The seq of org's origin in node i's version vector (0 when it has none). */
static uint64_t seq_of(th_net *net, size_t i, size_t org)
{
    th_out o = th_patto(net, i, "status", NULL);
    expect_status(net, &o, 0, NULL);
    json_object *vv, *v;
    uint64_t seq = 0;
    if (json_object_object_get_ex(o.json, "vv", &vv)
        && json_object_object_get_ex(vv, net->nodes[org].origin, &v))
        seq = (uint64_t)json_object_get_int64(v);
    th_out_free(&o);
    return seq;
}

/* A new identity for org, as `patto init` on its new node prints it, saved to path. */
static void new_identity(
    th_net *net, const char *org, const char *role, const char *name, char *path, size_t n)
{
    char dir[400], pubpath[400], pub[80] = "", listen[64];
    snprintf(dir, sizeof dir, "%s/%s", net->root, name);
    snprintf(path, n, "%s/%s.entry.json", net->root, name);
    snprintf(pubpath, sizeof pubpath, "%s/admin.pub", net->admin);
    FILE *f = fopen(pubpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(pub, sizeof pub, f));
    fclose(f);
    pub[64] = '\0';
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%u", (unsigned)th_free_port());
    const char *init[] = { "init", "--dir", dir, "--org", org, "--role", role, "--listen", listen,
        "--admin-pub", pub, "--operator", "op", NULL };
    th_out o = th_patto_raw(init);
    expect_status(net, &o, 0, NULL);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(o.out, f) >= 0);
    assert_int_equal(fclose(f), 0);
    th_out_free(&o);
}

/* Give the newest key of org in the working manifest its notice back (cli/README.md, "When
 * nodes refuse a new key"): effective_ms 0 and notice_hours. */
static void notice_back(th_net *net, const char *org, int hours)
{
    char path[400];
    snprintf(path, sizeof path, "%s/manifest.json", net->admin);
    json_object *w = json_object_from_file(path), *members;
    assert_non_null(w);
    assert_true(json_object_object_get_ex(w, "members", &members));
    for (size_t i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i), *keys;
        if (strcmp(jstr(m, "org"), org) != 0)
            continue;
        assert_true(json_object_object_get_ex(m, "keys", &keys));
        json_object *k = json_object_array_get_idx(keys, json_object_array_length(keys) - 1);
        json_object_object_add(k, "effective_ms", json_object_new_int(0));
        json_object_object_add(k, "notice_hours", json_object_new_int(hours));
    }
    assert_int_equal(json_object_to_file_ext(path, w, JSON_C_TO_STRING_PRETTY), 0);
    json_object_put(w);
}

/* Last of the network's tests: cpia-1 gets a new key and coop-1 leaves. The comune's node
 * refuses a new key with less notice than it requires ([network] rekey_notice_hours, 72 h),
 * takes the manifest signed again with the notice given back, and shows both. */
/* Does node 0's (node 2's) log hold the text ctx? */
static bool owner_log_says(th_net *net, void *ctx)
{
    return th_log_has(net, 0, ctx);
}

static bool coop_log_says(th_net *net, void *ctx)
{
    return th_log_has(net, 2, ctx);
}

static void test_rekey_and_retire(void **state)
{
    th_net *net = *state;
    char entry[600], seq[32], seq2[32], m2[400], m3[400];
    /* a scope the owner granted to coop-1, which is removed below */
    char removed_case[PROTO_CASE_ID_TEXT_SIZE];
    new_case(net, 0, removed_case);
    th_out g = th_patto_write(net, 0, "consent", "grant", removed_case, "--to", "coop-1",
        "--scopes", "lingua", "--purpose", "lingua", "--basis", "public-task", "--provision",
        "L. 328/2000 art. 22", NULL);
    expect_status(net, &g, 0, NULL);
    th_out_free(&g);
    new_identity(net, "cpia-1", "cpia", "cpia-1-new", entry, sizeof entry);
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)seq_of(net, 1, 1));
    snprintf(seq2, sizeof seq2, "%llu", (unsigned long long)seq_of(net, 2, 2));
    const char *hasty[]
        = { "network", "rekey", net->admin, entry, "--last-seq", seq, "--notice-hours", "1", NULL };
    th_out o = th_patto_raw(hasty);
    expect_status(net, &o, 0, "nodes with the default [network] rekey_notice_hours (72)");
    th_out_free(&o);
    const char *retire[] = { "network", "retire", net->admin, "coop-1", "--last-seq", seq2, NULL };
    o = th_patto_raw(retire);
    expect_status(net, &o, 0, "coop-1 leaves the network");
    th_out_free(&o);
    snprintf(m2, sizeof m2, "%s/manifest-2.bin", net->root);
    const char *sign[] = { "network", "sign", net->admin, "--out", m2, NULL };
    o = th_patto_raw(sign);
    expect_status(net, &o, 0, "the new key of cpia-1 takes effect at ");
    th_out_free(&o);
    o = th_patto(net, 0, "manifest", "import", m2, NULL);
    expect_status(net, &o, 2, "new key effective sooner than 72 h after the manifest was signed");
    th_out_free(&o);

    /* no node took version 2: the key gets its notice back, and version 3 is taken */
    notice_back(net, "cpia-1", 72);
    snprintf(m3, sizeof m3, "%s/manifest-3.bin", net->root);
    const char *sign3[] = { "network", "sign", net->admin, "--out", m3, NULL };
    o = th_patto_raw(sign3);
    expect_status(net, &o, 0, "(72 h notice)");
    th_out_free(&o);
    /* coop-1's node is down when the network removes it: it learns it when it comes back */
    assert_int_equal(th_stop(net, 2, SIGTERM), 0);
    o = th_patto(net, 0, "manifest", "import", m3, NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
    assert_true(th_log_has(net, 0, "member.rekey"));
    o = th_patto(net, 0, "status", NULL);
    expect_status(net, &o, 0, NULL);
    json_object *members;
    assert_true(json_object_object_get_ex(o.json, "members", &members));
    for (size_t k = 0; k < json_object_array_length(members); k++) {
        json_object *m = json_object_array_get_idx(members, k), *active, *keys, *from;
        assert_true(json_object_object_get_ex(m, "active", &active));
        assert_true(json_object_object_get_ex(m, "keys", &keys));
        assert_true(json_object_object_get_ex(m, "key_effective_ms", &from));
        if (strcmp(jstr(m, "org"), "coop-1") == 0) {
            assert_false(json_object_get_boolean(active));
        } else if (strcmp(jstr(m, "org"), "cpia-1") == 0) {
            assert_true(json_object_get_boolean(active));
            assert_int_equal(json_object_get_int64(keys), 2);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            assert_true(json_object_get_int64(from) > now + 71 * INT64_C(3600000));
        }
    }
    th_out_free(&o);
    /* the owner closes the grant of the org that left: a narrowing and a new key */
    if (!th_wait(net, 10000, owner_log_says, "org=coop-1 reason=removed new_epoch=2")) {
        net->keep = true;
        fail_msg("the owner did not close the grant to the removed coop-1");
    }
    o = th_patto(net, 0, "consent", "list", removed_case, NULL);
    expect_status(net, &o, 0, "the org is no longer in the network");
    th_out_free(&o);
    o = patto_text(net, 0, "status", NULL, NULL);
    expect_status(net, &o, 0, "coop-1 (coop), left the network\n");
    expect_status(net, &o, 0, "cpia-1 (cpia), new key from ");
    th_out_free(&o);

    /* coop-1's own node, started again, dials the comune, which proves who it is talking to
     * and hands it the manifest that retires it, and closes: it says it was removed, writes
     * nothing, dials no one, and starts again so */
    assert_int_equal(th_start(net, 2), 0);
    if (!th_wait(net, 15000, coop_log_says, "event=node.removed version=3")) {
        net->keep = true;
        fail_msg("the removed coop-1 was not told by the nodes it dialled");
    }
    /* told by the comune, or by the CPIA, which took the manifest from the comune */
    if (!th_log_has(net, 0, "event=peer.farewell org=coop-1")
        && !th_log_has(net, 1, "event=peer.farewell org=coop-1")) {
        net->keep = true;
        fail_msg("no node logged its farewell to coop-1");
    }
    for (int pass = 0; pass < 2; pass++) {
        o = th_patto(net, 2, "status", NULL);
        expect_status(net, &o, 0, NULL);
        json_object *removed;
        assert_true(json_object_object_get_ex(o.json, "removed", &removed));
        assert_true(json_object_get_boolean(removed));
        th_out_free(&o);
        o = patto_text(net, 2, "status", NULL, NULL);
        expect_status(net, &o, 0,
            "REMOVED      this node was removed from the network in manifest "
            "version 3");
        th_out_free(&o);
        o = th_patto(
            net, 2, "--operator", "sportello-2", "case", "new", "anagrafica.nome=Amina", NULL);
        expect_status(net, &o, 2,
            "this node was removed from the network: manifest version 3 "
            "retires its key");
        th_out_free(&o);
        if (pass == 0) {
            assert_int_equal(th_stop(net, 2, SIGTERM), 0);
            assert_int_equal(th_start(net, 2), 0);
        }
    }
}

static void test_no_operator(void **state)
{
    th_net *net = *state;
    th_out o = th_patto(net, 2, "case", "new", "anagrafica.nome=Amina", NULL);
    char real[PATH_MAX], want[PATH_MAX + 100];
    assert_non_null(realpath(net->nodes[2].dir, real));
    snprintf(want, sizeof want, "add 'operator = NAME' under [node] in %s/pattod.conf", real);
    expect_status(net, &o, 1, want);
    assert_non_null(strstr(error_message(&o), "give --operator NAME (or set PATTO_OPERATOR)"));
    th_out_free(&o);
    /* doing what it says works */
    o = th_patto_write(
        net, 2, "--operator", "sportello-2", "case", "new", "anagrafica.nome=Amina", NULL);
    expect_status(net, &o, 0, NULL);
    th_out_free(&o);
}

/* ---------------------------------------------------------------------------------------- */
/* One node, each test its own                                                               */

static int setup_one(void **state)
{
    th_net *net = calloc(1, sizeof *net);
    *state = net;
    return net != NULL && proto_init() == PROTO_OK ? 0 : -1;
}

static int teardown_one(void **state)
{
    th_net *net = *state;
    if (net == NULL)
        return 0;
    for (size_t i = 0; i < net->n; i++)
        th_signal(net, i, SIGCONT); /* a test that failed with its node stopped */
    int rc = net->n > 0 ? th_net_down(net) : 0;
    free(net);
    return rc;
}

/* A node set up by hand with --advertise, started without a manifest. */
static void test_advertised_node_without_manifest(void **state)
{
    th_net *net = *state;
    const char *one[] = { "comune-9:comune" };
    assert_int_equal(th_net_make(net, 1, one), 0);
    /* the harness made it with --listen only; make it again with --advertise */
    th_node *nd = &net->nodes[0];
    char conf[700], key[700], schema[700], pubpath[400], pub[80] = "";
    snprintf(conf, sizeof conf, "%s/pattod.conf", nd->dir);
    snprintf(key, sizeof key, "%s/identity.key", nd->dir);
    snprintf(schema, sizeof schema, "%s/schema.json", nd->dir);
    assert_int_equal(unlink(conf), 0);
    assert_int_equal(unlink(key), 0);
    assert_int_equal(unlink(schema), 0);
    snprintf(pubpath, sizeof pubpath, "%s/admin.pub", net->admin);
    FILE *f = fopen(pubpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(pub, sizeof pub, f));
    fclose(f);
    pub[64] = '\0';
    char listen[64], advertise[64];
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%u", (unsigned)nd->port);
    snprintf(advertise, sizeof advertise, "tcp://localhost:%u", (unsigned)nd->port);
    const char *init[]
        = { "init", "--dir", nd->dir, "--org", nd->org, "--role", "comune", "--listen", listen,
              "--advertise", advertise, "--admin-pub", pub, "--operator", "op", NULL };
    th_out o = th_patto_raw(init);
    expect_status(net, &o, 0, NULL);
    assert_string_equal(jstr(o.json, "url"), advertise);
    th_out_free(&o);
    assert_int_equal(th_start(net, 0), 0);

    o = th_patto(net, 0, "status", NULL);
    expect_status(net, &o, 0, NULL);
    assert_string_equal(jstr(o.json, "listen"), listen);
    assert_string_equal(jstr(o.json, "advertise"), advertise);
    json_object *versions, *manifest;
    assert_true(json_object_object_get_ex(o.json, "versions", &versions));
    assert_true(json_object_object_get_ex(versions, "manifest", &manifest));
    assert_true(json_object_is_type(manifest, json_type_null));
    th_out_free(&o);
    o = patto_text(net, 0, "status", NULL, NULL);
    expect_status(net, &o, 0, "\nno manifest yet: import one with patto manifest import FILE\n");
    th_out_free(&o);
    o = th_patto(net, 0, "case", "new", "anagrafica.nome=Amina", NULL);
    expect_status(net, &o, 2, "no network manifest yet: import one with patto manifest import");
    th_out_free(&o);
}

/* A hung node (SIGSTOP) does not answer; a stopped one is not running. */
static void test_hung_node(void **state)
{
    th_net *net = *state;
    const char *one[] = { "comune-1:comune" };
    assert_int_equal(th_net_up(net, 1, one), 0);
    assert_int_equal(th_signal(net, 0, SIGSTOP), 0);
    assert_int_equal(setenv("PATTO_TEST_TIMEOUT_MS", "1500", 1), 0);
    int64_t t0 = now_ms();
    th_out o = th_patto(net, 0, "case", "new", "anagrafica.nome=Amina", NULL);
    int64_t took = now_ms() - t0;
    unsetenv("PATTO_TEST_TIMEOUT_MS");
    th_signal(net, 0, SIGCONT);
    expect_status(
        net, &o, 4, "does not answer (waited 1.5 s): the command may or may not have been done");
    th_out_free(&o);
    if (took < 1500 || took > 8000) {
        net->keep = true;
        fail_msg("the CLI gave up after %lld ms, not after its 1.5 s", (long long)took);
    }

    /* the node gone: told at once, differently */
    assert_int_equal(th_stop(net, 0, SIGTERM), 0);
    t0 = now_ms();
    o = th_patto(net, 0, "status", NULL);
    took = now_ms() - t0;
    expect_status(net, &o, 4, "control.sock (is pattod running?)");
    th_out_free(&o);
    assert_true(took < 1500);
}

int main(void)
{
    th_programs(PATTO_BIN, PATTOD_BIN);
    const struct CMUnitTest net_tests[] = {
        cmocka_unit_test(test_status), cmocka_unit_test(test_manifest_again),
        cmocka_unit_test(test_grant_rules), cmocka_unit_test(test_grant_provision_and_access),
        cmocka_unit_test(test_consent_list), cmocka_unit_test(test_members_in_status),
        cmocka_unit_test(test_case_batch), cmocka_unit_test(test_no_operator),
        cmocka_unit_test(test_rekey_and_retire), /* last: it changes the network */
    };
    const struct CMUnitTest one_tests[] = {
        cmocka_unit_test_setup_teardown(
            test_advertised_node_without_manifest, setup_one, teardown_one),
        cmocka_unit_test_setup_teardown(test_hung_node, setup_one, teardown_one),
    };
    int net_failed = cmocka_run_group_tests_name("network", net_tests, setup_net, teardown_net);
    int one_failed = cmocka_run_group_tests_name("one node", one_tests, NULL, NULL);
    return net_failed != 0 || one_failed != 0;
}
