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
/* The associated data of a delta header's body sealed under the key of (case, scope, epoch), as
 * PROTOCOL.md defines it: 151 bytes and the scope name's; returns its length. */
#define TDEC_AD_MAX (151 + PROTO_SCOPE_NAME_MAX)
size_t tdec_spec_ad(const proto_header *h, const proto_case_id *cid, const char *scope,
    uint64_t epoch, uint8_t ad[TDEC_AD_MAX]);
/* The first bytes of an ACCESS_GRANT plaintext of the fixed key, up to its entry number (the
 * access_grant entry appends its input to them); returns their length. */
size_t tdec_access_grant_head(uint8_t out[32]);
void tdec_cleanup(void);

#endif
