/* check.c - convergence: the same per-origin version vector at every node, the same state
 * digest for every tag at every node that holds it (from `patto digest --json`), and no node
 * still waiting for a body, a key or a causal past (the "waiting" counts of `patto status`, but
 * bodies_refused).
 * What differs is kept as a list of gaps (JSON objects, README.md "check --json"), from which
 * the text for people is made. */
#include "tn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The gaps found so far: at most TN_GAPS_MAX listed, the rest counted. */
typedef struct gapset {
    json_object *list; /* owned array */
    size_t omitted;
} gapset;

/* Add gap (always consumed) of kind at node (NULL for none). */
static void gap_add(gapset *g, const char *kind, const char *node, json_object *gap)
{
    if (json_object_array_length(g->list) >= TN_GAPS_MAX) {
        g->omitted++;
        json_object_put(gap);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "kind", json_object_new_string(kind));
    if (node != NULL)
        json_object_object_add(o, "node", json_object_new_string(node));
    json_object_object_foreach(gap, k, v) json_object_object_add(o, k, json_object_get(v));
    json_object_put(gap);
    json_object_array_add(g->list, o);
}

/* An object of one string and one number member (many gaps have this shape). */
static json_object *obj2(const char *k1, json_object *v1, const char *k2, json_object *v2)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, k1, v1);
    if (k2 != NULL)
        json_object_object_add(o, k2, v2);
    return o;
}

/* Ask running node i for its digest (*dg, owned, NULL when it fails) and its waiting counts. */
static void gaps_of_node(const tn_net *net, size_t i, json_object **dg, gapset *g)
{
    const char *name = net->nodes[i].name;
    tn_out o = tn_patto(net, i, "digest", NULL);
    if (o.status == 0 && o.json != NULL && tn_jget(o.json, "vv") != NULL
        && tn_jget(o.json, "tags") != NULL) {
        *dg = o.json;
        o.json = NULL;
    } else {
        char output[1024];
        snprintf(output, sizeof output, "%s%s", o.out, o.err);
        gap_add(g, "digest_failed", name,
            obj2("exit", json_object_new_int(o.status), "output", json_object_new_string(output)));
    }
    tn_out_free(&o);
    /* A node still waiting for a body, a key or a causal past has not merged what its
     * version vector counts. */
    o = tn_patto(net, i, "status", NULL);
    json_object *w = o.status == 0 && o.json ? tn_jget(o.json, "waiting") : NULL;
    if (w != NULL) {
        json_object_object_foreach(w, what, count)
        {
            /* (bodies of deltas cut for good are refused whatever they say: one nobody serves
             * changes nothing, and one somebody holds shows as a digest that differs) */
            if (json_object_get_int64(count) > 0 && strcmp(what, "bodies_refused") != 0)
                gap_add(g, "waiting", name,
                    obj2("for", json_object_new_string(what), "count",
                        json_object_new_int64(json_object_get_int64(count))));
        }
    }
    tn_out_free(&o);
}

/* Every origin's highest sequence number seen anywhere, and who lacks it. */
static void gaps_of_vv(const tn_net *net, json_object *const *dg, gapset *g)
{
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
            if (have >= top)
                continue;
            json_object *o = obj2("origin", json_object_new_string(origin), "origin_node",
                json_object_new_string(tn_net_org_of(net, origin)));
            json_object_object_add(o, "has", json_object_new_int64(have));
            json_object_object_add(o, "of", json_object_new_int64(top));
            gap_add(g, "lacks", net->nodes[i].name, o);
        }
    }
    json_object_put(maxvv);
}

/* Every tag: the same digest at every node that lists it. */
static void gaps_of_tags(const tn_net *net, json_object *const *dg, gapset *g)
{
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
            json_object *digests = json_object_new_object();
            for (size_t k = i; k < net->n; k++) {
                json_object *d = dg[k] ? tn_jget(tn_jget(dg[k], "tags"), tag) : NULL;
                if (d != NULL)
                    json_object_object_add(digests, net->nodes[k].name, json_object_get(d));
            }
            gap_add(g, "tag_differs", NULL,
                obj2("tag", json_object_new_string(tag), "digests", digests));
        }
    }
}

tn_err tn_converged(const tn_net *net, json_object **gapsp, size_t *omitted)
{
    *gapsp = NULL;
    *omitted = 0;
    char state[TN_MAX_NODES][16];
    tn_err err = tn_node_states(net, state);
    if (err != TN_OK)
        return err;
    json_object *dg[TN_MAX_NODES] = { 0 };
    gapset g = { json_object_new_array(), 0 };
    if (g.list == NULL)
        return TN_ENOMEM;
    for (size_t i = 0; i < net->n; i++) {
        if (strcmp(state[i], "running") != 0)
            /* Asking a stopped node would hang until the CLI's timeout. */
            gap_add(&g, "not_running", net->nodes[i].name,
                obj2("state", json_object_new_string(state[i]), NULL, NULL));
        else
            gaps_of_node(net, i, &dg[i], &g);
    }
    gaps_of_vv(net, dg, &g);
    gaps_of_tags(net, dg, &g);
    for (size_t i = 0; i < net->n; i++)
        json_object_put(dg[i]);
    if (json_object_array_length(g.list) == 0 && g.omitted == 0) {
        json_object_put(g.list);
        return TN_OK;
    }
    *gapsp = g.list;
    *omitted = g.omitted;
    return TN_ENOTCONVERGED;
}

