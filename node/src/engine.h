/*
 * The running node: its state on the loop thread, shared by engine.c (ingest, apply, local
 * writes), peers.c (sessions and sync), ctl.c (control commands) and daemon.c (start, stop).
 */
#ifndef NODE_ENGINE_H
#define NODE_ENGINE_H

#include "idset.h"
#include "ledger.h"
#include "vpool.h"

/* A member of the manifest, as this node sees it at run time. */
typedef struct node_member {
    char org[PROTO_ORG_MAX + 1];
    uint8_t role;
    uint8_t origin[32];
    uint8_t box_pk[32];
    char url[NODE_URL_MAX + 1];
    bool self;
    uint32_t dialer;        /* 0: not dialled */
    uint32_t pipe;          /* an authenticated link to it, 0 if none */
    uint64_t last_heard_ms; /* 0: never */
    uint64_t dialled_ms;    /* when its current dialler was made */
    crdt_vv_entry *vv;      /* its header version vector, as last received (malloc'd) */
    size_t nvv;
    uint64_t vv_sent_ms;   /* when this node last sent it its version vector */
    uint64_t vv_sent_hash; /* and a hash of its bytes */
    /* Its clock's offset from this node's, estimated from the clocks of headers it pushed
     * (node_clock_sample); valid when clock_sampled_ms != 0. */
    int64_t clock_offset_ms;
    uint64_t clock_sampled_ms; /* when the estimate was last raised or renewed */
} node_member;

typedef enum link_state {
    LINK_WAIT_REPLY,  /* we dialled: HELLO sent */
    LINK_WAIT_HELLO,  /* they dialled: waiting for HELLO */
    LINK_WAIT_FINISH, /* HELLO_REPLY sent */
    LINK_UP,          /* session established */
} link_state;

typedef struct node_engine node_engine;
typedef struct node_inmsg node_inmsg; /* a session message waiting its turn (peers.c) */

/* One nng pipe to a peer. */
typedef struct node_keyslot node_keyslot;

typedef struct node_link {
    struct node_link *next;
    node_engine *eng;
    uint32_t pipe, dialer;
    link_state state;
    proto_handshake *hs;
    proto_session *sess;
    uint8_t peer[32];               /* the member's origin, known once authenticated (or dialled) */
    uv_timer_t timer;               /* handshake deadline */
    uint64_t rx_ms, tx_ms, ping_ms; /* last frame received / sent, last ping (node_now_ms) */
    bool closing;
    char addr[64]; /* the remote address, "IP:PORT" */
} node_link;

/* A body this node holds but has not merged yet, and why. */
typedef enum wait_reason { WAIT_KEY, WAIT_CAUSAL, WAIT_CLOCK } wait_reason;
typedef struct node_wait {
    uint8_t id[32];
    uint8_t tag[32];
    wait_reason why;
    uint8_t kind; /* proto_header_kind, 0 when not known yet */
} node_wait;

/* A header held out of order (its seq is beyond the next expected one). */
typedef struct node_pending {
    uint8_t origin[32];
    uint64_t seq;
    uint8_t *bytes;
    size_t len;
} node_pending;

/* An id whose body this node lacks and may receive. */
typedef struct node_want {
    uint8_t id[32];
    uint8_t tag[32];
    uint8_t origin[32]; /* the header's author: the first holder to ask */
    uint64_t since_ms;  /* when the header came: its body is usually on the way */
    uint64_t asked_ms;  /* when it was last asked for, 0 if never */
} node_want;

struct node_engine {
    uv_loop_t *loop;
    char dir[4096];      /* the data directory, absolute (the node runs chdir'd into it) */
    uint64_t started_ms; /* when node_run started */
    node_config cfg;
    node_store *store;
    node_net *net;
    proto_identity *me;
    node_schema *schema;
    uint8_t schema_hash[32];
    proto_limits lim;

    uint8_t *manifest_bytes; /* the newest verified manifest (owned) */
    size_t manifest_len;
    proto_manifest manifest;
    bool have_manifest;
    node_member *members;
    size_t nmembers;

    node_link *links;
    crdt_hlc clock;
    uint64_t own_seq;
    uint8_t own_last[32];

    node_pending *pending;
    size_t npending;
    node_wait *waits;
    size_t nwaits;
    node_want *wants;
    size_t nwants;
    idset want_ix, wait_ix; /* id -> index in wants / waits */

