/*
 * network.c - the network admin's commands, all local: the admin key and the working manifest
 * in an admin directory (cli/README.md, "The admin directory"), and signing it with proto/.
 *
 * manifest.json is the admin's working copy: it is read strictly (a hand edit with a typo is
 * refused with the place named), kept sorted as proto_manifest_sign requires, and replaced
 * whole (temporary file and rename) on every change.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ADMIN_PUB "admin.pub"
#define MANIFEST_JSON "manifest.json"

/* The purposes a new network starts with; the admin edits them with `network purpose`. */
static const struct {
    const char *id;
    const char *description;
} default_purposes[] = {
    { "integrazione", "Percorso di integrazione e accompagnamento della persona" },
    { "lingua", "Apprendimento della lingua italiana: valutazioni, corsi CPIA, frequenza" },
    { "lavoro", "Orientamento e inserimento lavorativo: patto di servizio, tirocini" },
    { "alloggio", "Accoglienza e ricerca di una soluzione abitativa" },
    { "documenti", "Rilascio e rinnovo dei documenti di soggiorno" },
};

/* ---------------------------------------------------------------------------------------- */
/* Members and purposes as JSON                                                              */

static const char *const member_keys[] = { "org", "name", "role", "origin", "box_pk", "url" };

static cli_err only_keys(
    cli__ctx *ctx, const char *what, json_object *o, const char *const *keys, size_t nkeys)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool known = false;
        for (size_t i = 0; i < nkeys; i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known)
            return cli__fail(ctx, CLI_EINPUT, "%s: unknown key \"%s\"", what, key);
    }
    return CLI_OK;
}

static cli_err need_str(
    cli__ctx *ctx, const char *what, json_object *o, const char *key, const char **out)
{
    *out = cli__json_str(o, key);
    if (*out == NULL)
        return cli__fail(ctx, CLI_EINPUT, "%s: \"%s\" is missing or not a string", what, key);
    return CLI_OK;
}

