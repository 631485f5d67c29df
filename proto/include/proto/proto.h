/*
 * proto.h - the wire protocol and crypto envelope of patto: every byte that leaves a patto
 * process is encoded, signed, encrypted, decoded and checked here. The byte layouts and the
 * cryptographic construction are specified in proto/PROTOCOL.md; this header is the C
 * contract.
 *
 * Pure functions of their arguments: no I/O, no clock, no logging. Randomness comes from an
 * injectable proto_rng (NULL: the operating system's, through libsodium). Every function that
 * can fail returns a proto_err; decoders also fill an optional proto_diag with the byte offset
 * and a short reason.
 *
 * Decoding is strict and bounded (PROTOCOL.md section "Decoding rules"): input is pre-scanned
 * before msgpack-c sees it, so memory stays a small multiple of the input length; every
 * encoding is canonical and any other encoding is rejected.
 *
 * Ownership vocabulary (ARCHITECTURE.md, house rule 6): "borrowed" pointers in decoded structs
 * point into the input buffer and stay valid while it does; arrays a decoder allocates are released
 * by the struct's _fini function. proto_buf results are owned by the caller: proto_buf_free.
 *
 * Secrets (signing keys, box keys, scope keys, handshake and session keys) live in
 * sodium_malloc'd memory inside opaque objects and are wiped when freed.
 *
 * Threads: proto_init() once before anything else (it is idempotent and thread-safe). Objects
 * are not synchronised; read-only use of one identity or scope key from several threads is
 * fine, sessions and handshakes belong to one thread at a time.
 */
#ifndef PROTO_PROTO_H
#define PROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <crdt/crdt.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PROTO_NODISCARD __attribute__((warn_unused_result))
#else
#define PROTO_NODISCARD
#endif

/* ---------------------------------------------------------------------------------------- */
/* Constants (PROTOCOL.md, "Constants")                                                      */

#define PROTO_VERSION 5            /* first element of every top-level message */
#define PROTO_ORIGIN_LEN 32        /* Ed25519 public key */
#define PROTO_BOX_PK_LEN 32        /* X25519 public key */
#define PROTO_SEED_LEN 32          /* key seeds */
#define PROTO_HASH_LEN 32          /* BLAKE2b-256 digests, header ids */
#define PROTO_TAG_LEN 32           /* routing tags */
#define PROTO_SIG_LEN 64           /* Ed25519 signatures */
#define PROTO_KEY_LEN 32           /* scope keys */
#define PROTO_NONCE_LEN 24         /* XChaCha20-Poly1305 nonces */
#define PROTO_CASE_ID_LEN 16       /* 128-bit case ids, derived from owner org and nonce */
#define PROTO_CASE_NONCE_LEN 16    /* the random part of a case id, known to its holders only */
#define PROTO_CASE_ID_TEXT_SIZE 38 /* "pc-" + 5 groups of 5 + 1 group of 4, dashes, NUL */
#define PROTO_PAD_BLOCK 256        /* delta bodies are padded to a multiple of this */
#define PROTO_GRANT_PAD_BLOCK 256  /* sealed key-grant plaintexts: a multiple of this */
#define PROTO_SCOPE_NAME_MAX 32    /* [a-z0-9_-]{1,32} */
#define PROTO_ORG_MAX 32           /* [a-z0-9-]{1,32} */
#define PROTO_TEXT_MAX 1024        /* names, purposes, descriptions, operators, evidence, URLs */
#define PROTO_HINT_SLOTS 4         /* hint slots (and sealed boxes) of every key grant */
#define PROTO_HINT_LEN 16          /* bytes of one hint */
#define PROTO_RECIPIENTS_MAX PROTO_HINT_SLOTS /* recipients of one key grant */
#define PROTO_GRANT_EPOCHS_MAX 256            /* keys (one per epoch) in one key grant */
#define PROTO_GRANT_SCOPES_MAX 64             /* scopes of one case in one key grant */
#define PROTO_EPOCH_FIRST 1                   /* the first epoch of every (case, scope) */
#define PROTO_MEMBER_KEYS_MAX 16              /* origin keys an org has had, in one manifest */
#define PROTO_MEMBERS_MAX 4096                /* members in a manifest */
#define PROTO_VV_MAX 65536                    /* entries in a version vector */
#define PROTO_BATCH_MAX 65536 /* items in a headers/bodies/want batch or control args */
#define PROTO_MAX_MESSAGE_DEFAULT (16u * 1024u * 1024u)
#define PROTO_MAX_DEPTH_DEFAULT 8
#define PROTO_MAX_ITEMS_DEFAULT (1u << 21)
#define PROTO_MAX_DEPTH_LIMIT 32 /* a proto_limits.max_depth above this is clamped */

/* Message kinds: the second element of every top-level message (PROTOCOL.md, "Kinds"). */
#define PROTO_KINDS(X)                                                                             \
    X(PROTO_K_HEADER, 1, "header")                                                                 \
    X(PROTO_K_HEADER_FIELDS, 2, "header-fields")                                                   \
    X(PROTO_K_DELTA_PLAIN, 3, "delta-plaintext")                                                   \
    X(PROTO_K_GRANT_BODY, 4, "grant-body")                                                         \
    X(PROTO_K_GRANT_PLAIN, 5, "grant-plaintext")                                                   \
    X(PROTO_K_RECEIPT, 6, "receipt")                                                               \
    X(PROTO_K_RECEIPT_FIELDS, 7, "receipt-fields")                                                 \
    X(PROTO_K_MANIFEST, 8, "manifest")                                                             \
    X(PROTO_K_MANIFEST_FIELDS, 9, "manifest-fields")                                               \
    X(PROTO_K_HELLO, 10, "hello")                                                                  \
    X(PROTO_K_HELLO_REPLY, 11, "hello-reply")                                                      \
    X(PROTO_K_HELLO_FINISH, 12, "hello-finish")                                                    \
    X(PROTO_K_VV, 13, "version-vector")                                                            \
    X(PROTO_K_HEADERS, 14, "headers")                                                              \
    X(PROTO_K_BODIES, 15, "bodies")                                                                \
    X(PROTO_K_WANT, 16, "want")                                                                    \
    X(PROTO_K_CTL_REQUEST, 17, "control-request")                                                  \
    X(PROTO_K_CTL_RESPONSE, 18, "control-response")                                                \
    X(PROTO_K_CTL_ERROR, 19, "control-error")                                                      \
    X(PROTO_K_SCOPE, 20, "scope")                                                                  \
    X(PROTO_K_ACCESS_GRANT, 21, "access-grant")                                                    \
    X(PROTO_K_FORGET_PLAIN, 22, "forget-plaintext")                                                \
    X(PROTO_K_FRAME, 23, "session-frame")                                                          \
    X(PROTO_K_ACCESS_EPOCH, 24, "access-epoch")                                                    \
    X(PROTO_K_ACCESS_NARROW, 25, "access-narrow")                                                  \
    X(PROTO_K_NOTE_PLAIN, 26, "note-plaintext")

