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
#include <time.h>
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

static json_object *init_node_as(const fixture *f, const char *dir, const char *org,
    const char *role, const char *url, bool json, const char *file);

/* `patto init` of one node; its entry saved as <org>.json. Returns the parsed entry. */
static json_object *init_node(const fixture *f, const char *dir, const char *org, const char *role,
    const char *url, bool json)
{
    char file[64];
    snprintf(file, sizeof file, "%s.json", org);
    return init_node_as(f, dir, org, role, url, json, file);
}

/* The same, the entry saved as file. */
static json_object *init_node_as(const fixture *f, const char *dir, const char *org,
    const char *role, const char *url, bool json, const char *file)
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

static const char *jstr(json_object *o, const char *key)
{
    return json_object_get_string(json_object_object_get(o, key));
}

/* Key k of m is the entry's origin and box key. */
static void expect_key(const proto_member *m, size_t k, json_object *entry)
{
    uint8_t want[32];
    assert_true(k < m->nkeys);
    hex32(jstr(entry, "origin"), want);
    assert_memory_equal(m->keys[k].origin, want, 32);
    hex32(jstr(entry, "box_pk"), want);
    assert_memory_equal(m->keys[k].box_pk, want, 32);
}

/* m is the entry's org with the entry's key as its only one, in force from the start. */
static void expect_member(const proto_member *m, json_object *entry)
{
    assert_true(bytes_is(m->org, jstr(entry, "org")));
    assert_true(bytes_is(m->name, jstr(entry, "name")));
    assert_true(bytes_is(m->url, jstr(entry, "url")));
    assert_string_equal(proto_role_name(m->role), jstr(entry, "role"));
    assert_int_equal(m->nkeys, 1);
    expect_key(m, 0, entry);
    assert_int_equal(m->keys[0].effective_ms, 0);
    assert_false(m->keys[0].retired);
    assert_int_equal(m->keys[0].last_seq, 0);
}

/* ADMIN/manifest.json, parsed (owned). */
static json_object *working_json(const fixture *f, const char *admin)
{
    char name[256];
    snprintf(name, sizeof name, "%s/manifest.json", admin);
    char *text = slurp_file(at(f, name), NULL);
    assert_non_null(text);
    json_object *o = json_tokener_parse(text);
    free(text);
    assert_non_null(o);
    return o;
}

/* The working manifest's member org (borrowed from w). */
static json_object *working_member(json_object *w, const char *org)
{
    json_object *members = json_object_object_get(w, "members");
    for (size_t i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        if (strcmp(jstr(m, "org"), org) == 0)
            return m;
    }
    fail_msg("%s is not in the working manifest", org);
    return NULL;
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        fail_msg("\"%s\" is missing or not a whole number", key);
    return json_object_get_int64(v);
}