static cli_err member_read(cli__ctx *ctx, const char *what, json_object *o, cli__member *m)
{
    if (!json_object_is_type(o, json_type_object))
        return cli__fail(ctx, CLI_EINPUT, "%s: a member entry must be a JSON object", what);
    const char *role, *origin, *box_pk;
    cli_err err;
    if ((err = only_keys(ctx, what, o, member_keys, 6)) != CLI_OK
        || (err = need_str(ctx, what, o, "org", &m->org)) != CLI_OK
        || (err = need_str(ctx, what, o, "name", &m->name)) != CLI_OK
        || (err = need_str(ctx, what, o, "role", &role)) != CLI_OK
        || (err = need_str(ctx, what, o, "origin", &origin)) != CLI_OK
        || (err = need_str(ctx, what, o, "box_pk", &box_pk)) != CLI_OK
        || (err = need_str(ctx, what, o, "url", &m->url)) != CLI_OK)
        return err;
    if (!proto_org_valid(m->org, strlen(m->org)))
        return cli__fail(ctx, CLI_EINPUT,
            "%s: org '%s' is not an org id (1-32 of a-z 0-9 -, e.g. comune-latina)", what, m->org);
    if (!proto_text_valid(m->name, strlen(m->name), PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            "%s: the name of %s must be 1-%d bytes of text without control characters, and not "
            "only spaces",
            what, m->org, PROTO_TEXT_MAX);
    if ((m->role = proto_role_parse(role, strlen(role))) == 0)
        return cli__fail(ctx, CLI_EINPUT,
            "%s: role '%s' is not one of comune cpia cpi prefettura coop coord", what, role);
    if (!proto_hex_decode(origin, strlen(origin), m->origin, PROTO_ORIGIN_LEN))
        return cli__fail(ctx, CLI_EINPUT, "%s: origin of %s must be 64 hex digits (an Ed25519 key)",
            what, m->org);
    if (!proto_hex_decode(box_pk, strlen(box_pk), m->box_pk, PROTO_BOX_PK_LEN))
        return cli__fail(ctx, CLI_EINPUT, "%s: box_pk of %s must be 64 hex digits (an X25519 key)",
            what, m->org);
    if (!proto_url_valid(m->url, strlen(m->url)))
        return cli__fail(
            ctx, CLI_EINPUT, "%s: url '%s' of %s is not tcp://HOST:PORT", what, m->url, m->org);
    return CLI_OK;
}

/* Add v to o under key; v is always consumed (NULL: out of memory, false). */
static bool put(json_object *o, const char *key, json_object *v)
{
    if (v == NULL)
        return false;
    if (json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

json_object *cli__entry_new(const cli__member *m)
{
    char origin[2 * PROTO_ORIGIN_LEN + 1], box_pk[2 * PROTO_BOX_PK_LEN + 1];
    proto_hex_encode(m->origin, PROTO_ORIGIN_LEN, origin);
    proto_hex_encode(m->box_pk, PROTO_BOX_PK_LEN, box_pk);
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    if (!put(o, "org", json_object_new_string(m->org))
        || !put(o, "name", json_object_new_string(m->name))
        || !put(o, "role", json_object_new_string(proto_role_name(m->role)))
        || !put(o, "origin", json_object_new_string(origin))
        || !put(o, "box_pk", json_object_new_string(box_pk))
        || !put(o, "url", json_object_new_string(m->url))) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------------------- */
/* The working manifest                                                                      */

typedef struct working {
    char dir[4096];
    char path[4200];
    json_object *root; /* owned */
    int64_t version;
    uint8_t schema_hash[PROTO_HASH_LEN];
    json_object *members;  /* borrowed from root */
    json_object *purposes; /* borrowed from root */
} working;

static void working_fini(working *w)
{
    json_object_put(w->root);
    w->root = NULL;
}

static int by_org(const void *a, const void *b)
{
    json_object *const *x = a, *const *y = b;
    return strcmp(cli__json_str(*x, "org"), cli__json_str(*y, "org"));
}

static int by_id(const void *a, const void *b)
{
    json_object *const *x = a, *const *y = b;
    return strcmp(cli__json_str(*x, "id"), cli__json_str(*y, "id"));
}

/* Check every member and purpose, and that orgs, origins and purpose ids are unique. */
static cli_err working_check(cli__ctx *ctx, working *w)
{
    static const char *const purpose_keys[] = { "id", "description" };
    char what[4400];
    size_t nm = json_object_array_length(w->members);
    for (size_t i = 0; i < nm; i++) {
        cli__member m, o;
        snprintf(what, sizeof what, "%s: members[%zu]", w->path, i);
        cli_err err = member_read(ctx, what, json_object_array_get_idx(w->members, i), &m);
        if (err != CLI_OK)
            return err;
        for (size_t j = 0; j < i; j++) {
            cli__ctx quiet = { 0 };
            if (member_read(&quiet, what, json_object_array_get_idx(w->members, j), &o) != CLI_OK)
                return cli__fail(ctx, CLI_EINTERNAL, "%s changed while being checked", w->path);
            if (strcmp(m.org, o.org) == 0)
                return cli__fail(ctx, CLI_EINPUT, "%s: org %s is listed twice", w->path, m.org);
            if (memcmp(m.origin, o.origin, PROTO_ORIGIN_LEN) == 0)
                return cli__fail(ctx, CLI_EINPUT, "%s: %s and %s have the same origin key", w->path,
                    o.org, m.org);
        }
    }
    size_t np = json_object_array_length(w->purposes);
    if (np > PROTO_MEMBERS_MAX || nm > PROTO_MEMBERS_MAX)
        return cli__fail(
            ctx, CLI_EINPUT, "%s: more than %d members or purposes", w->path, PROTO_MEMBERS_MAX);
    for (size_t i = 0; i < np; i++) {
        json_object *p = json_object_array_get_idx(w->purposes, i);
        snprintf(what, sizeof what, "%s: purposes[%zu]", w->path, i);
        if (!json_object_is_type(p, json_type_object))
            return cli__fail(
                ctx, CLI_EINPUT, "%s must be an object {\"id\", \"description\"}", what);
        const char *id, *desc;
        cli_err err;
        if ((err = only_keys(ctx, what, p, purpose_keys, 2)) != CLI_OK
            || (err = need_str(ctx, what, p, "id", &id)) != CLI_OK
            || (err = need_str(ctx, what, p, "description", &desc)) != CLI_OK)
            return err;
        if (!proto_org_valid(id, strlen(id)))
            return cli__fail(
                ctx, CLI_EINPUT, "%s: purpose id '%s' is not 1-32 of a-z 0-9 -", what, id);
        if (!proto_text_valid(desc, strlen(desc), PROTO_TEXT_MAX))
            return cli__fail(ctx, CLI_EINPUT,
                "%s: the description of %s must be 1-%d bytes of text without control characters, "
                "and not only spaces",
                what, id, PROTO_TEXT_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(id, cli__json_str(json_object_array_get_idx(w->purposes, j), "id")) == 0)
                return cli__fail(ctx, CLI_EINPUT, "%s: purpose %s is listed twice", w->path, id);
    }
    return CLI_OK;
}

static cli_err working_load(cli__ctx *ctx, const char *admin, working *w)
{
    static const char *const keys[] = { "version", "schema_hash", "members", "purposes" };
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", admin);
    cli_err err = cli__path(ctx, w->path, sizeof w->path, admin, MANIFEST_JSON);
    if (err != CLI_OK)
        return err;
    char key[4200];
    if ((err = cli__path(ctx, key, sizeof key, admin, CLI__ADMIN_KEY)) != CLI_OK)
        return err;
    if (!cli__exists(key))
        return cli__fail(ctx, CLI_ENOTFOUND,
            "%s is not an admin directory (no %s); create one with patto network init %s", admin,
            CLI__ADMIN_KEY, admin);
    uint8_t *text;
    size_t len;
    if ((err = cli__read_file(ctx, w->path, CLI__FILE_MAX, &text, &len)) != CLI_OK)
        return err;
    err = cli__json_parse(ctx, w->path, (const char *)text, len, &w->root);
    free(text);
    if (err != CLI_OK)
        return err;
    json_object *v, *h;
    if (!json_object_is_type(w->root, json_type_object)) {
        err = cli__fail(ctx, CLI_EINPUT, "%s must hold a JSON object", w->path);
        goto fail;
    }
    if ((err = only_keys(ctx, w->path, w->root, keys, 4)) != CLI_OK)
        goto fail;
    if (!json_object_object_get_ex(w->root, "version", &v) || !json_object_is_type(v, json_type_int)
        || (w->version = json_object_get_int64(v)) < 0) {
        err = cli__fail(ctx, CLI_EINPUT, "%s: \"version\" must be a whole number >= 0", w->path);
        goto fail;
    }
    if (!json_object_object_get_ex(w->root, "schema_hash", &h)
        || !json_object_is_type(h, json_type_string)
        || !proto_hex_decode(json_object_get_string(h), (size_t)json_object_get_string_len(h),
            w->schema_hash, PROTO_HASH_LEN)) {
        err = cli__fail(ctx, CLI_EINPUT, "%s: \"schema_hash\" must be 64 hex digits", w->path);
        goto fail;
    }
    if (!json_object_object_get_ex(w->root, "members", &w->members)
        || !json_object_is_type(w->members, json_type_array)
        || !json_object_object_get_ex(w->root, "purposes", &w->purposes)
        || !json_object_is_type(w->purposes, json_type_array)) {
        err = cli__fail(
            ctx, CLI_EINPUT, "%s: \"members\" and \"purposes\" must be arrays", w->path);
        goto fail;
    }
    if ((err = working_check(ctx, w)) != CLI_OK)
        goto fail;
    return CLI_OK;
fail:
    working_fini(w);
    return err;
}

/* Pretty JSON and a final newline, written whole or not at all. */
static cli_err write_json(cli__ctx *ctx, const char *path, json_object *obj, bool exclusive)
{
    const char *s = json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (s == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, "out of memory");
    size_t n = strlen(s);
    char *text = malloc(n + 2);
    if (text == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, "out of memory");
    memcpy(text, s, n);
    text[n] = '\n';
    cli_err err = cli__write_file(ctx, path, text, n + 1, 0644, exclusive);
    free(text);
    return err;
}

static cli_err working_save(cli__ctx *ctx, working *w)
{
    json_object_array_sort(w->members, by_org);
    json_object_array_sort(w->purposes, by_id);
    json_object *v = json_object_new_int64(w->version);
    if (v == NULL || json_object_object_add(w->root, "version", v) != 0) {
        json_object_put(v);
        return cli__fail(ctx, CLI_EINTERNAL, "out of memory");
    }
    return write_json(ctx, w->path, w->root, false);
}

/* ---------------------------------------------------------------------------------------- */
/* network init                                                                              */

static cli_err print_result(cli__ctx *ctx, json_object *obj, const char *human)
{
    if (ctx->json)
        return cli__json_print(ctx, obj);
    if (printf("%s\n", human) < 0)
        return cli__fail(ctx, CLI_EINTERNAL, "cannot write to stdout: %s", strerror(errno));
    return CLI_OK;
}

static cli_err add_str(cli__ctx *ctx, json_object *o, const char *key, const char *value)
{
    json_object *v = json_object_new_string(value);
    if (v == NULL || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return cli__fail(ctx, CLI_EINTERNAL, "out of memory");
    }
    return CLI_OK;
}

static cli_err add_int(cli__ctx *ctx, json_object *o, const char *key, int64_t value)
{
    json_object *v = json_object_new_int64(value);
    if (v == NULL || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return cli__fail(ctx, CLI_EINTERNAL, "out of memory");
    }
    return CLI_OK;
}

static json_object *new_manifest(const uint8_t hash[PROTO_HASH_LEN])
{
    char hex[2 * PROTO_HASH_LEN + 1];
    proto_hex_encode(hash, PROTO_HASH_LEN, hex);
    json_object *purposes = json_object_new_array();
    if (purposes == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof default_purposes / sizeof default_purposes[0]; i++) {
        json_object *p = json_object_new_object();
        if (p == NULL || !put(p, "id", json_object_new_string(default_purposes[i].id))
            || !put(p, "description", json_object_new_string(default_purposes[i].description))
            || json_object_array_add(purposes, p) != 0) {
            json_object_put(p);
            json_object_put(purposes);
            return NULL;
        }
    }
    json_object *root = json_object_new_object();
    if (root == NULL || !put(root, "version", json_object_new_int64(0))
        || !put(root, "schema_hash", json_object_new_string(hex))
        || !put(root, "members", json_object_new_array())) {
        json_object_put(purposes);
        json_object_put(root);
        return NULL;
    }
    if (!put(root, "purposes", purposes)) { /* put consumed purposes */
        json_object_put(root);
        return NULL;
    }
    return root;
}

cli_err cli__schema_read(
    cli__ctx *ctx, const char *path, uint8_t **out, size_t *len, uint8_t hash[PROTO_HASH_LEN])
{
    uint8_t *bytes;
    cli_err err = cli__read_file(ctx, path, CLI__FILE_MAX, &bytes, len);
    if (err != CLI_OK)
        return err;
    json_object *o = NULL;
    err = cli__json_parse(ctx, path, (const char *)bytes, *len, &o);
    if (err == CLI_OK
        && (!json_object_is_type(o, json_type_object)
            || !json_object_object_get_ex(o, "scopes", NULL)))
        err = cli__fail(
            ctx, CLI_EINPUT, "%s is not a record schema (no \"scopes\"; see node/SCHEMA.md)", path);
    json_object_put(o);
    if (err != CLI_OK) {
        free(bytes);
        return err;
    }
    proto_schema_hash(bytes, *len, hash);
    *out = bytes;
    return CLI_OK;
}

cli_err cli__network_init(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *schema = NULL;
    const cli__opt opts[] = { { "schema", &schema, NULL } };
    const char *pos[1];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    const char *admin = pos[0];
    char key[4200], pub[4200], man[4200];
    if ((err = cli__path(ctx, key, sizeof key, admin, CLI__ADMIN_KEY)) != CLI_OK
        || (err = cli__path(ctx, pub, sizeof pub, admin, ADMIN_PUB)) != CLI_OK
        || (err = cli__path(ctx, man, sizeof man, admin, MANIFEST_JSON)) != CLI_OK)
        return err;
    if (cli__exists(key))
        return cli__fail(ctx, CLI_EINPUT,
            "%s already holds a network admin key (%s); refusing to replace it", admin, key);
    if (cli__exists(pub) || cli__exists(man))
        return cli__fail(ctx, CLI_EINPUT,
            "%s already holds %s or %s; use an empty or new directory", admin, ADMIN_PUB,
            MANIFEST_JSON);
    static const char *const node_marks[] = { CLI__NODE_CONF, CLI__NODE_KEY };
    char node[4200];
    const char *mark;
    if (cli__inside(admin, node_marks, 2, node, sizeof node, &mark))
        return cli__fail(ctx, CLI_EINPUT,
            "%s is in the data directory of a node, %s (it holds %s): the network admin key "
            "never enters a node; create the admin directory outside it",
            admin, node, mark);
    uint8_t hash[PROTO_HASH_LEN];
    if (schema != NULL) {
        uint8_t *bytes;
        size_t len;
        if ((err = cli__schema_read(ctx, schema, &bytes, &len, hash)) != CLI_OK)
            return err;
        free(bytes);
    } else {
        proto_schema_hash(patto_default_schema, patto_default_schema_len, hash);
    }
    if (proto_init() != PROTO_OK)
        return cli__fail(ctx, CLI_EINTERNAL, "cannot initialise the crypto library: %s",
            proto_strerror(PROTO_ECRYPTO));

    bool made_dir = false, wrote_key = false, wrote_pub = false;
    proto_identity *id = NULL;
    json_object *root = NULL, *out = NULL;
    uint8_t seeds[2 * PROTO_SEED_LEN];
    char hex[2 * PROTO_ORIGIN_LEN + 2];
    if (mkdir(admin, 0700) == 0) {
        made_dir = true;
    } else if (errno != EEXIST) {
        return cli__fail(ctx, CLI_EINPUT, "cannot create %s: %s", admin, strerror(errno));
    }
    /* The admin key must be the admin's alone, whatever the umask or an existing directory. */
    if (chmod(admin, 0700) != 0) {
        err = cli__fail(
            ctx, CLI_EINPUT, "cannot make %s private (mode 0700): %s", admin, strerror(errno));
        goto fail;
    }
    proto_err perr = proto_identity_new(NULL, &id);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, "cannot make the admin key: %s", proto_strerror(perr));
        goto fail;
    }
    proto_identity_seeds(id, seeds, seeds + PROTO_SEED_LEN);
    err = cli__write_file(ctx, key, seeds, sizeof seeds, 0600, true);
    proto_wipe(seeds, sizeof seeds);
    if (err != CLI_OK)
        goto fail;
    wrote_key = true;
    proto_hex_encode(proto_identity_origin(id), PROTO_ORIGIN_LEN, hex);
    hex[2 * PROTO_ORIGIN_LEN] = '\n';
    hex[2 * PROTO_ORIGIN_LEN + 1] = '\0';
    if ((err = cli__write_file(ctx, pub, hex, 2 * PROTO_ORIGIN_LEN + 1, 0644, true)) != CLI_OK)
        goto fail;
    wrote_pub = true;
    hex[2 * PROTO_ORIGIN_LEN] = '\0';
    if ((root = new_manifest(hash)) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto fail;
    }
    if ((err = write_json(ctx, man, root, true)) != CLI_OK)
        goto fail;

    char hash_hex[2 * PROTO_HASH_LEN + 1];
    proto_hex_encode(hash, PROTO_HASH_LEN, hash_hex);
    if ((out = json_object_new_object()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    char human[8600];
    snprintf(human, sizeof human,
        "%s\nnetwork admin key written to %s; give the public key above (also in %s) to "
        "every partner for patto init --admin-pub",
        hex, key, pub);
    if ((err = add_str(ctx, out, "admin_pub", hex)) == CLI_OK
        && (err = add_str(ctx, out, "dir", admin)) == CLI_OK
        && (err = add_str(ctx, out, "schema_hash", hash_hex)) == CLI_OK)
        err = print_result(ctx, out, human);
    goto done;
fail:
    if (wrote_pub)
        unlink(pub);
    if (wrote_key)
        unlink(key);
    if (made_dir)
        rmdir(admin);
done:
    json_object_put(out);
    json_object_put(root);
    proto_identity_free(id);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* network add, remove, purpose                                                              */

cli_err cli__network_add(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    uint8_t *text = NULL;
    size_t len;
    json_object *entry = NULL, *out = NULL;
    working w;
    if ((err = working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    if ((err = cli__read_file(ctx, pos[1], CLI__FILE_MAX, &text, &len)) != CLI_OK
        || (err = cli__json_parse(ctx, pos[1], (const char *)text, len, &entry)) != CLI_OK)
        goto done;
    cli__member m;
    if ((err = member_read(ctx, pos[1], entry, &m)) != CLI_OK)
        goto done;
    for (size_t i = 0; i < json_object_array_length(w.members); i++) {
        cli__member o;
        cli__ctx quiet = { 0 };
        if (member_read(&quiet, "", json_object_array_get_idx(w.members, i), &o) != CLI_OK) {
            err = cli__fail(ctx, CLI_EINTERNAL, "%s changed while being read", w.path);
            goto done;
        }
        if (strcmp(o.org, m.org) == 0) {
            err = cli__fail(ctx, CLI_EINPUT,
                "%s is already a member; to replace its entry, first run patto network remove "
                "%s %s",
                m.org, pos[0], m.org);
            goto done;
        }
        if (memcmp(o.origin, m.origin, PROTO_ORIGIN_LEN) == 0) {
            err = cli__fail(ctx, CLI_EINPUT,
                "the origin key of %s is already the key of member %s; every node needs its own "
                "keys (patto init)",
                m.org, o.org);
            goto done;
        }
        if (memcmp(o.box_pk, m.box_pk, PROTO_BOX_PK_LEN) == 0) {
            err = cli__fail(ctx, CLI_EINPUT,
                "the box_pk key of %s is already the key of member %s; every node needs its own "
                "keys (patto init)",
                m.org, o.org);
            goto done;
        }
    }
    if (json_object_array_length(w.members) >= PROTO_MEMBERS_MAX) {
        err = cli__fail(ctx, CLI_EINPUT, "the manifest already has %d members", PROTO_MEMBERS_MAX);
        goto done;
    }
    /* Store the entry as read, normalised (lowercase hex, keys in order). */
    json_object *norm = cli__entry_new(&m);
    if (norm == NULL || json_object_array_add(w.members, norm) != 0) {
        json_object_put(norm);
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    if ((err = working_save(ctx, &w)) != CLI_OK)
        goto done;
    if ((out = json_object_new_object()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    char human[9000];
    snprintf(human, sizeof human,
        "%s (%s) added to %s (%zu members); sign a new version with patto network sign %s --out "
        "FILE",
        m.org, proto_role_name(m.role), w.path, json_object_array_length(w.members), pos[0]);
    if ((err = add_str(ctx, out, "org", m.org)) == CLI_OK
        && (err = add_int(ctx, out, "members", (int64_t)json_object_array_length(w.members)))
            == CLI_OK)
        err = print_result(ctx, out, human);
done:
    json_object_put(out);
    json_object_put(entry);
    free(text);
    working_fini(&w);
    return err;
}

cli_err cli__network_remove(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    const char *org = pos[1];
    if (!proto_org_valid(org, strlen(org)))
        return cli__fail(ctx, CLI_EINPUT, "'%s' is not an org id (1-32 of a-z 0-9 -)", org);
    working w;
    if ((err = working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    json_object *out = NULL;
    size_t nm = json_object_array_length(w.members), at = nm;
    for (size_t i = 0; i < nm; i++)
        if (strcmp(cli__json_str(json_object_array_get_idx(w.members, i), "org"), org) == 0)
            at = i;
    if (at == nm) {
        err = cli__fail(ctx, CLI_ENOTFOUND, "%s is not a member in %s", org, w.path);
        goto done;
    }
    if (json_object_array_del_idx(w.members, at, 1) != 0) {
        err = cli__fail(ctx, CLI_EINTERNAL, "cannot remove %s", org);
        goto done;
    }
    if ((err = working_save(ctx, &w)) != CLI_OK)
        goto done;
    if ((out = json_object_new_object()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    char human[9000];
    snprintf(human, sizeof human,
        "%s removed from %s (%zu members); sign a new version with patto network sign %s --out "
        "FILE",
        org, w.path, json_object_array_length(w.members), pos[0]);
    if ((err = add_str(ctx, out, "org", org)) == CLI_OK
        && (err = add_int(ctx, out, "members", (int64_t)json_object_array_length(w.members)))
            == CLI_OK)
        err = print_result(ctx, out, human);
done:
    json_object_put(out);
    working_fini(&w);
    return err;
}

cli_err cli__network_purpose(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[3];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 3, 3, &n);
    if (err != CLI_OK)
        return err;
    const char *id = pos[1], *text = pos[2];
    if (!proto_org_valid(id, strlen(id)))
        return cli__fail(ctx, CLI_EINPUT, "purpose id '%s' is not 1-32 of a-z 0-9 -", id);
    if (!proto_text_valid(text, strlen(text), PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            "the description of %s must be 1-%d bytes of text without control characters, and "
            "not only spaces",
            id, PROTO_TEXT_MAX);
    working w;
    if ((err = working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    json_object *out = NULL;
    json_object *entry = NULL;
    size_t np = json_object_array_length(w.purposes);
    for (size_t i = 0; i < np; i++) {
        json_object *p = json_object_array_get_idx(w.purposes, i);
        if (strcmp(cli__json_str(p, "id"), id) == 0)
            entry = p;
    }
    bool replaced = entry != NULL;
    if (entry == NULL) {
        if (np >= PROTO_MEMBERS_MAX) {
            err = cli__fail(
                ctx, CLI_EINPUT, "the manifest already has %d purposes", PROTO_MEMBERS_MAX);
            goto done;
        }
        entry = json_object_new_object();
        if (entry == NULL || json_object_array_add(w.purposes, entry) != 0) {
            json_object_put(entry);
            err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
            goto done;
        }
        if ((err = add_str(ctx, entry, "id", id)) != CLI_OK)
            goto done;
    }
    if ((err = add_str(ctx, entry, "description", text)) != CLI_OK
        || (err = working_save(ctx, &w)) != CLI_OK)
        goto done;
    if ((out = json_object_new_object()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    char human[9000];
    snprintf(human, sizeof human, "purpose %s %s in %s (%zu purposes)", id,
        replaced ? "replaced" : "added", w.path, json_object_array_length(w.purposes));
    if ((err = add_str(ctx, out, "id", id)) == CLI_OK
        && (err = add_str(ctx, out, "description", text)) == CLI_OK
        && (err = add_int(ctx, out, "purposes", (int64_t)json_object_array_length(w.purposes)))
            == CLI_OK)
        err = print_result(ctx, out, human);
done:
    json_object_put(out);
    working_fini(&w);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* network sign                                                                              */

static cli_err admin_identity(cli__ctx *ctx, const char *admin, proto_identity **out)
{
    char key[4200], pub[4200];
    cli_err err;
    if ((err = cli__path(ctx, key, sizeof key, admin, CLI__ADMIN_KEY)) != CLI_OK
        || (err = cli__path(ctx, pub, sizeof pub, admin, ADMIN_PUB)) != CLI_OK)
        return err;
    uint8_t *seeds = NULL, *pubtext = NULL;
    size_t len = 0, publen = 0;
    if ((err = cli__read_file(ctx, key, 4096, &seeds, &len)) != CLI_OK)
        return err;
    if (len != 2 * PROTO_SEED_LEN) {
        err = cli__fail(ctx, CLI_EINPUT,
            "%s is not a network admin key (%d bytes expected, found %zu)", key, 2 * PROTO_SEED_LEN,
            len);
        goto done;
    }
    if (proto_init() != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, "cannot initialise the crypto library");
        goto done;
    }
    proto_err perr = proto_identity_from_seeds(seeds, seeds + PROTO_SEED_LEN, out);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, "cannot load %s: %s", key, proto_strerror(perr));
        goto done;
    }
    /* admin.pub is what partners pinned: a key that no longer matches it signs in vain. */
    if ((err = cli__read_file(ctx, pub, 4096, &pubtext, &publen)) != CLI_OK)
        goto done;
    uint8_t want[PROTO_ORIGIN_LEN];
    if (publen > 0 && pubtext[publen - 1] == '\n')
        pubtext[--publen] = '\0';
    if (!proto_hex_decode((const char *)pubtext, publen, want, PROTO_ORIGIN_LEN)
        || memcmp(want, proto_identity_origin(*out), PROTO_ORIGIN_LEN) != 0) {
        err = cli__fail(ctx, CLI_EINPUT,
            "%s does not hold the public key of %s; the admin directory is damaged", pub, key);
        goto done;
    }
done:
    if (err != CLI_OK) {
        proto_identity_free(*out);
        *out = NULL;
    }
    if (seeds != NULL)
        proto_wipe(seeds, len);
    free(seeds);
    free(pubtext);
    return err;
}

cli_err cli__network_sign(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *outfile = NULL;
    const cli__opt opts[] = { { "out", &outfile, NULL } };
    const char *pos[1];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (outfile == NULL)
        return cli__usage(ctx, cmd, "--out FILE is required");
    working w;
    if ((err = working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    proto_identity *admin = NULL;
    proto_member *members = NULL;
    proto_purpose *purposes = NULL;
    proto_buf signed_bytes = { NULL, 0 };
    json_object *out = NULL;
    if ((err = admin_identity(ctx, pos[0], &admin)) != CLI_OK)
        goto done;
    /* Sorted as proto requires; working_save writes the same order back. */
    json_object_array_sort(w.members, by_org);
    json_object_array_sort(w.purposes, by_id);
    size_t nm = json_object_array_length(w.members), np = json_object_array_length(w.purposes);
    members = calloc(nm + 1, sizeof *members);
    purposes = calloc(np + 1, sizeof *purposes);
    if (members == NULL || purposes == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nm; i++) {
        cli__member m;
        if ((err = member_read(ctx, w.path, json_object_array_get_idx(w.members, i), &m)) != CLI_OK)
            goto done;
        members[i] = (proto_member) {
            .org = { (const uint8_t *)m.org, strlen(m.org) },
            .name = { (const uint8_t *)m.name, strlen(m.name) },
            .role = (uint8_t)m.role,
            .url = { (const uint8_t *)m.url, strlen(m.url) },
        };
        memcpy(members[i].origin, m.origin, PROTO_ORIGIN_LEN);
        memcpy(members[i].box_pk, m.box_pk, PROTO_BOX_PK_LEN);
    }
    for (size_t i = 0; i < np; i++) {
        json_object *p = json_object_array_get_idx(w.purposes, i);
        const char *id = cli__json_str(p, "id"), *desc = cli__json_str(p, "description");
        purposes[i] = (proto_purpose) {
            .id = { (const uint8_t *)id, strlen(id) },
            .description = { (const uint8_t *)desc, strlen(desc) },
        };
    }
    proto_manifest m = {
        .version = (uint64_t)w.version + 1,
        .members = members,
        .nmembers = nm,
        .purposes = purposes,
        .npurposes = np,
    };
    memcpy(m.schema_hash, w.schema_hash, PROTO_HASH_LEN);
    proto_err perr = proto_manifest_sign(&m, admin, &signed_bytes);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, perr == PROTO_EVALUE ? CLI_EINPUT : CLI_EINTERNAL,
            "cannot sign the manifest in %s: %s", w.path, proto_strerror(perr));
        goto done;
    }
    /*
     * Record the new version before writing FILE: if writing FILE fails, the next signature
     * skips a number, which nodes accept; the other order could sign two different manifests
     * with one version number, and a node would keep whichever reached it first.
     */
    w.version++;
    if ((err = working_save(ctx, &w)) != CLI_OK)
        goto done;
    if ((err = cli__write_file(ctx, outfile, signed_bytes.p, signed_bytes.len, 0644, false))
        != CLI_OK)
        goto done;
    if ((out = json_object_new_object()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done;
    }
    char human[9000];
    snprintf(human, sizeof human,
        "manifest version %lld signed (%zu members, %zu purposes) and written to %s; hand it to "
        "a node with patto manifest import %s",
        (long long)w.version, nm, np, outfile, outfile);
    if ((err = add_int(ctx, out, "version", w.version)) == CLI_OK
        && (err = add_int(ctx, out, "members", (int64_t)nm)) == CLI_OK
        && (err = add_int(ctx, out, "purposes", (int64_t)np)) == CLI_OK
        && (err = add_str(ctx, out, "out", outfile)) == CLI_OK)
        err = print_result(ctx, out, human);
done:
    json_object_put(out);
    proto_buf_free(&signed_bytes);
    free(members);
    free(purposes);
    proto_identity_free(admin);
    working_fini(&w);
    return err;
}
