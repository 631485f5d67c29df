/*
 * chaos.c - `patto-testnet chaos`: a seeded random run of operator operations and faults on a
 * fresh testnet, then the checks (README.md "Chaos runs").
 *
 * The plan is a function of (seed, nodes, ops) only: every operation, its node, its values
 * and every fault with its place among the operations are drawn before the network starts.
 * What happens when the plan meets the network (which operations a node acknowledges, when
 * deltas arrive) is recorded and checked, never fed back into the plan.
 *
 * Values are tokens "q" + 5 hex digits of the seed + "z" + the step number (6 digits) + 4
 * check letters drawn from (seed, step), so each written value names the step that wrote it,
 * and a node's data.mdb can be scanned for plaintext of scopes it was never granted. The
 * check letters matter: LMDB leaves stale bytes in the unused middle of its pages, where a
 * fragment of a node's own value can be overlaid by page bookkeeping; without a check, one
 * changed digit turned a node's own value into another step's token (a false leak).
 */
#include "tn.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_REG, F_SET, F_CTR, F_TL };

typedef struct field {
    const char *scope, *name;
    int type;
    int scope_ix;
} field;

static const char *const scopes[] = { "anagrafica", "contatti", "lingua", "competenze", "lavoro" };
#define NSCOPES 5

static const field fields[] = {
    { "anagrafica", "nome", F_REG, 0 },
    { "anagrafica", "cognome", F_REG, 0 },
    { "anagrafica", "nomi_varianti", F_SET, 0 },
    { "contatti", "domicilio", F_REG, 1 },
    { "contatti", "telefono", F_SET, 1 },
    { "lingua", "cpia", F_REG, 2 },
    { "lingua", "ore_frequenza", F_CTR, 2 },
    { "competenze", "competenze", F_SET, 3 },
    { "competenze", "esperienze", F_SET, 3 },
    { "lavoro", "tirocini", F_TL, 4 },
};
#define NFIELDS (sizeof fields / sizeof fields[0])

typedef enum {
    S_NEW,
    S_EDIT,
    S_GRANT,
    S_PARTITION,
    S_SLOW,
    S_HEAL,
    S_STOP,
    S_CONT,
    S_KILL,
    S_RESTART,
} skind;

static const char *const skind_names[]
    = { "new", "edit", "grant", "partition", "slow", "heal", "stop", "cont", "kill", "restart" };

typedef struct step {
    skind kind;
    int node;       /* where an operation runs; the node a fault acts on */
    int c;          /* case (index in creation order) */
    int f;          /* field (edit) or scope (grant) */
    int to;         /* grant recipient; the other end of a slow link */
    bool write;     /* grant access */
    bool remove;    /* set remove or counter subtraction */
    long amount;    /* counter */
    unsigned tok;   /* token: this step's number, or (remove) the step that added it */
    unsigned delay; /* slow */
    unsigned loss;
    int group[TN_MAX_NODES];
} step;

typedef enum { R_SKIP, R_ACK, R_REFUSED, R_UNKNOWN } result;

/* The most steps a plan may have: the largest plan (1,000,000 operations, with its faults
 * about 1,070,000 steps) fits, and every step finds room in the run's report. */
#define PLAN_STEPS_MAX (TN_REPORT_EVENTS_MAX - 16)

typedef struct plan {
    tn_vec v;    /* of step, at most PLAN_STEPS_MAX */
    step *steps; /* once planned: v's items, */
    size_t n;    /* and how many */
    size_t ncases;
    int *owner; /* per case */
} plan;

/* ---------------------------------------------------------------------------------------- */
/* The plan                                                                                  */

typedef struct rng {
    uint64_t s;
} rng;

static unsigned below(rng *r, unsigned n)
{
    return n == 0 ? 0 : (unsigned)(tn_splitmix64(&r->s) % n);
}

#define TOK_LEN 17 /* q + 5 hex + z + 6 digits + 4 check letters */

/* The 4 check letters of step tok in a run of seed (a splitmix64 finaliser). */
static void tokcheck(uint64_t seed, unsigned tok, char out[4])
{
    uint64_t h
        = tn_mix64(seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)tok + 1) * 0xc2b2ae3d27d4eb4full);
    for (int i = 0; i < 4; i++, h /= 26)
        out[i] = (char)('a' + h % 26);
}

static void tokname(uint64_t seed, unsigned tok, char out[24])
{
    char check[4];
    tokcheck(seed, tok, check);
    snprintf(out, 24, "q%05xz%06u%.4s", (unsigned)((seed * 0x9e3779b97f4a7c15ull) >> 44) & 0xfffffu,
        tok, check);
}

/* Per-case planning state: write grants per scope and node, set members added. */
typedef struct pcase {
    int owner;
    unsigned char grant[NSCOPES][TN_MAX_NODES]; /* 0 none, 1 read, 2 write */
    tn_vec added[NFIELDS]; /* of unsigned (the step that added it), at most ops */
} pcase;

/* Everything the planner knows between two draws. Its draws are the plan: change nothing of
 * their order (tests/testnet/plans/ holds plans the program made before, byte for byte). */
typedef struct planner {
    plan *p;
    rng r;
    size_t nodes, ops;
    size_t done;  /* operations planned so far */
    tn_vec cases; /* of pcase, one per case created, at most ops */
    bool down[TN_MAX_NODES], killed[TN_MAX_NODES];
    size_t recover_at[TN_MAX_NODES];
    size_t ndown, max_down;
    bool partitioned, slowed;
    size_t heal_at;
} planner;

/* A new zeroed step at the end, its token its own number. NULL with *err when full. */
static step *plan_push(plan *p, tn_err *err)
{
    step *s = tn_vec_push(&p->v, err);
    if (s != NULL)
        s->tok = (unsigned)(p->v.n - 1);
    return s;
}

/* Recoveries and heals that fall due before the next draw: every node stopped or killed
 * comes back at its time (SIGCONT or restart), then the faults on links heal at theirs. */
static tn_err plan_due(planner *pl)
{
    tn_err err = TN_OK;
    for (size_t i = 0; i < pl->nodes; i++)
        if (pl->down[i] && pl->recover_at[i] <= pl->done) {
            step *s = plan_push(pl->p, &err);
            if (s == NULL)
                return err;
            s->kind = pl->killed[i] ? S_RESTART : S_CONT;
            s->node = (int)i;
            pl->down[i] = pl->killed[i] = false;
            pl->ndown--;
        }
    if ((pl->partitioned || pl->slowed) && pl->heal_at <= pl->done) {
        step *s = plan_push(pl->p, &err);
        if (s == NULL)
            return err;
        s->kind = S_HEAL;
        pl->partitioned = pl->slowed = false;
    }
    return TN_OK;
}

/* One fault: a partition into two groups, a slow (perhaps lossy) link, a stop or kill of one
 * more node while at most (N-1)/2 are down, or else a heal. */
