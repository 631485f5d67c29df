/* net.c - creating a testnet, its description file, the supervisor's client and the commands
 * up, down, status, partition, slow, heal, kill, stop, cont, restart. */
#include "tn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Names                                                                                     */

void tn_node_name(size_t i, char name[33], char role[16])
{
    static const char *const first[] = { "comune", "cpia", "prefettura" };
    static const char *const cycle[] = { "comune", "cpi", "coop", "comune", "cpia" };
    const char *r = i < 3 ? first[i] : cycle[(i - 3) % 5];
    /* Number the role by how many nodes before this one have it. */
    unsigned count = 0;
    for (size_t k = 0; k <= i; k++) {
        const char *rk = k < 3 ? first[k] : cycle[(k - 3) % 5];
        if (strcmp(rk, r) == 0)
            count++;
    }
    snprintf(role, 16, "%s", r);
    snprintf(name, 33, "%s-%u", r, count);
}

/* ---------------------------------------------------------------------------------------- */
/* testnet.json                                                                              */

static int net_save(const tn_net *net)
{
    json_object *doc = json_object_new_object(), *nodes = json_object_new_array(),
                *proxies = json_object_new_array();
    json_object_object_add(doc, "version", json_object_new_int(1));
    for (size_t i = 0; i < net->n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(net->nodes[i].name));
        json_object_object_add(o, "role", json_object_new_string(net->nodes[i].role));
        json_object_object_add(o, "origin", json_object_new_string(net->nodes[i].origin));
        json_object_object_add(o, "port", json_object_new_int(net->nodes[i].port));
        json_object_array_add(nodes, o);
        json_object *row = json_object_new_array();
        for (size_t j = 0; j < net->n; j++)
            json_object_array_add(row, json_object_new_int(net->proxy[i][j]));
        json_object_array_add(proxies, row);
    }
    json_object_object_add(doc, "nodes", nodes);
    json_object_object_add(doc, "proxies", proxies);
    char path[TN_PATH_MAX + 20];
    tn_path(path, sizeof path, "%s/" TN_CONF, net->dir);
    int rc = tn_write_file(path, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
    json_object_put(doc);
    if (rc != 0)
        tn_err("cannot write %s: %s", path, strerror(errno));
    return rc;
}

int tn_net_load(tn_net *net, const char *dir)
{
    memset(net, 0, sizeof *net);
    char abs[PATH_MAX];
    if (realpath(dir, abs) == NULL) {
        tn_err("%s: %s (no testnet here: run `patto-testnet up %s --nodes 3`)", dir,
            strerror(errno), dir);
        return -1;
    }
    tn_path(net->dir, sizeof net->dir, "%s", abs);
    char path[TN_PATH_MAX + 20];
    tn_path(path, sizeof path, "%s/" TN_CONF, net->dir);
    char *text = tn_read_file(path, NULL);
    if (text == NULL) {
        tn_err("cannot read %s: %s (is %s a testnet? `patto-testnet up` creates one)", path,
            strerror(errno), dir);
        return -1;
    }
    json_object *doc = json_tokener_parse(text);
    free(text);
    json_object *nodes = doc ? tn_jget(doc, "nodes") : NULL;
    json_object *proxies = doc ? tn_jget(doc, "proxies") : NULL;
    if (nodes == NULL || proxies == NULL || !json_object_is_type(nodes, json_type_array)
        || json_object_array_length(nodes) == 0 || json_object_array_length(nodes) > TN_MAX_NODES
        || json_object_array_length(proxies) != json_object_array_length(nodes)) {
        tn_err("%s is not a testnet description (nodes, proxies)", path);
        json_object_put(doc);
        return -1;
    }
    net->n = json_object_array_length(nodes);
    for (size_t i = 0; i < net->n; i++) {
        json_object *o = json_object_array_get_idx(nodes, i);
        json_object *name = tn_jget(o, "name"), *role = tn_jget(o, "role"),
                    *origin = tn_jget(o, "origin"), *port = tn_jget(o, "port");
        json_object *row = json_object_array_get_idx(proxies, i);
        if (name == NULL || role == NULL || origin == NULL || port == NULL || row == NULL
            || json_object_array_length(row) != net->n) {
            tn_err("%s: node %zu is incomplete", path, i);
            json_object_put(doc);
            return -1;
        }
        snprintf(net->nodes[i].name, sizeof net->nodes[i].name, "%s", json_object_get_string(name));
        snprintf(net->nodes[i].role, sizeof net->nodes[i].role, "%s", json_object_get_string(role));
        snprintf(net->nodes[i].origin, sizeof net->nodes[i].origin, "%s",
            json_object_get_string(origin));
        net->nodes[i].port = (uint16_t)json_object_get_int(port);
        for (size_t j = 0; j < net->n; j++)
            net->proxy[i][j] = (uint16_t)json_object_get_int(json_object_array_get_idx(row, j));
    }
    json_object_put(doc);
    return 0;
}

