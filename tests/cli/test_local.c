/*
 * cli.local: the local commands of the built `patto` end to end (network init/add/remove/
 * purpose/sign, init, --version, --help, usage and input errors), run as a subprocess in a
 * temporary directory. The signed manifest is checked with proto/, independently of the CLI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <json-c/json.h>

#include <proto/proto.h>

#include "run.h"

#ifndef PATTO_SOURCE_DIR
#error "PATTO_SOURCE_DIR must name the source tree"
#endif
#define DEFAULT_SCHEMA PATTO_SOURCE_DIR "/node/schema/default.json"

typedef struct fixture {
    char *dir;
    char admin_pub[65];
} fixture;

static char path_buf[8][4600];
static int path_next;

/* dir/name in one of a few rotating buffers (valid for the next few calls). */
static const char *at(const fixture *f, const char *name)
{
    char *p = path_buf[path_next++ % 8];
    snprintf(p, sizeof path_buf[0], "%s/%s", f->dir, name);
    return p;
}

static run_result run_in(const fixture *f, const char *const *args)
{
    run_result r;
    assert_int_equal(run_patto(&r, f->dir, NULL, args), 0);
    return r;
}

#define RUN(f, ...) run_in((f), (const char *const[]) { __VA_ARGS__, NULL })

static void expect_exit(const run_result *r, int code, const char *what)
{
    if (r->code != code)
        run_dump(what, r);
    assert_int_equal(r->code, code);
}

static void expect_err(const run_result *r, int code, const char *needle)
{
    expect_exit(r, code, needle);
    if (strstr(r->err, needle) == NULL)
        run_dump(needle, r);
    assert_non_null(strstr(r->err, needle));
    assert_string_equal(r->out, ""); /* errors never go to stdout without --json */
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL || (f->dir = tmpdir_make()) == NULL) {
        free(f);
        return -1;
    }
    if (proto_init() != PROTO_OK)
        return -1;
    *state = f;
    return 0;
}

/* setup, then `patto network init adm`. */
static int setup_admin(void **state)
{
    if (setup(state) != 0)
        return -1;
    fixture *f = *state;
    run_result r;
    if (run_patto(&r, f->dir, NULL, (const char *const[]) { "network", "init", "adm", NULL }) != 0
        || r.code != 0 || strlen(r.out) < 64) {
        run_dump("network init", &r);
        run_result_fini(&r);
        return -1;
    }
    memcpy(f->admin_pub, r.out, 64);
    f->admin_pub[64] = '\0';
    run_result_fini(&r);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f != NULL) {
        tmpdir_remove(f->dir);
        free(f);
    }
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* `patto init` of one node; its entry saved as <org>.json. Returns the parsed entry. */
static json_object *init_node(const fixture *f, const char *dir, const char *org, const char *role,
    const char *url, bool json)
{
    char name[128];
    snprintf(name, sizeof name, "Ente %s", org);
    run_result r = json
        ? RUN(f, "--json", "init", "--dir", dir, "--org", org, "--role", role, "--listen", url,
            "--admin-pub", f->admin_pub, "--name", name, "--operator", "sportello-1")
        : RUN(f, "init", "--org", org, "--role", role, "--listen", url, "--admin-pub", f->admin_pub,
            "--name", name, "--dir", dir);
    expect_exit(&r, 0, "init");
    json_object *entry = json_tokener_parse(r.out);
    assert_non_null(entry);
    assert_string_equal(json_object_get_string(json_object_object_get(entry, "org")), org);
    assert_string_equal(json_object_get_string(json_object_object_get(entry, "role")), role);
    assert_string_equal(json_object_get_string(json_object_object_get(entry, "url")), url);
    assert_string_equal(json_object_get_string(json_object_object_get(entry, "name")), name);
    assert_int_equal(strlen(json_object_get_string(json_object_object_get(entry, "origin"))), 64);
    assert_int_equal(strlen(json_object_get_string(json_object_object_get(entry, "box_pk"))), 64);
    char file[64];
    snprintf(file, sizeof file, "%s.json", org);
    write_text(at(f, file), r.out);
    run_result_fini(&r);
    return entry;
}