typedef enum proto_kind {
#define PROTO__KIND(name, num, text) name = num,
    PROTO_KINDS(PROTO__KIND)
#undef PROTO__KIND
} proto_kind;

/* The kind's name as in PROTOCOL.md, or "unknown". */
const char *proto_kind_name(unsigned kind);

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

#define PROTO_ERRORS(X)                                                                            \
    X(PROTO_OK, "success")                                                                         \
    X(PROTO_EINVAL, "invalid argument: NULL pointer or value out of range (a bug in the caller)")  \
    X(PROTO_ENOMEM, "out of memory")                                                               \
    X(PROTO_ECRYPTO, "libsodium could not be initialised (no entropy source?)")                    \
    X(PROTO_ETOOBIG,                                                                               \
        "message larger than the configured maximum size; raise max_message only "                 \
        "if the peer is trusted")                                                                  \
    X(PROTO_ETRUNC, "message truncated: a length or count claims more bytes than remain")          \
    X(PROTO_EDEPTH, "message nested deeper than the decoder allows")                               \
    X(PROTO_EITEMS, "message holds more items than the decoder allows")                            \
    X(PROTO_ENONCANON,                                                                             \
        "non-canonical encoding: a shorter msgpack form exists or the order is "                   \
        "not canonical; the sender's encoder is not patto-compatible")                             \
    X(PROTO_EMSGPACK,                                                                              \
        "byte is not valid msgpack or uses a type patto never sends (map, float, "                 \
        "ext, nil)")                                                                               \
    X(PROTO_ETRAILING, "bytes left over after the message")                                        \
    X(PROTO_EVERSION, "unknown protocol version: the peer runs an incompatible patto release")     \
    X(PROTO_EKIND, "unexpected message kind for this decoder")                                     \
    X(PROTO_ESHAPE, "a field has the wrong type or the message the wrong number of fields")        \
    X(PROTO_ELIMIT, "a length or count exceeds the limit PROTOCOL.md sets for this field")         \
    X(PROTO_EVALUE, "a field holds a value outside its allowed range or alphabet")                 \
    X(PROTO_ESIG, "signature does not verify: forged, corrupted, or signed by another key")        \
    X(PROTO_EBODYLEN, "body length differs from the length its header announces")                  \
    X(PROTO_EBODYHASH, "body hash differs from the hash its header announces")                     \
    X(PROTO_EDECRYPT, "authenticated decryption failed: wrong key, or body or header altered")     \
    X(PROTO_EPAD, "padding is malformed")                                                          \
    X(PROTO_EKEY, "the key given does not belong to this header's routing tag")                    \
    X(PROTO_EMISMATCH, "decrypted contents disagree with the header or key they came with")        \
    X(PROTO_ENOTRECIPIENT, "this node is not among the key grant's recipients")                    \
    X(PROTO_ESEAL, "sealed key grant cannot be opened with this node's key")                       \
    X(PROTO_ENOTMEMBER, "peer is not a member of the current manifest")                            \
    X(PROTO_EPEER, "peer identity differs from the member this node dialled")                      \
    X(PROTO_EREPLAY, "replayed or out-of-order session frame")                                     \
    X(PROTO_ESTATE, "object used in the wrong state (handshake step out of order or failed)")      \
    X(PROTO_ECASEID, "malformed case id text: expected pc- followed by 29 base32 characters")      \
    X(PROTO_ECHECKSUM, "case id checksum mismatch: a character was mistyped")                      \
    X(PROTO_ECRDT, "decoded scope rejected by the CRDT core (see crdt_strerror)")

typedef enum proto_err {
#define PROTO__ENUM(name, text) name,
    PROTO_ERRORS(PROTO__ENUM)
#undef PROTO__ENUM
        PROTO_ERR_COUNT
} proto_err;

/* A static sentence for an error code; never NULL. */
const char *proto_strerror(proto_err err);

/* Where and why a decoder rejected its input. offset is a byte offset into the input given to
 * the decoder (for nested encodings carried as bin: into that inner encoding, see reason). */
typedef struct proto_diag {
    size_t offset;
    const char *reason; /* static string, never NULL after a failed decode */
} proto_diag;

/* ---------------------------------------------------------------------------------------- */
/* Setup, limits, randomness, buffers                                                        */

/* Initialise libsodium. Idempotent, thread-safe. Errors: PROTO_ECRYPTO. */
PROTO_NODISCARD proto_err proto_init(void);

/* Decoder limits. Every decoder takes a const proto_limits * (NULL: the defaults). */
typedef struct proto_limits {
    size_t max_message; /* bytes; default PROTO_MAX_MESSAGE_DEFAULT */
    unsigned max_depth; /* nesting of arrays; default PROTO_MAX_DEPTH_DEFAULT, max 32 */
    size_t max_items;   /* msgpack items in one message; default PROTO_MAX_ITEMS_DEFAULT */
} proto_limits;

void proto_limits_default(proto_limits *l);

/* Randomness source: fill buf with n bytes. NULL where one is taken: randombytes_buf. Tests and
 * the test vectors inject deterministic bytes through this. */
typedef struct proto_rng {
    void (*fill_cb)(void *ctx, uint8_t *buf, size_t n);
    void *ctx;
} proto_rng;

/* An owned byte buffer (malloc'd). proto_buf_free frees and zeroes the struct; safe on an empty
 * buffer. */
typedef struct proto_buf {
    uint8_t *p;
    size_t len;
} proto_buf;
void proto_buf_free(proto_buf *b);

/* A borrowed byte string. */
typedef struct proto_bytes {
    const uint8_t *p;
    size_t len;
} proto_bytes;

/* Peek at a top-level message: pre-scan it under limits and read its version and kind.
 * Errors: any pre-scan error, PROTO_ESHAPE, PROTO_EVERSION. */
PROTO_NODISCARD proto_err proto_peek(
    const uint8_t *msg, size_t len, const proto_limits *lim, unsigned *kind, proto_diag *diag);

/* BLAKE2b-256 of a byte string: the identity of the record schema file in the manifest
 * (PROTOCOL.md, "Manifest": schema hash = BLAKE2b-256 of the schema file's exact bytes). */
void proto_schema_hash(const uint8_t *bytes, size_t len, uint8_t out[PROTO_HASH_LEN]);

/* Wipe a secret held outside proto's objects (sodium_memzero), e.g. a key read from disk. */
void proto_wipe(void *p, size_t n);

struct proto_header;
/* Check a body against the length and BLAKE2b-256 hash its verified header announces, without
 * any key: what a node checks before storing or relaying a body it cannot open.
 * Errors: PROTO_EINVAL, PROTO_EBODYLEN, PROTO_EBODYHASH. */
PROTO_NODISCARD proto_err proto_body_check(
    const struct proto_header *h, const uint8_t *body, size_t len);