int tn_net_find(const tn_net *net, const char *name)
{
    for (size_t i = 0; i < net->n; i++)
        if (strcmp(net->nodes[i].name, name) == 0)
            return (int)i;
    char list[TN_MAX_NODES * 34] = "";
    for (size_t i = 0; i < net->n; i++) {
        strcat(list, " ");
        strcat(list, net->nodes[i].name);
    }
    tn_err("no node %s in %s; the nodes are:%s", name, net->dir, list);
    return -1;
}

const char *tn_net_org_of(const tn_net *net, const char *origin)
{
    for (size_t i = 0; i < net->n; i++)
        if (strcmp(net->nodes[i].origin, origin) == 0)
            return net->nodes[i].name;
    return "?";
}

/* ---------------------------------------------------------------------------------------- */
/* Creating a testnet                                                                        */

static int checked(tn_out o, const char *what)
{
    int st = o.status;
    if (st != 0)
        tn_err("%s failed (exit %d): %s%s", what, st, o.out ? o.out : "", o.err ? o.err : "");
    tn_out_free(&o);
    return st == 0 ? 0 : -1;
}

static bool port_taken(const tn_net *net, size_t nports, uint16_t p)
{
    (void)nports;
    for (size_t i = 0; i < net->n; i++) {
        if (net->nodes[i].port == p)
            return true;
        for (size_t j = 0; j < net->n; j++)
            if (net->proxy[i][j] == p)
                return true;
    }
    return false;
}

static uint16_t pick_port(const tn_net *net, uint16_t base, size_t index)
{
    if (base != 0)
        return (uint16_t)(base + index);
    for (int tries = 0; tries < 100; tries++) {
        uint16_t p = tn_free_port();
        if (p != 0 && !port_taken(net, 0, p))
            return p;
    }
    return 0;
}

