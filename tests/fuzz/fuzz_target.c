/*
 * fuzz_target.c - one libFuzzer target per proto/ decoder entry point. Built once per entry of
 * tests/proto/tdecode.c with FUZZ_TARGET naming it; the oracle (accepted input re-encodes to
 * itself, no forged frame opens) lives there, and ASan/UBSan catch the rest.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tdecode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const tdec *target;
    if (target == NULL) {
        if (proto_init() != PROTO_OK)
            abort();
        target = tdec_find(FUZZ_TARGET);
        if (target == NULL)
            abort();
    }
    (void)target->fn(data, size);
    return 0;
}
