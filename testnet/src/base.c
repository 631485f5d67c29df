/* base.c - what every part of patto-testnet shares that touches nothing of the world: the
 * error and exit tables, the one number parser, the bounded vector, splitmix64. No I/O but
 * tn_print_exits, so tests can link it alone. */
#include "tn.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const messages[] = {
#define TN__ERR_TEXT(name, exit, text) text,
    TN_ERRORS(TN__ERR_TEXT)
#undef TN__ERR_TEXT
};

static const tn_exit exits[] = {
#define TN__ERR_EXIT(name, exit, text) exit,
    TN_ERRORS(TN__ERR_EXIT)
#undef TN__ERR_EXIT
};

const char *tn_strerror(tn_err err)
{
    if ((unsigned)err >= (unsigned)TN_ERR_COUNT)
        return "unknown testnet error";
    return messages[err];
}

tn_exit tn_exit_code(tn_err err)
{
    if ((unsigned)err >= (unsigned)TN_ERR_COUNT)
        return TN_EXIT_INTERNAL;
    return exits[err];
}

void tn_print_exits(FILE *file, const char *indent)
{
#define TN__EXIT_LINE(name, code, word, text) fprintf(file, "%s%d  %s\n", indent, code, text);
    TN_EXITS(TN__EXIT_LINE)
#undef TN__EXIT_LINE
}

tn_err tn_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    /* strtoull alone takes leading space, a sign (and negates: "-1" is 2^64-1) and stops at
     * the first non-digit ("5x" is 5): only digits get to it, and it must use them all. */
    if (text == NULL || text[0] < '0' || text[0] > '9')
        return TN_EUSAGE;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == NULL || *end != '\0' || v > UINT64_MAX || v < min || v > max)
        return TN_EUSAGE;
    *out = (uint64_t)v;
    return TN_OK;
}

void tn_vec_init(tn_vec *v, size_t size, size_t max)
{
    memset(v, 0, sizeof *v);
    v->size = size;
    v->max = max;
}

tn_err tn_vec_reserve(tn_vec *v, size_t more)
{
    assert(v->size > 0 && v->max <= SIZE_MAX / v->size);
    if (more > v->max - v->n)
        return TN_EFULL;
    size_t need = v->n + more;
    if (need <= v->cap)
        return TN_OK;
    size_t cap = v->cap > 0 ? v->cap : 16;
    while (cap < need)
        cap = cap > v->max / 2 ? v->max : cap * 2;
    if (cap > v->max)
        cap = v->max;
    void *items = realloc(v->items, cap * v->size);
    if (items == NULL)
        return TN_ENOMEM;
    v->items = items;
    v->cap = cap;
    return TN_OK;
}

void *tn_vec_push(tn_vec *v, tn_err *err)
{
    tn_err e = tn_vec_reserve(v, 1);
    if (err != NULL)
        *err = e;
    if (e != TN_OK)
        return NULL;
    char *item = (char *)v->items + v->n * v->size;
    memset(item, 0, v->size);
    v->n++;
    return item;
}

tn_err tn_vec_room(tn_vec *v, size_t chunk, char **at, size_t *len)
{
    assert(v->size == 1 && v->max > 0 && chunk > 0);
    size_t avail = v->max - 1 - v->n; /* one byte stays for the NUL */
    if (avail == 0)
        return TN_EFULL;
    size_t want = chunk < avail ? chunk : avail;
    tn_err err = tn_vec_reserve(v, want + 1);
    if (err != TN_OK)
        return err;
    *at = (char *)v->items + v->n;
    *len = want;
    return TN_OK;
}

void tn_vec_fini(tn_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->n = v->cap = 0;
}

uint64_t tn_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tn_splitmix64(uint64_t *state)
{
    return tn_mix64(*state += 0x9e3779b97f4a7c15ull);
}
