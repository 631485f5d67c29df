/* pattod: the patto node. Usage in --help; configuration in node/CONFIG.md. May call:
 * daemon.c (node_run, node_check). */
#include "node/node.h"

#include <proto/proto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: pattod --dir DATA [--check-config]\n"
        "\n"
        "Run a patto node from its data directory DATA (default: $PATTO_DIR), which\n"
        "holds pattod.conf, identity.key, the schema file and the store; create it\n"
        "with 'patto init'. Logs go to stderr as key=value lines. SIGINT or SIGTERM\n"
        "stop the node cleanly.\n"
        "\n"
        "  --dir DATA       the data directory\n"
        "  --check-config   check pattod.conf, identity.key, the schema and the manifest in\n"
        "                   force against each other, print one line and exit (0: valid,\n"
        "                   1: the first problem is logged); does not start the node\n"
        "  --version        print the program and protocol versions\n"
        "  --help           print this text\n");
}

int main(int argc, char **argv)
{
    const char *dir = getenv("PATTO_DIR");
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("pattod %s protocol %d\n", PATTO_VERSION, PROTO_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--check-config") == 0) {
            check = true;
            continue;
        }
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--dir=", 6) == 0) {
            dir = argv[i] + 6;
            continue;
        }
        fprintf(stderr, "pattod: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return 1;
    }
    if (dir == NULL || dir[0] == 0) {
        fprintf(stderr, "pattod: no data directory: pass --dir DATA or set PATTO_DIR\n");
        return 1;
    }
    return check ? node_check(dir) : node_run(dir);
}
