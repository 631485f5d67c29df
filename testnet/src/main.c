/* main.c - patto-testnet: a whole patto network on one machine, broken on purpose (README.md).
 *
 * Every command is one entry of the table below: its arguments, its options (with the range
 * of every number), its usage line and its help all come from there, and one parser checks a
 * command line against it before the command runs. A command returns a tn_err; main turns it
 * into the exit code (tn_exit_code), the one place that does. */
#include "tn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proto/proto.h> /* PROTO_VERSION: the protocol of the patto and pattod it drives */

#ifndef PATTO_VERSION
#error "PATTO_VERSION must be defined by the build (CMake's PROJECT_VERSION, as for pattod)"
#endif

#define NODES_RANGE "2 to 32"

/* kill, stop, cont, restart, start: DIR NAME, forwarded to the supervisor (tn_cmd_proc). */
#define PROC_COMMAND(cmd, text)                                                                    \
    {                                                                                              \
        .name = cmd, .pos = "DIR NAME", .pos_min = 2, .pos_max = 2, .summary = text,               \
        .run = tn_cmd_proc,                                                                        \
    }

static const tn_cmdspec commands[] = {
    {
        .name = "up",
        .pos = "DIR",
        .pos_min = 1,
        .pos_max = 1,
        .summary = "create (if DIR holds none) and start a network of N nodes",
        .help = "Creates the network in DIR if DIR holds none (--nodes is needed then), starts the\n"
                "supervisor and every node in the background, imports the manifest, waits (30 s at\n"
                "most) until every node sees every other node up, and prints the node names. On a\n"
                "running network it starts the nodes that are down and resumes the stopped ones.\n",
        .opts = {
            { "--nodes", TN_OPT_NUM, "N", 2, TN_MAX_NODES, false,
                "how many nodes, " NODES_RANGE " (needed when DIR holds no testnet yet)" },
            { "--base-port", TN_OPT_NUM, "P", 1, 65535, false,
                "node i listens on P+i, proxy i->j on P+N+i*N+j (default: free ports)" },
        },
        .run = tn_cmd_up,
    },
    {
        .name = "down",
        .pos = "DIR",
        .pos_min = 1,
        .pos_max = 1,
        .summary = "stop every node and the supervisor",
        .help = "Stops every node (SIGCONT, SIGTERM, SIGKILL after 5 s) and the supervisor; also\n"
                "when the supervisor is gone (it signals the pids kept in DIR).\n",
        .run = tn_cmd_down,
    },
    {
        .name = "status",
        .pos = "DIR",
        .pos_min = 1,
        .pos_max = 1,
        .summary = "nodes, their peers, lag, last heard, the faults in force",
        .help = "Each node: running, stopped or down, its pid, starts, crashes (exits nobody asked\n"
                "for), last exit, headers and lag (headers behind the most advanced node); under it\n"
                "each peer with its state and last heard (from `patto status`) and its lag; then the\n"
                "faults in force.\n",
        .opts = {
            { "--links", TN_OPT_FLAG, NULL, 0, 0, false,
                "also every proxy's connections: open now, accepted, refused, dropped" },
            { "--json", TN_OPT_FLAG, NULL, 0, 0, false,
                "one JSON object (keys in README.md, \"status --json\")" },
        },
        .run = tn_cmd_status,
    },
    {
        .name = "check",
        .pos = "DIR",
        .pos_min = 1,
        .pos_max = 1,
        .summary = "wait until every node has converged (exit 6 if not)",
        .help = "Waits until the network has converged: every node running, the same version\n"
                "vector and tag digests everywhere, nothing waited for. Exit 0 and how long it took;\n"
                "otherwise exit 6 and what is missing where.\n",
        .opts = {
            { "--timeout", TN_OPT_NUM, "SECONDS", 0, 86400, false,
                "how long to wait, 0 to 86400 (default 60)" },
            { "--json", TN_OPT_FLAG, NULL, 0, 0, false,
                "one JSON object (keys in README.md, \"check --json\")" },
        },
        .run = tn_cmd_check,
    },
    {
        .name = "partition",
        .pos = "DIR GROUP...",
        .pos_min = 2,
        .pos_max = TN_POS_MAX,
        .summary = "cut the network into groups (GROUP: names joined by commas, A,B)",
        .help = "Cuts the network into the groups given (e.g. comune-1 cpia-1,prefettura-1); the\n"
                "nodes not named form one more group.\n",
        .run = tn_cmd_fault,
    },
    {
        .name = "slow",
        .pos = "DIR A B",
        .pos_min = 3,
        .pos_max = 3,
        .summary = "degrade the link between nodes A and B (both directions)",
        .help = "Holds every chunk on the link between A and B for the delay (both directions,\n"
                "order kept) and closes a connection with the loss probability per chunk.\n",
        .opts = {
            { "--delay-ms", TN_OPT_NUM, "M", 0, 600000, true,
                "milliseconds each chunk is held, 0 to 600000" },
            { "--loss-pct", TN_OPT_NUM, "L", 0, 100, false,
                "percent of chunks that close their connection, 0 to 100 (default 0)" },
        },
        .run = tn_cmd_fault,
    },
    {
        .name = "heal",
        .pos = "DIR",
        .pos_min = 1,
        .pos_max = 1,
        .summary = "end every partition and slow link",
        .run = tn_cmd_fault,
    },
    PROC_COMMAND("kill", "SIGKILL node NAME"),
    PROC_COMMAND("stop", "SIGSTOP node NAME (a hung process)"),
    PROC_COMMAND("cont", "SIGCONT node NAME; returns when it answers again"),
    PROC_COMMAND("restart",
        "SIGTERM node NAME and start it again (or start it if down); returns when it answers"),
    PROC_COMMAND("start", "start node NAME, which is down"),
    {
        .name = "chaos",
        .pos = "",
        .pos_min = 0,
        .pos_max = 0,
        .summary = "a seeded random run with faults, then the checks: convergence, no lost "
                   "write, no leak",
        .help = "Plans operations and faults from (seed, nodes, ops), runs them on a fresh network,\n"
                "heals, and checks convergence, every acknowledged write, no plaintext where it\n"
                "was never granted and no crash (README.md \"Chaos runs\"). Exit 6 on a violation.\n",
        .opts = {
            { "--nodes", TN_OPT_NUM, "N", 2, 16, true, "how many nodes, 2 to 16" },
            { "--ops", TN_OPT_NUM, "K", 0, 1000000, true, "how many operations, 0 to 1000000" },
            { "--seed", TN_OPT_NUM, "S", 0, UINT64_MAX, true,
                "the seed of the plan, 0 to 18446744073709551615" },
            { "--duration", TN_OPT_NUM, "SECONDS", 0, 604800, false,
                "pace the plan over this long, 0 to 604800 (default or 0: 20 operations a second)" },
            { "--dir", TN_OPT_TEXT, "DIR", 0, 0, false,
                "run in DIR, which must hold no testnet (default: a new /tmp/patto-chaos-XXXXXX)" },
            { "--report", TN_OPT_TEXT, "FILE.json", 0, 0, false,
                "write the run's report there, and its picture beside it (FILE.svg)" },
            { "--plan", TN_OPT_FLAG, NULL, 0, 0, false, "print the plan and exit" },
            { "--keep", TN_OPT_FLAG, NULL, 0, 0, false,
                "keep the directory of a passing run too (a failing one is always kept)" },
            { "--consent-ops", TN_OPT_FLAG, NULL, 0, 0, false,
                "also revoke, downgrade, withdraw and drop grants (on consent or public task)" },
        },
        .run = tn_cmd_chaos,
    },
    {
        .name = "supervise",
        .pos = "DIR PATTOD",
        .pos_min = 2,
        .pos_max = 2,
        .summary = "run the supervisor of DIR in the foreground (up starts it)",
        .run = tn_cmd_supervise,
        .internal = true,
    },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static bool has_option(const tn_cmdspec *c, const char *name)
{
    for (size_t k = 0; k < TN_OPTS_MAX && c->opts[k].name != NULL; k++)
        if (strcmp(c->opts[k].name, name) == 0)
            return true;
    return false;
}

static const tn_cmdspec *find_command(const char *name)
{
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(commands[k].name, name) == 0)
            return &commands[k];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Usage and help, from the table                                                            */

/* "up DIR [--nodes N] [--base-port P]" */
static void synopsis(const tn_cmdspec *c, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "%s%s%s", c->name, c->pos[0] ? " " : "", c->pos);
    for (size_t k = 0; k < TN_OPTS_MAX && c->opts[k].name != NULL && used < size; k++) {
        const tn_optspec *o = &c->opts[k];
        used += (size_t)snprintf(buf + used, size - used, " %s%s%s%s%s", o->required ? "" : "[",
            o->name, o->meta ? " " : "", o->meta ? o->meta : "", o->required ? "" : "]");
    }
}