/* ---------------------------------------------------------------------------------------- */
/* Names and values: the one definition of each rule that several programs check            */
/* (PROTOCOL.md, "Names and values"). Strings are len bytes, NUL-terminated or not.          */

#define PROTO_URL_MAX 255        /* tcp://HOST:PORT */
#define PROTO_DATE_YEAR_MIN 1900 /* calendar dates YYYY-MM-DD */
#define PROTO_DATE_YEAR_MAX 2200

/* [a-z0-9-]{1,32} */
bool proto_org_valid(const char *s, size_t len);
/* [a-z0-9_-]{1,32} */
bool proto_scope_name_valid(const char *s, size_t len);
/* tcp://HOST:PORT: HOST a DNS name or IPv4 address ([A-Za-z0-9.-]+) or [IPv6 address], PORT
 * 1..65535, at most PROTO_URL_MAX bytes. */
bool proto_url_valid(const char *s, size_t len);
/* Does the URL bind every address of the machine (tcp://0.0.0.0:PORT or tcp://[::]:PORT)? Such
 * a URL can be listened on but not dialled: a node that listens on it needs another URL, the
 * one the other members dial, beside it ([node] advertise, `patto init --advertise`). */
bool proto_url_wildcard(const char *s, size_t len);
/* Well-formed UTF-8 without control characters (C0, DEL, C1): no overlong forms, no
 * surrogates, nothing beyond U+10FFFF. An empty string is valid. */
bool proto_utf8_valid(const char *s, size_t len);
/* Text for people (names, values, purposes, evidence, operator names): 1..max bytes of
 * proto_utf8_valid text that is not only spaces. */
bool proto_text_valid(const char *s, size_t len, size_t max);
/* Roles, legal bases and access levels by name: "comune" ... "coord" (proto_role),
 * "public-task" "legal-obligation" "consent" "explicit-consent" (proto_basis), "none" "read"
 * "write" (proto_access_level). The _name functions return NULL for an unknown value, the
 * _parse functions 0 (roles, bases) or false (access) for an unknown name. */
const char *proto_role_name(unsigned role);
unsigned proto_role_parse(const char *s, size_t len);
const char *proto_basis_name(unsigned basis);
unsigned proto_basis_parse(const char *s, size_t len);
const char *proto_access_name(unsigned access);
bool proto_access_parse(const char *s, size_t len, uint8_t *out);

/* A calendar date as people type it: YYYY-MM-DD, a day that exists (2026-02-31 does not),
 * year PROTO_DATE_YEAR_MIN..PROTO_DATE_YEAR_MAX. What the date means in time (which day in
 * which zone) is the caller's: see node/ and cli/. Errors: PROTO_EINVAL, PROTO_EVALUE. */
typedef struct proto_date {
    int year, month, day;
} proto_date;
PROTO_NODISCARD proto_err proto_date_parse(const char *s, size_t len, proto_date *out);

/* Europe/Rome civil time, which people read and type (the wire and the stores hold UTC ms):
 * computed from the EU rule (CET, and CEST from 01:00 UTC on the last Sunday of March to 01:00
 * UTC on the last Sunday of October), not read from the machine's tz database, so that every
 * program turns a date into the same instant. */
typedef struct proto_civil {
    int year, month, day, hour, minute, second, ms;
    int offset_min; /* from UTC: 60 (CET) or 120 (CEST) */
} proto_civil;
/* The offset of Rome from UTC at an instant, in minutes: 60 or 120. */
int proto_rome_offset_min(uint64_t utc_ms);
/* The civil time in Rome at an instant. */
void proto_rome_civil(uint64_t utc_ms, proto_civil *out);
/* The first and the last millisecond of day d in Rome, as UTC ms since the Unix epoch (0 for a
 * day before 1970: times before the epoch are not represented). */
