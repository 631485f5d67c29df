/*
 * working.c - the working manifest (working.h): member entries as `patto init` prints them,
 * manifest.json read strictly into C structures and checked, and written back whole.
 *
 * A hand edit with a typo, or one that breaks a rule a node checks, is refused with the place
 * named (members[2].keys[0]: ...), by every command: nothing is signed from a manifest that a
 * node would refuse.
 */
#include "working.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_JSON "manifest.json"
#define WHAT_MAX 4400

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
/* Reading JSON strictly                                                                     */

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
            return cli__fail(ctx, CLI_EINPUT, _("%s: unknown key \"%s\""), what, key);
    }
    return CLI_OK;
}

static cli_err need_str(
    cli__ctx *ctx, const char *what, json_object *o, const char *key, const char **out)
{
    *out = cli__json_str(o, key);
    if (*out == NULL)
        return cli__fail(ctx, CLI_EINPUT, _("%s: \"%s\" is missing or not a string"), what, key);
    return CLI_OK;
}

/* A whole number min..max under key. Absent: CLI_ENOTFOUND without a failure recorded, when
 * optional; refused otherwise. */
static cli_err need_uint(cli__ctx *ctx, const char *what, json_object *o, const char *key,
    uint64_t min, uint64_t max, bool optional, uint64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v)) {
        if (optional)
            return CLI_ENOTFOUND;
        return cli__fail(ctx, CLI_EINPUT, _("%s: \"%s\" is missing"), what, key);
    }
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0
        || json_object_get_uint64(v) < min || json_object_get_uint64(v) > max)
        return cli__fail(ctx, CLI_EINPUT, _("%s: \"%s\" must be a whole number from %llu to %llu"),
            what, key, (unsigned long long)min, (unsigned long long)max);
    *out = json_object_get_uint64(v);
    return CLI_OK;
}

