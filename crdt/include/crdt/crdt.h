/*
 * crdt.h - the CRDT core of patto: hybrid logical clocks, dots and causal contexts, and the
 * scope, a map from field name to a delta-state CRDT (multi-value register, add-wins set,
 * PN-counter, timeline) that shares one causal context.
 *
 * Pure C11: no I/O, no clock reads (time is an argument), no randomness, no global state.
 * Memory comes from an injectable allocator (crdt_mem). Every function that can fail returns
 * a crdt_err; results come back through out-parameters. A function that fails leaves every
 * object it was given exactly as it was (all mutators and joins are atomic).
 *
 * Threads: objects are not synchronised. One object may be used by one thread at a time;
 * different objects are independent.
 *
 * The invariants these functions keep are numbered in crdt/SPEC.md.
 */
#ifndef CRDT_CRDT_H
#define CRDT_CRDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CRDT_NODISCARD __attribute__((warn_unused_result))
#else
#define CRDT_NODISCARD
#endif

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

#define CRDT_ERRORS(X)                                                                             \
    X(CRDT_OK, "success")                                                                          \
    X(CRDT_EINVAL, "invalid argument (NULL pointer or value out of range)")                        \
    X(CRDT_ENOMEM, "out of memory")                                                                \
    X(CRDT_ECLOCK, "clock out of range: physical time beyond the 48-bit HLC limit")                \
    X(CRDT_EAHEAD, "remote clock is further ahead of local time than the allowed offset")          \
    X(CRDT_ETYPE, "field holds a value of another type")                                           \
    X(CRDT_ENOTFOUND, "no such field, element or event")                                           \
    X(CRDT_ELIMIT, "limit exceeded (name, value or entry count too large)")                        \
    X(CRDT_ECONFLICT, "inconsistent replicas: one dot carries two different payloads")             \
    X(CRDT_EOVERFLOW, "counter overflow")                                                          \
    X(CRDT_EORDER, "entries out of canonical order or inconsistent with the causal context")

typedef enum crdt_err {
#define CRDT__ENUM(name, text) name,
    CRDT_ERRORS(CRDT__ENUM)
#undef CRDT__ENUM
        CRDT_ERR_COUNT
} crdt_err;

/* A static, human-readable sentence for an error code; never NULL. */
const char *crdt_strerror(crdt_err err);

/* ---------------------------------------------------------------------------------------- */
/* Allocation                                                                                */

/*
 * An allocator: realloc semantics, except that n == 0 frees p and returns NULL. Returning
 * NULL for n > 0 is an allocation failure, reported as CRDT_ENOMEM and leaving state intact.
 * Tests inject failing allocators through this.
 */
typedef struct crdt_mem {
    void *(*realloc_fn)(void *ctx, void *p, size_t n);
    void *ctx;
} crdt_mem;

/* The libc allocator; used wherever a crdt_mem pointer is NULL. */
const crdt_mem *crdt_mem_default(void);

/* ---------------------------------------------------------------------------------------- */
/* Hybrid logical clock                                                                      */

/* Physical part: milliseconds since the Unix epoch, at most 48 bits (year 10889). */
#define CRDT_HLC_WALL_MAX ((UINT64_C(1) << 48) - 1)
/* Logical part: 16 bits. When it would overflow, the clock moves its physical part one
 * millisecond ahead and restarts the logical part at 0 (SPEC.md, I3). */
#define CRDT_HLC_LOGICAL_MAX UINT16_MAX

typedef struct crdt_hlc {
    uint64_t wall;    /* milliseconds, <= CRDT_HLC_WALL_MAX */
    uint16_t logical; /* logical counter within one wall value */
} crdt_hlc;

/* Total order: by wall, then logical. Returns <0, 0, >0. */
int crdt_hlc_cmp(const crdt_hlc *a, const crdt_hlc *b);

/*
 * Timestamp a local event. `clock` is the node's clock state (zeroed at first), `now_ms` the
 * physical time. On success *out (may alias nothing else) is strictly greater than every
 * timestamp `clock` gave or received before, and clock is advanced to it.
 * Errors: CRDT_EINVAL (NULL), CRDT_ECLOCK (now_ms or the clock beyond CRDT_HLC_WALL_MAX).
 */
CRDT_NODISCARD crdt_err crdt_hlc_send(crdt_hlc *clock, uint64_t now_ms, crdt_hlc *out);

/*
 * Merge a received timestamp into the clock. If remote->wall is more than max_ahead_ms ahead
 * of now_ms, the clock is left unchanged and CRDT_EAHEAD is returned: the caller makes the
 * delta wait (ARCHITECTURE.md, section 5: a fast clock must not win every tie). On success the
 * clock is greater than both its previous value and *remote, and *out (optional) receives it.
 * Errors: CRDT_EINVAL, CRDT_EAHEAD, CRDT_ECLOCK.
 */
