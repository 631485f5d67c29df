/*
 * super.c - the supervisor: one libuv loop that runs every pattod of a testnet as its child,
 * owns one TCP proxy per ordered pair of nodes (node A dials B through proxy A->B, wired in by
 * A's [dial] config) and answers commands on DIR/testnet.sock (README.md "Control protocol").
 *
 * Faults act on sockets: a partition closes the proxied connections that cross groups and
 * closes new ones as soon as they are accepted; a slow link holds every chunk it forwards for
 * the delay (order kept); loss closes a whole connection (TCP cannot lose bytes without
 * breaking the stream), with the given probability per chunk forwarded.
 *
 * Lifetime: every handle lives inside its owner (conn, proxy, node, client, sv); a conn or a
 * client is freed in the close callback of its last handle. Shutdown stops the nodes
 * (SIGCONT, SIGTERM, SIGKILL after 5 s), then closes every handle, and the loop ends.
 */
#include "tn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CHUNK_SIZE 65536
#define HIGH_WATER (4u << 20) /* stop reading a side whose bytes wait beyond this */
#define LOW_WATER (1u << 20)
#define KILL_AFTER_MS 5000

#define SV_LOG(level, fmt, ...) sv_log(level, fmt, __VA_ARGS__)

__attribute__((format(printf, 2, 3))) static void sv_log(const char *level, const char *fmt, ...)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "ts=%s level=%s ", ts, level);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

typedef struct sv sv;
typedef struct conn conn;

typedef struct half half;

/* One chunk read from one side, waiting for its time, then written to the other side. */
typedef struct chunk {
    uv_write_t req;
    struct chunk *next;
    half *h;
    uint64_t due;
    size_t len;
    char data[CHUNK_SIZE];
} chunk;

/* One direction of a proxied connection. */
struct half {
    conn *c;
    uv_tcp_t *src, *dst;
    chunk *head, *tail;
    size_t queued, inflight;
    bool paused;
};

typedef struct proxy {
    sv *s;
    size_t a, b; /* a's connections to b */
    uv_tcp_t listener;
    bool listening;
    conn *conns;
    uint64_t accepted, refused, dropped;
} proxy;

struct conn {
    conn *prev, *next;
    proxy *px;
    uv_tcp_t in, out;
    uv_connect_t creq;
    uv_timer_t timer;
    half up, down; /* up: a's bytes to b; down: b's bytes to a */
    int handles;
    bool out_init, closing;
};

typedef struct client {
    sv *s;
    uv_pipe_t pipe;
    char line[4096];
    size_t len;
    bool answered;
    uv_write_t wreq;
    char *reply;
} client;

enum { N_DOWN, N_RUNNING, N_STOPPED };

typedef struct node {
    sv *s;
    size_t i;
    uv_process_t proc;
    uv_timer_t kill_timer;
    bool has_proc;
    bool proc_closing; /* a failed spawn's handle is being closed */
    int state;
    bool expect_exit, restart_after;
    int pid;
    unsigned crashes, starts;
    char last_exit[48];
    client *waiter;
} node;

struct sv {
    uv_loop_t loop;
    tn_net net;
    const char *pattod;
    proxy px[TN_MAX_NODES][TN_MAX_NODES];
    node nodes[TN_MAX_NODES];
    uv_pipe_t ctl;
    bool ctl_open;
    uv_signal_t sigterm, sigint;
    bool partitioned;
    int group[TN_MAX_NODES];
    unsigned delay[TN_MAX_NODES][TN_MAX_NODES], loss[TN_MAX_NODES][TN_MAX_NODES];
    bool shutting_down, closed;
    client *down_waiter;
    uint64_t rng;
    tn_err exit_err;
};

/* Loss decisions (not part of any schedule). */
static uint64_t rnd(sv *s)
{
    return tn_splitmix64(&s->rng);
}

static bool link_cut(const sv *s, size_t a, size_t b)
{
    return s->partitioned && s->group[a] != s->group[b];
}

