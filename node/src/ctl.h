/*
 * ctl.h - what the files of the control socket's commands share (ctl.c: the dispatch and the
 * commands that write; ctlread.c: the commands that read; ctlreq.c: requests and answers).
 * Internal to node/src.
 */
#ifndef NODE_CTL_H
#define NODE_CTL_H

#include "core.h"

#include <json-c/json.h>

/* The CLI's exit codes (cli/README.md, "Exit codes and errors"). */
enum { CODE_USAGE = 1, CODE_REFUSED = 2, CODE_NOTFOUND = 3, CODE_INTERNAL = 5 };

/* One control request being handled: its id, its arguments (borrowed) and the operator. */
typedef struct req {
    node_engine *e;
    uint64_t id;
    const proto_bytes *args;
    size_t nargs;
    char operator_name[NODE_OPERATOR_MAX + 1];
    char unix_user[LEDGER_USER_MAX + 1]; /* who sent it, as the kernel says, or "" */
} req;

/* ctlreq.c: answers (each request gets exactly one) and arguments. */
void node__ctl_error(node_engine *e, uint64_t id, int code, const char *message);
/* Answer with doc (consumed). */
void node__ctl_json(node_engine *e, uint64_t id, json_object *doc);
/* The exit code a node error becomes. */
int node__ctl_code(node_err err);
/* args[i] as a NUL-terminated string in buf; false if absent, too long or with a NUL. */
bool node__ctl_arg(const req *r, size_t i, char *buf, size_t size);
/* args[1] as a case id; false after answering with the error (a typo, a shape). */
bool node__ctl_case(const req *r, proto_case_id *c);
/* RFC 3339 UTC with milliseconds. */
void node__rfc3339(uint64_t ms, char out[32]);
json_object *node__hexstr(const uint8_t *p, size_t n);
/* The org of an origin, or its hex when it is no member. */
const char *node__org_of(node_engine *e, const uint8_t origin[32], char hex[65]);

/* ctlread.c: the commands that read. */
void node__cmd_case_show(req *r);
void node__cmd_consent_list(req *r);
void node__cmd_case_list(req *r);
void node__cmd_case_find(req *r);
void node__cmd_status(req *r);
void node__cmd_digest(req *r);
void node__cmd_schema(req *r);
/* A field of state s as case.show gives it (node/CONTROL.md); a register's concurrent values
 * go to conflicts["scope.field"] when conflicts is not NULL. NULL when s holds nothing of it. */
json_object *node__field_json(node_engine *e, const crdt_scope *s, const char *scope,
    const char *field, crdt_type type, json_object *conflicts);
/* Whether (case c, scope) of key tag is no longer shown here: its grant to this node ended (it
 * is not the owner). */
bool node__ended_here(node_txn *t, const node_engine *e, const proto_case_id *c, const char *scope,
    const uint8_t tag[32]);
/* history.c */
void node__cmd_case_log(req *r);
/* inbox.c */
void node__cmd_inbox(req *r);
void node__cmd_inbox_ack(req *r);
/* The org that owns case c, as this node knows it: its own org for a case it opened, else the
 * owner recorded with a key of the case it holds; NODE_ENOTFOUND when it holds none. */
node_err node__case_owner(node_engine *e, const proto_case_id *c, char owner[PROTO_ORG_MAX + 1]);

#endif
