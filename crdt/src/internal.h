/* Internal helpers shared by the files of crdt/src. Not part of the public interface. */
#ifndef CRDT_INTERNAL_H
#define CRDT_INTERNAL_H

#include "crdt/crdt.h"

/* Allocate n bytes (n > 0) from mem; NULL on failure. */
void *crdt__alloc(const crdt_mem *mem, size_t n);
/* Resize p to n bytes (n > 0); NULL on failure, p untouched. */
void *crdt__realloc(const crdt_mem *mem, void *p, size_t n);
void crdt__free(const crdt_mem *mem, void *p);
/* Allocate count * size bytes, checking the multiplication; NULL on overflow or failure. */
void *crdt__alloc_array(const crdt_mem *mem, size_t count, size_t size);
/* Make room for `need` elements of `size` bytes in *arr (capacity *cap), growing
 * geometrically. CRDT_ENOMEM or CRDT_ELIMIT on failure, *arr untouched. */
crdt_err crdt__reserve(const crdt_mem *mem, void **arr, size_t *cap, size_t need, size_t size);

/* Add every dot (origin, 1..max) to cc. CRDT_ENOMEM leaves cc unchanged. */
crdt_err crdt__cc_add_upto(crdt_cc *cc, const crdt_origin *origin, uint64_t max);

/* Lexicographic byte order, a shorter string first on a common prefix. */
int crdt__bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
