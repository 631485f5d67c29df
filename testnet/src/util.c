/* util.c - child processes, files, clocks and JSON helpers of patto-testnet. */
#include "tn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A program: $env, else the one installed beside this patto-testnet (cmake --install puts the
 * three in one directory), else the one of the build tree it was built with. */
static const char *program(
    const char *env, const char *name, const char *built, char *buf, size_t size)
{
    const char *e = getenv(env);
    if (e != NULL && e[0] != '\0')
        return e;
    char self[TN_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL
            && (size_t)snprintf(buf, size, "%.*s/%s", (int)(slash - self), self, name) < size
            && access(buf, X_OK) == 0)
            return buf;
    }
    return built;
}

const char *tn_patto_bin(void)
{
    static char buf[TN_PATH_MAX];
    return program("PATTO_BIN", "patto", TN_PATTO_BIN_DEFAULT, buf, sizeof(buf));
}

const char *tn_pattod_bin(void)
{
    static char buf[TN_PATH_MAX];
    return program("PATTOD_BIN", "pattod", TN_PATTOD_BIN_DEFAULT, buf, sizeof(buf));
}

/* With --json, messages are kept for the error object instead of printed (the first ones,
 * up to the size of this buffer: the rest is cut). */
static bool collect;
static char collected[2048];

void tn_msg_collect(bool on)
{
    collect = on;
    collected[0] = '\0';
}

const char *tn_msg_collected(void)
{
    return collected;
}

