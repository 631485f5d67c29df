/* net.c - creating a testnet, its description file, the supervisor's client and the commands
 * up, down, partition, slow, heal, kill, stop, cont, restart, start. */
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

void tn_groups_text(const tn_net *net, const int *group, int ngroups, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int g = 0; g < ngroups && used < size; g++) {
        bool first = true;
        for (size_t i = 0; i < net->n && used < size; i++)
            if (group[i] == g) {
                const char *sep = first ? (used > 0 ? " " : "") : ",";
                used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, net->nodes[i].name);
                first = false;
            }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* testnet.json                                                                              */

static tn_err net_save(const tn_net *net)
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
    tn_err err = tn_write_file(path, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
    json_object_put(doc);
    if (err != TN_OK)
        tn_msg("cannot write %s: %s", path, strerror(errno));
    return err;
}

/* A port of testnet.json: a JSON integer from 0 (no proxy from a node to itself) to 65535. */
static bool json_port(json_object *o, uint16_t *port)
{
    if (o == NULL || !json_object_is_type(o, json_type_int))
        return false;
    int64_t v = json_object_get_int64(o);
    if (v < 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

tn_err tn_net_load(tn_net *net, const char *dir)
{
    memset(net, 0, sizeof *net);
    char abs[PATH_MAX];
    if (realpath(dir, abs) == NULL) {
        tn_msg("%s: %s (no testnet here: `patto-testnet up %s --nodes 3` creates one)", dir,
            strerror(errno), dir);
        return errno == ENOENT || errno == ENOTDIR ? TN_ENOTFOUND : TN_EIO;
    }
    tn_path(net->dir, sizeof net->dir, "%s", abs);
    char path[TN_PATH_MAX + 20];
    tn_path(path, sizeof path, "%s/" TN_CONF, net->dir);
    char *text = NULL;
    tn_err err = tn_read_file(path, TN_SMALL_FILE_MAX, &text, NULL);
    if (err != TN_OK) {
        tn_msg("cannot read %s: %s (is %s a testnet? `patto-testnet up %s --nodes 3` creates one)",
            path, strerror(errno), dir, dir);
        return err;
    }
    json_object *doc = json_tokener_parse(text);
    free(text);
    json_object *nodes = doc ? tn_jget(doc, "nodes") : NULL;
    json_object *proxies = doc ? tn_jget(doc, "proxies") : NULL;
    err = TN_EBADANSWER;
    if (nodes == NULL || proxies == NULL || !json_object_is_type(nodes, json_type_array)
        || !json_object_is_type(proxies, json_type_array) || json_object_array_length(nodes) < 2
        || json_object_array_length(nodes) > TN_MAX_NODES
        || json_object_array_length(proxies) != json_object_array_length(nodes)) {
        tn_msg("%s is not a testnet description (nodes, proxies): remove %s and create the "
               "testnet again",
            path, dir);
        goto done;
    }
    net->n = json_object_array_length(nodes);
    for (size_t i = 0; i < net->n; i++) {
        json_object *o = json_object_array_get_idx(nodes, i);
        json_object *name = tn_jget(o, "name"), *role = tn_jget(o, "role"),
                    *origin = tn_jget(o, "origin");
        json_object *row = json_object_array_get_idx(proxies, i);
        bool ok = name != NULL && role != NULL && origin != NULL && row != NULL
            && json_object_is_type(row, json_type_array) && json_object_array_length(row) == net->n
            && json_port(tn_jget(o, "port"), &net->nodes[i].port);
        for (size_t j = 0; ok && j < net->n; j++)
            ok = json_port(json_object_array_get_idx(row, j), &net->proxy[i][j]);
        if (!ok) {
            tn_msg("%s: node %zu is incomplete (name, role, origin, port, proxies)", path, i);
            goto done;
        }
        snprintf(net->nodes[i].name, sizeof net->nodes[i].name, "%s", json_object_get_string(name));
        snprintf(net->nodes[i].role, sizeof net->nodes[i].role, "%s", json_object_get_string(role));
        snprintf(net->nodes[i].origin, sizeof net->nodes[i].origin, "%s",
            json_object_get_string(origin));
    }
    err = TN_OK;
done:
    json_object_put(doc);
    return err;
}

size_t tn_net_index(const tn_net *net, const char *name)
{
    for (size_t i = 0; i < net->n; i++)
        if (strcmp(net->nodes[i].name, name) == 0)
            return i;
    return net->n;
}

tn_err tn_net_find(const tn_net *net, const char *name, size_t *index)
{
    if ((*index = tn_net_index(net, name)) < net->n)
        return TN_OK;
    char list[TN_MAX_NODES * 34] = "";
    for (size_t i = 0; i < net->n; i++) {
        strcat(list, " ");
        strcat(list, net->nodes[i].name);
    }
    tn_msg("no node %s in %s; the nodes are:%s", name, net->dir, list);
    return TN_ENOTFOUND;
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

/* The end of a patto run that must succeed: TN_EPROC (and why) when it did not. */
static tn_err checked(tn_out o, const char *what)
{
    int st = o.status;
    if (st != 0)
        tn_msg("%s failed (exit %d): %s%s", what, st, o.out ? o.out : "", o.err ? o.err : "");
    tn_out_free(&o);
    return st == 0 ? TN_OK : TN_EPROC;
}

static bool port_taken(const tn_net *net, uint16_t p)
{
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
        if (p != 0 && !port_taken(net, p))
            return p;
    }
    return 0;
}

/* Ports first, so a clash is found before anything else is written. */
static tn_err net_ports(tn_net *net, size_t n, uint16_t base)
{
    net->n = n;
    for (size_t i = 0; i < n; i++)
        if ((net->nodes[i].port = pick_port(net, base, i)) == 0)
            goto fail;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j && (net->proxy[i][j] = pick_port(net, base, n + i * n + j)) == 0)
                goto fail;
    return TN_OK;
fail:
    tn_msg("cannot find free TCP ports on 127.0.0.1");
    return TN_EIO;
}

/* patto init for node i, and its entry in the admin's working manifest. */
static tn_err net_init_node(tn_net *net, size_t i, const char *admin, const char *pub)
{
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
    if (o.status == 0 && origin == NULL) {
        tn_msg("patto init gave no origin: %s", o.out);
        tn_out_free(&o);
        return TN_EBADANSWER;
    }
    if (o.status != 0)
        return checked(o, "patto init");
    snprintf(nd->origin, sizeof nd->origin, "%s", json_object_get_string(origin));
    tn_err err = tn_write_file(entry, o.out);
    tn_out_free(&o);
    if (err != TN_OK) {
        tn_msg("cannot write %s: %s", entry, strerror(errno));
        return err;
    }
    const char *add[] = { tn_patto_bin(), "network", "add", admin, entry, NULL };
    return checked(tn_run(add), "patto network add");
}

/* Every node dials every other node through the proxy of that ordered pair. */
static tn_err net_dial_sections(const tn_net *net)
{
    for (size_t i = 0; i < net->n; i++) {
        char conf[TN_PATH_MAX + 60];
        tn_path(conf, sizeof conf, "%s/%s/pattod.conf", net->dir, net->nodes[i].name);
        FILE *f = fopen(conf, "a");
        if (f == NULL) {
            tn_msg("cannot open %s: %s", conf, strerror(errno));
            return TN_EIO;
        }
        fprintf(f, "\n[dial]\n; patto-testnet: every link goes through the testnet's proxy\n");
        for (size_t j = 0; j < net->n; j++)
            if (j != i)
                fprintf(
                    f, "%s = tcp://127.0.0.1:%u\n", net->nodes[j].name, (unsigned)net->proxy[i][j]);
        if (fclose(f) != 0) {
            tn_msg("cannot write %s: %s", conf, strerror(errno));
            return TN_EIO;
        }
    }
    return TN_OK;
}

static tn_err net_create(tn_net *net, size_t n, uint16_t base)
{
    char admin[TN_PATH_MAX + 20], pubpath[TN_PATH_MAX + 40], manifest[TN_PATH_MAX + 20];
    tn_path(admin, sizeof admin, "%s/admin", net->dir);
    tn_path(pubpath, sizeof pubpath, "%s/admin.pub", admin);
    tn_path(manifest, sizeof manifest, "%s/manifest.bin", net->dir);
    char *pub = NULL;
    const char *init[] = { tn_patto_bin(), "network", "init", admin, NULL };
    tn_err err = checked(tn_run(init), "patto network init");
    if (err != TN_OK)
        goto fail;
    err = tn_read_file(pubpath, TN_SMALL_FILE_MAX, &pub, NULL);
    if (err != TN_OK || strlen(pub) < 64) {
        tn_msg("no admin key in %s", pubpath);
        err = err != TN_OK ? err : TN_EBADANSWER;
        goto fail;
    }
    pub[64] = '\0';
    if ((err = net_ports(net, n, base)) != TN_OK)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if ((err = net_init_node(net, i, admin, pub)) != TN_OK)
            goto fail;
    const char *sign[] = { tn_patto_bin(), "network", "sign", admin, "--out", manifest, NULL };
    if ((err = checked(tn_run(sign), "patto network sign")) != TN_OK)
        goto fail;
    if ((err = net_dial_sections(net)) != TN_OK)
        goto fail;
    err = net_save(net);
fail:
    free(pub);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* The supervisor's client                                                                   */

/* Connect to DIR/testnet.sock from inside DIR: a deep DIR would not fit sun_path (107
 * bytes). Returns the socket or -1. */
static int ctl_connect(const char *dir, int timeout_ms)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
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
    return fd;
}

tn_err tn_ctl(const char *dir, const char *line, char **answer, int timeout_ms)
{
    *answer = NULL;
    tn_vec buf = TN_VEC_INIT(char, TN_CTL_ANSWER_MAX + 1);
    tn_err err = TN_EUNREACHABLE;
    int fd = ctl_connect(dir, timeout_ms);
    if (fd < 0)
        goto fail;
    /* One send of the whole line: a supervisor may answer and close as soon as it has it. */
    size_t len = strlen(line);
    char *msg = malloc(len + 1);
    if (msg == NULL) {
        err = TN_ENOMEM;
        goto fail;
    }
    memcpy(msg, line, len);
    msg[len] = '\n';
    bool sent = send(fd, msg, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1);
    free(msg);
    if (!sent)
        goto fail;
    /* Until the supervisor closes the connection: an answer cut by the timeout is none. */
    for (;;) {
        char *at;
        size_t room;
        if ((err = tn_vec_room(&buf, 16384, &at, &room)) != TN_OK) {
            char more;
            err = err == TN_EFULL && recv(fd, &more, 1, 0) > 0 ? TN_ETOOBIG
                : err == TN_EFULL                              ? TN_OK
                                                               : err;
            break;
        }
        ssize_t got = recv(fd, at, room, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = TN_EUNREACHABLE;
            goto fail;
        }
        if (got == 0)
            break;
        buf.n += (size_t)got;
    }
    if (err != TN_OK)
        goto fail;
    if (buf.items == NULL) { /* closed without a word */
        err = TN_EUNREACHABLE;
        goto fail;
    }
    char *text = buf.items;
    text[buf.n] = '\0';
    if (strncmp(text, "ok", 2) == 0) {
        *answer = text;
        close(fd);
        return TN_OK;
    }
    if (strncmp(text, "error ", 6) == 0) {
        memmove(text, text + 6, buf.n - 5);
        text[strcspn(text, "\n")] = '\0';
        *answer = text;
        close(fd);
        return TN_EREFUSED;
    }
    err = TN_EBADANSWER;
fail:
    if (fd >= 0)
        close(fd);
    tn_vec_fini(&buf);
    return err;
}

void tn_ctl_say(const char *dir, const char *line, tn_err err, const char *answer)
{
    switch (err) {
    case TN_OK:
        break;
    case TN_EREFUSED:
        tn_msg("%s", answer != NULL ? answer : "the supervisor refused");
        break;
    case TN_EUNREACHABLE:
        tn_msg("the supervisor of %s does not answer: the testnet is down (`patto-testnet up %s` "
               "starts it), or its supervisor died (`patto-testnet down %s` stops what is left)",
            dir, dir, dir);
        break;
    case TN_ETOOBIG:
        tn_msg("the supervisor of %s answered \"%s\" with more than %u KiB: refused (is "
               "testnet.sock the supervisor's?)",
            dir, line, TN_CTL_ANSWER_MAX >> 10);
        break;
    case TN_EBADANSWER:
        tn_msg("the supervisor of %s answered \"%s\" with neither ok nor error (is testnet.sock "
               "the supervisor's?)",
            dir, line);
        break;
    default:
        tn_msg("asking the supervisor of %s \"%s\": %s", dir, line, tn_strerror(err));
        break;
    }
}

/* Send line and say what went wrong, if anything. */
static tn_err send_line(const tn_net *net, const char *line, int timeout_ms)
{
    char *ans = NULL;
    tn_err err = tn_ctl(net->dir, line, &ans, timeout_ms);
    tn_ctl_say(net->dir, line, err, ans);
    free(ans);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* up                                                                                        */

/* Did the supervisor whose log is at logpath stop (it logs event=supervisor.exit) in what it
 * wrote past offset `from` (the log's size before it started: the log of an earlier `up` of the
 * same directory comes before)? Then *why holds its last error line (or the exit line). */
static bool supervisor_gone(const char *logpath, size_t from, char *why, size_t whylen)
{
    char *all = NULL;
    size_t len = 0;
    if (tn_read_file(logpath, 4u << 20, &all, &len) != TN_OK)
        return false;
    const char *text = all + (from < len ? from : len);
    bool gone = strstr(text, "event=supervisor.exit") != NULL;
    if (gone) {
        const char *line = strstr(text, "event=supervisor.exit"), *err = NULL;
        for (const char *p = strstr(text, "level=error"); p != NULL;
             p = strstr(p + 1, "level=error"))
            err = p;
        if (err != NULL)
            line = err;
        size_t n = strcspn(line, "\n");
        snprintf(why, whylen, "%.*s", (int)(n < 300 ? n : 300), line);
    }
    free(all);
    return gone;
}

static tn_err start_supervisor(const tn_net *net)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        tn_msg("cannot find my own program: %s", strerror(errno));
        return TN_EPROC;
    }
    self[len] = '\0';
    char logpath[TN_PATH_MAX + 20];
    tn_path(logpath, sizeof logpath, "%s/supervisor.log", net->dir);
    const char *pattod = tn_pattod_bin();
    if (access(pattod, X_OK) != 0) {
        tn_msg("cannot run pattod at %s (set PATTOD_BIN)", pattod);
        return TN_EPROC;
    }
    struct stat before;
    size_t from = stat(logpath, &before) == 0 ? (size_t)before.st_size : 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        tn_msg("cannot start the supervisor: %s", strerror(errno));
        return TN_EPROC;
    }
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
        tn_err err = tn_ctl(net->dir, "ping", &ans, 2000);
        free(ans);
        if (err == TN_OK)
            return TN_OK;
        char why[320];
        if (supervisor_gone(logpath, from, why, sizeof why)) {
            tn_msg("the supervisor stopped at once (%s); see %s", why, logpath);
            return TN_EUNREACHABLE;
        }
        tn_sleep_ms(40);
    }
    tn_msg("the supervisor did not answer within 10 s; see %s", logpath);
    return TN_EUNREACHABLE;
}