static tn_err plan_fault(planner *pl)
{
    rng *r = &pl->r;
    size_t nodes = pl->nodes;
    unsigned what = below(r, 4);
    tn_err err;
    step *s = plan_push(pl->p, &err);
    if (s == NULL)
        return err;
    if (what == 0 && !pl->partitioned) {
        /* Two groups: a random non-empty proper subset against the rest. */
        s->kind = S_PARTITION;
        unsigned mask;
        do
            mask = below(r, 1u << nodes);
        while (mask == 0 || mask == (1u << nodes) - 1);
        for (size_t i = 0; i < nodes; i++)
            s->group[i] = (int)((mask >> i) & 1u);
        pl->partitioned = true;
        pl->heal_at = pl->done + 10 + below(r, 60);
    } else if (what == 1) {
        s->kind = S_SLOW;
        s->node = (int)below(r, (unsigned)nodes);
        s->to = (int)((s->node + 1 + (int)below(r, (unsigned)nodes - 1)) % (int)nodes);
        s->delay = 20 + below(r, 400);
        s->loss = below(r, 3) == 0 ? 5 + below(r, 20) : 0;
        if (!pl->slowed && !pl->partitioned)
            pl->heal_at = pl->done + 10 + below(r, 60);
        pl->slowed = true;
    } else if (pl->ndown < pl->max_down) {
        int i;
        do
            i = (int)below(r, (unsigned)nodes);
        while (pl->down[i]);
        s->kind = what == 2 ? S_STOP : S_KILL;
        s->node = i;
        pl->down[i] = true;
        pl->killed[i] = s->kind == S_KILL;
        pl->recover_at[i] = pl->done + 5 + below(r, 40);
        pl->ndown++;
    } else {
        s->kind = S_HEAL;
        pl->partitioned = pl->slowed = false;
    }
    return TN_OK;
}

/* Step s becomes a grant of case c by its owner: a scope, read or write, to another node. */
static void plan_grant(planner *pl, step *s, int c)
{
    pcase *pc = TN_VEC_AT(&pl->cases, pcase, c);
    s->kind = S_GRANT;
    s->c = c;
    s->node = pc->owner;
    s->f = (int)below(&pl->r, NSCOPES);
    s->to = (int)((pc->owner + 1 + (int)below(&pl->r, (unsigned)pl->nodes - 1)) % (int)pl->nodes);
    s->write = below(&pl->r, 10) < 4;
    pc->grant[s->f][s->to] = s->write ? 2 : 1;
}

/* Who edits case c: its owner, or a running node the plan granted write; -1 when nobody can. */
static int plan_editor(planner *pl, const pcase *pc)
{
    int writers[TN_MAX_NODES], nw = 0;
    for (size_t i = 0; i < pl->nodes; i++) {
        if (pl->down[i] || (int)i == pc->owner)
            continue;
        for (int sc = 0; sc < NSCOPES; sc++)
            if (pc->grant[sc][i] == 2) {
                writers[nw++] = (int)i;
                break;
            }
    }
    if (!pl->down[pc->owner] && (nw == 0 || below(&pl->r, 10) < 7))
        return pc->owner;
    if (nw > 0)
        return writers[below(&pl->r, (unsigned)nw)];
    return -1;
}

/* Step s becomes an edit of case c by node who: a field it may write, and what is written
 * (a set add, a set remove of an element added before, a counter change, a value). */
static tn_err plan_edit(planner *pl, step *s, int c, int who)
{
    pcase *pc = TN_VEC_AT(&pl->cases, pcase, c);
    rng *r = &pl->r;
    unsigned cand[NFIELDS], nc = 0;
    for (unsigned f = 0; f < NFIELDS; f++)
        if (who == pc->owner || pc->grant[fields[f].scope_ix][who] == 2)
            cand[nc++] = f;
    unsigned f = cand[below(r, nc)];
    s->kind = S_EDIT;
    s->c = c;
    s->node = who;
    s->f = (int)f;
    tn_vec *added = &pc->added[f];
    if (fields[f].type == F_SET && added->n > 0 && below(r, 5) == 0) {
        s->remove = true;
        s->tok = *TN_VEC_AT(added, unsigned, below(r, (unsigned)added->n));
    } else if (fields[f].type == F_SET) {
        tn_err err;
        unsigned *tok = tn_vec_push(added, &err);
        if (tok == NULL)
            return err;
        *tok = s->tok;
    } else if (fields[f].type == F_CTR) {
        s->remove = below(r, 4) == 0;
        s->amount = 1 + (long)below(r, 9);
    }
    return TN_OK;
}

/* Step s becomes a new case at a running node (live: the nlive running ones). */
static tn_err plan_new(planner *pl, step *s, const unsigned *live, unsigned nlive)
{
    plan *p = pl->p;
    s->kind = S_NEW;
    s->node = (int)live[below(&pl->r, nlive)];
    s->c = (int)p->ncases;
    tn_err err;
    pcase *pc = tn_vec_push(&pl->cases, &err);
    if (pc == NULL)
        return err;
    for (unsigned f = 0; f < NFIELDS; f++)
        tn_vec_init(&pc->added[f], sizeof(unsigned), pl->ops);
    pc->owner = s->node;
    p->owner[p->ncases] = s->node;
    p->ncases++;
    return TN_OK;
}

/* One operation at a running node: a grant, an edit, or else a new case. */
static tn_err plan_op(planner *pl)
{
    plan *p = pl->p;
    unsigned live[TN_MAX_NODES], nlive = 0;
    for (size_t i = 0; i < pl->nodes; i++)
        if (!pl->down[i])
            live[nlive++] = (unsigned)i;
    tn_err err;
    step *s = plan_push(p, &err);
    if (s == NULL)
        return err;
    pl->done++;
    unsigned kind = below(&pl->r, 100);
    int c = p->ncases > 0 ? (int)below(&pl->r, (unsigned)p->ncases) : -1;
    const pcase *pc = c >= 0 ? TN_VEC_AT(&pl->cases, pcase, c) : NULL;
    if (pc != NULL && kind >= 10 && kind < 25 && !pl->down[pc->owner]) {
        plan_grant(pl, s, c);
        return TN_OK;
    }
    if (pc != NULL && kind >= 25) {
        int who = plan_editor(pl, pc);
        if (who >= 0)
            return plan_edit(pl, s, c, who);
    }
    return plan_new(pl, s, live, nlive);
}

/* The end: every node back, every fault healed. */
static tn_err plan_end(planner *pl)
{
    tn_err err;
    for (size_t i = 0; i < pl->nodes; i++)
        if (pl->down[i]) {
            step *s = plan_push(pl->p, &err);
            if (s == NULL)
                return err;
            s->kind = pl->killed[i] ? S_RESTART : S_CONT;
            s->node = (int)i;
        }
    step *s = plan_push(pl->p, &err);
    if (s == NULL)
        return err;
    s->kind = S_HEAL;
    return TN_OK;
}

