/*
 * The node's state on the loop thread: the manifest in force and the member table, and the
 * in-memory lists of what it waits for (headers held out of order, bodies held but not merged,
 * bodies lacked), with their indexes. May call: ledger.c, store.c, proto; the host (for the
 * want timer). Called by every file above it.
 */
#include "core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOCK_WINDOW_MS 600000

void node__clock_sample(node_member *m, uint64_t wall_ms, uint64_t now_ms, uint64_t mono_ms)
{
    int64_t s = wall_ms >= now_ms ? (int64_t)(wall_ms - now_ms) : -(int64_t)(now_ms - wall_ms);
    if (m->clock_sampled_ms == 0 || s > m->clock_offset_ms
        || mono_ms - m->clock_sampled_ms >= CLOCK_WINDOW_MS) {
        m->clock_offset_ms = s;
        m->clock_sampled_ms = mono_ms;
    }
}

node_member *node__member_by_origin(node_engine *e, const uint8_t origin[32])
{
    for (size_t i = 0; i < e->nmembers; i++)
        if (e->members[i].active && memcmp(e->members[i].origin, origin, 32) == 0)
            return &e->members[i];
    return NULL;
}

node_member *node__author(node_engine *e, const uint8_t origin[32], const proto_member_key **key)
{
    size_t ki;
    const proto_member *pm
        = e->have_manifest ? proto_manifest_find(&e->manifest, origin, &ki) : NULL;
    if (pm == NULL)
        return NULL;
    if (key != NULL)
        *key = &pm->keys[ki];
    return &e->members[pm - e->manifest.members];
}

const char *node__header_admitted(node_engine *e, const proto_header *h, node_member **m)
{
    const proto_member_key *k;
    *m = node__author(e, h->origin, &k);
    if (*m == NULL)
        return "not a member";
    if (k->retired && h->seq > k->last_seq)
        return "beyond the retirement of its key";
    if (h->hlc.wall < k->effective_ms)
        return "stamped before its key took effect";
    return NULL;
}

node_err node__own_log_settled(node_engine *e, node_errmsg *msg)
{
    for (size_t i = 0; i < e->nmembers; i++) {
        const node_member *m = &e->members[i];
        if (m->self || !m->active || m->pipe == 0)
            continue;
        if (!m->vv_seen)
            return node__fail(msg, NODE_EIO,
                "%s has just connected and has not told yet what it holds of this node's log "
                "(checked once after each start): retry in a moment",
                m->org);
        if (m->own_claim > e->own_seq && !m->own_disbelieved) {
            NODE_WARN("own.behind",
                "org=%s seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"write refused until the "
                "peer's copy of this node's log is back\"",
                m->org, m->own_claim, e->own_seq);
            return node__fail(msg, NODE_EIO,
                "%s holds this node's log up to %" PRIu64 " but this node only up to %" PRIu64
                " (restored from an older copy?): retry once it has synced",
                m->org, m->own_claim, e->own_seq);
        }
    }
    return NODE_OK;
}

uint64_t node__clock_ahead_ms(const node_engine *e)
{
    return e->have_manifest ? e->manifest.max_clock_ahead_ms : PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS;
}