static int net_create(tn_net *net, size_t n, uint16_t base)
{
    if (base != 0 && (unsigned)base + n * n + n > 65535) {
        tn_err("--base-port %u leaves no room for %zu ports", base, n * n);
        return -1;
    }
    char admin[TN_PATH_MAX + 20], pubpath[TN_PATH_MAX + 40], manifest[TN_PATH_MAX + 20];
    tn_path(admin, sizeof admin, "%s/admin", net->dir);
    tn_path(pubpath, sizeof pubpath, "%s/admin.pub", admin);
    tn_path(manifest, sizeof manifest, "%s/manifest.bin", net->dir);
    const char *init[] = { tn_patto_bin(), "network", "init", admin, NULL };
    if (checked(tn_run(init), "patto network init") != 0)
        return -1;
    char *pub = tn_read_file(pubpath, NULL);
    if (pub == NULL || strlen(pub) < 64) {
        tn_err("no admin key in %s", pubpath);
        free(pub);
        return -1;
    }
    pub[64] = '\0';
    net->n = n;
    /* Ports first, so a clash is found before anything else is written. */
    for (size_t i = 0; i < n; i++)
        if ((net->nodes[i].port = pick_port(net, base, i)) == 0)
            goto no_port;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j && (net->proxy[i][j] = pick_port(net, base, n + i * n + j)) == 0)
                goto no_port;
    for (size_t i = 0; i < n; i++) {
        tn_node *nd = &net->nodes[i];
        tn_node_name(i, nd->name, nd->role);
        char dir[TN_PATH_MAX + 40], listen[64], op[64], entry[TN_PATH_MAX + 60];
        tn_path(dir, sizeof dir, "%s/%s", net->dir, nd->name);
        tn_path(entry, sizeof entry, "%s/%s.entry.json", net->dir, nd->name);
        snprintf(listen, sizeof listen, "tcp://127.0.0.1:%u", (unsigned)nd->port);
        snprintf(op, sizeof op, "op-%s", nd->name);
        const char *args[] = { tn_patto_bin(), "init", "--dir", dir, "--org", nd->name, "--role",
            nd->role, "--listen", listen, "--admin-pub", pub, "--operator", op, NULL };
        tn_out o = tn_run(args);
        json_object *origin = o.json ? tn_jget(o.json, "origin") : NULL;
        if (o.status != 0 || origin == NULL) {
            checked(o, "patto init");
            free(pub);
            return -1;
        }
        snprintf(nd->origin, sizeof nd->origin, "%s", json_object_get_string(origin));
        int wrc = tn_write_file(entry, o.out);
        tn_out_free(&o);
        if (wrc != 0) {
            tn_err("cannot write %s: %s", entry, strerror(errno));
            free(pub);
            return -1;
        }
        const char *add[] = { tn_patto_bin(), "network", "add", admin, entry, NULL };
        if (checked(tn_run(add), "patto network add") != 0) {
            free(pub);
            return -1;
        }
    }
    free(pub);
    const char *sign[] = { tn_patto_bin(), "network", "sign", admin, "--out", manifest, NULL };
    if (checked(tn_run(sign), "patto network sign") != 0)
        return -1;
    /* Every node dials every other node through the proxy of that ordered pair. */
    for (size_t i = 0; i < n; i++) {
        char conf[TN_PATH_MAX + 60];
        tn_path(conf, sizeof conf, "%s/%s/pattod.conf", net->dir, net->nodes[i].name);
        FILE *f = fopen(conf, "a");
        if (f == NULL) {
            tn_err("cannot open %s: %s", conf, strerror(errno));
            return -1;
        }
        fprintf(f, "\n[dial]\n; patto-testnet: every link goes through the testnet's proxy\n");
        for (size_t j = 0; j < n; j++)
            if (j != i)
                fprintf(
                    f, "%s = tcp://127.0.0.1:%u\n", net->nodes[j].name, (unsigned)net->proxy[i][j]);
        if (fclose(f) != 0) {
            tn_err("cannot write %s: %s", conf, strerror(errno));
            return -1;
        }
    }
    return net_save(net);
no_port:
    free(pub);
    tn_err("cannot find free TCP ports on 127.0.0.1");
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* The supervisor's client                                                                   */

int tn_ctl(const char *dir, const char *line, char **answer, int timeout_ms)
{
    *answer = NULL;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* Connect from inside DIR: a deep DIR would not fit sun_path (107 bytes). */
    int here = open(".", O_RDONLY | O_DIRECTORY);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, TN_SOCK, sizeof TN_SOCK);
    int rc = -1;
    if (here >= 0 && chdir(dir) == 0) {
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        if (fchdir(here) != 0)
            rc = -1;
    }
    if (here >= 0)
        close(here);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    size_t len = strlen(line);
    char *msg = malloc(len + 2);
    if (msg == NULL) {
        close(fd);
        return -1;
    }
    memcpy(msg, line, len);
    msg[len] = '\n';
    bool sent = send(fd, msg, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1);
    free(msg);
    size_t n = 0, cap = 4096;
    char *buf = sent ? malloc(cap) : NULL;
    while (buf != NULL) {
        if (cap - n < 1024) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (buf == NULL)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, "ok", 2) == 0) {
        *answer = buf;
        return 0;
    }
    if (strncmp(buf, "error ", 6) == 0) {
        memmove(buf, buf + 6, n - 5);
        char *nl = strchr(buf, '\n');
        if (nl != NULL)
            *nl = '\0';
        *answer = buf;
        return 1;
    }
    free(buf);
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* up                                                                                        */