static void hex32(const char *hex, uint8_t out[32])
{
    assert_non_null(hex);
    assert_int_equal(strlen(hex), 64);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void default_schema_hash(uint8_t out[PROTO_HASH_LEN])
{
    size_t len = 0;
    char *bytes = slurp_file(DEFAULT_SCHEMA, &len);
    assert_non_null(bytes);
    proto_schema_hash((const uint8_t *)bytes, len, out);
    free(bytes);
}

/* Decode and verify a signed manifest file against the admin key. */
static void load_manifest(const fixture *f, const char *file, char **bytes, proto_manifest *m)
{
    size_t len = 0;
    *bytes = slurp_file(at(f, file), &len);
    assert_non_null(*bytes);
    proto_diag diag = { 0, NULL };
    assert_int_equal(proto_manifest_decode((const uint8_t *)*bytes, len, NULL, m, &diag), PROTO_OK);
    uint8_t pk[32];
    hex32(f->admin_pub, pk);
    assert_int_equal(proto_manifest_verify(m, pk), PROTO_OK);
    pk[0] ^= 1; /* the check above can fail: another key does not verify */
    assert_int_not_equal(proto_manifest_verify(m, pk), PROTO_OK);
}

static bool bytes_is(proto_bytes b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.p, s, b.len) == 0;
}

static void expect_member(const proto_member *m, json_object *entry)
{
    uint8_t k[32];
    assert_true(bytes_is(m->org, json_object_get_string(json_object_object_get(entry, "org"))));
    assert_true(bytes_is(m->name, json_object_get_string(json_object_object_get(entry, "name"))));
    assert_true(bytes_is(m->url, json_object_get_string(json_object_object_get(entry, "url"))));
    assert_string_equal(
        proto_role_name(m->role), json_object_get_string(json_object_object_get(entry, "role")));
    hex32(json_object_get_string(json_object_object_get(entry, "origin")), k);
    assert_memory_equal(m->origin, k, 32);
    hex32(json_object_get_string(json_object_object_get(entry, "box_pk")), k);
    assert_memory_equal(m->box_pk, k, 32);
}