node_member *node__member_by_org(node_engine *e, const char *org)
{
    for (size_t i = 0; i < e->nmembers; i++)
        if (strcmp(e->members[i].org, org) == 0)
            return &e->members[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Manifest                                                                                  */

/* Rebuild the member table from the current manifest, keeping what is known of members that
 * stay (their dialer, link and version vector). */
node_err node__members_rebuild(node_engine *e)
{
    node_member *next = calloc(e->manifest.nmembers ? e->manifest.nmembers : 1, sizeof(*next));
    if (next == NULL)
        return NODE_ENOMEM;
    for (size_t i = 0; i < e->manifest.nmembers; i++) {
        const proto_member *m = &e->manifest.members[i];
        const proto_member_key *cur = proto_member_current(m);
        node_member *nm = &next[i];
        size_t ol = m->org.len < PROTO_ORG_MAX ? m->org.len : PROTO_ORG_MAX;
        memcpy(nm->org, m->org.p, ol);
        size_t ul = m->url.len < NODE_URL_MAX ? m->url.len : NODE_URL_MAX;
        memcpy(nm->url, m->url.p, ul);
        nm->role = m->role;
        memcpy(nm->origin, cur->origin, 32);
        memcpy(nm->box_pk, cur->box_pk, 32);
        nm->active = proto_member_active(m);
        nm->self = memcmp(cur->origin, proto_identity_origin(e->me), 32) == 0;
        /* What is known of a member that stays with the same key (a re-keyed one starts
         * anew: its old links and dialer go below). */
        node_member *old = NULL;
        for (size_t k = 0; k < e->nmembers && old == NULL; k++)
            if (memcmp(e->members[k].origin, cur->origin, 32) == 0 && nm->active)
                old = &e->members[k];
        if (old != NULL) {
            nm->dialer = old->dialer;
            nm->pipe = old->pipe;
            nm->last_heard_ms = old->last_heard_ms;
            nm->clock_offset_ms = old->clock_offset_ms;
            nm->clock_sampled_ms = old->clock_sampled_ms;
            nm->vv = old->vv;
            nm->nvv = old->nvv;
            nm->skip = old->skip;
            nm->nskip = old->nskip;
            old->vv = NULL;
            old->skip = NULL;
            old->dialer = 0;
        }
    }
    /* Members that left: stop dialling them and drop their links. */
    for (size_t i = 0; i < e->nmembers; i++) {
        if (e->members[i].dialer != 0)
            e->host.undial(e->host.ctx, e->members[i].dialer);
        if (e->members[i].pipe != 0)
            e->host.drop(e->host.ctx, e->members[i].pipe);
        free(e->members[i].vv);
        free(e->members[i].skip);
    }
    free(e->members);
    e->members = next;
    e->nmembers = e->manifest.nmembers;
    return NODE_OK;
}

/* Does m retire this node's key (its org left the network, or has another key now)? */
static bool self_retired(const node_engine *e, const proto_manifest *m)
{
    size_t ki;
    const proto_member *me = proto_manifest_find(m, proto_identity_origin(e->me), &ki);
    return me != NULL && (me->keys[ki].retired || ki + 1 != me->nkeys);
}

/* The manifest in force retires this node's key: say so once and dial no one (its links go at
 * the next tick, node__peers_tick); writes are refused with node__removed_why. */
static void removed_check(node_engine *e)
{
    bool was = e->removed;
    e->removed = self_retired(e, &e->manifest);
    if (e->removed && !was) {
        NODE_ERROR("node.removed",
            "version=%" PRIu64 " detail=\"manifest version %" PRIu64 " retires this node's key: "
            "it writes nothing and dials no one from now on; its data stays readable here\"",
            e->manifest.version, e->manifest.version);
        for (size_t i = 0; i < e->nmembers; i++)
            if (e->members[i].dialer != 0) {
                e->host.undial(e->host.ctx, e->members[i].dialer);
                e->members[i].dialer = 0;
            }
        /* its links are dropped at the next tick (peers.c) */
    }
}

node_err node__removed_why(const node_engine *e, node_errmsg *msg)
{
    if (!e->removed)
        return NODE_OK;
    return node__fail(msg, NODE_EINVAL,
        "this node was removed from the network: manifest version %" PRIu64
        " retires its key (identity.key), so it writes nothing; ask the network admin (a new "
        "node of the org joins with patto network rekey)",
        e->manifest.version);
}

node_err node__manifest_fits(const node_engine *e, const proto_manifest *m, node_errmsg *msg)
{
    size_t ki;
    const proto_member *me = proto_manifest_find(m, proto_identity_origin(e->me), &ki);
    if (me == NULL)
        return node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " does not list this node's key (identity.key): ask the "
            "network admin to add this node's member entry",
            m->version);
    if (memcmp(m->schema_hash, e->schema_hash, 32) != 0
        && (e->schema_next == NULL || memcmp(m->schema_hash, e->schema_next_hash, 32) != 0)) {
        char want[65], have[65];
        proto_hex_encode(m->schema_hash, 32, want);
        proto_hex_encode(e->schema_hash, 32, have);
        return node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " names schema %s but this node's %s is %s: install "
            "the network's schema file",
            m->version, want, e->cfg.schema, have);
    }
    const char *role = proto_role_name(me->role);
    if (me->org.len != strlen(e->cfg.org) || memcmp(me->org.p, e->cfg.org, me->org.len) != 0
        || role == NULL || strcmp(role, e->cfg.role) != 0)
        return node__fail(msg, NODE_EINVAL,
            "pattod.conf says org %s, role %s, but manifest version %" PRIu64
            " lists this node's key (identity.key) as org %.*s, role %s: correct [node] org and "
            "role, or use the identity.key of org %s",
            e->cfg.org, e->cfg.role, m->version, (int)me->org.len, (const char *)me->org.p,
            role ? role : "?", e->cfg.org);
    return NODE_OK;
}

