/*
 * cli.remote: the remote commands of the built `patto` against a fake node. The test listens
 * (rep0, ipc) on DATA/control.sock before it spawns the CLI, serves requests on a thread that
 * records them and answers what the test set up, and checks the CLI's output and exit code and,
 * after the CLI has exited, the requests it sent (node/CONTROL.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json-c/json.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <time.h>

#include <proto/proto.h>

#include "run.h"

#define MAX_REQUESTS 8
#define MAX_ARGS 16

typedef enum answer_kind {
    ANSWER_PAYLOAD,    /* control-response with payload */
    ANSWER_ERROR,      /* control-error with code and message */
    ANSWER_WRONG_ID,   /* control-response with another request's id */
    ANSWER_NOT_JSON,   /* control-response whose payload is not JSON */
    ANSWER_WRONG_KIND, /* a manifest-shaped message (not a control answer) */
    ANSWER_HANG_UP,    /* close the socket instead of answering */
    ANSWER_SILENT      /* take the request and never answer (a hung node) */
} answer_kind;

typedef struct request {
    char command[65];
    size_t nargs;
    uint8_t *args[MAX_ARGS];
    size_t len[MAX_ARGS];
} request;

typedef struct fake_node {
    char *dir;
    nng_socket sock;
    bool listening;
    pthread_t thread;
    bool running;
    /* set before the CLI runs */
    answer_kind kind;
    const char *payload;
    uint64_t code;
    const char *message;
    /* recorded by the thread, read after the CLI exited (joined or under mu) */
    pthread_mutex_t mu;
    request req[MAX_REQUESTS];
    int nreq;
    int bad; /* requests that did not decode */
} fake_node;

static void reply(fake_node *f, uint64_t id)
{
    proto_buf out = { NULL, 0 };
    proto_err err = PROTO_EINVAL;
    if (f->kind == ANSWER_ERROR) {
        proto_ctl_error e = { id, f->code, { (const uint8_t *)f->message, strlen(f->message) } };
        err = proto_ctl_error_encode(&e, &out);
    } else {
        const char *p = f->kind == ANSWER_NOT_JSON ? "{\"id\": " : f->payload;
        proto_ctl_response r
            = { f->kind == ANSWER_WRONG_ID ? id + 1 : id, { (const uint8_t *)p, strlen(p) } };
        err = proto_ctl_response_encode(&r, &out);
        if (f->kind == ANSWER_WRONG_KIND && err == PROTO_OK)
            out.p[2] = PROTO_K_MANIFEST; /* fixarray, version, kind, ... */
    }
    if (err == PROTO_OK)
        nng_send(f->sock, out.p, out.len, 0);
    proto_buf_free(&out);
}

static void *serve(void *arg)
{
    fake_node *f = arg;
    for (;;) {
        void *msg = NULL;
        size_t len = 0;
        if (nng_recv(f->sock, &msg, &len, NNG_FLAG_ALLOC) != 0)
            break; /* closed by teardown */
        proto_ctl_request r;
        if (proto_ctl_request_decode(msg, len, NULL, &r, NULL) != PROTO_OK) {
            pthread_mutex_lock(&f->mu);
            f->bad++;
            pthread_mutex_unlock(&f->mu);
            nng_free(msg, len);
            continue;
        }
        pthread_mutex_lock(&f->mu);
        if (f->nreq < MAX_REQUESTS) {
            request *q = &f->req[f->nreq++];
            snprintf(q->command, sizeof q->command, "%.*s", (int)r.command.len,
                (const char *)r.command.p);
            q->nargs = r.nargs;
            for (size_t i = 0; i < r.nargs && i < MAX_ARGS; i++) {
                q->args[i] = malloc(r.args[i].len + 1);
                if (q->args[i] != NULL) {
                    memcpy(q->args[i], r.args[i].p, r.args[i].len);
                    q->args[i][r.args[i].len] = '\0';
                    q->len[i] = r.args[i].len;
                }
            }
        }
        pthread_mutex_unlock(&f->mu);
        uint64_t id = r.id;
        proto_ctl_request_fini(&r);
        nng_free(msg, len);
        if (f->kind == ANSWER_HANG_UP) {
            nng_close(f->sock); /* the node dies with the request in hand */
            break;
        }
        if (f->kind == ANSWER_SILENT)
            continue;
        reply(f, id);
    }
    return NULL;
}

static int setup(void **state)
{
    if (proto_init() != PROTO_OK)
        return -1;
    fake_node *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    *state = f;
    pthread_mutex_init(&f->mu, NULL);
    f->kind = ANSWER_PAYLOAD;
    f->payload = "{}";
    if ((f->dir = tmpdir_make()) == NULL)
        return -1;
    char url[4200];
    snprintf(url, sizeof url, "ipc://%s/control.sock", f->dir);
    /* Listening before the CLI starts: the CLI's dial finds the socket file at once. */
    if (nng_rep0_open(&f->sock) != 0)
        return -1;
    f->listening = true;
    nng_listener l;
    if (nng_listener_create(&l, f->sock, url) != 0
        || nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, 16u << 20) != 0
        || nng_listener_start(l, 0) != 0)
        return -1;
    if (pthread_create(&f->thread, NULL, serve, f) != 0)
        return -1;
    f->running = true;
    return 0;
}

