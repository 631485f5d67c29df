/*
 * node.h - the parts of pattod that other directories (its main program and the tests) may
 * use: errors, logging, the configuration file, the data-directory lock and the LMDB store.
 *
 * Threads: the store and the configuration are used from the node's libuv loop thread only
 * (ARCHITECTURE.md, section 1); logging may be called from any thread.
 */
#ifndef NODE_NODE_H
#define NODE_NODE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <crdt/crdt.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NODE_NODISCARD __attribute__((warn_unused_result))
#define NODE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NODE_NODISCARD
#define NODE_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

#define NODE_ERRORS(X)                                                                             \
    X(NODE_OK, "success")                                                                          \
    X(NODE_EINVAL, "invalid argument")                                                             \
    X(NODE_ENOMEM, "out of memory")                                                                \
    X(NODE_ECONFIG, "invalid configuration")                                                       \
    X(NODE_EIO, "input/output error")                                                              \
    X(NODE_ELOCKED, "the data directory is in use by another pattod")                              \
    X(NODE_ESTORE, "store error")                                                                  \
    X(NODE_ENOTFOUND, "not found")                                                                 \
    X(NODE_EFULL, "the store reached its maximum size")                                            \
    X(NODE_ECORRUPT, "stored data is corrupt")

typedef enum node_err {
#define NODE__ENUM(name, text) name,
    NODE_ERRORS(NODE__ENUM)
#undef NODE__ENUM
        NODE_ERR_COUNT
} node_err;

/* A static sentence for an error code; never NULL. */
const char *node_strerror(node_err err);

/*
 * Where a failed call says what went wrong, in a sentence a person can act on (it names the
 * file, line, key or path involved). Functions that take a `node_errmsg *` fill it on error
 * when it is not NULL.
 */
typedef struct node_errmsg {
    char text[512];
} node_errmsg;

/* ---------------------------------------------------------------------------------------- */
/* Logging: key=value lines on stderr, level-filtered.                                       */

typedef enum node_log_level {
    NODE_LOG_ERROR = 0,
    NODE_LOG_WARN = 1,
    NODE_LOG_INFO = 2,
    NODE_LOG_DEBUG = 3,
} node_log_level;

/* Lines below `level` are dropped. Default NODE_LOG_INFO. */
void node_log_set_level(node_log_level level);
/* Where lines go (borrowed; NULL restores stderr). For tests. */
void node_log_set_output(FILE *out);
/* Parse "error", "warn", "info" or "debug". NODE_EINVAL otherwise. */
NODE_NODISCARD node_err node_log_level_parse(const char *text, node_log_level *out);

/*
 * Write one line: `ts=<RFC 3339 UTC> level=<level> event=<event> <fmt...>\n`. `fmt` carries
 * the rest as key=value pairs, e.g. node_log(NODE_LOG_INFO, "peer.up", "org=%s", org).
 */
void node_log(node_log_level level, const char *event, const char *fmt, ...) NODE_PRINTF(3, 4);
#define NODE_ERROR(event, ...) node_log(NODE_LOG_ERROR, event, __VA_ARGS__)
#define NODE_WARN(event, ...) node_log(NODE_LOG_WARN, event, __VA_ARGS__)
#define NODE_INFO(event, ...) node_log(NODE_LOG_INFO, event, __VA_ARGS__)
#define NODE_DEBUG(event, ...) node_log(NODE_LOG_DEBUG, event, __VA_ARGS__)

/* ---------------------------------------------------------------------------------------- */
/* Configuration (DATA/pattod.conf, INI; reference in node/CONFIG.md)                        */

#define NODE_ORG_MAX 32
#define NODE_URL_MAX 255
#define NODE_OPERATOR_MAX 64

typedef struct node_dial {
    char org[NODE_ORG_MAX + 1];
    char url[NODE_URL_MAX + 1];
} node_dial;

