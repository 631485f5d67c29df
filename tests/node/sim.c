/* The in-process simulation of a patto network (see sim.h). */
#include "sim.h"

#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* net.c's dialer: backoff from REDIAL_MIN_MS doubling to REDIAL_MAX_MS, reset by a connection
 * that lived STABLE_MS; a connect attempt that gets no answer is given up after
 * DIAL_TIMEOUT_MS. */
#define REDIAL_MIN_MS 100
#define REDIAL_MAX_MS 2000
#define STABLE_MS 10000
#define DIAL_TIMEOUT_MS 5000

#define T0_MS UINT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define SAME_TIME_MAX 1000000u        /* events at one instant before it is called a livelock */
#define CONVERGE_CHECK_MS 250

/* ---------------------------------------------------------------------------------------- */
/* Random streams                                                                            */

typedef struct sim_rng {
    uint64_t s[4];
} sim_rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Stream `stream` of seed `seed` (xoshiro256**). */
static void rng_seed(sim_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * UINT64_C(0xd1342543de82ef95));
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static uint64_t rng_below(sim_rng *r, uint64_t n)
{
    return n > 0 ? rng_next(r) % n : 0;
}

static void rng_fill(sim_rng *r, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        uint64_t x = rng_next(r);
        size_t k = n < 8 ? n : 8;
        memcpy(p, &x, k);
        p += k;
        n -= k;
    }
}

/* libsodium's random source for this process: seeded, reseeded by every sim_new. */
static sim_rng crypto_rng;

static const char *rb_name(void)
{
    return "patto-sim-seeded";
}

static uint32_t rb_random(void)
{
    return (uint32_t)(rng_next(&crypto_rng) >> 32);
}

static void rb_stir(void) { }

static void rb_buf(void *buf, size_t n)
{
    rng_fill(&crypto_rng, buf, n);
}

static int rb_close(void)
{
    return 0;
}

static randombytes_implementation rb_impl = { rb_name, rb_random, rb_stir, NULL, rb_buf, rb_close };

static char program[1024] = "build/tests/node/test-node-sim";

