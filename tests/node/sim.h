/*
 * sim: two to five node engines (node/src/core.h) in one process, on a fake clock and a fake
 * wire, driven deterministically from a seed, for cmocka tests (tests/node/test_sim.c).
 *
 * Each engine is a real one: its own temporary data directory (LMDB), an in-memory config
 * (node_config_defaults, org, role, listen URL, admin key), a real identity made from seeded
 * bytes, the shipped schema (node/schema/default.json) and a manifest signed in the test by an
 * admin identity and offered to every engine. Engines run with 0 signature-check workers, so
 * everything happens on the calling thread. The sim is the engines' node_host:
 *
 * - The clock: one simulated time in ms (starting at 2026-01-01T00:00Z) for all nodes; node i
 *   reads it plus its own offset (sim_opts.clock_offset_ms: a clock that runs ahead or behind;
 *   sim_set_clock_offset steps it).
 * - The wire: node i listens on tcp://10.0.0.(i+1):7401 (the URLs of the manifest). host.dial
 *   makes a dialer that connects to the node with that URL after one round trip and delivers
 *   NODE_NET_PIPE_UP to both ends (the dialer's id on the dialling side; the remote address,
 *   "10.0.0.N:PORT", as the UP data). host.send queues a frame on the connection; the sim
 *   delivers it as NODE_NET_MESSAGE after the link's latency, in order per connection and
 *   direction (TCP). host.drop and host.undial close a connection: NODE_NET_PIPE_DOWN with a
 *   reason goes to the node that closed it (as net.c does, the engine ignores it) and, after
 *   the frames already sent, to the other end. A dialer whose connection is gone redials after
 *   a backoff of 100 ms doubling to 2 s (reset by a connection that lived 10 s), and a connect
 *   attempt to a node it cannot reach fails after 5 s, as net.c's does.
 * - The scheduler: host.schedule(w, delay) records "run node__work_run(e, w) no later than
 *   delay ms from now" (an earlier request that is due sooner stays, as in daemon.c); the tick
 *   runs node_tick every [sync] anti_entropy_ms of simulated time (each node from its own
 *   seeded phase). The loop takes the next event in simulated time (frame deliveries, UP and
 *   DOWN, connects and redials, scheduled work, ticks, faults), ties broken by the order they
 *   were queued, and moves the clock to it. Nothing is delivered from inside a host call: the
 *   engines are only ever entered from the loop (or by a test's write between steps).
 *
 * Faults, what each does at which layer, and why:
 * - delay (sim_opts.lat_*_ms, jitter_ms): the transport. Every ordered pair of nodes has its
 *   own one-way latency, drawn from [lat_min_ms, lat_max_ms] when the sim is made
 *   (sim_set_latency changes it), and each frame adds a uniform 0..jitter_ms. A frame is never
 *   delivered before an earlier frame of the same connection and direction: TCP delivers in
 *   order, and the session layer (proto sessions) refuses a frame out of sequence.
 * - reorder: the transport, across connections only. Different latencies per link, and the two
 *   connections of a pair (both sides dial), let a message sent later on one connection arrive
 *   before one sent earlier on another (a pushed header can overtake an older one, relayed
 *   headers can overtake pushed ones), which is what ingest's out-of-order holding is for.
 *   Reordering within a connection would only test the session's sequence check.
 * - drop (cut_ppm; sim_cut, sim_lose_next, sim_cut_after_next): the transport. With cut_ppm
 *   chances in a million per frame sent, that frame's connection is cut at a random moment
 *   within the link's latency: every frame still in flight on it, either way, is lost, and
 *   both ends get NODE_NET_PIPE_DOWN (a reset). A session cannot lose single frames without
 *   breaking (the next frame is out of sequence), so a lost frame is always a cut connection,
 *   as with TCP. Dialers redial by their backoff; the engines repair what was lost by version
 *   vectors, gap requests and wants.
 * - duplicate (dup_ppm): the transport, below the session. The frame is delivered twice in a
 *   row; the receiving session refuses the replay (a frame number it has seen), the engine
 *   rejects and drops that link, and the nodes must recover by redialling and still converge.
 *   Duplicates above the session (a header or body sent twice by anti-entropy) are the
 *   engines' own doing and need no fault.
 * - partition (sim_partition, sim_isolate, sim_heal): the network. Nodes in different groups
 *   cannot reach each other: frames between them wait in their connections (TCP keeps
 *   retransmitting) and are delivered, in order, once healed, unless an end closed meanwhile
 *   (an idle timeout: then the other end learns of it when the partition heals); connect
 *   attempts between groups fail after 5 s (a SYN with no answer). No DOWN comes from the
 *   partition itself: a half-open connection is what the engines' keepalives are for.
 * - clock offset (sim_opts.clock_offset_ms, sim_set_clock_offset): the node's wall clock, for
 *   max_clock_ahead_ms waits, and steps of a wall clock (an NTP correction).
 * - restart (sim_restart): the node's process, killed between two loop turns and started again
 *   on its data directory: what it keeps only in memory must come back from its peers.
 *
 * Reading a node goes through functions only: the ledger (ledger.h) in a read transaction for
 * version vectors, digests, keys and applied marks, and the control socket's status command
 * (ctl.c, through node_event) for what it waits for. The engine's fields are touched in one
 * place of sim.c (engine_setup, engine_budget, engine_store).
 *
 * Determinism: the sim draws every choice (latencies, jitter, faults, the ticks' phases, the
 * engines' anti-entropy RNG, case ids) from streams derived from the seed, and sim_global_init
 * replaces libsodium's random source for the whole process with a seeded one (reseeded by
 * sim_new), so that nonces, ephemeral keys and scope keys, and with them every frame's bytes,
 * repeat too. sim_trace_hash covers every event delivered to an engine (time, node, kind, pipe,
 * dialer, bytes) and every write a test made: a seed run twice gives the same hash.
 *
 * A run that reaches its step limit (a livelock: events without end) or a failed check prints
 * the seed and the command that replays it (sim_print_replay): e.g.
 *   SIM_SEED=1234 SIM_TEST=seeded_schedule build/tests/node/test-node-sim
 * Environment: SIM_LOG=error|warn|info|debug (each node's log goes to its own file in its data
 * directory, default info; the tails are printed on a failure), SIM_KEEP=1 keeps the data
 * directories, SIM_TMPDIR chooses where they go (default /dev/shm when writable: the engines
 * fsync every commit, which costs nothing there; else TMPDIR or /tmp).
 */