static json_object *key_at(json_object *member, size_t k)
{
    json_object *keys = json_object_object_get(member, "keys");
    assert_true(k < json_object_array_length(keys));
    return json_object_array_get_idx(keys, k);
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

    /* a signed org is never removed: it is retired, and stays listed */
    r = RUN(f, "network", "remove", "adm", "cpia-1");
    expect_err(&r, 2,
        "cpia-1 is in signed manifest version 1: an org stays listed for ever; retire it with "
        "patto network retire adm cpia-1 --last-seq N");
    run_result_fini(&r);
    r = RUN(f, "network", "retire", "adm", "cpia-1", "--last-seq", "40");
    expect_exit(&r, 0, "network retire");
    assert_non_null(strstr(r.out, "cpia-1 leaves the network: its key is retired after header 40"));
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm", "--out", "m3.bin");
    expect_exit(&r, 0, "network sign after retire");
    run_result_fini(&r);
    load_manifest(f, "m3.bin", &bytes, &m);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.nmembers, 3);
    expect_member(&m.members[0], e1);
    expect_member(&m.members[2], e3);
    assert_true(bytes_is(m.members[1].org, "cpia-1"));
    assert_int_equal(m.members[1].nkeys, 1);
    expect_key(&m.members[1], 0, e2);
    assert_true(m.members[1].keys[0].retired);
    assert_int_equal(m.members[1].keys[0].last_seq, 40);
    assert_false(proto_member_active(&m.members[1]));
    assert_true(proto_member_active(&m.members[0]));
    proto_manifest_fini(&m);
    free(bytes);
    o = working_json(f, "adm");
    json_object *cpia = working_member(o, "cpia-1");
    assert_int_equal(jint(cpia, "since"), 1);
    assert_true(json_object_get_boolean(json_object_object_get(key_at(cpia, 0), "retired")));
    assert_int_equal(jint(key_at(cpia, 0), "last_seq"), 40);
    json_object_put(o);

    /* a new schema: the working manifest names it, and the next signature carries it; a file
     * that is not a record schema is refused and changes nothing */
    size_t s2len = 0;
    char *s2 = slurp_file(DEFAULT_SCHEMA, &s2len);
    assert_non_null(s2);
    char *grown = strstr(s2, "\"fields\": [");
    assert_non_null(grown);
    FILE *sf = fopen(at(f, "s2.json"), "wb");
    assert_non_null(sf);
    size_t head = (size_t)(grown - s2) + strlen("\"fields\": [");
    fwrite(s2, 1, head, sf);
    fputs(" { \"name\": \"nota_extra\", \"type\": \"text\" },", sf);
    fwrite(s2 + head, 1, s2len - head, sf);
    assert_int_equal(fclose(sf), 0);
    free(s2);
    s2 = slurp_file(at(f, "s2.json"), &s2len);
    uint8_t h2[PROTO_HASH_LEN];
    proto_schema_hash((const uint8_t *)s2, s2len, h2);
    free(s2);
    write_text(at(f, "notschema.json"), "{\"x\": 1}\n");
    r = RUN(f, "network", "schema", "adm", "notschema.json");
    expect_err(&r, 2, "is not a record schema");
    run_result_fini(&r);
    r = RUN(f, "--json", "network", "schema", "adm", "s2.json");
    expect_exit(&r, 0, "network schema");
    o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_string_equal(jstr(o, "changed"), "yes");
    json_object_put(o);
    run_result_fini(&r);
    r = RUN(f, "network", "schema", "adm", "s2.json");
    expect_exit(&r, 0, "network schema again");
    assert_non_null(strstr(r.out, "already names schema"));
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm", "--out", "m4.bin");
    expect_exit(&r, 0, "network sign after schema");
    run_result_fini(&r);
    load_manifest(f, "m4.bin", &bytes, &m);
    assert_memory_equal(m.schema_hash, h2, PROTO_HASH_LEN);
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
    assert_int_equal(json_object_get_int64(json_object_object_get(o, "max_clock_ahead_ms")),
        PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS);
    assert_int_equal(json_object_get_int64(json_object_object_get(o, "counter_limit")),
        PROTO_COUNTER_LIMIT_DEFAULT);
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

    /* the same entry again: nothing but name, role and url can change */
    r = RUN(f, "--json", "network", "add", "adm", "coop-sole.json");
    expect_exit(&r, 0, "network add again");
    json_object *again = json_tokener_parse(r.out);
    assert_non_null(again);
    assert_true(json_object_get_boolean(json_object_object_get(again, "updated")));
    assert_int_equal(json_object_get_int(json_object_object_get(again, "members")), 1);
    json_object_put(again);
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
    expect_err(
        &r, 2, "the origin key of coop-luna in dup.json is already a key of member coop-sole");
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
    const char *cmds[][2] = { { "network", "init" }, { "network", "add" }, { "network", "rekey" },
        { "network", "retire" }, { "network", "remove" }, { "network", "purpose" },
        { "network", "schema" }, { "network", "sign" }, { "init", NULL }, { "status", NULL },
        { "digest", NULL }, { "schema", NULL }, { "case", "new" }, { "case", "set" },
        { "case", "unset" }, { "case", "show" }, { "case", "list" }, { "case", "find" },
        { "consent", "grant" }, { "consent", "list" }, { "manifest", "import" } };
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

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define HOUR_MS INT64_C(3600000)

/* A signed org gets a new key: its current key retired after header N, the new key effective
 * its notice after the next signature; before that signature the new key can be replaced. */