void sim_global_init(const char *argv0)
{
    if (argv0 != NULL)
        snprintf(program, sizeof(program), "%s", argv0);
    rng_seed(&crypto_rng, 0, 99);
    if (randombytes_set_implementation(&rb_impl) != 0 || proto_init() != PROTO_OK) {
        fprintf(stderr, "sim: cannot start libsodium with a seeded random source\n");
        abort();
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The wire                                                                                  */

typedef struct sim_frame {
    struct sim_frame *next;
    uint64_t due;
    bool fin;       /* the sender closed its end: DOWN for the receiver */
    bool cut_after; /* cut the connection once delivered (sim_cut_after_next) */
    size_t len;
    uint8_t data[];
} sim_frame;

/* The frames travelling toward one end of a connection, in order. */
typedef struct sim_dir {
    sim_frame *head, *tail;
    uint64_t last_due;
    uint32_t gen; /* delivery events of older generations are stale */
    bool stalled; /* a delivery found the network partitioned: rescheduled at heal */
} sim_dir;

typedef struct sim_end {
    size_t node;
    uint32_t pipe, dialer;
    bool up;     /* its node got UP */
    bool closed; /* its node dropped it, or it is cut or gone: sends fail */
    bool down;   /* DOWN delivered (or there is nothing to tell: UP never went) */
    char addr[32];
} sim_end;

typedef struct sim_conn {
    uint32_t id;
    sim_end end[2]; /* 0: the dialling node, 1: the listening one */
    sim_dir to[2];  /* to[k]: toward end[k] */
    bool dead;      /* cut: what was in flight is lost */
    uint64_t born_ms;
} sim_conn;

typedef struct sim_dialer {
    uint32_t id;
    size_t node;
    char url[NODE_URL_MAX + 1];
    bool closed;
    uint32_t conn; /* its connection, 0 when none */
    uint64_t backoff, attempt_ms;
    uint32_t gen; /* pending attempts of older generations are stale */
} sim_dialer;

/* ---------------------------------------------------------------------------------------- */
/* Events                                                                                    */

enum {
    EV_UP,      /* a: conn, k: end */
    EV_DELIVER, /* a: conn, k: toward end, gen: the direction's */
    EV_DOWN,    /* a: conn, k: end, why */
    EV_CUT,     /* a: conn */
    EV_DIAL,    /* a: dialer, gen */
    EV_CONNECT, /* a: dialer, gen */
    EV_WORK,    /* node, k: node_work, gen: the slot's */
    EV_TICK,    /* node */
};

typedef struct sim_ev {
    uint64_t t, seq;
    uint32_t a, gen;
    uint32_t node;
    uint8_t kind, k;
    const char *why;
} sim_ev;

typedef struct sim_work {
    bool armed;
    uint64_t due;
    uint32_t gen;
} sim_work;

typedef struct sim_node {
    sim *s;
    size_t i;
    node_engine *e;
    char org[NODE_ORG_MAX + 1];
    char url[64], ip[20];
    char dir[600], logpath[700];
    FILE *log;
    uint8_t origin[32];
    uint8_t seed_sign[32], seed_box[32]; /* its identity.key */
    int64_t offset;
    unsigned group;
    sim_work work[NODE_WORK_COUNT];
    uint8_t *reply; /* the last control reply */
    size_t reply_len;
    bool opened;
} sim_node;

struct sim {
    sim_opts o;
    proto_case_nonce nonce; /* of the case being opened */
    char name[64], replay_env[128];
    char root[512];
    size_t n;
    sim_node node[SIM_MAX_NODES];
    proto_limits lim;
    char *schema_json; /* node/schema/default.json */
    size_t schema_len;
    uint8_t schema_hash[32], admin_pub[32];
    uint64_t now, seq, steps, same;
    bool limit_hit, ticks, closing;
    sim_ev *heap;
    size_t nheap, capheap;
    sim_conn **conns; /* by id; [0] unused */
    size_t nconns, capconns;
    sim_dialer **dialers;
    size_t ndialers, capdialers;
    uint32_t lat[SIM_MAX_NODES][SIM_MAX_NODES];
    bool lose_next[SIM_MAX_NODES][SIM_MAX_NODES];
    bool cut_after_next[SIM_MAX_NODES][SIM_MAX_NODES];
    sim_rng net, work;
    uint64_t trace;
    sim_hdr *acked;
    size_t nacked, capacked;
    node_log_level log_level;
    sim_stats st;
};

static const struct {
    const char *org, *name;
    uint8_t role;
} members[SIM_MAX_NODES] = {
    { "comune-1", "Comune di Valbruna (simulato)", PROTO_ROLE_COMUNE },
    { "cpia-1", "CPIA Valbruna (simulato)", PROTO_ROLE_CPIA },
    { "prefettura-1", "Prefettura di Valbruna (simulata)", PROTO_ROLE_PREFETTURA },
    { "coop-1", "Cooperativa Ponte (simulata)", PROTO_ROLE_COOP },
    { "cpi-1", "Centro per l'impiego (simulato)", PROTO_ROLE_CPI },
};

static void heap_push(sim *s, sim_ev ev)
{
    if (s->nheap == s->capheap) {
        size_t cap = s->capheap ? 2 * s->capheap : 1024;
        sim_ev *h = realloc(s->heap, cap * sizeof(*h));
        if (h == NULL) {
            fprintf(stderr, "sim: out of memory for events\n");
            abort();
        }
        s->heap = h;
        s->capheap = cap;
    }
    ev.seq = s->seq++;
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        sim_ev *q = &s->heap[p];
        if (q->t < ev.t || (q->t == ev.t && q->seq < ev.seq))
            break;
        s->heap[i] = *q;
        i = p;
    }
    s->heap[i] = ev;
}

static bool ev_before(const sim_ev *a, const sim_ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static sim_ev heap_pop(sim *s)
{
    sim_ev top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

static void push_ev(sim *s, uint64_t t, uint8_t kind, uint32_t node, uint32_t a, uint8_t k,
    uint32_t gen, const char *why)
{
    sim_ev ev = { t, 0, a, gen, node, kind, k, why };
    heap_push(s, ev);
}

/* FNV-1a over what an engine is handed. */
static void trace_bytes(sim *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = s->trace;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    s->trace = h;
}

static void trace_event(
    sim *s, unsigned kind, size_t node, uint64_t a, uint64_t b, const void *data, size_t len)
{
    uint64_t f[6] = { s->now, kind, node, a, b, len };
    trace_bytes(s, f, sizeof(f));
    if (data != NULL && len > 0)
        trace_bytes(s, data, len);
}

/* ---------------------------------------------------------------------------------------- */
/* The engines' fields: the only place this file reads or writes inside node_engine.         */

/* Set what node_engine_open expects of its host (core.h). Takes over me and schema. */
static void engine_setup(sim_node *nd, const node_host *host, const node_config *cfg,
    proto_identity *me, node_schema *schema, const uint8_t schema_hash[32], const proto_limits *lim,
    uint64_t rng)
{
    node_engine *e = nd->e;
    e->host = *host;
    snprintf(e->dir, sizeof(e->dir), "%s", nd->dir);
    e->started_ms = host->mono_ms(host->ctx);
    e->cfg = *cfg;
    e->me = me;
    e->schema = schema;
    memcpy(e->schema_hash, schema_hash, 32);
    e->lim = *lim;
    e->rng = rng; /* the anti-entropy peer choice (daemon.c seeds it from the clock) */
}

/* The shares of the memory budget a test sets (sim_opts.lists_max, no_park), once the engine
 * has split its own (node__engine_open). */
static void engine_budget(sim_node *nd, const sim_opts *o)
{
    if (o->lists_max > 0)
        nd->e->budget.wants = nd->e->budget.waits = o->lists_max;
    if (o->no_park)
        nd->e->budget.park = 0;
}

static node_store *engine_store(const sim_node *nd)
{
    return nd->e->store;
}

/* ---------------------------------------------------------------------------------------- */
/* Entering an engine                                                                        */

static void enter(sim *s, size_t i)
{
    node_log_set_output(s->node[i].log);
}

static void deliver(sim *s, size_t i, node_net_ev ev, uint32_t pipe, uint32_t dialer,
    const uint8_t *data, size_t len)
{
    trace_event(s, 100 + (unsigned)ev, i, pipe, dialer, data, len);
    enter(s, i);
    node__event(s->node[i].e, ev, pipe, dialer, data, len);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                               */

static bool reachable(const sim *s, size_t a, size_t b)
{
    return s->node[a].group == s->node[b].group;
}

static sim_conn *conn_get(sim *s, uint32_t id)
{
    return id > 0 && id < s->nconns ? s->conns[id] : NULL;
}

/* The connection and end of node i's pipe. */
static sim_conn *conn_of_pipe(sim *s, size_t i, uint32_t pipe, int *k)
{
    sim_conn *c = conn_get(s, pipe / 2);
    *k = (int)(pipe % 2);
    return c != NULL && c->end[*k].node == i && c->end[*k].pipe == pipe ? c : NULL;
}

static void dir_clear(sim_dir *d)
{
    while (d->head != NULL) {
        sim_frame *f = d->head;
        d->head = f->next;
        free(f);
    }
    d->tail = NULL;
    d->gen++;
    d->stalled = false;
}

static void conn_free(sim *s, sim_conn *c)
{
    dir_clear(&c->to[0]);
    dir_clear(&c->to[1]);
    s->conns[c->id] = NULL;
    free(c);
}

/* A connection whose two ends are told it is over is forgotten. */
static void conn_maybe_free(sim *s, uint32_t id)
{
    sim_conn *c = conn_get(s, id);
    if (c != NULL && c->end[0].down && c->end[1].down)
        conn_free(s, c);
}

/* Append a frame toward end k (from the other end's node), after the frames before it. */
static sim_frame *frame_append(sim *s, sim_conn *c, int k, const uint8_t *buf, size_t len, bool fin)
{
    sim_frame *f = malloc(sizeof(*f) + (len ? len : 1));
    if (f == NULL) {
        fprintf(stderr, "sim: out of memory for a frame\n");
        abort();
    }
    size_t from = c->end[1 - k].node, to = c->end[k].node;
    uint64_t due = s->now + s->lat[from][to];
    if (!fin && s->o.jitter_ms > 0)
        due += rng_below(&s->net, (uint64_t)s->o.jitter_ms + 1);
    sim_dir *d = &c->to[k];
    if (d->head != NULL && due < d->last_due)
        due = d->last_due; /* TCP: in order */
    f->next = NULL;
    f->due = due;
    f->fin = fin;
    f->cut_after = false;
    f->len = len;
    if (len > 0)
        memcpy(f->data, buf, len);
    if (d->tail != NULL)
        d->tail->next = f;
    else
        d->head = f;
    d->tail = f;
    d->last_due = due;
    push_ev(s, due, EV_DELIVER, 0, c->id, (uint8_t)k, d->gen, NULL);
    return f;
}

/* Cut a connection: everything in flight is lost, both ends get DOWN. */
static void conn_cut(sim *s, sim_conn *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = true;
    s->st.cuts++;
    for (int k = 0; k < 2; k++)
        for (sim_frame *f = c->to[k].head; f != NULL; f = f->next)
            s->st.lost += !f->fin;
    dir_clear(&c->to[0]);
    dir_clear(&c->to[1]);
    for (int k = 0; k < 2; k++) {
        sim_end *e = &c->end[k];
        if (e->down)
            continue;
        e->closed = true;
        if (e->up)
            push_ev(s, s->now, EV_DOWN, 0, c->id, (uint8_t)k, 0, why);
        else
            e->down = true; /* its UP is not delivered either */
    }
}

/* Node e->node closes its end k (host.drop, host.undial): DOWN for itself, as net.c gives it,
 * and for the other end after the frames already sent. */
static void end_close(sim *s, sim_conn *c, int k)
{
    sim_end *e = &c->end[k];
    if (e->closed)
        return;
    e->closed = true;
    s->st.drops++;
    if (e->up)
        push_ev(s, s->now, EV_DOWN, 0, c->id, (uint8_t)k, 0, "dropped by this node");
    else
        e->down = true;
    if (!c->dead && !c->end[1 - k].closed)
        (void)frame_append(s, c, 1 - k, NULL, 0, true);
}

static void dial_retry(sim *s, sim_dialer *d, uint64_t after)
{
    uint64_t wait = d->backoff;
    d->backoff = d->backoff * 2 > REDIAL_MAX_MS ? REDIAL_MAX_MS : d->backoff * 2;
    d->gen++;
    push_ev(s, s->now + after + wait, EV_DIAL, 0, d->id, 0, d->gen, NULL);
}

/* Tell end k that its connection is over (once). */
static void end_down(sim *s, sim_conn *c, int k, const char *why)
{
    sim_end *e = &c->end[k];
    if (e->down)
        return;
    e->down = true;
    e->closed = true;
    if (e->up)
        deliver(
            s, e->node, NODE_NET_PIPE_DOWN, e->pipe, e->dialer, (const uint8_t *)why, strlen(why));
    /* net.c's reap: the dialer of this connection tries again after its backoff. */
    sim_dialer *d = k == 0 && e->dialer < s->ndialers ? s->dialers[e->dialer] : NULL;
    if (d != NULL && !d->closed && d->conn == c->id) {
        d->conn = 0;
        if (s->now - c->born_ms >= STABLE_MS)
            d->backoff = REDIAL_MIN_MS;
        dial_retry(s, d, 0);
    }
}

static void ev_up(sim *s, sim_conn *c, int k)
{
    if (c == NULL)
        return;
    sim_end *e = &c->end[k];
    if (e->closed) {
        e->down = true; /* cut before it was told: nothing to tell */
        return;
    }
    e->up = true;
    deliver(s, e->node, NODE_NET_PIPE_UP, e->pipe, e->dialer, (const uint8_t *)e->addr,
        strlen(e->addr));
}

static void ev_deliver(sim *s, sim_conn *c, int k, uint32_t gen)
{
    if (c == NULL || c->dead || gen != c->to[k].gen || c->to[k].head == NULL)
        return;
    sim_dir *d = &c->to[k];
    if (!reachable(s, c->end[0].node, c->end[1].node)) {
        d->stalled = true; /* waits in the connection until the partition heals */
        return;
    }
    sim_frame *f = d->head;
    d->head = f->next;
    if (d->head == NULL)
        d->tail = NULL;
    sim_end *e = &c->end[k];
    if (f->fin)
        end_down(s, c, k, "closed by the peer");
    else if (!e->closed && e->up) {
        s->st.frames++;
        deliver(s, e->node, NODE_NET_MESSAGE, e->pipe, e->dialer, f->data, f->len);
    }
    if (f->cut_after)
        conn_cut(s, c, "connection reset");
    free(f);
}

static void ev_dial(sim *s, sim_dialer *d, uint32_t gen)
{
    if (d == NULL || d->closed || gen != d->gen || d->conn != 0)
        return;
    size_t to = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->node[i].url, d->url) == 0)
            to = i;
    if (to == SIZE_MAX || to == d->node) {
        dial_retry(s, d, 1); /* connection refused */
        return;
    }
    if (!reachable(s, d->node, to)) {
        dial_retry(s, d, DIAL_TIMEOUT_MS); /* no answer */
        return;
    }
    d->attempt_ms = s->now;
    push_ev(s, s->now + s->lat[d->node][to] + s->lat[to][d->node], EV_CONNECT, 0, d->id, 0, d->gen,
        NULL);
}

static void ev_connect(sim *s, sim_dialer *d, uint32_t gen)
{
    if (d == NULL || d->closed || gen != d->gen || d->conn != 0)
        return;
    size_t to = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->node[i].url, d->url) == 0)
            to = i;
    if (to == SIZE_MAX || to == d->node) {
        dial_retry(s, d, 1);
        return;
    }
    if (!reachable(s, d->node, to)) {
        uint64_t end = d->attempt_ms + DIAL_TIMEOUT_MS;
        dial_retry(s, d, end > s->now ? end - s->now : 0);
        return;
    }
    if (s->nconns == s->capconns) {
        size_t cap = s->capconns ? 2 * s->capconns : 256;
        sim_conn **v = realloc(s->conns, cap * sizeof(*v));
        if (v == NULL)
            abort();
        s->conns = v;
        s->capconns = cap;
    }
    if (s->nconns == 0)
        s->conns[s->nconns++] = NULL; /* ids start at 1 */
    sim_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->id = (uint32_t)s->nconns;
    s->conns[s->nconns++] = c;
    c->born_ms = s->now;
    c->end[0].node = d->node;
    c->end[0].pipe = 2 * c->id;
    c->end[0].dialer = d->id;
    snprintf(c->end[0].addr, sizeof(c->end[0].addr), "%s:7401", s->node[to].ip);
    c->end[1].node = to;
    c->end[1].pipe = 2 * c->id + 1;
    snprintf(c->end[1].addr, sizeof(c->end[1].addr), "%s:%u", s->node[d->node].ip,
        32768u + c->id % 28000u);
    d->conn = c->id;
    s->st.conns++;
    push_ev(s, s->now, EV_UP, 0, c->id, 0, 0, NULL);
    push_ev(s, s->now, EV_UP, 0, c->id, 1, 0, NULL);
}

