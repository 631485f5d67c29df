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
    S_REVOKE,    /* --consent-ops: the owner revokes a grant (consent revoke) */
    S_DOWNGRADE, /* the owner narrows a write grant to read (consent downgrade) */
    S_WITHDRAW,  /* a desk other than the owner records a withdrawal (consent withdraw) */
    S_DROP,      /* the grantee drops its grant (consent drop) */
    S_PARTITION, /* faults from here on */
    S_SLOW,
    S_HEAL,
    S_STOP,
    S_CONT,
    S_KILL,
    S_RESTART,
} skind;

static const char *const skind_names[] = { "new", "edit", "grant", "revoke", "downgrade",
    "withdraw", "drop", "partition", "slow", "heal", "stop", "cont", "kill", "restart" };

typedef struct step {
    skind kind;
    int node;       /* where an operation runs; the node a fault acts on */
    int c;          /* case (index in creation order) */
    int f;          /* field (edit) or scope (grant and the consent operations) */
    int to;         /* grant recipient, the grantee a consent operation ends; the other end of
                       a slow link */
    int owner;      /* the case's owner (withdraw, drop: named in the note) */
    bool write;     /* grant access */
    bool consent;   /* grant: its basis is consent (else public task); withdraw, drop: the
                       grant they end rests on consent, as the plan has it */
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
    int *owner;       /* per case */
    bool consent_ops; /* planned with --consent-ops */
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

/* Per-case planning state: grants per scope and node (with --consent-ops also their basis
 * and whether a grant there was ended), set members added. */
typedef struct pcase {
    int owner;
    unsigned char grant[NSCOPES][TN_MAX_NODES]; /* 0 none, 1 read, 2 write */
    bool consent[NSCOPES][TN_MAX_NODES];        /* the grant standing rests on consent */
    bool ended[NSCOPES][TN_MAX_NODES];          /* a grant there was revoked or withdrawn */
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

/* Step s becomes a grant of case c by its owner: a scope, read or write, to another node.
 * With --consent-ops, a third of the grants of a case where a grant was ended go again to one
 * of those (scope, node)s (a re-grant), and each grant draws its basis: consent or public
 * task, half each. Without it, exactly the draws the golden plans were made with. */
static void plan_grant(planner *pl, step *s, int c)
{
    pcase *pc = TN_VEC_AT(&pl->cases, pcase, c);
    s->kind = S_GRANT;
    s->c = c;
    s->node = pc->owner;
    bool again = false;
    if (pl->p->consent_ops) {
        unsigned ended[NSCOPES * TN_MAX_NODES], ne = 0;
        for (unsigned sc = 0; sc < NSCOPES; sc++)
            for (unsigned i = 0; i < pl->nodes; i++)
                if (pc->ended[sc][i] && pc->grant[sc][i] == 0)
                    ended[ne++] = sc * TN_MAX_NODES + i;
        if (ne > 0 && below(&pl->r, 3) == 0) {
            unsigned pick = ended[below(&pl->r, ne)];
            s->f = (int)(pick / TN_MAX_NODES);
            s->to = (int)(pick % TN_MAX_NODES);
            again = true;
        }
    }
    if (!again) {
        s->f = (int)below(&pl->r, NSCOPES);
        s->to
            = (int)((pc->owner + 1 + (int)below(&pl->r, (unsigned)pl->nodes - 1)) % (int)pl->nodes);
    }
    s->write = below(&pl->r, 10) < 4;
    if (pl->p->consent_ops)
        s->consent = below(&pl->r, 2) == 0;
    pc->grant[s->f][s->to] = s->write ? 2 : 1;
    pc->consent[s->f][s->to] = s->consent;
}

/* With --consent-ops: step s becomes the consent operation `kind` on a grant the plan has
 * standing, in case c or, when c has none that fits, in one of the next 16 cases: a
 * revocation or a downgrade (of a write grant) by the owner, which must be running; a
 * withdrawal recorded at a running node other than the owner; a drop at the grantee, which
 * must be running. The planner's grants follow: a revocation ends the grant, a downgrade
 * leaves read, a withdrawal or a drop ends a grant on consent and leaves one on public task
 * (it waits for an operator at the owner). false when no case fits. */
static bool plan_consent(planner *pl, step *s, int c, skind kind)
{
    for (size_t tried = 0; tried < 16 && tried < pl->p->ncases; tried++) {
        int cc = (int)(((size_t)c + tried) % pl->p->ncases);
        pcase *pc = TN_VEC_AT(&pl->cases, pcase, cc);
        bool owner_up = !pl->down[pc->owner];
        if ((kind == S_REVOKE || kind == S_DOWNGRADE) && !owner_up)
            continue;
        unsigned desks[TN_MAX_NODES], nd = 0;
        for (unsigned i = 0; i < pl->nodes; i++)
            if (!pl->down[i] && (int)i != pc->owner)
                desks[nd++] = i;
        if (kind == S_WITHDRAW && nd == 0)
            continue;
        unsigned cand[NSCOPES * TN_MAX_NODES], n = 0;
        for (unsigned sc = 0; sc < NSCOPES; sc++)
            for (unsigned i = 0; i < pl->nodes; i++) {
                unsigned g = pc->grant[sc][i];
                if (g == 0 || (kind == S_DOWNGRADE && g != 2) || (kind == S_DROP && pl->down[i]))
                    continue;
                cand[n++] = sc * TN_MAX_NODES + i;
            }
        if (n == 0)
            continue;
        unsigned pick = cand[below(&pl->r, n)];
        s->kind = kind;
        s->c = cc;
        s->f = (int)(pick / TN_MAX_NODES);
        s->to = (int)(pick % TN_MAX_NODES);
        s->owner = pc->owner;
        s->consent = pc->consent[s->f][s->to];
        s->node = kind == S_WITHDRAW ? (int)desks[below(&pl->r, nd)]
            : kind == S_DROP         ? s->to
                                     : pc->owner;
        if (kind == S_DOWNGRADE) {
            pc->grant[s->f][s->to] = 1;
        } else if (kind == S_REVOKE || s->consent) {
            pc->grant[s->f][s->to] = 0;
            pc->ended[s->f][s->to] = true;
        }
        return true;
    }
    return false;
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
    /* With --consent-ops the grant and edit shares give 10 of 100 to the consent operations:
     * grants 10-18, revocations 19-21, downgrades 22-23, withdrawals 24-26, drops 27-28 (one
     * that finds no grant to act on becomes an edit), edits from 29. */
    unsigned grants_end = p->consent_ops ? 19 : 25, edits_from = p->consent_ops ? 29 : 25;
    if (pc != NULL && kind >= 10 && kind < grants_end && !pl->down[pc->owner]) {
        plan_grant(pl, s, c);
        return TN_OK;
    }
    if (pc != NULL && kind >= grants_end && kind < edits_from) {
        skind which = kind < 22 ? S_REVOKE
            : kind < 24         ? S_DOWNGRADE
            : kind < 27         ? S_WITHDRAW
                                : S_DROP;
        if (plan_consent(pl, s, c, which))
            return TN_OK;
    }
    if (pc != NULL && kind >= grants_end) {
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

/* Draw the plan of (seed, nodes, ops) and --consent-ops into p (README.md "Chaos runs": about
 * 6 faults per 100 operations, each draw below). TN_ENOMEM, TN_EFULL (more than PLAN_STEPS_MAX
 * steps). */
static tn_err plan_make(plan *p, uint64_t seed, size_t nodes, size_t ops, bool consent_ops)
{
    tn_vec_init(&p->v, sizeof(step), PLAN_STEPS_MAX);
    p->consent_ops = consent_ops;
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

/* One line describing step s (also the plan's printed form); with_basis (--consent-ops): a
 * grant names its basis. */
static void describe(
    const tn_net *net, uint64_t seed, bool with_basis, const step *s, char *buf, size_t size)
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
        snprintf(buf, size, "grant case#%d at %s %s %s to %s%s%s", s->c, at, scopes[s->f],
            s->write ? "write" : "read", net->nodes[s->to].name, with_basis ? " basis " : "",
            !with_basis      ? ""
                : s->consent ? "consent"
                             : "public-task");
        break;
    case S_REVOKE:
    case S_DOWNGRADE:
        snprintf(buf, size, "%s case#%d at %s %s from %s", skind_names[s->kind], s->c, at,
            scopes[s->f], net->nodes[s->to].name);
        break;
    case S_WITHDRAW:
        snprintf(buf, size, "withdraw case#%d at %s %s to %s owner %s (a grant on %s)", s->c, at,
            scopes[s->f], net->nodes[s->to].name, net->nodes[s->owner].name,
            s->consent ? "consent" : "public-task");
        break;
    case S_DROP:
        snprintf(buf, size, "drop case#%d at %s %s owner %s (a grant on %s)", s->c, at,
            scopes[s->f], net->nodes[s->owner].name, s->consent ? "consent" : "public-task");
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
    bool consent_ops; /* the consent lifecycle in the mix (README.md "Chaos runs") */
} chaos_opts;

typedef struct run {
    tn_net net;
    plan p;
    uint64_t seed;
    size_t ops;
    result *res;
    uint64_t *t_wall;        /* per step: the wall clock (ms) when the run began it */
    bool *cut_risk;          /* per step: an edit by a grantee that may rest on a grant cut since */
    unsigned char *narrowed; /* --consent-ops, per (case, scope, node), tix(): NARROWED_ANY
                                when a step that may narrow it was acknowledged or unknown,
                                NARROWED_NOTE also when it was a withdrawal or a drop */
    char (*ids)[64];         /* per case: its id once created */
    bool stopped[TN_MAX_NODES], killed[TN_MAX_NODES];
    bool crashed[TN_MAX_NODES]; /* found down without the run having killed it */
    unsigned long acked, refused, unknown, skipped, faults;
    unsigned long acked_kind[S_PARTITION]; /* acknowledged operations by kind */
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

#define NARROWED_ANY 1u
#define NARROWED_NOTE 2u

/* The index of (case c, scope sc, node i) in the run's per-grant tables. */
static size_t tix(const run *x, int c, int sc, int i)
{
    return ((size_t)c * NSCOPES + (size_t)sc) * x->net.n + (size_t)i;
}

/* The access log of scope sc in a `case show` answer (an array of entries), or NULL. */
static json_object *access_log(json_object *show, int sc)
{
    char path[64];
    snprintf(path, sizeof path, "access/%s", scopes[sc]);
    json_object *log = show != NULL ? tn_jget(show, path) : NULL;
    return log != NULL && json_object_is_type(log, json_type_array) ? log : NULL;
}

static const char *entry_text(json_object *e, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(e, key, &v) && v != NULL ? json_object_get_string(v) : "";
}

static uint64_t entry_number(json_object *e)
{
    json_object *v = NULL;
    return json_object_object_get_ex(e, "number", &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* The entry of an access log with the highest number among those of `kind` (NULL: grants and
 * narrowings) concerning org, or NULL. */
static json_object *last_entry_for(json_object *log, const char *org, const char *kind)
{
    json_object *best = NULL;
    for (size_t k = 0; log != NULL && k < json_object_array_length(log); k++) {
        json_object *e = json_object_array_get_idx(log, k);
        const char *ek = entry_text(e, "kind");
        bool wanted = kind != NULL ? strcmp(ek, kind) == 0
                                   : strcmp(ek, "grant") == 0 || strcmp(ek, "narrowing") == 0;
        if (wanted && strcmp(entry_text(e, "to"), org) == 0
            && (best == NULL || entry_number(e) > entry_number(best)))
            best = e;
    }
    return best;
}

/* Whether an access log holds every entry numbered 1 to upto. */
static bool log_holds(json_object *log, uint64_t upto)
{
    for (uint64_t n = 1; n <= upto; n++) {
        bool found = false;
        for (size_t k = 0; log != NULL && k < json_object_array_length(log) && !found; k++)
            found = entry_number(json_object_array_get_idx(log, k)) == n;
        if (!found)
            return false;
    }
    return true;
}

/* Before an edit by grantee G of a scope whose access the run may have narrowed before (a
 * revocation, a downgrade, a withdrawal or a drop of a grant on consent, or a read grant,
 * acknowledged or unknown), and granted write since (or G would not write): does G hold, without a
 * gap, every access-log entry up to the owner's newest narrowing of G there? Then G's write rests
 * on it or a later entry, and no narrowing so far can cut it. If not, G may not have heard of the
 * narrowing yet and write on the grant it ended: every holder refuses that write, its own
 * node too once the narrowing arrives (cli/README.md "Revoking and downgrading"), so its
 * outcome is unknown. Two reads; the plan is not touched. */
static bool edit_may_be_cut(run *x, const step *s)
{
    int owner = x->p.owner[s->c], sc = fields[s->f].scope_ix;
    const char *org = x->net.nodes[s->node].name;
    if (x->stopped[owner] || x->killed[owner] || x->crashed[owner])
        return true;
    tn_out o = tn_patto(&x->net, (size_t)owner, "case", "show", x->ids[s->c], NULL);
    json_object *n
        = o.status == 0 ? last_entry_for(access_log(o.json, sc), org, "narrowing") : NULL;
    uint64_t upto = n != NULL ? entry_number(n) : 0;
    tn_out_free(&o);
    if (upto == 0) /* none yet; a withdrawal or a drop on its way may come after this write */
        return (x->narrowed[tix(x, s->c, sc, s->node)] & NARROWED_NOTE) != 0;
    tn_out g = tn_patto(&x->net, (size_t)s->node, "case", "show", x->ids[s->c], NULL);
    bool holds = g.status == 0 && log_holds(access_log(g.json, sc), upto);
    tn_out_free(&g);
    return !holds;
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
    bool on_grant = s->kind >= S_GRANT && s->kind <= S_DROP; /* f is a scope, to a grantee */
    const char *org = on_grant ? x->net.nodes[s->to].name : NULL;
    const char *sc = on_grant ? scopes[s->f] : NULL;
    char why[64];
    snprintf(why, sizeof why, "chaos step %zu", (size_t)(s - x->p.steps));
    if (s->kind == S_GRANT) {
        const char *args[] = { "consent", "grant", x->ids[s->c], "--to", org, "--scopes", sc,
            "--purpose", "integrazione", "--basis", s->consent ? "consent" : "public-task",
            "--access", s->write ? "write" : "read", NULL, NULL, NULL };
        if (!s->consent) { /* a grant on public task names the provision it rests on */
            args[13] = "--provision";
            args[14] = "D.Lgs. 286/1998 art. 4-bis";
        }
        o = tn_pattov(&x->net, (size_t)s->node, args);
    } else if (s->kind == S_REVOKE || s->kind == S_DOWNGRADE) {
        o = tn_patto(&x->net, (size_t)s->node, "consent", skind_names[s->kind], x->ids[s->c],
            "--from", org, "--scopes", sc, "--reason", why, NULL);
    } else if (s->kind == S_WITHDRAW) {
        o = tn_patto(&x->net, (size_t)s->node, "consent", "withdraw", x->ids[s->c], "--scopes", sc,
            "--to", org, "--evidence", why, "--owner", x->net.nodes[s->owner].name, NULL);
    } else if (s->kind == S_DROP) {
        o = tn_patto(
            &x->net, (size_t)s->node, "consent", "drop", x->ids[s->c], "--scopes", sc, NULL);
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

#define NOTES_MAX 16

typedef struct verdict {
    unsigned long lost, phantom, leaks, crashes;
    unsigned long seen;      /* tokens found in the stores of nodes that may read them */
    unsigned long uncertain; /* acknowledged edits a narrowing may have cut: not checked */
    unsigned long leak_never, leak_revoked, leak_sealed; /* tokens in a data.mdb, by why */
    char first[NOTES_MAX][400];
    size_t nfirst;
} verdict;

static void note(verdict *v, const char *fmt, ...) TN_PRINTF(2, 3);
static void note(verdict *v, const char *fmt, ...)
{
    if (v->nfirst >= NOTES_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->first[v->nfirst++], sizeof v->first[0], fmt, ap);
    va_end(ap);
}

/* What node i may read of scope sc of case c at the end, from the acknowledged steps in plan
 * order (README.md "Chaos runs"): a grant gives read or write, a revocation none, a downgrade
 * read, a withdrawal or a drop none when the grant then standing rests on consent and nothing
 * otherwise (a grant on public task waits for an operator at the owner); a step of unknown
 * outcome that may have changed it leaves it open (checked neither way). */
enum { A_NONE, A_READ, A_WRITE, A_OPEN };
enum { B_PUBLIC, B_CONSENT, B_UNKNOWN };

typedef struct tstate {
    unsigned char acc;     /* A_*, at the end */
    unsigned char basis;   /* B_*, of the grant standing */
    bool ever;             /* an acknowledged or unknown grant: it may have read the scope */
    bool await_note;       /* ended by an acknowledged withdrawal or drop: its owner applies it
                              when the note arrives */
    int last_grant;        /* the last acknowledged or unknown grant, -1 */
    int last_ack_grant;    /* the last acknowledged grant, -1 */
    int ended_by;          /* the last acknowledged step that ended the access, -1 */
    int revoked_at;        /* the first acknowledged revocation after last_grant, -1 */
    int last_narrow;       /* the last acknowledged or unknown step that may have narrowed it */
    uint64_t sealed_ms;    /* from the owner's access log at the end: the owner's writes begun
                              after this wall clock (ms) are under a key the node never got; 0 */
    uint64_t sealed_entry; /* the narrowing that sealed it (its number) */
} tstate;

typedef struct model {
    tstate *t;       /* per (case, scope, node), tix() */
    bool *uncertain; /* per step: an acknowledged edit a narrowing may have cut */
    unsigned long revokes, downgrades, withdrawals, drops, regrants; /* acknowledged */
    unsigned long nuncertain;                                        /* edits marked in uncertain */
} model;

static void model_fini(model *m)
{
    free(m->t);
    free(m->uncertain);
    memset(m, 0, sizeof *m);
}

/* The model of the run's results: per (case, scope, node) what it may read, and the edits
 * whose outcome a narrowing makes unknown: an edit by grantee G acknowledged before a
 * revocation, downgrade, withdrawal or drop (acknowledged or unknown) that may end G's write
 * access, or before a read grant that replaces a write grant (the owner writes a narrowing
 * with a cut before it), lies beyond the owner's cut if the owner had not received it, and
 * every holder refuses it; so may an edit G made on a grant it did not know was narrowed
 * (edit_may_be_cut). TN_ENOMEM. */
static tn_err model_build(run *x, model *m)
{
    memset(m, 0, sizeof *m);
    size_t nt = (x->p.ncases + 1) * NSCOPES * x->net.n;
    m->t = calloc(nt, sizeof *m->t);
    m->uncertain = calloc(x->p.n + 1, sizeof *m->uncertain);
    if (m->t == NULL || m->uncertain == NULL) {
        model_fini(m);
        return TN_ENOMEM;
    }
    for (size_t k = 0; k < nt; k++) {
        tstate *t = &m->t[k];
        t->last_grant = t->last_ack_grant = t->ended_by = t->revoked_at = t->last_narrow = -1;
    }
    for (size_t k = 0; k < x->p.n; k++) {
        const step *s = &x->p.steps[k];
        result r = x->res[k];
        if (s->kind < S_GRANT || s->kind > S_DROP || (r != R_ACK && r != R_UNKNOWN))
            continue;
        tstate *t = &m->t[tix(x, s->c, s->f, s->to)];
        bool ack = r == R_ACK, held = t->acc == A_READ || t->acc == A_WRITE;
        int step_ix = (int)k;
        if (s->kind == S_GRANT) {
            unsigned char basis = s->consent ? B_CONSENT : B_PUBLIC;
            if (ack && t->ended_by >= 0)
                m->regrants++;
            /* A read grant where write may stand narrows it first (a narrowing with a cut). */
            if (!s->write && (t->acc == A_WRITE || t->acc == A_OPEN))
                t->last_narrow = step_ix;
            t->ever = true;
            t->last_grant = step_ix;
            t->revoked_at = -1;
            t->await_note = false;
            if (ack) {
                t->acc = s->write ? A_WRITE : A_READ;
                t->basis = basis;
                t->last_ack_grant = step_ix;
            } else if (!held) {
                t->acc = A_OPEN;
                t->basis = B_UNKNOWN;
            } else if (t->basis != basis) {
                t->basis = B_UNKNOWN;
            }
        } else if (s->kind == S_REVOKE) {
            t->last_narrow = step_ix;
            if (ack) {
                m->revokes++;
                t->acc = A_NONE;
                t->await_note = false;
                t->ended_by = step_ix;
                if (t->revoked_at < 0)
                    t->revoked_at = step_ix;
            } else if (t->acc != A_NONE) {
                t->acc = A_OPEN;
            }
        } else if (s->kind == S_DOWNGRADE) {
            t->last_narrow = step_ix;
            m->downgrades += ack;
            if (t->acc == A_WRITE)
                t->acc = A_READ;
        } else { /* a withdrawal or a drop */
            if (ack && s->kind == S_WITHDRAW)
                m->withdrawals++;
            if (ack && s->kind == S_DROP)
                m->drops++;
            if (t->acc == A_NONE || (held && t->basis == B_PUBLIC))
                continue; /* nothing to end; a grant on public task waits for an operator */
            t->last_narrow = step_ix;
            if (ack && held && t->basis == B_CONSENT) {
                t->acc = A_NONE;
                t->await_note = true;
                t->ended_by = step_ix;
            } else {
                t->acc = A_OPEN;
            }
        }
    }
    for (size_t k = 0; k < x->p.n; k++) {
        const step *s = &x->p.steps[k];
        if (s->kind != S_EDIT || x->res[k] != R_ACK || s->node == x->p.owner[s->c])
            continue;
        const tstate *t = &m->t[tix(x, s->c, fields[s->f].scope_ix, s->node)];
        m->uncertain[k] = x->cut_risk[k] || t->last_narrow > (int)k;
        m->nuncertain += m->uncertain[k];
    }
    return TN_OK;
}

/* Milliseconds since 1970 of an RFC 3339 UTC time as the nodes write it
 * ("2026-12-06T12:29:31.000Z"), or 0. */
static uint64_t rfc3339_ms(const char *text)
{
    int y, mo, d, h, mi, sec, ms = 0;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &sec, &ms) < 6
        || y < 1970 || mo < 1 || mo > 12)
        return 0;
    /* Days from civil (H. Hinnant's algorithm). */
    int yy = y - (mo <= 2);
    int era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    return (uint64_t)(((days * 24 + h) * 60 + mi) * 60 + sec) * 1000u + (uint64_t)ms;
}

/* The owner's access log of each scope of case c (its `case show`, owner_show): where its
 * last entry for node i is a narrowing to none followed by a new epoch, every write the owner
 * began after it (a second of margin for the clocks) is under a key i never got, as long as
 * no grant to i follows (a grant hands over every epoch's key). Into the model's sealed_ms. */
static void seal_from_owner(run *x, model *m, int c, json_object *owner_show)
{
    for (int sc = 0; sc < NSCOPES; sc++) {
        json_object *log = access_log(owner_show, sc);
        for (size_t i = 0; log != NULL && i < x->net.n; i++) {
            json_object *e = last_entry_for(log, x->net.nodes[i].name, NULL);
            if (e == NULL || strcmp(entry_text(e, "kind"), "narrowing") != 0
                || strcmp(entry_text(e, "access"), "none") != 0)
                continue;
            bool rekeyed = false;
            for (size_t k = 0; k < json_object_array_length(log) && !rekeyed; k++) {
                json_object *ep = json_object_array_get_idx(log, k);
                rekeyed = strcmp(entry_text(ep, "kind"), "epoch") == 0
                    && entry_number(ep) > entry_number(e);
            }
            uint64_t at = rfc3339_ms(entry_text(e, "recorded_at"));
            tstate *t = &m->t[tix(x, c, sc, (int)i)];
            if (rekeyed && at != 0) {
                t->sealed_ms = at + 1000;
                t->sealed_entry = entry_number(e);
            }
        }
    }
}

/* What the owner's access log says last of org in scope sc, for a note: "#N narrowing
 * (withdrawn) at T: NOTE" or "#N grant write, basis B at T", or "nothing". */
static void owner_says(json_object *owner_show, int sc, const char *org, char *buf, size_t size)
{
    json_object *e = last_entry_for(access_log(owner_show, sc), org, NULL);
    if (e == NULL)
        snprintf(buf, size, "nothing");
    else if (strcmp(entry_text(e, "kind"), "narrowing") == 0)
        snprintf(buf, size, "#%llu narrowing to %s (%s) at %s: %.120s",
            (unsigned long long)entry_number(e), entry_text(e, "access"), entry_text(e, "reason"),
            entry_text(e, "recorded_at"), entry_text(e, "note"));
    else
        snprintf(buf, size, "#%llu grant %s, basis %s, at %s (%s)",
            (unsigned long long)entry_number(e), entry_text(e, "access"), entry_text(e, "basis"),
            entry_text(e, "recorded_at"), entry_text(e, "state"));
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

/* Check what node i shows of case c against every acknowledged step (an edit a narrowing may
 * have cut counts as one of unknown outcome). */
static void check_case_at(
    run *x, const model *m, int c, size_t i, json_object *show, bool *lost_step, verdict *v)
{
    const char *who = x->net.nodes[i].name;
    for (unsigned f = 0; f < NFIELDS; f++) {
        const field *fd = &fields[f];
        unsigned char acc = m->t[tix(x, c, fd->scope_ix, (int)i)].acc;
        char path[128], conf[96];
        snprintf(path, sizeof path, "scopes/%s", fd->scope);
        /* A grantee's scope not shown at all is counted once, by verify. */
        if (x->p.owner[c] != (int)i
            && ((acc != A_READ && acc != A_WRITE) || tn_jget(show, path) == NULL))
            continue;
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
            result r = x->res[k] == R_ACK && m->uncertain[k] ? R_UNKNOWN : x->res[k];
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
                for (size_t n = k + 1; n < x->p.n && !removed; n++) {
                    const step *t = &x->p.steps[n];
                    removed = t->kind == S_EDIT && t->c == c && t->f == (int)f && t->remove
                        && t->tok == s->tok && x->res[n] != R_SKIP;
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

/* Scan node i's data.mdb for tokens it may never hold: of a scope of a case it was never
 * granted (acknowledged or unknown: the bytes of a purged scope stay in LMDB's free pages, so
 * "ever granted" is what counts), and those the case's owner wrote, in an acknowledged step,
 * under a key i never got: after an acknowledged revocation of i with no grant to i since, or
 * after the owner's last entry for i there, a narrowing to none and a new key (a revocation,
 * a withdrawal or a drop the owner applied). */
static void scan_store(run *x, const model *m, size_t i, verdict *v)
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
    const char *who = x->net.nodes[i].name;
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
        int owner = x->p.owner[s->c];
        if (owner == (int)i) {
            v->seen++;
            continue;
        }
        const tstate *t = &m->t[tix(x, s->c, sc, (int)i)];
        bool by_owner = s->node == owner && x->res[k] == R_ACK;
        if (!t->ever) {
            v->leaks++;
            v->leak_never++;
            note(v, "%s's data.mdb holds %.17s, written in %s of case#%d, never granted to it", who,
                p, scopes[sc], s->c);
        } else if (by_owner && t->revoked_at >= 0 && (int)k > t->revoked_at) {
            v->leaks++;
            v->leak_revoked++;
            note(v,
                "%s's data.mdb holds %.17s, written by the owner %s in %s of case#%d at step %u, "
                "after it revoked %s there (step %d) and with no grant to it since: under a key "
                "%s never got",
                who, p, x->net.nodes[owner].name, scopes[sc], s->c, k, who, t->revoked_at, who);
        } else if (by_owner && t->sealed_ms != 0 && x->t_wall[k] > t->sealed_ms) {
            v->leaks++;
            v->leak_sealed++;
            note(v,
                "%s's data.mdb holds %.17s, written by the owner %s in %s of case#%d at step %u, "
                "%.1f s after its narrowing #%llu of %s there (its last entry for it, a new key "
                "after it): under a key %s never got",
                who, p, x->net.nodes[owner].name, scopes[sc], s->c, k,
                (double)(x->t_wall[k] - (t->sealed_ms - 1000)) / 1000.0,
                (unsigned long long)t->sealed_entry, who, who);
        } else {
            v->seen++;
        }
    }
    free(db);
}

/* Every case at every node: the scopes it shows against what it may read at the end (none:
 * not under "scopes"; read or write: shown), every acknowledged write where it may read, and
 * then every store scanned and every crash counted. */
static void verify(run *x, model *m, verdict *v)
{
    bool *lost_step = calloc(x->p.n + 1, sizeof *lost_step);
    if (lost_step == NULL) {
        v->lost++;
        note(v, "out of memory for the checks");
        return;
    }
    v->uncertain = m->nuncertain;
    for (size_t c = 0; c < x->p.ncases; c++) {
        if (x->ids[c][0] == '\0')
            continue;
        int owner = x->p.owner[c];
        tn_out oo = tn_patto(&x->net, (size_t)owner, "case", "show", x->ids[c], NULL);
        json_object *owner_show = oo.status == 0 ? oo.json : NULL;
        seal_from_owner(x, m, (int)c, owner_show);
        for (size_t i = 0; i < x->net.n; i++) {
            const char *who = x->net.nodes[i].name;
            bool is_owner = (int)i == owner;
            tn_out o = is_owner ? oo : tn_patto(&x->net, i, "case", "show", x->ids[c], NULL);
            bool any = is_owner, open = false, ever = is_owner;
            for (int sc = 0; sc < NSCOPES && !is_owner; sc++) {
                const tstate *t = &m->t[tix(x, (int)c, sc, (int)i)];
                char path[64], says[300];
                snprintf(path, sizeof path, "scopes/%s", scopes[sc]);
                bool shown = o.status == 0 && o.json && tn_jget(o.json, path) != NULL;
                bool held = t->acc == A_READ || t->acc == A_WRITE;
                ever = ever || t->ever;
                any = any || held;
                open = open || t->acc == A_OPEN;
                if (t->acc == A_OPEN || held == shown)
                    continue;
                owner_says(owner_show, sc, who, says, sizeof says);
                if (shown) {
                    v->leaks++;
                    if (t->ever)
                        note(v,
                            "%s shows scope %s of case#%d (%s), its access ended at step %d; "
                            "the owner's last entry for it: %s",
                            who, scopes[sc], (int)c, x->ids[c], t->ended_by, says);
                    else
                        note(v, "%s shows scope %s of case#%d (%s), never granted to it", who,
                            scopes[sc], (int)c, x->ids[c]);
                } else {
                    /* A grant acknowledged (and not ended since) must be readable. */
                    if (t->last_ack_grant >= 0)
                        lost_step[t->last_ack_grant] = true;
                    else
                        v->lost++;
                    note(v,
                        "%s does not show scope %s of case#%d (%s), granted at step %d and not "
                        "ended since; the owner's last entry for it: %s",
                        who, scopes[sc], (int)c, x->ids[c], t->last_ack_grant, says);
                }
            }
            if (!any && !open && !ever && o.status != 3) {
                v->leaks++;
                note(v, "%s: case show %s gives exit %d, not 3, with no grant", who, x->ids[c],
                    o.status);
            }
            if (any && o.status == 0 && o.json != NULL)
                check_case_at(x, m, (int)c, i, o.json, lost_step, v);
            else if (any || (o.status != 0 && o.status != 3)) {
                v->lost++;
                note(v, "%s cannot show case#%d (%s): exit %d %s", who, (int)c, x->ids[c], o.status,
                    o.out);
            }
            if (!is_owner)
                tn_out_free(&o);
        }
        tn_out_free(&oo);
    }
    for (size_t k = 0; k < x->p.n; k++)
        if (lost_step[k])
            v->lost++;
    free(lost_step);
    for (size_t i = 0; i < x->net.n; i++)
        scan_store(x, m, i, v);
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
    o->consent_ops = tn_given(a, "--consent-ops");
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
        describe(&x->net, o->seed, x->p.consent_ops, &x->p.steps[k], d, sizeof d);
        printf("%zu %s\n", k, d);
    }
}

/* Before the network: the results' storage, the directory (a new one in /tmp, or DIR that
 * holds no testnet yet), the signals that interrupt the run, and the run's first lines. */
static tn_err run_prepare(run *x, const chaos_opts *o)
{
    x->res = calloc(x->p.n, sizeof *x->res);
    x->t_wall = calloc(x->p.n, sizeof *x->t_wall);
    x->cut_risk = calloc(x->p.n, sizeof *x->cut_risk);
    x->narrowed = calloc((x->p.ncases + 1) * NSCOPES * o->nodes, sizeof *x->narrowed);
    x->ids = calloc(x->p.ncases + 1, sizeof *x->ids);
    if (x->res == NULL || x->ids == NULL || x->t_wall == NULL || x->cut_risk == NULL
        || x->narrowed == NULL) {
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
    printf("chaos: seed=%llu nodes=%zu ops=%zu%s steps=%zu dir=%s\n", (unsigned long long)o->seed,
        o->nodes, o->ops, o->consent_ops ? " consent-ops" : "", x->p.n, x->dir);
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
    const step *s = &x->p.steps[k];
    if (x->p.consent_ops && s->kind == S_EDIT && s->node != x->p.owner[s->c]
        && x->ids[s->c][0] != '\0' && x->narrowed[tix(x, s->c, fields[s->f].scope_ix, s->node)])
        x->cut_risk[k] = edit_may_be_cut(x, s);
    x->t_wall[k] = tn_wall_ms();
    result r = do_op(x, s);
    x->res[k] = r;
    bool note = (s->kind == S_WITHDRAW || s->kind == S_DROP) && s->consent;
    bool narrows = s->kind == S_REVOKE || s->kind == S_DOWNGRADE || note
        || (s->kind == S_GRANT && !s->write); /* it may narrow a write grant */
    if (narrows && (r == R_ACK || r == R_UNKNOWN))
        x->narrowed[tix(x, s->c, s->f, s->to)] |= NARROWED_ANY | (note ? NARROWED_NOTE : 0u);
    x->done_ops++;
    if (r == R_ACK) {
        x->acked++;
        x->acked_kind[s->kind]++;
    } else if (r == R_REFUSED)
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
        describe(&x->net, x->seed, x->p.consent_ops, s, desc, sizeof desc);
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
    if (o->consent_ops) {
        json_object *co = json_object_new_object();
        static const skind kinds[] = { S_GRANT, S_REVOKE, S_DOWNGRADE, S_WITHDRAW, S_DROP };
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            json_object_object_add(
                co, skind_names[kinds[k]], json_object_new_int64((int64_t)x->acked_kind[kinds[k]]));
        json_object_object_add(co, "uncertain_edits", json_object_new_int64((int64_t)v->uncertain));
        json_object_object_add(head, "consent_ops_acked", co);
    }
    json_object_object_add(head, "converged", json_object_new_boolean(converged));
    json_object_object_add(head, "convergence_s", json_object_new_double((double)took / 1e3));
    tn_err err = tn_report_write(o->report, &x->net, &x->rep, head);
    if (err != TN_OK)
        say(x, "chaos: the report could not be written: %s", tn_strerror(err));
    json_object_put(head);
}

/* The last line of a run (README.md "Chaos runs"); with --consent-ops it counts the
 * acknowledged consent operations too. */
static void summary_line(
    const run *x, const chaos_opts *o, unsigned long lost, bool converged, char *buf, size_t size)
{
    int used = snprintf(buf, size, "chaos: seed=%llu nodes=%zu ops=%zu acked=%lu",
        (unsigned long long)o->seed, o->nodes, o->ops, x->acked);
    if (o->consent_ops && used > 0 && (size_t)used < size)
        used += snprintf(buf + used, size - (size_t)used,
            " revokes=%lu downgrades=%lu withdrawals=%lu drops=%lu", x->acked_kind[S_REVOKE],
            x->acked_kind[S_DOWNGRADE], x->acked_kind[S_WITHDRAW], x->acked_kind[S_DROP]);
    if (used > 0 && (size_t)used < size)
        snprintf(buf + used, size - (size_t)used, " lost=%lu converged=%s seconds=%.1f\n", lost,
            converged ? "yes" : "no", (double)elapsed(x) / 1000.0);
}

/* --consent-ops, once converged: an owner applies a withdrawal or a drop in the pass after
 * its note arrives (node__close_ended), and the narrowing then travels. Wait (60 s at most)
 * until every access the model ends with an acknowledged withdrawal or drop has ended at its
 * owner (the owner's last access-log entry for the grantee there is a narrowing to none), then
 * for convergence again (90 s at most; 15 s when the network had not converged before, the
 * notes being seldom what it lacked). Returns whether the network converged; *waited says how
 * long it took (ms). */
static bool run_await_notes(run *x, const model *m, bool converged, uint64_t *waited)
{
    uint64_t start = tn_now_ms();
    size_t pending = 0, total = 0;
    char first[300] = "";
    for (;;) {
        pending = total = 0;
        for (size_t c = 0; c < x->p.ncases && !interrupted; c++) {
            bool wanted = false;
            for (int sc = 0; sc < NSCOPES && !wanted; sc++)
                for (size_t i = 0; i < x->net.n && !wanted; i++)
                    wanted = m->t[tix(x, (int)c, sc, (int)i)].await_note;
            if (!wanted || x->ids[c][0] == '\0')
                continue;
            tn_out o = tn_patto(&x->net, (size_t)x->p.owner[c], "case", "show", x->ids[c], NULL);
            for (int sc = 0; sc < NSCOPES; sc++)
                for (size_t i = 0; i < x->net.n; i++) {
                    const tstate *t = &m->t[tix(x, (int)c, sc, (int)i)];
                    if (!t->await_note)
                        continue;
                    total++;
                    json_object *e = o.status == 0
                        ? last_entry_for(access_log(o.json, sc), x->net.nodes[i].name, NULL)
                        : NULL;
                    if (e != NULL && strcmp(entry_text(e, "kind"), "narrowing") == 0
                        && strcmp(entry_text(e, "access"), "none") == 0)
                        continue;
                    if (pending++ == 0) {
                        char says[300];
                        owner_says(o.status == 0 ? o.json : NULL, sc, x->net.nodes[i].name, says,
                            sizeof says);
                        snprintf(first, sizeof first,
                            "%s of case#%zu for %s (step %d); the owner's last entry for it: "
                            "%.160s",
                            scopes[sc], c, x->net.nodes[i].name, t->ended_by, says);
                    }
                }
            tn_out_free(&o);
        }
        if (pending == 0 || interrupted || tn_now_ms() - start > 60000)
            break;
        converge_tick(x);
        tn_sleep_ms(500);
    }
    say(x, "chaos: %zu of %zu withdrawals and drops applied by their owners after %.1f s%s%s",
        total - pending, total, (double)(tn_now_ms() - start) / 1000.0, pending ? "; not: " : "",
        pending ? first : "");
    json_object *gaps = NULL;
    size_t omitted = 0;
    uint64_t took = 0;
    tn_err err = tn_wait_converged(
        &x->net, converged ? CONVERGE_MS : 15000, converge_tick, x, &took, &gaps, &omitted);
    *waited = tn_now_ms() - start;
    if (err != TN_OK) {
        char *why = err == TN_ENOTCONVERGED ? tn_gaps_text(gaps) : NULL;
        say(x, "chaos: NOT converged after the withdrawals and drops:\n%s", why ? why : "");
        free(why);
    }
    json_object_put(gaps);
    return err == TN_OK;
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
    model m;
    if (model_build(x, &m) != TN_OK) {
        say(x, "chaos: out of memory for the checks");
        summary_line(x, o, 0, converged, summary, size);
        return TN_ENOMEM;
    }
    if (o->consent_ops) {
        uint64_t waited = 0;
        converged = run_await_notes(x, &m, converged, &waited) && converged;
        say(x,
            "chaos: consent: %lu grants acknowledged (%lu again after an end), %lu revocations, "
            "%lu downgrades, %lu withdrawals, %lu drops; %lu edits a narrowing may have cut "
            "(not checked)",
            x->acked_kind[S_GRANT], m.regrants, m.revokes, m.downgrades, m.withdrawals, m.drops,
            m.nuncertain);
    }
    verify(x, &m, &v);
    model_fini(&m);
    for (size_t k = 0; k < v.nfirst; k++)
        say(x, "chaos: %s", v.first[k]);
    /* The scan for plaintext finds what it looks for where it may be: not a vacuous check. */
    say(x,
        "chaos: plaintext scan of every data.mdb: %lu values where readable, %lu where not (%lu "
        "of scopes never granted, %lu written after a revocation, %lu after a narrowing and a new "
        "key)",
        v.seen, v.leak_never + v.leak_revoked + v.leak_sealed, v.leak_never, v.leak_revoked,
        v.leak_sealed);
    if (v.leaks || v.crashes || v.phantom)
        say(x, "chaos: leaks=%lu crashes=%lu phantom=%lu", v.leaks, v.crashes, v.phantom);
    bool ok = converged && v.lost == 0 && v.leaks == 0 && v.crashes == 0 && v.phantom == 0;
    if (o->report != NULL)
        run_report(x, o, &v, converged, took);
    summary_line(x, o, v.lost, converged, summary, size);
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
        summary_line(x, o, 0, false, summary, size);
        say(x, "chaos: the run could not finish");
    }
    if (err != TN_OK) {
        /* Every failure, also one found after the final stop (a sanitizer report, a node that
         * did not exit cleanly), says where the evidence is and how to replay the seed. */
        x->keep = true;
        say(x, "chaos: FAILED; the network is kept in %s (every node's log, supervisor.log)",
            x->dir);
        say(x,
            "chaos: replay: patto-testnet chaos --nodes %zu --ops %zu --seed %llu --duration "
            "%llu%s",
            o->nodes, o->ops, (unsigned long long)o->seed, (unsigned long long)o->duration,
            o->consent_ops ? " --consent-ops" : "");
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
    tn_err err = plan_make(&x->p, o.seed, o.nodes, o.ops, o.consent_ops);
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
    free(x->t_wall);
    free(x->cut_risk);
    free(x->narrowed);
    free(x->ids);
    free(x);
    return err;
}