static void print_exit_words(FILE *f)
{
    fputs("Exit codes:", f);
#define TN__EXIT_WORD(name, code, word, text) fprintf(f, "%s %d %s", code ? "," : "", code, word);
    TN_EXITS(TN__EXIT_WORD)
#undef TN__EXIT_WORD
    fputs(" (patto-testnet --help says more).\n", f);
}

static void usage(FILE *f)
{
    fputs("usage: patto-testnet COMMAND ARGS...   (patto-testnet COMMAND --help: one command)\n"
          "       patto-testnet --version          the program and the protocol it drives\n"
          "Commands:\n",
        f);
    char line[512];
    for (int internal = 0; internal <= 1; internal++) {
        if (internal)
            fputs("Internal (not for people):\n", f);
        for (size_t k = 0; k < NCOMMANDS; k++) {
            if (commands[k].internal != (internal == 1))
                continue;
            synopsis(&commands[k], line, sizeof line);
            fprintf(f, "  %s\n        %s\n", line, commands[k].summary);
        }
    }
    fprintf(f,
        "Every command takes --help.\n"
        "Programs (installed beside patto-testnet, else those it was built with;\n"
        "$PATTO_BIN and $PATTOD_BIN override):\n  patto  %s\n  pattod %s\n"
        "Exit codes (the same for patto):\n",
        tn_patto_bin(), tn_pattod_bin());
    tn_print_exits(f, "  ");
}