static void test_rekey(void **state)
{
    fixture *f = *state;
    json_object *old = init_node(f, "n1", "cpia-1", "cpia", "tcp://127.0.0.1:7402", false);
    json_object *e2 = init_node(f, "n2", "comune-1", "comune", "tcp://127.0.0.1:7401", false);
    json_object *neu
        = init_node_as(f, "n1b", "cpia-1", "cpia", "tcp://127.0.0.1:7412", false, "new.json");
    json_object *neu2
        = init_node_as(f, "n1c", "cpia-1", "cpia", "tcp://127.0.0.1:7422", false, "new2.json");
    json_object *stranger = init_node(f, "n9", "coop-9", "coop", "tcp://127.0.0.1:7409", false);
    json_object_put(stranger);
    run_result r = RUN(f, "network", "add", "adm", "cpia-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "comune-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);

    /* never signed: no node knows its key, so it is replaced, not re-keyed */
    r = RUN(f, "network", "rekey", "adm", "new.json", "--last-seq", "3");
    expect_err(&r, 2,
        "cpia-1 was never in a signed manifest, so no node knows its key yet: remove it with "
        "patto network remove adm cpia-1, then add its new entry");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "new.json");
    expect_err(&r, 2,
        "no manifest has signed it yet: to replace its entry, first run patto "
        "network remove adm cpia-1");
    run_result_fini(&r);

    r = RUN(f, "network", "sign", "adm", "--out", "m1.bin");
    expect_exit(&r, 0, "network sign");
    run_result_fini(&r);

    /* signed: another origin for the same org is a rekey */
    r = RUN(f, "network", "add", "adm", "new.json");
    expect_err(&r, 2,
        "cpia-1 is already a member with another origin key (in signed manifest version 1): to "
        "give it this node's key, run patto network rekey adm new.json --last-seq N (N: the seq "
        "of cpia-1's own origin that its node shows in patto status)");
    run_result_fini(&r);

    /* usage, refused keys, strangers */
    static const struct {
        const char *a[4];
        int code;
        const char *needle;
    } bad[] = {
        { { "new.json", NULL }, 1, "--last-seq N is required" },
        { { "new.json", "--last-seq", "-1", NULL }, 1,
            "--last-seq '-1' is not a whole number from 0 to 9223372036854775807" },
        { { "new.json", "--last-seq", "12abc", NULL }, 1, "--last-seq '12abc' is not a whole" },
        { { "new.json", "--last-seq", "", NULL }, 1, "--last-seq '' is not a whole" },
        { { "new.json", "--last-seq", "3", "--notice-hours=0" }, 1,
            "--notice-hours '0' is not a whole number from 1 to 8760" },
        { { "new.json", "--last-seq", "3", "--notice-hours=8761" }, 1,
            "--notice-hours '8761' is not a whole number from 1 to 8760" },
        { { "cpia-1.json", "--last-seq", "3", NULL }, 2,
            "cpia-1.json holds the current key of cpia-1: a new key comes from a new identity" },
        { { "coop-9.json", "--last-seq", "3", NULL }, 3,
            "coop-9 is not a member in adm/manifest.json; add it with patto network add adm" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[9] = { "network", "rekey", "adm" };
        for (size_t k = 0; k < 4 && bad[i].a[k] != NULL; k++)
            args[3 + k] = bad[i].a[k];
        r = run_in(f, args);
        expect_err(&r, bad[i].code, bad[i].needle);
        run_result_fini(&r);
    }

    /* the working manifest holds both keys: the old one retired after N */
    r = RUN(f, "--json", "network", "rekey", "adm", "new2.json", "--last-seq", "8");
    expect_exit(&r, 0, "network rekey");
    run_result_fini(&r);
    r = RUN(f, "--json", "network", "rekey", "adm", "new.json", "--last-seq", "7", "--notice-hours",
        "100");
    expect_exit(&r, 0, "network rekey again (replaces the unsigned key)");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_string_equal(jstr(o, "org"), "cpia-1");
    assert_int_equal(jint(o, "keys"), 2);
    assert_int_equal(jint(o, "last_seq"), 7);
    assert_int_equal(jint(o, "notice_hours"), 100);
    json_object_put(o);
    run_result_fini(&r);
    o = working_json(f, "adm");
    json_object *cpia = working_member(o, "cpia-1");
    assert_int_equal(json_object_array_length(json_object_object_get(cpia, "keys")), 2);
    assert_string_equal(jstr(cpia, "url"), "tcp://127.0.0.1:7412");
    json_object *k0 = key_at(cpia, 0), *k1 = key_at(cpia, 1);
    assert_string_equal(jstr(k0, "origin"), jstr(old, "origin"));
    assert_true(json_object_get_boolean(json_object_object_get(k0, "retired")));
    assert_int_equal(jint(k0, "last_seq"), 7);
    assert_int_equal(jint(k0, "effective_ms"), 0);
    assert_string_equal(jstr(k1, "origin"), jstr(neu, "origin"));
    assert_string_equal(jstr(k1, "box_pk"), jstr(neu, "box_pk"));
    assert_false(json_object_get_boolean(json_object_object_get(k1, "retired")));
    assert_int_equal(jint(k1, "last_seq"), 0);
    assert_int_equal(jint(k1, "effective_ms"), 0);
    assert_int_equal(jint(k1, "notice_hours"), 100);
    json_object_put(o);

    /* sign: the new key takes effect signed_at + 100 h */
    int64_t before = wall_now_ms();
    r = RUN(f, "--json", "network", "sign", "adm", "--out", "m2.bin");
    int64_t after = wall_now_ms();
    expect_exit(&r, 0, "network sign with a new key");
    o = json_tokener_parse(r.out);
    assert_non_null(o);
    int64_t signed_at = jint(o, "signed_at_ms");
    assert_true(signed_at >= before && signed_at <= after);
    json_object *nk = json_object_object_get(o, "new_keys");
    assert_int_equal(json_object_array_length(nk), 1);
    assert_string_equal(jstr(json_object_array_get_idx(nk, 0), "org"), "cpia-1");
    int64_t effective = jint(json_object_array_get_idx(nk, 0), "effective_ms");
    assert_int_equal(effective, signed_at + 100 * HOUR_MS);
    json_object_put(o);
    run_result_fini(&r);
    char *bytes;
    proto_manifest m;
    load_manifest(f, "m2.bin", &bytes, &m);
    assert_int_equal(m.version, 2);
    assert_int_equal((int64_t)m.signed_at_ms, signed_at);
    const proto_member *mc = proto_manifest_find_org(&m, "cpia-1", 6);
    assert_non_null(mc);
    assert_int_equal(mc->nkeys, 2);
    expect_key(mc, 0, old);
    expect_key(mc, 1, neu);
    assert_true(mc->keys[0].retired);
    assert_int_equal(mc->keys[0].last_seq, 7);
    assert_int_equal(mc->keys[0].effective_ms, 0);
    assert_false(mc->keys[1].retired);
    assert_int_equal((int64_t)mc->keys[1].effective_ms, signed_at + 100 * HOUR_MS);
    assert_true(proto_member_active(mc));
    expect_member(proto_manifest_find_org(&m, "comune-1", 8), e2);
    proto_manifest_fini(&m);
    free(bytes);
    o = working_json(f, "adm");
    k1 = key_at(working_member(o, "cpia-1"), 1);
    assert_int_equal(jint(k1, "effective_ms"), effective);
    assert_false(json_object_object_get_ex(k1, "notice_hours", NULL));
    json_object_put(o);

    /* signing again changes nothing stated */
    r = RUN(f, "--json", "network", "sign", "adm", "--out", "m3.bin");
    expect_exit(&r, 0, "network sign again");
    o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(json_object_array_length(json_object_object_get(o, "new_keys")), 0);
    json_object_put(o);
    run_result_fini(&r);
    load_manifest(f, "m3.bin", &bytes, &m);
    mc = proto_manifest_find_org(&m, "cpia-1", 6);
    assert_non_null(mc);
    assert_int_equal((int64_t)mc->keys[1].effective_ms, effective);
    proto_manifest_fini(&m);
    free(bytes);

    /* a retired key never comes back */
    r = RUN(f, "network", "rekey", "adm", "cpia-1.json", "--last-seq", "9");
    expect_err(&r, 2,
        "cpia-1.json holds a key cpia-1 had before (retired after header 7): a retired key never "
        "comes back");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "cpia-1.json");
    expect_err(&r, 2, "cpia-1.json holds a key cpia-1 had before (retired after header 7)");
    run_result_fini(&r);
    json_object_put(old);
    json_object_put(e2);
    json_object_put(neu);
    json_object_put(neu2);
}

