/* status.c - the supervisor's status answer parsed (nodes, faults, links), lag, and the command
 * `status` (README.md "Commands"; its --json keys in README.md "status --json"). */
#include "tn.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* The supervisor's answer                                                                   */

/* tok is "key=NUMBER" with NUMBER at most max. */
static bool kv_num(const char *tok, const char *key, uint64_t max, uint64_t *out)
{
    size_t len = strlen(key);
    return strncmp(tok, key, len) == 0 && tok[len] == '='
        && tn_parse_u64(tok + len + 1, 0, max, out) == TN_OK;
}

/* node NAME STATE pid=P starts=S crashes=C last-exit=X */
static bool parse_node(const tn_net *net, tn_sv_status *st, char **tok, size_t n)
{
    size_t i = tn_net_index(net, tok[1]);
    uint64_t pid, starts, crashes;
    if (n != 7 || i == net->n
        || (strcmp(tok[2], "running") != 0 && strcmp(tok[2], "stopped") != 0
            && strcmp(tok[2], "down") != 0)
        || !kv_num(tok[3], "pid", INT_MAX, &pid) || !kv_num(tok[4], "starts", ULONG_MAX, &starts)
        || !kv_num(tok[5], "crashes", ULONG_MAX, &crashes)
        || strncmp(tok[6], "last-exit=", 10) != 0)
        return false;
    tn_sv_node *nd = &st->nodes[i];
    snprintf(nd->state, sizeof nd->state, "%s", tok[2]);
    nd->pid = (long)pid;
    nd->starts = (unsigned long)starts;
    nd->crashes = (unsigned long)crashes;
    snprintf(nd->last_exit, sizeof nd->last_exit, "%s", tok[6] + 10);
    return true;
}

/* fault partition A,B C,D | fault slow A B delay-ms=M loss-pct=L */
static bool parse_fault(const tn_net *net, tn_sv_status *st, char **tok, size_t n)
{
    if (n >= 3 && strcmp(tok[1], "partition") == 0) {
        st->partitioned = true;
        st->ngroups = (int)(n - 2);
        for (size_t i = 0; i < net->n; i++)
            st->group[i] = st->ngroups; /* not named: one more group (never, from the supervisor) */
        for (size_t g = 2; g < n; g++)
            for (char *save = NULL, *name = strtok_r(tok[g], ",", &save); name;
                 name = strtok_r(NULL, ",", &save)) {
                size_t i = tn_net_index(net, name);
                if (i == net->n)
                    return false;
                st->group[i] = (int)g - 2;
            }
        return true;
    }
    uint64_t delay, loss;
    size_t a, b;
    if (n != 6 || strcmp(tok[1], "slow") != 0 || (a = tn_net_index(net, tok[2])) == net->n
        || (b = tn_net_index(net, tok[3])) == net->n
        || !kv_num(tok[4], "delay-ms", UINT_MAX, &delay) || !kv_num(tok[5], "loss-pct", 100, &loss))
        return false;
    st->delay[a][b] = st->delay[b][a] = (unsigned)delay;
    st->loss[a][b] = st->loss[b][a] = (unsigned)loss;
    return true;
}

/* link A B open=O accepted=N refused=N dropped=N */
static bool parse_link(const tn_net *net, tn_sv_status *st, char **tok, size_t n)
{
    size_t a, b;
    if (n != 7 || (a = tn_net_index(net, tok[1])) == net->n
        || (b = tn_net_index(net, tok[2])) == net->n)
        return false;
    tn_sv_link *l = &st->link[a][b];
    l->listed = true;
    return kv_num(tok[3], "open", UINT64_MAX, &l->open)
        && kv_num(tok[4], "accepted", UINT64_MAX, &l->accepted)
        && kv_num(tok[5], "refused", UINT64_MAX, &l->refused)
        && kv_num(tok[6], "dropped", UINT64_MAX, &l->dropped);
}