typedef struct node_config {
    char org[NODE_ORG_MAX + 1];                /* [node] org: this member's org id (required) */
    char role[16];                             /* [node] role (required) */
    char listen[NODE_URL_MAX + 1];             /* [node] listen: tcp://HOST:PORT (required) */
    char advertise[NODE_URL_MAX + 1];          /* [node] advertise: the URL peers dial */
    char operator_name[NODE_OPERATOR_MAX + 1]; /* [node] operator: default operator name */
    node_log_level log_level;                  /* [node] log_level, default info */
    uint64_t memory_bytes;         /* [node] memory_mb * 2^20: the memory budget, default 128 MiB */
    uint64_t map_size;             /* [store] map_size_mb * 2^20, default 256 MiB */
    uint64_t map_size_max;         /* [store] max_size_mb * 2^20, default 1 TiB */
    uint64_t compact_every_ms;     /* [store] compact_every_hours in ms; 0: never */
    uint64_t max_message_bytes;    /* [sync] max_message_bytes, default 16 MiB */
    uint64_t handshake_timeout_ms; /* [sync] handshake_timeout_ms, default 5000 */
    uint64_t anti_entropy_ms;      /* [sync] anti_entropy_ms, default 2000 */
    uint64_t idle_timeout_ms;      /* [sync] idle_timeout_ms, default 20000 */
    uint64_t held_per_origin;      /* [sync] held_headers_per_origin, default 10000 */
    uint64_t held_bytes;           /* [sync] held_headers_mb * 2^20; 0 (default): memory_mb / 16 */
    uint64_t pending_per_author;   /* [sync] pending_per_author: bodies waiting, default 10000 */
    uint64_t verify_each;  /* [sync] verify_each_signature: 1 checks every header's signature, 0
                              (default) one per run of chained headers; the same verdicts */
    uint8_t admin_pub[32]; /* [network] admin_pub: the pinned admin key (required) */
    char schema[NODE_URL_MAX + 1]; /* [network] schema: file in DATA, default schema.json */
    uint64_t rekey_notice_ms;      /* [network] rekey_notice_hours * 3600000, default 72 h */
    node_dial *dials;              /* [dial] ORG = URL overrides, owned */
    size_t ndials;
} node_config;

/* Fill *cfg with the defaults (no org, role or listen). */
void node_config_defaults(node_config *cfg);
/*
 * Read and validate a configuration file into *cfg (replacing what it held; call
 * node_config_fini after). Errors: NODE_EIO (cannot read: msg names the path and why),
 * NODE_ECONFIG (msg is "PATH:LINE: what is wrong"), NODE_ENOMEM.
 */
NODE_NODISCARD node_err node_config_load(const char *path, node_config *cfg, node_errmsg *msg);
void node_config_fini(node_config *cfg);
/* The URL to dial for org: the [dial] override, or NULL to use the manifest's default. */
const char *node_config_dial_url(const node_config *cfg, const char *org);

/* The URL the other members dial to reach this node: [node] advertise, else [node] listen. */
const char *node_config_advertise(const node_config *cfg);

/* ---------------------------------------------------------------------------------------- */
/* The data-directory lock: one pattod per DATA.                                             */

/*
 * Take an exclusive lock on DIR/pattod.lock (created mode 0600) and write this process id
 * into it; *fd receives the open descriptor, which holds the lock until node_lock_release.
 * Errors: NODE_ELOCKED (msg names the process holding it), NODE_EIO.
 */
NODE_NODISCARD node_err node_lock_acquire(const char *dir, int *fd, node_errmsg *msg);
void node_lock_release(int fd);

/* ---------------------------------------------------------------------------------------- */
/* The store: one LMDB environment with a named database per kind of record.                 */

typedef enum node_db {
    NODE_DB_HEADERS,
    NODE_DB_BODIES,
    NODE_DB_VV,
    NODE_DB_STATE,
    NODE_DB_KEYS,
    NODE_DB_CONSENTS,
    NODE_DB_MANIFEST,
    NODE_DB_AUDIT,
    NODE_DB_META,
    NODE_DB_FIND, /* the find index (node/CONTROL.md, case.find) */
    NODE_DB_COUNT
} node_db;

/* The LMDB name of a database ("headers", "bodies", ...). */
const char *node_db_name(node_db db);

typedef struct node_store node_store;
typedef struct node_txn node_txn;

/*
 * Open (creating if needed) the store in directory `dir` with an initial map of `map_size`
 * bytes that may grow up to `map_size_max`. Returns owned, free with node_store_close.
 * Errors: NODE_EIO, NODE_ESTORE (msg carries LMDB's own text), NODE_ENOMEM, NODE_EINVAL.
 */
NODE_NODISCARD node_err node_store_open(
    const char *dir, uint64_t map_size, uint64_t map_size_max, node_store **out, node_errmsg *msg);
void node_store_close(node_store *st);
/* The current map size in bytes. */
uint64_t node_store_map_size(const node_store *st);