static int teardown(void **state)
{
    fake_node *f = *state;
    if (f == NULL)
        return 0;
    if (f->listening)
        nng_close(f->sock); /* ends the thread's nng_recv */
    if (f->running)
        pthread_join(f->thread, NULL);
    for (int i = 0; i < f->nreq; i++)
        for (size_t j = 0; j < f->req[i].nargs && j < MAX_ARGS; j++)
            free(f->req[i].args[j]);
    pthread_mutex_destroy(&f->mu);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Run patto with --dir set to the fake node's directory through PATTO_DIR; extra: one more
 * KEY=VALUE for its environment, or NULL. */
static run_result run_env_extra(
    fake_node *f, const char *op_env, const char *extra, const char *const *args)
{
    char dir_env[4200], op[200];
    snprintf(dir_env, sizeof dir_env, "PATTO_DIR=%s", f->dir);
    const char *env[4] = { dir_env, NULL, NULL, NULL };
    size_t n = 1;
    if (op_env != NULL) {
        snprintf(op, sizeof op, "PATTO_OPERATOR=%s", op_env);
        env[n++] = op;
    }
    env[n] = extra;
    run_result r;
    assert_int_equal(run_patto(&r, NULL, env, args), 0);
    return r;
}

static run_result run_env(fake_node *f, const char *op_env, const char *const *args)
{
    return run_env_extra(f, op_env, NULL, args);
}

#define RUN(f, ...) run_env((f), NULL, (const char *const[]) { __VA_ARGS__, NULL })
#define RUN_OP(f, op, ...) run_env((f), (op), (const char *const[]) { __VA_ARGS__, NULL })

static void expect_exit(const run_result *r, int code)
{
    if (r->code != code)
        run_dump("patto", r);
    assert_int_equal(r->code, code);
}

/* The one request the CLI sent; its command and args (args[0] is the operator). */
static const request *only_request(fake_node *f, const char *command, size_t nargs)
{
    pthread_mutex_lock(&f->mu);
    int n = f->nreq, bad = f->bad;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(bad, 0);
    assert_int_equal(n, 1);
    const request *q = &f->req[0];
    assert_string_equal(q->command, command);
    assert_int_equal(q->nargs, nargs);
    return q;
}

static int requests(fake_node *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->nreq;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void arg_is(const request *q, size_t i, const char *want)
{
    assert_true(i < q->nargs);
    assert_int_equal(q->len[i], strlen(want));
    assert_memory_equal(q->args[i], want, q->len[i]);
}

static void new_case_id(char out[PROTO_CASE_ID_TEXT_SIZE])
{
    proto_case_id id;
    proto_case_nonce nonce;
    assert_int_equal(proto_case_id_new("comune-1", 8, NULL, &id, &nonce), PROTO_OK);
    proto_case_id_format(&id, out);
}

/* ---------------------------------------------------------------------------------------- */

static void test_case_new(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[128];
    new_case_id(id);
    snprintf(payload, sizeof payload, "{\"id\": \"%s\"}", id);
    f->payload = payload;
    /* global options after the command; values with '=', spaces and UTF-8 kept verbatim */
    run_result r = RUN(f, "case", "new", "anagrafica.nome=Amina = Ç", "lingua.ore_frequenza+=12",
        "competenze.competenze-=saldatura", "--operator", "sportello-1");
    expect_exit(&r, 0);
    char first[128];
    snprintf(first, sizeof first, "%s\n", id);
    assert_int_equal(strncmp(r.out, first, strlen(first)), 0); /* the id alone on line one */
    assert_string_equal(r.err, "");
    run_result_fini(&r);
    const request *q = only_request(f, "case.new", 4);
    arg_is(q, 0, "sportello-1");
    arg_is(q, 1, "anagrafica.nome=Amina = Ç");
    arg_is(q, 2, "lingua.ore_frequenza+=12");
    arg_is(q, 3, "competenze.competenze-=saldatura");
}

static void test_case_new_json_and_operator_env(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[128];
    new_case_id(id);
    snprintf(payload, sizeof payload, "{\"id\":\"%s\"}", id);
    f->payload = payload;
    run_result r = RUN_OP(f, "ins-rossi", "--json", "case", "new");
    expect_exit(&r, 0);
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "id")), id);
    assert_int_equal(json_object_object_length(o), 1);
    json_object_put(o);
    run_result_fini(&r);
    const request *q = only_request(f, "case.new", 1);
    arg_is(q, 0, "ins-rossi");
}

static void test_no_operator_is_empty(void **state)
{
    fake_node *f = *state;
    f->payload = "{\"cases\": []}";
    run_result r = RUN(f, "case", "list");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "no case readable on this node"));
    run_result_fini(&r);
    const request *q = only_request(f, "case.list", 1);
    arg_is(q, 0, ""); /* the node uses its configured operator */
}

static void test_case_set_and_unset(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[160], sloppy[64];
    new_case_id(id);
    /* upper case without dashes: the CLI checks it and sends the canonical form */
    size_t k = 0;
    for (const char *p = id; *p != '\0'; p++)
        if (*p != '-' || p == id + 2)
            sloppy[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    sloppy[k] = '\0';
    snprintf(payload, sizeof payload, "{\"id\": \"%s\", \"edits\": 2}", id);
    f->payload = payload;
    run_result r = RUN(f, "--operator", "op", "case", "set", sloppy, "lingua.livello=A2",
        "servizi.eventi+={\"tipo\": \"colloquio\"}");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "2 edits recorded"));
    run_result_fini(&r);
    const request *q = only_request(f, "case.set", 4);
    arg_is(q, 0, "op");
    arg_is(q, 1, id);
    arg_is(q, 2, "lingua.livello=A2");
    arg_is(q, 3, "servizi.eventi+={\"tipo\": \"colloquio\"}");
}