tn_err tn_wait_node(const tn_net *net, size_t i, int timeout_ms)
{
    uint64_t end = tn_now_ms() + (uint64_t)timeout_ms;
    do {
        tn_out o = tn_patto(net, i, "status", NULL);
        int st = o.status;
        tn_out_free(&o);
        if (st == 0)
            return TN_OK;
        /* A node that has exited will not answer: say so now, with the end of its log. */
        char state[TN_MAX_NODES][16];
        if (tn_node_states(net, state) == TN_OK && strcmp(state[i], "down") == 0) {
            char logp[TN_PATH_MAX + 40];
            tn_path(logp, sizeof logp, "%s/%s.log", net->dir, net->nodes[i].name);
            size_t len = 0;
            char *log = NULL;
            if (tn_read_file(logp, TN_LOG_FILE_MAX, &log, &len) != TN_OK)
                log = NULL;
            tn_msg("%s exited (see %s)%s%s", net->nodes[i].name, logp, log ? ":\n" : "",
                log ? (len > 1500 ? log + len - 1500 : log) : "");
            free(log);
            return TN_EPROC;
        }
        tn_sleep_ms(50);
    } while (tn_now_ms() < end);
    tn_msg("%s did not answer within %d s; see %s/%s.log", net->nodes[i].name, timeout_ms / 1000,
        net->dir, net->nodes[i].name);
    return TN_EUNREACHABLE;
}

