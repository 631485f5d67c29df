/* A real patto network for tests (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char patto_bin[1024] = "patto";
static char pattod_bin[1024] = "pattod";

void th_programs(const char *patto, const char *pattod)
{
    if (patto != NULL)
        snprintf(patto_bin, sizeof(patto_bin), "%s", patto);
    if (pattod != NULL)
        snprintf(pattod_bin, sizeof(pattod_bin), "%s", pattod);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint16_t bind_port(uint16_t want)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(want);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0
        && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A port this process claims until it exits: a lock on DIR/patto-ports/PORT (flock, released
 * when the process ends, however it ends), so that tests running at once on one machine never
 * pick the same free port between the check and pattod's bind (seen as "Address in use").
 * testnet/src/util.c and scripts/demo claim ports the same way. */
static bool claim_port(uint16_t port)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/patto-ports", tmp != NULL && *tmp != 0 ? tmp : "/tmp");
    if (mkdir(dir, 01777) != 0 && errno != EEXIST)
        return true; /* no claims possible here: the bind check alone */
    (void)chmod(dir, 01777);
    snprintf(path, sizeof(path), "%s/%u", dir, (unsigned)port);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return true;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return false; /* another process holds it */
    }
    return true; /* fd stays open: the claim lasts as long as this process */
}

/* Below the kernel's ephemeral range when it can: a port from that range can become the local
 * end of any outgoing connection (the nodes' own dials included) before pattod binds it. */
uint16_t th_free_port(void)
{
    unsigned lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    static uint64_t x;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32)) | 1;
    }
    for (int tries = 0; lo > 11024 && tries < 200; tries++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint16_t p = bind_port((uint16_t)(10000 + x % (lo - 10000)));
        if (p != 0 && claim_port(p))
            return p;
    }
    return bind_port(0);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    size_t got = buf && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (buf)
        buf[got] = 0;
    return buf;
}

/* Run argv with stdout and stderr captured. */
static th_out run(const char *const *argv)
{
    th_out o = { -1, NULL, NULL, NULL };
    char outp[] = "/tmp/patto-th-out-XXXXXX", errp[] = "/tmp/patto-th-err-XXXXXX";
    int fo = mkstemp(outp), fe = mkstemp(errp);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    close(fo);
    close(fe);
    o.status = pid < 0 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.out = read_all(outp);
    o.err = read_all(errp);
    unlink(outp);
    unlink(errp);
    if (o.out != NULL && o.out[0] != 0)
        o.json = json_tokener_parse(o.out);
    return o;
}

void th_out_free(th_out *o)
{
    free(o->out);
    free(o->err);
    if (o->json)
        json_object_put(o->json);
    memset(o, 0, sizeof(*o));
}

th_out th_patto_raw(const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = patto_bin;
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run(argv);
}

/* patto --dir (node i) --json, then the arguments of ap up to NULL, into argv[40]. */
static void patto_argv(th_net *net, size_t i, va_list ap, const char *argv[40])
{
    size_t n = 0;
    argv[n++] = patto_bin;
    argv[n++] = "--dir";
    argv[n++] = net->nodes[i].dir;
    argv[n++] = "--json";
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 39)
        argv[n++] = a;
    argv[n] = NULL;
}

th_out th_patto(th_net *net, size_t i, ...)
{
    const char *argv[40];
    va_list ap;
    va_start(ap, i);
    patto_argv(net, i, ap, argv);
    va_end(ap);
    return run(argv);
}

th_out th_patto_write(th_net *net, size_t i, ...)
{
    const char *argv[40];
    va_list ap;
    va_start(ap, i);
    patto_argv(net, i, ap, argv);
    va_end(ap);
    th_out o = run(argv);
    for (int k = 0; k < 500 && o.status == 5 && o.out != NULL && strstr(o.out, "retry") != NULL;
         k++) {
        th_out_free(&o);
        sleep_ms(20);
        o = run(argv);
    }
    return o;
}

int th_spawn(th_net *net, size_t i)
{
    th_node *nd = &net->nodes[i];
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(nd->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(pattod_bin, pattod_bin, "--dir", nd->dir, (char *)NULL);
        _exit(127);
    }
    nd->pid = pid;
    return 0;
}

