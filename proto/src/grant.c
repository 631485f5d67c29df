/*
 * grant.c - key grants (PROTOCOL.md, "Key grants" and "Hints"): the keys of one case, of one or
 * more of its scopes, one per epoch, sealed to up to four recipients in four boxes of one length,
 * with a hint slot per box in the header that only the grantor and that box's recipient can
 * compute.
 *
 * Every grant looks the same from outside whatever the number of recipients: four hints of 16
 * bytes, four boxes of one length, the unused ones random bytes. Only the length of the boxes
 * shows, in whole blocks of 256 bytes, how many epochs the grant carries.
 *
 * Notes to an owner (PROTOCOL.md, "Notes to an owner") are sealed the same way, by the same code
 * (seal_boxes, open_sealed), to one recipient: the case's owner. Their header has a random tag.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define GRANT_PLAIN_FIELDS 6
#define GRANT_BODY_FIELDS 3
#define NOTE_PLAIN_FIELDS 10

/* The longest NOTE_PLAIN: fixarray head, version, kind, note kind; case id (bin 16); owner and
 * grantee (str 8 of 32); 64 scopes (array 16, str 8 of 32 each); evidence and operator (str 16
 * of 1024); unix user (str 8 of 64). Its boxes fit the key grants' body length rule. */
#define NOTE_PLAIN_MAX                                                                             \
    (4 + 18 + 2 * 34 + 3 + PROTO_NOTE_SCOPES_MAX * 34 + 2 * (3 + PROTO_TEXT_MAX) + 2               \
        + PROTO__UNIX_USER_MAX)
_Static_assert(NOTE_PLAIN_MAX / PROTO_GRANT_PAD_BLOCK + 1 <= PROTO__GRANT_BLOCKS_MAX,
    "the longest note fits the body length rule of key grants");

static const char hint_key_label[] = "patto-hint-key-v2";
static const char hint_label[] = "patto-hint-v2";

/* ---------------------------------------------------------------------------------------- */
/* Hints                                                                                     */

/* k = H("patto-hint-key-v2" || ss || grantor box_pk || recipient box_pk): one per (grantor,
 * recipient) pair. */
static void hint_key_from_ss(const uint8_t ss[PROTO_KEY_LEN],
    const uint8_t grantor_pk[PROTO_BOX_PK_LEN], const uint8_t recipient_pk[PROTO_BOX_PK_LEN],
    uint8_t k[PROTO_KEY_LEN])
{
    proto_bytes kparts[] = {
        { (const uint8_t *)hint_key_label, sizeof hint_key_label - 1 },
        { ss, PROTO_KEY_LEN },
        { grantor_pk, PROTO_BOX_PK_LEN },
        { recipient_pk, PROTO_BOX_PK_LEN },
    };
    proto__hash(k, PROTO_KEY_LEN, NULL, 0, kparts, 4);
}

/* hint = first 16 bytes of H_k("patto-hint-v2" || origin || be64(seq)). */
static void hint_from_k(const uint8_t k[PROTO_KEY_LEN], const uint8_t origin[PROTO_ORIGIN_LEN],
    uint64_t seq, uint8_t out[PROTO_HINT_LEN])
{
    uint8_t h[PROTO_HASH_LEN], be[8];
    proto__be64(be, seq);
    proto_bytes hparts[] = {
        { (const uint8_t *)hint_label, sizeof hint_label - 1 },
        { origin, PROTO_ORIGIN_LEN },
        { be, 8 },
    };
    proto__hash(h, sizeof h, k, PROTO_KEY_LEN, hparts, 3);
    memcpy(out, h, PROTO_HINT_LEN);
    proto__wipe(h, sizeof h);
}

static void hint_from_ss(const uint8_t ss[PROTO_KEY_LEN],
    const uint8_t grantor_pk[PROTO_BOX_PK_LEN], const uint8_t recipient_pk[PROTO_BOX_PK_LEN],
    const uint8_t origin[PROTO_ORIGIN_LEN], uint64_t seq, uint8_t out[PROTO_HINT_LEN])
{
    uint8_t k[PROTO_KEY_LEN];
    hint_key_from_ss(ss, grantor_pk, recipient_pk, k);
    hint_from_k(k, origin, seq, out);
    proto__wipe(k, sizeof k);
}

bool proto_hint_key(const proto_identity *me, const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN],
    uint8_t k[PROTO_KEY_LEN])
{
    uint8_t ss[PROTO_KEY_LEN];
    if (me == NULL || grantor_box_pk == NULL || k == NULL
        || !proto__box_shared(me, grantor_box_pk, ss))
        return false; /* a low-order grantor key: no hint is meant for anyone */
    hint_key_from_ss(ss, grantor_box_pk, me->box_pk, k);
    proto__wipe(ss, sizeof ss);
    return true;
}