static int start_supervisor(const tn_net *net)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        tn_err("cannot find my own program: %s", strerror(errno));
        return -1;
    }
    self[len] = '\0';
    char logpath[TN_PATH_MAX + 20];
    tn_path(logpath, sizeof logpath, "%s/supervisor.log", net->dir);
    const char *pattod = tn_pattod_bin();
    if (access(pattod, X_OK) != 0) {
        tn_err("cannot run pattod at %s (set PATTOD_BIN)", pattod);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Daemonise: a new session, then a grandchild that init adopts. */
        setsid();
        if (fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR);
        int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (null >= 0)
            dup2(null, 0);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        /* Keep nothing of the caller's: a pipe held open here would make whoever reads
         * our output wait for the supervisor's end. */
        long maxfd = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 65536); fd++)
            close((int)fd);
        /* /proc/self/exe, not its name: a rebuilt program must not break a running one. */
        execl("/proc/self/exe", self, "supervise", net->dir, pattod, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    for (int k = 0; k < 250; k++) {
        char *ans = NULL;
        int rc = tn_ctl(net->dir, "ping", &ans, 2000);
        free(ans);
        if (rc == 0)
            return 0;
        tn_sleep_ms(40);
    }
    tn_err("the supervisor did not answer within 10 s; see %s", logpath);
    return -1;
}

int tn_wait_node(const tn_net *net, size_t i, int timeout_ms)
{
    uint64_t end = tn_now_ms() + (uint64_t)timeout_ms;
    do {
        tn_out o = tn_patto(net, i, "status", NULL);
        int st = o.status;
        tn_out_free(&o);
        if (st == 0)
            return 0;
        /* A node that has exited will not answer: say so now, with the end of its log. */
        char state[TN_MAX_NODES][16];
        if (tn_node_states(net, state) == 0 && strcmp(state[i], "down") == 0) {
            char logp[TN_PATH_MAX + 40];
            tn_path(logp, sizeof logp, "%s/%s.log", net->dir, net->nodes[i].name);
            size_t len = 0;
            char *log = tn_read_file(logp, &len);
            tn_err("%s exited (see %s)%s%s", net->nodes[i].name, logp, log ? ":\n" : "",
                log ? (len > 1500 ? log + len - 1500 : log) : "");
            free(log);
            return -1;
        }
        tn_sleep_ms(50);
    } while (tn_now_ms() < end);
    tn_err("%s did not answer within %d s; see %s/%s.log", net->nodes[i].name, timeout_ms / 1000,
        net->dir, net->nodes[i].name);
    return -1;
}

/* Node i's status as JSON (owned) or NULL. */
static json_object *node_status(const tn_net *net, size_t i)
{
    tn_out o = tn_patto(net, i, "status", NULL);
    json_object *j = NULL;
    if (o.status == 0 && o.json != NULL) {
        j = o.json;
        o.json = NULL;
    }
    tn_out_free(&o);
    return j;
}

