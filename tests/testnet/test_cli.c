/*
 * testnet.cli: patto-testnet's command line, without a network:
 * - every number of every command is checked whole, in range and for overflow, and a bad one
 *   is refused (exit 1) naming the option, what it got and what it takes;
 * - the usage lists every command and option the parser knows, and `COMMAND --help` is that
 *   command's help (both from one table: every option of a usage line is accepted);
 * - --version prints the version and protocol of the pattod it drives;
 * - the exit codes of the shared table: usage 1, refused 2, not found 3, unreachable 4,
 *   internal 5; with --json a failure is one error object on stdout and nothing on stderr;
 * - an answer of the supervisor larger than its maximum (1 MiB), or not an answer at all, is
 *   refused (a fake supervisor on DIR/testnet.sock).
 * argv: patto-testnet pattod.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *testnet_bin, *pattod_bin;

#define OUT_MAX 65536

typedef struct run_out {
    int status;
    char out[OUT_MAX], err[OUT_MAX];
} run_out;

static void slurp(int fd, char *buf)
{
    size_t n = 0;
    ssize_t got;
    while ((got = read(fd, buf + n, OUT_MAX - 1 - n)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0)
            n += (size_t)got;
    buf[n] = '\0';
}

/* Run argv with stdout and stderr apart (each short enough for a pipe). */
static void run(run_out *o, const char *const *argv)
{
    int po[2], pe[2];
    o->status = -1;
    o->out[0] = o->err[0] = '\0';
    if (pipe(po) != 0 || pipe(pe) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    slurp(po[0], o->out);
    slurp(pe[0], o->err);
    close(po[0]);
    close(pe[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* patto-testnet ARGS... (NULL-terminated). */
static run_out *tn(const char *first, ...)
{
    static run_out o;
    const char *argv[24] = { testnet_bin, first };
    size_t n = 2;
    va_list ap;
    va_start(ap, first);
    const char *a;
    while (first != NULL && (a = va_arg(ap, const char *)) != NULL && n < 23)
        argv[n++] = a;
    va_end(ap);
    argv[first != NULL ? n : 1] = NULL;
    run(&o, argv);
    return &o;
}

static run_out *tnv(const char *const *args)
{
    static run_out o;
    const char *argv[24] = { testnet_bin };
    size_t n = 1;
    for (size_t k = 0; args[k] != NULL && n < 23; k++)
        argv[n++] = args[k];
    argv[n] = NULL;
    run(&o, argv);
    return &o;
}

/* A directory with a testnet.json of two nodes and no supervisor. */
static void fake_testnet(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/patto-tncli-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/testnet.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
        "{\"version\": 1, \"nodes\": ["
        "{\"name\": \"comune-1\", \"role\": \"comune\", \"origin\": \"%064d\", \"port\": 1},"
        "{\"name\": \"cpia-1\", \"role\": \"cpia\", \"origin\": \"%064d\", \"port\": 2}],"
        " \"proxies\": [[0, 3], [4, 0]]}\n",
        1, 2);
    fclose(f);
}

static void rm_rf(const char *dir)
{
    const char *rm[] = { "/bin/rm", "-rf", dir, NULL };
    run_out *o = malloc(sizeof *o);
    if (o != NULL)
        run(o, rm);
    free(o);
}

/* Every numeric option of every command refuses what is not a whole number in its range. */
static void numbers_are_checked(void **state)
{
    (void)state;
    /* command line before the value, the option, its range as the message says it */
    static const struct {
        const char *pre[10];
        const char *opt, *range;
    } opts[] = {
        { { "up", "/nonexistent/tn" }, "--nodes", "from 2 to 32" },
        { { "up", "/nonexistent/tn" }, "--base-port", "from 1 to 65535" },
        { { "check", "/nonexistent/tn" }, "--timeout", "from 0 to 86400" },
        { { "slow", "/nonexistent/tn", "comune-1", "cpia-1" }, "--delay-ms", "from 0 to 600000" },
        { { "slow", "/nonexistent/tn", "comune-1", "cpia-1", "--delay-ms", "1" }, "--loss-pct",
            "from 0 to 100" },
        { { "chaos", "--ops", "5", "--seed", "1", "--plan" }, "--nodes", "from 2 to 16" },
        { { "chaos", "--nodes", "3", "--seed", "1", "--plan" }, "--ops", "from 0 to 1000000" },
        { { "chaos", "--nodes", "3", "--ops", "5", "--plan" }, "--seed",
            "from 0 to 18446744073709551615" },
        { { "chaos", "--nodes", "3", "--ops", "5", "--seed", "1", "--plan" }, "--duration",
            "from 0 to 604800" },
    };
    static const char *const bad[] = { "abc", "5x", "", "-1", "+3", " 3", "3 ", "0x10", "1e3", "2m",
        "99999999999999999999999", "18446744073709551616" };
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            const char *args[16];
            size_t n = 0;
            for (size_t p = 0; opts[k].pre[p] != NULL; p++)
                args[n++] = opts[k].pre[p];
            args[n++] = opts[k].opt;
            args[n++] = bad[b];
            args[n] = NULL;
            run_out *o = tnv(args);
            char want[128];
            snprintf(want, sizeof want, "%s takes a whole number %s, not \"%s\"", opts[k].opt,
                opts[k].range, bad[b]);
            if (o->status != 1 || strstr(o->err, want) == NULL || o->out[0] != '\0')
                fail_msg("%s %s \"%s\": want exit 1 and \"%s\", got %d: %s%s", args[0], opts[k].opt,
                    bad[b], want, o->status, o->out, o->err);
        }
    /* Out of range by one, on each side where there is a side. */
    run_out *o = tn("up", "/nonexistent/tn", "--nodes", "33", NULL);
    assert_int_equal(o->status, 1);
    o = tn("up", "/nonexistent/tn", "--nodes", "1", NULL);
    assert_int_equal(o->status, 1);
    o = tn("slow", "/nonexistent/tn", "a", "b", "--delay-ms", "1", "--loss-pct", "101", NULL);
    assert_int_equal(o->status, 1);
    o = tn("chaos", "--nodes", "17", "--ops", "1", "--seed", "1", "--plan", NULL);
    assert_int_equal(o->status, 1);
    o = tn("chaos", "--nodes", "3", "--ops", "1000001", "--seed", "1", "--plan", NULL);
    assert_int_equal(o->status, 1);
    /* The edges are accepted: a plan of the largest seed, and of no operation. */
    o = tn(
        "chaos", "--nodes", "16", "--ops", "0", "--seed", "18446744073709551615", "--plan", NULL);
    assert_int_equal(o->status, 0);
    assert_string_equal(o->out, "0 heal\n");
    o = tn("chaos", "--nodes", "2", "--ops", "3", "--seed", "0", "--duration", "604800", "--plan",
        NULL);
    assert_int_equal(o->status, 0);
    /* The examples, one by one. */
    o = tn("chaos", "--ops", "abc", "--plan", NULL);
    assert_int_equal(o->status, 1);
    assert_non_null(strstr(o->err, "--ops takes a whole number from 0 to 1000000, not \"abc\""));
    assert_null(strstr(o->out, "heal"));
}

/* What is missing or unknown on a command line is a usage error (exit 1). */
static void usage_errors(void **state)
{
    (void)state;
    static const char *const lines[][8] = {
        { "frobnicate", NULL }, { "status", NULL }, { "status", "/tmp", "--bogus", NULL },
        { "status", "/tmp", "extra", NULL },
        { "slow", "/tmp", "a", "b", NULL }, /* --delay-ms is required */
        { "slow", "/tmp", "a", "b", "--delay-ms", NULL },
        { "check", "/tmp", "--timeout", "1", "--timeout", "2", NULL }, { "kill", "/tmp", NULL },
        { "chaos", "--nodes", "3", "--ops", "5", "--plan", NULL }, /* no --seed */
        { "heal", "/tmp", "--json", NULL },                        /* no --json on heal */
    };
    for (size_t k = 0; k < sizeof lines / sizeof lines[0]; k++) {
        run_out *o = tnv(lines[k]);
        if (o->status != 1 || o->err[0] == '\0')
            fail_msg("patto-testnet %s ...: want exit 1 and why, got %d: %s%s", lines[k][0],
                o->status, o->out, o->err);
    }
    run_out *o = tn(NULL);
    assert_int_equal(o->status, 1);
    assert_non_null(strstr(o->err, "usage: patto-testnet"));
}

/* The synopsis line of command cmd in the global usage ("  cmd ..."), into buf. */
static bool usage_line(const char *usage, const char *cmd, char *buf, size_t size)
{
    size_t len = strlen(cmd);
    for (const char *l = usage; l != NULL; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, "  ", 2) == 0 && strncmp(l + 2, cmd, len) == 0
            && (l[2 + len] == ' ' || l[2 + len] == '\n')) {
            snprintf(buf, size, "%.*s", (int)strcspn(l, "\n"), l);
            return true;
        }
    return false;
}

/* The usage lists every command and option; each command's --help is its own, and shows the
 * same options as its usage line; every option shown is one the parser knows. */
static void help_from_one_table(void **state)
{
    (void)state;
    static const struct {
        const char *cmd;
        const char *opts[9];
    } cmds[] = {
        { "up", { "--nodes", "--base-port" } },
        { "down", { NULL } },
        { "status", { "--links", "--json" } },
        { "check", { "--timeout", "--json" } },
        { "partition", { NULL } },
        { "slow", { "--delay-ms", "--loss-pct" } },
        { "heal", { NULL } },
        { "kill", { NULL } },
        { "stop", { NULL } },
        { "cont", { NULL } },
        { "restart", { NULL } },
        { "start", { NULL } },
        { "chaos",
            { "--nodes", "--ops", "--seed", "--duration", "--dir", "--report", "--plan", "--keep",
                "--consent-ops" } },
    };
    run_out *o = tn("--help", NULL);
    assert_int_equal(o->status, 0);
    static char usage[OUT_MAX];
    snprintf(usage, sizeof usage, "%s", o->out);
    /* The exit table, as in cli/README.md. */
    static const char *const exits[] = { "  0  done", "  1  usage", "  2  input refused",
        "  3  not found", "  4  unreachable", "  5  internal error", "  6  a check failed" };
    for (size_t k = 0; k < sizeof exits / sizeof exits[0]; k++)
        if (strstr(usage, exits[k]) == NULL)
            fail_msg("--help lacks the exit code line \"%s\":\n%s", exits[k], usage);
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        char line[512];
        if (!usage_line(usage, cmds[c].cmd, line, sizeof line))
            fail_msg("--help does not list %s:\n%s", cmds[c].cmd, usage);
        size_t nopts = 0;
        for (const char *p = strstr(line, "--"); p != NULL; p = strstr(p + 2, "--"))
            nopts++;
        size_t want = 0;
        while (want < 9 && cmds[c].opts[want] != NULL)
            want++;
        if (nopts != want)
            fail_msg("the usage line of %s has %zu options, not %zu: %s", cmds[c].cmd, nopts, want,
                line);
        o = tn(cmds[c].cmd, "--help", NULL);
        char head[64];
        snprintf(head, sizeof head, "usage: patto-testnet %s", cmds[c].cmd);
        if (o->status != 0 || strncmp(o->out, head, strlen(head)) != 0
            || strstr(o->out, "Exit codes:") == NULL)
            fail_msg("%s --help: %d %s", cmds[c].cmd, o->status, o->out);
        /* Only this command's help: no other command's usage line. */
        if (strcmp(cmds[c].cmd, "chaos") != 0 && strstr(o->out, "chaos --nodes") != NULL)
            fail_msg("%s --help prints more than its own help:\n%s", cmds[c].cmd, o->out);
        static char help[OUT_MAX];
        snprintf(help, sizeof help, "%s", o->out);
        for (size_t k = 0; k < want; k++) {
            const char *opt = cmds[c].opts[k];
            if (strstr(line, opt) == NULL || strstr(help, opt) == NULL)
                fail_msg("%s: option %s not in the usage line or the help", cmds[c].cmd, opt);
            /* The parser knows it: given without its value, or with nothing else, it is not
             * "unknown". */
            o = tn(cmds[c].cmd, opt, NULL);
            if (o->status != 1 || strstr(o->err, "unknown option") != NULL)
                fail_msg("%s %s: %d %s", cmds[c].cmd, opt, o->status, o->err);
        }
    }
    /* -h is --help; --help anywhere in a command's arguments is that command's help. */
    o = tn("partition", "/tmp", "a,b", "--help", NULL);
    assert_int_equal(o->status, 0);
    assert_int_equal(strncmp(o->out, "usage: patto-testnet partition", 30), 0);
}

