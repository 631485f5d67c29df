/*
 * Scope keys kept open between deltas. Opening a key (proto_scope_key_from_bytes) puts it in
 * guarded sodium memory: mmap, mprotect and mlock, and the same again to free it. Done for
 * every delta ingested or written, that was a fifth of a node's ingest time. The cache is
 * direct-mapped by the routing tag (tags are uniform hash outputs), so a lookup is one slot
 * and a collision closes the key that was there. Keys stay in sodium memory while cached;
 * the LMDB copy they come from is the same secret at rest, so nothing new is exposed. May call:
 * proto.
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

void node__keycache_free(node_engine *e)
{
    if (e->keys == NULL)
        return;
    for (size_t i = 0; i < KEYCACHE_SLOTS; i++)
        proto_scope_key_free(e->keys[i].key); /* wipes */
    free(e->keys);
    e->keys = NULL;
}
