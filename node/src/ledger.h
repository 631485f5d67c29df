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
 *   vv       origin(32)                 -> seq(8) id(32) (contiguous headers held, last id)
 *   bodies   origin(32) seq(8)          -> body bytes   (of the header at that place: 'I')
 *   keys     'K' tag(32)                -> key record (ledger_key)
 *            'C' case(16) scope         -> tag(32)       (newest epoch of a scope)
 *            'O' case(16)               -> created ms(8) (cases this node opened)
 *   state    'S' tag(32)                -> SCOPE message (the scope's state)
 *            'A' origin(32) seq(8)      -> status(1)     (body applied, or refused)
 *            'L' tag(32)                -> last change ms(8)
 *   consents 'G' tag(32) recipient(32)  -> grantor(32)   (from key-grant headers)
 *   manifest "current"                  -> signed manifest bytes
 *   meta     "own"                      -> last seq(8) last id(32)
 *            "layout"                   -> 2 (bodies and 'A' keyed by log place)
 *            "hlc"                      -> wall(8) logical(2)
 *            'Q' origin(32)             -> proof: len(4) header len(4) header
 */
#ifndef NODE_LEDGER_H
#define NODE_LEDGER_H

#include "internal.h"

#include <proto/proto.h>

#define LEDGER_ID_LEN 32

/* What is known of one (case, scope, epoch) key. */
typedef struct ledger_key {
    uint8_t tag[32];
    proto_case_id case_id;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    uint64_t epoch;
    uint8_t owner[32]; /* the case owner's origin: who may grant and write without a grant */
    uint8_t key[32];   /* secret */
} ledger_key;

typedef enum ledger_applied {
    LEDGER_APPLIED = 1, /* merged into the state */
    LEDGER_REFUSED = 2, /* verified header, body refused (write not authorised): never merged */
} ledger_applied;

void node__ledger_be64(uint8_t out[8], uint64_t v);
uint64_t node__ledger_get64(const uint8_t in[8]);

/* Headers and the per-origin version vector. */
node_err node__ledger_header_put(
    node_txn *t, const proto_header *h, const uint8_t *bytes, size_t len);
node_err node__ledger_header_get(
    node_txn *t, const uint8_t origin[32], uint64_t seq, const void **bytes, size_t *len);
node_err node__ledger_header_by_id(
    node_txn *t, const uint8_t id[32], const void **bytes, size_t *len);
uint64_t node__ledger_vv_get(node_txn *t, const uint8_t origin[32]);
/* The same, and the id of that last header (zeros when none). */
uint64_t node__ledger_vv_last(node_txn *t, const uint8_t origin[32], uint8_t id[32]);
/* The whole version vector; *out is malloc'd (free), sorted by origin. */
node_err node__ledger_vv_all(node_txn *t, crdt_vv_entry **out, size_t *n);

/* The ids of the headers with a routing tag ('T' index), in id order. */
typedef bool (*ledger_id_cb)(const uint8_t id[32], void *ctx);
node_err node__ledger_tag_headers(node_txn *t, const uint8_t tag[32], ledger_id_cb fn, void *ctx);

/* Bodies. */
node_err node__ledger_body_put(node_txn *t, const uint8_t id[32], const uint8_t *body, size_t len);
node_err node__ledger_body_get(node_txn *t, const uint8_t id[32], const void **body, size_t *len);
bool node__ledger_body_has(node_txn *t, const uint8_t id[32]);

/* Keys. The record is copied out; wipe it (sodium_memzero via proto) when done. */
node_err node__ledger_key_put(node_txn *t, const ledger_key *k);
node_err node__ledger_key_get(node_txn *t, const uint8_t tag[32], ledger_key *out);
node_err node__ledger_key_for(
    node_txn *t, const proto_case_id *c, const char *scope, ledger_key *out);
node_err node__ledger_case_own(node_txn *t, const proto_case_id *c, uint64_t now_ms);
bool node__ledger_case_owned(node_txn *t, const proto_case_id *c);
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
/* Records in a database. */
node_err node__ledger_count(node_txn *t, node_db db, const char *prefix, size_t *n);

/* States. *out is a new scope (empty when none is stored yet). */
node_err node__ledger_state_get(
    node_txn *t, const uint8_t tag[32], const proto_limits *lim, crdt_scope **out);
node_err node__ledger_state_put(
    node_txn *t, const uint8_t tag[32], const crdt_scope *s, uint64_t now_ms);
uint64_t node__ledger_last_change(node_txn *t, const uint8_t tag[32]);
node_err node__ledger_applied_put(node_txn *t, const uint8_t id[32], ledger_applied how);
int node__ledger_applied_get(node_txn *t, const uint8_t id[32]); /* 0 when not yet */
/* Move bodies and applied marks of a store written by an older pattod (keyed by id) to their
 * places in the log; *moved counts them. A no-op on a current store. */
node_err node__ledger_migrate(node_txn *t, size_t *moved);

/* Grants: who holds the key of a tag (as key-grant headers say). */
node_err node__ledger_grant_put(
    node_txn *t, const uint8_t tag[32], const uint8_t recipient[32], const uint8_t grantor[32]);
/* True when member is a recipient of tag, or its grantor (the owner) in some grant. */
bool node__ledger_holds(node_txn *t, const uint8_t tag[32], const uint8_t member[32]);

/* Meta. */
node_err node__ledger_own_get(node_txn *t, uint64_t *seq, uint8_t last[32]);
node_err node__ledger_own_put(node_txn *t, uint64_t seq, const uint8_t last[32]);
node_err node__ledger_hlc_get(node_txn *t, crdt_hlc *out);
node_err node__ledger_hlc_put(node_txn *t, const crdt_hlc *h);
node_err node__ledger_quarantine_put(node_txn *t, const uint8_t origin[32], const uint8_t *a,
    size_t alen, const uint8_t *b, size_t blen);
bool node__ledger_quarantined(node_txn *t, const uint8_t origin[32]);

#endif
