/*
 * A real patto network for tests: a temporary directory with an admin directory and N node
 * directories set up with the same `patto network` / `patto init` / `patto manifest import`
 * commands a partner uses, `pattod` processes on 127.0.0.1 with free ports chosen at run time,
 * and helpers to run `patto` against a node, wait for conditions (bounded polls) and stop
 * everything at the end, also on failure.
 */
#ifndef TESTS_NODE_HARNESS_H
#define TESTS_NODE_HARNESS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TH_MAX_NODES 8

typedef struct th_node {
    char org[33];
    char role[16];
    char dir[512];
    char log[600];
    uint16_t port;
    pid_t pid; /* 0 when not running */
    char origin[65];
} th_node;

typedef struct th_net {
    char root[256];
    char admin[300];
    char manifest[320];
    th_node nodes[TH_MAX_NODES];
    size_t n;
    bool keep; /* keep the directory (set on failure for the logs) */
} th_net;

/* The result of one `patto` run. */
typedef struct th_out {
    int status;        /* exit code, or 128 + signal */
    char *out, *err;   /* captured stdout and stderr (NUL-terminated, owned) */
    json_object *json; /* stdout parsed as JSON when it is, else NULL (owned) */
} th_out;

/* Paths of the programs under test (set from the test's argv or the environment). */
void th_programs(const char *patto, const char *pattod);

/* Create and start a network of n nodes with these orgs and roles (each "org:role"); waits
 * until every node has imported the manifest. Returns 0 or -1 (and prints why). */
int th_net_up(th_net *net, size_t n, const char *const *org_roles);
/* The same in two steps: th_net_make sets up the admin directory, every node's directory and
 * the signed manifest without starting any node (so a test can edit a node's pattod.conf
 * first, see th_conf_append); th_join starts node i and imports the manifest into it. */
int th_net_make(th_net *net, size_t n, const char *const *org_roles);
/* th_net_make with extra arguments for `patto network sign` (NULL-terminated, or NULL), e.g.
 * { "--max-clock-ahead-ms", "1000", NULL }. */
int th_net_make_opts(
    th_net *net, size_t n, const char *const *org_roles, const char *const *sign_args);
int th_join(th_net *net, size_t i);
/* Append text (whole lines, e.g. a "[dial]" section) to node i's pattod.conf; takes effect
 * at the node's next start. Returns 0 or -1 (and prints why). */
int th_conf_append(th_net *net, size_t i, const char *text);
/* Stop every node (SIGTERM, then SIGKILL after 5 s) and remove the directory unless kept.
 * Returns -1 (and keeps the directory) when a running node did not exit 0 on SIGTERM or
 * any node's log holds a sanitizer report; teardowns return it so the test fails. */
int th_net_down(th_net *net);

/* Start or stop one node. th_stop sends sig and waits for the process to end. */
int th_start(th_net *net, size_t i);
int th_stop(th_net *net, size_t i, int sig);
/* Start node i's pattod without waiting for its control socket (th_start waits). */
int th_spawn(th_net *net, size_t i);
/* Send a signal without waiting (SIGSTOP / SIGCONT). */
int th_signal(th_net *net, size_t i, int sig);

/* Run `patto --dir DIR --json ARGS...` (args NULL-terminated) against node i. */
th_out th_patto(th_net *net, size_t i, ...);
/* th_patto for a write (case new/set, consent grant): a node writes nothing until every member
 * whose link is up has sent its version vector (ARCHITECTURE.md, section 5), so a refusal that
 * says to retry (exit 5, "retry ...") is retried every 20 ms for up to 10 s. */
th_out th_patto_write(th_net *net, size_t i, ...);
/* Run `patto ARGS...` (no --dir) in the network's root. */
th_out th_patto_raw(const char *const *argv);
void th_out_free(th_out *o);

/* Poll cond(net, ctx) every 20 ms until it returns true or timeout_ms passes. */
bool th_wait(th_net *net, int timeout_ms, bool (*cond)(th_net *, void *), void *ctx);

/* Whether node i's log contains text. */
bool th_log_has(th_net *net, size_t i, const char *text);
/* Print the last lines of every node's log (for failures). */
void th_dump_logs(th_net *net);

/* Set cf[15] to the check character of the 16-character codice fiscale cf[0..14] and cf[16] to
 * NUL (the node refuses a wrong one: node/SCHEMA.md, "Checks"): for synthetic records. */
void th_cf_check(char cf[17]);

/* A free TCP port on 127.0.0.1 (bound and released). */
uint16_t th_free_port(void);

#endif