#define TEXT_MAX 16384
#define TEXT_LINES 24

/* One gap as a line for people. */
static void gap_text(json_object *gap, char *buf, size_t size)
{
    const char *kind = json_object_get_string(tn_jget(gap, "kind"));
    json_object *nodej = tn_jget(gap, "node");
    const char *node = nodej ? json_object_get_string(nodej) : "";
    if (strcmp(kind, "not_running") == 0) {
        snprintf(buf, size, "%s is %s: it cannot be compared\n", node,
            json_object_get_string(tn_jget(gap, "state")));
    } else if (strcmp(kind, "digest_failed") == 0) {
        const char *out = json_object_get_string(tn_jget(gap, "output"));
        size_t len = strlen(out);
        snprintf(buf, size, "%s: digest failed (exit %d) %s%s", node,
            json_object_get_int(tn_jget(gap, "exit")), out,
            len > 0 && out[len - 1] == '\n' ? "" : "\n");
    } else if (strcmp(kind, "waiting") == 0) {
        snprintf(buf, size, "%s waits for %lld delta(s) (%s)\n", node,
            (long long)json_object_get_int64(tn_jget(gap, "count")),
            json_object_get_string(tn_jget(gap, "for")));
    } else if (strcmp(kind, "lacks") == 0) {
        snprintf(buf, size, "%s lacks deltas of origin %s (%.8s): has seq %lld of %lld\n", node,
            json_object_get_string(tn_jget(gap, "origin_node")),
            json_object_get_string(tn_jget(gap, "origin")),
            (long long)json_object_get_int64(tn_jget(gap, "has")),
            (long long)json_object_get_int64(tn_jget(gap, "of")));
    } else {
        size_t used = (size_t)snprintf(
            buf, size, "tag %.16s differs:", json_object_get_string(tn_jget(gap, "tag")));
        json_object_object_foreach(tn_jget(gap, "digests"), name, digest)
        {
            if (used < size)
                used += (size_t)snprintf(
                    buf + used, size - used, " %s=%.8s", name, json_object_get_string(digest));
        }
        if (used < size)
            snprintf(buf + used, size - used, "\n");
    }
}

char *tn_gaps_text(json_object *gaps)
{
    char *text = calloc(1, TEXT_MAX);
    if (text == NULL)
        return NULL;
    size_t n = gaps ? json_object_array_length(gaps) : 0, used = 0;
    for (size_t k = 0; k < n && k < TEXT_LINES && used < TEXT_MAX; k++) {
        gap_text(json_object_array_get_idx(gaps, k), text + used, TEXT_MAX - used);
        used += strlen(text + used);
    }
    if (n > TEXT_LINES && used + 8 < TEXT_MAX)
        strcat(text, "  ...\n");
    return text;
}

tn_err tn_wait_converged(const tn_net *net, int timeout_ms, bool (*tick)(void *), void *arg,
    uint64_t *took_ms, json_object **gaps, size_t *omitted)
{
    uint64_t start = tn_now_ms();
    *gaps = NULL;
    for (;;) {
        json_object_put(*gaps);
        tn_err err = tn_converged(net, gaps, omitted);
        *took_ms = tn_now_ms() - start;
        if (err != TN_ENOTCONVERGED || *took_ms >= (uint64_t)timeout_ms
            || (tick != NULL && !tick(arg)))
            return err;
        tn_sleep_ms(100);
    }
}

tn_err tn_cmd_check(const tn_args *a)
{
    bool json = tn_given(a, "--json");
    uint64_t timeout = tn_num(a, "--timeout", 60);
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_ENOMEM;
    json_object *gaps = NULL;
    tn_err err = tn_net_load(net, a->pos[0]);
    if (err != TN_OK)
        goto done;
    uint64_t took = 0;
    size_t omitted = 0;
    err = tn_wait_converged(net, (int)timeout * 1000, NULL, NULL, &took, &gaps, &omitted);
    if (err != TN_OK && err != TN_ENOTCONVERGED) {
        tn_ctl_say(net->dir, "status", err, NULL);
        goto done;
    }
    if (json) {
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "converged", json_object_new_boolean(err == TN_OK));
        json_object_object_add(doc, "took_ms", json_object_new_int64((int64_t)took));
        json_object_object_add(doc, "nodes", json_object_new_int64((int64_t)net->n));
        if (err != TN_OK) {
            json_object_object_add(doc, "missing", json_object_get(gaps));
            json_object_object_add(doc, "missing_omitted", json_object_new_int64((int64_t)omitted));
        }
        puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
        json_object_put(doc);
    } else if (err == TN_OK) {
        printf("converged: %zu nodes agree (took %.1f s)\n", net->n, (double)took / 1000.0);
    } else {
        char *text = tn_gaps_text(gaps);
        printf("not converged after %.1f s:\n%s", (double)took / 1000.0, text ? text : "");
        free(text);
    }
done:
    json_object_put(gaps);
    free(net);
    return err;
}