static void test_network_flow(void **state)
{
    fixture *f = *state;
    /* the admin directory setup_admin made */
    assert_int_equal(file_mode(at(f, "adm")), 0700);
    assert_int_equal(file_mode(at(f, "adm/admin.key")), 0600);
    size_t len = 0;
    char *text = slurp_file(at(f, "adm/admin.key"), &len);
    assert_non_null(text);
    assert_int_equal(len, 64);
    free(text);
    text = slurp_file(at(f, "adm/admin.pub"), &len);
    assert_non_null(text);
    assert_int_equal(len, 65);
    assert_memory_equal(text, f->admin_pub, 64);
    assert_true(text != NULL && text[64] == '\n');
    free(text);

    /* three nodes; the prefettura's in --json mode (same entry format) */
    json_object *e1 = init_node(f, "n1", "comune-1", "comune", "tcp://127.0.0.1:7401", false);
    json_object *e2 = init_node(f, "n2", "cpia-1", "cpia", "tcp://127.0.0.1:7402", false);
    json_object *e3 = init_node(f, "n3", "pref-lt", "prefettura", "tcp://[::1]:7403", true);
    assert_int_equal(file_mode(at(f, "n1")), 0750);
    assert_int_equal(file_mode(at(f, "n1/identity.key")), 0600);
    text = slurp_file(at(f, "n1/identity.key"), &len);
    assert_non_null(text);
    assert_int_equal(len, 64);
    free(text);
    char *conf = slurp_file(at(f, "n3/pattod.conf"), NULL);
    assert_non_null(conf);
    assert_non_null(strstr(conf, "[node]\norg = pref-lt\nrole = prefettura\n"));
    assert_non_null(strstr(conf, "listen = tcp://[::1]:7403\n"));
    assert_non_null(strstr(conf, "operator = sportello-1\n"));
    char pin[160];
    snprintf(pin, sizeof pin, "[network]\nadmin_pub = %s\n", f->admin_pub);
    assert_non_null(strstr(conf, pin));
    free(conf);
    conf = slurp_file(at(f, "n1/pattod.conf"), NULL);
    assert_non_null(conf);
    assert_null(strstr(conf, "operator")); /* only an explicit --operator is written */
    free(conf);
    size_t slen = 0, dlen = 0;
    char *schema = slurp_file(at(f, "n2/schema.json"), &slen);
    char *def = slurp_file(DEFAULT_SCHEMA, &dlen);
    assert_non_null(schema);
    assert_non_null(def);
    assert_int_equal(slen, dlen);
    assert_memory_equal(schema, def, dlen);
    free(schema);
    free(def);

    /* added out of order: the signed manifest is sorted by org */
    const char *files[] = { "pref-lt.json", "comune-1.json", "cpia-1.json" };
    for (int i = 0; i < 3; i++) {
        run_result r = RUN(f, "network", "add", "adm", files[i]);
        expect_exit(&r, 0, "network add");
        run_result_fini(&r);
    }
    run_result r = RUN(f, "network", "purpose", "adm", "sociale", "Presa in carico sociale");
    expect_exit(&r, 0, "network purpose");
    run_result_fini(&r);
    r = RUN(f, "--json", "network", "purpose", "adm", "lingua", "Corsi di italiano");
    expect_exit(&r, 0, "network purpose (replace)");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "purposes")), 6);
    json_object_put(o);
    run_result_fini(&r);

    r = RUN(f, "network", "sign", "adm", "--out", "m1.bin");
    expect_exit(&r, 0, "network sign");
    run_result_fini(&r);
    assert_int_equal(file_mode(at(f, "m1.bin")), 0644);

    char *bytes;
    proto_manifest m;
    load_manifest(f, "m1.bin", &bytes, &m);
    assert_int_equal(m.version, 1);
    uint8_t hash[PROTO_HASH_LEN];
    default_schema_hash(hash);
    assert_memory_equal(m.schema_hash, hash, PROTO_HASH_LEN);
    assert_int_equal(m.nmembers, 3);
    expect_member(&m.members[0], e1);
    expect_member(&m.members[1], e2);
    expect_member(&m.members[2], e3);
    assert_int_equal(m.members[2].role, PROTO_ROLE_PREFETTURA);
    assert_int_equal(m.npurposes, 6);
    const char *ids[] = { "alloggio", "documenti", "integrazione", "lavoro", "lingua", "sociale" };
    for (size_t i = 0; i < 6; i++)
        assert_true(bytes_is(m.purposes[i].id, ids[i]));
    assert_true(bytes_is(m.purposes[4].description, "Corsi di italiano"));
    assert_true(bytes_is(m.purposes[5].description, "Presa in carico sociale"));
    proto_manifest_fini(&m);
    free(bytes);

    /* signing again: version 2, and the working manifest records it */
    r = RUN(f, "--json", "network", "sign", "adm", "--out", "m2.bin");
    expect_exit(&r, 0, "network sign again");
    o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "version")), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "members")), 3);
    json_object_put(o);
    run_result_fini(&r);
    load_manifest(f, "m2.bin", &bytes, &m);
    assert_int_equal(m.version, 2);
    proto_manifest_fini(&m);
    free(bytes);
    text = slurp_file(at(f, "adm/manifest.json"), NULL);
    assert_non_null(text);
    o = json_tokener_parse(text);
    assert_non_null(o);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "version")), 2);
    json_object_put(o);
    free(text);

    /* remove a member, sign: version 3 without it */
    r = RUN(f, "network", "remove", "adm", "cpia-1");
    expect_exit(&r, 0, "network remove");
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm", "--out", "m3.bin");
    expect_exit(&r, 0, "network sign after remove");
    run_result_fini(&r);
    load_manifest(f, "m3.bin", &bytes, &m);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.nmembers, 2);
    expect_member(&m.members[0], e1);
    expect_member(&m.members[1], e3);
    proto_manifest_fini(&m);
    free(bytes);

    /* nothing half-written left behind */
    DIR *d = opendir(at(f, "adm"));
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n++;
        assert_true(strcmp(de->d_name, "admin.key") == 0 || strcmp(de->d_name, "admin.pub") == 0
            || strcmp(de->d_name, "manifest.json") == 0);
    }
    closedir(d);
    assert_int_equal(n, 3);

    json_object_put(e1);
    json_object_put(e2);
    json_object_put(e3);
}