uint64_t proto_rome_day_start_ms(const proto_date *d);
uint64_t proto_rome_day_end_ms(const proto_date *d);

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void proto_hex_encode(const uint8_t *p, size_t n, char *out);
/* Exactly 2n hex digits (either case) in hex[0..len) into out[n]; false otherwise. */
bool proto_hex_decode(const char *hex, size_t len, uint8_t *out, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* Case ids                                                                                  */

typedef struct proto_case_id {
    uint8_t b[PROTO_CASE_ID_LEN];
} proto_case_id;

typedef struct proto_case_nonce {
    uint8_t b[PROTO_CASE_NONCE_LEN];
} proto_case_nonce;

/* The id of a case opened by org: the first 16 bytes of BLAKE2b-256("patto-case-id-v2" ||
 * u8(len(org)) || org || nonce) (PROTOCOL.md, "Case ids"). Every holder of the nonce (it travels
 * only inside sealed key grants) can check who owns a case; nobody else can test whether a case
 * id is an org's. Errors: PROTO_EINVAL, PROTO_EVALUE (org not [a-z0-9-]{1,32}). */
PROTO_NODISCARD proto_err proto_case_id_derive(
    const char *org, size_t org_len, const proto_case_nonce *nonce, proto_case_id *out);
/* A new case of org: a random nonce (from rng) and the id derived from it. */
PROTO_NODISCARD proto_err proto_case_id_new(const char *org, size_t org_len, const proto_rng *rng,
    proto_case_id *out, proto_case_nonce *nonce);
/* Text form, e.g. "pc-7k2qm-..." (PROTOCOL.md, "Case id text"); out is NUL-terminated. */
void proto_case_id_format(const proto_case_id *id, char out[PROTO_CASE_ID_TEXT_SIZE]);
/* Parse the text form; accepts upper case, omitted dashes, and Crockford's o/i/l aliases.
 * Errors: PROTO_EINVAL, PROTO_ECASEID, PROTO_ECHECKSUM. */
PROTO_NODISCARD proto_err proto_case_id_parse(const char *text, size_t len, proto_case_id *out);

/* ---------------------------------------------------------------------------------------- */
/* Identities and scope keys (opaque; secrets in sodium_malloc memory)                      */

typedef struct proto_identity proto_identity;

/* A node's keys: Ed25519 (origin) and X25519 (key grants), from two 32-byte seeds.
 * Returns owned, free with proto_identity_free. Errors: PROTO_EINVAL, PROTO_ENOMEM. */
PROTO_NODISCARD proto_err proto_identity_from_seeds(const uint8_t sign_seed[PROTO_SEED_LEN],
    const uint8_t box_seed[PROTO_SEED_LEN], proto_identity **out);
PROTO_NODISCARD proto_err proto_identity_new(const proto_rng *rng, proto_identity **out);
/* Copy the seeds out (for the node's key files). */
void proto_identity_seeds(
    const proto_identity *id, uint8_t sign_seed[PROTO_SEED_LEN], uint8_t box_seed[PROTO_SEED_LEN]);
/* Borrowed until proto_identity_free. */
const uint8_t *proto_identity_origin(const proto_identity *id);
const uint8_t *proto_identity_box_pk(const proto_identity *id);
void proto_identity_free(proto_identity *id);

/* The nonce of a case imported under an identifier (patto import): the first 16 bytes of
 * BLAKE2b-256 keyed with me's Ed25519 seed over ("patto-import-nonce-v1" || u8(len(label)) ||
 * label || value), label naming the identifier (e.g. "codice_fiscale"). The same node imports
 * the same value to the same case id (a re-run finds the case and skips it); without this
 * node's secret key nobody can compute it, so neither the nonce (which grantees receive) nor
 * the case id lets anyone test a guessed identifier. A node with a new identity key derives
 * other nonces. Errors: PROTO_EINVAL (NULL, label empty or over 255 bytes). */
PROTO_NODISCARD proto_err proto_import_nonce(const proto_identity *me, const char *label,
    size_t label_len, const uint8_t *value, size_t value_len, proto_case_nonce *out);

/* The key of one (case, scope, epoch), its derived subkeys and its routing tag. */
typedef struct proto_scope_key proto_scope_key;

/* scope: [a-z0-9_-]{1,32}, NUL-terminated; epoch >= PROTO_EPOCH_FIRST. Returns owned, free with
 * proto_scope_key_free. Errors: PROTO_EINVAL, PROTO_EVALUE (scope name, epoch 0), PROTO_ENOMEM. */
PROTO_NODISCARD proto_err proto_scope_key_new(const proto_case_id *case_id, const char *scope,
    uint64_t epoch, const proto_rng *rng, proto_scope_key **out);
PROTO_NODISCARD proto_err proto_scope_key_from_bytes(const proto_case_id *case_id,
    const char *scope, uint64_t epoch, const uint8_t key[PROTO_KEY_LEN], proto_scope_key **out);
void proto_scope_key_export(const proto_scope_key *k, uint8_t key[PROTO_KEY_LEN]);
/* Borrowed until proto_scope_key_free. */
const uint8_t *proto_scope_key_tag(const proto_scope_key *k);
const proto_case_id *proto_scope_key_case(const proto_scope_key *k);
const char *proto_scope_key_scope(const proto_scope_key *k);
uint64_t proto_scope_key_epoch(const proto_scope_key *k);
void proto_scope_key_free(proto_scope_key *k);
/* The hash an epoch announcement carries of its key: BLAKE2b-256("patto-epoch-key-v2" ||
 * case_id || u8(len(scope)) || scope || be64(epoch) || key). It tells a holder which key is
 * the epoch's without telling anyone the key or its routing tag. */
void proto_epoch_key_hash(const proto_scope_key *k, uint8_t out[PROTO_HASH_LEN]);

/* The origin whose dots carry an author's entries of one counter field (crdt_counter_add takes
 * it): BLAKE2b-256("patto-counter-origin-v2" || author origin || u8(len(field)) || field).
 * field: 1..CRDT_FIELD_MAX bytes. */
void proto_counter_origin(
    const uint8_t author[PROTO_ORIGIN_LEN], const char *field, size_t len, uint8_t out[32]);

/* ---------------------------------------------------------------------------------------- */
/* Headers                                                                                   */

typedef enum proto_header_kind {
    PROTO_HDR_DELTA = 1,     /* body: an encrypted delta, access-log entry or forget plaintext */
    PROTO_HDR_KEY_GRANT = 2, /* body: sealed scope keys in PROTO_HINT_SLOTS boxes */
    PROTO_HDR_NOTE = 3,      /* body: a note to a case's owner, sealed like a key grant */
} proto_header_kind;

typedef struct proto_origin_bytes {
    uint8_t b[PROTO_ORIGIN_LEN];
} proto_origin_bytes;

typedef struct proto_hint {
    uint8_t b[PROTO_HINT_LEN];
} proto_hint;

/*
 * A decoded (or to-be-encoded) header. Nothing in it is allocated; `signed_bytes` is borrowed
 * from the input.
 */
typedef struct proto_header {
    uint8_t kind; /* proto_header_kind */
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint64_t seq;                 /* >= 1, per origin */
    uint8_t prev[PROTO_HASH_LEN]; /* id of the origin's header seq-1; zeros when seq == 1 */
    crdt_hlc hlc;
    uint8_t tag[PROTO_TAG_LEN];
    /* Key grants and notes: exactly PROTO_HINT_SLOTS hints, one per sealed box (a recipient's,
     * or random bytes); deltas: none. */
    proto_hint hints[PROTO_HINT_SLOTS];
    size_t nhints;
    uint64_t body_len;
    uint8_t body_hash[PROTO_HASH_LEN];
    uint8_t sig[PROTO_SIG_LEN];
    /* BLAKE2b-256 of the whole HEADER message (fields and signature), set by decode and seal:
     * the chain (prev) commits to every earlier signature. */
    uint8_t id[PROTO_HASH_LEN];
    proto_bytes signed_bytes; /* the exact bytes the signature covers */
} proto_header;

/* Decode a HEADER message (structure only; call proto_header_verify before trusting it). */
PROTO_NODISCARD proto_err proto_header_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_header *out, proto_diag *diag);
/* Verify the signature over the exact signed bytes with h->origin, by libsodium 1.0.18's Ed25519
 * rules (canonical S and point encodings, small-order points refused; PROTOCOL.md "Headers").
 * Errors: PROTO_ESIG. */
PROTO_NODISCARD proto_err proto_header_verify(const proto_header *h);
/* Re-encode a header from its fields and signature (for storage and the vectors). */
PROTO_NODISCARD proto_err proto_header_encode(const proto_header *h, proto_buf *out);
/* Nothing to release since version 2; kept so that callers need not know. */
void proto_header_fini(proto_header *h);

/* The fields of a new header that the caller chooses. */
typedef struct proto_seal_info {
    uint64_t seq;
    uint8_t prev[PROTO_HASH_LEN];
    crdt_hlc hlc;
} proto_seal_info;

/* ---------------------------------------------------------------------------------------- */
/* Delta bodies                                                                              */

typedef enum proto_body_kind {
    PROTO_BODY_DELTA = PROTO_K_DELTA_PLAIN,           /* a CRDT delta on the scope */
    PROTO_BODY_ACCESS_GRANT = PROTO_K_ACCESS_GRANT,   /* access log: a grant */
    PROTO_BODY_FORGET = PROTO_K_FORGET_PLAIN,         /* erasure tombstone of the scope */
    PROTO_BODY_ACCESS_EPOCH = PROTO_K_ACCESS_EPOCH,   /* access log: a new epoch announced */
    PROTO_BODY_ACCESS_NARROW = PROTO_K_ACCESS_NARROW, /* access log: access narrowed, a cut */
} proto_body_kind;

/* Why an access-log narrowing entry narrows (PROTOCOL.md, "The access log"). */
typedef enum proto_narrow_reason {
    PROTO_NARROW_REVOKED = 1,   /* the owner revoked or downgraded the grant */
    PROTO_NARROW_WITHDRAWN = 2, /* the beneficiary withdrew consent */
    PROTO_NARROW_DROPPED = 3,   /* the grantee gave the grant up */
    PROTO_NARROW_EXPIRED = 4,   /* the grant's term ended */
} proto_narrow_reason;

