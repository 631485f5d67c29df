/* tvgen.h - the generator of proto/vectors.txt (see tvgen.c). */
#ifndef TESTS_PROTO_TVGEN_H
#define TESTS_PROTO_TVGEN_H

#include "tutil.h"

void tv_generate(tu_vectors *vs);
/* A membership callback that admits everyone (for the handshake vector). */
bool tv_member_any(void *ctx, const uint8_t origin[PROTO_ORIGIN_LEN]);

#endif