CRDT_NODISCARD crdt_err crdt_hlc_recv(
    crdt_hlc *clock, uint64_t now_ms, const crdt_hlc *remote, uint64_t max_ahead_ms, crdt_hlc *out);

/* ---------------------------------------------------------------------------------------- */
/* Origins, dots and causal contexts                                                         */

/* A node's origin id: its Ed25519 public key. Ties are broken by comparing these bytes. */
#define CRDT_ORIGIN_LEN 32
typedef struct crdt_origin {
    uint8_t b[CRDT_ORIGIN_LEN];
} crdt_origin;

int crdt_origin_cmp(const crdt_origin *a, const crdt_origin *b);

/* One event of one origin: its counter-th event in a scope (counters start at 1). */
typedef struct crdt_dot {
    crdt_origin origin;
    uint64_t counter;
} crdt_dot;

/* Order: by origin bytes, then counter. */
int crdt_dot_cmp(const crdt_dot *a, const crdt_dot *b);

/*
 * A causal context: a set of dots, kept compact as a version vector (every dot of an origin
 * up to a maximum) plus the dots beyond it ("the cloud"). The representation is canonical:
 * two contexts holding the same set of dots have equal vectors and clouds (SPEC.md, I4).
 * Storage is the caller's (crdt_cc_init / crdt_cc_fini).
 */
typedef struct crdt_vv_entry {
    crdt_origin origin;
    uint64_t max; /* every dot (origin, 1..max) is in the context; max >= 1 */
} crdt_vv_entry;

typedef struct crdt_cc {
    crdt_vv_entry *vv; /* sorted by origin */
    size_t nvv, capvv;
    crdt_dot *cloud; /* sorted; each counter > vv max + 1 of its origin */
    size_t ncloud, capcloud;
    const crdt_mem *mem;
} crdt_cc;

/* Initialise an empty context that allocates from mem (NULL: crdt_mem_default()). */
void crdt_cc_init(crdt_cc *cc, const crdt_mem *mem);
/* Free what the context holds; it is empty (and reusable) afterwards. */
void crdt_cc_fini(crdt_cc *cc);
bool crdt_cc_contains(const crdt_cc *cc, const crdt_dot *dot);
/* Add one dot (counter >= 1). Errors: CRDT_EINVAL, CRDT_ENOMEM (cc unchanged). */
CRDT_NODISCARD crdt_err crdt_cc_add(crdt_cc *cc, const crdt_dot *dot);
/* dst := dst ∪ src. Errors: CRDT_EINVAL, CRDT_ENOMEM (dst unchanged). */
CRDT_NODISCARD crdt_err crdt_cc_join(crdt_cc *dst, const crdt_cc *src);
/* dst := copy of src, replacing what dst held. Errors: CRDT_EINVAL, CRDT_ENOMEM (dst unchanged). */
CRDT_NODISCARD crdt_err crdt_cc_copy(crdt_cc *dst, const crdt_cc *src);
/* The highest counter of origin in the context (vector or cloud), 0 if none. */
uint64_t crdt_cc_max(const crdt_cc *cc, const crdt_origin *origin);
/* The vector part: every counter of origin up to the returned value is present. */
uint64_t crdt_cc_vv_max(const crdt_cc *cc, const crdt_origin *origin);
/* True when every dot of b is in a. */
bool crdt_cc_includes(const crdt_cc *a, const crdt_cc *b);
bool crdt_cc_equal(const crdt_cc *a, const crdt_cc *b);

/* ---------------------------------------------------------------------------------------- */
/* Scopes                                                                                    */

/* The CRDT a field holds; fixed by the schema, checked on every write and join. */
typedef enum crdt_type {
    CRDT_REGISTER = 1, /* multi-value register of byte strings */
    CRDT_SET = 2,      /* add-wins observed-remove set of byte strings */
    CRDT_COUNTER = 3,  /* PN-counter */
    CRDT_TIMELINE = 4, /* grow-only map of events keyed by (HLC, origin), redactable */
} crdt_type;

/* Limits, checked on every write and join (CRDT_ELIMIT). */
#define CRDT_FIELD_MAX 64        /* bytes in a field name (1..64, no NUL) */
#define CRDT_VALUE_MAX 65536     /* bytes in a register value, set element or event */
#define CRDT_ENTRIES_MAX 1000000 /* entries in one scope */

typedef struct crdt_scope crdt_scope;

/* Make an empty scope (also used for deltas). Returns owned, free with crdt_scope_free.
 * Errors: CRDT_EINVAL, CRDT_ENOMEM. */