node_err node__config_dials_fit(const node_engine *e, const proto_manifest *m, node_errmsg *msg)
{
    for (size_t i = 0; i < e->cfg.ndials; i++) {
        const char *org = e->cfg.dials[i].org;
        bool member = false;
        for (size_t k = 0; k < m->nmembers && !member; k++)
            member = m->members[k].org.len == strlen(org)
                && memcmp(m->members[k].org.p, org, m->members[k].org.len) == 0;
        if (!member)
            return node__fail(msg, NODE_ECONFIG,
                "pattod.conf: [dial] names org %s, which is not a member of manifest version "
                "%" PRIu64 " (see 'patto status' for the members): correct or remove the line",
                org, m->version);
    }
    return NODE_OK;
}

/* Does manifest m follow old, as "membership over time" requires (ARCHITECTURE.md, section 4):
 * every org still listed with every key it had, nothing once stated changed, a new key of an org
 * effective at least the notice period after m was signed, no new key for an org that left,
 * every purpose still listed? */
static node_err manifest_follows(
    const node_engine *e, const proto_manifest *old, const proto_manifest *m, node_errmsg *msg)
{
    if (m->signed_at_ms < old->signed_at_ms)
        return node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " is signed earlier than version %" PRIu64
            " in force: refused",
            m->version, old->version);
    for (size_t i = 0; i < old->nmembers; i++) {
        const proto_member *o = &old->members[i];
        int ol = (int)o->org.len;
        const char *org = (const char *)o->org.p;
        const proto_member *n = proto_manifest_find_org(m, org, o->org.len);
        if (n == NULL)
            return node__fail(msg, NODE_EINVAL,
                "manifest version %" PRIu64 " no longer lists org %.*s: an org stays listed "
                "for ever (retire its keys instead)",
                m->version, ol, org);
        if (n->nkeys < o->nkeys)
            return node__fail(msg, NODE_EINVAL,
                "manifest version %" PRIu64 " drops a key of org %.*s: every key stays listed",
                m->version, ol, org);
        for (size_t k = 0; k < o->nkeys; k++) {
            const proto_member_key *a = &o->keys[k], *b = &n->keys[k];
            if (memcmp(a->origin, b->origin, 32) != 0 || memcmp(a->box_pk, b->box_pk, 32) != 0
                || a->effective_ms != b->effective_ms
                || (a->retired && (!b->retired || a->last_seq != b->last_seq)))
                return node__fail(msg, NODE_EINVAL,
                    "manifest version %" PRIu64 " changes key %zu of org %.*s (its origin, X25519 "
                    "key, effective time or retirement), which version %" PRIu64 " stated: "
                    "refused",
                    m->version, k + 1, ol, org, old->version);
        }
        if (n->nkeys > o->nkeys && !proto_member_active(o))
            return node__fail(msg, NODE_EINVAL,
                "manifest version %" PRIu64 " gives a new key to org %.*s, which left the "
                "network: org ids are never reused",
                m->version, ol, org);
        for (size_t k = o->nkeys; k < n->nkeys; k++)
            if (n->keys[k].effective_ms < m->signed_at_ms + e->cfg.rekey_notice_ms)
                return node__fail(msg, NODE_EINVAL,
                    "manifest version %" PRIu64 " gives org %.*s a new key effective sooner "
                    "than %" PRIu64 " h after the manifest was signed ([network] "
                    "rekey_notice_hours): refused",
                    m->version, ol, org, e->cfg.rekey_notice_ms / 3600000);
    }
    for (size_t i = 0; i < old->npurposes; i++) {
        const proto_purpose *p = &old->purposes[i];
        bool kept = false;
        for (size_t k = 0; k < m->npurposes && !kept; k++)
            kept = m->purposes[k].id.len == p->id.len
                && memcmp(m->purposes[k].id.p, p->id.p, p->id.len) == 0;
        if (!kept)
            return node__fail(msg, NODE_EINVAL,
                "manifest version %" PRIu64 " drops purpose %.*s: purposes only grow", m->version,
                (int)p->id.len, (const char *)p->id.p);
    }
    return NODE_OK;
}