/* Whether every running node sees every running peer up; why not in why. */
static bool all_connected(
    const tn_net *net, char state[TN_MAX_NODES][16], char *why, size_t whysize)
{
    for (size_t i = 0; i < net->n; i++) {
        if (strcmp(state[i], "running") != 0)
            continue;
        json_object *st = tn_node_status(net, i);
        json_object *peers = st ? tn_jget(st, "peers") : NULL;
        size_t up = 0, want = 0;
        for (size_t k = 0; peers && k < json_object_array_length(peers); k++) {
            json_object *p = json_object_array_get_idx(peers, k);
            json_object *org = tn_jget(p, "org"), *pstate = tn_jget(p, "state");
            size_t j = org ? tn_net_index(net, json_object_get_string(org)) : net->n;
            if (j == net->n || strcmp(state[j], "running") != 0)
                continue;
            want++;
            if (pstate && strcmp(json_object_get_string(pstate), "up") == 0)
                up++;
            else
                snprintf(
                    why, whysize, "%s does not see %s up", net->nodes[i].name, net->nodes[j].name);
        }
        if (peers == NULL)
            snprintf(why, whysize, "%s does not answer", net->nodes[i].name);
        json_object_put(st);
        if (peers == NULL || up < want)
            return false;
    }
    return true;
}