CRDT_NODISCARD crdt_err crdt_scope_new(const crdt_mem *mem, crdt_scope **out);
void crdt_scope_free(crdt_scope *s);
/* *out := a deep copy of s, owned by the caller. */
CRDT_NODISCARD crdt_err crdt_scope_clone(const crdt_scope *s, crdt_scope **out);
/* Empty s (no entries, empty context), keeping its allocator. */
void crdt_scope_clear(crdt_scope *s);

/*
 * dst := dst ⊔ src, the join of delta-state CRDTs: commutative, associative, idempotent, so
 * deltas may arrive late, twice or out of order (SPEC.md, I1-I2). src may be a delta or a
 * whole state. Errors: CRDT_EINVAL, CRDT_ENOMEM, CRDT_ETYPE (a field of different types on
 * the two sides), CRDT_ECONFLICT (a dot with two payloads), CRDT_ELIMIT; dst unchanged.
 */
CRDT_NODISCARD crdt_err crdt_scope_join(crdt_scope *dst, const crdt_scope *src);

/* Same entries and same causal context. */
bool crdt_scope_equal(const crdt_scope *a, const crdt_scope *b);
/* Borrowed: the scope's causal context, valid until the scope is next changed or freed. */
const crdt_cc *crdt_scope_cc(const crdt_scope *s);
/* True when the scope holds no entries and its context no dots. */
bool crdt_scope_empty(const crdt_scope *s);

/*
 * Delta mutators. Each one changes `s` and, when `delta` is not NULL, joins the small delta
 * it made into `delta`, so several edits can be gathered into one change. `self` is the
 * writing node's origin; its next dot is (self, highest counter of self in s + 1).
 * Field names are 1..CRDT_FIELD_MAX bytes (else CRDT_ELIMIT); values 0..CRDT_VALUE_MAX bytes
 * (a NULL value with length 0 is the empty string). On error neither s nor delta changes.
 * Common errors: CRDT_EINVAL, CRDT_ENOMEM, CRDT_ELIMIT, CRDT_ETYPE; the mutators that take
 * an HLC also CRDT_ECLOCK (wall beyond CRDT_HLC_WALL_MAX). Joining a scope or a context
 * with itself is a no-op; crdt_scope_free(NULL) does nothing.
 */

/* Register write: replaces every value the register holds now (all siblings). */
CRDT_NODISCARD crdt_err crdt_register_set(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const crdt_hlc *hlc, const char *field, const void *value, size_t len);
/* Set add: the element survives any remove that did not observe this add. */
CRDT_NODISCARD crdt_err crdt_set_add(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const char *field, const void *elem, size_t len);
/* Set remove of the adds observed here. CRDT_ENOTFOUND if the element is not a member. */
CRDT_NODISCARD crdt_err crdt_set_remove(
    crdt_scope *s, crdt_scope *delta, const char *field, const void *elem, size_t len);
/* Counter change by `amount` (negative to subtract). CRDT_EOVERFLOW if this origin's
 * increments or decrements would pass INT64_MAX in total, or the value would leave int64.
 * `counter_origin` IS the origin of the new entry's dot, not the writing node's own origin:
 * the caller gives each (author, field) an origin of its own whose dots carry nothing but that
 * author's entries of that field, so that the new entry's delta can name every earlier one as
 * the range (counter_origin, 1..n) (SPEC.md I8). Passing the node's own origin, whose dots
 * also carry its other writes, would make that range remove them. patto's nodes compute it
 * with proto_counter_origin (proto/PROTOCOL.md, "Counter origin"). */
CRDT_NODISCARD crdt_err crdt_counter_add(crdt_scope *s, crdt_scope *delta,
    const crdt_origin *counter_origin, const char *field, int64_t amount);
/* Timeline append of one event; *event (optional) receives its id, the dot. */
CRDT_NODISCARD crdt_err crdt_timeline_add(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const crdt_hlc *hlc, const char *field, const void *content, size_t len, crdt_dot *event);
/* Redact an event's content; the event (its id and HLC) stays. CRDT_ENOTFOUND if absent. */
CRDT_NODISCARD crdt_err crdt_timeline_redact(
    crdt_scope *s, crdt_scope *delta, const char *field, const crdt_dot *event);
/* Remove a field: every entry of it observed here (observed-remove). CRDT_ENOTFOUND if the
 * field holds nothing. */
CRDT_NODISCARD crdt_err crdt_field_remove(crdt_scope *s, crdt_scope *delta, const char *field);

/* ---------------------------------------------------------------------------------------- */
/* Reading. Pointers returned are borrowed until the scope is next changed or freed.         */
/* Every reader of a field returns CRDT_ENOTFOUND when the field holds nothing or an index is */
/* past the end, CRDT_ETYPE when the field holds another type, CRDT_ELIMIT for a bad name.   */

