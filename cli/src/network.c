/*
 * network.c - the network admin's commands but sign (sign.c), all local: the admin key and the
 * working manifest in an admin directory (cli/README.md, "The admin directory").
 *
 * Membership over time (proto.h, "Network manifest"): once a manifest has listed an org, every
 * later one lists it with every origin key it has had. So an org is changed (add with its own
 * key), given a new key (rekey: its current key is retired after a header number, the new key
 * takes effect a notice period after signing), or let go (retire); only an org never signed is
 * removed. The working manifest itself is read, checked and written by working.c.
 */
#include "working.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first 16 hex digits of a key, as people compare keys by eye. */
static void key_short(const uint8_t *key, char out[17])
{
    char hex[2 * PROTO_ORIGIN_LEN + 1];
    proto_hex_encode(key, PROTO_ORIGIN_LEN, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* network init                                                                              */

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
        err = cli__fail(ctx, CLI_EINPUT,
            _("%s is not a record schema (no \"scopes\"; see node/SCHEMA.md)"), path);
    json_object_put(o);
    if (err != CLI_OK) {
        free(bytes);
        return err;
    }
    proto_schema_hash(bytes, *len, hash);
    *out = bytes;
    return CLI_OK;
}

/* The refusals of network init, before anything is written. */
static cli_err init_refuse(
    cli__ctx *ctx, const char *admin, const char *key, const char *pub, const char *man)
{
    if (cli__exists(key))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s already holds a network admin key (%s); refusing to replace it"), admin, key);
    if (cli__exists(pub) || cli__exists(man))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s already holds %s or manifest.json; use an empty or new directory"), admin,
            CLI__ADMIN_PUB);
    static const char *const node_marks[] = { CLI__NODE_CONF, CLI__NODE_KEY };
    char node[4200];
    const char *mark;
    if (cli__inside(admin, node_marks, 2, node, sizeof node, &mark))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s is in the data directory of a node, %s (it holds %s): the network admin key "
              "never enters a node; create the admin directory outside it"),
            admin, node, mark);
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
        || (err = cli__path(ctx, pub, sizeof pub, admin, CLI__ADMIN_PUB)) != CLI_OK
        || (err = cli__path(ctx, man, sizeof man, admin, "manifest.json")) != CLI_OK
        || (err = init_refuse(ctx, admin, key, pub, man)) != CLI_OK)
        return err;
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
        return cli__fail(ctx, CLI_EINTERNAL, _("cannot initialise the crypto library: %s"),
            proto_strerror(PROTO_ECRYPTO));

    bool made_dir = false, wrote_key = false, wrote_pub = false;
    proto_identity *id = NULL;
    json_object *out = NULL;
    cli__working w;
    memset(&w, 0, sizeof w);
    uint8_t seeds[2 * PROTO_SEED_LEN];
    char hex[2 * PROTO_ORIGIN_LEN + 2];
    if (mkdir(admin, 0700) == 0) {
        made_dir = true;
    } else if (errno != EEXIST) {
        return cli__fail(ctx, CLI_EINPUT, _("cannot create %s: %s"), admin, strerror(errno));
    }
    /* The admin key must be the admin's alone, whatever the umask or an existing directory. */
    if (chmod(admin, 0700) != 0) {
        err = cli__fail(
            ctx, CLI_EINPUT, _("cannot make %s private (mode 0700): %s"), admin, strerror(errno));
        goto fail;
    }
    proto_err perr = proto_identity_new(NULL, &id);
    if (perr != PROTO_OK) {
        err = cli__fail(
            ctx, CLI_EINTERNAL, _("cannot make the admin key: %s"), proto_strerror(perr));
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
    if ((err = cli__working_new(ctx, admin, hash, &w)) != CLI_OK
        || (err = cli__working_save(ctx, &w, true)) != CLI_OK)
        goto fail;

    char hash_hex[2 * PROTO_HASH_LEN + 1];
    proto_hex_encode(hash, PROTO_HASH_LEN, hash_hex);
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX];
    snprintf(human, sizeof human,
        _("%s\nnetwork admin key written to %s; give the public key above (also in %s) to "
          "every partner for patto init --admin-pub"),
        hex, key, pub);
    if ((err = cli__jadd_str(ctx, out, "admin_pub", hex)) == CLI_OK
        && (err = cli__jadd_str(ctx, out, "dir", admin)) == CLI_OK
        && (err = cli__jadd_str(ctx, out, "schema_hash", hash_hex)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
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
    cli__working_fini(&w);
    proto_identity_free(id);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading a member entry                                                                    */

/* The entry file at path, parsed (*json owned) and checked (*m borrows from *json). */
static cli_err entry_load(cli__ctx *ctx, const char *path, json_object **json, cli__member *m)
{
    uint8_t *text = NULL;
    size_t len;
    *json = NULL;
    cli_err err;
    if ((err = cli__read_file(ctx, path, CLI__FILE_MAX, &text, &len)) == CLI_OK
        && (err = cli__json_parse(ctx, path, (const char *)text, len, json)) == CLI_OK)
        err = cli__entry_read(ctx, path, *json, m);
    free(text);
    return err;
}

/* Refuse an entry whose origin or box key any org has had, saying whose and what to do (a
 * caller that accepts an org's own current key, as `network add` does, checks it first). */
static cli_err keys_unused(
    cli__ctx *ctx, const cli__working *w, const char *path, const cli__member *e)
{
    const cli__wkey *k;
    const cli__wmember *o = cli__working_key_user(w, e->origin, e->box_pk, &k);
    if (o == NULL)
        return CLI_OK;
    bool same_origin = memcmp(k->origin, e->origin, PROTO_ORIGIN_LEN) == 0;
    if (strcmp(o->org, e->org) != 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("the %s key of %s in %s is already a key of member %s; every node needs its own keys "
              "(patto init)"),
            same_origin ? "origin" : "box_pk", e->org, path, o->org);
    if (k != cli__wmember_current(o))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s holds a key %s had before (retired after header %" PRIu64
              "): a retired key never comes back; the node needs new keys (patto init)"),
            path, o->org, k->last_seq);
    return cli__fail(ctx, CLI_EINPUT,
        _("%s holds the current key of %s: a new key comes from a new identity (patto init of the "
          "node that takes over)"),
        path, o->org);
}

/* The org of an entry or an argument: a member that is still in the network. */
static cli_err member_in_network(cli__ctx *ctx, const cli__working *w, const char *admin,
    const char *org, const char *cmd, cli__wmember **out)
{
    cli__wmember *m = cli__working_find(w, org);
    if (m == NULL)
        return cli__fail(ctx, CLI_ENOTFOUND,
            _("%s is not a member in %s; add it with patto network add %s ENTRY.json"), org,
            w->path, admin);
    if (m->since == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s was never in a signed manifest, so no node knows its key yet: remove it with "
              "patto network remove %s %s%s"),
            org, admin, org, strcmp(cmd, "rekey") == 0 ? _(", then add its new entry") : "");
    if (!cli__wmember_active(m))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s has left the network (its key is retired after header %" PRIu64
              "): an org id is never used again"),
            org, cli__wmember_current(m)->last_seq);
    *out = m;
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* network add                                                                               */