tn_err tn_wait_connected(const tn_net *net, int timeout_ms, bool quiet)
{
    uint64_t end = tn_now_ms() + (uint64_t)timeout_ms;
    char why[256] = "";
    for (;;) {
        char state[TN_MAX_NODES][16];
        tn_err err = tn_node_states(net, state);
        if (err != TN_OK)
            snprintf(why, sizeof why, "the supervisor does not answer");
        else if (all_connected(net, state, why, sizeof why))
            return TN_OK;
        if (tn_now_ms() >= end) {
            if (!quiet)
                tn_msg("not connected after %d s: %s", timeout_ms / 1000, why);
            return err != TN_OK ? TN_EUNREACHABLE : TN_ENOTCONNECTED;
        }
        tn_sleep_ms(100);
    }
}

static bool is_pattod(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    char *cmd = NULL;
    bool yes = tn_read_file(path, TN_SMALL_FILE_MAX, &cmd, NULL) == TN_OK
        && strstr(cmd, "pattod") != NULL;
    free(cmd);
    return yes;
}

/* The pid in a pid file ("PID\n"), or 0. */
static pid_t read_pid(const char *path)
{
    char *t = NULL;
    uint64_t pid = 0;
    if (tn_read_file(path, 64, &t, NULL) == TN_OK) {
        t[strcspn(t, "\n")] = '\0';
        if (tn_parse_u64(t, 1, INT_MAX, &pid) != TN_OK)
            pid = 0;
    }
    free(t);
    return (pid_t)pid;
}