    uv_timer_t tick;
    uv_timer_t want_timer; /* asks for wants once their grace period is over */
    uv_idle_t retry_idle;  /* merges waiting bodies left over from the last loop turn */
    uv_idle_t inq_idle;    /* takes the next message off the inbound queue */
    node_inmsg *inq_head, *inq_tail;
    size_t inq_bytes;      /* of the messages in it */
    size_t retry_at;       /* where the pass over the waits stopped */
    size_t retry_passes;   /* passes made since the last call that finished */
    size_t apply_progress; /* bodies merged in the current pass */
    bool timers_on;        /* tick and want_timer are initialised */
    uv_signal_t sigint, sigterm;
    bool stopping;
    int exit_code;

    uint64_t rng;       /* xorshift state for picking anti-entropy peers */
    node_keyslot *keys; /* open scope keys by tag (keycache.c) */
    node_vpool *vpool;  /* threads that check header signatures beside the loop */

    /* counters for status */
    uint64_t rejected, refused;
    node_loglimit peer_log; /* peer.reject and peer.drop lines of peers that keep trying */
};

/* keycache.c: the open scope key of k (its tag), borrowed from the engine's cache and valid
 * until the next node_keycache_get; NODE_ECORRUPT when k's bytes do not make a key. */
node_err node_keycache_get(node_engine *e, const ledger_key *k, proto_scope_key **out);
void node_keycache_free(node_engine *e);

/* Wall-clock milliseconds since the Unix epoch. */
uint64_t node_now_ms(void);
/* A header of member m's own log, stamped wall_ms by m's clock, arrived from m itself at now_ms:
 * a sample of m's clock offset. Transit only makes a sample smaller, so the estimate is the
 * largest sample of the last CLOCK_WINDOW_MS (node/README.md, "Clocks"). */
void node_clock_sample(node_member *m, uint64_t wall_ms, uint64_t now_ms);
/* The member with this origin / org, or NULL. */
node_member *node_member_by_origin(node_engine *e, const uint8_t origin[32]);
node_member *node_member_by_org(node_engine *e, const char *org);

/* engine.c */
/* The access (proto_access_level) org holds in a scope as of version vector vv: the newest
 * "@access" event for it whose dot lies in vv. */
uint8_t node_access_as_of(const crdt_scope *state, const char *org, const crdt_vv_entry *vv,
    size_t nvv, const proto_limits *lim);
/* Signature checks of a batch of HEADER messages, started on the worker threads so that the
 * loop can do other work meanwhile. The headers are borrowed until node_hcheck_free. NULL when
 * it could not start (out of memory): ingest then checks on its own. */
typedef struct node_hcheck node_hcheck;
node_hcheck *node_hcheck_start(node_engine *e, const proto_bytes *headers, size_t n);
/* Wait for the checks (the calling thread helps) and free. NULL is fine. */
void node_hcheck_free(node_engine *e, node_hcheck *chk);
/* Headers of one origin with consecutive sequence numbers first..last, in a batch. */
typedef struct node_vvrun {
    uint8_t origin[32];
    uint64_t first, last;
} node_vvrun;
/* The runs of the batch chk checks, in batch order (*n = 0 for NULL). */
const node_vvrun *node_hcheck_runs(const node_hcheck *chk, size_t *n);
/* True when the workers have finished the checks (NULL: nothing to wait for). */
bool node_hcheck_ready(node_engine *e, node_hcheck *chk);
/* The checks' results, one SIG_* per header (waiting for them, with this thread's help), or
 * NULL when chk is NULL: ingest then checks the headers itself. Valid until node_hcheck_free. */
const uint8_t *node_hcheck_results(node_engine *e, node_hcheck *chk);
/* What node_ingest stores in one transaction: headers (sig: their checks' results, or NULL)
 * and bodies, all from peers. Headers go first, so bodies find theirs. */
typedef struct node_ingest_in {
    const proto_bytes *headers;
    size_t nheaders;
    const uint8_t *sig;
    const proto_body_item *bodies;
    size_t nbodies;
} node_ingest_in;
/* Verify, store and act on headers and bodies from peers in one transaction (a group commit
 * of queued messages), then merge what can be merged. from: for the log, may be NULL. */