#ifndef TESTS_NODE_SIM_H
#define TESTS_NODE_SIM_H

#include <node/node.h>
#include <proto/proto.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_NODES 5

typedef struct sim sim;

typedef struct sim_opts {
    size_t n;                        /* nodes, 2..SIM_MAX_NODES */
    uint64_t seed;                   /* everything follows from it */
    const char *name;                /* the test's name, for the replay line (SIM_TEST) */
    const char *replay_env;          /* more of the replay line, e.g. "SIM_OPS=400" (may be NULL) */
    uint32_t lat_min_ms, lat_max_ms; /* one-way latency per ordered pair, drawn once */
    uint32_t jitter_ms;              /* per frame, uniform 0..jitter_ms */
    uint32_t cut_ppm;                /* per frame sent: chance in a million of a cut */
    uint32_t dup_ppm;                /* per frame sent: chance in a million of a duplicate */
    /* [sync] settings of every node (0: pattod's default) */
    uint64_t anti_entropy_ms, max_clock_ahead_ms, idle_timeout_ms, handshake_timeout_ms;
    uint64_t max_steps; /* events before the run is declared a livelock (0: 20 million) */
    int64_t clock_offset_ms[SIM_MAX_NODES]; /* each node's clock from the start (ahead > 0) */
    /* Shares of every node's memory budget, set once its engine opens (0: [node] memory_mb's
     * default split): how many wanted and waiting bodies each list holds; no_park: no body
     * that comes before its key is kept (the park's share is 0). */
    size_t lists_max;
    bool no_park;
    /* Node i works its inbound queue this late each time (a node busy with a long queue: what
     * comes meanwhile waits in it); 0: at once. sim_set_inq_delay changes it. */
    uint32_t inq_delay_ms[SIM_MAX_NODES];
} sim_opts;

/* n nodes, this seed, latencies 2..20 ms, no jitter, no faults. */
void sim_opts_default(sim_opts *o, size_t n, uint64_t seed, const char *name);

/* Once per process, before anything else uses libsodium: a seeded random source for libsodium
 * (see "Determinism"), proto_init, and the program's path for the replay line. */
void sim_global_init(const char *argv0);

/* Make the nodes, open their engines, offer the manifest and start them (they dial each
 * other; run the sim to let them connect). NULL on failure (said on stderr). */
sim *sim_new(const sim_opts *o);
/* Stop and free every engine, remove the data directories (unless SIM_KEEP=1). NULL is fine. */
void sim_free(sim *s);

