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
 * starts (a header ingested meanwhile is simply checked for nothing). */
struct node_hcheck {
    node_vjob job;
    node_engine *e;
    node_hdr *hdrs; /* borrowed */
    size_t n;
    size_t *idx; /* which headers are checked, [nidx] */
    size_t nidx;
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
        if (pv->hdrs[i].sig == SIG_UNKNOWN && h->seq > node__ledger_vv_get(t, h->origin))
            pv->idx[pv->nidx++] = i;
    }
    return NODE_OK;
}

static void hcheck_one(void *ctx, size_t k)
{
    node_hcheck *pv = ctx;
    node_hdr *hd = &pv->hdrs[pv->idx[k]];
    hd->sig = proto_header_verify(&hd->h) == PROTO_OK ? SIG_GOOD : SIG_BAD;
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
    pv->runs = calloc(n ? n : 1, sizeof(node_vvrun));
    node_errmsg msg;
    if (pv->idx == NULL || pv->runs == NULL
        || node_store_read(e->store, hcheck_pick_cb, pv, &msg) != NODE_OK) {
        node__hcheck_free(e, pv);
        return NULL;
    }
    pv->job.fn = hcheck_one;
    pv->job.ctx = pv;
    pv->job.n = pv->nidx;
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
    free(pv->runs);
    free(pv);
}