/* An org leaves: its key is retired; it stays listed, and its id is never used again. */
static void test_retire(void **state)
{
    fixture *f = *state;
    json_object *e = init_node(f, "n1", "coop-1", "coop", "tcp://127.0.0.1:7401", false);
    json_object *neu
        = init_node_as(f, "n1b", "coop-1", "coop", "tcp://127.0.0.1:7411", false, "new.json");
    run_result r = RUN(f, "network", "add", "adm", "coop-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    r = RUN(f, "network", "retire", "adm", "coop-1", "--last-seq", "5");
    expect_err(&r, 2,
        "coop-1 was never in a signed manifest, so no node knows its key yet: remove it with "
        "patto network remove adm coop-1\n");
    run_result_fini(&r);
    r = RUN(f, "network", "retire", "adm", "coop-9", "--last-seq", "5");
    expect_err(&r, 3, "coop-9 is not a member in adm/manifest.json");
    run_result_fini(&r);
    r = RUN(f, "network", "retire", "adm", "coop-1");
    expect_err(&r, 1, "--last-seq N is required");
    run_result_fini(&r);
    r = RUN(f, "network", "retire", "adm", "Coop", "--last-seq", "5");
    expect_err(&r, 2, "'Coop' is not an org id");
    run_result_fini(&r);

    r = RUN(f, "network", "sign", "adm", "--out", "m1.bin");
    expect_exit(&r, 0, "network sign");
    run_result_fini(&r);
    /* a new key not signed yet goes with the org */
    r = RUN(f, "network", "rekey", "adm", "new.json", "--last-seq", "4");
    expect_exit(&r, 0, "network rekey");
    run_result_fini(&r);
    r = RUN(f, "--json", "network", "retire", "adm", "coop-1", "--last-seq", "5");
    expect_exit(&r, 0, "network retire");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_string_equal(jstr(o, "org"), "coop-1");
    assert_int_equal(jint(o, "last_seq"), 5);
    assert_int_equal(jint(o, "members"), 1);
    json_object_put(o);
    run_result_fini(&r);
    o = working_json(f, "adm");
    json_object *coop = working_member(o, "coop-1");
    assert_int_equal(json_object_array_length(json_object_object_get(coop, "keys")), 1);
    assert_string_equal(jstr(key_at(coop, 0), "origin"), jstr(e, "origin"));
    assert_true(json_object_get_boolean(json_object_object_get(key_at(coop, 0), "retired")));
    assert_int_equal(jint(key_at(coop, 0), "last_seq"), 5);
    json_object_put(o);

    /* gone for good */
    const char *left = "coop-1 has left the network (its key is retired after header 5): an org "
                       "id is never used again";
    r = RUN(f, "network", "retire", "adm", "coop-1", "--last-seq", "6");
    expect_err(&r, 2, left);
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "coop-1.json");
    expect_err(&r, 2, left);
    run_result_fini(&r);
    r = RUN(f, "network", "rekey", "adm", "new.json", "--last-seq", "6");
    expect_err(&r, 2, left);
    run_result_fini(&r);
    r = RUN(f, "network", "remove", "adm", "coop-1");
    expect_err(&r, 2, "coop-1 is in signed manifest version 1: an org stays listed for ever");
    run_result_fini(&r);

    r = RUN(f, "network", "sign", "adm", "--out", "m2.bin");
    expect_exit(&r, 0, "network sign after retire");
    run_result_fini(&r);
    char *bytes;
    proto_manifest m;
    load_manifest(f, "m2.bin", &bytes, &m);
    assert_int_equal(m.nmembers, 1);
    assert_int_equal(m.members[0].nkeys, 1);
    assert_true(m.members[0].keys[0].retired);
    assert_int_equal(m.members[0].keys[0].last_seq, 5);
    assert_false(proto_member_active(&m.members[0]));
    proto_manifest_fini(&m);
    free(bytes);
    json_object_put(e);
    json_object_put(neu);
}