/* Draw the plan of (seed, nodes, ops) into p (README.md "Chaos runs": about 6 faults per 100
 * operations, each draw below). TN_ENOMEM, TN_EFULL (more than PLAN_STEPS_MAX steps). */
static tn_err plan_make(plan *p, uint64_t seed, size_t nodes, size_t ops)
{
    tn_vec_init(&p->v, sizeof(step), PLAN_STEPS_MAX);
    planner *pl = calloc(1, sizeof *pl);
    p->owner = calloc(ops + 1, sizeof *p->owner);
    if (pl == NULL || p->owner == NULL) {
        free(pl);
        return TN_ENOMEM;
    }
    pl->p = p;
    pl->r.s = seed;
    pl->nodes = nodes;
    pl->ops = ops;
    pl->max_down = nodes >= 3 ? (nodes - 1) / 2 : 0;
    tn_vec_init(&pl->cases, sizeof(pcase), ops);
    tn_err err = TN_OK;
    while (pl->done < ops && err == TN_OK) {
        err = plan_due(pl);
        if (err == TN_OK)
            err = below(&pl->r, 100) < 6 ? plan_fault(pl) : plan_op(pl);
    }
    if (err == TN_OK)
        err = plan_end(pl);
    for (size_t c = 0; c < pl->cases.n; c++)
        for (unsigned f = 0; f < NFIELDS; f++)
            tn_vec_fini(&TN_VEC_AT(&pl->cases, pcase, c)->added[f]);
    tn_vec_fini(&pl->cases);
    free(pl);
    p->steps = p->v.items;
    p->n = p->v.n;
    return err;
}

static void plan_fini(plan *p)
{
    tn_vec_fini(&p->v);
    free(p->owner);
    memset(p, 0, sizeof *p);
}