typedef enum proto_forget_reason {
    PROTO_FORGET_REQUEST = 1,   /* the beneficiary's right to erasure */
    PROTO_FORGET_RETENTION = 2, /* retention period over */
    PROTO_FORGET_PARTNER = 3,   /* partner leaving the network */
} proto_forget_reason;

typedef enum proto_access_level {
    PROTO_ACCESS_NONE = 0, /* no access (never in a grant) */
    PROTO_ACCESS_READ = 1,
    PROTO_ACCESS_WRITE = 2,
} proto_access_level;

typedef enum proto_basis {
    PROTO_BASIS_PUBLIC_TASK = 1,
    PROTO_BASIS_LEGAL_OBLIGATION = 2,
    PROTO_BASIS_CONSENT = 3,
    PROTO_BASIS_EXPLICIT_CONSENT = 4,
} proto_basis;

/* A grant entry of a scope's access log (PROTOCOL.md, "The access log"). Strings borrowed
 * (from the caller on sealing, from the plaintext on opening). */
typedef struct proto_access {
    proto_bytes grantee;       /* org id */
    uint8_t access;            /* PROTO_ACCESS_READ or PROTO_ACCESS_WRITE */
    proto_bytes purpose;       /* purpose id from the manifest */
    uint8_t basis;             /* proto_basis */
    proto_bytes provision;     /* the legal provision (text), or empty */
    uint64_t expiry_ms;        /* last millisecond of access, UTC; 0: no expiry */
    proto_bytes operator_name; /* who recorded it (text) */
    proto_bytes unix_user;     /* the Unix user the node saw on its control socket, or empty */
    proto_bytes evidence;      /* evidence reference (text), or empty */
} proto_access;

/* One origin of a narrowing's cut: the seq and id of the last header of that origin the owner
 * held when it narrowed (PROTOCOL.md, "The access log"). */
#define PROTO_CUT_MAX PROTO_MEMBER_KEYS_MAX /* origins in one cut: an org's keys */
typedef struct proto_cut {
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint64_t seq; /* >= 1 */
    uint8_t id[PROTO_HASH_LEN];
} proto_cut;

/* A narrowing entry of a scope's access log: the grantee's access becomes `access` (none or
 * read) and its deltas beyond the cut stand only on a later grant. Strings borrowed as in
 * proto_access. */
typedef struct proto_narrow {
    proto_bytes grantee;  /* org id */
    uint8_t access;       /* PROTO_ACCESS_NONE or PROTO_ACCESS_READ */
    uint8_t reason;       /* proto_narrow_reason */
    const proto_cut *cut; /* 0..PROTO_CUT_MAX, sorted by origin, unique */
    size_t ncut;
    proto_bytes operator_name; /* who recorded it (text) */
    proto_bytes unix_user;     /* the Unix user the node saw on its control socket, or empty */
    proto_bytes note;          /* the reason in words, or evidence of a withdrawal, or empty */
} proto_narrow;

/*
 * A body's plaintext. For sealing, the caller fills kind and that kind's fields; case, scope
 * and epoch come from the key. A decoded body owns its plaintext buffer and its vv and cut
 * arrays and is released with proto_body_fini; bytes fields point into that plaintext.
 */
typedef struct proto_body {
    uint8_t kind; /* proto_body_kind */
    proto_case_id case_id;
    char scope[PROTO_SCOPE_NAME_MAX + 1];
    uint64_t epoch; /* the epoch of the key the body is sealed under */
    /* DELTA and FORGET: the author's version vector of the scope before this change (its
     * causal past), sorted by origin. */
    const crdt_vv_entry *vv;
    size_t nvv;
    /* DELTA: the number of the last access-log entry of the scope its author had seen (0:
     * none) and the place of the owner's header that carried it (origin, seq; unset with 0),
     * and the encoded SCOPE message. */
    uint64_t access_seen;
    uint8_t access_origin[PROTO_ORIGIN_LEN];
    uint64_t access_at;
    proto_bytes delta;
    /* FORGET */
    uint8_t forget_reason;     /* proto_forget_reason */
    proto_bytes operator_name; /* who recorded the erasure (text) */
    /* ACCESS_GRANT, ACCESS_EPOCH and ACCESS_NARROW: the entry's number in the scope's access log
     * (>= 1). */
    uint64_t entry;
    proto_access grant;  /* ACCESS_GRANT */
    proto_narrow narrow; /* ACCESS_NARROW */
    /* ACCESS_EPOCH: the epoch announced (> epoch) and the hash of its key
     * (proto_epoch_key_hash). */
    uint64_t new_epoch;
    uint8_t key_hash[PROTO_HASH_LEN];
    /* private */
    uint8_t *plain_;
    size_t plain_len_;
    crdt_vv_entry *vv_;
    proto_cut *cut_;
} proto_body;

/* Seal a body: encode the plaintext, pad to PROTO_PAD_BLOCK, encrypt under the key's body
 * subkey with a random nonce and the header's associated data, hash, sign (a header of kind
 * PROTO_HDR_DELTA). Writes the HEADER message to *header and the body to *body (both owned).
 * Errors: PROTO_EINVAL, PROTO_ENOMEM, PROTO_ELIMIT, PROTO_EVALUE. */
PROTO_NODISCARD proto_err proto_delta_seal(const proto_identity *author, const proto_scope_key *key,
    const proto_seal_info *info, const proto_body *plain, const proto_rng *rng, proto_buf *header,
    proto_buf *body);

/* Open a body under a verified header: checks length, hash, the tag against the key, decrypts
 * with the associated data of the header and of the key's case, scope and epoch (which the
 * opened body then carries), unpads, decodes. Errors: PROTO_EKIND (not a delta header),
 * PROTO_EKEY, PROTO_EBODYLEN, PROTO_EBODYHASH, PROTO_EDECRYPT (also a body sealed for another
 * case, scope or epoch), PROTO_EPAD, decode errors. */
PROTO_NODISCARD proto_err proto_body_open(const proto_header *h, const proto_scope_key *key,
    const uint8_t *body, size_t len, const proto_limits *lim, proto_body *out, proto_diag *diag);
void proto_body_fini(proto_body *b);

/* ---------------------------------------------------------------------------------------- */
/* Key grants                                                                                */

/* A recipient of a key grant: its X25519 key (the manifest's box_pk of its current key). */
typedef struct proto_recipient {
    uint8_t box_pk[PROTO_BOX_PK_LEN];
} proto_recipient;

