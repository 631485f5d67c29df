/*
 * tn.h - internals of patto-testnet shared by its files (not a public header).
 *
 * A testnet lives in one directory DIR (README.md "The testnet directory"): testnet.json
 * describes the nodes and ports, DIR/NAME is node NAME's data directory, and a supervisor
 * process (super.c) runs the pattod processes and the fault proxies and answers the commands
 * on DIR/testnet.sock (README.md "Control protocol").
 *
 * Errors: every function that can fail returns a tn_err (TN_OK is 0) and says why on stderr
 * with tn_msg() where it fails, in a sentence a person can act on; main.c turns the error of
 * a command into its exit code, in one place (tn_exit_code).
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
#include <stdio.h>
#include <sys/types.h>

#define TN_MAX_NODES 32
#define TN_PATH_MAX 1024
#define TN_SOCK "testnet.sock"
#define TN_CONF "testnet.json"

#if defined(__GNUC__) || defined(__clang__)
#define TN_NODISCARD __attribute__((warn_unused_result))
#define TN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TN_NODISCARD
#define TN_PRINTF(f, a)
#endif

/* ---- base.c: errors, exit codes, numbers, bounded vectors (no I/O) ---- */

/* Exit codes, one table for patto-testnet and patto (cli/README.md): name, code, a word for
 * the short list, the meaning. */
#define TN_EXITS(X)                                                                                \
    X(TN_EXIT_OK, 0, "done", "done")                                                               \
    X(TN_EXIT_USAGE, 1, "usage",                                                                   \
        "usage: the command line is wrong (unknown command or option, missing or malformed "       \
        "argument or number)")                                                                     \
    X(TN_EXIT_REFUSED, 2, "input refused",                                                         \
        "input refused: the request is well-formed but not allowed (e.g. stop a node that is "     \
        "not running, --nodes 3 on a testnet of 6)")                                               \
    X(TN_EXIT_NOTFOUND, 3, "not found", "not found: no such node, no testnet in DIR")              \
    X(TN_EXIT_UNREACHABLE, 4, "unreachable",                                                       \
        "unreachable: the supervisor or a node does not answer")                                   \
    X(TN_EXIT_INTERNAL, 5, "internal error",                                                       \
        "internal error: the testnet could not do it (a process, a file)")                         \
    X(TN_EXIT_CHECK, 6, "check failed", "a check failed: not converged, or chaos found a violation")

typedef enum tn_exit {
#define TN__EXIT_ENUM(name, code, word, text) name = code,
    TN_EXITS(TN__EXIT_ENUM)
#undef TN__EXIT_ENUM
} tn_exit;

/* The errors of testnet functions, each with the exit code it ends a command with. */
#define TN_ERRORS(X)                                                                               \
    X(TN_OK, TN_EXIT_OK, "success")                                                                \
    X(TN_EUSAGE, TN_EXIT_USAGE, "the command line is wrong (see patto-testnet --help)")            \
    X(TN_EREFUSED, TN_EXIT_REFUSED, "the supervisor refused the command")                          \
    X(TN_EEXIST, TN_EXIT_REFUSED, "the directory already holds another testnet")                   \
    X(TN_ENOTFOUND, TN_EXIT_NOTFOUND, "not found")                                                 \
    X(TN_EUNREACHABLE, TN_EXIT_UNREACHABLE, "the supervisor or a node does not answer")            \
    X(TN_ENOMEM, TN_EXIT_INTERNAL, "out of memory")                                                \
    X(TN_EIO, TN_EXIT_INTERNAL, "a file could not be read or written")                             \
    X(TN_EPROC, TN_EXIT_INTERNAL, "a process could not be run, or exited")                         \
    X(TN_ETOOBIG, TN_EXIT_INTERNAL, "an answer or a file is larger than its stated maximum")       \
    X(TN_EFULL, TN_EXIT_INTERNAL, "a list reached its stated maximum length")                      \
    X(TN_EBADANSWER, TN_EXIT_INTERNAL, "an answer or a file does not have the expected form")      \
    X(TN_ENOTCONNECTED, TN_EXIT_INTERNAL, "the nodes did not all see each other in time")          \
    X(TN_EINTERRUPTED, TN_EXIT_INTERNAL, "interrupted")                                            \
    X(TN_ENOTCONVERGED, TN_EXIT_CHECK, "the nodes have not converged")                             \
    X(TN_EVIOLATION, TN_EXIT_CHECK, "the chaos run found a violation")

