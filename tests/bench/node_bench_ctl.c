/* node-bench's control client (see node_bench_ctl.h). */
#include "node_bench_ctl.h"

#include <proto/proto.h>

#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANSWER_MAX (256u * 1024u * 1024u) /* NNG_OPT_RECVMAXSZ (ARCHITECTURE.md house rule 3) */
#define CALL_TIMEOUT_MS (600 * 1000)      /* status of a large store may take long */
#define NO_RESEND_MS (24 * 3600 * 1000)   /* a write must reach the node at most once */

int nb_ctl_open(nb_ctl *c, const char *dir)
{
    memset(c, 0, sizeof(*c));
    c->next_id = 1;
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    char url[700];
    snprintf(url, sizeof(url), "ipc://%s/control.sock", dir);
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        snprintf(c->err, sizeof(c->err), "nng_req0_open: %s", nng_strerror(rv));
        return -1;
    }
    if ((rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, ANSWER_MAX)) != 0
        || (rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, CALL_TIMEOUT_MS)) != 0
        || (rv = nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, CALL_TIMEOUT_MS)) != 0
        || (rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NO_RESEND_MS)) != 0
        || (rv = nng_dial(c->sock, url, NULL, 0)) != 0) {
        snprintf(c->err, sizeof(c->err), "cannot dial %s: %s", url, nng_strerror(rv));
        nng_close(c->sock);
        return -1;
    }
    c->open = true;
    return 0;
}

void nb_ctl_close(nb_ctl *c)
{
    if (c->open)
        nng_close(c->sock);
    c->open = false;
}

int nb_ctl_call(nb_ctl *c, const char *command, const char *const *args, size_t nargs,
    int timeout_ms, json_object **payload)
{
    *payload = NULL;
    if (!c->open) {
        snprintf(c->err, sizeof(c->err), "not connected");
        return -1;
    }
    proto_bytes all[64];
    if (nargs + 1 > sizeof(all) / sizeof(all[0])) {
        snprintf(c->err, sizeof(c->err), "too many args");
        return -1;
    }
    all[0] = (proto_bytes) { (const uint8_t *)"node-bench", 10 };
    for (size_t i = 0; i < nargs; i++)
        all[i + 1] = (proto_bytes) { (const uint8_t *)args[i], strlen(args[i]) };
    uint64_t id = c->next_id++;
    proto_ctl_request r = { .id = id,
        .command = { (const uint8_t *)command, strlen(command) },
        .args = all,
        .nargs = nargs + 1 };
    proto_buf req = { NULL, 0 };
    if (proto_ctl_request_encode(&r, &req) != PROTO_OK) {
        snprintf(c->err, sizeof(c->err), "cannot encode %s", command);
        return -1;
    }
    int rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
    if (rv == 0)
        rv = nng_send(c->sock, req.p, req.len, 0);
    proto_buf_free(&req);
    if (rv != 0) {
        snprintf(c->err, sizeof(c->err), "send %s: %s", command, nng_strerror(rv));
        return -1;
    }
    void *buf = NULL;
    size_t len = 0;
    if ((rv = nng_recv(c->sock, &buf, &len, NNG_FLAG_ALLOC)) != 0) {
        snprintf(c->err, sizeof(c->err), "receive %s: %s", command, nng_strerror(rv));
        if (rv != NNG_ETIMEDOUT)
            return -1;
        char dir[sizeof(c->dir)], err[sizeof(c->err)];
        memcpy(dir, c->dir, sizeof(dir));
        memcpy(err, c->err, sizeof(err));
        uint64_t next = c->next_id;
        nb_ctl_close(c);
        if (nb_ctl_open(c, dir) != 0)
            return -1;
        c->next_id = next;
        memcpy(c->err, err, sizeof(err));
        return -2;
    }
    proto_limits lim;
    proto_limits_default(&lim);
    lim.max_message = ANSWER_MAX;
    lim.max_items = ANSWER_MAX;
    unsigned kind = 0;
    int result = -1;
    if (proto_peek(buf, len, &lim, &kind, NULL) != PROTO_OK) {
        snprintf(c->err, sizeof(c->err), "unreadable answer to %s", command);
    } else if (kind == PROTO_K_CTL_ERROR) {
        proto_ctl_error e;
        if (proto_ctl_error_decode(buf, len, &lim, &e, NULL) == PROTO_OK) {
            snprintf(c->err, sizeof(c->err), "%.*s", (int)e.message.len, (const char *)e.message.p);
            result = e.code >= 1 && e.code <= 5 ? (int)e.code : 5;
        } else {
            snprintf(c->err, sizeof(c->err), "unreadable error answer to %s", command);
        }
    } else {
        proto_ctl_response m;
        if (kind == PROTO_K_CTL_RESPONSE
            && proto_ctl_response_decode(buf, len, &lim, &m, NULL) == PROTO_OK && m.id == id) {
            json_tokener *tok = json_tokener_new_ex(64);
            *payload = tok
                ? json_tokener_parse_ex(tok, (const char *)m.payload.p, (int)m.payload.len)
                : NULL;
            if (tok)
                json_tokener_free(tok);
            if (*payload != NULL)
                result = 0;
            else
                snprintf(c->err, sizeof(c->err), "answer to %s is not JSON", command);
        } else {
            snprintf(c->err, sizeof(c->err), "unexpected answer to %s", command);
        }
    }
    nng_free(buf, len);
    return result;
}

json_object *nb_json_at(json_object *doc, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_object *cur = doc;
    for (char *save = NULL, *k = strtok_r(buf, "/", &save); k != NULL && cur != NULL;
         k = strtok_r(NULL, "/", &save))
        if (!json_object_object_get_ex(cur, k, &cur))
            return NULL;
    return cur;
}

bool nb_json_same(json_object *a, json_object *b)
{
    if (a == NULL || b == NULL || !json_object_is_type(a, json_type_object)
        || !json_object_is_type(b, json_type_object))
        return a == b;
    if (json_object_object_length(a) != json_object_object_length(b))
        return false;
    json_object_object_foreach(a, key, va)
    {
        json_object *vb;
        if (!json_object_object_get_ex(b, key, &vb))
            return false;
        const char *sa = json_object_get_string(va), *sb = json_object_get_string(vb);
        if (sa == NULL || sb == NULL || strcmp(sa, sb) != 0)
            return false;
    }
    return true;
}
