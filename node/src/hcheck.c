/*
 * The header-check pipeline: the Ed25519 signatures of a batch of HEADERS are checked on the
 * worker threads (vpool.c) while the loop thread does other work, and ingest trusts the
 * results. May call: vpool.c, state.c (members), ledger.c, proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Signature checks of a batch, done on the worker threads before the write transaction (which
 * runs on the loop thread alone). Only headers that ingest_one would verify are checked:
 * from a member, not quarantined, beyond what this node holds of that origin when the check
 * starts (a header ingested meanwhile is simply checked for nothing).
 *
 * Runs, not headers (PROTOCOL.md section 9): a header is authentic when its own signature
 * verifies or when the next header of its origin is authentic and names its id as prev (the id
 * covers the signature). The checked headers are cut into runs, each the next seq of one origin
 * naming the previous one's id, of at most RUN_MAX headers; a run whose last signature verifies
 * is authentic whole, one check instead of RUN_MAX. When it fails, the run's headers are checked
 * one by one from the top: the first that verifies is authentic with all below it, those above
 * it are not. The verdict is the same as checking every header and then passing authenticity
 * down the chain (`[sync] verify_each_signature = 1` does that; a test compares both), and a
 * message of bad signatures costs what it cost before: one check per header. */
#define RUN_MAX 256
struct node_hcheck {
    node_vjob job;
    node_engine *e;
    node_hdr *hdrs; /* borrowed */
    size_t n;
    size_t *idx; /* which headers are checked, [nidx], in runs */
    size_t nidx;
    size_t *run_at; /* where each run starts in idx, [nrun + 1] (the last: nidx) */
    size_t nrun;
    node_vvrun *runs; /* of every header that decodes, [nruns] */
    size_t nruns;
    bool finished;
};

node_hdr *node__hdrs_decode(node_engine *e, const proto_bytes *bytes, size_t n)
{
    node_hdr *hs = calloc(n ? n : 1, sizeof(*hs));
    if (hs == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        hs[i].bytes = bytes[i];
        hs[i].perr = proto_header_decode(bytes[i].p, bytes[i].len, &e->lim, &hs[i].h, &hs[i].diag);
        hs[i].sig = SIG_UNKNOWN;
    }
    return hs;
}

void node__hdrs_free(node_hdr *hs, size_t n)
{
    for (size_t i = 0; hs != NULL && i < n; i++)
        if (hs[i].perr == PROTO_OK)
            proto_header_fini(&hs[i].h);
    free(hs);
}

static node_err hcheck_pick_cb(node_txn *t, void *ctx)
{
    node_hcheck *pv = ctx;
    for (size_t i = 0; i < pv->n; i++) {
        const proto_header *h = &pv->hdrs[i].h;
        if (pv->hdrs[i].perr != PROTO_OK || node__author(pv->e, h->origin, NULL) == NULL
            || node__ledger_quarantined(t, h->origin))
            continue;
        node_vvrun *r = pv->nruns > 0 ? &pv->runs[pv->nruns - 1] : NULL;
        if (r != NULL && memcmp(r->origin, h->origin, 32) == 0 && h->seq == r->last + 1) {
            r->last = h->seq;
        } else {
            r = &pv->runs[pv->nruns++];
            memcpy(r->origin, h->origin, 32);
            r->first = r->last = h->seq;
        }
        memcpy(r->last_id, h->id, 32);
        if (pv->hdrs[i].sig != SIG_UNKNOWN || h->seq <= node__ledger_vv_get(t, h->origin))
            continue;
        const proto_header *below = pv->nidx > 0 ? &pv->hdrs[pv->idx[pv->nidx - 1]].h : NULL;
        bool chained = below != NULL && pv->nidx - pv->run_at[pv->nrun - 1] < RUN_MAX
            && below->seq + 1 == h->seq && memcmp(below->origin, h->origin, 32) == 0
            && memcmp(below->id, h->prev, 32) == 0;
        if (!chained)
            pv->run_at[pv->nrun++] = pv->nidx;
        pv->idx[pv->nidx++] = i;
    }
    pv->run_at[pv->nrun] = pv->nidx;
    return NODE_OK;
}

static bool own_sig(const node_hdr *hd)
{
    return proto_header_verify(&hd->h) == PROTO_OK;
}

/* Run k: its headers idx[run_at[k] .. run_at[k + 1]), each the next of the one before. */
static void hcheck_run(void *ctx, size_t k)
{
    node_hcheck *pv = ctx;
    const size_t *v = pv->idx + pv->run_at[k];
    size_t n = pv->run_at[k + 1] - pv->run_at[k];
    if (pv->e->cfg.verify_each) {
        /* every signature checked; authenticity passed down from the top */
        bool up = false;
        for (size_t j = n; j-- > 0;) {
            node_hdr *hd = &pv->hdrs[v[j]];
            up = own_sig(hd) || up;
            hd->sig = up ? SIG_GOOD : SIG_BAD;
        }
        return;
    }
    /* from the top: the first header that verifies vouches for every one below it */
    size_t good = n;
    for (size_t j = n; j-- > 0;)
        if (own_sig(&pv->hdrs[v[j]])) {
            good = j;
            break;
        }
    for (size_t j = 0; j < n; j++)
        pv->hdrs[v[j]].sig = good != n && j <= good ? SIG_GOOD : SIG_BAD;
}

node_hcheck *node__hcheck_start(node_engine *e, node_hdr *hdrs, size_t n)
{
    node_hcheck *pv = calloc(1, sizeof(*pv));
    if (pv == NULL)
        return NULL;
    pv->e = e;
    pv->hdrs = hdrs;
    pv->n = n;
    pv->idx = calloc(n ? n : 1, sizeof(size_t));
    pv->run_at = calloc(n + 1, sizeof(size_t));
    pv->runs = calloc(n ? n : 1, sizeof(node_vvrun));
    node_errmsg msg;
    if (pv->idx == NULL || pv->run_at == NULL || pv->runs == NULL
        || node_store_read(e->store, hcheck_pick_cb, pv, &msg) != NODE_OK) {
        node__hcheck_free(e, pv);
        return NULL;
    }
    pv->job.fn = hcheck_run;
    pv->job.ctx = pv;
    pv->job.n = pv->nrun;
    node__vpool_submit(e->vpool, &pv->job);
    return pv;
}

void node__hcheck_wait(node_engine *e, node_hcheck *pv)
{
    if (pv == NULL || pv->finished)
        return;
    if (pv->job.fn != NULL)
        node__vpool_finish(e->vpool, &pv->job);
    pv->finished = true;
}

const node_vvrun *node__hcheck_runs(const node_hcheck *pv, size_t *n)
{
    *n = pv != NULL ? pv->nruns : 0;
    return pv != NULL ? pv->runs : NULL;
}

bool node__hcheck_ready(node_engine *e, node_hcheck *pv)
{
    return pv == NULL || pv->finished || node__vpool_done(e->vpool, &pv->job);
}

void node__hcheck_free(node_engine *e, node_hcheck *pv)
{
    if (pv == NULL)
        return;
    node__hcheck_wait(e, pv);
    free(pv->idx);
    free(pv->run_at);
    free(pv->runs);
    free(pv);
}