/* Headers whose body is sealed in 4 boxes behind 4 hints: key grants and notes. */
static bool sealed_kind(uint8_t kind)
{
    return kind == PROTO_HDR_KEY_GRANT || kind == PROTO_HDR_NOTE;
}

int proto_key_grant_slot_k(const proto_header *h, const uint8_t k[PROTO_KEY_LEN])
{
    if (h == NULL || k == NULL || !sealed_kind(h->kind) || h->nhints != PROTO_HINT_SLOTS)
        return -1;
    uint8_t mine[PROTO_HINT_LEN];
    hint_from_k(k, h->origin, h->seq, mine);
    /* Every slot is compared, each in constant time, and the first match is taken without a
     * branch on the comparisons. */
    int found = -1;
    unsigned matched = 0;
    for (int i = 0; i < PROTO_HINT_SLOTS; i++) {
        unsigned eq = (unsigned)(proto__memcmp_ct(mine, h->hints[i].b, PROTO_HINT_LEN) == 0);
        unsigned first = eq & ~matched & 1u;
        found += (int)first * (i + 1); /* -1 + (i + 1) = i */
        matched |= eq;
    }
    proto__wipe(mine, sizeof mine);
    return found;
}

int proto_key_grant_slot(
    const proto_header *h, const proto_identity *me, const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN])
{
    uint8_t k[PROTO_KEY_LEN];
    if (h == NULL || !sealed_kind(h->kind) || !proto_hint_key(me, grantor_box_pk, k))
        return -1;
    int slot = proto_key_grant_slot_k(h, k);
    proto__wipe(k, sizeof k);
    return slot;
}

/* ---------------------------------------------------------------------------------------- */
/* Sealing                                                                                   */

/* The keys of a grant sorted by (scope, epoch): each scope's keys form one item. */
struct grant_plain_arg {
    const proto_case_nonce *nonce;
    const char *owner;
    size_t owner_len;
    const proto_scope_key *const *keys; /* sorted */
    size_t nkeys, nscopes;
};

/* The end of the run of keys of keys[i]'s scope. */
static size_t scope_run_end(const proto_scope_key *const *keys, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && strcmp(keys[j]->scope, keys[i]->scope) == 0)
        j++;
    return j;
}

static void enc_grant_plain(proto__w *w, const void *arg)
{
    const struct grant_plain_arg *a = arg;
    const proto_scope_key *k0 = a->keys[0];
    proto__w_head(w, GRANT_PLAIN_FIELDS, PROTO_K_GRANT_PLAIN);
    proto__w_bin(w, k0->case_id.b, PROTO_CASE_ID_LEN);
    proto__w_bin(w, a->nonce->b, PROTO_CASE_NONCE_LEN);
    proto__w_str(w, a->owner, a->owner_len);
    proto__w_array(w, a->nscopes);
    for (size_t i = 0; i < a->nkeys;) {
        size_t end = scope_run_end(a->keys, a->nkeys, i);
        proto__w_array(w, 2);
        proto__w_str(w, a->keys[i]->scope, strlen(a->keys[i]->scope));
        proto__w_array(w, end - i);
        for (; i < end; i++) {
            proto__w_array(w, 2);
            proto__w_uint(w, a->keys[i]->epoch);
            proto__w_bin(w, a->keys[i]->sec->key, PROTO_KEY_LEN);
        }
    }
}

struct grant_body_arg {
    const uint8_t *boxes; /* PROTO_HINT_SLOTS boxes of len bytes */
    size_t len;
};

static void enc_grant_body(proto__w *w, const void *arg)
{
    const struct grant_body_arg *a = arg;
    proto__w_head(w, GRANT_BODY_FIELDS, PROTO_K_GRANT_BODY);
    proto__w_array(w, PROTO_HINT_SLOTS);
    for (size_t i = 0; i < PROTO_HINT_SLOTS; i++)
        proto__w_bin(w, a->boxes + i * a->len, a->len);
}

static int key_order(const void *a, const void *b)
{
    const proto_scope_key *x = *(const proto_scope_key *const *)a;
    const proto_scope_key *y = *(const proto_scope_key *const *)b;
    int c = strcmp(x->scope, y->scope);
    return c != 0 ? c : (x->epoch > y->epoch) - (x->epoch < y->epoch);
}

/* The arguments of a seal that are values: keys (sorted by scope and epoch) of one case, no
 * (scope, epoch) twice, the case id the owner's, recipients distinct; *nscopes counted. */
