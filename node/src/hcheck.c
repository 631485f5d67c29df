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
