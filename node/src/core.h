/*
 * The running node's state on its loop thread, and the host it runs in. node_engine is owned
 * in parts: each group of fields below names the file that writes it; other files read it or
 * go through that file's functions.
 *
 * The engine never calls libuv or nng itself: its clock, its wire (the connections to peers),
 * the replies to control requests and its deferred work go through node_host, which the daemon
 * (daemon.c: libuv and net.c) or a test (a fake clock and a fake wire) provides.
 *
 * The files of node/, top to bottom (a file calls only files below it):
 *   main.c -> daemon.c -> engine.c -> ctl.c -> write.c, peers.c
 *   peers.c -> sync.c -> inq.c, ingest.c -> apply.c -> access.c, hcheck.c
 *   -> link.c, state.c, keycache.c -> ledger.c -> store.c; net.c (the wire, for daemon.c)
 * and beside them config.c, schema.c, lock.c, log.c, vpool.c, idset.c, common.c.
 */
#ifndef NODE_CORE_H
#define NODE_CORE_H

#include "idset.h"
#include "ledger.h"
#include "vpool.h"

/* Work the engine asks its host to run later (node_host.schedule), by calling node_work. */
typedef enum node_work {
    NODE_WORK_INQ,   /* take the next group off the inbound queue (inq.c) */
    NODE_WORK_APPLY, /* merge waiting bodies left over from the last call (apply.c) */
    NODE_WORK_WANTS, /* ask peers for bodies whose grace period is over (sync.c) */
    NODE_WORK_LISTS, /* list again what the lists left out at their bounds (load.c) */
    NODE_WORK_LINKS, /* drop links whose handshake deadline has passed (peers.c) */
    NODE_WORK_COUNT
} node_work;

/*
 * What the engine needs from the world, all called on the loop thread. now_ms is the wall
 * clock in ms since the Unix epoch, for clocks and stamps (it may step back or forward);
 * mono_ms a clock that never steps back, always > 0, for every elapsed time and timeout.
 * trust lifts a connection's message limit from the handshake's size to max_message once its
 * peer has proven its identity.
 * send/drop/dial/undial are node__net_send/drop/dial/undial (internal.h) or a test's fake wire:
 * events come back through node__event. ctl_reply answers the control request being handled.
 * schedule asks for node_work(e, w) in delay_ms (0: as soon as the loop is free); a request for w
 * replaces an earlier one for w.
 */
typedef struct node_host {
    void *ctx;
    uint64_t (*now_ms)(void *ctx);
    uint64_t (*mono_ms)(void *ctx);
    node_err (*send)(void *ctx, uint32_t pipe, const uint8_t *buf, size_t len);
    void (*drop)(void *ctx, uint32_t pipe);
    void (*trust)(void *ctx, uint32_t pipe);
    node_err (*dial)(void *ctx, const char *url, uint32_t *dialer, node_errmsg *msg);
    void (*undial)(void *ctx, uint32_t dialer);
    void (*ctl_reply)(void *ctx, const uint8_t *buf, size_t len);
    void (*schedule)(void *ctx, node_work w, uint64_t delay_ms);
    /* The Unix user of the control request being handled ("" when unknown); may be NULL. */
    void (*ctl_user)(void *ctx, char *out, size_t size);
    /* The bytes of unread messages of the peer connections and in their send queues
     * (node__net_queued); may be NULL (none). */
    void (*net_queued)(void *ctx, size_t *unread, size_t *send);
} node_host;

/* A member of the manifest (every org ever listed), as this node sees it at run time; its
 * index is its index in the manifest's members. */
typedef struct node_member {
    char org[PROTO_ORG_MAX + 1];
    uint8_t role;
    uint8_t origin[32]; /* its current key (the last the manifest lists) */
    uint8_t box_pk[32];
    char url[NODE_URL_MAX + 1];
    bool active; /* its current key is not retired: it is in the network */
    bool self;
    uint32_t dialer;        /* 0: not dialled */
    uint32_t pipe;          /* an authenticated link to it, 0 if none */
    uint64_t last_heard_ms; /* node__mono; 0: never */
    uint64_t dialled_ms;    /* when its current dialler was made (node__mono) */
    proto_vv_item *vv;      /* its header version vector, as last received (malloc'd) */
    size_t nvv;
    uint64_t vv_sent_ms;   /* when this node last sent it its version vector (node__mono) */
    uint64_t vv_sent_hash; /* and a hash of its bytes */
    /* When HEADERS from it last arrived (node__mono); and whether a version vector to it is
     * owed once VV_REPEAT_MS have passed since the last (sync.c: its version vector showed
     * more than this node holds while the answer to ours was still to come). */
    uint64_t headers_in_ms;
    bool ask_again;
    /* This node's own log as it claims to hold it (state.c, node__own_log_settled): whether it
     * sent a version vector since this node started, how far it claims this node's log runs,
     * and the probe of that claim (rounds of VV + ping answered without the headers coming). */
    bool vv_seen;
    uint64_t own_claim;
    bool own_probe, own_disbelieved;
    uint8_t own_rounds;
    uint64_t own_progress; /* e->headers_stored at the last round */
    /* Its clock's offset from this node's, estimated from the clocks of headers it pushed
     * (node__clock_sample); valid when clock_sampled_ms != 0. */
    int64_t clock_offset_ms;
    uint64_t clock_sampled_ms; /* when the estimate was last raised or renewed (node__mono) */
    /* Which peer an origin is asked of (source.c): the origins it asked this node not to send
     * (its last version vector's skip, malloc'd); and it as the source of its own log: slow
     * when it owed some of it and sent none for two ticks in a row, stalls so far, the sum of
     * its log's seqs held here at the last tick, and whether this node told other peers to
     * skip its log since. */
    proto_hash_bytes *skip;
    size_t nskip;
    bool slow, skipped;
    uint8_t stalls;
    uint64_t owed_held;
} node_member;

typedef enum link_state {
    LINK_WAIT_REPLY,  /* we dialled: HELLO sent */
    LINK_WAIT_HELLO,  /* they dialled: waiting for HELLO */
    LINK_WAIT_FINISH, /* HELLO_REPLY sent */
    LINK_UP,          /* session established */
} link_state;

typedef struct node_engine node_engine;
typedef struct node_inmsg node_inmsg; /* a session message waiting its turn (peers.c) */
typedef struct node_gopen node_gopen; /* key grants opening on the workers (gopen.c) */

/* One nng pipe to a peer. */
typedef struct node_keyslot node_keyslot;
typedef struct node_hintkey node_hintkey;

typedef struct node_link {
    struct node_link *next;
    node_engine *eng;
    uint32_t pipe, dialer;
    link_state state;
    proto_handshake *hs;
    proto_session *sess;
    uint8_t peer[32];               /* the member's origin, known once authenticated (or dialled) */
    uint64_t born_ms;               /* the handshake must end by born_ms + handshake_timeout */
    uint64_t rx_ms, tx_ms, ping_ms; /* last frame received / sent, last ping (all node__mono) */
    bool closing;
    /* a former member (its key retired) that proved its key: it was sent the manifest that
     * removed it and nothing else; dropped when it closes, or at the handshake deadline */
    bool farewell;
    char addr[64]; /* the remote address, "IP:PORT" */
} node_link;

/* A body this node holds but has not merged yet, and why. */
typedef enum wait_reason { WAIT_KEY, WAIT_CAUSAL, WAIT_CLOCK } wait_reason;
/* Generations of scopes for the retry of waiting deltas (node_engine.scope_gen): 65,536 slots,
 * 256 KiB. */