static void test_case_unset(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[160];
    new_case_id(id);
    snprintf(payload, sizeof payload, "{\"id\": \"%s\", \"edits\": 1}", id);
    f->payload = payload;
    run_result r = RUN(f, "case", "unset", id, "documenti.permesso_scadenza");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "documenti.permesso_scadenza removed"));
    run_result_fini(&r);
    const request *q = only_request(f, "case.unset", 3);
    arg_is(q, 1, id);
    arg_is(q, 2, "documenti.permesso_scadenza");
}

static void test_case_usage_never_asks_the_node(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case_id(id);
    run_result r = RUN(f, "case", "set", id);
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "missing EDIT"));
    run_result_fini(&r);
    r = RUN(f, "case", "show");
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "missing argument; usage: patto case show CASE"));
    run_result_fini(&r);
    char typo[PROTO_CASE_ID_TEXT_SIZE];
    memcpy(typo, id, sizeof typo);
    typo[5] = typo[5] == 'a' ? 'b' : 'a'; /* one mistyped character: the checksum catches it */
    r = RUN(f, "case", "show", typo);
    expect_exit(&r, 2);
    assert_non_null(strstr(r.err,
        "is not a case id: its checksum does not match (a character is "
        "mistyped)"));
    run_result_fini(&r);
    r = RUN(f, "case", "show", "pc-hello");
    expect_exit(&r, 1); /* not a case id's shape at all: the command line is wrong */
    assert_non_null(strstr(r.err, "'pc-hello' is not a case id: expected pc- followed by 29"));
    run_result_fini(&r);
    r = RUN_OP(f, " ", "case", "show", id);
    expect_exit(&r, 2); /* an operator name of only spaces */
    assert_non_null(strstr(r.err, "the operator name (PATTO_OPERATOR) must be"));
    run_result_fini(&r);
    r = RUN(f, "case", "unset", id, "documenti");
    expect_exit(&r, 1);
    run_result_fini(&r);
    assert_int_equal(requests(f), 0);
}

static void test_case_show(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[1200];
    new_case_id(id);
    snprintf(payload, sizeof payload,
        "{\"id\": \"%s\", \"scopes\": {"
        "\"anagrafica\": {\"nome\": \"Amina\", \"cittadinanze\": [\"NGA\", \"GHA\"]},"
        "\"documenti\": {\"permesso_tipo\": \"lavoro\"},"
        "\"lingua\": {\"ore_frequenza\": 42},"
        "\"servizi\": {\"eventi\": [{\"at\": \"2025-03-01T09:00:00Z\", \"by\": \"comune-1\","
        " \"event\": {\"tipo\": \"colloquio\"}}, {\"at\": \"2025-03-02T09:00:00Z\", \"by\":"
        " \"cpia-1\", \"event\": null, \"redacted\": true}]},"
        "\"piano\": {}},"
        "\"conflicts\": {\"documenti.permesso_tipo\": [\"lavoro\", \"studio\"]}}",
        id);
    f->payload = payload;
    run_result r = RUN(f, "case", "show", id);
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, id));
    assert_non_null(strstr(r.out, "anagrafica.nome"));
    assert_non_null(strstr(r.out, "Amina\n"));
    assert_non_null(strstr(r.out, "NGA, GHA"));
    assert_non_null(strstr(r.out, "lingua.ore_frequenza"));
    assert_non_null(strstr(r.out, "42\n"));
    assert_non_null(strstr(r.out, "lavoro  CONFLICT: lavoro | studio\n"));
    /* times in Europe/Rome for people (the JSON below keeps UTC) */
    assert_non_null(strstr(r.out, "2025-03-01 10:00:00 CET  comune-1  {\"tipo\":\"colloquio\"}"));
    assert_non_null(strstr(r.out, "2025-03-02 10:00:00 CET  cpia-1  (redacted)"));
    assert_non_null(strstr(r.out, "piano"));
    /* one line per field, the key first */
    const char *line = strstr(r.out, "\nanagrafica.nome ");
    assert_non_null(line);
    run_result_fini(&r);
    const request *q = only_request(f, "case.show", 2);
    arg_is(q, 1, id);

    /* --json: the payload itself */
    r = RUN(f, "case", "show", id, "--json");
    expect_exit(&r, 0);
    json_object *got = json_tokener_parse(r.out);
    json_object *want = json_tokener_parse(payload);
    assert_non_null(got);
    assert_non_null(want);
    assert_true(json_object_equal(got, want));
    json_object_put(got);
    json_object_put(want);
    run_result_fini(&r);
}

static void test_node_error_becomes_exit_code(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], msg[128];
    new_case_id(id);
    snprintf(msg, sizeof msg, "no readable scope of case %s on this node", id);
    f->kind = ANSWER_ERROR;
    f->code = 3;
    f->message = msg;
    run_result r = RUN(f, "case", "show", id);
    expect_exit(&r, 3);
    assert_string_equal(r.out, "");
    char line[200];
    snprintf(line, sizeof line, "patto: %s\n", msg);
    assert_string_equal(r.err, line);
    run_result_fini(&r);

    r = RUN(f, "--json", "case", "show", id);
    expect_exit(&r, 3);
    assert_string_equal(r.err, "");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    json_object *e = json_object_object_get(o, "error");
    assert_non_null(e);
    assert_int_equal(json_object_get_int(json_object_object_get(e, "code")), 3);
    assert_string_equal(json_object_get_string(json_object_object_get(e, "message")), msg);
    json_object_put(o);
    run_result_fini(&r);

    f->code = 2;
    f->message = "lingua.livello must be one of pre-A1 A1 A2 B1 B2 C1 C2 (got 'b1')";
    r = RUN(f, "case", "new", "lingua.livello=b1");
    expect_exit(&r, 2);
    assert_non_null(strstr(r.err, "(got 'b1')"));
    run_result_fini(&r);

    f->code = 77; /* not an exit code: an internal error, message kept */
    f->message = "strange";
    r = RUN(f, "status");
    expect_exit(&r, 5);
    assert_non_null(strstr(r.err, "strange"));
    run_result_fini(&r);
}