static void command_help(const tn_cmdspec *c)
{
    char line[512];
    synopsis(c, line, sizeof line);
    printf("usage: patto-testnet %s\n%c%s.\n%s", line, toupper((unsigned char)c->summary[0]),
        c->summary + 1, c->help ? c->help : "");
    if (c->opts[0].name != NULL)
        printf("Options:\n");
    for (size_t k = 0; k < TN_OPTS_MAX && c->opts[k].name != NULL; k++) {
        const tn_optspec *o = &c->opts[k];
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", o->name, o->meta ? " " : "", o->meta ? o->meta : "");
        printf("  %-20s %s%s\n", head, o->help, o->required ? " (required)" : "");
    }
    print_exit_words(stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* Parsing                                                                                   */

/* The index of option name (of kind) of c. A name the command lacks is a bug of the caller:
 * abort, also in a build without asserts. */
static size_t opt_index(const tn_cmdspec *c, const char *name, tn_optkind kind)
{
    for (size_t k = 0; k < TN_OPTS_MAX && c->opts[k].name != NULL; k++)
        if (strcmp(c->opts[k].name, name) == 0 && c->opts[k].kind == kind)
            return k;
    fprintf(stderr, "patto-testnet: bug: %s has no option %s of that kind\n", c->name, name);
    abort();
}

bool tn_given(const tn_args *a, const char *name)
{
    for (size_t k = 0; k < TN_OPTS_MAX && a->cmd->opts[k].name != NULL; k++)
        if (strcmp(a->cmd->opts[k].name, name) == 0)
            return a->given[k];
    fprintf(stderr, "patto-testnet: bug: %s has no option %s\n", a->cmd->name, name);
    abort();
}

uint64_t tn_num(const tn_args *a, const char *name, uint64_t dflt)
{
    size_t k = opt_index(a->cmd, name, TN_OPT_NUM);
    return a->given[k] ? a->num[k] : dflt;
}

const char *tn_text(const tn_args *a, const char *name)
{
    size_t k = opt_index(a->cmd, name, TN_OPT_TEXT);
    return a->given[k] ? a->text[k] : NULL;
}

/* Check argv (after the command word) against c into *a; say what is wrong, naming the
 * option, what it got and what it takes. */
static tn_err parse(const tn_cmdspec *c, int argc, char **argv, tn_args *a)
{
    memset(a, 0, sizeof *a);
    a->cmd = c;
    char line[512];
    synopsis(c, line, sizeof line);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            if (a->npos == c->pos_max) {
                tn_msg(
                    "%s: unexpected argument \"%s\"; usage: patto-testnet %s", c->name, arg, line);
                return TN_EUSAGE;
            }
            a->pos[a->npos++] = argv[i];
            continue;
        }
        size_t k = 0;
        while (k < TN_OPTS_MAX && c->opts[k].name != NULL && strcmp(c->opts[k].name, arg) != 0)
            k++;
        if (k == TN_OPTS_MAX || c->opts[k].name == NULL) {
            tn_msg("%s: unknown option %s; usage: patto-testnet %s", c->name, arg, line);
            return TN_EUSAGE;
        }
        const tn_optspec *o = &c->opts[k];
        if (a->given[k]) {
            tn_msg("%s: %s is given twice", c->name, arg);
            return TN_EUSAGE;
        }
        a->given[k] = true;
        if (o->kind == TN_OPT_FLAG)
            continue;
        if (i + 1 == argc) {
            tn_msg(
                "%s: %s needs a value (%s); usage: patto-testnet %s", c->name, arg, o->meta, line);
            return TN_EUSAGE;
        }
        const char *val = argv[++i];
        a->text[k] = val;
        if (o->kind == TN_OPT_NUM && tn_parse_u64(val, o->min, o->max, &a->num[k]) != TN_OK) {
            tn_msg("%s: %s takes a whole number from %llu to %llu, not \"%s\"", c->name, arg,
                (unsigned long long)o->min, (unsigned long long)o->max, val);
            return TN_EUSAGE;
        }
    }
    if (a->npos < c->pos_min) {
        tn_msg("%s: missing %s; usage: patto-testnet %s", c->name,
            a->npos == 0 ? c->pos : "arguments", line);
        return TN_EUSAGE;
    }
    for (size_t k = 0; k < TN_OPTS_MAX && c->opts[k].name != NULL; k++)
        if (c->opts[k].required && !a->given[k]) {
            tn_msg("%s: missing %s %s; usage: patto-testnet %s", c->name, c->opts[k].name,
                c->opts[k].meta, line);
            return TN_EUSAGE;
        }
    return TN_OK;
}