static cli_err need_hex(cli__ctx *ctx, const char *what, json_object *o, const char *key,
    uint8_t *out, size_t n, const char *kind)
{
    const char *s;
    cli_err err = need_str(ctx, what, o, key, &s);
    if (err != CLI_OK)
        return err;
    if (!proto_hex_decode(s, strlen(s), out, n))
        return cli__fail(
            ctx, CLI_EINPUT, _("%s: \"%s\" must be %zu hex digits (%s)"), what, key, 2 * n, kind);
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Member entries (`patto init` prints them, `network add` and `rekey` read them)            */

static const char *const entry_keys[] = { "org", "name", "role", "origin", "box_pk", "url" };

/* The fields a member entry and a working member share: org, name, role, url. */
static cli_err org_fields(cli__ctx *ctx, const char *what, json_object *o, const char **org,
    const char **name, unsigned *role, const char **url)
{
    const char *r;
    cli_err err;
    if ((err = need_str(ctx, what, o, "org", org)) != CLI_OK
        || (err = need_str(ctx, what, o, "name", name)) != CLI_OK
        || (err = need_str(ctx, what, o, "role", &r)) != CLI_OK
        || (err = need_str(ctx, what, o, "url", url)) != CLI_OK)
        return err;
    if (!proto_org_valid(*org, strlen(*org)))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: org '%s' is not an org id (1-32 of a-z 0-9 -, e.g. comune-latina)"), what, *org);
    if (!proto_text_valid(*name, strlen(*name), PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: the name of %s must be 1-%d bytes of text without control characters, and not "
              "only spaces"),
            what, *org, PROTO_TEXT_MAX);
    if ((*role = proto_role_parse(r, strlen(r))) == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: role '%s' is not one of comune cpia cpi prefettura coop coord"), what, r);
    if (!proto_url_valid(*url, strlen(*url)))
        return cli__fail(
            ctx, CLI_EINPUT, _("%s: url '%s' of %s is not tcp://HOST:PORT"), what, *url, *org);
    return CLI_OK;
}

cli_err cli__entry_read(cli__ctx *ctx, const char *what, json_object *o, cli__member *m)
{
    if (!json_object_is_type(o, json_type_object))
        return cli__fail(ctx, CLI_EINPUT, _("%s: a member entry must be a JSON object"), what);
    const char *origin, *box_pk;
    cli_err err;
    if ((err = only_keys(ctx, what, o, entry_keys, 6)) != CLI_OK
        || (err = org_fields(ctx, what, o, &m->org, &m->name, &m->role, &m->url)) != CLI_OK
        || (err = need_str(ctx, what, o, "origin", &origin)) != CLI_OK
        || (err = need_str(ctx, what, o, "box_pk", &box_pk)) != CLI_OK)
        return err;
    if (!proto_hex_decode(origin, strlen(origin), m->origin, PROTO_ORIGIN_LEN))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: origin of %s must be 64 hex digits (an Ed25519 key)"), what, m->org);
    if (!proto_hex_decode(box_pk, strlen(box_pk), m->box_pk, PROTO_BOX_PK_LEN))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: box_pk of %s must be 64 hex digits (an X25519 key)"), what, m->org);
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

static json_object *hex_string(const uint8_t *p, size_t n)
{
    char hex[2 * 64 + 1];
    proto_hex_encode(p, n, hex);
    return json_object_new_string(hex);
}

json_object *cli__entry_new(const cli__member *m)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    if (!put(o, "org", json_object_new_string(m->org))
        || !put(o, "name", json_object_new_string(m->name))
        || !put(o, "role", json_object_new_string(proto_role_name(m->role)))
        || !put(o, "origin", hex_string(m->origin, PROTO_ORIGIN_LEN))
        || !put(o, "box_pk", hex_string(m->box_pk, PROTO_BOX_PK_LEN))
        || !put(o, "url", json_object_new_string(m->url))) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------------------- */
/* Members, keys and purposes in memory                                                      */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void member_fini(cli__wmember *m)
{
    free(m->org);
    free(m->name);
    free(m->url);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

void cli__working_fini(cli__working *w)
{
    for (size_t i = 0; i < w->nmembers; i++)
        member_fini(&w->members[i]);
    for (size_t i = 0; i < w->npurposes; i++) {
        free(w->purposes[i].id);
        free(w->purposes[i].description);
    }
    free(w->members);
    free(w->purposes);
    w->members = NULL;
    w->purposes = NULL;
    w->nmembers = w->npurposes = 0;
}

cli__wmember *cli__working_find(const cli__working *w, const char *org)
{
    for (size_t i = 0; i < w->nmembers; i++)
        if (strcmp(w->members[i].org, org) == 0)
            return &w->members[i];
    return NULL;
}

cli__wmember *cli__working_key_user(const cli__working *w, const uint8_t origin[PROTO_ORIGIN_LEN],
    const uint8_t box_pk[PROTO_BOX_PK_LEN], const cli__wkey **key)
{
    for (size_t i = 0; i < w->nmembers; i++)
        for (size_t k = 0; k < w->members[i].nkeys; k++) {
            const cli__wkey *x = &w->members[i].keys[k];
            if (memcmp(x->origin, origin, PROTO_ORIGIN_LEN) == 0
                || memcmp(x->box_pk, box_pk, PROTO_BOX_PK_LEN) == 0) {
                *key = x;
                return &w->members[i];
            }
        }
    return NULL;
}

cli__wkey *cli__wmember_current(const cli__wmember *m)
{
    return &m->keys[m->nkeys - 1];
}

bool cli__wmember_active(const cli__wmember *m)
{
    return !cli__wmember_current(m)->retired;
}

cli_err cli__wmember_push_key(cli__ctx *ctx, cli__wmember *m, const cli__wkey *k)
{
    if (m->nkeys >= PROTO_MEMBER_KEYS_MAX)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s has had %d origin keys, the most a manifest lists for one org"), m->org,
            PROTO_MEMBER_KEYS_MAX);
    cli__wkey *keys = realloc(m->keys, (m->nkeys + 1) * sizeof *keys);
    if (keys == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    m->keys = keys;
    m->keys[m->nkeys++] = *k;
    return CLI_OK;
}

cli_err cli__wmember_update(cli__ctx *ctx, cli__wmember *m, const cli__member *e)
{
    char *name = dup_str(e->name), *url = dup_str(e->url);
    if (name == NULL || url == NULL) {
        free(name);
        free(url);
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    free(m->name);
    free(m->url);
    m->name = name;
    m->url = url;
    m->role = e->role;
    return CLI_OK;
}

cli_err cli__working_add(cli__ctx *ctx, cli__working *w, const cli__member *e)
{
    if (w->nmembers >= PROTO_MEMBERS_MAX)
        return cli__fail(
            ctx, CLI_EINPUT, _("the manifest already lists %d orgs"), PROTO_MEMBERS_MAX);
    cli__wmember *members = realloc(w->members, (w->nmembers + 1) * sizeof *members);
    if (members == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    w->members = members;
    cli__wmember m = { .org = dup_str(e->org), .role = e->role };
    cli__wkey k = { .retired = false };
    memcpy(k.origin, e->origin, PROTO_ORIGIN_LEN);
    memcpy(k.box_pk, e->box_pk, PROTO_BOX_PK_LEN);
    cli_err err = CLI_OK;
    if (m.org == NULL)
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    if (err != CLI_OK || (err = cli__wmember_update(ctx, &m, e)) != CLI_OK
        || (err = cli__wmember_push_key(ctx, &m, &k)) != CLI_OK) {
        member_fini(&m);
        return err;
    }
    w->members[w->nmembers++] = m;
    return CLI_OK;
}

void cli__working_remove(cli__working *w, size_t i)
{
    member_fini(&w->members[i]);
    memmove(&w->members[i], &w->members[i + 1], (w->nmembers - i - 1) * sizeof w->members[0]);
    w->nmembers--;
}

cli_err cli__working_purpose(
    cli__ctx *ctx, cli__working *w, const char *id, const char *description, bool *replaced)
{
    char *desc = dup_str(description);
    if (desc == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    for (size_t i = 0; i < w->npurposes; i++)
        if (strcmp(w->purposes[i].id, id) == 0) {
            free(w->purposes[i].description);
            w->purposes[i].description = desc;
            *replaced = true;
            return CLI_OK;
        }
    *replaced = false;
    if (w->npurposes >= PROTO_MEMBERS_MAX) {
        free(desc);
        return cli__fail(
            ctx, CLI_EINPUT, _("the manifest already has %d purposes"), PROTO_MEMBERS_MAX);
    }
    cli__wpurpose *p = realloc(w->purposes, (w->npurposes + 1) * sizeof *p);
    char *copy = dup_str(id);
    if (p != NULL)
        w->purposes = p;
    if (p == NULL || copy == NULL) {
        free(desc);
        free(copy);
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    w->purposes[w->npurposes++] = (cli__wpurpose) { copy, desc };
    return CLI_OK;
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const cli__wmember *)a)->org, ((const cli__wmember *)b)->org);
}

static int purpose_cmp(const void *a, const void *b)
{
    return strcmp(((const cli__wpurpose *)a)->id, ((const cli__wpurpose *)b)->id);
}

void cli__working_sort(cli__working *w)
{
    if (w->nmembers > 1)
        qsort(w->members, w->nmembers, sizeof w->members[0], member_cmp);
    if (w->npurposes > 1)
        qsort(w->purposes, w->npurposes, sizeof w->purposes[0], purpose_cmp);
}

static cli_err set_path(cli__ctx *ctx, const char *admin, cli__working *w)
{
    return cli__path(ctx, w->path, sizeof w->path, admin, MANIFEST_JSON);
}

cli_err cli__working_new(
    cli__ctx *ctx, const char *admin, const uint8_t schema_hash[PROTO_HASH_LEN], cli__working *w)
{
    memset(w, 0, sizeof *w);
    cli_err err = set_path(ctx, admin, w);
    if (err != CLI_OK)
        return err;
    memcpy(w->schema_hash, schema_hash, PROTO_HASH_LEN);
    w->max_clock_ahead_ms = PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS;
    w->counter_limit = PROTO_COUNTER_LIMIT_DEFAULT;
    for (size_t i = 0; i < sizeof default_purposes / sizeof default_purposes[0]; i++) {
        bool replaced;
        if ((err = cli__working_purpose(
                 ctx, w, default_purposes[i].id, default_purposes[i].description, &replaced))
            != CLI_OK) {
            cli__working_fini(w);
            return err;
        }
    }
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Loading and checking                                                                      */

static const char *const top_keys[]
    = { "version", "schema_hash", "max_clock_ahead_ms", "counter_limit", "members", "purposes" };
static const char *const member_keys[] = { "org", "name", "role", "url", "keys", "since" };
static const char *const key_keys[]
    = { "origin", "box_pk", "effective_ms", "retired", "last_seq", "notice_hours" };
static const char *const purpose_keys[] = { "id", "description" };

static cli_err key_read(cli__ctx *ctx, const char *what, json_object *o, cli__wkey *k)
{
    if (!json_object_is_type(o, json_type_object))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s must be an object {\"origin\", \"box_pk\", \"effective_ms\", \"retired\", "
              "\"last_seq\"}"),
            what);
    cli_err err;
    json_object *r;
    if ((err = only_keys(ctx, what, o, key_keys, 6)) != CLI_OK
        || (err
               = need_hex(ctx, what, o, "origin", k->origin, PROTO_ORIGIN_LEN, _("an Ed25519 key")))
            != CLI_OK
        || (err = need_hex(ctx, what, o, "box_pk", k->box_pk, PROTO_BOX_PK_LEN, _("an X25519 key")))
            != CLI_OK
        || (err = need_uint(ctx, what, o, "effective_ms", 0, INT64_MAX, false, &k->effective_ms))
            != CLI_OK
        || (err = need_uint(ctx, what, o, "last_seq", 0, INT64_MAX, false, &k->last_seq)) != CLI_OK)
        return err;
    if (!json_object_object_get_ex(o, "retired", &r) || !json_object_is_type(r, json_type_boolean))
        return cli__fail(ctx, CLI_EINPUT, _("%s: \"retired\" must be true or false"), what);
    k->retired = json_object_get_boolean(r);
    err = need_uint(ctx, what, o, "notice_hours", 1, CLI__NOTICE_HOURS_MAX, true, &k->notice_hours);
    if (err == CLI_ENOTFOUND)
        k->notice_hours = 0;
    else if (err != CLI_OK)
        return err;
    if (!k->retired && k->last_seq != 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: \"last_seq\" is %llu but the key is not retired (a key that is not retired has "
              "last_seq 0)"),
            what, (unsigned long long)k->last_seq);
    if (k->notice_hours != 0 && (k->effective_ms != 0 || k->retired))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: a key with \"notice_hours\" is one not signed yet: its effective_ms is 0 and it "
              "is not retired"),
            what);
    return CLI_OK;
}

/* The keys of member m (its org already read): 1..PROTO_MEMBER_KEYS_MAX, every one but the
 * last retired, effective times not decreasing, notice_hours on the last only. */
static cli_err keys_read(cli__ctx *ctx, const char *what, json_object *a, cli__wmember *m)
{
    char kwhat[WHAT_MAX + 32];
    size_t n = json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
    if (!json_object_is_type(a, json_type_array) || n == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: \"keys\" of %s must be an array of its origin keys, oldest first (an org "
              "without "
              "keys cannot be signed)"),
            what, m->org);
    if (n > PROTO_MEMBER_KEYS_MAX)
        return cli__fail(ctx, CLI_EINPUT, _("%s: %s has %zu keys; a manifest lists at most %d"),
            what, m->org, n, PROTO_MEMBER_KEYS_MAX);
    if ((m->keys = calloc(n, sizeof *m->keys)) == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    for (size_t k = 0; k < n; k++) {
        snprintf(kwhat, sizeof kwhat, "%s.keys[%zu]", what, k);
        cli__wkey *x = &m->keys[k];
        cli_err err = key_read(ctx, kwhat, json_object_array_get_idx(a, k), x);
        if (err != CLI_OK)
            return err;
        m->nkeys++;
        if (k + 1 < n && !x->retired)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: key %zu of %s is not retired but a newer key follows (every key but the "
                  "last is retired)"),
                kwhat, k + 1, m->org);
        if (k == 0 && x->notice_hours != 0)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: the first key of %s takes effect at once; \"notice_hours\" is for a new key "
                  "(patto network rekey)"),
                kwhat, m->org);
        if (k + 1 < n && x->notice_hours != 0)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: only the newest key of %s may wait for its first signature"), kwhat, m->org);
        if (k > 0 && x->notice_hours == 0 && x->effective_ms < m->keys[k - 1].effective_ms)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: key %zu of %s takes effect before the key it follows (keys are oldest "
                  "first)"),
                kwhat, k + 1, m->org);
    }
    return CLI_OK;
}