static void test_bad_answers_are_internal_errors(void **state)
{
    fake_node *f = *state;
    f->kind = ANSWER_WRONG_ID;
    f->payload = "{}";
    run_result r = RUN(f, "status");
    expect_exit(&r, 5);
    assert_non_null(strstr(r.err, "answered another request"));
    run_result_fini(&r);
    f->kind = ANSWER_NOT_JSON;
    r = RUN(f, "digest");
    expect_exit(&r, 5);
    assert_non_null(strstr(r.err, "not valid JSON"));
    run_result_fini(&r);
    f->kind = ANSWER_WRONG_KIND;
    r = RUN(f, "schema");
    expect_exit(&r, 5);
    assert_string_equal(r.out, "");
    run_result_fini(&r);
}

static void test_node_hangs_up(void **state)
{
    fake_node *f = *state;
    f->kind = ANSWER_HANG_UP;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_result r = RUN(f, "case", "new", "anagrafica.nome=Amina");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    expect_exit(&r, 4);
    assert_non_null(strstr(r.err, "before it answered"));
    assert_non_null(strstr(r.err, "may or may not have been applied"));
    run_result_fini(&r);
    assert_int_equal(requests(f), 1); /* sent once, never resent */
    /* it noticed the hang-up, it did not wait for the 30 s timeout */
    assert_true(t1.tv_sec - t0.tv_sec < 20);
}

static void test_consent_grant(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[400];
    new_case_id(id);
    snprintf(payload, sizeof payload,
        "{\"id\": \"%s\", \"to\": \"cpia-1\", \"scopes\": [\"lingua\", \"anagrafica\"], "
        "\"access\": \"read\", \"purpose\": \"lingua\", \"basis\": \"public-task\", \"until\": "
        "null}",
        id);
    f->payload = payload;
    run_result r = RUN(f, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua,anagrafica",
        "--purpose", "lingua", "--basis", "public-task", "--provision", "L. 328/2000 art. 22");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "granted to cpia-1"));
    run_result_fini(&r);
    const request *q = only_request(f, "consent.grant", 10);
    arg_is(q, 0, "");
    arg_is(q, 1, id);
    arg_is(q, 2, "cpia-1");
    arg_is(q, 3, "lingua,anagrafica");
    arg_is(q, 4, "lingua");
    arg_is(q, 5, "public-task");
    arg_is(q, 6, "read"); /* the default */
    arg_is(q, 7, "");
    arg_is(q, 8, "");
    arg_is(q, 9, "L. 328/2000 art. 22");
}

static void test_consent_grant_all_options(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    new_case_id(id);
    f->payload = "{}";
    run_result r = RUN(f, "--operator", "ass-sociale-2", "consent", "grant", id,
        "--basis=explicit-consent", "--evidence", "modulo 12/2025 firmato", "--until", "2026-02-28",
        "--access", "write", "--provision", "D.Lgs. 286/1998 art. 4-bis", "--purpose",
        "integrazione", "--scopes", "sociale", "--to", "coop-sole", "--json");
    expect_exit(&r, 0);
    run_result_fini(&r);
    const request *q = only_request(f, "consent.grant", 10);
    arg_is(q, 0, "ass-sociale-2");
    arg_is(q, 1, id);
    arg_is(q, 2, "coop-sole");
    arg_is(q, 3, "sociale");
    arg_is(q, 4, "integrazione");
    arg_is(q, 5, "explicit-consent");
    arg_is(q, 6, "write");
    arg_is(q, 7, "2026-02-28");
    arg_is(q, 8, "modulo 12/2025 firmato");
    arg_is(q, 9, "D.Lgs. 286/1998 art. 4-bis"); /* the 9th argument after the operator */
}

/* The provision is said in the human answer, whether or not the node's answer carries it. */
static void test_consent_grant_provision_shown(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[400];
    new_case_id(id);
    snprintf(payload, sizeof payload,
        "{\"id\": \"%s\", \"to\": \"pref-lt\", \"scopes\": [\"documenti\"], \"access\": "
        "\"read\", \"purpose\": \"documenti\", \"basis\": \"legal-obligation\", \"until\": "
        "\"2026-12-31\"}",
        id);
    f->payload = payload;
    run_result r = RUN(f, "consent", "grant", id, "--to", "pref-lt", "--scopes", "documenti",
        "--purpose", "documenti", "--basis", "legal-obligation", "--until", "2026-12-31",
        "--provision=D.Lgs. 286/1998 art. 5");
    expect_exit(&r, 0);
    char want[300];
    snprintf(want, sizeof want,
        "%s: read access to documenti granted to pref-lt (purpose documenti, basis "
        "legal-obligation, provision D.Lgs. 286/1998 art. 5, until 2026-12-31)\n",
        id);
    assert_string_equal(r.out, want);
    run_result_fini(&r);
    const request *q = only_request(f, "consent.grant", 10);
    arg_is(q, 9, "D.Lgs. 286/1998 art. 5");
}

