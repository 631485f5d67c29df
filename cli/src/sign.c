/*
 * sign.c - `patto network sign`: the working manifest (working.c) signed with the network admin
 * key as its next version, at the time of signing: new keys get their effective time (signed_at
 * plus their notice), new members their `since`, and the options are kept for later signatures.
 */
#include "working.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------- */
/* network sign                                                                              */

static cli_err admin_identity(cli__ctx *ctx, const char *admin, proto_identity **out)
{
    char key[4200], pub[4200];
    cli_err err;
    if ((err = cli__path(ctx, key, sizeof key, admin, CLI__ADMIN_KEY)) != CLI_OK
        || (err = cli__path(ctx, pub, sizeof pub, admin, CLI__ADMIN_PUB)) != CLI_OK)
        return err;
    uint8_t *seeds = NULL, *pubtext = NULL;
    size_t len = 0, publen = 0;
    if ((err = cli__read_file(ctx, key, 4096, &seeds, &len)) != CLI_OK)
        return err;
    if (len != 2 * PROTO_SEED_LEN) {
        err = cli__fail(ctx, CLI_EINPUT,
            _("%s is not a network admin key (%d bytes expected, found %zu)"), key,
            2 * PROTO_SEED_LEN, len);
        goto done;
    }
    if (proto_init() != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot initialise the crypto library"));
        goto done;
    }
    proto_err perr = proto_identity_from_seeds(seeds, seeds + PROTO_SEED_LEN, out);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot load %s: %s"), key, proto_strerror(perr));
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
            _("%s does not hold the public key of %s; the admin directory is damaged"), pub, key);
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

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The manifest to sign: w's members (sorted) and their keys, new keys effective signed_at +
 * their notice. Arrays owned by the caller (free). Errors: CLI_EINPUT (a new key that would
 * take effect before the key it follows), CLI_EINTERNAL. */
typedef struct sign_arrays {
    proto_member *members;
    proto_member_key *keys;
    proto_purpose *purposes;
} sign_arrays;