static proto_err grant_args_check(const char *owner_org, const proto_case_nonce *nonce,
    const proto_scope_key *const *keys, size_t nkeys, const proto_recipient *recipients, size_t n,
    size_t *nscopes)
{
    *nscopes = nkeys > 0;
    for (size_t i = 1; i < nkeys; i++) {
        if (memcmp(keys[i]->case_id.b, keys[0]->case_id.b, PROTO_CASE_ID_LEN) != 0)
            return PROTO_EVALUE;
        if (strcmp(keys[i]->scope, keys[i - 1]->scope) != 0)
            (*nscopes)++;
        else if (keys[i]->epoch == keys[i - 1]->epoch)
            return PROTO_EVALUE;
    }
    if (*nscopes > PROTO_GRANT_SCOPES_MAX)
        return PROTO_ELIMIT;
    proto_case_id cid;
    proto_err err = proto_case_id_derive(owner_org, strlen(owner_org), nonce, &cid);
    if (err != PROTO_OK)
        return err;
    if (memcmp(cid.b, keys[0]->case_id.b, PROTO_CASE_ID_LEN) != 0)
        return PROTO_EVALUE;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (memcmp(recipients[i].box_pk, recipients[j].box_pk, PROTO_BOX_PK_LEN) == 0)
                return PROTO_EVALUE;
    return PROTO_OK;
}

/* Seal the plaintext plain (plen bytes) to recipients[0..n) (1..4, distinct: the caller's
 * check) under a header whose fixed fields (kind, origin, seq, prev, clock, tag) the caller set in
 * *h: pad it to a multiple of 256 in secret memory, fill the 4 slots, write the GRANT_BODY, hash
 * it, sign the header. The rng draw order is part of the vectors (PROTOCOL.md, "Key grants"):
 * per slot, in order, a recipient's 32-byte seed, or an unused slot's filler box and then its
 * random hint. */
static proto_err seal_boxes(const proto_identity *author, proto_header *h, const uint8_t *plain,
    size_t plen, const proto_recipient *recipients, size_t n, const proto_rng *rng,
    proto_buf *header, proto_buf *body)
{
    proto_err err = PROTO_OK;
    /* sodium_pad to a multiple of 256, at least one byte added; in secret memory */
    size_t padded_max = (plen / PROTO_GRANT_PAD_BLOCK + 1) * PROTO_GRANT_PAD_BLOCK;
    size_t box_len = PROTO__BOX_OVERHEAD + padded_max;
    uint8_t *pt = proto__secret_alloc(padded_max);
    uint8_t *seed = proto__secret_alloc(PROTO_SEED_LEN);
    uint8_t *boxes = proto__calloc(PROTO_HINT_SLOTS, box_len);
    if (pt == NULL || seed == NULL || boxes == NULL) {
        err = PROTO_ENOMEM;
        goto fail;
    }
    memcpy(pt, plain, plen);
    size_t padded;
    if (!proto__pad(pt, plen, PROTO_GRANT_PAD_BLOCK, padded_max, &padded) || padded != padded_max) {
        err = PROTO_EPAD;
        goto fail;
    }
    h->nhints = PROTO_HINT_SLOTS;
    for (size_t slot = 0; slot < PROTO_HINT_SLOTS; slot++) {
        uint8_t *box = boxes + slot * box_len;
        if (slot >= n) {
            proto__random(rng, box, box_len);
            proto__random(rng, h->hints[slot].b, PROTO_HINT_LEN);
            continue;
        }
        const uint8_t *rpk = recipients[slot].box_pk;
        uint8_t ss[PROTO_KEY_LEN];
        proto__random(rng, seed, PROTO_SEED_LEN);
        if (!proto__box_shared(author, rpk, ss)) {
            err = PROTO_EVALUE; /* a low-order recipient key */
            goto fail;
        }
        hint_from_ss(ss, author->box_pk, rpk, h->origin, h->seq, h->hints[slot].b);
        proto__wipe(ss, sizeof ss);
        if (!proto__seal(box, pt, padded, rpk, seed)) {
            err = PROTO_EVALUE;
            goto fail;
        }
    }
    struct grant_body_arg gb = { boxes, box_len };
    err = proto__encode(enc_grant_body, &gb, body);
    if (err != PROTO_OK)
        goto fail;
    h->body_len = body->len;
    proto_bytes bb = { body->p, body->len };
    proto__hash(h->body_hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    err = proto__header_sign(h, author, header);
    if (err != PROTO_OK)
        goto fail;
    goto done;
fail:
    proto_buf_free(body);
    proto_buf_free(header);
done:
    free(boxes);
    proto__secret_free(pt);
    proto__secret_free(seed);
    return err;
}

proto_err proto_key_grant_seal(const proto_identity *grantor, const char *owner_org,
    const proto_case_nonce *nonce, const proto_scope_key *const *keys, size_t nkeys,
    const proto_seal_info *info, const proto_recipient *recipients, size_t n, const proto_rng *rng,
    proto_buf *header, proto_buf *body)
{
    if (grantor == NULL || owner_org == NULL || nonce == NULL || keys == NULL || info == NULL
        || recipients == NULL || header == NULL || body == NULL)
        return PROTO_EINVAL;
    header->p = body->p = NULL;
    header->len = body->len = 0;
    if (n == 0 || n > PROTO_RECIPIENTS_MAX || nkeys == 0 || nkeys > PROTO_GRANT_EPOCHS_MAX)
        return PROTO_ELIMIT;
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i] == NULL)
            return PROTO_EINVAL;
    const proto_scope_key **sorted = proto__calloc(nkeys, sizeof *sorted);
    if (sorted == NULL)
        return PROTO_ENOMEM;
    memcpy(sorted, keys, nkeys * sizeof *sorted);
    qsort(sorted, nkeys, sizeof *sorted, key_order);
    size_t nscopes;
    proto_err err = grant_args_check(owner_org, nonce, sorted, nkeys, recipients, n, &nscopes);
    if (err == PROTO_OK && !proto__seal_info_ok(info))
        err = PROTO_EVALUE;
    proto_buf plain = { 0 };
    struct grant_plain_arg ga = { nonce, owner_org, strlen(owner_org), sorted, nkeys, nscopes };
    if (err == PROTO_OK)
        err = proto__encode(enc_grant_plain, &ga, &plain);
    if (err == PROTO_OK) {
        proto_header h = { 0 };
        proto__header_fixed(&h, PROTO_HDR_KEY_GRANT, grantor, info, sorted[nkeys - 1]->tag);
        err = seal_boxes(grantor, &h, plain.p, plain.len, recipients, n, rng, header, body);
        proto__wipe(plain.p, plain.len); /* the keys */
        proto_buf_free(&plain);
    }
    free(sorted);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Notes to an owner: the plaintext                                                          */