/* An instant as people read it: "YYYY-MM-DD HH:MM" in Rome. */
static void rome_time(uint64_t utc_ms, char *out, size_t n)
{
    proto_civil c;
    proto_rome_civil(utc_ms, &c);
    snprintf(
        out, n, "%04d-%02d-%02d %02d:%02d Europe/Rome", c.year, c.month, c.day, c.hour, c.minute);
}

/* Alert the operators of every member that the new manifest gives a new key. */
static void rekeys_log(const proto_manifest *old, const proto_manifest *m)
{
    for (size_t i = 0; i < m->nmembers; i++) {
        const proto_member *n = &m->members[i];
        const proto_member *o
            = old != NULL ? proto_manifest_find_org(old, (const char *)n->org.p, n->org.len) : NULL;
        if (o == NULL || n->nkeys <= o->nkeys)
            continue;
        char when[32];
        rome_time(proto_member_current(n)->effective_ms, when, sizeof(when));
        NODE_ERROR("member.rekey",
            "org=%.*s version=%" PRIu64 " effective=\"%s\" detail=\"the network admin gave this "
            "org a new key; its headers count from then on: confirm with the org that it asked "
            "for it\"",
            (int)n->org.len, (const char *)n->org.p, m->version, when);
    }
}

/* The manifest in force and the bytes of the schema file it names (when the host gave them:
 * a later schema file is checked against it, state.c schema_in_force), side by side. */
typedef struct put_manifest {
    const uint8_t *bytes;
    size_t len;
    const uint8_t *schema;
    size_t schema_len;
} put_manifest;

static node_err put_manifest_cb(node_txn *t, void *ctx)
{
    put_manifest *p = ctx;
    node_err err = node_txn_put(t, NODE_DB_MANIFEST, "current", 7, p->bytes, p->len);
    if (err == NODE_OK && p->schema != NULL)
        err = node_txn_put(t, NODE_DB_MANIFEST, "schema", 6, p->schema, p->schema_len);
    return err;
}

/* The schema file names the next schema: switch to it (the manifest naming it was taken). */
static void schema_switch(node_engine *e)
{
    node_schema_free(e->schema);
    free(e->schema_bytes);
    e->schema = e->schema_next;
    memcpy(e->schema_hash, e->schema_next_hash, 32);
    e->schema_bytes = e->schema_next_bytes;
    e->schema_len = e->schema_next_len;
    e->schema_next = NULL;
    e->schema_next_bytes = NULL;
    e->schema_next_len = 0;
    NODE_WARN("schema.accept", "schema=\"%s\" version=%" PRId64 " manifest=%" PRIu64,
        e->schema->name, e->schema->version, e->manifest.version);
}