/*
 * Compaction: the store file rewritten without its free pages, so that what was deleted (a
 * purged scope) leaves data.mdb. LMDB frees the pages of deleted records but never zeroes them,
 * and a live page keeps stale bytes in its unused middle; LMDB's compacting copy
 * (mdb_env_copyfd2 with MDB_CP_COMPACT) writes only the used part of each live page.
 *
 * node_store_compact writes that copy to DIR/data.mdb.compact (NODE_STORE_COMPACT_FILE),
 * fsyncs it, checks that it opens and holds as many records in each database as the store,
 * closes the environment, renames the copy over data.mdb, fsyncs DIR and opens the
 * environment again, so that st stays the same pointer. It runs in the calling thread from
 * start to end, and no transaction may be open meanwhile: in pattod that is the loop thread,
 * so the node does nothing else (no writes, no reads, no peers, no control requests) until it
 * returns; out->pause_ms says for how long.
 *
 * Before it starts: DIR's file system must have the copy's size (the store's used pages) plus
 * NODE_STORE_COMPACT_SLACK free (statvfs), or nothing is done (NODE_EIO, msg says how much is
 * needed and free). No other process may have the store open (an mdb_copy backup, mdb_stat,
 * pattod --check-config): it would read the new file through the old file's lock, so then
 * nothing is done either (NODE_EIO, msg says so).
 *
 * Crash safety: a crash before the rename leaves data.mdb as it was and a partial or whole
 * copy beside it, which node_store_remove_leftover removes at the next start; the rename is
 * atomic and the copy was fsync'd before it, so a crash after it leaves the whole new file.
 * The old lock.mdb is emptied and removed with the swap (it names the old file's last
 * transaction); LMDB makes a new one.
 *
 * On any failure before the rename the copy is removed, data.mdb is untouched and the store
 * stays usable (reopened if it had been closed). If the environment cannot be opened again
 * after the rename (or after a refused swap), the store is closed: every later transaction
 * fails with NODE_ESTORE and node_store_is_open returns false (restart pattod; the data on disk
 * is whole). Errors: NODE_EINVAL (st NULL, or called inside a transaction), NODE_EIO (disk
 * space, another process, a file operation: msg names it), NODE_ESTORE, NODE_ECORRUPT (LMDB
 * refused the copy, or the copy does not match the store), NODE_ENOMEM.
 */
#define NODE_STORE_COMPACT_FILE "data.mdb.compact"
#define NODE_STORE_COMPACT_SLACK (UINT64_C(16) << 20) /* free disk kept beyond the copy */
typedef struct node_compact {
    uint64_t pause_ms;     /* from the call to its return: how long the caller's thread was held */
    uint64_t bytes_before; /* data.mdb's size before */
    uint64_t bytes_after;  /* and after */
    uint64_t disk_needed;  /* the copy's size: the disk it took beside data.mdb until the swap */
} node_compact;
NODE_NODISCARD node_err node_store_compact(node_store *st, node_compact *out, node_errmsg *msg);
/* False once a compaction could not open the store again (see node_store_compact). */
bool node_store_is_open(const node_store *st);
/*
 * Remove DIR/data.mdb.compact, the copy of a compaction that was interrupted (a crash or a
 * kill while it was written), logging event=store.compact.leftover with its size. Call it only
 * with the data directory's lock held (node_lock_acquire) and before the store is opened: the
 * file may be the copy a running pattod is writing. *removed (may be NULL) gets the bytes
 * removed, 0 when there was none. Errors: NODE_EIO (msg names the file and why).
 */
NODE_NODISCARD node_err node_store_remove_leftover(
    const char *dir, uint64_t *removed, node_errmsg *msg);

/*
 * The body of a transaction: runs with a live transaction; returns NODE_OK to commit (write)
 * or an error to abort. A write body may run more than once (see node_store_write), so it
 * must not have effects outside the transaction that a rerun would repeat.
 */
typedef node_err (*node_txn_cb)(node_txn *txn, void *ctx);

/*
 * Run `fn` in one write transaction and commit it durably (fsync'd) before returning.
 * When the map is full the transaction is aborted, the map doubled (up to map_size_max) and
 * `fn` run again. Returns fn's error (transaction aborted), NODE_EFULL when the map cannot
 * grow further, NODE_ESTORE on an LMDB failure (msg says which).
 */
