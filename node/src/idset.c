/* idset: a hash map from 32-byte header ids to list indexes (see idset.h). May call: libc
 * only. */
#include "idset.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(const uint8_t id[32], size_t cap)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h)); /* ids are hashes: their first bytes are uniform */
    return (size_t)(h & (cap - 1));
}

size_t node__idset_get(const idset *s, const uint8_t id[32])
{
    if (s->cap == 0)
        return SIZE_MAX;
    for (size_t i = slot_of(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i].used)
            return SIZE_MAX;
        if (memcmp(s->slots[i].id, id, 32) == 0)
            return s->slots[i].index;
    }
}

static bool grow(idset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    idset_slot *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return false;
    for (size_t k = 0; k < s->cap; k++) {
        if (!s->slots[k].used)
            continue;
        size_t i = slot_of(s->slots[k].id, cap);
        while (slots[i].used)
            i = (i + 1) & (cap - 1);
        slots[i] = s->slots[k];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return true;
}

bool node__idset_put(idset *s, const uint8_t id[32], size_t index)
{
    if ((s->n + 1) * 4 > s->cap * 3 && !grow(s))
        return false;
    size_t i = slot_of(id, s->cap);
    while (s->slots[i].used && memcmp(s->slots[i].id, id, 32) != 0)
        i = (i + 1) & (s->cap - 1);
    if (!s->slots[i].used) {
        memcpy(s->slots[i].id, id, 32);
        s->slots[i].used = true;
        s->n++;
    }
    s->slots[i].index = index;
    return true;
}

void node__idset_del(idset *s, const uint8_t id[32])
{
    if (s->cap == 0)
        return;
    size_t i = slot_of(id, s->cap);
    while (s->slots[i].used && memcmp(s->slots[i].id, id, 32) != 0)
        i = (i + 1) & (s->cap - 1);
    if (!s->slots[i].used)
        return;
    s->slots[i].used = false;
    s->n--;
    /* Backward shift: move later entries of the probe run into the hole when their home
     * slot does not lie (cyclically) between the hole and their position. */
    size_t hole = i;
    for (size_t j = (i + 1) & (s->cap - 1); s->slots[j].used; j = (j + 1) & (s->cap - 1)) {
        size_t home = slot_of(s->slots[j].id, s->cap);
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        s->slots[hole] = s->slots[j];
        s->slots[j].used = false;
        hole = j;
    }
}

void node__idset_free(idset *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->n = 0;
}
