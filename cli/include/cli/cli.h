/*
 * cli.h - `patto`, the operator CLI: one entry point, and the pure helpers of its output (exposed
 * for the unit tests). The input checks are proto's (proto.h, "Names and values").
 *
 * The CLI's grammar, exit codes and JSON output are documented in cli/README.md; it talks to
 * its node only through the control socket (node/CONTROL.md) and never opens the store.
 *
 * Threads: cli_main is meant to run once per process (it may chdir() into the data directory
 * and writes to stdout and stderr). The helpers are pure and thread-safe.
 */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CLI's exit codes (cli/README.md, "Exit codes and errors"; patto-testnet shares the table and
 * adds 6, a check that failed); a node's control-error code is one of 1-5 too. */
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

/* A time the node wrote (RFC 3339 UTC, "2026-12-06T12:29:31.123Z", CONTROL.md) as people read it,
 * in Europe/Rome civil time: "2026-12-06 13:29:31 CET" (CEST in summer), into out (n bytes, at
 * least CLI_TIME_TEXT_SIZE). Returns false, out untouched, for anything else. */
#define CLI_TIME_TEXT_SIZE 32
bool cli_rome_time(const char *utc, char *out, size_t n);

/* An instant, in milliseconds since the Unix epoch (UTC), the same way (seconds cut, not
 * rounded). Returns false, out untouched, when out is too small. */
bool cli_rome_time_ms(uint64_t utc_ms, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* CLI_CLI_H */