/* 255 bytes of provision is the most; the CLI sends it as it is. */
static void test_consent_grant_provision_longest(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], provision[256];
    new_case_id(id);
    memset(provision, 'x', 255);
    provision[255] = '\0';
    f->payload = "{}";
    run_result r = RUN(f, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua",
        "--purpose", "lingua", "--basis", "consent", "--provision", provision);
    expect_exit(&r, 0);
    run_result_fini(&r);
    const request *q = only_request(f, "consent.grant", 10);
    arg_is(q, 9, provision);
}

/* case show for people: the owner, and under each scope its access log. */
static void test_case_show_owner_and_access(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], payload[3000];
    new_case_id(id);
    snprintf(payload, sizeof payload,
        "{\"id\": \"%s\", \"owner\": \"comune-1\", \"scopes\": {"
        "\"anagrafica\": {\"nome\": \"Amina\"}, \"lingua\": {\"livello\": \"A2\"}, "
        "\"documenti\": {}}, \"conflicts\": {}, \"access\": {"
        "\"anagrafica\": [], "
        "\"lingua\": [{\"number\": 1, \"recorded_at\": \"2026-12-06T12:29:31.000Z\", \"kind\": "
        "\"grant\", \"to\": \"cpia-1\", \"access\": \"write\", \"purpose\": \"lingua\", "
        "\"basis\": \"public-task\", \"provision\": null, \"until\": null, \"operator\": "
        "\"sportello-1\", \"unix_user\": null, \"evidence\": null}, "
        "{\"number\": 2, \"recorded_at\": \"2026-12-07T08:00:00.000Z\", \"kind\": \"epoch\", "
        "\"epoch\": 2}], "
        "\"documenti\": [{\"number\": 1, \"recorded_at\": \"2026-07-01T09:00:00.250Z\", "
        "\"kind\": \"grant\", \"to\": \"pref-lt\", \"access\": \"read\", \"purpose\": "
        "\"documenti\", \"basis\": \"legal-obligation\", \"provision\": \"D.Lgs. 286/1998 art. "
        "5\", \"until\": \"2026-12-31T22:59:59.999Z\", \"operator\": \"ins-rossi\", "
        "\"unix_user\": \"patto-op\", \"evidence\": \"prot. 4711/2026\"}]}}",
        id);
    f->payload = payload;
    run_result r = RUN(f, "case", "show", id);
    expect_exit(&r, 0);
    char want[3000];
    snprintf(want, sizeof want,
        "case %s\n"
        "owner             comune-1\n"
        "anagrafica.nome   Amina\n"
        "lingua.livello    A2\n"
        "lingua access     #1  2026-12-06 13:29:31 CET  grant to cpia-1: write, purpose lingua, "
        "basis public-task, by sportello-1\n"
        "                  #2  2026-12-07 09:00:00 CET  new epoch 2 (a new key for the scope)\n"
        "documenti         (readable, no fields)\n"
        "documenti access  #1  2026-07-01 11:00:00 CEST  grant to pref-lt: read, purpose "
        "documenti, basis legal-obligation, provision D.Lgs. 286/1998 art. 5, until 2026-12-31 "
        "23:59:59 CET, by ins-rossi (unix user patto-op), evidence prot. 4711/2026\n",
        id);
    if (strcmp(r.out, want) != 0)
        run_dump("case show", &r);
    assert_string_equal(r.out, want);
    run_result_fini(&r);

    /* --json: the node's document itself */
    r = RUN(f, "--json", "case", "show", id);
    expect_exit(&r, 0);
    json_object *got = json_tokener_parse(r.out), *doc = json_tokener_parse(payload);
    assert_non_null(got);
    assert_true(json_object_equal(got, doc));
    json_object_put(got);
    json_object_put(doc);
    run_result_fini(&r);
}

/* status for people: orgs that left, and a new key that takes effect later. */
static void test_status_members(void **state)
{
    fake_node *f = *state;
    f->payload
        = "{\"org\": \"comune-1\", \"role\": \"comune\", \"versions\": {\"manifest\": 3}, "
          "\"peers\": [], \"vv\": {}, \"members\": ["
          "{\"org\": \"comune-1\", \"role\": \"comune\", \"origin\": \"11\", \"active\": true, "
          "\"keys\": 1, \"key_effective_ms\": 0}, "
          "{\"org\": \"coop-1\", \"role\": \"coop\", \"origin\": \"22\", \"active\": false, "
          "\"keys\": 1, \"key_effective_ms\": 0}, "
          "{\"org\": \"cpia-1\", \"role\": \"cpia\", \"origin\": \"33\", \"active\": true, "
          "\"keys\": 2, \"key_effective_ms\": 4102444800000}, "
          "{\"org\": \"cpi-1\", \"role\": \"cpi\", \"origin\": \"44\", \"active\": true, "
          "\"keys\": 2, \"key_effective_ms\": 1000}], \"purposes\": []}";
    run_result r = RUN(f, "status");
    expect_exit(&r, 0);
    const char *want = "\nmembers     comune-1 (comune)\n"
                       "            coop-1 (coop), left the network\n"
                       "            cpia-1 (cpia), new key from 2100-01-01 01:00:00 CET\n"
                       "            cpi-1 (cpi)\n";
    if (strstr(r.out, want) == NULL)
        run_dump("status", &r);
    assert_non_null(strstr(r.out, want));
    run_result_fini(&r);
}