#define NODE_SCOPE_SLOTS ((size_t)1 << 16)
typedef struct node_wait {
    uint8_t id[32];
    uint8_t tag[32];
    uint8_t origin[32]; /* the header's place in its origin's log, once known (placed) */
    uint64_t seq;
    wait_reason why;
    uint8_t kind; /* proto_header_kind, 0 when not known yet */
    bool placed;
    /* WAIT_CAUSAL, once decrypted: the slot of its (case, scope) among the engine's scope
     * generations, and the generations when it was last tried (apply.c). It is not tried again
     * until one of them moved. */
    bool gen_known;
    uint16_t scope_slot;
    uint32_t scope_gen, all_gen;
} node_wait;

/* A header held out of order (its seq is beyond the next expected one). */
typedef struct node_pending {
    uint8_t origin[32];
    uint64_t seq;
    uint8_t *bytes;
    size_t len;
} node_pending;

/* A body that came before this node held a key of its tag, kept in memory (park.c). */
typedef struct node_parked {
    uint8_t id[32];
    uint8_t *body; /* NULL: gone */
    size_t len;
    uint64_t ms; /* node__mono when parked */
} node_parked;
typedef NODE_VEC(node_parked) node_parked_vec;
/* A parked body wanted now, with its header's place (ingested in log order). */
typedef struct node_unparked {
    proto_body_item it; /* owns its body's bytes */
    uint8_t origin[32];
    uint64_t seq;
} node_unparked;
typedef NODE_VEC(node_unparked) node_unparked_vec;

/* An id whose body this node lacks and may receive. */
typedef struct node_want {
    uint8_t id[32];
    uint8_t tag[32];
    uint8_t origin[32]; /* the header's author: the first holder to ask */
    uint64_t seq;       /* the header's place in its author's log */
    uint64_t since_ms;  /* when the header came (node__mono): its body is usually on the way;
                         * given non-zero to node__want_add: due at once (a key made it readable) */
    uint64_t asked_ms;  /* when it was last asked for (node__mono), 0 if never */
    uint32_t tries;     /* how many times asked: each time the next holder that is up (sync.c) */
    bool moot;          /* its delta is cut for good (node__cut_for_good): asked rarely */
} node_want;

typedef NODE_VEC(node_want) node_want_vec;
typedef NODE_VEC(node_wait) node_wait_vec;
typedef NODE_VEC(node_pending) node_pending_vec;
/* How many headers of one origin are held out of order, their bytes and highest seq. */
typedef struct node_pending_stat {
    uint8_t origin[32];
    size_t count, bytes;
    uint64_t max_seq;
} node_pending_stat;
typedef NODE_VEC(node_pending_stat) node_pending_stat_vec;
/* An author whose bodies from seq `from` on are held back: more of them waited for their causal
 * past than the pending quota allows (quota.c). At most one per origin of the manifest. */
typedef struct node_held_back {
    uint8_t origin[32];
    uint64_t from;
} node_held_back;
typedef NODE_VEC(node_held_back) node_held_back_vec;
/* Headers held out of order, at most (each up to max_message_bytes in the worst case). */
#define PENDING_MAX ((size_t)1 << 19) /* a count bound above the bytes bound of ingest.c */

struct node_engine {
    /* node__engine_open / node__engine_free (engine.c); read everywhere */
    node_host host;
    char dir[4096];       /* the data directory, absolute (the node runs chdir'd into it) */
    uint64_t started_ms;  /* when the node started (node__mono) */
    uint64_t first_up_ms; /* when its first session came up since the start (0: none yet) */
    node_config cfg;
    node_budget budget; /* cfg's memory budget, split (node__budget_split at open) */
    node_store *store;
    proto_identity *me;
    node_schema *schema; /* the schema in force: the one the manifest in force names */
    uint8_t schema_hash[32];
    uint8_t *schema_bytes; /* its file's bytes (NULL when the host gave none) */
    size_t schema_len;
    /* The schema file, when it is not the one in force: it waits for a manifest that names it
     * and only grows the one in force (state.c). NULL otherwise. */
    node_schema *schema_next;
    uint8_t schema_next_hash[32];
    uint8_t *schema_next_bytes;
    size_t schema_next_len;
    proto_limits lim;
    node_vpool *vpool;      /* threads that check header signatures beside the loop */
    node_keyslot *keys;     /* open scope keys by tag (keycache.c) */
    node_hintkey *hintkeys; /* hint keys by grantor box key (keycache.c) */
    size_t nhintkeys, hintkey_next;
    bool stopping;

    /* state.c: the manifest in force and the member table */
    uint8_t *manifest_bytes; /* the newest verified manifest (owned) */
    size_t manifest_len;
    proto_manifest manifest;
    bool have_manifest;
    /* The manifest in force retires this node's key (its org left the network, or has a new
     * key on another node): it writes nothing and dials no one (state.c). */
    bool removed;
    uint64_t manifest_refused; /* the last version a peer offered that was refused (logged) */
    node_member *members;
    size_t nmembers;

    /* write.c and ingest.c: this node's clock and own log position */
    crdt_hlc clock;
    uint64_t own_seq;
    uint8_t own_last[32];
    /* write.c: when the owner next closes the grants that ended (expired by this node's clock,
     * or to an org the manifest no longer lists as in the network); node__mono ms, 0: now */
    uint64_t ended_due_ms;
    /* inbox.c: since when (node__mono ms) bodies have waited for a key without a pause, 0 when
     * none waits (seen at each tick): the key alert is raised only past NODE_KEY_ALERT_MS */
    uint64_t key_wait_since_ms;

    /* state.c: what this node waits for (in memory; rebuilt from the store at start) */
    node_pending_vec pending;            /* headers held out of order (bounds in ingest.c) */
    node_pending_stat_vec pending_stats; /* per origin, counted again after each change */
    size_t pending_bytes;
    node_wait_vec waits; /* bodies held, not merged yet (budget.waits) */
    /* What a delta waiting for its causal past may wait for changes only when its (case, scope)
     * takes something in (a delta, its dots, an entry, an epoch, a rebuild: its slot of
     * scope_gen, a hash of the case and scope, moves) or something of every scope changes (a
     * fork proof, a manifest: all_gen moves). A retry pass skips the waits whose generations
     * stand still, so many waiting bodies cost nothing while unrelated ones are merged.
     * Slots are shared by hash (a collision costs a retry, never a decision). */
    uint32_t *scope_gen; /* NODE_SCOPE_SLOTS of them (NULL: every wait is tried) */
    uint32_t all_gen;
    uint64_t waits_retried; /* causal waits tried again (decrypted, decided) since the start */
    /* Traffic since the start (status "traffic"): what went out, and what came in that this
     * node held already (a second copy of a header or body is bytes the network spent twice). */
    struct {
        uint64_t frames_sent, bytes_sent, headers_sent, bodies_sent;
        uint64_t headers_got, headers_dup, bodies_got, bodies_dup;
    } traffic;
    node_held_back_vec held_back; /* authors over the pending quota (quota.c, PROTO_VV_MAX) */
    node_want_vec wants;          /* bodies lacked (budget.wants) */
    /* sync.c: wants asked within their retry time (the last round's count, less those whose
     * bodies came since), and whether due wants were held back at NODE_WANT_ASK_MAX a holder */
    size_t wants_asked;
    bool wants_held;
    /* A want is asked again only once the inbound queue was seen empty past its retry time
     * (node__want_retry_due): its answer may be queued there behind other messages. The last
     * moment the queue was seen empty (node__mono), and whether a want waits for the next. */
    uint64_t inq_empty_ms;
    bool wants_drain;
    bool lists_full; /* a want or wait was left out at the lists' bound: node__lists_refill */
    /* a want (a wait) was left out: listed again as soon as its list is down to half, not at
     * the next tick (node__lists_due) */
    bool wants_left, waits_left;
    uint8_t refill_at[40];  /* load.c: the log place where the next refill's scan begins */
    bool refill_at_set;     /* false: at the start */
    uint64_t lists_refills; /* how many times node__lists_refill listed from the store */
    /* load.c: the waits list made again from the store in log order (node__lists_refill) */
    uint64_t waits_done;      /* waits decided (merged, refused, not ours) since the start */
    uint64_t waits_done_seen; /* waits_done at the last tick */
    uint64_t remake_at_ms, remake_gap_ms; /* the next remake no sooner; the gap, doubling */
    uint64_t waits_remakes;               /* since the start, for status */
    /* park.c: bodies that came before their key (budget.park, NODE_PARK_MS) */
    struct {
        node_parked_vec v; /* oldest first from head */
        size_t head, live, bytes;
        idset ix;                /* id -> index in v */
        node_unparked_vec ready; /* wanted now: ingested by node__ingest_parked */
        bool draining;           /* node__ingest_parked is running */
        uint64_t parked, unparked, evicted, expired; /* since the start, for status */
    } park;
    idset want_ix, wait_ix; /* id -> index in wants / waits */
    idset gopened; /* header id -> key grant opened on the workers, during an ingest (gopen.c) */