static void test_network_init_custom_schema(void **state)
{
    fixture *f = *state;
    const char *schema = "{\"schema\": \"prova\", \"version\": 1, \"scopes\": []}\n";
    write_text(at(f, "s.json"), schema);
    run_result r = RUN(f, "--json", "network", "init", "adm2", "--schema", "s.json");
    expect_exit(&r, 0, "network init --schema");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    uint8_t want[PROTO_HASH_LEN], got[PROTO_HASH_LEN];
    proto_schema_hash((const uint8_t *)schema, strlen(schema), want);
    hex32(json_object_get_string(json_object_object_get(o, "schema_hash")), got);
    assert_memory_equal(got, want, PROTO_HASH_LEN);
    char pub[65];
    snprintf(pub, sizeof pub, "%s", json_object_get_string(json_object_object_get(o, "admin_pub")));
    json_object_put(o);
    run_result_fini(&r);
    char *mj = slurp_file(at(f, "adm2/manifest.json"), NULL);
    assert_non_null(mj);
    o = json_tokener_parse(mj);
    free(mj);
    assert_non_null(o);
    hex32(json_object_get_string(json_object_object_get(o, "schema_hash")), got);
    assert_memory_equal(got, want, PROTO_HASH_LEN);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "version")), 0);
    assert_int_equal(json_object_array_length(json_object_object_get(o, "members")), 0);
    assert_true(json_object_array_length(json_object_object_get(o, "purposes")) >= 1);
    json_object_put(o);

    /* a node of that network gets the same schema file */
    r = RUN(f, "init", "--dir", "n", "--org", "cpi-1", "--role", "cpi", "--listen",
        "tcp://127.0.0.1:9", "--admin-pub", pub, "--schema", "s.json");
    expect_exit(&r, 0, "init --schema");
    run_result_fini(&r);
    char *copy = slurp_file(at(f, "n/schema.json"), NULL);
    assert_non_null(copy);
    assert_string_equal(copy, schema);
    free(copy);

    /* a schema that is not JSON is refused and leaves nothing */
    write_text(at(f, "bad.json"), "scopes: nope");
    r = RUN(f, "network", "init", "adm3", "--schema", "bad.json");
    expect_err(&r, 2, "bad.json is not valid JSON");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "adm3"), F_OK), -1);
    r = RUN(f, "init", "--dir", "n4", "--org", "cpi-4", "--role", "cpi", "--listen",
        "tcp://127.0.0.1:9", "--admin-pub", pub, "--schema", "bad.json");
    expect_err(&r, 2, "bad.json is not valid JSON");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "n4"), F_OK), -1);
}

