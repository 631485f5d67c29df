/*
 * cli.h - `patto`, the operator CLI: one entry point and the pure input checks it applies
 * before anything is written or sent (exposed for the unit tests).
 *
 * The CLI's grammar, exit codes and JSON output are documented in cli/README.md; it talks to
 * its node only through the control socket (node/CONTROL.md) and never opens the store.
 *
 * Threads: cli_main is meant to run once per process (it may chdir() into the data directory
 * and writes to stdout and stderr). The checks are pure and thread-safe.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CLI's exit codes (DESIGN.md, "The CLI's conventions"); a node's control-error code is one
 * of these too. */
#define CLI_ERRORS(X)                                                                              \
    X(CLI_OK, 0, "done")                                                                           \
    X(CLI_EUSAGE, 1, "usage error: see patto --help")                                              \
    X(CLI_EINPUT, 2, "input refused")                                                              \
    X(CLI_ENOTFOUND, 3, "not found or not readable here")                                          \
    X(CLI_EUNREACHABLE, 4, "the node cannot be reached")                                           \
    X(CLI_EINTERNAL, 5, "internal error")

typedef enum cli_err {
#define CLI__ENUM(name, num, text) name = num,
    CLI_ERRORS(CLI__ENUM)
#undef CLI__ENUM
} cli_err;

/* A static sentence for an exit code; never NULL. */
const char *cli_strerror(int err);

/* Run `patto` with argv (argv[0] is the program name). Returns the exit code (a cli_err). Prints
 * results to stdout and errors to stderr (or, with --json, an error object to stdout). */
int cli_main(int argc, char **argv);

/* An org id or purpose id: [a-z0-9-]{1,32}. s may be NULL (false). */
bool cli_valid_org(const char *s);
/* A role name (comune cpia cpi prefettura coop coord): its proto_role number, or 0. */
int cli_role_parse(const char *s);
/* tcp://HOST:PORT with a non-empty host name, IPv4 address or [IPv6] address and a port
 * 1-65535. */
bool cli_valid_url(const char *s);
/* YYYY-MM-DD, a real calendar date (years 1900-2200, as the schema's dates). */
bool cli_valid_date(const char *s);
/* Text for people (names, descriptions): 1..max bytes, no control characters. */
bool cli_valid_text(const char *s, size_t max);
/* Decode exactly 2*n hex digits (either case) into out. Returns false on any other input. */
bool cli_hex_decode(const char *hex, uint8_t *out, size_t n);
/* Lowercase hex of n bytes into out (2*n+1 bytes, NUL-terminated). */
void cli_hex_encode(const uint8_t *in, size_t n, char *out);

#ifdef __cplusplus
}
#endif
#endif /* CLI_CLI_H */