/* Frames that waited out a partition go on, in order. */
static void heal_stalled(sim *s)
{
    for (size_t id = 1; id < s->nconns; id++) {
        sim_conn *c = s->conns[id];
        for (int k = 0; c != NULL && k < 2; k++) {
            sim_dir *d = &c->to[k];
            if (!d->stalled || !reachable(s, c->end[0].node, c->end[1].node))
                continue;
            d->stalled = false;
            d->gen++;
            for (sim_frame *f = d->head; f != NULL; f = f->next)
                s->st.stalled++;
            uint64_t last = s->now + s->lat[c->end[1 - k].node][c->end[k].node];
            for (sim_frame *f = d->head; f != NULL; f = f->next) {
                if (f->due < last)
                    f->due = last;
                last = f->due;
                push_ev(s, f->due, EV_DELIVER, 0, c->id, (uint8_t)k, d->gen, NULL);
            }
            d->last_due = last;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* node_host                                                                                 */

static uint64_t host_now(void *ctx)
{
    sim_node *nd = ctx;
    return (uint64_t)((int64_t)nd->s->now + nd->offset);
}

/* The monotonic clock: simulated time itself (never stepped, no offset), plus one so that it
 * is never 0 (the engine's contract). */
static uint64_t host_mono(void *ctx)
{
    sim_node *nd = ctx;
    return nd->s->now + 1;
}

/* The sim's wire has no message limit: nothing to lift. */
static void host_trust(void *ctx, uint32_t pipe)
{
    (void)ctx;
    (void)pipe;
}

static node_err host_send(void *ctx, uint32_t pipe, const uint8_t *buf, size_t len)
{
    sim_node *nd = ctx;
    sim *s = nd->s;
    int k;
    sim_conn *c = conn_of_pipe(s, nd->i, pipe, &k);
    if (c == NULL || c->dead || c->end[k].closed)
        return NODE_ENOTFOUND;
    size_t to = c->end[1 - k].node;
    sim_frame *f = frame_append(s, c, 1 - k, buf, len, false);
    if (s->o.dup_ppm > 0 && rng_below(&s->net, 1000000) < s->o.dup_ppm) {
        s->st.dups++;
        (void)frame_append(s, c, 1 - k, buf, len, false);
    }
    if (s->cut_after_next[nd->i][to]) {
        s->cut_after_next[nd->i][to] = false;
        f->cut_after = true;
    }
    if (s->lose_next[nd->i][to]) {
        s->lose_next[nd->i][to] = false;
        conn_cut(s, c, "connection reset");
    } else if (s->o.cut_ppm > 0 && rng_below(&s->net, 1000000) < s->o.cut_ppm) {
        push_ev(s, s->now + rng_below(&s->net, (uint64_t)s->lat[nd->i][to] + 1), EV_CUT, 0, c->id,
            0, 0, "connection reset");
    }
    return NODE_OK;
}

static void host_drop(void *ctx, uint32_t pipe)
{
    sim_node *nd = ctx;
    int k;
    sim_conn *c = conn_of_pipe(nd->s, nd->i, pipe, &k);
    if (c != NULL)
        end_close(nd->s, c, k);
}

static node_err host_dial(void *ctx, const char *url, uint32_t *dialer, node_errmsg *msg)
{
    sim_node *nd = ctx;
    sim *s = nd->s;
    if (s->ndialers == s->capdialers) {
        size_t cap = s->capdialers ? 2 * s->capdialers : 64;
        sim_dialer **v = realloc(s->dialers, cap * sizeof(*v));
        if (v == NULL)
            return node__fail(msg, NODE_ENOMEM, "out of memory for a dialer");
        s->dialers = v;
        s->capdialers = cap;
    }
    if (s->ndialers == 0)
        s->dialers[s->ndialers++] = NULL; /* ids start at 1 */
    sim_dialer *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory for a dialer");
    d->id = (uint32_t)s->ndialers;
    s->dialers[s->ndialers++] = d;
    d->node = nd->i;
    snprintf(d->url, sizeof(d->url), "%s", url);
    d->backoff = REDIAL_MIN_MS;
    push_ev(s, s->now, EV_DIAL, 0, d->id, 0, d->gen, NULL);
    *dialer = d->id;
    return NODE_OK;
}

static void host_undial(void *ctx, uint32_t id)
{
    sim_node *nd = ctx;
    sim *s = nd->s;
    sim_dialer *d = id < s->ndialers ? s->dialers[id] : NULL;
    if (d == NULL || d->node != nd->i || d->closed)
        return;
    d->closed = true;
    d->gen++;
    sim_conn *c = conn_get(s, d->conn);
    if (c != NULL)
        end_close(s, c, 0); /* like closing an nng dialer: its connection goes too */
}

static void host_ctl_reply(void *ctx, const uint8_t *buf, size_t len)
{
    sim_node *nd = ctx;
    free(nd->reply);
    nd->reply = malloc(len ? len : 1);
    nd->reply_len = nd->reply != NULL ? len : 0;
    if (nd->reply != NULL && len > 0)
        memcpy(nd->reply, buf, len);
}

/* node__work_run(w) no later than delay_ms from now: an earlier request due sooner stays. */
static void host_schedule(void *ctx, node_work w, uint64_t delay_ms)
{
    sim_node *nd = ctx;
    sim *s = nd->s;
    if (s->closing || (unsigned)w >= NODE_WORK_COUNT)
        return;
    sim_work *sw = &nd->work[w];
    uint64_t due = s->now + delay_ms + (w == NODE_WORK_INQ ? s->o.inq_delay_ms[nd->i] : 0);
    if (sw->armed && sw->due <= due)
        return;
    sw->armed = true;
    sw->due = due;
    sw->gen++;
    push_ev(s, due, EV_WORK, (uint32_t)nd->i, 0, (uint8_t)w, sw->gen, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* The loop                                                                                  */

static void process(sim *s, const sim_ev *ev)
{
    switch (ev->kind) {
    case EV_UP:
        ev_up(s, conn_get(s, ev->a), ev->k);
        conn_maybe_free(s, ev->a);
        break;
    case EV_DELIVER:
        ev_deliver(s, conn_get(s, ev->a), ev->k, ev->gen);
        conn_maybe_free(s, ev->a);
        break;
    case EV_DOWN: {
        sim_conn *c = conn_get(s, ev->a);
        if (c != NULL)
            end_down(s, c, ev->k, ev->why);
        conn_maybe_free(s, ev->a);
        break;
    }
    case EV_CUT: {
        sim_conn *c = conn_get(s, ev->a);
        if (c != NULL)
            conn_cut(s, c, ev->why);
        break;
    }
    case EV_DIAL:
        ev_dial(s, ev->a < s->ndialers ? s->dialers[ev->a] : NULL, ev->gen);
        break;
    case EV_CONNECT:
        ev_connect(s, ev->a < s->ndialers ? s->dialers[ev->a] : NULL, ev->gen);
        break;
    case EV_WORK: {
        sim_node *nd = &s->node[ev->node];
        sim_work *sw = &nd->work[ev->k];
        if (!sw->armed || sw->gen != ev->gen)
            break;
        sw->armed = false;
        trace_event(s, 200 + ev->k, ev->node, 0, 0, NULL, 0);
        enter(s, ev->node);
        node__work_run(nd->e, (node_work)ev->k);
        break;
    }
    case EV_TICK: {
        sim_node *nd = &s->node[ev->node];
        if (s->ticks) {
            trace_event(s, 300, ev->node, 0, 0, NULL, 0);
            enter(s, ev->node);
            node__tick(nd->e);
        }
        push_ev(s, s->now + s->o.anti_entropy_ms, EV_TICK, ev->node, 0, 0, 0, NULL);
        break;
    }
    default:
        break;
    }
}

static void limit_reached(sim *s, const char *what)
{
    if (s->limit_hit)
        return;
    s->limit_hit = true;
    fprintf(stderr, "sim: %s after %" PRIu64 " events at %.3f s of simulated time: a livelock?\n",
        what, s->steps, (double)(s->now - T0_MS) / 1000.0);
    sim_print_replay(s);
}

/* One event; false when the step limit is reached. */
static bool step(sim *s)
{
    if (s->limit_hit)
        return false;
    if (s->steps >= s->o.max_steps) {
        limit_reached(s, "step limit reached");
        return false;
    }
    sim_ev ev = heap_pop(s);
    if (ev.t > s->now) {
        s->now = ev.t;
        s->same = 0;
    } else if (++s->same > SAME_TIME_MAX) {
        limit_reached(s, "too many events at one instant");
        return false;
    }
    s->steps++;
    process(s, &ev);
    return true;
}

bool sim_run_for(sim *s, uint64_t ms)
{
    uint64_t deadline = s->now + ms;
    while (s->nheap > 0 && s->heap[0].t <= deadline)
        if (!step(s))
            return false;
    s->now = deadline;
    return true;
}

bool sim_run_until(sim *s, bool (*pred)(sim *s, void *ctx), void *ctx, uint64_t max_ms)
{
    uint64_t deadline = s->now + max_ms;
    if (pred(s, ctx))
        return true;
    while (s->nheap > 0 && s->heap[0].t <= deadline) {
        if (!step(s))
            return false;
        if (pred(s, ctx))
            return true;
    }
    s->now = deadline;
    return pred(s, ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* Making and freeing a network                                                              */

void sim_opts_default(sim_opts *o, size_t n, uint64_t seed, const char *name)
{
    memset(o, 0, sizeof(*o));
    o->n = n;
    o->seed = seed;
    o->name = name;
    o->lat_min_ms = 2;
    o->lat_max_ms = 20;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0
        && (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = 0;
    }
    fclose(f);
    return buf;
}

static const char *tmp_base(void)
{
    const char *b = getenv("SIM_TMPDIR");
    if (b != NULL && *b != 0)
        return b;
    if (access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    b = getenv("TMPDIR");
    return b != NULL && *b != 0 ? b : "/tmp";
}

static void rm_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char f[1024];
            snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
            struct stat st;
            if (lstat(f, &st) == 0 && S_ISDIR(st.st_mode))
                rm_dir(f);
            else
                unlink(f);
        }
        closedir(d);
    }
    rmdir(path);
}

static node_log_level log_level_from_env(void)
{
    node_log_level lv = NODE_LOG_INFO;
    const char *v = getenv("SIM_LOG");
    if (v != NULL && node_log_level_parse(v, &lv) != NODE_OK)
        lv = NODE_LOG_INFO;
    return lv;
}

/* The signed manifest of the network: every node, two purposes. */
static bool make_manifest(sim *s, const proto_identity *const *ids, const proto_identity *admin,
    const uint8_t schema_hash[32], proto_buf *out)
{
    proto_member m[SIM_MAX_NODES];
    proto_member_key keys[SIM_MAX_NODES];
    size_t order[SIM_MAX_NODES];
    for (size_t i = 0; i < s->n; i++) {
        order[i] = i;
        for (size_t j = i; j > 0 && strcmp(members[order[j]].org, members[order[j - 1]].org) < 0;
             j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    for (size_t k = 0; k < s->n; k++) {
        size_t i = order[k];
        memset(&m[k], 0, sizeof(m[k]));
        m[k].org = (proto_bytes) { (const uint8_t *)members[i].org, strlen(members[i].org) };
        m[k].name = (proto_bytes) { (const uint8_t *)members[i].name, strlen(members[i].name) };
        m[k].role = members[i].role;
        memset(&keys[k], 0, sizeof(keys[k]));
        memcpy(keys[k].origin, proto_identity_origin(ids[i]), 32);
        memcpy(keys[k].box_pk, proto_identity_box_pk(ids[i]), 32);
        m[k].keys = &keys[k];
        m[k].nkeys = 1;
        m[k].url = (proto_bytes) { (const uint8_t *)s->node[i].url, strlen(s->node[i].url) };
    }
    static const char *const pur[][2] = {
        { "integrazione", "Percorso di integrazione" },
        { "lingua", "Corsi di lingua italiana" },
    };
    proto_purpose p[2];
    for (size_t k = 0; k < 2; k++) {
        p[k].id = (proto_bytes) { (const uint8_t *)pur[k][0], strlen(pur[k][0]) };
        p[k].description = (proto_bytes) { (const uint8_t *)pur[k][1], strlen(pur[k][1]) };
    }
    proto_manifest man;
    memset(&man, 0, sizeof(man));
    man.version = 1;
    man.signed_at_ms = s->now;
    man.max_clock_ahead_ms
        = s->o.max_clock_ahead_ms > 0 ? s->o.max_clock_ahead_ms : PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS;
    man.counter_limit = PROTO_COUNTER_LIMIT_DEFAULT;
    memcpy(man.schema_hash, schema_hash, 32);
    man.members = m;
    man.nmembers = s->n;
    man.purposes = p;
    man.npurposes = 2;
    proto_err perr = proto_manifest_sign(&man, admin, out);
    if (perr != PROTO_OK)
        fprintf(stderr, "sim: cannot sign the manifest: %s\n", proto_strerror(perr));
    return perr == PROTO_OK;
}

/* Node i's engine on its data directory, opened (and given the manifest when not NULL: a first
 * start; a restart finds it in the store). */
static bool engine_start(sim *s, size_t i, const proto_buf *manifest)
{
    sim_node *nd = &s->node[i];
    node_errmsg msg = { { 0 } };
    if ((nd->e = calloc(1, sizeof(*nd->e))) == NULL)
        return false;
    proto_identity *me = NULL;
    if (proto_identity_from_seeds(nd->seed_sign, nd->seed_box, &me) != PROTO_OK)
        return false;
    node_schema *schema = NULL;
    if (node_schema_parse(s->schema_json, s->schema_len, "default.json", &schema, &msg)
        != NODE_OK) {
        fprintf(stderr, "sim: the shipped schema does not parse: %s\n", msg.text);
        proto_identity_free(me);
        return false;
    }
    node_config cfg;
    node_config_defaults(&cfg);
    snprintf(cfg.org, sizeof(cfg.org), "%s", members[i].org);
    snprintf(cfg.role, sizeof(cfg.role), "%s", proto_role_name(members[i].role));
    snprintf(cfg.listen, sizeof(cfg.listen), "%s", nd->url);
    snprintf(cfg.operator_name, sizeof(cfg.operator_name), "op-%s", members[i].org);
    memcpy(cfg.admin_pub, s->admin_pub, 32);
    cfg.log_level = s->log_level;
    cfg.map_size = UINT64_C(16) << 20;
    if (s->o.anti_entropy_ms > 0)
        cfg.anti_entropy_ms = s->o.anti_entropy_ms;
    if (s->o.idle_timeout_ms > 0)
        cfg.idle_timeout_ms = s->o.idle_timeout_ms;
    if (s->o.handshake_timeout_ms > 0)
        cfg.handshake_timeout_ms = s->o.handshake_timeout_ms;
    s->o.anti_entropy_ms = cfg.anti_entropy_ms;
    s->lim.max_message = cfg.max_message_bytes;
    node_host host = { nd, host_now, host_mono, host_send, host_drop, host_trust, host_dial,
        host_undial, host_ctl_reply, host_schedule, NULL, NULL };
    engine_setup(nd, &host, &cfg, me, schema, s->schema_hash, &s->lim, rng_next(&s->net) | 1u);
    enter(s, i);
    node_err err = node__engine_open(nd->e, 0, &msg);
    if (err != NODE_OK) {
        fprintf(stderr, "sim: %s: cannot open the engine: %s\n", nd->org, msg.text);
        return false;
    }
    engine_budget(nd, &s->o);
    nd->opened = true;
    if (manifest == NULL)
        return true;
    bool changed = false;
    err = node__manifest_offer(nd->e, manifest->p, manifest->len, &changed, &msg);
    if (err != NODE_OK || !changed) {
        fprintf(stderr, "sim: %s refuses the manifest: %s\n", nd->org, msg.text);
        return false;
    }
    return true;
}

/* Node i's directory and log, then its engine. */
static bool node_open(sim *s, size_t i, const proto_buf *manifest)
{
    sim_node *nd = &s->node[i];
    if (mkdir(nd->dir, 0700) != 0) {
        fprintf(stderr, "sim: cannot make %s: %s\n", nd->dir, strerror(errno));
        return false;
    }
    char dir[sizeof(nd->dir)], logpath[sizeof(nd->logpath)];
    memcpy(dir, nd->dir, sizeof(dir));
    snprintf(logpath, sizeof(logpath), "%s/node.log", dir);
    memcpy(nd->logpath, logpath, sizeof(logpath));
    if ((nd->log = fopen(nd->logpath, "w")) == NULL) {
        fprintf(stderr, "sim: cannot make %s: %s\n", nd->logpath, strerror(errno));
        return false;
    }
    return engine_start(s, i, manifest);
}

static void engine_end(sim *s, size_t i)
{
    sim_node *nd = &s->node[i];
    if (nd->e == NULL)
        return;
    enter(s, i);
    if (nd->opened)
        node__engine_stop(nd->e);
    node__engine_free(nd->e);
    free(nd->e);
    nd->e = NULL;
    nd->opened = false;
}

/* Copy the file from to the file to (replacing it). */
static bool copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in != NULL ? fopen(to, "wb") : NULL;
    bool ok = in != NULL && out != NULL;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "sim: cannot copy %s to %s: %s\n", from, to, strerror(errno));
    return ok;
}

static bool store_copy(sim *s, size_t i, bool restore)
{
    char live[sizeof(s->node[i].dir) + 16], copy[sizeof(s->node[i].dir) + 16];
    snprintf(live, sizeof(live), "%s/data.mdb", s->node[i].dir);
    snprintf(copy, sizeof(copy), "%s/backup.mdb", s->node[i].dir);
    return restore ? copy_file(copy, live) : copy_file(live, copy);
}

bool sim_backup(sim *s, size_t i)
{
    return store_copy(s, i, false);
}

static bool restart(sim *s, size_t i, bool restore);

bool sim_restart(sim *s, size_t i)
{
    return restart(s, i, false);
}

bool sim_restore(sim *s, size_t i)
{
    return restart(s, i, true);
}

static bool restart(sim *s, size_t i, bool restore)
{
    sim_node *nd = &s->node[i];
    trace_event(s, 500, i, 0, 0, NULL, 0);
    s->st.restarts++;
    engine_end(s, i);
    if (restore && !store_copy(s, i, true))
        return false;
    /* Its connections end without a word to it; its peers hear a reset. */
    for (size_t id = 1; id < s->nconns; id++) {
        sim_conn *c = s->conns[id];
        for (int k = 0; c != NULL && k < 2; k++) {
            if (c->end[k].node != i)
                continue;
            c->end[k].closed = c->end[k].down = true;
            sim_end *o = &c->end[1 - k];
            if (!c->dead) {
                c->dead = true;
                for (int j = 0; j < 2; j++)
                    for (sim_frame *f = c->to[j].head; f != NULL; f = f->next)
                        s->st.lost += !f->fin;
                dir_clear(&c->to[0]);
                dir_clear(&c->to[1]);
            }
            if (!o->down) {
                o->closed = true;
                if (o->up)
                    push_ev(s, s->now + s->lat[i][o->node], EV_DOWN, 0, c->id, (uint8_t)(1 - k), 0,
                        "connection reset by peer");
                else
                    o->down = true;
            }
        }
        conn_maybe_free(s, (uint32_t)id);
    }
    for (size_t id = 1; id < s->ndialers; id++) {
        sim_dialer *d = s->dialers[id];
        if (d->node == i) {
            d->closed = true;
            d->gen++;
        }
    }
    for (int w = 0; w < NODE_WORK_COUNT; w++) {
        nd->work[w].armed = false;
        nd->work[w].gen++;
    }
    if (!engine_start(s, i, NULL)) {
        fprintf(stderr, "sim: %s does not start again\n", nd->org);
        sim_print_replay(s);
        return false;
    }
    enter(s, i);
    node__engine_run(nd->e);
    return true;
}

sim *sim_new(const sim_opts *o)
{
    if (o->n < 2 || o->n > SIM_MAX_NODES || o->lat_min_ms > o->lat_max_ms) {
        fprintf(stderr, "sim: 2 to %d nodes, and lat_min_ms <= lat_max_ms\n", SIM_MAX_NODES);
        return NULL;
    }
    sim *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->o = *o;
    snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "");
    s->o.name = s->name;
    snprintf(s->replay_env, sizeof(s->replay_env), "%s", o->replay_env ? o->replay_env : "");
    s->o.replay_env = s->replay_env;
    if (s->o.max_steps == 0)
        s->o.max_steps = 20000000;
    s->n = o->n;
    s->now = T0_MS;
    s->ticks = true;
    s->trace = UINT64_C(0xcbf29ce484222325);
    s->log_level = log_level_from_env();
    node_log_set_level(s->log_level);
    proto_limits_default(&s->lim);
    rng_seed(&s->net, o->seed, 1);
    rng_seed(&s->work, o->seed, 2);
    rng_seed(&crypto_rng, o->seed, 3);
    sim_rng ids;
    rng_seed(&ids, o->seed, 4);

    snprintf(s->root, sizeof(s->root), "%s/patto-sim-XXXXXX", tmp_base());
    if (mkdtemp(s->root) == NULL) {
        fprintf(stderr, "sim: cannot make a directory in %s: %s\n", tmp_base(), strerror(errno));
        s->root[0] = 0;
        sim_free(s);
        return NULL;
    }
    char root[sizeof(s->root)];
    memcpy(root, s->root, sizeof(root));
    for (size_t i = 0; i < s->n; i++) {
        sim_node *nd = &s->node[i];
        nd->s = s;
        nd->i = i;
        snprintf(nd->org, sizeof(nd->org), "%s", members[i].org);
        /* Through local copies: gcc's -Wrestrict sees s->root and nd->... inside *s. */
        char ip[20], url[64], dir[600];
        snprintf(ip, sizeof(ip), "10.0.0.%u", (unsigned)i + 1);
        snprintf(url, sizeof(url), "tcp://%s:7401", ip);
        snprintf(dir, sizeof(dir), "%s/%s", root, members[i].org);
        memcpy(nd->ip, ip, sizeof(ip));
        memcpy(nd->url, url, sizeof(url));
        memcpy(nd->dir, dir, sizeof(dir));
        nd->offset = o->clock_offset_ms[i];
        for (size_t j = 0; j < s->n; j++)
            s->lat[i][j] = o->lat_min_ms
                + (uint32_t)rng_below(&s->net, (uint64_t)(o->lat_max_ms - o->lat_min_ms) + 1);
    }

    s->schema_json = slurp(PATTO_SOURCE_DIR "/node/schema/default.json", &s->schema_len);
    proto_identity *admin = NULL, *id[SIM_MAX_NODES] = { NULL };
    proto_buf manifest = { NULL, 0 };
    bool ok = s->schema_json != NULL;
    if (!ok)
        fprintf(stderr, "sim: cannot read %s/node/schema/default.json\n", PATTO_SOURCE_DIR);
    uint8_t seed_a[32], seed_b[32];
    rng_fill(&ids, seed_a, 32);
    rng_fill(&ids, seed_b, 32);
    ok = ok && proto_identity_from_seeds(seed_a, seed_b, &admin) == PROTO_OK;
    if (ok)
        memcpy(s->admin_pub, proto_identity_origin(admin), 32);
    for (size_t i = 0; ok && i < s->n; i++) {
        rng_fill(&ids, s->node[i].seed_sign, 32);
        rng_fill(&ids, s->node[i].seed_box, 32);
        ok = proto_identity_from_seeds(s->node[i].seed_sign, s->node[i].seed_box, &id[i])
            == PROTO_OK;
        if (ok)
            memcpy(s->node[i].origin, proto_identity_origin(id[i]), 32);
    }
    if (ok) {
        proto_schema_hash((const uint8_t *)s->schema_json, s->schema_len, s->schema_hash);
        ok = make_manifest(s, (const proto_identity *const *)id, admin, s->schema_hash, &manifest);
    }
    for (size_t i = 0; i < s->n; i++)
        proto_identity_free(id[i]);
    proto_identity_free(admin);
    for (size_t i = 0; ok && i < s->n; i++)
        ok = node_open(s, i, &manifest);
    proto_buf_free(&manifest);
    if (!ok) {
        sim_free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->n; i++) {
        enter(s, i);
        node__engine_run(s->node[i].e);
        push_ev(s, s->now + 1 + rng_below(&s->net, s->o.anti_entropy_ms), EV_TICK, (uint32_t)i, 0,
            0, 0, NULL);
    }
    return s;
}

void sim_free(sim *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    for (size_t i = 0; i < s->n; i++) {
        sim_node *nd = &s->node[i];
        engine_end(s, i);
        node_log_set_output(NULL);
        if (nd->log != NULL)
            fclose(nd->log);
        free(nd->reply);
    }
    node_log_set_output(NULL);
    for (size_t id = 1; id < s->nconns; id++)
        if (s->conns[id] != NULL)
            conn_free(s, s->conns[id]);
    free(s->conns);
    for (size_t id = 1; id < s->ndialers; id++)
        free(s->dialers[id]);
    free(s->dialers);
    free(s->heap);
    free(s->acked);
    free(s->schema_json);
    const char *keep = getenv("SIM_KEEP");
    if (s->root[0] != 0) {
        if (keep != NULL && strcmp(keep, "1") == 0)
            fprintf(stderr, "sim: kept %s\n", s->root);
        else
            rm_dir(s->root);
    }
    free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors and faults                                                                      */

size_t sim_n(const sim *s)
{
    return s->n;
}

const char *sim_org(const sim *s, size_t i)
{
    return s->node[i].org;
}

const uint8_t *sim_origin(const sim *s, size_t i)
{
    return s->node[i].origin;
}

uint64_t sim_seed(const sim *s)
{
    return s->o.seed;
}

uint64_t sim_now(const sim *s)
{
    return s->now;
}

uint64_t sim_node_now(const sim *s, size_t i)
{
    return (uint64_t)((int64_t)s->now + s->node[i].offset);
}

uint64_t sim_steps(const sim *s)
{
    return s->steps;
}

uint64_t sim_trace_hash(const sim *s)
{
    return s->trace;
}

void sim_get_stats(const sim *s, sim_stats *out)
{
    *out = s->st;
}

uint64_t sim_rand(sim *s, uint64_t n)
{
    return rng_below(&s->work, n);
}

void sim_set_inq_delay(sim *s, size_t i, uint32_t ms)
{
    if (i < s->n)
        s->o.inq_delay_ms[i] = ms;
}

void sim_set_clock_offset(sim *s, size_t i, int64_t offset_ms)
{
    s->node[i].offset = offset_ms;
}

void sim_set_faults(sim *s, uint32_t cut_ppm, uint32_t dup_ppm, uint32_t jitter_ms)
{
    s->o.cut_ppm = cut_ppm;
    s->o.dup_ppm = dup_ppm;
    s->o.jitter_ms = jitter_ms;
}

void sim_set_latency(sim *s, size_t a, size_t b, uint32_t ms)
{
    s->lat[a][b] = ms;
}

void sim_partition(sim *s, const unsigned *group)
{
    for (size_t i = 0; i < s->n; i++)
        s->node[i].group = group[i];
    heal_stalled(s); /* pairs now on one side again go on */
}

void sim_isolate(sim *s, size_t i)
{
    unsigned g[SIM_MAX_NODES] = { 0 };
    g[i] = 1;
    sim_partition(s, g);
}

void sim_heal(sim *s)
{
    unsigned g[SIM_MAX_NODES] = { 0 };
    sim_partition(s, g);
}

void sim_cut(sim *s, size_t a, size_t b)
{
    for (size_t id = 1; id < s->nconns; id++) {
        sim_conn *c = s->conns[id];
        if (c != NULL
            && ((c->end[0].node == a && c->end[1].node == b)
                || (c->end[0].node == b && c->end[1].node == a)))
            conn_cut(s, c, "connection reset");
    }
}

void sim_lose_next(sim *s, size_t a, size_t b)
{
    s->lose_next[a][b] = true;
}

void sim_cut_after_next(sim *s, size_t a, size_t b)
{
    s->cut_after_next[a][b] = true;
}

void sim_set_ticks(sim *s, bool on)
{
    s->ticks = on;
}

/* ---------------------------------------------------------------------------------------- */
/* Writes                                                                                    */

/* The node a key grant of node `from` is addressed to: the one that finds a hint slot of its
 * own in it. */
static size_t grant_recipient(const sim *s, size_t from, const proto_header *h)
{
    proto_identity *author = NULL;
    if (proto_identity_from_seeds(s->node[from].seed_sign, s->node[from].seed_box, &author)
        != PROTO_OK)
        return SIZE_MAX;
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < s->n && found == SIZE_MAX; i++) {
        proto_identity *me = NULL;
        if (i == from
            || proto_identity_from_seeds(s->node[i].seed_sign, s->node[i].seed_box, &me)
                != PROTO_OK)
            continue;
        if (proto_key_grant_slot(h, me, proto_identity_box_pk(author)) >= 0)
            found = i;
        proto_identity_free(me);
    }
    proto_identity_free(author);
    return found;
}

/* Push what a write made (ctl.c's write_and_push), and keep what was acknowledged. */
static void after_write(sim *s, size_t i, node_err err, node_outs *outs)
{
    node_engine *e = s->node[i].e;
    node__push(e, outs);
    node__links_reap(e);
    uint64_t f[2] = { err, outs->n };
    trace_event(s, 400, i, f[0], f[1], NULL, 0);
    for (size_t k = 0; err == NODE_OK && k < outs->n; k++) {
        const proto_header *h = &outs->v[k].h;
        trace_bytes(s, h->id, 32);
        if (s->nacked == s->capacked) {
            size_t cap = s->capacked ? 2 * s->capacked : 256;
            sim_hdr *v = realloc(s->acked, cap * sizeof(*v));
            if (v == NULL)
                abort();
            s->acked = v;
            s->capacked = cap;
        }
        sim_hdr *a = &s->acked[s->nacked++];
        a->node = i;
        a->seq = h->seq;
        memcpy(a->id, h->id, 32);
        memcpy(a->tag, h->tag, 32);
        a->kind = h->kind;
        a->recipient = h->kind == PROTO_HDR_KEY_GRANT ? grant_recipient(s, i, h) : SIZE_MAX;
        a->acked_ms = s->now;
    }
    node__outs_free(outs);
}

static node_err write_edits(sim *s, size_t i, const proto_case_id *c, bool create,
    const char *const *edits, size_t n, node_errmsg *msg)
{
    node_engine *e = s->node[i].e;
    node_edit *ed = calloc(n ? n : 1, sizeof(*ed));
    if (ed == NULL)
        return NODE_ENOMEM;
    enter(s, i);
    node_err err = NODE_OK;
    for (size_t k = 0; k < n && err == NODE_OK; k++)
        err = node__edit_parse(e, edits[k], &ed[k], msg);
    node_outs outs = { NULL, 0, 0 };
    if (err == NODE_OK)
        err = node__case_write(e, c, create ? &s->nonce : NULL, ed, n, &outs, msg);
    after_write(s, i, err, &outs);
    free(ed);
    return err;
}

static void case_rng_fill(void *ctx, uint8_t *buf, size_t n)
{
    rng_fill(ctx, buf, n);
}

node_err sim_case_new(
    sim *s, size_t i, const char *const *edits, size_t n, proto_case_id *out, node_errmsg *msg)
{
    proto_rng rng = { case_rng_fill, &s->work };
    const char *org = s->node[i].org;
    if (proto_case_id_new(org, strlen(org), &rng, out, &s->nonce) != PROTO_OK)
        return node__fail(msg, NODE_EINVAL, "cannot make a case id");
    return write_edits(s, i, out, true, edits, n, msg);
}

node_err sim_case_set(
    sim *s, size_t i, const proto_case_id *c, const char *const *edits, size_t n, node_errmsg *msg)
{
    return write_edits(s, i, c, false, edits, n, msg);
}

node_err sim_grant(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t to, bool write, node_errmsg *msg)
{
    return sim_grant_basis(s, i, c, scopes, nscopes, to, write, PROTO_BASIS_PUBLIC_TASK, msg);
}

node_err sim_revoke(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t from, node_errmsg *msg)
{
    if (from >= s->n || from == i)
        return node__fail(msg, NODE_EINVAL, "revoke another node of the network");
    node_revoke *rv = calloc(1, sizeof(*rv));
    if (rv == NULL)
        return node__fail(msg, NODE_ENOMEM, "out of memory");
    snprintf(rv->from, sizeof(rv->from), "%s", s->node[from].org);
    rv->access = PROTO_ACCESS_NONE;
    rv->reason = PROTO_NARROW_REVOKED;
    snprintf(rv->operator_name, sizeof(rv->operator_name), "op-%s", s->node[i].org);
    enter(s, i);
    node_outs outs = { NULL, 0, 0 };
    node_err err = node__case_revoke(s->node[i].e, c, scopes, nscopes, rv, &outs, msg);
    after_write(s, i, err, &outs);
    free(rv);
    return err;
}

node_err sim_grant_basis(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t to, bool write, uint8_t basis, node_errmsg *msg)
{
    node_engine *e = s->node[i].e;
    if (to >= s->n || to == i)
        return node__fail(msg, NODE_EINVAL, "grant to another node of the network");
    node_grant g;
    memset(&g, 0, sizeof(g));
    snprintf(g.to, sizeof(g.to), "%s", s->node[to].org);
    snprintf(g.purpose, sizeof(g.purpose), "integrazione");
    g.basis = basis;
    g.access = write ? PROTO_ACCESS_WRITE : PROTO_ACCESS_READ;
    snprintf(g.operator_name, sizeof(g.operator_name), "op-%s", s->node[i].org);
    enter(s, i);
    node_outs outs = { NULL, 0, 0 };
    node_err err = node__case_grant(e, c, scopes, nscopes, &g, &outs, msg);
    after_write(s, i, err, &outs);
    return err;
}

const sim_hdr *sim_acked(const sim *s, size_t *n)
{
    *n = s->nacked;
    return s->acked;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                   */

typedef struct view_ctx {
    sim *s;
    sim_view *v;
    node_txn *t;
    bool digests;
    size_t cap;
    node_err err;
} view_ctx;

static bool view_tag_cb(const uint8_t tag[32], void *ctx)
{
    view_ctx *c = ctx;
    if (c->v->ntags == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        sim_tag *t = realloc(c->v->tags, cap * sizeof(*t));
        if (t == NULL) {
            c->err = NODE_ENOMEM;
            return false;
        }
        c->v->tags = t;
        c->cap = cap;
    }
    /* A scope closed here keeps what it held when its access ended: left out, as `patto
     * digest` leaves it out (ctlread.c). */
    if (node__tag_closed_here(c->t, tag))
        return true;
    sim_tag *st = &c->v->tags[c->v->ntags];
    memcpy(st->tag, tag, 32);
    crdt_scope *state = NULL;
    if ((c->err = node__ledger_state_get(c->t, tag, &c->s->lim, &state)) != NODE_OK)
        return false;
    if (proto_scope_digest(state, st->digest) != PROTO_OK)
        c->err = NODE_ENOMEM;
    crdt_scope_free(state);
    if (c->err != NODE_OK)
        return false;
    c->v->ntags++;
    return true;
}

static node_err view_cb(node_txn *t, void *ctx)
{
    view_ctx *c = ctx;
    c->t = t;
    free(c->v->vv);
    free(c->v->tags);
    memset(c->v, 0, sizeof(*c->v));
    c->cap = 0;
    node_err err = node__ledger_vv_all(t, &c->s->lim, &c->v->vv, &c->v->nvv);
    if (err == NODE_OK && c->digests)
        err = node__ledger_key_tags(t, view_tag_cb, c);
    return err != NODE_OK ? err : c->err;
}

static int tag_cmp(const void *a, const void *b)
{
    return memcmp(((const sim_tag *)a)->tag, ((const sim_tag *)b)->tag, 32);
}

static bool view_read(sim *s, size_t i, sim_view *v, bool digests)
{
    memset(v, 0, sizeof(*v));
    view_ctx c = { s, v, NULL, digests, 0, NODE_OK };
    node_errmsg msg;
    if (node_store_read(engine_store(&s->node[i]), view_cb, &c, &msg) != NODE_OK) {
        fprintf(stderr, "sim: cannot read %s's store: %s\n", s->node[i].org, msg.text);
        sim_view_fini(v);
        return false;
    }
    if (v->ntags > 1)
        qsort(v->tags, v->ntags, sizeof(*v->tags), tag_cmp);
    return true;
}

bool sim_view_read(sim *s, size_t i, sim_view *v)
{
    return view_read(s, i, v, true);
}

void sim_view_fini(sim_view *v)
{
    free(v->vv);
    free(v->tags);
    memset(v, 0, sizeof(*v));
}

static uint64_t vv_of(const sim_view *v, const uint8_t origin[32])
{
    for (size_t k = 0; k < v->nvv; k++)
        if (memcmp(v->vv[k].origin, origin, 32) == 0)
            return v->vv[k].seq;
    return 0;
}

typedef struct probe_ctx {
    sim *s;
    const uint8_t *key; /* origin, id or tag */
    uint64_t u;
    int applied;
    bool has;
} probe_ctx;

static node_err probe_vv_cb(node_txn *t, void *ctx)
{
    probe_ctx *c = ctx;
    c->u = node__ledger_vv_get(t, c->key);
    return NODE_OK;
}

static node_err probe_applied_cb(node_txn *t, void *ctx)
{
    probe_ctx *c = ctx;
    c->applied = node__ledger_applied_get(t, c->key);
    return NODE_OK;
}

static node_err probe_key_cb(node_txn *t, void *ctx)
{
    probe_ctx *c = ctx;
    ledger_key k;
    c->has = node__ledger_key_get(t, c->key, &k) == NODE_OK;
    proto_wipe(&k, sizeof(k));
    return NODE_OK;
}

static bool probe(sim *s, size_t i, node_txn_cb cb, probe_ctx *c)
{
    node_errmsg msg;
    return node_store_read(engine_store(&s->node[i]), cb, c, &msg) == NODE_OK;
}

uint64_t sim_vv(sim *s, size_t i, size_t origin)
{
    probe_ctx c = { s, s->node[origin].origin, 0, 0, false };
    return probe(s, i, probe_vv_cb, &c) ? c.u : 0;
}

int sim_applied(sim *s, size_t i, const uint8_t id[32])
{
    probe_ctx c = { s, id, 0, 0, false };
    return probe(s, i, probe_applied_cb, &c) ? c.applied : -1;
}

bool sim_has_key(sim *s, size_t i, const uint8_t tag[32])
{
    probe_ctx c = { s, tag, 0, 0, false };
    return probe(s, i, probe_key_cb, &c) && c.has;
}

/* A control request to node i, answered in the call (ctl.c through node_event). */
static json_object *ctl_json(sim *s, size_t i, const char *command)
{
    sim_node *nd = &s->node[i];
    proto_bytes arg = { (const uint8_t *)"", 0 };
    proto_ctl_request req = { 1, { (const uint8_t *)command, strlen(command) }, &arg, 1, NULL };
    proto_buf out = { NULL, 0 };
    if (proto_ctl_request_encode(&req, &out) != PROTO_OK)
        return NULL;
    free(nd->reply);
    nd->reply = NULL;
    nd->reply_len = 0;
    enter(s, i);
    node__event(nd->e, NODE_NET_CONTROL, 0, 0, out.p, out.len);
    proto_buf_free(&out);
    proto_ctl_response r;
    if (nd->reply == NULL
        || proto_ctl_response_decode(nd->reply, nd->reply_len, &s->lim, &r, NULL) != PROTO_OK)
        return NULL;
    char *text = malloc(r.payload.len + 1);
    if (text == NULL)
        return NULL;
    memcpy(text, r.payload.p, r.payload.len);
    text[r.payload.len] = 0;
    json_object *doc = json_tokener_parse(text);
    free(text);
    return doc;
}

static long long jnum(json_object *o, const char *a, const char *b)
{
    json_object *x, *y;
    if (!json_object_object_get_ex(o, a, &x) || !json_object_object_get_ex(x, b, &y))
        return -1;
    return (long long)json_object_get_int64(y);
}

bool sim_waiting_read(sim *s, size_t i, sim_waiting *w)
{
    json_object *doc = ctl_json(s, i, "status");
    if (doc == NULL) {
        memset(w, 0xff, sizeof(*w));
        return false;
    }
    w->causal = jnum(doc, "waiting", "causal");
    w->clock = jnum(doc, "waiting", "clock");
    w->key = jnum(doc, "waiting", "key");
    w->bodies = jnum(doc, "waiting", "bodies");
    w->headers = jnum(doc, "waiting", "headers");
    w->refills = jnum(doc, "memory", "refills");
    json_object_put(doc);
    return true;
}

sim_traffic sim_traffic_read(sim *s, size_t i)
{
    sim_traffic t = { -1, -1, -1, -1, -1 };
    json_object *doc = ctl_json(s, i, "status");
    if (doc != NULL) {
        t.headers_got = jnum(doc, "traffic", "headers_got");
        t.headers_dup = jnum(doc, "traffic", "headers_dup");
        t.bodies_got = jnum(doc, "traffic", "bodies_got");
        t.bodies_dup = jnum(doc, "traffic", "bodies_dup");
        t.parked = jnum(doc, "traffic", "parked");
        json_object_put(doc);
    }
    return t;
}

bool sim_quarantine_read(sim *s, size_t i, size_t origin, sim_quarantine *q)
{
    memset(q, 0, sizeof(*q));
    json_object *doc = ctl_json(s, i, "status"), *list, *v;
    if (doc == NULL)
        return false;
    char hex[65];
    proto_hex_encode(s->node[origin].origin, 32, hex);
    for (size_t k = 0;
         json_object_object_get_ex(doc, "quarantined", &list) && k < json_object_array_length(list);
         k++) {
        json_object *e = json_object_array_get_idx(list, k);
        if (!json_object_object_get_ex(e, "origin", &v) || strcmp(json_object_get_string(v), hex))
            continue;
        if (json_object_object_get_ex(e, "seq", &v))
            q->seq = json_object_get_int64(v);
        if (json_object_object_get_ex(e, "self", &v))
            q->self = json_object_get_boolean(v);
        if (json_object_object_get_ex(e, "void_own", &v))
            q->void_own = json_object_get_int64(v);
        if (json_object_object_get_ex(e, "void_own_writes", &v))
            for (size_t w = 0; w < json_object_array_length(v) && w < SIM_VOID_LISTED; w++) {
                json_object *wr = json_object_array_get_idx(v, w), *f;
                if (json_object_object_get_ex(wr, "seq", &f))
                    q->listed[w].seq = json_object_get_int64(f);
                if (json_object_object_get_ex(wr, "scope", &f))
                    snprintf(q->listed[w].scope, sizeof(q->listed[w].scope), "%s",
                        json_object_get_string(f));
                q->nlisted++;
            }
    }
    json_object_put(doc);
    return true;
}

size_t sim_peers_up(sim *s, size_t i)
{
    json_object *doc = ctl_json(s, i, "status"), *peers;
    size_t up = 0;
    if (doc != NULL && json_object_object_get_ex(doc, "peers", &peers)) {
        for (size_t k = 0; k < json_object_array_length(peers); k++) {
            json_object *st;
            if (json_object_object_get_ex(json_object_array_get_idx(peers, k), "state", &st)
                && strcmp(json_object_get_string(st), "up") == 0)
                up++;
        }
    }
    json_object_put(doc);
    return up;
}

uint64_t sim_want_grace_ms(void)
{
    return NODE_WANT_GRACE_MS;
}

/* Append to why (always NUL-terminated, cut when full). */
static void app(char *why, size_t len, size_t *off, const char *fmt, ...) NODE_PRINTF(4, 5);
static void app(char *why, size_t len, size_t *off, const char *fmt, ...)
{
    if (*off + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n > 0)
        *off = *off + (size_t)n < len ? *off + (size_t)n : len - 1;
}

static void app_waiting(sim *s, char *why, size_t len, size_t *off)
{
    for (size_t i = 0; i < s->n; i++) {
        sim_waiting w;
        char hx[65];
        proto_hex_encode(s->node[i].origin, 32, hx);
        if (sim_waiting_read(s, i, &w))
            app(why, len, off,
                "\n  node %zu (%s, origin %.16s) waits: causal=%lld clock=%lld key=%lld "
                "bodies=%lld headers=%lld",
                i, s->node[i].org, hx, w.causal, w.clock, w.key, w.bodies, w.headers);
    }
}

/* Which node lacks which origin's headers; true when none does. */
/* Of an origin known forked, the nodes must agree on the fork point and hold its log up to
 * just below it (beyond, both branches are void and the nodes do not trade them). */
static uint64_t fork_of(const sim_view *v, const uint8_t origin[32])
{
    for (size_t k = 0; k < v->nvv; k++)
        if (memcmp(v->vv[k].origin, origin, 32) == 0)
            return v->vv[k].fork;
    return 0;
}

static bool vv_report(sim *s, const sim_view *v, char *why, size_t len, size_t *off)
{
    bool ok = true;
    for (size_t o = 0; o < s->n; o++) {
        uint64_t max = 0, fork = 0;
        size_t holder = 0;
        for (size_t i = 0; i < s->n; i++) {
            uint64_t f = fork_of(&v[i], s->node[o].origin);
            fork = f != 0 && (fork == 0 || f < fork) ? f : fork;
        }
        for (size_t i = 0; fork != 0 && i < s->n; i++) {
            uint64_t f = fork_of(&v[i], s->node[o].origin);
            if (f != fork) {
                ok = false;
                app(why, len, off,
                    "\n  node %zu (%s) holds the fork point %" PRIu64 " of origin %s (node %zu), "
                    "not %" PRIu64,
                    i, s->node[i].org, f, s->node[o].org, o, fork);
            }
        }
        for (size_t i = 0; i < s->n; i++) {
            uint64_t h = vv_of(&v[i], s->node[o].origin);
            h = fork != 0 && h >= fork ? fork - 1 : h;
            if (h > max) {
                max = h;
                holder = i;
            }
        }
        for (size_t i = 0; i < s->n; i++) {
            uint64_t h = vv_of(&v[i], s->node[o].origin);
            h = fork != 0 && h >= fork ? fork - 1 : h;
            if (h < max) {
                ok = false;
                app(why, len, off,
                    "\n  node %zu (%s) lacks headers %" PRIu64 "..%" PRIu64
                    " of origin %s (node %zu), which node %zu holds",
                    i, s->node[i].org, h + 1, max, s->node[o].org, o, holder);
            }
        }
    }
    return ok;
}

/* What node i holds of a tag: its headers, their bodies, and how many are merged or refused. */
typedef struct tag_count {
    sim *s;
    node_txn *t;
    const uint8_t *tag;
    size_t headers, bodies, applied, refused;
    char first[160]; /* the first held body that is neither merged nor refused */
} tag_count;

static bool tag_count_cb(const uint8_t id[32], void *ctx)
{
    tag_count *c = ctx;
    c->headers++;
    c->bodies += node__ledger_body_has(c->t, id);
    int a = node__ledger_applied_get(c->t, id);
    c->applied += a == LEDGER_APPLIED;
    c->refused += a == LEDGER_REFUSED;
    const void *hb;
    size_t hl;
    proto_header h;
    if (a == 0 && c->first[0] == 0 && node__ledger_body_has(c->t, id)
        && node__ledger_header_by_id(c->t, id, &hb, &hl) == NODE_OK
        && proto_header_decode(hb, hl, &c->s->lim, &h, NULL) == PROTO_OK) {
        size_t o = 0;
        while (o < c->s->n && memcmp(c->s->node[o].origin, h.origin, 32) != 0)
            o++;
        char hx[65];
        proto_hex_encode(h.id, 32, hx);
        snprintf(c->first, sizeof(c->first),
            " (first unmerged: kind %u of node %zu, seq %" PRIu64 ", id %.16s)", h.kind, o, h.seq,
            hx);
    }
    return true;
}

static node_err tag_count_txn(node_txn *t, void *ctx)
{
    tag_count *c = ctx;
    c->t = t;
    return node__ledger_tag_headers(t, c->tag, tag_count_cb, c);
}

static void tag_report(sim *s, size_t i, const uint8_t tag[32], char *why, size_t len, size_t *off)
{
    tag_count c = { s, NULL, tag, 0, 0, 0, 0, "" };
    node_errmsg msg;
    if (node_store_read(engine_store(&s->node[i]), tag_count_txn, &c, &msg) != NODE_OK)
        return;
    app(why, len, off,
        "\n    node %zu (%s): %zu headers of the tag, %zu bodies, %zu merged, %zu refused%s", i,
        s->node[i].org, c.headers, c.bodies, c.applied, c.refused, c.first);
}

bool sim_converged(sim *s, char *why, size_t len)
{
    size_t off = 0;
    why[0] = 0;
    sim_view v[SIM_MAX_NODES];
    memset(v, 0, sizeof(v));
    bool ok = true;
    for (size_t i = 0; i < s->n && ok; i++)
        if (!view_read(s, i, &v[i], false)) {
            app(why, len, &off, "cannot read node %zu", i);
            ok = false;
        }
    if (ok && !vv_report(s, v, why, len, &off))
        ok = false;
    if (ok) {
        for (size_t i = 0; i < s->n && ok; i++) {
            sim_view_fini(&v[i]);
            ok = view_read(s, i, &v[i], true);
        }
        size_t differ = 0;
        for (size_t i = 0; ok && i < s->n; i++) {
            for (size_t k = 0; k < v[i].ntags; k++) {
                for (size_t j = i + 1; j < s->n; j++) {
                    const sim_tag *t = v[j].ntags == 0
                        ? NULL
                        : bsearch(&v[i].tags[k], v[j].tags, v[j].ntags, sizeof(sim_tag), tag_cmp);
                    if (t == NULL || memcmp(t->digest, v[i].tags[k].digest, 32) == 0)
                        continue;
                    if (differ++ < 8) {
                        char hex[65];
                        proto_hex_encode(t->tag, 32, hex);
                        app(why, len, &off,
                            "\n  tag %.16s: node %zu (%s) and node %zu (%s) hold different "
                            "states",
                            hex, i, s->node[i].org, j, s->node[j].org);
                        tag_report(s, i, t->tag, why, len, &off);
                        tag_report(s, j, t->tag, why, len, &off);
                    }
                }
            }
        }
        if (differ > 8)
            app(why, len, &off, "\n  ... %zu differences in all", differ);
        if (differ > 0)
            ok = false;
    }
    /* A network at rest waits for nothing: no body lacked, none held unmerged, no header held
     * out of order. */
    for (size_t i = 0; ok && i < s->n; i++) {
        sim_waiting w;
        if (!sim_waiting_read(s, i, &w) || w.causal != 0 || w.clock != 0 || w.key != 0
            || w.bodies != 0 || w.headers != 0) {
            app(why, len, &off, "\n  node %zu (%s) still waits for something", i, s->node[i].org);
            ok = false;
        }
    }
    if (!ok)
        app_waiting(s, why, len, &off);
    for (size_t i = 0; i < s->n; i++)
        sim_view_fini(&v[i]);
    return ok;
}

/* Was acknowledged delta h refused by the rule of narrowings (a grant that narrows the one in
 * force is written after a narrowing whose cut is the owner's last header of the org): a write
 * the owner had not received when it narrowed is refused, as cli/README.md says. */
static bool cut_by_narrowing(node_txn *t, sim *s, const sim_hdr *a)
{
    const void *hb;
    size_t hl;
    proto_header h;
    ledger_key key;
    if (a->kind != PROTO_HDR_DELTA || node__ledger_header_by_id(t, a->id, &hb, &hl) != NODE_OK
        || proto_header_decode(hb, hl, &s->node[a->node].e->lim, &h, NULL) != PROTO_OK)
        return false;
    bool cut = node__ledger_key_get(t, a->tag, &key) == NODE_OK
        && node__cut_by(t, &key, s->node[a->node].org, &h, 0) != 0;
    proto_wipe(&key, sizeof(key));
    proto_header_fini(&h);
    return cut;
}

/* Was the scope of tag purged at this node (its access ended on consent: keys destroyed)? */
static bool purged_here(node_txn *t, const uint8_t tag[32])
{
    proto_case_id c;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    ledger_closed x;
    return node__ledger_purged_get(t, tag, &c, scope) == NODE_OK
        && node__ledger_closed_get(t, &c, scope, &x) == NODE_OK && x.purged;
}

/* Is the scope of a's tag closed at node i (its access ended, what it received kept) and a
 * not one that such a scope still takes (the owner's writes up to the narrowing): nobody sends
 * it there, so it need not be merged there? */
static bool closed_out(node_txn *t, sim *s, size_t i, const sim_hdr *a)
{
    const void *hb;
    size_t hl;
    proto_header h;
    bool out = false;
    if (node__tag_closed_here(t, a->tag) && node__ledger_header_by_id(t, a->id, &hb, &hl) == NODE_OK
        && proto_header_decode(hb, hl, &s->node[a->node].e->lim, &h, NULL) == PROTO_OK) {
        out = !node__may_hold(t, s->node[i].e, &h);
        proto_header_fini(&h);
    }
    return out;
}

typedef struct acked_ctx {
    sim *s;
    size_t node;
    char *why;
    size_t len, *off, bad;
} acked_ctx;

static node_err acked_cb(node_txn *t, void *ctx)
{
    acked_ctx *c = ctx;
    sim *s = c->s;
    for (size_t k = 0; k < s->nacked; k++) {
        const sim_hdr *h = &s->acked[k];
        const char *wrong = NULL;
        if (node__ledger_vv_get(t, s->node[h->node].origin) < h->seq) {
            wrong = "its header is missing";
        } else {
            ledger_key key;
            bool has = node__ledger_key_get(t, h->tag, &key) == NODE_OK;
            proto_wipe(&key, sizeof(key));
            int applied = node__ledger_applied_get(t, h->id);
            /* (a key grant to a node whose scope was purged there since: nothing of it stays) */
            bool gone = h->kind == PROTO_HDR_KEY_GRANT && !has && purged_here(t, h->tag);
            bool must = h->kind == PROTO_HDR_DELTA ? has && !closed_out(t, s, c->node, h)
                                                   : h->recipient == c->node && !gone;
            if (h->kind == PROTO_HDR_KEY_GRANT && h->recipient == c->node && !has && !gone)
                wrong = "the recipient holds no key of its tag";
            else if (must && applied != LEDGER_APPLIED
                && !(applied == LEDGER_REFUSED && cut_by_narrowing(t, s, h)))
                wrong = applied == LEDGER_REFUSED ? "it was refused" : "it is not merged";
        }
        if (wrong != NULL && c->bad++ < 8)
            app(c->why, c->len, c->off,
                "\n  acknowledged %s %s seq %" PRIu64 " (at %.3f s) at node %zu (%s): %s",
                h->kind == PROTO_HDR_KEY_GRANT ? "key grant" : "delta", s->node[h->node].org,
                h->seq, (double)(h->acked_ms - T0_MS) / 1000.0, c->node, s->node[c->node].org,
                wrong);
    }
    return NODE_OK;
}

bool sim_acked_ok(sim *s, char *why, size_t len)
{
    size_t off = 0, bad = 0;
    why[0] = 0;
    for (size_t i = 0; i < s->n; i++) {
        acked_ctx c = { s, i, why, len, &off, 0 };
        node_errmsg msg;
        if (node_store_read(engine_store(&s->node[i]), acked_cb, &c, &msg) != NODE_OK) {
            app(why, len, &off, "\n  cannot read node %zu: %s", i, msg.text);
            bad++;
        }
        bad += c.bad;
    }
    if (bad > 8)
        app(why, len, &off, "\n  ... %zu in all", bad);
    if (bad > 0)
        app_waiting(s, why, len, &off);
    return bad == 0;
}

bool sim_converge(sim *s, uint64_t max_ms, char *why, size_t len)
{
    uint64_t deadline = s->now + max_ms;
    for (;;) {
        sim_view v[SIM_MAX_NODES];
        memset(v, 0, sizeof(v));
        bool same = true;
        for (size_t i = 0; i < s->n; i++)
            same = view_read(s, i, &v[i], false) && same;
        size_t off = 0;
        char dummy[8];
        same = same && vv_report(s, v, dummy, sizeof(dummy), &off);
        for (size_t i = 0; i < s->n; i++)
            sim_view_fini(&v[i]);
        if (same && sim_converged(s, why, len))
            return true;
        if (s->now >= deadline)
            break;
        uint64_t left = deadline - s->now;
        if (!sim_run_for(s, left < CONVERGE_CHECK_MS ? left : CONVERGE_CHECK_MS))
            return false;
    }
    char head[160];
    snprintf(head, sizeof(head),
        "not converged within %.1f s of simulated time:", (double)max_ms / 1000.0);
    size_t hl = strlen(head);
    char *rest = malloc(len);
    if (rest != NULL) {
        bool ok = sim_converged(s, rest, len);
        snprintf(why, len, "%s%s", head, ok ? " (converged at the last moment)" : rest);
        free(rest);
    } else if (len > hl) {
        memcpy(why, head, hl + 1);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */

static void print_tail(const char *path, const char *org, size_t lines)
{
    size_t len = 0;
    char *text = slurp(path, &len);
    if (text == NULL)
        return;
    size_t seen = 0, i = len;
    while (i > 0 && seen <= lines)
        if (text[--i] == '\n')
            seen++;
    fprintf(stderr, "---- %s: last lines of %s ----\n%s", org, path, text + (i > 0 ? i + 1 : 0));
    free(text);
}

void sim_print_replay(const sim *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->node[i].log == NULL)
            continue;
        fflush(s->node[i].log);
        print_tail(s->node[i].logpath, s->node[i].org, 12);
    }
    fprintf(stderr,
        "sim: seed %" PRIu64 ", %zu nodes, at %.3f s of simulated time, %" PRIu64 " events\n"
        "sim: replay with: SIM_SEED=%" PRIu64 " SIM_TEST=%s %s%s%s   (SIM_LOG=debug SIM_KEEP=1 "
        "for the nodes' logs)\n",
        s->o.seed, s->n, (double)(s->now - T0_MS) / 1000.0, s->steps, s->o.seed, s->name,
        s->replay_env, s->replay_env[0] ? " " : "", program);
}
