/*
 * cli.c - the grammar of `patto` (cli/README.md): global options before
 * or after the command, the command table, --help and --version, and how a failure is reported
 * (one sentence on stderr, or one JSON error object on stdout with --json).
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PATTO_VERSION_STRING
#error "PATTO_VERSION_STRING must be defined by the build (CMake's PROJECT_VERSION)"
#endif

static const cli__cmd commands[] = {
    { "network init", "ADMIN [--schema FILE]",
        N_("create an admin directory with the network admin key"),
        N_("Creates ADMIN (mode 0700) with admin.key (secret, mode 0600), admin.pub and an "
           "unsigned\n"
           "working manifest manifest.json (no members, the default purposes and options, the "
           "hash\n"
           "of the built-in schema or of FILE). Prints the admin public key. Refuses an ADMIN "
           "that\n"
           "already holds admin.key, and one in a node's data directory."),
        cli__network_init },
    { "network add", "ADMIN ENTRY.json", N_("add an org (the entry patto init printed)"),
        N_("Adds the org of ENTRY.json to ADMIN/manifest.json with its origin key. The same org\n"
           "with the same origin key again updates its name, role and url. The same org with\n"
           "another origin key is refused: a signed org gets a new key with patto network rekey.\n"
           "A key that any org has had is refused, and so is an org that left the network."),
        cli__network_add },
    { "network rekey", "ADMIN ENTRY.json --last-seq N [--notice-hours H]",
        N_("give an org a new origin key (its new node's entry)"),
        N_("Gives the org of ENTRY.json (what patto init printed on its new node) a new origin "
           "key.\n"
           "Its current key is retired after its header N: N is the seq of the org's own origin\n"
           "that its old node shows in patto status (ORIGIN SEQ), read once it stopped writing.\n"
           "The new key takes effect H hours (1-8760, default 72) after the next patto network\n"
           "sign. Every node refuses a manifest whose new key takes effect sooner than its\n"
           "[network] rekey_notice_hours (default 72) after signing, and alerts its operators of\n"
           "every new key. Run again before signing to replace the new key. Name, role and url\n"
           "are taken from ENTRY.json."),
        cli__network_rekey },
    { "network retire", "ADMIN ORG --last-seq N", N_("an org leaves: its key is retired"),
        N_("ORG leaves the network: its current key is retired after its header N (N: the seq of\n"
           "ORG's own origin that its node shows in patto status); nodes refuse its later headers\n"
           "once the next manifest is signed. ORG stays listed and its org id is never used "
           "again.\n"
           "A new key of ORG that no manifest has signed is dropped. Removing a member entirely\n"
           "(new keys for the scopes it held) is not built yet."),
        cli__network_retire },
    { "network remove", "ADMIN ORG", N_("remove an org that no signed manifest has listed"),
        N_("Once a manifest has listed an org, it stays listed for ever: retire it with patto\n"
           "network retire ADMIN ORG --last-seq N."),
        cli__network_remove },
    { "network purpose", "ADMIN ID TEXT", N_("add or replace a purpose (id and description)"), NULL,
        cli__network_purpose },
    { "network schema", "ADMIN FILE", N_("make the working manifest name the schema FILE"),
        N_("Sets the schema hash of ADMIN/manifest.json to FILE's (a record schema, "
           "node/SCHEMA.md).\n"
           "Install FILE as every node's schema file (pattod.conf [node] schema) and restart it\n"
           "first: a node keeps the schema in force until a manifest names its file's, and "
           "refuses\n"
           "a manifest whose schema drops a scope, a field or an enum value, changes a type, or\n"
           "narrows a length or a range (a network's schema only grows)."),
        cli__network_schema },
    { "network sign", "ADMIN --out FILE [--max-clock-ahead-ms N] [--counter-limit N]",
        N_("sign the working manifest as its next version"),
        N_("Signs ADMIN/manifest.json with the admin key as version N+1 at the current time "
           "(UTC),\n"
           "writes the signed manifest to FILE (binary) and records in manifest.json N+1, the\n"
           "version that first listed each new org, and the effective time of each new key (the\n"
           "signing time plus its notice). --max-clock-ahead-ms (1000-86400000, default 600000:\n"
           "a delta stamped further ahead waits) and --counter-limit (1-9007199254740992, default\n"
           "1000000000: per author, per counter field) are kept in manifest.json for later\n"
           "signatures. A working manifest that a node would refuse is refused. Give FILE to the\n"
           "nodes with patto manifest import FILE."),
        cli__network_sign },
    { "init",
        "--dir DATA --org ORG --role ROLE --listen URL [--advertise URL] --admin-pub HEX "
        "[--operator NAME] [--name NAME] [--schema FILE]",
        N_("create a node's data directory, keys and config"),
        N_("Creates DATA (mode 0750) with identity.key (mode 0600), pattod.conf and schema.json\n"
           "(the built-in schema, or a copy of FILE). ROLE is one of comune cpia cpi prefettura\n"
           "coop coord; --listen is the tcp://HOST:PORT the node binds, --advertise the one the\n"
           "other members dial (default: the listen URL; required when it binds every address,\n"
           "tcp://0.0.0.0:PORT); HEX is the network admin's public key. --operator NAME is\n"
           "recorded for writes that name no operator: without it, every write needs --operator\n"
           "or PATTO_OPERATOR. DATA must not be in an admin directory. Prints the member entry\n"
           "(JSON) to give to the network admin."),
        cli__init },
    { "status", "", N_("the node's org, versions, peers, members, counts and alerts"),
        N_("Members that left the network (their key is retired) are marked, and so is a member's\n"
           "new key that takes effect later (with its time, in Europe/Rome)."),
        cli__status },
    { "digest", "", N_("per-origin version vector and the state digest of every readable tag"),
        NULL, cli__digest },
    { "schema", "", N_("the scopes and fields of the node's record schema"), NULL, cli__schema },
    { "case new", "[EDIT ...]", N_("open a case; prints its id alone on the first line"),
        N_("EDIT is scope.field=VALUE (a register), scope.field+=VALUE (add to a set or counter,\n"
           "append a JSON event to a timeline) or scope.field-=VALUE (remove from a set, subtract\n"
           "from a counter). All edits are one change."),
        cli__case_new },
    { "case set", "CASE EDIT ...", N_("apply edits to a case as one change, durably"),
        N_("EDIT is scope.field=VALUE, scope.field+=VALUE or scope.field-=VALUE."), cli__case_set },
    { "case unset", "CASE SCOPE.FIELD [--all]", N_("remove a field"),
        N_("Removes every value of the field seen here. A timeline's events go all at once, so\n"
           "for a timeline it needs --all (to remove one event's content, use case redact)."),
        cli__case_unset },
    { "case redact", "CASE SCOPE.FIELD EVENT", N_("redact one event of a timeline"),
        N_("Removes the content of one event (its time and author stay). EVENT is the id in\n"
           "brackets that case show prints after each event. Only the event's author or the\n"
           "case's owner may redact it: every node refuses anyone else's redaction."),
        cli__case_redact },
    { "case show", "CASE [--labels]", N_("the owner, readable scopes and access log of a case"),
        N_("Shows the org that owns the case, every readable field (conflicts marked) and, under\n"
           "each scope, its access log: grants (to, access, purpose, basis, provision, until,\n"
           "operator) and new epochs. Times in Europe/Rome. --labels names fields by the\n"
           "schema's labels (Italian) instead of scope.field."),
        cli__case_show },
    { "case list", "[--where SCOPE.FIELD=VALUE] [--sort name|birth|change] [--limit N]",
        N_("the cases this node can read, newest change first"),
        N_("Columns: NAME (cognome nome), BORN, OWNER, LAST CHANGE (Europe/Rome), CASE, SCOPES.\n"
           "--where keeps the cases whose field equals VALUE (text: case and accents do not\n"
           "matter; a set: holds VALUE); its scope must be readable here. --sort name (cognome,\n"
           "nome), birth (oldest first) or change (newest first, the default); cases without a\n"
           "name or date here come last. --limit N shows the first N."),
        cli__case_list },
    { "case find", "QUERY [--fuzzy] [--limit N]", N_("find the cases this node can read"),
        N_("QUERY is a name (any of nome, cognome, nomi_varianti; every word must match the start\n"
           "of a name word; case and accents do not matter), a codice fiscale (16 characters or\n"
           "the 11-digit provisional one), a birth date (YYYY-MM-DD or dd/mm/yyyy) or a permit\n"
           "number (documenti.permesso_numero). --fuzzy also matches names spelt another way\n"
           "(Mohamed, Mohammed, Muhammad) by a phonetic key, or one typo away (Ibragim for\n"
           "Ibrahim), closest spelling first. --limit N: at most N cases (1-1000, default 20).\n"
           "With --json, the node's answer (node/CONTROL.md, case.find)."),
        cli__case_find },
    { "case log", "CASE [SCOPE.FIELD] [--limit N]", N_("every change to a case, newest first"),
        N_("Each change this node can read, newest first: when (Europe/Rome), the org that wrote\n"
           "it, the field, and its value before -> after (a timeline: + the events added); a\n"
           "conflict lists every value that stands, who wrote it and when. From the changes this\n"
           "node merged (refused ones are not history). --limit N (default 100, at most 10000)."),
        cli__case_log },
    { "case export", "CASE [--format json|csv]",
        N_("the beneficiary's copy of a case: readable fields with labels, access log, owner"),
        N_("Prints every scope of CASE this node can read, each field with its schema label, the\n"
           "access log of each scope and the org that owns the case. --format json (default) or\n"
           "csv (for Excel: UTF-8 with a BOM, semicolons, one line per field and per access-log\n"
           "entry)."),
        cli__case_export },
    { "import",
        "FILE [--map MAP.json] [--format csv|ndjson] [--encoding utf-8|windows-1252] "
        "[--batch N] [--dry-run]",
        N_("import cases from a CSV or NDJSON file, in batches, idempotently with a key column"),
        N_("CSV as Excel writes it (';' or ',' guessed from the header line, quoted fields, UTF-8\n"
           "with or without a BOM, or --encoding windows-1252); MAP.json maps the header's "
           "columns\n"
           "to scope.field with transforms (trim, upper, lower, date dd/mm/yyyy, split, values)\n"
           "and may name one column the key. NDJSON: one object a line, {\"_key\": ID,\n"
           "\"scope.field\": VALUE, ...} (what patto export --all writes). Every row is checked "
           "by\n"
           "the node's schema first and refused rows are reported with line, column and reason;\n"
           "--dry-run stops there. Then the valid rows are written, N a batch (default and at "
           "most\n"
           "1000), each batch one durable commit. A row whose key was imported already is\n"
           "skipped: an interrupted import run again finishes the rest. Exit 2 when a row was\n"
           "refused (the others are imported). The map's \"grants\" give partners access to the\n"
           "imported cases, to every row or to the rows whose column says yes (x, si, 1)."),
        cli__import },
    { "export", "--all [--format ndjson]",
        N_("the readable caseload as NDJSON, one case a line (patto import reads it back)"),
        N_("One line per case this node can read: {\"_key\": CASE, \"_owner\": ORG,\n"
           "\"scope.field\": VALUE, ...}. patto import --format ndjson of this file on another\n"
           "network opens a case per line with the same fields (timeline events are appended\n"
           "anew: new times, the importing org as author); importing it twice opens none twice."),
        cli__export },
    { "consent grant",
        "CASE --to ORG --scopes S1,S2 --purpose ID --basis BASIS [--access read|write] "
        "[--until YYYY-MM-DD] [--evidence REF] [--provision TEXT]",
        N_("grant a member access to scopes of a case"),
        N_("BASIS is public-task, legal-obligation, consent or explicit-consent; the purpose must\n"
           "be in the network manifest. --access defaults to read. --until D: the access ends\n"
           "with day D in Europe/Rome (today or a later day). --provision names the legal "
           "provision "
           "the grant rests on\n"
           "(e.g. \"D.Lgs. 286/1998 art. 4-bis\"), at most 255 bytes of text; required with\n"
           "public-task and legal-obligation."),
        cli__consent_grant },
    { "consent list", "CASE", N_("who holds which scope of a case, and in what state"),
        N_("Every grant in the access logs of the case this node can read, one line per scope and\n"
           "grant: its state (active; expired, once its --until day has ended in Europe/Rome;\n"
           "replaced, when a later grant to the same org stands), grantee, access, purpose, "
           "basis,\n"
           "provision, until, who recorded it (operator and Unix user) and when, evidence."),
        cli__consent_list },
    { "consent revoke", "CASE --from ORG [--scopes S1,S2] [--reason TEXT]",
        N_("end a member's access to scopes of a case (all its scopes without --scopes)"),
        N_("Only the case's owner revokes. Each scope gets a narrowing entry in its access log "
           "with\n"
           "a cut: the last write of ORG this node holds. Every holder refuses ORG's writes "
           "beyond\n"
           "the cut, including writes ORG made while its grant stood that this node had not\n"
           "received yet. The scope moves to a new key that goes to the remaining holders only:\n"
           "ORG receives nothing written after this. At ORG's node, a consent-based grant is\n"
           "purged; a public-task or legal-obligation one is kept, closed. A later grant lets ORG\n"
           "in again."),
        cli__consent_revoke },
    { "consent downgrade", "CASE --from ORG [--scopes S1,S2] [--reason TEXT]",
        N_("narrow a member's write access to read"),
        N_("Like revoke, but ORG keeps reading: its writes beyond the cut are refused everywhere,\n"
           "and the key stays."),
        cli__consent_downgrade },
    { "consent withdraw", "CASE --scopes S1,S2 --to ORG --evidence REF [--owner ORG]",
        N_("record at this desk that the beneficiary withdrew consent to ORG's access"),
        N_("Any partner's node takes a withdrawal: it is sealed to the case's owner (only the "
           "owner\n"
           "can read it) and shipped to the owner's node, which ends ORG's grants on those scopes\n"
           "when they rest on consent (a narrowing and a new key, as consent revoke); a grant on\n"
           "another basis waits for an operator there ('withdrawal pending' in consent list).\n"
           "--evidence names the signed form or protocol number. --owner is needed only where "
           "this\n"
           "node holds no scope of the case (case show prints the owner). At the owner's own desk\n"
           "the withdrawal is applied at once."),
        cli__consent_withdraw },
    { "consent drop", "CASE --scopes S1,S2",
        N_("give up this node's own grant on scopes of a case"),
        N_("Sent to the case's owner like a withdrawal; once the owner ends the grant, this "
           "node's\n"
           "copy of a consent-based scope is purged."),
        cli__consent_drop },
    { "manifest import", "FILE", N_("hand a signed manifest (patto network sign) to the node"),
        NULL, cli__manifest_import },
    { "store compact", "", N_("rewrite the node's store file without its free pages"),
        N_("Purged data leaves data.mdb only when the file is rewritten: the node writes LMDB's\n"
           "compacting copy beside it (it needs that much free disk, and refuses without it), "
           "then\n"
           "puts the copy in its place. The node does nothing else meanwhile: no writes, no sync,\n"
           "no other command. Prints how long that took, the file's size before and after, and "
           "the\n"
           "disk the copy needed. The node also compacts on its own every [store]\n"
           "compact_every_hours (default 24)."),
        cli__store_compact },
    /* (before "inbox": the first name that matches is taken) */
    { "inbox ack", "", N_("mark everything in your inbox as read"),
        N_("Marks every row there is now as read for you (the operator); later ones are new."),
        cli__inbox_ack },
    { "inbox", "[--since WHEN] [--all] [--limit N]",
        N_("what reached this node for you: shared cases, ended access, partners' changes"),
        N_("Lists, newest first, what this node took that concerns its operators and that you\n"
           "(the operator: --operator or PATTO_OPERATOR, else the node's default) have not marked\n"
           "read: cases shared with this node (scope, access, purpose, basis, until), access\n"
           "narrowed or ended (revoked, expired, withdrawn, dropped), partners' changes to cases\n"
           "read here (one line a case), and at a case's owner the withdrawals and drops "
           "received.\n"
           "Alerts come first: this node removed, a forked origin, a peer's clock beyond the\n"
           "network's bound, writes waiting for a key. --all shows the rows read too; --since "
           "WHEN\n"
           "(YYYY-MM-DD, or 30m, 12h, 7d ago) only the newer; --limit N at most N (default 50).\n"
           "The node keeps at most 10,000 rows besides one row of changes a case."),
        cli__inbox },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char global_usage[]
    = N_("usage: patto [--dir DATA] [--json] [--operator NAME] COMMAND ...\n"
         "       patto --version | --help | COMMAND --help\n");