static void test_consent_grant_usage(void **state)
{
    fake_node *f = *state;
    char id[PROTO_CASE_ID_TEXT_SIZE], long_provision[257];
    new_case_id(id);
    memset(long_provision, 'a', 256); /* one byte too many */
    long_provision[256] = '\0';
    struct {
        const char *opt, *val, *needle;
    } bad[] = {
        { "--basis", "gut-feeling", "--basis 'gut-feeling' is not one of" },
        { "--access", "admin", "--access 'admin' is not read or write" },
        { "--until", "2026-02-30", "--until '2026-02-30' is not a date YYYY-MM-DD" },
        { "--until", "31/12/2026", "--until '31/12/2026' is not a date" },
        { "--to", "CPIA", "--to 'CPIA' is not an org id" },
        { "--scopes", "lingua,,sociale", "--scopes 'lingua,,sociale' is not" },
        { "--scopes", "lavoro,lingua,lavoro", "--scopes names lavoro twice" },
        { "--scopes", "lingua,lingua", "--scopes names lingua twice" },
        { "--evidence", " ", "--evidence must be" },
        { "--access", "none", "--access 'none' is not read or write" },
        { "--provision", " ", "--provision must be at most 255 bytes of text" },
        { "--provision", "art.\t4", "--provision must be at most 255 bytes of text" },
        { "--provision", long_provision, "--provision must be at most 255 bytes of text" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *to = strcmp(bad[i].opt, "--to") == 0 ? bad[i].val : "cpia-1";
        const char *scopes = strcmp(bad[i].opt, "--scopes") == 0 ? bad[i].val : "lingua";
        const char *basis = strcmp(bad[i].opt, "--basis") == 0 ? bad[i].val : "consent";
        const char *extra_opt = strcmp(bad[i].opt, "--access") == 0
                || strcmp(bad[i].opt, "--until") == 0 || strcmp(bad[i].opt, "--evidence") == 0
                || strcmp(bad[i].opt, "--provision") == 0
            ? bad[i].opt
            : "--evidence";
        const char *extra_val = extra_opt == bad[i].opt ? bad[i].val : "ref";
        run_result r = RUN(f, "consent", "grant", id, "--to", to, "--scopes", scopes, "--purpose",
            "lingua", "--basis", basis, extra_opt, extra_val);
        expect_exit(&r, 1);
        if (strstr(r.err, bad[i].needle) == NULL)
            run_dump(bad[i].needle, &r);
        assert_non_null(strstr(r.err, bad[i].needle));
        run_result_fini(&r);
    }
    run_result r = RUN(f, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua");
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "--to, --scopes, --purpose and --basis are required"));
    run_result_fini(&r);
    /* public task and legal obligation name their legal provision */
    r = RUN(f, "consent", "grant", id, "--to", "cpia-1", "--scopes", "lingua", "--purpose",
        "lingua", "--basis", "legal-obligation");
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "--basis legal-obligation needs --provision TEXT"));
    run_result_fini(&r);
    assert_int_equal(requests(f), 0);
}

/* A real signed manifest of version 4 with one member, made with proto directly, written to
 * DIR/m.bin (path, 4200 bytes); its bytes in *out (owned: proto_buf_free). */
static void write_manifest(fake_node *f, char *path, proto_buf *out)
{
    proto_identity *admin = NULL;
    assert_int_equal(proto_identity_new(NULL, &admin), PROTO_OK);
    proto_member_key k = { .retired = false };
    memcpy(k.origin, proto_identity_origin(admin), PROTO_ORIGIN_LEN);
    memcpy(k.box_pk, proto_identity_box_pk(admin), PROTO_BOX_PK_LEN);
    proto_member m = { .org = { (const uint8_t *)"comune-1", 8 },
        .name = { (const uint8_t *)"Comune", 6 },
        .role = PROTO_ROLE_COMUNE,
        .url = { (const uint8_t *)"tcp://127.0.0.1:7401", 20 },
        .keys = &k,
        .nkeys = 1 };
    proto_manifest man = { .version = 4,
        .signed_at_ms = UINT64_C(1796000000000),
        .max_clock_ahead_ms = PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS,
        .counter_limit = PROTO_COUNTER_LIMIT_DEFAULT,
        .members = &m,
        .nmembers = 1 };
    *out = (proto_buf) { NULL, 0 };
    assert_int_equal(proto_manifest_sign(&man, admin, out), PROTO_OK);
    proto_identity_free(admin);
    snprintf(path, 4200, "%s/m.bin", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(out->p, 1, out->len, fp), out->len);
    assert_int_equal(fclose(fp), 0);
}

static void test_manifest_import(void **state)
{
    fake_node *f = *state;
    char path[4200];
    proto_buf signed_bytes;
    write_manifest(f, path, &signed_bytes);

    f->payload = "{\"version\": 4, \"members\": 1}";
    run_result r = RUN(f, "manifest", "import", path);
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "manifest version 4 imported (1 members)"));
    run_result_fini(&r);
    const request *q = only_request(f, "manifest.import", 2);
    assert_int_equal(q->len[1], signed_bytes.len);
    assert_memory_equal(q->args[1], signed_bytes.p, signed_bytes.len);
    proto_buf_free(&signed_bytes);

    /* not a manifest: refused before the node is asked */
    r = RUN(f, "manifest", "import", PATTO_EXE);
    expect_exit(&r, 2);
    assert_non_null(strstr(r.err, "is not a signed manifest"));
    run_result_fini(&r);
    r = RUN(f, "manifest", "import", "/nonexistent/m.bin");
    expect_exit(&r, 3);
    run_result_fini(&r);
    assert_int_equal(requests(f), 1);
}