static void test_init_errors(void **state)
{
    fixture *f = *state;
    const char *pub = f->admin_pub;
    run_result r = RUN(f, "init", "--dir", "x", "--org", "Comune_1", "--role", "comune", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", pub);
    expect_err(&r, 2, "org 'Comune_1' is not an org id");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--role", "sindaco", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", pub);
    expect_err(&r, 2, "role 'sindaco' is not one of comune cpia cpi prefettura coop coord");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--role", "comune", "--listen",
        "http://127.0.0.1:1", "--admin-pub", pub);
    expect_err(&r, 2, "listen URL 'http://127.0.0.1:1' is not tcp://HOST:PORT");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--role", "comune", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", "abcd");
    expect_err(&r, 2, "--admin-pub must be the 64 hex digits");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--listen", "tcp://127.0.0.1:1",
        "--admin-pub", pub);
    expect_err(&r, 1, "--org, --role, --listen and --admin-pub are required");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--role", "comune", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", pub, "--operator", "a;b");
    expect_err(&r, 2, "--operator must be");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "x"), F_OK), -1); /* no refused init left a directory */

    /* an existing node is never replaced, and its key stays as it was */
    r = RUN(f, "init", "--dir", "x", "--org", "comune-1", "--role", "comune", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", pub);
    expect_exit(&r, 0, "init");
    run_result_fini(&r);
    size_t len;
    char *before = slurp_file(at(f, "x/identity.key"), &len);
    assert_non_null(before);
    r = RUN(f, "init", "--dir", "x", "--org", "comune-2", "--role", "comune", "--listen",
        "tcp://127.0.0.1:2", "--admin-pub", pub);
    expect_err(&r, 2, "x already holds a node");
    run_result_fini(&r);
    char *after = slurp_file(at(f, "x/identity.key"), NULL);
    assert_non_null(after);
    assert_memory_equal(before, after, len);
    free(before);
    free(after);

    /* --json: the error is one object on stdout, nothing on stderr */
    r = RUN(f, "init", "--dir", "y", "--org", "BAD", "--role", "comune", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", pub, "--json");
    expect_exit(&r, 2, "init --json");
    assert_string_equal(r.err, "");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    json_object *e = json_object_object_get(o, "error");
    assert_non_null(e);
    assert_int_equal(json_object_object_length(o), 1);
    assert_int_equal(json_object_get_int(json_object_object_get(e, "code")), 2);
    assert_non_null(strstr(json_object_get_string(json_object_object_get(e, "message")),
        "org 'BAD' is not an org id"));
    json_object_put(o);
    run_result_fini(&r);
}

static void test_network_errors(void **state)
{
    fixture *f = *state;
    json_object *e = init_node(f, "n1", "coop-sole", "coop", "tcp://10.0.0.7:7401", false);
    json_object_put(e);
    run_result r = RUN(f, "network", "add", "adm", "coop-sole.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);

    /* the same org again */
    r = RUN(f, "network", "add", "adm", "coop-sole.json");
    expect_err(&r, 2, "coop-sole is already a member");
    run_result_fini(&r);

    /* the same keys under another org */
    char *text = slurp_file(at(f, "coop-sole.json"), NULL);
    assert_non_null(text);
    json_object *entry = json_tokener_parse(text);
    free(text);
    assert_non_null(entry);
    json_object_object_add(entry, "org", json_object_new_string("coop-luna"));
    write_text(at(f, "dup.json"), json_object_to_json_string(entry));
    r = RUN(f, "network", "add", "adm", "dup.json");
    expect_err(&r, 2, "the origin key of coop-luna is already the key of member coop-sole");
    run_result_fini(&r);

    /* a bad role, an unknown key, a bad URL, a bad key in an entry */
    json_object_object_add(entry, "role", json_object_new_string("banca"));
    write_text(at(f, "bad.json"), json_object_to_json_string(entry));
    r = RUN(f, "network", "add", "adm", "bad.json");
    expect_err(&r, 2, "role 'banca' is not one of");
    run_result_fini(&r);
    json_object_object_add(entry, "role", json_object_new_string("coop"));
    json_object_object_add(entry, "colour", json_object_new_string("blue"));
    write_text(at(f, "bad.json"), json_object_to_json_string(entry));
    r = RUN(f, "network", "add", "adm", "bad.json");
    expect_err(&r, 2, "unknown key \"colour\"");
    run_result_fini(&r);
    json_object_object_del(entry, "colour");
    json_object_object_add(entry, "url", json_object_new_string("tcp://host"));
    write_text(at(f, "bad.json"), json_object_to_json_string(entry));
    r = RUN(f, "network", "add", "adm", "bad.json");
    expect_err(&r, 2, "url 'tcp://host' of coop-luna is not tcp://HOST:PORT");
    run_result_fini(&r);
    json_object_object_add(entry, "url", json_object_new_string("tcp://host:1"));
    json_object_object_add(entry, "origin", json_object_new_string("zz"));
    write_text(at(f, "bad.json"), json_object_to_json_string(entry));
    r = RUN(f, "network", "add", "adm", "bad.json");
    expect_err(&r, 2, "origin of coop-luna must be 64 hex digits");
    run_result_fini(&r);
    write_text(at(f, "bad.json"), "{\"org\": ");
    r = RUN(f, "network", "add", "adm", "bad.json");
    expect_err(&r, 2, "bad.json is not valid JSON");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "missing.json");
    expect_err(&r, 3, "cannot read missing.json");
    run_result_fini(&r);
    json_object_put(entry);

    /* the working manifest still has the one member */
    text = slurp_file(at(f, "adm/manifest.json"), NULL);
    assert_non_null(text);
    json_object *o = json_tokener_parse(text);
    free(text);
    assert_non_null(o);
    assert_int_equal(json_object_array_length(json_object_object_get(o, "members")), 1);
    json_object_put(o);

    r = RUN(f, "network", "remove", "adm", "coop-luna");
    expect_err(&r, 3, "coop-luna is not a member");
    run_result_fini(&r);
    r = RUN(f, "network", "purpose", "adm", "Lingua", "x");
    expect_err(&r, 2, "purpose id 'Lingua' is not");
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm");
    expect_err(&r, 1, "--out FILE is required; usage: patto network sign ADMIN --out FILE");
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "n1", "--out", "m.bin");
    expect_err(&r, 3, "n1 is not an admin directory");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "m.bin"), F_OK), -1);

    /* an existing admin key is never replaced */
    size_t len;
    char *before = slurp_file(at(f, "adm/admin.key"), &len);
    assert_non_null(before);
    r = RUN(f, "network", "init", "adm");
    expect_err(&r, 2, "adm already holds a network admin key");
    run_result_fini(&r);
    char *after = slurp_file(at(f, "adm/admin.key"), NULL);
    assert_non_null(after);
    assert_memory_equal(before, after, len);
    free(before);
    free(after);
}