NODE_NODISCARD node_err node_store_write(
    node_store *st, node_txn_cb fn, void *ctx, node_errmsg *msg);
/* Run `fn` in a read-only transaction (a consistent snapshot). */
NODE_NODISCARD node_err node_store_read(
    node_store *st, node_txn_cb fn, void *ctx, node_errmsg *msg);

/* Inside a transaction. Keys are 1..511 bytes (LMDB's limit). */
NODE_NODISCARD node_err node_txn_put(
    node_txn *txn, node_db db, const void *key, size_t klen, const void *val, size_t vlen);
/* *val is borrowed from the store's pages: valid until the next put or del in this transaction
 * or the end of the transaction, whichever comes first (LMDB's rule for mdb_get: "valid only
 * until a subsequent update operation, or the end of the transaction"). Copy what must outlive
 * a write. NODE_ENOTFOUND if absent. */
NODE_NODISCARD node_err node_txn_get(
    node_txn *txn, node_db db, const void *key, size_t klen, const void **val, size_t *vlen);
/* NODE_TXN_MEMO_BYTES of scratch memory for the transaction's callers, zero when each attempt
 * of it begins (a rerun starts from zero again) and gone at its end: for remembering what this
 * transaction read (ledger.c keeps the places of the header ids it looked up). */
#define NODE_TXN_MEMO_BYTES 2048
void *node_txn_memo(node_txn *txn);
/* NODE_ENOTFOUND if absent. */
NODE_NODISCARD node_err node_txn_del(node_txn *txn, node_db db, const void *key, size_t klen);
/*
 * Call fn for each record whose key starts with `prefix` (plen may be 0: all), in key
 * order; key and value are borrowed for the call. fn returns true to go on, false to stop.
 */
typedef bool (*node_iter_cb)(const void *key, size_t klen, const void *val, size_t vlen, void *ctx);
NODE_NODISCARD node_err node_txn_scan(
    node_txn *txn, node_db db, const void *prefix, size_t plen, node_iter_cb fn, void *ctx);
/* The same from the first key at or after `from` (flen may be 0: the first key), while keys
 * start with `prefix`: a scan that goes on where an earlier one stopped. */
NODE_NODISCARD node_err node_txn_scan_from(node_txn *txn, node_db db, const void *prefix,
    size_t plen, const void *from, size_t flen, node_iter_cb fn, void *ctx);
/* The number of records in db, as LMDB keeps it (nothing is read). */
NODE_NODISCARD node_err node_txn_count(node_txn *txn, node_db db, size_t *n);

/* ---------------------------------------------------------------------------------------- */
/* The schema: scopes, fields, types and validation, shipped as data (node/schema/default.json, */
/* format in node/SCHEMA.md). Its identity in the manifest is the hash of the file's bytes.   */

typedef enum node_ftype {
    NODE_F_TEXT,     /* register of UTF-8 text, 1..max bytes, no control characters */
    NODE_F_DATE,     /* register of a calendar date YYYY-MM-DD */
    NODE_F_ENUM,     /* register of one of `values` */
    NODE_F_NUMBER,   /* register of an integer in [min, max], kept as canonical decimal */
    NODE_F_SET,      /* add-wins set of text or enum elements (`of`) */
    NODE_F_COUNTER,  /* PN-counter */
    NODE_F_TIMELINE, /* timeline of JSON objects */
} node_ftype;

/* A semantic check of a field (its "check" attribute, node/SCHEMA.md), applied to local writes
 * only (node_schema_check_local): what peers send is judged by the type alone. */
typedef enum node_field_check {
    NODE_CHECK_NONE,
    NODE_CHECK_CODICE_FISCALE, /* text: 16-character codice fiscale or 11-digit provisional */
    NODE_CHECK_EMAIL,          /* text: local@domain.tld */
    NODE_CHECK_NOT_FUTURE,     /* date: not after today in Europe/Rome */
} node_field_check;

typedef struct node_field {
    char *name;  /* [a-z0-9_]{1,32} */
    char *label; /* for people */
    node_ftype type;
    node_ftype of;    /* NODE_F_SET: NODE_F_TEXT or NODE_F_ENUM */
    size_t max_len;   /* text (and set of text): maximum bytes */
    int64_t min, max; /* number */
    char **values;    /* enum (and set of enum) */
    size_t nvalues;
    node_field_check check; /* NODE_CHECK_NONE when the field has no "check" */
} node_field;

