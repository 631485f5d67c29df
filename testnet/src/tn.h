/*
 * tn.h - internals of patto-testnet shared by its files (not a public header).
 *
 * A testnet lives in one directory DIR (README.md "The testnet directory"): testnet.json
 * describes the nodes and ports, DIR/NAME is node NAME's data directory, and a supervisor
 * process (super.c) runs the pattod processes and the fault proxies and answers the commands
 * on DIR/testnet.sock (README.md "Control protocol").
 *
 * Threads: none. Every function runs on the caller's thread; the supervisor runs one libuv
 * loop.
 */
#ifndef TESTNET_SRC_TN_H
#define TESTNET_SRC_TN_H

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TN_MAX_NODES 32
#define TN_PATH_MAX 1024
#define TN_SOCK "testnet.sock"
#define TN_CONF "testnet.json"

/* Exit codes of patto-testnet. */
enum {
    TN_EXIT_OK = 0,
    TN_EXIT_FAIL = 1,  /* the check failed, or a chaos run found a violation */
    TN_EXIT_USAGE = 2, /* bad command line */
    TN_EXIT_ERROR = 3, /* the testnet could not do it (a process, a file, a timeout) */
};

typedef struct tn_node {
    char name[33]; /* org id */
    char role[16];
    char origin[65]; /* Ed25519 public key, hex */
    uint16_t port;   /* where pattod listens */
} tn_node;

typedef struct tn_net {
    char dir[TN_PATH_MAX]; /* absolute */
    size_t n;
    tn_node nodes[TN_MAX_NODES];
    uint16_t proxy[TN_MAX_NODES][TN_MAX_NODES]; /* proxy[a][b]: a's connections to b */
} tn_net;

/* ---- util.c ---- */

/* The result of one child process run (tn_run). */
typedef struct tn_out {
    int status;        /* exit code, 128 + signal, or -1 when it could not run */
    char *out, *err;   /* captured stdout and stderr, NUL-terminated, owned */
    json_object *json; /* stdout parsed as JSON when it is, else NULL, owned */
} tn_out;

/* Paths of patto and pattod: PATTO_BIN / PATTOD_BIN, else those configured at build time. */
const char *tn_patto_bin(void);
const char *tn_pattod_bin(void);

/* Run argv (NULL-terminated, argv[0] a path) with stdout and stderr captured. */
tn_out tn_run(const char *const *argv);
/* Run `patto --dir DIR/NAME --json ARGS...` (args NULL-terminated). */
tn_out tn_patto(const tn_net *net, size_t i, ...);
tn_out tn_pattov(const tn_net *net, size_t i, const char *const *args);
void tn_out_free(tn_out *o);

/* Monotonic and wall clocks in milliseconds; sleep. */
uint64_t tn_now_ms(void);
uint64_t tn_wall_ms(void);
void tn_sleep_ms(unsigned ms);

/* Whole-file read (returns owned NUL-terminated text or NULL with errno), write (temporary
 * file and rename). */
char *tn_read_file(const char *path, size_t *len);
int tn_write_file(const char *path, const char *text);
bool tn_exists(const char *path);
/* A free TCP port on 127.0.0.1 (bound and released), or 0. */
uint16_t tn_free_port(void);

/* A formatted path; aborts the program on truncation (paths come from the user's DIR). */
void tn_path(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Messages for the person at the terminal: "patto-testnet: ..." on stderr. */
void tn_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* JSON helpers: a member by '/'-separated path, or NULL. */
json_object *tn_jget(json_object *o, const char *path);

/* ---- net.c ---- */

/* The fixed name order: node i's org id and role (README.md "Node names"). */
void tn_node_name(size_t i, char name[33], char role[16]);

/* Load DIR/testnet.json into net (dir made absolute). Prints why on failure. */
int tn_net_load(tn_net *net, const char *dir);
/* Index of node NAME, or -1 (printing the known names). */
int tn_net_find(const tn_net *net, const char *name);
/* Node NAME of origin hex, or "?". */
const char *tn_net_org_of(const tn_net *net, const char *origin);

/* Send one command line to the supervisor of DIR; the answer (owned) in *answer. Returns 0
 * when the answer starts with "ok", 1 when with "error" (message in *answer), -1 when the
 * supervisor cannot be reached. */
int tn_ctl(const char *dir, const char *line, char **answer, int timeout_ms);

/* The commands (argv after the command word). Return an exit code. */
int tn_cmd_up(int argc, char **argv);
int tn_cmd_down(int argc, char **argv);
int tn_cmd_status(int argc, char **argv);
int tn_cmd_check(int argc, char **argv);
int tn_cmd_fault(const char *cmd, int argc, char **argv);
int tn_cmd_proc(const char *cmd, int argc, char **argv);

/* Library forms used by chaos. */
int tn_up(const char *dir, size_t n, uint16_t base_port, bool quiet);
int tn_down(const char *dir, bool quiet);
/* Wait until every running node sees every peer up, within timeout_ms. */
int tn_wait_connected(const tn_net *net, int timeout_ms, bool quiet);
/* Wait for node i's control socket to answer; on failure, print why (the node exited: the
 * end of its log; or the timeout). */
int tn_wait_node(const tn_net *net, size_t i, int timeout_ms);

/* Each node's state as the supervisor sees it: "running", "stopped" or "down" (state[i]).
 * Returns 0, or -1 when the supervisor does not answer. */
int tn_node_states(const tn_net *net, char state[TN_MAX_NODES][16]);

/* One convergence check (check.c); a node that is stopped or down cannot be compared and
 * makes the network not converged. Fills why (owned) with what differs when not converged.
 * Returns 1 converged, 0 not, -1 error (no supervisor). */
int tn_converged(const tn_net *net, char **why);
/* Poll tn_converged until it holds or timeout_ms passes; *took_ms gets the time it took. */
int tn_wait_converged(const tn_net *net, int timeout_ms, uint64_t *took_ms, char **why);

/* ---- super.c ---- */
int tn_supervise(const char *dir, const char *pattod);

/* ---- report.c ---- */

/* What a chaos run records for its report: events (operations, faults, convergence) and
 * samples of every node's lag (headers behind the most advanced node; -1 not known). */
typedef struct tn_event {
    uint64_t t_ms; /* since the start of the run */
    char kind[16]; /* "op", "fault", "check" */
    char what[200];
} tn_event;

typedef struct tn_sample {
    uint64_t t_ms;
    int64_t lag[TN_MAX_NODES];
} tn_sample;

typedef struct tn_report {
    tn_event *events;
    size_t nevents, capevents;
    tn_sample *samples;
    size_t nsamples, capsamples;
} tn_report;

void tn_report_event(tn_report *r, uint64_t t_ms, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void tn_report_sample(tn_report *r, const tn_sample *s);
void tn_report_fini(tn_report *r);
/* Write path (JSON: the run's parameters in head, the events, the samples) and, beside it,
 * path with .json replaced by .svg (or .svg appended): per-node lag over time, faults shaded.
 * head is borrowed. Returns 0 or -1 (and prints why). */
int tn_report_write(const char *path, const tn_net *net, const tn_report *r, json_object *head);

/* ---- chaos.c ---- */
int tn_cmd_chaos(int argc, char **argv);

#endif