static bool alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* A network to create in dirarg (n nodes, ports from base or free ones). */
static tn_err up_create(tn_net *net, const char *dirarg, size_t n, uint16_t base)
{
    if (n == 0) {
        tn_msg("%s holds no testnet yet: give --nodes N", dirarg);
        return TN_EUSAGE;
    }
    if (base != 0 && (size_t)base + n * n + n - 1 > 65535) {
        tn_msg("--base-port %u leaves no room for the %zu ports of %zu nodes (P + N + N*N - 1 "
               "must be at most 65535)",
            (unsigned)base, n + n * n, n);
        return TN_EUSAGE;
    }
    if (mkdir(dirarg, 0755) != 0 && errno != EEXIST) {
        tn_msg("cannot create %s: %s", dirarg, strerror(errno));
        return TN_EIO;
    }
    char abs[PATH_MAX];
    if (realpath(dirarg, abs) == NULL) {
        tn_msg("%s: %s", dirarg, strerror(errno));
        return TN_EIO;
    }
    tn_path(net->dir, sizeof net->dir, "%s", abs);
    return net_create(net, n, base);
}

/* No supervisor answers: start one, unless nodes of a dead one still run. */
static tn_err up_supervisor(const tn_net *net, const char *dirarg)
{
    for (size_t i = 0; i < net->n; i++) {
        char p[TN_PATH_MAX + 40];
        tn_path(p, sizeof p, "%s/%s.pid", net->dir, net->nodes[i].name);
        pid_t pid = read_pid(p);
        if (pid > 0 && alive(pid) && is_pattod(pid)) {
            tn_msg("%s (pid %d) still runs without its supervisor: run `patto-testnet down %s` "
                   "first",
                net->nodes[i].name, (int)pid, dirarg);
            return TN_EREFUSED;
        }
    }
    return start_supervisor(net);
}