static void test_usage(void **state)
{
    fixture *f = *state;
    run_result r = RUN(f, "frobnicate");
    expect_err(&r, 1, "unknown command 'frobnicate'");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm");
    expect_err(&r, 1, "missing argument; usage: patto network add ADMIN ENTRY.json");
    run_result_fini(&r);
    r = RUN(f, "network", "init", "a", "b");
    expect_err(&r, 1, "unexpected argument 'b'");
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm", "--outt", "x");
    expect_err(&r, 1, "unknown option '--outt'");
    run_result_fini(&r);
    r = RUN(f, "case");
    expect_err(&r, 1, "'case' needs a subcommand");
    run_result_fini(&r);
    r = run_in(f, (const char *const[]) { NULL });
    expect_err(&r, 1, "no command given");
    run_result_fini(&r);
    r = RUN(f, "--dir");
    expect_err(&r, 1, "option '--dir' needs a value");
    run_result_fini(&r);

    r = RUN(f, "frobnicate", "--json");
    expect_exit(&r, 1, "--json usage");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    json_object *e = json_object_object_get(o, "error");
    assert_int_equal(json_object_get_int(json_object_object_get(e, "code")), 1);
    assert_non_null(strstr(json_object_get_string(json_object_object_get(e, "message")),
        "unknown command 'frobnicate'"));
    json_object_put(o);
    run_result_fini(&r);
}

static void test_help_and_version(void **state)
{
    fixture *f = *state;
    uint8_t hash[PROTO_HASH_LEN];
    default_schema_hash(hash);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);

    run_result r = RUN(f, "--version");
    expect_exit(&r, 0, "--version");
    assert_non_null(strstr(r.out, "patto 0.1.0\n"));
    char line[128];
    snprintf(line, sizeof line, "protocol %d\n", PROTO_VERSION);
    assert_non_null(strstr(r.out, line));
    snprintf(line, sizeof line, "schema %s", hex);
    assert_non_null(strstr(r.out, line));
    run_result_fini(&r);

    r = RUN(f, "--json", "--version");
    expect_exit(&r, 0, "--json --version");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "program")), "0.1.0");
    assert_int_equal(json_object_get_int(json_object_object_get(o, "protocol")), PROTO_VERSION);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "schema")), hex);
    json_object_put(o);
    run_result_fini(&r);

    r = RUN(f, "--help");
    expect_exit(&r, 0, "--help");
    assert_non_null(strstr(r.out, "usage: patto [--dir DATA] [--json] [--operator NAME] COMMAND"));
    assert_non_null(strstr(r.out, "consent grant"));
    assert_non_null(strstr(r.out, "network sign"));
    /* the one table of exit codes, patto-testnet's 6 included */
    assert_non_null(strstr(r.out, "exit codes (the same for patto-testnet):\n  0  done\n"));
    assert_non_null(strstr(r.out, "\n  3  not found or not readable here\n"));
    assert_non_null(strstr(r.out, "\n  4  unreachable: the node (or the testnet supervisor)"));
    assert_non_null(strstr(r.out, "\n  6  a check failed (patto-testnet check and chaos only)\n"));
    run_result_fini(&r);

    /* every command has --help, which never runs the command */
    const char *cmds[][2] = { { "network", "init" }, { "network", "add" }, { "network", "remove" },
        { "network", "purpose" }, { "network", "sign" }, { "init", NULL }, { "status", NULL },
        { "digest", NULL }, { "schema", NULL }, { "case", "new" }, { "case", "set" },
        { "case", "unset" }, { "case", "show" }, { "case", "list" }, { "consent", "grant" },
        { "manifest", "import" } };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        r = cmds[i][1] != NULL ? RUN(f, cmds[i][0], cmds[i][1], "--help")
                               : RUN(f, cmds[i][0], "--help");
        expect_exit(&r, 0, cmds[i][0]);
        snprintf(line, sizeof line, "usage: patto %s%s%s", cmds[i][0], cmds[i][1] ? " " : "",
            cmds[i][1] ? cmds[i][1] : "");
        assert_non_null(strstr(r.out, line));
        run_result_fini(&r);
    }
    r = RUN(f, "case", "--help");
    expect_exit(&r, 0, "case --help");
    assert_non_null(strstr(r.out, "patto case show CASE"));
    run_result_fini(&r);
}