static void test_status_digest_schema(void **state)
{
    fake_node *f = *state;
    f->payload = "{\"org\": \"comune-1\", \"role\": \"comune\", \"versions\": {\"program\": "
                 "\"0.1.0\", \"protocol\": 1, \"schema\": \"abcd\", \"manifest\": 3}, "
                 "\"peers\": [{\"org\": \"cpia-1\", \"state\": \"up\", \"lag\": 7, "
                 "\"last_heard_s\": 0.4}, {\"org\": \"pref-lt\", \"state\": \"down\", \"lag\": "
                 "0, \"last_heard_s\": null}], \"vv\": {}, \"counts\": {\"cases\": 12, "
                 "\"headers\": 340, \"bodies\": 120}, \"quarantined\": [], \"waiting\": "
                 "{\"causal\": 0, \"clock\": 1, \"bodies\": 2}, \"members\": [], \"purposes\": []}";
    run_result r = RUN(f, "status");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "comune-1 (comune)"));
    assert_non_null(strstr(r.out, "manifest 3"));
    assert_non_null(strstr(r.out, "cases 12, headers 340, bodies 120"));
    assert_non_null(strstr(r.out, "quarantined  none"));
    assert_non_null(strstr(r.out, "cpia-1"));
    assert_non_null(strstr(r.out, "0.4 s ago"));
    assert_non_null(strstr(r.out, "never"));
    run_result_fini(&r);
    r = RUN(f, "--json", "status");
    expect_exit(&r, 0);
    json_object *got = json_tokener_parse(r.out), *want = json_tokener_parse(f->payload);
    assert_non_null(got);
    assert_true(json_object_equal(got, want));
    json_object_put(got);
    json_object_put(want);
    run_result_fini(&r);

    f->payload = "{\"vv\": {\"aa11\": 5}, \"tags\": {\"bb22\": \"cc33\"}}";
    r = RUN(f, "digest");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "aa11"));
    assert_non_null(strstr(r.out, "bb22"));
    assert_non_null(strstr(r.out, "cc33"));
    run_result_fini(&r);

    f->payload = "{\"schema\": \"patto-default\", \"version\": 1, \"hash\": \"ee\", \"scopes\": "
                 "[{\"name\": \"lingua\", \"label\": \"Lingua italiana\", \"fields\": [{\"name\": "
                 "\"livello\", \"type\": \"enum\", \"values\": [\"A1\", \"A2\"]}, {\"name\": "
                 "\"competenze\", \"type\": \"set\", \"of\": \"text\"}]}]}";
    r = RUN(f, "schema");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "lingua - Lingua italiana"));
    assert_non_null(strstr(r.out, "livello"));
    assert_non_null(strstr(r.out, "[A1 A2]"));
    assert_non_null(strstr(r.out, "set of text"));
    run_result_fini(&r);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nreq, 4);
    assert_string_equal(f->req[0].command, "status");
    assert_string_equal(f->req[2].command, "digest");
    assert_string_equal(f->req[3].command, "schema");
    for (int i = 0; i < 4; i++)
        assert_int_equal(f->req[i].nargs, 1);
    pthread_mutex_unlock(&f->mu);
}

static void test_times_in_rome(void **state)
{
    fake_node *f = *state;
    char a[PROTO_CASE_ID_TEXT_SIZE], b[PROTO_CASE_ID_TEXT_SIZE], payload[400];
    new_case_id(a);
    new_case_id(b);
    snprintf(payload, sizeof payload,
        "{\"cases\": [{\"id\": \"%s\", \"scopes\": [\"lingua\"], \"last_change\": "
        "\"2026-12-06T12:29:31.000Z\"}, {\"id\": \"%s\", \"scopes\": [\"lingua\"], "
        "\"last_change\": \"2026-07-01T09:00:00.250Z\"}]}",
        a, b);
    f->payload = payload;
    run_result r = RUN(f, "case", "list");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "2026-12-06 13:29:31 CET"));
    assert_non_null(strstr(r.out, "2026-07-01 11:00:00 CEST"));
    assert_null(strstr(r.out, "T12:29:31"));
    run_result_fini(&r);
    /* --json keeps the node's UTC times */
    r = RUN(f, "--json", "case", "list");
    expect_exit(&r, 0);
    json_object *got = json_tokener_parse(r.out), *want = json_tokener_parse(payload);
    assert_non_null(got);
    assert_true(json_object_equal(got, want));
    json_object_put(got);
    json_object_put(want);
    run_result_fini(&r);
}