static void print_help(void)
{
    printf("%s\n", _(global_usage));
    printf("%s",
        _("patto is the operator's tool for a patto node: it sets up the network and the node\n"
          "(local commands) and asks the node in DATA for everything else.\n\n"));
    printf("%s",
        _("global options (before or after the command):\n"
          "  --dir DATA       the node's data directory (default $PATTO_DIR)\n"
          "  --json           print results and errors as JSON on stdout\n"
          "  --operator NAME  who is acting (default $PATTO_OPERATOR, then the node's own)\n\n"));
    printf("%s", _("commands:\n"));
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %-17s %s\n", commands[i].name, _(commands[i].brief));
    printf("%s",
        _("\nexit codes (the same for patto-testnet):\n"
          "  0  done\n"
          "  1  usage: the command line is wrong (unknown command or option, missing or\n"
          "     malformed argument)\n"
          "  2  input refused: well-formed but not allowed (schema, validation, a rule of the\n"
          "     network)\n"
          "  3  not found or not readable here\n"
          "  4  unreachable: the node (or the testnet supervisor) does not answer\n"
          "  5  internal error\n"
          "  6  a check failed (patto-testnet check and chaos only)\n"));
}

static void print_cmd_help(const cli__cmd *c)
{
    printf(_("usage: patto %s%s%s\n\n%s.\n"), c->name, c->args[0] != '\0' ? " " : "", c->args,
        _(c->brief));
    if (c->help != NULL)
        printf("\n%s\n", _(c->help));
}

