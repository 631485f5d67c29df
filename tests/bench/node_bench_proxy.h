/*
 * A counting TCP proxy for node-bench: listens on 127.0.0.1 (port chosen by the kernel),
 * forwards every accepted connection to 127.0.0.1:target and counts the payload bytes each
 * way. One thread accepts; each connection is pumped by its own thread with poll().
 * A node reaches another through it by a [dial] override in its pattod.conf.
 *
 * Counters are read while the proxy runs (atomics). Nothing here knows patto's protocol.
 */
#ifndef TESTS_BENCH_NODE_BENCH_PROXY_H
#define TESTS_BENCH_NODE_BENCH_PROXY_H

#include <stdint.h>

typedef struct nb_proxy nb_proxy;

typedef struct nb_proxy_counts {
    uint64_t to_target;   /* bytes from the dialling side to the target */
    uint64_t from_target; /* bytes from the target back to the dialling side */
    uint64_t connections; /* connections forwarded (the target accepted them) */
    double first_s;       /* CLOCK_MONOTONIC seconds of the first forwarded connection; 0 if none */
} nb_proxy_counts;

/* Listen on 127.0.0.1:0 and forward to 127.0.0.1:target. Returns owned, free with
 * nb_proxy_free; NULL on failure (printed). */
nb_proxy *nb_proxy_new(uint16_t target);
/* The port it listens on. */
uint16_t nb_proxy_port(const nb_proxy *p);
/* Zero the counters and forget the first connection (connections open stay open). */
void nb_proxy_reset(nb_proxy *p);
void nb_proxy_get(const nb_proxy *p, nb_proxy_counts *out);
/* Stop accepting, close every connection, wait for the threads, free. NULL is fine. */
void nb_proxy_free(nb_proxy *p);

#endif