/* Field positions in NOTE_PLAIN, for diagnostics. */
enum {
    NF_KIND = 2,
    NF_CASE = 3,
    NF_OWNER = 4,
    NF_GRANTEE = 5,
    NF_SCOPES = 6,
    NF_EVIDENCE = 7,
    NF_OPERATOR = 8,
    NF_UNIX_USER = 9,
};

/* A note's fields as byte strings: borrowed from a proto_note on sealing, from the plaintext on
 * opening, so that one rule and one encoder serve both. */
struct note_view {
    uint64_t kind;
    const uint8_t *case_id;
    proto_bytes owner, grantee;
    proto_bytes scopes[PROTO_NOTE_SCOPES_MAX];
    size_t nscopes;
    proto_bytes evidence, operator_name, unix_user;
};

/* The value rules of a note (PROTOCOL.md, "Notes to an owner"). NULL when they hold, else the
 * reason, with *field the position of the offending field in NOTE_PLAIN and, for a scope, *item
 * its index (else SIZE_MAX). The count of scopes over 64 is the caller's (PROTO_ELIMIT). */
static const char *note_rule(const struct note_view *v, int *field, size_t *item)
{
    *item = SIZE_MAX;
    *field = NF_KIND;
    if (v->kind != PROTO_NOTE_WITHDRAWAL && v->kind != PROTO_NOTE_DROP)
        return "note kind must be 1 (withdrawal) or 2 (drop)";
    *field = NF_OWNER;
    if (!proto__valid_org(v->owner.p, v->owner.len))
        return "owner must be an org id [a-z0-9-]{1,32}";
    *field = NF_GRANTEE;
    if (!proto__valid_org(v->grantee.p, v->grantee.len))
        return "grantee must be an org id [a-z0-9-]{1,32}";
    if (v->grantee.len == v->owner.len && memcmp(v->grantee.p, v->owner.p, v->owner.len) == 0)
        return "the grantee of a note is not the case's owner";
    *field = NF_SCOPES;
    if (v->nscopes == 0)
        return "a note names at least one scope";
    for (size_t i = 0; i < v->nscopes; i++) {
        *item = i;
        if (!proto__valid_scope(v->scopes[i].p, v->scopes[i].len))
            return "scope name must match [a-z0-9_-]{1,32}";
        for (size_t j = 0; j < i; j++)
            if (v->scopes[j].len == v->scopes[i].len
                && memcmp(v->scopes[j].p, v->scopes[i].p, v->scopes[i].len) == 0)
                return "a note names each scope once";
    }
    *item = SIZE_MAX;
    *field = NF_EVIDENCE;
    if (!proto__text_or_empty(v->evidence.p, v->evidence.len))
        return "evidence must be empty or text (UTF-8, no control characters, not blank)";
    if (v->kind == PROTO_NOTE_WITHDRAWAL && v->evidence.len == 0)
        return "a withdrawal of consent carries its evidence";
    *field = NF_OPERATOR;
    if (!proto__text(v->operator_name.p, v->operator_name.len))
        return "operator must be text (UTF-8, no control characters, not blank)";
    *field = NF_UNIX_USER;
    if (!proto__valid_unix_user(v->unix_user.p, v->unix_user.len))
        return "unix user must be empty or 1..64 bytes of printable ASCII without space";
    return NULL;
}