static void print_group_help(const char *group)
{
    printf(_("patto %s commands:\n"), group);
    size_t n = strlen(group);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].name, group, n) == 0 && commands[i].name[n] == ' ')
            printf("  patto %s%s%s\n", commands[i].name, commands[i].args[0] != '\0' ? " " : "",
                commands[i].args);
}

static bool is_group(const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].name, word, n) == 0 && commands[i].name[n] == ' ')
            return true;
    return false;
}

static cli_err print_version(cli__ctx *ctx)
{
    uint8_t hash[PROTO_HASH_LEN];
    char hex[2 * PROTO_HASH_LEN + 1];
    proto_schema_hash(patto_default_schema, patto_default_schema_len, hash);
    proto_hex_encode(hash, PROTO_HASH_LEN, hex);
    json_object *schema = NULL;
    cli__ctx quiet = { 0 };
    const char *name = "?";
    int64_t version = 0;
    if (cli__json_parse(&quiet, "the built-in schema", (const char *)patto_default_schema,
            patto_default_schema_len, &schema)
        == CLI_OK) {
        json_object *v;
        if (cli__json_str(schema, "schema") != NULL)
            name = cli__json_str(schema, "schema");
        if (json_object_object_get_ex(schema, "version", &v))
            version = json_object_get_int64(v);
    }
    cli_err err = CLI_OK;
    if (ctx->json) {
        json_object *o = json_object_new_object();
        if (o == NULL
            || json_object_object_add(o, "program", json_object_new_string(PATTO_VERSION_STRING))
                != 0
            || json_object_object_add(o, "protocol", json_object_new_int(PROTO_VERSION)) != 0
            || json_object_object_add(o, "schema", json_object_new_string(hex)) != 0
            || json_object_object_add(o, "schema_name", json_object_new_string(name)) != 0
            || json_object_object_add(o, "schema_version", json_object_new_int64(version)) != 0)
            err = cli__fail(ctx, CLI_EINTERNAL, "%s", _("out of memory"));
        else
            err = cli__json_print(ctx, o);
        json_object_put(o);
    } else {
        printf(_("patto %s\nprotocol %d\nschema %s (%s version %lld, built in)\n"),
            PATTO_VERSION_STRING, PROTO_VERSION, hex, name, (long long)version);
    }
    json_object_put(schema);
    return err;
}