node_err node_ingest(node_engine *e, const node_ingest_in *in, node_member *from);
/* Verify, store and act on a batch of HEADER messages from a peer (one transaction per 4096).
 * sig: their checks' results (node_hcheck_results), or NULL (they are checked here). */
node_err node_ingest_headers(
    node_engine *e, const proto_bytes *headers, size_t n, const uint8_t *sig, node_member *from);
/* Check and store bodies from a peer, then merge what can be merged. */
node_err node_ingest_bodies(
    node_engine *e, const proto_body_item *items, size_t n, node_member *from);
/* Retry every waiting body (after a key arrived, a state changed, or time passed). */
void node_retry_waits(node_engine *e);
/* Accept a signed manifest if the pinned key signed it, it is newer, and its schema hash is
 * ours. *changed tells whether it replaced the current one. The manifest in force offered
 * again is NODE_OK with *changed false and msg "manifest version N is already in force". */
node_err node_manifest_offer(
    node_engine *e, const uint8_t *bytes, size_t len, bool *changed, node_errmsg *msg);
/* Does manifest m fit this node: does it name this node's schema, and list this node's
 * identity key under [node] org and role? NODE_EINVAL with a sentence saying what to correct. */
node_err node_manifest_fits(const node_engine *e, const proto_manifest *m, node_errmsg *msg);
/* Is every [dial] org of pattod.conf a member of m? NODE_ECONFIG naming the first that is not
 * (a typo is never ignored: it stops a start, and is logged when a manifest arrives). */
node_err node_config_dials_fit(const node_engine *e, const proto_manifest *m, node_errmsg *msg);
/* Read the manifest stored in force, check its signature and that it fits this node
 * (node_manifest_fits), and adopt it (without rebuilding the member table). NODE_ENOTFOUND
 * when none was imported yet; NODE_ECONFIG when it does not fit this configuration. */
node_err node_manifest_load(node_engine *e, node_errmsg *msg);
/* Load what the node knows at start: manifest, own log position, clock, waits and wants. */
node_err node_engine_load(node_engine *e, node_errmsg *msg);

/* A local change to one case, gathered edit by edit and committed at once. */
typedef struct node_edit {
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    char field[CRDT_FIELD_MAX + 1];
    node_edit_op op;
    bool unset;
    char value[16384 + 1]; /* canonical form from node_schema_check */
    int64_t amount;        /* counters */
} node_edit;

/* Parse "scope.field=V" / "+=" / "-=" against the schema. Errors: NODE_EINVAL (msg says). */
node_err node_edit_parse(node_engine *e, const char *text, node_edit *out, node_errmsg *msg);
/* Apply edits to a case as one durable change (one header per scope touched). When create
 * is set the case is new and owned here. Errors: NODE_EINVAL (refused input),
 * NODE_ENOTFOUND (no such readable case / no write access), store errors. */
node_err node_case_write(node_engine *e, const proto_case_id *c, bool create,
    const node_edit *edits, size_t n, node_errmsg *msg);
/* Grant scopes of a case this node owns to a member. */
typedef struct node_grant {
    char to[PROTO_ORG_MAX + 1];
    char purpose[PROTO_ORG_MAX + 1];
    uint8_t basis;  /* proto_basis */
    uint8_t access; /* proto_access_level */
    uint64_t until_ms;
    char operator_name[NODE_OPERATOR_MAX + 1];
    char evidence[256];
} node_grant;
node_err node_case_grant(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, const node_grant *g, node_errmsg *msg);

/* peers.c */
void node_peers_sync(node_engine *e); /* (re)dial members after a manifest */
void node_net_event(void *ctx, node_net_ev ev, uint32_t pipe, uint32_t dialer, const uint8_t *data,
    size_t len); /* the net callback */
void node_push(node_engine *e, const proto_buf *header, const proto_buf *body,
    const uint8_t tag[32]);               /* eager push of a new local delta */
void node_anti_entropy(node_engine *e);   /* one round, from the tick timer */
void node_wants_due(node_engine *e);      /* ask for bodies missing longer than the grace */
void node_wants_schedule(node_engine *e); /* a want was added: make sure it is asked in time */
void node_links_close(node_engine *e);
void node_inq_free(node_engine *e); /* drop the inbound queue (at stop) */

/* ctl.c */
void node_ctl_handle(node_engine *e, const uint8_t *req, size_t len);

#endif
