/*
 * tutil.h - helpers for the proto tests: seeded randomness (TEST_SEED), fixed-byte rngs for
 * the vectors, hex, fixed identities, and the vectors file.
 */
#ifndef TESTS_PROTO_TUTIL_H
#define TESTS_PROTO_TUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proto/proto.h>

/* Seed from TEST_SEED (default 1), printed once to stderr so a failure can be replayed. */
uint64_t tu_seed(void);
uint64_t tu_next(void); /* splitmix64 stream from the seed */
/* A proto_rng drawing from the seeded stream. */
const proto_rng *tu_rng(void);

/* A proto_rng that returns `n` fixed bytes in order (then zeros): the vectors' nonces/seeds. */
typedef struct tu_fixed {
    const uint8_t *p;
    size_t n, off;
} tu_fixed;
proto_rng tu_fixed_rng(tu_fixed *f);

/* Fill out[0..n) with base, base+1, ... (mod 256). */
void tu_pattern(uint8_t *out, size_t n, uint8_t base);

/* Identity from seed patterns base (signing) and base+0x20 (box). Aborts on failure. */
proto_identity *tu_identity(uint8_t base);

/* Hex: out has room for 2n+1. tu_unhex returns a malloc'd buffer or NULL if malformed. */
void tu_hex(const uint8_t *p, size_t n, char *out);
uint8_t *tu_unhex(const char *hex, size_t *n);

/* The vectors file: blocks "[name]" followed by "key = value" lines. */
typedef struct tu_kv {
    char *key, *value;
} tu_kv;
typedef struct tu_vector {
    char *name;
    tu_kv *kv;
    size_t nkv;
} tu_vector;
typedef struct tu_vectors {
    tu_vector *v;
    size_t n;
} tu_vectors;

bool tu_vectors_load(const char *path, tu_vectors *out);
void tu_vectors_free(tu_vectors *vs);
const char *tu_vector_get(const tu_vector *v, const char *key);
/* Append entries while generating. */
tu_vector *tu_vectors_add(tu_vectors *vs, const char *name);
void tu_vector_put(tu_vector *v, const char *key, const char *value);
void tu_vector_put_hex(tu_vector *v, const char *key, const uint8_t *p, size_t n);
void tu_vector_put_u64(tu_vector *v, const char *key, uint64_t x);
bool tu_vectors_write(const tu_vectors *vs, const char *path, const char *preamble);

/* A tiny msgpack writer for hand-made (also hostile) inputs. Grows as needed; aborts on OOM. */
typedef struct tb {
    uint8_t *p;
    size_t len, cap;
} tb;
void tb_raw(tb *b, const void *p, size_t n);
void tb_byte(tb *b, uint8_t c);
void tb_array(tb *b, uint32_t n);
void tb_uint(tb *b, uint64_t v);
void tb_bin(tb *b, const void *p, size_t n);
void tb_str(tb *b, const char *s);
void tb_bool(tb *b, bool v);
void tb_free(tb *b);
#endif