/* The same org again: its own current key updates name, role and url; anything else is
 * refused with the command that does it. */
static cli_err add_again(cli__ctx *ctx, cli__working *w, const char *admin, const char *path,
    cli__wmember *o, const cli__member *e)
{
    cli__wkey *cur = cli__wmember_current(o);
    if (!cli__wmember_active(o))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s has left the network (its key is retired after header %" PRIu64
              "): an org id is never used again; give the node a new org id"),
            o->org, cur->last_seq);
    if (memcmp(cur->origin, e->origin, PROTO_ORIGIN_LEN) == 0) {
        if (memcmp(cur->box_pk, e->box_pk, PROTO_BOX_PK_LEN) != 0)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s has the origin key of %s but another box_pk: an origin key has one box key; "
                  "take the entry the node's patto init printed"),
                path, o->org);
        return cli__wmember_update(ctx, o, e);
    }
    for (size_t k = 0; k + 1 < o->nkeys; k++)
        if (memcmp(o->keys[k].origin, e->origin, PROTO_ORIGIN_LEN) == 0)
            return keys_unused(ctx, w, path, e);
    if (o->since == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s is already in %s with another origin key, and no manifest has signed it yet: "
              "to replace its entry, first run patto network remove %s %s"),
            o->org, w->path, admin, o->org);
    return cli__fail(ctx, CLI_EINPUT,
        _("%s is already a member with another origin key (in signed manifest version %" PRIu64
          "): to give it this node's key, run patto network rekey %s %s --last-seq N (N: the seq "
          "of "
          "%s's own origin that its node shows in patto status)"),
        o->org, o->since, admin, path, o->org);
}