typedef struct node_scope_def {
    char *name; /* [a-z0-9_]{1,32} */
    char *label;
    node_field *fields;
    size_t nfields;
} node_scope_def;

typedef struct node_schema {
    char *name;
    int64_t version;
    node_scope_def *scopes;
    size_t nscopes;
} node_schema;

/* The edit operators of the CLI grammar: scope.field=V, +=V, -=V. */
typedef enum node_edit_op { NODE_EDIT_SET, NODE_EDIT_ADD, NODE_EDIT_REMOVE } node_edit_op;

/*
 * Parse a schema from JSON text. Returns owned, free with node_schema_free. Errors:
 * NODE_ECONFIG (msg names `origin` - a file name or "schema" - and what is wrong, with the
 * JSON path, e.g. "scopes[2].fields[4].type"), NODE_ENOMEM.
 */
NODE_NODISCARD node_err node_schema_parse(
    const char *json, size_t len, const char *origin, node_schema **out, node_errmsg *msg);
void node_schema_free(node_schema *schema);
/* Does `new` only grow `old` (every scope and field of old still there with its type, no enum
 * value dropped, no text shorter, no number range narrower; labels may change, and scopes,
 * fields and values may be added)? NODE_OK, or NODE_EINVAL with msg saying what it narrows. A
 * network's schema only grows: stored values must stay valid. */
NODE_NODISCARD node_err node_schema_grows(
    const node_schema *old, const node_schema *new, node_errmsg *msg);
/* Borrowed lookups; NULL when absent. */
const node_scope_def *node_schema_scope(const node_schema *schema, const char *scope);
const node_field *node_schema_field(
    const node_schema *schema, const char *scope, const char *field);
/* The CRDT that holds a field of this type. */
crdt_type node_ftype_crdt(node_ftype type);
/* "text", "date", "enum", "number", "set", "counter", "timeline". */
const char *node_ftype_name(node_ftype type);

/*
 * Check one edit of a field against the schema and give the bytes to store: the canonical
 * form of VALUE (a number without leading zeros or '+', a timeline event re-serialised as
 * compact JSON) in `out` (NUL-terminated, at most outsize - 1 bytes). For a counter, *amount
 * receives the signed change (negated for NODE_EDIT_REMOVE). Errors: NODE_EINVAL with a
 * sentence for the operator in msg ("lingua.livello must be one of pre-A1 A1 ...", "'=' does
 * not apply to a set: use += to add or -= to remove").
 */
NODE_NODISCARD node_err node_schema_check(const node_scope_def *scope, const node_field *field,
    node_edit_op op, const char *value, char *out, size_t outsize, int64_t *amount,
    node_errmsg *msg);

/*
 * The field's semantic check (its "check" attribute) of a value node_schema_check admitted (its
 * canonical form), for an operator's edit on this node: NODE_OK, or NODE_EINVAL with a
 * sentence for the operator ("anagrafica.codice_fiscale: the check character should be S, not
 * X: a character is mistyped"). now_ms is this node's clock (a date not in the future is judged
 * by the day in Europe/Rome). Never applied to what peers send: an accept or refuse decision on
 * a received delta rests on signed data and the types alone.
 */
NODE_NODISCARD node_err node_schema_check_local(const node_scope_def *scope,
    const node_field *field, const char *value, uint64_t now_ms, node_errmsg *msg);
/* "codice_fiscale", "email", "not_future" ("" for none). */
const char *node_check_name(node_field_check check);

/* ---------------------------------------------------------------------------------------- */
/* Running a node                                                                            */

/*
 * Run pattod on data directory `dir` until SIGINT or SIGTERM: chdir into it, take its lock,
 * read pattod.conf, identity.key and the schema, open the store, listen, sync. Returns the
 * process exit status (0 after a clean stop, 1 when it could not start; the reason is
 * logged with the file, line or path involved).
 */
int node_run(const char *dir);

/*
 * Check data directory `dir` without starting a node (pattod --check-config): pattod.conf,
 * identity.key, the schema, and, when the node has a store, that the manifest in force is
 * signed by [network] admin_pub, names this schema, lists this node's key under [node] org and
 * role, and has every [dial] org as a member. Takes no lock (a running node may be checked).
 * Prints one line on stdout and returns 0 when all is well; logs the first problem and returns
 * 1 otherwise.
 */
int node_check(const char *dir);

#ifdef __cplusplus
}
#endif
#endif /* NODE_NODE_H */