static void test_status_for_people(void **state)
{
    fake_node *f = *state;
    char payload[2000];
    const char *o1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *o2 = "2222222222222222222222222222222222222222222222222222222222222222";
    const char *o3 = "3333333333333333333333333333333333333333333333333333333333333333";
    snprintf(payload, sizeof payload,
        "{\"org\": \"comune-1\", \"role\": \"comune\", \"pid\": 4242, \"uptime_s\": 7260, "
        "\"dir\": \"/var/lib/patto\", \"listen\": \"tcp://0.0.0.0:7401\", \"advertise\": "
        "\"tcp://10.0.0.5:7401\", \"versions\": {\"program\": \"0.1.0\", \"protocol\": 1, "
        "\"schema\": \"ab\", \"manifest\": null}, \"peers\": [{\"org\": \"cpia-1\", "
        "\"state\": \"up\", \"lag\": 0, \"last_heard_s\": 2, \"clock_offset_ms\": 1234}, "
        "{\"org\": \"coop-1\", \"state\": \"up\", \"lag\": 0, \"last_heard_s\": 0, "
        "\"clock_offset_ms\": -260}, {\"org\": \"pref-lt\", \"state\": \"down\", \"lag\": "
        "0, \"last_heard_s\": null, \"clock_offset_ms\": null}], \"vv\": {\"%s\": 12, "
        "\"%s\": 5, \"%s\": 1}, \"counts\": {\"cases\": 1, \"headers\": 18, \"bodies\": 3}, "
        "\"quarantined\": [], \"waiting\": {\"causal\": 1, \"clock\": 2, \"key\": 3, "
        "\"bodies\": 4, \"headers\": 5}, \"members\": [{\"org\": \"comune-1\", \"role\": "
        "\"comune\", \"origin\": \"%s\"}, {\"org\": \"cpia-1\", \"role\": \"cpia\", "
        "\"origin\": \"%s\"}], \"purposes\": []}",
        o1, o2, o3, o1, o2);
    f->payload = payload;
    run_result r = RUN(f, "status");
    expect_exit(&r, 0);
    assert_non_null(strstr(r.out, "node         pid 4242, up 2 h 1 min, data /var/lib/patto\n"));
    assert_non_null(
        strstr(r.out, "address      listen tcp://0.0.0.0:7401, advertised tcp://10.0.0.5:7401\n"));
    assert_non_null(
        strstr(r.out, "\nno manifest yet: import one with patto manifest import FILE\n"));
    assert_non_null(strstr(r.out, "waiting      causal 1, clock 2, key 3, bodies 4, headers 5\n"));
    assert_non_null(strstr(r.out, "2 s ago       +1.2 s\n"));
    assert_non_null(strstr(r.out, "0 s ago       -0.3 s\n"));
    assert_non_null(strstr(r.out, "never         unknown\n"));
    /* the vv by org; an origin that is no member as its hex */
    const char *vv = strstr(r.out, "\nORIGIN ");
    assert_non_null(vv);
    const char *rows[][2] = { { "\ncomune-1 ", "  12\n" }, { "\ncpia-1 ", "  5\n" } };
    for (size_t i = 0; i < 2; i++) {
        const char *row = strstr(vv, rows[i][0]), *eol = row ? strchr(row + 1, '\n') : NULL;
        assert_non_null(eol);
        assert_int_equal(strncmp(eol + 1 - strlen(rows[i][1]), rows[i][1], strlen(rows[i][1])), 0);
    }
    assert_null(strstr(r.out, o1));
    assert_null(strstr(r.out, o2));
    assert_non_null(strstr(r.out, o3));
    run_result_fini(&r);
}

static void test_manifest_already_in_force(void **state)
{
    fake_node *f = *state;
    char path[4200];
    proto_buf signed_bytes;
    write_manifest(f, path, &signed_bytes);
    proto_buf_free(&signed_bytes);
    f->payload = "{\"version\": 4, \"members\": 3, \"already_in_force\": true}";
    run_result r = RUN(f, "manifest", "import", path);
    expect_exit(&r, 0);
    assert_string_equal(
        r.out, "manifest version 4 is already in force (3 members): nothing changed\n");
    run_result_fini(&r);
}

/* A node that takes the request and never answers: the CLI's one timeout (shortened for the
 * test) ends the wait, and says the command may have been done. */
static void test_node_never_answers(void **state)
{
    fake_node *f = *state;
    f->kind = ANSWER_SILENT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_result r = run_env_extra(f, NULL, "PATTO_TEST_TIMEOUT_MS=800",
        (const char *const[]) { "case", "new", "anagrafica.nome=Amina", NULL });
    clock_gettime(CLOCK_MONOTONIC, &t1);
    expect_exit(&r, 4);
    assert_non_null(
        strstr(r.err, "does not answer (waited 0.8 s): the command may or may not have been done"));
    run_result_fini(&r);
    long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 800 && ms < 10000);
    assert_int_equal(requests(f), 1);
}

static void test_no_node(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    if (dir == NULL) {
        fail_msg("no temporary directory");
        return;
    }
    char arg[4200];
    snprintf(arg, sizeof arg, "--dir=%s", dir);
    run_result r;
    int rc = run_patto(&r, NULL, NULL, (const char *const[]) { "status", arg, NULL });
    char want[4400];
    snprintf(want, sizeof want,
        "patto: cannot reach the node: %s/control.sock (is pattod running?)\n", dir);
    tmpdir_remove(dir);
    assert_int_equal(rc, 0);
    expect_exit(&r, 4);
    assert_string_equal(r.err, want);
    run_result_fini(&r);
    assert_int_equal(
        run_patto(&r, NULL, NULL,
            (const char *const[]) { "--json", "--dir", "/nonexistent/patto", "digest", NULL }),
        0);
    expect_exit(&r, 4);
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(
        json_object_get_int(json_object_object_get(json_object_object_get(o, "error"), "code")), 4);
    json_object_put(o);
    run_result_fini(&r);
    assert_int_equal(run_patto(&r, NULL, NULL, (const char *const[]) { "status", NULL }), 0);
    expect_exit(&r, 1); /* neither --dir nor PATTO_DIR */
    assert_non_null(strstr(r.err, "no data directory"));
    run_result_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_case_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_new_json_and_operator_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_operator_is_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_set_and_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_usage_never_asks_the_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_error_becomes_exit_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_answers_are_internal_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_hangs_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_grant_all_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_grant_provision_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_grant_provision_longest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_show_owner_and_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_grant_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_digest_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_times_in_rome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_for_people, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_already_in_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_never_answers, setup, teardown),
        cmocka_unit_test(test_no_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