/* ---------------------------------------------------------------------------------------- */
/* Proxied connections                                                                       */

static void conn_close(conn *c);

static void conn_handle_closed_cb(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles > 0)
        return;
    for (half *hf = &c->up; hf != NULL; hf = hf == &c->up ? &c->down : NULL) {
        while (hf->head != NULL) {
            chunk *k = hf->head;
            hf->head = k->next;
            free(k);
        }
    }
    free(c);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    proxy *px = c->px;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->in, conn_handle_closed_cb);
    if (c->out_init)
        uv_close((uv_handle_t *)&c->out, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void resume_if_drained(half *h)
{
    if (h->paused && !h->c->closing && h->queued + h->inflight < LOW_WATER) {
        h->paused = false;
        if (uv_read_start((uv_stream_t *)h->src, alloc_cb, read_cb) != 0)
            conn_close(h->c);
    }
}

static void chunk_written_cb(uv_write_t *req, int status)
{
    chunk *k = req->data;
    half *h = k->h;
    h->inflight -= k->len;
    free(k);
    if (status < 0) {
        conn_close(h->c);
        return;
    }
    resume_if_drained(h);
}

static void send_chunk(half *h, chunk *k)
{
    k->req.data = k;
    k->h = h;
    h->inflight += k->len;
    uv_buf_t b = uv_buf_init(k->data, (unsigned)k->len);
    int rc = uv_write(&k->req, (uv_stream_t *)h->dst, &b, 1, chunk_written_cb);
    if (rc != 0) {
        h->inflight -= k->len;
        free(k);
        conn_close(h->c);
    }
}

static void arm_timer(conn *c);

static void flush_due(conn *c)
{
    uint64_t now = uv_now(c->in.loop);
    for (half *h = &c->up; h != NULL && !c->closing; h = h == &c->up ? &c->down : NULL) {
        while (h->head != NULL && h->head->due <= now && !c->closing) {
            chunk *k = h->head;
            h->head = k->next;
            if (h->head == NULL)
                h->tail = NULL;
            h->queued -= k->len;
            k->next = NULL;
            send_chunk(h, k);
        }
    }
    if (!c->closing)
        arm_timer(c);
}

static void timer_cb(uv_timer_t *t)
{
    flush_due(t->data);
}

static void arm_timer(conn *c)
{
    uint64_t next = UINT64_MAX;
    if (c->up.head != NULL)
        next = c->up.head->due;
    if (c->down.head != NULL && c->down.head->due < next)
        next = c->down.head->due;
    if (next == UINT64_MAX)
        return;
    uint64_t now = uv_now(c->in.loop);
    uv_timer_start(&c->timer, timer_cb, next > now ? next - now : 0, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    chunk *k = malloc(sizeof *k);
    *buf = k != NULL ? uv_buf_init(k->data, CHUNK_SIZE) : uv_buf_init(NULL, 0);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    chunk *k = buf->base != NULL ? (chunk *)(void *)(buf->base - offsetof(chunk, data)) : NULL;
    if (nread <= 0 || c->closing) {
        free(k);
        if (nread < 0 || c->closing)
            conn_close(c);
        return;
    }
    half *h = st == (uv_stream_t *)&c->in ? &c->up : &c->down;
    sv *s = c->px->s;
    size_t a = c->px->a, b = c->px->b;
    if (s->loss[a][b] > 0 && rnd(s) % 100 < s->loss[a][b]) {
        free(k);
        c->px->dropped++;
        SV_LOG("info", "event=link.drop from=%s to=%s", s->net.nodes[a].name, s->net.nodes[b].name);
        conn_close(c);
        return;
    }
    k->len = (size_t)nread;
    k->next = NULL;
    k->due = uv_now(st->loop) + s->delay[a][b];
    if (h->head == NULL && s->delay[a][b] == 0) {
        send_chunk(h, k);
    } else {
        if (h->tail != NULL)
            h->tail->next = k;
        else
            h->head = k;
        h->tail = k;
        h->queued += k->len;
        arm_timer(c);
    }
    if (!c->closing && h->queued + h->inflight > HIGH_WATER) {
        h->paused = true;
        uv_read_stop(st);
    }
}

static void connected_cb(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->in, 1);
    uv_tcp_nodelay(&c->out, 1);
    if (uv_read_start((uv_stream_t *)&c->in, alloc_cb, read_cb) != 0
        || uv_read_start((uv_stream_t *)&c->out, alloc_cb, read_cb) != 0)
        conn_close(c);
}

static void accept_cb(uv_stream_t *server, int status)
{
    proxy *px = server->data;
    sv *s = px->s;
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->px = px;
    c->up = (half) { c, &c->in, &c->out, NULL, NULL, 0, 0, false };
    c->down = (half) { c, &c->out, &c->in, NULL, NULL, 0, 0, false };
    uv_tcp_init(&s->loop, &c->in);
    uv_timer_init(&s->loop, &c->timer);
    c->in.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->next = px->conns;
    if (px->conns != NULL)
        px->conns->prev = c;
    px->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->in) != 0) {
        conn_close(c);
        return;
    }
    if (link_cut(s, px->a, px->b) || s->shutting_down) {
        px->refused++;
        conn_close(c);
        return;
    }
    px->accepted++;
    uv_tcp_init(&s->loop, &c->out);
    c->out.data = c;
    c->out_init = true;
    c->handles++;
    struct sockaddr_in to;
    uv_ip4_addr("127.0.0.1", s->net.nodes[px->b].port, &to);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->out, (const struct sockaddr *)&to, connected_cb) != 0)
        conn_close(c);
}

