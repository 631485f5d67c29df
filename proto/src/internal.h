/*
 * internal.h - shared by proto/src only. Double-prefixed names (proto__) are internal.
 */
#ifndef PROTO_INTERNAL_H
#define PROTO_INTERNAL_H

#include "proto/proto.h"

#include <msgpack.h>

/* ---------------------------------------------------------------------------------------- */
/* crypto.c: the only file that calls libsodium                                              */

#define PROTO__BOX_OVERHEAD 48 /* crypto_box_SEALBYTES: ephemeral key and MAC of one sealed box */
#define PROTO__AEAD_ABYTES 16
#define PROTO__KX_LEN 32

struct proto__id_secret {
    uint8_t sign_seed[PROTO_SEED_LEN];
    uint8_t sign_sk[64];
    uint8_t box_seed[PROTO_SEED_LEN];
    uint8_t box_sk[32];
};

struct proto_identity {
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint8_t box_pk[PROTO_BOX_PK_LEN];
    struct proto__id_secret *sec; /* sodium_malloc */
};

struct proto__key_secret {
    uint8_t key[PROTO_KEY_LEN];
    uint8_t tag_key[PROTO_KEY_LEN];
    uint8_t body_key[PROTO_KEY_LEN];
};

struct proto_scope_key {
    proto_case_id case_id;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    uint64_t epoch;
    uint8_t tag[PROTO_TAG_LEN];
    struct proto__key_secret *sec; /* sodium_malloc */
};

void proto__random(const proto_rng *rng, uint8_t *buf, size_t n);
/* Zeroed secret memory, or NULL. proto__secret_free wipes and frees (NULL is fine). */
void *proto__secret_alloc(size_t n);
void proto__secret_free(void *p);
void proto__wipe(void *p, size_t n);

/* BLAKE2b with an optional key over the concatenation of parts. outlen 16..64. */
void proto__hash(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
    const proto_bytes *parts, size_t nparts);
void proto__sign(
    const proto_identity *id, const uint8_t *m, size_t mlen, uint8_t sig[PROTO_SIG_LEN]);
bool proto__verify(const uint8_t pk[PROTO_ORIGIN_LEN], const uint8_t *m, size_t mlen,
    const uint8_t sig[PROTO_SIG_LEN]);
/* XChaCha20-Poly1305-IETF: c has room for mlen + 16. */
void proto__aead_seal(uint8_t *c, const uint8_t *m, size_t mlen, const uint8_t *ad, size_t adlen,
    const uint8_t nonce[PROTO_NONCE_LEN], const uint8_t key[PROTO_KEY_LEN]);
bool proto__aead_open(uint8_t *m, const uint8_t *c, size_t clen, const uint8_t *ad, size_t adlen,
    const uint8_t nonce[PROTO_NONCE_LEN], const uint8_t key[PROTO_KEY_LEN]);
/* sodium_pad / sodium_unpad. */
bool proto__pad(uint8_t *buf, size_t unpadded, size_t block, size_t max, size_t *padded);
bool proto__unpad(const uint8_t *buf, size_t padded, size_t block, size_t *unpadded);
/* crypto_box_seal with the ephemeral key pair derived from eph_seed (so vectors are fixed);
 * c has room for mlen + 48. False for a recipient key of low order. */
bool proto__seal(uint8_t *c, const uint8_t *m, size_t mlen, const uint8_t rpk[PROTO_BOX_PK_LEN],
    const uint8_t eph_seed[PROTO_SEED_LEN]);
/* crypto_box_seal_open with me's box key pair; m has room for clen - 48. */
bool proto__seal_open(uint8_t *m, const uint8_t *c, size_t clen, const proto_identity *me);
/* X25519 of me's box secret key and other's public key (crypto_scalarmult); false (ss wiped)
 * when the result is all zero (other is a low-order point). */
bool proto__box_shared(
    const proto_identity *me, const uint8_t other[PROTO_BOX_PK_LEN], uint8_t ss[PROTO_KEY_LEN]);
/* Key exchange (crypto_kx) from a seed. */
void proto__kx_keypair(
    const uint8_t seed[PROTO_SEED_LEN], uint8_t pk[PROTO__KX_LEN], uint8_t sk[PROTO__KX_LEN]);