/* --version: this program's version and the protocol, the same as the pattod it drives. */
static void version(void **state)
{
    (void)state;
    run_out *o = tn("--version", NULL);
    assert_int_equal(o->status, 0);
    static char mine[OUT_MAX];
    memcpy(mine, o->out, sizeof mine);
    const char *argv[] = { pattod_bin, "--version", NULL };
    run(o, argv);
    assert_int_equal(o->status, 0);
    assert_int_equal(strncmp(o->out, "pattod ", 7), 0);
    static char want[OUT_MAX + 16];
    snprintf(want, sizeof want, "patto-testnet %s", o->out + 7);
    assert_string_equal(mine, want);
}

/* Exit codes from the table, without a network; --json makes a failure one object on
 * stdout. */
static void exit_codes(void **state)
{
    (void)state;
    char dir[64], other[64];
    fake_testnet(dir, sizeof dir);
    snprintf(other, sizeof other, "/tmp/patto-tncli-XXXXXX");
    assert_non_null(mkdtemp(other));
    /* 3: no testnet in DIR, a name that is no node of this testnet. */
    run_out *o = tn("check", "/nonexistent/tn", NULL);
    assert_int_equal(o->status, 3);
    o = tn("status", other, NULL);
    assert_int_equal(o->status, 3);
    assert_non_null(strstr(o->err, "patto-testnet up"));
    o = tn("kill", dir, "nobody-1", NULL);
    assert_int_equal(o->status, 3);
    assert_non_null(strstr(o->err, "no node nobody-1"));
    o = tn("partition", dir, "comune-1,nobody-1", NULL);
    assert_int_equal(o->status, 3);
    /* 4: no supervisor answers. */
    o = tn("status", dir, NULL);
    assert_int_equal(o->status, 4);
    assert_non_null(strstr(o->err, "does not answer"));
    o = tn("kill", dir, "comune-1", NULL);
    assert_int_equal(o->status, 4);
    o = tn("check", dir, "--timeout", "0", NULL);
    assert_int_equal(o->status, 4);
    /* 2: refused: another node count on an existing testnet, a slow link from a node to
     * itself, a chaos run in a directory that holds a testnet. */
    o = tn("up", dir, "--nodes", "3", NULL);
    assert_int_equal(o->status, 2);
    o = tn("slow", dir, "comune-1", "comune-1", "--delay-ms", "5", NULL);
    assert_int_equal(o->status, 2);
    o = tn("chaos", "--nodes", "2", "--ops", "1", "--seed", "1", "--dir", dir, NULL);
    assert_int_equal(o->status, 2);
    /* 1: a new DIR without --nodes; ports that do not fit. */
    o = tn("up", other, NULL);
    assert_int_equal(o->status, 1);
    o = tn("up", other, "--nodes", "3", "--base-port", "65530", NULL);
    assert_int_equal(o->status, 1);
    assert_non_null(strstr(o->err, "--base-port 65530 leaves no room"));
    /* --json: one error object on stdout with the exit code, nothing on stderr. */
    o = tn("status", dir, "--json", NULL);
    assert_int_equal(o->status, 4);
    assert_string_equal(o->err, "");
    json_object *doc = json_tokener_parse(o->out), *e = NULL, *code = NULL, *msg = NULL;
    assert_true(doc != NULL && json_object_object_get_ex(doc, "error", &e)
        && json_object_object_get_ex(e, "code", &code)
        && json_object_object_get_ex(e, "message", &msg));
    assert_int_equal(json_object_get_int(code), 4);
    assert_non_null(strstr(json_object_get_string(msg), "does not answer"));
    json_object_put(doc);
    o = tn("check", dir, "--json", "--timeout", "x", NULL);
    assert_int_equal(o->status, 1);
    assert_string_equal(o->err, "");
    doc = json_tokener_parse(o->out);
    assert_true(doc != NULL && json_object_object_get_ex(doc, "error", &e)
        && json_object_object_get_ex(e, "code", &code));
    assert_int_equal(json_object_get_int(code), 1);
    json_object_put(doc);
    rm_rf(dir);
    rm_rf(other);
}