node_err node__manifest_offer(
    node_engine *e, const uint8_t *bytes, size_t len, bool *changed, node_errmsg *msg)
{
    *changed = false;
    proto_manifest m;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_manifest_decode(bytes, len, &e->lim, &m, &diag);
    if (perr != PROTO_OK)
        return node__fail(msg, NODE_EINVAL, "not a valid manifest: %s (%s at byte %zu)",
            proto_strerror(perr), diag.reason, diag.offset);
    node_err err = NODE_OK;
    uint8_t *copy = NULL;
    if (proto_manifest_verify(&m, e->cfg.admin_pub) != PROTO_OK) {
        err = node__fail(msg, NODE_EINVAL,
            "the manifest is not signed by this network's admin key "
            "([network] admin_pub)");
        goto out;
    }
    if (e->have_manifest && m.version == e->manifest.version && len == e->manifest_len
        && memcmp(bytes, e->manifest_bytes, len) == 0) {
        /* The one in force, offered again (an automated set-up repeating its steps). */
        node__fail(msg, NODE_OK, "manifest version %" PRIu64 " is already in force", m.version);
        goto out;
    }
    if (e->have_manifest && m.version <= e->manifest.version) {
        err = node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " is not newer than version %" PRIu64 " already in force",
            m.version, e->manifest.version);
        goto out;
    }
    if ((err = node__manifest_fits(e, &m, msg)) != NODE_OK
        || (e->have_manifest && (err = manifest_follows(e, &e->manifest, &m, msg)) != NODE_OK))
        goto out;
    /* A manifest that names this node's schema file, not the schema in force: the network
     * moves to that schema, which may only grow the one in force (stored values stay valid). */
    bool next = memcmp(m.schema_hash, e->schema_hash, 32) != 0;
    node_errmsg narrow;
    if (next && node_schema_grows(e->schema, e->schema_next, &narrow) != NODE_OK) {
        err = node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " names the schema of %s (%s, version %" PRId64
            "), which narrows the schema in force (version %" PRId64 "): %s; a network's schema "
            "only grows",
            m.version, e->cfg.schema, e->schema_next->name, e->schema_next->version,
            e->schema->version, narrow.text);
        goto out;
    }
    rekeys_log(e->have_manifest ? &e->manifest : NULL, &m);
    node_errmsg dial;
    if (node__config_dials_fit(e, &m, &dial) != NODE_OK)
        NODE_ERROR("config.dial", "detail=\"%s\"", dial.text);
    /* The decoded manifest borrows from its input: keep our own copy of the bytes. */
    if ((copy = malloc(len)) == NULL) {
        err = NODE_ENOMEM;
        goto out;
    }
    memcpy(copy, bytes, len);
    put_manifest pm = { copy, len, next ? e->schema_next_bytes : e->schema_bytes,
        next ? e->schema_next_len : e->schema_len };
    if ((err = node_store_write(e->store, put_manifest_cb, &pm, msg)) != NODE_OK)
        goto out;
    proto_manifest_fini(&m);
    if (proto_manifest_decode(copy, len, &e->lim, &m, &diag) != PROTO_OK) {
        free(copy);
        return node__fail(msg, NODE_ECORRUPT, "manifest decode changed its mind");
    }
    if (e->have_manifest)
        proto_manifest_fini(&e->manifest);
    free(e->manifest_bytes);
    e->manifest = m;
    e->manifest_bytes = copy;
    e->manifest_len = len;
    e->have_manifest = true;
    *changed = true;
    e->all_gen++;        /* authors it lists, keys it retires: every waiting delta is worth a try */
    e->ended_due_ms = 0; /* an org it removes has its grants closed at the next tick */
    NODE_INFO("manifest.accept", "version=%" PRIu64 " members=%zu", m.version, m.nmembers);
    if (next)
        schema_switch(e);
    removed_check(e);
    return node__members_rebuild(e);
out:
    free(copy);
    proto_manifest_fini(&m);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Wants and waits (in memory; rebuilt from the store at start)                              */

bool node__want_has(node_engine *e, const uint8_t id[32])
{
    return node__idset_get(&e->want_ix, id) != SIZE_MAX;
}

