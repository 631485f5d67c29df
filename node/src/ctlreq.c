/*
 * ctlreq.c - requests and answers of the control socket: every request gets exactly one answer,
 * a JSON document (built with json-c) or an error with the CLI's exit code. May call: state.c
 * (members), the host (ctl_reply), proto.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void node__ctl_error(node_engine *e, uint64_t id, int code, const char *message)
{
    proto_ctl_error m = { id, (uint64_t)code, { (const uint8_t *)message, strlen(message) } };
    if (m.message.len > PROTO_TEXT_MAX)
        m.message.len = PROTO_TEXT_MAX;
    proto_buf out = { NULL, 0 };
    if (proto_ctl_error_encode(&m, &out) == PROTO_OK)
        e->host.ctl_reply(e->host.ctx, out.p, out.len);
    else
        e->host.ctl_reply(e->host.ctx, (const uint8_t *)"", 0);
    proto_buf_free(&out);
}

void node__ctl_json(node_engine *e, uint64_t id, json_object *doc)
{
    const char *text = json_object_to_json_string_ext(
        doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    proto_ctl_response m = { id, { (const uint8_t *)text, strlen(text) } };
    proto_buf out = { NULL, 0 };
    if (proto_ctl_response_encode(&m, &out) == PROTO_OK)
        e->host.ctl_reply(e->host.ctx, out.p, out.len);
    else
        node__ctl_error(e, id, CODE_INTERNAL, "the answer is too large to encode");
    proto_buf_free(&out);
    json_object_put(doc);
}

int node__ctl_code(node_err err)
{
    switch (err) {
    case NODE_EINVAL:
        return CODE_REFUSED;
    case NODE_ENOTFOUND:
        return CODE_NOTFOUND;
    default:
        return CODE_INTERNAL;
    }
}

/* args[i] as a NUL-terminated string in buf; false if absent, too long or with a NUL. */
bool node__ctl_arg(const req *r, size_t i, char *buf, size_t size)
{
    if (i >= r->nargs || r->args[i].len >= size || memchr(r->args[i].p, 0, r->args[i].len) != NULL)
        return false;
    memcpy(buf, r->args[i].p, r->args[i].len);
    buf[r->args[i].len] = 0;
    return true;
}

void node__rfc3339(uint64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}

json_object *node__hexstr(const uint8_t *p, size_t n)
{
    char buf[2 * 64 + 1];
    proto_hex_encode(p, n, buf);
    return json_object_new_string(buf);
}

/* The case id in args[1]; when it is not one, the reply says why (a mistyped character fails
 * the checksum: refused; anything else is not a case id's shape: usage) and false. */
bool node__ctl_case(const req *r, proto_case_id *c)
{
    char text[128] = "";
    proto_err perr = node__ctl_arg(r, 1, text, sizeof(text))
        ? proto_case_id_parse(text, strlen(text), c)
        : PROTO_ECASEID;
    if (perr == PROTO_OK)
        return true;
    char msg[300];
    if (perr == PROTO_ECHECKSUM) {
        snprintf(msg, sizeof(msg),
            "'%s' is not a case id: its checksum does not match (a character is mistyped)", text);
        node__ctl_error(r->e, r->id, CODE_REFUSED, msg);
    } else {
        snprintf(msg, sizeof(msg),
            "'%s' is not a case id: expected pc- followed by 29 letters and digits", text);
        node__ctl_error(r->e, r->id, CODE_USAGE, msg);
    }
    return false;
}

const char *node__org_of(node_engine *e, const uint8_t origin[32], char hex[65])
{
    node_member *m = node__author(e, origin, NULL);
    if (m != NULL)
        return m->org;
    proto_hex_encode(origin, 32, hex);
    return hex;
}
