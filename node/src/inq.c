/*
 * The inbound queue of session messages (see below). May call: hcheck.c, gopen.c, state.c (clock
 * samples), link.c (the link an answer goes back on), proto.
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/*
 * A HEADERS message starts the signature checks of its headers on the worker threads as soon
 * as it is read, and waits in this queue; every session message read after it, from any peer,
 * queues behind it, so that bodies still find their headers, except version vectors: they are
 * answered at once, and the version vector this node sends counts the queued headers, so that
 * the next answer of a peer is on its way while this one is ingested. The loop takes one group off
 * the queue per turn (an idle handle), so that it reads what arrived meanwhile in between: the loop
 * ingests one group while the workers check the next headers. A group is a run of HEADERS and
 * BODIES messages (from any peers, up to GROUP_BYTES), stored in one transaction: a peer answers a
 * version vector with alternating HEADERS and BODIES of about 1 MiB each, and one commit (and
 * fsync) per message was most of a syncing node's waiting. A HEADERS message whose checks are still
 * running ends the group unless it is the first. At stop the queue is dropped: nothing in it
 * was acknowledged, and the peers send it again.
 *
 * A message in the queue no longer counts against the connections' receive share (net.c
 * pauses reading while that far ahead), so the queue has its own bound, the inbound share of
 * the memory budget (e->budget.inq): beyond it, the loop works the queue down before it takes
 * another message, and reading waits meanwhile as it did before the queue. A message counts
 * with all it holds: its plaintext, its decoded headers and their checks' state, its decoded
 * bodies and the key grants opening for it (a header decoded is 400 bytes beside its 226).
 */
#define GROUP_BYTES (6u << 20) /* a whole answer (RESPONSE_BYTES) and its framing */

void node__inmsg_free(node_engine *e, node_inmsg *q)
{
    node__hcheck_free(e, q->chk);
    node__gopen_free(e, q->gop);
    if (q->is_headers) {
        node__hdrs_free(q->hdrs, q->hm.n);
        proto_headers_fini(&q->hm);
    }
    if (q->is_bodies)
        proto_bodies_fini(&q->bm);
    proto_buf_free(&q->plain);
    free(q);
}

/* A push (a HEADERS message of a few headers) carries its author's newest headers at once:
 * their clocks sample the author's clock offset. Answers to version vectors carry old headers,
 * whose samples would only be smaller: they are not decoded for this. */
#define CLOCK_SAMPLE_HEADERS 4
static void clock_samples(node_engine *e, node_member *m, const node_hdr *hs, size_t n)
{
    if (n > CLOCK_SAMPLE_HEADERS)
        return;
    uint64_t now = node__now(e), mono = node__mono(e);
    for (size_t i = 0; i < n; i++)
        if (hs[i].perr == PROTO_OK && memcmp(hs[i].h.origin, m->origin, 32) == 0)
            node__clock_sample(m, hs[i].h.hlc.wall, now, mono);
}

bool node__inq_full(const node_engine *e)
{
    return e->inq_head != NULL && e->inq_bytes >= e->budget.inq;
}

bool node__inq_take(node_engine *e, node_link *l, node_member *m, unsigned kind, proto_buf *plain)
{
    /* A version vector is answered at once: what it asks for is what this node has stored,
     * and the one this node sends back counts the queue (node__inq_vv). The queue's bound
     * (the inbound share) is what limits how far ahead a peer's answers run. */
    if (kind == PROTO_K_HEADERS)
        m->headers_in_ms = node__mono(e); /* sync.c: an answer to our version vector came */
    if (kind == PROTO_K_VV || (kind != PROTO_K_HEADERS && e->inq_head == NULL))
        return false;
    node_inmsg *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return false;
    if (kind == PROTO_K_HEADERS) {
        if (proto_headers_decode(plain->p, plain->len, &e->lim, &q->hm, NULL) == PROTO_OK) {
            /* Every header decoded once, here; the checks and ingest use these. */
            if ((q->hdrs = node__hdrs_decode(e, q->hm.headers, q->hm.n)) == NULL) {
                proto_headers_fini(&q->hm);
                free(q);
                return false;
            }
            q->is_headers = true;
            clock_samples(e, m, q->hdrs, q->hm.n);
        } else if (e->inq_head == NULL) {
            free(q);
            return false; /* the sync protocol says why */
        }
    } else if (kind == PROTO_K_BODIES) {
        /* Not decodable: the sync protocol says why in its turn. */
        q->is_bodies = proto_bodies_decode(plain->p, plain->len, &e->lim, &q->bm, NULL) == PROTO_OK;
    }
    q->kind = kind;
    memcpy(q->origin, m->origin, 32);
    q->pipe = l->pipe;
    q->plain = *plain;
    plain->p = NULL;
    plain->len = 0;
    if (q->is_headers)
        q->chk = node__hcheck_start(e, q->hdrs, q->hm.n);
    if (q->is_bodies) {
        /* the key grants sealed to this node open on the workers meanwhile */
        const node_inmsg *hq = NULL;
        for (const node_inmsg *x = e->inq_head; x != NULL; x = x->next)
            if (x->pipe == q->pipe)
                hq = x;
        q->gop = node__gopen_start(e, hq, &q->bm);
    }
    if (e->inq_tail != NULL)
        e->inq_tail->next = q;
    else {
        node__inq_seen_empty(e); /* up to this message */
        e->inq_head = q;
    }
    e->inq_tail = q;
    q->cost = sizeof(*q) + q->plain.len + node__gopen_bytes(q->gop);
    if (q->is_headers) /* the headers rebuilt from their compact form, the decoded headers, and
                        * the checks' index, run marks and runs */
        q->cost += q->hm.built_bytes
            + q->hm.n
                * (sizeof(node_hdr) + sizeof(proto_bytes) + 2 * sizeof(size_t)
                    + sizeof(node_vvrun));
    if (q->is_bodies)
        q->cost += q->bm.n * sizeof(*q->bm.items);
    e->inq_bytes += q->cost;
    if (!e->stopping)
        e->host.schedule(e->host.ctx, NODE_WORK_INQ, 0);
    return true;
}