typedef enum tn_err {
#define TN__ERR_ENUM(name, exit, text) name,
    TN_ERRORS(TN__ERR_ENUM)
#undef TN__ERR_ENUM
        TN_ERR_COUNT
} tn_err;

/* A static sentence for an error; never NULL. */
const char *tn_strerror(tn_err err);
/* The exit code a command that failed with err ends with (the one mapping of the program). */
tn_exit tn_exit_code(tn_err err);
/* Print the exit table: every code with its meaning, one a line, each line after indent. */
void tn_print_exits(FILE *file, const char *indent);

/* The one number parser of patto-testnet: text must be decimal digits only (no sign, no
 * space, no unit), its value from min to max and not beyond 2^64-1. Returns TN_OK with *out,
 * or TN_EUSAGE (and *out untouched); prints nothing (callers name the option). */
TN_NODISCARD tn_err tn_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* A growing array of items of one size with a stated maximum length: it doubles its
 * allocation as it fills, never beyond max items, and refuses to grow past max (TN_EFULL).
 * Zero-initialised storage (TN_VEC_INIT, or tn_vec_init) is an empty vector. */
typedef struct tn_vec {
    void *items; /* owned; NULL until the first item */
    size_t n;    /* items in use */
    size_t cap;  /* items allocated */
    size_t size; /* bytes of one item */
    size_t max;  /* items at most */
} tn_vec;

#define TN_VEC_INIT(type, maxitems)                                                                \
    {                                                                                              \
        NULL, 0, 0, sizeof(type), (maxitems)                                                       \
    }
#define TN_VEC_AT(v, type, i) (&((type *)(v)->items)[i])

void tn_vec_init(tn_vec *v, size_t size, size_t max);
/* Make room for `more` items past n. TN_EFULL when n + more > max, TN_ENOMEM. */
TN_NODISCARD tn_err tn_vec_reserve(tn_vec *v, size_t more);
/* Append one zeroed item and return it (borrowed until the next call that grows v), or NULL
 * with *err set (TN_EFULL, TN_ENOMEM). */
void *tn_vec_push(tn_vec *v, tn_err *err);
/* For reading bytes into a vector of char: room for at least 1 and at most `chunk` bytes at
 * the end, keeping one byte after them for a NUL (so a byte vector holds max - 1 bytes of
 * text). *at and *len say where and how much; the caller adds what it read to n. TN_EFULL
 * when v holds max - 1 bytes already. */
TN_NODISCARD tn_err tn_vec_room(tn_vec *v, size_t chunk, char **at, size_t *len);
/* Free the items; v is empty again (its size and max kept). */
void tn_vec_fini(tn_vec *v);

/* splitmix64: the state advances by the golden ratio and the result is mixed (the chaos plan
 * and the supervisor's loss decisions). */
uint64_t tn_splitmix64(uint64_t *state);
/* The splitmix64 finaliser alone. */
uint64_t tn_mix64(uint64_t z);

/* ---- a testnet (net.c loads it) ---- */

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

/* ---- main.c: the command table ---- */

typedef enum tn_optkind { TN_OPT_FLAG, TN_OPT_NUM, TN_OPT_TEXT } tn_optkind;

typedef struct tn_optspec {
    const char *name; /* "--nodes" */
    tn_optkind kind;
    const char *meta;  /* the value's name in the usage: "N" */
    uint64_t min, max; /* TN_OPT_NUM: the accepted range */
    bool required;
    const char *help; /* one line */
} tn_optspec;

#define TN_OPTS_MAX 10
#define TN_POS_MAX (1 + TN_MAX_NODES) /* partition DIR and a group per node */

struct tn_cmdspec;

/* A command line parsed against its command's spec (every number checked). */
typedef struct tn_args {
    const struct tn_cmdspec *cmd;
    char *pos[TN_POS_MAX]; /* the positional arguments, borrowed from argv */
    size_t npos;
    bool given[TN_OPTS_MAX]; /* per option of cmd->opts */
    uint64_t num[TN_OPTS_MAX];
    const char *text[TN_OPTS_MAX];
} tn_args;