/* up means every node up: start the ones that are down, resume the stopped ones. */
static void up_every_node(const tn_net *net)
{
    char state[TN_MAX_NODES][16];
    if (tn_node_states(net, state) != TN_OK)
        return;
    for (size_t i = 0; i < net->n; i++) {
        if (strcmp(state[i], "running") == 0)
            continue;
        char line[64], *ans = NULL;
        snprintf(line, sizeof line, "%s %s", strcmp(state[i], "stopped") == 0 ? "cont" : "start",
            net->nodes[i].name);
        tn_err err = tn_ctl(net->dir, line, &ans, 20000);
        if (err != TN_OK)
            tn_msg("%s: %s", line, ans ? ans : tn_strerror(err));
        free(ans);
    }
}

/* Every node answers and holds the manifest (imported now if not). */
static tn_err up_manifests(const tn_net *net)
{
    for (size_t i = 0; i < net->n; i++) {
        tn_err err = tn_wait_node(net, i, 15000);
        if (err != TN_OK)
            return err;
        json_object *st = tn_node_status(net, i);
        json_object *ver = st ? tn_jget(st, "versions/manifest") : NULL;
        bool has = ver != NULL && !json_object_is_type(ver, json_type_null);
        json_object_put(st);
        if (!has) {
            char manifest[TN_PATH_MAX + 20];
            tn_path(manifest, sizeof manifest, "%s/manifest.bin", net->dir);
            err = checked(
                tn_patto(net, i, "manifest", "import", manifest, NULL), "patto manifest import");
            if (err != TN_OK)
                return err;
        }
    }
    return TN_OK;
}

tn_err tn_up(const char *dirarg, size_t n, uint16_t base, bool quiet)
{
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_ENOMEM;
    tn_err err;
    char conf[TN_PATH_MAX + 20];
    tn_path(conf, sizeof conf, "%s/" TN_CONF, dirarg);
    if (tn_exists(conf)) {
        if ((err = tn_net_load(net, dirarg)) != TN_OK)
            goto done;
        if (n != 0 && n != net->n) {
            tn_msg("%s already holds a testnet of %zu nodes (not %zu); `down` it and use "
                   "another directory",
                dirarg, net->n, n);
            err = TN_EEXIST;
            goto done;
        }
    } else if ((err = up_create(net, dirarg, n, base)) != TN_OK) {
        goto done;
    }
    char *ans = NULL;
    bool running = tn_ctl(net->dir, "ping", &ans, 2000) == TN_OK;
    free(ans);
    if (running)
        up_every_node(net);
    else if ((err = up_supervisor(net, dirarg)) != TN_OK)
        goto done;
    if ((err = up_manifests(net)) != TN_OK)
        goto done;
    if ((err = tn_wait_connected(net, 30000, false)) != TN_OK)
        goto done;
    if (!quiet)
        for (size_t i = 0; i < net->n; i++)
            printf("%s\n", net->nodes[i].name);
    fflush(stdout);
done:
    free(net);
    return err;
}

tn_err tn_cmd_up(const tn_args *a)
{
    return tn_up(
        a->pos[0], (size_t)tn_num(a, "--nodes", 0), (uint16_t)tn_num(a, "--base-port", 0), false);
}

/* ---------------------------------------------------------------------------------------- */
/* down                                                                                      */