static void close_link(sv *s, size_t a, size_t b)
{
    while (s->px[a][b].conns != NULL)
        conn_close(s->px[a][b].conns);
}

/* ---------------------------------------------------------------------------------------- */
/* Nodes                                                                                     */

static void reply(client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void maybe_finish(sv *s);

static void write_pidfile(node *nd, int pid)
{
    char p[TN_PATH_MAX + 40];
    tn_path(p, sizeof p, "%s.pid", nd->s->net.nodes[nd->i].name);
    if (pid <= 0) {
        unlink(p);
        return;
    }
    char text[32];
    snprintf(text, sizeof text, "%d\n", pid);
    if (tn_write_file(p, text) != TN_OK)
        SV_LOG("error", "event=node.pidfile path=%s error=\"%s\"", p, strerror(errno));
}

static void node_exit_cb(uv_process_t *p, int64_t status, int sig);

static void spawn_failed_closed_cb(uv_handle_t *h)
{
    node *nd = h->data;
    nd->proc_closing = false;
    maybe_finish(nd->s);
}

static tn_err node_spawn(node *nd)
{
    sv *s = nd->s;
    if (nd->proc_closing)
        return TN_EPROC;
    const char *name = s->net.nodes[nd->i].name;
    char logp[64], dir[TN_PATH_MAX + 40];
    snprintf(logp, sizeof logp, "%s.log", name);
    tn_path(dir, sizeof dir, "%s/%s", s->net.dir, name);
    int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        SV_LOG("error", "event=node.spawn node=%s error=\"%s: %s\"", name, logp, strerror(errno));
        return TN_EIO;
    }
    char *args[] = { (char *)(uintptr_t)s->pattod, (char *)(uintptr_t) "--dir", dir, NULL };
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = fd;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.exit_cb = node_exit_cb;
    o.file = s->pattod;
    o.args = args;
    o.stdio = stdio;
    o.stdio_count = 3;
    nd->proc.data = nd;
    int rc = uv_spawn(&s->loop, &nd->proc, &o);
    close(fd);
    if (rc != 0) {
        SV_LOG("error", "event=node.spawn node=%s error=\"%s\"", name, uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: close it, and spawn on it again
         * only once it is closed. */
        nd->proc_closing = true;
        uv_close((uv_handle_t *)&nd->proc, spawn_failed_closed_cb);
        return TN_EPROC;
    }
    nd->has_proc = true;
    nd->state = N_RUNNING;
    nd->expect_exit = false;
    nd->pid = nd->proc.pid;
    nd->starts++;
    write_pidfile(nd, nd->pid);
    SV_LOG("info", "event=node.start node=%s pid=%d", name, nd->pid);
    return TN_OK;
}

static void node_proc_closed_cb(uv_handle_t *h)
{
    node *nd = h->data;
    sv *s = nd->s;
    nd->has_proc = false;
    uv_timer_stop(&nd->kill_timer);
    if (nd->restart_after && !s->shutting_down) {
        nd->restart_after = false;
        tn_err err = node_spawn(nd);
        if (nd->waiter != NULL) {
            client *w = nd->waiter;
            nd->waiter = NULL;
            if (err == TN_OK)
                reply(w, "ok started pid=%d", nd->pid);
            else
                reply(w, "error %s could not be started (see supervisor.log)",
                    s->net.nodes[nd->i].name);
        }
        return;
    }
    nd->restart_after = false;
    if (nd->waiter != NULL) {
        client *w = nd->waiter;
        nd->waiter = NULL;
        reply(w, "ok %s", nd->last_exit);
    }
    maybe_finish(s);
}

static void node_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    node *nd = p->data;
    sv *s = nd->s;
    if (sig != 0)
        snprintf(nd->last_exit, sizeof nd->last_exit, "signal-%d", sig);
    else
        snprintf(nd->last_exit, sizeof nd->last_exit, "exit-%lld", (long long)status);
    /* A SIGTERM we sent must end in exit 0; anything else we did not ask for is a crash. */
    bool expected = nd->expect_exit && (sig == SIGKILL || (sig == 0 && status == 0));
    if (!expected)
        nd->crashes++;
    SV_LOG(expected ? "info" : "error", "event=node.exit node=%s pid=%d %s expected=%s",
        s->net.nodes[nd->i].name, nd->pid, nd->last_exit, expected ? "yes" : "no");
    nd->state = N_DOWN;
    write_pidfile(nd, 0);
    nd->pid = 0;
    uv_close((uv_handle_t *)&nd->proc, node_proc_closed_cb);
}