    /* apply.c: the pass over the waits */
    size_t retry_at;       /* where the pass over the waits stopped */
    size_t retry_passes;   /* passes made since the last call that finished */
    size_t apply_progress; /* bodies merged in the current pass */

    /* peers.c, sync.c and inq.c: links, the inbound queue */
    node_link *links;
    node_link *dead_links; /* freed, to be reaped at the end of the entry point (link.c) */
    node_inmsg *inq_head, *inq_tail;
    size_t inq_bytes;       /* of the messages in it */
    uint64_t rng;           /* xorshift state for picking anti-entropy peers */
    node_loglimit peer_log; /* peer.reject and peer.drop lines of peers that keep trying */

    /* counters for status */
    uint64_t rejected, refused;
    uint64_t headers_stored; /* from peers, since the start (ingest.c) */
};

/* The wall clock of the host, in ms since the Unix epoch: for HLCs, stamps and clock checks. */
static inline uint64_t node__now(const node_engine *e)
{
    return e->host.now_ms(e->host.ctx);
}

/* The host's monotonic clock in ms (> 0): for elapsed times, timeouts and deadlines, which a
 * wall clock stepped back (an NTP correction) would otherwise make wrap. */
static inline uint64_t node__mono(const node_engine *e)
{
    return e->host.mono_ms(e->host.ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* engine.c: the engine's life and its entry points from the host                           */

/* Start the engine whose host, dir, cfg, me, schema, schema_hash and lim are set: open the
 * store in dir, load what it holds (manifest, own log position, clock, waits, wants) and make
 * a pool of `workers` signature-check threads. Nothing is sent yet: node__engine_run does that
 * once the host can carry it. On error call node__engine_free. */
node_err node__engine_open(node_engine *e, unsigned workers, node_errmsg *msg);
/* The host is ready: schedule what the store left to do, dial the members. */
void node__engine_run(node_engine *e);
/* Stop: close every link and drop the inbound queue; nothing more is sent or scheduled. */
void node__engine_stop(node_engine *e);
/* Free everything the engine holds (also after a failed node__engine_open). */
void node__engine_free(node_engine *e);
/* An event of the wire (NODE_NET_PIPE_UP/DOWN/MESSAGE) or a control request (NODE_NET_CONTROL,
 * answered through host.ctl_reply). data is borrowed for the call. */
void node__event(node_engine *e, node_net_ev ev, uint32_t pipe, uint32_t dialer,
    const uint8_t *data, size_t len);
/* Work scheduled through host.schedule, now due. */
void node__work_run(node_engine *e, node_work w);
/* The periodic tick (every [sync] anti_entropy_ms): keepalives, redials, one anti-entropy
 * round, wants, and waits for time or causality. */
void node__tick(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* keycache.c                                                                                */

/* The open scope key of k (its tag), borrowed from the engine's cache and valid until the next
 * node__keycache_get; NODE_ECORRUPT when k's bytes do not make a key. */
node_err node__keycache_get(node_engine *e, const ledger_key *k, proto_scope_key **out);
/* Keep sk (owned from now on, a key just made) as the cached key of tag. */
node_err node__keycache_put(node_engine *e, const uint8_t tag[32], proto_scope_key *sk);
void node__keycache_free(node_engine *e);
/* Close and wipe the cached key of this tag, if cached (its scope was destroyed). */
void node__keycache_drop(node_engine *e, const uint8_t tag[32]);
/* This node's hint slot in key-grant header h of a grantor whose box key is grantor_box_pk
 * (proto_key_grant_slot, with the pair's hint key computed once and kept), or -1. */
int node__grant_slot(node_engine *e, const proto_header *h, const uint8_t grantor_box_pk[32]);
void node__hintkeys_free(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* state.c: manifest, members, and the lists of what the node waits for                     */

/* A header of member m's own log, stamped wall_ms by m's clock, arrived from m itself when this
 * node's wall clock read now_ms (and its monotonic clock mono_ms): a sample of m's clock
 * offset. Transit only makes a sample smaller, so the estimate is the largest sample of the
 * last CLOCK_WINDOW_MS. */
void node__clock_sample(node_member *m, uint64_t wall_ms, uint64_t now_ms, uint64_t mono_ms);
/* The member in the network whose current key is origin (a peer this node may link with), or
 * NULL. */
node_member *node__member_by_origin(node_engine *e, const uint8_t origin[32]);
node_member *node__member_by_org(node_engine *e, const char *org);
/* The member that has or had origin among its keys (retired ones too), and that key; NULL when
 * the manifest in force lists no such key. */
node_member *node__author(node_engine *e, const uint8_t origin[32], const proto_member_key **key);
/* May the manifest in force admit header h: is its origin a member's key, h not beyond that
 * key's retirement and not stamped before its effective time? NULL when it may, else the
 * reason; *m gets the author (NULL when not a member). */
const char *node__header_admitted(node_engine *e, const proto_header *h, node_member **m);
/* May this node write now, as far as its own log goes? Not while a member whose link is up has
 * sent no version vector since this node started (a store restored from a backup is found out
 * at a start), nor while one claims to hold more of this node's log than this node does and the
 * claim is being probed (a restored store must not reuse a sequence number). A claim is probed by
 * rounds of this node's version vector and a ping; two rounds answered without any header coming
 * make it disbelieved (a peer's word alone never stops writes for good). NODE_EIO with a sentence
 * when not. */
node_err node__own_log_settled(node_engine *e, node_errmsg *msg);
/* How far ahead of this node's clock a delta may be stamped before it waits: the manifest's
 * max_clock_ahead_ms (one value for the network). */
uint64_t node__clock_ahead_ms(const node_engine *e);
/* Rebuild the member table from the current manifest, keeping what is known of members that
 * stay (their dialer, link and version vector); members that left are undialled and dropped. */
node_err node__members_rebuild(node_engine *e);
/* Accept a signed manifest if the pinned key signed it, it is newer, its schema hash is ours,
 * it lists this node's key as current, and it follows the one in force (every org and key still
 * listed, nothing stated changed, a new key effective at least [network] rekey_notice_hours
 * after the signing, no purpose dropped). *changed tells whether it replaced the current one.
 * The manifest in force offered again is NODE_OK with *changed false and msg "manifest version
 * N is already in force". */
node_err node__manifest_offer(
    node_engine *e, const uint8_t *bytes, size_t len, bool *changed, node_errmsg *msg);
/* NODE_OK, or (NODE_EINVAL, msg) when the manifest in force retires this node's key. */
node_err node__removed_why(const node_engine *e, node_errmsg *msg);
/* Does manifest m fit this node: does it name this node's schema, and list this node's
 * identity key under [node] org and role? NODE_EINVAL with a sentence saying what to correct. */
node_err node__manifest_fits(const node_engine *e, const proto_manifest *m, node_errmsg *msg);
/* Is every [dial] org of pattod.conf a member of m? NODE_ECONFIG naming the first that is not
 * (a typo is never ignored: it stops a start, and is logged when a manifest arrives). */
node_err node__config_dials_fit(const node_engine *e, const proto_manifest *m, node_errmsg *msg);
/* Read the manifest stored in force, check its signature and that it fits this node
 * (node__manifest_fits), and adopt it (without rebuilding the member table). NODE_ENOTFOUND
 * when none was imported yet; NODE_ECONFIG when it does not fit this configuration. */
node_err node__manifest_load(node_engine *e, node_errmsg *msg);
/* The wants (bodies lacked) and waits (bodies held, not merged yet), indexed by header id, at
 * most e->budget.wants and e->budget.waits (their share of the memory budget). Beyond them an
 * add is not listed but sets e->lists_full: the store holds what it needs (the header without
 * its body, or the body not merged yet), and node__lists_refill lists it again once the lists
 * have room. Adding a want schedules NODE_WORK_WANTS after its grace period. The lists a
 * transaction fills before they are added here are bounded by NODE_WANTS_MAX. */
#define NODE_WANTS_MAX ((size_t)1 << 20)
/* What an entry of each list is counted at in the budget: its vector slot and its index slot
 * (an idset at most half full). */
#define NODE_WANT_COST (sizeof(node_want) + 2 * sizeof(idset_slot))
#define NODE_WAIT_COST (sizeof(node_wait) + 2 * sizeof(idset_slot))
bool node__want_has(node_engine *e, const uint8_t id[32]);
/* Want w's body (its id, tag, origin and seq are read; node__quota_want is the door for bodies
 * whose author may be held back). */
node_err node__want_add(node_engine *e, const node_want *w);
/* Its body came, or it is not this node's to hold any more. When due wants were held back
 * (NODE_WANT_ASK_MAX) and the bodies of most of those asked have come, the next round is asked
 * at once rather than at the retry time; a list that left wants out is refilled once down to
 * half (node__lists_due). */
void node__want_remove(node_engine *e, const uint8_t id[32]);
/* A want is asked only when its body has not come NODE_WANT_GRACE_MS after its header (it
 * usually follows in the next message), and asked again at most this often. */
#define NODE_WANT_RETRY_MS 2000
/* A moot want (a delta cut for good: refused whatever it says) is asked again this rarely: only
 * the causal context of the refused delta is missed while nobody serves it. */
#define NODE_WANT_MOOT_RETRY_MS 60000
uint64_t node__want_retry(const node_want *w);
/* May w, asked before, be asked again: its retry time has passed, and the inbound queue was seen
 * empty since then (everything that came within that time was taken, so its body did not)? A
 * node busy with a long queue asks again once it has worked the queue down, not while its
 * answers wait there; the queue seen empty schedules the wants again (node__inq_seen_empty). */
bool node__want_retry_due(const node_engine *e, const node_want *w, uint64_t now);
/* Was w asked for and is not to be asked again yet (its body may be on its way)? */
bool node__want_asked(const node_engine *e, const node_want *w, uint64_t now);
/* The inbound queue is empty now (inq.c, sync.c): the moment is noted, and wants waiting for it
 * are scheduled. */
void node__inq_seen_empty(node_engine *e);
node_err node__wait_add(node_engine *e, const node_wait *w);
/* Rebuild the wait index after the list was compacted. */
node_err node__waits_reindex(node_engine *e);
/* A want is asked only when its body has not come this long after its header (it usually
 * follows in the next message). */
#define NODE_WANT_GRACE_MS 500
/* A want was added: make sure NODE_WORK_WANTS comes within the grace period. */
void node__wants_schedule(node_engine *e);
/* One WANT asks a holder for at most this many bodies; due wants beyond it wait for the next
 * round, which comes as soon as the wants asked are down to half of it (their bodies came) or
 * when the first of them is due to be asked again. */
#define NODE_WANT_ASK_MAX 4096

/* ---------------------------------------------------------------------------------------- */
/* access.c: the access rule                                                                 */

/* The slot of (case, scope) in e->scope_gen, and: (case, scope) took something in, so the
 * deltas that wait in it are worth another try (apply.c skips the others). */
uint16_t node__scope_slot(const proto_case_id *case_id, const char *scope);
void node__scope_moved(node_engine *e, const proto_case_id *case_id, const char *scope);
/* Does this node hold a confirmed key of this tag (and so read its bodies)? */
bool node__reads_tag(node_txn *t, node_engine *e, const uint8_t tag[32]);
/* May this node hold the body of header h: it reads its tag (a key grant of a scope it reads is
 * held to pass on to other holders), or h is a key grant one of whose hint slots is this
 * node's? */
bool node__may_hold(node_txn *t, node_engine *e, const proto_header *h);
/* Is the scope of key k closed to this node with nothing left to read under that key (a
 * narrowing to none that kept what was received, purge.c; a later grant's keys are newer)?
 * *out (may be NULL) gets the record. A store error answers no. */
bool node__closed_here(node_txn *t, const ledger_key *k, ledger_closed *out);
/* node__closed_here of the key of this tag (no key held: no). */
bool node__tag_closed_here(node_txn *t, const uint8_t tag[32]);
/* Is h a member's delta beyond the cut of a narrowing of its org, with no grant to that org
 * after it? Refused whatever its body says: nobody may be able to serve that body (its author
 * purged its own copy with the scope; the owner cut before what it never got), so a want of it
 * is moot (sync.c: asked rarely, not counted as waiting). */
bool node__cut_for_good(node_txn *t, node_engine *e, const proto_header *h);
/* *found: is there a grant to org numbered after entry `after` in (case c, scope)'s log? */
node_err node__granted_after(node_txn *t, const proto_case_id *c, const char *scope,
    const char *org, uint64_t after, bool *found);
/* Is member m (an author, a peer) of the org that owns the case of key k? */
bool node__is_owner(const ledger_key *k, const node_member *m);
/* The newest grant entry for org among entries 1..upto of the (case, scope) access log
 * (UINT64_MAX: all held), its access lowered by the narrowings of org after it among them
 * (PROTO_ACCESS_NONE when revoked); false when there is none. */
bool node__grant_for(node_txn *t, const proto_case_id *c, const char *scope, const char *org,
    uint64_t upto, ledger_entry *out);
/* May member m receive the body of header h (the sender-side filter)? Only a body decided here,
 * of a tag whose key this node holds, to the case owner or to an org whose newest grant entry
 * gives it read (or write), not narrowed since, and had not expired at the header's clock; and
 * to an org whose access was narrowed, the access-log entries up to its newest narrowing. */
bool node__may_receive(node_txn *t, node_engine *e, const proto_header *h, const node_member *m);
/* The place (origin, seq) of the newest grant entry to m's org in the access log of h's scope
 * (false: none, or m owns the case). */
bool node__grant_place(
    node_txn *t, const proto_header *h, const node_member *m, uint8_t origin[32], uint64_t *seq);
/* Does member m hold the scope of this tag (owner, or granted), as far as this node knows: the
 * peers to ask for its bodies. */
bool node__holder(node_txn *t, const uint8_t tag[32], const node_member *m);
/* May this node write to the scope of key k: it owns the case, or its newest grant entry gives
 * it write and has not expired? */
bool node__may_write(node_txn *t, node_engine *e, const ledger_key *k);
typedef enum node_auth { NODE_AUTH_OK, NODE_AUTH_WAIT, NODE_AUTH_NO } node_auth;
/* The most dots one delta may create under one of its author's origins (its own, or a counter
 * origin): one per edit of a command at most (ctl.c EDITS_MAX). */
#define NODE_DELTA_DOTS_MAX 256
/* The verdict on a delta from its own signed data, the decided access log and the manifest
 * alone, never from the state: NODE_AUTH_NO (and *why) when its entries are not its author's,
 * break the schema or the counter limit, are stamped after h, create dots that do not follow
 * its author's past (without a gap, at most NODE_DELTA_DOTS_MAX per origin), or (another
 * member's) the newest grant for its org among the entries it had seen does not give write,
 * unexpired at h's clock, or a narrowing of its org it had not seen cuts it (node__cut_by);
 * NODE_AUTH_WAIT while those entries are not all decided here. */
node_auth node__verdict(node_txn *t, node_engine *e, const ledger_key *k, const proto_header *h,
    const node_member *author, const proto_body *plain, const crdt_scope *delta, const char **why);
/* The number of a narrowing of org's access in k's scope, numbered after `seen`, whose cut h
 * lies beyond (h's seq above the cut's seq for h's origin; an origin absent: 0); 0 when none
 * (UINT64_MAX when the log cannot be read). A delta of org resting on entry `seen` stands on
 * nothing beyond such a cut. */
uint64_t node__cut_by(
    node_txn *t, const ledger_key *k, const char *org, const proto_header *h, uint64_t seen);
/* The dots a delta creates, as ranges [lo, hi] per origin of its author (its own and its
 * counter origins): those beyond what its version vector says it had seen, when they follow the
 * rule (none otherwise). Writes at most max ranges into out; returns how many; *err
 * NODE_ENOMEM, or NODE_EFULL when more would have come. */
typedef struct node_dot_range {
    crdt_origin origin;
    uint64_t lo, hi;
} node_dot_range;
size_t node__new_dots(const crdt_scope *delta, const proto_body *plain, const uint8_t author[32],
    node_dot_range *out, size_t max, node_err *err);
/* Does state hold a dot the delta creates already (another delta of its author created it:
 * both are void, and the rebuild decides their scope again)? */
bool node__dots_taken(const crdt_scope *state, const crdt_scope *delta, const proto_body *plain,
    const uint8_t author[32]);
/* Join into state, as context only, the dots a refused or void delta creates (those beyond what
 * its author had seen under its own origins): its author's later deltas, which name them, are
 * not held back, and nothing the delta carried is merged. */
node_err node__context_only(
    crdt_scope *state, const crdt_scope *delta, const proto_body *plain, const uint8_t author[32]);
/* Is h void: its origin was caught equivocating at a seq at or below h's (the fork point), or
 * the manifest in force retired its key before h's seq? Nothing of a void header is merged,
 * not even its dots (NODE_VOID_WHY says so in the log). */
bool node__void(node_txn *t, node_engine *e, const proto_header *h);
#define NODE_VOID_WHY "its origin forked at or before it, or its key was retired before it"
/* May the delta of header h by `author` (plain, decoded as delta) be merged into state under key
 * k? node__verdict; then the delta waits (NODE_AUTH_WAIT) until the causal past it names is
 * decided here. *why says why not (or why it waits). */
node_auth node__authorise(node_txn *t, node_engine *e, const ledger_key *k, const crdt_scope *state,
    const proto_header *h, const node_member *author, const proto_body *plain,
    const crdt_scope *delta, const char **why);

/* ---------------------------------------------------------------------------------------- */
/* park.c: bodies that came before their key, in memory until a key makes them wanted       */

#define NODE_PARK_MS 120000 /* each at most, then dropped (node__park_expire) */
/* Keep a copy of a body (checked against its header) that this node may not hold yet because
 * it holds no key of its tag. */
void node__park_put(node_engine *e, const uint8_t id[32], const void *body, size_t len);
/* The body was stored (it came again): the parked copy goes. */
void node__park_forget(node_engine *e, const uint8_t id[32]);
/* A key taken in made w's body wanted: a parked copy moves to the ready list. */
void node__park_wanted(node_engine *e, const node_want *w);
/* The bodies wanted now (owned, in log order; *n of them), the ready list emptied. */
node_unparked *node__park_ready(node_engine *e, size_t *n);
/* Drop what was parked NODE_PARK_MS ago (the tick). */
void node__park_expire(node_engine *e);
void node__park_free(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* gopen.c: key grants sealed to this node, opened on the worker threads                     */

/* Start opening the key grants of bm that carry this node's slot and whose headers are in hq
 * (the HEADERS message queued before bm from the same connection); NULL when there are none.
 * bm's bytes must outlive the result (its message owns it). */
node_gopen *node__gopen_start(node_engine *e, const node_inmsg *hq, const proto_bodies_msg *bm);
/* Wait for them and offer them to node__gopen_take until node__gopen_free. */
void node__gopen_offer(node_engine *e, node_gopen *go);
/* The grant of header h opened for slot `slot` on the workers, moved to *g with its result:
 * true; false when it was not (the caller opens it). */
bool node__gopen_take(node_engine *e, const proto_header *h, int slot, proto_grant *g,
    proto_err *perr, proto_diag *diag);
void node__gopen_free(node_engine *e, node_gopen *go);
/* The memory go holds (0 for NULL), counted in the inbound queue's share. */
size_t node__gopen_bytes(const node_gopen *go);

/* ---------------------------------------------------------------------------------------- */
/* hcheck.c: header signatures checked on the worker threads                                */

/* What is known of a header's signature before ingest looks at it. */
enum { SIG_UNKNOWN = 0, SIG_GOOD, SIG_BAD };
/* A header on its way in, decoded once: the bytes it came as (borrowed from its message), its
 * fields when they decode (perr PROTO_OK; h borrows from bytes), and what is known of its
 * signature (SIG_*). */
typedef struct node_hdr {
    proto_bytes bytes;
    proto_header h;
    proto_err perr;
    proto_diag diag;
    uint8_t sig;
} node_hdr;
/* Decode n headers (borrowing bytes): returns an owned array (node__hdrs_free), or NULL when
 * out of memory. */
node_hdr *node__hdrs_decode(node_engine *e, const proto_bytes *bytes, size_t n);
void node__hdrs_free(node_hdr *hs, size_t n);
/* Signature checks of a batch of headers, started on the worker threads so that the loop can
 * do other work meanwhile: the headers ingest would verify (from a member, not quarantined,
 * beyond what this node holds of that origin). Their sig fields are written by the workers:
 * read them only after node__hcheck_wait. hdrs is borrowed until node__hcheck_free. NULL when it
 * could not start (out of memory): ingest then checks on its own. */
typedef struct node_hcheck node_hcheck;
node_hcheck *node__hcheck_start(node_engine *e, node_hdr *hdrs, size_t n);
/* Wait for the checks (the calling thread helps). NULL is fine. */
void node__hcheck_wait(node_engine *e, node_hcheck *chk);
/* Wait and free. NULL is fine. */
void node__hcheck_free(node_engine *e, node_hcheck *chk);
/* Headers of one origin with consecutive sequence numbers first..last, in a batch. */
typedef struct node_vvrun {
    uint8_t origin[32];
    uint64_t first, last;
    uint8_t last_id[32]; /* the id of the header at last */
} node_vvrun;
/* The runs of the batch chk checks, in batch order (*n = 0 for NULL). */
const node_vvrun *node__hcheck_runs(const node_hcheck *chk, size_t *n);
/* True when the workers have finished the checks (NULL: nothing to wait for). */
bool node__hcheck_ready(node_engine *e, node_hcheck *chk);

/* ---------------------------------------------------------------------------------------- */
/* apply.c: merging held bodies                                                              */

/* One transaction's try at waits (apply.c) or at the bodies of a group (ingest.c). */
/* A (case, scope). */
typedef struct node_scope_ref {
    proto_case_id case_id;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
} node_scope_ref;
typedef NODE_VEC(node_scope_ref) node_scope_ref_vec;

typedef struct apply_ctx {
    node_engine *e;
    size_t from, n;   /* the waits tried in this transaction: [from, from + n) */
    wait_reason *why; /* per wait tried: new reason */
    bool *done;       /* per wait tried: merged, refused or not ours: drop it */
    size_t progress;
    size_t refused;
    node_want_vec wants;        /* bodies a key taken in made readable: adopted after the commit */
    node_scope_ref_vec rebuild; /* scopes to decide again before the commit (rebuild.c) */
} apply_ctx;
/* A held body as its caller knows it: its header decoded, and its bytes. */
typedef struct node_held {
    const proto_header *h;
    const void *body;
    size_t len;
} node_held;
/* Try to merge one held body (held: known already, or NULL to read it from the store). Sets
 * *done (merged, refused, or not ours) or *why, and w's place once its header is read. */
node_err node__apply_one(
    node_txn *t, apply_ctx *c, node_wait *w, const node_held *held, bool *done, wait_reason *why);
/* After the commit of a transaction that applied bodies: want what its keys made readable. */
node_err node__apply_adopt(node_engine *e, apply_ctx *c);
/* Retry the waiting bodies (after a key arrived, a state changed, or time passed), a bounded
 * number per call; schedules NODE_WORK_APPLY when it stopped with more to do. */
void node__retry_waits(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* rebuild.c: deciding again what new signed data changed                                   */

/* origin was caught equivocating at seq fork: its headers from there on are void. Decide
 * every (case, scope) they touch again (inside the caller's transaction). */
node_err node__rebuild_from(node_txn *t, node_engine *e, const uint8_t origin[32], uint64_t fork);
/* A delta created a dot another delta of its author created: both are void, and the (case,
 * scope) is decided again once, at the end of the transaction, however many such deltas it
 * takes in (rebuild_note, then rebuild_noted before the commit). */
node_err node__rebuild_note(apply_ctx *c, const proto_case_id *case_id, const char *scope);

node_err node__rebuild_noted(node_txn *t, apply_ctx *c);
/* The manifest in force retires keys: what this node decided of a key beyond its retirement
 * seq (stored before the manifest came) is void, and its scopes are decided again, in one
 * transaction. Run after a manifest is taken, and at start. */
node_err node__retired_voids(node_engine *e);
/* Every held, decided delta body of (case c, scope) under its confirmed keys (every epoch),
 * opened: fn gets its header, its mark (LEDGER_APPLIED, _REFUSED, _VOID), its author and the
 * delta (fn may take it: set *delta to NULL). In no particular order; stops at fn's error. */
typedef node_err (*node_delta_fn)(
    const proto_header *h, int mark, const node_member *author, crdt_scope **delta, void *ctx);
node_err node__scope_deltas(node_txn *t, node_engine *e, const proto_case_id *c, const char *scope,
    node_delta_fn fn, void *ctx);

/* ---------------------------------------------------------------------------------------- */
/* purge.c: where access ends at this node                                                   */

/* The destruction primitive: every key (all epochs), body, applied mark and state of (case,
 * scope) and its access log removed in the caller's transaction, the cached keys wiped; the
 * headers stay. Logical at once: the freed pages leave the store file when it is compacted.
 * *bodies counts the bodies removed. */
node_err node__destroy_scope(
    node_txn *t, node_engine *e, const proto_case_id *c, const char *scope, size_t *bodies);
/* Narrowing entry en of k's scope names this node's org: count its own writes beyond the cut,
 * record the scope closed (ledger_closed), purge it when the grant it ends (`ended`, the
 * effective grant before en; NULL when none) rested on consent and en leaves no access, and log
 * event=access.narrowed. Nothing when a later grant to this org is held, or en was recorded
 * already (an old narrowing read again after a re-grant). */
node_err node__narrowed_here(node_txn *t, node_engine *e, const ledger_key *k,
    const ledger_entry *en, const ledger_entry *ended);
/* Grant entry en of k's scope names this node's org: a closed record of an earlier narrowing
 * is dropped (granted again); a grant from before it, taken after it, settles the basis of
 * what the narrowing ended (and purges the scope when that was consent). */
node_err node__granted_here(
    node_txn *t, node_engine *e, const ledger_key *k, const ledger_entry *en);

/* ---------------------------------------------------------------------------------------- */
/* held.c: headers held out of order                                                          */

/* Count the held headers again and keep them within their bounds (highest seqs dropped first:
 * a later version vector asks for them again once the gap before them is filled). */
void node__held_bound(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* quota.c: the pending quota of each author                                                 */

/* Are the bodies of origin from seq on held back (not stored, not asked for) because more of
 * its bodies wait for their causal past than [sync] pending_per_author? */
bool node__quota_holds_back(const node_engine *e, const uint8_t origin[32], uint64_t seq);
/* node__want_add, unless w's author is held back from w's seq on: that body is asked for when
 * the quota has room again. */
node_err node__quota_want(node_engine *e, const node_want *w);
/* After a pass over the waits: drop from the store the highest-seq bodies of every author over
 * the quota (their headers stay; logged once per author and pass), and ask again, in seq order,
 * for those of held-back authors that are back under it. */
void node__quota_keep(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* ingest.c: headers and bodies from peers                                                   */

/* What node__ingest stores in one transaction: headers (decoded, their sig fields set by the
 * checks or SIG_UNKNOWN) and bodies, all from peers. Headers go first, so bodies find theirs. */
typedef struct node_ingest_in {
    node_hdr *headers;
    size_t nheaders;
    const proto_body_item *bodies;
    size_t nbodies;
} node_ingest_in;
/* Verify, store and act on headers and bodies from peers in one transaction (a group commit
 * of queued messages), then merge what can be merged. from: for the log, may be NULL. */
node_err node__ingest(node_engine *e, const node_ingest_in *in, node_member *from);
/* The same for many headers (one transaction per INGEST_BATCH); headers whose signatures were
 * not checked yet are checked here first. */
node_err node__ingest_headers(node_engine *e, node_hdr *headers, size_t n, node_member *from);
/* Check and store bodies from a peer, then merge what can be merged. */
node_err node__ingest_bodies(
    node_engine *e, const proto_body_item *items, size_t n, node_member *from);
/* Ingest the parked bodies a key taken in made wanted (park.c); nothing when called from inside
 * itself. After every pass over the waits (node__retry_waits). */
void node__ingest_parked(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* load.c: what the store holds, at start                                                    */

/* At start: this node's log position and clock, and the waits and wants, from the store. */
node_err node__load_store(node_engine *e, node_errmsg *msg);
/* When a want or wait was left out at the lists' bounds (e->lists_full) and a list is down to
 * half of its bound: list again, from the store, what they lack (the tick). */
void node__lists_refill(node_engine *e);
/* state.c: a list got shorter: when it is down to half and left something out,
 * NODE_WORK_LISTS now (which calls node__lists_refill). */
void node__lists_due(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* write.c: local changes                                                                    */

/* A local change to one case, gathered edit by edit and committed at once. */
typedef struct node_edit {
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    char field[CRDT_FIELD_MAX + 1];
    node_edit_op op;
    bool unset;
    /* a redaction of one timeline event (case.redact): named by the first NODE_EVENT_PREFIX
     * bytes of its origin and its counter (node__event_id), found in the state */
    bool redact;
    uint8_t event_origin[6];
    uint64_t event_counter;
    char value[16384 + 1]; /* canonical form from node_schema_check */
    int64_t amount;        /* counters */
} node_edit;

/* A timeline event's id as people see and type it: the first 6 bytes of its origin in hex, a
 * dot and its counter ("3fa94c1be20d.17"); out holds 12 + 1 + 20 + 1 bytes. */
#define NODE_EVENT_ID_SIZE 34
void node__event_id(const crdt_dot *d, char out[NODE_EVENT_ID_SIZE]);
/* Parse one into ed (redact, event_origin, event_counter); false when text is not one. */
bool node__event_id_parse(const char *text, node_edit *ed);

/* A delta this node wrote, to push to its peers: the encoded header and body, and the header
 * decoded (borrowing from `header`). */
typedef struct node_out {
    proto_buf header, body;
    proto_header h;
} node_out;
/* What a write made (owned; node__outs_free): one delta per scope an edit touches, or an
 * access delta per scope granted and a key grant for them all, at most NODE_OUTS_MAX. */
#define NODE_OUTS_MAX 4096
typedef NODE_VEC(node_out) node_outs;
void node__outs_free(node_outs *o);

/* Parse "scope.field=V" / "+=" / "-=" against the schema. Errors: NODE_EINVAL (msg says). */
node_err node__edit_parse(node_engine *e, const char *text, node_edit *out, node_errmsg *msg);
/* Apply edits to a case as one durable change (one header per scope touched). With a nonce
 * the case is new, opened here (its id derives from this node's org and the nonce). *out receives
 * the deltas to push (node__push). Errors: NODE_EINVAL (refused input), NODE_ENOTFOUND (no such
 * readable case / no write access), store errors; *out is then empty. */
node_err node__case_write(node_engine *e, const proto_case_id *c, const proto_case_nonce *nonce,
    const node_edit *edits, size_t n, node_outs *out, node_errmsg *msg);
/* case.batch: many case writes in one transaction, one durable commit. Each item is a new
 * case (a random nonce, or keyed: the nonce derived from an identifier, proto_import_nonce) or
 * edits to an existing case, and is all or nothing: an item whose edits are refused (by the
 * schema, or by the write itself) is left out with its reason and the others are written. A
 * keyed item whose case exists already is skipped (NODE_BATCH_EXISTS). Returns an error only
 * when the batch as a whole fails (the store, memory, a node that may not write now): then
 * nothing was written and *out is empty. */
typedef enum node_batch_state {
    NODE_BATCH_PENDING = 0,
    NODE_BATCH_CREATED,
    NODE_BATCH_UPDATED,
    NODE_BATCH_EXISTS,
    NODE_BATCH_REFUSED
} node_batch_state;
typedef struct node_batch_item {
    proto_case_id c;
    proto_case_nonce nonce; /* create */
    bool create, keyed;
    const char *const *edits; /* the edits' texts (scope.field=V, +=, -=), borrowed */
    size_t n;                 /* 1..NODE_BATCH_EDITS_MAX */
    node_batch_state state;   /* out */
    node_err err;             /* out: why it was refused */
    char reason[520];         /* out: the refusal for a person */
} node_batch_item;
#define NODE_BATCH_MAX 1000
#define NODE_BATCH_EDITS_MAX 256
/* dry_run: only the schema's checks of every edit, nothing written (states PENDING or
 * REFUSED). */
node_err node__case_batch(node_engine *e, node_batch_item *items, size_t n, bool dry_run,
    node_outs *out, node_errmsg *msg);
/* Grant scopes of a case this node owns to a member. */
typedef struct node_grant {
    char to[PROTO_ORG_MAX + 1];
    char purpose[PROTO_ORG_MAX + 1];
    uint8_t basis;  /* proto_basis */
    uint8_t access; /* proto_access_level */
    uint64_t until_ms;
    char operator_name[NODE_OPERATOR_MAX + 1];
    char evidence[256];
    char provision[256];                 /* the legal provision, or empty */
    char unix_user[LEDGER_USER_MAX + 1]; /* who asked, as the control socket saw it, or empty */
} node_grant;
node_err node__case_grant(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, const node_grant *g, node_outs *out, node_errmsg *msg);
/* Revoke (access none) or downgrade (access read) an org's access to scopes of a case this
 * node owns (nscopes 0: every scope where its access is above that): per scope, a narrowing
 * entry with the cut (the last header of each of the org's origins held here), and for a
 * revocation a new epoch whose key goes to the orgs that read the scope now. */
#define NODE_REVOKE_SCOPES_MAX 64
typedef struct node_revoked {
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    uint64_t entry; /* the narrowing's number */
    uint64_t epoch; /* the new epoch (0: none, a downgrade) */
} node_revoked;
typedef struct node_revoke {
    char from[PROTO_ORG_MAX + 1];
    uint8_t access; /* PROTO_ACCESS_NONE or PROTO_ACCESS_READ */
    uint8_t reason; /* proto_narrow_reason */
    char operator_name[NODE_OPERATOR_MAX + 1];
    char unix_user[LEDGER_USER_MAX + 1];
    char note[256];
    node_revoked done[NODE_REVOKE_SCOPES_MAX]; /* out: what was narrowed */
    size_t ndone;
} node_revoke;
node_err node__case_revoke(node_engine *e, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, node_revoke *rv, node_outs *out, node_errmsg *msg);
/* Seal a note (a withdrawal recorded here, or this node dropping its grant) to the case's owner
 * (note->owner_org, an active member) and store it as this node's next header, kept until the
 * owner takes it (the sync serves its body to the owner alone). */
node_err node__case_note(node_engine *e, const proto_note *note, node_outs *out, node_errmsg *msg);
/* The owner closes grants that ended, in the cases it owns: each grant whose end has passed by
 * this node's clock (reason expired), or to an org no longer in the network (reason revoked,
 * noted "removed from the network"), or named by a note received (withdrawn, dropped) when
 * consent-based, gets a narrowing with its cut and the scope a new key for its remaining
 * readers, as a revocation does. At most max scopes in one transaction, and no more than its
 * outputs hold (NODE_OUTS_MAX); *closed counts them, *more says some are left for another
 * transaction. Run by node__ended_tick. */
node_err node__close_ended(
    node_engine *e, size_t max, size_t *closed, bool *more, node_outs *out, node_errmsg *msg);
/* Every NODE_ENDED_EVERY_MS (and at once when ended_due_ms is 0: at start, after a manifest
 * came): close the ended grants, 1,000 scopes per transaction, and push what was written. */
#define NODE_ENDED_EVERY_MS (10 * 60 * 1000)
void node__ended_tick(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* inbox.c: what reached this node that concerns its operators                               */

/* Rows kept at most: beyond, the oldest goes (a row is at most 150 bytes: about 1.5 MiB). */
#define NODE_INBOX_MAX 10000
typedef enum node_inbox_kind {
    NODE_INBOX_SHARED = 1,     /* a grant to this node's org taken (entry, access, purpose...) */
    NODE_INBOX_NARROWED = 2,   /* a narrowing of this node's org taken (access left, reason) */
    NODE_INBOX_CHANGED = 3,    /* a partner's delta merged in a case read here: one row a case */
    NODE_INBOX_WITHDRAWAL = 4, /* at the owner: a withdrawal received (org: who sent it) */
    NODE_INBOX_DROP = 5,       /* at the owner: a drop received */
} node_inbox_kind;
typedef struct node_inbox_item {
    uint64_t at_ms; /* when this node took it, by its clock */
    uint8_t kind;   /* node_inbox_kind */
    proto_case_id case_id;
    uint64_t entry; /* the access-log entry (shared, narrowed); a note's first 8 id bytes */
    /* (scope: a note's first scope; changed: the scope of the last delta merged) */
    uint32_t count; /* changed: deltas merged since the row was made */
    uint8_t access, basis, reason;
    uint64_t until_ms;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    char org[PROTO_ORG_MAX + 1]; /* the grantor, the narrowing's owner, the writer, the sender */
    char purpose[PROTO_ORG_MAX + 1]; /* shared; a note's grantee (withdrawal, drop) */
} node_inbox_item;
/* An item of kind for case c, scope and org, taken at at_ms; the rest zero. */
void node__inbox_item(node_inbox_item *it, uint64_t at_ms, uint8_t kind, const proto_case_id *c,
    const char *scope, const char *org);
/* Add a row in the caller's transaction: nothing when its cause has a row already, except a
 * change, whose case's row moves to the end with its count added. */
node_err node__inbox_add(node_txn *t, const node_inbox_item *it);
/* "revoked", "withdrawn", "dropped" or "expired" (proto_narrow_reason). */
const char *node__narrow_reason(uint8_t reason);
/* Forget the partners' changes row of case c (its scope destroyed here). */
node_err node__inbox_forget_case(node_txn *t, const proto_case_id *c);
/* The alerts an operator must not miss, from the node's state now (status, inbox): this node
 * removed, a forked (quarantined) origin, a peer's clock beyond the bound, writes waiting for a
 * key. A JSON array of {"kind", "org", "message", ...}. */
struct json_object *node__alerts(node_engine *e);
/* A key grant is usually a message behind the bodies it opens: waits for a key become an alert
 * only when some have lasted this long (checked at each tick: node__alerts_tick). */
#define NODE_KEY_ALERT_MS 60000
void node__alerts_tick(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* link.c: the links to peers                                                                */

node_link *node__link_find(node_engine *e, uint32_t pipe);
/* An established link to m (not closing), or NULL. */
node_link *node__link_up_to(node_engine *e, const node_member *m);
/* Forget a link (its connection is gone or being dropped). Its memory stays valid (with no
 * session) until node__links_reap, at the end of the engine's entry point: an answer being sent
 * on it may still hold it. */
void node__link_free(node_engine *e, node_link *l);
void node__links_reap(node_engine *e);
/* Drop a link and its connection, logging why (peer_log limits lines of links that never came
 * up). */
void node__link_drop(node_engine *e, node_link *l, const char *why);
/* The org of the member at the other end, once known (dialled or authenticated). */
const char *node__link_org(node_engine *e, const node_link *l);
/* The level a line of this link and cause is logged at: `level` once per address and cause,
 * then NODE_LOG_DEBUG while node_loglimit holds it back (*held: lines held before this one). */
node_log_level node__link_log_level(
    node_engine *e, const node_link *l, const char *cause, node_log_level level, uint64_t *held);
/* Seal and send one message on an established link; false when it could not (the link is then
 * dropped, or ending). */
bool node__link_send(node_engine *e, node_link *l, const proto_buf *m);
/* The same on any established link to m. */
bool node__send_to(node_engine *e, node_member *m, const proto_buf *msg);
/* (Re)dial every member not dialled yet (after a manifest). */
void node__peers_sync(node_engine *e);
void node__links_close(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* inq.c: the inbound queue of session messages                                              */

/* Headers per group commit (a first message may hold more; it is then taken alone). */
#define NODE_GROUP_HEADERS (2 * 4096u)
/* A session message waiting its turn. */
struct node_inmsg {
    node_inmsg *next;
    uint8_t origin[32]; /* the member it came from */
    uint32_t pipe;      /* and the connection */
    unsigned kind;
    proto_buf plain; /* the message (owned) */
    bool is_headers, is_bodies;
    proto_headers_msg hm; /* decoded from plain when is_headers */
    node_hdr *hdrs;       /* and its headers, each decoded once, [hm.n] */
    proto_bodies_msg bm;  /* decoded from plain when is_bodies */
    node_hcheck *chk;
    node_gopen *gop; /* the key grants of a BODIES message opening on the workers (gopen.c) */
    size_t cost;     /* the memory it holds, counted in e->inq_bytes (the inbound share) */
};
/* Queue the decrypted session message plain (taking it over) of kind from m on l: HEADERS
 * always, anything else but VV when the queue is not empty; schedules NODE_WORK_INQ. false: not
 * queued (plain is untouched), handle it now. */
bool node__inq_take(node_engine *e, node_link *l, node_member *m, unsigned kind, proto_buf *plain);
/* The queue holds its share of the memory budget or more: work it down before taking more. */
bool node__inq_full(const node_engine *e);
/* Raise *vv (this node's stored version vector, *n entries, malloc'd, sorted) by the queued
 * headers that continue it, as sent to member `to`. */
void node__inq_vv(node_engine *e, proto_vv_item **vv, size_t *n, const node_member *to);
/* The head of the queue, unlinked (NULL when empty); free with node__inmsg_free. */
node_inmsg *node__inq_pop(node_engine *e);
/* How many messages at the head make the next group commit (0: the head is not HEADERS or
 * BODIES), with their headers and bodies. */
size_t node__inq_group_len(node_engine *e, size_t *nh, size_t *nb);
/* q's member (NULL when it left the manifest) and the link an answer goes back on (NULL when
 * gone). */
node_member *node__inq_sender(node_engine *e, const node_inmsg *q, node_link **lp);
void node__inmsg_free(node_engine *e, node_inmsg *q);
void node__inq_free(node_engine *e); /* drop the inbound queue (at stop) */

/* ---------------------------------------------------------------------------------------- */
/* sync.c: the sync protocol inside a session                                                */

/* A session message from m on l (decrypted, its kind peeked). */
void node__sync_message(
    node_engine *e, node_link *l, node_member *m, unsigned kind, const uint8_t *p, size_t len);
/* A ping on l (an empty WANT): its answer, an empty BODIES, comes after the answers to
 * everything sent before it. */
void node__send_ping(node_engine *e, node_link *l);
/* Send m this node's version vector on l (NULL: any link to m). With only_new, not when the
 * same one went to m within VV_REPEAT_MS. */
void node__send_vv(node_engine *e, node_member *m, node_link *l, bool only_new);
/* Work the inbound queue down by one group (NODE_WORK_INQ); true when more is queued. */
bool node__sync_step(node_engine *e);
/* Eager push of the deltas a local write made. */
void node__push(node_engine *e, const node_outs *outs);
/* The same, but runs of deltas whose bodies go to no member in HEADERS messages of up to 256
 * headers (case.batch: its new cases are shared with nobody yet). */
void node__push_batch(node_engine *e, const node_outs *outs);
/* One anti-entropy round with a random peer that is up. */
void node__anti_entropy(node_engine *e);
/* Ask for bodies missing longer than the grace period. */
void node__wants_due(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* source.c: which peer an origin's headers are asked of                                     */

/* The entry of origin in a version vector sorted by origin (NULL: none); its seq (0: none). */
const proto_vv_item *node__vv_find(const proto_vv_item *vv, size_t n, const uint8_t origin[32]);
uint64_t node__vv_seq(const proto_vv_item *vv, size_t n, const uint8_t origin[32]);
/* The origins a version vector to `to` asks it not to send (sorted; *skip malloc'd, NULL when
 * none): those of each other member that is up and not slow, unless `to` claims more of that
 * log than its author. */
node_err node__source_skip(
    node_engine *e, const node_member *to, proto_hash_bytes **skip, size_t *nskip);
/* m's version vector came: the origins it asks this node not to send. */
void node__source_take(node_member *m, const proto_vv_msg *v);
bool node__source_skipped(const node_member *m, const uint8_t origin[32]);
/* At each tick, with what this node holds (held, sorted by origin): is p slow to serve its own log?
 * True when the other peers must now be asked for p's log (p went down or became slow after
 * they were told to skip it). */
bool node__source_judge(node_engine *e, node_member *p, const proto_vv_item *held, size_t n);
/* Does m claim more of p's log than this node holds? */
bool node__source_claims_more(const node_engine *e, const node_member *m, const node_member *p,
    const proto_vv_item *held, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* peers.c: connections, the handshake, keepalives                                           */

/* A wire event (NODE_NET_PIPE_UP/DOWN/MESSAGE). */
void node__peers_event(node_engine *e, node_net_ev ev, uint32_t pipe, uint32_t dialer,
    const uint8_t *data, size_t len);
/* Keepalives, idle links, stuck dialers. */
void node__peers_tick(node_engine *e);
/* Drop links whose handshake deadline has passed; schedule the next deadline. */
void node__links_due(node_engine *e);

/* ---------------------------------------------------------------------------------------- */
/* ctl.c: control requests                                                                   */

void node__ctl_handle(node_engine *e, const uint8_t *req, size_t len);

#endif