cli_err cli__network_add(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    json_object *entry = NULL, *out = NULL;
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    cli__member e;
    if ((err = entry_load(ctx, pos[1], &entry, &e)) != CLI_OK)
        goto done;
    cli__wmember *o = cli__working_find(&w, e.org);
    bool updated = o != NULL;
    if (o != NULL)
        err = add_again(ctx, &w, pos[0], pos[1], o, &e);
    else if ((err = keys_unused(ctx, &w, pos[1], &e)) == CLI_OK)
        err = cli__working_add(ctx, &w, &e);
    if (err != CLI_OK || (err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX];
    snprintf(human, sizeof human,
        updated ? P_("%s (%s) updated (name, role and url) in %s (%zu org); sign a new version "
                     "with patto network sign %s --out FILE",
            "%s (%s) updated (name, role and url) in %s (%zu orgs); sign a new version "
            "with patto network sign %s --out FILE",
            w.nmembers)
                : P_("%s (%s) added to %s (%zu org); sign a new version with patto network sign "
                     "%s --out FILE",
                    "%s (%s) added to %s (%zu orgs); sign a new version with patto network "
                    "sign %s --out FILE",
                    w.nmembers),
        e.org, proto_role_name(e.role), w.path, w.nmembers, pos[0]);
    if ((err = cli__jadd_str(ctx, out, "org", e.org)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "members", w.nmembers)) == CLI_OK
        && (err = cli__jadd(ctx, out, "updated", json_object_new_boolean(updated))) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    json_object_put(entry);
    cli__working_fini(&w);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* network rekey, retire                                                                     */

cli_err cli__network_rekey(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *seq_text = NULL, *hours_text = NULL;
    const cli__opt opts[]
        = { { "last-seq", &seq_text, NULL }, { "notice-hours", &hours_text, NULL } };
    const char *pos[2];
    size_t n;
    uint64_t last_seq, hours = CLI__NOTICE_HOURS_DEFAULT;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 2, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    if (seq_text == NULL)
        return cli__usage(ctx, cmd,
            _("--last-seq N is required (N: the seq of the org's own origin that its node shows "
              "in patto status)"));
    if ((err = cli__parse_u64(ctx, cmd, "last-seq", seq_text, 0, INT64_MAX, &last_seq)) != CLI_OK
        || (hours_text != NULL
            && (err = cli__parse_u64(
                    ctx, cmd, "notice-hours", hours_text, 1, CLI__NOTICE_HOURS_MAX, &hours))
                != CLI_OK))
        return err;
    json_object *entry = NULL, *out = NULL;
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    cli__member e;
    cli__wmember *m;
    if ((err = entry_load(ctx, pos[1], &entry, &e)) != CLI_OK
        || (err = member_in_network(ctx, &w, pos[0], e.org, "rekey", &m)) != CLI_OK
        || (err = keys_unused(ctx, &w, pos[1], &e)) != CLI_OK)
        goto done;
    cli__wkey next = { .notice_hours = hours };
    memcpy(next.origin, e.origin, PROTO_ORIGIN_LEN);
    memcpy(next.box_pk, e.box_pk, PROTO_BOX_PK_LEN);
    cli__wkey *cur = cli__wmember_current(m);
    /* A new key no manifest has signed yet is replaced, with the retirement that came with it
     * (neither is signed): the last signed key is retired after the header given now. */
    bool replaced = cur->notice_hours != 0;
    if (replaced) {
        *cur = next;
        m->keys[m->nkeys - 2].last_seq = last_seq;
    } else {
        if ((err = cli__wmember_push_key(ctx, m, &next)) != CLI_OK)
            goto done;
        m->keys[m->nkeys - 2].retired = true;
        m->keys[m->nkeys - 2].last_seq = last_seq;
    }
    if ((err = cli__wmember_update(ctx, m, &e)) != CLI_OK
        || (err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX], old[17], neu[17];
    key_short(m->keys[m->nkeys - 2].origin, old);
    key_short(e.origin, neu);
    snprintf(human, sizeof human,
        _("%s: key %s... retired after header %" PRIu64 "; new key %s...%s takes effect %" PRIu64
          " h after the next patto network sign %s --out FILE. Every node refuses a manifest "
          "whose new key takes effect sooner than its [network] rekey_notice_hours (default %u) "
          "after signing, and alerts its operators.%s"),
        e.org, old, last_seq, neu, replaced ? _(" (replacing the one not signed yet)") : "", hours,
        pos[0], CLI__NOTICE_HOURS_DEFAULT,
        hours < CLI__NOTICE_HOURS_DEFAULT
            ? _(" With less than 72 h, nodes with the default [network] rekey_notice_hours (72) "
                "refuse it: only for test networks.")
            : "");
    if ((err = cli__jadd_str(ctx, out, "org", e.org)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "keys", m->nkeys)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "last_seq", last_seq)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "notice_hours", hours)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    json_object_put(entry);
    cli__working_fini(&w);
    return err;
}

cli_err cli__network_retire(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *seq_text = NULL;
    const cli__opt opts[] = { { "last-seq", &seq_text, NULL } };
    const char *pos[2];
    size_t n;
    uint64_t last_seq;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    if (seq_text == NULL)
        return cli__usage(ctx, cmd,
            _("--last-seq N is required (N: the seq of the org's own origin that its node shows "
              "in patto status)"));
    if ((err = cli__parse_u64(ctx, cmd, "last-seq", seq_text, 0, INT64_MAX, &last_seq)) != CLI_OK)
        return err;
    const char *org = pos[1];
    if (!proto_org_valid(org, strlen(org)))
        return cli__fail(ctx, CLI_EINPUT, _("'%s' is not an org id (1-32 of a-z 0-9 -)"), org);
    json_object *out = NULL;
    cli__working w;
    cli__wmember *m;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    if ((err = member_in_network(ctx, &w, pos[0], org, "retire", &m)) != CLI_OK)
        goto done;
    /* A new key not signed yet goes: the org leaves with its last signed key. */
    bool dropped = cli__wmember_current(m)->notice_hours != 0;
    if (dropped)
        m->nkeys--;
    cli__wkey *cur = cli__wmember_current(m);
    cur->retired = true;
    cur->last_seq = last_seq;
    if ((err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX];
    snprintf(human, sizeof human,
        _("%s leaves the network: its key is retired after header %" PRIu64
          "%s; nodes refuse its later headers once the next manifest is signed (patto network "
          "sign %s --out FILE). It stays listed, and its org id is never used again. Removing a "
          "member entirely (new keys for the scopes it held) is not built yet."),
        org, last_seq, dropped ? _(" (its new key, not signed yet, is dropped)") : "", pos[0]);
    if ((err = cli__jadd_str(ctx, out, "org", org)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "last_seq", last_seq)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "members", w.nmembers)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    cli__working_fini(&w);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* network remove, purpose                                                                   */

cli_err cli__network_remove(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    const char *org = pos[1];
    if (!proto_org_valid(org, strlen(org)))
        return cli__fail(ctx, CLI_EINPUT, _("'%s' is not an org id (1-32 of a-z 0-9 -)"), org);
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    json_object *out = NULL;
    cli__wmember *m = cli__working_find(&w, org);
    if (m == NULL) {
        err = cli__fail(ctx, CLI_ENOTFOUND, _("%s is not a member in %s"), org, w.path);
        goto done;
    }
    if (m->since != 0) {
        err = cli__fail(ctx, CLI_EINPUT,
            _("%s is in signed manifest version %" PRIu64
              ": an org stays listed for ever; retire it with patto network retire %s %s "
              "--last-seq N"),
            org, m->since, pos[0], org);
        goto done;
    }
    cli__working_remove(&w, (size_t)(m - w.members));
    if ((err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX];
    snprintf(human, sizeof human,
        P_("%s removed from %s (%zu org left); no manifest had signed it. Sign a new version "
           "with patto network sign %s --out FILE",
            "%s removed from %s (%zu orgs left); no manifest had signed it. Sign a new version "
            "with patto network sign %s --out FILE",
            w.nmembers),
        org, w.path, w.nmembers, pos[0]);
    if ((err = cli__jadd_str(ctx, out, "org", org)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "members", w.nmembers)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    cli__working_fini(&w);
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
        return cli__fail(ctx, CLI_EINPUT, _("purpose id '%s' is not 1-32 of a-z 0-9 -"), id);
    if (!proto_text_valid(text, strlen(text), PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            _("the description of %s must be 1-%d bytes of text without control characters, and "
              "not only spaces"),
            id, PROTO_TEXT_MAX);
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    json_object *out = NULL;
    bool replaced;
    if ((err = cli__working_purpose(ctx, &w, id, text, &replaced)) != CLI_OK
        || (err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char human[CLI__HUMAN_MAX];
    snprintf(human, sizeof human,
        replaced ? P_("purpose %s replaced in %s (%zu purpose)",
            "purpose %s replaced in %s (%zu purposes)", w.npurposes)
                 : P_("purpose %s added in %s (%zu purpose)",
                     "purpose %s added in %s (%zu purposes)", w.npurposes),
        id, w.path, w.npurposes);
    if ((err = cli__jadd_str(ctx, out, "id", id)) == CLI_OK
        && (err = cli__jadd_str(ctx, out, "description", text)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "purposes", w.npurposes)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    cli__working_fini(&w);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* network schema                                                                            */

cli_err cli__network_schema(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 2, 2, &n);
    if (err != CLI_OK)
        return err;
    uint8_t hash[PROTO_HASH_LEN], *bytes = NULL;
    size_t len;
    if ((err = cli__schema_read(ctx, pos[1], &bytes, &len, hash)) != CLI_OK)
        return err;
    free(bytes);
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    json_object *out = NULL;
    bool same = memcmp(w.schema_hash, hash, PROTO_HASH_LEN) == 0;
    memcpy(w.schema_hash, hash, PROTO_HASH_LEN);
    if (!same && (err = cli__working_save(ctx, &w, false)) != CLI_OK)
        goto done;
    if ((out = cli__result_new(ctx)) == NULL) {
        err = CLI_EINTERNAL;
        goto done;
    }
    char hex[2 * PROTO_HASH_LEN + 1], human[CLI__HUMAN_MAX];
    proto_hex_encode(hash, PROTO_HASH_LEN, hex);
    snprintf(human, sizeof human,
        same ? _("%s already names schema %.16s (%s)")
             : _("%s now names schema %.16s (%s): give every node that file as its schema file "
                 "before it gets the next signed manifest; nodes refuse a schema that narrows "
                 "the one in force"),
        w.path, hex, pos[1]);
    if ((err = cli__jadd_str(ctx, out, "schema_hash", hex)) == CLI_OK
        && (err = cli__jadd_str(ctx, out, "changed", same ? "no" : "yes")) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(out);
    cli__working_fini(&w);
    return err;
}