typedef struct tn_cmdspec {
    const char *name;
    const char *pos;         /* the positional arguments in the usage: "DIR A B" */
    size_t pos_min, pos_max; /* how many */
    const char *summary;     /* one line of the usage */
    const char *help;        /* the rest of `COMMAND --help`, lines of at most 92 columns */
    tn_optspec opts[TN_OPTS_MAX];
    tn_err (*run)(const tn_args *a);
    bool internal; /* listed apart: not for people */
} tn_cmdspec;

/* Whether flag or option `name` of the command was given; its number or text (asserts that
 * the command has such an option of that kind: a misspelt name is a bug). */
bool tn_given(const tn_args *a, const char *name);
uint64_t tn_num(const tn_args *a, const char *name, uint64_t dflt);
const char *tn_text(const tn_args *a, const char *name);

/* ---- util.c ---- */

/* The result of one child process run (tn_run). */
typedef struct tn_out {
    int status;        /* exit code, 128 + signal, or -1 when it could not run */
    char *out, *err;   /* captured stdout and stderr, NUL-terminated, owned */
    json_object *json; /* stdout parsed as JSON when it is, else NULL, owned */
} tn_out;

/* What tn_run keeps of a child's stdout and of its stderr: beyond it, the run counts as one
 * that could not run (status -1, and a message says so). */
#define TN_RUN_OUTPUT_MAX (64u << 20)
/* Whole-file reads: testnet.json, pid files, admin.pub; node logs; a node's data.mdb. */
#define TN_SMALL_FILE_MAX (1u << 20)
#define TN_LOG_FILE_MAX (256u << 20)
#define TN_STORE_FILE_MAX (1024u << 20)

/* Paths of patto and pattod: PATTO_BIN / PATTOD_BIN, else those configured at build time. */
const char *tn_patto_bin(void);
const char *tn_pattod_bin(void);

/* Run argv (NULL-terminated, argv[0] a path) with stdout and stderr captured. */
tn_out tn_run(const char *const *argv);
/* Run `patto --dir DIR/NAME --json ARGS...` (args NULL-terminated). */
tn_out tn_patto(const tn_net *net, size_t i, ...);
tn_out tn_pattov(const tn_net *net, size_t i, const char *const *args);
void tn_out_free(tn_out *o);
/* Node i's `patto status` as JSON (owned, free with json_object_put), or NULL when the node
 * does not answer. */
json_object *tn_node_status(const tn_net *net, size_t i);

/* Monotonic and wall clocks in milliseconds; sleep. */
uint64_t tn_now_ms(void);
uint64_t tn_wall_ms(void);
void tn_sleep_ms(unsigned ms);

/* Whole-file read of at most max bytes: *text gets the owned NUL-terminated content (and
 * *len its length, when len is not NULL). TN_ENOTFOUND (no such file), TN_EIO (errno kept),
 * TN_ETOOBIG, TN_ENOMEM; prints nothing. */
TN_NODISCARD tn_err tn_read_file(const char *path, size_t max, char **text, size_t *len);
/* Write text to path through a temporary file and a rename. TN_EIO (errno kept). */
TN_NODISCARD tn_err tn_write_file(const char *path, const char *text);
bool tn_exists(const char *path);
/* A free TCP port on 127.0.0.1 (bound and released), or 0. */
uint16_t tn_free_port(void);

/* A formatted path; aborts the program on truncation (paths come from the user's DIR). */
void tn_path(char *buf, size_t size, const char *fmt, ...) TN_PRINTF(3, 4);

/* Messages for the person at the terminal: "patto-testnet: ..." on stderr. With
 * tn_msg_collect(true) (a command run with --json) they are kept instead, for the error
 * object main prints (tn_err_collected). */
void tn_msg(const char *fmt, ...) TN_PRINTF(1, 2);
void tn_msg_collect(bool on);
/* What was kept (borrowed), "" when nothing. */
const char *tn_msg_collected(void);

/* JSON helpers: a member by '/'-separated path, or NULL. */
json_object *tn_jget(json_object *o, const char *path);

/* ---- net.c ---- */

/* The fixed name order: node i's org id and role (README.md "Node names"). */
void tn_node_name(size_t i, char name[33], char role[16]);

/* Load DIR/testnet.json into net (dir made absolute). TN_ENOTFOUND (no testnet in DIR),
 * TN_EBADANSWER (not a testnet description), TN_EIO; prints why. */