/* A fake supervisor: listens on DIR/testnet.sock, answers one connection with `answer`
 * (repeated to total bytes; 0: once), then exits. Returns its pid. */
static pid_t fake_supervisor(const char *dir, const char *answer, size_t total)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    assert_true((size_t)snprintf(path, sizeof path, "%.64s/testnet.sock", dir) < sizeof path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, sizeof path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        int c = accept(fd, NULL, NULL);
        char line[256];
        if (c < 0 || read(c, line, sizeof line) <= 0)
            _exit(1);
        size_t len = strlen(answer), sent = 0;
        if (total == 0)
            total = len;
        while (sent < total) {
            size_t n = total - sent < len ? total - sent : len;
            if (send(c, answer, n, MSG_NOSIGNAL) != (ssize_t)n)
                break;
            sent += n;
        }
        close(c);
        _exit(0);
    }
    close(fd);
    return pid;
}

/* An answer beyond TN_CTL_ANSWER_MAX (1 MiB) is refused; so is one that is no answer. */
static void supervisor_answer_bounded(void **state)
{
    (void)state;
    char dir[64];
    fake_testnet(dir, sizeof dir);
    /* "ok" and then 2 MiB of lines. */
    pid_t pid = fake_supervisor(dir,
        "ok\nlink comune-1 cpia-1 open=0 accepted=0 refused=0 "
        "dropped=0\n",
        2u << 20);
    run_out *o = tn("status", dir, NULL);
    waitpid(pid, NULL, 0);
    if (o->status != 5 || strstr(o->err, "with more than 1024 KiB: refused") == NULL)
        fail_msg("an answer of 2 MiB: want exit 5 and the limit named, got %d: %.300s%.300s",
            o->status, o->out, o->err);
    /* Under the limit the same lines are an answer. */
    pid = fake_supervisor(dir,
        "ok\nnode comune-1 running pid=1 starts=1 crashes=0 last-exit=none\n"
        "node cpia-1 stopped pid=2 starts=3 crashes=1 last-exit=signal-9\n"
        "fault slow comune-1 cpia-1 delay-ms=7 loss-pct=3\n",
        0);
    o = tn("status", dir, "--json", NULL);
    waitpid(pid, NULL, 0);
    json_object *doc = json_tokener_parse(o->out), *nodes = NULL, *faults = NULL;
    if (o->status != 0 || doc == NULL || !json_object_object_get_ex(doc, "nodes", &nodes)
        || !json_object_object_get_ex(doc, "faults", &faults))
        fail_msg("a small answer: %d %s %s", o->status, o->out, o->err);
    /* What the supervisor said, under the documented keys; a node that does not answer has
     * no headers and no lag. */
    json_object *n1 = json_object_array_get_idx(nodes, 1),
                *f0 = json_object_array_get_idx(faults, 0);
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(n1, "state", &v));
    assert_string_equal(json_object_get_string(v), "stopped");
    assert_true(json_object_object_get_ex(n1, "pid", &v) && json_object_get_int(v) == 2);
    assert_true(json_object_object_get_ex(n1, "starts", &v) && json_object_get_int(v) == 3);
    assert_true(json_object_object_get_ex(n1, "crashes", &v) && json_object_get_int(v) == 1);
    assert_true(json_object_object_get_ex(n1, "last_exit", &v));
    assert_string_equal(json_object_get_string(v), "signal-9");
    assert_true(json_object_object_get_ex(n1, "lag", &v) && v == NULL);
    assert_true(json_object_object_get_ex(f0, "kind", &v));
    assert_string_equal(json_object_get_string(v), "slow");
    assert_true(json_object_object_get_ex(f0, "delay_ms", &v) && json_object_get_int(v) == 7);
    assert_true(json_object_object_get_ex(f0, "loss_pct", &v) && json_object_get_int(v) == 3);
    json_object_put(doc);
    /* Not an answer of the control protocol. */
    pid = fake_supervisor(dir, "hello\n", 0);
    o = tn("status", dir, NULL);
    waitpid(pid, NULL, 0);
    assert_int_equal(o->status, 5);
    assert_non_null(strstr(o->err, "neither ok nor error"));
    /* A number of the answer that is not one. */
    pid = fake_supervisor(
        dir, "ok\nnode comune-1 running pid=1x starts=1 crashes=0 last-exit=none\n", 0);
    o = tn("status", dir, NULL);
    waitpid(pid, NULL, 0);
    assert_int_equal(o->status, 5);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATTO_TESTNET PATTOD\n", argv[0]);
        return 2;
    }
    testnet_bin = argv[1];
    pattod_bin = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_are_checked),
        cmocka_unit_test(usage_errors),
        cmocka_unit_test(help_from_one_table),
        cmocka_unit_test(version),
        cmocka_unit_test(exit_codes),
        cmocka_unit_test(supervisor_answer_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