/* A member that no manifest has signed can still be removed. */
static void test_remove_before_signing(void **state)
{
    fixture *f = *state;
    json_object *e = init_node(f, "n1", "coop-1", "coop", "tcp://127.0.0.1:7401", false);
    json_object_put(e);
    e = init_node(f, "n2", "cpi-1", "cpi", "tcp://127.0.0.1:7402", false);
    json_object_put(e);
    run_result r = RUN(f, "network", "add", "adm", "coop-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    r = RUN(f, "network", "sign", "adm", "--out", "m1.bin");
    expect_exit(&r, 0, "network sign");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "cpi-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    r = RUN(f, "--json", "network", "remove", "adm", "cpi-1");
    expect_exit(&r, 0, "network remove");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(jint(o, "members"), 1);
    json_object_put(o);
    run_result_fini(&r);
    o = working_json(f, "adm");
    assert_int_equal(json_object_array_length(json_object_object_get(o, "members")), 1);
    assert_int_equal(jint(working_member(o, "coop-1"), "since"), 1);
    json_object_put(o);
}

/* sign's options go into the manifest and are kept for later signatures. */
static void test_sign_options(void **state)
{
    fixture *f = *state;
    json_object *e = init_node(f, "n1", "cpi-1", "cpi", "tcp://127.0.0.1:7401", false);
    json_object_put(e);
    run_result r = RUN(f, "network", "add", "adm", "cpi-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    static const struct {
        const char *opt, *val, *needle;
    } bad[] = {
        { "--max-clock-ahead-ms", "999",
            "--max-clock-ahead-ms '999' is not a whole number from "
            "1000 to 86400000" },
        { "--max-clock-ahead-ms", "86400001", "is not a whole number from 1000 to 86400000" },
        { "--max-clock-ahead-ms", "1e4", "--max-clock-ahead-ms '1e4' is not a whole number" },
        { "--counter-limit", "0",
            "--counter-limit '0' is not a whole number from 1 to "
            "9007199254740992" },
        { "--counter-limit", "9007199254740993", "is not a whole number from 1 to" },
        { "--counter-limit", "18446744073709551616", "is not a whole number from 1 to" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = RUN(f, "network", "sign", "adm", "--out", "m.bin", bad[i].opt, bad[i].val);
        expect_err(&r, 1, bad[i].needle);
        run_result_fini(&r);
    }
    assert_int_equal(access(at(f, "m.bin"), F_OK), -1);

    /* defaults */
    r = RUN(f, "network", "sign", "adm", "--out", "m1.bin");
    expect_exit(&r, 0, "network sign");
    run_result_fini(&r);
    char *bytes;
    proto_manifest m;
    load_manifest(f, "m1.bin", &bytes, &m);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.max_clock_ahead_ms, PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS);
    assert_int_equal(m.counter_limit, PROTO_COUNTER_LIMIT_DEFAULT);
    proto_manifest_fini(&m);
    free(bytes);

    /* given once, kept */
    r = RUN(f, "--json", "network", "sign", "adm", "--out", "m2.bin", "--max-clock-ahead-ms=5000",
        "--counter-limit", "9007199254740992");
    expect_exit(&r, 0, "network sign with options");
    json_object *o = json_tokener_parse(r.out);
    assert_non_null(o);
    assert_int_equal(jint(o, "max_clock_ahead_ms"), 5000);
    assert_int_equal(jint(o, "counter_limit"), INT64_C(9007199254740992));
    json_object_put(o);
    run_result_fini(&r);
    o = working_json(f, "adm");
    assert_int_equal(jint(o, "max_clock_ahead_ms"), 5000);
    assert_int_equal(jint(o, "counter_limit"), INT64_C(9007199254740992));
    json_object_put(o);
    r = RUN(f, "network", "sign", "adm", "--out", "m3.bin", "--counter-limit", "77");
    expect_exit(&r, 0, "network sign with one option");
    run_result_fini(&r);
    load_manifest(f, "m3.bin", &bytes, &m);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.max_clock_ahead_ms, 5000);
    assert_int_equal(m.counter_limit, 77);
    proto_manifest_fini(&m);
    free(bytes);
    r = RUN(f, "network", "sign", "adm", "--out", "m4.bin");
    expect_exit(&r, 0, "network sign without options");
    run_result_fini(&r);
    load_manifest(f, "m4.bin", &bytes, &m);
    assert_int_equal(m.max_clock_ahead_ms, 5000);
    assert_int_equal(m.counter_limit, 77);
    proto_manifest_fini(&m);
    free(bytes);
}