static int vv_entry_cmp(const void *a, const void *b)
{
    return memcmp(((const proto_vv_item *)a)->origin, ((const proto_vv_item *)b)->origin, 32);
}

/* Raise vv (the stored version vector, to be sent to member `to`) by the queued headers that
 * continue it: a peer that answers it sends what comes after the queue, so the next answer
 * travels while this node ingests the last one, and the workers always have headers to
 * check. A queued header that is then refused (or a queue dropped at stop) only means a later
 * version vector asks for it again. Queued headers are not verified yet, so for `to`'s own
 * log only those `to` sent count: a node probes a peer's claim on its own log
 * (node__own_log_settled), and a third member's forged headers in this queue must not make
 * this node claim that. On allocation failure vv stays as stored. */
void node__inq_vv(node_engine *e, proto_vv_item **vvp, size_t *np, const node_member *to)
{
    proto_vv_item *vv = *vvp;
    size_t n = *np, cap = n;
    bool added = false;
    for (node_inmsg *q = e->inq_head; q != NULL; q = q->next) {
        size_t nruns;
        const node_vvrun *runs = node__hcheck_runs(q->chk, &nruns);
        bool from_to = memcmp(q->origin, to->origin, 32) == 0;
        for (size_t k = 0; k < nruns; k++) {
            if (!from_to && memcmp(runs[k].origin, to->origin, 32) == 0)
                continue;
            size_t i = 0;
            while (i < n && memcmp(vv[i].origin, runs[k].origin, 32) != 0)
                i++;
            if (i == n) {
                if (runs[k].first != 1)
                    continue;
                if (node__vec_reserve(&vv, &cap, n + 1, sizeof(*vv), PROTO_VV_MAX) != NODE_OK)
                    continue;
                memcpy(vv[i].origin, runs[k].origin, 32);
                vv[i].seq = 0;
                n++;
                added = true;
            }
            if (runs[k].first <= vv[i].seq + 1 && runs[k].last > vv[i].seq) {
                vv[i].seq = runs[k].last;
                memcpy(vv[i].id, runs[k].last_id, 32);
            }
        }
    }
    if (added)
        qsort(vv, n, sizeof(*vv), vv_entry_cmp);
    *vvp = vv;
    *np = n;
}

/* The link an answer to q would go back on (NULL when gone), and q's member (NULL when it
 * left the manifest). */
node_member *node__inq_sender(node_engine *e, const node_inmsg *q, node_link **lp)
{
    node_member *m = node__member_by_origin(e, q->origin);
    node_link *l = node__link_find(e, q->pipe);
    if (l != NULL && (l->state != LINK_UP || l->closing))
        l = NULL;
    if (m != NULL && l == NULL)
        l = node__link_up_to(e, m);
    *lp = l;
    return m;
}

node_inmsg *node__inq_pop(node_engine *e)
{
    node_inmsg *q = e->inq_head;
    if (q == NULL)
        return NULL;
    e->inq_head = q->next;
    if (e->inq_head == NULL)
        e->inq_tail = NULL;
    e->inq_bytes -= q->cost;
    q->next = NULL;
    return q;
}

size_t node__inq_group_len(node_engine *e, size_t *nh, size_t *nb)
{
    size_t nmsg = 0, bytes = 0;
    *nh = *nb = 0;
    for (node_inmsg *q = e->inq_head; q != NULL && (q->is_headers || q->is_bodies); q = q->next) {
        size_t qh = q->is_headers ? q->hm.n : 0;
        if (nmsg > 0
            && (bytes + q->plain.len > GROUP_BYTES || *nh + qh > NODE_GROUP_HEADERS
                || (q->is_headers && !node__hcheck_ready(e, q->chk))))
            break;
        nmsg++;
        *nh += qh;
        *nb += q->is_bodies ? q->bm.n : 0;
        bytes += q->plain.len;
    }
    return nmsg;
}

void node__inq_free(node_engine *e)
{
    while (e->inq_head != NULL) {
        node_inmsg *q = e->inq_head;
        e->inq_head = q->next;
        node__inmsg_free(e, q);
    }
    e->inq_tail = NULL;
    e->inq_bytes = 0;
}