static void w_bytes_str(proto__w *w, proto_bytes b)
{
    proto__w_str(w, b.p, b.len);
}

static void enc_note_plain(proto__w *w, const void *arg)
{
    const struct note_view *v = arg;
    proto__w_head(w, NOTE_PLAIN_FIELDS, PROTO_K_NOTE_PLAIN);
    proto__w_uint(w, v->kind);
    proto__w_bin(w, v->case_id, PROTO_CASE_ID_LEN);
    w_bytes_str(w, v->owner);
    w_bytes_str(w, v->grantee);
    proto__w_array(w, v->nscopes);
    for (size_t i = 0; i < v->nscopes; i++)
        w_bytes_str(w, v->scopes[i]);
    w_bytes_str(w, v->evidence);
    w_bytes_str(w, v->operator_name);
    w_bytes_str(w, v->unix_user);
}

/* A NUL-terminated string held in an array of size bytes, as bytes; false without a NUL. */
static bool held_str(const char *s, size_t size, proto_bytes *out)
{
    const char *nul = memchr(s, '\0', size);
    if (nul == NULL)
        return false;
    *out = (proto_bytes) { (const uint8_t *)s, (size_t)(nul - s) };
    return true;
}

proto_err proto_note_seal(const proto_identity *author, const proto_note *note,
    const proto_seal_info *info, const proto_recipient *owner, const proto_rng *rng,
    proto_buf *header, proto_buf *body)
{
    if (author == NULL || note == NULL || info == NULL || owner == NULL || header == NULL
        || body == NULL)
        return PROTO_EINVAL;
    header->p = body->p = NULL;
    header->len = body->len = 0;
    if (note->nscopes > PROTO_NOTE_SCOPES_MAX)
        return PROTO_ELIMIT;
    struct note_view v
        = { .kind = note->kind, .case_id = note->case_id.b, .nscopes = note->nscopes };
    bool held = held_str(note->owner_org, sizeof note->owner_org, &v.owner)
        && held_str(note->grantee, sizeof note->grantee, &v.grantee)
        && held_str(note->evidence, sizeof note->evidence, &v.evidence)
        && held_str(note->operator_name, sizeof note->operator_name, &v.operator_name)
        && held_str(note->unix_user, sizeof note->unix_user, &v.unix_user);
    for (size_t i = 0; held && i < note->nscopes; i++)
        held = held_str(note->scopes[i], sizeof note->scopes[i], &v.scopes[i]);
    if (!held)
        return PROTO_EINVAL; /* a string without its NUL */
    int field;
    size_t item;
    if (note_rule(&v, &field, &item) != NULL || !proto__seal_info_ok(info))
        return PROTO_EVALUE;

    proto_buf plain = { 0 };
    proto_err err = proto__encode(enc_note_plain, &v, &plain);
    if (err != PROTO_OK)
        return err;
    /* The rng draw order is part of the vectors (PROTOCOL.md, "Notes to an owner"): the tag
     * first, then the slots as a key grant's (seal_boxes). */
    uint8_t tag[PROTO_TAG_LEN];
    proto__random(rng, tag, sizeof tag);
    proto_header h = { 0 };
    proto__header_fixed(&h, PROTO_HDR_NOTE, author, info, tag);
    err = seal_boxes(author, &h, plain.p, plain.len, owner, 1, rng, header, body);
    proto__wipe(plain.p, plain.len);
    proto_buf_free(&plain);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Opening                                                                                   */

void proto_grant_fini(proto_grant *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->nkeys; i++)
        proto_scope_key_free(g->keys[i]);
    free(g->keys);
    proto__wipe(g, sizeof *g);
}

static void set_diag(proto_diag *diag, const char *reason)
{
    if (diag != NULL) {
        diag->offset = 0;
        diag->reason = reason;
    }
}