tn_err tn_sv_status_get(const tn_net *net, tn_sv_status *st)
{
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < net->n; i++) {
        snprintf(st->nodes[i].state, sizeof st->nodes[i].state, "down");
        snprintf(st->nodes[i].last_exit, sizeof st->nodes[i].last_exit, "none");
    }
    char *ans = NULL;
    tn_err err = tn_ctl(net->dir, "status", &ans, 5000);
    if (err != TN_OK)
        goto done;
    char *save = NULL;
    strtok_r(ans, "\n", &save); /* "ok" */
    for (char *l = strtok_r(NULL, "\n", &save); l != NULL && err == TN_OK;
         l = strtok_r(NULL, "\n", &save)) {
        char *tok[TN_MAX_NODES + 8];
        size_t n = 0;
        for (char *s2 = NULL, *t = strtok_r(l, " ", &s2); t != NULL; t = strtok_r(NULL, " ", &s2))
            if (n < sizeof tok / sizeof tok[0])
                tok[n++] = t;
        /* Lines of other kinds are for a later supervisor: left alone. */
        bool ok = true;
        if (n > 0 && strcmp(tok[0], "node") == 0)
            ok = parse_node(net, st, tok, n);
        else if (n > 0 && strcmp(tok[0], "fault") == 0)
            ok = parse_fault(net, st, tok, n);
        else if (n > 0 && strcmp(tok[0], "link") == 0)
            ok = parse_link(net, st, tok, n);
        if (!ok)
            err = TN_EBADANSWER;
    }
done:
    free(ans);
    return err;
}

void tn_sv_faults_text(
    const tn_net *net, const tn_sv_status *st, const char *sep, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    if (st->partitioned) {
        char groups[TN_MAX_NODES * 34];
        tn_groups_text(net, st->group, st->ngroups + 1, groups, sizeof groups);
        used += (size_t)snprintf(buf, size, "partition %s", groups);
    }
    for (size_t a = 0; a < net->n && used < size; a++)
        for (size_t b = a + 1; b < net->n && used < size; b++)
            if (st->delay[a][b] > 0 || st->loss[a][b] > 0)
                used += (size_t)snprintf(buf + used, size - used,
                    "%sslow %s %s delay-ms=%u loss-pct=%u", used > 0 ? sep : "", net->nodes[a].name,
                    net->nodes[b].name, st->delay[a][b], st->loss[a][b]);
}

