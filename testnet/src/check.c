/* check.c - convergence: the same per-origin version vector at every node, the same state
 * digest for every tag at every node that holds it (from `patto digest --json`), and no node
 * still waiting for a body, a key or a causal past (the "waiting" counts of `patto status`). */
#include "tn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY_MAX 8192

static void add_why(char *why, size_t *lines, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_why(char *why, size_t *lines, const char *fmt, ...)
{
    (*lines)++;
    size_t used = strlen(why);
    if (*lines > 24) {
        if (*lines == 25 && used + 8 < WHY_MAX)
            strcat(why, "  ...\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + used, WHY_MAX - used, fmt, ap);
    va_end(ap);
}

int tn_converged(const tn_net *net, char **whyp)
{
    char state[TN_MAX_NODES][16];
    if (tn_node_states(net, state) != 0) {
        if (whyp != NULL)
            *whyp = strdup("the supervisor does not answer: is the testnet up?\n");
        return -1;
    }
    json_object *dg[TN_MAX_NODES] = { 0 };
    char *why = calloc(1, WHY_MAX);
    if (why == NULL)
        return -1;
    size_t lines = 0;
    int rc = 1;
    for (size_t i = 0; i < net->n; i++) {
        if (strcmp(state[i], "running") != 0) {
            /* Asking a stopped node would hang until the CLI's timeout. */
            add_why(why, &lines, "%s is %s: it cannot be compared\n", net->nodes[i].name, state[i]);
            rc = 0;
            continue;
        }
        tn_out o = tn_patto(net, i, "digest", NULL);
        if (o.status == 0 && o.json != NULL && tn_jget(o.json, "vv") != NULL
            && tn_jget(o.json, "tags") != NULL) {
            dg[i] = o.json;
            o.json = NULL;
        } else {
            add_why(why, &lines, "%s: digest failed (exit %d) %s%s", net->nodes[i].name, o.status,
                o.out, o.err);
            rc = 0;
        }
        tn_out_free(&o);
        /* A node still waiting for a body, a key or a causal past has not merged what its
         * version vector counts. */
        o = tn_patto(net, i, "status", NULL);
        json_object *w = o.status == 0 && o.json ? tn_jget(o.json, "waiting") : NULL;
        if (w != NULL) {
            json_object_object_foreach(w, what, count)
            {
                if (json_object_get_int64(count) > 0) {
                    add_why(why, &lines, "%s waits for %lld delta(s) (%s)\n", net->nodes[i].name,
                        (long long)json_object_get_int64(count), what);
                    rc = 0;
                }
            }
        }
        tn_out_free(&o);
    }
    /* Every origin's highest sequence number seen anywhere, and who lacks it. */
    json_object *maxvv = json_object_new_object();
    for (size_t i = 0; i < net->n; i++) {
        if (dg[i] == NULL)
            continue;
        json_object_object_foreach(tn_jget(dg[i], "vv"), origin, seq)
        {
            json_object *m = tn_jget(maxvv, origin);
            if (m == NULL || json_object_get_int64(m) < json_object_get_int64(seq))
                json_object_object_add(
                    maxvv, origin, json_object_new_int64(json_object_get_int64(seq)));
        }
    }
    json_object_object_foreach(maxvv, origin, seq)
    {
        int64_t top = json_object_get_int64(seq);
        for (size_t i = 0; i < net->n; i++) {
            if (dg[i] == NULL)
                continue;
            json_object *mine = tn_jget(tn_jget(dg[i], "vv"), origin);
            int64_t have = mine ? json_object_get_int64(mine) : 0;
            if (have < top) {
                add_why(why, &lines, "%s lacks deltas of origin %s (%.8s): has seq %lld of %lld\n",
                    net->nodes[i].name, tn_net_org_of(net, origin), origin, (long long)have,
                    (long long)top);
                rc = 0;
            }
        }
    }
    json_object_put(maxvv);
    /* Every tag: the same digest at every node that lists it. */
    for (size_t i = 0; i < net->n; i++) {
        if (dg[i] == NULL)
            continue;
        json_object_object_foreach(tn_jget(dg[i], "tags"), tag, digest)
        {
            bool seen_before = false;
            for (size_t k = 0; k < i && !seen_before; k++)
                seen_before = dg[k] != NULL && tn_jget(tn_jget(dg[k], "tags"), tag) != NULL;
            if (seen_before)
                continue;
            bool differ = false;
            for (size_t k = i + 1; k < net->n; k++) {
                json_object *d = dg[k] ? tn_jget(tn_jget(dg[k], "tags"), tag) : NULL;
                if (d != NULL && strcmp(json_object_get_string(d), json_object_get_string(digest)))
                    differ = true;
            }
            if (!differ)
                continue;
            rc = 0;
            char list[1024] = "";
            for (size_t k = i; k < net->n; k++) {
                json_object *d = dg[k] ? tn_jget(tn_jget(dg[k], "tags"), tag) : NULL;
                size_t used = strlen(list);
                if (d != NULL)
                    snprintf(list + used, sizeof list - used, " %s=%.8s", net->nodes[k].name,
                        json_object_get_string(d));
            }
            add_why(why, &lines, "tag %.16s differs:%s\n", tag, list);
        }
    }
    for (size_t i = 0; i < net->n; i++)
        json_object_put(dg[i]);
    if (whyp != NULL)
        *whyp = why;
    else
        free(why);
    return rc;
}

int tn_wait_converged(const tn_net *net, int timeout_ms, uint64_t *took_ms, char **why)
{
    uint64_t start = tn_now_ms();
    *why = NULL;
    for (;;) {
        free(*why);
        *why = NULL;
        int c = tn_converged(net, why);
        *took_ms = tn_now_ms() - start;
        if (c != 0)
            return c;
        if (*took_ms >= (uint64_t)timeout_ms)
            return 0;
        tn_sleep_ms(100);
    }
}

int tn_cmd_check(int argc, char **argv)
{
    const char *dir = NULL;
    long timeout = 60;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = strtol(argv[++i], NULL, 10);
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else
            dir = NULL, i = argc;
    }
    if (dir == NULL || timeout < 0 || timeout > 86400) {
        tn_err("usage: patto-testnet check DIR [--timeout SECONDS] (default 60)");
        return TN_EXIT_USAGE;
    }
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL || tn_net_load(net, dir) != 0) {
        free(net);
        return TN_EXIT_ERROR;
    }
    uint64_t took = 0;
    char *why = NULL;
    int c = tn_wait_converged(net, (int)timeout * 1000, &took, &why);
    int rc;
    if (c == 1) {
        printf("converged: %zu nodes agree (took %.1f s)\n", net->n, (double)took / 1000.0);
        rc = TN_EXIT_OK;
    } else {
        printf("not converged after %.1f s:\n%s", (double)took / 1000.0, why ? why : "");
        rc = c == 0 ? TN_EXIT_FAIL : TN_EXIT_ERROR;
    }
    free(why);
    free(net);
    return rc;
}
