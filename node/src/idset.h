/*
 * idset: a hash map from 32-byte ids (header ids: already uniformly random BLAKE2b digests)
 * to array indexes, with linear probing and backward-shift deletion. It indexes the node's
 * in-memory want and wait lists, which can hold hundreds of thousands of ids during a sync.
 */
#ifndef NODE_IDSET_H
#define NODE_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idset_slot {
    uint8_t id[32];
    size_t index;
    bool used;
} idset_slot;

typedef struct idset {
    idset_slot *slots;
    size_t cap, n; /* cap is 0 or a power of two */
} idset;

/* The index stored for id, or SIZE_MAX. */
size_t node__idset_get(const idset *s, const uint8_t id[32]);
/* Insert or update. false when out of memory (the set is unchanged). */
bool node__idset_put(idset *s, const uint8_t id[32], size_t index);
void node__idset_del(idset *s, const uint8_t id[32]);
void node__idset_free(idset *s);

#endif