node_err node__want_add(node_engine *e, const node_want *src)
{
    if (node__want_has(e, src->id))
        return NODE_OK;
    node_err err = NODE_VEC_RESERVE(&e->wants, e->wants.n + 1, e->budget.wants);
    if (err == NODE_EFULL) {
        e->lists_full = e->wants_left = true; /* found again in the store once there is room */
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    if (!node__idset_put(&e->want_ix, src->id, e->wants.n))
        return NODE_ENOMEM;
    node_want *w = &e->wants.v[e->wants.n++];
    *w = *src;
    bool due = src->since_ms != 0; /* its header came long ago: no body is on its way */
    w->since_ms = due
        ? node__mono(e) - (NODE_WANT_GRACE_MS < node__mono(e) ? NODE_WANT_GRACE_MS : node__mono(e))
        : node__mono(e);
    w->asked_ms = 0;
    w->tries = 0;
    w->moot = false;
    if (due && !e->stopping)
        e->host.schedule(e->host.ctx, NODE_WORK_WANTS, 0);
    else
        node__wants_schedule(e);
    return NODE_OK;
}

uint64_t node__want_retry(const node_want *w)
{
    return w->moot ? NODE_WANT_MOOT_RETRY_MS : NODE_WANT_RETRY_MS;
}

bool node__want_retry_due(const node_engine *e, const node_want *w, uint64_t now)
{
    uint64_t r = node__want_retry(w);
    uint64_t empty = e->inq_head == NULL ? now : e->inq_empty_ms;
    return now - w->asked_ms >= r && empty >= w->asked_ms + r;
}

bool node__want_asked(const node_engine *e, const node_want *w, uint64_t now)
{
    return w->asked_ms != 0 && !node__want_retry_due(e, w, now);
}

void node__inq_seen_empty(node_engine *e)
{
    e->inq_empty_ms = node__mono(e);
    if (e->wants_drain && !e->stopping) {
        e->wants_drain = false;
        e->host.schedule(e->host.ctx, NODE_WORK_WANTS, 0);
    }
}

void node__lists_due(node_engine *e)
{
    if (!e->stopping
        && ((e->wants_left && e->wants.n <= e->budget.wants / 2)
            || (e->waits_left && e->waits.n <= e->budget.waits / 2)))
        e->host.schedule(e->host.ctx, NODE_WORK_LISTS, 0);
}

/* w's body came, or it went: count it out of those asked (sync.c's round). */
static void want_done(node_engine *e, const node_want *w)
{
    if (!node__want_asked(e, w, node__mono(e)) || e->wants_asked == 0)
        return;
    if (--e->wants_asked <= NODE_WANT_ASK_MAX / 2 && e->wants_held && !e->stopping) {
        e->wants_held = false; /* the round sets it again */
        e->host.schedule(e->host.ctx, NODE_WORK_WANTS, 0);
    }
}

void node__want_remove(node_engine *e, const uint8_t id[32])
{
    size_t i = node__idset_get(&e->want_ix, id);
    if (i == SIZE_MAX)
        return;
    want_done(e, &e->wants.v[i]);
    node__idset_del(&e->want_ix, id);
    if (i != --e->wants.n) {
        e->wants.v[i] = e->wants.v[e->wants.n];
        (void)node__idset_put(
            &e->want_ix, e->wants.v[i].id, i); /* updates in place: no allocation */
    }
    node__lists_due(e);
}

node_err node__wait_add(node_engine *e, const node_wait *src)
{
    if (node__idset_get(&e->wait_ix, src->id) != SIZE_MAX)
        return NODE_OK;
    node_err err = NODE_VEC_RESERVE(&e->waits, e->waits.n + 1, e->budget.waits);
    if (err == NODE_EFULL) {
        e->lists_full = e->waits_left = true; /* its body is stored: found again later */
        return NODE_OK;
    }
    if (err != NODE_OK)
        return err;
    if (!node__idset_put(&e->wait_ix, src->id, e->waits.n))
        return NODE_ENOMEM;
    e->waits.v[e->waits.n++] = *src;
    return NODE_OK;
}

/* Rebuild the wait index after the list was compacted. */
node_err node__waits_reindex(node_engine *e)
{
    node__idset_free(&e->wait_ix);
    for (size_t i = 0; i < e->waits.n; i++)
        if (!node__idset_put(&e->wait_ix, e->waits.v[i].id, i))
            return NODE_ENOMEM;
    return NODE_OK;
}

typedef struct manifest_read {
    const char *key;
    uint8_t *bytes;
    size_t len;
} manifest_read;

static node_err manifest_read_cb(node_txn *t, void *ctx)
{
    manifest_read *r = ctx;
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_MANIFEST, r->key, strlen(r->key), &v, &n);
    if (err != NODE_OK)
        return err;
    if ((r->bytes = malloc(n ? n : 1)) == NULL)
        return NODE_ENOMEM;
    memcpy(r->bytes, v, n);
    r->len = n;
    return NODE_OK;
}