tn_err tn_down(const char *dir, bool quiet)
{
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_ENOMEM;
    tn_err err = tn_net_load(net, dir);
    if (err != TN_OK)
        goto done;
    char spid_path[TN_PATH_MAX + 20];
    tn_path(spid_path, sizeof spid_path, "%s/supervisor.pid", net->dir);
    pid_t spid = read_pid(spid_path);
    char *ans = NULL;
    tn_err r = tn_ctl(net->dir, "down", &ans, 30000);
    if (r == TN_EREFUSED)
        tn_msg("the supervisor refused: %s", ans);
    free(ans);
    if (r == TN_OK && spid > 0) {
        for (int k = 0; k < 200 && alive(spid); k++)
            tn_sleep_ms(50);
    }
    /* Whatever is left (no supervisor, or one that did not finish): signal by pid file. */
    for (size_t i = 0; i < net->n; i++) {
        char p[TN_PATH_MAX + 40];
        tn_path(p, sizeof p, "%s/%s.pid", net->dir, net->nodes[i].name);
        pid_t pid = read_pid(p);
        if (pid > 0 && alive(pid) && is_pattod(pid)) {
            tn_msg("%s (pid %d) still runs: stopping it", net->nodes[i].name, (int)pid);
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
        tn_msg("the supervisor (pid %d) still runs: stopping it", (int)spid);
        kill(spid, SIGTERM);
    }
    unlink(spid_path);
    if (!quiet)
        printf("down: %s\n", net->dir);
done:
    free(net);
    return err;
}

tn_err tn_cmd_down(const tn_args *a)
{
    return tn_down(a->pos[0], false);
}

/* ---------------------------------------------------------------------------------------- */
/* Faults and processes: forwarded to the supervisor                                         */

/* The control line of partition, slow or heal, with every node name checked here (a name that
 * is not a node of this testnet is TN_ENOTFOUND, the same whichever command names it). */
static tn_err fault_line(const tn_args *a, const tn_net *net, char *line, size_t size)
{
    const char *cmd = a->cmd->name;
    if (strcmp(cmd, "heal") == 0) {
        snprintf(line, size, "heal");
        return TN_OK;
    }
    size_t i;
    if (strcmp(cmd, "slow") == 0) {
        size_t b;
        tn_err err = tn_net_find(net, a->pos[1], &i);
        if (err == TN_OK)
            err = tn_net_find(net, a->pos[2], &b);
        if (err != TN_OK)
            return err;
        if (i == b) {
            tn_msg("slow: %s is named twice; a link is between two different nodes", a->pos[1]);
            return TN_EREFUSED;
        }
        snprintf(line, size, "slow %s %s %llu %llu", a->pos[1], a->pos[2],
            (unsigned long long)tn_num(a, "--delay-ms", 0),
            (unsigned long long)tn_num(a, "--loss-pct", 0));
        return TN_OK;
    }
    size_t used = (size_t)snprintf(line, size, "partition");
    for (size_t g = 1; g < a->npos; g++) {
        char group[TN_MAX_NODES * 34];
        snprintf(group, sizeof group, "%s", a->pos[g]);
        for (char *save = NULL, *name = strtok_r(group, ",", &save); name;
             name = strtok_r(NULL, ",", &save)) {
            tn_err err = tn_net_find(net, name, &i);
            if (err != TN_OK)
                return err;
        }
        if (used < size)
            used += (size_t)snprintf(line + used, size - used, " %s", a->pos[g]);
    }
    if (used >= size) {
        tn_msg("partition: the groups are too long (%zu bytes at most)", size);
        return TN_EUSAGE;
    }
    return TN_OK;
}

tn_err tn_cmd_fault(const tn_args *a)
{
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_ENOMEM;
    char line[4096];
    tn_err err = tn_net_load(net, a->pos[0]);
    if (err == TN_OK)
        err = fault_line(a, net, line, sizeof line);
    if (err == TN_OK)
        err = send_line(net, line, 10000);
    if (err == TN_OK)
        printf("%s: done\n", a->cmd->name);
    free(net);
    return err;
}

tn_err tn_cmd_proc(const tn_args *a)
{
    const char *cmd = a->cmd->name, *name = a->pos[1];
    tn_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return TN_ENOMEM;
    size_t i = 0;
    tn_err err = tn_net_load(net, a->pos[0]);
    if (err == TN_OK)
        err = tn_net_find(net, name, &i);
    if (err != TN_OK)
        goto done;
    char line[128];
    snprintf(line, sizeof line, "%s %s", cmd, name);
    err = send_line(net, line, 20000);
    if (err == TN_OK && (strcmp(cmd, "restart") == 0 || strcmp(cmd, "cont") == 0))
        err = tn_wait_node(net, i, 15000);
    if (err == TN_OK)
        printf("%s: %s\n", cmd, name);
done:
    free(net);
    return err;
}