bool proto__kx_session(bool client, const uint8_t pk[PROTO__KX_LEN],
    const uint8_t sk[PROTO__KX_LEN], const uint8_t peer[PROTO__KX_LEN], uint8_t rx[PROTO_KEY_LEN],
    uint8_t tx[PROTO_KEY_LEN]);
int proto__memcmp_ct(const uint8_t *a, const uint8_t *b, size_t n); /* 0 when equal */
bool proto__is_zero(const uint8_t *p, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* scan.c: the pre-scan                                                                      */

/* Validate msg as exactly one canonical msgpack item within limits (PROTOCOL.md, "Decoding
 * rules"). On failure diag (optional) gets the offset plus base and a reason. */
proto_err proto__scan(
    const uint8_t *msg, size_t len, const proto_limits *lim, size_t base, proto_diag *diag);
void proto__limits(const proto_limits *in, proto_limits *out);

/* ---------------------------------------------------------------------------------------- */
/* wire.c: writing and reading                                                               */

/* A writer runs twice: first counting (p == NULL), then into an exact-size buffer. */
typedef struct proto__w {
    msgpack_packer pk;
    uint8_t *p;
    size_t cap, len;
} proto__w;

typedef void (*proto__enc_fn)(proto__w *w, const void *arg);
/* Encode with fn into a new exactly-sized buffer. Errors: PROTO_ENOMEM. */
proto_err proto__encode(proto__enc_fn fn, const void *arg, proto_buf *out);
/* Array header plus version and kind; nfields counts version and kind. */
void proto__w_head(proto__w *w, size_t nfields, unsigned kind);
void proto__w_array(proto__w *w, size_t n);
void proto__w_uint(proto__w *w, uint64_t v);
void proto__w_bool(proto__w *w, bool v);
void proto__w_bin(proto__w *w, const void *p, size_t n);
void proto__w_str(proto__w *w, const void *p, size_t n);
/* n bytes that are already one or more canonical values, copied as they are. */
void proto__w_raw(proto__w *w, const void *p, size_t n);

typedef struct proto__d {
    msgpack_unpacked u;
    const uint8_t *msg;
    size_t len;
    size_t base; /* offset of msg inside the buffer the caller sees */
    const msgpack_object *bad;
    const char *reason;
    proto_err err;
    bool open;
} proto__d;

/*
 * Pre-scan msg, unpack it, check it is an array of exactly nfields items starting with
 * PROTO_VERSION and kind; *fields points at its items. On failure fills diag and returns the
 * error; d needs no close then. On success call proto__d_close (or proto__d_fail).
 */
proto_err proto__d_open(proto__d *d, const uint8_t *msg, size_t len, const proto_limits *lim,
    size_t base, unsigned kind, size_t nfields, const msgpack_object **fields, proto_diag *diag);
void proto__d_close(proto__d *d);
/* Close d and report the recorded failure (offset of the bad item) in diag. */
proto_err proto__d_fail(proto__d *d, proto_diag *diag);
/* Record a failure at o (NULL: the whole message); returns false for chaining. */
bool proto__d_err(proto__d *d, const msgpack_object *o, proto_err err, const char *reason);

bool proto__d_uint(
    proto__d *d, const msgpack_object *o, uint64_t max, uint64_t *v, const char *what);
bool proto__d_bool(proto__d *d, const msgpack_object *o, bool *v, const char *what);
bool proto__d_fixed(proto__d *d, const msgpack_object *o, size_t n, uint8_t *out, const char *what);
bool proto__d_bin(
    proto__d *d, const msgpack_object *o, size_t max, proto_bytes *out, const char *what);
bool proto__d_str(
    proto__d *d, const msgpack_object *o, size_t max, proto_bytes *out, const char *what);
bool proto__d_arr(proto__d *d, const msgpack_object *o, size_t max, const msgpack_object **items,
    size_t *n, const char *what);
bool proto__d_tuple(
    proto__d *d, const msgpack_object *o, size_t n, const msgpack_object **items, const char *what);

/* Alphabets (PROTOCOL.md, "Names"). */
bool proto__valid_org(const uint8_t *p, size_t n);
bool proto__valid_scope(const uint8_t *p, size_t n);
bool proto__valid_command(const uint8_t *p, size_t n);
bool proto__valid_text(const uint8_t *p, size_t n); /* no NUL, <= PROTO_TEXT_MAX */
/* Text for people (proto_text_valid, at most PROTO_TEXT_MAX bytes); _or_empty also takes "". */
bool proto__text(const uint8_t *p, size_t n);
bool proto__text_or_empty(const uint8_t *p, size_t n);
/* A Unix user name as a node saw it: empty, or 1..64 bytes of printable ASCII without space
 * (0x21..0x7e). */
#define PROTO__UNIX_USER_MAX 64
bool proto__valid_unix_user(const uint8_t *p, size_t n);

/* A macro's value as a string literal (PROTO__STR(PROTO_VERSION) is "4"). */
#define PROTO__STR_(x) #x
#define PROTO__STR(x) PROTO__STR_(x)

/* Allocation helpers (malloc with overflow check). */
void *proto__calloc(size_t n, size_t size);

/* ---------------------------------------------------------------------------------------- */
/* envelope.c helpers shared with grant.c and messages.c                                     */

void proto__be64(uint8_t out[8], uint64_t v);
/* The seal info a header needs: seq >= 1, wall < 2^48, prev zero when seq is 1. */
bool proto__seal_info_ok(const proto_seal_info *info);
/* The header fields an author fixes before its body is sealed: kind, origin, seq, prev, clock,
 * and the tag (of the key; random for a note) (the body's length and hash come after). */
void proto__header_fixed(proto_header *h, uint8_t kind, const proto_identity *author,
    const proto_seal_info *info, const uint8_t tag[PROTO_TAG_LEN]);
/* Decode the header fields a compact header of a HEADERS batch carries (kind, hlc wall, hlc
 * logical, tag, hints, body length, body hash; f in that order) into out; false with the failure
 * recorded in d. The value rules are proto_header_encode's and proto_header_decode's. */
bool proto__header_rest(proto__d *d, const msgpack_object *const f[7], proto_header *out);
/* Sign h's fields with id and write the HEADER message; sets h->sig and h->id. */
proto_err proto__header_sign(proto_header *h, const proto_identity *id, proto_buf *out);
/* Version vectors [[origin bin32, max]...], sorted by origin, unique, max >= 1. */
void proto__w_vv(proto__w *w, const crdt_vv_entry *vv, size_t n);
bool proto__vv_ok(const crdt_vv_entry *vv, size_t n);
bool proto__decode_vv(proto__d *d, const msgpack_object *o, crdt_vv_entry **out, size_t *n);
/* Signed messages [2, kind, fields bin, sig bin64] (header, receipt, manifest). */
proto_err proto__encode_signed(
    unsigned kind, proto_bytes fields, const uint8_t *sig, proto_buf *out);
proto_err proto__decode_signed(const uint8_t *msg, size_t len, const proto_limits *lim,
    unsigned kind, proto_bytes *fields, uint8_t sig[PROTO_SIG_LEN], proto_diag *diag);

/* ---------------------------------------------------------------------------------------- */
/* grant.c                                                                                   */

/* The longest GRANT_PLAIN (PROTOCOL.md, "Key grants"): array head, version, kind, case id and
 * nonce (bin 16), owner org (str of 32), 64 scope items (array16; each a fixarray, a scope str
 * of 32 and an array16 of keys), 256 keys [epoch uint64, key bin 32]; and the longest padded
 * one. A grant body's boxes are 48 + 256k bytes, 1 <= k <= PROTO__GRANT_BLOCKS_MAX. */
#define PROTO__GRANT_PLAIN_MAX                                                                     \
    (3 + 18 + 18 + 34 + 3 + PROTO_GRANT_SCOPES_MAX * (1 + 34 + 3) + PROTO_GRANT_EPOCHS_MAX * 44)
#define PROTO__GRANT_BLOCKS_MAX (PROTO__GRANT_PLAIN_MAX / PROTO_GRANT_PAD_BLOCK + 1)
/* The length of a GRANT_BODY whose boxes hold k blocks: [2, 4, [4 x bin16 of 48 + 256k]]. */
#define PROTO__GRANT_BODY_LEN(k) (4 + 4 * (3 + PROTO__BOX_OVERHEAD + PROTO_GRANT_PAD_BLOCK * (k)))

#endif /* PROTO_INTERNAL_H */
