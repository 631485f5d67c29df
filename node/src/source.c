/*
 * Which peer an origin's headers are asked of. A node that comes back after a while (or whose
 * peers wrote while apart) sends its version vector to every peer that is up, and each would
 * answer with every header it holds beyond it: in a network of three, the same headers came
 * twice, once from their author and once relayed by the third node (15,000 of the 25,000
 * headers of the peers' workload's incremental sync).
 *
 * So a version vector names the origins its receiver is not to send (PROTOCOL.md, "Sync
 * messages": skip): those whose author is up (or, within a second of this node's first session
 * since its start, not heard from yet: its link is probably a moment behind) and is not known to
 * lag, unless the receiver claims more of that log than its author does. Such a log comes from its
 * author alone. Every other origin (its author down, or relayed further than its author claims) is
 * asked of every peer, as before. An author that claims more of its own log than this node holds,
 * and sends none of it for two anti-entropy ticks in a row, is slow: its log is asked of every peer
 * that claims more of it, until it owes nothing; an author that goes down (or never came up) after
 * others were told to skip its log has it asked of them at the next tick. A modified author can
 * only delay its own log this way (and only as far as it claims), never a log another member wrote.
 * Also the one lookup of an origin in a version vector (node__vv_find). May call: link.c
 * (nothing that sends: sync.c does the asking).
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* Ticks in a row without progress after which an author that owes its log is slow. */
#define SLOW_TICKS 2
/* Until this long after this node's first session since its start came up, a member it has
 * not heard from yet is taken to be coming up: links come up one by one, and a version vector
 * sent on the first would otherwise ask that peer for the logs of authors whose links are a
 * moment behind. (From the first session, not from the start: opening a large store takes
 * longer than that.) */
#define START_GRACE_MS 1000

const proto_vv_item *node__vv_find(const proto_vv_item *vv, size_t n, const uint8_t origin[32])
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(vv[mid].origin, origin, 32);
        if (c == 0)
            return &vv[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t node__vv_seq(const proto_vv_item *vv, size_t n, const uint8_t origin[32])
{
    const proto_vv_item *it = node__vv_find(vv, n, origin);
    return it != NULL ? it->seq : 0;
}

/* How far m claims the log of origin runs (its last version vector). */
static uint64_t claim_of(const node_member *m, const uint8_t origin[32])
{
    return node__vv_seq(m->vv, m->nvv, origin);
}

/* The manifest's entry for member p (the member table follows the manifest's order). */
static const proto_member *listed(const node_engine *e, const node_member *p)
{
    size_t k = (size_t)(p - e->members);
    return e->have_manifest && k < e->manifest.nmembers ? &e->manifest.members[k] : NULL;
}

/* Is p a peer not heard from since this node started, within START_GRACE_MS of its first
 * session? */
static bool coming(node_engine *e, const node_member *p)
{
    return p->active && p->last_heard_ms == 0
        && (e->first_up_ms == 0 || node__mono(e) - e->first_up_ms < START_GRACE_MS);
}

/* Does p serve its own log to this node: a peer, up (or coming), not slow? */
static bool serves(node_engine *e, const node_member *p)
{
    return !p->self && !p->slow && (node__link_up_to(e, p) != NULL || coming(e, p));
}

static int origin_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

node_err node__source_skip(
    node_engine *e, const node_member *to, proto_hash_bytes **skip, size_t *nskip)
{
    *skip = NULL;
    *nskip = 0;
    size_t total = 0; /* at most every key the manifest lists: 65,536 (4,096 members x 16) */
    for (size_t k = 0; k < e->nmembers; k++) {
        const proto_member *pm = listed(e, &e->members[k]);
        total += pm != NULL ? pm->nkeys : 0;
    }
    if (total == 0)
        return NODE_OK;
    proto_hash_bytes *out = calloc(total, sizeof(*out));
    if (out == NULL)
        return NODE_ENOMEM;
    size_t n = 0;
    for (size_t k = 0; k < e->nmembers; k++) {
        node_member *p = &e->members[k];
        const proto_member *pm = listed(e, p);
        if (pm == NULL || p == to || !serves(e, p))
            continue;
        for (size_t j = 0; j < pm->nkeys; j++) {
            const uint8_t *o = pm->keys[j].origin;
            /* An author that has not said what it holds yet is taken to hold all it wrote. */
            uint64_t theirs = p->vv_seen ? claim_of(p, o) : UINT64_MAX;
            if (claim_of(to, o) > theirs)
                continue; /* to holds more of this log than its author says it does */
            memcpy(out[n++].b, o, 32);
            p->skipped = true;
        }
    }
    qsort(out, n, sizeof(*out), origin_cmp);
    *skip = out;
    *nskip = n;
    return NODE_OK;
}

void node__source_take(node_member *m, const proto_vv_msg *v)
{
    proto_hash_bytes *copy = v->nskip > 0 ? malloc(v->nskip * sizeof(*copy)) : NULL;
    if (v->nskip > 0 && copy == NULL)
        return; /* keep the last one: at worst m gets some headers twice */
    if (copy != NULL)
        memcpy(copy, v->skip, v->nskip * sizeof(*copy));
    free(m->skip);
    m->skip = copy;
    m->nskip = copy != NULL ? v->nskip : 0;
}

bool node__source_skipped(const node_member *m, const uint8_t origin[32])
{
    return m->nskip > 0 && bsearch(origin, m->skip, m->nskip, sizeof(*m->skip), origin_cmp) != NULL;
}

bool node__source_judge(node_engine *e, node_member *p, const proto_vv_item *held, size_t n)
{
    const proto_member *pm = listed(e, p);
    if (pm == NULL || p->self || coming(e, p))
        return false;
    bool up = node__link_up_to(e, p) != NULL;
    uint64_t progress = 0;
    bool owes = false;
    for (size_t j = 0; j < pm->nkeys; j++) {
        uint64_t h = node__vv_seq(held, n, pm->keys[j].origin);
        progress += h;
        owes = owes || (p->vv_seen && claim_of(p, pm->keys[j].origin) > h);
    }
    if (!up || !owes) {
        p->slow = false;
        p->stalls = 0;
    } else if (progress != p->owed_held) {
        p->stalls = 0;
    } else if (++p->stalls >= SLOW_TICKS && !p->slow) {
        p->slow = true;
        NODE_INFO("sync.slow",
            "org=%s detail=\"it claims more of its own log than it sends: its log is asked of "
            "the other peers too\"",
            p->org);
    }
    p->owed_held = progress;
    /* Others were told to skip its log, and it no longer serves it: they are asked now. */
    bool reask = p->skipped && (!up || p->slow);
    if (reask || !up)
        p->skipped = false;
    return reask;
}

bool node__source_claims_more(const node_engine *e, const node_member *m, const node_member *p,
    const proto_vv_item *held, size_t n)
{
    const proto_member *pm = listed(e, p);
    for (size_t j = 0; pm != NULL && j < pm->nkeys; j++)
        if (claim_of(m, pm->keys[j].origin) > node__vv_seq(held, n, pm->keys[j].origin))
            return true;
    return false;
}