/* A byte string inside a scope. */
typedef struct crdt_bytes {
    const uint8_t *p;
    size_t len;
} crdt_bytes;

/* Fields in ascending byte order of their names. */
size_t crdt_scope_field_count(const crdt_scope *s);
CRDT_NODISCARD crdt_err crdt_scope_field_at(
    const crdt_scope *s, size_t i, const char **name, crdt_type *type);
/* Type of a field; CRDT_ENOTFOUND if it holds nothing. */
CRDT_NODISCARD crdt_err crdt_scope_field_type(
    const crdt_scope *s, const char *field, crdt_type *type);

/*
 * Register read: the values it holds, winner first (highest HLC, then highest origin bytes,
 * then highest counter), the concurrent siblings after it in that order. More than one
 * value means a conflict. CRDT_ENOTFOUND if the field holds nothing.
 */
typedef struct crdt_reg_value {
    crdt_bytes value;
    crdt_hlc hlc;
    crdt_dot dot;
} crdt_reg_value;
CRDT_NODISCARD crdt_err crdt_register_count(const crdt_scope *s, const char *field, size_t *n);
CRDT_NODISCARD crdt_err crdt_register_at(
    const crdt_scope *s, const char *field, size_t i, crdt_reg_value *out);

/* Set read: members in ascending byte order. */
CRDT_NODISCARD crdt_err crdt_set_count(const crdt_scope *s, const char *field, size_t *n);
CRDT_NODISCARD crdt_err crdt_set_at(
    const crdt_scope *s, const char *field, size_t i, crdt_bytes *out);
bool crdt_set_contains(const crdt_scope *s, const char *field, const void *elem, size_t len);

/* Counter read: the sum. CRDT_EOVERFLOW if the sum leaves int64. */
CRDT_NODISCARD crdt_err crdt_counter_value(const crdt_scope *s, const char *field, int64_t *out);

/* Timeline read: events ordered by (HLC, origin, counter). */
typedef struct crdt_event {
    crdt_dot id;
    crdt_hlc hlc;
    bool redacted;      /* content is gone; id and hlc stay */
    crdt_bytes content; /* empty when redacted */
} crdt_event;
CRDT_NODISCARD crdt_err crdt_timeline_count(const crdt_scope *s, const char *field, size_t *n);
CRDT_NODISCARD crdt_err crdt_timeline_at(
    const crdt_scope *s, const char *field, size_t i, crdt_event *out);

/* ---------------------------------------------------------------------------------------- */
/* Raw entries: what proto/ encodes and decodes. A scope is a sorted list of entries plus its
 * causal context; the order is canonical (SPEC.md, I5), so equal scopes list equal entries.  */

typedef struct crdt_entry {
    crdt_bytes field; /* 1..CRDT_FIELD_MAX bytes */
    crdt_type type;
    crdt_bytes elem; /* set element; empty for other types */
    crdt_dot dot;
    crdt_hlc hlc;      /* register and timeline; zero otherwise */
    crdt_bytes value;  /* register value or event content; empty otherwise */
    uint64_t pos, neg; /* counter: this origin's increments and decrements; zero otherwise */
    bool redacted;     /* timeline only */
} crdt_entry;

/* Order: field bytes (shorter first on a common prefix), element bytes, dot. */
int crdt_entry_cmp(const crdt_entry *a, const crdt_entry *b);

size_t crdt_scope_entry_count(const crdt_scope *s);
CRDT_NODISCARD crdt_err crdt_scope_entry_at(const crdt_scope *s, size_t i, crdt_entry *out);

/*
 * Build a scope from decoded parts: append an entry (copied) after the last one, strictly
 * greater in crdt_entry_cmp order; then set the context with crdt_scope_set_cc. Errors:
 * CRDT_EORDER (not strictly after the previous entry, or fields that mix types),
 * CRDT_EINVAL (payload not valid for its type), CRDT_ELIMIT, CRDT_ENOMEM.
 */
CRDT_NODISCARD crdt_err crdt_scope_append(crdt_scope *s, const crdt_entry *e);
/* Replace the scope's context with a copy of cc. CRDT_EORDER if an entry's dot is not in cc
 * (a scope's entries are always covered by its context, SPEC.md I6). */
CRDT_NODISCARD crdt_err crdt_scope_set_cc(crdt_scope *s, const crdt_cc *cc);

/* Sizes, for benchmarks and limits. */
typedef struct crdt_stats {
    size_t entries;
    size_t fields;
    size_t vv_entries;
    size_t cloud_dots;
    size_t payload_bytes; /* field names, elements and values */
} crdt_stats;
void crdt_scope_stats(const crdt_scope *s, crdt_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* CRDT_CRDT_H */
