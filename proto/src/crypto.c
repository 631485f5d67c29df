/*
 * crypto.c - the one file of proto/ that calls libsodium (ARCHITECTURE.md, house rule 1):
 * identities, scope keys, hashing, signatures, AEAD, padding, sealed boxes and key exchange.
 */
#include "internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

_Static_assert(crypto_sign_PUBLICKEYBYTES == PROTO_ORIGIN_LEN, "origin is an Ed25519 key");
_Static_assert(crypto_sign_BYTES == PROTO_SIG_LEN, "Ed25519 signature size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == PROTO_NONCE_LEN, "nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == PROTO__AEAD_ABYTES, "tag size");
_Static_assert(crypto_box_SEALBYTES == PROTO__BOX_OVERHEAD, "sealed box overhead");
_Static_assert(crypto_scalarmult_BYTES == PROTO_KEY_LEN, "X25519 shared secret size");
_Static_assert(crypto_kx_SESSIONKEYBYTES == PROTO_KEY_LEN, "session key size");
_Static_assert(crypto_kdf_KEYBYTES == PROTO_KEY_LEN, "kdf key size");

proto_err proto_init(void)
{
    return sodium_init() < 0 ? PROTO_ECRYPTO : PROTO_OK;
}

void proto__random(const proto_rng *rng, uint8_t *buf, size_t n)
{
    if (rng != NULL && rng->fill_cb != NULL)
        rng->fill_cb(rng->ctx, buf, n);
    else
        randombytes_buf(buf, n);
}

/*
 * Secret memory. Every secret lives in libsodium's guarded, locked memory and is wiped when
 * freed. One sodium_malloc per secret costs an mmap, mprotects of its guard pages and an
 * mlock, and the same again to free it; in a process with threads each of those changes of
 * the address space also interrupts every other core to flush its TLB. A node opening
 * thousands of key grants a second spent most of its time there. So small secrets are slots
 * of slabs: each slab is one sodium_malloc region (guard pages around the slab, locked)
 * carved into slots of one size class; a freed slot is wiped and kept for reuse, slabs are
 * never unmapped. Larger secrets get their own sodium_malloc region as before.
 *
 * Each allocation starts with a 16-byte prefix (not secret) naming its class, so that free
 * needs no lookup; the secret follows, 16-byte aligned. The lists are shared by all threads
 * behind one mutex (the vpool threads of the node open keys too).
 */
#define SLAB_BYTES (64u * 1024u)
#define SLOT_PREFIX 16u
#define NCLASSES 5
#define CLASS_LARGE 0xffu
static const size_t slot_bytes[NCLASSES] = { 64, 128, 256, 512, 1024 }; /* prefix included */

typedef struct secret_slot {
    struct secret_slot *next; /* on the free list; overwritten by the prefix when in use */
} secret_slot;

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static secret_slot *secret_free_list[NCLASSES];

/* A new slab for class c, its slots on the free list. Called with secret_lock held. */
static bool slab_grow(unsigned c)
{
    uint8_t *slab = sodium_malloc(SLAB_BYTES);
    if (slab == NULL)
        return false;
    for (size_t off = 0; off + slot_bytes[c] <= SLAB_BYTES; off += slot_bytes[c]) {
        secret_slot *s = (secret_slot *)(void *)(slab + off);
        s->next = secret_free_list[c];
        secret_free_list[c] = s;
    }
    return true;
}

