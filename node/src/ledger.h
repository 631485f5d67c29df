/*
 * ledger: the node's records on top of the store (store.c), one function per kind of record.
 * Everything here runs inside a transaction given by the caller, on the loop thread. Bytes a
 * getter returns (headers, bodies) are borrowed as node_txn_get's are: valid until the next
 * write in the transaction or its end.
 *
 * Key layout (all integers big-endian, so keys sort in numeric order):
 *   headers  'H' origin(32) seq(8)      -> HEADER message bytes
 *            'I' id(32)                 -> origin(32) seq(8)
 *            'T' tag(32) id(32)         -> ""            (headers by routing tag)
 *   vv       origin(32)                 -> seq(8) id(32) wall(8) logical(2)
 *                                          (contiguous headers held: the last one's id and clock)
 *   bodies   origin(32) seq(8)          -> body bytes   (of the header at that place: 'I')
 *   keys     'K' tag(32)                -> key record (ledger_key)
 *            'C' case(16) scope         -> tag(32)       (newest confirmed epoch of a scope)
 *            'P' case(16) len(1) scope epoch(8) -> tag(32) (every key of a scope, by epoch)
 *            'O' case(16)               -> created ms(8) nonce(16) (cases this node opened)
 *            'G' tag(32)                -> case(16) scope (a tag of a scope purged here)
 *   state    'S' tag(32)                -> SCOPE message (the scope's state)
 *            'A' origin(32) seq(8)      -> status(1)     (body applied, or refused)
 *            'L' tag(32)                -> last change ms(8)
 *   consents 'E' case(16) len(1) scope number(8) -> access-log entry (ledger_entry)
 *            'X' case(16) len(1) scope  -> closed scope (ledger_closed): access ended here
 *            'N' id(32)                 -> a note this node wrote (ledger_note)
 *            'W' id(32)                 -> a note to this node, as the case's owner (ledger_note)
 *            'B' 'b' 'c' 'Y' 'Z'        -> the inbox (its layout: inbox.c)
 *   manifest "current"                  -> signed manifest bytes
 *   meta     "own"                      -> last seq(8) last id(32)
 *            "layout"                   -> 4 (protocol version 3)
 *            "hlc"                      -> wall(8) logical(2)
 *            'Q' origin(32)             -> proof: len(4) header len(4) header
 */
#ifndef NODE_LEDGER_H
#define NODE_LEDGER_H

#include "internal.h"

#include <proto/proto.h>

#define LEDGER_ID_LEN 32

/* A store key made of a one-byte prefix and up to three parts (ledger.c, ledger_log.c). */
typedef struct lkey {
    uint8_t b[1 + 32 + 32 + 40];
    size_t n;
} lkey;
/* prefix case(16) len(1) scope [number(8)]: the keys of a (case, scope)'s epochs ('P') and
 * access-log entries ('E'). */
lkey node__ledger_scope_key(
    char prefix, const proto_case_id *c, const char *scope, uint64_t number, bool with_number);

/* What is known of one (case, scope, epoch) key. */
typedef struct ledger_key {
    uint8_t tag[32];
    proto_case_id case_id;
    proto_case_nonce nonce; /* case_id derives from (owner_org, nonce): the owner is checked */
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    uint64_t epoch;
    char owner_org[PROTO_ORG_MAX + 1]; /* the org that opened the case: it grants and writes */
    bool confirmed;  /* the first epoch, or a later one whose announcement matched this key */
    uint8_t key[32]; /* secret */
} ledger_key;

/* One entry of a (case, scope)'s access log, as this node stores it (decided from the owner's
 * authentic headers only). */
#define LEDGER_USER_MAX 64
typedef struct ledger_entry {
    uint64_t number; /* 1, 2, ... in the scope's log */
    uint8_t kind;    /* PROTO_BODY_ACCESS_GRANT, _EPOCH or _NARROW */
    uint8_t id[32];  /* the header that carried it */
    crdt_hlc hlc;    /* and that header's clock: when the owner recorded it */
    uint64_t epoch;  /* the epoch of the key it was sealed under */
    /* grant (and narrowing: grantee, access, operator, unix user; evidence holds its note) */
    char grantee[PROTO_ORG_MAX + 1];
    uint8_t access; /* proto_access_level */
    char purpose[PROTO_ORG_MAX + 1];
    uint8_t basis; /* proto_basis */
    uint64_t expiry_ms;
    char provision[PROTO_TEXT_MAX + 1];
    char operator_name[PROTO_TEXT_MAX + 1];
    char unix_user[LEDGER_USER_MAX + 1];
    char evidence[PROTO_TEXT_MAX + 1];
    /* epoch announcement */
    uint64_t new_epoch;
    uint8_t key_hash[32];
    /* narrowing: why, and the cut (per origin of the grantee: the last seq the owner held) */
    uint8_t reason; /* proto_narrow_reason */
    size_t ncut;
    proto_cut cut[PROTO_CUT_MAX];
} ledger_entry;