/* Nothing of dir changed: the files listed are absent, its mode is mode. */
static void untouched(const fixture *f, const char *dir, mode_t mode, const char *const *absent)
{
    assert_int_equal(file_mode(at(f, dir)), mode);
    for (size_t i = 0; absent[i] != NULL; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s", dir, absent[i]);
        assert_int_equal(access(at(f, name), F_OK), -1);
    }
}

static void test_admin_and_node_apart(void **state)
{
    fixture *f = *state;
    json_object *e = init_node(f, "n1", "comune-1", "comune", "tcp://127.0.0.1:7401", false);
    json_object_put(e);
    static const char *const admin_files[] = { "admin.key", "admin.pub", "manifest.json", NULL };
    static const char *const node_files[] = { "identity.key", "pattod.conf", "schema.json", NULL };

    /* the admin key never goes into a node's directory, nor below it */
    run_result r = RUN(f, "network", "init", "n1");
    expect_err(&r, 2, "n1 is in the data directory of a node");
    assert_non_null(strstr(r.err, "(it holds pattod.conf)"));
    run_result_fini(&r);
    untouched(f, "n1", 0750, admin_files); /* still open to the node's group */
    r = RUN(f, "network", "init", "n1/adm");
    expect_err(&r, 2, "n1/adm is in the data directory of a node");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "n1/adm"), F_OK), -1);

    /* a node never goes into an admin directory, nor below it */
    r = RUN(f, "init", "--dir", "adm", "--org", "cpia-1", "--role", "cpia", "--listen",
        "tcp://127.0.0.1:7402", "--admin-pub", f->admin_pub, "--operator", "op");
    expect_err(&r, 2, "adm is in the network admin directory");
    assert_non_null(strstr(r.err, "(it holds admin.key)"));
    run_result_fini(&r);
    untouched(f, "adm", 0700, node_files);
    r = RUN(f, "init", "--dir", "adm/node", "--org", "cpia-1", "--role", "cpia", "--listen",
        "tcp://127.0.0.1:7402", "--admin-pub", f->admin_pub);
    expect_err(&r, 2, "adm/node is in the network admin directory");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "adm/node"), F_OK), -1);
}