void *proto__secret_alloc(size_t n)
{
    if (n > SIZE_MAX - 2 * SLOT_PREFIX)
        return NULL;
    size_t need = (n + SLOT_PREFIX + 15u) & ~(size_t)15u; /* keeps sodium_malloc aligned */
    unsigned c = 0;
    while (c < NCLASSES && slot_bytes[c] < need)
        c++;
    uint8_t *p;
    if (c == NCLASSES) {
        if ((p = sodium_malloc(need)) == NULL)
            return NULL;
        p[0] = CLASS_LARGE;
    } else {
        pthread_mutex_lock(&secret_lock);
        if (secret_free_list[c] == NULL && !slab_grow(c)) {
            pthread_mutex_unlock(&secret_lock);
            return NULL;
        }
        secret_slot *s = secret_free_list[c];
        secret_free_list[c] = s->next;
        pthread_mutex_unlock(&secret_lock);
        p = (uint8_t *)s;
        p[0] = (uint8_t)c;
    }
    sodium_memzero(p + 1, SLOT_PREFIX - 1);
    sodium_memzero(p + SLOT_PREFIX, need - SLOT_PREFIX);
    return p + SLOT_PREFIX;
}

void proto__secret_free(void *ptr)
{
    if (ptr == NULL)
        return;
    uint8_t *p = (uint8_t *)ptr - SLOT_PREFIX;
    if (p[0] == CLASS_LARGE) {
        sodium_free(p); /* wipes before unmapping */
        return;
    }
    unsigned c = p[0];
    sodium_memzero(p, slot_bytes[c]);
    secret_slot *s = (secret_slot *)(void *)p;
    pthread_mutex_lock(&secret_lock);
    s->next = secret_free_list[c];
    secret_free_list[c] = s;
    pthread_mutex_unlock(&secret_lock);
}

void proto__wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        sodium_memzero(p, n);
}

int proto__memcmp_ct(const uint8_t *a, const uint8_t *b, size_t n)
{
    return sodium_memcmp(a, b, n);
}

bool proto__is_zero(const uint8_t *p, size_t n)
{
    return sodium_is_zero(p, n) == 1;
}

void proto__hash(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
    const proto_bytes *parts, size_t nparts)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, keylen, outlen);
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len > 0)
            crypto_generichash_update(&st, parts[i].p, parts[i].len);
    crypto_generichash_final(&st, out, outlen);
    sodium_memzero(&st, sizeof st);
}

void proto_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}

