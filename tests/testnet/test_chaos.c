/*
 * testnet.chaos.run: what `patto-testnet chaos` shows and writes, checked on short runs:
 * - a run performs exactly its plan (every operation and fault of `--plan`, in order), ends
 *   with the summary line, prints plain progress lines when not on a terminal, and writes
 *   --report FILE.json (parameters, timeline, lag samples) and FILE.svg beside it;
 * - on a terminal the progress line is redrawn in place;
 * - a node that dies on its own fails the run, which still runs every check, keeps the
 *   directory and prints the command that replays the seed (exit 6, a check failed);
 * - --consent-ops (argv[2] "consent", testnet.chaos.consent.run): the plan has every consent
 *   operation, both bases and a re-grant (the same seed without it has none of them), and a
 *   run acknowledges each kind and passes.
 * argv: patto-testnet [consent].
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *testnet_bin;

#define OUT_MAX (1u << 20)

typedef struct run_out {
    int status;
    char *out; /* stdout and stderr together */
} run_out;

/* Run argv with stdout and stderr on a pipe (or, when pty >= 0, on that terminal). When
 * on_line is given, it sees every complete line of output as it comes. */
static void run(
    run_out *o, const char *const *argv, int pty, void (*on_line)(const char *, void *), void *arg)
{
    int p[2] = { -1, -1 };
    o->status = -1;
    o->out = calloc(1, OUT_MAX);
    if (o->out == NULL || (pty < 0 && pipe(p) != 0))
        return;
    int rd = pty >= 0 ? pty : p[0];
    pid_t pid = fork();
    if (pid == 0) {
        if (pty >= 0) {
            setsid();
            int slave = open(ptsname(pty), O_RDWR);
            if (slave < 0)
                _exit(126);
            dup2(slave, 1);
            dup2(slave, 2);
            close(slave);
            close(pty);
        } else {
            dup2(p[1], 1);
            dup2(p[1], 2);
            close(p[0]);
            close(p[1]);
        }
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    if (pty < 0)
        close(p[1]);
    size_t n = 0, line = 0;
    for (;;) {
        ssize_t got = read(rd, o->out + n, OUT_MAX - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EOF, or EIO once the terminal's last writer has gone */
        n += (size_t)got;
        o->out[n] = '\0';
        for (char *nl; on_line != NULL && (nl = strchr(o->out + line, '\n')) != NULL;) {
            *nl = '\0';
            on_line(o->out + line, arg);
            *nl = '\n';
            line = (size_t)(nl - o->out) + 1;
        }
    }
    o->out[n] = '\0';
    if (pty < 0)
        close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The last non-empty line of out, into buf. */
static const char *last_line(const char *out, char *buf, size_t size)
{
    size_t len = strlen(out);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        len--;
    size_t start = len;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    snprintf(buf, size, "%.*s", (int)(len - start), out + start);
    return buf;
}

/* Whether line is the summary line of a run of (seed, nodes, ops): the exact documented
 * form, with acked <= ops. */
static bool summary_ok(const char *line, unsigned seed, unsigned nodes, unsigned ops,
    const char *lost, const char *converged)
{
    unsigned s, n, k, acked;
    char l[16], c[8], tail[8] = "";
    double secs;
    int used = 0;
    if (sscanf(line,
            "chaos: seed=%u nodes=%u ops=%u acked=%u lost=%15[0-9] converged=%7[a-z] "
            "seconds=%lf%n",
            &s, &n, &k, &acked, l, c, &secs, &used)
            != 7
        || (size_t)used != strlen(line) || sscanf(line + used, "%7s", tail) == 1)
        return false;
    return s == seed && n == nodes && k == ops && acked <= ops && secs > 0
        && (lost == NULL || strcmp(l, lost) == 0) && strcmp(c, converged) == 0;
}

/* Whether line is the summary line of a --consent-ops run of (seed, nodes, ops) that passed,
 * with at least one acknowledged revocation, downgrade, withdrawal and drop. */
static bool consent_summary_ok(const char *line, unsigned seed, unsigned nodes, unsigned ops)
{
    unsigned s, n, k, acked, rv, dg, wd, dr;
    char l[16], c[8], tail[8] = "";
    double secs;
    int used = 0;
    if (sscanf(line,
            "chaos: seed=%u nodes=%u ops=%u acked=%u revokes=%u downgrades=%u withdrawals=%u "
            "drops=%u lost=%15[0-9] converged=%7[a-z] seconds=%lf%n",
            &s, &n, &k, &acked, &rv, &dg, &wd, &dr, l, c, &secs, &used)
            != 11
        || (size_t)used != strlen(line) || sscanf(line + used, "%7s", tail) == 1)
        return false;
    return s == seed && n == nodes && k == ops && acked <= ops && rv > 0 && dg > 0 && wd > 0
        && dr > 0 && strcmp(l, "0") == 0 && strcmp(c, "yes") == 0 && secs > 0;
}

static void rm_rf(const char *dir)
{
    const char *rm[] = { "/bin/rm", "-rf", dir, NULL };
    run_out o;
    run(&o, rm, -1, NULL, NULL);
    free(o.out);
}

/* A run does what its plan says, in order, and reports it. */
static void run_follows_plan_and_reports(void **state)
{
    (void)state;
    char dir[] = "/tmp/patto-chaos-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char report[128], svg[128];
    snprintf(report, sizeof report, "%s/r.json", dir);
    snprintf(svg, sizeof svg, "%s/r.svg", dir);
    /* Seed 10 at 3 nodes and 80 operations plans every kind of operation and fault. */
    const char *plan_argv[]
        = { testnet_bin, "chaos", "--nodes", "3", "--ops", "80", "--seed", "10", "--plan", NULL };
    run_out plan;
    run(&plan, plan_argv, -1, NULL, NULL);
    assert_int_equal(plan.status, 0);
    static const char *const kinds[]
        = { " new case#", " edit case#", ".nomi_varianti+=", ".nomi_varianti-=", ".ore_frequenza",
              ".tirocini+={", " write to ", " read to ", " partition ", " slow ", " --loss-pct 0\n",
              " stop ", " cont ", " kill ", " restart ", " heal" };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strstr(plan.out, kinds[k]) == NULL)
            fail_msg("the plan of seed 10 lacks \"%s\":\n%s", kinds[k], plan.out);
    bool lossy = false; /* a slow link that also loses */
    for (const char *l = strstr(plan.out, " --loss-pct "); l && !lossy;
         l = strstr(l + 1, " --loss-pct "))
        lossy = l[12] >= '1' && l[12] <= '9';
    assert_true(lossy);

    const char *argv[] = { testnet_bin, "chaos", "--nodes", "3", "--ops", "80", "--seed", "10",
        "--report", report, NULL };
    run_out o;
    run(&o, argv, -1, NULL, NULL);
    char last[512];
    if (o.status != 0 || !summary_ok(last_line(o.out, last, sizeof last), 10, 3, 80, "0", "yes"))
        fail_msg("chaos seed 10: exit %d, last line \"%s\":\n%s", o.status, last, o.out);
    /* Not a terminal: plain progress lines, nothing redrawn. */
    assert_null(strchr(o.out, '\r'));
    assert_non_null(strstr(o.out, " ops 80/80 acked="));
    assert_non_null(strstr(o.out, "chaos: plaintext scan of every data.mdb: "));

    json_object *doc = json_object_from_file(report), *run = NULL, *events = NULL, *samples = NULL,
                *v = NULL;
    assert_non_null(doc);
    assert_true(json_object_object_get_ex(doc, "run", &run));
    assert_true(json_object_object_get_ex(run, "seed", &v) && json_object_get_int(v) == 10);
    assert_true(json_object_object_get_ex(run, "converged", &v) && json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(doc, "events", &events));
    assert_true(json_object_object_get_ex(doc, "lag_samples", &samples));
    assert_true(json_object_array_length(samples) >= 5);
    /* Every step of the plan is an event of the run, in the same order, with the same
     * nodes and values: "N DESCRIPTION" in the plan, "DESCRIPTION[: RESULT]" in the report. */
    size_t e = 0, steps = 0;
    bool checked = false;
    for (char *save = NULL, *l = strtok_r(plan.out, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save), steps++) {
        const char *want = strchr(l, ' ') + 1;
        const char *what = NULL;
        while (e < json_object_array_length(events)) {
            json_object *ev = json_object_array_get_idx(events, e++), *w = NULL, *kind = NULL;
            json_object_object_get_ex(ev, "what", &w);
            json_object_object_get_ex(ev, "kind", &kind);
            if (strcmp(json_object_get_string(kind), "check") == 0)
                checked = true;
            if (strcmp(json_object_get_string(kind), "check") != 0
                && strncmp(json_object_get_string(w), "up ", 3) != 0) {
                what = json_object_get_string(w);
                break;
            }
        }
        size_t len = strlen(want);
        if (what == NULL || strncmp(what, want, len) != 0
            || (what[len] != '\0' && what[len] != ':'))
            fail_msg("step %zu of the plan is \"%s\", the run did \"%s\"", steps, want,
                what ? what : "(nothing more)");
    }
    while (!checked && e < json_object_array_length(events)) {
        json_object *kind = NULL;
        json_object_object_get_ex(json_object_array_get_idx(events, e++), "kind", &kind);
        checked = strcmp(json_object_get_string(kind), "check") == 0;
    }
    assert_true(checked);
    json_object_put(doc);

    FILE *f = fopen(svg, "r");
    assert_non_null(f);
    static char pic[1 << 20];
    size_t n = fread(pic, 1, sizeof pic - 1, f);
    fclose(f);
    pic[n] = '\0';
    assert_non_null(strstr(pic, "<svg "));
    assert_non_null(strstr(pic, "</svg>"));
    assert_non_null(strstr(pic, "<polyline"));
    assert_non_null(strstr(pic, ">prefettura-1</text>"));
    assert_non_null(strstr(pic, "<title>partition "));
    assert_non_null(strstr(pic, "<title>kill comune-1"));
    free(plan.out);
    free(o.out);
    rm_rf(dir);
}

/* On a terminal: one progress line, redrawn in place, and the summary line last. */
static void live_progress_on_a_terminal(void **state)
{
    (void)state;
    int pty = posix_openpt(O_RDWR | O_NOCTTY);
    if (pty < 0 || grantpt(pty) != 0 || unlockpt(pty) != 0) {
        if (pty >= 0)
            close(pty);
        skip(); /* no pseudo-terminals here */
    }
    const char *argv[]
        = { testnet_bin, "chaos", "--nodes", "2", "--ops", "40", "--seed", "3", NULL };
    run_out o;
    run(&o, argv, pty, NULL, NULL);
    close(pty);
    char last[512];
    if (o.status != 0 || !summary_ok(last_line(o.out, last, sizeof last), 3, 2, 40, "0", "yes"))
        fail_msg("chaos on a terminal: exit %d, last line \"%s\":\n%s", o.status, last, o.out);
    /* Redrawn: carriage return and erase-line before the progress text. */
    assert_non_null(strstr(o.out, "\r\033[Kchaos: "));
    assert_non_null(strstr(o.out, " ops 40/40 acked="));
    free(o.out);
}

/* Kill prefettura-1 behind the run's back as soon as the run is under way. */
typedef struct crash {
    const char *dir;
    bool done;
    int pid;
} crash;

static void crash_on_progress(const char *line, void *arg)
{
    crash *c = arg;
    if (c->done || strstr(line, " ops ") == NULL)
        return;
    c->done = true;
    char path[256], text[32] = "";
    snprintf(path, sizeof path, "%s/prefettura-1.pid", c->dir);
    FILE *f = fopen(path, "r");
    if (f != NULL && fgets(text, sizeof text, f) != NULL)
        c->pid = atoi(text);
    if (f != NULL)
        fclose(f);
    /* SIGALRM: pattod does not handle it, so it dies as from a crash (and dumps no core). */
    if (c->pid > 0)
        kill(c->pid, SIGALRM);
}

static void crash_fails_run_and_prints_replay(void **state)
{
    (void)state;
    char top[] = "/tmp/patto-chaos-test-XXXXXX", dir[128];
    assert_non_null(mkdtemp(top));
    snprintf(dir, sizeof dir, "%s/net", top);
    /* Seed 6: the plan leaves prefettura-1 alone for its first 30 steps, then stops,
     * resumes, kills and restarts it: the run skips what cannot be done to a node that is
     * down, and its restart starts it again. */
    const char *argv[] = { testnet_bin, "chaos", "--nodes", "3", "--ops", "60", "--seed", "6",
        "--dir", dir, NULL };
    const char *plan_argv[]
        = { testnet_bin, "chaos", "--nodes", "3", "--ops", "60", "--seed", "6", "--plan", NULL };
    run_out plan;
    run(&plan, plan_argv, -1, NULL, NULL);
    bool late_stop = false;
    for (char *save = NULL, *l = strtok_r(plan.out, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        bool touches = strstr(l, " stop prefettura-1") || strstr(l, " kill prefettura-1");
        if (touches && atoi(l) < 30)
            fail_msg("seed 6 touches prefettura-1 early: %s", l);
        late_stop = late_stop || touches;
    }
    assert_true(late_stop);
    free(plan.out);
    crash c = { dir, false, 0 };
    run_out o;
    run(&o, argv, -1, crash_on_progress, &c);
    char last[512], want[256];
    assert_true(c.pid > 0);
    if (o.status != 6 || !summary_ok(last_line(o.out, last, sizeof last), 6, 3, 60, NULL, "yes"))
        fail_msg("chaos with a crash: want exit 6 and the summary last, got %d, \"%s\":\n%s",
            o.status, last, o.out);
    snprintf(want, sizeof want, "chaos: FAILED; the network is kept in %s", dir);
    assert_non_null(strstr(o.out, want));
    assert_non_null(strstr(
        o.out, "chaos: replay: patto-testnet chaos --nodes 3 --ops 60 --seed 6 --duration 3\n"));
    assert_non_null(strstr(o.out, "prefettura-1 crashed 1 time(s)"));
    /* The run went on: it skipped the stop of a node that was down, and restarted it, and
     * ran its checks with every node. */
    assert_non_null(strstr(o.out, "stop prefettura-1 skipped: prefettura-1 is down"));
    assert_non_null(strstr(o.out, "chaos: converged "));
    char path[256];
    snprintf(path, sizeof path, "%s/supervisor.log", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    bool exit_seen = false;
    while (fgets(line, sizeof line, f) != NULL)
        exit_seen = exit_seen
            || (strstr(line, "event=node.exit node=prefettura-1") && strstr(line, "signal-14")
                && strstr(line, "expected=no"));
    fclose(f);
    assert_true(exit_seen);
    free(o.out);
    rm_rf(top);
}

/* --consent-ops: what the plan has, and a run of it. Seed 33 at 3 nodes and 150 operations
 * plans every consent operation (withdrawals and drops of grants on both bases), grants on
 * both bases and four re-grants after a revocation. */
static void consent_ops_plan_and_run(void **state)
{
    (void)state;
    const char *plan_argv[] = { testnet_bin, "chaos", "--nodes", "3", "--ops", "150", "--seed",
        "33", "--consent-ops", "--plan", NULL };
    run_out plan;
    run(&plan, plan_argv, -1, NULL, NULL);
    assert_int_equal(plan.status, 0);
    static const char *const kinds[] = { " revoke case#", " downgrade case#", " withdraw case#",
        " drop case#", " basis consent\n", " basis public-task\n", "(a grant on consent)\n",
        "(a grant on public-task)\n" };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strstr(plan.out, kinds[k]) == NULL)
            fail_msg("the --consent-ops plan of seed 33 lacks \"%s\":\n%s", kinds[k], plan.out);
    /* A re-grant: a grant of (case, scope) to the node a revocation ended it for. */
    static char ended[64][96];
    size_t nended = 0;
    bool regrant = false;
    for (char *save = NULL, *l = strtok_r(plan.out, "\n", &save); l && !regrant;
         l = strtok_r(NULL, "\n", &save)) {
        char c[16], at[40], scope[24], access[8], to[40];
        if (sscanf(l, "%*u revoke %15s at %39s %23s from %39s", c, at, scope, to) == 4
            && nended < 64)
            snprintf(ended[nended++], sizeof ended[0], "%s %s %s", c, scope, to);
        if (sscanf(l, "%*u grant %15s at %39s %23s %7s to %39s", c, at, scope, access, to) == 5) {
            char key[96];
            snprintf(key, sizeof key, "%s %s %s", c, scope, to);
            for (size_t k = 0; k < nended && !regrant; k++)
                regrant = strcmp(ended[k], key) == 0;
        }
    }
    assert_true(regrant);
    free(plan.out);
    /* Without the option: the draws of before, none of the new operations, no basis named. */
    const char *old_argv[]
        = { testnet_bin, "chaos", "--nodes", "3", "--ops", "150", "--seed", "33", "--plan", NULL };
    run(&plan, old_argv, -1, NULL, NULL);
    assert_int_equal(plan.status, 0);
    static const char *const absent[]
        = { " revoke ", " downgrade ", " withdraw ", " drop ", " basis " };
    for (size_t k = 0; k < sizeof absent / sizeof absent[0]; k++)
        if (strstr(plan.out, absent[k]) != NULL)
            fail_msg("the plan of seed 33 without --consent-ops has \"%s\"", absent[k]);
    assert_non_null(strstr(plan.out, " grant case#"));
    free(plan.out);

    const char *argv[] = { testnet_bin, "chaos", "--nodes", "3", "--ops", "150", "--seed", "33",
        "--consent-ops", NULL };
    run_out o;
    run(&o, argv, -1, NULL, NULL);
    char last[512];
    if (o.status != 0 || !consent_summary_ok(last_line(o.out, last, sizeof last), 33, 3, 150))
        fail_msg(
            "chaos --consent-ops seed 33: exit %d, last line \"%s\":\n%s", o.status, last, o.out);
    assert_non_null(strstr(o.out, "chaos: consent: "));
    assert_non_null(strstr(o.out, " withdrawals and drops applied by their owners after "));
    assert_non_null(strstr(o.out, "chaos: plaintext scan of every data.mdb: "));
    free(o.out);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (argc == 3 && strcmp(argv[2], "consent") != 0) || argc > 3) {
        fprintf(stderr, "usage: %s PATTO_TESTNET [consent]\n", argv[0]);
        return 2;
    }
    testnet_bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_follows_plan_and_reports),
        cmocka_unit_test(live_progress_on_a_terminal),
        cmocka_unit_test(crash_fails_run_and_prints_replay),
    };
    const struct CMUnitTest consent[] = {
        cmocka_unit_test(consent_ops_plan_and_run),
    };
    return argc == 3 ? cmocka_run_group_tests(consent, NULL, NULL)
                     : cmocka_run_group_tests(tests, NULL, NULL);
}
