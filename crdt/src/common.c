#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const crdt__messages[] = {
#define CRDT__TEXT(name, text) text,
    CRDT_ERRORS(CRDT__TEXT)
#undef CRDT__TEXT
};

const char *crdt_strerror(crdt_err err)
{
    if ((unsigned)err >= (unsigned)CRDT_ERR_COUNT)
        return "unknown crdt error";
    return crdt__messages[err];
}

static void *crdt__libc_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static const crdt_mem crdt__default_mem = { crdt__libc_realloc, NULL };

const crdt_mem *crdt_mem_default(void)
{
    return &crdt__default_mem;
}

void *crdt__alloc(const crdt_mem *mem, size_t n)
{
    return crdt__realloc(mem, NULL, n);
}

void *crdt__realloc(const crdt_mem *mem, void *p, size_t n)
{
    if (mem == NULL)
        mem = &crdt__default_mem;
    if (n == 0)
        return NULL;
    return mem->realloc_fn(mem->ctx, p, n);
}

void crdt__free(const crdt_mem *mem, void *p)
{
    if (p == NULL)
        return;
    if (mem == NULL)
        mem = &crdt__default_mem;
    (void)mem->realloc_fn(mem->ctx, p, 0);
}

void *crdt__alloc_array(const crdt_mem *mem, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    return crdt__alloc(mem, count * size);
}

crdt_err crdt__reserve(const crdt_mem *mem, void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return CRDT_OK;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return CRDT_ELIMIT;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / size)
        return CRDT_ELIMIT;
    void *p = crdt__realloc(mem, *arr, ncap * size);
    if (p == NULL)
        return CRDT_ENOMEM;
    *arr = p;
    *cap = ncap;
    return CRDT_OK;
}

int crdt__bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}