proto_err proto_body_check(const proto_header *h, const uint8_t *body, size_t len)
{
    if (h == NULL || (body == NULL && len > 0))
        return PROTO_EINVAL;
    if (len != h->body_len)
        return PROTO_EBODYLEN;
    uint8_t hash[PROTO_HASH_LEN];
    proto_bytes bb = { body, len };
    proto__hash(hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    return proto__memcmp_ct(hash, h->body_hash, PROTO_HASH_LEN) == 0 ? PROTO_OK : PROTO_EBODYHASH;
}

void proto_schema_hash(const uint8_t *bytes, size_t len, uint8_t out[PROTO_HASH_LEN])
{
    proto_bytes part = { bytes, len };
    proto__hash(out, PROTO_HASH_LEN, NULL, 0, &part, 1);
}

void proto__sign(
    const proto_identity *id, const uint8_t *m, size_t mlen, uint8_t sig[PROTO_SIG_LEN])
{
    crypto_sign_detached(sig, NULL, m, mlen, id->sec->sign_sk);
}

/*
 * Ed25519 verification is libsodium 1.0.18's crypto_sign_verify_detached, whose rules are the
 * protocol's (PROTOCOL.md, "Signatures"): S must be below the group order L, R and A must not
 * be points of small order (any encoding of one), A must be canonically encoded (y < p), and
 * then [S]B = R + [H(R || A || M)]A must hold exactly (cofactorless). Every rule is checked by
 * a vector in vectors.txt ([ed25519-edge]).
 */
bool proto__verify(const uint8_t pk[PROTO_ORIGIN_LEN], const uint8_t *m, size_t mlen,
    const uint8_t sig[PROTO_SIG_LEN])
{
    return crypto_sign_verify_detached(sig, m, mlen, pk) == 0;
}

void proto__aead_seal(uint8_t *c, const uint8_t *m, size_t mlen, const uint8_t *ad, size_t adlen,
    const uint8_t nonce[PROTO_NONCE_LEN], const uint8_t key[PROTO_KEY_LEN])
{
    crypto_aead_xchacha20poly1305_ietf_encrypt(c, NULL, m, mlen, ad, adlen, NULL, nonce, key);
}

bool proto__aead_open(uint8_t *m, const uint8_t *c, size_t clen, const uint8_t *ad, size_t adlen,
    const uint8_t nonce[PROTO_NONCE_LEN], const uint8_t key[PROTO_KEY_LEN])
{
    return crypto_aead_xchacha20poly1305_ietf_decrypt(m, NULL, NULL, c, clen, ad, adlen, nonce, key)
        == 0;
}

bool proto__pad(uint8_t *buf, size_t unpadded, size_t block, size_t max, size_t *padded)
{
    return sodium_pad(padded, buf, unpadded, block, max) == 0;
}

bool proto__unpad(const uint8_t *buf, size_t padded, size_t block, size_t *unpadded)
{
    return sodium_unpad(unpadded, buf, padded, block) == 0;
}

/*
 * crypto_box_seal, spelled out so that the ephemeral key pair can come from a seed: the
 * ephemeral key pair (epk, esk), nonce = BLAKE2b-192(epk || rpk), c = epk || crypto_box_easy.
 * The result opens with crypto_box_seal_open (tests check this).
 */
bool proto__seal(uint8_t *c, const uint8_t *m, size_t mlen, const uint8_t rpk[PROTO_BOX_PK_LEN],
    const uint8_t eph_seed[PROTO_SEED_LEN])
{
    uint8_t esk[crypto_box_SECRETKEYBYTES];
    uint8_t nonce[crypto_box_NONCEBYTES];
    crypto_box_seed_keypair(c, esk, eph_seed);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof nonce);
    crypto_generichash_update(&st, c, crypto_box_PUBLICKEYBYTES);
    crypto_generichash_update(&st, rpk, crypto_box_PUBLICKEYBYTES);
    crypto_generichash_final(&st, nonce, sizeof nonce);
    int rc = crypto_box_easy(c + crypto_box_PUBLICKEYBYTES, m, mlen, nonce, rpk, esk);
    sodium_memzero(esk, sizeof esk);
    return rc == 0; /* fails for a recipient key of low order */
}

bool proto__seal_open(uint8_t *m, const uint8_t *c, size_t clen, const proto_identity *me)
{
    return clen >= crypto_box_SEALBYTES
        && crypto_box_seal_open(m, c, clen, me->box_pk, me->sec->box_sk) == 0;
}

bool proto__box_shared(
    const proto_identity *me, const uint8_t other[PROTO_BOX_PK_LEN], uint8_t ss[PROTO_KEY_LEN])
{
    /* crypto_scalarmult refuses an all-zero result itself (1.0.18); checked again here so that
     * the rule does not rest on one library version. */
    if (crypto_scalarmult(ss, me->sec->box_sk, other) != 0 || sodium_is_zero(ss, PROTO_KEY_LEN)) {
        sodium_memzero(ss, PROTO_KEY_LEN);
        return false;
    }
    return true;
}

void proto__kx_keypair(
    const uint8_t seed[PROTO_SEED_LEN], uint8_t pk[PROTO__KX_LEN], uint8_t sk[PROTO__KX_LEN])
{
    crypto_kx_seed_keypair(pk, sk, seed);
}