int tn_node_states(const tn_net *net, char state[TN_MAX_NODES][16])
{
    char *ans = NULL;
    if (tn_ctl(net->dir, "status", &ans, 5000) != 0) {
        free(ans);
        return -1;
    }
    for (size_t i = 0; i < net->n; i++)
        snprintf(state[i], 16, "down");
    for (char *save = NULL, *l = strtok_r(ans, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[64], st[16];
        if (sscanf(l, "node %63s %15s", name, st) == 2)
            for (size_t i = 0; i < net->n; i++)
                if (strcmp(net->nodes[i].name, name) == 0)
                    snprintf(state[i], 16, "%s", st);
    }
    free(ans);
    return 0;
}

/* The supervisor's view: which nodes are running (not stopped, not exited). */
static int running_nodes(const tn_net *net, bool running[TN_MAX_NODES])
{
    char state[TN_MAX_NODES][16];
    if (tn_node_states(net, state) != 0)
        return -1;
    for (size_t i = 0; i < net->n; i++)
        running[i] = strcmp(state[i], "running") == 0;
    return 0;
}

int tn_wait_connected(const tn_net *net, int timeout_ms, bool quiet)
{
    uint64_t end = tn_now_ms() + (uint64_t)timeout_ms;
    char why[256] = "";
    for (;;) {
        bool running[TN_MAX_NODES];
        bool all = running_nodes(net, running) == 0;
        if (!all)
            snprintf(why, sizeof why, "the supervisor does not answer");
        for (size_t i = 0; i < net->n && all; i++) {
            if (!running[i])
                continue;
            json_object *st = node_status(net, i);
            json_object *peers = st ? tn_jget(st, "peers") : NULL;
            size_t up = 0, want = 0;
            for (size_t k = 0; peers && k < json_object_array_length(peers); k++) {
                json_object *p = json_object_array_get_idx(peers, k);
                json_object *org = tn_jget(p, "org"), *state = tn_jget(p, "state");
                int j = -1;
                for (size_t m = 0; org && m < net->n; m++)
                    if (strcmp(net->nodes[m].name, json_object_get_string(org)) == 0)
                        j = (int)m;
                if (j < 0 || !running[j])
                    continue;
                want++;
                if (state && strcmp(json_object_get_string(state), "up") == 0)
                    up++;
                else
                    snprintf(why, sizeof why, "%s does not see %s up", net->nodes[i].name,
                        net->nodes[j].name);
            }
            if (peers == NULL)
                snprintf(why, sizeof why, "%s does not answer", net->nodes[i].name);
            if (peers == NULL || up < want)
                all = false;
            json_object_put(st);
        }
        if (all)
            return 0;
        if (tn_now_ms() >= end) {
            if (!quiet)
                tn_err("not connected after %d s: %s", timeout_ms / 1000, why);
            return -1;
        }
        tn_sleep_ms(100);
    }
}

static bool is_pattod(pid_t pid);
static pid_t read_pid(const char *path);
static bool alive(pid_t pid);

int tn_up(const char *dirarg, size_t n, uint16_t base, bool quiet)
{
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_EXIT_ERROR;
    int rc = TN_EXIT_ERROR;
    char conf[TN_PATH_MAX + 20];
    tn_path(conf, sizeof conf, "%s/" TN_CONF, dirarg);
    if (tn_exists(conf)) {
        if (tn_net_load(net, dirarg) != 0)
            goto done;
        if (n != 0 && n != net->n) {
            tn_err("%s already holds a testnet of %zu nodes (not %zu); `down` it and use "
                   "another directory",
                dirarg, net->n, n);
            rc = TN_EXIT_USAGE;
            goto done;
        }
    } else {
        if (n == 0) {
            tn_err("%s holds no testnet yet: give --nodes N", dirarg);
            rc = TN_EXIT_USAGE;
            goto done;
        }
        if (mkdir(dirarg, 0755) != 0 && errno != EEXIST) {
            tn_err("cannot create %s: %s", dirarg, strerror(errno));
            goto done;
        }
        char abs[PATH_MAX];
        if (realpath(dirarg, abs) == NULL) {
            tn_err("%s: %s", dirarg, strerror(errno));
            goto done;
        }
        tn_path(net->dir, sizeof net->dir, "%s", abs);
        if (net_create(net, n, base) != 0)
            goto done;
    }
    char *ans = NULL;
    int ping = tn_ctl(net->dir, "ping", &ans, 2000);
    free(ans);
    if (ping != 0) {
        /* Nodes left by a supervisor that died would hold their data directories. */
        for (size_t i = 0; i < net->n; i++) {
            char p[TN_PATH_MAX + 40];
            tn_path(p, sizeof p, "%s/%s.pid", net->dir, net->nodes[i].name);
            pid_t pid = read_pid(p);
            if (pid > 0 && alive(pid) && is_pattod(pid)) {
                tn_err("%s (pid %d) still runs without its supervisor: run `patto-testnet down "
                       "%s` first",
                    net->nodes[i].name, (int)pid, dirarg);
                goto done;
            }
        }
        if (start_supervisor(net) != 0)
            goto done;
    }
    /* up means every node up: start the ones that are down, resume the stopped ones. */
    char state[TN_MAX_NODES][16];
    if (ping == 0 && tn_node_states(net, state) == 0) {
        for (size_t i = 0; i < net->n; i++) {
            char line[64];
            if (strcmp(state[i], "running") == 0)
                continue;
            snprintf(line, sizeof line, "%s %s",
                strcmp(state[i], "stopped") == 0 ? "cont" : "start", net->nodes[i].name);
            char *a2 = NULL;
            if (tn_ctl(net->dir, line, &a2, 20000) != 0)
                tn_err("%s: %s", line, a2 ? a2 : "no answer from the supervisor");
            free(a2);
        }
    }
    for (size_t i = 0; i < net->n; i++) {
        if (tn_wait_node(net, i, 15000) != 0)
            goto done;
        json_object *st = node_status(net, i);
        json_object *ver = st ? tn_jget(st, "versions/manifest") : NULL;
        bool has = ver != NULL && !json_object_is_type(ver, json_type_null);
        json_object_put(st);
        if (!has) {
            char manifest[TN_PATH_MAX + 20];
            tn_path(manifest, sizeof manifest, "%s/manifest.bin", net->dir);
            if (checked(
                    tn_patto(net, i, "manifest", "import", manifest, NULL), "patto manifest import")
                != 0)
                goto done;
        }
    }
    if (tn_wait_connected(net, 30000, false) != 0)
        goto done;
    if (!quiet)
        for (size_t i = 0; i < net->n; i++)
            printf("%s\n", net->nodes[i].name);
    fflush(stdout);
    rc = TN_EXIT_OK;
done:
    free(net);
    return rc;
}

int tn_cmd_up(int argc, char **argv)
{
    const char *dir = NULL;
    long nodes = 0, base = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
            nodes = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--base-port") == 0 && i + 1 < argc)
            base = strtol(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && dir == NULL)
            dir = argv[i];
        else {
            tn_err("up: unexpected argument %s; usage: patto-testnet up DIR --nodes N "
                   "[--base-port P]",
                argv[i]);
            return TN_EXIT_USAGE;
        }
    }
    if (dir == NULL || nodes < 0 || nodes == 1 || nodes > TN_MAX_NODES || base < 0
        || base > 65000) {
        tn_err(
            "usage: patto-testnet up DIR --nodes N [--base-port P] (N from 2 to %d)", TN_MAX_NODES);
        return TN_EXIT_USAGE;
    }
    return tn_up(dir, (size_t)nodes, (uint16_t)base, false);
}

