/* A counting TCP proxy for node-bench (see node_bench_proxy.h). */
#include "node_bench_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 100
#define CHUNK (64 * 1024)

struct nb_proxy {
    int lfd;
    uint16_t port, target;
    pthread_t acceptor;
    atomic_bool stop;
    atomic_uint_fast64_t to_target, from_target, connections, first_ns;
    atomic_int active; /* connection threads still running */
};

typedef struct conn {
    nb_proxy *p;
    int down, up; /* accepted (dialling side), connected (target) */
} conn;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int connect_target(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        buf += w;
        n -= (size_t)w;
    }
    return true;
}

/* Copy what is readable on from to to; false when the connection is over. */
static bool pump(int from, int to, atomic_uint_fast64_t *count, char *buf)
{
    ssize_t r = read(from, buf, CHUNK);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (r <= 0)
        return false;
    atomic_fetch_add(count, (uint_fast64_t)r);
    return write_all(to, buf, (size_t)r);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    nb_proxy *p = c->p;
    char *buf = malloc(CHUNK);
    bool open = buf != NULL;
    while (open && !atomic_load(&p->stop)) {
        struct pollfd fds[2] = { { c->down, POLLIN, 0 }, { c->up, POLLIN, 0 } };
        int n = poll(fds, 2, POLL_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (fds[0].revents != 0)
            open = pump(c->down, c->up, &p->to_target, buf);
        if (open && fds[1].revents != 0)
            open = pump(c->up, c->down, &p->from_target, buf);
    }
    free(buf);
    close(c->down);
    close(c->up);
    free(c);
    atomic_fetch_sub(&p->active, 1);
    return NULL;
}

static void *accept_main(void *arg)
{
    nb_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = { p->lfd, POLLIN, 0 };
        int n = poll(&pfd, 1, POLL_MS);
        if (n <= 0)
            continue;
        int down = accept(p->lfd, NULL, NULL);
        if (down < 0)
            continue;
        int up = connect_target(p->target);
        if (up < 0) {
            close(down); /* the target is not running: the dialler sees a closed connection */
            continue;
        }
        int one = 1;
        (void)setsockopt(down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint_fast64_t zero = 0;
        atomic_compare_exchange_strong(&p->first_ns, &zero, (uint_fast64_t)mono_ns());
        atomic_fetch_add(&p->connections, 1);
        conn *c = malloc(sizeof(*c));
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        atomic_fetch_add(&p->active, 1);
        if (c == NULL) {
            close(down);
            close(up);
            atomic_fetch_sub(&p->active, 1);
        } else {
            *c = (conn) { p, down, up };
            if (pthread_create(&t, &attr, conn_main, c) != 0) {
                close(down);
                close(up);
                free(c);
                atomic_fetch_sub(&p->active, 1);
            }
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

nb_proxy *nb_proxy_new(uint16_t target)
{
    nb_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->target = target;
    atomic_init(&p->stop, false);
    atomic_init(&p->to_target, 0);
    atomic_init(&p->from_target, 0);
    atomic_init(&p->connections, 0);
    atomic_init(&p->first_ns, 0);
    atomic_init(&p->active, 0);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(p->lfd, 16) != 0
        || getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "node-bench: proxy cannot listen: %s\n", strerror(errno));
        goto fail;
    }
    p->port = ntohs(a.sin_port);
    if (pthread_create(&p->acceptor, NULL, accept_main, p) != 0) {
        fprintf(stderr, "node-bench: proxy cannot start its thread\n");
        goto fail;
    }
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    free(p);
    return NULL;
}

uint16_t nb_proxy_port(const nb_proxy *p)
{
    return p->port;
}

void nb_proxy_reset(nb_proxy *p)
{
    atomic_store(&p->to_target, 0);
    atomic_store(&p->from_target, 0);
    atomic_store(&p->connections, 0);
    atomic_store(&p->first_ns, 0);
}

void nb_proxy_get(const nb_proxy *p, nb_proxy_counts *out)
{
    nb_proxy *q = (nb_proxy *)(uintptr_t)p; /* atomics are read through a non-const pointer */
    out->to_target = atomic_load(&q->to_target);
    out->from_target = atomic_load(&q->from_target);
    out->connections = atomic_load(&q->connections);
    uint64_t ns = atomic_load(&q->first_ns);
    out->first_s = (double)ns * 1e-9;
}

void nb_proxy_free(nb_proxy *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->acceptor, NULL);
    close(p->lfd);
    for (int k = 0; k < 100 && atomic_load(&p->active) > 0; k++) {
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&p->active) == 0)
        free(p);
    /* else: a connection thread is stuck in a write; leak the struct rather than free it
     * under its feet (the program is about to end). */
}