bool proto__kx_session(bool client, const uint8_t pk[PROTO__KX_LEN],
    const uint8_t sk[PROTO__KX_LEN], const uint8_t peer[PROTO__KX_LEN], uint8_t rx[PROTO_KEY_LEN],
    uint8_t tx[PROTO_KEY_LEN])
{
    if (client)
        return crypto_kx_client_session_keys(rx, tx, pk, sk, peer) == 0;
    return crypto_kx_server_session_keys(rx, tx, pk, sk, peer) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Identities                                                                                */

proto_err proto_identity_from_seeds(const uint8_t sign_seed[PROTO_SEED_LEN],
    const uint8_t box_seed[PROTO_SEED_LEN], proto_identity **out)
{
    if (sign_seed == NULL || box_seed == NULL || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    proto_identity *id = proto__calloc(1, sizeof *id);
    if (id == NULL)
        return PROTO_ENOMEM;
    id->sec = proto__secret_alloc(sizeof *id->sec);
    if (id->sec == NULL) {
        proto_identity_free(id);
        return PROTO_ENOMEM;
    }
    memcpy(id->sec->sign_seed, sign_seed, PROTO_SEED_LEN);
    memcpy(id->sec->box_seed, box_seed, PROTO_SEED_LEN);
    crypto_sign_seed_keypair(id->origin, id->sec->sign_sk, sign_seed);
    crypto_box_seed_keypair(id->box_pk, id->sec->box_sk, box_seed);
    *out = id;
    return PROTO_OK;
}

proto_err proto_identity_new(const proto_rng *rng, proto_identity **out)
{
    uint8_t *seeds = proto__secret_alloc(2 * PROTO_SEED_LEN);
    if (seeds == NULL)
        return PROTO_ENOMEM;
    proto__random(rng, seeds, 2 * PROTO_SEED_LEN);
    proto_err err = proto_identity_from_seeds(seeds, seeds + PROTO_SEED_LEN, out);
    proto__secret_free(seeds);
    return err;
}

void proto_identity_seeds(
    const proto_identity *id, uint8_t sign_seed[PROTO_SEED_LEN], uint8_t box_seed[PROTO_SEED_LEN])
{
    memcpy(sign_seed, id->sec->sign_seed, PROTO_SEED_LEN);
    memcpy(box_seed, id->sec->box_seed, PROTO_SEED_LEN);
}

const uint8_t *proto_identity_origin(const proto_identity *id)
{
    return id->origin;
}

const uint8_t *proto_identity_box_pk(const proto_identity *id)
{
    return id->box_pk;
}

void proto_identity_free(proto_identity *id)
{
    if (id == NULL)
        return;
    proto__secret_free(id->sec);
    sodium_memzero(id, sizeof *id);
    free(id);
}

/* ---------------------------------------------------------------------------------------- */
/* Scope keys                                                                                */

#define KDF_CONTEXT "pattoscp" /* crypto_kdf context: 8 bytes */
#define KDF_TAG_ID 1
#define KDF_BODY_ID 2
static const char tag_label[] = "patto-tag-v1";

proto_err proto_scope_key_from_bytes(const proto_case_id *case_id, const char *scope,
    uint64_t epoch, const uint8_t key[PROTO_KEY_LEN], proto_scope_key **out)
{
    if (case_id == NULL || scope == NULL || key == NULL || out == NULL)
        return PROTO_EINVAL;
    *out = NULL;
    size_t slen = strlen(scope);
    if (!proto__valid_scope((const uint8_t *)scope, slen) || epoch < PROTO_EPOCH_FIRST)
        return PROTO_EVALUE;
    proto_scope_key *k = proto__calloc(1, sizeof *k);
    if (k == NULL)
        return PROTO_ENOMEM;
    k->sec = proto__secret_alloc(sizeof *k->sec);
    if (k->sec == NULL) {
        proto_scope_key_free(k);
        return PROTO_ENOMEM;
    }
    k->case_id = *case_id;
    memcpy(k->scope, scope, slen + 1);
    k->epoch = epoch;
    memcpy(k->sec->key, key, PROTO_KEY_LEN);
    crypto_kdf_derive_from_key(k->sec->tag_key, PROTO_KEY_LEN, KDF_TAG_ID, KDF_CONTEXT, key);
    crypto_kdf_derive_from_key(k->sec->body_key, PROTO_KEY_LEN, KDF_BODY_ID, KDF_CONTEXT, key);

    /* tag = BLAKE2b-256(key = tag subkey, "patto-tag-v1" || case || u8 len || scope || be64) */
    uint8_t slen8 = (uint8_t)slen, ep[8];
    proto__be64(ep, epoch);
    proto_bytes parts[] = {
        { (const uint8_t *)tag_label, sizeof tag_label - 1 },
        { case_id->b, PROTO_CASE_ID_LEN },
        { &slen8, 1 },
        { (const uint8_t *)scope, slen },
        { ep, 8 },
    };
    proto__hash(k->tag, PROTO_TAG_LEN, k->sec->tag_key, PROTO_KEY_LEN, parts, 5);
    *out = k;
    return PROTO_OK;
}

proto_err proto_scope_key_new(const proto_case_id *case_id, const char *scope, uint64_t epoch,
    const proto_rng *rng, proto_scope_key **out)
{
    if (out == NULL)
        return PROTO_EINVAL;
    uint8_t *key = proto__secret_alloc(PROTO_KEY_LEN);
    if (key == NULL)
        return PROTO_ENOMEM;
    proto__random(rng, key, PROTO_KEY_LEN);
    proto_err err = proto_scope_key_from_bytes(case_id, scope, epoch, key, out);
    proto__secret_free(key);
    return err;
}

void proto_scope_key_export(const proto_scope_key *k, uint8_t key[PROTO_KEY_LEN])
{
    memcpy(key, k->sec->key, PROTO_KEY_LEN);
}

const uint8_t *proto_scope_key_tag(const proto_scope_key *k)
{
    return k->tag;
}

const proto_case_id *proto_scope_key_case(const proto_scope_key *k)
{
    return &k->case_id;
}

const char *proto_scope_key_scope(const proto_scope_key *k)
{
    return k->scope;
}

uint64_t proto_scope_key_epoch(const proto_scope_key *k)
{
    return k->epoch;
}

void proto_scope_key_free(proto_scope_key *k)
{
    if (k == NULL)
        return;
    proto__secret_free(k->sec);
    sodium_memzero(k, sizeof *k);
    free(k);
}

static const char epoch_key_label[] = "patto-epoch-key-v2";

void proto_epoch_key_hash(const proto_scope_key *k, uint8_t out[PROTO_HASH_LEN])
{
    /* H("patto-epoch-key-v2" || case_id || u8(len(scope)) || scope || be64(epoch) || key) */
    size_t slen = strlen(k->scope);
    uint8_t slen8 = (uint8_t)slen, ep[8];
    proto__be64(ep, k->epoch);
    proto_bytes parts[] = {
        { (const uint8_t *)epoch_key_label, sizeof epoch_key_label - 1 },
        { k->case_id.b, PROTO_CASE_ID_LEN },
        { &slen8, 1 },
        { (const uint8_t *)k->scope, slen },
        { ep, 8 },
        { k->sec->key, PROTO_KEY_LEN },
    };
    proto__hash(out, PROTO_HASH_LEN, NULL, 0, parts, 6);
}

/* ---------------------------------------------------------------------------------------- */
/* Counter origins                                                                           */

static const char counter_label[] = "patto-counter-origin-v2";

void proto_counter_origin(
    const uint8_t author[PROTO_ORIGIN_LEN], const char *field, size_t len, uint8_t out[32])
{
    /* H("patto-counter-origin-v2" || author || u8(len(field)) || field); field is 1..64 bytes
     * (CRDT_FIELD_MAX), so its length fits the byte. */
    uint8_t len8 = (uint8_t)len;
    proto_bytes parts[] = {
        { (const uint8_t *)counter_label, sizeof counter_label - 1 },
        { author, PROTO_ORIGIN_LEN },
        { &len8, 1 },
        { (const uint8_t *)field, len },
    };
    proto__hash(out, 32, NULL, 0, parts, 4);
}

/* ---------------------------------------------------------------------------------------- */
/* Hex                                                                                       */

void proto_hex_encode(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

bool proto_hex_decode(const char *hex, size_t len, uint8_t *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;
    if (hex == NULL || len != 2 * n)
        return false;
    return sodium_hex2bin(out, n, hex, len, NULL, &got, &end) == 0 && got == n && end == hex + len;
}
