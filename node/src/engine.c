/*
 * The node's state machine on the loop thread: headers are verified and chained per origin,
 * bodies checked against their headers and merged once their key, their causal past and
 * their time have come; local edits become signed, encrypted deltas, durable before they are
 * acknowledged (DESIGN.md, "Deltas on the wire", "Consent, keys", "Node internals").
 *
 * Transaction bodies may run twice (the store reruns them after growing a full map), so they
 * work on copies of in-memory state and the caller adopts the copies after the commit.
 */
#include "engine.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define CLOCK_WINDOW_MS 600000

void node_clock_sample(node_member *m, uint64_t wall_ms, uint64_t now_ms)
{
    int64_t s = wall_ms >= now_ms ? (int64_t)(wall_ms - now_ms) : -(int64_t)(now_ms - wall_ms);
    if (m->clock_sampled_ms == 0 || s > m->clock_offset_ms
        || now_ms - m->clock_sampled_ms >= CLOCK_WINDOW_MS) {
        m->clock_offset_ms = s;
        m->clock_sampled_ms = now_ms;
    }
}

node_member *node_member_by_origin(node_engine *e, const uint8_t origin[32])
{
    for (size_t i = 0; i < e->nmembers; i++)
        if (memcmp(e->members[i].origin, origin, 32) == 0)
            return &e->members[i];
    return NULL;
}

node_member *node_member_by_org(node_engine *e, const char *org)
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
static node_err members_rebuild(node_engine *e)
{
    node_member *next = calloc(e->manifest.nmembers ? e->manifest.nmembers : 1, sizeof(*next));
    if (next == NULL)
        return NODE_ENOMEM;
    for (size_t i = 0; i < e->manifest.nmembers; i++) {
        const proto_member *m = &e->manifest.members[i];
        node_member *nm = &next[i];
        size_t ol = m->org.len < PROTO_ORG_MAX ? m->org.len : PROTO_ORG_MAX;
        memcpy(nm->org, m->org.p, ol);
        size_t ul = m->url.len < NODE_URL_MAX ? m->url.len : NODE_URL_MAX;
        memcpy(nm->url, m->url.p, ul);
        nm->role = m->role;
        memcpy(nm->origin, m->origin, 32);
        memcpy(nm->box_pk, m->box_pk, 32);
        nm->self = memcmp(m->origin, proto_identity_origin(e->me), 32) == 0;
        node_member *old = node_member_by_origin(e, m->origin);
        if (old != NULL) {
            nm->dialer = old->dialer;
            nm->pipe = old->pipe;
            nm->last_heard_ms = old->last_heard_ms;
            nm->clock_offset_ms = old->clock_offset_ms;
            nm->clock_sampled_ms = old->clock_sampled_ms;
            nm->vv = old->vv;
            nm->nvv = old->nvv;
            old->vv = NULL;
            old->dialer = 0;
        }
    }
    /* Members that left: stop dialling them and drop their links. */
    for (size_t i = 0; i < e->nmembers; i++) {
        if (e->members[i].dialer != 0)
            node_net_undial(e->net, e->members[i].dialer);
        if (e->members[i].pipe != 0 && e->net != NULL)
            node_net_drop(e->net, e->members[i].pipe);
        free(e->members[i].vv);
    }
    free(e->members);
    e->members = next;
    e->nmembers = e->manifest.nmembers;
    return NODE_OK;
}