/* With --json, a failure is one object on stdout (as patto's): {"error": {"code", "message"}}. */
static void json_error(tn_err err)
{
    const char *msg = tn_msg_collected();
    json_object *o = json_object_new_object(), *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_int(tn_exit_code(err)));
    json_object_object_add(e, "message", json_object_new_string(msg[0] ? msg : tn_strerror(err)));
    json_object_object_add(o, "error", e);
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return TN_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return TN_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("patto-testnet %s protocol %d\n", PATTO_VERSION, PROTO_VERSION);
        return TN_EXIT_OK;
    }
    const tn_cmdspec *c = find_command(argv[1]);
    if (c == NULL) {
        tn_msg("unknown command %s", argv[1]);
        usage(stderr);
        return TN_EXIT_USAGE;
    }
    int n = argc - 2;
    char **args = argv + 2;
    bool json = false;
    for (int i = 0; i < n; i++) {
        if (strcmp(args[i], "--help") == 0 || strcmp(args[i], "-h") == 0) {
            command_help(c);
            return TN_EXIT_OK;
        }
        json = json || strcmp(args[i], "--json") == 0;
    }
    /* --json only where the command has it (elsewhere parse refuses it). */
    json = json && has_option(c, "--json");
    tn_msg_collect(json);
    tn_args a;
    tn_err err = parse(c, n, args, &a);
    if (err == TN_OK)
        err = c->run(&a);
    /* A check that fails has printed its result: that is no error object. */
    if (json && err != TN_OK && tn_exit_code(err) != TN_EXIT_CHECK)
        json_error(err);
    else if (json && tn_msg_collected()[0] != '\0')
        fprintf(stderr, "patto-testnet: %s\n", tn_msg_collected());
    tn_msg_collect(false);
    return (int)tn_exit_code(err);
}