int th_start(th_net *net, size_t i)
{
    th_node *nd = &net->nodes[i];
    if (th_spawn(net, i) != 0)
        return -1;
    pid_t pid = nd->pid;
    /* Ready when its control socket answers. */
    for (int k = 0; k < 500; k++) {
        th_out o = th_patto(net, i, "status", NULL);
        int st = o.status;
        th_out_free(&o);
        if (st == 0)
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            nd->pid = 0;
            if (WIFSIGNALED(status))
                fprintf(stderr, "harness: pattod %s was killed by signal %d during start\n",
                    nd->org, WTERMSIG(status));
            else
                fprintf(stderr, "harness: pattod %s exited during start with status %d\n", nd->org,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            return -1;
        }
        sleep_ms(20);
    }
    fprintf(stderr, "harness: pattod %s did not answer within 10 s\n", nd->org);
    return -1;
}

int th_signal(th_net *net, size_t i, int sig)
{
    return net->nodes[i].pid > 0 ? kill(net->nodes[i].pid, sig) : -1;
}

int th_stop(th_net *net, size_t i, int sig)
{
    th_node *nd = &net->nodes[i];
    if (nd->pid <= 0)
        return 0;
    kill(nd->pid, SIGCONT);
    kill(nd->pid, sig);
    int status = 0;
    for (int k = 0; k < 250; k++) {
        if (waitpid(nd->pid, &status, WNOHANG) == nd->pid) {
            nd->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(20);
    }
    kill(nd->pid, SIGKILL);
    waitpid(nd->pid, &status, 0);
    nd->pid = 0;
    fprintf(stderr, "harness: pattod %s did not stop within 5 s: killed\n", nd->org);
    return -1;
}

static int checked(th_out o, const char *what)
{
    int st = o.status;
    if (st != 0)
        fprintf(stderr, "harness: %s failed (%d): %s%s\n", what, st, o.out ? o.out : "",
            o.err ? o.err : "");
    th_out_free(&o);
    return st == 0 ? 0 : -1;
}

int th_net_make(th_net *net, size_t n, const char *const *org_roles)
{
    return th_net_make_opts(net, n, org_roles, NULL);
}

int th_net_make_opts(
    th_net *net, size_t n, const char *const *org_roles, const char *const *sign_args)
{
    memset(net, 0, sizeof(*net));
    snprintf(net->root, sizeof(net->root), "/tmp/patto-net-XXXXXX");
    if (mkdtemp(net->root) == NULL || n > TH_MAX_NODES)
        return -1;
    snprintf(net->admin, sizeof(net->admin), "%s/admin", net->root);
    snprintf(net->manifest, sizeof(net->manifest), "%s/manifest.bin", net->root);
    const char *init[] = { "network", "init", net->admin, NULL };
    if (checked(th_patto_raw(init), "patto network init") != 0)
        return -1;
    char pubpath[400];
    snprintf(pubpath, sizeof(pubpath), "%s/admin.pub", net->admin);
    char *pub = read_all(pubpath);
    if (pub == NULL || strlen(pub) < 64) {
        free(pub);
        fprintf(stderr, "harness: no admin.pub\n");
        return -1;
    }
    pub[64] = 0;
    net->n = n;
    for (size_t i = 0; i < n; i++) {
        th_node *nd = &net->nodes[i];
        const char *colon = strchr(org_roles[i], ':');
        snprintf(nd->org, sizeof(nd->org), "%.*s", (int)(colon - org_roles[i]), org_roles[i]);
        snprintf(nd->role, sizeof(nd->role), "%s", colon + 1);
        /* Through copies: gcc's -Wrestrict sees net->root and nd->org inside *net. */
        char root[sizeof(net->root)], org[sizeof(nd->org)];
        memcpy(root, net->root, sizeof(root));
        memcpy(org, nd->org, sizeof(org));
        snprintf(nd->dir, sizeof(nd->dir), "%s/%s", root, org);
        snprintf(nd->log, sizeof(nd->log), "%s/%s.log", root, org);
        nd->port = th_free_port();
        char listen[64], op[64], entry[600];
        snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%u", (unsigned)nd->port);
        snprintf(op, sizeof(op), "op-%s", nd->org);
        snprintf(entry, sizeof(entry), "%s/%s.entry.json", net->root, nd->org);
        const char *args[] = { "init", "--dir", nd->dir, "--org", nd->org, "--role", nd->role,
            "--listen", listen, "--admin-pub", pub, "--operator", op, NULL };
        th_out o = th_patto_raw(args);
        if (o.status != 0 || o.json == NULL) {
            checked(o, "patto init");
            free(pub);
            return -1;
        }
        json_object *origin;
        if (json_object_object_get_ex(o.json, "origin", &origin))
            snprintf(nd->origin, sizeof(nd->origin), "%s", json_object_get_string(origin));
        FILE *f = fopen(entry, "w");
        if (f != NULL) {
            fputs(o.out, f);
            fclose(f);
        }
        th_out_free(&o);
        const char *add[] = { "network", "add", net->admin, entry, NULL };
        if (checked(th_patto_raw(add), "patto network add") != 0) {
            free(pub);
            return -1;
        }
    }
    free(pub);
    const char *sign[24] = { "network", "sign", net->admin, "--out", net->manifest };
    size_t ns = 5;
    for (size_t i = 0; sign_args != NULL && sign_args[i] != NULL && ns < 23; i++)
        sign[ns++] = sign_args[i];
    sign[ns] = NULL;
    if (checked(th_patto_raw(sign), "patto network sign") != 0)
        return -1;
    return 0;
}

int th_join(th_net *net, size_t i)
{
    if (th_start(net, i) != 0)
        return -1;
    return checked(
        th_patto(net, i, "manifest", "import", net->manifest, NULL), "patto manifest import");
}

int th_net_up(th_net *net, size_t n, const char *const *org_roles)
{
    if (th_net_make(net, n, org_roles) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (th_join(net, i) != 0) {
            /* A failed set-up gets no teardown (cmocka): stop what started, keep the logs. */
            th_dump_logs(net);
            for (size_t k = 0; k < n; k++)
                if (net->nodes[k].pid > 0)
                    (void)th_stop(net, k, SIGTERM);
            net->keep = true;
            return -1;
        }
    return 0;
}

int th_conf_append(th_net *net, size_t i, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/pattod.conf", net->nodes[i].dir);
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        fprintf(stderr, "harness: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = fputs(text, f) < 0 ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static void rm_rf(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", path, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
}

int th_net_down(th_net *net)
{
    int rc = 0;
    for (size_t i = 0; i < net->n; i++) {
        bool was_running = net->nodes[i].pid > 0;
        int st = th_stop(net, i, SIGTERM);
        if (was_running && st != 0) {
            fprintf(stderr, "harness: pattod %s exited with status %d on SIGTERM\n",
                net->nodes[i].org, st);
            rc = -1;
        }
        /* A sanitizer report in a node's log fails the test that ran it. */
        if (th_log_has(net, i, "Sanitizer") || th_log_has(net, i, "runtime error:")) {
            fprintf(stderr, "harness: pattod %s reported a sanitizer error\n", net->nodes[i].org);
            rc = -1;
        }
    }
    if (rc != 0)
        net->keep = true;
    if (net->keep) {
        th_dump_logs(net);
        fprintf(stderr, "harness: kept %s for inspection\n", net->root);
    } else if (net->root[0] != 0) {
        rm_rf(net->root);
    }
    return rc;
}

bool th_wait(th_net *net, int timeout_ms, bool (*cond)(th_net *, void *), void *ctx)
{
    for (int waited = 0;; waited += 20) {
        if (cond(net, ctx))
            return true;
        if (waited >= timeout_ms)
            return false;
        sleep_ms(20);
    }
}

bool th_log_has(th_net *net, size_t i, const char *text)
{
    char *log = read_all(net->nodes[i].log);
    bool has = log != NULL && strstr(log, text) != NULL;
    free(log);
    return has;
}

void th_dump_logs(th_net *net)
{
    for (size_t i = 0; i < net->n; i++) {
        char *log = read_all(net->nodes[i].log);
        size_t len = log ? strlen(log) : 0;
        const char *tail = log && len > 6000 ? log + len - 6000 : log;
        fprintf(stderr, "---- %s (%s) ----\n%s\n", net->nodes[i].org, net->nodes[i].log,
            tail ? tail : "");
        free(log);
    }
}

void th_cf_check(char cf[17])
{
    static const int odd[26] = { 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12,
        14, 16, 10, 22, 25, 24, 23 };
    int sum = 0;
    for (int i = 0; i < 15; i++) {
        int x = cf[i] >= '0' && cf[i] <= '9' ? cf[i] - '0' : cf[i] - 'A';
        sum += i % 2 == 0 ? odd[x] : x;
    }
    cf[15] = (char)('A' + sum % 26);
    cf[16] = 0;
}