static void report(const cli__ctx *ctx)
{
    const char *msg = ctx->msg[0] != '\0' ? ctx->msg : _(cli_strerror(ctx->err));
    if (ctx->json) {
        json_object *o = json_object_new_object();
        json_object *e = json_object_new_object();
        if (o != NULL && e != NULL
            && json_object_object_add(e, "code", json_object_new_int((int)ctx->err)) == 0
            && json_object_object_add(e, "message", json_object_new_string(msg)) == 0
            && json_object_object_add(o, "error", e) == 0) {
            printf("%s\n",
                json_object_to_json_string_ext(o,
                    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                        | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(o);
            fflush(stdout);
            return;
        }
        if (o == NULL || !json_object_object_get_ex(o, "error", NULL))
            json_object_put(e);
        json_object_put(o);
    }
    fprintf(stderr, "patto: %s\n", msg);
}

/* Take the global options out of argv wherever they are (until `--`); the rest, in order, go to
 * rest. */
static cli_err globals(cli__ctx *ctx, int argc, char **argv, char **rest, int *nrest, bool *version,
    const char **dir, const char **op)
{
    int n = 0;
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0) {
            options = false;
            rest[n++] = argv[i]; /* the command's parser sees it too */
            continue;
        }
        if (!options) {
            rest[n++] = argv[i];
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            ctx->json = true;
        } else if (strcmp(a, "--version") == 0 && n == 0) {
            *version = true;
        } else if (strcmp(a, "--dir") == 0 || strcmp(a, "--operator") == 0) {
            if (i + 1 >= argc)
                return cli__fail(ctx, CLI_EUSAGE, _("option '%s' needs a value"), a);
            *(a[2] == 'd' ? dir : op) = argv[++i];
        } else if (strncmp(a, "--dir=", 6) == 0) {
            *dir = a + 6;
        } else if (strncmp(a, "--operator=", 11) == 0) {
            *op = a + 11;
        } else {
            rest[n++] = argv[i];
        }
    }
    *nrest = n;
    return CLI_OK;
}

