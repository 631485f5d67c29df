/*
 * Key grants opened on the worker threads. Opening a grant sealed to this node (an X25519 and a
 * box open, about 60 us) was the largest single cost of a catch-up on the loop thread, which
 * does everything else of the ingest alone. A BODIES message, when it is queued (inq.c), starts
 * the opening of the key grants in it that carry this node's slot, for those whose header is in
 * the HEADERS message queued before it from the same connection (a version-vector answer sends
 * each part's headers, then its bodies). The workers open them while the loop ingests what came
 * before; when the message's group is ingested, apply.c takes the opened grant instead of
 * opening it (node__gopen_take), with the same checks after. A grant not found there (its header
 * came earlier, the group was rerun, out of memory) is opened on the loop as before.
 * May call: vpool.c, keycache.c, state.c (members), idset.c, proto.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct gopen_item {
    uint8_t *hb;         /* a copy of the header's bytes: its message may be ingested first */
    proto_header h;      /* decoded from hb */
    const uint8_t *body; /* borrowed from the BODIES message, which owns this */
    size_t len;
    int slot;
    proto_err perr;
    proto_diag diag;
    proto_grant g;
    bool taken;
} gopen_item;

struct node_gopen {
    node_vjob job;
    node_engine *e;
    gopen_item *v;
    size_t n;
    size_t bytes; /* what it holds: itself, v and the copies of the headers (the queue's cost) */
    bool finished;
};

static void gopen_one(void *ctx, size_t i)
{
    node_gopen *go = ctx;
    gopen_item *it = &go->v[i];
    memset(&it->g, 0, sizeof(it->g));
    it->diag = (proto_diag) { 0, "" };
    it->perr = proto_key_grant_open_slot(
        &it->h, go->e->me, it->slot, it->body, it->len, &go->e->lim, &it->g, &it->diag);
}

node_gopen *node__gopen_start(node_engine *e, const node_inmsg *hq, const proto_bodies_msg *bm)
{
    if (hq == NULL || !hq->is_headers || bm->n == 0)
        return NULL;
    idset ix = { NULL, 0, 0 };
    for (size_t i = 0; i < hq->hm.n; i++)
        if (hq->hdrs[i].perr == PROTO_OK && hq->hdrs[i].h.kind == PROTO_HDR_KEY_GRANT
            && !node__idset_put(&ix, hq->hdrs[i].h.id, i)) {
            node__idset_free(&ix);
            return NULL;
        }
    if (ix.n == 0)
        return NULL;
    node_gopen *go = calloc(1, sizeof(*go));
    gopen_item *v = calloc(ix.n, sizeof(*v));
    if (go == NULL || v == NULL) {
        free(go);
        free(v);
        node__idset_free(&ix);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < bm->n && n < ix.n; i++) {
        size_t k = node__idset_get(&ix, bm->items[i].header_id);
        if (k == SIZE_MAX)
            continue;
        const node_hdr *hd = &hq->hdrs[k];
        const proto_member_key *key;
        if (node__author(e, hd->h.origin, &key) == NULL)
            continue;
        int slot = node__grant_slot(e, &hd->h, key->box_pk);
        if (slot < 0)
            continue; /* for another holder */
        gopen_item *it = &v[n];
        if ((it->hb = malloc(hd->bytes.len)) == NULL)
            break;
        memcpy(it->hb, hd->bytes.p, hd->bytes.len);
        if (proto_header_decode(it->hb, hd->bytes.len, &e->lim, &it->h, NULL) != PROTO_OK) {
            free(it->hb);
            continue;
        }
        it->body = bm->items[i].body.p;
        it->len = bm->items[i].body.len;
        it->slot = slot;
        go->bytes += hd->bytes.len;
        n++;
    }
    go->bytes += sizeof(*go) + ix.n * sizeof(*v);
    node__idset_free(&ix);
    go->e = e;
    go->v = v;
    go->n = n;
    go->job.fn = gopen_one;
    go->job.ctx = go;
    go->job.n = n;
    node__vpool_submit(e->vpool, &go->job);
    return go;
}

/* Every grant of go opened (the loop runs what no worker has taken). */
static void gopen_wait(node_engine *e, node_gopen *go)
{
    if (go->finished)
        return;
    node__vpool_finish(e->vpool, &go->job);
    go->finished = true;
}

void node__gopen_offer(node_engine *e, node_gopen *go)
{
    if (go == NULL)
        return;
    gopen_wait(e, go);
    /* the index of e->gopened is the item's address (an idset maps ids to a size_t) */
    for (size_t i = 0; i < go->n; i++)
        if (!node__idset_put(&e->gopened, go->v[i].h.id, (size_t)(uintptr_t)&go->v[i]))
            break; /* out of memory: the rest are opened on the loop */
}

bool node__gopen_take(node_engine *e, const proto_header *h, int slot, proto_grant *g,
    proto_err *perr, proto_diag *diag)
{
    size_t k = e->gopened.n > 0 ? node__idset_get(&e->gopened, h->id) : SIZE_MAX;
    if (k == SIZE_MAX)
        return false;
    gopen_item *it = (gopen_item *)(uintptr_t)k;
    if (it->taken || it->slot != slot || memcmp(it->h.id, h->id, 32) != 0)
        return false;
    it->taken = true;
    *g = it->g;
    memset(&it->g, 0, sizeof(it->g));
    *perr = it->perr;
    *diag = it->diag;
    return true;
}

void node__gopen_free(node_engine *e, node_gopen *go)
{
    if (go == NULL)
        return;
    gopen_wait(e, go);
    for (size_t i = 0; i < go->n; i++) {
        size_t k = node__idset_get(&e->gopened, go->v[i].h.id);
        if (k == (size_t)(uintptr_t)&go->v[i])
            node__idset_del(&e->gopened, go->v[i].h.id);
        if (!go->v[i].taken)
            proto_grant_fini(&go->v[i].g); /* wipes the keys */
        proto_header_fini(&go->v[i].h);
        free(go->v[i].hb);
    }
    free(go->v);
    free(go);
}

size_t node__gopen_bytes(const node_gopen *go)
{
    return go != NULL ? go->bytes : 0;
}
