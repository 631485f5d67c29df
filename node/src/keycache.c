/*
 * Scope keys kept open between deltas. Opening a key (proto_scope_key_from_bytes) puts it in
 * guarded sodium memory: mmap, mprotect and mlock, and the same again to free it. Done for
 * every delta ingested or written, that was a fifth of a node's ingest time. The cache is
 * direct-mapped by the routing tag (tags are uniform hash outputs), so a lookup is one slot
 * and a collision closes the key that was there. Keys stay in sodium memory while cached;
 * the LMDB copy they come from is the same secret at rest, so nothing new is exposed.
 * Beside them, the hint key of each grantor box key (PROTOCOL.md, "Hints"): finding this node's
 * slot in a key grant is then one hash instead of an X25519 (a new node takes a grant per case
 * and scope it reads). May call: proto.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define KEYCACHE_SLOTS 512 /* at most 512 locked pages, 2 MiB, well under RLIMIT_MEMLOCK */

struct node_keyslot {
    uint8_t tag[32];
    proto_scope_key *key; /* NULL: empty */
};

node_err node__keycache_get(node_engine *e, const ledger_key *k, proto_scope_key **out)
{
    if (e->keys == NULL && (e->keys = calloc(KEYCACHE_SLOTS, sizeof(*e->keys))) == NULL)
        return NODE_ENOMEM;
    uint64_t h = 0;
    memcpy(&h, k->tag, sizeof(h));
    node_keyslot *s = &e->keys[h % KEYCACHE_SLOTS];
    if (s->key != NULL && memcmp(s->tag, k->tag, 32) == 0) {
        *out = s->key;
        return NODE_OK;
    }
    proto_scope_key *sk = NULL;
    proto_err perr = proto_scope_key_from_bytes(&k->case_id, k->scope, k->epoch, k->key, &sk);
    if (perr != PROTO_OK)
        return perr == PROTO_ENOMEM ? NODE_ENOMEM : NODE_ECORRUPT;
    proto_scope_key_free(s->key);
    s->key = sk;
    memcpy(s->tag, k->tag, 32);
    *out = sk;
    return NODE_OK;
}

node_err node__keycache_put(node_engine *e, const uint8_t tag[32], proto_scope_key *sk)
{
    if (e->keys == NULL && (e->keys = calloc(KEYCACHE_SLOTS, sizeof(*e->keys))) == NULL) {
        proto_scope_key_free(sk);
        return NODE_ENOMEM;
    }
    uint64_t h = 0;
    memcpy(&h, tag, sizeof(h));
    node_keyslot *s = &e->keys[h % KEYCACHE_SLOTS];
    proto_scope_key_free(s->key);
    s->key = sk;
    memcpy(s->tag, tag, 32);
    return NODE_OK;
}

void node__keycache_drop(node_engine *e, const uint8_t tag[32])
{
    if (e->keys == NULL)
        return;
    uint64_t h = 0;
    memcpy(&h, tag, sizeof(h));
    node_keyslot *s = &e->keys[h % KEYCACHE_SLOTS];
    if (s->key != NULL && memcmp(s->tag, tag, 32) == 0) {
        proto_scope_key_free(s->key); /* wipes */
        s->key = NULL;
    }
}

void node__keycache_free(node_engine *e)
{
    if (e->keys == NULL)
        return;
    for (size_t i = 0; i < KEYCACHE_SLOTS; i++)
        proto_scope_key_free(e->keys[i].key); /* wipes */
    free(e->keys);
    e->keys = NULL;
}

/* Hint keys by grantor box key: at most HINTKEYS_MAX (one per member key of the manifests seen;
 * beyond, the oldest is replaced). Each is secret, wiped when replaced or freed. */
#define HINTKEYS_MAX 1024

struct node_hintkey {
    uint8_t box_pk[32];
    uint8_t k[32];
    bool ok; /* false: a box key of low order (no slot for anyone) */
};

int node__grant_slot(node_engine *e, const proto_header *h, const uint8_t grantor_box_pk[32])
{
    node_hintkey *hk = NULL;
    for (size_t i = 0; i < e->nhintkeys && hk == NULL; i++)
        if (memcmp(e->hintkeys[i].box_pk, grantor_box_pk, 32) == 0)
            hk = &e->hintkeys[i];
    if (hk == NULL) {
        if (e->hintkeys == NULL
            && (e->hintkeys = calloc(HINTKEYS_MAX, sizeof(*e->hintkeys))) == NULL)
            return proto_key_grant_slot(h, e->me, grantor_box_pk);
        hk = &e->hintkeys[e->nhintkeys < HINTKEYS_MAX ? e->nhintkeys++
                                                      : e->hintkey_next++ % HINTKEYS_MAX];
        proto_wipe(hk, sizeof(*hk));
        memcpy(hk->box_pk, grantor_box_pk, 32);
        hk->ok = proto_hint_key(e->me, grantor_box_pk, hk->k);
    }
    return hk->ok ? proto_key_grant_slot_k(h, hk->k) : -1;
}

void node__hintkeys_free(node_engine *e)
{
    if (e->hintkeys != NULL)
        proto_wipe(e->hintkeys, HINTKEYS_MAX * sizeof(*e->hintkeys));
    free(e->hintkeys);
    e->hintkeys = NULL;
    e->nhintkeys = 0;
}