typedef enum ledger_applied {
    LEDGER_APPLIED = 1, /* merged into the state */
    LEDGER_REFUSED = 2, /* verified header, body refused (write not authorised): never merged */
    LEDGER_VOID = 3,    /* its origin forked at or below its seq, or it rests on a void entry */
} ledger_applied;

void node__ledger_be64(uint8_t out[8], uint64_t v);
uint64_t node__ledger_get64(const uint8_t in[8]);

/* Headers and the per-origin version vector. A stored header is the next of its origin's chain
 * (the caller checked that), or a stored one again (nothing changes). */
node_err node__ledger_header_put(
    node_txn *t, const proto_header *h, const uint8_t *bytes, size_t len);
node_err node__ledger_header_get(
    node_txn *t, const uint8_t origin[32], uint64_t seq, const void **bytes, size_t *len);
/* The place (origin, seq) of the stored header with this id; NODE_ENOTFOUND when none. */
node_err node__ledger_place(node_txn *t, const uint8_t id[32], uint8_t origin[32], uint64_t *seq);
node_err node__ledger_header_by_id(
    node_txn *t, const uint8_t id[32], const void **bytes, size_t *len);
uint64_t node__ledger_vv_get(node_txn *t, const uint8_t origin[32]);
/* The same, and the id of that last header (zeros when none). */
uint64_t node__ledger_vv_last(node_txn *t, const uint8_t origin[32], uint8_t id[32]);
/* The clock of that last header (0.0 when none). */
crdt_hlc node__ledger_vv_clock(node_txn *t, const uint8_t origin[32]);
/* The whole version vector (with the last ids, and the fork point of each quarantined origin);
 * *out is malloc'd (free), sorted by origin. */
node_err node__ledger_vv_all(node_txn *t, const proto_limits *lim, proto_vv_item **out, size_t *n);

/* The ids of the headers with a routing tag ('T' index), in id order. */
typedef bool (*ledger_id_cb)(const uint8_t id[32], void *ctx);
node_err node__ledger_tag_headers(node_txn *t, const uint8_t tag[32], ledger_id_cb fn, void *ctx);

/* The headers in their authors' log order (origin, then seq), from the place `from` (origin(32)
 * be64(seq); NULL: the first) on, while fn returns true; the bytes are borrowed for the call. */
typedef bool (*ledger_header_cb)(const uint8_t place[40], const void *bytes, size_t len, void *ctx);
node_err node__ledger_headers_from(
    node_txn *t, const uint8_t *from, ledger_header_cb fn, void *ctx);

/* Bodies. */
/* Is the body of the header at this place held? */
bool node__ledger_body_at(node_txn *t, const uint8_t place[40]);
node_err node__ledger_body_put(node_txn *t, const uint8_t id[32], const uint8_t *body, size_t len);
node_err node__ledger_body_get(node_txn *t, const uint8_t id[32], const void **body, size_t *len);
bool node__ledger_body_has(node_txn *t, const uint8_t id[32]);
/* Drop a body not decided yet (its header stays: the body can be asked for again). */
node_err node__ledger_body_del(node_txn *t, const uint8_t id[32]);

/* Keys. The record is copied out; wipe it (sodium_memzero via proto) when done. */
node_err node__ledger_key_put(node_txn *t, const ledger_key *k);
node_err node__ledger_key_get(node_txn *t, const uint8_t tag[32], ledger_key *out);
node_err node__ledger_key_for(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_key *out);
node_err node__ledger_case_own(
    node_txn *t, const proto_case_id *c, const proto_case_nonce *nonce, uint64_t now_ms);
/* Did this node open the case? *nonce (optional) gets its nonce. */
bool node__ledger_case_owned(node_txn *t, const proto_case_id *c, proto_case_nonce *nonce);
/* Owned here, or some scope of it readable here. */
bool node__ledger_case_known(node_txn *t, const proto_case_id *c);
/* Call fn(scope, tag) for each scope of the case readable here, in name order. */
typedef bool (*ledger_scope_cb)(const char *scope, const uint8_t tag[32], void *ctx);
node_err node__ledger_case_scopes(
    node_txn *t, const proto_case_id *c, ledger_scope_cb fn, void *ctx);