static cli_err member_read(
    cli__ctx *ctx, const char *what, json_object *o, uint64_t version, cli__wmember *m)
{
    if (!json_object_is_type(o, json_type_object))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s must be an object {\"org\", \"name\", \"role\", \"url\", \"keys\"}"), what);
    const char *org, *name, *url;
    json_object *keys;
    cli_err err;
    if ((err = only_keys(ctx, what, o, member_keys, 6)) != CLI_OK
        || (err = org_fields(ctx, what, o, &org, &name, &m->role, &url)) != CLI_OK)
        return err;
    if ((m->org = dup_str(org)) == NULL || (m->name = dup_str(name)) == NULL
        || (m->url = dup_str(url)) == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    if (!json_object_object_get_ex(o, "keys", &keys))
        return cli__fail(ctx, CLI_EINPUT, _("%s: \"keys\" is missing"), what);
    if ((err = keys_read(ctx, what, keys, m)) != CLI_OK)
        return err;
    if (version == 0 && json_object_object_get_ex(o, "since", NULL))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: \"since\" names a signed version, but no version is signed yet"), what);
    err = need_uint(ctx, what, o, "since", 1, version, true, &m->since);
    if (err == CLI_ENOTFOUND)
        m->since = 0;
    else if (err != CLI_OK)
        return err;
    return CLI_OK;
}