/* ---------------------------------------------------------------------------------------- */
/* down                                                                                      */

static bool is_pattod(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    char *cmd = tn_read_file(path, NULL);
    bool yes = cmd != NULL && strstr(cmd, "pattod") != NULL;
    free(cmd);
    return yes;
}

static pid_t read_pid(const char *path)
{
    char *t = tn_read_file(path, NULL);
    pid_t pid = t ? (pid_t)strtol(t, NULL, 10) : 0;
    free(t);
    return pid;
}

static bool alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

int tn_down(const char *dir, bool quiet)
{
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_EXIT_ERROR;
    int rc = TN_EXIT_ERROR;
    if (tn_net_load(net, dir) != 0)
        goto done;
    char spid_path[TN_PATH_MAX + 20];
    tn_path(spid_path, sizeof spid_path, "%s/supervisor.pid", net->dir);
    pid_t spid = read_pid(spid_path);
    char *ans = NULL;
    int r = tn_ctl(net->dir, "down", &ans, 30000);
    if (r == 1)
        tn_err("the supervisor refused: %s", ans);
    free(ans);
    if (r == 0 && spid > 0) {
        for (int k = 0; k < 200 && alive(spid); k++)
            tn_sleep_ms(50);
    }
    /* Whatever is left (no supervisor, or one that did not finish): signal by pid file. */
    for (size_t i = 0; i < net->n; i++) {
        char p[TN_PATH_MAX + 40];
        tn_path(p, sizeof p, "%s/%s.pid", net->dir, net->nodes[i].name);
        pid_t pid = read_pid(p);
        if (pid > 0 && alive(pid) && is_pattod(pid)) {
            tn_err("%s (pid %d) still runs: stopping it", net->nodes[i].name, (int)pid);
            kill(pid, SIGCONT);
            kill(pid, SIGTERM);
            for (int k = 0; k < 100 && alive(pid); k++)
                tn_sleep_ms(50);
            if (alive(pid))
                kill(pid, SIGKILL);
        }
        unlink(p);
    }
    if (spid > 0 && alive(spid)) {
        tn_err("the supervisor (pid %d) still runs: stopping it", (int)spid);
        kill(spid, SIGTERM);
    }
    unlink(spid_path);
    if (!quiet)
        printf("down: %s\n", net->dir);
    rc = TN_EXIT_OK;
done:
    free(net);
    return rc;
}

int tn_cmd_down(int argc, char **argv)
{
    if (argc != 1) {
        tn_err("usage: patto-testnet down DIR");
        return TN_EXIT_USAGE;
    }
    return tn_down(argv[0], false);
}