/* Decode the GRANT_BODY and open the box of slot into a new secret buffer (*pt, *padded). */
static proto_err open_box(const uint8_t *body, size_t len, const proto_limits *lim, int slot,
    const proto_identity *me, uint8_t **pt, size_t *padded, proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f, *boxes;
    size_t nb;
    proto_err err
        = proto__d_open(&d, body, len, lim, 0, PROTO_K_GRANT_BODY, GRANT_BODY_FIELDS, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_arr(&d, &f[2], PROTO_HINT_SLOTS, &boxes, &nb, "boxes must be an array of 4"))
        return proto__d_fail(&d, diag);
    if (nb != PROTO_HINT_SLOTS) {
        proto__d_err(&d, &f[2], PROTO_ESHAPE, "a grant body holds exactly 4 boxes");
        return proto__d_fail(&d, diag);
    }
    proto_bytes b[PROTO_HINT_SLOTS];
    for (size_t i = 0; i < nb; i++) {
        if (!proto__d_bin(&d, &boxes[i], len, &b[i], "a box is bin"))
            return proto__d_fail(&d, diag);
        if (b[i].len != b[0].len) {
            proto__d_err(&d, &boxes[i], PROTO_ESHAPE, "the 4 boxes of a grant have one length");
            return proto__d_fail(&d, diag);
        }
    }
    size_t l = b[0].len;
    if (l < PROTO__BOX_OVERHEAD + PROTO_GRANT_PAD_BLOCK
        || (l - PROTO__BOX_OVERHEAD) % PROTO_GRANT_PAD_BLOCK != 0) {
        proto__d_err(&d, &boxes[0], PROTO_EVALUE, "a box is 48 + a positive multiple of 256 bytes");
        return proto__d_fail(&d, diag);
    }
    *padded = l - PROTO__BOX_OVERHEAD;
    *pt = proto__secret_alloc(*padded);
    if (*pt == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    bool opened = proto__seal_open(*pt, b[slot].p, l, me);
    proto__d_close(&d);
    if (!opened) {
        proto__secret_free(*pt);
        *pt = NULL;
        return PROTO_ESEAL;
    }
    return PROTO_OK;
}

/* Decode a GRANT_PLAIN (in secret memory) into out, making its keys. */
static proto_err decode_grant_plain(
    const uint8_t *pt, size_t plen, const proto_limits *lim, proto_grant *out, proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f, *scopes;
    size_t ns;
    proto_bytes owner;
    proto_err err
        = proto__d_open(&d, pt, plen, lim, 0, PROTO_K_GRANT_PLAIN, GRANT_PLAIN_FIELDS, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_fixed(&d, &f[2], PROTO_CASE_ID_LEN, out->case_id.b, "case id must be bin of 16")
        || !proto__d_fixed(
            &d, &f[3], PROTO_CASE_NONCE_LEN, out->nonce.b, "case nonce must be bin of 16")
        || !proto__d_str(&d, &f[4], PROTO_ORG_MAX, &owner, "owner must be an org id")
        || !proto__d_arr(&d, &f[5], PROTO_GRANT_SCOPES_MAX, &scopes, &ns,
            "scopes must be an array of at most 64 [scope, keys]"))
        return proto__d_fail(&d, diag);
    if (!proto__valid_org(owner.p, owner.len)) {
        proto__d_err(&d, &f[4], PROTO_EVALUE, "owner must match [a-z0-9-]{1,32}");
        return proto__d_fail(&d, diag);
    }
    if (ns == 0) {
        proto__d_err(&d, &f[5], PROTO_EVALUE, "a grant carries at least one scope");
        return proto__d_fail(&d, diag);
    }
    memcpy(out->owner_org, owner.p, owner.len);
    out->owner_org[owner.len] = '\0';
    /* every item's shape, and the keys counted, before anything is made */
    size_t total = 0;
    for (size_t s = 0; s < ns; s++) {
        const msgpack_object *x;
        if (!proto__d_tuple(&d, &scopes[s], 2, &x, "a scope's item is [scope, keys]"))
            return proto__d_fail(&d, diag);
        if (x[1].type != MSGPACK_OBJECT_ARRAY) {
            proto__d_err(&d, &x[1], PROTO_ESHAPE, "keys must be an array of [epoch, key]");
            return proto__d_fail(&d, diag);
        }
        if (x[1].via.array.size == 0) {
            proto__d_err(&d, &x[1], PROTO_EVALUE, "a scope's item carries at least one key");
            return proto__d_fail(&d, diag);
        }
        total += x[1].via.array.size;
        if (total > PROTO_GRANT_EPOCHS_MAX) {
            proto__d_err(&d, &x[1], PROTO_ELIMIT, "a grant carries at most 256 keys");
            return proto__d_fail(&d, diag);
        }
    }
    out->keys = proto__calloc(total, sizeof *out->keys);
    if (out->keys == NULL) {
        proto__d_close(&d);
        return PROTO_ENOMEM;
    }
    char scope[PROTO_SCOPE_NAME_MAX + 1], prev_scope[PROTO_SCOPE_NAME_MAX + 1] = "";
    for (size_t s = 0; s < ns; s++) {
        const msgpack_object *x = scopes[s].via.array.ptr, *items = x[1].via.array.ptr;
        proto_bytes sc;
        if (!proto__d_str(&d, &x[0], PROTO_SCOPE_NAME_MAX, &sc, "scope must be a scope name"))
            return proto__d_fail(&d, diag);
        if (!proto__valid_scope(sc.p, sc.len)) {
            proto__d_err(&d, &x[0], PROTO_EVALUE, "scope name must match [a-z0-9_-]{1,32}");
            return proto__d_fail(&d, diag);
        }
        memcpy(scope, sc.p, sc.len);
        scope[sc.len] = '\0';
        if (s > 0 && strcmp(scope, prev_scope) <= 0) {
            proto__d_err(&d, &scopes[s], PROTO_ENONCANON,
                "scopes must be in strictly ascending order of their names");
            return proto__d_fail(&d, diag);
        }
        memcpy(prev_scope, scope, sizeof scope);
        uint64_t prev = 0;
        for (size_t i = 0; i < x[1].via.array.size; i++) {
            const msgpack_object *k;
            uint64_t epoch;
            if (!proto__d_tuple(&d, &items[i], 2, &k, "a key is [epoch, key]")
                || !proto__d_uint(&d, &k[0], UINT64_MAX, &epoch, "epoch"))
                return proto__d_fail(&d, diag);
            if (k[1].type != MSGPACK_OBJECT_BIN || k[1].via.bin.size != PROTO_KEY_LEN) {
                proto__d_err(&d, &k[1], PROTO_ESHAPE, "key must be bin of 32");
                return proto__d_fail(&d, diag);
            }
            if (epoch < PROTO_EPOCH_FIRST) {
                proto__d_err(&d, &k[0], PROTO_EVALUE, "epochs start at 1");
                return proto__d_fail(&d, diag);
            }
            if (i > 0 && epoch <= prev) {
                proto__d_err(&d, &items[i], PROTO_ENONCANON,
                    "a scope's keys must be in strictly ascending epochs");
                return proto__d_fail(&d, diag);
            }
            prev = epoch;
            /* the key bytes are read in place: pt is secret memory */
            err = proto_scope_key_from_bytes(&out->case_id, scope, epoch,
                (const uint8_t *)k[1].via.bin.ptr, &out->keys[out->nkeys]);
            if (err != PROTO_OK) {
                proto__d_close(&d);
                return err;
            }
            out->nkeys++;
        }
    }
    proto__d_close(&d);
    return PROTO_OK;
}

proto_err proto_key_grant_open(const proto_header *h, const proto_identity *me,
    const uint8_t grantor_box_pk[PROTO_BOX_PK_LEN], const uint8_t *body, size_t len,
    const proto_limits *lim, proto_grant *out, proto_diag *diag)
{
    if (h == NULL || me == NULL || grantor_box_pk == NULL || (body == NULL && len > 0)
        || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    if (h->kind != PROTO_HDR_KEY_GRANT)
        return PROTO_EKIND;
    return proto_key_grant_open_slot(
        h, me, proto_key_grant_slot(h, me, grantor_box_pk), body, len, lim, out, diag);
}

/* Check a sealed body (key grant or note) against its header, open the box of slot and unpad:
 * on success *pt is new secret memory (free with proto__secret_free) whose first *plen bytes are
 * the plaintext. The header's kind is the caller's check. */
static proto_err open_sealed(const proto_header *h, const proto_identity *me, int slot,
    const uint8_t *body, size_t len, const proto_limits *lim, uint8_t **pt, size_t *plen,
    proto_diag *diag)
{
    *pt = NULL;
    if (slot < 0 || slot >= PROTO_HINT_SLOTS)
        return PROTO_ENOTRECIPIENT;
    if (len != h->body_len)
        return PROTO_EBODYLEN;
    uint8_t hash[PROTO_HASH_LEN];
    proto_bytes bb = { body, len };
    proto__hash(hash, PROTO_HASH_LEN, NULL, 0, &bb, 1);
    if (proto__memcmp_ct(hash, h->body_hash, PROTO_HASH_LEN) != 0)
        return PROTO_EBODYHASH;
    size_t padded = 0;
    proto_err err = open_box(body, len, lim, slot, me, pt, &padded, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__unpad(*pt, padded, PROTO_GRANT_PAD_BLOCK, plen)) {
        proto__secret_free(*pt);
        *pt = NULL;
        return PROTO_EPAD;
    }
    return PROTO_OK;
}

proto_err proto_key_grant_open_slot(const proto_header *h, const proto_identity *me, int slot,
    const uint8_t *body, size_t len, const proto_limits *lim, proto_grant *out, proto_diag *diag)
{
    if (h == NULL || me == NULL || (body == NULL && len > 0) || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    if (h->kind != PROTO_HDR_KEY_GRANT)
        return PROTO_EKIND;
    uint8_t *pt;
    size_t plen;
    proto_err err = open_sealed(h, me, slot, body, len, lim, &pt, &plen, diag);
    if (err != PROTO_OK)
        return err;
    err = decode_grant_plain(pt, plen, lim, out, diag);
    if (err != PROTO_OK)
        goto fail;
    proto_case_id cid;
    if (proto_case_id_derive(out->owner_org, strlen(out->owner_org), &out->nonce, &cid) != PROTO_OK
        || memcmp(cid.b, out->case_id.b, PROTO_CASE_ID_LEN) != 0) {
        set_diag(diag, "the case id does not derive from the owner org and nonce in the grant");
        err = PROTO_EMISMATCH;
        goto fail;
    }
    if (proto__memcmp_ct(proto_scope_key_tag(out->keys[out->nkeys - 1]), h->tag, PROTO_TAG_LEN)
        != 0) {
        set_diag(diag, "the routing tag of the last scope's newest key is not the header's");
        err = PROTO_EMISMATCH;
        goto fail;
    }
    proto__secret_free(pt);
    return PROTO_OK;
fail:
    proto__secret_free(pt);
    proto_grant_fini(out);
    return err;
}

/* Copy a decoded string (its length checked against dst's size by the decoder) and its NUL. */
static void copy_str(char *dst, proto_bytes b)
{
    if (b.len > 0)
        memcpy(dst, b.p, b.len);
    dst[b.len] = '\0';
}

/* Decode a NOTE_PLAIN (in secret memory) and check its rules; its strings are copied into out. */
static proto_err decode_note_plain(
    const uint8_t *pt, size_t plen, const proto_limits *lim, proto_note *out, proto_diag *diag)
{
    proto__d d;
    const msgpack_object *f, *items;
    struct note_view v = { 0 };
    proto_err err
        = proto__d_open(&d, pt, plen, lim, 0, PROTO_K_NOTE_PLAIN, NOTE_PLAIN_FIELDS, &f, diag);
    if (err != PROTO_OK)
        return err;
    if (!proto__d_uint(
            &d, &f[NF_KIND], 255, &v.kind, "note kind must be 1 (withdrawal) or 2 (drop)")
        || !proto__d_fixed(
            &d, &f[NF_CASE], PROTO_CASE_ID_LEN, out->case_id.b, "case id must be bin of 16")
        || !proto__d_str(&d, &f[NF_OWNER], PROTO_ORG_MAX, &v.owner, "owner must be an org id")
        || !proto__d_str(&d, &f[NF_GRANTEE], PROTO_ORG_MAX, &v.grantee, "grantee must be an org id")
        || !proto__d_arr(&d, &f[NF_SCOPES], PROTO_NOTE_SCOPES_MAX, &items, &v.nscopes,
            "scopes must be an array of at most 64 scope names")
        || !proto__d_str(&d, &f[NF_EVIDENCE], PROTO_TEXT_MAX, &v.evidence,
            "evidence must be str of at most 1024 bytes")
        || !proto__d_str(&d, &f[NF_OPERATOR], PROTO_TEXT_MAX, &v.operator_name,
            "operator must be str of at most 1024 bytes")
        || !proto__d_str(&d, &f[NF_UNIX_USER], PROTO__UNIX_USER_MAX, &v.unix_user,
            "unix user must be str of at most 64 bytes"))
        return proto__d_fail(&d, diag);
    for (size_t i = 0; i < v.nscopes; i++)
        if (!proto__d_str(&d, &items[i], PROTO_SCOPE_NAME_MAX, &v.scopes[i],
                "a scope must be str of at most 32 bytes"))
            return proto__d_fail(&d, diag);
    v.case_id = out->case_id.b;
    int field;
    size_t item;
    const char *why = note_rule(&v, &field, &item);
    if (why != NULL) {
        proto__d_err(&d, item != SIZE_MAX ? &items[item] : &f[field], PROTO_EVALUE, why);
        return proto__d_fail(&d, diag);
    }
    out->kind = (uint8_t)v.kind;
    copy_str(out->owner_org, v.owner);
    copy_str(out->grantee, v.grantee);
    for (size_t i = 0; i < v.nscopes; i++)
        copy_str(out->scopes[i], v.scopes[i]);
    out->nscopes = v.nscopes;
    copy_str(out->evidence, v.evidence);
    copy_str(out->operator_name, v.operator_name);
    copy_str(out->unix_user, v.unix_user);
    proto__d_close(&d);
    return PROTO_OK;
}

proto_err proto_note_open_slot(const proto_header *h, const proto_identity *me, int slot,
    const uint8_t *body, size_t len, const proto_limits *lim, proto_note *out, proto_diag *diag)
{
    if (h == NULL || me == NULL || (body == NULL && len > 0) || out == NULL)
        return PROTO_EINVAL;
    memset(out, 0, sizeof *out);
    if (h->kind != PROTO_HDR_NOTE)
        return PROTO_EKIND;
    uint8_t *pt;
    size_t plen;
    proto_err err = open_sealed(h, me, slot, body, len, lim, &pt, &plen, diag);
    if (err != PROTO_OK)
        return err;
    err = decode_note_plain(pt, plen, lim, out, diag);
    proto__secret_free(pt); /* wipes the plaintext */
    if (err != PROTO_OK)
        proto__wipe(out, sizeof *out);
    return err;
}