size_t sim_n(const sim *s);
const char *sim_org(const sim *s, size_t i);
const uint8_t *sim_origin(const sim *s, size_t i);
uint64_t sim_seed(const sim *s);
/* Simulated time (ms since the Unix epoch), and node i's clock (time plus its offset). */
uint64_t sim_now(const sim *s);
uint64_t sim_node_now(const sim *s, size_t i);
/* Events processed so far, and the hash of everything delivered (see "Determinism"). */
uint64_t sim_steps(const sim *s);
uint64_t sim_trace_hash(const sim *s);
/* What happened on the wire so far. */
typedef struct sim_stats {
    uint64_t frames;     /* delivered to an engine */
    uint64_t lost;       /* in flight on a connection when it was cut */
    uint64_t cuts, dups; /* faults: connections cut, frames sent twice */
    uint64_t conns;      /* connections made */
    uint64_t stalled;    /* frames that waited out a partition */
    uint64_t restarts;   /* sim_restart */
    uint64_t drops;      /* connections closed by one of their nodes (host.drop, host.undial) */
} sim_stats;
void sim_get_stats(const sim *s, sim_stats *out);
/* The workload's own random stream (separate from the network's): uniform in [0, n). */
uint64_t sim_rand(sim *s, uint64_t n);

/* ---------------------------------------------------------------------------------------- */
/* Faults                                                                                    */

/* Step node i's clock now to the simulated time plus offset_ms: a jump, as when NTP corrects
 * a wall clock (sim_opts.clock_offset_ms sets offsets from the start, without a step). */
void sim_set_clock_offset(sim *s, size_t i, int64_t offset_ms);
/* From now on node i works its inbound queue ms late each time (sim_opts.inq_delay_ms). */
void sim_set_inq_delay(sim *s, size_t i, uint32_t ms);
void sim_set_faults(sim *s, uint32_t cut_ppm, uint32_t dup_ppm, uint32_t jitter_ms);
/* One-way latency from node a to node b, for frames sent from now on. */
void sim_set_latency(sim *s, size_t a, size_t b, uint32_t ms);
/* group[i] for every node: nodes talk only within their group. */
void sim_partition(sim *s, const unsigned *group);
/* Node i alone on one side, everyone else on the other. */
void sim_isolate(sim *s, size_t i);
/* One network again: what waited in the connections is delivered. */
void sim_heal(sim *s);
/* Cut every connection between a and b now (both ends get DOWN; in-flight frames are lost). */
void sim_cut(sim *s, size_t a, size_t b);
/* The next frame a sends to b is lost, and its connection cut at once. */
void sim_lose_next(sim *s, size_t a, size_t b);
/* The next frame a sends to b is delivered, then its connection is cut (frames sent behind it
 * on that connection are lost). */
void sim_cut_after_next(sim *s, size_t a, size_t b);
/* Node i's process dies and starts again on its data directory (as after SIGKILL between two
 * loop turns: every write is a committed transaction): its engine is stopped and freed, its
 * connections end without a word to it (its peers hear a reset after the link's latency), its
 * dialers and scheduled work are gone; a new engine opens the store and dials the others.
 * false when it does not start again (said). */
bool sim_restart(sim *s, size_t i);
/* A copy of node i's store as it is now (between two loop turns), kept beside it: an operator's
 * backup. false when it cannot be made (said). */
bool sim_backup(sim *s, size_t i);
/* sim_restart, on the copy sim_backup made: the node restored from its backup, which no
 * longer holds what it wrote since (its own log included). */
bool sim_restore(sim *s, size_t i);
/* Stop (false) or resume (true) the periodic node_tick of every node: for showing that the
 * checks catch a network that does not repair itself. */
void sim_set_ticks(sim *s, bool on);

/* ---------------------------------------------------------------------------------------- */
/* Running. Each returns false when the step limit was reached (said, with the replay line). */

bool sim_run_for(sim *s, uint64_t ms);
/* Step until pred(s, ctx) holds (checked before and after every event) or max_ms of simulated
 * time pass: true when it holds. */
bool sim_run_until(sim *s, bool (*pred)(sim *s, void *ctx), void *ctx, uint64_t max_ms);

/* ---------------------------------------------------------------------------------------- */
/* Writes, as ctl.c makes them: durable when they return NODE_OK (acknowledged), then pushed. */

/* A header this sim's writes produced and its node acknowledged. */
typedef struct sim_hdr {
    size_t node; /* the writer */
    uint64_t seq;
    uint8_t id[32], tag[32];
    uint8_t kind;      /* proto_header_kind */
    size_t recipient;  /* key grants: the recipient node; SIZE_MAX otherwise */
    uint64_t acked_ms; /* simulated time of the acknowledgement */
} sim_hdr;

/* Open a case at node i (its owner) with these edits ("scope.field=V", "+=", "-="). */
node_err sim_case_new(
    sim *s, size_t i, const char *const *edits, size_t n, proto_case_id *out, node_errmsg *msg);