static cli_err run(cli__ctx *ctx, int argc, char **argv)
{
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (rest == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, "%s", _("out of memory"));
    int n = 0;
    bool version = false;
    const char *dir = NULL, *op = NULL;
    cli_err err = globals(ctx, argc, argv, rest, &n, &version, &dir, &op);
    if (err != CLI_OK)
        goto done;
    ctx->dir = dir != NULL ? dir : getenv("PATTO_DIR");
    ctx->operator_flag = op;
    ctx->operator_name = op != NULL ? op : getenv("PATTO_OPERATOR");
    if (ctx->operator_name == NULL)
        ctx->operator_name = "";
    /* Empty: the node records its own [node] operator. */
    size_t oplen = strlen(ctx->operator_name);
    if (oplen > 0 && !proto_text_valid(ctx->operator_name, oplen, CLI__OPERATOR_MAX)) {
        err = cli__fail(ctx, CLI_EINPUT,
            _("the operator name (%s) must be 1-%d bytes of text without control characters, "
              "and not only spaces"),
            op != NULL ? "--operator" : "PATTO_OPERATOR", CLI__OPERATOR_MAX);
        goto done;
    }
    if (version) {
        err = print_version(ctx);
        goto done;
    }
    if (n == 0) {
        err = cli__fail(ctx, CLI_EUSAGE, "%s", _("no command given; see patto --help"));
        goto done;
    }
    if (strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0
        || strcmp(rest[0], "help") == 0) {
        print_help();
        goto done;
    }
    const cli__cmd *cmd = NULL;
    int words = 0;
    for (size_t i = 0; i < NCOMMANDS && cmd == NULL; i++) {
        const char *name = commands[i].name;
        const char *space = strchr(name, ' ');
        if (space == NULL) {
            if (strcmp(name, rest[0]) == 0) {
                cmd = &commands[i];
                words = 1;
            }
        } else if (n >= 2 && strncmp(name, rest[0], (size_t)(space - name)) == 0
            && rest[0][space - name] == '\0' && strcmp(space + 1, rest[1]) == 0) {
            cmd = &commands[i];
            words = 2;
        }
    }
    if (cmd == NULL) {
        if (is_group(rest[0])) {
            if (n >= 2 && (strcmp(rest[1], "--help") == 0 || strcmp(rest[1], "-h") == 0)) {
                print_group_help(rest[0]);
                goto done;
            }
            if (n < 2)
                err = cli__fail(ctx, CLI_EUSAGE, _("'%s' needs a subcommand; see patto %s --help"),
                    rest[0], rest[0]);
            else
                err = cli__fail(ctx, CLI_EUSAGE, _("unknown command '%s %s'; see patto %s --help"),
                    rest[0], rest[1], rest[0]);
        } else if (rest[0][0] == '-') {
            err = cli__fail(ctx, CLI_EUSAGE, _("unknown option '%s'; see patto --help"), rest[0]);
        } else {
            err = cli__fail(ctx, CLI_EUSAGE, _("unknown command '%s'; see patto --help"), rest[0]);
        }
        goto done;
    }
    for (int i = words; i < n; i++) {
        if (strcmp(rest[i], "--") == 0)
            break;
        if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
            print_cmd_help(cmd);
            goto done;
        }
    }
    err = cmd->run_fn(ctx, cmd, n - words, rest + words);
done:
    free(rest);
    return err;
}

/* Is --json among the global options? (Then every message stays English.) */
static bool wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

int cli_main(int argc, char **argv)
{
    cli__ctx ctx = { 0 };
    if (!wants_json(argc, argv))
        cli__i18n_init();
    cli_err err = run(&ctx, argc, argv);
    if (err != CLI_OK && ctx.err == CLI_OK)
        cli__fail(&ctx, err, "%s", _(cli_strerror(err)));
    if (fflush(stdout) != 0 && ctx.err == CLI_OK)
        cli__fail(&ctx, CLI_EINTERNAL, _("cannot write to stdout: %s"), strerror(errno));
    if (ctx.err != CLI_OK && !(ctx.json && ctx.printed))
        report(&ctx);
    return (int)ctx.err;
}