TN_NODISCARD tn_err tn_net_load(tn_net *net, const char *dir);
/* The index of node NAME, or net->n when there is none (quietly). */
size_t tn_net_index(const tn_net *net, const char *name);
/* *index of node NAME; TN_ENOTFOUND (printing the known names). */
TN_NODISCARD tn_err tn_net_find(const tn_net *net, const char *name, size_t *index);
/* Node NAME of origin hex, or "?". */
const char *tn_net_org_of(const tn_net *net, const char *origin);
/* Write "A,B C,D" into buf: the names of group 0, then of group 1, ... up to group ngroups-1
 * (group[i] is node i's; a group without nodes is left out). The partition's one spelling,
 * in the plan, the supervisor's status and `status`. */
void tn_groups_text(const tn_net *net, const int *group, int ngroups, char *buf, size_t size);

/* The most bytes an answer of the supervisor may have (a status of 32 nodes is about
 * 200 KiB); a longer answer is refused with TN_ETOOBIG. */
#define TN_CTL_ANSWER_MAX (1u << 20)

/* Send one command line to the supervisor of DIR. TN_OK: the answer started with "ok", the
 * rest is in *answer (owned). TN_EREFUSED: it started with "error", *answer is the message
 * (owned). TN_EUNREACHABLE: no supervisor, or no whole answer within timeout_ms;
 * TN_ETOOBIG, TN_EBADANSWER, TN_ENOMEM: *answer NULL. Prints nothing. */
TN_NODISCARD tn_err tn_ctl(const char *dir, const char *line, char **answer, int timeout_ms);

/* Say on stderr, in a sentence a person can act on, why asking the supervisor of dir
 * `line` failed with err (answer: tn_ctl's, the refusal). Nothing for TN_OK. */
void tn_ctl_say(const char *dir, const char *line, tn_err err, const char *answer);

/* Library forms used by chaos. */
TN_NODISCARD tn_err tn_up(const char *dir, size_t n, uint16_t base_port, bool quiet);
tn_err tn_down(const char *dir, bool quiet);
/* Wait until every running node sees every peer up, within timeout_ms. TN_ENOTCONNECTED or
 * TN_EUNREACHABLE (the supervisor). */
TN_NODISCARD tn_err tn_wait_connected(const tn_net *net, int timeout_ms, bool quiet);
/* Wait for node i's control socket to answer; on failure, print why: TN_EPROC (the node
 * exited: the end of its log) or TN_EUNREACHABLE (the timeout). */
TN_NODISCARD tn_err tn_wait_node(const tn_net *net, size_t i, int timeout_ms);

/* The commands. */
tn_err tn_cmd_up(const tn_args *a);
tn_err tn_cmd_down(const tn_args *a);
tn_err tn_cmd_fault(const tn_args *a);
tn_err tn_cmd_proc(const tn_args *a);

/* ---- status.c ---- */

/* The supervisor's `status` answer, parsed (README.md "Control protocol"). */
typedef struct tn_sv_node {
    char state[16]; /* "running", "stopped", "down"; "unknown" when not listed */
    long pid;
    unsigned long starts, crashes;
    char last_exit[48]; /* "exit-N", "signal-N", "none" */
} tn_sv_node;

typedef struct tn_sv_link {
    bool listed;
    uint64_t open, accepted, refused, dropped;
} tn_sv_link;

typedef struct tn_sv_status {
    tn_sv_node nodes[TN_MAX_NODES];
    bool partitioned;
    int group[TN_MAX_NODES]; /* with partitioned: node i's group, from 0 */
    int ngroups;
    unsigned delay[TN_MAX_NODES][TN_MAX_NODES], loss[TN_MAX_NODES][TN_MAX_NODES]; /* slow */
    tn_sv_link link[TN_MAX_NODES][TN_MAX_NODES]; /* link[a][b]: proxy a->b */
} tn_sv_status;

/* Ask the supervisor of net for its status into *st. Errors of tn_ctl; TN_EBADANSWER (a line
 * that does not parse). Prints nothing. */
TN_NODISCARD tn_err tn_sv_status_get(const tn_net *net, tn_sv_status *st);
/* The faults in force as text for people: "partition A,B C,D", "slow A B delay-ms=M
 * loss-pct=L", each followed by sep. */
