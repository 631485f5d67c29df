/* main.c - patto-testnet: a whole patto network on one machine, broken on purpose (README.md). */
#include "tn.h"

#include <stdio.h>
#include <string.h>

static const char usage[]
    = "usage: patto-testnet COMMAND ...\n"
      "  up DIR --nodes N [--base-port P]   create (if needed) and start a network of N nodes\n"
      "  down DIR                           stop every node and the supervisor\n"
      "  status DIR                         nodes, peers, lag, last heard, faults in force\n"
      "  check DIR [--timeout S]            wait until every node has converged (exit 1 if not)\n"
      "  partition DIR A,B C,D,E            cut the network into groups\n"
      "  slow DIR A B --delay-ms M [--loss-pct L]   degrade the link between A and B\n"
      "  heal DIR                           end every partition and slow link\n"
      "  kill|stop|cont|restart DIR NAME    SIGKILL, SIGSTOP, SIGCONT, or restart node NAME\n"
      "  chaos --nodes N --ops K --seed S [--duration SECONDS] [--dir DIR] [--report FILE.json]\n"
      "                                     a random run with faults, then checks what it\n"
      "                                     must: convergence, no lost write, no leak\n"
      "Programs: $PATTO_BIN and $PATTOD_BIN override the patto and pattod built with this one.\n"
      "Exit codes: 0 done, 1 check failed, 2 usage, 3 the testnet could not do it.\n";

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? TN_EXIT_USAGE : TN_EXIT_OK;
    }
    const char *cmd = argv[1];
    int n = argc - 2;
    char **args = argv + 2;
    for (int i = 0; i < n; i++)
        if (strcmp(args[i], "--help") == 0) {
            fputs(usage, stdout);
            return TN_EXIT_OK;
        }
    if (strcmp(cmd, "up") == 0)
        return tn_cmd_up(n, args);
    if (strcmp(cmd, "down") == 0)
        return tn_cmd_down(n, args);
    if (strcmp(cmd, "status") == 0)
        return tn_cmd_status(n, args);
    if (strcmp(cmd, "check") == 0)
        return tn_cmd_check(n, args);
    if (strcmp(cmd, "partition") == 0 || strcmp(cmd, "slow") == 0 || strcmp(cmd, "heal") == 0)
        return tn_cmd_fault(cmd, n, args);
    if (strcmp(cmd, "kill") == 0 || strcmp(cmd, "stop") == 0 || strcmp(cmd, "cont") == 0
        || strcmp(cmd, "restart") == 0 || strcmp(cmd, "start") == 0)
        return tn_cmd_proc(cmd, n, args);
    if (strcmp(cmd, "chaos") == 0)
        return tn_cmd_chaos(n, args);
    if (strcmp(cmd, "supervise") == 0 && n == 2)
        return tn_supervise(args[0], args[1]);
    tn_err("unknown command %s", cmd);
    fputs(usage, stderr);
    return TN_EXIT_USAGE;
}