node_err sim_case_set(
    sim *s, size_t i, const proto_case_id *c, const char *const *edits, size_t n, node_errmsg *msg);
/* The owner (node i) grants scopes of case c to node `to`, read or write access. */
node_err sim_grant(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t to, bool write, node_errmsg *msg);
/* sim_grant on a legal basis (PROTO_BASIS_...; sim_grant's is public task). */
node_err sim_grant_basis(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t to, bool write, uint8_t basis, node_errmsg *msg);
/* The owner (node i) revokes node from's access to scopes of case c: a narrowing with its cut
 * and a new key for the others (as patto consent revoke). */
node_err sim_revoke(sim *s, size_t i, const proto_case_id *c, const char *const *scopes,
    size_t nscopes, size_t from, node_errmsg *msg);
/* Every acknowledged header, in the order written (borrowed until the next write). */
const sim_hdr *sim_acked(const sim *s, size_t *n);

/* ---------------------------------------------------------------------------------------- */
/* Reading a node                                                                            */

typedef struct sim_tag {
    uint8_t tag[32];
    uint8_t digest[32]; /* proto_scope_digest of the scope state held under it */
} sim_tag;

/* A node's version vector and the digest of every scope state it holds a key for, as ctl.c's
 * digest command computes them. */
typedef struct sim_view {
    proto_vv_item *vv;
    size_t nvv;
    sim_tag *tags; /* sorted by tag */
    size_t ntags;
} sim_view;

bool sim_view_read(sim *s, size_t i, sim_view *v);
void sim_view_fini(sim_view *v);
/* How many headers of node `origin`'s log node i holds (contiguous). */
uint64_t sim_vv(sim *s, size_t i, size_t origin);
/* The applied mark of header id at node i: 0 not merged, 1 merged, 2 refused, -1 on error. */
int sim_applied(sim *s, size_t i, const uint8_t id[32]);
/* Does node i hold the key of this tag? */
bool sim_has_key(sim *s, size_t i, const uint8_t tag[32]);

/* What node i waits for, from its status (CONTROL.md, "waiting"). */
typedef struct sim_waiting {
    long long causal, clock, key; /* bodies held, not merged: why */
    long long bodies;             /* bodies lacked (wants) */
    long long headers;            /* headers held out of order */
    long long refills;            /* lists refilled from the store (memory.refills) */
} sim_waiting;
bool sim_waiting_read(sim *s, size_t i, sim_waiting *w);
/* What node i's status says of the quarantined origin of node `origin`: its fork point seq
 * (0 when it is not quarantined there), whether it is node i's own ("self") and, then, how
 * many of node i's own writes are void ("void_own"). */
#define SIM_VOID_LISTED 8
typedef struct sim_quarantine {
    long long seq;
    bool self;
    long long void_own;
    struct {
        long long seq;
        char scope[40];
    } listed[SIM_VOID_LISTED]; /* the first of void_own_writes */
    size_t nlisted;
} sim_quarantine;
bool sim_quarantine_read(sim *s, size_t i, size_t origin, sim_quarantine *q);
/* Headers node i got from peers since it started, and how many of them it held already, from
 * its status ("traffic": headers_got, headers_dup); -1 each when the status cannot be read. */
typedef struct sim_traffic {
    long long headers_got, headers_dup;
    long long bodies_got; /* bodies received */
    long long bodies_dup; /* of those, the ones it held already (a second copy) */
    long long parked;     /* of those, the ones that came before this node held their key */
} sim_traffic;
sim_traffic sim_traffic_read(sim *s, size_t i);
/* How many peers node i has a session with, from its status ("peers", state "up"). */
size_t sim_peers_up(sim *s, size_t i);
/* The engine's grace period before a missing body is asked for (NODE_WANT_GRACE_MS). */
uint64_t sim_want_grace_ms(void);

/* Converged: equal version vectors (of an origin known forked: one fork point, and its log up
 * to just below it), equal digests of every tag held by more than one node, and
 * no node waiting for anything (sim_waiting all zero). false with why filled (which node lacks
 * which origin's headers, which tags differ, what the nodes wait for). */
bool sim_converged(sim *s, char *why, size_t whylen);
/* Every acknowledged header is held by every node, every delta merged at each node that holds
 * its tag's key, and every key grant opened by its recipient. false with why filled. */
bool sim_acked_ok(sim *s, char *why, size_t whylen);
/* Run until sim_converged holds (checked every 250 ms of simulated time) or max_ms pass. */
bool sim_converge(sim *s, uint64_t max_ms, char *why, size_t whylen);

/* Print the seed and the command line that replays this run, and the tails of the nodes'
 * logs; for a failing check. */
void sim_print_replay(const sim *s);

#endif