static int origin_cmp(const void *a, const void *b)
{
    return memcmp(*(const uint8_t *const *)a, *(const uint8_t *const *)b, PROTO_ORIGIN_LEN);
}

static int org_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Orgs, and origins over all keys of all members, are unique (sorted copies, not pairwise). */
static cli_err unique_check(cli__ctx *ctx, const cli__working *w)
{
    size_t total = 0;
    for (size_t i = 0; i < w->nmembers; i++)
        total += w->members[i].nkeys;
    const char **orgs = calloc(w->nmembers + 1, sizeof *orgs);
    const uint8_t **origins = calloc(total + 1, sizeof *origins);
    cli_err err = CLI_OK;
    if (orgs == NULL || origins == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        goto done;
    }
    for (size_t i = 0, o = 0; i < w->nmembers; i++) {
        orgs[i] = w->members[i].org;
        for (size_t k = 0; k < w->members[i].nkeys; k++)
            origins[o++] = w->members[i].keys[k].origin;
    }
    qsort(orgs, w->nmembers, sizeof *orgs, org_ptr_cmp);
    for (size_t i = 1; i < w->nmembers; i++)
        if (strcmp(orgs[i - 1], orgs[i]) == 0) {
            err = cli__fail(ctx, CLI_EINPUT, _("%s: org %s is listed twice"), w->path, orgs[i]);
            goto done;
        }
    qsort(origins, total, sizeof *origins, origin_cmp);
    for (size_t i = 1; i < total; i++)
        if (memcmp(origins[i - 1], origins[i], PROTO_ORIGIN_LEN) == 0) {
            const char *who[2] = { "?", "?" };
            size_t found = 0;
            for (size_t m = 0; m < w->nmembers && found < 2; m++)
                for (size_t k = 0; k < w->members[m].nkeys && found < 2; k++)
                    if (memcmp(w->members[m].keys[k].origin, origins[i], PROTO_ORIGIN_LEN) == 0)
                        who[found++] = w->members[m].org;
            char hex[2 * PROTO_ORIGIN_LEN + 1];
            proto_hex_encode(origins[i], PROTO_ORIGIN_LEN, hex);
            err = cli__fail(ctx, CLI_EINPUT,
                _("%s: origin key %s is listed twice (%s and %s): every key belongs to one node of "
                  "one org"),
                w->path, hex, who[0], who[1]);
            goto done;
        }
done:
    free(orgs);
    free(origins);
    return err;
}

