/*
 * node-bench's control client: one persistent nng req0 socket per node on
 * ipc://DATA/control.sock, requests encoded with proto_ctl_request_encode exactly as the CLI
 * does (node/CONTROL.md), answers decoded to json-c documents. Used from one thread.
 */
#ifndef TESTS_BENCH_NODE_BENCH_CTL_H
#define TESTS_BENCH_NODE_BENCH_CTL_H

#include <json-c/json.h>
#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nb_ctl {
    nng_socket sock;
    char dir[512];
    bool open;
    uint64_t next_id;
    char err[1024]; /* the last failure, for a person */
} nb_ctl;

/* Dial DATA/control.sock (the node must be listening). 0 or -1 (c->err says why). */
int nb_ctl_open(nb_ctl *c, const char *dir);
void nb_ctl_close(nb_ctl *c);

/* One request: command and its args after the operator (the operator is "node-bench"),
 * waiting at most timeout_ms for the answer. Returns 0 with *payload owned (json_object_put),
 * the node's error code (1..5) with c->err set to its message, -2 when no answer came in time
 * (the socket is then reopened: a late answer must not pair with the next request), or -1
 * when the exchange failed (c->err). */
int nb_ctl_call(nb_ctl *c, const char *command, const char *const *args, size_t nargs,
    int timeout_ms, json_object **payload);

/* A value inside a document by a '/'-separated path, or NULL. Borrowed. */
json_object *nb_json_at(json_object *doc, const char *path);
/* Whether two JSON objects have the same keys with the same values (compared as strings). */
bool nb_json_same(json_object *a, json_object *b);

#endif