static void test_advertise(void **state)
{
    fixture *f = *state;
    const char *pub = f->admin_pub;
    /* a listen URL that binds every address needs the address the others dial */
    static const struct {
        const char *listen, *advertise;
        int code;
        const char *needle;
    } refused[] = {
        { "tcp://0.0.0.0:7401", NULL, 1, "add --advertise tcp://HOST:PORT" },
        { "tcp://[::]:7401", NULL, 1, "--listen tcp://[::]:7401 binds every address" },
        { "tcp://0.0.0.0:7401", "tcp://0.0.0.0:7401", 2,
            "--advertise tcp://0.0.0.0:7401 binds every address" },
        { "tcp://0.0.0.0:7401", "10.0.0.5:7401", 2,
            "advertise URL '10.0.0.5:7401' is not tcp://HOST:PORT" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *adv = refused[i].advertise;
        run_result r = RUN(f, "init", "--dir", "w", "--org", "comune-1", "--role", "comune",
            "--listen", refused[i].listen, "--admin-pub", pub, adv != NULL ? "--advertise" : "--",
            adv != NULL ? adv : NULL);
        expect_err(&r, refused[i].code, refused[i].needle);
        run_result_fini(&r);
    }
    assert_int_equal(access(at(f, "w"), F_OK), -1);

    /* with it: pattod.conf binds the one and the entry names the other */
    run_result r = RUN(f, "init", "--dir", "w", "--org", "comune-1", "--role", "comune", "--listen",
        "tcp://0.0.0.0:7401", "--advertise", "tcp://10.0.0.5:7401", "--admin-pub", pub,
        "--operator", "sportello-1");
    expect_exit(&r, 0, "init --advertise");
    json_object *entry = json_tokener_parse(r.out);
    assert_non_null(entry);
    assert_string_equal(
        json_object_get_string(json_object_object_get(entry, "url")), "tcp://10.0.0.5:7401");
    write_text(at(f, "w.json"), r.out);
    json_object_put(entry);
    run_result_fini(&r);
    char *conf = slurp_file(at(f, "w/pattod.conf"), NULL);
    assert_non_null(conf);
    assert_non_null(strstr(conf,
        "listen = tcp://0.0.0.0:7401\nadvertise = tcp://10.0.0.5:7401\noperator = sportello-1\n"));
    free(conf);
    r = RUN(f, "network", "add", "adm", "w.json");
    expect_exit(&r, 0, "network add of an advertised entry");
    run_result_fini(&r);
}

static void test_blank_text(void **state)
{
    fixture *f = *state;
    run_result r = RUN(f, "network", "purpose", "adm", "sanita", " ");
    expect_err(&r, 2, "the description of sanita must be 1-1024 bytes of text");
    assert_non_null(strstr(r.err, "not only spaces"));
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "b", "--org", "coop-1", "--role", "coop", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", f->admin_pub, "--name", "   ");
    expect_err(&r, 2, "--name must be 1-1024 bytes of text");
    run_result_fini(&r);
    r = RUN(f, "init", "--dir", "b", "--org", "coop-1", "--role", "coop", "--listen",
        "tcp://127.0.0.1:1", "--admin-pub", f->admin_pub, "--operator", " ");
    expect_err(&r, 2, "the operator name (--operator) must be 1-64 bytes of text");
    run_result_fini(&r);
    assert_int_equal(access(at(f, "b"), F_OK), -1);
    /* a member entry with a blank name */
    json_object *e = init_node(f, "n1", "coop-1", "coop", "tcp://127.0.0.1:7401", false);
    json_object_object_add(e, "name", json_object_new_string(" "));
    write_text(at(f, "blank.json"), json_object_to_json_string(e));
    json_object_put(e);
    r = RUN(f, "network", "add", "adm", "blank.json");
    expect_err(&r, 2, "the name of coop-1 must be");
    run_result_fini(&r);
}

/* Every `patto init` example of the documentation (a command line in a code block or a
 * comment, continued with backslashes) gives --operator: following it literally, the first
 * write works. */
static void test_docs_init_examples(void **state)
{
    (void)state;
    const char *docs[] = { PATTO_SOURCE_DIR "/cli/README.md", PATTO_SOURCE_DIR "/node/README.md",
        PATTO_SOURCE_DIR "/node/pattod.service" };
    int examples = 0;
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        char *text = slurp_file(docs[d], NULL);
        assert_non_null(text);
        for (char *line = text; line != NULL && *line != '\0';) {
            char *start = line;
            while (*start == ' ' || *start == '#')
                start++;
            char *end = strchr(line, '\n');
            /* the command and its continuation lines */
            while (end != NULL && end > line && end[-1] == '\\')
                end = strchr(end + 1, '\n');
            size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
            if (strncmp(start, "patto init ", 11) == 0) {
                examples++;
                char *cmd = strndup(start, n);
                assert_non_null(cmd);
                if (strstr(cmd, "--operator ") == NULL)
                    fail_msg("%s: an example without --operator: %s", docs[d], cmd);
                free(cmd);
            }
            line = end != NULL ? end + 1 : NULL;
        }
        free(text);
    }
    assert_true(examples >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_network_flow, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_network_init_custom_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_network_errors, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_and_node_apart, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_advertise, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_blank_text, setup_admin, teardown),
        cmocka_unit_test(test_docs_init_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