static cli_err purposes_read(cli__ctx *ctx, json_object *a, cli__working *w)
{
    char what[WHAT_MAX];
    size_t np = json_object_array_length(a);
    if (np > PROTO_MEMBERS_MAX)
        return cli__fail(
            ctx, CLI_EINPUT, _("%s: more than %d purposes"), w->path, PROTO_MEMBERS_MAX);
    for (size_t i = 0; i < np; i++) {
        json_object *p = json_object_array_get_idx(a, i);
        snprintf(what, sizeof what, "%s: purposes[%zu]", w->path, i);
        if (!json_object_is_type(p, json_type_object))
            return cli__fail(
                ctx, CLI_EINPUT, _("%s must be an object {\"id\", \"description\"}"), what);
        const char *id, *desc;
        bool replaced;
        cli_err err;
        if ((err = only_keys(ctx, what, p, purpose_keys, 2)) != CLI_OK
            || (err = need_str(ctx, what, p, "id", &id)) != CLI_OK
            || (err = need_str(ctx, what, p, "description", &desc)) != CLI_OK)
            return err;
        if (!proto_org_valid(id, strlen(id)))
            return cli__fail(
                ctx, CLI_EINPUT, _("%s: purpose id '%s' is not 1-32 of a-z 0-9 -"), what, id);
        if (!proto_text_valid(desc, strlen(desc), PROTO_TEXT_MAX))
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: the description of %s must be 1-%d bytes of text without control "
                  "characters, "
                  "and not only spaces"),
                what, id, PROTO_TEXT_MAX);
        size_t before = w->npurposes;
        if ((err = cli__working_purpose(ctx, w, id, desc, &replaced)) != CLI_OK)
            return err;
        if (replaced || w->npurposes == before)
            return cli__fail(ctx, CLI_EINPUT, _("%s: purpose %s is listed twice"), w->path, id);
    }
    return CLI_OK;
}