/* The stored manifest names another schema than this node's schema file: when the store keeps
 * that schema (the bytes stored with the manifest), it stays in force and the file's waits for
 * a manifest that names it (an upgrade installed before the network's manifest came).
 * Otherwise node__manifest_fits says what is wrong. */
static node_err schema_in_force(node_engine *e, const proto_manifest *m, node_errmsg *msg)
{
    if (memcmp(m->schema_hash, e->schema_hash, 32) == 0 || e->schema_next != NULL)
        return NODE_OK;
    manifest_read r = { "schema", NULL, 0 };
    node_errmsg ignore;
    if (node_store_read(e->store, manifest_read_cb, &r, &ignore) != NODE_OK)
        return NODE_OK;
    uint8_t hash[32];
    proto_schema_hash(r.bytes, r.len, hash);
    node_schema *old = NULL;
    if (memcmp(hash, m->schema_hash, 32) != 0) {
        free(r.bytes);
        return NODE_OK;
    }
    node_err err = node_schema_parse((const char *)r.bytes, r.len, "the stored schema", &old, msg);
    if (err != NODE_OK) {
        free(r.bytes);
        return err;
    }
    e->schema_next = e->schema;
    memcpy(e->schema_next_hash, e->schema_hash, 32);
    e->schema_next_bytes = e->schema_bytes;
    e->schema_next_len = e->schema_len;
    e->schema = old;
    memcpy(e->schema_hash, hash, 32);
    e->schema_bytes = r.bytes;
    e->schema_len = r.len;
    NODE_WARN("schema.pending",
        "file=%s schema=\"%s\" version=%" PRId64 " in_force=%" PRId64
        " detail=\"the schema file is not the one manifest version %" PRIu64
        " names: the node keeps the network's until a manifest names the file's\"",
        e->cfg.schema, e->schema_next->name, e->schema_next->version, e->schema->version,
        m->version);
    return NODE_OK;
}

node_err node__manifest_load(node_engine *e, node_errmsg *msg)
{
    manifest_read r = { "current", NULL, 0 };
    node_err err = node_store_read(e->store, manifest_read_cb, &r, msg);
    if (err != NODE_OK)
        return err == NODE_ENOTFOUND ? node__fail(msg, NODE_ENOTFOUND, "no manifest imported yet")
                                     : err;
    proto_manifest m;
    proto_diag diag = { 0, "" };
    if (proto_manifest_decode(r.bytes, r.len, &e->lim, &m, &diag) != PROTO_OK) {
        free(r.bytes);
        return node__fail(msg, NODE_ECORRUPT, "the stored manifest does not decode: %s at byte %zu",
            diag.reason, diag.offset);
    }
    if (proto_manifest_verify(&m, e->cfg.admin_pub) != PROTO_OK)
        err = node__fail(msg, NODE_ECONFIG,
            "the stored manifest (version %" PRIu64 ") is not signed by [network] admin_pub: "
            "pattod.conf names another network's admin key",
            m.version);
    else if ((err = schema_in_force(e, &m, msg)) != NODE_OK
        || (err = node__manifest_fits(e, &m, msg)) != NODE_OK)
        err = NODE_ECONFIG;
    if (err != NODE_OK) {
        proto_manifest_fini(&m);
        free(r.bytes);
        return err;
    }
    e->manifest = m;
    e->manifest_bytes = r.bytes;
    e->manifest_len = r.len;
    e->have_manifest = true;
    removed_check(e);
    return NODE_OK;
}

void node__wants_schedule(node_engine *e)
{
    if (!e->stopping && e->wants.n > 0)
        e->host.schedule(e->host.ctx, NODE_WORK_WANTS, NODE_WANT_GRACE_MS);
}
