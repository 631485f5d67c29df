/*
 * internal.h - what the files of cli/src share: the run context, error reporting, files,
 * JSON output, option parsing and the control-socket call.
 */
#ifndef CLI_INTERNAL_H
#define CLI_INTERNAL_H

#include "cli/cli.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <libintl.h>

#include <proto/proto.h>

#if defined(__GNUC__) || defined(__clang__)
#define CLI__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CLI__NODISCARD __attribute__((warn_unused_result))
#else
#define CLI__PRINTF(f, a)
#define CLI__NODISCARD
#endif

/* Messages for people go through gettext (cli/README.md, "Language"): _() translates a sentence
 * where it is used, N_() marks one in a static table (translated with _() where it is printed).
 * JSON keys, command and option names and the node's own messages are never marked. */
#define CLI__DOMAIN "patto"
#define _(s) dgettext(CLI__DOMAIN, s)
#define N_(s) s
#define P_(s, p, n) dngettext(CLI__DOMAIN, s, p, n) /* a sentence with a count */

/* Choose the language of messages (i18n.c): setlocale from the environment (LC_NUMERIC stays
 * "C"), Italian through LANGUAGE where the Italian locale is missing, and the catalogue beside
 * the executable. cli_main calls it unless --json is given (JSON stays English). */
void cli__i18n_init(void);

/* The built-in record schema (node/schema/default.json), embedded by patto_embed. */
extern const unsigned char patto_default_schema[];
extern const size_t patto_default_schema_len;

/* The files that make a directory an admin directory or a node's data directory. */
#define CLI__ADMIN_KEY "admin.key"
#define CLI__ADMIN_PUB "admin.pub"
#define CLI__NODE_CONF "pattod.conf"
#define CLI__NODE_KEY "identity.key"

#define CLI__MSG_MAX 1400
#define CLI__FILE_MAX (16u * 1024u * 1024u) /* largest file the CLI reads (manifests, JSON) */
#define CLI__OPERATOR_MAX 64

/* One run of the CLI. */
typedef struct cli__ctx {
    bool json;                 /* --json */
    const char *dir;           /* --dir, else $PATTO_DIR, else NULL */
    const char *operator_name; /* --operator, else $PATTO_OPERATOR, else "" */
    const char *operator_flag; /* --operator only (what `patto init` writes), else NULL */
    cli_err err;               /* the first failure */
    char msg[CLI__MSG_MAX];    /* its sentence */
    bool printed;              /* with --json, the command printed its result, which tells the
                                  failure (patto import's refused rows): only the exit code */
} cli__ctx;

/* Record a failure (the first one wins: it is the cause) and return code. */
cli_err cli__fail(cli__ctx *ctx, cli_err code, const char *fmt, ...) CLI__PRINTF(3, 4);

/* ---- commands: each takes the words after its name (options and positionals) ---- */

typedef struct cli__cmd cli__cmd;
typedef cli_err (*cli__run_fn)(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);

struct cli__cmd {
    const char *name;  /* "case new" */
    const char *args;  /* "[EDIT ...]" */
    const char *brief; /* one line */
    const char *help;  /* the rest of --help, may be NULL */
    cli__run_fn run_fn;
};

/* A command option: `--name VALUE`, `--name=VALUE`, or a flag. */
typedef struct cli__opt {
    const char *name;   /* without the dashes */
    const char **value; /* where the value goes (NULL for a flag) */
    bool *flag;         /* set when a flag is given (NULL for a valued option) */
} cli__opt;

/* Split argv into options (as opts describe) and positionals (at most maxpos, at least minpos;
 * pos must hold argc entries). `--` ends the options. Usage errors name the command. */
CLI__NODISCARD cli_err cli__parse(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv,
    const cli__opt *opts, size_t nopts, const char **pos, size_t minpos, size_t maxpos,
    size_t *npos);

/* A usage failure: "<sentence>; usage: patto <name> <args>". */
cli_err cli__usage(cli__ctx *ctx, const cli__cmd *cmd, const char *fmt, ...) CLI__PRINTF(3, 4);

/* The value of option `--name` as a whole number min..max: decimal digits only (no sign, no
 * space, no suffix). Errors: CLI_EUSAGE, naming the option and the range. */