/*
 * Seal keys of one case — 1..PROTO_GRANT_EPOCHS_MAX keys, of 1..PROTO_GRANT_SCOPES_MAX of its
 * scopes, in any order (sealed sorted by scope name, then epoch) — with the case's nonce and
 * owner org to 1..PROTO_HINT_SLOTS recipients, in a KEY_GRANT header and body. The header's tag
 * is the tag of the newest key of the last scope (in name order); each recipient's hint slot
 * holds a hint only it (and the grantor) can compute; the other slots and boxes are random
 * bytes of the same sizes. Errors: PROTO_EINVAL, PROTO_ELIMIT, PROTO_EVALUE (keys of different
 * cases, a (scope, epoch) twice, a recipient twice, a case id that is not owner_org's),
 * PROTO_ENOMEM.
 */
PROTO_NODISCARD proto_err proto_key_grant_seal(const proto_identity *grantor, const char *owner_org,
    const proto_case_nonce *nonce, const proto_scope_key *const *keys, size_t nkeys,
    const proto_seal_info *info, const proto_recipient *recipients, size_t n, const proto_rng *rng,
    proto_buf *header, proto_buf *body);

/* The hint slot of a verified KEY_GRANT or NOTE header that is meant for this node, given the
 * X25519 key the manifest lists for the header's origin: 0..PROTO_HINT_SLOTS-1, or -1 when none
 * is (and for a header of any other kind). Hints depend only on the two box keys and the
 * header's (origin, seq), so both kinds are served alike; the caller then opens the slot with
 * proto_key_grant_open_slot or proto_note_open_slot by the header's kind. */
/* The same from the hint key of the (grantor, this node) pair, which proto_hint_key computes
 * once (one X25519): a node that sees many grants of one grantor keeps it (it is secret: wipe
 * it). proto_hint_key returns false for a grantor box key of low order (no slot is ever
 * meant for anyone then). */
bool proto_hint_key(const proto_identity *me, const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN],
    uint8_t k[PROTO_KEY_LEN]);
int proto_key_grant_slot_k(const proto_header *h, const uint8_t k[PROTO_KEY_LEN]);
int proto_key_grant_slot(const proto_header *h, const proto_identity *me,
    const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN]);

/* What a key grant gave this node. The caller still checks that owner_org is the org of the
 * header's origin (in the manifest, at the header's seq). */
typedef struct proto_grant {
    proto_case_id case_id;
    proto_case_nonce nonce;
    char owner_org[PROTO_ORG_MAX + 1];
    /* owned, sorted by scope name then epoch (proto_scope_key_scope, proto_scope_key_epoch);
     * the last one's tag is the header's */
    proto_scope_key **keys;
    size_t nkeys;
} proto_grant;

/* Open this node's box of a verified KEY_GRANT header. Checks length and hash, opens the box of
 * this node's slot, unpads, decodes, and checks that the case id derives from (owner org,
 * nonce) and that the tag of the last scope's newest key is the header's. On success *out is owned
 * (proto_grant_fini). Errors: PROTO_EKIND, PROTO_ENOTRECIPIENT, PROTO_EBODYLEN,
 * PROTO_EBODYHASH, PROTO_ESEAL, PROTO_EPAD, PROTO_EMISMATCH, decode errors. */
PROTO_NODISCARD proto_err proto_key_grant_open(const proto_header *h, const proto_identity *me,
    const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN], const uint8_t *body, size_t len,
    const proto_limits *lim, proto_grant *out, proto_diag *diag);
/* The same when the caller knows its slot already (proto_key_grant_slot_k): slot out of
 * 0..PROTO_HINT_SLOTS-1 gives PROTO_ENOTRECIPIENT. Both refuse a NOTE header (PROTO_EKIND). */
PROTO_NODISCARD proto_err proto_key_grant_open_slot(const proto_header *h, const proto_identity *me,
    int slot, const uint8_t *body, size_t len, const proto_limits *lim, proto_grant *out,
    proto_diag *diag);
void proto_grant_fini(proto_grant *g);

/* ---------------------------------------------------------------------------------------- */
/* Notes to a case's owner                                                                   */

/* A note asks the owner of a case to end a grant: a withdrawal of consent recorded at any
 * member's desk, or a grantee giving up its own grant (PROTOCOL.md, "Notes to an owner"). It
 * travels in a NOTE header (random tag, 4 hint slots, the owner's among them) whose body is
 * sealed like a key grant's, to the owner alone. */
typedef enum proto_note_kind {
    PROTO_NOTE_WITHDRAWAL = 1, /* the beneficiary withdrew consent (evidence required) */
    PROTO_NOTE_DROP = 2,       /* the grantee gives its grant up */
} proto_note_kind;
#define PROTO_NOTE_SCOPES_MAX 64
typedef struct proto_note {
    uint8_t kind; /* proto_note_kind */
    proto_case_id case_id;
    char owner_org[PROTO_ORG_MAX + 1]; /* the org the note is for: the case's owner */
    char grantee[PROTO_ORG_MAX + 1];   /* whose access is to end */
    char scopes[PROTO_NOTE_SCOPES_MAX][PROTO_SCOPE_NAME_MAX + 1]; /* none twice */
    size_t nscopes;                                               /* 1..PROTO_NOTE_SCOPES_MAX */
    char evidence[PROTO_TEXT_MAX + 1]; /* text; required (not empty) for a withdrawal */
    char operator_name[PROTO_TEXT_MAX + 1];
    char unix_user[64 + 1]; /* empty, or 1..64 printable ASCII without space */
} proto_note;

/* Seal a note to its owner (one recipient: the owner's box key) in a NOTE header (kind
 * PROTO_HDR_NOTE, tag 32 random bytes, the owner's hint in slot 0 and random hints in slots 1..3,
 * as a key grant to one recipient) and its body (a GRANT_BODY of 4 boxes). Random bytes are drawn
 * from rng in this order: the tag (32), the owner's ephemeral seed (32), then for slots 1..3 a
 * filler box and a hint (PROTOCOL.md, "Notes to an owner"). Strings are NUL-terminated within
 * their arrays. Errors: PROTO_EINVAL (NULL, a string without its NUL), PROTO_ELIMIT (nscopes
 * above PROTO_NOTE_SCOPES_MAX), PROTO_EVALUE (a rule of the note broken, the seal info, an owner
 * box key of low order), PROTO_ENOMEM. */
PROTO_NODISCARD proto_err proto_note_seal(const proto_identity *author, const proto_note *note,
    const proto_seal_info *info, const proto_recipient *owner, const proto_rng *rng,
    proto_buf *header, proto_buf *body);
/* Open this node's box of a verified NOTE header, its slot found with proto_key_grant_slot_k or
 * proto_key_grant_slot (which serve NOTE headers too). Checks length and hash, opens, unpads,
 * decodes and checks the note's rules; the plaintext is wiped, *out holds copies (wiped on
 * failure). The caller still checks that out->owner_org is its own org and that the header's
 * origin is a member's key. Errors: PROTO_EKIND (not a NOTE header), PROTO_ENOTRECIPIENT (slot
 * out of 0..PROTO_HINT_SLOTS-1), PROTO_EBODYLEN, PROTO_EBODYHASH, PROTO_ESEAL, PROTO_EPAD,
 * decode errors (with diag: offset in the NOTE_PLAIN). */
