/*
 * working.h - the network admin's working manifest, ADMIN/manifest.json (cli/README.md, "The
 * admin directory"), as C structures: read strictly, checked against the rules a node applies
 * to a signed manifest (proto.h, "Network manifest"), and written back whole.
 *
 * Every org ever listed stays listed with every origin key it has had (oldest first); a member
 * that a signed manifest listed carries `since`, the version that first signed it. A key that
 * `patto network rekey` appended and no manifest has signed yet carries its notice in hours
 * (`notice_hours`); `patto network sign` turns it into an effective time.
 *
 * Ownership: a cli__working owns every string and array in it (cli__working_fini).
 */
#ifndef CLI_WORKING_H
#define CLI_WORKING_H

#include "internal.h"

#define CLI__NOTICE_HOURS_DEFAULT 72u /* a new key's notice, and a node's default least notice */
#define CLI__NOTICE_HOURS_MAX 8760u   /* one year */
#define CLI__CLOCK_AHEAD_MIN_MS 1000u /* what a manifest may say of max_clock_ahead_ms */
#define CLI__CLOCK_AHEAD_MAX_MS 86400000u
#define CLI__COUNTER_LIMIT_MAX (UINT64_C(1) << 53) /* what it may say of counter_limit (>= 1) */
#define CLI__HOUR_MS UINT64_C(3600000)
#define CLI__HUMAN_MAX 9000 /* the sentence a local command prints */

/* One origin key an org has had (proto_member_key), and the notice of one not signed yet. */
typedef struct cli__wkey {
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint8_t box_pk[PROTO_BOX_PK_LEN];
    uint64_t effective_ms; /* 0 for an org's first key, and for a key not signed yet */
    bool retired;
    uint64_t last_seq;     /* 0 when not retired */
    uint64_t notice_hours; /* 1..CLI__NOTICE_HOURS_MAX: appended by rekey, not signed yet; else 0 */
} cli__wkey;

typedef struct cli__wmember {
    char *org, *name, *url; /* owned */
    unsigned role;          /* proto_role */
    cli__wkey *keys;        /* owned, oldest first, 1..PROTO_MEMBER_KEYS_MAX */
    size_t nkeys;
    uint64_t since; /* the manifest version that first signed it; 0: never signed */
} cli__wmember;

typedef struct cli__wpurpose {
    char *id, *description; /* owned */
} cli__wpurpose;

typedef struct cli__working {
    char path[4200]; /* ADMIN/manifest.json */
    uint64_t version;
    uint8_t schema_hash[PROTO_HASH_LEN];
    uint64_t max_clock_ahead_ms;
    uint64_t counter_limit;
    cli__wmember *members;
    size_t nmembers;
    cli__wpurpose *purposes;
    size_t npurposes;
} cli__working;

/* A new network's working manifest: version 0, the default options and purposes, no members.
 * Errors: CLI_EINPUT (path too long), CLI_EINTERNAL (out of memory). */
CLI__NODISCARD cli_err cli__working_new(
    cli__ctx *ctx, const char *admin, const uint8_t schema_hash[PROTO_HASH_LEN], cli__working *w);

/* Read ADMIN/manifest.json strictly and check it against the rules a node applies to a signed
 * manifest (every key but the last retired, 1..16 keys, origins unique over all keys, ...).
 * Errors: CLI_ENOTFOUND (not an admin directory, unreadable), CLI_EINPUT (the place and the rule
 * broken), CLI_EINTERNAL. */
CLI__NODISCARD cli_err cli__working_load(cli__ctx *ctx, const char *admin, cli__working *w);

/* Write it back whole (sorted: members by org, purposes by id), with a temporary file and a
 * rename (or, exclusive, a link that fails if the file exists). */
CLI__NODISCARD cli_err cli__working_save(cli__ctx *ctx, cli__working *w, bool exclusive);

void cli__working_fini(cli__working *w);

/* The member with this org id, or NULL. */
cli__wmember *cli__working_find(const cli__working *w, const char *org);

/* The member one of whose keys (retired ones too) has this origin or this box key, or NULL;
 * *key receives that key. */
cli__wmember *cli__working_key_user(const cli__working *w, const uint8_t origin[PROTO_ORIGIN_LEN],
    const uint8_t box_pk[PROTO_BOX_PK_LEN], const cli__wkey **key);

/* The member's current key (its last), and whether the org is still in the network (its current
 * key is not retired). */
cli__wkey *cli__wmember_current(const cli__wmember *m);
bool cli__wmember_active(const cli__wmember *m);

/* Append a member with one key (effective 0, not retired), from an entry; strings copied.
 * Errors: CLI_EINPUT (PROTO_MEMBERS_MAX reached), CLI_EINTERNAL. */
CLI__NODISCARD cli_err cli__working_add(cli__ctx *ctx, cli__working *w, const cli__member *e);

/* Replace the name, role and url of m with the entry's. Errors: CLI_EINTERNAL. */
CLI__NODISCARD cli_err cli__wmember_update(cli__ctx *ctx, cli__wmember *m, const cli__member *e);

/* Append a key to m. Errors: CLI_EINPUT (PROTO_MEMBER_KEYS_MAX reached), CLI_EINTERNAL. */
CLI__NODISCARD cli_err cli__wmember_push_key(cli__ctx *ctx, cli__wmember *m, const cli__wkey *k);

/* Remove the member at index i (its strings freed). */
void cli__working_remove(cli__working *w, size_t i);

/* Add the purpose id or replace its description. Errors: CLI_EINPUT (PROTO_MEMBERS_MAX
 * purposes reached), CLI_EINTERNAL. */
CLI__NODISCARD cli_err cli__working_purpose(
    cli__ctx *ctx, cli__working *w, const char *id, const char *description, bool *replaced);

/* Sort members by org and purposes by id, as a signed manifest requires. */
void cli__working_sort(cli__working *w);

#endif /* CLI_WORKING_H */