/* A working manifest edited by hand into one a node would refuse is not signed. */
static void test_sign_refuses_broken(void **state)
{
    fixture *f = *state;
    json_object *e1 = init_node(f, "n1", "comune-1", "comune", "tcp://127.0.0.1:7401", false);
    json_object *e2 = init_node(f, "n2", "cpia-1", "cpia", "tcp://127.0.0.1:7402", false);
    run_result r = RUN(f, "network", "add", "adm", "comune-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    r = RUN(f, "network", "add", "adm", "cpia-1.json");
    expect_exit(&r, 0, "network add");
    run_result_fini(&r);
    char *good = slurp_file(at(f, "adm/manifest.json"), NULL);
    assert_non_null(good);
    const char *other = "abababababababababababababababababababababababababababababababab";
    for (int c = 0; c < 6; c++) {
        json_object *o = json_tokener_parse(good);
        assert_non_null(o);
        json_object *cpia = working_member(o, "cpia-1");
        json_object *keys = json_object_object_get(cpia, "keys");
        json_object *k0 = json_object_array_get_idx(keys, 0);
        const char *needle = NULL;
        if (c == 0) { /* an unretired key before the last */
            json_object *k1 = NULL;
            assert_int_equal(json_object_deep_copy(k0, &k1, NULL), 0);
            json_object_object_add(k1, "origin", json_object_new_string(other));
            json_object_object_add(k1, "box_pk", json_object_new_string(other));
            json_object_array_add(keys, k1);
            needle = "members[1].keys[0]: key 1 of cpia-1 is not retired but a newer key follows";
        } else if (c == 1) { /* an org without keys */
            json_object_array_del_idx(keys, 0, 1);
            needle = "\"keys\" of cpia-1 must be an array of its origin keys, oldest first (an "
                     "org without keys cannot be signed)";
        } else if (c == 2) { /* one origin key for two orgs */
            json_object_object_add(k0, "origin",
                json_object_new_string(jstr(key_at(working_member(o, "comune-1"), 0), "origin")));
            needle = " is listed twice (comune-1 and cpia-1): every key belongs to one node";
        } else if (c == 3) { /* a last seq on a key in force */
            json_object_object_add(k0, "last_seq", json_object_new_int(3));
            needle = "\"last_seq\" is 3 but the key is not retired";
        } else if (c == 4) { /* signed in a version that does not exist */
            json_object_object_add(cpia, "since", json_object_new_int(1));
            needle = "\"since\" names a signed version, but no version is signed yet";
        } else { /* an option out of range */
            json_object_object_add(o, "counter_limit", json_object_new_int(0));
            needle = "\"counter_limit\" must be a whole number from 1 to 9007199254740992";
        }
        write_text(at(f, "adm/manifest.json"), json_object_to_json_string(o));
        json_object_put(o);
        r = RUN(f, "network", "sign", "adm", "--out", "m.bin");
        expect_err(&r, 2, needle);
        run_result_fini(&r);
        assert_int_equal(access(at(f, "m.bin"), F_OK), -1);
    }
    write_text(at(f, "adm/manifest.json"), good);
    free(good);
    r = RUN(f, "network", "sign", "adm", "--out", "m.bin");
    expect_exit(&r, 0, "network sign of the manifest as it was");
    run_result_fini(&r);
    json_object_put(e1);
    json_object_put(e2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_network_flow, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_network_init_custom_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_network_errors, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_rekey, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_retire, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_remove_before_signing, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_sign_options, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_sign_refuses_broken, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_and_node_apart, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_advertise, setup_admin, teardown),
        cmocka_unit_test_setup_teardown(test_blank_text, setup_admin, teardown),
        cmocka_unit_test(test_docs_init_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