tn_err tn_node_states(const tn_net *net, char state[TN_MAX_NODES][16])
{
    tn_sv_status *st = malloc(sizeof *st);
    if (st == NULL)
        return TN_ENOMEM;
    tn_err err = tn_sv_status_get(net, st);
    for (size_t i = 0; err == TN_OK && i < net->n; i++)
        snprintf(state[i], 16, "%s", st->nodes[i].state);
    free(st);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Lag                                                                                       */

int64_t tn_vv_headers(json_object *vv)
{
    if (vv == NULL || !json_object_is_type(vv, json_type_object))
        return -1;
    int64_t sum = 0;
    json_object_object_foreach(vv, origin, seq)
    {
        (void)origin;
        sum += json_object_get_int64(seq);
    }
    return sum;
}

void tn_lags(size_t n, const int64_t *headers, int64_t *lag)
{
    int64_t most = -1;
    for (size_t i = 0; i < n; i++)
        if (headers[i] > most)
            most = headers[i];
    for (size_t i = 0; i < n; i++)
        lag[i] = headers[i] < 0 ? -1 : most - headers[i];
}

/* ---------------------------------------------------------------------------------------- */
/* status                                                                                    */

/* What `status` shows of one node, beside the supervisor's view. */
typedef struct view {
    json_object *st[TN_MAX_NODES]; /* patto status, owned; NULL: not running or no answer */
    int64_t headers[TN_MAX_NODES]; /* -1 unknown */
    int64_t lag[TN_MAX_NODES];     /* -1 unknown */
} view;

static void view_get(const tn_net *net, const tn_sv_status *sv, view *v)
{
    for (size_t i = 0; i < net->n; i++) {
        v->st[i] = strcmp(sv->nodes[i].state, "running") == 0 ? tn_node_status(net, i) : NULL;
        json_object *h = v->st[i] ? tn_jget(v->st[i], "counts/headers") : NULL;
        v->headers[i] = h != NULL ? json_object_get_int64(h) : -1;
    }
    tn_lags(net->n, v->headers, v->lag);
}

static void view_fini(const tn_net *net, view *v)
{
    for (size_t i = 0; i < net->n; i++)
        json_object_put(v->st[i]);
}

static json_object *json_num_or_null(int64_t v)
{
    return v < 0 ? NULL : json_object_new_int64(v);
}

static json_object *status_json_peers(const tn_net *net, const view *v, size_t i)
{
    json_object *out = json_object_new_array();
    json_object *peers = v->st[i] ? tn_jget(v->st[i], "peers") : NULL;
    for (size_t k = 0; peers != NULL && k < json_object_array_length(peers); k++) {
        json_object *p = json_object_array_get_idx(peers, k), *o = json_object_new_object();
        json_object *org = tn_jget(p, "org"), *state = tn_jget(p, "state"),
                    *heard = tn_jget(p, "last_heard_s");
        size_t j = org ? tn_net_index(net, json_object_get_string(org)) : net->n;
        json_object_object_add(o, "name", org ? json_object_get(org) : NULL);
        json_object_object_add(o, "state", state ? json_object_get(state) : NULL);
        json_object_object_add(o, "lag", j < net->n ? json_num_or_null(v->lag[j]) : NULL);
        json_object_object_add(o, "last_heard_s", heard ? json_object_get(heard) : NULL);
        json_object_array_add(out, o);
    }
    return out;
}

static json_object *status_json(
    const tn_net *net, const tn_sv_status *sv, const view *v, bool links)
{
    json_object *doc = json_object_new_object(), *nodes = json_object_new_array();
    json_object_object_add(doc, "dir", json_object_new_string(net->dir));
    for (size_t i = 0; i < net->n; i++) {
        const tn_sv_node *sn = &sv->nodes[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(net->nodes[i].name));
        json_object_object_add(o, "state", json_object_new_string(sn->state));
        json_object_object_add(o, "pid", sn->pid > 0 ? json_object_new_int64(sn->pid) : NULL);
        json_object_object_add(o, "starts", json_object_new_int64((int64_t)sn->starts));
        json_object_object_add(o, "crashes", json_object_new_int64((int64_t)sn->crashes));
        json_object_object_add(o, "last_exit",
            strcmp(sn->last_exit, "none") == 0 ? NULL : json_object_new_string(sn->last_exit));
        json_object_object_add(o, "answers", json_object_new_boolean(v->st[i] != NULL));
        json_object_object_add(o, "headers", json_num_or_null(v->headers[i]));
        json_object_object_add(o, "lag", json_num_or_null(v->lag[i]));
        json_object_object_add(o, "peers", status_json_peers(net, v, i));
        json_object_array_add(nodes, o);
    }
    json_object_object_add(doc, "nodes", nodes);
    json_object *faults = json_object_new_array();
    if (sv->partitioned) {
        json_object *f = json_object_new_object(), *groups = json_object_new_array();
        json_object_object_add(f, "kind", json_object_new_string("partition"));
        for (int g = 0; g <= sv->ngroups; g++) {
            json_object *names = json_object_new_array();
            for (size_t i = 0; i < net->n; i++)
                if (sv->group[i] == g)
                    json_object_array_add(names, json_object_new_string(net->nodes[i].name));
            if (json_object_array_length(names) > 0)
                json_object_array_add(groups, names);
            else
                json_object_put(names);
        }
        json_object_object_add(f, "groups", groups);
        json_object_array_add(faults, f);
    }
    for (size_t a = 0; a < net->n; a++)
        for (size_t b = a + 1; b < net->n; b++)
            if (sv->delay[a][b] > 0 || sv->loss[a][b] > 0) {
                json_object *f = json_object_new_object();
                json_object_object_add(f, "kind", json_object_new_string("slow"));
                json_object_object_add(f, "a", json_object_new_string(net->nodes[a].name));
                json_object_object_add(f, "b", json_object_new_string(net->nodes[b].name));
                json_object_object_add(f, "delay_ms", json_object_new_int64(sv->delay[a][b]));
                json_object_object_add(f, "loss_pct", json_object_new_int64(sv->loss[a][b]));
                json_object_array_add(faults, f);
            }
    json_object_object_add(doc, "faults", faults);
    if (links) {
        json_object *arr = json_object_new_array();
        for (size_t a = 0; a < net->n; a++)
            for (size_t b = 0; b < net->n; b++) {
                const tn_sv_link *l = &sv->link[a][b];
                if (!l->listed)
                    continue;
                json_object *o = json_object_new_object();
                json_object_object_add(o, "from", json_object_new_string(net->nodes[a].name));
                json_object_object_add(o, "to", json_object_new_string(net->nodes[b].name));
                json_object_object_add(o, "open", json_object_new_int64((int64_t)l->open));
                json_object_object_add(o, "accepted", json_object_new_int64((int64_t)l->accepted));
                json_object_object_add(o, "refused", json_object_new_int64((int64_t)l->refused));
                json_object_object_add(o, "dropped", json_object_new_int64((int64_t)l->dropped));
                json_object_array_add(arr, o);
            }
        json_object_object_add(doc, "links", arr);
    }
    return doc;
}

static void status_text(const tn_net *net, const tn_sv_status *sv, const view *v, bool links)
{
    for (size_t i = 0; i < net->n; i++) {
        const tn_sv_node *sn = &sv->nodes[i];
        printf("%-14s %s pid=%ld starts=%lu crashes=%lu last-exit=%s", net->nodes[i].name,
            sn->state, sn->pid, sn->starts, sn->crashes, sn->last_exit);
        if (v->st[i] == NULL) {
            printf("%s\n", strcmp(sn->state, "running") == 0 ? "  (does not answer)" : "");
            continue;
        }
        printf("  headers %lld  lag %lld\n", (long long)v->headers[i], (long long)v->lag[i]);
        json_object *peers = tn_jget(v->st[i], "peers");
        for (size_t k = 0; peers && k < json_object_array_length(peers); k++) {
            json_object *p = json_object_array_get_idx(peers, k);
            json_object *org = tn_jget(p, "org"), *state = tn_jget(p, "state"),
                        *heard = tn_jget(p, "last_heard_s");
            size_t j = org ? tn_net_index(net, json_object_get_string(org)) : net->n;
            char heardtxt[32] = "never", lagtxt[24] = "-";
            if (heard != NULL && !json_object_is_type(heard, json_type_null))
                snprintf(heardtxt, sizeof heardtxt, "%.1f s ago", json_object_get_double(heard));
            if (j < net->n && v->lag[j] >= 0)
                snprintf(lagtxt, sizeof lagtxt, "%lld", (long long)v->lag[j]);
            printf("    peer %-14s %-10s lag %-6s heard %s\n",
                org ? json_object_get_string(org) : "?",
                state ? json_object_get_string(state) : "?", lagtxt, heardtxt);
        }
    }
    char faults[8192];
    tn_sv_faults_text(net, sv, "\n  ", faults, sizeof faults);
    printf("faults:%s%s\n", faults[0] ? "\n  " : " none", faults);
    if (!links)
        return;
    printf("links (proxy FROM TO: connections open, accepted, refused, dropped):\n");
    for (size_t a = 0; a < net->n; a++)
        for (size_t b = 0; b < net->n; b++) {
            const tn_sv_link *l = &sv->link[a][b];
            if (l->listed)
                printf("  %s %s open=%llu accepted=%llu refused=%llu dropped=%llu\n",
                    net->nodes[a].name, net->nodes[b].name, (unsigned long long)l->open,
                    (unsigned long long)l->accepted, (unsigned long long)l->refused,
                    (unsigned long long)l->dropped);
        }
}

tn_err tn_cmd_status(const tn_args *a)
{
    bool links = tn_given(a, "--links"), json = tn_given(a, "--json");
    tn_net *net = calloc(1, sizeof *net);
    tn_sv_status *sv = calloc(1, sizeof *sv);
    view *v = calloc(1, sizeof *v);
    tn_err err = TN_ENOMEM;
    if (net == NULL || sv == NULL || v == NULL)
        goto done;
    if ((err = tn_net_load(net, a->pos[0])) != TN_OK)
        goto done;
    if ((err = tn_sv_status_get(net, sv)) != TN_OK) {
        tn_ctl_say(net->dir, "status", err, NULL);
        goto done;
    }
    view_get(net, sv, v);
    if (json) {
        json_object *doc = status_json(net, sv, v, links);
        puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
        json_object_put(doc);
    } else {
        status_text(net, sv, v, links);
    }
    view_fini(net, v);
done:
    free(v);
    free(sv);
    free(net);
    return err;
}