static void kill_timer_cb(uv_timer_t *t)
{
    node *nd = t->data;
    if (nd->has_proc) {
        SV_LOG("warn", "event=node.kill node=%s reason=\"no exit %d ms after SIGTERM\"",
            nd->s->net.nodes[nd->i].name, KILL_AFTER_MS);
        uv_process_kill(&nd->proc, SIGKILL);
    }
}

/* Ask node nd to stop: SIGCONT (a stopped process cannot handle SIGTERM), SIGTERM, and
 * SIGKILL if it has not exited after KILL_AFTER_MS. */
static void node_terminate(node *nd)
{
    nd->expect_exit = true;
    uv_process_kill(&nd->proc, SIGCONT);
    uv_process_kill(&nd->proc, SIGTERM);
    nd->state = N_RUNNING;
    uv_timer_start(&nd->kill_timer, kill_timer_cb, KILL_AFTER_MS, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Shutdown                                                                                  */

static void ctl_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void close_all(sv *s)
{
    if (s->closed)
        return;
    s->closed = true;
    for (size_t a = 0; a < s->net.n; a++)
        for (size_t b = 0; b < s->net.n; b++) {
            close_link(s, a, b);
            if (s->px[a][b].listening)
                uv_close((uv_handle_t *)&s->px[a][b].listener, NULL);
        }
    for (size_t i = 0; i < s->net.n; i++)
        uv_close((uv_handle_t *)&s->nodes[i].kill_timer, NULL);
    if (s->ctl_open)
        uv_close((uv_handle_t *)&s->ctl, ctl_closed_cb);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    unlink(TN_SOCK);
    unlink("supervisor.pid");
}

static void maybe_finish(sv *s)
{
    if (!s->shutting_down || s->closed)
        return;
    for (size_t i = 0; i < s->net.n; i++)
        if (s->nodes[i].has_proc || s->nodes[i].proc_closing)
            return;
    SV_LOG("info", "event=supervisor.down%s", "");
    if (s->down_waiter != NULL) {
        client *w = s->down_waiter;
        s->down_waiter = NULL;
        reply(w, "ok down");
    }
    close_all(s);
}

static void shutdown_all(sv *s)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    for (size_t i = 0; i < s->net.n; i++)
        if (s->nodes[i].has_proc)
            node_terminate(&s->nodes[i]);
    maybe_finish(s);
}

static void signal_cb(uv_signal_t *h, int sig)
{
    SV_LOG("info", "event=supervisor.signal signal=%d", sig);
    shutdown_all(h->data);
}

/* ---------------------------------------------------------------------------------------- */
/* Control socket                                                                            */

static void client_closed_cb(uv_handle_t *h)
{
    client *cl = h->data;
    free(cl->reply);
    free(cl);
}

static void reply_written_cb(uv_write_t *req, int status)
{
    (void)status;
    client *cl = req->data;
    uv_close((uv_handle_t *)&cl->pipe, client_closed_cb);
}

static void reply(client *cl, const char *fmt, ...)
{
    if (cl->answered)
        return;
    cl->answered = true;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cl->reply = malloc((size_t)n + 2);
    if (cl->reply == NULL) {
        uv_close((uv_handle_t *)&cl->pipe, client_closed_cb);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(cl->reply, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cl->reply[n] = '\n';
    uv_buf_t b = uv_buf_init(cl->reply, (unsigned)n + 1);
    cl->wreq.data = cl;
    if (uv_write(&cl->wreq, (uv_stream_t *)&cl->pipe, &b, 1, reply_written_cb) != 0)
        uv_close((uv_handle_t *)&cl->pipe, client_closed_cb);
}

static void describe(sv *s, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "ok\n");
    for (size_t i = 0; i < s->net.n && used < size; i++) {
        node *nd = &s->nodes[i];
        static const char *const states[] = { "down", "running", "stopped" };
        used += (size_t)snprintf(buf + used, size - used,
            "node %s %s pid=%d starts=%u crashes=%u last-exit=%s\n", s->net.nodes[i].name,
            states[nd->state], nd->pid, nd->starts, nd->crashes,
            nd->last_exit[0] ? nd->last_exit : "none");
    }
    if (s->partitioned && used < size) {
        char groups[TN_MAX_NODES * 34];
        tn_groups_text(&s->net, s->group, (int)s->net.n + 1, groups, sizeof groups);
        used += (size_t)snprintf(buf + used, size - used, "fault partition %s\n", groups);
    }
    for (size_t a = 0; a < s->net.n && used < size; a++)
        for (size_t b = a + 1; b < s->net.n && used < size; b++)
            if (s->delay[a][b] > 0 || s->loss[a][b] > 0)
                used += (size_t)snprintf(buf + used, size - used,
                    "fault slow %s %s delay-ms=%u loss-pct=%u\n", s->net.nodes[a].name,
                    s->net.nodes[b].name, s->delay[a][b], s->loss[a][b]);
    for (size_t a = 0; a < s->net.n && used < size; a++)
        for (size_t b = 0; b < s->net.n && used < size; b++) {
            if (a == b)
                continue;
            proxy *px = &s->px[a][b];
            unsigned open = 0;
            for (conn *c = px->conns; c != NULL; c = c->next)
                open++;
            used += (size_t)snprintf(buf + used, size - used,
                "link %s %s open=%u accepted=%llu refused=%llu dropped=%llu\n",
                s->net.nodes[a].name, s->net.nodes[b].name, open, (unsigned long long)px->accepted,
                (unsigned long long)px->refused, (unsigned long long)px->dropped);
        }
    if (used > 0 && buf[used - 1] == '\n')
        buf[used - 1] = '\0';
}

static void cmd_partition(sv *s, client *cl, char *rest)
{
    int group[TN_MAX_NODES];
    for (size_t i = 0; i < s->net.n; i++)
        group[i] = -1;
    int g = 0;
    for (char *save = NULL, *w = strtok_r(rest, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        for (char *s2 = NULL, *name = strtok_r(w, ",", &s2); name;
             name = strtok_r(NULL, ",", &s2)) {
            size_t i = tn_net_index(&s->net, name);
            if (i == s->net.n) {
                reply(cl, "error no node %s in this testnet", name);
                return;
            }
            if (group[i] >= 0) {
                reply(cl, "error %s is named twice", name);
                return;
            }
            group[i] = g;
        }
        g++;
    }
    if (g == 0) {
        reply(cl, "error usage: partition A,B C,D,E");
        return;
    }
    /* Nodes not named form one more group together. */
    for (size_t i = 0; i < s->net.n; i++)
        if (group[i] < 0)
            group[i] = g;
    memcpy(s->group, group, sizeof group);
    s->partitioned = true;
    char desc[1024] = "";
    for (size_t i = 0; i < s->net.n; i++) {
        size_t used = strlen(desc);
        snprintf(desc + used, sizeof desc - used, "%s%s:%d", i ? "," : "", s->net.nodes[i].name,
            group[i]);
    }
    SV_LOG("info", "event=fault.partition groups=%s", desc);
    for (size_t a = 0; a < s->net.n; a++)
        for (size_t b = 0; b < s->net.n; b++)
            if (a != b && link_cut(s, a, b))
                close_link(s, a, b);
    reply(cl, "ok");
}

static void cmd_slow(sv *s, client *cl, char *rest)
{
    char *w[5] = { NULL };
    size_t nw = 0;
    for (char *save = NULL, *t = strtok_r(rest, " ", &save); t != NULL;
         t = strtok_r(NULL, " ", &save))
        if (nw < 5)
            w[nw++] = t;
    uint64_t delay, loss;
    if (nw != 4 || tn_parse_u64(w[2], 0, UINT32_MAX, &delay) != TN_OK
        || tn_parse_u64(w[3], 0, 100, &loss) != TN_OK) {
        reply(cl, "error usage: slow A B DELAY_MS LOSS_PCT (LOSS_PCT from 0 to 100)");
        return;
    }
    const char *an = w[0], *bn = w[1];
    size_t a = tn_net_index(&s->net, an), b = tn_net_index(&s->net, bn);
    if (a == s->net.n || b == s->net.n || a == b) {
        reply(cl, "error slow needs two different nodes of this testnet (%s, %s)", an, bn);
        return;
    }
    s->delay[a][b] = s->delay[b][a] = (unsigned)delay;
    s->loss[a][b] = s->loss[b][a] = (unsigned)loss;
    SV_LOG("info", "event=fault.slow a=%s b=%s delay_ms=%u loss_pct=%u", an, bn, (unsigned)delay,
        (unsigned)loss);
    reply(cl, "ok");
}

static void cmd_heal(sv *s, client *cl)
{
    s->partitioned = false;
    memset(s->delay, 0, sizeof s->delay);
    memset(s->loss, 0, sizeof s->loss);
    SV_LOG("info", "event=fault.heal%s", "");
    /* Chunks already held keep their time; new ones follow them in order. */
    reply(cl, "ok");
}

static void cmd_proc(sv *s, client *cl, const char *verb, const char *name)
{
    size_t i = tn_net_index(&s->net, name);
    if (i == s->net.n) {
        reply(cl, "error no node %s in this testnet", name);
        return;
    }
    node *nd = &s->nodes[i];
    if (nd->waiter != NULL) {
        reply(cl, "error %s is busy with another command", name);
        return;
    }
    SV_LOG("info", "event=node.%s node=%s", verb, name);
    if (strcmp(verb, "kill") == 0) {
        if (!nd->has_proc || nd->expect_exit) {
            reply(cl, "error %s is not running", name);
            return;
        }
        nd->expect_exit = true;
        nd->waiter = cl;
        uv_process_kill(&nd->proc, SIGKILL);
    } else if (strcmp(verb, "stop") == 0) {
        if (nd->state != N_RUNNING || nd->expect_exit) {
            reply(cl, "error %s is not running", name);
            return;
        }
        uv_process_kill(&nd->proc, SIGSTOP);
        nd->state = N_STOPPED;
        reply(cl, "ok");
    } else if (strcmp(verb, "cont") == 0) {
        if (nd->state != N_STOPPED) {
            reply(cl, "error %s is not stopped", name);
            return;
        }
        uv_process_kill(&nd->proc, SIGCONT);
        nd->state = N_RUNNING;
        reply(cl, "ok");
    } else if (strcmp(verb, "start") == 0 || strcmp(verb, "restart") == 0) {
        if (!nd->has_proc) {
            if (node_spawn(nd) != TN_OK)
                reply(cl, "error %s could not be started (see supervisor.log)", name);
            else
                reply(cl, "ok started pid=%d", nd->pid);
            return;
        }
        if (strcmp(verb, "start") == 0) {
            reply(cl, "error %s is already running", name);
            return;
        }
        nd->restart_after = true;
        nd->waiter = cl;
        if (!nd->expect_exit)
            node_terminate(nd);
    } else {
        reply(cl, "error unknown command %s", verb);
    }
}

static void handle_line(sv *s, client *cl, char *line)
{
    char *rest = strchr(line, ' ');
    if (rest != NULL)
        *rest++ = '\0';
    else
        rest = line + strlen(line);
    if (s->shutting_down && strcmp(line, "status") != 0) {
        reply(cl, "error the testnet is shutting down");
        return;
    }
    if (strcmp(line, "ping") == 0) {
        reply(cl, "ok pid=%d", (int)getpid());
    } else if (strcmp(line, "status") == 0) {
        size_t size = 65536 + s->net.n * s->net.n * 128;
        char *buf = malloc(size);
        if (buf == NULL) {
            reply(cl, "error out of memory");
            return;
        }
        describe(s, buf, size);
        reply(cl, "%s", buf);
        free(buf);
    } else if (strcmp(line, "partition") == 0) {
        cmd_partition(s, cl, rest);
    } else if (strcmp(line, "slow") == 0) {
        cmd_slow(s, cl, rest);
    } else if (strcmp(line, "heal") == 0) {
        cmd_heal(s, cl);
    } else if (strcmp(line, "down") == 0) {
        s->down_waiter = cl;
        shutdown_all(s);
    } else if (strcmp(line, "kill") == 0 || strcmp(line, "stop") == 0 || strcmp(line, "cont") == 0
        || strcmp(line, "start") == 0 || strcmp(line, "restart") == 0) {
        cmd_proc(s, cl, line, rest);
    } else {
        reply(cl, "error unknown command %s", line);
    }
}

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    client *cl = h->data;
    *buf = uv_buf_init(cl->line + cl->len, (unsigned)(sizeof cl->line - 1 - cl->len));
}

static void client_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    client *cl = st->data;
    if (nread < 0) {
        uv_read_stop(st);
        if (!cl->answered)
            uv_close((uv_handle_t *)&cl->pipe, client_closed_cb);
        cl->answered = true;
        return;
    }
    cl->len += (size_t)nread;
    cl->line[cl->len] = '\0';
    char *nl = strchr(cl->line, '\n');
    if (nl == NULL) {
        if (cl->len >= sizeof cl->line - 1) {
            uv_read_stop(st);
            reply(cl, "error command line too long");
        }
        return;
    }
    *nl = '\0';
    uv_read_stop(st);
    handle_line(cl->s, cl, cl->line);
}

static void ctl_conn_cb(uv_stream_t *server, int status)
{
    sv *s = server->data;
    if (status < 0)
        return;
    client *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return;
    cl->s = s;
    uv_pipe_init(&s->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0
        || uv_read_start((uv_stream_t *)&cl->pipe, client_alloc_cb, client_read_cb) != 0)
        uv_close((uv_handle_t *)&cl->pipe, client_closed_cb);
}

/* ---------------------------------------------------------------------------------------- */
/* Start                                                                                     */

static tn_err listen_all(sv *s)
{
    for (size_t a = 0; a < s->net.n; a++)
        for (size_t b = 0; b < s->net.n; b++) {
            if (a == b)
                continue;
            proxy *px = &s->px[a][b];
            px->s = s;
            px->a = a;
            px->b = b;
            uv_tcp_init(&s->loop, &px->listener);
            px->listener.data = px;
            px->listening = true;
            struct sockaddr_in addr;
            uv_ip4_addr("127.0.0.1", s->net.proxy[a][b], &addr);
            int rc = uv_tcp_bind(&px->listener, (const struct sockaddr *)&addr, 0);
            if (rc == 0)
                rc = uv_listen((uv_stream_t *)&px->listener, 64, accept_cb);
            if (rc != 0) {
                SV_LOG("error", "event=proxy.listen from=%s to=%s port=%u error=\"%s\"",
                    s->net.nodes[a].name, s->net.nodes[b].name, (unsigned)s->net.proxy[a][b],
                    uv_strerror(rc));
                return TN_EIO;
            }
        }
    unlink(TN_SOCK);
    uv_pipe_init(&s->loop, &s->ctl, 0);
    s->ctl.data = s;
    s->ctl_open = true;
    int rc = uv_pipe_bind(&s->ctl, TN_SOCK);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->ctl, 16, ctl_conn_cb);
    if (rc != 0) {
        SV_LOG("error", "event=control.listen path=%s error=\"%s\"", TN_SOCK, uv_strerror(rc));
        return TN_EIO;
    }
    return TN_OK;
}