/* ---------------------------------------------------------------------------------------- */
/* status                                                                                    */

int tn_cmd_status(int argc, char **argv)
{
    bool links = argc == 2 && strcmp(argv[1], "--links") == 0;
    if (argc != 1 && !links) {
        tn_err("usage: patto-testnet status DIR [--links]");
        return TN_EXIT_USAGE;
    }
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_EXIT_ERROR;
    int rc = TN_EXIT_ERROR;
    char *linktext = NULL;
    if (tn_net_load(net, argv[0]) != 0)
        goto done;
    char *ans = NULL;
    if (tn_ctl(net->dir, "status", &ans, 5000) != 0) {
        tn_err("the supervisor of %s does not answer: the testnet is down (`patto-testnet up "
               "%s` starts it), or its supervisor died (`patto-testnet down %s` stops what is "
               "left)",
            net->dir, argv[0], argv[0]);
        free(ans);
        goto done;
    }
    char states[TN_MAX_NODES][128];
    for (size_t i = 0; i < net->n; i++)
        snprintf(states[i], sizeof states[i], "unknown");
    char faults[4096] = "";
    for (char *save = NULL, *l = strtok_r(ans, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[64];
        int off = 0;
        if (sscanf(l, "node %63s %n", name, &off) == 1) {
            for (size_t i = 0; i < net->n; i++)
                if (strcmp(net->nodes[i].name, name) == 0)
                    snprintf(states[i], sizeof states[i], "%s", l + off);
        } else if (strncmp(l, "fault ", 6) == 0) {
            size_t used = strlen(faults);
            snprintf(faults + used, sizeof faults - used, "  %s\n", l + 6);
        } else if (links && strncmp(l, "link ", 5) == 0) {
            /* Proxy A->B: connections open now, accepted, refused (partition), dropped (loss). */
            size_t used = linktext ? strlen(linktext) : 0, add = strlen(l) + 4;
            char *nt = realloc(linktext, used + add);
            if (nt != NULL) {
                snprintf(nt + used, add, "  %s\n", l + 5);
                linktext = nt;
            }
        }
    }
    free(ans);
    /* Lag: headers behind the most advanced node, from every reachable node's vector. */
    json_object *st[TN_MAX_NODES] = { 0 };
    json_object *maxvv = json_object_new_object();
    for (size_t i = 0; i < net->n; i++) {
        if (strncmp(states[i], "running", 7) != 0)
            continue;
        st[i] = node_status(net, i);
        json_object *vv = st[i] ? tn_jget(st[i], "vv") : NULL;
        if (vv == NULL)
            continue;
        json_object_object_foreach(vv, origin, seq)
        {
            json_object *m = tn_jget(maxvv, origin);
            if (m == NULL || json_object_get_int64(m) < json_object_get_int64(seq))
                json_object_object_add(maxvv, origin, json_object_get(seq));
        }
    }
    for (size_t i = 0; i < net->n; i++) {
        printf("%-14s %s", net->nodes[i].name, states[i]);
        if (st[i] == NULL) {
            printf("%s\n", strncmp(states[i], "running", 7) == 0 ? "  (does not answer)" : "");
            continue;
        }
        int64_t lag = 0;
        json_object *vv = tn_jget(st[i], "vv");
        json_object_object_foreach(maxvv, origin, seq)
        {
            json_object *mine = vv ? tn_jget(vv, origin) : NULL;
            lag += json_object_get_int64(seq) - (mine ? json_object_get_int64(mine) : 0);
        }
        json_object *hdr = tn_jget(st[i], "counts/headers");
        printf("  headers %lld  lag %lld\n", hdr ? (long long)json_object_get_int64(hdr) : 0LL,
            (long long)lag);
        json_object *peers = tn_jget(st[i], "peers");
        for (size_t k = 0; peers && k < json_object_array_length(peers); k++) {
            json_object *p = json_object_array_get_idx(peers, k);
            json_object *org = tn_jget(p, "org"), *state = tn_jget(p, "state"),
                        *plag = tn_jget(p, "lag"), *heard = tn_jget(p, "last_heard_s");
            char heardtxt[32] = "never";
            if (heard != NULL && !json_object_is_type(heard, json_type_null))
                snprintf(heardtxt, sizeof heardtxt, "%.1f s ago", json_object_get_double(heard));
            printf("    peer %-14s %-10s lag %-6lld heard %s\n",
                org ? json_object_get_string(org) : "?",
                state ? json_object_get_string(state) : "?",
                plag ? (long long)json_object_get_int64(plag) : 0LL, heardtxt);
        }
    }
    printf("faults:%s", faults[0] ? "\n" : " none\n");
    fputs(faults, stdout);
    if (links)
        printf("links (proxy FROM TO: connections open, accepted, refused, dropped):\n%s",
            linktext ? linktext : "");
    for (size_t i = 0; i < net->n; i++)
        json_object_put(st[i]);
    json_object_put(maxvv);
    rc = TN_EXIT_OK;
done:
    free(linktext);
    free(net);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Faults and processes: forwarded to the supervisor                                         */

static int send_line(const tn_net *net, const char *line, int timeout_ms)
{
    char *ans = NULL;
    int r = tn_ctl(net->dir, line, &ans, timeout_ms);
    if (r < 0)
        tn_err("the supervisor of %s does not answer (is the testnet up?)", net->dir);
    else if (r == 1)
        tn_err("%s", ans);
    free(ans);
    return r == 0 ? TN_EXIT_OK : r == 1 ? TN_EXIT_USAGE : TN_EXIT_ERROR;
}

int tn_cmd_fault(const char *cmd, int argc, char **argv)
{
    if (argc < 1) {
        tn_err("usage: patto-testnet %s DIR ...", cmd);
        return TN_EXIT_USAGE;
    }
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL || tn_net_load(net, argv[0]) != 0) {
        free(net);
        return TN_EXIT_ERROR;
    }
    char line[4096];
    int rc = TN_EXIT_USAGE;
    if (strcmp(cmd, "heal") == 0 && argc == 1) {
        snprintf(line, sizeof line, "heal");
    } else if (strcmp(cmd, "partition") == 0 && argc >= 2) {
        size_t used = (size_t)snprintf(line, sizeof line, "partition");
        for (int i = 1; i < argc && used < sizeof line; i++)
            used += (size_t)snprintf(line + used, sizeof line - used, " %s", argv[i]);
    } else if (strcmp(cmd, "slow") == 0 && argc >= 3) {
        long delay = -1, loss = 0;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc)
                delay = strtol(argv[++i], NULL, 10);
            else if (strcmp(argv[i], "--loss-pct") == 0 && i + 1 < argc)
                loss = strtol(argv[++i], NULL, 10);
            else
                delay = -2;
        }
        if (delay < 0 || delay > 600000 || loss < 0 || loss > 100) {
            tn_err("usage: patto-testnet slow DIR A B --delay-ms M [--loss-pct L] (M from 0 "
                   "to 600000, L from 0 to 100)");
            goto done;
        }
        snprintf(line, sizeof line, "slow %s %s %ld %ld", argv[1], argv[2], delay, loss);
    } else {
        tn_err("usage: patto-testnet partition DIR A,B C,D,E | slow DIR A B --delay-ms M "
               "[--loss-pct L] | heal DIR");
        goto done;
    }
    rc = send_line(net, line, 10000);
    if (rc == TN_EXIT_OK)
        printf("%s: done\n", cmd);
done:
    free(net);
    return rc;
}

int tn_cmd_proc(const char *cmd, int argc, char **argv)
{
    if (argc != 2) {
        tn_err("usage: patto-testnet %s DIR NAME", cmd);
        return TN_EXIT_USAGE;
    }
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL || tn_net_load(net, argv[0]) != 0) {
        free(net);
        return TN_EXIT_ERROR;
    }
    int rc = TN_EXIT_USAGE;
    int i = tn_net_find(net, argv[1]);
    if (i < 0)
        goto done;
    char line[128];
    snprintf(line, sizeof line, "%s %s", cmd, argv[1]);
    rc = send_line(net, line, 20000);
    if (rc == TN_EXIT_OK && (strcmp(cmd, "restart") == 0 || strcmp(cmd, "cont") == 0)) {
        if (tn_wait_node(net, (size_t)i, 15000) != 0)
            rc = TN_EXIT_ERROR;
    }
    if (rc == TN_EXIT_OK)
        printf("%s: %s\n", cmd, argv[1]);
done:
    free(net);
    return rc;
}