static cli_err sign_build(
    cli__ctx *ctx, const cli__working *w, uint64_t signed_at, proto_manifest *m, sign_arrays *a)
{
    size_t total = 0;
    for (size_t i = 0; i < w->nmembers; i++)
        total += w->members[i].nkeys;
    a->members = calloc(w->nmembers + 1, sizeof *a->members);
    a->keys = calloc(total + 1, sizeof *a->keys);
    a->purposes = calloc(w->npurposes + 1, sizeof *a->purposes);
    if (a->members == NULL || a->keys == NULL || a->purposes == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    for (size_t i = 0, o = 0; i < w->nmembers; i++) {
        const cli__wmember *wm = &w->members[i];
        a->members[i] = (proto_member) {
            .org = { (const uint8_t *)wm->org, strlen(wm->org) },
            .name = { (const uint8_t *)wm->name, strlen(wm->name) },
            .role = (uint8_t)wm->role,
            .url = { (const uint8_t *)wm->url, strlen(wm->url) },
            .keys = &a->keys[o],
            .nkeys = wm->nkeys,
        };
        for (size_t k = 0; k < wm->nkeys; k++, o++) {
            const cli__wkey *x = &wm->keys[k];
            proto_member_key *y = &a->keys[o];
            memcpy(y->origin, x->origin, PROTO_ORIGIN_LEN);
            memcpy(y->box_pk, x->box_pk, PROTO_BOX_PK_LEN);
            y->effective_ms = x->notice_hours != 0 ? signed_at + x->notice_hours * CLI__HOUR_MS
                                                   : x->effective_ms;
            y->retired = x->retired;
            y->last_seq = x->last_seq;
            if (k > 0 && y->effective_ms < y[-1].effective_ms) {
                char at[CLI_TIME_TEXT_SIZE] = "?";
                cli_rome_time_ms(y[-1].effective_ms, at, sizeof at);
                return cli__fail(ctx, CLI_EINPUT,
                    _("the new key of %s would take effect before its previous key (at %s): give "
                      "it a longer notice with patto network rekey ... --notice-hours H"),
                    wm->org, at);
            }
        }
    }
    for (size_t i = 0; i < w->npurposes; i++)
        a->purposes[i] = (proto_purpose) {
            .id = { (const uint8_t *)w->purposes[i].id, strlen(w->purposes[i].id) },
            .description
            = { (const uint8_t *)w->purposes[i].description, strlen(w->purposes[i].description) },
        };
    *m = (proto_manifest) {
        .version = w->version + 1,
        .signed_at_ms = signed_at,
        .max_clock_ahead_ms = w->max_clock_ahead_ms,
        .counter_limit = w->counter_limit,
        .members = a->members,
        .nmembers = w->nmembers,
        .purposes = a->purposes,
        .npurposes = w->npurposes,
    };
    memcpy(m->schema_hash, w->schema_hash, PROTO_HASH_LEN);
    return CLI_OK;
}

/* What signing made true in the working manifest: new keys' effective times, `since` of new
 * members, the version. */
static void sign_record(cli__working *w, const proto_manifest *m)
{
    for (size_t i = 0; i < w->nmembers; i++) {
        cli__wmember *wm = &w->members[i];
        for (size_t k = 0; k < wm->nkeys; k++) {
            wm->keys[k].effective_ms = m->members[i].keys[k].effective_ms;
            wm->keys[k].notice_hours = 0;
        }
        if (wm->since == 0)
            wm->since = m->version;
    }
    w->version = m->version;
}

/* The human lines and JSON of the keys that this signature gives an effective time. */
static cli_err sign_new_keys(cli__ctx *ctx, const cli__working *w, const proto_manifest *m,
    json_object *list, char *human, size_t n)
{
    size_t used = strlen(human);
    for (size_t i = 0; i < w->nmembers; i++) {
        const cli__wkey *x = cli__wmember_current(&w->members[i]);
        if (x->notice_hours == 0)
            continue;
        uint64_t at = m->members[i].keys[w->members[i].nkeys - 1].effective_ms;
        char when[CLI_TIME_TEXT_SIZE] = "?";
        cli_rome_time_ms(at, when, sizeof when);
        if (used < n)
            used += (size_t)snprintf(human + used, n - used,
                _("\nthe new key of %s takes effect at %s (%" PRIu64 " h notice)"),
                w->members[i].org, when, x->notice_hours);
        json_object *o = json_object_new_object();
        cli_err err;
        if (o == NULL || json_object_array_add(list, o) != 0) {
            json_object_put(o);
            return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        }
        if ((err = cli__jadd_str(ctx, o, "org", w->members[i].org)) != CLI_OK
            || (err = cli__jadd_u64(ctx, o, "effective_ms", at)) != CLI_OK)
            return err;
    }
    return CLI_OK;
}

cli_err cli__network_sign(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *outfile = NULL, *clock_text = NULL, *counter_text = NULL;
    const cli__opt opts[] = { { "out", &outfile, NULL },
        { "max-clock-ahead-ms", &clock_text, NULL }, { "counter-limit", &counter_text, NULL } };
    const char *pos[1];
    size_t n;
    uint64_t clock_ahead = 0, counter_limit = 0;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 3, pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (outfile == NULL)
        return cli__usage(ctx, cmd, _("--out FILE is required"));
    if ((clock_text != NULL
            && (err = cli__parse_u64(ctx, cmd, "max-clock-ahead-ms", clock_text,
                    CLI__CLOCK_AHEAD_MIN_MS, CLI__CLOCK_AHEAD_MAX_MS, &clock_ahead))
                != CLI_OK)
        || (counter_text != NULL
            && (err = cli__parse_u64(ctx, cmd, "counter-limit", counter_text, 1,
                    CLI__COUNTER_LIMIT_MAX, &counter_limit))
                != CLI_OK))
        return err;
    cli__working w;
    if ((err = cli__working_load(ctx, pos[0], &w)) != CLI_OK)
        return err;
    if (clock_text != NULL)
        w.max_clock_ahead_ms = clock_ahead;
    if (counter_text != NULL)
        w.counter_limit = counter_limit;
    proto_identity *admin = NULL;
    sign_arrays a = { NULL, NULL, NULL };
    proto_buf signed_bytes = { NULL, 0 };
    json_object *out = NULL, *new_keys = NULL;
    proto_manifest m;
    uint64_t signed_at = wall_ms();
    cli__working_sort(&w); /* as proto requires; saved in the same order */
    if ((err = admin_identity(ctx, pos[0], &admin)) != CLI_OK
        || (err = sign_build(ctx, &w, signed_at, &m, &a)) != CLI_OK)
        goto done;
    proto_err perr = proto_manifest_sign(&m, admin, &signed_bytes);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, perr == PROTO_EVALUE ? CLI_EINPUT : CLI_EINTERNAL,
            _("cannot sign the manifest in %s: %s"), w.path, proto_strerror(perr));
        goto done;
    }
    char human[CLI__HUMAN_MAX], when[CLI_TIME_TEXT_SIZE] = "?";
    cli_rome_time_ms(signed_at, when, sizeof when);
    char orgs[64], purposes[64];
    snprintf(orgs, sizeof orgs, P_("%zu org", "%zu orgs", w.nmembers), w.nmembers);
    snprintf(
        purposes, sizeof purposes, P_("%zu purpose", "%zu purposes", w.npurposes), w.npurposes);
    snprintf(human, sizeof human,
        _("manifest version %" PRIu64 " signed at %s (%s, %s) and written to %s; hand it to "
          "every node with patto manifest import %s"),
        m.version, when, orgs, purposes, outfile, outfile);
    if ((out = cli__result_new(ctx)) == NULL || (new_keys = json_object_new_array()) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        goto done;
    }
    if ((err = sign_new_keys(ctx, &w, &m, new_keys, human, sizeof human)) != CLI_OK)
        goto done;
    /*
     * Record the new version before writing FILE: if writing FILE fails, the next signature
     * skips a number, which nodes accept; the other order could sign two different manifests
     * with one version number, and a node would keep whichever reached it first.
     */
    sign_record(&w, &m);
    if ((err = cli__working_save(ctx, &w, false)) != CLI_OK
        || (err = cli__write_file(ctx, outfile, signed_bytes.p, signed_bytes.len, 0644, false))
            != CLI_OK)
        goto done;
    if ((err = cli__jadd_u64(ctx, out, "version", w.version)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "signed_at_ms", signed_at)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "members", w.nmembers)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "purposes", w.npurposes)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "max_clock_ahead_ms", w.max_clock_ahead_ms)) == CLI_OK
        && (err = cli__jadd_u64(ctx, out, "counter_limit", w.counter_limit)) == CLI_OK
        && (err = cli__jadd(ctx, out, "new_keys", json_object_get(new_keys))) == CLI_OK
        && (err = cli__jadd_str(ctx, out, "out", outfile)) == CLI_OK)
        err = cli__result_print(ctx, out, human);
done:
    json_object_put(new_keys);
    json_object_put(out);
    proto_buf_free(&signed_bytes);
    free(a.members);
    free(a.keys);
    free(a.purposes);
    proto_identity_free(admin);
    cli__working_fini(&w);
    return err;
}