tn_err tn_cmd_supervise(const tn_args *a)
{
    const char *dir = a->pos[0], *pattod = a->pos[1];
    sv *s = calloc(1, sizeof *s);
    if (s == NULL)
        return TN_ENOMEM;
    tn_err err = tn_net_load(&s->net, dir);
    if (err == TN_OK && chdir(s->net.dir) != 0) {
        tn_msg("cannot enter %s: %s", s->net.dir, strerror(errno));
        err = TN_EIO;
    }
    if (err != TN_OK) {
        free(s);
        return err;
    }
    signal(SIGPIPE, SIG_IGN);
    s->pattod = pattod;
    s->rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ tn_wall_ms();
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (tn_write_file("supervisor.pid", pid) != TN_OK)
        SV_LOG("error", "event=supervisor.pidfile error=\"%s\"", strerror(errno));
    uv_loop_init(&s->loop);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&s->sigint, signal_cb, SIGINT);
    for (size_t i = 0; i < s->net.n; i++) {
        node *nd = &s->nodes[i];
        nd->s = s;
        nd->i = i;
        uv_timer_init(&s->loop, &nd->kill_timer);
        nd->kill_timer.data = nd;
    }
    SV_LOG("info", "event=supervisor.start dir=%s nodes=%zu pid=%d", s->net.dir, s->net.n,
        (int)getpid());
    if ((s->exit_err = listen_all(s)) != TN_OK) {
        s->shutting_down = true;
        close_all(s);
    } else {
        for (size_t i = 0; i < s->net.n; i++) {
            tn_err e = node_spawn(&s->nodes[i]);
            if (e != TN_OK)
                s->exit_err = e;
        }
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    if (rc != 0)
        SV_LOG("error", "event=supervisor.exit error=\"loop not closed: %s\"", uv_strerror(rc));
    SV_LOG("info", "event=supervisor.exit code=%d", (int)tn_exit_code(s->exit_err));
    err = s->exit_err;
    free(s);
    return err;
}
