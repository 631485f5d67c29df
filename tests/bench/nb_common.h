/*
 * What the benchmarks share (node-bench, compact-bench, consent-bench): the synthetic records
 * they write (invented names, dates and codes; never real personal data), the clock, the way
 * they stop on a failure (every node they started is stopped, its directory kept), and opening
 * a node's control socket.
 */
#ifndef TESTS_BENCH_NB_COMMON_H
#define TESTS_BENCH_NB_COMMON_H

#include "harness.h"
#include "node_bench_ctl.h"

#define NB_NFIELDS 12

typedef struct edits {
    char text[NB_NFIELDS][96];
    const char *args[NB_NFIELDS + 1]; /* args[0] free for the case id */
} edits;

/* The 12 edits of case i at generation gen ("scope.field=VALUE"), in e->args[1..12]. */
void make_edits(edits *e, unsigned long i, unsigned long gen);

/* The network stopped by nb_fail (NULL: none running). */
extern th_net *nb_cur_net;
/* Print "PROG: message" on stderr, stop nb_cur_net (keeping its directory) and exit 1. */
_Noreturn void nb_fail(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A benchmark's start: the programs under test, proto_init, SIGPIPE ignored, stdout line
 * buffered, and its command line printed ("command: ..."); false when proto_init fails. */
bool nb_begin(int argc, char **argv, const char *patto, const char *pattod);
double nb_now_s(void); /* CLOCK_MONOTONIC, in seconds */
void nb_sleep_ms(int ms);
int nb_cmp_double(const void *a, const void *b); /* for qsort of doubles */
/* A whole number >= 1 written in s, or -1. */
long nb_positive(const char *s);
/* A control request that must succeed (600 s at most); nb_fail(prog, ...) otherwise. Returns
 * the answer (owned). */
json_object *nb_call(
    const char *prog, nb_ctl *c, const char *cmd, const char *const *args, size_t nargs);
/* The whole number at path of doc (nb_json_at), or -1. */
int64_t nb_jint(json_object *doc, const char *path);
/* The sum of a version vector object {ORIGIN: SEQ}. */
uint64_t nb_vv_sum(json_object *vv);
/* The number after `key` (e.g. "RssAnon:") in /proc/PID/status, in KiB; -1 if absent. */
long nb_proc_kib(pid_t pid, const char *key);
/* Wait (up to limit_s) until the node at c holds what ref, another node's whole `digest`, holds:
 * polls the cheap `digest vv` every poll_ms until the version vectors are equal and the node has
 * nothing in hand, then compares whole digests (again every 100 ms until equal). A whole digest
 * reads and hashes every scope state, so polling it would slow the sync it measures. Returns
 * nb_now_s() just after the probe that saw them equal in the round whose whole digests then
 * agreed (the whole digest only confirms it: its seconds are not the sync's); nb_fail(prog,
 * "WHAT: ...") past the limit.
 * With heap_kib: the peak of process pid's RssAnon (its heap and other anonymous memory, not
 * LMDB's mapped file) seen at each poll. */
double nb_wait_same(const char *prog, nb_ctl *c, json_object *ref, double limit_s, int poll_ms,
    const char *what, pid_t pid, long *heap_kib);
/* Open a control client to node i, waiting (up to 20 s) until it listens; nb_fail otherwise. */
void nb_ctl_open_wait(const char *prog, th_net *net, size_t i, nb_ctl *c);

#endif
