#define _POSIX_C_SOURCE 200809L /* getline */
#include "tutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_state;
static bool g_init;

uint64_t tu_seed(void)
{
    static uint64_t seed;
    if (!g_init) {
        const char *s = getenv("TEST_SEED");
        seed = s != NULL && *s != '\0' ? strtoull(s, NULL, 0) : 1;
        g_state = seed;
        g_init = true;
        fprintf(stderr, "TEST_SEED=%" PRIu64 " (set TEST_SEED to replay)\n", seed);
    }
    return seed;
}

uint64_t tu_next(void)
{
    tu_seed();
    uint64_t z = (g_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void seeded_fill(void *ctx, uint8_t *buf, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)tu_next();
}

const proto_rng *tu_rng(void)
{
    static const proto_rng r = { seeded_fill, NULL };
    return &r;
}

static void fixed_fill(void *ctx, uint8_t *buf, size_t n)
{
    tu_fixed *f = ctx;
    for (size_t i = 0; i < n; i++)
        buf[i] = f->off < f->n ? f->p[f->off++] : 0;
}

proto_rng tu_fixed_rng(tu_fixed *f)
{
    return (proto_rng) { fixed_fill, f };
}

void tu_pattern(uint8_t *out, size_t n, uint8_t base)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(base + i);
}

proto_identity *tu_identity(uint8_t base)
{
    uint8_t s[32], b[32];
    tu_pattern(s, 32, base);
    tu_pattern(b, 32, (uint8_t)(base + 0x20));
    proto_identity *id = NULL;
    if (proto_init() != PROTO_OK || proto_identity_from_seeds(s, b, &id) != PROTO_OK)
        abort();
    return id;
}

void tu_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int nib(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

uint8_t *tu_unhex(const char *hex, size_t *n)
{
    size_t l = strlen(hex);
    if (l % 2 != 0)
        return NULL;
    uint8_t *p = malloc(l / 2 + 1);
    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < l / 2; i++) {
        int a = nib(hex[2 * i]), b = nib(hex[2 * i + 1]);
        if (a < 0 || b < 0) {
            free(p);
            return NULL;
        }
        p[i] = (uint8_t)(a << 4 | b);
    }
    *n = l / 2;
    return p;
}

static char *dup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        abort();
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

tu_vector *tu_vectors_add(tu_vectors *vs, const char *name)
{
    tu_vector *v = realloc(vs->v, (vs->n + 1) * sizeof *v);
    if (v == NULL)
        abort();
    vs->v = v;
    v = &vs->v[vs->n++];
    v->name = dup(name, strlen(name));
    v->kv = NULL;
    v->nkv = 0;
    return v;
}

static void put_n(tu_vector *v, const char *key, const char *value, size_t vlen)
{
    tu_kv *kv = realloc(v->kv, (v->nkv + 1) * sizeof *kv);
    if (kv == NULL)
        abort();
    v->kv = kv;
    v->kv[v->nkv].key = dup(key, strlen(key));
    v->kv[v->nkv].value = dup(value, vlen);
    v->nkv++;
}

void tu_vector_put(tu_vector *v, const char *key, const char *value)
{
    put_n(v, key, value, strlen(value));
}

void tu_vector_put_hex(tu_vector *v, const char *key, const uint8_t *p, size_t n)
{
    char *h = malloc(2 * n + 1);
    if (h == NULL)
        abort();
    tu_hex(p, n, h);
    tu_vector_put(v, key, h);
    free(h);
}

void tu_vector_put_u64(tu_vector *v, const char *key, uint64_t x)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, x);
    tu_vector_put(v, key, b);
}

const char *tu_vector_get(const tu_vector *v, const char *key)
{
    for (size_t i = 0; i < v->nkv; i++)
        if (strcmp(v->kv[i].key, key) == 0)
            return v->kv[i].value;
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

bool tu_vectors_load(const char *path, tu_vectors *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char *line = NULL;
    size_t cap = 0;
    tu_vector *cur = NULL;
    bool ok = true;
    while (getline(&line, &cap, f) >= 0) {
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e == NULL) {
                ok = false;
                break;
            }
            *e = '\0';
            cur = tu_vectors_add(out, s + 1);
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL || cur == NULL) {
            ok = false;
            break;
        }
        *eq = '\0';
        char *k = trim(s), *val = trim(eq + 1);
        tu_vector_put(cur, k, val);
    }
    free(line);
    fclose(f);
    if (!ok)
        tu_vectors_free(out);
    return ok;
}

void tu_vectors_free(tu_vectors *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        for (size_t j = 0; j < vs->v[i].nkv; j++) {
            free(vs->v[i].kv[j].key);
            free(vs->v[i].kv[j].value);
        }
        free(vs->v[i].kv);
        free(vs->v[i].name);
    }
    free(vs->v);
    vs->v = NULL;
    vs->n = 0;
}

bool tu_vectors_write(const tu_vectors *vs, const char *path, const char *preamble)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    fputs(preamble, f);
    for (size_t i = 0; i < vs->n; i++) {
        fprintf(f, "\n[%s]\n", vs->v[i].name);
        for (size_t j = 0; j < vs->v[i].nkv; j++)
            fprintf(f, "%s = %s\n", vs->v[i].kv[j].key, vs->v[i].kv[j].value);
    }
    return fclose(f) == 0;
}

void tb_raw(tb *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (q == NULL)
            abort();
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void tb_byte(tb *b, uint8_t c)
{
    tb_raw(b, &c, 1);
}

static void be_n(tb *b, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        tb_byte(b, (uint8_t)(v >> (8 * i)));
}

void tb_array(tb *b, uint32_t n)
{
    if (n < 16) {
        tb_byte(b, (uint8_t)(0x90 | n));
    } else if (n < 65536) {
        tb_byte(b, 0xdc);
        be_n(b, n, 2);
    } else {
        tb_byte(b, 0xdd);
        be_n(b, n, 4);
    }
}

void tb_uint(tb *b, uint64_t v)
{
    if (v < 128) {
        tb_byte(b, (uint8_t)v);
    } else if (v < 256) {
        tb_byte(b, 0xcc);
        be_n(b, v, 1);
    } else if (v < 65536) {
        tb_byte(b, 0xcd);
        be_n(b, v, 2);
    } else if (v <= UINT32_MAX) {
        tb_byte(b, 0xce);
        be_n(b, v, 4);
    } else {
        tb_byte(b, 0xcf);
        be_n(b, v, 8);
    }
}

void tb_bin(tb *b, const void *p, size_t n)
{
    if (n < 256) {
        tb_byte(b, 0xc4);
        be_n(b, n, 1);
    } else if (n < 65536) {
        tb_byte(b, 0xc5);
        be_n(b, n, 2);
    } else {
        tb_byte(b, 0xc6);
        be_n(b, n, 4);
    }
    tb_raw(b, p, n);
}

void tb_str(tb *b, const char *s)
{
    size_t n = strlen(s);
    if (n < 32) {
        tb_byte(b, (uint8_t)(0xa0 | n));
    } else if (n < 256) {
        tb_byte(b, 0xd9);
        be_n(b, n, 1);
    } else {
        tb_byte(b, 0xda);
        be_n(b, n, 2);
    }
    tb_raw(b, s, n);
}

void tb_bool(tb *b, bool v)
{
    tb_byte(b, v ? 0xc3 : 0xc2);
}

void tb_free(tb *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
