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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *tn_patto_bin(void)
{
    const char *e = getenv("PATTO_BIN");
    return e != NULL && e[0] != '\0' ? e : TN_PATTO_BIN_DEFAULT;
}

const char *tn_pattod_bin(void)
{
    const char *e = getenv("PATTOD_BIN");
    return e != NULL && e[0] != '\0' ? e : TN_PATTOD_BIN_DEFAULT;
}

void tn_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("patto-testnet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void tn_path(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        tn_err("path too long: %s...", buf);
        exit(TN_EXIT_ERROR);
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

/* Append what fd has to *buf (growing it); false at end of file or error. */
static bool drain(int fd, char **buf, size_t *len, size_t *cap)
{
    if (*cap - *len < 4096) {
        size_t ncap = *cap * 2 + 8192;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return false;
        *buf = nb;
        *cap = ncap;
    }
    ssize_t got = read(fd, *buf + *len, *cap - *len - 1);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (got <= 0)
        return false;
    *len += (size_t)got;
    (*buf)[*len] = '\0';
    return true;
}

tn_out tn_run(const char *const *argv)
{
    tn_out o = { -1, NULL, NULL, NULL };
    size_t olen = 0, ocap = 0, elen = 0, ecap = 0;
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
            open_o = drain(po[0], &o.out, &olen, &ocap);
        if (open_e && fds[1].revents != 0)
            open_e = drain(pe[0], &o.err, &elen, &ecap);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
done:
    for (int k = 0; k < 2; k++) {
        if (po[k] >= 0)
            close(po[k]);
        if (pe[k] >= 0)
            close(pe[k]);
    }
    if (o.out == NULL)
        o.out = calloc(1, 1);
    if (o.err == NULL)
        o.err = calloc(1, 1);
    if (o.out != NULL && o.out[0] != '\0')
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

char *tn_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || bad) {
        free(buf);
        errno = bad ? EIO : ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

int tn_write_file(const char *path, const char *text)
{
    char tmp[TN_PATH_MAX + 8];
    tn_path(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    bool ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
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
            if (p != 0)
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