void tn_sv_faults_text(
    const tn_net *net, const tn_sv_status *st, const char *sep, char *buf, size_t size);
/* Each node's state as the supervisor sees it: "running", "stopped" or "down" (state[i]).
 * Errors of tn_sv_status_get. */
TN_NODISCARD tn_err tn_node_states(const tn_net *net, char state[TN_MAX_NODES][16]);

/* Lag, as README.md says: the headers a node is behind the most advanced node, that is the
 * highest header count of the nodes that answered minus the node's own. headers[i] is node
 * i's count (the sum of its version vector: tn_vv_headers), -1 when it did not answer (lag[i]
 * is -1 then). */
void tn_lags(size_t n, const int64_t *headers, int64_t *lag);
/* The headers a version vector ({origin: seq}) counts, or -1 when vv is NULL. */
int64_t tn_vv_headers(json_object *vv);

tn_err tn_cmd_status(const tn_args *a);

/* ---- check.c ---- */

/* The most entries a convergence check lists (the rest are counted, not listed). */
#define TN_GAPS_MAX 1000

/* One convergence check (README.md "Convergence"); a node that is stopped or down cannot be
 * compared and makes the network not converged. TN_OK converged; TN_ENOTCONVERGED with
 * *gaps (owned JSON array; each entry says what is missing where, README.md "check --json")
 * and *omitted (entries beyond TN_GAPS_MAX); TN_EUNREACHABLE (no supervisor), TN_ENOMEM.
 * gaps is NULL unless TN_ENOTCONVERGED. */
TN_NODISCARD tn_err tn_converged(const tn_net *net, json_object **gaps, size_t *omitted);
/* The gaps as text for people, one line each, at most 24 lines and then "  ...". Owned. */
char *tn_gaps_text(json_object *gaps);
/* Poll tn_converged until it holds, timeout_ms passes or tick (when not NULL) returns false;
 * tick runs between two checks. *took_ms is the time it took; *gaps and *omitted those of
 * the last check. */
TN_NODISCARD tn_err tn_wait_converged(const tn_net *net, int timeout_ms, bool (*tick)(void *),
    void *arg, uint64_t *took_ms, json_object **gaps, size_t *omitted);

tn_err tn_cmd_check(const tn_args *a);

/* ---- super.c ---- */
tn_err tn_cmd_supervise(const tn_args *a);

/* ---- report.c ---- */

/* What a chaos run records for its report: events (operations, faults, convergence) and
 * samples of every node's lag (tn_lags; -1 not known). */
typedef struct tn_event {
    uint64_t t_ms; /* since the start of the run */
    char kind[16]; /* "op", "fault", "check" */
    char what[200];
} tn_event;

typedef struct tn_sample {
    uint64_t t_ms;
    int64_t lag[TN_MAX_NODES];
} tn_sample;

/* The most events (every step of the largest plan, 1,000,000 operations and their faults,
 * fits) and samples (two a second: 36 hours) a report keeps; beyond, it counts what it
 * dropped and says so. */
#define TN_REPORT_EVENTS_MAX (1u << 21)
#define TN_REPORT_SAMPLES_MAX (1u << 18)

typedef struct tn_report {
    tn_vec events;  /* of tn_event, at most TN_REPORT_EVENTS_MAX */
    tn_vec samples; /* of tn_sample, at most TN_REPORT_SAMPLES_MAX */
    size_t dropped_events, dropped_samples;
} tn_report;

void tn_report_init(tn_report *r);
void tn_report_event(tn_report *r, uint64_t t_ms, const char *kind, const char *fmt, ...)
    TN_PRINTF(4, 5);
void tn_report_sample(tn_report *r, const tn_sample *s);
/* The last sample, or NULL. */
const tn_sample *tn_report_last(const tn_report *r);
void tn_report_fini(tn_report *r);
/* Write path (JSON: the run's parameters in head, the events, the samples) and, beside it,
 * path with .json replaced by .svg (or .svg appended): per-node lag over time, faults shaded.
 * head is borrowed. TN_EIO (and prints why). */
TN_NODISCARD tn_err tn_report_write(
    const char *path, const tn_net *net, const tn_report *r, json_object *head);

/* ---- chaos.c ---- */
tn_err tn_cmd_chaos(const tn_args *a);

#endif