/* One line describing step s (also the plan's printed form). */
static void describe(const tn_net *net, uint64_t seed, const step *s, char *buf, size_t size)
{
    char tok[24];
    tokname(seed, s->tok, tok);
    const char *at = net->nodes[s->node].name;
    switch (s->kind) {
    case S_NEW:
        snprintf(buf, size, "new case#%d at %s anagrafica.nome=%s", s->c, at, tok);
        break;
    case S_EDIT: {
        const field *f = &fields[s->f];
        if (f->type == F_CTR)
            snprintf(buf, size, "edit case#%d at %s %s.%s%s=%ld", s->c, at, f->scope, f->name,
                s->remove ? "-" : "+", s->amount);
        else if (f->type == F_TL)
            snprintf(buf, size, "edit case#%d at %s %s.%s+={\"nota\":\"%s\"}", s->c, at, f->scope,
                f->name, tok);
        else
            snprintf(buf, size, "edit case#%d at %s %s.%s%s=%s", s->c, at, f->scope, f->name,
                f->type == F_REG ? ""
                    : s->remove  ? "-"
                                 : "+",
                tok);
        break;
    }
    case S_GRANT:
        snprintf(buf, size, "grant case#%d at %s %s %s to %s", s->c, at, scopes[s->f],
            s->write ? "write" : "read", net->nodes[s->to].name);
        break;
    case S_PARTITION: {
        size_t used = (size_t)snprintf(buf, size, "partition ");
        if (used < size)
            tn_groups_text(net, s->group, 2, buf + used, size - used);
        break;
    }
    case S_SLOW:
        snprintf(buf, size, "slow %s %s --delay-ms %u --loss-pct %u", at, net->nodes[s->to].name,
            s->delay, s->loss);
        break;
    case S_HEAL:
        snprintf(buf, size, "heal");
        break;
    case S_STOP:
    case S_CONT:
    case S_KILL:
    case S_RESTART:
        snprintf(buf, size, "%s %s", skind_names[s->kind], at);
        break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The run                                                                                   */

/* The command line of a run (README.md "Chaos runs"). */
typedef struct chaos_opts {
    size_t nodes, ops;
    uint64_t seed;
    uint64_t duration; /* seconds the plan is paced over */
    const char *dir;   /* NULL: a new directory in /tmp */
    const char *report;
    bool plan_only, keep;
} chaos_opts;

typedef struct run {
    tn_net net;
    plan p;
    uint64_t seed;
    size_t ops;
    result *res;
    char (*ids)[64]; /* per case: its id once created */
    bool stopped[TN_MAX_NODES], killed[TN_MAX_NODES];
    bool crashed[TN_MAX_NODES]; /* found down without the run having killed it */
    unsigned long acked, refused, unknown, skipped, faults;
    uint64_t start;
    tn_report rep;
    bool tty;
    char active[512];      /* faults in force, for the progress line */
    char dir[TN_PATH_MAX]; /* where the network runs */
    bool made_dir;         /* dir is the run's own (removed unless kept) */
    bool up;               /* the network was started (it is stopped at the end) */
    bool keep;             /* keep dir */
    size_t done_ops;
    uint64_t last_sample;
} run;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t elapsed(const run *x)
{
    return tn_now_ms() - x->start;
}

/* Every node's lag now (tn_lags, from `patto digest`), into the report. */
static void sample(run *x)
{
    tn_sample s;
    memset(&s, 0, sizeof s);
    s.t_ms = elapsed(x);
    int64_t headers[TN_MAX_NODES];
    for (size_t i = 0; i < x->net.n; i++) {
        headers[i] = -1;
        if (x->stopped[i] || x->killed[i])
            continue;
        tn_out o = tn_patto(&x->net, i, "digest", NULL);
        if (o.status == 0 && o.json != NULL)
            headers[i] = tn_vv_headers(tn_jget(o.json, "vv"));
        tn_out_free(&o);
    }
    tn_lags(x->net.n, headers, s.lag);
    tn_report_sample(&x->rep, &s);
    x->last_sample = tn_now_ms();
}

static void progress(run *x, size_t done, bool final)
{
    char lags[256] = "";
    const tn_sample *s = tn_report_last(&x->rep);
    for (size_t i = 0; s != NULL && i < x->net.n; i++) {
        size_t used = strlen(lags);
        if (s->lag[i] >= 0)
            snprintf(lags + used, sizeof lags - used, " %lld", (long long)s->lag[i]);
        else
            snprintf(lags + used, sizeof lags - used, " -");
    }
    char line[1024];
    snprintf(line, sizeof line, "chaos: %5.1fs ops %zu/%zu acked=%lu refused=%lu faults: %s lag:%s",
        (double)elapsed(x) / 1000.0, done, x->ops, x->acked, x->refused,
        x->active[0] ? x->active : "none", lags);
    if (x->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        if (final)
            fputc('\n', stderr);
    } else {
        printf("%s\n", line);
    }
    fflush(NULL);
}

/* A line above the live progress line. */
static void say(run *x, const char *fmt, ...) TN_PRINTF(2, 3);
static void say(run *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (x->tty)
        fputs("\r\033[K", stderr);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void update_active(run *x)
{
    x->active[0] = '\0';
    tn_sv_status *st = malloc(sizeof *st);
    if (st != NULL && tn_sv_status_get(&x->net, st) == TN_OK)
        tn_sv_faults_text(&x->net, st, "; ", x->active, sizeof x->active);
    free(st);
    for (size_t i = 0; i < x->net.n; i++) {
        size_t used = strlen(x->active);
        if (x->stopped[i] || x->killed[i])
            snprintf(x->active + used, sizeof x->active - used, "%s%s %s", used ? "; " : "",
                x->stopped[i] ? "stopped" : "killed", x->net.nodes[i].name);
    }
}

static tn_err do_fault(run *x, const step *s, const char *desc)
{
    char line[1024];
    const char *name = x->net.nodes[s->node].name;
    switch (s->kind) {
    case S_PARTITION:
        snprintf(line, sizeof line, "%s", desc);
        break;
    case S_SLOW:
        snprintf(line, sizeof line, "slow %s %s %u %u", name, x->net.nodes[s->to].name, s->delay,
            s->loss);
        break;
    default:
        snprintf(line, sizeof line, "%s %s", skind_names[s->kind], name);
        if (s->kind == S_HEAL)
            snprintf(line, sizeof line, "heal");
        break;
    }
    char *ans = NULL;
    tn_err err = tn_ctl(x->net.dir, line, &ans, 30000);
    char state[TN_MAX_NODES][16];
    if (err == TN_EREFUSED && s->kind >= S_STOP && tn_node_states(&x->net, state) == TN_OK
        && strcmp(state[s->node], "down") == 0 && !x->killed[s->node]) {
        /* The node went down on its own (verify counts the crash and fails the run): go on
         * with the plan, so that the run still ends with every check and its evidence. */
        x->crashed[s->node] = true;
        x->stopped[s->node] = false;
        say(x, "chaos: %6.1fs %s skipped: %s is down, it was not killed by this run (see %s.log)",
            (double)elapsed(x) / 1000.0, desc, name, name);
        tn_report_event(&x->rep, elapsed(x), "fault", "%s: skipped, %s is down", desc, name);
        free(ans);
        return TN_OK;
    }
    if (err != TN_OK) {
        say(x, "chaos: fault \"%s\" failed: %s", line,
            err == TN_EREFUSED           ? ans
                : err == TN_EUNREACHABLE ? "no supervisor"
                                         : tn_strerror(err));
        free(ans);
        return err;
    }
    free(ans);
    if (s->kind == S_STOP)
        x->stopped[s->node] = true;
    if (s->kind == S_CONT)
        x->stopped[s->node] = false;
    if (s->kind == S_KILL)
        x->killed[s->node] = true;
    if (s->kind == S_RESTART) {
        x->killed[s->node] = false;
        x->crashed[s->node] = false;
        if ((err = tn_wait_node(&x->net, (size_t)s->node, 15000)) != TN_OK)
            return err;
    }
    x->faults++;
    update_active(x);
    tn_report_event(&x->rep, elapsed(x), "fault", "%s", desc);
    say(x, "chaos: %6.1fs %s", (double)elapsed(x) / 1000.0, desc);
    return TN_OK;
}

static result classify(int status)
{
    return status == 0                                ? R_ACK
        : (status == 1 || status == 2 || status == 3) ? R_REFUSED
                                                      : R_UNKNOWN;
}

static result do_op(run *x, const step *s)
{
    char tok[24], edit[256], ev[96];
    tokname(x->seed, s->tok, tok);
    if (s->kind == S_NEW) {
        snprintf(edit, sizeof edit, "anagrafica.nome=%s", tok);
        tn_out o = tn_patto(&x->net, (size_t)s->node, "case", "new", edit, NULL);
        json_object *id = o.status == 0 && o.json ? tn_jget(o.json, "id") : NULL;
        result r = id != NULL ? R_ACK : classify(o.status == 0 ? 5 : o.status);
        if (id != NULL)
            snprintf(x->ids[s->c], 64, "%s", json_object_get_string(id));
        tn_out_free(&o);
        return r;
    }
    if (x->ids[s->c][0] == '\0')
        return R_SKIP; /* its case was never created */
    tn_out o;
    if (s->kind == S_GRANT) {
        o = tn_patto(&x->net, (size_t)s->node, "consent", "grant", x->ids[s->c], "--to",
            x->net.nodes[s->to].name, "--scopes", scopes[s->f], "--purpose", "integrazione",
            "--basis", "public-task", "--access", s->write ? "write" : "read", NULL);
    } else {
        const field *f = &fields[s->f];
        if (f->type == F_CTR)
            snprintf(edit, sizeof edit, "%s.%s%s=%ld", f->scope, f->name, s->remove ? "-" : "+",
                s->amount);
        else if (f->type == F_TL) {
            snprintf(ev, sizeof ev, "{\"nota\":\"%s\"}", tok);
            snprintf(edit, sizeof edit, "%s.%s+=%s", f->scope, f->name, ev);
        } else
            snprintf(edit, sizeof edit, "%s.%s%s=%s", f->scope, f->name,
                f->type == F_REG ? ""
                    : s->remove  ? "-"
                                 : "+",
                tok);
        o = tn_patto(&x->net, (size_t)s->node, "case", "set", x->ids[s->c], edit, NULL);
    }
    result r = classify(o.status);
    if (r == R_UNKNOWN)
        say(x, "chaos: step %u: exit %d: %s%s", s->tok, o.status, o.out, o.err);
    tn_out_free(&o);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* The checks                                                                                */

typedef struct verdict {
    unsigned long lost, phantom, leaks, crashes;
    unsigned long seen; /* tokens found in the stores of nodes that may read them */
    char first[8][300];
    size_t nfirst;
} verdict;

static void note(verdict *v, const char *fmt, ...) TN_PRINTF(2, 3);
static void note(verdict *v, const char *fmt, ...)
{
    if (v->nfirst >= 8)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->first[v->nfirst++], sizeof v->first[0], fmt, ap);
    va_end(ap);
}

/* Final access of node i to scope sc of case c from acknowledged grants: 0 none, 1 read or
 * write; 2 when an unknown-outcome grant leaves it open. */
static int access_of(const run *x, int c, int sc, size_t i)
{
    if (x->p.owner[c] == (int)i)
        return 1;
    int a = 0;
    for (size_t k = 0; k < x->p.n; k++) {
        const step *s = &x->p.steps[k];
        if (s->kind == S_GRANT && s->c == c && s->f == sc && s->to == (int)i) {
            if (x->res[k] == R_ACK)
                a = 1;
            else if (x->res[k] == R_UNKNOWN && a == 0)
                a = 2;
        }
    }
    return a;
}

static bool json_has_string(json_object *arr, const char *v)
{
    for (size_t k = 0; arr && k < json_object_array_length(arr); k++) {
        json_object *e = json_object_array_get_idx(arr, k);
        const char *sv = json_object_get_string(e);
        if (sv != NULL && strcmp(sv, v) == 0)
            return true;
    }
    return false;
}

static bool timeline_has(json_object *arr, const char *tok)
{
    for (size_t k = 0; arr && k < json_object_array_length(arr); k++) {
        json_object *n = tn_jget(json_object_array_get_idx(arr, k), "event/nota");
        if (n != NULL && strcmp(json_object_get_string(n), tok) == 0)
            return true;
    }
    return false;
}

/* Check what node i shows of case c against every acknowledged step. */
static void check_case_at(run *x, int c, size_t i, json_object *show, bool *lost_step, verdict *v)
{
    const char *who = x->net.nodes[i].name;
    for (unsigned f = 0; f < NFIELDS; f++) {
        const field *fd = &fields[f];
        if (access_of(x, c, fd->scope_ix, i) != 1)
            continue;
        char path[128], conf[96];
        snprintf(path, sizeof path, "scopes/%s/%s", fd->scope, fd->name);
        snprintf(conf, sizeof conf, "%s.%s", fd->scope, fd->name);
        json_object *val = tn_jget(show, path);
        json_object *conflicts = NULL;
        json_object *call = tn_jget(show, "conflicts");
        if (call != NULL)
            json_object_object_get_ex(call, conf, &conflicts);
        long sum = 0;
        bool unknown_ctr = false;
        long last_reg = -1;
        bool unknown_after_reg = false;
        for (size_t k = 0; k < x->p.n; k++) {
            const step *s = &x->p.steps[k];
            bool on_field = (s->kind == S_EDIT && s->c == c && s->f == (int)f)
                || (s->kind == S_NEW && s->c == c && f == 0);
            if (!on_field)
                continue;
            result r = x->res[k];
            char tok[24];
            tokname(x->seed, s->tok, tok);
            if (fd->type == F_REG) {
                if (r == R_ACK) {
                    last_reg = (long)k;
                    unknown_after_reg = false;
                } else if (r == R_UNKNOWN)
                    unknown_after_reg = true;
            } else if (fd->type == F_CTR) {
                if (r == R_ACK)
                    sum += s->remove ? -s->amount : s->amount;
                else if (r == R_UNKNOWN)
                    unknown_ctr = true;
            } else if (fd->type == F_SET && !s->remove) {
                /* An element some remove was tried on is not checked either way. */
                bool removed = false;
                for (size_t m = k + 1; m < x->p.n && !removed; m++) {
                    const step *t = &x->p.steps[m];
                    removed = t->kind == S_EDIT && t->c == c && t->f == (int)f && t->remove
                        && t->tok == s->tok && x->res[m] != R_SKIP;
                }
                bool has = json_has_string(val, tok);
                if (r == R_ACK && !removed && !has) {
                    lost_step[k] = true;
                    note(v, "%s lacks %s (step %zu, acknowledged) in %s of case#%d", who, tok, k,
                        conf, c);
                }
                if ((r == R_REFUSED || r == R_SKIP) && has) {
                    v->phantom++;
                    note(v, "%s shows %s (step %zu, refused) in %s of case#%d", who, tok, k, conf,
                        c);
                }
            } else if (fd->type == F_TL && r == R_ACK && !timeline_has(val, tok)) {
                lost_step[k] = true;
                note(v, "%s lacks event %s (step %zu, acknowledged) in %s of case#%d", who, tok, k,
                    conf, c);
            }
        }
        if (fd->type == F_REG && last_reg >= 0 && !unknown_after_reg) {
            char tok[24];
            tokname(x->seed, x->p.steps[last_reg].tok, tok);
            const char *win = val ? json_object_get_string(val) : NULL;
            if (!(win != NULL && strcmp(win, tok) == 0) && !json_has_string(conflicts, tok)) {
                lost_step[last_reg] = true;
                note(v, "%s shows %s=%s, not the last acknowledged %s (step %ld) of case#%d", who,
                    conf, win ? win : "(nothing)", tok, last_reg, c);
            }
        }
        if (fd->type == F_CTR && !unknown_ctr) {
            long got = val ? (long)json_object_get_int64(val) : 0;
            if (got != sum) {
                v->lost++;
                note(v, "%s shows %s=%ld of case#%d, the acknowledged changes add up to %ld", who,
                    conf, got, c, sum);
            }
        }
    }
}

/* Scan node i's data.mdb for tokens of scopes it may not read. */
static void scan_store(run *x, size_t i, verdict *v)
{
    char path[TN_PATH_MAX + 60];
    tn_path(path, sizeof path, "%s/%s/data.mdb", x->net.dir, x->net.nodes[i].name);
    size_t len = 0;
    char *db = NULL;
    if (tn_read_file(path, TN_STORE_FILE_MAX, &db, &len) != TN_OK) {
        note(v, "cannot read %s: %s", path, strerror(errno));
        v->leaks++;
        return;
    }
    char prefix[24];
    tokname(x->seed, 0, prefix);
    prefix[7] = '\0'; /* "q" + 5 hex + "z" */
    for (char *p = db; (size_t)(p - db) + TOK_LEN <= len; p++) {
        p = memchr(p, 'q', len - (size_t)(p - db) - (TOK_LEN - 1));
        if (p == NULL)
            break;
        if (memcmp(p, prefix, 7) != 0)
            continue;
        unsigned k = 0;
        bool digits = true;
        for (int d = 7; d < 13; d++) {
            digits = digits && p[d] >= '0' && p[d] <= '9';
            k = k * 10 + (unsigned)(p[d] - '0');
        }
        char check[4];
        if (!digits || k >= x->p.n)
            continue;
        tokcheck(x->seed, k, check);
        if (memcmp(p + 13, check, 4) != 0)
            continue; /* a damaged fragment, not a value */
        const step *s = &x->p.steps[k];
        int sc = s->kind == S_NEW ? 0 : s->kind == S_EDIT ? fields[s->f].scope_ix : -1;
        if (sc < 0)
            continue;
        if (access_of(x, s->c, sc, i) != 0) {
            v->seen++;
            continue;
        }
        v->leaks++;
        note(v, "%s's data.mdb holds %.17s, written in %s of case#%d, never granted to it",
            x->net.nodes[i].name, p, scopes[sc], s->c);
    }
    free(db);
}

static void verify(run *x, verdict *v)
{
    bool *lost_step = calloc(x->p.n, sizeof *lost_step);
    if (lost_step == NULL)
        return;
    for (size_t c = 0; c < x->p.ncases; c++) {
        if (x->ids[c][0] == '\0')
            continue;
        for (size_t i = 0; i < x->net.n; i++) {
            tn_out o = tn_patto(&x->net, i, "case", "show", x->ids[c], NULL);
            bool any = false, open = false;
            for (int sc = 0; sc < NSCOPES; sc++) {
                int a = access_of(x, (int)c, sc, i);
                any = any || a == 1;
                open = open || a == 2;
                char path[64];
                snprintf(path, sizeof path, "scopes/%s", scopes[sc]);
                bool shown = o.status == 0 && o.json && tn_jget(o.json, path) != NULL;
                if (a == 0 && shown) {
                    v->leaks++;
                    note(v, "%s shows scope %s of case#%d (%s), never granted to it",
                        x->net.nodes[i].name, scopes[sc], (int)c, x->ids[c]);
                }
                if (a == 1 && !shown) {
                    /* A grant acknowledged (or the owner's own scope) must be readable. */
                    for (size_t k = 0; k < x->p.n; k++) {
                        const step *s = &x->p.steps[k];
                        if (s->kind == S_GRANT && s->c == (int)c && s->f == sc && s->to == (int)i
                            && x->res[k] == R_ACK)
                            lost_step[k] = true;
                    }
                }
            }
            if (!any && !open && o.status != 3) {
                v->leaks++;
                note(v, "%s: case show %s gives exit %d, not 3, with no grant",
                    x->net.nodes[i].name, x->ids[c], o.status);
            }
            if (any && o.status == 0 && o.json != NULL)
                check_case_at(x, (int)c, i, o.json, lost_step, v);
            else if (any) {
                v->lost++;
                note(v, "%s cannot show case#%d (%s): exit %d %s", x->net.nodes[i].name, (int)c,
                    x->ids[c], o.status, o.out);
            }
            tn_out_free(&o);
        }
    }
    for (size_t k = 0; k < x->p.n; k++)
        if (lost_step[k])
            v->lost++;
    free(lost_step);
    for (size_t i = 0; i < x->net.n; i++)
        scan_store(x, i, v);
    /* No node died that the run did not kill. */
    tn_sv_status *st = malloc(sizeof *st);
    if (st != NULL && tn_sv_status_get(&x->net, st) == TN_OK) {
        for (size_t i = 0; i < x->net.n; i++) {
            unsigned long crashes = st->nodes[i].crashes;
            const char *name = x->net.nodes[i].name;
            if (crashes > 0) {
                v->crashes += crashes;
                note(v, "%s crashed %lu time(s) (supervisor.log, %s.log)", name, crashes, name);
            }
        }
    } else {
        v->crashes++;
        note(v, "the supervisor does not answer");
    }
    free(st);
}

/* Count the warnings and errors the nodes logged, by event, and print them: they do not fail
 * a run (a node is meant to survive what it warns about), but they show what it went
 * through, e.g. links dropped for bad frames. */
static void log_summary(run *x, const char *dir)
{
    char names[32][64];
    unsigned long counts[32];
    size_t n = 0;
    for (size_t i = 0; i < x->net.n; i++) {
        char path[TN_PATH_MAX + 60];
        tn_path(path, sizeof path, "%s/%s.log", dir, x->net.nodes[i].name);
        char *log = NULL;
        if (tn_read_file(path, TN_LOG_FILE_MAX, &log, NULL) != TN_OK)
            log = NULL;
        for (char *save = NULL, *l = log ? strtok_r(log, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save)) {
            if (strstr(l, "level=warn") == NULL && strstr(l, "level=error") == NULL)
                continue;
            const char *ev = strstr(l, "event=");
            char name[64];
            if (ev == NULL || sscanf(ev, "event=%63s", name) != 1)
                continue;
            /* peer.reject: keep the reason's first words, they say what went wrong. */
            const char *why = strstr(l, "reason=\"");
            if (why != NULL) {
                size_t used = strlen(name), len = strcspn(why + 8, "(\"");
                while (len > 0 && why[8 + len - 1] == ' ')
                    len--;
                snprintf(name + used, sizeof name - used, "(%.*s)", (int)len, why + 8);
            }
            size_t k = 0;
            while (k < n && strcmp(names[k], name) != 0)
                k++;
            if (k == n && n < 32) {
                snprintf(names[n], sizeof names[n], "%s", name);
                counts[n++] = 0;
            }
            if (k < n)
                counts[k]++;
        }
        free(log);
    }
    for (size_t k = 0; k < n; k++)
        printf("chaos: node logs: %lu x %s\n", counts[k], names[k]);
}

/* Whether any log of the run (written until every process exited) holds a sanitizer
 * report (a sanitizer build of pattod or of the supervisor reports leaks at exit), or the
 * supervisor saw a node exit that nobody asked for (also during the final stop). */
static bool sanitizer_report(run *x, const char *dir)
{
    bool found = false;
    for (size_t i = 0; i <= x->net.n; i++) {
        char path[TN_PATH_MAX + 60];
        tn_path(path, sizeof path, "%s/%s.log", dir,
            i < x->net.n ? x->net.nodes[i].name : "supervisor");
        char *log = NULL;
        if (tn_read_file(path, TN_LOG_FILE_MAX, &log, NULL) != TN_OK)
            log = NULL;
        if (log != NULL
            && (strstr(log, "Sanitizer") != NULL || strstr(log, "runtime error:") != NULL)) {
            printf("chaos: a sanitizer report in %s\n", path);
            found = true;
        }
        /* Also the stop at the end: a node must exit 0 on SIGTERM. */
        if (log != NULL && i == x->net.n && strstr(log, "expected=no") != NULL) {
            printf("chaos: a node exited on its own (expected=no in %s)\n", path);
            found = true;
        }
        free(log);
    }
    return found;
}

/* ---------------------------------------------------------------------------------------- */
/* The command, step by step                                                                 */

/* The options, already checked against their ranges by the command table (main.c). */
static void chaos_options(const tn_args *a, chaos_opts *o)
{
    memset(o, 0, sizeof *o);
    o->nodes = (size_t)tn_num(a, "--nodes", 0);
    o->ops = (size_t)tn_num(a, "--ops", 0);
    o->seed = tn_num(a, "--seed", 0);
    o->duration = tn_num(a, "--duration", 0);
    o->dir = tn_text(a, "--dir");
    o->report = tn_text(a, "--report");
    o->plan_only = tn_given(a, "--plan");
    o->keep = tn_given(a, "--keep");
    /* By default 20 operations a second, so that faults last long enough to matter. */
    if (o->duration == 0)
        o->duration = (o->ops + 19) / 20;
}

/* `--plan`: every step, numbered, as the run would do it; the nodes named by the fixed order,
 * without a network. */
static void plan_print(run *x, const chaos_opts *o)
{
    x->net.n = o->nodes;
    for (size_t i = 0; i < x->net.n; i++)
        tn_node_name(i, x->net.nodes[i].name, x->net.nodes[i].role);
    for (size_t k = 0; k < x->p.n; k++) {
        char d[512];
        describe(&x->net, o->seed, &x->p.steps[k], d, sizeof d);
        printf("%zu %s\n", k, d);
    }
}

/* Before the network: the results' storage, the directory (a new one in /tmp, or DIR that
 * holds no testnet yet), the signals that interrupt the run, and the run's first lines. */
static tn_err run_prepare(run *x, const chaos_opts *o)
{
    x->res = calloc(x->p.n, sizeof *x->res);
    x->ids = calloc(x->p.ncases + 1, sizeof *x->ids);
    if (x->res == NULL || x->ids == NULL) {
        tn_msg("chaos: out of memory for the results of %zu steps", x->p.n);
        return TN_ENOMEM;
    }
    if (o->dir == NULL) {
        snprintf(x->dir, sizeof x->dir, "/tmp/patto-chaos-XXXXXX");
        if (mkdtemp(x->dir) == NULL) {
            tn_msg("chaos: cannot create a directory in /tmp: %s", strerror(errno));
            return TN_EIO;
        }
        x->made_dir = true;
    } else {
        tn_path(x->dir, sizeof x->dir, "%s", o->dir);
        char conf[TN_PATH_MAX + 20];
        tn_path(conf, sizeof conf, "%s/" TN_CONF, x->dir);
        if (tn_exists(conf)) {
            tn_msg("chaos: %s already holds a testnet; give a new directory", x->dir);
            return TN_EEXIST;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    x->tty = isatty(2) == 1;
    printf("chaos: seed=%llu nodes=%zu ops=%zu steps=%zu dir=%s\n", (unsigned long long)o->seed,
        o->nodes, o->ops, x->p.n, x->dir);
    printf("chaos: nodes (lag listed in this order):");
    for (size_t i = 0; i < o->nodes; i++) {
        char name[33], role[16];
        tn_node_name(i, name, role);
        printf(" %s", name);
    }
    printf("\n");
    fflush(stdout);
    return TN_OK;
}

/* A fresh network of o->nodes nodes in x->dir, its first event and sample. */
static tn_err run_up(run *x, const chaos_opts *o)
{
    x->start = tn_now_ms();
    x->up = true;
    tn_err err = tn_up(x->dir, o->nodes, 0, true);
    if (err == TN_OK)
        err = tn_net_load(&x->net, x->dir);
    if (err != TN_OK) {
        tn_msg("chaos: the network did not come up (see %s)", x->dir);
        return err;
    }
    tn_report_event(&x->rep, elapsed(x), "fault", "up %zu nodes", o->nodes);
    sample(x);
    return TN_OK;
}

/* Operation k of the plan, done, counted and recorded. */
static void run_op(run *x, size_t k, const char *desc)
{
    result r = do_op(x, &x->p.steps[k]);
    x->res[k] = r;
    x->done_ops++;
    if (r == R_ACK)
        x->acked++;
    else if (r == R_REFUSED)
        x->refused++;
    else if (r == R_UNKNOWN)
        x->unknown++;
    else
        x->skipped++;
    tn_report_event(&x->rep, elapsed(x), "op", "%s: %s", desc,
        r == R_ACK           ? "acked"
            : r == R_REFUSED ? "refused"
            : r == R_UNKNOWN ? "unknown"
                             : "skipped");
}

/* Every step of the plan in order, paced over o->duration seconds, with lag samples twice a
 * second and the progress line. TN_OK; TN_EINTERRUPTED (SIGINT, SIGTERM); the error of a
 * fault the supervisor could not do. */
static tn_err run_steps(run *x, const chaos_opts *o)
{
    uint64_t last_progress = 0, run_start = tn_now_ms();
    for (size_t k = 0; k < x->p.n && !interrupted; k++) {
        const step *s = &x->p.steps[k];
        if (o->duration > 0) {
            uint64_t due = run_start + o->duration * 1000u * k / x->p.n;
            while (tn_now_ms() < due && !interrupted)
                tn_sleep_ms((unsigned)(due - tn_now_ms() > 50 ? 50 : due - tn_now_ms()));
        }
        char desc[512];
        describe(&x->net, x->seed, s, desc, sizeof desc);
        if (s->kind >= S_PARTITION) {
            tn_err err = do_fault(x, s, desc);
            if (err != TN_OK)
                return err;
            continue;
        }
        run_op(x, k, desc);
        if (tn_now_ms() - x->last_sample >= 500)
            sample(x);
        if (tn_now_ms() - last_progress >= (x->tty ? 200u : 5000u)) {
            progress(x, x->done_ops, false);
            last_progress = tn_now_ms();
        }
    }
    if (interrupted) {
        say(x, "chaos: interrupted");
        return TN_EINTERRUPTED;
    }
    progress(x, x->done_ops, true);
    return TN_OK;
}

/* Every node back and connected (the plan ends with every fault healed). A node that went
 * down on its own is started again, so that the checks can still tell whether it lost
 * anything (its crash fails the run anyway). */
static void run_recover(run *x)
{
    char state[TN_MAX_NODES][16];
    for (size_t i = 0; tn_node_states(&x->net, state) == TN_OK && i < x->net.n; i++) {
        if (strcmp(state[i], "down") != 0)
            continue;
        char line[64], *ans = NULL;
        snprintf(line, sizeof line, "start %s", x->net.nodes[i].name);
        say(x,
            "chaos: %s is down at the end without having been killed: starting it for the checks",
            x->net.nodes[i].name);
        if (tn_ctl(x->net.dir, line, &ans, 20000) == TN_OK) {
            tn_err err = tn_wait_node(&x->net, i, 15000); /* says why when it fails */
            (void)err;
        }
        free(ans);
        x->crashed[i] = false;
    }
    if (tn_wait_connected(&x->net, 30000, false) != TN_OK)
        say(x, "chaos: not every node reconnected within 30 s");
}

/* Between two convergence checks: a lag sample every 500 ms; false once interrupted. */
static bool converge_tick(void *arg)
{
    run *x = arg;
    if (tn_now_ms() - x->last_sample >= 500)
        sample(x);
    return !interrupted;
}

#define CONVERGE_MS 90000

/* Wait (CONVERGE_MS at most since heal_t, the end of the plan) until the network converges,
 * and say so or what differs. *took is the time since heal_t. Returns whether it did. */
static bool run_converge(run *x, uint64_t heal_t, uint64_t *took)
{
    uint64_t before = tn_now_ms() - heal_t, waited = 0;
    json_object *gaps = NULL;
    size_t omitted = 0;
    tn_err err = tn_wait_converged(&x->net, before < CONVERGE_MS ? (int)(CONVERGE_MS - before) : 0,
        converge_tick, x, &waited, &gaps, &omitted);
    *took = tn_now_ms() - heal_t;
    bool converged = err == TN_OK;
    sample(x);
    tn_report_event(&x->rep, elapsed(x), "check", "%s after %.1f s",
        converged ? "converged" : "not converged", (double)*took / 1000.0);
    say(x, "chaos: %s %.1f s after the last fault", converged ? "converged" : "NOT converged",
        (double)*took / 1000.0);
    if (!converged) {
        char *why = err == TN_ENOTCONVERGED
            ? tn_gaps_text(gaps)
            : strdup("the supervisor does not answer: is the testnet up?\n");
        say(x, "%s", why ? why : "");
        free(why);
    }
    json_object_put(gaps);
    return converged;
}

/* FILE.json and FILE.svg of the run (a report that cannot be written is said, and does not
 * fail the run). */
static void run_report(run *x, const chaos_opts *o, const verdict *v, bool converged, uint64_t took)
{
    json_object *head = json_object_new_object();
    json_object_object_add(head, "seed", json_object_new_int64((int64_t)o->seed));
    json_object_object_add(head, "nodes", json_object_new_int64((int64_t)o->nodes));
    json_object_object_add(head, "ops", json_object_new_int64((int64_t)o->ops));
    json_object_object_add(head, "acked", json_object_new_int64((int64_t)x->acked));
    json_object_object_add(head, "refused", json_object_new_int64((int64_t)x->refused));
    json_object_object_add(head, "unknown", json_object_new_int64((int64_t)x->unknown));
    json_object_object_add(head, "lost", json_object_new_int64((int64_t)v->lost));
    json_object_object_add(head, "leaks", json_object_new_int64((int64_t)v->leaks));
    json_object_object_add(head, "crashes", json_object_new_int64((int64_t)v->crashes));
    json_object_object_add(head, "converged", json_object_new_boolean(converged));
    json_object_object_add(head, "convergence_s", json_object_new_double((double)took / 1e3));
    tn_err err = tn_report_write(o->report, &x->net, &x->rep, head);
    if (err != TN_OK)
        say(x, "chaos: the report could not be written: %s", tn_strerror(err));
    json_object_put(head);
}

/* After the plan: heal, converge, verify every acknowledged write, no leak, no crash; the
 * report; the summary line. TN_OK when every check holds, else TN_EVIOLATION. */
static tn_err run_check(run *x, const chaos_opts *o, char *summary, size_t size)
{
    uint64_t heal_t = tn_now_ms(), took = 0;
    run_recover(x);
    bool converged = run_converge(x, heal_t, &took);
    verdict v;
    memset(&v, 0, sizeof v);
    verify(x, &v);
    for (size_t k = 0; k < v.nfirst; k++)
        say(x, "chaos: %s", v.first[k]);
    /* The scan for plaintext finds what it looks for where it may be: not a vacuous check. */
    say(x, "chaos: plaintext scan of every data.mdb: %lu values where readable, %lu where not",
        v.seen, v.leaks);
    if (v.leaks || v.crashes || v.phantom)
        say(x, "chaos: leaks=%lu crashes=%lu phantom=%lu", v.leaks, v.crashes, v.phantom);
    bool ok = converged && v.lost == 0 && v.leaks == 0 && v.crashes == 0 && v.phantom == 0;
    if (o->report != NULL)
        run_report(x, o, &v, converged, took);
    snprintf(summary, size,
        "chaos: seed=%llu nodes=%zu ops=%zu acked=%lu lost=%lu converged=%s seconds=%.1f\n",
        (unsigned long long)o->seed, o->nodes, o->ops, x->acked, v.lost, converged ? "yes" : "no",
        (double)elapsed(x) / 1000.0);
    return ok ? TN_OK : TN_EVIOLATION;
}

/* The end of every run that started a network: stop it, count what its logs say, look for a
 * sanitizer report, say how to replay a failure, remove the directory unless kept. err is
 * the run's so far; returns it, or TN_EVIOLATION when the logs fail a passing run. */
static tn_err run_finish(run *x, const chaos_opts *o, tn_err err, char *summary, size_t size)
{
    bool checked = err == TN_OK || err == TN_EVIOLATION;
    if (x->up)
        tn_down(x->dir, true);
    if (x->up && checked)
        log_summary(x, x->dir);
    if (x->up && err == TN_OK && sanitizer_report(x, x->dir))
        err = TN_EVIOLATION;
    if (!checked) {
        snprintf(summary, size,
            "chaos: seed=%llu nodes=%zu ops=%zu acked=%lu lost=0 converged=no seconds=%.1f\n",
            (unsigned long long)o->seed, o->nodes, o->ops, x->acked, (double)elapsed(x) / 1000.0);
        say(x, "chaos: the run could not finish");
    }
    if (err != TN_OK) {
        /* Every failure, also one found after the final stop (a sanitizer report, a node that
         * did not exit cleanly), says where the evidence is and how to replay the seed. */
        x->keep = true;
        say(x, "chaos: FAILED; the network is kept in %s (every node's log, supervisor.log)",
            x->dir);
        say(x,
            "chaos: replay: patto-testnet chaos --nodes %zu --ops %zu --seed %llu --duration %llu",
            o->nodes, o->ops, (unsigned long long)o->seed, (unsigned long long)o->duration);
    }
    if (x->made_dir && !x->keep) {
        const char *rm[] = { "/bin/rm", "-rf", x->dir, NULL };
        tn_out out = tn_run(rm);
        tn_out_free(&out);
    }
    return err;
}

tn_err tn_cmd_chaos(const tn_args *a)
{
    chaos_opts o;
    chaos_options(a, &o);
    run *x = calloc(1, sizeof *x);
    if (x == NULL)
        return TN_ENOMEM;
    tn_report_init(&x->rep);
    x->seed = o.seed;
    x->ops = o.ops;
    x->keep = o.keep;
    char summary[256] = "";
    tn_err err = plan_make(&x->p, o.seed, o.nodes, o.ops);
    if (err != TN_OK) {
        tn_msg("chaos: cannot plan %zu operations: %s", o.ops, tn_strerror(err));
        goto done;
    }
    if (o.plan_only) {
        plan_print(x, &o);
        goto done;
    }
    if ((err = run_prepare(x, &o)) != TN_OK)
        goto done;
    err = run_up(x, &o);
    if (err == TN_OK)
        err = run_steps(x, &o);
    if (err == TN_OK)
        err = run_check(x, &o, summary, sizeof summary);
    err = run_finish(x, &o, err, summary, sizeof summary);
done:
    fputs(summary, stdout); /* the last line, whatever happened */
    fflush(stdout);
    tn_report_fini(&x->rep);
    plan_fini(&x->p);
    free(x->res);
    free(x->ids);
    free(x);
    return err;
}
