/*
 * Links: one per connection to a peer, from its arrival through the handshake to the end of
 * its session. This file finds, sends on, drops and frees links, and dials the members; the
 * handshake and the life of a link are peers.c's, what travels in a session sync.c's.
 * A freed link stays readable until the end of the engine's current entry point (its fields
 * say it is gone: no session), because an answer being sent may still hold it. May call:
 * state.c (members), the host (send, drop, dial), proto (sessions).
 */
#include "core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

node_link *node__link_find(node_engine *e, uint32_t pipe)
{
    for (node_link *l = e->links; l != NULL; l = l->next)
        if (l->pipe == pipe)
            return l;
    return NULL;
}

node_link *node__link_up_to(node_engine *e, const node_member *m)
{
    for (node_link *l = e->links; l != NULL; l = l->next)
        if (l->state == LINK_UP && !l->closing && memcmp(l->peer, m->origin, 32) == 0)
            return l;
    return NULL;
}

/* Forget a link (its connection is gone or being dropped); freed by node__links_reap. */
void node__link_free(node_engine *e, node_link *l)
{
    node_link **pp = &e->links;
    while (*pp != NULL && *pp != l)
        pp = &(*pp)->next;
    if (*pp == l)
        *pp = l->next;
    for (size_t i = 0; i < e->nmembers; i++) {
        if (e->members[i].pipe == l->pipe) {
            e->members[i].pipe = 0;
            node_link *other = node__link_up_to(e, &e->members[i]);
            e->members[i].pipe = other ? other->pipe : 0;
            if (other == NULL)
                e->members[i].own_probe = false; /* its claim is probed again when it is back */
        }
    }
    proto_handshake_free(l->hs);
    proto_session_free(l->sess);
    l->hs = NULL;
    l->sess = NULL;
    l->next = e->dead_links;
    e->dead_links = l;
}

void node__links_reap(node_engine *e)
{
    while (e->dead_links != NULL) {
        node_link *l = e->dead_links;
        e->dead_links = l->next;
        free(l);
    }
}

/* A line about a link that could repeat for as long as its peer keeps trying (a stranger, a
 * member with another manifest): once per address and cause, then backing off (log.c). The
 * key is the address without its port, which changes with every connection. */
static bool peer_log_pass(node_engine *e, const node_link *l, const char *cause, uint64_t *held)
{
    char key[96];
    const char *colon = strrchr(l->addr, ':');
    int n = colon != NULL ? (int)(colon - l->addr) : (int)strlen(l->addr);
    snprintf(key, sizeof(key), "%.*s %s", n, l->addr, cause);
    return node__loglimit_pass(&e->peer_log, key, node__mono(e), held);
}

/* The org of the member at the other end, once known (dialled or authenticated). */
const char *node__link_org(node_engine *e, const node_link *l)
{
    node_member *m = node__member_by_origin(e, l->peer);
    return m != NULL ? m->org : "unknown";
}

/* The level of a line that peer_log_pass may hold back: held lines still go to debug. */
node_log_level node__link_log_level(
    node_engine *e, const node_link *l, const char *cause, node_log_level level, uint64_t *held)
{
    *held = 0;
    return peer_log_pass(e, l, cause, held) ? level : NODE_LOG_DEBUG;
}

void node__link_drop(node_engine *e, node_link *l, const char *why)
{
    uint64_t held = 0;
    node_log_level lv = l->state == LINK_UP ? NODE_LOG_INFO
                                            : node__link_log_level(e, l, why, NODE_LOG_INFO, &held);
    node_log(lv, "peer.drop", "addr=%s org=%s reason=\"%s\" held=%" PRIu64, l->addr,
        node__link_org(e, l), why, held);
    uint32_t pipe = l->pipe;
    node__link_free(e, l);
    e->host.drop(e->host.ctx, pipe);
}

/* Seal and send one message on an established link. A message that cannot be queued breaks
 * the session's frame sequence, so the link is dropped and made again. */
bool node__link_send(node_engine *e, node_link *l, const proto_buf *m)
{
    if (l->sess == NULL)
        return false; /* dropped by an earlier send of the same answer */
    proto_buf frame = { NULL, 0 };
    if (proto_session_seal(l->sess, m->p, m->len, &frame) != PROTO_OK) {
        node__link_drop(e, l, "cannot seal a frame");
        return false;
    }
    size_t frame_len = frame.len;
    node_err err = e->host.send(e->host.ctx, l->pipe, frame.p, frame.len);
    proto_buf_free(&frame);
    if (err == NODE_ENOTFOUND) {
        /* The connection is ending: its DOWN event frees the link and logs the reason. */
        l->closing = true;
        return false;
    }
    if (err != NODE_OK) {
        node__link_drop(e, l, "send queue full");
        return false;
    }
    l->tx_ms = node__mono(e);
    e->traffic.frames_sent++;
    e->traffic.bytes_sent += frame_len;
    return true;
}

bool node__send_to(node_engine *e, node_member *m, const proto_buf *msg)
{
    node_link *l = node__link_up_to(e, m);
    return l != NULL && node__link_send(e, l, msg);
}

void node__peers_sync(node_engine *e)
{
    for (size_t i = 0; i < e->nmembers; i++) {
        node_member *m = &e->members[i];
        if (m->self || m->dialer != 0 || !m->active || e->removed)
            continue; /* a member that left is not dialled, and a removed node dials no one */
        const char *url = node_config_dial_url(&e->cfg, m->org);
        if (url == NULL)
            url = m->url;
        node_errmsg msg;
        m->dialled_ms = node__mono(e);
        if (e->host.dial(e->host.ctx, url, &m->dialer, &msg) != NODE_OK)
            NODE_WARN("peer.dial", "org=%s url=\"%s\" error=\"%s\"", m->org, node__logq(url),
                node__logq(msg.text));
        else
            NODE_DEBUG("peer.dial", "org=%s url=\"%s\"", m->org, node__logq(url));
    }
}

void node__links_close(node_engine *e)
{
    while (e->links != NULL)
        node__link_free(e, e->links);
    node__links_reap(e);
}