CLI__NODISCARD cli_err cli__parse_u64(cli__ctx *ctx, const cli__cmd *cmd, const char *name,
    const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* A member entry (the JSON `patto init` prints and `network add` reads); strings borrowed. */
typedef struct cli__member {
    const char *org;
    const char *name;
    unsigned role; /* proto_role */
    uint8_t origin[PROTO_ORIGIN_LEN];
    uint8_t box_pk[PROTO_BOX_PK_LEN];
    const char *url;
} cli__member;

/* The entry as JSON, keys in the documented order. Returns owned (json_object_put) or NULL
 * when out of memory. */
json_object *cli__entry_new(const cli__member *m);

/* Read and check a member entry (exactly the keys org, name, role, origin, box_pk, url); what
 * names it in errors. Strings borrowed from o. Errors: CLI_EINPUT. */
CLI__NODISCARD cli_err cli__entry_read(
    cli__ctx *ctx, const char *what, json_object *o, cli__member *m);

/* Read a record schema file (it must be a JSON object with "scopes"; the node checks the
 * rest, node/SCHEMA.md) and its hash. *out owned: free(). Errors: CLI_ENOTFOUND, CLI_EINPUT. */
CLI__NODISCARD cli_err cli__schema_read(
    cli__ctx *ctx, const char *path, uint8_t **out, size_t *len, uint8_t hash[PROTO_HASH_LEN]);

/* Local commands (network.c, sign.c, init.c). */
cli_err cli__network_init(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_add(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_rekey(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_retire(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_remove(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_purpose(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_schema(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__network_sign(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__init(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);

/* Remote commands (remote.c). */
cli_err cli__status(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__digest(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__schema(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_new(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_set(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_unset(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_redact(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_log(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_show(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_list(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_find(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_grant(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_list(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_revoke(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_downgrade(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_withdraw(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__consent_drop(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__manifest_import(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__store_compact(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__inbox(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__inbox_ack(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);

/* Import and export (transfer.c). */
cli_err cli__import(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__case_export(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);
cli_err cli__export(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv);

/* ---- files (util.c) ---- */

/* Read a whole file (at most max bytes). *out is owned: free(); a NUL follows the bytes.
 * Errors: CLI_ENOTFOUND (missing or unreadable), CLI_EINPUT (too large). */
CLI__NODISCARD cli_err cli__read_file(
    cli__ctx *ctx, const char *path, size_t max, uint8_t **out, size_t *len);

/* Write a file whole or not at all: a temporary file in the same directory with mode `mode`,
 * fsync'd, then renamed over path (or, if exclusive, linked to path, failing if path exists).
 * The directory is fsync'd too, so a key file survives a crash once this returns. */
CLI__NODISCARD cli_err cli__write_file(
    cli__ctx *ctx, const char *path, const void *data, size_t len, mode_t mode, bool exclusive);

/* Does path exist (any type)? */
bool cli__exists(const char *path);

/* Is path, or a directory above it, one that holds one of the files marks[0..nmarks)? Then
 * dir (n bytes) receives that directory (absolute) and *mark the file found. path need not
 * exist yet: its parent is looked at then. */
bool cli__inside(const char *path, const char *const *marks, size_t nmarks, char *dir, size_t n,
    const char **mark);

/* "dir/name" into out (size n). Errors: CLI_EINPUT when the path is too long. */
CLI__NODISCARD cli_err cli__path(
    cli__ctx *ctx, char *out, size_t n, const char *dir, const char *name);

/* ---- JSON (util.c) ---- */

/* Parse a whole JSON document (trailing whitespace only). what names it in errors.
 * *out owned: json_object_put. Errors: CLI_EINPUT. */
CLI__NODISCARD cli_err cli__json_parse(
    cli__ctx *ctx, const char *what, const char *text, size_t len, json_object **out);

/* Print a JSON value pretty-printed to stdout, with a newline. */
CLI__NODISCARD cli_err cli__json_print(cli__ctx *ctx, json_object *obj);

/* A JSON string member of obj, or NULL if absent or not a string. */
const char *cli__json_str(json_object *obj, const char *key);

/* Add v to o under key; v is consumed whatever happens. Errors: CLI_EINTERNAL (v NULL: out of
 * memory). The _str and _u64 forms make the value. */
CLI__NODISCARD cli_err cli__jadd(cli__ctx *ctx, json_object *o, const char *key, json_object *v);
CLI__NODISCARD cli_err cli__jadd_str(
    cli__ctx *ctx, json_object *o, const char *key, const char *value);
CLI__NODISCARD cli_err cli__jadd_u64(
    cli__ctx *ctx, json_object *o, const char *key, uint64_t value);

/* A local command's result: a new JSON object (NULL, with ctx's failure recorded, when out of
 * memory), printed as JSON with --json and as the sentence human without. */
json_object *cli__result_new(cli__ctx *ctx);
CLI__NODISCARD cli_err cli__result_print(cli__ctx *ctx, json_object *obj, const char *human);

/* ---- the control socket (control.c) ---- */

/* One exchange with the node in ctx->dir (node/CONTROL.md): chdir(DATA), dial
 * ipc://control.sock, send command with the operator as args[0] followed by args, wait for the
 * answer. On a control-response *payload is the parsed JSON payload (owned: json_object_put).
 * A control-error becomes ctx's failure with the node's code and message. */
CLI__NODISCARD cli_err cli__call(cli__ctx *ctx, const char *command, const proto_bytes *args,
    size_t nargs, json_object **payload);

#endif /* CLI_INTERNAL_H */
