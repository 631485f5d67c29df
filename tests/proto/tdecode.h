/* tdecode.h - every decoder entry point of proto/ on arbitrary bytes (see tdecode.c). */
#ifndef TESTS_PROTO_TDECODE_H
#define TESTS_PROTO_TDECODE_H

#include "tutil.h"

typedef struct tdec {
    const char *name;
    proto_err (*fn)(const uint8_t *p, size_t n);
} tdec;

extern const tdec tdecoders[];
extern const size_t ntdecoders;
const tdec *tdec_find(const char *name);
/* The associated data of a delta header as PROTOCOL.md defines it (126 bytes). */
size_t tdec_spec_ad(const proto_header *h, uint8_t ad[126]);
/* The first bytes of an ACCESS_GRANT plaintext of the fixed key, up to its entry number (the
 * access_grant entry appends its input to them); returns their length. */
size_t tdec_access_grant_head(uint8_t out[32]);
void tdec_cleanup(void);

#endif