void tn_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (collect) {
        size_t used = strlen(collected);
        if (used > 0 && used + 2 < sizeof collected) {
            memcpy(collected + used, "; ", 3);
            used += 2;
        }
        vsnprintf(collected + used, sizeof collected - used, fmt, ap);
    } else {
        fputs("patto-testnet: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

void tn_path(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        tn_msg("path too long: %s... (use a shorter DIR)", buf);
        exit(TN_EXIT_USAGE);
    }
}

uint64_t tn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t tn_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tn_sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Append what fd has to v (at most TN_RUN_OUTPUT_MAX bytes; what comes beyond is read and
 * dropped, so the child is not blocked, and *over is set). False at end of file or error. */
static bool drain(int fd, tn_vec *v, bool *over)
{
    char *at, spill[4096];
    size_t room;
    if (tn_vec_room(v, 65536, &at, &room) != TN_OK) {
        at = spill;
        room = sizeof spill;
        *over = true;
    }
    ssize_t got = read(fd, at, room);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (got <= 0)
        return false;
    if (at != spill) {
        v->n += (size_t)got;
        ((char *)v->items)[v->n] = '\0';
    }
    return true;
}

/* The captured text of v (owned by the caller from now on), "" when nothing came. */
static char *take_text(tn_vec *v)
{
    char *text = v->items;
    v->items = NULL;
    v->n = v->cap = 0;
    return text != NULL ? text : calloc(1, 1);
}

tn_out tn_run(const char *const *argv)
{
    tn_out o = { -1, NULL, NULL, NULL };
    tn_vec out = TN_VEC_INIT(char, TN_RUN_OUTPUT_MAX + 1),
           err = TN_VEC_INIT(char, TN_RUN_OUTPUT_MAX + 1);
    bool over = false;
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
    if (pipe(po) != 0 || pipe(pe) != 0)
        goto done;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (pid < 0)
        goto done;
    bool open_o = true, open_e = true;
    while (open_o || open_e) {
        struct pollfd fds[2]
            = { { open_o ? po[0] : -1, POLLIN, 0 }, { open_e ? pe[0] : -1, POLLIN, 0 } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (open_o && fds[0].revents != 0)
            open_o = drain(po[0], &out, &over);
        if (open_e && fds[1].revents != 0)
            open_e = drain(pe[0], &err, &over);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (over) {
        tn_msg(
            "%s wrote more than %u MiB: its output is not used", argv[0], TN_RUN_OUTPUT_MAX >> 20);
        o.status = -1;
    }
done:
    for (int k = 0; k < 2; k++) {
        if (po[k] >= 0)
            close(po[k]);
        if (pe[k] >= 0)
            close(pe[k]);
    }
    o.out = take_text(&out);
    o.err = take_text(&err);
    if (o.status >= 0 && o.out != NULL && o.out[0] != '\0')
        o.json = json_tokener_parse(o.out);
    return o;
}

tn_out tn_pattov(const tn_net *net, size_t i, const char *const *args)
{
    char dir[TN_PATH_MAX + 40];
    tn_path(dir, sizeof dir, "%s/%s", net->dir, net->nodes[i].name);
    const char *argv[48];
    size_t n = 0;
    argv[n++] = tn_patto_bin();
    argv[n++] = "--dir";
    argv[n++] = dir;
    argv[n++] = "--json";
    for (size_t k = 0; args[k] != NULL && n < 47; k++)
        argv[n++] = args[k];
    argv[n] = NULL;
    return tn_run(argv);
}

tn_out tn_patto(const tn_net *net, size_t i, ...)
{
    const char *args[44];
    size_t n = 0;
    va_list ap;
    va_start(ap, i);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 43)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return tn_pattov(net, i, args);
}

void tn_out_free(tn_out *o)
{
    free(o->out);
    free(o->err);
    if (o->json != NULL)
        json_object_put(o->json);
    memset(o, 0, sizeof *o);
}

json_object *tn_node_status(const tn_net *net, size_t i)
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

tn_err tn_read_file(const char *path, size_t max, char **text, size_t *len)
{
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? TN_ENOTFOUND : TN_EIO;
    tn_vec buf = TN_VEC_INIT(char, max + 1);
    tn_err err = TN_OK;
    for (;;) {
        char *at;
        size_t room;
        err = tn_vec_room(&buf, 65536, &at, &room);
        if (err == TN_EFULL) {
            /* Full: only a file longer than max has more to give. */
            err = fgetc(f) == EOF ? TN_OK : TN_ETOOBIG;
            break;
        }
        if (err != TN_OK)
            break;
        size_t got = fread(at, 1, room, f);
        buf.n += got;
        if (got < room)
            break;
    }
    int saved = errno;
    if (err == TN_OK && ferror(f) != 0)
        err = TN_EIO;
    fclose(f);
    if (err == TN_OK && buf.items == NULL && tn_vec_reserve(&buf, 1) != TN_OK)
        err = TN_ENOMEM;
    if (err != TN_OK) {
        tn_vec_fini(&buf);
        errno = err == TN_EIO ? saved : err == TN_ETOOBIG ? EFBIG : ENOMEM;
        return err;
    }
    ((char *)buf.items)[buf.n] = '\0';
    if (len != NULL)
        *len = buf.n;
    *text = buf.items;
    return TN_OK;
}

tn_err tn_write_file(const char *path, const char *text)
{
    char tmp[TN_PATH_MAX + 8];
    tn_path(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return TN_EIO;
    bool ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return TN_EIO;
    }
    return TN_OK;
}

bool tn_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Bind a loopback socket to port (0: any) and return the port bound, or 0. */
static uint16_t try_port(uint16_t want)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(want);
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0
        && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A port this process claims until it exits: a lock on DIR/patto-ports/PORT (flock, released
 * when the process ends), so that networks started at once on one machine (and the tests'
 * harness, which claims ports the same way) never pick the same free port between the check and
 * the listener's bind. */
static bool claim_port(uint16_t port)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/patto-ports", tmp != NULL && *tmp != 0 ? tmp : "/tmp");
    if (mkdir(dir, 01777) != 0 && errno != EEXIST)
        return true; /* no claims possible here: the bind check alone */
    (void)chmod(dir, 01777);
    snprintf(path, sizeof path, "%s/%u", dir, (unsigned)port);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return true;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return false; /* another process holds it */
    }
    return true; /* fd stays open: the claim lasts as long as this process */
}

/* A port free now, below the kernel's ephemeral range when it can: a port from that range
 * can be taken by any outgoing connection's local end between this check and the listener's
 * bind (seen as "address already in use" when several networks ran at once). */
uint16_t tn_free_port(void)
{
    unsigned lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    if (lo > 11024) {
        static uint64_t x;
        if (x == 0)
            x = tn_now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
        for (int tries = 0; tries < 200; tries++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint16_t p = try_port((uint16_t)(10000 + x % (lo - 10000)));
            if (p != 0 && claim_port(p))
                return p;
        }
    }
    return try_port(0);
}

json_object *tn_jget(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_object *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, "/", &save); k != NULL && cur != NULL;
         k = strtok_r(NULL, "/", &save))
        if (!json_object_object_get_ex(cur, k, &cur))
            return NULL;
    return cur;
}