/* Every case known here: fn(case, scope, tag) for each readable scope, and fn(case, NULL,
 * NULL) for each case opened here. Cases come in id order, scopes in name order. */
typedef bool (*ledger_case_cb)(
    const proto_case_id *c, const char *scope, const uint8_t *tag, void *ctx);
node_err node__ledger_cases(node_txn *t, ledger_case_cb fn, void *ctx);
/* Every tag whose key is held here. */
typedef bool (*ledger_tag_cb)(const uint8_t tag[32], void *ctx);
node_err node__ledger_key_tags(node_txn *t, ledger_tag_cb fn, void *ctx);
/* Quarantined origins with the sequence number of their proof (0 when the stored proof does
 * not decode under lim). */
typedef bool (*ledger_quarantine_cb)(const uint8_t origin[32], uint64_t seq, void *ctx);
node_err node__ledger_quarantine_list(
    node_txn *t, const proto_limits *lim, ledger_quarantine_cb fn, void *ctx);

/* States. *out is a new scope (empty when none is stored yet). A scope has one state for all
 * its epochs: any of its tags names it (it is kept under the first epoch's tag). */
node_err node__ledger_state_get(
    node_txn *t, const uint8_t tag[32], const proto_limits *lim, crdt_scope **out);
/* state_put also re-indexes the scope in the find index (findidx.h), in the same transaction;
 * node__ledger_scope_destroy drops its terms. */
node_err node__ledger_state_put(
    node_txn *t, const uint8_t tag[32], const crdt_scope *s, uint64_t now_ms);
uint64_t node__ledger_last_change(node_txn *t, const uint8_t tag[32]);
node_err node__ledger_applied_put(node_txn *t, const uint8_t id[32], ledger_applied how);
/* A header this node sealed, its body and its mark as applied, in one step: the place of the
 * body and the mark is the header's own (origin, seq), so nothing is looked up again. */
node_err node__ledger_sealed_put(node_txn *t, const proto_header *h, const uint8_t *header,
    size_t hlen, const uint8_t *body, size_t blen);
int node__ledger_applied_get(node_txn *t, const uint8_t id[32]); /* 0 when not yet */
/* The same, by the header's place: origin(32) be64(seq). */
int node__ledger_applied_at(node_txn *t, const uint8_t place[40]);
/* A store of this layout, or a new one (marked as this layout): NODE_OK. A store written by a
 * pattod of protocol version 1: NODE_ECONFIG (it cannot be read; the node says so). */
node_err node__ledger_layout(node_txn *t);

/* The access log of (case, scope). entry_put stores entry en->number (the caller has checked
 * with entry_get that the number is not held: two entries under one number are an owner's
 * fork). entry_get reads one (NODE_ENOTFOUND). entries calls fn for each held entry in number
 * order (fn returns false to stop). */
node_err node__ledger_entry_put(
    node_txn *t, const proto_case_id *c, const char *scope, const ledger_entry *en);
node_err node__ledger_entry_get(
    node_txn *t, const proto_case_id *c, const char *scope, uint64_t number, ledger_entry *out);
typedef bool (*ledger_entry_cb)(const ledger_entry *en, void *ctx);
node_err node__ledger_entries(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_entry_cb fn, void *ctx);
/* The highest n such that entries 1..n are all held (0: none). */
uint64_t node__ledger_entries_contiguous(node_txn *t, const proto_case_id *c, const char *scope);
/* The keys held of (case, scope), every epoch (confirmed or not), ascending; fn returns false
 * to stop. The record is wiped after each call. */
typedef bool (*ledger_key_cb)(const ledger_key *k, void *ctx);
node_err node__ledger_scope_keys(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_key_cb fn, void *ctx);

/* Meta. */
node_err node__ledger_own_get(node_txn *t, uint64_t *seq, uint8_t last[32]);
node_err node__ledger_own_put(node_txn *t, uint64_t seq, const uint8_t last[32]);
node_err node__ledger_hlc_get(node_txn *t, crdt_hlc *out);
node_err node__ledger_hlc_put(node_txn *t, const crdt_hlc *h);
node_err node__ledger_quarantine_put(node_txn *t, const uint8_t origin[32], const uint8_t *a,
    size_t alen, const uint8_t *b, size_t blen);