PROTO_NODISCARD proto_err proto_note_open_slot(const proto_header *h, const proto_identity *me,
    int slot, const uint8_t *body, size_t len, const proto_limits *lim, proto_note *out,
    proto_diag *diag);

/* ---------------------------------------------------------------------------------------- */
/* Scope states and deltas (canonical, PROTOCOL.md "Scope encoding")                        */

/* Encode a scope (state or delta) as a SCOPE message. Same scope, same bytes. */
PROTO_NODISCARD proto_err proto_scope_encode(const crdt_scope *s, proto_buf *out);
/* Decode a SCOPE message into a new scope allocated from mem (NULL: default). Rejects every
 * non-canonical encoding. Returns owned, free with crdt_scope_free. */
PROTO_NODISCARD proto_err proto_scope_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, const crdt_mem *mem, crdt_scope **out, proto_diag *diag);
/* The state's identity: BLAKE2b-256 of its SCOPE encoding. */
PROTO_NODISCARD proto_err proto_scope_digest(const crdt_scope *s, uint8_t out[PROTO_HASH_LEN]);

/* ---------------------------------------------------------------------------------------- */
/* Receipts (delivery and erasure)                                                           */

typedef enum proto_receipt_kind {
    PROTO_RECEIPT_DELIVERY = 1,
    PROTO_RECEIPT_ERASURE = 2,
} proto_receipt_kind;

typedef struct proto_receipt {
    uint8_t kind;                      /* proto_receipt_kind */
    uint8_t signer[PROTO_ORIGIN_LEN];  /* the receiving node */
    uint8_t header_id[PROTO_HASH_LEN]; /* the delta (or forget delta) received */
    uint64_t time_ms;                  /* reception time, ms since the Unix epoch */
    uint8_t sig[PROTO_SIG_LEN];
    proto_bytes signed_bytes; /* borrowed */
} proto_receipt;

/* Sign a receipt; r->signer is set from the identity. */
PROTO_NODISCARD proto_err proto_receipt_sign(
    const proto_receipt *r, const proto_identity *signer, proto_buf *out);
PROTO_NODISCARD proto_err proto_receipt_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_receipt *out, proto_diag *diag);
PROTO_NODISCARD proto_err proto_receipt_verify(const proto_receipt *r);
PROTO_NODISCARD proto_err proto_receipt_encode(const proto_receipt *r, proto_buf *out);

/* ---------------------------------------------------------------------------------------- */
/* Network manifest                                                                          */

typedef enum proto_role {
    PROTO_ROLE_COMUNE = 1,
    PROTO_ROLE_CPIA = 2,
    PROTO_ROLE_CPI = 3,
    PROTO_ROLE_PREFETTURA = 4,
    PROTO_ROLE_COOP = 5,
    PROTO_ROLE_COORD = 6,
} proto_role;

/* One origin key an org has had. Once a manifest states a key's effective time or its
 * retirement, no later manifest changes it (a node refuses one that does). */
typedef struct proto_member_key {
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint8_t box_pk[PROTO_BOX_PK_LEN];
    uint64_t effective_ms; /* headers of this key stamped before this (UTC ms) are refused */
    bool retired;          /* headers of this key after last_seq are refused */
    uint64_t last_seq;     /* 0 when not retired */
} proto_member_key;

typedef struct proto_member {
    proto_bytes org; /* [a-z0-9-]{1,32} */
    proto_bytes name;
    uint8_t role; /* proto_role */
    proto_bytes url;
    /* Oldest first, 1..PROTO_MEMBER_KEYS_MAX; every key but the last is retired. An org whose
     * last key is retired has left the network (it stays listed: org ids are never reused). */
    const proto_member_key *keys;
    size_t nkeys;
} proto_member;

typedef struct proto_purpose {
    proto_bytes id; /* [a-z0-9-]{1,32} */
    proto_bytes description;
} proto_purpose;

/* Every org ever listed, sorted by org id (unique; origins unique over all keys), purposes by
 * id (unique). A decoded manifest owns its arrays (proto_manifest_fini); strings are borrowed
 * from the input. */
typedef struct proto_manifest {
    uint64_t version;      /* >= 1; a node accepts only newer versions */
    uint64_t signed_at_ms; /* when the admin signed it (UTC ms) */
    uint8_t schema_hash[PROTO_HASH_LEN];
    uint64_t max_clock_ahead_ms; /* a delta stamped further ahead than this waits */
    uint64_t counter_limit;      /* per author, per counter field of a scope */
    const proto_member *members;
    size_t nmembers;
    const proto_purpose *purposes;
    size_t npurposes;
    uint8_t sig[PROTO_SIG_LEN];
    proto_bytes signed_bytes;
    /* private */
    proto_member *members_;
    proto_member_key *keys_;
    proto_purpose *purposes_;
} proto_manifest;

/* What `patto network sign` writes unless told otherwise. */
#define PROTO_MAX_CLOCK_AHEAD_DEFAULT_MS 600000u /* 10 minutes */
#define PROTO_COUNTER_LIMIT_DEFAULT 1000000000u

PROTO_NODISCARD proto_err proto_manifest_sign(
    const proto_manifest *m, const proto_identity *admin, proto_buf *out);
PROTO_NODISCARD proto_err proto_manifest_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_manifest *out, proto_diag *diag);
PROTO_NODISCARD proto_err proto_manifest_verify(
    const proto_manifest *m, const uint8_t admin_pk[PROTO_ORIGIN_LEN]);
PROTO_NODISCARD proto_err proto_manifest_encode(const proto_manifest *m, proto_buf *out);
/* The member one of whose keys is this origin (and that key's index in its keys), or NULL. */
const proto_member *proto_manifest_find(
    const proto_manifest *m, const uint8_t origin[PROTO_ORIGIN_LEN], size_t *key_index);
/* The member with this org id, or NULL. */
const proto_member *proto_manifest_find_org(const proto_manifest *m, const char *org, size_t len);
/* The member's current key (its last), and whether the member is still in the network (its last
 * key is not retired). */
const proto_member_key *proto_member_current(const proto_member *mb);
bool proto_member_active(const proto_member *mb);
void proto_manifest_fini(proto_manifest *m);

/* ---------------------------------------------------------------------------------------- */
/* Peer sync messages                                                                        */

/* 32 bytes: a header id, or an origin (both are 32 bytes long). */
typedef struct proto_hash_bytes {
    uint8_t b[PROTO_HASH_LEN];
} proto_hash_bytes;

/* One origin in a VV: the last header held of its contiguous log, and that header's id. */
typedef struct proto_vv_item {
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint64_t seq; /* >= 1 */
    uint8_t id[PROTO_HASH_LEN];
    uint64_t fork; /* 0, or the origin's fork point the sender holds a proof of (1..seq) */
} proto_vv_item;

