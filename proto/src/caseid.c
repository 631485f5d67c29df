/*
 * caseid.c - case ids, derived from the owner org and a random nonce, and their text form:
 * "pc-" then Crockford base32 of the 16 id bytes followed by a 2-byte checksum, 29 characters
 * in groups of 5 (PROTOCOL.md, "Case ids").
 */
#include "internal.h"

#include <string.h>

static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
static const char check_label[] = "patto-case-id-v1"; /* the text checksum, unchanged in v2 */
static const char derive_label[] = "patto-case-id-v2";
#define RAW_LEN (PROTO_CASE_ID_LEN + 2)
#define CHARS 29 /* ceil(144 / 5) */

static void checksum(const proto_case_id *id, uint8_t out[2])
{
    uint8_t h[32];
    proto_bytes parts[] = { { (const uint8_t *)check_label, sizeof check_label - 1 },
        { id->b, PROTO_CASE_ID_LEN } };
    proto__hash(h, sizeof h, NULL, 0, parts, 2);
    out[0] = h[0];
    out[1] = h[1];
}

proto_err proto_case_id_derive(
    const char *org, size_t org_len, const proto_case_nonce *nonce, proto_case_id *out)
{
    if (org == NULL || nonce == NULL || out == NULL)
        return PROTO_EINVAL;
    if (!proto__valid_org((const uint8_t *)org, org_len))
        return PROTO_EVALUE;
    /* first 16 bytes of H("patto-case-id-v2" || u8(len(org)) || org || nonce) */
    uint8_t len8 = (uint8_t)org_len, h[PROTO_HASH_LEN];
    proto_bytes parts[] = {
        { (const uint8_t *)derive_label, sizeof derive_label - 1 },
        { &len8, 1 },
        { (const uint8_t *)org, org_len },
        { nonce->b, PROTO_CASE_NONCE_LEN },
    };
    proto__hash(h, sizeof h, NULL, 0, parts, 4);
    memcpy(out->b, h, PROTO_CASE_ID_LEN);
    return PROTO_OK;
}

proto_err proto_case_id_new(const char *org, size_t org_len, const proto_rng *rng,
    proto_case_id *out, proto_case_nonce *nonce)
{
    if (org == NULL || out == NULL || nonce == NULL)
        return PROTO_EINVAL;
    if (!proto__valid_org((const uint8_t *)org, org_len))
        return PROTO_EVALUE;
    proto__random(rng, nonce->b, PROTO_CASE_NONCE_LEN);
    return proto_case_id_derive(org, org_len, nonce, out);
}

proto_err proto_import_nonce(const proto_identity *me, const char *label, size_t label_len,
    const uint8_t *value, size_t value_len, proto_case_nonce *out)
{
    static const char import_label[] = "patto-import-nonce-v1";
    if (me == NULL || me->sec == NULL || label == NULL || label_len == 0 || label_len > 255
        || (value == NULL && value_len > 0) || out == NULL)
        return PROTO_EINVAL;
    uint8_t len8 = (uint8_t)label_len, h[PROTO_HASH_LEN];
    proto_bytes parts[] = {
        { (const uint8_t *)import_label, sizeof import_label - 1 },
        { &len8, 1 },
        { (const uint8_t *)label, label_len },
        { value, value_len },
    };
    proto__hash(h, sizeof h, me->sec->sign_seed, PROTO_SEED_LEN, parts, 4);
    memcpy(out->b, h, PROTO_CASE_NONCE_LEN);
    proto__wipe(h, sizeof h);
    return PROTO_OK;
}

void proto_case_id_format(const proto_case_id *id, char out[PROTO_CASE_ID_TEXT_SIZE])
{
    uint8_t raw[RAW_LEN];
    memcpy(raw, id->b, PROTO_CASE_ID_LEN);
    checksum(id, raw + PROTO_CASE_ID_LEN);
    size_t o = 0;
    out[o++] = 'p';
    out[o++] = 'c';
    out[o++] = '-';
    for (size_t c = 0; c < CHARS; c++) {
        if (c > 0 && c % 5 == 0)
            out[o++] = '-';
        /* 5 bits starting at bit 5c, most significant first; bits past the end are 0 */
        unsigned v = 0;
        for (size_t b = 0; b < 5; b++) {
            size_t bit = 5 * c + b;
            unsigned x = 0;
            if (bit < RAW_LEN * 8)
                x = (raw[bit / 8] >> (7 - bit % 8)) & 1u;
            v = (v << 1) | x;
        }
        out[o++] = alphabet[v];
    }
    out[o] = '\0';
}

static int decode_char(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        ch = (char)(ch - 'A' + 'a');
    if (ch == 'o')
        ch = '0';
    if (ch == 'i' || ch == 'l')
        ch = '1';
    const char *p = ch != '\0' ? strchr(alphabet, ch) : NULL;
    return p == NULL ? -1 : (int)(p - alphabet);
}

proto_err proto_case_id_parse(const char *text, size_t len, proto_case_id *out)
{
    if (text == NULL || out == NULL)
        return PROTO_EINVAL;
    if (len < 3 || (text[0] != 'p' && text[0] != 'P') || (text[1] != 'c' && text[1] != 'C')
        || text[2] != '-')
        return PROTO_ECASEID;
    uint8_t raw[RAW_LEN] = { 0 };
    size_t c = 0;
    for (size_t i = 3; i < len; i++) {
        if (text[i] == '-')
            continue;
        int v = decode_char(text[i]);
        if (v < 0 || c >= CHARS)
            return PROTO_ECASEID;
        for (size_t b = 0; b < 5; b++) {
            size_t bit = 5 * c + b;
            unsigned x = ((unsigned)v >> (4 - b)) & 1u;
            if (bit < RAW_LEN * 8)
                raw[bit / 8] |= (uint8_t)(x << (7 - bit % 8));
            else if (x != 0)
                return PROTO_ECASEID; /* the padding bit must be 0 */
        }
        c++;
    }
    if (c != CHARS)
        return PROTO_ECASEID;
    proto_case_id id;
    memcpy(id.b, raw, PROTO_CASE_ID_LEN);
    uint8_t sum[2];
    checksum(&id, sum);
    if (sum[0] != raw[PROTO_CASE_ID_LEN] || sum[1] != raw[PROTO_CASE_ID_LEN + 1])
        return PROTO_ECHECKSUM;
    *out = id;
    return PROTO_OK;
}