/* The two headers of origin's proof (borrowed); NODE_ENOTFOUND when it has none. */
node_err node__ledger_quarantine_get(node_txn *t, const uint8_t origin[32], const uint8_t **a,
    size_t *alen, const uint8_t **b, size_t *blen);
bool node__ledger_quarantined(node_txn *t, const uint8_t origin[32]);
/* The seq of origin's proof of equivocation (its fork point), or 0 when it has none. */
uint64_t node__ledger_fork_seq(node_txn *t, const proto_limits *lim, const uint8_t origin[32]);
/* A (case, scope) whose access ended at this node by a narrowing of its org: kept after the
 * scope's data is destroyed (purged) or kept closed, so its operator sees what happened. */
typedef struct ledger_closed {
    uint64_t entry;   /* the narrowing's number */
    uint64_t at_ms;   /* the owner's clock on it */
    uint8_t reason;   /* proto_narrow_reason */
    uint8_t basis;    /* of the grant it ended: proto_basis */
    uint8_t access;   /* what is left: PROTO_ACCESS_NONE or _READ */
    bool purged;      /* keys, bodies and state destroyed here */
    uint32_t refused; /* this node's own writes beyond the cut, refused */
    uint64_t epoch;   /* the newest epoch held here when it closed: nothing under it is taken */
    char owner_org[PROTO_ORG_MAX + 1];
} ledger_closed;
node_err node__ledger_closed_put(
    node_txn *t, const proto_case_id *c, const char *scope, const ledger_closed *x);
node_err node__ledger_closed_get(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_closed *out);
node_err node__ledger_closed_del(node_txn *t, const proto_case_id *c, const char *scope);
/* Every closed scope of a case (c != NULL) or of all cases, in key order. */
typedef bool (*ledger_closed_cb)(
    const proto_case_id *c, const char *scope, const ledger_closed *x, void *ctx);
node_err node__ledger_closed_list(
    node_txn *t, const proto_case_id *c, ledger_closed_cb fn, void *ctx);

/* A note to a case's owner (proto_note): one this node wrote ('N', to note.owner_org), or one
 * it received as the owner ('W', from author_org). */
typedef enum ledger_note_state {
    LEDGER_NOTE_PENDING = 1, /* written: on its way; received: not applied yet */
    LEDGER_NOTE_APPLIED = 2, /* received: every scope it names is narrowed, or was already */
} ledger_note_state;
typedef struct ledger_note {
    uint8_t id[32]; /* the NOTE header */
    uint8_t state;  /* ledger_note_state */
    uint64_t at_ms; /* written, or received, by this node's clock */
    char author_org[PROTO_ORG_MAX + 1];
    proto_note note;
} ledger_note;
node_err node__ledger_note_put(node_txn *t, bool mine, const ledger_note *n);
node_err node__ledger_note_get(node_txn *t, bool mine, const uint8_t id[32], ledger_note *out);
/* Every note written here (mine) or received here, in id order; fn returns false to stop. */
typedef bool (*ledger_note_cb)(const ledger_note *n, void *ctx);
node_err node__ledger_notes(node_txn *t, bool mine, ledger_note_cb fn, void *ctx);

/* Index every scope state held when the store has no find mark yet (a store written before the
 * find index existed: findidx.h), then set the mark. Run at start. */
node_err node__ledger_find_build(node_txn *t, const proto_limits *lim);

/* The destruction primitive's store part: every key of (case, scope) (every epoch), the bodies
 * and applied marks of the headers under their tags, their states, and the scope's access
 * log. Headers stay (they are the network's log). The bodies of `own` (this node's origin, or
 * NULL) stay with their marks, ciphertext under keys gone from here: a write of this node's
 * that the owner counted in but has not received yet would otherwise be served by nobody. A
 * 'G' record per tag names its (case, scope) (node__ledger_purged_get), as the closed record
 * 'X' names the scope: the tag's keys are gone, so nothing else here does.
 * *bodies counts the bodies removed. LMDB frees the pages; they leave the file only when the
 * store is compacted. */
node_err node__ledger_scope_destroy(
    node_txn *t, const proto_case_id *c, const char *scope, const uint8_t *own, size_t *bodies);
/* The (case, scope) of a tag whose scope was purged here; NODE_ENOTFOUND when none. */
node_err node__ledger_purged_get(
    node_txn *t, const uint8_t tag[32], proto_case_id *c, char scope[PROTO_SCOPE_NAME_MAX + 1]);

/* Drop an access-log entry (its header turned out void). */
node_err node__ledger_entry_del(
    node_txn *t, const proto_case_id *c, const char *scope, uint64_t number);

#endif
