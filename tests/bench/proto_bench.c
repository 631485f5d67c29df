/*
 * proto-bench - rates of the proto/ operations on a typical delta (a change of 12 register
 * fields of one scope), and the per-core ingest ceiling 1 / (verify + decrypt + decode)
 * measured in the same run. Run by hand: build/tests/bench/proto-bench [seconds-per-op].
 *
 *   sign     Ed25519 over the header's signed bytes (what proto_delta_seal signs)
 *   verify   proto_header_verify of a decoded header
 *   encrypt  XChaCha20-Poly1305 of the padded plaintext (what proto_delta_seal encrypts)
 *   decrypt  proto_body_open: length, hash, AEAD, unpad, plaintext decode, checks
 *   encode   proto_scope_encode of the delta
 *   decode   proto_scope_decode of the delta
 *   seal     proto_delta_seal: all of the sending side
 *   header   proto_header_decode
 */
#define _POSIX_C_SOURCE 200809L
#include <proto/proto.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define DIE(x)                                                                                     \
    do {                                                                                           \
        if ((x) != 0) {                                                                            \
            fprintf(stderr, "proto-bench: %s failed (line %d)\n", #x, __LINE__);                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct ctx {
    proto_identity *id;
    proto_scope_key *key;
    crdt_scope *delta;
    proto_buf dmsg, hdr, body;
    proto_header h;
    proto_body plain;
    uint8_t *padded;
    size_t padded_len;
    uint8_t *ct;
    uint8_t bodykey[32];
} ctx;

typedef void (*op_fn)(ctx *c);

static void op_sign(ctx *c)
{
    uint8_t sk[64], pk[32], seed[32], box[32], sig[64];
    static int init;
    static uint8_t s_sk[64];
    if (!init) {
        proto_identity_seeds(c->id, seed, box);
        crypto_sign_seed_keypair(pk, sk, seed);
        memcpy(s_sk, sk, 64);
        init = 1;
    }
    crypto_sign_detached(sig, NULL, c->h.signed_bytes.p, c->h.signed_bytes.len, s_sk);
}

static void op_verify(ctx *c)
{
    DIE(proto_header_verify(&c->h));
}

static void op_encrypt(ctx *c)
{
    static const uint8_t nonce[24];
    uint8_t ad[127] = { 0 };
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        c->ct, NULL, c->padded, c->padded_len, ad, sizeof ad, NULL, nonce, c->bodykey);
}

static void op_decrypt(ctx *c)
{
    proto_body b;
    DIE(proto_body_open(&c->h, c->key, c->body.p, c->body.len, NULL, &b, NULL));
    proto_body_fini(&b);
}

static void op_encode(ctx *c)
{
    proto_buf b;
    DIE(proto_scope_encode(c->delta, &b));
    proto_buf_free(&b);
}

static void op_decode(ctx *c)
{
    crdt_scope *s;
    DIE(proto_scope_decode(c->dmsg.p, c->dmsg.len, NULL, NULL, &s, NULL));
    crdt_scope_free(s);
}

static void op_seal(ctx *c)
{
    proto_seal_info info = { 2, { 1 }, { 1700000000000, 0 } };
    proto_buf h, b;
    DIE(proto_delta_seal(c->id, c->key, &info, &c->plain, NULL, &h, &b));
    proto_buf_free(&h);
    proto_buf_free(&b);
}

static void op_header(ctx *c)
{
    proto_header h;
    DIE(proto_header_decode(c->hdr.p, c->hdr.len, NULL, &h, NULL));
    proto_header_fini(&h);
}

/* Seconds per operation, measured for about `budget` seconds. */
static double measure(ctx *c, op_fn fn, double budget)
{
    for (int i = 0; i < 50; i++)
        fn(c);
    long n = 0, batch = 64;
    double t0 = now(), t;
    do {
        for (long i = 0; i < batch; i++)
            fn(c);
        n += batch;
        t = now() - t0;
    } while (t < budget);
    return t / (double)n;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 0.5;
    if (budget <= 0)
        budget = 0.5;
    DIE(proto_init());
    ctx c;
    memset(&c, 0, sizeof c);
    DIE(proto_identity_new(NULL, &c.id));
    proto_case_id cid;
    proto_case_nonce nonce;
    DIE(proto_case_id_new("comune-1", 8, NULL, &cid, &nonce));
    DIE(proto_scope_key_new(&cid, "anagrafica", 1, NULL, &c.key));

    /* The typical delta: 12 register writes (names, dates, identifiers) by one origin, on a
     * scope that already holds history from three origins. */
    crdt_scope *state;
    DIE(crdt_scope_new(NULL, &state));
    DIE(crdt_scope_new(NULL, &c.delta));
    crdt_origin o[3];
    for (int i = 0; i < 3; i++)
        randombytes_buf(o[i].b, 32);
    static const char *const fields[12] = { "nome", "cognome", "nome_variante", "data_nascita",
        "luogo_nascita", "cittadinanza", "sesso", "codice_fiscale", "permesso_tipo",
        "permesso_numero", "permesso_scadenza", "telefono" };
    crdt_hlc h = { 1700000000000, 0 };
    for (int round = 0; round < 3; round++)
        for (int f = 0; f < 12; f++) {
            char v[64];
            snprintf(v, sizeof v, "valore %d del campo %s", round, fields[f]);
            h.wall++;
            DIE(crdt_register_set(
                state, round == 2 ? c.delta : NULL, &o[round], &h, fields[f], v, strlen(v)));
        }
    DIE(proto_scope_encode(c.delta, &c.dmsg));
    const crdt_cc *cc = crdt_scope_cc(state);
    c.plain.kind = PROTO_BODY_DELTA;
    c.plain.vv = cc->vv;
    c.plain.nvv = cc->nvv;
    c.plain.delta = (proto_bytes) { c.dmsg.p, c.dmsg.len };
    proto_seal_info info = { 2, { 1 }, h };
    DIE(proto_delta_seal(c.id, c.key, &info, &c.plain, NULL, &c.hdr, &c.body));
    DIE(proto_header_decode(c.hdr.p, c.hdr.len, NULL, &c.h, NULL));
    c.padded_len = c.body.len - 40;
    c.padded = calloc(1, c.padded_len);
    c.ct = malloc(c.padded_len + 16);
    randombytes_buf(c.bodykey, 32);
    if (c.padded == NULL || c.ct == NULL)
        return 1;

    printf("proto-bench: typical delta = 12 register fields; delta scope %zu B, body %zu B "
           "(padded to %d), header %zu B; %.2f s per measurement\n",
        c.dmsg.len, c.body.len, PROTO_PAD_BLOCK, c.hdr.len, budget);
    struct {
        const char *name;
        op_fn fn;
        double s;
    } ops[] = {
        { "sign", op_sign, 0 },
        { "verify", op_verify, 0 },
        { "encrypt", op_encrypt, 0 },
        { "decrypt", op_decrypt, 0 },
        { "encode", op_encode, 0 },
        { "decode", op_decode, 0 },
        { "seal", op_seal, 0 },
        { "header-decode", op_header, 0 },
    };
    size_t nops = sizeof ops / sizeof ops[0];
    for (size_t i = 0; i < nops; i++) {
        ops[i].s = measure(&c, ops[i].fn, budget);
        printf("  %-14s %10.0f ops/s  %8.2f us/op\n", ops[i].name, 1.0 / ops[i].s, ops[i].s * 1e6);
    }
    double ingest = ops[1].s + ops[3].s + ops[5].s;
    printf("  ingest ceiling per core = 1 / (verify + decrypt + decode) = %.0f deltas/s "
           "(%.2f us/delta; %.0f/s with header decode)\n",
        1.0 / ingest, ingest * 1e6, 1.0 / (ingest + ops[7].s));

    free(c.padded);
    free(c.ct);
    proto_header_fini(&c.h);
    proto_buf_free(&c.hdr);
    proto_buf_free(&c.body);
    proto_buf_free(&c.dmsg);
    crdt_scope_free(state);
    crdt_scope_free(c.delta);
    proto_scope_key_free(c.key);
    proto_identity_free(c.id);
    return 0;
}