/* VV: sorted by origin, unique. skip: the origins whose headers the receiver is not to send
 * in its answer (the sender gets them from another peer), sorted, unique, at most
 * PROTO_VV_MAX. Decoded: entries and skip owned. */
typedef struct proto_vv_msg {
    const proto_vv_item *entries;
    size_t n;
    const proto_hash_bytes *skip;
    size_t nskip;
    proto_vv_item *entries_; /* private */
    proto_hash_bytes *skip_; /* private */
} proto_vv_msg;

/* HEADERS: a batch of whole HEADER messages. On the wire a header that follows the previous
 * one of its origin in the batch is carried compact (PROTOCOL.md section 19): the encoder
 * compacts where that applies, the decoder rebuilds such headers whole (into memory it owns:
 * built_bytes of them, at most about twice the message) and borrows the others from its input. */
typedef struct proto_headers_msg {
    const proto_bytes *headers;
    size_t n;
    size_t built_bytes;
    proto_bytes *headers_; /* private */
    uint8_t *built_;       /* private */
} proto_headers_msg;

/* BODIES: (header id, body) pairs. */
typedef struct proto_body_item {
    uint8_t header_id[PROTO_HASH_LEN];
    proto_bytes body;
} proto_body_item;
typedef struct proto_bodies_msg {
    const proto_body_item *items;
    size_t n;
    proto_body_item *items_;
} proto_bodies_msg;

/* WANT: header ids whose bodies the sender asks for. */
typedef struct proto_want_msg {
    const proto_hash_bytes *ids;
    size_t n;
    proto_hash_bytes *ids_;
} proto_want_msg;

PROTO_NODISCARD proto_err proto_vv_encode(const proto_vv_msg *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_vv_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_vv_msg *out, proto_diag *diag);
void proto_vv_fini(proto_vv_msg *m);
PROTO_NODISCARD proto_err proto_headers_encode(const proto_headers_msg *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_headers_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, proto_headers_msg *out, proto_diag *diag);
void proto_headers_fini(proto_headers_msg *m);
PROTO_NODISCARD proto_err proto_bodies_encode(const proto_bodies_msg *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_bodies_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, proto_bodies_msg *out, proto_diag *diag);
void proto_bodies_fini(proto_bodies_msg *m);
PROTO_NODISCARD proto_err proto_want_encode(const proto_want_msg *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_want_decode(
    const uint8_t *msg, size_t len, const proto_limits *lim, proto_want_msg *out, proto_diag *diag);
void proto_want_fini(proto_want_msg *m);

/* ---------------------------------------------------------------------------------------- */
/* Control messages (CLI <-> node)                                                           */

typedef struct proto_ctl_request {
    uint64_t id;             /* chosen by the CLI, echoed in the answer */
    proto_bytes command;     /* e.g. "case.show"; [a-z0-9._-]{1,64} */
    const proto_bytes *args; /* opaque arguments */
    size_t nargs;
    proto_bytes *args_; /* private */
} proto_ctl_request;

typedef struct proto_ctl_response {
    uint64_t id;
    proto_bytes payload; /* opaque (the CLI README documents it) */
} proto_ctl_response;

typedef struct proto_ctl_error {
    uint64_t id;
    uint64_t code;       /* the CLI's exit code family (cli/README.md) */
    proto_bytes message; /* a sentence for a person, UTF-8, <= PROTO_TEXT_MAX */
} proto_ctl_error;

PROTO_NODISCARD proto_err proto_ctl_request_encode(const proto_ctl_request *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_ctl_request_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, proto_ctl_request *out, proto_diag *diag);
void proto_ctl_request_fini(proto_ctl_request *m);
PROTO_NODISCARD proto_err proto_ctl_response_encode(const proto_ctl_response *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_ctl_response_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, proto_ctl_response *out, proto_diag *diag);
PROTO_NODISCARD proto_err proto_ctl_error_encode(const proto_ctl_error *m, proto_buf *out);
PROTO_NODISCARD proto_err proto_ctl_error_decode(const uint8_t *msg, size_t len,
    const proto_limits *lim, proto_ctl_error *out, proto_diag *diag);

/* ---------------------------------------------------------------------------------------- */
/* Handshake and sessions (PROTOCOL.md "Handshake")                                          */

typedef struct proto_handshake proto_handshake;
typedef struct proto_session proto_session;

/* Does origin belong to the newest verified manifest? */
typedef bool (*proto_member_cb)(void *ctx, const uint8_t origin[PROTO_ORIGIN_LEN]);

/* Initiator, step 1: make HELLO for the member `peer`. *hs owned (proto_handshake_free);
 * `me` is borrowed until *hs is freed. Ephemeral secrets live in sodium_malloc memory. */
PROTO_NODISCARD proto_err proto_hs_initiate(const proto_identity *me,
    const uint8_t peer[PROTO_ORIGIN_LEN], const proto_rng *rng, proto_handshake **hs,
    proto_buf *hello);
/* Responder, step 2: check HELLO (sender must be a member: PROTO_ENOTMEMBER, and nothing is
 * produced), make HELLO_REPLY. is_member is called once, synchronously. *hs owned; `me`
 * borrowed until *hs is freed. */
PROTO_NODISCARD proto_err proto_hs_respond(const proto_identity *me, proto_member_cb is_member,
    void *ctx, const uint8_t *hello, size_t len, const proto_rng *rng, proto_handshake **hs,
    proto_buf *reply, proto_diag *diag);
/* Initiator, step 3: check HELLO_REPLY (PROTO_EPEER, PROTO_ESIG), make HELLO_FINISH and the
 * session (owned, proto_session_free). A failed step poisons hs (PROTO_ESTATE after). */
PROTO_NODISCARD proto_err proto_hs_finish(proto_handshake *hs, const uint8_t *reply, size_t len,
    proto_buf *finish, proto_session **out, proto_diag *diag);
/* Responder, step 4: check HELLO_FINISH (PROTO_ESIG) and make the session. */
PROTO_NODISCARD proto_err proto_hs_accept(
    proto_handshake *hs, const uint8_t *finish, size_t len, proto_session **out, proto_diag *diag);
void proto_handshake_free(proto_handshake *hs);

/* Encrypt one message as a FRAME with the next send counter. */
PROTO_NODISCARD proto_err proto_session_seal(
    proto_session *s, const uint8_t *m, size_t len, proto_buf *frame);
/* Decrypt a FRAME; its counter must be the next expected one (PROTO_EREPLAY otherwise). A
 * frame that fails authentication does not advance the counter. */
PROTO_NODISCARD proto_err proto_session_open(proto_session *s, const uint8_t *frame, size_t len,
    const proto_limits *lim, proto_buf *out, proto_diag *diag);
const uint8_t *proto_session_peer(const proto_session *s); /* the authenticated peer origin */
void proto_session_free(proto_session *s);

#ifdef __cplusplus
}
#endif
#endif /* PROTO_PROTO_H */