node_err node_manifest_fits(const node_engine *e, const proto_manifest *m, node_errmsg *msg)
{
    const proto_member *me = proto_manifest_find(m, proto_identity_origin(e->me));
    if (me == NULL)
        return node__fail(msg, NODE_EINVAL,
            "manifest version %" PRIu64 " does not list this node's key (identity.key): ask the "
            "network admin to add this node's member entry",
            m->version);
    if (memcmp(m->schema_hash, e->schema_hash, 32) != 0) {
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

node_err node_config_dials_fit(const node_engine *e, const proto_manifest *m, node_errmsg *msg)
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

typedef struct put_manifest {
    const uint8_t *bytes;
    size_t len;
} put_manifest;

static node_err put_manifest_cb(node_txn *t, void *ctx)
{
    put_manifest *p = ctx;
    return node_txn_put(t, NODE_DB_MANIFEST, "current", 7, p->bytes, p->len);
}

node_err node_manifest_offer(
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
    if ((err = node_manifest_fits(e, &m, msg)) != NODE_OK)
        goto out;
    node_errmsg dial;
    if (node_config_dials_fit(e, &m, &dial) != NODE_OK)
        NODE_ERROR("config.dial", "detail=\"%s\"", dial.text);
    /* The decoded manifest borrows from its input: keep our own copy of the bytes. */
    if ((copy = malloc(len)) == NULL) {
        err = NODE_ENOMEM;
        goto out;
    }
    memcpy(copy, bytes, len);
    put_manifest pm = { copy, len };
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
    NODE_INFO("manifest.accept", "version=%" PRIu64 " members=%zu", m.version, m.nmembers);
    return members_rebuild(e);
out:
    free(copy);
    proto_manifest_fini(&m);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Wants and waits (in memory; rebuilt from the store at start)                              */

static bool want_has(node_engine *e, const uint8_t id[32])
{
    return idset_get(&e->want_ix, id) != SIZE_MAX;
}

static node_err want_add(
    node_engine *e, const uint8_t id[32], const uint8_t tag[32], const uint8_t origin[32])
{
    if (want_has(e, id))
        return NODE_OK;
    node_want *w = realloc(e->wants, (e->nwants + 1) * sizeof(*w));
    if (w == NULL)
        return NODE_ENOMEM;
    e->wants = w;
    if (!idset_put(&e->want_ix, id, e->nwants))
        return NODE_ENOMEM;
    memcpy(w[e->nwants].id, id, 32);
    memcpy(w[e->nwants].tag, tag, 32);
    memcpy(w[e->nwants].origin, origin, 32);
    w[e->nwants].since_ms = node_now_ms();
    w[e->nwants].asked_ms = 0;
    e->nwants++;
    node_wants_schedule(e);
    return NODE_OK;
}

static void want_remove(node_engine *e, const uint8_t id[32])
{
    size_t i = idset_get(&e->want_ix, id);
    if (i == SIZE_MAX)
        return;
    idset_del(&e->want_ix, id);
    if (i != --e->nwants) {
        e->wants[i] = e->wants[e->nwants];
        (void)idset_put(&e->want_ix, e->wants[i].id, i); /* updates in place: no allocation */
    }
}

static node_err wait_add(node_engine *e, const uint8_t id[32], const uint8_t tag[32], uint8_t kind)
{
    if (idset_get(&e->wait_ix, id) != SIZE_MAX)
        return NODE_OK;
    node_wait *w = realloc(e->waits, (e->nwaits + 1) * sizeof(*w));
    if (w == NULL)
        return NODE_ENOMEM;
    e->waits = w;
    if (!idset_put(&e->wait_ix, id, e->nwaits))
        return NODE_ENOMEM;
    memcpy(w[e->nwaits].id, id, 32);
    memcpy(w[e->nwaits].tag, tag, 32);
    w[e->nwaits].why = WAIT_KEY;
    w[e->nwaits].kind = kind;
    e->nwaits++;
    return NODE_OK;
}

/* Rebuild the wait index after the list was compacted. */
static node_err waits_reindex(node_engine *e)
{
    idset_free(&e->wait_ix);
    for (size_t i = 0; i < e->nwaits; i++)
        if (!idset_put(&e->wait_ix, e->waits[i].id, i))
            return NODE_ENOMEM;
    return NODE_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Headers                                                                                   */

/* What a batch of header ingestion decided, adopted after the commit. */
typedef struct ingest_ctx {
    node_engine *e;
    const proto_bytes *headers;
    size_t n;
    const uint8_t *sig; /* per header: SIG_*, checked before the write (NULL: none checked) */
    crdt_hlc clock;
    /* outputs */
    node_want *wants;
    size_t nwants;
    node_pending *pend; /* headers to hold out of order (bytes point into the input) */
    size_t npend;
    bool *used_pending; /* e->pending entries consumed */
    size_t stored, rejected;
    uint64_t own_seq; /* this node's log position, raised by its own headers seen from peers */
    uint8_t own_last[32];
} ingest_ctx;

static void ingest_reset(ingest_ctx *c)
{
    c->clock = c->e->clock;
    c->nwants = 0;
    c->npend = 0;
    c->stored = c->rejected = 0;
    c->own_seq = c->e->own_seq;
    memcpy(c->own_last, c->e->own_last, 32);
    if (c->used_pending)
        memset(c->used_pending, 0, c->e->npending * sizeof(bool));
}

/* Is this node a reader of bodies with this tag (key held, or granted by a grant header)? */
static bool reads_tag(node_txn *t, node_engine *e, const uint8_t tag[32])
{
    ledger_key k;
    bool have = ledger_key_get(t, tag, &k) == NODE_OK;
    proto_wipe(&k, sizeof(k));
    return have || ledger_holds(t, tag, proto_identity_origin(e->me));
}

static node_err ctx_want(ingest_ctx *c, const proto_header *h)
{
    node_want *w = realloc(c->wants, (c->nwants + 1) * sizeof(*w));
    if (w == NULL)
        return NODE_ENOMEM;
    c->wants = w;
    memcpy(w[c->nwants].id, h->id, 32);
    memcpy(w[c->nwants].tag, h->tag, 32);
    memcpy(w[c->nwants].origin, h->origin, 32);
    c->nwants++;
    return NODE_OK;
}

typedef struct tag_want {
    ingest_ctx *c;
    node_txn *t;
    node_err err;
} tag_want;

static bool tag_want_cb(const uint8_t id[32], void *ctx)
{
    tag_want *w = ctx;
    if (ledger_body_has(w->t, id))
        return true;
    const void *hb;
    size_t hl;
    proto_header h;
    if (ledger_header_by_id(w->t, id, &hb, &hl) != NODE_OK
        || proto_header_decode(hb, hl, &w->c->e->lim, &h, NULL) != PROTO_OK)
        return true;
    if (h.kind == PROTO_HDR_DELTA)
        w->err = ctx_want(w->c, &h);
    proto_header_fini(&h);
    return w->err == NODE_OK;
}

/* This node has just been granted a tag: want the bodies of every delta it already has a
 * header of (they were not ours to receive before). */
static node_err want_tag(node_txn *t, ingest_ctx *c, const uint8_t tag[32])
{
    tag_want w = { c, t, NODE_OK };
    node_err err = ledger_tag_headers(t, tag, tag_want_cb, &w);
    return err != NODE_OK ? err : w.err;
}

/* The id of the header at (origin, seq), by decoding what is stored. */
static node_err stored_id(
    node_txn *t, const uint8_t origin[32], uint64_t seq, const proto_limits *lim, uint8_t id[32])
{
    const void *b;
    size_t n;
    node_err err = ledger_header_get(t, origin, seq, &b, &n);
    if (err != NODE_OK)
        return err;
    proto_header h;
    if (proto_header_decode(b, n, lim, &h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    memcpy(id, h.id, 32);
    proto_header_fini(&h);
    return NODE_OK;
}

/* Is this exact header already held out of order (verified when it was held)? */
static bool pending_held(
    const node_engine *e, const uint8_t origin[32], uint64_t seq, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < e->npending; i++) {
        const node_pending *p = &e->pending[i];
        if (p->seq == seq && p->len == len && memcmp(p->origin, origin, 32) == 0
            && memcmp(p->bytes, bytes, len) == 0)
            return true;
    }
    return false;
}

/* A header of our own beyond our log position: this store was restored from an older copy. */
static void log_own_behind(uint64_t seq, uint64_t own_seq)
{
    NODE_WARN("own.behind",
        "seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"a peer holds a newer header of this "
        "node's log (restored from an older copy?); continuing after it\"",
        seq, own_seq);
}

/* What is known of a header's signature before ingest_one looks at it. */
enum { SIG_UNKNOWN = 0, SIG_GOOD, SIG_BAD };

static bool sig_good(const proto_header *h, uint8_t sig)
{
    return sig == SIG_GOOD || (sig == SIG_UNKNOWN && proto_header_verify(h) == PROTO_OK);
}

/* One header: chain it, or hold it, or drop it. *next_seq gets seq when stored (else 0).
 * sig: SIG_GOOD when these exact bytes were verified already (node_hcheck, or a header held
 * out of order, which is verified before it is held). */
static node_err ingest_one(node_txn *t, ingest_ctx *c, const uint8_t *bytes, size_t len,
    uint8_t sig, uint8_t origin_out[32], uint64_t *next_seq)
{
    node_engine *e = c->e;
    *next_seq = 0;
    proto_header h;
    proto_diag diag = { 0, "" };
    proto_err perr = proto_header_decode(bytes, len, &e->lim, &h, &diag);
    if (perr != PROTO_OK) {
        NODE_WARN("header.reject", "reason=\"%s\" detail=\"%s\" offset=%zu", proto_strerror(perr),
            diag.reason, diag.offset);
        c->rejected++;
        return NODE_OK;
    }
    node_err err = NODE_OK;
    char who[65];
    proto_hex_encode(h.origin, 32, who);
    node_member *m = node_member_by_origin(e, h.origin);
    if (m == NULL) {
        NODE_WARN("header.reject", "origin=%s seq=%" PRIu64 " reason=\"not a member\"", who, h.seq);
        c->rejected++;
        goto out;
    }
    if (ledger_quarantined(t, h.origin))
        goto out;
    uint64_t have = ledger_vv_get(t, h.origin);
    if (h.seq <= have) {
        /* Most headers a peer sends are ones this node already holds: the same bytes (or the
         * same id) at (origin, seq) need no signature check. Only a different header there,
         * a candidate proof of equivocation, is verified. */
        const void *other;
        size_t olen;
        if ((err = ledger_header_get(t, h.origin, h.seq, &other, &olen)) != NODE_OK)
            goto out;
        if (olen == len && memcmp(other, bytes, len) == 0)
            goto out;
        uint8_t id[32];
        if ((err = stored_id(t, h.origin, h.seq, &e->lim, id)) != NODE_OK)
            goto out;
        if (memcmp(id, h.id, 32) != 0) {
            if (!sig_good(&h, sig)) {
                NODE_WARN("header.reject", "origin=%s seq=%" PRIu64 " reason=\"bad signature\"",
                    who, h.seq);
                c->rejected++;
                goto out;
            }
            /* Two validly signed, different headers for one (origin, seq): keep both (the
             * stored one was verified when it was stored). */
            if ((err = ledger_quarantine_put(t, h.origin, other, olen, bytes, len)) != NODE_OK)
                goto out;
            NODE_ERROR("origin.equivocation",
                "org=%s origin=%s seq=%" PRIu64
                " action=quarantined detail=\"two different signed headers for one "
                "sequence number; proof kept\"",
                m->org, who, h.seq);
        }
        goto out;
    }
    if (h.seq > have + 1) {
        for (size_t i = 0; i < c->npend; i++)
            if (memcmp(c->pend[i].origin, h.origin, 32) == 0 && c->pend[i].seq == h.seq)
                goto out;
        if (pending_held(e, h.origin, h.seq, bytes, len))
            goto out;
    }
    if (!sig_good(&h, sig)) {
        NODE_WARN(
            "header.reject", "origin=%s seq=%" PRIu64 " reason=\"bad signature\"", who, h.seq);
        c->rejected++;
        goto out;
    }
    if (h.seq > have + 1) {
        node_pending *p = realloc(c->pend, (c->npend + 1) * sizeof(*p));
        if (p == NULL) {
            err = NODE_ENOMEM;
            goto out;
        }
        c->pend = p;
        memcpy(p[c->npend].origin, h.origin, 32);
        p[c->npend].seq = h.seq;
        p[c->npend].bytes = (uint8_t *)(uintptr_t)bytes;
        p[c->npend].len = len;
        c->npend++;
        goto out;
    }
    uint8_t prev[32];
    (void)ledger_vv_last(t, h.origin, prev);
    if (memcmp(prev, h.prev, 32) != 0) {
        NODE_WARN("header.reject",
            "org=%s seq=%" PRIu64 " reason=\"hash chain broken: prev is not the id of "
            "the previous header\"",
            m->org, h.seq);
        c->rejected++;
        goto out;
    }
    if ((err = ledger_header_put(t, &h, bytes, len)) != NODE_OK)
        goto out;
    c->stored++;
    const uint8_t *me = proto_identity_origin(e->me);
    if (memcmp(h.origin, me, 32) == 0 && h.seq > c->own_seq) {
        /* A header of our own that our log position does not cover: this store was restored
         * from an older copy. Never reuse its sequence number. */
        log_own_behind(h.seq, c->own_seq);
        c->own_seq = h.seq;
        memcpy(c->own_last, h.id, 32);
        if ((err = ledger_own_put(t, c->own_seq, c->own_last)) != NODE_OK)
            goto out;
    }
    if (h.kind == PROTO_HDR_KEY_GRANT) {
        bool mine = false;
        for (size_t i = 0; i < h.nrecipients && err == NODE_OK; i++) {
            err = ledger_grant_put(t, h.tag, h.recipients[i].b, h.origin);
            mine = mine || memcmp(h.recipients[i].b, me, 32) == 0;
        }
        if (err == NODE_OK && mine && !ledger_body_has(t, h.id))
            err = ctx_want(c, &h);
        if (err == NODE_OK && mine)
            err = want_tag(t, c, h.tag);
    } else if (reads_tag(t, e, h.tag) && !ledger_body_has(t, h.id)) {
        err = ctx_want(c, &h);
    }
    /* A clock too far ahead is not adopted here; its delta waits when it is merged. */
    crdt_hlc tmp;
    crdt_err ahead
        = crdt_hlc_recv(&c->clock, node_now_ms(), &h.hlc, e->cfg.max_clock_ahead_ms, &tmp);
    (void)ahead;
    memcpy(origin_out, h.origin, 32);
    *next_seq = h.seq + 1;
out:
    proto_header_fini(&h);
    return err;
}

static node_err ingest_cb(node_txn *t, void *ctx)
{
    ingest_ctx *c = ctx;
    node_engine *e = c->e;
    ingest_reset(c);
    for (size_t i = 0; i < c->n; i++) {
        uint8_t origin[32];
        uint64_t next;
        node_err err = ingest_one(t, c, c->headers[i].p, c->headers[i].len,
            c->sig != NULL ? c->sig[i] : SIG_UNKNOWN, origin, &next);
        /* Headers held out of order may now follow. */
        while (err == NODE_OK && next != 0) {
            size_t k = 0;
            while (k < e->npending
                && (c->used_pending[k] || e->pending[k].seq != next
                    || memcmp(e->pending[k].origin, origin, 32) != 0))
                k++;
            size_t j = 0;
            while (j < c->npend
                && (c->pend[j].seq != next || memcmp(c->pend[j].origin, origin, 32) != 0))
                j++;
            if (k < e->npending) {
                c->used_pending[k] = true;
                err = ingest_one(
                    t, c, e->pending[k].bytes, e->pending[k].len, SIG_GOOD, origin, &next);
            } else if (j < c->npend) {
                node_pending p = c->pend[j];
                c->pend[j] = c->pend[--c->npend];
                err = ingest_one(t, c, p.bytes, p.len, SIG_GOOD, origin, &next);
            } else {
                next = 0;
            }
        }
        if (err != NODE_OK)
            return err;
    }
    return ledger_hlc_put(t, &c->clock);
}

#define PENDING_MAX 100000

/* A verified header of our own log beyond what we hold (restored from an older copy): the
 * next local write continues after it, so that no sequence number is used twice. */
static void own_pending(node_engine *e, const node_pending *p)
{
    if (p->seq <= e->own_seq || memcmp(p->origin, proto_identity_origin(e->me), 32) != 0)
        return;
    proto_header h;
    if (proto_header_decode(p->bytes, p->len, &e->lim, &h, NULL) != PROTO_OK)
        return;
    log_own_behind(h.seq, e->own_seq);
    e->own_seq = h.seq;
    memcpy(e->own_last, h.id, 32);
    proto_header_fini(&h);
}

/* Headers per transaction: a group commit. A 1 MiB HEADERS message holds about 4,600
 * headers, so it is mostly one commit; smaller groups (512) made the fsyncs of the commits a
 * large share of ingest time. A larger message (a peer with a larger max_message_bytes) is
 * taken in several commits, all in this loop turn. */
#define INGEST_BATCH 4096

/* Signature checks of a batch, done on the worker threads before the write transaction (which
 * runs on the loop thread alone). Only headers that ingest_one would verify are checked:
 * from a member, not quarantined, beyond what this node holds of that origin when the check
 * starts (a header ingested meanwhile is simply checked for nothing). */
struct node_hcheck {
    node_vjob job;
    node_engine *e;
    const proto_bytes *headers;
    size_t n;
    proto_header *h; /* decoded, [nidx] */
    size_t *idx;     /* which header each h is */
    size_t nidx;
    uint8_t *sig;     /* [n], SIG_* */
    node_vvrun *runs; /* of every header that decodes, [nruns] */
    size_t nruns;
    bool finished;
};

static node_err hcheck_pick_cb(node_txn *t, void *ctx)
{
    node_hcheck *pv = ctx;
    for (size_t i = 0; i < pv->n; i++) {
        proto_header *h = &pv->h[pv->nidx];
        if (proto_header_decode(pv->headers[i].p, pv->headers[i].len, &pv->e->lim, h, NULL)
            != PROTO_OK)
            continue;
        if (node_member_by_origin(pv->e, h->origin) == NULL || ledger_quarantined(t, h->origin)) {
            proto_header_fini(h);
            continue;
        }
        node_vvrun *r = pv->nruns > 0 ? &pv->runs[pv->nruns - 1] : NULL;
        if (r != NULL && memcmp(r->origin, h->origin, 32) == 0 && h->seq == r->last + 1) {
            r->last = h->seq;
        } else {
            r = &pv->runs[pv->nruns++];
            memcpy(r->origin, h->origin, 32);
            r->first = r->last = h->seq;
        }
        if (h->seq <= ledger_vv_get(t, h->origin)) {
            proto_header_fini(h);
            continue;
        }
        pv->idx[pv->nidx++] = i;
    }
    return NODE_OK;
}

static void hcheck_one(void *ctx, size_t k)
{
    node_hcheck *pv = ctx;
    pv->sig[pv->idx[k]] = proto_header_verify(&pv->h[k]) == PROTO_OK ? SIG_GOOD : SIG_BAD;
}

node_hcheck *node_hcheck_start(node_engine *e, const proto_bytes *headers, size_t n)
{
    node_hcheck *pv = calloc(1, sizeof(*pv));
    if (pv == NULL)
        return NULL;
    pv->e = e;
    pv->headers = headers;
    pv->n = n;
    pv->h = calloc(n ? n : 1, sizeof(proto_header));
    pv->idx = calloc(n ? n : 1, sizeof(size_t));
    pv->sig = calloc(n ? n : 1, 1);
    pv->runs = calloc(n ? n : 1, sizeof(node_vvrun));
    node_errmsg msg;
    if (pv->h == NULL || pv->idx == NULL || pv->sig == NULL || pv->runs == NULL
        || node_store_read(e->store, hcheck_pick_cb, pv, &msg) != NODE_OK) {
        node_hcheck_free(e, pv);
        return NULL;
    }
    pv->job.fn = hcheck_one;
    pv->job.ctx = pv;
    pv->job.n = pv->nidx;
    node_vpool_submit(e->vpool, &pv->job);
    return pv;
}

/* Wait for the checks (helping), and release the decoded headers. */
static void hcheck_finish(node_engine *e, node_hcheck *pv)
{
    if (pv->finished)
        return;
    if (pv->job.fn != NULL)
        node_vpool_finish(e->vpool, &pv->job);
    for (size_t k = 0; k < pv->nidx; k++)
        proto_header_fini(&pv->h[k]);
    pv->finished = true;
}

const node_vvrun *node_hcheck_runs(const node_hcheck *pv, size_t *n)
{
    *n = pv != NULL ? pv->nruns : 0;
    return pv != NULL ? pv->runs : NULL;
}

bool node_hcheck_ready(node_engine *e, node_hcheck *pv)
{
    return pv == NULL || pv->finished || node_vpool_done(e->vpool, &pv->job);
}

const uint8_t *node_hcheck_results(node_engine *e, node_hcheck *pv)
{
    if (pv == NULL)
        return NULL;
    hcheck_finish(e, pv);
    return pv->sig;
}

void node_hcheck_free(node_engine *e, node_hcheck *pv)
{
    if (pv == NULL)
        return;
    hcheck_finish(e, pv);
    free(pv->h);
    free(pv->idx);
    free(pv->sig);
    free(pv->runs);
    free(pv);
}

node_err node_ingest_headers(
    node_engine *e, const proto_bytes *headers, size_t n, const uint8_t *sig, node_member *from)
{
    node_hcheck *own = NULL;
    if (sig == NULL && n > 0 && (own = node_hcheck_start(e, headers, n)) != NULL)
        sig = node_hcheck_results(e, own);
    node_err err = NODE_OK;
    for (size_t i = 0; i < n && err == NODE_OK; i += INGEST_BATCH) {
        node_ingest_in in = { headers + i, n - i < INGEST_BATCH ? n - i : INGEST_BATCH,
            sig != NULL ? sig + i : NULL, NULL, 0 };
        err = node_ingest(e, &in, from);
    }
    node_hcheck_free(e, own);
    return err;
}

/* After the commit: adopt the clock and log position, keep the headers held out of order,
 * and want the bodies this node may read. */
static node_err ingest_post(node_engine *e, ingest_ctx *c)
{
    e->clock = c->clock;
    e->rejected += c->rejected;
    e->own_seq = c->own_seq;
    memcpy(e->own_last, c->own_last, 32);
    /* Drop consumed pending headers, keep new ones (bounded). */
    size_t w = 0;
    for (size_t i = 0; i < e->npending; i++) {
        if (c->used_pending != NULL && c->used_pending[i])
            free(e->pending[i].bytes);
        else
            e->pending[w++] = e->pending[i];
    }
    e->npending = w;
    for (size_t i = 0; i < c->npend && e->npending < PENDING_MAX; i++) {
        node_pending *p = realloc(e->pending, (e->npending + 1) * sizeof(*p));
        uint8_t *copy = malloc(c->pend[i].len);
        if (p == NULL || copy == NULL) {
            free(copy);
            if (p != NULL)
                e->pending = p;
            break;
        }
        e->pending = p;
        memcpy(copy, c->pend[i].bytes, c->pend[i].len);
        p[e->npending] = c->pend[i];
        p[e->npending].bytes = copy;
        e->npending++;
        own_pending(e, &p[e->npending - 1]);
    }
    node_err err = NODE_OK;
    for (size_t i = 0; i < c->nwants && err == NODE_OK; i++)
        err = want_add(e, c->wants[i].id, c->wants[i].tag, c->wants[i].origin);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Merging                                                                                   */

typedef enum auth { AUTH_OK, AUTH_WAIT, AUTH_NO } auth;

/* Every entry a delta adds must be its author's own event: a dot of the author (a counter
 * entry: of crdt_counter_origin(author, field)); only a redaction names another's event.
 * Otherwise a member could forge entries in another member's name, or take a dot that
 * member will use and make its later delta conflict. */
static bool entries_by(const crdt_scope *delta, const uint8_t author[32])
{
    const crdt_origin *a = (const crdt_origin *)(const void *)author;
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) != CRDT_OK)
            return false;
        if (en.type == CRDT_TIMELINE && en.redacted)
            continue;
        crdt_origin want = *a;
        if (en.type == CRDT_COUNTER) {
            char field[CRDT_FIELD_MAX + 1];
            memcpy(field, en.field.p, en.field.len);
            field[en.field.len] = 0;
            crdt_counter_origin(a, field, &want);
        }
        if (crdt_origin_cmp(&en.dot.origin, &want) != 0)
            return false;
    }
    return true;
}

/* Does the delta write or remove a reserved field (the access map, "@...")? A removal shows
 * only in its context: it covers the dots of state entries it does not carry. */
static bool touches_reserved(const crdt_scope *delta, const crdt_scope *state)
{
    size_t n = crdt_scope_entry_count(delta);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(delta, i, &en) == CRDT_OK && en.field.len > 0
            && en.field.p[0] == '@')
            return true;
    }
    const crdt_cc *cc = crdt_scope_cc(delta);
    n = crdt_scope_entry_count(state);
    for (size_t i = 0; i < n; i++) {
        crdt_entry en;
        if (crdt_scope_entry_at(state, i, &en) == CRDT_OK && en.field.len > 0
            && en.field.p[0] == '@' && crdt_cc_contains(cc, &en.dot))
            return true;
    }
    return false;
}

/* The access a member holds in a scope as of version vector vv: the newest @access event
 * for its org whose dot lies in vv. */
uint8_t node_access_as_of(const crdt_scope *state, const char *org, const crdt_vv_entry *vv,
    size_t nvv, const proto_limits *lim)
{
    size_t n;
    uint8_t level = PROTO_ACCESS_NONE;
    if (crdt_timeline_count(state, PROTO_ACCESS_FIELD, &n) != CRDT_OK)
        return level;
    for (size_t i = 0; i < n; i++) {
        crdt_event ev;
        if (crdt_timeline_at(state, PROTO_ACCESS_FIELD, i, &ev) != CRDT_OK || ev.redacted)
            continue;
        uint64_t max = 0;
        for (size_t k = 0; k < nvv; k++)
            if (memcmp(vv[k].origin.b, ev.id.origin.b, 32) == 0)
                max = vv[k].max;
        if (ev.id.counter > max)
            continue;
        proto_access a;
        if (proto_access_decode(ev.content.p, ev.content.len, lim, &a, NULL) != PROTO_OK)
            continue;
        if (a.grantee.len == strlen(org) && memcmp(a.grantee.p, org, a.grantee.len) == 0)
            level = a.access; /* events come in timeline order: the last one wins */
    }
    return level;
}

static auth authorise(node_engine *e, const ledger_key *k, const crdt_scope *state,
    const uint8_t author[32], const proto_body *plain, const crdt_scope *delta)
{
    if (memcmp(author, k->owner, 32) == 0)
        return AUTH_OK;
    if (touches_reserved(delta, state))
        return AUTH_NO;
    const crdt_cc *cc = crdt_scope_cc(state);
    for (size_t i = 0; i < plain->nvv; i++)
        if (crdt_cc_vv_max(cc, &plain->vv[i].origin) < plain->vv[i].max)
            return AUTH_WAIT;
    node_member *m = node_member_by_origin(e, author);
    if (m == NULL)
        return AUTH_NO;
    return node_access_as_of(state, m->org, plain->vv, plain->nvv, &e->lim) == PROTO_ACCESS_WRITE
        ? AUTH_OK
        : AUTH_NO;
}

typedef struct apply_ctx {
    node_engine *e;
    size_t from, n;   /* the waits tried in this transaction: [from, from + n) */
    wait_reason *why; /* per wait tried: new reason */
    bool *done;       /* per wait tried: merged, refused or not ours: drop it */
    size_t progress;
    size_t refused;
} apply_ctx;

/* Try to merge one waiting body. Sets *done or *why. */
static node_err apply_one(
    node_txn *t, apply_ctx *c, const node_wait *w, bool *done, wait_reason *why)
{
    node_engine *e = c->e;
    *done = false;
    *why = w->why;
    if (ledger_applied_get(t, w->id) != 0) {
        *done = true;
        return NODE_OK;
    }
    if (w->kind == PROTO_HDR_DELTA) {
        /* Most waits wait for their key: tell that without decoding anything. */
        ledger_key probe;
        bool have = ledger_key_get(t, w->tag, &probe) == NODE_OK;
        proto_wipe(&probe, sizeof(probe));
        if (!have) {
            *why = WAIT_KEY;
            return NODE_OK;
        }
    }
    const void *hb, *bb;
    size_t hl, bl;
    if (ledger_header_by_id(t, w->id, &hb, &hl) != NODE_OK
        || ledger_body_get(t, w->id, &bb, &bl) != NODE_OK) {
        *done = true;
        return NODE_OK;
    }
    proto_header h;
    if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
        return NODE_ECORRUPT;
    node_err err = NODE_OK;
    proto_diag diag = { 0, "" };
    char who[65];
    proto_hex_encode(h.origin, 32, who);
    if (h.kind == PROTO_HDR_KEY_GRANT) {
        proto_scope_key *sk = NULL;
        proto_err perr = proto_key_grant_open(&h, e->me, bb, bl, &e->lim, &sk, &diag);
        if (perr == PROTO_ENOTRECIPIENT) {
            *done = true;
            goto out;
        }
        if (perr != PROTO_OK) {
            NODE_WARN("grant.reject", "origin=%s seq=%" PRIu64 " reason=\"%s\" detail=\"%s\"", who,
                h.seq, proto_strerror(perr), diag.reason);
            err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
            *done = true;
            c->refused++;
            goto out;
        }
        ledger_key k;
        memset(&k, 0, sizeof(k));
        memcpy(k.tag, proto_scope_key_tag(sk), 32);
        k.case_id = *proto_scope_key_case(sk);
        snprintf(k.scope, sizeof(k.scope), "%s", proto_scope_key_scope(sk));
        k.epoch = proto_scope_key_epoch(sk);
        memcpy(k.owner, h.origin, 32);
        proto_scope_key_export(sk, k.key);
        proto_scope_key_free(sk);
        err = ledger_key_put(t, &k);
        proto_wipe(&k, sizeof(k));
        if (err == NODE_OK)
            err = ledger_applied_put(t, w->id, LEDGER_APPLIED);
        *done = true;
        c->progress++;
        goto out;
    }
    ledger_key k;
    if (ledger_key_get(t, h.tag, &k) != NODE_OK) {
        *why = WAIT_KEY;
        goto out;
    }
    uint64_t now = node_now_ms();
    if (h.hlc.wall > now && h.hlc.wall - now > e->cfg.max_clock_ahead_ms) {
        if (*why != WAIT_CLOCK) {
            node_member *m = node_member_by_origin(e, h.origin);
            NODE_WARN("delta.wait",
                "org=%s seq=%" PRIu64 " reason=\"clock ahead\" ahead_ms=%" PRIu64, m ? m->org : who,
                h.seq, h.hlc.wall - now);
        }
        *why = WAIT_CLOCK;
        proto_wipe(&k, sizeof(k));
        goto out;
    }
    proto_scope_key *sk = NULL;
    if ((err = node_keycache_get(e, &k, &sk)) != NODE_OK) {
        proto_wipe(&k, sizeof(k));
        goto out;
    }
    proto_body plain;
    proto_err perr = proto_body_open(&h, sk, bb, bl, &e->lim, &plain, &diag);
    if (perr != PROTO_OK) {
        NODE_WARN("delta.reject", "origin=%s seq=%" PRIu64 " reason=\"%s\" detail=\"%s\"", who,
            h.seq, proto_strerror(perr), diag.reason);
        err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
        c->refused++;
        proto_wipe(&k, sizeof(k));
        goto out;
    }
    if (plain.kind != PROTO_BODY_DELTA) {
        /* Erasure (forget) is later work: keep the body, merge nothing. */
        NODE_WARN("delta.skip", "origin=%s seq=%" PRIu64 " reason=\"forget not implemented\"", who,
            h.seq);
        err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
        goto done_plain;
    }
    crdt_scope *delta = NULL, *state = NULL;
    if (proto_scope_decode(plain.delta.p, plain.delta.len, &e->lim, NULL, &delta, &diag)
        != PROTO_OK) {
        NODE_WARN(
            "delta.reject", "origin=%s seq=%" PRIu64 " reason=\"bad scope encoding\"", who, h.seq);
        err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
        c->refused++;
        goto done_plain;
    }
    if (!entries_by(delta, h.origin)) {
        NODE_WARN("delta.reject",
            "origin=%s seq=%" PRIu64 " reason=\"an entry carries another member's dot\"", who,
            h.seq);
        err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
        c->refused++;
        goto done_scopes;
    }
    if ((err = ledger_state_get(t, h.tag, &e->lim, &state)) != NODE_OK)
        goto done_scopes;
    auth a = authorise(e, &k, state, h.origin, &plain, delta);
    if (a == AUTH_WAIT) {
        *why = WAIT_CAUSAL;
        goto done_scopes;
    }
    if (a == AUTH_NO) {
        node_member *m = node_member_by_origin(e, h.origin);
        NODE_WARN("delta.refuse",
            "org=%s seq=%" PRIu64 " scope=%s reason=\"no write grant in the delta's "
            "causal past\"",
            m ? m->org : "?", h.seq, k.scope);
        err = ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = true;
        c->refused++;
        goto done_scopes;
    }
    crdt_err cerr = crdt_scope_join(state, delta);
    if (cerr != CRDT_OK) {
        NODE_WARN("delta.reject", "origin=%s seq=%" PRIu64 " reason=\"%s\"", who, h.seq,
            crdt_strerror(cerr));
        err = cerr == CRDT_ENOMEM ? NODE_ENOMEM : ledger_applied_put(t, w->id, LEDGER_REFUSED);
        *done = err == NODE_OK;
        goto done_scopes;
    }
    if ((err = ledger_state_put(t, h.tag, state, node_now_ms())) == NODE_OK
        && (err = ledger_applied_put(t, w->id, LEDGER_APPLIED)) == NODE_OK) {
        *done = true;
        c->progress++;
    }
done_scopes:
    crdt_scope_free(delta);
    crdt_scope_free(state);
done_plain:
    proto_body_fini(&plain);
    proto_wipe(&k, sizeof(k));
out:
    proto_header_fini(&h);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Bodies                                                                                    */

/* A BODIES message is stored and merged in one transaction: a key grant and the deltas under
 * it usually come in the same message, and a second transaction (and its fsync) per message
 * was a large share of a syncing node's time. What cannot be merged yet joins the waits. */
typedef struct bodies_ctx {
    node_engine *e;
    const proto_body_item *items;
    size_t n;
    bool *stored; /* per item */
    uint8_t (*tags)[32];
    uint8_t *kinds;
    node_wait *w;     /* per item: the wait it would be */
    bool *done;       /* per item: merged, refused or not ours */
    wait_reason *why; /* per item not done: what it waits for */
    apply_ctx a;
} bodies_ctx;

static node_err bodies_cb(node_txn *t, void *ctx)
{
    bodies_ctx *c = ctx;
    node_engine *e = c->e;
    const uint8_t *me = proto_identity_origin(e->me);
    for (size_t i = 0; i < c->n; i++) {
        c->stored[i] = false;
        const proto_body_item *it = &c->items[i];
        if (ledger_body_has(t, it->header_id))
            continue;
        const void *hb;
        size_t hl;
        if (ledger_header_by_id(t, it->header_id, &hb, &hl) != NODE_OK)
            continue; /* no header yet: the body comes again with anti-entropy */
        proto_header h;
        if (proto_header_decode(hb, hl, &e->lim, &h, NULL) != PROTO_OK)
            return NODE_ECORRUPT;
        bool ok;
        if (h.kind == PROTO_HDR_KEY_GRANT) {
            ok = false;
            for (size_t r = 0; r < h.nrecipients; r++)
                ok = ok || memcmp(h.recipients[r].b, me, 32) == 0;
        } else {
            ok = reads_tag(t, e, h.tag);
        }
        proto_err perr = ok ? proto_body_check(&h, it->body.p, it->body.len) : PROTO_OK;
        memcpy(c->tags[i], h.tag, 32);
        c->kinds[i] = h.kind;
        proto_header_fini(&h);
        if (!ok)
            continue; /* not ours to hold: never store what we may not read */
        if (perr != PROTO_OK) {
            NODE_WARN("body.reject", "reason=\"%s\"", proto_strerror(perr));
            continue;
        }
        node_err err = ledger_body_put(t, it->header_id, it->body.p, it->body.len);
        if (err != NODE_OK)
            return err;
        c->stored[i] = true;
    }
    /* Merge what was stored; passes repeat while they merge something (a grant, then the
     * deltas under its key, then those that depend on them). */
    c->a.progress = c->a.refused = 0;
    for (size_t i = 0; i < c->n; i++) {
        c->done[i] = !c->stored[i];
        c->why[i] = WAIT_KEY;
        memcpy(c->w[i].id, c->items[i].header_id, 32);
        memcpy(c->w[i].tag, c->tags[i], 32);
        c->w[i].kind = c->kinds[i];
    }
    for (size_t pass = 0; pass < 8; pass++) {
        size_t before = c->a.progress;
        for (size_t i = 0; i < c->n; i++) {
            if (c->done[i])
                continue;
            c->w[i].why = c->why[i];
            node_err err = apply_one(t, &c->a, &c->w[i], &c->done[i], &c->why[i]);
            if (err != NODE_OK)
                return err;
        }
        if (c->a.progress == before)
            break;
    }
    return NODE_OK;
}

/* Headers and bodies from peers, stored in one transaction: the headers first, so that the
 * bodies find theirs. */
typedef struct group_ctx {
    ingest_ctx h;
    bodies_ctx b;
} group_ctx;

static node_err group_cb(node_txn *t, void *ctx)
{
    group_ctx *g = ctx;
    node_err err = g->h.n > 0 ? ingest_cb(t, &g->h) : NODE_OK;
    if (err == NODE_OK && g->b.n > 0)
        err = bodies_cb(t, &g->b);
    return err;
}

node_err node_ingest(node_engine *e, const node_ingest_in *in, node_member *from)
{
    size_t k = in->nbodies ? in->nbodies : 1;
    group_ctx g = { .h = { .e = e, .headers = in->headers, .n = in->nheaders, .sig = in->sig },
        .b = { .e = e,
            .items = in->bodies,
            .n = in->nbodies,
            .stored = calloc(k, sizeof(bool)),
            .tags = calloc(k, sizeof(*g.b.tags)),
            .kinds = calloc(k, 1),
            .w = calloc(k, sizeof(node_wait)),
            .done = calloc(k, sizeof(bool)),
            .why = calloc(k, sizeof(wait_reason)) } };
    g.b.a.e = e;
    node_err err = NODE_ENOMEM;
    if (g.b.stored == NULL || g.b.tags == NULL || g.b.kinds == NULL || g.b.w == NULL
        || g.b.done == NULL || g.b.why == NULL)
        goto out;
    if (in->nheaders > 0 && e->npending > 0
        && (g.h.used_pending = calloc(e->npending, sizeof(bool))) == NULL)
        goto out;
    node_errmsg msg;
    if ((err = node_store_write(e->store, group_cb, &g, &msg)) != NODE_OK) {
        NODE_ERROR("ingest.fail", "peer=%s headers=%zu bodies=%zu error=\"%s\"",
            from ? from->org : "?", in->nheaders, in->nbodies, msg.text);
        goto out;
    }
    if (in->nheaders > 0 && (err = ingest_post(e, &g.h)) != NODE_OK)
        goto out;
    if (in->nbodies == 0)
        goto out;
    e->refused += g.b.a.refused;
    for (size_t i = 0; i < in->nbodies; i++) {
        if (!g.b.stored[i])
            continue;
        want_remove(e, in->bodies[i].header_id);
        if (g.b.done[i])
            continue;
        if ((err = wait_add(e, in->bodies[i].header_id, g.b.tags[i], g.b.kinds[i])) != NODE_OK)
            goto out;
        e->waits[idset_get(&e->wait_ix, in->bodies[i].header_id)].why = g.b.why[i];
    }
    node_retry_waits(e); /* older waits may follow what was merged */
out:
    free(g.h.wants);
    free(g.h.pend);
    free(g.h.used_pending);
    free(g.b.stored);
    free(g.b.tags);
    free(g.b.kinds);
    free(g.b.w);
    free(g.b.done);
    free(g.b.why);
    return err;
}

node_err node_ingest_bodies(
    node_engine *e, const proto_body_item *items, size_t n, node_member *from)
{
    node_ingest_in in = { NULL, 0, NULL, items, n };
    return node_ingest(e, &in, from);
}

static node_err apply_cb(node_txn *t, void *ctx)
{
    apply_ctx *c = ctx;
    c->progress = c->refused = 0;
    for (size_t i = 0; i < c->n; i++) {
        node_err err = apply_one(t, c, &c->e->waits[c->from + i], &c->done[i], &c->why[i]);
        if (err != NODE_OK)
            return err;
    }
    return NODE_OK;
}

/* Bodies tried in one transaction (1024: about 60 ms of work, one fsync), and in one call
 * (one loop turn): a large backlog (a key that unlocks thousands of bodies, a restart) is
 * merged over several turns, so that the loop keeps answering peers and operators meanwhile. */
#define APPLY_BATCH 1024
#define APPLY_TURN 2048

static void retry_idle_cb(uv_idle_t *h)
{
    node_engine *e = h->data;
    uv_idle_stop(h);
    if (!e->stopping)
        node_retry_waits(e);
}

/* One transaction over waits [from, from + n). Returns how many were merged (or refused, or
 * found not ours), or SIZE_MAX on error; the list is compacted. */
static size_t apply_batch(node_engine *e, size_t from, size_t n)
{
    apply_ctx c
        = { e, from, n, calloc(n ? n : 1, sizeof(wait_reason)), calloc(n ? n : 1, 1), 0, 0 };
    size_t finished = SIZE_MAX;
    node_errmsg msg;
    if (c.why == NULL || c.done == NULL)
        goto out;
    if (node_store_write(e->store, apply_cb, &c, &msg) != NODE_OK) {
        NODE_ERROR("apply.fail", "error=\"%s\"", msg.text);
        goto out;
    }
    e->refused += c.refused;
    size_t w = from;
    finished = 0;
    for (size_t i = 0; i < n; i++) {
        if (c.done[i]) {
            finished++;
            continue;
        }
        e->waits[from + i].why = c.why[i];
        e->waits[w++] = e->waits[from + i];
    }
    memmove(&e->waits[w], &e->waits[from + n], (e->nwaits - from - n) * sizeof(*e->waits));
    e->nwaits -= finished;
    e->apply_progress += c.progress;
out:
    free(c.why);
    free(c.done);
    return finished;
}

void node_retry_waits(node_engine *e)
{
    /* Passes go round the list from a cursor; each pass may unlock the next (a key, then the
     * deltas under it, then those that depend on them): repeat while passes make progress,
     * within APPLY_TURN tries per call, and continue on the next loop turn when it is used up. */
    size_t budget = APPLY_TURN;
    if (e->retry_at == 0)
        e->apply_progress = 0;
    while (e->nwaits > 0 && budget > 0) {
        if (e->retry_at >= e->nwaits) {
            /* A pass ended: another one only if it merged something. */
            e->retry_at = 0;
            if (e->apply_progress == 0)
                break;
            e->apply_progress = 0;
            if (++e->retry_passes >= 64)
                break;
        }
        size_t n = e->nwaits - e->retry_at;
        if (n > APPLY_BATCH)
            n = APPLY_BATCH;
        if (n > budget)
            n = budget;
        size_t finished = apply_batch(e, e->retry_at, n);
        if (finished == SIZE_MAX)
            break;
        budget -= n;
        e->retry_at += n - finished;
    }
    bool more = e->nwaits > 0 && budget == 0 && e->retry_passes < 64;
    if (!more) {
        e->retry_at = 0;
        e->retry_passes = 0;
        e->apply_progress = 0;
    }
    if (waits_reindex(e) != NODE_OK)
        NODE_ERROR("apply.fail", "error=\"out of memory indexing waiting bodies\"");
    if (more && e->timers_on && !e->stopping) {
        e->retry_idle.data = e;
        uv_idle_start(&e->retry_idle, retry_idle_cb);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Start                                                                                     */

typedef struct load_ctx {
    node_engine *e;
    node_want *wants;
    size_t nwants;
    node_wait *waits;
    size_t nwaits;
    node_txn *t;
    bool oom;
} load_ctx;

static bool load_tag_cb(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)v, (void)vl;
    load_ctx *c = ctx;
    if (kl != 65)
        return true;
    const uint8_t *tag = (const uint8_t *)k + 1, *id = (const uint8_t *)k + 33;
    bool has_body = ledger_body_has(c->t, id);
    if (has_body && ledger_applied_get(c->t, id) == 0) {
        node_wait *w = realloc(c->waits, (c->nwaits + 1) * sizeof(*w));
        if (w == NULL) {
            c->oom = true;
            return false;
        }
        c->waits = w;
        memcpy(w[c->nwaits].id, id, 32);
        memcpy(w[c->nwaits].tag, tag, 32);
        w[c->nwaits].why = WAIT_KEY;
        w[c->nwaits].kind = 0; /* unknown until tried: apply_one decodes it */
        c->nwaits++;
    } else if (!has_body) {
        const void *hb;
        size_t hl;
        proto_header h;
        if (ledger_header_by_id(c->t, id, &hb, &hl) != NODE_OK
            || proto_header_decode(hb, hl, &c->e->lim, &h, NULL) != PROTO_OK)
            return true;
        bool want = false;
        const uint8_t *me = proto_identity_origin(c->e->me);
        if (h.kind == PROTO_HDR_KEY_GRANT) {
            for (size_t r = 0; r < h.nrecipients; r++)
                want = want || memcmp(h.recipients[r].b, me, 32) == 0;
        } else {
            want = reads_tag(c->t, c->e, tag);
        }
        if (want) {
            node_want *w = realloc(c->wants, (c->nwants + 1) * sizeof(*w));
            if (w == NULL) {
                c->oom = true;
                proto_header_fini(&h);
                return false;
            }
            c->wants = w;
            memcpy(w[c->nwants].id, id, 32);
            memcpy(w[c->nwants].tag, tag, 32);
            memcpy(w[c->nwants].origin, h.origin, 32);
            w[c->nwants].since_ms = 0; /* missing since before the start: ask at once */
            w[c->nwants].asked_ms = 0;
            c->nwants++;
        }
        proto_header_fini(&h);
    }
    return true;
}

static node_err load_cb(node_txn *t, void *ctx)
{
    load_ctx *c = ctx;
    node_engine *e = c->e;
    c->t = t;
    node_err err;
    if ((err = ledger_own_get(t, &e->own_seq, e->own_last)) != NODE_OK
        || (err = ledger_hlc_get(t, &e->clock)) != NODE_OK)
        return err;
    /* The next sequence number is one past the highest of our own headers held here, whether
     * this node wrote it or it came back from a peer after a restore from an older copy. */
    uint8_t last[32];
    uint64_t held = ledger_vv_last(t, proto_identity_origin(e->me), last);
    if (held > e->own_seq) {
        NODE_WARN("own.behind",
            "seq=%" PRIu64 " own_seq=%" PRIu64 " detail=\"the store holds newer headers of this "
            "node's log than its own position; continuing after them\"",
            held, e->own_seq);
        e->own_seq = held;
        memcpy(e->own_last, last, 32);
    }
    if ((err = node_txn_scan(t, NODE_DB_HEADERS, "T", 1, load_tag_cb, c)) != NODE_OK)
        return err;
    return c->oom ? NODE_ENOMEM : NODE_OK;
}

typedef struct manifest_read {
    uint8_t *bytes;
    size_t len;
} manifest_read;

static node_err manifest_read_cb(node_txn *t, void *ctx)
{
    manifest_read *r = ctx;
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_MANIFEST, "current", 7, &v, &n);
    if (err != NODE_OK)
        return err;
    if ((r->bytes = malloc(n)) == NULL)
        return NODE_ENOMEM;
    memcpy(r->bytes, v, n);
    r->len = n;
    return NODE_OK;
}

static node_err migrate_cb(node_txn *t, void *ctx)
{
    return ledger_migrate(t, ctx);
}

node_err node_manifest_load(node_engine *e, node_errmsg *msg)
{
    manifest_read r = { NULL, 0 };
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
    else if ((err = node_manifest_fits(e, &m, msg)) != NODE_OK)
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
    return NODE_OK;
}

node_err node_engine_load(node_engine *e, node_errmsg *msg)
{
    size_t moved = 0;
    node_err err0 = node_store_write(e->store, migrate_cb, &moved, msg);
    if (err0 != NODE_OK)
        return err0;
    if (moved > 0)
        NODE_INFO("store.migrate",
            "records=%zu detail=\"bodies and applied marks keyed by log "
            "place\"",
            moved);
    node_err err = node_manifest_load(e, msg);
    if (err == NODE_OK && (err = node_config_dials_fit(e, &e->manifest, msg)) == NODE_OK)
        err = members_rebuild(e);
    if (err != NODE_OK && err != NODE_ENOTFOUND)
        return err;
    load_ctx c = { .e = e };
    if ((err = node_store_read(e->store, load_cb, &c, msg)) != NODE_OK) {
        free(c.wants);
        free(c.waits);
        return err;
    }
    e->wants = c.wants;
    e->nwants = c.nwants;
    e->waits = c.waits;
    e->nwaits = c.nwaits;
    for (size_t i = 0; i < e->nwants; i++)
        if (!idset_put(&e->want_ix, e->wants[i].id, i))
            return NODE_ENOMEM;
    if ((err = waits_reindex(e)) != NODE_OK)
        return err;
    node_retry_waits(e);
    return NODE_OK;
}