static cli_err members_read(cli__ctx *ctx, json_object *a, cli__working *w)
{
    char what[WHAT_MAX];
    size_t nm = json_object_array_length(a);
    if (nm > PROTO_MEMBERS_MAX)
        return cli__fail(ctx, CLI_EINPUT, _("%s: more than %d orgs"), w->path, PROTO_MEMBERS_MAX);
    if (nm > 0 && (w->members = calloc(nm, sizeof *w->members)) == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    for (size_t i = 0; i < nm; i++) {
        snprintf(what, sizeof what, "%s: members[%zu]", w->path, i);
        w->nmembers++; /* released by cli__working_fini whatever member_read reached */
        cli_err err
            = member_read(ctx, what, json_object_array_get_idx(a, i), w->version, &w->members[i]);
        if (err != CLI_OK)
            return err;
    }
    return unique_check(ctx, w);
}

static cli_err working_read(cli__ctx *ctx, json_object *root, cli__working *w)
{
    json_object *members, *purposes;
    cli_err err;
    if (!json_object_is_type(root, json_type_object))
        return cli__fail(ctx, CLI_EINPUT, _("%s must hold a JSON object"), w->path);
    if ((err = only_keys(ctx, w->path, root, top_keys, 6)) != CLI_OK
        || (err = need_uint(ctx, w->path, root, "version", 0, INT64_MAX, false, &w->version))
            != CLI_OK
        || (err = need_hex(ctx, w->path, root, "schema_hash", w->schema_hash, PROTO_HASH_LEN,
                _("the BLAKE2b-256 hash of the schema file")))
            != CLI_OK
        || (err = need_uint(ctx, w->path, root, "max_clock_ahead_ms", CLI__CLOCK_AHEAD_MIN_MS,
                CLI__CLOCK_AHEAD_MAX_MS, false, &w->max_clock_ahead_ms))
            != CLI_OK
        || (err = need_uint(ctx, w->path, root, "counter_limit", 1, CLI__COUNTER_LIMIT_MAX, false,
                &w->counter_limit))
            != CLI_OK)
        return err;
    if (!json_object_object_get_ex(root, "members", &members)
        || !json_object_is_type(members, json_type_array)
        || !json_object_object_get_ex(root, "purposes", &purposes)
        || !json_object_is_type(purposes, json_type_array))
        return cli__fail(
            ctx, CLI_EINPUT, _("%s: \"members\" and \"purposes\" must be arrays"), w->path);
    if ((err = members_read(ctx, members, w)) != CLI_OK)
        return err;
    return purposes_read(ctx, purposes, w);
}

cli_err cli__working_load(cli__ctx *ctx, const char *admin, cli__working *w)
{
    memset(w, 0, sizeof *w);
    char key[4200];
    cli_err err;
    if ((err = set_path(ctx, admin, w)) != CLI_OK
        || (err = cli__path(ctx, key, sizeof key, admin, CLI__ADMIN_KEY)) != CLI_OK)
        return err;
    if (!cli__exists(key))
        return cli__fail(ctx, CLI_ENOTFOUND,
            _("%s is not an admin directory (no %s); create one with patto network init %s"), admin,
            CLI__ADMIN_KEY, admin);
    uint8_t *text;
    size_t len;
    if ((err = cli__read_file(ctx, w->path, CLI__FILE_MAX, &text, &len)) != CLI_OK)
        return err;
    json_object *root = NULL;
    err = cli__json_parse(ctx, w->path, (const char *)text, len, &root);
    free(text);
    if (err == CLI_OK)
        err = working_read(ctx, root, w);
    json_object_put(root);
    if (err != CLI_OK)
        cli__working_fini(w);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Saving                                                                                    */

static json_object *key_json(const cli__wkey *k)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    if (!put(o, "origin", hex_string(k->origin, PROTO_ORIGIN_LEN))
        || !put(o, "box_pk", hex_string(k->box_pk, PROTO_BOX_PK_LEN))
        || !put(o, "effective_ms", json_object_new_uint64(k->effective_ms))
        || !put(o, "retired", json_object_new_boolean(k->retired))
        || !put(o, "last_seq", json_object_new_uint64(k->last_seq))
        || (k->notice_hours != 0
            && !put(o, "notice_hours", json_object_new_uint64(k->notice_hours)))) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *member_json(const cli__wmember *m)
{
    json_object *o = json_object_new_object(), *keys = json_object_new_array();
    if (o == NULL || keys == NULL) {
        json_object_put(o);
        json_object_put(keys);
        return NULL;
    }
    for (size_t k = 0; k < m->nkeys; k++) {
        json_object *x = key_json(&m->keys[k]);
        if (x == NULL || json_object_array_add(keys, x) != 0) {
            json_object_put(x);
            json_object_put(keys);
            json_object_put(o);
            return NULL;
        }
    }
    if (!put(o, "org", json_object_new_string(m->org))
        || !put(o, "name", json_object_new_string(m->name))
        || !put(o, "role", json_object_new_string(proto_role_name(m->role)))
        || !put(o, "url", json_object_new_string(m->url)) || !put(o, "keys", keys)
        || (m->since != 0 && !put(o, "since", json_object_new_uint64(m->since)))) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *working_json(const cli__working *w)
{
    json_object *root = json_object_new_object(), *members = json_object_new_array(),
                *purposes = json_object_new_array();
    bool ok = root != NULL && members != NULL && purposes != NULL;
    for (size_t i = 0; ok && i < w->nmembers; i++) {
        json_object *m = member_json(&w->members[i]);
        ok = m != NULL && json_object_array_add(members, m) == 0;
        if (!ok)
            json_object_put(m);
    }
    for (size_t i = 0; ok && i < w->npurposes; i++) {
        json_object *p = json_object_new_object();
        ok = p != NULL && put(p, "id", json_object_new_string(w->purposes[i].id))
            && put(p, "description", json_object_new_string(w->purposes[i].description))
            && json_object_array_add(purposes, p) == 0;
        if (!ok)
            json_object_put(p);
    }
    if (!ok) {
        json_object_put(root);
        json_object_put(members);
        json_object_put(purposes);
        return NULL;
    }
    if (!put(root, "version", json_object_new_uint64(w->version))
        || !put(root, "schema_hash", hex_string(w->schema_hash, PROTO_HASH_LEN))
        || !put(root, "max_clock_ahead_ms", json_object_new_uint64(w->max_clock_ahead_ms))
        || !put(root, "counter_limit", json_object_new_uint64(w->counter_limit))) {
        json_object_put(root);
        json_object_put(members);
        json_object_put(purposes);
        return NULL;
    }
    if (!put(root, "members", members)) { /* put consumed members */
        json_object_put(root);
        json_object_put(purposes);
        return NULL;
    }
    if (!put(root, "purposes", purposes)) {
        json_object_put(root);
        return NULL;
    }
    return root;
}

cli_err cli__working_save(cli__ctx *ctx, cli__working *w, bool exclusive)
{
    cli__working_sort(w);
    json_object *root = working_json(w);
    if (root == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    const char *s = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = s != NULL ? strlen(s) : 0;
    char *text = s != NULL ? malloc(n + 2) : NULL;
    cli_err err;
    if (text == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    } else {
        memcpy(text, s, n);
        text[n] = '\n';
        err = cli__write_file(ctx, w->path, text, n + 1, 0644, exclusive);
    }
    free(text);
    json_object_put(root);
    return err;
}
